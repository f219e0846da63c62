//! The `sesame` binary run as a process against a temporary configuration.

use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sesame::config::SigningAlg;

use crate::db_test;
use crate::helpers::{assert_error, spawn_app, spawn_with, test_settings, Db};

fn sesame(db: &Db, args: &[&str]) -> Output {
    sesame_env(db, args, &[])
}

pub fn sesame_env(db: &Db, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sesame"));
    cmd.args(args)
        .current_dir(db.dir())
        .env("SESAME_DATABASE__URL", &db.url)
        .env("SESAME_CLIENTS_FILE", db.dir().join("clients.toml"))
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the sesame binary runs")
}

fn stdout_json(out: &Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

db_test!(
    cli_manages_clients_end_to_end,
    cli_rotates_and_lists_keys,
    cli_manages_users,
    a_username_cannot_make_the_cli_act_on_another_users_phone_number,
);

/// helper-28's attack: Mallory took the username `4155550199`, Bob's number
/// in national form, and an operator's `sesame user make-admin 4155550199`
/// made Mallory an admin. A username now needs a letter; and a key that
/// still names two users (a digits-only username from before) is refused.
async fn a_username_cannot_make_the_cli_act_on_another_users_phone_number(db: Db) {
    use crate::helpers::{Who, APP};
    let mut settings = test_settings(&db);
    settings.otp.resend_after = std::time::Duration::ZERO;
    let app = spawn_with(settings).await;
    app.signed_up(APP, Who::Phone("+14155550199")).await;
    let bob = stdout_json(&sesame(&db, &["user", "show", "+14155550199", "--json"]))["sub"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = app.verified(APP, Who::Email("mallory@example.com")).await;
    for name in ["4155550199", "415-555-0199", "415.555.0199"] {
        let res = app
            .create_user(APP, &serde_json::json!({"secret_identifier": secret, "username": name}))
            .await;
        let body = assert_error(res, 400, "invalid_request").await;
        assert!(body["error_description"].as_str().unwrap().contains("letter"), "{body}");
    }
    let res = app
        .create_user(
            APP,
            &serde_json::json!({"secret_identifier": secret, "username": "mallory"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let mallory: Value = res.json().await.unwrap();
    let mallory = mallory["sub"].as_str().unwrap().to_string();

    assert!(sesame(&db, &["user", "make-admin", "4155550199"]).status.success());
    let shown = |key: &str| stdout_json(&sesame(&db, &["user", "show", key, "--json"]));
    assert_eq!(shown(&bob)["is_admin"], true, "the number's owner");
    assert_eq!(shown(&mallory)["is_admin"], false);

    // A digits-only username from before the rule: the key names two users, and is refused.
    db.execute(&format!(
        "UPDATE users SET username = '4155550199', username_key = '4155550199' WHERE id = '{mallory}'"
    ))
    .await;
    let out = sesame(&db, &["user", "make-admin", "--revoke", "4155550199"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("matches more than one user") && err.contains(&bob) && err.contains(&mallory),
        "{err}"
    );
    assert_eq!(shown(&bob)["is_admin"], true, "nothing changed");
    assert!(sesame(&db, &["user", "disable", "4155550199"]).status.code() != Some(0));
    assert_eq!(shown(&mallory)["username"], "4155550199");
    assert_eq!(shown(&bob)["phone_number"], "+14155550199");

    // An email finds its user in any spelling of its domain.
    app.signed_up(APP, Who::Email("carol@b\u{00FC}cher.example")).await;
    let carol = shown("carol@b\u{00FC}cher.example")["sub"]
        .as_str()
        .unwrap()
        .to_string();
    for spelling in ["carol@xn--bcher-kva.example", "Carol@B\u{00DC}CHER.example"] {
        assert_eq!(shown(spelling)["sub"], carol.as_str(), "{spelling}");
    }
}

/// How long a running node may keep a client the CLI has just changed (`server.client_cache`).
const CACHE: std::time::Duration = std::time::Duration::from_millis(1000);

async fn cli_manages_clients_end_to_end(db: Db) {
    let mut settings = test_settings(&db);
    settings.server.client_cache = CACHE;
    let app = spawn_with(settings).await;
    let added = stdout_json(&sesame(
        &db,
        &[
            "client",
            "add",
            "--name",
            "Billing",
            "--grant",
            "client_credentials",
            "--scope",
            "api:read",
            "--json",
        ],
    ));
    let id = added["client_id"].as_str().unwrap().to_string();
    let secret = added["client_secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 43, "at least 256 bits");
    assert_eq!(
        app.client_credentials((&id, &secret), None).await.status(),
        200,
        "the new client works at once"
    );

    let stored = app.state.store.client(&id).await.unwrap().unwrap();
    assert!(
        !stored.secret_digest.as_deref().unwrap().contains(&secret),
        "only a digest is stored"
    );

    let list = stdout_json(&sesame(&db, &["client", "list", "--json"]));
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["client_id"] == id.as_str() && c["client_name"] == "Billing"));
    let shown = stdout_json(&sesame(&db, &["client", "show", &id, "--json"]));
    assert!(shown.get("client_secret").is_none(), "the secret is never shown again");
    assert_eq!(shown["scope"], "api:read");

    let updated = stdout_json(&sesame(
        &db,
        &[
            "client",
            "update",
            &id,
            "--name",
            "Billing v2",
            "--scope",
            "api:read",
            "api:write",
            "--json",
        ],
    ));
    assert_eq!(updated["client_name"], "Billing v2");
    assert_eq!(updated["scope"], "api:read api:write");

    let rotated = stdout_json(&sesame(&db, &["client", "rotate-secret", &id, "--json"]));
    let new_secret = rotated["client_secret"].as_str().unwrap();
    tokio::time::sleep(CACHE).await;
    assert_error(
        app.client_credentials((&id, &secret), None).await,
        401,
        "invalid_client",
    )
    .await;
    assert_eq!(app.client_credentials((&id, new_secret), None).await.status(), 200);

    assert!(sesame(&db, &["client", "remove", &id]).status.success());
    tokio::time::sleep(CACHE).await;
    assert_error(
        app.client_credentials((&id, new_secret), None).await,
        401,
        "invalid_client",
    )
    .await;
    // Each change is in the audit trail, as the admin API's are.
    let mut by_cli: Vec<String> = app
        .state
        .store
        .audit_search(&sesame::store::audit::AuditFilter {
            client_id: Some(id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.detail.as_deref() == Some("by the CLI"))
        .map(|e| e.event)
        .collect();
    by_cli.sort();
    assert_eq!(
        by_cli,
        [
            "client_created",
            "client_deleted",
            "client_secret_rotated",
            "client_updated"
        ]
    );

    let again = sesame(&db, &["client", "remove", &id]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.starts_with("error: no client with id"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");

    let bad = sesame(&db, &["client", "add", "--name", "X", "--grant", "teleport"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown grant type `teleport`"));
}

async fn cli_rotates_and_lists_keys(db: Db) {
    let app = spawn_app(&db).await;
    let before: Vec<String> = SigningAlg::ALL
        .iter()
        .map(|a| app.state.keys.ring().current_kid(*a).unwrap().to_string())
        .collect();
    let out = sesame(&db, &["keys", "rotate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keys = stdout_json(&sesame(&db, &["keys", "list", "--json"]));
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 6, "a new current key for each of the three algorithms");
    for kid in &before {
        assert!(
            keys.iter()
                .any(|k| k["kid"] == kid.as_str() && k["state"] == "published"),
            "the previous keys stay published"
        );
    }
    let new_es256 = keys
        .iter()
        .find(|k| k["state"] == "current" && k["alg"] == "ES256")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    // SPEC §7: running nodes serve a rotated JWKS within a minute. This one
    // reloads its keys on its own timer (every 30 s): no reload is called here.
    let started = std::time::Instant::now();
    loop {
        let jwks: Value = app.get("/oauth2/jwks").await.json().await.unwrap();
        let published = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == new_es256.as_str());
        if published {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the running node still serves the old JWKS after a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let token = app.service_token().await;
    assert_eq!(
        crate::helpers::jwt_parts(&token).0["kid"],
        new_es256.as_str(),
        "and signs with the new key"
    );
}

#[test]
fn hash_secret_prints_a_clients_toml_digest() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args(["client", "hash-secret"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"demo-secret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        sesame::domain::client::hash_secret("demo-secret")
    );
}

#[test]
fn a_bad_configuration_stops_with_one_line_naming_the_key() {
    let db = Db::sqlite();
    let out = sesame_env(&db, &["migrate"], &[("SESAME_OTP__TTL", "ten minutes")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("otp.ttl"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = sesame_env(&db, &["migrate"], &[("SESAME_DATABASE__POOLER", "transaction")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database.pooler"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = sesame_env(&db, &["migrate"], &[("SESAME_SERVER__BINDD", "x")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bindd"));

    let cfg = db.dir().join("sesame.toml");
    std::fs::write(&cfg, "[tokens]\nsigning_alg = \"HS256\"\n").unwrap();
    let out = sesame(&db, &["--config", cfg.to_str().unwrap(), "migrate"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tokens.signing_alg"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_clients_file_stops_start_up_with_the_reason() {
    let db = Db::sqlite();
    std::fs::write(
        db.dir().join("clients.toml"),
        "[[client]]\nid = \"x\"\nname = \"X\"\nsecret_env = \"NO_SUCH_SECRET_VAR_FOR_TEST\"\n",
    )
    .unwrap();
    let out = sesame_env(&db, &["serve"], &[("SESAME_SERVER__BIND", "127.0.0.1:0")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("client `x`") && err.contains("NO_SUCH_SECRET_VAR_FOR_TEST"),
        "{err}"
    );
}

#[test]
fn the_demo_client_on_a_public_issuer_starts_with_a_warning() {
    use std::io::{BufRead, BufReader};
    let db = Db::sqlite();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/clients.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .arg("serve")
        .current_dir(db.dir())
        .env("SESAME_DATABASE__URL", &db.url)
        .env("SESAME_SERVER__BIND", "127.0.0.1:0")
        .env("SESAME_ISSUER", "https://id.example.com")
        .env("SESAME_SMS__PROVIDER", "webhook")
        .env("SESAME_SMS__URL", "http://127.0.0.1:9/sms")
        .env("SESAME_EMAIL__PROVIDER", "webhook")
        .env("SESAME_EMAIL__URL", "http://127.0.0.1:9/email")
        .env("SESAME_CLIENTS_FILE", shipped)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut warned = false;
    for line in stderr.lines().map_while(Result::ok) {
        if line.contains("demo client") && line.contains("WARN") {
            warned = true;
        }
        if line.contains("listening") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "a warning about the demo client");
}

async fn cli_manages_users(db: Db) {
    use crate::helpers::{Who, APP};
    let mut settings = test_settings(&db);
    settings.server.revocation_sync = std::time::Duration::from_millis(200);
    settings.otp.resend_after = std::time::Duration::ZERO;
    let app = spawn_with(settings).await;
    let who = Who::Phone("+14155550401");
    let tokens = app.signed_up(APP, who).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let access = tokens["access_token"].as_str().unwrap().to_string();

    let list = stdout_json(&sesame(&db, &["user", "list", "--json"]));
    let sub = list[0]["sub"].as_str().unwrap().to_string();
    assert_eq!(list[0]["phone_number"], "+14155550401");
    let found = stdout_json(&sesame(&db, &["user", "list", "--search", "555040", "--json"]));
    assert_eq!(found.as_array().unwrap().len(), 1);
    // Any identifier finds the user, a national phone format included.
    for key in [sub.as_str(), "(415) 555-0401", "+14155550401"] {
        let shown = stdout_json(&sesame(&db, &["user", "show", key, "--json"]));
        assert_eq!(shown["sub"], sub.as_str(), "{key}");
    }
    assert!(sesame(&db, &["user", "make-admin", &sub]).status.success());
    assert_eq!(
        stdout_json(&sesame(&db, &["user", "show", &sub, "--json"]))["is_admin"],
        true
    );

    // Disabling ends the user's tokens and stops sign-in.
    assert!(sesame(&db, &["user", "disable", &sub]).status.success());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.introspect(&access).await["active"], false);
    let res = app
        .post_form(
            "/oauth2/token",
            APP,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_error(res, 400, "invalid_grant").await;
    let res = app.sign_in_with_code(APP, who).await;
    assert_error(res, 400, "invalid_grant").await;

    assert!(sesame(&db, &["user", "enable", &sub]).status.success());
    let res = app.sign_in_with_code(APP, who).await;
    assert_eq!(res.status(), 200, "enabled again");

    assert!(sesame(&db, &["user", "delete", &sub]).status.success());
    let gone = sesame(&db, &["user", "show", &sub]);
    assert!(!gone.status.success());
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(
        err.starts_with("error: no user matches") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// A user signed up through the app, and their refresh token.
async fn signed_up(app: &crate::helpers::TestApp, db: &Db) -> (String, String) {
    use crate::helpers::{Who, APP};
    let tokens = app.signed_up(APP, Who::Email("kept@example.com")).await;
    let sub = stdout_json(&sesame(db, &["user", "list", "--json"]))[0]["sub"]
        .as_str()
        .unwrap()
        .to_string();
    (sub, tokens["refresh_token"].as_str().unwrap().to_string())
}

async fn refresh(app: &crate::helpers::TestApp, token: &str) -> reqwest::Response {
    let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
    app.post_form("/oauth2/token", crate::helpers::APP, &form).await
}

/// On PostgreSQL an account change and its audit event commit together
/// (`Accounts::with_event`): when the event cannot be written (here a
/// trigger refuses every audit insert), the CLI's change is not made and
/// it says why, rather than making it and losing its trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run it")]
async fn on_postgres_an_account_change_whose_audit_event_cannot_be_written_is_not_made() {
    let db = Db::postgres().await;
    let app = spawn_app(&db).await;
    let (sub, token) = signed_up(&app, &db).await;
    db.execute(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'the audit trail is refused'; END $$;
         CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events
           FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
    )
    .await;
    // The `audit` log target on, as an operator shipping it to a SIEM would:
    // it tells only of events the database took.
    let logged = [("RUST_LOG", "audit=info,warn")];
    for (change, event) in [
        (&["user", "make-admin", &sub][..], "admin_granted"),
        (&["user", "disable", &sub][..], "user_disabled"),
    ] {
        let out = sesame_env(&db, change, &logged);
        assert!(!out.status.success(), "{change:?} fails");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("the audit trail is refused"), "{change:?}: {err}");
        assert!(!err.contains(event), "no log line for an event not recorded: {err}");
    }
    let shown = stdout_json(&sesame(&db, &["user", "show", &sub, "--json"]));
    assert_eq!(shown["is_admin"], false, "not made an admin");
    assert_eq!(shown["disabled"], false, "not disabled");

    db.execute("DROP TRIGGER refuse_audit ON audit_events").await;
    // (A refresh records an event too: asked once the trigger is gone.)
    assert_eq!(refresh(&app, &token).await.status(), 200, "the tokens were not ended");
    let out = sesame_env(&db, &["user", "make-admin", &sub], &logged);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin_granted"), "logged once written: {err}");
    let events = app.audit_event_names().await;
    assert_eq!(events.iter().filter(|e| *e == "admin_granted").count(), 1, "{events:?}");
    assert!(!events.iter().any(|e| e == "user_disabled"), "{events:?}");
}

/// On SQLite a group keeps what it did when a later statement fails, so the
/// same change stands: the CLI carries it through (a disabled account's
/// tokens are ended) and says that its audit event could not be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_an_account_change_whose_audit_event_cannot_be_written_is_carried_through_and_said() {
    let db = Db::sqlite();
    let app = spawn_app(&db).await;
    let (sub, token) = signed_up(&app, &db).await;
    db.execute(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events
         BEGIN SELECT RAISE(ABORT, 'the audit trail is refused'); END;",
    )
    .await;
    let out = sesame(&db, &["user", "disable", &sub]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the change was made, but its audit events could not be written"),
        "{err}"
    );
    assert_eq!(
        stdout_json(&sesame(&db, &["user", "show", &sub, "--json"]))["disabled"],
        true
    );
    assert_error(refresh(&app, &token).await, 400, "invalid_grant").await;
}
