-- Retention (SPEC §8): expired rows are purged in bounded batches by one
-- node at a time. The indexes let each batch find its rows without a scan.

-- A lease row per background job: the node whose lease is live runs it. An
-- upsert takes it (see store/retention.rs); this works on SQLite, PostgreSQL
-- and the PostgreSQL-compatible distributed engines, unlike advisory locks.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX otp_codes_expires ON otp_codes (expires_at);
CREATE INDEX verified_identifiers_expires ON verified_identifiers (expires_at);
CREATE INDEX token_families_expires ON token_families (expires_at);
CREATE INDEX rate_counters_window ON rate_counters (window_start);
CREATE INDEX otp_locks_until ON otp_locks (locked_until);
