//! One configuration file as a tree of values that remember their file and position.
//!
//! YAML and JSON are read into the same small tree, because after config.d merging the keys
//! of one job may come from several files, and an error must name the file, line and column
//! that set the key. serde's own `Value` types keep neither, hence this one. Both syntaxes
//! are read into it by `yaml` (JSON is YAML), JSON once serde_json has found it valid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::IgnoredAny;

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
    if origin.format == Format::Json {
        // serde_json first, for JSON's rules and messages (dsari reads these files with
        // Python's json module, as strict); the tree is then read as YAML, which JSON is.
        serde_json::from_str::<IgnoredAny>(text).map_err(|e| {
            let message = format!("invalid JSON: {}", strip_location(&e.to_string()));
            ConfigError::whole(&origin.path, message).at(Some(Position {
                line: e.line(),
                column: Some(e.column()),
            }))
        })?;
    }
    super::yaml::parse(text, origin)
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
        assert_eq!(at_path(&node, &["jobs", "a", "command"]).key_at, pos(2, 9));
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
