//! Audiences (RFC 9068 §3, RFC 8707): an access token's `aud` names the
//! resource servers it is for, each one its client may ask for; without a
//! `resource` it is for the client itself.

use serde_json::{json, Value};

use crate::browser::{pkce, Browser, CB};
use crate::db_test;
use crate::helpers::{assert_error, jwt_parts, spawn_with, test_settings, Db, TestApp, Who, ALL, API, FILES};

db_test!(
    a_client_token_names_the_resources_asked_for,
    a_user_token_keeps_its_resources_through_refresh_and_may_narrow_them,
    the_code_flow_carries_the_resources_of_the_authorization_request,
);

async fn app(db: &Db) -> TestApp {
    let mut s = test_settings(db);
    s.otp.resend_after = std::time::Duration::ZERO;
    spawn_with(s).await
}

fn aud(body: &Value) -> Value {
    jwt_parts(body["access_token"].as_str().unwrap()).1["aud"].clone()
}

async fn client_token(app: &TestApp, resources: &[&str]) -> reqwest::Response {
    let mut form = vec![("grant_type", "client_credentials"), ("scope", "sesame:admin")];
    form.extend(resources.iter().map(|r| ("resource", *r)));
    app.post_form("/oauth2/token", ALL, &form).await
}

async fn a_client_token_names_the_resources_asked_for(db: Db) {
    let app = app(&db).await;
    let body: Value = client_token(&app, &[API]).await.json().await.unwrap();
    assert_eq!(aud(&body), API);
    let body: Value = client_token(&app, &[API, FILES]).await.json().await.unwrap();
    assert_eq!(aud(&body), json!([API, FILES]));
    let body: Value = client_token(&app, &[]).await.json().await.unwrap();
    assert_eq!(aud(&body), "all");
    // Introspection tells a resource server whom the token is for.
    assert_eq!(
        app.introspect(body["access_token"].as_str().unwrap()).await["aud"],
        "all"
    );
    let res = client_token(&app, &["https://elsewhere.example.com"]).await;
    assert_error(res, 400, "invalid_target").await;
    // One value is one URI: two smuggled in one value, or an empty one, are refused.
    let two_in_one = format!("{API} {FILES}");
    for bad in [two_in_one.as_str(), ""] {
        assert_error(client_token(&app, &[bad]).await, 400, "invalid_target").await;
    }
}

async fn a_user_token_keeps_its_resources_through_refresh_and_may_narrow_them(db: Db) {
    let app = app(&db).await;
    app.account_for("ada@example.com").await;
    assert_eq!(app.getcode(ALL, Who::Email("ada@example.com")).await.status(), 200);
    let code = app.outbox_code().await;
    let form = [
        ("grant_type", "otp"),
        ("email", "ada@example.com"),
        ("code", code.as_str()),
        ("scope", "openid"),
        ("resource", API),
        ("resource", FILES),
    ];
    let res = app.post_form("/oauth2/token", ALL, &form).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(aud(&body), json!([API, FILES]));
    // Userinfo still takes it.
    assert_eq!(app.userinfo(body["access_token"].as_str().unwrap()).await.status(), 200);
    let refresh = |token: String, resource: Option<&'static str>| {
        let app = &app;
        async move {
            let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token.as_str())];
            if let Some(r) = resource {
                form.push(("resource", r));
            }
            app.post_form("/oauth2/token", ALL, &form).await
        }
    };
    let res = refresh(body["refresh_token"].as_str().unwrap().into(), None).await;
    let again: Value = res.json().await.unwrap();
    assert_eq!(aud(&again), json!([API, FILES]));
    let res = refresh(again["refresh_token"].as_str().unwrap().into(), Some(FILES)).await;
    let narrowed: Value = res.json().await.unwrap();
    assert_eq!(aud(&narrowed), FILES);
    // Not granted, not given.
    let res = refresh(
        narrowed["refresh_token"].as_str().unwrap().into(),
        Some("https://elsewhere.example.com"),
    )
    .await;
    assert_error(res, 400, "invalid_target").await;
}

async fn the_code_flow_carries_the_resources_of_the_authorization_request(db: Db) {
    let app = app(&db).await;
    app.account_for("ada@example.com").await;
    let mut b = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let refused = crate::browser::authorize_path(
        ALL.0,
        CB,
        &[("scope", "openid"), ("resource", "https://elsewhere.example.com")],
    );
    let page = b.get(&refused).await;
    assert_eq!(page.location_param("error").as_deref(), Some("invalid_target"));
    let path = crate::browser::authorize_path(
        ALL.0,
        CB,
        &[
            ("scope", "openid"),
            ("resource", API),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    assert!(b.get(&path).await.redirects_to("/login"));
    let page = b.sign_in_and_allow("ada@example.com").await;
    let code = page.location_param("code").expect("a code");
    let res = crate::browser::exchange_for(&app, ALL, &code, &verifier).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(aud(&body), API);
}
