//! The grant registry. Each grant is one file exporting a `GRANT`; the token
//! endpoint only looks the grant up here. A new grant is one file and one line.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::HttpRequest;
use serde::Serialize;

use crate::domain::Client;
use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;

pub mod authorization_code;
pub mod client_credentials;
pub mod otp;
pub mod password;
pub mod refresh_token;

/// Everything a grant handler gets: the authenticated client and the parameters.
pub struct GrantRequest {
    pub state: Arc<AppState>,
    pub client: Client,
    pub params: Params,
    pub http: HttpRequest,
}

/// RFC 6749 §5.1 (and OIDC Core §3.1.3.3 for `id_token`).
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

pub type GrantFuture = Pin<Box<dyn Future<Output = Result<TokenResponse, ApiError>>>>;

pub struct Grant {
    /// The name clients register and discovery lists.
    pub name: &'static str,
    /// Other values of `grant_type` that select this grant (e.g. an absolute URI form).
    pub aliases: &'static [&'static str],
    pub handle: fn(GrantRequest) -> GrantFuture,
}

pub const GRANTS: &[&Grant] = &[
    &authorization_code::GRANT,
    &client_credentials::GRANT,
    &otp::GRANT,
    &refresh_token::GRANT,
    &password::GRANT,
];

pub fn find(grant_type: &str) -> Option<&'static Grant> {
    GRANTS
        .iter()
        .copied()
        .find(|g| g.name == grant_type || g.aliases.contains(&grant_type))
}

/// Every `grant_type` value discovery advertises.
pub fn advertised() -> Vec<&'static str> {
    GRANTS
        .iter()
        .flat_map(|g| std::iter::once(g.name).chain(g.aliases.iter().copied()))
        .collect()
}
