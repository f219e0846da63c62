//! `AccountError`: why the account service refused. Each boundary converts it
//! once: to the JSON API's `ApiError` here, to a page's localized text in
//! `web::page` (through `Invalid::text_key` and `AccountError::text_key`).

use crate::error::ApiError;

/// An input the account rules refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Username,
    PasswordLength,
    NameTooLong,
    NothingToChange,
    /// The same phone or email the account already signs in with.
    SameIdentifier,
}

impl Invalid {
    /// The English text of the JSON API.
    pub fn message(self) -> &'static str {
        match self {
            Invalid::Username => {
                "`username` must be 3 to 32 letters, digits, '.', '_' or '-', with at least one letter"
            }
            Invalid::PasswordLength => "`password` must be 8 to 128 characters",
            Invalid::NameTooLong => "names must be at most 100 characters",
            Invalid::NothingToChange => "send `username`, `password` or both",
            Invalid::SameIdentifier => "the account already uses this phone number or email",
        }
    }

    /// The key of the pages' localized text (`locales/*.toml`).
    pub fn text_key(self) -> &'static str {
        match self {
            Invalid::Username => "account.invalid_username",
            Invalid::PasswordLength => "account.invalid_password",
            Invalid::NameTooLong => "account.invalid_name",
            Invalid::NothingToChange => "account.nothing_to_change",
            Invalid::SameIdentifier => "account.same_identifier",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{}", .0.message())]
    Invalid(Invalid),
    /// Another account already uses this username or verified identifier.
    #[error("this {0} is taken")]
    Taken(&'static str),
    #[error("no such account")]
    NotFound,
    /// The sign-in is older than `account.reauth_after`: a fresh code first.
    #[error("this change needs a recent sign-in")]
    ReauthRequired,
    /// The token may not make this change (SPEC §9: a `first_party` client with `sesame:account`).
    #[error("{0}")]
    NotPermitted(&'static str),
    /// Replacing a password needs the current one (or a fresh code).
    #[error("the current password is needed to replace it")]
    CurrentPasswordRequired,
    /// A wrong password, an unknown login or a disabled account: one answer for all.
    #[error("wrong username or password")]
    WrongPassword,
    /// Too many wrong passwords from this account or address.
    #[error("too many wrong passwords; try again later")]
    Locked { retry_after: u64 },
    /// Every hashing slot is taken and the queue is full: try again.
    #[error("the server is busy; try again")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::DbError> for AccountError {
    fn from(e: crate::store::DbError) -> Self {
        AccountError::Internal(e.into())
    }
}

impl AccountError {
    /// The key of the pages' localized text; `None` for what is not the
    /// user's to mend on the form (internal errors, a busy server).
    pub fn text_key(&self) -> Option<&'static str> {
        Some(match self {
            AccountError::Invalid(i) => i.text_key(),
            AccountError::Taken("username") => "account.username_taken",
            AccountError::Taken(_) => "account.identifier_taken",
            AccountError::NotFound => "account.not_found",
            AccountError::ReauthRequired => "account.reauth_required",
            AccountError::NotPermitted(_) => "account.not_permitted",
            AccountError::CurrentPasswordRequired => "account.current_password_required",
            AccountError::WrongPassword => "password.wrong",
            AccountError::Locked { .. } => "password.locked",
            AccountError::Busy | AccountError::Internal(_) => return None,
        })
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let text = e.to_string();
        match e {
            AccountError::Invalid(_) | AccountError::CurrentPasswordRequired => ApiError::InvalidRequest(text),
            AccountError::Taken(_) => ApiError::Conflict(text),
            AccountError::NotFound => ApiError::NotFound(text),
            AccountError::ReauthRequired => {
                ApiError::InvalidToken(format!("{text}: sign in again (a token with a recent `auth_time`)"))
            }
            AccountError::NotPermitted(why) => ApiError::InsufficientScope(why.into()),
            AccountError::WrongPassword => ApiError::InvalidGrant(text),
            AccountError::Locked { retry_after } => ApiError::TooManyRequests {
                retry_after,
                description: text,
            },
            AccountError::Busy => ApiError::Busy,
            AccountError::Internal(e) => ApiError::Internal(e),
        }
    }
}
