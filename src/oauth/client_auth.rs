//! Client authentication at the token, introspection and revocation endpoints
//! and the OTP API (RFC 6749 §2.3.1): HTTP Basic with form-url-encoded id and
//! secret, or `client_id` + `client_secret` in the body; public clients send
//! `client_id` alone.

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::domain::client::hash_secret;
use crate::domain::Client;
use crate::error::{invalid_request, ApiError};
use crate::params::{form_decode, Params};
use crate::state::AppState;

struct Credentials {
    id: String,
    secret: Option<String>,
}

/// Authenticates the calling client; public clients pass with their id alone.
pub async fn authenticate(state: &AppState, req: &HttpRequest, params: &Params) -> Result<Client, ApiError> {
    let creds = credentials(req, params)?;
    let client = state.store.client(&creds.id).await?;
    match (client, creds.secret) {
        (Some(client), Some(secret)) if !client.public => {
            if client.secret_matches(&secret) {
                Ok(client)
            } else {
                Err(ApiError::InvalidClient)
            }
        }
        (Some(client), None) if client.public => Ok(client),
        (None, Some(secret)) => {
            // Spend the same work as a real check so timing does not reveal which ids exist.
            let _ = crate::crypto::ct_eq(hash_secret(&secret).as_bytes(), &[0u8; 71]);
            Err(ApiError::InvalidClient)
        }
        _ => Err(ApiError::InvalidClient),
    }
}

/// Like `authenticate`, but refuses public clients (introspection, the OTP API).
pub async fn authenticate_confidential(
    state: &AppState,
    req: &HttpRequest,
    params: &Params,
) -> Result<Client, ApiError> {
    let client = authenticate(state, req, params).await?;
    if client.public {
        return Err(ApiError::InvalidClient);
    }
    Ok(client)
}

fn credentials(req: &HttpRequest, params: &Params) -> Result<Credentials, ApiError> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then(|| rest.trim().to_string())
        });
    if let Some(encoded) = basic {
        if params.get("client_secret").is_some() {
            return Err(invalid_request(
                "use one client authentication method, not Basic and client_secret together",
            ));
        }
        let (id, secret) = decode_basic(&encoded).ok_or(ApiError::InvalidClient)?;
        if params.get("client_id").is_some_and(|body_id| body_id != id) {
            return Err(ApiError::InvalidClient);
        }
        return Ok(Credentials {
            id,
            secret: Some(secret),
        });
    }
    let id = params.get("client_id").ok_or(ApiError::InvalidClient)?;
    Ok(Credentials {
        id: id.to_string(),
        secret: params.get("client_secret").map(str::to_string),
    })
}

/// The client id and secret of an HTTP Basic `Authorization` value (after
/// `Basic `): base64 of `id:secret`, each form-url-encoded (RFC 6749 §2.3.1).
pub fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id.as_bytes())?, form_decode(secret.as_bytes())?))
}

#[cfg(test)]
mod tests {
    use crate::params::form_decode;

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(form_decode(b"a%3Ab+c").as_deref(), Some("a:b c"));
        assert_eq!(form_decode(b"%FF"), None);
    }
}
