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
        assert_eq!(exp(1.0).to_bits(), 0x4005_bf0a_8b14_5769);
        assert_eq!(ln(2.0).to_bits(), 0x3fe6_2e42_fefa_39ef);
    }
}
