//! Retention (SPEC §8): rows past their lifetime are purged in bounded
//! batches, by one node at a time, and counted in `/metrics`. Sweeps run at
//! a clock moved forward, instead of aging the rows.

use sesame::retention::{sweep, Swept};
use sesame::store::now;

use crate::helpers::{spawn_app, Db, Who, APP};

crate::db_test!(
    expired_rows_are_purged_and_live_ones_kept,
    one_node_sweeps_at_a_time,
    a_backlog_is_deleted_in_bounded_batches,
    a_table_that_cannot_be_purged_does_not_stop_the_others,
    a_live_lock_and_a_live_revocation_outlast_a_sweep,
);

/// A sweep that took a live lock or revocation would lift a lockout or
/// bring a revoked token back: both stay until they end, then go.
async fn a_live_lock_and_a_live_revocation_outlast_a_sweep(db: Db) {
    let mut settings = crate::helpers::test_settings(&db);
    settings.otp.resend_after = std::time::Duration::ZERO;
    let app = crate::helpers::spawn_with(settings).await;
    let tokens = app.signed_up(APP, Who::Email("revoked@example.com")).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let res = app.post_form("/oauth2/revoke", APP, &[("token", &access)]).await;
    assert_eq!(res.status(), 200);
    let locked = Who::Email("locked@example.com");
    for _ in 0..3 {
        assert_eq!(app.getcode(APP, locked).await.status(), 200);
    }
    assert_eq!(app.getcode(APP, locked).await.status(), 429);
    assert_eq!(
        (count(&app, "otp_locks").await, count(&app, "revocations").await),
        (1, 1)
    );

    let s = sweep(&app.state, "node-a", now()).await.unwrap().unwrap();
    assert_eq!((s.of("otp_locks"), s.of("revocations")), (0, 0), "{s:?}");
    assert_eq!(app.getcode(APP, locked).await.status(), 429, "still locked");
    assert_eq!(app.introspect(&access).await["active"], false, "still revoked");

    // Past the lock (`otp.lockout`, 1 h) and the token's own expiry (15 min): both go.
    let s = sweep(&app.state, "node-a", now() + 2 * 3600).await.unwrap().unwrap();
    assert_eq!((s.of("otp_locks"), s.of("revocations")), (1, 1), "{s:?}");
    assert_eq!(
        (count(&app, "otp_locks").await, count(&app, "revocations").await),
        (0, 0)
    );
}

const DAY: i64 = 86_400;

async fn count(app: &crate::helpers::TestApp, table: &str) -> i64 {
    app.state.store.count_rows(table).await.unwrap()
}

async fn expired_rows_are_purged_and_live_ones_kept(db: Db) {
    let app = spawn_app(&db).await;
    let tokens = app.signed_up(APP, Who::Email("kept@example.com")).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    for table in [
        "otp_codes",
        "verified_identifiers",
        "rate_counters",
        "token_families",
        "refresh_tokens",
    ] {
        assert!(count(&app, table).await > 0, "{table} has rows");
    }

    // Now: everything is live, nothing goes.
    let s = sweep(&app.state, "node-a", now()).await.unwrap().unwrap();
    assert!(s.deleted.iter().all(|(_, n)| *n == 0), "{s:?}");
    assert_eq!(
        app.refresh(APP, &refresh).await.status(),
        200,
        "a live family still refreshes"
    );

    // A day on: the code and the secret_identifier have expired; the
    // family (30 d) and the counters (read over up to 30 d) have not.
    let s = sweep(&app.state, "node-a", now() + DAY).await.unwrap().unwrap();
    assert!(s.of("otp_codes") >= 1 && s.of("verified_identifiers") >= 1, "{s:?}");
    assert_eq!((s.of("token_families"), s.of("rate_counters")), (0, 0), "{s:?}");
    assert_eq!(count(&app, "otp_codes").await, 0);
    assert_eq!(count(&app, "verified_identifiers").await, 0);
    assert!(count(&app, "token_families").await > 0);

    // 31 days on: the family and its refresh tokens, and the counters.
    let events = count(&app, "audit_events").await;
    let s: Swept = sweep(&app.state, "node-a", now() + 31 * DAY).await.unwrap().unwrap();
    assert!(s.of("token_families") >= 1 && s.of("rate_counters") >= 1, "{s:?}");
    assert_eq!(count(&app, "token_families").await, 0);
    assert_eq!(
        count(&app, "refresh_tokens").await,
        0,
        "refresh tokens go with their family"
    );
    assert_eq!(count(&app, "rate_counters").await, 0);
    assert_eq!(
        count(&app, "audit_events").await,
        events,
        "the trail is kept for audit.retention (400 d)"
    );
    assert_eq!(count(&app, "users").await, 1, "accounts are never purged");

    // Past audit.retention: the trail too.
    let s = sweep(&app.state, "node-a", now() + 401 * DAY).await.unwrap().unwrap();
    assert_eq!(s.of("audit_events"), events as u64);
    assert_eq!(count(&app, "audit_events").await, 0);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    let line = |m: &str| metrics.lines().find(|l| l.starts_with(m)).unwrap_or("").to_string();
    assert_eq!(
        line("sesame_retention_deleted_total{table=\"audit_events\"}"),
        format!("sesame_retention_deleted_total{{table=\"audit_events\"}} {events}")
    );
    assert_eq!(
        line("sesame_retention_sweeps_total{outcome=\"done\"}"),
        "sesame_retention_sweeps_total{outcome=\"done\"} 4"
    );
}

async fn one_node_sweeps_at_a_time(db: Db) {
    let app = spawn_app(&db).await;
    let store = &app.state.store;
    // Two nodes ask at once: exactly one sweeps.
    let (a, b) = tokio::join!(sweep(&app.state, "node-a", now()), sweep(&app.state, "node-b", now()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_some() != b.is_some(), "one sweep, not two: {a:?} {b:?}");
    let (holder, other) = if a.is_some() {
        ("node-a", "node-b")
    } else {
        ("node-b", "node-a")
    };
    // The lease holds until it runs out (or is given up): the holder renews it, the other waits.
    assert!(store.take_lease("retention", holder, 300).await.unwrap());
    assert!(!store.take_lease("retention", other, 300).await.unwrap());
    assert!(sweep(&app.state, other, now()).await.unwrap().is_none());
    store.drop_lease("retention", holder).await.unwrap();
    assert!(
        sweep(&app.state, other, now()).await.unwrap().is_some(),
        "a lease given up is free"
    );
    // A lease that ran out (its node died) is taken over.
    assert!(store.take_lease("retention", holder, -1).await.is_ok_and(|got| !got));
    store.drop_lease("retention", other).await.unwrap();
    assert!(
        store.take_lease("retention", holder, -1).await.unwrap(),
        "taken, already expired"
    );
    assert!(
        store.take_lease("retention", other, 300).await.unwrap(),
        "an expired lease is taken over"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("sesame_retention_sweeps_total{outcome=\"skipped\"} 2"),
        "{metrics}"
    );
}

async fn a_backlog_is_deleted_in_bounded_batches(db: Db) {
    let app = spawn_app(&db).await;
    // 2,500 counters whose window ended long ago, and one still counting.
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)
         INSERT INTO rate_counters (key, window_start, count) SELECT 'old:' || i, 1000, 1 FROM n;
         INSERT INTO rate_counters (key, window_start, count) VALUES ('live', 4000000000, 1);",
    )
    .await;
    let s = sweep(&app.state, "node-a", now()).await.unwrap().unwrap();
    assert_eq!(s.of("rate_counters"), 2500, "three batches of at most 1,000");
    assert_eq!(count(&app, "rate_counters").await, 1, "the live counter stays");
}

/// A table whose purge fails (here it is gone; in life a statement past its
/// timeout on a huge backlog, or a lock) is reported, and the tables after
/// it are still purged, rather than never again while it keeps failing.
async fn a_table_that_cannot_be_purged_does_not_stop_the_others(db: Db) {
    let app = spawn_app(&db).await;
    app.signed_up(APP, Who::Email("gone@example.com")).await;
    assert!(count(&app, "token_families").await > 0);
    db.execute("ALTER TABLE otp_locks RENAME TO otp_locks_away").await;
    let failed = sweep(&app.state, "node-a", now() + 31 * DAY).await.unwrap_err();
    assert!(format!("{failed:#}").contains("otp_locks"), "{failed:#}");
    assert_eq!(count(&app, "otp_codes").await, 0, "the tables before it");
    assert_eq!(count(&app, "token_families").await, 0, "and the ones after it");

    db.execute("ALTER TABLE otp_locks_away RENAME TO otp_locks").await;
    assert!(sweep(&app.state, "node-a", now() + 31 * DAY).await.unwrap().is_some());
}
