//! A minimal browser for the page tests: its own cookie jar, no automatic
//! redirects (tests look at each hop), and the CSRF token of the last page.

use std::collections::HashMap;

use crate::helpers::{TestApp, APP};

pub struct Browser<'a> {
    pub app: &'a TestApp,
    http: reqwest::Client,
    pub cookies: HashMap<String, String>,
    /// The CSRF token of the last page that had a form.
    pub csrf: String,
    /// The body of the last page that had a form.
    form_page: String,
    /// Sent as `X-Forwarded-For`: where this browser is, for an app that trusts 127.0.0.1 as its proxy.
    pub forwarded_for: Option<String>,
}

/// One answer: status, `Location`, `Set-Cookie` lines and body.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of a query parameter of the `Location`.
    pub fn location_param(&self, name: &str) -> Option<String> {
        let loc = self.location.as_deref()?;
        let query = loc.split_once('?')?.1;
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn redirects_to(&self, prefix: &str) -> bool {
        (300..400).contains(&self.status) && self.location.as_deref().is_some_and(|l| l.starts_with(prefix))
    }
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent("Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36")
                .build()
                .unwrap(),
            cookies: HashMap::new(),
            csrf: String::new(),
            form_page: String::new(),
            forwarded_for: None,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn answer(&mut self, res: reqwest::Response) -> Page {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let location = headers.get("location").map(|v| v.to_str().unwrap().to_string());
        let set_cookies: Vec<String> = headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let body = res.text().await.unwrap();
        if let Some(token) = csrf_in(&body) {
            self.csrf = token;
            self.form_page = body.clone();
        }
        Page {
            status,
            location,
            set_cookies,
            headers,
            body,
        }
    }

    fn with_address(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.forwarded_for {
            Some(ip) => req.header("X-Forwarded-For", ip),
            None => req,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            self.app.url(path)
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let res = self
            .with_address(self.http.get(self.url(path)))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.answer(res).await
    }

    /// POSTs a form as given (no CSRF token added).
    pub async fn post_raw(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let res = self
            .with_address(self.http.post(self.url(path)))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.answer(res).await
    }

    /// POSTs `body` as a form body, byte for byte (it may be malformed).
    pub async fn post_encoded(&mut self, path: &str, body: String) -> Page {
        let res = self
            .with_address(self.http.post(self.url(path)))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.answer(res).await
    }

    /// POSTs a form with the last page's CSRF token.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(form);
        self.post_raw(path, &all).await
    }

    /// The value of a hidden field of the last page that had a form.
    pub fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let at = self
            .form_page
            .find(&marker)
            .unwrap_or_else(|| panic!("no hidden `{name}`"))
            + marker.len();
        let rest = &self.form_page[at..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    /// Answers the consent page last shown, as its form does.
    pub async fn consent(&mut self, decision: &str) -> Page {
        let request = self.hidden("request");
        self.post("/consent", &[("decision", decision), ("request", &request)])
            .await
    }

    /// Signs `email` in with a code for the authorization request that led
    /// to `/login`, allowing the consent page if it is shown; the answer
    /// that goes back to the app.
    pub async fn sign_in_and_allow(&mut self, email: &str) -> Page {
        let page = self.sign_in_with_code(email).await;
        if !page.redirects_to("/consent") {
            return page;
        }
        self.get("/consent").await;
        self.consent("allow").await
    }

    /// Signs `phone` up on the pages: `/login` (with `extra`, e.g. a bot
    /// check's token), the code as `sms` (an SMS webhook receiver) got it,
    /// then `/signup`; ends on `/account`.
    pub async fn sign_up_by_sms(&mut self, phone: &str, sms: &crate::peers::Receiver, extra: &[(&str, &str)]) {
        self.get("/login").await;
        let mut form = vec![("identifier", phone)];
        form.extend_from_slice(extra);
        assert!(self.post("/login", &form).await.redirects_to("/login/verify"));
        self.get("/login/verify").await;
        let code = sms.last().await.json()["code"].as_str().unwrap().to_string();
        assert!(self
            .post("/login/verify", &[("code", &code)])
            .await
            .redirects_to("/signup"));
        self.get("/signup").await;
        assert!(self.post("/signup", &[]).await.redirects_to("/account"));
        assert_eq!(self.get("/account").await.status, 200);
    }

    /// Asks for a code on `/login` and enters it (read from the console outbox).
    pub async fn sign_in_with_code(&mut self, identifier: &str) -> Page {
        let login = self.get("/login").await;
        assert_eq!(login.status, 200, "{}", login.body);
        let sent = self.post("/login", &[("identifier", identifier)]).await;
        assert!(
            sent.redirects_to("/login/verify"),
            "status {} {:?}",
            sent.status,
            sent.location
        );
        let page = self.get("/login/verify").await;
        assert_eq!(page.status, 200);
        let code = self.app.outbox_code().await;
        self.post("/login/verify", &[("code", &code)]).await
    }
}

fn csrf_in(body: &str) -> Option<String> {
    let at = body.find("name=\"csrf\" value=\"")?;
    let rest = &body[at + "name=\"csrf\" value=\"".len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use sha2::Digest;
    let verifier = sesame::crypto::random_token::<32>();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// `/oauth2/authorize?…` for the test app client.
pub fn authorize_path(client_id: &str, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut q = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
    ];
    q.extend_from_slice(extra);
    format!("/oauth2/authorize?{}", serde_urlencoded::to_string(&q).unwrap())
}

/// The test `app` client's redirect URI.
pub const CB: &str = "http://localhost:3000/callback";

/// Starts an authorization request for `app` with PKCE; returns the verifier.
pub async fn start(b: &mut Browser<'_>, extra: &[(&str, &str)]) -> (Page, String) {
    let (verifier, challenge) = pkce();
    let mut q = vec![
        ("scope", "openid email profile offline_access"),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    q.extend_from_slice(extra);
    let page = b.get(&authorize_path(APP.0, CB, &q)).await;
    (page, verifier)
}

/// Exchanges a code for `app`'s tokens.
pub async fn exchange(app: &TestApp, code: &str, verifier: &str) -> reqwest::Response {
    exchange_for(app, APP, code, verifier).await
}

/// Exchanges a code (redirect URI `CB`) for `client`'s tokens.
pub async fn exchange_for(app: &TestApp, client: (&str, &str), code: &str, verifier: &str) -> reqwest::Response {
    app.post_form(
        "/oauth2/token",
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CB),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// A new user through the whole flow; returns the callback page and the verifier.
pub async fn sign_up_through_authorize(b: &mut Browser<'_>, email: &str) -> (Page, String) {
    let (page, verifier) = start(b, &[]).await;
    assert!(page.redirects_to("/login"), "{:?}", page.location);
    let verified = b.sign_in_with_code(email).await;
    assert!(verified.redirects_to("/signup"), "{:?}", verified.location);
    let signup = b.get("/signup").await;
    assert!(
        signup.body.contains(email),
        "the signup page shows the verified address"
    );
    let created = b
        .post("/signup", &[("first_name", "Ada"), ("last_name", "Lovelace")])
        .await;
    assert!(created.redirects_to("/consent"), "{:?}", created.location);
    let consent = b.get("/consent").await;
    assert!(consent.body.contains("App"), "the consent page names the client");
    let allowed = b.consent("allow").await;
    assert!(allowed.redirects_to(CB), "{:?}", allowed.location);
    (allowed, verifier)
}
