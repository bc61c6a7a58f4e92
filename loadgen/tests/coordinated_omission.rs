//! Coordinated omission, shown in the simulator: the server stalls for one
//! second once. An open-loop generator keeps its schedule, so every request
//! meant to start during the stall carries the stall in its latency and the
//! p99 shows it. A closed-loop tool (here: the service time the same run
//! measured from each actual send over one connection, which is exactly
//! what wrk would record) sends nothing while it waits, so it records one
//! slow sample and its p99 hides the stall.

mod common;

use std::time::Duration;

use common::{Behaviour, ServerSetup, SimRun, get_root, ms_at, plan, run_in_sim};
use loadgen::Arrival;

const STALL_FROM: Duration = Duration::from_secs(5);
const STALL_LENGTH: Duration = Duration::from_secs(1);

/// 100 requests/s for 20 s over one keep-alive HTTP/1.1 connection.
fn run(stall: bool) -> SimRun {
    let setup = ServerSetup {
        http2: false,
        tls: None,
        behaviour: Behaviour {
            stall: stall.then_some((STALL_FROM, STALL_LENGTH)),
            service_time: Duration::ZERO,
            refuse_connections: false,
        },
    };
    let mut plan = plan(Arrival::Constant { rate: 100.0 }, 20, vec![get_root()]);
    plan.connections_max = 1;
    run_in_sim(setup, plan, 7)
}

#[test]
fn a_stall_shows_in_the_tail_but_not_the_median_and_closed_loop_hides_it() {
    let stalled = run(true);
    let baseline = run(false);
    let (report, base) = (&stalled.report, &baseline.report);
    assert_eq!(report.overall.total(), 2000);
    assert_eq!(report.overall.ok, 2000, "every request is answered");

    let p50_ms = report.latency_ms_at(0.5);
    let p99_ms = report.latency_ms_at(0.99);
    let base_p50_ms = base.latency_ms_at(0.5);
    let closed_loop_p99_ms = ms_at(&report.service_time_us, 0.99);
    let closed_loop_p50_ms = ms_at(&report.service_time_us, 0.5);
    let numbers = format!(
        "open-loop latency: p50 {p50_ms:.1} ms, p99 {p99_ms:.1} ms (no stall: p50 {base_p50_ms:.1} ms); \
         closed-loop (service time): p50 {closed_loop_p50_ms:.1} ms, p99 {closed_loop_p99_ms:.1} ms; \
         generator late {} of {}",
        report.late, report.sent
    );

    // 100 of 2000 requests were meant to start during the stall: the top
    // 5 % of latencies are stall, so the p99 sits well inside it.
    assert!(p99_ms > 500.0, "the p99 must show the 1 s stall: {numbers}");
    // The median request never met the stall.
    assert!(
        (p50_ms - base_p50_ms).abs() <= 0.5,
        "the median must be unaffected: {numbers}"
    );
    // Closed loop: one slow sample in 2000 — the tail looks healthy.
    assert!(
        closed_loop_p99_ms < 10.0,
        "the closed-loop p99 should hide the stall: {numbers}"
    );
    assert!(ms_at(&report.service_time_us, 1.0) >= 990.0, "{numbers}");

    // Request by request: each one meant to start inside the stall waited
    // at least until the stall ended.
    let stall_end = STALL_FROM + STALL_LENGTH;
    let mut during = 0;
    for c in &stalled.completions {
        if c.intended >= STALL_FROM && c.intended < stall_end {
            during += 1;
            assert!(
                c.latency >= stall_end - c.intended,
                "seq {} meant at {:?} finished after only {:?}",
                c.seq,
                c.intended,
                c.latency
            );
        }
    }
    assert_eq!(during, 100, "{numbers}");
    // The generator owns up to having sent them late (its only connection
    // was busy), instead of silently shifting the schedule.
    assert!(report.late >= 99, "{numbers}");
    assert!(
        report.warnings.iter().any(|w| w.contains("fell behind")),
        "{:?}",
        report.warnings
    );
    eprintln!("{numbers}");
}
