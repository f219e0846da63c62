//! ID tokens (OIDC Core §2, §3.1.3.6): `iss`, `sub`, `aud`, `exp`, `iat`,
//! `auth_time`, `nonce`, `amr` (RFC 8176), `acr`, `azp`, and the scope's claims.

use serde_json::Value;

use super::claims;
use crate::domain::{Client, Scope};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::now;
use crate::store::users::User;

/// The `acr` of a sign-in with a one-time code (a single factor the user holds).
pub const ACR: &str = "urn:sesame:acr:otp";

pub struct IdTokenFor<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub scope: &'a Scope,
    pub amr: &'a [String],
    pub auth_time: i64,
    pub nonce: Option<&'a str>,
    pub sid: Option<&'a str>,
}

pub fn issue(state: &AppState, t: &IdTokenFor<'_>) -> Result<String, ApiError> {
    let iat = now();
    let mut c = claims::for_scope(t.user, t.scope);
    c.insert("iss".into(), state.issuer().into());
    c.insert("aud".into(), t.client.id.clone().into());
    c.insert("azp".into(), t.client.id.clone().into());
    c.insert("iat".into(), iat.into());
    c.insert(
        "exp".into(),
        (iat + state.settings.tokens.access_ttl.as_secs() as i64).into(),
    );
    c.insert("auth_time".into(), t.auth_time.into());
    c.insert(
        "amr".into(),
        Value::Array(t.amr.iter().map(|a| a.clone().into()).collect()),
    );
    c.insert("acr".into(), ACR.into());
    if let Some(nonce) = t.nonce {
        c.insert("nonce".into(), nonce.into());
    }
    if let Some(sid) = t.sid {
        c.insert("sid".into(), sid.into());
    }
    Ok(state.keys.ring().sign("JWT", t.client.id_token_alg, c)?)
}
