//! `[abuse]` (SPEC §10): what stands between the OTP sends and SMS pumping,
//! lockouts by strangers and bots.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseSettings {
    /// ISO 3166-1 alpha-2 codes SMS may go to; empty: every country.
    pub allowed_countries: Vec<String>,
    /// Premium-rate, shared-cost, UAN and unknown-type numbers get no SMS.
    pub block_premium_numbers: bool,
    /// SMS codes per destination country per `otp.send_window`.
    pub country_max_sends: u32,
    /// SMS codes per `otp.send_window`, all countries together.
    pub global_max_sms: u32,
    /// Off (0) by default. Codes per identifier per `otp.send_window` from
    /// every source, past which only the sources that verified a code for it
    /// in the last 30 days get more (many addresses bombing one phone). A
    /// trade-off: strangers with that many addresses can then keep a user on
    /// a new address from getting a code for the window.
    pub identifier_max_sends: u32,
    /// Wrong codes per identifier per `failure_window`, from every source,
    /// after which the identifier is locked until the window ends.
    pub max_failures: u32,
    #[serde(deserialize_with = "duration::de")]
    pub failure_window: Duration,
    /// Phone numbers with a fixed code: nothing is sent (app-store review).
    pub test_numbers: BTreeMap<String, String>,
    pub bot_check: BotCheckProvider,
    /// The siteverify URL; empty: the provider's own.
    pub bot_check_url: String,
    /// The widget's public site key, for the pages.
    pub bot_check_site_key: String,
    /// The environment variable that holds the siteverify secret.
    pub bot_check_secret_env: String,
    /// How long siteverify may take before the send is refused (fail closed).
    #[serde(deserialize_with = "duration::de")]
    pub bot_check_timeout: Duration,
}

impl Default for AbuseSettings {
    fn default() -> Self {
        AbuseSettings {
            allowed_countries: Vec::new(),
            block_premium_numbers: true,
            country_max_sends: 1000,
            global_max_sms: 10_000,
            identifier_max_sends: 0,
            max_failures: 20,
            failure_window: Duration::from_secs(24 * 3600),
            test_numbers: BTreeMap::new(),
            bot_check: BotCheckProvider::Off,
            bot_check_url: String::new(),
            bot_check_site_key: String::new(),
            bot_check_secret_env: String::new(),
            bot_check_timeout: Duration::from_secs(10),
        }
    }
}

/// The bot checks that speak the siteverify protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BotCheckProvider {
    #[default]
    Off,
    Turnstile,
    Hcaptcha,
    Recaptcha,
}

impl BotCheckProvider {
    /// The provider's own siteverify endpoint.
    pub fn siteverify_url(self) -> &'static str {
        match self {
            BotCheckProvider::Off => "",
            BotCheckProvider::Turnstile => "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            BotCheckProvider::Hcaptcha => "https://api.hcaptcha.com/siteverify",
            BotCheckProvider::Recaptcha => "https://www.google.com/recaptcha/api/siteverify",
        }
    }

    /// The widget's script.
    pub fn script_url(self) -> &'static str {
        match self {
            BotCheckProvider::Off => "",
            BotCheckProvider::Turnstile => "https://challenges.cloudflare.com/turnstile/v0/api.js",
            BotCheckProvider::Hcaptcha => "https://js.hcaptcha.com/1/api.js",
            BotCheckProvider::Recaptcha => "https://www.google.com/recaptcha/api.js",
        }
    }

    /// The origins the widget loads scripts, frames and styles from (the CSP allows these only).
    pub fn origins(self) -> &'static str {
        match self {
            BotCheckProvider::Off => "",
            BotCheckProvider::Turnstile => "https://challenges.cloudflare.com",
            BotCheckProvider::Hcaptcha => "https://hcaptcha.com https://*.hcaptcha.com",
            BotCheckProvider::Recaptcha => "https://www.google.com https://www.gstatic.com",
        }
    }

    /// The form field the widget fills in on the page.
    pub fn form_field(self) -> &'static str {
        match self {
            BotCheckProvider::Off => "",
            BotCheckProvider::Turnstile => "cf-turnstile-response",
            BotCheckProvider::Hcaptcha => "h-captcha-response",
            BotCheckProvider::Recaptcha => "g-recaptcha-response",
        }
    }

    /// The widget element's class.
    pub fn widget_class(self) -> &'static str {
        match self {
            BotCheckProvider::Off => "",
            BotCheckProvider::Turnstile => "cf-turnstile",
            BotCheckProvider::Hcaptcha => "h-captcha",
            BotCheckProvider::Recaptcha => "g-recaptcha",
        }
    }
}
