//! The action registry: what self-healing can do. A knowledge entry names an action by type and
//! gives it parameters; the engine applies it, re-checks, and records the result.

pub mod archive_records;
pub mod block_ip;
pub mod drop_caches;
pub mod end_idle_sessions;
pub mod http_hook;
pub mod purge_cache;
pub mod shed_load;
pub mod vacuum;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::engine::{FindingDraft, PassContext};
use crate::error::FieldError;

pub struct ActionContext<'a> {
    pub pass: &'a PassContext,
    pub finding: &'a FindingDraft,
    /// The recorded finding's id (`None` in a dry run).
    pub finding_id: Option<&'a str>,
}

#[async_trait]
pub trait Action: Send + Sync + 'static {
    /// The `type` a knowledge entry's action names.
    fn name(&self) -> &'static str;

    /// Problems with the parameters, each naming its field; empty when valid.
    fn validate_params(&self, params: &Value) -> Vec<FieldError>;

    /// Does it. `Ok` says what was done; `Err` says why it could not be.
    async fn apply(&self, cx: &ActionContext<'_>, params: &Value) -> Result<String, String>;
}

#[derive(Clone)]
pub struct Actions {
    list: Vec<Arc<dyn Action>>,
}

impl Actions {
    pub fn new(list: Vec<Arc<dyn Action>>) -> Self {
        Self { list }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Action>> {
        self.list.iter().find(|a| a.name() == name).cloned()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|a| a.name()).collect()
    }

    /// Checks an action document `{"type": ..., "params": {...}}`.
    pub fn validate(&self, action: &Value) -> Vec<FieldError> {
        let Some(obj) = action.as_object() else {
            return vec![FieldError::new(
                "action",
                "must be an object like {\"type\": \"shed_load\", \"params\": {}}",
            )];
        };
        if let Some(extra) = obj.keys().find(|k| *k != "type" && *k != "params") {
            return vec![FieldError::new(
                format!("action.{extra}"),
                "unknown field; expected type and params",
            )];
        }
        let Some(kind) = obj.get("type").and_then(Value::as_str) else {
            return vec![FieldError::new("action.type", "must name an action")];
        };
        let Some(a) = self.get(kind) else {
            return vec![FieldError::new(
                "action.type",
                format!(
                    "unknown action {kind:?}; known: {}",
                    self.names().join(", ")
                ),
            )];
        };
        let params = obj
            .get("params")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        if !params.is_object() {
            return vec![FieldError::new("action.params", "must be an object")];
        }
        a.validate_params(&params)
            .into_iter()
            .map(|e| FieldError::new(format!("action.params.{}", e.field), e.problem))
            .collect()
    }
}

/// Every action botfleet ships.
pub fn registry() -> Actions {
    Actions::new(vec![
        Arc::new(shed_load::ShedLoad),
        Arc::new(drop_caches::DropCaches),
        Arc::new(http_hook::HttpHook),
        Arc::new(purge_cache::PurgeCache),
        Arc::new(vacuum::Vacuum),
        Arc::new(archive_records::ArchiveRecords),
        Arc::new(end_idle_sessions::EndIdleSessions),
        Arc::new(block_ip::BlockIp),
        Arc::new(block_ip::RateLimit),
    ])
}
