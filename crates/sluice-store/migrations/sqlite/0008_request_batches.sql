-- Finished requests, many to a row (see batches.rs): the requests of one channel that the
-- history writer commits together and that started within the same 10 ms. A row per request,
-- with its table and index B-trees, was most of the writer's work and much of the proxy's
-- tail latency (docs/BENCHMARKS.md, session 24). `requests` keeps the rows already written and
-- the rare single writes; readers see both.
CREATE TABLE request_batches (
    id INTEGER PRIMARY KEY,
    channel_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    first_started BIGINT NOT NULL,
    last_started BIGINT NOT NULL,
    id_bucket BIGINT NOT NULL,
    min_id BLOB NOT NULL,
    max_id BLOB NOT NULL,
    n BIGINT NOT NULL,
    n_pending BIGINT NOT NULL,
    n_success BIGINT NOT NULL,
    n_failed BIGINT NOT NULL,
    n_timeout BIGINT NOT NULL,
    n_error BIGINT NOT NULL,
    -- The entries' headers, then their records: a scan of the headers never reads the
    -- records' overflow pages.
    heads BLOB NOT NULL,
    records BLOB NOT NULL
);
CREATE INDEX request_batches_channel ON request_batches (channel_id, first_started, last_started);
CREATE INDEX request_batches_ids ON request_batches (id_bucket, min_id, max_id);
-- A caller's own request id, naming the batch that holds its request (a request id sluice
-- generated names its record, and needs no row here).
CREATE TABLE request_keys (
    request_id TEXT NOT NULL,
    batch INTEGER NOT NULL,
    PRIMARY KEY (request_id, batch)
) WITHOUT ROWID;
