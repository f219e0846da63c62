//! `GET, POST /oauth2/userinfo` (OIDC Core §5.3): the claims the access
//! token's scopes allow, from the same source as the ID token.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::claims;
use crate::error::ApiError;
use crate::oauth::access_token;
use crate::state::AppState;

/// The Bearer token of the request (RFC 6750 §2.1).
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub async fn userinfo(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let invalid = || ApiError::InvalidToken("the access token is missing, invalid, expired or revoked".into());
    let token = bearer(&req).ok_or_else(invalid)?;
    let verified = access_token::verify_active(&state, token).await?.ok_or_else(invalid)?;
    let scope = verified.scope();
    if !scope.contains("openid") {
        return Err(ApiError::InsufficientScope(
            "userinfo needs a token with the openid scope".into(),
        ));
    }
    let sub = verified.str("sub").unwrap_or("");
    let user = state
        .store
        .user(sub)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(invalid)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(claims::for_scope(&user, &scope)))
}
