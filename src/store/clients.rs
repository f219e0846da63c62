//! Registered clients.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Query, Row};

use super::{now, Store};
use crate::config::SigningAlg;
use crate::domain::{Client, Scope};

const COLUMNS: &str = "id, name, secret_digest, redirect_uris, post_logout_redirect_uris, grant_types, scopes, public, skip_consent, source, created_at, updated_at, first_party, magic_link_uri, resources, id_token_signed_response_alg, backchannel_logout_uri, backchannel_logout_session_required";

fn from_row(row: &Row) -> anyhow::Result<Client> {
    let list =
        |col: &str| -> anyhow::Result<Vec<String>> { Ok(serde_json::from_str(&row.try_get::<String, _>(col)?)?) };
    Ok(Client {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        secret_digest: row.try_get("secret_digest")?,
        redirect_uris: list("redirect_uris")?,
        post_logout_redirect_uris: list("post_logout_redirect_uris")?,
        grant_types: list("grant_types")?,
        scopes: Scope::parse(&row.try_get::<String, _>("scopes")?)?,
        public: row.try_get::<i64, _>("public")? != 0,
        skip_consent: row.try_get::<i64, _>("skip_consent")? != 0,
        first_party: row.try_get::<i64, _>("first_party")? != 0,
        magic_link_uri: row.try_get("magic_link_uri")?,
        resources: serde_json::from_str(&row.try_get::<String, _>("resources")?)?,
        id_token_alg: SigningAlg::parse(&row.try_get::<String, _>("id_token_signed_response_alg")?)
            .unwrap_or(SigningAlg::RS256),
        backchannel_logout_uri: row.try_get("backchannel_logout_uri")?,
        backchannel_logout_session_required: row.try_get::<i64, _>("backchannel_logout_session_required")? != 0,
        source: row.try_get("source")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Clients looked up recently, so client authentication does not read the
/// database on every request. Changes made through this store are seen at
/// once; changes made by another process (the CLI, another node) within the TTL.
#[derive(Default)]
pub struct ClientCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<Client>)>>,
}

/// Entries kept at most; unknown ids are cached too, so this bounds memory.
const CACHE_LIMIT: usize = 10_000;

impl ClientCache {
    pub fn new(ttl: Duration) -> ClientCache {
        ClientCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn get(&self, id: &str) -> Option<Option<Client>> {
        let entries = self.entries.lock().expect("client cache");
        entries
            .get(id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, c)| c.clone())
    }

    fn put(&self, id: &str, client: Option<Client>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().expect("client cache");
        if entries.len() >= CACHE_LIMIT {
            entries.clear();
        }
        entries.insert(id.to_string(), (Instant::now(), client));
    }

    fn forget(&self, id: &str) {
        self.entries.lock().expect("client cache").remove(id);
    }
}

impl Store {
    pub async fn client(&self, id: &str) -> anyhow::Result<Option<Client>> {
        if let Some(hit) = self.client_cache.get(id) {
            return Ok(hit);
        }
        let sql = format!("SELECT {COLUMNS} FROM clients WHERE id = $1");
        let row = self.db.query(sql).bind(id).fetch_optional().await?;
        let client = row.as_ref().map(from_row).transpose()?;
        self.client_cache.put(id, client.clone());
        Ok(client)
    }

    pub async fn clients(&self) -> anyhow::Result<Vec<Client>> {
        let sql = format!("SELECT {COLUMNS} FROM clients ORDER BY id");
        let rows = self.db.query(sql).fetch_all().await?;
        rows.iter().map(from_row).collect()
    }

    /// Inserts the client; `Ok(false)` when the id is taken.
    pub async fn insert_client(&self, c: &Client) -> anyhow::Result<bool> {
        let sql = format!(
            "INSERT INTO clients ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $16, $17) ON CONFLICT (id) DO NOTHING"
        );
        let r = bind_client(self.db.query(sql), c)?.execute().await?;
        self.client_cache.forget(&c.id);
        Ok(r.rows_affected() == 1)
    }

    /// Creates or replaces the client (used by the declarative `clients.toml`).
    pub async fn upsert_client(&self, c: &Client) -> anyhow::Result<()> {
        let sql = format!(
            "INSERT INTO clients ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, secret_digest = excluded.secret_digest,
               redirect_uris = excluded.redirect_uris, post_logout_redirect_uris = excluded.post_logout_redirect_uris,
               grant_types = excluded.grant_types, scopes = excluded.scopes, public = excluded.public,
               skip_consent = excluded.skip_consent, first_party = excluded.first_party, magic_link_uri = excluded.magic_link_uri, resources = excluded.resources,
               id_token_signed_response_alg = excluded.id_token_signed_response_alg, backchannel_logout_uri = excluded.backchannel_logout_uri,
               backchannel_logout_session_required = excluded.backchannel_logout_session_required, source = excluded.source, updated_at = excluded.updated_at"
        );
        bind_client(self.db.query(sql), c)?.execute().await?;
        self.client_cache.forget(&c.id);
        Ok(())
    }

    /// Updates everything but the id and secret; `Ok(false)` when there is no such client.
    pub async fn update_client(&self, c: &Client) -> anyhow::Result<bool> {
        let r = self
            .db
            .query(
                "UPDATE clients SET name = $2, redirect_uris = $3, post_logout_redirect_uris = $4, grant_types = $5,
               scopes = $6, public = $7, skip_consent = $8, updated_at = $9, first_party = $10, magic_link_uri = $11, resources = $12,
               id_token_signed_response_alg = $13, backchannel_logout_uri = $14, backchannel_logout_session_required = $15 WHERE id = $1",
            )
            .bind(&c.id)
            .bind(&c.name)
            .bind(serde_json::to_string(&c.redirect_uris)?)
            .bind(serde_json::to_string(&c.post_logout_redirect_uris)?)
            .bind(serde_json::to_string(&c.grant_types)?)
            .bind(c.scopes.to_string())
            .bind(c.public as i64)
            .bind(c.skip_consent as i64)
            .bind(now())
            .bind(c.first_party as i64)
            .bind(c.magic_link_uri.clone())
            .bind(serde_json::to_string(&c.resources)?)
            .bind(c.id_token_alg.as_str())
            .bind(c.backchannel_logout_uri.clone())
            .bind(c.backchannel_logout_session_required as i64)
            .execute()
            .await?;
        self.client_cache.forget(&c.id);
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_client_secret(&self, id: &str, digest: Option<&str>) -> anyhow::Result<bool> {
        let r = self
            .db
            .query("UPDATE clients SET secret_digest = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(digest)
            .bind(now())
            .execute()
            .await?;
        self.client_cache.forget(id);
        Ok(r.rows_affected() == 1)
    }

    pub async fn delete_client(&self, id: &str) -> anyhow::Result<bool> {
        let r = self
            .db
            .query("DELETE FROM clients WHERE id = $1")
            .bind(id)
            .execute()
            .await?;
        self.client_cache.forget(id);
        Ok(r.rows_affected() == 1)
    }
}

/// Binds every column of `COLUMNS` for an insert: `$11` is the time (created
/// and updated), the columns after it follow.
fn bind_client<'q>(q: Query<'q>, c: &Client) -> anyhow::Result<Query<'q>> {
    Ok(q.bind(c.id.clone())
        .bind(c.name.clone())
        .bind(c.secret_digest.clone())
        .bind(serde_json::to_string(&c.redirect_uris)?)
        .bind(serde_json::to_string(&c.post_logout_redirect_uris)?)
        .bind(serde_json::to_string(&c.grant_types)?)
        .bind(c.scopes.to_string())
        .bind(c.public as i64)
        .bind(c.skip_consent as i64)
        .bind(c.source.clone())
        .bind(now())
        .bind(c.first_party as i64)
        .bind(c.magic_link_uri.clone())
        .bind(serde_json::to_string(&c.resources)?)
        .bind(c.id_token_alg.as_str())
        .bind(c.backchannel_logout_uri.clone())
        .bind(c.backchannel_logout_session_required as i64))
}
