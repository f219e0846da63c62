//! `/admin`: the admin pages, for signed-in users with the admin role (no
//! separate admin password). Clients: list, search, register, edit, rotate
//! secret, delete. Users: list, search, view, disable/enable, delete. The
//! audit trail with filters. Every change goes through the same services as
//! the admin API and the CLI (`crate::clients`, the store).

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::account::App;
use super::i18n::T;
use super::page::{self, csrf_token, take_flash, AdminUser, Flash, Form, PageError};
use super::session::{self, SessionInfo};
use crate::accounts::{Accounts, Actor};
use crate::clients::{self, By, NewClient, RegisterError};
use crate::config::SigningAlg;
use crate::domain::client::{Client, KNOWN_GRANT_TYPES};
use crate::domain::Scope;
use crate::params::Params;
use crate::state::AppState;
use crate::store::audit::{AuditFilter, AuditRow};
use crate::store::users::User;

#[derive(serde::Deserialize)]
pub struct Search {
    q: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/admin_clients.html")]
struct ClientsPage {
    t: T,
    flash: Option<Flash>,
    clients: Vec<Client>,
    q: String,
}

pub async fn home() -> HttpResponse {
    page::found("/admin/clients")
}

pub async fn clients_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    _admin: AdminUser,
    q: web::Query<Search>,
) -> Result<HttpResponse, PageError> {
    let needle = q.q.clone().unwrap_or_default();
    let lower = needle.to_lowercase();
    let clients = state
        .store
        .clients()
        .await?
        .into_iter()
        .filter(|c| lower.is_empty() || c.id.to_lowercase().contains(&lower) || c.name.to_lowercase().contains(&lower))
        .collect();
    Ok(page::ok(&ClientsPage {
        t: page::texts(&req, None),

        flash: take_flash(&session),
        clients,
        q: needle,
    }))
}

/// The client form's values (register and edit).
#[derive(Default)]
struct ClientForm {
    name: String,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    grants: Vec<String>,
    scopes: String,
    public: bool,
    skip_consent: bool,
    first_party: bool,
    magic_link_uri: String,
    resources: String,
    id_token_alg: String,
    backchannel_logout_uri: String,
    backchannel_logout_session_required: bool,
}

impl ClientForm {
    fn of(c: &Client) -> ClientForm {
        ClientForm {
            name: c.name.clone(),
            redirect_uris: c.redirect_uris.join("\n"),
            post_logout_redirect_uris: c.post_logout_redirect_uris.join("\n"),
            grants: c.grant_types.clone(),
            scopes: c.scopes.to_string(),
            public: c.public,
            skip_consent: c.skip_consent,
            first_party: c.first_party,
            magic_link_uri: c.magic_link_uri.clone().unwrap_or_default(),
            resources: c.resources.join("\n"),
            id_token_alg: c.id_token_alg.as_str().into(),
            backchannel_logout_uri: c.backchannel_logout_uri.clone().unwrap_or_default(),
            backchannel_logout_session_required: c.backchannel_logout_session_required,
        }
    }

    fn read(form: &Params) -> ClientForm {
        let lines = |name: &str| {
            form.get(name)
                .unwrap_or("")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        ClientForm {
            name: form.get("name").unwrap_or("").trim().to_string(),
            redirect_uris: lines("redirect_uris"),
            post_logout_redirect_uris: lines("post_logout_redirect_uris"),
            grants: KNOWN_GRANT_TYPES
                .iter()
                .filter(|g| form.get(&format!("grant_{g}")).is_some())
                .map(|g| g.to_string())
                .collect(),
            scopes: form.get("scopes").unwrap_or("").trim().to_string(),
            public: form.get("type") == Some("public"),
            skip_consent: form.get("skip_consent").is_some(),
            first_party: form.get("first_party").is_some(),
            magic_link_uri: form.get("magic_link_uri").unwrap_or("").trim().to_string(),
            resources: lines("resources"),
            id_token_alg: form.get("id_token_alg").unwrap_or("RS256").to_string(),
            backchannel_logout_uri: form.get("backchannel_logout_uri").unwrap_or("").trim().to_string(),
            backchannel_logout_session_required: form.get("backchannel_logout_session_required").is_some(),
        }
    }

    /// The chosen ID token algorithm (RS256 unless one of the others).
    fn alg(&self) -> SigningAlg {
        SigningAlg::parse(&self.id_token_alg).unwrap_or(SigningAlg::RS256)
    }

    fn is_alg(&self, alg: &&str) -> bool {
        self.alg().as_str() == *alg
    }

    fn optional(text: &str) -> Option<String> {
        Some(text.to_string()).filter(|u| !u.is_empty())
    }

    fn list(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    fn has_grant(&self, g: &&str) -> bool {
        self.grants.iter().any(|x| x == *g)
    }
}

#[derive(Template)]
#[template(path = "pages/admin_client.html")]
struct ClientPage {
    t: T,
    csrf: String,
    flash: Option<Flash>,
    /// `None` while registering.
    client: Option<Client>,
    form: ClientForm,
    grant_types: &'static [&'static str],
    algs: [&'static str; 3],
    error: Option<String>,
}

pub async fn new_client_page(req: HttpRequest, session: Session, _admin: AdminUser) -> Result<HttpResponse, PageError> {
    Ok(page::ok(&ClientPage {
        t: page::texts(&req, None),
        csrf: csrf_token(&session),
        flash: None,
        client: None,
        form: ClientForm {
            grants: vec!["authorization_code".into(), "refresh_token".into()],
            scopes: "openid profile email phone offline_access".into(),
            ..Default::default()
        },
        grant_types: KNOWN_GRANT_TYPES,
        algs: SigningAlg::ALL.map(SigningAlg::as_str),
        error: None,
    }))
}

#[derive(Template)]
#[template(path = "pages/admin_secret.html")]
struct SecretPage {
    t: T,
    flash: Option<Flash>,
    client: Client,
    secret: Option<String>,
}

/// Registers the client and shows its secret once, in this answer only (the
/// secret is never stored, so it cannot wait for a redirect).
pub async fn create_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    AdminUser(admin): AdminUser,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let f = ClientForm::read(&form);
    let new = NewClient {
        id: None,
        name: f.name.clone(),
        redirect_uris: ClientForm::list(&f.redirect_uris),
        post_logout_redirect_uris: ClientForm::list(&f.post_logout_redirect_uris),
        grant_types: f.grants.clone(),
        scopes: f.scopes.split_whitespace().map(str::to_string).collect(),
        public: f.public,
        skip_consent: f.skip_consent,
        first_party: f.first_party,
        magic_link_uri: ClientForm::optional(&f.magic_link_uri),
        resources: ClientForm::list(&f.resources),
        id_token_alg: Some(f.alg()),
        backchannel_logout_uri: ClientForm::optional(&f.backchannel_logout_uri),
        backchannel_logout_session_required: f.backchannel_logout_session_required,
    };
    match clients::register(&state.store, &state.audit, new, "admin", By::AdminUser(&admin.id)).await {
        Ok((client, secret)) => Ok(page::ok(&SecretPage {
            t,
            flash: Some(Flash {
                kind: "success".into(),
                text: t.get("admin.client_created").into(),
            }),
            client,
            secret,
        })),
        Err(RegisterError::Store(cause)) => Err(PageError::Internal(cause)),
        Err(e) => Ok(page::render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ClientPage {
                t,
                csrf: csrf_token(&session),
                flash: None,
                client: None,
                form: f,
                grant_types: KNOWN_GRANT_TYPES,
                algs: SigningAlg::ALL.map(SigningAlg::as_str),
                error: Some(e.to_string()),
            },
        )),
    }
}

async fn found_client(state: &AppState, id: &str) -> Result<Client, PageError> {
    state.store.client(id).await?.ok_or(PageError::NotFound)
}

pub async fn client_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    _admin: AdminUser,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let client = found_client(&state, &id).await?;
    Ok(page::ok(&ClientPage {
        t: page::texts(&req, None),
        csrf: csrf_token(&session),
        flash: take_flash(&session),
        form: ClientForm::of(&client),
        client: Some(client),
        grant_types: KNOWN_GRANT_TYPES,
        algs: SigningAlg::ALL.map(SigningAlg::as_str),
        error: None,
    }))
}

pub async fn update_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    AdminUser(admin): AdminUser,
    id: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let mut c = found_client(&state, &id).await?;
    let f = ClientForm::read(&form);
    c.name = f.name.clone();
    c.redirect_uris = ClientForm::list(&f.redirect_uris);
    c.post_logout_redirect_uris = ClientForm::list(&f.post_logout_redirect_uris);
    c.grant_types = f.grants.clone();
    let scopes = Scope::parse(&f.scopes);
    let result = match scopes {
        Ok(s) => {
            c.scopes = s;
            c.skip_consent = f.skip_consent;
            c.first_party = f.first_party;
            c.magic_link_uri = ClientForm::optional(&f.magic_link_uri);
            c.resources = ClientForm::list(&f.resources);
            c.id_token_alg = f.alg();
            c.backchannel_logout_uri = ClientForm::optional(&f.backchannel_logout_uri);
            c.backchannel_logout_session_required = f.backchannel_logout_session_required;
            clients::update(&state.store, &state.audit, &c, By::AdminUser(&admin.id)).await
        }
        Err(e) => Err(RegisterError::Invalid(e.to_string())),
    };
    match result {
        Ok(()) => {
            page::flash(&session, "success", t.get("admin.saved"));
            Ok(page::see_other(&format!("/admin/clients/{}", c.id)))
        }
        Err(RegisterError::Store(cause)) => Err(PageError::Internal(cause)),
        Err(e) => {
            let client = found_client(&state, &id).await?;
            Ok(page::render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &ClientPage {
                    t,
                    csrf: csrf_token(&session),
                    flash: None,
                    client: Some(client),
                    form: ClientForm { public: c.public, ..f },
                    grant_types: KNOWN_GRANT_TYPES,
                    algs: SigningAlg::ALL.map(SigningAlg::as_str),
                    error: Some(e.to_string()),
                },
            ))
        }
    }
}

#[derive(Template)]
#[template(path = "pages/confirm.html")]
pub struct ConfirmPage {
    pub t: T,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub title: String,
    pub text: String,
    pub action: String,
    pub button: String,
    pub back: String,
}

/// `GET …/rotate` and `GET …/delete`: the confirmation step of destructive actions.
pub async fn confirm_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    _admin: AdminUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (id, action) = path.into_inner();
    let client = found_client(&state, &id).await?;
    let t = page::texts(&req, None);
    let (title, text, button) = match action.as_str() {
        "rotate" => ("admin.rotate_title", "admin.rotate_text", "admin.rotate"),
        "delete" => ("admin.delete_client_title", "admin.delete_client_text", "admin.delete"),
        _ => return Err(PageError::NotFound),
    };
    Ok(page::ok(&ConfirmPage {
        t,
        csrf: csrf_token(&session),
        flash: None,
        title: t.with(title, &client.name),
        text: t.get(text).into(),
        action: format!("/admin/clients/{}/{action}", client.id),
        button: t.get(button).into(),
        back: format!("/admin/clients/{}", client.id),
    }))
}

/// `POST /admin/clients/{id}/{rotate|delete}`, after the confirmation page.
pub async fn client_action(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    AdminUser(admin): AdminUser,
    path: web::Path<(String, String)>,
    _checked: Form,
) -> Result<HttpResponse, PageError> {
    let (id, action) = path.into_inner();
    let client = found_client(&state, &id).await?;
    let t = page::texts(&req, None);
    match action.as_str() {
        "rotate" if client.public => Err(page::bad_request(
            t.get("admin.public_title"),
            t.get("admin.public_text"),
        )),
        "rotate" => {
            let secret =
                clients::rotate_secret(&state.store, &state.audit, &client.id, By::AdminUser(&admin.id)).await?;
            Ok(page::ok(&SecretPage {
                t,
                flash: Some(Flash {
                    kind: "success".into(),
                    text: t.get("admin.rotated").into(),
                }),
                client,
                secret: Some(secret),
            }))
        }
        "delete" => {
            clients::delete(&state.store, &state.audit, &client.id, By::AdminUser(&admin.id)).await?;
            page::flash(&session, "success", t.get("admin.client_deleted"));
            Ok(page::see_other("/admin/clients"))
        }
        _ => Err(PageError::NotFound),
    }
}

#[derive(Template)]
#[template(path = "pages/admin_users.html")]
struct UsersPage {
    t: T,
    flash: Option<Flash>,
    users: Vec<User>,
    q: String,
}

pub async fn users_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    _admin: AdminUser,
    q: web::Query<Search>,
) -> Result<HttpResponse, PageError> {
    let needle = q.q.clone().unwrap_or_default();
    let users = state
        .store
        .users(Some(needle.trim()).filter(|s| !s.is_empty()), 200)
        .await?;
    Ok(page::ok(&UsersPage {
        t: page::texts(&req, None),

        flash: take_flash(&session),
        users,
        q: needle,
    }))
}

#[derive(Template)]
#[template(path = "pages/admin_user.html")]
struct UserPage {
    t: T,
    csrf: String,
    flash: Option<Flash>,
    user: User,
    metadata: String,
    sessions: Vec<SessionInfo>,
    apps: Vec<App>,
}

pub async fn user_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    _admin: AdminUser,
    sub: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let user = state.store.user(&sub).await?.ok_or(PageError::NotFound)?;
    let sessions = state
        .store
        .sessions_of(&user.id)
        .await?
        .iter()
        .map(|r| session::describe(r, None))
        .collect();
    let apps = super::account::connected_apps(&state, &user.id).await?;
    Ok(page::ok(&UserPage {
        t: page::texts(&req, None),
        csrf: csrf_token(&session),
        flash: take_flash(&session),
        metadata: serde_json::to_string_pretty(&user.metadata).unwrap_or_default(),
        user,
        sessions,
        apps,
    }))
}

/// `POST /admin/users/{sub}/{disable|enable|delete}`; delete asks first (`GET …/delete`).
pub async fn user_action(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    AdminUser(admin): AdminUser,
    path: web::Path<(String, String)>,
    _checked: Form,
) -> Result<HttpResponse, PageError> {
    let (sub, action) = path.into_inner();
    let t = page::texts(&req, None);
    let user = state.store.user(&sub).await?.ok_or(PageError::NotFound)?;
    let accounts = Accounts::of(&state);
    let actor = Actor::AdminPage(&admin.id);
    match action.as_str() {
        "disable" => {
            accounts.set_disabled(&user, true, actor).await?;
            page::flash(&session, "success", t.get("admin.user_disabled"));
        }
        "enable" => {
            accounts.set_disabled(&user, false, actor).await?;
            page::flash(&session, "success", t.get("admin.user_enabled"));
        }
        "delete" => {
            accounts.delete(&user, actor).await?;
            page::flash(&session, "success", t.get("admin.user_deleted"));
            return Ok(page::see_other("/admin/users"));
        }
        _ => return Err(PageError::NotFound),
    }
    Ok(page::see_other(&format!("/admin/users/{}", user.id)))
}

/// `GET /admin/users/{sub}/delete`: the confirmation step.
pub async fn confirm_user_delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    _admin: AdminUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (sub, action) = path.into_inner();
    if action != "delete" {
        return Err(PageError::NotFound);
    }
    let user = state.store.user(&sub).await?.ok_or(PageError::NotFound)?;
    let t = page::texts(&req, None);
    Ok(page::ok(&ConfirmPage {
        t,
        csrf: csrf_token(&session),
        flash: None,
        title: t.with("admin.delete_user_title", super::consent::display_name(&user)),
        text: t.get("admin.delete_user_text").into(),
        action: format!("/admin/users/{}/delete", user.id),
        button: t.get("admin.delete").into(),
        back: format!("/admin/users/{}", user.id),
    }))
}

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    event: Option<String>,
    client: Option<String>,
    user: Option<String>,
    /// `YYYY-MM-DD` (UTC), inclusive.
    since: Option<String>,
    /// `YYYY-MM-DD` (UTC), inclusive.
    until: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/admin_audit.html")]
struct AuditPage {
    t: T,
    flash: Option<Flash>,
    rows: Vec<AuditRow>,
    event: String,
    client: String,
    user: String,
    since: String,
    until: String,
    error: Option<String>,
}

pub async fn audit_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    _admin: AdminUser,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, PageError> {
    let t = page::texts(&req, None);
    let text = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut error = None;
    let mut day = |v: &Option<String>, end: bool| match text(v) {
        None => None,
        Some(s) => match super::dates::day_number(&s) {
            Some(d) => Some((d + i64::from(end)) * 86_400),
            None => {
                error = Some(t.get("admin.bad_date").to_string());
                None
            }
        },
    };
    let filter = AuditFilter {
        event: text(&q.event),
        client_id: text(&q.client),
        user_id: text(&q.user),
        since: day(&q.since, false),
        until: day(&q.until, true),
        limit: 500,
    };
    let rows = state.store.audit_search(&filter).await?;
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(page::render(
        status,
        &AuditPage {
            t,

            flash: None,
            rows,
            event: text(&q.event).unwrap_or_default(),
            client: text(&q.client).unwrap_or_default(),
            user: text(&q.user).unwrap_or_default(),
            since: text(&q.since).unwrap_or_default(),
            until: text(&q.until).unwrap_or_default(),
            error,
        },
    ))
}
