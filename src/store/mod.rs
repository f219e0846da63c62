//! Every SQL statement lives in this module tree, one file per aggregate. The
//! same portable statements run on SQLite and PostgreSQL (`db.rs` says how).
//! Rules that must hold under concurrency are single atomic statements.

use std::time::Duration;

use anyhow::Context;

pub mod audit;
pub mod auth_codes;
pub mod clients;
pub mod consents;
mod db;
pub mod keys;
pub mod limits;
mod migrate;
pub mod otp;
mod pg;
pub mod retention;
pub mod revocations;
pub mod secrets;
pub mod sessions;
pub mod tokens;
pub mod users;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub use db::DbError;
pub(crate) use db::{Arg, Db, DbResult, Query, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
    pub backend: Backend,
    client_cache: std::sync::Arc<clients::ClientCache>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

pub use pg::{ACQUIRE_TIMEOUT, STATEMENT_TIMEOUT};

/// Whether a failure means the database could not be reached (refused,
/// reset, timed out, closed), not that a statement was wrong: callers
/// answer 503 `temporarily_unavailable` with `Retry-After` for these.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| match cause.downcast_ref::<DbError>() {
        Some(DbError::Unavailable(_)) | Some(DbError::Closed) => true,
        // A conflict, or another process (the CLI) held SQLite's lock past `busy_timeout`.
        Some(e) if e.is_held() => true,
        Some(DbError::Pg(pg)) => pg.is_closed(),
        Some(DbError::Sqlx(s)) => matches!(
            s,
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_)
        ),
        _ => false,
    })
}

impl Store {
    /// Connects to `sqlite://…` (created if missing; WAL, foreign keys, busy
    /// timeout), `sqlite::memory:`, or `postgres://…`.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> anyhow::Result<Store> {
        Store::open(url, max_connections, false).await
    }

    /// As `connect`; `transaction_pooler`: PostgreSQL is behind a
    /// transaction-mode pooler (`database.pooler = "transaction"`).
    pub async fn open(url: &str, max_connections: Option<u32>, transaction_pooler: bool) -> anyhow::Result<Store> {
        let (backend, db) = if let Some(rest) = url.strip_prefix("sqlite:") {
            if max_connections.is_some_and(|n| n != 1) {
                tracing::warn!("`database.max_connections` sizes the PostgreSQL pool only; SQLite uses one connection");
            }
            let (path, flags) = sqlite_target(rest)?;
            let db = Db::open_sqlite(&path, flags)
                .with_context(|| format!("cannot open the SQLite database ({})", redact_url(url)))?;
            (Backend::Sqlite, db)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = pg::PgPool::open(url, max_connections.unwrap_or(8), transaction_pooler)
                .await
                .with_context(|| format!("cannot connect to the database ({})", redact_url(url)))?;
            (Backend::Postgres, Db::Postgres(pool))
        } else {
            anyhow::bail!("configuration key `database.url`: expected sqlite://… or postgres://…");
        };
        Ok(Store {
            db,
            backend,
            client_cache: Default::default(),
        })
    }

    /// Behind a transaction-mode pooler, where `serve` does not migrate
    /// (sqlx's migrator holds a session lock and prepares statements, which
    /// such a pooler does not keep): that this build's migrations have all
    /// been applied, and a warning when the role has no server-side limits.
    pub async fn check_migrated(&self) -> anyhow::Result<()> {
        let applied: Vec<i64> = match self
            .db
            .query("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all()
            .await
        {
            Ok(rows) => rows
                .iter()
                .map(|r| r.try_get::<i64, _>("version"))
                .collect::<Result<_, _>>()?,
            // No migration table: nothing was ever applied.
            Err(e) if e.is_undefined_table() => Vec::new(),
            Err(e) => return Err(anyhow::Error::new(e).context("cannot read the schema's migrations")),
        };
        if let Some(missing) = MIGRATOR.migrations.iter().find(|m| !applied.contains(&m.version)) {
            anyhow::bail!(
                "the database schema is behind this build (migration {} is not applied); \
                 with `database.pooler = \"transaction\"` Sesame does not migrate through the pooler: \
                 run `sesame migrate` with `database.url` pointing at PostgreSQL itself",
                missing.version
            );
        }
        let missing = self.missing_server_limits().await?;
        if !missing.is_empty() {
            tracing::warn!(
                "behind a transaction-mode pooler Sesame cannot set its server-side limits; set them on its role: {}",
                missing.join(" ")
            );
        }
        Ok(())
    }

    /// The server-side limits (`statement_timeout`, …) that Sesame's
    /// sessions run without or with other values than Sesame's, each as the
    /// statement that gives it to its role. Behind a transaction-mode pooler
    /// Sesame cannot set them itself. (A statement timeout longer than
    /// Sesame's own wait would have it drop connections the server still
    /// uses; a shorter one, refuse its slower statements.)
    pub async fn missing_server_limits(&self) -> anyhow::Result<Vec<String>> {
        let mut missing = Vec::new();
        for (name, value) in pg::SERVER_LIMITS {
            let row = self
                .db
                .query("SELECT current_setting($1) AS v")
                .bind(name)
                .fetch_one()
                .await?;
            if row.try_get::<String, _>("v")? != value {
                missing.push(format!("ALTER ROLE … SET {name} = '{value}';"));
            }
        }
        Ok(missing)
    }

    /// Stops a node that stands behind a transaction-mode pooler without
    /// `database.pooler = "transaction"` (`PgPool::shares_sessions`).
    /// Asked once per node, at start-up.
    pub async fn refuse_unannounced_transaction_pooler(&self) -> anyhow::Result<()> {
        if let Db::Postgres(pool) = &self.db {
            if pool.shares_sessions().await? {
                anyhow::bail!(
                    "`database.url` leads to a transaction-mode pooler (a setting made on one connection showed on \
                     another): set `database.pooler = \"transaction\"`"
                );
            }
        }
        Ok(())
    }

    /// Caches client lookups for `ttl` (zero: no cache).
    pub fn with_client_cache(mut self, ttl: Duration) -> Store {
        self.client_cache = std::sync::Arc::new(clients::ClientCache::new(ttl));
        self
    }

    /// Applies the migrations not yet applied. Both backends record them in
    /// sqlx's `_sqlx_migrations` table.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.db {
            Db::Postgres(pool) => migrate_postgres(&pool.url, &MIGRATOR).await,
            Db::Sqlite(conn) => Db::with_sqlite(conn, |c| migrate::sqlite(c, &MIGRATOR))
                .await
                .context("database migration failed"),
        }
    }

    /// Applies the migrations up to `version` only: for testing a later
    /// migration against data written by the schema before it.
    #[doc(hidden)]
    pub async fn migrate_to(&self, version: i64) -> anyhow::Result<()> {
        let partial = sqlx::migrate::Migrator {
            migrations: MIGRATOR
                .migrations
                .iter()
                .filter(|m| m.version <= version)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
            ignore_missing: MIGRATOR.ignore_missing,
            locking: MIGRATOR.locking,
            no_tx: MIGRATOR.no_tx,
            table_name: MIGRATOR.table_name.clone(),
            create_schemas: MIGRATOR.create_schemas.clone(),
        };
        match &self.db {
            Db::Postgres(pool) => migrate_postgres(&pool.url, &partial).await,
            Db::Sqlite(conn) => Db::with_sqlite(conn, |c| migrate::sqlite(c, &partial))
                .await
                .context("database migration failed"),
        }
    }

    /// Runs `work`'s statements as one group: on SQLite one transaction and
    /// one commit (see `db.rs`); `work` must wait on nothing but the store.
    /// The audit events it recorded (in an audit scope) are written with
    /// them, in the same transaction on SQLite.
    pub async fn grouped<T, E: From<DbError>>(
        &self,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let outermost = crate::audit::group_entered();
        // Events recorded before the group belong to work already done: kept
        // aside, so that only the group's own go (and go down) with it.
        let before = if outermost {
            crate::audit::take_pending()
        } else {
            Vec::new()
        };
        let out = self
            .db
            .group(async {
                let out = work.await;
                crate::audit::group_left();
                if !outermost {
                    return out;
                }
                let events = crate::audit::take_pending();
                let Err(e) = self.insert_audit_events_last(&events).await else {
                    return out;
                };
                match self.backend {
                    // The group's other statements stand (committed), so
                    // the work's own result goes back to its caller, which
                    // carries on (a disabled account's tokens are still
                    // ended); the events are left for the request's own
                    // write (a 503 if it fails too; the CLI says so).
                    Backend::Sqlite => {
                        crate::audit::hold_again(events);
                        out
                    }
                    // The group's transaction was rolled back with them:
                    // nothing to record (counters that ran on their own
                    // stand). The work's own error, if it had one, says more.
                    Backend::Postgres => {
                        tracing::warn!(
                            events = events.len(),
                            "a statement group was rolled back with its audit events"
                        );
                        Err(out.err().unwrap_or_else(|| e.into()))
                    }
                }
            })
            .await;
        crate::audit::hold_again(before);
        out
    }

    /// Readiness check: whether the database answers and, on PostgreSQL, takes writes (a
    /// standby, or a primary demoted in a failover, answers but refuses
    /// them): an `UPDATE` that matches no row, which such a server refuses
    /// with SQLSTATE 25006 as it would any write, so the connection that
    /// found it is not used again. (Plain SQL, for the PostgreSQL-compatible
    /// engines too: see the README.)
    pub async fn ping(&self) -> anyhow::Result<()> {
        let sql = match self.backend {
            Backend::Postgres => "UPDATE otp_locks SET locked_until = locked_until WHERE FALSE",
            Backend::Sqlite => "SELECT 1",
        };
        self.db
            .query(sql)
            .execute()
            .await
            .context("database did not answer, or takes no writes")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// Applies `migrator` over a connection of sqlx's own (sqlx records and
/// locks migrations as it always has; the store's statements use `pg.rs`).
async fn migrate_postgres(url: &str, migrator: &sqlx::migrate::Migrator) -> anyhow::Result<()> {
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;
    // Without the `extra_float_digits` startup parameter (the schema has no
    // floats), which PgBouncer refuses unless told to ignore it.
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .with_context(|| format!("configuration key `database.url`: invalid URL ({})", redact_url(url)))?
        .extra_float_digits(None);
    let mut conn = options
        .connect()
        .await
        .with_context(|| format!("cannot connect to the database ({})", redact_url(url)))?;
    // A role given Sesame's limits (as behind a transaction pooler) would
    // stop an index build on a large table after a few seconds, or a second
    // node's migrator waiting for the first's lock: a migration runs and
    // waits as long as it needs. (Its idle limit stays: a migrator that
    // vanishes mid-transaction must not hold its table locks.)
    sqlx::raw_sql("SET statement_timeout = 0; SET lock_timeout = 0")
        .execute(&mut conn)
        .await
        .context("cannot prepare the migration's session")?;
    migrator.run(&mut conn).await.context("database migration failed")?;
    let _ = conn.close().await;
    Ok(())
}

/// The file (or `:memory:`) and open flags a `sqlite:` URL names, as sqlx
/// reads them: `sqlite://path`, `sqlite:path`, `sqlite::memory:`, and
/// `?mode=ro|rw|rwc|memory` (default `rwc`: created if missing).
fn sqlite_target(rest: &str) -> anyhow::Result<(String, rusqlite::OpenFlags)> {
    use rusqlite::OpenFlags;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut mode = "rwc";
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("mode", m)) => mode = m,
            _ => anyhow::bail!("configuration key `database.url`: unknown SQLite option `{pair}` (only `mode`)"),
        }
    }
    let base = OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let flags = match mode {
        "ro" => base | OpenFlags::SQLITE_OPEN_READ_ONLY,
        "rw" => base | OpenFlags::SQLITE_OPEN_READ_WRITE,
        "rwc" | "memory" => base | OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        other => anyhow::bail!("configuration key `database.url`: unknown SQLite mode `{other}`"),
    };
    let path = if mode == "memory" || path.is_empty() {
        ":memory:"
    } else {
        path
    };
    Ok((path.to_string(), flags))
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..s + 3], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_read_as_sqlx_reads_them() {
        let path = |url: &str| sqlite_target(url.strip_prefix("sqlite:").unwrap()).unwrap().0;
        assert_eq!(path("sqlite://sesame.db"), "sesame.db");
        assert_eq!(path("sqlite:///var/lib/sesame/db.sqlite"), "/var/lib/sesame/db.sqlite");
        assert_eq!(path("sqlite:data.db?mode=rwc"), "data.db");
        assert_eq!(path("sqlite::memory:"), ":memory:");
        assert_eq!(path("sqlite://x.db?mode=memory"), ":memory:");
        let ro = sqlite_target("//x.db?mode=ro").unwrap().1;
        assert!(ro.contains(rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY));
        assert!(sqlite_target("//x.db?cache=shared").is_err());
        assert!(sqlite_target("//x.db?mode=wat").is_err());
    }

    #[tokio::test]
    async fn sqlite_migrations_are_recorded_as_sqlx_records_them() {
        let store = Store::connect("sqlite::memory:", None).await.unwrap();
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        let rows = store
            .db
            .query("SELECT version, checksum FROM _sqlx_migrations WHERE success = TRUE ORDER BY version")
            .fetch_all()
            .await
            .unwrap();
        let embedded: Vec<_> = MIGRATOR.iter().collect();
        assert_eq!(rows.len(), embedded.len());
        for (row, m) in rows.iter().zip(embedded) {
            assert_eq!(row.try_get::<i64, _>("version").unwrap(), m.version);
            assert_eq!(row.try_get::<Vec<u8>, _>("checksum").unwrap(), m.checksum.to_vec());
        }
        // A migration edited after it was applied is refused, not re-run.
        store
            .db
            .query("UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = $1")
            .bind(rows[0].try_get::<i64, _>("version").unwrap())
            .execute()
            .await
            .unwrap();
        let err = format!("{:#}", store.migrate().await.unwrap_err());
        assert!(err.contains("changed after it was applied"), "{err}");
    }
}
