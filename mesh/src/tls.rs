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
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

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
use seam::{BoxIo, Clock, HostEnv};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::MeshError;
use crate::error::TlsFailure;
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
    /// Trust domains other than our own whose workloads we accept.
    federated: Arc<RwLock<BTreeSet<String>>>,
    /// Where handshake transcript hashes go (hosts built with `for_host`).
    env: Option<HostEnv>,
}

impl MeshTls {
    /// TLS state trusting `roots`, with no certificate yet, on the stock
    /// provider and without transcript records.
    pub fn new(clock: Arc<dyn Clock>, roots: Vec<CertificateDer<'static>>) -> Self {
        MeshTls {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            clock,
            slot: Arc::new(CertSlot::default()),
            roots: RwLock::new(roots),
            revoked: Arc::new(Revocations::default()),
            federated: Arc::default(),
            env: None,
        }
    }

    /// Also accept clients from these trust domains (federation); by
    /// default only our own leaf's trust domain is accepted.
    pub fn set_federated_trust_domains(&self, domains: BTreeSet<String>) {
        *self.federated.write().expect("federated poisoned") = domains;
    }

    /// TLS state for a host. On a simulated clock it uses the seeded
    /// provider ([`crate::simcrypto`]) and records a hash of the bytes of
    /// every handshake in the trace (`tls.transcript`), so a replay that
    /// sends one different byte shows up in `check-determinism`. On a real
    /// clock it is [`MeshTls::new`]: stock provider, OS randomness.
    pub fn for_host(env: &HostEnv, roots: Vec<CertificateDer<'static>>) -> Self {
        let mut tls = Self::new(env.clock.clone(), roots);
        if env.clock.simulated() {
            tls.provider = Arc::new(crate::simcrypto::provider(env.seed.child("tls")));
            tls.env = Some(env.clone());
        }
        tls
    }

    /// The trust bundle in force.
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        self.roots.read().expect("roots poisoned").clone()
    }

    /// Wraps `io` so the handshake's bytes are hashed (when recording).
    fn tap(&self, io: BoxIo) -> (BoxIo, Option<Arc<Mutex<Transcript>>>) {
        if self.env.is_none() {
            return (io, None);
        }
        let transcript = Arc::new(Mutex::new(Transcript::default()));
        let tapped = TranscriptTap {
            inner: io,
            transcript: transcript.clone(),
        };
        (Box::new(tapped), Some(transcript))
    }

    /// Stops hashing and records what this side sent and saw.
    fn record_transcript(
        &self,
        transcript: Option<Arc<Mutex<Transcript>>>,
        side: &str,
        peer: &str,
        ok: bool,
    ) {
        let (Some(env), Some(transcript)) = (&self.env, transcript) else {
            return;
        };
        let mut t = transcript.lock().expect("transcript poisoned");
        t.done = true;
        let sent = std::mem::take(&mut t.sent).finalize();
        let seen = std::mem::take(&mut t.seen).finalize();
        env.record(
            seam::event::TLS_TRANSCRIPT,
            format!(
                "side={side} peer={peer} ok={ok} sent={}B:{} seen={}B:{}",
                t.sent_bytes,
                &hex::encode(sent)[..16],
                t.seen_bytes,
                &hex::encode(seen)[..16]
            ),
        );
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
            .map_err(|e| MeshError::Tls(TlsFailure::setup(e)))?;
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

    /// Applies what the control plane publishes: the revocation list, the
    /// federated trust domains and, if the config names one, the trust
    /// bundle (otherwise `installed`).
    /// An unreadable bundle is ignored: the current one stays.
    pub fn apply_published(
        &self,
        config: &crate::config::MeshConfig,
        installed: &[CertificateDer<'static>],
    ) {
        self.revoked.replace(config.revoked.clone());
        self.set_federated_trust_domains(config.federated_trust_domains.clone());
        let roots = if config.trust_bundle.is_empty() {
            Ok(installed.to_vec())
        } else {
            bundle_from_pem(&config.trust_bundle)
        };
        if let Ok(roots) = roots
            && roots != self.roots()
        {
            if let Some(env) = &self.env {
                env.record(seam::event::CERT_BUNDLE, format!("roots={}", roots.len()));
            }
            self.set_roots(roots);
        }
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
                .map_err(|e| MeshError::Tls(TlsFailure::setup(e)))?;
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
        let inner = builder
            .build()
            .map_err(|e| MeshError::Tls(TlsFailure::setup(e)))?;
        let verifier = Arc::new(SpiffeClientVerifier {
            inner,
            revoked: self.revoked.clone(),
            own: self.slot.clone(),
            federated: self.federated.clone(),
        });
        let mut config = ServerConfig::builder_with_details(self.provider.clone(), self.time())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| MeshError::Tls(TlsFailure::setup(e)))?
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
                .map_err(|e| MeshError::Tls(TlsFailure::setup(e)))?;
        let builder = ClientConfig::builder_with_details(self.provider.clone(), self.time())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| MeshError::Tls(TlsFailure::setup(e)))?
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
        let (io, transcript) = self.tap(io);
        let outcome = connector
            .connect(name, io)
            .await
            .map_err(|e| MeshError::Tls(TlsFailure::handshake(&e)));
        self.record_transcript(transcript, "client", &expected.to_string(), outcome.is_ok());
        outcome
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
        let (io, transcript) = self.tap(io);
        let outcome = acceptor.accept(io).await;
        let peer = match &outcome {
            Ok(stream) => peer_identity(stream.get_ref().1.peer_certificates())
                .map(|p| p.map_or_else(|| "anonymous".to_owned(), |p| p.to_string()))
                .unwrap_or_else(|_| "unreadable".to_owned()),
            Err(_) => "refused".to_owned(),
        };
        self.record_transcript(transcript, "server", &peer, outcome.is_ok());
        let stream = outcome.map_err(|e| MeshError::Tls(TlsFailure::handshake(&e)))?;
        let peer = peer_identity(stream.get_ref().1.peer_certificates())?;
        Ok((stream, peer))
    }
}

/// Running hashes of the bytes one side wrote and read during a handshake.
#[derive(Default)]
struct Transcript {
    sent: Sha256,
    seen: Sha256,
    sent_bytes: u64,
    seen_bytes: u64,
    /// Set when the handshake finished: application data is not hashed.
    done: bool,
}

/// A stream that feeds every handshake byte to a [`Transcript`].
///
/// rustls exposes no transcript hash, so this is the honest substitute: the
/// TLS records this side put on and took off the wire until the handshake
/// completed (if the peer's first application record arrived in the same
/// read, it is included; in the simulation that is deterministic too).
struct TranscriptTap {
    inner: BoxIo,
    transcript: Arc<Mutex<Transcript>>,
}

impl AsyncRead for TranscriptTap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let mut t = self.transcript.lock().expect("transcript poisoned");
            if !t.done {
                let fresh = &buf.filled()[before..];
                t.seen.update(fresh);
                t.seen_bytes += fresh.len() as u64;
            }
        }
        polled
    }
}

impl AsyncWrite for TranscriptTap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            let mut t = self.transcript.lock().expect("transcript poisoned");
            if !t.done {
                t.sent.update(&buf[..written]);
                t.sent_bytes += written as u64;
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Parses a published trust bundle (PEM roots); empty is an error.
pub fn bundle_from_pem(pems: &[String]) -> Result<Vec<CertificateDer<'static>>, MeshError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = Vec::new();
    for pem in pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.push(cert.map_err(MeshError::cert)?);
        }
    }
    if roots.is_empty() {
        return Err(MeshError::Cert("empty trust bundle".into()));
    }
    Ok(roots)
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

/// webpki's client verifier, plus exactly one SPIFFE ID, in our own trust
/// domain (or a federated one), and not revoked. A chain to a trusted root
/// is not enough: a certificate for `spiffe://evil.example/…` signed by the
/// mesh CA is refused at the handshake.
#[derive(Debug)]
struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<Revocations>,
    own: Arc<CertSlot>,
    federated: Arc<RwLock<BTreeSet<String>>>,
}

impl SpiffeClientVerifier {
    /// Our own leaf's trust domain, or a federated one. Without a leaf of
    /// our own we know no trust domain, and accept none.
    fn trusts_domain(&self, domain: &str) -> bool {
        let own = self.own.info().and_then(|info| info.spiffe_id().ok());
        own.is_some_and(|own| own.trust_domain() == domain)
            || self
                .federated
                .read()
                .expect("federated poisoned")
                .contains(domain)
    }
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
        let peer = info.spiffe_id().map_err(|_| application_failure())?;
        if !self.trusts_domain(peer.trust_domain()) {
            return Err(application_failure());
        }
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

#[cfg(test)]
mod tests {
    //! The certificate checks of a real handshake, on a clock the test sets.

    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::ca::{Authority, CaMaterial};
    use crate::identity::{KeyAlgorithm, certificate_request, derive_key};
    use seam::Seed;

    /// A wall clock the test moves by hand.
    struct TestClock(Mutex<SystemTime>);

    impl Clock for TestClock {
        fn wall(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
        fn run_elapsed(&self) -> Duration {
            Duration::ZERO
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    /// The control plane's config is how a scenario's
    /// `federated_trust_domains` reach every proxy; a later config
    /// without them withdraws them.
    #[test]
    fn the_published_config_sets_the_federated_trust_domains() {
        let clock = Arc::new(TestClock(Mutex::new(issued_at())));
        let tls = MeshTls::new(clock, Vec::new());
        let federated = crate::config::MeshConfig {
            federated_trust_domains: ["partner.example".to_owned()].into(),
            ..Default::default()
        };
        tls.apply_published(&federated, &[]);
        let now = tls.federated.read().unwrap().clone();
        assert_eq!(now, ["partner.example".to_owned()].into());
        tls.apply_published(&crate::config::MeshConfig::default(), &[]);
        assert!(tls.federated.read().unwrap().is_empty());
    }

    fn issued_at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn id(sa: &str) -> SpiffeId {
        SpiffeId::new("test.meshsim", "rec", sa).unwrap()
    }

    struct Pair {
        client: MeshTls,
        server: MeshTls,
        client_clock: Arc<TestClock>,
        server_clock: Arc<TestClock>,
        client_leaf: CertInfo,
    }

    /// A client (`gateway`) and a server (`registry`), both issued at
    /// `issued_at()` for `TTL`, both clocks at `issued_at()`.
    fn pair(algorithm: KeyAlgorithm) -> Pair {
        let material =
            CaMaterial::generate_with(algorithm, "test.meshsim", Seed::new(1), issued_at())
                .unwrap();
        let roots = material.trust_bundle();
        let mut ca = Authority::new(material, TTL, BTreeMap::new());
        let mut make = |sa: &str, seed: u64| {
            let clock = Arc::new(TestClock(Mutex::new(issued_at())));
            let tls = MeshTls::new(clock.clone(), roots.clone());
            let (key, pkcs8) = derive_key(algorithm, Seed::new(seed)).unwrap();
            let csr = certificate_request(&id(sa), &key).unwrap();
            let chain = ca.sign(&csr, &id(sa), issued_at()).unwrap();
            let info = tls.install(chain, pkcs8.into()).unwrap();
            (tls, clock, info)
        };
        let (client, client_clock, client_leaf) = make("gateway", 2);
        let (server, server_clock, _) = make("registry", 3);
        Pair {
            client,
            server,
            client_clock,
            server_clock,
            client_leaf,
        }
    }

    fn set(clock: &TestClock, at: SystemTime) {
        *clock.0.lock().unwrap() = at;
    }

    /// Runs one mTLS handshake and one byte each way; returns whether the
    /// client's side and the server's side each succeeded.
    fn handshake(pair: &Pair) -> (bool, bool) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (a, b) = tokio::io::duplex(64 * 1024);
            let client = async {
                let mut stream = pair
                    .client
                    .connect(Box::new(a), &id("registry"), &[b"h2"], true)
                    .await
                    .ok()?;
                // TLS 1.3: a refused client certificate shows on first use.
                stream.write_all(b"x").await.ok()?;
                stream.flush().await.ok()?;
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.ok()?;
                Some(())
            };
            let server = async {
                let (mut stream, peer) = pair
                    .server
                    .accept(Box::new(b), ClientAuth::Required, &[b"h2"])
                    .await
                    .ok()?;
                let peer = peer.expect("a verified client");
                assert_eq!(peer.service_account(), "gateway");
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.ok()?;
                stream.write_all(b"y").await.ok()?;
                stream.flush().await.ok()?;
                Some(())
            };
            let deadline = Duration::from_secs(5);
            let (c, s) = tokio::join!(
                tokio::time::timeout(deadline, client),
                tokio::time::timeout(deadline, server)
            );
            (matches!(c, Ok(Some(()))), matches!(s, Ok(Some(()))))
        })
    }

    #[test]
    fn a_fresh_pair_handshakes_with_either_algorithm() {
        assert_eq!(handshake(&pair(KeyAlgorithm::Ed25519)), (true, true));
        assert_eq!(handshake(&pair(KeyAlgorithm::EcdsaP256)), (true, true));
    }

    #[test]
    fn a_handshake_at_ttl_plus_one_second_is_refused() {
        let pair = pair(KeyAlgorithm::Ed25519);
        let late = issued_at() + TTL + Duration::from_secs(1);
        set(&pair.client_clock, late);
        set(&pair.server_clock, late);
        assert_eq!(handshake(&pair), (false, false));
        // One second earlier both certificates are still good.
        let just_in = issued_at() + TTL - Duration::from_secs(1);
        set(&pair.client_clock, just_in);
        set(&pair.server_clock, just_in);
        assert_eq!(handshake(&pair), (true, true));
    }

    #[test]
    fn an_expired_client_is_refused_by_the_server_alone() {
        // Only the server's clock is past the client's expiry: the server
        // refuses the client; the client, whose clock is fine, would not.
        let pair = pair(KeyAlgorithm::Ed25519);
        set(
            &pair.server_clock,
            pair.client_leaf.not_after + Duration::from_secs(1),
        );
        let (_, server_ok) = handshake(&pair);
        assert!(!server_ok);
    }

    #[test]
    fn a_not_yet_valid_certificate_is_refused() {
        let pair = pair(KeyAlgorithm::Ed25519);
        // The server's clock is behind the client's notBefore.
        set(
            &pair.server_clock,
            pair.client_leaf.not_before - Duration::from_secs(1),
        );
        assert!(!handshake(&pair).1);
        // The client's clock is behind the server's notBefore.
        let pair = super::tests::pair(KeyAlgorithm::Ed25519);
        set(
            &pair.client_clock,
            pair.client_leaf.not_before - Duration::from_secs(1),
        );
        assert!(!handshake(&pair).0);
    }

    #[test]
    fn a_revoked_identity_or_serial_is_refused() {
        let pair = pair(KeyAlgorithm::Ed25519);
        pair.server
            .revocations()
            .replace(BTreeSet::from([id("gateway").to_string()]));
        assert!(!handshake(&pair).1, "revoked by identity");
        pair.server
            .revocations()
            .replace(BTreeSet::from([pair.client_leaf.serial_hex.clone()]));
        assert!(!handshake(&pair).1, "revoked by serial");
        pair.server.revocations().replace(BTreeSet::new());
        assert_eq!(handshake(&pair), (true, true), "lifted");
    }

    #[test]
    fn a_second_root_in_the_bundle_is_trusted_too() {
        let pair = pair(KeyAlgorithm::Ed25519);
        let other = CaMaterial::generate("test.meshsim", Seed::new(50), issued_at()).unwrap();
        let mut both = other.trust_bundle();
        both.extend(pair.server.roots());
        pair.server.set_roots(both);
        assert_eq!(handshake(&pair), (true, true));
        pair.server.set_roots(other.trust_bundle());
        assert!(!handshake(&pair).1, "old root removed");
    }

    #[test]
    fn a_client_of_another_trust_domain_is_refused_even_when_chained_to_our_ca() {
        let pair = pair(KeyAlgorithm::Ed25519);
        // Whoever holds our CA's keys (here: the same seed) signs a leaf
        // for a foreign trust domain; the chain itself is valid.
        let material = CaMaterial::generate_with(
            KeyAlgorithm::Ed25519,
            "test.meshsim",
            Seed::new(1),
            issued_at(),
        )
        .unwrap();
        let mut ca = Authority::new(material, TTL, BTreeMap::new());
        let evil = SpiffeId::new("evil-test.meshsim", "rec", "gateway").unwrap();
        let (key, pkcs8) = derive_key(KeyAlgorithm::Ed25519, Seed::new(7)).unwrap();
        let csr = certificate_request(&evil, &key).unwrap();
        let chain = ca.forge(&csr, &evil, issued_at()).unwrap();
        pair.client.install(chain, pkcs8.into()).unwrap();
        assert!(!handshake(&pair).1, "foreign trust domain refused");
        pair.server
            .set_federated_trust_domains(BTreeSet::from(["evil-test.meshsim".to_owned()]));
        assert_eq!(handshake(&pair), (true, true), "accepted once federated");
    }
}
