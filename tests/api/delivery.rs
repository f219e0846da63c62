//! Providers exercised against local stand-ins that speak their protocol:
//! a webhook receiver, a Twilio-shaped API, and a real SMTP server.

use sesame::config::{EmailProvider, Redacted, SmsProvider};

use crate::db_test;
use crate::helpers::{assert_error, spawn_with, test_settings, Db, Who, APP};
use crate::peers::{Receiver, SmtpServer};

db_test!(
    a_failing_webhook_is_503_and_leaves_no_usable_code,
    a_refusing_smtp_server_is_503,
    a_message_the_smtp_server_rejects_leaves_no_usable_code,
    an_address_with_an_international_domain_goes_out_in_ascii,
    twilio_gets_its_messages_api_call,
    a_provider_that_hangs_is_503_within_the_timeout,
);

async fn a_failing_webhook_is_503_and_leaves_no_usable_code(db: Db) {
    let hook = Receiver::start().await;
    hook.answer_with(500);
    let mut s = test_settings(&db);
    s.sms.provider = SmsProvider::Webhook;
    s.sms.url = Some(hook.url.clone());
    s.otp.resend_after = std::time::Duration::ZERO;
    let app = spawn_with(s).await;
    let who = Who::Phone("+14155550160");
    assert_error(app.getcode(APP, who).await, 503, "delivery_failed").await;
    let code = hook.last().await.json()["code"].as_str().unwrap().to_string();
    assert_error(app.verifycode(APP, who, &code).await, 400, "invalid_code").await;
    let events: Vec<String> = app.audit_event_names().await;
    assert!(events.contains(&"delivery_failed".to_string()));

    // Once the provider recovers, codes work again.
    hook.answer_with(200);
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = hook.last().await.json()["code"].as_str().unwrap().to_string();
    assert_eq!(app.verifycode(APP, who, &code).await.status(), 200);
}

async fn a_refusing_smtp_server_is_503(db: Db) {
    let smtp = SmtpServer::start(true).await;
    let mut s = test_settings(&db);
    s.email.provider = EmailProvider::Smtp;
    s.email.smtp_url = Some(Redacted(smtp.url.clone()));
    let app = spawn_with(s).await;
    assert_error(
        app.getcode(APP, Who::Email("bounce@example.com")).await,
        503,
        "delivery_failed",
    )
    .await;

    // Nothing listening at all: also 503, within the timeout.
    let mut s = test_settings(&db);
    s.email.provider = EmailProvider::Smtp;
    s.email.smtp_url = Some(Redacted("smtp://127.0.0.1:9".into()));
    let app = spawn_with(s).await;
    assert_error(
        app.getcode(APP, Who::Email("nowhere@example.com")).await,
        503,
        "delivery_failed",
    )
    .await;
}

/// SPEC §3: a code whose delivery failed is not left usable, by email as
/// by SMS. The SMTP server takes the message's data, then rejects it (554):
/// getcode is a 503, and the code the message carried is refused.
async fn a_message_the_smtp_server_rejects_leaves_no_usable_code(db: Db) {
    let smtp = SmtpServer::start_rejecting_messages().await;
    let mut s = test_settings(&db);
    s.email.provider = EmailProvider::Smtp;
    s.email.smtp_url = Some(Redacted(smtp.url.clone()));
    let app = spawn_with(s).await;
    let who = Who::Email("rejected@example.com");
    assert_error(app.getcode(APP, who).await, 503, "delivery_failed").await;
    let subject = smtp.last().await.header("subject").unwrap();
    let code: String = subject.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{subject}");
    assert_error(app.verifycode(APP, who, &code).await, 400, "invalid_code").await;
}

/// An address's domain is kept in its Unicode form (`bücher.example`,
/// however it was typed), and goes to the SMTP server in ASCII: the
/// test's server, like many, does not offer SMTPUTF8. A look-alike letter
/// written in punycode (`xn--bm-gpa.com` is `ıbm.com`) is refused as it is
/// written plainly (helper-29).
async fn an_address_with_an_international_domain_goes_out_in_ascii(db: Db) {
    let smtp = SmtpServer::start(false).await;
    let mut s = test_settings(&db);
    s.email.provider = EmailProvider::Smtp;
    s.email.smtp_url = Some(Redacted(smtp.url.clone()));
    let app = spawn_with(s).await;
    for (typed, to) in [
        ("carol@B\u{00DC}CHER.example", "<carol@xn--bcher-kva.example>"),
        ("dave@xn--bcher-kva.example", "<dave@xn--bcher-kva.example>"),
    ] {
        assert_eq!(app.getcode(APP, Who::Email(typed)).await.status(), 200, "{typed}");
        assert_eq!(smtp.last().await.to, vec![to]);
    }
    for spoof in ["z5@xn--bm-gpa.com", "z5@\u{0131}bm.com"] {
        let body = assert_error(app.getcode(APP, Who::Email(spoof)).await, 400, "invalid_request").await;
        assert!(
            body["error_description"].as_str().unwrap().contains("looks like"),
            "{body}"
        );
    }
    // An email webhook gets the ASCII domain too (helper-30).
    let hook = Receiver::start().await;
    let mut s = test_settings(&db);
    s.email.provider = EmailProvider::Webhook;
    s.email.url = Some(hook.url.clone());
    let app = spawn_with(s).await;
    assert_eq!(
        app.getcode(APP, Who::Email("erin@b\u{00FC}cher.example"))
            .await
            .status(),
        200
    );
    assert_eq!(hook.last().await.json()["to"], "erin@xn--bcher-kva.example");
}

async fn twilio_gets_its_messages_api_call(db: Db) {
    let twilio = Receiver::start().await;
    twilio.answer_with(201);
    let mut s = test_settings(&db);
    s.sms.provider = SmsProvider::Twilio;
    s.sms.twilio_base_url = twilio.url.clone();
    s.sms.account_sid = Some("AC0123456789".into());
    s.sms.auth_token = Some(Redacted("twilio-token".into()));
    s.sms.from = Some("+15005550006".into());
    let app = spawn_with(s).await;
    assert_eq!(app.getcode(APP, Who::Phone("+14155550170")).await.status(), 200);
    let call = twilio.last().await;
    assert_eq!(call.path, "/2010-04-01/Accounts/AC0123456789/Messages.json");
    assert_eq!(
        call.header("authorization"),
        Some(crate::helpers::basic("AC0123456789", "twilio-token").as_str())
    );
    let form = call.form();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(get("To"), "+14155550170");
    assert_eq!(get("From"), "+15005550006");
    let body = get("Body");
    let code: String = body.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{body}");
    assert_eq!(
        app.verifycode(APP, Who::Phone("+14155550170"), &code).await.status(),
        200
    );

    // Twilio refusing (e.g. 400 invalid number) is a delivery failure.
    twilio.answer_with(400);
    assert_error(
        app.getcode(APP, Who::Phone("+14155550171")).await,
        503,
        "delivery_failed",
    )
    .await;
}

async fn a_provider_that_hangs_is_503_within_the_timeout(db: Db) {
    let hook = Receiver::start().await;
    hook.delay(std::time::Duration::from_secs(5));
    let mut s = test_settings(&db);
    s.sms.provider = SmsProvider::Webhook;
    s.sms.url = Some(hook.url.clone());
    s.sms.timeout = std::time::Duration::from_millis(500);
    let app = spawn_with(s).await;
    let started = std::time::Instant::now();
    let res = app.getcode(APP, Who::Phone("+14155550172")).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_error(res, 503, "delivery_failed").await;
    let code = hook.last().await.json()["code"].as_str().unwrap().to_string();
    assert_error(
        app.verifycode(APP, Who::Phone("+14155550172"), &code).await,
        400,
        "invalid_code",
    )
    .await;
}
