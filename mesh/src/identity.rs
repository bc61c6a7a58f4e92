//! Workload identity: SPIFFE IDs, keys derived from the seed, CSRs, and what
//! the mesh reads back out of a certificate.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::MeshError;
use crate::key_source::KeySource;

/// `spiffe://<trust-domain>/ns/<ns>/sa/<service-account>`.
///
/// Held as the whole ID, written once, and where its parts lie in it:
/// every request's telemetry labels its peer with the ID, and every
/// balanced request clones its endpoint's; both now cost a reference count,
/// where three strings were copied or formatted. Equality and hashing are
/// the ID's (the parts contain no `/`, so the ID determines them); order is
/// the parts', trust domain first, as it was.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    uri: Arc<str>,
    /// End of the trust domain, start and end of the namespace, start of
    /// the service account (which runs to the end).
    trust_domain_end: usize,
    namespace_at: (usize, usize),
    service_account_at: usize,
}

const SCHEME: &str = "spiffe://";

/// Marks the DNS form of an identity, `<sa>.<ns>.identity.<trust-domain>`.
const DNS_MARKER: &str = "identity";

impl SpiffeId {
    /// Builds an identity; every part must be a non-empty DNS-safe label.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, MeshError> {
        let trust_domain = trust_domain.to_ascii_lowercase();
        let trust_domain_end = SCHEME.len() + trust_domain.len();
        let namespace_start = trust_domain_end + "/ns/".len();
        let namespace_end = namespace_start + namespace.len();
        let id = SpiffeId {
            uri: format!("{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}").into(),
            trust_domain_end,
            namespace_at: (namespace_start, namespace_end),
            service_account_at: namespace_end + "/sa/".len(),
        };
        let labels_ok = [namespace, service_account]
            .iter()
            .all(|part| is_label(part))
            && trust_domain.split('.').all(is_label);
        if labels_ok {
            Ok(id)
        } else {
            Err(MeshError::BadIdentity(id.to_string()))
        }
    }

    /// The whole ID, shared: `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn uri(&self) -> &Arc<str> {
        &self.uri
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.uri[SCHEME.len()..self.trust_domain_end]
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.uri[self.namespace_at.0..self.namespace_at.1]
    }

    /// The service account (our service name).
    pub fn service_account(&self) -> &str {
        &self.uri[self.service_account_at..]
    }

    /// The DNS name that stands for this identity in TLS `ServerName`s.
    ///
    /// webpki checks DNS SANs but not URI SANs, so every leaf carries both,
    /// and the client names the server by the DNS form of the identity that
    /// discovery says it should have.
    pub fn dns_name(&self) -> String {
        format!(
            "{}.{}.{DNS_MARKER}.{}",
            self.service_account(),
            self.namespace(),
            self.trust_domain()
        )
    }

    /// The inverse of [`SpiffeId::dns_name`].
    pub fn from_dns_name(name: &str) -> Result<Self, MeshError> {
        let bad = || MeshError::BadIdentity(name.to_owned());
        let mut parts = name.splitn(4, '.');
        let (sa, ns, marker, td) = (parts.next(), parts.next(), parts.next(), parts.next());
        match (sa, ns, marker, td) {
            (Some(sa), Some(ns), Some(DNS_MARKER), Some(td)) => {
                SpiffeId::new(td, ns, sa).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }
}

fn is_label(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 63
        && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl SpiffeId {
    fn parts(&self) -> (&str, &str, &str) {
        (
            self.trust_domain(),
            self.namespace(),
            self.service_account(),
        )
    }
}

impl Ord for SpiffeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl PartialOrd for SpiffeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// As the derived form printed it when the parts were fields.
impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeId")
            .field("trust_domain", &self.trust_domain())
            .field("namespace", &self.namespace())
            .field("service_account", &self.service_account())
            .finish()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl FromStr for SpiffeId {
    type Err = MeshError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MeshError::BadIdentity(s.to_owned());
        let rest = s.strip_prefix("spiffe://").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] => SpiffeId::new(td, ns, sa).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = MeshError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> String {
        id.to_string()
    }
}

/// PKCS#8 v1 prefix for an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An Ed25519 key derived from a seed node, so one run seed fixes every key
/// (and, because Ed25519 signatures are deterministic, every certificate).
/// From [`KeySource::Os`], the key is fresh OS randomness instead.
pub fn ed25519_key(
    source: impl Into<KeySource>,
) -> Result<(KeyPair, PrivatePkcs8KeyDer<'static>), MeshError> {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&source.into().bytes32()?);
    let pkcs8 = PrivatePkcs8KeyDer::from(der);
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(MeshError::cert)?;
    Ok((key, pkcs8))
}

/// The signature algorithm of CA and workload keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAlgorithm {
    /// Ed25519 (the default: small, fast, deterministic signatures).
    #[default]
    Ed25519,
    /// ECDSA over P-256 with SHA-256 (what most enterprise PKI requires).
    EcdsaP256,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::EcdsaP256 => "ecdsa_p256",
        })
    }
}

/// A P-256 secret scalar derived from a seed node: the first candidate
/// `seed/p256/<i>` that is a valid scalar (all but ~2^-32 of them are).
fn p256_secret(source: KeySource) -> Result<p256::SecretKey, MeshError> {
    for i in 0u32.. {
        let bytes = source.child("p256").child(&i.to_string()).bytes32()?;
        if let Ok(secret) = p256::SecretKey::from_bytes(&bytes.into()) {
            return Ok(secret);
        }
    }
    unreachable!("a valid scalar within a few draws")
}

/// A key of `algorithm` drawn from `source`: derived from a seed node, or
/// fresh from the OS (PKCS#8 v1 for Ed25519, with the public key for P-256,
/// as ring wants it).
pub fn derive_key(
    algorithm: KeyAlgorithm,
    source: impl Into<KeySource>,
) -> Result<(KeyPair, PrivatePkcs8KeyDer<'static>), MeshError> {
    let source = source.into();
    match algorithm {
        KeyAlgorithm::Ed25519 => ed25519_key(source),
        KeyAlgorithm::EcdsaP256 => {
            use p256::pkcs8::EncodePrivateKey;
            let der = p256_secret(source)?
                .to_pkcs8_der()
                .map_err(MeshError::cert)?;
            let pkcs8 = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
            let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(MeshError::cert)?;
            Ok((key, pkcs8))
        }
    }
}

/// A CSR for `id`, signed by `key`. The private key is not in it.
pub fn certificate_request(
    id: &SpiffeId,
    key: &impl rcgen::SigningKey,
) -> Result<String, MeshError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, id.service_account());
    params.subject_alt_names = vec![
        SanType::URI(id.to_string().try_into().map_err(MeshError::cert)?),
        SanType::DnsName(id.dns_name().try_into().map_err(MeshError::cert)?),
    ];
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(MeshError::cert)
}

/// What the mesh needs to know about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Every URI SAN.
    pub uris: Vec<String>,
    /// Serial number, hex.
    pub serial_hex: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &CertificateDer<'_>) -> Result<Self, MeshError> {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(MeshError::cert)?;
        let mut uris = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    uris.push((*uri).to_owned());
                }
            }
        }
        let to_time = |t: x509_parser::time::ASN1Time| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
        };
        Ok(CertInfo {
            uris,
            serial_hex: cert.raw_serial_as_string().replace(':', ""),
            not_before: to_time(cert.validity().not_before),
            not_after: to_time(cert.validity().not_after),
        })
    }

    /// The single SPIFFE ID in the certificate; several, or none, is an error.
    pub fn spiffe_id(&self) -> Result<SpiffeId, MeshError> {
        let spiffe: Vec<&String> = self
            .uris
            .iter()
            .filter(|u| u.starts_with("spiffe://"))
            .collect();
        match spiffe.as_slice() {
            [one] => one.parse(),
            _ => Err(MeshError::BadIdentity(format!(
                "{} SPIFFE URI SANs",
                spiffe.len()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam::Seed;

    #[test]
    fn spiffe_round_trips_through_text_and_dns() {
        let id: SpiffeId = "spiffe://rec.example/ns/prod/sa/registry".parse().unwrap();
        assert_eq!(id.to_string(), "spiffe://rec.example/ns/prod/sa/registry");
        assert_eq!(id.dns_name(), "registry.prod.identity.rec.example");
        assert_eq!(SpiffeId::from_dns_name(&id.dns_name()).unwrap(), id);
        assert_eq!(
            (id.trust_domain(), id.namespace(), id.service_account()),
            ("rec.example", "prod", "registry")
        );
        assert_eq!(&**id.uri(), "spiffe://rec.example/ns/prod/sa/registry");
        assert_eq!(
            format!("{id:?}"),
            r#"SpiffeId { trust_domain: "rec.example", namespace: "prod", service_account: "registry" }"#
        );
    }

    #[test]
    fn ids_order_by_their_parts_not_their_text() {
        let id = |text: &str| text.parse::<SpiffeId>().unwrap();
        // As text, "a.b/" sorts before "a/"; by trust domain, "a" is first.
        assert!(id("spiffe://a/ns/x/sa/y") < id("spiffe://a.b/ns/x/sa/y"));
        assert!(id("spiffe://a/ns/x/sa/z") < id("spiffe://a/ns/xx/sa/a"));
        assert_eq!(id("spiffe://A/ns/x/sa/y"), id("spiffe://a/ns/x/sa/y"));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "http://x/ns/a/sa/b",
            "spiffe://x/ns/a",
            "spiffe://x/ns//sa/b",
            "spiffe://x/ns/a/sa/b/c",
            "spiffe://x/ns/a b/sa/c",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad}");
        }
        assert!(SpiffeId::from_dns_name("registry.prod.other.rec.example").is_err());
    }

    #[test]
    fn keys_are_a_function_of_the_seed() {
        let (a, _) = ed25519_key(Seed::new(3)).unwrap();
        let (b, _) = ed25519_key(Seed::new(3)).unwrap();
        let (c, _) = ed25519_key(Seed::new(4)).unwrap();
        assert_eq!(a.public_key_raw(), b.public_key_raw());
        assert_ne!(a.public_key_raw(), c.public_key_raw());
    }

    #[test]
    fn p256_keys_are_a_function_of_the_seed_and_make_csrs() {
        let (a, _) = derive_key(KeyAlgorithm::EcdsaP256, Seed::new(3)).unwrap();
        let (b, _) = derive_key(KeyAlgorithm::EcdsaP256, Seed::new(3)).unwrap();
        assert_eq!(a.public_key_raw(), b.public_key_raw());
        assert_eq!(a.public_key_raw().len(), 65, "uncompressed P-256 point");
        let id: SpiffeId = "spiffe://t/ns/a/sa/b".parse().unwrap();
        assert!(
            certificate_request(&id, &a)
                .unwrap()
                .contains("CERTIFICATE REQUEST")
        );
    }
}
