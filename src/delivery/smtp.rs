//! SMTP delivery with lettre (async, pooled): `smtp://` (with STARTTLS when
//! the URL asks for it, `?tls=required`), `smtps://`. Multipart text + HTML.

use anyhow::Context;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::templates::Rendered;
use super::Message;

pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: std::time::Duration,
}

impl Smtp {
    pub fn new(url: &str, from: &str, timeout: std::time::Duration) -> anyhow::Result<Smtp> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .context("configuration key `email.smtp_url` is not a valid SMTP URL")?
            .timeout(Some(timeout))
            .build();
        let from = from
            .parse()
            .context("configuration key `email.from` is not a valid mailbox")?;
        Ok(Smtp {
            transport,
            from,
            timeout,
        })
    }

    pub async fn send(&self, m: &Message, r: &Rendered) -> anyhow::Result<()> {
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(super::recipient(m).parse().context("recipient address")?)
            .subject(r.subject.clone().unwrap_or_default())
            .multipart(MultiPart::alternative_plain_html(
                r.text.clone(),
                r.html.clone().unwrap_or_default(),
            ))?;
        tokio::time::timeout(self.timeout, self.transport.send(email))
            .await
            .context("SMTP timed out")?
            .context("SMTP delivery failed")?;
        Ok(())
    }
}
