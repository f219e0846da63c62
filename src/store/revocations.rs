//! Revoked access tokens (by `jti`) and refresh-token families, each kept only
//! until the tokens it covers would have expired anyway.

use super::{now, Store};

impl Store {
    pub async fn revoke(&self, id: &str, expires_at: i64) -> anyhow::Result<()> {
        self.db
            .query("INSERT INTO revocations (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(expires_at)
            .execute()
            .await?;
        Ok(())
    }

    /// Records `id` as revoked until `expires_at`, or later if it already is.
    pub async fn revoke_until(&self, id: &str, expires_at: i64) -> anyhow::Result<()> {
        self.db
            .query(
                "INSERT INTO revocations (id, expires_at) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET expires_at =
               CASE WHEN revocations.expires_at > $2 THEN revocations.expires_at ELSE $2 END",
            )
            .bind(id)
            .bind(expires_at)
            .execute()
            .await?;
        Ok(())
    }

    /// Until when `id` is revoked, if it is.
    pub async fn revoked_until(&self, id: &str) -> anyhow::Result<Option<i64>> {
        let row = self
            .db
            .query("SELECT expires_at FROM revocations WHERE id = $1 AND expires_at >= $2")
            .bind(id)
            .bind(now())
            .fetch_optional()
            .await?;
        Ok(row.map(|r| r.try_get("expires_at")).transpose()?)
    }

    /// True when the token id or the family it belongs to is revoked.
    pub async fn is_revoked(&self, jti: &str, family: Option<&str>) -> anyhow::Result<bool> {
        let found = match family {
            Some(family) => {
                self.db
                    .query("SELECT id FROM revocations WHERE id IN ($1, $2) LIMIT 1")
                    .bind(jti)
                    .bind(family)
                    .fetch_optional()
                    .await?
            }
            None => {
                self.db
                    .query("SELECT id FROM revocations WHERE id = $1")
                    .bind(jti)
                    .fetch_optional()
                    .await?
            }
        };
        Ok(found.is_some())
    }

    /// Every revocation that still matters, as `(id, expires_at)`.
    pub async fn live_revocations(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = self
            .db
            .query("SELECT id, expires_at FROM revocations WHERE expires_at >= $1")
            .bind(now())
            .fetch_all()
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("expires_at")?)))
            .collect()
    }
}
