//! Creating an account. The verified identifier is its sign-in key; any other
//! phone or email the caller gives is kept as an unverified contact (SPEC §9:
//! never a lookup key, never unique, never a 409).

use serde_json::{json, Value};

use super::events::{self, AccountEvent, Actor};
use super::{passwords, AccountError, Accounts, Invalid};
use crate::crypto;
use crate::domain::{Email, Identifier, Phone};
use crate::store::users::{InsertUser, NewUser, User};

/// An account to create.
#[derive(Default)]
pub struct Profile {
    /// `None`: a generated `user_…` name.
    pub username: Option<String>,
    /// The identifier a code was verified for.
    pub verified: Option<Identifier>,
    pub contact_email: Option<Email>,
    pub contact_phone: Option<Phone>,
    pub first_name: String,
    pub last_name: String,
    pub password: Option<String>,
    pub metadata: Value,
}

impl Profile {
    /// Just the verified identifier and a generated username.
    pub fn for_verified(ident: &Identifier) -> Profile {
        Profile {
            verified: Some(ident.clone()),
            metadata: json!({}),
            ..Default::default()
        }
    }

    /// Adds a phone or email the caller gave without proving it: kept as a
    /// contact, unless it is the verified one itself.
    pub fn with_contact(mut self, given: Identifier) -> Profile {
        if self
            .verified
            .as_ref()
            .is_some_and(|v| v.key() == given.key() && v.kind() == given.kind())
        {
            return self;
        }
        match given {
            Identifier::Email(e) => self.contact_email = Some(e),
            Identifier::Phone(p) => self.contact_phone = Some(p),
        }
        self
    }
}

/// 3 to 32 letters, digits, `.`, `_` or `-`, at least one a letter, and
/// not shaped like a `sub` (32 hex digits): the CLI and admin pages also
/// look users up by sub and by phone number, which a username must not
/// shadow (`4155550199` would name another user's +1 415 555 0199).
pub fn valid_username(u: &str) -> Result<String, AccountError> {
    let like_a_sub = u.len() == 32 && u.bytes().all(|b| b.is_ascii_hexdigit());
    let ok = !like_a_sub
        && (3..=32).contains(&u.len())
        && u.bytes().any(|b| b.is_ascii_alphabetic())
        && u.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    match ok {
        true => Ok(u.to_string()),
        false => Err(AccountError::Invalid(Invalid::Username)),
    }
}

/// At most 100 characters, trimmed.
pub fn valid_name(n: &str) -> Result<String, AccountError> {
    let n = n.trim();
    match n.chars().count() <= 100 {
        true => Ok(n.to_string()),
        false => Err(AccountError::Invalid(Invalid::NameTooLong)),
    }
}

/// The account as the OTP API and the admin API show it. A contact shows as
/// the `email` / `phone_number` with `*_verified: false` when no verified one exists.
pub fn user_json(u: &User) -> Value {
    let email = u.email.as_ref().or(u.contact_email.as_ref());
    let phone = u.phone.as_ref().or(u.contact_phone.as_ref());
    json!({
        "sub": u.id,
        "username": u.username,
        "email": email,
        "email_verified": u.email.is_some(),
        "phone_number": phone,
        "phone_number_verified": u.phone.is_some(),
        "first_name": u.first_name,
        "last_name": u.last_name,
        "metadata": u.metadata,
        "created_at": u.created_at,
    })
}

impl Accounts<'_> {
    /// Creates the account; `Taken` when its verified identifier or chosen
    /// username is another account's. Records `account_created`.
    pub async fn create(&self, p: &Profile, actor: Actor<'_>, ip: Option<&str>) -> Result<User, AccountError> {
        if let Some(u) = &p.username {
            valid_username(u)?;
        }
        let password_hash = match &p.password {
            Some(pw) => {
                passwords::acceptable(pw)?;
                Some(passwords::hash(pw.clone()).await?)
            }
            None => None,
        };
        // Taken already: say so before spending a password hash on it (without
        // a password the insert itself answers, with no extra query).
        if let (Some(v), Some(_)) = (&p.verified, &p.password) {
            if self.store.user_by_identifier(v.kind(), v.key()).await?.is_some() {
                return Err(AccountError::Taken(v.kind()));
            }
        }
        let (email, phone) = match &p.verified {
            Some(Identifier::Email(e)) => (Some(e), None),
            Some(Identifier::Phone(ph)) => (None, Some(ph)),
            None => (None, None),
        };
        let id = crypto::random_id::<16>();
        // A generated username may collide (rarely): try a few.
        for _ in 0..3 {
            let username = p
                .username
                .clone()
                .unwrap_or_else(|| format!("user_{}", crypto::random_digits(10)));
            let outcome = self
                .store
                .insert_user(&NewUser {
                    id: &id,
                    username: Some(&username),
                    username_key: Some(username.to_ascii_lowercase()),
                    email: email.map(Email::address),
                    email_key: email.map(Email::key),
                    email_verified: email.is_some(),
                    phone: phone.map(Phone::e164),
                    phone_verified: phone.is_some(),
                    first_name: &p.first_name,
                    last_name: &p.last_name,
                    password_hash: password_hash.as_deref(),
                    metadata: &p.metadata,
                    contact_email: p.contact_email.as_ref().map(Email::address),
                    contact_phone: p.contact_phone.as_ref().map(Phone::e164),
                })
                .await?;
            match outcome {
                InsertUser::Created(user) => {
                    events::record(self.audit, AccountEvent::Created, &user.id, actor, None, ip);
                    return Ok(*user);
                }
                InsertUser::Conflict("username") if p.username.is_none() => continue,
                InsertUser::Conflict(what) => return Err(AccountError::Taken(what)),
            }
        }
        Err(AccountError::Taken("username"))
    }
}
