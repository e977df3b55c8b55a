-- Instance settings saved by an operator (the administration page, PATCH /api/v1/settings):
-- one row per setting that differs from its command-line default, its value a whole number.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
