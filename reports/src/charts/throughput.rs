//! `throughput.svg`: requests/s and errors/s of the aggregate over time.

use plotters::prelude::*;

use super::{
    Area, DrawResult, FONT, P50_COLOR, P999_COLOR, aggregate_rows, draw_legend, draw_note,
    draw_windows, finite, headroom_for_labels, legend_line, time_range_s,
};
use crate::RunData;

pub(super) fn draw(area: &Area<'_>, data: &RunData) -> DrawResult {
    // (midpoint s, requests/s, errors/s); zero-length intervals have no rate.
    let rates: Vec<(f64, f64, f64)> = aggregate_rows(data)
        .filter_map(|r| {
            let length_s = finite(r.end_s) - finite(r.start_s);
            (length_s > 0.0).then(|| {
                let mid_s = finite(r.start_s) + length_s / 2.0;
                (mid_s, r.count as f64 / length_s, r.errors as f64 / length_s)
            })
        })
        .collect();
    let x = time_range_s(data);
    let y = headroom_for_labels(rates.iter().map(|r| r.1.max(r.2)).fold(0.0, f64::max), 1.0);
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput over time (all routes)", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x.clone(), y.clone())?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("per second")
        .draw()?;
    draw_windows(&mut chart, &data.windows, &x, &y)?;
    if rates.is_empty() {
        return draw_note(area, "no intervals recorded");
    }
    let requests = rates.iter().map(|r| (r.0, r.1));
    chart
        .draw_series(LineSeries::new(requests, P50_COLOR.stroke_width(2)))?
        .label("requests/s")
        .legend(legend_line(P50_COLOR));
    let errors = rates.iter().map(|r| (r.0, r.2));
    chart
        .draw_series(LineSeries::new(errors, P999_COLOR.stroke_width(2)))?
        .label("errors/s")
        .legend(legend_line(P999_COLOR));
    draw_legend(&mut chart)
}
