//! What a token may carry (SPEC §9 "Admin power"): the one place that every
//! grant and the authorization endpoint ask before a scope is granted.
//!
//! - `sesame:admin` goes only into tokens of users with the admin role, or
//!   into `client_credentials` tokens of clients that list it.
//! - `sesame:account` goes only to `first_party` clients.
//! - Neither is ever granted unasked: a request without `scope` gets the
//!   client's other scopes (RFC 6749 §3.3 lets the server choose).
//! - A refresh returns at most what the client is registered for now, and
//!   what its holder may still carry.

use crate::domain::{Client, Scope};
use crate::error::ApiError;
use crate::store::users::User;

pub const ADMIN_SCOPE: &str = "sesame:admin";
pub const ACCOUNT_SCOPE: &str = "sesame:account";

/// Scopes that describe a user; a token for a client alone cannot carry them.
pub const USER_SCOPES: &[&str] = &["openid", "profile", "email", "phone", "address", "offline_access"];

/// Granted only when asked for by name.
const ONLY_ASKED: &[&str] = &[ADMIN_SCOPE, ACCOUNT_SCOPE];

/// Whom a token is for.
#[derive(Clone, Copy)]
pub enum Holder<'a> {
    User(&'a User),
    /// The client itself (`client_credentials`).
    Client,
}

/// Why a scope is refused: `invalid_scope` on the wire (RFC 6749 §5.2, §4.1.2.1).
#[derive(Debug, thiserror::Error)]
pub enum ScopeRefusal {
    #[error("{0}")]
    Malformed(String),
    #[error("scope not allowed for this client: {0}")]
    NotRegistered(String),
    #[error("`sesame:admin` is only for users with the admin role")]
    NotAnAdmin,
    #[error("`sesame:account` is only for first-party clients")]
    NotFirstParty,
    #[error("`{0}` needs a user; client_credentials has none")]
    NeedsAUser(String),
    #[error("a refresh cannot add scopes that were not granted")]
    NotGranted,
    /// RFC 8707 §2: `invalid_target`.
    #[error("resource not allowed for this client: {0}")]
    NotAResourceOfTheClient(String),
    #[error("a refresh cannot add resources that were not granted: {0}")]
    ResourceNotGranted(String),
}

impl From<ScopeRefusal> for ApiError {
    fn from(e: ScopeRefusal) -> Self {
        match e {
            ScopeRefusal::NotAResourceOfTheClient(_) | ScopeRefusal::ResourceNotGranted(_) => {
                ApiError::InvalidTarget(e.to_string())
            }
            _ => ApiError::InvalidScope(e.to_string()),
        }
    }
}

/// An absolute URI without a fragment or spaces (RFC 8707 §2).
pub fn is_resource_uri(uri: &str) -> bool {
    let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or("");
    !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && uri.len() > scheme.len() + 1
        && uri.len() <= 2000
        && !uri.contains('#')
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A token's audience (RFC 9068 §3, RFC 8707): the `resource`s asked for,
/// each one the client is registered for; none asked: `[]`, which stands for
/// the client itself (see `aud_claim`).
pub fn audience(client: &Client, requested: &[&str]) -> Result<Vec<String>, ScopeRefusal> {
    let mut out: Vec<String> = vec![];
    for r in requested {
        if !client.resources.iter().any(|allowed| allowed == r) {
            return Err(ScopeRefusal::NotAResourceOfTheClient(r.to_string()));
        }
        if !out.iter().any(|o| o == r) {
            out.push(r.to_string());
        }
    }
    Ok(out)
}

/// A refresh's audience: the `resource`s asked for, each among those granted
/// (RFC 8707 §2.2); none asked: all granted.
pub fn refresh_audience(granted: &[String], requested: &[&str]) -> Result<Vec<String>, ScopeRefusal> {
    if requested.is_empty() {
        return Ok(granted.to_vec());
    }
    match requested.iter().find(|r| !granted.iter().any(|g| g == *r)) {
        Some(r) => Err(ScopeRefusal::ResourceNotGranted(r.to_string())),
        None => Ok(requested.iter().map(|r| r.to_string()).collect()),
    }
}

/// The `aud` claim of an access token: its resources, else the client's id.
pub fn aud_claim(client_id: &str, resources: &[String]) -> serde_json::Value {
    match resources {
        [] => client_id.into(),
        [one] => one.clone().into(),
        many => many.to_vec().into(),
    }
}

/// The scope a new token gets: `requested`, or the client's scopes that are
/// granted unasked; refused when the client is not registered for it or the
/// holder may not carry it.
pub fn grant_scope(client: &Client, requested: Option<&str>, holder: Holder<'_>) -> Result<Scope, ScopeRefusal> {
    let scope =
        match requested {
            Some(text) => Scope::parse(text).map_err(|e| ScopeRefusal::Malformed(e.to_string()))?,
            None => Scope::from_tokens(client.scopes.iter().filter(|s| {
                !ONLY_ASKED.contains(s) && (matches!(holder, Holder::User(_)) || !USER_SCOPES.contains(s))
            })),
        };
    let excess: Vec<&str> = scope.excess(&client.scopes).collect();
    if !excess.is_empty() {
        return Err(ScopeRefusal::NotRegistered(excess.join(" ")));
    }
    may_carry(client, &scope, holder)?;
    Ok(scope)
}

/// What can be checked of a requested scope before the holder is known
/// (the authorization request, a grant before its proof is spent): that it
/// parses, that the client is registered for it, and `sesame:account` only
/// for a first-party client.
pub fn precheck(client: &Client, requested: Option<&str>) -> Result<(), ScopeRefusal> {
    let Some(text) = requested else { return Ok(()) };
    let scope = Scope::parse(text).map_err(|e| ScopeRefusal::Malformed(e.to_string()))?;
    let excess: Vec<&str> = scope.excess(&client.scopes).collect();
    if !excess.is_empty() {
        return Err(ScopeRefusal::NotRegistered(excess.join(" ")));
    }
    if scope.contains(ACCOUNT_SCOPE) && !client.first_party {
        return Err(ScopeRefusal::NotFirstParty);
    }
    Ok(())
}

/// The scope of a refreshed token: what was granted, narrowed to the
/// client's current registration and to what the user may carry now, then
/// to `requested` (which may not add anything).
pub fn refresh_scope(
    client: &Client,
    granted: &Scope,
    requested: Option<&str>,
    user: &User,
) -> Result<Scope, ScopeRefusal> {
    let allowed = Scope::from_tokens(granted.iter().filter(|s| {
        client.scopes.contains(s) && (*s != ADMIN_SCOPE || user.is_admin) && (*s != ACCOUNT_SCOPE || client.first_party)
    }));
    match requested {
        None => Ok(allowed),
        Some(text) => {
            let asked = Scope::parse(text).map_err(|e| ScopeRefusal::Malformed(e.to_string()))?;
            if asked.is_subset(&allowed) {
                Ok(asked)
            } else {
                Err(ScopeRefusal::NotGranted)
            }
        }
    }
}

/// Whether `holder` may carry every scope in `scope` from `client`.
fn may_carry(client: &Client, scope: &Scope, holder: Holder<'_>) -> Result<(), ScopeRefusal> {
    if scope.contains(ACCOUNT_SCOPE) && (!client.first_party || matches!(holder, Holder::Client)) {
        return Err(ScopeRefusal::NotFirstParty);
    }
    match holder {
        Holder::User(user) if scope.contains(ADMIN_SCOPE) && !user.is_admin => Err(ScopeRefusal::NotAnAdmin),
        Holder::Client => match scope.iter().find(|s| USER_SCOPES.contains(s)) {
            Some(s) => Err(ScopeRefusal::NeedsAUser(s.to_string())),
            None => Ok(()),
        },
        Holder::User(_) => Ok(()),
    }
}
