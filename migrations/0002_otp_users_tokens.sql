-- One-time codes, limits, verified identifiers, users, refresh tokens, audit.
-- Identifiers in these tables are keyed digests ("ident keys"), never plain.

CREATE TABLE otp_codes (
    id TEXT PRIMARY KEY,
    ident_key TEXT NOT NULL,
    client_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    code_digest TEXT NOT NULL,
    magic_digest TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    used_at BIGINT,
    dead BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX otp_codes_ident ON otp_codes (ident_key, client_id, created_at);
CREATE UNIQUE INDEX otp_codes_magic ON otp_codes (magic_digest);

-- Fixed-window counters for send limits (per identifier, client, IP, resend gap).
CREATE TABLE rate_counters (
    key TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL
);

CREATE TABLE otp_locks (
    ident_key TEXT PRIMARY KEY,
    locked_until BIGINT NOT NULL
);

-- secret_identifier: proof that a client verified an identifier.
CREATE TABLE verified_identifiers (
    digest TEXT PRIMARY KEY,
    ident_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    identifier TEXT NOT NULL,
    client_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT,
    username_key TEXT UNIQUE,
    email TEXT,
    email_key TEXT UNIQUE,
    email_verified BIGINT NOT NULL DEFAULT 0,
    phone TEXT UNIQUE,
    phone_verified BIGINT NOT NULL DEFAULT 0,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    is_admin BIGINT NOT NULL DEFAULT 0,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A refresh-token family: one sign-in of one user at one client.
CREATE TABLE token_families (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    amr TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX token_families_user ON token_families (user_id);

CREATE TABLE refresh_tokens (
    digest TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    event TEXT NOT NULL,
    client_id TEXT,
    user_id TEXT,
    ident_key TEXT,
    ip TEXT,
    detail TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
