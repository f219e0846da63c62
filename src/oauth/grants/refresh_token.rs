//! RFC 6749 §6: refresh tokens are opaque, stored as digests, bound to their
//! client, rotated on every use (OAuth 2.1 §4.3.1), with an absolute lifetime
//! (`tokens.refresh_ttl` from the sign-in). Presenting a rotated token again
//! revokes its whole family, access tokens included (RFC 9700 §4.14.2).

use super::{Grant, GrantFuture, GrantRequest};
use crate::domain::Scope;
use crate::error::ApiError;
use crate::oauth::issue::{self, refresh_digest, UserTokens};
use crate::params::peer_ip;
use crate::store::audit::Event;
use crate::store::tokens::Presented;

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
        let ip = peer_ip(&req.http);
        let digest = refresh_digest(state, token);
        // Check the requested scope before the token is spent: a bad request must not burn it.
        let granted = match state.store.peek_refresh_token(&digest).await? {
            Some((f, _)) if f.client_id == client.id => Scope::parse(&f.scope).unwrap_or_default(),
            _ => return Err(invalid()),
        };
        let scope = match params.get("scope") {
            None => granted,
            Some(text) => {
                let asked = Scope::parse(text).map_err(|e| ApiError::InvalidScope(e.to_string()))?;
                if !asked.is_subset(&granted) {
                    return Err(ApiError::InvalidScope(
                        "a refresh cannot add scopes that were not granted".into(),
                    ));
                }
                asked
            }
        };
        let family = match state.store.present_refresh_token(&digest, &client.id).await? {
            Presented::Consumed(f) => f,
            Presented::Reused(f) => {
                state
                    .revocations
                    .revoke_family(&state.store, &f.id, state.settings.tokens.access_ttl)
                    .await?;
                let e = Event {
                    event: "refresh_reuse",
                    client_id: Some(&client.id),
                    user_id: Some(&f.user_id),
                    ip: ip.as_deref(),
                    detail: Some("a rotated refresh token was presented again; its family is revoked"),
                    ..Default::default()
                };
                state.audit.record(e);
                tracing::warn!(client_id = %client.id, "refresh token reuse: family revoked");
                return Err(invalid());
            }
            Presented::Unknown | Presented::Dead(_) => return Err(invalid()),
        };
        let user = state
            .store
            .user(&family.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(invalid)?;
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
                ip: ip.as_deref(),
                grant: "refresh_token",
            },
        )
        .await
    })
}
