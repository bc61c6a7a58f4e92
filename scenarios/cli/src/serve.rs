//! `meshsim ca serve`, `meshsim control serve`, `meshsim proxy`, `meshsim app`:
//! one mesh component per process, reading the state directory `meshsim up`
//! wrote. Each runs until SIGINT or SIGTERM (or, under `up`, until its
//! parent closes the pipe on its stdin, so no child outlives `up`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use engine::deploy::{self, Part};

/// What every component process needs.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// The state directory `meshsim up` wrote (mesh.json, ca.pem, …).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Exit when stdin closes (set by `meshsim up` for its children).
    #[arg(long, hide = true)]
    pub parent_pipe: bool,
}

/// `meshsim ca …` and `meshsim control …`.
#[derive(Subcommand, Clone, Debug)]
pub enum ServeCommand {
    /// Serve until stopped.
    Serve(ServeArgs),
}

/// One workload replica: `<service>` and `--replica`.
#[derive(Args, Clone, Debug)]
pub struct WorkloadArgs {
    /// The service (a `[[services]]` name of the scenario).
    pub service: String,
    /// Which replica (host `<service>-<replica>`).
    #[arg(long, default_value_t = 0)]
    pub replica: u32,
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl WorkloadArgs {
    fn host(&self) -> String {
        format!("{}-{}", self.service, self.replica)
    }
}

/// Runs the CA.
pub fn ca(command: ServeCommand) -> anyhow::Result<ExitCode> {
    let ServeCommand::Serve(args) = command;
    run_part(&args, Part::Ca)
}

/// Runs the control plane.
pub fn control(command: ServeCommand) -> anyhow::Result<ExitCode> {
    let ServeCommand::Serve(args) = command;
    run_part(&args, Part::Control)
}

/// The sidecar-only binary `meshsim proxy` hands over to.
pub const SLIM_PROXY_BINARY: &str = "meshsim-proxy";

/// Set (to anything) to keep `meshsim proxy` in the full binary.
pub const NO_SLIM_PROXY_ENV: &str = "MESHSIM_NO_SLIM_PROXY";

/// Runs one sidecar: in `meshsim-proxy` when it sits beside this binary
/// (the process becomes it, same pid and stdin, without the full binary's
/// code pages resident: BENCHMARKS.md, "Issue 21"), else here.
pub fn proxy(args: WorkloadArgs) -> anyhow::Result<ExitCode> {
    if let Some(slim) = slim_proxy() {
        use std::os::unix::process::CommandExt as _;
        let mut command = std::process::Command::new(&slim);
        command
            .arg("proxy")
            .arg(&args.service)
            .arg("--replica")
            .arg(args.replica.to_string())
            .arg("--state-dir")
            .arg(&args.serve.state_dir);
        if args.serve.parent_pipe {
            command.arg("--parent-pipe");
        }
        // Returns only if the exec failed; then this process serves.
        let error = command.exec();
        tracing::warn!(binary = %slim.display(), %error, "serving in the full binary");
    }
    proxy_here(args)
}

/// Runs one sidecar in this process. It reads only what `up` wrote for
/// sidecars (`deploy::sidecar_software`), never the scenario, so
/// `meshsim-proxy` links none of the scenario format, apps or install.
pub fn proxy_here(args: WorkloadArgs) -> anyhow::Result<ExitCode> {
    let software = deploy::sidecar_software(&args.serve.state_dir, &args.host())
        .map_err(|e| crate::BadInput(e.to_string()))?;
    let part = Part::Proxy { host: args.host() };
    run_software(&args.serve, part.label(), software)
}

/// `meshsim-proxy` beside the running binary, unless switched off.
fn slim_proxy() -> Option<PathBuf> {
    if std::env::var_os(NO_SLIM_PROXY_ENV).is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    if exe.file_name()? == SLIM_PROXY_BINARY {
        return None;
    }
    let slim = exe.with_file_name(SLIM_PROXY_BINARY);
    slim.is_file().then_some(slim)
}

/// Runs one app.
pub fn app(args: WorkloadArgs) -> anyhow::Result<ExitCode> {
    run_part(&args.serve, Part::App { host: args.host() })
}

/// One component on a single-threaded runtime (a sidecar is one core's
/// worth of work, like Linkerd's proxy by default).
fn run_part(args: &ServeArgs, part: Part) -> anyhow::Result<ExitCode> {
    let software = deploy::part_software(&args.state_dir, &part)
        .map_err(|e| crate::BadInput(e.to_string()))?;
    run_software(args, part.label(), software)
}

/// Runs `software` on a current-thread runtime until it ends or the
/// process is asked to stop.
fn run_software(
    args: &ServeArgs,
    label: String,
    software: engine::install::HostFuture,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let parent_pipe = args.parent_pipe;
    tracing::info!(process = %label, state_dir = %args.state_dir.display(), "started");
    runtime.block_on(async move {
        tokio::select! {
            biased;
            _ = stop_requested(parent_pipe) => {
                tracing::info!(process = %label, "stopping");
                Ok(ExitCode::SUCCESS)
            }
            outcome = software => {
                outcome.with_context(|| format!("{label} stopped"))?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Resolves on SIGINT, SIGTERM, or (with `parent_pipe`) end of stdin.
pub async fn stop_requested(parent_pipe: bool) {
    let parent_gone = async {
        if parent_pipe {
            use tokio::io::AsyncReadExt as _;
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = terminated() => {}
        _ = parent_gone => {}
    }
}

/// SIGINT or SIGTERM.
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
