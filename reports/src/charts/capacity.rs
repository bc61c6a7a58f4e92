//! `capacity.svg`: throughput and p99 against offered rate or replicas,
//! passing and failing points told apart by shape and colour.

use plotters::prelude::*;

use super::{
    Area, DrawResult, FONT, P50_COLOR, P99_COLOR, PHASE_COLOR, axis_range, clean, draw_legend_at,
    draw_note, finite, headroom, legend_line, render_svg,
};
use crate::capacity::{CapacityAxis, CapacityPoint, slo_p99_ms};

const PASS_COLOR: RGBColor = RGBColor(44, 160, 44);
const FAIL_COLOR: RGBColor = RGBColor(214, 39, 40);

type Pick = fn(&CapacityPoint) -> f64;

/// Renders the capacity chart; `slo` is printed in the caption and, when it
/// names a p99 bound in ms or s, drawn as a threshold line.
pub(crate) fn capacity_svg(points: &[CapacityPoint], slo: &str) -> Result<String, String> {
    render_svg(|area| draw(area, points, slo))
}

fn draw(area: &Area<'_>, points: &[CapacityPoint], slo: &str) -> DrawResult {
    let mut sorted: Vec<&CapacityPoint> = points.iter().collect();
    sorted.sort_by(|a, b| finite(a.x).total_cmp(&finite(b.x)));
    let caption = if slo.is_empty() {
        "Capacity".to_owned()
    } else {
        format!("Capacity — SLO: {}", clean(slo))
    };
    let titled = area.titled(&caption, (FONT, 20))?;
    if sorted.is_empty() {
        return draw_note(&titled, "no capacity points");
    }
    let panels = titled.split_evenly((2, 1));
    let axis = sorted[0].axis;
    let (x_desc, y_desc) = match axis {
        CapacityAxis::RateRps => ("offered rate (requests/s)", "throughput (rps)"),
        CapacityAxis::Replicas => ("replicas", "capacity (rps)"),
        CapacityAxis::Concurrency => ("concurrency (slots per replica)", "capacity (rps)"),
    };
    let throughput: Pick = |p| p.throughput_rps;
    let p99: Pick = |p| p.p99_ms;
    let slo_ms = slo_p99_ms(slo);
    let counts = axis != CapacityAxis::RateRps;
    draw_panel(
        &panels[0],
        &sorted,
        (y_desc, x_desc, counts),
        throughput,
        P50_COLOR,
        None,
    )?;
    draw_panel(
        &panels[1],
        &sorted,
        ("p99 (ms)", x_desc, counts),
        p99,
        P99_COLOR,
        slo_ms,
    )
}

/// One panel: a line through all points, then pass/fail markers on top.
/// With `counts` (replicas, slots) the x axis is labelled at whole numbers only.
fn draw_panel(
    area: &Area<'_>,
    points: &[&CapacityPoint],
    (y_desc, x_desc, counts): (&str, &str, bool),
    pick: Pick,
    color: RGBColor,
    threshold: Option<f64>,
) -> DrawResult {
    let xs = points.iter().map(|p| finite(p.x));
    let (x_min, x_max) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let pad = ((x_max - x_min) * 0.05).max(0.5);
    let x = axis_range(x_min - pad, x_max + pad);
    let top = points
        .iter()
        .map(|p| finite(pick(p)))
        .fold(threshold.unwrap_or(0.0), f64::max);
    let y = headroom(top, 1.0);
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(x.clone(), y)?;
    let whole = |x: &f64| {
        if (x - x.round()).abs() < 1e-9 {
            format!("{x:.0}")
        } else {
            String::new()
        }
    };
    let decimal = |x: &f64| format!("{x:.1}");
    let x_label: &dyn Fn(&f64) -> String = if counts { &whole } else { &decimal };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(x_label)
        .draw()?;
    let line = points.iter().map(|p| (finite(p.x), finite(pick(p))));
    chart.draw_series(LineSeries::new(line, color.stroke_width(2)))?;
    if let Some(limit_ms) = threshold {
        let line = vec![(x.start, limit_ms), (x.end, limit_ms)];
        chart
            .draw_series([PathElement::new(line, PHASE_COLOR.stroke_width(1))])?
            .label(format!("SLO p99 {limit_ms} ms"))
            .legend(legend_line(PHASE_COLOR));
    }
    let passed = points
        .iter()
        .filter(|p| p.passed)
        .map(|p| (finite(p.x), finite(pick(p))));
    chart
        .draw_series(passed.map(|at| Circle::new(at, 5, PASS_COLOR.filled())))?
        .label("pass")
        .legend(|(x, y)| Circle::new((x + 8, y), 5, PASS_COLOR.filled()));
    let failed = points
        .iter()
        .filter(|p| !p.passed)
        .map(|p| (finite(p.x), finite(pick(p))));
    chart
        .draw_series(failed.map(|at| Cross::new(at, 6, FAIL_COLOR.stroke_width(2))))?
        .label("fail")
        .legend(|(x, y)| Cross::new((x + 8, y), 6, FAIL_COLOR.stroke_width(2)));
    // Both curves climb to the right, so the free corner is the upper left.
    draw_legend_at(&mut chart, SeriesLabelPosition::UpperLeft)
}
