//! SQLite migrations, applied on the store's own connection with the
//! migrations sqlx embeds, and recorded in sqlx's `_sqlx_migrations` table
//! exactly as sqlx records them, so a database migrated by either stays
//! valid for the other. A migration whose first line is
//! `-- sesame: postgres only` (a server-side function) is recorded here
//! without running: the SQLite store does the same work in its own code.

use std::time::Instant;

use anyhow::{bail, Context};
use rusqlite::OptionalExtension;

/// The first line of a migration for PostgreSQL only.
const POSTGRES_ONLY: &str = "-- sesame: postgres only";

pub fn sqlite(conn: &mut rusqlite::Connection, migrator: &sqlx::migrate::Migrator) -> anyhow::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        );",
    )?;
    let dirty: Option<i64> = conn
        .query_row(
            "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(v) = dirty {
        bail!("migration {v} was left partly applied; repair the database by hand");
    }
    for m in migrator.iter().filter(|m| m.migration_type.is_up_migration()) {
        let applied: Option<Vec<u8>> = conn
            .query_row(
                "SELECT checksum FROM _sqlx_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .optional()?;
        match applied {
            Some(sum) if sum == *m.checksum => continue,
            Some(_) => bail!("migration {} was changed after it was applied", m.version),
            None => {}
        }
        let started = Instant::now();
        let tx = conn.transaction()?;
        let first_line = m.sql.as_str().lines().next().unwrap_or("");
        if first_line.trim_end() != POSTGRES_ONLY {
            tx.execute_batch(m.sql.as_str())
                .with_context(|| format!("migration {} ({})", m.version, m.description))?;
        }
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (?1, ?2, TRUE, ?3, ?4)",
            rusqlite::params![
                m.version,
                &*m.description,
                &*m.checksum,
                started.elapsed().as_nanos() as i64
            ],
        )?;
        tx.commit()?;
    }
    Ok(())
}
