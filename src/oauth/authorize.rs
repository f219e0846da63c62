//! `GET /oauth2/authorize` (RFC 6749 §4.1.1, OIDC Core §3.1.2): validates the
//! request, keeps it in the browser's session while the user signs in and
//! consents, and answers with a code (or an error) at the redirect URI, with
//! `iss` (RFC 9207).
//!
//! oxide-auth is not used here: its code lifetime is fixed at 10 minutes
//! (SPEC: 60 s), it has no OIDC parameters (`nonce`, `prompt`, `max_age`),
//! it accepts `plain` PKCE by default and keeps codes in memory, which
//! neither gives cross-node single use nor lets a reused code revoke what
//! its first use issued. What it would validate is the short list below.

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::domain::{Client, Scope};
use crate::params::Params;
use crate::state::AppState;
use crate::store::auth_codes::AuthCode;
use crate::store::now;
use crate::store::users::User;
use crate::web::page::{self, bad_request, PageError};
use crate::web::{flow, session};

/// How long an authorization code lives (SPEC §4).
pub const CODE_TTL: i64 = 60;

/// An authorization request being worked on, kept in the session. (No
/// `Debug`: `login_hint` may be an email or phone.)
#[derive(Clone, Serialize, Deserialize)]
pub struct AuthzRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_consent: bool,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    /// A fresh sign-in is needed before answering (`prompt=login`, an
    /// exceeded `max_age`); cleared when the user signs in.
    pub login_required: bool,
    /// The user answered the consent page for this request.
    pub consented: bool,
    /// Names this request: the consent page carries it, so an answer posted
    /// from a page that showed another request is refused (SPEC §9).
    #[serde(default)]
    pub id: String,
    /// RFC 8707 resources the tokens are for (checked against the client's).
    #[serde(default)]
    pub resources: Vec<String>,
}

/// Where an authorization response goes: the redirect URI with `params`,
/// `state` and `iss` added to its query.
pub fn response_url(state: &AppState, authz: &AuthzRequest, params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    if let Some(s) = &authz.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", state.issuer()));
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let sep = if authz.redirect_uri.contains('?') { '&' } else { '?' };
    format!("{}{sep}{query}", authz.redirect_uri)
}

pub fn error_url(state: &AppState, authz: &AuthzRequest, error: &str, description: &str) -> String {
    response_url(state, authz, &[("error", error), ("error_description", description)])
}

/// Issues the code for a finished request and returns where to send the
/// browser. The token policy is asked here, where every code is issued (the
/// prompt=none path skips the consent step, which asks it first).
pub async fn code_url(
    state: &AppState,
    authz: &AuthzRequest,
    who: &session::SignedIn,
    client: &Client,
    user: &User,
) -> Result<String, PageError> {
    if let Err(refusal) = super::policy::grant_scope(client, Some(&authz.scope), super::policy::Holder::User(user)) {
        return Ok(error_url(state, authz, "invalid_scope", &refusal.to_string()));
    }
    let code = crypto::random_token::<32>();
    state
        .store
        .insert_auth_code(
            &code_digest(state, &code),
            &AuthCode {
                client_id: authz.client_id.clone(),
                user_id: who.sub.clone(),
                redirect_uri: authz.redirect_uri.clone(),
                scope: authz.scope.clone(),
                nonce: authz.nonce.clone(),
                code_challenge: authz.code_challenge.clone(),
                auth_time: who.auth_time,
                amr: who.amr.join(" "),
                expires_at: now() + CODE_TTL,
                resources: authz.resources.join(" "),
            },
        )
        .await?;
    Ok(response_url(state, authz, &[("code", &code)]))
}

pub fn code_digest(state: &AppState, code: &str) -> String {
    state.digester.digest("authorization_code", code)
}

/// Characters of a PKCE value (RFC 7636 §4.1).
fn pkce_chars(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// `GET` with the request in the query, or `POST` with it in a form body
/// (OIDC Core §3.1.2.1).
pub async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let pairs: Result<Vec<(String, String)>, _> = match req.method() == actix_web::http::Method::POST {
        true => serde_urlencoded::from_bytes(&body),
        false => serde_urlencoded::from_str(req.query_string()),
    };
    let pairs = pairs.map_err(|_| bad_request(t.get("authorize.bad_title"), t.get("authorize.malformed")))?;
    let params = Params::from_pairs(pairs).map_err(|e| bad_request(t.get("authorize.bad_title"), e.description()))?;

    // Until client and redirect URI are known good, errors are shown here, never redirected.
    let client_id = params
        .get("client_id")
        .ok_or_else(|| bad_request(t.get("authorize.bad_title"), t.get("authorize.no_client")))?;
    let client = state
        .store
        .client(client_id)
        .await?
        .ok_or_else(|| bad_request(t.get("authorize.bad_title"), t.get("authorize.unknown_client")))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| bad_request(t.get("authorize.bad_title"), t.get("authorize.no_redirect")))?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(bad_request(
            t.get("authorize.bad_title"),
            t.with("authorize.bad_redirect", &client.name),
        ));
    }

    let mut authz = AuthzRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope: String::new(),
        state: params.get("state").map(str::to_string),
        nonce: params.get("nonce").map(str::to_string),
        code_challenge: None,
        prompt_consent: false,
        login_hint: params.get("login_hint").map(|h| h.chars().take(254).collect()),
        ui_locales: params.get("ui_locales").map(|l| l.chars().take(64).collect()),
        login_required: false,
        consented: false,
        id: crypto::random_token::<16>(),
        resources: vec![],
    };
    let checked = check(&params, &client, &mut authz);
    let redirect_err = |e: &str, d: &str| Ok(page::found(&error_url(&state, &authz, e, d)));
    let prompt = match checked {
        Ok(p) => p,
        Err((e, d)) => return redirect_err(e, &d),
    };
    let max_age: Option<i64> = match params.get("max_age").map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(n),
        Some(_) => return redirect_err("invalid_request", "max_age must be a non-negative integer"),
    };

    let signed_in = flow::current_user(&state, &session).await?;
    let stale = match (&signed_in, max_age) {
        (Some((who, _)), Some(max)) => now() - who.auth_time > max,
        _ => false,
    };
    let needs_login = signed_in.is_none() || prompt.login || stale;
    if prompt.none {
        let Some((who, user)) = signed_in.filter(|_| !needs_login) else {
            return redirect_err("login_required", "the user is not signed in (prompt=none)");
        };
        if !flow::consent_covers(&state, &client, &user.id, &authz).await? {
            return redirect_err("consent_required", "the user has not allowed this app (prompt=none)");
        }
        return Ok(page::found(&code_url(&state, &authz, &who, &client, &user).await?));
    }
    authz.login_required = prompt.login || stale;
    session::set(&session, "authz", &authz);
    if needs_login {
        return Ok(page::found("/login"));
    }
    let (who, user) = signed_in.expect("checked above");
    Ok(page::found(&flow::next_step(&state, &session, &who, &user).await?))
}

#[derive(Default)]
struct Prompt {
    none: bool,
    login: bool,
}

/// The checks whose failure goes back to the client (RFC 6749 §4.1.2.1).
fn check(params: &Params, client: &Client, authz: &mut AuthzRequest) -> Result<Prompt, (&'static str, String)> {
    let invalid = |d: &str| ("invalid_request", d.to_string());
    if params.get("request").is_some() {
        return Err(("request_not_supported", "request objects are not supported".into()));
    }
    if params.get("request_uri").is_some() {
        return Err(("request_uri_not_supported", "request_uri is not supported".into()));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(invalid("response_type is required (code)")),
        Some(_) => {
            return Err((
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            ))
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(invalid("only response_mode=query is supported"));
    }
    if !client.allows_grant("authorization_code") {
        return Err((
            "unauthorized_client",
            "this client is not registered for the authorization_code grant".into(),
        ));
    }
    let scope_text = params
        .get("scope")
        .ok_or_else(|| ("invalid_scope", "scope is required".to_string()))?;
    super::policy::precheck(client, Some(scope_text)).map_err(|e| ("invalid_scope", e.to_string()))?;
    let scope = Scope::parse(scope_text).map_err(|e| ("invalid_scope", e.0))?;
    authz.scope = scope.to_string();
    authz.resources =
        super::policy::audience(client, &params.all("resource")).map_err(|e| ("invalid_target", e.to_string()))?;
    if authz.state.as_ref().is_some_and(|s| s.len() > 2048) || authz.nonce.as_ref().is_some_and(|n| n.len() > 1024) {
        return Err(invalid("state or nonce is too long"));
    }

    match (params.get("code_challenge"), params.get("code_challenge_method")) {
        (Some(c), Some("S256")) if c.len() == 43 && pkce_chars(c) => authz.code_challenge = Some(c.to_string()),
        (Some(_), Some("S256")) => return Err(invalid("code_challenge must be the 43-character base64url S256 hash")),
        (Some(_), None | Some("plain")) => {
            return Err(invalid("code_challenge_method must be S256; plain is not allowed"));
        }
        (Some(_), Some(_)) => return Err(invalid("code_challenge_method must be S256")),
        (None, Some(_)) => return Err(invalid("code_challenge_method without code_challenge")),
        (None, None) if client.public => {
            return Err(invalid("PKCE (code_challenge, S256) is required for public clients"))
        }
        (None, None) => {}
    }

    let mut prompt = Prompt::default();
    for p in params.get("prompt").unwrap_or("").split(' ').filter(|p| !p.is_empty()) {
        match p {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => authz.prompt_consent = true,
            "select_account" => {}
            other => return Err(invalid(&format!("unknown prompt value `{other}`"))),
        }
    }
    if prompt.none && (prompt.login || authz.prompt_consent) {
        return Err(invalid("prompt=none cannot be combined with other values"));
    }
    Ok(prompt)
}
