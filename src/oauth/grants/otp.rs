//! The `otp` grant (RFC 6749 §4.5 extension; also
//! `urn:sesame:params:oauth:grant-type:otp`): a confidential client exchanges
//! a `secret_identifier` from `/otp/verifycode/` (single use, bound to the
//! client and identifier) or a code directly, for the user's tokens. The
//! phone number or email alone never yields tokens.

use super::{Grant, GrantFuture, GrantRequest};
use crate::accounts::{Accounts, Actor, Profile};
use crate::domain::{Client, Identifier, Scope};
use crate::error::{invalid_request, ApiError};
use crate::oauth::issue::{self, UserTokens};
use crate::oauth::policy::{self, Holder};
use crate::otp::{self, Origin};
use crate::params::{client_ip, Params};
use crate::state::AppState;
use crate::store::users::User;

pub const GRANT: Grant = Grant {
    name: "otp",
    aliases: &["urn:sesame:params:oauth:grant-type:otp"],
    handle,
};

fn handle(req: GrantRequest) -> GrantFuture {
    Box::pin(async move {
        let (state, client, params) = (&req.state, &req.client, &req.params);
        let ident = Identifier::from_params(params.get("phone"), params.get("email"), &state.settings.phones())
            .map_err(invalid_request)?;
        // What can be checked before the proof is spent; the rest once the account is known.
        policy::precheck(client, params.get("scope"))?;
        let audience = policy::audience(client, &params.all("resource"))?;
        let ip = client_ip(&req.http);
        let origin = Origin {
            client,
            ip: ip.as_deref(),
            browser: None,
        };
        let amr = match ident {
            Identifier::Phone(_) => vec!["otp".to_string(), "sms".to_string()],
            Identifier::Email(_) => vec!["otp".to_string()],
        };
        let auth_time = crate::store::now();
        // Everything stored is one group, so one commit on SQLite; the
        // tokens are signed after it.
        let (user, scope, stored) = state
            .store
            .grouped(async {
                let user = prove_and_find_account(state, &origin, params, &ident).await?;
                if user.disabled {
                    return Err(ApiError::InvalidGrant("this account is disabled".into()));
                }
                let scope = policy::grant_scope(client, params.get("scope"), Holder::User(&user))?;
                let stored = issue::store(
                    state,
                    &tokens_for(client, &user, &scope, &amr, auth_time, ip.as_deref(), &audience),
                )
                .await?;
                Ok((user, scope, stored))
            })
            .await?;
        issue::sign(
            state,
            tokens_for(client, &user, &scope, &amr, auth_time, ip.as_deref(), &audience),
            stored,
        )
    })
}

fn tokens_for<'a>(
    client: &'a Client,
    user: &'a User,
    scope: &'a Scope,
    amr: &[String],
    auth_time: i64,
    ip: Option<&'a str>,
    audience: &[String],
) -> UserTokens<'a> {
    UserTokens {
        client,
        user,
        scope,
        amr: amr.to_vec(),
        auth_time,
        nonce: None,
        family: None,
        new_family: None,
        ip,
        grant: "otp",
        audience: audience.to_vec(),
        session_id: None,
    }
}

/// Spends the `secret_identifier` or the code, and finds the account (or
/// creates it, with `otp.auto_create_accounts`).
async fn prove_and_find_account(
    state: &AppState,
    origin: &Origin<'_>,
    params: &Params,
    ident: &Identifier,
) -> Result<User, ApiError> {
    let client = origin.client;
    let auto_create = state.settings.otp.auto_create_accounts;
    let create_first = || {
        ApiError::InvalidGrant("no account for this identifier: create the account first (PUT /api/v1/user/)".into())
    };

    let proof = match (params.get("code"), params.get("magic_token")) {
        (None, None) => None,
        (code, token) => Some(otp::Proof::from_params(code, token)?),
    };
    let existing = match (params.get("secret_identifier"), proof) {
        (Some(secret), None) => {
            let digest = otp::secret_identifier_digest(state, secret);
            let key = otp::ident_key(state, ident);
            let bad = || {
                ApiError::InvalidGrant(
                    "secret_identifier is invalid, expired, used, or not for this client and identifier".into(),
                )
            };
            // Without `auto_create_accounts`, the identifier is spent only
            // if its account exists: the app can create it and retry.
            let (existing, consumed) = state
                .store
                .consume_verified_identifier(&digest, &client.id, &key, (ident.kind(), ident.key()), !auto_create)
                .await?;
            if consumed.is_none() {
                // Not spent: no account held the identifier when the secret
                // was tried (or it was not live).
                if !auto_create {
                    let live = state
                        .store
                        .verified_identifier(&digest, &client.id)
                        .await?
                        .filter(|v| v.ident_key == key);
                    return Err(if live.is_some() { create_first() } else { bad() });
                }
                return Err(bad());
            }
            match existing {
                // Spent for an account made between the two statements: found now.
                None if !auto_create => state.store.user_by_identifier(ident.kind(), ident.key()).await?,
                found => found,
            }
        }
        (None, Some(proof)) => {
            let existing = state.store.user_by_identifier(ident.kind(), ident.key()).await?;
            proof.verify(state, origin, ident).await.map_err(|e| match e {
                // RFC 6749 §5.2: a bad grant at the token endpoint.
                otp::OtpError::WrongCode | otp::OtpError::WrongMagicLink => ApiError::InvalidGrant(e.to_string()),
                other => other.into(),
            })?;
            existing
        }
        (Some(_), Some(_)) => {
            return Err(invalid_request(
                "send one of `secret_identifier`, `code` or `magic_token`",
            ))
        }
        (None, None) => {
            return Err(invalid_request(
                "`secret_identifier` (from /otp/verifycode/), `code` or `magic_token` is required",
            ));
        }
    };

    match existing {
        Some(u) => Ok(u),
        None if auto_create => {
            // `otp.auto_create_accounts`: an account with just the verified identifier.
            let profile = Profile::for_verified(ident);
            Ok(Accounts::of(state)
                .create(&profile, Actor::Client(&client.id), origin.ip)
                .await?)
        }
        None => Err(create_first()),
    }
}
