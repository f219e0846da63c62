//! `clients.toml`, applied at start, declaratively: every listed client is
//! created or updated; clients that came from the file and are no longer in
//! it are removed. Clients registered by the CLI or the admin API are kept.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::NewClient;
use crate::config::SigningAlg;
use crate::domain::client::{hash_secret, is_secret_hash};
use crate::store::Store;

/// The digest of the demo client's documented secret (`demo-secret`).
pub const DEMO_SECRET: &str = "demo-secret";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    #[serde(default)]
    client: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    name: String,
    secret_env: Option<String>,
    secret_hash: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    skip_consent: bool,
    #[serde(default)]
    first_party: bool,
    /// Empty: code only.
    #[serde(default)]
    magic_link_uri: String,
    #[serde(default)]
    resources: Vec<String>,
    /// RS256 when left out (OIDC Registration).
    id_token_signed_response_alg: Option<SigningAlg>,
    /// Empty: the client is not told of sign-outs.
    #[serde(default)]
    backchannel_logout_uri: String,
    #[serde(default)]
    backchannel_logout_session_required: bool,
}

/// Applies the file; returns how many clients it lists. A missing file is not an error.
pub async fn apply(store: &Store, path: &Path, issuer: &str) -> anyhow::Result<usize> {
    if !path.exists() {
        tracing::info!(path = %path.display(), "no clients file; skipping");
        return Ok(0);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: ClientsFile =
        toml::from_str(&text).with_context(|| format!("invalid clients file {}", path.display()))?;
    let mut ids = Vec::new();
    for entry in file.client {
        let id = entry.id.clone();
        if ids.contains(&id) {
            bail!("{}: client `{id}` is listed twice", path.display());
        }
        let digest = secret_digest(&entry).with_context(|| format!("{}: client `{id}`", path.display()))?;
        if id == "demo" && digest.as_deref() == Some(hash_secret(DEMO_SECRET).as_str()) && !is_local(issuer) {
            tracing::warn!("the demo client with its published secret is enabled on a non-local issuer ({issuer}); remove it from clients.toml");
        }
        let new = NewClient {
            id: Some(entry.id),
            name: entry.name,
            redirect_uris: entry.redirect_uris,
            post_logout_redirect_uris: entry.post_logout_redirect_uris,
            grant_types: entry.grant_types,
            scopes: entry.scopes,
            public: entry.public,
            skip_consent: entry.skip_consent,
            first_party: entry.first_party,
            magic_link_uri: Some(entry.magic_link_uri).filter(|u| !u.is_empty()),
            resources: entry.resources,
            id_token_alg: entry.id_token_signed_response_alg,
            backchannel_logout_uri: Some(entry.backchannel_logout_uri).filter(|u| !u.is_empty()),
            backchannel_logout_session_required: entry.backchannel_logout_session_required,
        };
        let mut client = new
            .into_client("file")
            .with_context(|| format!("{}: client `{id}`", path.display()))?;
        client.secret_digest = digest;
        store.upsert_client(&client).await?;
        ids.push(id);
    }
    for stale in store
        .clients()
        .await?
        .into_iter()
        .filter(|c| c.source == "file" && !ids.contains(&c.id))
    {
        store.delete_client(&stale.id).await?;
        tracing::info!(client_id = %stale.id, "removed a client no longer in the clients file");
    }
    Ok(ids.len())
}

fn secret_digest(entry: &Entry) -> anyhow::Result<Option<String>> {
    match (entry.public, &entry.secret_env, &entry.secret_hash) {
        (true, None, None) => Ok(None),
        (true, _, _) => bail!("a public client has no secret; remove secret_env / secret_hash"),
        (false, Some(_), Some(_)) => bail!("set secret_env or secret_hash, not both"),
        (false, Some(var), None) => {
            let secret =
                std::env::var(var).with_context(|| format!("environment variable {var} (secret_env) is not set"))?;
            if secret.len() < 8 {
                bail!("the secret in {var} is shorter than 8 characters");
            }
            Ok(Some(hash_secret(&secret)))
        }
        (false, None, Some(hash)) if is_secret_hash(hash) => Ok(Some(hash.clone())),
        (false, None, Some(_)) => {
            bail!("secret_hash must look like `sha256$<64 hex digits>` (see `sesame client hash-secret`)")
        }
        (false, None, None) => bail!("a confidential client needs secret_env or secret_hash"),
    }
}

fn is_local(issuer: &str) -> bool {
    let host = issuer
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    matches!(host, "localhost" | "127.0.0.1" | "[") || host.ends_with(".localhost")
}
