//! The dispatcher for a standalone load of a real HTTP/1.1 target
//! (`meshsim load`): one task per connection, as wrk has, on `threads`
//! current-thread runtimes, each recording into its own report.
//!
//! Why a second dispatcher: [`crate::run`] spawns a task per request and
//! hands it to hyper's pool. Inside the simulation that shape is part of
//! the contract (observers see every completion with its body, and the
//! order of its events is in the trace hashes), and it stays as it is.
//! Outside it, a task per request (set up, moved, woken across hyper's
//! channel to the connection's task) cost 2.4× wrk's CPU per request. Here
//! each connection is a task that takes the next request of its thread's
//! share of the schedule, waits for its intended start, and writes it and
//! reads the answer itself ([`crate::h1`]): no spawn, no channel, no lock
//! per request.
//!
//! The schedule is the one [`crate::run`] draws from the same seed. Thread
//! `t` of `T` takes requests `t, t + T, t + 2T…` and every `T`-th
//! connection, so the split depends only on the seed and `T`. Latency
//! still counts from the intended start: a request that waits for a free
//! connection waits inside its latency, as wrk2's do.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::Method;
use seam::{BoxIo, Net, Seed};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{Answer, ExchangeError, POOL_IDLE_TIMEOUT, Target, open};
use crate::h1::{RequestHead, encode_request};
use crate::pacer::Pacer;
use crate::plan::{CompiledOp, LoadPlan, Overflow, Protocol, Schedule, ScheduledRequest};
use crate::runner::{Outcome, Rendered, finish, prepare, record_drop};
use crate::{LoadError, LoadReport};
use h1wire::{Discard, ReadError};

/// Runs `plan` against the HTTP/1.1 `target` on `threads` threads (at most
/// one per connection) and returns what it measured. When `stop` turns
/// `true` nothing more is sent; requests still out after `drain_max` are
/// abandoned and counted in a warning.
pub fn run_connections(
    net: Arc<dyn Net>,
    target: Target,
    plan: LoadPlan,
    seed: Seed,
    threads: usize,
    stop: Option<watch::Receiver<bool>>,
    drain_max: Duration,
) -> Result<LoadReport, LoadError> {
    if plan.protocol != Protocol::Http1 {
        return Err(LoadError::InvalidPlan(
            "connection workers speak HTTP/1.1; HTTP/2 runs through loadgen::run".into(),
        ));
    }
    let (schedule, mix, mut report) = prepare(&plan, seed)?;
    let connections = plan.connections();
    let threads = threads.clamp(1, connections);
    let load = Load {
        net,
        target,
        mix,
        in_flight_max: plan.in_flight_max.div_ceil(threads),
        schedule,
        plan,
        run_key: seed.child("idempotency").value(),
        template_seed: seed.child("template").value(),
        start: Instant::now(),
        threads,
    };
    let shares = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let (load, stop) = (&load, stop.clone());
                let connections = (index..connections).step_by(threads).count();
                std::thread::Builder::new()
                    .name(format!("load-{index}"))
                    .spawn_scoped(scope, move || {
                        load.thread(index, connections, stop, drain_max)
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err("a load thread panicked".into())),
                Err(error) => Err(format!("starting a load thread: {error}")),
            })
            .collect::<Vec<_>>()
    });
    let (mut stopped_at, mut abandoned) = (None::<Duration>, 0);
    for share in shares {
        let share = share.map_err(LoadError::InvalidPlan)?;
        report.merge(share.report);
        stopped_at = match (stopped_at, share.stopped_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        abandoned += share.abandoned;
    }
    Ok(finish(
        report, &load.plan, load.start, stopped_at, abandoned,
    ))
}

/// What every thread reads and nobody writes.
struct Load {
    net: Arc<dyn Net>,
    target: Target,
    mix: Vec<CompiledOp>,
    schedule: Schedule,
    plan: LoadPlan,
    /// The in-flight bound of one thread: its share of the plan's.
    in_flight_max: usize,
    run_key: u64,
    template_seed: u64,
    start: Instant,
    threads: usize,
}

/// One thread's part of the run: its place in the schedule and its report.
/// Only that thread's tasks touch it, so `Cell`s suffice.
struct Share {
    index: usize,
    /// How many of this thread's requests were claimed.
    claimed: Cell<usize>,
    /// Requests on the wire now.
    active: Cell<usize>,
    /// How many of this thread's requests were due when last looked:
    /// intended starts never decrease, so this only moves forward.
    due: Cell<usize>,
    stopped_at: Cell<Option<Duration>>,
    report: RefCell<LoadReport>,
}

/// What a thread hands back.
struct ShareReport {
    report: LoadReport,
    stopped_at: Option<Duration>,
    abandoned: usize,
}

impl Load {
    fn thread(
        &self,
        index: usize,
        connections: usize,
        stop: Option<watch::Receiver<bool>>,
        drain_max: Duration,
    ) -> Result<ShareReport, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a load thread's runtime: {e}"))?;
        let pacer = Pacer::start(format!("load-{index}-pacer"))
            .map_err(|e| format!("starting a load thread's pacer: {e}"))?;
        let share = Share {
            index,
            claimed: Cell::new(0),
            active: Cell::new(0),
            due: Cell::new(0),
            stopped_at: Cell::new(None),
            report: RefCell::new(LoadReport::new(self.plan.interval, self.plan.duration())),
        };
        let abandoned = runtime.block_on(async {
            let mut workers: FuturesUnordered<_> = (0..connections)
                .map(|_| self.worker(&share, &pacer, stop.clone()))
                .collect();
            let all = async { while workers.next().await.is_some() {} };
            let Some(stop) = stop.clone() else {
                all.await;
                return 0;
            };
            tokio::select! {
                _ = all => 0,
                () = drain_deadline(stop, drain_max) => share.active.get(),
            }
        });
        Ok(ShareReport {
            report: share.report.into_inner(),
            stopped_at: share.stopped_at.get(),
            abandoned,
        })
    }

    /// One connection: sends this thread's next request, each at its time,
    /// until the schedule runs out or the run is stopped.
    async fn worker(&self, share: &Share, pacer: &Pacer, mut stop: Option<watch::Receiver<bool>>) {
        let mut connection = None;
        let mut wire = BytesMut::with_capacity(1024);
        while let Some(planned) = self.claim(share) {
            let due = self.start + planned.intended;
            let mut now = Instant::now();
            if now < due {
                if !paced_until(pacer, due, stop.as_mut()).await {
                    self.stopped(share);
                    return;
                }
                now = Instant::now();
            }
            if stop.as_ref().is_some_and(|stop| *stop.borrow()) {
                self.stopped(share);
                return;
            }
            let op = &self.mix[planned.op];
            let in_flight = share.active.get() + self.due_unclaimed(share, now - self.start);
            {
                let mut report = share.report.borrow_mut();
                if self.plan.overflow == Overflow::Drop && in_flight >= self.in_flight_max {
                    record_drop(&mut report, &op.name, planned, self.plan.in_flight_max);
                    continue;
                }
                report.in_flight_peak = report.in_flight_peak.max(in_flight as u64 + 1);
            }
            share.active.set(share.active.get() + 1);
            let outcome = self
                .exchange(&mut connection, &mut wire, op, planned, now)
                .await;
            share.active.set(share.active.get() - 1);
            outcome.record(
                &mut share.report.borrow_mut(),
                &op.name,
                self.plan.lag_tolerance,
            );
        }
    }

    /// Notes when the run was stopped (the earliest any worker saw it).
    fn stopped(&self, share: &Share) {
        let at = self.start.elapsed();
        share
            .stopped_at
            .set(Some(share.stopped_at.get().map_or(at, |s| s.min(at))));
    }

    /// The thread's next request, if any is left.
    fn claim(&self, share: &Share) -> Option<ScheduledRequest> {
        let claimed = share.claimed.get();
        let planned = self.schedule.get(share.index + claimed * self.threads)?;
        share.claimed.set(claimed + 1);
        Some(planned)
    }

    /// This thread's requests already due at `now` (from the start) that
    /// no connection has claimed: they wait in the generator, as tasks
    /// waiting for a connection do in [`crate::run`].
    fn due_unclaimed(&self, share: &Share, now: Duration) -> usize {
        let mut due = share.due.get().max(share.claimed.get());
        while self
            .schedule
            .get(share.index + due * self.threads)
            .is_some_and(|planned| planned.intended <= now)
        {
            due += 1;
        }
        share.due.set(due);
        due - share.claimed.get()
    }

    /// Sends `planned` on this worker's connection and reads the answer.
    async fn exchange(
        &self,
        connection: &mut Option<Connection>,
        wire: &mut BytesMut,
        op: &CompiledOp,
        planned: ScheduledRequest,
        sent: Instant,
    ) -> Outcome {
        let Rendered { key, path, body } =
            Rendered::new(op, planned.seq, self.run_key, self.template_seed);
        let head = RequestHead {
            method: &op.method,
            path: &path,
            authority: &self.target.authority,
            seq: planned.seq,
            idempotency_key: &key,
            headers: &self.plan.headers,
        };
        if let Err(error) = encode_request(wire, &head, &op.headers, &body) {
            return Outcome::of(self.start, planned, None, Err(error));
        }
        let timeout = self.plan.request_timeout;
        let result = tokio::time::timeout_at(
            sent + timeout,
            self.send(connection, wire, &op.method, sent),
        )
        .await
        .unwrap_or_else(|_| {
            // Where the answer stood is unknown: the connection is done.
            *connection = None;
            Err(ExchangeError::Timeout(timeout.as_millis() as u64))
        });
        let answer = result.map(|status| Answer {
            status,
            body: Bytes::new(),
        });
        let outcome = Outcome::of(self.start, planned, Some(sent), answer);
        if let Some(open) = connection {
            open.idle_since = outcome.done;
        }
        outcome
    }

    /// One request on the kept-alive connection (opened if there is none,
    /// or if it sat idle past [`POOL_IDLE_TIMEOUT`]). A reused connection
    /// that closes before any answer was most likely closed by the server
    /// while idle; an idempotent request is then sent once more, on a new
    /// connection (RFC 9110 §9.2.2).
    async fn send(
        &self,
        connection: &mut Option<Connection>,
        wire: &[u8],
        method: &Method,
        now: Instant,
    ) -> Result<u16, ExchangeError> {
        let mut resent = false;
        loop {
            let reused = match connection {
                Some(open)
                    if now.saturating_duration_since(open.idle_since) < POOL_IDLE_TIMEOUT =>
                {
                    true
                }
                _ => {
                    *connection = Some(self.connect().await?);
                    false
                }
            };
            let open = connection.as_mut().expect("connected above");
            match open.round_trip(wire, method, &mut Discard).await {
                Ok(response) => {
                    if !response.reusable {
                        *connection = None;
                    }
                    return Ok(response.status);
                }
                Err(error) => {
                    *connection = None;
                    if h1wire::may_resend(&error, reused, resent, method) {
                        resent = true;
                        continue;
                    }
                    return Err(match error {
                        ReadError::NoResponse(message) | ReadError::Head(message) => {
                            ExchangeError::Http(message)
                        }
                        ReadError::Body(message) => ExchangeError::Body(message),
                    });
                }
            }
        }
    }

    async fn connect(&self) -> Result<Connection, ExchangeError> {
        let io = open(self.net.as_ref(), &self.target, false).await?;
        Ok(Connection::new(io, Instant::now()))
    }
}

/// Waits for `due` on the pacer; `false` if `stop` turned `true` first.
async fn paced_until(
    pacer: &Pacer,
    due: Instant,
    stop: Option<&mut watch::Receiver<bool>>,
) -> bool {
    let Some(stop) = stop else {
        pacer.until(due).await;
        return true;
    };
    tokio::select! {
        biased;
        stopped = stop.wait_for(|stopped| *stopped) => {
            if stopped.is_err() {
                // Nothing can stop the run any more: just wait.
                pacer.until(due).await;
            }
            stopped.is_err()
        }
        () = pacer.until(due) => true,
    }
}

/// Resolves `drain_max` after `stop` turned `true` (never if it cannot).
async fn drain_deadline(mut stop: watch::Receiver<bool>, drain_max: Duration) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(drain_max).await;
}

/// A kept-alive connection and its read buffer.
type Connection = h1wire::Connection<BoxIo>;
