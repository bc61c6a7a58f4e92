//! The mesh as separate processes on real sockets: the state directory
//! that `meshsim up` writes and every component process reads, the
//! components themselves (CA, control plane, one sidecar, one app), and the
//! CA client behind `meshsim certs issue`.
//!
//! `meshsim up` installs once: the CA's root and issuer keys and every
//! bootstrap token are drawn from the OS CSPRNG and written owner-only
//! (the CA's keys only to the CA's own disk). Every process then rebuilds
//! the same [`Install`] from the scenario file, the trust bundle and the
//! tokens in the state directory. Only `--insecure-derived-keys` derives
//! them from the seed instead (anyone who knows the seed can then forge
//! any identity), for reproducible tests on loopback. Hosts get fixed
//! `127.a.b.x` addresses (with [`Network::Pods`], their pods' `10.213.S.x`
//! addresses, [`crate::netns`]) and listen on their logical ports, so a
//! process finds any other host from the address map alone.
//!
//! State directory layout (the directory itself is 0700):
//! - `mesh.json` (0600): scenario, seed, key mode, CA creation time, host
//!   addresses (internal);
//! - `ca.pem`: the trust bundle;
//! - `addresses.json`: the public contract, `"<service>-<replica>"` →
//!   `{inbound, admin, identity, server_name}` (written once every
//!   inbound listener accepts connections, removed on shutdown);
//! - `ca.json`: where the CA listens and the identity it proves;
//! - `tokens.json` (0600): bootstrap token of every identity;
//! - `sidecars.json` (0600): what each sidecar needs from the install
//!   ([`SidecarPlan`]), so a sidecar process never loads the scenario;
//! - `prometheus.yml`: a Prometheus configuration scraping every sidecar's
//!   admin `/metrics` (written with `addresses.json`);
//! - `disk/<host>/` (0700, files 0600): each host's durable storage, the
//!   CA's keys in `disk/ca/ca-state.json`; `logs/<process>.log` (0600).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use mesh::ca::pem_encode;
use mesh::client::Upstream;
use mesh::identity::KeyAlgorithm;
use mesh::identity::{certificate_request, ed25519_key};
use mesh::proxy::{Limits, ProxyConfig};
use mesh::telemetry::{Retention, Telemetry};
use mesh::tls::MeshTls;
use mesh::{KeyMode, KeySource};
use mesh::{MeshError, SpiffeId, ports};
use rustls_pki_types::CertificateDer;
use seam::private_file::{PRIVATE_FILE_MODE, PUBLIC_FILE_MODE};
use seam::real::{AddressBook, SystemClock};
use seam::{Clock, HostEnv, HostParts, Seed, SkewHandle, Trace};
use serde::{Deserialize, Serialize};

use crate::install::{HostFuture, Install, Role};
use crate::netns::PodNetwork;
use spec::{Override, Scenario, ServiceSpec};

/// The internal description of a deployed mesh.
pub const MESH_FILE: &str = "mesh.json";
/// The public address map (the `meshsim up` contract).
pub const ADDRESSES_FILE: &str = "addresses.json";
/// The trust bundle, PEM.
pub const CA_FILE: &str = "ca.pem";
/// The CA's address and identity.
pub const CA_INFO_FILE: &str = "ca.json";
/// Bootstrap tokens by identity, readable by the owner only.
pub const TOKENS_FILE: &str = "tokens.json";
/// Each sidecar's [`SidecarPlan`], by host.
pub const SIDECARS_FILE: &str = "sidecars.json";
/// A Prometheus configuration that scrapes every sidecar's admin port.
pub const PROMETHEUS_FILE: &str = "prometheus.yml";
/// How often the written Prometheus configuration scrapes.
const SCRAPE_INTERVAL_S: u32 = 2;

/// Why a deployment step failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A file of the state directory could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A state file is not what `meshsim up` writes.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The scenario could not be loaded.
    #[error("{0}")]
    Scenario(String),
    /// The request does not fit the deployed scenario.
    #[error("{0}")]
    BadRequest(String),
    /// The mesh refused or failed.
    #[error(transparent)]
    Mesh(#[from] MeshError),
    /// The pods' network namespaces could not be set up.
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> DeployError + '_ {
    move |source| DeployError::File {
        path: path.to_owned(),
        source,
    }
}

/// What every process of one deployed mesh shares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeshState {
    /// The scenario file (absolute path).
    pub scenario: PathBuf,
    /// `--set` overrides applied to it.
    pub overrides: Vec<String>,
    /// The run seed (service times, jitter; keys only with derived keys).
    pub seed: u64,
    /// Where the CA keys and tokens came from.
    pub keys: KeyMode,
    /// When the CA material was made (Unix seconds), so that every process
    /// derives byte-identical certificates.
    pub ca_created_unix_s: u64,
    /// Every host and its address: loopback, or (with `netns`) its pod's.
    pub hosts: BTreeMap<String, IpAddr>,
    /// Whether every host is a pod in its own network namespace, where
    /// the app port and outbound listener bind the pod's own loopback.
    #[serde(default)]
    pub netns: bool,
}

/// One replica's entry in `addresses.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressEntry {
    /// The sidecar's inbound (mTLS) listener, `host:port`.
    pub inbound: String,
    /// The sidecar's admin listener, `host:port`.
    pub admin: String,
    /// The workload's SPIFFE ID.
    pub identity: String,
    /// The DNS name in the inbound listener's certificate.
    pub server_name: String,
}

/// `ca.json`: where the CA is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaInfo {
    /// `host:port` of the CA's TLS listener.
    pub address: String,
    /// The SPIFFE ID the CA's certificate proves.
    pub identity: String,
    /// The DNS name in the CA's certificate.
    pub server_name: String,
}

/// Which part of a mesh one process runs.
#[derive(Clone, Debug)]
pub enum Part {
    /// The certificate authority.
    Ca,
    /// The control plane.
    Control,
    /// The sidecar of one workload host.
    Proxy {
        /// Host name, `<service>-<replica>`.
        host: String,
    },
    /// The app of one workload host.
    App {
        /// Host name, `<service>-<replica>`.
        host: String,
    },
}

impl Part {
    /// The host the part runs as.
    pub fn host(&self) -> &str {
        match self {
            Part::Ca => seam::hosts::CA,
            Part::Control => seam::hosts::CONTROL,
            Part::Proxy { host } | Part::App { host } => host,
        }
    }

    /// A name for its log file.
    pub fn label(&self) -> String {
        match self {
            Part::Ca => seam::hosts::CA.into(),
            Part::Control => seam::hosts::CONTROL.into(),
            Part::Proxy { host } => format!("{host}.proxy"),
            Part::App { host } => format!("{host}.app"),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DeployError> {
    let text = std::fs::read_to_string(path).map_err(file_error(path))?;
    serde_json::from_str(&text).map_err(|e| DeployError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Writes `value` as JSON atomically (a reader polling for the file never
/// sees half of it) with `mode`.
fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), DeployError> {
    let text = serde_json::to_string_pretty(value).expect("state serializes");
    write_file(path, text.as_bytes(), mode)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DeployError> {
    seam::private_file::write_atomic(path, bytes, mode).map_err(file_error(path))
}

/// What every process of a mesh run with `--insecure-derived-keys` prints.
pub const DERIVED_KEYS_WARNING: &str = "WARNING: --insecure-derived-keys: every CA key, \
workload key and bootstrap token of this mesh is derived from the seed in the scenario \
file; anyone who knows the seed can impersonate any workload. For reproducible tests on \
loopback only.";

impl MeshState {
    /// Reads `DIR/mesh.json`.
    pub fn load(dir: &Path) -> Result<Self, DeployError> {
        read_json(&dir.join(MESH_FILE))
    }

    /// The scenario with its overrides.
    pub fn scenario(&self) -> Result<Scenario, DeployError> {
        let overrides: Result<Vec<Override>, String> =
            self.overrides.iter().map(|o| o.parse()).collect();
        let overrides = overrides.map_err(DeployError::Scenario)?;
        Scenario::load_with(&self.scenario, &overrides)
            .map_err(|e| DeployError::Scenario(e.to_string()))
    }

    /// The install every process of the mesh in `dir` agrees on: derived
    /// again from the seed, or (OS keys) the trust bundle and tokens the
    /// installer wrote. Its processes run until stopped, so its telemetry
    /// keeps windows, not a whole history.
    pub fn install(&self, dir: &Path) -> Result<Arc<Install>, DeployError> {
        let install = self.install_keys(dir)?;
        install
            .telemetry
            .set_retention(mesh::telemetry::Retention::LongLived);
        Ok(install)
    }

    fn install_keys(&self, dir: &Path) -> Result<Arc<Install>, DeployError> {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(self.ca_created_unix_s);
        let seed = Seed::new(self.seed);
        match self.keys {
            KeyMode::Derived => Ok(Install::with_keys(
                self.scenario()?,
                seed,
                created,
                KeyMode::Derived,
            )?),
            KeyMode::Os => {
                let bundle_path = dir.join(CA_FILE);
                let pem =
                    std::fs::read_to_string(&bundle_path).map_err(file_error(&bundle_path))?;
                let roots = mesh::tls::bundle_from_pem(&[pem])?;
                let by_name: BTreeMap<String, String> = read_json(&dir.join(TOKENS_FILE))?;
                let mut tokens = BTreeMap::new();
                for (id, token) in by_name {
                    let id: SpiffeId = id.parse().map_err(|e: MeshError| DeployError::Corrupt {
                        path: dir.join(TOKENS_FILE),
                        message: e.to_string(),
                    })?;
                    tokens.insert(id, token);
                }
                Ok(Install::deployed(
                    self.scenario()?,
                    seed,
                    created,
                    KeyMode::Os,
                    roots,
                    tokens,
                ))
            }
        }
    }

    /// The address book of the mesh (fixed ports).
    pub fn book(&self) -> AddressBook {
        let book = AddressBook::fixed_with_hosts(self.hosts.clone());
        match self.netns {
            true => book.with_pod_local_ports(&crate::netns::POD_LOCAL_PORTS),
            false => book,
        }
    }

    /// The address of a host.
    pub fn ip(&self, host: &str) -> Result<IpAddr, DeployError> {
        self.hosts
            .get(host)
            .copied()
            .ok_or_else(|| DeployError::BadRequest(format!("the mesh has no host {host:?}")))
    }

    /// The environment of `host` in a process of this mesh.
    pub fn host_env(&self, dir: &Path, host: &str) -> Result<HostEnv, DeployError> {
        let disk_dir = dir.join("disk").join(host);
        let disk = seam::DirDisk::new(&disk_dir).map_err(file_error(&disk_dir))?;
        let parts = HostParts {
            net: Arc::new(self.book().net_for(host)),
            clock: Arc::new(SystemClock::new(SkewHandle::default())),
            disk: Arc::new(disk),
            trace: Trace::off(),
            slow: seam::SlowHandle::default(),
        };
        Ok(HostEnv::new(host, Seed::new(self.seed), parts))
    }
}

fn workload_service(install: &Install, host: &str) -> Result<ServiceSpec, DeployError> {
    match install.role_of(host) {
        Some(Role::Workload(service)) => Ok(*service),
        Some(_) => Err(DeployError::BadRequest(format!(
            "{host} is not a workload host"
        ))),
        None => Err(DeployError::BadRequest(format!(
            "the scenario has no host {host:?} (workload hosts are <service>-<replica>)"
        ))),
    }
}

/// One sidecar's part of the install ([`Install::proxy_config`] without
/// the token, the trust bundle and the run's telemetry, which it reads
/// from `tokens.json` and `ca.pem` or makes itself). `up` writes every
/// sidecar's to `sidecars.json`, so a sidecar process reads three small
/// files and never loads the scenario: `meshsim-proxy` then links none of
/// the scenario format, the apps or the install (BENCHMARKS.md, "Issue 21").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SidecarPlan {
    /// The service the workload belongs to.
    pub service: String,
    /// The identity it certifies as.
    pub identity: SpiffeId,
    /// Where the CA is.
    pub ca: Upstream,
    /// Where the control plane is.
    pub control: Upstream,
    /// Renew at this fraction of the certificate's lifetime.
    pub renew_fraction: f64,
    /// The algorithm of the workload's key.
    pub key_algorithm: KeyAlgorithm,
    /// First retry delay of the identity client.
    pub backoff_min: Duration,
    /// Largest retry delay of the identity client.
    pub backoff_max: Duration,
    /// Per-request deadline when a route sets none.
    pub request_timeout: Duration,
}

impl SidecarPlan {
    /// The plan of the workload sidecar of `service`.
    pub fn of(install: &Install, service: &ServiceSpec) -> SidecarPlan {
        let config = install.proxy_config(service.name.get_ref(), true);
        SidecarPlan {
            service: config.service,
            identity: config.certify.identity,
            ca: config.certify.ca,
            control: config.control,
            renew_fraction: config.certify.renew_fraction,
            key_algorithm: config.certify.key_algorithm,
            backoff_min: config.certify.backoff_min,
            backoff_max: config.certify.backoff_max,
            request_timeout: config.request_timeout,
        }
    }

    /// The sidecar's config again, as [`Install::proxy_config`] gives it.
    pub fn config(
        self,
        token: String,
        keys: KeyMode,
        trust_roots: Vec<CertificateDer<'static>>,
        telemetry: Telemetry,
    ) -> ProxyConfig {
        ProxyConfig {
            service: self.service,
            certify: mesh::client::certify::CertifyConfig {
                identity: self.identity,
                token,
                ca: self.ca,
                renew_fraction: self.renew_fraction,
                key_algorithm: self.key_algorithm,
                keys,
                backoff_min: self.backoff_min,
                backoff_max: self.backoff_max,
            },
            control: self.control,
            trust_roots,
            inbound: true,
            request_timeout: self.request_timeout,
            telemetry,
            limits: Limits::default(),
            admin: true,
        }
    }
}

/// Every workload host's [`SidecarPlan`].
fn sidecar_plans(install: &Install) -> BTreeMap<String, SidecarPlan> {
    install
        .hosts()
        .into_iter()
        .filter_map(|(host, role)| match role {
            Role::Workload(service) => Some((host, SidecarPlan::of(install, &service))),
            _ => None,
        })
        .collect()
}

/// The software of one process: the same role code both other modes run.
/// It runs until the process is stopped.
pub fn part_software(dir: &Path, part: &Part) -> Result<HostFuture, DeployError> {
    if let Part::Proxy { host } = part {
        return sidecar_software(dir, host);
    }
    let state = MeshState::load(dir)?;
    if state.keys == KeyMode::Derived {
        eprintln!("{DERIVED_KEYS_WARNING}");
    }
    let install = state.install(dir)?;
    let env = state.host_env(dir, part.host())?;
    match part {
        Part::Ca => Ok(install.software(&Role::Ca, env)),
        Part::Control => Ok(install.software(&Role::Control, env)),
        Part::Proxy { host } => sidecar_software(dir, host),
        Part::App { host } => {
            let service = workload_service(&install, host)?;
            Ok(install.app(&service, env))
        }
    }
}

/// The sidecar of workload host `host`, from `mesh.json`, `sidecars.json`,
/// `tokens.json` and `ca.pem` alone (what `meshsim-proxy` runs). It runs
/// until the process is stopped.
pub fn sidecar_software(dir: &Path, host: &str) -> Result<HostFuture, DeployError> {
    let state = MeshState::load(dir)?;
    if state.keys == KeyMode::Derived {
        eprintln!("{DERIVED_KEYS_WARNING}");
    }
    let config = sidecar_config(dir, &state, host)?;
    let env = state.host_env(dir, host)?;
    Ok(Box::pin(async move {
        // The sidecar's tasks run on their own; this future only keeps
        // its handle alive.
        let _proxy = mesh::proxy::start(config, env);
        std::future::pending().await
    }))
}

/// The config of `host`'s sidecar: its plan, its token, the trust bundle,
/// and telemetry that keeps windows (the process runs until stopped).
fn sidecar_config(dir: &Path, state: &MeshState, host: &str) -> Result<ProxyConfig, DeployError> {
    let mut plans: BTreeMap<String, SidecarPlan> = read_json(&dir.join(SIDECARS_FILE))?;
    let plan = plans.remove(host).ok_or_else(|| {
        DeployError::BadRequest(format!(
            "the mesh has no workload host {host:?} (workload hosts are <service>-<replica>)"
        ))
    })?;
    let tokens: BTreeMap<String, String> = read_json(&dir.join(TOKENS_FILE))?;
    // No token is an empty one, which the CA refuses (`Install::token`).
    let token = tokens
        .get(&plan.identity.to_string())
        .cloned()
        .unwrap_or_default();
    let bundle_path = dir.join(CA_FILE);
    let pem = std::fs::read_to_string(&bundle_path).map_err(file_error(&bundle_path))?;
    let trust_roots = mesh::tls::bundle_from_pem(&[pem])?;
    let telemetry = Telemetry::new();
    telemetry.set_retention(Retention::LongLived);
    Ok(plan.config(token, state.keys, trust_roots, telemetry))
}

/// The processes of a mesh, in start order: CA, control plane, then the
/// sidecar and app of each workload host. The operator and rogue hosts
/// exist only inside runs (they act on the simulator's schedule).
pub fn parts(install: &Install) -> Vec<Part> {
    let mut parts = vec![Part::Ca, Part::Control];
    for (host, role) in install.hosts() {
        if let Role::Workload(_) = role {
            parts.push(Part::Proxy { host: host.clone() });
            parts.push(Part::App { host });
        }
    }
    parts
}

impl Part {
    /// Where the part serves once it is ready (what `up` probes): the
    /// CA's and control plane's TLS ports, a sidecar's inbound listener,
    /// an app's port (with pods, on the pod's own loopback).
    pub fn serving_address(&self, state: &MeshState) -> Result<SocketAddr, DeployError> {
        let port = match self {
            Part::Ca => ports::CA,
            Part::Control => ports::CONTROL,
            Part::Proxy { .. } => ports::PROXY_INBOUND,
            Part::App { .. } => ports::APP,
        };
        if state.netns && crate::netns::POD_LOCAL_PORTS.contains(&port) {
            // Inside the part's own pod.
            return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
        }
        Ok(SocketAddr::new(state.ip(self.host())?, port))
    }
}

/// The logical ports a host listens on.
fn host_ports(role: &Role) -> Vec<u16> {
    match role {
        Role::Ca => vec![ports::CA],
        Role::Control => vec![ports::CONTROL],
        Role::Workload(_) => vec![
            ports::PROXY_INBOUND,
            ports::PROXY_OUTBOUND,
            ports::PROXY_ADMIN,
            ports::APP,
        ],
        Role::Operator | Role::Rogue(_) => Vec::new(),
    }
}

/// Picks a `127.a.b.0` network on which every port the mesh needs is free,
/// so two meshes (or a test next to a developer's mesh) never collide.
fn free_network(install: &Install, first: u32) -> Result<AddressBook, DeployError> {
    for attempt in 0..200u32 {
        let slot = (first + attempt) % (250 * 250);
        let base = Ipv4Addr::new(127, (slot / 250 + 1) as u8, (slot % 250) as u8, 0);
        let book = AddressBook::fixed_in(base);
        let all_free = install.hosts().iter().all(|(host, role)| {
            let ip = book.add_host(host);
            host_ports(role)
                .into_iter()
                .all(|port| std::net::TcpListener::bind(SocketAddr::new(ip, port)).is_ok())
        });
        if all_free {
            return Ok(book);
        }
    }
    Err(DeployError::BadRequest(
        "no 127.a.b.0 network with free ports after 200 tries".into(),
    ))
}

/// A prepared state directory: everything but the processes.
pub struct Prepared {
    /// The shared state.
    pub state: MeshState,
    /// The install all processes rebuild.
    pub install: Arc<Install>,
    /// The pods, with `Network::Pods` (dropping it removes them).
    pub pods: Option<PodNetwork>,
}

/// Where the mesh's hosts live.
#[derive(Clone, Copy, Debug)]
pub enum Network {
    /// On `127.a.b.x` addresses of the shared loopback; `hint` picks the
    /// first network tried.
    Loopback {
        /// A number that spreads meshes over `127.a.b.0` networks.
        hint: u32,
    },
    /// Each host (the CA, the control plane, every workload) in its own
    /// network namespace on a bridge the mesh owns ([`crate::netns`]).
    Pods,
}

/// The hosts of `install` that serve something, and their addresses.
fn place_hosts(
    install: &Install,
    network: Network,
) -> Result<(BTreeMap<String, IpAddr>, Option<PodNetwork>), DeployError> {
    match network {
        Network::Loopback { hint } => Ok((free_network(install, hint)?.hosts(), None)),
        Network::Pods => {
            let serving: Vec<String> = install
                .hosts()
                .into_iter()
                .filter(|(_, role)| !host_ports(role).is_empty())
                .map(|(host, _)| host)
                .collect();
            let pods = PodNetwork::create(&serving)?;
            Ok((pods.addresses(), Some(pods)))
        }
    }
}

/// Writes the state directory for `scenario` (a fresh disk for every host).
pub fn prepare(
    dir: &Path,
    scenario_path: &Path,
    overrides: &[Override],
    seed: Option<u64>,
    network: Network,
    keys: KeyMode,
) -> Result<Prepared, DeployError> {
    let scenario = Scenario::load_with(scenario_path, overrides)
        .map_err(|e| DeployError::Scenario(e.to_string()))?;
    let seed = seed.unwrap_or(scenario.seed);
    seam::private_file::private_dir(dir).map_err(file_error(dir))?;
    for stale in [dir.join("disk"), dir.join(ADDRESSES_FILE)] {
        if stale.is_dir() {
            std::fs::remove_dir_all(&stale).map_err(file_error(&stale))?;
        } else if stale.exists() {
            std::fs::remove_file(&stale).map_err(file_error(&stale))?;
        }
    }
    let now = SystemClock::new(SkewHandle::default()).wall();
    let ca_created_unix_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let scenario_abs = std::path::absolute(scenario_path).map_err(file_error(scenario_path))?;
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(ca_created_unix_s);
    let install = Install::with_keys(scenario, Seed::new(seed), created, keys)?;
    if keys == KeyMode::Derived && matches!(network, Network::Pods) {
        return Err(DeployError::BadRequest(
            "--insecure-derived-keys binds loopback only: its keys are public; \
             it does not go with --netns"
                .into(),
        ));
    }
    let (hosts, pods) = place_hosts(&install, network)?;
    let state = MeshState {
        scenario: scenario_abs,
        overrides: overrides.iter().map(ToString::to_string).collect(),
        seed,
        keys,
        ca_created_unix_s,
        hosts,
        netns: pods.is_some(),
    };
    write_json(&dir.join(MESH_FILE), &state, PRIVATE_FILE_MODE)?;
    write_pod_secrets(dir, &install)?;
    if let Some(ca_state) = install.ca_state() {
        // The CA's keys go to the CA's disk only.
        let disk_dir = dir.join("disk").join(seam::hosts::CA);
        seam::private_file::private_dir(&disk_dir).map_err(file_error(&disk_dir))?;
        let path = disk_dir.join(mesh::ca::STATE_FILE);
        seam::private_file::write_private(&path, ca_state).map_err(file_error(&path))?;
    }
    let bundle: String = install
        .trust_roots
        .iter()
        .map(|der| pem_encode("CERTIFICATE", der.as_ref()))
        .collect();
    write_file(&dir.join(CA_FILE), bundle.as_bytes(), PUBLIC_FILE_MODE)?;
    let ca = install.ca_upstream();
    let ca_info = CaInfo {
        address: SocketAddr::new(state.ip("ca")?, ca.port).to_string(),
        server_name: ca.identity.dns_name(),
        identity: ca.identity.to_string(),
    };
    write_json(&dir.join(CA_INFO_FILE), &ca_info, PUBLIC_FILE_MODE)?;
    let tokens: BTreeMap<String, String> = install
        .tokens()
        .iter()
        .map(|(id, token)| (id.to_string(), token.clone()))
        .collect();
    write_json(&dir.join(TOKENS_FILE), &tokens, PRIVATE_FILE_MODE)?;
    write_json(
        &dir.join(SIDECARS_FILE),
        &sidecar_plans(&install),
        PRIVATE_FILE_MODE,
    )?;
    Ok(Prepared {
        state,
        install,
        pods,
    })
}

/// Gives every workload host (app plus sidecar, sharing `disk/<host>/`) a
/// secret from the OS, so each authenticates the other on the shared
/// loopback (`mesh::pod_secret`).
fn write_pod_secrets(dir: &Path, install: &Install) -> Result<(), DeployError> {
    for (host, role) in install.hosts() {
        if !matches!(role, Role::Workload(_)) {
            continue;
        }
        let disk_dir = dir.join("disk").join(&host);
        seam::private_file::private_dir(&disk_dir).map_err(file_error(&disk_dir))?;
        let path = disk_dir.join(mesh::pod_secret::FILE);
        let secret = KeySource::Os.token()?;
        seam::private_file::write_private(&path, secret.as_bytes()).map_err(file_error(&path))?;
    }
    Ok(())
}

/// The `addresses.json` entries of a prepared mesh.
pub fn address_table(prepared: &Prepared) -> Result<BTreeMap<String, AddressEntry>, DeployError> {
    let mut table = BTreeMap::new();
    for (host, role) in prepared.install.hosts() {
        let Role::Workload(service) = role else {
            continue;
        };
        let ip = prepared.state.ip(&host)?;
        let identity = prepared.install.identity(None, service.name.get_ref());
        table.insert(
            host,
            AddressEntry {
                inbound: SocketAddr::new(ip, ports::PROXY_INBOUND).to_string(),
                admin: admin_address(&prepared.state, ip).to_string(),
                server_name: identity.dns_name(),
                identity: identity.to_string(),
            },
        );
    }
    Ok(table)
}

/// A sidecar's admin listener: on its address, or in pods on the pod's
/// own loopback (the admin endpoint serves loopback only).
fn admin_address(state: &MeshState, ip: IpAddr) -> SocketAddr {
    match state.netns {
        true => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), ports::PROXY_ADMIN),
        false => SocketAddr::new(ip, ports::PROXY_ADMIN),
    }
}

/// Publishes `addresses.json` (once the mesh is ready).
pub fn publish_addresses(
    dir: &Path,
    table: &BTreeMap<String, AddressEntry>,
) -> Result<(), DeployError> {
    write_json(&dir.join(ADDRESSES_FILE), table, PUBLIC_FILE_MODE)
}

/// Writes `prometheus.yml`: one scrape job over every sidecar's admin
/// endpoint (`/metrics`), each target labelled with its `pod`, `service`
/// and `namespace`. Written as YAML by hand: it is a fixed shape with
/// values that need no quoting beyond what is done here.
pub fn write_prometheus_config(
    dir: &Path,
    namespace: &str,
    table: &BTreeMap<String, AddressEntry>,
) -> Result<(), DeployError> {
    write_file(
        &dir.join(PROMETHEUS_FILE),
        prometheus_config(namespace, table).as_bytes(),
        PUBLIC_FILE_MODE,
    )
}

fn prometheus_config(namespace: &str, table: &BTreeMap<String, AddressEntry>) -> String {
    use std::fmt::Write as _;
    let quoted = |text: &str| format!("{:?}", text);
    let mut yaml = format!(
        "# Written by `meshsim up`: every sidecar's admin endpoint.\n\
         global:\n  scrape_interval: {SCRAPE_INTERVAL_S}s\n  evaluation_interval: {SCRAPE_INTERVAL_S}s\n\
         scrape_configs:\n  - job_name: meshsim-proxy\n    metrics_path: /metrics\n    static_configs:\n"
    );
    for (host, entry) in table {
        let service = mesh::telemetry::service_of_host(host);
        let _ = write!(
            yaml,
            "      - targets: [{}]\n        labels: {{pod: {}, service: {}, namespace: {}}}\n",
            quoted(&entry.admin),
            quoted(host),
            quoted(service),
            quoted(namespace)
        );
    }
    yaml
}

/// A certificate the CA issued, with its key.
pub struct Issued {
    /// Leaf then issuer, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The trust bundle, PEM.
    pub ca_pem: String,
    /// The identity in the leaf.
    pub identity: SpiffeId,
}

/// The identity `name` stands for: a full SPIFFE ID, or a service account
/// in the scenario's namespace.
pub fn resolve_identity(install: &Install, name: &str) -> Result<SpiffeId, DeployError> {
    if name.starts_with("spiffe://") {
        name.parse()
            .map_err(|e: MeshError| DeployError::BadRequest(e.to_string()))
    } else {
        SpiffeId::new(
            &install.scenario.mesh.trust_domain,
            &install.scenario.mesh.namespace,
            name,
        )
        .map_err(|e| DeployError::BadRequest(e.to_string()))
    }
}

/// Asks the running CA of the mesh in `dir` for a certificate for
/// `identity`, like `spire-agent api fetch x509`: a fresh key from the OS
/// (never sent), a CSR, and the identity's bootstrap token.
pub async fn issue_certificate(dir: &Path, identity: &str) -> Result<Issued, DeployError> {
    let state = MeshState::load(dir)?;
    let install = state.install(dir)?;
    let identity = resolve_identity(&install, identity)?;
    let tokens: BTreeMap<String, String> = read_json(&dir.join(TOKENS_FILE))?;
    let token = tokens.get(&identity.to_string()).ok_or_else(|| {
        DeployError::BadRequest(format!(
            "no bootstrap token for {identity}; the mesh has tokens for: {}",
            tokens.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let (key, pkcs8) = ed25519_key(KeySource::Os)?;
    let csr = certificate_request(&identity, &key)?;
    let ca = install.ca_upstream();
    let net = state.book().net_for("certs-client");
    let io = seam::Net::connect(&net, &ca.host, ca.port)
        .await
        .map_err(|source| MeshError::Connect {
            target: ca.host.clone(),
            source,
        })?;
    let tls = MeshTls::new(
        Arc::new(SystemClock::new(SkewHandle::default())),
        install.trust_roots.clone(),
    );
    let stream = tls.connect(io, &ca.identity, &[b"http/1.1"], false).await?;
    let request = Request::post("/v1/certify")
        .header(http::header::HOST, ca.host.as_str())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(mesh::http::Body::from(Bytes::from(csr)))
        .map_err(|e| DeployError::BadRequest(e.to_string()))?;
    let response = mesh::client::pool::send_once(Box::new(stream), &request, 64 * 1024)
        .await
        .map_err(|e| MeshError::Refused(format!("the CA did not answer: {e}")))?;
    let body = mesh::http::body_bytes(response.body());
    if response.status() != StatusCode::OK {
        return Err(MeshError::Refused(format!(
            "{}: {}",
            response.status(),
            String::from_utf8_lossy(&body)
        ))
        .into());
    }
    let chain = mesh::client::certify::parse_chain(&body)?;
    let issued_to = mesh::identity::CertInfo::parse(&chain[0])?.spiffe_id()?;
    if issued_to != identity {
        return Err(MeshError::Refused(format!(
            "the CA issued {issued_to}, not the requested {identity}"
        ))
        .into());
    }
    Ok(Issued {
        chain_pem: String::from_utf8_lossy(&body).into_owned(),
        key_pem: pem_encode("PRIVATE KEY", pkcs8.secret_pkcs8_der()),
        ca_pem: bundle_pem(&install.trust_roots),
        identity,
    })
}

fn bundle_pem(roots: &[CertificateDer<'static>]) -> String {
    roots
        .iter()
        .map(|der| pem_encode("CERTIFICATE", der.as_ref()))
        .collect()
}

/// Writes `OUT/cert.pem`, `OUT/key.pem` (0600) and `OUT/ca.pem`.
pub fn write_issued(out: &Path, issued: &Issued) -> Result<(), DeployError> {
    std::fs::create_dir_all(out).map_err(file_error(out))?;
    write_file(
        &out.join("cert.pem"),
        issued.chain_pem.as_bytes(),
        PUBLIC_FILE_MODE,
    )?;
    write_file(
        &out.join("key.pem"),
        issued.key_pem.as_bytes(),
        PRIVATE_FILE_MODE,
    )?;
    write_file(
        &out.join("ca.pem"),
        issued.ca_pem.as_bytes(),
        PUBLIC_FILE_MODE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_workload_host_twice_plus_ca_and_control() {
        let scenario = Scenario::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../library/smoke.toml"
        )))
        .expect("smoke loads");
        let workloads: u32 = scenario.services.iter().map(|s| s.replicas).sum();
        let install =
            Install::new(scenario, Seed::new(1), SystemTime::UNIX_EPOCH).expect("install");
        let parts = parts(&install);
        assert_eq!(parts.len(), 2 + 2 * workloads as usize);
        assert!(matches!(parts[0], Part::Ca));
        assert!(
            parts
                .iter()
                .any(|p| matches!(p, Part::App { host } if host == "registry-1"))
        );
    }

    fn smoke() -> &'static Path {
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../library/smoke.toml"
        ))
    }

    #[test]
    fn prometheus_config_lists_every_admin_endpoint() {
        let entry = |admin: &str| AddressEntry {
            inbound: String::new(),
            admin: admin.into(),
            identity: String::new(),
            server_name: String::new(),
        };
        let table = BTreeMap::from([
            ("gateway-0".to_owned(), entry("127.1.2.3:4191")),
            ("registry-1".to_owned(), entry("127.1.2.4:4191")),
        ]);
        let yaml = prometheus_config("rec", &table);
        assert!(yaml.contains("scrape_interval: 2s"), "{yaml}");
        assert!(
            yaml.contains("- targets: [\"127.1.2.4:4191\"]\n        labels: {pod: \"registry-1\", service: \"registry\", namespace: \"rec\"}"),
            "{yaml}"
        );
        assert_eq!(yaml.matches("targets:").count(), 2);
    }

    #[test]
    fn state_round_trips_and_tokens_are_private() {
        let dir = std::env::temp_dir().join(format!("meshsim-deploy-test-{}", std::process::id()));
        let prepared = prepare(
            &dir,
            smoke(),
            &[],
            None,
            Network::Loopback { hint: 4321 },
            KeyMode::Os,
        )
        .expect("prepare");
        let loaded = MeshState::load(&dir).expect("load");
        assert_eq!(loaded.hosts, prepared.state.hosts);
        let again = loaded.install(&dir).expect("install");
        assert_eq!(again.trust_roots, prepared.install.trust_roots);
        assert_eq!(again.tokens(), prepared.install.tokens());
        let table = address_table(&prepared).expect("table");
        let gateway = &table["gateway-0"];
        assert_eq!(
            gateway.identity,
            "spiffe://rec.meshsim/ns/rec/sa/gateway".to_owned()
        );
        assert!(gateway.inbound.ends_with(":4143"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| {
                std::fs::metadata(path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode(&dir), 0o700, "the state directory");
            for private in [
                dir.join(TOKENS_FILE),
                dir.join(SIDECARS_FILE),
                dir.join(MESH_FILE),
                dir.join("disk/ca").join(mesh::ca::STATE_FILE),
            ] {
                assert_eq!(mode(&private), 0o600, "{}", private.display());
            }
            assert_eq!(mode(&dir.join("disk/ca")), 0o700);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A sidecar process, which reads `sidecars.json` instead of the
    /// scenario, runs with the config the install gives every other mode.
    #[test]
    fn a_deployed_sidecar_gets_the_installs_proxy_config() {
        let dir =
            std::env::temp_dir().join(format!("meshsim-deploy-sidecar-{}", std::process::id()));
        let prepared = prepare(
            &dir,
            smoke(),
            &[],
            None,
            Network::Loopback { hint: 4600 },
            KeyMode::Os,
        )
        .expect("prepare");
        let install = &prepared.install;
        let mut sidecars = 0;
        for (host, role) in install.hosts() {
            let Role::Workload(service) = role else {
                continue;
            };
            sidecars += 1;
            let want = install.proxy_config(service.name.get_ref(), true);
            let got = sidecar_config(&dir, &prepared.state, &host).expect("sidecar config");
            assert_eq!(got.service, want.service, "{host}");
            assert_eq!(
                format!("{:?}", got.certify),
                format!("{:?}", want.certify),
                "{host}"
            );
            assert!(!got.certify.token.is_empty(), "{host}");
            assert_eq!(got.control, want.control, "{host}");
            assert_eq!(got.trust_roots, want.trust_roots, "{host}");
            assert_eq!(got.inbound, want.inbound, "{host}");
            assert_eq!(got.request_timeout, want.request_timeout, "{host}");
            assert_eq!(got.limits, want.limits, "{host}");
            assert_eq!(got.admin, want.admin, "{host}");
        }
        let plans: BTreeMap<String, SidecarPlan> =
            read_json(&dir.join(SIDECARS_FILE)).expect("sidecars.json");
        assert_eq!(plans.len(), sidecars);
        assert!(matches!(
            sidecar_config(&dir, &prepared.state, "ca"),
            Err(DeployError::BadRequest(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_installs_never_share_a_key_or_a_token() {
        let base = std::env::temp_dir().join(format!("meshsim-deploy-os-{}", std::process::id()));
        let first = prepare(
            &base.join("a"),
            smoke(),
            &[],
            Some(1),
            Network::Loopback { hint: 4400 },
            KeyMode::Os,
        )
        .unwrap();
        let second = prepare(
            &base.join("b"),
            smoke(),
            &[],
            Some(1),
            Network::Loopback { hint: 4500 },
            KeyMode::Os,
        )
        .unwrap();
        assert_ne!(first.install.trust_roots, second.install.trust_roots);
        let gateway = first.install.identity(None, "gateway");
        assert_ne!(
            first.install.token(&gateway),
            second.install.token(&gateway)
        );
        assert_eq!(first.install.token(&gateway).len(), 64, "256-bit tokens");
        // The seed's derivation, which anyone can repeat, gives neither.
        let derived = Install::new(
            first.install.scenario.clone(),
            Seed::new(1),
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        assert_ne!(derived.token(&gateway), first.install.token(&gateway));
        let _ = std::fs::remove_dir_all(&base);
    }
}
