//! The sidecar proxy: identity client, discovery, inbound and outbound
//! listeners, all sharing one [`MeshTls`].

pub mod certify;
pub mod inbound;
pub mod outbound;
pub mod pool;

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use seam::HostEnv;
use tokio::sync::watch;

use crate::control::{Discovery, Endpoint, Registration};
use crate::tls::MeshTls;
use crate::{SpiffeId, ports};

/// The header in which the inbound proxy tells the app who called. The
/// proxy overwrites whatever a caller put there.
pub const PEER_IDENTITY_HEADER: &str = "x-meshsim-peer-identity";

/// A mesh service the proxy talks to directly (CA, control plane).
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Identity it must prove.
    pub identity: SpiffeId,
}

/// Sidecar configuration.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The service this workload belongs to.
    pub service: String,
    /// How to get the workload certificate.
    pub certify: certify::CertifyConfig,
    /// Where the control plane is.
    pub control: Upstream,
    /// Trust bundle.
    pub trust_roots: Vec<CertificateDer<'static>>,
    /// Whether a local app serves traffic (false: outbound only, e.g. the
    /// load generator's sidecar).
    pub inbound: bool,
    /// Per-request deadline on the outbound side.
    pub request_timeout: Duration,
}

/// A running sidecar.
pub struct ProxyHandle {
    /// Becomes true once the proxy holds a certificate and a snapshot.
    pub ready: watch::Receiver<bool>,
    /// The proxy's TLS state (tests and telemetry read it).
    pub tls: Arc<MeshTls>,
}

/// Starts every sidecar task on the current runtime and returns at once.
pub fn start(config: ProxyConfig, env: HostEnv) -> ProxyHandle {
    let tls = Arc::new(MeshTls::new(env.clock.clone(), config.trust_roots.clone()));
    tokio::spawn(certify::run(
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
    let (env2, tls2) = (env.clone(), tls.clone());
    tokio::spawn(async move {
        while tls2.leaf().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let discovery = Discovery::spawn(
            env2.clone(),
            tls2.clone(),
            config.control.clone(),
            registration,
        );
        if config.inbound {
            tokio::spawn(inbound::serve(env2.clone(), tls2.clone()));
        }
        tokio::spawn(outbound::serve(
            env2.clone(),
            tls2.clone(),
            discovery.clone(),
            config.request_timeout,
        ));
        tokio::spawn(apply_revocations(
            tls2.clone(),
            discovery.snapshot_changes(),
        ));
        let mut versions = discovery.snapshot_changes();
        while discovery.version() == 0 {
            if versions.changed().await.is_err() {
                return;
            }
        }
        env2.record("proxy.ready", format!("v={}", discovery.version()));
        let _ = ready_tx.send(true);
    });
    ProxyHandle { ready, tls }
}

/// Keeps the inbound handshake's revocation list equal to the control
/// plane's, from the first snapshot on.
async fn apply_revocations(
    tls: Arc<MeshTls>,
    mut snapshots: watch::Receiver<Arc<crate::control::Snapshot>>,
) {
    loop {
        let revoked = snapshots.borrow_and_update().config.revoked.clone();
        tls.revocations().replace(revoked);
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}
