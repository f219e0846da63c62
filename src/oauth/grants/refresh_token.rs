//! RFC 6749 §6: refresh tokens are opaque, stored as digests, bound to their
//! client, rotated on every use (OAuth 2.1 §4.3.1), with an absolute lifetime
//! (`tokens.refresh_ttl` from the sign-in). Presenting a rotated token again
//! revokes its whole family, access tokens included (RFC 9700 §4.14.2).

use super::{Grant, GrantFuture, GrantRequest};
use crate::domain::Client;
use crate::domain::Scope;
use crate::error::ApiError;
use crate::oauth::issue::{self, refresh_digest, UserTokens};
use crate::oauth::policy;
use crate::params::client_ip;
use crate::state::AppState;
use crate::store::audit::Event;
use crate::store::now;
use crate::store::tokens::Family;

pub const GRANT: Grant = Grant {
    name: "refresh_token",
    aliases: &[],
    handle,
};

fn handle(req: GrantRequest) -> GrantFuture {
    Box::pin(async move {
        let (state, client, params) = (&req.state, &req.client, &req.params);
        let token = params.required("refresh_token")?;
        let invalid = || ApiError::InvalidGrant("the refresh token is invalid, expired or revoked".into());
        let ip = client_ip(&req.http);
        let digest = refresh_digest(state, token);
        let family = match state.store.peek_refresh_token(&digest).await? {
            Some((f, _)) if f.client_id != client.id => return Err(invalid()),
            Some((f, _)) if f.revoked || f.expires_at <= now() => return Err(invalid()),
            Some((f, true)) => return Err(reused(state, client, &f, ip.as_deref()).await?),
            Some((f, false)) => f,
            None => return Err(invalid()),
        };
        let user = state
            .store
            .user(&family.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(invalid)?;
        // The scope, checked before the token is spent (a bad request must not
        // burn it): what was granted, narrowed to what the client and the user
        // may carry now (SPEC §9).
        let granted = Scope::parse(&family.scope).unwrap_or_default();
        let scope = policy::refresh_scope(client, &granted, params.get("scope"), &user)?;
        // The resources granted, those the client may still ask for, or fewer (RFC 8707 §2.2).
        let granted_resources: Vec<String> = family
            .resources
            .split(' ')
            .filter(|r| !r.is_empty() && client.resources.iter().any(|c| c == r))
            .map(str::to_string)
            .collect();
        let audience = policy::refresh_audience(&granted_resources, &params.all("resource"))?;
        // Single use: of two racing requests, the loser is treated as a replay.
        if !state.store.consume_refresh_token(&digest).await? {
            return Err(reused(state, client, &family, ip.as_deref()).await?);
        }
        issue::issue(
            state,
            UserTokens {
                client,
                user: &user,
                scope: &scope,
                amr: family.amr.split(' ').map(str::to_string).collect(),
                auth_time: family.auth_time,
                nonce: None,
                family: Some(&family),
                new_family: None,
                ip: ip.as_deref(),
                grant: "refresh_token",
                audience,
                session_id: None,
            },
        )
        .await
    })
}

/// A rotated token presented again: revoke its whole family (RFC 9700 §4.14.2).
async fn reused(state: &AppState, client: &Client, family: &Family, ip: Option<&str>) -> Result<ApiError, ApiError> {
    state
        .revocations
        .revoke_family(&state.store, &family.id, state.settings.tokens.access_ttl)
        .await?;
    state.audit.record(Event {
        event: "refresh_reuse",
        client_id: Some(&client.id),
        user_id: Some(&family.user_id),
        ip,
        detail: Some("a rotated refresh token was presented again; its family is revoked"),
        ..Default::default()
    });
    tracing::warn!(client_id = %client.id, "refresh token reuse: family revoked");
    Ok(ApiError::InvalidGrant(
        "the refresh token is invalid, expired or revoked".into(),
    ))
}
