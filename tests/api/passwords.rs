//! Optional passwords: a signed-in user sets one (with a token of the
//! first-party app, which carries `sesame:account`), the `password` grant (for
//! clients that enable it) signs in with it, and wrong passwords lock out.

use std::time::Duration;

use serde_json::{json, Value};

use crate::browser::Browser;
use crate::db_test;
use crate::helpers::{
    assert_error, jwt_parts, spawn_app, spawn_with, test_settings, Db, TestApp, Who, APP, APP2, MINE,
};

db_test!(
    a_user_sets_a_password_and_signs_in_with_it,
    the_password_grant_is_only_for_clients_that_enable_it,
    wrong_passwords_lock_the_account,
    wrong_passwords_from_one_address_lock_the_address,
    wrong_passwords_on_the_sign_in_page_lock_the_account_too,
    setting_credentials_needs_the_users_token_and_valid_input,
);

const PASSWORD: &str = "correct horse battery";
/// What the first-party app asks for to change the account (never granted unasked).
const ACCOUNT: &str = "openid sesame:account";

async fn set_credentials(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.patch_user(token, &body).await
}

/// A user with username `name` and the password above.
async fn user_with_password(app: &TestApp, email: &str, name: &str) {
    let tokens = app.signed_up_with_scope(MINE, Who::Email(email), Some(ACCOUNT)).await;
    let res = set_credentials(
        app,
        tokens["access_token"].as_str().unwrap(),
        json!({"username": name, "password": PASSWORD}),
    )
    .await;
    assert_eq!(res.status(), 200);
}

async fn password_grant(app: &TestApp, client: (&str, &str), login: &str, password: &str) -> reqwest::Response {
    app.post_form(
        "/oauth2/token",
        client,
        &[
            ("grant_type", "password"),
            ("username", login),
            ("password", password),
            ("scope", "openid profile"),
        ],
    )
    .await
}

async fn a_user_sets_a_password_and_signs_in_with_it(db: Db) {
    let app = spawn_app(&db).await;
    let tokens = app
        .signed_up_with_scope(MINE, Who::Email("ada@example.com"), Some(ACCOUNT))
        .await;
    let res = set_credentials(
        &app,
        tokens["access_token"].as_str().unwrap(),
        json!({"username": "ada_l", "password": PASSWORD}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["username"], "ada_l");
    assert!(!user.to_string().contains(PASSWORD));

    for login in ["ada_l", "ADA_L", "Ada@Example.com"] {
        let res = password_grant(&app, APP, login, PASSWORD).await;
        assert_eq!(res.status(), 200, "{login}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(jwt_parts(body["id_token"].as_str().unwrap()).1["amr"], json!(["pwd"]));
        assert_eq!(body["scope"], "openid profile");
    }
    assert_error(
        password_grant(&app, APP, "ada_l", "wrong password").await,
        400,
        "invalid_grant",
    )
    .await;
    assert_error(
        password_grant(&app, APP, "nobody", PASSWORD).await,
        400,
        "invalid_grant",
    )
    .await;
    let missing = app
        .post_form(
            "/oauth2/token",
            APP,
            &[("grant_type", "password"), ("username", "ada_l")],
        )
        .await;
    assert_error(missing, 400, "invalid_request").await;
}

async fn the_password_grant_is_only_for_clients_that_enable_it(db: Db) {
    let app = spawn_app(&db).await;
    user_with_password(&app, "grace@example.com", "grace").await;
    assert_error(
        password_grant(&app, APP2, "grace", PASSWORD).await,
        400,
        "unauthorized_client",
    )
    .await;
}

async fn wrong_passwords_lock_the_account(db: Db) {
    let mut s = test_settings(&db);
    s.passwords.max_failures = 3;
    let app = spawn_with(s).await;
    user_with_password(&app, "locked@example.com", "locked").await;
    for _ in 0..3 {
        assert_error(
            password_grant(&app, APP, "locked", "nope nope nope").await,
            400,
            "invalid_grant",
        )
        .await;
    }
    let res = password_grant(&app, APP, "locked", PASSWORD).await;
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 850 && retry <= 900, "{retry}");
    assert_error(res, 429, "too_many_requests").await;
    assert_eq!(
        password_grant(&app, APP, "locked", PASSWORD).await.status(),
        429,
        "still locked"
    );
    let locks = app.audit_event_names().await;
    assert_eq!(
        locks.iter().filter(|e| *e == "locked_out").count(),
        1,
        "the try that locked is recorded, once (SPEC §8): {locks:?}"
    );
    // Another account is not affected.
    user_with_password(&app, "free@example.com", "free").await;
    assert_eq!(password_grant(&app, APP, "free", PASSWORD).await.status(), 200);
}

/// The sign-in page's password form goes through the same counters as the
/// `password` grant: the account locked by wrong passwords on the page
/// refuses the right one there (and at the grant), and the lock is recorded.
async fn wrong_passwords_on_the_sign_in_page_lock_the_account_too(db: Db) {
    let mut s = test_settings(&db);
    s.passwords.max_failures = 3;
    let app = spawn_with(s).await;
    user_with_password(&app, "paged@example.com", "paged").await;
    let mut b = Browser::new(&app);
    b.get("/login").await;
    for _ in 0..3 {
        let page = b
            .post("/login/password", &[("login", "paged"), ("password", "nope nope nope")])
            .await;
        assert_eq!(page.status, 422);
        assert!(!page.body.contains("Too many wrong passwords"));
    }
    let page = b
        .post("/login/password", &[("login", "paged"), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, 422, "the right password, refused while locked");
    assert!(page.body.contains("Too many wrong passwords"), "{}", page.body);
    assert!(b.get("/account").await.redirects_to("/login"), "not signed in");
    assert_eq!(password_grant(&app, APP, "paged", PASSWORD).await.status(), 429);
    let events = app.audit_event_names().await;
    assert_eq!(events.iter().filter(|e| *e == "locked_out").count(), 1, "{events:?}");
}

async fn wrong_passwords_from_one_address_lock_the_address(db: Db) {
    let mut s = test_settings(&db);
    s.passwords.ip_max_failures = 2;
    s.passwords.lockout = Duration::from_secs(60);
    let app = spawn_with(s).await;
    user_with_password(&app, "target@example.com", "target").await;
    assert_error(
        password_grant(&app, APP, "guess1", "x1x1x1x1").await,
        400,
        "invalid_grant",
    )
    .await;
    assert_error(
        password_grant(&app, APP, "guess2", "x2x2x2x2").await,
        400,
        "invalid_grant",
    )
    .await;
    let res = password_grant(&app, APP, "target", PASSWORD).await;
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    assert_error(res, 429, "too_many_requests").await;
}

async fn setting_credentials_needs_the_users_token_and_valid_input(db: Db) {
    let app = spawn_app(&db).await;
    user_with_password(&app, "first@example.com", "taken").await;
    let tokens = app
        .signed_up_with_scope(MINE, Who::Email("second@example.com"), Some(ACCOUNT))
        .await;
    let token = tokens["access_token"].as_str().unwrap();
    let res = app
        .http
        .patch(app.url("/api/v1/user/"))
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "invalid_token").await;
    let service = app.service_token().await;
    assert_error(
        set_credentials(&app, &service, json!({"password": PASSWORD})).await,
        401,
        "invalid_token",
    )
    .await;
    assert_error(
        set_credentials(&app, token, json!({"username": "TAKEN"})).await,
        409,
        "conflict",
    )
    .await;
    for body in [
        json!({"password": "short"}),
        json!({"email": "x@example.com"}),
        json!({}),
        json!({"username": "a b"}),
    ] {
        assert_error(set_credentials(&app, token, body).await, 400, "invalid_request").await;
    }
    assert_eq!(
        set_credentials(&app, token, json!({"password": PASSWORD}))
            .await
            .status(),
        200
    );
}

/// SPEC §9: hashing runs at most `passwords.max_concurrent_hashes` at once.
/// A node hashes on exactly that many threads of its own (hashing on them
/// only: `passwords::tests::hashing_runs_on_the_fixed_pool_threads`), and on
/// one per core without the key.
#[tokio::test]
async fn a_node_hashes_on_max_concurrent_hashes_threads() {
    async fn hashing_threads(env: &[(&str, &str)]) -> usize {
        let db = Db::sqlite();
        std::fs::write(db.dir().join("clients.toml"), crate::helpers::clients_toml()).unwrap();
        let node =
            crate::multi_node::start_node_with(&db, "http://127.0.0.1:9/sms", std::process::Stdio::inherit(), env);
        crate::multi_node::wait_ready(&reqwest::Client::new(), &node).await;
        let tasks = std::fs::read_dir(format!("/proc/{}/task", node.child.id())).unwrap();
        tasks
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .filter(|name| name.starts_with("sesame-hash-"))
            .count()
    }
    assert_eq!(
        hashing_threads(&[("SESAME_PASSWORDS__MAX_CONCURRENT_HASHES", "3")]).await,
        3
    );
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(hashing_threads(&[]).await, cores);
}
