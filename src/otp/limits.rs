//! Send and verification limits (SPEC §3, §10), counted in the database so
//! they hold across restarts and nodes, each count one atomic statement.
//!
//! A stranger cannot lock a user out: sends and wrong codes count against
//! the *source* that made them (an IPv4 address or IPv6 /64) for that
//! identifier: `otp.max_sends` per `otp.send_window`, the resend gap, and
//! `otp.max_attempts` wrong tries, each then locking that source out of that
//! identifier for `otp.lockout`. The identifier itself is locked only past
//! `abuse.max_failures` wrong codes per `abuse.failure_window`, from every
//! source together. Besides: per source address, per client, per
//! identifier from the sources that never signed in to it
//! (`abuse.identifier_max_sends`), and for SMS per destination country and
//! in all (texts from a source that proved the number before not counted).

use super::{audit, Origin};
use super::{Limit, OtpError};
use crate::state::AppState;
use crate::store::limits::{SendCount, SendCounted, SourceMarks};
use crate::store::now;
use crate::store::otp::NewCode;

pub fn locked(secs: i64) -> OtpError {
    OtpError::Locked {
        retry_after: secs.max(1) as u64,
    }
}

fn over(retry_after: i64, limit: Limit) -> OtpError {
    OtpError::TooMany {
        limit,
        retry_after: retry_after.max(1) as u64,
    }
}

/// How long a source that last verified a code for an identifier is known to it.
pub const KNOWN_SOURCE: i64 = 30 * 86_400;

/// Remembers that this source proved the identifier by `channel` (for
/// the SMS caps and `abuse.identifier_max_sends`), and lifts its resend
/// gap: its code is used, so a step-up sign-in (`prompt=login`,
/// `max_age`) need not wait.
pub async fn remember_source(state: &AppState, key: &str, source: &str, channel: &str) -> Result<(), OtpError> {
    Ok(state
        .store
        .mark_source(&source_marks(state, key, source, channel))
        .await?)
}

/// What `remember_source` marks. The known mark is written only where it
/// is read (`source_known`): by the SMS caps, for texts, and by the
/// identifier's ceiling when it is on.
fn source_marks(state: &AppState, key: &str, source: &str, channel: &str) -> SourceMarks {
    let from_source = source_key(key, source);
    let read = channel == "sms" || state.settings.abuse.identifier_max_sends > 0;
    SourceMarks {
        resend_key: format!("resend:{from_source}"),
        known_key: read.then(|| known_key(&from_source)),
    }
}

fn known_key(from_source: &str) -> String {
    format!("known:{from_source}")
}

/// Whether `source` verified a code (or used a magic link) for the
/// identifier `key` in the last `KNOWN_SOURCE` (30 days).
pub async fn source_known(state: &AppState, key: &str, source: &str) -> Result<bool, OtpError> {
    Ok(state
        .store
        .counted(&known_key(&source_key(key, source)), KNOWN_SOURCE)
        .await?)
}

/// Where a request counts: its client address's bucket (IPv6 by /64).
pub fn source(origin: &Origin<'_>) -> String {
    crate::net::ip_bucket(origin.ip)
}

/// The counter and lock key of one source for one identifier.
pub fn source_key(key: &str, source: &str) -> String {
    format!("{key}|{source}")
}

/// Counts a send and, within every limit, stores its code (`code`) and
/// gives back the address stored on the account holding the code's email
/// (`NewCode::email_key`), if any; refuses it over any limit, storing
/// nothing. `sms_country`: the
/// destination country of an SMS that will really be sent (none for email
/// and test numbers). `source`: the request's source, with whether it is
/// known to the identifier (`source_known`) when that has been read.
///
/// The counts go in this order and stop at the first over its limit (one
/// call to the store: `Store::count_sends_and_insert`, which stores the code
/// with the counts that admit it), so a send refused for one reason is not
/// counted against the limits after it.
pub async fn admit_send(
    state: &AppState,
    origin: &Origin<'_>,
    key: &str,
    source: (&str, Option<bool>),
    sms_country: Option<&str>,
    code: &NewCode<'_>,
) -> Result<Option<String>, OtpError> {
    let otp = &state.settings.otp;
    let abuse = &state.settings.abuse;
    let store = &state.store;
    let window = otp.send_window.as_secs() as i64;
    let (source, known) = source;
    let from_source = source_key(key, source);
    // Each count with the limit it enforces (`None`: the source's own
    // `otp.max_sends`, which locks the source out).
    let mut counts: Vec<SendCount> = Vec::with_capacity(7);
    let mut limits: Vec<Option<Limit>> = Vec::with_capacity(7);
    let mut step = |key: String, window: i64, limit: u32, why: Option<Limit>| {
        let limit = i64::from(limit);
        counts.push(SendCount { key, window, limit });
        limits.push(why);
    };
    // Many sources at one identifier (SMS bombing), when turned on: past the
    // ceiling only sources that signed in to it before get codes (the mark is
    // read only then). Counted first, so a refused send costs the asker
    // nothing else.
    if abuse.identifier_max_sends > 0 {
        let limit = abuse.identifier_max_sends;
        step(format!("sends:{key}"), window, limit, Some(Limit::Identifier));
    }
    if origin.ip.is_some() {
        step(format!("ip:{source}"), window, otp.ip_max_sends, Some(Limit::Address));
    }
    let client = format!("client:{}", origin.client.id);
    step(client, window, otp.client_max_sends, Some(Limit::Client));
    let gap = otp.resend_after.as_secs() as i64;
    if gap > 0 {
        step(format!("resend:{from_source}"), gap, 1, Some(Limit::ResendGap));
    }
    step(format!("sends:{from_source}"), window, otp.max_sends, None);
    if let Some(country) = sms_country {
        step(
            format!("sms:{country}"),
            window,
            abuse.country_max_sends,
            Some(Limit::Country),
        );
        step("sms:*".into(), window, abuse.global_max_sms, Some(Limit::AllSms));
    }
    let mut from = 0;
    loop {
        let over = match store
            .count_sends_and_insert((key, &from_source), &counts[from..], code)
            .await?
        {
            (SendCounted::Within, address) => return Ok(address),
            (SendCounted::Locked(secs), _) => return Err(locked(secs)),
            (SendCounted::Over { step, retry }, _) => (from + step, retry),
        };
        match limits[over.0] {
            // Over the identifier's ceiling, a source that signed in to it
            // before still gets its code: the counts after it go on.
            Some(Limit::Identifier)
                if match known {
                    Some(known) => known,
                    None => source_known(state, key, source).await?,
                } =>
            {
                from = over.0 + 1;
            }
            Some(limit) => return Err(self::over(over.1, limit)),
            None => {
                let lockout = otp.lockout.as_secs() as i64;
                store.lock_identifier(&from_source, now() + lockout).await?;
                audit(
                    state,
                    origin,
                    "locked_out",
                    key,
                    Some("too many codes requested from one source"),
                );
                return Err(locked(lockout));
            }
        }
    }
}

/// What a try at a code is counted against, before the code is compared
/// (so racing tries cannot pass the limit): the identifier's failures key
/// and `abuse.failure_window` (`Store::reserve_attempt` counts it).
pub fn tries(state: &AppState, key: &str) -> (String, i64) {
    (
        format!("failures:{key}"),
        state.settings.abuse.failure_window.as_secs() as i64,
    )
}

/// Judges a counted try (`tries`: the count, and the seconds left in its
/// window) against the identifier's `abuse.max_failures`: past it the
/// identifier is locked until the failure window ends.
pub async fn judge_try(state: &AppState, origin: &Origin<'_>, key: &str, counted: (i64, i64)) -> Result<(), OtpError> {
    let abuse = &state.settings.abuse;
    let (n, retry) = counted;
    if n > abuse.max_failures as i64 {
        state.store.lock_identifier(key, now() + retry).await?;
        if n == abuse.max_failures as i64 + 1 {
            audit(
                state,
                origin,
                "locked_out",
                key,
                Some("too many wrong codes from every source"),
            );
        }
        return Err(locked(retry));
    }
    Ok(())
}

/// Consumes the code of a try that was right, which then is not a failure
/// (its count is given back), and remembers the source that gave it
/// (`remember_source`), in one round trip. `false` when another request
/// used the code first.
/// `code`: its id and channel. `failures`: the key the try was counted
/// against (`tries`).
pub async fn consume_right(
    state: &AppState,
    key: &str,
    source: &str,
    code: (&str, &str),
    failures: &str,
) -> Result<bool, OtpError> {
    let (code_id, channel) = code;
    let marks = source_marks(state, key, source, channel);
    Ok(state.store.consume_code(code_id, failures, &marks).await?)
}

/// After `otp.max_attempts` wrong tries at its code, a source is locked out
/// of this identifier for `otp.lockout`; others are not.
pub async fn lock_source(state: &AppState, origin: &Origin<'_>, key: &str, source: &str) -> Result<(), OtpError> {
    let until = now() + state.settings.otp.lockout.as_secs() as i64;
    state.store.lock_identifier(&source_key(key, source), until).await?;
    audit(
        state,
        origin,
        "locked_out",
        key,
        Some("too many wrong codes from one source"),
    );
    Ok(())
}
