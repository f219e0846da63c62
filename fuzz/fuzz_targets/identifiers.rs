//! Phone numbers and email addresses as people type them.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sesame::domain::{Email, Phone, PhoneRules};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let test_numbers = BTreeMap::from([("+15555550100".to_string(), "123456".to_string())]);
    let rules = PhoneRules {
        region: "US",
        test_numbers: &test_numbers,
    };
    if let Ok(phone) = Phone::parse(text, &rules) {
        // What parses is E.164, and parses again to itself.
        let again = Phone::parse(phone.e164(), &rules).expect("an E.164 number parses");
        assert_eq!(again.e164(), phone.e164());
    }
    if let Ok(email) = Email::parse(text) {
        let again = Email::parse(email.address()).expect("a stored address parses");
        assert_eq!(again.key(), email.key());
    }
    let _ = sesame::domain::parse_identifier(text, &rules);
});
