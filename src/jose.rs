//! Signing keys and JWTs (RFC 7515/7519) with josekit. Keys live in the
//! database so every node signs with the same current keys, one per
//! algorithm (ID tokens use the client's `id_token_signed_response_alg`,
//! access tokens `tokens.signing_alg`); each node keeps a `Keyring` in memory
//! and reloads it periodically to pick up rotations.

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

/// What one node holds in memory: the current signer of every algorithm,
/// verifiers for every published key, the JWKS document ready to serve, and
/// the tokens it has already verified (resource servers introspect one token
/// on every call).
pub struct Keyring {
    signers: HashMap<&'static str, Signer>,
    verifiers: HashMap<String, Box<dyn JwsVerifier>>,
    pub jwks_json: actix_web::web::Bytes,
    kids: Vec<String>,
    current: Vec<String>,
    verified: Mutex<HashMap<[u8; 32], Arc<VerifiedJws>>>,
}

/// A token whose signature checked out against one of the published keys.
#[derive(Debug)]
pub struct VerifiedJws {
    pub claims: Map<String, Value>,
    pub typ: Option<String>,
}

/// The current key of one algorithm.
struct Signer {
    kid: String,
    signer: Box<dyn JwsSigner>,
}

/// Verified tokens kept per keyring; past this the cache starts over (bounded memory).
const VERIFIED_CACHE: usize = 10_000;

impl Keyring {
    fn build(keys: &[StoredKey]) -> anyhow::Result<Keyring> {
        let mut verifiers = HashMap::new();
        let mut public = Vec::new();
        let mut signers = HashMap::new();
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
            if key.is_current {
                let alg = SigningAlg::parse(&key.alg).context("current key of an unknown algorithm")?;
                let signer: Box<dyn JwsSigner> = match alg {
                    SigningAlg::ES256 => Box::new(ES256.signer_from_jwk(&private)?),
                    SigningAlg::RS256 => Box::new(RS256.signer_from_jwk(&private)?),
                    SigningAlg::EdDSA => Box::new(EdDSA.signer_from_jwk(&private)?),
                };
                let kid = key.kid.clone();
                if signers.insert(alg.as_str(), Signer { kid, signer }).is_some() {
                    return Err(anyhow!("two current {} keys", key.alg));
                }
            }
            verifiers.insert(key.kid.clone(), verifier);
            public.push(Value::Object(pubkey.as_ref().clone()));
        }
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": public }))?;
        Ok(Keyring {
            signers,
            verifiers,
            jwks_json: jwks.into(),
            kids: keys.iter().map(|k| k.kid.clone()).collect(),
            current: current_kids(keys),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// A keyring of fresh keys, one current per algorithm, that no store
    /// holds (for fuzzing the verifier).
    #[doc(hidden)]
    pub fn generated() -> anyhow::Result<Keyring> {
        let keys = [SigningAlg::ES256, SigningAlg::RS256, SigningAlg::EdDSA]
            .into_iter()
            .map(|alg| {
                let (kid, private_jwk) = generate_key(alg)?;
                Ok(StoredKey {
                    kid,
                    alg: alg.as_str().to_string(),
                    private_jwk,
                    is_current: true,
                    created_at: 0,
                    retired_at: None,
                    expires_at: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Keyring::build(&keys)
    }

    /// The `kid` of the current key of `alg`.
    pub fn current_kid(&self, alg: SigningAlg) -> Option<&str> {
        self.signers.get(alg.as_str()).map(|s| s.kid.as_str())
    }

    /// Signs `claims` with the current key of `alg` as a compact JWS with
    /// `typ` and that key's `kid` in the header.
    pub fn sign(&self, typ: &str, alg: SigningAlg, claims: Map<String, Value>) -> anyhow::Result<String> {
        let current = self
            .signers
            .get(alg.as_str())
            .with_context(|| format!("no current {} key", alg.as_str()))?;
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(&current.kid);
        let payload = JwtPayload::from_map(claims)?;
        Ok(josekit::jwt::encode_with_signer(&payload, &header, &*current.signer)?)
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

/// The kids of the current keys, in a stable order (to notice a rotation).
fn current_kids(keys: &[StoredKey]) -> Vec<String> {
    let mut kids: Vec<String> = keys.iter().filter(|k| k.is_current).map(|k| k.kid.clone()).collect();
    kids.sort();
    kids
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

/// New current keys for every algorithm, as `sesame keys rotate` makes them:
/// the old ones stay published for `keep` (until the tokens they signed expire).
pub async fn rotate(store: &Store, keep: Duration) -> anyhow::Result<Vec<(String, SigningAlg)>> {
    let mut new = Vec::new();
    for alg in SigningAlg::ALL {
        let (kid, jwk) = generate_key(alg)?;
        new.push((kid, alg, jwk));
    }
    let rows: Vec<(&str, &str, &str)> = new
        .iter()
        .map(|(k, a, j)| (k.as_str(), a.as_str(), j.as_str()))
        .collect();
    store.rotate_keys(&rows, keep.as_secs() as i64).await?;
    Ok(new.into_iter().map(|(kid, alg, _)| (kid, alg)).collect())
}

/// The keys one node signs and verifies with, reloaded from the store.
pub struct Keys {
    store: Store,
    ring: RwLock<Arc<Keyring>>,
}

impl Keys {
    /// Loads the published keys, first creating a current key for every
    /// algorithm that has none yet (the first start, or a database from
    /// before keys per algorithm; the store's unique index keeps nodes that
    /// start together from adding two).
    pub async fn load(store: Store) -> anyhow::Result<Keys> {
        let keys = store.published_keys().await?;
        for alg in SigningAlg::ALL {
            if keys.iter().any(|k| k.is_current && k.alg == alg.as_str()) {
                continue;
            }
            let (kid, jwk) = generate_key(alg)?;
            if store.insert_first_key(&kid, alg.as_str(), &jwk).await? {
                tracing::info!(kid = %kid, alg = alg.as_str(), "created a signing key");
            }
        }
        let keys = store.published_keys().await?;
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
        let ring = self.ring();
        if ring.kids == kids && ring.current == current_kids(&keys) {
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
            let token = ring.sign("at+jwt", alg, claims).unwrap();
            let verified = ring.verify(&token).expect("verifies");
            assert_eq!(verified.claims["sub"], "abc");
            assert_eq!(verified.typ.as_deref(), Some("at+jwt"));
            let (header, _) = token.split_once('.').unwrap();
            let header: Value = serde_json::from_slice(
                &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
            )
            .unwrap();
            assert_eq!(header["kid"], ring.current_kid(alg).unwrap());
            assert_eq!(header["alg"], alg.as_str());
        }
    }

    #[test]
    fn a_tampered_or_foreign_token_does_not_verify() {
        let ring = Keyring::build(&[stored(SigningAlg::ES256)]).unwrap();
        let other = Keyring::build(&[stored(SigningAlg::ES256)]).unwrap();
        let token = other.sign("at+jwt", SigningAlg::ES256, Map::new()).unwrap();
        assert!(ring.verify(&token).is_none());
        let mine = ring.sign("at+jwt", SigningAlg::ES256, Map::new()).unwrap();
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
        assert_eq!(key["kid"], ring.current_kid(SigningAlg::ES256).unwrap());
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none());
    }
}
