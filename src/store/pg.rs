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
//!   stays counted as on SQLite. Statements marked `on_its_own` (or
//!   `counter`) that come before the first other one (the counters) commit
//!   one by one; a send's counters without waiting for the disk.
//! - **Bounded waits.** A connection is waited for at most
//!   `ACQUIRE_TIMEOUT` and a statement's answer at most `STATEMENT_TIMEOUT`;
//!   past either, the database counts as unavailable (503), and a connection
//!   that did not answer is dropped, never reused, with every connection
//!   opened before it (`PgPool::generation`).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::db::{Arg, DbError, DbResult};

/// How long a request waits for a connection before it is told the
/// database is unavailable (503), instead of hanging through an outage.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a statement may go unanswered before its connection counts as
/// lost: a database that stopped answering (a blackholed network) gives a
/// 503, not a hang. Longer than the server's own limit on a statement
/// (`SERVER_STATEMENT_LIMIT`), by a margin for the round trip, so that a
/// statement the server still runs is ended by the server, with an answer,
/// and a slow statement is never taken for a lost network. A pipelined
/// batch gets the server's limit once more for each further statement.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_millis(6500);
/// `statement_timeout` in `SERVER_LIMITS`.
const SERVER_STATEMENT_LIMIT: Duration = Duration::from_secs(5);
/// The limits the server enforces on Sesame's sessions, so that a node
/// that vanishes mid-transaction (a paused VM, a blackholed network) does
/// not hold its row locks until TCP gives up: its transaction ends after
/// 10 s idle; a statement may run 5 s and wait 3 s for a lock.
pub const SERVER_LIMITS: [(&str, &str); 3] = [
    ("idle_in_transaction_session_timeout", "10s"),
    ("statement_timeout", "5s"),
    ("lock_timeout", "3s"),
];
/// Prepared statements kept per connection.
const CACHED_STATEMENTS: usize = 256;

type Driver = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// Begins a transaction.
pub const BEGIN: &str = "BEGIN";
/// Begins a transaction whose commit does not wait for the WAL to reach the
/// disk: for what only gates (a counter, `Conn::run_counter`) or what a
/// commit that does wait always follows before the request is answered
/// (`Db::execute_pipelined_unflushed`).
pub const BEGIN_UNFLUSHED: &str = "BEGIN; SET LOCAL synchronous_commit = off";

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
    /// The pool's generation when this connection was opened
    /// (`PgPool::generation`).
    generation: u64,
}

/// Awaits `work` while driving the connection's I/O; a closed connection
/// or a statement past `STATEMENT_TIMEOUT` marks it broken (the latter
/// `unanswered` too). A broken connection sends nothing more: not the
/// `COMMIT` or `ROLLBACK` of its group, whose transaction the server ends
/// when the connection is dropped.
async fn drive<T>(
    driver: &mut Driver,
    (broken, unanswered): (&mut bool, &mut bool),
    statements: u32,
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> DbResult<T> {
    if *broken {
        return Err(DbError::Unavailable("the connection was lost".into()));
    }
    let wait = STATEMENT_TIMEOUT + SERVER_STATEMENT_LIMIT * statements.saturating_sub(1);
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(work, deadline);
    enum Turn<A> {
        Answered(A),
        Ended(Result<(), tokio_postgres::Error>),
        Late,
    }
    let mut turn = tokio::select! {
        biased;
        answered = &mut work => Turn::Answered(answered),
        ended = &mut *driver => Turn::Ended(ended),
        () = &mut deadline => Turn::Late,
    };
    if let Turn::Late = turn {
        // A last look: an answer already in the socket still counts (the
        // timer may have had its turn before the driver read it).
        turn = std::future::poll_fn(|cx| {
            if let Poll::Ready(ended) = driver.as_mut().poll(cx) {
                return Poll::Ready(Turn::Ended(ended));
            }
            Poll::Ready(match work.as_mut().poll(cx) {
                Poll::Ready(answered) => Turn::Answered(answered),
                Poll::Pending => Turn::Late,
            })
        })
        .await;
    }
    let answered = match turn {
        Turn::Answered(answered) => answered,
        Turn::Ended(ended) => {
            *broken = true;
            let why = match ended {
                Ok(()) => "the server closed the connection".to_string(),
                Err(e) => e.to_string(),
            };
            return Err(DbError::Unavailable(why));
        }
        Turn::Late => {
            *broken = true;
            *unanswered = true;
            return Err(DbError::Unavailable(format!(
                "the database did not answer within {wait:?}"
            )));
        }
    };
    match answered {
        Err(e) => {
            if e.is_closed() || e.source().is_some_and(|s| s.is::<std::io::Error>()) {
                *broken = true;
                return Err(DbError::Unavailable(e.to_string()));
            }
            if e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION) {
                // A server that takes no writes (a standby, a demoted
                // primary): this connection is not used again, so the next
                // one is made afresh and reaches the writable server once
                // there is one.
                *broken = true;
            }
            Err(e.into())
        }
        Ok(v) => Ok(v),
    }
}

/// SQLSTATEs that mean "try again shortly", not "this request is wrong",
/// besides the conflicts (`is_conflict`): the connection or server going
/// away (class 08, 57P01 – 57P03), a statement that ran too long (57014),
/// a server that takes no writes (25006: a standby, or a primary demoted
/// in a failover, until the connections reach the new one), and a server
/// out of resources (class 53: disk full, out of memory, too many
/// connections).
pub fn is_transient(code: &tokio_postgres::error::SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "25006")
}

/// SQLSTATEs of a transaction ended over a conflict with another, all of
/// it rolled back: a lock waited for too long (55P03), a deadlock (40P01),
/// a serialization failure (40001).
pub fn is_conflict(code: &tokio_postgres::error::SqlState) -> bool {
    matches!(code.code(), "55P03" | "40P01" | "40001")
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
#[derive(Clone, Copy)]
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
            1,
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
        let begin = begin.then_some(BEGIN);
        let mut answers = self.run_all(&[(sql, args, want)], begin, commit).await?;
        Ok(answers.pop().expect("one answer per statement"))
    }

    /// Runs a counter's statement in a transaction of its own whose commit
    /// does not wait for the WAL to reach the disk (`synchronous_commit =
    /// off`), in one round trip. The count is seen by every other
    /// transaction at once, as any commit; only a database crash within a
    /// fraction of a second could lose it (a few more tries let through),
    /// and the next commit that waits on this server (a send's
    /// `code_sent` event, before the send is answered) flushes it with its own. Writing the WAL to
    /// disk for each of a send's counters cost PostgreSQL about a fifth of
    /// its CPU per flow (`bench/RESULTS.md`). CockroachDB accepts the setting
    /// and ignores it.
    pub async fn run_counter(&mut self, sql: &str, args: &[Arg], want: Want) -> DbResult<Answer> {
        let mut answers = self.run_all(&[(sql, args, want)], Some(BEGIN_UNFLUSHED), true).await?;
        Ok(answers.pop().expect("one answer per statement"))
    }

    /// Runs statements pipelined: all of them are sent before the first
    /// answer is read, so they cost one round trip, with the transaction
    /// begun first by the SQL `begin` (`BEGIN` or `BEGIN_UNFLUSHED`) if
    /// given, and its `COMMIT` last if `commit`. Their answers, in order;
    /// the first error if one failed (inside a transaction the ones after
    /// it then fail too).
    pub async fn run_all(
        &mut self,
        batch: &[(&str, &[Arg], Want)],
        begin: Option<&str>,
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
                    Some(sql) => client.batch_execute(sql).await,
                    None => skip().await,
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
        self.in_transaction |= begin.is_some();
        let answered = drive(
            &mut self.driver,
            (&mut self.broken, &mut self.unanswered),
            // The `COMMIT`, when it goes too, is a statement of its own.
            batch.len() as u32 + commit as u32,
            all,
        )
        .await;
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
            1,
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
    /// Moves on when a connection of the current generation goes
    /// unanswered: the connections opened before are no longer trusted
    /// (returned to the pool or found idle, they are closed), and a late
    /// timeout on one of them does not close the newer ones.
    generation: AtomicU64,
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
        let Some(conn) = self.conn.take() else { return };
        let pool = &self.pool;
        if conn.unanswered {
            // The network or the server may be gone (a blackhole says
            // nothing): the idle connections are likely silent too, and each
            // would cost a later request a timeout. New ones are opened as
            // needed, within `ACQUIRE_TIMEOUT`.
            let current = pool.generation.load(Ordering::Relaxed);
            if conn.generation == current
                && pool
                    .generation
                    .compare_exchange(current, current + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                if let Ok(mut idle) = pool.idle.lock() {
                    tracing::warn!(
                        idle = idle.len(),
                        "a database connection went unanswered; the ones opened before it are closed too"
                    );
                    idle.clear();
                }
            }
            return;
        }
        let reusable = !conn.broken && !conn.busy && !conn.in_transaction && pool.trusts(&conn);
        if reusable && !pool.closed.load(Ordering::Relaxed) {
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
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
            generation: AtomicU64::new(0),
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
            generation: self.generation.load(Ordering::Relaxed),
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
            drive(driver, (broken, unanswered), 1, client.batch_execute(&set)).await?;
        }
        Ok(conn)
    }

    /// Whether `conn` was opened since the last connection went unanswered.
    fn trusts(&self, conn: &Conn) -> bool {
        conn.generation == self.generation.load(Ordering::Relaxed)
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
                    if self.trusts(&c) && c.still_open() {
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

#[cfg(test)]
mod limits {
    use super::*;

    #[test]
    fn the_servers_statement_limit_is_the_one_set() {
        let set = SERVER_LIMITS.iter().find(|(k, _)| *k == "statement_timeout").unwrap().1;
        assert_eq!(set, format!("{}s", SERVER_STATEMENT_LIMIT.as_secs()));
        assert!(STATEMENT_TIMEOUT > SERVER_STATEMENT_LIMIT);
    }
}

#[cfg(all(test, sesame_test_postgres))]
mod tests {
    use super::*;

    /// A statement that runs to the server's limit is ended by the server,
    /// with an answer (57014), before Sesame's own wait is over: a slow
    /// database is not taken for a lost network, and the pool keeps its
    /// connections.
    #[tokio::test]
    async fn a_statement_past_the_servers_limit_is_ended_by_the_server_and_the_pool_keeps_its_connections() {
        let url = std::env::var("SESAME_TEST_POSTGRES_URL").unwrap();
        let pool = PgPool::open(&url, 2, false).await.unwrap();
        let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
        drop((a, b));
        let mut conn = pool.acquire().await.unwrap();
        let started = std::time::Instant::now();
        let slept = conn.run("SELECT pg_sleep(6)", &[], Want::Rows, false, false).await;
        // A 503 all the same, with the server's reason.
        let Err(DbError::Unavailable(why)) = slept else {
            panic!("unavailable: {:?}", slept.err())
        };
        assert!(
            why.starts_with("57014"),
            "the server's answer, not a lost connection: {why}"
        );
        assert!(started.elapsed() < STATEMENT_TIMEOUT, "{:?}", started.elapsed());
        drop(conn);
        assert_eq!(pool.generation.load(Ordering::Relaxed), 0);
        assert_eq!(pool.idle.lock().unwrap().len(), 2, "both connections are kept");
    }
}
