//! Signing keys and JWTs (RFC 7515/7519) with josekit. Keys live in the
//! database so every node signs with the same current key; each node keeps a
//! `Keyring` in memory and reloads it periodically to pick up rotations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{anyhow, Context};
use josekit::jwk::alg::ec::EcCurve;
use josekit::jwk::alg::ed::EdCurve;
use josekit::jwk::Jwk;
use josekit::jws::{EdDSA, JwsHeader, JwsSigner, JwsVerifier, ES256, RS256};
use josekit::jwt::JwtPayload;
use serde_json::{Map, Value};
use sha2::Digest;

use crate::config::SigningAlg;
use crate::crypto;
use crate::store::keys::StoredKey;
use crate::store::Store;

/// What one node holds in memory: the current signer, verifiers for every
/// published key, the JWKS document ready to serve, and the tokens it has
/// already verified (resource servers introspect one token on every call).
pub struct Keyring {
    pub current_kid: String,
    pub alg: String,
    signer: Box<dyn JwsSigner>,
    verifiers: HashMap<String, Box<dyn JwsVerifier>>,
    pub jwks_json: actix_web::web::Bytes,
    kids: Vec<String>,
    verified: Mutex<HashMap<[u8; 32], Arc<VerifiedJws>>>,
}

/// A token whose signature checked out against one of the published keys.
#[derive(Debug)]
pub struct VerifiedJws {
    pub claims: Map<String, Value>,
    pub typ: Option<String>,
}

/// Verified tokens kept per keyring; past this the cache starts over (bounded memory).
const VERIFIED_CACHE: usize = 10_000;

impl Keyring {
    fn build(keys: &[StoredKey]) -> anyhow::Result<Keyring> {
        let current = keys.iter().find(|k| k.is_current).context("no current signing key")?;
        let mut verifiers = HashMap::new();
        let mut public = Vec::new();
        let mut signer = None;
        for key in keys {
            let private = Jwk::from_bytes(key.private_jwk.as_bytes())
                .with_context(|| format!("signing key {} is unreadable", key.kid))?;
            let mut pubkey = private.to_public_key()?;
            pubkey.set_key_id(&key.kid);
            pubkey.set_algorithm(&key.alg);
            pubkey.set_key_use("sig");
            let verifier: Box<dyn JwsVerifier> = match key.alg.as_str() {
                "ES256" => Box::new(ES256.verifier_from_jwk(&pubkey)?),
                "RS256" => Box::new(RS256.verifier_from_jwk(&pubkey)?),
                "EdDSA" => Box::new(EdDSA.verifier_from_jwk(&pubkey)?),
                other => return Err(anyhow!("signing key {} has unknown algorithm {other}", key.kid)),
            };
            if key.kid == current.kid {
                let s: Box<dyn JwsSigner> = match key.alg.as_str() {
                    "ES256" => Box::new(ES256.signer_from_jwk(&private)?),
                    "RS256" => Box::new(RS256.signer_from_jwk(&private)?),
                    _ => Box::new(EdDSA.signer_from_jwk(&private)?),
                };
                signer = Some(s);
            }
            verifiers.insert(key.kid.clone(), verifier);
            public.push(Value::Object(pubkey.as_ref().clone()));
        }
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": public }))?;
        Ok(Keyring {
            current_kid: current.kid.clone(),
            alg: current.alg.clone(),
            signer: signer.context("current key has no signer")?,
            verifiers,
            jwks_json: jwks.into(),
            kids: keys.iter().map(|k| k.kid.clone()).collect(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Signs `claims` as a compact JWS with `typ` and the current `kid` in the header.
    pub fn sign(&self, typ: &str, claims: Map<String, Value>) -> anyhow::Result<String> {
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(&self.current_kid);
        let payload = JwtPayload::from_map(claims)?;
        Ok(josekit::jwt::encode_with_signer(&payload, &header, &*self.signer)?)
    }

    /// Verifies the signature with the key named by `kid`; `None` for anything
    /// that is not a well-formed token signed by one of our published keys.
    /// A token verified before (same bytes, same key set) is not verified again.
    pub fn verify(&self, token: &str) -> Option<Arc<VerifiedJws>> {
        if token.len() > 8192 {
            return None;
        }
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.verified.lock().expect("verified cache").get(&key) {
            return Some(hit.clone());
        }
        let (payload, header) = josekit::jwt::decode_with_verifier_selector(token, |h| {
            Ok(h.key_id().and_then(|kid| self.verifiers.get(kid)).map(|v| &**v))
        })
        .ok()?;
        let verified = Arc::new(VerifiedJws {
            claims: payload.claims_set().clone(),
            typ: header.token_type().map(str::to_string),
        });
        let mut cache = self.verified.lock().expect("verified cache");
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(key, verified.clone());
        Some(verified)
    }
}

/// A new private key as a JWK (JSON) for `alg`, with a random `kid`.
pub fn generate_key(alg: SigningAlg) -> anyhow::Result<(String, String)> {
    let jwk = match alg {
        SigningAlg::ES256 => Jwk::generate_ec_key(EcCurve::P256)?,
        SigningAlg::RS256 => Jwk::generate_rsa_key(2048)?,
        SigningAlg::EdDSA => Jwk::generate_ed_key(EdCurve::Ed25519)?,
    };
    let kid = crypto::random_id::<8>();
    Ok((kid, serde_json::to_string(jwk.as_ref())?))
}

/// The keys one node signs and verifies with, reloaded from the store.
pub struct Keys {
    store: Store,
    ring: RwLock<Arc<Keyring>>,
}

impl Keys {
    /// Loads the published keys, creating the first key if no node has yet,
    /// and rotating to a new key when `alg` differs from the current key's.
    pub async fn load(store: Store, alg: SigningAlg, keep: Duration) -> anyhow::Result<Keys> {
        let (kid, jwk) = generate_key(alg)?;
        if store.insert_first_key(&kid, alg.as_str(), &jwk).await? {
            tracing::info!(kid = %kid, alg = alg.as_str(), "created the first signing key");
        }
        let mut keys = store.published_keys().await?;
        if keys
            .iter()
            .find(|k| k.is_current)
            .is_some_and(|k| k.alg != alg.as_str())
        {
            let (kid, jwk) = generate_key(alg)?;
            store
                .rotate_key(&kid, alg.as_str(), &jwk, keep.as_secs() as i64)
                .await?;
            tracing::info!(kid = %kid, alg = alg.as_str(), "tokens.signing_alg changed: rotated to a new signing key");
            keys = store.published_keys().await?;
        }
        let ring = Keyring::build(&keys)?;
        Ok(Keys {
            store,
            ring: RwLock::new(Arc::new(ring)),
        })
    }

    pub fn ring(&self) -> Arc<Keyring> {
        self.ring.read().expect("keyring lock").clone()
    }

    /// Re-reads the published keys (another node or `sesame keys rotate` may
    /// have rotated); the keyring, and its verified-token cache, is replaced
    /// only when the set of keys changed.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let keys = self.store.published_keys().await?;
        let kids: Vec<String> = keys.iter().map(|k| k.kid.clone()).collect();
        let current = keys.iter().find(|k| k.is_current).map(|k| k.kid.as_str());
        let ring = self.ring();
        if ring.kids == kids && current == Some(ring.current_kid.as_str()) {
            return Ok(());
        }
        let ring = Keyring::build(&keys)?;
        *self.ring.write().expect("keyring lock") = Arc::new(ring);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(alg: SigningAlg) -> StoredKey {
        let (kid, jwk) = generate_key(alg).unwrap();
        StoredKey {
            kid,
            alg: alg.as_str().into(),
            private_jwk: jwk,
            is_current: true,
            created_at: 0,
            retired_at: None,
            expires_at: None,
        }
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        for alg in [SigningAlg::ES256, SigningAlg::RS256, SigningAlg::EdDSA] {
            let ring = Keyring::build(&[stored(alg)]).unwrap();
            let mut claims = Map::new();
            claims.insert("sub".into(), "abc".into());
            let token = ring.sign("at+jwt", claims).unwrap();
            let verified = ring.verify(&token).expect("verifies");
            assert_eq!(verified.claims["sub"], "abc");
            assert_eq!(verified.typ.as_deref(), Some("at+jwt"));
            let (header, _) = token.split_once('.').unwrap();
            let header: Value = serde_json::from_slice(
                &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
            )
            .unwrap();
            assert_eq!(header["kid"], ring.current_kid.as_str());
            assert_eq!(header["alg"], alg.as_str());
        }
    }

    #[test]
    fn a_tampered_or_foreign_token_does_not_verify() {
        let ring = Keyring::build(&[stored(SigningAlg::ES256)]).unwrap();
        let other = Keyring::build(&[stored(SigningAlg::ES256)]).unwrap();
        let token = other.sign("at+jwt", Map::new()).unwrap();
        assert!(ring.verify(&token).is_none());
        let mine = ring.sign("at+jwt", Map::new()).unwrap();
        let at = mine.find('.').unwrap() + 2;
        let swap = if &mine[at..at + 1] == "A" { "B" } else { "A" };
        let tampered = format!("{}{}{}", &mine[..at], swap, &mine[at + 1..]);
        assert!(ring.verify(&mine).is_some());
        assert!(ring.verify(&mine).is_some(), "a second verification (cached) agrees");
        assert!(ring.verify(&tampered).is_none());
        assert!(ring.verify("not.a.jwt").is_none());
    }

    #[test]
    fn jwks_has_public_parts_only() {
        let ring = Keyring::build(&[stored(SigningAlg::ES256)]).unwrap();
        let jwks: Value = serde_json::from_slice(&ring.jwks_json).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kid"], ring.current_kid.as_str());
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none());
    }
}
