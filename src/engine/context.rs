//! What a bot sees during a pass, and where it puts what it observed. Observations accumulate
//! here as the bot goes, so a pass cut off by its deadline still reports what it had.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::config::Config;
use crate::probes::Prober;
use crate::process::Process;
use crate::store::{Severity, Store, TargetObservation};

/// A bot could not do its job (misconfiguration, a bug, a dependency of botfleet's own that
/// failed). Not a finding: findings are what a bot *saw*. Failed passes feed the circuit breaker.
#[derive(Debug, Clone)]
pub struct BotError(pub String);

impl std::fmt::Display for BotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BotError {}

impl BotError {
    pub fn new(msg: impl Into<String>) -> Self {
        BotError(msg.into())
    }
}

/// A finding as a bot reports it. Its fingerprint — category, component and key — says which
/// open finding it is the same as on the next pass.
#[derive(Debug, Clone, Serialize)]
pub struct FindingDraft {
    pub severity: Severity,
    pub category: String,
    pub title: String,
    pub description: String,
    pub component: String,
    pub key: String,
    pub metadata: Value,
}

impl FindingDraft {
    /// `title` should not carry changing figures (they go in the description): knowledge
    /// patterns match `category: title`.
    pub fn new(severity: Severity, category: &str, title: &str) -> Self {
        Self {
            severity,
            category: category.to_string(),
            title: title.to_string(),
            description: String::new(),
            component: String::new(),
            key: String::new(),
            metadata: Value::Object(Map::new()),
        }
    }

    pub fn component(mut self, component: &str) -> Self {
        self.component = component.to_string();
        self
    }

    pub fn key(mut self, key: &str) -> Self {
        self.key = key.to_string();
        self
    }

    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    pub fn metadata(mut self, value: Value) -> Self {
        self.metadata = value;
        self
    }

    pub fn fingerprint(&self) -> String {
        format!("{}/{}/{}", self.category, self.component, self.key)
    }

    /// What knowledge patterns are matched against.
    pub fn subject(&self) -> String {
        format!("{}: {}", self.category, self.title)
    }
}

/// An action a bot took during its own checks (a retry, say), recorded with the pass.
#[derive(Debug, Clone, Serialize)]
pub struct BotAction {
    pub action_type: String,
    pub description: String,
    pub success: bool,
    pub error: Option<String>,
    /// The fingerprint of the finding it concerns, if any.
    pub fingerprint: Option<String>,
    pub metadata: Value,
}

#[derive(Debug, Default)]
pub struct Observations {
    pub checks: i64,
    pub checked_components: BTreeSet<String>,
    pub findings: Vec<FindingDraft>,
    pub notes: Vec<String>,
    pub data: Map<String, Value>,
    pub targets: Vec<TargetObservation>,
    pub actions: Vec<BotAction>,
}

pub struct PassContext {
    pub bot: String,
    /// `None` in a dry run: nothing will be recorded.
    pub execution_id: Option<String>,
    /// The bot's effective config: what is stored, else its defaults (engine keys removed).
    pub config: Value,
    pub env: Arc<Config>,
    pub http: reqwest::Client,
    /// HTTP probes with timings and certificate dates (see `probes`).
    pub prober: Arc<Prober>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub process: Arc<Process>,
    pub deadline: Instant,
    pub dry_run: bool,
    obs: Mutex<Observations>,
}

impl PassContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        bot: &str,
        execution_id: Option<String>,
        config: Value,
        env: Arc<Config>,
        http: reqwest::Client,
        prober: Arc<Prober>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        process: Arc<Process>,
        deadline: Instant,
        dry_run: bool,
    ) -> Self {
        Self {
            bot: bot.to_string(),
            execution_id,
            config,
            env,
            http,
            prober,
            store,
            clock,
            process,
            deadline,
            dry_run,
            obs: Mutex::new(Observations::default()),
        }
    }

    /// A second context over the same pass with empty observations (for re-checks).
    pub fn fresh(&self) -> PassContext {
        PassContext::new(
            &self.bot,
            self.execution_id.clone(),
            self.config.clone(),
            self.env.clone(),
            self.http.clone(),
            self.prober.clone(),
            self.store.clone(),
            self.clock.clone(),
            self.process.clone(),
            self.deadline,
            self.dry_run,
        )
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Time left before the pass deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The config as the bot's own type (already validated when it was stored).
    pub fn config_as<T: DeserializeOwned>(&self) -> Result<T, BotError> {
        serde_json::from_value(self.config.clone())
            .map_err(|e| BotError(format!("the bot's config cannot be read: {e}")))
    }

    /// Counts one check of `component`. Open findings on a checked component that this pass
    /// does not report again are auto-cleared.
    pub fn check(&self, component: &str) {
        let mut o = self.obs.lock().unwrap();
        o.checks += 1;
        o.checked_components.insert(component.to_string());
    }

    pub fn finding(&self, f: FindingDraft) {
        self.obs.lock().unwrap().findings.push(f);
    }

    pub fn note(&self, text: impl Into<String>) {
        self.obs.lock().unwrap().notes.push(text.into());
    }

    /// A figure for the report (and the execution's metadata).
    pub fn data(&self, key: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        self.obs.lock().unwrap().data.insert(key.to_string(), v);
    }

    /// A figure under a section of the report: `data[section][key] = value`.
    pub fn data_in(&self, section: &str, key: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        let mut o = self.obs.lock().unwrap();
        let entry = o
            .data
            .entry(section.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(key.to_string(), v);
        }
    }

    pub fn target(&self, t: TargetObservation) {
        self.obs.lock().unwrap().targets.push(t);
    }

    pub fn action(&self, a: BotAction) {
        self.obs.lock().unwrap().actions.push(a);
    }

    pub fn take(&self) -> Observations {
        std::mem::take(&mut *self.obs.lock().unwrap())
    }

    /// True when the pass has seen `fingerprint` (used by re-checks).
    pub fn has_finding(&self, fingerprint: &str) -> bool {
        self.obs
            .lock()
            .unwrap()
            .findings
            .iter()
            .any(|f| f.fingerprint() == fingerprint)
    }
}

/// Expands `${NAME}` from the environment, so secrets in bot config never sit in the database.
/// An unset variable is an error naming it.
pub fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        let name = &after[..end];
        let value = std::env::var(name)
            .map_err(|_| format!("the environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_changing_figures() {
        let a = FindingDraft::new(Severity::Warning, "load", "High CPU usage")
            .component("host")
            .key("cpu")
            .description("CPU at 91%");
        let b = FindingDraft::new(Severity::Error, "load", "High CPU usage")
            .component("host")
            .key("cpu")
            .description("CPU at 97%");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.subject(), "load: High CPU usage");
    }

    #[test]
    fn env_expansion_names_missing_variables() {
        std::env::set_var("BOTFLEET_TEST_TOKEN", "s3cret");
        assert_eq!(
            expand_env("Bearer ${BOTFLEET_TEST_TOKEN}").unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(expand_env("plain").unwrap(), "plain");
        let e = expand_env("${BOTFLEET_SURELY_UNSET_VAR}").unwrap_err();
        assert!(e.contains("BOTFLEET_SURELY_UNSET_VAR"));
        assert!(expand_env("${OOPS").is_err());
    }
}
