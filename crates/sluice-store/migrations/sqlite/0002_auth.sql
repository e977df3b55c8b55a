-- Source auth methods and sink credentials. Secrets are never stored in clear: api keys as
-- SHA-256, passwords as argon2 PHC strings, credential bodies sealed with an AEAD key whose id
-- is kept beside the ciphertext.
CREATE TABLE auth_methods (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    username TEXT,
    secret_hash TEXT NOT NULL,
    hint TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    schema_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sealed_body TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE INDEX credentials_key_id ON credentials (key_id);
