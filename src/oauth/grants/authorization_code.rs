//! RFC 6749 §4.1.3 with PKCE (RFC 7636): exchanges a code from
//! `/oauth2/authorize` for tokens. The code is single use (one atomic
//! statement), lives 60 s, and is bound to the client (another client's
//! attempt neither spends nor revokes it), the redirect URI and the PKCE
//! challenge. A second use is `invalid_grant` and revokes what the
//! first use issued (RFC 6749 §4.1.2, RFC 9700 §4.2.1).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::Digest;

use super::{Grant, GrantFuture, GrantRequest};
use crate::crypto;
use crate::domain::Scope;
use crate::error::ApiError;
use crate::oauth::authorize::code_digest;
use crate::oauth::issue::{self, UserTokens};
use crate::oauth::policy;
use crate::params::client_ip;
use crate::store::audit::Event;
use crate::store::auth_codes::{AuthCode, Exchange};
use crate::store::now;

pub const GRANT: Grant = Grant {
    name: "authorization_code",
    aliases: &[],
    handle,
};

fn bad(why: &str) -> ApiError {
    ApiError::InvalidGrant(why.into())
}

fn handle(req: GrantRequest) -> GrantFuture {
    Box::pin(async move {
        let (state, client, params) = (&req.state, &req.client, &req.params);
        let code = params.required("code")?;
        let ip = client_ip(&req.http);
        let family_id = crypto::random_token::<16>();
        let digest = code_digest(state, code);
        // Checked before the code is spent: a wrong verifier or redirect URI
        // (e.g. someone holding a public client's code) burns nothing.
        if let Some(unused) = state.store.peek_auth_code(&digest, &client.id).await? {
            check(&unused, params)?;
        }
        let code = match state.store.exchange_auth_code(&digest, &client.id, &family_id).await? {
            Exchange::Fresh(c) => c,
            Exchange::Reused { family_id } => {
                if let Some(family) = family_id {
                    state
                        .revocations
                        .revoke_family(&state.store, &family, state.settings.tokens.access_ttl)
                        .await?;
                }
                state.audit.record(Event {
                    event: "code_reuse",
                    client_id: Some(&client.id),
                    ip: ip.as_deref(),
                    detail: Some("an authorization code was presented again; what it issued is revoked"),
                    ..Default::default()
                });
                tracing::warn!(client_id = %client.id, "authorization code reuse: its tokens are revoked");
                return Err(bad("the authorization code was already used"));
            }
            Exchange::Unknown => return Err(bad("the authorization code is invalid")),
        };
        check(&code, params)?;
        let user = state
            .store
            .user(&code.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(|| bad("the account is disabled or gone"))?;
        // Asked again: the user's role or the client's registration may have
        // changed since the code was issued.
        let scope = policy::refresh_scope(client, &Scope::parse(&code.scope).unwrap_or_default(), None, &user)?;
        let granted: Vec<String> = code
            .resources
            .split(' ')
            .filter(|r| !r.is_empty() && client.resources.iter().any(|c| c == r))
            .map(str::to_string)
            .collect();
        let audience = policy::refresh_audience(&granted, &params.all("resource"))?;
        issue::issue(
            state,
            UserTokens {
                client,
                user: &user,
                scope: &scope,
                amr: code
                    .amr
                    .split(' ')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
                auth_time: code.auth_time,
                nonce: code.nonce.as_deref(),
                family: None,
                new_family: Some(family_id),
                ip: ip.as_deref(),
                grant: "authorization_code",
                audience,
                session_id: code.session_id.as_deref(),
            },
        )
        .await
    })
}

/// Expiry, redirect URI and PKCE (RFC 6749 §4.1.3, RFC 7636 §4.6).
fn check(code: &AuthCode, params: &crate::params::Params) -> Result<(), ApiError> {
    if code.expires_at <= now() {
        return Err(bad("the authorization code has expired"));
    }
    if params.get("redirect_uri") != Some(code.redirect_uri.as_str()) {
        return Err(bad("redirect_uri does not match the authorization request"));
    }
    match (&code.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            let well_formed = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            let hashed = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
            if !well_formed || !crypto::ct_eq(hashed.as_bytes(), challenge.as_bytes()) {
                return Err(bad("code_verifier does not match the code_challenge"));
            }
            Ok(())
        }
        (Some(_), None) => Err(bad("code_verifier is required (PKCE)")),
        (None, Some(_)) => Err(bad(
            "code_verifier sent, but the authorization request had no code_challenge",
        )),
        (None, None) => Ok(()),
    }
}
