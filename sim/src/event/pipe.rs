//! Connections of the event network: two bounded byte pipes, one per
//! direction, each crossing one directed link.
//!
//! TCP semantics kept (each has a test in `sim/tests/event_world.rs`):
//! - bytes arrive in order, once, each chunk at its drawn instant; the
//!   delivery instants of one pipe never decrease, so a later write never
//!   overtakes an earlier one;
//! - a cut link (partition or hold) stalls delivery: a chunk due after the
//!   cut began waits until the link is repaired, then arrives, in order (as
//!   TCP retransmission would deliver it); nothing is dropped;
//! - **backpressure**: a pipe holds at most [`PIPE_BYTES`] (sent and not
//!   yet read, in flight or arrived); a writer beyond that is pending;
//! - `shutdown` sends a FIN after the data: the peer reads EOF and can still
//!   write back (half-close);
//! - **drop** sends a FIN, unless data had arrived that this side never
//!   read: then the connection is reset, as Linux's `close()` does, and the
//!   peer's reads and writes fail with `ConnectionReset`;
//! - a reset (drop with unread data, or the crash of either host) takes
//!   effect at once and discards what is buffered, as an RST does.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha12Rng;
use seam::faultnet::LinkFaults;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::timer::Timers;

/// Bytes one direction of a connection buffers (a socket buffer).
pub const PIPE_BYTES: usize = 64 * 1024;

/// The world's latency draws: the configured range, from one seeded stream.
pub(crate) struct Latency {
    pub rng: Mutex<ChaCha12Rng>,
    pub min: Duration,
    pub max: Duration,
}

/// The state of one directed link.
#[derive(Default)]
pub(crate) struct LinkState {
    /// The fault model shared with real mode (`seam::faultnet`).
    pub faults: LinkFaults,
    /// `faults.latency`/`jitter` replace the configured range.
    pub latency_override: bool,
    /// When the current cut began.
    cut_since: Option<Instant>,
    /// Readers and connectors waiting for the cut to end.
    watchers: Vec<Waker>,
}

impl LinkState {
    /// Adds a watcher once: a task polled often during a long cut (a
    /// select with a ticking timer) must not grow the list.
    fn watch(&mut self, waker: &Waker) {
        if !self.watchers.iter().any(|w| w.will_wake(waker)) {
            self.watchers.push(waker.clone());
        }
    }
}

/// One direction between two hosts, shared by every pipe that crosses it.
pub(crate) struct Link {
    state: Mutex<LinkState>,
    latency: Arc<Latency>,
}

impl Link {
    pub fn new(latency: Arc<Latency>) -> Self {
        Link {
            state: Mutex::default(),
            latency,
        }
    }

    /// Changes the link; ending a cut wakes everyone stalled on it.
    pub fn update(&self, change: impl FnOnce(&mut LinkState)) {
        let woken = {
            let mut state = self.state.lock().expect("link poisoned");
            change(&mut state);
            if !state.faults.cut {
                state.cut_since = None;
                std::mem::take(&mut state.watchers)
            } else {
                state.cut_since.get_or_insert_with(Instant::now);
                Vec::new()
            }
        };
        woken.into_iter().for_each(Waker::wake);
    }

    /// Whether the link is open; if not, `waker` is woken when it opens.
    pub fn open_or_watch(&self, waker: &Waker) -> bool {
        let mut state = self.state.lock().expect("link poisoned");
        if state.faults.cut {
            state.watch(waker);
        }
        !state.faults.cut
    }

    /// Whether a chunk due at `at` has crossed: the link is open, or the
    /// chunk was due before the current cut began.
    fn crossed(&self, at: Instant, waker: &Waker) -> bool {
        let mut state = self.state.lock().expect("link poisoned");
        match state.cut_since {
            Some(since) if at >= since => {
                state.watch(waker);
                false
            }
            _ => true,
        }
    }

    /// One-way delay of the next chunk.
    pub fn draw_delay(&self) -> Duration {
        let state = self.state.lock().expect("link poisoned");
        let mut rng = self.latency.rng.lock().expect("latency rng poisoned");
        let base = if state.latency_override {
            Duration::ZERO
        } else {
            let spread = self.latency.max.saturating_sub(self.latency.min);
            self.latency.min + spread.mul_f64(rng.random::<f64>())
        };
        base + state.faults.draw_delay(&mut *rng)
    }
}

struct Chunk {
    at: Instant,
    data: Vec<u8>,
    fin: bool,
}

#[derive(Default)]
struct PipeState {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already read.
    offset: usize,
    /// Bytes written and not yet read.
    buffered: usize,
    last_at: Option<Instant>,
    fin_sent: bool,
    reset: bool,
    reader_gone: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// The instant a timer is set for, and whom it wakes.
    armed: Option<(Instant, Waker)>,
}

/// One direction of a connection.
pub(crate) struct Pipe {
    /// `None` within one host: no latency, never faulted.
    link: Option<Arc<Link>>,
    timers: Timers,
    state: Mutex<PipeState>,
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer")
}

impl Pipe {
    pub fn new(link: Option<Arc<Link>>, timers: Timers) -> Self {
        Pipe {
            link,
            timers,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().expect("pipe poisoned")
    }

    /// Sets a timer for `at` unless one is set for it and this reader.
    fn arm(&self, state: &mut PipeState, at: Instant, waker: &Waker) {
        let armed = state
            .armed
            .as_ref()
            .is_some_and(|(when, w)| *when == at && w.will_wake(waker));
        if !armed {
            state.armed = Some((at, waker.clone()));
            self.timers.wake_at(at, waker.clone());
        }
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        if state.reset {
            return Poll::Ready(Err(reset_error()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let now = Instant::now();
        let mut copied = 0;
        while buf.remaining() > 0 {
            let Some(front) = state.chunks.front() else {
                break;
            };
            let at = front.at;
            if at > now {
                if copied == 0 {
                    self.arm(&mut state, at, cx.waker());
                }
                break;
            }
            if let Some(link) = &self.link
                && !link.crossed(at, cx.waker())
            {
                break;
            }
            if front.fin {
                if copied == 0 {
                    return Poll::Ready(Ok(())); // EOF, and it stays EOF
                }
                break;
            }
            let offset = state.offset;
            let n = (front.data.len() - offset).min(buf.remaining());
            buf.put_slice(&front.data[offset..offset + n]);
            copied += n;
            state.offset += n;
            if state.offset == state.chunks.front().expect("front").data.len() {
                state.chunks.pop_front();
                state.offset = 0;
            }
        }
        if copied == 0 {
            state.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        state.buffered -= copied;
        let writer = state.writer.take();
        drop(state);
        writer.into_iter().for_each(Waker::wake);
        Poll::Ready(Ok(()))
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut state = self.lock();
        if state.reset {
            return Poll::Ready(Err(reset_error()));
        }
        if state.fin_sent || state.reader_gone {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let space = PIPE_BYTES - state.buffered;
        if space == 0 {
            state.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = data.len().min(space);
        state.buffered += n;
        self.push(&mut state, data[..n].to_vec(), false);
        Poll::Ready(Ok(n))
    }

    /// Queues a chunk at its drawn instant and tells a waiting reader.
    fn push(&self, state: &mut PipeState, data: Vec<u8>, fin: bool) {
        let now = Instant::now();
        let drawn = now
            + self
                .link
                .as_ref()
                .map_or(Duration::ZERO, |l| l.draw_delay());
        let at = state.last_at.map_or(drawn, |last| drawn.max(last));
        state.last_at = Some(at);
        let first = state.chunks.is_empty();
        state.chunks.push_back(Chunk { at, data, fin });
        if !first {
            return; // the reader is already waiting for an earlier chunk
        }
        // Clone, not take: a reset before this chunk arrives must still
        // find the reader to wake.
        if let Some(reader) = state.reader.clone() {
            if at <= now {
                reader.wake();
            } else {
                self.arm(state, at, &reader);
            }
        }
    }

    /// Sends a FIN after the data (idempotent).
    pub fn close_write(&self) {
        let mut state = self.lock();
        if !state.fin_sent && !state.reset {
            state.fin_sent = true;
            self.push(&mut state, Vec::new(), true);
        }
    }

    /// The reader is gone; whether data had arrived that it never read.
    fn reader_gone(&self) -> bool {
        let mut state = self.lock();
        state.reader_gone = true;
        let now = Instant::now();
        let unread = state.chunks.iter().any(|c| !c.fin && c.at <= now);
        let writer = state.writer.take();
        drop(state);
        writer.into_iter().for_each(Waker::wake);
        unread
    }

    /// An RST: both ends fail from now on, buffered bytes are discarded.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.reset = true;
        state.chunks.clear();
        state.buffered = 0;
        let armed = state.armed.take().map(|(_, w)| w);
        let wakers = [state.reader.take(), state.writer.take(), armed];
        drop(state);
        wakers.into_iter().flatten().for_each(Waker::wake);
    }
}

/// Both directions of one connection.
pub(crate) struct Conn {
    /// Connecting side → accepting side.
    pub up: Pipe,
    /// Accepting side → connecting side.
    pub down: Pipe,
}

impl Conn {
    pub fn reset(&self) {
        self.up.reset();
        self.down.reset();
    }
}

/// One end of a connection.
pub(crate) struct EventStream {
    conn: Arc<Conn>,
    connecting_side: bool,
}

impl EventStream {
    /// The two ends of `conn`: (connecting side, accepting side).
    pub fn pair(conn: Arc<Conn>) -> (EventStream, EventStream) {
        let connecting = EventStream {
            conn: conn.clone(),
            connecting_side: true,
        };
        let accepting = EventStream {
            conn,
            connecting_side: false,
        };
        (connecting, accepting)
    }

    fn tx(&self) -> &Pipe {
        if self.connecting_side {
            &self.conn.up
        } else {
            &self.conn.down
        }
    }

    fn rx(&self) -> &Pipe {
        if self.connecting_side {
            &self.conn.down
        } else {
            &self.conn.up
        }
    }
}

impl AsyncRead for EventStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.rx().poll_read(cx, buf)
    }
}

impl AsyncWrite for EventStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.tx().poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx().close_write();
        Poll::Ready(Ok(()))
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if self.rx().reader_gone() {
            self.conn.reset();
        } else {
            self.tx().close_write();
        }
    }
}
