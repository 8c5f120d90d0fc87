-- Blocked and rate-limited addresses (oracle's fixes), checked by every replica's middleware.
CREATE TABLE blocked_addresses (
    address        TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('block', 'rate_limit')),
    requests_per_minute BIGINT,          -- for rate_limit
    reason         TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    finding_id     TEXT
);
CREATE INDEX blocked_addresses_expiry ON blocked_addresses (expires_at);

-- Requests per address per minute, flushed by each replica's middleware (oracle sums them).
CREATE TABLE address_requests (
    address      TEXT NOT NULL,
    minute_start TIMESTAMPTZ NOT NULL,
    requests     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (address, minute_start)
);
CREATE INDEX address_requests_minute ON address_requests (minute_start);

-- sentinel-db writes, reads and deletes a row here on every pass.
CREATE TABLE bot_canary (
    id         TEXT PRIMARY KEY,
    written_at TIMESTAMPTZ NOT NULL,
    payload    TEXT NOT NULL
);

-- Self-healing for sentinel-db and oracle.
INSERT INTO bot_knowledge (id, category, issue_pattern, solution, action, created_at, updated_at) VALUES
('01900000-0000-7000-8000-000000000004', 'db',
 '^db: (High dead-tuple ratio|Many free pages)$',
 'VACUUM (ANALYZE) the tables over the dead-tuple threshold; on SQLite, VACUUM the file.',
 '{"type": "vacuum", "params": {}}',
 '2026-11-22T00:00:00+00:00', '2026-11-22T00:00:00+00:00'),
('01900000-0000-7000-8000-000000000005', 'retention',
 '^retention: Records past retention$',
 'Archive executions older than RETENTION_DAYS, with their findings and actions, to a gzip JSON-lines file under DATA_DIR/archive, then delete them in small batches. Daily rollups stay.',
 '{"type": "archive_records", "params": {}}',
 '2026-11-22T00:00:00+00:00', '2026-11-22T00:00:00+00:00'),
('01900000-0000-7000-8000-000000000006', 'db',
 '^db: Idle-in-transaction sessions$',
 'End sessions idle in a transaction for too long (only when sentinel-db''s config sets end_idle_transactions).',
 '{"type": "end_idle_sessions", "params": {}}',
 '2026-11-22T00:00:00+00:00', '2026-11-22T00:00:00+00:00'),
('01900000-0000-7000-8000-000000000007', 'security',
 '^security: Brute force$',
 'Block the address for an hour; botfleet answers it 403 on every route but liveness, on every replica.',
 '{"type": "block_ip", "params": {"duration_secs": 3600}}',
 '2026-11-22T00:00:00+00:00', '2026-11-22T00:00:00+00:00'),
('01900000-0000-7000-8000-000000000008', 'security',
 '^security: API abuse$',
 'Rate-limit the address to 60 requests a minute for an hour.',
 '{"type": "rate_limit", "params": {"requests_per_minute": 60, "duration_secs": 3600}}',
 '2026-11-22T00:00:00+00:00', '2026-11-22T00:00:00+00:00');
