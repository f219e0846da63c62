//! SPEC §9 "Admin power": what each grant may put in a token, for an admin
//! user, a user without the role, and a client on its own. The `all` client
//! is first-party, lists every grant, `sesame:admin` and `sesame:account`, so
//! what a token carries is up to the policy alone.

use serde_json::{json, Value};

use crate::browser::{pkce, Browser, CB};
use crate::db_test;
use crate::helpers::{assert_error, spawn_with, test_settings, Db, TestApp, Who, ALL, APP};

db_test!(
    every_grant_carries_only_what_its_holder_may,
    a_non_admin_user_token_cannot_use_the_admin_api,
    an_admin_token_stops_working_with_the_admin_role,
    narrowed_client_scopes_do_not_come_back_on_refresh,
    sesame_account_is_refused_to_a_third_party_client,
    a_consent_page_never_offers_what_the_user_may_not_carry,
);

/// As a granted scope reads: sorted.
const BOTH: &str = "openid sesame:account sesame:admin";

async fn app(db: &Db) -> TestApp {
    let mut s = test_settings(db);
    s.otp.resend_after = std::time::Duration::ZERO;
    s.otp.max_sends = 100;
    spawn_with(s).await
}

/// A user of `ALL` with a password; made an admin when `admin`.
async fn user(app: &TestApp, email: &str, admin: bool) {
    app.account_for(email).await;
    if admin {
        set_admin(app, email, true).await;
    }
    // A password, set through the account service as the user would.
    let t = token(app, "otp", email, Some("openid sesame:account")).await;
    assert_eq!(t.0, 200, "{}", t.1);
    let res = app
        .patch_user(
            t.1["access_token"].as_str().unwrap(),
            &json!({"password": "a good password"}),
        )
        .await;
    assert_eq!(res.status(), 200);
}

async fn set_admin(app: &TestApp, email: &str, admin: bool) {
    let u = app.state.store.find_user(email).await.unwrap().unwrap();
    app.state
        .store
        .set_user_flag(&u.id, sesame::store::users::UserFlag::Admin, admin)
        .await
        .unwrap();
}

/// A token from `grant` at `ALL` for `email` (ignored for client_credentials); (status, body).
async fn token(app: &TestApp, grant: &str, email: &str, scope: Option<&str>) -> (u16, Value) {
    let mut form: Vec<(&str, String)> = vec![("grant_type", grant.to_string())];
    match grant {
        "otp" => {
            assert_eq!(app.getcode(ALL, Who::Email(email)).await.status(), 200);
            form.push(("email", email.into()));
            form.push(("code", app.outbox_code().await));
        }
        "password" => {
            form.push(("username", email.into()));
            form.push(("password", "a good password".into()));
        }
        "authorization_code" => return code_flow(app, email, scope).await,
        _ => {}
    }
    if let Some(s) = scope {
        form.push(("scope", s.into()));
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = app.post_form("/oauth2/token", ALL, &pairs).await;
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The code flow at `ALL` in a browser; a refused scope comes back as `error` on the redirect.
async fn code_flow(app: &TestApp, email: &str, scope: Option<&str>) -> (u16, Value) {
    let mut b = Browser::new(app);
    let (verifier, challenge) = pkce();
    let path = crate::browser::authorize_path(
        ALL.0,
        CB,
        &[
            ("scope", scope.unwrap_or("openid")),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let first = b.get(&path).await;
    if !first.redirects_to("/login") {
        return (400, json!({"error": first.location_param("error")}));
    }
    let page = b.sign_in_and_allow(email).await;
    assert!(page.redirects_to(CB), "{:?}", page.location);
    if let Some(error) = page.location_param("error") {
        return (400, json!({"error": error}));
    }
    let code = page.location_param("code").unwrap();
    let res = crate::browser::exchange_for(app, ALL, &code, &verifier).await;
    (res.status().as_u16(), res.json().await.unwrap())
}

fn scope_of(body: &Value) -> String {
    body["scope"]
        .as_str()
        .unwrap_or_else(|| panic!("no scope in {body}"))
        .to_string()
}

async fn every_grant_carries_only_what_its_holder_may(db: Db) {
    let app = app(&db).await;
    user(&app, "boss@example.com", true).await;
    user(&app, "staff@example.com", false).await;
    for grant in ["otp", "password", "authorization_code"] {
        // Authorization requests must name a scope (OIDC); `code_flow` asks for `openid` then.
        let unasked = if grant == "authorization_code" {
            "openid"
        } else {
            "email openid"
        };
        // An admin gets both when asking, neither unasked.
        let (status, body) = token(&app, grant, "boss@example.com", Some(BOTH)).await;
        assert_eq!(status, 200, "{grant}: {body}");
        assert_eq!(scope_of(&body), BOTH, "{grant}");
        let (_, body) = token(&app, grant, "boss@example.com", None).await;
        assert_eq!(scope_of(&body), unasked, "{grant} without scope");
        // A user without the role never gets sesame:admin; sesame:account is fine here (first-party).
        let (status, body) = token(&app, grant, "staff@example.com", Some(BOTH)).await;
        assert_eq!(status, 400, "{grant}: {body}");
        assert_eq!(body["error"], "invalid_scope", "{grant}");
        let (status, body) = token(&app, grant, "staff@example.com", Some("openid sesame:account")).await;
        assert_eq!(status, 200, "{grant}: {body}");
        let (_, body) = token(&app, grant, "staff@example.com", None).await;
        assert_eq!(scope_of(&body), unasked, "{grant} without scope");
    }
    // A client on its own: sesame:admin when it lists it and asks; no user scopes, no sesame:account.
    let (status, body) = token(&app, "client_credentials", "", Some("sesame:admin")).await;
    assert_eq!((status, scope_of(&body)), (200, "sesame:admin".to_string()));
    let (_, body) = token(&app, "client_credentials", "", None).await;
    assert_eq!(scope_of(&body), "");
    for refused in ["sesame:account", "openid", BOTH] {
        let (status, body) = token(&app, "client_credentials", "", Some(refused)).await;
        assert_eq!(
            (status, body["error"].clone()),
            (400, json!("invalid_scope")),
            "{refused}"
        );
    }
    // A refresh keeps sesame:admin only while the user is an admin.
    let (_, body) = token(&app, "otp", "boss@example.com", Some(BOTH)).await;
    let refreshed = app.refresh(ALL, body["refresh_token"].as_str().unwrap()).await;
    let refreshed: Value = refreshed.json().await.unwrap();
    assert_eq!(scope_of(&refreshed), BOTH);
    set_admin(&app, "boss@example.com", false).await;
    let again = app.refresh(ALL, refreshed["refresh_token"].as_str().unwrap()).await;
    let again: Value = again.json().await.unwrap();
    assert_eq!(scope_of(&again), "openid sesame:account");
}

async fn admin_api(app: &TestApp, token: &str) -> u16 {
    app.get_bearer("/admin/api/clients", token).await.status().as_u16()
}

async fn a_non_admin_user_token_cannot_use_the_admin_api(db: Db) {
    let app = app(&db).await;
    user(&app, "staff@example.com", false).await;
    let (_, body) = token(&app, "otp", "staff@example.com", None).await;
    assert!(!scope_of(&body).contains("sesame:admin"));
    assert_eq!(admin_api(&app, body["access_token"].as_str().unwrap()).await, 403);
}

async fn an_admin_token_stops_working_with_the_admin_role(db: Db) {
    let app = app(&db).await;
    user(&app, "boss@example.com", true).await;
    let (_, body) = token(&app, "otp", "boss@example.com", Some("openid sesame:admin")).await;
    let access = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(admin_api(&app, &access).await, 200);
    set_admin(&app, "boss@example.com", false).await;
    assert_eq!(admin_api(&app, &access).await, 403);
    // A client's own admin token is not a user's: it keeps working.
    let (_, body) = token(&app, "client_credentials", "", Some("sesame:admin")).await;
    assert_eq!(admin_api(&app, body["access_token"].as_str().unwrap()).await, 200);
}

async fn narrowed_client_scopes_do_not_come_back_on_refresh(db: Db) {
    let app = app(&db).await;
    let tokens = app.signed_up(APP, Who::Email("ada@example.com")).await;
    assert!(scope_of(&tokens).contains("email"));
    let mut client = app.state.store.client(APP.0).await.unwrap().unwrap();
    client.scopes = sesame::domain::Scope::parse("openid offline_access").unwrap();
    sesame::clients::update(&app.state.store, &app.state.audit, &client, sesame::clients::By::Cli)
        .await
        .unwrap();
    tokio::time::sleep(app.state.settings.server.client_cache).await;
    let res = app.refresh(APP, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(scope_of(&body), "offline_access openid");
}

async fn sesame_account_is_refused_to_a_third_party_client(db: Db) {
    let app = app(&db).await;
    // APP is not first-party, so it cannot even be registered for it...
    let mut client = app.state.store.client(APP.0).await.unwrap().unwrap();
    client.scopes = sesame::domain::Scope::parse("openid sesame:account").unwrap();
    assert!(
        sesame::clients::update(&app.state.store, &app.state.audit, &client, sesame::clients::By::Cli)
            .await
            .is_err()
    );
    // ...and asking for it at the token endpoint or at authorize is invalid_scope.
    app.signed_up(APP, Who::Email("ada@example.com")).await;
    assert_eq!(app.getcode(APP, Who::Email("ada@example.com")).await.status(), 200);
    let code = app.outbox_code().await;
    let res = app
        .post_form(
            "/oauth2/token",
            APP,
            &[
                ("grant_type", "otp"),
                ("email", "ada@example.com"),
                ("code", &code),
                ("scope", "openid sesame:account"),
            ],
        )
        .await;
    assert_error(res, 400, "invalid_scope").await;
}

async fn a_consent_page_never_offers_what_the_user_may_not_carry(db: Db) {
    let app = app(&db).await;
    app.account_for("staff@example.com").await;
    let mut b = Browser::new(&app);
    let (_, challenge) = pkce();
    let path = crate::browser::authorize_path(
        ALL.0,
        CB,
        &[
            ("scope", "openid sesame:admin"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    assert!(b.get(&path).await.redirects_to("/login"));
    // Straight back to the app with the reason, no consent page in between.
    let page = b.sign_in_with_code("staff@example.com").await;
    assert!(page.redirects_to(CB), "{:?}", page.location);
    assert_eq!(page.location_param("error").as_deref(), Some("invalid_scope"));
    assert!(page.location_param("code").is_none());
}
