//! `sesame keys list|rotate`.

use clap::Subcommand;
use serde_json::json;

use crate::config::Settings;
use crate::startup::key_retention;
use crate::store::{now, Store};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys (current, retired and still published, expired).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make a new current key for every algorithm; the previous ones stay in the JWKS until their tokens expire.
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
            let keep = key_retention(settings);
            for (kid, alg) in crate::jose::rotate(store, keep).await? {
                println!("new current {} key {kid}", alg.as_str());
            }
            println!("running nodes pick them up within a minute");
            println!(
                "the previous keys stay published for {} s, until the tokens they signed expire",
                keep.as_secs()
            );
        }
    }
    Ok(())
}
