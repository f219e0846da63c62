//! RFC 6749 §4.4: a confidential client obtains a token for itself. No
//! refresh token (§4.4.3); `sub` is the client id (RFC 9068 §2.2). Nothing is
//! written to the database.

use super::{Grant, GrantFuture, GrantRequest, TokenResponse};
use crate::error::ApiError;
use crate::oauth::access_token;
use crate::oauth::policy::{self, Holder};

pub const GRANT: Grant = Grant {
    name: "client_credentials",
    aliases: &[],
    handle,
};

fn handle(req: GrantRequest) -> GrantFuture {
    Box::pin(async move {
        let client = &req.client;
        if client.public {
            return Err(ApiError::UnauthorizedClient(
                "public clients cannot use client_credentials".into(),
            ));
        }
        let scope = policy::grant_scope(client, req.params.get("scope"), Holder::Client)?;
        let audience = policy::audience(client, &req.params.all("resource"))?;
        let issued = access_token::issue(
            &req.state,
            &access_token::Grant {
                sub: &client.id,
                client,
                scope: &scope,
                family: None,
                auth_time: None,
                audience: &audience,
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
