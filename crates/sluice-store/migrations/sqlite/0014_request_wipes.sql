-- Requests whose recorded content was wiped (POST /api/v1/requests/{id}/wipe). The row of
-- `requests` keeps the fact of the request: its state, status, method, sizes, timings and body
-- hashes; its headers (now '[]'), body previews, path, query and client address are gone.
-- Who wiped it and when is here, and in the audit trail.
CREATE TABLE request_wipes (
    request_id TEXT PRIMARY KEY,    -- requests.id
    wiped_at BIGINT NOT NULL,       -- microseconds since the Unix epoch
    wiped_by TEXT NOT NULL          -- the actor: 'user:ann', 'token:ops', ...
);

-- How a project's requests are recorded: 'full', or 'metadata' (headers, body previews, path,
-- query and client address are never stored; the request reads as wiped by the policy).
ALTER TABLE projects ADD COLUMN recording TEXT NOT NULL DEFAULT 'full';
