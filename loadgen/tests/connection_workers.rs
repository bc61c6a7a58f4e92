//! `loadgen::run_connections` (the dispatcher behind `meshsim load` for
//! HTTP/1.1) against real servers on loopback: it must send exactly the
//! requests the simulation's dispatcher sends for the same seed, over TLS
//! too, and read every way an HTTP/1.1 server may frame or end a response.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Behaviour, Log, Pki, ServerSetup, get_root, plan, start_real, temp_dir};
use http::Method;
use loadgen::{Arrival, LoadPlan, LoadReport, Operation, Target, TlsTarget};
use seam::real::RealNet;
use seam::{Net, Seed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The test server (`common::serve`) on a loopback port.
fn start(runtime: &tokio::runtime::Runtime, setup: ServerSetup) -> (std::net::SocketAddr, Log) {
    runtime.block_on(start_real(setup))
}

fn target(addr: std::net::SocketAddr, tls: Option<TlsTarget>) -> Target {
    Target {
        host: addr.ip().to_string(),
        port: addr.port(),
        authority: format!("localhost:{}", addr.port()),
        tls,
    }
}

fn net() -> Arc<dyn Net> {
    Arc::new(RealNet::standalone())
}

/// `plan` through the connection workers on `threads` threads, to the end.
fn load(target: Target, plan: LoadPlan, seed: u64, threads: usize) -> LoadReport {
    loadgen::run_connections(
        net(),
        target,
        plan,
        Seed::new(seed),
        threads,
        None,
        Duration::ZERO,
    )
    .unwrap()
}

/// A mix with templated paths and bodies, so the seed's draws show.
fn templated_plan() -> LoadPlan {
    let order = Operation {
        name: "order".into(),
        method: Method::POST,
        path: "/orders/{{seq}}?qty={{rand_int:1:100}}".into(),
        body: Bytes::from_static(b"{\"side\":\"{{rand_choice:buy|sell}}\"}"),
        headers: vec![("authorization".into(), "Bearer t".into())],
        weight: 3,
    };
    let mut plan = plan(Arrival::Poisson { rate: 200.0 }, 1, vec![get_root(), order]);
    plan.connections_max = 4;
    plan.request_timeout = Duration::from_secs(5);
    plan
}

/// What the server saw, in an order-free form.
fn seen(log: &Log) -> BTreeSet<(u64, String, Option<String>, Bytes)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s.seq.unwrap(),
                s.path.clone(),
                s.key.clone(),
                s.body.clone(),
            )
        })
        .collect()
}

#[test]
fn connection_workers_send_what_the_simulations_dispatcher_sends() {
    let runtime = runtime();
    let (addr, log) = start(
        &runtime,
        ServerSetup {
            http2: false,
            tls: None,
            behaviour: Behaviour::default(),
        },
    );
    let plan = templated_plan();
    let by_tasks = runtime
        .block_on(loadgen::run(
            net(),
            target(addr, None),
            plan.clone(),
            Seed::new(7),
            Arc::new(|_: &_| {}),
        ))
        .unwrap();
    let tasks_saw = seen(&log);
    log.lock().unwrap().clear();
    let by_connections = load(target(addr, None), plan, 7, 2);
    let connections_saw = seen(&log);
    assert!(tasks_saw.len() > 150, "{}", tasks_saw.len());
    assert_eq!(
        tasks_saw, connections_saw,
        "same seqs, paths, keys and bodies"
    );
    assert_eq!(by_connections.overall.ok, by_tasks.overall.ok);
    assert_eq!(by_connections.scheduled, by_tasks.scheduled);
    assert_eq!(by_connections.sent, by_tasks.sent);
    assert_eq!(
        by_connections.ops.keys().collect::<Vec<_>>(),
        by_tasks.ops.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        by_connections.ops["order"].total(),
        by_tasks.ops["order"].total()
    );
    let intervals = |r: &LoadReport| {
        r.intervals
            .iter()
            .map(|i| i.total().total())
            .collect::<Vec<_>>()
    };
    assert_eq!(intervals(&by_connections), intervals(&by_tasks));
}

#[test]
fn mtls_works_and_a_refused_certificate_fails_every_request() {
    let runtime = runtime();
    let pki = Pki::create(&temp_dir("workers-mtls"));
    let (addr, log) = start(
        &runtime,
        ServerSetup {
            http2: false,
            tls: Some(pki.server_config()),
            behaviour: Behaviour::default(),
        },
    );
    let mut plan = plan(Arrival::Constant { rate: 100.0 }, 1, vec![get_root()]);
    plan.connections_max = 3;
    for (with_cert, name) in [
        (true, "localhost"),
        (false, "localhost"),
        (true, "elsewhere.example"),
    ] {
        log.lock().unwrap().clear();
        let files = loadgen::TlsFiles {
            cacert: Some(pki.ca_pem.clone()),
            cert: with_cert.then(|| pki.client_cert.clone()),
            key: with_cert.then(|| pki.client_key.clone()),
        };
        let tls = files.target(name, loadgen::Protocol::Http1).unwrap();
        let report = load(target(addr, Some(tls)), plan.clone(), 1, 3);
        let total = report.overall.total();
        assert_eq!(total, 100);
        if with_cert && name == "localhost" {
            assert_eq!(report.overall.ok, total, "{:?}", report.errors);
            assert!(log.lock().unwrap().iter().all(|s| s.client_cert));
        } else {
            assert_eq!(report.overall.ok, 0, "{name}, cert {with_cert}");
            assert!(
                log.lock().unwrap().is_empty(),
                "nothing reached the handler"
            );
        }
    }
}

/// The responses a hand-written server gives, one per request on a
/// connection, in turn: chunked with a trailer; an interim 100 then a
/// sized body; a sized body with `connection: close`, then it closes.
const FRAMINGS: [&[u8]; 3] = [
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 202 Accepted\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndone",
];

/// Serves `answers` in turn on each connection, one per request head, and
/// closes after the last; counts connections.
fn raw_server(
    runtime: &tokio::runtime::Runtime,
    answers: &'static [&'static [u8]],
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            seam::task::spawn(async move {
                let mut head = Vec::new();
                for answer in answers {
                    head.clear();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0u8; 1];
                        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    if socket.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, connections)
}

#[test]
fn every_framing_is_read_and_a_closed_connection_is_replaced() {
    let runtime = runtime();
    let (addr, connections) = raw_server(&runtime, &FRAMINGS);
    let mut plan = plan(Arrival::Constant { rate: 60.0 }, 1, vec![get_root()]);
    plan.connections_max = 1;
    let report = load(target(addr, None), plan, 1, 1);
    assert_eq!(report.overall.ok, 60, "{:?}", report.errors);
    assert_eq!(report.statuses.get(&200), Some(&20));
    assert_eq!(report.statuses.get(&201), Some(&20));
    assert_eq!(report.statuses.get(&202), Some(&20));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 20);
}

/// Answers once, then drops the connection without a word: what a server
/// does to an idle keep-alive connection.
const ONE_THEN_DROP: [&[u8]; 1] = [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"];

#[test]
fn a_dropped_keep_alive_connection_is_retried_for_idempotent_requests_only() {
    let runtime = runtime();
    let (addr, _) = raw_server(&runtime, &ONE_THEN_DROP);
    let mut plan = plan(Arrival::Constant { rate: 20.0 }, 1, vec![get_root()]);
    plan.connections_max = 1;
    let target = target(addr, None);
    let gets = load(target.clone(), plan.clone(), 1, 1);
    assert_eq!(gets.overall.ok, 20, "GET is sent again: {:?}", gets.errors);
    plan.mix[0].method = Method::POST;
    let posts = load(target, plan, 1, 1);
    assert!(
        posts.errors.get("http").is_some_and(|&n| n > 0),
        "{:?}",
        posts.errors
    );
    assert_eq!(posts.overall.ok + posts.errors["http"], 20);
}

#[test]
fn a_stop_ends_the_offer_and_says_so() {
    let runtime = runtime();
    let (addr, _log) = start(
        &runtime,
        ServerSetup {
            http2: false,
            tls: None,
            behaviour: Behaviour::default(),
        },
    );
    let plan = plan(Arrival::Constant { rate: 100.0 }, 10, vec![get_root()]);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    runtime.spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = stop_tx.send(true);
    });
    let report = loadgen::run_connections(
        net(),
        target(addr, None),
        plan,
        Seed::new(1),
        2,
        Some(stop_rx),
        Duration::from_secs(1),
    )
    .unwrap();
    let sent = report.overall.total();
    assert!(
        (30..=70).contains(&sent),
        "about half a second of 100/s: {sent}"
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("stopped early")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn the_in_flight_bound_drops_what_it_never_sent_and_wait_sends_it_late() {
    let runtime = runtime();
    let (addr, log) = start(
        &runtime,
        ServerSetup {
            http2: false,
            tls: None,
            behaviour: Behaviour {
                service_time: Duration::from_millis(50),
                ..Behaviour::default()
            },
        },
    );
    // 2 connections at 50 ms each serve 40/s; 100/s are offered.
    let mut plan = plan(Arrival::Constant { rate: 100.0 }, 1, vec![get_root()]);
    plan.connections_max = 2;
    plan.in_flight_max = 5;
    let dropping = load(target(addr, None), plan.clone(), 1, 1);
    assert!(dropping.dropped > 30, "{}", dropping.dropped);
    assert_eq!(dropping.errors.get("dropped"), Some(&dropping.dropped));
    assert_eq!(dropping.overall.total(), 100, "a drop still counts");
    assert_eq!(log.lock().unwrap().len() as u64, 100 - dropping.dropped);
    assert!(dropping.in_flight_peak <= 5, "{}", dropping.in_flight_peak);
    assert!(
        dropping
            .warnings
            .iter()
            .any(|w| w.contains("were dropped at the in-flight bound")),
        "{:?}",
        dropping.warnings
    );
    plan.overflow = loadgen::Overflow::Wait;
    let waiting = load(target(addr, None), plan, 1, 1);
    assert_eq!((waiting.dropped, waiting.overall.ok), (0, 100));
    // The last request waited ~1.5 s behind its intended start, and its
    // latency says so.
    assert!(
        waiting.latency_ms_at(1.0) > 1000.0,
        "{}",
        waiting.latency_ms_at(1.0)
    );
    assert!(waiting.late > 50);
}
