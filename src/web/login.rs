//! `/login`, `/login/verify`, `/login/magic`, `/signup`: passwordless sign-in
//! on Sesame's own pages, with the same code policy, limits, delivery and
//! audit as the OTP API (`crate::otp`).

use actix_session::Session;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::json;

use super::authorize::Via;
use super::flow::{self, PendingLogin, PendingSignup, SIGNUP_WINDOW};
use super::i18n::T;
use super::page::{self, csrf_token, take_flash, Flash, Form, MessagePage, PageError};
use crate::accounts::{passwords, AccountError, Accounts, Actor, Profile};
use crate::domain::{Client, Identifier};
use crate::otp::{self, Origin, OtpError};
use crate::params::client_ip;
use crate::state::AppState;
use crate::store::now;
use crate::web::session;

fn ua(req: &HttpRequest) -> Option<&str> {
    req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}

fn texts(req: &HttpRequest, session: &Session) -> T {
    page::texts(req, flow::authz(session).and_then(|a| a.ui_locales).as_deref())
}

/// The name of the app the user is signing in to.
async fn app_name(state: &AppState, session: &Session) -> Result<String, PageError> {
    let authz = flow::authz(session);
    Ok(flow::client_for(state, authz.as_ref().map(|a| a.client_id.as_str()))
        .await?
        .name)
}

#[derive(Template)]
#[template(path = "pages/login.html")]
struct LoginPage {
    t: T,
    csrf: String,
    app: String,
    flash: Option<Flash>,
    value: String,
    error: Option<String>,
    password_mode: bool,
    bot: Option<page::BotWidget>,
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    method: Option<String>,
    signed_out: Option<String>,
    deleted: Option<String>,
}

pub async fn login_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    q: web::Query<LoginQuery>,
) -> Result<HttpResponse, PageError> {
    let t = texts(&req, &session);
    let authz = flow::authz(&session);
    if let Some((who, user)) = flow::current_user(&state, &session).await? {
        if !authz.as_ref().is_some_and(|a| a.login_required) {
            return flow::next_step(&state, &session, &who, &user)
                .await?
                .respond(&state, &req, &session, Via::Get)
                .await;
        }
    }
    let mut flash = take_flash(&session);
    let notice = match (&q.signed_out, &q.deleted) {
        (_, Some(_)) => Some("account.deleted"),
        (Some(_), None) => Some("login.signed_out"),
        _ => None,
    };
    if let (Some(key), None) = (notice, &flash) {
        flash = Some(Flash {
            kind: "success".into(),
            text: t.get(key).into(),
        });
    }
    Ok(page::ok(&LoginPage {
        t,
        csrf: csrf_token(&session),
        app: app_name(&state, &session).await?,
        flash,
        value: authz.and_then(|a| a.login_hint).unwrap_or_default(),
        error: None,
        password_mode: q.method.as_deref() == Some("password"),
        bot: page::bot_widget(&state),
    }))
}

pub async fn send_code(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = texts(&req, &session);
    let value = form.get("identifier").unwrap_or("").trim().to_string();
    let app = app_name(&state, &session).await?;
    let again = |error: String| -> Result<HttpResponse, PageError> {
        Ok(page::render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &LoginPage {
                t,
                csrf: csrf_token(&session),
                app: app.clone(),
                flash: None,
                value: value.clone(),
                error: Some(error),
                password_mode: false,
                bot: page::bot_widget(&state),
            },
        ))
    };
    let ident = match flow::parse_identifier(&value, &state.settings.phones()) {
        Some(i) => i,
        None if value.is_empty() => return again(t.get("login.empty").into()),
        None => return again(t.get("login.invalid").into()),
    };
    let authz = flow::authz(&session);
    let client = flow::client_for(&state, authz.as_ref().map(|a| a.client_id.as_str())).await?;
    match send(&state, &req, &session, &form, &client, &ident, t).await {
        Ok(pending) => {
            pending.save(&session);
            Ok(page::see_other("/login/verify"))
        }
        Err(e) => again(send_failure(t, e)?),
    }
}

/// Sends a sign-in code (with a magic link for email) under the OTP policy;
/// returns what the code page needs to follow it.
async fn send(
    state: &AppState,
    req: &HttpRequest,
    session: &Session,
    form: &Form,
    client: &Client,
    ident: &Identifier,
    t: T,
) -> Result<PendingLogin, OtpError> {
    let bot_token = flow::bot_token(state, form);
    let ip = client_ip(req);
    let browser = flow::browser_id(session);
    let origin = Origin {
        client,
        ip: ip.as_deref(),
        browser: Some(&browser),
    };
    let sent = otp::send_sign_in_code(state, &origin, ident, t.lang(), bot_token).await?;
    Ok(PendingLogin::sent(ident, &client.id, sent))
}

/// What to tell the user when a code could not be sent; other errors pass on.
fn send_failure(t: T, e: OtpError) -> Result<String, PageError> {
    match e {
        OtpError::Locked { retry_after } | OtpError::TooMany { retry_after, .. } => {
            Ok(t.with("login.too_many", wait_text(retry_after)))
        }
        e => match flow::send_refusal_key(&e) {
            Some(key) => Ok(t.get(key).into()),
            None => Err(e.into()),
        },
    }
}

/// What to tell the user when a code was refused; other errors pass on.
pub(super) fn verify_failure(t: T, e: OtpError) -> Result<String, PageError> {
    match e {
        OtpError::WrongCode | OtpError::WrongMagicLink => Ok(t.get("verify.wrong").into()),
        OtpError::Locked { retry_after } | OtpError::TooMany { retry_after, .. } => {
            Ok(t.with("verify.locked", wait_text(retry_after)))
        }
        e => Err(e.into()),
    }
}

/// "45 seconds", "12 minutes".
fn wait_text(secs: u64) -> String {
    if secs < 90 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

#[derive(Template)]
#[template(path = "pages/verify.html")]
struct VerifyPage {
    t: T,
    csrf: String,
    app: String,
    flash: Option<Flash>,
    address: String,
    by_email: bool,
    wait: i64,
    code_length: usize,
    error: Option<String>,
    match_number: Option<i64>,
    bot: Option<page::BotWidget>,
}

async fn verify_page_for(
    state: &AppState,
    req: &HttpRequest,
    session: &Session,
    pending: &PendingLogin,
    error: Option<String>,
) -> Result<VerifyPage, PageError> {
    Ok(VerifyPage {
        t: texts(req, session),
        csrf: csrf_token(session),
        app: app_name(state, session).await?,
        flash: take_flash(session),
        address: pending.address.clone(),
        by_email: pending.kind == "email",
        wait: (pending.sent_at + pending.resend_after - now()).max(0),
        code_length: state.settings.otp.length,
        error,
        match_number: pending.match_number,
        bot: page::bot_widget(state),
    })
}

pub async fn verify_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
) -> Result<HttpResponse, PageError> {
    let Some(pending) = PendingLogin::load(&session) else {
        return Ok(page::found("/login"));
    };
    Ok(page::ok(
        &verify_page_for(&state, &req, &session, &pending, None).await?,
    ))
}

pub async fn verify_code(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = texts(&req, &session);
    let Some(pending) = PendingLogin::load(&session) else {
        page::flash(&session, "error", t.get("login.start_again"));
        return Ok(page::see_other("/login"));
    };
    let ident = pending.identifier(&state).ok_or(PageError::Csrf)?;
    let client = flow::client_for(&state, Some(&pending.client_id)).await?;
    let ip = client_ip(&req);
    let browser = flow::browser_id(&session);
    let origin = Origin {
        client: &client,
        ip: ip.as_deref(),
        browser: Some(&browser),
    };
    let code: String = form
        .get("code")
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let error = match otp::verify_code(&state, &origin, &ident, &code).await {
        Ok(()) => {
            let next = flow::verified(
                &state,
                &session,
                &ident,
                flow::amr_for(&pending.kind),
                ua(&req),
                ip.as_deref(),
            )
            .await?;
            return next.respond(&state, &req, &session, Via::Post).await;
        }
        Err(OtpError::WrongCode) if code.is_empty() => t.get("verify.empty").to_string(),
        Err(e) => verify_failure(t, e)?,
    };
    let page = verify_page_for(&state, &req, &session, &pending, Some(error)).await?;
    Ok(page::render(StatusCode::UNPROCESSABLE_ENTITY, &page))
}

pub async fn resend(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = texts(&req, &session);
    let Some(pending) = PendingLogin::load(&session) else {
        return Ok(page::see_other("/login"));
    };
    let ident = pending.identifier(&state).ok_or(PageError::Csrf)?;
    let client = flow::client_for(&state, Some(&pending.client_id)).await?;
    match send(&state, &req, &session, &form, &client, &ident, t).await {
        Ok(fresh) => {
            fresh.save(&session);
            page::flash(&session, "success", t.with("verify.resent", &fresh.address));
        }
        Err(e) => page::flash(&session, "error", send_failure(t, e)?),
    }
    Ok(page::see_other("/login/verify"))
}

/// `POST /login/status`: polled by the code page. When the magic link was
/// used (in this browser or another), this tab moves on too.
pub async fn status(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    _checked: Form,
) -> Result<HttpResponse, PageError> {
    let next = match PendingLogin::load(&session) {
        Some(pending) if state.store.claim_magic_handoff(&pending.code_id).await? => {
            let ident = pending.identifier(&state).ok_or(PageError::Csrf)?;
            let ip = client_ip(&req);
            Some(
                flow::verified(
                    &state,
                    &session,
                    &ident,
                    flow::amr_for(&pending.kind),
                    ua(&req),
                    ip.as_deref(),
                )
                .await?
                .page(),
            )
        }
        Some(_) => None,
        // Signed in meanwhile (the link was opened in this same browser).
        None if session::signed_in(&session).is_some() => Some("/login/continue".to_string()),
        None if session::get::<PendingSignup>(&session, "signup").is_some() => Some("/signup".to_string()),
        None => None,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "next": next })))
}

/// `GET /login/continue`: wherever a signed-in browser should be now.
pub async fn continue_flow(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
) -> Result<HttpResponse, PageError> {
    match flow::current_user(&state, &session).await? {
        Some((who, user)) => {
            flow::next_step(&state, &session, &who, &user)
                .await?
                .respond(&state, &req, &session, Via::Get)
                .await
        }
        None => Ok(page::found("/login")),
    }
}

#[derive(Template)]
#[template(path = "pages/magic.html")]
struct MagicPage {
    t: T,
    csrf: String,
    token: String,
    flash: Option<Flash>,
}

#[derive(serde::Deserialize)]
pub struct MagicQuery {
    token: Option<String>,
}

/// `GET /login/magic?token=…` shows a button and consumes nothing, so mail
/// scanners that fetch links cannot burn them.
pub async fn magic_page(
    req: HttpRequest,
    session: Session,
    q: web::Query<MagicQuery>,
) -> Result<HttpResponse, PageError> {
    let t = texts(&req, &session);
    let token = q.token.clone().filter(|t| !t.is_empty() && t.len() <= 128);
    let Some(token) = token else {
        return Err(page::bad_request(t.get("magic.bad_title"), t.get("magic.bad_text")));
    };
    Ok(page::ok(&MagicPage {
        t,
        csrf: csrf_token(&session),
        token,
        flash: None,
    }))
}

/// `POST /login/magic`: the link signs in the browser that opens it (SPEC §9).
/// The tab that asked for it follows only when it is in this same browser,
/// or when the person here entered the number that tab shows.
pub async fn magic_use(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = texts(&req, &session);
    let token = form.get("token").unwrap_or("");
    let pending = PendingLogin::load(&session);
    let number = form.get("number").map(str::trim).filter(|n| !n.is_empty());
    let ip = client_ip(&req);
    let used = match otp::use_magic_link(
        &state,
        ip.as_deref(),
        token,
        pending.as_ref().map(|p| p.code_id.as_str()),
        number.and_then(|n| n.parse().ok()),
    )
    .await
    {
        Ok(used) => used,
        Err(OtpError::WrongMagicLink) => {
            return Err(page::bad_request(t.get("magic.bad_title"), t.get("magic.bad_text")))
        }
        Err(e) => return Err(e.into()),
    };
    // The tab that asked for the link is in this browser: carry on here.
    if let Some(pending) = pending.filter(|p| p.code_id == used.code_id) {
        let ident = pending.identifier(&state).ok_or(PageError::Csrf)?;
        let next = flow::verified(
            &state,
            &session,
            &ident,
            flow::amr_for("email"),
            ua(&req),
            ip.as_deref(),
        )
        .await?;
        return next.respond(&state, &req, &session, Via::Post).await;
    }
    let follows = match (used.handoff_allowed, number.is_some()) {
        (true, _) => t.get("magic.other_follows"),
        (false, true) => t.get("magic.number_mismatch"),
        (false, false) => t.get("magic.other_needs_code"),
    };
    // Another browser: this one is signed in to the account the link was
    // sent for, if that account still signs in with the address it went to.
    match used.user_id {
        Some(id) => match state.store.user(&id).await? {
            Some(user) if !user.disabled && still_holds(&state, &user, &used.ident_key) => {
                let next =
                    flow::sign_in(&state, &session, &user, flow::amr_for("email"), ua(&req), ip.as_deref()).await?;
                page::flash(&session, if used.handoff_allowed { "success" } else { "info" }, follows);
                next.respond(&state, &req, &session, Via::Post).await
            }
            Some(user) if user.disabled => Err(PageError::Forbidden(t.get("login.disabled").into())),
            // Deleted, or the address moved to another account since the link was sent.
            _ => Err(page::bad_request(t.get("magic.bad_title"), t.get("magic.bad_text"))),
        },
        // No account yet: the address is only known to the tab that asked,
        // so only that tab can sign up, and only after number matching.
        None => Ok(page::ok(&MessagePage {
            t,
            title: t.get("magic.confirmed_title").into(),
            text: if used.handoff_allowed {
                t.get("magic.confirmed_text")
            } else {
                follows
            }
            .into(),
            link: None,
            flash: None,
        })),
    }
}

/// Whether the account still has the email whose key a code was sent to (it
/// may have moved to another address since).
fn still_holds(state: &AppState, user: &crate::store::users::User, ident_key: &str) -> bool {
    let current = user.email.as_deref().and_then(|e| crate::domain::Email::parse(e).ok());
    current.is_some_and(|e| {
        crate::crypto::ct_eq(
            otp::ident_key(state, &Identifier::Email(e)).as_bytes(),
            ident_key.as_bytes(),
        )
    })
}

#[derive(Template)]
#[template(path = "pages/signup.html")]
struct SignupPage {
    t: T,
    csrf: String,
    app: String,
    flash: Option<Flash>,
    address: String,
    by_phone: bool,
    first_name: String,
    last_name: String,
    error: Option<String>,
}

fn pending_signup(session: &Session) -> Option<PendingSignup> {
    session::get::<PendingSignup>(session, "signup").filter(|s| now() - s.verified_at < SIGNUP_WINDOW)
}

pub async fn signup_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
) -> Result<HttpResponse, PageError> {
    let Some(signup) = pending_signup(&session) else {
        return Ok(page::found("/login"));
    };
    Ok(page::ok(&SignupPage {
        t: texts(&req, &session),
        csrf: csrf_token(&session),
        app: app_name(&state, &session).await?,
        flash: take_flash(&session),
        address: signup.address,
        by_phone: signup.kind == "phone",
        first_name: String::new(),
        last_name: String::new(),
        error: None,
    }))
}

pub async fn signup(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = texts(&req, &session);
    let Some(signup) = pending_signup(&session) else {
        page::flash(&session, "error", t.get("signup.expired"));
        return Ok(page::see_other("/login"));
    };
    let first = form.get("first_name").unwrap_or("").trim().to_string();
    let last = form.get("last_name").unwrap_or("").trim().to_string();
    if first.chars().count() > 100 || last.chars().count() > 100 {
        let page = SignupPage {
            t,
            csrf: csrf_token(&session),
            app: app_name(&state, &session).await?,
            flash: None,
            address: signup.address,
            by_phone: signup.kind == "phone",
            first_name: first,
            last_name: last,
            error: Some(t.get("signup.too_long").into()),
        };
        return Ok(page::render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let pending = PendingLogin {
        kind: signup.kind.clone(),
        address: signup.address.clone(),
        client_id: String::new(),
        code_id: String::new(),
        sent_at: 0,
        resend_after: 0,
        match_number: None,
    };
    let ident = pending.identifier(&state).ok_or(PageError::Csrf)?;
    let mut profile = Profile::for_verified(&ident);
    profile.first_name = first;
    profile.last_name = last;
    session.remove("signup");
    let ip = client_ip(&req);
    let created = Accounts::of(&state)
        .create(&profile, Actor::User { client_id: None }, ip.as_deref())
        .await;
    let user = match created {
        Ok(user) => user,
        // Created meanwhile (another tab): the identifier is verified, so sign in to it.
        Err(AccountError::Taken(_)) => state
            .store
            .user_by_identifier(ident.kind(), ident.key())
            .await?
            .ok_or_else(|| PageError::Internal(anyhow::anyhow!("account vanished during signup")))?,
        Err(e) => return Err(e.into()),
    };
    if user.disabled {
        return Err(PageError::Forbidden(t.get("login.disabled").into()));
    }
    let next = flow::sign_in(&state, &session, &user, signup.amr, ua(&req), ip.as_deref()).await?;
    next.respond(&state, &req, &session, Via::Post).await
}

/// `POST /login/password`: username or email plus password, for users who set one.
pub async fn password(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = texts(&req, &session);
    let login = form.get("login").unwrap_or("").trim().to_string();
    let password = form.get("password").unwrap_or("");
    let authz = flow::authz(&session);
    let client = flow::client_for(&state, authz.as_ref().map(|a| a.client_id.as_str())).await?;
    let ip = client_ip(&req);
    let error = if login.is_empty() || password.is_empty() {
        t.get("password.empty").to_string()
    } else {
        match passwords::check(&state, &client.id, &login, password, ip.as_deref()).await {
            Ok(user) => {
                let next = flow::sign_in(&state, &session, &user, vec!["pwd".into()], ua(&req), ip.as_deref()).await?;
                return next.respond(&state, &req, &session, Via::Post).await;
            }
            Err(AccountError::Locked { retry_after }) => t.with("password.locked", wait_text(retry_after)),
            Err(e) => page::account_error_text(t, e)?,
        }
    };
    Ok(page::render(
        StatusCode::UNPROCESSABLE_ENTITY,
        &LoginPage {
            t,
            csrf: csrf_token(&session),
            app: client.name,
            flash: None,
            value: login,
            error: Some(error),
            password_mode: true,
            bot: None,
        },
    ))
}
