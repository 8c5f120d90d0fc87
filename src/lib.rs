//! botfleet: a fleet of monitoring bots. An external scheduler calls `/api/bots/<name>`; each
//! call runs one pass of that bot, recorded in SQLite or PostgreSQL. Read `docs/ARCHITECTURE.md`
//! for the tour: `migrations/`, then `store/`, `engine/`, `bots/`, `routes/`.

pub mod actions;
pub mod archive;
pub mod auth;
pub mod bots;
pub mod clock;
pub mod config;
pub mod crons_export;
pub mod dbcheck;
pub mod engine;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod host;
pub mod metrics;
pub mod net;
pub mod osv;
pub mod probes;
pub mod process;
pub mod routes;
pub mod schedule;
pub mod scheduler;
pub mod secrets;
pub mod security;
pub mod state;
pub mod store;
pub mod targets;

use std::sync::Arc;
use std::time::Instant;

pub use routes::app;

use crate::auth::AuthKeys;
use crate::bots::Registry;
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::Engine;
use crate::events::Events;
use crate::health::HealthCache;
use crate::metrics::Metrics;
use crate::process::Process;
use crate::schedule::Schedules;
use crate::secrets::Secrets;
use crate::state::{App, AppState};
use crate::store::{new_id, BotDef, Store, StoreError};

/// What the application is built from.
pub struct Parts {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub bots: Registry,
    pub schedules: Schedules,
    pub secrets: Secrets,
}

/// Migrates the database, makes the `bots` rows follow the registry and the schedules, and
/// builds the state every route and command shares.
pub async fn assemble(parts: Parts) -> Result<AppState, StoreError> {
    let Parts {
        config,
        store,
        clock,
        bots,
        schedules,
        secrets,
    } = parts;
    let applied = store.migrate().await?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, backend = store.backend().as_str(), "database migrated");
    }
    let now = clock.now();
    let defs: Vec<BotDef> = bots
        .iter()
        .map(|b| {
            let schedule = schedules.get(b.name());
            BotDef {
                id: new_id(),
                name: b.name().to_string(),
                display_name: b.display_name().to_string(),
                description: b.description().to_string(),
                schedule_cron: schedule.map(|s| s.expr.clone()),
                next_execution_at: schedule.map(|s| s.next_after(now)),
            }
        })
        .collect();
    store.sync_bots(&defs, now).await?;
    for b in bots.iter() {
        if schedules.get(b.name()).is_none() {
            tracing::warn!(bot = b.name(), source = %schedules.source, "bot has no schedule; it runs only when called");
        }
    }

    let config = Arc::new(config);
    let schedules = Arc::new(schedules);
    let process = Arc::new(Process::default());
    let metrics = Arc::new(Metrics::default());
    let events = Events::default();
    let health = Arc::new(HealthCache::default());
    process.register_cache(health.clone());
    let engine = Arc::new(Engine::new(
        store.clone(),
        bots.clone(),
        actions::registry(),
        schedules.clone(),
        clock.clone(),
        config.clone(),
        process.clone(),
        metrics.clone(),
        events.clone(),
    ));
    Ok(AppState(Arc::new(App {
        config,
        store,
        engine,
        auth: AuthKeys::new(&secrets),
        metrics,
        health,
        process,
        clock,
        events,
        schedules,
        bots,
        started: Instant::now(),
    })))
}
