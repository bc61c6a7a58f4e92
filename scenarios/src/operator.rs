//! The operator host: applies scheduled config changes through the control
//! plane's API, over mTLS, as a human or CI pipeline would. It is a real
//! client, so a partition between it and the control plane delays the
//! change exactly as it would in production.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh::MeshError;
use mesh::config::MeshConfig;
use mesh::proxy::certify;
use mesh::tls::MeshTls;
use seam::HostEnv;

use sim::{ControlAction, ControlHook, ControlOutcome};

use crate::spec::{ActionKind, Scenario};
use crate::topology::Install;

/// Configs waiting for the operator host to apply, in order.
#[derive(Clone, Default)]
pub struct OperatorQueue(Arc<Mutex<VecDeque<MeshConfig>>>);

impl OperatorQueue {
    fn push(&self, config: MeshConfig) {
        self.0.lock().expect("queue poisoned").push_back(config);
    }

    fn pop(&self) -> Option<MeshConfig> {
        self.0.lock().expect("queue poisoned").pop_front()
    }
}

/// Whether the scenario schedules anything the operator performs.
pub fn needed(scenario: &Scenario) -> bool {
    scenario.faults.iter().any(|f| {
        matches!(
            f.action.get_ref(),
            ActionKind::ApplyConfig | ActionKind::Revoke
        )
    })
}

/// The simulator's control hook: turns scheduled control actions into
/// configs the operator host applies through the control plane, so the
/// change takes the same path (and the same partitions) as in production.
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
        self.install.operator.push(config);
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
            ControlAction::RotateRoot | ControlAction::RotateIssuer => ControlOutcome::Unsupported(
                format!("{action}: root and issuer rotation are not built yet (issue 3)"),
            ),
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

/// Applies queued configs as they arrive, forever.
pub async fn run(install: Arc<Install>, env: HostEnv) -> Result<(), MeshError> {
    let tls = Arc::new(MeshTls::new(env.clock.clone(), install.trust_roots.clone()));
    seam::task::spawn(certify::run(
        env.clone(),
        tls.clone(),
        install.certify(install.operator_identity()),
    ));
    let control = install.control_upstream();
    loop {
        match install.operator.pop() {
            Some(config) => apply_with_retries(&env, &tls, &control, &config).await,
            None => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

async fn apply_with_retries(
    env: &HostEnv,
    tls: &MeshTls,
    control: &mesh::proxy::Upstream,
    config: &MeshConfig,
) {
    for attempt in 1..=ATTEMPTS_MAX {
        let outcome = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            mesh::control::apply_config(env, tls, control, config),
        )
        .await;
        match outcome {
            Ok(Ok(version)) => {
                env.record("operator.applied", format!("v={version} attempt={attempt}"));
                return;
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
}
