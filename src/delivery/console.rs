//! Console delivery: the code goes to the log and to an in-memory outbox
//! shown on `/dev/outbox` (development only; the route exists only then).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use super::templates::Rendered;
use super::Message;

const KEEP: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct OutboxEntry {
    pub at: i64,
    pub channel: &'static str,
    pub to: String,
    pub code: String,
    pub subject: Option<String>,
    pub magic_link: Option<String>,
    pub text: String,
}

#[derive(Default)]
pub struct Outbox(Mutex<VecDeque<OutboxEntry>>);

impl Outbox {
    pub fn push(&self, m: &Message, r: &Rendered) {
        let mut q = self.0.lock().expect("outbox lock");
        if q.len() == KEEP {
            q.pop_back();
        }
        q.push_front(OutboxEntry {
            at: crate::store::now(),
            channel: m.channel,
            to: m.to.clone(),
            code: m.code.clone(),
            subject: r.subject.clone(),
            magic_link: m.magic_link.clone(),
            text: r.text.clone(),
        });
    }

    /// Newest first.
    pub fn entries(&self) -> Vec<OutboxEntry> {
        self.0.lock().expect("outbox lock").iter().cloned().collect()
    }
}
