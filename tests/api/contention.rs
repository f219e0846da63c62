//! Requests that share a counter (one client, one address) do not queue
//! behind each other's transactions on PostgreSQL: a counter's row is locked
//! for its own statement, not until the group that counted it commits. The
//! tests hold a row from another session to stop a request at a known point.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sesame::domain::{Email, Identifier};
use sqlx::Connection;

use crate::helpers::{spawn_app, spawn_with, test_settings, Db, TestApp, Who, APP};

/// Takes `key`'s counter row in `tx` (inserted or updated, uncommitted), so
/// that whoever counts it next waits for `tx`.
async fn hold(tx: &mut sqlx::PgConnection, key: &str) {
    sqlx::query(
        "INSERT INTO rate_counters (key, window_start, count) VALUES ($1, 0, 0)
         ON CONFLICT (key) DO UPDATE SET count = rate_counters.count",
    )
    .bind(key)
    .execute(tx)
    .await
    .unwrap();
}

/// The counter key of `email` from this test's address, for `kind`.
fn source_key(app: &TestApp, kind: &str, email: &str) -> String {
    let ident = Identifier::Email(Email::parse(email).unwrap());
    format!(
        "{kind}:{}|{}",
        sesame::otp::ident_key(&app.state, &ident),
        sesame::net::ip_bucket(Some("127.0.0.1"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run it")]
async fn a_send_held_up_inside_its_group_does_not_hold_up_other_sends_from_the_same_client_and_address() {
    let db = Db::postgres().await;
    let app = Arc::new(spawn_app(&db).await);
    // Send A's group will stop at its resend-gap counter, which another
    // session holds: an uncommitted insert of the same key. That comes after
    // A has counted the address's and the client's sends.
    let resend = source_key(&app, "resend", "held@example.com");
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut holder = other.begin().await.unwrap();
    hold(&mut holder, &resend).await;

    let held = {
        let app = app.clone();
        tokio::spawn(async move { app.getcode(APP, Who::Email("held@example.com")).await.status() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "send A waits for the held counter");

    // B: another identifier, the same client and address.
    let started = Instant::now();
    let b = tokio::time::timeout(
        Duration::from_millis(1000),
        app.getcode(APP, Who::Email("free@example.com")),
    )
    .await
    .expect("send B does not wait for send A's transaction");
    assert_eq!(b.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert!(!held.is_finished(), "A was still held while B was answered");

    holder.rollback().await.unwrap();
    assert_eq!(held.await.unwrap(), 200, "A goes on once the counter is free");
    // A's one call gave up on the held row and was rolled back whole; its
    // counts were then made one by one: each counted once, not twice.
    let ip = format!("ip:{}", sesame::net::ip_bucket(Some("127.0.0.1")));
    for key in ["client:app", ip.as_str()] {
        assert_eq!(count_of(&mut other, key).await, 2, "{key}: A's and B's sends");
    }
}

async fn count_of(conn: &mut sqlx::PgConnection, key: &str) -> i64 {
    sqlx::query_scalar("SELECT count FROM rate_counters WHERE key = $1")
        .bind(key)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// A send's counts inside a group whose transaction has already begun are
/// part of that transaction: they wait for a held row as any statement
/// there does, rather than giving up after the one-call ladder's 50 ms,
/// which would abort the whole group (no caller counts there today; the
/// store keeps it safe all the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run it")]
async fn a_sends_counts_inside_a_begun_group_wait_for_a_held_row_and_keep_the_group() {
    use sesame::store::limits::{SendCount, SendCounted};
    let db = Db::postgres().await;
    let app = spawn_app(&db).await;
    let store = &app.state.store;
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut holder = other.begin().await.unwrap();
    hold(&mut holder, "held:key").await;
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.rollback().await.unwrap();
    };
    let counts = [SendCount {
        key: "held:key".into(),
        window: 60,
        limit: 5,
    }];
    let grouped = store.grouped(async {
        // Begins the group's transaction.
        store.lock_identifier("nobody", 0).await?;
        let counted = store.count_sends(("nobody", "nobody|x"), &counts).await?;
        store.lock_identifier("nobody-else", 0).await?;
        Ok::<_, anyhow::Error>(counted)
    });
    let (counted, ()) = tokio::join!(grouped, release);
    assert_eq!(counted.unwrap(), SendCounted::Within);
    assert_eq!(count_of(&mut other, "held:key").await, 1);
}

/// The same when the send goes past the identifier's ceiling and is let
/// through as a known source: reading that mark must not begin the group's
/// transaction, or the address's and the client's counters after it would
/// be held until the send commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run it")]
async fn a_known_source_past_the_identifier_ceiling_held_up_does_not_hold_up_other_sends() {
    let db = Db::postgres().await;
    let mut settings = test_settings(&db);
    settings.abuse.identifier_max_sends = 1;
    let app = Arc::new(spawn_with(settings).await);
    // Signed in once from here: this address is a known source of it.
    app.verified(APP, Who::Email("known@example.com")).await;

    let resend = source_key(&app, "resend", "known@example.com");
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut holder = other.begin().await.unwrap();
    hold(&mut holder, &resend).await;
    let held = {
        let app = app.clone();
        tokio::spawn(async move { app.getcode(APP, Who::Email("known@example.com")).await.status() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.is_finished(),
        "send A (past the ceiling, known) waits for the held counter"
    );

    let b = tokio::time::timeout(
        Duration::from_millis(1000),
        app.getcode(APP, Who::Email("other@example.com")),
    )
    .await
    .expect("send B does not wait for send A's transaction");
    assert_eq!(b.status(), 200);
    assert!(!held.is_finished(), "A was still held while B was answered");

    holder.rollback().await.unwrap();
    assert_eq!(held.await.unwrap(), 200, "A goes on: a known source past the ceiling");
}

/// A send counts its limits first and writes its code last; a verification
/// takes the code first and lifts the resend gap last. When the send held
/// its counters until it committed, a verification waited for the send, and
/// once the send went on to the code, the two deadlocked (PostgreSQL then
/// ends one of them: a 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run it")]
async fn a_send_and_a_verification_for_one_identifier_do_not_deadlock() {
    let db = Db::postgres().await;
    let app = Arc::new(spawn_app(&db).await);
    let who = Who::Email("both@example.com");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    // The resend gap has passed (its window moved back), so a second send
    // is allowed and counts the gap's row again.
    db.execute("UPDATE rate_counters SET window_start = 0 WHERE key LIKE 'resend:%'")
        .await;

    // The second send stops after its resend-gap counter, at its send count.
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut holder = other.begin().await.unwrap();
    hold(&mut holder, &source_key(&app, "sends", "both@example.com")).await;
    let send = {
        let app = app.clone();
        tokio::spawn(async move { app.getcode(APP, Who::Email("both@example.com")).await.status() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!send.is_finished(), "the send waits at its send count");

    // The verification takes the code, then lifts the resend gap the send
    // counted: it does not wait for the send.
    let verified = tokio::time::timeout(Duration::from_millis(1500), app.verifycode(APP, who, &code))
        .await
        .expect("the verification does not wait for the held send");
    assert_eq!(verified.status(), 200);
    assert!(!send.is_finished(), "the send was still held");

    holder.rollback().await.unwrap();
    assert_eq!(send.await.unwrap(), 200, "the send goes on once its count is free");
}

/// On PostgreSQL a send's counts and its new code are one statement
/// (`Store::count_sends_and_insert`). When a verification holds the older
/// code that statement would kill, it gives up after its 50 ms lock timeout,
/// nothing counted, and the send goes the long way (counts, then the code,
/// which waits for the row): it is answered once the row is free, and it
/// was counted once, not twice (`otp.max_sends` 3: the third send still
/// gets its code, the fourth locks the source).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run it")]
async fn a_send_whose_older_code_is_held_waits_for_it_and_is_counted_once() {
    let db = Db::postgres().await;
    let app = Arc::new(spawn_app(&db).await);
    let email = "held-code@example.com";
    assert_eq!(app.getcode(APP, Who::Email(email)).await.status(), 200);
    let gap_passed = || db.execute("UPDATE rate_counters SET window_start = 0 WHERE key LIKE 'resend:%'");
    gap_passed().await;

    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut holder = other.begin().await.unwrap();
    sqlx::query("SELECT id FROM otp_codes WHERE used_at IS NULL AND dead = 0 FOR UPDATE")
        .fetch_all(&mut *holder)
        .await
        .unwrap();
    let send = {
        let app = app.clone();
        tokio::spawn(async move { app.getcode(APP, Who::Email(email)).await.status() })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!send.is_finished(), "the send waits for the older code");
    holder.rollback().await.unwrap();
    assert_eq!(send.await.unwrap(), 200, "and goes on once it is free");
    let live = db
        .pg_number("SELECT count(*) FROM otp_codes WHERE used_at IS NULL AND dead = 0")
        .await;
    assert_eq!(live, 1, "the older code killed, the new one stored");

    gap_passed().await;
    assert_eq!(
        app.getcode(APP, Who::Email(email)).await.status(),
        200,
        "the third send"
    );
    gap_passed().await;
    let res = app.getcode(APP, Who::Email(email)).await;
    assert_eq!(res.status(), 429, "the fourth locks the source");
    assert_eq!(res.headers()["retry-after"], "3600");
}

/// Sends racing for one identifier from one source (no resend gap) each
/// kill the codes before theirs: however they interleave, one code is live
/// after them. (On PostgreSQL a send that waited for another's counters
/// must still see, and kill, the code that other send stored. A send that
/// waits past 50 ms goes the long way, where this is not guaranteed: see
/// the README.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run it")]
async fn racing_sends_for_one_identifier_leave_one_live_code() {
    let db = Db::postgres().await;
    let mut settings = test_settings(&db);
    settings.otp.resend_after = Duration::ZERO;
    settings.otp.max_sends = 1000;
    let app = spawn_with(settings).await;
    let who = Who::Email("racing-sends@example.com");
    for round in 0..8 {
        let sends = (0..4).map(|_| app.getcode(APP, who));
        let answers = futures_util::future::join_all(sends).await;
        assert!(answers.iter().all(|r| r.status() == 200));
        let live = db
            .pg_number("SELECT count(*) FROM otp_codes WHERE used_at IS NULL AND dead = 0")
            .await;
        assert_eq!(live, 1, "round {round}: one live code");
    }
}
