//! OpenID Connect conformance (issue 13): one test per module of the
//! OpenID Foundation's OP test plans, named after it, asserting what the
//! module asserts, against the real app on both backends. Started in
//! session 5 with the modules below; the rest of the plans are to come.

use serde_json::Value;

use crate::browser::{exchange, pkce, start, Browser, CB};
use crate::db_test;
use crate::helpers::{assert_error, spawn_app, Db, TestApp, APP};

db_test!(
    oidcc_ensure_post_request_succeeds,
    oidcc_userinfo_get,
    oidcc_userinfo_post_header,
    oidcc_userinfo_post_body,
    oidcc_prompt_login,
);

/// A new user through POST /oauth2/authorize (the request in the form
/// body); returns the access token.
async fn tokens_through_a_posted_request(app: &TestApp, email: &str) -> Value {
    let mut b = Browser::new(app);
    tokens_through_browser(&mut b, email).await
}

/// As above, in the given browser (which stays signed in).
async fn tokens_through_browser(b: &mut Browser<'_>, email: &str) -> Value {
    let app = b.app;
    let (verifier, challenge) = pkce();
    let page = b
        .post_raw(
            "/oauth2/authorize",
            &[
                ("response_type", "code"),
                ("client_id", APP.0),
                ("redirect_uri", CB),
                ("scope", "openid email"),
                ("state", "posted-state"),
                ("nonce", "posted-nonce"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    assert!(
        page.redirects_to("/login"),
        "{} {:?} {}",
        page.status,
        page.location,
        page.body
    );
    let verified = b.sign_in_with_code(email).await;
    assert!(verified.redirects_to("/signup"), "{:?}", verified.location);
    b.get("/signup").await;
    let created = b.post("/signup", &[("first_name", "Ada")]).await;
    assert!(created.redirects_to("/consent"), "{:?}", created.location);
    b.get("/consent").await;
    let back = b.consent("allow").await;
    assert!(back.redirects_to(CB), "{:?}", back.location);
    assert_eq!(back.location_param("state").as_deref(), Some("posted-state"));
    let code = back.location_param("code").expect("a code");
    let res = exchange(app, &code, &verifier).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// `POST /oauth2/userinfo` with the token in the header, the form body, or both.
async fn userinfo_post(app: &TestApp, bearer: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.http.post(app.url("/oauth2/userinfo")).form(form);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

async fn oidcc_ensure_post_request_succeeds(db: Db) {
    let app = spawn_app(&db).await;
    let tokens = tokens_through_a_posted_request(&app, "posted@example.com").await;
    let (_, claims) = crate::helpers::jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], "posted-nonce", "the posted nonce reaches the ID token");
}

async fn oidcc_userinfo_get(db: Db) {
    let app = spawn_app(&db).await;
    let tokens = tokens_through_a_posted_request(&app, "get@example.com").await;
    let res = app.userinfo(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["email"], "get@example.com");
}

async fn oidcc_userinfo_post_header(db: Db) {
    let app = spawn_app(&db).await;
    let tokens = tokens_through_a_posted_request(&app, "header@example.com").await;
    let res = userinfo_post(&app, tokens["access_token"].as_str(), &[]).await;
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["email"], "header@example.com");
}

async fn oidcc_userinfo_post_body(db: Db) {
    let app = spawn_app(&db).await;
    let tokens = tokens_through_a_posted_request(&app, "body@example.com").await;
    let token = tokens["access_token"].as_str().unwrap();
    // RFC 6750 §2.2: the token as `access_token` in a form body.
    let res = userinfo_post(&app, None, &[("access_token", token)]).await;
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["email"], "body@example.com");
    // One method only (RFC 6750 §2), and a bad token is still refused.
    let res = userinfo_post(&app, Some(token), &[("access_token", token)]).await;
    assert_error(res, 400, "invalid_request").await;
    let res = userinfo_post(&app, None, &[("access_token", "not-a-token")]).await;
    assert_error(res, 401, "invalid_token").await;
    // Not in a query string, and not on GET.
    let res = app
        .http
        .get(app.url(&format!("/oauth2/userinfo?access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "invalid_token").await;
}

/// A step-up sign-in right after signing in (issue 13, problem 3): with the
/// default `otp.resend_after` (30 s), `prompt=login` shows the sign-in page
/// and a fresh code is sent at once, because the last one was used.
async fn oidcc_prompt_login(db: Db) {
    let app = spawn_app(&db).await;
    assert_eq!(app.state.settings.otp.resend_after.as_secs(), 30);
    let mut b = Browser::new(&app);
    tokens_through_browser(&mut b, "stepup@example.com").await;
    let (page, verifier) = start(&mut b, &[("prompt", "login")]).await;
    assert!(page.redirects_to("/login"), "{:?}", page.location);
    let back = b.sign_in_and_allow("stepup@example.com").await;
    assert!(
        back.redirects_to(CB),
        "{} {:?} {}",
        back.status,
        back.location,
        back.body
    );
    let code = back.location_param("code").expect("a code");
    let res = exchange(&app, &code, &verifier).await;
    let tokens: Value = res.json().await.unwrap();
    let (_, claims) = crate::helpers::jwt_parts(tokens["id_token"].as_str().unwrap());
    assert!(claims["auth_time"].as_i64().is_some());
}
