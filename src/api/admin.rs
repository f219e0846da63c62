//! The admin API for clients (SPEC §7; users are in `admin_users`): `GET, POST /admin/api/clients`,
//! `GET, PUT, DELETE /admin/api/clients/{client_id}`,
//! `POST /admin/api/clients/{client_id}/secret` (rotate). RFC 7591 metadata
//! names; the secret appears only in the answers to creation and rotation.
//! Needs a Bearer token with scope `sesame:admin`: a `client_credentials`
//! token of a client that lists it, or a user token whose user has the admin
//! role now (checked on every call; `oauth::policy` grants the scope).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clients::{self, By, NewClient, RegisterError};
use crate::config::SigningAlg;
use crate::domain::client::Client;
use crate::domain::Scope;
use crate::error::ApiError;
use crate::oauth::access_token;
use crate::oidc::userinfo::bearer;
use crate::params::{body_limit, read_body};
use crate::state::AppState;

pub use crate::oauth::policy::ADMIN_SCOPE;

/// Who called the admin API: the token's client, and its user for a user token.
pub struct AdminCaller {
    pub client_id: String,
    pub sub: Option<String>,
}

impl AdminCaller {
    pub fn actor(&self) -> crate::accounts::Actor<'_> {
        crate::accounts::Actor::AdminApi {
            client_id: &self.client_id,
            sub: self.sub.as_deref(),
        }
    }
}

/// The caller, when its Bearer token carries `sesame:admin` and, for a user
/// token, its user is an admin still.
pub async fn admin(state: &AppState, req: &HttpRequest) -> Result<AdminCaller, ApiError> {
    let invalid = || ApiError::InvalidToken("a Bearer access token is required".into());
    let token = bearer(req).ok_or_else(invalid)?;
    let verified = access_token::verify_active(state, token).await?.ok_or_else(invalid)?;
    if !verified.scope().contains(ADMIN_SCOPE) {
        return Err(ApiError::InsufficientScope(format!(
            "the token lacks the {ADMIN_SCOPE} scope"
        )));
    }
    let client_id = verified.client_id().to_string();
    let sub = verified.str("sub").filter(|s| *s != client_id).map(str::to_string);
    if let Some(sub) = &sub {
        let admin_now = state.store.user(sub).await?.is_some_and(|u| u.is_admin && !u.disabled);
        if !admin_now {
            return Err(ApiError::InsufficientScope(
                "the token's user does not have the admin role".into(),
            ));
        }
    }
    Ok(AdminCaller { client_id, sub })
}

/// RFC 7591 §2 client metadata, as sent by an admin. Unknown fields are ignored (§2).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Metadata {
    client_id: Option<String>,
    client_name: Option<String>,
    redirect_uris: Option<Vec<String>>,
    post_logout_redirect_uris: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    scope: Option<String>,
    token_endpoint_auth_method: Option<String>,
    skip_consent: Option<bool>,
    first_party: Option<bool>,
    /// `""` removes it.
    magic_link_uri: Option<String>,
    /// RFC 8707 resource servers the client may ask tokens for.
    resources: Option<Vec<String>>,
    id_token_signed_response_alg: Option<String>,
    /// `""` removes it.
    backchannel_logout_uri: Option<String>,
    backchannel_logout_session_required: Option<bool>,
}

/// RFC 7591 §3.2.2.
fn bad_metadata(description: impl Into<String>) -> ApiError {
    ApiError::InvalidClientMetadata(description.into())
}

async fn metadata_body(req: &HttpRequest, payload: &mut web::Payload) -> Result<Metadata, ApiError> {
    let body = read_body(payload, body_limit(req)).await?;
    crate::params::json_object(&body).map_err(|e| bad_metadata(format!("malformed client metadata: {e}")))
}

fn public_from(method: Option<&str>) -> Result<Option<bool>, ApiError> {
    match method {
        None => Ok(None),
        Some("none") => Ok(Some(true)),
        Some("client_secret_basic" | "client_secret_post") => Ok(Some(false)),
        Some(other) => Err(bad_metadata(format!(
            "token_endpoint_auth_method `{other}` is not supported"
        ))),
    }
}

fn signing_alg(alg: Option<&str>) -> Result<Option<SigningAlg>, ApiError> {
    alg.map(|a| {
        SigningAlg::parse(a).ok_or_else(|| {
            bad_metadata(format!(
                "id_token_signed_response_alg `{a}` is not supported (RS256, ES256 or EdDSA)"
            ))
        })
    })
    .transpose()
}

fn scope_tokens(scope: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
    scope
        .map(|s| {
            Scope::parse(s)
                .map(|sc| sc.iter().map(str::to_string).collect())
                .map_err(|e| bad_metadata(e.to_string()))
        })
        .transpose()
}

/// The admin client making a change, for the clients service's audit trail.
fn by_admin<'a>(client_id: &'a str, ip: &'a Option<String>) -> By<'a> {
    By::AdminClient {
        client_id,
        ip: ip.as_deref(),
    }
}

async fn found(state: &AppState, id: &str) -> Result<Client, ApiError> {
    state
        .store
        .client(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no client with id `{id}`")))
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    admin(&state, &req).await?;
    let all: Vec<Value> = state.store.clients().await?.iter().map(clients::metadata).collect();
    Ok(HttpResponse::Ok().json(all))
}

pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = admin(&state, &req).await?;
    let m = metadata_body(&req, &mut payload).await?;
    let new = NewClient {
        id: m.client_id,
        name: m.client_name.ok_or_else(|| bad_metadata("client_name is required"))?,
        redirect_uris: m.redirect_uris.unwrap_or_default(),
        post_logout_redirect_uris: m.post_logout_redirect_uris.unwrap_or_default(),
        grant_types: m.grant_types.unwrap_or_default(),
        scopes: scope_tokens(m.scope.as_deref())?.unwrap_or_default(),
        public: public_from(m.token_endpoint_auth_method.as_deref())?.unwrap_or(false),
        skip_consent: m.skip_consent.unwrap_or(false),
        first_party: m.first_party.unwrap_or(false),
        magic_link_uri: m.magic_link_uri.filter(|u| !u.is_empty()),
        resources: m.resources.unwrap_or_default(),
        id_token_alg: signing_alg(m.id_token_signed_response_alg.as_deref())?,
        backchannel_logout_uri: m.backchannel_logout_uri.filter(|u| !u.is_empty()),
        backchannel_logout_session_required: m.backchannel_logout_session_required.unwrap_or(false),
    };
    let ip = crate::params::client_ip(&req);
    let by = by_admin(&who.client_id, &ip);
    let (client, secret) = clients::register(&state.store, &state.audit, new, "api", by)
        .await
        .map_err(|e| match e {
            RegisterError::Invalid(d) => bad_metadata(d),
            RegisterError::Taken(_) => ApiError::Conflict(e.to_string()),
            RegisterError::Store(cause) => ApiError::Internal(cause),
        })?;
    let mut body = clients::metadata(&client);
    if let Some(secret) = secret {
        body["client_secret"] = secret.into();
        body["client_secret_expires_at"] = 0.into();
    }
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req).await?;
    Ok(HttpResponse::Ok().json(clients::metadata(&found(&state, &id).await?)))
}

/// Replaces the given metadata; fields left out keep their values.
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = admin(&state, &req).await?;
    let mut c = found(&state, &id).await?;
    let m = metadata_body(&req, &mut payload).await?;
    if m.client_id.as_deref().is_some_and(|given| given != c.id) {
        return Err(bad_metadata("client_id cannot be changed"));
    }
    if public_from(m.token_endpoint_auth_method.as_deref())?.is_some_and(|public| public != c.public) {
        return Err(bad_metadata(
            "a client cannot switch between public and confidential; register a new one",
        ));
    }
    c.name = m.client_name.unwrap_or(c.name);
    c.redirect_uris = m.redirect_uris.unwrap_or(c.redirect_uris);
    c.post_logout_redirect_uris = m.post_logout_redirect_uris.unwrap_or(c.post_logout_redirect_uris);
    c.grant_types = m.grant_types.unwrap_or(c.grant_types);
    if let Some(tokens) = scope_tokens(m.scope.as_deref())? {
        c.scopes = Scope::from_tokens(tokens);
    }
    c.skip_consent = m.skip_consent.unwrap_or(c.skip_consent);
    c.first_party = m.first_party.unwrap_or(c.first_party);
    if let Some(resources) = m.resources {
        c.resources = resources;
    }
    if let Some(uri) = m.magic_link_uri {
        c.magic_link_uri = Some(uri).filter(|u| !u.is_empty());
    }
    c.id_token_alg = signing_alg(m.id_token_signed_response_alg.as_deref())?.unwrap_or(c.id_token_alg);
    if let Some(uri) = m.backchannel_logout_uri {
        c.backchannel_logout_uri = Some(uri).filter(|u| !u.is_empty());
    }
    c.backchannel_logout_session_required = m
        .backchannel_logout_session_required
        .unwrap_or(c.backchannel_logout_session_required);
    let ip = crate::params::client_ip(&req);
    let by = by_admin(&who.client_id, &ip);
    clients::update(&state.store, &state.audit, &c, by)
        .await
        .map_err(|e| match e {
            RegisterError::Store(cause) => ApiError::Internal(cause),
            other => bad_metadata(other.to_string()),
        })?;
    Ok(HttpResponse::Ok().json(clients::metadata(&found(&state, &c.id).await?)))
}

pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = admin(&state, &req).await?;
    let ip = crate::params::client_ip(&req);
    let by = by_admin(&who.client_id, &ip);
    if !clients::delete(&state.store, &state.audit, &id, by).await? {
        return Err(ApiError::NotFound(format!("no client with id `{id}`")));
    }
    Ok(HttpResponse::NoContent().finish())
}

pub async fn rotate_secret(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = admin(&state, &req).await?;
    let c = found(&state, &id).await?;
    if c.public {
        return Err(bad_metadata("a public client has no secret"));
    }
    let ip = crate::params::client_ip(&req);
    let by = by_admin(&who.client_id, &ip);
    let secret = clients::rotate_secret(&state.store, &state.audit, &c.id, by).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "client_id": c.id, "client_secret": secret, "client_secret_expires_at": 0 })))
}
