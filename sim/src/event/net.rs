//! The event world's network: a listener registry keyed by (host, port),
//! directed links carrying the fault model, and connections made of
//! bounded pipes (`pipe.rs`). One [`NetState`] per world; each host sees
//! it through its own [`EventNet`].
//!
//! Connect semantics:
//! - to this host ([`LOCALHOST`] or its own name): a direct pipe pair, no
//!   latency, never faulted; refused at once if nothing listens;
//! - to another host: while either direction is cut the connect waits (its
//!   SYNs are lost; the caller's timeout decides) and completes if the link
//!   heals; the SYN takes one drawn delay, the listener is looked up when it
//!   arrives, and the SYN-ACK (or the RST of a refusal) one more. So a
//!   refused remote connect fails after one round trip, never hangs.
//! - A host's crash removes its listeners and resets every connection it
//!   was part of ([`NetState::crash`]).

use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use seam::{BoxFuture, BoxIo, LOCALHOST, Listener, Net};
use tokio::time::Instant;

use super::pipe::{Conn, EventStream, Latency, Link, LinkState, Pipe};
use super::timer::Timers;

/// First port a connecting side is given (the Linux ephemeral range).
const FIRST_EPHEMERAL_PORT: u16 = 32768;

struct Queue {
    conns: VecDeque<(EventStream, SocketAddr)>,
    waker: Option<Waker>,
}

/// A bound port: connections wait here until accepted.
struct Bound {
    addr: SocketAddr,
    queue: Mutex<Queue>,
}

impl Bound {
    fn push(&self, stream: EventStream, peer: SocketAddr, backlog: usize) -> bool {
        let waker = {
            let mut queue = self.queue.lock().expect("listener poisoned");
            if queue.conns.len() >= backlog {
                return false;
            }
            queue.conns.push_back((stream, peer));
            queue.waker.take()
        };
        waker.into_iter().for_each(Waker::wake);
        true
    }
}

#[derive(Default)]
struct Inner {
    listeners: BTreeMap<(String, u16), Arc<Bound>>,
    links: BTreeMap<(String, String), Arc<Link>>,
    /// Every connection a host is part of, to reset them on its crash.
    conns: BTreeMap<String, Vec<Weak<Conn>>>,
    addrs: BTreeMap<String, Ipv4Addr>,
    next_port: u16,
}

/// The whole world's network.
pub(crate) struct NetState {
    inner: Mutex<Inner>,
    timers: Timers,
    latency: Arc<Latency>,
    backlog: usize,
}

impl NetState {
    pub fn new(timers: Timers, latency: Latency, backlog: usize) -> Self {
        NetState {
            inner: Mutex::default(),
            timers,
            latency: Arc::new(latency),
            backlog: backlog.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("network poisoned")
    }

    /// Gives `host` an address (10.x.y.z, in order of first mention).
    pub fn add_host(&self, host: &str) {
        let mut inner = self.lock();
        let index = inner.addrs.len() as u32 + 1;
        inner
            .addrs
            .entry(host.to_owned())
            .or_insert_with(|| Ipv4Addr::from(0x0a00_0000 | index));
    }

    fn addr(&self, host: &str) -> Option<Ipv4Addr> {
        self.lock().addrs.get(host).copied()
    }

    /// The directed link `from` → `to`, created on first use.
    fn link(&self, from: &str, to: &str) -> Arc<Link> {
        let mut inner = self.lock();
        let key = (from.to_owned(), to.to_owned());
        inner
            .links
            .entry(key)
            .or_insert_with(|| Arc::new(Link::new(self.latency.clone())))
            .clone()
    }

    /// Changes the link `from` → `to`.
    pub fn update_link(&self, from: &str, to: &str, change: impl FnOnce(&mut LinkState)) {
        self.link(from, to).update(change);
    }

    /// Removes `host`'s listeners and resets its connections.
    pub fn crash(&self, host: &str) {
        let (listeners, conns) = {
            let mut inner = self.lock();
            let ports: Vec<_> = inner
                .listeners
                .keys()
                .filter(|(h, _)| h == host)
                .cloned()
                .collect();
            let listeners: Vec<_> = ports
                .iter()
                .filter_map(|key| inner.listeners.remove(key))
                .collect();
            (listeners, inner.conns.remove(host).unwrap_or_default())
        };
        for bound in listeners {
            let queued = std::mem::take(&mut bound.queue.lock().expect("listener").conns);
            drop(queued); // unaccepted connections: dropped unread, so reset
        }
        conns
            .iter()
            .filter_map(Weak::upgrade)
            .for_each(|conn| conn.reset());
    }

    fn register(&self, hosts: &[&str], conn: &Arc<Conn>) {
        let mut inner = self.lock();
        for host in hosts {
            let list = inner.conns.entry((*host).to_owned()).or_default();
            if list.len() >= 64 && list.len().is_power_of_two() {
                list.retain(|weak| weak.strong_count() > 0);
            }
            list.push(Arc::downgrade(conn));
        }
    }

    fn ephemeral(&self, host: &str) -> SocketAddr {
        let mut inner = self.lock();
        let port = FIRST_EPHEMERAL_PORT.wrapping_add(inner.next_port);
        inner.next_port = inner.next_port.wrapping_add(1) % (u16::MAX - FIRST_EPHEMERAL_PORT);
        let ip = inner
            .addrs
            .get(host)
            .copied()
            .unwrap_or(Ipv4Addr::LOCALHOST);
        SocketAddr::from((ip, port))
    }

    fn bound(&self, host: &str, port: u16) -> Option<Arc<Bound>> {
        self.lock().listeners.get(&(host.to_owned(), port)).cloned()
    }

    async fn sleep(&self, delay: Duration) {
        self.timers.sleep_until(Instant::now() + delay).await;
    }
}

fn refused(host: &str, port: u16) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("nothing listens on {host}:{port}"),
    )
}

/// Waits while either link is cut (a SYN needs both directions).
async fn both_open(up: &Link, down: &Link) {
    poll_fn(|cx| {
        let open = up.open_or_watch(cx.waker()) & down.open_or_watch(cx.waker());
        if open { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
}

/// One host's view of the event network.
pub struct EventNet {
    host: String,
    state: Arc<NetState>,
}

impl EventNet {
    pub(crate) fn new(host: &str, state: Arc<NetState>) -> Self {
        EventNet {
            host: host.to_owned(),
            state,
        }
    }

    /// A connection within this host. Through [`LOCALHOST`] the peer sees a
    /// loopback address, as on a real host (the outbound proxy serves only
    /// loopback callers); through its own name, the host's address.
    fn connect_local(&self, port: u16, loopback: bool) -> io::Result<BoxIo> {
        let state = &self.state;
        let bound = state
            .bound(&self.host, port)
            .ok_or_else(|| refused(&self.host, port))?;
        let conn = Arc::new(Conn {
            up: Pipe::new(None, state.timers.clone()),
            down: Pipe::new(None, state.timers.clone()),
        });
        state.register(&[&self.host], &conn);
        let (ours, theirs) = EventStream::pair(conn);
        let mut peer = state.ephemeral(&self.host);
        if loopback {
            peer.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        if !bound.push(theirs, peer, state.backlog) {
            return Err(refused(&self.host, port));
        }
        Ok(Box::new(ours))
    }

    async fn connect_remote(&self, host: &str, port: u16) -> io::Result<BoxIo> {
        let state = &self.state;
        if state.addr(host).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no host named {host}"),
            ));
        }
        let up = state.link(&self.host, host);
        let down = state.link(host, &self.host);
        both_open(&up, &down).await;
        state.sleep(up.draw_delay()).await;
        let Some(bound) = state.bound(host, port) else {
            state.sleep(down.draw_delay()).await;
            return Err(refused(host, port));
        };
        let conn = Arc::new(Conn {
            up: Pipe::new(Some(up), state.timers.clone()),
            down: Pipe::new(Some(down.clone()), state.timers.clone()),
        });
        state.register(&[&self.host, host], &conn);
        let (ours, theirs) = EventStream::pair(conn);
        if !bound.push(theirs, state.ephemeral(&self.host), state.backlog) {
            state.sleep(down.draw_delay()).await;
            return Err(refused(host, port));
        }
        state.sleep(down.draw_delay()).await;
        Ok(Box::new(ours))
    }
}

struct EventListener {
    host: String,
    port: u16,
    bound: Arc<Bound>,
    state: Arc<NetState>,
}

impl Listener for EventListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(poll_fn(|cx| {
            let mut queue = self.bound.queue.lock().expect("listener poisoned");
            match queue.conns.pop_front() {
                Some((stream, peer)) => Poll::Ready(Ok((Box::new(stream) as BoxIo, peer))),
                None => {
                    queue.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.bound.addr)
    }
}

impl Drop for EventListener {
    fn drop(&mut self) {
        let mut inner = self.state.lock();
        let key = (self.host.clone(), self.port);
        if inner
            .listeners
            .get(&key)
            .is_some_and(|b| Arc::ptr_eq(b, &self.bound))
        {
            inner.listeners.remove(&key);
        }
    }
}

impl Net for EventNet {
    fn host_name(&self) -> &str {
        &self.host
    }

    fn bind(&self, port: u16) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let ip = self.state.addr(&self.host).unwrap_or(Ipv4Addr::LOCALHOST);
            let bound = Arc::new(Bound {
                addr: SocketAddr::from((ip, port)),
                queue: Mutex::new(Queue {
                    conns: VecDeque::new(),
                    waker: None,
                }),
            });
            let key = (self.host.clone(), port);
            let mut inner = self.state.lock();
            if inner.listeners.contains_key(&key) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}:{port} is already bound", self.host),
                ));
            }
            inner.listeners.insert(key, bound.clone());
            Ok(Box::new(EventListener {
                host: self.host.clone(),
                port,
                bound,
                state: self.state.clone(),
            }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxIo>> {
        Box::pin(async move {
            if host == LOCALHOST || host == self.host {
                self.connect_local(port, host == LOCALHOST)
            } else {
                self.connect_remote(host, port).await
            }
        })
    }
}
