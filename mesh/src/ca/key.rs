//! The CA's signing keys.

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};

use crate::MeshError;
use crate::identity::{KeyAlgorithm, derive_key};
use crate::key_source::KeySource;

/// A CA signing key. Ed25519 signatures are deterministic already; P-256
/// signs with RFC 6979 nonces (not ring's random ones), so one seed gives
/// byte-identical certificates with either algorithm.
pub enum CaKey {
    /// Ed25519, through ring.
    Ed25519(KeyPair),
    /// ECDSA P-256 with SHA-256.
    P256 {
        /// The signer.
        signing: p256::ecdsa::SigningKey,
        /// The uncompressed public point.
        public: Vec<u8>,
    },
}

impl CaKey {
    /// The key `algorithm` draws from `source`, and its PKCS#8 form.
    pub fn derive(
        algorithm: KeyAlgorithm,
        source: impl Into<KeySource>,
    ) -> Result<(Self, Vec<u8>), MeshError> {
        let (key, pkcs8) = derive_key(algorithm, source)?;
        let pkcs8 = pkcs8.secret_pkcs8_der().to_vec();
        Ok((Self::from_pkcs8(algorithm, &pkcs8, key)?, pkcs8))
    }

    fn from_pkcs8(algorithm: KeyAlgorithm, pkcs8: &[u8], key: KeyPair) -> Result<Self, MeshError> {
        Ok(match algorithm {
            KeyAlgorithm::Ed25519 => CaKey::Ed25519(key),
            KeyAlgorithm::EcdsaP256 => {
                use p256::pkcs8::DecodePrivateKey;
                let signing =
                    p256::ecdsa::SigningKey::from_pkcs8_der(pkcs8).map_err(MeshError::cert)?;
                let public = signing
                    .verifying_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec();
                CaKey::P256 { signing, public }
            }
        })
    }

    /// Loads a persisted PKCS#8 key.
    pub(super) fn load(algorithm: KeyAlgorithm, pkcs8: &[u8]) -> Result<Self, MeshError> {
        let alg = match algorithm {
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        };
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8);
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&der, alg).map_err(MeshError::cert)?;
        Self::from_pkcs8(algorithm, pkcs8, key)
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::Ed25519(key) => key.der_bytes(),
            CaKey::P256 { public, .. } => public,
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            CaKey::Ed25519(key) => key.algorithm(),
            CaKey::P256 { .. } => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            CaKey::Ed25519(key) => key.sign(msg),
            CaKey::P256 { signing, .. } => {
                use p256::ecdsa::signature::Signer;
                let signature: p256::ecdsa::Signature = signing.sign(msg);
                Ok(signature.to_der().as_bytes().to_vec())
            }
        }
    }
}
