//! Sesame behind a connection pooler: a real PgBouncer between the nodes
//! and PostgreSQL (issue 14, "Several nodes").

use serde_json::Value;

use sesame::config::Pooler;
use sesame::startup::Application;

use crate::helpers::{spawn_with, test_settings, Db, TestApp, Who, APP};
use crate::peers::PgBouncer;

/// Why the app would not start with `settings`.
async fn start_up_error(settings: sesame::config::Settings) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = Application::build_with_listener(settings, listener)
        .await
        .err()
        .expect("the app does not start");
    format!("{refused:#}")
}

/// Eight sign-ups at once (more than the pool's four connections, so
/// groups, pipelined statements and counters share the pooler's server
/// connections), then a refresh of each: everything a flow writes.
async fn flows_at_once(app: &TestApp, prefix: &str) {
    let signups = (0..8).map(|i| async move {
        let email = format!("{prefix}{i}@example.com");
        app.signed_up(APP, Who::Email(&email)).await
    });
    let tokens: Vec<Value> = futures_util::future::join_all(signups).await;
    for t in &tokens {
        let res = app.refresh(APP, t["refresh_token"].as_str().unwrap()).await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn sesame_runs_behind_pgbouncer_in_session_mode() {
    let db = Db::postgres().await;
    let (base, schema) = db.pg_schema().unwrap();
    let bouncer = PgBouncer::start(base, schema, "session").await;
    let mut settings = test_settings(&db);
    settings.database.url = bouncer.url.clone();
    let app = spawn_with(settings).await;
    flows_at_once(&app, "session").await;
    assert_eq!(app.get("/health/ready").await.status(), 200);
    let events = app.audit_event_names().await;
    assert_eq!(events.iter().filter(|e| *e == "account_created").count(), 8);
    assert!(
        !bouncer.log().contains("unsupported startup parameter"),
        "{}",
        bouncer.log()
    );
}

/// In transaction mode each transaction (and each statement outside one)
/// may run on another server connection: with `database.pooler =
/// "transaction"` Sesame prepares no named statements and leaves the
/// migrations to `sesame migrate` run against PostgreSQL itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn sesame_runs_behind_pgbouncer_in_transaction_mode_once_migrated_directly() {
    let db = Db::postgres().await;
    let (base, schema) = db.pg_schema().unwrap();
    let bouncer = PgBouncer::start(base, schema, "transaction").await;
    let mut settings = test_settings(&db);
    settings.database.url = bouncer.url.clone();
    settings.database.pooler = Pooler::Transaction;

    let refused = start_up_error(settings.clone()).await;
    assert!(refused.contains("run `sesame migrate`"), "{refused}");

    // Not told it stands behind a transaction-mode pooler, a node notices
    // (a setting made on one connection shows on another) and stops, rather
    // than run named statements on server connections that lack them.
    let mut unaware = settings.clone();
    unaware.database.pooler = Pooler::None;
    let refused = start_up_error(unaware).await;
    assert!(refused.contains("set `database.pooler = \"transaction\"`"), "{refused}");

    let env = [
        ("SESAME_DATABASE__URL", bouncer.url.as_str()),
        ("SESAME_DATABASE__POOLER", "transaction"),
    ];
    let out = crate::cli::sesame_env(&db, &["migrate"], &env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pointing at PostgreSQL itself"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let direct = sesame::store::Store::connect(&db.url, Some(1)).await.unwrap();
    direct.migrate().await.unwrap();
    let app = spawn_with(settings).await;
    // Four connections of Sesame's, few server connections behind them:
    // named statements would be missing on most of them.
    for round in 0..3 {
        flows_at_once(&app, &format!("transaction{round}-")).await;
    }
    assert_eq!(app.get("/health/ready").await.status(), 200);
    for round in 0..3 {
        for i in 0..8 {
            let email = format!("transaction{round}-{i}@example.com");
            let account = app.state.store.find_user(&email).await.unwrap();
            assert!(account.is_some(), "{email} has an account");
        }
    }
}

/// Behind a transaction pooler a node only reads which migrations were
/// applied: a migrations table it cannot read (here one without the
/// columns sqlx writes; as well a role without rights, or a database that
/// stops answering) is reported as such, not as a schema to migrate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn behind_a_transaction_pooler_an_unreadable_schema_is_not_called_unmigrated() {
    let db = Db::postgres().await;
    let mut settings = test_settings(&db);
    settings.database.pooler = Pooler::Transaction;
    let refused = start_up_error(settings.clone()).await;
    assert!(refused.contains("migration 1 is not applied"), "{refused}");

    db.execute("CREATE TABLE _sqlx_migrations (version BIGINT)").await;
    let refused = start_up_error(settings).await;
    assert!(!refused.contains("not applied"), "{refused}");
    assert!(refused.contains("cannot read the schema's migrations"), "{refused}");
}

/// Behind a transaction pooler Sesame sets no session limits, so a node
/// checks at start-up that its role has them (with Sesame's values) and
/// warns with the statements that give them. (Here the role's settings are stood in for by the
/// connection's `options`, which set the same session defaults.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn behind_a_transaction_pooler_a_role_without_the_limits_is_told_which_are_missing() {
    let db = Db::postgres().await;
    let open = |url: String| async move { sesame::store::Store::open(&url, Some(1), true).await.unwrap() };

    let bare = open(db.url.clone()).await.missing_server_limits().await.unwrap();
    assert_eq!(bare.len(), 3, "{bare:?}");
    assert!(
        bare.iter().any(|m| m == "ALTER ROLE … SET statement_timeout = '5s';"),
        "{bare:?}"
    );
    assert!(bare.iter().any(|m| m.contains("lock_timeout = '3s'")), "{bare:?}");
    assert!(
        bare.iter().any(|m| m.contains("idle_in_transaction_session_timeout")),
        "{bare:?}"
    );

    // One set (in other units), one set otherwise than Sesame's.
    let some = format!("{}%20-c%20statement_timeout%3D5000ms%20-c%20lock_timeout%3D30s", db.url);
    let missing = open(some).await.missing_server_limits().await.unwrap();
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(
        !missing.iter().any(|m| m.contains("statement_timeout = ")),
        "{missing:?}"
    );
    assert!(missing.iter().any(|m| m.contains("lock_timeout = '3s'")), "{missing:?}");

    let all = format!(
        "{}%20-c%20statement_timeout%3D5s%20-c%20lock_timeout%3D3s%20-c%20idle_in_transaction_session_timeout%3D10s",
        db.url
    );
    assert!(open(all).await.missing_server_limits().await.unwrap().is_empty());
}

/// A role given Sesame's limits (as the README says to do behind a
/// transaction pooler) would stop a migration's index build on a large
/// table: migrations run without a statement timeout. (Here a timeout of
/// 1 ms, given by the connection's `options`, stands for the role's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn migrations_run_whatever_statement_timeout_the_role_has() {
    let db = Db::postgres().await;
    let hurried = format!("{}%20-c%20statement_timeout%3D1ms", db.url);
    let store = sesame::store::Store::connect(&hurried, Some(1)).await.unwrap();
    store.migrate().await.unwrap();
    let applied = db
        .pg_number("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .await;
    assert!(applied > 0, "{applied} migrations applied");
}
