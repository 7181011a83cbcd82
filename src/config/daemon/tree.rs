//! One configuration file as a tree of values that remember their file.
//!
//! YAML and JSON are read into the same small tree, because after config.d merging the keys
//! of one job may come from several files, and an error must name the file that set the key.
//! serde's own `Value` types keep no origin, hence this one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ConfigError;

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

/// A value of the merged tree, with the file that set it.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) origin: Arc<SourceFile>,
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
    let parse_error = |line: Option<usize>, column: Option<usize>, message: String| {
        ConfigError::whole(&origin.path, message)
            .at(line.map(|line| crate::config::Position { line, column }))
    };
    // Refused before parsing: libyaml takes quadratic time on deep nesting.
    if let Err(deep) = crate::config::nesting::check(text) {
        return Err(parse_error(
            Some(deep.line),
            Some(deep.column),
            deep.to_string(),
        ));
    }
    match origin.format {
        Format::Json => {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                let message = format!("invalid JSON: {}", strip_location(&e.to_string()));
                parse_error(Some(e.line()), Some(e.column()), message)
            })?;
            Ok(from_json(value, origin))
        }
        Format::Yaml => {
            let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
                let location = e.location();
                let message = format!("invalid YAML: {}", strip_location(&e.to_string()));
                parse_error(
                    location.as_ref().map(|l| l.line()),
                    location.as_ref().map(|l| l.column()),
                    message,
                )
            })?;
            // PyYAML, which dsari uses, applies `<<` merge keys; serde_yaml leaves them to us.
            value
                .apply_merge()
                .map_err(|e| parse_error(None, None, format!("invalid YAML merge key: {e}")))?;
            from_yaml(value, origin)
        }
    }
}

/// serde's messages carry " at line L column C" (at the end for JSON, sometimes mid-sentence
/// for YAML), which the error already shows up front as `file:L:C`.
fn strip_location(message: &str) -> String {
    let mut out = message.to_owned();
    while let Some(at) = out.find(" at line ") {
        let rest = &out[at + " at line ".len()..];
        let line_digits = rest.chars().take_while(char::is_ascii_digit).count();
        let Some(after) = rest[line_digits..].strip_prefix(" column ") else {
            break;
        };
        let column_digits = after.chars().take_while(char::is_ascii_digit).count();
        if line_digits == 0 || column_digits == 0 {
            break;
        }
        let end = out.len() - after.len() + column_digits;
        out.replace_range(at..end, "");
    }
    out
}

fn from_json(value: serde_json::Value, origin: &Arc<SourceFile>) -> Node {
    let value = match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => number(n.as_i64(), n.as_f64()),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => {
            Value::List(items.into_iter().map(|v| from_json(v, origin)).collect())
        }
        serde_json::Value::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (k, from_json(v, origin)))
                .collect(),
        ),
    };
    Node {
        value,
        origin: Arc::clone(origin),
    }
}

fn from_yaml(value: serde_yaml::Value, origin: &Arc<SourceFile>) -> Result<Node, ConfigError> {
    let value = match value {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => number(n.as_i64(), n.as_f64()),
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => Value::List(
            items
                .into_iter()
                .map(|v| from_yaml(v, origin))
                .collect::<Result<_, _>>()?,
        ),
        serde_yaml::Value::Mapping(map) => {
            let mut out = BTreeMap::new();
            for (k, v) in map {
                let key = match k {
                    serde_yaml::Value::String(s) => s,
                    other => {
                        return Err(ConfigError::whole(
                            &origin.path,
                            format!(
                                "mapping key {} is not a string; quote it",
                                yaml_scalar_text(&other)
                            ),
                        ));
                    }
                };
                out.insert(key, from_yaml(v, origin)?);
            }
            Value::Map(out)
        }
        serde_yaml::Value::Tagged(tagged) => {
            return Err(ConfigError::whole(
                &origin.path,
                format!("YAML tag {} is not supported", tagged.tag),
            ));
        }
    };
    Ok(Node {
        value,
        origin: Arc::clone(origin),
    })
}

/// Integers stay exact when they fit an i64; anything else becomes a float, as in Python.
fn number(int: Option<i64>, float: Option<f64>) -> Value {
    match (int, float) {
        (Some(i), _) => Value::Integer(i),
        (None, Some(f)) => Value::Float(f),
        (None, None) => Value::Float(f64::NAN),
    }
}

fn yaml_scalar_text(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::Null => "null".to_owned(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        other => format!("of type {}", from_kind(other)),
    }
}

fn from_kind(value: &serde_yaml::Value) -> &'static str {
    match value {
        serde_yaml::Value::Sequence(_) => "list",
        serde_yaml::Value::Mapping(_) => "mapping",
        _ => "tagged value",
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
        let Value::Map(root) = node.value else {
            panic!("map")
        };
        let Value::Map(jobs) = &root["jobs"].value else {
            panic!("jobs")
        };
        let Value::Map(a) = &jobs["a"].value else {
            panic!("a")
        };
        assert!(matches!(&a["schedule"].value, Value::String(s) if s == "@hourly"));
        assert!(a.contains_key("command"));
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
            "runner.yaml: mapping key 1 is not a string; quote it"
        );
        let e = parse("jobs: !custom {}\n", &origin).expect_err("tag");
        assert_eq!(
            e.to_string(),
            "runner.yaml: YAML tag !custom is not supported"
        );
    }

    #[test]
    fn locations_are_stripped_from_messages() {
        assert_eq!(
            strip_location("trailing comma at line 2 column 35"),
            "trailing comma"
        );
        assert_eq!(
            strip_location("did not find ']' at line 3 column 1, while parsing a flow sequence"),
            "did not find ']', while parsing a flow sequence"
        );
        assert_eq!(
            strip_location("look at line endings"),
            "look at line endings"
        );
    }
}
