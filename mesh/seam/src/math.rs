//! Portable floating-point functions for everything that runs inside the
//! simulation.
//!
//! Rust documents `f64::exp`, `f64::ln` and `f64::powf` as platform-dependent
//! in precision: they call the platform's libm, so a seed found on Linux CI
//! could draw different service times on a developer's Mac. These wrappers
//! call the `libm` crate (a pure-Rust port of musl's libm), whose results are
//! the same bits on every platform. `sqrt` and the basic arithmetic are
//! correctly rounded by IEEE 754 and need no wrapper.
//!
//! clippy.toml bans the std versions in simulated code and names these.

/// e^x, the same bits on every platform.
pub fn exp(x: f64) -> f64 {
    libm::exp(x)
}

/// The natural logarithm, the same bits on every platform.
pub fn ln(x: f64) -> f64 {
    libm::log(x)
}

/// x^y, the same bits on every platform.
pub fn powf(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// The error function, for the normal distribution's CDF (fitting and
/// quantiles of lognormal service times).
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// ln Γ(x), for the gamma distribution.
pub fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// log10(x), the same bits on every platform.
pub fn log10(x: f64) -> f64 {
    libm::log10(x)
}

/// A draw from the exponential distribution with `rate` (events per unit
/// time), by inversion: -ln(1 - u) / rate with u uniform in [0, 1).
///
/// meshsim's own sampler rather than `rand_distr::Exp`: that one is a
/// ziggurat whose tail and rejection step call the platform's `ln` and
/// `exp`, so its draws could differ between platforms. Inversion costs one
/// uniform and one portable `ln` per draw. `1 - u` is never zero, so the
/// result is finite; a non-positive or non-finite rate gives infinity
/// (nothing ever arrives).
pub fn exponential(rng: &mut impl rand::Rng, rate: f64) -> f64 {
    if !(rate > 0.0 && rate.is_finite()) {
        return f64::INFINITY;
    }
    let u: f64 = rng.random();
    -ln(1.0 - u) / rate
}

/// cos x, for Box–Muller normal draws (lognormal and gamma service times).
pub fn cos(x: f64) -> f64 {
    libm::cos(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded on x86_64 Linux; a platform whose libm port differs would
    /// fail here, before any seed replays differently.
    #[test]
    fn results_are_the_recorded_bits() {
        // musl's exp(1) is one ulp above the correctly rounded e
        // (0x4005_bf0a_8b14_5769, which glibc returns): the very kind of
        // difference this module exists to pin down.
        assert_eq!(exp(1.0).to_bits(), 0x4005_bf0a_8b14_576a);
        assert_eq!(ln(2.0).to_bits(), 0x3fe6_2e42_fefa_39ef);
        // Hard arguments: the far tails, values near 1, large exponents.
        let recorded: [(f64, u64); 12] = [
            (exp(-745.0), 0x0000_0000_0000_0001),
            (exp(-0.123_456_789), 0x3fec_4894_6a8f_cf96),
            (exp(709.0), 0x7fdd_422d_2be5_dc9b),
            (ln(1e-300), 0xc085_9634_47f8_7fb5),
            (ln(1.000_000_1), 0x3e7a_d7f2_847b_6492),
            (ln(0.999_999_999), 0xbe11_2e0b_e024_e4bc),
            (powf(10.0, -2.5), 0x3f69_e7c6_e433_90b7),
            (powf(1.000_1, 10_000.0), 0x4005_bec3_4aab_bfd3),
            (erf(0.5), 0x3fe0_a7ef_5c18_edd2),
            (erf(-2.75), 0xbfef_ff2c_fb04_53d9),
            (ln_gamma(4.5), 0x4003_a140_a3a6_23cb),
            (log10(2.0), 0x3fd3_4413_509f_79ff),
        ];
        for (i, (got, bits)) in recorded.into_iter().enumerate() {
            assert_eq!(got.to_bits(), bits, "case {i}: {got:e}");
        }
    }

    #[test]
    fn exponential_draws_are_recorded_and_have_the_mean() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(7);
        let first: Vec<u64> = (0..3)
            .map(|_| exponential(&mut rng, 2.0).to_bits())
            .collect();
        assert_eq!(first, EXPONENTIAL_SEED_7_BITS);
        let n = 200_000;
        let mean = (0..n).map(|_| exponential(&mut rng, 4.0)).sum::<f64>() / n as f64;
        assert!((mean - 0.25).abs() < 0.005, "{mean}");
        assert_eq!(exponential(&mut rng, 0.0), f64::INFINITY);
        assert_eq!(exponential(&mut rng, f64::NAN), f64::INFINITY);
    }

    const EXPONENTIAL_SEED_7_BITS: [u64; 3] = [
        0x3f8f_867a_d330_71f8,
        0x3fc7_7a77_8f90_46ac,
        0x3fb3_b2fd_e1ff_084e,
    ];
}
