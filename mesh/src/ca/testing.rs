//! Helpers the CA's unit tests share.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, SanType};
use seam::Seed;

use super::{Authority, CaMaterial};
use crate::identity::{CertInfo, KeyAlgorithm, SpiffeId, certificate_request, derive_key};

pub(super) fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

pub(super) fn id(sa: &str) -> SpiffeId {
    SpiffeId::new("test.meshsim", "rec", sa).unwrap()
}

pub(super) fn authority(algorithm: KeyAlgorithm) -> Authority {
    let material =
        CaMaterial::generate_with(algorithm, "test.meshsim", Seed::new(1), now()).unwrap();
    Authority::new(material, Duration::from_secs(60), BTreeMap::new())
}

pub(super) fn csr_with_uris(uris: &[String]) -> String {
    let (key, _) = derive_key(KeyAlgorithm::Ed25519, Seed::new(9)).unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI(u.clone().try_into().unwrap()))
        .collect();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

pub(super) fn issue(ca: &mut Authority, sa: &str) -> CertInfo {
    let (key, _) = derive_key(KeyAlgorithm::Ed25519, Seed::new(4)).unwrap();
    let csr = certificate_request(&id(sa), &key).unwrap();
    CertInfo::parse(&ca.sign(&csr, &id(sa), now()).unwrap()[0]).unwrap()
}
