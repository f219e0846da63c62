-- Browser sign-in: server-side sessions, authorization codes, remembered consent.

-- A session of actix-session, keyed by a digest of the cookie's session key.
-- `user_id` is copied out of the state so that sign-out everywhere, account
-- disable and account deletion end a user's sessions on every node.
CREATE TABLE sessions (
    key_digest TEXT PRIMARY KEY,
    user_id TEXT,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Authorization codes (RFC 6749 §4.1), single use; `family_id` is what the
-- first exchange issued, so that a second use can revoke it.
CREATE TABLE auth_codes (
    digest TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,
    code_challenge TEXT,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    family_id TEXT
);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

-- What a user allowed a client; a later request within this scope asks no more.
CREATE TABLE consents (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- Magic links: the account a link was sent for (when one existed), when the
-- link was used, and when the tab that asked for it took the sign-in over.
ALTER TABLE otp_codes ADD COLUMN user_id TEXT;
ALTER TABLE otp_codes ADD COLUMN magic_used_at BIGINT;
ALTER TABLE otp_codes ADD COLUMN handed_off_at BIGINT;
