//! One configuration file as a tree of values that remember their file and position.
//!
//! YAML and JSON are read into the same small tree, because after config.d merging the keys
//! of one job may come from several files, and an error must name the file, line and column
//! that set the key. serde's own `Value` types keep neither, hence this one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::config::{ConfigError, Position};

/// The two syntaxes a configuration file may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Yaml,
    Json,
}

/// The file a value came from.
#[derive(Debug, PartialEq)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
}

impl SourceFile {
    /// The directory that relative paths written in this file are resolved against.
    pub(crate) fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// A value of the merged tree, with the file that set it and where in that file.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) origin: Arc<SourceFile>,
    /// Where the value starts.
    pub(crate) at: Position,
    /// Where its key starts, for a value in a mapping (else the same as `at`).
    pub(crate) key_at: Position,
}

/// The shapes YAML and JSON have in common, which are all dsari's configuration uses.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(String),
    List(Vec<Node>),
    Map(BTreeMap<String, Node>),
}

impl Value {
    /// The value's type as an error message puts it ("found a list").
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a bool",
            Value::Integer(_) | Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses one file's text into a tree tagged with `origin`.
pub(crate) fn parse(text: &str, origin: &Arc<SourceFile>) -> Result<Node, ConfigError> {
    // Refused before parsing: deep nesting costs parsers time and stack.
    if let Err(deep) = crate::config::nesting::check(text) {
        return Err(
            ConfigError::whole(&origin.path, deep.to_string()).at(Some(Position {
                line: deep.line,
                column: Some(deep.column),
            })),
        );
    }
    match origin.format {
        Format::Json => json(text, origin),
        Format::Yaml => super::yaml::parse(text, origin),
    }
}

/// Values nested deeper than this take the position of their ancestor at this depth: every
/// key runner reads is above it, and each level costs one more pass over its text.
const JSON_POSITION_DEPTH: usize = 8;

/// JSON through serde_json, whose messages name JSON's own rules. Each value is first taken
/// as a slice of the text (`RawValue`), which tells where it starts, then opened.
fn json(text: &str, origin: &Arc<SourceFile>) -> Result<Node, ConfigError> {
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| {
        let message = format!("invalid JSON: {}", strip_location(&e.to_string()));
        ConfigError::whole(&origin.path, message).at(Some(Position {
            line: e.line(),
            column: Some(e.column()),
        }))
    })?;
    let lines = Lines::new(text);
    json_node(raw, text, &lines, origin, 0).map_err(|e| {
        // Cannot happen: the text was read whole above; say so rather than panic.
        ConfigError::whole(&origin.path, format!("invalid JSON: {e}"))
    })
}

fn json_node(
    raw: &RawValue,
    text: &str,
    lines: &Lines,
    origin: &Arc<SourceFile>,
    depth: usize,
) -> Result<Node, serde_json::Error> {
    let slice = raw.get();
    let at = lines.position(slice.as_ptr() as usize - text.as_ptr() as usize);
    let node = |value| Node {
        value,
        origin: Arc::clone(origin),
        at,
        key_at: at,
    };
    if depth >= JSON_POSITION_DEPTH || !slice.starts_with(['{', '[']) {
        let value: serde_json::Value = serde_json::from_str(slice)?;
        return Ok(from_json(value, origin, at));
    }
    if slice.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(slice)?;
        let items = items
            .into_iter()
            .map(|item| json_node(item, text, lines, origin, depth + 1))
            .collect::<Result<_, _>>()?;
        return Ok(node(Value::List(items)));
    }
    // The last of duplicate keys wins, as in serde_json's own maps.
    let entries: BTreeMap<String, &RawValue> = serde_json::from_str(slice)?;
    let entries = entries
        .into_iter()
        .map(|(k, v)| Ok((k, json_node(v, text, lines, origin, depth + 1)?)))
        .collect::<Result<_, serde_json::Error>>()?;
    Ok(node(Value::Map(entries)))
}

/// The byte offsets where lines start, to turn an offset into a line and column, and
/// those of UTF-8 continuation bytes, to count characters without reading the line
/// again: a config written on one line would otherwise cost a scan per value.
struct Lines {
    starts: Vec<usize>,
    continuations: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let continuations = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| b & 0xC0 == 0x80)
            .map(|(i, _)| i)
            .collect();
        Lines {
            starts,
            continuations,
        }
    }

    fn position(&self, offset: usize) -> Position {
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line.saturating_sub(1)];
        let before = |at: usize| self.continuations.partition_point(|&c| c < at);
        let column = offset.saturating_sub(start) - (before(offset) - before(start)) + 1;
        Position {
            line,
            column: Some(column),
        }
    }
}

/// serde_json ends its messages with " at line L column C", which the error shows up front.
fn strip_location(message: &str) -> &str {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match message
        .rsplit_once(" at line ")
        .and_then(|(text, at)| Some((text, at.split_once(" column ")?)))
    {
        Some((text, (line, column))) if digits(line) && digits(column) => text,
        _ => message,
    }
}

/// A JSON value below the depth that keeps positions: all of it at `at`.
fn from_json(value: serde_json::Value, origin: &Arc<SourceFile>, at: Position) -> Node {
    let value = match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => number(n.as_i64(), n.as_f64()),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => Value::List(
            items
                .into_iter()
                .map(|v| from_json(v, origin, at))
                .collect(),
        ),
        serde_json::Value::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (k, from_json(v, origin, at)))
                .collect(),
        ),
    };
    Node {
        value,
        origin: Arc::clone(origin),
        at,
        key_at: at,
    }
}

/// For tests: the node at `path` of nested mappings.
#[cfg(test)]
pub(crate) fn at_path<'a>(node: &'a Node, path: &[&str]) -> &'a Node {
    path.iter().fold(node, |node, key| match &node.value {
        Value::Map(map) => &map[*key],
        other => panic!("{key}: not in {other:?}"),
    })
}

/// For tests: line `line`, column `column`.
#[cfg(test)]
pub(crate) fn pos(line: usize, column: usize) -> Position {
    Position {
        line,
        column: Some(column),
    }
}

/// Integers stay exact when they fit an i64; anything else becomes a float, as in Python.
fn number(int: Option<i64>, float: Option<f64>) -> Value {
    match (int, float) {
        (Some(i), _) => Value::Integer(i),
        (None, Some(f)) => Value::Float(f),
        (None, None) => Value::Float(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_anchors_and_merge_keys_work_as_in_pyyaml() {
        let origin = Arc::new(SourceFile {
            path: PathBuf::from("runner.yaml"),
            format: Format::Yaml,
        });
        let node = parse(
            "base: &base {command: [x], schedule: '@daily'}\n\
             jobs:\n  a:\n    <<: *base\n    schedule: '@hourly'\n",
            &origin,
        )
        .expect("parses");
        let schedule = &at_path(&node, &["jobs", "a", "schedule"]).value;
        assert!(matches!(schedule, Value::String(s) if s == "@hourly"));
        at_path(&node, &["jobs", "a", "command"]);
    }

    #[test]
    fn non_string_keys_and_tags_are_refused() {
        let origin = Arc::new(SourceFile {
            path: PathBuf::from("runner.yaml"),
            format: Format::Yaml,
        });
        let e = parse("environment: {1: x}\n", &origin).expect_err("int key");
        assert_eq!(
            e.to_string(),
            "runner.yaml:1:15: mapping key 1 is not a string; quote it"
        );
        // At the value the tag is on.
        let e = parse("jobs: !custom {}\n", &origin).expect_err("tag");
        assert_eq!(
            e.to_string(),
            "runner.yaml:1:15: YAML tag !custom is not supported"
        );
    }

    #[test]
    fn json_values_know_their_line_and_column() {
        let origin = Arc::new(SourceFile {
            path: PathBuf::from("runner.json"),
            format: Format::Json,
        });
        let node = parse(
            "{\"jobs\": {\n  \"a\": {\"command\": [\"x\"],\n        \"max_execution\": 5},\n  \"b\": {\"k\": \"é\", \"l\": 1, \"k\": 2}}}",
            &origin,
        )
        .expect("parses");
        let at = |path: &[&str]| at_path(&node, path).at;
        assert_eq!(at(&["jobs"]), pos(1, 10));
        assert_eq!(at(&["jobs", "a", "command"]), pos(2, 20));
        assert_eq!(at(&["jobs", "a", "max_execution"]), pos(3, 26));
        // Columns count characters; the last of duplicate keys wins, as in serde_json.
        assert_eq!(at(&["jobs", "b", "l"]), pos(4, 24));
        let k = &at_path(&node, &["jobs", "b", "k"]).value;
        assert!(matches!(k, Value::Integer(2)));
    }

    #[test]
    fn json_columns_count_characters_on_a_long_line_and_after_earlier_lines() {
        let origin = Arc::new(SourceFile {
            path: PathBuf::from("runner.json"),
            format: Format::Json,
        });
        let node = parse(
            "{\"é\": \"ü\",\n \"jobs\": {\"ä\": 1, \"a\": {\"b\": 2}}}",
            &origin,
        )
        .expect("parses");
        let at = |path: &[&str]| at_path(&node, path).at;
        // Line 2 starts after two 2-byte characters on line 1: they do not count there.
        assert_eq!(at(&["jobs"]), pos(2, 10));
        assert_eq!(at(&["jobs", "ä"]), pos(2, 16));
        assert_eq!(at(&["jobs", "a", "b"]), pos(2, 30));
    }

    #[test]
    fn locations_are_stripped_from_messages() {
        assert_eq!(
            strip_location("trailing comma at line 2 column 35"),
            "trailing comma"
        );
        assert_eq!(
            strip_location("look at line endings"),
            "look at line endings"
        );
    }
}
