//! The `runner` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = runner::cli::Cli::parse();
    runner::logging::init(cli.global.verbose, cli.global.quiet, cli.global.syslog);
    match runner::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let p = runner::logging::priority(log::Level::Error);
            let message = err.to_string();
            eprintln!("{p}runner: error: {message}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                // A cause the message already quotes ("PATH: File exists") is not repeated.
                let cause_text = cause.to_string();
                if !message.ends_with(&cause_text) {
                    eprintln!("{p}  caused by: {cause_text}");
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
