//! Authorization codes (RFC 6749 §4.1.2): stored as digests, consumed by one
//! atomic statement that also records the token family the exchange starts,
//! so a second use finds what to revoke.

use super::{now, Store};

pub struct AuthCode {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: String,
    pub expires_at: i64,
    /// RFC 8707 resources of the authorization request, space-separated.
    pub resources: String,
    /// The browser session (`sid` in its state) the code was issued in.
    pub session_id: Option<String>,
}

/// What presenting a code found.
pub enum Exchange {
    /// First use: the code, now consumed.
    Fresh(Box<AuthCode>),
    /// Used before by its own client; the family its first use started (if it got that far).
    Reused { family_id: Option<String> },
    /// Unknown, or another client's code: nothing was spent or revoked.
    Unknown,
}

impl Store {
    pub async fn insert_auth_code(&self, digest: &str, c: &AuthCode) -> anyhow::Result<()> {
        self.db
            .query(
                "INSERT INTO auth_codes (digest, client_id, user_id, redirect_uri, scope, nonce, code_challenge,
                                     auth_time, amr, created_at, expires_at, resources, session_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(digest)
            .bind(&c.client_id)
            .bind(&c.user_id)
            .bind(&c.redirect_uri)
            .bind(&c.scope)
            .bind(c.nonce.as_deref())
            .bind(c.code_challenge.as_deref())
            .bind(c.auth_time)
            .bind(&c.amr)
            .bind(now())
            .bind(c.expires_at)
            .bind(&c.resources)
            .bind(c.session_id.as_deref())
            .execute()
            .await?;
        Ok(())
    }

    /// The unused code of this client, without spending it: what the
    /// exchange checks (PKCE, redirect URI) before it spends the code, so a
    /// wrong guess by someone holding a public client's code burns nothing.
    pub async fn peek_auth_code(&self, digest: &str, client_id: &str) -> anyhow::Result<Option<AuthCode>> {
        let row = self
            .db
            .query(
                "SELECT client_id, user_id, redirect_uri, scope, nonce, code_challenge, auth_time, amr, expires_at, resources, session_id
             FROM auth_codes WHERE digest = $1 AND client_id = $2 AND used_at IS NULL",
            )
            .bind(digest)
            .bind(client_id)
            .fetch_optional()
            .await?;
        row.map(|r| code_from(&r)).transpose()
    }

    /// Consumes the code and records `family_id` as what this use issues.
    /// Of two racing requests exactly one gets `Fresh`.
    pub async fn exchange_auth_code(&self, digest: &str, client_id: &str, family_id: &str) -> anyhow::Result<Exchange> {
        // Only the client the code was issued to can spend it (SPEC §9).
        let row = self
            .db
            .query(
                "UPDATE auth_codes SET used_at = $2, family_id = $3
             WHERE digest = $1 AND client_id = $4 AND used_at IS NULL
             RETURNING client_id, user_id, redirect_uri, scope, nonce, code_challenge, auth_time, amr, expires_at, resources, session_id",
            )
            .bind(digest)
            .bind(now())
            .bind(family_id)
            .bind(client_id)
            .fetch_optional()
            .await?;
        if let Some(r) = row {
            return Ok(Exchange::Fresh(Box::new(code_from(&r)?)));
        }
        let used = self
            .db
            .query("SELECT family_id FROM auth_codes WHERE digest = $1 AND client_id = $2 AND used_at IS NOT NULL")
            .bind(digest)
            .bind(client_id)
            .fetch_optional()
            .await?;
        Ok(match used {
            Some(r) => Exchange::Reused {
                family_id: r.try_get("family_id")?,
            },
            None => Exchange::Unknown,
        })
    }
}

fn code_from(r: &super::Row) -> anyhow::Result<AuthCode> {
    Ok(AuthCode {
        client_id: r.try_get("client_id")?,
        user_id: r.try_get("user_id")?,
        redirect_uri: r.try_get("redirect_uri")?,
        scope: r.try_get("scope")?,
        nonce: r.try_get("nonce")?,
        code_challenge: r.try_get("code_challenge")?,
        auth_time: r.try_get("auth_time")?,
        amr: r.try_get("amr")?,
        expires_at: r.try_get("expires_at")?,
        resources: r.try_get("resources")?,
        session_id: r.try_get("session_id")?,
    })
}
