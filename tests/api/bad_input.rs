use crate::db_test;
use crate::helpers::{assert_error, basic, spawn_app, Db, APP, SVC};

db_test!(
    malformed_bodies_are_json_4xx_never_500,
    a_repeated_json_name_or_bytes_that_are_not_utf8_are_refused_everywhere,
    oversized_bodies_are_413_json,
    unknown_paths_and_methods_are_json_errors
);

async fn malformed_bodies_are_json_4xx_never_500(db: Db) {
    let app = spawn_app(&db).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{\"grant_type\":".to_vec()),
        ("application/json", b"[\"client_credentials\"]".to_vec()),
        ("application/json", b"{\"grant_type\":{\"nested\":1}}".to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"grant_type=client_credentials&grant_type=client_credentials".to_vec(),
        ),
        ("application/x-www-form-urlencoded", vec![0xff, 0xfe, b'=', 0x80]),
        ("text/plain", b"grant_type=client_credentials".to_vec()),
    ];
    for (ct, body) in cases {
        let res = app
            .http
            .post(app.url("/oauth2/token"))
            .header("Authorization", basic(SVC.0, SVC.1))
            .header("Content-Type", ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "invalid_request").await;
    }
}

async fn oversized_bodies_are_413_json(db: Db) {
    let app = spawn_app(&db).await;
    let big = format!("grant_type=client_credentials&pad={}", "a".repeat(70 * 1024));
    let res = app
        .http
        .post(app.url("/oauth2/token"))
        .header("Authorization", basic(SVC.0, SVC.1))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_error(res, 413, "invalid_request").await;
}

async fn unknown_paths_and_methods_are_json_errors(db: Db) {
    let app = spawn_app(&db).await;
    assert_error(app.get("/nope").await, 404, "not_found").await;
    // RFC 9110 §15.5.6: a 405 names the methods the path serves, on the APIs and the pages.
    for (method, path, allow) in [
        ("GET", "/oauth2/token", "POST"),
        ("DELETE", "/oauth2/introspect", "POST"),
        ("PUT", "/oauth2/userinfo", "GET, POST"),
        ("POST", "/admin/api/users", "GET"),
        ("PATCH", "/admin/api/clients/demo", "GET, PUT, DELETE"),
        ("DELETE", "/oauth2/authorize", "GET, POST"),
        ("GET", "/login/resend", "POST"),
        ("POST", "/.well-known/openid-configuration", "GET"),
    ] {
        let res = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_string())
                .as_deref(),
            Some(allow),
            "{method} {path}"
        );
        assert_error(res, 405, "method_not_allowed").await;
    }
}

/// helper-28's probe: `{"email":"a@…","email":"b@…"}` sent a code to b@…
/// (the last name won), and `email=%ff%fe@example.com` sent one to
/// `��@example.com` (decoded lossily). Both are malformed input: a 400 on
/// the API, an error page on the pages, and nothing sent.
async fn a_repeated_json_name_or_bytes_that_are_not_utf8_are_refused_everywhere(db: Db) {
    let app = spawn_app(&db).await;
    let post = |path: &'static str, ct: &'static str, body: &'static [u8]| {
        app.http
            .post(app.url(path))
            .header("Authorization", basic(APP.0, APP.1))
            .header("Content-Type", ct)
            .body(body)
            .send()
    };
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    for (path, ct, body) in [
        (
            "/otp/getcode/",
            json,
            &br#"{"email":"a@example.com","email":"b@example.com"}"#[..],
        ),
        ("/otp/getcode/", form, b"email=%ff%fe@example.com"),
        ("/otp/getcode/", form, b"email=caf%C3@example.com"),
        (
            "/oauth2/token",
            json,
            br#"{"grant_type":"otp","grant_type":"password"}"#,
        ),
        (
            "/api/v1/users",
            json,
            br#"{"secret_identifier":"x","account":{"phone":"1","phone":"2"}}"#,
        ),
    ] {
        let res = post(path, ct, body).await.unwrap();
        let body = assert_error(res, 400, "invalid_request").await;
        let said = body["error_description"].as_str().unwrap();
        assert!(said.contains("repeated") || said.contains("UTF-8"), "{path}: {said}");
    }
    let outbox: serde_json::Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    assert_eq!(outbox.as_array().unwrap().len(), 0, "nothing sent: {outbox}");

    // The admin API too (helper-29): a second `redirect_uris` was stored, a
    // second `is_admin` made the user an admin.
    let admin = app.admin_token().await;
    let res = app
        .http
        .post(app.url("/admin/api/clients"))
        .bearer_auth(&admin)
        .header("Content-Type", json)
        .body(r#"{"client_name":"X","redirect_uris":["https://app.example/cb"],"redirect_uris":["https://evil.example/cb"]}"#)
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 400, "invalid_client_metadata").await;
    assert!(
        body["error_description"].as_str().unwrap().contains("repeated"),
        "{body}"
    );
    let user = app.account_for("plain@example.com").await;
    let res = app
        .http
        .put(app.url(&format!("/admin/api/users/{}", user.id)))
        .bearer_auth(&admin)
        .header("Content-Type", json)
        .body(r#"{"is_admin":false,"is_admin":true}"#)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_request").await;
    assert!(!app.state.store.user(&user.id).await.unwrap().unwrap().is_admin);

    // The pages: the sign-in form and /oauth2/authorize.
    let mut b = crate::browser::Browser::new(&app);
    b.get("/login").await;
    let csrf = b.hidden("csrf");
    let page = b
        .post_encoded("/login", format!("csrf={csrf}&identifier=%ff%fe@example.com"))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    let page = b
        .get("/oauth2/authorize?client_id=app&response_type=code&state=%ff%fe")
        .await;
    assert_eq!(page.status, 400);
    // A claims request naming `sub` twice is refused, not read as its last.
    let (_, challenge) = crate::browser::pkce();
    let claims = r#"{"id_token":{"sub":{"value":"a"},"sub":{"value":"b"}}}"#;
    let page = b
        .get(&crate::browser::authorize_path(
            "app",
            crate::browser::CB,
            &[
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("claims", claims),
            ],
        ))
        .await;
    assert_eq!(
        page.location_param("error").as_deref(),
        Some("invalid_request"),
        "{:?}",
        page.location
    );
    let outbox: serde_json::Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    assert_eq!(outbox.as_array().unwrap().len(), 0);
}
