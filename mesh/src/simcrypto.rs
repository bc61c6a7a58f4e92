//! The simulation's rustls `CryptoProvider`: every random byte TLS uses
//! comes from the seed tree, so a replay sends exactly the same bytes.
//!
//! Stock ring draws the X25519 ephemeral secret and the handshake randoms
//! from the OS, and signs ECDSA with random nonces, so TLS bytes differ on
//! every run even when the event timeline does not (notes/stack.md). This
//! provider swaps exactly those three sources:
//! * `secure_random`: a ChaCha20 stream seeded from the host's seed node
//!   (client/server randoms, session ids);
//! * one key-exchange group, X25519 via `x25519-dalek`, whose secret is
//!   drawn from the same stream;
//! * P-256 private keys sign with RFC 6979 deterministic nonces
//!   (Ed25519 signatures are deterministic already and stay on ring).
//!
//! Cipher suites and signature verification are ring's, unchanged.
//!
//! **Never use this outside the simulation**: its "secrets" are a function
//! of the run seed. [`crate::tls::MeshTls::for_host`] picks it only when the
//! host's clock says it is simulated; production keeps the stock provider.

use std::sync::{Arc, Mutex};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, SharedSecret,
    SupportedKxGroup,
};
use rustls::sign::{Signer, SigningKey};
use rustls::{Error, NamedGroup, PeerMisbehaved, SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::PrivateKeyDer;
use seam::Seed;

/// The seeded byte stream every random draw of one host's TLS comes from.
#[derive(Debug)]
struct SeededRandom(Mutex<ChaCha20Rng>);

impl SeededRandom {
    fn draw(&self, buf: &mut [u8]) {
        self.0.lock().expect("tls rng poisoned").fill_bytes(buf);
    }
}

impl SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        self.draw(buf);
        Ok(())
    }
}

/// X25519 with the secret drawn from the seeded stream.
#[derive(Debug)]
struct SeededX25519(&'static SeededRandom);

impl SupportedKxGroup for SeededX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut secret = [0u8; 32];
        self.0.draw(&mut secret);
        let secret = x25519_dalek::StaticSecret::from(secret);
        let public = x25519_dalek::PublicKey::from(&secret);
        Ok(Box::new(X25519Exchange {
            secret,
            public: public.to_bytes(),
        }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

struct X25519Exchange {
    secret: x25519_dalek::StaticSecret,
    public: [u8; 32],
}

impl ActiveKeyExchange for X25519Exchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; 32] = peer_pub_key
            .try_into()
            .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        // A low-order peer point gives an all-zero secret (RFC 7748 §6.1).
        if !shared.was_contributory() {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// Loads P-256 keys as RFC 6979 signers and everything else through ring.
#[derive(Debug)]
struct DeterministicKeys;

impl KeyProvider for DeterministicKeys {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, Error> {
        use p256::pkcs8::DecodePrivateKey;
        if let PrivateKeyDer::Pkcs8(pkcs8) = &key_der
            && let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_der(pkcs8.secret_pkcs8_der())
        {
            return Ok(Arc::new(P256Key(key)));
        }
        rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key_der)
    }
}

/// A P-256 key whose signatures are a function of key and message.
#[derive(Clone)]
struct P256Key(p256::ecdsa::SigningKey);

impl std::fmt::Debug for P256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P256Key")
    }
}

impl SigningKey for P256Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(self.clone()) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl Signer for P256Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        use p256::ecdsa::signature::Signer as _;
        let signature: p256::ecdsa::Signature = self.0.sign(message);
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// A provider whose randomness is the stream of `seed`.
///
/// rustls wants `&'static` randomness and key-exchange groups, so the two
/// small objects of each provider are leaked: one per `MeshTls`, i.e. one
/// per simulated host start (bytes, not a growth per request).
pub fn provider(seed: Seed) -> CryptoProvider {
    let mut key = [0u8; 32];
    key.copy_from_slice(&seed.child("tls-random").bytes32());
    let random: &'static SeededRandom = Box::leak(Box::new(SeededRandom(Mutex::new(
        ChaCha20Rng::from_seed(key),
    ))));
    let x25519: &'static SeededX25519 = Box::leak(Box::new(SeededX25519(random)));
    let stock = rustls::crypto::ring::default_provider();
    CryptoProvider {
        cipher_suites: stock.cipher_suites,
        kx_groups: vec![x25519],
        signature_verification_algorithms: stock.signature_verification_algorithms,
        secure_random: random,
        key_provider: &DeterministicKeys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_and_the_key_share_are_functions_of_the_seed() {
        let share = |seed: u64| {
            let provider = provider(Seed::new(seed));
            let mut random = [0u8; 16];
            provider.secure_random.fill(&mut random).unwrap();
            let kx = provider.kx_groups[0].start().unwrap();
            (random, kx.pub_key().to_vec())
        };
        assert_eq!(share(1), share(1));
        assert_ne!(share(1), share(2));
    }

    #[test]
    fn seeded_x25519_agrees_with_itself() {
        let a = provider(Seed::new(1)).kx_groups[0].start().unwrap();
        let b = provider(Seed::new(2)).kx_groups[0].start().unwrap();
        let b_pub = b.pub_key().to_vec();
        let a_pub = a.pub_key().to_vec();
        let ab = a.complete(&b_pub).unwrap();
        let ba = b.complete(&a_pub).unwrap();
        assert_eq!(ab.secret_bytes(), ba.secret_bytes());
        let c = provider(Seed::new(3)).kx_groups[0].start().unwrap();
        assert!(c.complete(&[0u8; 32]).is_err(), "low-order point refused");
    }

    #[test]
    fn p256_signatures_are_deterministic() {
        let (_, pkcs8) =
            crate::identity::derive_key(crate::identity::KeyAlgorithm::EcdsaP256, Seed::new(5))
                .unwrap();
        let key = DeterministicKeys
            .load_private_key(PrivateKeyDer::Pkcs8(pkcs8))
            .unwrap();
        let signer = key
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
            .unwrap();
        assert_eq!(signer.sign(b"m").unwrap(), signer.sign(b"m").unwrap());
    }
}
