//! Randomness from the OS CSPRNG, digests of secrets, constant-time comparison.
//! Every code, secret and token Sesame issues is stored only as a digest.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the OS random number generator failed");
    buf
}

/// A URL-safe random token carrying `N * 8` bits of entropy.
pub fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// A uniformly random decimal code of `len` digits (rejection sampling, no modulo bias).
pub fn random_digits(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<32>() {
            // 250 = 25 * 10: accept 0..=249 so every digit is equally likely.
            if b < 250 && out.len() < len {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    out
}

/// A random identifier of `N * 8` bits in lower-case hex: safe to pass on a
/// command line (never starts with `-`) and in URLs.
pub fn random_id<const N: usize>() -> String {
    hex(&random_bytes::<N>())
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Constant-time equality of two byte strings (length may leak, content does not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A keyed digest (HMAC-SHA-256) under the installation's digest key, shared
/// by every node through the database. Low-entropy values such as six-digit
/// codes are only safe to store this way.
#[derive(Clone)]
pub struct Digester {
    key: [u8; 32],
}

impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digester([redacted])")
    }
}

impl Digester {
    pub fn new(key: [u8; 32]) -> Self {
        Digester { key }
    }

    /// Digest of `value` in the domain `purpose` (so a code can never match a token).
    pub fn digest(&self, purpose: &str, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_digits_have_the_requested_length_and_are_digits() {
        for len in [4, 6, 10] {
            let code = random_digits(len);
            assert_eq!(code.len(), len);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn random_ids_are_hex() {
        let id = random_id::<12>();
        assert_eq!(id.len(), 24);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn random_tokens_differ_and_carry_enough_bits() {
        let a = random_token::<32>();
        assert_ne!(a, random_token::<32>());
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn digests_depend_on_key_purpose_and_value() {
        let d1 = Digester::new([1; 32]);
        let d2 = Digester::new([2; 32]);
        assert_eq!(d1.digest("code", "123456"), d1.digest("code", "123456"));
        assert_ne!(d1.digest("code", "123456"), d2.digest("code", "123456"));
        assert_ne!(d1.digest("code", "123456"), d1.digest("token", "123456"));
        assert!(format!("{d1:?}").contains("redacted"));
    }
}
