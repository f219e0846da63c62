//! Registering clients: the one service behind `clients.toml`, the CLI and the
//! admin API and pages. Generated secrets are shown once and stored as
//! digests. Every change made here is recorded in the audit trail, the same
//! way whoever makes it (`By`); `clients.toml` is its own record.

use anyhow::bail;

use crate::audit::AuditLog;
use crate::config::SigningAlg;
use crate::domain::client::{self, generate_secret, hash_secret, Client};
use crate::domain::Scope;
use crate::store::audit::Event;
use crate::store::Store;

/// Who changes a client, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    /// An admin on the admin pages.
    AdminUser(&'a str),
    /// A client with `sesame:admin` on the admin API, from this address.
    AdminClient { client_id: &'a str, ip: Option<&'a str> },
    /// The `sesame client` command.
    Cli,
}

/// Records `event` for the client `id`: the client is the event's client,
/// an admin user its user, and the detail says who made the change.
fn record(audit: &AuditLog, event: &str, id: &str, by: By<'_>) {
    let (user_id, ip, detail) = match by {
        By::AdminUser(user) => (Some(user), None, format!("by admin user {user}")),
        By::AdminClient { client_id, ip } => (None, ip, format!("by client {client_id}")),
        By::Cli => (None, None, "by the CLI".to_string()),
    };
    audit.record(Event {
        event,
        client_id: Some(id),
        user_id,
        ip,
        detail: Some(&detail),
        ..Default::default()
    });
}

pub mod file;

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The metadata breaks a rule (RFC 7591 `invalid_client_metadata`).
    #[error("{0}")]
    Invalid(String),
    #[error("a client with id `{0}` already exists")]
    Taken(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// What a caller supplies to register a client.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub id: Option<String>,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub public: bool,
    pub skip_consent: bool,
    pub first_party: bool,
    pub magic_link_uri: Option<String>,
    pub resources: Vec<String>,
    /// `None`: RS256, as OIDC Registration says.
    pub id_token_alg: Option<SigningAlg>,
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
}

impl NewClient {
    /// The client this registration describes, with `secret_digest` left empty.
    pub fn into_client(self, source: &str) -> Result<Client, RegisterError> {
        let scopes = Scope::parse(&self.scopes.join(" ")).map_err(|e| RegisterError::Invalid(e.to_string()))?;
        let c = Client {
            id: self.id.unwrap_or_else(crate::crypto::random_id::<12>),
            name: self.name,
            secret_digest: None,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            grant_types: if self.grant_types.is_empty() {
                vec!["authorization_code".into()]
            } else {
                self.grant_types
            },
            scopes: if scopes.is_empty() {
                Scope::from_tokens(["openid"])
            } else {
                scopes
            },
            public: self.public,
            skip_consent: self.skip_consent,
            first_party: self.first_party,
            magic_link_uri: self.magic_link_uri,
            resources: self.resources,
            id_token_alg: self.id_token_alg.unwrap_or(SigningAlg::RS256),
            backchannel_logout_uri: self.backchannel_logout_uri,
            backchannel_logout_session_required: self.backchannel_logout_session_required,
            source: source.into(),
            created_at: 0,
            updated_at: 0,
        };
        client::validate(&c).map_err(RegisterError::Invalid)?;
        Ok(c)
    }
}

/// Registers a client; returns it and, for a confidential client, its secret (shown once).
pub async fn register(
    store: &Store,
    audit: &AuditLog,
    new: NewClient,
    source: &str,
    by: By<'_>,
) -> Result<(Client, Option<String>), RegisterError> {
    let mut c = new.into_client(source)?;
    let secret = (!c.public).then(generate_secret);
    c.secret_digest = secret.as_deref().map(hash_secret);
    if !store.insert_client(&c).await? {
        return Err(RegisterError::Taken(c.id));
    }
    record(audit, "client_created", &c.id, by);
    let c = store.client(&c.id).await?.unwrap_or(c);
    Ok((c, secret))
}

/// Saves changed metadata of an existing client.
pub async fn update(store: &Store, audit: &AuditLog, c: &Client, by: By<'_>) -> Result<(), RegisterError> {
    client::validate(c).map_err(RegisterError::Invalid)?;
    if !store.update_client(c).await? {
        return Err(RegisterError::Invalid(format!("no client with id `{}`", c.id)));
    }
    record(audit, "client_updated", &c.id, by);
    Ok(())
}

/// Replaces the secret of a confidential client; the old one stops working at once.
pub async fn rotate_secret(store: &Store, audit: &AuditLog, id: &str, by: By<'_>) -> anyhow::Result<String> {
    let Some(c) = store.client(id).await? else {
        bail!("no client with id `{id}`");
    };
    if c.public {
        bail!("client `{id}` is public and has no secret");
    }
    let secret = generate_secret();
    store.set_client_secret(id, Some(&hash_secret(&secret))).await?;
    record(audit, "client_secret_rotated", id, by);
    Ok(secret)
}

/// Deletes a client: whether there was one.
pub async fn delete(store: &Store, audit: &AuditLog, id: &str, by: By<'_>) -> anyhow::Result<bool> {
    let deleted = store.delete_client(id).await?;
    if deleted {
        record(audit, "client_deleted", id, by);
    }
    Ok(deleted)
}

/// A client as RFC 7591 §2 metadata names it (CLI `--json`, admin API).
pub fn metadata(c: &Client) -> serde_json::Value {
    serde_json::json!({
        "client_id": c.id,
        "client_name": c.name,
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "grant_types": c.grant_types,
        "scope": c.scopes.to_string(),
        "token_endpoint_auth_method": if c.public { "none" } else { "client_secret_basic" },
        "skip_consent": c.skip_consent,
        "first_party": c.first_party,
        "magic_link_uri": c.magic_link_uri,
        "id_token_signed_response_alg": c.id_token_alg.as_str(),
        "backchannel_logout_uri": c.backchannel_logout_uri,
        "backchannel_logout_session_required": c.backchannel_logout_session_required,
        "resources": c.resources,
        "source": c.source,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}
