//! PostgreSQL through tokio-postgres, with a pool of our own.
//!
//! - **A connection is driven by the task that uses it.** tokio-postgres
//!   splits a connection into a `Client` and a future that does the I/O;
//!   instead of spawning that future (whose runtime may be another actix
//!   worker's), each statement polls it beside the statement's own future,
//!   so a statement costs no thread hop.
//! - **Prepared once per connection.** Statements are prepared with the
//!   parameter types the store binds (`BIGINT`, `TEXT`), as sqlx did, and
//!   cached on the connection; afterwards a statement is one round trip.
//! - **A statement group is one transaction** (`Db::group`). Its `BEGIN`
//!   goes out with its first statement (pipelined: one round trip), and its
//!   `COMMIT` follows the last, whatever the work returned, so a counted try
//!   stays counted as on SQLite. Statements marked `on_its_own` that come
//!   before the first other one (the send counters) commit one by one.
//! - **Bounded waits.** A connection is waited for at most
//!   `ACQUIRE_TIMEOUT` and a statement's answer at most `STATEMENT_TIMEOUT`;
//!   past either, the database counts as unavailable (503), and a connection
//!   that did not answer is dropped, never reused.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::db::{Arg, DbError, DbResult};

/// How long a request waits for a connection before it is told the
/// database is unavailable (503), instead of hanging through an outage.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a statement (or a pipelined batch) may go unanswered before
/// its connection counts as lost: a database that stopped answering (a
/// blackholed network) gives a 503 within 3 s, not a hang. Above the
/// server's own `statement_timeout` (`SERVER_LIMITS`), so a statement the
/// server still runs is ended by the server, with an answer.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_millis(2500);
/// The limits the server enforces on Sesame's sessions, so that a node
/// that vanishes mid-transaction (a paused VM, a blackholed network) does
/// not hold its row locks until TCP gives up: its transaction ends after
/// 10 s idle; a statement may run 2 s and wait 1 s for a lock. Every
/// statement of Sesame's finds rows by an index and holds its locks for
/// milliseconds; the admin search over a large `users` table is the one
/// that could come near 2 s (and then answers 503).
pub const SERVER_LIMITS: [(&str, &str); 3] = [
    ("idle_in_transaction_session_timeout", "10s"),
    ("statement_timeout", "2s"),
    ("lock_timeout", "1s"),
];
/// Prepared statements kept per connection.
const CACHED_STATEMENTS: usize = 256;

type Driver = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// One connection: its client, the future that does its I/O, and its statements.
pub(crate) struct Conn {
    client: Client,
    driver: Driver,
    statements: HashMap<String, Statement>,
    /// Behind a transaction-mode pooler: no named statements, since the
    /// next transaction may run on another server connection.
    unnamed: bool,
    /// Inside a transaction (a group's, or `execute_atomically`'s).
    in_transaction: bool,
    /// A request was sent and its answer not yet read (the future was
    /// dropped midway): the server's state is unknown, so it is not reused.
    busy: bool,
    /// Failed in a way that leaves it unusable: dropped, not pooled.
    broken: bool,
    /// A statement went unanswered (`STATEMENT_TIMEOUT`): the network or the
    /// server may be gone, and the pool's idle connections with it.
    unanswered: bool,
}

/// Awaits `work` while driving the connection's I/O; a closed connection
/// or a statement past `STATEMENT_TIMEOUT` marks it broken (the latter
/// `unanswered` too).
async fn drive<T>(
    driver: &mut Driver,
    (broken, unanswered): (&mut bool, &mut bool),
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> DbResult<T> {
    let work = tokio::time::timeout(STATEMENT_TIMEOUT, work);
    tokio::pin!(work);
    let answered = tokio::select! {
        biased;
        answered = &mut work => answered,
        ended = driver => {
            *broken = true;
            let why = match ended {
                Ok(()) => "the server closed the connection".to_string(),
                Err(e) => e.to_string(),
            };
            return Err(DbError::Unavailable(why));
        }
    };
    match answered {
        Err(_) => {
            *broken = true;
            *unanswered = true;
            Err(DbError::Unavailable(format!(
                "the database did not answer within {STATEMENT_TIMEOUT:?}"
            )))
        }
        Ok(Err(e)) => {
            if e.is_closed() || e.source().is_some_and(|s| s.is::<std::io::Error>()) {
                *broken = true;
                return Err(DbError::Unavailable(e.to_string()));
            }
            Err(e.into())
        }
        Ok(Ok(v)) => Ok(v),
    }
}

/// SQLSTATEs that mean "try again shortly", not "this request is wrong":
/// the connection or server going away (class 08, 57P01 – 57P03), a
/// deadlock or serialization failure (40P01, 40001), a lock or statement
/// that waited too long (55P03, 57014).
pub fn is_transient(code: &tokio_postgres::error::SqlState) -> bool {
    let code = code.code();
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40P01" | "40001" | "55P03" | "57014"
        )
}

/// A database error's code, message and constraint, never its `DETAIL`
/// (which can quote a row's values) nor the statement's parameters.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.constraint() {
            Some(c) => format!("{} {} (constraint {c})", d.code().code(), d.message()),
            None => format!("{} {}", d.code().code(), d.message()),
        },
        None => e.to_string(),
    }
}

fn param_type(a: &Arg) -> Type {
    match a {
        Arg::Int(_) | Arg::NullInt => Type::INT8,
        Arg::Text(_) | Arg::NullText => Type::TEXT,
    }
}

impl ToSql for Arg {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Arg::Int(v) => v.to_sql(ty, out),
            Arg::Text(v) => v.to_sql(ty, out),
            Arg::NullInt | Arg::NullText => Ok(IsNull::Yes),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <String as ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

/// `ToSql` needs `Debug`: the values (phones, emails, digests) are never shown.
impl std::fmt::Debug for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arg::Int(_) => "Int(…)",
            Arg::Text(_) => "Text(…)",
            Arg::NullInt | Arg::NullText => "Null",
        })
    }
}

/// Runs `sql` as the unnamed statement, parsed, bound and executed in one
/// message (as a transaction-mode pooler needs), the types given.
async fn unnamed(client: &Client, sql: &str, args: &[Arg], want: &Want) -> Result<Answer, tokio_postgres::Error> {
    use futures_util::TryStreamExt;
    let typed = args.iter().map(|a| (a as &(dyn ToSql + Sync), param_type(a)));
    let stream = client.query_typed_raw(sql, typed).await?;
    futures_util::pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await? {
        rows.push(row);
    }
    Ok(match want {
        Want::Count => Answer::Count(stream.rows_affected().unwrap_or(rows.len() as u64)),
        Want::Rows => Answer::Rows(rows),
    })
}

/// What a statement is asked for.
pub(crate) enum Want {
    /// The number of rows it changed.
    Count,
    /// Its rows.
    Rows,
}

pub(crate) enum Answer {
    Count(u64),
    Rows(Vec<tokio_postgres::Row>),
}

impl Conn {
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Whether an idle connection is still open: its I/O future is polled
    /// once, without waiting, so that one the server closed meanwhile (a
    /// restart, `pg_terminate_backend`, a proxy's idle timeout) is noticed
    /// here and replaced, instead of failing the next request.
    fn still_open(&mut self) -> bool {
        if self.client.is_closed() {
            return false;
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        self.driver.as_mut().poll(&mut cx).is_pending()
    }

    /// The statement for `sql` with `args`' types, prepared once.
    async fn statement(&mut self, sql: &str, args: &[Arg]) -> DbResult<Statement> {
        let mut key: String = args
            .iter()
            .map(|a| if param_type(a) == Type::INT8 { 'i' } else { 't' })
            .collect();
        key.push('\n');
        key.push_str(sql);
        if let Some(s) = self.statements.get(&key) {
            return Ok(s.clone());
        }
        let types: Vec<Type> = args.iter().map(param_type).collect();
        self.busy = true;
        let s = drive(
            &mut self.driver,
            (&mut self.broken, &mut self.unanswered),
            self.client.prepare_typed(sql, &types),
        )
        .await;
        self.busy = false;
        let s = s?;
        if self.statements.len() >= CACHED_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(key, s.clone());
        Ok(s)
    }

    /// Runs one statement. With `begin`, a `BEGIN` goes out just before it,
    /// and with `commit` a `COMMIT` just after it, in the same round trip.
    /// (If the statement fails, PostgreSQL answers that `COMMIT` by rolling
    /// the transaction back.)
    pub async fn run(&mut self, sql: &str, args: &[Arg], want: Want, begin: bool, commit: bool) -> DbResult<Answer> {
        let mut answers = self.run_all(&[(sql, args, want)], begin, commit).await?;
        Ok(answers.pop().expect("one answer per statement"))
    }

    /// Runs statements pipelined: all of them are sent before the first
    /// answer is read, so they cost one round trip (with `begin` and
    /// `commit` as for `run`). Their answers, in order; the first error if
    /// one failed (inside a transaction the ones after it then fail too).
    pub async fn run_all(
        &mut self,
        batch: &[(&str, &[Arg], Want)],
        begin: bool,
        commit: bool,
    ) -> DbResult<Vec<Answer>> {
        let mut statements = Vec::with_capacity(batch.len());
        for (sql, args, _) in batch {
            statements.push(match self.unnamed {
                true => None,
                false => Some(self.statement(sql, args).await?),
            });
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = batch
            .iter()
            .map(|(_, args, _)| args.iter().map(|a| a as &(dyn ToSql + Sync)).collect())
            .collect();
        let client = &self.client;
        let each = batch
            .iter()
            .zip(&statements)
            .zip(&params)
            .map(|(((sql, args, want), stmt), params)| async move {
                match (stmt, want) {
                    (Some(stmt), Want::Count) => client.execute(stmt, params).await.map(Answer::Count),
                    (Some(stmt), Want::Rows) => client.query(stmt, params).await.map(Answer::Rows),
                    (None, want) => unnamed(client, sql, args, want).await,
                }
            });
        let skip = || async { Ok::<(), tokio_postgres::Error>(()) };
        let all = async {
            let before = async {
                match begin {
                    true => client.batch_execute("BEGIN").await,
                    false => skip().await,
                }
            };
            let after = async {
                match commit {
                    true => client.batch_execute("COMMIT").await,
                    false => skip().await,
                }
            };
            // Polled in this order, so sent in this order.
            let (begun, answers, committed) = tokio::join!(before, futures_util::future::join_all(each), after);
            begun?;
            let answers = answers.into_iter().collect::<Result<Vec<_>, _>>()?;
            committed?;
            Ok(answers)
        };
        self.busy = true;
        self.in_transaction |= begin;
        let answered = drive(&mut self.driver, (&mut self.broken, &mut self.unanswered), all).await;
        self.busy = false;
        self.in_transaction = self.in_transaction && !commit;
        answered
    }

    /// Runs plain SQL without parameters (`BEGIN`, `COMMIT`, savepoints).
    pub async fn simple(&mut self, sql: &str) -> DbResult<()> {
        self.busy = true;
        if sql == "BEGIN" {
            self.in_transaction = true;
        }
        let answered = drive(
            &mut self.driver,
            (&mut self.broken, &mut self.unanswered),
            self.client.batch_execute(sql),
        )
        .await;
        self.busy = false;
        match sql {
            "BEGIN" => self.in_transaction = answered.is_ok(),
            "COMMIT" | "ROLLBACK" => self.in_transaction = false,
            _ => {}
        }
        answered
    }
}

/// The pool: at most `max` connections, idle ones kept for reuse.
pub(crate) struct PgPool {
    pub url: String,
    config: tokio_postgres::Config,
    tls: postgres_native_tls::MakeTlsConnector,
    idle: StdMutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
    /// Behind a transaction-mode pooler (`database.pooler`).
    transaction_pooler: bool,
}

/// A connection lent by the pool; back to it when dropped, unless broken
/// or left inside a transaction (a cancelled group): those are closed.
pub(crate) struct Lent {
    conn: Option<Conn>,
    pool: Arc<PgPool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Lent {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("lent until dropped")
    }
}

impl std::ops::DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("lent until dropped")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if conn.unanswered {
                // The network or the server may be gone (a blackhole says
                // nothing): the idle connections are likely silent too, and
                // each would cost the next requests a timeout. New ones are
                // opened as needed, within `ACQUIRE_TIMEOUT`.
                if let Ok(mut idle) = self.pool.idle.lock() {
                    if !idle.is_empty() {
                        tracing::warn!(
                            idle = idle.len(),
                            "a database connection went unanswered; the idle ones are closed too"
                        );
                    }
                    idle.clear();
                }
                return;
            }
            let reusable = !conn.broken && !conn.busy && !conn.in_transaction;
            if reusable && !self.pool.closed.load(Ordering::Relaxed) {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(conn);
                }
            }
        }
    }
}

impl PgPool {
    /// A pool for `url`, with one connection opened now (so that a wrong
    /// URL or an unreachable server stops start-up at once).
    ///
    /// Behind a transaction-mode pooler (`transaction_pooler`), statements
    /// are not prepared ahead and the session settings are not set (they
    /// would land on one server connection of many): set them on the role.
    pub async fn open(url: &str, max: u32, transaction_pooler: bool) -> anyhow::Result<Arc<PgPool>> {
        // As libpq: `prefer` (the default) and `require` encrypt without
        // checking the certificate; `verify-ca` checks it against the
        // system's roots, `verify-full` the host name too.
        let verify = ["verify-ca", "verify-full"]
            .into_iter()
            .find(|m| url.contains(&format!("sslmode={m}")));
        let plain = match verify {
            Some(m) => url.replace(&format!("sslmode={m}"), "sslmode=require"),
            None => url.to_string(),
        };
        let mut config = tokio_postgres::Config::from_str(&plain)
            .map_err(|e| anyhow::anyhow!("configuration key `database.url`: invalid URL ({e})"))?;
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        let tls = native_tls::TlsConnector::builder()
            .danger_accept_invalid_certs(verify.is_none())
            .danger_accept_invalid_hostnames(verify != Some("verify-full"))
            .build()?;
        let pool = Arc::new(PgPool {
            url: url.to_string(),
            config,
            tls: postgres_native_tls::MakeTlsConnector::new(tls),
            idle: StdMutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1) as usize)),
            closed: AtomicBool::new(false),
            transaction_pooler,
        });
        let first = pool.acquire().await?;
        drop(first);
        Ok(pool)
    }

    /// Whether the connections share server sessions, as behind a
    /// transaction-mode pooler: a setting made on one connection, once its
    /// statement is done, shows on another (PgBouncer hands the server
    /// connection just released to the next statement). Without
    /// `database.pooler = "transaction"` that would be dangerous: named
    /// statements, prepared on one server connection, could be missing on
    /// the next or, from another node, bear the same name. A heuristic; an
    /// engine that refuses custom settings is not probed.
    pub async fn shares_sessions(&self) -> DbResult<bool> {
        let mut a = self.connect().await?;
        let mut b = self.connect().await?;
        let mark = crate::crypto::random_token::<8>();
        if a.simple(&format!("SET sesame.probe = '{mark}'")).await.is_err() {
            return Ok(false);
        }
        let seen = b
            .run(
                "SELECT current_setting('sesame.probe', true) AS v",
                &[],
                Want::Rows,
                false,
                false,
            )
            .await;
        Ok(match seen {
            Ok(Answer::Rows(rows)) => rows
                .first()
                .and_then(|r| r.try_get::<_, Option<String>>(0).ok().flatten())
                .is_some_and(|v| v == mark),
            _ => false,
        })
    }

    async fn connect(&self) -> DbResult<Conn> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| DbError::Unavailable(format!("cannot connect: {}", describe(&e))))?;
        let mut conn = Conn {
            client,
            driver: Box::pin(connection),
            statements: HashMap::new(),
            unnamed: self.transaction_pooler,
            in_transaction: false,
            busy: false,
            broken: false,
            unanswered: false,
        };
        // Set after connecting, not as the `options` startup parameter,
        // which PgBouncer refuses.
        if !self.transaction_pooler {
            let Conn {
                client,
                driver,
                broken,
                unanswered,
                ..
            } = &mut conn;
            let set: String = SERVER_LIMITS.iter().map(|(k, v)| format!("SET {k} = '{v}';")).collect();
            drive(driver, (broken, unanswered), client.batch_execute(&set)).await?;
        }
        Ok(conn)
    }

    /// A connection, within `ACQUIRE_TIMEOUT`.
    pub async fn acquire(self: &Arc<Self>) -> DbResult<Lent> {
        let get = async {
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| DbError::Closed)?;
            let reused = self.idle.lock().ok().and_then(|mut idle| {
                while let Some(mut c) = idle.pop() {
                    if c.still_open() {
                        return Some(c);
                    }
                }
                None
            });
            let conn = match reused {
                Some(c) => c,
                None => self.connect().await?,
            };
            Ok(Lent {
                conn: Some(conn),
                pool: self.clone(),
                _permit: permit,
            })
        };
        tokio::time::timeout(ACQUIRE_TIMEOUT, get).await.unwrap_or_else(|_| {
            Err(DbError::Unavailable(format!(
                "no database connection within {ACQUIRE_TIMEOUT:?}"
            )))
        })
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
