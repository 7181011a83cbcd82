//! Writes runner's man pages, generated from the clap definition, into a directory.
//!
//! `cargo run --release --example mangen -- DIR` writes `runner.1` and one page per
//! subcommand (`runner-run.1`, `runner-check.1`, ...; a nested one as `runner-runs-list.1`).
//! The subcommands are found by walking `Cli::command()`, so a new subcommand gets its page
//! without a change here. `runner.1` also gets the sections clap knows nothing about: the
//! task directory, exit status, environment and files. packaging/build.sh gzips the pages.
//!
//! The pages are dated by `SOURCE_DATE_EPOCH` when it is set (reproducible builds), else
//! by today's date.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};
use runner::cli::Cli;
use runner::error::exit_codes;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: mangen OUT_DIR");
        return ExitCode::from(exit_codes::USAGE);
    };
    let dir = PathBuf::from(dir);
    match write_pages(&dir) {
        Ok(pages) => {
            for page in pages {
                println!("{}", page.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("mangen: error: {}: {err}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Which page is written: the main one has sections of its own.
#[derive(Clone, Copy)]
enum Page {
    Main,
    Subcommand,
}

/// Writes every page into `dir` (created if missing) and returns their paths.
fn write_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    // `build` gives every subcommand its display name ("runner-run"), which is both its
    // page's name and how the pages refer to each other. The implicit `help` subcommand
    // has no page of its own.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let date = page_date()?;
    let mut pages = vec![write_page(dir, &cmd, &date, Page::Main)?];
    write_subcommand_pages(dir, &cmd, &date, &mut pages)?;
    Ok(pages)
}

/// The date in the pages' footers, YYYY-MM-DD in UTC.
fn page_date() -> io::Result<String> {
    let secs = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.trim().parse::<u64>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds"),
            )
        })?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    Ok(civil_date(secs))
}

/// Seconds since the epoch as a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`), to do without a date crate.
fn civil_date(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Writes a page for each visible subcommand of `parent`, then for theirs, and so on.
fn write_subcommand_pages(
    dir: &Path,
    parent: &clap::Command,
    date: &str,
    pages: &mut Vec<PathBuf>,
) -> io::Result<()> {
    for sub in parent.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push(write_page(dir, sub, date, Page::Subcommand)?);
        write_subcommand_pages(dir, sub, date, pages)?;
    }
    Ok(())
}

/// Writes one page, in the usual order of sections, and returns its path.
fn write_page(dir: &Path, cmd: &clap::Command, date: &str, page: Page) -> io::Result<PathBuf> {
    // Every page's footer names the package, not the subcommand. The date must not be
    // empty: clap_mangen would write an empty .TH argument, which shifts the others.
    let man = Man::new(cmd.clone())
        .date(date)
        .source(concat!("runner ", env!("CARGO_PKG_VERSION")))
        .manual("runner manual");
    let path = dir.join(man.get_filename());
    let mut out = BufWriter::new(File::create(&path)?);
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    match page {
        // The one-line summary of exit codes in `after_help` gives way to EXIT STATUS.
        Page::Main => main_sections().to_writer(&mut out)?,
        Page::Subcommand => {
            // clap_mangen calls a command's `after_help` the EXTRA section.
            if cmd.get_after_help().or(cmd.get_after_long_help()).is_some() {
                man.render_extra_section(&mut out)?;
            }
            subcommand_sections().to_writer(&mut out)?;
        }
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    out.flush()?;
    Ok(path)
}

/// A subcommand's page points back to the main one, where files and exit codes are.
fn subcommand_sections() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("runner"),
        roman("(1), for the task directory, exit status, environment and files."),
    ]);
    roff
}

/// The main page's own sections: what clap cannot say about runner.
fn main_sections() -> Roff {
    let mut roff = Roff::new();
    // No hyphenation from here on: it would split names like RUNNER_TASK_FILE.
    roff.control("nh", []);

    roff.control("SH", ["TASK DIRECTORY"]);
    para(
        &mut roff,
        [
            roman(
                "Every regular file in TASKDIR is a task, and the directory holds nothing else: \
                 keep notes and READMEs elsewhere, since a file there would be taken for a task. \
                 Not run are names starting with \".\" or ending in \"~\", \".dpkg-old\", \
                 \".dpkg-dist\", \".dpkg-new\", \".dpkg-tmp\", \".rpmnew\", \".rpmsave\", \
                 \".rpmorig\" or \".swp\", sub-directories, and the halt task (",
            ),
            bold("halt_task"),
            roman(", default halt.sh)."),
        ],
    );
    para(
        &mut roff,
        [
            roman(
                "A task's name is its file name without a leading ordering prefix (digits \
                 followed by \"-\" or \"_\") and without its last extension: 10-check_ami.py is \
                 the task check_ami, and its settings live in the section [check_ami] of the \
                 configuration. Tasks run in file-name order, as with ",
            ),
            bold("run-parts"),
            roman("(8), unless "),
            bold("depends_on"),
            roman(
                " says otherwise. Each runs as its own process, with its standard input from \
                 /dev/null and TASKDIR as its working directory. A task file must be executable \
                 unless an ",
            ),
            bold("interpreter"),
            roman(
                " applies. As root, task files, TASKDIR and the configuration must belong to \
                 root and be writable by no one else (",
            ),
            bold("--insecure"),
            roman(" overrides this)."),
        ],
    );
    para(
        &mut roff,
        [
            roman(
                "A task's exit status decides what follows: 0 runs the next task; 2 runs the halt \
                 task and stops; 3 stops without it; anything else, a signal or a timeout retries \
                 the chain, up to ",
            ),
            bold("max_tries"),
            roman(" times, after a growing pause. "),
            bold("runner check"),
            roman(
                " TASKDIR prints the plan: every file, its task name and settings, or why it \
                 does not run.",
            ),
        ],
    );
    para(
        &mut roff,
        [roman(
            "The packaged boot chain runs /etc/runner/tasks.d with /etc/runner/runner.ini \
             (runner.service); runner-chain@NAME.timer runs /etc/runner/NAME.d with \
             /etc/runner/NAME.ini on a schedule.",
        )],
    );

    roff.control("SH", ["EXIT STATUS"]);
    let signaled = format!("{}+N", exit_codes::SIGNALED);
    let codes: [(String, &str); 6] = [
        (exit_codes::OK.to_string(), "Success."),
        (
            exit_codes::FAILED.to_string(),
            "The chain failed (halt, exit 3, retries exhausted), or an operation was refused.",
        ),
        (
            exit_codes::USAGE.to_string(),
            "Usage error: an unknown flag or a missing argument.",
        ),
        (
            exit_codes::LOCKED.to_string(),
            "A run of this job is already running (EX_TEMPFAIL: try later).",
        ),
        (
            exit_codes::CONFIG.to_string(),
            "Configuration error: the INI file, the task directory (unknown dependency, cycle, \
             duplicate name, non-executable task, unsafe permissions) or a schedule. The \
             message names the file and line, or the task.",
        ),
        (
            signaled,
            "runner was interrupted by signal N; the run is recorded as interrupted.",
        ),
    ];
    for (code, meaning) in codes {
        tagged(&mut roff, bold(code), meaning);
    }

    roff.control("SH", ["ENVIRONMENT"]);
    tagged(
        &mut roff,
        bold("RUNNER_STATE_DIR"),
        "Where runs are recorded, as --state-dir (which wins over it).",
    );
    tagged(
        &mut roff,
        bold("XDG_STATE_HOME"),
        "The default state directory of users other than root is $XDG_STATE_HOME/runner \
         (default ~/.local/state/runner).",
    );
    tagged(
        &mut roff,
        bold("RUST_LOG"),
        "Overrides the log level set by -v and -q, e.g. RUST_LOG=debug.",
    );
    para(
        &mut roff,
        [roman(
            "A task gets runner's environment, then the keys of [env], then these: \
             RUNNER_CONFIG_CMD (the runner binary, -c and the configuration, so that \
             \"$RUNNER_CONFIG_CMD -g SECTION.OPTION\" reads a value), RUNNER_CONFIG, \
             RUNNER_TASKDIR, RUNNER_TASK (its name), RUNNER_TASK_FILE, RUNNER_TRY, \
             RUNNER_MAX_TRIES, RUNNER_RUN_ID, RUNNER_JOB, RUNNER_SESSION, RUNNER_EVENTS (a \
             JSON file of the events it waited for) and RUNNER_RESULT (a file it may write a \
             JSON object into, recorded with the attempt). Every task attempt, hook and \
             daemon run also gets RUNNER_ATTEMPT_TOKEN, a value unique to the attempt: \
             should runner be killed with SIGKILL, its guardian process stops every \
             process whose environment holds the token of an attempt that was still \
             running, also one that left the task's process group with setsid.",
        )],
    );

    roff.control("SH", ["FILES"]);
    tagged(
        &mut roff,
        italic("/etc/runner/runner.ini"),
        "The boot chain's configuration: [runner] settings, [env] for the tasks, and a \
         section per task. Every key is listed there, commented out: a line without a \
         remark shows the default, one ending in (example) an example of a key with no \
         default. runner -g prints only what the file sets (nothing for a default); \
         runner check -c FILE TASKDIR prints the settings in effect for each task.",
    );
    tagged(
        &mut roff,
        italic("/etc/runner/tasks.d/"),
        "The boot chain's task directory, run once per boot by runner.service. Empty when \
         installed.",
    );
    tagged(
        &mut roff,
        italic("/etc/runner/runner.yaml, /etc/runner/config.d/"),
        "The scheduler's configuration, read by runner daemon (and runner jobs) by default \
         as root. Not installed: runner-daemon.service does not start until it exists.",
    );
    tagged(
        &mut roff,
        italic("/var/lib/runner/"),
        "The state directory of root (mode 0700): runner.sqlite3 records every run, its task \
         instances and attempts; runs/JOB/RUN_ID/ holds each run's output.",
    );

    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("run-parts"),
        roman("(8), "),
        bold("systemd.service"),
        roman("(5), "),
        bold("systemd.timer"),
        roman("(5), "),
        bold("journalctl"),
        roman("(1)"),
    ]);
    roff
}

/// A paragraph.
fn para(roff: &mut Roff, text: impl Into<Vec<Inline>>) {
    roff.control("PP", []);
    roff.text(text);
}

/// A tagged paragraph: `tag` on its own line, `text` indented below it.
fn tagged(roff: &mut Roff, tag: Inline, text: &str) {
    roff.control("TP", []);
    roff.text([tag]);
    roff.text([roman(text)]);
}
