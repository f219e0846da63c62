use crate::db_test;
use crate::helpers::{assert_error, basic, spawn_app, Db, SVC};

db_test!(
    malformed_bodies_are_json_4xx_never_500,
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
