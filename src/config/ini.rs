//! Reading INI files into a merged document that remembers where every value came from.
//!
//! One parser, written here, because none of the INI crates keeps line numbers and files
//! written for Mozilla's runner must read as Python 2.7's `RawConfigParser` read them
//! (with `optionxform = str`, so key case is kept). Its rules, as built in below:
//!
//! - a line whose first character is `;` or `#` is a comment, and so is a blank line;
//!   neither ends a value that continues;
//! - `[name]` opens a section (the name as written between the brackets); sections of the
//!   same name in one or more files are one section;
//! - `key = value` or `key: value`, split at the first `=` or `:`; the key is trimmed and
//!   its case kept, the value is trimmed, and a value of exactly `""` is empty;
//! - the first `;` of a value starts an inline comment when whitespace comes before it
//!   within the value (`k = ;x` is `;x`: the blank after `=` is not the value's);
//! - an indented line right after a key continues that key's value (joined with a
//!   newline, trimmed, no inline comment);
//! - `[DEFAULT]` gives its keys to every other section that exists (see [`Document::get`]).
//!
//! An indented line that starts with `;` or `#` right after a key is part of the value,
//! as in Python 2.7 (elsewhere it is a comment, where Python 2.7 refused it).
//!
//! Where runner is stricter or kinder, on purpose: a UTF-8 byte-order mark is skipped; a
//! section header followed by anything but a comment, and a `rem ...` line (a comment to
//! Python 2.7, so `rem = 1` was silently lost) are errors that name their line. Merging (the main file, then `include_dir`) happens on the resulting
//! [`Document`]; nothing here knows what any key means.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use super::ConfigError;

/// The section whose keys every other section inherits.
pub(crate) const DEFAULT_SECTION: &str = "DEFAULT";

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
    /// The value: trimmed, inline comment cut, continuation lines joined with `\n`.
    pub(crate) value: String,
    /// Where the winning definition stands (its key line).
    pub(crate) origin: Origin,
}

/// One `[section]`: its own keys in order of first appearance.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    entries: Keys,
    /// The header line that first opened it.
    pub(crate) origin: Origin,
}

/// Sections with more keys than this get a hash index.
const FEW_KEYS: usize = 8;

/// The keys of a section, in order of first appearance. Most sections hold a few keys,
/// which a short list holds at a third of the cost of a hash map (that matters with
/// 300,000 sections); a long section is indexed, so that reading stays linear.
#[derive(Debug, Clone)]
enum Keys {
    Few(Vec<(String, Entry)>),
    Many(Box<IndexMap<String, Entry>>),
}

impl Section {
    fn new(origin: Origin) -> Section {
        Section {
            entries: Keys::Few(Vec::new()),
            origin,
        }
    }

    /// The section's own keys (not the inherited `[DEFAULT]` ones), in file order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        let (few, many) = match &self.entries {
            Keys::Few(list) => (Some(list.iter().map(|(k, e)| (k.as_str(), e))), None),
            Keys::Many(map) => (None, Some(map.iter().map(|(k, e)| (k.as_str(), e)))),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    fn get(&self, key: &str) -> Option<&Entry> {
        match &self.entries {
            Keys::Few(list) => list.iter().find(|(k, _)| k == key).map(|(_, e)| e),
            Keys::Many(map) => map.get(key),
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        match &mut self.entries {
            Keys::Few(list) => list.iter_mut().find(|(k, _)| k == key).map(|(_, e)| e),
            Keys::Many(map) => map.get_mut(key),
        }
    }

    /// Sets `key`; a duplicate replaces the value but keeps the first one's place.
    fn insert(&mut self, key: &str, entry: Entry) {
        if let Some(existing) = self.get_mut(key) {
            *existing = entry;
            return;
        }
        match &mut self.entries {
            Keys::Few(list) if list.len() < FEW_KEYS => list.push((key.to_owned(), entry)),
            Keys::Few(list) => {
                let mut map: IndexMap<String, Entry> = std::mem::take(list).into_iter().collect();
                map.insert(key.to_owned(), entry);
                self.entries = Keys::Many(Box::new(map));
            }
            Keys::Many(map) => {
                map.insert(key.to_owned(), entry);
            }
        }
    }

    /// Gives back what the list or map reserved for growth.
    fn shrink(&mut self) {
        match &mut self.entries {
            Keys::Few(list) => list.shrink_to_fit(),
            Keys::Many(map) => map.shrink_to_fit(),
        }
    }
}

/// A merged set of INI files: later files and later duplicates win, key by key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Document {
    sections: IndexMap<String, Section>,
    defaults: Option<Section>,
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
        let bytes = std::fs::read(path).map_err(|e| ConfigError::io(path, e))?;
        let text = decode(path, bytes)?;
        self.merge_str(path, &text)
    }

    /// Lays the INI text over the document; `path` is only used to report positions.
    pub(crate) fn merge_str(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let file: Arc<Path> = Arc::from(path);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // The section and key that the next indented line would continue.
        let mut section: Option<String> = None;
        let mut continues: Option<String> = None;
        for (number, raw) in text.split('\n').enumerate() {
            let line_no = number + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = line.trim();
            if trimmed.is_empty() || line.starts_with([';', '#']) {
                continue;
            }
            let origin = || Origin {
                path: file.clone(),
                line: line_no,
            };
            if line.starts_with(char::is_whitespace) {
                let (Some(name), Some(key)) = (&section, &continues) else {
                    // Python 2.7 refused an indented comment where no value continues;
                    // it is harmless, and runner always took it as a comment.
                    if trimmed.starts_with([';', '#']) {
                        continue;
                    }
                    return Err(ConfigError::syntax(
                        path,
                        line_no,
                        format!("indented line {trimmed:?} continues no key"),
                    ));
                };
                if let Some(entry) = self.section_mut(name).get_mut(key) {
                    entry.value.push('\n');
                    entry.value.push_str(trimmed);
                }
                continue;
            }
            continues = None;
            if let Some(rest) = line.strip_prefix('[') {
                let name = section_header(path, line_no, line, rest)?;
                // A file of many small sections should cost about what its text cost:
                // the one left gives back what its map reserved for growth.
                if let Some(left) = &section {
                    self.section_mut(left).shrink();
                }
                if self.section_ref(name).is_none() {
                    let opened = Section::new(origin());
                    if name == DEFAULT_SECTION {
                        self.defaults = Some(opened);
                    } else {
                        self.sections.insert(name.to_owned(), opened);
                    }
                }
                section = Some(name.to_owned());
                continue;
            }
            let (key, value) = key_value(path, line_no, line)?;
            let Some(name) = &section else {
                return Err(ConfigError::syntax(
                    path,
                    line_no,
                    format!("key {key:?} comes before any [section]"),
                ));
            };
            let entry = Entry {
                value,
                origin: origin(),
            };
            // The last duplicate wins; it keeps the place of the first in the order.
            self.section_mut(name).insert(key, entry);
            continues = Some(key.to_owned());
        }
        // A document of many small sections should cost about what its text cost.
        if let Some(name) = &section {
            self.section_mut(name).shrink();
        }
        self.files.push(path.to_path_buf());
        Ok(())
    }

    fn section_ref(&self, name: &str) -> Option<&Section> {
        if name == DEFAULT_SECTION {
            self.defaults.as_ref()
        } else {
            self.sections.get(name)
        }
    }

    fn section_mut(&mut self, name: &str) -> &mut Section {
        let section = if name == DEFAULT_SECTION {
            self.defaults.as_mut()
        } else {
            self.sections.get_mut(name)
        };
        section.expect("a key is only read after its section header opened the section")
    }

    /// The section called `name` (`DEFAULT` included), if any file had it.
    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.section_ref(name)
    }

    /// Every section but `[DEFAULT]`, in order of first appearance.
    pub(crate) fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.sections.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// The value of `section.key`, as ConfigParser's `get` finds it: the section's own key,
    /// else `[DEFAULT]`'s, but only for a section that some file opened.
    pub(crate) fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        let own = self.section_ref(section)?;
        own.get(key)
            .or_else(|| self.defaults.as_ref().and_then(|d| d.get(key)))
    }

    /// Every key of `section` with `[DEFAULT]`'s mixed in (ConfigParser's `items`):
    /// inherited keys first, then the section's own, each key once.
    pub(crate) fn items(&self, section: &str) -> Vec<(&str, &Entry)> {
        let Some(own) = self.section_ref(section) else {
            return Vec::new();
        };
        let mut items = Vec::new();
        if section != DEFAULT_SECTION
            && let Some(defaults) = &self.defaults
        {
            items.extend(defaults.entries().filter(|(k, _)| own.get(k).is_none()));
        }
        items.extend(own.entries());
        items
    }

    /// Every file merged into this document, in merge order.
    pub(crate) fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// The name of a `[section]` line; `rest` is the line after its `[`.
/// The file's text. Files written for Mozilla's runner were read as bytes, so a comment in
/// another encoding (an old Latin-1 `# Müller`) is harmless and read as text with
/// replacement characters; anything else that is not UTF-8 is an error naming its line.
fn decode(path: &Path, bytes: Vec<u8>) -> Result<String, ConfigError> {
    let bytes = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e.into_bytes(),
    };
    let mut text = String::with_capacity(bytes.len());
    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if number > 0 {
            text.push('\n');
        }
        match std::str::from_utf8(line) {
            Ok(line) => text.push_str(line),
            Err(_) if line.starts_with(b";") || line.starts_with(b"#") => {
                text.push_str(&String::from_utf8_lossy(line));
            }
            Err(_) => {
                return Err(ConfigError::syntax(
                    path,
                    number + 1,
                    "the line is not valid UTF-8 (only comments may be in another encoding)",
                ));
            }
        }
    }
    Ok(text)
}

fn section_header<'a>(
    path: &Path,
    line_no: usize,
    line: &str,
    rest: &'a str,
) -> Result<&'a str, ConfigError> {
    let Some((name, after)) = rest.split_once(']') else {
        return Err(ConfigError::syntax(
            path,
            line_no,
            format!("section header {line:?} has no closing \"]\""),
        ));
    };
    if name.is_empty() {
        return Err(ConfigError::syntax(path, line_no, "empty section name"));
    }
    let after = after.trim_start();
    if !after.is_empty() && !after.starts_with([';', '#']) {
        return Err(ConfigError::syntax(
            path,
            line_no,
            format!("unexpected {after:?} after section header [{name}]"),
        ));
    }
    Ok(name)
}

/// Splits a key line at its first `=` or `:` and cleans the value as ConfigParser does.
fn key_value<'a>(
    path: &Path,
    line_no: usize,
    line: &'a str,
) -> Result<(&'a str, String), ConfigError> {
    let Some(split) = line.find(['=', ':']) else {
        let shown = line.trim();
        let reason = if shown
            .split_whitespace()
            .next()
            .map(str::to_ascii_lowercase)
            .as_deref()
            == Some("rem")
        {
            format!("{shown:?} is not a comment here: start comments with \";\" or \"#\"")
        } else {
            format!("expected \"key = value\", \"[section]\" or a comment, found {shown:?}")
        };
        return Err(ConfigError::syntax(path, line_no, reason));
    };
    let key = line[..split].trim_end();
    if key.is_empty() {
        return Err(ConfigError::syntax(
            path,
            line_no,
            format!("missing key before \"{}\"", &line[split..=split]),
        ));
    }
    // As ConfigParser: the whitespace after the separator is not part of the value, only
    // the value's first `;` can start a comment, and only when whitespace comes before
    // it in the value. For a value that starts with `;`, Python 2.7 looks at the value's
    // last character instead (its index -1): `k = ;x` is ";x" but `k = ;x ` is empty.
    let value = line[split + 1..].trim_start();
    let value = match value.find(';') {
        Some(0) if value.ends_with(char::is_whitespace) => "",
        Some(pos) if pos > 0 && value[..pos].ends_with(char::is_whitespace) => &value[..pos],
        _ => value,
    };
    let value = value.trim();
    let value = if value == "\"\"" { "" } else { value };
    Ok((key, value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Result<Document, ConfigError> {
        let mut d = Document::default();
        d.merge_str(Path::new("chain.ini"), text)?;
        Ok(d)
    }

    fn value(d: &Document, section: &str, key: &str) -> String {
        d.get(section, key).expect("set").value.clone()
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
        assert_eq!(value(&d, "env", "Foo"), "a \"b\"");
    }

    #[test]
    fn inline_comments_follow_configparser() {
        let d =
            doc("[s]\na = x ; c\nb = x;y\nc = x;y ;z\nd = x\t; tab\ne = \"\"\nf =\ng = u=v: w\n")
                .expect("valid");
        assert_eq!(value(&d, "s", "a"), "x");
        assert_eq!(value(&d, "s", "b"), "x;y");
        // Only the first `;` is looked at.
        assert_eq!(value(&d, "s", "c"), "x;y ;z");
        assert_eq!(value(&d, "s", "d"), "x");
        assert_eq!(value(&d, "s", "e"), "");
        assert_eq!(value(&d, "s", "f"), "");
        assert_eq!(value(&d, "s", "g"), "u=v: w");
        let d = doc("[s]\nh = ;x\nh2 = ;x \nh3 =;x\n").expect("valid");
        assert_eq!(value(&d, "s", "h"), ";x");
        assert_eq!(value(&d, "s", "h2"), "");
        assert_eq!(value(&d, "s", "h3"), ";x");
        let d = doc("[s]\nk: a = b\nurl = http://x\n").expect("valid");
        assert_eq!(value(&d, "s", "k"), "a = b");
        assert_eq!(value(&d, "s", "url"), "http://x");
    }

    #[test]
    fn indented_lines_continue_the_key_above() {
        let d = doc("[s]\nk = one ; c\n  two ; kept\n\n\tthree\n# note\n  four\nnext = x\n")
            .expect("valid");
        let e = d.get("s", "k").expect("set");
        assert_eq!(e.value, "one\ntwo ; kept\nthree\nfour");
        assert_eq!(e.origin.line, 2);
        assert_eq!(value(&d, "s", "next"), "x");
        let err = doc("[s]\n  orphan\n").expect_err("nothing to continue");
        assert_eq!(
            err.to_string(),
            "chain.ini:2: indented line \"orphan\" continues no key"
        );
    }

    #[test]
    fn indented_comments_are_comments_unless_a_value_continues() {
        let d = doc("[env]\n  ; indented\n\t# tab\nFOO = bar\n[hg]\n   # note\nremote = x\n")
            .expect("valid");
        assert_eq!(value(&d, "env", "FOO"), "bar");
        assert_eq!(d.get("env", "FOO").expect("set").origin.line, 4);
        assert_eq!(value(&d, "hg", "remote"), "x");
        // Right after a key, Python 2.7 took it for a continuation line.
        let d = doc("[s]\nk = v\n  ; indented\nj = 1\n").expect("valid");
        assert_eq!(value(&d, "s", "k"), "v\n; indented");
    }

    #[test]
    fn default_section_fills_sections_that_exist() {
        let d = doc("[DEFAULT]\nbase = /srv\nmax_time = 5\n[hg]\nmax_time = 9\n[env]\n")
            .expect("valid");
        assert_eq!(value(&d, "hg", "base"), "/srv");
        assert_eq!(value(&d, "hg", "max_time"), "9");
        assert_eq!(value(&d, "DEFAULT", "base"), "/srv");
        assert!(d.get("nosuch", "base").is_none());
        let env: Vec<(&str, &str)> = d
            .items("env")
            .into_iter()
            .map(|(k, e)| (k, e.value.as_str()))
            .collect();
        assert_eq!(env, vec![("base", "/srv"), ("max_time", "5")]);
        let names: Vec<&str> = d.sections().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["hg", "env"]);
    }

    #[test]
    fn byte_order_mark_and_crlf_are_ignored() {
        let d = doc("\u{feff}[runner]\r\nmax_tries = 3\r\n").expect("valid");
        assert_eq!(value(&d, "runner", "max_tries"), "3");
    }

    #[test]
    fn a_comment_in_another_encoding_is_read_and_a_value_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("latin1.ini");
        std::fs::write(&path, b"# M\xfcller\n[a]\nk = v\n").expect("write");
        let d = Document::load(&path).expect("a Latin-1 comment is harmless");
        assert_eq!(value(&d, "a", "k"), "v");
        std::fs::write(&path, b"[a]\n; ok\nk = M\xfcller\n").expect("write");
        let e = Document::load(&path).expect_err("a Latin-1 value is refused");
        assert!(e.to_string().contains("latin1.ini:3:"), "{e}");
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }

    #[test]
    fn last_duplicate_wins_with_its_line() {
        let d = doc("[runner]\nmax_tries = 3\n[x]\n[runner]\nmax_tries = 4\n").expect("valid");
        let e = d.get("runner", "max_tries").expect("set");
        assert_eq!((e.value.as_str(), e.origin.line), ("4", 5));
    }

    #[test]
    fn key_and_section_case_is_preserved() {
        let d = doc("[env]\nHome_Dir = x\n[Env]\n").expect("valid");
        assert!(d.get("env", "Home_Dir").is_some());
        assert!(d.get("env", "home_dir").is_none());
        assert!(d.get("Env", "Home_Dir").is_none());
    }

    #[test]
    fn malformed_line_names_its_number() {
        let err = doc("[runner]\nmax_tries = 3\ngarbage here\n").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "chain.ini:3: expected \"key = value\", \"[section]\" or a comment, found \"garbage here\""
        );
        let err = doc("[runner]\nREM old style comment\n").expect_err("invalid");
        assert!(err.to_string().contains("is not a comment here"), "{err}");
        let err = doc("[runner]\n= 3\n").expect_err("invalid");
        assert_eq!(err.to_string(), "chain.ini:2: missing key before \"=\"");
    }

    #[test]
    fn section_headers() {
        let err = doc("[runner\n").expect_err("invalid");
        assert!(err.to_string().starts_with("chain.ini:1: section header"));
        let err = doc("[]\n").expect_err("invalid");
        assert_eq!(err.to_string(), "chain.ini:1: empty section name");
        let err = doc("[runner] max_tries = 3\n").expect_err("invalid");
        assert!(err.to_string().contains("after section header [runner]"));
        let d = doc("[runner] ; the chain\nmax_tries = 3\n[ spaced ]\nk = v\n").expect("valid");
        assert_eq!(value(&d, "runner", "max_tries"), "3");
        assert_eq!(value(&d, " spaced ", "k"), "v");
        let err = doc("x = 1\n[runner]\n").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "chain.ini:1: key \"x\" comes before any [section]"
        );
    }

    #[test]
    fn long_sections_keep_order_and_the_last_duplicate() {
        let mut text = String::from("[s]\n");
        for i in 0..100 {
            text.push_str(&format!("k{i} = {i}\n"));
        }
        text.push_str("k3 = again\n  more\n");
        let d = doc(&text).expect("valid");
        let keys: Vec<&str> = d
            .section("s")
            .expect("s")
            .entries()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.len(), 100);
        assert_eq!(&keys[..3], ["k0", "k1", "k2"]);
        assert_eq!(value(&d, "s", "k3"), "again\nmore");
        assert_eq!(d.get("s", "k3").expect("set").origin.line, 102);
        assert_eq!(value(&d, "s", "k99"), "99");
    }

    /// Random text built from the characters that matter to the grammar: the reader never
    /// panics, and every value it keeps points at a line of the file that holds its key.
    #[test]
    fn random_input_never_panics_and_origins_point_at_key_lines() {
        use rand::{Rng, SeedableRng};
        let pieces = [
            "[", "]", "=", ":", ";", "#", " ", "\t", "\n", "\r\n", "\u{feff}", "a", "B", "\0", "é",
            "\"\"", "DEFAULT", "rem", "[s]\n", "k = v\n", "  cont\n",
        ];
        let seed = 0x1e1_u64;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for case in 0..10_000 {
            let len = rng.gen_range(0..40);
            let text: String = (0..len)
                .map(|_| pieces[rng.gen_range(0..pieces.len())])
                .collect();
            let Ok(d) = doc(&text) else { continue };
            let lines: Vec<&str> = text.split('\n').collect();
            for (name, section) in d
                .sections()
                .chain(d.section(DEFAULT_SECTION).map(|s| (DEFAULT_SECTION, s)))
            {
                for (key, entry) in section.entries() {
                    let line = lines[entry.origin.line - 1];
                    assert!(
                        line.contains(key),
                        "seed {seed} case {case}: [{name}] {key:?} at line {} of {text:?}",
                        entry.origin.line
                    );
                }
            }
        }
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
        assert_eq!(value(&d, "runner", "max_tries"), "9");
        assert_eq!(
            d.get("runner", "max_tries")
                .expect("set")
                .origin
                .to_string(),
            "b.ini:2"
        );
        assert_eq!(value(&d, "runner", "sleep_time"), "1");
    }

    #[test]
    fn a_continuation_does_not_cross_files() {
        let mut d = Document::default();
        d.merge_str(Path::new("a.ini"), "[s]\nk = v\n")
            .expect("valid");
        let err = d
            .merge_str(Path::new("b.ini"), "  more\n")
            .expect_err("nothing to continue in b.ini");
        assert!(err.to_string().starts_with("b.ini:1: indented line"));
    }
}
