//! `meshsim import isotope FILE.yaml`: prints the scenario that an isotope
//! topology (`kind: MockServiceGraph`) becomes, for the user to edit and
//! run. Any isotope field the import does not understand is an error with
//! its `file:line:column` (exit 2).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::BadInput;

/// Arguments of `meshsim import isotope`.
#[derive(clap::Args)]
pub struct Args {
    /// The isotope topology YAML.
    file: PathBuf,
}

/// Imports the topology and prints the scenario on stdout.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| BadInput(format!("{}: {e}", args.file.display())))?;
    let scenario =
        spec::import::isotope_scenario(&args.file, &text).map_err(|e| BadInput(e.to_string()))?;
    print!("{scenario}");
    Ok(ExitCode::SUCCESS)
}
