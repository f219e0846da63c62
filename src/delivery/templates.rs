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

/// A message ready to send: its text, and for email a subject and HTML.
pub struct Rendered {
    pub text: String,
    pub subject: Option<String>,
    pub html: Option<String>,
}

pub fn render(m: &Message) -> anyhow::Result<Rendered> {
    let code = m.code.as_str();
    let (app, minutes, link) = (m.app.as_str(), m.minutes, m.magic_link.as_deref());
    Ok(match m.channel {
        "sms" => Rendered {
            text: Sms { code, app, minutes }.render()?.trim().to_string(),
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
