//! Send limits (SPEC §3): per source IP and per client budgets per
//! `otp.send_window`; the resend gap `otp.resend_after`; `otp.max_sends`
//! per identifier per window, after which the identifier is locked for
//! `otp.lockout`. All counted in the database, so they hold across nodes.

use super::{audit, Origin};
use super::{Limit, OtpError};
use crate::state::AppState;
use crate::store::now;

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

pub async fn check_send(state: &AppState, origin: &Origin<'_>, key: &str) -> Result<(), OtpError> {
    let otp = &state.settings.otp;
    let store = &state.store;
    let window = otp.send_window.as_secs() as i64;
    if let Some(secs) = store.identifier_locked_for(key).await? {
        return Err(locked(secs));
    }
    if let Some(ip) = origin.ip {
        let (n, retry) = store.hit(&format!("ip:{ip}"), window).await?;
        if n > otp.ip_max_sends as i64 {
            return Err(over(retry, Limit::Address));
        }
    }
    let (n, retry) = store.hit(&format!("client:{}", origin.client.id), window).await?;
    if n > otp.client_max_sends as i64 {
        return Err(over(retry, Limit::Client));
    }
    let gap = otp.resend_after.as_secs() as i64;
    if gap > 0 {
        let (n, retry) = store.hit(&format!("resend:{key}"), gap).await?;
        if n > 1 {
            return Err(over(retry, Limit::ResendGap));
        }
    }
    let (n, _) = store.hit(&format!("sends:{key}"), window).await?;
    if n > otp.max_sends as i64 {
        let lockout = otp.lockout.as_secs() as i64;
        store.lock_identifier(key, now() + lockout).await?;
        audit(state, origin, "locked_out", key, Some("too many codes requested"));
        return Err(locked(lockout));
    }
    Ok(())
}
