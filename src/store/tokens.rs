//! Refresh tokens, in families: every rotation adds a token to the family;
//! presenting a rotated (used) token again revokes the whole family.

use super::{now, Store};

#[derive(Debug, Clone)]
pub struct Family {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub amr: String,
    pub auth_time: i64,
    pub expires_at: i64,
    pub revoked: bool,
    /// The resources its access tokens are for, space-separated; empty: the client.
    pub resources: String,
    /// The browser session it was started from (authorization code flow).
    pub session_id: Option<String>,
}

impl Store {
    /// The family, then its first token if any: one group (one commit on
    /// SQLite). Were the token insert to fail alone, the family would have
    /// no token and so could never be used.
    pub async fn insert_family(&self, f: &Family, first_token_digest: Option<&str>) -> anyhow::Result<()> {
        let now = now();
        // In one transaction, pipelined on PostgreSQL (one round trip).
        let mut queries = vec![self
            .db
            .query(
                "INSERT INTO token_families (id, client_id, user_id, scope, amr, auth_time, created_at, expires_at, resources, session_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&f.id)
            .bind(&f.client_id)
            .bind(&f.user_id)
            .bind(&f.scope)
            .bind(&f.amr)
            .bind(f.auth_time)
            .bind(now)
            .bind(f.expires_at)
            .bind(&f.resources)
            .bind(f.session_id.as_deref())];
        if let Some(digest) = first_token_digest {
            queries.push(
                self.db
                    .query("INSERT INTO refresh_tokens (digest, family_id, created_at) VALUES ($1, $2, $3)")
                    .bind(digest)
                    .bind(&f.id)
                    .bind(now),
            );
        }
        self.db.execute_pipelined(queries).await?;
        Ok(())
    }

    pub async fn insert_refresh_token(&self, digest: &str, family_id: &str) -> anyhow::Result<()> {
        self.db
            .query("INSERT INTO refresh_tokens (digest, family_id, created_at) VALUES ($1, $2, $3)")
            .bind(digest)
            .bind(family_id)
            .bind(now())
            .execute()
            .await?;
        Ok(())
    }

    async fn family_of(&self, digest: &str) -> anyhow::Result<Option<(Family, bool)>> {
        let row = self.db.query(
            "SELECT f.id, f.client_id, f.user_id, f.scope, f.amr, f.auth_time, f.expires_at, f.revoked_at, f.resources, f.session_id, t.used_at
             FROM refresh_tokens t JOIN token_families f ON f.id = t.family_id WHERE t.digest = $1",
        )
        .bind(digest)
        .fetch_optional()
        .await?;
        let Some(r) = row else { return Ok(None) };
        let family = Family {
            id: r.try_get("id")?,
            client_id: r.try_get("client_id")?,
            user_id: r.try_get("user_id")?,
            scope: r.try_get("scope")?,
            resources: r.try_get("resources")?,
            amr: r.try_get("amr")?,
            auth_time: r.try_get("auth_time")?,
            expires_at: r.try_get("expires_at")?,
            revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            session_id: r.try_get("session_id")?,
        };
        Ok(Some((family, r.try_get::<Option<i64>, _>("used_at")?.is_some())))
    }

    /// The token's family and whether the token was already used, without consuming it.
    pub async fn peek_refresh_token(&self, digest: &str) -> anyhow::Result<Option<(Family, bool)>> {
        self.family_of(digest).await
    }

    /// Marks the token used; `false` when another request used it first (one atomic statement).
    pub async fn consume_refresh_token(&self, digest: &str) -> anyhow::Result<bool> {
        let row = self
            .db
            .query("UPDATE refresh_tokens SET used_at = $2 WHERE digest = $1 AND used_at IS NULL RETURNING digest")
            .bind(digest)
            .bind(now())
            .fetch_optional()
            .await?;
        Ok(row.is_some())
    }

    /// Revokes a family: its refresh tokens stop working, and the access tokens
    /// issued from it (they carry its id as `sid`) stop introspecting as active.
    /// Returns until when the family's id stays on the revocation list.
    pub async fn revoke_family(&self, family_id: &str, access_ttl: i64) -> anyhow::Result<i64> {
        let now = now();
        self.db
            .query("UPDATE token_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(family_id)
            .bind(now)
            .execute()
            .await?;
        let until = now + access_ttl + 60;
        self.revoke(family_id, until).await?;
        Ok(until)
    }

    /// The ids of a user's live (unrevoked) token families, at one client or all.
    pub async fn live_families(&self, user_id: &str, client_id: Option<&str>) -> anyhow::Result<Vec<String>> {
        let rows = self
            .db
            .query(
                "SELECT id FROM token_families
             WHERE user_id = $1 AND ($2 = '' OR client_id = $2) AND revoked_at IS NULL AND expires_at > $3",
            )
            .bind(user_id)
            .bind(client_id.unwrap_or(""))
            .bind(now())
            .fetch_all()
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// The live families `which` names.
    pub async fn live_families_in(&self, which: Families<'_>) -> anyhow::Result<Vec<LiveFamily>> {
        let (filter, key, started_by) = match which {
            Families::OfSession(sid) => ("session_id = $1", sid, i64::MAX),
            Families::OfBrowsersOf(user_id, at) => ("user_id = $1 AND session_id IS NOT NULL", user_id, at),
            Families::Of(user_id) => ("user_id = $1", user_id, i64::MAX),
        };
        let rows = self
            .db
            .query(format!(
                "SELECT id, client_id, user_id, session_id FROM token_families
                 WHERE {filter} AND revoked_at IS NULL AND expires_at > $2 AND created_at <= $3"
            ))
            .bind(key)
            .bind(now())
            .bind(started_by)
            .fetch_all()
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LiveFamily {
                    id: r.try_get("id")?,
                    client_id: r.try_get("client_id")?,
                    user_id: r.try_get("user_id")?,
                    session_id: r.try_get("session_id")?,
                })
            })
            .collect()
    }
}

/// A live token family: whose, at which client, from which browser session.
#[derive(Debug, Clone)]
pub struct LiveFamily {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: Option<String>,
}

impl LiveFamily {
    /// The `sid` its ID tokens carry: the browser session's, else the family's own id.
    pub fn sid(&self) -> &str {
        self.session_id.as_deref().unwrap_or(&self.id)
    }
}

/// Which token families `live_families_in` reads.
pub enum Families<'a> {
    /// Started in the browser session with this `sid`.
    OfSession(&'a str),
    /// The user's, started in any browser session by the time given (a
    /// sign-out's: sessions begun after it are not the ones it ended).
    OfBrowsersOf(&'a str, i64),
    /// All the user's.
    Of(&'a str),
}
