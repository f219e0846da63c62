use serde_json::Value;
use sesame::jose::generate_key;

use crate::db_test;
use crate::helpers::{jwt_parts, spawn_app, spawn_with, test_settings, Db, TestApp, SVC};

db_test!(
    restarting_keeps_keys_clients_and_revocations,
    a_rotated_key_stays_published_and_old_tokens_stay_valid
);

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
        (token, revoked, app.state.keys.ring().current_kid.clone())
    };
    let app = spawn_with(settings()).await;
    assert_eq!(
        app.state.keys.ring().current_kid,
        kid,
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
    let old_kid = app.state.keys.ring().current_kid.clone();
    let kid = rotate(&app, 3600).await;
    let kids = published_kids(&app).await;
    assert_eq!(kids.len(), 2);
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

/// Rotates to a new ES256 key, keeping the retired one published for `keep` seconds.
async fn rotate(app: &TestApp, keep: i64) -> String {
    let (kid, jwk) = generate_key(sesame::config::SigningAlg::ES256).unwrap();
    app.state.store.rotate_key(&kid, "ES256", &jwk, keep).await.unwrap();
    app.state.keys.reload().await.unwrap();
    kid
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
