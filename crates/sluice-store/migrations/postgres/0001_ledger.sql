-- The sluice ledger (PostgreSQL). Times are microseconds since the Unix epoch; ids are UUID text.
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    sink_url TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    lock_version BIGINT NOT NULL,
    source_auth_method_ids TEXT NOT NULL,
    sink_credential_id TEXT,
    timeouts TEXT NOT NULL,
    preview_bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    lock_version BIGINT NOT NULL,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (channel_id, lock_version)
);

CREATE TABLE requests (
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
CREATE INDEX requests_channel_started ON requests (channel_id, started_at DESC, id DESC);
CREATE INDEX requests_request_id ON requests (request_id);
CREATE INDEX requests_pending ON requests (node_id) WHERE state = 'pending';

CREATE TABLE events (
    request_id TEXT PRIMARY KEY,
    request_headers TEXT NOT NULL,
    response_headers TEXT NOT NULL,
    request_body_sha256 TEXT NOT NULL,
    request_body_size BIGINT NOT NULL,
    request_body_preview BYTEA NOT NULL,
    request_body_truncated BOOLEAN NOT NULL,
    response_body_sha256 TEXT NOT NULL,
    response_body_size BIGINT NOT NULL,
    response_body_preview BYTEA NOT NULL,
    response_body_truncated BOOLEAN NOT NULL,
    response_status BIGINT,
    latency_us BIGINT,
    ttfb_us BIGINT,
    connect_us BIGINT,
    send_us BIGINT,
    queue_us BIGINT,
    reused_connection BOOLEAN,
    error TEXT
);

CREATE TABLE audit_entries (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    before_value TEXT,
    after_value TEXT
);
CREATE INDEX audit_resource ON audit_entries (resource_type, resource_id, at DESC);
CREATE INDEX audit_at ON audit_entries (at DESC, id DESC);
