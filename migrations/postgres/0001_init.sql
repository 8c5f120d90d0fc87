-- botfleet schema, PostgreSQL dialect. The seven tables of the bot-system document keep their
-- columns; what the pass semantics need is added after them. Ids are UUIDv7 strings written
-- by botfleet, so both backends share them; integers are BIGINT so one decoder serves both.

CREATE TABLE bots (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    display_name          TEXT NOT NULL,
    description           TEXT,
    schedule_cron         TEXT,              -- NULL: not in crons.json, runs only when called
    api_endpoint          TEXT NOT NULL,
    status                TEXT NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'paused', 'error', 'retired')),
    last_execution_at     TIMESTAMPTZ,
    next_execution_at     TIMESTAMPTZ,
    total_runs            BIGINT NOT NULL DEFAULT 0,
    successful_runs       BIGINT NOT NULL DEFAULT 0,
    failed_runs           BIGINT NOT NULL DEFAULT 0,
    avg_execution_time_ms BIGINT,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    -- pass semantics
    config                JSONB,              -- JSON; NULL means the bot's defaults
    lease_execution_id    TEXT,
    lease_expires_at      TIMESTAMPTZ,
    circuit_state         TEXT NOT NULL DEFAULT 'closed'
                          CHECK (circuit_state IN ('closed', 'open', 'half_open')),
    consecutive_failures  BIGINT NOT NULL DEFAULT 0,
    circuit_open_until    TIMESTAMPTZ,
    last_status           TEXT,
    last_error            TEXT,
    last_success_at       TIMESTAMPTZ
);

CREATE TABLE bot_executions (
    id                TEXT PRIMARY KEY,
    bot_id            TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    status            TEXT NOT NULL
                      CHECK (status IN ('running', 'success', 'failed', 'timeout', 'abandoned')),
    started_at        TIMESTAMPTZ NOT NULL,
    completed_at      TIMESTAMPTZ,
    execution_time_ms BIGINT,
    checks_performed  BIGINT NOT NULL DEFAULT 0,
    issues_found      BIGINT NOT NULL DEFAULT 0,
    actions_taken     BIGINT NOT NULL DEFAULT 0,
    error_message     TEXT,
    metadata          JSONB,
    created_at        TIMESTAMPTZ NOT NULL,
    -- pass semantics
    slot_at           TIMESTAMPTZ,                  -- the schedule fire time this pass serves
    forced            BOOLEAN NOT NULL DEFAULT FALSE,
    triggered_by      TEXT NOT NULL,
    idempotency_key   TEXT,
    deadline_at       TIMESTAMPTZ NOT NULL          -- when its lease expires
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
    detected_at        TIMESTAMPTZ NOT NULL,
    resolved_at        TIMESTAMPTZ,
    resolution_method  TEXT,                 -- auto-fixed, auto-cleared, manual, escalated
    metadata           JSONB,
    -- pass semantics
    fingerprint        TEXT NOT NULL,        -- category/component/key, unique among open findings
    occurrences        BIGINT NOT NULL DEFAULT 1,
    last_seen_at       TIMESTAMPTZ NOT NULL,
    last_execution_id  TEXT,
    last_heal_at       TIMESTAMPTZ,
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
    success            BOOLEAN NOT NULL,
    error_message      TEXT,
    taken_at           TIMESTAMPTZ NOT NULL,
    metadata           JSONB,
    -- pass semantics
    execution_id       TEXT REFERENCES bot_executions(id) ON DELETE CASCADE,
    knowledge_id       TEXT,
    verified           BOOLEAN                -- NULL: nothing to verify
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
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    resolved_at      TIMESTAMPTZ,
    resolution_notes TEXT,
    metadata         JSONB
);
CREATE INDEX bot_tickets_status ON bot_tickets (status);

CREATE TABLE bot_knowledge (
    id               TEXT PRIMARY KEY,
    category         TEXT NOT NULL,
    issue_pattern    TEXT NOT NULL,          -- a regex over "category: title"
    solution         TEXT NOT NULL,
    success_rate     DOUBLE PRECISION NOT NULL DEFAULT 0,  -- percent, 0 to 100
    times_applied    BIGINT NOT NULL DEFAULT 0,
    times_successful BIGINT NOT NULL DEFAULT 0,
    last_used_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    -- self-healing
    action           JSONB,                   -- JSON {"type": ..., "params": {...}}; NULL: advice only
    enabled          BOOLEAN NOT NULL DEFAULT TRUE
);

CREATE TABLE bot_metrics (
    id                      TEXT PRIMARY KEY,
    metric_date             DATE NOT NULL,
    bot_id                  TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    total_executions        BIGINT NOT NULL DEFAULT 0,
    successful_executions   BIGINT NOT NULL DEFAULT 0,
    failed_executions       BIGINT NOT NULL DEFAULT 0,
    avg_execution_time_ms   BIGINT,
    issues_detected         BIGINT NOT NULL DEFAULT 0,
    issues_resolved         BIGINT NOT NULL DEFAULT 0,
    tickets_created         BIGINT NOT NULL DEFAULT 0,
    created_at              TIMESTAMPTZ NOT NULL,
    -- rollup support
    total_execution_time_ms BIGINT NOT NULL DEFAULT 0,
    timeout_executions      BIGINT NOT NULL DEFAULT 0,
    abandoned_executions    BIGINT NOT NULL DEFAULT 0,
    actions_taken           BIGINT NOT NULL DEFAULT 0,
    UNIQUE (metric_date, bot_id)
);

-- Per-target state: the last result of each thing a bot checks.
CREATE TABLE bot_targets (
    bot_id               TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    target               TEXT NOT NULL,
    up                   BOOLEAN NOT NULL,
    status_code          BIGINT,
    latency_ms           DOUBLE PRECISION,
    error                TEXT,
    cert_expires_at      TIMESTAMPTZ,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    last_checked_at      TIMESTAMPTZ NOT NULL,
    last_change_at       TIMESTAMPTZ NOT NULL,
    metadata             JSONB,
    PRIMARY KEY (bot_id, target)
);

-- Hourly (and, after folding, daily) stats per target.
CREATE TABLE bot_target_stats (
    bot_id         TEXT NOT NULL REFERENCES bots(id) ON DELETE CASCADE,
    target         TEXT NOT NULL,
    granularity    TEXT NOT NULL CHECK (granularity IN ('hour', 'day')),
    bucket_start   TIMESTAMPTZ NOT NULL,
    checks         BIGINT NOT NULL DEFAULT 0,
    failures       BIGINT NOT NULL DEFAULT 0,
    latency_sum_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_max_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (bot_id, target, granularity, bucket_start)
);

-- Auth failures, refusals and admin changes: what the security bot reads and the audit log shows.
CREATE TABLE security_events (
    id           TEXT PRIMARY KEY,
    occurred_at  TIMESTAMPTZ NOT NULL,
    kind         TEXT NOT NULL,              -- auth_failure, forbidden, admin_change
    address      TEXT,
    method       TEXT,
    route        TEXT,
    reason       TEXT,
    subject      TEXT,
    target       TEXT,
    before_value JSONB,
    after_value  JSONB
);
CREATE INDEX security_events_time ON security_events (occurred_at DESC, id DESC);
CREATE INDEX security_events_address ON security_events (kind, address, occurred_at);
