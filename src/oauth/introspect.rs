//! `POST /oauth2/introspect` (RFC 7662): for an authenticated confidential
//! client; `{"active":false}` for anything not active (§2.2).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{access_token, client_auth};
use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;

pub async fn introspect(
    state: web::Data<AppState>,
    http: HttpRequest,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    client_auth::authenticate_confidential(&state, &http, &params).await?;
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
                if let Some(value) = v.claims.get(claim) {
                    body[claim] = value.clone();
                }
            }
            body
        }
        None => json!({ "active": false }),
    };
    Ok(no_store(body))
}

pub fn no_store(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}
