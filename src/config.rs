//! Typed settings: `sesame.toml` (or `--config FILE` / `SESAME_CONFIG`) overlaid
//! with `SESAME_…` environment variables (`__` separates nesting levels).
//! Unknown keys and bad values stop start-up with a message naming the key.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

mod abuse;
mod duration;
pub use abuse::{AbuseSettings, BotCheckProvider};
pub use duration::parse_duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Public base URL; the `iss` of every token.
    pub issuer: String,
    pub clients_file: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub otp: OtpSettings,
    pub tokens: TokenSettings,
    pub sms: SmsSettings,
    pub email: EmailSettings,
    pub passwords: PasswordSettings,
    pub account: AccountSettings,
    pub abuse: AbuseSettings,
    pub audit: AuditSettings,
    pub log: LogSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            issuer: "http://127.0.0.1:8080".into(),
            clients_file: "clients.toml".into(),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            otp: OtpSettings::default(),
            tokens: TokenSettings::default(),
            sms: SmsSettings::default(),
            email: EmailSettings::default(),
            passwords: PasswordSettings::default(),
            account: AccountSettings::default(),
            abuse: AbuseSettings::default(),
            audit: AuditSettings::default(),
            log: LogSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub bind: String,
    /// Worker threads; defaults to the number of cores.
    pub workers: Option<usize>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a node caches a client it looked up; a client changed by
    /// another process (CLI, another node) is seen within this.
    #[serde(deserialize_with = "duration::de")]
    pub client_cache: Duration,
    /// How often a node re-reads the revocation list; a token revoked on
    /// another node is inactive here within this. `0s`: read it per request.
    #[serde(deserialize_with = "duration::de")]
    pub revocation_sync: Duration,
    /// How long a browser stays signed in to Sesame without using it.
    #[serde(deserialize_with = "duration::de")]
    pub session_ttl: Duration,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` is believed (SPEC §10).
    pub trusted_proxies: Vec<crate::net::Cidr>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8080".into(),
            workers: None,
            max_body_bytes: 64 * 1024,
            client_cache: Duration::from_secs(5),
            revocation_sync: Duration::from_secs(1),
            session_ttl: Duration::from_secs(14 * 86_400),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: Option<u32>,
    /// How often each node tries the retention sweep (one node at a time
    /// runs it); `"0s"`: never on this node.
    #[serde(deserialize_with = "duration::de")]
    pub retention_interval: Duration,
    /// What stands between the nodes and PostgreSQL.
    pub pooler: Pooler,
}

/// `database.pooler`: `none` (PostgreSQL itself, or a pooler in session
/// mode, which is the same to Sesame) or `transaction` (PgBouncer in
/// transaction mode and the like: each transaction may run on another
/// server connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    #[default]
    None,
    Session,
    Transaction,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: "sqlite://sesame.db".into(),
            max_connections: None,
            retention_interval: Duration::from_secs(60),
            pooler: Pooler::None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtpSettings {
    pub length: usize,
    #[serde(deserialize_with = "duration::de")]
    pub ttl: Duration,
    pub max_attempts: u32,
    pub max_sends: u32,
    #[serde(deserialize_with = "duration::de")]
    pub send_window: Duration,
    #[serde(deserialize_with = "duration::de")]
    pub lockout: Duration,
    #[serde(deserialize_with = "duration::de")]
    pub resend_after: Duration,
    pub default_region: String,
    pub auto_create_accounts: bool,
    /// Codes one client may have sent per `send_window` (all identifiers together).
    pub client_max_sends: u32,
    /// Codes one source IP may have sent per `send_window`.
    pub ip_max_sends: u32,
}

impl Default for OtpSettings {
    fn default() -> Self {
        OtpSettings {
            length: 6,
            ttl: Duration::from_secs(600),
            max_attempts: 5,
            max_sends: 3,
            send_window: Duration::from_secs(3600),
            lockout: Duration::from_secs(3600),
            resend_after: Duration::from_secs(30),
            default_region: "US".into(),
            auto_create_accounts: false,
            client_max_sends: 10_000,
            ip_max_sends: 100,
        }
    }
}

/// Limits on wrong passwords (the `password` grant), like the code limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSettings {
    /// Wrong passwords for one account within `lockout`, after which it is locked for `lockout`.
    pub max_failures: u32,
    /// Wrong passwords from one source IP within `lockout` (any accounts), after which it is locked.
    pub ip_max_failures: u32,
    #[serde(deserialize_with = "duration::de")]
    pub lockout: Duration,
    /// Password hashes computed at once (argon2id takes 19 MiB each); default: the cores.
    pub max_concurrent_hashes: Option<usize>,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        PasswordSettings {
            max_failures: 5,
            ip_max_failures: 50,
            lockout: Duration::from_secs(15 * 60),
            max_concurrent_hashes: None,
        }
    }
}

/// Account security (SPEC §9).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountSettings {
    /// How old a sign-in may be for a sensitive change (password, email,
    /// phone, deleting the account); older ones need a fresh code first.
    #[serde(deserialize_with = "duration::de")]
    pub reauth_after: Duration,
    /// A browser session ends this long after its sign-in, however active.
    #[serde(deserialize_with = "duration::de")]
    pub session_max_age: Duration,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            reauth_after: Duration::from_secs(600),
            session_max_age: Duration::from_secs(14 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SigningAlg {
    ES256,
    RS256,
    EdDSA,
}

impl SigningAlg {
    /// Every algorithm Sesame signs with; each has a current key at all times.
    pub const ALL: [SigningAlg; 3] = [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA];

    pub fn parse(text: &str) -> Option<SigningAlg> {
        SigningAlg::ALL.into_iter().find(|a| a.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    #[serde(deserialize_with = "duration::de")]
    pub access_ttl: Duration,
    #[serde(deserialize_with = "duration::de")]
    pub refresh_ttl: Duration,
    pub signing_alg: SigningAlg,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            signing_alg: SigningAlg::ES256,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    #[default]
    Console,
    Webhook,
    Twilio,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSettings {
    pub provider: SmsProvider,
    pub url: Option<String>,
    /// Standard Webhooks secret (`whsec_…` base64) for signing webhook calls.
    pub secret: Option<Redacted>,
    pub account_sid: Option<String>,
    pub auth_token: Option<Redacted>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// Twilio API base URL (tests point it at a local stand-in).
    pub twilio_base_url: String,
    /// How long one provider call may take before it counts as failed.
    #[serde(deserialize_with = "duration::de")]
    pub timeout: Duration,
}

impl Default for SmsSettings {
    fn default() -> Self {
        SmsSettings {
            provider: SmsProvider::Console,
            url: None,
            secret: None,
            account_sid: None,
            auth_token: None,
            from: None,
            messaging_service_sid: None,
            twilio_base_url: "https://api.twilio.com".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmailProvider {
    #[default]
    Console,
    Smtp,
    Webhook,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSettings {
    pub provider: EmailProvider,
    pub smtp_url: Option<Redacted>,
    pub from: String,
    pub url: Option<String>,
    pub secret: Option<Redacted>,
    /// How long one provider call may take before it counts as failed.
    #[serde(deserialize_with = "duration::de")]
    pub timeout: Duration,
}

impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            provider: EmailProvider::Console,
            smtp_url: None,
            from: "Sesame <no-reply@example.com>".into(),
            url: None,
            secret: None,
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The audit trail (SPEC §8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// How long audit events are kept; older ones are purged in the background.
    #[serde(deserialize_with = "duration::de")]
    pub retention: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            retention: Duration::from_secs(400 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info` or `sesame=debug,info`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// A configuration string that never shows in `Debug` output or logs.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl Settings {
    /// Whether the issuer is served over https (cookies get `Secure` and `__Host-`).
    pub fn https(&self) -> bool {
        self.issuer().starts_with("https://")
    }

    /// Loads the file (when given, or `sesame.toml` when present) and the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Settings> {
        let table = match file {
            Some(path) => read_table(path)?,
            None if Path::new("sesame.toml").exists() => read_table(Path::new("sesame.toml"))?,
            None => toml::Table::new(),
        };
        Self::from_table(table, env)
    }

    /// The settings a configuration file's text gives (no environment).
    pub fn from_toml(text: &str) -> anyhow::Result<Settings> {
        let table = toml::from_str(text).context("invalid configuration file")?;
        Self::from_table(table, &[])
    }

    fn from_table(mut table: toml::Table, env: &[(String, String)]) -> anyhow::Result<Settings> {
        overlay_env(&mut table, env)?;
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("configuration key `{path}`: {}", e.into_inner().message())
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let issuer = self.issuer.trim_end_matches('/');
        if !(issuer.starts_with("http://") || issuer.starts_with("https://")) {
            bail!("configuration key `issuer`: must be an http:// or https:// URL");
        }
        if !(4..=10).contains(&self.otp.length) {
            bail!("configuration key `otp.length`: must be between 4 and 10 digits");
        }
        if self.database.pooler != Pooler::None && !self.database.url.starts_with("postgres") {
            bail!("configuration key `database.pooler`: a pooler stands before PostgreSQL only; `database.url` is not a postgres:// URL");
        }
        if self.otp.max_attempts == 0 || self.otp.max_sends == 0 {
            bail!("configuration keys `otp.max_attempts` and `otp.max_sends` must be at least 1");
        }
        // Zero would refuse every password, not limit them.
        for (key, n) in [
            ("passwords.max_failures", self.passwords.max_failures),
            ("passwords.ip_max_failures", self.passwords.ip_max_failures),
        ] {
            if n == 0 {
                bail!("configuration key `{key}`: must be at least 1");
            }
        }
        let region = self.otp.default_region.to_ascii_uppercase();
        if phonenumber::country::Id::from_str(&region).is_err() {
            bail!(
                "configuration key `otp.default_region`: `{}` is not an ISO 3166-1 alpha-2 country code",
                self.otp.default_region
            );
        }
        // A lock or window of zero would turn its limit off.
        for (key, d) in [
            ("otp.ttl", self.otp.ttl),
            ("otp.send_window", self.otp.send_window),
            ("otp.lockout", self.otp.lockout),
            ("passwords.lockout", self.passwords.lockout),
            ("tokens.access_ttl", self.tokens.access_ttl),
            ("tokens.refresh_ttl", self.tokens.refresh_ttl),
            ("account.session_max_age", self.account.session_max_age),
            ("abuse.failure_window", self.abuse.failure_window),
            ("audit.retention", self.audit.retention),
        ] {
            if d.is_zero() {
                bail!("configuration key `{key}`: must be longer than zero");
            }
        }
        self.validate_abuse()
    }

    fn validate_abuse(&self) -> anyhow::Result<()> {
        let abuse = &self.abuse;
        for cc in &abuse.allowed_countries {
            if phonenumber::country::Id::from_str(&cc.to_ascii_uppercase()).is_err() {
                bail!("configuration key `abuse.allowed_countries`: `{cc}` is not an ISO 3166-1 alpha-2 country code");
            }
        }
        if abuse.max_failures == 0 {
            bail!("configuration key `abuse.max_failures`: must be at least 1");
        }
        for (number, code) in &abuse.test_numbers {
            if crate::domain::Phone::test_number(number).as_deref() != Some(number.as_str()) {
                bail!("configuration key `abuse.test_numbers`: `{number}` must be written +<digits>, e.g. \"+15555550100\"");
            }
            if code.len() != self.otp.length || !code.bytes().all(|b| b.is_ascii_digit()) {
                bail!(
                    "configuration key `abuse.test_numbers`: the code for `{number}` must be {} digits (otp.length)",
                    self.otp.length
                );
            }
        }
        if abuse.bot_check != BotCheckProvider::Off {
            if abuse.bot_check_secret_env.is_empty() {
                bail!("configuration key `abuse.bot_check_secret_env`: name the environment variable that holds the siteverify secret");
            }
            if abuse.bot_check_secret_env.starts_with("SESAME_") {
                bail!("configuration key `abuse.bot_check_secret_env`: choose a name without the `SESAME_` prefix, which is read as configuration (e.g. TURNSTILE_SECRET)");
            }
            if abuse.bot_check_site_key.is_empty() {
                bail!("configuration key `abuse.bot_check_site_key`: the pages need the widget's site key");
            }
        }
        Ok(())
    }

    /// `console` delivery (and `/dev/outbox`, which lists what it sent) is for
    /// development only: refused unless the issuer is `http://` on a loopback host.
    pub fn check_development_delivery(&self) -> anyhow::Result<()> {
        use crate::config::{EmailProvider, SmsProvider};
        let console = [
            ("sms.provider", matches!(self.sms.provider, SmsProvider::Console)),
            ("email.provider", matches!(self.email.provider, EmailProvider::Console)),
        ];
        if let Some((key, _)) = console.iter().find(|(_, on)| *on) {
            if !issuer_is_loopback_http(self.issuer()) {
                bail!(
                    "configuration key `{key}`: `console` delivery shows every code on /dev/outbox and is only \
                     for development; it is refused unless the issuer is http:// on a loopback host \
                     (issuer is {}). Choose a real provider (see README, Delivery).",
                    self.issuer()
                );
            }
        }
        Ok(())
    }

    /// How phone numbers are read: `otp.default_region` and `abuse.test_numbers`.
    pub fn phones(&self) -> crate::domain::PhoneRules<'_> {
        crate::domain::PhoneRules {
            region: &self.otp.default_region,
            test_numbers: &self.abuse.test_numbers,
        }
    }

    /// The issuer without a trailing slash.
    pub fn issuer(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }
}

fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}

/// `SESAME_OTP__MAX_SENDS=5` sets `otp.max_sends`. Values are read as TOML
/// scalars when they parse as one (numbers, booleans), otherwise as strings.
/// `SESAME_CONFIG` and `SESAME_TEST_*` are not settings.
fn overlay_env(table: &mut toml::Table, env: &[(String, String)]) -> anyhow::Result<()> {
    for (name, raw) in env {
        let Some(key) = name.strip_prefix("SESAME_") else {
            continue;
        };
        if key == "CONFIG" || key.starts_with("TEST_") {
            continue;
        }
        let path: Vec<String> = key.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_table() && !v.is_array())
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut node = &mut *table;
        for part in &path[..path.len() - 1] {
            let entry = node
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry
                .as_table_mut()
                .with_context(|| format!("environment variable {name}: `{part}` is not a section"))?;
        }
        node.insert(path[path.len() - 1].clone(), value);
    }
    Ok(())
}

/// `http://localhost…`, `http://127.x.x.x…` or `http://[::1]…`.
pub fn issuer_is_loopback_http(issuer: &str) -> bool {
    let Some(rest) = issuer.strip_prefix("http://") else {
        return false;
    };
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Userinfo (`localhost@evil.example`) or a backslash would let the real
    // host be another than the one read here.
    if host_port.contains(['@', '\\']) || rest.contains('\\') {
        return false;
    }
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::load_from(None, &[]).unwrap();
        assert_eq!(s.otp.length, 6);
        assert_eq!(s.otp.ttl, Duration::from_secs(600));
        assert_eq!(s.otp.max_sends, 3);
        assert_eq!(s.tokens.signing_alg, SigningAlg::ES256);
        assert_eq!(s.database.url, "sqlite://sesame.db");
        // §9 and §10.
        assert_eq!(s.account.reauth_after, Duration::from_secs(600));
        assert_eq!(s.account.session_max_age, Duration::from_secs(14 * 86_400));
        assert_eq!(s.abuse.max_failures, 20);
        assert_eq!(s.abuse.failure_window, Duration::from_secs(86_400));
        assert_eq!(s.abuse.country_max_sends, 1000);
        assert_eq!(s.abuse.global_max_sms, 10_000);
        assert_eq!(s.abuse.bot_check_timeout, Duration::from_secs(10));
        assert!(s.abuse.block_premium_numbers);
    }

    #[test]
    fn environment_overrides_nested_keys_with_typed_values() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("SESAME_OTP__LENGTH", "8"),
                ("SESAME_OTP__TTL", "5m"),
                ("SESAME_DATABASE__URL", "postgres://u@h/db"),
                ("SESAME_OTP__AUTO_CREATE_ACCOUNTS", "true"),
                ("SESAME_TEST_POSTGRES_URL", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.otp.length, 8);
        assert_eq!(s.otp.ttl, Duration::from_secs(300));
        assert_eq!(s.database.url, "postgres://u@h/db");
        assert!(s.otp.auto_create_accounts);
    }

    #[test]
    fn unknown_key_is_named_in_the_error() {
        let err = Settings::load_from(None, &env(&[("SESAME_OTP__LENGHT", "8")])).unwrap_err();
        assert!(err.to_string().contains("otp"), "{err}");
        assert!(err.to_string().contains("lenght"), "{err}");
    }

    #[test]
    fn abuse_keys_are_checked_at_start() {
        let err = |pairs: &[(&str, &str)]| Settings::load_from(None, &env(pairs)).unwrap_err().to_string();
        let mut s = Settings::default();
        s.abuse.allowed_countries = vec!["GB".into(), "XX".into()];
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("abuse.allowed_countries") && e.contains("XX"), "{e}");
        let e = err(&[("SESAME_ABUSE__MAX_FAILURES", "0")]);
        assert!(e.contains("abuse.max_failures"), "{e}");
        let e = err(&[("SESAME_ABUSE__BOT_CHECK", "turnstile")]);
        assert!(e.contains("abuse.bot_check_secret_env"), "{e}");
        let e = err(&[
            ("SESAME_ABUSE__BOT_CHECK", "hcaptcha"),
            ("SESAME_ABUSE__BOT_CHECK_SECRET_ENV", "SESAME_SECRET"),
        ]);
        assert!(e.contains("SESAME_"), "{e}");
        let e = err(&[
            ("SESAME_ABUSE__BOT_CHECK", "recaptcha"),
            ("SESAME_ABUSE__BOT_CHECK_SECRET_ENV", "RECAPTCHA_SECRET"),
        ]);
        assert!(e.contains("abuse.bot_check_site_key"), "{e}");
        let e = err(&[("SESAME_ABUSE__BOT_CHECK", "cloudflare")]);
        assert!(e.contains("abuse.bot_check"), "{e}");
        let e = toml::from_str::<Settings>("[server]\ntrusted_proxies = [\"10.0.0.0/99\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("10.0.0.0/99") && e.contains("address block"), "{e}");
    }

    /// helper-23's review: `passwords.lockout = "0s"` was taken, and turned
    /// the password limits off (each try began a new window); an unknown
    /// `otp.default_region` broke every nationally written number.
    #[test]
    fn limits_that_would_turn_themselves_off_and_unknown_regions_stop_start_up() {
        let err = |pairs: &[(&str, &str)]| Settings::load_from(None, &env(pairs)).unwrap_err().to_string();
        for (key, value, named) in [
            ("SESAME_PASSWORDS__LOCKOUT", "0s", "passwords.lockout"),
            ("SESAME_OTP__LOCKOUT", "0s", "otp.lockout"),
            ("SESAME_ABUSE__FAILURE_WINDOW", "0s", "abuse.failure_window"),
            ("SESAME_PASSWORDS__MAX_FAILURES", "0", "passwords.max_failures"),
            ("SESAME_PASSWORDS__IP_MAX_FAILURES", "0", "passwords.ip_max_failures"),
            ("SESAME_OTP__DEFAULT_REGION", "XX", "otp.default_region"),
            ("SESAME_OTP__LENGTH", "3", "otp.length"),
            ("SESAME_OTP__LENGTH", "11", "otp.length"),
        ] {
            let e = err(&[(key, value)]);
            assert!(e.contains(named), "{key}={value}: {e}");
        }
        for (key, value) in [
            ("SESAME_OTP__DEFAULT_REGION", "gb"),
            ("SESAME_OTP__LENGTH", "4"),
            ("SESAME_OTP__LENGTH", "10"),
        ] {
            assert!(
                Settings::load_from(None, &env(&[(key, value)])).is_ok(),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn test_numbers_are_written_plus_digits_with_a_code_of_otp_length() {
        let mut s = Settings::default();
        s.abuse.test_numbers.insert("+15555550100".into(), "123456".into());
        assert!(s.validate().is_ok());
        s.abuse.test_numbers.insert("+1 555 555 0101".into(), "123456".into());
        assert!(s.validate().unwrap_err().to_string().contains("+<digits>"));
        s.abuse.test_numbers.clear();
        s.abuse.test_numbers.insert("+15555550100".into(), "1234".into());
        assert!(s.validate().unwrap_err().to_string().contains("6 digits"));
    }

    #[test]
    fn bad_duration_is_named_in_the_error() {
        let err = Settings::load_from(None, &env(&[("SESAME_OTP__TTL", "10 parsecs")])).unwrap_err();
        assert!(err.to_string().contains("otp.ttl"), "{err}");
    }

    #[test]
    fn console_delivery_is_only_for_a_loopback_http_issuer() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:9000/x",
            "http://127.1.2.3",
        ] {
            assert!(issuer_is_loopback_http(ok), "{ok}");
        }
        for bad in [
            "https://127.0.0.1",
            "http://example.com",
            "http://127.0.0.1.example.com",
            "http://10.0.0.1",
        ] {
            assert!(!issuer_is_loopback_http(bad), "{bad}");
        }
        let mut s = Settings::default();
        assert!(s.check_development_delivery().is_ok());
        s.issuer = "https://id.example.com".into();
        let err = s.check_development_delivery().unwrap_err().to_string();
        assert!(err.contains("sms.provider"), "{err}");
    }

    #[test]
    fn loopback_http_is_the_host_itself_not_userinfo() {
        for ok in ["http://localhost:3000/cb", "http://127.0.0.1/x", "http://[::1]:8080/"] {
            assert!(issuer_is_loopback_http(ok), "{ok}");
        }
        for bad in [
            "http://localhost:80@evil.example/bc",
            "http://[::1]@evil.example/",
            "http://127.0.0.1\\@evil.example/",
            "http://evil.example/localhost",
            "https://localhost/",
        ] {
            assert!(!issuer_is_loopback_http(bad), "{bad}");
        }
    }
}
