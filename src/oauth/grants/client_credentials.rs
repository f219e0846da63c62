//! RFC 6749 §4.4: a confidential client obtains a token for itself. No
//! refresh token (§4.4.3); `sub` is the client id (RFC 9068 §2.2). Nothing is
//! written to the database.

use super::{requested_scope, Grant, GrantFuture, GrantRequest, TokenResponse};
use crate::domain::Scope;
use crate::error::ApiError;
use crate::oauth::access_token;

pub const GRANT: Grant = Grant {
    name: "client_credentials",
    aliases: &[],
    handle,
};

/// Scopes that describe a user; a token for a client alone cannot carry them.
const USER_SCOPES: &[&str] = &["openid", "profile", "email", "phone", "address", "offline_access"];

fn handle(req: GrantRequest) -> GrantFuture {
    Box::pin(async move {
        let client = &req.client;
        if client.public {
            return Err(ApiError::UnauthorizedClient(
                "public clients cannot use client_credentials".into(),
            ));
        }
        let scope = requested_scope(&req.params, client, || {
            Scope::from_tokens(client.scopes.iter().filter(|s| !USER_SCOPES.contains(s)))
        })?;
        if let Some(user_scope) = scope.iter().find(|s| USER_SCOPES.contains(s)) {
            return Err(ApiError::InvalidScope(format!(
                "`{user_scope}` needs a user; client_credentials has none"
            )));
        }
        let issued = access_token::issue(
            &req.state,
            &access_token::Grant {
                sub: &client.id,
                client,
                scope: &scope,
                family: None,
                auth_time: None,
            },
        )?;
        Ok(TokenResponse {
            access_token: issued.token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            refresh_token: None,
            scope: scope.to_string(),
            id_token: None,
        })
    })
}
