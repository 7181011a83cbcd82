//! The live view on a real terminal: a tmux session runs the chain (keys sent as a user
//! types them) and its screen is read back with `capture-pane`. Status lines while a
//! task runs, task output intact around them, the summary table and the command that
//! shows the run again at the end; plain lines when nobody watches.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{Chain, wait_for};

/// A private tmux server with one window, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// `None` (after saying SKIPPED) when tmux is not installed.
    fn start(test: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("SKIPPED: tmux is not installed (scripts/test.sh installs it)");
            return None;
        }
        let tmux = Tmux {
            socket: format!("runner-{test}-{}", std::process::id()),
        };
        let started = tmux
            .cmd(&[
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "50",
                "-s",
                "t",
                "sh",
            ])
            .env("TERM", "xterm-256color")
            .status()
            .expect("run tmux");
        assert!(started.success(), "tmux new-session failed");
        Some(tmux)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-L").arg(&self.socket).arg("-f").arg("/dev/null");
        cmd.args(args);
        cmd
    }

    /// Types `line` and Enter.
    fn type_line(&self, line: &str) {
        let status = self
            .cmd(&["send-keys", "-t", "t", "-l", line])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
        let status = self
            .cmd(&["send-keys", "-t", "t", "Enter"])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// The screen and its scrollback, as text; with `escapes`, with colour codes.
    fn screen(&self, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-J", "-S", "-", "-t", "t"];
        if escapes {
            args.push("-e");
        }
        let out = self.cmd(&args).output().expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen holds `needle`; panics with the screen otherwise.
    fn wait_for(&self, needle: &str) -> String {
        let mut screen = String::new();
        let seen = wait_for(Duration::from_secs(60), || {
            screen = self.screen(false);
            screen.contains(needle)
        });
        assert!(seen, "the screen never showed {needle:?}:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

/// The shell line that runs the chain as a user would, then prints its exit code.
fn command_line(chain: &Chain, env: &str, extra: &str) -> String {
    let quote = |p: &Path| shell_words::quote(&p.display().to_string()).into_owned();
    format!(
        "cd {dir} && env -u RUST_LOG -u NO_COLOR LOG={log} {env} {bin} --state-dir {state} -c {ini} {extra} {tasks}; echo EXIT=$?",
        dir = quote(chain.path()),
        log = quote(&chain.log_path()),
        bin = env!("CARGO_BIN_EXE_runner"),
        state = quote(&chain.state_dir()),
        ini = quote(&chain.config_path()),
        tasks = quote(&chain.taskdir()),
    )
}

/// Two tasks at once: one prints and waits for the test's go-ahead, one prints and ends.
fn waiting_chain() -> Chain {
    let chain = Chain::new()
        .task(
            "10-slow.sh",
            "echo 'slow one'\nwhile [ ! -e \"$LOG.go\" ]; do sleep 0.05; done\necho 'slow two'",
        )
        .task("20-quick.sh", "echo 'quick one'; printf 'quick end'")
        .ini("parallel = 2\nmax_tries = 1\nmax_time = 5m");
    // `command_line` is typed before the config is written by any run.
    let _ = chain.command(&[]);
    chain
}

#[test]
fn live_view_shows_running_tasks_and_a_summary() {
    let Some(tmux) = Tmux::start("live") else {
        return;
    };
    let chain = waiting_chain();
    tmux.type_line(&command_line(&chain, "", ""));

    // While "slow" waits, its status line is on the screen, below intact output lines.
    let screen = tmux.wait_for("quick end");
    let screen = if screen.contains("slow  try 1 of 1") {
        screen
    } else {
        tmux.wait_for("slow  try 1 of 1")
    };
    let status = screen
        .lines()
        .find(|l| l.contains("slow  try 1 of 1"))
        .expect("status line");
    assert!(status.contains("(max_time 5m)"), "status line: {status:?}");
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    for line in ["[slow] slow one", "[quick] quick one", "[quick] quick end"] {
        assert!(lines.contains(&line), "no whole line {line:?}:\n{screen}");
    }
    // Colour helps: the running task's name is bold on a colour terminal.
    assert!(
        tmux.screen(true).contains("\x1b["),
        "no colour on the terminal"
    );

    std::fs::write(go(&chain), "").expect("write go");
    let screen = tmux.wait_for("EXIT=0");
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"[slow] slow two"), "{screen}");
    assert!(
        !lines.iter().any(|l| l.contains("slow  try 1 of 1")),
        "a status line outlived its task:\n{screen}"
    );
    let header = lines
        .iter()
        .position(|l| {
            l.split_whitespace().collect::<Vec<_>>() == ["TASK", "RESULT", "TRIES", "DURATION"]
        })
        .unwrap_or_else(|| panic!("no summary table:\n{screen}"));
    for (row, task) in lines[header + 1..header + 3].iter().zip(["slow", "quick"]) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[..3], [task, "OK", "1"], "summary row {row:?}");
    }
    let run_id = chain.last_run()["run_id"]
        .as_str()
        .expect("run_id")
        .to_owned();
    let show = format!(
        "see it again: runner --state-dir {} runs show {run_id}",
        chain.state_dir().display()
    );
    assert!(lines.contains(&show.as_str()), "no {show:?}:\n{screen}");
    // And the line does what it says.
    chain
        .runner(&["runs", "show", &run_id])
        .assert_code(0)
        .assert_stdout_contains(&run_id);
}

#[test]
fn no_color_and_quiet_on_a_terminal() {
    let Some(tmux) = Tmux::start("plain") else {
        return;
    };
    let chain = waiting_chain();
    // NO_COLOR: the status lines stay, without colour.
    tmux.type_line(&command_line(&chain, "NO_COLOR=1", ""));
    tmux.wait_for("slow  try 1 of 1");
    let coloured = tmux.screen(true);
    assert!(
        !coloured.contains("\x1b["),
        "colour despite NO_COLOR:\n{coloured:?}"
    );
    std::fs::write(go(&chain), "").expect("write go");
    tmux.wait_for("EXIT=0");
    std::fs::remove_file(go(&chain)).expect("remove go");

    // -q: no status line and no summary, only the task output.
    // The marker's own line is on the screen before the next line is typed: typed-ahead
    // keys echoed in the middle of its output would hide it.
    tmux.type_line("echo QUIET-RUN");
    tmux.wait_for("\nQUIET-RUN\n");
    tmux.type_line(&command_line(&chain, "", "-q"));
    let after = |screen: &str| -> String {
        screen
            .rfind("\nQUIET-RUN\n")
            .map(|at| screen[at..].to_owned())
            .unwrap_or_default()
    };
    let mut screen = String::new();
    assert!(
        wait_for(Duration::from_secs(60), || {
            screen = after(&tmux.screen(false));
            screen.contains("[quick] quick end")
        }),
        "the quiet run never printed its output:\n{}",
        tmux.screen(false)
    );
    std::fs::write(go(&chain), "").expect("write go");
    assert!(
        wait_for(Duration::from_secs(60), || {
            screen = after(&tmux.screen(false));
            screen.contains("EXIT=0")
        }),
        "the quiet run never ended:\n{}",
        tmux.screen(false)
    );
    assert!(
        !screen.contains("slow  try 1 of 1"),
        "status line with -q:\n{screen}"
    );
    assert!(
        !screen.contains("see it again"),
        "summary with -q:\n{screen}"
    );
    assert!(
        !screen.contains("runner: info"),
        "info lines with -q:\n{screen}"
    );
    assert!(screen.contains("[slow] slow two"), "{screen}");
}

#[test]
fn no_terminal_no_escape_codes() {
    let chain = Chain::new()
        .task("10-a.sh", "echo a; echo b >&2")
        .task("20-b.sh", "echo c")
        .ini("parallel = 2");
    let run = chain.run(&[]);
    run.assert_code(0);
    assert!(
        !run.stdout().contains('\x1b') && !run.stderr().contains('\x1b'),
        "escape codes without a terminal:\n{}\n{}",
        run.stdout(),
        run.stderr()
    );
    assert!(!run.stderr().contains("see it again"), "{}", run.stderr());
    assert!(run.stdout().contains("[a] a\n"), "{}", run.stdout());
}

/// The file whose existence lets the slow task end.
fn go(chain: &Chain) -> std::path::PathBuf {
    chain.path().join("log.go")
}

#[test]
fn a_task_waiting_for_an_event_has_its_status_line() {
    let Some(tmux) = Tmux::start("waiting") else {
        return;
    };
    let chain = Chain::new()
        .task("10-one.sh", "echo 'one ran'")
        .ini("[one]\nafter = go\nwait_time = 5m");
    let _ = chain.command(&[]);
    tmux.type_line(&command_line(&chain, "", ""));
    let screen = tmux.wait_for("one  waiting for go");
    let line = screen
        .lines()
        .find(|l| l.contains("one  waiting for go"))
        .expect("status line");
    assert!(line.contains("(wait_time 5m)"), "status line: {line:?}");
    chain.runner(&["fire", "go"]).assert_code(0);
    let screen = tmux.wait_for("EXIT=0");
    assert!(
        !screen.contains("one  waiting for go"),
        "the waiting line outlived the wait:\n{screen}"
    );
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"one ran"), "{screen}");
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().take(3).eq(["one", "OK", "1"])),
        "no summary row for one:\n{screen}"
    );
}
