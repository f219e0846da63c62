//! Accounts: the one service behind the OTP API, the grants, the sign-in and
//! account pages, the admin pages, the admin API and the CLI. It owns the
//! account rules of SPEC §9 (only verified identifiers sign in; sensitive
//! changes need a recent sign-in and end the other sessions and token
//! families; bounded, counted password checks) and records every operation
//! in the audit trail the same way, whoever calls it.

use std::time::Duration;

use crate::audit::AuditLog;
use crate::config::Settings;
use crate::delivery::{Delivery, Message, Notice};
use crate::domain::{Client, Identifier, Scope};
use crate::oauth::revocations::Revocations;
use crate::oidc::backchannel::{Backchannel, Ended};
use crate::state::AppState;
use crate::store::now;
use crate::store::tokens::Families;
use crate::store::users::{InsertUser, User, UserFlag};
use crate::store::Store;

mod error;
pub mod events;
pub mod passwords;
mod profile;

pub use error::{AccountError, Invalid};
pub use events::{AccountEvent, Actor};
pub use profile::{user_json, valid_name, valid_username, Profile};

/// The scope a token needs for sensitive changes through the API (SPEC §9).
pub const ACCOUNT_SCOPE: &str = "sesame:account";

/// The account service, over what its operations need.
pub struct Accounts<'a> {
    store: &'a Store,
    settings: &'a Settings,
    audit: &'a AuditLog,
    /// This node's revocation list (absent in the CLI: nodes reload it).
    revocations: Option<&'a Revocations>,
    /// For notices after sensitive changes (absent in the CLI).
    delivery: Option<&'a Delivery>,
    /// Where sign-outs are passed on to clients (Back-Channel Logout).
    backchannel: &'a Backchannel,
}

/// How the caller of a sensitive change signed in (SPEC §9).
pub enum Authority<'a> {
    /// A browser session on Sesame's own pages.
    Session { auth_time: i64 },
    /// An access token at the API.
    Token {
        client: &'a Client,
        scope: &'a Scope,
        auth_time: Option<i64>,
        /// The token's refresh-token family (`sid`), which the change keeps.
        family: Option<&'a str>,
    },
}

/// What a password change carries besides the new password.
#[derive(Default)]
pub struct PasswordProof<'a> {
    /// The current password, needed to replace one.
    pub current: Option<&'a str>,
    /// A code was verified for this change just now (the account page's re-check).
    pub fresh_code: bool,
}

impl<'a> Accounts<'a> {
    pub fn of(state: &'a AppState) -> Accounts<'a> {
        Accounts {
            store: &state.store,
            settings: &state.settings,
            audit: &state.audit,
            revocations: Some(&state.revocations),
            delivery: Some(&state.delivery),
            backchannel: &state.backchannel,
        }
    }

    /// For the CLI: no revocation list of its own and no delivery.
    pub fn offline(
        store: &'a Store,
        settings: &'a Settings,
        audit: &'a AuditLog,
        backchannel: &'a Backchannel,
    ) -> Accounts<'a> {
        Accounts {
            store,
            settings,
            audit,
            revocations: None,
            delivery: None,
            backchannel,
        }
    }

    /// Tells the clients of the user's live token families (at one client,
    /// or all) that they ended: read before they end (disable, delete, a
    /// sensitive change, an app's access revoked).
    pub async fn tell_clients_families_end(&self, user_id: &str, client: Option<&str>) -> Result<(), AccountError> {
        let mut families = self.store.live_families_in(Families::Of(user_id)).await?;
        families.retain(|f| client.is_none_or(|c| f.client_id == c));
        if !families.is_empty() {
            self.backchannel.notify(Ended::Families(families));
        }
        Ok(())
    }

    fn access_ttl(&self) -> Duration {
        self.settings.tokens.access_ttl
    }

    /// Ends every access token issued to the user so far, those without a
    /// refresh-token family too (disable, delete).
    async fn end_access_tokens(&self, user_id: &str) -> Result<(), AccountError> {
        match self.revocations {
            Some(r) => r.revoke_subject(self.store, user_id).await?,
            None => {
                let ttl = self.access_ttl().as_secs() as i64;
                crate::oauth::revocations::revoke_subject_in(self.store, user_id, ttl).await?
            }
        }
        Ok(())
    }

    /// Ends the user's refresh-token families (and the access tokens issued
    /// from them), but `keep`; returns how many ended.
    pub async fn end_tokens(&self, user_id: &str, keep: Option<&str>) -> Result<usize, AccountError> {
        let families = self.store.live_families(user_id, None).await?;
        let mut ended = 0;
        for f in families.iter().filter(|f| Some(f.as_str()) != keep) {
            match self.revocations {
                Some(r) => r.revoke_family(self.store, f, self.access_ttl()).await?,
                None => {
                    self.store.revoke_family(f, self.access_ttl().as_secs() as i64).await?;
                }
            }
            ended += 1;
        }
        Ok(ended)
    }

    /// Changes the profile names (at most 100 characters each).
    pub async fn set_names(&self, user: &User, first: &str, last: &str, actor: Actor<'_>) -> Result<(), AccountError> {
        let (first, last) = (valid_name(first)?, valid_name(last)?);
        self.with_event(AccountEvent::ProfileChanged, &user.id, (actor, None), async {
            self.store.set_names(&user.id, &first, &last).await?;
            Ok(())
        })
        .await
    }

    /// Signs the user out of every browser (their tokens stay).
    pub async fn end_sessions(&self, user: &User, actor: Actor<'_>) -> Result<u64, AccountError> {
        let ended = self.store.end_sessions_of(&user.id).await?;
        self.backchannel.notify(Ended::BrowserSessionsOf {
            sub: user.id.clone(),
            at: now(),
        });
        events::record(self.audit, AccountEvent::SessionsEnded, &user.id, actor, None, None);
        Ok(ended)
    }

    /// Disables (ending every session and token family) or enables the account.
    pub async fn set_disabled(&self, user: &User, disabled: bool, actor: Actor<'_>) -> Result<usize, AccountError> {
        let event = if disabled {
            AccountEvent::Disabled
        } else {
            AccountEvent::Enabled
        };
        self.with_event(
            event,
            &user.id,
            (actor, None),
            self.set_flag(user, UserFlag::Disabled, disabled),
        )
        .await?;
        let ended = match disabled {
            true => {
                self.tell_clients_families_end(&user.id, None).await?;
                self.store.end_sessions_of(&user.id).await?;
                self.end_access_tokens(&user.id).await?;
                self.end_tokens(&user.id, None).await?
            }
            false => 0,
        };
        Ok(ended)
    }

    /// Runs `change` and records `event` in one statement group: on
    /// PostgreSQL the change and its audit event commit together or not at
    /// all (on SQLite, as every group there, the change stands and the event
    /// goes to the request's own write). `(actor, ip)`: who made the
    /// change, and from which address.
    async fn with_event<T>(
        &self,
        event: AccountEvent,
        user_id: &str,
        (actor, ip): (Actor<'_>, Option<&str>),
        change: impl std::future::Future<Output = Result<T, AccountError>>,
    ) -> Result<T, AccountError> {
        self.store
            .grouped(async {
                let out = change.await?;
                events::record(self.audit, event, user_id, actor, None, ip);
                Ok(out)
            })
            .await
    }

    async fn set_flag(&self, user: &User, flag: UserFlag, on: bool) -> Result<(), AccountError> {
        match self.store.set_user_flag(&user.id, flag, on).await? {
            true => Ok(()),
            false => Err(AccountError::NotFound),
        }
    }

    async fn delete_row(&self, user: &User) -> Result<(), AccountError> {
        match self.store.delete_user(&user.id).await? {
            true => Ok(()),
            false => Err(AccountError::NotFound),
        }
    }

    /// Grants or takes away the admin role.
    pub async fn set_admin(&self, user: &User, admin: bool, actor: Actor<'_>) -> Result<(), AccountError> {
        let event = if admin {
            AccountEvent::AdminGranted
        } else {
            AccountEvent::AdminRevoked
        };
        self.with_event(
            event,
            &user.id,
            (actor, None),
            self.set_flag(user, UserFlag::Admin, admin),
        )
        .await
    }

    /// Deletes the account by an admin or the CLI: its token families,
    /// sessions and consents end with it. Returns the families ended.
    pub async fn delete(&self, user: &User, actor: Actor<'_>) -> Result<usize, AccountError> {
        self.tell_clients_families_end(&user.id, None).await?;
        self.end_access_tokens(&user.id).await?;
        let ended = self.end_tokens(&user.id, None).await?;
        self.with_event(AccountEvent::Deleted, &user.id, (actor, None), self.delete_row(user))
            .await?;
        Ok(ended)
    }

    /// Deletes the account at its holder's request: a sensitive change.
    pub async fn delete_own(&self, user: &User, by: &Authority<'_>, ip: Option<&str>) -> Result<(), AccountError> {
        self.check_sensitive(by)?;
        let verified = verified_identifiers(user, &self.settings.phones());
        self.tell_clients_families_end(&user.id, None).await?;
        self.end_access_tokens(&user.id).await?;
        self.end_tokens(&user.id, None).await?;
        let by = (actor_of(by), ip);
        self.with_event(AccountEvent::Deleted, &user.id, by, self.delete_row(user))
            .await?;
        self.notify(&verified, "deleted", "").await;
        Ok(())
    }

    /// SPEC §9: a sensitive change needs a sign-in at most `account.reauth_after`
    /// old; through the API, a token of a `first_party` client with `sesame:account`.
    pub fn check_sensitive(&self, by: &Authority<'_>) -> Result<(), AccountError> {
        self.check_token(by)?;
        let auth_time = match by {
            Authority::Session { auth_time } => Some(*auth_time),
            Authority::Token { auth_time, .. } => *auth_time,
        };
        let fresh_after = now() - self.settings.account.reauth_after.as_secs() as i64;
        match auth_time {
            Some(t) if t >= fresh_after => Ok(()),
            _ => Err(AccountError::ReauthRequired),
        }
    }

    /// A token may change the account only when it is a `first_party`
    /// client's and carries `sesame:account` (SPEC §9).
    fn check_token(&self, by: &Authority<'_>) -> Result<(), AccountError> {
        let Authority::Token { client, scope, .. } = by else {
            return Ok(());
        };
        if !client.first_party {
            return Err(AccountError::NotPermitted(
                "only a first-party client's token may change the account",
            ));
        }
        if !scope.contains(ACCOUNT_SCOPE) {
            return Err(AccountError::NotPermitted("the token needs the `sesame:account` scope"));
        }
        Ok(())
    }

    /// Sets a username and/or a password. A password is a sensitive change:
    /// `by` must be recent, and replacing one needs the current password or
    /// a fresh code. Afterwards every other session and token family ends
    /// (the caller's own family stays) and each verified identifier is told.
    pub async fn set_credentials(
        &self,
        user: &User,
        username: Option<&str>,
        password: Option<&str>,
        proof: PasswordProof<'_>,
        by: &Authority<'_>,
        ip: Option<&str>,
    ) -> Result<User, AccountError> {
        // The name the account already has is no new name: one from before
        // today's rules (digits only, say) may be sent back unchanged.
        let username = username
            .map(|u| match Some(u) == user.username.as_deref() {
                true => Ok(u.to_string()),
                false => valid_username(u),
            })
            .transpose()?;
        if username.is_none() && password.is_none() {
            return Err(AccountError::Invalid(Invalid::NothingToChange));
        }
        // Any change through the API is the first-party app's; a password needs a recent sign-in too.
        self.check_token(by)?;
        let password_hash = match password {
            Some(pw) => {
                passwords::acceptable(pw)?;
                self.check_sensitive(by)?;
                if user.has_password && !proof.fresh_code {
                    let current = proof.current.ok_or(AccountError::CurrentPasswordRequired)?;
                    let client_id = match by {
                        Authority::Token { client, .. } => Some(client.id.as_str()),
                        Authority::Session { .. } => None,
                    };
                    let trier = (user.id.as_str(), client_id, ip);
                    passwords::check_current(self.store, &self.settings.passwords, self.audit, trier, current).await?;
                }
                Some(passwords::hash(pw.to_string()).await?)
            }
            None => None,
        };
        let updated = match self
            .store
            .set_credentials(&user.id, username.as_deref(), password_hash.as_deref())
            .await?
        {
            InsertUser::Created(u) => *u,
            InsertUser::Conflict(_) => return Err(AccountError::Taken("username")),
        };
        let what = if password_hash.is_some() {
            "password"
        } else {
            "username"
        };
        events::record(
            self.audit,
            AccountEvent::CredentialsChanged,
            &user.id,
            actor_of(by),
            Some(what),
            ip,
        );
        if password_hash.is_some() {
            self.after_sensitive_change(&updated, by, "password", "").await?;
        }
        Ok(updated)
    }

    /// Makes a phone or email that a code was just verified for a sign-in key
    /// of the account (replacing the one of its kind). A sensitive change.
    pub async fn set_identifier(
        &self,
        user: &User,
        ident: &Identifier,
        by: &Authority<'_>,
        ip: Option<&str>,
    ) -> Result<User, AccountError> {
        self.check_sensitive(by)?;
        let old = match ident {
            Identifier::Phone(_) => user.phone.clone(),
            Identifier::Email(_) => user.email.clone(),
        };
        if holds(user, ident) {
            return Err(AccountError::Invalid(Invalid::SameIdentifier));
        }
        if !self
            .store
            .set_identifier(&user.id, ident.kind(), ident.address(), ident.key())
            .await?
        {
            return Err(AccountError::Taken(ident.kind()));
        }
        let updated = self.store.user(&user.id).await?.ok_or(AccountError::NotFound)?;
        events::record(
            self.audit,
            AccountEvent::IdentifierChanged,
            &user.id,
            actor_of(by),
            Some(ident.kind()),
            ip,
        );
        // The old one is told too: it no longer signs in.
        let region = &self.settings.phones();
        let mut told = verified_identifiers(&updated, region);
        if let Some(old) = old.as_deref().and_then(|o| crate::domain::parse_identifier(o, region)) {
            told.push(old);
        }
        self.end_others(&updated, by).await?;
        self.notify(&told, ident.kind(), ident.address()).await;
        Ok(updated)
    }

    /// After a sensitive change: the other sessions and token families end,
    /// and every verified identifier gets a notice.
    async fn after_sensitive_change(
        &self,
        user: &User,
        by: &Authority<'_>,
        kind: &str,
        new_address: &str,
    ) -> Result<(), AccountError> {
        self.end_others(user, by).await?;
        let told = verified_identifiers(user, &self.settings.phones());
        self.notify(&told, kind, new_address).await;
        Ok(())
    }

    /// Ends every browser session of the user (the page signs its own browser
    /// in again under a new session id) and every token family but the caller's.
    async fn end_others(&self, user: &User, by: &Authority<'_>) -> Result<(), AccountError> {
        let keep = match by {
            Authority::Token { family, .. } => *family,
            Authority::Session { .. } => None,
        };
        let mut ending = self.store.live_families_in(Families::Of(&user.id)).await?;
        ending.retain(|f| Some(f.id.as_str()) != keep);
        if !ending.is_empty() {
            self.backchannel.notify(Ended::Families(ending));
        }
        self.store.end_sessions_of(&user.id).await?;
        self.end_tokens(&user.id, keep).await?;
        Ok(())
    }

    /// Sends a security notice to each identifier; a failure is logged: the change has happened.
    /// No text goes to a test number (no real phone: SPEC §10, test numbers skip
    /// delivery) or to a number codes may not go to (its country or type refused).
    async fn notify(&self, to: &[Identifier], kind: &str, new_address: &str) {
        let Some(delivery) = self.delivery else { return };
        let abuse = &self.settings.abuse;
        for ident in to {
            if let Identifier::Phone(p) = ident {
                if abuse.test_numbers.contains_key(p.e164()) || crate::abuse::check_number(abuse, p).is_err() {
                    continue;
                }
            }
            let message = Message {
                channel: ident.channel(),
                to: ident.address().to_string(),
                code: String::new(),
                magic_link: None,
                locale: "en".into(),
                app: "Sesame".into(),
                minutes: 0,
                notice: Some(Notice {
                    kind: kind.into(),
                    new_address: new_address.into(),
                }),
            };
            if let Err(e) = delivery.send(&message).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    channel = ident.channel(),
                    "could not send a security notice"
                );
            }
        }
    }
}

fn actor_of<'b>(by: &Authority<'b>) -> Actor<'b> {
    match by {
        Authority::Session { .. } => Actor::User { client_id: None },
        Authority::Token { client, .. } => Actor::User {
            client_id: Some(&client.id),
        },
    }
}

/// Whether `ident` is already the account's phone or email (an email
/// compared in its one form: case, and its domain's spelling).
pub fn holds(user: &User, ident: &Identifier) -> bool {
    match ident {
        Identifier::Phone(p) => user.phone.as_deref() == Some(p.e164()),
        Identifier::Email(e) => user
            .email
            .as_deref()
            .is_some_and(|stored| crate::domain::Email::parse(stored).is_ok_and(|s| s.key() == e.key())),
    }
}

/// At start-up, once for a database (then recorded in `data_upgrades`):
/// gives the accounts whose email was stored before an email had one form
/// (a domain in another spelling, UTS #46: punycode, full-width letters;
/// a local part not in NFC) the address and key every spelling now maps
/// to, so they are found again. The table is read in batches of
/// `REKEY_BATCH`. A row is rewritten only if it still holds what was read
/// (`Store::rekey_email`), so an address changed meanwhile (another node
/// serves while this one starts) is never undone. Left as they are, each
/// named in the log by its user id: an account whose canonical key another
/// account holds (the same mailbox signed up twice, as the old rule let
/// it), and one whose stored address no longer parses. At the first row
/// another transaction holds past the lock timeout (on SQLite: the
/// database, past `busy_timeout`) the walk stops, not recorded, and the
/// next start walks again: one wait, not one per held row. Every write
/// since stores the canonical form, so later starts read one row and go on.
pub async fn canonical_email_keys(store: &Store) -> anyhow::Result<()> {
    use crate::store::users::Rekeyed;
    const UPGRADE: &str = "email_domains_uts46";
    const REKEY_BATCH: i64 = 1000;
    if store.upgrade_done(UPGRADE).await? {
        return Ok(());
    }
    let (mut after, mut rekeyed, mut changed, mut left) = (String::new(), 0u64, 0u64, 0u64);
    loop {
        let batch = store.users_with_email_after(&after, REKEY_BATCH).await?;
        let Some((last, _, _)) = batch.last() else { break };
        after = last.clone();
        for (id, email, key) in &batch {
            let Ok(canonical) = crate::domain::Email::parse(email) else {
                left += 1;
                tracing::warn!(user_id = %id, "this account's stored email is not a valid address today; left as it is");
                continue;
            };
            if canonical.address() == email && canonical.key() == key {
                continue;
            }
            match store
                .rekey_email(id, (email, key), canonical.address(), canonical.key())
                .await?
            {
                Rekeyed::Done => rekeyed += 1,
                Rekeyed::Changed => changed += 1,
                Rekeyed::Taken => {
                    left += 1;
                    tracing::warn!(
                        user_id = %id,
                        "another account holds this account's email in its one spelling (UTS #46); left as it is"
                    )
                }
                Rekeyed::Busy => {
                    tracing::warn!(
                        user_id = %id,
                        rekeyed,
                        "storing emails in their one form (UTS #46): another transaction holds this account's row; the next start walks again"
                    );
                    return Ok(());
                }
            }
        }
    }
    store.upgrade_finished(UPGRADE).await?;
    tracing::info!(
        rekeyed,
        changed,
        left,
        "emails stored in their one form (UTS #46), once for this database"
    );
    Ok(())
}

/// The account's sign-in keys: its verified phone and email.
pub fn verified_identifiers(user: &User, region: &crate::domain::PhoneRules) -> Vec<Identifier> {
    [user.email.as_deref(), user.phone.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(|v| crate::domain::parse_identifier(v, region))
        .collect()
}
