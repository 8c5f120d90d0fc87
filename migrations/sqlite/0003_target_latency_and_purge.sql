-- Latency histograms for target stats (for p95 over 1 h and 24 h): one count per bucket,
-- bounds in milliseconds; the last bucket holds everything slower than 10 s.

ALTER TABLE bot_target_stats ADD COLUMN lat_le_25 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_50 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_100 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_200 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_300 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_500 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_750 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_1000 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_1500 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_2000 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_3000 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_5000 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_10000 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bot_target_stats ADD COLUMN lat_le_inf INTEGER NOT NULL DEFAULT 0;

-- Self-healing for a server error: call the bot's configured purge hook, then re-check.
INSERT INTO bot_knowledge (id, category, issue_pattern, solution, action, created_at, updated_at) VALUES
('01900000-0000-7000-8000-000000000003', 'availability',
 '^(availability|api): Server error$',
 'Call the cache-purge hook configured as purge_hook in the bot''s config (an HTTP request, secrets as ${ENV}), then re-check the failing target.',
 '{"type": "purge_cache", "params": {}}',
 '2026-11-22T00:00:00+00:00', '2026-11-22T00:00:00+00:00');
