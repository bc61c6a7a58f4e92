//! `spectrum.svg`: the whole-run percentile spectrum in HdrHistogram style.
//!
//! x is log10(1/(1-percentile)), so each decade of "nines" gets equal width
//! and the tail — where SLO breaches live — is as visible as the median.

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::{
    Area, DrawResult, FONT, PALETTE, draw_legend_at, draw_note, finite, headroom, legend_line,
    shorten, ticked,
};
use crate::RunData;

/// Samples per decade of nines: smooth enough for a 960 px wide chart.
const STEPS_PER_DECADE: u32 = 25;
/// Beyond 99.99999% a run never has enough samples to say anything.
const MAX_DECADES: u32 = 7;
const US_PER_MS: f64 = 1000.0;

pub(super) fn draw(area: &Area<'_>, data: &RunData) -> DrawResult {
    let mut series: Vec<(String, &Histogram<u64>)> = vec![("all".to_owned(), &data.overall)];
    // Past one colour per route the lines and legend become noise; the
    // routes chart and the HTML table still show every route.
    if data.per_route.len() <= PALETTE.len() {
        let routes = data.per_route.iter();
        series.extend(routes.map(|(route, h)| (shorten(route, 40), h)));
    }
    series.retain(|(_, h)| !h.is_empty());
    let samples = series.iter().map(|(_, h)| h.len()).max().unwrap_or(0);
    let decades = decades_for(samples);
    let top_ms = series
        .iter()
        .map(|(_, h)| h.max() as f64 / US_PER_MS)
        .fold(0.0, f64::max);
    let ticks: Vec<f64> = (0..=decades).map(f64::from).collect();
    let x = ticked(0.0..f64::from(decades), ticks);
    let mut chart = ChartBuilder::on(area)
        .caption("Latency by percentile (whole run)", (FONT, 20))
        .margin(12)
        // Room for the last percentile label, centred on the right edge.
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, headroom(top_ms, 1.0))?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| percentile_label(*x))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()?;
    if series.is_empty() {
        return draw_note(area, "no latency samples");
    }
    for (index, (name, histogram)) in series.iter().enumerate() {
        // The aggregate is black and thick; routes are thin and coloured.
        let (color, width) = if index == 0 {
            (BLACK, 3)
        } else {
            (PALETTE[(index - 1) % PALETTE.len()], 1)
        };
        let points = spectrum_points(histogram, decades);
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(width)))?
            .label(name.as_str())
            .legend(legend_line(color));
    }
    // The curves climb to the right, where the tail matters most.
    draw_legend_at(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Enough decades that the last one holds at least one sample (10 000
/// samples show up to 99.99%), at least two so 99% is always on the axis.
// Charts never run in the simulation, and a last-bit difference cannot move
// an axis: std's log10 is fine here (reports may not import seam).
#[allow(clippy::disallowed_methods)]
fn decades_for(samples: u64) -> u32 {
    let decades = (samples.max(1) as f64).log10().ceil() as u32;
    decades.clamp(2, MAX_DECADES)
}

/// (log10(1/(1-q)), value at q in ms) for q from 0 to 1 - 10^-decades.
// Outside the simulation, like `decades_for`.
#[allow(clippy::disallowed_methods)]
fn spectrum_points(histogram: &Histogram<u64>, decades: u32) -> Vec<(f64, f64)> {
    (0..=decades * STEPS_PER_DECADE)
        .map(|step| {
            let x = f64::from(step) / f64::from(STEPS_PER_DECADE);
            let quantile = 1.0 - 10f64.powf(-x);
            (
                x,
                finite(histogram.value_at_quantile(quantile) as f64 / US_PER_MS),
            )
        })
        .collect()
}

/// Axis label for x = log10(1/(1-q)): 0 → "0%", 1 → "90%", 3 → "99.9%".
// Outside the simulation, like `decades_for`.
#[allow(clippy::disallowed_methods)]
fn percentile_label(x: f64) -> String {
    let decade = x.round();
    if (x - decade).abs() > 1e-6 || !(0.0..=f64::from(MAX_DECADES)).contains(&decade) {
        return String::new();
    }
    let percent = 100.0 * (1.0 - 10f64.powf(-decade));
    let decimals = (decade as usize).saturating_sub(2);
    format!("{percent:.decimals$}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_nines() {
        let labels: Vec<String> = (0..=5).map(|d| percentile_label(f64::from(d))).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        assert_eq!(percentile_label(1.5), "");
    }

    #[test]
    fn decades_follow_sample_count() {
        assert_eq!(decades_for(0), 2);
        assert_eq!(decades_for(10_000), 4);
        assert_eq!(decades_for(10_001), 5);
        assert_eq!(decades_for(u64::MAX), MAX_DECADES);
    }
}
