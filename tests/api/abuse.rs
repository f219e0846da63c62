//! SPEC §10, each defence crossed as the attacker of issue 12 would: SMS
//! pumping to premium-rate numbers, lockouts by strangers, one budget for
//! everyone behind a proxy, IPv6 address hopping, bots, lenient phone input.
//! Client addresses are presented through `server.trusted_proxies` and
//! `X-Forwarded-For`, as a reverse proxy in front of Sesame would.

use std::time::Duration;

use serde_json::Value;
use sesame::config::{BotCheckProvider, Settings};
use sesame::store::audit::AuditFilter;

use crate::browser::Browser;
use crate::db_test;
use crate::helpers::{assert_error, basic, spawn_with, test_settings, Db, TestApp, Who, APP, APP2, MINE};
use crate::peers::{Receiver, SiteVerify, Verdict};

db_test!(
    premium_rate_numbers_get_no_sms,
    numbers_of_a_country_not_allowed_get_no_sms,
    the_per_country_and_global_sms_caps_hold,
    a_strangers_sends_and_wrong_codes_leave_the_victims_code_usable,
    the_identifier_locks_only_past_max_failures_from_every_source,
    wrong_codes_older_than_the_failure_window_do_not_count,
    many_new_sources_cannot_bomb_one_number_and_the_users_own_is_not_held_back,
    forwarded_addresses_are_believed_from_trusted_proxies_only,
    sends_refused_for_their_address_cost_their_client_nothing,
    two_addresses_in_one_ipv6_64_share_a_budget,
    test_numbers_have_a_fixed_code_and_send_nothing,
    a_test_numbers_account_gets_no_security_notice_texts,
    phone_input_is_digits_and_the_usual_punctuation,
    the_bot_check_passes_fails_and_fails_closed,
    the_sign_in_page_carries_the_bot_check_widget_and_needs_its_token,
    the_account_pages_code_sends_need_the_bot_check_too,
    on_the_pages_a_code_belongs_to_the_browser_that_asked_wherever_it_moves,
    hcaptcha_and_recaptcha_widgets_fill_in_their_own_fields,
);

/// Settings with SMS to a webhook receiver, and 127.0.0.1 a trusted proxy.
async fn app_with(db: &Db, tweak: impl FnOnce(&mut Settings)) -> (TestApp, Receiver) {
    let sms = Receiver::start().await;
    let mut s = test_settings(db);
    s.sms.provider = sesame::config::SmsProvider::Webhook;
    s.sms.url = Some(format!("{}/sms", sms.url));
    s.otp.resend_after = Duration::ZERO;
    s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    tweak(&mut s);
    (spawn_with(s).await, sms)
}

impl TestApp {
    /// getcode as if from `from`, forwarded by the trusted proxy (127.0.0.1).
    async fn getcode_from(&self, from: &str, client: (&str, &str), who: Who<'_>) -> reqwest::Response {
        self.post_from(from, "/otp/getcode/", client, &[who.field()]).await
    }

    async fn verifycode_from(&self, from: &str, client: (&str, &str), who: Who<'_>, code: &str) -> reqwest::Response {
        self.post_from(from, "/otp/verifycode/", client, &[who.field(), ("code", code)])
            .await
    }

    async fn post_from(
        &self,
        from: &str,
        path: &str,
        client: (&str, &str),
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("Authorization", basic(client.0, client.1))
            .header("X-Forwarded-For", from)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// The audit trail's `(detail, ip)` of one event, newest first.
    async fn audited(&self, event: &str) -> Vec<(String, String)> {
        self.state.audit.flush().await;
        let filter = AuditFilter {
            event: Some(event.into()),
            limit: 200,
            ..Default::default()
        };
        let rows = self.state.store.audit_search(&filter).await.unwrap();
        rows.into_iter()
            .map(|r| (r.detail.unwrap_or_default(), r.ip.unwrap_or_default()))
            .collect()
    }

    pub(crate) async fn refusals(&self, reason: &str) -> u64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        let line = format!("sesame_code_refusals_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in /metrics"))
            .parse()
            .unwrap()
    }
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

/// A code from the newest SMS the receiver got.
async fn sms_code(sms: &Receiver) -> String {
    sms.last().await.json()["code"].as_str().unwrap().to_string()
}

/// verifycode with `code`, then the account for the proven identifier.
async fn sign_up_with(app: &TestApp, who: Who<'_>, code: &str) {
    let res = app.verifycode(APP, who, code).await;
    assert_eq!(res.status(), 200);
    let secret = res.json::<Value>().await.unwrap()["secret_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .create_user(
            APP,
            &serde_json::json!({"secret_identifier": secret, "auto_username": true}),
        )
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

async fn premium_rate_numbers_get_no_sms(db: Db) {
    let (app, sms) = app_with(&db, |_| {}).await;
    // Issue 12, problem 1: twenty numbers in the UK premium-rate range.
    for i in 0..20 {
        let number = format!("+44 909 876 54{i:02}");
        let res = app.getcode(APP, Who::Phone(&number)).await;
        let body = assert_error(res, 400, "invalid_request").await;
        assert!(
            body["error_description"].as_str().unwrap().contains("premium-rate"),
            "{body}"
        );
    }
    // Shared-cost and UAN (company) numbers too.
    for number in ["+44 845 464 0000", "+44 55 1234 5678"] {
        assert_error(app.getcode(APP, Who::Phone(number)).await, 400, "invalid_request").await;
    }
    assert_eq!(sms.count(), 0, "nothing was sent");
    assert_eq!(app.refusals("number_type").await, 22);
    let audited = app.audited("code_refused").await;
    assert_eq!(audited.iter().filter(|(d, _)| d == "number_type").count(), 22);
    // A mobile number in the same country gets its code.
    assert_eq!(app.getcode(APP, Who::Phone("+44 7400 123456")).await.status(), 200);
    assert_eq!(sms.count(), 1);

    // With the block off, the operator has chosen to pay for them.
    let (open, sms) = app_with(&db, |s| s.abuse.block_premium_numbers = false).await;
    assert_eq!(open.getcode(APP, Who::Phone("+44 909 876 5432")).await.status(), 200);
    assert_eq!(sms.count(), 1);
}

async fn numbers_of_a_country_not_allowed_get_no_sms(db: Db) {
    let (app, sms) = app_with(&db, |s| s.abuse.allowed_countries = vec!["US".into(), "ca".into()]).await;
    let body = assert_error(
        app.getcode(APP, Who::Phone("+44 7400 123456")).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(body["error_description"].as_str().unwrap().contains("(GB)"), "{body}");
    assert_eq!(sms.count(), 0);
    assert_eq!(app.refusals("country_not_allowed").await, 1);
    assert_eq!(app.getcode(APP, Who::Phone("+1 201 555 0123")).await.status(), 200);
    assert_eq!(app.getcode(APP, Who::Phone("+1 604 555 0199")).await.status(), 200);
    assert_eq!(sms.count(), 2);
    // Email is not a phone: no country rule.
    assert_eq!(app.getcode(APP, Who::Email("anywhere@example.com")).await.status(), 200);
    // The sign-in page goes through the same send: refused there too.
    let mut browser = Browser::new(&app);
    browser.get("/login").await;
    let page = browser.post("/login", &[("identifier", "+44 7400 123457")]).await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("send codes to that number"), "{}", page.body);
    assert_eq!(sms.count(), 2, "nothing sent from the page either");
    assert_eq!(app.refusals("country_not_allowed").await, 2);
}

async fn the_per_country_and_global_sms_caps_hold(db: Db) {
    let (app, sms) = app_with(&db, |s| {
        s.abuse.country_max_sends = 2;
        s.abuse.global_max_sms = 3;
    })
    .await;
    // A user signs up with a British number …
    let member = Who::Phone("+44 7400 100001");
    assert_eq!(app.getcode(APP, member).await.status(), 200);
    let code = sms_code(&sms).await;
    sign_up_with(&app, member, &code).await;
    // … then British numbers nobody signed up with fill the country's cap.
    assert_eq!(app.getcode(APP, Who::Phone("+44 7400 100002")).await.status(), 200);
    let res = app.getcode(APP, Who::Phone("+44 7400 100003")).await;
    let secs = retry_after(&res);
    assert!((3500..=3600).contains(&secs), "the window's end: {secs}");
    let body = assert_error(res, 429, "too_many_requests").await;
    assert!(body["error_description"].as_str().unwrap().contains("country"));
    // The member, from where they signed in, still gets codes: the caps
    // do not count a number's texts from a source that proved it before.
    assert_eq!(app.getcode(APP, member).await.status(), 200);
    // From anywhere else the member's number is refused like any other
    // (helper-28: refusing only numbers without an account told a stranger
    // who had filled the cap which numbers have one).
    let res = app.getcode_from("203.0.113.77", APP, member).await;
    let body = assert_error(res, 429, "too_many_requests").await;
    assert!(body["error_description"].as_str().unwrap().contains("country"));
    let res = app
        .getcode_from("203.0.113.77", APP, Who::Phone("+44 7400 100004"))
        .await;
    assert_eq!(
        assert_error(res, 429, "too_many_requests").await,
        body,
        "the same answer"
    );
    // Another country has its own cap, up to the global one.
    assert_eq!(app.getcode(APP, Who::Phone("+1 201 555 0123")).await.status(), 200);
    let res = app.getcode(APP2, Who::Phone("+1 201 555 0124")).await;
    assert!(retry_after(&res) > 0);
    assert_error(res, 429, "too_many_requests").await;
    assert_eq!(sms.count(), 4, "the caps hold before anything is sent");
    // Email is not SMS.
    assert_eq!(app.getcode(APP, Who::Email("still@example.com")).await.status(), 200);
    assert_eq!(app.refusals("country_limit").await, 3);
    assert_eq!(app.refusals("global_sms_limit").await, 1);
}

async fn a_strangers_sends_and_wrong_codes_leave_the_victims_code_usable(db: Db) {
    let (app, sms) = app_with(&db, |_| {}).await;
    let victim = Who::Phone("+1 201 555 0142");
    let (home, stranger) = ("198.51.100.20", "203.0.113.66");
    assert_eq!(app.getcode_from(home, APP, victim).await.status(), 200);
    let held = sms_code(&sms).await;

    // Issue 12, problem 2: one stranger sends until refused …
    for _ in 0..3 {
        assert_eq!(app.getcode_from(stranger, APP, victim).await.status(), 200);
    }
    let res = app.getcode_from(stranger, APP, victim).await;
    assert_eq!(res.status(), 429, "the stranger is refused");
    assert!(retry_after(&res) > 3500);
    assert_eq!(app.verifycode_from(stranger, APP, victim, &held).await.status(), 429);
    // … another asks for a code and types wrong ones until it dies.
    let guesser = "203.0.113.67";
    assert_eq!(app.getcode_from(guesser, APP, victim).await.status(), 200);
    let theirs = sms_code(&sms).await;
    for _ in 0..5 {
        let res = app.verifycode_from(guesser, APP, victim, wrong(&theirs)).await;
        assert_error(res, 400, "invalid_code").await;
    }
    assert_eq!(app.verifycode_from(guesser, APP, victim, &theirs).await.status(), 429);
    assert_eq!(app.getcode_from(guesser, APP, victim).await.status(), 429);

    // Many more addresses send their share (a /48 holds 65,536 /64s); the
    // victim, on a phone at a new address, still gets a code of its own.
    for i in 1..=4 {
        let from = format!("2001:db8:bad:{i}::1");
        for _ in 0..3 {
            assert_eq!(app.getcode_from(&from, APP, victim).await.status(), 200);
        }
    }
    assert_eq!(app.getcode_from("192.0.2.150", APP, victim).await.status(), 200);
    let on_phone = sms_code(&sms).await;
    assert_eq!(
        app.verifycode_from("192.0.2.150", APP, victim, &on_phone)
            .await
            .status(),
        200
    );

    // The victim, from home, still uses the code they hold …
    let res = app.verifycode_from(home, APP, victim, &held).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // … and gets a new one, which works too.
    assert_eq!(app.getcode_from(home, APP, victim).await.status(), 200);
    let fresh = sms_code(&sms).await;
    assert_eq!(app.verifycode_from(home, APP, victim, &fresh).await.status(), 200);

    // The locks fell on the strangers' sources alone.
    let locks = app.audited("locked_out").await;
    assert_eq!(locks.len(), 2, "{locks:?}");
    assert!(locks.iter().all(|(_, ip)| ip == stranger || ip == guesser), "{locks:?}");
    assert!(locks.iter().all(|(d, _)| d.contains("one source")), "{locks:?}");
}

async fn the_identifier_locks_only_past_max_failures_from_every_source(db: Db) {
    let (app, sms) = app_with(&db, |s| s.abuse.max_failures = 6).await;
    let victim = Who::Phone("+1 201 555 0143");
    let home = "198.51.100.21";
    assert_eq!(app.getcode_from(home, APP, victim).await.status(), 200);
    let held = sms_code(&sms).await;
    // Three strangers, two wrong codes each: six failures, the limit.
    for i in 1..=3 {
        let from = format!("203.0.113.{i}");
        assert_eq!(app.getcode_from(&from, APP, victim).await.status(), 200);
        let theirs = sms_code(&sms).await;
        for _ in 0..2 {
            let res = app.verifycode_from(&from, APP, victim, wrong(&theirs)).await;
            assert_error(res, 400, "invalid_code").await;
        }
    }
    // The seventh try, from anywhere, finds the identifier locked until the window ends.
    assert_eq!(app.getcode_from("203.0.113.9", APP, victim).await.status(), 200);
    let theirs = sms_code(&sms).await;
    let res = app.verifycode_from("203.0.113.9", APP, victim, &theirs).await;
    assert_eq!(res.status(), 429, "past abuse.max_failures even a right code waits");
    let secs = retry_after(&res);
    assert!(secs > 86_000 && secs <= 86_400, "abuse.failure_window: {secs}");
    assert_eq!(app.verifycode_from(home, APP, victim, &held).await.status(), 429);
    assert_eq!(app.getcode_from(home, APP, victim).await.status(), 429);
    let locks = app.audited("locked_out").await;
    assert!(locks.iter().any(|(d, _)| d.contains("every source")), "{locks:?}");
    // Others are not affected.
    assert_eq!(
        app.getcode_from(home, APP, Who::Phone("+1 201 555 0144"))
            .await
            .status(),
        200
    );
}

/// `abuse.failure_window` as set (2 s here, `max_failures` 2; every try
/// counts, the right one too): two wrong codes, then the window passes,
/// then one more and the right code, which works. Counted over any longer
/// time, the third try would find the identifier locked.
async fn wrong_codes_older_than_the_failure_window_do_not_count(db: Db) {
    let (app, sms) = app_with(&db, |s| {
        s.abuse.max_failures = 2;
        s.abuse.failure_window = Duration::from_secs(2);
        s.otp.max_attempts = 10;
    })
    .await;
    let who = Who::Phone("+1 201 555 0145");
    assert_eq!(app.getcode(APP, who).await.status(), 200);
    let code = sms_code(&sms).await;
    for _ in 0..2 {
        assert_error(app.verifycode(APP, who, wrong(&code)).await, 400, "invalid_code").await;
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_error(app.verifycode(APP, who, wrong(&code)).await, 400, "invalid_code").await;
    assert_eq!(app.verifycode(APP, who, &code).await.status(), 200);
}

/// One address past its budget, hammering: its refused sends do not eat
/// the client's budget, which every user of the app shares.
async fn sends_refused_for_their_address_cost_their_client_nothing(db: Db) {
    let (app, _sms) = app_with(&db, |s| {
        s.otp.ip_max_sends = 1;
        s.otp.client_max_sends = 3;
    })
    .await;
    let hammer = "203.0.113.9";
    assert_eq!(
        app.getcode_from(hammer, APP, Who::Email("h0@example.com"))
            .await
            .status(),
        200
    );
    for i in 1..=5 {
        let res = app
            .getcode_from(hammer, APP, Who::Email(&format!("h{i}@example.com")))
            .await;
        assert_error(res, 429, "too_many_requests").await;
    }
    for (i, from) in ["198.51.100.21", "198.51.100.22"].iter().enumerate() {
        let res = app
            .getcode_from(from, APP, Who::Email(&format!("u{i}@example.com")))
            .await;
        assert_eq!(res.status(), 200, "the client's budget is still there for user {i}");
    }
    let res = app
        .getcode_from("198.51.100.23", APP, Who::Email("u3@example.com"))
        .await;
    assert_error(res, 429, "too_many_requests").await;
}

async fn forwarded_addresses_are_believed_from_trusted_proxies_only(db: Db) {
    // Issue 12, problem 3. No trusted proxies: the header is ignored, and every
    // request counts against the peer.
    let (app, _sms) = app_with(&db, |s| {
        s.server.trusted_proxies.clear();
        s.otp.ip_max_sends = 2;
    })
    .await;
    for (i, from) in ["198.51.100.1", "198.51.100.2"].iter().enumerate() {
        let who = format!("fwd{i}@example.com");
        assert_eq!(app.getcode_from(from, APP, Who::Email(&who)).await.status(), 200);
    }
    let res = app
        .getcode_from("198.51.100.3", APP, Who::Email("fwd3@example.com"))
        .await;
    assert_error(res, 429, "too_many_requests").await;
    let sent = app.audited("code_sent").await;
    assert!(sent.iter().all(|(_, ip)| ip == "127.0.0.1"), "{sent:?}");
    drop(app);

    // Behind a trusted proxy each client has its own budget, read right to left.
    let (app, _sms) = app_with(&db, |s| s.otp.ip_max_sends = 2).await;
    for i in 0..2 {
        let who = format!("a{i}@example.com");
        let res = app.getcode_from("1.2.3.4, 198.51.100.7", APP, Who::Email(&who)).await;
        assert_eq!(res.status(), 200);
    }
    let res = app
        .getcode_from("9.9.9.9, 198.51.100.7", APP, Who::Email("a2@example.com"))
        .await;
    assert_error(res, 429, "too_many_requests").await;
    assert_eq!(
        app.getcode_from("198.51.100.8", APP, Who::Email("b0@example.com"))
            .await
            .status(),
        200,
        "another client behind the proxy is not affected"
    );
    // The audit trail names the client, not the proxy nor what the client wrote (newest first).
    let sent = app.audited("code_sent").await;
    let ips: Vec<&str> = sent[..3].iter().map(|(_, ip)| ip.as_str()).collect();
    assert_eq!(ips, ["198.51.100.8", "198.51.100.7", "198.51.100.7"]);
    // RFC 7239 `Forwarded` is read when there is no X-Forwarded-For.
    let forwarded = |xff: Option<&'static [u8]>, email: &'static str| {
        let mut req = app
            .http
            .post(app.url("/otp/getcode/"))
            .header("Authorization", basic(APP.0, APP.1))
            .header("Forwarded", "for=\"[2001:db8:77::1]:4711\";proto=https")
            .form(&[("email", email)]);
        if let Some(bytes) = xff {
            req = req.header(
                "X-Forwarded-For",
                reqwest::header::HeaderValue::from_bytes(bytes).unwrap(),
            );
        }
        req.send()
    };
    assert_eq!(forwarded(None, "rfc7239@example.com").await.unwrap().status(), 200);
    let sent = app.audited("code_sent").await;
    assert_eq!(sent[0].1, "2001:db8:77::1");
    // A line that is not text, as nginx would pass it with its hop appended,
    // does not let the client's own `Forwarded` speak instead.
    let res = forwarded(Some(b"\xff\xfe, 198.51.100.99"), "spoof@example.com")
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let sent = app.audited("code_sent").await;
    assert_eq!(sent[0].1, "198.51.100.99");
}

async fn two_addresses_in_one_ipv6_64_share_a_budget(db: Db) {
    let (app, _sms) = app_with(&db, |s| s.otp.ip_max_sends = 2).await;
    for (i, from) in ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"]
        .iter()
        .enumerate()
    {
        let who = format!("v6-{i}@example.com");
        assert_eq!(app.getcode_from(from, APP, Who::Email(&who)).await.status(), 200);
    }
    let res = app
        .getcode_from("2001:db8:1:2:abcd::5", APP, Who::Email("v6-2@example.com"))
        .await;
    assert_error(res, 429, "too_many_requests").await;
    assert_eq!(
        app.getcode_from("2001:db8:1:3::1", APP, Who::Email("v6-3@example.com"))
            .await
            .status(),
        200,
        "the next /64 is another subscriber"
    );
    assert_eq!(app.refusals("ip_limit").await, 1);
}

/// SPEC §10: test numbers skip delivery, the security notices of §9
/// included (helper-30: a password set on a test number's account texted
/// it).
async fn a_test_numbers_account_gets_no_security_notice_texts(db: Db) {
    let (app, sms) = app_with(&db, |s| {
        s.abuse.test_numbers.insert("+15555550100".into(), "123456".into());
    })
    .await;
    let who = Who::Phone("+15555550100");
    assert_eq!(app.getcode(MINE, who).await.status(), 200);
    let res = app.verifycode(MINE, who, "123456").await;
    let secret: Value = res.json().await.unwrap();
    let res = app
        .create_user(
            MINE,
            &serde_json::json!({"secret_identifier": secret["secret_identifier"], "auto_username": true}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(app.getcode(MINE, who).await.status(), 200);
    let res = app
        .post_form(
            "/oauth2/token",
            MINE,
            &[
                ("grant_type", "otp"),
                who.field(),
                ("code", "123456"),
                ("scope", "openid sesame:account"),
            ],
        )
        .await;
    let tokens: Value = res.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let res = app
        .patch_user(access, &serde_json::json!({"password": "correct horse battery"}))
        .await;
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sms.count(), 0, "nothing texted to a test number");
}

async fn test_numbers_have_a_fixed_code_and_send_nothing(db: Db) {
    let (app, sms) = app_with(&db, |s| {
        s.abuse.test_numbers.insert("+15555550100".into(), "123456".into());
        s.abuse.allowed_countries = vec!["GB".into()];
    })
    .await;
    let reviewer = Who::Phone("+1 555 555 0100");
    let res = app.getcode(APP, reviewer).await;
    assert_eq!(res.status(), 200, "listed: no number-type or country rule applies");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["channel"], "sms");
    assert_eq!(sms.count(), 0, "nothing is sent");
    sign_up_with(&app, reviewer, "123456").await;
    let sent = app.audited("code_sent").await;
    assert!(sent.iter().any(|(d, _)| d.contains("test number")), "{sent:?}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("sesame_test_codes_total 1"), "{metrics}");
    // Still counted: the limits apply to test numbers too.
    for _ in 0..2 {
        assert_eq!(app.getcode(APP, reviewer).await.status(), 200);
    }
    assert_eq!(app.getcode(APP, reviewer).await.status(), 429);
    // The fixed code is no use for a number that is not listed.
    assert_error(
        app.getcode(APP, Who::Phone("+1 555 555 0101")).await,
        400,
        "invalid_request",
    )
    .await;
    let real = Who::Phone("+44 7400 123456");
    assert_eq!(app.getcode(APP, real).await.status(), 200);
    assert_eq!(sms.count(), 1);
    let code = sms_code(&sms).await;
    if code != "123456" {
        assert_error(app.verifycode(APP, real, "123456").await, 400, "invalid_code").await;
    }
}

async fn phone_input_is_digits_and_the_usual_punctuation(db: Db) {
    let (app, sms) = app_with(&db, |_| {}).await;
    // Issue 12, problem 7.
    for junk in [
        "\u{1F4DE}+1 201 555 0100 \u{1F600}",
        "tel:+12015550100",
        "+1 201 555 0100 ext. 7",
        "+1 201 555 0100; DROP TABLE",
    ] {
        let body = assert_error(app.getcode(APP, Who::Phone(junk)).await, 400, "invalid_request").await;
        assert!(body["error_description"].as_str().unwrap().contains("digits"), "{body}");
    }
    assert_eq!(sms.count(), 0);
    for fine in [
        "+1 (201) 555-0101",
        "001 201 555 0102",
        "201.555.0103",
        "+1/201/555/0104",
        "\u{FF0B}\u{FF11} \u{FF12}\u{FF10}\u{FF11} 555 0105",
    ] {
        assert_eq!(app.getcode(APP, Who::Phone(fine)).await.status(), 200, "{fine}");
    }
    let to: Vec<String> = sms
        .all()
        .iter()
        .map(|r| r.json()["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        to,
        [
            "+12015550101",
            "+12015550102",
            "+12015550103",
            "+12015550104",
            "+12015550105"
        ]
    );
}

const BOT_SECRET_ENV: &str = "BOT_CHECK_TEST_SECRET";

async fn bot_app(db: &Db, siteverify: &SiteVerify) -> (TestApp, Receiver) {
    bot_app_of(db, siteverify, BotCheckProvider::Turnstile).await
}

async fn bot_app_of(db: &Db, siteverify: &SiteVerify, provider: BotCheckProvider) -> (TestApp, Receiver) {
    std::env::set_var(BOT_SECRET_ENV, "0x-siteverify-secret");
    let url = siteverify.url.clone();
    app_with(db, move |s| {
        s.abuse.bot_check = provider;
        s.abuse.bot_check_url = url;
        s.abuse.bot_check_site_key = "0x-site-key".into();
        s.abuse.bot_check_secret_env = BOT_SECRET_ENV.into();
        s.abuse.bot_check_timeout = Duration::from_secs(1);
    })
    .await
}

async fn the_bot_check_passes_fails_and_fails_closed(db: Db) {
    let siteverify = SiteVerify::start().await;
    let (app, sms) = bot_app(&db, &siteverify).await;
    let who = Who::Phone("+1 201 555 0150");
    let getcode = |token: Option<&'static str>| {
        let mut form = vec![who.field()];
        if let Some(t) = token {
            form.push(("bot_token", t));
        }
        let app = &app;
        async move { app.post_from("198.51.100.50", "/otp/getcode/", APP, &form).await }
    };
    // Issue 12, problem 4: no token, no code (and no call to the provider).
    let body = assert_error(getcode(None).await, 400, "invalid_request").await;
    assert!(body["error_description"].as_str().unwrap().contains("bot"), "{body}");
    assert!(siteverify.calls().is_empty());
    // The provider says no.
    siteverify.answer(Verdict::Failure);
    assert_error(getcode(Some("forged")).await, 400, "invalid_request").await;
    // The provider does not answer in time: refused (fail closed).
    siteverify.answer(Verdict::Hang);
    let res = getcode(Some("solved-token")).await;
    assert_error(res, 503, "temporarily_unavailable").await;
    assert_eq!(sms.count(), 0, "nothing sent without a passed check");
    // The provider says yes.
    siteverify.answer(Verdict::Success);
    assert_eq!(getcode(Some("solved-token")).await.status(), 200);
    assert_eq!(sms.count(), 1);
    // What siteverify got: the secret, the token and the client's address.
    let call = siteverify.calls().last().unwrap().clone();
    let get = |k: &str| call.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("secret").as_deref(), Some("0x-siteverify-secret"));
    assert_eq!(get("response").as_deref(), Some("solved-token"));
    assert_eq!(get("remoteip").as_deref(), Some("198.51.100.50"));
    assert_eq!(app.refusals("bot_check_failed").await, 2);
    assert_eq!(app.refusals("bot_check_unavailable").await, 1);
    // Verifying a code needs no bot check.
    let code = sms_code(&sms).await;
    assert_eq!(
        app.verifycode_from("198.51.100.50", APP, who, &code).await.status(),
        200
    );
}

async fn the_sign_in_page_carries_the_bot_check_widget_and_needs_its_token(db: Db) {
    let siteverify = SiteVerify::start().await;
    let (app, sms) = bot_app(&db, &siteverify).await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/login").await;
    let csp = page.headers["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("script-src 'self' https://challenges.cloudflare.com"),
        "{csp}"
    );
    assert!(csp.contains("frame-src https://challenges.cloudflare.com"), "{csp}");
    // Pages without such a form keep the strict policy.
    let other = browser.get("/oauth2/logout").await;
    assert_eq!(other.status, 200);
    let strict = other.headers["content-security-policy"].to_str().unwrap().to_string();
    assert!(!strict.contains("cloudflare"), "{strict}");
    assert!(
        page.body
            .contains(r#"class="bot-check cf-turnstile" data-sitekey="0x-site-key""#),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains(r#"src="https://challenges.cloudflare.com/turnstile/v0/api.js""#));
    // Without the widget's token: the page says so, nothing is sent.
    let page = browser.post("/login", &[("identifier", "+1 201 555 0160")]).await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("robot"), "{}", page.body);
    assert_eq!(sms.count(), 0);
    // With it (the field the Turnstile widget fills in): sent.
    let page = browser
        .post(
            "/login",
            &[
                ("identifier", "+1 201 555 0160"),
                ("cf-turnstile-response", "solved-by-a-person"),
            ],
        )
        .await;
    assert!(page.redirects_to("/login/verify"), "{}", page.status);
    assert_eq!(sms.count(), 1);
    // The code page's "send again" carries the widget too, and needs its
    // token as /login does (the check is in the send, whatever page asks).
    let page = browser.get("/login/verify").await;
    assert!(page.body.contains("cf-turnstile"));
    let resent = browser.post("/login/resend", &[]).await;
    assert!(resent.redirects_to("/login/verify"), "{}", resent.status);
    let page = browser.get("/login/verify").await;
    assert!(page.body.contains("robot"), "{}", page.body);
    assert_eq!(sms.count(), 1, "not sent again without the token");
    assert_eq!(
        siteverify
            .calls()
            .last()
            .unwrap()
            .iter()
            .find(|(k, _)| k == "response")
            .unwrap()
            .1,
        "solved-by-a-person"
    );
}

/// SPEC §10: every code send needs the bot check's token, the account
/// pages' too (a new phone, a fresh sign-in): they carry the widget, send
/// nothing without its token, and send with it.
async fn the_account_pages_code_sends_need_the_bot_check_too(db: Db) {
    let siteverify = SiteVerify::start().await;
    let (app, sms) = bot_app(&db, &siteverify).await;
    let solved = ("cf-turnstile-response", "solved-by-a-person");
    let mut b = Browser::new(&app);
    b.sign_up_by_sms("+1 201 555 0190", &sms, &[solved]).await;
    assert_eq!(sms.count(), 1);

    let page = b.get("/account").await;
    assert!(page.body.contains("cf-turnstile"), "{}", page.body);
    let refused = b
        .post("/account/identifier", &[("identifier", "+1 201 555 0191")])
        .await;
    assert_eq!(refused.location.as_deref(), Some("/account"), "{}", refused.status);
    let page = b.get("/account").await;
    assert!(page.body.contains("robot"), "{}", page.body);
    assert_eq!(sms.count(), 1, "no code to the new number without the token");
    let asked = b
        .post("/account/identifier", &[("identifier", "+1 201 555 0191"), solved])
        .await;
    assert!(
        asked.redirects_to("/account/identifier"),
        "{} {}",
        asked.status,
        asked.body
    );
    assert_eq!(sms.count(), 2);
    assert_eq!(sms.last().await.json()["to"], "+12015550191");

    let page = b.get("/account/reauth").await;
    assert!(page.body.contains("cf-turnstile"), "{}", page.body);
    assert!(b.post("/account/reauth", &[]).await.redirects_to("/account/reauth"));
    assert!(b.get("/account/reauth").await.body.contains("robot"));
    assert_eq!(sms.count(), 2, "no fresh sign-in code without the token");
    assert!(b
        .post("/account/reauth", &[solved])
        .await
        .redirects_to("/account/reauth"));
    assert_eq!(sms.count(), 3);
    assert_eq!(sms.last().await.json()["to"], "+12015550190");
}

async fn on_the_pages_a_code_belongs_to_the_browser_that_asked_wherever_it_moves(db: Db) {
    let (app, sms) = app_with(&db, |_| {}).await;
    let phone = "+1 201 555 0170";
    let mut mine = Browser::new(&app);
    mine.forwarded_for = Some("198.51.100.30".into());
    mine.get("/login").await;
    assert!(mine
        .post("/login", &[("identifier", phone)])
        .await
        .redirects_to("/login/verify"));
    let code = sms_code(&sms).await;
    // A stranger's browser asks for a code for the same number and types mine.
    let mut theirs = Browser::new(&app);
    theirs.forwarded_for = Some("203.0.113.30".into());
    theirs.get("/login").await;
    assert!(theirs
        .post("/login", &[("identifier", phone)])
        .await
        .redirects_to("/login/verify"));
    let their_code = sms_code(&sms).await;
    if their_code != code {
        let page = theirs.post("/login/verify", &[("code", code.as_str())]).await;
        assert_eq!(page.status, 422, "my code is not the stranger's browser's");
    }
    // My browser moves to another network (a phone leaving Wi-Fi) and types its code.
    mine.forwarded_for = Some("192.0.2.99".into());
    mine.get("/login/verify").await;
    let page = mine.post("/login/verify", &[("code", code.as_str())]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(!page.redirects_to("/login/verify"));
}

async fn hcaptcha_and_recaptcha_widgets_fill_in_their_own_fields(db: Db) {
    let siteverify = SiteVerify::start().await;
    for (provider, class, field, origin) in [
        (
            BotCheckProvider::Hcaptcha,
            "h-captcha",
            "h-captcha-response",
            "https://hcaptcha.com",
        ),
        (
            BotCheckProvider::Recaptcha,
            "g-recaptcha",
            "g-recaptcha-response",
            "https://www.google.com",
        ),
    ] {
        let (app, sms) = bot_app_of(&db, &siteverify, provider).await;
        let mut browser = Browser::new(&app);
        let page = browser.get("/login").await;
        assert!(page.body.contains(&format!("bot-check {class}")), "{}", page.body);
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains(&format!("script-src 'self' {origin}")), "{csp}");
        // Another provider's field does not count.
        let page = browser
            .post(
                "/login",
                &[("identifier", "+1 201 555 0180"), ("cf-turnstile-response", "x")],
            )
            .await;
        assert_eq!(page.status, 422, "{provider:?}");
        let page = browser
            .post("/login", &[("identifier", "+1 201 555 0180"), (field, "solved")])
            .await;
        assert!(page.redirects_to("/login/verify"), "{provider:?}: {}", page.status);
        assert_eq!(sms.count(), 1);
    }
}

async fn many_new_sources_cannot_bomb_one_number_and_the_users_own_is_not_held_back(db: Db) {
    // Off by default (SPEC §10: strangers must not keep a user from a code); turned on here.
    let (app, sms) = app_with(&db, |s| s.abuse.identifier_max_sends = 4).await;
    let victim = Who::Phone("+1 201 555 0190");
    let home = "198.51.100.90";
    // The user signed in from home before.
    assert_eq!(app.getcode_from(home, APP, victim).await.status(), 200);
    let code = sms_code(&sms).await;
    assert_eq!(app.verifycode_from(home, APP, victim, &code).await.status(), 200);
    // Bombers at new addresses, each within its own per-source budget.
    let mut refused = 0;
    for i in 1..=8 {
        let res = app.getcode_from(&format!("203.0.113.{i}"), APP, victim).await;
        match res.status().as_u16() {
            200 => {}
            429 => {
                assert!(retry_after(&res) > 3500);
                let body = assert_error(res, 429, "too_many_requests").await;
                assert!(body["error_description"].as_str().unwrap().contains("new places"));
                refused += 1;
            }
            other => panic!("{other}"),
        }
    }
    // The user's code counted, then three from the bombers: four in the
    // window, the ceiling.
    assert_eq!(refused, 5);
    assert_eq!(sms.count(), 4);
    assert_eq!(app.refusals("identifier_limit").await, 5);
    // Someone at a new address is refused, and the refusals cost that
    // address nothing else: no lock falls on it.
    for _ in 0..5 {
        let res = app.getcode_from("192.0.2.77", APP, victim).await;
        assert_error(res, 429, "too_many_requests").await;
    }
    let locks = app.audited("locked_out").await;
    assert!(locks.iter().all(|(_, ip)| ip != "192.0.2.77"), "{locks:?}");
    assert_eq!(app.refusals("identifier_limit").await, 10);
    // The user, from home, gets a new code and it works.
    assert_eq!(app.getcode_from(home, APP, victim).await.status(), 200);
    let code = sms_code(&sms).await;
    assert_eq!(app.verifycode_from(home, APP, victim, &code).await.status(), 200);
}
