//! `routes.svg`: whole-run p50 and p99 per route, as paired bars.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    Area, DrawResult, FONT, P50_COLOR, P99_COLOR, category_label, draw_legend, draw_note, finite,
    headroom, text_style, ticked,
};
use crate::RunData;

const US_PER_MS: f64 = 1000.0;
/// Above this many routes the numbers over the bars overprint each other.
const MAX_VALUE_LABELS: usize = 12;
/// Half the width of one bar, in route slots (a slot is 1.0 wide).
const BAR_HALF_WIDTH: f64 = 0.18;

type Pick = fn(&RouteBars) -> f64;

/// One route's bars: name, p50 ms, p99 ms.
struct RouteBars {
    name: String,
    p50_ms: f64,
    p99_ms: f64,
}

pub(super) fn draw(area: &Area<'_>, data: &RunData) -> DrawResult {
    let routes: Vec<RouteBars> = data
        .per_route
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| RouteBars {
            name: name.clone(),
            p50_ms: finite(h.value_at_quantile(0.50) as f64 / US_PER_MS),
            p99_ms: finite(h.value_at_quantile(0.99) as f64 / US_PER_MS),
        })
        .collect();
    let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
    let slots = routes.len().max(1) as f64;
    let ticks: Vec<f64> = (0..routes.len()).map(|i| i as f64).collect();
    let x = ticked(-0.5..slots - 0.5, ticks);
    let top_ms = routes
        .iter()
        .map(|r| r.p99_ms.max(r.p50_ms))
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption("Latency per route (whole run)", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, headroom(top_ms * 1.05, 1.0))?;
    let label_chars = (110 / routes.len().max(1)).clamp(6, 32);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| category_label(&names, *x, label_chars))
        .y_desc("latency (ms)")
        .draw()?;
    if routes.is_empty() {
        return draw_note(area, "no per-route data");
    }
    let bars: [(&str, RGBColor, f64, Pick); 2] = [
        ("p50", P50_COLOR, -BAR_HALF_WIDTH, |r| r.p50_ms),
        ("p99", P99_COLOR, BAR_HALF_WIDTH, |r| r.p99_ms),
    ];
    for (label, color, offset, value) in bars {
        let rects = routes.iter().enumerate().map(|(i, r)| {
            let centre = i as f64 + offset;
            let corners = [
                (centre - BAR_HALF_WIDTH, 0.0),
                (centre + BAR_HALF_WIDTH, value(r)),
            ];
            Rectangle::new(corners, color.filled())
        });
        chart
            .draw_series(rects)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
        if routes.len() > MAX_VALUE_LABELS {
            continue;
        }
        let values = routes.iter().enumerate().map(|(i, r)| {
            let at = (i as f64 + offset - BAR_HALF_WIDTH, value(r));
            // Anchored at the bottom so the number sits on top of its bar.
            let style = text_style(11, color).pos(Pos::new(HPos::Left, VPos::Bottom));
            Text::new(format!("{:.1}", value(r)), at, style)
        });
        chart.draw_series(values)?;
    }
    draw_legend(&mut chart)
}
