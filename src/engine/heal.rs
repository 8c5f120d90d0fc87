//! Self-healing (DESIGN §7): for a finding, the enabled knowledge entry whose pattern matches
//! `category: title` with the best success rate is applied, the check runs again to verify, the
//! action is recorded at once, the entry's statistics are updated, and a verified fix resolves
//! the finding `auto-fixed`.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::context::{FindingDraft, PassContext};
use super::report::{PlannedAction, ReportAction};
use super::Engine;
use crate::actions::ActionContext;
use crate::bots::{Bot, Recheck};
use crate::process::DropCache;
use crate::store::{
    new_id, HealRecord, KnowledgeRow, NewAction, RecordedFinding, Severity, Store, StoreError,
};

const CACHE_TTL: Duration = Duration::from_secs(30);
const ACTION_TIMEOUT: Duration = Duration::from_secs(20);
const RECHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Compiles a knowledge pattern, refusing ones too large to run safely.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

pub struct Entry {
    pub row: KnowledgeRow,
    regex: Regex,
    pub action_type: String,
    pub params: Value,
}

/// The knowledge base, compiled, kept for a few seconds (and dropped on every edit).
#[derive(Default)]
pub struct KnowledgeCache {
    cached: RwLock<Option<(Instant, Arc<Vec<Entry>>)>>,
}

impl KnowledgeCache {
    pub async fn entries(&self, store: &dyn Store) -> Result<Arc<Vec<Entry>>, StoreError> {
        if let Some((at, entries)) = &*self.cached.read().unwrap() {
            if at.elapsed() < CACHE_TTL {
                return Ok(entries.clone());
            }
        }
        let rows = store.list_knowledge().await?;
        let entries: Vec<Entry> = rows
            .into_iter()
            .filter(|r| r.enabled)
            .filter_map(|row| {
                let action = row.action.as_ref()?.0.clone();
                let action_type = action.get("type")?.as_str()?.to_string();
                let params = action.get("params").cloned().unwrap_or(Value::Object(Default::default()));
                match compile_pattern(&row.issue_pattern) {
                    Ok(regex) => Some(Entry { row, regex, action_type, params }),
                    Err(e) => {
                        tracing::warn!(knowledge_id = %row.id, error = %e, "knowledge pattern does not compile; entry ignored");
                        None
                    }
                }
            })
            .collect();
        let entries = Arc::new(entries);
        *self.cached.write().unwrap() = Some((Instant::now(), entries.clone()));
        Ok(entries)
    }

    pub fn invalidate(&self) {
        *self.cached.write().unwrap() = None;
    }
}

impl DropCache for KnowledgeCache {
    fn name(&self) -> &'static str {
        "knowledge"
    }

    fn drop_cache(&self) {
        self.invalidate();
    }
}

/// The best entry for `subject`: rows arrive ordered by success rate, then experience.
pub fn best_match<'a>(entries: &'a [Entry], subject: &str) -> Option<&'a Entry> {
    entries.iter().find(|e| e.regex.is_match(subject))
}

pub struct Healed {
    pub actions: Vec<ReportAction>,
    /// Finding ids resolved `auto-fixed`.
    pub fixed: Vec<String>,
    pub notes: Vec<String>,
}

fn heals(severity: Severity) -> bool {
    severity >= Severity::Warning
}

/// Heals what the knowledge base knows how to heal, recording each attempt as it ends.
pub async fn heal(
    engine: &Engine,
    ctx: &PassContext,
    bot: &dyn Bot,
    bot_id: &str,
    execution_id: &str,
    findings: &[(FindingDraft, RecordedFinding)],
) -> Result<Healed, StoreError> {
    let mut out = Healed {
        actions: Vec::new(),
        fixed: Vec::new(),
        notes: Vec::new(),
    };
    if !findings.iter().any(|(d, _)| heals(d.severity)) {
        return Ok(out);
    }
    let entries = engine.knowledge.entries(engine.store.as_ref()).await?;
    let cooldown = chrono::Duration::seconds(engine.config.heal_cooldown_secs as i64);
    for (draft, rec) in findings {
        if !heals(draft.severity) {
            continue;
        }
        let Some(entry) = best_match(&entries, &draft.subject()) else {
            continue;
        };
        if let Some(last) = rec.last_heal_at {
            if ctx.now() - last < cooldown {
                out.notes.push(format!(
                    "{}: a fix was applied at {last}; waiting {}s before trying again",
                    draft.subject(),
                    engine.config.heal_cooldown_secs
                ));
                continue;
            }
        }
        let Some(action) = engine.actions.get(&entry.action_type) else {
            out.notes.push(format!(
                "knowledge entry {} names the action {:?}, which this build does not have",
                entry.row.id, entry.action_type
            ));
            continue;
        };
        let cx = ActionContext {
            pass: ctx,
            finding: draft,
            finding_id: Some(&rec.id),
        };
        let applied = tokio::time::timeout(ACTION_TIMEOUT, action.apply(&cx, &entry.params))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "gave no answer within {}s",
                    ACTION_TIMEOUT.as_secs()
                ))
            });
        let (success, description, error) = match applied {
            Ok(done) => (true, done, None),
            Err(why) => (false, format!("{} failed", entry.action_type), Some(why)),
        };
        let (verified, verify_note) = if success {
            match tokio::time::timeout(RECHECK_TIMEOUT, bot.recheck(ctx, draft)).await {
                Ok(Ok(Recheck::Gone)) => (Some(true), "re-check: the problem is gone".to_string()),
                Ok(Ok(Recheck::Present)) => (
                    Some(false),
                    "re-check: the problem is still there".to_string(),
                ),
                Ok(Ok(Recheck::Unknown(why))) => {
                    (Some(false), format!("re-check could not tell: {why}"))
                }
                Ok(Err(e)) => (Some(false), format!("re-check failed: {e}")),
                Err(_) => (
                    Some(false),
                    format!(
                        "re-check gave no answer within {}s",
                        RECHECK_TIMEOUT.as_secs()
                    ),
                ),
            }
        } else {
            (None, String::new())
        };
        let record = NewAction {
            id: new_id(),
            bot_id: bot_id.to_string(),
            execution_id: execution_id.to_string(),
            finding_id: Some(rec.id.clone()),
            action_type: entry.action_type.clone(),
            description: if verify_note.is_empty() {
                description
            } else {
                format!("{description}; {verify_note}")
            },
            success,
            error_message: error.clone(),
            metadata: serde_json::json!({
                "knowledge_id": entry.row.id,
                "solution": entry.row.solution,
                "params": entry.params,
                "subject": draft.subject(),
            }),
            knowledge_id: Some(entry.row.id.clone()),
            verified,
            taken_at: ctx.now(),
        };
        let resolve = verified == Some(true);
        engine
            .store
            .record_heal(&HealRecord {
                action: record.clone(),
                resolve_finding: resolve,
            })
            .await?;
        engine.knowledge.invalidate();
        engine
            .metrics
            .action(&ctx.bot, &record.action_type, success);
        tracing::info!(
            action = %record.action_type,
            finding = %rec.id,
            success,
            verified = ?verified,
            "self-healing action recorded"
        );
        if resolve {
            out.fixed.push(rec.id.clone());
        }
        out.actions.push(ReportAction {
            id: record.id,
            action_type: record.action_type,
            description: record.description,
            finding_id: record.finding_id,
            knowledge_id: record.knowledge_id,
            success,
            verified,
            error,
        });
    }
    Ok(out)
}

/// What a dry run would apply.
pub async fn plan(
    engine: &Engine,
    findings: &[FindingDraft],
) -> Result<Vec<PlannedAction>, StoreError> {
    if !findings.iter().any(|d| heals(d.severity)) {
        return Ok(Vec::new());
    }
    let entries = engine.knowledge.entries(engine.store.as_ref()).await?;
    Ok(findings
        .iter()
        .filter(|d| heals(d.severity))
        .filter_map(|d| {
            let e = best_match(&entries, &d.subject())?;
            Some(PlannedAction {
                fingerprint: d.fingerprint(),
                knowledge_id: e.row.id.clone(),
                action_type: e.action_type.clone(),
                solution: e.row.solution.clone(),
            })
        })
        .collect())
}
