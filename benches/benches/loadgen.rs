//! The load generator's scheduler: how fast each arrival process draws a
//! whole schedule (done before the first send, so it delays the start),
//! how much a request template costs per request, and what a whole
//! request costs each dispatcher on loopback (`loadgen/dispatch_2k`: the
//! simulation's task per request against the connection workers of
//! `meshsim load`, both sending to the same minimal server).
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

/// Requests per dispatch sample.
const DISPATCH_REQUESTS: u64 = 2_000;

/// A server that answers every request head with the same 2-byte body,
/// as cheaply as it can, on its own runtime thread.
fn loopback_server() -> (std::net::SocketAddr, tokio::runtime::Runtime) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            seam::task::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, runtime)
}

fn dispatch(c: &mut Criterion) {
    let (addr, _server) = loopback_server();
    let target = loadgen::Target {
        host: addr.ip().to_string(),
        port: addr.port(),
        authority: format!("127.0.0.1:{}", addr.port()),
        tls: None,
    };
    // 2 000 requests due within 2 ms: the dispatchers run flat out.
    let mut plan = plan(Arrival::Constant { rate: 1_000_000.0 });
    plan.phases[0].duration = Duration::from_millis(2);
    plan.connections_max = 16;
    let net = || -> std::sync::Arc<dyn seam::Net> {
        std::sync::Arc::new(seam::real::RealNet::standalone())
    };
    let mut group = c.benchmark_group("loadgen/dispatch_2k");
    group.throughput(Throughput::Elements(DISPATCH_REQUESTS));
    group.sample_size(20);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    group.bench_function("task_per_request", |b| {
        b.iter(|| {
            let report = runtime
                .block_on(loadgen::run(
                    net(),
                    target.clone(),
                    plan.clone(),
                    Seed::new(1),
                    std::sync::Arc::new(|_: &_| {}),
                ))
                .unwrap();
            assert_eq!(report.overall.ok, DISPATCH_REQUESTS);
        })
    });
    group.bench_function("connection_workers", |b| {
        b.iter(|| {
            let report = loadgen::run_connections(
                net(),
                target.clone(),
                plan.clone(),
                Seed::new(1),
                1,
                None,
                Duration::ZERO,
            )
            .unwrap();
            assert_eq!(report.overall.ok, DISPATCH_REQUESTS);
        })
    });
    group.finish();
}

criterion_group!(benches, schedule, template, dispatch);
criterion_main!(benches);
