//! Key material that verifies token signatures: a PEM public key (RSA, EC,
//! Ed25519) and the keys of a JWKS document, each with the algorithms it
//! may verify. HMAC secrets are kept apart (see `token`), so that a
//! public key can never be used as an HMAC secret ("alg confusion").

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The RSA signature algorithms (PKCS#1 v1.5 and PSS).
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// One public key and what it verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    /// The JWK's `kid`; `None` for a PEM file.
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

impl VerifyingKey {
    pub fn accepts(&self, algorithm: Algorithm) -> bool {
        self.algorithms.contains(&algorithm)
    }

    /// A PEM public key: RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`), EC (P-256
    /// or P-384) or Ed25519.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let key = |key, algorithms: &[Algorithm]| Self {
            kid: None,
            key,
            algorithms: algorithms.to_vec(),
        };
        if let Ok(rsa) = DecodingKey::from_rsa_pem(pem) {
            return Ok(key(rsa, &RSA_ALGORITHMS));
        }
        if let Ok(ec) = DecodingKey::from_ec_pem(pem) {
            // The curve decides between the two; a mismatch fails to verify.
            return Ok(key(ec, &[Algorithm::ES256, Algorithm::ES384]));
        }
        if let Ok(ed) = DecodingKey::from_ed_pem(pem) {
            return Ok(key(ed, &[Algorithm::EdDSA]));
        }
        Err("not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".to_owned())
    }

    /// A JWK, or `None` when it can't verify signatures here (an encryption
    /// key, a symmetric key, an unsupported curve).
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            return None;
        }
        let by_type: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
            AlgorithmParameters::EllipticCurve(params) => match params.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            // Symmetric keys don't belong in a published key set; secrets
            // come from auth.jwt.secret.
            _ => return None,
        };
        let algorithms = match jwk.common.key_algorithm {
            None => by_type,
            Some(named) => {
                let named = match named {
                    KeyAlgorithm::RS256 => Algorithm::RS256,
                    KeyAlgorithm::RS384 => Algorithm::RS384,
                    KeyAlgorithm::RS512 => Algorithm::RS512,
                    KeyAlgorithm::PS256 => Algorithm::PS256,
                    KeyAlgorithm::PS384 => Algorithm::PS384,
                    KeyAlgorithm::PS512 => Algorithm::PS512,
                    KeyAlgorithm::ES256 => Algorithm::ES256,
                    KeyAlgorithm::ES384 => Algorithm::ES384,
                    KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                    _ => return None,
                };
                // `alg` narrows what the key type allows; it never widens it.
                if !by_type.contains(&named) {
                    return None;
                }
                vec![named]
            }
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self {
            kid: jwk.common.key_id.clone(),
            key,
            algorithms,
        })
    }
}

/// The usable keys of a JWKS document.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<VerifyingKey>,
    /// Keys of the document that can't verify signatures here.
    pub skipped: usize,
}

/// Most keys read from one JWKS document: identity providers publish a
/// handful (current, next, previous); thousands would be a mistake or abuse.
const JWKS_MAX_KEYS: usize = 64;

impl KeySet {
    /// Parses `{"keys": [...]}`. A key this hub can't use is skipped (and
    /// counted) rather than failing the whole set: providers publish
    /// encryption keys and new key types beside the signing keys.
    pub fn from_jwks(json: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_slice(json)
            .map_err(|error| format!("not a JWKS document ({{\"keys\": [...]}}): {error}"))?;
        if document.keys.len() > JWKS_MAX_KEYS {
            return Err(format!(
                "{} keys, more than the {JWKS_MAX_KEYS} a key set may hold",
                document.keys.len()
            ));
        }
        let mut set = Self::default();
        for value in document.keys {
            match serde_json::from_value::<Jwk>(value)
                .ok()
                .as_ref()
                .and_then(VerifyingKey::from_jwk)
            {
                Some(key) => set.keys.push(key),
                None => set.skipped += 1,
            }
        }
        if set.keys.is_empty() {
            return Err(format!(
                "no usable signing key (RSA, EC P-256/P-384, Ed25519) among {} keys",
                set.skipped
            ));
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_set_keeps_the_signing_keys_it_can_use_and_counts_the_rest() {
        let set = KeySet::from_jwks(
            br#"{"keys": [
                {"kty": "EC", "crv": "P-256", "kid": "ec",
                 "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                 "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
                {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "for-encryption",
                 "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                 "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
                {"kty": "oct", "k": "c2VjcmV0", "kid": "symmetric"},
                {"kty": "EC", "crv": "P-256", "alg": "RS256", "kid": "alg-widens",
                 "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                 "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
                {"kty": "future-type", "kid": "unknown"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid.as_deref(), Some("ec"));
        assert_eq!(set.keys[0].algorithms, [Algorithm::ES256]);
        assert_eq!(set.skipped, 4);
    }

    #[test]
    fn a_key_set_without_usable_keys_or_that_is_not_one_is_refused() {
        assert!(KeySet::from_jwks(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
        assert!(KeySet::from_jwks(br#"{"kty": "RSA"}"#).is_err());
        assert!(KeySet::from_jwks(b"not json").is_err());
    }

    #[test]
    fn a_pem_file_says_which_algorithms_it_verifies() {
        assert!(
            VerifyingKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
        assert!(VerifyingKey::from_pem(b"").is_err());
    }
}
