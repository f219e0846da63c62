//! OAuth 2.0: client authentication, tokens, grants, introspection, revocation.

pub mod access_token;
pub mod authorize;
pub mod client_auth;
pub mod grants;
pub mod introspect;
pub mod issue;
pub mod policy;
pub mod revocations;
pub mod revoke;
pub mod token;
