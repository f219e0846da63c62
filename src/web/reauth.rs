//! `/account/reauth`: "confirm it's you". A sensitive change (password,
//! email, phone, deleting the account) needs a sign-in at most
//! `account.reauth_after` old (SPEC §9); an older one is sent here for a
//! fresh code to one of the account's verified identifiers. The code renews
//! the sign-in (new session id, `auth_time` now, `amr` of the code), and the
//! browser goes back to where it was.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::flow::{self, PendingLogin};
use super::i18n::T;
use super::page::{self, csrf_token, take_flash, CurrentUser, Flash, Form, PageError};
use super::session::{self, SignedIn};
use crate::accounts::{verified_identifiers, Authority};
use crate::otp::{self, Origin};
use crate::params::client_ip;
use crate::state::AppState;
use crate::store::now;
use crate::store::users::User;

const PENDING: &str = "reauth";

#[derive(Template)]
#[template(path = "pages/account_reauth.html")]
struct ReauthPage {
    t: T,
    csrf: String,
    flash: Option<Flash>,
    address: String,
    sent: bool,
    code_length: usize,
    error: Option<String>,
    bot: Option<page::BotWidget>,
}

/// How this browser signed in, as the account service weighs it.
pub fn authority(session: &Session) -> Result<(SignedIn, Authority<'static>), PageError> {
    let who = session::signed_in(session).ok_or(PageError::SignInFirst)?;
    let by = Authority::Session {
        auth_time: who.auth_time,
    };
    Ok((who, by))
}

/// Whether the last sign-in of this browser was a code, recently: it stands
/// for the current password when replacing one.
pub fn fresh_code(state: &AppState, who: &SignedIn) -> bool {
    let recent = now() - who.auth_time <= state.settings.account.reauth_after.as_secs() as i64;
    recent && who.amr.iter().any(|m| m == "otp")
}

/// Sends the browser to confirm with a code, then back to `/account`.
pub fn ask(session: &Session, t: T) -> HttpResponse {
    session.remove(PENDING);
    page::flash(session, "error", t.get("account.reauth_required"));
    page::see_other("/account/reauth")
}

/// Signs this browser in again under a new session id, as `who`: after a
/// sensitive change ended every session of the user, this one goes on.
pub fn keep_signed_in(req: &HttpRequest, session: &Session, who: &SignedIn) {
    let ip = client_ip(req);
    let ua = req.headers().get("user-agent").and_then(|v| v.to_str().ok());
    // The same user: the session keeps its sid (its apps were told when the change ended their tokens).
    session::sign_in(session, who, ua, ip.as_deref());
}

fn render(state: &AppState, req: &HttpRequest, session: &Session, user: &User, error: Option<String>) -> HttpResponse {
    let pending = session::get::<PendingLogin>(session, PENDING);
    let address = match &pending {
        Some(p) => p.address.clone(),
        None => verified_identifiers(user, &state.settings.phones())
            .first()
            .map(|i| i.address().to_string())
            .unwrap_or_default(),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    page::render(
        status,
        &ReauthPage {
            t: page::texts(req, None),
            csrf: csrf_token(session),
            flash: take_flash(session),
            address,
            sent: pending.is_some(),
            code_length: state.settings.otp.length,
            error,
            bot: page::bot_widget(state),
        },
    )
}

/// `GET /account/reauth`.
pub async fn reauth_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
) -> Result<HttpResponse, PageError> {
    Ok(render(&state, &req, &session, &user, None))
}

/// `POST /account/reauth`: a code to the account's verified email (else phone).
pub async fn send(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let Some(ident) = verified_identifiers(&user, &state.settings.phones()).into_iter().next() else {
        page::flash(&session, "error", t.get("account.reauth_none"));
        return Ok(page::see_other("/account"));
    };
    match flow::send_account_code(&state, &req, &session, &form, &ident, t.lang()).await? {
        Ok(pending) => session::set(&session, PENDING, &pending),
        Err(key) => page::flash(&session, "error", t.get(key)),
    }
    Ok(page::see_other("/account/reauth"))
}

/// `POST /account/reauth/verify`: the code renews the sign-in.
pub async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let Some(pending) = session::get::<PendingLogin>(&session, PENDING) else {
        return Ok(page::see_other("/account/reauth"));
    };
    let ident = pending.identifier(&state).ok_or(PageError::Csrf)?;
    let client = flow::account_client();
    let ip = client_ip(&req);
    let browser = flow::browser_id(&session);
    let origin = Origin {
        client: &client,
        ip: ip.as_deref(),
        browser: Some(&browser),
    };
    if let Err(e) = otp::verify_code(&state, &origin, &ident, form.get("code").unwrap_or("")).await {
        let error = super::login::verify_failure(t, e)?;
        return Ok(render(&state, &req, &session, &user, Some(error)));
    }
    session.remove(PENDING);
    let who = SignedIn {
        sub: user.id.clone(),
        auth_time: now(),
        amr: flow::amr_for(&pending.kind),
    };
    keep_signed_in(&req, &session, &who);
    page::flash(&session, "success", t.get("account.reauth_done"));
    Ok(page::see_other("/account"))
}
