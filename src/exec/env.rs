//! The environment a task runs in (contract section 5): what runner inherited, then the
//! configuration's `[env]`, then the `RUNNER_*` variables, then a replayed step's
//! `--env` values; later ones win.
//!
//! The chain knows the values; this module knows the names and the order, so that the
//! environment of a task is written down in one place. Hooks get the same variables
//! (they read them back from the command). The supervisor adds one more to every
//! process it spawns, last so nothing overrides it: `RUNNER_ATTEMPT_TOKEN`, the mark by
//! which the guardian finds an attempt's processes after a `kill -9` (`pgroup.rs`).

use super::spawn::Command;
use std::ffi::OsString;
use std::path::Path;

/// Everything a task's environment is made of, besides what runner inherited.
pub(crate) struct TaskEnv<'a> {
    /// The configuration's `[env]`, in file order.
    pub(crate) configured: &'a [(String, String)],
    /// runner's own absolute path (`RUNNER_CONFIG_CMD`).
    pub(crate) exe: &'a Path,
    /// The configuration file, if there is one (`RUNNER_CONFIG`, `RUNNER_CONFIG_CMD`).
    pub(crate) config_file: Option<&'a Path>,
    /// The task directory (`RUNNER_TASKDIR`).
    pub(crate) taskdir: &'a Path,
    /// The task's name (`RUNNER_TASK`).
    pub(crate) task: &'a str,
    /// The task's file (`RUNNER_TASK_FILE`).
    pub(crate) task_file: &'a Path,
    /// The try, from 1 (`RUNNER_TRY`).
    pub(crate) try_num: u32,
    /// The tries allowed (`RUNNER_MAX_TRIES`).
    pub(crate) max_tries: u32,
    /// The run (`RUNNER_RUN_ID`).
    pub(crate) run_id: &'a str,
    /// The job (`RUNNER_JOB`).
    pub(crate) job: &'a str,
    /// The event session (`RUNNER_SESSION`).
    pub(crate) session: &'a str,
    /// The state directory (`RUNNER_STATE_DIR`), so that `runner fire` or `runner runs`
    /// in a task uses the chain's store.
    pub(crate) state_dir: &'a Path,
    /// Where the task may leave its result (`RUNNER_RESULT`).
    pub(crate) result_file: &'a Path,
    /// The events the task was started for (`RUNNER_EVENTS`).
    pub(crate) events_file: &'a Path,
    /// A replayed step's `--env` values.
    pub(crate) extra: &'a [(String, String)],
}

impl TaskEnv<'_> {
    /// Sets the environment on `cmd`, in the order that makes later sources win.
    pub(crate) fn apply(&self, cmd: &mut Command) {
        cmd.envs(self.configured.iter().map(|(k, v)| (k, v)));
        let config_cmd = match self.config_file {
            Some(file) => format!("{} -c {}", self.exe.display(), file.display()),
            None => self.exe.display().to_string(),
        };
        let config_path: OsString = self
            .config_file
            .map(|f| f.as_os_str().to_owned())
            .unwrap_or_default();
        cmd.env("RUNNER_CONFIG_CMD", config_cmd)
            .env("RUNNER_CONFIG", config_path)
            .env("RUNNER_TASKDIR", self.taskdir)
            .env("RUNNER_TASK", self.task)
            .env("RUNNER_TASK_FILE", self.task_file)
            .env("RUNNER_TRY", self.try_num.to_string())
            .env("RUNNER_MAX_TRIES", self.max_tries.to_string())
            .env("RUNNER_RUN_ID", self.run_id)
            .env("RUNNER_JOB", self.job)
            .env("RUNNER_SESSION", self.session)
            .env("RUNNER_STATE_DIR", self.state_dir)
            .env("RUNNER_RESULT", self.result_file)
            .env("RUNNER_EVENTS", self.events_file)
            .envs(self.extra.iter().map(|(k, v)| (k, v)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(cmd: &Command, key: &str) -> Option<String> {
        cmd.get_envs()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v)
            .map(|v| v.to_string_lossy().into_owned())
    }

    #[test]
    fn runner_variables_win_over_the_configuration_and_replayed_values_over_both() {
        let configured = [
            ("GREETING".to_owned(), "hello".to_owned()),
            ("RUNNER_TRY".to_owned(), "from [env]".to_owned()),
        ];
        let extra = [("RUNNER_JOB".to_owned(), "replayed".to_owned())];
        let env = TaskEnv {
            configured: &configured,
            exe: Path::new("/usr/bin/runner"),
            config_file: Some(Path::new("/etc/runner.ini")),
            taskdir: Path::new("/tasks"),
            task: "build",
            task_file: Path::new("/tasks/10-build"),
            try_num: 2,
            max_tries: 5,
            run_id: "r1",
            job: "nightly",
            session: "s",
            state_dir: Path::new("/state"),
            result_file: Path::new("/state/r1.result.json"),
            events_file: Path::new("/state/no-events.json"),
            extra: &extra,
        };
        let mut cmd = Command::new("/bin/true");
        env.apply(&mut cmd);
        assert_eq!(env_of(&cmd, "GREETING").as_deref(), Some("hello"));
        assert_eq!(env_of(&cmd, "RUNNER_TRY").as_deref(), Some("2"));
        assert_eq!(env_of(&cmd, "RUNNER_JOB").as_deref(), Some("replayed"));
        assert_eq!(
            env_of(&cmd, "RUNNER_CONFIG_CMD").as_deref(),
            Some("/usr/bin/runner -c /etc/runner.ini")
        );
        assert_eq!(
            env_of(&cmd, "RUNNER_CONFIG").as_deref(),
            Some("/etc/runner.ini")
        );
    }

    #[test]
    fn without_a_configuration_file_the_command_is_runner_alone() {
        let env = TaskEnv {
            configured: &[],
            exe: Path::new("/usr/bin/runner"),
            config_file: None,
            taskdir: Path::new("/tasks"),
            task: "build",
            task_file: Path::new("/tasks/10-build"),
            try_num: 1,
            max_tries: 1,
            run_id: "r1",
            job: "tasks",
            session: "s",
            state_dir: Path::new("/state"),
            result_file: Path::new("/state/r1.result.json"),
            events_file: Path::new("/state/no-events.json"),
            extra: &[],
        };
        let mut cmd = Command::new("/bin/true");
        env.apply(&mut cmd);
        assert_eq!(
            env_of(&cmd, "RUNNER_CONFIG_CMD").as_deref(),
            Some("/usr/bin/runner")
        );
        assert_eq!(env_of(&cmd, "RUNNER_CONFIG").as_deref(), Some(""));
    }
}
