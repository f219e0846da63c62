//! The code policy's limits, and bad input, as the sign-in and account pages
//! meet them: the same limits as the OTP API, shown on the page.

use crate::browser::{authorize_path, exchange, sign_up_through_authorize, Browser, CB};
use crate::db_test;
use crate::helpers::{spawn_app, Db, APP};

async fn wrong_codes_on_the_page_lock_the_identifier(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    b.get("/login").await;
    b.post("/login", &[("identifier", "guess@example.com")]).await;
    b.get("/login/verify").await;
    let right = app.outbox_code().await;
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let max = app.state.settings.otp.max_attempts;
    for _ in 0..max {
        let page = b.post("/login/verify", &[("code", wrong)]).await;
        assert_eq!(page.status, 422);
        assert!(page.body.contains("That code is wrong"), "a wrong code is said inline");
    }
    // Past max_attempts even the right code is refused, and the lock is shown.
    let locked = b.post("/login/verify", &[("code", &right)]).await;
    assert_eq!(locked.status, 422);
    assert!(locked.body.contains("Too many wrong codes"), "the lockout is shown");
    assert!(b.get("/account").await.redirects_to("/login"), "not signed in");
}

async fn a_second_code_within_the_resend_gap_is_refused_on_the_page(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    b.get("/login").await;
    assert_eq!(b.post("/login", &[("identifier", "gap@example.com")]).await.status, 303);
    b.get("/login/verify").await;
    let resend = b.post("/login/resend", &[]).await;
    assert!(resend.redirects_to("/login/verify"));
    let page = b.get("/login/verify").await;
    assert!(
        page.body.contains("Too many codes were requested"),
        "the gap is shown as a flash"
    );
    let outbox: serde_json::Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    assert_eq!(outbox.as_array().unwrap().len(), 1, "no second code went out");
}

async fn bad_input_on_the_pages_is_a_clear_4xx(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    b.get("/login").await;
    let empty = b.post("/login", &[("identifier", "  ")]).await;
    assert_eq!(empty.status, 422);
    let nonsense = b.post("/login", &[("identifier", "not-a-phone")]).await;
    assert_eq!(nonsense.status, 422);
    assert!(nonsense.body.contains("aria-invalid=\"true\""));

    // A body over server.max_body_bytes: 413, as on the APIs.
    let big = "x".repeat(70 * 1024);
    assert_eq!(b.post("/login", &[("identifier", &big)]).await.status, 413);

    // state and nonce have length limits, reported to the client.
    let long_state = "s".repeat(2049);
    let page = b
        .get(&authorize_path(
            APP.0,
            CB,
            &[("scope", "openid"), ("state", &long_state)],
        ))
        .await;
    assert_eq!(page.location_param("error").as_deref(), Some("invalid_request"));

    // Names over 100 characters are refused on the signup page.
    b.sign_in_with_code("long@example.com").await;
    b.get("/signup").await;
    let long = "n".repeat(101);
    let refused = b.post("/signup", &[("first_name", &long)]).await;
    assert_eq!(refused.status, 422);
    assert!(
        app.state.store.find_user("long@example.com").await.unwrap().is_none(),
        "nothing half-made"
    );
    assert!(b
        .post("/signup", &[("first_name", "Ada")])
        .await
        .redirects_to("/account"));
}

async fn an_expired_magic_link_is_refused(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    b.get("/login").await;
    b.post("/login", &[("identifier", "late@example.com")]).await;
    let outbox: serde_json::Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    let link = outbox[0]["magic_link"].as_str().unwrap().to_string();
    let token = link.split("token=").nth(1).unwrap().to_string();
    // Past otp.ttl (the clock is moved in the database).
    db.execute("UPDATE otp_codes SET expires_at = created_at - 1").await;
    let mut other = Browser::new(&app);
    other.get(link.trim_start_matches(&app.address)).await;
    let used = other.post("/login/magic", &[("token", &token)]).await;
    assert_eq!(used.status, 400);
    assert!(used.body.contains("expired or was already used"));
}

async fn revoking_an_app_on_the_account_page_ends_its_tokens_and_consent(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let (callback, verifier) = sign_up_through_authorize(&mut b, "revoke@example.com").await;
    let code = callback.location_param("code").unwrap();
    let tokens: serde_json::Value = exchange(&app, &code, &verifier).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    b.get("/account").await;
    assert_eq!(b.post("/account/apps/revoke", &[]).await.status, 400, "which app?");
    assert_eq!(
        app.introspect(access).await["active"],
        true,
        "a bad form revokes nothing"
    );
    let done = b.post("/account/apps/revoke", &[("client_id", APP.0)]).await;
    assert!(done.redirects_to("/account"));
    assert_eq!(app.introspect(access).await["active"], false);
    assert_eq!(
        app.refresh(APP, tokens["refresh_token"].as_str().unwrap())
            .await
            .status(),
        400
    );
    // The next request asks for consent again.
    let again = b
        .get(&authorize_path(APP.0, CB, &[("scope", "openid email"), ("state", "s")]))
        .await;
    assert!(again.redirects_to("/consent"), "{:?}", again.location);
}

db_test!(
    wrong_codes_on_the_page_lock_the_identifier,
    a_second_code_within_the_resend_gap_is_refused_on_the_page,
    bad_input_on_the_pages_is_a_clear_4xx,
    an_expired_magic_link_is_refused,
    revoking_an_app_on_the_account_page_ends_its_tokens_and_consent,
    an_expired_code_is_refused_on_the_page,
    the_fourth_code_in_a_window_is_refused_on_the_page_and_not_sent,
);

/// A code past `otp.ttl` (the clock moved in the database) is refused on
/// the sign-in page, as at verifycode; the browser is not signed in.
async fn an_expired_code_is_refused_on_the_page(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    b.get("/login").await;
    b.post("/login", &[("identifier", "stale@example.com")]).await;
    b.get("/login/verify").await;
    let code = app.outbox_code().await;
    db.execute("UPDATE otp_codes SET expires_at = created_at - 1").await;
    let page = b.post("/login/verify", &[("code", &code)]).await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("That code is wrong or has expired"), "{}", page.body);
    assert!(b.get("/account").await.redirects_to("/login"), "not signed in");
}

/// `otp.max_sends` (3 a window) on the pages: the fourth code asked for one
/// identifier, by `/login` or "send again", is refused with the lock shown,
/// and nothing more is sent.
async fn the_fourth_code_in_a_window_is_refused_on_the_page_and_not_sent(db: Db) {
    let mut settings = crate::helpers::test_settings(&db);
    settings.otp.resend_after = std::time::Duration::ZERO;
    let app = crate::helpers::spawn_with(settings).await;
    let sent = || async {
        let outbox: serde_json::Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
        outbox.as_array().unwrap().len()
    };
    let mut b = Browser::new(&app);
    b.get("/login").await;
    assert!(b
        .post("/login", &[("identifier", "often@example.com")])
        .await
        .redirects_to("/login/verify"));
    b.get("/login/verify").await;
    for _ in 0..2 {
        assert!(b.post("/login/resend", &[]).await.redirects_to("/login/verify"));
        assert!(b.get("/login/verify").await.body.contains("We sent a new code"));
    }
    assert_eq!(sent().await, 3);
    assert!(b.post("/login/resend", &[]).await.redirects_to("/login/verify"));
    let page = b.get("/login/verify").await;
    assert!(page.body.contains("Too many codes were requested"), "{}", page.body);
    let mut other = Browser::new(&app);
    other.get("/login").await;
    let page = other.post("/login", &[("identifier", "often@example.com")]).await;
    assert_eq!(page.status, 422, "{:?}", page.location);
    assert!(page.body.contains("Too many codes were requested"), "{}", page.body);
    assert_eq!(sent().await, 3, "nothing sent past the limit");
}
