//! `POST /oauth2/introspect` (RFC 7662): for an authenticated confidential
//! client; `{"active":false}` for anything not active (§2.2).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::issue::refresh_digest;
use super::{access_token, client_auth};
use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;

pub async fn introspect(
    state: web::Data<AppState>,
    http: HttpRequest,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    let caller = client_auth::authenticate_confidential(&state, &http, &params).await?;
    let token = params.required("token")?;
    let body = match access_token::verify_active(&state, token).await? {
        Some(v) => {
            let mut body = json!({ "active": true, "token_type": "Bearer" });
            for claim in [
                "scope",
                "client_id",
                "sub",
                "aud",
                "iss",
                "exp",
                "iat",
                "jti",
                "auth_time",
                "username",
            ] {
                if let Some(value) = v.claims().get(claim) {
                    body[claim] = value.clone();
                }
            }
            body
        }
        None => refresh_token(&state, &caller.id, token).await?,
    };
    Ok(no_store(body))
}

/// A refresh token is active while unused, unrevoked and within its
/// lifetime, and only its own client learns anything about it (SPEC §9);
/// resource servers introspect access tokens.
async fn refresh_token(state: &AppState, caller: &str, token: &str) -> Result<Value, ApiError> {
    match state.store.peek_refresh_token(&refresh_digest(state, token)).await? {
        Some((f, used)) if f.client_id == caller && !used && !f.revoked && f.expires_at > crate::store::now() => {
            Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": f.client_id,
                "sub": f.user_id,
                "scope": f.scope,
                "exp": f.expires_at,
                "iss": state.issuer(),
            }))
        }
        _ => Ok(json!({ "active": false })),
    }
}

pub fn no_store(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}
