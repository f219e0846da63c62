//! Remembered consent: what a user allowed each client.

use super::{now, Store};

pub struct Consent {
    pub client_id: String,
    pub scope: String,
    pub granted_at: i64,
}

impl Store {
    pub async fn consent(&self, user_id: &str, client_id: &str) -> anyhow::Result<Option<String>> {
        let row = self
            .db
            .query("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .fetch_optional()
            .await?;
        row.map(|r| Ok(r.try_get("scope")?)).transpose()
    }

    /// Records consent to `scope` (replacing an earlier, narrower one).
    pub async fn grant_consent(&self, user_id: &str, client_id: &str, scope: &str) -> anyhow::Result<()> {
        self.db
            .query(
                "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at",
            )
            .bind(user_id)
            .bind(client_id)
            .bind(scope)
            .bind(now())
            .execute()
            .await?;
        Ok(())
    }

    pub async fn revoke_consent(&self, user_id: &str, client_id: &str) -> anyhow::Result<bool> {
        let r = self
            .db
            .query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute()
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn consents_of(&self, user_id: &str) -> anyhow::Result<Vec<Consent>> {
        let rows = self
            .db
            .query("SELECT client_id, scope, granted_at FROM consents WHERE user_id = $1 ORDER BY granted_at DESC")
            .bind(user_id)
            .fetch_all()
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Consent {
                    client_id: r.try_get("client_id")?,
                    scope: r.try_get("scope")?,
                    granted_at: r.try_get("granted_at")?,
                })
            })
            .collect()
    }
}
