-- Accounts: users, workspaces, membership and API tokens.
-- Times are Unix milliseconds (INTEGER). Ids are prefixed strings (usr_, ws_, tok_).

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,            -- normalized: trimmed, lowercase
    display_name  TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE workspaces (
    id                 TEXT PRIMARY KEY,
    slug               TEXT NOT NULL,
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('personal', 'team')),
    -- Set for personal workspaces only: the user the workspace belongs to.
    personal_owner_id  TEXT REFERENCES users (id) ON DELETE CASCADE,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    CHECK ((kind = 'personal') = (personal_owner_id IS NOT NULL))
);
CREATE UNIQUE INDEX workspaces_slug_key ON workspaces (slug);
CREATE UNIQUE INDEX workspaces_personal_owner_key ON workspaces (personal_owner_id)
    WHERE personal_owner_id IS NOT NULL;

CREATE TABLE workspace_members (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
-- "Which workspaces is this user in?" (the primary key serves the reverse lookup).
CREATE INDEX workspace_members_user_idx ON workspace_members (user_id);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('access', 'personal')),
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL,            -- lowercase hex SHA-256 of the whole token
    token_prefix  TEXT NOT NULL,            -- first characters, for display only
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,                  -- NULL: never expires
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
-- Authentication looks tokens up by hash on every request.
CREATE UNIQUE INDEX api_tokens_hash_key ON api_tokens (token_hash);
-- Token lists: a user's tokens of one kind, newest first, keyset-paginated by (created_at, id).
CREATE INDEX api_tokens_user_kind_created_idx ON api_tokens (user_id, kind, created_at DESC, id DESC);
