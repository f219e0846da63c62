//! Message texts, rendered with askama from `templates/messages/`. An
//! operator changes the wording by editing those files and rebuilding.

use askama::Template;

use super::Message;

#[derive(Template)]
#[template(path = "messages/sms.txt")]
struct Sms<'a> {
    code: &'a str,
    app: &'a str,
    minutes: u64,
    /// The issuer's host, for the last line phones autofill from (WebOTP, iOS): `@host #code`.
    host: &'a str,
}

#[derive(Template)]
#[template(path = "messages/email_subject.txt")]
struct Subject<'a> {
    code: &'a str,
    app: &'a str,
}

#[derive(Template)]
#[template(path = "messages/email.txt")]
struct EmailText<'a> {
    code: &'a str,
    app: &'a str,
    minutes: u64,
    magic_link: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "messages/email.html")]
struct EmailHtml<'a> {
    code: &'a str,
    app: &'a str,
    minutes: u64,
    magic_link: Option<&'a str>,
    locale: &'a str,
}

#[derive(Template)]
#[template(path = "messages/notice.txt")]
struct NoticeText<'a> {
    kind: &'a str,
    new_address: &'a str,
}

#[derive(Template)]
#[template(path = "messages/notice_subject.txt")]
struct NoticeSubject<'a> {
    kind: &'a str,
}

/// A message ready to send: its text, and for email a subject and HTML.
pub struct Rendered {
    pub text: String,
    pub subject: Option<String>,
    pub html: Option<String>,
}

/// Renders `m`; `host` is the issuer's host (no scheme or port) for SMS autofill.
pub fn render(m: &Message, host: &str) -> anyhow::Result<Rendered> {
    if let Some(n) = &m.notice {
        let text = NoticeText {
            kind: &n.kind,
            new_address: &n.new_address,
        }
        .render()?
        .trim()
        .to_string();
        let email = m.channel == "email";
        return Ok(Rendered {
            subject: email
                .then(|| NoticeSubject { kind: &n.kind }.render().map(|s| s.trim().to_string()))
                .transpose()?,
            html: email.then(|| {
                format!(
                    "<p>{}</p>",
                    askama::filters::escape(&text, askama::filters::Html)
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                )
            }),
            text,
        });
    }
    let code = m.code.as_str();
    let (app, minutes, link) = (m.app.as_str(), m.minutes, m.magic_link.as_deref());
    Ok(match m.channel {
        "sms" => Rendered {
            text: Sms {
                code,
                app,
                minutes,
                host,
            }
            .render()?
            .trim()
            .to_string(),
            subject: None,
            html: None,
        },
        _ => Rendered {
            text: EmailText {
                code,
                app,
                minutes,
                magic_link: link,
            }
            .render()?,
            subject: Some(Subject { code, app }.render()?.trim().to_string()),
            html: Some(
                EmailHtml {
                    code,
                    app,
                    minutes,
                    magic_link: link,
                    locale: &m.locale,
                }
                .render()?,
            ),
        },
    })
}
