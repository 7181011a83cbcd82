//! Typed reading of one mapping (the top level, a job, a group) with precise errors.
//!
//! serde's `deny_unknown_fields` cannot say which job a bad key belongs to, nor which
//! config.d file set it, so the loader checks keys and types by hand here. Each reader takes
//! the key out of the mapping, so what is left at the end is exactly the unknown keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::tree::{Format, Node, SourceFile, Value};
use crate::config::Position;
use crate::config::duration;
use crate::config::error::{ConfigError, ErrorKind, Scope};
use crate::config::near_miss::suggest;

/// One mapping being read, with the scope its errors are reported in.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) scope: Scope,
    /// The file that defined the mapping first; used when no single key is to blame.
    pub(crate) origin: Arc<SourceFile>,
    /// Where the mapping is named (a job's key), for errors no single key is to blame for.
    pub(crate) at: Option<Position>,
    entries: BTreeMap<String, Node>,
}

/// The file, and the place in it, an error about a key is reported against.
pub(crate) type Blame = (Arc<SourceFile>, Option<Position>);

impl Table {
    /// Opens `node` as a mapping; `key` names it in the error when it is not one. Null counts
    /// as an empty mapping, as a YAML key with everything under it commented out.
    pub(crate) fn from_node(node: Node, scope: Scope, key: &str) -> Result<Table, ConfigError> {
        match node.value {
            Value::Map(entries) => Ok(Table {
                scope,
                origin: node.origin,
                at: Some(node.key_at),
                entries,
            }),
            Value::Null => Ok(Table {
                scope,
                origin: node.origin,
                at: Some(node.key_at),
                entries: BTreeMap::new(),
            }),
            other => Err(ConfigError::new(
                &node.origin.path,
                scope,
                ErrorKind::BadType {
                    key: key.to_owned(),
                    expected: "a mapping",
                    found: other.describe(),
                },
            )
            .at(Some(node.at))),
        }
    }

    pub(crate) fn new(
        entries: BTreeMap<String, Node>,
        scope: Scope,
        origin: Arc<SourceFile>,
        at: Option<Position>,
    ) -> Table {
        Table {
            scope,
            origin,
            at,
            entries,
        }
    }

    /// Fails on the first key not in `known`, with a "did you mean" when one is close.
    pub(crate) fn check_keys(&self, known: &[&'static str]) -> Result<(), ConfigError> {
        match self
            .entries
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((key, node)) => Err(ConfigError::new(
                &node.origin.path,
                self.scope.clone(),
                ErrorKind::UnknownKey {
                    key: key.clone(),
                    suggestion: suggest(key, known),
                },
            )
            .at(Some(node.key_at))),
        }
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entries
            .get(key)
            .is_some_and(|n| !matches!(n.value, Value::Null))
    }

    /// Takes `key` out; null counts as absent, so `key: ~` means "the default".
    pub(crate) fn take(&mut self, key: &str) -> Option<Node> {
        self.entries
            .remove(key)
            .filter(|n| !matches!(n.value, Value::Null))
    }

    /// An error about `key`, reported against the file that set `node`.
    pub(crate) fn bad_value(
        &self,
        node: &Node,
        key: &str,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(
            &node.origin.path,
            self.scope.clone(),
            ErrorKind::BadValue {
                key: key.to_owned(),
                reason: reason.into(),
            },
        )
        .at(Some(node.at))
    }

    /// The file and place that set `key`, or those of the mapping when `key` is absent.
    pub(crate) fn origin_of(&self, key: &str) -> Blame {
        match self.entries.get(key) {
            Some(n) => (Arc::clone(&n.origin), Some(n.key_at)),
            None => (Arc::clone(&self.origin), self.at),
        }
    }

    /// An error about `key` when no value of it is to blame (for example, it is missing).
    pub(crate) fn bad_key(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        self.bad_key_in(&(Arc::clone(&self.origin), self.at), key, reason)
    }

    /// An error about `key`, reported against `blame` (see [`Table::origin_of`]).
    pub(crate) fn bad_key_in(
        &self,
        (origin, at): &Blame,
        key: &str,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(
            &origin.path,
            self.scope.clone(),
            ErrorKind::BadValue {
                key: key.to_owned(),
                reason: reason.into(),
            },
        )
        .at(*at)
    }

    pub(crate) fn bad_type(&self, node: &Node, key: &str, expected: &'static str) -> ConfigError {
        ConfigError::new(
            &node.origin.path,
            self.scope.clone(),
            ErrorKind::BadType {
                key: key.to_owned(),
                expected,
                found: node.value.describe(),
            },
        )
        .at(Some(node.at))
    }

    /// A bool. In YAML files, YAML 1.1's `yes`/`no`/`on`/`off` count too, because dsari's
    /// PyYAML reads them as bools and a dsari configuration must load unchanged.
    pub(crate) fn bool(&mut self, key: &str, default: bool) -> Result<bool, ConfigError> {
        let Some(node) = self.take(key) else {
            return Ok(default);
        };
        match &node.value {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if node.origin.format == Format::Yaml => {
                yaml11_bool(s).ok_or_else(|| self.bad_type(&node, key, "a bool"))
            }
            _ => Err(self.bad_type(&node, key, "a bool")),
        }
    }

    pub(crate) fn string(&mut self, key: &str) -> Result<Option<(String, Node)>, ConfigError> {
        let Some(node) = self.take(key) else {
            return Ok(None);
        };
        match &node.value {
            Value::String(s) => Ok(Some((s.clone(), node))),
            _ => Err(self.bad_type(&node, key, "a string")),
        }
    }

    /// A non-negative integer.
    pub(crate) fn count(&mut self, key: &str) -> Result<Option<(u64, Node)>, ConfigError> {
        let Some(node) = self.take(key) else {
            return Ok(None);
        };
        match node.value {
            Value::Integer(i) => match u64::try_from(i) {
                Ok(n) => Ok(Some((n, node))),
                Err(_) => Err(self.bad_value(&node, key, format!("{i} is negative"))),
            },
            _ => Err(self.bad_type(&node, key, "a whole number")),
        }
    }

    /// A path, resolved against the directory of the file that set it.
    pub(crate) fn path(&mut self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some((text, node)) = self.string(key)? else {
            return Ok(None);
        };
        if text.is_empty() {
            return Err(self.bad_value(&node, key, "the path is empty"));
        }
        Ok(Some(resolve(node.origin.dir(), Path::new(&text))))
    }

    /// A duration: a number of seconds as dsari writes it (`300`, `2.5`), or a string as
    /// runner's INI accepts it (`"90"`, `"90s"`, `"2m 30s"`).
    pub(crate) fn duration(&mut self, key: &str) -> Result<Option<(Duration, Node)>, ConfigError> {
        let Some(node) = self.take(key) else {
            return Ok(None);
        };
        let parsed = match &node.value {
            Value::Integer(i) => u64::try_from(*i)
                .map(Duration::from_secs)
                .map_err(|_| format!("{i} is negative")),
            Value::Float(f) => Duration::try_from_secs_f64(*f)
                .map_err(|_| format!("{f} is not a duration in seconds")),
            Value::String(s) => duration::parse(s),
            _ => return Err(self.bad_type(&node, key, "seconds or a duration such as \"90s\"")),
        }
        .and_then(duration::check_range);
        match parsed {
            Ok(d) => Ok(Some((d, node))),
            Err(reason) => Err(self.bad_value(&node, key, reason)),
        }
    }

    /// A list of non-empty strings. Numbers are taken as their text, since `[sleep, 90]` is
    /// how YAML users write a command.
    pub(crate) fn string_list(
        &mut self,
        key: &str,
    ) -> Result<Option<(Vec<String>, Node)>, ConfigError> {
        let Some(node) = self.take(key) else {
            return Ok(None);
        };
        let Value::List(items) = &node.value else {
            return Err(self.bad_type(&node, key, "a list of strings"));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match &item.value {
                Value::String(s) => out.push(s.clone()),
                Value::Integer(_) | Value::Float(_) => out.push(scalar_text(&item.value)),
                other => {
                    return Err(self.bad_value(
                        &node,
                        key,
                        format!(
                            "expected a list of strings, found {} in it",
                            other.describe()
                        ),
                    ));
                }
            }
        }
        Ok(Some((out, node)))
    }

    /// An environment mapping. Values may be strings, numbers or bools (turned into text);
    /// dsari takes strings and numbers, and bools are common enough in YAML to accept too.
    pub(crate) fn environment(
        &mut self,
        key: &str,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let Some(node) = self.take(key) else {
            return Ok(BTreeMap::new());
        };
        let Value::Map(entries) = &node.value else {
            return Err(self.bad_type(&node, key, "a mapping of variable names to values"));
        };
        let mut out = BTreeMap::new();
        for (name, value) in entries {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(self.bad_value(
                    value,
                    key,
                    format!("{name:?} is not a valid variable name"),
                ));
            }
            let text = match &value.value {
                Value::String(s) => s.clone(),
                Value::Integer(_) | Value::Float(_) => scalar_text(&value.value),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(self.bad_value(
                        value,
                        key,
                        format!(
                            "the value of {name} must be a string, number or bool, found {}",
                            other.describe()
                        ),
                    ));
                }
            };
            if text.contains('\0') {
                return Err(self.bad_value(
                    value,
                    key,
                    format!("the value of {name} holds a NUL byte"),
                ));
            }
            out.insert(name.clone(), text);
        }
        Ok(out)
    }

    /// A JSON object, for data passed on as is.
    pub(crate) fn json_object(
        &mut self,
        key: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
        let Some(node) = self.take(key) else {
            return Ok(serde_json::Map::new());
        };
        match to_json(&node.value) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            Ok(_) => Err(self.bad_type(&node, key, "a mapping")),
            Err(reason) => Err(self.bad_value(&node, key, reason)),
        }
    }

    /// What is left after every known key was taken: the job names of `jobs`, for instance.
    pub(crate) fn into_entries(self) -> BTreeMap<String, Node> {
        self.entries
    }
}

/// `relative` as seen from `base`; absolute paths are kept.
pub(crate) fn resolve(base: &Path, relative: &Path) -> PathBuf {
    if relative.is_absolute() {
        relative.to_owned()
    } else {
        base.join(relative)
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

fn to_json(value: &Value) -> Result<serde_json::Value, String> {
    Ok(match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("{f} cannot be represented in JSON"))?,
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::List(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|n| to_json(&n.value))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, n)| Ok((k.clone(), to_json(&n.value)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::tree::parse;

    fn table(format: Format, text: &str) -> Table {
        let origin = Arc::new(SourceFile {
            path: PathBuf::from("/etc/runner/daemon.yaml"),
            format,
        });
        let node = parse(text, &origin).expect("parses");
        Table::from_node(
            node,
            Scope::Job {
                name: "j".to_owned(),
                group: None,
            },
            "j",
        )
        .expect("mapping")
    }

    #[test]
    fn durations_are_seconds_or_humantime() {
        let mut t = table(
            Format::Yaml,
            "a: 300\nb: 2.5\nc: \"90s\"\nd: \"2m 30s\"\ne: \"90\"\nf: -1\ng: soon\nh: [1]\n",
        );
        let mut d = |k: &str| t.duration(k).map(|o| o.map(|(d, _)| d));
        assert_eq!(d("a").expect("a"), Some(Duration::from_secs(300)));
        assert_eq!(d("b").expect("b"), Some(Duration::from_millis(2500)));
        assert_eq!(d("c").expect("c"), Some(Duration::from_secs(90)));
        assert_eq!(d("d").expect("d"), Some(Duration::from_secs(150)));
        assert_eq!(d("e").expect("e"), Some(Duration::from_secs(90)));
        assert_eq!(d("missing").expect("missing"), None);
        let e = d("f").expect_err("negative");
        assert_eq!(
            e.to_string(),
            "/etc/runner/daemon.yaml:6:4: job \"j\": key \"f\": -1 is negative"
        );
        let e = d("g").expect_err("words");
        assert!(
            e.to_string()
                .contains("key \"g\": \"soon\" is not a duration"),
            "{e}"
        );
        let e = d("h").expect_err("list");
        assert!(e.to_string().ends_with("found a list"), "{e}");
    }

    #[test]
    fn yaml_11_bools_only_in_yaml() {
        let mut t = table(Format::Yaml, "a: yes\nb: off\nc: maybe\n");
        assert!(t.bool("a", false).expect("yes"));
        assert!(!t.bool("b", true).expect("off"));
        assert!(t.bool("c", false).is_err());
        assert!(t.bool("absent", true).expect("default"));
        let mut t = table(Format::Json, r#"{"a": "yes"}"#);
        assert!(t.bool("a", false).is_err());
    }

    #[test]
    fn environment_values_become_text() {
        let mut t = table(
            Format::Yaml,
            "env: {S: text, I: 5, F: 1.0, G: 0.25, B: true}\nbad: {X: [1]}\nname: {\"A=B\": x}\n",
        );
        let env = t.environment("env").expect("env");
        let got: Vec<_> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(got, ["B=true", "F=1.0", "G=0.25", "I=5", "S=text"]);
        let e = t.environment("bad").expect_err("list value");
        assert!(
            e.to_string()
                .contains("key \"bad\": the value of X must be"),
            "{e}"
        );
        assert!(t.environment("name").is_err());
    }

    #[test]
    fn paths_resolve_against_the_file_that_set_them() {
        let mut t = table(Format::Yaml, "rel: tasks/a\nabs: /srv/a\nempty: \"\"\n");
        assert_eq!(
            t.path("rel").expect("rel"),
            Some(PathBuf::from("/etc/runner/tasks/a"))
        );
        assert_eq!(t.path("abs").expect("abs"), Some(PathBuf::from("/srv/a")));
        assert!(t.path("empty").is_err());
    }

    #[test]
    fn unknown_keys_suggest_a_close_one() {
        let t = table(Format::Yaml, "scedule: x\n");
        let e = t.check_keys(&["schedule", "command"]).expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "/etc/runner/daemon.yaml:1:1: job \"j\": unknown key \"scedule\""
        );
        assert_eq!(e.hint().as_deref(), Some("did you mean \"schedule\"?"));
        assert_eq!(suggest("zzzzzz", &["schedule"]), None);
        assert_eq!(
            suggest("max_exection", &["max_execution", "max_execution_grace"]),
            Some("max_execution")
        );
    }

    #[test]
    fn lists_and_json() {
        let mut t = table(
            Format::Yaml,
            "cmd: [sleep, 90]\nbad: [a, {b: c}]\nparams: {a: 1, b: [x, null], c: {d: 2.5}}\nnot: [1]\n",
        );
        let (cmd, _) = t.string_list("cmd").expect("cmd").expect("set");
        assert_eq!(cmd, ["sleep", "90"]);
        assert!(t.string_list("bad").is_err());
        let params = t.json_object("params").expect("params");
        assert_eq!(
            serde_json::Value::Object(params).to_string(),
            r#"{"a":1,"b":["x",null],"c":{"d":2.5}}"#
        );
        assert!(t.json_object("not").is_err());
    }
}
