//! `sesame keys list|rotate`.

use clap::Subcommand;
use serde_json::json;

use crate::config::Settings;
use crate::jose::generate_key;
use crate::startup::key_retention;
use crate::store::{now, Store};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys (current, retired and still published, expired).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make a new current key; the previous one stays in the JWKS until its tokens expire.
    Rotate,
}

pub async fn run(cmd: KeysCommand, store: &Store, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::List { json } => {
            let keys = store.all_keys().await?;
            let now = now();
            let state = |k: &crate::store::keys::StoredKey| {
                if k.is_current {
                    "current"
                } else if k.expires_at.unwrap_or(0) > now {
                    "published"
                } else {
                    "expired"
                }
            };
            if json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| json!({ "kid": k.kid, "alg": k.alg, "state": state(k), "created_at": k.created_at, "retired_at": k.retired_at, "expires_at": k.expires_at }))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if keys.is_empty() {
                println!("no signing keys yet (the first is created when `sesame serve` starts)");
            } else {
                println!("{:<18} {:<6} {:<10} CREATED", "KID", "ALG", "STATE");
                for k in &keys {
                    println!("{:<18} {:<6} {:<10} {}", k.kid, k.alg, state(k), k.created_at);
                }
            }
        }
        KeysCommand::Rotate => {
            let alg = settings.tokens.signing_alg;
            let (kid, jwk) = generate_key(alg)?;
            let keep = key_retention(settings).as_secs() as i64;
            store.rotate_key(&kid, alg.as_str(), &jwk, keep).await?;
            println!(
                "new current key {kid} ({}); running nodes pick it up within a minute",
                alg.as_str()
            );
            println!("the previous key stays published for {keep} s, until the tokens it signed expire");
        }
    }
    Ok(())
}
