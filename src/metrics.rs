//! `GET /metrics` in the Prometheus text format: requests by status class and
//! their latency, codes sent and verified, delivery failures, tokens issued.
//! Plain atomics, so counting costs nothing measurable on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const CHANNELS: [&str; 2] = ["sms", "email"];
const GRANTS: [&str; 5] = [
    "client_credentials",
    "otp",
    "refresh_token",
    "authorization_code",
    "password",
];

/// Why code sends and tries were refused (SPEC §10), as `OtpError::reason` names them.
const REFUSALS: [&str; 11] = [
    "locked",
    "identifier_limit",
    "ip_limit",
    "client_limit",
    "resend_gap",
    "country_limit",
    "global_sms_limit",
    "country_not_allowed",
    "number_type",
    "bot_check_failed",
    "bot_check_unavailable",
];

/// The tables retention purges (`retention.rs`).
const RETAINED: [&str; 9] = [
    "otp_codes",
    "verified_identifiers",
    "rate_counters",
    "otp_locks",
    "sessions",
    "auth_codes",
    "revocations",
    "audit_events",
    "token_families",
];
const SWEEPS: [&str; 3] = ["done", "skipped", "failed"];

#[derive(Default)]
pub struct Metrics {
    retention_deleted: [AtomicU64; RETAINED.len()],
    sweeps: [AtomicU64; SWEEPS.len()],
    last_sweep: AtomicU64,
    refusals: [AtomicU64; REFUSALS.len()],
    test_codes: AtomicU64,
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_micros: AtomicU64,
    codes_sent: [AtomicU64; 2],
    delivery_failures: [AtomicU64; 2],
    codes_verified: AtomicU64,
    code_failures: AtomicU64,
    tokens: [AtomicU64; GRANTS.len()],
}

fn channel(name: &str) -> usize {
    CHANNELS.iter().position(|c| *c == name).unwrap_or(0)
}

impl Metrics {
    pub fn request(&self, status: u16, took: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }
    pub fn code_sent(&self, ch: &str) {
        self.codes_sent[channel(ch)].fetch_add(1, Relaxed);
    }
    pub fn delivery_failed(&self, ch: &str) {
        self.delivery_failures[channel(ch)].fetch_add(1, Relaxed);
    }
    pub fn code_verified(&self) {
        self.codes_verified.fetch_add(1, Relaxed);
    }
    pub fn code_failed(&self) {
        self.code_failures.fetch_add(1, Relaxed);
    }
    pub fn refused(&self, reason: &str) {
        if let Some(i) = REFUSALS.iter().position(|r| *r == reason) {
            self.refusals[i].fetch_add(1, Relaxed);
        }
    }
    pub fn test_code_issued(&self) {
        self.test_codes.fetch_add(1, Relaxed);
    }
    pub fn token_issued(&self, grant: &str) {
        if let Some(i) = GRANTS.iter().position(|g| *g == grant) {
            self.tokens[i].fetch_add(1, Relaxed);
        }
    }

    pub fn retention_deleted(&self, table: &str, n: u64) {
        if let Some(i) = RETAINED.iter().position(|t| *t == table) {
            self.retention_deleted[i].fetch_add(n, Relaxed);
        }
    }
    /// A sweep finished, as if at `now` (unix seconds).
    pub fn retention_done(&self, now: i64) {
        self.sweeps[0].fetch_add(1, Relaxed);
        self.last_sweep.store(now.max(0) as u64, Relaxed);
    }
    /// Another node held the lease.
    pub fn retention_skipped(&self) {
        self.sweeps[1].fetch_add(1, Relaxed);
    }
    pub fn retention_failed(&self) {
        self.sweeps[2].fetch_add(1, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let total: u64 = self.by_class.iter().map(|c| c.load(Relaxed)).sum();
        out.push_str("# HELP sesame_http_requests_total HTTP requests answered, by status class.\n# TYPE sesame_http_requests_total counter\n");
        for (i, c) in self.by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "sesame_http_requests_total{{status=\"{}xx\"}} {}",
                i + 1,
                c.load(Relaxed)
            );
        }
        out.push_str("# HELP sesame_http_request_duration_seconds Time to answer a request.\n# TYPE sesame_http_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(
                out,
                "sesame_http_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "sesame_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "sesame_http_request_duration_seconds_sum {}",
            self.latency_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "sesame_http_request_duration_seconds_count {total}");
        let mut counter = |name: &str, help: &str, label: &str, values: &[(&str, &AtomicU64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (l, v) in values {
                if label.is_empty() {
                    let _ = writeln!(out, "{name} {}", v.load(Relaxed));
                } else {
                    let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {}", v.load(Relaxed));
                }
            }
        };
        counter(
            "sesame_codes_sent_total",
            "One-time codes delivered.",
            "channel",
            &per_channel(&self.codes_sent),
        );
        counter(
            "sesame_delivery_failures_total",
            "Codes the provider failed to deliver.",
            "channel",
            &per_channel(&self.delivery_failures),
        );
        counter(
            "sesame_codes_verified_total",
            "Codes verified.",
            "",
            &[("", &self.codes_verified)],
        );
        counter(
            "sesame_code_failures_total",
            "Wrong, expired or used codes tried.",
            "",
            &[("", &self.code_failures)],
        );
        let refusals: Vec<_> = REFUSALS.iter().copied().zip(self.refusals.iter()).collect();
        counter(
            "sesame_code_refusals_total",
            "Code sends and tries refused by a limit or an abuse rule, by reason.",
            "reason",
            &refusals,
        );
        counter(
            "sesame_test_codes_total",
            "Codes for abuse.test_numbers (fixed code, nothing sent).",
            "",
            &[("", &self.test_codes)],
        );
        let tokens: Vec<_> = GRANTS.iter().copied().zip(self.tokens.iter()).collect();
        counter(
            "sesame_tokens_issued_total",
            "Token responses, by grant.",
            "grant",
            &tokens,
        );
        let deleted: Vec<_> = RETAINED.iter().copied().zip(self.retention_deleted.iter()).collect();
        counter(
            "sesame_retention_deleted_total",
            "Rows past their lifetime deleted by retention, by table.",
            "table",
            &deleted,
        );
        let sweeps: Vec<_> = SWEEPS.iter().copied().zip(self.sweeps.iter()).collect();
        counter(
            "sesame_retention_sweeps_total",
            "Retention sweeps on this node: done, skipped (another node held the lease) or failed.",
            "outcome",
            &sweeps,
        );
        let _ = writeln!(
            out,
            "# HELP sesame_retention_last_sweep_timestamp_seconds When this node last finished a sweep.\n# TYPE sesame_retention_last_sweep_timestamp_seconds gauge\nsesame_retention_last_sweep_timestamp_seconds {}",
            self.last_sweep.load(Relaxed)
        );
        out
    }
}

fn per_channel(counts: &[AtomicU64; 2]) -> Vec<(&'static str, &AtomicU64)> {
    CHANNELS.iter().copied().zip(counts.iter()).collect()
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
