//! Signing keys, shared by every node. One key per algorithm is current;
//! retired keys stay published until every token they signed has expired.

use super::Row;

use super::{now, Store};

#[derive(Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub private_jwk: String,
    pub is_current: bool,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn from_row(row: &Row) -> anyhow::Result<StoredKey> {
    Ok(StoredKey {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        private_jwk: row.try_get("private_jwk")?,
        is_current: row.try_get::<i64, _>("is_current")? == 1,
        created_at: row.try_get("created_at")?,
        retired_at: row.try_get("retired_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// The current key and every retired key that still verifies live tokens.
    pub async fn published_keys(&self) -> anyhow::Result<Vec<StoredKey>> {
        let rows = self
            .db
            .query(
                "SELECT kid, alg, private_jwk, is_current, created_at, retired_at, expires_at FROM signing_keys
             WHERE is_current = 1 OR expires_at > $1 ORDER BY created_at DESC, kid",
            )
            .bind(now())
            .fetch_all()
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn all_keys(&self) -> anyhow::Result<Vec<StoredKey>> {
        let rows = self.db.query(
            "SELECT kid, alg, private_jwk, is_current, created_at, retired_at, expires_at FROM signing_keys ORDER BY created_at DESC, kid",
        )
        .fetch_all()
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Adds `key` as the current key of `alg` if there is none (the unique
    /// index makes this safe when several nodes start together). `Ok(false)`: one existed.
    pub async fn insert_first_key(&self, kid: &str, alg: &str, private_jwk: &str) -> anyhow::Result<bool> {
        let r = self.db.query(
            "INSERT INTO signing_keys (kid, alg, private_jwk, is_current, created_at) VALUES ($1, $2, $3, 1, $4) ON CONFLICT DO NOTHING",
        )
        .bind(kid)
        .bind(alg)
        .bind(private_jwk)
        .bind(now())
        .execute()
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Retires every current key (kept published for `keep_secs`) and makes
    /// `keys` (kid, alg, private JWK) current, atomically.
    pub async fn rotate_keys(&self, keys: &[(&str, &str, &str)], keep_secs: i64) -> anyhow::Result<()> {
        let now = now();
        let mut group = vec![self
            .db
            .query("UPDATE signing_keys SET is_current = 0, retired_at = $1, expires_at = $2 WHERE is_current = 1")
            .bind(now)
            .bind(now + keep_secs)];
        for (kid, alg, jwk) in keys {
            group.push(
                self.db
                    .query(
                        "INSERT INTO signing_keys (kid, alg, private_jwk, is_current, created_at) VALUES ($1, $2, $3, 1, $4)",
                    )
                    .bind(*kid)
                    .bind(*alg)
                    .bind(*jwk)
                    .bind(now),
            );
        }
        self.db.execute_atomically(group).await?;
        Ok(())
    }
}
