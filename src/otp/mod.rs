//! The code policy, shared by the OTP API, the `otp` grant and the sign-in
//! pages: limits, issuing, delivery, verification, `secret_identifier`s.

use crate::crypto;
use crate::delivery::Message;
use crate::domain::{Client, Identifier};
use crate::state::AppState;
use crate::store::audit::Event;
use crate::store::otp::{MagicUse, NewCode, VerifiedIdentifier};

mod error;
mod limits;
pub use limits::KNOWN_SOURCE;

pub use error::{Limit, OtpError, Refusal};

/// What `send_code` tells the caller.
pub struct Sent {
    /// The stored code's id (the sign-in pages follow its magic link).
    pub code_id: String,
    pub channel: &'static str,
    pub expires_in: u64,
    pub resend_after: u64,
    /// For a magic link: the number the asking tab shows, which a browser
    /// opening the link elsewhere must enter for that tab to follow it.
    pub match_number: Option<i64>,
}

/// Who is asking, for limits and the audit trail.
pub struct Origin<'a> {
    pub client: &'a Client,
    pub ip: Option<&'a str>,
    /// The browser session that asks, on Sesame's own pages: its codes are
    /// bound to it rather than to its address, which may change between
    /// asking and typing (mobile networks). The limits still count by address.
    pub browser: Option<&'a str>,
}

/// What a code is bound to: the asking browser on the pages, else the
/// source address (SPEC §10: only there is it checked or replaced).
fn code_binding(origin: &Origin<'_>) -> String {
    match origin.browser {
        Some(b) => format!("browser:{b}"),
        None => limits::source(origin),
    }
}

/// The keyed digest that stands for an identifier in limits, codes and the audit trail.
pub fn ident_key(state: &AppState, ident: &Identifier) -> String {
    state
        .digester
        .digest("identifier", &format!("{}:{}", ident.kind(), ident.key()))
}

/// Issues and delivers a code for the OTP API. The answer does not depend on
/// whether an account exists. `bot_token`: the bot check's token, needed when
/// `abuse.bot_check` is on.
pub async fn send_code(
    state: &AppState,
    origin: &Origin<'_>,
    ident: &Identifier,
    locale: &str,
    bot_token: Option<&str>,
) -> Result<Sent, OtpError> {
    send(state, origin, ident, locale, bot_token, false).await
}

/// Issues and delivers a code for Sesame's sign-in pages: by email, with a
/// magic link too.
pub async fn send_sign_in_code(
    state: &AppState,
    origin: &Origin<'_>,
    ident: &Identifier,
    locale: &str,
    bot_token: Option<&str>,
) -> Result<Sent, OtpError> {
    send(state, origin, ident, locale, bot_token, true).await
}

/// Every send, with each refusal counted in `/metrics` and the audit trail.
async fn send(
    state: &AppState,
    origin: &Origin<'_>,
    ident: &Identifier,
    locale: &str,
    bot_token: Option<&str>,
    with_magic_link: bool,
) -> Result<Sent, OtpError> {
    let key = ident_key(state, ident);
    let result = send_checked(state, origin, ident, &key, locale, bot_token, with_magic_link).await;
    if let Err(e) = &result {
        refused(state, origin, &key, e);
    }
    result
}

/// Counts a refusal by its reason and records it.
fn refused(state: &AppState, origin: &Origin<'_>, key: &str, e: &OtpError) {
    refused_from(state, Some(&origin.client.id), origin.ip, key, e);
}

/// As `refused`, naming the client and address itself (a sign-in page's
/// magic link comes with no client's request: the client its code was for).
fn refused_from(state: &AppState, client_id: Option<&str>, ip: Option<&str>, key: &str, e: &OtpError) {
    if let Some(reason) = e.reason() {
        state.metrics.refused(reason);
        state.audit.record(Event {
            event: "code_refused",
            client_id,
            ident_key: Some(key),
            ip,
            detail: Some(reason),
            ..Default::default()
        });
    }
}

async fn send_checked(
    state: &AppState,
    origin: &Origin<'_>,
    ident: &Identifier,
    key: &str,
    locale: &str,
    bot_token: Option<&str>,
    with_magic_link: bool,
) -> Result<Sent, OtpError> {
    let otp = &state.settings.otp;
    // SPEC §10, before anything is counted or sent: test numbers (a fixed
    // code, nothing sent), the number's country and type, the bot check.
    let test_code = match ident {
        Identifier::Phone(p) => state.settings.abuse.test_numbers.get(p.e164()),
        Identifier::Email(_) => None,
    };
    let sms_country = match (ident, test_code) {
        (Identifier::Phone(p), None) => Some(crate::abuse::check_number(&state.settings.abuse, p)?),
        _ => None,
    };
    if let Some(bot) = &state.bot_check {
        bot.verify(bot_token, origin.ip).await?;
    }
    let source = limits::source(origin);
    // The SMS caps count every text but those to a number from a source
    // that proved it before (`limits::source_known`): a stranger who fills
    // them cannot keep users from signing in where they did before. Not
    // whether an account holds the number, which a stranger who had filled
    // a cap could read from which numbers still got codes.
    let known = match sms_country {
        Some(_) => Some(limits::source_known(state, key, &source).await?),
        None => None,
    };
    let capped_country = sms_country.filter(|_| known == Some(false));
    let code = test_code.cloned().unwrap_or_else(|| crypto::random_digits(otp.length));
    // Sesame's pages link to `/login/magic` (number matching for another
    // browser); an API client with a `magic_link_uri` gets a link to its own URL.
    let link_base = match (ident, with_magic_link) {
        (Identifier::Phone(_), _) => None,
        (Identifier::Email(_), true) => Some(format!("{}/login/magic", state.issuer())),
        (Identifier::Email(_), false) => origin.client.magic_link_uri.clone(),
    };
    let magic = link_base.as_ref().map(|_| crypto::random_token::<32>());
    let match_number = (with_magic_link && magic.is_some()).then(match_number);
    let id = crypto::random_token::<16>();
    let code_digest = state.digester.digest("code", &code);
    let magic_digest = magic.as_deref().map(|m| state.digester.digest("magic", m));
    let new_code = NewCode {
        id: &id,
        ident_key: key,
        client_id: &origin.client.id,
        channel: ident.channel(),
        code_digest: &code_digest,
        magic_digest: magic_digest.as_deref(),
        // An email with an account goes to the address stored on it (SPEC
        // §9), and a magic link knows the account it signs in to: read by
        // the statement that stores the code.
        email_key: match ident {
            Identifier::Email(e) => Some(e.key()),
            Identifier::Phone(_) => None,
        },
        links_account: magic.is_some(),
        match_number,
        ttl: otp.ttl.as_secs() as i64,
        source: &code_binding(origin),
    };
    // The limits, the new code and the account's address: one group, so
    // one commit on SQLite (on PostgreSQL one statement,
    // `Store::count_sends_and_insert`).
    let stored_address = state
        .store
        .grouped(limits::admit_send(
            state,
            origin,
            key,
            (&source, known),
            capped_country.as_deref(),
            &new_code,
        ))
        .await?;
    let sent = Sent {
        code_id: id.clone(),
        channel: ident.channel(),
        expires_in: otp.ttl.as_secs(),
        resend_after: otp.resend_after.as_secs(),
        match_number,
    };
    if test_code.is_some() {
        state.metrics.test_code_issued();
        audit(
            state,
            origin,
            "code_sent",
            key,
            Some("test number: fixed code, nothing sent"),
        );
        return Ok(sent);
    }

    let message = Message {
        channel: ident.channel(),
        to: stored_address.unwrap_or_else(|| ident.address().to_string()),
        code,
        magic_link: link_base.zip(magic).map(|(base, m)| {
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}token={m}")
        }),
        locale: locale.to_string(),
        app: origin.client.name.clone(),
        minutes: otp.ttl.as_secs().div_ceil(60),
        notice: None,
    };
    if let Err(e) = state.delivery.send(&message).await {
        state.store.kill_code(&id).await?;
        tracing::warn!(error = format!("{e:#}"), channel = ident.channel(), client_id = %origin.client.id, "delivery failed");
        state.metrics.delivery_failed(ident.channel());
        audit(state, origin, "delivery_failed", key, Some(ident.channel()));
        return Err(OtpError::DeliveryFailed);
    }
    state.metrics.code_sent(ident.channel());
    audit(state, origin, "code_sent", key, Some(ident.channel()));
    Ok(sent)
}

/// Marks the address that proved the identifier (a magic link opened on
/// the pages) as known to it, for `abuse.identifier_max_sends`.
pub async fn remember_source(state: &AppState, ident_key: &str, ip: Option<&str>) -> Result<(), OtpError> {
    limits::remember_source(state, ident_key, &crate::net::ip_bucket(ip), "email").await
}

/// A number from 10 to 99, each equally likely, for magic-link number matching.
fn match_number() -> i64 {
    loop {
        let two = crypto::random_digits(2);
        if !two.starts_with('0') {
            return two.parse().unwrap_or(10);
        }
    }
}

/// Checks a code for this identifier and client, consuming it on success.
/// Only the code this source (or browser) asked for is tried; at most `otp.max_attempts`
/// tries at it ever reach a comparison, and the try that exhausts them kills
/// it and locks this source out of the identifier for `otp.lockout`. Every
/// try also counts toward the identifier's `abuse.max_failures` (given back
/// when right). See `limits` for why.
pub async fn verify_code(
    state: &AppState,
    origin: &Origin<'_>,
    ident: &Identifier,
    code: &str,
) -> Result<(), OtpError> {
    let key = ident_key(state, ident);
    let result = verify_checked(state, origin, &key, code).await;
    if let Err(e) = &result {
        refused(state, origin, &key, e);
    }
    result
}

async fn verify_checked(state: &AppState, origin: &Origin<'_>, key: &str, code: &str) -> Result<(), OtpError> {
    let otp = &state.settings.otp;
    let source = limits::source(origin);
    let from_source = limits::source_key(key, &source);
    let wrong = || OtpError::WrongCode;
    let code = code.trim();
    let well_formed = code.len() == otp.length && code.bytes().all(|b| b.is_ascii_digit());
    // No attempt is reserved while the identifier or this source is locked; only then is the lock read.
    let (tries_key, window) = limits::tries(state, key);
    let reserved = match well_formed {
        true => {
            state
                .store
                .reserve_attempt(
                    key,
                    &origin.client.id,
                    &code_binding(origin),
                    &from_source,
                    otp.max_attempts as i64,
                    (&tries_key, window),
                )
                .await?
        }
        false => None,
    };
    let Some((attempt, tries)) = reserved else {
        if let Some(secs) = state.store.locked_for(key, &from_source).await? {
            return Err(limits::locked(secs));
        }
        if well_formed {
            audit(state, origin, "code_failed", key, Some("no live code"));
        }
        return Err(wrong());
    };
    limits::judge_try(state, origin, key, tries).await?;
    if crypto::ct_eq(
        state.digester.digest("code", code).as_bytes(),
        attempt.code_digest.as_bytes(),
    ) {
        if limits::consume_right(state, key, &source, (&attempt.id, &attempt.channel), &tries_key).await? {
            state.metrics.code_verified();
            audit(state, origin, "code_verified", key, Some(&attempt.channel));
            return Ok(());
        }
        return Err(wrong());
    }
    state.metrics.code_failed();
    audit(state, origin, "code_failed", key, Some("wrong code"));
    if attempt.attempts >= otp.max_attempts as i64 {
        state.store.kill_code(&attempt.id).await?;
        limits::lock_source(state, origin, key, &source).await?;
    }
    Err(wrong())
}

/// Checks a magic link token of the OTP API (sent to a client's
/// `magic_link_uri`) for this identifier and client, consuming it with its
/// code. A wrong, used, expired or foreign token is `invalid_code`; the
/// token has ≥ 256 bits, so guessing needs no attempt counter.
pub async fn verify_magic_token(
    state: &AppState,
    origin: &Origin<'_>,
    ident: &Identifier,
    token: &str,
) -> Result<(), OtpError> {
    let key = ident_key(state, ident);
    if let Some(secs) = state.store.identifier_locked_for(&key).await? {
        let e = limits::locked(secs);
        refused(state, origin, &key, &e);
        return Err(e);
    }
    let digest = state.digester.digest("magic", token.trim());
    match state
        .store
        .consume_client_magic(&digest, &origin.client.id, &key)
        .await?
    {
        Some(channel) => {
            limits::remember_source(state, &key, &limits::source(origin), &channel).await?;
            state.metrics.code_verified();
            audit(
                state,
                origin,
                "code_verified",
                &key,
                Some(&format!("{channel} magic link")),
            );
            Ok(())
        }
        None => {
            audit(state, origin, "code_failed", &key, Some("magic link invalid or used"));
            Err(OtpError::WrongMagicLink)
        }
    }
}

/// Uses a magic link of Sesame's sign-in pages (`/login/magic`): once,
/// and, like a code and the OTP API's magic token, not while its
/// identifier is locked (SPEC §10: too many wrong codes lock the
/// identifier, whatever proof comes next). `same_code_id` and `number`: as
/// `Store::consume_magic`. `ip`: the opening browser's address, known to
/// the identifier from now on.
pub async fn use_magic_link(
    state: &AppState,
    ip: Option<&str>,
    token: &str,
    same_code_id: Option<&str>,
    number: Option<i64>,
) -> Result<MagicUse, OtpError> {
    let digest = state.digester.digest("magic", token);
    let Some(used) = state.store.consume_magic(&digest, same_code_id, number).await? else {
        // Not used: say why when it is the lock.
        if let Some((key, client_id)) = state.store.magic_link_owner(&digest).await? {
            if let Some(secs) = state.store.identifier_locked_for(&key).await? {
                let e = limits::locked(secs);
                refused_from(state, Some(&client_id), ip, &key, &e);
                return Err(e);
            }
        }
        return Err(OtpError::WrongMagicLink);
    };
    remember_source(state, &used.ident_key, ip).await?;
    state.metrics.code_verified();
    state.audit.record(Event {
        event: "magic_link_used",
        client_id: Some(&used.client_id),
        ident_key: Some(&used.ident_key),
        ip,
        detail: Some(if used.handoff_allowed {
            "handoff allowed"
        } else {
            "this browser only"
        }),
        ..Default::default()
    });
    Ok(used)
}

/// A code or a magic link token, whichever the caller sent (exactly one).
pub enum Proof<'a> {
    Code(&'a str),
    MagicToken(&'a str),
}

impl<'a> Proof<'a> {
    /// `code` or `magic_token` from a request's parameters.
    pub fn from_params(code: Option<&'a str>, magic_token: Option<&'a str>) -> Result<Proof<'a>, OtpError> {
        match (code, magic_token) {
            (Some(c), None) => Ok(Proof::Code(c)),
            (None, Some(t)) => Ok(Proof::MagicToken(t)),
            (Some(_), Some(_)) => Err(OtpError::BadRequest("send `code` or `magic_token`, not both")),
            (None, None) => Err(OtpError::BadRequest("missing parameter `code` (or `magic_token`)")),
        }
    }

    pub async fn verify(&self, state: &AppState, origin: &Origin<'_>, ident: &Identifier) -> Result<(), OtpError> {
        match self {
            Proof::Code(code) => verify_code(state, origin, ident, code).await,
            Proof::MagicToken(token) => verify_magic_token(state, origin, ident, token).await,
        }
    }
}

/// A new `secret_identifier` (≥ 128 bits, stored as a digest, `otp.ttl`),
/// bound to the client and the identifier; with whether an account holds
/// the identifier (found in the same statement).
pub async fn issue_secret_identifier(
    state: &AppState,
    client: &Client,
    ident: &Identifier,
) -> Result<(String, bool), OtpError> {
    let secret = crypto::random_token::<24>();
    let verified = VerifiedIdentifier {
        kind: ident.kind().into(),
        identifier: ident.address().into(),
        ident_key: ident_key(state, ident),
        client_id: client.id.clone(),
    };
    let digest = state.digester.digest("secret_identifier", &secret);
    let account_exists = state
        .store
        .insert_verified_identifier(
            &digest,
            &verified,
            state.settings.otp.ttl.as_secs() as i64,
            (ident.kind(), ident.key()),
        )
        .await?;
    Ok((secret, account_exists))
}

pub fn secret_identifier_digest(state: &AppState, secret: &str) -> String {
    state.digester.digest("secret_identifier", secret)
}

/// Records a security event; a failure to record is logged, not fatal.
pub fn audit(state: &AppState, origin: &Origin<'_>, event: &str, ident_key: &str, detail: Option<&str>) {
    let e = Event {
        event,
        client_id: Some(&origin.client.id),
        ident_key: Some(ident_key),
        ip: origin.ip,
        detail,
        ..Default::default()
    };
    state.audit.record(e);
}
