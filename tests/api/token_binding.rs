//! SPEC §9 "Tokens stay with their client": codes and refresh tokens answer
//! only their own client; a disabled user's access tokens stop everywhere.

use serde_json::Value;

use crate::browser::{sign_up_through_authorize, Browser, CB};
use crate::db_test;
use crate::helpers::{assert_error, spawn_app, Db, Who, ALL, APP, NOREFRESH, SVC};

db_test!(
    another_client_cannot_burn_an_authorization_code,
    another_client_cannot_introspect_a_refresh_token,
    a_disabled_users_access_tokens_are_inactive_without_a_refresh_family,
    a_wrong_verifier_does_not_burn_a_public_clients_code,
);

async fn another_client_cannot_burn_an_authorization_code(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let (callback, verifier) = sign_up_through_authorize(&mut b, "ada@example.com").await;
    let code = callback.location_param("code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", verifier.as_str()),
    ];
    // Client `all` is registered for the same redirect URI and grant: refused, nothing spent...
    assert_error(app.post_form("/oauth2/token", ALL, &form).await, 400, "invalid_grant").await;
    // ...so the code's own client still gets its tokens, and they stay good.
    let res = app.post_form("/oauth2/token", APP, &form).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    assert_error(app.post_form("/oauth2/token", ALL, &form).await, 400, "invalid_grant").await;
    assert_eq!(
        app.introspect(tokens["access_token"].as_str().unwrap()).await["active"],
        true
    );
}

async fn another_client_cannot_introspect_a_refresh_token(db: Db) {
    let app = spawn_app(&db).await;
    let tokens = app.signed_up(APP, Who::Email("ada@example.com")).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    // Another confidential client learns nothing about it...
    let theirs = app.introspect(refresh).await;
    assert_eq!(theirs, serde_json::json!({"active": false}));
    // ...nor can revoke it; its own client can introspect it.
    let res = app.post_form("/oauth2/revoke", SVC, &[("token", refresh)]).await;
    assert_eq!(res.status(), 200);
    let res = app.post_form("/oauth2/introspect", APP, &[("token", refresh)]).await;
    let own: Value = res.json().await.unwrap();
    assert_eq!(own["active"], true);
    assert_eq!(own["token_type"], "refresh_token");
    // Resource servers may introspect access tokens.
    assert_eq!(
        app.introspect(tokens["access_token"].as_str().unwrap()).await["active"],
        true
    );
}

async fn a_disabled_users_access_tokens_are_inactive_without_a_refresh_family(db: Db) {
    let mut settings = crate::helpers::test_settings(&db);
    settings.otp.resend_after = std::time::Duration::ZERO;
    let app = crate::helpers::spawn_with(settings).await;
    let tokens = app.signed_up(NOREFRESH, Who::Email("ada@example.com")).await;
    assert!(tokens.get("refresh_token").is_none());
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);
    let user = app.state.store.find_user("ada@example.com").await.unwrap().unwrap();
    let accounts = sesame::accounts::Accounts::of(&app.state);
    accounts
        .set_disabled(&user, true, sesame::accounts::Actor::Cli)
        .await
        .unwrap();
    assert_eq!(app.introspect(access).await["active"], false);
    assert_eq!(app.userinfo(access).await.status(), 401);
    // Enabled again, new sign-ins work; the old token stays dead.
    accounts
        .set_disabled(&user, false, sesame::accounts::Actor::Cli)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fresh = app.sign_in_with_code(NOREFRESH, Who::Email("ada@example.com")).await;
    let fresh: Value = fresh.json().await.unwrap();
    assert_eq!(
        app.introspect(fresh["access_token"].as_str().unwrap()).await["active"],
        true
    );
    assert_eq!(app.introspect(access).await["active"], false);
}

/// A public client proves itself with its id only: whoever sees its code
/// (a log, a Referer) must not be able to spend it with a wrong verifier.
async fn a_wrong_verifier_does_not_burn_a_public_clients_code(db: Db) {
    let app = spawn_app(&db).await;
    app.account_for("ada@example.com").await;
    let mut b = Browser::new(&app);
    let (verifier, challenge) = crate::browser::pkce();
    let redirect = "http://localhost:5173/cb";
    let path = crate::browser::authorize_path(
        crate::helpers::SPA,
        redirect,
        &[
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    assert!(b.get(&path).await.redirects_to("/login"));
    let page = b.sign_in_and_allow("ada@example.com").await;
    let code = page.location_param("code").expect("a code");
    let exchange = |verifier: String| {
        let (app, code) = (&app, code.clone());
        async move {
            app.http
                .post(app.url("/oauth2/token"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", crate::helpers::SPA),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    assert_error(exchange(crate::browser::pkce().0).await, 400, "invalid_grant").await;
    assert_eq!(exchange(verifier).await.status(), 200);
}
