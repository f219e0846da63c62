//! Which phone numbers may be sent an SMS: `abuse.allowed_countries` and
//! `abuse.block_premium_numbers`, decided from what `phonenumber` knows of
//! the number, before anything is counted or sent.

use phonenumber::Type;

use crate::config::AbuseSettings;
use crate::domain::Phone;
use crate::otp::{OtpError, Refusal};

/// Refuses numbers of a country not allowed, and premium-rate, shared-cost,
/// UAN and unknown-type numbers when they are blocked. Returns the number's
/// country for the per-country cap.
pub fn check_number(abuse: &AbuseSettings, phone: &Phone) -> Result<String, OtpError> {
    let (country, kind) = phone.facts().unwrap_or((None, Type::Unknown));
    let country = country.unwrap_or_else(|| "ZZ".into());
    if !abuse.allowed_countries.is_empty() && !abuse.allowed_countries.iter().any(|c| c.eq_ignore_ascii_case(&country))
    {
        return Err(OtpError::Refused(Refusal::Country(country)));
    }
    if abuse.block_premium_numbers {
        let blocked = match kind {
            Type::PremiumRate => Some("premium-rate"),
            Type::SharedCost => Some("shared-cost"),
            Type::Uan => Some("UAN (company)"),
            Type::Unknown => Some("unknown-type"),
            _ => None,
        };
        if let Some(kind) = blocked {
            return Err(OtpError::Refused(Refusal::NumberType(kind)));
        }
    }
    Ok(country)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PhoneRules;

    fn phone(text: &str) -> Phone {
        Phone::parse(text, &PhoneRules::region("US")).unwrap()
    }

    #[test]
    fn premium_shared_cost_and_uan_numbers_are_refused_by_default() {
        let abuse = AbuseSettings::default();
        for number in ["+44 909 876 5432", "+44 845 464 0000", "+44 55 1234 5678"] {
            let err = check_number(&abuse, &phone(number)).unwrap_err();
            assert!(
                matches!(err, OtpError::Refused(Refusal::NumberType(_))),
                "{number}: {err:?}"
            );
        }
        assert_eq!(check_number(&abuse, &phone("+44 7400 123456")).unwrap(), "GB");
        let open = AbuseSettings {
            block_premium_numbers: false,
            ..Default::default()
        };
        assert!(check_number(&open, &phone("+44 909 876 5432")).is_ok());
    }

    #[test]
    fn only_allowed_countries_get_sms() {
        let abuse = AbuseSettings {
            allowed_countries: vec!["us".into(), "CA".into()],
            ..Default::default()
        };
        assert_eq!(check_number(&abuse, &phone("+1 201 555 0123")).unwrap(), "US");
        let err = check_number(&abuse, &phone("+44 7400 123456")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "codes are not sent to phone numbers of this country (GB)"
        );
    }
}
