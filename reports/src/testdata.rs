//! Run data for tests: a realistic run, an empty one and a hostile one.

use std::path::{Path, PathBuf};

use crate::{
    Check, CheckKind, IntervalHistogram, IntervalRow, LatencyMs, Mode, ROUTE_ALL, RequestCounts,
    RunData, Summary, TimelineEvent, Verdict, Window, WindowKind, latency_histogram,
};

/// A fresh, empty directory unique to this test process and test name, so
/// parallel tests and concurrent `cargo test` runs never share files.
/// Removed when dropped.
pub(crate) fn temp_dir(name: &str) -> TempDir {
    let process = format!("meshsim-reports-{}", std::process::id());
    let dir = std::env::temp_dir().join(process).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A test directory that deletes itself.
pub(crate) struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The per-process parent goes once its last test is done; this
        // fails harmlessly while other tests still use it.
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn summary(checks: Vec<Check>, requests: RequestCounts) -> Summary {
    Summary {
        scenario: "partition-heal".to_owned(),
        seed: 42,
        mode: Mode::Sim,
        verdict: Summary::verdict_of(&checks),
        trace_hash: Some("ab12".repeat(16)),
        sim_seconds: 10.0,
        wall_seconds: 1.25,
        requests,
        latency_ms: LatencyMs {
            p50: 3.1,
            p90: 7.9,
            p99: 180.2,
            p999: 410.0,
            max: 612.5,
        },
        checks,
        reproduce: "cargo run --release -- run scenarios/partition-heal.toml --seed 42".to_owned(),
        generator_late: 3,
        generator_dropped: 0,
        config_versions: Default::default(),
        provenance: crate::Provenance {
            meshsim_version: "0.1.0".to_owned(),
            source_revision: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            scenario_sha256: "cd34".repeat(16),
            platform: "x86_64-linux".to_owned(),
        },
    }
}

/// Ten seconds, two routes, a fault from 3 s to 5 s, two phases and a few
/// certificate events; one check fails.
pub(crate) fn run() -> RunData {
    let checks = vec![
        check("p99 < 250ms", CheckKind::Slo, true, "p99 = 180.2 ms"),
        check(
            "errors < 1%",
            CheckKind::Slo,
            false,
            "error rate 4.2% > 1% (\"burst\" at 3s & 4s)",
        ),
        check(
            "mtls-only",
            CheckKind::Security,
            true,
            "0 plaintext connections",
        ),
        check("ledger-balanced", CheckKind::Ledger, true, "sum = 0"),
        check(
            "recovers",
            CheckKind::Liveness,
            true,
            "p99 back under SLO 1.2 s after heal",
        ),
    ];
    let mut data = RunData::new(summary(
        checks,
        RequestCounts {
            total: 1000,
            ok: 958,
            failed: 42,
        },
    ));
    let routes = ["GET /balance", "POST /transfer"];
    for second in 0..10u32 {
        let (start_s, end_s) = (f64::from(second), f64::from(second + 1));
        let faulty = (3..5).contains(&second);
        let mut interval = latency_histogram();
        for (r, route) in routes.iter().enumerate() {
            let mut h = latency_histogram();
            for i in 0..50u64 {
                let base_us = 1_000 + 500 * r as u64 + 40 * i;
                h.record(if faulty { base_us * 100 } else { base_us })
                    .unwrap();
            }
            let errors = if faulty { 21 } else { 0 };
            data.intervals.push(row(start_s, end_s, route, &h, errors));
            data.route_latency_intervals
                .entry((*route).to_owned())
                .or_default()
                .push(IntervalHistogram {
                    start_s,
                    end_s,
                    histogram: h.clone(),
                });
            interval.add(&h).unwrap();
            data.per_route
                .entry((*route).to_owned())
                .or_insert_with(latency_histogram)
                .add(&h)
                .unwrap();
        }
        let errors = if faulty { 42 } else { 0 };
        data.intervals
            .push(row(start_s, end_s, ROUTE_ALL, &interval, errors));
        data.overall.add(&interval).unwrap();
        data.latency_intervals.push(IntervalHistogram {
            start_s,
            end_s,
            histogram: interval,
        });
    }
    data.windows = vec![
        window(0.0, 2.0, "warm-up", WindowKind::Phase),
        window(2.0, 10.0, "steady", WindowKind::Phase),
        window(3.0, 5.0, "partition a|b", WindowKind::Fault),
    ];
    data.events = vec![
        event(0.1, "a-0", "issue"),
        event(0.1, "b-0", "issue"),
        event(6.0, "a-0", "renew"),
        event(9.5, "b-0", "expire"),
    ];
    data
}

/// No requests, no checks, no events; verdict fail (nothing was measured).
pub(crate) fn empty_run() -> RunData {
    let mut summary = summary(Vec::new(), RequestCounts::default());
    summary.verdict = Verdict::Fail;
    summary.latency_ms = LatencyMs::default();
    summary.sim_seconds = 0.0;
    summary.trace_hash = None;
    RunData::new(summary)
}

/// Markup, control characters and broken numbers everywhere text or numbers go.
pub(crate) fn hostile_run() -> RunData {
    let evil = "<b>boom</b> & \"quotes\" 'apos' \u{1} ]]> <script>alert(1)</script>";
    let mut data = run();
    data.summary.scenario = evil.to_owned();
    data.summary.reproduce = evil.to_owned();
    data.summary.wall_seconds = f64::NAN;
    data.summary.sim_seconds = f64::INFINITY;
    data.summary
        .checks
        .push(check(evil, CheckKind::Security, false, evil));
    data.intervals[0].route = ROUTE_ALL.to_owned();
    data.intervals[0].p99_ms = f64::NAN;
    data.intervals[1].end_s = -5.0;
    data.windows
        .push(window(f64::NAN, -1.0, evil, WindowKind::Fault));
    data.windows
        .push(window(1e300, 1e301, evil, WindowKind::Phase));
    data.events.push(TimelineEvent {
        at_s: f64::NEG_INFINITY,
        host: evil.to_owned(),
        kind: evil.to_owned(),
        detail: evil.to_owned(),
    });
    data.per_route.insert(evil.to_owned(), data.overall.clone());
    data
}

/// Degenerate magnitudes: a 1e-300 s run, huge counts, a single interval.
pub(crate) fn extreme_runs() -> Vec<RunData> {
    let mut tiny = run();
    tiny.summary.sim_seconds = 1e-300;
    for row in &mut tiny.intervals {
        row.start_s *= 1e-300;
        row.end_s *= 1e-300;
        row.count = u64::MAX;
        row.errors = u64::MAX;
        row.p999_ms = f64::MAX;
    }
    for window in &mut tiny.windows {
        window.start_s = 0.0;
        window.end_s = 1e-300;
    }
    for event in &mut tiny.events {
        event.at_s = 5e-301;
    }
    let mut single = run();
    single.intervals.truncate(3);
    single.per_route.clear();
    single
        .per_route
        .insert("only".to_owned(), single.overall.clone());
    let mut many_routes = run();
    for i in 0..40 {
        let name = format!("GET /route/{i}/with/a/rather/long/path");
        many_routes
            .per_route
            .insert(name, many_routes.overall.clone());
        many_routes.events.push(event(
            f64::from(i) / 4.0,
            &format!("host-{i}"),
            &format!("kind-{}", i % 11),
        ));
    }
    let mut huge = latency_histogram();
    huge.record(u64::MAX / 4).unwrap();
    let mut huge_values = run();
    huge_values.overall = huge.clone();
    huge_values.per_route.insert("huge".to_owned(), huge);
    vec![tiny, single, many_routes, huge_values]
}

fn check(name: &str, kind: CheckKind, passed: bool, detail: &str) -> Check {
    Check {
        name: name.to_owned(),
        kind,
        passed,
        detail: detail.to_owned(),
    }
}

fn row(
    start_s: f64,
    end_s: f64,
    route: &str,
    h: &hdrhistogram::Histogram<u64>,
    errors: u64,
) -> IntervalRow {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    IntervalRow {
        start_s,
        end_s,
        route: route.to_owned(),
        count: h.len(),
        errors,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: h.max() as f64 / 1000.0,
    }
}

fn window(start_s: f64, end_s: f64, label: &str, kind: WindowKind) -> Window {
    Window {
        start_s,
        end_s,
        label: label.to_owned(),
        kind,
    }
}

fn event(at_s: f64, host: &str, kind: &str) -> TimelineEvent {
    TimelineEvent {
        at_s,
        host: host.to_owned(),
        kind: kind.to_owned(),
        detail: format!("{kind} serial 0x{:x}", (at_s * 10.0) as u64),
    }
}

/// A small well-formedness check: every tag closes in order, attribute
/// values are quoted, and `&` only starts a known entity or character
/// reference. Enough to catch unescaped data; not a full XML parser.
pub(crate) fn assert_well_formed(xml: &str) {
    let bad_char = xml
        .chars()
        .find(|&c| !(crate::junit::is_xml_char(c) || "\t\n\r".contains(c)));
    assert_eq!(bad_char, None, "character XML 1.0 cannot carry");
    let declaration = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    let body = xml.strip_prefix(declaration).unwrap_or(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]);
        let gt = rest[lt..].find('>').expect("unclosed tag") + lt;
        let tag = &rest[lt + 1..gt];
        assert!(!tag.contains('<'), "'<' inside tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched close");
        } else {
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name = tag.split_whitespace().next().expect("tag name");
            check_attributes(&tag[name.len()..]);
            if !self_closing {
                stack.push(name.to_owned());
            }
        }
        rest = &rest[gt + 1..];
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

fn check_attributes(attrs: &str) {
    let mut rest = attrs.trim();
    while !rest.is_empty() {
        let eq = rest.find("=\"").expect("attribute without quoted value");
        assert!(
            !rest[..eq].trim().contains(char::is_whitespace),
            "bad attribute name"
        );
        let close = rest[eq + 2..].find('"').expect("unterminated value") + eq + 2;
        check_text(&rest[eq + 2..close]);
        rest = rest[close + 1..].trim_start();
    }
}

fn check_text(text: &str) {
    assert!(!text.contains('>'), "raw '>' in {text:?}");
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..text[i..].find(';').expect("unterminated entity") + i + 1];
        let known = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity)
            || entity.starts_with("&#");
        assert!(known, "unknown entity {entity}");
    }
}
