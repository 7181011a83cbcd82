//! YAML text into the configuration tree, with the line and column of every key and value.
//!
//! The events come from saphyr-parser, a maintained YAML 1.2 parser that marks each event
//! with its span (serde_yaml, used before, is deprecated upstream and keeps no positions in
//! its values). Building the tree is the part written here: plain scalars are typed by the
//! YAML 1.2 core schema, as serde_yaml typed them; anchors and aliases are resolved, with a
//! bound on how much the aliases of one file may copy; `<<` merge keys are applied as
//! PyYAML, dsari's reader, applies them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};

use super::tree::{Node, SourceFile, Value};
use crate::config::{ConfigError, Position};

/// At most this many values may be copied by the aliases of one file (a "billion laughs"
/// file is refused, not expanded).
const MAX_ALIAS_COPIES: usize = 100_000;

/// Parses one YAML document into a tree tagged with `origin`; an empty file is null.
pub(super) fn parse(text: &str, origin: &Arc<SourceFile>) -> Result<Node, ConfigError> {
    let mut builder = Builder {
        origin,
        stack: Vec::new(),
        anchors: HashMap::new(),
        copies: 0,
        root: None,
        documents: 0,
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            builder.error(
                Some(position(e.marker())),
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        builder.event(event, position(&span.start))?;
    }
    Ok(builder.root.unwrap_or_else(|| Node {
        value: Value::Null,
        origin: Arc::clone(origin),
        at: Position::default(),
        key_at: Position::default(),
    }))
}

fn position(mark: &Marker) -> Position {
    Position {
        line: mark.line(),
        column: Some(mark.col() + 1),
    }
}

/// A mapping or list being read.
enum Frame {
    List {
        at: Position,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        at: Position,
        anchor: usize,
        entries: BTreeMap<String, Node>,
        /// The key read, waiting for its value.
        key: Option<(String, Position)>,
        /// The values of `<<` keys, merged in when the mapping ends.
        merges: Vec<Node>,
    },
}

struct Builder<'a> {
    origin: &'a Arc<SourceFile>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    copies: usize,
    root: Option<Node>,
    documents: usize,
}

impl Builder<'_> {
    fn error(&self, at: Option<Position>, message: String) -> ConfigError {
        ConfigError::whole(&self.origin.path, message).at(at)
    }

    fn node(&self, value: Value, at: Position) -> Node {
        Node {
            value,
            origin: Arc::clone(self.origin),
            at,
            key_at: at,
        }
    }

    fn event(&mut self, event: Event<'_>, at: Position) -> Result<(), ConfigError> {
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.error(
                        Some(at),
                        "invalid YAML: a configuration file holds one document".to_owned(),
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = self.scalar(&text, style, tag.as_deref(), at)?;
                self.complete(self.node(value, at), anchor)?;
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "seq", at)?;
                self.stack.push(Frame::List {
                    at,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "map", at)?;
                self.stack.push(Frame::Map {
                    at,
                    anchor,
                    entries: BTreeMap::new(),
                    key: None,
                    merges: Vec::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::List { at, anchor, items }) => {
                        (self.node(Value::List(items), at), anchor)
                    }
                    Some(Frame::Map {
                        at,
                        anchor,
                        mut entries,
                        merges,
                        ..
                    }) => {
                        for merge in merges {
                            merge_into(&mut entries, merge)?;
                        }
                        (self.node(Value::Map(entries), at), anchor)
                    }
                    None => return Ok(()),
                };
                self.complete(node, anchor)?;
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id) else {
                    return Err(self.error(
                        Some(at),
                        "invalid YAML: an alias refers to a value that contains it".to_owned(),
                    ));
                };
                self.copies += size;
                if self.copies > MAX_ALIAS_COPIES {
                    return Err(self.error(
                        Some(at),
                        format!("invalid YAML: aliases copy more than {MAX_ALIAS_COPIES} values"),
                    ));
                }
                let mut node = node.clone();
                node.at = at;
                node.key_at = at;
                self.complete(node, 0)?;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    /// A scalar's value: typed by the core schema when plain, text when quoted or a block.
    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        at: Position,
    ) -> Result<Value, ConfigError> {
        match tag {
            None if style == ScalarStyle::Plain => Ok(plain(text)),
            None => Ok(Value::String(text.to_owned())),
            Some(tag) if tag.is_yaml_core_schema() && tag.suffix == "str" => {
                Ok(Value::String(text.to_owned()))
            }
            Some(tag)
                if tag.is_yaml_core_schema()
                    && ["int", "float", "bool", "null"].contains(&tag.suffix.as_str()) =>
            {
                Ok(plain(text))
            }
            Some(tag) => Err(self.error(Some(at), format!("YAML tag {tag} is not supported"))),
        }
    }

    fn check_collection_tag(
        &self,
        tag: Option<&Tag>,
        core: &str,
        at: Position,
    ) -> Result<(), ConfigError> {
        match tag {
            Some(tag) if !(tag.is_yaml_core_schema() && tag.suffix == core) => {
                Err(self.error(Some(at), format!("YAML tag {tag} is not supported")))
            }
            _ => Ok(()),
        }
    }

    /// Puts a finished value where it belongs: the root, a list, a mapping's key or value.
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), ConfigError> {
        if anchor != 0 {
            let size = count(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::List { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                merges,
                ..
            }) => match key.take() {
                None => {
                    let Value::String(text) = node.value else {
                        let what = key_text(&node.value);
                        return Err(self.error(
                            Some(node.at),
                            format!("mapping key {what} is not a string; quote it"),
                        ));
                    };
                    *key = Some((text, node.at));
                }
                Some((name, _)) if name == "<<" => merges.push(node),
                Some((name, key_at)) => {
                    if entries.contains_key(&name) {
                        return Err(self.error(
                            Some(key_at),
                            format!("invalid YAML: duplicate key \"{name}\""),
                        ));
                    }
                    entries.insert(name, Node { key_at, ..node });
                }
            },
        }
        Ok(())
    }
}

/// PyYAML's merge: the keys of a merged mapping (or of each in a list, earlier ones first)
/// that the mapping does not set itself.
fn merge_into(entries: &mut BTreeMap<String, Node>, merge: Node) -> Result<(), ConfigError> {
    match merge.value {
        Value::Map(map) => {
            for (k, v) in map {
                entries.entry(k).or_insert(v);
            }
            Ok(())
        }
        Value::List(items) => {
            for item in items {
                if !matches!(item.value, Value::Map(_)) {
                    return Err(merge_error(&item));
                }
                merge_into(entries, item)?;
            }
            Ok(())
        }
        _ => Err(merge_error(&merge)),
    }
}

fn merge_error(node: &Node) -> ConfigError {
    ConfigError::whole(
        &node.origin.path,
        format!(
            "invalid YAML merge key: << takes a mapping or a list of mappings, not {}",
            node.value.describe()
        ),
    )
    .at(Some(node.at))
}

/// How many values `node` holds, itself included: what an alias to it copies.
fn count(node: &Node) -> usize {
    1 + match &node.value {
        Value::List(items) => items.iter().map(count).sum(),
        Value::Map(map) => map.values().map(count).sum(),
        _ => 0,
    }
}

fn key_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::List(_) => "of type list".to_owned(),
        Value::Map(_) => "of type mapping".to_owned(),
        Value::String(s) => format!("{s:?}"),
    }
}

/// A plain scalar typed by the YAML 1.2 core schema: null, bool, integer (decimal, `0x`,
/// `0o`, `0b`), float (`.inf`, `.nan` too), else text. A leading zero before digits
/// (`0755`) is text, as YAML 1.2 says.
fn plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let radix = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find_map(|(prefix, radix)| unsigned.strip_prefix(prefix).map(|d| (d, radix)));
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let leading_zero = unsigned.len() > 1
        && unsigned.starts_with('0')
        && unsigned.bytes().all(|b| b.is_ascii_digit());
    let magnitude = match radix {
        Some((digits, radix)) if digits_only(digits) => u128::from_str_radix(digits, radix).ok(),
        Some(_) => None,
        None if !leading_zero && unsigned.bytes().all(|b| b.is_ascii_digit()) => {
            unsigned.parse::<u128>().ok()
        }
        None => None,
    };
    if let Some(m) = magnitude {
        let signed = i128::try_from(m).map(|m| if negative { -m } else { m });
        return match signed.ok().and_then(|i| i64::try_from(i).ok()) {
            Some(i) => Value::Integer(i),
            None => Value::Float(if negative { -(m as f64) } else { m as f64 }),
        };
    }
    if radix.is_some() || leading_zero {
        return Value::String(text.to_owned());
    }
    let sign = if negative { -1.0 } else { 1.0 };
    match unsigned {
        ".inf" | ".Inf" | ".INF" => return Value::Float(sign * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if text == unsigned => return Value::Float(f64::NAN),
        _ => {}
    }
    let numeric = unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b));
    match unsigned.parse::<f64>() {
        Ok(f) if numeric && f.is_finite() && !unsigned.starts_with(['+', '-']) => {
            Value::Float(sign * f)
        }
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::tree::{Format, at_path, pos};
    use std::path::PathBuf;

    fn origin() -> Arc<SourceFile> {
        Arc::new(SourceFile {
            path: PathBuf::from("runner.yaml"),
            format: Format::Yaml,
        })
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        for (text, want) in [
            ("~", "Null"),
            ("", "Null"),
            ("True", "Bool(true)"),
            ("yes", "String(\"yes\")"),
            ("42", "Integer(42)"),
            ("-42", "Integer(-42)"),
            ("+7", "Integer(7)"),
            ("0x1f", "Integer(31)"),
            ("0o17", "Integer(15)"),
            ("0755", "String(\"0755\")"),
            ("1.5", "Float(1.5)"),
            ("-2.5e1", "Float(-25.0)"),
            (".inf", "Float(inf)"),
            ("1e400", "String(\"1e400\")"),
            ("9223372036854775808", "Float(9.223372036854776e18)"),
            ("inf", "String(\"inf\")"),
            ("1_000", "String(\"1_000\")"),
            ("H/5 * * * *", "String(\"H/5 * * * *\")"),
            ("0x", "String(\"0x\")"),
            ("--1", "String(\"--1\")"),
        ] {
            assert_eq!(format!("{:?}", plain(text)), want, "{text:?}");
        }
    }

    #[test]
    fn every_value_knows_its_line_and_column() {
        let node = parse(
            "jobs:\n  a:\n    command: [x, 'y']\n    schedule: \"@daily\"\n",
            &origin(),
        )
        .expect("parses");
        let schedule = at_path(&node, &["jobs", "a", "schedule"]);
        assert_eq!(schedule.at, pos(4, 15));
        assert_eq!(schedule.key_at, pos(4, 5));
        assert_eq!(at_path(&node, &["jobs", "a", "command"]).at, pos(3, 14));
        assert_eq!(at_path(&node, &["jobs", "a"]).key_at, pos(2, 3));
    }

    #[test]
    fn aliases_copy_within_a_bound() {
        let node = parse("a: &x [1, 2]\nb: *x\n", &origin()).expect("alias");
        let b = &at_path(&node, &["b"]).value;
        assert!(matches!(b, Value::List(items) if items.len() == 2));

        let mut laughs = String::from("a: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            laughs.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&laughs, &origin()).expect_err("billion laughs");
        assert!(e.to_string().contains("aliases copy more than"), "{e}");
    }

    #[test]
    fn merge_keys_duplicates_and_documents() {
        let node = parse(
            "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  <<: [*b, *o]\n  x: 9\n",
            &origin(),
        )
        .expect("merge");
        let Value::Map(m) = &at_path(&node, &["m"]).value else {
            panic!("m")
        };
        let got: Vec<_> = m
            .iter()
            .map(|(k, v)| format!("{k}={:?}", v.value))
            .collect();
        assert_eq!(got, ["x=Integer(9)", "y=Integer(2)", "z=Integer(4)"]);

        let e = parse("a: 1\nb: 2\na: 3\n", &origin()).expect_err("duplicate");
        assert_eq!(
            e.to_string(),
            "runner.yaml:3:1: invalid YAML: duplicate key \"a\""
        );
        let e = parse("a: 1\n---\nb: 2\n", &origin()).expect_err("two documents");
        assert!(e.to_string().contains("one document"), "{e}");
        let e = parse("m:\n  <<: 5\n", &origin()).expect_err("bad merge");
        assert!(
            e.to_string()
                .starts_with("runner.yaml:2:7: invalid YAML merge key"),
            "{e}"
        );
        assert!(matches!(
            parse("", &origin()).expect("empty").value,
            Value::Null
        ));
        assert!(matches!(
            parse("# only a comment\n", &origin())
                .expect("comment")
                .value,
            Value::Null
        ));
    }
}
