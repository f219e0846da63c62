//! Background retention (SPEC §8): rows past their lifetime are deleted in
//! bounded batches, by one node at a time. Every node runs the loop; a lease
//! row (`store/retention.rs`) decides which one sweeps, so two nodes never
//! delete the same rows at once and a node that dies hands over when its
//! lease runs out. What each sweep deleted is counted in `/metrics`.

use std::time::Duration;

use crate::config::Settings;
use crate::state::AppState;
use crate::store::retention::Expired;

/// The lease's name, and how long it lasts (renewed between tables).
const LEASE: &str = "retention";
const LEASE_SECS: i64 = 300;
/// Rows a statement deletes at most, and statements per table per sweep:
/// a sweep never holds the database long, and a backlog is worked off over
/// several sweeps (100,000 rows per table each).
const BATCH: i64 = 1_000;
const BATCHES: usize = 100;
/// A pause between batches, so that requests get the database in between.
const PAUSE: Duration = Duration::from_millis(5);

/// How long a session that never signed in is kept after its last change.
pub const ANONYMOUS_SESSION_IDLE: i64 = 3600;
/// Authorization codes are kept a day past their expiry (a late second use
/// still finds the code, and revokes what the first use issued).
const AUTH_CODE_GRACE: i64 = 86_400;

/// What one sweep deleted, by table.
#[derive(Debug, Default)]
pub struct Swept {
    pub deleted: Vec<(&'static str, u64)>,
}

impl Swept {
    pub fn of(&self, table: &str) -> u64 {
        self.deleted.iter().filter(|(t, _)| *t == table).map(|(_, n)| n).sum()
    }
}

/// Runs `sweep` every `database.retention_interval` on this node (the
/// first one interval after start), as a holder named at random.
pub fn spawn(state: std::sync::Arc<AppState>) {
    let every = state.settings.database.retention_interval;
    if every.is_zero() {
        return;
    }
    let holder = crate::crypto::random_token::<12>();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let swept = sweep(&state, &holder, crate::store::now()).await;
            // Given up at once, so that another node may take the next turn if this one stops.
            if let Err(e) = state.store.drop_lease(LEASE, &holder).await {
                tracing::debug!(error = format!("{e:#}"), "retention: could not give the lease up");
            }
            match swept {
                Ok(Some(s)) if s.deleted.iter().any(|(_, n)| *n > 0) => {
                    tracing::info!(deleted = ?s.deleted, "retention: expired rows deleted");
                }
                Ok(_) => {}
                Err(e) => {
                    state.metrics.retention_failed();
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "retention: the sweep failed; the next one goes on"
                    );
                }
            }
        }
    });
}

/// One sweep as if the time were `now` (tests move it forward instead of
/// aging rows): `None` when another node holds the lease.
pub async fn sweep(state: &AppState, holder: &str, now: i64) -> anyhow::Result<Option<Swept>> {
    let store = &state.store;
    if !store.take_lease(LEASE, holder, LEASE_SECS).await? {
        state.metrics.retention_skipped();
        return Ok(None);
    }
    let mut swept = Swept::default();
    // A table that fails (a statement past its timeout on a huge backlog, a
    // lock) is reported at the end; the others are still purged.
    let mut failed = Vec::new();
    let mut lost = false;
    for what in Expired::ALL {
        let cutoff = cutoff(&state.settings, what, now);
        let purged = in_batches(|| store.purge(what, cutoff, BATCH)).await;
        tally(state, &mut swept, &mut failed, what.table(), purged);
        // Still ours? (A sweep slower than the lease must not run beside another.)
        if !store.take_lease(LEASE, holder, LEASE_SECS).await? {
            lost = true;
            break;
        }
    }
    if !lost {
        let purged = in_batches(|| store.purge_token_families(now, BATCH)).await;
        tally(state, &mut swept, &mut failed, "token_families", purged);
    }
    if !failed.is_empty() {
        anyhow::bail!("could not purge {}", failed.join("; "));
    }
    if !lost {
        state.metrics.retention_done(now);
    }
    Ok(Some(swept))
}

/// Runs `purge` (one bounded statement) until a batch comes back short, at
/// most `BATCHES` times: the rows deleted, and the error that stopped it.
async fn in_batches<F>(mut purge: impl FnMut() -> F) -> (u64, Option<anyhow::Error>)
where
    F: std::future::Future<Output = anyhow::Result<u64>>,
{
    let mut total = 0;
    for _ in 0..BATCHES {
        match purge().await {
            Ok(n) => {
                total += n;
                if n < BATCH as u64 {
                    break;
                }
            }
            Err(e) => return (total, Some(e)),
        }
        tokio::time::sleep(PAUSE).await;
    }
    (total, None)
}

/// Counts what a table's purge deleted, and notes its failure.
fn tally(
    state: &AppState,
    swept: &mut Swept,
    failed: &mut Vec<String>,
    table: &'static str,
    (deleted, error): (u64, Option<anyhow::Error>),
) {
    state.metrics.retention_deleted(table, deleted);
    swept.deleted.push((table, deleted));
    if let Some(e) = error {
        failed.push(format!("{table}: {e:#}"));
    }
}

/// Rows of `what` older than this are past their use.
fn cutoff(settings: &Settings, what: Expired, now: i64) -> i64 {
    match what {
        // A code is kept one more lifetime past its expiry: a magic link
        // opened just before it expired can still be handed to the waiting tab.
        Expired::OtpCodes => now - settings.otp.ttl.as_secs() as i64,
        Expired::VerifiedIdentifiers | Expired::OtpLocks | Expired::Sessions | Expired::Revocations => now,
        Expired::RateCounters => now - longest_window(settings),
        Expired::AnonymousSessions => now - ANONYMOUS_SESSION_IDLE,
        Expired::AuthCodes => now - AUTH_CODE_GRACE,
        Expired::AuditEvents => now - settings.audit.retention.as_secs() as i64,
    }
}

/// The longest window any counter in `rate_counters` is read over: a
/// counter whose window started before it counts for nothing any more.
pub fn longest_window(settings: &Settings) -> i64 {
    [
        settings.otp.send_window,
        settings.otp.resend_after,
        settings.otp.lockout,
        settings.abuse.failure_window,
        settings.passwords.lockout,
        Duration::from_secs(crate::otp::KNOWN_SOURCE as u64),
    ]
    .iter()
    .map(|d| d.as_secs() as i64)
    .max()
    .unwrap_or(0)
}
