-- Templates, versions (manifest + bundle), builds with their attempts, and
-- releases with their promotion history. Times are Unix milliseconds.
-- Ids: tpl_, tv_, bld_, rel_. R2 keys: docs/storage.md.

CREATE TABLE templates (
    id                 TEXT PRIMARY KEY,
    workspace_id       TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    active_release_id  TEXT,
    archived_at        INTEGER,
    created_by         TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE UNIQUE INDEX templates_workspace_name_key ON templates (workspace_id, name);

CREATE TABLE template_versions (
    id                  TEXT PRIMARY KEY,
    template_id         TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    number              INTEGER NOT NULL,
    source              TEXT NOT NULL CHECK (source IN ('manifest', 'devcontainer')),
    manifest_json       TEXT NOT NULL,        -- the validated Manifest
    manifest_hash       TEXT NOT NULL,
    warnings_json       TEXT NOT NULL DEFAULT '[]',
    bundle_digest       TEXT,                 -- sha256 hex, once uploaded
    bundle_size         INTEGER,
    bundle_uploaded_at  INTEGER,
    created_by          TEXT NOT NULL,
    created_at          INTEGER NOT NULL
);
CREATE UNIQUE INDEX template_versions_number_key ON template_versions (template_id, number);

CREATE TABLE builds (
    id              TEXT PRIMARY KEY,
    template_id     TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version_id      TEXT NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    workspace_id    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN
                      ('queued','building','succeeded','failed','retrying','dead_lettered','cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    allowance_from  INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    artifact_json   TEXT,                     -- layer digest/size, base image, hashes, step timings
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX builds_template_created_idx ON builds (template_id, created_at DESC, id DESC);
CREATE INDEX builds_state_idx ON builds (state, updated_at);

CREATE TABLE build_attempts (
    build_id     TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    outcome      TEXT,                        -- succeeded, failed, lost
    error        TEXT,
    PRIMARY KEY (build_id, attempt)
);

CREATE TABLE releases (
    id          TEXT PRIMARY KEY,
    template_id TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    build_id    TEXT NOT NULL,
    number      INTEGER NOT NULL,
    spec_json   TEXT NOT NULL,                -- immutable: what sessions boot
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX releases_number_key ON releases (template_id, number);

-- Every change of a template's active release: promotion or rollback.
CREATE TABLE release_activations (
    id                   TEXT PRIMARY KEY,
    template_id          TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    release_id           TEXT NOT NULL,
    previous_release_id  TEXT,
    kind                 TEXT NOT NULL CHECK (kind IN ('promote', 'rollback')),
    actor_id             TEXT NOT NULL,
    created_at           INTEGER NOT NULL
);
CREATE INDEX release_activations_template_idx ON release_activations (template_id, created_at DESC);

-- Sessions remember the template and release they boot.
ALTER TABLE sessions ADD COLUMN template_id TEXT;
ALTER TABLE sessions ADD COLUMN release_id TEXT;
