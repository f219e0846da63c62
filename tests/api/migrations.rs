//! Migrations applied to data written by an older schema: nothing is lost.

use serde_json::Value;

use crate::db_test;
use crate::helpers::{spawn_app, Db};

db_test!(
    unverified_identifiers_of_existing_accounts_stop_being_sign_in_keys,
    clients_registered_before_keys_per_algorithm_keep_their_id_token_algorithm,
    accounts_stored_with_a_punycode_email_domain_are_found_again_after_a_start,
);

/// Before 8234336 an email's domain was kept as typed, punycode and
/// full-width letters included. Every spelling now maps to one key (the
/// Unicode form), so at the first start that finds such a database those
/// accounts get that key and are found again; one whose key another account
/// holds (the same mailbox signed up twice) is left as it is. The walk of
/// `users` is done once for a database: a later start does not read the
/// table again.
async fn accounts_stored_with_a_punycode_email_domain_are_found_again_after_a_start(db: Db) {
    let settings = || {
        let mut s = crate::helpers::test_settings(&db);
        s.issuer = "http://localhost:8080".into();
        s.otp.resend_after = std::time::Duration::ZERO;
        s
    };
    let app = crate::helpers::spawn_with(settings()).await;
    let app_client = crate::helpers::APP;
    for email in [
        "old@b\u{00FC}cher.example",
        "wide@example.com",
        "nokey@example.com",
        "dup@b\u{00FC}cher.example",
        "dup2@b\u{00FC}cher.example",
    ] {
        app.signed_up(app_client, crate::helpers::Who::Email(email)).await;
    }
    let sub = |email: &'static str| {
        let store = app.state.store.clone();
        async move { store.find_user(email).await.unwrap().unwrap().id }
    };
    let old_sub = sub("old@b\u{00FC}cher.example").await;
    let twin_sub = sub("dup2@b\u{00FC}cher.example").await;
    // As the old rule stored a punycode-typed address.
    db.execute(&format!(
        "UPDATE users SET email = 'old@xn--bcher-kva.example', email_key = 'old@xn--bcher-kva.example' WHERE id = '{old_sub}'"
    ))
    .await;
    db.execute(&format!(
        "UPDATE users SET email = 'dup@xn--bcher-kva.example', email_key = 'dup@xn--bcher-kva.example' WHERE id = '{twin_sub}'"
    ))
    .await;
    let wide_sub = sub("wide@example.com").await;
    // Full-width letters, as the old rule kept them.
    db.execute(&format!(
        "UPDATE users SET email = 'wide@\u{FF45}\u{FF58}ample.com', email_key = 'wide@\u{FF45}\u{FF58}ample.com' WHERE id = '{wide_sub}'"
    ))
    .await;
    // An address without its key (no write of Sesame's leaves one: an
    // edit by hand) is given it, not a reason to stop.
    let nokey_sub = sub("nokey@example.com").await;
    db.execute(&format!("UPDATE users SET email_key = NULL WHERE id = '{nokey_sub}'"))
        .await;
    // A database the upgrade has not been run on.
    db.execute("DELETE FROM data_upgrades").await;
    assert!(app
        .state
        .store
        .find_user("old@b\u{00FC}cher.example")
        .await
        .unwrap()
        .is_none());
    drop(app);

    let app = crate::helpers::spawn_with(settings()).await;
    let found = app
        .state
        .store
        .find_user("old@b\u{00FC}cher.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id.as_str(), found.email.as_deref()),
        (old_sub.as_str(), Some("old@b\u{00FC}cher.example"))
    );
    let twin = app.state.store.user(&twin_sub).await.unwrap().unwrap();
    assert_eq!(
        twin.email.as_deref(),
        Some("dup@xn--bcher-kva.example"),
        "left as it is"
    );
    assert_ne!(
        app.state
            .store
            .find_user("dup@b\u{00FC}cher.example")
            .await
            .unwrap()
            .unwrap()
            .id,
        twin_sub
    );
    let nokey = app.state.store.find_user("nokey@example.com").await.unwrap().unwrap();
    assert_eq!(nokey.id, nokey_sub);
    let wide = app.state.store.find_user("wide@example.com").await.unwrap().unwrap();
    assert_eq!(
        (wide.id.as_str(), wide.email.as_deref()),
        (wide_sub.as_str(), Some("wide@example.com"))
    );
    drop(app);

    // Done once: a row in the old form now (as no write since makes one)
    // is not looked for at the next start.
    db.execute(&format!(
        "UPDATE users SET email = 'wide@\u{FF45}\u{FF58}ample.com', email_key = 'wide@\u{FF45}\u{FF58}ample.com' WHERE id = '{wide_sub}'"
    ))
    .await;
    let app = crate::helpers::spawn_with(settings()).await;
    assert!(app.state.store.find_user("wide@example.com").await.unwrap().is_none());
}

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

/// The start-up walk of `users` (above) rewrites a row only if it still
/// holds what the walk read: an address changed meanwhile by a node that
/// already serves (here another session, whose change commits while the
/// walk waits for its row) is not undone by the old one's canonical form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run it")]
async fn the_email_walk_does_not_undo_an_address_changed_while_it_runs() {
    use sqlx::Connection;
    let db = Db::postgres().await;
    let app = spawn_app(&db).await;
    let store = app.state.store.clone();
    let ana = stored_in_punycode(&app, &db).await;
    // Ana moves to a new address; the change is not committed yet.
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut change = sqlx::Connection::begin(&mut other).await.unwrap();
    sqlx::query("UPDATE users SET email = 'ana.new@example.com', email_key = 'ana.new@example.com' WHERE id = $1")
        .bind(&ana.id)
        .execute(&mut *change)
        .await
        .unwrap();
    let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *change)
        .await
        .unwrap();
    let walk = tokio::spawn(async move { sesame::accounts::canonical_email_keys(&store).await });
    // The walk has read Ana's old row and waits to rewrite it: a session is
    // blocked by this one. (Asked on a connection of its own, each time in
    // a transaction of its own: a transaction reads `pg_stat_activity` once
    // and keeps that view.)
    let mut watcher = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let waiting = async {
        loop {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))")
                    .bind(holder)
                    .fetch_one(&mut watcher)
                    .await
                    .unwrap();
            if n > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
        .await
        .expect("the walk waits for Ana's row");
    change.commit().await.unwrap();
    walk.await.unwrap().unwrap();
    // It went to the end (no lock timeout), having left Ana's new address.
    assert!(app.state.store.upgrade_done("email_domains_uts46").await.unwrap());

    let now = app.state.store.user(&ana.id).await.unwrap().unwrap();
    assert_eq!(now.email.as_deref(), Some("ana.new@example.com"));
    assert_eq!(
        app.state
            .store
            .find_user("ana.new@example.com")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(ana.id.clone())
    );
    assert!(app
        .state
        .store
        .find_user("ana@b\u{00FC}cher.example")
        .await
        .unwrap()
        .is_none());
}

/// A row another transaction holds past the lock timeout does not stop the
/// start: the walk stops there, does not record the upgrade as done, and
/// the next start finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run it")]
async fn a_row_held_during_the_email_walk_is_left_for_the_next_start() {
    use sqlx::Connection;
    let db = Db::postgres().await;
    let app = spawn_app(&db).await;
    let ana = stored_in_punycode(&app, &db).await;
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut holder = sqlx::Connection::begin(&mut other).await.unwrap();
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(&ana.id)
        .execute(&mut *holder)
        .await
        .unwrap();
    sesame::accounts::canonical_email_keys(&app.state.store)
        .await
        .expect("a held row does not stop the start");
    assert!(!app.state.store.upgrade_done("email_domains_uts46").await.unwrap());
    holder.rollback().await.unwrap();

    sesame::accounts::canonical_email_keys(&app.state.store).await.unwrap();
    assert!(app.state.store.upgrade_done("email_domains_uts46").await.unwrap());
    let found = app
        .state
        .store
        .find_user("ana@b\u{00FC}cher.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, ana.id);
}

/// An account for Ana whose email is stored as the old rule kept a
/// punycode domain, in a database the email walk has not been run on.
async fn stored_in_punycode(app: &crate::helpers::TestApp, db: &Db) -> sesame::store::users::User {
    let ana = app.account_for("ana@b\u{00FC}cher.example").await;
    db.execute(&format!(
        "UPDATE users SET email = 'ana@xn--bcher-kva.example', email_key = 'ana@xn--bcher-kva.example' WHERE id = '{}';
         DELETE FROM data_upgrades",
        ana.id
    ))
    .await;
    ana
}
