//! `sesame user list|show|disable|enable|delete|make-admin USER`, where USER
//! is a `sub`, username, email or phone number.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::accounts::{Accounts, Actor};
use crate::api::admin_users::admin_view;
use crate::audit::AuditLog;
use crate::config::Settings;
use crate::oidc::backchannel::Backchannel;
use crate::store::users::User;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users, newest first.
    List {
        /// Only users whose username, email or phone contains this.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Show one user.
    Show(UserArgs),
    /// Disable a user: no sign-in, and their refresh tokens (and the access tokens issued with them) stop working.
    Disable(UserArgs),
    /// Enable a disabled user.
    Enable(UserArgs),
    /// Delete a user and end their tokens.
    Delete(UserArgs),
    /// Give a user the admin role (`--revoke` takes it away).
    MakeAdmin {
        #[command(flatten)]
        user: UserArgs,
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Debug, Args)]
pub struct UserArgs {
    /// The user's sub, username, email or phone number.
    user: String,
    #[arg(long)]
    json: bool,
}

/// The one user `key` names: a `sub`, or a username, email or phone number
/// (each in any format) that names no one else. A key that names two accounts
/// (a username made of another user's phone number in national form, from
/// before usernames needed a letter) is refused: the operator gives a sub.
async fn find(store: &Store, settings: &Settings, key: &str) -> anyhow::Result<User> {
    let phone = crate::domain::Phone::parse(key, &settings.phones()).ok();
    // An email in any spelling of its domain (upper case, punycode, full width).
    let email = key
        .contains('@')
        .then(|| crate::domain::Email::parse(key).ok())
        .flatten();
    let mut found = store
        .users_matching(key, phone.as_ref().map(|p| p.e164()), email.as_ref().map(|e| e.key()))
        .await?;
    match found.len() {
        0 => bail!("no user matches `{key}` (give a sub, username, email or phone number)"),
        _ if found[0].id == key => Ok(found.swap_remove(0)),
        1 => Ok(found.swap_remove(0)),
        _ => {
            let subs: Vec<&str> = found.iter().map(|u| u.id.as_str()).collect();
            bail!(
                "`{key}` matches more than one user ({}): give the sub of the one you mean",
                subs.join(", ")
            )
        }
    }
}

fn print(user: &User, json: bool) -> anyhow::Result<()> {
    let v = admin_view(user);
    if json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

pub async fn run(cmd: UserCommand, store: &Store, settings: &Settings) -> anyhow::Result<()> {
    // The CLI's account changes are audited like everyone's; written before it exits.
    let audit = AuditLog::start(store.clone());
    // Clients hear of disabled and deleted accounts before the CLI exits.
    let keys = std::sync::Arc::new(crate::jose::Keys::load(store.clone()).await?);
    let backchannel = Backchannel::start(store.clone(), keys, settings.issuer().to_string(), Some(audit.clone()))?;
    let accounts = Accounts::offline(store, settings, &audit, &backchannel);
    let (result, events) = crate::audit::in_scope(change(cmd, store, settings, &accounts)).await;
    backchannel.drain().await;
    let written = super::write_audit(&audit, store, events).await;
    result?;
    written
}

async fn change(cmd: UserCommand, store: &Store, settings: &Settings, accounts: &Accounts<'_>) -> anyhow::Result<()> {
    match cmd {
        UserCommand::List { search, limit, json } => {
            let users = store.users(search.as_deref(), limit).await?;
            if json {
                let list: Vec<_> = users.iter().map(admin_view).collect();
                println!("{}", serde_json::Value::Array(list));
            } else if users.is_empty() {
                println!("no users");
            } else {
                println!("{:<24} {:<18} {:<28} {:<16} FLAGS", "SUB", "USERNAME", "EMAIL", "PHONE");
                for u in users {
                    let flags = [(u.is_admin, "admin"), (u.disabled, "disabled")]
                        .iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, f)| *f)
                        .collect::<Vec<_>>()
                        .join(",");
                    println!(
                        "{:<24} {:<18} {:<28} {:<16} {}",
                        u.id,
                        u.username.as_deref().unwrap_or("-"),
                        u.email.as_deref().unwrap_or("-"),
                        u.phone.as_deref().unwrap_or("-"),
                        flags
                    );
                }
            }
        }
        UserCommand::Show(a) => print(&find(store, settings, &a.user).await?, a.json)?,
        UserCommand::Disable(a) => {
            let u = find(store, settings, &a.user).await?;
            let ended = accounts.set_disabled(&u, true, Actor::Cli).await?;
            println!("disabled {}; ended {ended} token families", u.id);
        }
        UserCommand::Enable(a) => {
            let u = find(store, settings, &a.user).await?;
            accounts.set_disabled(&u, false, Actor::Cli).await?;
            println!("enabled {}", u.id);
        }
        UserCommand::Delete(a) => {
            let u = find(store, settings, &a.user).await?;
            let ended = accounts
                .delete(&u, Actor::Cli)
                .await
                .context("could not delete the user")?;
            println!("deleted {}; ended {ended} token families", u.id);
        }
        UserCommand::MakeAdmin { user, revoke } => {
            let u = find(store, settings, &user.user).await?;
            accounts.set_admin(&u, !revoke, Actor::Cli).await?;
            println!(
                "{} {}",
                if revoke {
                    "removed the admin role from"
                } else {
                    "made an admin:"
                },
                u.id
            );
        }
    }
    Ok(())
}
