// The `Store` implementation both backends share. Included (with `include!`) by `sqlite.rs` and
// `postgres.rs`; each of them defines, before including this file:
//
//   type Db                      the sqlx database
//   struct StoreImpl             with `reader()` (a pool for reads) and `write_tx()` (a write
//                                transaction: BEGIN IMMEDIATE on SQLite, BEGIN on PostgreSQL)
//   const BACKEND: Backend
//   const MIGRATIONS             the embedded migrations of that dialect
//   const LOCK_BOT_SQL           the bot row for the lease transaction (FOR UPDATE on PostgreSQL)
//   const EXPIRED_LEASES_SQL     bots whose lease expired (FOR UPDATE SKIP LOCKED on PostgreSQL)
//   async fn lock_migrations()   serialises migrations across processes
//
// Everything else is the same SQL on both.

type Tx = sqlx::Transaction<'static, Db>;

const EXEC_SELECT: &str = "SELECT e.id, e.bot_id, b.name AS bot, e.status, e.started_at, \
     e.completed_at, e.execution_time_ms, e.checks_performed, e.issues_found, e.actions_taken, \
     e.error_message, e.metadata, e.created_at, e.slot_at, e.forced, e.triggered_by, \
     e.idempotency_key, e.deadline_at FROM bot_executions e JOIN bots b ON b.id = e.bot_id";

const FINDING_SELECT: &str = "SELECT f.id, f.bot_id, b.name AS bot, f.execution_id, f.severity, \
     f.category, f.title, f.description, f.affected_component, f.detected_at, f.resolved_at, \
     f.resolution_method, f.metadata, f.fingerprint, f.occurrences, f.last_seen_at, \
     f.last_execution_id, f.last_heal_at, f.resolved_by, f.resolution_notes \
     FROM bot_findings f JOIN bots b ON b.id = f.bot_id";

const ACTION_SELECT: &str = "SELECT a.id, a.bot_id, b.name AS bot, a.finding_id, a.execution_id, \
     a.action_type, a.action_description, a.success, a.error_message, a.taken_at, a.metadata, \
     a.knowledge_id, a.verified FROM bot_actions a JOIN bots b ON b.id = a.bot_id";

const KNOWLEDGE_SELECT: &str = "SELECT id, category, issue_pattern, solution, success_rate, \
     times_applied, times_successful, last_used_at, created_at, updated_at, action, enabled \
     FROM bot_knowledge";

const SEVERITY_RANK_NEW: &str =
    "CASE excluded.severity WHEN 'critical' THEN 3 WHEN 'error' THEN 2 \
     WHEN 'warning' THEN 1 ELSE 0 END";
const SEVERITY_RANK_OLD: &str = "CASE bot_findings.severity WHEN 'critical' THEN 3 WHEN 'error' \
     THEN 2 WHEN 'warning' THEN 1 ELSE 0 END";

/// Ends a transaction explicitly: commits on success, rolls back on error. A transaction merely
/// dropped is rolled back only when its connection is next used, holding its locks till then.
async fn settle<T>(tx: Tx, outcome: Result<T>) -> Result<T> {
    match outcome {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl StoreImpl {
    /// Marks a running execution `abandoned` and counts it; the caller owns the lease change.
    async fn abandon_in(
        tx: &mut Tx,
        bot_id: &str,
        execution_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let message = "its lease expired before the pass finished (the process died, or hung past its deadline)";
        let done = sqlx::query(
            "UPDATE bot_executions SET status = 'abandoned', completed_at = $2, error_message = $3 \
             WHERE id = $1 AND status = 'running'",
        )
        .bind(execution_id)
        .bind(now)
        .bind(message)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(());
        }
        sqlx::query(
            "UPDATE bots SET total_runs = total_runs + 1, failed_runs = failed_runs + 1, \
             last_status = 'abandoned', last_error = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(bot_id)
        .bind(message)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO bot_metrics (id, metric_date, bot_id, total_executions, failed_executions, \
             abandoned_executions, created_at) VALUES ($1, $2, $3, 1, 1, 1, $4) \
             ON CONFLICT (metric_date, bot_id) DO UPDATE SET \
             total_executions = bot_metrics.total_executions + 1, \
             failed_executions = bot_metrics.failed_executions + 1, \
             abandoned_executions = bot_metrics.abandoned_executions + 1",
        )
        .bind(new_id())
        .bind(now.date_naive())
        .bind(bot_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Resolves `auto-cleared` the open findings on checked components that the pass no longer saw.
    async fn clear_unseen(
        tx: &mut Tx,
        bot_id: &str,
        reconcile: &Reconcile,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClearedFinding>> {
        if reconcile.components.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = format!(
            "UPDATE bot_findings SET resolved_at = $2, resolution_method = 'auto-cleared', \
             resolved_by = 'botfleet' WHERE bot_id = $1 AND resolved_at IS NULL \
             AND affected_component IN ({})",
            placeholders(3, reconcile.components.len())
        );
        if !reconcile.seen_fingerprints.is_empty() {
            sql.push_str(&format!(
                " AND fingerprint NOT IN ({})",
                placeholders(
                    3 + reconcile.components.len(),
                    reconcile.seen_fingerprints.len()
                )
            ));
        }
        sql.push_str(" RETURNING id, fingerprint, severity, title");
        let mut q = sqlx::query_as::<_, ClearedFinding>(&sql)
            .bind(bot_id)
            .bind(now);
        for c in &reconcile.components {
            q = q.bind(c);
        }
        for f in &reconcile.seen_fingerprints {
            q = q.bind(f);
        }
        Ok(q.fetch_all(&mut **tx).await?)
    }

    async fn insert_action(tx: &mut Tx, a: &NewAction) -> Result<()> {
        sqlx::query(
            "INSERT INTO bot_actions (id, bot_id, finding_id, action_type, action_description, \
             success, error_message, taken_at, metadata, execution_id, knowledge_id, verified) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&a.id)
        .bind(&a.bot_id)
        .bind(&a.finding_id)
        .bind(&a.action_type)
        .bind(&a.description)
        .bind(a.success)
        .bind(&a.error_message)
        .bind(a.taken_at)
        .bind(Json(&a.metadata))
        .bind(&a.execution_id)
        .bind(&a.knowledge_id)
        .bind(a.verified)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn fetch_knowledge(&self, id: &str) -> Result<Option<KnowledgeRow>> {
        let sql = format!("{KNOWLEDGE_SELECT} WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    /// The lease transaction's body. It returns early on every skip; the caller commits or rolls
    /// back explicitly either way, so no row lock (PostgreSQL) or write lock (SQLite) outlives
    /// the call while a dropped transaction waits for its connection's next use.
    async fn begin_pass_in(
        tx: &mut Tx,
        req: &BeginPass,
        clock: &dyn crate::clock::Clock,
    ) -> Result<BeginOutcome> {
        let locked: Option<LockedBot> = sqlx::query_as(LOCK_BOT_SQL)
            .bind(&req.bot)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(LockedBot { bot, open_findings }) = locked else {
            return Ok(BeginOutcome::UnknownBot);
        };
        let now = clock.now();
        let lease_live =
            bot.lease_execution_id.is_some() && bot.lease_expires_at.is_some_and(|t| t > now);

        // An Idempotency-Key de-duplicates exactly, in place of the schedule slot.
        if let Some(key) = &req.idempotency_key {
            let prior: Option<(String, String)> = sqlx::query_as(
                "SELECT id, status FROM bot_executions WHERE bot_id = $1 AND idempotency_key = $2 \
                 AND status <> 'abandoned'",
            )
            .bind(&bot.id)
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
            match prior {
                Some((id, status)) if status != "running" => {
                    return Ok(BeginOutcome::Replay { execution_id: id });
                }
                Some((id, _)) if lease_live => {
                    return Ok(BeginOutcome::Skipped(Skip::AlreadyRunning {
                        execution_id: id,
                        started_at: bot.last_execution_at,
                        lease_expires_at: bot.lease_expires_at,
                    }));
                }
                _ => {}
            }
        }

        if bot.status == "paused" {
            return Ok(BeginOutcome::Skipped(Skip::Paused));
        }

        let mut trial = bot.circuit_state == "half_open";
        if bot.circuit_state == "open" {
            match bot.circuit_open_until {
                Some(until) if now < until => {
                    return Ok(BeginOutcome::Skipped(Skip::CircuitOpen { until }));
                }
                _ => trial = true,
            }
        }

        let mut abandoned = None;
        if let Some(holder) = &bot.lease_execution_id {
            if !lease_live {
                Self::abandon_in(tx, &bot.id, holder, now).await?;
                abandoned = Some(holder.clone());
            }
        }

        if !req.force && req.idempotency_key.is_none() {
            if let Some(slot) = req.slot {
                let prior: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM bot_executions WHERE bot_id = $1 AND slot_at = $2 \
                     AND status <> 'abandoned' ORDER BY started_at LIMIT 1",
                )
                .bind(&bot.id)
                .bind(slot)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(execution_id) = prior {
                    return Ok(BeginOutcome::Skipped(Skip::DuplicateSlot {
                        execution_id,
                        slot_at: slot,
                    }));
                }
            }
        }

        if lease_live {
            return Ok(BeginOutcome::Skipped(Skip::AlreadyRunning {
                execution_id: bot.lease_execution_id.clone().unwrap_or_default(),
                started_at: bot.last_execution_at,
                lease_expires_at: bot.lease_expires_at,
            }));
        }

        let timeout_ms = pass_timeout_ms(bot.config_value(), req.default_timeout_ms);
        let deadline_at = now + chrono::Duration::milliseconds(timeout_ms + req.lease_grace_ms);
        sqlx::query(
            "INSERT INTO bot_executions (id, bot_id, status, started_at, created_at, slot_at, forced, \
             triggered_by, idempotency_key, deadline_at) \
             VALUES ($1, $2, 'running', $3, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&req.execution_id)
        .bind(&bot.id)
        .bind(now)
        .bind(req.slot)
        .bind(req.force)
        .bind(&req.triggered_by)
        .bind(&req.idempotency_key)
        .bind(deadline_at)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE bots SET lease_execution_id = $2, lease_expires_at = $3, last_execution_at = $4, \
             circuit_state = CASE WHEN $5 THEN 'half_open' ELSE circuit_state END, updated_at = $4 \
             WHERE id = $1",
        )
        .bind(&bot.id)
        .bind(&req.execution_id)
        .bind(deadline_at)
        .bind(now)
        .bind(trial)
        .execute(&mut **tx)
        .await?;
        Ok(BeginOutcome::Started(Box::new(Started {
            bot,
            execution_id: req.execution_id.clone(),
            started_at: now,
            deadline_at,
            timeout_ms,
            trial,
            abandoned,
            open_findings,
        })))
    }
}

#[async_trait]
impl Store for StoreImpl {
    fn backend(&self) -> Backend {
        BACKEND
    }

    async fn migrate(&self) -> Result<Vec<String>> {
        let mut tx = self.write_tx().await?;
        Self::lock_migrations(&mut tx).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS botfleet_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM botfleet_migrations")
            .fetch_all(&mut *tx)
            .await?;
        let known = MIGRATIONS.len() as i64;
        if let Some(newest) = applied.iter().max().filter(|v| **v > known) {
            return Err(StoreError::Migration(format!(
                "the database is at schema version {newest}, newer than this build of botfleet knows \
                 ({known}); run the botfleet version that migrated it, or a newer one"
            )));
        }
        let mut names = Vec::new();
        for m in MIGRATIONS {
            if applied.contains(&m.version) {
                continue;
            }
            // A bare string runs as a simple query: several statements in one go.
            sqlx::Executor::execute(&mut *tx, m.sql)
                .await
                .map_err(|e| StoreError::Migration(format!("{}: {e}", m.name)))?;
            sqlx::query(
                "INSERT INTO botfleet_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(Utc::now().to_rfc3339())
            .execute(&mut *tx)
            .await?;
            names.push(m.name.to_string());
        }
        tx.commit().await?;
        Ok(names)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    async fn close(&self) {
        self.close_pools().await;
    }

    async fn sync_bots(&self, defs: &[BotDef], now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for d in defs {
            sqlx::query(
                "INSERT INTO bots (id, name, display_name, description, schedule_cron, api_endpoint, \
                 status, next_execution_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $8) \
                 ON CONFLICT (name) DO UPDATE SET display_name = excluded.display_name, \
                 description = excluded.description, schedule_cron = excluded.schedule_cron, \
                 api_endpoint = excluded.api_endpoint, next_execution_at = excluded.next_execution_at, \
                 status = CASE WHEN bots.status = 'retired' THEN 'active' ELSE bots.status END, \
                 updated_at = excluded.updated_at",
            )
            .bind(&d.id)
            .bind(&d.name)
            .bind(&d.display_name)
            .bind(&d.description)
            .bind(&d.schedule_cron)
            .bind(format!("/api/bots/{}", d.name))
            .bind(d.next_execution_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let sql = format!(
            "UPDATE bots SET status = 'retired', updated_at = $1 WHERE status <> 'retired' \
             AND name NOT IN ({})",
            placeholders(2, defs.len().max(1))
        );
        let mut q = sqlx::query(&sql).bind(now);
        if defs.is_empty() {
            q = q.bind("");
        }
        for d in defs {
            q = q.bind(&d.name);
        }
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_bots(&self) -> Result<Vec<BotRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            bot_cols!(),
            " FROM bots WHERE status <> 'retired' ORDER BY name"
        ))
        .fetch_all(self.reader())
        .await?)
    }

    async fn get_bot(&self, name: &str) -> Result<Option<BotRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            bot_cols!(),
            " FROM bots WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn set_bot_status(
        &self,
        name: &str,
        status: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(BotRow, BotRow)>> {
        let mut tx = self.write_tx().await?;
        let before: Option<BotRow> = sqlx::query_as(LOCK_BOT_SQL)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(before) = before else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query("UPDATE bots SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(&before.id)
            .bind(status)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let after: BotRow =
            sqlx::query_as(concat!("SELECT ", bot_cols!(), " FROM bots WHERE id = $1"))
                .bind(&before.id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some((before, after)))
    }

    async fn set_bot_config(
        &self,
        name: &str,
        config: &Value,
        now: DateTime<Utc>,
    ) -> Result<Option<Option<Value>>> {
        let mut tx = self.write_tx().await?;
        let before: Option<BotRow> = sqlx::query_as(LOCK_BOT_SQL)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(before) = before else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query("UPDATE bots SET config = $2, updated_at = $3 WHERE id = $1")
            .bind(&before.id)
            .bind(Json(config))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(before.config.map(|j| j.0)))
    }

    async fn begin_pass(
        &self,
        req: &BeginPass,
        clock: &dyn crate::clock::Clock,
    ) -> Result<BeginOutcome> {
        let mut tx = self.write_tx().await?;
        let outcome = Self::begin_pass_in(&mut tx, req, clock).await;
        settle(tx, outcome).await
    }

    async fn record_findings(&self, req: &RecordFindings) -> Result<Reconciled> {
        let upsert = format!(
            "INSERT INTO bot_findings (id, bot_id, execution_id, severity, category, title, \
             description, affected_component, detected_at, metadata, fingerprint, occurrences, \
             last_seen_at, last_execution_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $9, $3) \
             ON CONFLICT (bot_id, fingerprint) WHERE resolved_at IS NULL DO UPDATE SET \
             occurrences = bot_findings.occurrences + 1, last_seen_at = excluded.last_seen_at, \
             last_execution_id = excluded.last_execution_id, title = excluded.title, \
             description = excluded.description, metadata = excluded.metadata, \
             severity = CASE WHEN {SEVERITY_RANK_NEW} > {SEVERITY_RANK_OLD} \
                 THEN excluded.severity ELSE bot_findings.severity END \
             RETURNING id, fingerprint, severity, occurrences, detected_at, last_heal_at"
        );
        let mut tx = self.write_tx().await?;
        let mut findings = Vec::with_capacity(req.findings.len());
        for f in &req.findings {
            let row: RecordedFinding = sqlx::query_as(&upsert)
                .bind(&f.id)
                .bind(&req.bot_id)
                .bind(&req.execution_id)
                .bind(f.severity.as_str())
                .bind(&f.category)
                .bind(&f.title)
                .bind(&f.description)
                .bind(&f.component)
                .bind(req.now)
                .bind(Json(&f.metadata))
                .bind(&f.fingerprint)
                .fetch_one(&mut *tx)
                .await?;
            findings.push(row);
        }
        let cleared = Self::clear_unseen(&mut tx, &req.bot_id, &req.reconcile, req.now).await?;
        tx.commit().await?;
        Ok(Reconciled { findings, cleared })
    }

    async fn record_heal(&self, heal: &HealRecord) -> Result<()> {
        let a = &heal.action;
        let mut tx = self.write_tx().await?;
        Self::insert_action(&mut tx, a).await?;
        if let Some(k) = &a.knowledge_id {
            let won: i64 = if a.verified == Some(true) { 1 } else { 0 };
            sqlx::query(
                "UPDATE bot_knowledge SET times_applied = times_applied + 1, \
                 times_successful = times_successful + $2, \
                 success_rate = CAST(times_successful + $2 AS DOUBLE PRECISION) * 100.0 \
                     / CAST(times_applied + 1 AS DOUBLE PRECISION), \
                 last_used_at = $3 WHERE id = $1",
            )
            .bind(k)
            .bind(won)
            .bind(a.taken_at)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(f) = &a.finding_id {
            if heal.resolve_finding {
                sqlx::query(
                    "UPDATE bot_findings SET last_heal_at = $2, resolved_at = $2, \
                     resolution_method = 'auto-fixed', resolved_by = 'botfleet' \
                     WHERE id = $1 AND resolved_at IS NULL",
                )
                .bind(f)
                .bind(a.taken_at)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query("UPDATE bot_findings SET last_heal_at = $2 WHERE id = $1")
                    .bind(f)
                    .bind(a.taken_at)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_pass(&self, req: &FinishPass) -> Result<FinishOutcome> {
        let success = req.status == ExecStatus::Success;
        let mut tx = self.write_tx().await?;
        let owned = sqlx::query(
            "UPDATE bots SET total_runs = total_runs + 1, \
             successful_runs = successful_runs + $3, failed_runs = failed_runs + $4, \
             avg_execution_time_ms = (COALESCE(avg_execution_time_ms, 0) * total_runs + $5) / (total_runs + 1), \
             next_execution_at = $6, circuit_state = $7, consecutive_failures = $8, \
             circuit_open_until = $9, last_status = $10, last_error = $11, \
             last_success_at = CASE WHEN $3 = 1 THEN $12 ELSE last_success_at END, \
             lease_execution_id = NULL, lease_expires_at = NULL, updated_at = $12 \
             WHERE id = $1 AND lease_execution_id = $2",
        )
        .bind(&req.bot_id)
        .bind(&req.execution_id)
        .bind(if success { 1i64 } else { 0 })
        .bind(if success { 0i64 } else { 1 })
        .bind(req.execution_time_ms)
        .bind(req.next_execution_at)
        .bind(req.circuit.state.as_str())
        .bind(req.circuit.consecutive_failures)
        .bind(req.circuit.open_until)
        .bind(req.status.as_str())
        .bind(&req.error_message)
        .bind(req.now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if owned == 0 {
            // Another caller found the lease expired and marked this execution abandoned.
            // Keep what this late pass saw, without counting it twice.
            tx.rollback().await?;
            let mut tx = self.write_tx().await?;
            sqlx::query("UPDATE bot_executions SET metadata = $2 WHERE id = $1")
                .bind(&req.execution_id)
                .bind(Json(serde_json::json!({
                    "late_result": req.metadata,
                    "late_status": req.status.as_str(),
                    "note": "this pass finished after its lease expired; its result was not counted"
                })))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(FinishOutcome::LeaseLost);
        }

        sqlx::query(
            "UPDATE bot_executions SET status = $2, completed_at = $3, execution_time_ms = $4, \
             checks_performed = $5, issues_found = $6, actions_taken = $7, error_message = $8, \
             metadata = $9 WHERE id = $1",
        )
        .bind(&req.execution_id)
        .bind(req.status.as_str())
        .bind(req.now)
        .bind(req.execution_time_ms)
        .bind(req.checks_performed)
        .bind(req.issues_found)
        .bind(req.actions_taken)
        .bind(&req.error_message)
        .bind(Json(&req.metadata))
        .execute(&mut *tx)
        .await?;

        for a in &req.actions {
            Self::insert_action(&mut tx, a).await?;
        }
        if !req.targets.is_empty() {
            Self::write_targets(&mut tx, &req.bot_id, req.now, &req.targets).await?;
        }

        sqlx::query(
            "INSERT INTO bot_metrics (id, metric_date, bot_id, total_executions, \
             successful_executions, failed_executions, avg_execution_time_ms, issues_detected, \
             issues_resolved, tickets_created, created_at, total_execution_time_ms, \
             timeout_executions, abandoned_executions, actions_taken) \
             VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, 0, $9, $6, $10, 0, $11) \
             ON CONFLICT (metric_date, bot_id) DO UPDATE SET \
             total_executions = bot_metrics.total_executions + 1, \
             successful_executions = bot_metrics.successful_executions + excluded.successful_executions, \
             failed_executions = bot_metrics.failed_executions + excluded.failed_executions, \
             total_execution_time_ms = bot_metrics.total_execution_time_ms + excluded.total_execution_time_ms, \
             avg_execution_time_ms = (bot_metrics.total_execution_time_ms + excluded.total_execution_time_ms) \
                 / (bot_metrics.total_executions - bot_metrics.abandoned_executions + 1), \
             issues_detected = bot_metrics.issues_detected + excluded.issues_detected, \
             issues_resolved = bot_metrics.issues_resolved + excluded.issues_resolved, \
             timeout_executions = bot_metrics.timeout_executions + excluded.timeout_executions, \
             actions_taken = bot_metrics.actions_taken + excluded.actions_taken",
        )
        .bind(new_id())
        .bind(req.now.date_naive())
        .bind(&req.bot_id)
        .bind(if success { 1i64 } else { 0 })
        .bind(if success { 0i64 } else { 1 })
        .bind(req.execution_time_ms)
        .bind(req.issues_detected)
        .bind(req.issues_resolved)
        .bind(req.now)
        .bind(if req.status == ExecStatus::Timeout { 1i64 } else { 0 })
        .bind(req.actions_taken)
        .execute(&mut *tx)
        .await?;

        tx.commit().await?;
        Ok(FinishOutcome::Recorded)
    }

    async fn abandon_expired(&self, now: DateTime<Utc>) -> Result<Vec<(String, String)>> {
        let mut tx = self.write_tx().await?;
        let expired: Vec<(String, String, String)> = sqlx::query_as(EXPIRED_LEASES_SQL)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(expired.len());
        for (bot_id, name, execution_id) in expired {
            Self::abandon_in(&mut tx, &bot_id, &execution_id, now).await?;
            sqlx::query(
                "UPDATE bots SET lease_execution_id = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND lease_execution_id = $2",
            )
            .bind(&bot_id)
            .bind(&execution_id)
            .execute(&mut *tx)
            .await?;
            out.push((name, execution_id));
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRow>> {
        let sql = format!("{EXEC_SELECT} WHERE e.id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn list_executions(&self, q: &ExecutionQuery) -> Result<Vec<ExecutionRow>> {
        let sql = format!(
            "{EXEC_SELECT} WHERE ($1 IS NULL OR b.name = $1) AND ($2 IS NULL OR e.status = $2) \
             AND ($3 IS NULL OR e.started_at < $3 OR (e.started_at = $3 AND e.id < $4)) \
             ORDER BY e.started_at DESC, e.id DESC LIMIT $5"
        );
        let (before_at, before_id) = split_cursor(&q.before);
        Ok(sqlx::query_as(&sql)
            .bind(&q.bot)
            .bind(&q.status)
            .bind(before_at)
            .bind(before_id)
            .bind(q.limit)
            .fetch_all(self.reader())
            .await?)
    }

    async fn execution_findings(&self, execution_id: &str) -> Result<Vec<FindingRow>> {
        let sql = format!(
            "{FINDING_SELECT} WHERE f.execution_id = $1 OR f.last_execution_id = $1 \
             ORDER BY f.detected_at, f.id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(execution_id)
            .fetch_all(self.reader())
            .await?)
    }

    async fn execution_actions(&self, execution_id: &str) -> Result<Vec<ActionRow>> {
        let sql = format!("{ACTION_SELECT} WHERE a.execution_id = $1 ORDER BY a.taken_at, a.id");
        Ok(sqlx::query_as(&sql)
            .bind(execution_id)
            .fetch_all(self.reader())
            .await?)
    }

    async fn get_finding(&self, id: &str) -> Result<Option<FindingRow>> {
        let sql = format!("{FINDING_SELECT} WHERE f.id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn list_findings(&self, q: &FindingQuery) -> Result<Vec<FindingRow>> {
        let sql = format!(
            "{FINDING_SELECT} WHERE ($1 IS NULL OR b.name = $1) AND ($2 IS NULL OR f.severity = $2) \
             AND ($3 IS NULL OR ($3 AND f.resolved_at IS NULL) OR (NOT $3 AND f.resolved_at IS NOT NULL)) \
             AND ($4 IS NULL OR f.detected_at < $4 OR (f.detected_at = $4 AND f.id < $5)) \
             ORDER BY f.detected_at DESC, f.id DESC LIMIT $6"
        );
        let (before_at, before_id) = split_cursor(&q.before);
        Ok(sqlx::query_as(&sql)
            .bind(&q.bot)
            .bind(&q.severity)
            .bind(q.open)
            .bind(before_at)
            .bind(before_id)
            .bind(q.limit)
            .fetch_all(self.reader())
            .await?)
    }

    async fn resolve_finding(
        &self,
        id: &str,
        by: &str,
        notes: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<FindingRow>> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE bot_findings SET resolved_at = $2, resolution_method = 'manual', \
             resolved_by = $3, resolution_notes = $4 WHERE id = $1 AND resolved_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .bind(by)
        .bind(notes)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let sql = format!("{FINDING_SELECT} WHERE f.id = $1");
        let row: Option<FindingRow> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        match row {
            Some(r) if done == 0 => Err(StoreError::Conflict(format!(
                "finding {id} was already resolved ({}) at {}",
                r.resolution_method.as_deref().unwrap_or("unknown"),
                r.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_default()
            ))),
            other => Ok(other),
        }
    }

    async fn list_knowledge(&self) -> Result<Vec<KnowledgeRow>> {
        let sql = format!(
            "{KNOWLEDGE_SELECT} ORDER BY success_rate DESC, times_applied DESC, created_at, id"
        );
        Ok(sqlx::query_as(&sql).fetch_all(self.reader()).await?)
    }

    async fn get_knowledge(&self, id: &str) -> Result<Option<KnowledgeRow>> {
        self.fetch_knowledge(id).await
    }

    async fn insert_knowledge(
        &self,
        id: &str,
        k: &KnowledgeInput,
        now: DateTime<Utc>,
    ) -> Result<KnowledgeRow> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO bot_knowledge (id, category, issue_pattern, solution, action, enabled, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(id)
        .bind(&k.category)
        .bind(&k.issue_pattern)
        .bind(&k.solution)
        .bind(k.action.as_ref().map(Json))
        .bind(k.enabled)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let sql = format!("{KNOWLEDGE_SELECT} WHERE id = $1");
        let row = sqlx::query_as(&sql).bind(id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn update_knowledge(
        &self,
        id: &str,
        k: &KnowledgeInput,
        now: DateTime<Utc>,
    ) -> Result<Option<KnowledgeRow>> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE bot_knowledge SET category = $2, issue_pattern = $3, solution = $4, action = $5, \
             enabled = $6, updated_at = $7 WHERE id = $1",
        )
        .bind(id)
        .bind(&k.category)
        .bind(&k.issue_pattern)
        .bind(&k.solution)
        .bind(k.action.as_ref().map(Json))
        .bind(k.enabled)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let sql = format!("{KNOWLEDGE_SELECT} WHERE id = $1");
        let row = sqlx::query_as(&sql).bind(id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    async fn delete_knowledge(&self, id: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM bot_knowledge WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(done > 0)
    }

    async fn record_security_event(&self, e: &NewSecurityEvent) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO security_events (id, occurred_at, kind, address, method, route, reason, \
             subject, target, before_value, after_value) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(new_id())
        .bind(e.at)
        .bind(e.kind)
        .bind(&e.address)
        .bind(&e.method)
        .bind(&e.route)
        .bind(&e.reason)
        .bind(&e.subject)
        .bind(&e.target)
        .bind(e.before.as_ref().map(Json))
        .bind(e.after.as_ref().map(Json))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_security_events(&self, q: &EventQuery) -> Result<Vec<SecurityEvent>> {
        let (before_at, before_id) = split_cursor(&q.before);
        Ok(sqlx::query_as(
            "SELECT id, occurred_at, kind, address, method, route, reason, subject, target, \
             before_value, after_value FROM security_events \
             WHERE ($1 IS NULL OR kind = $1) \
             AND ($2 IS NULL OR occurred_at < $2 OR (occurred_at = $2 AND id < $3)) \
             ORDER BY occurred_at DESC, id DESC LIMIT $4",
        )
        .bind(&q.kind)
        .bind(before_at)
        .bind(before_id)
        .bind(q.limit)
        .fetch_all(self.reader())
        .await?)
    }

    async fn open_finding_counts(&self) -> Result<Vec<OpenCount>> {
        Ok(sqlx::query_as(
            "SELECT b.name AS bot, f.severity, COUNT(*) AS count FROM bot_findings f \
             JOIN bots b ON b.id = f.bot_id WHERE f.resolved_at IS NULL GROUP BY b.name, f.severity",
        )
        .fetch_all(self.reader())
        .await?)
    }

    async fn open_ticket_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM bot_tickets WHERE status IN ('open', 'assigned')",
        )
        .fetch_one(self.reader())
        .await?)
    }

    async fn run_counts_since(&self, since: DateTime<Utc>) -> Result<Vec<RunCount>> {
        Ok(sqlx::query_as(
            "SELECT b.name AS bot, COUNT(*) AS total, \
             CAST(COALESCE(SUM(CASE WHEN e.status = 'success' THEN 1 ELSE 0 END), 0) AS BIGINT) AS successful \
             FROM bot_executions e JOIN bots b ON b.id = e.bot_id \
             WHERE e.started_at >= $1 AND e.status <> 'running' GROUP BY b.name",
        )
        .bind(since)
        .fetch_all(self.reader())
        .await?)
    }

    async fn daily_metrics(
        &self,
        bot: Option<&str>,
        since: NaiveDate,
    ) -> Result<Vec<DailyMetricsRow>> {
        Ok(sqlx::query_as(
            "SELECT m.metric_date, b.name AS bot, m.total_executions, m.successful_executions, \
             m.failed_executions, m.avg_execution_time_ms, m.issues_detected, m.issues_resolved, \
             m.tickets_created, m.timeout_executions, m.abandoned_executions, m.actions_taken \
             FROM bot_metrics m JOIN bots b ON b.id = m.bot_id \
             WHERE ($1 IS NULL OR b.name = $1) AND m.metric_date >= $2 \
             ORDER BY m.metric_date DESC, b.name",
        )
        .bind(bot)
        .bind(since)
        .fetch_all(self.reader())
        .await?)
    }

    async fn list_targets(&self) -> Result<Vec<TargetRow>> {
        let sql = format!("{TARGET_SELECT} ORDER BY b.name, t.target");
        Ok(sqlx::query_as(&sql).fetch_all(self.reader()).await?)
    }

    async fn get_target(&self, bot: &str, target: &str) -> Result<Option<TargetRow>> {
        let sql = format!("{TARGET_SELECT} WHERE b.name = $1 AND t.target = $2");
        Ok(sqlx::query_as(&sql)
            .bind(bot)
            .bind(target)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn target_stats(
        &self,
        bot: Option<&str>,
        target: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<TargetStat>> {
        let sql = format!(
            "SELECT b.name AS bot, {} FROM bot_target_stats s JOIN bots b ON b.id = s.bot_id \
             WHERE ($1 IS NULL OR b.name = $1) AND ($2 IS NULL OR s.target = $2) AND s.bucket_start >= $3 \
             ORDER BY b.name, s.target, s.bucket_start",
            stats_columns()
        );
        let rows = sqlx::query(&sql)
            .bind(bot)
            .bind(target)
            .bind(since)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(stat_from_row).collect()
    }

    async fn list_blocks(&self, now: DateTime<Utc>) -> Result<Vec<BlockRow>> {
        Ok(sqlx::query_as(
            "SELECT address, kind, requests_per_minute, reason, created_by, created_at, expires_at, \
             finding_id FROM blocked_addresses WHERE expires_at > $1 ORDER BY created_at DESC",
        )
        .bind(now)
        .fetch_all(self.reader())
        .await?)
    }

    async fn put_block(&self, b: &BlockRow) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO blocked_addresses (address, kind, requests_per_minute, reason, created_by, \
             created_at, expires_at, finding_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (address) DO UPDATE SET kind = excluded.kind, \
             requests_per_minute = excluded.requests_per_minute, reason = excluded.reason, \
             created_by = excluded.created_by, created_at = excluded.created_at, \
             expires_at = excluded.expires_at, finding_id = excluded.finding_id",
        )
        .bind(&b.address)
        .bind(&b.kind)
        .bind(b.requests_per_minute)
        .bind(&b.reason)
        .bind(&b.created_by)
        .bind(b.created_at)
        .bind(b.expires_at)
        .bind(&b.finding_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_block(&self, address: &str) -> Result<Option<BlockRow>> {
        let mut tx = self.write_tx().await?;
        let row: Option<BlockRow> = sqlx::query_as(
            "SELECT address, kind, requests_per_minute, reason, created_by, created_at, expires_at, \
             finding_id FROM blocked_addresses WHERE address = $1",
        )
        .bind(address)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            sqlx::query("DELETE FROM blocked_addresses WHERE address = $1")
                .bind(address)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    async fn add_address_requests(&self, counts: &[(String, DateTime<Utc>, i64)]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for chunk in counts.chunks(500) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3))
                .collect();
            let sql = format!(
                "INSERT INTO address_requests (address, minute_start, requests) VALUES {} \
                 ON CONFLICT (address, minute_start) DO UPDATE SET \
                 requests = address_requests.requests + excluded.requests",
                rows.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (address, minute, n) in chunk {
                q = q.bind(address).bind(*minute).bind(*n);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn busy_addresses(&self, since: DateTime<Utc>, over: i64) -> Result<Vec<AddressMinute>> {
        Ok(sqlx::query_as(
            "SELECT address, minute_start, requests FROM address_requests \
             WHERE minute_start >= $1 AND requests > $2 ORDER BY requests DESC",
        )
        .bind(since)
        .bind(over)
        .fetch_all(self.reader())
        .await?)
    }

    async fn events_by_address(
        &self,
        kind: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<AddressCount>> {
        Ok(sqlx::query_as(
            "SELECT address, COUNT(*) AS count, MAX(occurred_at) AS last_at FROM security_events \
             WHERE kind = $1 AND occurred_at >= $2 AND address IS NOT NULL \
             GROUP BY address ORDER BY COUNT(*) DESC",
        )
        .bind(kind)
        .bind(since)
        .fetch_all(self.reader())
        .await?)
    }

    async fn prune_security(
        &self,
        now: DateTime<Utc>,
        requests_before: DateTime<Utc>,
        events_before: DateTime<Utc>,
    ) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM blocked_addresses WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM address_requests WHERE minute_start < $1")
            .bind(requests_before)
            .execute(&mut *tx)
            .await?;
        let events = sqlx::query("DELETE FROM security_events WHERE occurred_at < $1")
            .bind(events_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(events)
    }

    fn pools(&self) -> Pools {
        self.raw_pools()
    }

    async fn canary(&self, now: DateTime<Utc>) -> Result<(f64, f64, f64)> {
        let id = new_id();
        let payload = format!("canary {id}");
        let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1000.0;
        let t = std::time::Instant::now();
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO bot_canary (id, written_at, payload) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(now)
            .bind(&payload)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let write = ms(t);
        let t = std::time::Instant::now();
        let back: Option<String> =
            sqlx::query_scalar("SELECT payload FROM bot_canary WHERE id = $1")
                .bind(&id)
                .fetch_optional(self.reader())
                .await?;
        let read = ms(t);
        if back.as_deref() != Some(payload.as_str()) {
            return Err(StoreError::Conflict(format!(
                "the canary row read back as {back:?}, not {payload:?}"
            )));
        }
        let t = std::time::Instant::now();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM bot_canary WHERE id = $1 OR written_at < $2")
            .bind(&id)
            .bind(now - chrono::Duration::hours(1))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((write, read, ms(t)))
    }

    async fn read_tables(&self) -> Result<Vec<(String, Option<String>)>> {
        let mut out = Vec::new();
        for t in TABLES {
            let sql = format!("SELECT 1 FROM {t} LIMIT 1");
            let problem = match sqlx::query(&sql).fetch_optional(self.reader()).await {
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            out.push((t.to_string(), problem));
        }
        Ok(out)
    }

    async fn archivable(&self, cutoff: DateTime<Utc>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM bot_executions WHERE started_at < $1 AND status <> 'running'",
        )
        .bind(cutoff)
        .fetch_one(self.reader())
        .await?)
    }

    async fn ensure_rollups(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let sql = format!(
            "SELECT e.bot_id, {DAY} AS day, COUNT(*) AS total, \
             CAST(SUM(CASE WHEN e.status = 'success' THEN 1 ELSE 0 END) AS BIGINT) AS ok, \
             CAST(SUM(CASE WHEN e.status = 'timeout' THEN 1 ELSE 0 END) AS BIGINT) AS timeouts, \
             CAST(SUM(CASE WHEN e.status = 'abandoned' THEN 1 ELSE 0 END) AS BIGINT) AS abandoned, \
             CAST(SUM(COALESCE(e.execution_time_ms, 0)) AS BIGINT) AS time_ms, \
             CAST(SUM(e.actions_taken) AS BIGINT) AS actions, \
             CAST(SUM((SELECT COUNT(*) FROM bot_findings f WHERE f.execution_id = e.id)) AS BIGINT) AS detected \
             FROM bot_executions e WHERE e.started_at < $1 AND e.status <> 'running' \
             AND NOT EXISTS (SELECT 1 FROM bot_metrics m WHERE m.bot_id = e.bot_id AND m.metric_date = {DAY}) \
             GROUP BY e.bot_id, {DAY}",
            DAY = DAY_OF_STARTED
        );
        #[allow(clippy::type_complexity)]
        let groups: Vec<(String, NaiveDate, i64, i64, i64, i64, i64, i64, i64)> =
            sqlx::query_as(&sql)
                .bind(cutoff)
                .fetch_all(self.reader())
                .await?;
        if groups.is_empty() {
            return Ok(0);
        }
        let mut tx = self.write_tx().await?;
        let mut written = 0;
        for (bot_id, day, total, ok, timeouts, abandoned, time_ms, actions, detected) in groups {
            let timed = (total - abandoned).max(1);
            written += sqlx::query(
                "INSERT INTO bot_metrics (id, metric_date, bot_id, total_executions, successful_executions, \
                 failed_executions, avg_execution_time_ms, issues_detected, issues_resolved, tickets_created, \
                 created_at, total_execution_time_ms, timeout_executions, abandoned_executions, actions_taken) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9, $10, $11, $12, $13) \
                 ON CONFLICT (metric_date, bot_id) DO NOTHING",
            )
            .bind(new_id())
            .bind(day)
            .bind(&bot_id)
            .bind(total)
            .bind(ok)
            .bind(total - ok)
            .bind(time_ms / timed)
            .bind(detected)
            .bind(Utc::now())
            .bind(time_ms)
            .bind(timeouts)
            .bind(abandoned)
            .bind(actions)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn archive_read(&self, cutoff: DateTime<Utc>, max_rows: usize) -> Result<ArchiveBatch> {
        let sql = format!(
            "{EXEC_SELECT} WHERE e.started_at < $1 AND e.status <> 'running' \
             ORDER BY e.started_at, e.id LIMIT $2"
        );
        let mut executions: Vec<ExecutionRow> = sqlx::query_as(&sql)
            .bind(cutoff)
            .bind(max_rows.max(1) as i64)
            .fetch_all(self.reader())
            .await?;
        if executions.is_empty() {
            return Ok(ArchiveBatch::default());
        }
        let ids: Vec<&str> = executions.iter().map(|e| e.id.as_str()).collect();
        let sql = format!(
            "{FINDING_SELECT} WHERE f.execution_id IN ({}) AND f.resolved_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM bot_tickets t WHERE t.finding_id = f.id)",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query_as::<_, FindingRow>(&sql);
        for id in &ids {
            q = q.bind(*id);
        }
        let mut findings = q.fetch_all(self.reader()).await?;
        let sql = format!(
            "{ACTION_SELECT} WHERE a.execution_id IN ({})",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query_as::<_, ActionRow>(&sql);
        for id in &ids {
            q = q.bind(*id);
        }
        let mut actions = q.fetch_all(self.reader()).await?;
        // Keep the batch within `max_rows` rows in all, dropping the newest executions.
        while executions.len() > 1 && executions.len() + findings.len() + actions.len() > max_rows {
            let dropped = executions.pop().expect("more than one").id;
            findings.retain(|f| f.execution_id.as_deref() != Some(dropped.as_str()));
            actions.retain(|a| a.execution_id.as_deref() != Some(dropped.as_str()));
        }
        Ok(ArchiveBatch {
            executions,
            findings,
            actions,
        })
    }

    async fn archive_delete(&self, batch: &ArchiveBatch) -> Result<u64> {
        if batch.executions.is_empty() {
            return Ok(0);
        }
        let exec_ids: Vec<&str> = batch.executions.iter().map(|e| e.id.as_str()).collect();
        let finding_ids: Vec<&str> = batch.findings.iter().map(|f| f.id.as_str()).collect();
        let action_ids: Vec<&str> = batch.actions.iter().map(|a| a.id.as_str()).collect();
        let mut tx = self.write_tx().await?;
        let mut deleted = 0;
        // In this order, nothing still open (or with a ticket) goes with its execution.
        let steps: [(&str, &[&str]); 5] = [
            ("DELETE FROM bot_actions WHERE id IN ({})", &action_ids),
            (
                "DELETE FROM bot_findings WHERE id IN ({}) AND resolved_at IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM bot_tickets t WHERE t.finding_id = bot_findings.id)",
                &finding_ids,
            ),
            (
                "UPDATE bot_findings SET execution_id = NULL WHERE execution_id IN ({})",
                &exec_ids,
            ),
            (
                "UPDATE bot_actions SET execution_id = NULL WHERE execution_id IN ({})",
                &exec_ids,
            ),
            (
                "DELETE FROM bot_executions WHERE id IN ({}) AND status <> 'running'",
                &exec_ids,
            ),
        ];
        for (i, (template, ids)) in steps.iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let sql = template.replace("{}", &placeholders(1, ids.len()));
            let mut q = sqlx::query(&sql);
            for id in ids.iter() {
                q = q.bind(*id);
            }
            let n = q.execute(&mut *tx).await?.rows_affected();
            if i != 2 && i != 3 {
                deleted += n;
            }
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn fold_target_stats(
        &self,
        hourly_before: DateTime<Utc>,
        daily_before: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<FoldReport> {
        use std::collections::BTreeMap;
        let mut report = FoldReport::default();
        let lat_cols = LATENCY_COLUMNS.join(", ");
        let select = format!(
            "SELECT s.bot_id AS bot, {} FROM bot_target_stats s WHERE s.granularity = 'hour' \
             AND s.bucket_start < $1 ORDER BY s.bot_id, s.target, s.bucket_start LIMIT 2000",
            stats_columns()
        );
        let mut upsert = format!(
            "INSERT INTO bot_target_stats (bot_id, target, granularity, bucket_start, checks, failures, \
             latency_sum_ms, latency_max_ms, {lat_cols}) VALUES ($1, $2, 'day', $3, $4, $5, $6, $7, {}) \
             ON CONFLICT (bot_id, target, granularity, bucket_start) DO UPDATE SET \
             checks = bot_target_stats.checks + excluded.checks, \
             failures = bot_target_stats.failures + excluded.failures, \
             latency_sum_ms = bot_target_stats.latency_sum_ms + excluded.latency_sum_ms, \
             latency_max_ms = CASE WHEN excluded.latency_max_ms > bot_target_stats.latency_max_ms \
                 THEN excluded.latency_max_ms ELSE bot_target_stats.latency_max_ms END",
            placeholders(8, LATENCY_COLUMNS.len())
        );
        for c in LATENCY_COLUMNS {
            upsert.push_str(&format!(", {c} = bot_target_stats.{c} + excluded.{c}"));
        }
        loop {
            let mut tx = self.write_tx().await?;
            let rows = sqlx::query(&select)
                .bind(hourly_before)
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                break;
            }
            let hours: Vec<TargetStat> = rows.iter().map(stat_from_row).collect::<Result<_>>()?;
            report.hourly_rows_folded += hours.len() as u64;
            // (bot id, target, day) → the day's totals; (bot id, target) → last hour folded.
            let mut days: BTreeMap<(String, String, DateTime<Utc>), TargetStat> = BTreeMap::new();
            let mut last: BTreeMap<(String, String), DateTime<Utc>> = BTreeMap::new();
            for h in hours {
                let day = h
                    .bucket_start
                    .date_naive()
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight")
                    .and_utc();
                last.insert((h.bot.clone(), h.target.clone()), h.bucket_start);
                let d = days
                    .entry((h.bot.clone(), h.target.clone(), day))
                    .or_insert_with(|| TargetStat {
                        checks: 0,
                        failures: 0,
                        latency_sum_ms: 0.0,
                        latency_max_ms: 0.0,
                        latency_buckets: [0; 14],
                        granularity: "day".into(),
                        bucket_start: day,
                        ..h.clone()
                    });
                d.checks += h.checks;
                d.failures += h.failures;
                d.latency_sum_ms += h.latency_sum_ms;
                d.latency_max_ms = d.latency_max_ms.max(h.latency_max_ms);
                for (a, b) in d.latency_buckets.iter_mut().zip(h.latency_buckets) {
                    *a += b;
                }
            }
            for ((bot_id, target, day), d) in &days {
                let mut q = sqlx::query(&upsert)
                    .bind(bot_id)
                    .bind(target)
                    .bind(*day)
                    .bind(d.checks)
                    .bind(d.failures)
                    .bind(d.latency_sum_ms)
                    .bind(d.latency_max_ms);
                for n in d.latency_buckets {
                    q = q.bind(n);
                }
                q.execute(&mut *tx).await?;
                report.daily_rows_written += 1;
            }
            for ((bot_id, target), until) in &last {
                sqlx::query(
                    "DELETE FROM bot_target_stats WHERE granularity = 'hour' AND bot_id = $1 \
                     AND target = $2 AND bucket_start <= $3",
                )
                .bind(bot_id)
                .bind(target)
                .bind(*until)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        let mut tx = self.write_tx().await?;
        report.daily_rows_dropped = sqlx::query(
            "DELETE FROM bot_target_stats WHERE granularity = 'day' AND bucket_start < $1",
        )
        .bind(daily_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM bot_target_stats WHERE EXISTS (SELECT 1 FROM bot_targets t \
             WHERE t.bot_id = bot_target_stats.bot_id AND t.target = bot_target_stats.target \
             AND t.last_checked_at < $1)",
        )
        .bind(stale_before)
        .execute(&mut *tx)
        .await?;
        report.targets_forgotten =
            sqlx::query("DELETE FROM bot_targets WHERE last_checked_at < $1")
                .bind(stale_before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(report)
    }
}

/// Reads a `bot_target_stats` row selected with `STATS_COLUMNS`.
fn stat_from_row(row: &<Db as sqlx::Database>::Row) -> Result<TargetStat> {
    use sqlx::Row;
    let mut latency_buckets = [0i64; 14];
    for (i, c) in LATENCY_COLUMNS.iter().enumerate() {
        latency_buckets[i] = row.try_get(*c)?;
    }
    Ok(TargetStat {
        bot: row.try_get("bot")?,
        target: row.try_get("target")?,
        granularity: row.try_get("granularity")?,
        bucket_start: row.try_get("bucket_start")?,
        checks: row.try_get("checks")?,
        failures: row.try_get("failures")?,
        latency_sum_ms: row.try_get("latency_sum_ms")?,
        latency_max_ms: row.try_get("latency_max_ms")?,
        latency_buckets,
    })
}

fn stats_columns() -> String {
    format!(
        "s.target, s.granularity, s.bucket_start, s.checks, s.failures, s.latency_sum_ms, \
         s.latency_max_ms, {}",
        LATENCY_COLUMNS
            .iter()
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// botfleet's tables, for sentinel-db's read check.
const TABLES: &[&str] = &[
    "bots",
    "bot_executions",
    "bot_findings",
    "bot_actions",
    "bot_tickets",
    "bot_knowledge",
    "bot_metrics",
    "bot_targets",
    "bot_target_stats",
    "security_events",
    "blocked_addresses",
    "address_requests",
    "bot_canary",
];

const TARGET_SELECT: &str = "SELECT b.name AS bot, t.target, t.up, t.status_code, t.latency_ms, \
     t.error, t.cert_expires_at, t.consecutive_failures, t.last_checked_at, t.last_change_at, \
     t.metadata FROM bot_targets t JOIN bots b ON b.id = t.bot_id";

/// The last observation of each target (PostgreSQL refuses to touch a row twice in one
/// statement), in their first-seen order.
fn unique_targets(targets: &[TargetObservation]) -> Vec<&TargetObservation> {
    let mut unique: Vec<&TargetObservation> = Vec::with_capacity(targets.len());
    let mut seen = std::collections::HashSet::new();
    for t in targets.iter().rev() {
        if seen.insert(t.target.as_str()) {
            unique.push(t);
        }
    }
    unique.reverse();
    unique
}

/// The start of the hour `now` falls in: the stats bucket.
fn hour_of(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive()
        .and_hms_opt(now.time().hour(), 0, 0)
        .expect("a valid hour")
        .and_utc()
}

/// What `bot_targets` does with a new observation of a known target.
const TARGET_CONFLICT: &str = " ON CONFLICT (bot_id, target) DO UPDATE SET up = excluded.up, \
     status_code = excluded.status_code, latency_ms = excluded.latency_ms, error = excluded.error, \
     cert_expires_at = COALESCE(excluded.cert_expires_at, bot_targets.cert_expires_at), \
     consecutive_failures = CASE WHEN excluded.up THEN 0 ELSE bot_targets.consecutive_failures + 1 END, \
     last_checked_at = excluded.last_checked_at, \
     last_change_at = CASE WHEN excluded.up = bot_targets.up THEN bot_targets.last_change_at \
         ELSE excluded.last_checked_at END, \
     metadata = excluded.metadata";

/// What `bot_target_stats` does with one more check in an existing bucket.
fn stats_conflict() -> String {
    let mut sql = String::from(
        " ON CONFLICT (bot_id, target, granularity, bucket_start) DO UPDATE SET \
         checks = bot_target_stats.checks + 1, \
         failures = bot_target_stats.failures + excluded.failures, \
         latency_sum_ms = bot_target_stats.latency_sum_ms + excluded.latency_sum_ms, \
         latency_max_ms = CASE WHEN excluded.latency_max_ms > bot_target_stats.latency_max_ms \
             THEN excluded.latency_max_ms ELSE bot_target_stats.latency_max_ms END",
    );
    for c in LATENCY_COLUMNS {
        sql.push_str(&format!(", {c} = bot_target_stats.{c} + excluded.{c}"));
    }
    sql
}

fn split_cursor(c: &Option<(DateTime<Utc>, String)>) -> (Option<DateTime<Utc>>, Option<String>) {
    match c {
        Some((at, id)) => (Some(*at), Some(id.clone())),
        None => (None, None),
    }
}
