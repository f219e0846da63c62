//! `OtpError`: why the code policy refused. The JSON boundary turns it into
//! `ApiError` here (`invalid_code`, `too_many_requests` with `Retry-After`,
//! `delivery_failed`); the pages turn it into localized text with `text_key`.

use crate::error::ApiError;

/// Which send limit was reached (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `otp.ip_max_sends` from one source address.
    Address,
    /// `otp.client_max_sends` by one client.
    Client,
    /// `otp.resend_after` since the last code to this identifier.
    ResendGap,
}

#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    /// A wrong, expired, used or unknown code.
    #[error("the code is wrong, expired or already used")]
    WrongCode,
    /// A magic link token that is wrong, expired, used, or another client's.
    #[error("the magic link is wrong, expired or already used")]
    WrongMagicLink,
    /// The identifier is locked (too many codes or wrong tries).
    #[error("too many codes or wrong tries for this phone or email; try again later")]
    Locked { retry_after: u64 },
    #[error("{}", limit_text(.limit, *.retry_after))]
    TooMany { limit: Limit, retry_after: u64 },
    /// The SMS or email provider failed; the code is not left usable.
    #[error("the code could not be delivered; try again later")]
    DeliveryFailed,
    /// `code` and `magic_token` both, or neither.
    #[error("{0}")]
    BadRequest(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn limit_text(limit: &Limit, retry_after: u64) -> String {
    match limit {
        Limit::Address => "too many codes requested from this address; try again later".into(),
        Limit::Client => "too many codes requested by this client; try again later".into(),
        Limit::ResendGap => format!("a code was just sent; wait {retry_after} s before asking for another"),
    }
}

impl From<crate::store::DbError> for OtpError {
    fn from(e: crate::store::DbError) -> Self {
        OtpError::Internal(e.into())
    }
}

impl OtpError {
    /// Seconds to wait, for the limits.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            OtpError::Locked { retry_after } | OtpError::TooMany { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl From<OtpError> for ApiError {
    fn from(e: OtpError) -> Self {
        let text = e.to_string();
        match e {
            OtpError::WrongCode | OtpError::WrongMagicLink => ApiError::InvalidCode(text),
            OtpError::Locked { retry_after } | OtpError::TooMany { retry_after, .. } => ApiError::TooManyRequests {
                retry_after,
                description: text,
            },
            OtpError::DeliveryFailed => ApiError::DeliveryFailed,
            OtpError::BadRequest(why) => ApiError::InvalidRequest(why.into()),
            OtpError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}
