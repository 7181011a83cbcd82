//! serde's derive over the configuration tree, with errors that keep file, line and key.
//!
//! The typed shapes of the configuration are `#[derive(Deserialize)]` structs (in `load`
//! and `job`). They are read from the merged tree ([`Node`]) by the deserializer here, which
//! knows what derive cannot: the file and position of every value (so each error says
//! `FILE:LINE:COLUMN: job "a": key "k": ...`), whether the value came from YAML (where
//! dsari's PyYAML reads `yes`/`no`/`on`/`off` as bools), and what to do with a key no struct
//! field names: a near miss of a field is an error with a "did you mean", any other key a
//! warning, because dsari passes over keys it does not know. A null value counts as absent,
//! so `key: ~` means "the default". The few shapes serde has no word for (durations,
//! commands, environments) are the `deserialize_with` helpers at the end.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::tree::{Format, Node, Value};
use crate::config::names::check_daemon;
use crate::config::near_miss::suggest;
use crate::config::{ConfigError, ErrorKind, Scope, duration};

/// What every value of one read shares: the scope errors are reported in, the warnings.
pub(crate) struct Ctx<'w> {
    pub(crate) scope: Scope,
    pub(crate) warnings: &'w RefCell<Vec<String>>,
}

/// An error while reading: located as soon as the value it is about is known.
#[derive(Debug)]
pub(crate) enum DeError {
    Located(ConfigError),
    Reason(String),
    Type {
        expected: String,
        found: &'static str,
    },
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeError::Located(e) => write!(f, "{e}"),
            DeError::Reason(r) => write!(f, "{r}"),
            DeError::Type { expected, found } => write!(f, "expected {expected}, found {found}"),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> DeError {
        DeError::Reason(msg.to_string())
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> DeError {
        use de::Unexpected as U;
        let found = match unexpected {
            U::Bool(_) => "a bool",
            U::Unsigned(_) | U::Signed(_) | U::Float(_) => "a number",
            U::Str(_) | U::Char(_) => "a string",
            U::Seq => "a list",
            U::Map => "a mapping",
            U::Unit | U::Option => "null",
            _ => "another type",
        };
        DeError::Type {
            expected: expected.to_string(),
            found,
        }
    }
}

impl DeError {
    /// The [`ConfigError`]; an error never located (it cannot be) names the file only.
    pub(crate) fn into_config_error(self, fallback: &Path) -> ConfigError {
        match self {
            DeError::Located(e) => e,
            other => ConfigError::whole(fallback, other.to_string()),
        }
    }
}

/// Reads `T` from `node`; `key` names the node in a type error (`jobs` for a job).
pub(crate) fn read<T: de::DeserializeOwned>(
    node: &Node,
    key: &str,
    ctx: &Ctx<'_>,
) -> Result<T, ConfigError> {
    T::deserialize(De {
        node,
        key: key.to_owned(),
        prefix: String::new(),
        item: false,
        ctx,
    })
    .map_err(|e| e.into_config_error(&node.origin.path))
}

/// The value set at `key` of mapping `node`, with its file and position; null is unset.
pub(crate) fn entry<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Map(map) => map.get(key).filter(|n| !matches!(n.value, Value::Null)),
        _ => None,
    }
}

/// The entries of mapping `node` (absent or null: none), set at top-level key `key`.
pub(crate) fn mapping<'a>(
    node: Option<&'a Node>,
    key: &str,
) -> Result<&'a BTreeMap<String, Node>, ConfigError> {
    match node.map(|n| (n, &n.value)) {
        None | Some((_, Value::Null)) => Ok(empty()),
        Some((_, Value::Map(map))) => Ok(map),
        Some((node, other)) => Err(ConfigError::new(
            &node.origin.path,
            Scope::Top,
            ErrorKind::BadType {
                key: key.to_owned(),
                expected: "a mapping".to_owned(),
                found: other.describe(),
            },
        )
        .at(Some(node.at))),
    }
}

/// An error about `key` of mapping `node`: at the key when it is set (at its value when
/// `at_value`), else at the mapping's name, in the file that set it.
pub(crate) fn blame(
    node: &Node,
    scope: &Scope,
    key: &str,
    at_value: bool,
    reason: impl Into<String>,
) -> ConfigError {
    // A dotted key (`database.type`) is the last part's in `node`.
    let last = key.rsplit('.').next().unwrap_or(key);
    let (file, at) = match entry(node, last) {
        Some(n) => (&n.origin.path, if at_value { n.at } else { n.key_at }),
        None => (&node.origin.path, node.key_at),
    };
    ConfigError::new(
        file,
        scope.clone(),
        ErrorKind::BadValue {
            key: key.to_owned(),
            reason: reason.into(),
        },
    )
    .at(Some(at))
}

/// A path set at `key` of `node`, resolved against the directory of the file that set it.
pub(crate) fn path(
    node: &Node,
    scope: &Scope,
    key: &str,
    text: Option<String>,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(text) = text else {
        return Ok(None);
    };
    if text.is_empty() {
        return Err(blame(node, scope, key, true, "the path is empty"));
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    let dir = entry(node, last).map_or(node.origin.dir(), |n| n.origin.dir());
    let path = Path::new(&text);
    Ok(Some(if path.is_absolute() {
        path.to_owned()
    } else {
        dir.join(path)
    }))
}

struct De<'a, 'w> {
    node: &'a Node,
    /// The key in error messages (`database.type`).
    key: String,
    /// What this node's own fields are prefixed with in messages (`database.`).
    prefix: String,
    /// An item of a list: numbers are taken as text, since `[sleep, 90]` is how YAML
    /// users write a command.
    item: bool,
    ctx: &'a Ctx<'w>,
}

impl<'a, 'w> De<'a, 'w> {
    fn locate(&self, e: DeError) -> DeError {
        let kind = match e {
            DeError::Located(_) => return e,
            DeError::Reason(reason) => ErrorKind::BadValue {
                key: self.key.clone(),
                reason,
            },
            DeError::Type { expected, found } => ErrorKind::BadType {
                key: self.key.clone(),
                expected,
                found,
            },
        };
        DeError::Located(
            ConfigError::new(&self.node.origin.path, self.ctx.scope.clone(), kind)
                .at(Some(self.node.at)),
        )
    }

    fn wrong(&self, expected: &str) -> DeError {
        self.locate(DeError::Type {
            expected: expected.to_owned(),
            found: self.node.value.describe(),
        })
    }

    fn child(&self, node: &'a Node, item: bool) -> De<'a, 'w> {
        De {
            node,
            key: self.key.clone(),
            prefix: self.prefix.clone(),
            item,
            ctx: self.ctx,
        }
    }
}

fn empty() -> &'static BTreeMap<String, Node> {
    static EMPTY: BTreeMap<String, Node> = BTreeMap::new();
    &EMPTY
}

impl<'de> de::Deserializer<'de> for De<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Integer(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::String(s) => visitor.visit_str(s),
            Value::List(items) => visitor.visit_seq(Items {
                items: items.iter(),
                de: &self,
            }),
            Value::Map(map) => visitor.visit_map(Entries {
                entries: map.iter().collect::<Vec<_>>().into_iter(),
                value: None,
                de: &self,
                fields: None,
            }),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = match &self.node.value {
            Value::Bool(b) => *b,
            // YAML 1.1's spellings, as PyYAML reads them: a dsari configuration loads as is.
            Value::String(s) if self.node.origin.format == Format::Yaml => {
                yaml11_bool(s).ok_or_else(|| self.wrong("a bool"))?
            }
            _ => return Err(self.wrong("a bool")),
        };
        visitor.visit_bool(b).map_err(|e| self.locate(e))
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Integer(i) => match u64::try_from(i) {
                Ok(n) => visitor.visit_u64(n).map_err(|e| self.locate(e)),
                Err(_) => Err(self.locate(DeError::Reason(format!("{i} is negative")))),
            },
            _ => Err(self.wrong("a whole number")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(s) => visitor.visit_str(s),
            Value::Integer(_) | Value::Float(_) if self.item => {
                visitor.visit_string(scalar_text(&self.node.value))
            }
            other if self.item => Err(DeError::Reason(format!(
                "expected a list of strings, found {} in it",
                other.describe()
            ))),
            _ => return Err(self.wrong("a string")),
        }
        .map_err(|e| self.locate(e))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Value::List(items) = &self.node.value else {
            return Err(self.wrong("a list of strings"));
        };
        visitor
            .visit_seq(Items {
                items: items.iter(),
                de: &self,
            })
            .map_err(|e| self.locate(e))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_struct("", &[], visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let map = match &self.node.value {
            Value::Map(map) => map,
            Value::Null => empty(),
            _ => return Err(self.wrong("a mapping")),
        };
        // A map (no name) takes every key; a struct only its fields.
        let fields = (!name.is_empty()).then_some(fields);
        let mut entries = Vec::with_capacity(map.len());
        for (key, node) in map {
            if let Some(fields) = fields {
                if matches!(node.value, Value::Null) {
                    continue;
                }
                if !fields.contains(&key.as_str()) {
                    self.unknown(key, node, fields)?;
                    continue;
                }
            }
            entries.push((key, node));
        }
        visitor
            .visit_map(Entries {
                entries: entries.into_iter(),
                value: None,
                de: &self,
                fields,
            })
            .map_err(|e| self.locate(e))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u128 f32 f64 char bytes byte_buf unit unit_struct
        tuple tuple_struct enum identifier
    }
}

impl De<'_, '_> {
    /// A key no field names: an error when it is a near miss of one, else a warning.
    fn unknown(&self, key: &str, node: &Node, fields: &[&'static str]) -> Result<(), DeError> {
        let suggestion = suggest(key, fields);
        let error = self
            .ctx
            .unknown(format!("{}{key}", self.prefix), node, suggestion);
        match suggestion {
            Some(_) => Err(DeError::Located(error)),
            None => {
                self.ctx.ignored(error);
                Ok(())
            }
        }
    }
}

impl Ctx<'_> {
    /// The error for `key`, set at `node`, that no field names.
    pub(crate) fn unknown(
        &self,
        key: String,
        node: &Node,
        suggestion: Option<&'static str>,
    ) -> ConfigError {
        let kind = ErrorKind::UnknownKey { key, suggestion };
        ConfigError::new(&node.origin.path, self.scope.clone(), kind).at(Some(node.key_at))
    }

    /// Warns about a key that is ignored, as dsari ignores it.
    pub(crate) fn ignored(&self, error: ConfigError) {
        let warning = format!("{error}, ignored (dsari ignores it too)");
        self.warnings.borrow_mut().push(warning);
    }
}

/// The name of the job or group `node` is the value of, checked as dsari checks it; an
/// error is at the name.
pub(crate) fn check_name(name: &str, node: &Node, scope: &Scope) -> Result<(), ConfigError> {
    check_daemon(name).map_err(|reason| {
        ConfigError::new(
            &node.origin.path,
            scope.clone(),
            ErrorKind::InvalidName { reason },
        )
        .at(Some(node.key_at))
    })
}

struct Items<'a, 'b, 'w> {
    items: std::slice::Iter<'a, Node>,
    de: &'b De<'a, 'w>,
}

impl<'de> SeqAccess<'de> for Items<'_, '_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some(node) => seed.deserialize(self.de.child(node, true)).map(Some),
        }
    }
}

struct Entries<'a, 'b, 'w> {
    entries: std::vec::IntoIter<(&'a String, &'a Node)>,
    value: Option<(&'a String, &'a Node)>,
    de: &'b De<'a, 'w>,
    /// The struct's fields: its values are keys of their own (`database.type`).
    fields: Option<&'static [&'static str]>,
}

impl<'de> MapAccess<'de> for Entries<'_, '_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key: de::value::StrDeserializer<'_, DeError> = entry.0.as_str().into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, node)) = self.value.take() else {
            return Err(DeError::Reason("a value without its key".to_owned()));
        };
        if self.fields.is_none() {
            return seed.deserialize(self.de.child(node, false));
        }
        let full = format!("{}{key}", self.de.prefix);
        let de = |key: String| De {
            node,
            prefix: format!("{key}."),
            key,
            item: false,
            ctx: self.de.ctx,
        };
        // A `deserialize_with` helper may fail after reading: locate that at the field too.
        seed.deserialize(de(full.clone()))
            .map_err(|e| de(full).locate(e))
    }
}

/// YAML 1.1's spellings of true and false (PyYAML's resolver).
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            Some(false)
        }
        _ => None,
    }
}

/// A number as text. Floats use Rust's shortest round-trip form with a `.0` kept on whole
/// numbers, which matches Python's `str()` (used by dsari) in all but exponent spelling.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::List(_) | Value::Map(_) => String::new(),
    }
}

/// `environment`: variable names to strings; numbers and bools become text (dsari takes
/// strings and numbers, and bools are common enough in YAML to accept too).
pub(crate) fn environment<'de, D: de::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of variable names to values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    return Err(de::Error::custom(format!(
                        "{name:?} is not a valid variable name"
                    )));
                }
                let text = match value {
                    serde_json::Value::String(text) => text,
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    other => {
                        let found = match other {
                            serde_json::Value::Array(_) => "a list",
                            serde_json::Value::Object(_) => "a mapping",
                            _ => "null",
                        };
                        return Err(de::Error::custom(format!(
                            "the value of {name} must be a string, number or bool, found {found}"
                        )));
                    }
                };
                if text.contains('\0') {
                    return Err(de::Error::custom(format!(
                        "the value of {name} holds a NUL byte"
                    )));
                }
                out.insert(name, text);
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

/// A duration: a number of seconds as dsari writes it (`300`, `2.5`), or a string as
/// runner's INI accepts it (`"90"`, `"90s"`, `"2m 30s"`).
pub(crate) fn duration<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("seconds or a duration such as \"90s\"")
        }
        fn visit_i64<E: de::Error>(self, i: i64) -> Result<Duration, E> {
            u64::try_from(i)
                .map_err(|_| E::custom(format!("{i} is negative")))
                .and_then(|s| self.visit_u64(s))
        }
        fn visit_u64<E: de::Error>(self, s: u64) -> Result<Duration, E> {
            duration::check_range(Duration::from_secs(s)).map_err(E::custom)
        }
        fn visit_f64<E: de::Error>(self, f: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(f)
                .map_err(|_| format!("{f} is not a duration in seconds"))
                .and_then(duration::check_range)
                .map_err(E::custom)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            duration::parse(s)
                .and_then(duration::check_range)
                .map_err(E::custom)
        }
    }
    d.deserialize_any(V).map(Some)
}

/// `command`: a list of arguments, or one string split like a shell would (dsari uses
/// Python's `shlex.split`; `shell-words` follows the same POSIX rules).
pub(crate) fn command<'de, D: de::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of arguments or a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            shell_words::split(s)
                .map_err(|e| E::custom(format!("cannot split {s:?} into words: {e}")))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut argv = Vec::new();
            while let Some(arg) = seq.next_element::<String>()? {
                argv.push(arg);
            }
            Ok(argv)
        }
    }
    let argv = d.deserialize_any(V)?;
    if argv.first().is_none_or(String::is_empty) {
        return Err(de::Error::custom("the command is empty"));
    }
    Ok(Some(argv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::tree::{SourceFile, parse};
    use std::sync::Arc;

    #[derive(Debug, serde::Deserialize)]
    struct Keys {
        #[serde(default, deserialize_with = "duration")]
        d: Option<Duration>,
        #[serde(default)]
        b: bool,
        #[serde(default, deserialize_with = "environment")]
        env: BTreeMap<String, String>,
        #[serde(default)]
        list: Vec<String>,
        n: Option<u64>,
    }

    fn read_keys(format: Format, text: &str) -> (Result<Keys, ConfigError>, Vec<String>) {
        let origin = Arc::new(SourceFile {
            path: PathBuf::from("/etc/runner/daemon.yaml"),
            format,
        });
        let node = parse(text, &origin).expect("parses");
        let warnings = RefCell::new(Vec::new());
        let ctx = Ctx {
            scope: Scope::Job {
                name: "j".to_owned(),
                group: None,
            },
            warnings: &warnings,
        };
        let keys = read(&node, "jobs", &ctx);
        (keys, warnings.into_inner())
    }

    fn ok(format: Format, text: &str) -> Keys {
        read_keys(format, text).0.expect("reads")
    }

    fn err(text: &str) -> String {
        read_keys(Format::Yaml, text)
            .0
            .expect_err("fails")
            .to_string()
    }

    #[test]
    fn durations_are_seconds_or_humantime() {
        for (text, want) in [
            ("d: 300", 300_000),
            ("d: 2.5", 2_500),
            ("d: \"90s\"", 90_000),
            ("d: \"2m 30s\"", 150_000),
            ("d: \"90\"", 90_000),
        ] {
            let d = ok(Format::Yaml, text).d.expect("set");
            assert_eq!(d, Duration::from_millis(want), "{text}");
        }
        assert_eq!(ok(Format::Yaml, "b: false").d, None);
        assert_eq!(
            err("x: 1\nd: -1\n"),
            "/etc/runner/daemon.yaml:2:4: job \"j\": key \"d\": -1 is negative"
        );
        assert!(err("d: soon").contains("key \"d\": \"soon\" is not a duration"));
        assert!(
            err("d: [1]").ends_with(
                "key \"d\": expected seconds or a duration such as \"90s\", found a list"
            )
        );
    }

    #[test]
    fn yaml_11_bools_only_in_yaml() {
        assert!(ok(Format::Yaml, "b: yes").b);
        assert!(!ok(Format::Yaml, "b: off").b);
        assert!(err("b: maybe").ends_with("key \"b\": expected a bool, found a string"));
        assert!(read_keys(Format::Json, r#"{"b": "yes"}"#).0.is_err());
    }

    #[test]
    fn environment_values_become_text() {
        let env = ok(
            Format::Yaml,
            "env: {S: text, I: 5, F: 1.0, G: 0.25, B: true}",
        )
        .env;
        let got: Vec<_> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(got, ["B=true", "F=1.0", "G=0.25", "I=5", "S=text"]);
        assert!(err("env: {X: [1]}").contains("key \"env\": the value of X must be"));
        assert!(err("env: {\"A=B\": x}").contains("is not a valid variable name"));
        assert!(err("env: [1]").contains("key \"env\": expected a mapping, found a list"));
    }

    #[test]
    fn lists_counts_and_unknown_keys() {
        assert_eq!(ok(Format::Yaml, "list: [sleep, 90]").list, ["sleep", "90"]);
        assert!(
            err("list: [a, {b: c}]")
                .contains("key \"list\": expected a list of strings, found a mapping in it")
        );
        assert!(err("list: a").contains("expected a list of strings, found a string"));
        assert_eq!(ok(Format::Yaml, "n: 5").n, Some(5));
        assert!(err("n: -5").contains("key \"n\": -5 is negative"));
        assert!(err("n: 1.5").contains("expected a whole number"));
        // Null means the default.
        assert_eq!(ok(Format::Yaml, "n: ~\nd:\n").n, None);

        let (keys, warnings) = read_keys(Format::Yaml, "description: x\nn: 1\n");
        assert_eq!(keys.expect("reads").n, Some(1));
        assert_eq!(
            warnings,
            [
                "/etc/runner/daemon.yaml:1:1: job \"j\": unknown key \"description\", ignored (dsari ignores it too)"
            ]
        );
        let (keys, _) = read_keys(Format::Yaml, "lsit: [x]\n");
        let e = keys.expect_err("near miss");
        assert_eq!(
            e.to_string(),
            "/etc/runner/daemon.yaml:1:1: job \"j\": unknown key \"lsit\""
        );
        assert_eq!(e.hint().as_deref(), Some("did you mean \"list\"?"));
    }
}
