//! A PostgreSQL outage (issue 14, problem 1), through a relay the test cuts:
//! requests get a quick 503 the client may retry, never a 500 or a hang;
//! readiness says so at once; service resumes when the database is back.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::browser::{sign_up_through_authorize, Browser};
use crate::helpers::{spawn_with, test_settings, Db, Who, APP};
use crate::peers::Relay;

/// Settings for an app whose PostgreSQL connections go through a relay the
/// test can cut or blackhole.
async fn behind_a_relay(db: &Db) -> (Relay, sesame::config::Settings) {
    let base = std::env::var("SESAME_TEST_POSTGRES_URL").unwrap();
    let at = base.split('@').nth(1).unwrap().split('/').next().unwrap().to_string();
    let relay = Relay::start(&at).await;
    let mut settings = test_settings(db);
    settings.database.url = db.url.replacen(&at, &relay.addr.to_string(), 1);
    (relay, settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn a_postgresql_outage_is_a_quick_503_and_service_resumes_after_it() {
    let db = Db::postgres().await;
    let (relay, settings) = behind_a_relay(&db).await;
    let app = spawn_with(settings).await;
    assert_eq!(app.getcode(APP, Who::Email("before@example.com")).await.status(), 200);
    assert_eq!(app.get("/health/ready").await.status(), 200);

    relay.cut();
    let started = Instant::now();
    let res = app.getcode(APP, Who::Email("during@example.com")).await;
    assert_eq!(res.status(), 503, "a 503, not a 500");
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a 503 within 3 s, no hang: {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "readiness says so within 2 s: {:?}",
        started.elapsed()
    );
    let page = app.get("/login").await;
    assert_eq!(page.status(), 503, "the pages too");
    assert_eq!(page.headers()["retry-after"], "1");
    assert!(page.text().await.unwrap().contains("briefly unavailable"));

    // An event recorded outside any request (as back-channel deliveries
    // are) during the outage is kept and written once the database is back.
    app.state.audit.record(sesame::store::audit::Event {
        event: "written_after_the_outage",
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    relay.restore().await;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let status = app.getcode(APP, Who::Email("after@example.com")).await.status();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < until,
            "service resumes after the outage (last: {status})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.get("/health/ready").await.status(), 200);
    let until = Instant::now() + Duration::from_secs(10);
    while !app
        .audit_event_names()
        .await
        .iter()
        .any(|e| e == "written_after_the_outage")
    {
        assert!(Instant::now() < until, "the event held during the outage is written");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = app.audit_event_names().await;
    let sent = events.iter().filter(|e| *e == "code_sent").count();
    assert_eq!(
        sent, 2,
        "before and after: each answered send has its event, the refused one none"
    );
}

/// Connections the server ended (a restart, `pg_terminate_backend`, a
/// proxy's idle timeout) are noticed when taken from the pool and replaced:
/// no request fails for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn connections_the_server_ended_are_replaced_without_an_error() {
    let db = Db::postgres().await;
    let tag = format!("sesame_{}", sesame::crypto::hex(&sesame::crypto::random_bytes::<6>()));
    let mut settings = test_settings(&db);
    settings.database.url = format!("{}&application_name={tag}", db.url);
    let app = spawn_with(settings).await;
    for i in 0..4 {
        let who = format!("warm{i}@example.com");
        assert_eq!(app.getcode(APP, Who::Email(&who)).await.status(), 200);
    }
    db.execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{tag}'"
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..6 {
        let who = format!("after{i}@example.com");
        let res = app.getcode(APP, Who::Email(&who)).await;
        assert_eq!(res.status(), 200, "request {i} after the server ended the connections");
    }
}

/// A database that stops answering without saying so (a blackholed network:
/// a firewall dropping packets, a vanished host): the port still accepts,
/// and open connections stay open but silent. A request caught on one of
/// them gets a 503 once its statement times out (6.5 s; a group sends no
/// `COMMIT` on the lost connection, which would wait as long again); the
/// requests after it get theirs within the pool's 2 s, and readiness within
/// 2 s. Once the network is back, the next request succeeds, although the
/// connections opened before stay silent for ever: the pool closed them at
/// the first timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn a_blackholed_database_is_a_503_not_a_hang_and_the_first_request_after_it_succeeds() {
    let db = Db::postgres().await;
    let (relay, mut settings) = behind_a_relay(&db).await;
    let tag = format!("sesame_{}", sesame::crypto::hex(&sesame::crypto::random_bytes::<6>()));
    settings.database.url = format!("{}&application_name={tag}", settings.database.url);
    settings.database.max_connections = Some(8);
    let app = spawn_with(settings).await;
    // Every connection of the pool opened, then idle: eight sends held up
    // together by a lock taken from outside, each on a connection of its own.
    let mut outside = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&db.url).await.unwrap()
    };
    sqlx::raw_sql("BEGIN; LOCK TABLE rate_counters IN EXCLUSIVE MODE")
        .execute(&mut outside)
        .await
        .unwrap();
    let warm: Vec<String> = (0..8).map(|n| format!("warm-{n}@example.com")).collect();
    let sends = futures_util::future::join_all(warm.iter().map(|w| app.getcode(APP, Who::Email(w))));
    let release = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        sqlx::raw_sql("COMMIT").execute(&mut outside).await.unwrap();
    };
    let (answers, ()) = tokio::join!(sends, release);
    assert!(answers.iter().all(|r| r.status() == 200));
    let open = db
        .pg_number(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{tag}'"
        ))
        .await;
    assert!(open >= 8, "the pool holds several connections ({open})");

    relay.blackhole();
    // The otp grant's first statement is in its group (the client is cached).
    let started = Instant::now();
    let res = app
        .otp_token(APP, Who::Email("during@example.com"), "not-a-secret")
        .await;
    let elapsed = started.elapsed();
    assert_eq!(res.status(), 503, "a 503, not a 500 or a hang");
    assert_eq!(res.headers()["retry-after"], "1");
    assert!(elapsed < Duration::from_secs(8), "a 503 within 8 s: {elapsed:?}");
    let started = Instant::now();
    let res = app.getcode(APP, Who::Email("during@example.com")).await;
    let elapsed = started.elapsed();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    assert!(elapsed < Duration::from_secs(3), "the next one within 3 s: {elapsed:?}");
    let started = Instant::now();
    assert_eq!(app.get("/health/ready").await.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "readiness says so within 2 s: {:?}",
        started.elapsed()
    );

    relay.restore().await;
    let res = app.getcode(APP, Who::Email("after@example.com")).await;
    assert_eq!(res.status(), 200, "the first request after the blackhole succeeds");
    assert_eq!(app.get("/health/ready").await.status(), 200);
}

/// A browser that holds a session: its session is read from the database
/// before any page runs, so during an outage that read is what fails. It
/// gets the same quick 503 page as everyone (with `Retry-After`, the request
/// id and the headers every answer carries), not an empty 500; and the
/// session works again once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn a_browser_with_a_session_gets_the_503_page_during_an_outage() {
    let db = Db::postgres().await;
    let (relay, settings) = behind_a_relay(&db).await;
    let app = spawn_with(settings).await;
    let mut browser = Browser::new(&app);
    sign_up_through_authorize(&mut browser, "session-holder@example.com").await;
    assert_eq!(browser.get("/account").await.status, 200);

    relay.cut();
    let started = Instant::now();
    let page = browser.get("/account").await;
    assert_eq!(page.status, 503, "a 503, not a 500: {}", page.body);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(page.headers["retry-after"], "1");
    assert!(page.body.contains("briefly unavailable"), "{}", page.body);
    assert!(page.headers.contains_key("x-request-id"));
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    // The API answers its own way, with the same status.
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), 503);

    relay.restore().await;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let page = browser.get("/account").await;
        if page.status == 200 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the session works again (last: {})",
            page.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A failover that leaves Sesame's connections on a server that takes no
/// writes (a standby, or the old primary demoted): writes answer the same
/// quick 503 as an outage (SQLSTATE 25006 is "try again", not a 500),
/// readiness says 503 (the server answers, but is read-only), and once the
/// server takes writes again, service resumes by itself: a connection that
/// met the read-only server is not used again.
/// The read-only server is this database, read-only for the app's own role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn a_failover_to_a_read_only_server_is_a_503_until_writes_are_taken_again() {
    let db = Db::postgres().await;
    let (_, schema) = db.pg_schema().unwrap();
    let role = format!("r_{schema}");
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT ALL ON SCHEMA {schema} TO {role}"
    ))
    .await;
    let mut settings = test_settings(&db);
    settings.database.url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(settings.database.url, db.url, "the app connects as its own role");
    let app = spawn_with(settings).await;
    assert_eq!(app.getcode(APP, Who::Email("before@example.com")).await.status(), 200);
    assert_eq!(app.get("/health/ready").await.status(), 200);
    let reconnect = format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{role}'");

    db.execute(&format!("ALTER ROLE {role} SET default_transaction_read_only = on"))
        .await;
    db.pg_number(&reconnect).await;
    let started = Instant::now();
    let res = app.getcode(APP, Who::Email("during@example.com")).await;
    assert_eq!(res.status(), 503, "a 503, not a 500");
    assert_eq!(res.headers()["retry-after"], "1");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 503, "readiness: the server answers but takes no writes");
    assert_eq!(ready.headers()["retry-after"], "1");

    // Writable again, with the connections left as they are: each one
    // that met the read-only server was dropped, so the next is new.
    db.execute(&format!("ALTER ROLE {role} RESET default_transaction_read_only"))
        .await;
    let restored = Instant::now();
    let until = restored + Duration::from_secs(10);
    loop {
        let status = app.getcode(APP, Who::Email("after@example.com")).await.status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < until, "service resumes (last: {status})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        restored.elapsed() < Duration::from_secs(5),
        "within a few requests (each idle connection that met the read-only server \
         is dropped by the first write it takes), not when the pool happens to renew \
         its connections: {:?}",
        restored.elapsed()
    );
    assert_eq!(app.get("/health/ready").await.status(), 200);
    drop(app);
    db.execute(&format!("DROP OWNED BY {role} CASCADE; DROP ROLE {role}"))
        .await;
}

/// A sign-out made as an outage begins still reaches its clients: the
/// back-channel worker, which reads whom to tell from the database, reads
/// again while the database is unavailable, and delivers once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn a_sign_out_made_as_an_outage_begins_reaches_its_clients_after_it() {
    use crate::conformance_logout::{listen_for_logouts, received, signed_in};
    let db = Db::postgres().await;
    let (relay, settings) = behind_a_relay(&db).await;
    let app = spawn_with(settings).await;
    let receiver = crate::peers::Receiver::start().await;
    listen_for_logouts(&app, APP.0, &format!("{}/backchannel", receiver.url)).await;
    let (_, id_token) = signed_in(&app, "outage-bcl@example.com").await;
    let (_, id) = crate::helpers::jwt_parts(&id_token);
    let sid = id["sid"].as_str().unwrap().to_string();

    relay.cut();
    app.state
        .backchannel
        .notify(sesame::oidc::backchannel::Ended::Session { sid: sid.clone() });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count(), 0, "nothing can be read during the outage");
    relay.restore().await;
    let got = received(&receiver, 1).await;
    let form = got[0].form();
    let (_, token) = form.iter().find(|(k, _)| k == "logout_token").unwrap();
    assert_eq!(crate::helpers::jwt_parts(token).1["sid"], sid.as_str());
}

/// "Sign out everywhere" ends the sessions begun by then. Read late (the
/// database was down when it was made), it still tells the clients of
/// those sessions only, not of one the user began after the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn a_sign_out_everywhere_read_late_does_not_take_in_a_session_begun_after_it() {
    use crate::conformance_logout::{listen_for_logouts, received, signed_in};
    let db = Db::postgres().await;
    let (relay, settings) = behind_a_relay(&db).await;
    let app = spawn_with(settings).await;
    let receiver = crate::peers::Receiver::start().await;
    listen_for_logouts(&app, APP.0, &format!("{}/backchannel", receiver.url)).await;
    let (_, id_token) = signed_in(&app, "late-read@example.com").await;
    let (_, before) = crate::helpers::jwt_parts(&id_token);

    relay.cut();
    app.state
        .backchannel
        .notify(sesame::oidc::backchannel::Ended::BrowserSessionsOf {
            sub: before["sub"].as_str().unwrap().to_string(),
            at: sesame::store::now(),
        });
    // The worker's reads fail at once and after 1 s; the next is 2 s later.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    relay.restore().await;
    while app.get("/health/ready").await.status() != 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, id_token) = signed_in(&app, "late-read@example.com").await;
    let (_, after) = crate::helpers::jwt_parts(&id_token);
    assert_ne!(after["sid"], before["sid"]);

    let got = received(&receiver, 1).await;
    let form = got[0].form();
    let (_, token) = form.iter().find(|(k, _)| k == "logout_token").unwrap();
    assert_eq!(crate::helpers::jwt_parts(token).1["sid"], before["sid"]);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.count(), 1, "the session begun after the sign-out is not told");
}
