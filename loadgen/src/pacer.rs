//! Sub-millisecond waits for the connection tasks of [`crate::connections`].
//!
//! tokio's timer wheel ticks in whole milliseconds and its driver sleeps
//! in `epoll_wait`'s whole milliseconds, so `sleep_until(due)` wakes 0–2 ms
//! late (at 500 requests/s, the median request left 1.4 ms after its
//! intended start). In an open-loop generator that lateness is counted in
//! every latency, which at low load is more than the target takes. A pacer
//! thread instead sleeps on a condition variable (a futex with a
//! high-resolution timeout) until the earliest time anyone waits for, and
//! wakes the tasks whose time has come. When the generator runs behind,
//! nothing waits and the pacer sleeps.
//!
//! Only real runs use it: inside the simulation time is tokio's, and
//! exact.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

/// One thread that wakes tasks at their due times.
pub(crate) struct Pacer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Earliest first; the sequence number keeps equal times in order.
    waiting: BinaryHeap<Reverse<Entry>>,
    registered: u64,
    shutdown: bool,
}

struct Entry {
    due: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

impl Pacer {
    /// Starts the pacer thread.
    pub(crate) fn start(name: String) -> std::io::Result<Pacer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let pacing = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || pacing.run())?;
        Ok(Pacer {
            shared,
            thread: Some(thread),
        })
    }

    /// Resolves at `due` (at once if it has passed).
    pub(crate) fn until(&self, due: Instant) -> PaceUntil<'_> {
        PaceUntil { pacer: self, due }
    }

    fn register(&self, due: Instant, waker: Waker) {
        let mut state = self.shared.lock();
        state.registered += 1;
        let seq = state.registered;
        let earliest = state
            .waiting
            .peek()
            .is_none_or(|Reverse(top)| due < top.due);
        state.waiting.push(Reverse(Entry { due, seq, waker }));
        drop(state);
        if earliest {
            self.shared.changed.notify_one();
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves a heap of wakers, which
        // is still consistent: carry on with it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn run(&self) {
        let mut due_now = Vec::new();
        let mut state = self.lock();
        loop {
            if state.shutdown {
                return;
            }
            let now = Instant::now();
            while state
                .waiting
                .peek()
                .is_some_and(|Reverse(top)| top.due <= now)
            {
                if let Some(Reverse(entry)) = state.waiting.pop() {
                    due_now.push(entry.waker);
                }
            }
            if !due_now.is_empty() {
                drop(state);
                due_now.drain(..).for_each(Waker::wake);
                state = self.lock();
                continue;
            }
            state = match state.waiting.peek().map(|Reverse(top)| top.due - now) {
                Some(wait) => {
                    self.changed
                        .wait_timeout(state, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}

/// The future of [`Pacer::until`].
pub(crate) struct PaceUntil<'a> {
    pacer: &'a Pacer,
    due: Instant,
}

impl Future for PaceUntil<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.due {
            return Poll::Ready(());
        }
        self.pacer.register(self.due, context.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn waits_end_in_due_order_and_never_early() {
        let pacer = Pacer::start("pacer-test".into()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let start = Instant::now();
        let order = Mutex::new(Vec::new());
        runtime.block_on(async {
            let waits = [30u64, 10, 20, 0].map(|ms| {
                let (pacer, order) = (&pacer, &order);
                async move {
                    let due = start + Duration::from_millis(ms);
                    pacer.until(due).await;
                    assert!(Instant::now() >= due, "woken before {ms} ms");
                    order.lock().unwrap().push(ms);
                }
            });
            let [a, b, c, d] = waits;
            tokio::join!(a, b, c, d);
        });
        assert_eq!(*order.lock().unwrap(), [0, 10, 20, 30]);
    }
}
