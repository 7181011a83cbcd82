//! The typed view of a chain configuration: `[runner]`, `[env]` and per-task sections.
//!
//! Values are validated as they are typed, and every error points at the line that set
//! the value. Task sections cannot be told apart from free sections until the task
//! directory is known, so [`ChainConfig::task_settings`] is asked per task name and
//! [`ChainConfig::check_sections`] looks for misspelt section names once the names are
//! known. `[DEFAULT]` fills in keys as ConfigParser does (see `ini.rs`): `[env]` and task
//! sections take all of its keys, `[runner]` only the ones it knows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::ini::{DEFAULT_SECTION, Document, Entry};
use super::near_miss::{NearMisses, suggest};
use super::{ConfigError, duration};

/// Keys of `[runner]`, with the task-level ones first.
const RUNNER_KEYS: &[&str] = &[
    "sleep_time",
    "retry_jitter",
    "max_tries",
    "max_time",
    "kill_grace",
    "interpreter",
    "leftovers",
    "halt_task",
    "task_hook",
    "include_dir",
    "retry_from",
    "parallel",
    "name",
    "state_dir",
    "session",
    "post_fire_hook",
    "post_replay_hook",
    "post_skip_hook",
    "hook_timeout",
    "log_max_bytes",
    "keep_runs",
    "keep_days",
    "event_keep_days",
    "database",
    "host",
    "lock",
];

/// Keys a task's own section may set; any other key there belongs to the task.
const TASK_KEYS: &[&str] = &[
    "sleep_time",
    "retry_jitter",
    "max_tries",
    "max_time",
    "kill_grace",
    "interpreter",
    "depends_on",
    "after",
    "unless",
    "wait_time",
    "enabled",
    "frequency",
    "leftovers",
];

/// Where a retry starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RetryFrom {
    /// Every task runs again, as Mozilla's runner does.
    Start,
    /// Tasks that already succeeded in this run are kept.
    Failed,
}

/// How often a task runs, decided from the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Frequency {
    /// Every run.
    Always,
    /// Skipped once it succeeded since the machine booted.
    OncePerBoot,
    /// Skipped once it ever succeeded for this job.
    Once,
}

/// What happens to processes a task leaves running when it exits by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Leftovers {
    /// Let them run (a boot task may start a service); they are named in the log and
    /// the attempt's record.
    #[default]
    Keep,
    /// Stop them (TERM, KILL after `kill_grace`) before the chain goes on.
    Kill,
}

/// The effective settings of one task: `[runner]` overlaid with the task's section.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskSettings {
    /// Time limit of one attempt; `None` means no limit.
    #[serde(serialize_with = "ser_opt_duration")]
    pub(crate) max_time: Option<Duration>,
    /// Chain attempts before giving up when this task fails.
    pub(crate) max_tries: u32,
    /// Lower bound of the pause before a retry.
    #[serde(serialize_with = "ser_duration")]
    pub(crate) sleep_time: Duration,
    /// Upper bound of the random extra pause.
    #[serde(serialize_with = "ser_duration")]
    pub(crate) retry_jitter: Duration,
    /// Time between SIGTERM and SIGKILL.
    #[serde(serialize_with = "ser_duration")]
    pub(crate) kill_grace: Duration,
    /// Command prefix the task file is appended to.
    pub(crate) interpreter: Option<Vec<String>>,
    /// Task names that must finish first.
    pub(crate) depends_on: Vec<String>,
    /// Events that must have fired before the task starts.
    pub(crate) after: Vec<String>,
    /// Events that abandon the task if fired before it starts.
    pub(crate) unless: Vec<String>,
    /// How long to wait for `after` events; `None` means no limit.
    #[serde(serialize_with = "ser_opt_duration")]
    pub(crate) wait_time: Option<Duration>,
    /// A disabled task is listed but never run.
    pub(crate) enabled: bool,
    /// Whether earlier successes skip the task.
    pub(crate) frequency: Frequency,
    /// What happens to processes it leaves behind.
    pub(crate) leftovers: Leftovers,
}

/// Settings of the chain as a whole, from `[runner]`.
#[derive(Debug, Clone)]
pub(crate) struct RunnerSettings {
    /// File name (in the task directory) or path of the halt task.
    pub(crate) halt_task: String,
    /// Command called before and after every attempt.
    pub(crate) task_hook: Option<Vec<String>>,
    /// Commands called after `fire`, `replay` and `skip`.
    pub(crate) post_fire_hook: Option<Vec<String>>,
    /// See `post_fire_hook`.
    pub(crate) post_replay_hook: Option<Vec<String>>,
    /// See `post_fire_hook`.
    pub(crate) post_skip_hook: Option<Vec<String>>,
    /// How long a hook may run before its process group is killed.
    pub(crate) hook_timeout: Duration,
    /// Where a retry starts over.
    pub(crate) retry_from: RetryFrom,
    /// How many independent tasks may run at once.
    pub(crate) parallel: usize,
    /// The job name runs are recorded under, when set.
    pub(crate) name: Option<String>,
    /// Where runs are recorded, when set here.
    pub(crate) state_dir: Option<PathBuf>,
    /// The event session; `boot` means the current boot id.
    pub(crate) session: String,
    /// Cap of captured output per attempt.
    pub(crate) log_max_bytes: u64,
    /// Runs kept per job.
    pub(crate) keep_runs: u64,
    /// Age after which runs are deleted, when set.
    pub(crate) keep_days: Option<u64>,
    /// Age after which events are deleted; `keep_days` when unset.
    pub(crate) event_keep_days: Option<u64>,
    /// The store (`database = URL`, section 13), when set here; it may hold a password.
    pub(crate) database: Option<Secret>,
    /// The host name runs are recorded with, when set here.
    pub(crate) host: Option<String>,
    /// `lock = fleet`: one run of the job in the whole fleet, not one per host.
    pub(crate) fleet_lock: bool,
}

/// A value that may hold a password: usable, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

/// A fully loaded chain configuration (or the defaults, when no file was given).
#[derive(Debug, Clone)]
pub(crate) struct ChainConfig {
    /// The main configuration file, absolute; `None` when runner runs without one.
    pub(crate) file: Option<PathBuf>,
    /// Every merged value, for `-g` and for task sections.
    pub(crate) doc: Document,
    /// Chain-wide settings.
    pub(crate) runner: RunnerSettings,
    /// The defaults every task starts from.
    pub(crate) defaults: TaskSettings,
    /// `[env]` in file order.
    pub(crate) env: Vec<(String, String)>,
}

impl ChainConfig {
    /// Reads only the documents (main file and `include_dir`), without typing any value.
    ///
    /// This is what `-g` needs: a task asking for its own section must not fail because
    /// some unrelated `[runner]` value is odd.
    pub(crate) fn load_document(file: &Path) -> Result<Document, ConfigError> {
        let mut doc = Document::load(file)?;
        // Read from the main file only (as Mozilla's runner does): an included file cannot
        // include more.
        if let Some(entry) = doc.get("runner", "include_dir").cloned() {
            let base = file.parent().unwrap_or(Path::new("."));
            let dir = base.join(&entry.value);
            for path in include_files(&dir, &entry)? {
                doc.merge_file(&path)?;
            }
        }
        Ok(doc)
    }

    /// Loads and validates the configuration; `None` gives the built-in defaults.
    pub(crate) fn load(file: Option<&Path>) -> Result<ChainConfig, ConfigError> {
        let (file, doc) = match file {
            Some(path) => {
                let abs = std::path::absolute(path).map_err(|e| ConfigError::io(path, e))?;
                let doc = ChainConfig::load_document(&abs)?;
                (Some(abs), doc)
            }
            None => (None, Document::default()),
        };
        // Only `[runner]`'s own keys are checked: `[DEFAULT]` is free for everything else.
        if let Some(section) = doc.section("runner") {
            for (key, entry) in section.entries() {
                if !RUNNER_KEYS.contains(&key) {
                    return Err(ConfigError::unknown_key(
                        &entry.origin,
                        "runner",
                        key,
                        suggest(key, RUNNER_KEYS),
                    ));
                }
            }
        }
        let values = Values {
            section_name: "runner",
            doc: &doc,
        };
        let defaults = TaskSettings {
            max_time: values
                .opt_duration("max_time")?
                .unwrap_or(Some(Duration::from_secs(600))),
            max_tries: values.int("max_tries", 1)?.unwrap_or(5),
            sleep_time: values
                .duration("sleep_time")?
                .unwrap_or(Duration::from_secs(1)),
            retry_jitter: values
                .duration("retry_jitter")?
                .unwrap_or(Duration::from_secs(30)),
            kill_grace: values
                .duration("kill_grace")?
                .unwrap_or(Duration::from_secs(10)),
            interpreter: values.command("interpreter")?,
            depends_on: Vec::new(),
            after: Vec::new(),
            unless: Vec::new(),
            wait_time: None,
            enabled: true,
            frequency: Frequency::Always,
            leftovers: values
                .choice(
                    "leftovers",
                    &[("keep", Leftovers::Keep), ("kill", Leftovers::Kill)],
                )?
                .unwrap_or_default(),
        };
        let runner = RunnerSettings {
            halt_task: values
                .string("halt_task")?
                .unwrap_or_else(|| "halt.sh".to_owned()),
            task_hook: values.command("task_hook")?,
            post_fire_hook: values.command("post_fire_hook")?,
            post_replay_hook: values.command("post_replay_hook")?,
            post_skip_hook: values.command("post_skip_hook")?,
            hook_timeout: values
                .duration("hook_timeout")?
                .unwrap_or(Duration::from_secs(60)),
            retry_from: values
                .choice(
                    "retry_from",
                    &[("start", RetryFrom::Start), ("failed", RetryFrom::Failed)],
                )?
                .unwrap_or(RetryFrom::Start),
            parallel: values.int("parallel", 1)?.map_or(1, |n| n as usize),
            name: values.string("name")?,
            state_dir: values.string("state_dir")?.map(PathBuf::from),
            session: values
                .string("session")?
                .unwrap_or_else(|| "boot".to_owned()),
            log_max_bytes: values
                .int("log_max_bytes", 1024)?
                .map_or(16 << 20, u64::from),
            keep_runs: values.int("keep_runs", 1)?.map_or(1000, u64::from),
            keep_days: values.int("keep_days", 1)?.map(u64::from),
            event_keep_days: values.int("event_keep_days", 1)?.map(u64::from),
            database: values.string("database")?.map(Secret),
            host: values.string("host")?,
            fleet_lock: values
                .choice("lock", &[("host", false), ("fleet", true)])?
                .unwrap_or(false),
        };
        let mut env = Vec::new();
        for (key, entry) in doc.items("env") {
            // exec would refuse these later, for every task: say so now, with the line.
            if key.contains(['=', '\0']) {
                return Err(ConfigError::bad_value(
                    &entry.origin,
                    "env",
                    key,
                    "not a valid environment variable name",
                ));
            }
            if entry.value.contains('\0') {
                return Err(ConfigError::bad_value(
                    &entry.origin,
                    "env",
                    key,
                    "the value holds a NUL byte, which no environment variable can hold",
                ));
            }
            env.push((key.to_owned(), entry.value.clone()));
        }
        let mut runner = runner;
        // A relative state_dir is relative to the configuration file, like include_dir.
        if let (Some(dir), Some(base)) = (&runner.state_dir, file.as_ref().and_then(|f| f.parent()))
            && dir.is_relative()
        {
            runner.state_dir = Some(base.join(dir));
        }
        Ok(ChainConfig {
            file,
            doc,
            runner,
            defaults,
            env,
        })
    }

    /// The effective settings of the task called `name`.
    ///
    /// A key in the task's section that looks like a misspelt setting is an error; any
    /// other unknown key is left alone, since tasks keep their own options there too.
    pub(crate) fn task_settings(&self, name: &str) -> Result<TaskSettings, ConfigError> {
        let mut settings = self.defaults.clone();
        let Some(section) = self.doc.section(name) else {
            return Ok(settings);
        };
        for (key, entry) in section.entries() {
            if !TASK_KEYS.contains(&key)
                && let Some(s) = suggest(key, TASK_KEYS)
            {
                return Err(ConfigError::unknown_key(&entry.origin, name, key, Some(s)));
            }
        }
        let v = Values {
            section_name: name,
            doc: &self.doc,
        };
        if let Some(max_time) = v.opt_duration("max_time")? {
            settings.max_time = max_time;
        }
        if let Some(n) = v.int("max_tries", 1)? {
            settings.max_tries = n;
        }
        if let Some(d) = v.duration("sleep_time")? {
            settings.sleep_time = d;
        }
        if let Some(d) = v.duration("retry_jitter")? {
            settings.retry_jitter = d;
        }
        if let Some(d) = v.duration("kill_grace")? {
            settings.kill_grace = d;
        }
        if let Some(cmd) = v.command("interpreter")? {
            settings.interpreter = Some(cmd);
        }
        if let Some(policy) = v.choice(
            "leftovers",
            &[("keep", Leftovers::Keep), ("kill", Leftovers::Kill)],
        )? {
            settings.leftovers = policy;
        }
        settings.depends_on = v.list("depends_on");
        settings.after = v.list("after");
        settings.unless = v.list("unless");
        if let Some(wait) = v.opt_duration("wait_time")? {
            settings.wait_time = wait;
        }
        if let Some(enabled) = v.bool("enabled")? {
            settings.enabled = enabled;
        }
        if let Some(f) = v.choice(
            "frequency",
            &[
                ("always", Frequency::Always),
                ("once-per-boot", Frequency::OncePerBoot),
                ("once", Frequency::Once),
            ],
        )? {
            settings.frequency = f;
        }
        Ok(settings)
    }

    /// Where the task section of `name` sets `key`, for errors found later (e.g. in the plan).
    pub(crate) fn origin_of(&self, section: &str, key: &str) -> Option<&Entry> {
        self.doc.get(section, key)
    }

    /// Refuses a section that is not `[runner]`, `[env]`, `[DEFAULT]` or a task's but is a
    /// near miss of one (`[runnr]`, `[flakey]` beside task `flaky`): its settings would
    /// be silently ignored. Any other section is free for tasks to read with `-g`.
    pub(crate) fn check_sections<'a>(
        &self,
        tasks: impl Iterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        let known: Vec<&str> = ["runner", "env", DEFAULT_SECTION]
            .into_iter()
            .chain(tasks)
            .collect();
        // Indexing thousands of task names costs milliseconds at every start: only a
        // section that names none of them needs it.
        let exact: std::collections::HashSet<&str> = known.iter().copied().collect();
        let mut others = self
            .doc
            .sections()
            .filter(|(name, _)| !exact.contains(name))
            .peekable();
        if others.peek().is_none() {
            return Ok(());
        }
        let near = NearMisses::new(&known);
        for (name, section) in others {
            if let Some(k) = near.of(name) {
                return Err(ConfigError::unknown_section(&section.origin, name, k));
            }
        }
        Ok(())
    }
}

/// The files of an include directory in byte order of their names: every regular file
/// (as Mozilla's runner reads them all), except the names a task directory skips too
/// (hidden files, backups, package and editor leftovers), so that `foo.ini.dpkg-old`
/// never overrides `foo.ini`.
fn include_files(dir: &Path, entry: &Entry) -> Result<Vec<PathBuf>, ConfigError> {
    let read = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::bad_value(
            &entry.origin,
            "runner",
            "include_dir",
            format!("cannot read directory {}: {e}", dir.display()),
        )
    })?;
    let mut files = Vec::new();
    for item in read {
        let item = item.map_err(|e| ConfigError::io(dir, e))?;
        let name = item.file_name();
        if crate::taskdir::excluded_by_name(&name.to_string_lossy()).is_some() {
            continue;
        }
        let path = item.path();
        // Following links, as reading them will; a directory or a fifo is no INI file.
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Typed access to one section's values, producing errors that point at the line.
struct Values<'a> {
    section_name: &'a str,
    doc: &'a Document,
}

impl Values<'_> {
    /// The section's own value, else `[DEFAULT]`'s (when the section exists).
    fn entry(&self, key: &str) -> Option<&Entry> {
        self.doc.get(self.section_name, key)
    }

    fn bad(&self, entry: &Entry, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::bad_value(&entry.origin, self.section_name, key, reason)
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.entry(key) {
            Some(e) if e.value.is_empty() => Err(self.bad(e, key, "empty value")),
            Some(e) if e.value.contains('\0') => {
                Err(self.bad(e, key, "the value holds a NUL byte"))
            }
            Some(e) => Ok(Some(e.value.clone())),
            None => Ok(None),
        }
    }

    fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.entry(key)
            .map(|e| duration::parse(&e.value).map_err(|r| self.bad(e, key, r)))
            .transpose()
    }

    /// A duration where `0` means "no limit".
    fn opt_duration(&self, key: &str) -> Result<Option<Option<Duration>>, ConfigError> {
        Ok(self
            .duration(key)?
            .map(|d| if d.is_zero() { None } else { Some(d) }))
    }

    fn int(&self, key: &str, min: u32) -> Result<Option<u32>, ConfigError> {
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        match e.value.parse::<u32>() {
            Ok(n) if n >= min => Ok(Some(n)),
            Ok(n) => Err(self.bad(e, key, format!("{n} is below the minimum of {min}"))),
            Err(_) => Err(self.bad(e, key, format!("{:?} is not a whole number", e.value))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        match e.value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Some(true)),
            "false" | "no" | "off" | "0" => Ok(Some(false)),
            _ => Err(self.bad(e, key, format!("{:?} is not true or false", e.value))),
        }
    }

    fn choice<T: Copy>(&self, key: &str, options: &[(&str, T)]) -> Result<Option<T>, ConfigError> {
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        match options.iter().find(|(name, _)| *name == e.value) {
            Some((_, value)) => Ok(Some(*value)),
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                Err(self.bad(
                    e,
                    key,
                    format!("{:?} is not one of {}", e.value, names.join(", ")),
                ))
            }
        }
    }

    /// A command line split the way a shell would split it (no shell runs it).
    fn command(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        if e.value.contains('\0') {
            return Err(self.bad(e, key, "the command holds a NUL byte"));
        }
        match shell_words::split(&e.value) {
            Ok(words) if words.first().is_none_or(String::is_empty) => {
                Err(self.bad(e, key, "empty command"))
            }
            Ok(words) => Ok(Some(words)),
            Err(err) => Err(self.bad(e, key, format!("cannot split command: {err}"))),
        }
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.entry(key)
            .map(|e| {
                e.value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ChainConfig, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chain.ini");
        std::fs::write(&path, text).expect("write");
        ChainConfig::load(Some(&path))
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = ChainConfig::load(None).expect("defaults");
        assert_eq!(c.defaults.max_tries, 5);
        assert_eq!(c.defaults.max_time, Some(Duration::from_secs(600)));
        assert_eq!(c.defaults.sleep_time, Duration::from_secs(1));
        assert_eq!(c.defaults.retry_jitter, Duration::from_secs(30));
        assert_eq!(c.defaults.kill_grace, Duration::from_secs(10));
        assert_eq!(c.runner.halt_task, "halt.sh");
        assert_eq!(c.runner.retry_from, RetryFrom::Start);
        assert_eq!(c.runner.parallel, 1);
        assert_eq!(c.runner.session, "boot");
    }

    #[test]
    fn task_sections_override_runner() {
        let c = load("[runner]\nmax_tries = 3\nmax_time = 0\n[fetch]\nmax_tries = 7\ndepends_on = a, b ,\nremote = hg.example\n")
            .expect("valid");
        assert_eq!(c.defaults.max_time, None);
        let t = c.task_settings("fetch").expect("valid");
        assert_eq!(t.max_tries, 7);
        assert_eq!(t.depends_on, vec!["a", "b"]);
        assert_eq!(c.task_settings("other").expect("valid").max_tries, 3);
    }

    #[test]
    fn misspelt_runner_key_names_line_and_suggests() {
        let err = load("[runner]\n\nmax_tris = 2\n").expect_err("invalid");
        assert!(
            err.to_string()
                .ends_with("chain.ini:3: unknown key \"max_tris\" in [runner]")
        );
        assert_eq!(err.hint().as_deref(), Some("did you mean \"max_tries\"?"));
    }

    #[test]
    fn misspelt_task_key_is_an_error_but_task_keys_are_free() {
        let c = load("[fetch]\ndepend_on = a\n").expect("document loads");
        let err = c.task_settings("fetch").expect_err("typo");
        assert!(
            err.to_string()
                .ends_with(":2: unknown key \"depend_on\" in [fetch]")
        );
    }

    #[test]
    fn bad_values_name_key_and_reason() {
        let err = load("[runner]\nmax_tries = many\n").expect_err("invalid");
        assert!(
            err.to_string()
                .ends_with(":2: [runner] max_tries: \"many\" is not a whole number")
        );
        let err = load("[runner]\nretry_from = middle\n").expect_err("invalid");
        assert!(err.to_string().contains("is not one of start, failed"));
        let err = load("[runner]\nkill_grace = soon\n").expect_err("invalid");
        assert!(
            err.to_string()
                .contains("[runner] kill_grace: \"soon\" is not a duration")
        );
        let err = load("[runner]\ntask_hook = 'unclosed\n").expect_err("invalid");
        assert!(err.to_string().contains("cannot split command"));
    }

    #[test]
    fn include_dir_merges_in_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inc = dir.path().join("conf.d");
        std::fs::create_dir(&inc).expect("mkdir");
        std::fs::write(inc.join("20-b.ini"), "[runner]\nmax_tries = 9\n").expect("write");
        std::fs::write(
            inc.join("10-a.ini"),
            "[runner]\nmax_tries = 4\nsleep_time = 7\n",
        )
        .expect("write");
        std::fs::write(inc.join("30-c.ini~"), "[runner]\nmax_tries = 1\n").expect("write");
        let main = dir.path().join("chain.ini");
        std::fs::write(&main, "[runner]\ninclude_dir = conf.d\nmax_tries = 2\n").expect("write");
        let c = ChainConfig::load(Some(&main)).expect("valid");
        assert_eq!(c.defaults.max_tries, 9);
        assert_eq!(c.defaults.sleep_time, Duration::from_secs(7));
    }
}

#[cfg(test)]
mod shipped_ini_tests {
    /// The packaged /etc/runner/runner.ini says it lists every key: keep it true.
    #[test]
    fn the_shipped_runner_ini_lists_every_key() {
        let ini = include_str!("../../packaging/runner.ini");
        for key in super::RUNNER_KEYS {
            assert!(
                ini.lines().any(|l| l.starts_with(&format!(";{key} ="))),
                "packaging/runner.ini does not list {key}"
            );
        }
    }
}
