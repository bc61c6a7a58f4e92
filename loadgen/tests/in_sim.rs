//! The load generator's behaviour in the simulator, where time is exact
//! and a seed fixes everything: overflow policies, determinism, what
//! observers get, templates, trace replay, HTTP/2.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::{Behaviour, ServerSetup, get_root, ms_at, plan, run_in_sim};
use http::{Method, Version};
use loadgen::arrivals::parse_trace;
use loadgen::{Arrival, BODY_KEEP_BYTES, Operation, Overflow, Protocol};

fn server(service_time_ms: u64) -> ServerSetup {
    ServerSetup {
        http2: false,
        tls: None,
        behaviour: Behaviour {
            stall: None,
            service_time: Duration::from_millis(service_time_ms),
            refuse_connections: false,
        },
    }
}

/// 200/s offered to a server that can only take 5 at a time × 50 ms =
/// 100/s: the overflow policy decides what the generator does about it.
fn overloaded(overflow: Overflow) -> common::SimRun {
    let mut plan = plan(Arrival::Constant { rate: 200.0 }, 10, vec![get_root()]);
    plan.in_flight_max = 5;
    plan.connections_max = 5;
    plan.overflow = overflow;
    run_in_sim(server(50), plan, 3)
}

#[test]
fn drop_policy_counts_what_it_never_sent() {
    let run = overloaded(Overflow::Drop);
    let r = &run.report;
    assert_eq!(r.scheduled, 2000);
    assert_eq!(r.overall.total(), 2000, "every arrival is accounted for");
    assert!(
        (900..=1100).contains(&r.dropped),
        "about half dropped: {}",
        r.dropped
    );
    assert_eq!(r.sent + r.dropped, r.scheduled);
    assert_eq!(r.errors.get("dropped"), Some(&r.dropped));
    assert_eq!(
        run.seen.len() as u64,
        r.sent,
        "the server saw only what was sent"
    );
    assert_eq!(run.completions.len() as u64, r.sent);
    assert!(r.in_flight_peak <= 5);
    // What was sent was sent on time, so latency stays at the service time.
    assert!(r.latency_ms_at(0.99) < 60.0, "{}", r.latency_ms_at(0.99));
    assert!(
        r.warnings.iter().any(|w| w.contains("dropped")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn wait_policy_sends_everything_late_and_says_so() {
    let run = overloaded(Overflow::Wait);
    let r = &run.report;
    assert_eq!((r.dropped, r.sent, r.overall.ok), (0, 2000, 2000));
    // Offered 200/s, served 100/s: the backlog grows for 10 s, so the last
    // request waits ~10 s. Latency from the intended start shows that;
    // service time (what a closed loop sees) stays at 50 ms.
    let p99_ms = r.latency_ms_at(0.99);
    let service_p99_ms = ms_at(&r.service_time_us, 0.99);
    assert!(p99_ms > 8000.0, "latency p99 {p99_ms} ms");
    assert!(service_p99_ms < 60.0, "service p99 {service_p99_ms} ms");
    assert!(r.late > 1900, "late {}", r.late);
    assert!(ms_at(&r.schedule_lag_us, 0.99) > 8000.0);
    assert!(
        r.warnings.iter().any(|w| w.contains("fell behind")),
        "{:?}",
        r.warnings
    );
}

fn order_with_template() -> Operation {
    Operation {
        name: "order".into(),
        method: Method::POST,
        path: "/orders/{{rand_int:1:3}}".into(),
        body: Bytes::from_static(br#"{"n":{{seq}},"qty":{{rand_int:1:9}}}"#),
        headers: Vec::new(),
        weight: 1,
    }
}

#[test]
fn observers_see_keys_and_acknowledged_bodies() {
    let mix = vec![
        order_with_template(),
        Operation {
            name: "big".into(),
            path: "/big".into(),
            ..get_root()
        },
    ];
    let run = run_in_sim(
        server(0),
        plan(Arrival::Poisson { rate: 100.0 }, 5, mix),
        11,
    );
    assert!(run.completions.len() > 400);
    let mut keys = BTreeSet::new();
    for c in &run.completions {
        assert_eq!(c.status, Some(200), "{c:?}");
        assert!(keys.insert(c.idempotency_key.clone()), "duplicate key");
        if c.op == "big" {
            assert_eq!(
                c.body.len(),
                BODY_KEEP_BYTES,
                "the body is kept up to the bound"
            );
            continue;
        }
        // The server echoes "<key> <request body>": the observer sees what
        // was acknowledged, and the body was filled per request.
        let text = std::str::from_utf8(&c.body).unwrap();
        let (key, body) = text.split_once(' ').unwrap();
        assert_eq!(key, c.idempotency_key);
        assert_eq!(
            body.as_bytes(),
            c.request_body,
            "the observer sees what was sent"
        );
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["n"], c.seq);
        assert!((1..=9).contains(&value["qty"].as_u64().unwrap()), "{body}");
    }
    let paths: BTreeSet<&str> = run
        .seen
        .iter()
        .filter(|s| s.path.starts_with("/orders/"))
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from(["/orders/1", "/orders/2", "/orders/3"])
    );
    for seen in &run.seen {
        assert_eq!(
            seen.key.as_ref().map(|k| k.split_once('-').unwrap().1),
            Some(format!("{:08x}", seen.seq.unwrap()).as_str()),
            "the key ends with the request's sequence number"
        );
    }
}

#[test]
fn one_seed_one_run_and_another_seed_another() {
    let fingerprint = |seed: u64| {
        let run = run_in_sim(
            server(3),
            plan(
                Arrival::Poisson { rate: 200.0 },
                3,
                vec![order_with_template()],
            ),
            seed,
        );
        let mut rows: Vec<String> = run
            .completions
            .iter()
            .map(|c| {
                format!(
                    "{} {:?} {:?} {:?} {}",
                    c.seq,
                    c.intended,
                    c.latency,
                    c.status,
                    String::from_utf8_lossy(&c.body)
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let first = fingerprint(5);
    assert!(first.len() > 500);
    assert_eq!(
        first,
        fingerprint(5),
        "same seed, same schedule, same bodies"
    );
    assert_ne!(first, fingerprint(6));
}

#[test]
fn trace_replay_sends_each_row_at_its_offset() {
    let rows = parse_trace(
        "offset_ms,operation\n0,get\n250,order\n250,get\n1999,order\n2500,get\n".as_bytes(),
        "inline",
    )
    .unwrap();
    let arrival = Arrival::Trace {
        path: "inline".into(),
        rows,
    };
    let run = run_in_sim(
        server(0),
        plan(arrival, 2, vec![get_root(), order_with_template()]),
        1,
    );
    let mut sent: Vec<(u128, String)> = run
        .completions
        .iter()
        .map(|c| (c.intended.as_millis(), c.op.clone()))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            (0, "get".to_owned()),
            (250, "get".to_owned()),
            (250, "order".to_owned()),
            (1999, "order".to_owned())
        ],
        "the row past the 2 s phase is not sent"
    );
}

#[test]
fn http2_multiplexes_over_one_connection() {
    let mut setup = server(20);
    setup.http2 = true;
    let mut plan = plan(Arrival::Constant { rate: 500.0 }, 2, vec![get_root()]);
    plan.protocol = Protocol::Http2;
    plan.connections_max = 1;
    let run = run_in_sim(setup, plan, 2);
    let r = &run.report;
    assert_eq!(r.overall.ok, 1000, "{:?}", r.errors);
    assert!(run.seen.iter().all(|s| s.version == Version::HTTP_2));
    // 500/s × 20 ms = 10 in flight on one connection: no queueing.
    assert!(r.in_flight_peak >= 8, "{}", r.in_flight_peak);
    assert!(r.latency_ms_at(0.99) < 30.0, "{}", r.latency_ms_at(0.99));
    assert_eq!(r.late, 0);
}

#[test]
fn an_undersized_pool_is_called_out_before_and_after() {
    let mut plan = plan(Arrival::Constant { rate: 500.0 }, 2, vec![get_root()]);
    plan.connections_max = 2;
    plan.expected_latency = Duration::from_millis(20);
    let warning = plan
        .pool_warning()
        .expect("500/s × 20 ms needs 10 connections");
    assert!(warning.contains("needs 10 connections"), "{warning}");
    let run = run_in_sim(server(20), plan, 4);
    let r = &run.report;
    assert!(r.warnings.contains(&warning));
    assert!(
        r.warnings.iter().any(|w| w.contains("pool saturated")),
        "{:?}",
        r.warnings
    );
    // 2 connections × 20 ms = 100/s of 500/s offered: requests queue in the
    // generator, and it is the latency from intended start that shows it.
    assert!(r.latency_ms_at(0.5) > 500.0, "{}", r.latency_ms_at(0.5));
}

#[test]
fn unreachable_targets_fail_every_request_with_a_reason() {
    let mut plan = plan(Arrival::Constant { rate: 50.0 }, 1, vec![get_root()]);
    plan.request_timeout = Duration::from_millis(200);
    let mut setup = server(0);
    setup.behaviour.refuse_connections = true;
    let run = run_in_sim(setup, plan, 1);
    assert_eq!(run.report.overall.failed, 50);
    assert!(
        run.completions
            .iter()
            .all(|c| c.error.is_some() && c.status.is_none())
    );
    assert_eq!(
        run.report.errors.get("connect"),
        Some(&50),
        "{:?}",
        run.report.errors
    );
}

#[test]
fn a_silent_server_times_out_at_the_request_timeout() {
    let mut plan = plan(Arrival::Constant { rate: 20.0 }, 1, vec![get_root()]);
    plan.request_timeout = Duration::from_millis(200);
    plan.connections_max = 20;
    let run = run_in_sim(server(5_000), plan, 1);
    assert_eq!(
        run.report.errors.get("timeout"),
        Some(&20),
        "{:?}",
        run.report.errors
    );
    for c in &run.completions {
        assert!(
            c.latency >= Duration::from_millis(200) && c.latency < Duration::from_millis(205),
            "{c:?}"
        );
    }
}
