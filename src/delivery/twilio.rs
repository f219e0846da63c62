//! Twilio's Messages API: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded, HTTP Basic with the account SID and auth token.

use anyhow::{bail, Context};

use super::templates::Rendered;
use super::Message;
use crate::config::SmsSettings;

pub struct Twilio {
    http: reqwest::Client,
    url: String,
    sid: String,
    token: String,
    from: Option<String>,
    service: Option<String>,
}

impl Twilio {
    pub fn from_settings(http: reqwest::Client, s: &SmsSettings) -> anyhow::Result<Twilio> {
        let sid = s
            .account_sid
            .clone()
            .context("configuration key `sms.account_sid` is required for twilio")?;
        let token = s
            .auth_token
            .clone()
            .context("configuration key `sms.auth_token` is required for twilio")?
            .0;
        if s.from.is_none() && s.messaging_service_sid.is_none() {
            bail!("configuration key `sms.from` or `sms.messaging_service_sid` is required for twilio");
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{sid}/Messages.json",
            s.twilio_base_url.trim_end_matches('/')
        );
        Ok(Twilio {
            http,
            url,
            sid,
            token,
            from: s.from.clone(),
            service: s.messaging_service_sid.clone(),
        })
    }

    pub async fn send(&self, m: &Message, r: &Rendered) -> anyhow::Result<()> {
        let mut form = vec![("To", m.to.as_str()), ("Body", r.text.as_str())];
        match (&self.service, &self.from) {
            (Some(service), _) => form.push(("MessagingServiceSid", service)),
            (None, Some(from)) => form.push(("From", from)),
            (None, None) => bail!("twilio needs a sender"),
        }
        let res = self
            .http
            .post(&self.url)
            .basic_auth(&self.sid, Some(&self.token))
            .form(&form)
            .send()
            .await
            .map_err(reqwest::Error::without_url)
            .context("twilio request failed")?;
        if !res.status().is_success() {
            let status = res.status();
            let detail: serde_json::Value = res.json().await.unwrap_or_default();
            bail!(
                "twilio answered {status}: {}",
                detail["message"].as_str().unwrap_or("no message")
            );
        }
        Ok(())
    }
}
