-- Requests in flight move to a database file of their own beside this one (attached to every
-- connection as `live`; see sqlite_writer.rs): its writer commits pending records without ever
-- waiting for the bulky completions, which this file's writer commits in large batches. Rows
-- left here by an earlier version are from a previous run, so they are closed as interrupted,
-- as a start would close them.
INSERT INTO requests (id, request_id, channel_id, snapshot_id, node_id, state, started_at, completed_at, client_identity, source_auth_method_id, source_auth_type, method, path, query, response_status, error, latency_us, ttfb_us, request_body_size, response_body_size)
SELECT id, request_id, channel_id, snapshot_id, node_id, 'error', started_at, started_at, client_identity, source_auth_method_id, source_auth_type, method, path, query, response_status, 'interrupted', latency_us, ttfb_us, request_body_size, response_body_size FROM main.requests_inflight;
DROP TABLE main.requests_inflight;
