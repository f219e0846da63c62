//! Browser sessions: actix-session with its state kept server-side in the
//! database (`store::sessions`). The cookie holds a random 256-bit key; the
//! database holds its digest. Deleting the row ends the session on every node.

use std::collections::HashMap;

use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::{time, Key, SameSite};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::crypto;
use crate::state::AppState;
use crate::store::Store;

/// The session keys that make a session "signed in"; a session ended
/// elsewhere must never get them back.
const SIGNED_IN_KEYS: &[&str] = &["sub", "auth_time", "amr"];

#[derive(Clone)]
pub struct DbSessions {
    store: Store,
    /// `account.session_max_age` in seconds: a signed-in session ends this
    /// long after its sign-in, however often it is used (SPEC §9).
    max_age: i64,
}

fn digest(key: &str) -> String {
    crypto::sha256_hex(key.as_bytes())
}

fn user_of(state: &HashMap<String, String>) -> Option<String> {
    state.get("sub").and_then(|v| serde_json::from_str(v).ok())
}

fn secs(ttl: &time::Duration) -> i64 {
    ttl.whole_seconds().max(1)
}

impl SessionStore for DbSessions {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let Some(text) = self
            .store
            .session_state(&digest(key.as_ref()))
            .await
            .map_err(LoadError::Other)?
        else {
            return Ok(None);
        };
        let state: HashMap<String, String> =
            serde_json::from_str(&text).map_err(|e| LoadError::Deserialization(e.into()))?;
        let signed_in_at = state.get("signed_in_at").and_then(|v| v.parse::<i64>().ok());
        if signed_in_at.is_some_and(|at| crate::store::now() - at >= self.max_age) {
            // Past its absolute lifetime: ended here, on every node.
            self.store
                .delete_session(&digest(key.as_ref()))
                .await
                .map_err(LoadError::Other)?;
            return Ok(None);
        }
        Ok(Some(state))
    }

    async fn save(&self, state: HashMap<String, String>, ttl: &time::Duration) -> Result<SessionKey, SaveError> {
        let key = crypto::random_token::<32>();
        let text = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        self.store
            .insert_session(&digest(&key), user_of(&state).as_deref(), &text, secs(ttl))
            .await
            .map_err(SaveError::Other)?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(
        &self,
        key: SessionKey,
        mut state: HashMap<String, String>,
        ttl: &time::Duration,
    ) -> Result<SessionKey, UpdateError> {
        let text = serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let updated = self
            .store
            .update_session(&digest(key.as_ref()), user_of(&state).as_deref(), &text, secs(ttl))
            .await
            .map_err(UpdateError::Other)?;
        if updated {
            return Ok(key);
        }
        // Ended on another node while this request ran: keep the rest, not the sign-in.
        for k in SIGNED_IN_KEYS {
            state.remove(*k);
        }
        self.save(state, ttl).await.map_err(|e| match e {
            SaveError::Serialization(e) => UpdateError::Serialization(e),
            SaveError::Other(e) => UpdateError::Other(e),
        })
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &time::Duration) -> Result<(), anyhow::Error> {
        self.store.touch_session(&digest(key.as_ref()), secs(ttl)).await
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        self.store.delete_session(&digest(key.as_ref())).await
    }
}

/// The session cookie's name.
pub fn cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-sesame"
    } else {
        "sesame"
    }
}

/// The session middleware: `HttpOnly`, `SameSite=Lax`, and `Secure` with the
/// `__Host-` prefix when the issuer is https.
pub fn middleware(state: &AppState, key: &[u8; 64]) -> SessionMiddleware<DbSessions> {
    let https = state.settings.https();
    let ttl = time::Duration::seconds(state.settings.server.session_ttl.as_secs() as i64);
    SessionMiddleware::builder(
        DbSessions {
            store: state.store.clone(),
            max_age: state.settings.account.session_max_age.as_secs() as i64,
        },
        Key::from(key),
    )
    .cookie_name(cookie_name(https).to_string())
    .cookie_secure(https)
    .cookie_http_only(true)
    .cookie_same_site(SameSite::Lax)
    .cookie_path("/".into())
    .session_lifecycle(
        PersistentSession::default()
            .session_ttl(ttl)
            .session_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges),
    )
    .build()
}

/// Reads a typed value; a value that no longer parses counts as absent.
pub fn get<T: DeserializeOwned>(session: &Session, key: &str) -> Option<T> {
    session.get::<T>(key).ok().flatten()
}

pub fn set<T: Serialize>(session: &Session, key: &str, value: &T) {
    // Serializing our own plain structs cannot fail.
    let _ = session.insert(key, value);
}

/// Who is signed in to this browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    pub sub: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
}

pub fn signed_in(session: &Session) -> Option<SignedIn> {
    Some(SignedIn {
        sub: get(session, "sub")?,
        auth_time: get(session, "auth_time")?,
        amr: get(session, "amr")?,
    })
}

/// Signs this browser in: a new session id (no fixation), with only what a
/// sign-in carries forward (the pending authorization request, flash).
/// The session's `sid` (what back-channel logout names) stays when the same
/// user signs in again (`prompt=login`, `max_age`, a re-check); when another
/// user's sign-in replaces the session, the old `sid` is returned so that
/// the apps signed in through it can be told.
pub fn sign_in(session: &Session, who: &SignedIn, ua: Option<&str>, ip: Option<&str>) -> Option<String> {
    let previous = (get::<String>(session, "sid"), get::<String>(session, "sub"));
    let keep: Vec<(String, serde_json::Value)> = ["authz", "flash", "csrf", "return_to"]
        .into_iter()
        .filter_map(|k| Some((k.to_string(), get::<serde_json::Value>(session, k)?)))
        .collect();
    session.clear();
    session.renew();
    for (k, v) in keep {
        set(session, &k, &v);
    }
    set(session, "sub", &who.sub);
    set(session, "auth_time", &who.auth_time);
    set(session, "amr", &who.amr);
    set(session, "signed_in_at", &crate::store::now());
    let (sid, replaced) = match previous {
        (Some(sid), Some(sub)) if sub == who.sub => (sid, None),
        (old, _) => (crypto::random_token::<16>(), old),
    };
    set(session, "sid", &sid);
    if let Some(ua) = ua {
        set(session, "ua", &ua.chars().take(200).collect::<String>());
    }
    if let Some(ip) = ip {
        set(session, "ip", &ip);
    }
    replaced
}

/// A browser session as the account page lists it.
pub struct SessionInfo {
    /// The stored digest: what the account page's "end" button names.
    pub id: String,
    /// Whether this is the browser looking at the list.
    pub current: bool,
    pub browser: String,
    pub ip: String,
    pub signed_in_at: i64,
    pub last_seen: i64,
}

/// A stored session's state: each value is JSON text, as actix-session keeps it.
fn stored_state(row: &crate::store::sessions::SessionRow) -> HashMap<String, String> {
    serde_json::from_str(&row.state).unwrap_or_default()
}

/// A text value of a stored session's state.
fn stored_text(state: &HashMap<String, String>, key: &str) -> Option<String> {
    state.get(key).and_then(|v| serde_json::from_str(v).ok())
}

/// The `sid` of a stored session (to tell its apps when it is ended from elsewhere).
pub fn stored_sid(row: &crate::store::sessions::SessionRow) -> Option<String> {
    stored_text(&stored_state(row), "sid")
}

pub fn describe(row: &crate::store::sessions::SessionRow, current_sid: Option<&str>) -> SessionInfo {
    let state = stored_state(row);
    let text = |k: &str| stored_text(&state, k);
    SessionInfo {
        id: row.key_digest.clone(),
        current: current_sid.is_some() && text("sid").as_deref() == current_sid,
        browser: text("ua")
            .map(|ua| browser_name(&ua))
            .unwrap_or_else(|| "Unknown browser".into()),
        ip: text("ip").unwrap_or_default(),
        signed_in_at: state
            .get("signed_in_at")
            .and_then(|v| v.parse().ok())
            .unwrap_or(row.created_at),
        last_seen: row.updated_at,
    }
}

/// A short, human name for a User-Agent string.
pub fn browser_name(ua: &str) -> String {
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/"]
        .iter()
        .find(|b| ua.contains(*b))
        .map(|b| match *b {
            "Edg/" => "Edge",
            "Firefox/" => "Firefox",
            "Chrome/" => "Chrome",
            _ => "Safari",
        })
        .unwrap_or("A browser");
    let os = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match os {
        Some(os) => format!("{browser} on {os}"),
        None => browser.to_string(),
    }
}
