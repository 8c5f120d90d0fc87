-- Knowledge entries for the auto-fixes that exist. Seeded once, by migration, so an operator's
-- edits and deletions stick. Patterns are regexes over "category: title".
INSERT INTO bot_knowledge (id, category, issue_pattern, solution, action, created_at, updated_at) VALUES
('01900000-0000-7000-8000-000000000001', 'load',
 '^(load: High CPU usage|errors: High 5xx rate|latency: Slow responses)$',
 'Shed load: non-essential routes answer 503 with Retry-After for five minutes, so triggers and health checks keep working while the host recovers.',
 '{"type": "shed_load", "params": {"duration_secs": 300}}',
 '2026-11-22T00:00:00+00:00', '2026-11-22T00:00:00+00:00'),
('01900000-0000-7000-8000-000000000002', 'memory',
 '^memory: High memory usage$',
 'Drop botfleet''s in-process caches (health snapshot, knowledge patterns) to give memory back.',
 '{"type": "drop_caches", "params": {}}',
 '2026-11-22T00:00:00+00:00', '2026-11-22T00:00:00+00:00');
