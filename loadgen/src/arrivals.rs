//! Seeded arrival processes: when each request is *meant* to start.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha12Rng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};

/// An arrival process at a given rate (requests per second).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arrival {
    /// Evenly spaced.
    Constant { rate: f64 },
    /// Exponential inter-arrival times (memoryless, like independent users).
    Poisson { rate: f64 },
}

impl Arrival {
    /// Mean rate, requests per second.
    pub fn rate(&self) -> f64 {
        match self {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => *rate,
        }
    }

    /// The same process at `factor` times the rate (a capacity search scales
    /// load this way). Each kind says how it scales, so a new kind cannot be
    /// forgotten. With the same seed a scaled Poisson schedule is the
    /// original one compressed in time: common random numbers across steps.
    pub fn scaled(&self, factor: f64) -> Arrival {
        match self {
            Arrival::Constant { rate } => Arrival::Constant {
                rate: rate * factor,
            },
            Arrival::Poisson { rate } => Arrival::Poisson {
                rate: rate * factor,
            },
        }
    }

    /// Intended offsets in `[0, duration)`, drawn from `rng`.
    pub fn schedule(&self, duration: Duration, rng: &mut ChaCha12Rng) -> Vec<Duration> {
        let rate = self.rate();
        if !(rate.is_finite() && rate > 0.0) {
            return Vec::new();
        }
        let end_s = duration.as_secs_f64();
        let mut offsets = Vec::with_capacity((rate * end_s) as usize + 1);
        let mut t_s = match self {
            // A random phase, so two constant streams do not align.
            Arrival::Constant { .. } => rng.random_range(0.0..1.0) / rate,
            Arrival::Poisson { .. } => 0.0,
        };
        let exp = Exp::new(rate).expect("rate checked positive");
        loop {
            if let Arrival::Poisson { .. } = self {
                t_s += exp.sample(rng);
            }
            if t_s >= end_s {
                return offsets;
            }
            offsets.push(Duration::from_secs_f64(t_s));
            if let Arrival::Constant { .. } = self {
                t_s += 1.0 / rate;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn gaps(offsets: &[Duration]) -> Vec<f64> {
        offsets
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect()
    }

    #[test]
    fn poisson_mean_and_cv_match_theory() {
        let mut rng = ChaCha12Rng::seed_from_u64(11);
        let offsets =
            Arrival::Poisson { rate: 1000.0 }.schedule(Duration::from_secs(100), &mut rng);
        let gaps = gaps(&offsets);
        assert!(gaps.len() > 99_000, "{} arrivals", gaps.len());
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!((mean - 0.001).abs() / 0.001 < 0.01, "mean gap {mean}");
        assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let offsets = Arrival::Constant { rate: 100.0 }.schedule(Duration::from_secs(10), &mut rng);
        assert_eq!(offsets.len(), 1000);
        assert!(gaps(&offsets).iter().all(|g| (g - 0.01).abs() < 1e-9));
    }

    #[test]
    fn scaling_multiplies_the_rate_and_compresses_a_poisson_schedule() {
        let base = Arrival::Poisson { rate: 50.0 };
        let double = base.scaled(2.0);
        assert_eq!(double.rate(), 100.0);
        assert_eq!(Arrival::Constant { rate: 3.0 }.scaled(0.5).rate(), 1.5);
        let slow = base.schedule(Duration::from_secs(10), &mut ChaCha12Rng::seed_from_u64(9));
        let fast = double.schedule(Duration::from_secs(10), &mut ChaCha12Rng::seed_from_u64(9));
        // The slow schedule, compressed twice, is the start of the fast one.
        for (s, f) in slow.iter().zip(&fast) {
            assert!((s.as_secs_f64() / 2.0 - f.as_secs_f64()).abs() < 1e-9);
        }
        assert!(fast.len() > slow.len());
    }

    #[test]
    fn same_seed_same_schedule() {
        let plan = Arrival::Poisson { rate: 50.0 };
        let a = plan.schedule(Duration::from_secs(10), &mut ChaCha12Rng::seed_from_u64(5));
        let b = plan.schedule(Duration::from_secs(10), &mut ChaCha12Rng::seed_from_u64(5));
        let c = plan.schedule(Duration::from_secs(10), &mut ChaCha12Rng::seed_from_u64(6));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
