-- Identity and access: signed-in sessions with rotating refresh tokens,
-- passkeys, WebAuthn challenges, recovery codes, device authorization,
-- workspace invites and settings, and the audit log.
-- Times are Unix milliseconds. Ids: aus_, pk_, chl_, dev_, inv_, aud_.

-- A signed-in session: one refresh-token family (API clients, the CLI) or one
-- browser cookie. Revoking it ends every token issued under it.
CREATE TABLE auth_sessions (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client          TEXT NOT NULL CHECK (client IN ('api', 'cli', 'browser')),
    -- How the user signed in: registration, passkey, recovery_code, device.
    method          TEXT NOT NULL,
    user_agent      TEXT,
    ip              TEXT,
    -- Browser sessions: SHA-256 of the session cookie and of the CSRF token.
    cookie_hash     TEXT,
    csrf_hash       TEXT,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    revoked_reason  TEXT
);
CREATE INDEX auth_sessions_user_created_idx ON auth_sessions (user_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX auth_sessions_cookie_key ON auth_sessions (cookie_hash) WHERE cookie_hash IS NOT NULL;

-- Refresh tokens by hash. Exchanging one sets rotated_at and issues its
-- successor; presenting a rotated token again revokes the whole session.
CREATE TABLE refresh_tokens (
    token_hash   TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    rotated_at   INTEGER
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- Access tokens belong to the auth session that issued them (NULL: personal
-- access tokens and tokens from before auth sessions existed).
ALTER TABLE api_tokens ADD COLUMN session_id TEXT REFERENCES auth_sessions (id) ON DELETE CASCADE;
CREATE INDEX api_tokens_session_idx ON api_tokens (session_id) WHERE session_id IS NOT NULL;

CREATE TABLE passkeys (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id    TEXT NOT NULL,          -- base64url, as the authenticator reports it
    public_key       TEXT NOT NULL,          -- base64url COSE_Key
    algorithm        INTEGER NOT NULL,       -- COSE algorithm (-7 ES256, -8 EdDSA)
    sign_count       INTEGER NOT NULL,
    aaguid           TEXT NOT NULL,          -- hex
    name             TEXT NOT NULL,
    backup_eligible  INTEGER NOT NULL,
    backed_up        INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    last_used_at     INTEGER
);
CREATE UNIQUE INDEX passkeys_credential_key ON passkeys (credential_id);
CREATE INDEX passkeys_user_idx ON passkeys (user_id, created_at);

-- WebAuthn challenges: single use (used_at), short-lived (expires_at).
CREATE TABLE webauthn_challenges (
    id          TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL CHECK (purpose IN ('register', 'login')),
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    challenge   TEXT NOT NULL,               -- base64url
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

-- Recovery codes by hash; a set is replaced whole on regeneration.
CREATE TABLE recovery_codes (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

-- RFC 8628 device authorization requests (`burstflare login`).
CREATE TABLE device_authorizations (
    id                TEXT PRIMARY KEY,
    device_code_hash  TEXT NOT NULL,
    user_code         TEXT NOT NULL,         -- canonical form, no dash
    client_name       TEXT NOT NULL,
    user_agent        TEXT,
    ip                TEXT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'consumed')),
    user_id           TEXT REFERENCES users (id) ON DELETE CASCADE,
    interval_ms       INTEGER NOT NULL,
    last_polled_at    INTEGER,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    decided_at        INTEGER
);
CREATE UNIQUE INDEX device_authorizations_device_code_key ON device_authorizations (device_code_hash);
CREATE UNIQUE INDEX device_authorizations_user_code_key ON device_authorizations (user_code);

-- Workspace settings (JSON object validated by the Worker).
ALTER TABLE workspaces ADD COLUMN settings_json TEXT NOT NULL DEFAULT '{}';

CREATE TABLE workspace_invites (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email         TEXT NOT NULL,             -- normalized
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    code_hash     TEXT NOT NULL,
    invited_by    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    accepted_at   INTEGER,
    accepted_by   TEXT REFERENCES users (id) ON DELETE SET NULL,
    revoked_at    INTEGER
);
CREATE UNIQUE INDEX workspace_invites_code_key ON workspace_invites (code_hash);
CREATE INDEX workspace_invites_workspace_idx ON workspace_invites (workspace_id, created_at DESC, id DESC);

-- The audit log: one record per mutating API request, whatever its outcome.
-- workspace_id is the workspace acted in (the actor's personal workspace for
-- account-level actions); NULL when nobody could be identified.
CREATE TABLE audit_events (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT REFERENCES workspaces (id) ON DELETE CASCADE,
    actor_id      TEXT,                      -- user id; kept after the user is gone
    action        TEXT NOT NULL,             -- e.g. session.start, workspace.invite
    target_type   TEXT,
    target_id     TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
    status        INTEGER NOT NULL,          -- HTTP status answered
    error_code    TEXT,
    ip            TEXT,
    user_agent    TEXT,
    request_id    TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX audit_events_workspace_idx ON audit_events (workspace_id, created_at DESC, id DESC);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, created_at DESC);
