use serde_json::Value;

use crate::db_test;
use crate::helpers::{assert_error, jwt_parts, spawn_app, spawn_with, test_settings, Db, APP, ODD, SPA, SVC};

db_test!(
    client_credentials_issues_an_rfc9068_access_token,
    client_secret_post_authenticates_too,
    basic_credentials_are_form_url_decoded,
    wrong_or_unknown_client_is_invalid_client_with_a_challenge,
    a_grant_the_client_lacks_is_unauthorized_client,
    unknown_grant_type_is_unsupported_grant_type,
    scope_beyond_the_clients_is_invalid_scope,
    public_clients_cannot_use_client_credentials,
    tokens_verify_against_the_published_jwks_for_every_algorithm,
);

async fn client_credentials_issues_an_rfc9068_access_token(db: Db) {
    let app = spawn_app(&db).await;
    let res = app.client_credentials(SVC, Some("api:read")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "api:read");
    assert!(body.get("refresh_token").is_none(), "RFC 6749 §4.4.3: no refresh token");
    let (header, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(
        header["kid"],
        app.state
            .keys
            .ring()
            .current_kid(sesame::config::SigningAlg::ES256)
            .unwrap()
    );
    assert_eq!(claims["iss"], app.address.as_str());
    assert_eq!(claims["sub"], "svc");
    assert_eq!(claims["client_id"], "svc");
    // RFC 9068 §3: no `resource` asked for, so the token is for the client itself.
    assert_eq!(claims["aud"], "svc");
    assert_eq!(claims["scope"], "api:read");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 900, "integer iat/exp, 15 minutes apart");

    let all: Value = app.client_credentials(SVC, None).await.json().await.unwrap();
    assert_eq!(
        all["scope"], "api:read api:write",
        "no scope asked: all the client's scopes"
    );
}

async fn client_secret_post_authenticates_too(db: Db) {
    let app = spawn_app(&db).await;
    let res = app
        .http
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", SVC.0),
            ("client_secret", SVC.1),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let json = app
        .http
        .post(app.url("/oauth2/token"))
        .json(&serde_json::json!({"grant_type": "client_credentials", "client_id": SVC.0, "client_secret": SVC.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 200, "JSON bodies are accepted as well");
}

async fn basic_credentials_are_form_url_decoded(db: Db) {
    let app = spawn_app(&db).await;
    assert_eq!(app.client_credentials(ODD, None).await.status(), 200);
    // The raw (not form-encoded) secret in Basic must not be accepted as the same thing.
    let raw = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", ODD.0, "p@ss:w0rd plus/sl%sh é")
        )
    );
    let res = app
        .http
        .post(app.url("/oauth2/token"))
        .header("Authorization", raw)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

async fn wrong_or_unknown_client_is_invalid_client_with_a_challenge(db: Db) {
    let app = spawn_app(&db).await;
    for creds in [(SVC.0, "wrong"), ("nobody", "whatever"), (SVC.0, "")] {
        let res = app.client_credentials(creds, None).await;
        assert_eq!(res.headers()["www-authenticate"], r#"Basic realm="sesame""#);
        assert_error(res, 401, "invalid_client").await;
    }
    let none = app
        .http
        .post(app.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_error(none, 401, "invalid_client").await;
    let garbage = app
        .http
        .post(app.url("/oauth2/token"))
        .header("Authorization", "Basic !!!")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_error(garbage, 401, "invalid_client").await;
}

async fn a_grant_the_client_lacks_is_unauthorized_client(db: Db) {
    let app = spawn_app(&db).await;
    let res = app.client_credentials(APP, None).await;
    assert_error(res, 400, "unauthorized_client").await;
}

async fn unknown_grant_type_is_unsupported_grant_type(db: Db) {
    let app = spawn_app(&db).await;
    let res = app
        .post_form("/oauth2/token", SVC, &[("grant_type", "urn:example:nope")])
        .await;
    assert_error(res, 400, "unsupported_grant_type").await;
    let missing = app.post_form("/oauth2/token", SVC, &[]).await;
    assert_error(missing, 400, "invalid_request").await;
}

async fn scope_beyond_the_clients_is_invalid_scope(db: Db) {
    let app = spawn_app(&db).await;
    assert_error(
        app.client_credentials(SVC, Some("api:read admin")).await,
        400,
        "invalid_scope",
    )
    .await;
    assert_error(
        app.client_credentials(SVC, Some("bad\"scope")).await,
        400,
        "invalid_scope",
    )
    .await;
}

async fn public_clients_cannot_use_client_credentials(db: Db) {
    let app = spawn_app(&db).await;
    let res = app
        .http
        .post(app.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", SPA)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client");
}

async fn tokens_verify_against_the_published_jwks_for_every_algorithm(db: Db) {
    for (alg, kty) in [("ES256", "EC"), ("RS256", "RSA"), ("EdDSA", "OKP")] {
        let mut settings = test_settings(&db);
        settings.tokens.signing_alg = serde_json::from_value(Value::String(alg.into())).unwrap();
        let app = spawn_with(settings).await;
        let token = app.service_token().await;
        let (header, _) = jwt_parts(&token);
        assert_eq!(header["alg"], alg);
        let jwks: Value = app.get("/oauth2/jwks").await.json().await.unwrap();
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"]);
        assert_eq!(key.expect("the token's kid is published")["kty"], kty);
        assert_eq!(app.verified_by_jwks(&token).await["sub"], "svc");
    }
}
