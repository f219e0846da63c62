//! Structured logs with `tracing`: text by default, JSON when `log.format = "json"`.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

pub fn init(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A request's id for its log span and its `X-Request-Id` header: this
/// process's random 64-bit prefix and a counter, so that ids from other
/// nodes and restarts are unlikely to repeat, without a system call per
/// request.
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| crate::crypto::hex(&crate::crypto::random_bytes::<8>()));
    format!("{prefix}{:08x}", NEXT.fetch_add(1, Ordering::Relaxed))
}
