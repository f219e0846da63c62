//! The audit trail's writer. An acknowledged operation's event is never
//! lost, not to `kill -9` and not to a database outage:
//!
//! - A request runs inside an audit scope (`in_scope`, set up for every
//!   request in `startup.rs`). Events recorded there are held with the
//!   request and written before it is answered: inside the request's
//!   statement group when it has one (`Store::grouped`; on SQLite the same
//!   transaction, so it costs no commit of its own), else in one statement
//!   after the handler. If that write fails, the answer is a 503, not a
//!   success, and the events go to the background writer to be retried.
//! - Events recorded outside any request (back-channel deliveries, the
//!   retention task) go to a background task that writes them in batches (at
//!   most 200 events or 50 ms apart) and retries a failed batch until the
//!   database answers again. Pending events are flushed at graceful
//!   shutdown; `flush` waits for everything queued so far to be written.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::audit::Event;
use crate::store::Store;

const BATCH: usize = 200;
const LINGER: Duration = Duration::from_millis(50);
/// How long the background writer waits before retrying a failed batch, at most.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Events the background writer keeps while the database is away; past it
/// the oldest are dropped (and said so in the log), so memory stays bounded.
const KEPT_MAX: usize = 100_000;

tokio::task_local! {
    /// The events recorded by the request (or command) being served, not yet written.
    static PENDING: RefCell<Pending>;
}

#[derive(Default)]
struct Pending {
    events: Vec<Record>,
    /// Statement groups entered and not yet left: the outermost writes the events.
    groups: u32,
}

/// Runs `work` in an audit scope: the events it records are held, not
/// queued, and handed back with its output for the caller to write before
/// it answers.
pub async fn in_scope<F: Future>(work: F) -> (F::Output, Vec<Record>) {
    PENDING
        .scope(RefCell::default(), async {
            let out = work.await;
            (out, take_pending())
        })
        .await
}

/// Puts events back into this audit scope (after a write that failed).
pub fn hold_again(events: Vec<Record>) {
    if events.is_empty() {
        return;
    }
    let _ = PENDING.try_with(|p| {
        let mut p = p.borrow_mut();
        let later = std::mem::replace(&mut p.events, events);
        p.events.extend(later);
    });
}

/// The events recorded so far in this audit scope (none outside one).
pub fn take_pending() -> Vec<Record> {
    PENDING
        .try_with(|p| std::mem::take(&mut p.borrow_mut().events))
        .unwrap_or_default()
}

/// A statement group starts: whether it is the outermost (which writes the events).
pub fn group_entered() -> bool {
    PENDING
        .try_with(|p| {
            let mut p = p.borrow_mut();
            p.groups += 1;
            p.groups == 1
        })
        .unwrap_or(true)
}

/// A statement group ends.
pub fn group_left() {
    let _ = PENDING.try_with(|p| {
        let mut p = p.borrow_mut();
        p.groups = p.groups.saturating_sub(1);
    });
}

/// An event owned by the queue (`Event` borrows).
#[derive(Debug, Default, Clone)]
pub struct Record {
    pub event: String,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    pub ident_key: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
    pub at: i64,
}

enum Msg {
    Event(Record),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Msg>,
}

impl AuditLog {
    pub fn start(store: Store) -> AuditLog {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store, rx));
        AuditLog { tx }
    }

    /// Records one event: held for the current request's write in an audit
    /// scope, else queued. Never blocks. It is logged (target `audit`) once
    /// written (`written`), so the log never tells of an event that a
    /// rolled-back group or a failed write took back.
    pub fn record(&self, e: Event<'_>) {
        let own = |o: Option<&str>| o.map(str::to_string);
        let record = Record {
            event: e.event.to_string(),
            client_id: own(e.client_id),
            user_id: own(e.user_id),
            ident_key: own(e.ident_key),
            ip: own(e.ip),
            detail: own(e.detail),
            at: crate::store::now(),
        };
        let mut record = Some(record);
        let held = PENDING.try_with(|p| p.borrow_mut().events.extend(record.take()));
        if held.is_err() {
            self.queue(record.into_iter());
        }
    }

    /// Writes the events now (one statement); if that fails, queues them for
    /// the background writer's retries and says so.
    pub async fn write(&self, store: &crate::store::Store, records: Vec<Record>) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let written = store.audit_batch(&records).await;
        if written.is_err() {
            self.queue(records.into_iter());
        }
        written
    }

    fn queue(&self, records: impl Iterator<Item = Record>) {
        for r in records {
            if self.tx.send(Msg::Event(r)).is_err() {
                tracing::error!("the audit writer has stopped; an event was not recorded");
            }
        }
    }

    /// Waits until every event recorded before this call is in the database.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Logs events the database has just taken (target `audit`): called by the
/// store's audit write when it succeeds, whichever path wrote them.
pub fn written(records: &[Record]) {
    fn or_dash(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or("-")
    }
    for r in records {
        tracing::info!(target: "audit", event = r.event.as_str(), client_id = or_dash(&r.client_id), user_id = or_dash(&r.user_id), ip = or_dash(&r.ip));
    }
}

async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut retry = Duration::ZERO;
    loop {
        if batch.is_empty() {
            // Wait for an event, then gather more for up to `LINGER`.
            let Some(first) = rx.recv().await else { return };
            absorb(first, &mut batch, &mut waiting);
            let deadline = tokio::time::Instant::now() + LINGER;
            while batch.len() < BATCH && waiting.is_empty() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(msg)) => absorb(msg, &mut batch, &mut waiting),
                    _ => break,
                }
            }
        } else {
            // A batch that failed: pause, then retry it with everything queued since.
            tokio::time::sleep(retry).await;
            while let Ok(msg) = rx.try_recv() {
                absorb(msg, &mut batch, &mut waiting);
            }
        }
        if batch.len() > KEPT_MAX {
            let lost = batch.len() - KEPT_MAX;
            batch.drain(..lost);
            tracing::error!(
                lost,
                "the database has been away too long: the oldest audit events were dropped"
            );
        }
        // In statements of at most `BATCH` events (a statement's parameters
        // are limited); each one written leaves the batch.
        while !batch.is_empty() {
            let n = batch.len().min(BATCH);
            match store.audit_batch(&batch[..n]).await {
                Ok(()) => {
                    if !retry.is_zero() {
                        tracing::info!(written = n, "audit events held during an outage are written");
                    }
                    batch.drain(..n);
                    retry = Duration::ZERO;
                }
                Err(e) if crate::store::is_unavailable(&e) => {
                    retry = (retry * 2).clamp(Duration::from_millis(250), RETRY_MAX);
                    tracing::warn!(
                        error = format!("{e:#}"),
                        held = batch.len(),
                        retry_in_ms = retry.as_millis() as u64,
                        "could not write audit events; they are kept and retried"
                    );
                    break;
                }
                Err(e) => {
                    // Not an outage: these events will never be written; the others may.
                    tracing::error!(error = format!("{e:#}"), lost = n, "audit events could not be written");
                    batch.drain(..n);
                }
            }
        }
        // A flush is answered after the attempt that includes what was
        // queued before it: written, or (while the database is away) kept,
        // so that a shutdown during an outage is not held up for ever.
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

fn absorb(msg: Msg, batch: &mut Vec<Record>, waiting: &mut Vec<oneshot::Sender<()>>) {
    match msg {
        Msg::Event(r) => batch.push(r),
        Msg::Flush(done) => waiting.push(done),
    }
}
