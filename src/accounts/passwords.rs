//! Passwords (optional; codes always work): argon2id hashing on a fixed pool
//! of threads, and the password check under failure limits.
//!
//! - **Bounded hashing.** argon2id at its default parameters takes 19 MiB and
//!   ~50 ms per hash. Hashes run on `passwords.max_concurrent_hashes` threads of
//!   their own (default: the cores), each with its 19 MiB allocated once and
//!   reused: allocating it per hash let glibc spread the blocks over many
//!   arenas and keep them (387 MB peak RSS for 32 concurrent sign-ups, see
//!   `bench/RESULTS.md`). A bounded queue in front answers `Busy` (503) when
//!   full, rather than growing without end.
//! - **Counted before checked.** A password try is counted (one atomic
//!   statement) before its hash is compared, against the source address and
//!   against the login. Of any number of parallel guesses, at most the limit
//!   reach a comparison. A success gives its count back.
//! - **One answer.** An unknown login is counted and hashed like a real one,
//!   so "wrong" and "locked" read the same for accounts that exist and for
//!   ones that do not.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::AccountError;
use crate::audit::AuditLog;
use crate::config::PasswordSettings;
use crate::crypto;
use crate::state::AppState;
use crate::store::audit::Event;
use crate::store::users::User;
use crate::store::Store;

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
        Pool::start(n, QUEUE)
    });
}

impl Pool {
    /// `threads` hashing threads, with at most `queue` jobs waiting for them.
    fn start(threads: usize, queue: usize) -> Pool {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("sesame-hash-{i}"))
                .spawn(move || work(rx))
                .expect("a password hashing thread starts");
        }
        Pool { tx }
    }

    /// Runs `f` on a hashing thread and waits for it without blocking the
    /// caller's thread; `Busy` (503) at once when the queue is full.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AccountError> {
        self.submit(f)?.await
    }

    /// Queues `f` now (or refuses it: `Busy`); the future is its result.
    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<impl std::future::Future<Output = Result<T, AccountError>>, AccountError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller went away (its request was dropped): no hash for nobody.
            if !done.is_closed() {
                let _ = done.send(f());
            }
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(AccountError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(anyhow::anyhow!("the hashing threads stopped").into()),
        }
        Ok(async {
            result
                .await
                .map_err(|_| AccountError::Internal(anyhow::anyhow!("a password hashing job was dropped")))
        })
    }
}

thread_local! {
    /// This hashing thread's argon2 memory, kept from one hash to the next.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The most memory a stored hash may ask for (64 MiB); a larger one never matches.
const MAX_BLOCKS: usize = 64 * 1024;

/// Computes argon2 into `out` with this thread's reused memory.
fn argon2_into(argon: &Argon2<'_>, blocks: usize, password: &[u8], salt: &[u8], out: &mut [u8]) -> anyhow::Result<()> {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon
            .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
}

/// A PHC string `$argon2id$v=19$m=19456,t=2,p=1$…` for `password`.
fn hash_here(password: &str) -> anyhow::Result<String> {
    let params = Params::default();
    let salt = SaltString::encode_b64(&crypto::random_bytes::<16>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut raw_salt = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut raw_salt)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon, params.block_count(), password.as_bytes(), salt_bytes, &mut out)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash` (any argon2 variant and version).
fn matches_here(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed)) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut raw_salt = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut raw_salt) else {
        return false;
    };
    if params.block_count() > MAX_BLOCKS {
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    argon2_into(&argon, params.block_count(), password.as_bytes(), salt_bytes, &mut out).is_ok()
        && crypto::ct_eq(&out, expected.as_bytes())
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

/// Runs `f` on the hashing pool (`Pool::run`).
async fn on_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, AccountError> {
    init(None);
    POOL.get().expect("initialized above").run(f).await
}

/// argon2id with its default parameters, on the hashing pool.
pub async fn hash(password: String) -> Result<String, AccountError> {
    on_pool(move || hash_here(&password))
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
    let ok = on_pool(move || matches_here(&hash, &password)).await?;
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

/// Whose try is counted: for the `locked_out` event of the try that locks.
struct Trier<'a> {
    audit: &'a AuditLog,
    client_id: Option<&'a str>,
    user_id: Option<&'a str>,
    ip: Option<&'a str>,
}

/// Counts one try against `key`; refuses once over `max` in
/// `passwords.lockout`. The try that goes over records `locked_out` (SPEC
/// §8: a lockout is a security event) with `why`, once a window: the tries
/// after it, refused, count on.
async fn count(
    store: &Store,
    limits: &PasswordSettings,
    key: String,
    max: u32,
    trier: &Trier<'_>,
    why: &'static str,
) -> Result<Counted, AccountError> {
    let window = limits.lockout.as_secs() as i64;
    let (n, retry_after) = store.hit(&key, window).await?;
    if n > max as i64 {
        if n == max as i64 + 1 {
            trier.audit.record(Event {
                event: "locked_out",
                client_id: trier.client_id,
                user_id: trier.user_id,
                ip: trier.ip,
                detail: Some(why),
                ..Default::default()
            });
        }
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
    let store = &state.store;
    // An email is looked up in its canonical form, a username lower-cased;
    // an address that does not parse (a look-alike letter) finds nobody.
    let login_key = match (login.contains('@'), crate::domain::Email::parse(login)) {
        (true, Ok(e)) => Some(e.key().to_string()),
        (true, Err(_)) => None,
        (false, _) => Some(login.trim().to_lowercase()),
    };
    let mut trier = Trier {
        audit: &state.audit,
        client_id: Some(client_id),
        user_id: None,
        ip,
    };
    let why = "too many wrong passwords from one address";
    let by_ip = count(store, limits, ip_key(ip), limits.ip_max_failures, &trier, why).await?;
    let found = match &login_key {
        Some(key) => store.user_for_password(key).await?,
        None => None,
    };
    let login_key = login_key.unwrap_or_else(|| login.trim().to_lowercase());
    // The account's counter, or for an unknown login one of its own: the same answers either way.
    let account_key = match &found {
        Some((u, _)) => format!("pwuser:{}", u.id),
        None => format!("pwlogin:{}", state.digester.digest("login", &login_key)),
    };
    trier.user_id = found.as_ref().map(|(u, _)| u.id.as_str());
    let why = "too many wrong passwords for one account";
    let by_account = count(store, limits, account_key, limits.max_failures, &trier, why).await?;
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, None),
    };
    if verify(hash, password.to_string()).await? {
        // Read again: the hash may have waited in the queue while the account was disabled.
        let now = match &user {
            Some(u) => store.user(&u.id).await?,
            None => None,
        };
        if let Some(user) = now.filter(|u| !u.disabled) {
            for c in [by_ip, by_account] {
                state.store.unhit(&c.key).await?;
            }
            return Ok(user);
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

fn ip_key(ip: Option<&str>) -> String {
    format!("pwip:{}", crate::net::ip_bucket(ip))
}

/// Checks the account's current password before replacing it, counted
/// before the hash like a sign-in try, so a stolen session or token cannot
/// guess it without limit. The counter is the account's own for changes:
/// not the source address (a first-party backend is one address for all
/// its users) and not the sign-in counter (which strangers can fill).
///
/// `client_id` and `ip`: where the try came from (the app whose token asks,
/// none on the pages), for the `locked_out` event.
pub async fn check_current(
    store: &Store,
    limits: &PasswordSettings,
    audit: &AuditLog,
    (user_id, client_id, ip): (&str, Option<&str>, Option<&str>),
    password: &str,
) -> Result<(), AccountError> {
    let trier = Trier {
        audit,
        client_id,
        user_id: Some(user_id),
        ip,
    };
    let why = "too many wrong current passwords";
    let counted = count(
        store,
        limits,
        format!("pwchange:{user_id}"),
        limits.max_failures,
        &trier,
        why,
    )
    .await?;
    if !verify(store.password_hash(user_id).await?, password.to_string()).await? {
        return Err(AccountError::WrongPassword);
    }
    store.unhit(&counted.key).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_real_argon2id_hash_so_unknown_logins_cost_the_same() {
        let parsed = PasswordHash::new(DUMMY_HASH).expect("parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[test]
    fn hashes_are_standard_phc_strings_that_argon2_itself_verifies() {
        use argon2::password_hash::PasswordVerifier;
        let h = hash_here("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        // And a hash made by argon2 itself (as before this pool) verifies here.
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        assert!(matches_here(&theirs, "old password"));
        assert!(!matches_here(&theirs, "old passwore"));
        assert!(!matches_here("$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHQ$AAAA", "x"));
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

    /// With every thread busy and the queue full, a hash is refused at once
    /// (`Busy`, a 503 with `Retry-After` at every boundary) instead of
    /// waiting in a queue that grows without end; once the queue drains,
    /// hashes run again.
    #[tokio::test]
    async fn a_full_hashing_queue_refuses_at_once_and_accepts_again_once_drained() {
        let pool = Pool::start(1, 2);
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (taken, started) = std::sync::mpsc::channel::<()>();
        let busy = pool
            .submit(move || {
                taken.send(()).unwrap();
                held.recv().is_ok()
            })
            .unwrap();
        // The thread has taken the first job and waits in it.
        started.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        let (one, two) = (pool.submit(|| 1).unwrap(), pool.submit(|| 2).unwrap());
        let refused = pool.submit(|| 3);
        assert!(
            matches!(refused, Err(AccountError::Busy)),
            "the third waiting job is refused"
        );
        let answer = actix_web::ResponseError::error_response(&crate::error::ApiError::from(AccountError::Busy));
        assert_eq!(answer.status(), 503);
        assert_eq!(answer.headers().get("retry-after").unwrap(), "1");
        release.send(()).unwrap();
        assert!(busy.await.unwrap());
        let (one, two) = tokio::join!(one, two);
        assert_eq!((one.unwrap(), two.unwrap()), (1, 2), "the queued jobs ran");
        assert_eq!(pool.run(|| 4).await.unwrap(), 4);
    }
}
