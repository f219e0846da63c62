//! The bot check on code sends (SPEC §10): Cloudflare Turnstile, hCaptcha
//! and reCAPTCHA all verify a widget's token with the same siteverify call
//! (a form POST of `secret`, `response` and `remoteip`, answered with JSON
//! `{"success": true|false, …}`). Anything but a clear success refuses the
//! send; a provider that fails or does not answer in time refuses it too
//! (fail closed).

use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::config::{AbuseSettings, BotCheckProvider, Redacted};
use crate::otp::{OtpError, Refusal};

pub struct BotCheck {
    provider: BotCheckProvider,
    url: String,
    secret: Redacted,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    success: bool,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

/// The longest token accepted (the providers' tokens are ~2 KB at most).
const MAX_TOKEN: usize = 4096;

impl BotCheck {
    /// The configured check, or `None` when `abuse.bot_check = "off"`.
    /// The secret is read from the variable `abuse.bot_check_secret_env` names.
    pub fn from_settings(abuse: &AbuseSettings) -> anyhow::Result<Option<BotCheck>> {
        if abuse.bot_check == BotCheckProvider::Off {
            return Ok(None);
        }
        let name = &abuse.bot_check_secret_env;
        let secret = std::env::var(name).ok().filter(|s| !s.is_empty()).with_context(|| {
            format!("configuration key `abuse.bot_check_secret_env`: the environment variable `{name}` is not set")
        })?;
        let url = match abuse.bot_check_url.as_str() {
            "" => abuse.bot_check.siteverify_url().to_string(),
            url => url.to_string(),
        };
        let http = reqwest::Client::builder()
            .timeout(abuse.bot_check_timeout)
            .connect_timeout(abuse.bot_check_timeout.min(Duration::from_secs(5)))
            .build()?;
        Ok(Some(BotCheck {
            provider: abuse.bot_check,
            url,
            secret: Redacted(secret),
            http,
        }))
    }

    pub fn provider(&self) -> BotCheckProvider {
        self.provider
    }

    /// Asks the provider whether `token` is a solved challenge.
    pub async fn verify(&self, token: Option<&str>, remote_ip: Option<&str>) -> Result<(), OtpError> {
        let token = token.map(str::trim).unwrap_or("");
        if token.is_empty() || token.len() > MAX_TOKEN {
            return Err(OtpError::Refused(Refusal::BotCheck));
        }
        let mut form = vec![("secret", self.secret.0.as_str()), ("response", token)];
        if let Some(ip) = remote_ip {
            form.push(("remoteip", ip));
        }
        let answer = async {
            let res = self.http.post(&self.url).form(&form).send().await?.error_for_status()?;
            res.json::<Answer>().await
        }
        .await;
        match answer {
            Ok(a) if a.success => Ok(()),
            Ok(a) => {
                tracing::info!(provider = ?self.provider, errors = ?a.error_codes, "bot check refused a send");
                Err(OtpError::Refused(Refusal::BotCheck))
            }
            Err(e) => {
                tracing::warn!(provider = ?self.provider, error = %e.without_url(), "bot check unavailable; send refused");
                Err(OtpError::BotCheckUnavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_needs_the_secret_in_the_named_variable() {
        let abuse = AbuseSettings {
            bot_check: BotCheckProvider::Hcaptcha,
            bot_check_secret_env: "SESAME_UNIT_TEST_UNSET_BOT_SECRET_VAR".into(),
            ..Default::default()
        };
        let err = BotCheck::from_settings(&abuse).err().expect("refused").to_string();
        assert!(err.contains("SESAME_UNIT_TEST_UNSET_BOT_SECRET_VAR"), "{err}");
        assert!(BotCheck::from_settings(&AbuseSettings::default()).unwrap().is_none());
    }
}
