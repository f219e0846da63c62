//! The `Authorization: Basic …` value of client authentication: any text
//! either decodes to an id and a secret or is refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((id, secret)) = sesame::oauth::client_auth::decode_basic(text) {
            // What decodes came from base64 of at least `id:secret`.
            assert!(3 * text.len() >= 4 * (id.len() + secret.len() + 1));
        }
    }
});
