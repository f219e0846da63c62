//! The OpenID Foundation's RP-Initiated Logout OP plan, one test per module,
//! and OpenID Connect Back-Channel Logout 1.0 against a receiver the test
//! starts (issue 13).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::conformance::{Mode, Rp};
use crate::db_test;
use crate::helpers::{jwt_parts, spawn_app, Db, TestApp, APP};
use crate::peers::{Received, Receiver};

db_test!(
    oidcc_rp_initiated_logout,
    oidcc_rp_initiated_logout_bad_id_token_hint,
    oidcc_rp_initiated_logout_bad_post_logout_redirect_uri,
    oidcc_rp_initiated_logout_modified_id_token_hint,
    oidcc_rp_initiated_logout_no_id_token_hint,
    oidcc_rp_initiated_logout_no_params,
    oidcc_rp_initiated_logout_no_post_logout_redirect_uri,
    oidcc_rp_initiated_logout_no_state,
    oidcc_rp_initiated_logout_only_state,
    oidcc_rp_initiated_logout_query_added_to_post_logout_redirect_uri,
    backchannel_logout_tells_the_client_the_session_signed_in_to,
    backchannel_logout_tells_the_apps_of_a_user_replaced_in_the_same_browser,
    backchannel_logout_follows_sign_out_everywhere_disable_and_delete,
    backchannel_logout_retries_and_never_holds_up_the_sign_out,
);

const AFTER: &str = "http://localhost:3000/";

/// A signed-in RP and the ID token it got.
pub(crate) async fn signed_in<'a>(app: &'a TestApp, email: &str) -> (Rp<'a>, String) {
    let mut rp = Rp::new(app, Mode::Query);
    let answer = rp.flow(email, &[("scope", "openid")]).await;
    let tokens = rp.tokens(&answer).await;
    (rp, tokens["id_token"].as_str().unwrap().to_string())
}

fn logout_path(params: &[(&str, &str)]) -> String {
    format!("/oauth2/logout?{}", serde_urlencoded::to_string(params).unwrap())
}

/// Whether the browser is still signed in (prompt=none is answered with a code).
async fn still_signed_in(rp: &mut Rp<'_>) -> bool {
    let page = rp.authorize(&[("scope", "openid"), ("prompt", "none")]).await;
    rp.must_answer(&page).contains_key("code")
}

async fn oidcc_rp_initiated_logout(db: Db) {
    let app = spawn_app(&db).await;
    let (mut rp, id_token) = signed_in(&app, "logout@example.com").await;
    let page =
        rp.b.get(&logout_path(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", AFTER),
            ("state", "bye"),
        ]))
        .await;
    assert_eq!(page.status, 302);
    assert_eq!(page.location.as_deref(), Some("http://localhost:3000/?state=bye"));
    assert!(!still_signed_in(&mut rp).await, "the session ended");
}

async fn refused_without_redirect(rp: &mut Rp<'_>, params: &[(&str, &str)]) {
    let page = rp.b.get(&logout_path(params)).await;
    assert_eq!(page.status, 400, "an error page");
    assert!(page.location.is_none(), "never redirected");
    assert!(still_signed_in(rp).await, "nobody is signed out by a bad request");
}

async fn oidcc_rp_initiated_logout_bad_id_token_hint(db: Db) {
    let app = spawn_app(&db).await;
    let (mut rp, _) = signed_in(&app, "badhint@example.com").await;
    refused_without_redirect(
        &mut rp,
        &[
            ("id_token_hint", "eyJhbGciOi.bad.hint"),
            ("post_logout_redirect_uri", AFTER),
        ],
    )
    .await;
}

async fn oidcc_rp_initiated_logout_bad_post_logout_redirect_uri(db: Db) {
    let app = spawn_app(&db).await;
    let (mut rp, id_token) = signed_in(&app, "baduri@example.com").await;
    let params = [
        ("id_token_hint", id_token.as_str()),
        ("post_logout_redirect_uri", "https://evil.example/"),
    ];
    refused_without_redirect(&mut rp, &params).await;
}

async fn oidcc_rp_initiated_logout_modified_id_token_hint(db: Db) {
    let app = spawn_app(&db).await;
    let (mut rp, id_token) = signed_in(&app, "modified@example.com").await;
    // Another payload under the same signature.
    let mut parts: Vec<&str> = id_token.split('.').collect();
    let (_, mut claims) = jwt_parts(&id_token);
    claims["sub"] = "someone-else".into();
    let forged = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims.to_string());
    parts[1] = &forged;
    let modified = parts.join(".");
    refused_without_redirect(
        &mut rp,
        &[("id_token_hint", &modified), ("post_logout_redirect_uri", AFTER)],
    )
    .await;
}

/// Without a hint the user confirms first (so a link cannot sign anyone out).
async fn oidcc_rp_initiated_logout_no_id_token_hint(db: Db) {
    let app = spawn_app(&db).await;
    let (mut rp, _) = signed_in(&app, "nohint@example.com").await;
    let ask =
        rp.b.get(&logout_path(&[
            ("client_id", APP.0),
            ("post_logout_redirect_uri", AFTER),
            ("state", "s"),
        ]))
        .await;
    assert_eq!(ask.status, 200, "a confirmation page");
    assert!(still_signed_in(&mut rp).await);
    rp.b.get(&logout_path(&[
        ("client_id", APP.0),
        ("post_logout_redirect_uri", AFTER),
        ("state", "s"),
    ]))
    .await;
    let done =
        rp.b.post(
            "/oauth2/logout",
            &[
                ("confirm", "yes"),
                ("client_id", APP.0),
                ("post_logout_redirect_uri", AFTER),
                ("state", "s"),
            ],
        )
        .await;
    assert_eq!(done.status, 303);
    assert_eq!(done.location.as_deref(), Some("http://localhost:3000/?state=s"));
    assert!(!still_signed_in(&mut rp).await);
}

async fn oidcc_rp_initiated_logout_no_params(db: Db) {
    let app = spawn_app(&db).await;
    let (mut rp, _) = signed_in(&app, "noparams@example.com").await;
    let ask = rp.b.get("/oauth2/logout").await;
    assert_eq!(ask.status, 200);
    let done = rp.b.post("/oauth2/logout", &[("confirm", "yes")]).await;
    assert_eq!(done.status, 200, "signed out, shown here");
    assert!(done.location.is_none());
    assert!(!still_signed_in(&mut rp).await);
}

async fn oidcc_rp_initiated_logout_no_post_logout_redirect_uri(db: Db) {
    let app = spawn_app(&db).await;
    let (mut rp, id_token) = signed_in(&app, "nouri@example.com").await;
    let page = rp.b.get(&logout_path(&[("id_token_hint", &id_token)])).await;
    assert_eq!(page.status, 200);
    assert!(page.location.is_none());
    assert!(!still_signed_in(&mut rp).await);
}

async fn oidcc_rp_initiated_logout_no_state(db: Db) {
    let app = spawn_app(&db).await;
    let (mut rp, id_token) = signed_in(&app, "nostate@example.com").await;
    let page =
        rp.b.get(&logout_path(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", AFTER),
        ]))
        .await;
    assert_eq!(page.location.as_deref(), Some(AFTER), "exactly the registered URI");
    assert!(!still_signed_in(&mut rp).await);
}

async fn oidcc_rp_initiated_logout_only_state(db: Db) {
    let app = spawn_app(&db).await;
    let (mut rp, _) = signed_in(&app, "onlystate@example.com").await;
    let ask = rp.b.get(&logout_path(&[("state", "only")])).await;
    assert_eq!(ask.status, 200);
    let done =
        rp.b.post("/oauth2/logout", &[("confirm", "yes"), ("state", "only")])
            .await;
    assert_eq!(done.status, 200, "no URI to go back to: shown here");
    assert!(done.location.is_none());
    assert!(!still_signed_in(&mut rp).await);
}

async fn oidcc_rp_initiated_logout_query_added_to_post_logout_redirect_uri(db: Db) {
    let app = spawn_app(&db).await;
    let (mut rp, id_token) = signed_in(&app, "query@example.com").await;
    let uri = "http://localhost:3000/logged-out?via=sesame";
    let page =
        rp.b.get(&logout_path(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", uri),
            ("state", "q"),
        ]))
        .await;
    assert_eq!(
        page.location.as_deref(),
        Some("http://localhost:3000/logged-out?via=sesame&state=q"),
        "the registered query is kept"
    );
}

/// Registers `uri` as the `app` client's back-channel logout URI (admin API).
pub(crate) async fn listen_for_logouts(app: &TestApp, client: &str, uri: &str) {
    let admin = app.admin_token().await;
    let res = app
        .http
        .put(app.url(&format!("/admin/api/clients/{client}")))
        .bearer_auth(&admin)
        .json(&json!({"backchannel_logout_uri": uri, "backchannel_logout_session_required": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["backchannel_logout_uri"], uri);
}

/// Waits (up to 10 s) until the receiver got `n` requests.
pub(crate) async fn received(receiver: &Receiver, n: usize) -> Vec<Received> {
    let until = Instant::now() + Duration::from_secs(10);
    while receiver.count() < n && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = receiver.all();
    assert_eq!(all.len(), n, "logout tokens received");
    all
}

/// The logout token of a request, checked as Back-Channel Logout §2.6 asks
/// an RP to: signature against the JWKS, iss, aud, iat, jti, events, no nonce.
async fn logout_token(app: &TestApp, got: &Received) -> Value {
    assert!(got
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")));
    let form = got.form();
    let (_, token) = form.iter().find(|(k, _)| k == "logout_token").expect("a logout_token");
    let (header, _) = jwt_parts(token);
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(header["alg"], "RS256", "the client's id_token_signed_response_alg");
    let claims = app.verified_by_jwks(token).await;
    assert_eq!(claims["iss"], app.address.as_str());
    assert_eq!(claims["aud"], APP.0);
    assert!(claims["iat"].as_i64().is_some() && claims["exp"].as_i64() > claims["iat"].as_i64());
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert_eq!(
        claims["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert!(claims.get("nonce").is_none(), "a logout token never has a nonce (§2.4)");
    claims
}

/// Only the session that signs out is named: the same user signed in from a
/// second browser stays; the ID tokens a session got (a first sign-in and a
/// forced one, `prompt=login`) share its `sid`, so one logout token covers them.
async fn backchannel_logout_tells_the_client_the_session_signed_in_to(db: Db) {
    let app = spawn_app(&db).await;
    let receiver = Receiver::start().await;
    let other = Receiver::start().await;
    listen_for_logouts(&app, APP.0, &format!("{}/backchannel", receiver.url)).await;
    // A client this session never signed in to hears nothing.
    listen_for_logouts(&app, "spa", &format!("{}/spa", other.url)).await;
    let (mut rp, id_token) = signed_in(&app, "bcl@example.com").await;
    let (_, id) = jwt_parts(&id_token);
    let page = rp.authorize(&[("scope", "openid"), ("prompt", "login")]).await;
    assert!(page.redirects_to("/login"));
    let again = rp.sign_in("bcl@example.com").await;
    let again = rp.tokens(&again).await;
    let (_, again) = jwt_parts(again["id_token"].as_str().unwrap());
    assert_eq!(again["sid"], id["sid"], "one browser session, one sid");
    let (_, elsewhere) = signed_in(&app, "bcl@example.com").await;
    let (_, elsewhere) = jwt_parts(&elsewhere);
    assert_ne!(elsewhere["sid"], id["sid"]);

    let page =
        rp.b.get(&logout_path(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", AFTER),
        ]))
        .await;
    assert_eq!(page.status, 302);
    let got = received(&receiver, 1).await;
    assert_eq!(got[0].path, "/backchannel");
    let claims = logout_token(&app, &got[0]).await;
    assert_eq!(claims["sub"], id["sub"]);
    assert_eq!(claims["sid"], id["sid"], "the sid of the ID tokens the RP holds");
    // Audited once the client's answer is in; nothing more is sent.
    let until = Instant::now() + Duration::from_secs(5);
    while !app.audit_event_names().await.iter().any(|n| n == "backchannel_logout") {
        assert!(Instant::now() < until, "the delivery is audited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 1, "the other browser's session is not named");
    assert_eq!(other.count(), 0);
}

/// Another user signing in over a session in the same browser ends it: its
/// apps are told.
async fn backchannel_logout_tells_the_apps_of_a_user_replaced_in_the_same_browser(db: Db) {
    let app = spawn_app(&db).await;
    let receiver = Receiver::start().await;
    listen_for_logouts(&app, APP.0, &format!("{}/bc", receiver.url)).await;
    let (mut rp, id_token) = signed_in(&app, "first-user@example.com").await;
    let (_, first) = jwt_parts(&id_token);
    let page = rp.authorize(&[("scope", "openid"), ("prompt", "login")]).await;
    assert!(page.redirects_to("/login"));
    rp.flow_from_login("second-user@example.com").await;
    let got = received(&receiver, 1).await;
    let claims = logout_token(&app, &got[0]).await;
    assert_eq!(claims["sub"], first["sub"]);
    assert_eq!(claims["sid"], first["sid"]);
}

async fn backchannel_logout_follows_sign_out_everywhere_disable_and_delete(db: Db) {
    let app = spawn_app(&db).await;
    let receiver = Receiver::start().await;
    listen_for_logouts(&app, APP.0, &format!("{}/bc", receiver.url)).await;

    // Sign out everywhere, from the account page.
    let (mut rp, id_token) = signed_in(&app, "everywhere@example.com").await;
    let account = rp.b.get("/account").await;
    assert_eq!(account.status, 200);
    let out = rp.b.post("/account/signout-everywhere", &[]).await;
    assert!(out.redirects_to("/login"));
    let got = received(&receiver, 1).await;
    assert_eq!(logout_token(&app, &got[0]).await["sid"], jwt_parts(&id_token).1["sid"]);

    // Disabled by an admin through the admin API.
    let (_, id_token) = signed_in(&app, "disabled@example.com").await;
    let sub = jwt_parts(&id_token).1["sub"].as_str().unwrap().to_string();
    let admin = app.admin_token().await;
    let res = app
        .http
        .put(app.url(&format!("/admin/api/users/{sub}")))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let got = received(&receiver, 2).await;
    assert_eq!(logout_token(&app, &got[1]).await["sub"], sub.as_str());

    // Deleted with the CLI, which waits for the delivery before it exits.
    let (_, id_token) = signed_in(&app, "deleted@example.com").await;
    let sub = jwt_parts(&id_token).1["sub"].as_str().unwrap().to_string();
    let out = crate::cli::sesame_env(
        &db,
        &["user", "delete", &sub],
        &[("SESAME_ISSUER", app.address.as_str())],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(receiver.count(), 3, "delivered before the CLI exited");
    assert_eq!(logout_token(&app, &receiver.all()[2]).await["sub"], sub.as_str());
}

async fn backchannel_logout_retries_and_never_holds_up_the_sign_out(db: Db) {
    let app = spawn_app(&db).await;
    let receiver = Receiver::start().await;
    listen_for_logouts(&app, APP.0, &format!("{}/bc", receiver.url)).await;
    let (mut rp, id_token) = signed_in(&app, "retry@example.com").await;
    receiver.answer_with(503);
    receiver.delay(Duration::from_millis(1500));
    let started = Instant::now();
    let page = rp.b.get(&logout_path(&[("id_token_hint", &id_token)])).await;
    assert_eq!(page.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the sign-out does not wait for the client ({:?})",
        started.elapsed()
    );
    // A first try and two retries (after 1 s and 4 s), then it gives up.
    let got = received(&receiver, 3).await;
    for g in &got {
        logout_token(&app, g).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.count(), 3, "no fourth try");
}
