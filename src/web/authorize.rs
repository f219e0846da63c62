//! `GET, POST /oauth2/authorize`: the browser's side of the authorization
//! endpoint. `oauth::authorize` checks the request; here it is kept in the
//! session while the user signs in and consents, and its response is sent
//! back to the app, by redirect or (`response_mode=form_post`) by a page
//! that posts it.

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::flow;
use super::i18n::T;
use super::page::{self, bad_request, PageError};
use super::session;
use crate::oauth::authorize::{self, AuthzResponse, Invalid, Problem, ResponseMode};
use crate::params::Params;
use crate::state::AppState;
use crate::store::now;

/// `GET` with the request in the query, or `POST` with it in a form body
/// (OIDC Core §3.1.2.1).
pub async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let shown = |text: &str| bad_request(t.get("authorize.bad_title"), text);
    let pairs = match req.method() == actix_web::http::Method::POST {
        true => crate::params::form_pairs(&body),
        false => crate::params::form_pairs(req.query_string().as_bytes()),
    };
    let pairs = pairs.map_err(|_| shown(t.get("authorize.malformed")))?;
    let params = Params::from_pairs(pairs).map_err(|e| shown(&e.description()))?;

    let parsed = match authorize::parse(&state, &params).await {
        Ok(p) => p,
        Err(Invalid::Shown(problem)) => {
            return Err(match problem {
                Problem::NoClient => shown(t.get("authorize.no_client")),
                Problem::UnknownClient => shown(t.get("authorize.unknown_client")),
                Problem::NoRedirect => shown(t.get("authorize.no_redirect")),
                Problem::BadRedirect(app) => shown(&t.with("authorize.bad_redirect", &app)),
            })
        }
        Err(Invalid::Redirect(response)) => return Ok(answer(&req, &response, Via::Get)),
        Err(Invalid::Store(cause)) => return Err(PageError::Internal(cause)),
    };
    let authorize::Parsed {
        client,
        mut authz,
        prompt,
        max_age,
        hint_sub,
    } = parsed;
    let back = |e: &str, d: &str| Ok(answer(&req, &authorize::error(&state, &authz, e, d), Via::Get));

    let signed_in = flow::current_user(&state, &session).await?;
    let stale = match (&signed_in, max_age) {
        (Some((who, _)), Some(max)) => now() - who.auth_time > max,
        _ => false,
    };
    // A hint naming someone else: that user has to sign in (OIDC Core §3.1.2.1).
    let other_user = match (&signed_in, &hint_sub) {
        (Some((who, _)), Some(hinted)) => &who.sub != hinted,
        _ => false,
    };
    let needs_login = signed_in.is_none() || prompt.login || stale || other_user;
    if prompt.none {
        let Some((who, user)) = signed_in.filter(|_| !needs_login) else {
            return back("login_required", "the user is not signed in (prompt=none)");
        };
        if !flow::consent_covers(&state, &client, &user.id, &authz).await? {
            return back("consent_required", "the user has not allowed this app (prompt=none)");
        }
        let next = flow::Next::App(Box::new(flow::Finish {
            authz,
            client,
            who,
            user,
            session_id: session::get(&session, "sid"),
        }));
        return next.respond(&state, &req, &session, Via::Get).await;
    }
    authz.login_required = prompt.login || stale || other_user;
    session::set(&session, "authz", &authz);
    if needs_login {
        return Ok(page::found("/login"));
    }
    let (who, user) = signed_in.expect("checked above");
    flow::next_step(&state, &session, &who, &user)
        .await?
        .respond(&state, &req, &session, Via::Get)
        .await
}

/// How the browser arrived: a redirect answers a GET with 302 and a POST
/// with 303 (SPEC §5).
#[derive(Clone, Copy)]
pub enum Via {
    Get,
    Post,
}

#[derive(Template)]
#[template(path = "pages/form_post.html")]
struct FormPostPage {
    t: T,
    flash: Option<page::Flash>,
    action: String,
    fields: Vec<(String, String)>,
}

/// Sends an authorization response to the app: a redirect with the
/// parameters in the query, or a page whose form posts them to the redirect
/// URI (OAuth 2.0 Form Post Response Mode; the page's script submits it).
pub fn answer(req: &HttpRequest, response: &AuthzResponse, via: Via) -> HttpResponse {
    match (response.mode, via) {
        (ResponseMode::Query, Via::Get) => page::found(&response.url()),
        (ResponseMode::Query, Via::Post) => page::see_other(&response.url()),
        (ResponseMode::FormPost, _) => {
            let mut res = page::ok(&FormPostPage {
                t: page::texts(req, None),
                flash: None,
                action: response.redirect_uri.clone(),
                fields: response.params.clone(),
            });
            page::allow_form_target(res.headers_mut(), &response.redirect_uri);
            res.headers_mut().insert(
                actix_web::http::header::CACHE_CONTROL,
                actix_web::http::header::HeaderValue::from_static("no-store"),
            );
            res
        }
    }
}
