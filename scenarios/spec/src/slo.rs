//! The threshold language, in the syntax k6 users know:
//! `p(99) < 250ms`, `avg < 100ms`, `max < 1s`, `error_rate < 0.1%`,
//! `availability > 99.9%`, `rate > 900/s`; and, for `meshsim diff
//! --fail-on`, the same metrics compared as a change against a baseline:
//! `p(99) > +10%` (relative), `p(99) > +20ms` or `error_rate > +0.5pp`
//! (absolute, in the metric's unit; `pp` = percentage points).

use std::fmt;
use std::str::FromStr;

/// What a threshold measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// A latency percentile, 0 < p < 100.
    Percentile(f64),
    /// Mean latency.
    Avg,
    /// Maximum latency.
    Max,
    /// Failed / total.
    ErrorRate,
    /// Ok / total.
    Availability,
    /// Completed requests per second.
    Rate,
}

/// The comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Metric {
    /// The metric's value for `counts` and a latency lookup (`quantile →
    /// ms`, `None` → mean), in its unit: ms, a fraction, or per second.
    pub fn measure(self, counts: Measured, latency_ms: impl Fn(Option<f64>) -> f64) -> f64 {
        let total = counts.total.max(1) as f64;
        match self {
            Metric::Percentile(p) => latency_ms(Some(p / 100.0)),
            Metric::Avg => latency_ms(None),
            Metric::Max => latency_ms(Some(1.0)),
            Metric::ErrorRate => counts.failed as f64 / total,
            Metric::Availability => (counts.total - counts.failed) as f64 / total,
            Metric::Rate => {
                (counts.total - counts.failed) as f64 / counts.window_s.max(f64::MIN_POSITIVE)
            }
        }
    }
}

impl Comparison {
    fn holds(self, measured: f64, bound: f64) -> bool {
        match self {
            Comparison::Lt => measured < bound,
            Comparison::Le => measured <= bound,
            Comparison::Gt => measured > bound,
            Comparison::Ge => measured >= bound,
        }
    }
}

/// A parsed threshold. Latencies are in ms, rates in fractions (0..1) or
/// requests per second.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub metric: Metric,
    /// How it is compared.
    pub comparison: Comparison,
    /// The bound, in the metric's unit.
    pub bound: f64,
    text: String,
}

/// Why a threshold did not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ThresholdError(String);

/// What a threshold is evaluated against.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    /// Requests in the window.
    pub total: u64,
    /// Failed requests.
    pub failed: u64,
    /// Length of the measured window, seconds.
    pub window_s: f64,
}

impl Threshold {
    /// Evaluates against `counts` and a latency lookup (`quantile → ms`,
    /// `None` → mean). Returns (passed, measured value in the metric's unit).
    pub fn evaluate(
        &self,
        counts: Measured,
        latency_ms: impl Fn(Option<f64>) -> f64,
    ) -> (bool, f64) {
        let measured = self.metric.measure(counts, latency_ms);
        // No traffic cannot prove a latency or availability objective.
        let passed = counts.total > 0 && self.comparison.holds(measured, self.bound);
        (passed, measured)
    }

    /// Formats a measured value in the metric's unit.
    pub fn format_measured(&self, value: f64) -> String {
        match self.metric {
            Metric::Percentile(_) | Metric::Avg | Metric::Max => format!("{value:.3}ms"),
            Metric::ErrorRate | Metric::Availability => format!("{:.4}%", value * 100.0),
            Metric::Rate => format!("{value:.1}/s"),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn err(message: impl Into<String>) -> ThresholdError {
    ThresholdError(message.into())
}

fn parse_metric(text: &str) -> Result<Metric, ThresholdError> {
    match text {
        "avg" => Ok(Metric::Avg),
        "max" => Ok(Metric::Max),
        "error_rate" => Ok(Metric::ErrorRate),
        "availability" => Ok(Metric::Availability),
        "rate" => Ok(Metric::Rate),
        _ => {
            let inner = text.strip_prefix("p(").and_then(|r| r.strip_suffix(')')).ok_or_else(|| {
                err(format!("unknown metric `{text}`; expected p(N), avg, max, error_rate, availability or rate"))
            })?;
            let p: f64 = inner
                .trim()
                .parse()
                .map_err(|_| err(format!("`{inner}` is not a percentile")))?;
            if p > 0.0 && p < 100.0 {
                Ok(Metric::Percentile(p))
            } else {
                Err(err(format!("percentile {p} is outside (0, 100)")))
            }
        }
    }
}

fn parse_bound(metric: Metric, text: &str) -> Result<f64, ThresholdError> {
    let number = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    match metric {
        Metric::Percentile(_) | Metric::Avg | Metric::Max => {
            let (value, scale) = if let Some(v) = text.strip_suffix("ms") {
                (v, 1.0)
            } else if let Some(v) = text.strip_suffix("us") {
                (v, 0.001)
            } else if let Some(v) = text.strip_suffix('s') {
                (v, 1000.0)
            } else {
                return Err(err(format!(
                    "latency bound `{text}` needs a unit: ms, s or us"
                )));
            };
            number(value)
                .map(|v| v * scale)
                .ok_or_else(|| err(format!("`{text}` is not a duration")))
        }
        Metric::ErrorRate | Metric::Availability => {
            let value = text.strip_suffix('%').ok_or_else(|| {
                err(format!(
                    "rate bound `{text}` must be a percentage, like 0.1%"
                ))
            })?;
            number(value)
                .filter(|v| *v <= 100.0)
                .map(|v| v / 100.0)
                .ok_or_else(|| err(format!("`{text}` is not a percentage")))
        }
        Metric::Rate => {
            let value = text
                .strip_suffix("/s")
                .ok_or_else(|| err(format!("throughput bound `{text}` must look like 900/s")))?;
            number(value).ok_or_else(|| err(format!("`{text}` is not a rate")))
        }
    }
}

/// How far a metric may move from its baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    /// A fraction of the baseline value: `+10%` is 0.10.
    Relative(f64),
    /// An amount in the metric's unit (ms, fraction, per second).
    Absolute(f64),
}

/// A regression threshold for `meshsim diff --fail-on`: the condition
/// that fails the comparison, e.g. `p(99) > +10%`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeThreshold {
    /// What is measured.
    pub metric: Metric,
    /// How the change is compared with the bound.
    pub comparison: Comparison,
    /// The bound on the change.
    pub change: Change,
    text: String,
}

impl ChangeThreshold {
    /// Whether the move from `baseline` to `run` crosses the threshold, and
    /// the change in the bound's terms (`+12.5%`, `+3.000ms`). A relative
    /// change from a baseline of 0 is infinite unless the run is 0 too.
    pub fn crossed(&self, baseline: f64, run: f64) -> (bool, String) {
        match self.change {
            Change::Relative(bound) => {
                let change = if baseline != 0.0 {
                    (run - baseline) / baseline
                } else if run == 0.0 {
                    0.0
                } else {
                    f64::INFINITY.copysign(run)
                };
                (
                    self.comparison.holds(change, bound),
                    format!("{:+.2}%", change * 100.0),
                )
            }
            Change::Absolute(bound) => {
                let change = run - baseline;
                let shown = match self.metric {
                    Metric::Percentile(_) | Metric::Avg | Metric::Max => {
                        format!("{change:+.3}ms")
                    }
                    Metric::ErrorRate | Metric::Availability => {
                        format!("{:+.4}pp", change * 100.0)
                    }
                    Metric::Rate => format!("{change:+.1}/s"),
                };
                (self.comparison.holds(change, bound), shown)
            }
        }
    }
}

impl fmt::Display for ChangeThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for ChangeThreshold {
    type Err = ThresholdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (metric_text, comparison, bound_text) = split_comparison(text)?;
        let metric = parse_metric(metric_text)?;
        let (sign, magnitude) = match bound_text.chars().next() {
            Some('+') => (1.0, &bound_text[1..]),
            Some('-') => (-1.0, &bound_text[1..]),
            _ => {
                return Err(err(format!(
                    "`{bound_text}` is not a change; expected a signed bound like +10% (relative) or +20ms (absolute)"
                )));
            }
        };
        let magnitude = magnitude.trim();
        let change = if let Some(points) = magnitude.strip_suffix("pp") {
            if !matches!(metric, Metric::ErrorRate | Metric::Availability) {
                return Err(err(format!(
                    "`{bound_text}`: percentage points (pp) apply to error_rate and availability"
                )));
            }
            let value = parse_bound(metric, &format!("{}%", points.trim()))?;
            Change::Absolute(sign * value)
        } else if let Some(percent) = magnitude.strip_suffix('%') {
            let value: f64 = percent
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| err(format!("`{bound_text}` is not a percentage change")))?;
            Change::Relative(sign * value / 100.0)
        } else {
            Change::Absolute(sign * parse_bound(metric, magnitude)?)
        };
        Ok(ChangeThreshold {
            metric,
            comparison,
            change,
            text: text.trim().to_owned(),
        })
    }
}

/// Splits `metric OP bound` at its comparison operator.
fn split_comparison(text: &str) -> Result<(&str, Comparison, &str), ThresholdError> {
    let ops = [
        ("<=", Comparison::Le),
        (">=", Comparison::Ge),
        ("<", Comparison::Lt),
        (">", Comparison::Gt),
    ];
    let (at, op_text, comparison) = ops
        .iter()
        .filter_map(|(op, cmp)| text.find(op).map(|at| (at, *op, *cmp)))
        .min_by_key(|(at, op, _)| (*at, usize::MAX - op.len()))
        .ok_or_else(|| {
            err(format!(
                "`{text}` has no comparison; expected e.g. `p(99) < 250ms`"
            ))
        })?;
    Ok((
        text[..at].trim(),
        comparison,
        text[at + op_text.len()..].trim(),
    ))
}

impl FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (metric, comparison, bound) = split_comparison(text)?;
        let metric = parse_metric(metric)?;
        let bound = parse_bound(metric, bound)?;
        Ok(Threshold {
            metric,
            comparison,
            bound,
            text: text.trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_k6_forms() {
        let t: Threshold = "p(99) < 250ms".parse().unwrap();
        assert_eq!(
            (t.metric, t.comparison, t.bound),
            (Metric::Percentile(99.0), Comparison::Lt, 250.0)
        );
        let t: Threshold = "p(99.9)<=1s".parse().unwrap();
        assert_eq!(
            (t.metric, t.comparison, t.bound),
            (Metric::Percentile(99.9), Comparison::Le, 1000.0)
        );
        let t: Threshold = "error_rate < 0.1%".parse().unwrap();
        assert!((t.bound - 0.001).abs() < 1e-12);
        let t: Threshold = "availability > 99.9%".parse().unwrap();
        assert_eq!(t.comparison, Comparison::Gt);
        let t: Threshold = "rate >= 900/s".parse().unwrap();
        assert_eq!((t.metric, t.bound), (Metric::Rate, 900.0));
        assert_eq!(
            "avg < 5ms".parse::<Threshold>().unwrap().metric,
            Metric::Avg
        );
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        for bad in [
            "p(101) < 1ms",
            "p(0) < 1ms",
            "p(99) < 250",
            "error_rate < 0.1",
            "latency < 1ms",
            "p(99) 250ms",
            "rate > 5",
            "error_rate < 200%",
        ] {
            let error = bad.parse::<Threshold>().unwrap_err();
            assert!(!error.0.is_empty(), "{bad}");
        }
    }

    #[test]
    fn change_thresholds_parse_and_cross() {
        let t: ChangeThreshold = "p(99) > +10%".parse().unwrap();
        assert_eq!(
            (t.metric, t.comparison, t.change),
            (
                Metric::Percentile(99.0),
                Comparison::Gt,
                Change::Relative(0.1)
            )
        );
        assert_eq!(t.crossed(100.0, 111.0), (true, "+11.00%".to_owned()));
        assert!(!t.crossed(100.0, 110.0).0);
        assert!(!t.crossed(100.0, 50.0).0);
        assert!(t.crossed(0.0, 1.0).0, "from zero, any rise is infinite");
        assert!(!t.crossed(0.0, 0.0).0);
        let t: ChangeThreshold = "p(99.9) >= +20ms".parse().unwrap();
        assert_eq!(t.change, Change::Absolute(20.0));
        assert_eq!(t.crossed(5.0, 25.0), (true, "+20.000ms".to_owned()));
        let t: ChangeThreshold = "error_rate > +0.5pp".parse().unwrap();
        assert_eq!(t.change, Change::Absolute(0.005));
        assert!(t.crossed(0.001, 0.01).0);
        let t: ChangeThreshold = "rate < -5%".parse().unwrap();
        assert!(t.crossed(1000.0, 900.0).0);
        assert!(!t.crossed(1000.0, 990.0).0);
        for bad in [
            "p(99) > 10%",
            "p(99) > +10",
            "avg > +1pp",
            "p(99) +10%",
            "p(99) > +x%",
        ] {
            assert!(bad.parse::<ChangeThreshold>().is_err(), "{bad}");
        }
    }

    #[test]
    fn evaluation_compares_in_the_metric_unit() {
        let t: Threshold = "p(99) < 250ms".parse().unwrap();
        let counts = Measured {
            total: 100,
            failed: 0,
            window_s: 10.0,
        };
        assert!(t.evaluate(counts, |_| 249.0).0);
        assert!(!t.evaluate(counts, |_| 251.0).0);
        let t: Threshold = "error_rate < 1%".parse().unwrap();
        assert!(
            !t.evaluate(
                Measured {
                    total: 100,
                    failed: 1,
                    window_s: 1.0
                },
                |_| 0.0
            )
            .0
        );
        assert!(
            !t.evaluate(Measured::default(), |_| 0.0).0,
            "no traffic proves nothing"
        );
    }
}
