//! The identifiers users sign in with: a phone number or an email address.
//! Each parses into a normalized form used for limits, lookups and
//! uniqueness; messages go to the form the user gave.

use std::fmt;
use std::str::FromStr;

/// A phone number in E.164 (`+14155550123`), validated with `phonenumber`.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone(String);

/// An email address. `key` is the one canonical form that addresses are
/// compared in (SPEC §9): Unicode NFC, then lower-cased whole (as Auth0 and
/// Supabase do: no provider in practice treats `Ada@` and `ada@` as
/// different mailboxes). `address` is delivered to as given (in NFC), with
/// the domain lower-cased. A character outside ASCII whose upper or lower
/// case is ASCII (`K` KELVIN SIGN, `ſ` LONG S, dotless `ı`, `İ`) is refused:
/// it would make a second spelling of an ASCII address.
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    address: String,
    key: String,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Identifier {
    Phone(Phone),
    Email(Email),
}

impl Phone {
    /// E.164, or a national number read in `default_region` (ISO 3166 code, e.g. `US`).
    pub fn parse(text: &str, default_region: &str) -> Result<Phone, String> {
        let text = text.trim();
        if text.is_empty() || text.len() > 32 {
            return Err("phone must be a phone number".into());
        }
        let region = phonenumber::country::Id::from_str(&default_region.to_ascii_uppercase()).ok();
        let number = phonenumber::parse(region, text).map_err(|_| format!("`{text}` is not a phone number"))?;
        if !phonenumber::is_valid(&number) {
            return Err(format!("`{text}` is not a valid phone number"));
        }
        Ok(Phone(number.format().mode(phonenumber::Mode::E164).to_string()))
    }

    pub fn e164(&self) -> &str {
        &self.0
    }
}

impl Email {
    pub fn parse(text: &str) -> Result<Email, String> {
        use unicode_normalization::UnicodeNormalization;
        // Checked before normalizing: NFC itself turns KELVIN SIGN into `K`.
        if text.chars().any(is_ascii_look_alike) {
            return Err(format!(
                "`{}` has a character that only looks like a plain letter; type the address with plain letters",
                text.trim()
            ));
        }
        let nfc: String = text.trim().nfc().collect();
        let text = nfc.as_str();
        let bad = || format!("`{text}` is not an email address");
        if text.len() > 254 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = text.rsplit_once('@').ok_or_else(bad)?;
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain.contains('.') || !labels_ok {
            return Err(bad());
        }
        if local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || local.contains(['"', '(', ')', ',', ':', ';', '<', '>', '[', '\\', ']'])
        {
            return Err(bad());
        }
        let address = format!("{local}@{}", domain.to_lowercase());
        // Lower case, with final sigma folded as case folding does (`σας` = `ΣΑΣ`).
        let key = address.to_lowercase().replace('ς', "σ");
        Ok(Email { key, address })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A non-ASCII character whose normal form or case mapping leads into ASCII.
fn is_ascii_look_alike(c: char) -> bool {
    use unicode_normalization::UnicodeNormalization;
    !c.is_ascii()
        && (std::iter::once(c).nfc().all(|n| n.is_ascii())
            || c.to_lowercase().any(|l| l.is_ascii())
            || c.to_uppercase().any(|u| u.is_ascii()))
}

/// An email if the text has an '@', a phone number otherwise.
pub fn parse_identifier(text: &str, region: &str) -> Option<Identifier> {
    let text = text.trim();
    if text.contains('@') {
        Email::parse(text).map(Identifier::Email).ok()
    } else {
        Phone::parse(text, region).map(Identifier::Phone).ok()
    }
}

impl Identifier {
    /// Exactly one of `phone` or `email`.
    pub fn from_params(phone: Option<&str>, email: Option<&str>, default_region: &str) -> Result<Identifier, String> {
        match (phone, email) {
            (Some(p), None) => Phone::parse(p, default_region).map(Identifier::Phone),
            (None, Some(e)) => Email::parse(e).map(Identifier::Email),
            (Some(_), Some(_)) => Err("send either `phone` or `email`, not both".into()),
            (None, None) => Err("missing parameter `phone` or `email`".into()),
        }
    }

    /// `phone` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            Identifier::Phone(_) => "phone",
            Identifier::Email(_) => "email",
        }
    }

    /// The delivery channel: `sms` or `email`.
    pub fn channel(&self) -> &'static str {
        match self {
            Identifier::Phone(_) => "sms",
            Identifier::Email(_) => "email",
        }
    }

    /// The normalized form used for limits, lookups and uniqueness.
    pub fn key(&self) -> &str {
        match self {
            Identifier::Phone(p) => p.e164(),
            Identifier::Email(e) => e.key(),
        }
    }

    /// Where messages go.
    pub fn address(&self) -> &str {
        match self {
            Identifier::Phone(p) => p.e164(),
            Identifier::Email(e) => e.address(),
        }
    }
}

// Identifiers are personal data: Debug shows the kind only.
impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identifier({})", self.kind())
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phone(..)")
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalize_to_e164() {
        assert_eq!(Phone::parse("+1 415 555 0123", "US").unwrap().e164(), "+14155550123");
        assert_eq!(Phone::parse("(415) 555-0123", "US").unwrap().e164(), "+14155550123");
        assert_eq!(Phone::parse("098765 43210", "IN").unwrap().e164(), "+919876543210");
        assert!(Phone::parse("12", "US").is_err());
        assert!(Phone::parse("not a phone", "US").is_err());
        assert!(Phone::parse("+1 555 0123", "US").is_err());
    }

    #[test]
    fn emails_lower_case_for_lookup_and_keep_the_local_part_for_delivery() {
        let e = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(e.address(), "Ada.Lovelace@example.com");
        assert_eq!(e.key(), "ada.lovelace@example.com");
        for bad in [
            "", "a", "a@", "@b.c", "a@b", "a b@c.d", "a@b..c", ".a@b.c", "a@-b.c", "a@b@c.d",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn look_alike_letters_are_refused_and_other_scripts_compare_in_one_form() {
        for spoof in [
            "\u{212A}evin@example.com",
            "\u{017F}am@example.com",
            "\u{0131}van@example.com",
            "\u{0130}van@example.com",
        ] {
            assert!(Email::parse(spoof).is_err(), "{spoof}");
        }
        // NFC: a decomposed é and a composed one are the same address.
        let composed = Email::parse("Jos\u{00E9}@example.com").unwrap();
        let decomposed = Email::parse("Jose\u{0301}@example.com").unwrap();
        assert_eq!(composed.key(), decomposed.key());
        assert_eq!(composed.key(), "jos\u{00E9}@example.com");
        assert_eq!(
            Email::parse("\u{00C9}LODIE@example.com").unwrap().key(),
            "\u{00E9}lodie@example.com"
        );
    }

    #[test]
    fn exactly_one_identifier() {
        assert!(Identifier::from_params(None, None, "US").is_err());
        assert!(Identifier::from_params(Some("+14155550123"), Some("a@b.co"), "US").is_err());
        assert_eq!(
            Identifier::from_params(None, Some("a@b.co"), "US").unwrap().channel(),
            "email"
        );
    }
}
