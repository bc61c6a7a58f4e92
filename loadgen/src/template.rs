//! Request templates: paths and bodies with per-request placeholders.
//!
//! | placeholder | becomes |
//! |---|---|
//! | `{{seq}}` | the request's sequence number in the schedule |
//! | `{{rand_int:A:B}}` | a seeded integer in `A..=B` |
//! | `{{rand_choice:a\|b\|c}}` | one of the listed words, seeded |
//! | `{{idempotency_key}}` | the value of the `idempotency-key` header |
//!
//! The random draws come from a stream of their own per request (the
//! template seed, stream = sequence number), so a request's values depend
//! only on the seed and its number, never on completion order.

use bytes::{BufMut, Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// Placeholders a template may hold (a bound on a hostile body).
pub const PLACEHOLDERS_MAX: usize = 1024;

/// Why a template did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(String);

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(Bytes),
    Seq,
    RandInt { low: i64, high: i64 },
    RandChoice(Vec<Bytes>),
    IdempotencyKey,
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a request contributes to its template.
pub struct RequestVars<'a> {
    seq: u64,
    idempotency_key: &'a str,
    template_seed: u64,
    /// Made on the first draw: most requests have no random placeholder,
    /// and seeding a ChaCha stream is the costliest part of a render.
    rng: Option<ChaCha12Rng>,
}

impl<'a> RequestVars<'a> {
    /// The values for request `seq`; random placeholders draw from
    /// [`request_rng`]`(template_seed, seq)`, path first, then body.
    pub fn new(seq: u64, idempotency_key: &'a str, template_seed: u64) -> Self {
        RequestVars {
            seq,
            idempotency_key,
            template_seed,
            rng: None,
        }
    }

    fn rng(&mut self) -> &mut ChaCha12Rng {
        let (seed, seq) = (self.template_seed, self.seq);
        self.rng.get_or_insert_with(|| request_rng(seed, seq))
    }
}

/// The random stream of request `seq` under `template_seed`.
pub fn request_rng(template_seed: u64, seq: u64) -> ChaCha12Rng {
    let mut rng = ChaCha12Rng::seed_from_u64(template_seed);
    rng.set_stream(seq);
    rng
}

/// The idempotency key of request `seq`: unique per run key and request,
/// identical when the run is repeated with the same seed (so a replayed
/// order is recognised as the same order).
pub fn idempotency_key(run_key: u64, seq: u64) -> String {
    format!("{run_key:016x}-{seq:08x}")
}

fn placeholder(inner: &str) -> Result<Part, TemplateError> {
    let bad = |why: &str| TemplateError(format!("`{{{{{inner}}}}}` {why}"));
    let mut fields = inner.trim().splitn(2, ':');
    match (fields.next(), fields.next()) {
        (Some("seq"), None) => Ok(Part::Seq),
        (Some("idempotency_key"), None) => Ok(Part::IdempotencyKey),
        (Some("rand_int"), Some(range)) => {
            let (low, high) = range
                .split_once(':')
                .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                .ok_or_else(|| bad("needs two integers, like {{rand_int:1:100}}"))?;
            if low > high {
                return Err(bad("has its bounds the wrong way round"));
            }
            Ok(Part::RandInt { low, high })
        }
        (Some("rand_choice"), Some(words)) => {
            let words: Vec<Bytes> = words
                .split('|')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect();
            Ok(Part::RandChoice(words))
        }
        _ => Err(bad(
            "is not a placeholder; expected seq, rand_int:A:B, rand_choice:a|b or idempotency_key",
        )),
    }
}

impl Template {
    /// Parses `text`. Bytes outside `{{…}}` are copied as they are (a body
    /// need not be UTF-8); a `{{` without `}}` is an error.
    pub fn parse(text: &[u8]) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = find(rest, b"{{") {
            if open > 0 {
                parts.push(Part::Text(Bytes::copy_from_slice(&rest[..open])));
            }
            let after = &rest[open + 2..];
            let close = find(after, b"}}").ok_or_else(|| {
                TemplateError(format!(
                    "`{{{{` at byte {} is never closed",
                    text.len() - rest.len() + open
                ))
            })?;
            let inner = std::str::from_utf8(&after[..close])
                .map_err(|_| TemplateError("a placeholder is not UTF-8".into()))?;
            parts.push(placeholder(inner)?);
            if parts.len() > PLACEHOLDERS_MAX * 2 {
                return Err(TemplateError(format!(
                    "more than {PLACEHOLDERS_MAX} placeholders"
                )));
            }
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(Bytes::copy_from_slice(rest)));
        }
        Ok(Template { parts })
    }

    /// True when there is nothing to fill in.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Fills the template for one request.
    pub fn render(&self, vars: &mut RequestVars<'_>) -> Bytes {
        match self.parts.as_slice() {
            [] => return Bytes::new(),
            [Part::Text(text)] => return text.clone(),
            _ => {}
        }
        let mut out = BytesMut::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.put_slice(text),
                Part::Seq => out.put_slice(vars.seq.to_string().as_bytes()),
                Part::IdempotencyKey => out.put_slice(vars.idempotency_key.as_bytes()),
                Part::RandInt { low, high } => {
                    let value: i64 = vars.rng().random_range(*low..=*high);
                    out.put_slice(value.to_string().as_bytes());
                }
                Part::RandChoice(words) => {
                    let pick = vars.rng().random_range(0..words.len());
                    out.put_slice(&words[pick]);
                }
            }
        }
        out.freeze()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, seq: u64) -> String {
        let template = Template::parse(template.as_bytes()).unwrap();
        let key = idempotency_key(0xabc, seq);
        let mut vars = RequestVars::new(seq, &key, 7);
        String::from_utf8(template.render(&mut vars).to_vec()).unwrap()
    }

    #[test]
    fn fills_every_placeholder() {
        let text = render(
            r#"{"n":{{seq}},"qty":{{ rand_int:1:5 }},"buyer":"{{rand_choice:acme|zeta}}","key":"{{idempotency_key}}"}"#,
            42,
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["n"], 42);
        assert!((1..=5).contains(&value["qty"].as_i64().unwrap()), "{text}");
        assert!(["acme", "zeta"].contains(&value["buyer"].as_str().unwrap()));
        assert_eq!(value["key"], "0000000000000abc-0000002a");
    }

    #[test]
    fn draws_depend_only_on_seed_and_seq() {
        let t = "{{rand_int:0:1000000}}";
        assert_eq!(render(t, 3), render(t, 3));
        let distinct: std::collections::BTreeSet<String> = (0..50).map(|s| render(t, s)).collect();
        assert!(distinct.len() > 45, "{distinct:?}");
        let draws: Vec<i64> = (0..20_000)
            .map(|s| render("{{rand_int:1:4}}", s).parse().unwrap())
            .collect();
        for v in 1..=4 {
            let share = draws.iter().filter(|d| **d == v).count() as f64 / draws.len() as f64;
            assert!((share - 0.25).abs() < 0.02, "{v}: {share}");
        }
    }

    #[test]
    fn literal_text_is_untouched() {
        assert_eq!(render("plain {body} }}", 1), "plain {body} }}");
        assert!(Template::parse(b"x").unwrap().is_literal());
        assert!(!Template::parse(b"{{seq}}").unwrap().is_literal());
    }

    #[test]
    fn rejects_what_it_cannot_fill() {
        for (text, expected) in [
            ("{{seq", "never closed"),
            ("{{nope}}", "not a placeholder"),
            ("{{rand_int:5}}", "two integers"),
            ("{{rand_int:9:1}}", "wrong way round"),
        ] {
            let error = Template::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
