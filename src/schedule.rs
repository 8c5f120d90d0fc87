//! Schedules: `crons.json` in Vercel's shape, five-field cron expressions in UTC (0 = Sunday),
//! the schedule *slot* a call falls in, the next fire, and whether a bot is overdue.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};

/// The `crons.json` this build ships, used when there is none beside the process.
pub const BUILTIN_CRONS: &str = include_str!("../crons.json");

#[derive(Debug, Clone)]
pub struct Schedule {
    pub expr: String,
    cron: croner::Cron,
}

impl Schedule {
    /// Parses a five-field cron expression (minute hour day-of-month month day-of-week).
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "schedule {expr:?} has {fields} fields; it needs five (minute hour day-of-month month day-of-week), e.g. \"*/5 * * * *\""
            ));
        }
        let cron = croner::Cron::new(expr)
            .parse()
            .map_err(|e| format!("schedule {expr:?} is not a valid cron expression: {e}"))?;
        Ok(Self {
            expr: expr.to_string(),
            cron,
        })
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.cron
            .find_next_occurrence(&t, false)
            .unwrap_or(t + Duration::days(366 * 4))
    }

    /// The slot `t` falls in: the latest fire at or before `t`.
    pub fn slot_at_or_before(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let minute = t.duration_trunc(Duration::minutes(1)).unwrap_or(t);
        // Frequent schedules: step back a minute at a time.
        for back in 0..=120 {
            let m = minute - Duration::minutes(back);
            if self.cron.is_time_matching(&m).unwrap_or(false) {
                return m;
            }
        }
        // Sparse ones: walk forward from further and further back.
        for days in [1, 8, 32, 367, 367 * 5] {
            let start = minute - Duration::days(days);
            let Ok(mut fire) = self.cron.find_next_occurrence(&start, true) else {
                continue;
            };
            if fire > t {
                continue;
            }
            loop {
                let next = self.next_after(fire);
                if next > t {
                    return fire;
                }
                fire = next;
            }
        }
        minute
    }

    /// How long from `fire` to the fire after it.
    pub fn interval_after(&self, fire: DateTime<Utc>) -> Duration {
        self.next_after(fire) - fire
    }
}

/// Where a bot stands against its schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Punctuality {
    /// Never ran: not overdue, just new.
    New,
    OnTime {
        next_expected_at: DateTime<Utc>,
    },
    Overdue {
        expected_at: DateTime<Utc>,
        grace_seconds: i64,
        late_by_seconds: i64,
    },
    /// No schedule: runs only when called.
    Unscheduled,
}

/// A bot is overdue when the fire after its last execution is more than a grace (half the
/// interval, at least a minute) in the past.
pub fn punctuality(
    schedule: Option<&Schedule>,
    last_execution_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Punctuality {
    let Some(schedule) = schedule else {
        return Punctuality::Unscheduled;
    };
    let Some(last) = last_execution_at else {
        return Punctuality::New;
    };
    let expected = schedule.next_after(last);
    let grace = (schedule.interval_after(expected) / 2).max(Duration::minutes(1));
    if now > expected + grace {
        Punctuality::Overdue {
            expected_at: expected,
            grace_seconds: grace.num_seconds(),
            late_by_seconds: (now - expected).num_seconds(),
        }
    } else {
        Punctuality::OnTime {
            next_expected_at: expected,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CronsFile {
    crons: Vec<CronEntry>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CronEntry {
    path: String,
    schedule: String,
}

/// The bots' schedules, in `crons.json` order.
#[derive(Debug, Clone, Default)]
pub struct Schedules {
    entries: Vec<(String, Schedule)>,
    by_bot: HashMap<String, usize>,
    /// Where they came from: a path, or "built-in".
    pub source: String,
}

impl Schedules {
    pub fn get(&self, bot: &str) -> Option<&Schedule> {
        self.by_bot.get(bot).map(|i| &self.entries[*i].1)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, &Schedule)> {
        self.entries.iter().map(|(b, s)| (b.as_str(), s))
    }

    /// Builds schedules directly (tests, benchmarks).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, String> {
        let mut s = Schedules {
            source: "inline".into(),
            ..Default::default()
        };
        for (bot, expr) in pairs {
            s.by_bot.insert(bot.to_string(), s.entries.len());
            s.entries.push((bot.to_string(), Schedule::parse(expr)?));
        }
        Ok(s)
    }
}

/// Parses and validates a `crons.json` text. Errors name the file, the entry and the problem.
pub fn parse_crons(text: &str, source: &str, known_bots: &[&str]) -> Result<Schedules, String> {
    let file: CronsFile = serde_json::from_str(text).map_err(|e| {
        format!(
            "invalid {source}: {e} — expected {{\"crons\": [{{\"path\": \"/api/bots/pulse\", \"schedule\": \"*/1 * * * *\"}}]}}"
        )
    })?;
    let mut schedules = Schedules {
        source: source.to_string(),
        ..Default::default()
    };
    for (i, entry) in file.crons.iter().enumerate() {
        let n = i + 1;
        let whole = serde_json::to_string(entry).unwrap_or_default();
        let fail = |problem: String| format!("invalid {source}: entry {n} {whole}: {problem}");
        let Some(bot) = entry.path.strip_prefix("/api/bots/") else {
            return Err(fail("path must be /api/bots/<name>".into()));
        };
        if bot.contains(['?', '#', '/']) || bot.is_empty() {
            return Err(fail(
                "path must be /api/bots/<name>, with no query string".into(),
            ));
        }
        if !known_bots.contains(&bot) {
            return Err(fail(format!(
                "there is no bot named {bot:?}; known bots: {}",
                known_bots.join(", ")
            )));
        }
        if schedules.by_bot.contains_key(bot) {
            return Err(fail(format!(
                "{bot} is already scheduled by an earlier entry"
            )));
        }
        let schedule = Schedule::parse(&entry.schedule).map_err(fail)?;
        schedules
            .by_bot
            .insert(bot.to_string(), schedules.entries.len());
        schedules.entries.push((bot.to_string(), schedule));
    }
    Ok(schedules)
}

/// Loads `CRONS_FILE` when set, else `./crons.json` when present, else the built-in copy.
pub fn load(configured: Option<&Path>, known_bots: &[&str]) -> Result<Schedules, String> {
    let (text, source) = match configured {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read CRONS_FILE={}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => {
            let local = PathBuf::from("crons.json");
            if local.exists() {
                (
                    std::fs::read_to_string(&local)
                        .map_err(|e| format!("cannot read crons.json: {e}"))?,
                    "crons.json".to_string(),
                )
            } else {
                (BUILTIN_CRONS.to_string(), "built-in crons.json".to_string())
            }
        }
    };
    parse_crons(&text, &source, known_bots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, s).unwrap()
    }

    #[test]
    fn slots_and_next_fires() {
        let every5 = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(every5.slot_at_or_before(at(12, 7, 30)), at(12, 5, 0));
        assert_eq!(every5.slot_at_or_before(at(12, 5, 0)), at(12, 5, 0));
        assert_eq!(every5.next_after(at(12, 5, 0)), at(12, 10, 0));
        assert_eq!(every5.next_after(at(12, 7, 30)), at(12, 10, 0));
        let six_hourly = Schedule::parse("0 */6 * * *").unwrap();
        assert_eq!(six_hourly.slot_at_or_before(at(17, 59, 59)), at(12, 0, 0));
        assert_eq!(six_hourly.interval_after(at(12, 0, 0)), Duration::hours(6));
    }

    #[test]
    fn zero_is_sunday() {
        // 2026-11-22 is a Sunday.
        let sundays = Schedule::parse("0 9 * * 0").unwrap();
        assert_eq!(sundays.slot_at_or_before(at(10, 0, 0)), at(9, 0, 0));
        let next = sundays.next_after(at(10, 0, 0));
        assert_eq!(next, at(9, 0, 0) + Duration::days(7));
    }

    #[test]
    fn six_fields_and_nonsense_are_refused() {
        assert!(Schedule::parse("0 */5 * * * *")
            .unwrap_err()
            .contains("five"));
        assert!(Schedule::parse("*/5 * * *").unwrap_err().contains("five"));
        assert!(Schedule::parse("61 * * * *").is_err());
    }

    #[test]
    fn overdue_after_half_an_interval_or_a_minute() {
        let every10 = Schedule::parse("*/10 * * * *").unwrap();
        let last = at(12, 0, 5);
        // Expected at 12:10; grace 5 minutes.
        assert!(matches!(
            punctuality(Some(&every10), Some(last), at(12, 14, 0)),
            Punctuality::OnTime { .. }
        ));
        match punctuality(Some(&every10), Some(last), at(12, 15, 1)) {
            Punctuality::Overdue {
                expected_at,
                grace_seconds,
                ..
            } => {
                assert_eq!(expected_at, at(12, 10, 0));
                assert_eq!(grace_seconds, 300);
            }
            other => panic!("{other:?}"),
        }
        let every1 = Schedule::parse("*/1 * * * *").unwrap();
        // Expected at 12:01; grace one minute (half of one minute is less).
        assert!(matches!(
            punctuality(Some(&every1), Some(last), at(12, 2, 0)),
            Punctuality::OnTime { .. }
        ));
        assert!(matches!(
            punctuality(Some(&every1), Some(last), at(12, 2, 1)),
            Punctuality::Overdue { .. }
        ));
        assert_eq!(
            punctuality(Some(&every1), None, at(12, 2, 1)),
            Punctuality::New
        );
        assert_eq!(
            punctuality(None, Some(last), at(23, 0, 0)),
            Punctuality::Unscheduled
        );
    }

    #[test]
    fn crons_errors_name_the_entry() {
        let known = ["pulse"];
        let e = parse_crons(r#"{"crons":[{"path":"/api/bots/pulse","schedule":"*/1 * * * *"},{"path":"/api/bots/nope","schedule":"* * * * *"}]}"#, "crons.json", &known).unwrap_err();
        assert!(
            e.contains("entry 2") && e.contains("nope") && e.contains("known bots: pulse"),
            "{e}"
        );
        let e = parse_crons(
            r#"{"crons":[{"path":"/api/bots/pulse","schedule":"every minute"}]}"#,
            "crons.json",
            &known,
        )
        .unwrap_err();
        assert!(e.contains("entry 1") && e.contains("five"), "{e}");
        let e = parse_crons(
            r#"{"crons":[{"path":"/api/bots/pulse","schedule":"* * * * *","x":1}]}"#,
            "crons.json",
            &known,
        )
        .unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = parse_crons("{\"crons\": [", "crons.json", &known).unwrap_err();
        assert!(
            e.contains("invalid crons.json") && e.contains("line"),
            "{e}"
        );
        let e = parse_crons(r#"{"crons":[{"path":"/api/bots/pulse","schedule":"* * * * *"},{"path":"/api/bots/pulse","schedule":"* * * * *"}]}"#, "crons.json", &known).unwrap_err();
        assert!(e.contains("already scheduled"), "{e}");
    }

    #[test]
    fn the_shipped_crons_json_is_valid() {
        let names = crate::bots::registry().names();
        let s = parse_crons(BUILTIN_CRONS, "crons.json", &names).unwrap();
        for name in names {
            assert!(s.get(name).is_some(), "{name} is missing from crons.json");
        }
    }
}
