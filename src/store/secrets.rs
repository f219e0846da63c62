//! Installation-wide secrets shared by every node (the digest key).

use sqlx::Row;

use super::{now, Store};

impl Store {
    /// Returns the named secret, creating it with `fresh` if no node has yet.
    pub async fn server_secret(&self, name: &str, fresh: String) -> anyhow::Result<String> {
        sqlx::query(
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .bind(now())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }
}
