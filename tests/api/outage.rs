//! A PostgreSQL outage (issue 14, problem 1), through a relay the test cuts:
//! requests get a quick 503 the client may retry, never a 500 or a hang;
//! readiness says so at once; service resumes when the database is back.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{spawn_with, test_settings, Db, Who, APP};
use crate::peers::Relay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn a_postgresql_outage_is_a_quick_503_and_service_resumes_after_it() {
    let db = Db::postgres().await;
    let base = std::env::var("SESAME_TEST_POSTGRES_URL").unwrap();
    let at = base.split('@').nth(1).unwrap().split('/').next().unwrap().to_string();
    let relay = Relay::start(&at).await;
    let mut settings = test_settings(&db);
    settings.database.url = db.url.replacen(&at, &relay.addr.to_string(), 1);
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
