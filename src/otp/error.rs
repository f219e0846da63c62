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
    /// `otp.resend_after` since the last code to this identifier from this source.
    ResendGap,
    /// `abuse.identifier_max_sends` from sources that never signed in to the identifier.
    Identifier,
    /// `abuse.country_max_sends` SMS to one country.
    Country,
    /// `abuse.global_max_sms` SMS in all.
    AllSms,
}

/// Why a send was refused outright (SPEC §10): `400 invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The number's country is not in `abuse.allowed_countries`.
    Country(String),
    /// Premium-rate, shared-cost, UAN or unknown type (`abuse.block_premium_numbers`).
    NumberType(&'static str),
    /// No bot-check token, or the provider said it is not valid.
    BotCheck,
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
    /// Not sent, by rule: a country, number type or bot check (SPEC §10).
    #[error("{}", refusal_text(.0))]
    Refused(Refusal),
    /// The bot check's provider failed or did not answer: refused (fail closed).
    #[error("the bot check could not be completed; try again later")]
    BotCheckUnavailable,
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
        Limit::Identifier => {
            "too many codes were requested for this phone or email from new places; try again later, or from where you signed in before".into()
        }
        Limit::Country => "too many text messages to this country; try again later".into(),
        Limit::AllSms => "too many text messages are being sent; try again later".into(),
    }
}

fn refusal_text(refusal: &Refusal) -> String {
    match refusal {
        Refusal::Country(cc) => format!("codes are not sent to phone numbers of this country ({cc})"),
        Refusal::NumberType(kind) => format!("codes are not sent to {kind} numbers"),
        Refusal::BotCheck => "the bot check failed or is missing (`bot_token`); solve it and try again".into(),
    }
}

impl From<crate::store::DbError> for OtpError {
    fn from(e: crate::store::DbError) -> Self {
        OtpError::Internal(e.into())
    }
}

impl OtpError {
    /// The refusal's name in `/metrics` and the audit trail; `None` for what is not a refusal.
    pub fn reason(&self) -> Option<&'static str> {
        Some(match self {
            OtpError::Locked { .. } => "locked",
            OtpError::TooMany { limit, .. } => match limit {
                Limit::Address => "ip_limit",
                Limit::Client => "client_limit",
                Limit::ResendGap => "resend_gap",
                Limit::Identifier => "identifier_limit",
                Limit::Country => "country_limit",
                Limit::AllSms => "global_sms_limit",
            },
            OtpError::Refused(Refusal::Country(_)) => "country_not_allowed",
            OtpError::Refused(Refusal::NumberType(_)) => "number_type",
            OtpError::Refused(Refusal::BotCheck) => "bot_check_failed",
            OtpError::BotCheckUnavailable => "bot_check_unavailable",
            _ => return None,
        })
    }

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
            OtpError::Refused(_) => ApiError::InvalidRequest(text),
            OtpError::BotCheckUnavailable => ApiError::Unavailable(text),
            OtpError::BadRequest(why) => ApiError::InvalidRequest(why.into()),
            OtpError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}
