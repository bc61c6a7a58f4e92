//! Distributions of service times and sizes: the one model that the REC
//! apps' capacity model and the synthetic service draw from, that
//! scenarios write, and that `meshsim calibrate` fits.
//!
//! Sampling is meshsim's own, over `seam::math` and the caller's seeded
//! ChaCha stream, never `rand_distr`: its float functions call the
//! platform's libm, so a seed would draw different service times on another
//! platform. Every family draws a fixed, documented number of uniforms per
//! sample except gamma (a rejection sampler), which is still a pure function
//! of the stream.
//!
//! Values are in a base unit: seconds for durations ([`ServiceTime`]),
//! bytes for sizes ([`Size`]). `mu` and `sigma` of a lognormal are those of
//! ln(milliseconds) for durations and ln(bytes) for sizes, the units people
//! read latencies in.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use seam::math;
use serde::Deserialize;
use toml::Spanned;

use super::Dur;

mod empirical;
pub mod fit;

pub use empirical::{Points, Unit, read_points};

/// z such that Φ(z) = 0.99: how a lognormal's p99 relates to its median.
const Z_P99: f64 = 2.326_347_874_040_840_8;

/// A family with its parameters, in the base unit.
#[derive(Clone, Debug, PartialEq)]
pub enum Family {
    /// Always `value`.
    Constant { value: f64 },
    /// Exponential with `mean`.
    Exponential { mean: f64 },
    /// exp(N(mu, sigma²)), mu of ln(base unit).
    Lognormal { mu: f64, sigma: f64 },
    /// Gamma with `shape` k and `scale` θ (mean kθ, cv 1/√k).
    Gamma { shape: f64, scale: f64 },
    /// Pareto (type I): `min` · U^(−1/shape), a power-law tail.
    Pareto { min: f64, shape: f64 },
    /// Uniform on [min, max].
    Uniform { min: f64, max: f64 },
    /// The inverse CDF of measured points.
    Empirical(Arc<Points>),
}

/// A distribution as a scenario wrote it: the family, and for an empirical
/// one the file it names (read when the scenario is loaded).
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    /// The family and parameters (an empirical family is empty until
    /// [`Distribution::load`] reads its file).
    pub family: Family,
    /// The empirical file as written, with its place in the scenario.
    pub file: Option<Spanned<String>>,
}

impl Distribution {
    /// A distribution with no file.
    pub fn new(family: Family) -> Self {
        Distribution { family, file: None }
    }

    /// One draw, from `rng`.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match &self.family {
            Family::Constant { value } => *value,
            Family::Exponential { mean } => mean * standard_exponential(rng),
            Family::Lognormal { mu, sigma } => math::exp(mu + sigma * standard_normal(rng)),
            Family::Gamma { shape, scale } => scale * standard_gamma(*shape, rng),
            // 1 − u is in (0, 1], so the power is finite.
            Family::Pareto { min, shape } => {
                min * math::powf(1.0 - rng.random::<f64>(), -1.0 / shape)
            }
            Family::Uniform { min, max } => min + (max - min) * rng.random::<f64>(),
            Family::Empirical(points) => points.quantile(rng.random()),
        }
    }

    /// One draw as a duration (values in seconds).
    pub fn sample_duration(&self, rng: &mut impl Rng) -> Duration {
        Duration::try_from_secs_f64(self.sample(rng).max(0.0)).unwrap_or(Duration::MAX)
    }

    /// The mean.
    pub fn mean(&self) -> f64 {
        match &self.family {
            Family::Constant { value } => *value,
            Family::Exponential { mean } => *mean,
            Family::Lognormal { mu, sigma } => math::exp(mu + sigma * sigma / 2.0),
            Family::Gamma { shape, scale } => shape * scale,
            Family::Pareto { min, shape } => shape * min / (shape - 1.0),
            Family::Uniform { min, max } => (min + max) / 2.0,
            Family::Empirical(points) => points.mean(),
        }
    }

    /// The `p`-quantile (0 ≤ p < 1). Gamma's has no closed form and is
    /// found by bisection on its CDF.
    pub fn quantile(&self, p: f64) -> f64 {
        match &self.family {
            Family::Constant { value } => *value,
            Family::Exponential { mean } => -mean * math::ln(1.0 - p),
            Family::Lognormal { mu, sigma } => math::exp(mu + sigma * normal_quantile(p)),
            Family::Gamma { shape, scale } => scale * gamma_quantile(*shape, p),
            Family::Pareto { min, shape } => min * math::powf(1.0 - p, -1.0 / shape),
            Family::Uniform { min, max } => min + (max - min) * p,
            Family::Empirical(points) => points.quantile(p),
        }
    }

    /// The family's name as a scenario writes it.
    pub fn kind(&self) -> &'static str {
        match self.family {
            Family::Constant { .. } => "constant",
            Family::Exponential { .. } => "exponential",
            Family::Lognormal { .. } => "lognormal",
            Family::Gamma { .. } => "gamma",
            Family::Pareto { .. } => "pareto",
            Family::Uniform { .. } => "uniform",
            Family::Empirical(_) => "empirical",
        }
    }

    /// Reads an empirical distribution's file, relative to `base` (the
    /// scenario's directory). On failure: where the file is named, and why.
    /// Reads an empirical distribution's file (relative to `base`), and
    /// records its path in `inputs` (what the scenario's hash covers).
    pub fn load(
        &mut self,
        base: &Path,
        unit: Unit,
        inputs: &mut std::collections::BTreeSet<std::path::PathBuf>,
    ) -> Result<(), (Range<usize>, String)> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let path = base.join(file.get_ref());
        let points = read_points(&path, unit).map_err(|message| (file.span(), message))?;
        inputs.insert(path);
        self.family = Family::Empirical(Arc::new(points));
        Ok(())
    }
}

/// Exp(1) by inversion: one uniform.
fn standard_exponential(rng: &mut impl Rng) -> f64 {
    -math::ln(1.0 - rng.random::<f64>())
}

/// N(0, 1) by Box–Muller: two uniforms (the sine half is not kept, so every
/// draw costs the same).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let radius = (-2.0 * math::ln(1.0 - rng.random::<f64>())).sqrt();
    radius * math::cos(std::f64::consts::TAU * rng.random::<f64>())
}

/// Gamma(k, 1) by Marsaglia and Tsang (2000); k < 1 by boosting to k + 1.
fn standard_gamma(shape: f64, rng: &mut impl Rng) -> f64 {
    if shape < 1.0 {
        let boost = math::powf(1.0 - rng.random::<f64>(), 1.0 / shape);
        return standard_gamma(shape + 1.0, rng) * boost;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = 1.0 - rng.random::<f64>();
        if math::ln(u) < 0.5 * x * x + d - d * v + d * math::ln(v) {
            return d * v;
        }
    }
}

/// Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + math::erf(x / std::f64::consts::SQRT_2))
}

/// Φ⁻¹(p) by bisection on [`normal_cdf`]: exact to the last bits that
/// matter here, and no second approximation to trust.
pub fn normal_quantile(p: f64) -> f64 {
    bisect(|x| normal_cdf(x) - p, -40.0, 40.0)
}

/// The regularized lower incomplete gamma P(k, x), by its series (x < k + 1)
/// or continued fraction (Numerical Recipes §6.2).
fn gamma_cdf(shape: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let log_prefix = shape * math::ln(x) - x - math::ln_gamma(shape);
    if x < shape + 1.0 {
        let (mut term, mut sum, mut a) = (1.0 / shape, 1.0 / shape, shape);
        for _ in 0..10_000 {
            a += 1.0;
            term *= x / a;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        sum * math::exp(log_prefix)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - shape;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - shape);
            b += 2.0;
            d = an * d + b;
            d = if d.abs() < tiny { tiny } else { d };
            c = b + an / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            let step = d * c;
            h *= step;
            if (step - 1.0).abs() < 1e-15 {
                break;
            }
        }
        1.0 - math::exp(log_prefix) * h
    }
}

fn gamma_quantile(shape: f64, p: f64) -> f64 {
    let mut high = shape.max(1.0);
    while gamma_cdf(shape, high) < p {
        high *= 2.0;
    }
    bisect(|x| gamma_cdf(shape, x) - p, 0.0, high)
}

/// The root of an increasing `f` on [low, high].
fn bisect(f: impl Fn(f64) -> f64, mut low: f64, mut high: f64) -> f64 {
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if f(mid) < 0.0 {
            low = mid;
        } else {
            high = mid;
        }
    }
    0.5 * (low + high)
}

/// The family names a scenario writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Constant,
    Exponential,
    Lognormal,
    Gamma,
    Pareto,
    Uniform,
    Empirical,
}

/// A value a distribution is written in: a duration or a byte count.
pub trait Quantity: Copy {
    /// The value in the base unit.
    fn base(self) -> f64;
    /// ln(written unit of `mu`) − ln(base unit): ln(1 ms / 1 s) for durations.
    fn ln_mu_unit() -> f64;
}

impl Quantity for Dur {
    fn base(self) -> f64 {
        self.0.as_secs_f64()
    }
    fn ln_mu_unit() -> f64 {
        math::ln(1e-3)
    }
}

impl Quantity for u64 {
    fn base(self) -> f64 {
        self as f64
    }
    fn ln_mu_unit() -> f64 {
        0.0
    }
}

/// The table a scenario writes, every parameter optional until the family
/// says which it needs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDistribution<V> {
    /// The family.
    pub distribution: Kind,
    /// Mean (constant, exponential, gamma).
    pub mean: Option<V>,
    /// Median (lognormal, with `p99`).
    pub median: Option<V>,
    /// 99th percentile (lognormal, with `median`).
    pub p99: Option<V>,
    /// Lower bound (uniform) or scale (pareto).
    pub min: Option<V>,
    /// Upper bound (uniform).
    pub max: Option<V>,
    /// Lognormal location, of ln(milliseconds) or ln(bytes).
    pub mu: Option<f64>,
    /// Lognormal shape.
    pub sigma: Option<f64>,
    /// Coefficient of variation (gamma).
    pub cv: Option<f64>,
    /// Tail index (pareto), above 1 so the mean exists.
    pub shape: Option<f64>,
    /// Empirical file: `.hlog`, `.csv` or Prometheus text (`.prom`, `.txt`).
    pub file: Option<Spanned<String>>,
}

impl<V: Quantity> RawDistribution<V> {
    fn given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        for (name, set) in [
            ("mean", self.mean.is_some()),
            ("median", self.median.is_some()),
            ("p99", self.p99.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("mu", self.mu.is_some()),
            ("sigma", self.sigma.is_some()),
            ("cv", self.cv.is_some()),
            ("shape", self.shape.is_some()),
            ("file", self.file.is_some()),
        ] {
            if set {
                given.push(name);
            }
        }
        given
    }

    /// The family, or what is wrong with the table.
    pub fn resolve(self) -> Result<Distribution, String> {
        let kind = self.distribution;
        let need = |what: Option<V>, name: &str| {
            what.map(V::base)
                .ok_or_else(|| format!("a {kind:?} distribution needs `{name}`").to_lowercase())
        };
        let positive = |value: f64, name: &str| {
            if value.is_finite() && value > 0.0 {
                Ok(value)
            } else {
                Err(format!(
                    "`{name}` must be positive and finite (got {value})"
                ))
            }
        };
        let (family, allowed): (Family, &[&str]) = match kind {
            Kind::Constant => (
                Family::Constant {
                    value: need(self.mean, "mean")?,
                },
                &["mean"],
            ),
            Kind::Exponential => (
                Family::Exponential {
                    mean: positive(need(self.mean, "mean")?, "mean")?,
                },
                &["mean"],
            ),
            Kind::Lognormal => {
                if let (Some(median), Some(p99)) = (self.median, self.p99) {
                    let (median, p99) = (median.base(), p99.base());
                    if !(median > 0.0 && p99 > median) {
                        return Err(format!(
                            "a lognormal needs 0 < median < p99 (got median {median}, p99 {p99}; seconds for durations)"
                        ));
                    }
                    let mu = math::ln(median);
                    let sigma = (math::ln(p99) - mu) / Z_P99;
                    (Family::Lognormal { mu, sigma }, &["median", "p99"])
                } else if let (Some(mu), Some(sigma)) = (self.mu, self.sigma) {
                    if !mu.is_finite() {
                        return Err(format!("`mu` must be finite (got {mu})"));
                    }
                    let sigma = positive(sigma, "sigma")?;
                    let mu = mu + V::ln_mu_unit();
                    (Family::Lognormal { mu, sigma }, &["mu", "sigma"])
                } else {
                    return Err(
                        "a lognormal needs `median` and `p99`, or `mu` and `sigma`".to_owned()
                    );
                }
            }
            Kind::Gamma => {
                let mean = positive(need(self.mean, "mean")?, "mean")?;
                let cv = positive(
                    self.cv
                        .ok_or("a gamma distribution needs `mean` and `cv`")?,
                    "cv",
                )?;
                let shape = 1.0 / (cv * cv);
                (
                    Family::Gamma {
                        shape,
                        scale: mean / shape,
                    },
                    &["mean", "cv"],
                )
            }
            Kind::Pareto => {
                let min = positive(need(self.min, "min")?, "min")?;
                let shape = self
                    .shape
                    .ok_or("a pareto distribution needs `min` and `shape`")?;
                if !(shape.is_finite() && shape > 1.0) {
                    return Err(format!(
                        "a pareto `shape` must be above 1, or its mean is infinite (got {shape})"
                    ));
                }
                (Family::Pareto { min, shape }, &["min", "shape"])
            }
            Kind::Uniform => {
                let min = need(self.min, "min")?;
                let max = need(self.max, "max")?;
                if !(min >= 0.0 && max >= min) {
                    return Err(format!(
                        "a uniform needs 0 <= min <= max (got {min} and {max})"
                    ));
                }
                (Family::Uniform { min, max }, &["min", "max"])
            }
            Kind::Empirical => {
                if self.file.is_none() {
                    return Err(
                        "an empirical distribution needs `file` (.hlog, .csv or Prometheus text)"
                            .to_owned(),
                    );
                }
                (Family::Empirical(Arc::new(Points::default())), &["file"])
            }
        };
        if let Some(extra) = self.given().into_iter().find(|g| !allowed.contains(g)) {
            return Err(format!(
                "`{extra}` does not apply to a {} distribution; it takes {}",
                format!("{kind:?}").to_lowercase(),
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        Ok(Distribution {
            family,
            file: self.file,
        })
    }
}

/// A service time: durations (`"10ms"`), values in seconds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RawDistribution<Dur>")]
pub struct ServiceTime(pub Distribution);

impl TryFrom<RawDistribution<Dur>> for ServiceTime {
    type Error = String;
    fn try_from(raw: RawDistribution<Dur>) -> Result<Self, String> {
        raw.resolve().map(ServiceTime)
    }
}

/// A size in bytes (plain integers).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RawDistribution<u64>")]
pub struct Size(pub Distribution);

impl TryFrom<RawDistribution<u64>> for Size {
    type Error = String;
    fn try_from(raw: RawDistribution<u64>) -> Result<Self, String> {
        raw.resolve().map(Size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    const N: usize = 400_000;

    fn service_time(text: &str) -> Result<Distribution, String> {
        #[derive(Deserialize)]
        struct Wrap {
            t: ServiceTime,
        }
        toml::from_str::<Wrap>(&format!("t = {text}"))
            .map(|w| w.t.0)
            .map_err(|e| e.message().to_owned())
    }

    fn draws(d: &Distribution) -> Vec<f64> {
        let mut rng = ChaCha12Rng::seed_from_u64(7);
        let mut v: Vec<f64> = (0..N).map(|_| d.sample(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn close(measured: f64, expected: f64, tolerance: f64, what: &str) {
        let error = (measured - expected).abs() / expected;
        assert!(
            error < tolerance,
            "{what}: measured {measured}, theory {expected} ({:.2} %)",
            error * 100.0
        );
    }

    /// Sample mean and quantiles against the closed forms (and, for gamma,
    /// against the CDF the bisection inverts).
    fn agrees_with_theory(text: &str, expected_mean_s: f64) {
        let d = service_time(text).unwrap();
        close(
            d.mean(),
            expected_mean_s,
            1e-9,
            &format!("{text} mean formula"),
        );
        let v = draws(&d);
        let mean = v.iter().sum::<f64>() / N as f64;
        close(mean, d.mean(), 0.01, &format!("{text} sample mean"));
        for p in [0.5, 0.9, 0.99] {
            let measured = v[(p * N as f64) as usize];
            close(measured, d.quantile(p), 0.02, &format!("{text} p{p}"));
        }
    }

    #[test]
    fn every_family_samples_its_theoretical_mean_and_quantiles() {
        agrees_with_theory(r#"{ distribution = "exponential", mean = "10ms" }"#, 0.010);
        // median 5 ms, p99 50 ms: sigma = ln 10 / z99, mean = median·e^(σ²/2).
        let sigma = math::ln(10.0) / Z_P99;
        agrees_with_theory(
            r#"{ distribution = "lognormal", median = "5ms", p99 = "50ms" }"#,
            0.005 * math::exp(sigma * sigma / 2.0),
        );
        agrees_with_theory(
            r#"{ distribution = "lognormal", mu = 1.0, sigma = 0.5 }"#,
            math::exp(1.0 + 0.125) / 1000.0,
        );
        agrees_with_theory(
            r#"{ distribution = "gamma", mean = "8ms", cv = 0.5 }"#,
            0.008,
        );
        agrees_with_theory(
            r#"{ distribution = "gamma", mean = "8ms", cv = 2.0 }"#,
            0.008,
        );
        agrees_with_theory(
            r#"{ distribution = "pareto", min = "2ms", shape = 3.0 }"#,
            0.003,
        );
        agrees_with_theory(
            r#"{ distribution = "uniform", min = "2ms", max = "4ms" }"#,
            0.003,
        );
    }

    #[test]
    fn the_lognormal_written_by_median_and_p99_has_them() {
        let d = service_time(r#"{ distribution = "lognormal", median = "5ms", p99 = "50ms" }"#)
            .unwrap();
        close(d.quantile(0.5), 0.005, 1e-9, "median");
        close(d.quantile(0.99), 0.050, 1e-9, "p99");
    }

    #[test]
    fn gamma_cv_is_the_sample_cv() {
        let d = service_time(r#"{ distribution = "gamma", mean = "8ms", cv = 0.5 }"#).unwrap();
        let v = draws(&d);
        let mean = v.iter().sum::<f64>() / N as f64;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / N as f64;
        close(var.sqrt() / mean, 0.5, 0.01, "cv");
    }

    #[test]
    fn old_scenario_forms_keep_parsing() {
        let c = service_time(r#"{ distribution = "constant", mean = "1ms" }"#).unwrap();
        assert_eq!(c.family, Family::Constant { value: 0.001 });
        let e = service_time(r#"{ distribution = "exponential", mean = "2ms" }"#).unwrap();
        assert_eq!(e.family, Family::Exponential { mean: 0.002 });
    }

    #[test]
    fn tables_that_do_not_fit_the_family_are_refused() {
        let refused = |text: &str, says: &str| {
            let message = service_time(text).unwrap_err();
            assert!(message.contains(says), "{text}: {message}");
        };
        refused(
            r#"{ distribution = "lognormal", median = "5ms" }"#,
            "`median` and `p99`",
        );
        refused(
            r#"{ distribution = "lognormal", median = "5ms", p99 = "1ms" }"#,
            "median < p99",
        );
        refused(r#"{ distribution = "gamma", mean = "5ms" }"#, "`cv`");
        refused(
            r#"{ distribution = "pareto", min = "1ms", shape = 0.9 }"#,
            "above 1",
        );
        refused(
            r#"{ distribution = "exponential", mean = "1ms", cv = 2 }"#,
            "`cv` does not apply",
        );
        refused(r#"{ distribution = "empirical" }"#, "needs `file`");
        refused(
            r#"{ distribution = "uniform", min = "3ms", max = "1ms" }"#,
            "min <= max",
        );
    }

    #[test]
    fn draws_replay_from_the_seed() {
        let d = service_time(r#"{ distribution = "gamma", mean = "8ms", cv = 0.3 }"#).unwrap();
        let run = || {
            let mut rng = ChaCha12Rng::seed_from_u64(3);
            (0..100)
                .map(|_| d.sample(&mut rng).to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
