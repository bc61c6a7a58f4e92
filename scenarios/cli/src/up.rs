//! `meshsim up SCENARIO --state-dir DIR`: the scenario's mesh as child
//! processes on `127.a.b.x`, until SIGINT or SIGTERM. With `--netns`, each
//! host (a workload's app and sidecar, the CA, the control plane) is a pod
//! in its own network namespace on a bridge the mesh owns
//! (`engine::netns`), removed at shutdown; a killed `up`'s pods are
//! removed by the next `up --netns`.
//!
//! Contract: `DIR/ca.pem` (trust bundle) and `DIR/addresses.json`
//! (`"<service>-<replica>"` → `{inbound, admin, identity, server_name}`),
//! the latter written only once every sidecar's inbound listener and every
//! process (the CA and the control plane too) accepts connections, and
//! removed at shutdown. See `engine::deploy`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use engine::deploy::{self, AddressEntry, Part};
use engine::netns::PodNetwork;
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
    /// Derive every CA key, workload key and bootstrap token from the seed
    /// (reproducible, and public to anyone who knows the seed) instead of
    /// the OS CSPRNG. For tests on loopback only.
    #[arg(long)]
    pub insecure_derived_keys: bool,
    /// Run every host as a pod in its own network namespace (Linux, root):
    /// app ports and outbound listeners are then reachable only from
    /// inside their pod. Falls back to loopback, with a warning, where
    /// namespaces are not available.
    #[arg(long)]
    pub netns: bool,
    /// How long to wait for every sidecar to listen.
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    pub ready_timeout: u64,
}

struct Running {
    label: String,
    part: Part,
    /// Where it serves once ready; probed by `watch`.
    serving: std::net::SocketAddr,
    child: Child,
    /// Probes in a row that found nothing listening.
    missed: u32,
    /// When it was last (re)started.
    started: tokio::time::Instant,
    /// Restarts so far.
    restarts: u32,
    /// The pod it runs in (with `--netns`).
    namespace: Option<String>,
}

/// Probes in a row a component may miss before it counts as not serving.
const MISSED_PROBES_MAX: u32 = 3;
/// How often `up` probes every component.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A fresh start gets this long before its probes count.
const START_GRACE: Duration = Duration::from_secs(15);
/// A component restarted this often has a problem a restart will not fix:
/// `up` stops the mesh and exits non-zero.
const RESTARTS_MAX: u32 = 5;

/// Runs `meshsim up`.
pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let mut prepared = deploy::prepare(
        &args.state_dir,
        &args.scenario,
        &args.set,
        args.seed,
        network(args.netns),
        if args.insecure_derived_keys {
            eprintln!("{}", deploy::DERIVED_KEYS_WARNING);
            mesh::KeyMode::Derived
        } else {
            mesh::KeyMode::Os
        },
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
    // Moved into the future below and dropped (removed) at its end, after
    // the processes in them have stopped.
    let pods = prepared.pods.take();
    runtime.block_on(async move {
        let mut children = spawn_all(&args.state_dir, &prepared.state, &parts, pods.as_ref())?;
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
        if pods.is_none() {
            // In pods the admin listeners are on each pod's own loopback:
            // a Prometheus in the host namespace cannot scrape them.
            deploy::write_prometheus_config(
                &args.state_dir,
                &prepared.install.scenario.mesh.namespace,
                &table,
            )?;
        }
        print_table(&args.state_dir, &prepared.state, &table, pods.as_ref());
        let supervised = watch(&args.state_dir, &mut children).await;
        println!("stopping {} processes…", children.len());
        let _ = std::fs::remove_file(args.state_dir.join(deploy::ADDRESSES_FILE));
        stop_all(children).await;
        println!("stopped");
        match supervised {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(failure) => {
                eprintln!("{failure}");
                Ok(ExitCode::from(3))
            }
        }
    })
}

/// Pods when asked for and possible; otherwise the shared loopback, said
/// plainly.
fn network(netns: bool) -> deploy::Network {
    let loopback = deploy::Network::Loopback {
        hint: std::process::id(),
    };
    if !netns {
        return loopback;
    }
    match engine::netns::available() {
        Ok(()) => deploy::Network::Pods,
        Err(why) => {
            eprintln!(
                "WARNING: --netns: {why}; falling back to the shared loopback, where every \
                 local process can reach app ports and outbound listeners (each app and its \
                 sidecar then refuse callers without their pod's secret)"
            );
            loopback
        }
    }
}

fn spawn_all(
    dir: &Path,
    state: &deploy::MeshState,
    parts: &[Part],
    pods: Option<&PodNetwork>,
) -> anyhow::Result<Vec<Running>> {
    parts
        .iter()
        .map(|part| {
            let namespace = pods
                .and_then(|pods| pods.pod(part.host()))
                .map(|pod| pod.namespace.clone());
            Ok(Running {
                label: part.label(),
                part: part.clone(),
                serving: part.serving_address(state)?,
                child: spawn(dir, part, namespace.as_deref())?,
                missed: 0,
                started: tokio::time::Instant::now(),
                restarts: 0,
                namespace,
            })
        })
        .collect()
}

/// Starts `part`, inside `namespace` when it is a pod.
fn spawn(dir: &Path, part: &Part, namespace: Option<&str>) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the meshsim binary")?;
    let logs = dir.join("logs");
    seam::private_file::private_dir(&logs)
        .with_context(|| format!("creating {}", logs.display()))?;
    {
        let label = part.label();
        let log_path = logs.join(format!("{label}.log"));
        let log = seam::private_file::append_private(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = match namespace {
            Some(namespace) => {
                // `ip netns exec` execs meshsim itself: the child is the
                // component, so killing it kills the component.
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(&exe);
                command
            }
            None => Command::new(&exe),
        };
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
        command.spawn().with_context(|| format!("starting {label}"))
    }
}

/// Waits until every sidecar's inbound listener accepts a connection and
/// every child (the CA and the control plane included) accepts where it
/// serves: a sidecar listens before it has a certificate or a config, so
/// its inbound port alone would publish a mesh whose control plane is not
/// up yet. A child that exits meanwhile fails the start (its log says why).
async fn wait_ready(
    table: &BTreeMap<String, AddressEntry>,
    children: &mut [Running],
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut waiting: Vec<&String> = table.keys().collect();
    let mut starting: Vec<usize> = (0..children.len()).collect();
    while !(waiting.is_empty() && starting.is_empty()) {
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
        let mut still_starting = Vec::new();
        for index in starting {
            if !accepts(&children[index]).await {
                still_starting.push(index);
            }
        }
        starting = still_starting;
        if waiting.is_empty() && starting.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let mut names: Vec<&str> = waiting.iter().map(|h| h.as_str()).collect();
            names.extend(starting.iter().map(|&i| children[i].label.as_str()));
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

fn print_table(
    dir: &Path,
    state: &deploy::MeshState,
    table: &BTreeMap<String, AddressEntry>,
    pods: Option<&PodNetwork>,
) {
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
    if pods.is_some() {
        println!(
            "pods: every host in its own network namespace (ip netns list | grep msim-{}-); \
             app ports, outbound and admin listeners are reachable only from inside their \
             pod, so no prometheus.yml is written (ip netns exec <pod> curl \
             http://127.0.0.1:4191/metrics)",
            std::process::id()
        );
    } else {
        println!(
            "note: on the shared loopback, every local process can reach the app ports \
             and outbound listeners; each app and its sidecar refuse callers without \
             their pod's secret (disk/<replica>/pod-secret)"
        );
    }
}

/// Runs until SIGINT or SIGTERM, supervising every component by whether
/// it serves, not only whether its process lives: a component that exits,
/// or whose port stops accepting connections for [`MISSED_PROBES_MAX`]
/// probes in a row, is reported and restarted. One that needs more than
/// [`RESTARTS_MAX`] restarts ends `up` with an error.
async fn watch(dir: &Path, children: &mut [Running]) -> anyhow::Result<()> {
    let mut poll = tokio::time::interval(PROBE_INTERVAL);
    let stop = crate::serve::terminated();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => return Ok(()),
            _ = poll.tick() => {}
        }
        for running in children.iter_mut() {
            let Some(reason) = not_serving(running).await else {
                continue;
            };
            eprintln!("{} {reason}; restarting it", running.label);
            if running.restarts >= RESTARTS_MAX {
                anyhow::bail!(
                    "{} stopped serving {} times; see logs/{}.log",
                    running.label,
                    running.restarts + 1,
                    running.label
                );
            }
            let _ = running.child.kill().await;
            running.child = spawn(dir, &running.part, running.namespace.as_deref())?;
            running.restarts += 1;
            running.missed = 0;
            running.started = tokio::time::Instant::now();
        }
    }
}

/// Why `running` no longer serves, if it does not.
async fn not_serving(running: &mut Running) -> Option<String> {
    if let Ok(Some(status)) = running.child.try_wait() {
        return Some(format!("exited ({status})"));
    }
    if running.started.elapsed() < START_GRACE {
        return None;
    }
    if accepts(running).await {
        running.missed = 0;
        return None;
    }
    running.missed += 1;
    (running.missed >= MISSED_PROBES_MAX).then(|| {
        format!(
            "stopped accepting connections on {} ({} probes missed)",
            running.serving, running.missed
        )
    })
}

/// Whether `running` accepts connections where it serves: from here, or
/// for a pod-local port, from inside its pod (on a thread of its own: a
/// thread that entered a namespace stays there).
async fn accepts(running: &Running) -> bool {
    let limit = Duration::from_millis(500);
    let pod_local = running.serving.ip().is_loopback();
    match (&running.namespace, pod_local) {
        (Some(namespace), true) => {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let (namespace, address) = (namespace.clone(), running.serving);
            std::thread::spawn(move || {
                let _ = sender.send(engine::netns::accepts_in(&namespace, address, limit));
            });
            receiver.await.unwrap_or(false)
        }
        _ => matches!(
            tokio::time::timeout(limit, tokio::net::TcpStream::connect(running.serving)).await,
            Ok(Ok(_))
        ),
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
