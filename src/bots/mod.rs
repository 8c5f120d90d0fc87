//! The bots. Each is one file implementing [`Bot`] and one line in [`registry`]; the engine does
//! all recording, so a bot file reads as "what it checks".

pub mod oracle;
pub mod pulse;
pub mod sentinel;
pub mod sentinel_api;
pub mod sentinel_db;
mod web;

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Config;
use crate::engine::{BotError, FindingDraft, PassContext};
use crate::error::FieldError;

/// What a re-check after a fix found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// The finding is no longer there: the fix is verified.
    Gone,
    /// Still there.
    Present,
    /// The re-check could not tell (the reason says why).
    Unknown(String),
}

#[async_trait]
pub trait Bot: Send + Sync + 'static {
    /// URL-safe: the bot's path is `/api/bots/{name}`.
    fn name(&self) -> &'static str;
    fn display_name(&self) -> &'static str;
    fn description(&self) -> &'static str;

    /// The config used while none is stored, from the environment.
    fn default_config(&self, env: &Config) -> Value;

    /// Problems with a submitted config, each naming its field; empty when it is valid.
    fn validate_config(&self, config: &Value) -> Vec<FieldError>;

    /// One pass: check, and report through `ctx` — `ctx.check(component)` once a check of a
    /// component is complete, `ctx.finding(..)` for each problem seen, `ctx.data(..)` for the
    /// figures. An `Err` means the bot could not do its job, not that it found problems.
    async fn run(&self, ctx: &PassContext) -> Result<(), BotError>;

    /// Re-checks one finding after a fix was applied. By default the whole pass runs again,
    /// recording nothing, and the finding's fingerprint is looked for.
    async fn recheck(
        &self,
        ctx: &PassContext,
        finding: &FindingDraft,
    ) -> Result<Recheck, BotError> {
        let fresh = ctx.fresh();
        self.run(&fresh).await?;
        Ok(if fresh.has_finding(&finding.fingerprint()) {
            Recheck::Present
        } else {
            Recheck::Gone
        })
    }
}

/// The bots this build knows, in a fixed order.
#[derive(Clone)]
pub struct Registry {
    bots: Vec<Arc<dyn Bot>>,
}

impl Registry {
    pub fn new(bots: Vec<Arc<dyn Bot>>) -> Self {
        Self { bots }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Bot>> {
        self.bots.iter().find(|b| b.name() == name).cloned()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.bots.iter().map(|b| b.name()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Bot>> {
        self.bots.iter()
    }
}

/// Every bot botfleet ships.
pub fn registry() -> Registry {
    Registry::new(vec![
        Arc::new(pulse::Pulse::default()),
        Arc::new(sentinel::Sentinel),
        Arc::new(sentinel_api::SentinelApi),
        Arc::new(sentinel_db::SentinelDb),
        Arc::new(oracle::Oracle),
    ])
}

/// Reads a config document as `T`, turning serde's complaint into a field error with its path.
pub fn parse_config<T: DeserializeOwned>(config: &Value) -> Result<T, Vec<FieldError>> {
    let de = config.clone();
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "(document)".to_string()
        } else {
            path
        };
        vec![FieldError::new(field, e.into_inner().to_string())]
    })
}

/// Helpers for the checks every bot's validation repeats.
pub mod check {
    use crate::error::FieldError;

    pub fn non_negative(errors: &mut Vec<FieldError>, field: &str, v: f64) {
        if !(v.is_finite() && v >= 0.0) {
            errors.push(FieldError::new(
                field,
                format!("must be zero or more, got {v}"),
            ));
        }
    }

    pub fn percent(errors: &mut Vec<FieldError>, field: &str, v: f64) {
        if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
            errors.push(FieldError::new(
                field,
                format!("must be a percentage from 0 to 100, got {v}"),
            ));
        }
    }

    pub fn http_status(errors: &mut Vec<FieldError>, field: &str, v: u16) {
        if !(100..=599).contains(&v) {
            errors.push(FieldError::new(
                field,
                "must be an HTTP status from 100 to 599",
            ));
        }
    }

    /// A probe's timeout: at least a millisecond, at most two minutes.
    pub fn timeout_ms(errors: &mut Vec<FieldError>, field: &str, ms: u64) {
        if ms == 0 || ms > 120_000 {
            errors.push(FieldError::new(
                field,
                "must be from 1 to 120000 milliseconds",
            ));
        }
    }

    pub fn http_url(errors: &mut Vec<FieldError>, field: &str, v: &str) {
        // `${VAR}` may stand for part of the URL; check what is around it.
        let probe = v.replace("${", "x").replace('}', "");
        match reqwest::Url::parse(&probe) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => errors.push(FieldError::new(
                field,
                format!("must be an http(s) URL, got {v:?}"),
            )),
        }
    }
}
