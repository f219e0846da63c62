//! The authorization endpoint's rules (RFC 6749 §4.1, OIDC Core §3.1.2),
//! with no page in them: parse and check a request into an `AuthzRequest`
//! (or say why not, and whether the error may go back to the client), build
//! the authorization response (`iss` per RFC 9207, in the query or for a
//! form post), and issue the code. The pages that sign the user in and ask
//! for consent live in `web::authorize` and `web::flow`.
//!
//! oxide-auth is not used here: its code lifetime is fixed at 10 minutes
//! (SPEC: 60 s), it has no OIDC parameters (`nonce`, `prompt`, `max_age`),
//! it accepts `plain` PKCE by default and keeps codes in memory, which
//! neither gives cross-node single use nor lets a reused code revoke what
//! its first use issued. What it would validate is the short list below.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto;
use crate::domain::{Client, Scope};
use crate::params::Params;
use crate::state::AppState;
use crate::store::auth_codes::AuthCode;
use crate::store::now;
use crate::store::users::User;

/// How long an authorization code lives (SPEC §4).
pub const CODE_TTL: i64 = 60;

/// How the response reaches the client (OAuth 2.0 Multiple Response Types
/// §2.1, OAuth 2.0 Form Post Response Mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseMode {
    /// A redirect with the parameters in the query (the default for `code`).
    #[default]
    Query,
    /// A page that POSTs the parameters to the redirect URI.
    FormPost,
}

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
    #[serde(default)]
    pub response_mode: ResponseMode,
    /// The user a `claims` request names (`sub` with a `value`, OIDC Core
    /// §5.5.1): no other user's tokens may be issued for it.
    #[serde(default)]
    pub required_sub: Option<String>,
}

/// An authorization response: where it goes, how, and what it says.
pub struct AuthzResponse {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    pub params: Vec<(String, String)>,
}

/// Names only: the values include the code.
impl std::fmt::Debug for AuthzResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzResponse")
            .field("redirect_uri", &self.redirect_uri)
            .field("mode", &self.mode)
            .field("params", &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl AuthzResponse {
    /// The redirect URI with the parameters added to its query.
    pub fn url(&self) -> String {
        let query = serde_urlencoded::to_string(&self.params).unwrap_or_default();
        let sep = if self.redirect_uri.contains('?') { '&' } else { '?' };
        format!("{}{sep}{query}", self.redirect_uri)
    }
}

/// The response to `authz` carrying `params`, with `state` and `iss` added.
pub fn respond(state: &AppState, authz: &AuthzRequest, params: &[(&str, &str)]) -> AuthzResponse {
    let mut pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if let Some(s) = &authz.state {
        pairs.push(("state".into(), s.clone()));
    }
    pairs.push(("iss".into(), state.issuer().into()));
    AuthzResponse {
        redirect_uri: authz.redirect_uri.clone(),
        mode: authz.response_mode,
        params: pairs,
    }
}

/// An error response (RFC 6749 §4.1.2.1).
pub fn error(state: &AppState, authz: &AuthzRequest, error: &str, description: &str) -> AuthzResponse {
    respond(state, authz, &[("error", error), ("error_description", description)])
}

/// Who the code is for: the signed-in user, how and when they signed in,
/// and the browser session they did it in.
pub struct CodeHolder<'a> {
    pub sub: &'a str,
    pub auth_time: i64,
    pub amr: &'a [String],
    pub session_id: Option<&'a str>,
}

/// Issues the code for a finished request. The token policy is asked here,
/// where every code is issued (the prompt=none path skips the consent
/// step, which asks it first).
pub async fn issue_code(
    state: &AppState,
    authz: &AuthzRequest,
    holder: &CodeHolder<'_>,
    client: &Client,
    user: &User,
) -> anyhow::Result<AuthzResponse> {
    if let Err(refusal) = super::policy::grant_scope(client, Some(&authz.scope), super::policy::Holder::User(user)) {
        return Ok(error(state, authz, "invalid_scope", &refusal.to_string()));
    }
    let code = crypto::random_token::<32>();
    state
        .store
        .insert_auth_code(
            &code_digest(state, &code),
            &AuthCode {
                client_id: authz.client_id.clone(),
                user_id: holder.sub.to_string(),
                redirect_uri: authz.redirect_uri.clone(),
                scope: authz.scope.clone(),
                nonce: authz.nonce.clone(),
                code_challenge: authz.code_challenge.clone(),
                auth_time: holder.auth_time,
                amr: holder.amr.join(" "),
                expires_at: now() + CODE_TTL,
                resources: authz.resources.join(" "),
                session_id: holder.session_id.map(str::to_string),
            },
        )
        .await?;
    Ok(respond(state, authz, &[("code", &code)]))
}

pub fn code_digest(state: &AppState, code: &str) -> String {
    state.digester.digest("authorization_code", code)
}

/// Why a request cannot go on.
pub enum Invalid {
    /// Client or redirect URI unknown or bad: shown to the user, never
    /// redirected (RFC 6749 §4.1.2.1).
    Shown(Problem),
    /// Everything else goes back to the client.
    Redirect(AuthzResponse),
    Store(anyhow::Error),
}

/// What the error page says when a request cannot be redirected.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    NoClient,
    UnknownClient,
    NoRedirect,
    /// The redirect URI is not one the app (named) registered.
    BadRedirect(String),
}

/// `prompt` (OIDC Core §3.1.2.1).
#[derive(Default, Debug)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
}

/// A request that passed every check.
pub struct Parsed {
    pub client: Client,
    pub authz: AuthzRequest,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    /// The user an `id_token_hint` names (OIDC Core §3.1.2.1).
    pub hint_sub: Option<String>,
}

/// Parses and checks the request in `params` (the query of a GET or the
/// form body of a POST).
pub async fn parse(state: &AppState, params: &Params) -> Result<Parsed, Invalid> {
    // Until client and redirect URI are known good, errors are shown, never redirected.
    let client_id = params.get("client_id").ok_or(Invalid::Shown(Problem::NoClient))?;
    let client = state
        .store
        .client(client_id)
        .await
        .map_err(Invalid::Store)?
        .ok_or(Invalid::Shown(Problem::UnknownClient))?;
    let redirect_uri = params.get("redirect_uri").ok_or(Invalid::Shown(Problem::NoRedirect))?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(Invalid::Shown(Problem::BadRedirect(client.name.clone())));
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
        // Known before anything else is checked, so that errors too go back the way asked.
        response_mode: match params.get("response_mode") {
            Some("form_post") => ResponseMode::FormPost,
            _ => ResponseMode::Query,
        },
        required_sub: None,
    };
    let back = |authz: &AuthzRequest, (e, d): (&str, String)| Invalid::Redirect(error(state, authz, e, &d));
    let prompt = check(params, &client, &mut authz).map_err(|e| back(&authz, e))?;
    let max_age = match params.get("max_age").map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(n),
        Some(_) => {
            let e = ("invalid_request", "max_age must be a non-negative integer".to_string());
            return Err(back(&authz, e));
        }
    };
    // A hint that does not verify (signed by a key retired since, or not
    // an ID token) is no hint: it is ignored, as a hint may be.
    let hinted = params.get("id_token_hint").and_then(|hint| hinted_user(state, hint));
    Ok(Parsed {
        hint_sub: authz.required_sub.clone().or(hinted),
        client,
        authz,
        prompt,
        max_age,
    })
}

/// The `sub` of an ID token this issuer signed (expired ones too: OIDC Core
/// §3.1.2.1 allows them as hints).
pub fn hinted_user(state: &AppState, token: &str) -> Option<String> {
    let v = state.keys.ring().verify(token)?;
    if v.typ.as_deref() != Some("JWT") || v.claims.get("iss").and_then(Value::as_str) != Some(state.issuer()) {
        return None;
    }
    v.claims.get("sub").and_then(Value::as_str).map(str::to_string)
}

/// Characters of a PKCE value (RFC 7636 §4.1).
fn pkce_chars(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
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
    match params.get("response_mode") {
        None | Some("query" | "form_post") => {}
        Some(_) => return Err(invalid("response_mode must be query or form_post")),
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
    let mut scope = Scope::parse(scope_text).map_err(|e| ("invalid_scope", e.0))?;
    if !scope.contains("openid") && params.get("claims").is_some() {
        return Err(invalid("the claims parameter needs the openid scope"));
    }
    if let Some(claims) = params.get("claims") {
        let (implied, sub) = claims_scopes(claims).map_err(|d| invalid(&d))?;
        authz.required_sub = sub;
        // A claim asked for by name is released with its scope, when the client may have that scope.
        let allowed = implied.into_iter().filter(|s| client.scopes.contains(s));
        scope = scope.union(&Scope::from_tokens(allowed));
    }
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

/// The scopes that hold the claims a `claims` parameter (OIDC Core §5.5)
/// asks for, in its `userinfo` and `id_token` members, and the `sub` it
/// requires, if any (§5.5.1). Claims Sesame does not have are ignored, as
/// §5.5 says; a malformed parameter is an error.
pub fn claims_scopes(text: &str) -> Result<(Vec<&'static str>, Option<String>), String> {
    if text.len() > 4096 {
        return Err("the claims parameter is too long".into());
    }
    let value = crate::params::strict_json(text.as_bytes())
        .map_err(|_| "the claims parameter must be a JSON object, each name once".to_string())?;
    let Value::Object(members) = value else {
        return Err("the claims parameter must be a JSON object".into());
    };
    let mut scopes = Vec::new();
    let mut sub: Option<String> = None;
    for (member, asked) in &members {
        if member != "userinfo" && member != "id_token" {
            continue;
        }
        let Value::Object(asked) = asked else {
            return Err(format!("claims.{member} must be a JSON object"));
        };
        for (claim, how) in asked {
            if !(how.is_null() || how.is_object()) {
                return Err(format!("claims.{member}.{claim} must be null or an object"));
            }
            if claim == "sub" {
                if let Some(value) = how.get("value") {
                    let value = value.as_str().ok_or("claims sub value must be a string")?;
                    if sub.as_deref().is_some_and(|s| s != value) {
                        return Err("claims asks for two different sub values".into());
                    }
                    sub = Some(value.to_string());
                }
            }
            if let Some(scope) = crate::oidc::claims::scope_of(claim) {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
        }
    }
    Ok((scopes, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_name_their_scopes() {
        let scopes = claims_scopes(
            r#"{"userinfo":{"name":{"essential":true},"email":null},"id_token":{"phone_number":null,"x":null}}"#,
        )
        .unwrap();
        assert_eq!(scopes, (vec!["profile", "email", "phone"], None));
        assert_eq!(
            claims_scopes(r#"{"id_token":{"sub":{"value":"a"}}}"#).unwrap(),
            (vec![], Some("a".to_string()))
        );
    }

    #[test]
    fn malformed_claims_are_refused() {
        for bad in [
            "[]",
            "nope",
            r#"{"userinfo":[]}"#,
            r#"{"userinfo":{"name":true}}"#,
            r#"{"id_token":{"sub":{"value":1}}}"#,
            r#"{"id_token":{"sub":{"value":"a"}},"userinfo":{"sub":{"value":"b"}}}"#,
        ] {
            assert!(claims_scopes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_query_response_keeps_the_redirect_uris_own_query() {
        let r = AuthzResponse {
            redirect_uri: "https://app.example/cb?x=1".into(),
            mode: ResponseMode::Query,
            params: vec![("code".into(), "a b".into())],
        };
        assert_eq!(r.url(), "https://app.example/cb?x=1&code=a+b");
    }
}
