//! The control plane: a registry of endpoints, served to proxies over an
//! mTLS long-poll watch, and the [`Discovery`] client proxies run.
//!
//! A workload may only register itself: the control plane compares the
//! registered identity with the caller's certificate.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rand::Rng;
use seam::{HostEnv, Shutdown};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::MeshConfig;
use crate::http::{Body, json, read_body, serve_connection, text};
use crate::proxy::Upstream;
use crate::proxy::certify::{self, CertifyConfig};
use crate::proxy::pool::Pool;
use crate::tls::{ClientAuth, MeshTls};
use crate::{MeshError, SpiffeId, http as mesh_http, ports};

/// One reachable endpoint of a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// Host name.
    pub host: String,
    /// Inbound port.
    pub port: u16,
    /// The identity the endpoint must prove.
    pub identity: SpiffeId,
}

/// A workload announcing itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Service name.
    pub service: String,
    /// Where and who it is.
    pub endpoint: Endpoint,
}

/// The versioned state proxies watch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Monotonic version; bumps on every change.
    pub version: u64,
    /// Endpoints by service, in a stable order.
    pub services: BTreeMap<String, Vec<Endpoint>>,
    /// Policy and revocations.
    pub config: MeshConfig,
}

impl Snapshot {
    fn register(&mut self, registration: Registration) -> bool {
        let endpoints = self.services.entry(registration.service).or_default();
        if endpoints.contains(&registration.endpoint) {
            return false;
        }
        endpoints.push(registration.endpoint);
        endpoints.sort();
        self.version += 1;
        true
    }
}

/// How the control-plane host runs.
pub struct ControlConfig {
    /// Its own certificate.
    pub certify: CertifyConfig,
    /// Trust bundle.
    pub trust_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// The configuration in force at start.
    pub initial: MeshConfig,
}

/// How long a watch waits for a change before answering "no change".
const WATCH_HOLD: Duration = Duration::from_secs(5);
/// Largest registration body.
const REGISTRATION_BYTES_MAX: usize = 16 * 1024;

struct ControlServer {
    env: HostEnv,
    state: Mutex<Snapshot>,
    changed: watch::Sender<u64>,
}

/// Serves the registry until shutdown.
pub async fn run(
    config: ControlConfig,
    env: HostEnv,
    mut shutdown: Shutdown,
) -> Result<(), MeshError> {
    let tls = Arc::new(MeshTls::new(env.clock.clone(), config.trust_roots));
    tokio::spawn(certify::run(env.clone(), tls.clone(), config.certify));
    while tls.leaf().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (changed, _) = watch::channel(0);
    let server = Arc::new(ControlServer {
        env: env.clone(),
        // The configuration in force from the start (validated by the caller).
        state: Mutex::new(Snapshot {
            config: config.initial,
            ..Snapshot::default()
        }),
        changed,
    });
    let mut listener = env.net.bind(ports::CONTROL).await?;
    env.record("control.listen", format!("port={}", ports::CONTROL));
    loop {
        let (io, _) = tokio::select! {
            biased;
            _ = shutdown.wait() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let (server, tls) = (server.clone(), tls.clone());
        tokio::spawn(async move {
            let Ok((stream, Some(peer))) =
                tls.accept(io, ClientAuth::Required, &[b"http/1.1"]).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let (server, peer) = (server.clone(), peer.clone());
                async move { Ok::<_, std::convert::Infallible>(server.handle(req, peer).await) }
            });
            let _ = serve_connection(stream, service).await;
        });
    }
}

impl ControlServer {
    async fn handle(&self, req: Request<Incoming>, peer: SpiffeId) -> Response<Body> {
        match (req.method().clone(), req.uri().path()) {
            (Method::POST, "/v1/register") => self.register(req, peer).await,
            (Method::GET, "/v1/watch") => {
                let after = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("after="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                self.watch(after).await
            }
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    async fn register(&self, req: Request<Incoming>, peer: SpiffeId) -> Response<Body> {
        let body = match read_body(req.into_body(), REGISTRATION_BYTES_MAX).await {
            Ok(body) => body,
            Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let Ok(registration) = serde_json::from_slice::<Registration>(&body) else {
            return text(StatusCode::BAD_REQUEST, "malformed registration");
        };
        if registration.endpoint.identity != peer {
            self.env.record(
                "control.register_refused",
                format!("peer={peer} claimed={}", registration.endpoint.identity),
            );
            return text(StatusCode::FORBIDDEN, "a workload may only register itself");
        }
        let detail = format!(
            "service={} host={}",
            registration.service, registration.endpoint.host
        );
        let mut state = self.state.lock().expect("control state poisoned");
        if state.register(registration) {
            self.env
                .record("control.version", format!("v={} {detail}", state.version));
            self.changed.send_replace(state.version);
        }
        json(StatusCode::OK, &*state)
    }

    async fn watch(&self, after: u64) -> Response<Body> {
        let mut changed = self.changed.subscribe();
        let _ =
            tokio::time::timeout(WATCH_HOLD, changed.wait_for(|version| *version > after)).await;
        let state = self.state.lock().expect("control state poisoned").clone();
        json(StatusCode::OK, &state)
    }
}

/// A proxy's view of the registry: the last snapshot it received. When the
/// control plane is unreachable it keeps serving from that snapshot.
#[derive(Clone)]
pub struct Discovery {
    snapshot: watch::Receiver<Arc<Snapshot>>,
}

impl Discovery {
    /// Endpoints of `service`, in a stable order.
    pub fn endpoints(&self, service: &str) -> Vec<Endpoint> {
        self.snapshot
            .borrow()
            .services
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// The version in use.
    pub fn version(&self) -> u64 {
        self.snapshot.borrow().version
    }

    /// The configuration in force (last known good).
    pub fn config(&self) -> MeshConfig {
        self.snapshot.borrow().config.clone()
    }

    /// A receiver that wakes on every new snapshot.
    pub fn snapshot_changes(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    /// A discovery that always answers from `snapshot` (tests, benches and
    /// static deployments without a control plane).
    pub fn fixed(snapshot: Snapshot) -> Discovery {
        let (_, rx) = watch::channel(Arc::new(snapshot));
        Discovery { snapshot: rx }
    }

    /// Starts the watch loop; `registration` is (re-)announced whenever the
    /// snapshot does not list it (first start, control-plane restart).
    pub fn spawn(
        env: HostEnv,
        tls: Arc<MeshTls>,
        control: Upstream,
        registration: Option<Registration>,
    ) -> Discovery {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        tokio::spawn(watch_loop(env, tls, control, registration, tx));
        Discovery { snapshot: rx }
    }
}

const WATCH_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

async fn watch_loop(
    env: HostEnv,
    tls: Arc<MeshTls>,
    control: Upstream,
    registration: Option<Registration>,
    tx: watch::Sender<Arc<Snapshot>>,
) {
    let pool = Pool::default();
    let mut jitter = env.seed.child("discovery-jitter").rng();
    let mut backoff = BACKOFF_MIN;
    loop {
        let current = tx.borrow().clone();
        let outcome = tokio::time::timeout(
            WATCH_TIMEOUT,
            poll_once(&env, &tls, &pool, &control, &registration, &current),
        )
        .await;
        match outcome {
            Ok(Ok(snapshot)) => {
                backoff = BACKOFF_MIN;
                if snapshot != *current {
                    env.record("discovery.update", format!("v={}", snapshot.version));
                    tx.send_replace(Arc::new(snapshot));
                }
            }
            _ => {
                pool.clear();
                tokio::time::sleep(backoff.mul_f64(1.0 + jitter.random_range(0.0..0.5))).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn poll_once(
    env: &HostEnv,
    tls: &MeshTls,
    pool: &Pool,
    control: &Upstream,
    registration: &Option<Registration>,
    current: &Snapshot,
) -> Result<Snapshot, MeshError> {
    let listed = |snapshot: &Snapshot, r: &Registration| {
        snapshot
            .services
            .get(&r.service)
            .is_some_and(|eps| eps.contains(&r.endpoint))
    };
    let request = match registration {
        Some(r) if !listed(current, r) => post_json("/v1/register", &control.host, r)?,
        _ => get(
            &format!("/v1/watch?after={}", current.version),
            &control.host,
        )?,
    };
    let response = pool
        .send(&control.host, request, || control.open(env, tls))
        .await?;
    if response.status() != StatusCode::OK {
        return Err(MeshError::Status(response.status().as_u16()));
    }
    serde_json::from_slice(&mesh_http::body_bytes(response.body()))
        .map_err(|e| MeshError::BadRequest(e.to_string()))
}

fn get(path: &str, host: &str) -> Result<Request<Body>, MeshError> {
    Request::get(path)
        .header(http::header::HOST, host)
        .body(Body::default())
        .map_err(|e| MeshError::BadRequest(e.to_string()))
}

fn post_json<T: Serialize>(path: &str, host: &str, value: &T) -> Result<Request<Body>, MeshError> {
    let bytes = serde_json::to_vec(value).map_err(|e| MeshError::BadRequest(e.to_string()))?;
    Request::post(path)
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(Bytes::from(bytes)))
        .map_err(|e| MeshError::BadRequest(e.to_string()))
}

impl Upstream {
    /// Opens an mTLS HTTP/1.1 connection to this upstream.
    pub async fn open(
        &self,
        env: &HostEnv,
        tls: &MeshTls,
    ) -> Result<hyper::client::conn::http1::SendRequest<Body>, MeshError> {
        let io = env
            .net
            .connect(&self.host, self.port)
            .await
            .map_err(|source| MeshError::Connect {
                target: format!("{}:{}", self.host, self.port),
                source,
            })?;
        let stream = tls
            .connect(io, &self.identity, &[b"http/1.1"], true)
            .await?;
        mesh_http::handshake(stream).await
    }
}
