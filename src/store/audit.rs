//! The audit trail of security events. Never holds a code, secret or token.

use super::{now, Store};

#[derive(Debug, Default)]
pub struct Event<'a> {
    pub event: &'a str,
    pub client_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub ident_key: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl Store {
    pub async fn audit(&self, e: &Event<'_>) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (id, at, event, client_id, user_id, ident_key, ip, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(crate::crypto::random_token::<12>())
        .bind(now())
        .bind(e.event)
        .bind(e.client_id)
        .bind(e.user_id)
        .bind(e.ident_key)
        .bind(e.ip)
        .bind(e.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Event names, newest first (for tests and the admin trail).
    pub async fn audit_events(&self, limit: i64) -> anyhow::Result<Vec<(String, Option<String>, Option<String>)>> {
        use sqlx::Row;
        let rows = sqlx::query("SELECT event, client_id, ident_key FROM audit_events ORDER BY at DESC, id LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("event")?, r.try_get("client_id")?, r.try_get("ident_key")?)))
            .collect()
    }
}
