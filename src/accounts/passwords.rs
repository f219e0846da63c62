//! Passwords (optional; codes always work): argon2id hashing on a fixed pool
//! of threads, and the password check under failure limits.
//!
//! - **Bounded hashing.** argon2id at its default parameters takes 19 MiB and
//!   ~50 ms per hash. Hashes run on `passwords.max_concurrent_hashes` threads of
//!   their own (default: the cores), so at most that many blocks of 19 MiB
//!   exist at once, and the allocator keeps no more than that between bursts;
//!   a bounded queue in front answers `Busy` (503) when full, rather than
//!   growing without end.
//! - **Counted before checked.** A password try is counted (one atomic
//!   statement) before its hash is compared, against the source address and
//!   against the login. Of any number of parallel guesses, at most the limit
//!   reach a comparison. A success gives its count back.
//! - **One answer.** An unknown login is counted and hashed like a real one,
//!   so "wrong" and "locked" read the same for accounts that exist and for
//!   ones that do not.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::AccountError;
use crate::crypto;
use crate::state::AppState;
use crate::store::audit::Event;
use crate::store::users::User;

/// Jobs waiting for a hashing thread, at most.
const QUEUE: usize = 256;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    tx: SyncSender<Job>,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Starts the hashing threads (`threads`, default: the cores). Later calls change nothing.
pub fn init(threads: Option<usize>) {
    POOL.get_or_init(|| {
        let n = threads
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("sesame-hash-{i}"))
                .spawn(move || work(rx))
                .expect("a password hashing thread starts");
        }
        Pool { tx }
    });
}

fn work(rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Runs `f` on a hashing thread and waits for it without blocking the caller's thread.
async fn on_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, AccountError> {
    init(None);
    let pool = POOL.get().expect("initialized above");
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(f());
    });
    match pool.tx.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => return Err(AccountError::Busy),
        Err(TrySendError::Disconnected(_)) => return Err(anyhow::anyhow!("the hashing threads stopped").into()),
    }
    result
        .await
        .map_err(|_| AccountError::Internal(anyhow::anyhow!("a password hashing job was dropped")))
}

/// argon2id with its default parameters, on the hashing pool.
pub async fn hash(password: String) -> Result<String, AccountError> {
    on_pool(move || {
        let salt = SaltString::encode_b64(&crypto::random_bytes::<16>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await?
    .map_err(AccountError::Internal)
}

/// A fixed argon2id hash checked when the account is unknown or has no
/// password, so a wrong login costs the same time as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2VzYW1lLWR1bW15LXNhbHQ$0zjXO1o3WjV0xKzcLZWBaMwNukWm1Zc0J7d+8QnVjJk";

/// Checks a password against an argon2id hash (the dummy one for `None`), on the hashing pool.
pub async fn verify(hash: Option<String>, password: String) -> Result<bool, AccountError> {
    let real = hash.is_some();
    let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
    let ok = on_pool(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await?;
    Ok(ok && real)
}

/// A password a user may set: 8 to 128 characters.
pub fn acceptable(password: &str) -> Result<(), AccountError> {
    match (8..=128).contains(&password.chars().count()) {
        true => Ok(()),
        false => Err(AccountError::Invalid(super::Invalid::PasswordLength)),
    }
}

/// A counter that one try holds, given back if the try succeeds.
struct Counted {
    key: String,
}

/// Counts one try against `key`; refuses once over `max` in `passwords.lockout`.
async fn count(state: &AppState, key: String, max: u32) -> Result<Counted, AccountError> {
    let window = state.settings.passwords.lockout.as_secs() as i64;
    let (n, retry_after) = state.store.hit(&key, window).await?;
    if n > max as i64 {
        return Err(AccountError::Locked {
            retry_after: retry_after.max(1) as u64,
        });
    }
    Ok(Counted { key })
}

/// Checks a username-or-email and password (the `password` grant, `/login`,
/// and replacing a password). Every refusal but `Locked` is `WrongPassword`:
/// an unknown login, a wrong password, an account without a password or a
/// disabled one.
pub async fn check(
    state: &AppState,
    client_id: &str,
    login: &str,
    password: &str,
    ip: Option<&str>,
) -> Result<User, AccountError> {
    let limits = &state.settings.passwords;
    // An email is looked up in its canonical form; a username lower-cased.
    let login_key = match crate::domain::Email::parse(login) {
        Ok(e) if login.contains('@') => e.key().to_string(),
        _ => login.trim().to_lowercase(),
    };
    let by_ip = count(state, format!("pwip:{}", super::ip_bucket(ip)), limits.ip_max_failures).await?;
    let found = state.store.user_for_password(&login_key).await?;
    // The account's counter, or for an unknown login one of its own: the same answers either way.
    let account_key = match &found {
        Some((u, _)) => format!("pwuser:{}", u.id),
        None => format!("pwlogin:{}", state.digester.digest("login", &login_key)),
    };
    let by_account = count(state, account_key, limits.max_failures).await?;
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, None),
    };
    if verify(hash, password.to_string()).await? {
        if let Some(user) = user.as_ref().filter(|u| !u.disabled) {
            for c in [by_ip, by_account] {
                state.store.unhit(&c.key).await?;
            }
            return Ok(user.clone());
        }
    }
    state.audit.record(Event {
        event: "password_failed",
        client_id: Some(client_id),
        user_id: user.as_ref().map(|u| u.id.as_str()),
        ip,
        ..Default::default()
    });
    Err(AccountError::WrongPassword)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_real_argon2id_hash_so_unknown_logins_cost_the_same() {
        let parsed = PasswordHash::new(DUMMY_HASH).expect("parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[tokio::test]
    async fn passwords_verify_against_their_hash_only() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(verify(Some(h.clone()), "correct horse battery".into()).await.unwrap());
        assert!(!verify(Some(h), "wrong".into()).await.unwrap());
        assert!(!verify(None, "correct horse battery".into()).await.unwrap());
    }

    #[tokio::test]
    async fn hashing_runs_on_the_fixed_pool_threads() {
        init(Some(2));
        let names = futures_util::future::join_all(
            (0..8).map(|_| on_pool(|| std::thread::current().name().unwrap_or("").to_string())),
        )
        .await;
        for n in names {
            assert!(n.unwrap().starts_with("sesame-hash-"));
        }
    }
}
