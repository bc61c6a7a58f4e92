//! The sidecar proxy: identity client, discovery, inbound and outbound
//! listeners and the admin port, all sharing one [`MeshTls`].
//!
//! Layout, following a request: [`outbound`] (routes, faults, split,
//! [`balance`] with [`outlier`] detection and circuit breaking, [`retry`]
//! with its budget, [`h2pool`]) → mTLS, HTTP/2 → [`inbound`] (path
//! normalization and authorization in `crate::authz`, [`ratelimit`],
//! endpoint [`faults`]) → the app. [`limits`] serves every connection;
//! `crate::telemetry` records every hop; [`admin`] exposes it.

pub mod admin;
pub mod balance;
pub mod faults;
pub mod h2pool;
mod h2server;
pub mod inbound;
pub mod limits;
pub mod outbound;
pub mod outlier;
pub mod ratelimit;
pub mod retry;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use rustls_pki_types::CertificateDer;
use seam::HostEnv;
use tokio::sync::watch;

use crate::client::{Upstream, certify};
use crate::control::{Discovery, Endpoint, Registration};
use crate::ports;
use crate::telemetry::Telemetry;
use crate::tls::MeshTls;

pub use limits::Limits;

/// The header in which the inbound proxy tells the app who called. The
/// proxy overwrites whatever a caller put there.
pub const PEER_IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-meshsim-peer-identity");

pub use crate::telemetry::TRACEPARENT_HEADER;

/// What one sidecar needs to start: who it is, where the CA and control
/// plane are, and whom to trust.
#[derive(Clone)]
pub struct ProxyConfig {
    /// The service this workload belongs to.
    pub service: String,
    /// How to get the workload certificate.
    pub certify: certify::CertifyConfig,
    /// Where the control plane is.
    pub control: Upstream,
    /// Trust bundle as installed; the control plane may publish a newer one.
    pub trust_roots: Vec<CertificateDer<'static>>,
    /// Whether a local app serves traffic (false: outbound only, e.g. the
    /// load generator's sidecar).
    pub inbound: bool,
    /// Per-request deadline on the outbound side when a route sets none.
    pub request_timeout: Duration,
    /// Where metrics, spans and evidence go (shared by a run's proxies).
    pub telemetry: Telemetry,
    /// Header, stream and idle limits of both listeners.
    pub limits: Limits,
    /// Whether to serve the admin port (it only ever binds a loopback
    /// address, so in the simulation it declines to start).
    pub admin: bool,
}

/// A running sidecar.
pub struct ProxyHandle {
    /// Becomes true once the proxy holds a certificate and a snapshot.
    pub ready: watch::Receiver<bool>,
    /// The proxy's TLS state (tests and telemetry read it).
    pub tls: Arc<MeshTls>,
}

/// Whether `name` describes one connection, not the request, and so never
/// crosses a proxy (RFC 9110 §7.6.1; HTTP/2 forbids these). Matched as a
/// string: a name's `as_str` is free, and a `match` on it is a length
/// switch, where comparing against a list of `HeaderName`s cost tens of
/// instructions per header per entry.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
    )
}

/// Removes hop-by-hop headers, any a `Connection` header names, and
/// `also`. The few names in `also` are removed by lookup; most messages
/// carry no hop-by-hop header, so one pass over the names present decides
/// the rest, and nothing is allocated unless one is there.
pub fn strip_headers(headers: &mut HeaderMap, also: &[HeaderName]) {
    for name in also {
        headers.remove(name);
    }
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // `from_bytes` lower-cases; a name that is not a valid header name
    // cannot be in the map, so it is skipped.
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let gone: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name) || named.contains(name))
        .cloned()
        .collect();
    for name in gone {
        headers.remove(name);
    }
}

/// Starts every sidecar task on the current runtime and returns at once.
pub fn start(config: ProxyConfig, env: HostEnv) -> ProxyHandle {
    let tls = Arc::new(MeshTls::for_host(&env, config.trust_roots.clone()));
    seam::task::spawn(certify::run(
        env.clone(),
        tls.clone(),
        config.certify.clone(),
    ));
    let registration = config.inbound.then(|| Registration {
        service: config.service.clone(),
        endpoint: Endpoint {
            host: env.name.clone(),
            port: ports::PROXY_INBOUND,
            identity: config.certify.identity.clone(),
        },
    });
    let (ready_tx, ready) = watch::channel(false);
    let telemetry = config
        .telemetry
        .proxy(&env.name, env.clock.clone())
        .with_namespace(config.certify.identity.namespace());
    if config.admin {
        seam::task::spawn(admin::serve(
            env.clone(),
            config.telemetry.clone(),
            ready.clone(),
        ));
    }
    let (env2, tls2) = (env.clone(), tls.clone());
    seam::task::spawn(async move {
        while tls2.leaf().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let discovery = Discovery::spawn_reporting(
            env2.clone(),
            tls2.clone(),
            config.control.clone(),
            registration,
            Some(telemetry.clone()),
        );
        if config.inbound {
            let inbound = inbound::InboundConfig {
                service: config.service.clone(),
                discovery: Some(discovery.clone()),
                telemetry: telemetry.clone(),
                limits: config.limits.clone(),
            };
            seam::task::spawn(inbound::serve_with(env2.clone(), tls2.clone(), inbound));
        }
        let outbound = outbound::OutboundConfig {
            request_timeout: config.request_timeout,
            telemetry,
            limits: config.limits.clone(),
        };
        seam::task::spawn(outbound::serve_with(
            env2.clone(),
            tls2.clone(),
            discovery.clone(),
            outbound,
        ));
        seam::task::spawn(apply_revocations(
            tls2.clone(),
            discovery.snapshot_changes(),
            config.trust_roots.clone(),
        ));
        let mut versions = discovery.snapshot_changes();
        while discovery.version() == 0 {
            if versions.changed().await.is_err() {
                return;
            }
        }
        env2.record(
            seam::event::PROXY_READY,
            format!("v={}", discovery.version()),
        );
        let _ = ready_tx.send(true);
    });
    ProxyHandle { ready, tls }
}

/// Keeps the revocation list and trust bundle equal to the control
/// plane's, from the first snapshot on.
async fn apply_revocations(
    tls: Arc<MeshTls>,
    mut snapshots: watch::Receiver<Arc<crate::control::Snapshot>>,
    installed: Vec<CertificateDer<'static>>,
) {
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        tls.apply_published(&snapshot.config, &installed);
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_headers_and_the_ones_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", "close, x-secret".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert("keep-alive", "5".parse().unwrap());
        headers.insert("x-kept", "1".parse().unwrap());
        strip_headers(&mut headers, &[]);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn the_names_asked_for_go_with_the_hop_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("te", "trailers".parse().unwrap());
        headers.insert(PEER_IDENTITY_HEADER, "spiffe://x/y".parse().unwrap());
        headers.append("x-kept", "1".parse().unwrap());
        headers.append("x-kept", "2".parse().unwrap());
        strip_headers(&mut headers, &[PEER_IDENTITY_HEADER, http::header::HOST]);
        assert_eq!(headers.len(), 2);
        assert_eq!(headers.get_all("x-kept").iter().count(), 2);
    }

    #[test]
    fn every_hop_by_hop_name_goes_and_a_clean_map_is_untouched() {
        let mut headers = HeaderMap::new();
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
            "te",
            "trailer",
        ] {
            headers.insert(HeaderName::from_static(name), "x".parse().unwrap());
        }
        headers.insert("connection", "Keep-Alive, X-Named".parse().unwrap());
        headers.insert("x-named", "1".parse().unwrap());
        headers.insert("x-kept", "1".parse().unwrap());
        strip_headers(&mut headers, &[]);
        assert_eq!(headers.keys().collect::<Vec<_>>(), ["x-kept"]);
        let clean = headers.clone();
        strip_headers(&mut headers, &[]);
        assert_eq!(headers, clean);
    }
}
