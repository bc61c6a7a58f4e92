//! `meshsim import mesh FILE…`: prints the `[mesh]` TOML that Istio,
//! Linkerd and Gateway API YAML becomes, so a user sees what a scenario's
//! `[mesh] import` would understand. Warnings (fields read but not
//! modelled) go to stderr with `file:line:column`; `--strict` makes them
//! errors (exit 2).

use std::path::PathBuf;
use std::process::ExitCode;

use spec::Scenario;
use spec::import::{ImportContext, import_files};

use crate::BadInput;

/// Arguments of `meshsim import mesh`.
#[derive(clap::Args)]
pub struct Args {
    /// YAML files (multi-document files and `kind: List` are read whole).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Check service names against this scenario's `[[services]]` and take
    /// its trust domain and namespace; without it any service name is
    /// accepted.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Fail (exit 2) on the first field that is read but not modelled.
    #[arg(long)]
    strict: bool,
}

/// Imports the files and prints the result.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let context = match &args.scenario {
        Some(path) => {
            let scenario = Scenario::load(path).map_err(|e| BadInput(e.to_string()))?;
            ImportContext {
                services: scenario
                    .services
                    .iter()
                    .map(|s| s.name.get_ref().clone())
                    .collect(),
                trust_domain: scenario.mesh.trust_domain.clone(),
                namespace: scenario.mesh.namespace.clone(),
            }
        }
        None => {
            let defaults = spec::MeshSpec::default();
            ImportContext {
                services: Vec::new(),
                trust_domain: defaults.trust_domain,
                namespace: defaults.namespace,
            }
        }
    };
    let imported = import_files(&args.files, &context).map_err(|e| BadInput(e.to_string()))?;
    if args.strict
        && let Some(first) = imported.warnings.first()
    {
        return Err(BadInput(format!("{first} (--strict)")).into());
    }
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", imported.to_toml());
    Ok(ExitCode::SUCCESS)
}
