//! What the account service records in the audit trail: one event name per
//! operation and one way of naming who did it, whichever path called it.

use crate::audit::AuditLog;
use crate::store::audit::Event;

/// An account operation, as the audit trail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEvent {
    Created,
    Disabled,
    Enabled,
    Deleted,
    AdminGranted,
    AdminRevoked,
    CredentialsChanged,
    IdentifierChanged,
    ProfileChanged,
    SessionsEnded,
}

impl AccountEvent {
    pub fn name(self) -> &'static str {
        match self {
            AccountEvent::Created => "account_created",
            AccountEvent::Disabled => "user_disabled",
            AccountEvent::Enabled => "user_enabled",
            AccountEvent::Deleted => "user_deleted",
            AccountEvent::AdminGranted => "admin_granted",
            AccountEvent::AdminRevoked => "admin_revoked",
            AccountEvent::CredentialsChanged => "credentials_changed",
            AccountEvent::IdentifierChanged => "identifier_changed",
            AccountEvent::ProfileChanged => "profile_changed",
            AccountEvent::SessionsEnded => "signed_out_everywhere",
        }
    }
}

/// Who asked for an account operation. Recorded the same way on every path:
/// the acting client (if any) in `client_id`, the rest in `detail` as `by …`.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// The account holder, on Sesame's pages or with their own token.
    User { client_id: Option<&'a str> },
    /// A client app's backend through the OTP API or a grant.
    Client(&'a str),
    /// An admin on the admin pages (their `sub`).
    AdminPage(&'a str),
    /// A `sesame:admin` token at the admin API: its client and, for a user token, its `sub`.
    AdminApi { client_id: &'a str, sub: Option<&'a str> },
    /// An operator with `sesame user …`.
    Cli,
}

impl Actor<'_> {
    fn client_id(&self) -> Option<&str> {
        match self {
            Actor::User { client_id } => *client_id,
            Actor::Client(c) | Actor::AdminApi { client_id: c, .. } => Some(c),
            Actor::AdminPage(_) | Actor::Cli => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            Actor::User { .. } => "by the user".into(),
            Actor::Client(c) => format!("by client {c}"),
            Actor::AdminPage(sub) => format!("by admin {sub} (admin pages)"),
            Actor::AdminApi { sub: Some(sub), .. } => format!("by admin {sub} (admin API)"),
            Actor::AdminApi { client_id, sub: None } => format!("by admin client {client_id} (admin API)"),
            Actor::Cli => "by an operator (CLI)".into(),
        }
    }
}

/// One account event for `user_id`, with `extra` (e.g. which identifier) after the actor.
pub fn record(
    audit: &AuditLog,
    event: AccountEvent,
    user_id: &str,
    actor: Actor<'_>,
    extra: Option<&str>,
    ip: Option<&str>,
) {
    let detail = match extra {
        Some(x) => format!("{}; {x}", actor.detail()),
        None => actor.detail(),
    };
    audit.record(Event {
        event: event.name(),
        client_id: actor.client_id(),
        user_id: Some(user_id),
        ip,
        detail: Some(&detail),
        ..Default::default()
    });
}
