//! The applications a scenario runs behind the mesh.
//!
//! Owns the REC trading application ([`rec`]), the two-tier edge/backend
//! app, the [`synthetic`] service a scenario describes by its endpoints, the capacity model every app shares (concurrency slots, seeded
//! service times, the slow-host factor) and the independent [`ledger`]
//! checker that judges REC runs.
//!
//! May import `spec`, `mesh` (its client side), `seam`, `loadgen` (the
//! client mix) and `reports` (check records). Must never import the engine,
//! the checks crate or `sim`: an app is host software, and knows nothing of
//! the world it runs in.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod ledger;
pub mod rec;
pub mod synthetic;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use loadgen::Completion;
use reports::Check;
use seam::HostEnv;
use spec::{AppKind, Scenario};

pub use ledger::Evidence;
pub use rec::run_app as run_service;

/// What the engine needs from the application a scenario's load targets,
/// so that it never names the REC app: the operations the load generator
/// sends, which completions are evidence, the final read at the end of the
/// run, and the app's own checks.
pub trait App: Send + Sync {
    /// Records `completion` if this app's checks need it.
    fn observe(&self, completion: &Completion, evidence: &mut Evidence);
    /// Reads the final state back through the load generator's sidecar,
    /// after the load; `None` when the app has nothing to read.
    fn final_read<'a>(
        &'a self,
        env: &'a HostEnv,
    ) -> Pin<Box<dyn Future<Output = Option<Evidence>> + Send + 'a>>;
    /// The app's own checks over what it observed.
    fn checks(&self, evidence: &Evidence) -> Vec<Check>;
}

/// The app the scenario's workload targets.
pub fn for_scenario(scenario: &Scenario) -> Arc<dyn App> {
    let target = scenario.workload.target.get_ref();
    let gateway = scenario
        .services
        .iter()
        .any(|s| s.name.get_ref() == target && s.app == AppKind::Gateway);
    if gateway {
        Arc::new(RecLedger {
            app: scenario.app.clone(),
        })
    } else {
        Arc::new(Unjudged)
    }
}

/// The operations the load generator draws from (every app reads the
/// same `[[workload.mix]]`; the REC genesis gives them their accounts).
pub fn client_mix(scenario: &Scenario) -> Vec<loadgen::Operation> {
    rec::workload::client_mix(
        &scenario.workload.mix,
        &rec::genesis::Genesis::new(&scenario.app),
    )
}

/// The REC trading app, judged by the independent ledger checker.
struct RecLedger {
    app: spec::AppSpec,
}

impl App for RecLedger {
    fn observe(&self, c: &Completion, evidence: &mut Evidence) {
        if ledger::is_write(&c.op) {
            evidence.observations.push(ledger::Observation {
                seq: c.seq,
                op: c.op.clone(),
                status: c.status,
                body: c.body.clone(),
            });
        }
    }

    fn final_read<'a>(
        &'a self,
        env: &'a HostEnv,
    ) -> Pin<Box<dyn Future<Output = Option<Evidence>> + Send + 'a>> {
        Box::pin(async move {
            let read = rec::workload::final_read(env, &self.app).await;
            Some(Evidence {
                observations: Vec::new(),
                final_state: Some(read),
            })
        })
    }

    fn checks(&self, evidence: &Evidence) -> Vec<Check> {
        ledger::checks(&rec::genesis::Genesis::new(&self.app), evidence)
    }
}

/// An app with no checks of its own (edge/backend, or load aimed at a tier
/// directly): the mesh and SLO checks judge it.
struct Unjudged;

impl App for Unjudged {
    fn observe(&self, _: &Completion, _: &mut Evidence) {}

    fn final_read<'a>(
        &'a self,
        _: &'a HostEnv,
    ) -> Pin<Box<dyn Future<Output = Option<Evidence>> + Send + 'a>> {
        Box::pin(async { None })
    }

    fn checks(&self, _: &Evidence) -> Vec<Check> {
        Vec::new()
    }
}
