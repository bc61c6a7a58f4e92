//! Turning a frozen simulation into an error that names the host.
//!
//! Simulated time moves only when every task is idle, so a task that never
//! yields, or a blocking call, freezes it. Three defences:
//! - **livelock** (tasks keep waking each other at one instant, e.g. a
//!   `loop { yield_now().await }`): a host polled `LIVELOCK_POLLS` times at
//!   one instant fails the run (`host.rs`); as a second net, the time
//!   driver gives up after `LIVELOCK_ROUNDS` settle rounds and names the
//!   host polled most in a further sample (`timer::settle`);
//! - **a blocking poll** (a `std::thread::sleep`, a long computation): every
//!   host poll is timed on the wall clock, and one longer than the limit
//!   fails the run once it returns;
//! - **a poll that never returns** (`loop {}`): nothing on the simulating
//!   thread can run again, so an OS thread that sees one poll outlast four
//!   limits prints the host and aborts the process rather than hang.
//!
//! The wall clock is read only here, to judge the simulator itself; no
//! reading ever reaches simulated code.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// No host is being polled.
const NONE: usize = usize::MAX;

/// What the simulating thread is doing, readable from the watchdog thread.
pub(crate) struct Progress {
    polls: AtomicU64,
    current: AtomicUsize,
    /// Wall nanoseconds since `wall_start` at which the current poll began.
    since_ns: AtomicU64,
    wall_start: std::time::Instant,
    /// (host, polls) by host id.
    hosts: Mutex<Vec<(String, u64)>>,
    stop: AtomicBool,
}

impl Progress {
    #[allow(clippy::disallowed_methods)] // wall time of the simulator, never of sim code.
    pub fn new() -> Self {
        Progress {
            polls: AtomicU64::new(0),
            current: AtomicUsize::new(NONE),
            since_ns: AtomicU64::new(0),
            wall_start: std::time::Instant::now(),
            hosts: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        }
    }

    /// An id for a host (or the world's own tasks) to poll under.
    pub fn register(&self, name: &str) -> usize {
        let mut hosts = self.hosts.lock().expect("progress poisoned");
        hosts.push((name.to_owned(), 0));
        hosts.len() - 1
    }

    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    fn wall_ns(&self) -> u64 {
        self.wall_start.elapsed().as_nanos() as u64
    }

    /// Marks the start of one poll of `id`; the guard marks its end.
    pub fn enter(&self, id: usize) -> PollGuard<'_> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        if let Some(host) = self.hosts.lock().expect("progress poisoned").get_mut(id) {
            host.1 += 1;
        }
        self.since_ns.store(self.wall_ns(), Ordering::Relaxed);
        self.current.store(id, Ordering::Release);
        PollGuard { progress: self }
    }

    /// Per-host poll counts, to find the busiest host over a sample.
    pub fn counts(&self) -> Vec<u64> {
        let hosts = self.hosts.lock().expect("progress poisoned");
        hosts.iter().map(|(_, n)| *n).collect()
    }

    /// The host polled most since `before` (a [`Self::counts`] snapshot).
    pub fn busiest_since(&self, before: &[u64]) -> String {
        let hosts = self.hosts.lock().expect("progress poisoned");
        hosts
            .iter()
            .enumerate()
            .max_by_key(|(i, (_, n))| n - before.get(*i).copied().unwrap_or(0))
            .map(|(_, (name, _))| name.clone())
            .unwrap_or_default()
    }

    fn name(&self, id: usize) -> String {
        let hosts = self.hosts.lock().expect("progress poisoned");
        hosts.get(id).map(|(n, _)| n.clone()).unwrap_or_default()
    }

    /// Stops the watchdog thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The end of one poll.
pub(crate) struct PollGuard<'p> {
    progress: &'p Progress,
}

impl PollGuard<'_> {
    /// Ends the poll; its wall duration.
    pub fn finish(self) -> Duration {
        let began = self.progress.since_ns.load(Ordering::Relaxed);
        Duration::from_nanos(self.progress.wall_ns().saturating_sub(began))
    }
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.progress.current.store(NONE, Ordering::Release);
    }
}

/// Starts the thread that aborts on a poll that never returns.
pub(crate) fn spawn(progress: Arc<Progress>, limit: Duration) -> JoinHandle<()> {
    let abort_after = (limit * 4).as_nanos() as u64;
    progress.stop.store(false, Ordering::SeqCst); // a world can run again
    std::thread::spawn(move || {
        while !progress.stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(limit.min(Duration::from_millis(500)));
            let id = progress.current.load(Ordering::Acquire);
            let began = progress.since_ns.load(Ordering::Relaxed);
            if id != NONE && progress.wall_ns().saturating_sub(began) > abort_after {
                eprintln!(
                    "sim watchdog: host \"{}\" has not yielded for {:?} of wall time; \
                     simulated time is frozen, aborting",
                    progress.name(id),
                    limit * 4
                );
                std::process::abort();
            }
        }
    })
}
