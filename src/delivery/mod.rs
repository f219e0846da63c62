//! Delivering codes: SMS (console, webhook, Twilio) and email (console, SMTP,
//! webhook). Every provider call is bounded by a timeout; a failure is an
//! error the caller turns into `503 delivery_failed`.

use anyhow::{bail, Context};

use crate::config::{EmailProvider, Settings, SmsProvider};

mod console;
mod smtp;
pub mod templates;
mod twilio;
mod webhook;

pub use console::{Outbox, OutboxEntry};
pub use webhook::sign as webhook_signature;

/// One code to deliver. `Debug` hides the code and link.
pub struct Message {
    /// `sms` or `email`.
    pub channel: &'static str,
    pub to: String,
    pub code: String,
    pub magic_link: Option<String>,
    pub locale: String,
    /// The client's name, shown in the message.
    pub app: String,
    pub minutes: u64,
    /// A security notice instead of a code (the code is then empty).
    pub notice: Option<Notice>,
}

/// "Your phone number (or email) was changed to …", sent to the old one.
#[derive(Clone)]
pub struct Notice {
    /// `phone` or `email`.
    pub kind: String,
    pub new_address: String,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("channel", &self.channel)
            .field("locale", &self.locale)
            .finish_non_exhaustive()
    }
}

enum Sms {
    Console,
    Webhook(webhook::Webhook),
    Twilio(twilio::Twilio),
}

enum Email {
    Console,
    Smtp(smtp::Smtp),
    Webhook(webhook::Webhook),
}

pub struct Delivery {
    sms: Sms,
    email: Email,
    /// Present when either channel delivers to the console (`/dev/outbox`).
    pub outbox: Option<Outbox>,
    /// The issuer's host without scheme or port: SMS codes end in `@host #code`.
    host: String,
}

/// `https://id.example.com:8443/x` → `id.example.com` (WebOTP's origin host).
fn issuer_host(issuer: &str) -> String {
    let rest = issuer.split_once("://").map_or(issuer, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or("").to_string(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_string(),
    }
}

impl Delivery {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Delivery> {
        let client = |timeout| reqwest::Client::builder().timeout(timeout).build();
        let (sms_http, email_http) = (client(s.sms.timeout)?, client(s.email.timeout)?);
        let secret = |o: &Option<crate::config::Redacted>| o.as_ref().map(|r| r.0.clone());
        let sms = match s.sms.provider {
            SmsProvider::Console => Sms::Console,
            SmsProvider::Webhook => {
                let url = s
                    .sms
                    .url
                    .clone()
                    .context("configuration key `sms.url` is required for the webhook provider")?;
                Sms::Webhook(
                    webhook::Webhook::new(sms_http.clone(), url, secret(&s.sms.secret))
                        .context("configuration key `sms.secret`")?,
                )
            }
            SmsProvider::Twilio => Sms::Twilio(twilio::Twilio::from_settings(sms_http, &s.sms)?),
        };
        let email = match s.email.provider {
            EmailProvider::Console => Email::Console,
            EmailProvider::Smtp => {
                let url = s
                    .email
                    .smtp_url
                    .as_ref()
                    .context("configuration key `email.smtp_url` is required for the smtp provider")?;
                Email::Smtp(smtp::Smtp::new(&url.0, &s.email.from, s.email.timeout)?)
            }
            EmailProvider::Webhook => {
                let url = s
                    .email
                    .url
                    .clone()
                    .context("configuration key `email.url` is required for the webhook provider")?;
                Email::Webhook(
                    webhook::Webhook::new(email_http, url, secret(&s.email.secret))
                        .context("configuration key `email.secret`")?,
                )
            }
        };
        let console = matches!(sms, Sms::Console) || matches!(email, Email::Console);
        Ok(Delivery {
            sms,
            email,
            outbox: console.then(Outbox::default),
            host: issuer_host(s.issuer()),
        })
    }

    pub async fn send(&self, m: &Message) -> anyhow::Result<()> {
        let rendered = templates::render(m, &self.host)?;
        let console = || {
            if let Some(o) = &self.outbox {
                o.push(m, &rendered);
            }
            tracing::info!(channel = m.channel, to = %m.to, code = %m.code, "console delivery (development only): {}", rendered.text.lines().next().unwrap_or(""));
            Ok(())
        };
        match (m.channel, &self.sms, &self.email) {
            ("sms", Sms::Console, _) => console(),
            ("sms", Sms::Webhook(w), _) => w.send(m, &rendered).await,
            ("sms", Sms::Twilio(t), _) => t.send(m, &rendered).await,
            ("email", _, Email::Console) => console(),
            ("email", _, Email::Smtp(s)) => s.send(m, &rendered).await,
            ("email", _, Email::Webhook(w)) => w.send(m, &rendered).await,
            (other, _, _) => bail!("unknown channel {other}"),
        }
    }
}

/// Where a message goes, as providers take it: an email's domain in ASCII
/// (punycode), which every mail server takes, SMTPUTF8 or not. Addresses
/// are kept with the domain's Unicode form (`domain::Email`).
fn recipient(m: &Message) -> String {
    let ascii = match m.to.rsplit_once('@') {
        Some((local, domain)) if m.channel == "email" => {
            idna::domain_to_ascii(domain).map(|d| format!("{local}@{d}")).ok()
        }
        _ => None,
    };
    ascii.unwrap_or_else(|| m.to.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails_go_out_with_an_ascii_domain() {
        let to = |channel: &'static str, to: &str| {
            super::recipient(&super::Message {
                channel,
                to: to.into(),
                code: String::new(),
                magic_link: None,
                locale: "en".into(),
                app: String::new(),
                minutes: 0,
                notice: None,
            })
        };
        assert_eq!(
            to("email", "carol@b\u{00FC}cher.example"),
            "carol@xn--bcher-kva.example"
        );
        assert_eq!(to("email", "Ada@example.com"), "Ada@example.com");
        assert_eq!(to("sms", "+14155550123"), "+14155550123");
    }

    #[test]
    fn the_autofill_host_has_no_scheme_port_or_path() {
        assert_eq!(super::issuer_host("https://id.example.com"), "id.example.com");
        assert_eq!(super::issuer_host("http://127.0.0.1:8080/"), "127.0.0.1");
        assert_eq!(
            super::issuer_host("https://id.example.com:8443/tenant"),
            "id.example.com"
        );
        assert_eq!(super::issuer_host("http://[::1]:9000"), "::1");
    }
}
