//! Every limit of SPEC §3 crossed: expiry, attempts, sends and lockout with
//! Retry-After, resend gap, client and IP budgets, single use under races.

use std::time::Duration;

use serde_json::Value;
use sesame::config::Settings;

use crate::db_test;
use crate::helpers::{assert_error, spawn_with, test_settings, Db, TestApp, Who, APP, APP2};

db_test!(
    an_expired_code_is_invalid,
    five_wrong_tries_kill_the_code_and_lock_the_identifier,
    a_code_takes_max_attempts_tries_and_no_more,
    the_fourth_send_in_a_window_locks_the_identifier_with_retry_after,
    sends_older_than_the_send_window_do_not_count,
    a_second_send_within_the_resend_gap_is_429,
    a_right_code_lifts_its_sources_resend_gap_and_a_wrong_one_does_not,
    a_send_refused_by_the_resend_gap_does_not_count_toward_max_sends,
    the_client_budget_is_enforced,
    the_ip_budget_is_enforced,
    twenty_concurrent_verifications_of_one_code_succeed_exactly_once,
    a_used_code_and_a_code_for_another_client_are_refused,
    only_the_latest_code_is_live,
    a_refused_send_leaves_the_live_code_working,
    a_lock_ends_after_otp_lockout_and_the_counts_start_over,
    wrong_codes_at_the_token_endpoint_count_and_kill_the_code,
    twenty_concurrent_grants_with_one_code_issue_tokens_once,
    racing_resends_at_the_last_allowed_send_do_not_lock_the_source,
    racing_sends_past_the_client_budget_let_exactly_the_budget_through,
);

async fn app_with(db: &Db, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut s = test_settings(db);
    s.otp.resend_after = Duration::ZERO;
    tweak(&mut s);
    spawn_with(s).await
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

async fn an_expired_code_is_invalid(db: Db) {
    let app = app_with(&db, |s| s.otp.ttl = Duration::from_secs(1)).await;
    let who = Who::Email("late@example.com");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_error(app.verifycode(APP, who, &code).await, 400, "invalid_code").await;
}

async fn five_wrong_tries_kill_the_code_and_lock_the_identifier(db: Db) {
    let app = app_with(&db, |_| {}).await;
    let who = Who::Phone("+14155550111");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_error(app.verifycode(APP, who, wrong).await, 400, "invalid_code").await;
    }
    // The right code no longer works: dead, and the identifier is locked.
    let res = app.verifycode(APP, who, &code).await;
    assert_eq!(res.status(), 429);
    let secs = retry_after(&res);
    assert!(secs > 3500 && secs <= 3600, "{secs}");
    assert_error(res, 429, "too_many_requests").await;
    let res = app.getcode(APP, who).await;
    assert_error(res, 429, "too_many_requests").await;
    let events: Vec<String> = app.audit_event_names().await;
    assert!(events.contains(&"locked_out".to_string()), "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == "code_failed").count(), 5);
}

/// `otp.max_attempts` as set (3 here): two wrong tries leave the right code
/// working; a third kills it.
async fn a_code_takes_max_attempts_tries_and_no_more(db: Db) {
    let app = app_with(&db, |s| s.otp.max_attempts = 3).await;
    for (who, wrong_tries, works) in [
        (Who::Email("under@example.com"), 2, true),
        (Who::Email("at@example.com"), 3, false),
    ] {
        assert_eq!(app.getcode(APP, who).await.status(), 200);
        let code = app.outbox_code_to(who.field().1).await;
        let wrong = if code == "000000" { "111111" } else { "000000" };
        for _ in 0..wrong_tries {
            assert_error(app.verifycode(APP, who, wrong).await, 400, "invalid_code").await;
        }
        let res = app.verifycode(APP, who, &code).await;
        if works {
            assert_eq!(res.status(), 200, "{wrong_tries} wrong tries of 3");
        } else {
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            assert!(
                (status == 400 && body["error"] == "invalid_code")
                    || (status == 429 && body["error"] == "too_many_requests"),
                "{status} {body}"
            );
        }
    }
}

/// `otp.send_window` as set (2 s here), apart from `otp.lockout` (1 h):
/// two sends, the window passes, three more are all sent. Counted over the
/// lockout's hour instead, the fourth would lock.
async fn sends_older_than_the_send_window_do_not_count(db: Db) {
    let app = app_with(&db, |s| s.otp.send_window = Duration::from_secs(2)).await;
    let who = Who::Email("windowed@example.com");
    for _ in 0..2 {
        assert_eq!(app.getcode(APP, who).await.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for i in 0..3 {
        assert_eq!(app.getcode(APP, who).await.status(), 200, "send {i} of the new window");
    }
    let res = app.getcode(APP, who).await;
    assert_eq!(res.status(), 429, "the fourth in a window locks, as ever");
    let secs = retry_after(&res);
    assert!(secs > 3500 && secs <= 3600, "locked for otp.lockout: {secs}");
}

async fn the_fourth_send_in_a_window_locks_the_identifier_with_retry_after(db: Db) {
    let app = app_with(&db, |_| {}).await;
    let who = Who::Email("chatty@example.com");
    for _ in 0..3 {
        assert_eq!(app.getcode(APP, who).await.status(), 200);
    }
    let res = app.getcode(APP, who).await;
    assert_eq!(res.status(), 429);
    assert_eq!(retry_after(&res), 3600, "locked for otp.lockout");
    assert_eq!(app.refusals("locked").await, 1, "counted in /metrics by its reason");
    // Locked: verification answers 429 too, and other identifiers are unaffected.
    let code = app.outbox_code().await;
    assert_eq!(app.verifycode(APP, who, &code).await.status(), 429);
    assert_eq!(app.getcode(APP, Who::Email("quiet@example.com")).await.status(), 200);
}

/// Locks and windows end (SPEC §3: locked for `otp.lockout`; counts in a
/// fixed `otp.send_window`): with both two seconds, the fourth send locks
/// the identifier for two seconds; after them it gets a code again, and its
/// counts start over (three more sends, then the lock again).
async fn a_lock_ends_after_otp_lockout_and_the_counts_start_over(db: Db) {
    let app = app_with(&db, |s| {
        s.otp.lockout = Duration::from_secs(2);
        s.otp.send_window = Duration::from_secs(2);
    })
    .await;
    let who = Who::Email("patient-again@example.com");
    for _ in 0..3 {
        assert_eq!(app.getcode(APP, who).await.status(), 200);
    }
    let res = app.getcode(APP, who).await;
    assert_eq!(res.status(), 429);
    assert!(retry_after(&res) <= 2, "{}", retry_after(&res));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for n in 0..3 {
        assert_eq!(app.getcode(APP, who).await.status(), 200, "send {n} after the lock");
    }
    let code = app.outbox_code().await;
    assert_eq!(
        app.getcode(APP, who).await.status(),
        429,
        "counted afresh, locked again"
    );
    assert_eq!(app.verifycode(APP, who, &code).await.status(), 429, "while it holds");
}

async fn a_second_send_within_the_resend_gap_is_429(db: Db) {
    let app = app_with(&db, |s| s.otp.resend_after = Duration::from_secs(30)).await;
    let who = Who::Phone("+14155550112");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let res = app.getcode(APP, Who::Phone("(415) 555-0112")).await;
    assert_eq!(
        res.status(),
        429,
        "the same number in another format is the same identifier"
    );
    let secs = retry_after(&res);
    assert!((1..=30).contains(&secs), "{secs}");
    let body = assert_error(res, 429, "too_many_requests").await;
    assert!(body["error_description"].as_str().unwrap().contains("wait"));
    assert_eq!(app.refusals("resend_gap").await, 1, "counted in /metrics by its reason");
}

/// A used code ends the wait for the next one from where it was used (a
/// step-up sign-in need not wait); a wrong try leaves the gap as it is.
/// (That the marks go only with the code's use:
/// `store::otp::tests::a_right_codes_source_is_marked_only_if_the_code_is_used`.)
async fn a_right_code_lifts_its_sources_resend_gap_and_a_wrong_one_does_not(db: Db) {
    let app = app_with(&db, |s| s.otp.resend_after = Duration::from_secs(30)).await;
    let who = Who::Email("step-up@example.com");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(app.verifycode(APP, who, wrong).await.status(), 400);
    assert_eq!(app.getcode(APP, who).await.status(), 429, "a wrong try lifts nothing");
    assert_eq!(app.verifycode(APP, who, &code).await.status(), 200);
    assert_eq!(
        app.getcode(APP, who).await.status(),
        200,
        "the gap ended with the used code"
    );
    assert_eq!(
        app.getcode(APP, who).await.status(),
        429,
        "and the new code starts its own"
    );
}

/// Resends racing when the gap opens, the last allowed send among them: one
/// gets its code, the others wait for the gap, and none may count toward
/// `otp.max_sends` (else the one that passes could see one too many and
/// lock the user's own source out).
async fn racing_resends_at_the_last_allowed_send_do_not_lock_the_source(db: Db) {
    let app = app_with(&db, |s| {
        s.otp.max_sends = 3;
        // Windows count whole seconds: with a 2 s gap a burst shorter than
        // a second cannot see it open twice.
        s.otp.resend_after = Duration::from_secs(2);
    })
    .await;
    let who = Who::Email("racing@example.com");
    for _ in 0..2 {
        assert_eq!(app.getcode(APP, who).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(2100)).await;
    }
    let burst = (0..6).map(|_| app.getcode(APP, who));
    let statuses: Vec<u16> = futures_util::future::join_all(burst)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    let events = app.audit_event_names().await;
    assert!(!events.iter().any(|e| e == "locked_out"), "{events:?}");
}

async fn the_client_budget_is_enforced(db: Db) {
    let app = app_with(&db, |s| s.otp.client_max_sends = 2).await;
    assert_eq!(app.getcode(APP, Who::Email("c1@example.com")).await.status(), 200);
    assert_eq!(app.getcode(APP, Who::Email("c2@example.com")).await.status(), 200);
    let res = app.getcode(APP, Who::Email("c3@example.com")).await;
    assert!(retry_after(&res) > 0);
    assert_error(res, 429, "too_many_requests").await;
    assert_eq!(
        app.getcode(APP2, Who::Email("c3@example.com")).await.status(),
        200,
        "another client has its own budget"
    );
    assert_eq!(
        app.refusals("client_limit").await,
        1,
        "counted in /metrics by its reason"
    );
}

async fn the_ip_budget_is_enforced(db: Db) {
    let app = app_with(&db, |s| s.otp.ip_max_sends = 3).await;
    for i in 0..3 {
        let client = if i % 2 == 0 { APP } else { APP2 };
        assert_eq!(
            app.getcode(client, Who::Email(&format!("ip{i}@example.com")))
                .await
                .status(),
            200
        );
    }
    let res = app.getcode(APP2, Who::Email("ip9@example.com")).await;
    // SPEC §10: over any limit, a 429 with Retry-After (here: what is left of `otp.send_window`, 1 h).
    let secs = retry_after(&res);
    assert!(secs > 3500 && secs <= 3600, "{secs}");
    assert_error(res, 429, "too_many_requests").await;
}

async fn twenty_concurrent_verifications_of_one_code_succeed_exactly_once(db: Db) {
    let app = app_with(&db, |s| s.otp.max_attempts = 50).await;
    let who = Who::Email("race@example.com");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    let attempts = (0..20).map(|_| app.verifycode(APP, who, &code));
    let results = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
}

/// The `otp` grant with a code (`grant_type=otp&code=…`) counts its tries
/// like `/otp/verifycode/`, though each wrong one fails the grant's group:
/// after `otp.max_attempts` (5) wrong codes the right one is refused too,
/// with the identifier locked.
async fn wrong_codes_at_the_token_endpoint_count_and_kill_the_code(db: Db) {
    let app = app_with(&db, |_| {}).await;
    let email = "grant-tries@example.com";
    app.account_for(email).await;
    let who = Who::Email(email);
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let grant = |code: String| {
        let app = &app;
        async move {
            app.post_form(
                "/oauth2/token",
                APP,
                &[("grant_type", "otp"), who.field(), ("code", &code)],
            )
            .await
        }
    };
    for _ in 0..5 {
        assert_error(grant(wrong.to_string()).await, 400, "invalid_grant").await;
    }
    // Dead, and the identifier locked, as at /otp/verifycode/.
    let res = grant(code).await;
    let secs = retry_after(&res);
    assert!(secs > 3500 && secs <= 3600, "{secs}");
    assert_error(res, 429, "too_many_requests").await;
    let events = app.audit_event_names().await;
    assert_eq!(events.iter().filter(|e| *e == "code_failed").count(), 5, "{events:?}");
    assert!(events.contains(&"locked_out".to_string()), "{events:?}");
    assert!(!events.contains(&"token_issued".to_string()), "{events:?}");
}

/// Twenty token requests racing with one right code: one gets tokens.
async fn twenty_concurrent_grants_with_one_code_issue_tokens_once(db: Db) {
    let app = app_with(&db, |s| s.otp.max_attempts = 50).await;
    let email = "grant-race@example.com";
    app.account_for(email).await;
    let who = Who::Email(email);
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    let form = [("grant_type", "otp"), who.field(), ("code", &code)];
    let grants = (0..20).map(|_| app.post_form("/oauth2/token", APP, &form));
    let results = futures_util::future::join_all(grants).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
}

async fn a_used_code_and_a_code_for_another_client_are_refused(db: Db) {
    let app = app_with(&db, |_| {}).await;
    let who = Who::Email("bound@example.com");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    assert_error(app.verifycode(APP2, who, &code).await, 400, "invalid_code").await;
    assert_eq!(app.verifycode(APP, who, &code).await.status(), 200);
    assert_error(app.verifycode(APP, who, &code).await, 400, "invalid_code").await;
    for junk in ["", "12345", "1234567", "abcdef"] {
        let res = app.verifycode(APP, who, junk).await;
        assert!(res.status() == 400, "{junk}");
    }
}

async fn only_the_latest_code_is_live(db: Db) {
    let app = app_with(&db, |_| {}).await;
    let who = Who::Email("twice@example.com");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let first = app.outbox_code().await;
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let second = app.outbox_code().await;
    if first != second {
        assert_error(app.verifycode(APP, who, &first).await, 400, "invalid_code").await;
    }
    let res = app.verifycode(APP, who, &second).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["account_exists"], false);
}

/// A refused send stores no code and kills none: the code sent before it
/// still works (on PostgreSQL the counts and the code are one statement,
/// `Store::count_sends_and_insert`).
async fn a_refused_send_leaves_the_live_code_working(db: Db) {
    let app = app_with(&db, |s| s.otp.resend_after = Duration::from_secs(60)).await;
    let who = Who::Email("refused-resend@example.com");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    assert_eq!(app.getcode(APP, who).await.status(), 429, "inside the resend gap");
    assert_eq!(app.verifycode(APP, who, &code).await.status(), 200);
}

async fn a_send_refused_by_the_resend_gap_does_not_count_toward_max_sends(db: Db) {
    // Windows are whole seconds, so a 2 s gap refuses an immediate resend whatever the clock shows.
    let app = app_with(&db, |s| s.otp.resend_after = Duration::from_secs(2)).await;
    let who = Who::Email("patient@example.com");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    assert_eq!(app.getcode(APP, who).await.status(), 429, "inside the resend gap");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            app.getcode(APP, who).await.status(),
            200,
            "the refused request did not use up a send"
        );
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = app.getcode(APP, who).await;
    assert_eq!(retry_after(&res), 3600, "the fourth real send locks the identifier");
}

/// A send's counts go in one call (on PostgreSQL, one server-side function
/// in one transaction): of twenty sends racing for a client budget of five,
/// from twenty identifiers, exactly five get a code, and the fifteen refused
/// leave nothing counted after the client's count (their own `otp.max_sends`
/// is untouched: each identifier can still be sent its three codes).
async fn racing_sends_past_the_client_budget_let_exactly_the_budget_through(db: Db) {
    let app = app_with(&db, |s| s.otp.client_max_sends = 5).await;
    let emails: Vec<String> = (0..20).map(|i| format!("race{i}@example.com")).collect();
    let burst = emails.iter().map(|e| app.getcode(APP, Who::Email(e)));
    let statuses: Vec<u16> = futures_util::future::join_all(burst)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15, "{statuses:?}");
    // A refused identifier, through another client: its three sends are all there.
    let refused = &emails[statuses.iter().position(|s| *s == 429).unwrap()];
    for _ in 0..3 {
        assert_eq!(app.getcode(APP2, Who::Email(refused)).await.status(), 200);
    }
}
