-- Snapshots of sessions' persisted paths (docs/persistence.md): a manifest
-- in R2 plus blobs (file contents addressed by SHA-256) shared by all the
-- snapshots of a workspace. Times are Unix milliseconds. Ids: snp_.

CREATE TABLE snapshots (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL,
    session_id     TEXT NOT NULL,             -- the session it was taken of or uploaded for
    session_name   TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('manual', 'sleep', 'stop', 'restart', 'upload', 'drain')),
    state          TEXT NOT NULL CHECK (state IN ('pending', 'ready', 'failed')),
    roots_json     TEXT NOT NULL,             -- the persisted paths it covers
    files          INTEGER NOT NULL DEFAULT 0,
    bytes          INTEGER NOT NULL DEFAULT 0, -- content bytes of all its files
    new_blobs      INTEGER NOT NULL DEFAULT 0, -- blobs this snapshot stored
    new_bytes      INTEGER NOT NULL DEFAULT 0,
    skipped_json   TEXT NOT NULL DEFAULT '[]', -- entries left out, with the reason
    error          TEXT,
    created_by     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    completed_at   INTEGER
);
CREATE INDEX snapshots_session_idx ON snapshots (session_id, created_at DESC, id DESC);
CREATE INDEX snapshots_workspace_idx ON snapshots (workspace_id, created_at DESC);

-- One R2 object per stored blob. The key carries a nonce: a blob deleted and
-- stored again gets a new key, so a delete in flight never removes it.
CREATE TABLE snapshot_blobs (
    workspace_id TEXT NOT NULL,
    digest       TEXT NOT NULL,               -- sha256 hex of the content
    size         INTEGER NOT NULL,
    object_key   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, digest)
);

-- The blobs each snapshot needs, written before any blob is looked up or
-- stored: a blob is deleted only when no row names it.
CREATE TABLE snapshot_refs (
    snapshot_id  TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    digest       TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, digest)
);
CREATE INDEX snapshot_refs_digest_idx ON snapshot_refs (workspace_id, digest);
