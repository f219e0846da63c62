//! Tokens for a signed-in user, shared by every user grant: an access token,
//! a refresh token in a family (when the client may refresh), and an ID
//! token when `openid` is in scope.

use super::access_token;
use super::grants::TokenResponse;
use crate::crypto;
use crate::domain::{Client, Scope};
use crate::error::ApiError;
use crate::oidc::id_token::{self, IdTokenFor};
use crate::state::AppState;
use crate::store::audit::Event;
use crate::store::now;
use crate::store::tokens::Family;
use crate::store::users::User;

pub struct UserTokens<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub scope: &'a Scope,
    /// RFC 8176 methods, e.g. `["otp", "sms"]`.
    pub amr: Vec<String>,
    pub auth_time: i64,
    pub nonce: Option<&'a str>,
    /// The family a refresh token is being rotated in; `None` starts one
    /// (when the client may refresh, or when `new_family` names it).
    pub family: Option<&'a Family>,
    /// The id of the family to start, decided by the caller: an exchanged
    /// authorization code records it first, so that a second use of the code
    /// can revoke what this one issued. Such a family is started even for a
    /// client without refresh tokens, so its access tokens can be revoked.
    pub new_family: Option<String>,
    pub ip: Option<&'a str>,
    pub grant: &'a str,
    /// The resources the access token is for (RFC 8707); empty: the client.
    pub audience: Vec<String>,
    /// The browser session a new family comes from (authorization code flow).
    pub session_id: Option<&'a str>,
}

pub fn refresh_digest(state: &AppState, token: &str) -> String {
    state.digester.digest("refresh", token)
}

pub async fn issue(state: &AppState, t: UserTokens<'_>) -> Result<TokenResponse, ApiError> {
    let stored = store(state, &t).await?;
    sign(state, t, stored)
}

/// What `store` wrote: the refresh token to hand out and the family id.
pub struct Stored {
    refresh_token: Option<String>,
    family_id: Option<String>,
}

/// The database half of `issue`: the refresh token and its family. A
/// grant can run it in its statement group and sign outside it.
pub async fn store(state: &AppState, t: &UserTokens<'_>) -> Result<Stored, ApiError> {
    let refreshes = t.client.allows_grant("refresh_token");
    let (refresh_token, family_id) = match (t.family, &t.new_family) {
        (Some(f), _) => {
            let token = crypto::random_token::<32>();
            state
                .store
                .insert_refresh_token(&refresh_digest(state, &token), &f.id)
                .await?;
            (Some(token), Some(f.id.clone()))
        }
        (None, new_family) if refreshes || new_family.is_some() => {
            let token = refreshes.then(crypto::random_token::<32>);
            let family = Family {
                id: new_family.clone().unwrap_or_else(crypto::random_token::<16>),
                client_id: t.client.id.clone(),
                user_id: t.user.id.clone(),
                scope: t.scope.to_string(),
                amr: t.amr.join(" "),
                auth_time: t.auth_time,
                expires_at: now() + state.settings.tokens.refresh_ttl.as_secs() as i64,
                revoked: false,
                resources: t.audience.join(" "),
                session_id: t.session_id.map(str::to_string),
            };
            let digest = token.as_deref().map(|t| refresh_digest(state, t));
            state.store.insert_family(&family, digest.as_deref()).await?;
            (token, Some(family.id))
        }
        (None, _) => (None, None),
    };
    // Recorded here, with what was stored, so that a grant that stores in
    // its statement group commits the event with it (one write less than
    // after signing). Signing cannot fail but for a broken key (a 500); the
    // event then names tokens that were stored and never handed out.
    state.audit.record(Event {
        event: "token_issued",
        client_id: Some(&t.client.id),
        user_id: Some(&t.user.id),
        ip: t.ip,
        detail: Some(t.grant),
        ..Default::default()
    });
    Ok(Stored {
        refresh_token,
        family_id,
    })
}

/// The signing half of `issue`: the access token and the ID token.
pub fn sign(state: &AppState, t: UserTokens<'_>, stored: Stored) -> Result<TokenResponse, ApiError> {
    let Stored {
        refresh_token,
        family_id,
    } = stored;
    // OIDC `sid`: the browser session the tokens came from (one per session
    // however often the app renews them, as back-channel logout names it),
    // else the family.
    let session = t.session_id.or_else(|| t.family.and_then(|f| f.session_id.as_deref()));
    let sid = session.or(family_id.as_deref());
    let access = access_token::issue(
        state,
        &access_token::Grant {
            sub: &t.user.id,
            client: t.client,
            scope: t.scope,
            family: family_id.as_deref(),
            auth_time: Some(t.auth_time),
            audience: &t.audience,
        },
    )?;
    let id_token = if t.scope.contains("openid") {
        Some(id_token::issue(
            state,
            &IdTokenFor {
                client: t.client,
                user: t.user,
                scope: t.scope,
                amr: &t.amr,
                auth_time: t.auth_time,
                nonce: t.nonce,
                sid,
            },
        )?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token,
        scope: t.scope.to_string(),
        id_token,
    })
}
