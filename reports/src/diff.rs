//! `meshsim diff`: one run against a baseline, from their saved files.
//!
//! Latency comes from `latency.hlog`: each route's interval histograms are
//! added into one exact whole-run histogram per side (never an average of
//! percentiles); counts and errors from `timeseries.csv`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{CheckKind, ROUTE_ALL, ReportError, RunData, Verdict, latency_histogram};

/// File name of the machine-readable diff.
pub const DIFF_JSON: &str = "diff.json";

const US_PER_MS: f64 = 1000.0;

/// One route's whole-run measurements.
#[derive(Clone, Debug)]
pub struct RouteSample {
    /// Every interval's histogram added up (microseconds).
    pub latency_us: Histogram<u64>,
    /// Requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Seconds the run measured (all intervals), for throughput.
    pub seconds: f64,
}

impl RouteSample {
    /// Latency in ms at quantile `q` (`Some(1.0)` is the maximum), or the
    /// mean for `None`; 0 without samples.
    pub fn latency_ms(&self, q: Option<f64>) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        let us = match q {
            Some(q) if q >= 1.0 => self.latency_us.max() as f64,
            Some(q) => self.latency_us.value_at_quantile(q) as f64,
            None => self.latency_us.mean(),
        };
        us / US_PER_MS
    }

    /// Failed / total (0 without requests).
    pub fn error_rate(&self) -> f64 {
        self.errors as f64 / self.requests.max(1) as f64
    }

    /// Requests per second over the run.
    pub fn throughput_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Every route of a run (and [`ROUTE_ALL`]), merged over the whole run.
pub fn route_samples(data: &RunData) -> BTreeMap<String, RouteSample> {
    let seconds: f64 = data
        .intervals
        .iter()
        .filter(|r| r.route == ROUTE_ALL)
        .map(|r| (r.end_s - r.start_s).max(0.0))
        .sum();
    let mut samples: BTreeMap<String, RouteSample> = BTreeMap::new();
    fn sample<'m>(
        samples: &'m mut BTreeMap<String, RouteSample>,
        route: &str,
        seconds: f64,
    ) -> &'m mut RouteSample {
        samples
            .entry(route.to_owned())
            .or_insert_with(|| RouteSample {
                latency_us: latency_histogram(),
                requests: 0,
                errors: 0,
                seconds,
            })
    }
    for row in &data.intervals {
        let s = sample(&mut samples, &row.route, seconds);
        s.requests += row.count;
        s.errors += row.errors;
    }
    let tagged = data
        .route_latency_intervals
        .iter()
        .flat_map(|(route, list)| list.iter().map(move |i| (route.as_str(), i)));
    let all = data.latency_intervals.iter().map(|i| (ROUTE_ALL, i));
    for (route, interval) in all.chain(tagged) {
        // Histograms built by `latency_histogram()` auto-resize: adding
        // cannot fail for lack of range.
        let _ = sample(&mut samples, route, seconds)
            .latency_us
            .add(&interval.histogram);
    }
    samples
}

/// A provenance field of both runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldPair {
    /// Field name, as in `summary.json`.
    pub field: String,
    /// The baseline's value.
    pub baseline: String,
    /// The run's value.
    pub run: String,
    /// Whether they are equal.
    pub same: bool,
}

/// One metric of one route, then and now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricChange {
    /// `p(50)`, `p(99)`, `p(99.9)`, `error_rate` or `throughput`.
    pub metric: String,
    /// Unit of the values: `ms`, `fraction` or `per_s`.
    pub unit: String,
    /// The baseline's value.
    pub baseline: f64,
    /// The run's value.
    pub run: f64,
    /// (run − baseline) / baseline × 100; `None` when the baseline is 0.
    pub change_pct: Option<f64>,
}

/// One route (or `all`), then and now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteChange {
    /// Route or operation name, or `all`.
    pub route: String,
    /// Requests in the baseline.
    pub baseline_requests: u64,
    /// Requests in the run.
    pub run_requests: u64,
    /// p50, p99, p99.9, error rate, throughput.
    pub metrics: Vec<MetricChange>,
}

/// A check's verdict then and now (`None`: the run did not have it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckChange {
    /// Check name.
    pub name: String,
    /// Its kind.
    pub kind: CheckKind,
    /// Passed in the baseline.
    pub baseline: Option<bool>,
    /// Passed in the run.
    pub run: Option<bool>,
}

/// A `--fail-on` expression evaluated on one route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The expression as given.
    pub expression: String,
    /// The route it was evaluated on.
    pub route: String,
    /// The metric's baseline value.
    pub baseline: f64,
    /// The metric's value in the run.
    pub run: f64,
    /// The change, as the expression compares it (e.g. `+12.5%`).
    pub change: String,
    /// Whether the regression threshold was crossed.
    pub crossed: bool,
}

/// Everything `meshsim diff` found: `diff.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunDiff {
    /// The baseline directory.
    pub baseline: String,
    /// The run directory.
    pub run: String,
    /// Same scenario hash, seed and meshsim version: the change is the
    /// code's or the environment's, not the input's.
    pub comparable: bool,
    /// Scenario hash, seed, mode, version, revision, platform of both.
    pub provenance: Vec<FieldPair>,
    /// Per route (operation), `all` first.
    pub routes: Vec<RouteChange>,
    /// Every check of either run.
    pub checks: Vec<CheckChange>,
    /// `--fail-on` results, one per expression and route.
    pub thresholds: Vec<ThresholdResult>,
    /// Fail when a threshold was crossed.
    pub verdict: Verdict,
}

/// The fields that make two runs comparable.
const COMPARABLE_FIELDS: [&str; 3] = ["scenario_sha256", "seed", "meshsim_version"];

/// Compares `run` with `baseline` (thresholds are the caller's: see
/// [`RunDiff::thresholds`]).
pub fn diff_runs(
    baseline_dir: &Path,
    baseline: &RunData,
    run_dir: &Path,
    run: &RunData,
) -> RunDiff {
    let provenance = provenance_pairs(baseline, run);
    let comparable = provenance
        .iter()
        .filter(|p| COMPARABLE_FIELDS.contains(&p.field.as_str()))
        .all(|p| p.same && !p.baseline.is_empty());
    let (then, now) = (route_samples(baseline), route_samples(run));
    let names: BTreeSet<&String> = then.keys().chain(now.keys()).collect();
    let mut names: Vec<&String> = names.into_iter().collect();
    names.sort_by(|a, b| (a.as_str() != ROUTE_ALL, a).cmp(&(b.as_str() != ROUTE_ALL, b)));
    let empty = RouteSample {
        latency_us: latency_histogram(),
        requests: 0,
        errors: 0,
        seconds: 0.0,
    };
    let routes = names
        .into_iter()
        .map(|name| {
            let a = then.get(name).unwrap_or(&empty);
            let b = now.get(name).unwrap_or(&empty);
            RouteChange {
                route: name.clone(),
                baseline_requests: a.requests,
                run_requests: b.requests,
                metrics: metric_changes(a, b),
            }
        })
        .collect();
    RunDiff {
        baseline: baseline_dir.display().to_string(),
        run: run_dir.display().to_string(),
        comparable,
        provenance,
        routes,
        checks: check_changes(baseline, run),
        thresholds: Vec::new(),
        verdict: Verdict::Pass,
    }
}

fn provenance_pairs(baseline: &RunData, run: &RunData) -> Vec<FieldPair> {
    let fields = |d: &RunData| {
        let (s, p) = (&d.summary, &d.summary.provenance);
        [
            ("scenario_sha256", p.scenario_sha256.clone()),
            ("seed", s.seed.to_string()),
            ("meshsim_version", p.meshsim_version.clone()),
            ("mode", s.mode.as_str().to_owned()),
            ("source_revision", p.source_revision.clone()),
            ("platform", p.platform.clone()),
        ]
    };
    fields(baseline)
        .into_iter()
        .zip(fields(run))
        .map(|((field, a), (_, b))| FieldPair {
            field: field.to_owned(),
            same: a == b,
            baseline: a,
            run: b,
        })
        .collect()
}

fn metric_changes(a: &RouteSample, b: &RouteSample) -> Vec<MetricChange> {
    let change = |metric: &str, unit: &str, then: f64, now: f64| MetricChange {
        metric: metric.to_owned(),
        unit: unit.to_owned(),
        baseline: then,
        run: now,
        change_pct: relative_change(then, now).map(|c| c * 100.0),
    };
    vec![
        change(
            "p(50)",
            "ms",
            a.latency_ms(Some(0.5)),
            b.latency_ms(Some(0.5)),
        ),
        change(
            "p(99)",
            "ms",
            a.latency_ms(Some(0.99)),
            b.latency_ms(Some(0.99)),
        ),
        change(
            "p(99.9)",
            "ms",
            a.latency_ms(Some(0.999)),
            b.latency_ms(Some(0.999)),
        ),
        change("error_rate", "fraction", a.error_rate(), b.error_rate()),
        change(
            "throughput",
            "per_s",
            a.throughput_per_s(),
            b.throughput_per_s(),
        ),
    ]
}

/// (now − then) / then; `None` when `then` is 0 (no finite change).
pub fn relative_change(then: f64, now: f64) -> Option<f64> {
    (then != 0.0 && then.is_finite() && now.is_finite()).then(|| (now - then) / then)
}

fn check_changes(baseline: &RunData, run: &RunData) -> Vec<CheckChange> {
    let mut changes: Vec<CheckChange> = baseline
        .summary
        .checks
        .iter()
        .map(|c| CheckChange {
            name: c.name.clone(),
            kind: c.kind,
            baseline: Some(c.passed),
            run: None,
        })
        .collect();
    for check in &run.summary.checks {
        match changes.iter_mut().find(|c| c.name == check.name) {
            Some(change) => change.run = Some(check.passed),
            None => changes.push(CheckChange {
                name: check.name.clone(),
                kind: check.kind,
                baseline: None,
                run: Some(check.passed),
            }),
        }
    }
    changes
}

impl RunDiff {
    /// The terminal table: provenance, routes, checks, thresholds.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "baseline  {}\nrun       {}", self.baseline, self.run);
        if self.comparable {
            let _ = writeln!(
                out,
                "comparable: same scenario (sha256), seed and meshsim version"
            );
        } else {
            let differ: Vec<String> = self
                .provenance
                .iter()
                .filter(|p| COMPARABLE_FIELDS.contains(&p.field.as_str()) && !p.same)
                .map(|p| {
                    format!(
                        "{} {} → {}",
                        p.field,
                        or_unknown(&p.baseline),
                        or_unknown(&p.run)
                    )
                })
                .collect();
            let _ = writeln!(out, "NOT COMPARABLE: {}", differ.join("; "));
        }
        let _ = writeln!(
            out,
            "\n{:<24} {:<12} {:>12} {:>12} {:>9}",
            "route", "metric", "baseline", "run", "change"
        );
        for route in &self.routes {
            for (i, m) in route.metrics.iter().enumerate() {
                let name = if i == 0 { route.route.as_str() } else { "" };
                let _ = writeln!(
                    out,
                    "{:<24} {:<12} {:>12} {:>12} {:>9}",
                    name,
                    m.metric,
                    format_value(m.baseline, &m.unit),
                    format_value(m.run, &m.unit),
                    format_change(m.change_pct)
                );
            }
        }
        let _ = writeln!(out, "\n{:<32} {:>8} {:>8}", "check", "baseline", "run");
        for check in &self.checks {
            let verdict = |v: Option<bool>| match v {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "-",
            };
            let _ = writeln!(
                out,
                "{:<32} {:>8} {:>8}",
                check.name,
                verdict(check.baseline),
                verdict(check.run)
            );
        }
        for t in self.thresholds.iter().filter(|t| t.crossed) {
            let _ = writeln!(
                out,
                "CROSSED  {}  on {}: {} (baseline {:.3}, run {:.3})",
                t.expression, t.route, t.change, t.baseline, t.run
            );
        }
        let crossed = self.thresholds.iter().filter(|t| t.crossed).count();
        let _ = writeln!(
            out,
            "\n{}: {crossed} of {} regression thresholds crossed",
            if self.verdict == Verdict::Pass {
                "PASS"
            } else {
                "FAIL"
            },
            self.thresholds.len()
        );
        out
    }
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() {
        "(unrecorded)"
    } else {
        text
    }
}

fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{value:.3}ms"),
        "fraction" => format!("{:.3}%", value * 100.0),
        _ => format!("{value:.1}/s"),
    }
}

fn format_change(change_pct: Option<f64>) -> String {
    change_pct.map_or_else(|| "n/a".to_owned(), |c| format!("{c:+.1}%"))
}

/// Writes `diff.json` and a `report.html` of the run with a "Compared with
/// the baseline" section into `dir`. Returns the paths written.
pub fn write_diff(dir: &Path, run: &RunData, diff: &RunDiff) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let json_path = dir.join(DIFF_JSON);
    let text =
        serde_json::to_string_pretty(diff).map_err(|e| ReportError::render(&json_path, e))?;
    crate::write_file(&json_path, text + "\n")?;
    let charts = crate::charts::run_charts(dir, run)?;
    let page = crate::html::render(run, &charts);
    let section = crate::html::diff_section(diff);
    let at = page.rfind("</body>").unwrap_or(page.len());
    let html_path = dir.join(crate::files::REPORT_HTML);
    crate::write_file(
        &html_path,
        format!("{}{section}{}", &page[..at], &page[at..]),
    )?;
    Ok(vec![json_path, html_path])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn merged_histograms_give_whole_run_percentiles() {
        let data = testdata::run();
        let samples = route_samples(&data);
        let all = &samples[ROUTE_ALL];
        // The intervals' histograms add up to the whole-run histogram, so
        // the p99 is the whole run's, not an average of interval p99s.
        assert_eq!(all.latency_us, data.overall);
        assert_eq!(
            all.latency_ms(Some(0.99)),
            data.overall.value_at_quantile(0.99) as f64 / 1000.0
        );
        for (route, histogram) in &data.per_route {
            assert_eq!(&samples[route].latency_us, histogram, "{route}");
        }
        assert!(all.throughput_per_s() > 0.0);
    }

    #[test]
    fn a_run_against_itself_changes_nothing() {
        let data = testdata::run();
        let dir = Path::new("same");
        let diff = diff_runs(dir, &data, dir, &data);
        assert!(diff.comparable);
        for route in &diff.routes {
            for m in &route.metrics {
                assert!(
                    m.change_pct.is_none_or(|c| c == 0.0),
                    "{} {}",
                    route.route,
                    m.metric
                );
            }
        }
        assert!(diff.checks.iter().all(|c| c.baseline == c.run));
        let mut other = data.clone();
        other.summary.seed += 1;
        let diff = diff_runs(dir, &data, dir, &other);
        assert!(!diff.comparable);
        assert!(
            diff.table().contains("NOT COMPARABLE: seed 42 → 43"),
            "{}",
            diff.table()
        );
    }

    #[test]
    fn write_diff_adds_a_section_to_the_report() {
        let data = testdata::run();
        let dir = testdata::temp_dir("diff");
        let diff = diff_runs(&dir, &data, &dir, &data);
        write_diff(&dir, &data, &diff).unwrap();
        let html = std::fs::read_to_string(dir.join(crate::files::REPORT_HTML)).unwrap();
        assert!(html.contains("Compared with the baseline"));
        assert!(html.trim_end().ends_with("</html>"));
        let back: RunDiff =
            serde_json::from_str(&std::fs::read_to_string(dir.join(DIFF_JSON)).unwrap()).unwrap();
        assert_eq!(back, diff);
    }
}
