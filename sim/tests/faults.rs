//! The fault executor on a tiny echo world: each fault has the effect it
//! names, heal undoes every one of them, and every action is in the trace.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seam::{HostEnv, Seed, Trace};
use sim::{
    ControlAction, ControlHook, ControlOutcome, Fault, FaultAction, FaultSchedule, SimConfig,
    SimError, SimWorld,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PORT: u16 = 7000;
const PROBE_EVERY: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_millis(80);

type BoxError = Box<dyn std::error::Error>;

fn config(seed: u64) -> SimConfig {
    SimConfig {
        seed: Seed::new(seed),
        tick: Duration::from_millis(1),
        link_latency_min: Duration::from_millis(1),
        link_latency_max: Duration::from_millis(3),
        duration_limit: Duration::from_secs(60),
        tcp_capacity: 256,
    }
}

/// Answers every byte with the same byte, one connection per probe.
async fn echo(env: HostEnv) -> Result<(), BoxError> {
    let mut listener = env.net.bind(PORT).await?;
    loop {
        let (mut io, _) = listener.accept().await?;
        seam::task::spawn(async move {
            let mut byte = [0u8; 1];
            if io.read_exact(&mut byte).await.is_ok() {
                let _ = io.write_all(&byte).await;
            }
        });
    }
}

/// One probe: connect, send a byte, read it back, within `timeout`.
async fn probe(env: &HostEnv, timeout: Duration) -> bool {
    let attempt = async {
        let mut io = env.net.connect("server", PORT).await.ok()?;
        io.write_all(&[7]).await.ok()?;
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await.ok()?;
        Some(byte[0] == 7)
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

/// Probe outcomes by start time (ms).
type Outcomes = Arc<Mutex<Vec<(u64, bool)>>>;

/// A world with an echo `server` and a `client` probing it for `probes`.
fn echo_world(seed: u64, trace: Trace, probes: u32) -> (SimWorld<'static>, Outcomes) {
    let mut world = SimWorld::new(config(seed), trace);
    world.host("server", echo);
    let outcomes: Outcomes = Arc::default();
    let sink = outcomes.clone();
    world.client("client", move |env| async move {
        let start = tokio::time::Instant::now();
        for i in 0..probes {
            tokio::time::sleep_until(start + PROBE_EVERY * i).await;
            let ok = probe(&env, PROBE_TIMEOUT).await;
            let at_ms = (PROBE_EVERY * i).as_millis() as u64;
            sink.lock().unwrap().push((at_ms, ok));
        }
        Ok(())
    });
    (world, outcomes)
}

fn schedule(faults: &[(u64, FaultAction)]) -> FaultSchedule {
    FaultSchedule {
        faults: faults
            .iter()
            .map(|(at_ms, action)| Fault {
                at: Duration::from_millis(*at_ms),
                action: action.clone(),
            })
            .collect(),
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

/// Successes among probes started in `[from_ms, to_ms)`, and their count.
fn successes(outcomes: &Outcomes, from_ms: u64, to_ms: u64) -> (usize, usize) {
    let outcomes = outcomes.lock().unwrap();
    let window: Vec<_> = outcomes
        .iter()
        .filter(|(at, _)| (from_ms..to_ms).contains(at))
        .collect();
    (window.iter().filter(|(_, ok)| *ok).count(), window.len())
}

#[test]
fn partition_fails_probes_until_heal_repairs_it() {
    let (mut world, outcomes) = echo_world(1, Trace::keeping_events(), 30);
    let faults = schedule(&[
        (
            1000,
            FaultAction::Partition {
                a: names(&["client"]),
                b: names(&["server"]),
            },
        ),
        (2000, FaultAction::Heal),
    ]);
    world.run(&faults).unwrap();
    assert_eq!(successes(&outcomes, 0, 1000), (10, 10));
    assert_eq!(successes(&outcomes, 1000, 2000), (0, 10));
    assert_eq!(successes(&outcomes, 2000, 3000), (10, 10));
}

#[test]
fn one_way_partition_cuts_the_reply_path_too() {
    let (mut world, outcomes) = echo_world(2, Trace::hash_only(), 20);
    let faults = schedule(&[(
        1000,
        FaultAction::PartitionOneway {
            from: names(&["server"]),
            to: names(&["client"]),
        },
    )]);
    world.run(&faults).unwrap();
    assert_eq!(successes(&outcomes, 0, 1000), (10, 10));
    assert_eq!(successes(&outcomes, 1000, 2000), (0, 10));
}

#[test]
fn crashed_server_is_restarted_by_heal() {
    let trace = Trace::keeping_events();
    let (mut world, outcomes) = echo_world(3, trace.clone(), 30);
    let faults = schedule(&[
        (
            1000,
            FaultAction::Crash {
                hosts: names(&["server"]),
            },
        ),
        (2000, FaultAction::Heal),
    ]);
    world.run(&faults).unwrap();
    assert_eq!(successes(&outcomes, 1000, 2000).0, 0);
    assert_eq!(successes(&outcomes, 2000, 3000), (10, 10));
    let heal = trace
        .events()
        .into_iter()
        .find(|e| e.detail.starts_with("heal"))
        .expect("heal is traced");
    assert!(
        heal.detail.contains("restarted=[server]"),
        "{}",
        heal.detail
    );
    assert_eq!(heal.at_us, 2_000_000);
}

#[test]
fn held_messages_arrive_when_released() {
    // Probes longer than the hold survive it; shorter ones time out.
    let mut world = SimWorld::new(config(4), Trace::hash_only());
    world.host("server", echo);
    let result: Arc<Mutex<Vec<(bool, u64)>>> = Arc::default();
    let sink = result.clone();
    world.client("client", move |env| async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = tokio::time::Instant::now();
        let ok = probe(&env, Duration::from_secs(5)).await;
        sink.lock()
            .unwrap()
            .push((ok, started.elapsed().as_millis() as u64));
        Ok(())
    });
    let faults = schedule(&[
        (
            400,
            FaultAction::Hold {
                a: names(&["client"]),
                b: names(&["server"]),
            },
        ),
        (
            1500,
            FaultAction::Release {
                a: names(&["client"]),
                b: names(&["server"]),
            },
        ),
    ]);
    world.run(&faults).unwrap();
    let (ok, took_ms) = result.lock().unwrap()[0];
    assert!(ok, "held messages are delivered, not dropped");
    assert!(
        (1000..1100).contains(&took_ms),
        "the probe waited for the release: {took_ms}ms"
    );
}

#[test]
fn latency_is_applied_and_reset_by_heal() {
    // 60 ms one way makes a probe (connect + byte + reply) miss its 80 ms.
    let (mut world, outcomes) = echo_world(5, Trace::hash_only(), 30);
    let faults = schedule(&[
        (
            1000,
            FaultAction::LinkLatency {
                a: names(&["client"]),
                b: names(&["server"]),
                latency: Duration::from_millis(60),
                jitter: Duration::ZERO,
            },
        ),
        (2000, FaultAction::Heal),
    ]);
    world.run(&faults).unwrap();
    assert_eq!(successes(&outcomes, 1000, 1900).0, 0);
    assert_eq!(successes(&outcomes, 2000, 3000), (10, 10));
}

#[test]
fn total_loss_stops_probes_and_heal_restores_the_link() {
    let (mut world, outcomes) = echo_world(6, Trace::hash_only(), 30);
    let faults = schedule(&[
        (
            1000,
            FaultAction::LinkLoss {
                a: names(&["client"]),
                b: names(&["server"]),
                loss: 1.0,
            },
        ),
        (2000, FaultAction::Heal),
    ]);
    world.run(&faults).unwrap();
    assert_eq!(successes(&outcomes, 1000, 2000).0, 0);
    assert_eq!(successes(&outcomes, 2000, 3000), (10, 10));
}

#[test]
fn skew_and_slowness_reach_the_host_and_heal_clears_them() {
    let mut world = SimWorld::new(config(7), Trace::hash_only());
    let seen: Arc<Mutex<Vec<(i128, f64)>>> = Arc::default();
    let sink = seen.clone();
    world.client("watcher", move |env| async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let wall = env.clock.wall();
            let unskewed = SimConfig::epoch() + env.clock.run_elapsed();
            let skew_ms = match wall.duration_since(unskewed) {
                Ok(ahead) => ahead.as_millis() as i128,
                Err(behind) => -(behind.duration().as_millis() as i128),
            };
            sink.lock().unwrap().push((skew_ms, env.slow.factor()));
        }
        Ok(())
    });
    let faults = schedule(&[
        (
            1500,
            FaultAction::ClockSkew {
                hosts: names(&["watcher"]),
                skew_ms: -90_000,
            },
        ),
        (
            1500,
            FaultAction::SlowHost {
                hosts: names(&["watcher"]),
                factor: 4.0,
            },
        ),
        (2500, FaultAction::Heal),
    ]);
    world.run(&faults).unwrap();
    assert_eq!(*seen.lock().unwrap(), [(0, 1.0), (-90_000, 4.0), (0, 1.0)]);
}

struct Recorder(Vec<(Duration, ControlAction)>);

impl ControlHook for Recorder {
    fn apply(&mut self, at: Duration, action: &ControlAction) -> ControlOutcome {
        self.0.push((at, action.clone()));
        ControlOutcome::Applied("ok".into())
    }
}

#[test]
fn control_actions_reach_the_hook_at_their_time_and_are_traced() {
    let trace = Trace::keeping_events();
    let (mut world, _) = echo_world(8, trace.clone(), 10);
    let revoke = ControlAction::RevokeIdentity {
        service: "server".into(),
    };
    let faults = schedule(&[
        (300, FaultAction::Control(ControlAction::RotateRoot)),
        (600, FaultAction::Control(revoke.clone())),
    ]);
    let mut hook = Recorder(Vec::new());
    world.run_with(&faults, &mut hook).unwrap();
    assert_eq!(
        hook.0,
        [
            (Duration::from_millis(300), ControlAction::RotateRoot),
            (Duration::from_millis(600), revoke)
        ]
    );
    let traced: Vec<_> = trace
        .events()
        .into_iter()
        .filter(|e| e.kind == seam::event::FAULT)
        .map(|e| (e.at_us, e.detail))
        .collect();
    assert_eq!(
        traced,
        [
            (300_000, "control rotate_root => applied: ok".to_owned()),
            (
                600_000,
                "control revoke_identity server => applied: ok".to_owned()
            )
        ]
    );
}

#[test]
fn without_a_hook_control_actions_are_traced_as_unsupported() {
    let trace = Trace::keeping_events();
    let (mut world, _) = echo_world(9, trace.clone(), 5);
    world
        .run(&schedule(&[(
            100,
            FaultAction::Control(ControlAction::RotateIssuer),
        )]))
        .unwrap();
    let event = trace
        .events()
        .into_iter()
        .find(|e| e.kind == seam::event::FAULT)
        .unwrap();
    assert!(event.detail.contains("unsupported"), "{}", event.detail);
}

#[test]
fn bad_schedules_are_refused_before_the_run() {
    let (mut world, _) = echo_world(10, Trace::hash_only(), 5);
    let unknown = schedule(&[(
        100,
        FaultAction::Crash {
            hosts: names(&["nobody"]),
        },
    )]);
    assert!(matches!(
        world.run(&unknown),
        Err(SimError::BadFault { .. })
    ));
    let (mut world, _) = echo_world(10, Trace::hash_only(), 5);
    let client = schedule(&[(
        100,
        FaultAction::Crash {
            hosts: names(&["client"]),
        },
    )]);
    let error = world.run(&client).unwrap_err().to_string();
    assert!(error.contains("client"), "{error}");
}

#[test]
fn same_seed_same_trace_even_with_jitter_and_loss() {
    let run = |seed| {
        let trace = Trace::hash_only();
        let (mut world, outcomes) = echo_world(seed, trace.clone(), 30);
        let faults = schedule(&[
            (
                500,
                FaultAction::LinkLatency {
                    a: names(&["client"]),
                    b: names(&["server"]),
                    latency: Duration::from_millis(5),
                    jitter: Duration::from_millis(40),
                },
            ),
            (
                1000,
                FaultAction::LinkLoss {
                    a: names(&["client"]),
                    b: names(&["server"]),
                    loss: 0.2,
                },
            ),
            (2000, FaultAction::Heal),
        ]);
        world.run(&faults).unwrap();
        let outcomes = outcomes.lock().unwrap().clone();
        (trace.hash_hex(), outcomes)
    };
    let first = run(11);
    let other = run(12);
    let again = run(11);
    assert_eq!(first, again);
    assert_ne!(first.1, other.1, "a different seed draws different losses");
}
