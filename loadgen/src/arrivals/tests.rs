use super::*;
use rand::SeedableRng;

fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

fn gaps(offsets: &[Duration]) -> Vec<f64> {
    offsets
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

/// Arrivals per `window_s`-second window over `[0, length_s)`.
fn counts_per_window(offsets: &[Duration], window_s: f64, length_s: f64) -> Vec<u64> {
    let mut counts = vec![0u64; (length_s / window_s).round() as usize];
    let last = counts.len() - 1;
    for offset in offsets {
        let i = (offset.as_secs_f64() / window_s) as usize;
        counts[i.min(last)] += 1;
    }
    counts
}

fn parse(text: &str) -> Result<Arrival, String> {
    #[derive(Deserialize)]
    struct Doc {
        arrival: Arrival,
    }
    toml::from_str::<Doc>(text)
        .map(|d| d.arrival)
        .map_err(|e| e.to_string())
}

fn curve(points: &[(f64, f64)]) -> Arrival {
    Arrival::Curve {
        points: points
            .iter()
            .map(|&(at_s, rate_per_s)| RatePoint { at_s, rate_per_s })
            .collect(),
    }
}

#[test]
fn poisson_mean_and_cv_match_theory() {
    let offsets =
        Arrival::Poisson { rate: 1000.0 }.schedule(Duration::from_secs(100), &mut rng(11));
    let gaps = gaps(&offsets);
    assert!(gaps.len() > 99_000, "{} arrivals", gaps.len());
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean) * (g - mean)).sum::<f64>() / gaps.len() as f64;
    let cv = var.sqrt() / mean;
    assert!((mean - 0.001).abs() / 0.001 < 0.01, "mean gap {mean}");
    assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
}

#[test]
fn constant_rate_is_evenly_spaced() {
    let offsets = Arrival::Constant { rate: 100.0 }.schedule(Duration::from_secs(10), &mut rng(1));
    assert_eq!(offsets.len(), 1000);
    assert!(gaps(&offsets).iter().all(|g| (g - 0.01).abs() < 1e-9));
}

fn every_kind() -> Vec<Arrival> {
    vec![
        Arrival::Constant { rate: 50.0 },
        Arrival::Poisson { rate: 50.0 },
        Arrival::Ramp {
            start_rate_per_s: 0.0,
            stages: vec![RampStage {
                duration_s: 5.0,
                target_rate_per_s: 100.0,
            }],
        },
        curve(&[(0.0, 10.0), (10.0, 100.0)]),
        Arrival::Bursts {
            base_rate_per_s: 20.0,
            burst_rate_per_s: 200.0,
            base_dwell_mean_s: 2.0,
            burst_dwell_mean_s: 0.5,
        },
    ]
}

#[test]
fn same_seed_same_schedule_for_every_kind() {
    for plan in every_kind() {
        let a = plan.schedule(Duration::from_secs(10), &mut rng(5));
        let b = plan.schedule(Duration::from_secs(10), &mut rng(5));
        let c = plan.schedule(Duration::from_secs(10), &mut rng(6));
        assert!(!a.is_empty(), "{plan:?}");
        assert_eq!(a, b, "{plan:?}");
        assert_ne!(a, c, "{plan:?}");
        assert!(a.windows(2).all(|w| w[0] <= w[1]), "{plan:?} not sorted");
        assert!(a.iter().all(|o| *o < Duration::from_secs(10)), "{plan:?}");
    }
}

/// The curve the thinning tests use: a climb, a spike, a fall, a plateau.
fn test_curve() -> Arrival {
    curve(&[
        (0.0, 200.0),
        (10.0, 2000.0),
        (12.0, 2000.0),
        (20.0, 500.0),
        (40.0, 500.0),
    ])
}

#[test]
fn curve_counts_per_window_are_within_three_sigma() {
    let arrival = test_curve();
    let curve = arrival.rate_curve().unwrap();
    let length_s = 40.0;
    let offsets = arrival.schedule(Duration::from_secs_f64(length_s), &mut rng(3));
    let counts = counts_per_window(&offsets, 1.0, length_s);
    for (i, count) in counts.iter().enumerate() {
        let expected = curve.area_between(i as f64, i as f64 + 1.0);
        let sigma = expected.sqrt();
        let z = (*count as f64 - expected) / sigma;
        assert!(
            z.abs() < 3.0,
            "window {i}s: {count} arrivals, curve says {expected:.1} ± {sigma:.1} (z = {z:.2})"
        );
    }
}

#[test]
fn curve_windows_outside_three_sigma_are_as_rare_as_theory_says() {
    // A stronger statement than one seed: over 50 seeds × 40 windows the
    // share beyond 3σ must be near the normal tail (0.27 %), not near zero
    // (a process too regular) nor large (a process at the wrong rate).
    let arrival = test_curve();
    let curve = arrival.rate_curve().unwrap();
    let (mut outside, mut total, mut z_sum) = (0, 0, 0.0);
    for seed in 0..50 {
        let offsets = arrival.schedule(Duration::from_secs(40), &mut rng(seed));
        for (i, count) in counts_per_window(&offsets, 1.0, 40.0).iter().enumerate() {
            let expected = curve.area_between(i as f64, i as f64 + 1.0);
            let z = (*count as f64 - expected) / expected.sqrt();
            outside += usize::from(z.abs() > 3.0);
            total += 1;
            z_sum += z * z;
        }
    }
    let share = outside as f64 / total as f64;
    let z_variance = z_sum / total as f64;
    assert!(share < 0.01, "{outside} of {total} windows beyond 3σ");
    assert!(
        (z_variance - 1.0).abs() < 0.1,
        "z variance {z_variance:.3}: counts are not Poisson around the curve"
    );
}

#[test]
fn ramp_counts_follow_the_stages_exactly() {
    let arrival = Arrival::Ramp {
        start_rate_per_s: 10.0,
        stages: vec![
            RampStage {
                duration_s: 10.0,
                target_rate_per_s: 110.0,
            },
            RampStage {
                duration_s: 5.0,
                target_rate_per_s: 110.0,
            },
            RampStage {
                duration_s: 0.0,
                target_rate_per_s: 30.0,
            },
        ],
    };
    let curve = arrival.rate_curve().unwrap();
    // The phase outlasts the stages: the last target (a step to 30/s) holds.
    let offsets = arrival.schedule(Duration::from_secs(20), &mut rng(9));
    let counts = counts_per_window(&offsets, 1.0, 20.0);
    for (i, count) in counts.iter().enumerate() {
        let expected = curve.area_between(i as f64, i as f64 + 1.0);
        assert!(
            (*count as f64 - expected).abs() <= 1.0,
            "second {i}: {count} arrivals, ramp says {expected}"
        );
    }
    assert_eq!(counts[0], 15, "10→20/s over the first second");
    assert_eq!(counts[12], 110);
    assert_eq!(counts[19], 30);
    assert!((arrival.mean_rate_per_s(Duration::from_secs(20)) - 65.0).abs() < 1e-9);
    assert_eq!(arrival.rate(), 110.0);
}

#[test]
fn bursts_have_the_stationary_mean_and_are_overdispersed() {
    let arrival = Arrival::Bursts {
        base_rate_per_s: 100.0,
        burst_rate_per_s: 1000.0,
        base_dwell_mean_s: 4.0,
        burst_dwell_mean_s: 1.0,
    };
    let length_s = 2000.0;
    let offsets = arrival.schedule(Duration::from_secs_f64(length_s), &mut rng(21));
    let expected_mean = arrival.mean_rate_per_s(Duration::from_secs(1));
    assert_eq!(expected_mean, 280.0);
    let measured_mean = offsets.len() as f64 / length_s;
    assert!(
        (measured_mean - expected_mean).abs() / expected_mean < 0.05,
        "mean rate {measured_mean} vs {expected_mean}"
    );
    // A Poisson process has variance = mean per window; bursts must not.
    let counts = counts_per_window(&offsets, 1.0, length_s);
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    let var = counts
        .iter()
        .map(|c| (*c as f64 - mean) * (*c as f64 - mean))
        .sum::<f64>()
        / counts.len() as f64;
    assert!(var / mean > 20.0, "dispersion index {}", var / mean);
    let busiest = *counts.iter().max().unwrap();
    assert!(
        busiest > 800,
        "no burst reached its rate: busiest second {busiest}"
    );
}

#[test]
fn trace_replays_rows_up_to_the_phase_end() {
    let rows = parse_trace(
        "offset_ms,operation\n0,quote\n500,order\n1500,quote\n".as_bytes(),
        "t",
    )
    .unwrap();
    let arrival = Arrival::Trace {
        path: "t".into(),
        rows,
    };
    let offsets = arrival.schedule(Duration::from_secs(1), &mut rng(0));
    assert_eq!(offsets, [Duration::ZERO, Duration::from_millis(500)]);
    assert_eq!(arrival.rate(), 2.0);
}

#[test]
fn scenario_shapes_parse_and_round_trip() {
    let cases = [
        r#"arrival = { kind = "constant", rate = 10 }"#,
        r#"arrival = { kind = "poisson", rate = 100.5 }"#,
        r#"arrival = { kind = "ramp", stages = [{ duration_s = 30, target_rate_per_s = 100 }] }"#,
        r#"arrival = { kind = "ramp", start_rate_per_s = 5, stages = [{ duration_s = 1, target_rate_per_s = 10 }, { duration_s = 2, target_rate_per_s = 0 }] }"#,
        r#"arrival = { kind = "curve", points = [{ at_s = 0, rate_per_s = 10 }, { at_s = 5, rate_per_s = 50 }] }"#,
        r#"arrival = { kind = "bursts", base_rate_per_s = 10, burst_rate_per_s = 100, base_dwell_mean_s = 5, burst_dwell_mean_s = 1 }"#,
    ];
    for text in cases {
        let arrival = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        #[derive(Serialize)]
        struct Doc<'a> {
            arrival: &'a Arrival,
        }
        let again = toml::to_string(&Doc { arrival: &arrival }).unwrap();
        assert_eq!(parse(&again).unwrap(), arrival, "{again}");
    }
}

#[test]
fn scenario_errors_name_the_field() {
    for (text, expected) in [
        (r#"arrival = { kind = "poisson", rate = -5 }"#, "positive"),
        (r#"arrival = { kind = "poisson", rat = 5 }"#, "rat"),
        (r#"arrival = { kind = "wave", rate = 5 }"#, "wave"),
        (
            r#"arrival = { kind = "ramp", stages = [{ duration_s = 3, target_rate_per_s = 5, x = 1 }] }"#,
            "unknown field `x`",
        ),
        (
            r#"arrival = { kind = "ramp", stages = [{ duration_s = -3, target_rate_per_s = 5 }] }"#,
            "stages[0].duration_s",
        ),
        (
            r#"arrival = { kind = "ramp", stages = [{ duration_s = 3, target_rate_per_s = 0 }] }"#,
            "never asks for a request",
        ),
        (
            r#"arrival = { kind = "curve", points = [{ at_s = 5, rate_per_s = 1 }, { at_s = 4, rate_per_s = 2 }] }"#,
            "points[1].at_s",
        ),
        (
            r#"arrival = { kind = "curve", points = [] }"#,
            "points has 0",
        ),
        (
            r#"arrival = { kind = "bursts", base_rate_per_s = 10, burst_rate_per_s = 100, base_dwell_mean_s = 0, burst_dwell_mean_s = 1 }"#,
            "base_dwell_mean_s",
        ),
        (
            r#"arrival = { kind = "trace", path = "/nonexistent/trace.csv" }"#,
            "/nonexistent/trace.csv",
        ),
    ] {
        let error = parse(text).unwrap_err();
        assert!(error.contains(expected), "{text}: {error}");
    }
}

#[test]
fn trace_kind_reads_its_file() {
    let dir = std::env::temp_dir().join(format!("loadgen-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.csv");
    std::fs::write(&path, "offset_ms,operation\n10,order\n").unwrap();
    let arrival = parse(&format!(
        "arrival = {{ kind = \"trace\", path = {:?} }}",
        path.display().to_string()
    ))
    .unwrap();
    assert_eq!(arrival.trace_rows().unwrap().rows()[0].operation, "order");
    std::fs::remove_dir_all(&dir).unwrap();
}
