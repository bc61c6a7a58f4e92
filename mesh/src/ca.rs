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
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};
use rustls_pki_types::CertificateDer;
use seam::{Disk, HostEnv, Seed, Shutdown};

use crate::http::{Body, read_body, serve_connection, text};
use crate::identity::{CertInfo, KeyAlgorithm, SpiffeId, derive_key};
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
    /// The key `algorithm` derives from `seed`, and its PKCS#8 form.
    pub fn derive(algorithm: KeyAlgorithm, seed: Seed) -> Result<(Self, Vec<u8>), MeshError> {
        let (key, pkcs8) = derive_key(algorithm, seed)?;
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
    fn load(algorithm: KeyAlgorithm, pkcs8: &[u8]) -> Result<Self, MeshError> {
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

/// A CA key and its certificate.
pub struct SigningCert {
    issuer: Issuer<'static, CaKey>,
    /// PKCS#8 of the key (persisted with the CA's state).
    key_pkcs8: Vec<u8>,
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
}

impl SigningCert {
    fn create(
        algorithm: KeyAlgorithm,
        seed: Seed,
        params: CertificateParams,
        parent: Option<&SigningCert>,
    ) -> Result<Self, MeshError> {
        let (key, key_pkcs8) = CaKey::derive(algorithm, seed)?;
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

    fn load(algorithm: KeyAlgorithm, der: Vec<u8>, key_pkcs8: Vec<u8>) -> Result<Self, MeshError> {
        let der = CertificateDer::from(der);
        let key = CaKey::load(algorithm, &key_pkcs8)?;
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(MeshError::cert)?;
        Ok(SigningCert {
            issuer,
            key_pkcs8,
            der,
        })
    }

    fn persisted(&self, generation: u32, parent: u32) -> PersistedCert {
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

fn new_root(
    trust_domain: &str,
    algorithm: KeyAlgorithm,
    seed: Seed,
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
        seed.child(&generation_label("root", generation)),
        params,
        None,
    )
}

fn new_issuer(
    trust_domain: &str,
    algorithm: KeyAlgorithm,
    seed: Seed,
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
        seed.child(&generation_label("issuer", generation)),
        params,
        Some(root),
    )
}

impl CaMaterial {
    /// Creates an Ed25519 root and issuer, with keys derived from `seed`.
    pub fn generate(trust_domain: &str, seed: Seed, now: SystemTime) -> Result<Self, MeshError> {
        Self::generate_with(KeyAlgorithm::Ed25519, trust_domain, seed, now)
    }

    /// Creates a root and an issuer of `algorithm`, keys derived from `seed`.
    pub fn generate_with(
        algorithm: KeyAlgorithm,
        trust_domain: &str,
        seed: Seed,
        now: SystemTime,
    ) -> Result<Self, MeshError> {
        let root = new_root(trust_domain, algorithm, seed, 1, now)?;
        let issuer = new_issuer(trust_domain, algorithm, seed, 1, &root, now)?;
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

/// One root or issuer as the CA stores it (DER and PKCS#8, hex).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PersistedCert {
    generation: u32,
    /// The root an issuer chains to (0 for a root).
    parent: u32,
    der_hex: String,
    key_hex: String,
}

/// Everything the CA must not forget across a crash: keys, certificates,
/// which issuer signs, and the next serial (a reused serial would make
/// serial revocation hit an innocent certificate).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PersistedCa {
    trust_domain: String,
    algorithm: KeyAlgorithm,
    next_serial: u64,
    roots: Vec<PersistedCert>,
    issuers: Vec<PersistedCert>,
    active_issuer: u32,
}

/// The file the CA keeps its state in on its host's disk.
pub const STATE_FILE: &str = "ca-state.json";

struct Generation {
    number: u32,
    parent: u32,
    cert: SigningCert,
}

/// Signing policy and state.
pub struct Authority {
    trust_domain: String,
    algorithm: KeyAlgorithm,
    leaf_ttl: Duration,
    next_serial: u64,
    /// Bootstrap token → the identity it entitles.
    tokens: BTreeMap<String, SpiffeId>,
    /// Roots in the bundle, oldest first.
    roots: Vec<Generation>,
    /// Issuers, oldest first.
    issuers: Vec<Generation>,
    /// The generation of the issuer that signs new leaves.
    active_issuer: u32,
    /// Where later root and issuer keys are derived from.
    seed: Option<Seed>,
    /// Where the state is persisted after every change.
    disk: Option<Arc<dyn Disk>>,
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
            tokens,
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

    /// Makes the authority durable on `disk`: if the disk holds state from
    /// an earlier life, that state (keys, certificates, serials, active
    /// issuer) replaces the freshly provisioned one; otherwise the current
    /// state is written. Later generations derive their keys from `seed`.
    pub fn persist_on(&mut self, disk: Arc<dyn Disk>, seed: Seed) -> Result<bool, MeshError> {
        self.seed = Some(seed);
        let recovered = match disk.read(STATE_FILE)? {
            Some(bytes) => {
                let state: PersistedCa = serde_json::from_slice(&bytes)
                    .map_err(|e| MeshError::Cert(format!("corrupt CA state: {e}")))?;
                self.restore(state)?;
                true
            }
            None => false,
        };
        self.disk = Some(disk);
        self.save()?;
        Ok(recovered)
    }

    fn restore(&mut self, state: PersistedCa) -> Result<(), MeshError> {
        let load = |p: &PersistedCert| -> Result<Generation, MeshError> {
            let der = hex::decode(&p.der_hex).map_err(MeshError::cert)?;
            let key = hex::decode(&p.key_hex).map_err(MeshError::cert)?;
            Ok(Generation {
                number: p.generation,
                parent: p.parent,
                cert: SigningCert::load(state.algorithm, der, key)?,
            })
        };
        self.roots = state.roots.iter().map(load).collect::<Result<_, _>>()?;
        self.issuers = state.issuers.iter().map(load).collect::<Result<_, _>>()?;
        self.trust_domain = state.trust_domain;
        self.algorithm = state.algorithm;
        self.next_serial = state.next_serial;
        self.active_issuer = state.active_issuer;
        Ok(())
    }

    fn save(&self) -> Result<(), MeshError> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        let state = PersistedCa {
            trust_domain: self.trust_domain.clone(),
            algorithm: self.algorithm,
            next_serial: self.next_serial,
            roots: self
                .roots
                .iter()
                .map(|g| g.cert.persisted(g.number, g.parent))
                .collect(),
            issuers: self
                .issuers
                .iter()
                .map(|g| g.cert.persisted(g.number, g.parent))
                .collect(),
            active_issuer: self.active_issuer,
        };
        let bytes = serde_json::to_vec(&state).map_err(MeshError::cert)?;
        disk.write(STATE_FILE, &bytes)?;
        Ok(())
    }

    /// The identity a bootstrap token proves.
    pub fn identity_for_token(&self, token: &str) -> Option<&SpiffeId> {
        self.tokens.get(token)
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

    fn active(&self) -> &Generation {
        self.issuers
            .iter()
            .find(|g| g.number == self.active_issuer)
            .or_else(|| self.issuers.last())
            .expect("an authority always has an issuer")
    }

    fn next_generation(&self) -> u32 {
        self.roots
            .iter()
            .chain(&self.issuers)
            .map(|g| g.number)
            .max()
            .unwrap_or(0)
            + 1
    }

    fn generation_seed(&self) -> Result<Seed, MeshError> {
        self.seed
            .ok_or_else(|| MeshError::Refused("this authority cannot create new keys".into()))
    }

    /// Root rotation, step 1: a new root and an issuer under it join the
    /// bundle; the old issuer keeps signing until [`Self::activate_newest`].
    /// Returns the new root's generation.
    pub fn prepare_root(&mut self, now: SystemTime) -> Result<u32, MeshError> {
        let seed = self.generation_seed()?;
        let number = self.next_generation();
        let root = new_root(&self.trust_domain, self.algorithm, seed, number, now)?;
        let issuer = new_issuer(&self.trust_domain, self.algorithm, seed, number, &root, now)?;
        self.roots.push(Generation {
            number,
            parent: 0,
            cert: root,
        });
        self.issuers.push(Generation {
            number,
            parent: number,
            cert: issuer,
        });
        self.save()?;
        Ok(number)
    }

    /// Root rotation, step 2: the newest issuer signs from now on.
    pub fn activate_newest(&mut self) -> Result<u32, MeshError> {
        self.active_issuer = self.issuers.last().map_or(1, |g| g.number);
        self.save()?;
        Ok(self.active_issuer)
    }

    /// Root rotation, step 3: every root but the active issuer's leaves the
    /// bundle, with the issuers under it. Returns how many roots left.
    pub fn retire_old_roots(&mut self) -> Result<usize, MeshError> {
        let keep = self.active().parent;
        let before = self.roots.len();
        self.roots.retain(|g| g.number == keep);
        self.issuers.retain(|g| g.parent == keep);
        self.save()?;
        Ok(before - self.roots.len())
    }

    /// Issuer rotation: a new intermediate under the current root signs from
    /// now on. Leaves from the old one stay valid (same root) until expiry.
    pub fn rotate_issuer(&mut self, now: SystemTime) -> Result<u32, MeshError> {
        let seed = self.generation_seed()?;
        let number = self.next_generation();
        let parent = self.active().parent;
        let root = &self
            .roots
            .iter()
            .find(|g| g.number == parent)
            .ok_or_else(|| MeshError::Cert("active issuer's root is gone".into()))?
            .cert;
        let issuer = new_issuer(&self.trust_domain, self.algorithm, seed, number, root, now)?;
        self.issuers.push(Generation {
            number,
            parent,
            cert: issuer,
        });
        self.active_issuer = number;
        self.save()?;
        Ok(number)
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
        if entitled.trust_domain() != self.trust_domain {
            return Err(MeshError::Refused(format!(
                "{entitled} is outside trust domain {}",
                self.trust_domain
            )));
        }
        let params = self.leaf_params(entitled, now)?;
        let active = self.active();
        let leaf = params
            .signed_by(&csr.public_key, &active.cert.issuer)
            .map_err(MeshError::cert)?;
        let chain = vec![leaf.der().clone(), active.cert.der.clone()];
        self.save()?;
        Ok(chain)
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
        let (key, pkcs8) = derive_key(self.algorithm, seed)?;
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

/// How the CA host runs.
pub struct CaConfig {
    /// The CA's own server identity.
    pub identity: SpiffeId,
    /// Signing state (as provisioned; a restarted CA recovers its own from
    /// its disk instead).
    pub authority: Authority,
    /// Identities allowed to rotate roots and issuers.
    pub operators: Vec<SpiffeId>,
}

struct CaServer {
    env: HostEnv,
    identity: SpiffeId,
    authority: Mutex<Authority>,
    tls: MeshTls,
    operators: Vec<SpiffeId>,
    /// When the CA's own server leaf should be replaced, and by which issuer
    /// generation it was signed.
    own_leaf: Mutex<(SystemTime, u32)>,
}

/// Serves `POST /v1/certify` (and, for operators, the rotation steps under
/// `/v1/rotate/…`) over TLS until shutdown. State lives on `env.disk`.
pub async fn run(config: CaConfig, env: HostEnv, mut shutdown: Shutdown) -> Result<(), MeshError> {
    let mut authority = config.authority;
    let recovered = authority.persist_on(env.disk.clone(), env.seed.child("ca-generations"))?;
    let (root, issuer) = authority.generations();
    env.record(
        "ca.start",
        format!(
            "recovered={recovered} next_serial={} root_gen={root} issuer_gen={issuer} roots={}",
            authority.next_serial(),
            authority.trust_bundle().len()
        ),
    );
    let tls = MeshTls::for_host(&env, authority.trust_bundle());
    let server = Arc::new(CaServer {
        env: env.clone(),
        identity: config.identity,
        authority: Mutex::new(authority),
        tls,
        operators: config.operators,
        own_leaf: Mutex::new((SystemTime::UNIX_EPOCH, 0)),
    });
    server.refresh_own_leaf()?;
    let mut listener = env.net.bind(ports::CA).await?;
    env.record("ca.listen", format!("port={}", ports::CA));
    loop {
        let (io, _) = tokio::select! {
            biased;
            _ = shutdown.wait() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        if let Err(e) = server.refresh_own_leaf() {
            env.record("ca.self_certify_failed", e.to_string());
        }
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

/// The CA replaces its own leaf at half its life, or when another issuer
/// becomes active (so clients that trust only the new root can reach it).
const OWN_LEAF_RENEW_FRACTION: f64 = 0.5;

impl CaServer {
    fn refresh_own_leaf(&self) -> Result<(), MeshError> {
        let now = self.env.clock.wall();
        let mut authority = self.authority.lock().expect("authority poisoned");
        let active = authority.generations().1;
        let mut own = self.own_leaf.lock().expect("own leaf poisoned");
        if now < own.0 && own.1 == active {
            return Ok(());
        }
        let seed = self.env.seed.child("ca-server-key");
        let (chain, key) = authority.self_certify(&self.identity, seed, now)?;
        let info = self.tls.install(chain, key)?;
        let lifetime = info
            .not_after
            .duration_since(info.not_before)
            .unwrap_or_default();
        *own = (
            info.not_before + lifetime.mul_f64(OWN_LEAF_RENEW_FRACTION),
            active,
        );
        Ok(())
    }

    async fn handle(&self, req: Request<Incoming>, peer: Option<SpiffeId>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if req.method() == Method::GET && path == "/v1/bundle" {
            return self.bundle_response();
        }
        if req.method() != Method::POST {
            return text(StatusCode::NOT_FOUND, "not found");
        }
        if let Some(step) = path.strip_prefix("/v1/rotate/") {
            return self.rotate(step, peer.as_ref());
        }
        if path != "/v1/certify" {
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

    fn bundle_response(&self) -> Response<Body> {
        let bundle = self
            .authority
            .lock()
            .expect("authority poisoned")
            .trust_bundle();
        let pem: String = bundle
            .iter()
            .map(|der| pem_encode("CERTIFICATE", der.as_ref()))
            .collect();
        Response::new(Body::from(Bytes::from(pem)))
    }

    /// One rotation step, for operators only. Every step answers with the
    /// bundle as it now stands, for the operator to publish.
    fn rotate(&self, step: &str, peer: Option<&SpiffeId>) -> Response<Body> {
        if !peer.is_some_and(|p| self.operators.contains(p)) {
            self.env
                .record("ca.refuse", format!("rotate/{step} by {peer:?}"));
            return text(StatusCode::FORBIDDEN, "rotation is for operators");
        }
        let now = self.env.clock.wall();
        let outcome = {
            let mut authority = self.authority.lock().expect("authority poisoned");
            let done = match step {
                "root/prepare" => authority.prepare_root(now).map(|g| format!("root_gen={g}")),
                "root/activate" => authority
                    .activate_newest()
                    .map(|g| format!("issuer_gen={g}")),
                "root/retire" => authority
                    .retire_old_roots()
                    .map(|n| format!("retired_roots={n}")),
                "issuer" => authority
                    .rotate_issuer(now)
                    .map(|g| format!("issuer_gen={g}")),
                _ => return text(StatusCode::NOT_FOUND, "unknown rotation step"),
            };
            done.map(|detail| (detail, authority.trust_bundle()))
        };
        match outcome {
            Ok((detail, bundle)) => {
                self.env.record(
                    "ca.rotate",
                    format!("step={step} {detail} roots={}", bundle.len()),
                );
                self.tls.set_roots(bundle);
                if let Err(e) = self.refresh_own_leaf() {
                    self.env.record("ca.self_certify_failed", e.to_string());
                }
                self.bundle_response()
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
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
            format!(
                "id={entitled} serial={} issuer_gen={}",
                info.serial_hex,
                authority.generations().1
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::certificate_request;
    use seam::MemDisk;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn id(sa: &str) -> SpiffeId {
        SpiffeId::new("test.meshsim", "rec", sa).unwrap()
    }

    fn authority(algorithm: KeyAlgorithm) -> Authority {
        let material =
            CaMaterial::generate_with(algorithm, "test.meshsim", Seed::new(1), now()).unwrap();
        Authority::new(material, Duration::from_secs(60), BTreeMap::new())
    }

    fn csr_with_uris(uris: &[String]) -> String {
        let (key, _) = derive_key(KeyAlgorithm::Ed25519, Seed::new(9)).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI(u.clone().try_into().unwrap()))
            .collect();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

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

    fn issue(ca: &mut Authority, sa: &str) -> CertInfo {
        let (key, _) = derive_key(KeyAlgorithm::Ed25519, Seed::new(4)).unwrap();
        let csr = certificate_request(&id(sa), &key).unwrap();
        CertInfo::parse(&ca.sign(&csr, &id(sa), now()).unwrap()[0]).unwrap()
    }

    #[test]
    fn a_restarted_ca_keeps_its_keys_and_serials() {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::default());
        let mut first = authority(KeyAlgorithm::Ed25519);
        assert!(!first.persist_on(disk.clone(), Seed::new(2)).unwrap());
        first.prepare_root(now()).unwrap();
        first.activate_newest().unwrap();
        let a = issue(&mut first, "registry");
        let b = issue(&mut first, "registry");
        let bundle = first.trust_bundle();
        drop(first);

        // A "restart" provisions fresh state from another seed: the disk wins.
        let material = CaMaterial::generate(
            "test.meshsim",
            Seed::new(77),
            now() + Duration::from_secs(5),
        )
        .unwrap();
        let mut second = Authority::new(material, Duration::from_secs(60), BTreeMap::new());
        assert!(second.persist_on(disk, Seed::new(2)).unwrap());
        assert_eq!(second.trust_bundle(), bundle, "same roots, same keys");
        assert_eq!(second.generations(), (2, 2));
        let c = issue(&mut second, "registry");
        assert_ne!(c.serial_hex, a.serial_hex);
        assert_ne!(c.serial_hex, b.serial_hex);
    }

    #[test]
    fn root_rotation_adds_then_switches_then_retires() {
        let mut ca = authority(KeyAlgorithm::Ed25519);
        ca.persist_on(Arc::new(MemDisk::default()), Seed::new(2))
            .unwrap();
        let old_root = ca.trust_bundle()[0].clone();
        assert_eq!(ca.prepare_root(now()).unwrap(), 2);
        assert_eq!(ca.trust_bundle().len(), 2);
        assert_eq!(
            ca.generations(),
            (2, 1),
            "old issuer signs until activation"
        );
        ca.activate_newest().unwrap();
        assert_eq!(ca.retire_old_roots().unwrap(), 1);
        assert_eq!(ca.trust_bundle().len(), 1);
        assert_ne!(ca.trust_bundle()[0], old_root);
        assert_eq!(ca.rotate_issuer(now()).unwrap(), 3);
        assert_eq!(ca.trust_bundle().len(), 1, "issuer rotation keeps the root");
    }

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
