-- botfleet schema, SQLite dialect. The seven tables of the bot-system document keep their
-- columns; what the pass semantics need is added after them. Timestamps are RFC 3339 text in
-- UTC ("+00:00"), always written by botfleet, so they sort and compare as text.

CREATE TABLE bots (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    display_name          TEXT NOT NULL,
    description           TEXT,
    schedule_cron         TEXT,              -- NULL: not in crons.json, runs only when called
    api_endpoint          TEXT NOT NULL,
    status                TEXT NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'paused', 'error', 'retired')),
    last_execution_at     TEXT,
    next_execution_at     TEXT,
    total_runs            INTEGER NOT NULL DEFAULT 0,
    successful_runs       INTEGER NOT NULL DEFAULT 0,
    failed_runs           INTEGER NOT NULL DEFAULT 0,
    avg_execution_time_ms INTEGER,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    -- pass semantics
    config                TEXT,              -- JSON; NULL means the bot's defaults
    lease_execution_id    TEXT,
    lease_expires_at      TEXT,
    circuit_state         TEXT NOT NULL DEFAULT 'closed'
                          CHECK (circuit_state IN ('closed', 'open', 'half_open')),
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    circuit_open_until    TEXT,
    last_status           TEXT,
    last_error            TEXT,
    last_success_at       TEXT
);

CREATE TABLE bot_executions (
    id                TEXT PRIMARY KEY,
    bot_id            TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    status            TEXT NOT NULL
                      CHECK (status IN ('running', 'success', 'failed', 'timeout', 'abandoned')),
    started_at        TEXT NOT NULL,
    completed_at      TEXT,
    execution_time_ms INTEGER,
    checks_performed  INTEGER NOT NULL DEFAULT 0,
    issues_found      INTEGER NOT NULL DEFAULT 0,
    actions_taken     INTEGER NOT NULL DEFAULT 0,
    error_message     TEXT,
    metadata          TEXT,
    created_at        TEXT NOT NULL,
    -- pass semantics
    slot_at           TEXT,                  -- the schedule fire time this pass serves
    forced            INTEGER NOT NULL DEFAULT 0,
    triggered_by      TEXT NOT NULL,
    idempotency_key   TEXT,
    deadline_at       TEXT NOT NULL          -- when its lease expires
);
CREATE INDEX bot_executions_bot_time ON bot_executions (bot_id, started_at DESC, id DESC);
CREATE INDEX bot_executions_time ON bot_executions (started_at DESC, id DESC);
CREATE INDEX bot_executions_slot ON bot_executions (bot_id, slot_at);
CREATE INDEX bot_executions_running ON bot_executions (status) WHERE status = 'running';
CREATE UNIQUE INDEX bot_executions_idempotency ON bot_executions (bot_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status <> 'abandoned';

CREATE TABLE bot_findings (
    id                 TEXT PRIMARY KEY,
    bot_id             TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    execution_id       TEXT REFERENCES bot_executions(id) ON DELETE CASCADE,
    severity           TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    category           TEXT NOT NULL,
    title              TEXT NOT NULL,
    description        TEXT,
    affected_component TEXT,
    detected_at        TEXT NOT NULL,
    resolved_at        TEXT,
    resolution_method  TEXT,                 -- auto-fixed, auto-cleared, manual, escalated
    metadata           TEXT,
    -- pass semantics
    fingerprint        TEXT NOT NULL,        -- category/component/key, unique among open findings
    occurrences        INTEGER NOT NULL DEFAULT 1,
    last_seen_at       TEXT NOT NULL,
    last_execution_id  TEXT,
    last_heal_at       TEXT,
    resolved_by        TEXT,
    resolution_notes   TEXT
);
CREATE UNIQUE INDEX bot_findings_open ON bot_findings (bot_id, fingerprint) WHERE resolved_at IS NULL;
CREATE INDEX bot_findings_bot_time ON bot_findings (bot_id, detected_at DESC);
CREATE INDEX bot_findings_time ON bot_findings (detected_at DESC, id DESC);
CREATE INDEX bot_findings_execution ON bot_findings (execution_id);

CREATE TABLE bot_actions (
    id                 TEXT PRIMARY KEY,
    bot_id             TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    finding_id         TEXT REFERENCES bot_findings(id) ON DELETE SET NULL,
    action_type        TEXT NOT NULL,
    action_description TEXT NOT NULL,
    success            INTEGER NOT NULL,
    error_message      TEXT,
    taken_at           TEXT NOT NULL,
    metadata           TEXT,
    -- pass semantics
    execution_id       TEXT REFERENCES bot_executions(id) ON DELETE CASCADE,
    knowledge_id       TEXT,
    verified           INTEGER                -- NULL: nothing to verify
);
CREATE INDEX bot_actions_execution ON bot_actions (execution_id);
CREATE INDEX bot_actions_finding ON bot_actions (finding_id);

CREATE TABLE bot_tickets (
    id               TEXT PRIMARY KEY,
    bot_id           TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    finding_id       TEXT REFERENCES bot_findings(id) ON DELETE CASCADE,
    severity         TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    title            TEXT NOT NULL,
    description      TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'assigned', 'resolved', 'closed')),
    assigned_to      TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    resolved_at      TEXT,
    resolution_notes TEXT,
    metadata         TEXT
);
CREATE INDEX bot_tickets_status ON bot_tickets (status);

CREATE TABLE bot_knowledge (
    id               TEXT PRIMARY KEY,
    category         TEXT NOT NULL,
    issue_pattern    TEXT NOT NULL,          -- a regex over "category: title"
    solution         TEXT NOT NULL,
    success_rate     REAL NOT NULL DEFAULT 0,  -- percent, 0 to 100
    times_applied    INTEGER NOT NULL DEFAULT 0,
    times_successful INTEGER NOT NULL DEFAULT 0,
    last_used_at     TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    -- self-healing
    action           TEXT,                   -- JSON {"type": ..., "params": {...}}; NULL: advice only
    enabled          INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE bot_metrics (
    id                      TEXT PRIMARY KEY,
    metric_date             TEXT NOT NULL,
    bot_id                  TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    total_executions        INTEGER NOT NULL DEFAULT 0,
    successful_executions   INTEGER NOT NULL DEFAULT 0,
    failed_executions       INTEGER NOT NULL DEFAULT 0,
    avg_execution_time_ms   INTEGER,
    issues_detected         INTEGER NOT NULL DEFAULT 0,
    issues_resolved         INTEGER NOT NULL DEFAULT 0,
    tickets_created         INTEGER NOT NULL DEFAULT 0,
    created_at              TEXT NOT NULL,
    -- rollup support
    total_execution_time_ms INTEGER NOT NULL DEFAULT 0,
    timeout_executions      INTEGER NOT NULL DEFAULT 0,
    abandoned_executions    INTEGER NOT NULL DEFAULT 0,
    actions_taken           INTEGER NOT NULL DEFAULT 0,
    UNIQUE (metric_date, bot_id)
);

-- Per-target state: the last result of each thing a bot checks.
CREATE TABLE bot_targets (
    bot_id               TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    target               TEXT NOT NULL,
    up                   INTEGER NOT NULL,
    status_code          INTEGER,
    latency_ms           REAL,
    error                TEXT,
    cert_expires_at      TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_checked_at      TEXT NOT NULL,
    last_change_at       TEXT NOT NULL,
    metadata             TEXT,
    PRIMARY KEY (bot_id, target)
);

-- Hourly (and, after folding, daily) stats per target.
CREATE TABLE bot_target_stats (
    bot_id         TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    target         TEXT NOT NULL,
    granularity    TEXT NOT NULL CHECK (granularity IN ('hour', 'day')),
    bucket_start   TEXT NOT NULL,
    checks         INTEGER NOT NULL DEFAULT 0,
    failures       INTEGER NOT NULL DEFAULT 0,
    latency_sum_ms REAL NOT NULL DEFAULT 0,
    latency_max_ms REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (bot_id, target, granularity, bucket_start)
);

-- Auth failures, refusals and admin changes: what the security bot reads and the audit log shows.
CREATE TABLE security_events (
    id           TEXT PRIMARY KEY,
    occurred_at  TEXT NOT NULL,
    kind         TEXT NOT NULL,              -- auth_failure, forbidden, admin_change
    address      TEXT,
    method       TEXT,
    route        TEXT,
    reason       TEXT,
    subject      TEXT,
    target       TEXT,
    before_value TEXT,
    after_value  TEXT
);
CREATE INDEX security_events_time ON security_events (occurred_at DESC, id DESC);
CREATE INDEX security_events_address ON security_events (kind, address, occurred_at);
