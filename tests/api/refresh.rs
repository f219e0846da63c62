//! Refresh tokens: rotation on every use, reuse revokes the family (and the
//! access tokens issued from it), binding to the client, revocation, userinfo.

use serde_json::Value;

use crate::db_test;
use crate::helpers::{assert_error, spawn_app, Db, Who, APP, APP2};

db_test!(
    refresh_rotates_and_a_reused_token_revokes_the_family,
    a_refresh_token_is_bound_to_its_client_and_scope,
    revoking_a_refresh_token_revokes_its_family,
    userinfo_needs_a_live_openid_token,
    a_refresh_token_family_ends_at_its_absolute_lifetime,
    racing_refreshes_of_one_token_rotate_it_once,
);

fn field(v: &Value, name: &str) -> String {
    v[name].as_str().unwrap().to_string()
}

async fn refresh_rotates_and_a_reused_token_revokes_the_family(db: Db) {
    let app = spawn_app(&db).await;
    let first = app.signed_up(APP, Who::Email("rot@example.com")).await;
    let r1 = field(&first, "refresh_token");
    let res = app.refresh(APP, &r1).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let second: Value = res.json().await.unwrap();
    let r2 = field(&second, "refresh_token");
    assert_ne!(r1, r2, "rotated on every use");
    assert!(second["id_token"].as_str().is_some());
    let access2 = field(&second, "access_token");
    assert_eq!(app.introspect(&access2).await["active"], true);
    assert_eq!(app.introspect_as(APP, &r2).await["active"], true);
    assert_eq!(
        app.introspect_as(APP, &r1).await["active"],
        false,
        "a rotated refresh token is no longer active"
    );

    // Replaying the rotated token: refused, and the whole family dies.
    assert_error(app.refresh(APP, &r1).await, 400, "invalid_grant").await;
    assert_error(app.refresh(APP, &r2).await, 400, "invalid_grant").await;
    assert_eq!(
        app.introspect(&access2).await["active"],
        false,
        "access tokens from the family are revoked"
    );
    assert_eq!(app.introspect(&field(&first, "access_token")).await["active"], false);
    let events: Vec<String> = app.audit_event_names().await;
    assert!(events.contains(&"refresh_reuse".to_string()));

    // Another sign-in of the same user is a separate family and unaffected.
    let other = app.signed_up(APP2, Who::Email("rot2@example.com")).await;
    assert_eq!(app.refresh(APP2, &field(&other, "refresh_token")).await.status(), 200);
}

async fn a_refresh_token_is_bound_to_its_client_and_scope(db: Db) {
    let app = spawn_app(&db).await;
    let tokens = app.signed_up(APP, Who::Email("bind@example.com")).await;
    let r = field(&tokens, "refresh_token");
    assert_error(app.refresh(APP2, &r).await, 400, "invalid_grant").await;
    let res = app
        .post_form(
            "/oauth2/token",
            APP,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &r),
                ("scope", "openid admin"),
            ],
        )
        .await;
    assert_error(res, 400, "invalid_scope").await;
    let res = app
        .post_form(
            "/oauth2/token",
            APP,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &r),
                ("scope", "openid email"),
            ],
        )
        .await;
    assert_eq!(
        res.status(),
        200,
        "the client's failed attempts did not spend the token"
    );
    let narrowed: Value = res.json().await.unwrap();
    assert_eq!(narrowed["scope"], "email openid");
    assert_error(app.refresh(APP, "not-a-token").await, 400, "invalid_grant").await;
    assert_error(
        app.post_form("/oauth2/token", APP, &[("grant_type", "refresh_token")])
            .await,
        400,
        "invalid_request",
    )
    .await;
}

async fn revoking_a_refresh_token_revokes_its_family(db: Db) {
    let app = spawn_app(&db).await;
    let tokens = app.signed_up(APP, Who::Phone("+14155550180")).await;
    let (r, a) = (field(&tokens, "refresh_token"), field(&tokens, "access_token"));
    assert_eq!(
        app.post_form("/oauth2/revoke", APP2, &[("token", &r)]).await.status(),
        200
    );
    assert_eq!(
        app.introspect_as(APP, &r).await["active"],
        true,
        "another client cannot revoke it"
    );
    assert_eq!(
        app.post_form(
            "/oauth2/revoke",
            APP,
            &[("token", &r), ("token_type_hint", "refresh_token")]
        )
        .await
        .status(),
        200
    );
    assert_eq!(app.introspect_as(APP, &r).await["active"], false);
    assert_eq!(app.introspect(&a).await["active"], false);
    assert_error(app.refresh(APP, &r).await, 400, "invalid_grant").await;
    let events = app.audit_event_names().await;
    let revoked = events.iter().filter(|e| *e == "refresh_revoked").count();
    assert_eq!(
        revoked, 1,
        "the revocation is in the audit trail, the refused one not: {events:?}"
    );
}

async fn userinfo_needs_a_live_openid_token(db: Db) {
    let app = spawn_app(&db).await;
    let none = app.get("/oauth2/userinfo").await;
    assert_eq!(
        none.headers()["www-authenticate"],
        r#"Bearer realm="sesame", error="invalid_token""#
    );
    assert_error(none, 401, "invalid_token").await;
    let bad = app.userinfo("junk").await;
    assert_error(bad, 401, "invalid_token").await;
    let service = app.service_token().await;
    let res = app.userinfo(&service).await;
    assert_error(res, 403, "insufficient_scope").await;
    let tokens = app.signed_up(APP, Who::Email("info@example.com")).await;
    let at = field(&tokens, "access_token");
    let res = app
        .http
        .post(app.url("/oauth2/userinfo"))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["email"], "info@example.com");
    assert_eq!(
        app.post_form("/oauth2/revoke", APP, &[("token", &at)]).await.status(),
        200
    );
    let res = app.userinfo(&at).await;
    assert_error(res, 401, "invalid_token").await;
}

async fn a_refresh_token_family_ends_at_its_absolute_lifetime(db: Db) {
    let mut settings = crate::helpers::test_settings(&db);
    settings.tokens.refresh_ttl = std::time::Duration::from_secs(2);
    let app = crate::helpers::spawn_with(settings).await;
    let tokens = app.signed_up(APP, Who::Email("ttl@example.com")).await;
    let res = app.refresh(APP, &field(&tokens, "refresh_token")).await;
    assert_eq!(res.status(), 200);
    let rotated = field(&res.json::<Value>().await.unwrap(), "refresh_token");
    // Rotation does not extend the family: it ends 2 s after the sign-in.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(app.introspect_as(APP, &rotated).await["active"], false);
    assert_error(app.refresh(APP, &rotated).await, 400, "invalid_grant").await;
}

/// Single use under a race: ten refreshes of one refresh token at once get
/// one new pair; the others are refused (and, as a reuse, end the family,
/// so the winner's new refresh token is refused too).
async fn racing_refreshes_of_one_token_rotate_it_once(db: Db) {
    let app = spawn_app(&db).await;
    let first = app.signed_up(APP, Who::Email("racing-refresh@example.com")).await;
    let token = field(&first, "refresh_token");
    let tries = (0..10).map(|_| app.refresh(APP, &token));
    let answers = futures_util::future::join_all(tries).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
    let winner = answers.into_iter().find(|r| r.status() == 200).unwrap();
    let rotated: Value = winner.json().await.unwrap();
    assert_error(
        app.refresh(APP, &field(&rotated, "refresh_token")).await,
        400,
        "invalid_grant",
    )
    .await;
}
