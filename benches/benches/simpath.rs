//! Simulation throughput of the full mesh path: a two-tier edge/backend
//! app (loadgen → sidecar → mTLS/HTTP/2 → edge's sidecar → edge → sidecar
//! → backend's sidecar → backend), CA and control plane included, 5 s of
//! sim time at 200 rps. The figure that matters is sim seconds (and mesh
//! requests) per wall second. Run with `cargo bench -p benches --bench simpath`.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::run_sim;
use seam::Trace;
use spec::Scenario;

const SCENARIO: &str = r#"
name = "simpath-bench"
seed = 7

[sim]
link_latency_min = "1ms"
link_latency_max = "1ms"

[[services]]
name = "gateway"
app = "edge"
service_time = { distribution = "constant", mean = "1ms" }
concurrency = 32

[[services]]
name = "registry"
app = "backend"
replicas = 2
service_time = { distribution = "constant", mean = "1ms" }
concurrency = 16

[workload]
target = "gateway"
warmup = "1s"
connections = 16

[[workload.phases]]
name = "steady"
duration = "5s"
arrival = { kind = "constant", rate = 200 }

[[workload.mix]]
operation = "quote"
weight = 1
"#;

fn bench_simpath(c: &mut Criterion) {
    let scenario = Scenario::parse(Path::new("simpath-bench.toml"), SCENARIO).expect("parses");
    let mut group = c.benchmark_group("simpath");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    // 1,000 requests per run, each crossing two sidecar pairs.
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("edge_backend_1000_requests", |b| {
        b.iter(|| {
            let output = run_sim(&scenario, seam::Seed::new(7), Trace::hash_only()).expect("runs");
            assert_eq!(output.summary.requests.total, 1_000);
            output
        })
    });
    group.finish();
}

criterion_group!(benches, bench_simpath);
criterion_main!(benches);
