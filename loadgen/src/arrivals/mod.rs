//! Seeded arrival processes: when each request is *meant* to start.
//!
//! Every process turns a phase length and a seeded RNG into the full list of
//! intended offsets, before anything is sent. Scenario files deserialize
//! [`Arrival`] directly (`arrival = { kind = "poisson", rate = 100 }`), so
//! every kind here is also a scenario-file kind. Fields added after
//! `constant`/`poisson` carry their unit in their name (`_per_s`, `_s`).

mod rate_curve;
mod trace;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

pub use trace::{TRACE_ROWS_MAX, TraceRow, TraceRows, parse_trace, read_trace_file};

use rate_curve::RateCurve;

/// Highest rate any process may ask for, requests per second: far beyond
/// what one generator can send, low enough that a typo cannot allocate a
/// schedule larger than memory.
pub const RATE_MAX_PER_S: f64 = 10_000_000.0;

/// Pieces a ramp or curve may have (a bound on a hand-written list).
pub const SHAPE_POINTS_MAX: usize = 10_000;

/// Why an arrival process is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArrivalError(pub String);

/// One stage of a ramp: the rate moves linearly to `target_rate_per_s`
/// over `duration_s` (k6's `ramping-arrival-rate` stages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampStage {
    /// Stage length, seconds.
    pub duration_s: f64,
    /// Rate at the end of the stage, requests per second.
    pub target_rate_per_s: f64,
}

/// One point of a rate curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatePoint {
    /// Time from the start of the phase, seconds.
    pub at_s: f64,
    /// Rate at that time, requests per second.
    pub rate_per_s: f64,
}

/// An arrival process. The serde shape is `tag = "kind"`, snake_case,
/// unknown fields rejected; values are validated (and trace files read)
/// when it is deserialized, so a scenario file's error points at it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ArrivalSpec", into = "ArrivalSpec")]
pub enum Arrival {
    /// Evenly spaced at `rate` requests per second, with a seeded phase.
    Constant {
        /// Requests per second.
        rate: f64,
    },
    /// Exponential inter-arrival times at `rate` requests per second
    /// (memoryless, like independent users).
    Poisson {
        /// Requests per second.
        rate: f64,
    },
    /// k6-style stages: the rate moves linearly from stage to stage and is
    /// held at the last target until the phase ends. Arrivals are evenly
    /// spaced along the ramp (as k6 does), with a seeded phase; for a
    /// Poisson ramp, give the same points to [`Arrival::Curve`].
    Ramp {
        /// Rate at the start of the first stage, requests per second.
        start_rate_per_s: f64,
        /// Stages, back to back.
        stages: Vec<RampStage>,
    },
    /// A time-varying Poisson process: the rate is linear between points
    /// and held flat outside them (two points at one time make a step);
    /// arrivals are drawn by thinning
    /// (Lewis–Shedler) a Poisson process at the peak rate.
    Curve {
        /// Points, `at_s` non-decreasing.
        points: Vec<RatePoint>,
    },
    /// A Markov-modulated Poisson process with two states: quiet at
    /// `base_rate_per_s` and bursting at `burst_rate_per_s`, each lasting an
    /// exponential time with the given mean. The first state is drawn from
    /// the stationary distribution, so the process is stationary from t=0.
    Bursts {
        /// Rate while quiet, requests per second.
        base_rate_per_s: f64,
        /// Rate while bursting, requests per second.
        burst_rate_per_s: f64,
        /// Mean length of a quiet spell, seconds.
        base_dwell_mean_s: f64,
        /// Mean length of a burst, seconds.
        burst_dwell_mean_s: f64,
    },
    /// Replays a CSV trace with header `offset_ms,operation` (or
    /// `offset_s`/`offset_us`); each row's operation must be in the mix.
    /// Rows past the phase end are not sent.
    Trace {
        /// Where the trace was read from.
        path: PathBuf,
        /// Its rows, read when the process was built.
        rows: TraceRows,
    },
}

impl Arrival {
    /// The same process at `factor` times the rate (a capacity search scales
    /// load this way). Each kind says how it scales, so a new kind cannot be
    /// forgotten. With the same seed a scaled Poisson schedule is the
    /// original one compressed in time: common random numbers across steps.
    /// A trace is replayed as recorded: its rate is the trace's.
    pub fn scaled(&self, factor: f64) -> Arrival {
        let scale = |rate: &f64| rate * factor;
        match self {
            Arrival::Constant { rate } => Arrival::Constant { rate: scale(rate) },
            Arrival::Poisson { rate } => Arrival::Poisson { rate: scale(rate) },
            Arrival::Ramp {
                start_rate_per_s,
                stages,
            } => Arrival::Ramp {
                start_rate_per_s: scale(start_rate_per_s),
                stages: stages
                    .iter()
                    .map(|s| RampStage {
                        duration_s: s.duration_s,
                        target_rate_per_s: scale(&s.target_rate_per_s),
                    })
                    .collect(),
            },
            Arrival::Curve { points } => Arrival::Curve {
                points: points
                    .iter()
                    .map(|p| RatePoint {
                        at_s: p.at_s,
                        rate_per_s: scale(&p.rate_per_s),
                    })
                    .collect(),
            },
            Arrival::Bursts {
                base_rate_per_s,
                burst_rate_per_s,
                base_dwell_mean_s,
                burst_dwell_mean_s,
            } => Arrival::Bursts {
                base_rate_per_s: scale(base_rate_per_s),
                burst_rate_per_s: scale(burst_rate_per_s),
                base_dwell_mean_s: *base_dwell_mean_s,
                burst_dwell_mean_s: *burst_dwell_mean_s,
            },
            Arrival::Trace { .. } => self.clone(),
        }
    }
}

/// The serde shape of [`Arrival`] (a trace is just its path here).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ArrivalSpec {
    Constant {
        rate: f64,
    },
    Poisson {
        rate: f64,
    },
    Ramp {
        #[serde(default)]
        start_rate_per_s: f64,
        stages: Vec<RampStage>,
    },
    Curve {
        points: Vec<RatePoint>,
    },
    Bursts {
        base_rate_per_s: f64,
        burst_rate_per_s: f64,
        base_dwell_mean_s: f64,
        burst_dwell_mean_s: f64,
    },
    Trace {
        path: PathBuf,
    },
}

impl TryFrom<ArrivalSpec> for Arrival {
    type Error = ArrivalError;

    fn try_from(spec: ArrivalSpec) -> Result<Self, Self::Error> {
        let arrival = match spec {
            ArrivalSpec::Constant { rate } => Arrival::Constant { rate },
            ArrivalSpec::Poisson { rate } => Arrival::Poisson { rate },
            ArrivalSpec::Ramp {
                start_rate_per_s,
                stages,
            } => Arrival::Ramp {
                start_rate_per_s,
                stages,
            },
            ArrivalSpec::Curve { points } => Arrival::Curve { points },
            ArrivalSpec::Bursts {
                base_rate_per_s,
                burst_rate_per_s,
                base_dwell_mean_s,
                burst_dwell_mean_s,
            } => Arrival::Bursts {
                base_rate_per_s,
                burst_rate_per_s,
                base_dwell_mean_s,
                burst_dwell_mean_s,
            },
            ArrivalSpec::Trace { path } => Arrival::trace_file(&path)?,
        };
        arrival.validate()?;
        Ok(arrival)
    }
}

impl From<Arrival> for ArrivalSpec {
    fn from(arrival: Arrival) -> Self {
        match arrival {
            Arrival::Constant { rate } => ArrivalSpec::Constant { rate },
            Arrival::Poisson { rate } => ArrivalSpec::Poisson { rate },
            Arrival::Ramp {
                start_rate_per_s,
                stages,
            } => ArrivalSpec::Ramp {
                start_rate_per_s,
                stages,
            },
            Arrival::Curve { points } => ArrivalSpec::Curve { points },
            Arrival::Bursts {
                base_rate_per_s,
                burst_rate_per_s,
                base_dwell_mean_s,
                burst_dwell_mean_s,
            } => ArrivalSpec::Bursts {
                base_rate_per_s,
                burst_rate_per_s,
                base_dwell_mean_s,
                burst_dwell_mean_s,
            },
            Arrival::Trace { path, .. } => ArrivalSpec::Trace { path },
        }
    }
}

/// `zero_ok`: a ramp or curve may pass through 0; a flat rate may not.
fn check_rate(what: &str, rate: f64, zero_ok: bool) -> Result<(), ArrivalError> {
    let positive = rate > 0.0 || (zero_ok && rate == 0.0);
    if rate.is_finite() && positive && rate <= RATE_MAX_PER_S {
        Ok(())
    } else {
        Err(ArrivalError(format!(
            "{what} is {rate}; expected a positive number of requests per second{}, at most {RATE_MAX_PER_S}",
            if zero_ok { " (or 0)" } else { "" }
        )))
    }
}

fn check_seconds(what: &str, seconds: f64, zero_ok: bool) -> Result<(), ArrivalError> {
    let positive = seconds > 0.0 || (zero_ok && seconds == 0.0);
    if seconds.is_finite() && positive && seconds < 1e9 {
        Ok(())
    } else {
        Err(ArrivalError(format!(
            "{what} is {seconds}; expected a {}number of seconds",
            if zero_ok {
                "non-negative "
            } else {
                "positive "
            }
        )))
    }
}

impl Arrival {
    /// Reads a trace replay from `path` (see [`Arrival::Trace`]).
    pub fn trace_file(path: &Path) -> Result<Arrival, ArrivalError> {
        Ok(Arrival::Trace {
            path: path.to_owned(),
            rows: read_trace_file(path)?,
        })
    }

    /// The highest rate the process asks for, requests per second: the
    /// rate of `constant` and `poisson`, the peak of a ramp or curve, the
    /// burst rate, or a trace's busiest second. The pool is sized from it.
    pub fn rate(&self) -> f64 {
        match self {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => *rate,
            Arrival::Ramp { .. } | Arrival::Curve { .. } => {
                self.rate_curve().map_or(0.0, |c| c.peak_per_s())
            }
            Arrival::Bursts {
                base_rate_per_s,
                burst_rate_per_s,
                ..
            } => base_rate_per_s.max(*burst_rate_per_s),
            Arrival::Trace { rows, .. } => rows.peak_per_s(),
        }
    }

    /// The rate averaged over a phase of length `duration`, requests per
    /// second (the expectation for the random kinds).
    pub fn mean_rate_per_s(&self, duration: Duration) -> f64 {
        let length_s = duration.as_secs_f64();
        if length_s <= 0.0 {
            return 0.0;
        }
        match self {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => *rate,
            Arrival::Ramp { .. } | Arrival::Curve { .. } => self
                .rate_curve()
                .map_or(0.0, |c| c.area_between(0.0, length_s) / length_s),
            Arrival::Bursts {
                base_rate_per_s,
                burst_rate_per_s,
                base_dwell_mean_s,
                burst_dwell_mean_s,
            } => {
                (base_rate_per_s * base_dwell_mean_s + burst_rate_per_s * burst_dwell_mean_s)
                    / (base_dwell_mean_s + burst_dwell_mean_s)
            }
            Arrival::Trace { rows, .. } => {
                rows.rows().iter().filter(|r| r.offset < duration).count() as f64 / length_s
            }
        }
    }

    /// Checks every field; the message names the field and its unit.
    pub fn validate(&self) -> Result<(), ArrivalError> {
        match self {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => {
                check_rate("the arrival rate", *rate, false)?
            }
            Arrival::Ramp {
                start_rate_per_s,
                stages,
            } => {
                check_rate("start_rate_per_s", *start_rate_per_s, true)?;
                check_count("stages", stages.len())?;
                for (i, stage) in stages.iter().enumerate() {
                    check_seconds(&format!("stages[{i}].duration_s"), stage.duration_s, true)?;
                    check_rate(
                        &format!("stages[{i}].target_rate_per_s"),
                        stage.target_rate_per_s,
                        true,
                    )?;
                }
            }
            Arrival::Curve { points } => {
                check_count("points", points.len())?;
                for (i, point) in points.iter().enumerate() {
                    check_seconds(&format!("points[{i}].at_s"), point.at_s, true)?;
                    check_rate(&format!("points[{i}].rate_per_s"), point.rate_per_s, true)?;
                    if i > 0 && point.at_s < points[i - 1].at_s {
                        return Err(ArrivalError(format!(
                            "points[{i}].at_s is {}; expected it at or after points[{}].at_s = {}",
                            point.at_s,
                            i - 1,
                            points[i - 1].at_s
                        )));
                    }
                }
            }
            Arrival::Bursts {
                base_rate_per_s,
                burst_rate_per_s,
                base_dwell_mean_s,
                burst_dwell_mean_s,
            } => {
                check_rate("base_rate_per_s", *base_rate_per_s, true)?;
                check_rate("burst_rate_per_s", *burst_rate_per_s, true)?;
                check_seconds("base_dwell_mean_s", *base_dwell_mean_s, false)?;
                check_seconds("burst_dwell_mean_s", *burst_dwell_mean_s, false)?;
            }
            Arrival::Trace { .. } => {}
        }
        let peak = self.rate();
        if peak > 0.0 {
            Ok(())
        } else {
            Err(ArrivalError(format!(
                "the {} arrival never asks for a request (peak rate {peak}); expected a positive number of requests per second",
                self.kind()
            )))
        }
    }

    /// The `kind` name used in scenario files.
    pub fn kind(&self) -> &'static str {
        match self {
            Arrival::Constant { .. } => "constant",
            Arrival::Poisson { .. } => "poisson",
            Arrival::Ramp { .. } => "ramp",
            Arrival::Curve { .. } => "curve",
            Arrival::Bursts { .. } => "bursts",
            Arrival::Trace { .. } => "trace",
        }
    }

    /// A trace's rows; `None` for the generated kinds.
    pub fn trace_rows(&self) -> Option<&TraceRows> {
        match self {
            Arrival::Trace { rows, .. } => Some(rows),
            _ => None,
        }
    }

    fn rate_curve(&self) -> Option<RateCurve> {
        match self {
            Arrival::Ramp {
                start_rate_per_s,
                stages,
            } => {
                let mut points = vec![(0.0, *start_rate_per_s)];
                let mut at_s = 0.0;
                for stage in stages {
                    // A zero-length stage lands on the previous point's
                    // time: a step.
                    at_s += stage.duration_s;
                    points.push((at_s, stage.target_rate_per_s));
                }
                Some(RateCurve::new(&points))
            }
            Arrival::Curve { points } => Some(RateCurve::new(
                &points
                    .iter()
                    .map(|p| (p.at_s, p.rate_per_s))
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        }
    }

    /// Intended offsets in `[0, duration)`, drawn from `rng`. An invalid
    /// process (see [`Arrival::validate`]) yields no arrivals.
    pub fn schedule(&self, duration: Duration, rng: &mut ChaCha12Rng) -> Vec<Duration> {
        if self.validate().is_err() {
            return Vec::new();
        }
        let end_s = duration.as_secs_f64();
        let expected = (self.mean_rate_per_s(duration) * end_s * 1.01) as usize + 16;
        let mut offsets_s = Vec::with_capacity(expected.min(1 << 24));
        match self {
            Arrival::Constant { rate } => {
                evenly_spaced(&RateCurve::new(&[(0.0, *rate)]), end_s, rng, &mut offsets_s)
            }
            Arrival::Poisson { rate } => poisson(*rate, 0.0, end_s, rng, &mut offsets_s),
            Arrival::Ramp { .. } => {
                let curve = self.rate_curve().expect("a ramp has a curve");
                evenly_spaced(&curve, end_s, rng, &mut offsets_s)
            }
            Arrival::Curve { .. } => {
                let curve = self.rate_curve().expect("a curve has a curve");
                thinned(&curve, end_s, rng, &mut offsets_s)
            }
            Arrival::Bursts {
                base_rate_per_s,
                burst_rate_per_s,
                base_dwell_mean_s,
                burst_dwell_mean_s,
            } => bursts(
                [*base_rate_per_s, *burst_rate_per_s],
                [*base_dwell_mean_s, *burst_dwell_mean_s],
                end_s,
                rng,
                &mut offsets_s,
            ),
            Arrival::Trace { rows, .. } => {
                return rows
                    .rows()
                    .iter()
                    .map(|r| r.offset)
                    .take_while(|o| *o < duration)
                    .collect();
            }
        }
        offsets_s
            .into_iter()
            .map(Duration::from_secs_f64)
            .filter(|o| *o < duration)
            .collect()
    }
}

fn check_count(what: &str, count: usize) -> Result<(), ArrivalError> {
    if (1..=SHAPE_POINTS_MAX).contains(&count) {
        Ok(())
    } else {
        Err(ArrivalError(format!(
            "{what} has {count} entries; expected 1 to {SHAPE_POINTS_MAX}"
        )))
    }
}

/// Arrival `k` lands where the cumulative rate reaches `k + φ`, with a
/// seeded phase φ ∈ [0, 1): exact counts for any rate shape, and two
/// constant streams with different seeds do not align.
fn evenly_spaced(curve: &RateCurve, end_s: f64, rng: &mut ChaCha12Rng, out: &mut Vec<f64>) {
    let mut next_area = rng.random_range(0.0..1.0);
    let mut area_before = 0.0;
    for segment in curve.segments(end_s) {
        let area = segment.area();
        while next_area < area_before + area {
            let t_s = segment.start_s + segment.time_to_area_s(next_area - area_before);
            if t_s < end_s {
                out.push(t_s);
            }
            next_area += 1.0;
        }
        area_before += area;
    }
}

/// A homogeneous Poisson process at `rate` over `[from_s, to_s)`.
fn poisson(rate: f64, from_s: f64, to_s: f64, rng: &mut ChaCha12Rng, out: &mut Vec<f64>) {
    if rate <= 0.0 {
        return;
    }
    let mut t_s = from_s;
    loop {
        t_s += seam::math::exponential(rng, rate);
        if t_s >= to_s {
            return;
        }
        out.push(t_s);
    }
}

/// Lewis–Shedler thinning: candidates at the peak rate, each kept with
/// probability rate(t) / peak, give a Poisson process with rate(t).
fn thinned(curve: &RateCurve, end_s: f64, rng: &mut ChaCha12Rng, out: &mut Vec<f64>) {
    let peak = curve.peak_per_s();
    if !(peak > 0.0 && peak.is_finite()) {
        return;
    }
    let mut t_s = 0.0;
    loop {
        t_s += seam::math::exponential(rng, peak);
        if t_s >= end_s {
            return;
        }
        if rng.random::<f64>() * peak < curve.rate_at(t_s) {
            out.push(t_s);
        }
    }
}

/// Two-state MMPP. Exponential spells are memoryless, so at each switch
/// the Poisson stream simply restarts at the new state's rate.
fn bursts(
    rates_per_s: [f64; 2],
    dwell_means_s: [f64; 2],
    end_s: f64,
    rng: &mut ChaCha12Rng,
    out: &mut Vec<f64>,
) {
    let burst_share = dwell_means_s[1] / (dwell_means_s[0] + dwell_means_s[1]);
    let mut state = usize::from(rng.random::<f64>() < burst_share);
    let mut spell_start_s = 0.0;
    while spell_start_s < end_s {
        let spell_end_s =
            (spell_start_s + seam::math::exponential(rng, 1.0 / dwell_means_s[state])).min(end_s);
        poisson(rates_per_s[state], spell_start_s, spell_end_s, rng, out);
        spell_start_s = spell_end_s;
        state = 1 - state;
    }
}

#[cfg(test)]
mod tests;
