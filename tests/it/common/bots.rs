//! Scripted bots for engine tests. Each reads its knobs (delay, failure, findings) on every pass.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use botfleet::bots::{Bot, Registry};
use botfleet::config::Config;
use botfleet::engine::{BotError, FindingDraft, PassContext};
use botfleet::error::FieldError;
use botfleet::store::Severity;
use serde_json::{json, Value};

#[derive(Default)]
pub struct Knobs {
    /// Sleep before doing anything.
    pub delay_ms: AtomicU64,
    /// Sleep after checking and reporting (to be cut off by a deadline with results in hand).
    pub hang_ms: AtomicU64,
    pub fail: AtomicBool,
    pub panic: AtomicBool,
    /// What the next passes report: (component checked, findings).
    pub components: Mutex<Vec<String>>,
    pub findings: Mutex<Vec<FindingDraft>>,
    pub runs: AtomicU64,
}

impl Knobs {
    pub fn set_findings(&self, f: Vec<FindingDraft>) {
        *self.findings.lock().unwrap() = f;
    }

    pub fn set_components(&self, c: &[&str]) {
        *self.components.lock().unwrap() = c.iter().map(|s| s.to_string()).collect();
    }
}

#[derive(Default)]
pub struct AllKnobs {
    by_bot: Mutex<HashMap<&'static str, Arc<Knobs>>>,
}

impl AllKnobs {
    pub fn of(&self, bot: &'static str) -> Arc<Knobs> {
        self.by_bot.lock().unwrap().entry(bot).or_default().clone()
    }
}

struct Scripted {
    name: &'static str,
    knobs: Arc<Knobs>,
}

#[async_trait]
impl Bot for Scripted {
    fn name(&self) -> &'static str {
        self.name
    }

    fn display_name(&self) -> &'static str {
        self.name
    }

    fn description(&self) -> &'static str {
        "a scripted bot for tests"
    }

    fn default_config(&self, _env: &Config) -> Value {
        json!({})
    }

    fn validate_config(&self, config: &Value) -> Vec<FieldError> {
        match config.get("knob") {
            Some(v) if !v.is_number() => vec![FieldError::new("knob", "must be a number")],
            _ => Vec::new(),
        }
    }

    async fn run(&self, ctx: &PassContext) -> Result<(), BotError> {
        let k = &self.knobs;
        k.runs.fetch_add(1, Ordering::SeqCst);
        let delay = k.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if k.panic.load(Ordering::SeqCst) {
            panic!("the test bot was told to panic");
        }
        if k.fail.load(Ordering::SeqCst) {
            return Err(BotError::new("the test bot was told to fail"));
        }
        let findings = k.findings.lock().unwrap().clone();
        for f in findings {
            ctx.finding(f);
        }
        let components = k.components.lock().unwrap().clone();
        if components.is_empty() {
            ctx.check("core");
        }
        for c in components {
            ctx.check(&c);
        }
        ctx.data("answer", 42);
        let hang = k.hang_ms.load(Ordering::SeqCst);
        if hang > 0 {
            tokio::time::sleep(Duration::from_millis(hang)).await;
        }
        Ok(())
    }
}

/// Reports high CPU unless botfleet is shedding load — so the seeded `shed_load` knowledge
/// entry fixes it, and the re-check verifies the fix.
struct ShedCheck;

#[async_trait]
impl Bot for ShedCheck {
    fn name(&self) -> &'static str {
        "shedcheck"
    }

    fn display_name(&self) -> &'static str {
        "Shed check"
    }

    fn description(&self) -> &'static str {
        "reports load until load is shed"
    }

    fn default_config(&self, _env: &Config) -> Value {
        json!({})
    }

    fn validate_config(&self, _config: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    async fn run(&self, ctx: &PassContext) -> Result<(), BotError> {
        if ctx.process.shed.remaining(ctx.now()).is_none() {
            ctx.finding(
                FindingDraft::new(Severity::Warning, "load", "High CPU usage")
                    .component("host")
                    .key("cpu")
                    .description("simulated: CPU at 93%"),
            );
        }
        ctx.check("host");
        Ok(())
    }
}

/// The real bots, and the scripted ones.
pub fn registry(knobs: Arc<AllKnobs>) -> Registry {
    let mut bots: Vec<Arc<dyn Bot>> = botfleet::bots::registry().iter().cloned().collect();
    for name in ["steady", "slow", "flaky"] {
        bots.push(Arc::new(Scripted {
            name,
            knobs: knobs.of(name),
        }));
    }
    bots.push(Arc::new(ShedCheck));
    Registry::new(bots)
}

pub fn finding(severity: Severity, key: &str) -> FindingDraft {
    FindingDraft::new(severity, "test", &format!("Broken {key}"))
        .component("core")
        .key(key)
        .description(format!("{key} is broken"))
}
