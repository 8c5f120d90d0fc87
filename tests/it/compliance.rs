//! Every bot botfleet ships, on an empty database: a URL-safe name, a valid default config, a
//! schedule in crons.json, a pass that runs, and an honest report when there is nothing to check.

use crate::both_backends;

both_backends! {
    async fn every_shipped_bot_complies(h) {
        let shipped = botfleet::bots::registry();
        let crons = botfleet::schedule::parse_crons(botfleet::schedule::BUILTIN_CRONS, "crons.json", &shipped.names()).unwrap();
        for bot in shipped.iter() {
            let name = bot.name();
            assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name} is not URL-safe");
            assert!(crons.get(name).is_some(), "{name} is not in crons.json");
            let defaults = h.state.engine.effective_config(bot.as_ref(), None);
            assert_eq!(h.state.engine.validate_config(bot.as_ref(), &defaults), vec![], "{name}'s defaults do not validate");

            let dry = h.trigger(name, "dry_run=true").await.expect(200);
            assert_eq!(dry.json["status"], "success", "{name}: {}", dry.text);
            let run = h.trigger(name, "force=true").await.expect(200);
            assert_eq!(run.json["status"], "success", "{name}: {}", run.text);
            if run.json["checks_performed"] == 0 {
                assert!(!run.json["notes"].as_array().unwrap().is_empty(), "{name} checked nothing and said nothing");
            }
            let row = h.store().get_bot(name).await.unwrap().unwrap();
            assert_eq!(row.schedule_cron.as_deref(), Some(crons.get(name).unwrap().expr.as_str()));
            assert_eq!(row.api_endpoint, format!("/api/bots/{name}"));
        }
    }

    async fn the_internal_scheduler_runs_passes_through_the_same_path(h) {
        // To 12:00:59.6, however long set-up took: pulse (*/1) fires at 12:01:00, in about 0.4 s.
        h.clock.jump_to("2026-11-22T12:00:59.600Z".parse().unwrap());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let scheduler = tokio::spawn(botfleet::scheduler::run(h.state.clone(), stopped));
        let mut found = None;
        for _ in 0..100 {
            if let Some(e) = h.executions("pulse").await.into_iter().find(|e| e.status != "running") {
                found = Some(e);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        stop.send(true).unwrap();
        scheduler.await.unwrap();
        let e = found.expect("the scheduler ran pulse");
        assert_eq!(e.triggered_by, "scheduler");
        assert_eq!(e.status, "success");
        assert_eq!(e.slot_at.unwrap().to_rfc3339(), "2026-11-22T12:01:00+00:00");
        assert!(h.executions("steady").await.is_empty(), "steady (*/5) was not due");
    }
}

/// The config examples in the README are accepted as they are written.
#[test]
fn the_readme_config_examples_validate() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let registry = botfleet::bots::registry();
    let mut checked = 0;
    for (bot, intro) in [
        ("pulse", "pulse's config:"),
        ("sentinel", "sentinel's config"),
        ("sentinel-api", "sentinel-api's config:"),
        ("sentinel-db", "sentinel-db's config"),
        ("oracle", "oracle's config:"),
    ] {
        let at = readme
            .find(intro)
            .unwrap_or_else(|| panic!("the README has no {intro:?}"));
        let block = &readme[at..];
        let start = block.find("```json").unwrap() + "```json".len();
        let end = start + block[start..].find("```").unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&block[start..end]).unwrap_or_else(|e| panic!("{bot}: {e}"));
        let b = registry.get(bot).unwrap();
        let engine_keys_removed = botfleet::engine::bot_part(&config);
        assert_eq!(
            b.validate_config(&engine_keys_removed),
            vec![],
            "{bot}'s README example"
        );
        checked += 1;
    }
    assert_eq!(checked, 5);
}
