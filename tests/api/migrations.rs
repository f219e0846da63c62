//! Migrations applied to data written by an older schema: nothing is lost.

use serde_json::Value;

use crate::db_test;
use crate::helpers::{spawn_app, Db};

db_test!(
    unverified_identifiers_of_existing_accounts_stop_being_sign_in_keys,
    clients_registered_before_keys_per_algorithm_keep_their_id_token_algorithm,
);

/// Before migration 6 every ID token was signed with the one current key
/// (ES256 by default): clients registered then keep that algorithm, so apps
/// that pinned it go on validating; new clients get RS256.
async fn clients_registered_before_keys_per_algorithm_keep_their_id_token_algorithm(db: Db) {
    let store = sesame::store::Store::connect(&db.url, Some(1)).await.unwrap();
    store.migrate_to(5).await.unwrap();
    drop(store);
    db.execute(
        "INSERT INTO signing_keys (kid, alg, private_jwk, is_current, created_at) VALUES ('old', 'ES256', '{}', 1, 1);
         INSERT INTO clients (id, name, redirect_uris, post_logout_redirect_uris, grant_types, scopes, source, created_at, updated_at)
         VALUES ('old-cli', 'Old', '[]', '[]', '[\"client_credentials\"]', 'api:read', 'cli', 1, 1)",
    )
    .await;
    let store = sesame::store::Store::connect(&db.url, Some(1)).await.unwrap();
    store.migrate().await.unwrap();
    let old = store.client("old-cli").await.unwrap().unwrap();
    assert_eq!(old.id_token_alg, sesame::config::SigningAlg::ES256);
    let new = sesame::clients::NewClient {
        name: "New".into(),
        ..Default::default()
    };
    let audit = sesame::audit::AuditLog::start(store.clone());
    let (new, _) = sesame::clients::register(&store, &audit, new, "cli", sesame::clients::By::Cli)
        .await
        .unwrap();
    assert_eq!(new.id_token_alg, sesame::config::SigningAlg::RS256);
}

/// Accounts written before SPEC §9 could hold an email or phone never proven
/// by a code as a sign-in key. Migration 4 keeps them as contacts.
async fn unverified_identifiers_of_existing_accounts_stop_being_sign_in_keys(db: Db) {
    let store = sesame::store::Store::connect(&db.url, Some(1)).await.unwrap();
    store.migrate_to(3).await.unwrap();
    drop(store);
    db.execute(
        "INSERT INTO users (id, username, username_key, email, email_key, email_verified, phone, phone_verified,
           created_at, updated_at)
         VALUES ('u1', 'one', 'one', 'Unproven@example.com', 'unproven@example.com', 0, '+14155550100', 1, 1, 1),
                ('u2', 'two', 'two', 'proven@example.com', 'proven@example.com', 1, '+14155550111', 0, 1, 1)",
    )
    .await;

    let app = spawn_app(&db).await;
    let store = &app.state.store;
    assert!(store
        .user_by_identifier("email", "unproven@example.com")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .user_by_identifier("phone", "+14155550111")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .user_by_identifier("phone", "+14155550100")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u1"
    );
    assert_eq!(
        store
            .user_by_identifier("email", "proven@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u2"
    );
    let json = |u: &sesame::store::users::User| -> Value { sesame::accounts::user_json(u) };
    let one = json(&store.user("u1").await.unwrap().unwrap());
    assert_eq!(one["email"], "Unproven@example.com");
    assert_eq!(one["email_verified"], false);
    assert_eq!(one["phone_number_verified"], true);
    let two = json(&store.user("u2").await.unwrap().unwrap());
    assert_eq!(two["phone_number"], "+14155550111");
    assert_eq!(two["phone_number_verified"], false);
    // The address can now be proven by its owner for an account of their own.
    let secret = app
        .verified(crate::helpers::APP, crate::helpers::Who::Email("unproven@example.com"))
        .await;
    let res = app
        .create_user(
            crate::helpers::APP,
            &serde_json::json!({"secret_identifier": secret, "auto_username": true}),
        )
        .await;
    assert_eq!(res.status(), 201);
}
