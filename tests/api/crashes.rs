//! Real processes, real signals (issue 14): `kill -9` under load loses no
//! acknowledged write and no acknowledged operation's audit event; a node
//! that cannot open its database stops at once with one clear line.
//! (SIGTERM's drain is `multi_node::a_stopped_node_has_written_its_audit_trail`;
//! a PostgreSQL outage is `outage.rs`.)

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sesame::store::audit::AuditFilter;

use crate::helpers::{basic, Db, APP};
use crate::multi_node::{start_node_with, wait_ready};
use crate::peers::Receiver;

crate::db_test!(kill_9_under_load_loses_no_acknowledged_account_or_its_audit_events);

/// Eight clients sign up new phone numbers (code by SMS, then the `otp`
/// grant creating the account) until the node is killed with SIGKILL. Every
/// sign-up that was answered 200 has its account and both of its audit
/// events (`account_created`, `token_issued`) after the kill, and the node
/// starts again on the same database.
async fn kill_9_under_load_loses_no_acknowledged_account_or_its_audit_events(db: Db) {
    std::fs::write(db.dir().join("clients.toml"), crate::helpers::clients_toml()).unwrap();
    let sms = std::sync::Arc::new(Receiver::start().await);
    let sms_url = format!("{}/sms", sms.url);
    let env = [
        ("SESAME_OTP__AUTO_CREATE_ACCOUNTS", "true"),
        ("SESAME_OTP__IP_MAX_SENDS", "1000000"),
        ("SESAME_OTP__CLIENT_MAX_SENDS", "1000000"),
        ("SESAME_ABUSE__COUNTRY_MAX_SENDS", "1000000"),
        ("SESAME_ABUSE__GLOBAL_MAX_SMS", "1000000"),
    ];
    let mut node = start_node_with(&db, &sms_url, Stdio::inherit(), &env);
    let http = reqwest::Client::new();
    wait_ready(&http, &node).await;

    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (http, url, sms) = (http.clone(), node.url.clone(), sms.clone());
            tokio::spawn(async move {
                let mut acknowledged = vec![];
                for i in 0..700 {
                    let phone = format!("+1415555{:04}", 3000 + w * 700 + i);
                    match sign_up(&http, &url, &sms, &phone).await {
                        Some(sub) => acknowledged.push(sub),
                        None => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    node.child.kill().unwrap(); // SIGKILL
    node.child.wait().unwrap();
    let mut acknowledged = vec![];
    for w in workers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 8,
        "sign-ups were answered before the kill: {}",
        acknowledged.len()
    );

    let store = sesame::store::Store::connect(&db.url, Some(1)).await.unwrap();
    let users_of = |event: &'static str| {
        let store = store.clone();
        async move {
            let filter = AuditFilter {
                event: Some(event.into()),
                limit: 1_000_000,
                ..Default::default()
            };
            let rows = store.audit_search(&filter).await.unwrap();
            rows.into_iter().filter_map(|r| r.user_id).collect::<HashSet<_>>()
        }
    };
    let (created, issued) = (users_of("account_created").await, users_of("token_issued").await);
    for sub in &acknowledged {
        assert!(
            store.user(sub).await.unwrap().is_some(),
            "acknowledged account {sub} exists"
        );
        assert!(created.contains(sub), "account {sub} has its account_created event");
        assert!(issued.contains(sub), "account {sub} has its token_issued event");
    }
    eprintln!(
        "{} acknowledged sign-ups, all with their account and events",
        acknowledged.len()
    );

    let again = start_node_with(&db, &sms_url, Stdio::inherit(), &env);
    wait_ready(&http, &again).await;
    assert!(
        sign_up(&http, &again.url, &sms, "+14155559990").await.is_some(),
        "the node serves again on the database it was killed over"
    );
}

/// getcode, the code from the SMS webhook, then the `otp` grant: the
/// token's `sub` when every step was answered 200, else `None`.
async fn sign_up(http: &reqwest::Client, url: &str, sms: &Receiver, phone: &str) -> Option<String> {
    let post = |path: &str, form: Vec<(&str, String)>| {
        http.post(format!("{url}{path}"))
            .header("Authorization", basic(APP.0, APP.1))
            .form(&form)
            .send()
    };
    let sent = post("/otp/getcode/", vec![("phone", phone.to_string())]).await.ok()?;
    if sent.status() != 200 {
        return None;
    }
    let code = sms.code_for(phone)?;
    let form = vec![
        ("grant_type", "otp".to_string()),
        ("phone", phone.to_string()),
        ("code", code),
    ];
    let res = post("/oauth2/token", form).await.ok()?;
    if res.status() != 200 {
        return None;
    }
    let tokens: Value = res.json().await.ok()?;
    let payload = tokens["access_token"].as_str()?.split('.').nth(1)?.to_string();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims["sub"].as_str().map(String::from)
}

/// `sesame serve` that cannot open its database: how it ended, and what it printed.
fn serve_with_database(db: &Db, url: &str) -> (std::process::ExitStatus, String, Duration) {
    std::fs::write(db.dir().join("clients.toml"), crate::helpers::clients_toml()).unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .arg("serve")
        .current_dir(db.dir())
        .env("SESAME_DATABASE__URL", url)
        .env("SESAME_SERVER__BIND", "127.0.0.1:0")
        .env("SESAME_CLIENTS_FILE", db.dir().join("clients.toml"))
        .env("SESAME_LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    (out.status, stderr, started.elapsed())
}

fn one_clear_line(stderr: &str, says: &str) {
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(says), "{stderr}");
}

#[test]
fn a_corrupt_sqlite_file_stops_start_up_with_one_clear_line() {
    let db = Db::sqlite();
    let file = db.dir().join("sesame.db");
    std::fs::write(&file, vec![0x5a_u8; 8192]).unwrap();
    let (status, stderr, _) = serve_with_database(&db, &db.url);
    assert!(!status.success());
    one_clear_line(&stderr, "cannot open the SQLite database");
    assert!(stderr.contains("not a database"), "{stderr}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        vec![0x5a_u8; 8192],
        "the file is left as it was"
    );
}

#[test]
fn a_sqlite_path_that_cannot_be_created_stops_start_up_with_one_clear_line() {
    let db = Db::sqlite();
    // A regular file where the database's directory should be (a read-only
    // directory would not stop root, who runs CI).
    let blocker = db.dir().join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let url = format!("sqlite://{}/sesame.db", blocker.display());
    let (status, stderr, _) = serve_with_database(&db, &url);
    assert!(!status.success());
    one_clear_line(&stderr, "cannot open the SQLite database");
}

#[test]
fn a_read_only_sqlite_database_stops_start_up_with_one_clear_line() {
    let db = Db::sqlite();
    let url = format!("{}?mode=ro", db.url);
    let (status, stderr, _) = serve_with_database(&db, &url);
    assert!(!status.success());
    one_clear_line(&stderr, "SQLite database");
}

#[test]
fn an_unreachable_postgresql_url_stops_start_up_with_one_clear_line() {
    let db = Db::sqlite();
    let (status, stderr, took) = serve_with_database(&db, "postgres://postgres@127.0.0.1:1/test");
    assert!(!status.success());
    one_clear_line(
        &stderr,
        "cannot connect to the database (postgres://postgres@127.0.0.1:1/test)",
    );
    assert!(took < Duration::from_secs(10), "at once, not after retrying: {took:?}");
}

#[test]
fn a_database_url_of_another_kind_stops_start_up_with_one_clear_line() {
    let db = Db::sqlite();
    let (status, stderr, _) = serve_with_database(&db, "mysql://root@127.0.0.1/test");
    assert!(!status.success());
    one_clear_line(&stderr, "database.url");
}
