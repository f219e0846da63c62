//! The `sesame` command line: `serve`, `migrate`, `client …`, `keys …`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::startup::{open_store, Application};
use crate::store::Store;

mod client;
mod keys;
mod user;

/// Writes the audit events a command recorded (in its audit scope) and
/// everything queued before it exits. The change stands either way; a
/// failed write says so.
async fn write_audit(
    audit: &crate::audit::AuditLog,
    store: &Store,
    events: Vec<crate::audit::Record>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let written = audit.write(store, events).await;
    audit.flush().await;
    written.context("the change was made, but its audit events could not be written")
}

#[derive(Debug, Parser)]
#[command(
    name = "sesame",
    version,
    about = "Sesame: a passwordless OAuth 2.0 / OpenID Connect identity provider"
)]
pub struct Cli {
    /// Configuration file (default: ./sesame.toml when present).
    #[arg(long, global = true, env = "SESAME_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Register and manage client applications.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// List and rotate signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage user accounts.
    #[command(subcommand)]
    User(user::UserCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Client(client::ClientCommand::HashSecret(args)) = &cli.command {
        return client::hash_secret(args);
    }
    let settings = Settings::load(cli.config.as_deref())?;
    let serving = matches!(cli.command, Command::Serve);
    let mut log = settings.log.clone();
    if !serving {
        log.level = "warn".into();
    }
    crate::telemetry::init(&log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(settings).await,
            Command::Migrate => {
                if settings.database.pooler == crate::config::Pooler::Transaction {
                    anyhow::bail!(
                        "migrations do not run through a transaction-mode pooler: run `sesame migrate` with \
                         `database.url` pointing at PostgreSQL itself and `database.pooler = \"none\"` \
                         (e.g. SESAME_DATABASE__URL=postgres://… SESAME_DATABASE__POOLER=none sesame migrate)"
                    );
                }
                open_store(&settings).await?;
                println!(
                    "migrations applied to {}",
                    crate::store::redact_url(&settings.database.url)
                );
                Ok(())
            }
            Command::Client(cmd) => client::run(cmd, &store(&settings).await?).await,
            Command::Keys(cmd) => keys::run(cmd, &store(&settings).await?, &settings).await,
            Command::User(cmd) => user::run(cmd, &store(&settings).await?, &settings).await,
        }
    })
}

async fn store(settings: &Settings) -> anyhow::Result<Store> {
    open_store(settings).await
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let s = &app.state.settings;
    tracing::info!(
        issuer = s.issuer(),
        bind = %s.server.bind,
        database = %crate::store::redact_url(&s.database.url),
        sms = ?s.sms.provider,
        email = ?s.email.provider,
        "sesame is listening on port {}", app.port()
    );
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
