//! The admin API for clients: auth and scope, every route, validation, 404s.

use serde_json::{json, Value};

use crate::db_test;
use crate::helpers::{assert_error, spawn_app, Db, TestApp, Who, SVC};

db_test!(
    the_admin_api_needs_a_token_with_the_admin_scope,
    a_client_registered_through_the_api_works_at_once,
    bad_metadata_and_unknown_clients_are_refused,
    admins_find_disable_and_delete_users,
);

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

async fn the_admin_api_needs_a_token_with_the_admin_scope(db: Db) {
    let app = spawn_app(&db).await;
    let none = app.get("/admin/api/clients").await;
    assert!(none.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_error(none, 401, "invalid_token").await;
    assert_error(
        call(&app, reqwest::Method::GET, "/admin/api/clients", "junk", None).await,
        401,
        "invalid_token",
    )
    .await;
    let service = app.service_token().await;
    let res = call(&app, reqwest::Method::GET, "/admin/api/clients", &service, None).await;
    assert_error(res, 403, "insufficient_scope").await;
    // Only clients that list the scope can get it.
    assert_error(
        app.client_credentials(SVC, Some("sesame:admin")).await,
        400,
        "invalid_scope",
    )
    .await;
    let admin = app.admin_token().await;
    assert_eq!(
        call(&app, reqwest::Method::GET, "/admin/api/clients", &admin, None)
            .await
            .status(),
        200
    );
}

async fn a_client_registered_through_the_api_works_at_once(db: Db) {
    let app = spawn_app(&db).await;
    let admin = app.admin_token().await;
    let metadata = json!({
        "client_name": "Mobile backend",
        "redirect_uris": ["https://app.example.com/cb"],
        "grant_types": ["otp", "refresh_token"],
        "scope": "openid phone offline_access",
        "token_endpoint_auth_method": "client_secret_basic",
        "software_id": "ignored per RFC 7591 §2"
    });
    let res = call(
        &app,
        reqwest::Method::POST,
        "/admin/api/clients",
        &admin,
        Some(metadata),
    )
    .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let created: Value = res.json().await.unwrap();
    let id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert_eq!(created["client_name"], "Mobile backend");
    assert_eq!(created["scope"], "offline_access openid phone");
    assert_eq!(created["token_endpoint_auth_method"], "client_secret_basic");
    assert!(secret.len() >= 43);

    // The new client drives the OTP API straight away.
    assert_eq!(
        app.getcode((&id, &secret), Who::Phone("+14155550301")).await.status(),
        200
    );

    let list: Value = call(&app, reqwest::Method::GET, "/admin/api/clients", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == id.as_str())
        .expect("listed");
    assert!(
        listed.get("client_secret").is_none(),
        "secrets appear only at creation and rotation"
    );
    let shown: Value = call(
        &app,
        reqwest::Method::GET,
        &format!("/admin/api/clients/{id}"),
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(shown.get("client_secret").is_none());
    assert_eq!(shown["source"], "api");

    let res = call(
        &app,
        reqwest::Method::PUT,
        &format!("/admin/api/clients/{id}"),
        &admin,
        Some(json!({"client_name": "Mobile v2", "scope": "openid phone"})),
    )
    .await;
    assert_eq!(res.status(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["client_name"], "Mobile v2");
    assert_eq!(updated["scope"], "openid phone");
    assert_eq!(
        updated["grant_types"],
        json!(["otp", "refresh_token"]),
        "fields left out keep their values"
    );

    let res = call(
        &app,
        reqwest::Method::POST,
        &format!("/admin/api/clients/{id}/secret"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    let new_secret = res.json::<Value>().await.unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(
        app.getcode((&id, &secret), Who::Phone("+14155550302")).await,
        401,
        "invalid_client",
    )
    .await;
    assert_eq!(
        app.getcode((&id, &new_secret), Who::Phone("+14155550302"))
            .await
            .status(),
        200
    );

    let res = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/admin/api/clients/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_error(
        call(
            &app,
            reqwest::Method::GET,
            &format!("/admin/api/clients/{id}"),
            &admin,
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        call(
            &app,
            reqwest::Method::DELETE,
            &format!("/admin/api/clients/{id}"),
            &admin,
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.getcode((&id, &new_secret), Who::Phone("+14155550303")).await,
        401,
        "invalid_client",
    )
    .await;
    let events = app.audit_event_names().await;
    for e in [
        "client_created",
        "client_updated",
        "client_secret_rotated",
        "client_deleted",
    ] {
        assert!(events.contains(&e.to_string()), "{e}");
    }
}

async fn bad_metadata_and_unknown_clients_are_refused(db: Db) {
    let app = spawn_app(&db).await;
    let admin = app.admin_token().await;
    let post = |body: Value| call(&app, reqwest::Method::POST, "/admin/api/clients", &admin, Some(body));
    for body in [
        json!({"redirect_uris": []}),
        json!({"client_name": "X", "grant_types": ["teleport"]}),
        json!({"client_name": "X", "token_endpoint_auth_method": "private_key_jwt"}),
        json!({"client_name": "X", "token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]}),
        json!({"client_name": "X", "redirect_uris": ["not a uri"]}),
        json!({"client_name": "X", "scope": "bad\"scope"}),
        json!({"client_name": 42}),
        json!({"client_name": "X".repeat(201)}),
        json!({"client_name": "X", "id_token_signed_response_alg": "none"}),
        json!({"client_name": "X", "backchannel_logout_uri": "http://app.example.com/bcl"}),
        // A struct from an array, field by field, is not an object (found by schemathesis).
        json!([null, null]),
        json!(["X"]),
    ] {
        assert_error(post(body).await, 400, "invalid_client_metadata").await;
    }
    let put = call(
        &app,
        reqwest::Method::PUT,
        "/admin/api/clients/app",
        &admin,
        Some(json!([null, null])),
    );
    assert_error(put.await, 400, "invalid_client_metadata").await;
    let user = app.account_for("array@example.com").await;
    let path = format!("/admin/api/users/{}", user.id);
    let put = call(&app, reqwest::Method::PUT, &path, &admin, Some(json!([true])));
    assert_error(put.await, 400, "invalid_request").await;
    let after = app.state.store.user(&user.id).await.unwrap().unwrap();
    assert!(!after.disabled, "nothing changed");
    let res = app
        .http
        .post(app.url("/admin/api/clients"))
        .bearer_auth(&admin)
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_client_metadata").await;

    // A public client has no secret; ids are unique.
    let res = post(json!({"client_id": "spa2", "client_name": "SPA 2", "token_endpoint_auth_method": "none", "redirect_uris": ["http://localhost:5173/cb"]})).await;
    assert_eq!(res.status(), 201);
    assert!(res.json::<Value>().await.unwrap().get("client_secret").is_none());
    assert_error(
        post(json!({"client_id": "spa2", "client_name": "Again"})).await,
        409,
        "conflict",
    )
    .await;
    let res = call(
        &app,
        reqwest::Method::POST,
        "/admin/api/clients/spa2/secret",
        &admin,
        None,
    )
    .await;
    assert_error(res, 400, "invalid_client_metadata").await;
    let res = call(
        &app,
        reqwest::Method::PUT,
        "/admin/api/clients/spa2",
        &admin,
        Some(json!({"client_id": "other"})),
    )
    .await;
    assert_error(res, 400, "invalid_client_metadata").await;
    let res = call(
        &app,
        reqwest::Method::PUT,
        "/admin/api/clients/spa2",
        &admin,
        Some(json!({"token_endpoint_auth_method": "client_secret_basic"})),
    )
    .await;
    assert_error(res, 400, "invalid_client_metadata").await;
    for (method, path) in [
        (reqwest::Method::GET, "/admin/api/clients/nope"),
        (reqwest::Method::PUT, "/admin/api/clients/nope"),
        (reqwest::Method::DELETE, "/admin/api/clients/nope"),
        (reqwest::Method::POST, "/admin/api/clients/nope/secret"),
    ] {
        let body = (method == reqwest::Method::PUT).then(|| json!({"client_name": "X"}));
        assert_error(call(&app, method, path, &admin, body).await, 404, "not_found").await;
    }
}

/// The user search's SQL holds with `standard_conforming_strings` off on
/// PostgreSQL, where a backslash in a quoted string escapes the quote
/// (helper-29: `ESCAPE '\\'` was then a syntax error, the search a 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn the_user_search_holds_with_standard_conforming_strings_off() {
    let db = Db::postgres().await;
    let mut settings = crate::helpers::test_settings(&db);
    settings.database.url = format!("{}%20-c%20standard_conforming_strings%3Doff", db.url);
    let app = crate::helpers::spawn_with(settings).await;
    app.signed_up(crate::helpers::APP, Who::Email("found@example.com"))
        .await;
    let admin = app.admin_token().await;
    for (search, found) in [("found", 1), ("%25", 0), ("f_und", 0)] {
        let res = call(
            &app,
            reqwest::Method::GET,
            &format!("/admin/api/users?search={search}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(res.status(), 200, "{search}");
        let list: Value = res.json().await.unwrap();
        assert_eq!(list.as_array().unwrap().len(), found, "{search}: {list}");
    }
}

async fn admins_find_disable_and_delete_users(db: Db) {
    let app = spawn_app(&db).await;
    let admin = app.admin_token().await;
    let service = app.service_token().await;
    assert_error(
        call(&app, reqwest::Method::GET, "/admin/api/users", &service, None).await,
        403,
        "insufficient_scope",
    )
    .await;
    assert_error(app.get("/admin/api/users").await, 401, "invalid_token").await;

    let tokens = app
        .signed_up(crate::helpers::APP, Who::Email("managed@example.com"))
        .await;
    app.signed_up(crate::helpers::APP, Who::Email("other@example.com"))
        .await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let list: Value = call(
        &app,
        reqwest::Method::GET,
        "/admin/api/users?search=MANAGED",
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "search is case-insensitive and narrows");
    // `%`, `_` and `!` (the escape) are searched for, not LIKE wildcards that
    // match everyone (helper-28).
    // And found where they are in an address (helper-30: the checks above
    // all expect no one, which a search broken otherwise would pass).
    app.signed_up(crate::helpers::APP, Who::Email("a_b!c%d@example.com"))
        .await;
    let found = |search: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let path = format!("/admin/api/users?search={search}");
            let found: Value = call(app, reqwest::Method::GET, &path, admin, None)
                .await
                .json()
                .await
                .unwrap();
            found.as_array().unwrap().len()
        }
    };
    for literal in ["a_b!c", "b!c%25d", "_b", "!"] {
        assert_eq!(found(literal).await, 1, "{literal}");
    }
    for wildcard in ["%25%25", "a_a", "m_naged", "%25managed", "!!", "!%25x", "m!anaged"] {
        assert_eq!(found(wildcard).await, 0, "{wildcard}");
    }
    let sub = list[0]["sub"].as_str().unwrap().to_string();
    assert_eq!(list[0]["disabled"], false);
    let all: Value = call(&app, reqwest::Method::GET, "/admin/api/users?limit=10", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_error(
        call(&app, reqwest::Method::GET, "/admin/api/users?limit=0", &admin, None).await,
        400,
        "invalid_request",
    )
    .await;
    // A query string that does not parse is the JSON error too (issue 13, problem 6).
    let res = call(&app, reqwest::Method::GET, "/admin/api/users?limit=abc", &admin, None).await;
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = assert_error(res, 400, "invalid_request").await;
    assert!(
        body["error_description"].as_str().unwrap().contains("query string"),
        "{body}"
    );

    let path = format!("/admin/api/users/{sub}");
    let shown: Value = call(&app, reqwest::Method::GET, &path, &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["email"], "managed@example.com");

    // Disabling ends the user's tokens at once on this node.
    let res = call(
        &app,
        reqwest::Method::PUT,
        &path,
        &admin,
        Some(json!({"disabled": true, "is_admin": true})),
    )
    .await;
    assert_eq!(res.status(), 200);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(
        (changed["disabled"].clone(), changed["is_admin"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(app.introspect(&access).await["active"], false);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let res = app
        .post_form(
            "/oauth2/token",
            crate::helpers::APP,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_error(res, 400, "invalid_grant").await;
    let res = call(
        &app,
        reqwest::Method::PUT,
        &path,
        &admin,
        Some(json!({"disabled": "yes"})),
    )
    .await;
    assert_error(res, 400, "invalid_request").await;
    let res = call(
        &app,
        reqwest::Method::PUT,
        &path,
        &admin,
        Some(json!({"password": "x"})),
    )
    .await;
    assert_error(res, 400, "invalid_request").await;

    assert_eq!(
        call(&app, reqwest::Method::DELETE, &path, &admin, None).await.status(),
        204
    );
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        assert_error(call(&app, method, &path, &admin, None).await, 404, "not_found").await;
    }
    let res = call(
        &app,
        reqwest::Method::PUT,
        &path,
        &admin,
        Some(json!({"disabled": false})),
    )
    .await;
    assert_error(res, 404, "not_found").await;
    let events = app.audit_event_names().await;
    for e in ["user_disabled", "admin_granted", "user_deleted"] {
        assert!(events.contains(&e.to_string()), "{e}");
    }
}
