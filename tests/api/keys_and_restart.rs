use serde_json::Value;
use sesame::config::SigningAlg::{self, ES256};
use sesame::jose::generate_key;

use crate::db_test;
use crate::helpers::{jwt_parts, spawn_app, spawn_with, test_settings, Db, TestApp, ODD, SVC};

db_test!(
    restarting_keeps_keys_clients_and_revocations,
    a_rotated_key_stays_published_and_old_tokens_stay_valid,
    an_edited_clients_file_is_applied_at_the_next_start,
);

/// SPEC §7: `clients.toml` is applied at each start, declaratively: a
/// client taken out of the file is gone, a changed one changes, and a
/// client registered through the admin API (not the file's) stays.
async fn an_edited_clients_file_is_applied_at_the_next_start(db: Db) {
    let settings = || {
        let mut s = test_settings(&db);
        s.issuer = "http://localhost:8080".into();
        s
    };
    let registered = {
        let app = spawn_with(settings()).await;
        assert_eq!(app.client_credentials(ODD, None).await.status(), 200);
        assert_eq!(app.client_credentials(SVC, Some("api:write")).await.status(), 200);
        let res = app
            .http
            .post(app.url("/admin/api/clients"))
            .bearer_auth(app.admin_token().await)
            .json(&serde_json::json!({"client_name": "Registered", "grant_types": ["client_credentials"], "scope": "api:read"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let created: Value = res.json().await.unwrap();
        (
            created["client_id"].as_str().unwrap().to_string(),
            created["client_secret"].as_str().unwrap().to_string(),
        )
    };
    // The operator takes `odd.client` out and narrows `svc` to api:read.
    let file = db.dir().join("clients.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let odd_block = text
        .find("[[client]]\nid = \"odd.client\"")
        .expect("odd.client's block");
    let odd_end = odd_block + 1 + text[odd_block + 1..].find("[[client]]").unwrap();
    let edited = format!("{}{}", &text[..odd_block], &text[odd_end..]).replacen(
        r#"scopes = ["api:read", "api:write"]"#,
        r#"scopes = ["api:read"]"#,
        1,
    );
    assert!(!edited.contains("odd.client") && !edited.contains("api:write"));
    std::fs::write(&file, edited).unwrap();

    let app = spawn_with(settings()).await;
    crate::helpers::assert_error(app.client_credentials(ODD, None).await, 401, "invalid_client").await;
    crate::helpers::assert_error(
        app.client_credentials(SVC, Some("api:write")).await,
        400,
        "invalid_scope",
    )
    .await;
    assert_eq!(app.client_credentials(SVC, Some("api:read")).await.status(), 200);
    let (id, secret) = registered;
    assert_eq!(
        app.client_credentials((&id, &secret), None).await.status(),
        200,
        "a client registered through the admin API is not the file's to remove"
    );
}

async fn restarting_keeps_keys_clients_and_revocations(db: Db) {
    // One issuer for both runs, as a real deployment has.
    let settings = || {
        let mut s = test_settings(&db);
        s.issuer = "http://localhost:8080".into();
        s
    };
    let (token, revoked, kid) = {
        let app = spawn_with(settings()).await;
        let token = app.service_token().await;
        let revoked = app.service_token().await;
        assert_eq!(
            app.post_form("/oauth2/revoke", SVC, &[("token", &revoked)])
                .await
                .status(),
            200
        );
        (
            token,
            revoked,
            app.state.keys.ring().current_kid(ES256).unwrap().to_string(),
        )
    };
    let app = spawn_with(settings()).await;
    assert_eq!(
        app.state.keys.ring().current_kid(ES256),
        Some(kid.as_str()),
        "the signing key survives a restart"
    );
    assert_eq!(app.introspect(&token).await["active"], true);
    assert_eq!(
        app.introspect(&revoked).await["active"],
        false,
        "the revocation survives a restart"
    );
    assert_eq!(app.client_credentials(SVC, None).await.status(), 200, "clients survive");
}

async fn a_rotated_key_stays_published_and_old_tokens_stay_valid(db: Db) {
    let app = spawn_app(&db).await;
    let old_token = app.service_token().await;
    let old_kid = app.state.keys.ring().current_kid(ES256).unwrap().to_string();
    let kid = rotate(&app, 3600).await;
    let kids = published_kids(&app).await;
    assert_eq!(kids.len(), 6, "three current keys and the three they replaced");
    assert!(kids.contains(&old_kid) && kids.contains(&kid));
    let new_token = app.service_token().await;
    assert_eq!(jwt_parts(&new_token).0["kid"], kid.as_str());
    assert_eq!(
        app.introspect(&old_token).await["active"],
        true,
        "tokens signed by the previous key stay valid"
    );

    // Once the retention has passed, the old key leaves the JWKS and its tokens stop verifying.
    rotate(&app, -1).await;
    assert!(!published_kids(&app).await.contains(&kid));
    assert_eq!(app.introspect(&new_token).await["active"], false);
}

/// Rotates to new keys, keeping the retired ones published for `keep`
/// seconds; returns the new ES256 key's id.
async fn rotate(app: &TestApp, keep: i64) -> String {
    let new: Vec<(String, SigningAlg, String)> = SigningAlg::ALL
        .into_iter()
        .map(|alg| {
            let (kid, jwk) = generate_key(alg).unwrap();
            (kid, alg, jwk)
        })
        .collect();
    let rows: Vec<(&str, &str, &str)> = new
        .iter()
        .map(|(k, a, j)| (k.as_str(), a.as_str(), j.as_str()))
        .collect();
    app.state.store.rotate_keys(&rows, keep).await.unwrap();
    app.state.keys.reload().await.unwrap();
    new.into_iter().find(|(_, a, _)| *a == ES256).unwrap().0
}

async fn published_kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app.get("/oauth2/jwks").await.json().await.unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}
