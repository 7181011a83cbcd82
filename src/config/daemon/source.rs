//! Finding and merging the files of a daemon configuration.
//!
//! This owns which files make up a configuration (a single file, or a directory with
//! `runner.*`/`dsari.*` and `config.d/`) and merging their trees the way dsari does. Parsing
//! one file is `tree`'s job; giving the tree a meaning is `load`'s and `job`'s.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::tree::{Format, Node, SourceFile, Value, parse};
use crate::config::error::{ConfigError, ErrorKind, Scope};

/// The main files of a configuration directory, in the order they are merged: runner's own
/// names first; dsari's names are read only when neither of runner's exists, so a dsari
/// directory runs unchanged and a migrated one is never read twice.
const RUNNER_FILES: [(&str, Format); 2] =
    [("runner.yaml", Format::Yaml), ("runner.json", Format::Json)];
const DSARI_FILES: [(&str, Format); 2] =
    [("dsari.yaml", Format::Yaml), ("dsari.json", Format::Json)];

/// The merged tree of a configuration and what went into it.
#[derive(Debug)]
pub(crate) struct Sources {
    /// The merged top-level mapping.
    pub(crate) root: BTreeMap<String, Node>,
    /// The file errors about the configuration as a whole are reported against.
    pub(crate) main: Arc<SourceFile>,
    /// Every file read, in merge order.
    pub(crate) files: Vec<PathBuf>,
    /// Non-fatal oddities worth one log line each.
    pub(crate) warnings: Vec<String>,
}

/// Reads the configuration at `path`: a YAML or JSON file, or a directory.
pub(crate) fn read(path: &Path) -> Result<Sources, ConfigError> {
    let meta = fs::metadata(path).map_err(|e| ConfigError::io(path, e))?;
    let mut warnings = Vec::new();
    let mut files = Vec::new();
    let mut root = BTreeMap::new();

    // A directory: the main files, then config.d (by default `DIR/config.d`, as in dsari).
    // A single file has no config.d unless it names one with `config_d`.
    let (main, default_config_d) = if meta.is_dir() {
        let present = |names: &[(&'static str, Format)]| {
            names
                .iter()
                .filter(|(name, _)| path.join(name).is_file())
                .map(|&(name, format)| (name, format))
                .collect::<Vec<_>>()
        };
        let runner = present(&RUNNER_FILES);
        let dsari = present(&DSARI_FILES);
        let chosen = if runner.is_empty() {
            dsari
        } else {
            for (name, _) in &dsari {
                warnings.push(format!(
                    "{}: ignored, because {} takes its place",
                    path.join(name).display(),
                    path.join(runner[0].0).display()
                ));
            }
            runner
        };
        for &(name, format) in &chosen {
            let file = path.join(name);
            merge_file(&mut root, &file, format)?;
            files.push(file);
        }
        // Errors about the configuration as a whole name the first main file, or the
        // directory when there is none (a directory of config.d files only, as dsari allows).
        let main_path = files.first().cloned().unwrap_or_else(|| path.to_owned());
        let main_format = chosen.first().map_or(Format::Yaml, |&(_, f)| f);
        (
            Arc::new(SourceFile {
                path: main_path,
                format: main_format,
            }),
            Some(path.join("config.d")),
        )
    } else {
        let format = format_of(path);
        merge_file(&mut root, path, format)?;
        files.push(path.to_owned());
        (
            Arc::new(SourceFile {
                path: path.to_owned(),
                format,
            }),
            None,
        )
    };

    let config_d = match root.get("config_d") {
        None => default_config_d.map(|dir| (dir, false)),
        Some(node) => config_d_setting(node)?.map(|dir| (dir, true)),
    };
    let before = files.len();
    if let Some((dir, explicit)) = config_d {
        if dir.is_dir() {
            for (file, format) in list_config_d(&dir)? {
                merge_file(&mut root, &file, format)?;
                files.push(file);
            }
        } else if explicit {
            warnings.push(format!(
                "{}: config_d {} is not a directory; no config.d files read",
                main.path.display(),
                dir.display()
            ));
        }
    }
    if let Some(node) = root.get("config_d")
        && files[..before].iter().all(|f| *f != node.origin.path)
    {
        warnings.push(format!(
            "{}: config_d has no effect in a config.d file",
            node.origin.path.display()
        ));
    }
    if files.is_empty() {
        return Err(ConfigError::whole(
            path,
            "no runner.yaml, runner.json, dsari.yaml, dsari.json or config.d/ files here",
        ));
    }
    Ok(Sources {
        root,
        main,
        files,
        warnings,
    })
}

/// JSON for `.json`, YAML for anything else (YAML also reads most JSON).
fn format_of(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
        _ => Format::Yaml,
    }
}

/// The `config_d` key: a directory (relative to the file that names it), or null, false or ""
/// to read no config.d at all.
fn config_d_setting(node: &Node) -> Result<Option<PathBuf>, ConfigError> {
    match &node.value {
        Value::Null | Value::Bool(false) => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(node.origin.dir().join(s))),
        other => Err(ConfigError::new(
            &node.origin.path,
            Scope::Top,
            ErrorKind::BadType {
                key: "config_d".to_owned(),
                expected: "a directory path".to_owned(),
                found: other.describe(),
            },
        )
        .at(Some(node.at))),
    }
}

/// The files of a config.d directory in dsari's order: every `*.yaml` by name, then every
/// `*.json` by name, so JSON wins a conflict. Only regular files (or links to them) count.
fn list_config_d(dir: &Path) -> Result<Vec<(PathBuf, Format)>, ConfigError> {
    let mut yaml = Vec::new();
    let mut json = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| ConfigError::io(dir, e))? {
        let entry = entry.map_err(|e| ConfigError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let list = if name.ends_with(".yaml") {
            &mut yaml
        } else if name.ends_with(".json") {
            &mut json
        } else {
            continue;
        };
        let file = entry.path();
        if file.is_file() {
            list.push(file);
        }
    }
    yaml.sort();
    json.sort();
    Ok(yaml
        .into_iter()
        .map(|f| (f, Format::Yaml))
        .chain(json.into_iter().map(|f| (f, Format::Json)))
        .collect())
}

/// Parses `file` and merges it into `root`.
/// Reads a configuration file of at most `MAX_FILE_BYTES`.
fn read_bounded(file: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let limit = crate::config::nesting::MAX_FILE_BYTES;
    let mut text = String::new();
    fs::File::open(file)
        .and_then(|f| f.take(limit + 1).read_to_string(&mut text))
        .map_err(|e| ConfigError::io(file, e))?;
    if text.len() as u64 > limit {
        return Err(ConfigError::whole(
            file,
            format!("the file is larger than {} MiB", limit >> 20),
        ));
    }
    Ok(text)
}

fn merge_file(
    root: &mut BTreeMap<String, Node>,
    file: &Path,
    format: Format,
) -> Result<(), ConfigError> {
    let text = read_bounded(file)?;
    let origin = Arc::new(SourceFile {
        path: file.to_owned(),
        format,
    });
    let node = parse(&text, &origin)?;
    match node.value {
        Value::Map(map) => {
            merge_maps(root, map);
            Ok(())
        }
        // An empty YAML file is null: treat it as an empty mapping, so that a config.d file
        // can be emptied (or all commented out) without breaking the daemon.
        Value::Null => Ok(()),
        other => Err(ConfigError::whole(
            file,
            format!(
                "the top level must be a mapping, found {}",
                other.describe()
            ),
        )
        .at(Some(node.at))),
    }
}

/// dsari's `dict_merge`: mappings merge key by key, recursively; anything else (a list, a
/// scalar, or a mapping over a non-mapping) replaces what was there. A merged mapping keeps
/// the origin of its first definition.
pub(crate) fn merge_maps(base: &mut BTreeMap<String, Node>, over: BTreeMap<String, Node>) {
    for (key, node) in over {
        match (base.get_mut(&key), node.value) {
            (
                Some(Node {
                    value: Value::Map(existing),
                    ..
                }),
                Value::Map(incoming),
            ) => merge_maps(existing, incoming),
            (_, value) => {
                base.insert(key, Node { value, ..node });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, text).expect("write");
    }

    fn text(root: &BTreeMap<String, Node>, path: &[&str]) -> String {
        let mut map = root;
        let (last, init) = path.split_last().expect("path");
        for key in init {
            match &map[*key].value {
                Value::Map(m) => map = m,
                other => panic!("{key} is {other:?}"),
            }
        }
        match &map[*last].value {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn config_d_merges_yaml_then_json_in_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(
            d,
            "dsari.yaml",
            "jobs:\n  a:\n    command: [x]\n    environment: {A: main}\n",
        );
        write(
            d,
            "dsari.json",
            r#"{"jobs": {"a": {"schedule": "@daily"}}}"#,
        );
        write(
            d,
            "config.d/20.yaml",
            "jobs: {a: {environment: {A: y20, B: y20}}}\n",
        );
        write(
            d,
            "config.d/10.yaml",
            "jobs: {a: {environment: {A: y10, C: y10}}}\n",
        );
        write(
            d,
            "config.d/05.json",
            r#"{"jobs": {"a": {"environment": {"A": "j05"}}}}"#,
        );
        write(d, "config.d/ignored.txt", "not: [read");
        let sources = read(d).expect("reads");
        let names: Vec<_> = sources
            .files
            .iter()
            .map(|f| f.strip_prefix(d).expect("inside").display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "dsari.yaml",
                "dsari.json",
                "config.d/10.yaml",
                "config.d/20.yaml",
                "config.d/05.json"
            ]
        );
        // JSON after YAML even though "05" sorts first; mappings merge key by key.
        assert_eq!(
            text(&sources.root, &["jobs", "a", "environment", "A"]),
            "j05"
        );
        assert_eq!(
            text(&sources.root, &["jobs", "a", "environment", "B"]),
            "y20"
        );
        assert_eq!(
            text(&sources.root, &["jobs", "a", "environment", "C"]),
            "y10"
        );
        assert_eq!(text(&sources.root, &["jobs", "a", "schedule"]), "@daily");
        // Each value remembers its file.
        let Value::Map(jobs) = &sources.root["jobs"].value else {
            panic!()
        };
        let Value::Map(a) = &jobs["a"].value else {
            panic!()
        };
        assert_eq!(a["schedule"].origin.path, d.join("dsari.json"));
        assert_eq!(a["command"].origin.path, d.join("dsari.yaml"));
    }

    #[test]
    fn lists_replace_rather_than_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "runner.yaml", "jobs: {a: {command: [one, two]}}\n");
        write(d, "config.d/x.yaml", "jobs: {a: {command: [three]}}\n");
        let sources = read(d).expect("reads");
        let Value::Map(jobs) = &sources.root["jobs"].value else {
            panic!()
        };
        let Value::Map(a) = &jobs["a"].value else {
            panic!()
        };
        let Value::List(cmd) = &a["command"].value else {
            panic!()
        };
        assert_eq!(cmd.len(), 1);
    }

    #[test]
    fn runner_files_take_the_place_of_dsari_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "runner.yaml", "data_dir: mine\n");
        write(d, "dsari.json", r#"{"data_dir": "theirs"}"#);
        let sources = read(d).expect("reads");
        assert_eq!(text(&sources.root, &["data_dir"]), "mine");
        assert_eq!(sources.files, [d.join("runner.yaml")]);
        assert_eq!(sources.warnings.len(), 1, "{:?}", sources.warnings);
    }

    #[test]
    fn config_d_key_moves_or_disables_config_d() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "dsari.yaml", "config_d: extra\n");
        write(d, "config.d/a.yaml", "data_dir: default-config-d\n");
        write(d, "extra/a.yaml", "data_dir: extra\n");
        assert_eq!(text(&read(d).expect("reads").root, &["data_dir"]), "extra");

        write(d, "dsari.yaml", "config_d: null\ndata_dir: main\n");
        assert_eq!(text(&read(d).expect("reads").root, &["data_dir"]), "main");
    }

    #[test]
    fn a_single_file_has_no_config_d_by_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "daemon.json", r#"{"data_dir": "file"}"#);
        write(d, "config.d/a.yaml", "data_dir: config-d\n");
        let sources = read(&d.join("daemon.json")).expect("reads");
        assert_eq!(text(&sources.root, &["data_dir"]), "file");
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "bad.json", "{\n  \"jobs\": {,}\n}\n");
        let e = read(&d.join("bad.json")).expect_err("bad JSON");
        let msg = e.to_string();
        assert!(msg.contains("bad.json:2:12: invalid JSON: "), "{msg}");
        assert!(!msg.contains(" at line "), "{msg}");

        write(d, "bad.yaml", "jobs:\n  a: [x\n");
        let msg = read(&d.join("bad.yaml")).expect_err("bad YAML").to_string();
        assert!(msg.contains("bad.yaml:"), "{msg}");
        assert!(msg.contains(": invalid YAML: "), "{msg}");

        write(d, "list.yaml", "- a\n- b\n");
        let msg = read(&d.join("list.yaml")).expect_err("list").to_string();
        assert!(
            msg.ends_with("list.yaml:1:1: the top level must be a mapping, found a list"),
            "{msg}"
        );
    }

    #[test]
    fn an_empty_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = read(dir.path()).expect_err("empty");
        assert!(e.to_string().contains("no runner.yaml"), "{e}");
    }
}
