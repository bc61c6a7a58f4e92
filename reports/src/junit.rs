//! `junit.xml`: one `<testsuite>` per run, one `<testcase>` per check, so CI
//! systems show each SLO, security, ledger and liveness check by name.

use crate::{Summary, Verdict};

/// Renders the JUnit document for `summary`.
///
/// A run whose verdict is fail although every check passed (or no check ran)
/// gets an extra failing `run/verdict` case, so CI that reads only this file
/// never turns green on a failed run.
pub(crate) fn render(summary: &Summary) -> String {
    let mut cases: Vec<(String, String, Option<String>)> = summary
        .checks
        .iter()
        .map(|c| {
            let failure = (!c.passed).then(|| c.detail.clone());
            (c.kind.as_str().to_owned(), c.name.clone(), failure)
        })
        .collect();
    let any_failed = cases.iter().any(|(_, _, failure)| failure.is_some());
    if summary.verdict == Verdict::Fail && !any_failed {
        let why = "the run verdict is fail but no check failed".to_owned();
        cases.push(("run".to_owned(), "verdict".to_owned(), Some(why)));
    }
    let failures = cases
        .iter()
        .filter(|(_, _, failure)| failure.is_some())
        .count();
    let time_s = if summary.wall_seconds.is_finite() {
        summary.wall_seconds.max(0.0)
    } else {
        0.0
    };
    let counts = format!(
        "tests=\"{}\" failures=\"{failures}\" errors=\"0\"",
        cases.len()
    );

    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml += &format!("<testsuites name=\"meshsim\" {counts} time=\"{time_s:.3}\">\n");
    xml += &format!(
        "  <testsuite name=\"{}\" {counts} skipped=\"0\" time=\"{time_s:.3}\">\n",
        escape(&summary.scenario)
    );
    xml += &properties(summary);
    for (classname, name, failure) in &cases {
        xml += &testcase(classname, name, failure.as_deref());
    }
    xml += &format!(
        "    <system-out>reproduce: {}</system-out>\n",
        escape(&summary.reproduce)
    );
    xml += "  </testsuite>\n</testsuites>\n";
    xml
}

fn properties(summary: &Summary) -> String {
    let mut props = vec![
        ("seed", summary.seed.to_string()),
        ("mode", summary.mode.as_str().to_owned()),
        ("verdict", summary.verdict.as_str().to_owned()),
        ("reproduce", summary.reproduce.clone()),
    ];
    if let Some(hash) = &summary.trace_hash {
        props.push(("trace_hash", hash.clone()));
    }
    let mut out = String::from("    <properties>\n");
    for (name, value) in props {
        out += &format!(
            "      <property name=\"{name}\" value=\"{}\"/>\n",
            escape(&value)
        );
    }
    out + "    </properties>\n"
}

fn testcase(classname: &str, name: &str, failure: Option<&str>) -> String {
    let open = format!(
        "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
        escape(classname),
        escape(name)
    );
    match failure {
        None => open + "/>\n",
        Some(detail) => format!(
            "{open}>\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
            escape(detail),
            escape(classname),
            escape(detail)
        ),
    }
}

/// Escapes text for XML 1.0 content and attributes. Characters XML 1.0
/// cannot carry at all (most C0 controls) become U+FFFD; tab, newline and
/// carriage return become character references so attribute-value
/// normalisation does not flatten a multi-line detail.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// The XML 1.0 `Char` production (tab, newline and CR handled by the caller).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{self, assert_well_formed};

    #[test]
    fn one_case_per_check_with_failures() {
        let summary = testdata::run().summary;
        let xml = render(&summary);
        assert_well_formed(&xml);
        assert_eq!(xml.matches("<testsuite ").count(), 1);
        assert!(xml.contains(&format!(
            "<testsuite name=\"{}\"",
            escape(&summary.scenario)
        )));
        assert_eq!(xml.matches("<testcase ").count(), summary.checks.len());
        let failed = summary.checks.iter().filter(|c| !c.passed).count();
        assert_eq!(xml.matches("<failure ").count(), failed);
        assert!(xml.contains("classname=\"slo\" name=\"p99 &lt; 250ms\""));
    }

    #[test]
    fn hostile_text_stays_well_formed() {
        let summary = testdata::hostile_run().summary;
        let xml = render(&summary);
        assert_well_formed(&xml);
        assert!(xml.contains("&lt;b&gt;boom&lt;/b&gt;"));
        assert!(!xml.contains('\u{1}'));
    }

    #[test]
    fn failed_verdict_without_failed_checks_still_fails() {
        let summary = testdata::empty_run().summary;
        assert_eq!(summary.verdict, Verdict::Fail);
        let xml = render(&summary);
        assert_well_formed(&xml);
        assert!(xml.contains("classname=\"run\" name=\"verdict\""));
        assert!(xml.contains("failures=\"1\""));
    }

    #[test]
    fn escape_handles_controls_and_quotes() {
        assert_eq!(escape("a\u{1}b\n\"'"), "a\u{FFFD}b&#10;&quot;&apos;");
    }
}
