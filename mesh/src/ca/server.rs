//! The CA's TLS endpoint: `POST /v1/certify`, the public `GET /v1/bundle`
//! and the operator-only rotation steps.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use seam::{HostEnv, Shutdown};

use crate::accept::{Acceptor, Admitted, CONNECTIONS_MAX};
use crate::http::{Body, read_body, serve_connection, text};
use crate::identity::{CertInfo, SpiffeId};
use crate::tls::{ClientAuth, MeshTls};
use crate::{KeyMode, MeshError, ports};

use super::{Authority, pem_encode};

/// Largest CSR the CA reads.
const CSR_BYTES_MAX: usize = 16 * 1024;
/// Largest revocation list the CA reads.
const REVOKED_BYTES_MAX: usize = 1024 * 1024;

/// How the CA host runs.
pub struct CaConfig {
    /// The CA's own server identity.
    pub identity: SpiffeId,
    /// Signing state (as provisioned; a restarted CA recovers its own from
    /// its disk instead).
    pub authority: Authority,
    /// Identities allowed to rotate roots and issuers.
    pub operators: Vec<SpiffeId>,
    /// Where later keys (new generations, the CA's own leaf) come from.
    pub keys: KeyMode,
}

struct CaServer {
    env: HostEnv,
    identity: SpiffeId,
    authority: Mutex<Authority>,
    tls: MeshTls,
    operators: Vec<SpiffeId>,
    keys: KeyMode,
    /// Failed bootstrap-token attempts per source address.
    throttle: Mutex<super::throttle::FailureThrottle>,
    /// When the CA's own server leaf should be replaced, and by which issuer
    /// generation it was signed.
    own_leaf: Mutex<(SystemTime, u32)>,
}

/// Serves `POST /v1/certify` (and, for operators, the rotation steps under
/// `/v1/rotate/…`) over TLS until shutdown. State lives on `env.disk`.
pub async fn run(config: CaConfig, env: HostEnv, mut shutdown: Shutdown) -> Result<(), MeshError> {
    let mut authority = config.authority;
    let recovered = authority.persist_on(
        env.disk.clone(),
        config.keys.source(env.seed).child("ca-generations"),
    )?;
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
        keys: config.keys,
        throttle: Mutex::default(),
        own_leaf: Mutex::new((SystemTime::UNIX_EPOCH, 0)),
    });
    server.refresh_own_leaf()?;
    let listener = env.net.bind(ports::CA).await?;
    let mut acceptor = Acceptor::new(listener, CONNECTIONS_MAX, &env, "ca");
    env.record(seam::event::CA_LISTEN, format!("port={}", ports::CA));
    loop {
        let Admitted {
            io,
            peer: source,
            slot,
        } = tokio::select! {
            biased;
            _ = shutdown.wait() => return Ok(()),
            admitted = acceptor.next() => admitted,
        };
        if let Err(e) = server.refresh_own_leaf() {
            env.record(seam::event::CA_SELF_CERTIFY_FAILED, e.to_string());
        }
        let server = server.clone();
        seam::task::spawn(async move {
            let _slot = slot;
            // A connection that never finishes its handshake is reaped.
            let handshake = server.tls.accept(io, ClientAuth::Optional, &[b"http/1.1"]);
            let Ok(Ok((stream, peer))) =
                tokio::time::timeout(crate::http::HEADER_READ_TIMEOUT, handshake).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let peer = peer.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(server.handle(req, peer, source.ip()).await)
                }
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
        let source = self.keys.source(self.env.seed).child("ca-server-key");
        let (chain, key) = authority.self_certify(&self.identity, source, now)?;
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

    async fn handle(
        &self,
        req: Request<Incoming>,
        peer: Option<SpiffeId>,
        source: std::net::IpAddr,
    ) -> Response<Body> {
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
        if path == "/v1/revoke" {
            return self.revoke(req, peer.as_ref()).await;
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
        if peer.is_none() && !self.token_attempt_allowed(source) {
            self.env.record(
                seam::event::CA_REFUSE,
                "too many failed bootstrap tokens".to_owned(),
            );
            return text(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed bootstrap tokens from this address; retry later",
            );
        }
        let anonymous = peer.is_none();
        match self.certify(&csr, token.as_deref(), peer) {
            Ok(pem) => Response::new(Body::from(Bytes::from(pem))),
            Err(e) => {
                if anonymous {
                    self.throttle
                        .lock()
                        .expect("throttle poisoned")
                        .failed(source, tokio::time::Instant::now());
                }
                self.env.record(seam::event::CA_REFUSE, e.to_string());
                text(StatusCode::FORBIDDEN, &e.to_string())
            }
        }
    }

    fn token_attempt_allowed(&self, source: std::net::IpAddr) -> bool {
        self.throttle
            .lock()
            .expect("throttle poisoned")
            .allows(source, tokio::time::Instant::now())
    }

    /// `POST /v1/revoke`, operators only: the body is the whole revoked set,
    /// one SPIFFE ID or hex serial a line (the control plane's `revoked`).
    /// A revoked certificate then fails the CA's handshake, so it is never
    /// proof for a renewal, and a revoked identity is never issued to, even
    /// with its bootstrap token.
    async fn revoke(&self, req: Request<Incoming>, peer: Option<&SpiffeId>) -> Response<Body> {
        if !peer.is_some_and(|p| self.operators.contains(p)) {
            self.env
                .record(seam::event::CA_REFUSE, format!("revoke by {peer:?}"));
            return text(StatusCode::FORBIDDEN, "revocation is for operators");
        }
        let body = match read_body(req.into_body(), REVOKED_BYTES_MAX).await {
            Ok(bytes) => bytes,
            Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let revoked: std::collections::BTreeSet<String> = String::from_utf8_lossy(&body)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect();
        self.env
            .record(seam::event::CA_ROTATE, format!("revoked={}", revoked.len()));
        self.tls.revocations().replace(revoked.clone());
        self.authority
            .lock()
            .expect("authority poisoned")
            .set_revoked(revoked);
        text(StatusCode::OK, "revoked")
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
                .identity_for_token(token, self.env.clock.wall())?
                .clone(),
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
