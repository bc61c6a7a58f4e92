//! The CA's TLS endpoint: `POST /v1/certify`, the public `GET /v1/bundle`
//! and the operator-only rotation steps.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use seam::{HostEnv, Shutdown};

use crate::http::{Body, read_body, serve_connection, text};
use crate::identity::{CertInfo, SpiffeId};
use crate::tls::{ClientAuth, MeshTls};
use crate::{MeshError, ports};

use super::{Authority, pem_encode};

/// Largest CSR the CA reads.
const CSR_BYTES_MAX: usize = 16 * 1024;

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
        seam::event::CA_START,
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
    env.record(seam::event::CA_LISTEN, format!("port={}", ports::CA));
    loop {
        let (io, _) = tokio::select! {
            biased;
            _ = shutdown.wait() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        if let Err(e) = server.refresh_own_leaf() {
            env.record(seam::event::CA_SELF_CERTIFY_FAILED, e.to_string());
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
                self.env.record(seam::event::CA_REFUSE, e.to_string());
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
                .record(seam::event::CA_REFUSE, format!("rotate/{step} by {peer:?}"));
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
                    seam::event::CA_ROTATE,
                    format!("step={step} {detail} roots={}", bundle.len()),
                );
                self.tls.set_roots(bundle);
                if let Err(e) = self.refresh_own_leaf() {
                    self.env
                        .record(seam::event::CA_SELF_CERTIFY_FAILED, e.to_string());
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
            seam::event::CA_ISSUE,
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
