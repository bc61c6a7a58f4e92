//! The control-plane host: serves the store over mTLS.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rustls_pki_types::CertificateDer;
use seam::{HostEnv, Shutdown};
use tokio::sync::watch;
use tokio::time::Instant;

use super::store::Store;
use super::{Delta, Registration, WATCH_HOLD};
use crate::accept::{Acceptor, Admitted, CONNECTIONS_MAX};
use crate::client::certify::{self, CertifyConfig};
use crate::config::MeshConfig;
use crate::http::{Body, json, read_body, serve_connection, text};
use crate::tls::{ClientAuth, MeshTls};
use crate::{MeshError, SpiffeId, ports};

/// How the control-plane host runs.
pub struct ControlConfig {
    /// Its own certificate.
    pub certify: CertifyConfig,
    /// Trust bundle as installed; a published one replaces it.
    pub trust_roots: Vec<CertificateDer<'static>>,
    /// The configuration in force when the log is empty.
    pub initial: MeshConfig,
    /// Identities allowed to apply config (operators, CI).
    pub operators: Vec<SpiffeId>,
    /// Which identity serves which service: the only caller that may
    /// register, heartbeat or deregister an endpoint of the service, and
    /// the identity every client sidecar then expects from its endpoints.
    /// A service not listed has no endpoints (default deny).
    pub service_accounts: BTreeMap<String, SpiffeId>,
    /// An endpoint not heard from for this long is removed.
    pub endpoint_ttl: Duration,
}

/// Largest request body.
const BODY_BYTES_MAX: usize = 1024 * 1024;
/// How often stale endpoints are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct ControlServer {
    env: HostEnv,
    store: Mutex<Store>,
    last_seen: Mutex<BTreeMap<(String, String), Instant>>,
    changed: watch::Sender<u64>,
    operators: Vec<SpiffeId>,
    service_accounts: BTreeMap<String, SpiffeId>,
    endpoint_ttl: Duration,
}

/// Serves the control plane until shutdown.
pub async fn run(
    config: ControlConfig,
    env: HostEnv,
    mut shutdown: Shutdown,
) -> Result<(), MeshError> {
    let store = Store::open(env.disk.clone(), config.initial.clone())?;
    env.record(
        seam::event::CONTROL_RECOVERED,
        format!("v={}", store.snapshot().version),
    );
    let tls = Arc::new(MeshTls::for_host(&env, config.trust_roots.clone()));
    seam::task::spawn(certify::run(
        env.clone(),
        tls.clone(),
        config.certify.clone(),
    ));
    while tls.leaf().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let server = Arc::new(ControlServer::new(env.clone(), store, &config));
    seam::task::spawn(server.clone().sweep());
    // The control plane trusts the bundle it publishes (root rotation).
    let (published, installed) = (server.clone(), tls.roots());
    let tls_for_bundle = tls.clone();
    seam::task::spawn(async move {
        let mut changes = published.changed.subscribe();
        loop {
            let config = published
                .store
                .lock()
                .expect("store poisoned")
                .snapshot()
                .config
                .clone();
            tls_for_bundle.apply_published(&config, &installed);
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    let listener = env.net.bind(ports::CONTROL).await?;
    let mut acceptor = Acceptor::new(listener, CONNECTIONS_MAX, &env, "control");
    env.record(
        seam::event::CONTROL_LISTEN,
        format!("port={}", ports::CONTROL),
    );
    loop {
        let Admitted { io, slot, .. } = tokio::select! {
            biased;
            _ = shutdown.wait() => return Ok(()),
            admitted = acceptor.next() => admitted,
        };
        let (server, tls) = (server.clone(), tls.clone());
        seam::task::spawn(async move {
            let _slot = slot;
            // A connection that never finishes its handshake is reaped.
            let handshake = tls.accept(io, ClientAuth::Required, &[b"http/1.1"]);
            let Ok(Ok((stream, Some(peer)))) =
                tokio::time::timeout(crate::http::HEADER_READ_TIMEOUT, handshake).await
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
    fn new(env: HostEnv, store: Store, config: &ControlConfig) -> Self {
        // Endpoints recovered from the log get a full TTL to heartbeat again.
        let now = Instant::now();
        let last_seen = store
            .snapshot()
            .services
            .iter()
            .flat_map(|(svc, eps)| {
                eps.iter()
                    .map(move |e| ((svc.clone(), e.host.clone()), now))
            })
            .collect();
        let (changed, _) = watch::channel(store.snapshot().version);
        ControlServer {
            env,
            store: Mutex::new(store),
            last_seen: Mutex::new(last_seen),
            changed,
            operators: config.operators.clone(),
            service_accounts: config.service_accounts.clone(),
            endpoint_ttl: config.endpoint_ttl,
        }
    }

    async fn handle(&self, req: Request<Incoming>, peer: SpiffeId) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let after = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("after="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let method = req.method().clone();
        let body = match read_body(req.into_body(), BODY_BYTES_MAX).await {
            Ok(body) => body,
            Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        match (method, path.as_str()) {
            (Method::POST, "/v1/register") => self.register(&body, &peer, true),
            (Method::POST, "/v1/deregister") => self.register(&body, &peer, false),
            (Method::POST, "/v1/config") => self.apply_config(&body, &peer),
            (Method::GET, "/v1/watch") => self.watch(after).await,
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Applies a change, records it, and wakes watchers.
    fn commit(&self, delta: Delta, detail: &str) -> Result<u64, crate::config::ConfigError> {
        let mut store = self.store.lock().expect("store poisoned");
        let applied = store.apply(delta)?;
        let version = store.snapshot().version;
        if applied.is_some() {
            self.env.record(
                seam::event::CONTROL_VERSION,
                format!("v={version} {detail}"),
            );
            self.changed.send_replace(version);
        }
        Ok(version)
    }

    fn register(&self, body: &[u8], peer: &SpiffeId, up: bool) -> Response<Body> {
        let Ok(mut registration) = serde_json::from_slice::<Registration>(body) else {
            return text(StatusCode::BAD_REQUEST, "malformed registration");
        };
        // The configuration says who serves a service; the registrant's
        // word counts for nothing. Only that identity may add, refresh or
        // remove the service's endpoints, and it is the identity callers
        // will demand at the handshake.
        let Some(serves) = self.service_accounts.get(&registration.service) else {
            self.env.record(
                seam::event::CONTROL_REGISTER_REFUSED,
                format!("peer={peer} unknown service={}", registration.service),
            );
            return text(StatusCode::FORBIDDEN, "no such service in the mesh");
        };
        if serves != peer || &registration.endpoint.identity != peer {
            self.env.record(
                seam::event::CONTROL_REGISTER_REFUSED,
                format!(
                    "peer={peer} service={} claimed={}",
                    registration.service, registration.endpoint.identity
                ),
            );
            return text(
                StatusCode::FORBIDDEN,
                "only the service's own service account may register or deregister it",
            );
        }
        registration.endpoint.identity = serves.clone();
        let key = (
            registration.service.clone(),
            registration.endpoint.host.clone(),
        );
        let detail = format!("{} {}/{}", if up { "up" } else { "down" }, key.0, key.1);
        let delta = if up {
            self.last_seen
                .lock()
                .expect("poisoned")
                .insert(key, Instant::now());
            Delta::Up {
                service: registration.service,
                endpoint: registration.endpoint,
            }
        } else {
            self.last_seen.lock().expect("poisoned").remove(&key);
            Delta::Down {
                service: key.0,
                host: key.1,
            }
        };
        match self.commit(delta, &detail) {
            Ok(version) => json(StatusCode::OK, &serde_json::json!({ "version": version })),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    fn apply_config(&self, body: &[u8], peer: &SpiffeId) -> Response<Body> {
        if !self.operators.contains(peer) {
            return text(StatusCode::FORBIDDEN, "only operators may apply config");
        }
        let config = match serde_json::from_slice::<MeshConfig>(body) {
            Ok(config) => config,
            Err(e) => {
                return text(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("invalid mesh config: {e}"),
                );
            }
        };
        match self.commit(Delta::Config { config }, &format!("config by {peer}")) {
            Ok(version) => {
                self.env
                    .record(seam::event::CONTROL_APPLY, format!("v={version}"));
                json(StatusCode::OK, &serde_json::json!({ "version": version }))
            }
            Err(e) => {
                self.env
                    .record(seam::event::CONTROL_APPLY_REFUSED, e.to_string());
                text(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())
            }
        }
    }

    async fn watch(&self, after: u64) -> Response<Body> {
        let mut changed = self.changed.subscribe();
        let _ =
            tokio::time::timeout(WATCH_HOLD, changed.wait_for(|version| *version != after)).await;
        let update = self.store.lock().expect("store poisoned").since(after);
        json(StatusCode::OK, &update)
    }

    /// Removes endpoints whose heartbeats stopped, unless most of them
    /// stopped at once (then this host is the one cut off).
    async fn sweep(self: Arc<Self>) {
        let mut preserving = false;
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            let now = Instant::now();
            let (stale, total): (Vec<(String, String)>, usize) = {
                let seen = self.last_seen.lock().expect("poisoned");
                (
                    seen.iter()
                        .filter(|(_, at)| now.duration_since(**at) > self.endpoint_ttl)
                        .map(|(k, _)| k.clone())
                        .collect(),
                    seen.len(),
                )
            };
            let preserve = !stale.is_empty() && stale.len() * 2 > total;
            if preserve != preserving {
                self.env.record(
                    seam::event::CONTROL_SELF_PRESERVATION,
                    format!("on={preserve} stale={} of {total}", stale.len()),
                );
            }
            let leaving = preserving && !preserve;
            preserving = preserve;
            if preserve {
                continue;
            }
            if leaving {
                // The cut-off is over: every endpoint gets a full TTL to
                // heartbeat again instead of expiring mid-reconnect.
                let mut seen = self.last_seen.lock().expect("poisoned");
                stale.iter().for_each(|key| {
                    seen.insert(key.clone(), now);
                });
                continue;
            }
            for (service, host) in stale {
                self.last_seen
                    .lock()
                    .expect("poisoned")
                    .remove(&(service.clone(), host.clone()));
                let detail = format!("expired {service}/{host}");
                let _ = self.commit(Delta::Down { service, host }, &detail);
            }
        }
    }
}
