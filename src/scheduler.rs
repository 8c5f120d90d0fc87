//! `serve --scheduler` (or `SCHEDULER=internal`): the schedule run in-process, through the same
//! trigger path as an external cron call — so slot de-duplication keeps it safe even when every
//! replica runs one.

use tokio::sync::watch;

use crate::engine::TriggerRequest;
use crate::state::AppState;

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let entries: Vec<(String, crate::schedule::Schedule)> = state
        .schedules
        .entries()
        .filter(|(bot, _)| state.bots.get(bot).is_some())
        .map(|(b, s)| (b.to_string(), s.clone()))
        .collect();
    if entries.is_empty() {
        tracing::warn!("internal scheduler: nothing is scheduled");
        return;
    }
    tracing::info!(bots = entries.len(), "internal scheduler running");
    loop {
        let now = state.clock.now();
        let fires: Vec<(&str, chrono::DateTime<chrono::Utc>)> = entries
            .iter()
            .map(|(b, s)| (b.as_str(), s.next_after(now)))
            .collect();
        let Some(earliest) = fires.iter().map(|(_, t)| *t).min() else {
            return;
        };
        let wait = (earliest - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        for (bot, fire) in fires.iter().filter(|(_, t)| *t == earliest) {
            let engine = state.engine.clone();
            let request = TriggerRequest::new(bot, "scheduler");
            let bot = bot.to_string();
            let fire = *fire;
            tokio::spawn(async move {
                if let Err(e) = engine.trigger(request).await {
                    tracing::error!(bot = %bot, slot = %fire, error = %e, "scheduled pass could not run");
                }
            });
        }
    }
}
