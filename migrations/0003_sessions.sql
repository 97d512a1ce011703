-- Sessions (a projection written only by the SessionCoordinator Durable Object),
-- their lifecycle event log, and users' SSH public keys.
-- Times are Unix milliseconds. Ids: ses_, key_.

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    owner_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN
                          ('created','starting','running','sleeping','stopping','stopped','failed','deleted')),
    desired_state       TEXT NOT NULL CHECK (desired_state IN ('running','stopped','sleeping','deleted')),
    runtime_status      TEXT,
    runtime_state       TEXT,
    runtime_updated_at  INTEGER,
    -- Monotonic per session; a projection write with a lower version is ignored.
    state_version       INTEGER NOT NULL,
    generation          INTEGER NOT NULL DEFAULT 0,
    failure_reason      TEXT,
    spec_json           TEXT NOT NULL,       -- RuntimeSpec
    host_keys_json      TEXT NOT NULL DEFAULT '[]',
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    deleted_at          INTEGER
);
-- Names are unique among a workspace's live sessions; deleted names are reusable.
CREATE UNIQUE INDEX sessions_workspace_name_key ON sessions (workspace_id, name)
    WHERE deleted_at IS NULL;
CREATE INDEX sessions_owner_created ON sessions (owner_id, created_at, id);

CREATE TABLE session_events (
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,            -- the state_version the transition produced
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    command     TEXT,                        -- start/stop/restart/delete; NULL for observations
    actor       TEXT NOT NULL,               -- usr_… or 'system'
    reason      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE ssh_keys (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    algorithm    TEXT NOT NULL,
    public_key   TEXT NOT NULL,              -- the authorized_keys line, without options
    fingerprint  TEXT NOT NULL,              -- SHA256:…
    created_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX ssh_keys_user_fingerprint_key ON ssh_keys (user_id, fingerprint);
CREATE INDEX ssh_keys_user_created ON ssh_keys (user_id, created_at, id);
