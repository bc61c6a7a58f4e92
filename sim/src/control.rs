//! The hook through which scheduled control-plane actions reach the mesh.
//!
//! Rotating a root, revoking an identity or pushing a config needs the CA's
//! or the control plane's state, which this crate never sees. The world
//! calls a [`ControlHook`] at the action's sim time, between two steps and
//! outside every host, and records the outcome in the trace.

use std::time::Duration;

use crate::faults::ControlAction;

/// What became of a control action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlOutcome {
    /// Done; the detail says what changed.
    Applied(String),
    /// The handler cannot perform this action (yet); the run continues
    /// without it, and the trace says so.
    Unsupported(String),
    /// The handler tried and the mesh refused (e.g. an invalid config).
    Refused(String),
}

impl std::fmt::Display for ControlOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlOutcome::Applied(detail) => write!(f, "applied: {detail}"),
            ControlOutcome::Unsupported(detail) => write!(f, "unsupported: {detail}"),
            ControlOutcome::Refused(detail) => write!(f, "refused: {detail}"),
        }
    }
}

/// Performs control actions for a run.
///
/// Implementations must be deterministic: the outcome may depend only on
/// the action, `at`, and state the simulation itself produced.
pub trait ControlHook {
    /// Performs `action` at sim time `at`.
    fn apply(&mut self, at: Duration, action: &ControlAction) -> ControlOutcome;
}

/// A hook that performs nothing and reports every action as unsupported,
/// for worlds that have no control plane (unit tests, benches).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoControl;

impl ControlHook for NoControl {
    fn apply(&mut self, _at: Duration, action: &ControlAction) -> ControlOutcome {
        ControlOutcome::Unsupported(format!("{action}: this world has no control hook"))
    }
}
