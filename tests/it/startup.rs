//! The binary: a fresh start with nothing configured, refusals of bad configuration, the CLI.

use botfleet::auth::Role;
use serde_json::Value;

use crate::common::process::{mode, run, Server};
use crate::common::{fresh_pg_schema, postgres_url};

/// What `cargo run` does on a fresh clone: no configuration at all.
async fn fresh_start(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, &str)> = database_url
        .iter()
        .map(|u| ("DATABASE_URL", u.as_str()))
        .collect();
    let server = Server::start(dir.path(), &env).await;
    let secrets = dir.path().join("data/secrets");
    assert_eq!(mode(&secrets), 0o700);
    assert_eq!(mode(&secrets.join("cron_secret")), 0o600);
    assert_eq!(mode(&secrets.join("jwt_secret")), 0o600);
    let cron = std::fs::read_to_string(secrets.join("cron_secret"))
        .unwrap()
        .trim()
        .to_string();
    let log = server.log_text();
    assert!(
        log.contains("generated one into data/secrets/cron_secret"),
        "{log}"
    );
    assert!(
        !log.contains(&cron),
        "the secret itself must never be logged"
    );

    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/api/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let pass: Value = http
        .post(format!("{}/api/bots/pulse", server.base))
        .bearer_auth(&cron)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pass["status"], "success", "{pass}");
    assert!(pass["data"]["cpu_percent"].is_number());
    assert!(pass["data"]["memory"]["total_bytes"].as_u64().unwrap() > 0);

    // A token minted by the CLI from the same data directory is accepted.
    let out = run(
        dir.path(),
        &["token", "--role", "viewer", "--ttl", "1h", "--sub", "ci"],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let bots = http
        .get(format!("{}/api/admin/bots", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bots.status(), 200);

    assert!(server.stop().success(), "SIGTERM is a clean stop");

    // `run` records a pass like any other, without the server.
    let out = run(dir.path(), &["run", "pulse", "--force"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["triggered_by"], "cli");
    assert_eq!(report["status"], "success");
    let _ = Role::Viewer;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_on_sqlite_needs_nothing() {
    fresh_start(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_on_postgres() {
    let Some(base) = postgres_url() else { return };
    fresh_start(Some(fresh_pg_schema(&base).await)).await;
}

#[test]
fn a_malformed_crons_json_stops_start_up_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("crons.json"),
        r#"{"crons": [{"path": "/api/bots/pulse", "schedule": "*/1 * * * *"},
                      {"path": "/api/bots/pulse2", "schedule": "*/5 * * * *"}]}"#,
    )
    .unwrap();
    for args in [
        &["serve"][..],
        &["crons", "check"][..],
        &["run", "pulse"][..],
    ] {
        let out = run(dir.path(), args, &[("BIND_ADDR", "127.0.0.1:0")]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid crons.json: entry 2"),
            "{args:?}: {err}"
        );
        assert!(err.contains("no bot named \"pulse2\""), "{err}");
    }
    std::fs::write(
        dir.path().join("crons.json"),
        r#"{"crons": [{"path": "/api/bots/pulse", "schedule": "0 0 * * * *"}]}"#,
    )
    .unwrap();
    let err = String::from_utf8(run(dir.path(), &["serve"], &[]).stderr).unwrap();
    assert!(err.contains("entry 1") && err.contains("five"), "{err}");
    std::fs::write(dir.path().join("crons.json"), "{\"crons\": [").unwrap();
    let err = String::from_utf8(run(dir.path(), &["serve"], &[]).stderr).unwrap();
    assert!(
        err.contains("invalid crons.json") && err.contains("line 1"),
        "{err}"
    );
    let out = run(
        dir.path(),
        &["crons", "check"],
        &[("CRONS_FILE", "/nonexistent/crons.json")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("CRONS_FILE=/nonexistent/crons.json"));
}

#[test]
fn a_bad_environment_value_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, needle) in [
        ("BIND_ADDR", "nowhere", "invalid BIND_ADDR=\"nowhere\""),
        ("PORT", "99999", "invalid PORT"),
        ("RETENTION_DAYS", "-1", "invalid RETENTION_DAYS"),
        ("DATABASE_URL", "mysql://db/x", "invalid DATABASE_URL"),
        ("LOG_FORMAT", "xml", "invalid LOG_FORMAT"),
        ("CRON_SECRET", "short", "invalid CRON_SECRET=(hidden)"),
        ("SCHEDULER", "cron", "invalid SCHEDULER"),
    ] {
        let out = run(dir.path(), &["serve"], &[(var, value)]);
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(needle) && err.contains("example:"),
            "{var}: {err}"
        );
    }
    std::fs::write(dir.path().join(".env"), "GOOD=1\nthis is not a line\n").unwrap();
    let err = String::from_utf8(run(dir.path(), &["serve"], &[]).stderr).unwrap();
    assert!(err.contains("invalid .env"), "{err}");
    std::fs::remove_file(dir.path().join(".env")).unwrap();
    let out = run(
        dir.path(),
        &["serve"],
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));
}

#[test]
fn crons_export_writes_each_callers_config() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["vercel", "github-actions", "crontab", "kubernetes"] {
        let out = run(dir.path(), &["crons", "export", "--format", format], &[]);
        assert!(out.status.success(), "{format}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("/api/bots/pulse") && text.contains("*/1 * * * *"),
            "{format}: {text}"
        );
    }
    let vercel: Value = serde_json::from_slice(
        &run(dir.path(), &["crons", "export", "--format", "vercel"], &[]).stdout,
    )
    .unwrap();
    let shipped: Value = serde_json::from_str(botfleet::schedule::BUILTIN_CRONS).unwrap();
    assert_eq!(vercel, shipped, "the vercel export is crons.json itself");
    let out = run(dir.path(), &["crons", "export", "--format", "jenkins"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(dir.path(), &["launch"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: botfleet"));
}
