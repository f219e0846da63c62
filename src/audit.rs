//! The audit trail's writer. Request handlers hand events over without
//! waiting; a background task writes them in batches (at most 200 events or
//! 50 ms apart), so the trail costs no database round trip on the request
//! path. Pending events are flushed at graceful shutdown; `flush` waits for
//! everything recorded so far to be written.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::audit::Event;
use crate::store::Store;

const BATCH: usize = 200;
const LINGER: Duration = Duration::from_millis(50);

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

    /// Queues one event and logs it (target `audit`). Never blocks the request.
    pub fn record(&self, e: Event<'_>) {
        tracing::info!(target: "audit", event = e.event, client_id = e.client_id.unwrap_or("-"), user_id = e.user_id.unwrap_or("-"), ip = e.ip.unwrap_or("-"));
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
        if self.tx.send(Msg::Event(record)).is_err() {
            tracing::error!("the audit writer has stopped; an event was not recorded");
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

async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let first = match rx.recv().await {
            Some(m) => m,
            None => return,
        };
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(r) => batch.push(r),
                Msg::Flush(done) => waiting.push(done),
            }
            if batch.len() >= BATCH || !waiting.is_empty() {
                break;
            }
            next = tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten();
        }
        if !batch.is_empty() {
            if let Err(e) = store.audit_batch(&batch).await {
                tracing::error!(
                    error = format!("{e:#}"),
                    lost = batch.len(),
                    "could not write audit events"
                );
            }
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
