//! The OTP API's error paths: client authentication, the otp grant, bad
//! identifiers, secret_identifier binding and reuse, account conflicts.

use serde_json::json;

use crate::db_test;
use crate::helpers::{assert_error, basic, spawn_app, spawn_with, test_settings, Db, Who, APP, APP2, SVC};

db_test!(
    the_otp_api_needs_an_authenticated_client_with_the_otp_grant,
    malformed_identifiers_are_invalid_request,
    a_secret_identifier_is_single_use_and_bound_to_its_client_and_identifier,
    account_creation_refuses_conflicts_and_mismatches,
    auto_create_accounts_lets_the_grant_create_the_account,
    a_secret_identifier_expires_after_the_code_ttl,
);

async fn the_otp_api_needs_an_authenticated_client_with_the_otp_grant(db: Db) {
    let app = spawn_app(&db).await;
    let who = Who::Email("a@example.com");
    assert_error(app.getcode((APP.0, "wrong"), who).await, 401, "invalid_client").await;
    let res = app
        .http
        .post(app.url("/otp/getcode/"))
        .form(&[("email", "a@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["www-authenticate"], r#"Basic realm="sesame""#);
    assert_error(res, 401, "invalid_client").await;
    assert_error(app.getcode(SVC, who).await, 403, "unauthorized_client").await;
    assert_error(app.verifycode(SVC, who, "123456").await, 403, "unauthorized_client").await;
    let res = app
        .post_form(
            "/oauth2/token",
            SVC,
            &[("grant_type", "otp"), ("email", "a@example.com"), ("code", "123456")],
        )
        .await;
    assert_error(res, 400, "unauthorized_client").await;
    // Without the trailing slash, and as JSON, the API answers the same.
    let res = app
        .http
        .post(app.url("/otp/getcode"))
        .header("Authorization", basic(APP.0, APP.1))
        .json(&json!({"email": "a@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn malformed_identifiers_are_invalid_request(db: Db) {
    let app = spawn_app(&db).await;
    for form in [
        vec![],
        vec![("phone", "12")],
        vec![("email", "not-an-email")],
        vec![("phone", "+14155550123"), ("email", "a@example.com")],
        vec![("email", "a@example.com"), ("locale", "<script>")],
    ] {
        let res = app.post_form("/otp/getcode/", APP, &form).await;
        assert_error(res, 400, "invalid_request").await;
    }
    assert_error(
        app.post_form("/otp/verifycode/", APP, &[("email", "a@example.com")])
            .await,
        400,
        "invalid_request",
    )
    .await;
}

async fn a_secret_identifier_is_single_use_and_bound_to_its_client_and_identifier(db: Db) {
    let app = spawn_app(&db).await;
    let who = Who::Email("single@example.com");
    let secret = app.verified(APP, who).await;
    assert_eq!(
        app.create_user(APP, &json!({"secret_identifier": secret, "auto_username": true}))
            .await
            .status(),
        201
    );
    // Another client cannot use it, nor can it be used for another identifier.
    assert_error(app.otp_token(APP2, who, &secret).await, 400, "invalid_grant").await;
    assert_error(
        app.otp_token(APP, Who::Email("other@example.com"), &secret).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_eq!(app.otp_token(APP, who, &secret).await.status(), 200);
    assert_error(app.otp_token(APP, who, &secret).await, 400, "invalid_grant").await;
    // Once used it cannot create an account either.
    let res = app
        .create_user(APP, &json!({"secret_identifier": secret, "auto_username": true}))
        .await;
    assert_error(res, 400, "invalid_request").await;
}

async fn account_creation_refuses_conflicts_and_mismatches(db: Db) {
    let app = spawn_app(&db).await;
    let phone = Who::Phone("+14155550140");
    let secret = app.verified(APP, phone).await;
    let cases = [
        (
            json!({"secret_identifier": secret, "auto_username": true, "account": {"phone": "+14155550141"}}),
            "differs",
        ),
        (json!({"secret_identifier": secret}), "username"),
        (json!({"secret_identifier": secret, "username": "x"}), "username"),
        (
            json!({"secret_identifier": secret, "auto_username": true, "password": "short"}),
            "password",
        ),
        (
            json!({"secret_identifier": secret, "auto_username": "yes"}),
            "auto_username",
        ),
        (
            json!({"secret_identifier": "made-up", "auto_username": true}),
            "secret_identifier",
        ),
        (json!({"auto_username": true}), "secret_identifier"),
    ];
    for (body, mention) in cases {
        let res = app.create_user(APP, &body).await;
        let err = assert_error(res, 400, "invalid_request").await;
        assert!(err["error_description"].as_str().unwrap().contains(mention), "{err}");
    }
    let res = app
        .http
        .put(app.url("/api/v1/user/"))
        .header("Authorization", basic(APP.0, APP.1))
        .header("Content-Type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_request").await;

    let ok = app
        .create_user(APP, &json!({"secret_identifier": secret, "username": "Lovelace"}))
        .await;
    assert_eq!(ok.status(), 201);
    let again = app
        .create_user(APP, &json!({"secret_identifier": secret, "auto_username": true}))
        .await;
    assert_error(again, 409, "conflict").await;
    // The username is unique whatever its case; POST /api/v1/users is the same endpoint.
    let other = app.verified(APP, Who::Phone("+14155550142")).await;
    let res = app
        .http
        .post(app.url("/api/v1/users"))
        .header("Authorization", basic(APP.0, APP.1))
        .json(&json!({"secret_identifier": other, "username": "lovelace"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 409, "conflict").await;
}

async fn auto_create_accounts_lets_the_grant_create_the_account(db: Db) {
    let mut settings = test_settings(&db);
    settings.otp.auto_create_accounts = true;
    let app = spawn_with(settings).await;
    let who = Who::Phone("+14155550150");
    let secret = app.verified(APP, who).await;
    let res = app.otp_token(APP, who, &secret).await;
    assert_eq!(res.status(), 200);
    let user = app
        .state
        .store
        .user_by_identifier("phone", "+14155550150")
        .await
        .unwrap()
        .expect("the account was created");
    assert!(user.phone_verified);
    assert!(user.username.unwrap().starts_with("user_"));
}

async fn a_secret_identifier_expires_after_the_code_ttl(db: Db) {
    let mut settings = test_settings(&db);
    // Expiry is kept in whole seconds: 2 s leaves the code alive long enough to verify it.
    settings.otp.ttl = std::time::Duration::from_secs(2);
    let app = spawn_with(settings).await;
    let who = Who::Email("slow@example.com");
    let secret = app.verified(APP, who).await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let res = app
        .create_user(APP, &json!({"secret_identifier": secret, "auto_username": true}))
        .await;
    assert_error(res, 400, "invalid_request").await;
    assert_error(app.otp_token(APP, who, &secret).await, 400, "invalid_grant").await;
}
