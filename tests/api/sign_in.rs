//! Browser sign-in over real HTTP: the authorization code flow, its pages and
//! sessions, PKCE, prompt handling, CSRF, logout.

use serde_json::Value;

use crate::browser::{authorize_path, exchange, pkce, sign_up_through_authorize, start, Browser, CB};
use crate::db_test;
use crate::helpers::{assert_error, jwt_parts, spawn_app, spawn_with, test_settings, Db, APP, SPA};

async fn new_user_signs_up_consents_and_gets_tokens(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let (callback, verifier) = sign_up_through_authorize(&mut b, "ada@example.com").await;
    assert_eq!(callback.status, 303);
    assert_eq!(callback.location_param("state").as_deref(), Some("st-123"));
    assert_eq!(
        callback.location_param("iss").as_deref(),
        Some(app.address.as_str()),
        "RFC 9207"
    );
    let code = callback.location_param("code").unwrap();

    let res = exchange(&app, &code, &verifier).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let tokens: Value = res.json().await.unwrap();
    let (header, id) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(header["typ"], "JWT");
    assert_eq!(id["iss"], app.address.as_str());
    assert_eq!(id["aud"], APP.0);
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["amr"], serde_json::json!(["otp"]));
    assert!(id["acr"].is_string());
    assert!(id["auth_time"].as_i64().unwrap() <= id["iat"].as_i64().unwrap());
    assert_eq!(id["email"], "ada@example.com");
    assert_eq!(id["given_name"], "Ada");

    // userinfo agrees with the ID token.
    let info: Value = app
        .userinfo(tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    for claim in ["sub", "email", "email_verified", "given_name", "family_name"] {
        assert_eq!(info[claim], id[claim], "{claim}");
    }

    // The refresh token works.
    let refreshed = app.refresh(APP, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), 200);

    // A returning user skips signup and consent: straight back with a code.
    let (page, verifier) = start(&mut b, &[]).await;
    assert!(page.redirects_to(CB), "{:?}", page.location);
    let res = exchange(&app, &page.location_param("code").unwrap(), &verifier).await;
    assert_eq!(res.status(), 200);
    let again: Value = res.json().await.unwrap();
    assert_eq!(jwt_parts(again["id_token"].as_str().unwrap()).1["sub"], id["sub"]);
}

async fn a_reused_code_is_refused_and_revokes_what_it_issued(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let (callback, verifier) = sign_up_through_authorize(&mut b, "reuse@example.com").await;
    let code = callback.location_param("code").unwrap();
    let tokens: Value = exchange(&app, &code, &verifier).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);

    assert_error(exchange(&app, &code, &verifier).await, 400, "invalid_grant").await;
    assert_eq!(
        app.introspect(access).await["active"],
        false,
        "the first use's access token is revoked"
    );
    let refresh = app.refresh(APP, tokens["refresh_token"].as_str().unwrap()).await;
    assert_error(refresh, 400, "invalid_grant").await;
    assert!(app.audit_event_names().await.contains(&"code_reuse".to_string()));
}

/// Single use under a race: ten exchanges of one authorization code at
/// once get tokens once (and the reuse revokes what that one issued).
async fn racing_exchanges_of_one_code_issue_tokens_once(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let (callback, verifier) = sign_up_through_authorize(&mut b, "racing-code@example.com").await;
    let code = callback.location_param("code").unwrap();
    let tries = (0..10).map(|_| exchange(&app, &code, &verifier));
    let answers = futures_util::future::join_all(tries).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
}

async fn codes_are_bound_to_client_redirect_and_expiry(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let (callback, verifier) = sign_up_through_authorize(&mut b, "bound@example.com").await;
    let code = callback.location_param("code").unwrap();
    let wrong_redirect = app
        .post_form(
            "/oauth2/token",
            APP,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://localhost:3000/other"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_error(wrong_redirect, 400, "invalid_grant").await;
    // Refused before the code is spent: its own request still gets the tokens, once.
    assert_eq!(exchange(&app, &code, &verifier).await.status(), 200);
    assert_error(exchange(&app, &code, &verifier).await, 400, "invalid_grant").await;

    // A code lives 60 seconds (SPEC §4; the clock is moved in the database,
    // and stored times are whole seconds): 58 s old it works, 61 s old it
    // is refused.
    let aged =
        |secs: i64| format!("UPDATE auth_codes SET created_at = created_at - {secs}, expires_at = expires_at - {secs}");
    let (page, verifier) = start(&mut b, &[]).await;
    let code = page.location_param("code").unwrap();
    db.execute(&aged(58)).await;
    assert_eq!(exchange(&app, &code, &verifier).await.status(), 200, "58 s old");
    let (page, verifier) = start(&mut b, &[]).await;
    let code = page.location_param("code").unwrap();
    db.execute(&aged(61)).await;
    let res = assert_error(exchange(&app, &code, &verifier).await, 400, "invalid_grant").await;
    assert!(res["error_description"].as_str().unwrap().contains("expired"), "{res}");
}

async fn pkce_is_checked(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    // A public client must send a challenge; plain is refused; a method needs a challenge.
    let spa = |extra: &[(&str, &str)]| {
        authorize_path(
            SPA,
            "http://localhost:5173/cb",
            &[&[("scope", "openid")], extra].concat(),
        )
    };
    let page = b.get(&spa(&[])).await;
    assert_eq!(page.location_param("error").as_deref(), Some("invalid_request"));
    let page = b
        .get(&spa(&[
            ("code_challenge", &"a".repeat(43)),
            ("code_challenge_method", "plain"),
        ]))
        .await;
    assert_eq!(page.location_param("error").as_deref(), Some("invalid_request"));
    let page = b.get(&spa(&[("code_challenge", &"a".repeat(43))])).await;
    assert_eq!(
        page.location_param("error").as_deref(),
        Some("invalid_request"),
        "no method means plain"
    );
    let page = b.get(&spa(&[("code_challenge_method", "S256")])).await;
    assert_eq!(page.location_param("error").as_deref(), Some("invalid_request"));

    // A missing or wrong verifier is invalid_grant.
    let (callback, _verifier) = sign_up_through_authorize(&mut b, "pkce@example.com").await;
    let code = callback.location_param("code").unwrap();
    let res = app
        .post_form(
            "/oauth2/token",
            APP,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
            ],
        )
        .await;
    assert_error(res, 400, "invalid_grant").await;
    let (page, _) = start(&mut b, &[]).await;
    let wrong = exchange(&app, &page.location_param("code").unwrap(), &pkce().0).await;
    assert_error(wrong, 400, "invalid_grant").await;

    // A verifier without a challenge is refused too.
    let page = b
        .get(&authorize_path(APP.0, CB, &[("scope", "openid"), ("state", "s")]))
        .await;
    let code = page.location_param("code").expect("consented before: a code");
    assert_error(exchange(&app, &code, &pkce().0).await, 400, "invalid_grant").await;
}

async fn a_bad_client_or_redirect_uri_shows_an_error_page_and_never_redirects(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    for path in [
        authorize_path("nobody", CB, &[("scope", "openid")]),
        authorize_path(APP.0, "http://evil.example/cb", &[("scope", "openid")]),
        authorize_path(APP.0, "http://localhost:3000/callback/extra", &[("scope", "openid")]),
        "/oauth2/authorize?response_type=code&scope=openid".to_string(),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, 400, "{path}");
        assert!(page.location.is_none(), "{path} must not redirect");
        assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(page.body.contains("<h1>"), "a readable page");
    }
    // Once the redirect URI is good, errors go back to the client with state and iss.
    let page = b
        .get(&authorize_path(
            APP.0,
            CB,
            &[("scope", "openid admin"), ("state", "s1")],
        ))
        .await;
    assert!(page.redirects_to(CB));
    assert_eq!(page.location_param("error").as_deref(), Some("invalid_scope"));
    assert_eq!(page.location_param("state").as_deref(), Some("s1"));
    assert_eq!(page.location_param("iss").as_deref(), Some(app.address.as_str()));
    let page = b
        .get(&authorize_path(
            APP.0,
            CB,
            &[("scope", "openid"), ("response_type", "token")],
        ))
        .await;
    assert_eq!(page.status, 400, "a repeated parameter is refused on the page");
}

async fn prompt_none_answers_without_showing_a_page(db: Db) {
    // This test signs one user in several times: a short resend gap.
    let mut settings = test_settings(&db);
    settings.otp.resend_after = std::time::Duration::from_secs(1);
    settings.otp.max_sends = 10;
    let app = spawn_with(settings).await;
    let mut b = Browser::new(&app);
    let (page, _) = start(&mut b, &[("prompt", "none")]).await;
    assert!(page.redirects_to(CB));
    assert_eq!(page.location_param("error").as_deref(), Some("login_required"));
    assert_eq!(page.location_param("state").as_deref(), Some("st-123"));

    // Signed in, but this client was never allowed: consent_required.
    let signed = b.sign_in_with_code("none@example.com").await;
    assert!(signed.redirects_to("/signup"));
    b.get("/signup").await;
    let created = b.post("/signup", &[]).await;
    assert!(created.redirects_to("/account"), "no app waiting: the account page");
    let (page, _) = start(&mut b, &[("prompt", "none")]).await;
    assert_eq!(page.location_param("error").as_deref(), Some("consent_required"));

    // After consent, prompt=none gets a code silently.
    let (page, _) = start(&mut b, &[]).await;
    assert!(page.redirects_to("/consent"));
    b.get("/consent").await;
    assert!(b.consent("allow").await.redirects_to(CB));
    let (page, _) = start(&mut b, &[("prompt", "none")]).await;
    assert!(page.location_param("code").is_some(), "{:?}", page.location);

    // prompt=login and an exceeded max_age send the user to sign in again.
    let (page, _) = start(&mut b, &[("prompt", "login")]).await;
    assert!(page.redirects_to("/login"), "{:?}", page.location);
    let login = b.get("/login").await;
    assert_eq!(login.status, 200, "the sign-in page is shown, not skipped");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (page, _) = start(&mut b, &[("max_age", "0")]).await;
    assert!(page.redirects_to("/login"), "{:?}", page.location);
    let verified = b.sign_in_with_code("none@example.com").await;
    assert!(
        verified.redirects_to(CB),
        "a fresh code finishes the request: {:?}",
        verified.location
    );

    // prompt=consent asks again; denying answers access_denied.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut third = Browser::new(&app);
    let (page, _) = start(&mut third, &[("prompt", "consent")]).await;
    assert!(page.redirects_to("/login"));
    let v = third.sign_in_with_code("none@example.com").await;
    assert!(
        v.redirects_to("/consent"),
        "prompt=consent asks again: {:?}",
        v.location
    );
    third.get("/consent").await;
    let denied = third.consent("deny").await;
    assert_eq!(denied.location_param("error").as_deref(), Some("access_denied"));
}

async fn every_form_needs_the_sessions_csrf_token(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    b.get("/login").await;
    let no_token = b.post_raw("/login", &[("identifier", "csrf@example.com")]).await;
    assert_eq!(no_token.status, 403);
    let wrong = b
        .post_raw("/login", &[("csrf", "x"), ("identifier", "csrf@example.com")])
        .await;
    assert_eq!(wrong.status, 403);
    // Another browser's token is no good here.
    let mut other = Browser::new(&app);
    other.get("/login").await;
    let theirs = other.csrf.clone();
    let crossed = b
        .post_raw("/login", &[("csrf", &theirs), ("identifier", "csrf@example.com")])
        .await;
    assert_eq!(crossed.status, 403);
    let outbox: Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    assert_eq!(outbox.as_array().unwrap().len(), 0, "no code was sent");
    assert_eq!(
        b.post("/login", &[("identifier", "csrf@example.com")]).await.status,
        303
    );
}

async fn sign_in_renews_the_session_id_and_logout_ends_it(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    b.get("/login").await;
    let before = b.cookies.clone();
    assert_eq!(before.len(), 1);
    let signed = b.sign_in_with_code("renew@example.com").await;
    b.get(signed.location.as_deref().unwrap()).await;
    let created = b.post("/signup", &[]).await;
    assert!(created.redirects_to("/account"));
    assert_ne!(b.cookies, before, "a new session id at sign-in");
    let cookie = created.set_cookies.join("\n");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let account = b.get("/account").await;
    assert_eq!(account.status, 200);
    assert!(account.body.contains("renew@example.com"));
    let csp = account.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    // The pre-sign-in id does not lead to the account.
    let mut old = Browser::new(&app);
    old.cookies = before;
    assert!(old.get("/account").await.redirects_to("/login"));

    // RP-initiated logout with a hint for this user ends the session at once and goes back with state.
    let (page, verifier) = start(&mut b, &[]).await;
    b.get(page.location.as_deref().unwrap()).await;
    let allowed = b.consent("allow").await;
    let tokens: Value = exchange(&app, &allowed.location_param("code").unwrap(), &verifier)
        .await
        .json()
        .await
        .unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let mut copy = Browser::new(&app);
    copy.cookies = b.cookies.clone();
    let logout = b
        .get(&format!(
            "/oauth2/logout?{}",
            serde_urlencoded::to_string([
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", "http://localhost:3000/"),
                ("state", "bye")
            ])
            .unwrap()
        ))
        .await;
    assert_eq!(logout.location.as_deref(), Some("http://localhost:3000/?state=bye"));
    assert!(b.get("/account").await.redirects_to("/login"));
    assert!(
        copy.get("/account").await.redirects_to("/login"),
        "a copy of the cookie is dead too: ended on the server"
    );

    // An unregistered post-logout URI is an error page, not a redirect.
    let bad = b
        .get(&format!(
            "/oauth2/logout?{}",
            serde_urlencoded::to_string([
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", "http://evil.example/")
            ])
            .unwrap()
        ))
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.location.is_none());
}

async fn logout_without_a_hint_asks_first(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let v = b.sign_in_with_code("ask@example.com").await;
    b.get(v.location.as_deref().unwrap()).await;
    b.post("/signup", &[]).await;
    let ask = b.get("/oauth2/logout").await;
    assert_eq!(ask.status, 200, "a confirmation page");
    assert_eq!(b.get("/account").await.status, 200, "still signed in");
    let done = b.post("/oauth2/logout", &[("confirm", "yes")]).await;
    assert_eq!(done.status, 200);
    assert!(b.get("/account").await.redirects_to("/login"));
}

async fn magic_links_show_a_button_and_only_the_post_signs_in(db: Db) {
    let app = spawn_app(&db).await;
    // A returning user.
    app.account_for("magic@example.com").await;

    let mut asking = Browser::new(&app);
    asking.get("/login").await;
    asking.post("/login", &[("identifier", "magic@example.com")]).await;
    asking.get("/login/verify").await;
    let outbox: Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    let link = outbox[0]["magic_link"].as_str().unwrap().to_string();
    let path = link.trim_start_matches(&app.address).to_string();

    // A scanner fetching the link (no cookies, twice) burns nothing.
    for _ in 0..2 {
        let scanner = app.get(&path).await;
        assert_eq!(scanner.status(), 200);
        assert!(scanner.text().await.unwrap().contains("Continue"));
    }
    assert_eq!(asking.post("/login/status", &[]).await.body, r#"{"next":null}"#);

    // Opened on another device: that browser is signed in...
    let mut phone = Browser::new(&app);
    phone.get(&path).await;
    let token = link.split("token=").nth(1).unwrap().to_string();
    let used = phone.post("/login/magic", &[("token", &token)]).await;
    assert_eq!(used.status, 303, "{}", used.body);
    assert!(used.redirects_to("/account"), "{:?}", used.location);
    assert_eq!(phone.get("/account").await.status, 200);
    // A link works once.
    let mut late = Browser::new(&app);
    late.get(&path).await;
    assert_eq!(late.post("/login/magic", &[("token", &token)]).await.status, 400);
}

/// The number the code page shows for magic-link number matching.
fn match_number(verify_page: &str) -> String {
    let span = verify_page
        .find("data-match-number")
        .expect("a match number on the code page");
    let at = span + verify_page[span..].find("Enter ").unwrap() + "Enter ".len();
    verify_page[at..at + 2].to_string()
}

/// Asks for a code for `email` in `asking`; returns the link's token and the number that tab shows.
async fn asked_for_a_link(app: &crate::helpers::TestApp, asking: &mut Browser<'_>, email: &str) -> (String, String) {
    asking.get("/login").await;
    asking.post("/login", &[("identifier", email)]).await;
    let page = asking.get("/login/verify").await;
    let outbox: Value = app.get("/dev/outbox?format=json").await.json().await.unwrap();
    let link = outbox[0]["magic_link"].as_str().unwrap().to_string();
    (
        link.split("token=").nth(1).unwrap().to_string(),
        match_number(&page.body),
    )
}

/// Too many wrong codes lock the identifier (SPEC §10), whatever proof
/// comes next: its magic link, opened while the lock holds, signs no one in
/// (a 429 page, the refusal recorded), as the code and the OTP API's magic
/// token do not; once the lock has ended the same link works.
async fn a_magic_link_does_not_sign_in_while_its_identifier_is_locked(db: Db) {
    let mut settings = test_settings(&db);
    settings.abuse.max_failures = 2;
    let app = spawn_with(settings).await;
    app.account_for("locked@example.com").await;
    let mut asking = Browser::new(&app);
    let (token, _) = asked_for_a_link(&app, &mut asking, "locked@example.com").await;
    let code = app.outbox_code().await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        asking.post("/login/verify", &[("code", wrong)]).await;
    }
    let right = asking.post("/login/verify", &[("code", &code)]).await;
    assert!(right.body.contains("Too many wrong codes"), "the identifier is locked");

    let mut phone = Browser::new(&app);
    phone.get(&format!("/login/magic?token={token}")).await;
    let used = phone.post("/login/magic", &[("token", &token)]).await;
    assert_eq!(used.status, 429, "{}", used.body);
    assert!(phone.get("/account").await.redirects_to("/login"));
    let events = app.audit_event_names().await;
    assert!(!events.contains(&"magic_link_used".to_string()), "{events:?}");
    assert!(events.contains(&"code_refused".to_string()), "{events:?}");

    db.execute("UPDATE otp_locks SET locked_until = 1").await;
    phone.get(&format!("/login/magic?token={token}")).await;
    let used = phone.post("/login/magic", &[("token", &token)]).await;
    assert!(used.redirects_to("/account"), "{} {:?}", used.status, used.location);
}

async fn magic_link_opened_elsewhere_does_not_sign_in_the_asking_tab(db: Db) {
    let app = spawn_app(&db).await;
    app.account_for("victim@example.com").await;
    // An attacker types the victim's address and waits.
    let mut attacker = Browser::new(&app);
    let (token, number) = asked_for_a_link(&app, &mut attacker, "victim@example.com").await;
    // The victim clicks "Continue" in the mail, without a number (or a wrong one).
    let wrong = if number == "42" { "43" } else { "42" };
    let mut victim = Browser::new(&app);
    victim.get(&format!("/login/magic?token={token}")).await;
    let used = victim
        .post("/login/magic", &[("token", &token), ("number", wrong)])
        .await;
    assert!(used.redirects_to("/account"), "{:?}", used.location);
    assert_eq!(victim.get("/account").await.status, 200);
    // The attacker's tab is not signed in; it would still need the code from the mail.
    assert_eq!(attacker.post("/login/status", &[]).await.body, r#"{"next":null}"#);
    assert!(attacker.get("/account").await.redirects_to("/login"));
    let events = app.audit_event_names().await;
    assert!(events.contains(&"magic_link_used".to_string()));
}

async fn magic_link_opened_elsewhere_with_the_matching_number_moves_the_asking_tab_on(db: Db) {
    let app = spawn_app(&db).await;
    app.account_for("me@example.com").await;
    let mut laptop = Browser::new(&app);
    let (token, number) = asked_for_a_link(&app, &mut laptop, "me@example.com").await;
    let mut phone = Browser::new(&app);
    phone.get(&format!("/login/magic?token={token}")).await;
    let used = phone
        .post("/login/magic", &[("token", &token), ("number", &number)])
        .await;
    assert!(used.redirects_to("/account"), "{:?}", used.location);
    let status = laptop.post("/login/status", &[]).await;
    let next: Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(next["next"], "/account");
    assert_eq!(laptop.get("/account").await.status, 200);
    // Once only.
    assert_eq!(
        laptop.post("/login/status", &[]).await.body,
        r#"{"next":"/login/continue"}"#
    );
}

async fn magic_link_sent_before_the_address_moved_does_not_sign_in(db: Db) {
    let app = spawn_app(&db).await;
    let user = app.account_for("old@example.com").await;
    // Someone with the old mailbox asks for a link...
    let mut holder = Browser::new(&app);
    let (token, _) = asked_for_a_link(&app, &mut holder, "old@example.com").await;
    // ...the owner moves the account to a new address...
    assert!(app
        .state
        .store
        .set_identifier(&user.id, "email", "new@example.com", "new@example.com")
        .await
        .unwrap());
    // ...and the old link no longer signs in to it.
    let mut other = Browser::new(&app);
    other.get(&format!("/login/magic?token={token}")).await;
    let used = other.post("/login/magic", &[("token", &token)]).await;
    assert_eq!(used.status, 400, "{:?}", used.location);
    assert!(other.get("/account").await.redirects_to("/login"));
}

async fn magic_link_for_a_new_address_opened_elsewhere_does_not_reach_signup(db: Db) {
    let app = spawn_app(&db).await;
    let mut attacker = Browser::new(&app);
    let (token, _) = asked_for_a_link(&app, &mut attacker, "newcomer@example.com").await;
    let mut owner = Browser::new(&app);
    owner.get(&format!("/login/magic?token={token}")).await;
    let used = owner.post("/login/magic", &[("token", &token)]).await;
    assert_eq!(used.status, 200);
    assert_eq!(attacker.post("/login/status", &[]).await.body, r#"{"next":null}"#);
    assert!(attacker.get("/signup").await.redirects_to("/login"));
    // The code from the mail still works where it was asked for.
    let code = app.outbox_code().await;
    let page = attacker.post("/login/verify", &[("code", &code)]).await;
    assert!(page.redirects_to("/signup"), "{:?}", page.location);
}

async fn a_disabled_account_is_signed_out_everywhere(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let v = b.sign_in_with_code("gone@example.com").await;
    b.get(v.location.as_deref().unwrap()).await;
    b.post("/signup", &[]).await;
    assert_eq!(b.get("/account").await.status, 200);
    let user = app.state.store.find_user("gone@example.com").await.unwrap().unwrap();
    app.state
        .store
        .set_user_flag(&user.id, sesame::store::users::UserFlag::Disabled, true)
        .await
        .unwrap();
    assert!(b.get("/account").await.redirects_to("/login"));
}

async fn cookies_are_secure_with_the_host_prefix_on_https(db: Db) {
    let mut settings = test_settings(&db);
    settings.issuer = "https://id.example.com".into();
    crate::helpers::real_delivery(&mut settings);
    let app = spawn_with(settings).await;
    let mut b = Browser::new(&app);
    let page = b.get("/login").await;
    // SPEC §9: on an https issuer every page asks for https only.
    assert_eq!(page.headers["strict-transport-security"], "max-age=31536000");
    let cookie = &page.set_cookies[0];
    assert!(cookie.starts_with("__Host-sesame="), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
}

async fn a_skip_consent_client_never_shows_the_consent_page(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let path = authorize_path(
        "first",
        "http://localhost:4000/cb",
        &[
            ("scope", "openid email"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("prompt", "consent"),
        ],
    );
    assert!(b.get(&path).await.redirects_to("/login"));
    b.sign_in_with_code("first@example.com").await;
    b.get("/signup").await;
    let back = b.post("/signup", &[]).await;
    assert!(back.redirects_to("http://localhost:4000/cb"), "{:?}", back.location);
    let code = back.location_param("code").unwrap();
    // A public client: client_id alone, PKCE instead of a secret.
    let res = app
        .http
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "first"),
            ("code", &code),
            ("redirect_uri", "http://localhost:4000/cb"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    assert!(tokens["refresh_token"].is_null(), "not registered for refresh_token");
    assert!(tokens["id_token"].is_string());
}

async fn sessions_that_never_signed_in_are_purged_and_signed_in_ones_kept(db: Db) {
    let app = spawn_app(&db).await;
    let mut anonymous = Browser::new(&app);
    anonymous.get("/login").await;
    let mut member = Browser::new(&app);
    let v = member.sign_in_with_code("kept@example.com").await;
    member.get(v.location.as_deref().unwrap()).await;
    member.post("/signup", &[]).await;
    let later = sesame::store::now() + sesame::retention::ANONYMOUS_SESSION_IDLE + 1;
    sesame::retention::sweep(&app.state, "test", later)
        .await
        .unwrap()
        .unwrap();
    let stale = anonymous.post("/login", &[("identifier", "x@example.com")]).await;
    assert_eq!(stale.status, 403, "the anonymous session (and its CSRF token) is gone");
    assert_eq!(member.get("/account").await.status, 200, "a signed-in session stays");
}

/// SPEC §9: forms post only to Sesame, and to the app of the pending
/// request (browsers check `form-action` on the redirects after a form too).
async fn pages_limit_where_forms_may_lead(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let csp = |p: &crate::browser::Page| p.headers["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp(&b.get("/login").await).ends_with("form-action 'self'"));
    assert!(b
        .get(&authorize_path(APP.0, CB, &[("scope", "openid")]))
        .await
        .redirects_to("/login"));
    let login = b.get("/login").await;
    assert!(
        csp(&login).ends_with("form-action 'self' http://localhost:3000"),
        "{}",
        csp(&login)
    );
}

/// A consent page answers only the request it showed: after another app's
/// request took the session over, "Allow" from the old page is refused.
async fn consent_answers_only_the_request_it_showed(db: Db) {
    let app = spawn_app(&db).await;
    let mut b = Browser::new(&app);
    let (page, _) = start(&mut b, &[]).await;
    assert!(page.redirects_to("/login"));
    b.sign_in_with_code("ada@example.com").await;
    b.get("/signup").await;
    assert!(b.post("/signup", &[]).await.redirects_to("/consent"));
    b.get("/consent").await;
    let shown_for_app = b.hidden("request");
    // Another app's request (the SPA) takes the session over and shows its consent page.
    let (verifier, challenge) = pkce();
    let _ = verifier;
    let spa = authorize_path(
        SPA,
        "http://localhost:5173/cb",
        &[
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    assert!(b.get(&spa).await.redirects_to("/consent"));
    // "Allow" posted from the first page is refused and sends nobody a code.
    let stale = b
        .post("/consent", &[("decision", "allow"), ("request", &shown_for_app)])
        .await;
    assert_eq!(stale.status, 400);
    assert!(stale.location.is_none());
    // The page that shows the SPA's request answers it.
    b.get("/consent").await;
    let allowed = b.consent("allow").await;
    assert!(
        allowed.redirects_to("http://localhost:5173/cb"),
        "{:?}",
        allowed.location
    );
}

db_test!(
    consent_answers_only_the_request_it_showed,
    pages_limit_where_forms_may_lead,
    sessions_that_never_signed_in_are_purged_and_signed_in_ones_kept,
    a_skip_consent_client_never_shows_the_consent_page,
    new_user_signs_up_consents_and_gets_tokens,
    a_reused_code_is_refused_and_revokes_what_it_issued,
    racing_exchanges_of_one_code_issue_tokens_once,
    codes_are_bound_to_client_redirect_and_expiry,
    pkce_is_checked,
    a_bad_client_or_redirect_uri_shows_an_error_page_and_never_redirects,
    prompt_none_answers_without_showing_a_page,
    every_form_needs_the_sessions_csrf_token,
    sign_in_renews_the_session_id_and_logout_ends_it,
    logout_without_a_hint_asks_first,
    magic_links_show_a_button_and_only_the_post_signs_in,
    magic_link_opened_elsewhere_does_not_sign_in_the_asking_tab,
    magic_link_opened_elsewhere_with_the_matching_number_moves_the_asking_tab_on,
    magic_link_for_a_new_address_opened_elsewhere_does_not_reach_signup,
    magic_link_sent_before_the_address_moved_does_not_sign_in,
    a_magic_link_does_not_sign_in_while_its_identifier_is_locked,
    a_disabled_account_is_signed_out_everywhere,
    cookies_are_secure_with_the_host_prefix_on_https,
);
