//! The certificate authority: a root, an issuer under it, and leaves for
//! workloads, signed from CSRs sent over TLS.
//!
//! The CA decides the identity, never the requester: it signs only the one
//! SPIFFE ID that the bootstrap token (first time) or the current client
//! certificate (renewal) proves, and refuses a CSR that asks for anything
//! else or for several URIs (Consul CVE-2022-40716). The leaf it builds
//! copies nothing from the CSR but the public key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use seam::{HostEnv, Seed, Shutdown};

use crate::http::{Body, read_body, serve_connection, text};
use crate::identity::{CertInfo, SpiffeId, ed25519_key};
use crate::tls::{ClientAuth, MeshTls};
use crate::{MeshError, ports};

/// Largest CSR the CA reads.
const CSR_BYTES_MAX: usize = 16 * 1024;

/// How long roots and issuers live.
const CA_CERT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Leaves are backdated a little so a peer whose clock is slightly behind
/// does not reject a certificate that was just issued.
const LEAF_BACKDATE: Duration = Duration::from_secs(60);

fn to_offset(t: SystemTime) -> time::OffsetDateTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A CA key and its certificate.
pub struct SigningCert {
    issuer: Issuer<'static, KeyPair>,
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
}

/// The root and issuer of a trust domain: what an installer provisions.
pub struct CaMaterial {
    /// The trust domain.
    pub trust_domain: String,
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

impl CaMaterial {
    /// Creates a root and an issuer, with keys derived from `seed`.
    pub fn generate(trust_domain: &str, seed: Seed, now: SystemTime) -> Result<Self, MeshError> {
        let (root_key, _) = ed25519_key(seed.child("root"))?;
        let root_params = ca_params(&format!("{trust_domain} root"), None, now);
        let root_der = root_params
            .self_signed(&root_key)
            .map_err(MeshError::cert)?
            .der()
            .clone();
        let root = SigningCert {
            issuer: Issuer::new(root_params, root_key),
            der: root_der,
        };

        let (issuer_key, _) = ed25519_key(seed.child("issuer"))?;
        let issuer_params = ca_params(&format!("{trust_domain} issuer"), Some(0), now);
        let issuer_der = issuer_params
            .signed_by(&issuer_key, &root.issuer)
            .map_err(MeshError::cert)?
            .der()
            .clone();
        let issuer = SigningCert {
            issuer: Issuer::new(issuer_params, issuer_key),
            der: issuer_der,
        };
        Ok(CaMaterial {
            trust_domain: trust_domain.to_owned(),
            root,
            issuer,
        })
    }

    /// The trust bundle to give workloads.
    pub fn trust_bundle(&self) -> Vec<CertificateDer<'static>> {
        vec![self.root.der.clone()]
    }
}

/// Signing policy and state.
pub struct Authority {
    material: CaMaterial,
    leaf_ttl: Duration,
    next_serial: u64,
    /// Bootstrap token → the identity it entitles.
    tokens: BTreeMap<String, SpiffeId>,
}

impl Authority {
    /// An authority that honours `tokens`.
    pub fn new(
        material: CaMaterial,
        leaf_ttl: Duration,
        tokens: BTreeMap<String, SpiffeId>,
    ) -> Self {
        Authority {
            material,
            leaf_ttl,
            next_serial: 1,
            tokens,
        }
    }

    /// The identity a bootstrap token proves.
    pub fn identity_for_token(&self, token: &str) -> Option<&SpiffeId> {
        self.tokens.get(token)
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
        if entitled.trust_domain() != self.material.trust_domain {
            return Err(MeshError::Refused(format!(
                "{entitled} is outside trust domain {}",
                self.material.trust_domain
            )));
        }
        let leaf = self
            .leaf_params(entitled, now)?
            .signed_by(&csr.public_key, &self.material.issuer.issuer)
            .map_err(MeshError::cert)?;
        Ok(vec![leaf.der().clone(), self.material.issuer.der.clone()])
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
        params.not_before = to_offset(now - LEAF_BACKDATE);
        params.not_after = to_offset(now + self.leaf_ttl);
        params.serial_number = Some(SerialNumber::from_slice(&self.next_serial.to_be_bytes()));
        self.next_serial += 1;
        Ok(params)
    }

    /// Issues a leaf for the CA's own server identity, with a key from `seed`.
    fn self_certify(
        &mut self,
        id: &SpiffeId,
        seed: Seed,
        now: SystemTime,
    ) -> Result<
        (
            Vec<CertificateDer<'static>>,
            rustls_pki_types::PrivateKeyDer<'static>,
        ),
        MeshError,
    > {
        let (key, pkcs8) = ed25519_key(seed)?;
        let leaf = self
            .leaf_params(id, now)?
            .signed_by(&key, &self.material.issuer.issuer)
            .map_err(MeshError::cert)?;
        Ok((
            vec![leaf.der().clone(), self.material.issuer.der.clone()],
            pkcs8.into(),
        ))
    }
}

/// How the CA host runs.
pub struct CaConfig {
    /// The CA's own server identity.
    pub identity: SpiffeId,
    /// Signing state.
    pub authority: Authority,
}

struct CaServer {
    env: HostEnv,
    authority: Mutex<Authority>,
    tls: MeshTls,
}

/// Serves `POST /v1/certify` over TLS until shutdown.
pub async fn run(config: CaConfig, env: HostEnv, mut shutdown: Shutdown) -> Result<(), MeshError> {
    let mut authority = config.authority;
    let tls = MeshTls::new(env.clock.clone(), authority.material.trust_bundle());
    let (chain, key) = authority.self_certify(
        &config.identity,
        env.seed.child("ca-server-key"),
        env.clock.wall(),
    )?;
    tls.install(chain, key)?;
    let server = Arc::new(CaServer {
        env: env.clone(),
        authority: Mutex::new(authority),
        tls,
    });
    let mut listener = env.net.bind(ports::CA).await?;
    env.record("ca.listen", format!("port={}", ports::CA));
    loop {
        let (io, _) = tokio::select! {
            biased;
            _ = shutdown.wait() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let server = server.clone();
        seam::task::spawn(async move {
            let Ok((stream, peer)) = server
                .tls
                .accept(io, ClientAuth::Optional, &[b"http/1.1"])
                .await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let peer = peer.clone();
                async move { Ok::<_, std::convert::Infallible>(server.handle(req, peer).await) }
            });
            let _ = serve_connection(stream, service).await;
        });
    }
}

impl CaServer {
    async fn handle(&self, req: Request<Incoming>, peer: Option<SpiffeId>) -> Response<Body> {
        if req.method() != Method::POST || req.uri().path() != "/v1/certify" {
            return text(StatusCode::NOT_FOUND, "not found");
        }
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let csr = match read_body(req.into_body(), CSR_BYTES_MAX).await {
            Ok(bytes) => bytes,
            Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        match self.certify(&csr, token.as_deref(), peer) {
            Ok(pem) => Response::new(Body::from(Bytes::from(pem))),
            Err(e) => {
                self.env.record("ca.refuse", e.to_string());
                text(StatusCode::FORBIDDEN, &e.to_string())
            }
        }
    }

    fn certify(
        &self,
        csr: &[u8],
        token: Option<&str>,
        peer: Option<SpiffeId>,
    ) -> Result<String, MeshError> {
        let csr =
            std::str::from_utf8(csr).map_err(|_| MeshError::Refused("CSR is not PEM".into()))?;
        let mut authority = self.authority.lock().expect("authority poisoned");
        // A current certificate proves its identity; otherwise the token must.
        let entitled = match (peer, token) {
            (Some(id), _) => id,
            (None, Some(token)) => authority
                .identity_for_token(token)
                .cloned()
                .ok_or_else(|| MeshError::Refused("unknown bootstrap token".into()))?,
            (None, None) => {
                return Err(MeshError::Refused(
                    "no certificate and no bootstrap token".into(),
                ));
            }
        };
        let chain = authority.sign(csr, &entitled, self.env.clock.wall())?;
        let info = CertInfo::parse(&chain[0])?;
        self.env.record(
            "ca.issue",
            format!("id={entitled} serial={}", info.serial_hex),
        );
        Ok(chain
            .iter()
            .map(|der| pem_encode("CERTIFICATE", der.as_ref()))
            .collect())
    }
}

/// PEM-encodes DER (chains sent to workloads, files for curl).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}
