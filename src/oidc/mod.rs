//! OpenID Connect: discovery, the key set, ID tokens, claims, userinfo,
//! RP-initiated and back-channel logout.

pub mod backchannel;
pub mod claims;
pub mod discovery;
pub mod id_token;
pub mod jwks;
pub mod logout;
pub mod userinfo;
