//! `botfleet crons export --format vercel|github-actions|crontab|kubernetes`: the schedule as
//! each kind of caller wants it.

use std::fmt::Write;

use crate::schedule::Schedules;

pub const FORMATS: &[&str] = &["vercel", "github-actions", "crontab", "kubernetes"];

/// `max_time_secs`: how long a caller should wait for a pass (the deadline plus a margin).
pub fn export(schedules: &Schedules, format: &str, max_time_secs: u64) -> Result<String, String> {
    match format {
        "vercel" => Ok(vercel(schedules)),
        "github-actions" => Ok(github_actions(schedules, max_time_secs)),
        "crontab" => Ok(crontab(schedules, max_time_secs)),
        "kubernetes" => Ok(kubernetes(schedules, max_time_secs)),
        other => Err(format!(
            "unknown format {other:?}; use one of {}",
            FORMATS.join(", ")
        )),
    }
}

fn vercel(s: &Schedules) -> String {
    let crons: Vec<serde_json::Value> = s
        .entries()
        .map(|(bot, sch)| serde_json::json!({"path": format!("/api/bots/{bot}"), "schedule": sch.expr}))
        .collect();
    let mut out =
        serde_json::to_string_pretty(&serde_json::json!({ "crons": crons })).unwrap_or_default();
    out.push('\n');
    out
}

fn github_actions(s: &Schedules, max_time: u64) -> String {
    let mut distinct: Vec<&str> = Vec::new();
    for (_, sch) in s.entries() {
        if !distinct.contains(&sch.expr.as_str()) {
            distinct.push(&sch.expr);
        }
    }
    let mut out = String::new();
    out.push_str("# .github/workflows/botfleet.yml — calls botfleet on its schedules.\n");
    out.push_str("# Set the repository secret CRON_SECRET and the variable BOTFLEET_URL.\n");
    out.push_str(
        "# GitHub runs schedules at most every 5 minutes, often late: botfleet de-duplicates by\n",
    );
    out.push_str("# schedule slot, and /api/health reports a bot whose calls stop coming.\n");
    out.push_str("name: botfleet\non:\n  schedule:\n");
    for expr in &distinct {
        let _ = writeln!(out, "    - cron: '{expr}'");
    }
    out.push_str(
        "  workflow_dispatch:\njobs:\n  trigger:\n    runs-on: ubuntu-latest\n    steps:\n",
    );
    for (bot, sch) in s.entries() {
        if sch.interval_after(sch.next_after(chrono::Utc::now())) < chrono::Duration::minutes(5) {
            let _ = writeln!(
                out,
                "      # {bot} is scheduled {}; GitHub runs it every 5 minutes at best, so /api/health will\n      # report it overdue. Call {bot} from Vercel Cron, crontab or `botfleet serve --scheduler`.",
                sch.expr
            );
        }
        let _ = writeln!(out, "      - name: {bot}");
        let _ = writeln!(
            out,
            "        if: github.event_name == 'workflow_dispatch' || github.event.schedule == '{}'",
            sch.expr
        );
        let _ = writeln!(
            out,
            "        run: curl --fail-with-body -sS --max-time {max_time} -X POST -H \"Authorization: Bearer ${{{{ secrets.CRON_SECRET }}}}\" \"${{{{ vars.BOTFLEET_URL }}}}/api/bots/{bot}\""
        );
    }
    out
}

fn crontab(s: &Schedules, max_time: u64) -> String {
    let mut out = String::new();
    out.push_str(
        "# botfleet — install with `crontab -e`. Times are UTC: set CRON_TZ=UTC where supported.\n",
    );
    out.push_str("# curl retries on 408/429/5xx (honouring Retry-After); botfleet answers 5xx only when a retry is right.\n");
    out.push_str("CRON_TZ=UTC\nBOTFLEET_URL=http://127.0.0.1:3000\nBOTFLEET_SECRET_FILE=/var/lib/botfleet/secrets/cron_secret\n");
    for (bot, sch) in s.entries() {
        let _ = writeln!(
            out,
            "{} curl -fsS --max-time {max_time} --retry 3 -X POST -H \"Authorization: Bearer $(cat $BOTFLEET_SECRET_FILE)\" \"$BOTFLEET_URL/api/bots/{bot}\" >/dev/null",
            sch.expr
        );
    }
    out
}

fn kubernetes(s: &Schedules, max_time: u64) -> String {
    let mut out = String::new();
    out.push_str(
        "# One CronJob per bot. Needs a Secret `botfleet` with key `cron-secret`, and the\n",
    );
    out.push_str(
        "# botfleet Service reachable at http://botfleet:3000 (edit BOTFLEET_URL otherwise).\n",
    );
    for (bot, sch) in s.entries() {
        let _ = write!(
            out,
            "---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: botfleet-{bot}
spec:
  schedule: \"{expr}\"
  timeZone: \"Etc/UTC\"
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 60
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: trigger
              image: curlimages/curl:8.10.1
              env:
                - name: BOTFLEET_URL
                  value: http://botfleet:3000
                - name: CRON_SECRET
                  valueFrom:
                    secretKeyRef:
                      name: botfleet
                      key: cron-secret
              args: [\"-fsS\", \"--max-time\", \"{max_time}\", \"--retry\", \"3\", \"-X\", \"POST\", \"-H\", \"Authorization: Bearer $(CRON_SECRET)\", \"$(BOTFLEET_URL)/api/bots/{bot}\"]
",
            expr = sch.expr
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_names_every_bot() {
        let s = Schedules::from_pairs(&[("pulse", "*/1 * * * *"), ("sentinel", "*/2 * * * *")])
            .unwrap();
        for f in FORMATS {
            let text = export(&s, f, 60).unwrap();
            assert!(
                text.contains("/api/bots/pulse") && text.contains("/api/bots/sentinel"),
                "{f}: {text}"
            );
            assert!(text.contains("*/2 * * * *"), "{f}");
        }
        let v: serde_json::Value =
            serde_json::from_str(&export(&s, "vercel", 60).unwrap()).unwrap();
        assert_eq!(v["crons"][0]["path"], "/api/bots/pulse");
        assert!(export(&s, "jenkins", 60).is_err());
    }
}
