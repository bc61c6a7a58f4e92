//! Mutual TLS for the mesh, on either network.
//!
//! * rustls reads time only through [`ClockTime`], i.e. the host's
//!   [`seam::Clock`], so certificate validity follows sim time and skew.
//! * The current leaf lives in a [`CertSlot`] that resolvers read on every
//!   handshake: a renewal is a hot reload, and connections already open are
//!   untouched.
//! * Clients name a server by the DNS form of the SPIFFE ID discovery says it
//!   should have; [`SpiffeServerVerifier`] checks chain, time and that name,
//!   then the URI SAN. Servers require a client certificate chained to the
//!   trust bundle with exactly one SPIFFE ID that is not revoked.
//! * Session resumption is off on the server: a resumed session skips the
//!   certificate checks, which would let an expired or revoked peer back in.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use seam::{BoxIo, Clock};

use crate::MeshError;
use crate::identity::{CertInfo, SpiffeId};

/// A client-side TLS stream.
pub type ClientStream = tokio_rustls::client::TlsStream<BoxIo>;
/// A server-side TLS stream.
pub type ServerStream = tokio_rustls::server::TlsStream<BoxIo>;

/// rustls's view of the host's wall clock.
#[derive(Clone)]
pub struct ClockTime(pub Arc<dyn Clock>);

impl std::fmt::Debug for ClockTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClockTime")
    }
}

impl rustls::time_provider::TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        let since = self
            .0
            .wall()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .ok()?;
        Some(UnixTime::since_unix_epoch(since))
    }
}

/// The workload's current certificate and key, swapped on renewal.
#[derive(Debug, Default)]
pub struct CertSlot(RwLock<Option<(Arc<CertifiedKey>, CertInfo)>>);

impl CertSlot {
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.0
            .read()
            .expect("cert slot poisoned")
            .as_ref()
            .map(|(key, _)| key.clone())
    }

    /// Facts about the current leaf.
    pub fn info(&self) -> Option<CertInfo> {
        self.0
            .read()
            .expect("cert slot poisoned")
            .as_ref()
            .map(|(_, info)| info.clone())
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for CertSlot {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.current().is_some()
    }
}

/// Whether a server asks for client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// mTLS: no certificate, no connection (sidecar inbound, control plane).
    Required,
    /// Certificate optional (the CA, which also serves bootstrap requests).
    Optional,
}

/// Identities and serials the control plane has revoked.
#[derive(Debug, Default)]
pub struct Revocations(RwLock<BTreeSet<String>>);

impl Revocations {
    /// Replaces the revoked set (SPIFFE IDs and hex serials).
    pub fn replace(&self, entries: BTreeSet<String>) {
        *self.0.write().expect("revocations poisoned") = entries;
    }

    /// Whether the certificate is revoked by identity or serial.
    pub fn covers(&self, info: &CertInfo) -> bool {
        let set = self.0.read().expect("revocations poisoned");
        set.contains(&info.serial_hex) || info.uris.iter().any(|uri| set.contains(uri))
    }
}

/// Everything TLS for one workload.
pub struct MeshTls {
    provider: Arc<CryptoProvider>,
    clock: Arc<dyn Clock>,
    slot: Arc<CertSlot>,
    roots: RwLock<Vec<CertificateDer<'static>>>,
    revoked: Arc<Revocations>,
}

impl MeshTls {
    /// TLS state trusting `roots`, with no certificate yet.
    pub fn new(clock: Arc<dyn Clock>, roots: Vec<CertificateDer<'static>>) -> Self {
        MeshTls {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            clock,
            slot: Arc::new(CertSlot::default()),
            roots: RwLock::new(roots),
            revoked: Arc::new(Revocations::default()),
        }
    }

    /// Installs a new leaf (hot reload: only new handshakes see it).
    pub fn install(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<CertInfo, MeshError> {
        let leaf = chain
            .first()
            .ok_or_else(|| MeshError::Cert("empty chain".into()))?;
        let info = CertInfo::parse(leaf)?;
        let certified = CertifiedKey::from_der(chain, key, &self.provider)
            .map_err(|e| MeshError::Tls(e.to_string()))?;
        *self.slot.0.write().expect("cert slot poisoned") =
            Some((Arc::new(certified), info.clone()));
        Ok(info)
    }

    /// The current leaf, if any.
    pub fn leaf(&self) -> Option<CertInfo> {
        self.slot.info()
    }

    /// Whether the current leaf is valid now, by this host's clock.
    pub fn has_valid_leaf(&self) -> bool {
        let now = self.clock.wall();
        self.leaf()
            .is_some_and(|info| info.not_before <= now && now < info.not_after)
    }

    /// Replaces the trust bundle (root rotation).
    pub fn set_roots(&self, roots: Vec<CertificateDer<'static>>) {
        *self.roots.write().expect("roots poisoned") = roots;
    }

    /// The revocation list inbound handshakes consult.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revoked
    }

    fn root_store(&self) -> Result<Arc<RootCertStore>, MeshError> {
        let mut store = RootCertStore::empty();
        for root in self.roots.read().expect("roots poisoned").iter() {
            store
                .add(root.clone())
                .map_err(|e| MeshError::Tls(e.to_string()))?;
        }
        Ok(Arc::new(store))
    }

    fn time(&self) -> Arc<ClockTime> {
        Arc::new(ClockTime(self.clock.clone()))
    }

    /// A server config for the current bundle and revocations.
    pub fn server_config(
        &self,
        auth: ClientAuth,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, MeshError> {
        let builder =
            WebPkiClientVerifier::builder_with_provider(self.root_store()?, self.provider.clone());
        let builder = if auth == ClientAuth::Optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        let inner = builder.build().map_err(|e| MeshError::Tls(e.to_string()))?;
        let verifier = Arc::new(SpiffeClientVerifier {
            inner,
            revoked: self.revoked.clone(),
        });
        let mut config = ServerConfig::builder_with_details(self.provider.clone(), self.time())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| MeshError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.slot.clone());
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A client config that verifies servers' SPIFFE IDs and presents the
    /// current leaf if `present_leaf` (an expired leaf would only get the
    /// handshake refused, so the identity client renews anonymously then).
    pub fn client_config(
        &self,
        alpn: &[&[u8]],
        present_leaf: bool,
    ) -> Result<Arc<ClientConfig>, MeshError> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(self.root_store()?, self.provider.clone())
                .build()
                .map_err(|e| MeshError::Tls(e.to_string()))?;
        let builder = ClientConfig::builder_with_details(self.provider.clone(), self.time())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| MeshError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier { inner }));
        let mut config = if present_leaf {
            builder.with_client_cert_resolver(self.slot.clone())
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Opens TLS to a server that must prove `expected`.
    pub async fn connect(
        &self,
        io: BoxIo,
        expected: &SpiffeId,
        alpn: &[&[u8]],
        present_leaf: bool,
    ) -> Result<ClientStream, MeshError> {
        let name = ServerName::try_from(expected.dns_name())
            .map_err(|e| MeshError::BadIdentity(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(self.client_config(alpn, present_leaf)?);
        connector
            .connect(name, io)
            .await
            .map_err(|e| MeshError::Tls(e.to_string()))
    }

    /// Accepts TLS; returns the stream and the verified peer identity (if
    /// the client presented a certificate, which `Required` enforces).
    pub async fn accept(
        &self,
        io: BoxIo,
        auth: ClientAuth,
        alpn: &[&[u8]],
    ) -> Result<(ServerStream, Option<SpiffeId>), MeshError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config(auth, alpn)?);
        let stream = acceptor
            .accept(io)
            .await
            .map_err(|e| MeshError::Tls(e.to_string()))?;
        let peer = peer_identity(stream.get_ref().1.peer_certificates())?;
        Ok((stream, peer))
    }
}

/// The SPIFFE ID of a verified peer chain (the leaf comes first).
pub fn peer_identity(
    chain: Option<&[CertificateDer<'static>]>,
) -> Result<Option<SpiffeId>, MeshError> {
    match chain.and_then(|c| c.first()) {
        Some(leaf) => Ok(Some(CertInfo::parse(leaf)?.spiffe_id()?)),
        None => Ok(None),
    }
}

fn application_failure() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

/// Chain, time and DNS name by webpki, then the URI SAN by us.
#[derive(Debug)]
struct SpiffeServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        let expected =
            SpiffeId::from_dns_name(&server_name.to_str()).map_err(|_| application_failure())?;
        let presented = CertInfo::parse(end_entity)
            .and_then(|info| info.spiffe_id())
            .map_err(|_| application_failure())?;
        if presented == expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(application_failure())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// webpki's client verifier, plus exactly-one-SPIFFE-ID and revocation.
#[derive(Debug)]
struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<Revocations>,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let info = CertInfo::parse(end_entity).map_err(|_| application_failure())?;
        info.spiffe_id().map_err(|_| application_failure())?;
        if self.revoked.covers(&info) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
