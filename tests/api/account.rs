//! Account self-service on `/account`: changing a phone by code (the old one
//! is told), and deleting the account (its tokens and sessions die with it).

use serde_json::Value;

use crate::browser::{exchange, sign_up_through_authorize, Browser};
use crate::db_test;
use crate::helpers::{spawn_with, test_settings, Db, Who, APP};
use crate::peers::Receiver;

/// An app whose SMS go to a webhook receiver the test reads.
async fn app_with_sms(db: &Db) -> (crate::helpers::TestApp, Receiver) {
    let sms = Receiver::start().await;
    let mut settings = test_settings(db);
    settings.sms.provider = sesame::config::SmsProvider::Webhook;
    settings.sms.url = Some(format!("{}/sms", sms.url));
    (spawn_with(settings).await, sms)
}

async fn changing_a_phone_number_takes_a_code_and_tells_the_old_one(db: Db) {
    let (app, sms) = app_with_sms(&db).await;
    let mut b = Browser::new(&app);
    b.sign_up_by_sms("+1 415 555 0111", &sms, &[]).await;

    // Asking for the change sends a code to the new number; nothing changes yet.
    let asked = b
        .post("/account/identifier", &[("identifier", "+1 415 555 0122")])
        .await;
    assert!(asked.redirects_to("/account/identifier"));
    let to_new = sms.last().await.json();
    assert_eq!(to_new["to"], "+14155550122");
    let page = b.get("/account/identifier").await;
    assert!(page.body.contains("+14155550122"));
    assert!(
        b.get("/account").await.body.contains("+14155550111"),
        "unchanged until the code comes back"
    );

    // A wrong code changes nothing.
    let wrong = if to_new["code"] == "000000" { "111111" } else { "000000" };
    assert_eq!(
        b.post("/account/identifier/verify", &[("code", wrong)]).await.status,
        422
    );

    let done = b
        .post(
            "/account/identifier/verify",
            &[("code", to_new["code"].as_str().unwrap())],
        )
        .await;
    assert!(done.redirects_to("/account"));
    let account = b.get("/account").await;
    assert!(account.body.contains("+14155550122") && !account.body.contains("+14155550111"));

    // The old number was told, without a code.
    let notice = sms.last().await.json();
    assert_eq!(notice["to"], "+14155550111");
    assert_eq!(notice["kind"], "notice");
    assert_eq!(notice["code"], Value::Null);
    assert!(notice["message"].as_str().unwrap().contains("+14155550122"));

    // The new number signs in to the same account; the old one finds none.
    let user = app.state.store.find_user("+14155550122").await.unwrap().unwrap();
    assert!(user.phone_verified);
    assert!(app.state.store.find_user("+14155550111").await.unwrap().is_none());
}

/// A change's code has the tries every code has (SPEC §3 `otp.max_attempts`,
/// 5): after five wrong codes on `/account/identifier/verify` the right one
/// changes nothing.
async fn a_change_code_is_dead_after_max_attempts_wrong_tries(db: Db) {
    let app = spawn_with(test_settings(&db)).await;
    let mut b = Browser::new(&app);
    sign_up_through_authorize(&mut b, "mover@example.com").await;
    b.get("/account").await;
    let asked = b
        .post("/account/identifier", &[("identifier", "moved@example.com")])
        .await;
    assert!(asked.redirects_to("/account/identifier"), "{}", asked.status);
    b.get("/account/identifier").await;
    let code = app.outbox_code_to("moved@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let page = b.post("/account/identifier/verify", &[("code", wrong)]).await;
        assert_eq!(page.status, 422);
    }
    let page = b.post("/account/identifier/verify", &[("code", &code)]).await;
    assert!(!page.redirects_to("/account"), "{} {:?}", page.status, page.location);
    assert!(app.state.store.find_user("moved@example.com").await.unwrap().is_none());
    assert!(app.state.store.find_user("mover@example.com").await.unwrap().is_some());
}

async fn deleting_the_account_revokes_its_tokens_and_sessions(db: Db) {
    let app = spawn_with(test_settings(&db)).await;
    let mut b = Browser::new(&app);
    let (callback, verifier) = sign_up_through_authorize(&mut b, "leaving@example.com").await;
    let code = callback.location_param("code").unwrap();
    let tokens: Value = exchange(&app, &code, &verifier).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);

    let mut other_browser = Browser::new(&app);
    other_browser.cookies = b.cookies.clone();
    let confirm = b.get("/account/delete").await;
    assert_eq!(confirm.status, 200, "a confirmation step first");
    let gone = b.post("/account/delete", &[]).await;
    assert!(gone.redirects_to("/login?deleted=1"));

    assert_eq!(
        app.introspect(access).await["active"],
        false,
        "its access token is revoked"
    );
    let refresh = app.refresh(APP, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refresh.status(), 400);
    assert!(
        other_browser.get("/account").await.redirects_to("/login"),
        "the session is ended"
    );
    assert!(app
        .state
        .store
        .find_user("leaving@example.com")
        .await
        .unwrap()
        .is_none());
}

async fn a_password_set_on_the_account_page_signs_in_on_the_login_page(db: Db) {
    let app = spawn_with(test_settings(&db)).await;
    let mut b = Browser::new(&app);
    b.sign_in_with_code("pw@example.com").await;
    b.get("/signup").await;
    b.post("/signup", &[]).await;
    b.get("/account").await;
    let short = b
        .post("/account/password", &[("username", "pwuser"), ("password", "short")])
        .await;
    assert!(short.redirects_to("/account"));
    assert!(b.get("/account").await.body.contains("8 to 128"), "the rule is shown");
    let set = b
        .post(
            "/account/password",
            &[("username", "pwuser"), ("password", "correct horse battery")],
        )
        .await;
    assert!(set.redirects_to("/account"));

    let mut later = Browser::new(&app);
    later.get("/login?method=password").await;
    let wrong = later
        .post(
            "/login/password",
            &[("login", "PWUSER"), ("password", "nope nope nope")],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("Wrong username or password"));
    let ok = later
        .post(
            "/login/password",
            &[("login", "PWUSER"), ("password", "correct horse battery")],
        )
        .await;
    assert!(ok.redirects_to("/account"), "{:?}", ok.location);
    assert_eq!(later.get("/account").await.status, 200);

    // SPEC §9: replacing it needs the current one (this sign-in was no code).
    // Without it, or with a wrong one, nothing changes; with it, it is replaced.
    let new = ("password", "battery staple horse");
    for (current, says) in [
        (None, "Enter your current password"),
        (Some("nope nope nope"), "Wrong username or password"),
    ] {
        let mut form = vec![new];
        form.extend(current.map(|c| ("current_password", c)));
        let refused = later.post("/account/password", &form).await;
        assert_eq!(refused.location.as_deref(), Some("/account"));
        let page = later.get("/account").await;
        assert!(
            page.body.contains(says) && !page.body.contains("Saved."),
            "{current:?}: {}",
            page.body
        );
    }
    let replaced = later
        .post(
            "/account/password",
            &[new, ("current_password", "correct horse battery")],
        )
        .await;
    assert_eq!(replaced.location.as_deref(), Some("/account"));
    assert!(later.get("/account").await.body.contains("Saved."));
    let mut third = Browser::new(&app);
    third.get("/login?method=password").await;
    let old = third
        .post(
            "/login/password",
            &[("login", "pwuser"), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(old.status, 422, "the old password no longer signs in");
    let ok = third
        .post(
            "/login/password",
            &[("login", "pwuser"), ("password", "battery staple horse")],
        )
        .await;
    assert!(ok.redirects_to("/account"), "{:?}", ok.location);
}

/// SPEC §9: with a sign-in older than `account.reauth_after`, a password,
/// a new email and deleting the account each ask for a fresh code first;
/// afterwards the other sessions and the apps' refresh tokens end.
async fn sensitive_changes_on_the_account_page_need_a_recent_sign_in(db: Db) {
    let mut settings = test_settings(&db);
    settings.account.reauth_after = std::time::Duration::from_secs(2);
    settings.otp.resend_after = std::time::Duration::ZERO;
    settings.otp.max_sends = 10;
    let app = spawn_with(settings).await;
    let mut b = Browser::new(&app);
    b.sign_in_with_code("old@example.com").await;
    b.get("/signup").await;
    b.post("/signup", &[]).await;
    let mut other = Browser::new(&app);
    other.sign_in_with_code("old@example.com").await;
    assert_eq!(other.get("/account").await.status, 200);
    let res = app.sign_in_with_code(APP, Who::Email("old@example.com")).await;
    let app_tokens: Value = res.json().await.unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    b.get("/account").await;
    let asked = b
        .post("/account/password", &[("password", "correct horse battery")])
        .await;
    assert!(asked.redirects_to("/account/reauth"), "{:?}", asked.location);
    b.get("/account").await;
    let asked = b
        .post("/account/identifier", &[("identifier", "new@example.com")])
        .await;
    assert!(asked.redirects_to("/account/reauth"), "{:?}", asked.location);
    assert!(b.get("/account/delete").await.redirects_to("/account/reauth"));
    b.get("/account").await;
    assert!(b.post("/account/delete", &[]).await.redirects_to("/account/reauth"));
    assert!(app.state.store.find_user("old@example.com").await.unwrap().is_some());

    // A fresh code to the account's own email renews the sign-in.
    let page = b.get("/account/reauth").await;
    assert!(page.body.contains("old@example.com"), "{}", page.body);
    assert!(b.post("/account/reauth", &[]).await.redirects_to("/account/reauth"));
    b.get("/account/reauth").await;
    let code = app.outbox_code().await;
    let done = b.post("/account/reauth/verify", &[("code", &code)]).await;
    assert_eq!(done.location.as_deref(), Some("/account"));
    b.get("/account").await;
    let set = b
        .post("/account/password", &[("password", "correct horse battery")])
        .await;
    assert_eq!(set.location.as_deref(), Some("/account"));
    let after = b.get("/account").await;
    assert!(
        after.body.contains("Saved."),
        "{} {:?} {}",
        after.status,
        after.location,
        after.body
    );

    // The other browser and the app's refresh token are signed out; this browser goes on.
    assert!(other.get("/account").await.redirects_to("/login"));
    let refresh = app.refresh(APP, app_tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refresh.status(), 400);
    assert_eq!(b.get("/account").await.status, 200);
}

db_test!(
    sensitive_changes_on_the_account_page_need_a_recent_sign_in,
    a_password_set_on_the_account_page_signs_in_on_the_login_page,
    changing_a_phone_number_takes_a_code_and_tells_the_old_one,
    a_change_code_is_dead_after_max_attempts_wrong_tries,
    deleting_the_account_revokes_its_tokens_and_sessions,
    a_verified_identifier_of_another_account_is_not_taken_even_with_its_code,
    a_password_set_on_the_page_is_told_to_every_verified_identifier,
    the_account_page_knows_its_own_email_in_any_spelling,
);

/// Asking to change the email to the one the account has, spelled otherwise
/// (Greek capitals for lower case with a final sigma, the domain in
/// punycode), is "the same" on the page itself: no code is sent for it. The
/// page asks the account service (`accounts::holds`); its own comparison
/// (lower case only) sent a code the service then refused.
async fn the_account_page_knows_its_own_email_in_any_spelling(db: Db) {
    let app = spawn_with(test_settings(&db)).await;
    let mut b = Browser::new(&app);
    sign_up_through_authorize(&mut b, "\u{03A3}\u{0391}\u{03A3}@b\u{00FC}cher.example").await;
    let outbox = || async {
        let all: Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
        all.as_array().unwrap().len()
    };
    let sent = outbox().await;
    b.get("/account").await;
    let asked = b
        .post(
            "/account/identifier",
            &[("identifier", "\u{03C3}\u{03B1}\u{03C2}@XN--BCHER-KVA.example")],
        )
        .await;
    assert_eq!(asked.location.as_deref(), Some("/account"));
    let page = b.get("/account").await;
    assert!(page.body.contains("already"), "{}", page.body);
    assert_eq!(outbox().await, sent, "no code sent");
}

/// SPEC §9: after a sensitive change every verified identifier gets a
/// notice. An account with a proven phone (SMS webhook) and a proven email
/// (console) sets a password on `/account/password`: both are told, with
/// no code.
async fn a_password_set_on_the_page_is_told_to_every_verified_identifier(db: Db) {
    let (app, sms) = app_with_sms(&db).await;
    let mut b = Browser::new(&app);
    b.sign_up_by_sms("+1 415 555 0131", &sms, &[]).await;
    let asked = b
        .post("/account/identifier", &[("identifier", "both@example.com")])
        .await;
    assert!(asked.redirects_to("/account/identifier"));
    b.get("/account/identifier").await;
    let code = app.outbox_code_to("both@example.com").await;
    assert_eq!(
        b.post("/account/identifier/verify", &[("code", &code)])
            .await
            .location
            .as_deref(),
        Some("/account")
    );
    let user = app.state.store.find_user("both@example.com").await.unwrap().unwrap();
    assert!(user.email_verified && user.phone_verified, "{user:?}");
    let texts_before = sms.count();

    b.get("/account").await;
    let set = b
        .post("/account/password", &[("password", "correct horse battery")])
        .await;
    assert_eq!(set.location.as_deref(), Some("/account"));
    assert!(b.get("/account").await.body.contains("Saved."));

    let notice = sms.last().await.json();
    assert_eq!(sms.count(), texts_before + 1);
    assert_eq!(
        (notice["to"].as_str(), notice["kind"].as_str()),
        (Some("+14155550131"), Some("notice"))
    );
    assert_eq!(notice["code"], Value::Null);
    let outbox: Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    assert_eq!(outbox[0]["to"], "both@example.com");
    assert_eq!(outbox[0]["code"], "", "a notice, no code: {}", outbox[0]);
    assert!(
        outbox[0]["text"].as_str().unwrap().contains("password"),
        "{}",
        outbox[0]
    );
}

/// SPEC §9: a verified identifier is one account's sign-in key, unique.
/// Someone who holds two accounts (or reads the other's mailbox) and proves
/// the other's email on their own account page changes nothing: the email
/// stays the other account's, theirs keeps its own.
async fn a_verified_identifier_of_another_account_is_not_taken_even_with_its_code(db: Db) {
    let app = spawn_with(test_settings(&db)).await;
    let mut first = Browser::new(&app);
    sign_up_through_authorize(&mut first, "first@example.com").await;
    let mut b = Browser::new(&app);
    sign_up_through_authorize(&mut b, "second@example.com").await;
    b.get("/account").await;
    let asked = b
        .post("/account/identifier", &[("identifier", "first@example.com")])
        .await;
    assert!(asked.redirects_to("/account/identifier"), "{}", asked.status);
    b.get("/account/identifier").await;
    let code = app.outbox_code_to("first@example.com").await;
    let done = b.post("/account/identifier/verify", &[("code", &code)]).await;
    assert_eq!(done.location.as_deref(), Some("/account"));
    let page = b.get("/account").await;
    assert!(page.body.contains("Another account already uses"), "{}", page.body);
    assert!(page.body.contains("second@example.com"));
    let owner = app.state.store.find_user("first@example.com").await.unwrap().unwrap();
    assert!(owner.email_verified);
    let second = app.state.store.find_user("second@example.com").await.unwrap().unwrap();
    assert_ne!(owner.id, second.id);
    assert_eq!(first.get("/account").await.status, 200, "the holder stays signed in");
}

/// SPEC §9: a browser session ends `account.session_max_age` after its sign-in,
/// however busy it is.
async fn a_session_ends_at_its_absolute_lifetime(db: Db) {
    let mut settings = test_settings(&db);
    settings.account.session_max_age = std::time::Duration::from_secs(2);
    let app = spawn_with(settings).await;
    let mut b = Browser::new(&app);
    b.sign_in_with_code("busy@example.com").await;
    b.get("/signup").await;
    b.post("/signup", &[]).await;
    // Used now and then within the first second (whole seconds: under 2 s old)...
    for _ in 0..2 {
        assert_eq!(b.get("/account").await.status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    // ...and over at 2 s, used or not.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(b.get("/account").await.redirects_to("/login"));
}

db_test!(a_session_ends_at_its_absolute_lifetime);
