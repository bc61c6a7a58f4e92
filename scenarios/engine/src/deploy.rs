//! The mesh as separate processes on real sockets: the state directory
//! that `meshsim up` writes and every component process reads, the
//! components themselves (CA, control plane, one sidecar, one app), and the
//! CA client behind `meshsim certs issue`.
//!
//! Every process rebuilds the same [`Install`] from the scenario file, the
//! seed and the CA's creation time recorded in the state directory: CA
//! material and bootstrap tokens are derived from the seed, so the CA
//! process and the workloads agree on the trust bundle without copying keys
//! around. Hosts get fixed `127.a.b.x` addresses and listen on their logical
//! ports, so a process finds any other host from the address map alone.
//!
//! State directory layout:
//! - `mesh.json`: scenario, seed, CA creation time, host addresses (internal);
//! - `ca.pem`: the trust bundle;
//! - `addresses.json`: the public contract, `"<service>-<replica>"` →
//!   `{inbound, admin, identity, server_name}` (written once every
//!   inbound listener accepts connections, removed on shutdown);
//! - `ca.json`: where the CA listens and the identity it proves;
//! - `tokens.json` (mode 0600): bootstrap token of every identity;
//! - `prometheus.yml`: a Prometheus configuration scraping every sidecar's
//!   admin `/metrics` (written with `addresses.json`);
//! - `disk/<host>/`: each host's durable storage; `logs/<process>.log`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use mesh::ca::pem_encode;
use mesh::identity::{certificate_request, ed25519_key};
use mesh::tls::MeshTls;
use mesh::{MeshError, SpiffeId, ports};
use rustls_pki_types::CertificateDer;
use seam::real::{AddressBook, SystemClock};
use seam::{Clock, HostEnv, HostParts, Seed, SkewHandle, Trace};
use serde::{Deserialize, Serialize};

use crate::install::{HostFuture, Install, Role};
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
    /// The run seed (CA material and tokens derive from it).
    pub seed: u64,
    /// When the CA material was made (Unix seconds), so that every process
    /// derives byte-identical certificates.
    pub ca_created_unix_s: u64,
    /// Every host and its loopback address.
    pub hosts: BTreeMap<String, IpAddr>,
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

/// Writes `value` as JSON through a temporary file and a rename, so a
/// reader polling for the file never sees half of it.
fn write_json<T: Serialize>(path: &Path, value: &T, mode: Option<u32>) -> Result<(), DeployError> {
    let text = serde_json::to_string_pretty(value).expect("state serializes");
    write_file(path, text.as_bytes(), mode)
}

fn write_file(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), DeployError> {
    let partial = path.with_extension("partial");
    // A fresh file, so the mode applies (it only does on creation).
    let _ = std::fs::remove_file(&partial);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&partial).map_err(file_error(&partial))?;
    file.write_all(bytes).map_err(file_error(&partial))?;
    file.sync_all().map_err(file_error(&partial))?;
    std::fs::rename(&partial, path).map_err(file_error(path))
}

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

    /// The install every process of the mesh agrees on. Its processes run
    /// until stopped, so its telemetry keeps windows, not a whole history.
    pub fn install(&self) -> Result<Arc<Install>, DeployError> {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(self.ca_created_unix_s);
        let install = Install::new(self.scenario()?, Seed::new(self.seed), created)?;
        install
            .telemetry
            .set_retention(mesh::telemetry::Retention::LongLived);
        Ok(install)
    }

    /// The address book of the mesh (fixed ports).
    pub fn book(&self) -> AddressBook {
        AddressBook::fixed_with_hosts(self.hosts.clone())
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
            trace: Trace::hash_only(),
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

/// The software of one process: the same role code both other modes run.
/// It runs until the process is stopped.
pub fn part_software(dir: &Path, part: &Part) -> Result<HostFuture, DeployError> {
    let state = MeshState::load(dir)?;
    let install = state.install()?;
    let env = state.host_env(dir, part.host())?;
    match part {
        Part::Ca => Ok(install.software(&Role::Ca, env)),
        Part::Control => Ok(install.software(&Role::Control, env)),
        Part::Proxy { host } => {
            let service = workload_service(&install, host)?;
            Ok(Box::pin(async move {
                // The sidecar's tasks run on their own; this future only
                // keeps its handle alive.
                let _proxy = install.sidecar(&service, env);
                std::future::pending().await
            }))
        }
        Part::App { host } => {
            let service = workload_service(&install, host)?;
            Ok(install.app(&service, env))
        }
    }
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
}

/// Writes the state directory for `scenario` (a fresh disk for every host).
pub fn prepare(
    dir: &Path,
    scenario_path: &Path,
    overrides: &[Override],
    seed: Option<u64>,
    network_hint: u32,
) -> Result<Prepared, DeployError> {
    let scenario = Scenario::load_with(scenario_path, overrides)
        .map_err(|e| DeployError::Scenario(e.to_string()))?;
    let seed = seed.unwrap_or(scenario.seed);
    std::fs::create_dir_all(dir).map_err(file_error(dir))?;
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
    let install = Install::new(scenario, Seed::new(seed), created)?;
    let book = free_network(&install, network_hint)?;
    let state = MeshState {
        scenario: scenario_abs,
        overrides: overrides.iter().map(ToString::to_string).collect(),
        seed,
        ca_created_unix_s,
        hosts: book.hosts(),
    };
    write_json(&dir.join(MESH_FILE), &state, None)?;
    let bundle: String = install
        .trust_roots
        .iter()
        .map(|der| pem_encode("CERTIFICATE", der.as_ref()))
        .collect();
    write_file(&dir.join(CA_FILE), bundle.as_bytes(), None)?;
    let ca = install.ca_upstream();
    let ca_info = CaInfo {
        address: SocketAddr::new(state.ip("ca")?, ca.port).to_string(),
        server_name: ca.identity.dns_name(),
        identity: ca.identity.to_string(),
    };
    write_json(&dir.join(CA_INFO_FILE), &ca_info, None)?;
    let tokens: BTreeMap<String, String> = install
        .every_identity()
        .iter()
        .map(|id| (id.to_string(), install.token(id)))
        .collect();
    write_json(&dir.join(TOKENS_FILE), &tokens, Some(0o600))?;
    Ok(Prepared { state, install })
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
                admin: SocketAddr::new(ip, ports::PROXY_ADMIN).to_string(),
                server_name: identity.dns_name(),
                identity: identity.to_string(),
            },
        );
    }
    Ok(table)
}

/// Publishes `addresses.json` (once the mesh is ready).
pub fn publish_addresses(
    dir: &Path,
    table: &BTreeMap<String, AddressEntry>,
) -> Result<(), DeployError> {
    write_json(&dir.join(ADDRESSES_FILE), table, None)
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
        None,
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
/// `identity`, like `spire-agent api fetch x509`: a fresh key from
/// `key_entropy` (never sent), a CSR, and the identity's bootstrap token.
pub async fn issue_certificate(
    dir: &Path,
    identity: &str,
    key_entropy: [u8; 32],
) -> Result<Issued, DeployError> {
    let state = MeshState::load(dir)?;
    let install = state.install()?;
    let identity = resolve_identity(&install, identity)?;
    let tokens: BTreeMap<String, String> = read_json(&dir.join(TOKENS_FILE))?;
    let token = tokens.get(&identity.to_string()).ok_or_else(|| {
        DeployError::BadRequest(format!(
            "no bootstrap token for {identity}; the mesh has tokens for: {}",
            tokens.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    // The seed tree hashes the label, so 256 bits of entropy in the label
    // give a key as unpredictable as the entropy.
    let label: String = key_entropy.iter().map(|b| format!("{b:02x}")).collect();
    let (key, pkcs8) = ed25519_key(Seed::new(0).child(&label))?;
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
    let mut sender = mesh::http::handshake(stream).await?;
    let request = Request::post("/v1/certify")
        .header(http::header::HOST, ca.host.as_str())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(mesh::http::Body::from(Bytes::from(csr)))
        .map_err(|e| DeployError::BadRequest(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| MeshError::Refused(format!("the CA did not answer: {e}")))?;
    let response = mesh::http::buffer_response(response, 64 * 1024).await?;
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
    write_file(&out.join("cert.pem"), issued.chain_pem.as_bytes(), None)?;
    write_file(&out.join("key.pem"), issued.key_pem.as_bytes(), Some(0o600))?;
    write_file(&out.join("ca.pem"), issued.ca_pem.as_bytes(), None)
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
        let scenario = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../library/smoke.toml"
        ));
        let prepared = prepare(&dir, scenario, &[], None, 4321).expect("prepare");
        let loaded = MeshState::load(&dir).expect("load");
        assert_eq!(loaded.hosts, prepared.state.hosts);
        let again = loaded.install().expect("install");
        assert_eq!(again.trust_roots, prepared.install.trust_roots);
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
            let mode = std::fs::metadata(dir.join(TOKENS_FILE))
                .expect("tokens")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
