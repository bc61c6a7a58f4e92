//! The event world: exact time, the TCP semantics the mesh relies on, the
//! fault executor, determinism and the watchdog.

use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use seam::{HostEnv, Seed, Trace};
use sim::{EventWorld, Fault, FaultAction, FaultSchedule, PIPE_BYTES, SimConfig, SimError, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout};

const PORT: u16 = 7000;

type BoxError = Box<dyn std::error::Error>;

fn config(seed: u64, min_ms: u64, max_ms: u64) -> SimConfig {
    SimConfig {
        seed: Seed::new(seed),
        tick: Duration::from_millis(1),
        link_latency_min: Duration::from_millis(min_ms),
        link_latency_max: Duration::from_millis(max_ms),
        duration_limit: Duration::from_secs(60),
        tcp_capacity: 64,
    }
}

fn world(seed: u64) -> EventWorld<'static> {
    EventWorld::new(config(seed, 1, 3), Trace::keeping_events())
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

fn at(ms: f64, action: FaultAction) -> Fault {
    Fault {
        at: Duration::from_secs_f64(ms / 1000.0),
        action,
    }
}

fn partition() -> FaultAction {
    FaultAction::Partition {
        a: names(&["client"]),
        b: names(&["server"]),
    }
}

/// Echoes every connection until EOF.
async fn echo(env: HostEnv) -> Result<(), BoxError> {
    let mut listener = env.net.bind(PORT).await?;
    loop {
        let (mut io, _) = listener.accept().await?;
        seam::task::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Runs `body` as the only client, with an echo `server` host.
fn with_echo<F, Fut>(mut world: EventWorld<'static>, faults: &[Fault], body: F)
where
    F: FnOnce(HostEnv) -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>> + 'static,
{
    world.host("server", echo);
    world.client("client", body);
    let faults = FaultSchedule {
        faults: faults.to_vec(),
    };
    world.run(&faults).unwrap();
}

fn since(start: Instant) -> Duration {
    Instant::now() - start
}

#[test]
fn an_exact_sleep_takes_exactly_its_time() {
    let mut world = world(1);
    // A host with ordinary tokio timers, so the grid is in use meanwhile.
    world.host("ticker", |_env| async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    world.client("client", |env| async move {
        let start = Instant::now();
        env.clock.sleep(Duration::from_micros(10_300)).await;
        assert_eq!(since(start), Duration::from_micros(10_300));
        assert_eq!(env.clock.run_elapsed(), Duration::from_micros(10_300));
        env.clock.sleep(Duration::from_nanos(1)).await;
        assert_eq!(since(start), Duration::from_nanos(10_300_001));
        Ok(())
    });
    world.run(&FaultSchedule::default()).unwrap();
}

#[test]
fn exponential_sleeps_average_to_their_mean_without_rounding_bias() {
    let mut world = world(2);
    let observed = Arc::new(Mutex::new((Duration::ZERO, Duration::ZERO)));
    let sink = observed.clone();
    world.client("client", move |env| async move {
        let mut rng = env.seed.child("draws").rng();
        let (mut drawn, start) = (Duration::ZERO, Instant::now());
        for _ in 0..1000 {
            let u: f64 = rng.random();
            let d = Duration::from_secs_f64(-seam::math::ln(1.0 - u) * 0.002);
            drawn += d;
            env.clock.sleep(d).await;
        }
        *sink.lock().unwrap() = (drawn, since(start));
        Ok(())
    });
    world.run(&FaultSchedule::default()).unwrap();
    let (drawn, slept) = *observed.lock().unwrap();
    assert_eq!(slept, drawn, "every sleep ends at its instant");
    let mean_ms = slept.as_secs_f64(); // 1000 sleeps: seconds = ms per sleep
    assert!(
        (1.8..2.2).contains(&mean_ms),
        "mean {mean_ms} ms, wanted ~2 ms"
    );
}

#[test]
fn faults_apply_at_their_exact_instant_and_are_traced() {
    let trace = Trace::keeping_events();
    let mut world = EventWorld::new(config(3, 1, 3), trace.clone());
    world.host("server", echo);
    world.client("client", |env| async move {
        env.clock.sleep(Duration::from_millis(5)).await;
        Ok(())
    });
    let faults = FaultSchedule {
        faults: vec![at(1.2345, partition()), at(2.5, FaultAction::Heal)],
    };
    world.run(&faults).unwrap();
    let events: Vec<_> = trace
        .events()
        .into_iter()
        .filter(|e| e.kind == "fault")
        .map(|e| (e.at_us, e.detail))
        .collect();
    assert_eq!(
        events,
        [
            (1234, "partition [client] <-> [server]".to_owned()),
            (
                2500,
                "heal: links=1 latency=0 loss=0 restarted=[] unskewed=[] unslowed=[]".to_owned()
            ),
        ]
    );
}

#[test]
fn connecting_to_a_port_nobody_listens_on_is_refused_at_once() {
    with_echo(world(4), &[], |env| async move {
        let start = Instant::now();
        let local = env.net.connect(seam::LOCALHOST, 9).await.err().unwrap();
        assert_eq!(local.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(since(start), Duration::ZERO);
        let remote = env.net.connect("server", 9).await.err().unwrap();
        assert_eq!(remote.kind(), ErrorKind::ConnectionRefused);
        assert!(since(start) <= Duration::from_millis(6), "one round trip");
        Ok(())
    });
}

#[test]
fn a_connect_into_a_partition_waits_and_completes_when_it_heals() {
    let faults = [at(0.0, partition()), at(500.0, FaultAction::Heal)];
    with_echo(world(5), &faults, |env| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let stalled = timeout(Duration::from_millis(100), env.net.connect("server", PORT)).await;
        assert!(stalled.is_err(), "never answered inside the partition");
        let mut io = env.net.connect("server", PORT).await?;
        assert!(since_start(&env) >= Duration::from_millis(500));
        io.write_all(b"hi").await?;
        let mut buf = [0u8; 2];
        io.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"hi");
        Ok(())
    });
}

fn since_start(env: &HostEnv) -> Duration {
    env.clock.run_elapsed()
}

#[test]
fn writes_into_a_partition_stall_and_arrive_in_order_after_heal() {
    let faults = [at(100.0, partition()), at(900.0, FaultAction::Heal)];
    with_echo(world(6), &faults, |env| async move {
        let mut io = env.net.connect("server", PORT).await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        for i in 0..100u8 {
            io.write_all(&[i]).await?; // buffered: the write itself returns
        }
        let mut buf = vec![0u8; 100];
        let stalled = timeout(Duration::from_millis(300), io.read_exact(&mut buf[..1])).await;
        assert!(stalled.is_err(), "no answer through the partition");
        io.read_exact(&mut buf).await?;
        assert!(since_start(&env) >= Duration::from_millis(900));
        assert_eq!(buf, (0..100u8).collect::<Vec<_>>(), "in order, once");
        Ok(())
    });
}

#[test]
fn jittered_bytes_arrive_in_order_exactly_once() {
    let world = EventWorld::new(config(7, 1, 20), Trace::hash_only());
    with_echo(world, &[], |env| async move {
        let io = env.net.connect("server", PORT).await?;
        let (mut rx, mut tx) = tokio::io::split(io);
        let writer = async move {
            for i in 0..2000u32 {
                tx.write_all(&i.to_le_bytes()).await.unwrap();
                if i % 7 == 0 {
                    env.clock.sleep(Duration::from_micros(300)).await;
                }
            }
            tx.shutdown().await.unwrap();
        };
        let reader = async move {
            let mut all = Vec::new();
            rx.read_to_end(&mut all).await.unwrap();
            all
        };
        let ((), all) = tokio::join!(writer, reader);
        let expected: Vec<u8> = (0..2000u32).flat_map(u32::to_le_bytes).collect();
        assert_eq!(all, expected);
        Ok(())
    });
}

#[test]
fn half_close_gives_eof_and_the_peer_can_still_answer() {
    let mut world = world(8);
    world.host("server", |env| async move {
        let mut listener = env.net.bind(PORT).await?;
        let (mut io, _) = listener.accept().await?;
        let mut got = Vec::new();
        io.read_to_end(&mut got).await?;
        io.write_all(&got).await?;
        io.write_all(b"!").await?;
        Ok(())
    });
    world.client("client", |env| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut io = env.net.connect("server", PORT).await?;
        io.write_all(b"abc").await?;
        io.shutdown().await?;
        let mut back = Vec::new();
        io.read_to_end(&mut back).await?;
        assert_eq!(back, b"abc!");
        Ok(())
    });
    world.run(&FaultSchedule::default()).unwrap();
}

#[test]
fn a_writer_is_pending_once_the_peer_stops_reading() {
    let mut world = world(9);
    world.host("server", |env| async move {
        let mut listener = env.net.bind(PORT).await?;
        let (_io, _) = listener.accept().await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    world.client("client", |env| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut io = env.net.connect("server", PORT).await?;
        let chunk = vec![0u8; 1000];
        let mut written = 0;
        while let Ok(Ok(n)) = timeout(Duration::from_millis(50), io.write(&chunk)).await {
            written += n;
        }
        assert_eq!(written, PIPE_BYTES);
        Ok(())
    });
    world.run(&FaultSchedule::default()).unwrap();
}

#[test]
fn dropping_a_stream_gives_eof_or_reset_if_it_left_data_unread() {
    let mut world = world(10);
    world.host("server", |env| async move {
        let mut listener = env.net.bind(PORT).await?;
        let (first, _) = listener.accept().await?;
        drop(first); // nothing unread: FIN
        let (mut second, _) = listener.accept().await?;
        let mut byte = [0u8; 1];
        second.read_exact(&mut byte).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(second); // the second byte arrived and was never read: RST
        std::future::pending::<()>().await;
        Ok(())
    });
    world.client("client", |env| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut first = env.net.connect("server", PORT).await?;
        let mut buf = [0u8; 8];
        assert_eq!(first.read(&mut buf).await?, 0, "EOF");
        let mut second = env.net.connect("server", PORT).await?;
        second.write_all(b"ab").await?;
        let error = second.read(&mut buf).await.expect_err("reset");
        assert_eq!(error.kind(), ErrorKind::ConnectionReset);
        Ok(())
    });
    world.run(&FaultSchedule::default()).unwrap();
}

#[test]
fn a_crash_resets_peers_removes_listeners_and_restart_brings_them_back() {
    let crash = FaultAction::Crash {
        hosts: names(&["server"]),
    };
    let restart = FaultAction::Restart {
        hosts: names(&["server"]),
    };
    let faults = [at(100.0, crash), at(300.0, restart)];
    with_echo(world(11), &faults, |env| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut io = env.net.connect("server", PORT).await?;
        let mut buf = [0u8; 4];
        let error = io.read(&mut buf).await.expect_err("reset by the crash");
        assert_eq!(error.kind(), ErrorKind::ConnectionReset);
        assert_eq!(since_start(&env), Duration::from_millis(100));
        let refused = env.net.connect("server", PORT).await.err().unwrap();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut io = env.net.connect("server", PORT).await?;
        io.write_all(b"back").await?;
        io.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"back");
        Ok(())
    });
}

#[test]
fn a_bad_schedule_is_refused_before_anything_runs() {
    let mut world = world(12);
    world.client("client", |_env| async { Ok(()) });
    let faults = FaultSchedule {
        faults: vec![at(
            1.0,
            FaultAction::Crash {
                hosts: names(&["client"]),
            },
        )],
    };
    assert!(matches!(world.run(&faults), Err(SimError::BadFault { .. })));
}

/// A small mesh of echo hosts with probing clients, recording into the
/// trace; returns its hash.
fn traced_run(seed: u64, faults: &FaultSchedule) -> String {
    let trace = Trace::hash_only();
    let mut world = EventWorld::new(config(seed, 1, 5), trace.clone());
    let world_ref: &mut dyn World<'static> = &mut world;
    for server in ["s0", "s1"] {
        world_ref.add_host(server, Box::new(|env| Box::pin(echo(env))));
    }
    world_ref.add_client(
        "client",
        Box::new(|env| {
            Box::pin(async move {
                let mut rng = env.seed.child("probe").rng();
                for i in 0..60u32 {
                    let server = if rng.random::<bool>() { "s0" } else { "s1" };
                    let probe = async {
                        let mut io = env.net.connect(server, PORT).await.ok()?;
                        io.write_all(&i.to_le_bytes()).await.ok()?;
                        let mut buf = [0u8; 4];
                        io.read_exact(&mut buf).await.ok()
                    };
                    let ok = timeout(Duration::from_millis(50), probe).await.is_ok();
                    env.record("probe", format!("{i} {server} {ok}"));
                    env.clock
                        .sleep(Duration::from_micros(rng.random_range(1..20_000)))
                        .await;
                }
                Ok(())
            })
        }),
    );
    world.run(faults).unwrap();
    trace.hash_hex()
}

#[test]
fn one_seed_replays_exactly_across_runs_in_one_process() {
    let faults = FaultSchedule {
        faults: vec![
            at(
                150.0,
                FaultAction::Crash {
                    hosts: names(&["s0"]),
                },
            ),
            at(
                200.0,
                FaultAction::LinkLatency {
                    a: names(&["client"]),
                    b: names(&["s1"]),
                    latency: Duration::from_millis(3),
                    jitter: Duration::from_millis(4),
                },
            ),
            at(
                250.0,
                FaultAction::LinkLoss {
                    a: names(&["client"]),
                    b: names(&["s1"]),
                    loss: 0.3,
                },
            ),
            at(
                300.0,
                FaultAction::Restart {
                    hosts: names(&["s0"]),
                },
            ),
            at(
                320.0,
                FaultAction::Crash {
                    hosts: names(&["s1"]),
                },
            ),
            at(400.0, FaultAction::Heal), // restarts s1
        ],
    };
    let first = traced_run(21, &faults);
    let other = traced_run(22, &faults);
    let again = traced_run(21, &faults);
    // Printed so that two processes can be compared (`--nocapture`).
    eprintln!("event world trace hash, seed 21: {first}");
    assert_eq!(first, again);
    assert_ne!(first, other);
}

#[test]
fn a_blocking_host_fails_the_run_by_name() {
    let mut world = world(30);
    world.set_watchdog(Duration::from_millis(100));
    world.host("blocker", |_env| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        std::thread::sleep(Duration::from_millis(250));
        Ok(())
    });
    world.client("client", |_env| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    });
    match world.run(&FaultSchedule::default()) {
        Err(SimError::Watchdog { host, .. }) => assert_eq!(host, "blocker"),
        other => panic!("expected a watchdog error, got {other:?}"),
    }
}

#[test]
fn a_livelocked_host_fails_the_run_by_name() {
    let mut world = world(31);
    world.host("spinner", |_env| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        loop {
            tokio::task::yield_now().await;
        }
    });
    world.host("idle", |_env| async {
        std::future::pending::<()>().await;
        Ok(())
    });
    world.client("client", |_env| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    });
    match world.run(&FaultSchedule::default()) {
        Err(SimError::Watchdog { host, .. }) => assert_eq!(host, "spinner"),
        other => panic!("expected a watchdog error, got {other:?}"),
    }
}

#[test]
fn a_failing_host_fails_the_run() {
    let mut world = world(32);
    world.host("bad", |_env| async { Err("broken".into()) });
    world.client("client", |_env| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    });
    let error = world.run(&FaultSchedule::default()).err().unwrap();
    assert!(error.to_string().contains("broken"), "{error}");
}

fn latency(ms: u64) -> FaultAction {
    FaultAction::LinkLatency {
        a: names(&["client"]),
        b: names(&["server"]),
        latency: Duration::from_millis(ms),
        jitter: Duration::ZERO,
    }
}

/// Connects at 10 ms; returns (connect time, echo round trip).
async fn timed_echo(env: &HostEnv) -> Result<(Duration, Duration), BoxError> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    let start = Instant::now();
    let mut io = env.net.connect("server", PORT).await?;
    let connected = since(start);
    let start = Instant::now();
    io.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    io.read_exact(&mut byte).await?;
    Ok((connected, since(start)))
}

#[test]
fn a_latency_override_delays_each_hop_exactly() {
    with_echo(world(40), &[at(0.0, latency(50))], |env| async move {
        let (connect, round_trip) = timed_echo(&env).await?;
        assert_eq!(connect, Duration::from_millis(100), "SYN + SYN-ACK");
        assert_eq!(round_trip, Duration::from_millis(100));
        Ok(())
    });
}

#[test]
fn a_lost_chunk_arrives_one_retransmission_delay_later_per_loss() {
    let loss = FaultAction::LinkLoss {
        a: names(&["client"]),
        b: names(&["server"]),
        loss: 1.0, // every try lost: the six-retransmission bound applies
    };
    let faults = [at(0.0, latency(50)), at(0.0, loss)];
    with_echo(world(41), &faults, |env| async move {
        let (_, round_trip) = timed_echo(&env).await?;
        let one_way = Duration::from_millis(50) + seam::faultnet::RETRANSMIT_DELAY * 6;
        assert_eq!(round_trip, one_way * 2);
        Ok(())
    });
}

#[test]
fn a_one_way_partition_stalls_the_handshake_until_repaired() {
    let cut = FaultAction::PartitionOneway {
        from: names(&["server"]),
        to: names(&["client"]),
    };
    let repair = FaultAction::RepairOneway {
        from: names(&["server"]),
        to: names(&["client"]),
    };
    let faults = [at(0.0, cut), at(300.0, repair)];
    with_echo(world(42), &faults, |env| async move {
        let (connect, _) = timed_echo(&env).await?;
        assert!(
            connect >= Duration::from_millis(290),
            "waited for the repair"
        );
        Ok(())
    });
}

/// Pushes its number when dropped: the teardown order.
struct DropRecorder(usize, Arc<Mutex<Vec<usize>>>);

impl Drop for DropRecorder {
    fn drop(&mut self) {
        self.1.lock().unwrap().push(self.0);
    }
}

#[test]
fn a_crash_drops_the_hosts_tasks_in_spawn_order_and_restart_keeps_its_disk() {
    let mut world = world(43);
    let dropped = Arc::new(Mutex::new(Vec::new()));
    let boots = Arc::new(Mutex::new(Vec::new()));
    let (dropped_in, boots_in) = (dropped.clone(), boots.clone());
    world.host("server", move |env| {
        let (dropped, boots) = (dropped_in.clone(), boots_in.clone());
        async move {
            env.disk.append("boots", b"x")?;
            boots
                .lock()
                .unwrap()
                .push(env.disk.read("boots")?.unwrap_or_default().len());
            for i in 0..6 {
                let record = DropRecorder(i, dropped.clone());
                seam::task::spawn(async move {
                    let _record = record;
                    std::future::pending::<()>().await;
                });
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    world.client("client", |_env| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    });
    let crash = FaultAction::Crash {
        hosts: names(&["server"]),
    };
    let restart = FaultAction::Restart {
        hosts: names(&["server"]),
    };
    let faults = FaultSchedule {
        faults: vec![at(10.0, crash), at(20.0, restart)],
    };
    world.run(&faults).unwrap();
    let dropped = dropped.lock().unwrap();
    // The crash, then the end of the run: each in spawn order.
    assert_eq!(dropped[..6], [0, 1, 2, 3, 4, 5]);
    assert_eq!(dropped[6..], [0, 1, 2, 3, 4, 5]);
    assert_eq!(
        *boots.lock().unwrap(),
        [1, 2],
        "the disk survived the crash"
    );
}

#[test]
fn tokio_timers_keep_their_millisecond_grid_after_an_exact_sleep() {
    let mut world = world(44);
    world.client("client", |env| async move {
        let start = Instant::now();
        env.clock.sleep(Duration::from_micros(10_300)).await;
        // Deadline 15.3 ms: tokio rounds it up to its 16 ms tick, and the
        // driver put the clock back on the grid, so it fires at 16.0 ms.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(since(start), Duration::from_millis(16));
        Ok(())
    });
    world.run(&FaultSchedule::default()).unwrap();
}

#[test]
fn an_idle_hour_of_a_thousand_hosts_is_one_jump() {
    let mut world = EventWorld::new(
        SimConfig {
            duration_limit: Duration::from_secs(7200),
            ..config(45, 1, 3)
        },
        Trace::hash_only(),
    );
    for i in 0..1000 {
        world.host(&format!("h{i}"), |env| async move {
            let _listener = env.net.bind(PORT).await?;
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    world.client("client", |_env| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    });
    world.run(&FaultSchedule::default()).unwrap();
    assert_eq!(world.elapsed(), Duration::from_secs(3600));
}
