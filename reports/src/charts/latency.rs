//! `latency.svg`: p50/p99/p99.9 of the aggregate over time.

use plotters::prelude::*;

use super::{
    Area, DrawResult, FONT, P50_COLOR, P99_COLOR, P999_COLOR, aggregate_rows, draw_legend,
    draw_note, draw_windows, finite, headroom_for_labels, legend_line, time_range_s,
};
use crate::{IntervalRow, RunData};

type Pick = fn(&IntervalRow) -> f64;

pub(super) fn draw(area: &Area<'_>, data: &RunData) -> DrawResult {
    // Intervals where nothing finished have no latency; plotting them as
    // zero would draw fake dips to 0 ms during an outage.
    let rows: Vec<&IntervalRow> = aggregate_rows(data).filter(|r| r.count > 0).collect();
    let x = time_range_s(data);
    let top_ms = rows
        .iter()
        .map(|r| finite(r.p999_ms).max(finite(r.p99_ms)))
        .fold(0.0, f64::max);
    let y = headroom_for_labels(top_ms, 1.0);
    let mut chart = ChartBuilder::on(area)
        .caption("Latency over time (all routes)", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x.clone(), y.clone())?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (ms)")
        .draw()?;
    draw_windows(&mut chart, &data.windows, &x, &y)?;
    if rows.is_empty() {
        return draw_note(area, "no completed requests");
    }
    let series: [(&str, RGBColor, Pick); 3] = [
        ("p50", P50_COLOR, |r| r.p50_ms),
        ("p99", P99_COLOR, |r| r.p99_ms),
        ("p99.9", P999_COLOR, |r| r.p999_ms),
    ];
    for (label, color, pick) in series {
        // Midpoint: the value describes the whole interval, not its end.
        let points = rows
            .iter()
            .map(|r| ((finite(r.start_s) + finite(r.end_s)) / 2.0, finite(pick(r))));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(legend_line(color));
    }
    draw_legend(&mut chart)
}
