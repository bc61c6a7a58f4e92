//! Issuing: which identity a caller may have, and the leaf certificate the
//! CA builds for it.
//!
//! The CA decides the identity, never the requester: it signs only the one
//! SPIFFE ID that the bootstrap token (first time) or the current client
//! certificate (renewal) proves, and refuses a CSR that asks for anything
//! else or for several URIs (Consul CVE-2022-40716). The leaf it builds
//! copies nothing from the CSR but the public key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use seam::Disk;

use super::material::{CaMaterial, SigningCert};
use super::{LEAF_BACKDATE, to_offset};
use crate::MeshError;
use crate::identity::{KeyAlgorithm, SpiffeId, derive_key};
use crate::key_source::KeySource;

pub(super) struct Generation {
    pub(super) number: u32,
    pub(super) parent: u32,
    pub(super) cert: SigningCert,
}

/// Signing policy and state.
pub struct Authority {
    pub(super) trust_domain: String,
    pub(super) algorithm: KeyAlgorithm,
    pub(super) leaf_ttl: Duration,
    pub(super) next_serial: u64,
    /// SHA-256 of a bootstrap token → the one identity it entitles. Keyed
    /// by hash so that a lookup's timing says nothing about the tokens.
    pub(super) tokens: BTreeMap<[u8; 32], SpiffeId>,
    /// Bootstrap tokens are refused after this instant (`None`: never).
    pub(super) tokens_expire: Option<SystemTime>,
    /// Revoked SPIFFE IDs and certificate serials (hex): never issued to.
    pub(super) revoked: std::collections::BTreeSet<String>,
    /// Roots in the bundle, oldest first.
    pub(super) roots: Vec<Generation>,
    /// Issuers, oldest first.
    pub(super) issuers: Vec<Generation>,
    /// The generation of the issuer that signs new leaves.
    pub(super) active_issuer: u32,
    /// Where later root and issuer keys come from.
    pub(super) seed: Option<KeySource>,
    /// Where the state is persisted after every change.
    pub(super) disk: Option<Arc<dyn Disk>>,
}

impl Authority {
    /// An authority that honours `tokens`.
    pub fn new(
        material: CaMaterial,
        leaf_ttl: Duration,
        tokens: BTreeMap<String, SpiffeId>,
    ) -> Self {
        Authority {
            trust_domain: material.trust_domain,
            algorithm: material.algorithm,
            leaf_ttl,
            next_serial: 1,
            tokens: tokens
                .into_iter()
                .map(|(token, id)| (token_digest(&token), id))
                .collect(),
            tokens_expire: None,
            revoked: Default::default(),
            roots: vec![Generation {
                number: 1,
                parent: 0,
                cert: material.root,
            }],
            issuers: vec![Generation {
                number: 1,
                parent: 1,
                cert: material.issuer,
            }],
            active_issuer: 1,
            seed: None,
            disk: None,
        }
    }

    /// Bootstrap tokens stop working at `at` (a real mesh's tokens expire,
    /// like a projected service-account token).
    pub fn expire_tokens_at(&mut self, at: SystemTime) {
        self.tokens_expire = Some(at);
    }

    /// The identity a bootstrap token proves at `now`.
    pub fn identity_for_token(&self, token: &str, now: SystemTime) -> Result<&SpiffeId, MeshError> {
        if self.tokens_expire.is_some_and(|end| now > end) {
            return Err(MeshError::Refused("bootstrap tokens have expired".into()));
        }
        self.tokens
            .get(&token_digest(token))
            .ok_or_else(|| MeshError::Refused("unknown bootstrap token".into()))
    }

    /// Replaces the revoked set (SPIFFE IDs and hex serials, as the control
    /// plane's config carries them).
    pub fn set_revoked(&mut self, revoked: std::collections::BTreeSet<String>) {
        self.revoked = revoked;
    }

    /// Whether `id` (or the certificate with serial `serial_hex`) is revoked.
    pub fn is_revoked(&self, id: &SpiffeId, serial_hex: Option<&str>) -> bool {
        self.revoked.contains(&id.to_string())
            || serial_hex.is_some_and(|serial| self.revoked.contains(serial))
    }

    /// The trust bundle: every root not yet retired.
    pub fn trust_bundle(&self) -> Vec<CertificateDer<'static>> {
        self.roots.iter().map(|g| g.cert.der.clone()).collect()
    }

    /// The next serial number the CA will use.
    pub fn next_serial(&self) -> u64 {
        self.next_serial
    }

    /// Generation numbers: the newest root and the active issuer.
    pub fn generations(&self) -> (u32, u32) {
        let root = self.roots.last().map_or(0, |g| g.number);
        (root, self.active_issuer)
    }

    pub(super) fn active(&self) -> &Generation {
        self.issuers
            .iter()
            .find(|g| g.number == self.active_issuer)
            .or_else(|| self.issuers.last())
            .expect("an authority always has an issuer")
    }

    /// Signs `csr_pem` for `entitled`, valid from `now` for the leaf TTL.
    /// Returns the chain: leaf, then issuer.
    pub fn sign(
        &mut self,
        csr_pem: &str,
        entitled: &SpiffeId,
        now: SystemTime,
    ) -> Result<Vec<CertificateDer<'static>>, MeshError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| MeshError::Refused(format!("unreadable CSR: {e}")))?;
        let requested: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .filter_map(|san| match san {
                SanType::URI(uri) => Some(uri.as_str().to_owned()),
                _ => None,
            })
            .collect();
        if requested.len() != 1 {
            return Err(MeshError::Refused(format!(
                "CSR carries {} URI SANs; exactly one is allowed",
                requested.len()
            )));
        }
        if requested[0] != entitled.to_string() {
            return Err(MeshError::Refused(format!(
                "CSR asks for {} but the caller is {entitled}",
                requested[0]
            )));
        }
        if self.is_revoked(entitled, None) {
            return Err(MeshError::Refused(format!("{entitled} is revoked")));
        }
        if entitled.trust_domain() != self.trust_domain {
            return Err(MeshError::Refused(format!(
                "{entitled} is outside trust domain {}",
                self.trust_domain
            )));
        }
        self.issue(&csr.public_key, entitled, now)
    }

    fn issue(
        &mut self,
        public_key: &impl rcgen::PublicKeyData,
        id: &SpiffeId,
        now: SystemTime,
    ) -> Result<Vec<CertificateDer<'static>>, MeshError> {
        let params = self.leaf_params(id, now)?;
        let active = self.active();
        let leaf = params
            .signed_by(public_key, &active.cert.issuer)
            .map_err(MeshError::cert)?;
        let chain = vec![leaf.der().clone(), active.cert.der.clone()];
        self.save()?;
        Ok(chain)
    }

    /// What an attacker holding the CA's keys could sign: any identity, no
    /// policy (tests of what the verifiers refuse on their own).
    #[cfg(test)]
    pub(crate) fn forge(
        &mut self,
        csr_pem: &str,
        id: &SpiffeId,
        now: SystemTime,
    ) -> Result<Vec<CertificateDer<'static>>, MeshError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(MeshError::cert)?;
        self.issue(&csr.public_key, id, now)
    }

    fn leaf_params(
        &mut self,
        id: &SpiffeId,
        now: SystemTime,
    ) -> Result<CertificateParams, MeshError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, id.service_account());
        params.subject_alt_names = vec![
            SanType::URI(id.to_string().try_into().map_err(MeshError::cert)?),
            SanType::DnsName(id.dns_name().try_into().map_err(MeshError::cert)?),
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_offset(now - LEAF_BACKDATE.min(self.leaf_ttl / 4));
        params.not_after = to_offset(now + self.leaf_ttl);
        params.serial_number = Some(SerialNumber::from_slice(&self.next_serial.to_be_bytes()));
        self.next_serial += 1;
        Ok(params)
    }

    /// Issues a leaf for the CA's own server identity, with a key from `source`.
    pub(super) fn self_certify(
        &mut self,
        id: &SpiffeId,
        source: KeySource,
        now: SystemTime,
    ) -> Result<
        (
            Vec<CertificateDer<'static>>,
            rustls_pki_types::PrivateKeyDer<'static>,
        ),
        MeshError,
    > {
        let (key, pkcs8) = derive_key(self.algorithm, source)?;
        let params = self.leaf_params(id, now)?;
        let active = self.active();
        let leaf = params
            .signed_by(&key, &active.cert.issuer)
            .map_err(MeshError::cert)?;
        let chain = vec![leaf.der().clone(), active.cert.der.clone()];
        self.save()?;
        Ok((chain, pkcs8.into()))
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::identity::KeyAlgorithm;

    #[test]
    fn a_csr_with_two_uri_sans_is_refused() {
        let mut ca = authority(KeyAlgorithm::Ed25519);
        let csr = csr_with_uris(&[id("registry").to_string(), id("gateway").to_string()]);
        let refused = ca.sign(&csr, &id("registry"), now()).unwrap_err();
        assert!(refused.to_string().contains("2 URI SANs"), "{refused}");
    }

    #[test]
    fn a_csr_for_another_identity_is_refused() {
        let mut ca = authority(KeyAlgorithm::Ed25519);
        let csr = csr_with_uris(&[id("gateway").to_string()]);
        let refused = ca.sign(&csr, &id("registry"), now()).unwrap_err();
        assert!(
            refused.to_string().contains("but the caller is"),
            "{refused}"
        );
        // The same CSR for the identity the caller proves is signed.
        assert!(ca.sign(&csr, &id("gateway"), now()).is_ok());
    }

    #[test]
    fn tokens_prove_one_identity_until_they_expire() {
        let material =
            crate::ca::CaMaterial::generate("test.meshsim", seam::Seed::new(1), now()).unwrap();
        let tokens = [("t0k3n".to_owned(), id("registry"))].into();
        let mut ca = super::Authority::new(material, std::time::Duration::from_secs(60), tokens);
        assert_eq!(
            ca.identity_for_token("t0k3n", now()).unwrap(),
            &id("registry")
        );
        assert!(ca.identity_for_token("t0k3m", now()).is_err());
        ca.expire_tokens_at(now());
        let late = now() + std::time::Duration::from_secs(1);
        let refused = ca.identity_for_token("t0k3n", late).unwrap_err();
        assert!(refused.to_string().contains("expired"), "{refused}");
    }

    #[test]
    fn a_revoked_identity_is_never_issued_to() {
        let mut ca = authority(KeyAlgorithm::Ed25519);
        ca.set_revoked([id("loadgen").to_string()].into());
        let csr = csr_with_uris(&[id("loadgen").to_string()]);
        let refused = ca.sign(&csr, &id("loadgen"), now()).unwrap_err();
        assert!(refused.to_string().contains("revoked"), "{refused}");
    }
}
