//! One-time codes and the `secret_identifier`s that prove a verification.
//! Attempts are reserved and codes consumed by single atomic statements, so
//! racing requests (on any node) cannot exceed the limits or both succeed.

use super::limits::SourceMarks;
use super::users::User;
use super::{now, Row, Store};

pub struct NewCode<'a> {
    pub id: &'a str,
    pub ident_key: &'a str,
    pub client_id: &'a str,
    pub channel: &'a str,
    pub code_digest: &'a str,
    pub magic_digest: Option<&'a str>,
    /// The email (lookup form) an email code goes to: the statement that
    /// stores the code reads the account holding it, and gives back the
    /// address stored on it (SPEC §9: a code goes there), no round trip of
    /// its own (`Store::count_sends_and_insert`). `None` for a phone.
    pub email_key: Option<&'a str>,
    /// Whether the code's magic link signs in to that account (on another
    /// device): the account's id is stored with the code.
    pub links_account: bool,
    /// The number the asking tab shows for number matching (magic links only).
    pub match_number: Option<i64>,
    pub ttl: i64,
    /// Where the request came from (`net::ip_bucket`): only a code request
    /// from the same source replaces this code, and only there is it checked.
    pub source: &'a str,
}

impl NewCode<'_> {
    /// Binds the code's eleven columns, in `otp_codes`' order (id, ident_key,
    /// client_id, channel, code_digest, magic_digest, user_id, created_at,
    /// expires_at, match_number, source), created `now`; in place of the
    /// user id, the email key whose account the magic link signs in to
    /// (the statement's subquery on `users` turns it into the id).
    pub(super) fn bind<'q>(&self, query: super::db::Query<'q>, now: i64) -> super::db::Query<'q> {
        query
            .bind(self.id)
            .bind(self.ident_key)
            .bind(self.client_id)
            .bind(self.channel)
            .bind(self.code_digest)
            .bind(self.magic_digest)
            .bind(self.links_account.then_some(self.email_key).flatten())
            .bind(now)
            .bind(now + self.ttl)
            .bind(self.match_number)
            .bind(self.source)
    }
}

/// A consumed magic link: which code it belonged to and whom it was sent to.
pub struct MagicUse {
    pub code_id: String,
    pub ident_key: String,
    pub client_id: String,
    pub user_id: Option<String>,
    /// The link was opened in the browser that asked for it, or the number was matched:
    /// the asking tab may take the sign-in over.
    pub handoff_allowed: bool,
}

/// A code a verifier may try, with the attempt it has just reserved.
pub struct Attempt {
    pub id: String,
    pub code_digest: String,
    pub channel: String,
    pub attempts: i64,
}

/// What a consumed `secret_identifier` or magic link proves.
pub struct VerifiedIdentifier {
    pub kind: String,
    pub identifier: String,
    pub ident_key: String,
    pub client_id: String,
}

impl Store {
    /// Stores a new code; earlier live codes for the same identifier, client
    /// and source die with it (a stranger's request, from elsewhere, leaves
    /// the user's code alive). Outside a group, between the two statements
    /// another send's code may go in; the resend gap keeps sends apart.
    pub async fn insert_code(&self, c: &NewCode<'_>) -> anyhow::Result<()> {
        // Two statements, one round trip on PostgreSQL (pipelined). Their
        // commit does not wait for the disk: `otp::send` always writes the
        // code's `code_sent` or `delivery_failed` event, with a commit that
        // does, before it answers.
        let insert = c.bind(
            self.db.query(
                "INSERT INTO otp_codes (id, ident_key, client_id, channel, code_digest, magic_digest, user_id, created_at, expires_at, match_number, source)
                 VALUES ($1, $2, $3, $4, $5, $6, (SELECT id FROM users WHERE email_key = $7), $8, $9, $10, $11)",
            ),
            now(),
        );
        self.db
            .execute_pipelined_unflushed(vec![insert, self.kill_older_codes(c)])
            .await?;
        Ok(())
    }

    /// Kills the live codes `c` replaces (same identifier, client and
    /// source; legacy codes without a source too), once `c` is stored: a
    /// statement run after `c`'s insert, in its transaction, and a no-op
    /// if `c` is not there (a refused send, `Store::count_sends_and_insert`).
    pub(super) fn kill_older_codes(&self, c: &NewCode<'_>) -> super::db::Query<'_> {
        self.db
            .query(
                "UPDATE otp_codes SET dead = 1
                  WHERE ident_key = $1 AND client_id = $2 AND source IN ($3, '') AND used_at IS NULL AND dead = 0
                    AND id <> $4 AND EXISTS (SELECT 1 FROM otp_codes WHERE id = $4)",
            )
            .bind(c.ident_key)
            .bind(c.client_id)
            .bind(c.source)
            .bind(c.id)
    }

    /// Kills a code (its delivery failed).
    pub async fn kill_code(&self, id: &str) -> anyhow::Result<()> {
        self.db
            .query("UPDATE otp_codes SET dead = 1 WHERE id = $1")
            .bind(id)
            .execute()
            .await?;
        Ok(())
    }

    /// Reserves one attempt on the live code this source asked for, for this
    /// identifier and client, atomically: at most `max_attempts` tries ever
    /// get a digest to compare, and none while the identifier, or this
    /// source for it (`source_lock`), is locked. A reserved try is counted
    /// at once against `tries` (the identifier's failures: key and window,
    /// as `Store::hit`), before its code is compared: on PostgreSQL in the
    /// same statement (one round trip), elsewhere in the next. Returns the
    /// attempt with that count and the seconds left in its window.
    pub async fn reserve_attempt(
        &self,
        ident_key: &str,
        client_id: &str,
        source: &str,
        source_lock: &str,
        max_attempts: i64,
        tries: (&str, i64),
    ) -> anyhow::Result<Option<(Attempt, (i64, i64))>> {
        let now = now();
        const RESERVE: &str = "UPDATE otp_codes SET attempts = attempts + 1
             WHERE id = (SELECT id FROM otp_codes WHERE ident_key = $1 AND client_id = $2 AND source IN ($5, '')
                         AND used_at IS NULL AND dead = 0 AND expires_at > $3 ORDER BY created_at DESC LIMIT 1)
               AND attempts < $4 AND used_at IS NULL AND dead = 0
               AND NOT EXISTS (SELECT 1 FROM otp_locks WHERE ident_key IN ($1, $6) AND locked_until > $3)
             RETURNING id, code_digest, channel, attempts";
        let (tries_key, window) = tries;
        let reserve = |sql: &'static str| {
            self.db
                .query(sql)
                .bind(ident_key)
                .bind(client_id)
                .bind(now)
                .bind(max_attempts)
                .bind(source)
                .bind(source_lock)
        };
        let attempt = |r: &Row| {
            Ok::<_, anyhow::Error>(Attempt {
                id: r.try_get("id")?,
                code_digest: r.try_get("code_digest")?,
                channel: r.try_get("channel")?,
                attempts: r.try_get("attempts")?,
            })
        };
        if self.backend == super::Backend::Postgres {
            // The count takes the reserved row from the update (a data-modifying
            // CTE): no reserved attempt, nothing counted.
            // Written once, not for every try.
            static RESERVE_AND_COUNT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                format!(
                    "WITH reserved AS ({RESERVE}),
                     counted AS (INSERT INTO rate_counters (key, window_start, count) SELECT $7, $3, 1 FROM reserved {}
                                 RETURNING count, window_start)
                     SELECT id, code_digest, channel, attempts, count, window_start FROM reserved, counted",
                    super::limits::count_upsert(3, 8)
                )
            });
            let row = reserve(RESERVE_AND_COUNT.as_str())
                .bind(tries_key)
                .bind(now - window)
                .fetch_optional()
                .await?;
            return row
                .map(|r| Ok((attempt(&r)?, super::limits::counted_for(&r, window, now)?)))
                .transpose();
        }
        let Some(row) = reserve(RESERVE).fetch_optional().await? else {
            return Ok(None);
        };
        Ok(Some((attempt(&row)?, self.hit(tries_key, window).await?)))
    }

    /// Marks the code used; `false` when another request consumed it first.
    /// Gives back, in the same round trip (pipelined on PostgreSQL), the try
    /// counted against `failures_key` (`Store::unhit`): a right code is no
    /// failure, whether or not this request is the one that uses it. And
    /// marks the source that gave it (`Store::mark_source`) if the code is
    /// used: by this request, or by any other use that came first (a racing
    /// try, or its magic link). A try that lost such a race gave the right
    /// code all the same, so its source is marked too.
    pub async fn consume_code(&self, id: &str, failures_key: &str, marks: &SourceMarks) -> anyhow::Result<bool> {
        let consume = self
            .db
            .query("UPDATE otp_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL AND dead = 0")
            .bind(id)
            .bind(now());
        let mut queries = vec![self.unhit_query(failures_key), consume];
        queries.extend(self.mark_queries(marks, Some(id)));
        let changed = self.db.execute_pipelined(queries).await?;
        Ok(changed[1] == 1)
    }

    /// Uses a magic link token, once. The link signs in the browser that opens
    /// it. The code it came with stays usable for the tab that asked for it,
    /// unless that tab may take this sign-in over: the link was opened in the
    /// same browser (`same_code_id`), or `number` matches the one the asking
    /// tab shows (SPEC §9 number matching); then the code is used up too.
    /// Not while its identifier is locked (`otp_locks`, as a code's try).
    pub async fn consume_magic(
        &self,
        magic_digest: &str,
        same_code_id: Option<&str>,
        number: Option<i64>,
    ) -> anyhow::Result<Option<MagicUse>> {
        let row = self
            .db
            .query(
                "UPDATE otp_codes SET magic_used_at = $2,
               handoff_allowed = CASE WHEN id = $3 OR match_number = $4 THEN 1 ELSE 0 END,
               used_at = CASE WHEN id = $3 OR match_number = $4 THEN $2 ELSE used_at END
             WHERE magic_digest = $1 AND match_number IS NOT NULL
               AND magic_used_at IS NULL AND used_at IS NULL AND dead = 0 AND expires_at > $2
               AND NOT EXISTS (SELECT 1 FROM otp_locks l WHERE l.ident_key = otp_codes.ident_key AND l.locked_until > $2)
             RETURNING id, ident_key, client_id, user_id, handoff_allowed",
            )
            .bind(magic_digest)
            .bind(now())
            .bind(same_code_id.unwrap_or(""))
            .bind(number.unwrap_or(-1))
            .fetch_optional()
            .await?;
        row.map(|r| {
            Ok(MagicUse {
                code_id: r.try_get("id")?,
                ident_key: r.try_get("ident_key")?,
                client_id: r.try_get("client_id")?,
                user_id: r.try_get("user_id")?,
                handoff_allowed: r.try_get::<i64, _>("handoff_allowed")? != 0,
            })
        })
        .transpose()
    }

    /// The identifier key and client of the code a magic link token came
    /// with, if the token is one of ours (used or not).
    pub async fn magic_link_owner(&self, magic_digest: &str) -> anyhow::Result<Option<(String, String)>> {
        let row = self
            .db
            .query("SELECT ident_key, client_id FROM otp_codes WHERE magic_digest = $1")
            .bind(magic_digest)
            .fetch_optional()
            .await?;
        row.map(|r| Ok((r.try_get("ident_key")?, r.try_get("client_id")?)))
            .transpose()
    }

    /// Uses a magic link token of the OTP API (a client's `magic_link_uri`):
    /// once, only by the client it was sent for and for its identifier, and
    /// never on Sesame's own pages (those links carry a match number). The
    /// code it came with is used up too. Returns the code's channel.
    pub async fn consume_client_magic(
        &self,
        magic_digest: &str,
        client_id: &str,
        ident_key: &str,
    ) -> anyhow::Result<Option<String>> {
        let row = self
            .db
            .query(
                "UPDATE otp_codes SET used_at = $2, magic_used_at = $2
             WHERE magic_digest = $1 AND client_id = $3 AND ident_key = $4 AND match_number IS NULL
               AND magic_used_at IS NULL AND used_at IS NULL AND dead = 0 AND expires_at > $2
             RETURNING channel",
            )
            .bind(magic_digest)
            .bind(now())
            .bind(client_id)
            .bind(ident_key)
            .fetch_optional()
            .await?;
        Ok(row.map(|r| r.try_get("channel")).transpose()?)
    }

    /// The tab that asked for a code takes over a sign-in its magic link made
    /// in another browser: `true` once, and only when that browser matched
    /// the number this tab shows.
    pub async fn claim_magic_handoff(&self, code_id: &str) -> anyhow::Result<bool> {
        // Polled every few seconds by each waiting tab: look first, so that
        // polling takes no write lock until there is something to claim.
        let ready = self
            .db
            .query(
                "SELECT id FROM otp_codes
             WHERE id = $1 AND magic_used_at IS NOT NULL AND handoff_allowed = 1 AND handed_off_at IS NULL",
            )
            .bind(code_id)
            .fetch_optional()
            .await?;
        if ready.is_none() {
            return Ok(false);
        }
        let row = self
            .db
            .query(
                "UPDATE otp_codes SET handed_off_at = $2
             WHERE id = $1 AND magic_used_at IS NOT NULL AND handoff_allowed = 1 AND handed_off_at IS NULL
             RETURNING id",
            )
            .bind(code_id)
            .bind(now())
            .fetch_optional()
            .await?;
        Ok(row.is_some())
    }

    /// Stores a `secret_identifier` (its digest), and says in the same
    /// statement whether an account holds the identifier (`account`: its
    /// kind and key, as `Store::user_by_identifier` finds it).
    pub async fn insert_verified_identifier(
        &self,
        digest: &str,
        v: &VerifiedIdentifier,
        ttl: i64,
        account: (&str, &str),
    ) -> anyhow::Result<bool> {
        let now = now();
        let (kind, key) = account;
        let row = self
            .db
            .query(format!(
                "INSERT INTO verified_identifiers (digest, ident_key, kind, identifier, client_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 RETURNING EXISTS (SELECT 1 FROM users WHERE {} = $8) AS account_exists",
                super::users::identifier_column(kind)
            ))
            .bind(digest)
            .bind(&v.ident_key)
            .bind(&v.kind)
            .bind(&v.identifier)
            .bind(&v.client_id)
            .bind(now)
            .bind(now + ttl)
            .bind(key)
            .fetch_one()
            .await?;
        Ok(row.try_get::<i64, _>("account_exists")? != 0)
    }

    /// A live `secret_identifier` for this client, without consuming it.
    pub async fn verified_identifier(
        &self,
        digest: &str,
        client_id: &str,
    ) -> anyhow::Result<Option<VerifiedIdentifier>> {
        let row = self
            .db
            .query(
                "SELECT kind, identifier, ident_key, client_id FROM verified_identifiers
             WHERE digest = $1 AND client_id = $2 AND used_at IS NULL AND expires_at > $3",
            )
            .bind(digest)
            .bind(client_id)
            .bind(now())
            .fetch_optional()
            .await?;
        row.map(|r| verified_from_row(&r)).transpose()
    }

    /// Consumes a `secret_identifier` bound to this client and identifier
    /// (single use), and finds the account that holds the identifier
    /// (`account`: its kind and key, as `Store::user_by_identifier`), in one
    /// round trip (pipelined on PostgreSQL). With `only_for_an_account`, the
    /// secret is consumed only if that account exists, so an app told to
    /// create the account first keeps it for after.
    pub async fn consume_verified_identifier(
        &self,
        digest: &str,
        client_id: &str,
        ident_key: &str,
        account: (&str, &str),
        only_for_an_account: bool,
    ) -> anyhow::Result<(Option<User>, Option<VerifiedIdentifier>)> {
        let (kind, key) = account;
        let only_if = match only_for_an_account {
            true => format!(
                " AND EXISTS (SELECT 1 FROM users WHERE {} = $5)",
                super::users::identifier_column(kind)
            ),
            false => String::new(),
        };
        let mut consume = self
            .db
            .query(format!(
                "UPDATE verified_identifiers SET used_at = $4
             WHERE digest = $1 AND client_id = $2 AND ident_key = $3 AND used_at IS NULL AND expires_at > $4{only_if}
             RETURNING kind, identifier, ident_key, client_id"
            ))
            .bind(digest)
            .bind(client_id)
            .bind(ident_key)
            .bind(now());
        if only_for_an_account {
            consume = consume.bind(key);
        }
        let answers = self
            .db
            .fetch_pipelined(vec![self.user_by_identifier_query(kind, key), consume])
            .await?;
        let user = answers[0].first().map(super::users::from_row).transpose()?;
        let verified = answers[1].first().map(verified_from_row).transpose()?;
        Ok((user, verified))
    }
}

fn verified_from_row(r: &Row) -> anyhow::Result<VerifiedIdentifier> {
    Ok(VerifiedIdentifier {
        kind: r.try_get("kind")?,
        identifier: r.try_get("identifier")?,
        ident_key: r.try_get("ident_key")?,
        client_id: r.try_get("client_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<'a>(id: &'a str) -> NewCode<'a> {
        NewCode {
            id,
            ident_key: "ident",
            client_id: "app",
            channel: "email",
            code_digest: "digest",
            magic_digest: None,
            email_key: None,
            links_account: false,
            match_number: None,
            ttl: 600,
            source: "198.51.100.0",
        }
    }

    /// Without auto-created accounts, a `secret_identifier` is spent only
    /// for an account that holds its identifier, and only once; with them,
    /// it is spent whatever.
    #[tokio::test]
    async fn a_secret_identifier_is_spent_only_for_an_account_when_told_so() {
        let store = Store::connect("sqlite::memory:", None).await.unwrap();
        store.migrate().await.unwrap();
        let verified = |ident_key: &str| VerifiedIdentifier {
            kind: "phone".into(),
            identifier: "+14155550100".into(),
            ident_key: ident_key.into(),
            client_id: "app".into(),
        };
        let phone = ("phone", "+14155550100");
        for digest in ["kept", "anyway"] {
            let exists = store
                .insert_verified_identifier(digest, &verified(digest), 600, phone)
                .await
                .unwrap();
            assert!(!exists, "no account yet");
        }
        let spend = |digest: &'static str, only_for_an_account: bool| {
            store.consume_verified_identifier(digest, "app", digest, phone, only_for_an_account)
        };
        let (user, spent) = spend("kept", true).await.unwrap();
        assert!(user.is_none() && spent.is_none(), "no account: not spent");
        assert!(
            store.verified_identifier("kept", "app").await.unwrap().is_some(),
            "still live"
        );
        let (user, spent) = spend("anyway", false).await.unwrap();
        assert!(
            user.is_none() && spent.is_some(),
            "spent without an account when told so"
        );

        store
            .db
            .query("INSERT INTO users (id, phone, phone_verified, created_at, updated_at) VALUES ('u1', $1, 1, 0, 0)")
            .bind(phone.1)
            .execute()
            .await
            .unwrap();
        let (user, spent) = spend("kept", true).await.unwrap();
        assert_eq!(user.map(|u| u.id).as_deref(), Some("u1"));
        assert_eq!(
            spent.map(|v| v.ident_key).as_deref(),
            Some("kept"),
            "spent for the account"
        );
        let (user, spent) = spend("kept", true).await.unwrap();
        assert!(user.is_some() && spent.is_none(), "once");
    }

    /// The marks of the source that gave a right code go with the code's
    /// use, in its round trip: a code that died before it could be used
    /// (a newer send killed it) marks nothing; a used one marks its source.
    #[tokio::test]
    async fn a_right_codes_source_is_marked_only_if_the_code_is_used() {
        let store = Store::connect("sqlite::memory:", None).await.unwrap();
        store.migrate().await.unwrap();
        let marks = SourceMarks {
            resend_key: "resend:ident|198.51.100.0".into(),
            known_key: Some("known:ident|198.51.100.0".into()),
        };
        let marked = || async {
            (
                !store.counted(&marks.resend_key, 600).await.unwrap(),
                store.counted(marks.known_key.as_deref().unwrap(), 600).await.unwrap(),
            )
        };
        store.hit(&marks.resend_key, 600).await.unwrap();

        store.insert_code(&code("killed")).await.unwrap();
        store.kill_code("killed").await.unwrap();
        assert!(!store.consume_code("killed", "failures:ident", &marks).await.unwrap());
        assert_eq!(marked().await, (false, false), "a dead code marks nothing");

        store.insert_code(&code("used")).await.unwrap();
        assert!(store.consume_code("used", "failures:ident", &marks).await.unwrap());
        assert_eq!(marked().await, (true, true), "the gap lifted, the source known");
    }
}
