//! OpenID Connect Back-Channel Logout 1.0: when a user signs out, signs out
//! everywhere, or the account is disabled or deleted, every client that was
//! signed in through it and registered a `backchannel_logout_uri` gets a
//! signed logout token (§2.4) by a direct POST (§2.5).
//!
//! Sign-out never waits for it: the event goes to a queue and a worker
//! delivers it, each client on its own task, with a timeout per try and a
//! few retries. The CLI waits for the queue to drain before it exits.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::audit::AuditLog;
use crate::jose::Keys;
use crate::store::audit::Event;
use crate::store::now;
use crate::store::tokens::{Families, LiveFamily};
use crate::store::Store;

/// The event a logout token carries (§2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The logout token's `typ` (§2.4, as the Security BCP asks of JWTs).
pub const TYP: &str = "logout+jwt";
/// How long one try may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Waits before the second and third tries.
pub const RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];
/// Events waiting beyond this are dropped (and logged): sign-out never blocks.
const QUEUE: usize = 1024;
/// Waits before each further try to read whom to tell while the database
/// is unavailable (an outage), about 30 s in all; past them the sign-out
/// is not passed on (logged).
const READ_RETRIES: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(15),
];

/// What ended, as the account service and the pages report it.
#[derive(Debug)]
pub enum Ended {
    /// One browser session signed out: the clients it signed in to.
    Session { sid: String },
    /// The user signed out of every browser at `at`: the clients any
    /// session begun by then signed in to (read late, in an outage, this
    /// does not take in sessions begun after the sign-out).
    BrowserSessionsOf { sub: String, at: i64 },
    /// Token families that ended (disable, delete, a sensitive change, an
    /// app's access revoked), read before they went.
    Families(Vec<LiveFamily>),
}

/// What delivering needs; shared by the worker and its tasks.
struct Ctx {
    store: Store,
    keys: Arc<Keys>,
    issuer: String,
    audit: Option<AuditLog>,
    http: reqwest::Client,
}

/// The queue of sign-outs to tell clients about.
pub struct Backchannel {
    tx: mpsc::Sender<Ended>,
    worker: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Backchannel {
    /// Starts the worker on the current runtime.
    pub fn start(
        store: Store,
        keys: Arc<Keys>,
        issuer: String,
        audit: Option<AuditLog>,
    ) -> anyhow::Result<Backchannel> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let ctx = Arc::new(Ctx {
            store,
            keys,
            issuer,
            audit,
            http,
        });
        let (tx, mut rx) = mpsc::channel::<Ended>(QUEUE);
        let worker = tokio::spawn(async move {
            let mut sending = tokio::task::JoinSet::new();
            while let Some(ended) = rx.recv().await {
                let ctx = ctx.clone();
                match notices_once_readable(&ctx, &ended).await {
                    Ok(list) => {
                        for notice in list {
                            sending.spawn(deliver(ctx.clone(), notice));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "back-channel logout: cannot read whom to tell"),
                }
                while sending.try_join_next().is_some() {}
            }
            while sending.join_next().await.is_some() {}
        });
        Ok(Backchannel {
            tx,
            worker: std::sync::Mutex::new(Some(worker)),
        })
    }

    /// Queues `ended`; never waits.
    pub fn notify(&self, ended: Ended) {
        if let Err(e) = self.tx.try_send(ended) {
            tracing::warn!(error = %e, "back-channel logout queue full or closed; a sign-out is not passed on");
        }
    }

    /// Waits until everything queued so far was delivered or given up (the
    /// CLI, before it exits). Nothing can be queued afterwards.
    pub async fn drain(self) {
        let Backchannel { tx, worker } = self;
        drop(tx);
        let handle = worker.lock().expect("worker").take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

/// One logout token for one client.
struct Notice {
    uri: String,
    client_id: String,
    token: String,
}

/// `notices`, read again after each of `READ_RETRIES` while the database
/// is unavailable, so a sign-out made just before an outage still reaches
/// its clients once the database is back.
async fn notices_once_readable(ctx: &Ctx, ended: &Ended) -> anyhow::Result<Vec<Notice>> {
    let mut waits = READ_RETRIES.iter();
    loop {
        match notices(ctx, ended).await {
            Err(e) if crate::store::is_unavailable(&e) => match waits.next() {
                Some(wait) => {
                    tracing::warn!(error = %e, "back-channel logout: the database is unavailable; reading again");
                    tokio::time::sleep(*wait).await;
                }
                None => return Err(e),
            },
            done => return done,
        }
    }
}

/// The logout tokens `ended` calls for: one per client (with a
/// `backchannel_logout_uri`) and `sid` (the browser session's, else the
/// family's own id: what its ID tokens carry), however many families share it.
async fn notices(ctx: &Ctx, ended: &Ended) -> anyhow::Result<Vec<Notice>> {
    let families = match ended {
        Ended::Session { sid } => ctx.store.live_families_in(Families::OfSession(sid)).await?,
        Ended::BrowserSessionsOf { sub, at } => ctx.store.live_families_in(Families::OfBrowsersOf(sub, *at)).await?,
        Ended::Families(list) => list.clone(),
    };
    let mut out = Vec::new();
    let mut told = std::collections::HashSet::new();
    for family in families {
        if !told.insert((family.client_id.clone(), family.sid().to_string())) {
            continue;
        }
        let Some(client) = ctx.store.client(&family.client_id).await? else {
            continue;
        };
        let Some(uri) = client.backchannel_logout_uri.clone() else {
            continue;
        };
        let iat = now();
        let mut claims = Map::new();
        claims.insert("iss".into(), ctx.issuer.clone().into());
        claims.insert("sub".into(), family.user_id.clone().into());
        claims.insert("aud".into(), client.id.clone().into());
        claims.insert("iat".into(), iat.into());
        claims.insert("exp".into(), (iat + 120).into());
        claims.insert("jti".into(), crate::crypto::random_token::<16>().into());
        claims.insert("events".into(), json!({ EVENT: {} }));
        claims.insert("sid".into(), Value::String(family.sid().to_string()));
        let token = ctx.keys.ring().sign(TYP, client.id_token_alg, claims)?;
        out.push(Notice {
            uri,
            client_id: client.id,
            token,
        });
    }
    Ok(out)
}

/// POSTs the token (§2.5), trying again after each of `RETRIES`; a 200 or
/// 204 ends it. The outcome goes to the log and the audit trail.
async fn deliver(ctx: Arc<Ctx>, notice: Notice) {
    let mut waits = RETRIES.iter();
    let outcome = loop {
        let res = ctx
            .http
            .post(&notice.uri)
            .form(&[("logout_token", notice.token.as_str())])
            .send()
            .await;
        let failure = match res {
            Ok(r) if r.status().is_success() => break "delivered".to_string(),
            Ok(r) => format!("answered {}", r.status().as_u16()),
            Err(e) if e.is_timeout() => "timed out".to_string(),
            Err(_) => "unreachable".to_string(),
        };
        match waits.next() {
            Some(wait) => tokio::time::sleep(*wait).await,
            None => break format!("failed: {failure}"),
        }
    };
    tracing::info!(client_id = %notice.client_id, outcome = %outcome, "back-channel logout");
    if let Some(audit) = &ctx.audit {
        audit.record(Event {
            event: "backchannel_logout",
            client_id: Some(&notice.client_id),
            detail: Some(&outcome),
            ..Default::default()
        });
    }
}
