//! Browser sessions (the server side of actix-session). The cookie carries a
//! random key; only its digest is stored. Ending a session is deleting its
//! row, which every node sees on the next request.

use super::{now, Store};

/// One of a user's sessions, for the account page.
pub struct SessionRow {
    pub key_digest: String,
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    pub async fn session_state(&self, key_digest: &str) -> anyhow::Result<Option<String>> {
        let row = self
            .db
            .query("SELECT state FROM sessions WHERE key_digest = $1 AND expires_at > $2")
            .bind(key_digest)
            .bind(now())
            .fetch_optional()
            .await?;
        row.map(|r| Ok(r.try_get("state")?)).transpose()
    }

    pub async fn insert_session(
        &self,
        key_digest: &str,
        user_id: Option<&str>,
        state: &str,
        ttl: i64,
    ) -> anyhow::Result<()> {
        let now = now();
        self.db
            .query(
                "INSERT INTO sessions (key_digest, user_id, state, created_at, updated_at, expires_at)
             VALUES ($1, $2, $3, $4, $4, $5)",
            )
            .bind(key_digest)
            .bind(user_id)
            .bind(state)
            .bind(now)
            .bind(now + ttl)
            .execute()
            .await?;
        Ok(())
    }

    /// `false` when the session is gone (ended elsewhere): it must not come back.
    pub async fn update_session(
        &self,
        key_digest: &str,
        user_id: Option<&str>,
        state: &str,
        ttl: i64,
    ) -> anyhow::Result<bool> {
        let now = now();
        let r = self
            .db
            .query(
                "UPDATE sessions SET user_id = $2, state = $3, updated_at = $4, expires_at = $5 WHERE key_digest = $1",
            )
            .bind(key_digest)
            .bind(user_id)
            .bind(state)
            .bind(now)
            .bind(now + ttl)
            .execute()
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn touch_session(&self, key_digest: &str, ttl: i64) -> anyhow::Result<()> {
        let now = now();
        self.db
            .query("UPDATE sessions SET updated_at = $2, expires_at = $3 WHERE key_digest = $1")
            .bind(key_digest)
            .bind(now)
            .bind(now + ttl)
            .execute()
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, key_digest: &str) -> anyhow::Result<()> {
        self.db
            .query("DELETE FROM sessions WHERE key_digest = $1")
            .bind(key_digest)
            .execute()
            .await?;
        Ok(())
    }

    /// Ends one of this user's sessions; `false` when it is not theirs or gone.
    pub async fn end_user_session(&self, user_id: &str, key_digest: &str) -> anyhow::Result<bool> {
        let r = self
            .db
            .query("DELETE FROM sessions WHERE key_digest = $1 AND user_id = $2")
            .bind(key_digest)
            .bind(user_id)
            .execute()
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Ends every session of a user (sign out everywhere, disable, delete).
    pub async fn end_sessions_of(&self, user_id: &str) -> anyhow::Result<u64> {
        let r = self
            .db
            .query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute()
            .await?;
        Ok(r.rows_affected())
    }

    pub async fn sessions_of(&self, user_id: &str) -> anyhow::Result<Vec<SessionRow>> {
        let rows = self
            .db
            .query(
                "SELECT key_digest, state, created_at, updated_at FROM sessions
             WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC LIMIT 50",
            )
            .bind(user_id)
            .bind(now())
            .fetch_all()
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SessionRow {
                    key_digest: r.try_get("key_digest")?,
                    state: r.try_get("state")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }
}
