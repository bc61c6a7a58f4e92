//! `meshsim shrink`: a failing seed's minimal scenario, written to a file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use search::explore::ScenarioSource;
use search::shrink::{ShrinkError, ShrinkOptions, shrink};

use super::BadInput;

/// What `meshsim shrink` was asked.
pub(crate) struct Request {
    pub scenario: PathBuf,
    pub seed: u64,
    pub out: PathBuf,
    pub swarm: bool,
    pub check: Option<String>,
    pub runs_max: usize,
}

pub(crate) fn run(request: Request) -> anyhow::Result<ExitCode> {
    let source = ScenarioSource::load(&request.scenario).map_err(|e| BadInput(e.to_string()))?;
    let options = ShrinkOptions {
        seed: request.seed,
        swarm: request.swarm,
        check: request.check.clone(),
        runs_max: request.runs_max,
    };
    let mut log = |line: &str| eprintln!("shrink: {line}");
    let shrunk = match shrink(&source, &options, &mut log) {
        Ok(shrunk) => shrunk,
        Err(error @ ShrinkError::Nondeterministic { .. }) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(BadInput(error.to_string()).into()),
    };
    let text = shrunk
        .file_text(&request.scenario, &request.out, request.seed, request.swarm)
        .context("rendering the shrunk scenario")?;
    if let Some(dir) = request.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&request.out, text)
        .with_context(|| format!("writing {}", request.out.display()))?;
    println!(
        "shrunk seed {} of {}: {} -> {} fault actions, workload {:?} -> {:?}, {} simulations",
        request.seed,
        request.scenario.display(),
        shrunk.actions.0,
        shrunk.actions.1,
        shrunk.workload.0,
        shrunk.workload.1,
        shrunk.runs
    );
    println!("  fails      {}: {}", shrunk.target, shrunk.detail);
    println!("  wrote      {}", request.out.display());
    println!("  replay     meshsim run {}", request.out.display());
    Ok(ExitCode::SUCCESS)
}
