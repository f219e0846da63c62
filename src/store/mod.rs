//! Every SQL statement lives in this module tree, one file per aggregate. The
//! same portable statements run on SQLite and PostgreSQL through `AnyPool`.
//! Rules that must hold under concurrency are single atomic statements.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub mod audit;
pub mod auth_codes;
pub mod clients;
pub mod consents;
pub mod keys;
pub mod limits;
pub mod otp;
pub mod revocations;
pub mod secrets;
pub mod sessions;
pub mod tokens;
pub mod users;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
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

impl Store {
    /// Connects to `sqlite://…` (created if missing; WAL, foreign keys, busy
    /// timeout) or `postgres://…`.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("sqlite:") {
            let sep = if url.contains('?') { '&' } else { '?' };
            let url = if url.contains("mode=") {
                url.to_string()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            anyhow::bail!("configuration key `database.url`: expected sqlite://… or postgres://…");
        };
        let options = AnyConnectOptions::from_str(&url).context("configuration key `database.url`: invalid URL")?;
        let max = max_connections.unwrap_or(match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 8,
        });
        let mut pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            // No ping before every query: it doubles the round trips (a thread
            // hop on SQLite, a network round trip on PostgreSQL). A broken
            // connection still fails its query and is replaced.
            .test_before_acquire(false);
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 4000; PRAGMA mmap_size = 268435456;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = pool
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to the database ({})", redact_url(&url)))?;
        Ok(Store {
            pool,
            backend,
            client_cache: Default::default(),
        })
    }

    /// Caches client lookups for `ttl` (zero: no cache).
    pub fn with_client_cache(mut self, ttl: Duration) -> Store {
        self.client_cache = std::sync::Arc::new(clients::ClientCache::new(ttl));
        self
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await.context("database migration failed")
    }

    /// Readiness check: the database answers a query.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.pool.execute("SELECT 1").await.context("database did not answer")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
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
