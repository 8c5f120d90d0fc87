//! One pass (DESIGN §4): refuse or lease, run under a deadline, reconcile findings, heal, finish
//! in one transaction, answer. Bots only observe; everything recorded is recorded here.

mod circuit;
mod context;
pub mod heal;
pub mod report;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

pub use context::{expand_env, BotAction, BotError, FindingDraft, Observations, PassContext};
pub use report::{execution_report, round1, PassReport, ReportAction, ReportFinding, SkipReport};

use crate::actions::Actions;
use crate::bots::{Bot, Registry};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::FieldError;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::process::Process;
use crate::schedule::Schedules;
use crate::store::{
    new_id, BeginOutcome, BeginPass, ExecStatus, FindingQuery, FinishOutcome, FinishPass,
    NewAction, NewFinding, Reconcile, RecordFindings, RecordedFinding, Started, Store, StoreError,
};

/// Config keys the engine reads itself; the rest belongs to the bot.
pub const ENGINE_KEYS: &[&str] = &["timeout_ms"];

#[derive(Debug, Clone)]
pub struct TriggerRequest {
    pub bot: String,
    pub force: bool,
    pub dry_run: bool,
    /// `false`: answer once the lease is taken and run the pass in the background.
    pub wait: bool,
    pub idempotency_key: Option<String>,
    /// `cron`, `token:<subject>`, `scheduler`, `cli`…
    pub triggered_by: String,
}

impl TriggerRequest {
    pub fn new(bot: &str, triggered_by: &str) -> Self {
        Self {
            bot: bot.to_string(),
            force: false,
            dry_run: false,
            wait: true,
            idempotency_key: None,
            triggered_by: triggered_by.to_string(),
        }
    }
}

#[derive(Debug)]
pub enum TriggerOutcome {
    Report(Box<PassReport>),
    Skipped(SkipReport),
    /// The same `Idempotency-Key` was served before: its answer, again.
    Replayed(Value),
    /// `wait=false`: the pass is running.
    Accepted {
        execution_id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no bot named {0:?}")]
    UnknownBot(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub bots: Registry,
    pub actions: Actions,
    pub schedules: Arc<Schedules>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub process: Arc<Process>,
    pub metrics: Arc<Metrics>,
    pub events: Events,
    pub http: reqwest::Client,
    pub prober: Arc<crate::probes::Prober>,
    pub knowledge: Arc<heal::KnowledgeCache>,
    background: Background,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        bots: Registry,
        actions: Actions,
        schedules: Arc<Schedules>,
        clock: Arc<dyn Clock>,
        config: Arc<Config>,
        process: Arc<Process>,
        metrics: Arc<Metrics>,
        events: Events,
    ) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("botfleet/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with default TLS settings");
        let knowledge = Arc::new(heal::KnowledgeCache::default());
        process.register_cache(knowledge.clone());
        // PROBE_CA_FILE was checked when the configuration was read.
        let prober = Arc::new(
            crate::probes::Prober::new(config.probe_ca_file.as_deref())
                .expect("the probe TLS set-up was validated"),
        );
        Self {
            store,
            bots,
            actions,
            schedules,
            clock,
            config,
            process,
            metrics,
            events,
            http,
            prober,
            knowledge,
            background: Background::default(),
        }
    }

    /// A bot's effective config: what is stored, else its defaults; with `timeout_ms`.
    pub fn effective_config(&self, bot: &dyn Bot, stored: Option<&Value>) -> Value {
        let mut config = stored
            .cloned()
            .unwrap_or_else(|| bot.default_config(&self.config));
        if let Value::Object(map) = &mut config {
            map.entry("timeout_ms")
                .or_insert_with(|| json!(self.config.bot_timeout_ms));
        }
        config
    }

    /// Checks a config document for `bot`: the engine's keys, then the bot's own.
    pub fn validate_config(&self, bot: &dyn Bot, config: &Value) -> Vec<FieldError> {
        let Some(map) = config.as_object() else {
            return vec![FieldError::new(
                "(document)",
                "a bot config must be a JSON object",
            )];
        };
        let mut errors = Vec::new();
        if let Some(t) = map.get("timeout_ms") {
            match t.as_i64() {
                Some(ms) if (100..=900_000).contains(&ms) => {}
                _ => errors.push(FieldError::new(
                    "timeout_ms",
                    format!("must be a whole number of milliseconds from 100 to 900000, got {t}"),
                )),
            }
        }
        errors.extend(bot.validate_config(&bot_part(config)));
        errors
    }

    /// Runs (or refuses) one pass of `req.bot`.
    pub async fn trigger(
        self: &Arc<Self>,
        req: TriggerRequest,
    ) -> Result<TriggerOutcome, EngineError> {
        let bot = self
            .bots
            .get(&req.bot)
            .ok_or_else(|| EngineError::UnknownBot(req.bot.clone()))?;
        if req.dry_run {
            return self.dry_run(bot, &req).await;
        }
        let now = self.clock.now();
        let schedule = self.schedules.get(bot.name());
        let begin = BeginPass {
            bot: bot.name().to_string(),
            execution_id: new_id(),
            slot: schedule.map(|s| s.slot_at_or_before(now)),
            force: req.force,
            idempotency_key: req.idempotency_key.clone(),
            triggered_by: req.triggered_by.clone(),
            default_timeout_ms: self.config.bot_timeout_ms as i64,
            lease_grace_ms: self.config.lease_grace_ms as i64,
        };
        let outcome = match self.store.begin_pass(&begin, self.clock.as_ref()).await {
            Ok(o) => o,
            Err(e) => {
                self.metrics.trigger(bot.name(), "error");
                return Err(e.into());
            }
        };
        match outcome {
            BeginOutcome::UnknownBot => Err(EngineError::Internal(format!(
                "{} is registered but has no row in the bots table; restart botfleet to sync it",
                bot.name()
            ))),
            BeginOutcome::Skipped(skip) => {
                self.metrics.trigger(bot.name(), skip.reason());
                tracing::info!(bot = bot.name(), reason = skip.reason(), trigger = %req.triggered_by, "pass skipped");
                let report = SkipReport::new(bot.name(), &skip, schedule.map(|s| s.expr.as_str()));
                self.events.emit("pass_skipped", now, json!(report));
                Ok(TriggerOutcome::Skipped(report))
            }
            BeginOutcome::Replay { execution_id } => {
                self.metrics.trigger(bot.name(), "replayed");
                let row = self
                    .store
                    .get_execution(&execution_id)
                    .await?
                    .ok_or_else(|| {
                        EngineError::Internal(format!("execution {execution_id} vanished"))
                    })?;
                let mut report = execution_report(&row);
                if let Value::Object(m) = &mut report {
                    m.insert("replayed".into(), Value::Bool(true));
                }
                Ok(TriggerOutcome::Replayed(report))
            }
            BeginOutcome::Started(started) => {
                if let Some(old) = &started.abandoned {
                    tracing::warn!(bot = bot.name(), execution_id = %old, "took over an expired lease; that execution is abandoned");
                }
                if req.wait {
                    let report = self.run_pass(bot, *started, &req).await?;
                    Ok(TriggerOutcome::Report(Box::new(report)))
                } else {
                    self.metrics.trigger(bot.name(), "accepted");
                    let execution_id = started.execution_id.clone();
                    let engine = self.clone();
                    self.background.spawn(async move {
                        if let Err(e) = engine.run_pass(bot, *started, &req).await {
                            tracing::error!(error = %e, "background pass could not be recorded");
                        }
                    });
                    Ok(TriggerOutcome::Accepted { execution_id })
                }
            }
        }
    }

    async fn run_pass(
        &self,
        bot: Arc<dyn Bot>,
        started: Started,
        req: &TriggerRequest,
    ) -> Result<PassReport, EngineError> {
        let span =
            tracing::info_span!("pass", bot = bot.name(), execution_id = %started.execution_id);
        self.pass(bot, started, req).instrument(span).await
    }

    async fn pass(
        &self,
        bot: Arc<dyn Bot>,
        s: Started,
        req: &TriggerRequest,
    ) -> Result<PassReport, EngineError> {
        let t0 = std::time::Instant::now();
        let name = bot.name();
        tracing::info!(trigger = %req.triggered_by, forced = req.force, trial = s.trial, "pass started");
        self.events.emit(
            "pass_started",
            s.started_at,
            json!({"bot": name, "execution_id": s.execution_id}),
        );

        // 4. Run under the deadline.
        let config = bot_part(&self.effective_config(bot.as_ref(), s.bot.config_value()));
        let deadline = Instant::now() + Duration::from_millis(s.timeout_ms as u64);
        let ctx = self.context(name, Some(s.execution_id.clone()), config, deadline, false);
        let (status, error) = match tokio::time::timeout_at(deadline, guarded(bot.run(&ctx))).await
        {
            Ok(Ok(())) => (ExecStatus::Success, None),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "bot failed");
                (ExecStatus::Failed, Some(e.0))
            }
            Err(_) => {
                tracing::warn!(timeout_ms = s.timeout_ms, "pass deadline reached");
                (
                    ExecStatus::Timeout,
                    Some(format!(
                        "the pass ran past its {} ms deadline and was stopped; what it had checked by then is recorded",
                        s.timeout_ms
                    )),
                )
            }
        };
        let obs = ctx.take();
        let drafts = dedupe(obs.findings);

        // 5. Reconcile findings (only when there is something to reconcile).
        let mut recorded: Vec<(FindingDraft, RecordedFinding)> = Vec::new();
        let mut cleared = Vec::new();
        if !drafts.is_empty() || s.open_findings > 0 {
            let request = RecordFindings {
                bot_id: s.bot.id.clone(),
                execution_id: s.execution_id.clone(),
                now: self.clock.now(),
                findings: drafts
                    .iter()
                    .map(|d| NewFinding {
                        id: new_id(),
                        severity: d.severity,
                        category: d.category.clone(),
                        title: d.title.clone(),
                        description: d.description.clone(),
                        component: d.component.clone(),
                        fingerprint: d.fingerprint(),
                        metadata: d.metadata.clone(),
                    })
                    .collect(),
                reconcile: Reconcile {
                    components: obs.checked_components.iter().cloned().collect(),
                    seen_fingerprints: drafts.iter().map(|d| d.fingerprint()).collect(),
                },
            };
            let r = self.store.record_findings(&request).await?;
            recorded = drafts.into_iter().zip(r.findings).collect();
            cleared = r.cleared;
        }

        // 6. Heal.
        let healed = heal::heal(
            self,
            &ctx,
            bot.as_ref(),
            &s.bot.id,
            &s.execution_id,
            &recorded,
        )
        .await?;

        // Actions the bot took itself, tied to their findings.
        let by_fingerprint: HashMap<String, String> = recorded
            .iter()
            .map(|(d, r)| (d.fingerprint(), r.id.clone()))
            .collect();
        let completed_at = self.clock.now();
        let bot_actions: Vec<NewAction> = obs
            .actions
            .iter()
            .map(|a| NewAction {
                id: new_id(),
                bot_id: s.bot.id.clone(),
                execution_id: s.execution_id.clone(),
                finding_id: a
                    .fingerprint
                    .as_ref()
                    .and_then(|f| by_fingerprint.get(f).cloned()),
                action_type: a.action_type.clone(),
                description: a.description.clone(),
                success: a.success,
                error_message: a.error.clone(),
                metadata: a.metadata.clone(),
                knowledge_id: None,
                verified: None,
                taken_at: completed_at,
            })
            .collect();

        // 7. Finish in one transaction.
        let elapsed = t0.elapsed();
        let findings: Vec<ReportFinding> = recorded
            .iter()
            .map(|(d, r)| ReportFinding {
                id: Some(r.id.clone()),
                fingerprint: r.fingerprint.clone(),
                severity: r.severity.clone(),
                category: d.category.clone(),
                title: d.title.clone(),
                description: d.description.clone(),
                component: d.component.clone(),
                state: if healed.fixed.contains(&r.id) {
                    "auto-fixed".into()
                } else if r.occurrences == 1 {
                    "new".into()
                } else {
                    "ongoing".into()
                },
                occurrences: r.occurrences,
                metadata: d.metadata.clone(),
            })
            .collect();
        let mut actions = healed.actions;
        actions.extend(bot_actions.iter().map(|a| ReportAction {
            id: a.id.clone(),
            action_type: a.action_type.clone(),
            description: a.description.clone(),
            finding_id: a.finding_id.clone(),
            knowledge_id: None,
            success: a.success,
            verified: None,
            error: a.error_message.clone(),
        }));
        for a in &bot_actions {
            self.metrics.action(name, &a.action_type, a.success);
        }
        let mut notes = obs.notes;
        notes.extend(healed.notes);
        let mut report = PassReport {
            execution_id: Some(s.execution_id.clone()),
            bot: name.to_string(),
            status: status.as_str().to_string(),
            started_at: s.started_at,
            completed_at,
            execution_time_ms: elapsed.as_millis() as i64,
            checks_performed: obs.checks,
            issues_found: findings.len() as i64,
            actions_taken: actions.len() as i64,
            findings,
            actions,
            resolved: cleared.clone(),
            notes,
            data: obs.data,
            error: error.clone(),
            dry_run: false,
            forced: req.force,
            slot_at: self
                .schedules
                .get(name)
                .map(|sch| sch.slot_at_or_before(s.started_at)),
            triggered_by: req.triggered_by.clone(),
            planned_actions: Vec::new(),
            replayed: false,
        };
        let circuit = circuit::after_pass(
            s.bot.consecutive_failures,
            s.trial,
            status,
            completed_at,
            self.config.circuit_failure_threshold,
            self.config.circuit_open_secs,
        );
        let finish = FinishPass {
            execution_id: s.execution_id.clone(),
            bot_id: s.bot.id.clone(),
            now: completed_at,
            status,
            execution_time_ms: report.execution_time_ms,
            checks_performed: report.checks_performed,
            issues_found: report.issues_found,
            actions_taken: report.actions_taken,
            error_message: error,
            metadata: json!({ "report": stored_report(&report) }),
            next_execution_at: self
                .schedules
                .get(name)
                .map(|sch| sch.next_after(completed_at)),
            circuit: circuit.clone(),
            issues_detected: recorded.iter().filter(|(_, r)| r.occurrences == 1).count() as i64,
            issues_resolved: (healed.fixed.len() + cleared.len()) as i64,
            actions: bot_actions,
            targets: obs.targets,
        };
        match self.store.finish_pass(&finish).await? {
            FinishOutcome::Recorded => {}
            FinishOutcome::LeaseLost => {
                tracing::warn!("the pass finished after its lease expired; kept as abandoned");
                report.status = ExecStatus::Abandoned.as_str().into();
                report.notes.push(
                    "this pass outlived its lease and another caller marked it abandoned; its result is kept in the execution's metadata but not counted".into(),
                );
            }
        }
        if circuit.state == crate::store::CircuitState::Open {
            tracing::warn!(until = ?circuit.open_until, failures = circuit.consecutive_failures, "circuit opened");
        }
        self.process.changed();
        self.metrics.run(name, status.as_str(), elapsed);
        self.metrics.trigger(name, status.as_str());
        tracing::info!(
            status = %report.status,
            ms = report.execution_time_ms,
            checks = report.checks_performed,
            issues = report.issues_found,
            actions = report.actions_taken,
            "pass finished"
        );
        self.events.emit(
            "pass_finished",
            completed_at,
            json!({
                "bot": name,
                "execution_id": s.execution_id,
                "status": report.status,
                "issues_found": report.issues_found,
                "actions_taken": report.actions_taken,
            }),
        );
        Ok(report)
    }

    /// Runs the checks and records nothing: no lease, no execution, no action.
    async fn dry_run(
        &self,
        bot: Arc<dyn Bot>,
        req: &TriggerRequest,
    ) -> Result<TriggerOutcome, EngineError> {
        let name = bot.name();
        let row = self.store.get_bot(name).await?.ok_or_else(|| {
            EngineError::Internal(format!(
                "{name} has no row in the bots table; restart botfleet to sync it"
            ))
        })?;
        let started_at = self.clock.now();
        let t0 = std::time::Instant::now();
        let timeout_ms =
            crate::store::pass_timeout_ms(row.config_value(), self.config.bot_timeout_ms as i64);
        let config = bot_part(&self.effective_config(bot.as_ref(), row.config_value()));
        let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
        let ctx = self.context(name, None, config, deadline, true);
        let (status, error) = match tokio::time::timeout_at(deadline, guarded(bot.run(&ctx))).await
        {
            Ok(Ok(())) => (ExecStatus::Success, None),
            Ok(Err(e)) => (ExecStatus::Failed, Some(e.0)),
            Err(_) => (
                ExecStatus::Timeout,
                Some(format!("ran past its {timeout_ms} ms deadline")),
            ),
        };
        let obs = ctx.take();
        let drafts = dedupe(obs.findings);
        let open = self
            .store
            .list_findings(&FindingQuery {
                bot: Some(name.to_string()),
                open: Some(true),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        let open: HashMap<&str, (&str, i64)> = open
            .iter()
            .map(|f| (f.fingerprint.as_str(), (f.id.as_str(), f.occurrences)))
            .collect();
        let planned = heal::plan(self, &drafts).await?;
        let findings: Vec<ReportFinding> = drafts
            .iter()
            .map(|d| {
                let fp = d.fingerprint();
                let known = open.get(fp.as_str());
                ReportFinding {
                    id: known.map(|(id, _)| id.to_string()),
                    fingerprint: fp,
                    severity: d.severity.as_str().into(),
                    category: d.category.clone(),
                    title: d.title.clone(),
                    description: d.description.clone(),
                    component: d.component.clone(),
                    state: if known.is_some() {
                        "ongoing".into()
                    } else {
                        "new".into()
                    },
                    occurrences: known.map(|(_, n)| n + 1).unwrap_or(1),
                    metadata: d.metadata.clone(),
                }
            })
            .collect();
        self.metrics.trigger(name, "dry_run");
        let mut notes = obs.notes;
        notes.push("dry run: nothing was recorded and no action was taken".into());
        Ok(TriggerOutcome::Report(Box::new(PassReport {
            execution_id: None,
            bot: name.to_string(),
            status: status.as_str().into(),
            started_at,
            completed_at: self.clock.now(),
            execution_time_ms: t0.elapsed().as_millis() as i64,
            checks_performed: obs.checks,
            issues_found: findings.len() as i64,
            actions_taken: 0,
            findings,
            actions: Vec::new(),
            resolved: Vec::new(),
            notes,
            data: obs.data,
            error,
            dry_run: true,
            forced: req.force,
            slot_at: self
                .schedules
                .get(name)
                .map(|s| s.slot_at_or_before(started_at)),
            triggered_by: req.triggered_by.clone(),
            planned_actions: planned,
            replayed: false,
        })))
    }

    fn context(
        &self,
        bot: &str,
        execution_id: Option<String>,
        config: Value,
        deadline: Instant,
        dry_run: bool,
    ) -> PassContext {
        PassContext::new(
            bot,
            execution_id,
            config,
            self.config.clone(),
            self.http.clone(),
            self.prober.clone(),
            self.store.clone(),
            self.clock.clone(),
            self.process.clone(),
            deadline,
            dry_run,
        )
    }

    /// Marks abandoned every execution whose lease expired (run periodically and at start).
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let abandoned = self.store.abandon_expired(self.clock.now()).await?;
        for (bot, execution_id) in &abandoned {
            tracing::warn!(bot = %bot, execution_id = %execution_id, "lease expired; execution marked abandoned");
        }
        if !abandoned.is_empty() {
            self.process.changed();
        }
        Ok(abandoned.len())
    }

    /// Keeps target history bounded: hourly stats older than 48 hours fold into daily rows,
    /// daily rows older than 400 days go, targets not checked for 30 days are forgotten.
    pub async fn fold_history(&self) -> Result<crate::store::FoldReport, StoreError> {
        let now = self.clock.now();
        let report = self
            .store
            .fold_target_stats(
                now - chrono::Duration::hours(48),
                now - chrono::Duration::days(400),
                now - chrono::Duration::days(30),
            )
            .await?;
        if report.hourly_rows_folded > 0
            || report.targets_forgotten > 0
            || report.daily_rows_dropped > 0
        {
            tracing::info!(
                hourly_rows_folded = report.hourly_rows_folded,
                daily_rows_written = report.daily_rows_written,
                daily_rows_dropped = report.daily_rows_dropped,
                targets_forgotten = report.targets_forgotten,
                "target history folded"
            );
        }
        Ok(report)
    }

    /// Keeps security records bounded: expired blocks, request counts older than a day, and
    /// audit entries older than `AUDIT_RETENTION_DAYS` go.
    pub async fn prune_security(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let dropped = self
            .store
            .prune_security(
                now,
                now - chrono::Duration::days(1),
                now - chrono::Duration::days(self.config.audit_retention_days as i64),
            )
            .await?;
        if dropped > 0 {
            tracing::info!(
                events = dropped,
                days = self.config.audit_retention_days,
                "old audit entries dropped"
            );
        }
        Ok(dropped)
    }

    /// Waits (up to `limit`) for passes running in the background to finish.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.background.wait_idle(limit).await
    }
}

/// Reports kept with executions stay small: past this, the bot's figures (`data`) are left
/// out of the stored copy. Per-target results live on in `bot_targets` and their stats.
const STORED_DATA_LIMIT: usize = 64 * 1024;

/// The report as the execution keeps it.
fn stored_report(report: &PassReport) -> Value {
    let size = json_size(&report.data);
    let mut kept = report.clone_without_data();
    if size > STORED_DATA_LIMIT {
        let sections: Vec<&str> = report.data.keys().map(String::as_str).collect();
        kept.data.insert(
            "omitted".into(),
            json!(format!(
                "{size} bytes of figures ({}) were sent with the answer but not stored; per-target results are at /api/admin/targets",
                sections.join(", ")
            )),
        );
    } else {
        kept.data = report.data.clone();
    }
    json!(kept)
}

/// Serialised size, without keeping the bytes.
fn json_size(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The config without the engine's keys: what the bot itself reads and validates.
pub fn bot_part(config: &Value) -> Value {
    match config {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !ENGINE_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A bot that panics fails its pass like one that returned an error; the pass still finishes
/// and releases its lease.
async fn guarded(
    run: impl std::future::Future<Output = Result<(), BotError>>,
) -> Result<(), BotError> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(run)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "no message".into());
            Err(BotError(format!("the bot panicked: {what}")))
        })
}

/// One finding per fingerprint, the most severe kept.
fn dedupe(findings: Vec<FindingDraft>) -> Vec<FindingDraft> {
    let mut out: Vec<FindingDraft> = Vec::with_capacity(findings.len());
    for f in findings {
        match out.iter_mut().find(|o| o.fingerprint() == f.fingerprint()) {
            Some(existing) if f.severity > existing.severity => *existing = f,
            Some(_) => {}
            None => out.push(f),
        }
    }
    out
}

/// Passes running after their trigger answered (`wait=false`), so shutdown can wait for them.
#[derive(Default)]
struct Background {
    running: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Background {
    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let running = self.running.clone();
        let idle = self.idle.clone();
        running.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            fut.await;
            if running.fetch_sub(1, Ordering::SeqCst) == 1 {
                idle.notify_waiters();
            }
        });
    }

    async fn wait_idle(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            if self.running.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.running.load(Ordering::SeqCst) == 0;
            }
        }
    }
}
