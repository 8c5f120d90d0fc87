//! `shed_load`: for a while, non-essential routes answer 503 with `Retry-After`; triggers, health
//! and metrics keep working (see `process::Shed`).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{Action, ActionContext};
use crate::error::FieldError;

pub struct ShedLoad;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_secs")]
    duration_secs: u64,
}

fn default_secs() -> u64 {
    300
}

#[async_trait]
impl Action for ShedLoad {
    fn name(&self) -> &'static str {
        "shed_load"
    }

    fn validate_params(&self, params: &Value) -> Vec<FieldError> {
        match crate::bots::parse_config::<Params>(params) {
            Err(e) => e,
            Ok(p) if p.duration_secs == 0 || p.duration_secs > 86_400 => vec![FieldError::new(
                "duration_secs",
                "must be between 1 and 86400 seconds",
            )],
            Ok(_) => Vec::new(),
        }
    }

    async fn apply(&self, cx: &ActionContext<'_>, params: &Value) -> Result<String, String> {
        let p: Params = serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
        let until = cx.pass.now() + chrono::Duration::seconds(p.duration_secs as i64);
        cx.pass.process.shed.activate(until, &cx.finding.subject());
        Ok(format!(
            "shedding load until {}: non-essential routes answer 503 with Retry-After",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
    }
}
