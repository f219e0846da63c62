//! `GET, POST /oauth2/userinfo` (OIDC Core §5.3): the claims the access
//! token's scopes allow, from the same source as the ID token. The token
//! comes as a Bearer header or, on POST, in the form body (RFC 6750 §2.2).

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

/// The access token in a form body (RFC 6750 §2.2: a POST with
/// `application/x-www-form-urlencoded` and `access_token`).
fn form_token(req: &HttpRequest, body: &[u8]) -> Result<Option<String>, ApiError> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/x-www-form-urlencoded"));
    if req.method() != actix_web::http::Method::POST || !form {
        return Ok(None);
    }
    let pairs = crate::params::form_pairs(body)?;
    let mut tokens = pairs.into_iter().filter(|(k, _)| k == "access_token").map(|(_, v)| v);
    match (tokens.next(), tokens.next()) {
        (Some(_), Some(_)) => Err(ApiError::InvalidRequest("`access_token` given twice".into())),
        (token, _) => Ok(token.filter(|t| !t.trim().is_empty())),
    }
}

pub async fn userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let invalid = || ApiError::InvalidToken("the access token is missing, invalid, expired or revoked".into());
    let in_body = form_token(&req, &body)?;
    // RFC 6750 §2: one method only.
    let token = match (bearer(&req), in_body.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "send the access token in the Authorization header or the form body, not both".into(),
            ))
        }
        (Some(t), None) | (None, Some(t)) => t.trim(),
        (None, None) => return Err(invalid()),
    };
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
