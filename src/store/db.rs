//! How the store runs a statement. The SQL is the same on both backends
//! (`$1` placeholders, `RETURNING`, `ON CONFLICT`); only the executor differs:
//!
//! - **PostgreSQL** goes through tokio-postgres and a pool of our own
//!   (`pg.rs`): a statement is one round trip, and a group is one
//!   transaction whose `BEGIN` travels with its first statement (but for
//!   counters before it, which commit on their own: `Query::on_its_own`,
//!   `Query::counter`).
//! - **SQLite** runs the statement right here, on the calling thread, on one
//!   connection behind a mutex. A statement on a local file in WAL mode takes
//!   microseconds; sqlx's SQLite driver ran each on a worker thread per
//!   connection, and those two thread hops a statement cost about 110 µs
//!   under load, which capped the OTP flow near 400 flows/s (`bench/RESULTS.md`).
//!   One connection also means writers never wait in SQLite's busy handler,
//!   which sleeps whole milliseconds; another process (the CLI) still can
//!   hold the lock, and then `busy_timeout` waits for it. The mutex is
//!   tokio's: a request waiting for the connection lets its worker serve
//!   other requests meanwhile.
//!
//! Every commit costs (file locks and whole WAL pages on SQLite, a WAL
//! flush on PostgreSQL), so a request on the hot path runs its statements as
//! one group (`Db::group`): one transaction, one commit. The rules never
//! depend on that grouping; each is a single atomic statement that holds
//! across nodes.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rusqlite::types::{Value, ValueRef};
use tokio::sync::Mutex;

use super::pg::{Answer, Lent, PgPool, Want, BEGIN, BEGIN_UNFLUSHED};

/// A statement failed. Unique violations are told apart, so that the store
/// can answer "taken" instead of failing.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unique constraint failed: {0}")]
    Unique(String),
    #[error(transparent)]
    Sqlite(rusqlite::Error),
    #[error(transparent)]
    Sqlx(sqlx::Error),
    #[error("{}", super::pg::describe(.0))]
    Pg(tokio_postgres::Error),
    /// The database could not be reached or did not answer in time.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL ended a transaction over a conflict with another one
    /// (`lock_timeout` ran out, `55P03`; a deadlock, `40P01`; a
    /// serialization failure, `40001`): all of it was rolled back, and
    /// trying again may succeed. A 503 like `Unavailable`.
    #[error("the database is busy: {0}")]
    Conflict(String),
    #[error("column `{column}`: {problem}")]
    Column { column: String, problem: String },
    #[error("the database is closed")]
    Closed,
}

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Unique(_))
    }

    /// The transaction was rolled back over a conflict (`Conflict`).
    pub fn is_conflict(&self) -> bool {
        matches!(self, DbError::Conflict(_))
    }

    /// Another transaction held what this one needed for too long: a
    /// `Conflict` on PostgreSQL; on SQLite, another process held the
    /// database's write lock past `busy_timeout`.
    pub fn is_held(&self) -> bool {
        match self {
            DbError::Conflict(_) => true,
            DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }

    /// The table is not there (PostgreSQL's `42P01`).
    pub fn is_undefined_table(&self) -> bool {
        matches!(self, DbError::Pg(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE))
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, msg)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                DbError::Unique(msg.clone().unwrap_or_default())
            }
            _ => DbError::Sqlite(e),
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                DbError::Unique(format!("{} ({})", d.message(), d.constraint().unwrap_or("")))
            }
            _ => DbError::Sqlx(e),
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(d) if *d.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                DbError::Unique(format!("{} ({})", d.message(), d.constraint().unwrap_or("")))
            }
            Some(d) if super::pg::is_conflict(d.code()) => DbError::Conflict(super::pg::describe(&e)),
            Some(d) if super::pg::is_transient(d.code()) => DbError::Unavailable(super::pg::describe(&e)),
            _ => DbError::Pg(e),
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// The database a `Store` talks to.
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(Arc<Mutex<Option<rusqlite::Connection>>>),
    Postgres(Arc<PgPool>),
}

/// The connection of a PostgreSQL group: taken at its first statement.
type PgGroup = Arc<Mutex<Option<Lent>>>;

tokio::task_local! {
    /// The PostgreSQL group this task is running, with its pool's id.
    static PG_GROUP: (usize, PgGroup);
}

fn pool_id(pool: &Arc<PgPool>) -> usize {
    Arc::as_ptr(pool) as usize
}

/// The group of this task on `pool`, if it runs one.
fn pg_group(pool: &Arc<PgPool>) -> Option<PgGroup> {
    let id = pool_id(pool);
    PG_GROUP
        .try_with(|(owner, group)| (*owner == id).then(|| group.clone()))
        .ok()
        .flatten()
}

/// Where a statement stands in its group (on PostgreSQL; SQLite runs a
/// group as one transaction whatever its statements say).
#[derive(Clone, Copy, PartialEq)]
enum Place {
    /// Begins the group's transaction if it is the first.
    InGroup,
    /// The group's transaction commits with it.
    Last,
    /// Runs on its own (autocommit) while the group has not begun its
    /// transaction, so the row locks it takes end with it.
    Alone,
    /// As `Alone`, in a transaction of its own that commits without
    /// waiting for the disk (`Conn::run_counter`).
    Counter,
}

/// Runs one statement on PostgreSQL: on the group's connection (its first
/// statement begins the transaction), or on one from the pool. (Callers box
/// this future: it is large, and requests nest many statements.)
async fn pg_run(pool: &Arc<PgPool>, sql: &str, args: &[Arg], want: Want, place: Place) -> DbResult<Answer> {
    if let Some(group) = pg_group(pool) {
        let mut slot = group.lock().await;
        if slot.is_none() {
            *slot = Some(pool.acquire().await?);
        }
        let conn = slot.as_mut().expect("just set");
        if place == Place::Counter && !conn.in_transaction() {
            return conn.run_counter(sql, args, want).await;
        }
        let begin = !conn.in_transaction() && !matches!(place, Place::Alone | Place::Counter);
        let commit = place == Place::Last && (begin || conn.in_transaction());
        return conn.run(sql, args, want, begin, commit).await;
    }
    let mut conn = pool.acquire().await?;
    match place {
        Place::Counter => conn.run_counter(sql, args, want).await,
        _ => conn.run(sql, args, want, false, false).await,
    }
}

thread_local! {
    /// The SQLite connection lent to the group this thread is polling, with
    /// the id of the `Db` it belongs to.
    static LENT: RefCell<Option<(usize, rusqlite::Connection)>> = const { RefCell::new(None) };
}

/// Lends a connection to this thread for one poll of a group, and puts it
/// back where it came from even if the poll panics (rolling back then).
struct Lend<'g> {
    slot: &'g mut Option<rusqlite::Connection>,
    id: usize,
}

impl Lend<'_> {
    fn begin(&mut self, c: rusqlite::Connection) -> DbResult<()> {
        let begun = c.execute_batch("BEGIN IMMEDIATE");
        match begun {
            Ok(()) => LENT.with(|lent| *lent.borrow_mut() = Some((self.id, c))),
            Err(_) => *self.slot = Some(c),
        }
        Ok(begun?)
    }

    fn commit(self) -> DbResult<()> {
        let c = LENT.with(|lent| lent.borrow_mut().take());
        let Some((_, c)) = c else { return Err(DbError::Closed) };
        let committed = c.execute_batch("COMMIT");
        if committed.is_err() {
            let _ = c.execute_batch("ROLLBACK");
        }
        *self.slot = Some(c);
        Ok(committed?)
    }
}

impl Drop for Lend<'_> {
    fn drop(&mut self) {
        if let Some((_, c)) = LENT.with(|lent| lent.borrow_mut().take()) {
            if !c.is_autocommit() {
                let _ = c.execute_batch("ROLLBACK");
            }
            *self.slot = Some(c);
        }
    }
}

/// A value bound to a `$N` placeholder. Nulls carry their type, which
/// PostgreSQL needs. (No `Debug`: the values are phones, emails and digests.)
pub enum Arg {
    Int(i64),
    Text(String),
    NullInt,
    NullText,
}

pub trait IntoArg {
    fn into_arg(self) -> Arg;
}

impl IntoArg for i64 {
    fn into_arg(self) -> Arg {
        Arg::Int(self)
    }
}
impl IntoArg for String {
    fn into_arg(self) -> Arg {
        Arg::Text(self)
    }
}
impl IntoArg for &str {
    fn into_arg(self) -> Arg {
        Arg::Text(self.to_string())
    }
}
impl IntoArg for &String {
    fn into_arg(self) -> Arg {
        Arg::Text(self.clone())
    }
}
impl IntoArg for Option<i64> {
    fn into_arg(self) -> Arg {
        self.map_or(Arg::NullInt, Arg::Int)
    }
}
impl IntoArg for Option<String> {
    fn into_arg(self) -> Arg {
        self.map_or(Arg::NullText, Arg::Text)
    }
}
impl IntoArg for Option<&str> {
    fn into_arg(self) -> Arg {
        self.map_or(Arg::NullText, |s| Arg::Text(s.to_string()))
    }
}
impl IntoArg for Option<&String> {
    fn into_arg(self) -> Arg {
        self.map_or(Arg::NullText, |s| Arg::Text(s.clone()))
    }
}
impl IntoArg for Arg {
    fn into_arg(self) -> Arg {
        self
    }
}

/// One statement and its arguments; run it with `execute` or a `fetch_*`.
#[must_use = "a query does nothing until it is executed or fetched"]
pub(crate) struct Query<'a> {
    db: &'a Db,
    sql: Cow<'static, str>,
    args: Vec<Arg>,
    place: Place,
}

/// What `execute` did.
#[derive(Debug)]
pub(crate) struct Done(u64);

impl Done {
    pub fn rows_affected(&self) -> u64 {
        self.0
    }
}

impl Db {
    pub fn query(&self, sql: impl Into<Cow<'static, str>>) -> Query<'_> {
        Query {
            db: self,
            sql: sql.into(),
            args: Vec::new(),
            place: Place::InGroup,
        }
    }

    /// Opens the one SQLite connection: WAL, foreign keys, `busy_timeout`
    /// for other processes, and a statement cache.
    pub fn open_sqlite(path: &str, flags: rusqlite::OpenFlags) -> anyhow::Result<Db> {
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(256);
        // A checkpoint runs inside the commit that crosses the threshold,
        // holding the connection while it copies pages and fsyncs. 16,000
        // pages (64 MB of WAL) makes that rarer, and copies a page rewritten
        // many times once: ~1,120 → ~1,240 flows/s (bench/RESULTS.md).
        // No `mmap_size`: mapped pages of a growing file count as the
        // process's memory (116 MB after a 30 s flow bench). A page cache of
        // 8 MB instead of SQLite's 2 MB keeps the hot index pages of large
        // tables (a million accounts) in memory, and the RSS near 30 MB.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 16000; PRAGMA cache_size = -8000;",
        )?;
        Ok(Db::Sqlite(Arc::new(Mutex::new(Some(conn)))))
    }

    /// Runs the statements in one transaction: all of them take effect, or none.
    pub async fn execute_atomically(&self, queries: Vec<Query<'_>>) -> DbResult<()> {
        match self {
            Db::Sqlite(conn) => {
                Db::with_sqlite(conn, |c| {
                    // A savepoint nests inside a group's transaction, too.
                    let sp = c.savepoint()?;
                    for q in &queries {
                        q.execute_on(&sp)?;
                    }
                    Ok(sp.commit()?)
                })
                .await
            }
            Db::Postgres(pool) => {
                let group = pg_group(pool);
                let mut guard = match &group {
                    Some(g) => Some(g.lock().await),
                    None => None,
                };
                let mut own = None;
                let conn: &mut Lent = match guard.as_deref_mut() {
                    Some(slot) => {
                        if slot.is_none() {
                            *slot = Some(pool.acquire().await?);
                        }
                        slot.as_mut().expect("just set")
                    }
                    None => own.insert(pool.acquire().await?),
                };
                // Inside a group's transaction a savepoint; else a transaction of its own.
                let nested = group.is_some();
                if !conn.in_transaction() {
                    conn.simple("BEGIN").await?;
                }
                if nested {
                    conn.simple("SAVEPOINT atomically").await?;
                }
                for q in &queries {
                    if let Err(e) = conn.run(&q.sql, &q.args, Want::Count, false, false).await {
                        let undo = if nested {
                            "ROLLBACK TO SAVEPOINT atomically"
                        } else {
                            "ROLLBACK"
                        };
                        let _ = conn.simple(undo).await;
                        return Err(e);
                    }
                }
                conn.simple(if nested {
                    "RELEASE SAVEPOINT atomically"
                } else {
                    "COMMIT"
                })
                .await
            }
        }
    }

    /// Runs the statements in one transaction (the group's, if one runs),
    /// and on PostgreSQL pipelined: all sent before the first answer is
    /// read, one round trip. For statements that do not depend on each
    /// other's answers. Returns the rows each changed.
    pub async fn execute_pipelined(&self, queries: Vec<Query<'_>>) -> DbResult<Vec<u64>> {
        self.pipelined(queries, false).await
    }

    /// As `execute_pipelined`, but on PostgreSQL, unless the group has
    /// already begun its transaction (then they are part of it), the
    /// statements are a transaction of their own, committed in the same
    /// round trip without waiting for the WAL to reach the disk (as a
    /// counter's, `Conn::run_counter`). Only for writes that a commit that
    /// does wait always follows before the request is answered (a new
    /// code, then its `code_sent` or `delivery_failed` event): PostgreSQL
    /// flushes its WAL in order, so that commit's flush carries this one,
    /// and the answer still comes after both are on disk. The group's own
    /// `COMMIT` round trip and one WAL flush are saved.
    pub async fn execute_pipelined_unflushed(&self, queries: Vec<Query<'_>>) -> DbResult<Vec<u64>> {
        self.pipelined(queries, true).await
    }

    /// As `execute_pipelined`, for statements whose rows are wanted (each
    /// `RETURNING` or a `SELECT`): the rows of each, in order.
    pub async fn fetch_pipelined(&self, queries: Vec<Query<'_>>) -> DbResult<Vec<Vec<Row>>> {
        self.fetch_pipelined_as(queries, false).await
    }

    /// As `fetch_pipelined`, committed as `execute_pipelined_unflushed` is.
    pub async fn fetch_pipelined_unflushed(&self, queries: Vec<Query<'_>>) -> DbResult<Vec<Vec<Row>>> {
        self.fetch_pipelined_as(queries, true).await
    }

    async fn fetch_pipelined_as(&self, queries: Vec<Query<'_>>, unflushed: bool) -> DbResult<Vec<Vec<Row>>> {
        if let Db::Sqlite(conn) = self {
            return Db::in_one_savepoint(conn, &queries, Query::fetch_on).await;
        }
        let answers = self.pipelined_on_postgres(&queries, Want::Rows, unflushed).await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                Answer::Rows(rows) => rows.into_iter().map(Row::Pg).collect(),
                Answer::Count(_) => Vec::new(),
            })
            .collect())
    }

    async fn pipelined(&self, queries: Vec<Query<'_>>, unflushed: bool) -> DbResult<Vec<u64>> {
        if let Db::Sqlite(conn) = self {
            let changed = |q: &Query<'_>, c: &rusqlite::Connection| Ok(q.execute_on(c)?.rows_affected());
            return Db::in_one_savepoint(conn, &queries, changed).await;
        }
        let answers = self.pipelined_on_postgres(&queries, Want::Count, unflushed).await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                Answer::Count(n) => n,
                Answer::Rows(rows) => rows.len() as u64,
            })
            .collect())
    }

    /// The SQLite half of the pipelined runs: each statement in turn, in
    /// one savepoint (all or nothing, inside the group's transaction if
    /// one runs), with what `each` makes of it.
    async fn in_one_savepoint<'q, T>(
        conn: &Mutex<Option<rusqlite::Connection>>,
        queries: &[Query<'q>],
        each: impl Fn(&Query<'q>, &rusqlite::Connection) -> DbResult<T>,
    ) -> DbResult<Vec<T>> {
        Db::with_sqlite(conn, |c| {
            let sp = c.savepoint()?;
            let out = queries.iter().map(|q| each(q, &sp)).collect::<DbResult<Vec<T>>>()?;
            sp.commit()?;
            Ok(out)
        })
        .await
    }

    /// The PostgreSQL half of the pipelined runs: one round trip, in the
    /// group's transaction (beginning it if it has not begun), or in one of
    /// their own (`unflushed`: see `execute_pipelined_unflushed`).
    async fn pipelined_on_postgres(&self, queries: &[Query<'_>], want: Want, unflushed: bool) -> DbResult<Vec<Answer>> {
        let Db::Postgres(pool) = self else {
            unreachable!("SQLite runs pipelined statements one after another")
        };
        let batch: Vec<(&str, &[Arg], Want)> = queries
            .iter()
            .map(|q| (q.sql.as_ref(), q.args.as_slice(), want))
            .collect();
        // A transaction of its own is begun and committed in the same round trip.
        let own = if unflushed { BEGIN_UNFLUSHED } else { BEGIN };
        if let Some(group) = pg_group(pool) {
            let mut slot = group.lock().await;
            if slot.is_none() {
                *slot = Some(pool.acquire().await?);
            }
            let conn = slot.as_mut().expect("just set");
            let answers = match (conn.in_transaction(), unflushed) {
                (true, _) => conn.run_all(&batch, None, false),
                (false, true) => conn.run_all(&batch, Some(own), true),
                // They begin the group's transaction.
                (false, false) => conn.run_all(&batch, Some(BEGIN), false),
            };
            return Box::pin(answers).await;
        }
        let mut conn = pool.acquire().await?;
        Box::pin(conn.run_all(&batch, Some(own), true)).await
    }

    /// Runs `f` on the SQLite connection: the one lent to a group running
    /// on this thread, or else the shared one, once it is free.
    pub async fn with_sqlite<T, E: From<DbError>>(
        conn: &Mutex<Option<rusqlite::Connection>>,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let id = conn as *const _ as usize;
        let mut f = Some(f);
        let lent = LENT.with(|lent| match lent.borrow_mut().as_mut() {
            Some((owner, c)) if *owner == id => Some((f.take().expect("unused"))(c)),
            _ => None,
        });
        if let Some(result) = lent {
            return result;
        }
        let mut guard = conn.lock().await;
        (f.take().expect("unused"))(guard.as_mut().ok_or(DbError::Closed)?)
    }

    /// Runs `work` with its SQLite statements in one transaction, committed
    /// whatever `work` returns (so a counted try stays counted). The work is
    /// polled once, holding the connection; a group must not wait on
    /// anything but its statements. If it does, what ran so far is committed
    /// and the rest runs statement by statement. On PostgreSQL, and inside
    /// another group, the work simply runs.
    ///
    /// On PostgreSQL the group is one transaction on one connection, begun
    /// by its first statement (but for those `on_its_own` or `counter` before it, which
    /// commit one by one) and committed after the work, whatever it
    /// returned (a statement that failed has rolled it back: PostgreSQL
    /// aborts a transaction at its first error).
    pub async fn group<T, E: From<DbError>>(&self, work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let conn = match self {
            Db::Sqlite(conn) => conn,
            Db::Postgres(pool) => {
                if pg_group(pool).is_some() {
                    return work.await;
                }
                let group: PgGroup = Arc::default();
                let out = Box::pin(PG_GROUP.scope((pool_id(pool), group.clone()), work)).await;
                let mut slot = group.lock().await;
                if let Some(conn) = slot.as_mut().filter(|c| c.in_transaction()) {
                    conn.simple("COMMIT").await?;
                }
                return out;
            }
        };
        let id = &**conn as *const _ as usize;
        if LENT.with(|lent| lent.borrow().as_ref().is_some_and(|(owner, _)| *owner == id)) {
            return work.await;
        }
        let mut work = std::pin::pin!(work);
        let (polled, committed) = {
            let mut guard = conn.lock().await;
            let c = guard.take().ok_or(DbError::Closed)?;
            let mut lent = Lend { slot: &mut guard, id };
            lent.begin(c)?;
            let polled = work.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            (polled, lent.commit())
        };
        match polled {
            Poll::Ready(Ok(v)) => committed.map(|_| v).map_err(E::from),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => {
                tracing::debug!("a statement group waited on something else; it goes on ungrouped");
                committed?;
                work.await
            }
        }
    }

    /// Whether this task's PostgreSQL group has begun its transaction, so
    /// that a statement now, even a counter, would be part of it.
    pub async fn in_pg_transaction(&self) -> bool {
        let Db::Postgres(pool) = self else { return false };
        match pg_group(pool) {
            Some(group) => group.lock().await.as_ref().is_some_and(|c| c.in_transaction()),
            None => false,
        }
    }

    /// Closes the database: SQLite's connection is dropped (which
    /// checkpoints the WAL); PostgreSQL's pool waits for its connections.
    pub async fn close(&self) {
        match self {
            Db::Sqlite(conn) => {
                let conn = conn.lock().await.take();
                drop(conn);
            }
            Db::Postgres(pool) => pool.close(),
        }
    }
}

impl Query<'_> {
    pub fn bind(mut self, value: impl IntoArg) -> Self {
        self.args.push(value.into_arg());
        self
    }

    /// On PostgreSQL, a statement that comes before its group has begun a
    /// transaction runs on its own (autocommit), so that the row locks it
    /// takes are not held through the group's later statements. For rows
    /// that many requests update (a counter per client or per address): held
    /// across round trips, such a lock makes every request queue behind the
    /// one in front. The statement must be a rule on its own, as they all are.
    pub fn on_its_own(mut self) -> Self {
        self.place = Place::Alone;
        self
    }

    /// A counter's statement: on its own (`on_its_own`), and on PostgreSQL
    /// committed without waiting for the disk (`Conn::run_counter`). Inside
    /// a transaction already begun it is part of it, as any statement.
    pub fn counter(mut self) -> Self {
        self.place = Place::Counter;
        self
    }

    pub async fn execute(self) -> DbResult<Done> {
        self.execute_as(false).await
    }

    /// Runs the group's last statement: on PostgreSQL the group's `COMMIT`
    /// goes with it (one round trip), so it takes effect with the rest or,
    /// if it fails, nothing does. Elsewhere the same as `execute`.
    pub async fn execute_last(self) -> DbResult<Done> {
        self.execute_as(true).await
    }

    async fn execute_as(self, last: bool) -> DbResult<Done> {
        let place = if last { Place::Last } else { self.place };
        match self.db {
            Db::Sqlite(conn) => Db::with_sqlite(conn, |c| self.execute_on(c)).await,
            Db::Postgres(pool) => match Box::pin(pg_run(pool, &self.sql, &self.args, Want::Count, place)).await? {
                Answer::Count(n) => Ok(Done(n)),
                Answer::Rows(rows) => Ok(Done(rows.len() as u64)),
            },
        }
    }

    fn execute_on(&self, c: &rusqlite::Connection) -> DbResult<Done> {
        let (mut stmt, _) = prepare(c, &self.sql, &self.args)?;
        let mut rows = stmt.raw_query();
        while rows.next()?.is_some() {}
        drop(rows);
        Ok(Done(c.changes()))
    }

    pub async fn fetch_all(self) -> DbResult<Vec<Row>> {
        match self.db {
            Db::Sqlite(conn) => Db::with_sqlite(conn, |c| self.fetch_on(c)).await,
            Db::Postgres(pool) => match Box::pin(pg_run(pool, &self.sql, &self.args, Want::Rows, self.place)).await? {
                Answer::Rows(rows) => Ok(rows.into_iter().map(Row::Pg).collect()),
                Answer::Count(_) => Ok(Vec::new()),
            },
        }
    }

    fn fetch_on(&self, c: &rusqlite::Connection) -> DbResult<Vec<Row>> {
        let (mut stmt, shape) = prepare(c, &self.sql, &self.args)?;
        let width = shape.columns.len();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let values = (0..width).map(|i| r.get::<_, Value>(i)).collect::<Result<_, _>>()?;
            out.push(Row::Sqlite {
                columns: shape.columns.clone(),
                values,
            });
        }
        Ok(out)
    }

    pub async fn fetch_optional(self) -> DbResult<Option<Row>> {
        Ok(self.fetch_all().await?.into_iter().next())
    }

    pub async fn fetch_one(self) -> DbResult<Row> {
        self.fetch_optional()
            .await?
            .ok_or_else(|| column_error("(row)", "the statement returned no row"))
    }
}

/// Prepares (from the statement cache) and binds `$N` placeholders by number:
/// SQLite numbers named parameters in order of first appearance, so `$3`
/// before `$2` would otherwise take the wrong value.
fn prepare<'c>(
    c: &'c rusqlite::Connection,
    sql: &str,
    args: &[Arg],
) -> DbResult<(rusqlite::CachedStatement<'c>, Rc<Shape>)> {
    let mut stmt = c.prepare_cached(sql)?;
    let shape = Shape::of(&stmt, sql)?;
    for (i, &n) in shape.placeholders.iter().enumerate() {
        let arg = args
            .get(n - 1)
            .ok_or_else(|| column_error(&format!("${n}"), "no value bound"))?;
        match arg {
            Arg::Int(v) => stmt.raw_bind_parameter(i + 1, v)?,
            Arg::Text(v) => stmt.raw_bind_parameter(i + 1, v)?,
            Arg::NullInt | Arg::NullText => stmt.raw_bind_parameter(i + 1, rusqlite::types::Null)?,
        }
    }
    Ok((stmt, shape))
}

/// What a SQL text's statement looks like, worked out once per text (asking
/// SQLite for parameter names costs more than the statement).
struct Shape {
    /// For each parameter, the `N` of its `$N`.
    placeholders: Box<[usize]>,
    /// The result's column names, shared by its rows.
    columns: Arc<[String]>,
}

impl Shape {
    fn of(stmt: &rusqlite::Statement<'_>, sql: &str) -> DbResult<Rc<Shape>> {
        thread_local! {
            static SHAPES: RefCell<HashMap<String, Rc<Shape>>> = RefCell::default();
        }
        if let Some(shape) = SHAPES.with(|s| s.borrow().get(sql).cloned()) {
            return Ok(shape);
        }
        let placeholders = (1..=stmt.parameter_count())
            .map(|i| match stmt.parameter_name(i) {
                Some(name) => name
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| column_error(name, "placeholders must be $1, $2, …")),
                None => Ok(i),
            })
            .collect::<DbResult<_>>()?;
        let shape = Rc::new(Shape {
            placeholders,
            columns: stmt.column_names().into_iter().map(String::from).collect(),
        });
        SHAPES.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() >= 1024 {
                s.clear();
            }
            s.insert(sql.to_string(), shape.clone());
        });
        Ok(shape)
    }
}

fn column_error(column: &str, problem: &str) -> DbError {
    DbError::Column {
        column: column.into(),
        problem: problem.into(),
    }
}

/// A result row from either backend.
pub(crate) enum Row {
    Sqlite { columns: Arc<[String]>, values: Vec<Value> },
    Pg(tokio_postgres::Row),
}

impl Row {
    /// The named column as `T` (`i64`, `String`, `Vec<u8>`, or an `Option` of one).
    pub fn try_get<T: Column, I: AsRef<str>>(&self, name: I) -> DbResult<T> {
        let name = name.as_ref();
        match self {
            Row::Sqlite { columns, values } => {
                let i = columns
                    .iter()
                    .position(|c| c == name)
                    .ok_or_else(|| column_error(name, "no such column"))?;
                T::from_sqlite(ValueRef::from(&values[i])).ok_or_else(|| {
                    column_error(name, &format!("cannot read {:?} as {}", values[i].data_type(), T::NAME))
                })
            }
            Row::Pg(r) => {
                let i = r
                    .columns()
                    .iter()
                    .position(|c| c.name() == name)
                    .ok_or_else(|| column_error(name, "no such column"))?;
                T::from_pg(r, i).map_err(|problem| column_error(name, &problem))
            }
        }
    }
}

/// A Rust type a column decodes to, on both backends.
pub trait Column: Sized {
    const NAME: &'static str;
    fn from_sqlite(v: ValueRef<'_>) -> Option<Self>;
    fn from_pg(row: &tokio_postgres::Row, i: usize) -> Result<Self, String>;
}

/// A non-null column type, read from a PostgreSQL row as `None` when NULL.
pub trait PgValue: Sized {
    fn read(row: &tokio_postgres::Row, i: usize) -> Result<Option<Self>, String>;
}

impl PgValue for i64 {
    fn read(row: &tokio_postgres::Row, i: usize) -> Result<Option<Self>, String> {
        use tokio_postgres::types::Type;
        // Integer expressions (`SELECT 1`, `CASE … THEN 1`) are INT4 on PostgreSQL.
        let got = match *row.columns()[i].type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i),
            Type::INT4 => row.try_get::<_, Option<i32>>(i).map(|v| v.map(i64::from)),
            Type::INT2 => row.try_get::<_, Option<i16>>(i).map(|v| v.map(i64::from)),
            Type::BOOL => row.try_get::<_, Option<bool>>(i).map(|v| v.map(i64::from)),
            ref other => return Err(format!("cannot read {other} as an integer")),
        };
        got.map_err(|e| e.to_string())
    }
}

impl PgValue for String {
    fn read(row: &tokio_postgres::Row, i: usize) -> Result<Option<Self>, String> {
        row.try_get::<_, Option<String>>(i).map_err(|e| e.to_string())
    }
}

impl PgValue for Vec<u8> {
    fn read(row: &tokio_postgres::Row, i: usize) -> Result<Option<Self>, String> {
        row.try_get::<_, Option<Vec<u8>>>(i).map_err(|e| e.to_string())
    }
}

macro_rules! column {
    ($t:ty, $name:literal, $sqlite:expr) => {
        impl Column for $t {
            const NAME: &'static str = $name;
            fn from_sqlite(v: ValueRef<'_>) -> Option<Self> {
                $sqlite(v)
            }
            fn from_pg(row: &tokio_postgres::Row, i: usize) -> Result<Self, String> {
                <$t as PgValue>::read(row, i)?.ok_or_else(|| "is NULL".to_string())
            }
        }
    };
}

column!(i64, "an integer", |v: ValueRef<'_>| v.as_i64().ok());
column!(String, "text", |v: ValueRef<'_>| v.as_str().ok().map(String::from));
column!(Vec<u8>, "bytes", |v: ValueRef<'_>| v
    .as_bytes()
    .ok()
    .map(<[u8]>::to_vec));

impl<T: Column + PgValue> Column for Option<T> {
    const NAME: &'static str = T::NAME;
    fn from_sqlite(v: ValueRef<'_>) -> Option<Self> {
        match v {
            ValueRef::Null => Some(None),
            v => T::from_sqlite(v).map(Some),
        }
    }
    fn from_pg(row: &tokio_postgres::Row, i: usize) -> Result<Self, String> {
        T::read(row, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn memory() -> Db {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE;
        let db = Db::open_sqlite(":memory:", flags).unwrap();
        if let Db::Sqlite(c) = &db {
            Db::with_sqlite(c, |c| {
                Ok::<_, DbError>(c.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, note TEXT)")?)
            })
            .await
            .unwrap();
        }
        db
    }

    async fn autocommit(c: &Mutex<Option<rusqlite::Connection>>) -> bool {
        Db::with_sqlite(c, |c| Ok::<_, DbError>(c.is_autocommit()))
            .await
            .unwrap()
    }

    async fn count(db: &Db) -> i64 {
        let row = db.query("SELECT COUNT(*) AS n FROM t").fetch_one().await.unwrap();
        row.try_get::<i64, _>("n").unwrap()
    }

    #[tokio::test]
    async fn placeholders_bind_by_number_not_by_first_appearance() {
        let db = memory().await;
        db.query("INSERT INTO t (note, n, k) VALUES ($3, $2, $1)")
            .bind("key")
            .bind(7)
            .bind(None::<&str>)
            .execute()
            .await
            .unwrap();
        let row = db
            .query("SELECT k, n, note FROM t WHERE n = $2 AND k = $1")
            .bind("key")
            .bind(7)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(row.try_get::<String, _>("k").unwrap(), "key");
        assert_eq!(row.try_get::<i64, _>("n").unwrap(), 7);
        assert_eq!(row.try_get::<Option<String>, _>("note").unwrap(), None);
        assert!(row.try_get::<String, _>("n").is_err(), "an integer is not text");
        assert!(row.try_get::<i64, _>("missing").is_err());
    }

    #[tokio::test]
    async fn a_duplicate_key_is_a_unique_violation() {
        let db = memory().await;
        let insert = || db.query("INSERT INTO t (k, n) VALUES ($1, 1)").bind("a");
        insert().execute().await.unwrap();
        let err = insert().execute().await.unwrap_err();
        assert!(err.is_unique_violation(), "{err}");
        let missing = db.query("INSERT INTO nowhere VALUES (1)").execute().await.unwrap_err();
        assert!(!missing.is_unique_violation());
    }

    /// Pipelined statements say what each changed and take effect together:
    /// a failure takes the ones before it back.
    async fn pipelined_statements_take_effect_together(db: &Db) {
        let insert = |k: &'static str| db.query("INSERT INTO t (k, n) VALUES ($1, 1)").bind(k);
        let bump = |k: &'static str| db.query("UPDATE t SET n = n + 1 WHERE k = $1").bind(k);
        let changed = db
            .execute_pipelined(vec![insert("a"), bump("a"), bump("none")])
            .await
            .unwrap();
        assert_eq!(changed, vec![1, 1, 0]);
        let err = db.execute_pipelined(vec![insert("b"), insert("a")]).await.unwrap_err();
        assert!(err.is_unique_violation(), "{err}");
        assert_eq!(count(db).await, 1, "`b` went with the failed `a`");
    }

    #[tokio::test]
    async fn pipelined_statements_say_what_each_changed_and_take_effect_together() {
        pipelined_statements_take_effect_together(&memory().await).await;
    }

    /// Every connection carries the server-side limits (set after
    /// connecting, so that PgBouncer, which refuses the `options` startup
    /// parameter, lets Sesame in).
    #[cfg(sesame_test_postgres)]
    #[tokio::test]
    async fn a_postgres_connection_has_the_server_side_limits() {
        let url = std::env::var("SESAME_TEST_POSTGRES_URL").unwrap();
        let db = Db::Postgres(super::super::pg::PgPool::open(&url, 1, false).await.unwrap());
        for (setting, value) in [
            ("statement_timeout", "5s"),
            ("lock_timeout", "3s"),
            ("idle_in_transaction_session_timeout", "10s"),
        ] {
            let row = db
                .query("SELECT current_setting($1) AS v")
                .bind(setting)
                .fetch_one()
                .await
                .unwrap();
            assert_eq!(row.try_get::<String, _>("v").unwrap(), value, "{setting}");
        }
    }

    /// The same on PostgreSQL, where the statements go out in one round
    /// trip: a failure rolls back the ones before it, and every answer is
    /// read, so the connection is fit for the next request.
    #[cfg(sesame_test_postgres)]
    #[tokio::test]
    async fn pipelined_statements_on_postgres_fail_together_and_leave_the_connection_usable() {
        let url = std::env::var("SESAME_TEST_POSTGRES_URL").unwrap();
        // One connection, so that the temporary table is seen by every statement.
        let db = Db::Postgres(super::super::pg::PgPool::open(&url, 1, false).await.unwrap());
        db.query("CREATE TEMPORARY TABLE t (k TEXT PRIMARY KEY, n BIGINT, note TEXT)")
            .execute()
            .await
            .unwrap();
        pipelined_statements_take_effect_together(&db).await;
        let row = db.query("SELECT n FROM t WHERE k = 'a'").fetch_one().await.unwrap();
        assert_eq!(row.try_get::<i64, _>("n").unwrap(), 2);
    }

    /// A new code's statements (`execute_pipelined_unflushed`): before
    /// their group has begun its transaction they are a transaction of
    /// their own, committed in their round trip (seen at once from another
    /// connection, and kept when the group then fails); once it has begun,
    /// they are part of it and go with its rollback.
    #[cfg(sesame_test_postgres)]
    #[tokio::test]
    async fn unflushed_statements_commit_on_their_own_unless_their_group_has_begun() {
        let url = std::env::var("SESAME_TEST_POSTGRES_URL").unwrap();
        let db = Db::Postgres(super::super::pg::PgPool::open(&url, 1, false).await.unwrap());
        let other = Db::Postgres(super::super::pg::PgPool::open(&url, 1, false).await.unwrap());
        let table = format!("unflushed_{}", crate::crypto::hex(&crate::crypto::random_bytes::<6>()));
        db.query(format!("CREATE TABLE {table} (k TEXT PRIMARY KEY)"))
            .execute()
            .await
            .unwrap();
        let insert = |k: &'static str| db.query(format!("INSERT INTO {table} (k) VALUES ($1)")).bind(k);
        // Records the transaction's `synchronous_commit` as a row.
        let setting = || {
            db.query(format!(
                "INSERT INTO {table} (k) SELECT 'synchronous_commit ' || current_setting('synchronous_commit')"
            ))
        };
        let rows = || async {
            let row = other
                .query(format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one()
                .await
                .unwrap();
            row.try_get::<i64, _>("n").unwrap()
        };

        let own: Result<(), DbError> = db
            .group(async {
                db.execute_pipelined_unflushed(vec![insert("code"), setting()]).await?;
                assert!(!db.in_pg_transaction().await, "committed in its own round trip");
                assert_eq!(rows().await, 2, "seen from another connection while the group goes on");
                insert("code").execute().await?;
                Ok(())
            })
            .await;
        assert!(own.unwrap_err().is_unique_violation());
        assert_eq!(rows().await, 2, "the group's failure did not take it back");
        let waited = db
            .query(format!("SELECT k FROM {table} WHERE k LIKE 'synchronous%'"))
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(
            waited.try_get::<String, _>("k").unwrap(),
            "synchronous_commit off",
            "its commit did not wait for the disk"
        );

        let inside: Result<(), DbError> = db
            .group(async {
                insert("first").execute().await?;
                db.execute_pipelined_unflushed(vec![insert("inside")]).await?;
                assert!(db.in_pg_transaction().await, "part of the group's transaction");
                assert_eq!(rows().await, 2, "not committed yet");
                let row = db
                    .query("SELECT current_setting('synchronous_commit') AS v")
                    .fetch_one()
                    .await?;
                assert_eq!(
                    row.try_get::<String, _>("v")?,
                    "on",
                    "the group's commit waits, as before"
                );
                insert("first").execute().await?;
                Ok(())
            })
            .await;
        assert!(inside.unwrap_err().is_unique_violation());
        assert_eq!(rows().await, 2, "rolled back with the group");
        db.query(format!("DROP TABLE {table}")).execute().await.unwrap();
    }

    #[tokio::test]
    async fn a_group_commits_what_it_did_even_when_it_fails() {
        let db = memory().await;
        let result: Result<(), DbError> = db
            .group(async {
                db.query("INSERT INTO t (k, n) VALUES ('counted', 1)").execute().await?;
                db.query("INSERT INTO t (k, n) VALUES ('counted', 2)").execute().await?;
                Ok(())
            })
            .await;
        assert!(result.unwrap_err().is_unique_violation());
        assert_eq!(
            count(&db).await,
            1,
            "the first insert stays, as it would outside a group"
        );
    }

    #[tokio::test]
    async fn groups_nest_and_atomic_batches_nest_in_groups() {
        let db = memory().await;
        let Db::Sqlite(c) = &db else { unreachable!() };
        db.group(async {
            assert!(
                !Db::with_sqlite(c, |c| Ok::<_, DbError>(c.is_autocommit())).await?,
                "inside one transaction"
            );
            db.query("INSERT INTO t (k) VALUES ('outer')").execute().await?;
            db.group(async { db.query("INSERT INTO t (k) VALUES ('inner')").execute().await })
                .await?;
            let both = vec![
                db.query("INSERT INTO t (k) VALUES ('x')"),
                db.query("INSERT INTO t (k) VALUES ('outer')"),
            ];
            assert!(db.execute_atomically(both).await.unwrap_err().is_unique_violation());
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
        assert_eq!(count(&db).await, 2, "the failed batch left nothing, not even 'x'");
        assert!(autocommit(c).await, "committed");
    }

    #[tokio::test]
    async fn a_group_that_waits_goes_on_statement_by_statement() {
        let db = memory().await;
        db.group(async {
            db.query("INSERT INTO t (k) VALUES ('before')").execute().await?;
            tokio::task::yield_now().await;
            db.query("INSERT INTO t (k) VALUES ('after')").execute().await?;
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
        assert_eq!(count(&db).await, 2);
        // The connection is back and not left inside a transaction.
        let Db::Sqlite(c) = &db else { unreachable!() };
        assert!(autocommit(c).await);
    }

    #[tokio::test]
    async fn a_panic_in_a_group_rolls_back_and_returns_the_connection() {
        let db = memory().await;
        let caught = std::panic::AssertUnwindSafe(db.group(async {
            db.query("INSERT INTO t (k) VALUES ('lost')").execute().await?;
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<_, DbError>(())
        }));
        assert!(futures_util::FutureExt::catch_unwind(caught).await.is_err());
        assert_eq!(count(&db).await, 0);
    }

    #[tokio::test]
    async fn a_closed_database_answers_closed() {
        let db = memory().await;
        db.close().await;
        let err = db.query("SELECT 1").execute().await.unwrap_err();
        assert!(matches!(err, DbError::Closed), "{err}");
    }
}
