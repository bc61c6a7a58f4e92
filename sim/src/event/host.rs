//! A host in the event world: one boot = one nested `LocalSet`, with the
//! host's software as its first task, driven by one task of the world's
//! outer set.
//!
//! `seam::task::spawn` inside the software lands in the host's set (the
//! set is the current one while it is polled), so a crash, which drops the
//! set, drops every task of the host, and their sockets, in spawn order.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinError, JoinHandle, LocalSet};
use tokio::time::Instant;

use super::watchdog::Progress;
use crate::SimError;

/// What host software returns.
pub type HostResult = Result<(), Box<dyn std::error::Error>>;
/// Host or client software, boxed (the [`crate::World`] trait's currency).
pub type HostFuture = Pin<Box<dyn Future<Output = HostResult>>>;

/// One boot of a host.
pub(crate) struct Boot {
    set: LocalSet,
    software: Option<JoinHandle<HostResult>>,
}

impl Boot {
    pub fn new(software: HostFuture) -> Self {
        let set = LocalSet::new();
        let software = Some(set.spawn_local(software));
        Boot { set, software }
    }
}

/// State of one run that hosts report into.
pub(crate) struct RunShared {
    pub progress: Arc<Progress>,
    pub failure: RefCell<Option<SimError>>,
    pub clients_left: Cell<usize>,
    pub notify: Notify,
    /// Longest one poll may take on the wall clock.
    pub poll_limit: Duration,
}

impl RunShared {
    /// Fails the run (the first failure wins) and wakes the run loop.
    pub fn fail(&self, error: SimError) {
        self.failure.borrow_mut().get_or_insert(error);
        self.notify.notify_one();
    }
}

/// A booted host: the slot its task polls, and that task.
pub(crate) struct Booted {
    slot: Rc<RefCell<Option<Boot>>>,
    task: JoinHandle<()>,
}

impl Booted {
    /// Starts `software` as host `name` (a client's return counts down
    /// `clients_left`).
    pub fn start(
        name: &str,
        id: usize,
        client: bool,
        software: HostFuture,
        shared: &Rc<RunShared>,
    ) -> Self {
        let slot = Rc::new(RefCell::new(Some(Boot::new(software))));
        let task = tokio::task::spawn_local(HostTask {
            name: name.to_owned(),
            id,
            client,
            slot: slot.clone(),
            shared: shared.clone(),
            instant: None,
            polls_at_instant: 0,
        });
        Booted { slot, task }
    }

    /// Drops the host's set, and with it all its tasks, in spawn order.
    pub fn stop(self) {
        let boot = self.slot.borrow_mut().take();
        drop(boot);
        self.task.abort();
    }
}

struct HostTask {
    name: String,
    id: usize,
    client: bool,
    slot: Rc<RefCell<Option<Boot>>>,
    shared: Rc<RunShared>,
    /// The instant of the last poll, and how many polls it has seen.
    instant: Option<Instant>,
    polls_at_instant: u64,
}

/// Polls of one host at one instant beyond which it counts as livelocked:
/// its tasks keep waking each other and simulated time cannot advance.
pub(crate) const LIVELOCK_POLLS: u64 = 100_000;

impl HostTask {
    /// Counts this poll; whether the host has now livelocked.
    fn livelocked(&mut self) -> bool {
        let now = Instant::now();
        if self.instant != Some(now) {
            self.instant = Some(now);
            self.polls_at_instant = 0;
        }
        self.polls_at_instant += 1;
        self.polls_at_instant == LIVELOCK_POLLS
    }

    fn software_done(&self, outcome: Result<HostResult, JoinError>) {
        let failure = match outcome {
            Ok(Ok(())) => {
                if self.client {
                    let left = &self.shared.clients_left;
                    left.set(left.get() - 1);
                    self.shared.notify.notify_one();
                }
                return;
            }
            Ok(Err(error)) => format!("host {} failed: {error}", self.name),
            Err(join) => format!("host {} panicked: {}", self.name, panic_text(join)),
        };
        self.shared.fail(SimError::Turmoil(failure));
    }
}

fn panic_text(join: JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "(non-string panic)".to_owned()),
        Err(join) => join.to_string(),
    }
}

impl Future for HostTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.livelocked() {
            this.shared.fail(SimError::Watchdog {
                host: this.name.clone(),
                reason: format!(
                    "polled {LIVELOCK_POLLS} times at one instant: its tasks keep \
                     waking each other and simulated time cannot advance"
                ),
            });
        }
        let this = &*this;
        let mut slot = this.slot.borrow_mut();
        let Some(boot) = slot.as_mut() else {
            return Poll::Ready(());
        };
        let guard = this.shared.progress.enter(this.id);
        let idle = Pin::new(&mut boot.set).poll(cx).is_ready();
        let outcome = match boot.software.as_mut().map(|h| Pin::new(h).poll(cx)) {
            Some(Poll::Ready(outcome)) => Some(outcome),
            _ => None,
        };
        let wall = guard.finish();
        let finished = outcome.is_some() || boot.software.is_none();
        if outcome.is_some() {
            boot.software = None;
        }
        drop(slot);
        if wall > this.shared.poll_limit {
            this.shared.fail(SimError::Watchdog {
                host: this.name.clone(),
                reason: format!(
                    "one poll took {wall:?} of wall time without yielding \
                     (limit {:?}); simulated time stood still",
                    this.shared.poll_limit
                ),
            });
        }
        if let Some(outcome) = outcome {
            this.software_done(outcome);
        }
        if idle && finished {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
