//! OpenID Connect: discovery and the key set.

pub mod discovery;
pub mod jwks;
