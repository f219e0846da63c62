//! Access tokens: JWTs per RFC 9068 (`typ: at+jwt`), signed with the current
//! key. They are checked without a database read of their own; revocation is
//! a list of `jti`s (and token families) kept until the tokens expire.

use serde_json::{Map, Value};

use crate::crypto;
use crate::domain::{Client, Scope};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::now;

pub const TYP: &str = "at+jwt";

/// What an access token is about.
pub struct Grant<'a> {
    pub sub: &'a str,
    pub client: &'a Client,
    pub scope: &'a Scope,
    /// The refresh-token family the token was issued from, if any.
    pub family: Option<&'a str>,
    pub auth_time: Option<i64>,
    /// The resources it is for (RFC 8707); empty: the client itself.
    pub audience: &'a [String],
}

pub struct Issued {
    pub token: String,
    pub expires_in: i64,
}

/// RFC 9068 §2.2: `iss`, `exp`, `aud`, `sub`, `client_id`, `iat`, `jti`, `scope`.
pub fn issue(state: &AppState, grant: &Grant<'_>) -> Result<Issued, ApiError> {
    let ttl = state.settings.tokens.access_ttl.as_secs() as i64;
    let iat = now();
    let mut claims = Map::new();
    claims.insert("iss".into(), state.issuer().into());
    claims.insert("sub".into(), grant.sub.into());
    claims.insert("aud".into(), super::policy::aud_claim(&grant.client.id, grant.audience));
    claims.insert("client_id".into(), grant.client.id.clone().into());
    claims.insert("scope".into(), grant.scope.to_string().into());
    claims.insert("jti".into(), crypto::random_token::<16>().into());
    claims.insert("iat".into(), iat.into());
    claims.insert("exp".into(), (iat + ttl).into());
    if let Some(family) = grant.family {
        claims.insert("sid".into(), family.into());
    }
    if let Some(auth_time) = grant.auth_time {
        claims.insert("auth_time".into(), auth_time.into());
    }
    let token = state.keys.ring().sign(TYP, state.settings.tokens.signing_alg, claims)?;
    Ok(Issued { token, expires_in: ttl })
}

/// An access token whose signature, type, issuer and expiry have been checked.
#[derive(Debug)]
pub struct Verified {
    jws: std::sync::Arc<crate::jose::VerifiedJws>,
}

impl Verified {
    /// The token's claims (shared with the keyring's verified-token cache, not copied).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.jws.claims
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        self.jws.claims.get(name).and_then(Value::as_str)
    }
    pub fn int(&self, name: &str) -> i64 {
        self.jws.claims.get(name).and_then(Value::as_i64).unwrap_or(0)
    }
    pub fn jti(&self) -> &str {
        self.str("jti").unwrap_or("")
    }
    pub fn client_id(&self) -> &str {
        self.str("client_id").unwrap_or("")
    }
    pub fn scope(&self) -> Scope {
        Scope::parse(self.str("scope").unwrap_or("")).unwrap_or_default()
    }
}

/// Signature, `typ`, `iss` and `exp` only: a token that may since have been revoked.
pub fn verify_signed(state: &AppState, token: &str) -> Option<Verified> {
    let jws = state.keys.ring().verify(token)?;
    if jws.typ.as_deref() != Some(TYP) || jws.claims.get("iss").and_then(Value::as_str) != Some(state.issuer()) {
        return None;
    }
    let v = Verified { jws };
    if v.int("exp") <= now() || v.jti().is_empty() {
        return None;
    }
    Some(v)
}

/// A token that is valid now: signed by us, unexpired, not revoked, and its client still registered.
pub async fn verify_active(state: &AppState, token: &str) -> Result<Option<Verified>, ApiError> {
    let Some(v) = verify_signed(state, token) else {
        return Ok(None);
    };
    if state
        .revocations
        .is_revoked(
            &state.store,
            v.jti(),
            v.str("sid"),
            v.str("sub").map(|s| (s, v.int("iat"))),
        )
        .await?
    {
        return Ok(None);
    }
    if state.store.client(v.client_id()).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(v))
}
