//! wrk2-style "Detailed Percentile spectrum" text.

use hdrhistogram::Histogram;

/// Microseconds per millisecond: histograms hold µs, the text shows ms.
const US_PER_MS: f64 = 1000.0;

/// Prints `h` (microseconds) like wrk2's `--latency` output: one line per
/// quantile step (one tick per half-distance to 100%) with value in ms,
/// percentile, cumulative count and 1/(1-percentile), then the mean, standard
/// deviation, max, total count and bucket footer. An empty histogram prints
/// the header and a zero footer.
pub fn percentile_spectrum_text(h: &Histogram<u64>) -> String {
    let mut out = String::from("  Detailed Percentile spectrum:\n");
    out += &format!(
        "{:>12} {:>12} {:>12} {:>12}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total_count = 0u64;
    for step in h.iter_quantiles(1) {
        total_count += step.count_since_last_iteration();
        let percentile = step.quantile_iterated_to();
        // At percentile 1.0 this is +inf, which prints as "inf" like wrk2.
        let inverse = 1.0 / (1.0 - percentile);
        let value_ms = step.value_iterated_to() as f64 / US_PER_MS;
        out += &format!("{value_ms:12.3} {percentile:12.6} {total_count:12} {inverse:12.2}\n");
    }
    let (mean_ms, stdev_ms) = (h.mean() / US_PER_MS, h.stdev() / US_PER_MS);
    let max_ms = h.max() as f64 / US_PER_MS;
    out += &format!("#[Mean    = {mean_ms:12.3}, StdDeviation   = {stdev_ms:12.3}]\n");
    out += &format!(
        "#[Max     = {max_ms:12.3}, Total count    = {:12}]\n",
        h.len()
    );
    out += &format!(
        "#[Buckets = {:12}, SubBuckets     = {:12}]\n",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    );
    out
}

/// Sub-buckets per bucket, as HdrHistogram derives it: enough linear slots
/// to resolve `2 × 10^sigfig` at unit resolution, rounded up to a power of 2.
fn sub_bucket_count(sigfig: u8) -> u64 {
    let single_unit_resolution = 2 * 10u64.pow(u32::from(sigfig.min(5)));
    single_unit_resolution.next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency_histogram;

    #[test]
    fn matches_wrk2_layout() {
        let mut h = latency_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let text = percentile_spectrum_text(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  Detailed Percentile spectrum:");
        assert_eq!(
            lines[1],
            "       Value   Percentile   TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[2], "");
        assert_eq!(
            lines[3],
            "       1.000     0.000000            1         1.00"
        );
        assert!(text.contains("     0.500000 "), "{text}");
        let last = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        assert!(last.ends_with("        1000          inf"), "{last}");
        assert!(
            text.contains("#[Max     =     1000.447, Total count    =         1000]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
    }

    #[test]
    fn empty_histogram_prints_footer_only() {
        let text = percentile_spectrum_text(&latency_histogram());
        assert!(
            text.contains("#[Mean    =        0.000, StdDeviation   =        0.000]"),
            "{text}"
        );
        assert!(text.contains("Total count    =            0]"), "{text}");
        assert_eq!(text.lines().count(), 6);
    }
}
