//! Server-rendered pages.

pub mod outbox;
