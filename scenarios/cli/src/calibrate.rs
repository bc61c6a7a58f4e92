//! `meshsim calibrate FILE`: fits the service-time families to a file of
//! measurements (`.hlog`, `.csv`, Prometheus buckets) and prints the
//! `service_time` table to paste into a scenario, with each fit's error at
//! p50, p90, p99 and p99.9, and the empirical form as the fallback.

use std::path::PathBuf;
use std::process::ExitCode;

use spec::distribution::fit::{self, Fit, GOOD_FIT_ERROR, JUDGED_AT};
use spec::distribution::{Unit, read_points};

use crate::BadInput;

/// Arguments of `meshsim calibrate`.
#[derive(clap::Args)]
pub struct Args {
    /// Measurements: an HdrHistogram log (`.hlog`, microseconds, as
    /// `meshsim load` writes), a CSV of latencies (milliseconds unless a
    /// header names `_us`, `_ms` or `_s`), or Prometheus histogram buckets
    /// (`.prom`/`.txt`, unit from the metric name).
    pub file: PathBuf,
}

/// Prints the fits; exit 0, or 2 when the file cannot be read.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let points = read_points(&args.file, Unit::Duration).map_err(BadInput)?;
    let fits = fit::fit_all(&points);
    print!("{}", render(&args.file, &points, &fits));
    Ok(ExitCode::SUCCESS)
}

fn render(file: &std::path::Path, points: &spec::distribution::Points, fits: &[Fit]) -> String {
    let mut out = String::new();
    let ms = |s: f64| format!("{:.3}", s * 1e3);
    out.push_str(&format!(
        "# meshsim calibrate: {} ({} observations)\n# quantiles in milliseconds; error = fitted / measured - 1\n",
        points.provenance, points.count
    ));
    out.push_str(&format!(
        "# {:<12} {:>10} {:>10} {:>10} {:>10}   worst\n",
        "family", "p50", "p90", "p99", "p99.9"
    ));
    let measured = JUDGED_AT.map(|p| points.quantile(p));
    out.push_str(&format!(
        "# {:<12} {:>10} {:>10} {:>10} {:>10}\n",
        "measured",
        ms(measured[0]),
        ms(measured[1]),
        ms(measured[2]),
        ms(measured[3])
    ));
    for f in fits {
        let cell = |i: usize| format!("{} {:+.1}%", ms(f.quantiles[i]), f.errors[i] * 100.0);
        out.push_str(&format!(
            "# {:<12} {:>16} {:>16} {:>16} {:>16}   {:.1}%\n",
            f.distribution.kind(),
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            f.worst() * 100.0
        ));
    }
    let empirical = format!(
        "service_time = {{ distribution = \"empirical\", file = \"{}\" }}",
        file.display()
    );
    match fits.first() {
        Some(best) if best.worst() <= GOOD_FIT_ERROR => {
            out.push_str(&format!(
                "# best fit: {} (worst error {:.1} %); paste:\nservice_time = {}\n# fallback, the measurements themselves (path relative to the scenario file):\n# {empirical}\n",
                best.distribution.kind(),
                best.worst() * 100.0,
                fit::service_time_table(&best.distribution)
            ));
        }
        best => {
            if let Some(best) = best {
                out.push_str(&format!(
                    "# no family is within {:.0} % at every quantile (best: {}, {:.1} %: {}); paste the measurements themselves (path relative to the scenario file):\n",
                    GOOD_FIT_ERROR * 100.0,
                    best.distribution.kind(),
                    best.worst() * 100.0,
                    fit::service_time_table(&best.distribution)
                ));
            }
            out.push_str(&format!("{empirical}\n"));
        }
    }
    out
}
