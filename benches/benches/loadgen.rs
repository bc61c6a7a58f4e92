//! The load generator's scheduler: how fast each arrival process draws a
//! whole schedule (done before the first send, so it delays the start),
//! and how much a request template costs per request.
//!
//! `cargo bench -p benches --bench loadgen`

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use loadgen::template::{RequestVars, Template, idempotency_key};
use loadgen::{Arrival, LoadPlan, Operation, Phase, RampStage, RatePoint};
use seam::Seed;

/// Arrivals per schedule: 10 s at 10 000 requests/s.
const ARRIVALS: u64 = 100_000;
const RATE_PER_S: f64 = 10_000.0;

fn plan(arrival: Arrival) -> LoadPlan {
    let op = |name: &str, weight| Operation {
        name: name.into(),
        method: http::Method::GET,
        path: "/".into(),
        body: Bytes::new(),
        headers: Vec::new(),
        weight,
    };
    LoadPlan {
        phases: vec![Phase {
            name: "bench".into(),
            duration: Duration::from_secs(10),
            arrival,
        }],
        mix: vec![op("quote", 9), op("order", 1)],
        ..LoadPlan::default()
    }
}

fn arrivals() -> Vec<(&'static str, Arrival)> {
    vec![
        ("constant", Arrival::Constant { rate: RATE_PER_S }),
        ("poisson", Arrival::Poisson { rate: RATE_PER_S }),
        (
            "ramp",
            Arrival::Ramp {
                start_rate_per_s: 0.0,
                stages: vec![
                    RampStage {
                        duration_s: 5.0,
                        target_rate_per_s: RATE_PER_S * 4.0 / 3.0,
                    },
                    RampStage {
                        duration_s: 5.0,
                        target_rate_per_s: RATE_PER_S * 4.0 / 3.0,
                    },
                ],
            },
        ),
        (
            // Thinning draws at the peak (2×) and keeps half on average.
            "curve",
            Arrival::Curve {
                points: vec![
                    RatePoint {
                        at_s: 0.0,
                        rate_per_s: 0.0,
                    },
                    RatePoint {
                        at_s: 5.0,
                        rate_per_s: RATE_PER_S * 2.0,
                    },
                    RatePoint {
                        at_s: 10.0,
                        rate_per_s: 0.0,
                    },
                ],
            },
        ),
        (
            "bursts",
            Arrival::Bursts {
                base_rate_per_s: RATE_PER_S / 2.0,
                burst_rate_per_s: RATE_PER_S * 3.0,
                base_dwell_mean_s: 0.8,
                burst_dwell_mean_s: 0.2,
            },
        ),
    ]
}

fn schedule(c: &mut Criterion) {
    let mut group = c.benchmark_group("loadgen/schedule_100k");
    group.throughput(Throughput::Elements(ARRIVALS));
    for (name, arrival) in arrivals() {
        let plan = plan(arrival);
        group.bench_function(name, |b| {
            b.iter(|| black_box(plan.schedule(Seed::new(1)).unwrap().len()))
        });
    }
    group.finish();
}

fn template(c: &mut Criterion) {
    let mut group = c.benchmark_group("loadgen/template");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [
        ("literal", r#"{"buyer":"acme-energy","qty":1}"#),
        (
            "order",
            r#"{"buyer":"{{rand_choice:acme|zeta|nova}}","qty":{{rand_int:1:9}},"n":{{seq}}}"#,
        ),
    ] {
        let template = Template::parse(text.as_bytes()).unwrap();
        let mut seq = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                seq += 1;
                let key = idempotency_key(7, seq);
                let mut vars = RequestVars::new(seq, &key, 11);
                black_box(template.render(&mut vars))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, schedule, template);
criterion_main!(benches);
