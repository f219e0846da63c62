//! Retention's SQL: the lease that lets one node at a time run a background
//! job, and the bounded deletes of rows past their lifetime.

use super::{now, Store};

/// What retention purges, each by one bounded statement (`$1`: the cutoff,
/// `$2`: the batch size). The subquery finds a batch through an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Codes past their expiry.
    OtpCodes,
    /// `secret_identifier`s past their expiry, used or not.
    VerifiedIdentifiers,
    /// Send, failure and resend counters whose window has passed.
    RateCounters,
    /// Lockouts that have ended.
    OtpLocks,
    /// Browser sessions past their expiry.
    Sessions,
    /// Sessions that never signed in, idle since the cutoff.
    AnonymousSessions,
    /// Authorization codes a day past their expiry.
    AuthCodes,
    /// Revoked access-token ids past the token's expiry.
    Revocations,
    /// Audit events older than `audit.retention`.
    AuditEvents,
}

impl Expired {
    pub const ALL: [Expired; 9] = [
        Expired::OtpCodes,
        Expired::VerifiedIdentifiers,
        Expired::RateCounters,
        Expired::OtpLocks,
        Expired::Sessions,
        Expired::AnonymousSessions,
        Expired::AuthCodes,
        Expired::Revocations,
        Expired::AuditEvents,
    ];

    /// The table, as metrics name it.
    pub fn table(self) -> &'static str {
        match self {
            Expired::OtpCodes => "otp_codes",
            Expired::VerifiedIdentifiers => "verified_identifiers",
            Expired::RateCounters => "rate_counters",
            Expired::OtpLocks => "otp_locks",
            Expired::Sessions | Expired::AnonymousSessions => "sessions",
            Expired::AuthCodes => "auth_codes",
            Expired::Revocations => "revocations",
            Expired::AuditEvents => "audit_events",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Expired::OtpCodes => {
                "DELETE FROM otp_codes WHERE id IN (SELECT id FROM otp_codes WHERE expires_at < $1 LIMIT $2)"
            }
            Expired::VerifiedIdentifiers => {
                "DELETE FROM verified_identifiers WHERE digest IN
                 (SELECT digest FROM verified_identifiers WHERE expires_at < $1 LIMIT $2)"
            }
            Expired::RateCounters => {
                "DELETE FROM rate_counters WHERE key IN (SELECT key FROM rate_counters WHERE window_start < $1 LIMIT $2)"
            }
            Expired::OtpLocks => {
                "DELETE FROM otp_locks WHERE ident_key IN (SELECT ident_key FROM otp_locks WHERE locked_until < $1 LIMIT $2)"
            }
            Expired::Sessions => {
                "DELETE FROM sessions WHERE key_digest IN (SELECT key_digest FROM sessions WHERE expires_at <= $1 LIMIT $2)"
            }
            Expired::AnonymousSessions => {
                "DELETE FROM sessions WHERE key_digest IN
                 (SELECT key_digest FROM sessions WHERE user_id IS NULL AND updated_at <= $1 LIMIT $2)"
            }
            Expired::AuthCodes => {
                "DELETE FROM auth_codes WHERE digest IN (SELECT digest FROM auth_codes WHERE expires_at <= $1 LIMIT $2)"
            }
            Expired::Revocations => {
                "DELETE FROM revocations WHERE id IN (SELECT id FROM revocations WHERE expires_at < $1 LIMIT $2)"
            }
            Expired::AuditEvents => {
                "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < $1 LIMIT $2)"
            }
        }
    }
}

impl Store {
    /// Takes (or renews) the lease `name` for `holder` until `ttl` seconds
    /// from now, if nobody else holds a live one. One atomic upsert, so two
    /// nodes asking at once cannot both get it.
    pub async fn take_lease(&self, name: &str, holder: &str, ttl: i64) -> anyhow::Result<bool> {
        let now = now();
        let row = self
            .db
            .query(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = $3
                 WHERE leases.expires_at < $4 OR leases.holder = $2
                 RETURNING holder",
            )
            .bind(name)
            .bind(holder)
            .bind(now + ttl)
            .bind(now)
            .fetch_optional()
            .await?;
        Ok(row.is_some())
    }

    /// Gives the lease up, if `holder` has it.
    pub async fn drop_lease(&self, name: &str, holder: &str) -> anyhow::Result<()> {
        self.db
            .query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute()
            .await?;
        Ok(())
    }

    /// How many rows `table` has (for tests and the bench); `table` must be one of ours.
    #[doc(hidden)]
    pub async fn count_rows(&self, table: &str) -> anyhow::Result<i64> {
        anyhow::ensure!(
            table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "not a table name"
        );
        let row = self
            .db
            .query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one()
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Deletes at most `limit` rows of `what` past `cutoff`; how many it deleted.
    pub async fn purge(&self, what: Expired, cutoff: i64, limit: i64) -> anyhow::Result<u64> {
        let done = self.db.query(what.sql()).bind(cutoff).bind(limit).execute().await?;
        Ok(done.rows_affected())
    }

    /// Deletes at most `limit` token families past their lifetime, then
    /// their refresh tokens; how many families. (A crash between the two
    /// leaves refresh tokens of no family, which nothing accepts.)
    pub async fn purge_token_families(&self, cutoff: i64, limit: i64) -> anyhow::Result<u64> {
        let rows = self
            .db
            .query(
                "DELETE FROM token_families WHERE id IN
                 (SELECT id FROM token_families WHERE expires_at < $1 LIMIT $2) RETURNING id",
            )
            .bind(cutoff)
            .bind(limit)
            .fetch_all()
            .await?;
        let ids = rows
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in ids.chunks(500) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut q = self
                .db
                .query(format!("DELETE FROM refresh_tokens WHERE family_id IN ({list})"));
            for id in chunk {
                q = q.bind(id);
            }
            q.execute().await?;
        }
        Ok(ids.len() as u64)
    }
}
