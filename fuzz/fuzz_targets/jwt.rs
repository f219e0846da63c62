//! Bearer tokens: what arrives at userinfo, introspection and the admin API
//! is checked against the published keys; nothing unsigned passes.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sesame::jose::Keyring;

fn ring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| Keyring::generated().expect("keys"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        assert!(ring().verify(token).is_none(), "a token nobody signed was accepted");
    }
});
