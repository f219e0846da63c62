-- Portable schema: the same statements run on SQLite and PostgreSQL.
-- Times are BIGINT unix seconds, flags BIGINT 0/1, lists JSON text.

CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_digest TEXT,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    scopes TEXT NOT NULL,
    public BIGINT NOT NULL DEFAULT 0,
    skip_consent BIGINT NOT NULL DEFAULT 0,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    private_jwk TEXT NOT NULL,
    is_current BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    expires_at BIGINT
);
-- At most one current key, even when several nodes start at once.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (is_current) WHERE is_current = 1;

-- Revoked access tokens (by jti) and token families, kept until they expire.
CREATE TABLE revocations (
    id TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revocations_expires_at ON revocations (expires_at);
