//! `drop_caches`: empties botfleet's in-process caches.

use async_trait::async_trait;
use serde_json::Value;

use super::{Action, ActionContext};
use crate::error::FieldError;

pub struct DropCaches;

#[async_trait]
impl Action for DropCaches {
    fn name(&self) -> &'static str {
        "drop_caches"
    }

    fn validate_params(&self, params: &Value) -> Vec<FieldError> {
        match params.as_object() {
            Some(m) if m.is_empty() => Vec::new(),
            _ => vec![FieldError::new(
                "(params)",
                "drop_caches takes no parameters",
            )],
        }
    }

    async fn apply(&self, cx: &ActionContext<'_>, _params: &Value) -> Result<String, String> {
        let dropped = cx.pass.process.drop_caches();
        Ok(format!("dropped in-process caches: {}", dropped.join(", ")))
    }
}
