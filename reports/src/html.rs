//! `report.html`: one self-contained page — inline CSS and SVG, no scripts,
//! no external links, fonts or images — so it can be attached to a CI run
//! or mailed and still render offline.

use crate::charts::Chart;
use crate::{Check, RunData, Summary, Verdict, percentile_spectrum_text};

/// Plotters writes this namespace attribute; inline SVG in HTML does not
/// need it, and dropping it keeps the page free of any URL.
const SVG_NAMESPACE_ATTR: &str = " xmlns=\"http://www.w3.org/2000/svg\"";
const US_PER_MS: f64 = 1000.0;

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { display: inline-block; padding: 0.2rem 0.8rem; border-radius: 4px; font-weight: bold; color: #fff; }
.pass { background: #2c9f2c; }
.fail { background: #d62728; }
tr.failed td { background: #fdecea; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
figure { margin: 1rem 0 2rem; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9rem; color: #555; }
";

/// Renders the page. Every piece of run data goes through [`escape`].
pub(crate) fn render(data: &RunData, charts: &[Chart]) -> String {
    let s = &data.summary;
    let verdict = verdict_badge(s.verdict);
    let mut page =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page += &format!(
        "<title>meshsim: {} — {}</title>\n",
        escape(&s.scenario),
        s.verdict.as_str()
    );
    page += &format!("<style>{STYLE}</style>\n</head>\n<body>\n");
    page += &format!("<h1>{}</h1>\n<p>{verdict}</p>\n", escape(&s.scenario));
    page += &run_table(s);
    page += &format!(
        "<h2>Reproduce</h2>\n<pre><code>{}</code></pre>\n",
        escape(&s.reproduce)
    );
    page += &checks_table(&s.checks);
    page += &requests_table(s);
    page += &latency_table(data);
    page += "<h2>Charts</h2>\n";
    for chart in charts {
        page += &figure(chart);
    }
    page += &windows_table(data);
    page += &events_table(data);
    page += "<h2>Percentile spectrum</h2>\n";
    page += &format!(
        "<pre>{}</pre>\n",
        escape(&percentile_spectrum_text(&data.overall))
    );
    page += "</body>\n</html>\n";
    page
}

fn verdict_badge(verdict: Verdict) -> String {
    let class = verdict.as_str();
    format!(
        "<span class=\"verdict {class}\">{}</span>",
        class.to_uppercase()
    )
}

fn run_table(s: &Summary) -> String {
    let mut rows = vec![
        ("seed", s.seed.to_string()),
        ("mode", s.mode.as_str().to_owned()),
        ("simulated seconds", format!("{:.3}", s.sim_seconds)),
        ("wall seconds", format!("{:.3}", s.wall_seconds)),
    ];
    if let Some(hash) = &s.trace_hash {
        rows.push(("trace hash", hash.clone()));
    }
    let p = &s.provenance;
    for (name, value) in [
        ("scenario sha256", &p.scenario_sha256),
        ("meshsim version", &p.meshsim_version),
        ("source revision", &p.source_revision),
        ("platform", &p.platform),
    ] {
        if !value.is_empty() {
            rows.push((name, value.clone()));
        }
    }
    let body: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><th>{k}</th><td>{}</td></tr>\n", escape(v)))
        .collect();
    format!("<h2>Run</h2>\n<table>\n{body}</table>\n")
}

/// The "Compared with the baseline" section `meshsim diff --out` adds.
pub(crate) fn diff_section(diff: &crate::diff::RunDiff) -> String {
    let mut out = String::from("<h2>Compared with the baseline</h2>\n");
    out += &format!(
        "<p>Baseline <code>{}</code>. {}</p>\n",
        escape(&diff.baseline),
        if diff.comparable {
            "Comparable: same scenario (sha256), seed and meshsim version.".to_owned()
        } else {
            "<strong>Not comparable</strong>: the runs differ in scenario, seed or meshsim version (below).".to_owned()
        }
    );
    out += "<table>\n<tr><th>field</th><th>baseline</th><th>run</th></tr>\n";
    for p in &diff.provenance {
        let class = if p.same { "" } else { " class=\"failed\"" };
        out += &format!(
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&p.field),
            escape(&p.baseline),
            escape(&p.run)
        );
    }
    out += "</table>\n<table>\n<tr><th>route</th><th>metric</th><th>baseline</th><th>run</th><th>change</th></tr>\n";
    for route in &diff.routes {
        for m in &route.metrics {
            out += &format!(
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{}</td></tr>\n",
                escape(&route.route),
                escape(&m.metric),
                m.baseline,
                m.run,
                m.change_pct
                    .map_or_else(|| "n/a".to_owned(), |c| format!("{c:+.1}%"))
            );
        }
    }
    out += "</table>\n<table>\n<tr><th>check</th><th>baseline</th><th>run</th></tr>\n";
    let verdict = |v: Option<bool>| match v {
        Some(true) => "pass",
        Some(false) => "fail",
        None => "-",
    };
    for c in &diff.checks {
        let class = if c.baseline != c.run {
            " class=\"failed\""
        } else {
            ""
        };
        out += &format!(
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&c.name),
            verdict(c.baseline),
            verdict(c.run)
        );
    }
    out += "</table>\n";
    if !diff.thresholds.is_empty() {
        out += "<table>\n<tr><th>--fail-on</th><th>route</th><th>change</th><th>result</th></tr>\n";
        for t in &diff.thresholds {
            let (class, result) = if t.crossed {
                (" class=\"failed\"", "crossed")
            } else {
                ("", "held")
            };
            out += &format!(
                "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{result}</td></tr>\n",
                escape(&t.expression),
                escape(&t.route),
                escape(&t.change)
            );
        }
        out += "</table>\n";
    }
    out
}

fn checks_table(checks: &[Check]) -> String {
    if checks.is_empty() {
        return "<h2>Checks</h2>\n<p>No checks were evaluated.</p>\n".to_owned();
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    let mut out = format!(
        "<h2>Checks</h2>\n<p>{} of {} passed.</p>\n",
        checks.len() - failed,
        checks.len()
    );
    out += "<table>\n<tr><th>check</th><th>kind</th><th>result</th><th>detail</th></tr>\n";
    for check in checks {
        let (row_class, result) = if check.passed {
            ("", "pass")
        } else {
            (" class=\"failed\"", "fail")
        };
        out += &format!(
            "<tr{row_class}><td>{}</td><td>{}</td><td><span class=\"verdict {result}\">{result}</span></td><td>{}</td></tr>\n",
            escape(&check.name),
            check.kind.as_str(),
            escape(&check.detail)
        );
    }
    out + "</table>\n"
}

fn requests_table(s: &Summary) -> String {
    let r = &s.requests;
    let error_percent = if r.total == 0 {
        0.0
    } else {
        100.0 * r.failed as f64 / r.total as f64
    };
    let cells = [
        ("total", r.total.to_string()),
        ("ok", r.ok.to_string()),
        ("failed", r.failed.to_string()),
        ("error rate", format!("{error_percent:.3}%")),
        ("generator late", s.generator_late.to_string()),
        ("generator dropped", s.generator_dropped.to_string()),
    ];
    format!("<h2>Requests</h2>\n{}", horizontal_table(&cells))
}

fn latency_table(data: &RunData) -> String {
    let l = &data.summary.latency_ms;
    let cells = [
        ("p50", l.p50),
        ("p90", l.p90),
        ("p99", l.p99),
        ("p99.9", l.p999),
        ("max", l.max),
    ]
    .map(|(k, v)| (k, format!("{v:.3}")));
    let mut out = format!(
        "<h2>Latency (ms, from intended start)</h2>\n{}",
        horizontal_table(&cells)
    );
    if data.per_route.is_empty() {
        return out;
    }
    out += "<table>\n<tr><th>route</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n";
    for (route, h) in &data.per_route {
        let ms = |q: f64| {
            format!(
                "<td class=\"num\">{:.3}</td>",
                h.value_at_quantile(q) as f64 / US_PER_MS
            )
        };
        let max = format!("<td class=\"num\">{:.3}</td>", h.max() as f64 / US_PER_MS);
        out += &format!(
            "<tr><td>{}</td><td class=\"num\">{}</td>{}{}{}{}{max}</tr>\n",
            escape(route),
            h.len(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999)
        );
    }
    out + "</table>\n"
}

/// A header row of names over one row of values.
fn horizontal_table(cells: &[(&str, String)]) -> String {
    let head: String = cells.iter().map(|(k, _)| format!("<th>{k}</th>")).collect();
    let values: String = cells
        .iter()
        .map(|(_, v)| format!("<td class=\"num\">{}</td>", escape(v)))
        .collect();
    format!("<table>\n<tr>{head}</tr>\n<tr>{values}</tr>\n</table>\n")
}

fn figure(chart: &Chart) -> String {
    let svg = chart.svg.replacen(SVG_NAMESPACE_ATTR, "", 1);
    format!(
        "<figure>\n{svg}<figcaption>{} ({})</figcaption>\n</figure>\n",
        escape(chart.title),
        chart.file
    )
}

fn windows_table(data: &RunData) -> String {
    if data.windows.is_empty() {
        return String::new();
    }
    let mut out = "<h2>Faults and phases</h2>\n<table>\n<tr><th>kind</th><th>start (s)</th><th>end (s)</th><th>label</th></tr>\n".to_owned();
    for w in &data.windows {
        let kind = match w.kind {
            crate::WindowKind::Fault => "fault",
            crate::WindowKind::Phase => "phase",
        };
        out += &format!(
            "<tr><td>{kind}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td>{}</td></tr>\n",
            w.start_s,
            w.end_s,
            escape(&w.label)
        );
    }
    out + "</table>\n"
}

fn events_table(data: &RunData) -> String {
    if data.events.is_empty() {
        return String::new();
    }
    let mut out = "<h2>Certificate events</h2>\n<table>\n<tr><th>at (s)</th><th>host</th><th>kind</th><th>detail</th></tr>\n".to_owned();
    for e in &data.events {
        out += &format!(
            "<tr><td class=\"num\">{:.3}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            e.at_s,
            escape(&e.host),
            escape(&e.kind),
            escape(&e.detail)
        );
    }
    out + "</table>\n"
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are HTML parse errors, and fatal inside
            // the inline SVG if the page is ever read as XHTML.
            c if c.is_control() && !"\t\n\r".contains(c) => out.push('\u{FFFD}'),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;
    use std::path::Path;

    fn page(data: &RunData) -> String {
        let charts = crate::charts::run_charts(Path::new("/x"), data).unwrap();
        render(data, &charts)
    }

    #[test]
    fn is_self_contained() {
        let html = page(&testdata::run());
        for forbidden in [
            "http://", "https://", "src=", "<script", "<link", "@import", "url(",
        ] {
            assert!(!html.contains(forbidden), "report contains {forbidden}");
        }
        assert_eq!(html.matches("<svg").count(), 5);
    }

    #[test]
    fn shows_verdict_checks_and_reproduce() {
        let data = testdata::run();
        let html = page(&data);
        assert!(html.contains("<span class=\"verdict fail\">FAIL</span>"));
        for check in &data.summary.checks {
            assert!(html.contains(&escape(&check.name)), "{}", check.name);
        }
        assert!(html.contains(&escape(&data.summary.reproduce)));
        assert!(html.contains("Detailed Percentile spectrum"));
    }

    #[test]
    fn escapes_hostile_text() {
        let html = page(&testdata::hostile_run());
        assert!(!html.contains("<b>boom</b>"), "raw markup leaked");
        assert!(html.contains("&lt;b&gt;boom&lt;/b&gt;"));
        assert!(!html.contains("<script"));
        assert!(!html.contains('\u{1}'));
    }

    #[test]
    fn empty_run_renders() {
        let html = page(&testdata::empty_run());
        assert!(html.contains("No checks were evaluated."));
        assert!(html.contains("<svg"));
    }

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
