//! Exact time: timers that fire at their instant to the nanosecond, on a
//! paused tokio clock whose own timer wheel has a 1 ms grid.
//!
//! # Why not `tokio::time::sleep`
//! tokio (1.54, `runtime/time/source.rs`) turns a deadline into a tick with
//! `deadline_to_tick` = whole milliseconds since the runtime's start
//! instant, rounded *up*. A 10.3 ms sleep therefore wakes at 11 ms, and the
//! mean of many drawn service times is biased by about +0.5 ms. On a paused
//! clock, `park_internal` auto-advances by whole ticks from the *current*
//! instant (`tick_to_duration(when - now)`), so once the clock sits off the
//! grid (say at 10.3 ms) every later auto-advance keeps that offset.
//!
//! # The design
//! The world owns a queue of timed events ([`Timers`], a heap of
//! (instant, sequence) → waker). One driver task ([`drive`]) moves time:
//! 1. **Settle.** It yields until a whole round passes in which no world
//!    task was polled. `yield_now` hands the driver's waker to the
//!    scheduler, which wakes it only after it ran out of ready tasks *and*
//!    polled the timer driver; counting polls (see `Progress`) turns that
//!    into a proof that everything ready at this instant has run.
//! 2. **Due events** (instant ≤ now) are woken; back to 1.
//! 3. **Off the grid** (now is not a whole millisecond since the start),
//!    the driver advances by hand to the earlier of the next event and the
//!    next grid point. Safe: a tokio timer fires only when the clock
//!    reaches its whole-ms tick, and no grid point lies before the target.
//! 4. **On the grid**, an event less than 1 ms away is reached with
//!    `tokio::time::advance` (no tick lies in between). A later one is
//!    reached by sleeping on tokio until the grid point at or before it
//!    (`grid_floor`), so tokio's own timers in between fire at their ticks
//!    and auto-advance, which happens only when every task is idle, jumps
//!    over idle stretches for free. A newly registered event wakes the
//!    driver so that it can re-plan.
//!
//! Between two instants the driver only ever moves the clock while the
//! world is idle, so no task observes a jump under its feet.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use seam::{BoxFuture, Clock, SkewHandle};
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::watchdog::Progress;

const GRID: Duration = Duration::from_millis(1);

/// One timed wake-up. Ordered by (instant, sequence): equal instants wake
/// in registration order, which the seed fixes.
struct Entry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
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
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// The driver, while it waits for a new event to re-plan.
    driver: Option<Waker>,
    /// Bumped on every registration, so the driver can tell it missed one.
    generation: u64,
}

/// The world's exact timers. `Send + Sync` because the seam's futures are.
#[derive(Clone)]
pub(crate) struct Timers {
    state: Arc<Mutex<State>>,
    /// The paused clock's start instant: tokio's tick 0.
    start: Instant,
}

impl Timers {
    pub fn new(start: Instant) -> Self {
        Timers {
            state: Arc::default(),
            start,
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Wakes `waker` when the clock reaches `at`.
    pub fn wake_at(&self, at: Instant, waker: Waker) {
        let driver = {
            let mut state = self.state.lock().expect("timers poisoned");
            state.seq += 1;
            let seq = state.seq;
            state.heap.push(Reverse(Entry { at, seq, waker }));
            state.generation += 1;
            state.driver.take()
        };
        if let Some(driver) = driver {
            driver.wake();
        }
    }

    /// A future ready at exactly `at`.
    pub fn sleep_until(&self, at: Instant) -> ExactSleep {
        ExactSleep {
            timers: self.clone(),
            at,
            registered: None,
        }
    }

    fn next(&self) -> Option<Instant> {
        let state = self.state.lock().expect("timers poisoned");
        state.heap.peek().map(|Reverse(entry)| entry.at)
    }

    /// Wakes every event due at `now`; how many there were.
    fn wake_due(&self, now: Instant) -> usize {
        let mut due = Vec::new();
        {
            let mut state = self.state.lock().expect("timers poisoned");
            while state.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                due.push(state.heap.pop().expect("peeked").0.waker);
            }
        }
        let count = due.len();
        due.into_iter().for_each(Waker::wake);
        count
    }

    fn generation(&self) -> u64 {
        self.state.lock().expect("timers poisoned").generation
    }

    /// The last grid point at or before `at`.
    fn grid_floor(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.start);
        self.start + Duration::from_millis(since.as_millis() as u64)
    }

    /// How far `now` is past the last grid point.
    fn off_grid(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start) - (self.grid_floor(now) - self.start)
    }
}

/// A sleep that ends at its instant exactly.
pub(crate) struct ExactSleep {
    timers: Timers,
    at: Instant,
    registered: Option<Waker>,
}

impl Future for ExactSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let fresh = self
            .registered
            .as_ref()
            .is_none_or(|w| !w.will_wake(cx.waker()));
        if fresh {
            self.registered = Some(cx.waker().clone());
            self.timers.wake_at(self.at, cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Ready once an event was registered after `seen`.
struct NewEvent<'t> {
    timers: &'t Timers,
    seen: u64,
}

impl Future for NewEvent<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.timers.state.lock().expect("timers poisoned");
        if state.generation != self.seen {
            return Poll::Ready(());
        }
        state.driver = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// How many settle rounds one instant may take before the world counts as
/// livelocked (tasks that keep waking each other and never let time move).
pub(crate) const LIVELOCK_ROUNDS: u64 = 200_000;

/// Moves time from event to event (see the module doc). Returns only when
/// the world livelocks, with the busiest host's name.
pub(crate) async fn drive(timers: Timers, progress: Arc<Progress>) -> String {
    loop {
        if let Err(host) = settle(&progress).await {
            return host;
        }
        let now = Instant::now();
        if timers.wake_due(now) > 0 {
            continue;
        }
        let seen = timers.generation();
        let next = timers.next();
        let off = timers.off_grid(now);
        if !off.is_zero() {
            let grid = now + (GRID - off);
            let target = next.map_or(grid, |at| at.min(grid));
            tokio::time::advance(target - now).await;
            continue;
        }
        match next {
            Some(at) if at < now + GRID => tokio::time::advance(at - now).await,
            Some(at) => {
                let floor = tokio::time::sleep_until(timers.grid_floor(at));
                tokio::select! {
                    biased;
                    () = floor => {}
                    () = NewEvent { timers: &timers, seen } => {}
                }
            }
            None => {
                NewEvent {
                    timers: &timers,
                    seen,
                }
                .await
            }
        }
    }
}

/// Yields until a round passes with no world task polled.
async fn settle(progress: &Progress) -> Result<(), String> {
    let at = Instant::now();
    for _ in 0..LIVELOCK_ROUNDS {
        let before = progress.polls();
        tokio::task::yield_now().await;
        if progress.polls() == before {
            return Ok(());
        }
    }
    // Still at one instant: someone never lets time move. Sample who.
    debug_assert_eq!(at, Instant::now());
    let before = progress.counts();
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    Err(progress.busiest_since(&before))
}

/// A host's clock in the event world: the fixed epoch plus world time,
/// plus skew; sleeps are exact.
pub(crate) struct EventClock {
    epoch: SystemTime,
    skew: SkewHandle,
    timers: Timers,
    /// Entered when read from outside the runtime (tests, the engine),
    /// so `Instant::now()` is the paused clock and not the OS's.
    handle: Handle,
}

impl EventClock {
    pub fn new(epoch: SystemTime, skew: SkewHandle, timers: Timers, handle: Handle) -> Self {
        EventClock {
            epoch,
            skew,
            timers,
            handle,
        }
    }
}

impl Clock for EventClock {
    fn wall(&self) -> SystemTime {
        self.skew.apply(self.epoch + self.run_elapsed())
    }

    /// tokio's (paused) `Instant::now()` minus the world's start.
    fn run_elapsed(&self) -> Duration {
        let _inside = Handle::try_current().is_err().then(|| self.handle.enter());
        Instant::now().saturating_duration_since(self.timers.start())
    }

    fn simulated(&self) -> bool {
        true
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(self.timers.sleep_until(Instant::now() + duration))
    }
}
