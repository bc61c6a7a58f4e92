//! `meshsim up SCENARIO --state-dir DIR`: the scenario's mesh as child
//! processes on `127.a.b.x`, until SIGINT or SIGTERM.
//!
//! Contract: `DIR/ca.pem` (trust bundle) and `DIR/addresses.json`
//! (`"<service>-<replica>"` → `{inbound, admin, identity, server_name}`),
//! the latter written only once every sidecar's inbound listener accepts
//! connections, and removed at shutdown. See `engine::deploy`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use engine::deploy::{self, AddressEntry, Part};
use spec::Override;
use tokio::process::{Child, Command};

/// `meshsim up`.
#[derive(Args, Clone, Debug)]
pub struct UpArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Where the mesh's state goes (ca.pem, addresses.json, tokens, logs).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Override a value: `--set workload.peak.rate=2000` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<Override>,
    /// Run seed (default: the scenario's); CA keys and tokens derive from it.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not start this service's app: your own app listens on each of
    /// its replicas' app port (8080 on the replica's address) instead.
    /// Repeatable.
    #[arg(long = "external-app", value_name = "SERVICE")]
    pub external_apps: Vec<String>,
    /// How long to wait for every sidecar to listen.
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    pub ready_timeout: u64,
}

struct Running {
    label: String,
    child: Child,
}

/// Runs `meshsim up`.
pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let prepared = deploy::prepare(
        &args.state_dir,
        &args.scenario,
        &args.set,
        args.seed,
        std::process::id(),
    )
    .map_err(|e| crate::BadInput(e.to_string()))?;
    let table = deploy::address_table(&prepared)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let parts: Vec<Part> = deploy::parts(&prepared.install)
        .into_iter()
        .filter(|part| match part {
            Part::App { host } => !args
                .external_apps
                .iter()
                .any(|service| host.rsplit_once('-').is_some_and(|(s, _)| s == service)),
            _ => true,
        })
        .collect();
    runtime.block_on(async move {
        let mut children = spawn_all(&args.state_dir, &parts)?;
        let ready = tokio::select! {
            biased;
            _ = crate::serve::terminated() => Err(anyhow::anyhow!("interrupted before the mesh was ready")),
            ready = wait_ready(&table, &mut children, Duration::from_secs(args.ready_timeout)) => ready,
        };
        if let Err(error) = ready {
            stop_all(children).await;
            return Err(error);
        }
        deploy::publish_addresses(&args.state_dir, &table)?;
        deploy::write_prometheus_config(
            &args.state_dir,
            &prepared.install.scenario.mesh.namespace,
            &table,
        )?;
        print_table(&args.state_dir, &prepared.state, &table);
        watch(&mut children).await;
        println!("stopping {} processes…", children.len());
        let _ = std::fs::remove_file(args.state_dir.join(deploy::ADDRESSES_FILE));
        stop_all(children).await;
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn spawn_all(dir: &Path, parts: &[Part]) -> anyhow::Result<Vec<Running>> {
    let exe = std::env::current_exe().context("locating the meshsim binary")?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut children = Vec::new();
    for part in parts {
        let label = part.label();
        let log_path = logs.join(format!("{label}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = Command::new(&exe);
        match part {
            Part::Ca => {
                command.args(["ca", "serve"]);
            }
            Part::Control => {
                command.args(["control", "serve"]);
            }
            Part::Proxy { host } | Part::App { host } => {
                let (service, replica) = host
                    .rsplit_once('-')
                    .context("workload hosts are <service>-<replica>")?;
                let verb = if matches!(part, Part::Proxy { .. }) {
                    "proxy"
                } else {
                    "app"
                };
                command.args([verb, service, "--replica", replica]);
            }
        }
        command
            .arg("--state-dir")
            .arg(dir)
            .arg("--parent-pipe")
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {label}"))?;
        children.push(Running { label, child });
    }
    Ok(children)
}

/// Waits until every sidecar's inbound listener accepts a connection; a
/// child that exits meanwhile fails the start (its log says why).
async fn wait_ready(
    table: &BTreeMap<String, AddressEntry>,
    children: &mut [Running],
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut waiting: Vec<&String> = table.keys().collect();
    while !waiting.is_empty() {
        for running in children.iter_mut() {
            if let Some(status) = running.child.try_wait()? {
                anyhow::bail!(
                    "{} exited early ({status}); see its log in logs/{}.log",
                    running.label,
                    running.label
                );
            }
        }
        let mut still = Vec::new();
        for host in waiting {
            let address = &table[host].inbound;
            let connected = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(address.as_str()),
            )
            .await;
            if !matches!(connected, Ok(Ok(_))) {
                still.push(host);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let names: Vec<&str> = waiting.iter().map(|h| h.as_str()).collect();
            anyhow::bail!(
                "not listening after {}s: {}",
                limit.as_secs(),
                names.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn print_table(dir: &Path, state: &deploy::MeshState, table: &BTreeMap<String, AddressEntry>) {
    let ca = state
        .hosts
        .get("ca")
        .map_or("?".into(), |ip| format!("{ip}:{}", mesh::ports::CA));
    println!("mesh up: {} workloads, CA at {ca}", table.len());
    println!(
        "{:<18} {:<22} {:<22} identity",
        "replica", "inbound (mTLS)", "admin"
    );
    for (host, entry) in table {
        println!(
            "{host:<18} {:<22} {:<22} {}",
            entry.inbound, entry.admin, entry.identity
        );
    }
    println!(
        "state: {} (ca.pem, addresses.json, prometheus.yml, logs/); Ctrl-C stops",
        dir.display()
    );
}

/// Runs until SIGINT or SIGTERM, reporting children that exit.
async fn watch(children: &mut [Running]) {
    let mut reported = vec![false; children.len()];
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    let stop = crate::serve::terminated();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => return,
            _ = poll.tick() => {}
        }
        for (index, running) in children.iter_mut().enumerate() {
            if !reported[index]
                && let Ok(Some(status)) = running.child.try_wait()
            {
                eprintln!("{} exited ({status})", running.label);
                reported[index] = true;
            }
        }
    }
}

/// Closes every child's stdin (its signal to stop), waits up to 5 s, then
/// kills what is left.
async fn stop_all(mut children: Vec<Running>) {
    for running in &mut children {
        drop(running.child.stdin.take());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for running in &mut children {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(left, running.child.wait())
            .await
            .is_err()
        {
            let _ = running.child.kill().await;
        }
    }
}
