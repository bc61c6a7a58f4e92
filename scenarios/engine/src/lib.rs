//! Runs a scenario: provisioning ([`install`]), the software of every host,
//! the run itself on the simulated or the real world ([`run`],
//! [`realworld`]), the operator and rogue hosts, the deployable mesh
//! ([`deploy`]) and the run's outputs ([`output`]).
//!
//! May import `spec`, `apps`, `checks` and everything below them. Must never
//! import `search` or the CLI: many-run drivers sit above one run.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod deploy;
pub mod install;
pub mod netns;
pub mod operator;
pub mod output;
pub mod plan;
pub mod realworld;
pub mod rogue;
pub mod run;

pub use plan::{RunPlan, VariantPlan, load_plan};
pub use run::{
    EngineError, RealOptions, RunOutput, run_real, run_real_scaled, run_real_with, run_sim,
};
