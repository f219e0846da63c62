//! RFC 6749 §4.3, for clients that list the `password` grant (others get
//! `unauthorized_client` from the registry check). The user signs in with a
//! username or email and the password set with `PATCH /api/v1/user/`.
//! Wrong passwords are limited per account and per source IP, then locked
//! (`passwords.*`), answering 429 with `Retry-After` like the code limits.

use super::{requested_scope, Grant, GrantFuture, GrantRequest};
use crate::api::users::verify_password;
use crate::error::ApiError;
use crate::oauth::issue::{self, UserTokens};
use crate::params::peer_ip;
use crate::state::AppState;
use crate::store::audit::Event;
use crate::store::now;
use crate::store::users::User;

pub const GRANT: Grant = Grant {
    name: "password",
    aliases: &[],
    handle,
};

fn locked(secs: i64) -> ApiError {
    ApiError::TooManyRequests {
        retry_after: secs.max(1) as u64,
        description: "too many wrong passwords; try again later".into(),
    }
}

/// Counts a wrong password against `key`; locks it once over `max`.
async fn fail(state: &AppState, key: &str, max: u32) -> Result<(), ApiError> {
    let window = state.settings.passwords.lockout.as_secs() as i64;
    let (n, _) = state.store.hit(&format!("pwfail:{key}"), window).await?;
    if n >= max as i64 {
        state.store.lock_identifier(key, now() + window).await?;
    }
    Ok(())
}

fn handle(req: GrantRequest) -> GrantFuture {
    Box::pin(async move {
        let (state, client, params) = (&req.state, &req.client, &req.params);
        let login = params.required("username")?;
        let password = params.required("password")?;
        let scope = requested_scope(params, client, || client.scopes.clone())?;
        let ip = peer_ip(&req.http);
        let user = check_password(state, &client.id, login, password, ip.as_deref())
            .await?
            .ok_or_else(|| ApiError::InvalidGrant("wrong username or password".into()))?;
        issue::issue(
            state,
            UserTokens {
                client,
                user: &user,
                scope: &scope,
                amr: vec!["pwd".to_string()],
                auth_time: now(),
                nonce: None,
                family: None,
                new_family: None,
                ip: ip.as_deref(),
                grant: "password",
            },
        )
        .await
    })
}

/// Checks a username-or-email and password under the failure limits (also
/// used by `/login`). `None` for a wrong pair or a disabled account; 429 while
/// the account or the source IP is locked.
pub async fn check_password(
    state: &AppState,
    client_id: &str,
    login: &str,
    password: &str,
    ip: Option<&str>,
) -> Result<Option<User>, ApiError> {
    let ip_key = format!("pwip:{}", ip.unwrap_or("-"));
    if let Some(secs) = state.store.identifier_locked_for(&ip_key).await? {
        return Err(locked(secs));
    }
    let found = state.store.user_for_password(login).await?;
    let account_key = found.as_ref().map(|(u, _)| format!("pwuser:{}", u.id));
    if let Some(key) = &account_key {
        if let Some(secs) = state.store.identifier_locked_for(key).await? {
            return Err(locked(secs));
        }
    }
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, None),
    };
    if !verify_password(hash, password.to_string()).await? {
        let limits = &state.settings.passwords;
        fail(state, &ip_key, limits.ip_max_failures).await?;
        if let Some(key) = &account_key {
            fail(state, key, limits.max_failures).await?;
        }
        let e = Event {
            event: "password_failed",
            client_id: Some(client_id),
            user_id: user.as_ref().map(|u| u.id.as_str()),
            ip,
            ..Default::default()
        };
        state.audit.record(e);
        return Ok(None);
    }
    Ok(user.filter(|u| !u.disabled))
}
