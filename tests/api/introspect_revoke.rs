use serde_json::Value;

use crate::db_test;
use std::time::Duration;

use crate::helpers::{
    assert_error, basic, jwt_parts, spawn_app, spawn_with, test_settings, Db, Who, MINE, ODD, SPA, SVC,
};

db_test!(
    introspection_describes_an_active_token,
    introspection_of_anything_else_is_inactive,
    introspection_needs_an_authenticated_confidential_client,
    revoking_a_token_makes_it_inactive,
    revoking_unknown_or_foreign_tokens_answers_200_and_changes_nothing,
    deleting_the_client_deactivates_its_tokens,
    a_revocation_made_elsewhere_arrives_within_the_sync_interval,
    strict_revocation_mode_reads_the_database_on_every_check,
    an_expired_access_token_is_refused_everywhere,
);

async fn introspection_describes_an_active_token(db: Db) {
    let app = spawn_app(&db).await;
    let token = app.service_token().await;
    let res = app
        .post_form(
            "/oauth2/introspect",
            ODD,
            &[("token", &token), ("token_type_hint", "access_token")],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], "svc");
    assert_eq!(body["sub"], "svc");
    assert_eq!(body["scope"], "api:read api:write");
    assert_eq!(body["iss"], app.address.as_str());
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["exp"].as_i64().unwrap() > body["iat"].as_i64().unwrap());
}

async fn introspection_of_anything_else_is_inactive(db: Db) {
    let app = spawn_app(&db).await;
    let token = app.service_token().await;
    // Change one payload character (the signature's last character may only carry padding bits).
    let at = token.find('.').unwrap() + 5;
    let swap = if &token[at..at + 1] == "A" { "B" } else { "A" };
    let tampered = format!("{}{}{}", &token[..at], swap, &token[at + 1..]);
    for t in ["garbage", "a.b.c", tampered.as_str(), &"x".repeat(10_000)] {
        let body = app.introspect(t).await;
        assert_eq!(body, serde_json::json!({"active": false}), "{t:.20}");
    }
}

async fn introspection_needs_an_authenticated_confidential_client(db: Db) {
    let app = spawn_app(&db).await;
    let token = app.service_token().await;
    let anonymous = app
        .http
        .post(app.url("/oauth2/introspect"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_error(anonymous, 401, "invalid_client").await;
    let public = app
        .http
        .post(app.url("/oauth2/introspect"))
        .form(&[("token", token.as_str()), ("client_id", SPA)])
        .send()
        .await
        .unwrap();
    assert_error(public, 401, "invalid_client").await;
    let missing = app.post_form("/oauth2/introspect", SVC, &[]).await;
    assert_error(missing, 400, "invalid_request").await;
}

async fn revoking_a_token_makes_it_inactive(db: Db) {
    let app = spawn_app(&db).await;
    let token = app.service_token().await;
    let other = app.service_token().await;
    let res = app
        .post_form(
            "/oauth2/revoke",
            SVC,
            &[("token", &token), ("token_type_hint", "access_token")],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.introspect(&token).await["active"], false);
    assert_eq!(
        app.introspect(&other).await["active"],
        true,
        "only the revoked token is affected"
    );
    let again = app.post_form("/oauth2/revoke", SVC, &[("token", &token)]).await;
    assert_eq!(again.status(), 200, "revoking twice is fine");
    let events = app.audit_event_names().await;
    let revoked = events.iter().filter(|e| *e == "token_revoked").count();
    assert_eq!(revoked, 2, "each revocation is in the audit trail: {events:?}");
}

async fn revoking_unknown_or_foreign_tokens_answers_200_and_changes_nothing(db: Db) {
    let app = spawn_app(&db).await;
    let token = app.service_token().await;
    assert_eq!(
        app.post_form("/oauth2/revoke", SVC, &[("token", "not-a-token")])
            .await
            .status(),
        200
    );
    let foreign = app.post_form("/oauth2/revoke", ODD, &[("token", &token)]).await;
    assert_eq!(foreign.status(), 200);
    assert_eq!(
        app.introspect(&token).await["active"],
        true,
        "another client cannot revoke svc's token"
    );
    let unauthenticated = app
        .http
        .post(app.url("/oauth2/revoke"))
        .header("Authorization", basic(SVC.0, "nope"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_error(unauthenticated, 401, "invalid_client").await;
    assert_error(app.post_form("/oauth2/revoke", SVC, &[]).await, 400, "invalid_request").await;
}

async fn deleting_the_client_deactivates_its_tokens(db: Db) {
    let app = spawn_app(&db).await;
    let res = app.client_credentials(ODD, None).await;
    let token = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.introspect(&token).await["active"], true);
    app.state.store.delete_client(ODD.0).await.unwrap();
    assert_eq!(app.introspect(&token).await["active"], false);
}

/// Revokes `token` the way another node would: in the database only.
async fn revoke_elsewhere(app: &crate::helpers::TestApp, token: &str) {
    let claims = jwt_parts(token).1;
    app.state
        .store
        .revoke(claims["jti"].as_str().unwrap(), claims["exp"].as_i64().unwrap())
        .await
        .unwrap();
}

async fn a_revocation_made_elsewhere_arrives_within_the_sync_interval(db: Db) {
    let mut settings = test_settings(&db);
    settings.server.revocation_sync = Duration::from_millis(300);
    let app = spawn_with(settings).await;
    let token = app.service_token().await;
    assert_eq!(app.introspect(&token).await["active"], true);
    revoke_elsewhere(&app, &token).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(app.introspect(&token).await["active"], false);
}

async fn strict_revocation_mode_reads_the_database_on_every_check(db: Db) {
    let mut settings = test_settings(&db);
    settings.server.revocation_sync = Duration::ZERO;
    let app = spawn_with(settings).await;
    let token = app.service_token().await;
    assert_eq!(app.introspect(&token).await["active"], true);
    revoke_elsewhere(&app, &token).await;
    assert_eq!(app.introspect(&token).await["active"], false, "no delay at all");
    let other = app.service_token().await;
    assert_eq!(
        app.post_form("/oauth2/revoke", SVC, &[("token", &other)])
            .await
            .status(),
        200
    );
    assert_eq!(app.introspect(&other).await["active"], false);
}

/// `tokens.access_ttl` is a real limit (SPEC §1: access tokens expire, and
/// nothing takes one after): set to three seconds (`exp` is whole seconds,
/// so a token lives two to three), a user's token and an admin's token
/// work, then, once expired, userinfo, introspection, the account API and
/// the admin API all refuse them.
async fn an_expired_access_token_is_refused_everywhere(db: Db) {
    let mut settings = test_settings(&db);
    settings.tokens.access_ttl = Duration::from_secs(3);
    let app = spawn_with(settings).await;
    let tokens = app
        .signed_up_with_scope(MINE, Who::Email("brief@example.com"), Some("openid sesame:account"))
        .await;
    let user = tokens["access_token"].as_str().unwrap().to_string();
    let admin = app.admin_token().await;
    assert_eq!(app.userinfo(&user).await.status(), 200);
    assert_eq!(app.introspect(&user).await["active"], true);
    assert_eq!(app.get_bearer("/admin/api/clients", &admin).await.status(), 200);

    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_error(app.userinfo(&user).await, 401, "invalid_token").await;
    assert_eq!(app.introspect(&user).await["active"], false);
    assert_error(
        app.patch_user(&user, &serde_json::json!({"first_name": "Late"})).await,
        401,
        "invalid_token",
    )
    .await;
    assert_error(app.get_bearer("/admin/api/clients", &admin).await, 401, "invalid_token").await;
}
