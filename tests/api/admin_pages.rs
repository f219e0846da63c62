//! The admin pages over real HTTP: who gets in, and that each action does
//! what the admin API would (one service behind both).

use crate::browser::Browser;
use crate::db_test;
use crate::helpers::{spawn_app, Db, TestApp};

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
    let email = sesame::domain::Email::parse("chief@example.com").unwrap();
    let profile = sesame::api::users::Profile::for_verified(&sesame::domain::Identifier::Email(email));
    let chief = sesame::api::users::create(&app.state, &profile).await.unwrap();
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
    let off = boss.post(&format!("/admin/users/{sub}/disable"), &[]).await;
    assert!(off.redirects_to(&format!("/admin/users/{sub}")));
    assert!(victim.get("/account").await.redirects_to("/login"));
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

db_test!(
    only_admins_get_in_and_signing_in_comes_back_to_admin,
    clients_are_registered_edited_rotated_and_deleted_with_confirmation,
    disabling_a_user_on_the_page_ends_their_sessions,
);
