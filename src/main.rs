//! The `runner` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(message) = runner::argv::unknown_command(&args) {
        eprintln!("runner: error: {message}");
        return ExitCode::from(runner::error::exit_codes::USAGE);
    }
    let cli = runner::cli::Cli::parse_from(args);
    runner::logging::init(cli.global.verbose, cli.global.quiet, cli.global.syslog);
    match runner::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let p = runner::logging::priority(log::Level::Error);
            let escape = |text: String| runner::logging::log_lines(&text).join("\n");
            let message = err.to_string();
            eprintln!("{p}runner: error: {}", escape(message.clone()));
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                // A cause the message already quotes ("PATH: File exists") is not repeated.
                let cause_text = cause.to_string();
                if !message.ends_with(&cause_text) {
                    eprintln!("{p}  caused by: {}", escape(cause_text));
                }
                source = cause.source();
            }
            if let Some(hint) = err.hint() {
                eprintln!("{p}  hint: {hint}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}
