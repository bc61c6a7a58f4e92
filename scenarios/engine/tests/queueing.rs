//! Queueing-theory oracles: they keep the simulator honest.
//!
//! A synthetic service ([`Synthetic`] behind the capacity model's
//! [`serve`]: `c` slots, a service time from `spec::Distribution`, one
//! endpoint that calls nothing) loaded open-loop by [`loadgen::run`] with
//! Poisson arrivals is an M/G/c queue, so its time in system must match the
//! textbook (`notes/anchors.md`):
//! M/M/1 has W = 1/(μ−λ) and p99 = ln(100)/(μ−λ) ≈ 4.605/(μ−λ); M/M/c waits
//! with the Erlang C probability; M/D/1 and M/G/1 (lognormal) have the
//! Pollaczek–Khinchine mean W = E[S] + λE[S²]/(2(1 − ρ)); and Little's law
//! L = λW holds on any run. Only the app's queue is measured: the client
//! talks to the server directly (no mesh) over zero-latency links. The
//! fork–join case is the exception: two such queues called concurrently
//! through the whole mesh, against a Monte-Carlo maximum of the two
//! (correlated) sojourns, after subtracting the mesh's measured overhead.
//!
//! ## What the simulator adds, and how the tests account for it
//! The world is [`EventWorld`]: delivery on a zero-latency link is instant
//! and the app's service time sleeps on the world's exact clock
//! (`seam::Clock::sleep`), so a drawn 10.3 ms lasts 10.3 ms. The oracle is
//! therefore the textbook with μ = 1/(10 ms), with no correction for a
//! timer grid ([`a_constant_service_takes_exactly_its_time`],
//! [`a_backlogged_server_serves_back_to_back`]).
//! - **Send alignment.** The load generator waits for a request's intended
//!   instant on a tokio timer, which fires on the next whole millisecond:
//!   0.5 ms on average, measured where nothing queues and subtracted
//!   ([`network_overhead_s`]). Arrivals aligned this way are not quite
//!   Poisson (two can share a millisecond); an ideal M/M/1 model of exactly
//!   this shows the extra wait it causes is under 0.02 % of W at every load
//!   tested, far below the tolerance.
//! - **Start-up.** Every queue starts empty; requests intended before a
//!   warm-up of several relaxation times (1/(μ(1−√ρ)²), 3.8 s at ρ = 0.9)
//!   are not counted.
//!
//! ## Sample sizes
//! The samples of one queue are strongly correlated at high load (a long
//! busy period pushes thousands of requests up together), so the estimates
//! converge slowly: at ρ = 0.9 the relative standard deviation of the p99
//! is about √(1500 / n), 2.4 % with 2.5 million samples and
//! 1.2 % with 10.6 million. Each case runs `queues` independent copies of
//! the queue in one world. The spreads below are those of the same
//! estimators over 200 seeds of an ideal FIFO queue with the same design
//! (queues, length, warm-up); "pass" is how many of those 200 seeds land
//! inside ±3 % on both mean and p99. CPU is this test's in the release
//! profile, about 38 µs per request on this machine.
//!
//! | case          | queues × s | samples | sd(mean) | sd(p99) | pass    | CPU   |
//! |---------------|-----------:|--------:|---------:|--------:|--------:|------:|
//! | M/M/1 ρ = 0.5 | 100 × 82   |  400 k  |  0.51 %  |  1.05 % | 198/200 |  15 s |
//! | M/M/1 ρ = 0.8 | 100 × 505  |  4.0 M  |  0.43 %  |  0.85 % | 200/200 | ~150 s|
//! | M/M/1 ρ = 0.9 | 100 × 1200 | 10.6 M  |  0.54 %  |  1.22 % | 198/200 | ~400 s|
//! | M/M/4 ρ = 0.8 |  50 × 100  |  1.6 M  |  0.49 %  |  0.94 % | 200/200 |  ~60 s|
//!
//! The 3 % bound is thus about 2.5 standard deviations or more. Smaller
//! runs do not reach it: with 2.5 M samples at ρ = 0.9 only 152 of 200
//! ideal seeds pass the p99 (sd 2.4 %), with 5.2 M 182 of 200. These four
//! cases cost far more than a minute each in the debug profile, so they are
//! `#[ignore]`d there and CI runs them in release:
//! `cargo test --release -p engine --test queueing -- --include-ignored`.
//! The seed is fixed, so the verdict is stable until someone changes how a
//! random stream is drawn; a failure then calls for a look with more
//! samples (`QUEUEING_SCALE=4`), never for a new seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use apps::rec::app::{ServiceTimeModel, serve};
use apps::synthetic::Synthetic;
use bytes::Bytes;
use loadgen::{Arrival, Completion, LoadPlan, Operation, Phase, Target};
use seam::math::{exp, ln};
use seam::{Seed, Trace};
use sim::{EventWorld, FaultSchedule, SimConfig};
use spec::ServiceSpec;

/// The run seed of every case. Fixed, and never tuned to make a case pass;
/// `QUEUEING_SEED` overrides it only for studies of the spread over seeds.
fn seed() -> u64 {
    std::env::var("QUEUEING_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Mean service time. The event world sleeps it exactly, so no correction
/// for a timer grid enters the oracle.
const SERVICE_MS: f64 = 10.0;

/// Queue `k` listens on `PORT_BASE + k`.
const PORT_BASE: u16 = 9000;

/// How often the in-flight sampler looks (Little's law).
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// `queues` independent copies of one queue, each loaded by its own
/// open-loop generator for `duration`.
#[derive(Clone, Debug)]
struct Experiment {
    /// Service slots per queue (the c of M/M/c).
    servers: u32,
    /// The service time as a scenario writes it (an inline table).
    service_time: String,
    /// Mean service time (slept exactly).
    service_ms: f64,
    /// Arrivals to each queue.
    arrival: Arrival,
    /// Independent copies.
    queues: u16,
    /// Length of the load.
    duration: Duration,
    /// Requests intended before this are not counted.
    warmup: Duration,
}

/// One answered request.
#[derive(Clone, Copy, Debug)]
struct Sample {
    queue: u16,
    intended_s: f64,
    latency_s: f64,
    /// From the moment the request was sent (before connecting) to its
    /// answer: with zero-latency links, the server's time alone.
    served_s: f64,
}

/// What a run observed.
struct Observed {
    /// Every request, in completion order.
    samples: Vec<Sample>,
    /// (sample time, requests completed by then), every [`SAMPLE_EVERY`].
    completed_at: Vec<(f64, u64)>,
}

impl Experiment {
    /// M/M/c at utilisation `rho` per server.
    fn markov(servers: u32, rho: f64, queues: u16, seconds: u64, warmup_s: u64) -> Self {
        let scale = scale();
        let rate = rho * f64::from(servers) / (SERVICE_MS / 1000.0);
        Experiment {
            servers,
            service_time: exponential(SERVICE_MS),
            service_ms: SERVICE_MS,
            arrival: Arrival::Poisson { rate },
            queues,
            duration: Duration::from_secs(warmup_s + (seconds - warmup_s) * scale),
            warmup: Duration::from_secs(warmup_s),
        }
    }

    /// One synthetic service with one endpoint, `GET /`, that calls
    /// nothing: the queue is its capacity model alone.
    fn service(&self) -> ServiceSpec {
        toml::from_str(&format!(
            "name = \"queue\"\napp = \"synthetic\"\nconcurrency = {}\n\
             service_time = {}\n[[endpoints]]\nmethod = \"GET\"\npath = \"/\"\n",
            self.servers, self.service_time
        ))
        .expect("a valid service spec")
    }

    fn plan(&self) -> LoadPlan {
        LoadPlan {
            phases: vec![Phase {
                name: "steady".into(),
                duration: self.duration,
                arrival: self.arrival.clone(),
            }],
            mix: vec![Operation {
                name: "get".into(),
                method: http::Method::GET,
                path: "/".into(),
                body: Bytes::new(),
                headers: Vec::new(),
                weight: 1,
            }],
            // Unbounded in effect: an open system queues at the server, not
            // in the generator.
            in_flight_max: 1_000_000,
            connections_max: 1_000_000,
            interval: self.duration,
            lag_tolerance: Duration::from_millis(10),
            // A queueing experiment must not cut its own tail off.
            request_timeout: Duration::from_secs(3600),
            ..LoadPlan::default()
        }
    }

    /// Runs the experiment in one simulated world.
    fn run(&self) -> Observed {
        let config = SimConfig {
            seed: Seed::new(seed()),
            // Unused by the event world, which has no tick.
            tick: Duration::from_millis(1),
            link_latency_min: Duration::ZERO,
            link_latency_max: Duration::ZERO,
            duration_limit: self.duration * 2 + Duration::from_secs(600),
            tcp_capacity: 4096,
        };
        let mut world = EventWorld::new(config, Trace::hash_only());
        let server = self.clone();
        world.host("server", move |env| {
            let experiment = server.clone();
            async move {
                let mut queues = tokio::task::JoinSet::new();
                for k in 0..experiment.queues {
                    let mut env = env.clone();
                    env.seed = env.seed.child(&format!("queue-{k}"));
                    let service = experiment.service();
                    let handler = Arc::new(Synthetic::new(env.clone(), &service));
                    let model = ServiceTimeModel::from_spec(&service);
                    seam::task::spawn_into(&mut queues, serve(env, PORT_BASE + k, handler, model));
                }
                while let Some(served) = queues.join_next().await {
                    served??;
                }
                Ok(())
            }
        });
        let samples = Arc::new(Mutex::new(Vec::new()));
        let completed_at = Arc::new(Mutex::new(Vec::new()));
        let (client, sink, sampled) = (self.clone(), samples.clone(), completed_at.clone());
        world.client("client", move |env| async move {
            let completed = Arc::new(AtomicU64::new(0));
            let mut runs = tokio::task::JoinSet::new();
            for k in 0..client.queues {
                let (sink, completed) = (sink.clone(), completed.clone());
                let observer = Arc::new(move |c: &Completion| {
                    completed.fetch_add(1, Ordering::Relaxed);
                    sink.lock().expect("samples").push(Sample {
                        queue: k,
                        intended_s: c.intended.as_secs_f64(),
                        latency_s: c.latency.as_secs_f64(),
                        served_s: c.service_time.map_or(f64::NAN, |d| d.as_secs_f64()),
                    });
                });
                let target = Target {
                    host: "server".into(),
                    port: PORT_BASE + k,
                    authority: "queue".into(),
                    tls: None,
                };
                let seed = env.seed.child(&format!("queue-{k}"));
                seam::task::spawn_into(
                    &mut runs,
                    loadgen::run(env.net.clone(), target, client.plan(), seed, observer),
                );
            }
            // Started in the same instant as the generators, so sample
            // times share their origin.
            let sampler = seam::task::spawn(sample_completions(completed, sampled));
            while let Some(report) = runs.join_next().await {
                report??;
            }
            sampler.abort();
            Ok(())
        });
        world
            .run(&FaultSchedule::default())
            .expect("the world runs");
        let samples = std::mem::take(&mut *samples.lock().expect("samples"));
        let completed_at = std::mem::take(&mut *completed_at.lock().expect("sampler"));
        Observed {
            samples,
            completed_at,
        }
    }
}

/// Records the completion count every [`SAMPLE_EVERY`] until aborted.
async fn sample_completions(completed: Arc<AtomicU64>, out: Arc<Mutex<Vec<(f64, u64)>>>) {
    let start = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    loop {
        let at = ticks.tick().await;
        let sample = (
            at.duration_since(start).as_secs_f64(),
            completed.load(Ordering::Relaxed),
        );
        out.lock().expect("sampler").push(sample);
    }
}

/// An exponential service time of mean `ms`, as a scenario writes it.
fn exponential(ms: f64) -> String {
    format!("{{ distribution = \"exponential\", mean = \"{ms}ms\" }}")
}

/// A constant service time of `ms`.
fn constant(ms: f64) -> String {
    format!("{{ distribution = \"constant\", mean = \"{ms}ms\" }}")
}

/// `QUEUEING_SCALE=k` runs every case k times longer (for a closer look).
fn scale() -> u64 {
    std::env::var("QUEUEING_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|k| *k >= 1)
        .unwrap_or(1)
}

/// Erlang C: the probability that an arrival waits in M/M/c with offered
/// load `a` = λ/μ < c.
fn erlang_c(servers: u32, a: f64) -> f64 {
    let c = f64::from(servers);
    let (mut term, mut below) = (1.0, 1.0);
    for k in 1..servers {
        term *= a / f64::from(k);
        below += term;
    }
    let waiting = term * a / c * c / (c - a);
    waiting / (below + waiting)
}

/// M/M/c time in system: (mean, P(T > t) as a function).
fn mmc_sojourn(servers: u32, lambda: f64, mu: f64) -> (f64, impl Fn(f64) -> f64) {
    let wait = erlang_c(servers, lambda / mu);
    let theta = f64::from(servers) * mu - lambda;
    let mean = wait / theta + 1.0 / mu;
    // T = S + Wq, S ~ Exp(μ); Wq = 0 with probability 1 − C, else Exp(θ).
    let tail = move |t: f64| {
        let sum_tail = if (theta - mu).abs() < 1e-9 {
            (1.0 + mu * t) * exp(-mu * t)
        } else {
            (theta * exp(-mu * t) - mu * exp(-theta * t)) / (theta - mu)
        };
        (1.0 - wait) * exp(-mu * t) + wait * sum_tail
    };
    (mean, tail)
}

/// The t with `tail(t)` = 1 − q, by bisection (tail is decreasing).
fn invert_tail(tail: impl Fn(f64) -> f64, q: f64, upper: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, upper);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if tail(mid) > 1.0 - q {
            lo = mid
        } else {
            hi = mid
        }
    }
    0.5 * (lo + hi)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Nearest-rank quantile of unsorted `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Standard error of `statistic` from 10 groups of independent queues.
fn group_se(samples: &[Sample], queues: u16, statistic: impl Fn(&[f64]) -> f64) -> f64 {
    const GROUPS: u16 = 10;
    let per_group: Vec<f64> = (0..GROUPS)
        .map(|g| {
            let values: Vec<f64> = samples
                .iter()
                .filter(|s| s.queue % GROUPS == g && s.queue < queues)
                .map(|s| s.latency_s)
                .collect();
            statistic(&values)
        })
        .collect();
    let m = mean(&per_group);
    let var = per_group.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / f64::from(GROUPS - 1);
    (var / f64::from(GROUPS)).sqrt()
}

/// The fixed cost of a request outside the server, measured once where
/// nothing can queue (constant 10 ms service, arrivals every 23.73 ms). In
/// the event world delivery is instant on zero-latency links; what is left
/// is the load generator's wait on a tokio timer, which starts a request at
/// the whole millisecond after its intended instant (0.5 ms on average).
fn network_overhead_s() -> f64 {
    static OVERHEAD: OnceLock<f64> = OnceLock::new();
    *OVERHEAD.get_or_init(|| constant_service_latency_s(SERVICE_MS) - SERVICE_MS / 1000.0)
}

/// Mean latency of a constant `service_ms` server that never queues.
fn constant_service_latency_s(service_ms: f64) -> f64 {
    let experiment = Experiment {
        servers: 1,
        service_time: constant(service_ms),
        service_ms,
        arrival: Arrival::Constant {
            rate: 1000.0 / 23.73,
        },
        queues: 50,
        duration: Duration::from_secs(2),
        warmup: Duration::ZERO,
    };
    let observed = experiment.run();
    assert!(observed.samples.len() > 4000, "{}", observed.samples.len());
    let latencies: Vec<f64> = observed.samples.iter().map(|s| s.latency_s).collect();
    mean(&latencies)
}

/// Time in system of the requests counted (after warm-up), with the fixed
/// network overhead removed.
fn sojourns(experiment: &Experiment, observed: &Observed) -> Vec<Sample> {
    let overhead = network_overhead_s();
    let warmup_s = experiment.warmup.as_secs_f64();
    observed
        .samples
        .iter()
        .filter(|s| s.intended_s >= warmup_s)
        .map(|s| Sample {
            latency_s: s.latency_s - overhead,
            ..*s
        })
        .collect()
}

/// Checks a measured value against theory; returns a report line.
fn check(name: &str, measured: f64, expected: f64, se: f64, tolerance: f64) -> String {
    let error = measured / expected - 1.0;
    let line = format!(
        "{name}: measured {measured:.4}s, theory {expected:.4}s, error {:+.2}% (se {:.2}%)",
        error * 100.0,
        se / expected * 100.0
    );
    eprintln!("{line}");
    assert!(
        error.abs() < tolerance,
        "{line}: outside ±{}%",
        tolerance * 100.0
    );
    line
}

/// The bound on every oracle: 3 % of the textbook value.
const TOLERANCE: f64 = 0.03;

/// Runs M/M/c at `rho` and checks mean and p99 time in system against the
/// textbook within [`TOLERANCE`].
fn assert_matches_theory(experiment: &Experiment) {
    let observed = experiment.run();
    let counted = sojourns(experiment, &observed);
    let times: Vec<f64> = counted.iter().map(|s| s.latency_s).collect();
    let mu = 1000.0 / experiment.service_ms;
    let lambda = experiment.arrival.rate();
    let (mean_theory, tail) = mmc_sojourn(experiment.servers, lambda, mu);
    let p99_theory = invert_tail(tail, 0.99, 1000.0 / mu);
    let label = format!(
        "M/M/{} rho={:.2} n={}",
        experiment.servers,
        lambda / (f64::from(experiment.servers) * mu),
        times.len()
    );
    let q = experiment.queues;
    check(
        &format!("{label} mean"),
        mean(&times),
        mean_theory,
        group_se(&counted, q, mean),
        TOLERANCE,
    );
    check(
        &format!("{label} p99"),
        quantile(&times, 0.99),
        p99_theory,
        group_se(&counted, q, |v| quantile(v, 0.99)),
        TOLERANCE,
    );
}

#[test]
fn oracle_formulas_agree_with_each_other() {
    // Erlang C with one server is ρ, and M/M/c with c = 1 is M/M/1.
    assert!((erlang_c(1, 0.8) - 0.8).abs() < 1e-12);
    assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
    let (lambda, mu) = (9.0, 10.0);
    let (mean, tail) = mmc_sojourn(1, lambda, mu);
    assert!((mean - 1.0 / (mu - lambda)).abs() < 1e-9);
    let p99 = invert_tail(tail, 0.99, 100.0);
    assert!((p99 - ln(100.0) / (mu - lambda)).abs() < 1e-6, "{p99}");
    assert!((ln(100.0) - 4.605).abs() < 1e-3);
}

#[test]
fn network_overhead_is_small_and_fixed() {
    // Half a millisecond of send alignment (see [`network_overhead_s`]) and
    // nothing else: a few microseconds of slack for the mean over phases.
    let overhead = network_overhead_s();
    eprintln!("network overhead: {:.4} ms", overhead * 1000.0);
    assert!(
        (0.000_45..0.000_55).contains(&overhead),
        "overhead {:.4} ms",
        overhead * 1000.0
    );
}

#[test]
fn a_constant_service_takes_exactly_its_time() {
    // 10.3 ms of constant service takes 10.3 ms of sim time, not the 11 ms
    // of tokio's millisecond timer wheel: from send to answer, every request.
    let experiment = Experiment {
        servers: 1,
        service_time: constant(10.3),
        service_ms: 10.3,
        arrival: Arrival::Constant {
            rate: 1000.0 / 23.73,
        },
        queues: 10,
        duration: Duration::from_secs(2),
        warmup: Duration::ZERO,
    };
    let observed = experiment.run();
    assert!(observed.samples.len() > 500, "{}", observed.samples.len());
    for sample in &observed.samples {
        let served_ms = sample.served_s * 1000.0;
        assert!((served_ms - 10.3).abs() < 1e-6, "served in {served_ms} ms");
    }
}

// Sizes (queues, seconds per queue, warm-up seconds) are those of the
// module doc's table; each is several relaxation times of warm-up and
// enough samples for a standard deviation well under the 3 % bound.

#[test]
#[ignore = "400 k requests, too slow for the debug profile; CI runs it in release"]
fn mm1_at_half_load_matches_theory() {
    assert_matches_theory(&Experiment::markov(1, 0.5, 100, 82, 2));
}

#[test]
#[ignore = "4 M requests, too slow for the debug profile; CI runs it in release"]
fn mm1_at_80_percent_load_matches_theory() {
    assert_matches_theory(&Experiment::markov(1, 0.8, 100, 505, 5));
}

#[test]
#[ignore = "10.6 M requests, too slow for the debug profile; CI runs it in release"]
fn mm1_at_90_percent_load_matches_theory() {
    assert_matches_theory(&Experiment::markov(1, 0.9, 100, 1200, 20));
}

#[test]
#[ignore = "1.6 M requests, too slow for the debug profile; CI runs it in release"]
fn mmc_matches_erlang_c() {
    assert_matches_theory(&Experiment::markov(4, 0.8, 50, 100, 2));
}

#[test]
fn littles_law_holds() {
    // Little's law holds on every sample path, so a short run suffices. L
    // comes from an independent sampler (arrivals so far minus completions
    // it saw), W from the latencies the load generator reported.
    let experiment = Experiment::markov(1, 0.8, 20, 20, 0);
    let observed = experiment.run();
    let mut intended: Vec<f64> = observed.samples.iter().map(|s| s.intended_s).collect();
    intended.sort_by(f64::total_cmp);
    let in_system: Vec<f64> = observed
        .completed_at
        .iter()
        .map(|&(t, done)| intended.partition_point(|i| *i <= t) as f64 - done as f64)
        .collect();
    let span_s = observed.completed_at.len() as f64 * SAMPLE_EVERY.as_secs_f64();
    let l = mean(&in_system);
    let lambda = intended.len() as f64 / span_s;
    let latencies: Vec<f64> = observed.samples.iter().map(|s| s.latency_s).collect();
    let w = mean(&latencies);
    let line = format!(
        "n = {}: L = {l:.4}, λW = {lambda:.3} × {w:.4} = {:.4}",
        latencies.len(),
        lambda * w
    );
    eprintln!("{line}");
    assert!((l / (lambda * w) - 1.0).abs() < 0.01, "{line}");
    assert!(l > 2.0, "the queue was loaded: {line}");
}

#[test]
fn a_backlogged_server_serves_back_to_back() {
    // Arrivals at three times the service rate keep one constant 10.3 ms
    // server busy: completions must be exactly 10.3 ms apart, so handing
    // the slot to the next request costs no time, on the grid or off it.
    let experiment = Experiment {
        servers: 1,
        service_time: constant(10.3),
        service_ms: 10.3,
        arrival: Arrival::Poisson { rate: 300.0 },
        queues: 1,
        duration: Duration::from_secs(6),
        warmup: Duration::ZERO,
    };
    let observed = experiment.run();
    let mut done: Vec<f64> = observed
        .samples
        .iter()
        .map(|s| s.intended_s + s.latency_s)
        .collect();
    done.sort_by(f64::total_cmp);
    // The backlog builds from the start and drains after the end; in
    // between the server never idles.
    let busy = &done[done.len() / 10..done.len() * 9 / 10];
    assert!(busy.len() > 1000, "{}", busy.len());
    for pair in busy.windows(2) {
        let gap_ms = (pair[1] - pair[0]) * 1000.0;
        assert!((gap_ms - 10.3).abs() < 0.001, "gap {gap_ms} ms");
    }
}

/// The bound the issue sets on the M/G/1 and fork–join oracles: 5 %.
const TOLERANCE_MG1: f64 = 0.05;

/// M/G/1 at `rho` with the service time `service_time` (mean
/// [`SERVICE_MS`], second moment `second_moment_s2`): the mean time in
/// system against Pollaczek–Khinchine, W = E[S] + λE[S²] / (2(1 − ρ)).
fn assert_matches_pollaczek_khinchine(service_time: String, second_moment_s2: f64, rho: f64) {
    let mut experiment = Experiment::markov(1, rho, 100, 60, 2);
    experiment.service_time = service_time;
    let observed = experiment.run();
    let counted = sojourns(&experiment, &observed);
    let times: Vec<f64> = counted.iter().map(|s| s.latency_s).collect();
    let lambda = experiment.arrival.rate();
    let service_s = SERVICE_MS / 1000.0;
    let theory = service_s + lambda * second_moment_s2 / (2.0 * (1.0 - rho));
    check(
        &format!(
            "M/G/1 {} rho={rho} n={} mean",
            experiment.service_time,
            times.len()
        ),
        mean(&times),
        theory,
        group_se(&counted, experiment.queues, mean),
        TOLERANCE_MG1,
    );
}

#[test]
#[ignore = "420 k requests, too slow for the debug profile; CI runs it in release"]
fn md1_matches_pollaczek_khinchine() {
    let service_s = SERVICE_MS / 1000.0;
    assert_matches_pollaczek_khinchine(constant(SERVICE_MS), service_s * service_s, 0.7);
}

#[test]
#[ignore = "420 k requests, too slow for the debug profile; CI runs it in release"]
fn mg1_lognormal_matches_pollaczek_khinchine() {
    // Mean 10 ms with sigma 0.5: mu = ln 10 − σ²/2 (of ln ms), and
    // E[S²] = E[S]² e^(σ²).
    let sigma: f64 = 0.5;
    let mu = seam::math::ln(SERVICE_MS) - sigma * sigma / 2.0;
    let service_s = SERVICE_MS / 1000.0;
    assert_matches_pollaczek_khinchine(
        format!("{{ distribution = \"lognormal\", mu = {mu}, sigma = {sigma} }}"),
        service_s * service_s * seam::math::exp(sigma * sigma),
        0.7,
    );
}

/// A fork–join through the whole mesh: `front` (no service time) sends two
/// concurrent calls, through its sidecar over mTLS, to `left` and `right`,
/// each one replica with one slot and exponential service of mean
/// [`SERVICE_MS`]; the answer waits for both. Zero-latency links.
fn fork_join_scenario(leaf_service_time: &str, rate: f64, seconds: u64) -> spec::Scenario {
    let leaf = |name: &str| {
        format!(
            "[[services]]\nname = \"{name}\"\napp = \"synthetic\"\nconcurrency = 1\n\
             service_time = {leaf_service_time}\n[[services.endpoints]]\npath = \"/work\"\n"
        )
    };
    let text = format!(
        "name = \"fork-join\"\n[sim]\nlink_latency_min = \"0ms\"\nlink_latency_max = \"0ms\"\n\
         [[services]]\nname = \"front\"\napp = \"synthetic\"\nconcurrency = 100000\n\
         service_time = {{ distribution = \"constant\", mean = \"0ms\" }}\n\
         [[services.endpoints]]\npath = \"/\"\n\
         script = [ {{ concurrent = [ {{ service = \"left\", path = \"/work\", timeout = \"1h\" }}, \
         {{ service = \"right\", path = \"/work\", timeout = \"1h\" }} ] }} ]\n\
         {}{}\
         [mesh]\nrequest_timeout = \"1h\"\n\
         [workload]\ntarget = \"front\"\nconnections = 4096\n\
         [[workload.phases]]\nname = \"steady\"\nduration = \"{seconds}s\"\n\
         arrival = {{ kind = \"poisson\", rate = {rate} }}\n\
         [[workload.mix]]\npath = \"/\"\nweight = 1\n",
        leaf("left"),
        leaf("right")
    );
    spec::Scenario::parse(std::path::Path::new("fork-join.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Mean latency of a fork–join run, and how many requests it counted.
fn fork_join_mean_s(scenario: &spec::Scenario) -> (f64, u64) {
    let run = engine::run_sim(scenario, Seed::new(seed()), Trace::hash_only()).expect("runs");
    let latency = &run.load.overall.latency_us;
    assert_eq!(run.load.overall.failed, 0, "no request may fail");
    (latency.mean() / 1e6, latency.len())
}

/// E[max(T₁, T₂)] of two FIFO single-server queues fed by the same Poisson
/// arrivals with independent exponential services (Lindley's recursion),
/// by Monte Carlo. The two sojourns are correlated through the shared
/// arrivals, so the independent-maximum formula would overstate it.
fn fork_join_monte_carlo_s(lambda: f64, mu: f64, arrivals: usize) -> f64 {
    let exp = |mean: f64| spec::Distribution::new(spec::Family::Exponential { mean });
    let (gap, service) = (exp(1.0 / lambda), exp(1.0 / mu));
    let mut rng = Seed::new(seed()).child("fork-join-monte-carlo").rng();
    let (mut wait_left, mut wait_right, mut total) = (0.0f64, 0.0f64, 0.0);
    let (mut last_left, mut last_right) = (0.0, 0.0);
    for _ in 0..arrivals {
        let a = gap.sample(&mut rng);
        wait_left = (wait_left + last_left - a).max(0.0);
        wait_right = (wait_right + last_right - a).max(0.0);
        last_left = service.sample(&mut rng);
        last_right = service.sample(&mut rng);
        total += (wait_left + last_left).max(wait_right + last_right);
    }
    total / arrivals as f64
}

#[test]
#[ignore = "two whole-mesh runs of 30 k requests; CI runs it in release"]
fn fork_join_matches_the_monte_carlo_maximum_of_two_sojourns() {
    let (rho, seconds) = (0.5, 600);
    let mu = 1000.0 / SERVICE_MS;
    let lambda = rho * mu;
    // What the mesh adds (sidecars, mTLS, send alignment) with no service
    // time at all; subtracted from the fork–join's mean.
    let (overhead_s, _) = fork_join_mean_s(&fork_join_scenario(
        "{ distribution = \"constant\", mean = \"0ms\" }",
        lambda,
        20,
    ));
    let (measured_s, n) = fork_join_mean_s(&fork_join_scenario(
        &exponential(SERVICE_MS),
        lambda,
        seconds,
    ));
    let theory = fork_join_monte_carlo_s(lambda, mu, 4_000_000);
    eprintln!("fork-join overhead {:.4} ms", overhead_s * 1000.0);
    check(
        &format!("fork-join of two M/M/1 rho={rho} n={n} mean"),
        measured_s - overhead_s,
        theory,
        f64::NAN,
        TOLERANCE_MG1,
    );
}
