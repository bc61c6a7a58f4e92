//! Accept loops that survive exhaustion.
//!
//! * An accept error never ends a loop. EMFILE and ENFILE (out of file
//!   descriptors), ECONNABORTED and the rest are all transient from a
//!   listener's point of view: back off (5 ms, doubling to 1 s) and accept
//!   again. A listener that stops on the first EMFILE is a listener an
//!   attacker can switch off with a connection flood.
//! * Each listener has a cap on open connections. At the cap it stops
//!   accepting (the kernel's backlog holds, then drops, new SYNs) until a
//!   connection ends, so a flood costs a bounded number of descriptors and a
//!   bounded amount of memory, and every connection already admitted keeps
//!   being served. Idle connections are reaped by the servers' own
//!   deadlines (TLS handshake and header read, idle timeout), which frees
//!   their slots within seconds of a flood's end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use seam::{BoxIo, HostEnv, Listener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open connections one listener admits by default. An idle connection
/// waiting for its TLS handshake costs the server 10 to 16 KiB (measured:
/// 2,048 of them raised a sidecar's RSS from 12 to 44 MB and the CA's from
/// 13 to 32 MB; BENCHMARKS.md "Connection floods"), so the cap bounds a
/// flood's memory to about 32 MiB per listener, and it stays below the
/// usual descriptor limits together with a process's other listeners.
pub const CONNECTIONS_MAX: usize = 2048;

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The trace event an accept error records (once per run of errors).
pub const ACCEPT_ERROR: &str = "listener.accept_error";

/// A listener with a connection cap and an accept loop that never gives up.
pub struct Acceptor {
    listener: Box<dyn Listener>,
    slots: Arc<Semaphore>,
    env: HostEnv,
    name: &'static str,
}

/// One admitted connection; its slot is free again when this drops.
pub struct Admitted {
    /// The stream.
    pub io: BoxIo,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Hold this for as long as the connection is served.
    pub slot: OwnedSemaphorePermit,
}

impl Acceptor {
    /// Wraps `listener` (named `name` in trace events) with a cap of
    /// `connections_max` open connections.
    pub fn new(
        listener: Box<dyn Listener>,
        connections_max: usize,
        env: &HostEnv,
        name: &'static str,
    ) -> Self {
        Acceptor {
            listener,
            slots: Arc::new(Semaphore::new(connections_max.max(1))),
            env: env.clone(),
            name,
        }
    }

    /// The next connection, once a slot is free. Never fails: accept
    /// errors are recorded and retried after a backoff.
    pub async fn next(&mut self) -> Admitted {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the acceptor never closes its semaphore");
        let mut backoff = BACKOFF_MIN;
        let mut failing = false;
        loop {
            match self.listener.accept().await {
                Ok((io, peer)) => return Admitted { io, peer, slot },
                Err(error) => {
                    if !failing {
                        self.env.record(
                            ACCEPT_ERROR,
                            format!("listener={} err={error}; backing off", self.name),
                        );
                        failing = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Connections open now.
    pub fn open(&self, connections_max: usize) -> usize {
        connections_max.saturating_sub(self.slots.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io;

    /// A listener that fails with the errors of an exhausted process, then
    /// accepts.
    struct Exhausted(VecDeque<io::Result<()>>);

    impl Listener for Exhausted {
        fn accept(&mut self) -> seam::BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>> {
            let next = self.0.pop_front().unwrap_or(Ok(()));
            Box::pin(async move {
                next?;
                let (a, _b) = tokio::io::duplex(64);
                Ok((Box::new(a) as BoxIo, "127.0.0.1:1".parse().unwrap()))
            })
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok("127.0.0.1:0".parse().unwrap())
        }
    }

    fn env() -> HostEnv {
        let book = seam::real::AddressBook::default();
        let parts = seam::HostParts {
            net: Arc::new(book.net_for("t")),
            clock: Arc::new(seam::real::SystemClock::new(seam::SkewHandle::default())),
            disk: Arc::new(seam::MemDisk::default()),
            trace: seam::Trace::keeping_events(),
            slow: seam::SlowHandle::default(),
        };
        HostEnv::new("t", seam::Seed::new(1), parts)
    }

    #[tokio::test]
    async fn emfile_enfile_and_econnaborted_never_end_the_loop() {
        let errors = [
            io::Error::from_raw_os_error(24), // EMFILE
            io::Error::from_raw_os_error(23), // ENFILE
            io::Error::from(io::ErrorKind::ConnectionAborted),
        ];
        let listener = Exhausted(errors.into_iter().map(Err).collect());
        let env = env();
        let mut acceptor = Acceptor::new(Box::new(listener), 2, &env, "test");
        let first = acceptor.next().await;
        assert_eq!(first.peer.port(), 1, "accepted after three errors");
        let errors = env
            .trace
            .events()
            .into_iter()
            .filter(|e| e.kind == ACCEPT_ERROR)
            .count();
        assert_eq!(errors, 1, "one record per run of errors");
    }

    #[tokio::test]
    async fn at_the_cap_it_waits_for_a_slot() {
        let env = env();
        let mut acceptor = Acceptor::new(Box::new(Exhausted(VecDeque::new())), 2, &env, "t");
        let a = acceptor.next().await;
        let _b = acceptor.next().await;
        assert_eq!(acceptor.open(2), 2);
        let third = tokio::time::timeout(Duration::from_millis(50), acceptor.next()).await;
        assert!(third.is_err(), "no third connection while two are open");
        drop(a);
        let third = tokio::time::timeout(Duration::from_millis(50), acceptor.next()).await;
        assert!(third.is_ok(), "a slot freed admits the next");
    }
}
