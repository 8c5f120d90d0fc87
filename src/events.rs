//! Live events (a pass finished, a bot was paused…) for `GET /api/admin/events`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub kind: &'static str,
    pub at: DateTime<Utc>,
    pub data: Value,
}

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(256).0,
        }
    }
}

impl Events {
    /// Sends to whoever listens; nobody listening is fine.
    pub fn emit(&self, kind: &'static str, at: DateTime<Utc>, data: Value) {
        let _ = self.tx.send(Arc::new(Event { kind, at, data }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
