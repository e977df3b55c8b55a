-- The plain ledger: a finished request is one row of `requests`, its event in columns of the
-- same row (one B-tree insert per request instead of two; NULL event columns: the exchange
-- never got far enough to have an event). Request batches, the event files and the separate
-- in-flight file go: `Store::migrate` imports what they hold (the upgrades listed in
-- `ledger_upgrades`) and removes them. Times are µs since the Unix epoch.
ALTER TABLE requests ADD COLUMN request_headers TEXT;       -- JSON [[name, value], …], redacted
ALTER TABLE requests ADD COLUMN response_headers TEXT;
ALTER TABLE requests ADD COLUMN request_body_sha256 TEXT;   -- hex SHA-256 of the whole body
ALTER TABLE requests ADD COLUMN request_body_preview BLOB;  -- its first bytes
ALTER TABLE requests ADD COLUMN request_body_truncated INTEGER;
ALTER TABLE requests ADD COLUMN response_body_sha256 TEXT;
ALTER TABLE requests ADD COLUMN response_body_preview BLOB;
ALTER TABLE requests ADD COLUMN response_body_truncated INTEGER;
ALTER TABLE requests ADD COLUMN connect_us BIGINT;
ALTER TABLE requests ADD COLUMN send_us BIGINT;
ALTER TABLE requests ADD COLUMN queue_us BIGINT;
ALTER TABLE requests ADD COLUMN reused_connection INTEGER;

UPDATE requests SET
    request_headers = e.request_headers, response_headers = e.response_headers,
    request_body_sha256 = e.request_body_sha256, request_body_preview = e.request_body_preview,
    request_body_truncated = e.request_body_truncated,
    response_body_sha256 = e.response_body_sha256, response_body_preview = e.response_body_preview,
    response_body_truncated = e.response_body_truncated,
    connect_us = e.connect_us, send_us = e.send_us, queue_us = e.queue_us,
    reused_connection = e.reused_connection
FROM events e WHERE e.request_id = requests.id;
DROP TABLE events;

-- The listing index without the id (a tie on `started_at` is sorted among its few rows): the
-- id's 36 bytes were an eighth of a request's size on disk.
DROP INDEX requests_channel_started;
CREATE INDEX requests_channel_started ON requests (channel_id, started_at);
-- An index per selective history filter, each in time order within its channel (a listing
-- reads one newest first and stops after its page; see `requests::list_sql`). The method and
-- the path prefix are matched during a bounded scan instead: an index costs every request a
-- B-tree insert, and a method is rarely rare.
CREATE INDEX requests_channel_state ON requests (channel_id, state, started_at);
CREATE INDEX requests_channel_status ON requests (channel_id, (response_status / 100), started_at);

-- Requests in flight written by SQL (a PostgreSQL node's pending records; on SQLite the journal
-- holds them, and this table only what an older version's in-flight file held).
CREATE TABLE requests_inflight (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    completed_at BIGINT,
    client_identity TEXT NOT NULL,
    source_auth_method_id TEXT,
    source_auth_type TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT,
    response_status BIGINT,
    error TEXT,
    latency_us BIGINT,
    ttfb_us BIGINT,
    request_body_size BIGINT,
    response_body_size BIGINT
);
CREATE INDEX requests_inflight_channel ON requests_inflight (channel_id, started_at);

-- Roll-ups kept by the ledger writer in the commit that writes the rows: finished requests per
-- channel and minute of their start, by state, and their latencies as a histogram. They serve
-- the statistics, the channel list's 24 h counts and the charts without reading request rows.
-- Stored in key order (WITHOUT ROWID): a channel's window is one range of the table.
CREATE TABLE request_minutes (
    channel_id TEXT NOT NULL,
    minute BIGINT NOT NULL,          -- start of the minute
    success BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    timeout BIGINT NOT NULL,
    error BIGINT NOT NULL,
    PRIMARY KEY (channel_id, minute)
) WITHOUT ROWID;
-- Bucket b holds latencies in [2^(b/8), 2^((b+1)/8)) µs (an eighth of an octave, 9% wide).
CREATE TABLE latency_minutes (
    channel_id TEXT NOT NULL,
    minute BIGINT NOT NULL,
    bucket BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (channel_id, minute, bucket)
) WITHOUT ROWID;

-- Work left for `Store::migrate` after the SQL: each name is done once, then deleted.
CREATE TABLE ledger_upgrades (name TEXT PRIMARY KEY);
INSERT INTO ledger_upgrades (name) VALUES ('import_batched_requests'), ('rebuild_rollups');
