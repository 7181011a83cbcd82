//! Root safety (contract section 12): as root, runner refuses every file it would execute
//! or read as configuration when another user could change it or a directory above it,
//! refuses a state directory another user controls, and never follows a planted link.
//! These run as root with the real unprivileged user `nobody` (uid 65534) as the other user.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::support::{Chain, Daemon, Run, is_root, runner, skip, wait_for};

const NOBODY: u32 = 65534;

fn root_only(test: &str) -> bool {
    if !is_root() {
        skip(format!(
            "{test}: ownership checks only apply when runner runs as root"
        ));
    }
    is_root()
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn script(path: &Path, body: &str, mode: u32) {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write");
    chmod(path, mode);
}

fn a_chain() -> Chain {
    Chain::new().task("10-a.sh", "echo a >> \"$LOG\"")
}

/// `check` and `run` both refuse, naming the culprit, and nothing runs.
fn assert_refused(chain: &Chain, needle: &str) {
    let mut check = runner();
    check
        .args(["check", "-c"])
        .arg(chain.config_path())
        .arg(chain.taskdir());
    chain
        .run(&["--no-record"])
        .assert_code(78)
        .assert_stderr_contains(needle);
    Run::of(check)
        .assert_code(78)
        .assert_stderr_contains(needle);
    assert_eq!(chain.log(), "", "nothing ran");
}

#[test]
fn a_writable_interpreter_or_hook_is_refused() {
    if !root_only("a_writable_interpreter_or_hook_is_refused") {
        return;
    }
    let chain = a_chain();
    let sh = chain.path().join("sh");
    fs::copy("/bin/sh", &sh).expect("copy sh");
    chmod(&sh, 0o757);
    let chain = chain.ini(&format!("[runner]\ninterpreter = {}", sh.display()));
    assert_refused(&chain, "refusing to use interpreter");
    chain.run(&["--no-record", "--insecure"]).assert_code(0);

    // Found on PATH (here the PATH of [env]), as the task would find it.
    let chain = a_chain();
    let bin = chain.path().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    fs::copy("/bin/sh", bin.join("mysh")).expect("copy sh");
    chmod(&bin.join("mysh"), 0o757);
    let chain = chain.ini(&format!(
        "[runner]\ninterpreter = mysh\n[env]\nPATH = {}:/usr/bin:/bin",
        bin.display()
    ));
    assert_refused(&chain, "mysh");

    let chain = a_chain();
    let hook = chain.path().join("hook.sh");
    script(&hook, "true", 0o757);
    let chain = chain.ini(&format!("[runner]\ntask_hook = {}", hook.display()));
    assert_refused(&chain, "refusing to use hook");

    let chain = a_chain();
    let hook = chain.path().join("fire-hook.sh");
    script(&hook, "true", 0o755);
    std::os::unix::fs::lchown(&hook, Some(NOBODY), None).expect("chown");
    let chain = chain.ini(&format!("[runner]\npost_fire_hook = {}", hook.display()));
    assert_refused(&chain, "owned by uid 65534");
}

#[test]
fn every_directory_above_is_checked_and_links_at_their_target() {
    if !root_only("every_directory_above_is_checked_and_links_at_their_target") {
        return;
    }
    // A task directory inside a directory everyone may write.
    let chain = a_chain();
    chmod(chain.path(), 0o777);
    assert_refused(&chain, "above it is writable by");
    // Root-owned and sticky, like /tmp, is fine above root-owned entries.
    chmod(chain.path(), 0o1777);
    chain.run(&["--no-record"]).assert_code(0);
    // Owned by another user above: refused even when not writable.
    chmod(chain.path(), 0o755);
    std::os::unix::fs::lchown(chain.path(), Some(NOBODY), None).expect("chown");
    chain
        .run(&["--no-record"])
        .assert_code(78)
        .assert_stderr_contains("owned by uid 65534");
    std::os::unix::fs::lchown(chain.path(), Some(0), None).expect("chown back");

    // A symlinked task whose target sits in a 0777 directory.
    let chain = a_chain();
    let open = chain.path().join("open");
    fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    script(&open.join("evil.sh"), "echo evil >> \"$LOG\"", 0o755);
    std::os::unix::fs::symlink(open.join("evil.sh"), chain.taskdir().join("20-b.sh"))
        .expect("symlink");
    assert_refused(&chain, "open above it is writable by");

    // A symlink owned by another user on the way is refused as a link.
    let chain = a_chain();
    let real = chain.path().join("real.sh");
    script(&real, "true", 0o755);
    let link = chain.taskdir().join("20-b.sh");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    std::os::unix::fs::lchown(&link, Some(NOBODY), None).expect("lchown");
    assert_refused(&chain, "symlink");

    // An include_dir everyone may write.
    let chain = a_chain();
    let inc = chain.path().join("conf.d");
    fs::create_dir(&inc).expect("mkdir");
    fs::write(inc.join("10-x.ini"), "[runner]\nmax_tries = 2\n").expect("write");
    chmod(&inc, 0o777);
    let chain = chain.ini("[runner]\ninclude_dir = conf.d");
    assert_refused(&chain, "conf.d above it is writable by");

    // An empty include_dir everyone may write: a file dropped there later would be read.
    let chain = a_chain();
    let inc = chain.path().join("conf.d");
    fs::create_dir(&inc).expect("mkdir");
    chmod(&inc, 0o777);
    let chain = chain.ini("[runner]\ninclude_dir = conf.d");
    assert_refused(&chain, "include directory");
}

#[test]
fn halt_task_is_a_file_name_never_a_path() {
    let chain = Chain::new()
        .task("10-a.sh", "exit 2")
        .ini("[runner]\nhalt_task = ../../../../usr/bin/id");
    let run = chain.run(&["--no-record"]);
    run.assert_code(78)
        .assert_stderr_contains("halt_task")
        .assert_stderr_contains("must be a file name in the task directory");
    assert!(
        !run.stdout().contains("uid="),
        "id never ran: {}",
        run.stdout()
    );
}

/// `runner --state-dir S --no-record? ... TASKDIR` with an explicit state dir.
fn run_with_state(chain: &Chain, state: &Path, extra: &[&str]) -> Run {
    chain.run(&[]); // writes the config
    let mut cmd = runner();
    cmd.arg("--state-dir")
        .arg(state)
        .arg("-c")
        .arg(chain.config_path())
        .args(extra)
        .arg(chain.taskdir())
        .env("LOG", chain.log_path());
    Run::of(cmd)
}

#[test]
fn a_state_dir_another_user_controls_is_refused_and_planted_links_are_not_followed() {
    if !root_only("a_state_dir_another_user_controls_is_refused") {
        return;
    }
    let chain = a_chain().ini("[runner]\nname = t");
    let victim = chain.path().join("victim");
    fs::write(&victim, "precious\n").expect("write");
    chmod(&victim, 0o644);
    let state = chain.path().join("S");
    fs::create_dir_all(state.join("locks")).expect("mkdir");
    for dir in [&state, &state.join("locks")] {
        std::os::unix::fs::lchown(dir, Some(NOBODY), None).expect("chown");
    }
    // What the other user does: plant a link where root will write its lock.
    let planted = Run::of({
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "ln",
            "-s",
        ])
        .arg(&victim)
        .arg(state.join("locks/t.lock"));
        cmd
    });
    if planted.code() != Some(0) {
        // setpriv missing: plant it as root and give it to nobody, the same file system state.
        std::os::unix::fs::symlink(&victim, state.join("locks/t.lock")).expect("symlink");
        std::os::unix::fs::lchown(state.join("locks/t.lock"), Some(NOBODY), None).expect("lchown");
    }
    // And where root will open its database.
    let victim_db = chain.path().join("victim.db");
    fs::write(&victim_db, "precious\n").expect("write");
    std::os::unix::fs::symlink(&victim_db, state.join("runner.sqlite3")).expect("symlink");
    run_with_state(&chain, &state, &[])
        .assert_code(78)
        .assert_stderr_contains("refusing to use state directory");
    // Even told to run anyway, root does not write through the link.
    run_with_state(&chain, &state, &["--insecure"]).assert_stderr_contains("--insecure");
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
    assert_eq!(
        fs::read_to_string(&victim_db).expect("victim"),
        "precious\n"
    );
    assert_eq!(fs::metadata(&victim).expect("victim").uid(), 0);

    // Root's own but writable by everyone: refused too.
    let open = chain.path().join("open-state");
    fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    run_with_state(&chain, &open, &[])
        .assert_code(78)
        .assert_stderr_contains("writable by its group and all users");
}

#[test]
fn insecure_warns_once() {
    if !root_only("insecure_warns_once") {
        return;
    }
    let chain = a_chain();
    chmod(&chain.taskdir().join("10-a.sh"), 0o777);
    let run = chain.run(&["--insecure"]);
    run.assert_code(0);
    assert_eq!(
        run.stderr().matches("--insecure").count(),
        1,
        "{}",
        run.stderr()
    );
}

#[test]
fn daemon_configuration_and_commands_are_checked() {
    if !root_only("daemon_configuration_and_commands_are_checked") {
        return;
    }
    let daemon = Daemon::new(&[("runner.yaml", "jobs:\n  a:\n    command: [\"true\"]\n")]);
    let file = daemon.config_dir().join("runner.yaml");
    chmod(&file, 0o666);
    let check = |extra: &[&str]| {
        let mut cmd = runner();
        cmd.arg("--state-dir")
            .arg(daemon.state_dir())
            .args(["check", "--daemon"])
            .arg(daemon.config_dir())
            .args(extra);
        Run::of(cmd)
    };
    check(&[])
        .assert_code(78)
        .assert_stderr_contains("refusing to use daemon configuration");
    check(&["--insecure"]).assert_code(0);
    chmod(&file, 0o644);
    check(&[]).assert_code(0);

    let prog = daemon.path().join("job.sh");
    script(&prog, "true", 0o757);
    fs::write(
        &file,
        format!("jobs:\n  a:\n    command: [\"{}\"]\n", prog.display()),
    )
    .expect("write");
    check(&[])
        .assert_code(78)
        .assert_stderr_contains("refusing to use job command");
}

#[test]
fn daemon_run_output_is_private_and_foreign_trigger_links_are_refused() {
    let mut daemon = Daemon::new(&[(
        "runner.yaml",
        "jobs:\n  manual:\n    command: [\"/bin/sh\", \"-c\", \"echo secret; echo '{}' > return_data.json\"]\n",
    )]);
    daemon.start("runner.yaml");
    let run = daemon.trigger_and_wait("manual");
    let id = run["run_id"].as_str().expect("id");
    let run_dir = daemon.state_dir().join("runs/manual").join(id);
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&run_dir), 0o700, "run directory");
    assert_eq!(mode(&run_dir.join("output.txt")), 0o600, "output.txt");
    assert_eq!(
        mode(&run_dir.join("return_data.json")),
        0o600,
        "return_data.json"
    );

    if !root_only("foreign trigger links") {
        return;
    }
    // A link owned by another user, pointing to a root-owned file that reads as a trigger.
    let dir = daemon.state_dir().join("trigger/manual");
    fs::create_dir_all(&dir).expect("mkdir");
    let target = daemon.path().join("rootfile.json");
    fs::write(&target, "{}").expect("write");
    let link = dir.join(".link");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    std::os::unix::fs::lchown(&link, Some(NOBODY), None).expect("lchown");
    fs::rename(&link, dir.join("trigger.json")).expect("rename");
    assert!(wait_for(Duration::from_secs(10), || dir
        .join("trigger.json.invalid")
        .exists()));
    assert!(daemon.daemon_log().contains("owned by uid 65534"));
    assert_eq!(daemon.finished_runs("manual").len(), 1, "no run from it");
}
