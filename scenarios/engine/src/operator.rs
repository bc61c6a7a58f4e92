//! The operator host: applies scheduled config changes through the control
//! plane's API, over mTLS, as a human or CI pipeline would. It is a real
//! client, so a partition between it and the control plane delays the
//! change exactly as it would in production.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mesh::client::{Upstream, certify};
use mesh::config::MeshConfig;
use mesh::tls::MeshTls;
use mesh::{MeshError, SpiffeId, ports};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use seam::{HostEnv, LOCALHOST};

use sim::{ControlAction, ControlHook, ControlOutcome};

use crate::install::{Install, Role};
use spec::{ActionKind, Scenario};

/// Work for the operator host, in order.
#[derive(Clone, Debug)]
pub enum Job {
    /// Apply a config through the control plane.
    Apply(MeshConfig),
    /// Root rotation: add the new root to the bundle, re-issue, remove the
    /// old root.
    RotateRoot,
    /// Issuer rotation: a new intermediate under the same root.
    RotateIssuer,
}

/// Jobs waiting for the operator host, in order.
#[derive(Clone, Default)]
pub struct OperatorQueue(Arc<Mutex<VecDeque<Job>>>);

impl OperatorQueue {
    fn push(&self, job: Job) {
        self.0.lock().expect("queue poisoned").push_back(job);
    }

    fn pop(&self) -> Option<Job> {
        self.0.lock().expect("queue poisoned").pop_front()
    }
}

/// Whether the scenario schedules anything the operator performs, or has
/// a check that needs the operator's audit probes.
pub fn needed(scenario: &Scenario) -> bool {
    let acts = scenario.faults.iter().any(|f| {
        matches!(
            f.action.get_ref(),
            ActionKind::ApplyConfig
                | ActionKind::Revoke
                | ActionKind::RotateRoot
                | ActionKind::RotateIssuer
        )
    });
    acts || audits(scenario)
}

/// Whether the operator host probes the workloads (plaintext and an expired
/// certificate) for the identity checks.
fn audits(scenario: &Scenario) -> bool {
    scenario
        .checks
        .iter()
        .filter_map(|c| c.property)
        .any(checks::identity::needs_audit)
}

/// The simulator's control hook: turns scheduled control actions into
/// jobs the operator host performs through the control plane and the CA,
/// so the change takes the same path (and the same partitions) as in
/// production.
pub struct OperatorHook {
    install: Arc<Install>,
    current: MeshConfig,
}

impl OperatorHook {
    /// A hook starting from the scenario's initial config.
    pub fn new(install: Arc<Install>) -> Self {
        let current = install.mesh_config();
        OperatorHook { install, current }
    }

    fn queue(&mut self, config: MeshConfig, what: String) -> ControlOutcome {
        if let Err(e) = config.validate() {
            return ControlOutcome::Refused(e.to_string());
        }
        self.current = config.clone();
        self.install.operator.push(Job::Apply(config));
        ControlOutcome::Applied(format!("{what} queued for the operator host"))
    }
}

impl ControlHook for OperatorHook {
    fn apply(&mut self, _at: Duration, action: &ControlAction) -> ControlOutcome {
        match action {
            ControlAction::ApplyConfig { config_json } => {
                match serde_json::from_str::<MeshConfig>(config_json) {
                    Ok(config) => self.queue(config, "apply_config".into()),
                    Err(e) => ControlOutcome::Refused(format!("invalid mesh config: {e}")),
                }
            }
            ControlAction::RevokeIdentity { service } => {
                let mut config = self.current.clone();
                config
                    .revoked
                    .insert(self.install.identity(None, service).to_string());
                self.queue(config, format!("revoke {service}"))
            }
            ControlAction::RotateRoot => {
                self.install.operator.push(Job::RotateRoot);
                ControlOutcome::Applied("rotate_root queued for the operator host".into())
            }
            ControlAction::RotateIssuer => {
                self.install.operator.push(Job::RotateIssuer);
                ControlOutcome::Applied("rotate_issuer queued for the operator host".into())
            }
        }
    }
}

/// How often the operator looks for queued work.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Attempts per step before giving up (the trace records every failure).
const ATTEMPTS_MAX: u32 = 60;
/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Deadline per attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the operator lets a new trust bundle reach every proxy before
/// the CA signs with the new root (watches deliver in milliseconds; the
/// margin covers a reconnecting proxy's backoff).
const BUNDLE_PROPAGATION: Duration = Duration::from_secs(15);
/// Extra wait, beyond one leaf lifetime, before the old root is removed.
const REISSUE_MARGIN: Duration = Duration::from_secs(15);
/// Time between audit rounds.
const AUDIT_INTERVAL: Duration = Duration::from_secs(10);
/// Deadline of one audit probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the operator host knows while it works.
struct Operator {
    install: Arc<Install>,
    env: HostEnv,
    tls: Arc<MeshTls>,
    control: Upstream,
    ca: Upstream,
    /// The last config it applied (rotation re-applies it with a new bundle).
    last: MeshConfig,
    /// The bundle it publishes; `None`: the installed one.
    bundle: Option<Vec<String>>,
}

/// Performs queued jobs as they arrive, forever; audits the workloads if
/// the scenario's checks need it.
pub async fn run(install: Arc<Install>, env: HostEnv) -> Result<(), MeshError> {
    let tls = Arc::new(MeshTls::for_host(&env, install.trust_roots.clone()));
    seam::task::spawn(certify::run(
        env.clone(),
        tls.clone(),
        install.certify(install.operator_identity()),
    ));
    if audits(&install.scenario) {
        seam::task::spawn(audit(install.clone(), env.clone(), tls.clone()));
    }
    let mut operator = Operator {
        control: install.control_upstream(),
        ca: install.ca_upstream(),
        last: install.mesh_config(),
        bundle: None,
        install,
        env,
        tls,
    };
    loop {
        match operator.install.operator.pop() {
            Some(Job::Apply(config)) => {
                operator.last = config;
                operator.apply_current().await;
            }
            Some(Job::RotateRoot) => operator.rotate_root().await,
            Some(Job::RotateIssuer) => {
                let _ = operator.ca_step("issuer").await;
            }
            None => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

impl Operator {
    /// Applies the last config with the bundle the operator publishes.
    async fn apply_current(&mut self) -> bool {
        let mut config = self.last.clone();
        config.trust_bundle = self.bundle.clone().unwrap_or_default();
        apply_with_retries(&self.env, &self.tls, &self.control, &config).await
    }

    /// Add the new root, let it propagate, sign with it, wait one leaf
    /// lifetime (every leaf is then re-issued or expired), remove the old.
    async fn rotate_root(&mut self) {
        let started = tokio::time::Instant::now();
        self.env
            .record(seam::event::CERT_ROTATION, "step=start kind=root");
        let Some(both) = self.ca_step("root/prepare").await else {
            return;
        };
        self.publish(both).await;
        self.env
            .record(seam::event::CERT_ROTATION, "step=bundle_published");
        tokio::time::sleep(BUNDLE_PROPAGATION).await;
        if self.ca_step("root/activate").await.is_none() {
            return;
        }
        self.env
            .record(seam::event::CERT_ROTATION, "step=new_issuer_active");
        tokio::time::sleep(self.install.scenario.mesh.leaf_ttl.0 + REISSUE_MARGIN).await;
        let Some(new_only) = self.ca_step("root/retire").await else {
            return;
        };
        self.publish(new_only).await;
        self.env.record(
            seam::event::CERT_ROTATION,
            format!(
                "step=old_root_removed took_ms={}",
                started.elapsed().as_millis()
            ),
        );
    }

    /// Trusts `bundle` itself, then publishes it through the control plane.
    async fn publish(&mut self, bundle: Vec<String>) {
        if let Ok(roots) = mesh::tls::bundle_from_pem(&bundle) {
            self.tls.set_roots(roots);
        }
        self.bundle = Some(bundle);
        self.apply_current().await;
    }

    /// One rotation step at the CA, with retries; the bundle it answers.
    async fn ca_step(&self, step: &str) -> Option<Vec<String>> {
        for attempt in 1..=ATTEMPTS_MAX {
            let call = tokio::time::timeout(ATTEMPT_TIMEOUT, self.ca_call(step)).await;
            match call {
                Ok(Ok(bundle)) => {
                    self.env.record(
                        seam::event::CERT_ROTATION,
                        format!("ca_step={step} attempt={attempt} roots={}", bundle.len()),
                    );
                    return Some(bundle);
                }
                Ok(Err(e)) => self.env.record(
                    "operator.ca_failed",
                    format!("step={step} attempt={attempt} err={e}"),
                ),
                Err(_) => self.env.record(
                    "operator.ca_failed",
                    format!("step={step} attempt={attempt} err=timed out"),
                ),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        self.env.record(
            seam::event::CERT_ROTATION,
            format!("step=abandoned at={step}"),
        );
        None
    }

    async fn ca_call(&self, step: &str) -> Result<Vec<String>, MeshError> {
        let io = self.ca.open(&self.env, &self.tls).await?;
        let request = http::Request::post(format!("/v1/rotate/{step}"))
            .header(http::header::HOST, self.ca.host.as_str())
            .body(mesh::http::Body::default())
            .map_err(|e| MeshError::BadRequest(e.to_string()))?;
        let response = mesh::client::pool::send_once(io, &request, 256 * 1024).await?;
        if response.status() != http::StatusCode::OK {
            return Err(MeshError::Status(response.status().as_u16()));
        }
        let pem = mesh::http::body_bytes(response.body());
        CertificateDer::pem_slice_iter(&pem)
            .map(|cert| {
                cert.map(|der| mesh::ca::pem_encode("CERTIFICATE", der.as_ref()))
                    .map_err(MeshError::cert)
            })
            .collect()
    }
}

async fn apply_with_retries(
    env: &HostEnv,
    tls: &MeshTls,
    control: &Upstream,
    config: &MeshConfig,
) -> bool {
    for attempt in 1..=ATTEMPTS_MAX {
        let outcome = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            mesh::control::apply_config(env, tls, control, config),
        )
        .await;
        match outcome {
            Ok(Ok(version)) => {
                env.record("operator.applied", format!("v={version} attempt={attempt}"));
                return true;
            }
            Ok(Err(e)) => env.record(
                "operator.apply_failed",
                format!("attempt={attempt} err={e}"),
            ),
            Err(_) => env.record(
                "operator.apply_failed",
                format!("attempt={attempt} err=timed out"),
            ),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    false
}

/// Probes every workload's inbound port, every [`AUDIT_INTERVAL`], the way
/// an attacker on the network would: in plaintext, and with a certificate
/// for a real mesh identity, chained to the real issuer, that has expired.
/// Each outcome (`refused`, or `answered:<status>`) goes in the trace as
/// `cert.audit`; the identity checks count them. A probe that gets an HTTP
/// answer is a breach.
async fn audit(install: Arc<Install>, env: HostEnv, operator_tls: Arc<MeshTls>) {
    let targets: Vec<(String, SpiffeId)> = install
        .hosts()
        .into_iter()
        .filter_map(|(host, role)| match role {
            Role::Workload(service) => Some((host, install.identity(None, service.name.get_ref()))),
            _ => None,
        })
        .collect();
    let expired = match expired_credentials(&install, &env) {
        Ok(tls) => tls,
        Err(e) => {
            env.record(
                seam::event::CERT_AUDIT,
                format!("probe=setup outcome=failed err={e}"),
            );
            return;
        }
    };
    loop {
        tokio::time::sleep(AUDIT_INTERVAL).await;
        // The prober trusts what the mesh trusts now (root rotation).
        expired.set_roots(operator_tls.roots());
        for (host, identity) in &targets {
            let outcome = probe_plaintext(&env, host).await;
            env.record(
                seam::event::CERT_AUDIT,
                format!("probe=plaintext host={host} outcome={outcome}"),
            );
            let outcome = probe_with(&env, &expired, host, identity).await;
            env.record(
                seam::event::CERT_AUDIT,
                format!("probe=expired host={host} outcome={outcome}"),
            );
        }
    }
}

/// TLS state holding a leaf for the operator's identity, signed by the
/// installed issuer, whose validity ended two lifetimes ago.
fn expired_credentials(install: &Install, env: &HostEnv) -> Result<MeshTls, MeshError> {
    let mesh = &install.scenario.mesh;
    let ttl = mesh.leaf_ttl.0;
    let mut authority = install.ca_authority(&seam::MemDisk::default())?;
    let identity = install.operator_identity();
    let (key, pkcs8) =
        mesh::identity::derive_key(mesh.key_algorithm, env.seed.child("audit-expired-key"))?;
    let csr = mesh::identity::certificate_request(&identity, &key)?;
    let long_ago = env.clock.wall() - ttl * 3;
    let chain = authority.sign(&csr, &identity, long_ago)?;
    let tls = MeshTls::for_host(env, install.trust_roots.clone());
    tls.install(chain, pkcs8.into())?;
    Ok(tls)
}

async fn probe_plaintext(env: &HostEnv, host: &str) -> String {
    let attempt = async {
        let io = env.net.connect(host, ports::PROXY_INBOUND).await.ok()?;
        request_status(io).await
    };
    outcome(tokio::time::timeout(PROBE_TIMEOUT, attempt).await)
}

async fn probe_with(env: &HostEnv, tls: &MeshTls, host: &str, identity: &SpiffeId) -> String {
    let attempt = async {
        let io = env.net.connect(host, ports::PROXY_INBOUND).await.ok()?;
        // TLS 1.3: a refused client certificate only shows on first use.
        let stream = tls.connect(io, identity, &[b"http/1.1"], true).await.ok()?;
        request_status(stream).await
    };
    outcome(tokio::time::timeout(PROBE_TIMEOUT, attempt).await)
}

async fn request_status<I: seam::Io>(io: I) -> Option<u16> {
    let request = http::Request::get("/")
        .header(http::header::HOST, LOCALHOST)
        .body(mesh::http::Body::from(Bytes::new()))
        .ok()?;
    let response = mesh::client::pool::send_once(Box::new(io), &request, 64 * 1024)
        .await
        .ok()?;
    Some(response.status().as_u16())
}

fn outcome(result: Result<Option<u16>, tokio::time::error::Elapsed>) -> String {
    match result {
        Ok(Some(status)) => format!("answered:{status}"),
        _ => "refused".into(),
    }
}
