//! Files written for Mozilla's runner read as it read them.
//!
//! Every expected value here was observed from Mozilla's runner itself (build-runner's
//! `runner.py` under Python 2.7.18, whose `RawConfigParser` with `optionxform = str` reads
//! the INI): its `-g` output for these files, and what its tasks and its `task_hook` saw
//! in their environment. CI has no Python 2, so the facts are kept, not the program. Where
//! runner differs on purpose, the test says so and why.

use std::path::{Path, PathBuf};

use crate::support::{Chain, Run, runner};

/// Writes `files` (name, text) into a fresh temp dir.
fn files(list: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in list {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }
    dir
}

/// `runner -c FILE -g KEY`, its stdout; it must exit 0 as Mozilla's did.
fn get(file: &Path, key: &str) -> String {
    let mut cmd = runner();
    cmd.arg("-c").arg(file).args(["-g", key]);
    let run = Run::of(cmd);
    run.assert_code(0);
    run.stdout()
}

#[track_caller]
fn assert_gets(file: &Path, observed: &[(&str, &str)]) {
    for (key, out) in observed {
        assert_eq!(get(file, key), *out, "-g {key} of {}", file.display());
    }
}

#[test]
fn default_section_fills_the_others_that_exist() {
    let dir = files(&[(
        "defaults.ini",
        "[DEFAULT]\nbase = /srv\nmax_time = 30\n[runner]\nmax_tries = 2\n[env]\nFOO = from env\nHome_Dir = /home/x\n[hg]\nremote = x\n",
    )]);
    assert_gets(
        &dir.path().join("defaults.ini"),
        &[
            ("hg.base", "/srv\n"),
            ("hg.remote", "x\n"),
            ("env.base", "/srv\n"),
            ("runner.base", "/srv\n"),
            ("runner.max_time", "30\n"),
            // A section no file has inherits nothing.
            ("nosuch.base", ""),
            ("DEFAULT.base", "/srv\n"),
            // Key case is kept (Mozilla's runner sets optionxform = str).
            ("env.Home_Dir", "/home/x\n"),
            ("env.home_dir", ""),
        ],
    );
}

#[test]
fn continuation_lines_join_with_newlines() {
    let dir = files(&[(
        "cont.ini",
        "[hg]\nmulti = one\n  two\n\tthree\n\n  four ; kept\n; col0 comment\n  five\nafter = x\nk = v\n  ; indented\n",
    )]);
    assert_gets(
        &dir.path().join("cont.ini"),
        &[
            // Blank and comment lines do not end the value; a continuation line keeps
            // its ` ;`.
            ("hg.multi", "one\ntwo\nthree\nfour ; kept\nfive\n"),
            ("hg.after", "x\n"),
            // Indented, it is a continuation, not a comment.
            ("hg.k", "v\n; indented\n"),
        ],
    );
}

#[test]
fn inline_comments_start_at_the_first_semicolon_after_whitespace() {
    let dir = files(&[(
        "inline.ini",
        "[s]\na = x ; c\nb = x;y\nc = x;y ;z\nd = x\t; tab\ne = \"\"\nf =\ng: u=v: w\nh = ;x\ni=;x\nj = a # b\nk = x ;\nh2 = ;x \nh3 = ; x\n",
    )]);
    assert_gets(
        &dir.path().join("inline.ini"),
        &[
            ("s.a", "x\n"),
            ("s.b", "x;y\n"),
            // Only the first `;` is looked at.
            ("s.c", "x;y ;z\n"),
            ("s.d", "x\n"),
            ("s.e", "\n"),
            ("s.f", "\n"),
            ("s.g", "u=v: w\n"),
            // The blank after `=` is not part of the value, so this `;` follows none.
            ("s.h", ";x\n"),
            ("s.i", ";x\n"),
            ("s.j", "a # b\n"),
            ("s.k", "x\n"),
            // Python 2.7 compares a leading `;` with the value's last character.
            ("s.h2", "\n"),
            ("s.h3", "; x\n"),
        ],
    );
}

#[test]
fn include_dir_reads_every_file() {
    let dir = files(&[
        (
            "inc/a.ini",
            "[runner]\nmax_tries = 3\n[s]\nfrom = a.ini\nmain = a\n",
        ),
        ("inc/extra.cfg", "[s]\nfrom = extra.cfg\nextra = yes\n"),
        ("inc/z.ini~", "[s]\nbackup = yes\n"),
        ("inc/.hidden.ini", "[s]\nhidden = yes\n"),
        ("inc/b.ini.dpkg-old", "[s]\nleft = yes\n"),
        (
            "incl.ini",
            "[runner]\ninclude_dir = inc\n[s]\nmain = main\nonly = main\n",
        ),
    ]);
    assert_gets(
        &dir.path().join("incl.ini"),
        &[
            ("s.extra", "yes\n"),
            ("s.from", "extra.cfg\n"),
            ("s.main", "a\n"),
            ("s.only", "main\n"),
            ("s.hidden", ""),
            ("runner.max_tries", "3\n"),
            // Mozilla's runner also read `z.ini~` and `b.ini.dpkg-old` (it skips only
            // hidden files) and in directory-listing order; runner skips backups and
            // package leftovers as it does in a task directory, and merges in name order.
            ("s.backup", ""),
            ("s.left", ""),
        ],
    );
}

#[test]
fn tasks_and_hooks_see_what_they_saw_under_mozillas_runner() {
    let chain = Chain::new()
        .without_config()
        .task(
            "10-first.sh",
            "echo \"first FOO=$FOO base=$base Home_Dir=$Home_Dir max_time=$max_time\" >> \"$LOG\"",
        )
        .task(
            "20-second.sh",
            "echo \"second multi=$($RUNNER_CONFIG_CMD -g hg.multi | tr '\\n' '|')\" >> \"$LOG\"",
        );
    let hook: PathBuf = chain.path().join("hook.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho \"hook FOO=$FOO base=$base cmd=${RUNNER_CONFIG_CMD:+set}\" >> \"$LOG\"\n",
    )
    .expect("write hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let config = chain.path().join("chain.ini");
    std::fs::write(
        &config,
        format!(
            "[DEFAULT]\nbase = /srv\n[runner]\ntask_hook = {}\nmax_time = 60\n[env]\nFOO = from env ; comment\nHome_Dir = /home/x\n[hg]\nmulti = one\n  two\n",
            hook.display()
        ),
    )
    .expect("write ini");
    let mut cmd = runner();
    cmd.arg("--state-dir")
        .arg(chain.state_dir())
        .arg("-c")
        .arg(&config)
        .arg(chain.taskdir())
        .env("LOG", chain.log_path());
    Run::of(cmd).assert_code(0);
    // `[DEFAULT]` keys reach the tasks through `[env]`; `max_time` is `[runner]`'s own
    // and `[runner]` is no environment.
    let hook_line = "hook FOO=from env base=/srv cmd=set";
    assert_eq!(
        chain.log_lines(),
        [
            hook_line,
            "first FOO=from env base=/srv Home_Dir=/home/x max_time=",
            hook_line,
            hook_line,
            "second multi=one|two|",
            hook_line,
        ]
    );
}
