//! The proxy side: heartbeats and the watch loop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use rand::Rng;
use seam::HostEnv;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Endpoint, Registration, Snapshot, WATCH_HOLD, WatchUpdate};
use crate::MeshError;
use crate::client::Upstream;
use crate::client::pool::Pool;
use crate::config::MeshConfig;
use crate::http::{Body, body_bytes};
use crate::telemetry::ProxyTelemetry;
use crate::tls::MeshTls;

/// Deadline of one watch request: the server's hold plus a round trip or
/// two. Longer only delays noticing a dead connection.
const WATCH_TIMEOUT: Duration = WATCH_HOLD.saturating_add(Duration::from_secs(2));
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a workload refreshes its registration.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// A proxy's view of the control plane: the last snapshot it received.
#[derive(Clone)]
pub struct Discovery {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    last_contact: Arc<Mutex<Option<Instant>>>,
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

    /// Time since the control plane last answered (None: never).
    pub fn staleness(&self) -> Option<Duration> {
        self.last_contact
            .lock()
            .expect("poisoned")
            .map(|at| at.elapsed())
    }

    /// A discovery that always answers from `snapshot` (tests, benches and
    /// static deployments without a control plane).
    pub fn fixed(snapshot: Snapshot) -> Discovery {
        let (_, rx) = watch::channel(Arc::new(snapshot));
        Discovery {
            snapshot: rx,
            last_contact: Arc::default(),
        }
    }

    /// Starts the watch loop and, if `registration` is given, heartbeats.
    pub fn spawn(
        env: HostEnv,
        tls: Arc<MeshTls>,
        control: Upstream,
        registration: Option<Registration>,
    ) -> Discovery {
        Discovery::spawn_reporting(env, tls, control, registration, None)
    }

    /// Like [`Discovery::spawn`], and reports every snapshot version (with
    /// its config, before the proxy can use it) and every answer from the
    /// control plane to `telemetry`: the proxy's config version and
    /// staleness gauges, and the per-version configs checks judge by.
    pub fn spawn_reporting(
        env: HostEnv,
        tls: Arc<MeshTls>,
        control: Upstream,
        registration: Option<Registration>,
        telemetry: Option<ProxyTelemetry>,
    ) -> Discovery {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let discovery = Discovery {
            snapshot: rx,
            last_contact: Arc::default(),
        };
        if let Some(registration) = registration {
            seam::task::spawn(heartbeat_loop(
                env.clone(),
                tls.clone(),
                control.clone(),
                registration,
            ));
        }
        seam::task::spawn(watch_loop(
            env,
            tls,
            control,
            tx,
            discovery.last_contact.clone(),
            telemetry,
        ));
        discovery
    }
}

/// Seeded, jittered, bounded exponential backoff.
struct Backoff {
    next: Duration,
    rng: rand_chacha::ChaCha12Rng,
}

impl Backoff {
    fn new(env: &HostEnv, label: &str) -> Self {
        Backoff {
            next: BACKOFF_MIN,
            rng: env.seed.child(label).rng(),
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    async fn wait(&mut self) {
        let delay = self.next.mul_f64(1.0 + self.rng.random_range(0.0..0.5));
        self.next = (self.next * 2).min(BACKOFF_MAX);
        tokio::time::sleep(delay).await;
    }
}

async fn watch_loop(
    env: HostEnv,
    tls: Arc<MeshTls>,
    control: Upstream,
    tx: watch::Sender<Arc<Snapshot>>,
    last_contact: Arc<Mutex<Option<Instant>>>,
    telemetry: Option<ProxyTelemetry>,
) {
    let pool = Pool::default();
    let mut backoff = Backoff::new(&env, "discovery-backoff");
    let mut connected = false;
    loop {
        let current = tx.borrow().clone();
        let request = get(
            &format!("/v1/watch?after={}", current.version),
            &control.host,
        );
        let outcome = tokio::time::timeout(
            WATCH_TIMEOUT,
            send::<WatchUpdate>(&env, &tls, &pool, &control, request),
        )
        .await;
        match outcome {
            Ok(Ok(update)) => {
                backoff.reset();
                let now = Instant::now();
                let previous = last_contact.lock().expect("poisoned").replace(now);
                if let Some(telemetry) = &telemetry {
                    telemetry.control_contact();
                }
                if !connected {
                    // How long the proxy served without hearing from the
                    // control plane (its staleness when it reconnects).
                    let stale = previous.map_or("never".to_owned(), |at| {
                        format!("{}", (now - at).as_millis())
                    });
                    env.record(
                        seam::event::DISCOVERY_CONNECTED,
                        format!("v={} stale_ms={stale}", current.version),
                    );
                    connected = true;
                }
                let mut next = (*current).clone();
                update.apply_to(&mut next);
                if next != *current {
                    env.record(seam::event::DISCOVERY_UPDATE, format!("v={}", next.version));
                    if let Some(telemetry) = &telemetry {
                        telemetry.config_in_force(next.version, &next.config);
                    }
                    tx.send_replace(Arc::new(next));
                }
            }
            failed => {
                if connected {
                    let reason = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".into(),
                    };
                    env.record(
                        seam::event::DISCOVERY_DISCONNECTED,
                        format!("v={} err={reason}", current.version),
                    );
                    connected = false;
                }
                pool.clear();
                backoff.wait().await;
            }
        }
    }
}

async fn heartbeat_loop(
    env: HostEnv,
    tls: Arc<MeshTls>,
    control: Upstream,
    registration: Registration,
) {
    let pool = Pool::default();
    let mut backoff = Backoff::new(&env, "heartbeat-backoff");
    loop {
        let sent = match post_json("/v1/register", &control.host, &registration) {
            Ok(request) => {
                tokio::time::timeout(
                    WATCH_TIMEOUT,
                    send::<serde_json::Value>(&env, &tls, &pool, &control, Ok(request)),
                )
                .await
            }
            Err(e) => Ok(Err(e)),
        };
        if matches!(sent, Ok(Ok(_))) {
            backoff.reset();
            tokio::time::sleep(HEARTBEAT_INTERVAL).await;
        } else {
            pool.clear();
            backoff.wait().await;
        }
    }
}

/// Applies `config` through the control plane (operators only); returns
/// the version it became.
pub async fn apply_config(
    env: &HostEnv,
    tls: &MeshTls,
    control: &Upstream,
    config: &MeshConfig,
) -> Result<u64, MeshError> {
    let pool = Pool::default();
    let answer: serde_json::Value = send(
        env,
        tls,
        &pool,
        control,
        post_json("/v1/config", &control.host, config),
    )
    .await?;
    answer["version"]
        .as_u64()
        .ok_or_else(|| MeshError::BadRequest("no version in answer".into()))
}

async fn send<T: serde::de::DeserializeOwned>(
    env: &HostEnv,
    tls: &MeshTls,
    pool: &Pool,
    control: &Upstream,
    request: Result<Request<Body>, MeshError>,
) -> Result<T, MeshError> {
    let response = pool
        .send(&control.host, request?, || control.open(env, tls))
        .await?;
    if response.status() != StatusCode::OK {
        return Err(MeshError::Status(response.status().as_u16()));
    }
    serde_json::from_slice(&body_bytes(response.body()))
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
