//! `purge_cache`: calls the `purge_hook` in the bot's own config (sentinel, sentinel-api), so the
//! knowledge entry stays the same whatever the site's cache is.

use async_trait::async_trait;
use serde_json::Value;

use super::http_hook::HookSpec;
use super::{Action, ActionContext};
use crate::error::FieldError;

pub struct PurgeCache;

#[async_trait]
impl Action for PurgeCache {
    fn name(&self) -> &'static str {
        "purge_cache"
    }

    fn validate_params(&self, params: &Value) -> Vec<FieldError> {
        match params.as_object() {
            Some(m) if m.is_empty() => Vec::new(),
            _ => vec![FieldError::new(
                "(params)",
                "purge_cache takes no parameters: the hook is purge_hook in the bot's config",
            )],
        }
    }

    async fn apply(&self, cx: &ActionContext<'_>, _params: &Value) -> Result<String, String> {
        let hook = cx.pass.config.get("purge_hook").filter(|h| !h.is_null()).ok_or_else(|| {
            format!(
                "{} has no purge_hook in its config; add one (method, url, headers) for self-healing to purge the cache",
                cx.pass.bot
            )
        })?;
        let spec: HookSpec =
            serde_json::from_value(hook.clone()).map_err(|e| format!("purge_hook: {e}"))?;
        spec.call(&cx.pass.http)
            .await
            .map(|done| format!("purge hook: {done}"))
    }
}
