//! The audit trail of security events. Never holds a code, secret or token.

use super::{Arg, DbResult, Store};

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
    /// Writes a batch of events in one statement.
    pub async fn audit_batch(&self, records: &[crate::audit::Record]) -> anyhow::Result<()> {
        Ok(self.insert_audit_events(records).await?)
    }

    pub(crate) async fn insert_audit_events(&self, records: &[crate::audit::Record]) -> DbResult<()> {
        self.write_audit_events(records, false).await
    }

    /// Writes a statement group's events as its last statement: on
    /// PostgreSQL they commit together with the group, or not at all.
    pub(crate) async fn insert_audit_events_last(&self, records: &[crate::audit::Record]) -> DbResult<()> {
        self.write_audit_events(records, true).await
    }

    async fn write_audit_events(&self, records: &[crate::audit::Record], last: bool) -> DbResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut sql =
            String::from("INSERT INTO audit_events (id, at, event, client_id, user_id, ident_key, ip, detail) VALUES ");
        for i in 0..records.len() {
            let n = i * 8;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8
            ));
        }
        // Ids sort in the order events were recorded: the batch's clock, then
        // its position; a random tail keeps two nodes' batches apart.
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tail = crate::crypto::hex(&crate::crypto::random_bytes::<4>());
        let mut q = self.db.query(sql);
        for (i, r) in records.iter().enumerate() {
            q = q
                .bind(format!("{base:024}{i:05}{tail}"))
                .bind(r.at)
                .bind(r.event.clone())
                .bind(r.client_id.clone())
                .bind(r.user_id.clone())
                .bind(r.ident_key.clone())
                .bind(r.ip.clone())
                .bind(r.detail.clone());
        }
        if last {
            q.execute_last().await?;
        } else {
            q.execute().await?;
        }
        crate::audit::written(records);
        Ok(())
    }

    /// Event names, newest first (for tests and the admin trail).
    pub async fn audit_events(&self, limit: i64) -> anyhow::Result<Vec<(String, Option<String>, Option<String>)>> {
        let rows = self
            .db
            .query("SELECT event, client_id, ident_key FROM audit_events ORDER BY at DESC, id DESC LIMIT $1")
            .bind(limit)
            .fetch_all()
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("event")?, r.try_get("client_id")?, r.try_get("ident_key")?)))
            .collect()
    }

    /// The admin trail: events newest first, filtered by any of event, client, user and time.
    pub async fn audit_search(&self, f: &AuditFilter) -> anyhow::Result<Vec<AuditRow>> {
        let mut sql = String::from("SELECT at, event, client_id, user_id, ip, detail FROM audit_events WHERE 1 = 1");
        let mut n = 0;
        let mut next = |col: &str, op: &str| {
            n += 1;
            format!(" AND {col} {op} ${n}")
        };
        let mut binds: Vec<Arg> = vec![];
        if let Some(e) = &f.event {
            sql.push_str(&next("event", "="));
            binds.push(Arg::Text(e.clone()));
        }
        if let Some(c) = &f.client_id {
            sql.push_str(&next("client_id", "="));
            binds.push(Arg::Text(c.clone()));
        }
        if let Some(u) = &f.user_id {
            sql.push_str(&next("user_id", "="));
            binds.push(Arg::Text(u.clone()));
        }
        if let Some(t) = f.since {
            sql.push_str(&next("at", ">="));
            binds.push(Arg::Int(t));
        }
        if let Some(t) = f.until {
            sql.push_str(&next("at", "<"));
            binds.push(Arg::Int(t));
        }
        n += 1;
        sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT ${n}"));
        let mut q = self.db.query(sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.bind(f.limit).fetch_all().await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    at: r.try_get("at")?,
                    event: r.try_get("event")?,
                    client_id: r.try_get("client_id")?,
                    user_id: r.try_get("user_id")?,
                    ip: r.try_get("ip")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}

/// A value for one of `audit_search`'s optional filters.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub event: Option<String>,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: i64,
}

pub struct AuditRow {
    pub at: i64,
    pub event: String,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}
