//! `meshsim-proxy`: one sidecar and nothing else, for `meshsim up`'s
//! processes (issue 21).
//!
//! The full `meshsim` binary carries the simulator, the reports, the search
//! and every command. A sidecar maps whatever code pages it touches, and in
//! a 120 MB binary that was most of its resident memory. This binary links
//! only what `engine::deploy::sidecar_software` reaches (the mesh crate,
//! never the scenario format, the apps or the install), and
//! `meshsim proxy` hands over to it when it sits beside `meshsim`
//! (`serve::proxy`), so `up` and scripts keep naming one binary.
//!
//! Usage: the same command line as `meshsim`'s:
//! `meshsim-proxy proxy <SERVICE> [--replica N] --state-dir DIR [--parent-pipe]`
//! (so a process list still reads `proxy <SERVICE>`).

use std::process::ExitCode;

use clap::Parser;

#[path = "../serve.rs"]
#[allow(dead_code)]
mod serve;

/// The same allocator as `meshsim` (see its `main.rs` for why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Failures that are the user's input: exit 2 (as `meshsim`).
#[derive(Debug)]
struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// `meshsim`'s command line, its `proxy` command only.
#[derive(Parser, Debug)]
#[command(name = "meshsim-proxy", version = env!("MESHSIM_REVISION"))]
enum Cli {
    /// Run one sidecar (as `meshsim proxy`).
    Proxy(serve::WorkloadArgs),
}

fn main() -> ExitCode {
    let Cli::Proxy(workload) = Cli::parse();
    // As `meshsim`'s real-time processes log: `RUST_LOG`, else `info`.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    match serve::proxy_here(workload) {
        Ok(code) => code,
        Err(error) if error.is::<BadInput>() => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(3)
        }
    }
}
