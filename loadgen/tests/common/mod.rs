//! A small HTTP(S) server over the seam, for loadgen's tests: it records
//! what it saw, echoes it back, and can stall or take time on purpose.

#![allow(dead_code)] // each test binary uses a different part of it

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use seam::{BoxIo, Listener};
use tokio::time::Instant;

/// Bytes the `/big` path answers with (more than the loadgen keeps).
pub const BIG_BODY_BYTES: usize = 10_000;

/// What the server does with each request.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Hold every request that arrives in `[from, from + length)` (from
    /// the server's start) until the window ends: a GC pause, once.
    pub stall: Option<(Duration, Duration)>,
    /// Time every request takes (handled concurrently).
    pub service_time: Duration,
    /// Stay up but bind nothing, so every connection is refused.
    pub refuse_connections: bool,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// HTTP version.
    pub version: Version,
    /// Path and query.
    pub path: String,
    /// `idempotency-key` header.
    pub key: Option<String>,
    /// `x-request-seq` header.
    pub seq: Option<u64>,
    /// Request body.
    pub body: Bytes,
    /// The peer presented a client certificate.
    pub client_cert: bool,
}

/// What the server saw, shared with the test.
pub type Log = Arc<Mutex<Vec<Seen>>>;

/// How connections are spoken to.
#[derive(Clone)]
pub struct ServerSetup {
    /// HTTP/2 (prior knowledge on plain TCP; by ALPN under TLS).
    pub http2: bool,
    /// TLS, if any.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Stalls and service time.
    pub behaviour: Behaviour,
}

/// Serves `listener` until the task is dropped.
/// [`serve`] on a real loopback port; its address and log.
pub async fn start_real(setup: ServerSetup) -> (std::net::SocketAddr, Log) {
    let net = seam::real::AddressBook::ephemeral().net_for("server");
    let listener = seam::Net::bind(&net, 443).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    seam::task::spawn(serve(listener, setup, log.clone()));
    (addr, log)
}

pub async fn serve(mut listener: Box<dyn Listener>, setup: ServerSetup, log: Log) {
    let started = Instant::now();
    loop {
        let Ok((io, _peer)) = listener.accept().await else {
            return;
        };
        let (setup, log) = (setup.clone(), log.clone());
        seam::task::spawn(async move {
            let _ = connection(io, setup, log, started).await;
        });
    }
}

async fn connection(io: BoxIo, setup: ServerSetup, log: Log, started: Instant) -> Option<()> {
    let (io, http2, client_cert): (BoxIo, bool, bool) = match &setup.tls {
        Some(config) => {
            let tls = tokio_rustls::TlsAcceptor::from(config.clone())
                .accept(io)
                .await
                .ok()?;
            let state = tls.get_ref().1;
            let http2 = state.alpn_protocol() == Some(b"h2");
            let client_cert = state.peer_certificates().is_some_and(|c| !c.is_empty());
            (Box::new(tls), http2, client_cert)
        }
        None => (io, setup.http2, false),
    };
    let behaviour = setup.behaviour.clone();
    let service = service_fn(move |request| {
        respond(
            request,
            behaviour.clone(),
            log.clone(),
            started,
            client_cert,
        )
    });
    let io = TokioIo::new(io);
    if http2 {
        hyper::server::conn::http2::Builder::new(seam::task::Executor)
            .auto_date_header(false)
            .serve_connection(io, service)
            .await
            .ok()
    } else {
        hyper::server::conn::http1::Builder::new()
            .auto_date_header(false)
            .serve_connection(io, service)
            .await
            .ok()
    }
}

async fn respond(
    request: Request<Incoming>,
    behaviour: Behaviour,
    log: Log,
    started: Instant,
    client_cert: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some((from, length)) = behaviour.stall {
        let now = Instant::now();
        let (stall_from, stall_until) = (started + from, started + from + length);
        if now >= stall_from && now < stall_until {
            tokio::time::sleep_until(stall_until).await;
        }
    }
    if !behaviour.service_time.is_zero() {
        tokio::time::sleep(behaviour.service_time).await;
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (key, seq) = (
        header("idempotency-key"),
        header("x-request-seq").and_then(|s| s.parse().ok()),
    );
    let version = request.version();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".into(), |p| p.to_string());
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let answer = if path == "/big" {
        Bytes::from(vec![b'x'; BIG_BODY_BYTES])
    } else {
        let mut echo = format!("{} ", key.as_deref().unwrap_or("-")).into_bytes();
        echo.extend_from_slice(&body);
        Bytes::from(echo)
    };
    log.lock().unwrap().push(Seen {
        version,
        path,
        key,
        seq,
        body,
        client_cert,
    });
    Ok(Response::new(Full::new(answer)))
}

/// An Ed25519 key from a fixed seed byte (rcgen's own generator reads OS
/// randomness, which the workspace bans; fixed keys are fine for tests).
fn key(seed_byte: u8) -> KeyPair {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[seed_byte; 32]);
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), &rcgen::PKCS_ED25519)
        .unwrap()
}

/// A CA, a server certificate for localhost/127.0.0.x and a client
/// certificate, written as PEM files.
pub struct Pki {
    /// CA certificate (PEM).
    pub ca_pem: PathBuf,
    /// Server chain and key (PEM).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client chain and key (PEM).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// Issues everything into `dir`.
    pub fn create(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = key(1);
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "loadgen test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, &ca_key);
        let leaf = |name: &str, seed_byte: u8, purpose: ExtendedKeyUsagePurpose| {
            let key = key(seed_byte);
            let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
            for last in 1..=4 {
                params
                    .subject_alt_names
                    .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(
                        127, 0, 0, last,
                    ))));
            }
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("localhost", 2, ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf("client", 3, ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Pki {
            ca_pem: write("ca.pem", &ca_cert.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
        }
    }

    /// Server settings that require a client certificate from this CA.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca_pem).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let chain = CertificateDer::pem_file_iter(&self.server_cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&self.server_key).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Port the simulated server listens on.
pub const SIM_PORT: u16 = 80;

/// What one simulated run produced.
pub struct SimRun {
    /// The generator's report.
    pub report: loadgen::LoadReport,
    /// Every completion, in the order they were observed.
    pub completions: Vec<loadgen::Completion>,
    /// What the server saw.
    pub seen: Vec<Seen>,
}

/// Runs `plan` against a simulated server (host `server`) from host
/// `loadgen`, with a fixed 1 ms link latency each way and a 1 ms tick.
pub fn run_in_sim(setup: ServerSetup, plan: loadgen::LoadPlan, seed: u64) -> SimRun {
    use seam::{Seed, Trace};
    use sim::{FaultSchedule, SimConfig, SimWorld};
    let config = SimConfig {
        seed: Seed::new(seed),
        tick: Duration::from_millis(1),
        link_latency_min: Duration::from_millis(1),
        link_latency_max: Duration::from_millis(1),
        duration_limit: plan.duration() + Duration::from_secs(120),
        tcp_capacity: 4096,
    };
    let mut world = SimWorld::new(config, Trace::hash_only());
    let log: Log = Arc::default();
    let server_log = log.clone();
    world.host("server", move |env| {
        let (setup, log) = (setup.clone(), server_log.clone());
        async move {
            if setup.behaviour.refuse_connections {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Ok(());
            }
            let listener = env.net.bind(SIM_PORT).await?;
            serve(listener, setup, log).await;
            Ok(())
        }
    });
    let completions: Arc<Mutex<Vec<loadgen::Completion>>> = Arc::default();
    let report = Arc::new(Mutex::new(None));
    let (sink, observed) = (report.clone(), completions.clone());
    world.client("loadgen", move |env| async move {
        let target = loadgen::Target {
            host: "server".into(),
            port: SIM_PORT,
            authority: "server".into(),
            tls: None,
        };
        let observer = Arc::new(move |c: &loadgen::Completion| {
            observed.lock().unwrap().push(c.clone());
        });
        let result = loadgen::run(env.net.clone(), target, plan, Seed::new(seed), observer).await?;
        *sink.lock().unwrap() = Some(result);
        Ok(())
    });
    world.run(&FaultSchedule::default()).unwrap();
    let report = report.lock().unwrap().take().expect("the load finished");
    let completions = std::mem::take(&mut *completions.lock().unwrap());
    let seen = std::mem::take(&mut *log.lock().unwrap());
    SimRun {
        report,
        completions,
        seen,
    }
}

/// One GET operation named `get` on `/`.
pub fn get_root() -> loadgen::Operation {
    loadgen::Operation {
        name: "get".into(),
        method: http::Method::GET,
        path: "/".into(),
        body: Bytes::new(),
        headers: Vec::new(),
        weight: 1,
    }
}

/// A one-phase plan.
pub fn plan(
    arrival: loadgen::Arrival,
    seconds: u64,
    mix: Vec<loadgen::Operation>,
) -> loadgen::LoadPlan {
    loadgen::LoadPlan {
        phases: vec![loadgen::Phase {
            name: "main".into(),
            duration: Duration::from_secs(seconds),
            arrival,
        }],
        mix,
        ..loadgen::LoadPlan::default()
    }
}

/// Milliseconds at `quantile` of a µs histogram.
pub fn ms_at(histogram: &hdrhistogram::Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}
