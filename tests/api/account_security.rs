//! SPEC §9 over the OTP API and the token endpoint: each test is an account
//! takeover or abuse that worked before the account service existed, named as
//! the attack it stops.

use std::time::Duration;

use serde_json::{json, Value};

use crate::db_test;
use crate::helpers::{assert_error, real_delivery, spawn_with, test_settings, Db, TestApp, Who, APP, MINE};

db_test!(
    third_party_token_cannot_set_password,
    first_party_token_sets_a_password_and_ends_the_other_token_families,
    replacing_a_password_needs_the_current_one,
    stale_first_party_token_cannot_set_password,
    unverified_email_is_not_a_sign_in_key,
    one_mailbox_is_one_identifier_however_its_domain_is_spelled,
    a_username_from_before_the_letter_rule_may_be_sent_back_unchanged,
    an_unverified_email_is_no_password_login_and_the_page_answers_alike,
    unverified_phone_is_not_a_sign_in_key,
    look_alike_email_cannot_reach_another_account,
    codes_for_an_account_go_to_the_address_stored_on_it,
    parallel_wrong_passwords_never_exceed_the_limit,
    unknown_and_real_accounts_answer_wrong_passwords_alike,
    console_delivery_and_the_outbox_are_refused_on_a_public_issuer,
    guessing_the_current_password_is_limited,
    a_username_cannot_take_the_shape_of_a_sub,
    a_look_alike_email_does_not_sign_in_with_a_password,
);

/// Test settings in which one identifier may get codes back to back.
fn settings(db: &Db) -> sesame::config::Settings {
    let mut s = test_settings(db);
    s.otp.resend_after = Duration::ZERO;
    s.otp.max_sends = 100;
    s
}

async fn patch_user(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.patch_user(token, &body).await
}

/// A code for `who` exchanged at `client` with `scope` (the account must exist).
async fn code_tokens(app: &TestApp, client: (&str, &str), who: Who<'_>, scope: &str) -> Value {
    assert_eq!(app.getcode(client, who).await.status(), 200);
    let code = app.outbox_code().await;
    let res = app
        .post_form(
            "/oauth2/token",
            client,
            &[("grant_type", "otp"), who.field(), ("code", &code), ("scope", scope)],
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn token(v: &Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
        .to_string()
}

async fn password_grant(app: &TestApp, login: &str, password: &str) -> reqwest::Response {
    app.post_form(
        "/oauth2/token",
        MINE,
        &[("grant_type", "password"), ("username", login), ("password", password)],
    )
    .await
}

/// An account for `email` with `password`, set through the first-party app.
async fn account_with_password(app: &TestApp, email: &str, password: &str) {
    app.signed_up(MINE, Who::Email(email)).await;
    let t = code_tokens(app, MINE, Who::Email(email), "openid sesame:account").await;
    let res = patch_user(app, &token(&t, "access_token"), json!({ "password": password })).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

async fn third_party_token_cannot_set_password(db: Db) {
    let app = spawn_with(settings(&db)).await;
    let tokens = app.signed_up(APP, Who::Email("ada@example.com")).await;
    let res = patch_user(
        &app,
        &token(&tokens, "access_token"),
        json!({"password": "chosen by the app"}),
    )
    .await;
    assert_error(res, 403, "insufficient_scope").await;
    // Nothing was set: the password does not sign in.
    let res = password_grant(&app, "ada@example.com", "chosen by the app").await;
    assert_error(res, 400, "invalid_grant").await;

    // Nor the username (it signs in with the password and is every app's preferred_username).
    let res = patch_user(&app, &token(&tokens, "access_token"), json!({"username": "renamed"})).await;
    assert_error(res, 403, "insufficient_scope").await;

    // Even the first-party app needs the `sesame:account` scope in the token.
    let t = code_tokens(&app, MINE, Who::Email("ada@example.com"), "openid").await;
    let res = patch_user(
        &app,
        &token(&t, "access_token"),
        json!({"password": "chosen by the app"}),
    )
    .await;
    assert_error(res, 403, "insufficient_scope").await;
}

async fn first_party_token_sets_a_password_and_ends_the_other_token_families(db: Db) {
    let app = spawn_with(settings(&db)).await;
    let third_party = app.signed_up(APP, Who::Email("ada@example.com")).await;
    let mine = code_tokens(
        &app,
        MINE,
        Who::Email("ada@example.com"),
        "openid sesame:account offline_access",
    )
    .await;
    let res = patch_user(
        &app,
        &token(&mine, "access_token"),
        json!({"password": "correct horse battery"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        password_grant(&app, "ada@example.com", "correct horse battery")
            .await
            .status(),
        200
    );
    // The other app's refresh token ended; the caller's own family goes on.
    let res = app.refresh(APP, &token(&third_party, "refresh_token")).await;
    assert_error(res, 400, "invalid_grant").await;
    assert_eq!(app.refresh(MINE, &token(&mine, "refresh_token")).await.status(), 200);
    // The verified email is told.
    let outbox: Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    let notice = outbox
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"].as_str().is_some_and(|s| s.contains("password")))
        .expect("a password notice");
    assert_eq!(notice["to"], "ada@example.com");
    assert_eq!(notice["code"], "");
}

async fn replacing_a_password_needs_the_current_one(db: Db) {
    let app = spawn_with(settings(&db)).await;
    account_with_password(&app, "ada@example.com", "first password").await;
    let t = code_tokens(&app, MINE, Who::Email("ada@example.com"), "openid sesame:account").await;
    let access = token(&t, "access_token");
    let res = patch_user(&app, &access, json!({"password": "second password"})).await;
    assert_error(res, 400, "invalid_request").await;
    let res = patch_user(
        &app,
        &access,
        json!({"password": "second password", "current_password": "not it at all"}),
    )
    .await;
    assert_error(res, 400, "invalid_grant").await;
    assert_eq!(
        password_grant(&app, "ada@example.com", "first password").await.status(),
        200
    );
    let res = patch_user(
        &app,
        &access,
        json!({"password": "second password", "current_password": "first password"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        password_grant(&app, "ada@example.com", "second password")
            .await
            .status(),
        200
    );
    let res = password_grant(&app, "ada@example.com", "first password").await;
    assert_error(res, 400, "invalid_grant").await;
}

async fn stale_first_party_token_cannot_set_password(db: Db) {
    let mut settings = settings(&db);
    settings.account.reauth_after = Duration::from_secs(1);
    let app = spawn_with(settings).await;
    app.signed_up(MINE, Who::Email("ada@example.com")).await;
    let t = code_tokens(&app, MINE, Who::Email("ada@example.com"), "openid sesame:account").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = patch_user(&app, &token(&t, "access_token"), json!({"password": "too late now"})).await;
    assert_error(res, 401, "invalid_token").await;
    // A refresh keeps the sign-in's time: the token it gives is as stale.
    let refreshed = app.refresh(MINE, &token(&t, "refresh_token")).await;
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    let res = patch_user(
        &app,
        &token(&refreshed, "access_token"),
        json!({"password": "too late now"}),
    )
    .await;
    assert_error(res, 401, "invalid_token").await;
    // A username is not a sensitive change.
    let res = patch_user(&app, &token(&t, "access_token"), json!({"username": "ada_l"})).await;
    assert_eq!(res.status(), 200);
}

async fn unverified_email_is_not_a_sign_in_key(db: Db) {
    let app = spawn_with(settings(&db)).await;
    let phone = Who::Phone("+14155550123");
    let secret = app.verified(APP, phone).await;
    let res = app
        .create_user(
            APP,
            &json!({"secret_identifier": secret, "auto_username": true, "email": "grace@example.com"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["email"], "grace@example.com");
    assert_eq!(user["email_verified"], false);
    assert_eq!(user["phone_number_verified"], true);

    // A code to that email does not find the phone account...
    let email = Who::Email("grace@example.com");
    assert_eq!(app.getcode(APP, email).await.status(), 200);
    let code = app.outbox_code().await;
    let res = app.verifycode(APP, email, &code).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["account_exists"], false, "{body}");
    // ...nor yields its tokens...
    let res = app
        .otp_token(APP, email, body["secret_identifier"].as_str().unwrap())
        .await;
    assert_error(res, 400, "invalid_grant").await;
    // ...and its owner can make an account with it: no 409 tells anyone it was given.
    let secret = app.verified(APP, email).await;
    let res = app
        .create_user(APP, &json!({"secret_identifier": secret, "auto_username": true}))
        .await;
    assert_eq!(res.status(), 201);
    let owner: Value = res.json().await.unwrap();
    assert_eq!(owner["email_verified"], true);
    assert_ne!(owner["sub"], user["sub"]);
}

/// SPEC §9: an unproven email is never used to find an account, the
/// password's logins included; and `/login/password` answers an unknown
/// login exactly as a real one, wrong passwords and lockout alike.
async fn an_unverified_email_is_no_password_login_and_the_page_answers_alike(db: Db) {
    let app = spawn_with(settings(&db)).await;
    let secret = app.verified(MINE, Who::Phone("+14155550124")).await;
    let res = app
        .create_user(
            MINE,
            &json!({"secret_identifier": secret, "username": "hopper", "email": "hopper@example.com",
                    "password": "the real password"}),
        )
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = password_grant(&app, "hopper@example.com", "the real password").await;
    assert_error(res, 400, "invalid_grant").await;
    assert_eq!(password_grant(&app, "hopper", "the real password").await.status(), 200);
    let mut page = crate::browser::Browser::new(&app);
    page.get("/login?method=password").await;
    let by_email = page
        .post(
            "/login/password",
            &[("login", "hopper@example.com"), ("password", "the real password")],
        )
        .await;
    assert_eq!(by_email.status, 422);
    assert!(
        by_email.body.contains("Wrong username or password"),
        "{}",
        by_email.body
    );

    let mut answers: Vec<Vec<(u16, &str)>> = vec![];
    for login in ["hopper", "nobody-at-all"] {
        let mut b = crate::browser::Browser::new(&app);
        b.get("/login?method=password").await;
        let mut seen = vec![];
        for _ in 0..6 {
            let p = b
                .post("/login/password", &[("login", login), ("password", "a wrong password")])
                .await;
            let says = ["Wrong username or password.", "Too many wrong passwords."]
                .into_iter()
                .find(|m| p.body.contains(m))
                .unwrap_or("something else");
            seen.push((p.status, says));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][4], (422, "Wrong username or password."));
    assert_eq!(answers[0][5].1, "Too many wrong passwords.");
}

/// helper-28's probe: `bomb@bücher.example` and `bomb@xn--bcher-kva.example`
/// (one domain in DNS), or `victim@ｅxample.com` in full-width letters, were
/// separate identifiers, each with its own send limits (one mailbox bombed
/// many times over) and its own account. The domain now has one spelling.
async fn one_mailbox_is_one_identifier_however_its_domain_is_spelled(db: Db) {
    let app = spawn_with(test_settings(&db)).await; // resend_after: 30 s
    for (first, again) in [
        ("bomb@b\u{00FC}cher.example", "bomb@xn--bcher-kva.example"),
        ("victim@example.com", "victim@\u{FF45}xample.com"),
        ("other@example.org", "other@EXAMPLE\u{3002}\u{FF4F}rg"),
    ] {
        assert_eq!(app.getcode(APP, Who::Email(first)).await.status(), 200);
        let res = app.getcode(APP, Who::Email(again)).await;
        assert_error(res, 429, "too_many_requests").await;
    }
    // One account, found by any spelling.
    let code = app.outbox_code().await;
    let res = app
        .verifycode(APP, Who::Email("other@EXAMPLE\u{3002}\u{FF4F}rg"), &code)
        .await;
    assert_eq!(res.status(), 200);
    let secret: Value = res.json().await.unwrap();
    let res = app
        .create_user(
            APP,
            &json!({"secret_identifier": secret["secret_identifier"], "auto_username": true}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["email"], "other@example.org");
    let found = app.state.store.find_user("other@example.org").await.unwrap().unwrap();
    assert_eq!(found.id, user["sub"].as_str().unwrap());
}

/// Usernames need a letter now; an account whose name is digits only
/// (from before) can still set a password with its app sending the name it
/// has, unchanged (helper-29). A new digits-only name is still refused.
async fn a_username_from_before_the_letter_rule_may_be_sent_back_unchanged(db: Db) {
    let app = spawn_with(settings(&db)).await;
    let tokens = app.signed_up(MINE, Who::Email("legacy@example.com")).await;
    let sub = crate::helpers::jwt_parts(&token(&tokens, "access_token")).1["sub"]
        .as_str()
        .unwrap()
        .to_string();
    db.execute(&format!(
        "UPDATE users SET username = '12345678', username_key = '12345678' WHERE id = '{sub}'"
    ))
    .await;
    let t = code_tokens(&app, MINE, Who::Email("legacy@example.com"), "openid sesame:account").await;
    let access = token(&t, "access_token");
    let res = patch_user(
        &app,
        &access,
        json!({"username": "12345678", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(
        password_grant(&app, "12345678", "correct horse battery").await.status(),
        200
    );
    let res = patch_user(&app, &access, json!({"username": "87654321"})).await;
    assert_error(res, 400, "invalid_request").await;
}

async fn unverified_phone_is_not_a_sign_in_key(db: Db) {
    let app = spawn_with(settings(&db)).await;
    let secret = app.verified(APP, Who::Email("lin@example.com")).await;
    let res = app
        .create_user(
            APP,
            &json!({"secret_identifier": secret, "auto_username": true, "account": {"phone": "+14155550199"}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["phone_number"], "+14155550199");
    assert_eq!(user["phone_number_verified"], false);
    let res = app.sign_in_with_code(APP, Who::Phone("+14155550199")).await;
    let body = assert_error(res, 400, "invalid_grant").await;
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("create the account first"));
}

async fn look_alike_email_cannot_reach_another_account(db: Db) {
    let app = spawn_with(settings(&db)).await;
    app.signed_up(APP, Who::Email("kevin@example.com")).await;
    // KELVIN SIGN: lower-cases to a plain `k`.
    for spoof in ["\u{212A}evin@example.com", "\u{212A}EVIN@EXAMPLE.COM"] {
        let res = app.getcode(APP, Who::Email(spoof)).await;
        let body = assert_error(res, 400, "invalid_request").await;
        assert!(
            body["error_description"].as_str().unwrap().contains("plain letters"),
            "{body}"
        );
    }
    let res = app
        .post_form(
            "/oauth2/token",
            APP,
            &[
                ("grant_type", "otp"),
                ("email", "\u{212A}evin@example.com"),
                ("code", "123456"),
            ],
        )
        .await;
    assert_error(res, 400, "invalid_request").await;
}

async fn codes_for_an_account_go_to_the_address_stored_on_it(db: Db) {
    let app = spawn_with(settings(&db)).await;
    app.signed_up(APP, Who::Email("Kevin.Smith@example.com")).await;
    assert_eq!(
        app.getcode(APP, Who::Email("KEVIN.SMITH@Example.COM")).await.status(),
        200
    );
    let outbox: Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    assert_eq!(outbox[0]["to"], "Kevin.Smith@example.com");
}

async fn parallel_wrong_passwords_never_exceed_the_limit(db: Db) {
    let mut settings = settings(&db);
    settings.passwords.ip_max_failures = 1000;
    let app = spawn_with(settings).await;
    account_with_password(&app, "ada@example.com", "the real password").await;
    let guesses = (0..40).map(|i| {
        let app = &app;
        async move {
            password_grant(app, "ada@example.com", &format!("guess number {i}"))
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 400).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + refused, 40, "{statuses:?}");
    assert_eq!(
        checked, 5,
        "passwords.max_failures = 5 reach a comparison: {statuses:?}"
    );
    // The account is locked now, for the right password too.
    let res = password_grant(&app, "ada@example.com", "the real password").await;
    assert_error(res, 429, "too_many_requests").await;
    let failed = app
        .audit_event_names()
        .await
        .into_iter()
        .filter(|e| e == "password_failed")
        .count();
    assert_eq!(failed, 5);
    let locks = app.audit_event_names().await;
    assert_eq!(
        locks.iter().filter(|e| *e == "locked_out").count(),
        1,
        "forty racing tries, one recorded lock: {locks:?}"
    );
}

async fn unknown_and_real_accounts_answer_wrong_passwords_alike(db: Db) {
    let app = spawn_with(settings(&db)).await;
    account_with_password(&app, "ada@example.com", "the real password").await;
    let mut answers: Vec<Vec<(u16, String)>> = vec![];
    for login in ["ada@example.com", "nobody@example.com"] {
        let mut seen = vec![];
        for _ in 0..6 {
            let res = password_grant(&app, login, "a wrong password").await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            seen.push((status, body["error_description"].as_str().unwrap_or("").to_string()));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][5].0, 429);
    assert_eq!(answers[0][4].0, 400);
}

async fn console_delivery_and_the_outbox_are_refused_on_a_public_issuer(db: Db) {
    let mut settings = test_settings(&db);
    settings.issuer = "https://id.example.com".into();
    // Email to a real provider, SMS still to the console: refused all the same.
    settings.email.provider = sesame::config::EmailProvider::Webhook;
    settings.email.url = Some("http://127.0.0.1:9/email".into());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = sesame::startup::Application::build_with_listener(settings, listener).await;
    let err = refused
        .err()
        .expect("console delivery on https is refused at start-up")
        .to_string();
    assert!(err.contains("sms.provider") && err.contains("console"), "{err}");

    let mut settings = test_settings(&db);
    settings.issuer = "https://id.example.com".into();
    real_delivery(&mut settings);
    let app = spawn_with(settings).await;
    assert_eq!(app.get("/dev/outbox").await.status(), 404);
}

async fn guessing_the_current_password_is_limited(db: Db) {
    let app = spawn_with(settings(&db)).await;
    account_with_password(&app, "ada@example.com", "the real password").await;
    let t = code_tokens(&app, MINE, Who::Email("ada@example.com"), "openid sesame:account").await;
    let access = token(&t, "access_token");
    let mut statuses = vec![];
    for i in 0..6 {
        let body = json!({"password": "taken over now", "current_password": format!("guess {i}")});
        statuses.push(patch_user(&app, &access, body).await.status().as_u16());
    }
    assert_eq!(statuses, [400, 400, 400, 400, 400, 429]);
    // The lock is recorded once, with the app whose token guessed and from where.
    app.state.audit.flush().await;
    let filter = sesame::store::audit::AuditFilter {
        event: Some("locked_out".into()),
        limit: 10,
        ..Default::default()
    };
    let locks = app.state.store.audit_search(&filter).await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].client_id.as_deref(), Some(MINE.0));
    assert_eq!(locks[0].detail.as_deref(), Some("too many wrong current passwords"));
    assert!(locks[0].ip.is_some());
    // The change has a counter of its own: strangers failing at sign-in do
    // not block it, and it does not lock the account's sign-in.
    let res = password_grant(&app, "ada@example.com", "the real password").await;
    assert_eq!(res.status(), 200);
}

async fn a_username_cannot_take_the_shape_of_a_sub(db: Db) {
    let app = spawn_with(settings(&db)).await;
    let victim = app.signed_up(APP, Who::Email("victim@example.com")).await;
    let victim_sub = crate::helpers::jwt_parts(&token(&victim, "access_token")).1["sub"]
        .as_str()
        .unwrap()
        .to_string();
    app.signed_up(MINE, Who::Email("eve@example.com")).await;
    let t = code_tokens(&app, MINE, Who::Email("eve@example.com"), "openid sesame:account").await;
    let res = patch_user(&app, &token(&t, "access_token"), json!({"username": victim_sub})).await;
    assert_error(res, 400, "invalid_request").await;
    // Looking a user up by sub finds that user.
    let found = app.state.store.find_user(&victim_sub).await.unwrap().unwrap();
    assert_eq!(found.id, victim_sub);
}

async fn a_look_alike_email_does_not_sign_in_with_a_password(db: Db) {
    let app = spawn_with(settings(&db)).await;
    account_with_password(&app, "kevin@example.com", "kevins password").await;
    let res = password_grant(&app, "\u{212A}evin@example.com", "kevins password").await;
    assert_error(res, 400, "invalid_grant").await;
    assert_eq!(
        password_grant(&app, "kevin@example.com", "kevins password")
            .await
            .status(),
        200
    );
}
