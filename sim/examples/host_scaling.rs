//! CPU time per simulated second as the host count grows, on either
//! simulated network.
//!
//! `cargo run --release -p sim --example host_scaling -- [--network event|turmoil] [--tick-ms N] [--sim-seconds N] [--repeats N] [HOSTS…]`
//!
//! Two topologies through [`sim::World`]: `idle` (every host listens and
//! waits) and `echo` (every host also sends one byte to its ring neighbour
//! every 100 ms over a kept-alive connection and reads the echo). Each runs
//! for `--sim-seconds` of simulated time (default 5); the figure is the
//! median of `--repeats` runs (default 3) of the simulating thread's CPU
//! time (utime + stime of `/proc/thread-self/stat`, in clock ticks of
//! 10 ms, so use enough simulated seconds that a run costs a few ticks;
//! the world runs on this thread, the event world's watchdog thread only
//! sleeps). Wall time is printed too. Prints a Markdown table.
//! `--tick-ms` is turmoil's tick; the event world has no tick.

use std::time::Duration;

use seam::{HostEnv, Seed, Trace};
use sim::{EventWorld, FaultSchedule, SimConfig, SimWorld, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PORT: u16 = 9000;
const PING_EVERY: Duration = Duration::from_millis(100);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, PartialEq)]
enum Topology {
    Idle,
    Echo,
}

#[derive(Clone, Copy, PartialEq)]
enum Network {
    Event,
    Turmoil,
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

/// CPU seconds this thread has used (Linux `/proc`, 10 ms resolution).
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let after_name = &stat[stat.rfind(')').expect("stat has a name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0 // USER_HZ
}

struct Run {
    hosts: usize,
    topology: Topology,
    network: Network,
    tick: Duration,
    sim_seconds: u64,
}

fn populate(world: &mut dyn World<'static>, run: &Run) {
    for i in 0..run.hosts {
        let peer = host_name((i + 1) % run.hosts);
        let topology = run.topology;
        world.add_host(
            &host_name(i),
            Box::new(move |env| {
                let peer = peer.clone();
                Box::pin(async move {
                    let env2 = env.clone();
                    if topology == Topology::Echo {
                        seam::task::spawn(async move {
                            let _ = ping(env2, peer).await;
                        });
                    }
                    serve(env)
                        .await
                        .map_err(|e| e as Box<dyn std::error::Error>)
                })
            }),
        );
    }
    let seconds = run.sim_seconds;
    world.add_client(
        "timer",
        Box::new(move |_env| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                Ok(())
            })
        }),
    );
}

/// (CPU seconds, wall seconds) for the run.
fn measure(run: &Run) -> (f64, f64) {
    let config = SimConfig {
        seed: Seed::new(1),
        tick: run.tick,
        link_latency_min: Duration::from_millis(1),
        link_latency_max: Duration::from_millis(3),
        duration_limit: Duration::from_secs(run.sim_seconds + 10),
        tcp_capacity: 1024,
    };
    let mut world: Box<dyn World<'static>> = match run.network {
        Network::Event => Box::new(EventWorld::new(config, Trace::hash_only())),
        Network::Turmoil => Box::new(SimWorld::new(config, Trace::hash_only())),
    };
    populate(world.as_mut(), run);
    #[allow(clippy::disallowed_methods)] // measures the benchmark, outside the sim.
    let started = std::time::Instant::now();
    let cpu_before = thread_cpu_seconds();
    world
        .run(&FaultSchedule::default())
        .expect("the world runs");
    (
        thread_cpu_seconds() - cpu_before,
        started.elapsed().as_secs_f64(),
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let (mut tick_ms, mut repeats, mut sim_seconds) = (1u64, 3usize, 5u64);
    let mut network = Network::Turmoil;
    let mut counts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> String {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        let number = |name: &str, v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--tick-ms" => tick_ms = number("--tick-ms", value("--tick-ms")),
            "--repeats" => repeats = number("--repeats", value("--repeats")).max(1) as usize,
            "--sim-seconds" => sim_seconds = number("--sim-seconds", value("--sim-seconds")),
            "--network" => {
                network = match value("--network").as_str() {
                    "event" => Network::Event,
                    "turmoil" => Network::Turmoil,
                    other => panic!("--network is event or turmoil, not {other}"),
                }
            }
            count => counts.push(count.parse::<usize>().expect("a host count")),
        }
    }
    if counts.is_empty() {
        counts = vec![10, 50, 100, 200];
    }
    let name = match network {
        Network::Event => "event world".to_owned(),
        Network::Turmoil => format!("turmoil, tick {tick_ms} ms"),
    };
    println!("{name}, {sim_seconds} simulated seconds per run, median of {repeats}");
    println!("| hosts | idle: CPU ms / sim s | (wall) | echo: CPU ms / sim s | (wall) |");
    println!("|---|---|---|---|---|");
    for hosts in counts {
        let per_sim_second = |topology| {
            let run = Run {
                hosts,
                topology,
                network,
                tick: Duration::from_millis(tick_ms),
                sim_seconds,
            };
            let runs: Vec<_> = (0..repeats).map(|_| measure(&run)).collect();
            let cpu = median(runs.iter().map(|r| r.0).collect());
            let wall = median(runs.iter().map(|r| r.1).collect());
            let per = |s: f64| s * 1000.0 / sim_seconds as f64;
            (per(cpu), per(wall))
        };
        let (idle, idle_wall) = per_sim_second(Topology::Idle);
        let (echo, echo_wall) = per_sim_second(Topology::Echo);
        println!("| {hosts} | {idle:.2} | {idle_wall:.2} | {echo:.2} | {echo_wall:.2} |");
    }
}
