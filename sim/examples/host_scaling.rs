//! Wall time per simulated second as the host count grows.
//!
//! `cargo run --release -p sim --example host_scaling -- [--tick-ms N] [--repeats N] [HOSTS…]`
//!
//! Two topologies through [`SimWorld`]: `idle` (every host listens and
//! waits) and `echo` (every host also sends one byte to its ring neighbour
//! every 100 ms over a kept-alive connection and reads the echo). Each runs
//! for `SIM_SECONDS` of simulated time; the figure is the median of
//! `--repeats` runs (default 3). Prints a Markdown table for BENCHMARKS.md.

use std::time::Duration;

use seam::{HostEnv, Seed, Trace};
use sim::{FaultSchedule, SimConfig, SimWorld};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PORT: u16 = 9000;
const SIM_SECONDS: u64 = 5;
const PING_EVERY: Duration = Duration::from_millis(100);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, PartialEq)]
enum Topology {
    Idle,
    Echo,
}

async fn serve(env: HostEnv) -> Result<(), BoxError> {
    let mut listener = env.net.bind(PORT).await?;
    loop {
        let (mut io, _) = listener.accept().await?;
        seam::task::spawn(async move {
            let mut byte = [0u8; 1];
            while io.read_exact(&mut byte).await.is_ok() {
                if io.write_all(&byte).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn ping(env: HostEnv, peer: String) -> Result<(), BoxError> {
    // Let every listener bind before the first connect.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut io = env.net.connect(&peer, PORT).await?;
    let mut byte = [0u8; 1];
    loop {
        tokio::time::sleep(PING_EVERY).await;
        io.write_all(&[1]).await?;
        tokio::time::timeout(Duration::from_secs(1), io.read_exact(&mut byte)).await??;
    }
}

fn host_name(i: usize) -> String {
    format!("h{i}")
}

/// Wall seconds for `SIM_SECONDS` simulated seconds.
fn measure(hosts: usize, topology: Topology, tick: Duration) -> f64 {
    let config = SimConfig {
        seed: Seed::new(1),
        tick,
        link_latency_min: Duration::from_millis(1),
        link_latency_max: Duration::from_millis(3),
        duration_limit: Duration::from_secs(SIM_SECONDS + 10),
        tcp_capacity: 1024,
    };
    let mut world = SimWorld::new(config, Trace::hash_only());
    for i in 0..hosts {
        let peer = host_name((i + 1) % hosts);
        world.host(&host_name(i), move |env| {
            let peer = peer.clone();
            async move {
                let env2 = env.clone();
                if topology == Topology::Echo {
                    seam::task::spawn(async move {
                        let _ = ping(env2, peer).await;
                    });
                }
                serve(env)
                    .await
                    .map_err(|e| e as Box<dyn std::error::Error>)
            }
        });
    }
    world.client("timer", |_env| async {
        tokio::time::sleep(Duration::from_secs(SIM_SECONDS)).await;
        Ok(())
    });
    #[allow(clippy::disallowed_methods)] // measures the benchmark, outside the sim.
    let started = std::time::Instant::now();
    world
        .run(&FaultSchedule::default())
        .expect("the world runs");
    started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut tick_ms = 1u64;
    let mut repeats = 3usize;
    let mut counts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--tick-ms" => tick_ms = value("--tick-ms"),
            "--repeats" => repeats = value("--repeats").max(1) as usize,
            count => counts.push(count.parse::<usize>().expect("a host count")),
        }
    }
    if counts.is_empty() {
        counts = vec![10, 50, 100, 200];
    }
    let tick = Duration::from_millis(tick_ms);
    println!("tick {tick_ms} ms, {SIM_SECONDS} simulated seconds per run, median of {repeats}");
    println!("| hosts | idle: wall ms / sim s | echo: wall ms / sim s |");
    println!("|---|---|---|");
    for hosts in counts {
        let per_sim_second = |topology| {
            let runs = (0..repeats)
                .map(|_| measure(hosts, topology, tick))
                .collect();
            median(runs) * 1000.0 / SIM_SECONDS as f64
        };
        let idle = per_sim_second(Topology::Idle);
        let echo = per_sim_second(Topology::Echo);
        println!("| {hosts} | {idle:.1} | {echo:.1} |");
    }
}
