//! OpenID Connect: discovery, the key set, ID tokens, claims, userinfo.

pub mod claims;
pub mod discovery;
pub mod id_token;
pub mod jwks;
pub mod userinfo;
