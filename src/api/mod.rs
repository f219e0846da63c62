//! The OTP API (SPEC §3): request a code, verify it, create the account.

pub mod admin;
pub mod admin_users;
pub mod otp;
pub mod users;

use actix_web::HttpRequest;

use crate::domain::Client;
use crate::error::ApiError;
use crate::oauth::client_auth;
use crate::params::Params;
use crate::state::AppState;

/// A confidential client that lists the `otp` grant (`403 unauthorized_client` otherwise).
pub async fn otp_client(state: &AppState, req: &HttpRequest, params: &Params) -> Result<Client, ApiError> {
    let client = client_auth::authenticate_confidential(state, req, params).await?;
    if !client.allows_grant("otp") {
        return Err(ApiError::ForbiddenClient(
            "this client may not use the OTP API: add the otp grant to it".into(),
        ));
    }
    Ok(client)
}
