//! The identifiers users sign in with: a phone number or an email address.
//! Each parses into a normalized form used for limits, lookups and
//! uniqueness; messages go to the form the user gave.

use std::collections::BTreeMap;
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

/// How phone numbers are read: the region of national numbers
/// (`otp.default_region`) and the operator's test numbers (`abuse.test_numbers`,
/// taken as written: they need not be valid numbers).
#[derive(Clone, Copy)]
pub struct PhoneRules<'a> {
    pub region: &'a str,
    pub test_numbers: &'a BTreeMap<String, String>,
}

static NO_TEST_NUMBERS: BTreeMap<String, String> = BTreeMap::new();

impl PhoneRules<'static> {
    /// National numbers read in `region`, no test numbers.
    pub fn region(region: &'static str) -> PhoneRules<'static> {
        PhoneRules {
            region,
            test_numbers: &NO_TEST_NUMBERS,
        }
    }
}

impl Phone {
    /// E.164, or a national number read in the rules' region (ISO 3166 code,
    /// e.g. `US`), or one of the test numbers. Only digits and the usual
    /// punctuation are accepted (SPEC §10): a leading `+` or `00`, spaces,
    /// `-`, `.`, `/`, parentheses; full-width digits count as digits.
    pub fn parse(text: &str, rules: &PhoneRules) -> Result<Phone, String> {
        let text = text.trim();
        let plain = plain_number(text)?;
        if plain.starts_with('+') && rules.test_numbers.contains_key(&plain) {
            return Ok(Phone(plain));
        }
        let region = phonenumber::country::Id::from_str(&rules.region.to_ascii_uppercase()).ok();
        let number = phonenumber::parse(region, &plain).map_err(|_| format!("`{text}` is not a phone number"))?;
        if !phonenumber::is_valid(&number) {
            return Err(format!("`{text}` is not a valid phone number"));
        }
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        // Only a canonical form is kept: one that reads back as itself. (The
        // library can rewrite a number it calls valid into one it does not:
        // `00 43 1111101011148` became `+4311101011148`; found by fuzzing.)
        // Read back with and without the region, as it will be read later.
        let reads_back = |region| {
            phonenumber::parse(region, &e164).is_ok_and(|n| {
                phonenumber::is_valid(&n) && n.format().mode(phonenumber::Mode::E164).to_string() == e164
            })
        };
        let stable = reads_back(None) && reads_back(region);
        if !stable {
            return Err(format!("`{text}` is not a valid phone number"));
        }
        Ok(Phone(e164))
    }

    /// The `+<digits>` form of an international number as typed, if it is one
    /// (how test numbers are written and looked up).
    pub fn test_number(text: &str) -> Option<String> {
        plain_number(text.trim()).ok().filter(|p| p.starts_with('+'))
    }

    pub fn e164(&self) -> &str {
        &self.0
    }

    /// The number's country and type, as `phonenumber` knows them; `None`
    /// for a test number that is no real number.
    pub fn facts(&self) -> Option<(Option<String>, phonenumber::Type)> {
        let number = phonenumber::parse(None, &self.0).ok()?;
        if !phonenumber::is_valid(&number) {
            return None;
        }
        let country = number.country().id().map(|id| id.as_ref().to_string());
        Some((country, number.number_type(&phonenumber::metadata::DATABASE)))
    }
}

/// A phone number as `+<digits>` (international: a leading `+` or `00`) or
/// `<digits>` (national), or why the text is not one.
fn plain_number(text: &str) -> Result<String, String> {
    let refuse = || {
        format!("`{text}` is not a phone number: use digits, an optional leading +, and spaces, -, ., / or parentheses")
    };
    if text.is_empty() || text.chars().count() > 32 {
        return Err("phone must be a phone number".into());
    }
    let mut digits = String::with_capacity(16);
    let mut plus = false;
    for (i, c) in text.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            // Full-width digits (as some keyboards type them).
            '\u{FF10}'..='\u{FF19}' => digits.push(char::from(b'0' + (c as u32 - 0xFF10) as u8)),
            '+' | '\u{FF0B}' if i == 0 => plus = true,
            ' ' | '-' | '.' | '/' | '(' | ')' => {}
            _ => return Err(refuse()),
        }
    }
    if !plus {
        if let Some(rest) = digits.strip_prefix("00") {
            digits = rest.to_string();
            plus = true;
        }
    }
    if digits.len() < 3 || digits.len() > 17 {
        return Err(refuse());
    }
    Ok(if plus { format!("+{digits}") } else { digits })
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
        let (local, typed_domain) = text.rsplit_once('@').ok_or_else(bad)?;
        // The domain in its one spelling (UTS #46, as browsers map host names):
        // `xn--bcher-kva.example` is `bücher.example` and `ｅxample.com` is
        // `example.com`, one mailbox, so one identifier with one set of limits.
        // Hyphens in a label's third and fourth places are allowed
        // (`ab--cd.example` is a real name); first and last are not.
        use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
        let ascii = Uts46::new()
            .to_ascii(
                typed_domain.as_bytes(),
                AsciiDenyList::STD3,
                Hyphens::CheckFirstLast,
                DnsLength::Verify,
            )
            .map_err(|_| bad())?;
        let (domain, mapped) = idna::domain_to_unicode(&ascii);
        mapped.map_err(|_| bad())?;
        // Punycode is decoded only now: `xn--bm-gpa.com` is `ıbm.com`.
        if domain.chars().any(is_ascii_look_alike) {
            return Err(format!(
                "`{}` has a character that only looks like a plain letter; type the address with plain letters",
                text.trim()
            ));
        }
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
pub fn parse_identifier(text: &str, phones: &PhoneRules) -> Option<Identifier> {
    let text = text.trim();
    if text.contains('@') {
        Email::parse(text).map(Identifier::Email).ok()
    } else {
        Phone::parse(text, phones).map(Identifier::Phone).ok()
    }
}

impl Identifier {
    /// Exactly one of `phone` or `email`.
    pub fn from_params(phone: Option<&str>, email: Option<&str>, phones: &PhoneRules) -> Result<Identifier, String> {
        match (phone, email) {
            (Some(p), None) => Phone::parse(p, phones).map(Identifier::Phone),
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

    fn us() -> PhoneRules<'static> {
        PhoneRules::region("US")
    }

    #[test]
    fn a_number_is_kept_only_in_a_form_that_reads_back_as_itself() {
        // Found by fuzz/identifiers: the library rewrote this valid-looking
        // number into an E.164 form that it does not accept.
        assert!(Phone::parse("00 43 1111101011148", &us()).is_err());
        for typed in ["+1 415 555 0123", "+44 20 7946 0958", "+44 7400 123456"] {
            let phone = Phone::parse(typed, &us()).unwrap();
            assert_eq!(Phone::parse(phone.e164(), &us()).unwrap().e164(), phone.e164());
        }
    }

    #[test]
    fn phones_normalize_to_e164() {
        assert_eq!(Phone::parse("+1 415 555 0123", &us()).unwrap().e164(), "+14155550123");
        assert_eq!(Phone::parse("(415) 555-0123", &us()).unwrap().e164(), "+14155550123");
        assert_eq!(Phone::parse("415.555.0123", &us()).unwrap().e164(), "+14155550123");
        assert_eq!(
            Phone::parse("098765 43210", &PhoneRules::region("IN")).unwrap().e164(),
            "+919876543210"
        );
        assert_eq!(
            Phone::parse("0044 20 7946 0958", &us()).unwrap().e164(),
            "+442079460958"
        );
        assert_eq!(
            Phone::parse("\u{FF0B}\u{FF11} 415 555 0123", &us()).unwrap().e164(),
            "+14155550123",
            "full-width digits and plus"
        );
        assert!(Phone::parse("12", &us()).is_err());
        assert!(Phone::parse("not a phone", &us()).is_err());
        assert!(Phone::parse("+1 555 0123", &us()).is_err());
    }

    #[test]
    fn phone_input_is_digits_and_the_usual_punctuation_only() {
        for junk in [
            "\u{1F4DE}+1 201 555 0100 \u{1F600}",
            "call +1 201 555 0100",
            "+1 201 555 0100 ext 5",
            "+1\u{00A0}201\u{00A0}555\u{00A0}0100",
            "1+2015550100",
            "+1 201 555 0100#",
            "\u{0661}\u{0662}\u{0663}4567890",
        ] {
            assert!(Phone::parse(junk, &us()).is_err(), "{junk}");
        }
    }

    #[test]
    fn test_numbers_are_taken_as_written() {
        let mut list = BTreeMap::new();
        list.insert("+15555550100".to_string(), "123456".to_string());
        let rules = PhoneRules {
            region: "US",
            test_numbers: &list,
        };
        assert_eq!(Phone::parse("+1 555 555 0100", &rules).unwrap().e164(), "+15555550100");
        assert!(
            Phone::parse("+1 555 555 0101", &rules).is_err(),
            "an unlisted 555 number is no number"
        );
        assert!(Phone::parse("+1 555 555 0100", &us()).is_err());
        assert_eq!(Phone::test_number("+1 (555) 555-0100").as_deref(), Some("+15555550100"));
        assert_eq!(Phone::test_number("555 555 0100"), None);
    }

    #[test]
    fn numbers_know_their_country_and_type() {
        let (country, kind) = Phone::parse("+44 909 876 5432", &us()).unwrap().facts().unwrap();
        assert_eq!(country.as_deref(), Some("GB"));
        assert_eq!(kind, phonenumber::Type::PremiumRate);
        let (country, kind) = Phone::parse("+1 201 555 0123", &us()).unwrap().facts().unwrap();
        assert_eq!(country.as_deref(), Some("US"));
        assert_ne!(kind, phonenumber::Type::PremiumRate);
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
    fn a_domain_has_one_spelling_whatever_the_form_it_was_typed_in() {
        let idn = Email::parse("bomb@b\u{00FC}cher.example").unwrap();
        for same in [
            "bomb@xn--bcher-kva.example",
            "bomb@XN--BCHER-KVA.example",
            "bomb@B\u{00DC}CHER.example",
        ] {
            assert_eq!(Email::parse(same).unwrap().key(), idn.key(), "{same}");
        }
        assert_eq!(idn.address(), "bomb@b\u{00FC}cher.example");
        // Full-width letters and dots (as some keyboards type them) are the ASCII domain.
        let plain = Email::parse("victim@example.com").unwrap();
        for same in [
            "victim@\u{FF45}xample.com",
            "victim@e\u{FF58}ample.com",
            "victim@\u{FF45}\u{FF58}ample.com",
            "victim@EXAMPLE.\u{FF43}\u{FF4F}\u{FF4D}",
            "victim@example\u{3002}com",
        ] {
            let e = Email::parse(same).unwrap_or_else(|e| panic!("{same}: {e}"));
            assert_eq!((e.key(), e.address()), (plain.key(), plain.address()), "{same}");
        }
        // A character UTS #46 ignores (ZERO WIDTH SPACE) is no other domain either.
        assert_eq!(Email::parse("a@x\u{200B}y.com").unwrap().key(), "a@xy.com");
        for bad in [
            "a@xn--.example",
            "a@xn--a-ecp.ru\u{FFFD}",
            "a@exa_mple.com",
            "a@-x.com",
            "a@ex!ample.com",
            "a@x-.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        // Look-alike letters written in punycode are refused as written plainly.
        for spoof in ["z5@xn--bm-gpa.com", "z5@xn--fa-hia.de"] {
            assert!(Email::parse(spoof).is_err(), "{spoof}");
        }
        // Hyphens inside a label, in its third and fourth places too.
        for fine in ["u1@ab--cd.example", "u2@r3---sn-x.example"] {
            assert!(Email::parse(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn exactly_one_identifier() {
        assert!(Identifier::from_params(None, None, &us()).is_err());
        assert!(Identifier::from_params(Some("+14155550123"), Some("a@b.co"), &us()).is_err());
        assert_eq!(
            Identifier::from_params(None, Some("a@b.co"), &us()).unwrap().channel(),
            "email"
        );
    }
}
