//! SPEC §3: magic links of the OTP API. A client with a `magic_link_uri`
//! gets emails linking to its own URL with a single-use token, which its
//! backend redeems at the token endpoint (`magic_token`) or at verifycode.

use serde_json::Value;

use crate::db_test;
use crate::helpers::{assert_error, spawn_with, test_settings, Db, TestApp, Who, APP, LINKED, LINKED_URI};

db_test!(
    an_api_magic_link_goes_to_the_clients_url_and_signs_in_once,
    an_api_magic_link_is_bound_to_its_client_and_identifier,
    verifycode_takes_a_magic_token_instead_of_the_code,
    clients_without_a_magic_link_uri_get_the_code_only,
    a_magic_link_uri_must_be_https_without_spaces,
    an_api_magic_link_expires_with_its_code,
);

async fn app(db: &Db) -> TestApp {
    let mut s = test_settings(db);
    s.otp.resend_after = std::time::Duration::ZERO;
    spawn_with(s).await
}

/// Asks `client` for a code for `email`; returns the newest message's link token (if any) and code.
async fn sent(app: &TestApp, client: (&str, &str), email: &str) -> (Option<String>, String) {
    assert_eq!(app.getcode(client, Who::Email(email)).await.status(), 200);
    let outbox: Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    let link = outbox[0]["magic_link"].as_str().map(str::to_string);
    if let Some(l) = &link {
        assert!(l.starts_with(&format!("{LINKED_URI}&token=")), "{l}");
    }
    let token = link.map(|l| l.rsplit("token=").next().unwrap().to_string());
    (token, outbox[0]["code"].as_str().unwrap().to_string())
}

async fn redeem(app: &TestApp, client: (&str, &str), email: &str, token: &str) -> reqwest::Response {
    app.post_form(
        "/oauth2/token",
        client,
        &[("grant_type", "otp"), ("email", email), ("magic_token", token)],
    )
    .await
}

async fn an_api_magic_link_goes_to_the_clients_url_and_signs_in_once(db: Db) {
    let app = app(&db).await;
    app.signed_up(LINKED, Who::Email("ada@example.com")).await;
    let (token, _) = sent(&app, LINKED, "ada@example.com").await;
    let token = token.expect("a magic link to the client's URL");
    assert!(token.len() >= 22, "≥ 128 bits");
    let res = redeem(&app, LINKED, "ada@example.com", &token).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["access_token"].is_string() && body["refresh_token"].is_string());
    assert_error(
        redeem(&app, LINKED, "ada@example.com", &token).await,
        400,
        "invalid_grant",
    )
    .await;
}

async fn an_api_magic_link_is_bound_to_its_client_and_identifier(db: Db) {
    let app = app(&db).await;
    app.signed_up(LINKED, Who::Email("ada@example.com")).await;
    app.signed_up(LINKED, Who::Email("eve@example.com")).await;
    let (token, code) = sent(&app, LINKED, "ada@example.com").await;
    let token = token.unwrap();
    // Another identifier, another client, Sesame's own magic page: refused, nothing spent.
    assert_error(
        redeem(&app, LINKED, "eve@example.com", &token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_error(redeem(&app, APP, "ada@example.com", &token).await, 400, "invalid_grant").await;
    let mut b = crate::browser::Browser::new(&app);
    b.get(&format!("/login/magic?token={token}")).await;
    assert_eq!(b.post("/login/magic", &[("token", &token)]).await.status, 400);
    assert_eq!(redeem(&app, LINKED, "ada@example.com", &token).await.status(), 200);
    // The code of the same message is spent with the link.
    let res = app.verifycode(LINKED, Who::Email("ada@example.com"), &code).await;
    assert_error(res, 400, "invalid_code").await;
}

async fn verifycode_takes_a_magic_token_instead_of_the_code(db: Db) {
    let app = app(&db).await;
    let (token, _) = sent(&app, LINKED, "new@example.com").await;
    let token = token.unwrap();
    let form = [("email", "new@example.com"), ("magic_token", token.as_str())];
    let verify = || app.post_form("/otp/verifycode/", LINKED, &form);
    let res = verify().await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["account_exists"], false);
    assert!(body["secret_identifier"].is_string());
    // Single use here too.
    assert_error(verify().await, 400, "invalid_code").await;
    let both = app
        .post_form(
            "/otp/verifycode/",
            LINKED,
            &[("email", "new@example.com"), ("magic_token", "x"), ("code", "123456")],
        )
        .await;
    assert_error(both, 400, "invalid_request").await;
}

/// SPEC §3: the link is the code's, and lives `otp.ttl` like it. Past it the
/// token is refused at both places that take it, and spends nothing else.
async fn an_api_magic_link_expires_with_its_code(db: Db) {
    let mut s = test_settings(&db);
    s.otp.resend_after = std::time::Duration::ZERO;
    s.otp.ttl = std::time::Duration::from_secs(2);
    let app = spawn_with(s).await;
    app.signed_up(LINKED, Who::Email("ada@example.com")).await;
    let (token, _) = sent(&app, LINKED, "ada@example.com").await;
    let token = token.unwrap();
    // `expires_at` is whole seconds: three seconds on, it has passed whenever the link was made.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_error(
        redeem(&app, LINKED, "ada@example.com", &token).await,
        400,
        "invalid_grant",
    )
    .await;
    let res = app
        .post_form(
            "/otp/verifycode/",
            LINKED,
            &[("email", "ada@example.com"), ("magic_token", &token)],
        )
        .await;
    assert_error(res, 400, "invalid_code").await;
    // A link sent now works as ever: what was refused was the old one's age.
    let (fresh, _) = sent(&app, LINKED, "ada@example.com").await;
    assert_eq!(
        redeem(&app, LINKED, "ada@example.com", &fresh.unwrap()).await.status(),
        200
    );
}

async fn clients_without_a_magic_link_uri_get_the_code_only(db: Db) {
    let app = app(&db).await;
    let (token, code) = sent(&app, APP, "plain@example.com").await;
    assert!(token.is_none());
    assert_eq!(code.len(), 6);
}

async fn a_magic_link_uri_must_be_https_without_spaces(db: Db) {
    let app = app(&db).await;
    let res = app
        .client_credentials(crate::helpers::ADMIN, Some("sesame:admin"))
        .await;
    let admin: Value = res.json().await.unwrap();
    let register = |uri: &str| {
        app.http
            .post(app.url("/admin/api/clients"))
            .bearer_auth(admin["access_token"].as_str().unwrap())
            .json(&serde_json::json!({"client_name": "x", "grant_types": ["otp"], "magic_link_uri": uri}))
            .send()
    };
    for bad in [
        "http://app.example.com/in",
        "https://app.example.com/in#x",
        "https://app.example.com/a b",
        "https://a.example.com/\r\nBcc: x",
    ] {
        assert_error(register(bad).await.unwrap(), 400, "invalid_client_metadata").await;
    }
    for good in ["https://app.example.com/in?from=mail", "http://localhost:3000/in"] {
        assert_eq!(register(good).await.unwrap().status(), 201, "{good}");
    }
}
