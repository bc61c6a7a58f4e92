//! The real side of the seam: tokio sockets on loopback and the OS clock.
//!
//! Every host gets its own `127.0.0.x` address, as turmoil gives every host
//! its own IP. Ports are logical: `bind(4143)` listens on an ephemeral OS
//! port unless fixed ports were asked for, and the shared [`AddressBook`]
//! tells `connect` where `(host, 4143)` really is. Unknown hosts fall back to
//! DNS, so the same `Net` also reaches any URL.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};

use crate::{BoxFuture, BoxIo, Clock, LOCALHOST, Listener, Net, SkewHandle};

#[derive(Default)]
struct Book {
    hosts: BTreeMap<String, IpAddr>,
    ports: BTreeMap<(String, u16), SocketAddr>,
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

    /// Gives `host` the next free `127.0.0.x` address (idempotent).
    pub fn add_host(&self, host: &str) -> IpAddr {
        let mut book = self.inner.lock().expect("address book poisoned");
        if let Some(ip) = book.hosts.get(host) {
            return *ip;
        }
        let index = book.hosts.len() as u32 + 2;
        let ip = IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(127, 0, 0, 0)) + index,
        ));
        book.hosts.insert(host.to_owned(), ip);
        ip
    }

    /// Where `(host, port)` is listening, if it is.
    pub fn lookup(&self, host: &str, port: u16) -> Option<SocketAddr> {
        let book = self.inner.lock().expect("address book poisoned");
        book.ports.get(&(host.to_owned(), port)).copied()
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
            let listener = TcpListener::bind((self.ip, os_port)).await?;
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
}
