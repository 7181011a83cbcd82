//! Reading INI files into a merged document that remembers where every value came from.
//!
//! `rust-ini` does the parsing of values. It is lenient in ways a configuration language
//! for unattended machines must not be: a line without `=` is silently glued to the next
//! key, and it keeps no positions. So each file is first checked line by line here, which
//! rejects malformed lines with their number and records the line of every key, and only
//! then handed to `rust-ini`. Merging (the main file, then `include_dir`) happens on the
//! resulting [`Document`]; nothing here knows what any key means.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ini::{Ini, ParseOption};

use super::ConfigError;

/// Where a value was written: the file and its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The file the value was read from.
    pub(crate) path: Arc<Path>,
    /// Its line in that file.
    pub(crate) line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// One `key = value` with its origin.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The value, trimmed, quotes and backslashes kept as written.
    pub(crate) value: String,
    /// Where the winning definition stands.
    pub(crate) origin: Origin,
}

/// One `[section]`: its keys in file order of first appearance.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    /// Keys with their winning entry; key case is preserved.
    pub(crate) entries: Vec<(String, Entry)>,
}

impl Section {
    /// The winning entry of `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, e)| e)
    }

    fn set(&mut self, key: &str, entry: Entry) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, existing)) => *existing = entry,
            None => self.entries.push((key.to_owned(), entry)),
        }
    }
}

/// A merged set of INI files: later files and later duplicates win, key by key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Document {
    sections: BTreeMap<String, Section>,
    files: Vec<PathBuf>,
}

impl Document {
    /// Reads one file into a new document.
    pub(crate) fn load(path: &Path) -> Result<Document, ConfigError> {
        let mut doc = Document::default();
        doc.merge_file(path)?;
        Ok(doc)
    }

    /// Reads `path` and lays its values over the ones already here.
    pub(crate) fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
        self.merge_str(path, &text)
    }

    /// Lays the INI text over the document; `path` is only used to report positions.
    pub(crate) fn merge_str(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let lines = locate(path, text)?;
        let option = ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            ..ParseOption::default()
        };
        // rust-ini only knows comments that start in the first column; an indented one
        // would be glued to the next key. Comment lines become blank (keeping the line
        // numbers) before rust-ini sees the text.
        let uncommented: String = text
            .lines()
            .map(|line| {
                let trimmed = line.trim_start();
                if trimmed.starts_with(';') || trimmed.starts_with('#') {
                    ""
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let parsed = Ini::load_from_str_opt(&uncommented, option)
            .map_err(|e| ConfigError::syntax(path, e.line, e.msg.to_string()))?;
        let path: Arc<Path> = Arc::from(path);
        for (name, props) in parsed.iter() {
            // `locate` already rejected keys outside a section, so `None` is only
            // rust-ini's always-present empty general section.
            let Some(name) = name else { continue };
            let section = self
                .sections
                .entry(name.to_owned())
                .or_insert_with(|| Section {
                    entries: Vec::new(),
                });
            for (key, value) in props.iter() {
                let entry = Entry {
                    value: value.to_owned(),
                    origin: Origin {
                        path: path.clone(),
                        line: lines.key_line(name, key),
                    },
                };
                // rust-ini keeps every duplicate in order; setting each in turn leaves
                // the last one standing, which is what the contract asks for.
                section.set(key, entry);
            }
        }
        self.files.push(path.to_path_buf());
        Ok(())
    }

    /// The section called `name`, if any file had it.
    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections.get(name)
    }

    /// The value of `section.key`, if set.
    pub(crate) fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        self.sections.get(section).and_then(|s| s.get(key))
    }

    /// Every file merged into this document, in merge order.
    pub(crate) fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// Line numbers of the keys of one file; the last duplicate wins.
struct LineIndex {
    keys: BTreeMap<(String, String), usize>,
}

impl LineIndex {
    fn key_line(&self, section: &str, key: &str) -> usize {
        self.keys
            .get(&(section.to_owned(), key.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// Checks the shape of every line and records where sections and keys stand.
///
/// The rules follow the contract: whole-line comments with `;` or `#`, `[section]`
/// headers, `key = value` or `key: value` split at the first separator. Anything else is
/// an error with its line number.
fn locate(path: &Path, text: &str) -> Result<LineIndex, ConfigError> {
    let mut index = LineIndex {
        keys: BTreeMap::new(),
    };
    let mut current: Option<String> = None;
    for (number, raw) in text.lines().enumerate() {
        let line_no = number + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(ConfigError::syntax(
                    path,
                    line_no,
                    format!("section header {line:?} has no closing \"]\""),
                ));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(ConfigError::syntax(path, line_no, "empty section name"));
            }
            current = Some(name.to_owned());
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            return Err(ConfigError::syntax(
                path,
                line_no,
                format!("expected \"key = value\", \"[section]\" or a comment, found {line:?}"),
            ));
        };
        let key = line[..split].trim();
        if key.is_empty() {
            return Err(ConfigError::syntax(
                path,
                line_no,
                "missing key before \"=\"",
            ));
        }
        let Some(section) = &current else {
            return Err(ConfigError::syntax(
                path,
                line_no,
                format!("key {key:?} comes before any [section]"),
            ));
        };
        index
            .keys
            .insert((section.clone(), key.to_owned()), line_no);
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Result<Document, ConfigError> {
        let mut d = Document::default();
        d.merge_str(Path::new("chain.ini"), text)?;
        Ok(d)
    }

    #[test]
    fn values_and_lines_are_kept() {
        let d = doc(
            "; top\n[runner]\nmax_tries = 3\n\n# c\nsleep_time: 2m 30s\n[env]\nFoo = a \"b\" ; c\n",
        )
        .expect("valid");
        let e = d.get("runner", "sleep_time").expect("set");
        assert_eq!(e.value, "2m 30s");
        assert_eq!(e.origin.line, 6);
        assert_eq!(d.get("env", "Foo").expect("set").value, "a \"b\" ; c");
    }

    #[test]
    fn indented_comments_are_comments() {
        let d = doc("[env]\n  ; indented\n\t# tab\nFOO = bar\n[hg]\n   # note\n   remote = x\n")
            .expect("valid");
        assert_eq!(d.get("env", "FOO").expect("set").value, "bar");
        assert_eq!(d.get("env", "FOO").expect("set").origin.line, 4);
        assert_eq!(d.get("hg", "remote").expect("set").value, "x");
    }

    #[test]
    fn last_duplicate_wins_with_its_line() {
        let d = doc("[runner]\nmax_tries = 3\nmax_tries = 4\n").expect("valid");
        let e = d.get("runner", "max_tries").expect("set");
        assert_eq!((e.value.as_str(), e.origin.line), ("4", 3));
    }

    #[test]
    fn key_case_is_preserved() {
        let d = doc("[env]\nHome_Dir = x\n").expect("valid");
        assert!(d.get("env", "Home_Dir").is_some());
        assert!(d.get("env", "home_dir").is_none());
    }

    #[test]
    fn malformed_line_names_its_number() {
        let err = doc("[runner]\nmax_tries = 3\ngarbage here\n").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "chain.ini:3: expected \"key = value\", \"[section]\" or a comment, found \"garbage here\""
        );
    }

    #[test]
    fn unclosed_section_and_orphan_key_are_errors() {
        let err = doc("[runner\n").expect_err("invalid");
        assert!(err.to_string().starts_with("chain.ini:1: section header"));
        let err = doc("x = 1\n[runner]\n").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "chain.ini:1: key \"x\" comes before any [section]"
        );
    }

    #[test]
    fn later_file_overrides_key_by_key() {
        let mut d = Document::default();
        d.merge_str(
            Path::new("a.ini"),
            "[runner]\nmax_tries = 3\nsleep_time = 1\n",
        )
        .expect("valid");
        d.merge_str(Path::new("b.ini"), "[runner]\nmax_tries = 9\n")
            .expect("valid");
        assert_eq!(d.get("runner", "max_tries").expect("set").value, "9");
        assert_eq!(
            d.get("runner", "max_tries")
                .expect("set")
                .origin
                .to_string(),
            "b.ini:2"
        );
        assert_eq!(d.get("runner", "sleep_time").expect("set").value, "1");
    }
}
