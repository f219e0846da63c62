//! The sign-in flow's decisions, shared by every page: who is signed in,
//! what comes after a verified code (sign in, or confirm a new account),
//! and what comes after sign-in (consent, or the code for the waiting app).

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse};

use super::authorize::Via;
use super::page;
use serde::{Deserialize, Serialize};

use super::page::PageError;
use super::session::{self, SignedIn};
use crate::domain::{Client, Identifier, Scope};
use crate::oauth::authorize::{self, AuthzRequest, AuthzResponse};
use crate::oauth::policy;
use crate::state::AppState;
use crate::store::audit::Event;
use crate::store::now;
use crate::store::users::User;

/// The client id codes are sent under when no app is waiting (signing in to
/// the account page). A registered client id cannot contain ':'.
pub const ACCOUNT_CLIENT: &str = "sesame:account";

/// A code sent and not yet entered. (No `Debug`: it holds a phone or email.)
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    /// `phone` or `email`.
    pub kind: String,
    pub address: String,
    pub client_id: String,
    pub code_id: String,
    pub sent_at: i64,
    pub resend_after: i64,
    /// The number to enter where the magic link is opened, if it is opened in another browser.
    #[serde(default)]
    pub match_number: Option<i64>,
}

impl PendingLogin {
    /// What a page remembers of a code it just sent.
    pub fn sent(ident: &Identifier, client_id: &str, sent: crate::otp::Sent) -> PendingLogin {
        PendingLogin {
            kind: ident.kind().into(),
            address: ident.address().into(),
            client_id: client_id.into(),
            code_id: sent.code_id,
            sent_at: now(),
            resend_after: sent.resend_after as i64,
            match_number: sent.match_number,
        }
    }

    /// The code this browser is waiting for on `/login/verify`.
    pub fn load(session: &Session) -> Option<PendingLogin> {
        session::get(session, "login")
    }

    pub fn save(&self, session: &Session) {
        session::set(session, "login", self);
    }

    pub fn identifier(&self, state: &AppState) -> Option<Identifier> {
        let (phone, email) = match self.kind.as_str() {
            "phone" => (Some(self.address.as_str()), None),
            _ => (None, Some(self.address.as_str())),
        };
        Identifier::from_params(phone, email, &state.settings.phones()).ok()
    }
}

/// A verified identifier without an account yet: the signup page confirms it.
/// (No `Debug`: it holds a phone or email.)
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingSignup {
    pub kind: String,
    pub address: String,
    pub amr: Vec<String>,
    pub verified_at: i64,
}

/// How long a verified identifier waits for the signup page.
pub const SIGNUP_WINDOW: i64 = 600;

/// The app the pages act for: the waiting authorization request's client,
/// or Sesame's own account page.
pub async fn client_for(state: &AppState, client_id: Option<&str>) -> Result<Client, PageError> {
    match client_id {
        Some(id) if id != ACCOUNT_CLIENT => match state.store.client(id).await? {
            Some(c) => Ok(c),
            None => Ok(account_client()),
        },
        _ => Ok(account_client()),
    }
}

pub fn account_client() -> Client {
    Client {
        id: ACCOUNT_CLIENT.into(),
        name: "Sesame".into(),
        secret_digest: None,
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        grant_types: vec![],
        scopes: Scope::default(),
        public: true,
        skip_consent: true,
        first_party: true,
        magic_link_uri: None,
        resources: vec![],
        id_token_alg: crate::config::SigningAlg::RS256,
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        source: "builtin".into(),
        created_at: 0,
        updated_at: 0,
    }
}

pub fn authz(session: &Session) -> Option<AuthzRequest> {
    session::get(session, "authz")
}

/// The signed-in user, if the session has one and the account is usable.
pub async fn current_user(state: &AppState, session: &Session) -> Result<Option<(SignedIn, User)>, PageError> {
    let Some(who) = session::signed_in(session) else {
        return Ok(None);
    };
    match state.store.user(&who.sub).await? {
        Some(user) if !user.disabled => Ok(Some((who, user))),
        _ => {
            session.purge();
            Ok(None)
        }
    }
}

/// Whether the user already allowed this client everything the request asks.
pub async fn consent_covers(
    state: &AppState,
    client: &Client,
    user_id: &str,
    authz: &AuthzRequest,
) -> Result<bool, PageError> {
    if client.skip_consent {
        return Ok(true);
    }
    let Some(granted) = state.store.consent(user_id, &client.id).await? else {
        return Ok(false);
    };
    let granted = Scope::parse(&granted).unwrap_or_default();
    let asked = Scope::parse(&authz.scope).unwrap_or_default();
    Ok(asked.is_subset(&granted))
}

/// Where a signed-in browser goes next.
pub enum Next {
    /// A page of Sesame's (or one it was asked to return to).
    Page(String),
    /// Back to the waiting app with this response (an error) to the request with this id.
    Answer(AuthzResponse, String),
    /// Back to the waiting app with a code, issued when the answer is sent.
    App(Box<Finish>),
}

/// A finished authorization request and whom its code is for.
pub struct Finish {
    pub authz: AuthzRequest,
    pub client: Client,
    pub who: SignedIn,
    pub user: User,
    /// The browser session's `sid`, recorded with the code (back-channel logout).
    pub session_id: Option<String>,
}

impl Next {
    /// Sends the browser on: a redirect, or the app's form-post page. The
    /// code is issued here, when it is really sent, and only then does the
    /// session let go of the request it answers.
    pub async fn respond(
        self,
        state: &AppState,
        req: &HttpRequest,
        session: &Session,
        via: Via,
    ) -> Result<HttpResponse, PageError> {
        let answered = |id: &str| {
            if authz(session).is_some_and(|a| a.id == id) {
                session.remove("authz");
            }
        };
        let response = match self {
            Next::Page(path) => {
                return Ok(match via {
                    Via::Get => page::found(&path),
                    Via::Post => page::see_other(&path),
                })
            }
            Next::Answer(response, id) => {
                answered(&id);
                response
            }
            Next::App(f) => {
                answered(&f.authz.id);
                let holder = authorize::CodeHolder {
                    sub: &f.who.sub,
                    auth_time: f.who.auth_time,
                    amr: &f.who.amr,
                    session_id: f.session_id.as_deref(),
                };
                authorize::issue_code(state, &f.authz, &holder, &f.client, &f.user).await?
            }
        };
        Ok(super::authorize::answer(req, &response, via))
    }

    /// A page to load with GET (the magic-link poll): the app's answer is
    /// made at `/login/continue` (the request stays in the session until
    /// then), so nothing is issued here.
    pub fn page(self) -> String {
        match self {
            Next::Page(path) => path,
            Next::Answer(..) | Next::App(_) => "/login/continue".into(),
        }
    }
}

/// Where a signed-in browser goes next: the consent page, the waiting app
/// (with its code), or the account page.
pub async fn next_step(state: &AppState, session: &Session, who: &SignedIn, user: &User) -> Result<Next, PageError> {
    let Some(authz) = authz(session) else {
        // A page that sent the user to sign in (e.g. /admin), else the account page.
        let back = session::get::<String>(session, "return_to").filter(|p| p.starts_with('/') && !p.starts_with("//"));
        session.remove("return_to");
        return Ok(Next::Page(back.unwrap_or_else(|| "/account".into())));
    };
    if authz.login_required {
        return Ok(Next::Page("/login".into()));
    }
    let Some(client) = state.store.client(&authz.client_id).await? else {
        session.remove("authz");
        return Ok(Next::Page("/account".into()));
    };
    // A request for one user's tokens (claims `sub` value) is never answered with another's.
    if authz.required_sub.as_ref().is_some_and(|required| required != &user.id) {
        let response = authorize::error(
            state,
            &authz,
            "access_denied",
            "the signed-in user is not the one the request's claims ask for",
        );
        return Ok(Next::Answer(response, authz.id));
    }
    // What this user may carry (SPEC §9): asked before the consent page, so
    // that it never offers what would be refused.
    if let Err(refusal) = policy::grant_scope(&client, Some(&authz.scope), policy::Holder::User(user)) {
        let response = authorize::error(state, &authz, "invalid_scope", &refusal.to_string());
        return Ok(Next::Answer(response, authz.id));
    }
    let ask = (authz.prompt_consent && !authz.consented && !client.skip_consent)
        || !(authz.consented || consent_covers(state, &client, &user.id, &authz).await?);
    if ask {
        return Ok(Next::Page("/consent".into()));
    }
    Ok(Next::App(Box::new(Finish {
        authz,
        client,
        who: who.clone(),
        user: user.clone(),
        session_id: session::get(session, "sid"),
    })))
}

pub use crate::domain::parse_identifier;

/// Sends a code for the account pages (a new identifier, a re-check) under
/// the OTP policy: the pending code, or the text key of why none was sent.
pub async fn send_account_code(
    state: &AppState,
    req: &actix_web::HttpRequest,
    session: &Session,
    form: &super::page::Form,
    ident: &Identifier,
    locale: &str,
) -> Result<Result<PendingLogin, &'static str>, PageError> {
    let ip = crate::params::client_ip(req);
    let ip = ip.as_deref();
    let bot_token = bot_token(state, form);
    let client = account_client();
    let browser = browser_id(session);
    let origin = crate::otp::Origin {
        client: &client,
        ip,
        browser: Some(&browser),
    };
    match crate::otp::send_code(state, &origin, ident, locale, bot_token).await {
        Ok(sent) => Ok(Ok(PendingLogin::sent(ident, &client.id, sent))),
        Err(crate::otp::OtpError::Locked { .. } | crate::otp::OtpError::TooMany { .. }) => Ok(Err("account.too_many")),
        Err(e) => match send_refusal_key(&e) {
            Some(key) => Ok(Err(key)),
            None => Err(e.into()),
        },
    }
}

/// The text key for a send that was not made by rule or for want of a
/// provider (SPEC §10); `None` for errors the pages do not explain.
pub fn send_refusal_key(e: &crate::otp::OtpError) -> Option<&'static str> {
    use crate::otp::{OtpError, Refusal};
    match e {
        OtpError::DeliveryFailed => Some("login.delivery_failed"),
        OtpError::Refused(Refusal::Country(_) | Refusal::NumberType(_)) => Some("login.refused_number"),
        OtpError::Refused(Refusal::BotCheck) => Some("login.bot_check"),
        OtpError::BotCheckUnavailable => Some("login.bot_check_unavailable"),
        _ => None,
    }
}

/// This browser's id, for binding codes to the browser that asked (made on first use).
pub fn browser_id(session: &Session) -> String {
    if let Some(id) = super::session::get::<String>(session, "browser") {
        return id;
    }
    let id = crate::crypto::random_token::<16>();
    super::session::set(session, "browser", &id);
    id
}

/// The bot check's token from a page form: the field the provider's widget fills in.
pub fn bot_token<'a>(state: &AppState, form: &'a super::page::Form) -> Option<&'a str> {
    state
        .bot_check
        .as_ref()
        .and_then(|b| form.get(b.provider().form_field()))
}

/// RFC 8176 methods for a code sent to this kind of identifier.
pub fn amr_for(kind: &str) -> Vec<String> {
    match kind {
        "phone" => vec!["otp".into(), "sms".into()],
        _ => vec!["otp".into()],
    }
}

/// A code (or magic link) proved the identifier: sign in to its account, or
/// go confirm a new one. Returns where to send the browser.
pub async fn verified(
    state: &AppState,
    session: &Session,
    ident: &Identifier,
    amr: Vec<String>,
    ua: Option<&str>,
    ip: Option<&str>,
) -> Result<Next, PageError> {
    session.remove("login");
    match state.store.user_by_identifier(ident.kind(), ident.key()).await? {
        Some(user) if user.disabled => Err(PageError::Forbidden(
            super::i18n::T::default().get("login.disabled").into(),
        )),
        Some(user) => sign_in(state, session, &user, amr, ua, ip).await,
        None => {
            session::set(
                session,
                "signup",
                &PendingSignup {
                    kind: ident.kind().into(),
                    address: ident.address().into(),
                    amr,
                    verified_at: now(),
                },
            );
            Ok(Next::Page("/signup".into()))
        }
    }
}

/// Signs the browser in (a new session id) and returns where to go next.
pub async fn sign_in(
    state: &AppState,
    session: &Session,
    user: &User,
    amr: Vec<String>,
    ua: Option<&str>,
    ip: Option<&str>,
) -> Result<Next, PageError> {
    let who = SignedIn {
        sub: user.id.clone(),
        auth_time: now(),
        amr,
    };
    if let Some(replaced) = session::sign_in(session, &who, ua, ip) {
        // Another user's session in this browser ends here: tell its apps.
        state
            .backchannel
            .notify(crate::oidc::backchannel::Ended::Session { sid: replaced });
    }
    if let Some(mut authz) = authz(session).filter(|a| a.login_required) {
        authz.login_required = false;
        session::set(session, "authz", &authz);
    }
    state.audit.record(Event {
        event: "signed_in",
        user_id: Some(&user.id),
        ip,
        detail: Some(&who.amr.join(" ")),
        ..Default::default()
    });
    next_step(state, session, &who, user).await
}
