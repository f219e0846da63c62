//! Two `sesame serve` processes on one PostgreSQL database behave as one
//! service: a code sent through one verifies through the other, the send
//! limit counts requests to both, and tokens from one are valid on the other.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{basic, Db, APP};
use crate::peers::Receiver;

pub struct Node {
    pub child: Child,
    pub url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_node(db: &Db, sms_url: &str) -> Node {
    start_node_logging_to(db, sms_url, Stdio::inherit())
}

fn start_node_logging_to(db: &Db, sms_url: &str, stderr: Stdio) -> Node {
    start_node_with(db, sms_url, stderr, &[])
}

/// `sesame serve` on `db`, codes by SMS webhook to `sms_url`, with `env` on top.
pub fn start_node_with(db: &Db, sms_url: &str, stderr: Stdio, env: &[(&str, &str)]) -> Node {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .arg("serve")
        .current_dir(db.dir())
        .env("SESAME_DATABASE__URL", &db.url)
        .env("SESAME_SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("SESAME_SERVER__WORKERS", "1")
        .env("SESAME_ISSUER", "http://localhost:8080")
        .env("SESAME_CLIENTS_FILE", db.dir().join("clients.toml"))
        .env("SESAME_SMS__PROVIDER", "webhook")
        .env("SESAME_SMS__URL", sms_url)
        .env("SESAME_OTP__RESEND_AFTER", "0")
        .env("SESAME_LOG__LEVEL", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("sesame serve starts");
    Node {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

pub async fn wait_ready(http: &reqwest::Client, node: &Node) {
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{}/health/ready", node.url)).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node {} did not become ready", node.url);
}

async fn post(http: &reqwest::Client, node: &Node, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    http.post(format!("{}{path}", node.url))
        .header("Authorization", basic(APP.0, APP.1))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(sesame_test_postgres),
    ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half"
)]
async fn two_nodes_on_one_postgres_database_behave_as_one_service() {
    let db = Db::postgres().await;
    std::fs::write(db.dir().join("clients.toml"), crate::helpers::clients_toml()).unwrap();
    let sms = Receiver::start().await;
    let sms_url = format!("{}/sms", sms.url);
    // Started together: migrations, the first signing key and the digest key are created once.
    let (a, b) = (start_node(&db, &sms_url), start_node(&db, &sms_url));
    let http = reqwest::Client::new();
    wait_ready(&http, &a).await;
    wait_ready(&http, &b).await;
    let jwks = |node: &Node| http.get(format!("{}/oauth2/jwks", node.url)).send();
    let jwks_a: Value = jwks(&a).await.unwrap().json().await.unwrap();
    let jwks_b: Value = jwks(&b).await.unwrap().json().await.unwrap();
    assert_eq!(jwks_a, jwks_b, "one shared set of signing keys");
    assert_eq!(
        jwks_a["keys"].as_array().unwrap().len(),
        3,
        "one current key per algorithm, not one per node"
    );

    let phone = [("phone", "+14155550190")];
    assert_eq!(post(&http, &a, "/otp/getcode/", &phone).await.status(), 200);
    let code = sms.last().await.json()["code"].as_str().unwrap().to_string();
    let res = post(&http, &b, "/otp/verifycode/", &[phone[0], ("code", &code)]).await;
    assert_eq!(res.status(), 200, "a code sent through A verifies through B");
    let secret = res.json::<Value>().await.unwrap()["secret_identifier"]
        .as_str()
        .unwrap()
        .to_string();

    let res = http
        .put(format!("{}/api/v1/user/", a.url))
        .header("Authorization", basic(APP.0, APP.1))
        .json(&json!({"secret_identifier": secret, "auto_username": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = post(
        &http,
        &b,
        "/o/extended_token/",
        &[phone[0], ("secret_identifier", &secret)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    let intro: Value = post(
        &http,
        &a,
        "/oauth2/introspect",
        &[("token", tokens["access_token"].as_str().unwrap())],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(intro["active"], true, "a token from B is valid on A");

    // Revoked through B: inactive on A within server.revocation_sync (1 s).
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        post(&http, &b, "/oauth2/revoke", &[("token", access)]).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let intro: Value = post(&http, &a, "/oauth2/introspect", &[("token", access)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(intro["active"], false, "a revocation on B reaches A");

    // The send limit (3 per window) counts requests to both nodes: the first send was the 1st.
    assert_eq!(post(&http, &b, "/otp/getcode/", &phone).await.status(), 200);
    assert_eq!(post(&http, &a, "/otp/getcode/", &phone).await.status(), 200);
    let res = post(&http, &b, "/otp/getcode/", &phone).await;
    assert_eq!(res.status(), 429);
    assert_eq!(
        post(&http, &a, "/otp/getcode/", &phone).await.status(),
        429,
        "the lockout holds on every node"
    );
}

crate::db_test!(a_stopped_node_has_written_its_audit_trail);

/// SIGTERM drains the node, audit queue included: on PostgreSQL the last
/// batch must not depend on connections that belonged to the stopped workers.
async fn a_stopped_node_has_written_its_audit_trail(db: Db) {
    std::fs::write(db.dir().join("clients.toml"), crate::helpers::clients_toml()).unwrap();
    let sms = Receiver::start().await;
    let mut node = start_node_logging_to(&db, &format!("{}/sms", sms.url), Stdio::piped());
    let http = reqwest::Client::new();
    wait_ready(&http, &node).await;
    // Concurrent requests, so that the node's pool opens connections on its
    // workers, and SIGTERM while they are in flight.
    let sends = (0..40).map(|i| {
        let (http, url) = (http.clone(), node.url.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/otp/getcode/"))
                .header("Authorization", basic(APP.0, APP.1))
                .form(&[("phone", format!("+1415555{:04}", 2000 + i))])
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
    });
    let sends: Vec<_> = sends.collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stopped = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let mut answered = 0;
    for send in sends {
        answered += send.await.unwrap() as usize;
    }
    assert!(answered > 0, "some codes were sent before the stop");
    let (status, log) = tokio::task::spawn_blocking(move || {
        let mut log = String::new();
        std::io::Read::read_to_string(&mut node.child.stderr.take().unwrap(), &mut log).unwrap();
        (node.child.wait().unwrap(), log)
    })
    .await
    .unwrap();
    assert!(status.success(), "sesame serve exits cleanly on SIGTERM: {status}");
    assert!(!log.contains("could not write audit events"), "{log}");

    let store = sesame::store::Store::connect(&db.url, Some(1)).await.unwrap();
    let sent = store
        .audit_events(500)
        .await
        .unwrap()
        .into_iter()
        .filter(|(event, _, _)| event == "code_sent")
        .count();
    assert_eq!(
        sent, answered,
        "every code sent has its event, written before the node exited"
    );
}

crate::db_test!(a_requests_log_lines_carry_its_id_and_path_but_never_its_query);

/// Every log line of a request carries its span: an id (also answered as
/// `X-Request-Id`), the method and the path. The query never appears in the
/// log (a magic link's token travels there).
async fn a_requests_log_lines_carry_its_id_and_path_but_never_its_query(db: Db) {
    std::fs::write(db.dir().join("clients.toml"), crate::helpers::clients_toml()).unwrap();
    let sms = Receiver::start().await;
    // Warnings only, and the audit target: the span is there whatever the filter.
    let env = [("SESAME_LOG__LEVEL", "warn,audit=info")];
    let mut node = start_node_with(&db, &format!("{}/sms", sms.url), Stdio::piped(), &env);
    let http = reqwest::Client::new();
    wait_ready(&http, &node).await;
    let mut ids = vec![];
    for phone in ["+14155552101", "+14155552102"] {
        let res = http
            .post(format!("{}/otp/getcode/?probe=not-for-the-log", node.url))
            .header("Authorization", basic(APP.0, APP.1))
            .form(&[("phone", phone)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        ids.push(res.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1], "each request its own id");
    let stopped = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let log = tokio::task::spawn_blocking(move || {
        let mut log = String::new();
        std::io::Read::read_to_string(&mut node.child.stderr.take().unwrap(), &mut log).unwrap();
        node.child.wait().unwrap();
        log
    })
    .await
    .unwrap();
    let sent: Vec<&str> = log.lines().filter(|l| l.contains("code_sent")).collect();
    assert_eq!(sent.len(), 2, "{log}");
    for (line, id) in sent.iter().zip(&ids) {
        assert!(line.contains(id.as_str()) && line.contains("/otp/getcode"), "{line}");
    }
    assert!(!log.contains("not-for-the-log"), "{log}");
}
