//! What every page shares: the security headers, CSRF tokens, flash
//! messages, redirects after POST, and `PageError`, the pages' one error
//! type (an HTML page with the right status; causes go to the log).

use std::future::Future;
use std::pin::Pin;

use actix_session::Session;
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::FromRequest;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::i18n::T;
use super::session;
use crate::crypto;
use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;
use crate::store::users::User;

/// Pages load only our own CSS and JS, may not be framed, and their forms
/// post only to Sesame (SPEC §9 `form-action`; `allow_form_target` adds the
/// one app a form may lead to).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Lets the forms of a page lead to `url`'s origin: browsers apply
/// `form-action` to the redirects after a form is sent too, so a page whose
/// form ends at an app (consent, code entry, signup, sign-out) must name it.
pub fn allow_form_target(headers: &mut header::HeaderMap, url: &str) {
    let Some(source) = csp_source(url) else { return };
    let Some(csp) = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let widened = csp.replacen("form-action 'self'", &format!("form-action 'self' {source}"), 1);
    if let Ok(v) = header::HeaderValue::from_str(&widened) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// The CSP source for a URL: `scheme://host[:port]`, or `scheme:` for an
/// app's custom scheme; `None` for anything that could break the header.
fn csp_source(url: &str) -> Option<String> {
    let safe = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b".-+:/[]".contains(&b));
    let source = match url.split_once("://") {
        Some((scheme, rest)) => {
            // Userinfo (`a@b`) is refused by the character check, not stripped:
            // browsers and parsers disagree about where such a host starts.
            let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
            if rest.contains('\\') {
                return None;
            }
            format!("{scheme}://{authority}")
        }
        None => format!("{}:", url.split(':').next()?),
    };
    safe(&source).then_some(source)
}

fn secure_headers(res: &mut actix_web::HttpResponseBuilder) {
    res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
}

/// Page middleware: while an authorization request is pending in the
/// session, its redirect URI's origin is a form target of every page.
pub async fn form_targets(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_session::SessionExt;
    let session = req.get_session();
    // Only the pages with a form that sends a code show the widget.
    let sends_codes = matches!(req.path(), "/login" | "/login/verify") || req.path().starts_with("/account");
    let bot_origins = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .and_then(|s| s.bot_check.as_ref().map(|b| b.provider().origins()))
        .filter(|_| sends_codes);
    let mut res = next.call(req).await?;
    if let Some(authz) = super::flow::authz(&session) {
        allow_form_target(res.headers_mut(), &authz.redirect_uri);
    }
    if let Some(origins) = bot_origins {
        allow_bot_check(res.headers_mut(), origins);
    }
    Ok(res)
}

/// Page middleware, outside the session middleware: the session store is
/// the database, so when it fails (an outage) the page says Sesame is
/// briefly unavailable (503, `Retry-After`) instead of actix-session's
/// bare 500. Only middleware errors arrive here; a handler's are responses.
pub async fn session_store_failures(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    let http = req.request().clone();
    match next.call(req).await {
        Ok(res) => Ok(res.map_into_left_body()),
        Err(e) => {
            tracing::warn!(error = %e, "the session store failed");
            Ok(actix_web::dev::ServiceResponse::new(http, unavailable()).map_into_right_body())
        }
    }
}

/// "Briefly unavailable, try again": 503 with `Retry-After`.
pub fn unavailable() -> HttpResponse {
    PageError::Unavailable.error_response()
}

/// With `abuse.bot_check` on, the pages load the provider's widget: its
/// origins (only those) may serve scripts, styles, frames and requests.
fn allow_bot_check(headers: &mut header::HeaderMap, origins: &str) {
    let Some(csp) = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let mut widened = csp.to_string();
    for directive in ["script-src 'self'", "style-src 'self'", "connect-src 'self'"] {
        widened = widened.replacen(directive, &format!("{directive} {origins}"), 1);
    }
    widened.push_str(&format!("; frame-src {origins}"));
    if let Ok(v) = header::HeaderValue::from_str(&widened) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// The bot check's widget, for a form that sends a code (SPEC §10).
pub struct BotWidget {
    /// The element class the provider's script turns into the widget.
    pub class: &'static str,
    pub site_key: String,
    pub script: &'static str,
}

pub fn bot_widget(state: &crate::state::AppState) -> Option<BotWidget> {
    let provider = state.bot_check.as_ref()?.provider();
    Some(BotWidget {
        class: provider.widget_class(),
        site_key: state.settings.abuse.bot_check_site_key.clone(),
        script: provider.script_url(),
    })
}

/// The localized text for an account service refusal; internal errors pass on.
pub fn account_error_text(t: T, e: crate::accounts::AccountError) -> Result<String, PageError> {
    match e.text_key() {
        Some(key) => Ok(t.get(key).to_string()),
        // A busy server is a 503 page with `Retry-After`, not a form error.
        None => Err(PageError::from(e)),
    }
}

/// Renders a page with the security headers.
pub fn render(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(html) => {
            let mut res = HttpResponse::build(status);
            secure_headers(&mut res);
            res.content_type("text/html; charset=utf-8").body(html)
        }
        Err(e) => PageError::Internal(e.into()).error_response(),
    }
}

pub fn ok(page: &impl Template) -> HttpResponse {
    render(StatusCode::OK, page)
}

/// 303 See Other: the answer to every successful POST.
pub fn see_other(location: &str) -> HttpResponse {
    let mut res = HttpResponse::SeeOther();
    secure_headers(&mut res);
    res.insert_header((header::LOCATION, location)).finish()
}

/// 302 Found, for redirects answering a GET (e.g. authorization responses).
pub fn found(location: &str) -> HttpResponse {
    let mut res = HttpResponse::Found();
    secure_headers(&mut res);
    res.insert_header((header::LOCATION, location)).finish()
}

/// The session's CSRF token, created on first use. Every form carries it.
pub fn csrf_token(session: &Session) -> String {
    if let Some(t) = session::get::<String>(session, "csrf") {
        return t;
    }
    let t = crypto::random_token::<32>();
    session::set(session, "csrf", &t);
    t
}

/// Refuses a POST whose form token does not match the session's.
pub fn check_csrf(session: &Session, presented: Option<&str>) -> Result<(), PageError> {
    match (session::get::<String>(session, "csrf"), presented) {
        (Some(expected), Some(got)) if crypto::ct_eq(expected.as_bytes(), got.as_bytes()) => Ok(()),
        _ => Err(PageError::Csrf),
    }
}

/// A POSTed page form whose CSRF token matched the session's.
pub struct Form(pub Params);

impl std::ops::Deref for Form {
    type Target = Params;
    fn deref(&self) -> &Params {
        &self.0
    }
}

impl FromRequest for Form {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Form, PageError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = Session::from_request(req, payload);
        let params = Params::from_request(req, payload);
        Box::pin(async move {
            let session = session.await.map_err(|_| PageError::Csrf)?;
            let params = params.await?;
            check_csrf(&session, params.get("csrf"))?;
            Ok(Form(params))
        })
    }
}

/// The signed-in, enabled user of a page request. A signed-out browser is
/// sent to `/login` (`PageError::SignInFirst`).
pub struct CurrentUser(pub User);

impl FromRequest for CurrentUser {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<CurrentUser, PageError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = Session::from_request(req, payload);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let session = session.await.map_err(|_| PageError::SignInFirst)?;
            let state = state.ok_or_else(|| PageError::Internal(anyhow::anyhow!("no app state")))?;
            match super::flow::current_user(&state, &session).await? {
                Some((_, user)) => Ok(CurrentUser(user)),
                None => Err(PageError::SignInFirst),
            }
        })
    }
}

/// A signed-in user with the admin role. Signed out: to `/login`, and back
/// to the page asked for after signing in. Signed in without the role: 403.
pub struct AdminUser(pub User);

impl FromRequest for AdminUser {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<AdminUser, PageError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = Session::from_request(req, payload);
        let user = CurrentUser::from_request(req, payload);
        let back = (req.method() == actix_web::http::Method::GET).then(|| req.path().to_string());
        Box::pin(async move {
            match user.await {
                Ok(CurrentUser(user)) if user.is_admin => Ok(AdminUser(user)),
                Ok(_) => Err(PageError::Forbidden(T::default().get("admin.forbidden").into())),
                Err(PageError::SignInFirst) => {
                    if let (Ok(session), Some(back)) = (session.await, back) {
                        session::set(&session, "return_to", &back);
                    }
                    Err(PageError::SignInFirst)
                }
                Err(e) => Err(e),
            }
        })
    }
}

/// A one-time message shown on the next page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flash {
    /// `success`, `info` or `error`.
    pub kind: String,
    pub text: String,
}

pub fn flash(session: &Session, kind: &str, text: impl Into<String>) {
    session::set(
        session,
        "flash",
        &Flash {
            kind: kind.into(),
            text: text.into(),
        },
    );
}

pub fn take_flash(session: &Session) -> Option<Flash> {
    let f = session::get(session, "flash");
    if f.is_some() {
        session.remove("flash");
    }
    f
}

/// The page language: the request's `ui_locales` (kept with the pending
/// authorization request), then Accept-Language.
pub fn texts(req: &HttpRequest, ui_locales: Option<&str>) -> T {
    let accept = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let preferred: Vec<&str> = ui_locales
        .unwrap_or("")
        .split(' ')
        .chain(accept.split(','))
        .filter(|s| !s.trim().is_empty())
        .collect();
    T::pick(&preferred)
}

/// The generic page for errors and notices.
#[derive(Template)]
#[template(path = "pages/message.html")]
pub struct MessagePage {
    pub t: T,
    pub title: String,
    pub text: String,
    pub link: Option<(String, String)>,
    pub flash: Option<Flash>,
}

impl MessagePage {
    pub fn new(title: impl Into<String>, text: impl Into<String>) -> MessagePage {
        MessagePage {
            t: T::default(),
            title: title.into(),
            text: text.into(),
            link: None,
            flash: None,
        }
    }

    pub fn link(mut self, href: impl Into<String>, label: impl Into<String>) -> MessagePage {
        self.link = Some((href.into(), label.into()));
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// A request we will not act on, explained to the user (never redirected).
    #[error("{title}: {text}")]
    BadRequest { title: String, text: String },
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    #[error("forbidden")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    /// The page needs a signed-in user: answered with a redirect to `/login`.
    #[error("sign in first")]
    SignInFirst,
    #[error("request body too large")]
    TooLarge(String),
    #[error("too many requests")]
    TooMany(String),
    /// Sesame is busy (a full password-hashing queue): 503, try again.
    #[error("busy")]
    Busy,
    /// Sesame is briefly unavailable (its database, or its audit trail, could
    /// not be reached; the cause is logged where it is met): 503, try again.
    #[error("briefly unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub fn bad_request(title: impl Into<String>, text: impl Into<String>) -> PageError {
    PageError::BadRequest {
        title: title.into(),
        text: text.into(),
    }
}

impl From<crate::accounts::AccountError> for PageError {
    fn from(e: crate::accounts::AccountError) -> Self {
        use crate::accounts::AccountError;
        match e {
            AccountError::Internal(cause) => PageError::Internal(cause),
            AccountError::NotFound => PageError::NotFound,
            AccountError::Busy => PageError::Busy,
            other => PageError::Forbidden(other.to_string()),
        }
    }
}

impl From<crate::otp::OtpError> for PageError {
    fn from(e: crate::otp::OtpError) -> Self {
        use crate::otp::OtpError;
        match e {
            OtpError::Internal(cause) => PageError::Internal(cause),
            OtpError::Locked { .. } | OtpError::TooMany { .. } => PageError::TooMany(e.to_string()),
            other => PageError::BadRequest {
                title: "The code was not accepted".into(),
                text: other.to_string(),
            },
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Internal(cause) => PageError::Internal(cause),
            ApiError::TooManyRequests { description, .. } => PageError::TooMany(description),
            ApiError::NotFound(_) => PageError::NotFound,
            ApiError::Busy => PageError::Busy,
            e @ ApiError::PayloadTooLarge(_) => PageError::TooLarge(e.description()),
            other => bad_request(T::default().get("error.bad_request_title"), other.description()),
        }
    }
}

impl From<crate::store::DbError> for PageError {
    fn from(e: crate::store::DbError) -> Self {
        PageError::Internal(e.into())
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            PageError::Csrf | PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound => StatusCode::NOT_FOUND,
            PageError::SignInFirst => StatusCode::SEE_OTHER,
            PageError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            PageError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            PageError::Busy | PageError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal(cause) if crate::store::is_unavailable(cause) => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let t = T::default();
        let page = match self {
            PageError::SignInFirst => return see_other("/login"),
            PageError::TooLarge(text) => MessagePage::new(t.get("error.bad_request_title"), text),
            PageError::BadRequest { title, text } => MessagePage::new(title, text),
            PageError::Csrf => MessagePage::new(t.get("error.csrf_title"), t.get("error.csrf_text")),
            PageError::Forbidden(text) => MessagePage::new(t.get("error.forbidden_title"), text),
            PageError::NotFound => MessagePage::new(t.get("error.not_found_title"), t.get("error.not_found_text")),
            PageError::TooMany(text) => MessagePage::new(t.get("error.too_many_title"), text),
            PageError::Busy => MessagePage::new(t.get("error.unavailable_title"), t.get("error.busy")),
            PageError::Internal(cause) if crate::store::is_unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "database unavailable");
                return PageError::Unavailable.error_response();
            }
            PageError::Unavailable => {
                MessagePage::new(t.get("error.unavailable_title"), t.get("error.unavailable_text"))
            }
            PageError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "page failed");
                MessagePage::new(t.get("error.internal_title"), t.get("error.internal_text"))
            }
        };
        let page = page.link("/login", t.get("error.start_over"));
        match page.render() {
            Ok(html) => {
                let mut res = HttpResponse::build(self.status_code());
                secure_headers(&mut res);
                if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
                    res.insert_header((header::RETRY_AFTER, "1"));
                }
                res.content_type("text/html; charset=utf-8").body(html)
            }
            Err(_) => HttpResponse::InternalServerError().finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full hashing queue on the pages is "busy, try again" with a 503
    /// and `Retry-After`, as on the API, not a "forbidden" page.
    #[test]
    fn a_busy_server_is_a_503_page_to_try_again() {
        let res = PageError::from(crate::accounts::AccountError::Busy).error_response();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers().get("retry-after").unwrap(), "1");
        let res = PageError::from(ApiError::Busy).error_response();
        assert_eq!(res.status(), 503);
    }

    /// The password forms (sign-in, set a password, sign up with one) turn
    /// an account refusal into text on the form with a 422; a busy server
    /// is not one of those: it is the 503 page above, with `Retry-After`.
    #[test]
    fn a_busy_server_behind_a_form_is_the_503_page_not_a_form_error() {
        use crate::accounts::AccountError;
        let t = T::pick(&["en"]);
        let busy = account_error_text(t, AccountError::Busy).expect_err("busy is not a form error");
        let res = busy.error_response();
        assert_eq!(res.status(), 503);
        assert!(res.headers().contains_key("retry-after"));
        // The user's own mistakes stay on the form.
        assert_eq!(
            account_error_text(t, AccountError::WrongPassword).unwrap(),
            t.get("password.wrong")
        );
    }

    #[test]
    fn form_targets_are_origins_and_nothing_that_could_break_the_header() {
        assert_eq!(
            csp_source("https://app.example.com/cb?x=1").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            csp_source("http://localhost:3000/callback").as_deref(),
            Some("http://localhost:3000")
        );
        assert_eq!(csp_source("http://[::1]:8080/cb").as_deref(), Some("http://[::1]:8080"));
        assert_eq!(
            csp_source("com.example.app:/oauth").as_deref(),
            Some("com.example.app:")
        );
        assert_eq!(csp_source("https://evil.example; script-src *"), None);
        assert_eq!(csp_source("https://a.example'/"), None);
        assert_eq!(csp_source("https://app.example\\@evil.example/cb"), None);
        assert_eq!(csp_source("https://user@evil.example/cb"), None);

        let mut headers = header::HeaderMap::new();
        headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CSP));
        allow_form_target(&mut headers, "https://app.example.com/cb");
        let csp = headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
        assert!(csp.ends_with("form-action 'self' https://app.example.com"), "{csp}");
    }
}
