-- Health of each channel's sink, stale-channel bookkeeping and the operational event log (SQLite).
-- The health columns are written by the health monitor, never by configuration changes: they do
-- not bump lock_version, write audit entries or take part in snapshots.
ALTER TABLE channels ADD COLUMN health_status TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE channels ADD COLUMN health_checked_at BIGINT;
ALTER TABLE channels ADD COLUMN health_failure TEXT;
ALTER TABLE channels ADD COLUMN health_hint TEXT;
-- 1 once the channel's staleness has been logged; reset when it has traffic again.
ALTER TABLE channels ADD COLUMN stale_logged INTEGER NOT NULL DEFAULT 0;

-- Persisted (warn and error) event-log entries. `id` is the entry's position in the one
-- event sequence (microsecond-based, strictly increasing), shared with in-memory info entries.
CREATE TABLE event_log (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    severity TEXT NOT NULL,
    source TEXT NOT NULL,
    channel_id TEXT,
    message TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX event_log_at ON event_log (at);
CREATE INDEX event_log_channel ON event_log (channel_id, id DESC);
