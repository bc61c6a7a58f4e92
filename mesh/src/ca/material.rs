//! Roots and issuers: the certificates that sign, and what an installer
//! provisions for a trust domain.

use std::time::SystemTime;

use crate::key_source::KeySource;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;

use super::key::CaKey;
use super::state::PersistedCert;
use super::{CA_CERT_LIFETIME, LEAF_BACKDATE, to_offset};
use crate::MeshError;
use crate::identity::KeyAlgorithm;

/// A CA key and its certificate.
pub struct SigningCert {
    pub(super) issuer: Issuer<'static, CaKey>,
    /// PKCS#8 of the key (persisted with the CA's state).
    pub(super) key_pkcs8: Vec<u8>,
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
}

impl SigningCert {
    pub(super) fn create(
        algorithm: KeyAlgorithm,
        source: KeySource,
        params: CertificateParams,
        parent: Option<&SigningCert>,
    ) -> Result<Self, MeshError> {
        let (key, key_pkcs8) = CaKey::derive(algorithm, source)?;
        let cert = match parent {
            Some(parent) => params.signed_by(&key, &parent.issuer),
            None => params.self_signed(&key),
        }
        .map_err(MeshError::cert)?;
        Ok(SigningCert {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            key_pkcs8,
        })
    }

    pub(super) fn load(
        algorithm: KeyAlgorithm,
        der: Vec<u8>,
        key_pkcs8: Vec<u8>,
    ) -> Result<Self, MeshError> {
        let der = CertificateDer::from(der);
        let key = CaKey::load(algorithm, &key_pkcs8)?;
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(MeshError::cert)?;
        Ok(SigningCert {
            issuer,
            key_pkcs8,
            der,
        })
    }

    pub(super) fn persisted(&self, generation: u32, parent: u32) -> PersistedCert {
        PersistedCert {
            generation,
            parent,
            der_hex: hex::encode(self.der.as_ref()),
            key_hex: hex::encode(&self.key_pkcs8),
        }
    }
}

/// The root and issuer of a trust domain: what an installer provisions.
pub struct CaMaterial {
    /// The trust domain.
    pub trust_domain: String,
    /// Key algorithm of the root, the issuer and the CA's own leaf.
    pub algorithm: KeyAlgorithm,
    /// The root (trust anchor).
    pub root: SigningCert,
    /// The intermediate that signs leaves.
    pub issuer: SigningCert,
}

fn ca_params(common_name: &str, path_len: Option<u8>, now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(path_len.map_or(
        BasicConstraints::Unconstrained,
        BasicConstraints::Constrained,
    ));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = to_offset(now - LEAF_BACKDATE);
    params.not_after = to_offset(now + CA_CERT_LIFETIME);
    params
}

/// Generation 1 uses the seed nodes `root` and `issuer` (as before issuer
/// rotation existed); later generations append their number.
fn generation_label(base: &str, generation: u32) -> String {
    if generation <= 1 {
        base.to_owned()
    } else {
        format!("{base}-{generation}")
    }
}

pub(super) fn new_root(
    trust_domain: &str,
    algorithm: KeyAlgorithm,
    source: KeySource,
    generation: u32,
    now: SystemTime,
) -> Result<SigningCert, MeshError> {
    let name = match generation {
        0 | 1 => format!("{trust_domain} root"),
        n => format!("{trust_domain} root {n}"),
    };
    let params = ca_params(&name, None, now);
    SigningCert::create(
        algorithm,
        source.child(&generation_label("root", generation)),
        params,
        None,
    )
}

pub(super) fn new_issuer(
    trust_domain: &str,
    algorithm: KeyAlgorithm,
    source: KeySource,
    generation: u32,
    root: &SigningCert,
    now: SystemTime,
) -> Result<SigningCert, MeshError> {
    let name = match generation {
        0 | 1 => format!("{trust_domain} issuer"),
        n => format!("{trust_domain} issuer {n}"),
    };
    let params = ca_params(&name, Some(0), now);
    SigningCert::create(
        algorithm,
        source.child(&generation_label("issuer", generation)),
        params,
        Some(root),
    )
}

impl CaMaterial {
    /// Creates an Ed25519 root and issuer, with keys from `source`.
    pub fn generate(
        trust_domain: &str,
        source: impl Into<KeySource>,
        now: SystemTime,
    ) -> Result<Self, MeshError> {
        Self::generate_with(KeyAlgorithm::Ed25519, trust_domain, source, now)
    }

    /// Creates a root and an issuer of `algorithm`, keys from `source`
    /// (derived from a seed node, or fresh from the OS).
    pub fn generate_with(
        algorithm: KeyAlgorithm,
        trust_domain: &str,
        source: impl Into<KeySource>,
        now: SystemTime,
    ) -> Result<Self, MeshError> {
        let source = source.into();
        let root = new_root(trust_domain, algorithm, source, 1, now)?;
        let issuer = new_issuer(trust_domain, algorithm, source, 1, &root, now)?;
        Ok(CaMaterial {
            trust_domain: trust_domain.to_owned(),
            algorithm,
            root,
            issuer,
        })
    }

    /// The trust bundle to give workloads.
    pub fn trust_bundle(&self) -> Vec<CertificateDer<'static>> {
        vec![self.root.der.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::identity::{KeyAlgorithm, certificate_request, derive_key};
    use seam::Seed;

    #[test]
    fn p256_certificates_replay_byte_for_byte() {
        let chain = || {
            let mut ca = authority(KeyAlgorithm::EcdsaP256);
            let (key, _) = derive_key(KeyAlgorithm::EcdsaP256, Seed::new(4)).unwrap();
            let csr = certificate_request(&id("registry"), &key).unwrap();
            (
                ca.trust_bundle(),
                ca.sign(&csr, &id("registry"), now()).unwrap(),
            )
        };
        assert_eq!(chain(), chain());
    }
}
