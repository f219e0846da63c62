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
}

impl From<ScopeRefusal> for ApiError {
    fn from(e: ScopeRefusal) -> Self {
        ApiError::InvalidScope(e.to_string())
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
