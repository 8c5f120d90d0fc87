//! The application state handlers extract: a cheap clone around one shared `App`.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

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
use crate::store::Store;

pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub auth: AuthKeys,
    pub metrics: Arc<Metrics>,
    pub health: Arc<HealthCache>,
    pub process: Arc<Process>,
    pub clock: Arc<dyn Clock>,
    pub events: Events,
    pub schedules: Arc<Schedules>,
    pub bots: Registry,
    pub started: Instant,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
