//! `/consent`: the user allows (or refuses) what an app asks for. The
//! answer is remembered per client and scope; `skip_consent` clients never
//! ask; the account page revokes it.

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::authorize::{answer, Via};
use super::flow;
use super::i18n::T;
use super::page::{self, csrf_token, take_flash, Flash, Form, PageError};
use crate::domain::Scope;
use crate::oauth::authorize;
use crate::state::AppState;
use crate::store::audit::Event;

#[derive(Template)]
#[template(path = "pages/consent.html")]
struct ConsentPage {
    t: T,
    csrf: String,
    app: String,
    flash: Option<Flash>,
    /// Text keys of what the app asks for.
    asks: Vec<String>,
    user: String,
    /// The request this page shows (`AuthzRequest::id`).
    request: String,
}

/// The consent page's line for each scope (scopes without one, like
/// `openid`, are shown as signing in).
fn asks(scope: &Scope) -> Vec<String> {
    let mut out = vec!["consent.scope.openid".to_string()];
    for s in ["profile", "email", "phone", "address", "offline_access"] {
        if scope.contains(s) {
            out.push(format!("consent.scope.{s}"));
        }
    }
    for s in scope.iter() {
        if !["openid", "profile", "email", "phone", "address", "offline_access"].contains(&s) {
            out.push(s.to_string());
        }
    }
    out
}

pub async fn consent_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
) -> Result<HttpResponse, PageError> {
    let (Some(authz), Some((_, user))) = (flow::authz(&session), flow::current_user(&state, &session).await?) else {
        return Ok(page::found("/login"));
    };
    let client = flow::client_for(&state, Some(&authz.client_id)).await?;
    let t = page::texts(&req, authz.ui_locales.as_deref());
    Ok(page::ok(&ConsentPage {
        t,
        csrf: csrf_token(&session),
        app: client.name,
        flash: take_flash(&session),
        asks: asks(&Scope::parse(&authz.scope).unwrap_or_default()),
        user: display_name(&user),
        request: authz.id.clone(),
    }))
}

pub fn display_name(u: &crate::store::users::User) -> String {
    u.email
        .clone()
        .or_else(|| u.phone.clone())
        .or_else(|| u.username.clone())
        .unwrap_or_else(|| u.id.clone())
}

pub async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let (Some(mut authz), Some((who, user))) = (flow::authz(&session), flow::current_user(&state, &session).await?)
    else {
        return Ok(page::see_other("/login"));
    };
    // The answer is for the request the page showed, not for one that took
    // the session over since (another tab, another app's redirect).
    if form.get("request") != Some(authz.id.as_str()) || authz.id.is_empty() {
        let t = page::texts(&req, authz.ui_locales.as_deref());
        return Err(page::bad_request(
            t.get("consent.stale_title"),
            t.get("consent.stale_text"),
        ));
    }
    if form.get("decision") != Some("allow") {
        session.remove("authz");
        state.audit.record(Event {
            event: "consent_denied",
            client_id: Some(&authz.client_id),
            user_id: Some(&user.id),
            ..Default::default()
        });
        let denied = authorize::error(&state, &authz, "access_denied", "the user did not allow the request");
        return Ok(answer(&req, &denied, Via::Post));
    }
    // Remember the union of what was allowed before and now.
    let mut granted = Scope::parse(&authz.scope).unwrap_or_default();
    if let Some(before) = state.store.consent(&user.id, &authz.client_id).await? {
        granted = granted.union(&Scope::parse(&before).unwrap_or_default());
    }
    state
        .store
        .grant_consent(&user.id, &authz.client_id, &granted.to_string())
        .await?;
    state.audit.record(Event {
        event: "consent_granted",
        client_id: Some(&authz.client_id),
        user_id: Some(&user.id),
        detail: Some(&authz.scope),
        ..Default::default()
    });
    authz.consented = true;
    super::session::set(&session, "authz", &authz);
    flow::next_step(&state, &session, &who, &user)
        .await?
        .respond(&state, &req, &session, Via::Post)
        .await
}
