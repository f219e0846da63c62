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
            .to(ascii_domain(&m.to).parse().context("recipient address")?)
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

/// The address with its domain in ASCII (punycode), which every mail server
/// takes: an address is kept with its domain's Unicode form
/// (`domain::Email`), and a server without SMTPUTF8 refuses that.
fn ascii_domain(to: &str) -> String {
    match to.rsplit_once('@') {
        Some((local, domain)) => match idna::domain_to_ascii(domain) {
            Ok(ascii) => format!("{local}@{ascii}"),
            Err(_) => to.to_string(),
        },
        None => to.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn recipients_go_out_with_an_ascii_domain() {
        assert_eq!(
            super::ascii_domain("carol@b\u{00FC}cher.example"),
            "carol@xn--bcher-kva.example"
        );
        assert_eq!(super::ascii_domain("Ada@example.com"), "Ada@example.com");
    }
}
