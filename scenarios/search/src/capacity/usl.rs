//! The Universal Scalability Law, fitted by least squares.
//!
//! X(N) = λN / (1 + σ(N−1) + κN(N−1)): λ is the throughput of one unit, σ
//! the contention (the serial fraction), κ the coherency cost (crosstalk).
//! Throughput peaks at N_max = √((1−σ)/κ).
//!
//! Hand-written rather than the `usl` crate: that crate panics below six
//! measurements and when its Levenberg–Marquardt solver fails, and fits σ
//! and κ unconstrained (negative coefficients have no physical meaning). A
//! capacity sweep often has fewer points, and bad input must never panic.
//! For fixed (σ, κ) the best λ has a closed form, so the fit is a bounded
//! search over two coefficients: deterministic, no solver to diverge.

use serde::Serialize;

/// A fitted model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct UslFit {
    /// Throughput of one unit (requests per second).
    pub lambda: f64,
    /// Contention, 0..=1.
    pub sigma: f64,
    /// Coherency, 0..=1.
    pub kappa: f64,
    /// Where throughput peaks, √((1−σ)/κ), at least 1 (a peak below one
    /// unit means the first unit is already the best); `None` when κ = 0
    /// (no peak).
    pub n_max: Option<f64>,
    /// The smallest N after which one more unit adds less than half a
    /// unit's worth (λ/2) of throughput; `None` if that never happens
    /// before [`KNEE_SEARCH_MAX`].
    pub knee: Option<u32>,
    /// Coefficient of determination of the fit (1 = perfect).
    pub r_squared: f64,
}

/// How far the knee is looked for.
pub const KNEE_SEARCH_MAX: u32 = 10_000;

/// Fewest points that determine λ, σ and κ.
pub const POINTS_MIN: usize = 3;

impl UslFit {
    /// Modelled throughput at `n` units.
    pub fn throughput(&self, n: f64) -> f64 {
        self.lambda * shape(self.sigma, self.kappa, n)
    }
}

/// X(N)/λ.
fn shape(sigma: f64, kappa: f64, n: f64) -> f64 {
    n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

fn square(x: f64) -> f64 {
    x * x
}

/// The best λ for fixed (σ, κ), and the squared error it leaves.
fn best_lambda(points: &[(f64, f64)], sigma: f64, kappa: f64) -> (f64, f64) {
    let (mut xg, mut gg) = (0.0, 0.0);
    for &(n, x) in points {
        let g = shape(sigma, kappa, n);
        xg += x * g;
        gg += g * g;
    }
    let lambda = if gg > 0.0 { (xg / gg).max(0.0) } else { 0.0 };
    let sse = points
        .iter()
        .map(|&(n, x)| square(x - lambda * shape(sigma, kappa, n)))
        .sum();
    (lambda, sse)
}

/// Fits the model to `(units, throughput)` points. `None` when there are
/// fewer than [`POINTS_MIN`] distinct unit counts, or any value is not a
/// finite number with units ≥ 1 and throughput ≥ 0.
pub fn fit(points: &[(f64, f64)]) -> Option<UslFit> {
    let valid = points
        .iter()
        .all(|&(n, x)| n.is_finite() && n >= 1.0 && x.is_finite() && x >= 0.0);
    let mut distinct: Vec<f64> = points.iter().map(|p| p.0).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if !valid || distinct.len() < POINTS_MIN {
        return None;
    }
    let (sigma, kappa) = search(points);
    let (lambda, sse) = best_lambda(points, sigma, kappa);
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let sst: f64 = points.iter().map(|p| square(p.1 - mean)).sum();
    let r_squared = if sst > 0.0 { 1.0 - sse / sst } else { 1.0 };
    let n_max = (kappa > 0.0).then(|| ((1.0 - sigma) / kappa).sqrt().max(1.0));
    let mut model = UslFit {
        lambda,
        sigma,
        kappa,
        n_max,
        knee: None,
        r_squared,
    };
    model.knee = (1..KNEE_SEARCH_MAX).find(|&n| {
        let gain = model.throughput(f64::from(n) + 1.0) - model.throughput(f64::from(n));
        gain < lambda / 2.0
    });
    Some(model)
}

/// Minimises the squared error over σ ∈ [0, 1] and κ ∈ {0} ∪ [1e-7, 1]:
/// a coarse grid (κ on a log scale), then ever finer grids around the best.
fn search(points: &[(f64, f64)]) -> (f64, f64) {
    const GRID: usize = 40;
    const ROUNDS: usize = 30;
    let sse = |sigma: f64, log_kappa: Option<f64>| {
        best_lambda(points, sigma, log_kappa.map_or(0.0, seam::math::exp)).1
    };
    let (log_lo, log_hi) = (seam::math::ln(1e-7), 0.0f64);
    // Each candidate is (σ, ln κ or None for κ = 0).
    let mut best = (0.0, None);
    let mut best_sse = f64::INFINITY;
    let mut consider = |sigma: f64, log_kappa: Option<f64>, best: &mut (f64, Option<f64>)| {
        let e = sse(sigma, log_kappa);
        if e < best_sse {
            best_sse = e;
            *best = (sigma, log_kappa);
        }
    };
    for i in 0..=GRID {
        let sigma = i as f64 / GRID as f64;
        consider(sigma, None, &mut best);
        for j in 0..=GRID {
            let log_kappa = log_lo + (log_hi - log_lo) * j as f64 / GRID as f64;
            consider(sigma, Some(log_kappa), &mut best);
        }
    }
    let (mut sigma_step, mut log_step) = (1.0 / GRID as f64, (log_hi - log_lo) / GRID as f64);
    for _ in 0..ROUNDS {
        let centre = best;
        for di in -2i32..=2 {
            let sigma = (centre.0 + f64::from(di) * sigma_step / 2.0).clamp(0.0, 1.0);
            match centre.1 {
                None => consider(sigma, None, &mut best),
                Some(lk) => {
                    for dj in -2i32..=2 {
                        let log_kappa = (lk + f64::from(dj) * log_step / 2.0).clamp(log_lo, log_hi);
                        consider(sigma, Some(log_kappa), &mut best);
                    }
                }
            }
        }
        sigma_step /= 2.0;
        log_step /= 2.0;
    }
    (best.0, best.1.map_or(0.0, seam::math::exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(lambda: f64, sigma: f64, kappa: f64, ns: &[u32]) -> Vec<(f64, f64)> {
        ns.iter()
            .map(|&n| {
                let n = f64::from(n);
                (n, lambda * shape(sigma, kappa, n))
            })
            .collect()
    }

    #[test]
    fn recovers_known_coefficients() {
        let points = curve(1000.0, 0.05, 0.002, &[1, 2, 4, 8, 16, 32, 64]);
        let model = fit(&points).unwrap();
        assert!((model.lambda - 1000.0).abs() < 1.0, "{model:?}");
        assert!((model.sigma - 0.05).abs() < 1e-3, "{model:?}");
        assert!((model.kappa - 0.002).abs() < 1e-4, "{model:?}");
        let n_max = ((1.0 - 0.05) / 0.002f64).sqrt();
        assert!((model.n_max.unwrap() - n_max).abs() < 0.5, "{model:?}");
        assert!(model.r_squared > 0.9999);
    }

    #[test]
    fn agrees_with_the_usl_crate_on_its_own_data() {
        // codahale/usl-rs `src/lib.rs` tests: 32 measurements, and the
        // crate's fit σ = 0.02671591, κ = 7.690945e-4, λ = 995.6486, N_max 35.
        let throughput = [
            955.16, 1878.91, 2688.01, 3548.68, 4315.54, 5130.43, 5931.37, 6531.08, 7219.8, 7867.61,
            8278.71, 8646.7, 9047.84, 9426.55, 9645.37, 9897.24, 10097.6, 10240.5, 10532.39,
            10798.52, 11151.43, 11518.63, 11806.0, 12089.37, 12075.41, 12177.29, 12211.41,
            12158.93, 12155.27, 12118.04, 12140.4, 12074.39,
        ];
        let points: Vec<(f64, f64)> = throughput
            .iter()
            .enumerate()
            .map(|(i, x)| (i as f64 + 1.0, *x))
            .collect();
        let model = fit(&points).unwrap();
        let close = |a: f64, b: f64| (a / b - 1.0).abs() < 1e-3;
        assert!(close(model.sigma, 0.02671591), "{model:?}");
        assert!(close(model.kappa, 7.690945e-4), "{model:?}");
        assert!(close(model.lambda, 995.6486), "{model:?}");
        assert_eq!(model.n_max.map(f64::floor), Some(35.0));
    }

    #[test]
    fn linear_scaling_has_no_peak_and_no_knee() {
        let model = fit(&curve(500.0, 0.0, 0.0, &[1, 2, 3, 4])).unwrap();
        assert_eq!(model.n_max, None, "{model:?}");
        assert!(model.sigma < 1e-3 && model.knee.is_none(), "{model:?}");
    }

    #[test]
    fn a_flat_curve_has_its_knee_at_one() {
        // Adding units does nothing: the bottleneck is elsewhere.
        let model = fit(&[(1.0, 2000.0), (2.0, 2000.0), (3.0, 2000.0)]).unwrap();
        assert!(model.sigma > 0.99, "{model:?}");
        assert_eq!(model.knee, Some(1));
        // Noisy and slightly falling: the peak is at the first unit.
        let model = fit(&[(1.0, 1895.0), (2.0, 1886.0), (3.0, 1890.0)]).unwrap();
        assert_eq!(model.knee, Some(1));
        assert!(model.n_max.is_none_or(|n| n == 1.0), "{model:?}");
    }

    #[test]
    fn the_knee_is_where_a_unit_adds_less_than_half_a_unit() {
        let model = fit(&curve(100.0, 0.1, 0.0, &[1, 2, 4, 8, 16])).unwrap();
        // X(n+1) − X(n) = 100·0.9 / ((1+0.1(n))(1+0.1(n−1))) < 50 from n = 4.
        assert_eq!(model.knee, Some(4), "{model:?}");
    }

    #[test]
    fn too_few_or_bad_points_give_none() {
        assert_eq!(fit(&[]), None);
        assert_eq!(fit(&[(1.0, 10.0), (2.0, 20.0)]), None);
        assert_eq!(fit(&[(1.0, 10.0), (1.0, 11.0), (2.0, 20.0)]), None);
        assert_eq!(fit(&[(1.0, 10.0), (2.0, f64::NAN), (3.0, 30.0)]), None);
        assert_eq!(fit(&[(0.0, 10.0), (2.0, 20.0), (3.0, 30.0)]), None);
        let zeros = fit(&[(1.0, 0.0), (2.0, 0.0), (3.0, 0.0)]).unwrap();
        assert_eq!(zeros.lambda, 0.0);
    }
}
