//! `--set path=value`: vary a scenario from the command line without
//! editing the file. The override edits the TOML document, and the result is
//! parsed and validated exactly like the file, so a bad override is refused
//! with the same care as a bad file.
//!
//! Paths are dotted keys. In an array of tables, a segment selects the entry
//! whose `name` (or `operation`) equals it, or an index: `services.registry.replicas=5`,
//! `workload.phases.peak.arrival.rate=2000`. Two shortcuts read like the
//! file: `workload.peak.rate=2000` (a phase by name, and `rate` of its
//! arrival).

use std::str::FromStr;

use toml_edit::{DocumentMut, Item, Table, Value};

/// One `path=value` override.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    path: Vec<String>,
    value: String,
    raw: String,
}

impl FromStr for Override {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let (path, value) = raw
            .split_once('=')
            .ok_or_else(|| format!("--set {raw}: expected path=value"))?;
        let path: Vec<String> = path.trim().split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("--set {raw}: the path has an empty segment"));
        }
        Ok(Override {
            path,
            value: value.trim().to_owned(),
            raw: raw.to_owned(),
        })
    }
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Applies overrides to scenario text; the error names the override.
pub fn apply(text: &str, overrides: &[Override]) -> Result<String, String> {
    if overrides.is_empty() {
        return Ok(text.to_owned());
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("cannot apply --set to a file that is not TOML: {e}"))?;
    for o in overrides {
        set(doc.as_table_mut(), &o.path, parse_value(&o.value))
            .map_err(|e| format!("--set {o}: {e}"))?;
    }
    Ok(doc.to_string())
}

/// A TOML value (`2000`, `"5s"`, `true`, `[1, 2]`), or else a bare string.
fn parse_value(text: &str) -> Value {
    text.parse::<Value>().unwrap_or_else(|_| Value::from(text))
}

fn set(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (key, rest) = path.split_first().expect("paths are non-empty");
    if rest.is_empty() {
        if table
            .get(key)
            .is_some_and(|item| item.is_table() || item.is_array_of_tables())
        {
            return Err(format!("`{key}` is a section, not a value"));
        }
        table.insert(key, Item::Value(value));
        return Ok(());
    }
    match table.get_mut(key) {
        Some(Item::Table(inner)) => set(inner, rest, value),
        Some(Item::Value(Value::InlineTable(inline))) => {
            let mut inner = inline.clone().into_table();
            set(&mut inner, rest, value)?;
            *table.get_mut(key).expect("present") =
                Item::Value(Value::InlineTable(inner.into_inline_table()));
            Ok(())
        }
        Some(Item::ArrayOfTables(array)) => {
            let (selector, rest) = rest
                .split_first()
                .ok_or_else(|| format!("`{key}` is a list; name an entry"))?;
            let entry = select(array, selector)
                .ok_or_else(|| format!("no entry `{selector}` in `{key}`"))?;
            if rest.is_empty() {
                return Err(format!("`{key}.{selector}` is an entry, not a value"));
            }
            set(entry, rest, value)
        }
        _ => shortcut(table, key, rest, value),
    }
}

/// `workload.<phase>…` means `workload.phases.<phase>…`, and a phase's
/// `rate` means its arrival's rate.
fn shortcut(table: &mut Table, key: &str, rest: &[String], value: Value) -> Result<(), String> {
    if let Some(Item::ArrayOfTables(phases)) = table.get_mut("phases")
        && let Some(phase) = select(phases, key)
    {
        let path: Vec<String> = if rest == ["rate"] {
            vec!["arrival".into(), "rate".into()]
        } else {
            rest.to_vec()
        };
        return set(phase, &path, value);
    }
    Err(format!("no section `{key}`"))
}

fn select<'a>(array: &'a mut toml_edit::ArrayOfTables, selector: &str) -> Option<&'a mut Table> {
    if let Ok(index) = selector.parse::<usize>() {
        return array.get_mut(index);
    }
    let named = |t: &Table| {
        ["name", "operation"]
            .iter()
            .any(|k| t.get(k).and_then(Item::as_str) == Some(selector))
    };
    array.iter_mut().find(|t| named(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
name = "t"
[[services]]
name = "registry"
replicas = 2
[workload]
target = "gateway"
[[workload.phases]]
name = "peak"
duration = "1s"
arrival = { kind = "poisson", rate = 10 }
"#;

    fn with(sets: &[&str]) -> Result<String, String> {
        let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
        apply(TEXT, &overrides)
    }

    #[test]
    fn paths_select_entries_by_name_and_shortcuts_work() {
        let text = with(&[
            "services.registry.replicas=5",
            "workload.peak.rate=2000",
            "workload.phases.peak.duration=\"30s\"",
        ])
        .unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(doc["services"][0]["replicas"].as_integer(), Some(5));
        assert_eq!(
            doc["workload"]["phases"][0]["arrival"]["rate"].as_integer(),
            Some(2000)
        );
        assert_eq!(
            doc["workload"]["phases"][0]["duration"].as_str(),
            Some("30s")
        );
    }

    #[test]
    fn bad_paths_are_named() {
        assert!(
            with(&["workload.nope.rate=1"])
                .unwrap_err()
                .contains("workload.nope.rate")
        );
        assert!(
            with(&["services.registry=1"])
                .unwrap_err()
                .contains("entry, not a value")
        );
        assert!(with(&["workload=1"]).unwrap_err().contains("section"));
        assert!("noequals".parse::<Override>().is_err());
        assert!("a..b=1".parse::<Override>().is_err());
    }
}
