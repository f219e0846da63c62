//! `/account`: the signed-in user's own page: profile, connected apps (with
//! revoke), browser sessions (with end), sign out, sign out everywhere.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::flow;
use super::i18n::T;
use super::page::{self, csrf_token, take_flash, CurrentUser, Flash, Form, PageError};
use super::reauth;
use super::session::{self, SessionInfo};
use crate::accounts::{AccountError, Accounts, Actor, Invalid, PasswordProof};
use crate::otp::{self, Origin};
use crate::params::client_ip;
use crate::state::AppState;
use crate::store::audit::Event;
use crate::store::users::User;

pub struct App {
    pub client_id: String,
    pub name: String,
    pub scope: String,
    pub granted_at: i64,
}

#[derive(Template)]
#[template(path = "pages/account.html")]
struct AccountPage {
    t: T,
    csrf: String,
    flash: Option<Flash>,
    user: User,
    apps: Vec<App>,
    sessions: Vec<SessionInfo>,
    error: Option<String>,
    bot: Option<page::BotWidget>,
}

/// The apps a user allowed, with their names.
pub async fn connected_apps(state: &AppState, user_id: &str) -> Result<Vec<App>, PageError> {
    let mut apps = vec![];
    for c in state.store.consents_of(user_id).await? {
        let name = state
            .store
            .client(&c.client_id)
            .await?
            .map(|c| c.name)
            .unwrap_or_else(|| c.client_id.clone());
        apps.push(App {
            client_id: c.client_id,
            name,
            scope: c.scope,
            granted_at: c.granted_at,
        });
    }
    Ok(apps)
}

async fn account_page(
    state: &AppState,
    req: &HttpRequest,
    session: &Session,
    user: User,
    error: Option<String>,
) -> Result<AccountPage, PageError> {
    let apps = connected_apps(state, &user.id).await?;
    let sid = session::get::<String>(session, "sid");
    let sessions = state
        .store
        .sessions_of(&user.id)
        .await?
        .iter()
        .map(|r| session::describe(r, sid.as_deref()))
        .collect();
    Ok(AccountPage {
        t: page::texts(req, None),
        csrf: csrf_token(session),
        flash: take_flash(session),
        user,
        apps,
        sessions,
        error,
        bot: page::bot_widget(state),
    })
}

pub async fn account(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
) -> Result<HttpResponse, PageError> {
    Ok(page::ok(&account_page(&state, &req, &session, user, None).await?))
}

pub async fn profile(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let first = form.get("first_name").unwrap_or("");
    let last = form.get("last_name").unwrap_or("");
    let actor = Actor::User { client_id: None };
    if let Err(e) = Accounts::of(&state).set_names(&user, first, last, actor).await {
        let error = match e {
            AccountError::Invalid(Invalid::NameTooLong) => t.get("signup.too_long").to_string(),
            e => page::account_error_text(t, e)?,
        };
        let page = account_page(&state, &req, &session, user, Some(error)).await?;
        return Ok(page::render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    page::flash(&session, "success", t.get("account.saved"));
    Ok(page::see_other("/account"))
}

pub async fn revoke_app(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let Some(client_id) = form.get("client_id") else {
        return Err(page::bad_request(
            t.get("error.bad_request_title"),
            "client_id is missing",
        ));
    };
    state.store.revoke_consent(&user.id, client_id).await?;
    Accounts::of(&state)
        .tell_clients_families_end(&user.id, Some(client_id))
        .await?;
    state
        .revocations
        .revoke_user_families(
            &state.store,
            &user.id,
            Some(client_id),
            state.settings.tokens.access_ttl,
        )
        .await?;
    state.audit.record(Event {
        event: "consent_revoked",
        client_id: Some(client_id),
        user_id: Some(&user.id),
        ..Default::default()
    });
    page::flash(&session, "success", t.get("account.app_revoked"));
    Ok(page::see_other("/account"))
}

pub async fn end_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let id = form.get("id").unwrap_or("");
    let sid = state
        .store
        .sessions_of(&user.id)
        .await?
        .iter()
        .find(|row| row.key_digest == id)
        .and_then(session::stored_sid);
    if state.store.end_user_session(&user.id, id).await? {
        if let Some(sid) = sid {
            state
                .backchannel
                .notify(crate::oidc::backchannel::Ended::Session { sid });
        }
        page::flash(&session, "success", t.get("account.session_ended"));
    }
    Ok(page::see_other("/account"))
}

/// Ends this browser's session (the row is deleted: every node sees it).
pub fn sign_out(state: &AppState, session: &Session) {
    if let Some(sid) = session::get::<String>(session, "sid") {
        state
            .backchannel
            .notify(crate::oidc::backchannel::Ended::Session { sid });
    }
    if let Some(who) = session::signed_in(session) {
        state.audit.record(Event {
            event: "signed_out",
            user_id: Some(&who.sub),
            ..Default::default()
        });
    }
    session.purge();
}

pub async fn sign_out_here(
    state: web::Data<AppState>,
    session: Session,
    _checked: Form,
) -> Result<HttpResponse, PageError> {
    sign_out(&state, &session);
    Ok(page::see_other("/login?signed_out=1"))
}

pub async fn sign_out_everywhere(
    state: web::Data<AppState>,
    session: Session,
    CurrentUser(user): CurrentUser,
    _checked: Form,
) -> Result<HttpResponse, PageError> {
    Accounts::of(&state)
        .end_sessions(&user, Actor::User { client_id: None })
        .await?;
    session.purge();
    Ok(page::see_other("/login?signed_out=1"))
}

#[derive(Template)]
#[template(path = "pages/account_verify.html")]
struct ChangeVerifyPage {
    t: T,
    csrf: String,
    flash: Option<Flash>,
    address: String,
    code_length: usize,
    error: Option<String>,
}

/// `POST /account/identifier`: add or change the email or phone; a code goes
/// to the new one. Nothing changes until that code comes back.
pub async fn change_identifier(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let text = form.get("identifier").unwrap_or("").trim();
    let invalid = |key: &str| -> Result<HttpResponse, PageError> {
        page::flash(&session, "error", t.get(key));
        Ok(page::see_other("/account"))
    };
    let Some(ident) = flow::parse_identifier(text, &state.settings.phones()) else {
        return invalid("login.invalid");
    };
    if crate::accounts::holds(&user, &ident) {
        return invalid("account.same_identifier");
    }
    let (_, by) = reauth::authority(&session)?;
    if let Err(e) = Accounts::of(&state).check_sensitive(&by) {
        return match e {
            AccountError::ReauthRequired => Ok(reauth::ask(&session, t)),
            e => invalid(e.text_key().unwrap_or("account.not_permitted")),
        };
    }
    match flow::send_account_code(&state, &req, &session, &form, &ident, t.lang()).await? {
        Ok(pending) => {
            session::set(&session, "change", &pending);
            Ok(page::see_other("/account/identifier"))
        }
        Err(key) => invalid(key),
    }
}

pub async fn change_identifier_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    _signed_in: CurrentUser,
) -> Result<HttpResponse, PageError> {
    let Some(pending) = session::get::<flow::PendingLogin>(&session, "change") else {
        return Ok(page::found("/account"));
    };
    Ok(page::ok(&ChangeVerifyPage {
        t: page::texts(&req, None),
        csrf: csrf_token(&session),
        flash: take_flash(&session),
        address: pending.address,
        code_length: state.settings.otp.length,
        error: None,
    }))
}

/// `POST /account/identifier/verify`: the code from the new phone or email;
/// the account then uses it, and the old one is told.
pub async fn verify_identifier(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let Some(pending) = session::get::<flow::PendingLogin>(&session, "change") else {
        return Ok(page::see_other("/account"));
    };
    let t = page::texts(&req, None);
    let ident = pending.identifier(&state).ok_or(PageError::Csrf)?;
    let client = flow::account_client();
    let ip = client_ip(&req);
    let browser = flow::browser_id(&session);
    let origin = Origin {
        client: &client,
        ip: ip.as_deref(),
        browser: Some(&browser),
    };
    let code = form.get("code").unwrap_or("");
    let error = match otp::verify_code(&state, &origin, &ident, code).await {
        Ok(()) => None,
        Err(e) => Some(super::login::verify_failure(t, e)?),
    };
    if let Some(error) = error {
        let page = ChangeVerifyPage {
            t,
            csrf: csrf_token(&session),
            flash: None,
            address: pending.address,
            code_length: state.settings.otp.length,
            error: Some(error),
        };
        return Ok(page::render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    session.remove("change");
    let (who, by) = reauth::authority(&session)?;
    match Accounts::of(&state)
        .set_identifier(&user, &ident, &by, ip.as_deref())
        .await
    {
        Ok(_) => {
            // Every session of the account ended; this browser goes on under a new id.
            reauth::keep_signed_in(&req, &session, &who);
            page::flash(
                &session,
                "success",
                t.with("account.identifier_changed", ident.address()),
            );
            Ok(page::see_other("/account"))
        }
        Err(AccountError::ReauthRequired) => Ok(reauth::ask(&session, t)),
        Err(e) => {
            page::flash(&session, "error", page::account_error_text(t, e)?);
            Ok(page::see_other("/account"))
        }
    }
}

/// `GET /account/delete`: the confirmation step.
pub async fn confirm_delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    _signed_in: CurrentUser,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let (_, by) = reauth::authority(&session)?;
    if let Err(AccountError::ReauthRequired) = Accounts::of(&state).check_sensitive(&by) {
        return Ok(reauth::ask(&session, t));
    }
    Ok(page::ok(&super::admin::ConfirmPage {
        t,
        csrf: csrf_token(&session),
        flash: None,
        title: t.get("account.delete_title").into(),
        text: t.get("account.delete_text").into(),
        action: "/account/delete".into(),
        button: t.get("account.delete").into(),
        back: "/account".into(),
    }))
}

/// `POST /account/delete`: the account goes, and its tokens and sessions with
/// it (a sensitive change: a recent sign-in first).
pub async fn delete_account(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
    _checked: Form,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let (_, by) = reauth::authority(&session)?;
    let ip = client_ip(&req);
    match Accounts::of(&state).delete_own(&user, &by, ip.as_deref()).await {
        Ok(()) => {
            session.purge();
            Ok(page::see_other("/login?deleted=1"))
        }
        Err(AccountError::ReauthRequired) => Ok(reauth::ask(&session, t)),
        Err(e) => Err(e.into()),
    }
}

/// `POST /account/password`: a username and password for `/login?method=password`
/// and the `password` grant (optional; codes keep working). A password is a
/// sensitive change: a recent sign-in, and the current password (or a fresh
/// code) to replace one; afterwards every other session is signed out.
pub async fn set_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    CurrentUser(user): CurrentUser,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let username = form
        .get("username")
        .map(str::trim)
        .filter(|u| !u.is_empty() && Some(*u) != user.username.as_deref());
    let password = form.get("password").filter(|p| !p.is_empty());
    let (who, by) = reauth::authority(&session)?;
    let proof = PasswordProof {
        current: form.get("current_password").filter(|p| !p.is_empty()),
        fresh_code: reauth::fresh_code(&state, &who),
    };
    let ip = client_ip(&req);
    let changed = Accounts::of(&state)
        .set_credentials(&user, username, password, proof, &by, ip.as_deref())
        .await;
    match changed {
        Ok(_) => {
            if password.is_some() {
                reauth::keep_signed_in(&req, &session, &who);
            }
            page::flash(&session, "success", t.get("account.password_saved"));
            Ok(page::see_other("/account"))
        }
        Err(AccountError::ReauthRequired) => Ok(reauth::ask(&session, t)),
        Err(e) => {
            page::flash(&session, "error", page::account_error_text(t, e)?);
            Ok(page::see_other("/account"))
        }
    }
}
