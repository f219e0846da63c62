//! A registered client application (RFC 6749 §2).

use crate::config::SigningAlg;
use crate::crypto;
use crate::domain::Scope;

/// Grant types a client may be registered for.
pub const KNOWN_GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "otp",
    "password",
];

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// `sha256$<hex>`; `None` for public clients.
    pub secret_digest: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Scope,
    pub public: bool,
    pub skip_consent: bool,
    /// Sesame's operator's own app: may receive `sesame:account` (SPEC §9).
    pub first_party: bool,
    /// Where the OTP API's emails link to, with `?token=…` (SPEC §3); `None`: code only.
    pub magic_link_uri: Option<String>,
    /// Resource servers the client may ask tokens for (RFC 8707 `resource`):
    /// absolute URIs without a fragment. A token for none is for the client itself.
    pub resources: Vec<String>,
    /// How its ID tokens are signed (OIDC Registration `id_token_signed_response_alg`).
    pub id_token_alg: SigningAlg,
    /// Where it hears that a user signed out (OpenID Connect Back-Channel Logout 1.0).
    pub backchannel_logout_uri: Option<String>,
    /// Whether its logout tokens must name the session (`sid`).
    pub backchannel_logout_session_required: bool,
    /// Where the client was registered: `file`, `cli` or `api`.
    pub source: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Client {
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }

    /// Constant-time check of a presented secret against the stored digest.
    pub fn secret_matches(&self, presented: &str) -> bool {
        match &self.secret_digest {
            Some(stored) => crypto::ct_eq(hash_secret(presented).as_bytes(), stored.as_bytes()),
            None => false,
        }
    }
}

/// A new client secret: 256 bits from the OS CSPRNG.
pub fn generate_secret() -> String {
    crypto::random_token::<32>()
}

/// The stored form of a client secret. Generated secrets carry 256 bits, so a
/// fast digest is as safe as a slow one and keeps the token endpoint fast.
pub fn hash_secret(secret: &str) -> String {
    format!("sha256${}", crypto::sha256_hex(secret.as_bytes()))
}

pub fn is_secret_hash(text: &str) -> bool {
    text.strip_prefix("sha256$")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An URL Sesame sends users or requests to on an app's behalf: https (http
/// only on a loopback host), no fragment, no spaces.
fn is_app_url(uri: &str) -> bool {
    (uri.starts_with("https://") || crate::config::issuer_is_loopback_http(uri))
        && !uri.contains('#')
        && uri.len() <= 2000
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks the parts of a registration every entry point shares.
pub fn validate(client: &Client) -> Result<(), String> {
    if let Some(bad) = client
        .resources
        .iter()
        .find(|r| !crate::oauth::policy::is_resource_uri(r))
    {
        return Err(format!(
            "resource `{bad}` must be an absolute URI without a fragment or spaces"
        ));
    }
    if client.scopes.contains(crate::oauth::policy::ACCOUNT_SCOPE) && !client.first_party {
        return Err("only a first_party client may list the sesame:account scope".into());
    }
    for (name, uri) in [
        ("magic_link_uri", &client.magic_link_uri),
        ("backchannel_logout_uri", &client.backchannel_logout_uri),
    ] {
        if uri.as_deref().is_some_and(|u| !is_app_url(u)) {
            return Err(format!(
                "{name} must be an https URL (http only on a loopback host) without spaces or a fragment"
            ));
        }
    }
    if client.id.is_empty()
        || client.id.len() > 128
        || !client
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err("client id must be 1-128 characters of letters, digits, '-', '_' or '.'".into());
    }
    if client.name.trim().is_empty() {
        return Err("client name must not be empty".into());
    }
    if client.name.chars().count() > 200 {
        return Err("client name must be at most 200 characters".into());
    }
    if let Some(g) = client
        .grant_types
        .iter()
        .find(|g| !KNOWN_GRANT_TYPES.contains(&g.as_str()))
    {
        return Err(format!(
            "unknown grant type `{g}` (known: {})",
            KNOWN_GRANT_TYPES.join(", ")
        ));
    }
    for uri in client.redirect_uris.iter().chain(&client.post_logout_redirect_uris) {
        if !(uri.starts_with("https://") || uri.starts_with("http://") || is_private_scheme(uri)) || uri.contains('#') {
            return Err(format!(
                "redirect URI `{uri}` must be an absolute URI without a fragment"
            ));
        }
    }
    if client.public && client.allows_grant("client_credentials") {
        return Err("a public client cannot use client_credentials".into());
    }
    if client.public && client.allows_grant("otp") {
        return Err("a public client cannot use the otp grant: the OTP API is for confidential backends".into());
    }
    Ok(())
}

/// Native apps may use private-use URI schemes (RFC 8252 §7.1), e.g. `com.example.app:/cb`.
fn is_private_scheme(uri: &str) -> bool {
    match uri.split_once(':') {
        Some((scheme, rest)) => {
            scheme.contains('.')
                && !rest.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_secret_matches_only_itself() {
        let secret = generate_secret();
        let client = Client {
            id: "a".into(),
            name: "A".into(),
            secret_digest: Some(hash_secret(&secret)),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: vec![],
            scopes: Scope::default(),
            public: false,
            skip_consent: false,
            first_party: false,
            magic_link_uri: None,
            resources: vec![],
            id_token_alg: SigningAlg::RS256,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            source: "cli".into(),
            created_at: 0,
            updated_at: 0,
        };
        assert!(client.secret_matches(&secret));
        assert!(!client.secret_matches("wrong"));
        assert!(is_secret_hash(client.secret_digest.as_deref().unwrap()));
    }
}
