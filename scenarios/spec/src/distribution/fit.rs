//! Fitting the families to measurements, for `meshsim calibrate`.
//!
//! Each family is fitted by matching the quantiles or moments a user would
//! check first (lognormal: median and p99; gamma: mean and coefficient of
//! variation; pareto: minimum and median; uniform: minimum and maximum;
//! exponential and constant: the mean), then judged by its worst relative
//! error at p50, p90, p99 and p99.9: the quantiles SLOs are written on.

use std::sync::Arc;

use seam::math;

use super::{Distribution, Family, Points};

/// The quantiles a fit is judged at.
pub const JUDGED_AT: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// Above this worst error, calibrate recommends the empirical form.
pub const GOOD_FIT_ERROR: f64 = 0.10;

/// One family fitted to the data.
#[derive(Clone, Debug)]
pub struct Fit {
    /// The fitted distribution.
    pub distribution: Distribution,
    /// Its quantiles at [`JUDGED_AT`], in the base unit.
    pub quantiles: [f64; 4],
    /// Relative errors against the data at [`JUDGED_AT`].
    pub errors: [f64; 4],
}

impl Fit {
    /// The largest relative error.
    pub fn worst(&self) -> f64 {
        self.errors.iter().fold(0.0, |w, e| w.max(e.abs()))
    }
}

/// Mean and variance of the data's interpolated distribution, on a fine
/// quantile grid (exact enough for the fit, and the same for any file).
fn moments(points: &Points) -> (f64, f64) {
    const GRID: usize = 20_000;
    let values: Vec<f64> = (0..GRID)
        .map(|i| points.quantile((i as f64 + 0.5) / GRID as f64))
        .collect();
    let mean = values.iter().sum::<f64>() / GRID as f64;
    let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / GRID as f64;
    (mean, variance)
}

/// Every family that can be fitted to `points`, best first.
pub fn fit_all(points: &Points) -> Vec<Fit> {
    let data: [f64; 4] = JUDGED_AT.map(|p| points.quantile(p));
    let (mean, variance) = moments(points);
    let (p0, p50, p99) = (
        points.quantile(0.0),
        points.quantile(0.5),
        points.quantile(0.99),
    );
    let mut families = vec![
        Family::Constant { value: mean },
        Family::Exponential { mean },
        Family::Uniform {
            min: p0,
            max: points.quantile(1.0),
        },
    ];
    if p50 > 0.0 && p99 > p50 {
        let mu = math::ln(p50);
        families.push(Family::Lognormal {
            mu,
            sigma: (math::ln(p99) - mu) / super::Z_P99,
        });
    }
    if mean > 0.0 && variance > 0.0 {
        let shape = mean * mean / variance;
        families.push(Family::Gamma {
            shape,
            scale: mean / shape,
        });
    }
    if p0 > 0.0 && p50 > p0 {
        let shape = math::ln(2.0) / math::ln(p50 / p0);
        if shape > 1.0 {
            families.push(Family::Pareto { min: p0, shape });
        }
    }
    let mut fits: Vec<Fit> = families
        .into_iter()
        .map(|family| {
            let distribution = Distribution::new(family);
            let quantiles = JUDGED_AT.map(|p| distribution.quantile(p));
            let mut errors = [0.0; 4];
            for i in 0..4 {
                errors[i] = if data[i] > 0.0 {
                    quantiles[i] / data[i] - 1.0
                } else {
                    f64::INFINITY
                };
            }
            Fit {
                distribution,
                quantiles,
                errors,
            }
        })
        .collect();
    fits.sort_by(|a, b| a.worst().total_cmp(&b.worst()));
    fits
}

/// A duration in seconds as a scenario writes it, to four significant
/// digits in the unit that reads best.
pub fn duration_text(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{}s", round4(seconds))
    } else if seconds >= 1e-3 {
        format!("{}ms", round4(seconds * 1e3))
    } else {
        format!("{}us", round4(seconds * 1e6))
    }
}

/// Four significant digits for values from 0.001 up (no trailing zeros).
fn round4(value: f64) -> f64 {
    let decimals = match value.abs() {
        v if v >= 1000.0 => 0,
        v if v >= 100.0 => 1,
        v if v >= 10.0 => 2,
        v if v >= 1.0 => 3,
        _ => 4,
    };
    format!("{value:.decimals$}").parse().unwrap_or(value)
}

/// The inline table of a fitted duration distribution, ready to paste.
pub fn service_time_table(distribution: &Distribution) -> String {
    let d = duration_text;
    match &distribution.family {
        Family::Constant { value } => {
            format!(
                "{{ distribution = \"constant\", mean = \"{}\" }}",
                d(*value)
            )
        }
        Family::Exponential { mean } => {
            format!(
                "{{ distribution = \"exponential\", mean = \"{}\" }}",
                d(*mean)
            )
        }
        Family::Lognormal { .. } => format!(
            "{{ distribution = \"lognormal\", median = \"{}\", p99 = \"{}\" }}",
            d(distribution.quantile(0.5)),
            d(distribution.quantile(0.99))
        ),
        Family::Gamma { shape, scale } => format!(
            "{{ distribution = \"gamma\", mean = \"{}\", cv = {} }}",
            d(shape * scale),
            round4(1.0 / shape.sqrt())
        ),
        Family::Pareto { min, shape } => format!(
            "{{ distribution = \"pareto\", min = \"{}\", shape = {} }}",
            d(*min),
            round4(*shape)
        ),
        Family::Uniform { min, max } => format!(
            "{{ distribution = \"uniform\", min = \"{}\", max = \"{}\" }}",
            d(*min),
            d(*max)
        ),
        Family::Empirical(_) => "{ distribution = \"empirical\", file = \"…\" }".to_owned(),
    }
}

/// Points of a known distribution (for tests): its quantiles on a grid.
pub fn points_of(distribution: &Distribution, n: usize) -> Arc<Points> {
    let values: Vec<f64> = (0..n)
        .map(|i| distribution.quantile(i as f64 / n as f64))
        .collect();
    Arc::new(Points {
        cumulative: (0..n).map(|i| i as f64 / n as f64).collect(),
        values,
        count: n as u64,
        provenance: "generated".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_is_its_own_best_fit() {
        for family in [
            Family::Lognormal {
                mu: math::ln(0.005),
                sigma: 0.8,
            },
            Family::Exponential { mean: 0.01 },
            Family::Uniform {
                min: 0.002,
                max: 0.004,
            },
        ] {
            let truth = Distribution::new(family);
            let fits = fit_all(&points_of(&truth, 200_000));
            let best = &fits[0];
            assert_eq!(best.distribution.kind(), truth.kind(), "{fits:#?}");
            assert!(best.worst() < 0.02, "{best:?}");
        }
    }

    #[test]
    fn tables_parse_back_to_the_same_distribution() {
        let truth = Distribution::new(Family::Lognormal {
            mu: math::ln(0.005),
            sigma: 0.8,
        });
        let table = service_time_table(&truth);
        #[derive(serde::Deserialize)]
        struct Wrap {
            t: super::super::ServiceTime,
        }
        let back: Wrap = toml::from_str(&format!("t = {table}")).unwrap();
        let error = back.t.0.quantile(0.99) / truth.quantile(0.99) - 1.0;
        assert!(error.abs() < 1e-3, "{table}");
        assert_eq!(duration_text(0.0123456), "12.35ms");
        assert_eq!(duration_text(0.000_5), "500us");
    }
}
