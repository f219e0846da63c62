//! Send limits and lockouts, counted in the database so they hold across
//! restarts and across nodes. Each check is one atomic statement.

use super::{now, Store};

/// One of a send's counters: its key, its window in seconds, and the most
/// counts the window allows.
#[derive(Debug, Clone)]
pub struct SendCount {
    pub key: String,
    pub window: i64,
    pub limit: i64,
}

/// What `Store::count_sends` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendCounted {
    /// A lock holds for this many more seconds; nothing was counted.
    Locked(i64),
    /// The count at `step` went over its limit (its window ends in `retry`
    /// seconds); the counts after it were not made.
    Over { step: usize, retry: i64 },
    /// Every count is within its limit.
    Within,
}

/// What a source that proved an identifier gets: its resend gap for it
/// lifted (`resend_key`: its code is used, so a step-up sign-in need not
/// wait), and, where something reads it (the SMS caps, the identifier's
/// ceiling), its mark as known to it renewed (`known_key`, counted once in
/// a window that starts now).
pub struct SourceMarks {
    pub resend_key: String,
    pub known_key: Option<String>,
}

/// The `ON CONFLICT` clause of a count (`INSERT INTO rate_counters … (key,
/// window_start, count) … 1`): one more in the stored window, or a new
/// window starting at `$now` when the stored one began at or before `$old`
/// (now minus the window).
pub(super) fn count_upsert(now: usize, old: usize) -> String {
    format!(
        "ON CONFLICT (key) DO UPDATE SET
           count = CASE WHEN rate_counters.window_start <= ${old} THEN 1 ELSE rate_counters.count + 1 END,
           window_start = CASE WHEN rate_counters.window_start <= ${old} THEN ${now} ELSE rate_counters.window_start END"
    )
}

/// A count's answer (its `count` and `window_start` columns): the count,
/// and the seconds until its window ends.
pub(super) fn counted_for(row: &super::Row, window: i64, now: i64) -> anyhow::Result<(i64, i64)> {
    let count: i64 = row.try_get("count")?;
    let start: i64 = row.try_get("window_start")?;
    Ok((count, (start + window - now).max(1)))
}

impl Store {
    /// Counts one event against `key` in a fixed window of `window` seconds
    /// that starts at the first event. Returns the count including this one
    /// and the seconds until the window ends.
    ///
    /// A counter is a rule of its own, and many requests may share one (per
    /// client, per address, SMS in all): on PostgreSQL, counted before its
    /// group has begun a transaction, it commits on its own, so its row is
    /// not locked through the group's later statements
    /// (`Query::on_its_own`). That also keeps a send, which counts first and
    /// writes its code last, from taking row locks in the order a
    /// verification takes them in reverse (a deadlock).
    pub async fn hit(&self, key: &str, window: i64) -> anyhow::Result<(i64, i64)> {
        self.count(key, window, false).await
    }

    /// A send's lock check and counters: refuses while the
    /// lock of `locks.0` or `locks.1` holds (counting nothing), then counts
    /// each of `counts` in turn (as `hit`) and stops at the first over its
    /// limit, leaving those after it uncounted, so a send refused for its
    /// address costs its client nothing. These counts only gate the send: on
    /// PostgreSQL their commit does not wait for the disk (`Query::counter`;
    /// a crash or failover of PostgreSQL within a fraction of a second could
    /// lose a count, letting a few more sends through), and the send's
    /// `code_sent` or `delivery_failed` event, whose commit waits before the
    /// send is answered, writes them to disk with it. Failure
    /// counts that lock someone out (passwords: `hit`; wrong codes:
    /// `Store::reserve_attempt`) wait for the disk.
    ///
    /// A statement at a time, each count committing on its own (part of
    /// the group's transaction inside a begun group): a held row holds up
    /// this send alone. On PostgreSQL a send's whole ladder is one call to
    /// `sesame_count_sends` (migration 0008), in the statement that stores
    /// its code (`count_sends_and_insert`); this is that ladder's fallback,
    /// and SQLite's way.
    pub async fn count_sends(&self, locks: (&str, &str), counts: &[SendCount]) -> anyhow::Result<SendCounted> {
        if let Some(secs) = self.locked_for(locks.0, locks.1).await? {
            return Ok(SendCounted::Locked(secs));
        }
        for (step, c) in counts.iter().enumerate() {
            let (n, retry) = self.count(&c.key, c.window, true).await?;
            if n > c.limit {
                return Ok(SendCounted::Over { step, retry });
            }
        }
        Ok(SendCounted::Within)
    }

    /// `count_sends`, and, when the send is within every limit, its new
    /// code stored with the counts (as `insert_code`: the code is stored if
    /// and only if `Within` is answered), with the address stored on the
    /// account that holds the code's email (`NewCode::email_key`), if any.
    /// On PostgreSQL, outside a begun transaction, the counting function,
    /// the account's read and the code's two writes are one transaction in
    /// one round trip (`count_sends_and_insert_on_the_server`) with one lazy
    /// commit, and a refused send stores no code and kills none. The
    /// function's 50 ms lock timeout then covers the code's writes too: a
    /// send whose older code a verification holds (the verification may
    /// wait in turn for a counter row this send holds, its source's resend
    /// gap) gives up at once, nothing counted or stored, and goes the long
    /// way: the counts one by one (`count_sends`), then `insert_code`, then
    /// the account's address.
    pub async fn count_sends_and_insert(
        &self,
        locks: (&str, &str),
        counts: &[SendCount],
        code: &super::otp::NewCode<'_>,
    ) -> anyhow::Result<(SendCounted, Option<String>)> {
        if self.backend == super::Backend::Postgres && !self.db.in_pg_transaction().await {
            match self.count_sends_and_insert_on_the_server(locks, counts, code).await {
                Err(e) if e.is_conflict() => {
                    tracing::debug!("a send met a held row; counting, then storing its code")
                }
                done => return Ok(done?),
            }
        }
        let counted = self.count_sends(locks, counts).await?;
        if counted != SendCounted::Within {
            return Ok((counted, None));
        }
        self.insert_code(code).await?;
        let address = match code.email_key {
            Some(key) => self
                .db
                .query("SELECT email FROM users WHERE email_key = $1")
                .bind(key)
                .fetch_optional()
                .await?
                .map(|r| r.try_get("email"))
                .transpose()?,
            None => None,
        };
        Ok((counted, address))
    }

    /// `count_sends_and_insert` in one round trip and one transaction: the
    /// function's verdict, the account's address and, only when the verdict
    /// is within every limit, the new code inserted (one statement); then
    /// the older codes killed (the next statement, only if the new code is
    /// there). The kill is a statement of its own so that it sees what
    /// committed while the function waited: a send that waited for
    /// another's counters (they are held to the commit) kills the code that
    /// other send stored, as a data-modifying CTE, whose snapshot is its
    /// statement's, would not.
    async fn count_sends_and_insert_on_the_server(
        &self,
        locks: (&str, &str),
        counts: &[SendCount],
        c: &super::otp::NewCode<'_>,
    ) -> super::DbResult<(SendCounted, Option<String>)> {
        let now = now();
        let n = counts.len();
        // The code's eleven parameters (`NewCode::bind`) follow the counts',
        // then the email key whose account's address is read.
        let param = |i: usize| format!("${}", 3 + 3 * n + i);
        let columns = (1..=11)
            .map(|i| match i {
                7 => format!("(SELECT id FROM users WHERE email_key = {})", param(7)),
                _ => param(i),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH verdict AS MATERIALIZED (
               SELECT o_locked_until, o_step, o_count, o_window_start FROM {call}),
             stored AS (
               INSERT INTO otp_codes (id, ident_key, client_id, channel, code_digest, magic_digest, user_id, created_at, expires_at, match_number, source)
               SELECT {columns} WHERE EXISTS (SELECT 1 FROM verdict WHERE o_locked_until IS NULL AND o_step = 0))
             SELECT o_locked_until, o_step, o_count, o_window_start,
                    (SELECT email FROM users WHERE email_key = {email}) AS account_email
               FROM verdict",
            call = count_sends_call(n),
            email = param(12),
        );
        let count_and_store = c
            .bind(bind_counts(self.db.query(sql), locks, now, counts), now)
            .bind(c.email_key);
        let answers = self
            .db
            .fetch_pipelined_unflushed(vec![count_and_store, self.kill_older_codes(c)])
            .await?;
        let row = answers[0].first().ok_or_else(|| super::DbError::Column {
            column: "o_step".into(),
            problem: "no verdict".into(),
        })?;
        let counted = verdict(row, counts, now)?;
        let address = match counted {
            SendCounted::Within => row.try_get("account_email")?,
            _ => None,
        };
        Ok((counted, address))
    }

    async fn count(&self, key: &str, window: i64, lazily: bool) -> anyhow::Result<(i64, i64)> {
        let now = now();
        // Written once, not for every count.
        static COUNT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "INSERT INTO rate_counters (key, window_start, count) VALUES ($1, $2, 1) {} RETURNING count, window_start",
                count_upsert(2, 3)
            )
        });
        let query = self.db.query(COUNT.as_str()).bind(key).bind(now).bind(now - window);
        let row = match lazily {
            true => query.counter(),
            false => query.on_its_own(),
        }
        .fetch_one()
        .await?;
        counted_for(&row, window, now)
    }

    /// Whether `key` was counted in a window that has not ended.
    pub async fn counted(&self, key: &str, window: i64) -> anyhow::Result<bool> {
        let row = self
            .db
            .query("SELECT 1 AS one FROM rate_counters WHERE key = $1 AND window_start > $2")
            .bind(key)
            .bind(now() - window)
            .on_its_own()
            .fetch_optional()
            .await?;
        Ok(row.is_some())
    }

    /// Marks a source that proved an identifier (`SourceMarks`), in one
    /// round trip on PostgreSQL.
    pub async fn mark_source(&self, marks: &SourceMarks) -> anyhow::Result<()> {
        self.db.execute_pipelined(self.mark_queries(marks, None)).await?;
        Ok(())
    }

    /// The statements of `mark_source`; with `used_code`, each takes
    /// effect only if that code has been used (a right code's verification
    /// sends them with the statement that uses it, `Store::consume_code`).
    pub(super) fn mark_queries(&self, marks: &SourceMarks, used_code: Option<&str>) -> Vec<super::db::Query<'_>> {
        let only_if_used = |n: usize| match used_code {
            Some(_) => format!(" AND EXISTS (SELECT 1 FROM otp_codes WHERE id = ${n} AND used_at IS NOT NULL)"),
            None => String::new(),
        };
        fn with_code<'q>(q: super::db::Query<'q>, used_code: Option<&str>) -> super::db::Query<'q> {
            match used_code {
                Some(id) => q.bind(id),
                None => q,
            }
        }
        let mut queries = vec![with_code(
            self.db
                .query(format!("DELETE FROM rate_counters WHERE key = $1{}", only_if_used(2)))
                .bind(&marks.resend_key),
            used_code,
        )];
        if let Some(known) = &marks.known_key {
            // A window that starts now: the mark is renewed on each use.
            queries.push(with_code(
                self.db
                    .query(format!(
                        "INSERT INTO rate_counters (key, window_start, count) SELECT $1, $2, 1 WHERE TRUE{}
                         ON CONFLICT (key) DO UPDATE SET window_start = $2, count = 1",
                        only_if_used(3)
                    ))
                    .bind(known)
                    .bind(now()),
                used_code,
            ));
        }
        queries
    }

    /// Gives back one count of `key` (a password try that succeeded).
    pub async fn unhit(&self, key: &str) -> anyhow::Result<()> {
        self.unhit_query(key).execute().await?;
        Ok(())
    }

    pub(super) fn unhit_query(&self, key: &str) -> super::db::Query<'_> {
        self.db
            .query("UPDATE rate_counters SET count = count - 1 WHERE key = $1 AND count > 0")
            .bind(key)
    }

    /// Locks the identifier until `until` (extends, never shortens, a lock).
    pub async fn lock_identifier(&self, ident_key: &str, until: i64) -> anyhow::Result<()> {
        self.db.query(
            "INSERT INTO otp_locks (ident_key, locked_until) VALUES ($1, $2)
             ON CONFLICT (ident_key) DO UPDATE SET locked_until = CASE WHEN otp_locks.locked_until > $2 THEN otp_locks.locked_until ELSE $2 END",
        )
        .bind(ident_key)
        .bind(until)
        .execute()
        .await?;
        Ok(())
    }

    /// Seconds the identifier stays locked, if it is.
    pub async fn identifier_locked_for(&self, ident_key: &str) -> anyhow::Result<Option<i64>> {
        self.locked_for(ident_key, ident_key).await
    }

    /// Seconds the longer of two locks lasts (the identifier's and one
    /// source's for it), if either holds.
    pub async fn locked_for(&self, key: &str, other: &str) -> anyhow::Result<Option<i64>> {
        let now = now();
        let row = self
            .db
            .query(
                "SELECT locked_until FROM otp_locks WHERE ident_key IN ($1, $2) AND locked_until > $3
                 ORDER BY locked_until DESC LIMIT 1",
            )
            .bind(key)
            .bind(other)
            .bind(now)
            .on_its_own()
            .fetch_optional()
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>("locked_until"))
            .transpose()?
            .map(|t| t - now))
    }
}

/// The call to `sesame_count_sends` for `n` counts: `$1` and `$2` the
/// locks, `$3` now, then the counts' keys, windows and limits
/// (`bind_counts`).
fn count_sends_call(n: usize) -> String {
    let params = |first: usize| {
        (first..first + n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "sesame_count_sends($1, $2, $3, ARRAY[{}]::TEXT[], ARRAY[{}]::BIGINT[], ARRAY[{}]::BIGINT[])",
        params(4),
        params(4 + n),
        params(4 + 2 * n)
    )
}

/// Binds `count_sends_call`'s parameters.
fn bind_counts<'q>(
    query: super::db::Query<'q>,
    locks: (&str, &str),
    now: i64,
    counts: &[SendCount],
) -> super::db::Query<'q> {
    let mut query = query.bind(locks.0).bind(locks.1).bind(now);
    for c in counts {
        query = query.bind(c.key.as_str());
    }
    for c in counts {
        query = query.bind(c.window);
    }
    for c in counts {
        query = query.bind(c.limit);
    }
    query
}

/// `sesame_count_sends`'s answer, as a `SendCounted`.
fn verdict(row: &super::Row, counts: &[SendCount], now: i64) -> super::DbResult<SendCounted> {
    if let Some(until) = row.try_get::<Option<i64>, _>("o_locked_until")? {
        return Ok(SendCounted::Locked(until - now));
    }
    let step: i64 = row.try_get("o_step")?;
    if step == 0 {
        return Ok(SendCounted::Within);
    }
    let step = usize::try_from(step - 1).ok().filter(|s| *s < counts.len());
    let step = step.ok_or_else(|| super::DbError::Column {
        column: "o_step".into(),
        problem: "out of range".into(),
    })?;
    let start: i64 = row.try_get("o_window_start")?;
    Ok(SendCounted::Over {
        step,
        retry: (start + counts[step].window - now).max(1),
    })
}
