//! `GET, POST /oauth2/logout` (OpenID Connect RP-Initiated Logout 1.0): ends
//! the browser's Sesame session and sends it back to a registered
//! `post_logout_redirect_uri` with `state`. Without an `id_token_hint` for
//! the signed-in user, the user confirms first (so a link cannot sign
//! anyone out).

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;

use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;
use crate::web::account::sign_out;
use crate::web::i18n::T;
use crate::web::page::{self, bad_request, check_csrf, csrf_token, Flash, MessagePage, PageError};
use crate::web::session;

#[derive(Template)]
#[template(path = "pages/logout.html")]
struct ConfirmPage {
    t: T,
    csrf: String,
    flash: Option<Flash>,
    app: Option<String>,
    post_logout_redirect_uri: String,
    state: String,
    client_id: String,
}

pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    body: Result<Params, ApiError>,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let params = if req.method() == actix_web::http::Method::POST {
        body?
    } else {
        let pairs = crate::params::form_pairs(req.query_string().as_bytes())
            .map_err(|_| bad_request(t.get("logout.bad_title"), t.get("authorize.malformed")))?;
        Params::from_pairs(pairs)?
    };
    let bad = |key: &str| bad_request(t.get("logout.bad_title"), t.get(key));

    // The hint names the user and the client; expired hints are fine (OIDC RP-Initiated Logout §2).
    let hint = match params.get("id_token_hint") {
        Some(token) => {
            let v = state.keys.ring().verify(token).ok_or_else(|| bad("logout.bad_hint"))?;
            let is_id_token = v.typ.as_deref() == Some("JWT");
            if !is_id_token || v.claims.get("iss").and_then(Value::as_str) != Some(state.issuer()) {
                return Err(bad("logout.bad_hint"));
            }
            Some(v.claims.clone())
        }
        None => None,
    };
    let hint_client = hint.as_ref().and_then(|c| match c.get("aud") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_string),
        _ => None,
    });
    let client_id = match (params.get("client_id"), hint_client) {
        (Some(a), Some(b)) if a != b => return Err(bad("logout.client_mismatch")),
        (Some(a), _) => Some(a.to_string()),
        (None, b) => b,
    };
    let client = match &client_id {
        Some(id) => Some(
            state
                .store
                .client(id)
                .await?
                .ok_or_else(|| bad("authorize.unknown_client"))?,
        ),
        None => None,
    };
    let target = match params.get("post_logout_redirect_uri") {
        Some(uri) => {
            let client = client.as_ref().ok_or_else(|| bad("logout.needs_client"))?;
            if !client.post_logout_redirect_uris.iter().any(|u| u == uri) {
                return Err(bad("logout.bad_redirect"));
            }
            let mut url = uri.to_string();
            if let Some(s) = params.get("state") {
                let sep = if url.contains('?') { '&' } else { '?' };
                url = format!(
                    "{url}{sep}{}",
                    serde_urlencoded::to_string([("state", s)]).unwrap_or_default()
                );
            }
            Some(url)
        }
        None => None,
    };

    let who = session::signed_in(&session);
    let confirmed = params.get("confirm").is_some();
    if confirmed {
        check_csrf(&session, params.get("csrf"))?;
    }
    let hint_sub = hint.as_ref().and_then(|c| c.get("sub")).and_then(Value::as_str);
    let matches_hint = who.as_ref().is_some_and(|w| Some(w.sub.as_str()) == hint_sub);
    if who.is_some() && !confirmed && !matches_hint {
        let mut res = page::ok(&ConfirmPage {
            t,
            csrf: csrf_token(&session),
            flash: None,
            app: client.map(|c| c.name),
            post_logout_redirect_uri: params.get("post_logout_redirect_uri").unwrap_or("").into(),
            state: params.get("state").unwrap_or("").into(),
            client_id: client_id.unwrap_or_default(),
        });
        if let Some(url) = &target {
            page::allow_form_target(res.headers_mut(), url);
        }
        return Ok(res);
    }
    if who.is_some() {
        sign_out(&state, &session);
    }
    match target {
        Some(url) if confirmed => Ok(page::see_other(&url)),
        Some(url) => Ok(page::found(&url)),
        None => Ok(page::ok(
            &MessagePage::new(t.get("logout.done_title"), t.get("logout.done_text"))
                .link("/login", t.get("logout.sign_in_again")),
        )),
    }
}
