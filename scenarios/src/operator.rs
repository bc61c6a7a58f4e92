//! The operator host: applies scheduled config changes through the control
//! plane's API, over mTLS, as a human or CI pipeline would. It is a real
//! client, so a partition between it and the control plane delays the
//! change exactly as it would in production.

use std::sync::Arc;
use std::time::Duration;

use mesh::MeshError;
use mesh::config::MeshConfig;
use mesh::proxy::certify;
use mesh::tls::MeshTls;
use seam::HostEnv;

use crate::spec::Scenario;
use crate::topology::Install;

/// One scheduled change.
#[derive(Clone, Debug)]
pub struct Step {
    /// When, from the start of the run.
    pub at: Duration,
    /// The config to apply.
    pub config: MeshConfig,
}

/// What the operator applies, and when (sim time from the run's start;
/// scenario times are relative to the end of the warmup).
pub fn schedule(scenario: &Scenario) -> Vec<Step> {
    let warmup = scenario.workload.warmup.0;
    scenario
        .faults
        .iter()
        .filter_map(|f| {
            Some(Step {
                at: warmup + f.at.0,
                config: f.operator_config()?.clone(),
            })
        })
        .collect()
}

/// Attempts per step before giving up (the trace records every failure).
const ATTEMPTS_MAX: u32 = 60;
/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Deadline per attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the schedule, then idles (a host that returns would end nothing).
pub async fn run(install: Arc<Install>, env: HostEnv, steps: Vec<Step>) -> Result<(), MeshError> {
    let started = tokio::time::Instant::now();
    let tls = Arc::new(MeshTls::new(env.clock.clone(), install.trust_roots.clone()));
    tokio::spawn(certify::run(
        env.clone(),
        tls.clone(),
        install.certify(install.operator_identity()),
    ));
    let control = install.control_upstream();
    for step in steps {
        tokio::time::sleep_until(started + step.at).await;
        apply_with_retries(&env, &tls, &control, &step.config).await;
    }
    std::future::pending().await
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
