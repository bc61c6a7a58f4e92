//! The real side of the seam: tokio sockets on loopback and the OS clock.
//!
//! Every host gets its own `127.0.0.x` address, as turmoil gives every host
//! its own IP. Ports are logical: `bind(4143)` listens on an ephemeral OS
//! port unless fixed ports were asked for, and the shared [`AddressBook`]
//! tells `connect` where `(host, 4143)` really is. Unknown hosts fall back to
//! DNS, so the same `Net` also reaches any URL.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};

use crate::{BoxFuture, BoxIo, Clock, LOCALHOST, Listener, Net, SkewHandle};

struct Book {
    hosts: BTreeMap<String, IpAddr>,
    ports: BTreeMap<(String, u16), SocketAddr>,
    /// The `127.a.b.0` network new hosts are numbered in.
    base: Ipv4Addr,
    /// Ports every host binds on `127.0.0.1` instead of its own address:
    /// with each host in its own network namespace (a pod), only the pod
    /// itself reaches them.
    pod_local_ports: BTreeSet<u16>,
}

impl Default for Book {
    fn default() -> Self {
        Book {
            hosts: BTreeMap::new(),
            ports: BTreeMap::new(),
            base: Ipv4Addr::new(127, 0, 0, 0),
            pod_local_ports: BTreeSet::new(),
        }
    }
}

/// Shared map from host names to loopback addresses and bound ports.
#[derive(Clone, Default)]
pub struct AddressBook {
    inner: Arc<Mutex<Book>>,
    fixed_ports: bool,
}

impl AddressBook {
    /// A book that binds ephemeral OS ports (safe for parallel tests).
    pub fn ephemeral() -> Self {
        Self::default()
    }

    /// A book that binds the logical port itself (for `meshsim up`).
    pub fn fixed() -> Self {
        AddressBook {
            fixed_ports: true,
            ..Self::default()
        }
    }

    /// A fixed-port book numbering hosts in `base` (`127.a.b.0`), so that
    /// several `meshsim up` meshes can run side by side on one machine.
    pub fn fixed_in(base: Ipv4Addr) -> Self {
        let book = Self::fixed();
        book.inner.lock().expect("address book poisoned").base = base;
        book
    }

    /// A fixed-port book that already knows every host's address: what each
    /// process of a multi-process mesh builds from the state directory.
    /// Every host listens on its logical ports, so `(host, port)` is found
    /// without the host having bound anything in this process.
    pub fn fixed_with_hosts(hosts: BTreeMap<String, IpAddr>) -> Self {
        let book = Self::fixed();
        book.inner.lock().expect("address book poisoned").hosts = hosts;
        book
    }

    /// An ephemeral-port book that already knows every host's address
    /// (hosts in network namespaces, addressed by the mesh's bridge).
    pub fn ephemeral_with_hosts(hosts: BTreeMap<String, IpAddr>) -> Self {
        let book = Self::ephemeral();
        book.inner.lock().expect("address book poisoned").hosts = hosts;
        book
    }

    /// Binds `ports` on `127.0.0.1` rather than the host's address. Only
    /// for hosts that each have their own network namespace, where that
    /// loopback is the pod's own: a host then reaches its own `ports`
    /// and nobody else does.
    pub fn with_pod_local_ports(self, ports: &[u16]) -> Self {
        self.inner
            .lock()
            .expect("address book poisoned")
            .pod_local_ports
            .extend(ports);
        self
    }

    fn bind_ip(&self, own: IpAddr, port: u16) -> IpAddr {
        let book = self.inner.lock().expect("address book poisoned");
        if book.pod_local_ports.contains(&port) {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            own
        }
    }

    /// Every host and its address, in name order.
    pub fn hosts(&self) -> BTreeMap<String, IpAddr> {
        self.inner
            .lock()
            .expect("address book poisoned")
            .hosts
            .clone()
    }

    /// Gives `host` the next free `127.a.b.x` address (idempotent).
    pub fn add_host(&self, host: &str) -> IpAddr {
        let mut book = self.inner.lock().expect("address book poisoned");
        if let Some(ip) = book.hosts.get(host) {
            return *ip;
        }
        let index = book.hosts.len() as u32 + 2;
        let ip = IpAddr::V4(Ipv4Addr::from(u32::from(book.base) + index));
        book.hosts.insert(host.to_owned(), ip);
        ip
    }

    /// Where `(host, port)` is listening, if it is. In a fixed-port book a
    /// known host listens on the logical port itself.
    pub fn lookup(&self, host: &str, port: u16) -> Option<SocketAddr> {
        let book = self.inner.lock().expect("address book poisoned");
        if let Some(addr) = book.ports.get(&(host.to_owned(), port)) {
            return Some(*addr);
        }
        if self.fixed_ports {
            let pod_local = book.pod_local_ports.contains(&port);
            return book.hosts.get(host).map(|ip| match pod_local {
                true => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                false => SocketAddr::new(*ip, port),
            });
        }
        None
    }

    fn host_ip(&self, host: &str) -> Option<IpAddr> {
        self.inner
            .lock()
            .expect("address book poisoned")
            .hosts
            .get(host)
            .copied()
    }

    fn publish(&self, host: &str, port: u16, addr: SocketAddr) {
        let mut book = self.inner.lock().expect("address book poisoned");
        book.ports.insert((host.to_owned(), port), addr);
    }

    /// The network view of one host (adds the host if needed).
    pub fn net_for(&self, host: &str) -> RealNet {
        let ip = self.add_host(host);
        RealNet {
            host: host.to_owned(),
            ip,
            book: self.clone(),
        }
    }
}

/// One host's view of the real network.
#[derive(Clone)]
pub struct RealNet {
    host: String,
    ip: IpAddr,
    book: AddressBook,
}

impl RealNet {
    /// A view for a host outside any mesh (the standalone load generator).
    pub fn standalone() -> Self {
        AddressBook::ephemeral().net_for("loadgen")
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<SocketAddr> {
        let host = if host == LOCALHOST {
            self.host.as_str()
        } else {
            host
        };
        if let Some(addr) = self.book.lookup(host, port) {
            return Ok(addr);
        }
        if self.book.host_ip(host).is_some() {
            // A mesh host that has not bound this port: like a closed port.
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("{host}:{port}"),
            ));
        }
        tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {host}"))
            })
    }
}

struct RealListener(TcpListener);

impl Listener for RealListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream) as BoxIo, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Net for RealNet {
    fn host_name(&self) -> &str {
        &self.host
    }

    fn bind(&self, port: u16) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let os_port = if self.book.fixed_ports { port } else { 0 };
            let ip = self.book.bind_ip(self.ip, port);
            let listener = TcpListener::bind((ip, os_port)).await?;
            self.book.publish(&self.host, port, listener.local_addr()?);
            Ok(Box::new(RealListener(listener)) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxIo>> {
        Box::pin(async move {
            let addr = self.resolve(host, port).await?;
            let stream = TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

/// The OS wall clock, with an optional skew. Clones made with
/// [`SystemClock::sibling`] share one run start, so trace times line up.
///
/// This is the one place outside tests that reads `SystemTime::now` and
/// `std::time::Instant::now`; it is only ever handed to real-mode hosts.
pub struct SystemClock {
    started: std::time::Instant,
    skew: SkewHandle,
}

impl SystemClock {
    /// A clock whose run time starts now.
    #[allow(clippy::disallowed_methods)] // real mode only: see the type's doc.
    pub fn new(skew: SkewHandle) -> Self {
        SystemClock {
            started: std::time::Instant::now(),
            skew,
        }
    }

    /// A clock for another host of the same run, with its own skew.
    pub fn sibling(&self, skew: SkewHandle) -> Self {
        SystemClock {
            started: self.started,
            skew,
        }
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // real mode only: see the type's doc.
    fn wall(&self) -> SystemTime {
        self.skew.apply(SystemTime::now())
    }

    fn run_elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_distinct_loopback_addresses() {
        let book = AddressBook::ephemeral();
        let a = book.add_host("a");
        let b = book.add_host("b");
        assert_ne!(a, b);
        assert!(a.is_loopback() && b.is_loopback());
        assert_eq!(book.add_host("a"), a);
    }

    #[test]
    fn a_fixed_book_finds_hosts_it_was_given_on_their_logical_ports() {
        let base = AddressBook::fixed_in(Ipv4Addr::new(127, 9, 8, 0));
        let ip = base.add_host("ca");
        assert_eq!(ip, IpAddr::V4(Ipv4Addr::new(127, 9, 8, 2)));
        let other_process = AddressBook::fixed_with_hosts(base.hosts());
        assert_eq!(
            other_process.lookup("ca", 8443),
            Some(SocketAddr::new(ip, 8443))
        );
        assert_eq!(other_process.lookup("nobody", 8443), None);
        assert_eq!(AddressBook::ephemeral().lookup("ca", 8443), None);
    }

    #[test]
    fn pod_local_ports_are_on_the_pod_s_own_loopback() {
        let pod = IpAddr::V4(Ipv4Addr::new(10, 213, 0, 2));
        let hosts = BTreeMap::from([("app-0".to_owned(), pod)]);
        let book = AddressBook::fixed_with_hosts(hosts).with_pod_local_ports(&[8080]);
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            book.lookup("app-0", 8080),
            Some(SocketAddr::new(loopback, 8080))
        );
        assert_eq!(book.lookup("app-0", 4143), Some(SocketAddr::new(pod, 4143)));
        assert_eq!(book.bind_ip(pod, 8080), loopback);
        assert_eq!(book.bind_ip(pod, 4143), pod);
    }
}
