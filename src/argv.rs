//! Telling a subcommand from a task directory in the first word of the command line
//! (contract section 1).
//!
//! The bare Mozilla form `runner TASKDIR` and the subcommands share the first position.
//! clap already prefers a subcommand's name, but a mistyped one (`runner chek ...`) would
//! be taken for a task directory and blamed as such, or, worse, run a directory of that
//! name. So a first word that is neither a subcommand nor an existing path, and that does
//! not look like a path (no `/`), is an unknown command. The names come from clap's own
//! command list, so a subcommand added later is covered without touching this file.

use std::ffi::OsString;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;

/// Every subcommand the contract names (section 1). One that this build does not have yet
/// is still never taken for a directory: the word means the command everywhere else.
const CONTRACT_COMMANDS: &[&str] = &[
    "run",
    "check",
    "runs",
    "jobs",
    "fire",
    "events",
    "replay",
    "skip",
    "trigger",
    "daemon",
    "schedule",
    "metrics",
    "report",
    "completions",
];

/// The error for a first word that is no subcommand and no existing path, or `None`.
pub fn unknown_command(args: &[OsString]) -> Option<String> {
    let command = Cli::command();
    let word = first_word(&command, args)?;
    let word = word.to_str()?;
    let names: Vec<String> = subcommand_names(&command);
    if names.iter().any(|n| n == word) {
        return None;
    }
    if CONTRACT_COMMANDS.contains(&word) {
        return Some(format!(
            "command {word} is not available in this version of runner\n  hint: to run a task directory of that name, write ./{word}"
        ));
    }
    if word.contains('/') || word == "." || word == ".." || Path::new(word).exists() {
        return None;
    }
    let hint = names
        .iter()
        .map(|n| (strsim::damerau_levenshtein(word, n), n))
        .filter(|(d, n)| *d <= 2 && *d < n.len())
        .min()
        .map(|(_, n)| format!(" (did you mean {n}?)"))
        .unwrap_or_default();
    Some(format!(
        "unknown command {word}{hint}\n  hint: to run a task directory of that name, write ./{word}"
    ))
}

/// Every subcommand name and alias, plus clap's own `help`.
fn subcommand_names(command: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = command
        .get_subcommands()
        .flat_map(|s| {
            std::iter::once(s.get_name().to_owned()).chain(s.get_all_aliases().map(str::to_owned))
        })
        .collect();
    names.push("help".to_owned());
    names
}

/// The first positional word: options and the values they take are skipped.
fn first_word<'a>(command: &clap::Command, args: &'a [OsString]) -> Option<&'a OsString> {
    let takes_value = |long: Option<&str>, short: Option<char>| {
        command.get_arguments().any(|a| {
            let matches = match (long, short) {
                (Some(l), _) => a.get_long() == Some(l),
                (_, Some(s)) => a.get_short() == Some(s),
                _ => false,
            };
            matches && a.get_action().takes_values()
        })
    };
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else {
            return Some(arg);
        };
        if text == "--" {
            return iter.next();
        }
        if let Some(long) = text.strip_prefix("--") {
            if !long.contains('=') && takes_value(Some(long), None) {
                iter.next();
            }
            continue;
        }
        if let Some(shorts) = text.strip_prefix('-').filter(|s| !s.is_empty()) {
            // In a cluster (`-vc FILE`), a value-taking flag eats the rest or the next word.
            for (i, c) in shorts.char_indices() {
                if takes_value(None, Some(c)) {
                    if i + c.len_utf8() == shorts.len() {
                        iter.next();
                    }
                    break;
                }
            }
            continue;
        }
        return Some(arg);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &[&str]) -> Option<String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        unknown_command(&args)
    }

    #[test]
    fn a_near_miss_is_named_with_a_hint() {
        let msg = check(&["runner", "chek", "-c", "r.ini", "tasks.d"]).expect("unknown");
        assert!(
            msg.starts_with("unknown command chek (did you mean check?)"),
            "{msg}"
        );
        let msg = check(&["runner", "-v", "--state-dir", "/x", "zzzzzz"]).expect("unknown");
        assert!(msg.starts_with("unknown command zzzzzz\n"), "{msg}");
    }

    #[test]
    fn subcommands_paths_and_option_values_pass() {
        assert_eq!(check(&["runner", "check", "-c", "chek", "tasks.d"]), None);
        assert_eq!(check(&["runner", "-c", "chek.ini", "./chek"]), None);
        assert_eq!(check(&["runner", "-c", "x.ini", "-g", "a.b"]), None);
        assert_eq!(check(&["runner", "-n", "3", "/nonexistent/dir"]), None);
        assert_eq!(check(&["runner", "--format=json", "runs", "list"]), None);
        assert_eq!(check(&["runner", "help"]), None);
        assert_eq!(check(&["runner", "--version"]), None);
        assert_eq!(check(&["runner", "."]), None);
    }

    #[test]
    fn a_contract_command_not_built_yet_is_never_a_directory() {
        let msg = check(&["runner", "report"]).unwrap_or_default();
        let has_report = Cli::command()
            .get_subcommands()
            .any(|s| s.get_name() == "report");
        assert!(
            has_report || msg.starts_with("command report is not available"),
            "{msg}"
        );
        for name in CONTRACT_COMMANDS {
            let msg = check(&["runner", name]).unwrap_or_default();
            assert!(!msg.starts_with("unknown command"), "{name}: {msg}");
        }
    }
}
