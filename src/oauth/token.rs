//! `POST /oauth2/token` (RFC 6749 §3.2): authenticate the client, find the
//! grant in the registry, answer with `Cache-Control: no-store` (§5.1).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::client_auth;
use super::grants::{self, GrantRequest};
use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;

pub async fn token(state: web::Data<AppState>, http: HttpRequest, params: Params) -> Result<HttpResponse, ApiError> {
    let grant_type = params.required("grant_type")?.to_string();
    respond(state, http, params, &grant_type).await
}

/// `POST /o/extended_token/`: the original project's path; `grant_type` defaults to `otp`.
pub async fn extended_token(
    state: web::Data<AppState>,
    http: HttpRequest,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    let grant_type = params.get("grant_type").unwrap_or("otp").to_string();
    respond(state, http, params, &grant_type).await
}

async fn respond(
    state: web::Data<AppState>,
    http: HttpRequest,
    params: Params,
    grant_type: &str,
) -> Result<HttpResponse, ApiError> {
    let client = client_auth::authenticate(&state, &http, &params).await?;
    let grant = grants::find(grant_type)
        .ok_or_else(|| ApiError::UnsupportedGrantType(format!("grant type `{grant_type}` is not supported")))?;
    if !client.allows_grant(grant.name) {
        return Err(ApiError::UnauthorizedClient(format!(
            "this client may not use the {} grant",
            grant.name
        )));
    }
    let state = state.into_inner();
    let response = (grant.handle)(GrantRequest {
        state: state.clone(),
        client,
        params,
        http,
    })
    .await?;
    state.metrics.token_issued(grant.name);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(response))
}
