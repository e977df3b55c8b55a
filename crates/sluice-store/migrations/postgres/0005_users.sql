-- People, their sessions, their roles per project, and who owns each API token.
-- Passwords are argon2id PHC strings; a session is known by the SHA-256 of its cookie's secret.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    -- The lower-cased username: names are unique whatever their case.
    username_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    -- 'set'; 'one_time' (generated, must be changed after the first sign-in); 'one_time_used'
    -- (signed in with once: refused until changed or reset).
    password_state TEXT NOT NULL,
    superuser BOOLEAN NOT NULL,
    disabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    -- The absolute expiry; the idle expiry is last_seen_at plus the idle timeout.
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE memberships (
    project_id TEXT NOT NULL REFERENCES projects(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- A token without a user is an instance token (its role holds on every project, as before
-- users existed); with a user it carries the user's rights, narrowed to `project_id` and
-- capped at `role` ('superuser' caps nothing).
ALTER TABLE api_tokens ADD COLUMN user_id TEXT REFERENCES users(id);
ALTER TABLE api_tokens ADD COLUMN project_id TEXT REFERENCES projects(id);
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;

-- The project an audit entry belongs to (none for users, tokens, sign-ins): only its members
-- read it.
ALTER TABLE audit_entries ADD COLUMN project_id TEXT;
UPDATE audit_entries SET project_id = COALESCE(
    (SELECT project_id FROM channels WHERE channels.id = audit_entries.resource_id),
    (SELECT project_id FROM credentials WHERE credentials.id = audit_entries.resource_id),
    (SELECT project_id FROM auth_methods WHERE auth_methods.id = audit_entries.resource_id),
    COALESCE(after_value, before_value)::json ->> 'project_id')
WHERE resource_type IN ('channel', 'credential', 'auth_method');
CREATE INDEX audit_project ON audit_entries (project_id, at DESC, id DESC);
