//! JSON has no NaN or infinity: serde_json writes them as `null`. Reading
//! `null` back as NaN lets [`crate::rebuild`] read every file
//! [`crate::write_all`] wrote, even from a producer that measured nothing
//! (0/0) — the charts then treat the value as missing.

use serde::{Deserialize, Deserializer};

/// Deserializes an `f64` that may be `null` (NaN or ±infinity at write time).
pub(crate) fn nullable<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use crate::{LatencyMs, Window, WindowKind};

    #[test]
    fn null_reads_as_nan_and_numbers_as_numbers() {
        let window = Window {
            start_s: f64::NAN,
            end_s: 2.5,
            label: "x".into(),
            kind: WindowKind::Fault,
        };
        let text = serde_json::to_string(&window).unwrap();
        assert!(text.contains("\"start_s\":null"), "{text}");
        let back: Window = serde_json::from_str(&text).unwrap();
        assert!(back.start_s.is_nan());
        assert_eq!(back.end_s, 2.5);
        let latency: LatencyMs =
            serde_json::from_str(r#"{"p50": null, "p90": 1, "p99": 2.5, "p999": 3, "max": null}"#)
                .unwrap();
        assert!(latency.p50.is_nan() && latency.max.is_nan());
        assert_eq!(latency.p99, 2.5);
    }
}
