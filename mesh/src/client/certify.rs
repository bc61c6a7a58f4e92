//! The identity client: obtains and renews this workload's certificate.
//!
//! The key is generated here (from the seed) and only the CSR leaves. The
//! first request authenticates with the bootstrap token; renewals present the
//! current certificate. Renewal happens at a fraction of the lifetime with
//! seeded jitter; on failure the client backs off exponentially (bounded) and
//! keeps the current certificate until it expires.

use std::sync::Arc;
use std::time::Duration;

use ::http::{Request, StatusCode};
use bytes::Bytes;
use rand::Rng;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use seam::HostEnv;

use crate::client::{Upstream, pool};
use crate::identity::{CertInfo, KeyAlgorithm, SpiffeId, certificate_request};
use crate::key_source::KeyMode;
use crate::tls::MeshTls;
use crate::{MeshError, http};

/// How a workload obtains its certificate.
#[derive(Clone, Debug)]
pub struct CertifyConfig {
    /// The identity to request.
    pub identity: SpiffeId,
    /// Bootstrap token proving that identity to the CA.
    pub token: String,
    /// Where the CA is.
    pub ca: Upstream,
    /// Renew at this fraction of the lifetime (Linkerd: 0.7).
    pub renew_fraction: f64,
    /// The algorithm of the workload's key.
    pub key_algorithm: KeyAlgorithm,
    /// Where the workload's key comes from (the OS, in a real mesh).
    pub keys: KeyMode,
    /// First retry delay after a failed request.
    pub backoff_min: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
}

/// One attempt's deadline.
const CERTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests one certificate and installs it.
pub async fn certify_once(
    env: &HostEnv,
    tls: &MeshTls,
    config: &CertifyConfig,
    attempt: u64,
) -> Result<CertInfo, MeshError> {
    let source = config
        .keys
        .source(env.seed)
        .child("identity-key")
        .child(&attempt.to_string());
    // Sign the CSR deterministically (RFC 6979 for P-256), so its bytes,
    // which the CA's handshake transcript may include, replay exactly.
    let (signer, pkcs8) = crate::ca::CaKey::derive(config.key_algorithm, source)?;
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8);
    let csr = certificate_request(&config.identity, &signer)?;
    let io = env
        .net
        .connect(&config.ca.host, config.ca.port)
        .await
        .map_err(|source| MeshError::Connect {
            target: config.ca.host.clone(),
            source,
        })?;
    let present_leaf = tls.has_valid_leaf();
    let stream = tls
        .connect(io, &config.ca.identity, &[b"http/1.1"], present_leaf)
        .await?;
    let request = Request::post("/v1/certify")
        .header(::http::header::HOST, config.ca.host.as_str())
        .header(
            ::http::header::AUTHORIZATION,
            format!("Bearer {}", config.token),
        )
        .body(http::Body::from(Bytes::from(csr)))
        .map_err(|e| MeshError::BadRequest(e.to_string()))?;
    let response = pool::send_once(Box::new(stream), &request, 64 * 1024).await?;
    if response.status() != StatusCode::OK {
        let reason = String::from_utf8_lossy(&http::body_bytes(response.body())).into_owned();
        return Err(MeshError::Refused(format!(
            "{}: {reason}",
            response.status()
        )));
    }
    let chain = parse_chain(&http::body_bytes(response.body()))?;
    tls.install(chain, pkcs8.into())
}

/// Parses a PEM chain.
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, MeshError> {
    let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let chain = chain.map_err(MeshError::cert)?;
    if chain.is_empty() {
        Err(MeshError::Cert("no certificate in response".into()))
    } else {
        Ok(chain)
    }
}

/// Keeps the workload certified forever (until the host stops).
pub async fn run(env: HostEnv, tls: Arc<MeshTls>, config: CertifyConfig) {
    let mut jitter = env.seed.child("certify-jitter").rng();
    let mut backoff = config.backoff_min;
    for attempt in 0u64.. {
        let outcome =
            tokio::time::timeout(CERTIFY_TIMEOUT, certify_once(&env, &tls, &config, attempt)).await;
        let wait = match outcome {
            Ok(Ok(info)) => {
                let valid_ms = info
                    .not_after
                    .duration_since(env.clock.wall())
                    .unwrap_or_default()
                    .as_millis();
                env.record(
                    seam::event::CERT_RENEWED,
                    format!(
                        "id={} serial={} valid_ms={valid_ms}",
                        config.identity, info.serial_hex
                    ),
                );
                backoff = config.backoff_min;
                renewal_delay(
                    &env,
                    &info,
                    config.renew_fraction,
                    jitter.random_range(0.0..0.05),
                )
            }
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                env.record(
                    seam::event::CERT_RENEW_FAILED,
                    format!("id={} attempt={attempt} err={reason}", config.identity),
                );
                let wait = backoff.mul_f64(1.0 + jitter.random_range(0.0..0.25));
                backoff = (backoff * 2).min(config.backoff_max);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Time from now until `fraction (+ jitter)` of the leaf's lifetime.
fn renewal_delay(env: &HostEnv, info: &CertInfo, fraction: f64, jitter: f64) -> Duration {
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or_default();
    let renew_at = info.not_before + lifetime.mul_f64((fraction + jitter).min(0.95));
    renew_at
        .duration_since(env.clock.wall())
        .unwrap_or(Duration::from_secs(1))
}
