//! Webhook delivery: a JSON POST per message, signed per the Standard
//! Webhooks spec (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
//! when a secret (`whsec_…`, base64) is configured.

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::templates::Rendered;
use super::Message;

pub struct Webhook {
    http: reqwest::Client,
    url: String,
    key: Option<Vec<u8>>,
}

impl Webhook {
    pub fn new(http: reqwest::Client, url: String, secret: Option<String>) -> anyhow::Result<Webhook> {
        let key = secret
            .map(|s| {
                STANDARD
                    .decode(s.trim_start_matches("whsec_"))
                    .context("the webhook secret must be base64 (optionally prefixed whsec_)")
            })
            .transpose()?;
        Ok(Webhook { http, url, key })
    }

    pub async fn send(&self, m: &Message, r: &Rendered) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&json!({
            "channel": m.channel,
            "to": super::recipient(m),
            "kind": if m.notice.is_some() { "notice" } else { "code" },
            "code": (m.notice.is_none()).then_some(&m.code),
            "message": r.text,
            "subject": r.subject,
            "magic_link": m.magic_link,
            "locale": m.locale,
        }))?;
        let mut req = self.http.post(&self.url).header("content-type", "application/json");
        if let Some(key) = &self.key {
            let id = format!("msg_{}", crate::crypto::random_token::<16>());
            let ts = crate::store::now().to_string();
            req = req
                .header("webhook-id", &id)
                .header("webhook-timestamp", &ts)
                .header("webhook-signature", sign(key, &id, &ts, &body));
        }
        let res = req
            .body(body)
            .send()
            .await
            .map_err(reqwest::Error::without_url)
            .context("webhook request failed")?;
        if !res.status().is_success() {
            bail!("webhook answered {}", res.status());
        }
        Ok(())
    }
}

/// `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`
pub fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}
