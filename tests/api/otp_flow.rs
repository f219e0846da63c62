//! The original project's flow end to end: getcode → verifycode → PUT user
//! (nested `account` JSON) → /o/extended_token/, for a phone and an email.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::db_test;
use crate::helpers::{assert_error, jwt_parts, spawn_app, spawn_with, test_settings, Db, Who, APP};
use crate::peers::{Receiver, SmtpServer};

db_test!(
    racing_grants_with_one_secret_identifier_issue_tokens_once,
    phone_sign_up_and_sign_in_over_a_signed_webhook,
    email_sign_up_and_sign_in_over_smtp,
    getcode_answers_the_same_for_known_and_unknown_identifiers,
    verifycode_says_whether_an_account_holds_the_identifier_however_it_is_written,
    a_secret_identifier_sent_before_its_account_exists_is_kept_for_after,
    with_auto_created_accounts_a_secret_identifier_makes_the_account_once,
    the_otp_grant_takes_a_code_directly_and_the_urn_name,
    a_phone_number_alone_never_yields_tokens,
    console_delivery_lists_codes_on_the_dev_outbox,
    codes_have_otp_length_digits_on_every_path,
);

const WEBHOOK_SECRET: &str = "whsec_c2VzYW1lLXRlc3Qtd2ViaG9vay1zZWNyZXQ=";

async fn phone_sign_up_and_sign_in_over_a_signed_webhook(db: Db) {
    let sms = Receiver::start().await;
    let mut settings = test_settings(&db);
    settings.sms.provider = sesame::config::SmsProvider::Webhook;
    settings.sms.url = Some(format!("{}/sms", sms.url));
    settings.sms.secret = Some(sesame::config::Redacted(WEBHOOK_SECRET.into()));
    let app = spawn_with(settings).await;
    let phone = Who::Phone("+1 (415) 555-0123");

    // 1. Request a code.
    let res = app.getcode(APP, phone).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "sent", "channel": "sms", "expires_in": 600, "resend_after": 30})
    );
    let hook = sms.last().await;
    assert_eq!(hook.path, "/sms");
    let msg = hook.json();
    assert_eq!(msg["channel"], "sms");
    assert_eq!(msg["to"], "+14155550123", "delivered to the E.164 form");
    assert_eq!(msg["locale"], "en");
    assert_eq!(msg["magic_link"], Value::Null, "SMS carries the code only");
    let code = msg["code"].as_str().unwrap().to_string();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
    assert!(msg["message"].as_str().unwrap().contains(&code));
    // SPEC §3: the last line is the WebOTP / iOS autofill form, the issuer's host without port.
    let last = msg["message"].as_str().unwrap().lines().last().unwrap().to_string();
    assert_eq!(last, format!("@127.0.0.1 #{code}"));
    // Standard Webhooks signature over "{id}.{timestamp}.{body}".
    let (id, ts) = (
        hook.header("webhook-id").unwrap(),
        hook.header("webhook-timestamp").unwrap(),
    );
    let key = STANDARD.decode(WEBHOOK_SECRET.trim_start_matches("whsec_")).unwrap();
    let expected = sesame::delivery::webhook_signature(&key, id, ts, &hook.body);
    assert_eq!(hook.header("webhook-signature"), Some(expected.as_str()));

    // 2. Verify it (national format this time: the same number).
    let res = app.verifycode(APP, Who::Phone("415-555-0123"), &code).await;
    assert_eq!(res.status(), 200);
    let verified: Value = res.json().await.unwrap();
    assert_eq!(verified["account_exists"], false);
    assert_eq!(verified["expires_in"], 600);
    let secret = verified["secret_identifier"].as_str().unwrap();
    assert!(secret.len() >= 22, "at least 128 bits");

    // 3. Create the account with the original project's JSON.
    let res = app
        .create_user(
            APP,
            &json!({
                "secret_identifier": secret, "auto_username": true, "email": "ada@example.com",
                "first_name": "Ada", "last_name": "Lovelace", "password": "correct horse battery",
                "account": {"phone": "+14155550123", "dob": "1989-12-12", "address": "12 Analytical Way",
                            "zip_code": "500081", "blood_group": "b+"},
                "newsletter": true
            }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["phone_number"], "+14155550123");
    assert_eq!(user["phone_number_verified"], true);
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(
        user["email_verified"], false,
        "only the verified identifier is marked verified"
    );
    assert_eq!(user["first_name"], "Ada");
    assert!(user["username"].as_str().unwrap().starts_with("user_"));
    assert_eq!(
        user["metadata"],
        json!({"newsletter": true, "account": {"dob": "1989-12-12", "address": "12 Analytical Way", "zip_code": "500081", "blood_group": "b+"}})
    );
    assert!(user.get("password").is_none() && !user.to_string().contains("correct horse"));

    // 4. Exchange the identifier for tokens.
    let res = app.otp_token(APP, phone, secret).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["refresh_token"].as_str().is_some());
    assert_eq!(tokens["scope"], "address email offline_access openid phone profile");
    let (_, at) = jwt_parts(tokens["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], user["sub"]);
    assert_eq!(at["client_id"], "app");
    let (h, id) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        h["alg"], "RS256",
        "ID tokens: the client's id_token_signed_response_alg, RS256 by default"
    );
    assert_eq!(
        h["kid"],
        app.state
            .keys
            .ring()
            .current_kid(sesame::config::SigningAlg::RS256)
            .unwrap()
    );
    assert_eq!(id["aud"], "app");
    assert_eq!(id["sub"], user["sub"]);
    assert_eq!(id["amr"], json!(["otp", "sms"]));
    assert_eq!(id["phone_number"], "+14155550123");
    assert_eq!(
        id["address"],
        json!({"formatted": "12 Analytical Way", "postal_code": "500081"})
    );
    assert!(id["auth_time"].as_i64().is_some());

    // userinfo agrees with the ID token.
    let info: Value = app
        .http
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for claim in [
        "sub",
        "phone_number",
        "phone_number_verified",
        "email",
        "given_name",
        "family_name",
        "name",
        "address",
    ] {
        assert_eq!(info[claim], id[claim], "{claim}");
    }
    // No code or token in the audit trail, but the events are there.
    let events: Vec<String> = app.audit_event_names().await;
    for e in ["code_sent", "code_verified", "account_created", "token_issued"] {
        assert!(events.contains(&e.to_string()), "{e} in {events:?}");
    }
}

async fn email_sign_up_and_sign_in_over_smtp(db: Db) {
    let smtp = SmtpServer::start(false).await;
    let mut settings = test_settings(&db);
    settings.email.provider = sesame::config::EmailProvider::Smtp;
    settings.email.smtp_url = Some(sesame::config::Redacted(smtp.url.clone()));
    let app = spawn_with(settings).await;
    let email = Who::Email("Grace.Hopper@Example.COM");

    assert_eq!(app.getcode(APP, email).await.status(), 200);
    let mail = smtp.last().await;
    assert_eq!(
        mail.to,
        vec!["<Grace.Hopper@example.com>"],
        "the local part as given, the domain lower-cased"
    );
    assert!(mail.from.contains("no-reply@example.com"));
    let subject = mail.header("subject").unwrap();
    let code: String = subject.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{subject}");
    let body = mail.decoded();
    assert!(body.contains("multipart/alternative") && body.contains("text/plain") && body.contains("text/html"));
    assert!(body.contains(&code));
    assert!(
        !body.contains("/login/magic"),
        "a code for an app's backend carries no magic link: the link signs in to Sesame's own pages"
    );

    // Lookups ignore case; the account keeps the address as verified (domain lower-cased).
    let secret = app
        .verifycode(APP, Who::Email("Grace.Hopper@EXAMPLE.com"), &code)
        .await
        .json::<Value>()
        .await
        .unwrap()["secret_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .create_user(
            APP,
            &json!({"secret_identifier": secret, "username": "grace", "first_name": "Grace"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["email"], "Grace.Hopper@example.com");
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["username"], "grace");
    let tokens: Value = app.otp_token(APP, email, &secret).await.json().await.unwrap();
    let (_, id) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["otp"]));
    assert_eq!(id["email"], "Grace.Hopper@example.com");
    assert_eq!(id["email_verified"], true);
}

async fn getcode_answers_the_same_for_known_and_unknown_identifiers(db: Db) {
    let mut settings = test_settings(&db);
    settings.otp.resend_after = std::time::Duration::ZERO;
    let app = spawn_with(settings).await;
    app.signed_up(APP, Who::Email("known@example.com")).await;
    let mut answers = Vec::new();
    for who in [Who::Email("KNOWN@example.com"), Who::Email("unknown@example.com")] {
        let res = app.getcode(APP, who).await;
        let status = res.status();
        answers.push((status, res.text().await.unwrap()));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 200);
}

/// `account_exists` (found in the statement that stores the
/// `secret_identifier`): by the phone's E.164 form and the email's key,
/// whatever the format or case the app sends.
async fn verifycode_says_whether_an_account_holds_the_identifier_however_it_is_written(db: Db) {
    let mut settings = test_settings(&db);
    settings.otp.resend_after = std::time::Duration::ZERO;
    let app = spawn_with(settings).await;
    app.signed_up(APP, Who::Email("held@example.com")).await;
    app.signed_up(APP, Who::Phone("+14155550177")).await;
    for (who, exists, what) in [
        (Who::Email("HELD@Example.com"), true, "a held email in other case"),
        (Who::Phone("(415) 555-0177"), true, "a held phone in national format"),
        (Who::Email("free@example.com"), false, "a free email"),
        (Who::Phone("+14155550178"), false, "a free phone"),
    ] {
        assert_eq!(app.getcode(APP, who).await.status(), 200);
        let code = app.outbox_code().await;
        let res = app.verifycode(APP, who, &code).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["account_exists"], exists, "{what}: {body}");
    }
}

/// The original project's order is verify → create → token; an app that
/// asks for tokens first is told to create the account, and its
/// `secret_identifier` is not spent by that: it gets the tokens after.
async fn a_secret_identifier_sent_before_its_account_exists_is_kept_for_after(db: Db) {
    let app = spawn_app(&db).await;
    let who = Who::Phone("+14155550179");
    let secret = app.verified(APP, who).await;
    let body = assert_error(app.otp_token(APP, who, &secret).await, 400, "invalid_grant").await;
    told_to_create_the_account_first(&body);
    let res = app
        .create_user(APP, &json!({"secret_identifier": secret, "auto_username": true}))
        .await;
    assert_eq!(res.status(), 201);
    let res = app.otp_token(APP, Who::Phone("(415) 555-0179"), &secret).await;
    assert_eq!(res.status(), 200, "the same secret, now that the account exists");
    let again = app.otp_token(APP, who, &secret).await;
    assert_error(again, 400, "invalid_grant").await;
}

/// With `otp.auto_create_accounts`, the `secret_identifier` alone makes
/// the account (with its `account_created` event) and its tokens, once;
/// the next sign-in finds that account.
async fn with_auto_created_accounts_a_secret_identifier_makes_the_account_once(db: Db) {
    let mut settings = test_settings(&db);
    settings.otp.auto_create_accounts = true;
    settings.otp.resend_after = std::time::Duration::ZERO;
    let app = spawn_with(settings).await;
    let who = Who::Email("new@example.com");
    let secret = app.verified(APP, who).await;
    let res = app.otp_token(APP, who, &secret).await;
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.unwrap();
    assert_error(app.otp_token(APP, who, &secret).await, 400, "invalid_grant").await;
    let secret = app.verified(APP, Who::Email("NEW@example.com")).await;
    let second: Value = app.otp_token(APP, who, &secret).await.json().await.unwrap();
    let sub = |t: &Value| jwt_parts(t["access_token"].as_str().unwrap()).1["sub"].clone();
    assert_eq!(sub(&first), sub(&second), "the same account, found the second time");
    let created = app
        .audit_event_names()
        .await
        .iter()
        .filter(|e| *e == "account_created")
        .count();
    assert_eq!(created, 1);
}

async fn the_otp_grant_takes_a_code_directly_and_the_urn_name(db: Db) {
    let mut settings = test_settings(&db);
    settings.otp.resend_after = std::time::Duration::ZERO;
    let app = spawn_with(settings).await;
    let who = Who::Email("direct@example.com");
    let secret = app.verified(APP, who).await;
    assert_eq!(
        app.create_user(APP, &json!({"secret_identifier": secret, "auto_username": true}))
            .await
            .status(),
        201
    );

    // Sign in again: exchange a fresh code itself, with the absolute-URI grant name.
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    let form = [
        ("grant_type", "urn:sesame:params:oauth:grant-type:otp"),
        ("email", "direct@example.com"),
        ("code", code.as_str()),
    ];
    let res = app.post_form("/oauth2/token", APP, &form).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(jwt_parts(tokens["id_token"].as_str().unwrap()).1["amr"], json!(["otp"]));
    assert_error(app.post_form("/oauth2/token", APP, &form).await, 400, "invalid_grant").await;

    // A code for an identifier without an account: verified, but no tokens.
    assert_eq!(app.getcode(APP, Who::Email("nobody@example.com")).await.status(), 200);
    let code = app.outbox_code().await;
    let res = app
        .post_form(
            "/oauth2/token",
            APP,
            &[("grant_type", "otp"), ("email", "nobody@example.com"), ("code", &code)],
        )
        .await;
    let body = assert_error(res, 400, "invalid_grant").await;
    told_to_create_the_account_first(&body);
}

async fn a_phone_number_alone_never_yields_tokens(db: Db) {
    let app = spawn_app(&db).await;
    let who = Who::Phone("+14155550177");
    app.signed_up(APP, who).await;
    let res = app
        .post_form("/o/extended_token/", APP, &[("phone", "+14155550177")])
        .await;
    assert_error(res, 400, "invalid_request").await;
    let res = app
        .post_form(
            "/oauth2/token",
            APP,
            &[
                ("grant_type", "otp"),
                ("phone", "+14155550177"),
                ("secret_identifier", "guess"),
            ],
        )
        .await;
    assert_error(res, 400, "invalid_grant").await;
}

async fn console_delivery_lists_codes_on_the_dev_outbox(db: Db) {
    let app = spawn_app(&db).await;
    assert_eq!(app.getcode(APP, Who::Email("outbox@example.com")).await.status(), 200);
    let page = app.get("/dev/outbox").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let code = app.outbox_code().await;
    assert!(html.contains(&code) && html.contains("outbox@example.com"));

    let hook = Receiver::start().await;
    let mut settings = test_settings(&db);
    settings.sms.provider = sesame::config::SmsProvider::Webhook;
    settings.sms.url = Some(hook.url.clone());
    settings.email.provider = sesame::config::EmailProvider::Webhook;
    settings.email.url = Some(hook.url.clone());
    let quiet = spawn_with(settings).await;
    assert_error(quiet.get("/dev/outbox").await, 404, "not_found").await;
}

/// The `otp` grant's answer for an identifier without an account.
fn told_to_create_the_account_first(body: &Value) {
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("create the account first"),
        "{body}"
    );
}

/// Single use under a race: ten `otp` grants with one `secret_identifier`
/// at once get tokens once.
async fn racing_grants_with_one_secret_identifier_issue_tokens_once(db: Db) {
    let app = spawn_app(&db).await;
    let who = Who::Email("racing-secret@example.com");
    app.account_for("racing-secret@example.com").await;
    let secret = app.verified(APP, who).await;
    let grants = (0..10).map(|_| app.otp_token(APP, who, &secret));
    let answers = futures_util::future::join_all(grants).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
}

/// SPEC §3: codes are `otp.length` digits. At 8, the API sends and takes
/// eight digits; six of them are no code (and no try: a wrong-length code
/// is refused before any attempt is counted, so the right one still works);
/// the sign-in page asks for eight and signs in with them.
async fn codes_have_otp_length_digits_on_every_path(db: Db) {
    let mut s = test_settings(&db);
    s.otp.length = 8;
    s.otp.max_attempts = 1;
    s.otp.resend_after = std::time::Duration::ZERO;
    let app = spawn_with(s).await;
    let who = Who::Email("eight@example.com");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = app.outbox_code().await;
    assert!(code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert_error(app.verifycode(APP, who, &code[..6]).await, 400, "invalid_code").await;
    assert_error(app.verifycode(APP, who, &format!("{code}0")).await, 400, "invalid_code").await;
    let res = app.verifycode(APP, who, &code).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let mut b = crate::browser::Browser::new(&app);
    b.get("/login").await;
    assert!(b
        .post("/login", &[("identifier", "page@example.com")])
        .await
        .redirects_to("/login/verify"));
    let page = b.get("/login/verify").await;
    assert!(page.body.contains("8-digit code"), "{}", page.body);
    let code = app.outbox_code().await;
    assert_eq!(code.len(), 8);
    let short = b.post("/login/verify", &[("code", &code[..6])]).await;
    assert_eq!(short.status, 422);
    let signed_in = b.post("/login/verify", &[("code", &code)]).await;
    assert!(
        signed_in.status == 303 && !signed_in.redirects_to("/login"),
        "{:?}",
        signed_in.location
    );
}
