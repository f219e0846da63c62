//! The revocation list as one node sees it. Access tokens are JWTs checked
//! without a database read: a node keeps the live revocations (token `jti`s
//! and refresh-token families) in memory. A revocation made on this node
//! applies at once; one made on another node arrives within
//! `server.revocation_sync` (default 1 s). With `revocation_sync = "0s"`
//! every check reads the database instead.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use crate::store::{now, Store};

pub struct Revocations {
    sync: Duration,
    /// `tokens.access_ttl` in seconds: a user's revocation covers the tokens
    /// issued up to this long before it ends.
    access_ttl: i64,
    live: RwLock<HashMap<String, i64>>,
}

/// The revocation-list entry that ends every access token issued to `sub` so far.
fn subject_key(sub: &str) -> String {
    format!("user:{sub}")
}

impl Revocations {
    pub async fn load(store: &Store, sync: Duration, access_ttl: Duration) -> anyhow::Result<Revocations> {
        let r = Revocations {
            sync,
            access_ttl: access_ttl.as_secs() as i64,
            live: RwLock::default(),
        };
        if !sync.is_zero() {
            r.reload(store).await?;
        }
        Ok(r)
    }

    /// How often to re-read the list; zero when every check reads the database.
    pub fn sync_interval(&self) -> Duration {
        self.sync
    }

    pub async fn reload(&self, store: &Store) -> anyhow::Result<()> {
        let fresh: HashMap<String, i64> = store.live_revocations().await?.into_iter().collect();
        *self.live.write().expect("revocations lock") = fresh;
        Ok(())
    }

    /// True when the token id or its family is revoked, or its user's tokens
    /// issued up to `iat` are (a disabled or deleted account).
    pub async fn is_revoked(
        &self,
        store: &Store,
        jti: &str,
        family: Option<&str>,
        user: Option<(&str, i64)>,
    ) -> anyhow::Result<bool> {
        // Tokens issued no later than the revocation (it lasts one access_ttl past it).
        let covers = |until: i64, iat: i64| iat <= until - self.access_ttl;
        if self.sync.is_zero() {
            if store.is_revoked(jti, family).await? {
                return Ok(true);
            }
            return Ok(match user {
                Some((sub, iat)) => store
                    .revoked_until(&subject_key(sub))
                    .await?
                    .is_some_and(|until| covers(until, iat)),
                None => false,
            });
        }
        let now = now();
        let live = self.live.read().expect("revocations lock");
        let revoked = |id: &str| live.get(id).is_some_and(|exp| *exp >= now);
        let user_revoked = user.is_some_and(|(sub, iat)| {
            live.get(&subject_key(sub))
                .is_some_and(|until| *until >= now && covers(*until, iat))
        });
        Ok(revoked(jti) || family.is_some_and(revoked) || user_revoked)
    }

    /// Ends every access token issued to `sub` so far, on every node within
    /// `server.revocation_sync`, without a read per token check.
    pub async fn revoke_subject(&self, store: &Store, sub: &str) -> anyhow::Result<()> {
        revoke_subject_in(store, sub, self.access_ttl).await?;
        let until = now() + self.access_ttl;
        let mut live = self.live.write().expect("revocations lock");
        let entry = live.entry(subject_key(sub)).or_insert(until);
        *entry = (*entry).max(until);
        Ok(())
    }

    /// Revokes an access token by `jti` until it would have expired.
    pub async fn revoke(&self, store: &Store, id: &str, expires_at: i64) -> anyhow::Result<()> {
        store.revoke(id, expires_at).await?;
        self.live
            .write()
            .expect("revocations lock")
            .insert(id.to_string(), expires_at);
        Ok(())
    }

    /// Revokes every live family of a user (at one client, or all); returns how many.
    pub async fn revoke_user_families(
        &self,
        store: &Store,
        user_id: &str,
        client_id: Option<&str>,
        access_ttl: Duration,
    ) -> anyhow::Result<usize> {
        let families = store.live_families(user_id, client_id).await?;
        for family in &families {
            self.revoke_family(store, family, access_ttl).await?;
        }
        Ok(families.len())
    }

    /// Revokes a refresh-token family and the access tokens issued from it.
    pub async fn revoke_family(&self, store: &Store, family_id: &str, access_ttl: Duration) -> anyhow::Result<()> {
        let until = store.revoke_family(family_id, access_ttl.as_secs() as i64).await?;
        self.live
            .write()
            .expect("revocations lock")
            .insert(family_id.to_string(), until);
        Ok(())
    }
}

/// `Revocations::revoke_subject` for a process without a revocation list
/// (the CLI): the nodes read it at their next sync.
pub async fn revoke_subject_in(store: &Store, sub: &str, access_ttl: i64) -> anyhow::Result<()> {
    store.revoke_until(&subject_key(sub), now() + access_ttl).await
}
