-- The adaptor catalogue (PRODUCT.md section 7), refreshed from npm or local directories.
-- One row per adaptor package ever listed upstream; one that upstream stopped listing is
-- hidden (hidden_at set), never deleted, so credentials of its type keep their schema.
CREATE TABLE adaptors (
    name TEXT PRIMARY KEY,          -- '@openfn/language-http'
    description TEXT,
    latest TEXT NOT NULL,           -- the version dist-tags.latest named at the last fetch
    deprecated TEXT,                -- the latest version's deprecation message
    hidden_at BIGINT,               -- when a listing first lacked it (microseconds)
    checked_at BIGINT NOT NULL,     -- the last refresh that listed it
    changed_at BIGINT NOT NULL      -- the last refresh that changed it
);

-- Every published version of an adaptor. schema holds configuration-schema.json exactly as
-- published (its text, so its field order survives); schema_state says whether it was
-- fetched: 'unfetched', 'present' or 'absent' (that version has none).
CREATE TABLE adaptor_versions (
    name TEXT NOT NULL REFERENCES adaptors (name) ON DELETE CASCADE,
    version TEXT NOT NULL,
    published TEXT,                 -- ISO-8601, as the registry wrote it
    deprecated TEXT,
    integrity TEXT,                 -- the tarball's subresource integrity ('sha512-...')
    tarball TEXT,
    unpacked_size BIGINT,
    dependencies TEXT NOT NULL,     -- JSON object: name to version range
    schema_state TEXT NOT NULL DEFAULT 'unfetched',
    schema TEXT,
    PRIMARY KEY (name, version)
);

-- An adaptor's icons ('square', 'rectangle'). The bytes are a file named
-- '<sha256>.<ext>' in the data directory's 'adaptor-icons'; etag revalidates it upstream.
CREATE TABLE adaptor_icons (
    name TEXT NOT NULL REFERENCES adaptors (name) ON DELETE CASCADE,
    shape TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    etag TEXT,
    fetched_at BIGINT NOT NULL,
    PRIMARY KEY (name, shape)
);

-- Each refresh of the catalogue, newest last (the most recent 200 are kept): the next
-- interval's tick is due at the last finished_at plus the interval.
CREATE TABLE catalog_refreshes (
    id BIGSERIAL PRIMARY KEY,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    node TEXT NOT NULL,
    cause TEXT NOT NULL,            -- 'interval', 'api', 'cli', 'first_read'
    ok BIGINT NOT NULL,             -- 1: the listing was read and applied
    summary TEXT NOT NULL           -- JSON: what changed, and each package's failure
);
