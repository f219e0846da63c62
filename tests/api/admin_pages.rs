//! The admin pages over real HTTP: who gets in, and that each action does
//! what the admin API would (one service behind both).

use crate::browser::Browser;
use crate::db_test;
use crate::helpers::{assert_error, spawn_app, Db, TestApp, Who, APP};

/// A browser signed in as a fresh user; made admin when `admin`.
async fn signed_in<'a>(app: &'a TestApp, email: &str, admin: bool) -> Browser<'a> {
    let mut b = Browser::new(app);
    b.sign_in_with_code(email).await;
    b.get("/signup").await;
    b.post("/signup", &[]).await;
    if admin {
        let user = app.state.store.find_user(email).await.unwrap().unwrap();
        app.state
            .store
            .set_user_flag(&user.id, sesame::store::users::UserFlag::Admin, true)
            .await
            .unwrap();
    }
    b
}

async fn only_admins_get_in_and_signing_in_comes_back_to_admin(db: Db) {
    let app = spawn_app(&db).await;
    let mut user = signed_in(&app, "plain@example.com", false).await;
    let page = user.get("/admin/clients").await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("Only administrators"));
    assert_eq!(user.get("/admin/users").await.status, 403);
    assert_eq!(user.post("/admin/clients/new", &[("name", "x")]).await.status, 403);

    // Signed out: /admin sends to sign-in, and sign-in comes back to /admin.
    let chief = app.account_for("chief@example.com").await;
    app.state
        .store
        .set_user_flag(&chief.id, sesame::store::users::UserFlag::Admin, true)
        .await
        .unwrap();
    let mut fresh = Browser::new(&app);
    assert!(fresh.get("/admin/users").await.redirects_to("/login"));
    let back = fresh.sign_in_with_code("chief@example.com").await;
    assert!(back.redirects_to("/admin/users"), "{:?}", back.location);
    assert_eq!(fresh.get("/admin/users").await.status, 200);
}

async fn clients_are_registered_edited_rotated_and_deleted_with_confirmation(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = signed_in(&app, "boss@example.com", true).await;
    b.get("/admin/clients/new").await;
    let bad = b
        .post(
            "/admin/clients/new",
            &[
                ("name", "Bad"),
                ("redirect_uris", "not a uri"),
                ("grant_authorization_code", "on"),
                ("scopes", "openid"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("must be an absolute URI"), "the reason is shown");

    let made = b
        .post(
            "/admin/clients/new",
            &[
                ("name", "Backend"),
                ("grant_otp", "on"),
                ("scopes", "openid phone"),
                ("type", "confidential"),
            ],
        )
        .await;
    assert_eq!(made.status, 200);
    let id = between(&made.body, "id=\"client-id\">", "<");
    let secret = between(&made.body, "id=\"client-secret\" class=\"secret\">", "<");
    assert_eq!(made.headers["cache-control"], "no-store");
    let client = app.state.store.client(&id).await.unwrap().unwrap();
    assert!(client.secret_matches(&secret));
    assert_eq!(client.grant_types, vec!["otp"]);
    assert!(
        !b.get(&format!("/admin/clients/{id}")).await.body.contains(&secret),
        "shown once only"
    );

    let edited = b
        .post(
            &format!("/admin/clients/{id}"),
            &[
                ("name", "Backend v2"),
                ("grant_otp", "on"),
                ("grant_refresh_token", "on"),
                ("scopes", "openid phone offline_access"),
            ],
        )
        .await;
    assert!(edited.redirects_to(&format!("/admin/clients/{id}")));
    let page = b.get(&format!("/admin/clients/{id}")).await;
    assert!(page.body.contains("Backend v2"));

    // Rotation: a confirmation page first, then the new secret once.
    let ask = b.get(&format!("/admin/clients/{id}/rotate")).await;
    assert_eq!(ask.status, 200);
    assert!(ask.body.contains("Rotate the secret"));
    let rotated = b.post(&format!("/admin/clients/{id}/rotate"), &[]).await;
    let new_secret = between(&rotated.body, "id=\"client-secret\" class=\"secret\">", "<");
    assert_ne!(new_secret, secret);

    assert_eq!(b.get(&format!("/admin/clients/{id}/delete")).await.status, 200);
    let deleted = b.post(&format!("/admin/clients/{id}/delete"), &[]).await;
    assert!(deleted.redirects_to("/admin/clients"));
    assert_eq!(b.get(&format!("/admin/clients/{id}")).await.status, 404);
    assert_eq!(
        b.post(&format!("/admin/clients/{id}/delete"), &[("x", "y")])
            .await
            .status,
        404
    );

    // Audit events are written in batches (≤ 50 ms apart).
    let mut found = false;
    for _ in 0..40 {
        if b.get("/admin/audit?event=client_deleted").await.body.contains(&id) {
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(found, "the audit trail filters by event");
    assert!(!b
        .get("/admin/audit?event=client_created")
        .await
        .body
        .contains("client_deleted"));
    assert_eq!(b.get("/admin/audit?since=yesterday").await.status, 422);
}

async fn disabling_a_user_on_the_page_ends_their_sessions(db: Db) {
    let app = spawn_app(&db).await;
    let mut boss = signed_in(&app, "boss2@example.com", true).await;
    let mut victim = signed_in(&app, "victim@example.com", false).await;
    assert_eq!(victim.get("/account").await.status, 200);
    let sub = app
        .state
        .store
        .find_user("victim@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    let list = boss.get("/admin/users?q=victim").await;
    assert!(list.body.contains(&sub) && !list.body.contains("boss2@example.com"));
    let view = boss.get(&format!("/admin/users/{sub}")).await;
    assert!(
        view.body.contains("victim@example.com") && view.body.contains("Chrome on Linux"),
        "sessions are listed"
    );
    // The victim's app holds a token for them too.
    let tokens: serde_json::Value = app
        .sign_in_with_code(APP, Who::Email("victim@example.com"))
        .await
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.introspect(&access).await["active"], true);
    let off = boss.post(&format!("/admin/users/{sub}/disable"), &[]).await;
    assert!(off.redirects_to(&format!("/admin/users/{sub}")));
    assert!(victim.get("/account").await.redirects_to("/login"));
    assert_eq!(
        app.introspect(&access).await["active"],
        false,
        "disabled on the admin page as by the API and the CLI: its tokens end"
    );
    assert_error(
        app.refresh(APP, tokens["refresh_token"].as_str().unwrap()).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(app.state.store.user(&sub).await.unwrap().unwrap().disabled);
    boss.post(&format!("/admin/users/{sub}/enable"), &[]).await;
    assert!(!app.state.store.user(&sub).await.unwrap().unwrap().disabled);
    assert_eq!(boss.get(&format!("/admin/users/{sub}/delete")).await.status, 200);
    assert!(boss
        .post(&format!("/admin/users/{sub}/delete"), &[])
        .await
        .redirects_to("/admin/users"));
    assert!(app.state.store.user(&sub).await.unwrap().is_none());
}

fn between(body: &str, start: &str, end: &str) -> String {
    let at = body.find(start).unwrap_or_else(|| panic!("`{start}` not in the page")) + start.len();
    body[at..at + body[at..].find(end).unwrap()].trim().to_string()
}

/// The audit rows of `event`, as `(user_id, detail)`.
async fn audited(app: &TestApp, event: &str) -> Vec<(String, String)> {
    app.state.audit.flush().await;
    let filter = sesame::store::audit::AuditFilter {
        event: Some(event.into()),
        client_id: None,
        user_id: None,
        since: None,
        until: None,
        limit: 100,
    };
    let rows = app.state.store.audit_search(&filter).await.unwrap();
    rows.into_iter()
        .map(|r| (r.user_id.unwrap_or_default(), r.detail.unwrap_or_default()))
        .collect()
}

/// `sesame user ACTION SUB` as a process on the app's database.
fn cli_user(db: &Db, action: &str, sub: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args(["user", action, sub])
        .current_dir(db.dir())
        .env("SESAME_DATABASE__URL", &db.url)
        .env("SESAME_CLIENTS_FILE", db.dir().join("clients.toml"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn disabling_and_deleting_a_user_is_audited_alike_from_the_api_the_pages_and_the_cli(db: Db) {
    let app = spawn_app(&db).await;
    let mut boss = signed_in(&app, "boss@example.com", true).await;
    let boss_id = app.state.store.find_user("boss@example.com").await.unwrap().unwrap().id;
    let by_api = app.account_for("api@example.com").await.id;
    let by_page = app.account_for("page@example.com").await.id;
    let by_cli = app.account_for("cli@example.com").await.id;
    let token = app
        .client_credentials(crate::helpers::ADMIN, Some("sesame:admin"))
        .await;
    let token = token.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let api = |method: reqwest::Method, sub: &str| {
        app.http
            .request(method, app.url(&format!("/admin/api/users/{sub}")))
            .bearer_auth(&token)
    };

    let res = api(reqwest::Method::PUT, &by_api)
        .json(&serde_json::json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    boss.get(&format!("/admin/users/{by_page}")).await;
    boss.post(&format!("/admin/users/{by_page}/disable"), &[]).await;
    cli_user(&db, "disable", &by_cli);

    let disabled = audited(&app, "user_disabled").await;
    let detail_of = |rows: &[(String, String)], sub: &str| {
        rows.iter()
            .find(|(u, _)| u == sub)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no event for {sub} in {rows:?}"))
    };
    assert_eq!(detail_of(&disabled, &by_api), "by admin client admin (admin API)");
    assert_eq!(
        detail_of(&disabled, &by_page),
        format!("by admin {boss_id} (admin pages)")
    );
    assert_eq!(detail_of(&disabled, &by_cli), "by an operator (CLI)");

    assert_eq!(
        api(reqwest::Method::DELETE, &by_api).send().await.unwrap().status(),
        204
    );
    boss.get(&format!("/admin/users/{by_page}/delete")).await;
    boss.post(&format!("/admin/users/{by_page}/delete"), &[]).await;
    cli_user(&db, "delete", &by_cli);
    let deleted = audited(&app, "user_deleted").await;
    for sub in [&by_api, &by_page, &by_cli] {
        assert!(detail_of(&deleted, sub).starts_with("by "));
        assert!(app.state.store.user(sub).await.unwrap().is_none());
    }
    // Creation is one event too, whoever creates.
    assert_eq!(audited(&app, "account_created").await.len(), 4);
    assert!(audited(&app, "user_created").await.is_empty());
}

/// SPEC §9: deleting a user makes their access tokens inactive
/// (introspection, userinfo) within `server.revocation_sync` (1 s), and
/// their refresh tokens dead: deleted as they are, without a disable first,
/// from the admin API, the admin pages and the CLI alike.
async fn deleting_a_live_user_ends_their_tokens_from_the_api_the_pages_and_the_cli(db: Db) {
    let app = spawn_app(&db).await;
    let mut boss = signed_in(&app, "boss3@example.com", true).await;
    let mut held = vec![];
    for email in ["del-api@example.com", "del-page@example.com", "del-cli@example.com"] {
        let tokens = app.signed_up(APP, Who::Email(email)).await;
        let access = tokens["access_token"].as_str().unwrap().to_string();
        assert_eq!(app.introspect(&access).await["active"], true);
        assert_eq!(app.userinfo(&access).await.status(), 200);
        let sub = app.state.store.find_user(email).await.unwrap().unwrap().id;
        held.push((sub, access, tokens["refresh_token"].as_str().unwrap().to_string()));
    }
    let admin = app.admin_token().await;
    let res = app
        .http
        .delete(app.url(&format!("/admin/api/users/{}", held[0].0)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    boss.get(&format!("/admin/users/{}/delete", held[1].0)).await;
    assert!(boss
        .post(&format!("/admin/users/{}/delete", held[1].0), &[])
        .await
        .redirects_to("/admin/users"));
    cli_user(&db, "delete", &held[2].0);

    let deleted = std::time::Instant::now();
    for (sub, access, refresh) in &held {
        // The CLI is another process: this node learns of it at its next sync.
        while app.introspect(access).await["active"] != false {
            assert!(
                deleted.elapsed() < std::time::Duration::from_secs(3),
                "{sub}'s access token is still active"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_error(app.userinfo(access).await, 401, "invalid_token").await;
        assert_error(app.refresh(APP, refresh).await, 400, "invalid_grant").await;
        assert!(app.state.store.user(sub).await.unwrap().is_none());
    }
}

db_test!(
    deleting_a_live_user_ends_their_tokens_from_the_api_the_pages_and_the_cli,
    disabling_and_deleting_a_user_is_audited_alike_from_the_api_the_pages_and_the_cli,
    only_admins_get_in_and_signing_in_comes_back_to_admin,
    clients_are_registered_edited_rotated_and_deleted_with_confirmation,
    disabling_a_user_on_the_page_ends_their_sessions,
);
