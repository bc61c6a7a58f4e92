//! Pods in Linux network namespaces (`up --netns`, `run --real --netns`).
//!
//! Every host of a mesh (each workload's app plus sidecar, the CA, the
//! control plane, and in runs the operator and rogue hosts) gets its own
//! network namespace, joined by a veth pair to a bridge the mesh owns in
//! the host namespace, with an address the mesh assigns from
//! `10.213.S.0/24` (the bridge is `.1`, hosts `.2` up in name order). A
//! pod's `lo` is its own, so a port bound on `127.0.0.1` inside it (the
//! app port, the outbound listener) is reachable from that pod only.
//!
//! Cuts are kernel-level and per pair: a permanent neighbour entry in the
//! sender's namespace maps the receiver's address to a MAC no interface
//! has, so the bridge floods those frames and every port drops them.
//! Packets vanish silently (connects and writes time out, as in a real
//! partition) in exactly the direction asked for, and deleting the entry
//! repairs it. Why not the alternatives: a veth brought down cuts a pod
//! from everyone (no partition between two groups), a blackhole route
//! fails the sender at once with EINVAL, and iptables is not installed.
//!
//! Everything is driven through `ip` (iproute2); a thread enters a pod
//! with `setns` (the `nix` crate, so no `unsafe` here). Names carry the
//! owner's pid, so [`remove_stale`] can delete what a killed owner left:
//! namespaces `msim-<pid>-<seq>-<host>`, bridges `msb<pid:x>x<seq:x>`
//! (veths die with their namespace). A lock file serialises the choice of
//! subnet between meshes starting at once.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// The ports a pod binds on its own loopback, reachable from inside the
/// pod only: the app's port, the sidecar's outbound listener, and its
/// admin listener (which serves on loopback only, pods or not).
pub const POD_LOCAL_PORTS: [u16; 3] = [
    mesh::ports::APP,
    mesh::ports::PROXY_OUTBOUND,
    mesh::ports::PROXY_ADMIN,
];

/// Every namespace a mesh creates starts with this.
pub const NAMESPACE_PREFIX: &str = "msim-";
const BRIDGE_PREFIX: &str = "msb";
const VETH_PREFIX: &str = "msv";
/// Linux's IFNAMSIZ less the terminating NUL.
const IFNAME_LEN_MAX: usize = 15;
/// The mesh's /16: each pod network takes one /24 of it.
const NETWORK_OCTETS: [u8; 2] = [10, 213];
/// Addresses `.2..=.254` of a /24.
pub const PODS_MAX: usize = 253;
/// A locally administered MAC that no interface has: frames to it are
/// flooded by the bridge and dropped by every port.
const CUT_MAC: &str = "02:6d:73:69:6d:00";
/// Serialises subnet choice and stale cleanup between meshes.
const LOCK_PATH: &str = "/run/meshsim-netns.lock";
/// The interface name of a pod's end of its veth pair.
const POD_INTERFACE: &str = "eth0";

/// Why a pod network could not be set up, entered or changed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Creating namespaces needs root (CAP_SYS_ADMIN) on Linux.
    #[error("network namespaces need root on Linux ({0})")]
    Unavailable(String),
    /// `ip` refused.
    #[error("`ip {args}` failed: {stderr}")]
    Ip {
        /// The arguments given.
        args: String,
        /// What `ip` printed.
        stderr: String,
    },
    /// `ip` could not be run at all.
    #[error("running `ip` (iproute2): {0}")]
    Spawn(std::io::Error),
    /// Every /24 of 10.213.0.0/16 is taken.
    #[error("no free /24 left in 10.213.0.0/16")]
    NoSubnet,
    /// More hosts than one /24 holds.
    #[error("{0} hosts do not fit one pod network (at most {PODS_MAX})")]
    TooManyHosts(usize),
    /// A file (namespace handle, lock) failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// `setns` failed.
    #[error("entering namespace {name}: {errno}")]
    Enter {
        /// The namespace.
        name: String,
        /// The error.
        errno: String,
    },
}

/// The names of one pod network: the owner's pid and a sequence number
/// that tells apart the networks of one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Naming {
    pid: u32,
    seq: u8,
}

impl Naming {
    /// Names for a network owned by `pid`.
    pub fn new(pid: u32, seq: u8) -> Self {
        Naming { pid, seq }
    }

    /// The namespace of `host`.
    pub fn namespace(&self, host: &str) -> String {
        format!("{NAMESPACE_PREFIX}{}-{}-{host}", self.pid, self.seq)
    }

    /// The bridge (host namespace).
    pub fn bridge(&self) -> String {
        format!("{BRIDGE_PREFIX}{:x}x{:x}", self.pid, self.seq)
    }

    /// The host-side end of pod `index`'s veth pair.
    pub fn veth(&self, index: usize) -> String {
        format!("{VETH_PREFIX}{:x}x{:x}x{index:x}", self.pid, self.seq)
    }
}

/// The pid that owns a namespace, bridge or veth named by [`Naming`].
fn owner_of(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix(NAMESPACE_PREFIX) {
        return rest.split('-').next()?.parse().ok();
    }
    let rest = name
        .strip_prefix(BRIDGE_PREFIX)
        .or_else(|| name.strip_prefix(VETH_PREFIX))?;
    u32::from_str_radix(rest.split('x').next()?, 16).ok()
}

/// The address of host number `index` (name order) in subnet `subnet`.
pub fn pod_address(subnet: u8, index: usize) -> Ipv4Addr {
    let [a, b] = NETWORK_OCTETS;
    Ipv4Addr::new(a, b, subnet, (index + 2) as u8)
}

fn bridge_address(subnet: u8) -> Ipv4Addr {
    let [a, b] = NETWORK_OCTETS;
    Ipv4Addr::new(a, b, subnet, 1)
}

/// Runs `ip ARGS`; its stdout on success.
fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetnsError::Spawn)?;
    if !output.status.success() {
        return Err(NetnsError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether this process may create namespaces: root on Linux with `ip`.
pub fn available() -> Result<(), NetnsError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| NetnsError::Unavailable(format!("no /proc: {e}")))?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Err(NetnsError::Unavailable(format!("running as uid {euid}")));
    }
    ip(&["netns", "list"]).map(drop)
}

/// Held while a network is chosen and built, or stale ones removed.
struct Lock(std::fs::File);

impl Lock {
    fn take() -> Result<Lock, NetnsError> {
        let file_error = |source| NetnsError::File {
            path: LOCK_PATH.into(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .map_err(file_error)?;
        file.lock().map_err(file_error)?;
        Ok(Lock(file))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn owner_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes every namespace and bridge of a pod network whose owner is
/// dead (an `up` that was killed before it could clean up). Returns
/// what it removed.
pub fn remove_stale() -> Result<Vec<String>, NetnsError> {
    let _lock = Lock::take()?;
    let mut removed = Vec::new();
    let namespaces = ip(&["netns", "list"])?;
    for name in namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if owner_of(name).is_some_and(|pid| !owner_alive(pid)) {
            ip(&["netns", "del", name])?;
            removed.push(name.to_owned());
        }
    }
    // Veths too: a namespace whose name is gone lives on (and keeps its
    // veth) while orphaned TCP sockets in it still retransmit.
    let links = ip(&["-o", "link", "show"])?;
    for name in links.lines().filter_map(link_name) {
        let ours = name.starts_with(BRIDGE_PREFIX) || name.starts_with(VETH_PREFIX);
        if ours && owner_of(name).is_some_and(|pid| !owner_alive(pid)) {
            // One end of a veth pair takes the other with it.
            let _ = ip(&["link", "del", name]);
            removed.push(name.to_owned());
        }
    }
    Ok(removed)
}

/// The interface name in a line of `ip -o link show`: `7: name: <...`.
fn link_name(line: &str) -> Option<&str> {
    let name = line.split(": ").nth(1)?;
    Some(name.split('@').next().unwrap_or(name))
}

/// The third octets of 10.213.0.0/16 some interface already uses.
fn used_subnets() -> Result<Vec<u8>, NetnsError> {
    let addresses = ip(&["-o", "-4", "addr", "show"])?;
    let [a, b] = NETWORK_OCTETS;
    Ok(addresses
        .split_whitespace()
        .filter_map(|word| word.split('/').next()?.parse::<Ipv4Addr>().ok())
        .filter(|ip| ip.octets()[..2] == [a, b])
        .map(|ip| ip.octets()[2])
        .collect())
}

/// One host's pod.
#[derive(Clone, Debug)]
pub struct Pod {
    /// Its namespace.
    pub namespace: String,
    /// Its address on the mesh's bridge.
    pub ip: Ipv4Addr,
    /// The host-side end of its veth pair.
    veth: String,
}

/// The pods of one mesh and the bridge between them. Dropping it removes
/// them.
#[derive(Debug)]
pub struct PodNetwork {
    naming: Naming,
    subnet: u8,
    pods: BTreeMap<String, Pod>,
}

/// Tells apart the pod networks one process creates.
static NEXT_SEQ: AtomicU8 = AtomicU8::new(0);

impl PodNetwork {
    /// Creates a namespace for every host in `hosts` (after removing what
    /// dead owners left), each with `lo` up and a veth to a new bridge.
    pub fn create(hosts: &[String]) -> Result<PodNetwork, NetnsError> {
        available()?;
        if hosts.len() > PODS_MAX {
            return Err(NetnsError::TooManyHosts(hosts.len()));
        }
        remove_stale()?;
        let naming = Naming::new(std::process::id(), NEXT_SEQ.fetch_add(1, Ordering::Relaxed));
        let _lock = Lock::take()?;
        let used = used_subnets()?;
        let subnet = (0..=255u8)
            .find(|s| !used.contains(s))
            .ok_or(NetnsError::NoSubnet)?;
        let mut network = PodNetwork {
            naming,
            subnet,
            pods: BTreeMap::new(),
        };
        network.add_bridge()?;
        for (index, host) in hosts.iter().enumerate() {
            network.add_pod(index, host)?;
        }
        Ok(network)
    }

    fn add_bridge(&self) -> Result<(), NetnsError> {
        let bridge = self.naming.bridge();
        debug_assert!(bridge.len() <= IFNAME_LEN_MAX);
        let address = format!("{}/24", bridge_address(self.subnet));
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &address, "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        Ok(())
    }

    /// Adds pod `index` for `host`; recorded before its links, so a
    /// failure half-way is still removed on drop.
    fn add_pod(&mut self, index: usize, host: &str) -> Result<(), NetnsError> {
        let namespace = self.naming.namespace(host);
        let veth = self.naming.veth(index);
        let address = pod_address(self.subnet, index);
        ip(&["netns", "add", &namespace])?;
        self.pods.insert(
            host.to_owned(),
            Pod {
                namespace: namespace.clone(),
                ip: address,
                veth: veth.clone(),
            },
        );
        ip(&[
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            POD_INTERFACE,
            "netns",
            &namespace,
        ])?;
        ip(&["link", "set", &veth, "master", &self.naming.bridge()])?;
        ip(&["link", "set", &veth, "up"])?;
        let cidr = format!("{address}/24");
        ip(&["-n", &namespace, "addr", "add", &cidr, "dev", POD_INTERFACE])?;
        ip(&["-n", &namespace, "link", "set", POD_INTERFACE, "up"])?;
        ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Every host and its pod address.
    pub fn addresses(&self) -> BTreeMap<String, IpAddr> {
        self.pods
            .iter()
            .map(|(host, pod)| (host.clone(), IpAddr::V4(pod.ip)))
            .collect()
    }

    /// The pod of `host`.
    pub fn pod(&self, host: &str) -> Option<&Pod> {
        self.pods.get(host)
    }

    /// Drops every packet `from` sends to `to` (both must be pods).
    /// Returns false when either is not a pod.
    pub fn cut(&self, from: &str, to: &str) -> Result<bool, NetnsError> {
        let (Some(sender), Some(receiver)) = (self.pods.get(from), self.pods.get(to)) else {
            return Ok(false);
        };
        let target = receiver.ip.to_string();
        ip(&[
            "-n",
            &sender.namespace,
            "neigh",
            "replace",
            &target,
            "lladdr",
            CUT_MAC,
            "dev",
            POD_INTERFACE,
            "nud",
            "permanent",
        ])?;
        Ok(true)
    }

    /// Undoes [`PodNetwork::cut`] (a no-op when there is no cut).
    pub fn repair(&self, from: &str, to: &str) -> Result<bool, NetnsError> {
        let (Some(sender), Some(receiver)) = (self.pods.get(from), self.pods.get(to)) else {
            return Ok(false);
        };
        let target = receiver.ip.to_string();
        let args = [
            "-n",
            &sender.namespace,
            "neigh",
            "del",
            &target,
            "dev",
            POD_INTERFACE,
        ];
        // Deleting an entry the kernel has not got is not an error here.
        let _ = ip(&args);
        Ok(true)
    }

    /// Repairs every cut.
    pub fn repair_all(&self) {
        for pod in self.pods.values() {
            let _ = ip(&["-n", &pod.namespace, "neigh", "flush", "dev", POD_INTERFACE]);
        }
    }

    /// Removes every veth, namespace and the bridge. The veth goes
    /// first: a namespace outlives its name while orphaned TCP sockets in
    /// it still retransmit, and would keep its veth that long.
    pub fn remove(&mut self) {
        for pod in std::mem::take(&mut self.pods).into_values() {
            let _ = ip(&["link", "del", &pod.veth]);
            let _ = ip(&["netns", "del", &pod.namespace]);
        }
        let _ = ip(&["link", "del", &self.naming.bridge()]);
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Moves the calling thread into namespace `name`: every socket it (and
/// every thread it starts) creates from then on lives there.
pub fn enter(name: &str) -> Result<(), NetnsError> {
    #[cfg(not(target_os = "linux"))]
    return Err(NetnsError::Unavailable(format!("{name}: not Linux")));
    #[cfg(target_os = "linux")]
    enter_linux(name)
}

#[cfg(target_os = "linux")]
fn enter_linux(name: &str) -> Result<(), NetnsError> {
    let path = format!("/run/netns/{name}");
    let handle = std::fs::File::open(&path).map_err(|source| NetnsError::File {
        path: path.clone(),
        source,
    })?;
    nix::sched::setns(&handle, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| {
        NetnsError::Enter {
            name: name.to_owned(),
            errno: errno.to_string(),
        }
    })
}

/// Whether something accepts TCP connections on `address` inside
/// namespace `name`, tried from a fresh thread (never a pooled one, which
/// would stay in the namespace).
pub fn accepts_in(name: &str, address: SocketAddr, limit: Duration) -> bool {
    let name = name.to_owned();
    std::thread::spawn(move || {
        enter(&name).is_ok() && std::net::TcpStream::connect_timeout(&address, limit).is_ok()
    })
    .join()
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_name_their_owner() {
        // The largest pid Linux hands out (pid_max ≤ 2^22) and sequence.
        let naming = Naming::new(4_194_303, 255);
        assert!(
            naming.bridge().len() <= IFNAME_LEN_MAX,
            "{}",
            naming.bridge()
        );
        let veth = naming.veth(PODS_MAX - 1);
        assert!(veth.len() <= IFNAME_LEN_MAX, "{veth}");
        assert_eq!(owner_of(&naming.bridge()), Some(4_194_303));
        assert_eq!(owner_of(&naming.veth(3)), Some(4_194_303));
        let namespace = Naming::new(812, 3).namespace("gateway-0");
        assert_eq!(namespace, "msim-812-3-gateway-0");
        assert_eq!(owner_of(&namespace), Some(812));
        assert_eq!(owner_of("eth0"), None);
        assert_eq!(owner_of("msim-x"), None);
        assert_eq!(link_name("7: msb32cx0: <BROADCAST> mtu"), Some("msb32cx0"));
        assert_eq!(link_name("9: msv1x0x2@if3: <UP>"), Some("msv1x0x2"));
    }

    #[test]
    fn pods_are_numbered_after_the_bridge_in_their_subnet() {
        assert_eq!(bridge_address(7), Ipv4Addr::new(10, 213, 7, 1));
        assert_eq!(pod_address(7, 0), Ipv4Addr::new(10, 213, 7, 2));
        assert_eq!(pod_address(7, PODS_MAX - 1), Ipv4Addr::new(10, 213, 7, 254));
    }
}
