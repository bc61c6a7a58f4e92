//! A fault layer over any [`Net`]: partitions, holds, latency and loss
//! between named hosts, switched at run time by whoever holds the
//! [`FaultTable`] (the real-mode engine, on the scenario's schedule).
//!
//! Every connection a host opens to another host is relayed through two
//! pumps, one per direction, that consult the table for that direction:
//! - **cut** (partition or hold): bytes stop moving until the link is
//!   repaired (stalled pumps sleep until the table changes, no polling), as with packets dropped and later retransmitted by TCP; a
//!   new connection waits too (its SYNs are lost), so callers' timeouts
//!   decide, exactly as in a real partition;
//! - **latency**: each chunk is delivered `latency` + up to `jitter` after
//!   it was sent, pipelined (a burst is not serialised behind one delay);
//! - **loss**: each chunk is lost with probability `loss` and delivered one
//!   retransmission timeout later (Linux's minimum RTO, 200 ms), repeatedly.
//!
//! Connections to this host itself (the sidecar and its app) are never
//! faulted. Accepted connections are not wrapped: the connecting side's
//! relay already covers both directions.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::{BoxFuture, BoxIo, LOCALHOST, Listener, Net, Seed};

/// Linux's minimum TCP retransmission timeout: what one lost segment costs.
pub const RETRANSMIT_DELAY: Duration = Duration::from_millis(200);

/// Largest chunk a pump moves at once.
const CHUNK_BYTES: usize = 16 * 1024;

/// The faults on one direction of one link.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Nothing gets through (partition or hold).
    pub cut: bool,
    /// Added one-way delay.
    pub latency: Duration,
    /// Up to this much more, drawn per chunk.
    pub jitter: Duration,
    /// Probability that a chunk is lost (and retransmitted).
    pub loss: f64,
}

impl LinkFaults {
    /// The extra delay of one chunk on this link: `latency`, plus up to
    /// `jitter`, plus one [`RETRANSMIT_DELAY`] per loss (each
    /// retransmission can be lost again, at most six times). The one
    /// fault model of both the real-mode relay and the simulated network.
    pub fn draw_delay(&self, rng: &mut impl Rng) -> Duration {
        let mut delay = self.latency;
        if !self.jitter.is_zero() {
            delay += self.jitter.mul_f64(rng.random::<f64>());
        }
        if self.loss > 0.0 {
            for _ in 0..6 {
                if rng.random::<f64>() >= self.loss {
                    break;
                }
                delay += RETRANSMIT_DELAY;
            }
        }
        delay
    }
}

/// The faults in force between hosts, shared by every [`FaultyNet`] of a
/// run. Directions are `(from, to)`.
///
/// Every link starts from the table's `base` (the scenario's own network:
/// `[sim] link_latency_min`..`max` as latency + jitter), so a real run
/// models the same network as the simulation, and [`FaultTable::clear`]
/// (heal) returns links to that base rather than to a zero-latency wire.
#[derive(Clone, Default)]
pub struct FaultTable(Arc<Table>);

#[derive(Default)]
struct Table {
    base: LinkFaults,
    /// Only links that differ from `base`.
    links: Mutex<BTreeMap<(String, String), LinkFaults>>,
    /// Every change wakes the stalled pumps and connects, so a long
    /// partition costs nothing while it lasts (no polling).
    changed: Notify,
}

impl FaultTable {
    /// A table whose every link starts as (and heals back to) `base`.
    pub fn with_base(base: LinkFaults) -> Self {
        FaultTable(Arc::new(Table {
            base,
            ..Table::default()
        }))
    }

    /// The state every link starts from and heals back to.
    pub fn base(&self) -> &LinkFaults {
        &self.0.base
    }

    /// The faults from `from` to `to`.
    pub fn link(&self, from: &str, to: &str) -> LinkFaults {
        self.0
            .links
            .lock()
            .expect("fault table poisoned")
            .get(&(from.to_owned(), to.to_owned()))
            .cloned()
            .unwrap_or_else(|| self.0.base.clone())
    }

    /// Changes the faults from `from` to `to`.
    pub fn update(&self, from: &str, to: &str, change: impl FnOnce(&mut LinkFaults)) {
        {
            let mut links = self.0.links.lock().expect("fault table poisoned");
            let key = (from.to_owned(), to.to_owned());
            let link = links
                .entry(key.clone())
                .or_insert_with(|| self.0.base.clone());
            change(link);
            if *link == self.0.base {
                links.remove(&key);
            }
        }
        self.0.changed.notify_waiters();
    }

    /// Removes every fault: each link is back at the base.
    pub fn clear(&self) {
        self.0.links.lock().expect("fault table poisoned").clear();
        self.0.changed.notify_waiters();
    }

    /// Waits until `cut()` is false, re-checking on every table change.
    async fn wait_while(&self, cut: impl Fn(&FaultTable) -> bool) {
        loop {
            // Registered before the check, so a change in between is seen.
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !cut(self) {
                return;
            }
            changed.await;
        }
    }

    fn is_cut(&self, from: &str, to: &str) -> bool {
        self.link(from, to).cut
    }
}

/// A host's network with the run's faults applied.
pub struct FaultyNet {
    inner: Arc<dyn Net>,
    table: FaultTable,
    seed: Seed,
    connections: AtomicU64,
}

impl FaultyNet {
    /// Wraps `inner`; `seed` draws jitter and loss.
    pub fn new(inner: Arc<dyn Net>, table: FaultTable, seed: Seed) -> Self {
        FaultyNet {
            inner,
            table,
            seed,
            connections: AtomicU64::new(0),
        }
    }
}

impl Net for FaultyNet {
    fn host_name(&self) -> &str {
        self.inner.host_name()
    }

    fn bind(&self, port: u16) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        self.inner.bind(port)
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxIo>> {
        Box::pin(async move {
            let me = self.inner.host_name().to_owned();
            if host == LOCALHOST || host == me {
                return self.inner.connect(host, port).await;
            }
            // The handshake needs both directions.
            self.table
                .wait_while(|t| t.is_cut(&me, host) || t.is_cut(host, &me))
                .await;
            let socket = self.inner.connect(host, port).await?;
            let index = self.connections.fetch_add(1, Ordering::Relaxed);
            let seed = self.seed.child("faultnet").child(&index.to_string());
            Ok(relay(socket, &me, host, self.table.clone(), seed))
        })
    }
}

/// Puts the two pumps between the caller and `socket`.
fn relay(socket: BoxIo, me: &str, peer: &str, table: FaultTable, seed: Seed) -> BoxIo {
    let (caller_side, relay_side) = tokio::io::duplex(CHUNK_BYTES * 4);
    let (from_caller, to_caller) = tokio::io::split(relay_side);
    let (from_peer, to_peer) = tokio::io::split(socket);
    let up = Direction {
        from: me.to_owned(),
        to: peer.to_owned(),
        table: table.clone(),
        seed: seed.child("up"),
    };
    let down = Direction {
        from: peer.to_owned(),
        to: me.to_owned(),
        table,
        seed: seed.child("down"),
    };
    up.spawn(from_caller, to_peer);
    down.spawn(from_peer, to_caller);
    Box::new(caller_side)
}

struct Direction {
    from: String,
    to: String,
    table: FaultTable,
    seed: Seed,
}

impl Direction {
    /// Reader → (delay, loss) → writer; the writer also stalls while cut.
    fn spawn(
        self,
        mut reader: impl AsyncRead + Send + Unpin + 'static,
        mut writer: impl AsyncWrite + Send + Unpin + 'static,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
        let (from, to, table) = (self.from.clone(), self.to.clone(), self.table.clone());
        crate::task::spawn(async move {
            let mut rng = self.seed.rng();
            let mut buf = vec![0u8; CHUNK_BYTES];
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let delay = self.table.link(&self.from, &self.to).draw_delay(&mut rng);
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        });
        crate::task::spawn(async move {
            while let Some((deliver_at, chunk)) = rx.recv().await {
                // tokio rounds a deadline up to its next millisecond tick,
                // so sleeping for a chunk already due would still cost up
                // to 1 ms per chunk (zero-latency links included).
                if deliver_at > Instant::now() {
                    tokio::time::sleep_until(deliver_at).await;
                }
                table.wait_while(|t| t.is_cut(&from, &to)).await;
                if writer.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::real::AddressBook;

    async fn echo_server(book: &AddressBook) {
        let net = book.net_for("server");
        let mut listener = net.bind(7).await.expect("bind");
        crate::task::spawn(async move {
            while let Ok((mut io, _)) = listener.accept().await {
                crate::task::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }

    async fn round_trip(io: &mut BoxIo) -> io::Result<()> {
        io.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok(())
    }

    #[tokio::test]
    async fn a_cut_link_stalls_and_a_repaired_one_resumes() {
        let book = AddressBook::ephemeral();
        echo_server(&book).await;
        let table = FaultTable::default();
        let client = FaultyNet::new(
            Arc::new(book.net_for("client")),
            table.clone(),
            Seed::new(1),
        );
        let mut io = client.connect("server", 7).await.expect("connect");
        round_trip(&mut io).await.expect("clear link");
        table.update("server", "client", |l| l.cut = true);
        let stalled = tokio::time::timeout(Duration::from_millis(100), round_trip(&mut io)).await;
        assert!(stalled.is_err(), "nothing crosses a cut link");
        let refused =
            tokio::time::timeout(Duration::from_millis(50), client.connect("server", 7)).await;
        assert!(refused.is_err(), "a new connection waits out the cut");
        table.clear();
        // The stalled echo arrives, then the link works again.
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await.expect("resumed");
        round_trip(&mut io).await.expect("repaired");
    }

    #[tokio::test]
    async fn latency_delays_each_direction() {
        let book = AddressBook::ephemeral();
        echo_server(&book).await;
        let table = FaultTable::default();
        table.update("client", "server", |l| {
            l.latency = Duration::from_millis(30)
        });
        table.update("server", "client", |l| {
            l.latency = Duration::from_millis(20)
        });
        let client = FaultyNet::new(Arc::new(book.net_for("client")), table, Seed::new(1));
        let mut io = client.connect("server", 7).await.expect("connect");
        let started = Instant::now();
        round_trip(&mut io).await.expect("round trip");
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn links_start_at_the_base_and_heal_back_to_it() {
        let base = LinkFaults {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(2),
            ..LinkFaults::default()
        };
        let table = FaultTable::with_base(base.clone());
        assert_eq!(table.link("a", "b"), base);
        table.update("a", "b", |l| l.latency = Duration::from_millis(50));
        assert_eq!(table.link("a", "b").latency, Duration::from_millis(50));
        assert_eq!(table.link("a", "b").jitter, base.jitter, "the rest stays");
        table.update("a", "b", |l| l.latency = Duration::from_millis(1));
        assert!(
            table.0.links.lock().unwrap().is_empty(),
            "a link back at the base is not stored"
        );
        table.update("b", "a", |l| l.cut = true);
        table.clear();
        assert_eq!(table.link("b", "a"), base);
    }

    #[tokio::test]
    async fn the_hosts_own_connections_are_never_faulted() {
        let book = AddressBook::ephemeral();
        let table = FaultTable::default();
        let net = FaultyNet::new(
            Arc::new(book.net_for("server")),
            table.clone(),
            Seed::new(1),
        );
        echo_server(&book).await;
        table.update("server", "server", |l| l.cut = true);
        let mut io = net.connect(LOCALHOST, 7).await.expect("connect");
        round_trip(&mut io).await.expect("loopback is not faulted");
    }
}
