//! Installation-wide secrets shared by every node (the digest key).

use super::{now, Store};

impl Store {
    /// Returns the named secret, creating it with `fresh` if no node has yet.
    pub async fn server_secret(&self, name: &str, fresh: String) -> anyhow::Result<String> {
        self.db.query(
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .bind(now())
        .execute()
        .await?;
        let row = self
            .db
            .query("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one()
            .await?;
        Ok(row.try_get("value")?)
    }
}
