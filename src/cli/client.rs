//! `sesame client add|list|show|update|rotate-secret|remove|hash-secret`.

use std::io::BufRead;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::audit::AuditLog;
use crate::clients::{self, By, NewClient};
use crate::config::SigningAlg;
use crate::domain::client;
use crate::domain::Scope;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its id and (confidential clients) its secret, once.
    Add(AddArgs),
    /// List registered clients.
    List(JsonFlag),
    /// Show one client.
    Show(IdArgs),
    /// Change a client's settings (given options replace the stored values).
    Update(UpdateArgs),
    /// Replace a client's secret; prints the new one, once.
    RotateSecret(IdArgs),
    /// Delete a client; its tokens stop working.
    Remove(IdArgs),
    /// Print the `secret_hash` for clients.toml of a secret (argument or stdin).
    HashSecret(HashArgs),
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The client id.
    id: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long)]
    name: String,
    /// Choose the client id (default: generated).
    #[arg(long)]
    id: Option<String>,
    #[arg(long = "redirect-uri", value_name = "URI", num_args = 1..)]
    redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri", value_name = "URI", num_args = 1..)]
    post_logout_redirect_uris: Vec<String>,
    /// Grant types: otp, authorization_code, refresh_token, client_credentials, password.
    #[arg(long = "grant", value_name = "GRANT", num_args = 1..)]
    grants: Vec<String>,
    /// Scopes the client may request (default: openid).
    #[arg(long = "scope", value_name = "SCOPE", num_args = 1..)]
    scopes: Vec<String>,
    /// A public client (no secret; PKCE required).
    #[arg(long)]
    public: bool,
    /// First-party app: skip the consent page.
    #[arg(long)]
    skip_consent: bool,
    /// Your own app: may receive the `sesame:account` scope (account changes through the API).
    #[arg(long)]
    first_party: bool,
    /// Where the OTP API's emails link to (`?token=…` is added); default: code only.
    #[arg(long, value_name = "URI")]
    magic_link_uri: Option<String>,
    /// Resource servers the client may ask tokens for (RFC 8707).
    #[arg(long = "resource", value_name = "URI", num_args = 1..)]
    resources: Vec<String>,
    /// How ID tokens are signed: RS256 (default), ES256 or EdDSA.
    #[arg(long, alias = "id-token-signed-response-alg", value_name = "ALG", value_parser = signing_alg)]
    id_token_alg: Option<SigningAlg>,
    /// Where Sesame POSTs logout tokens when the user signs out (Back-Channel Logout).
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// Logout tokens must carry `sid`.
    #[arg(long)]
    backchannel_logout_session_required: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    id: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long = "redirect-uri", value_name = "URI", num_args = 1..)]
    redirect_uris: Option<Vec<String>>,
    #[arg(long = "post-logout-redirect-uri", value_name = "URI", num_args = 1..)]
    post_logout_redirect_uris: Option<Vec<String>>,
    #[arg(long = "grant", value_name = "GRANT", num_args = 1..)]
    grants: Option<Vec<String>>,
    #[arg(long = "scope", value_name = "SCOPE", num_args = 1..)]
    scopes: Option<Vec<String>>,
    #[arg(long, value_name = "BOOL")]
    skip_consent: Option<bool>,
    #[arg(long, value_name = "BOOL")]
    first_party: Option<bool>,
    /// `""` removes it.
    #[arg(long, value_name = "URI")]
    magic_link_uri: Option<String>,
    /// RS256, ES256 or EdDSA.
    #[arg(long, alias = "id-token-signed-response-alg", value_name = "ALG", value_parser = signing_alg)]
    id_token_alg: Option<SigningAlg>,
    /// `""` removes it.
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    #[arg(long, value_name = "BOOL")]
    backchannel_logout_session_required: Option<bool>,
    #[arg(long)]
    json: bool,
}

fn signing_alg(text: &str) -> Result<SigningAlg, String> {
    SigningAlg::parse(text).ok_or_else(|| format!("`{text}` is not RS256, ES256 or EdDSA"))
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// The secret (read from standard input when absent).
    secret: Option<String>,
}

pub fn hash_secret(args: &HashArgs) -> anyhow::Result<()> {
    let secret = match &args.secret {
        Some(s) => s.clone(),
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if secret.is_empty() {
        bail!("no secret given (pass it as an argument or on standard input)");
    }
    println!("{}", client::hash_secret(&secret));
    Ok(())
}

pub async fn run(cmd: ClientCommand, store: &Store) -> anyhow::Result<()> {
    // The CLI's client changes are audited like the admin API's; written before it exits.
    let audit = AuditLog::start(store.clone());
    let (result, events) = crate::audit::in_scope(change(cmd, store, &audit)).await;
    let written = super::write_audit(&audit, store, events).await;
    result?;
    written
}

async fn change(cmd: ClientCommand, store: &Store, audit: &AuditLog) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Add(a) => {
            let new = NewClient {
                id: a.id,
                name: a.name,
                redirect_uris: a.redirect_uris,
                post_logout_redirect_uris: a.post_logout_redirect_uris,
                grant_types: a.grants,
                scopes: a.scopes,
                public: a.public,
                skip_consent: a.skip_consent,
                first_party: a.first_party,
                magic_link_uri: a.magic_link_uri.filter(|u| !u.is_empty()),
                resources: a.resources,
                id_token_alg: a.id_token_alg,
                backchannel_logout_uri: a.backchannel_logout_uri.filter(|u| !u.is_empty()),
                backchannel_logout_session_required: a.backchannel_logout_session_required,
            };
            let (client, secret) = clients::register(store, audit, new, "cli", By::Cli).await?;
            if a.json {
                println!("{}", json!({ "client_id": client.id, "client_secret": secret }));
            } else {
                println!("client_id:     {}", client.id);
                match secret {
                    Some(s) => {
                        println!("client_secret: {s}");
                        eprintln!("Store the secret now: Sesame keeps only its digest and cannot show it again.");
                    }
                    None => println!("public client: no secret; PKCE is required"),
                }
            }
        }
        ClientCommand::List(f) => {
            let all = store.clients().await?;
            if f.json {
                println!(
                    "{}",
                    serde_json::Value::Array(all.iter().map(clients::metadata).collect())
                );
            } else if all.is_empty() {
                println!("no clients registered");
            } else {
                println!("{:<24} {:<24} {:<7} {:<5} GRANTS", "ID", "NAME", "TYPE", "FROM");
                for c in all {
                    let kind = if c.public { "public" } else { "secret" };
                    println!(
                        "{:<24} {:<24} {:<7} {:<5} {}",
                        c.id,
                        c.name,
                        kind,
                        c.source,
                        c.grant_types.join(",")
                    );
                }
            }
        }
        ClientCommand::Show(a) => {
            let Some(c) = store.client(&a.id).await? else {
                bail!("no client with id `{}`", a.id)
            };
            let m = clients::metadata(&c);
            if a.json {
                println!("{m}");
            } else {
                println!("{}", serde_json::to_string_pretty(&m)?);
            }
        }
        ClientCommand::Update(a) => {
            let Some(mut c) = store.client(&a.id).await? else {
                bail!("no client with id `{}`", a.id)
            };
            if let Some(v) = a.name {
                c.name = v;
            }
            if let Some(v) = a.redirect_uris {
                c.redirect_uris = v;
            }
            if let Some(v) = a.post_logout_redirect_uris {
                c.post_logout_redirect_uris = v;
            }
            if let Some(v) = a.grants {
                c.grant_types = v;
            }
            if let Some(v) = a.scopes {
                c.scopes = Scope::parse(&v.join(" "))?;
            }
            if let Some(v) = a.skip_consent {
                c.skip_consent = v;
            }
            if let Some(v) = a.first_party {
                c.first_party = v;
            }
            if let Some(v) = a.magic_link_uri {
                c.magic_link_uri = Some(v).filter(|u| !u.is_empty());
            }
            if let Some(v) = a.id_token_alg {
                c.id_token_alg = v;
            }
            if let Some(v) = a.backchannel_logout_uri {
                c.backchannel_logout_uri = Some(v).filter(|u| !u.is_empty());
            }
            if let Some(v) = a.backchannel_logout_session_required {
                c.backchannel_logout_session_required = v;
            }
            clients::update(store, audit, &c, By::Cli).await?;
            if c.source == "file" {
                eprintln!(
                    "note: client `{}` comes from the clients file, which is applied again at the next start",
                    c.id
                );
            }
            let c = store.client(&c.id).await?.unwrap_or(c);
            if a.json {
                println!("{}", clients::metadata(&c));
            } else {
                println!("updated client {}", c.id);
            }
        }
        ClientCommand::RotateSecret(a) => {
            let secret = clients::rotate_secret(store, audit, &a.id, By::Cli).await?;
            if a.json {
                println!("{}", json!({ "client_id": a.id, "client_secret": secret }));
            } else {
                println!("client_secret: {secret}");
                eprintln!("The previous secret no longer works. Store this one now: it cannot be shown again.");
            }
        }
        ClientCommand::Remove(a) => {
            if !clients::delete(store, audit, &a.id, By::Cli).await? {
                bail!("no client with id `{}`", a.id);
            }
            println!("removed client {}", a.id);
        }
        ClientCommand::HashSecret(a) => hash_secret(&a)?,
    }
    Ok(())
}
