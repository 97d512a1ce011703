-- Operations: diagnostics probes (one request that exercises every binding)
-- and the record of reconcile sweeps.

CREATE TABLE diagnostic_probes (
    id                     TEXT PRIMARY KEY,
    user_id                TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    dead_letter            INTEGER NOT NULL CHECK (dead_letter IN (0, 1)),
    created_at             INTEGER NOT NULL,
    r2_at                  INTEGER,
    r2_detail              TEXT,
    durable_object_at      INTEGER,
    durable_object_detail  TEXT,
    build_queue_at         INTEGER,
    build_queue_attempts   INTEGER NOT NULL DEFAULT 0,
    reconcile_queue_at     INTEGER,
    dead_letter_at         INTEGER,
    workflow_at            INTEGER,
    workflow_detail        TEXT
);
CREATE INDEX diagnostic_probes_user_idx ON diagnostic_probes (user_id, created_at);
-- The reconcile sweep purges old probes by age.
CREATE INDEX diagnostic_probes_created_idx ON diagnostic_probes (created_at);

CREATE TABLE reconcile_runs (
    id             TEXT PRIMARY KEY,
    trigger        TEXT NOT NULL,            -- 'cron' or 'manual'
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER NOT NULL,
    probes_purged  INTEGER NOT NULL
);
CREATE INDEX reconcile_runs_finished_idx ON reconcile_runs (finished_at DESC);
