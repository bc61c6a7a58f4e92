//! The YAML layer of the import: documents parsed by `saphyr` into small
//! owned nodes that keep their line and column, and a field reader that
//! remembers which keys were read, so every key nobody read becomes a
//! warning with its position (nothing is dropped silently).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

use crate::SpecError;

/// A 1-based line and column in one file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// One YAML node and where it starts.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub at: Pos,
    pub value: Value,
}

/// A node's content. Kubernetes manifests use string keys only.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Pos, Node)>),
}

/// Where diagnostics go: the file a document came from, its warnings.
#[derive(Debug)]
pub(crate) struct Sink {
    pub path: PathBuf,
    pub warnings: Vec<Diagnostic>,
}

/// A located message.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The YAML file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What was found and what meshsim does about it.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl Diagnostic {
    /// The same message as a scenario error (exit code 2).
    pub fn into_error(self) -> SpecError {
        SpecError::Invalid {
            path: self.path,
            line: self.line,
            column: self.column,
            message: self.message,
        }
    }
}

impl Sink {
    pub fn new(path: &Path) -> Sink {
        Sink {
            path: path.to_owned(),
            warnings: Vec::new(),
        }
    }

    pub fn error(&self, at: Pos, message: impl Into<String>) -> SpecError {
        self.diagnostic(at, message).into_error()
    }

    pub fn warn(&mut self, at: Pos, message: impl Into<String>) {
        let diagnostic = self.diagnostic(at, message);
        self.warnings.push(diagnostic);
    }

    fn diagnostic(&self, at: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            path: self.path.clone(),
            line: at.line,
            column: at.column,
            message: message.into(),
        }
    }
}

/// Every document of a YAML stream, in order; empty documents are skipped.
pub(crate) fn parse_documents(sink: &Sink, text: &str) -> Result<Vec<Node>, SpecError> {
    let documents = MarkedYamlOwned::load_from_str(text).map_err(|e| {
        let marker = e.marker();
        sink.error(
            Pos {
                line: marker.line(),
                column: marker.col() + 1,
            },
            format!("not valid YAML: {}", e.info()),
        )
    })?;
    documents
        .iter()
        .map(|document| convert(sink, document))
        .filter(|node| {
            !matches!(
                node,
                Ok(Node {
                    value: Value::Null,
                    ..
                })
            )
        })
        .collect()
}

fn position(node: &MarkedYamlOwned) -> Pos {
    Pos {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

fn convert(sink: &Sink, node: &MarkedYamlOwned) -> Result<Node, SpecError> {
    let at = position(node);
    let value = match &node.data {
        YamlDataOwned::Representation(text, ..) => Value::Str(text.clone()),
        YamlDataOwned::Value(scalar) => scalar_value(scalar),
        YamlDataOwned::Sequence(items) => Value::Seq(
            items
                .iter()
                .map(|item| convert(sink, item))
                .collect::<Result<_, _>>()?,
        ),
        YamlDataOwned::Mapping(entries) => {
            let mut map = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let YamlDataOwned::Value(ScalarOwned::String(name)) = &key.data else {
                    return Err(sink.error(position(key), "expected a string key"));
                };
                map.push((name.clone(), position(key), convert(sink, value)?));
            }
            Value::Map(map)
        }
        YamlDataOwned::Tagged(_, inner) => convert(sink, inner)?.value,
        YamlDataOwned::Alias(_) => {
            return Err(sink.error(at, "YAML aliases are not supported; write the value out"));
        }
        YamlDataOwned::BadValue => return Err(sink.error(at, "not a valid YAML value")),
    };
    Ok(Node { at, value })
}

fn scalar_value(scalar: &ScalarOwned) -> Value {
    match scalar {
        ScalarOwned::Null => Value::Null,
        ScalarOwned::Boolean(b) => Value::Bool(*b),
        ScalarOwned::Integer(i) => Value::Int(*i),
        ScalarOwned::FloatingPoint(f) => Value::Float(f.into_inner()),
        ScalarOwned::String(s) => Value::Str(s.clone()),
    }
}

impl Node {
    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn str(&self, sink: &Sink, what: &str) -> Result<&str, SpecError> {
        match &self.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.expected(sink, what, "a string")),
        }
    }

    /// A string, or a number written without quotes (`"503"` or `503`).
    pub fn text(&self, sink: &Sink, what: &str) -> Result<String, SpecError> {
        match &self.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Float(f) => Ok(f.to_string()),
            _ => Err(self.expected(sink, what, "a string")),
        }
    }

    pub fn int(&self, sink: &Sink, what: &str) -> Result<i64, SpecError> {
        match &self.value {
            Value::Int(i) => Ok(*i),
            _ => Err(self.expected(sink, what, "an integer")),
        }
    }

    pub fn number(&self, sink: &Sink, what: &str) -> Result<f64, SpecError> {
        match &self.value {
            Value::Int(i) => Ok(*i as f64),
            Value::Float(f) => Ok(*f),
            _ => Err(self.expected(sink, what, "a number")),
        }
    }

    pub fn bool(&self, sink: &Sink, what: &str) -> Result<bool, SpecError> {
        match &self.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.expected(sink, what, "true or false")),
        }
    }

    pub fn seq(&self, sink: &Sink, what: &str) -> Result<&[Node], SpecError> {
        match &self.value {
            Value::Seq(items) => Ok(items),
            Value::Null => Ok(&[]),
            _ => Err(self.expected(sink, what, "a list")),
        }
    }

    /// A list of strings.
    pub fn strings(&self, sink: &Sink, what: &str) -> Result<Vec<String>, SpecError> {
        self.seq(sink, what)?
            .iter()
            .map(|item| item.str(sink, what).map(str::to_owned))
            .collect()
    }

    pub fn fields<'n>(&'n self, sink: &Sink, what: &str) -> Result<Fields<'n>, SpecError> {
        match &self.value {
            Value::Map(entries) => Ok(Fields {
                what: what.to_owned(),
                at: self.at,
                entries,
                read: entries.iter().map(|_| Cell::new(false)).collect(),
            }),
            Value::Null => Ok(Fields {
                what: what.to_owned(),
                at: self.at,
                entries: &[],
                read: Vec::new(),
            }),
            _ => Err(self.expected(sink, what, "a mapping")),
        }
    }

    fn expected(&self, sink: &Sink, what: &str, expected: &str) -> SpecError {
        sink.error(
            self.at,
            format!("{what}: expected {expected}, found {}", self.kind()),
        )
    }
}

/// A mapping being read. Keys that are never read are reported by
/// [`Fields::finish`], so a new field in a source format cannot slip by.
pub(crate) struct Fields<'n> {
    what: String,
    at: Pos,
    entries: &'n [(String, Pos, Node)],
    read: Vec<Cell<bool>>,
}

impl<'n> Fields<'n> {
    /// Where the mapping starts.
    pub fn at(&self) -> Pos {
        self.at
    }

    /// The value of `key`, marking it read.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        let index = self.entries.iter().position(|(k, _, _)| k == key)?;
        self.read[index].set(true);
        Some(&self.entries[index].2)
    }

    /// The key's own position (for messages about the key).
    #[cfg(test)]
    pub fn key_at(&self, key: &str) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, at, _)| *at)
    }

    /// The value of `key`, or an error naming what is missing.
    pub fn require(&self, sink: &Sink, key: &str) -> Result<&'n Node, SpecError> {
        self.get(key)
            .ok_or_else(|| sink.error(self.at, format!("{} needs `{key}`", self.what)))
    }

    /// A key meshsim reads and deliberately does not model: a warning
    /// that says why.
    pub fn unmodelled(&self, sink: &mut Sink, key: &str, why: &str) {
        if let Some(index) = self.entries.iter().position(|(k, _, _)| k == key) {
            self.read[index].set(true);
            let at = self.entries[index].1;
            sink.warn(at, format!("{}.{key} is not modelled: {why}", self.what));
        }
    }

    /// A key meshsim reads and has nothing to do with (it changes nothing
    /// a simulation can observe), marked read without a warning.
    pub fn ignore(&self, key: &str) {
        if let Some(index) = self.entries.iter().position(|(k, _, _)| k == key) {
            self.read[index].set(true);
        }
    }

    /// Warns about every key nobody read.
    pub fn finish(self, sink: &mut Sink) {
        for ((key, at, _), read) in self.entries.iter().zip(&self.read) {
            if !read.get() {
                sink.warn(
                    *at,
                    format!(
                        "{}.{key} is not read by meshsim's import (ignored)",
                        self.what
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_their_lines_and_columns() {
        let sink = Sink::new(Path::new("x.yaml"));
        let docs = parse_documents(&sink, "a: 1\n---\nkind: List\nitems:\n  - b: \"x\"\n").unwrap();
        assert_eq!(docs.len(), 2);
        let fields = docs[1].fields(&sink, "doc").unwrap();
        let items = fields.get("items").unwrap().seq(&sink, "items").unwrap();
        assert_eq!(items[0].at, Pos { line: 5, column: 5 });
        assert_eq!(fields.key_at("kind"), Some(Pos { line: 3, column: 1 }));
    }

    #[test]
    fn invalid_yaml_is_located() {
        let sink = Sink::new(Path::new("x.yaml"));
        let error = parse_documents(&sink, "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(error.to_string().starts_with("x.yaml:"), "{error}");
    }

    #[test]
    fn unread_keys_become_warnings() {
        let mut sink = Sink::new(Path::new("x.yaml"));
        let docs = parse_documents(&sink, "a: 1\nmirror: {}\n").unwrap();
        let fields = docs[0].fields(&sink, "spec").unwrap();
        fields.get("a");
        fields.finish(&mut sink);
        assert_eq!(
            sink.warnings[0].to_string(),
            "x.yaml:2:1: spec.mirror is not read by meshsim's import (ignored)"
        );
    }
}
