//! YAML text into the configuration tree, with the line and column of every key and value.
//!
//! serde-saphyr reads the YAML: the syntax, the YAML 1.2 core schema for plain scalars (as
//! serde_yaml typed them, which runner used before), anchors and aliases with a bound on
//! what aliases may copy, PyYAML's `<<` merge keys (dsari reads YAML with PyYAML), and
//! duplicate keys refused. Each value arrives in a `Spanned` that tells where its text is.
//! Written here is only what turns that into the tree: keys must be strings, every value
//! is tagged with its file, and the errors runner words itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{
    DuplicateKeyPolicy, Error, Location, MessageFormatter, NonFiniteFloatPolicy, Spanned,
};

use super::tree::{Node, SourceFile, Value};
use crate::config::{ConfigError, Position};

/// At most this many parser events (a scalar is one, a list or mapping two) may be copied
/// by the aliases of one file: a "billion laughs" file is refused, not expanded. Twice the
/// 100,000 values allowed before, and a little more, so no file that loaded then is refused.
const MAX_ALIAS_EVENTS: usize = 250_000;

/// Parses one YAML document into a tree tagged with `origin`; an empty file is null.
pub(super) fn parse(text: &str, origin: &Arc<SourceFile>) -> Result<Node, ConfigError> {
    let options = serde_saphyr::options! {
        // Size and depth are bounded before parsing (`source`, `nesting`); the budget's
        // other caps (aliases per anchor) would refuse one template shared by many jobs.
        budget: None,
        // `yes` and `off` stay text here: bool keys read YAML 1.1's spellings (see `de`).
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        non_finite_float_policy: NonFiniteFloatPolicy::PassThrough,
        reject_unsupported_tags: true,
        // Duplicate keys are refused below, where the key's place is known; serde-saphyr's
        // own check hashes every key a second time.
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        with_snippet: false,
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_EVENTS,
        },
    };
    let tree: Spanned<Yaml> = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| ConfigError::whole(&origin.path, message(&e)).at(position(e.location())))?;
    node(tree, None, text, origin)
}

/// A value as serde-saphyr types it; keys are values too until they are checked.
enum Yaml {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(String),
    List(Vec<Spanned<Yaml>>),
    Map(Vec<(Spanned<Yaml>, Spanned<Yaml>)>),
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Yaml, D::Error> {
        d.deserialize_any(YamlVisitor)
    }
}

/// Integers stay exact when they fit an i64; anything else becomes a float, as in Python.
fn integer(i: impl TryInto<i64> + Copy + Into<i128>) -> Yaml {
    i.try_into()
        .map_or_else(|_| Yaml::Float(Into::<i128>::into(i) as f64), Yaml::Integer)
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_none<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        Yaml::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Yaml, E> {
        Ok(Yaml::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Yaml, E> {
        Ok(Yaml::Integer(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Yaml, E> {
        Ok(integer(u))
    }
    fn visit_i128<E>(self, i: i128) -> Result<Yaml, E> {
        Ok(integer(i))
    }
    fn visit_u128<E>(self, u: u128) -> Result<Yaml, E> {
        Ok(i128::try_from(u).map_or(Yaml::Float(u as f64), integer))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Yaml, E> {
        Ok(Yaml::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Yaml, E> {
        Ok(Yaml::String(s.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Yaml::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Yaml::Map(entries))
    }
}

/// The tree of `tree`. A value is placed where its text is: for a value that an alias or
/// a merge key copies, that is its anchor's definition.
fn node(
    tree: Spanned<Yaml>,
    key_at: Option<Position>,
    text: &str,
    origin: &Arc<SourceFile>,
) -> Result<Node, ConfigError> {
    let at = position(Some(tree.defined)).unwrap_or_default();
    let value = match tree.value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Integer(i),
        Yaml::Float(f) => match overflowed(f, text, &tree.defined) {
            Some(written) => Value::String(written.to_owned()),
            None => Value::Float(f),
        },
        Yaml::String(s) => Value::String(s),
        Yaml::List(items) => Value::List(
            items
                .into_iter()
                .map(|item| node(item, None, text, origin))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Map(entries) => {
            let mut map = BTreeMap::new();
            for (key, value) in entries {
                let key_at = position(Some(key.defined));
                let Yaml::String(name) = key.value else {
                    let what = key_text(&key.value);
                    return Err(ConfigError::whole(
                        &origin.path,
                        format!("mapping key {what} is not a string; quote it"),
                    )
                    .at(key_at));
                };
                if map.contains_key(&name) {
                    let message = format!("invalid YAML: duplicate key \"{name}\"");
                    return Err(ConfigError::whole(&origin.path, message).at(key_at));
                }
                map.insert(name, node(value, key_at, text, origin)?);
            }
            Value::Map(map)
        }
    };
    Ok(Node {
        value,
        origin: Arc::clone(origin),
        at,
        key_at: key_at.unwrap_or(at),
    })
}

/// The text of a decimal too large for a float, which serde-saphyr makes infinite: PyYAML
/// keeps it as text (YAML spells infinity `.inf`), and so did runner before.
fn overflowed<'t>(f: f64, text: &'t str, at: &Location) -> Option<&'t str> {
    if !f.is_infinite() {
        return None;
    }
    let span = at.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let written = text.get(start..start + usize::try_from(span.byte_len()?).ok()?)?;
    let spelt_inf = matches!(
        written.trim_start_matches(['+', '-']),
        ".inf" | ".Inf" | ".INF"
    );
    (!spelt_inf).then_some(written)
}

/// A known location (serde-saphyr's lines and columns count from 1, in characters).
fn position(location: Option<Location>) -> Option<Position> {
    let location = location.filter(|l| l.line() > 0)?;
    Some(Position {
        line: usize::try_from(location.line()).ok()?,
        column: usize::try_from(location.column()).ok(),
    })
}

/// The message of a YAML error, without the location the error shows up front.
fn message(e: &Error) -> Cow<'static, str> {
    let mut e = e.without_snippet();
    while let Error::AliasError { error, .. } = e {
        e = error;
    }
    match e {
        Error::MultipleDocuments { .. } => {
            "invalid YAML: a configuration file holds one document".into()
        }
        Error::UnsupportedTag { tag, .. } => format!("YAML tag {tag} is not supported").into(),
        Error::MergeValueNotMapOrSeqOfMaps { .. } => {
            "invalid YAML merge key: << takes a mapping or a list of mappings".into()
        }
        Error::UnknownAnchor { .. } => "invalid YAML: an alias names no anchor before it".into(),
        Error::RecursiveReferencesRequireWeakTypes { .. } => {
            "invalid YAML: an alias refers to a value that contains it".into()
        }
        Error::AliasReplayLimitExceeded { .. } => {
            format!("invalid YAML: aliases copy more than {MAX_ALIAS_EVENTS} parser events").into()
        }
        other => format!(
            "invalid YAML: {}",
            serde_saphyr::UserMessageFormatter.format_message(other)
        )
        .into(),
    }
}

fn key_text(value: &Yaml) -> String {
    match value {
        Yaml::Null => "null".to_owned(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Float(f) => f.to_string(),
        Yaml::List(_) => "of type list".to_owned(),
        Yaml::Map(_) => "of type mapping".to_owned(),
        Yaml::String(s) => format!("{s:?}"),
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
            ("-.inf", "Float(-inf)"),
            (".nan", "Float(NaN)"),
            ("9223372036854775808", "Float(9.223372036854776e18)"),
            ("inf", "String(\"inf\")"),
            ("1_000", "String(\"1_000\")"),
            ("H/5 * * * *", "String(\"H/5 * * * *\")"),
            ("0x", "String(\"0x\")"),
            ("--1", "String(\"--1\")"),
            ("'5'", "String(\"5\")"),
            ("!!int 5", "Integer(5)"),
        ] {
            let node = parse(&format!("a: {text}\n"), &origin()).expect(text);
            let got = format!("{:?}", at_path(&node, &["a"]).value);
            assert_eq!(got, want, "{text:?}");
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
        let b = at_path(&node, &["b"]);
        assert!(matches!(&b.value, Value::List(items) if items.len() == 2));
        // Where the copied text is.
        assert_eq!((b.key_at, b.at), (pos(2, 1), pos(1, 7)));

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
            "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  x: 9\n  <<: [*b, *o]\n",
            &origin(),
        )
        .expect("merge");
        let Value::Map(m) = &at_path(&node, &["m"]).value else {
            panic!("m")
        };
        let got: Vec<_> = m
            .iter()
            .map(|(k, v)| format!("{k}={:?}@{}", v.value, v.at.line))
            .collect();
        assert_eq!(got, ["x=Integer(9)@4", "y=Integer(2)@1", "z=Integer(4)@2"]);

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
        let e = parse("jobs: [x\n", &origin()).expect_err("syntax");
        assert!(e.to_string().starts_with("runner.yaml:1:7: invalid YAML: "));
        assert!(!e.to_string().contains(" at line "), "{e}");
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
