//! OpenID Connect conformance (issue 13): one test per module of the
//! OpenID Foundation's Basic OP and Config OP test plans, named after it
//! (`oidcc-scope-email` is `oidcc_scope_email`), asserting what the module
//! asserts, against the real app on both backends. The Form Post OP plan
//! runs every Basic module with `response_mode=form_post`: each test below
//! runs four times (SQLite and PostgreSQL, query and form post). Modules
//! that need a person to look at a screen are tested for their HTTP
//! behaviour. The RP-Initiated Logout plan is in `conformance_logout.rs`.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::browser::{authorize_path, pkce, Browser, Page, CB};
use crate::helpers::{assert_error, jwt_parts, spawn_app, Db, TestApp, Who, APP};

/// How the authorization response comes back (the Basic or the Form Post plan).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Query,
    FormPost,
}

/// Each module as four tests: both databases, both response modes.
macro_rules! plan {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            use super::Mode;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Db::sqlite(), Mode::Query).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half")]
            async fn postgres() {
                super::$name($crate::helpers::Db::postgres().await, Mode::Query).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn form_post_sqlite() {
                super::$name($crate::helpers::Db::sqlite(), Mode::FormPost).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half")]
            async fn form_post_postgres() {
                super::$name($crate::helpers::Db::postgres().await, Mode::FormPost).await
            }
        }
    )+};
}

plan!(
    oidcc_server,
    oidcc_response_type_missing,
    oidcc_idtoken_signature,
    oidcc_idtoken_unsigned,
    oidcc_userinfo_get,
    oidcc_userinfo_post_header,
    oidcc_userinfo_post_body,
    oidcc_ensure_request_without_nonce_succeeds_for_code_flow,
    oidcc_scope_profile,
    oidcc_scope_email,
    oidcc_scope_address,
    oidcc_scope_phone,
    oidcc_scope_all,
    oidcc_alternate_happy_flow,
    oidcc_display_page,
    oidcc_display_popup,
    oidcc_prompt_login,
    oidcc_prompt_none_not_logged_in,
    oidcc_prompt_none_logged_in,
    oidcc_max_age_1,
    oidcc_max_age_10000,
    oidcc_ensure_request_with_unknown_parameter_succeeds,
    oidcc_id_token_hint,
    oidcc_login_hint,
    oidcc_ui_locales,
    oidcc_claims_locales,
    oidcc_ensure_request_with_acr_values_succeeds,
    oidcc_codereuse,
    oidcc_codereuse_30seconds,
    oidcc_ensure_registered_redirect_uri,
    oidcc_ensure_post_request_succeeds,
    oidcc_server_client_secret_post,
    oidcc_request_uri_unsigned_supported_correctly_or_rejected_as_unsupported,
    oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported,
    oidcc_claims_essential,
    oidcc_ensure_request_object_with_redirect_uri,
    oidcc_refresh_token,
    oidcc_ensure_request_with_valid_pkce_succeeds,
);

crate::db_test!(oidcc_discovery_endpoint_verification);

/// The test suite's relying party: the `app` client in one browser.
pub struct Rp<'a> {
    pub b: Browser<'a>,
    pub mode: Mode,
    /// The PKCE verifier of the last request.
    verifier: String,
}

/// The parameters of an authorization response, however they came.
pub type Answer = HashMap<String, String>;

impl<'a> Rp<'a> {
    pub fn new(app: &'a TestApp, mode: Mode) -> Rp<'a> {
        Rp {
            b: Browser::new(app),
            mode,
            verifier: String::new(),
        }
    }

    fn app(&self) -> &'a TestApp {
        self.b.app
    }

    /// Sends the browser to `/oauth2/authorize` (GET) with `params`, PKCE and,
    /// in the Form Post plan, `response_mode=form_post`.
    pub async fn authorize(&mut self, params: &[(&str, &str)]) -> Page {
        let q = self.request(params);
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.b.get(&authorize_path(APP.0, CB, &q)).await
    }

    /// The request's parameters besides `response_type`, `client_id` and `redirect_uri`.
    fn request(&mut self, params: &[(&str, &str)]) -> Vec<(String, String)> {
        let (verifier, challenge) = pkce();
        self.verifier = verifier;
        let mut q: Vec<(String, String)> = vec![
            ("code_challenge".into(), challenge),
            ("code_challenge_method".into(), "S256".into()),
        ];
        if self.mode == Mode::FormPost {
            q.push(("response_mode".into(), "form_post".into()));
        }
        q.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        q
    }

    /// The authorization response in `page`, if it is one: a redirect to
    /// the app (query) or a page that posts to it (form post), never the other.
    pub fn answer(&self, page: &Page) -> Option<Answer> {
        match self.mode {
            Mode::Query => {
                if !page.redirects_to(CB) {
                    return None;
                }
                let query = page.location.as_deref()?.split_once('?')?.1;
                Some(
                    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                        .ok()?
                        .into_iter()
                        .collect(),
                )
            }
            Mode::FormPost => {
                assert!(!page.redirects_to(CB), "form_post: the response never goes in the URL");
                form_post_fields(page)
            }
        }
    }

    /// As `answer`, which must be there.
    pub fn must_answer(&self, page: &Page) -> Answer {
        self.answer(page).unwrap_or_else(|| {
            panic!(
                "no authorization response: {} {:?} {}",
                page.status, page.location, page.body
            )
        })
    }

    /// Signs `email` in on `/login` (the request led there) and allows consent if asked.
    pub async fn sign_in(&mut self, email: &str) -> Answer {
        let page = self.b.sign_in_and_allow(email).await;
        self.must_answer(&page)
    }

    /// A request that leads to `/login`, signed in as `email` (an existing
    /// account, or a new one signed up on the way).
    pub async fn flow(&mut self, email: &str, params: &[(&str, &str)]) -> Answer {
        let page = self.authorize(params).await;
        assert!(page.redirects_to("/login"), "{} {:?}", page.status, page.location);
        self.flow_from_login(email).await
    }

    /// From `/login` (a request led there) to the answer, as in `flow`.
    pub async fn flow_from_login(&mut self, email: &str) -> Answer {
        let mut page = self.b.sign_in_with_code(email).await;
        if page.redirects_to("/signup") {
            self.b.get("/signup").await;
            page = self.b.post("/signup", &[("first_name", "Ada")]).await;
        }
        if page.redirects_to("/consent") {
            self.b.get("/consent").await;
            page = self.b.consent("allow").await;
        }
        self.must_answer(&page)
    }

    /// Exchanges the code of `answer` (checking `state` and `iss` on the way).
    pub async fn tokens(&self, answer: &Answer) -> Value {
        assert_eq!(answer.get("iss").map(String::as_str), Some(self.app().address.as_str()));
        let code = answer.get("code").expect("a code");
        let res = crate::browser::exchange(self.app(), code, &self.verifier).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "no-store");
        res.json().await.unwrap()
    }
}

/// The fields of a form-post response page: its form posts to the redirect URI.
fn form_post_fields(page: &Page) -> Option<Answer> {
    if page.status != 200 || !page.body.contains(&format!("<form method=\"post\" action=\"{CB}\"")) {
        return None;
    }
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self' http://localhost:3000"),
        "the page may post to the app: {csp}"
    );
    assert_eq!(page.headers["cache-control"], "no-store");
    let unescape = |s: &str| {
        s.replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    let mut fields = HashMap::new();
    for part in page.body.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = part.split_once("\" value=\"")?;
        let value = &rest[..rest.find('"')?];
        fields.insert(unescape(name), unescape(value));
    }
    Some(fields)
}

/// The ID token's claims, its signature checked against the JWKS.
pub async fn verified_id_token(app: &TestApp, token: &str) -> Value {
    assert_eq!(jwt_parts(token).0["typ"], "JWT", "an ID token, not another kind of JWT");
    app.verified_by_jwks(token).await
}

/// What every ID token must hold (OIDC Core §3.1.3.7).
fn check_id_token(app: &TestApp, claims: &Value, nonce: Option<&str>) {
    assert_eq!(claims["iss"], app.address.as_str());
    assert_eq!(claims["aud"], APP.0);
    assert!(claims["sub"].as_str().is_some_and(|s| !s.is_empty()));
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert!(exp > iat && iat <= sesame::store::now() + 5);
    assert!(claims["auth_time"].as_i64().is_some());
    assert_eq!(claims["nonce"].as_str(), nonce);
}

/// A user with every claim the scopes can release, made through the OTP API.
async fn full_profile_user(app: &TestApp, email: &str) {
    let secret = app.verified(APP, Who::Email(email)).await;
    let res = app
        .create_user(
            APP,
            &json!({"secret_identifier": secret, "auto_username": true, "first_name": "Ada", "last_name": "Lovelace",
                    "account": {"phone": "+14155550123", "address": "12 St James's Square, London", "zip_code": "SW1Y 4JH"}}),
        )
        .await;
    assert_eq!(res.status(), 201);
}

/// The userinfo answer for the tokens' access token.
async fn userinfo(app: &TestApp, tokens: &Value) -> Value {
    let res = app.userinfo(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// `POST /oauth2/userinfo` with the token in the header, the form body, or both.
async fn userinfo_post(app: &TestApp, bearer: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.http.post(app.url("/oauth2/userinfo")).form(form);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

const OPENID: (&str, &str) = ("scope", "openid");

async fn oidcc_server(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp
        .flow("server@example.com", &[OPENID, ("state", "s-1"), ("nonce", "n-1")])
        .await;
    assert_eq!(answer["state"], "s-1");
    let tokens = rp.tokens(&answer).await;
    assert_eq!(tokens["token_type"], "Bearer");
    let claims = verified_id_token(&app, tokens["id_token"].as_str().unwrap()).await;
    check_id_token(&app, &claims, Some("n-1"));
    assert_eq!(userinfo(&app, &tokens).await["sub"], claims["sub"]);
}

async fn oidcc_response_type_missing(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let q = rp.request(&[OPENID, ("state", "s-2")]);
    let mut all = vec![
        ("client_id".to_string(), APP.0.to_string()),
        ("redirect_uri".into(), CB.into()),
    ];
    all.extend(q);
    let page =
        rp.b.get(&format!(
            "/oauth2/authorize?{}",
            serde_urlencoded::to_string(&all).unwrap()
        ))
        .await;
    let answer = rp.must_answer(&page);
    assert_eq!(answer["error"], "invalid_request");
    assert_eq!(answer["state"], "s-2");
    assert_eq!(answer["iss"], app.address);
}

/// ID tokens are signed with the client's `id_token_signed_response_alg`:
/// RS256 when unset (issue 13, problem 1), and what the admin API sets.
async fn oidcc_idtoken_signature(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("sig@example.com", &[OPENID]).await;
    let tokens = rp.tokens(&answer).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(jwt_parts(id_token).0["alg"], "RS256");
    verified_id_token(&app, id_token).await;
    assert_eq!(
        jwt_parts(tokens["access_token"].as_str().unwrap()).0["alg"],
        "ES256",
        "access tokens keep tokens.signing_alg"
    );
    for alg in ["ES256", "EdDSA", "RS256"] {
        let admin = app.admin_token().await;
        let res = app
            .http
            .put(app.url(&format!("/admin/api/clients/{}", APP.0)))
            .bearer_auth(&admin)
            .json(&json!({ "id_token_signed_response_alg": alg }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap()["id_token_signed_response_alg"], alg);
        let page = rp.authorize(&[OPENID, ("prompt", "none")]).await;
        let tokens = rp.tokens(&rp.must_answer(&page)).await;
        let id_token = tokens["id_token"].as_str().unwrap();
        assert_eq!(jwt_parts(id_token).0["alg"], alg);
        verified_id_token(&app, id_token).await;
    }
}

/// `none` is never an ID token algorithm here: discovery does not list it
/// and a client cannot be registered for it.
async fn oidcc_idtoken_unsigned(db: Db, _mode: Mode) {
    let app = spawn_app(&db).await;
    let doc: Value = app.get("/.well-known/openid-configuration").await.json().await.unwrap();
    let algs = doc["id_token_signing_alg_values_supported"].as_array().unwrap();
    assert!(!algs.iter().any(|a| a == "none"));
    let admin = app.admin_token().await;
    let res = app
        .http
        .post(app.url("/admin/api/clients"))
        .bearer_auth(&admin)
        .json(&json!({"client_name": "Unsigned", "redirect_uris": [CB], "id_token_signed_response_alg": "none"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_client_metadata").await;
}

async fn oidcc_userinfo_get(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("get@example.com", &[("scope", "openid email")]).await;
    let tokens = rp.tokens(&answer).await;
    assert_eq!(userinfo(&app, &tokens).await["email"], "get@example.com");
}

async fn oidcc_userinfo_post_header(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("header@example.com", &[("scope", "openid email")]).await;
    let tokens = rp.tokens(&answer).await;
    let res = userinfo_post(&app, tokens["access_token"].as_str(), &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["email"], "header@example.com");
}

/// Issue 13, problem 4: the token in a form body (RFC 6750 §2.2).
async fn oidcc_userinfo_post_body(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("body@example.com", &[("scope", "openid email")]).await;
    let tokens = rp.tokens(&answer).await;
    let token = tokens["access_token"].as_str().unwrap();
    let res = userinfo_post(&app, None, &[("access_token", token)]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["email"], "body@example.com");
    // One method only (RFC 6750 §2), and a bad token is still refused.
    let res = userinfo_post(&app, Some(token), &[("access_token", token)]).await;
    assert_error(res, 400, "invalid_request").await;
    let res = userinfo_post(&app, None, &[("access_token", "not-a-token")]).await;
    assert_error(res, 401, "invalid_token").await;
    // Not in a query string.
    let res = app
        .http
        .get(app.url(&format!("/oauth2/userinfo?access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "invalid_token").await;
}

async fn oidcc_ensure_request_without_nonce_succeeds_for_code_flow(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("nononce@example.com", &[OPENID, ("state", "s")]).await;
    let tokens = rp.tokens(&answer).await;
    let claims = verified_id_token(&app, tokens["id_token"].as_str().unwrap()).await;
    check_id_token(&app, &claims, None);
}

/// A scope's claims, in userinfo and (OIDC Core §5.4) the ID token alike.
async fn scope_releases(db: Db, mode: Mode, scope: &str, claims: &[&str]) {
    let app = spawn_app(&db).await;
    full_profile_user(&app, "scoped@example.com").await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("scoped@example.com", &[("scope", scope)]).await;
    let tokens = rp.tokens(&answer).await;
    assert_eq!(tokens["scope"], scope, "granted as asked");
    let info = userinfo(&app, &tokens).await;
    let id = verified_id_token(&app, tokens["id_token"].as_str().unwrap()).await;
    for claim in claims {
        assert!(info.get(*claim).is_some(), "userinfo has {claim}: {info}");
        assert_eq!(info[*claim], id[*claim], "{claim} alike in the ID token");
    }
    for (s, claim) in [
        ("profile", "name"),
        ("email", "email"),
        ("phone", "phone_number"),
        ("address", "address"),
    ] {
        if !scope.split(' ').any(|x| x == s) {
            assert!(info.get(claim).is_none(), "no {claim} without {s}");
        }
    }
}

async fn oidcc_scope_profile(db: Db, mode: Mode) {
    let claims = ["name", "given_name", "family_name", "preferred_username", "updated_at"];
    scope_releases(db, mode, "openid profile", &claims).await;
}

async fn oidcc_scope_email(db: Db, mode: Mode) {
    scope_releases(db, mode, "email openid", &["email", "email_verified"]).await;
}

async fn oidcc_scope_address(db: Db, mode: Mode) {
    scope_releases(db, mode, "address openid", &["address"]).await;
}

async fn oidcc_scope_phone(db: Db, mode: Mode) {
    scope_releases(db, mode, "openid phone", &["phone_number", "phone_number_verified"]).await;
}

async fn oidcc_scope_all(db: Db, mode: Mode) {
    let claims = ["name", "email", "phone_number", "address"];
    scope_releases(db, mode, "address email openid phone profile", &claims).await;
}

/// Another happy flow: a signed-in user, new parameters, a new code each time.
async fn oidcc_alternate_happy_flow(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let first = rp.flow("alt@example.com", &[OPENID]).await;
    rp.tokens(&first).await;
    let page = rp
        .authorize(&[("scope", "openid email"), ("state", "alt"), ("nonce", "alt-n")])
        .await;
    let page = if page.redirects_to("/consent") {
        rp.b.get("/consent").await;
        rp.b.consent("allow").await
    } else {
        page
    };
    let answer = rp.must_answer(&page);
    assert_ne!(answer["code"], first["code"]);
    let tokens = rp.tokens(&answer).await;
    let claims = verified_id_token(&app, tokens["id_token"].as_str().unwrap()).await;
    check_id_token(&app, &claims, Some("alt-n"));
    assert_eq!(claims["email"], "alt@example.com");
}

async fn display_is_accepted(db: Db, mode: Mode, display: &str) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("display@example.com", &[OPENID, ("display", display)]).await;
    rp.tokens(&answer).await;
}

async fn oidcc_display_page(db: Db, mode: Mode) {
    display_is_accepted(db, mode, "page").await;
}

async fn oidcc_display_popup(db: Db, mode: Mode) {
    display_is_accepted(db, mode, "popup").await;
}

/// A forced sign-in, right after one (issue 13, problem 3): with the default
/// `otp.resend_after` (30 s) the sign-in page sends a fresh code at once,
/// and the new ID token's `auth_time` is the new sign-in's.
async fn oidcc_prompt_login(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    assert_eq!(app.state.settings.otp.resend_after.as_secs(), 30);
    let mut rp = Rp::new(&app, mode);
    let first = rp.flow("stepup@example.com", &[OPENID]).await;
    let first = verified_id_token(&app, rp.tokens(&first).await["id_token"].as_str().unwrap()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let page = rp.authorize(&[OPENID, ("prompt", "login")]).await;
    assert!(page.redirects_to("/login"), "{:?}", page.location);
    let answer = rp.sign_in("stepup@example.com").await;
    let again = verified_id_token(&app, rp.tokens(&answer).await["id_token"].as_str().unwrap()).await;
    assert!(again["auth_time"].as_i64() > first["auth_time"].as_i64());
}

async fn oidcc_prompt_none_not_logged_in(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let page = rp.authorize(&[OPENID, ("prompt", "none"), ("state", "pn")]).await;
    let answer = rp.must_answer(&page);
    assert_eq!(answer["error"], "login_required");
    assert_eq!(answer["state"], "pn");
}

async fn oidcc_prompt_none_logged_in(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let first = rp.flow("pnl@example.com", &[OPENID]).await;
    let first = verified_id_token(&app, rp.tokens(&first).await["id_token"].as_str().unwrap()).await;
    let page = rp.authorize(&[OPENID, ("prompt", "none"), ("nonce", "again")]).await;
    let answer = rp.must_answer(&page);
    let claims = verified_id_token(&app, rp.tokens(&answer).await["id_token"].as_str().unwrap()).await;
    check_id_token(&app, &claims, Some("again"));
    assert_eq!(claims["sub"], first["sub"]);
    assert_eq!(claims["auth_time"], first["auth_time"], "no new sign-in");
}

async fn oidcc_max_age_1(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let first = rp.flow("maxage@example.com", &[OPENID]).await;
    let first = verified_id_token(&app, rp.tokens(&first).await["id_token"].as_str().unwrap()).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let page = rp.authorize(&[OPENID, ("max_age", "1")]).await;
    assert!(page.redirects_to("/login"), "an older sign-in must be renewed");
    let answer = rp.sign_in("maxage@example.com").await;
    let claims = verified_id_token(&app, rp.tokens(&answer).await["id_token"].as_str().unwrap()).await;
    assert!(claims["auth_time"].as_i64().unwrap() >= first["auth_time"].as_i64().unwrap() + 2);
}

async fn oidcc_max_age_10000(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let first = rp.flow("maxage2@example.com", &[OPENID]).await;
    let first = verified_id_token(&app, rp.tokens(&first).await["id_token"].as_str().unwrap()).await;
    let page = rp.authorize(&[OPENID, ("max_age", "10000")]).await;
    let claims = verified_id_token(
        &app,
        rp.tokens(&rp.must_answer(&page)).await["id_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(claims["auth_time"], first["auth_time"]);
}

async fn oidcc_ensure_request_with_unknown_parameter_succeeds(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp
        .flow(
            "unknown@example.com",
            &[OPENID, ("extra", "foobar"), ("another_one", "x")],
        )
        .await;
    rp.tokens(&answer).await;
}

/// `id_token_hint` of the signed-in user: answered without a page; of
/// someone else: that user must sign in (`login_required` with prompt=none).
async fn oidcc_id_token_hint(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let first = rp.flow("hint@example.com", &[OPENID]).await;
    let id_token = rp.tokens(&first).await["id_token"].as_str().unwrap().to_string();
    let page = rp
        .authorize(&[OPENID, ("prompt", "none"), ("id_token_hint", &id_token)])
        .await;
    rp.tokens(&rp.must_answer(&page)).await;

    let mut other = Rp::new(&app, mode);
    let theirs = other.flow("other@example.com", &[OPENID]).await;
    let their_token = other.tokens(&theirs).await["id_token"].as_str().unwrap().to_string();
    let page = rp
        .authorize(&[OPENID, ("prompt", "none"), ("id_token_hint", &their_token)])
        .await;
    assert_eq!(rp.must_answer(&page)["error"], "login_required");
    // A hint that does not verify is no hint (a key retired since, a forgery): ignored.
    let page = rp.authorize(&[OPENID, ("id_token_hint", "not-a-token")]).await;
    assert!(rp.must_answer(&page).contains_key("code"));
}

async fn oidcc_login_hint(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let user = app.account_for("hinted@example.com").await;
    let mut rp = Rp::new(&app, mode);
    let page = rp.authorize(&[OPENID, ("login_hint", "hinted@example.com")]).await;
    assert!(page.redirects_to("/login"));
    let login = rp.b.get("/login").await;
    assert!(
        login.body.contains("value=\"hinted@example.com\""),
        "the sign-in form is filled in"
    );
    let answer = rp.sign_in("hinted@example.com").await;
    let claims = verified_id_token(&app, rp.tokens(&answer).await["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], user.id);
}

async fn locales_are_accepted(db: Db, mode: Mode, name: &str) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("locale@example.com", &[OPENID, (name, "se")]).await;
    rp.tokens(&answer).await;
}

async fn oidcc_ui_locales(db: Db, mode: Mode) {
    locales_are_accepted(db, mode, "ui_locales").await;
}

async fn oidcc_claims_locales(db: Db, mode: Mode) {
    locales_are_accepted(db, mode, "claims_locales").await;
}

async fn oidcc_ensure_request_with_acr_values_succeeds(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("acr@example.com", &[OPENID, ("acr_values", "1 2")]).await;
    let claims = verified_id_token(&app, rp.tokens(&answer).await["id_token"].as_str().unwrap()).await;
    assert!(claims["acr"].as_str().is_some());
}

/// A second use of a code is `invalid_grant` and revokes what the first issued.
async fn code_reuse(db: Db, mode: Mode, wait: Option<i64>) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("reuse@example.com", &[OPENID]).await;
    let tokens = rp.tokens(&answer).await;
    if let Some(secs) = wait {
        // The module waits 30 s; the code's clock is moved instead.
        db.execute(&format!(
            "UPDATE auth_codes SET created_at = created_at - {secs}, expires_at = expires_at - {secs}, used_at = used_at - {secs}"
        ))
        .await;
    }
    let res = crate::browser::exchange(&app, &answer["code"], &rp.verifier).await;
    assert_error(res, 400, "invalid_grant").await;
    let token = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        app.introspect(token).await["active"],
        false,
        "what the first use issued is revoked"
    );
}

async fn oidcc_codereuse(db: Db, mode: Mode) {
    code_reuse(db, mode, None).await;
}

async fn oidcc_codereuse_30seconds(db: Db, mode: Mode) {
    code_reuse(db, mode, Some(30)).await;
}

async fn oidcc_ensure_registered_redirect_uri(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let q = rp.request(&[OPENID, ("state", "x")]);
    let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let page =
        rp.b.get(&authorize_path(APP.0, "http://localhost:3000/elsewhere", &q))
            .await;
    assert_eq!(page.status, 400, "an error page");
    assert!(page.location.is_none(), "never redirected");
    assert!(!page.body.contains("elsewhere\" data-autosubmit"));
}

/// Issue 13, problem 2: the request in a form body (OIDC Core §3.1.2.1).
async fn oidcc_ensure_post_request_succeeds(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let mut form = vec![
        ("response_type".to_string(), "code".to_string()),
        ("client_id".into(), APP.0.into()),
        ("redirect_uri".into(), CB.into()),
    ];
    form.extend(rp.request(&[
        ("scope", "openid email"),
        ("state", "posted"),
        ("nonce", "posted-nonce"),
    ]));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let page = rp.b.post_raw("/oauth2/authorize", &form).await;
    assert!(
        page.redirects_to("/login"),
        "{} {:?} {}",
        page.status,
        page.location,
        page.body
    );
    let page = rp.b.sign_in_with_code("posted@example.com").await;
    assert!(page.redirects_to("/signup"));
    rp.b.get("/signup").await;
    rp.b.post("/signup", &[]).await;
    rp.b.get("/consent").await;
    let page = rp.b.consent("allow").await;
    let answer = rp.must_answer(&page);
    assert_eq!(answer["state"], "posted");
    let claims = verified_id_token(&app, rp.tokens(&answer).await["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["nonce"], "posted-nonce", "the posted nonce reaches the ID token");
}

async fn oidcc_server_client_secret_post(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("post@example.com", &[OPENID]).await;
    let res = app
        .http
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", answer["code"].as_str()),
            ("redirect_uri", CB),
            ("code_verifier", rp.verifier.as_str()),
            ("client_id", APP.0),
            ("client_secret", APP.1),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    verified_id_token(&app, tokens["id_token"].as_str().unwrap()).await;
}

async fn oidcc_request_uri_unsigned_supported_correctly_or_rejected_as_unsupported(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let page = rp
        .authorize(&[
            OPENID,
            ("request_uri", "https://rp.example/request.jwt"),
            ("state", "ru"),
        ])
        .await;
    let answer = rp.must_answer(&page);
    assert_eq!(answer["error"], "request_uri_not_supported");
    assert_eq!(answer["state"], "ru");
}

/// An unsigned (`alg: none`) request object.
fn request_object(claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

async fn oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let object = request_object(&json!({"client_id": APP.0, "scope": "openid", "response_type": "code"}));
    let page = rp.authorize(&[OPENID, ("request", &object), ("state", "ro")]).await;
    let answer = rp.must_answer(&page);
    assert_eq!(answer["error"], "request_not_supported");
    assert_eq!(answer["state"], "ro");
}

async fn oidcc_ensure_request_object_with_redirect_uri(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let object =
        request_object(&json!({"client_id": APP.0, "redirect_uri": CB, "scope": "openid", "response_type": "code"}));
    let page = rp.authorize(&[OPENID, ("request", &object)]).await;
    assert_eq!(rp.must_answer(&page)["error"], "request_not_supported");
}

/// The `claims` parameter (OIDC Core §5.5, issue 13, problem 5): a claim
/// asked for by name is released with its scope.
async fn oidcc_claims_essential(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    full_profile_user(&app, "claims@example.com").await;
    let mut rp = Rp::new(&app, mode);
    let claims = r#"{"userinfo":{"name":{"essential":true}},"id_token":{"email":null}}"#;
    let answer = rp.flow("claims@example.com", &[OPENID, ("claims", claims)]).await;
    let tokens = rp.tokens(&answer).await;
    assert_eq!(
        tokens["scope"], "email openid profile",
        "the claims' scopes are granted and said so"
    );
    assert_eq!(userinfo(&app, &tokens).await["name"], "Ada Lovelace");
    let id = verified_id_token(&app, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id["email"], "claims@example.com");
    let page = rp.authorize(&[OPENID, ("claims", "{not json")]).await;
    assert_eq!(rp.must_answer(&page)["error"], "invalid_request");
    // A request for another user's tokens (OIDC Core §5.5.1) is never answered with this user's.
    let other = r#"{"id_token":{"sub":{"value":"someone-else"}}}"#;
    let page = rp.authorize(&[OPENID, ("claims", other), ("prompt", "none")]).await;
    assert_eq!(rp.must_answer(&page)["error"], "login_required");
    let page = rp.authorize(&[OPENID, ("claims", other)]).await;
    assert!(page.redirects_to("/login"), "that user must sign in");
    let answer = rp.sign_in("claims@example.com").await;
    assert_eq!(answer["error"], "access_denied");
    assert!(!answer.contains_key("code"));
}

async fn oidcc_refresh_token(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp
        .flow("refresh@example.com", &[("scope", "openid offline_access")])
        .await;
    let tokens = rp.tokens(&answer).await;
    let first = verified_id_token(&app, tokens["id_token"].as_str().unwrap()).await;
    let res = app.refresh(APP, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    let renewed: Value = res.json().await.unwrap();
    assert_ne!(renewed["refresh_token"], tokens["refresh_token"], "rotated");
    // OIDC Core §12.2: same iss, sub, aud and auth_time.
    let again = verified_id_token(&app, renewed["id_token"].as_str().unwrap()).await;
    for claim in ["iss", "sub", "aud", "auth_time"] {
        assert_eq!(again[claim], first[claim], "{claim}");
    }
    let res = app.refresh(APP, tokens["refresh_token"].as_str().unwrap()).await;
    assert_error(res, 400, "invalid_grant").await;
}

async fn oidcc_ensure_request_with_valid_pkce_succeeds(db: Db, mode: Mode) {
    let app = spawn_app(&db).await;
    let mut rp = Rp::new(&app, mode);
    let answer = rp.flow("pkce@example.com", &[OPENID]).await;
    let res = crate::browser::exchange(&app, &answer["code"], "a-verifier-that-is-wrong-but-long-enough-43c").await;
    assert_error(res, 400, "invalid_grant").await;
    rp.tokens(&answer).await;
}

/// The Config OP plan: the discovery document (OIDC Discovery §3, §4).
async fn oidcc_discovery_endpoint_verification(db: Db) {
    let app = spawn_app(&db).await;
    let res = app.get("/.well-known/openid-configuration").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc: Value = res.json().await.unwrap();
    let iss = app.address.as_str();
    assert_eq!(doc["issuer"], iss);
    for (key, path) in [
        ("authorization_endpoint", "/oauth2/authorize"),
        ("token_endpoint", "/oauth2/token"),
        ("userinfo_endpoint", "/oauth2/userinfo"),
        ("jwks_uri", "/oauth2/jwks"),
        ("end_session_endpoint", "/oauth2/logout"),
    ] {
        assert_eq!(doc[key], format!("{iss}{path}"), "{key}");
    }
    let has = |key: &str, value: &str| {
        doc[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is a list"))
            .iter()
            .any(|v| v == value)
    };
    assert!(
        has("id_token_signing_alg_values_supported", "RS256"),
        "RS256 MUST be listed"
    );
    assert!(has("response_types_supported", "code"));
    assert!(has("response_modes_supported", "form_post"));
    assert!(has("subject_types_supported", "public"));
    assert!(has("scopes_supported", "openid"));
    assert!(has("grant_types_supported", "authorization_code"));
    assert!(has("token_endpoint_auth_methods_supported", "client_secret_basic"));
    assert!(has("claims_supported", "sub"));
    assert_eq!(doc["request_uri_parameter_supported"], false, "true when left out");
    assert_eq!(doc["request_parameter_supported"], false);
    assert_eq!(doc["claims_parameter_supported"], true);
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);
    // Every listed algorithm has a published key.
    let jwks: Value = app.get("/oauth2/jwks").await.json().await.unwrap();
    for alg in doc["id_token_signing_alg_values_supported"].as_array().unwrap() {
        assert!(
            jwks["keys"].as_array().unwrap().iter().any(|k| &k["alg"] == alg),
            "{alg}"
        );
    }
}
