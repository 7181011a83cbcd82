//! Logging to stderr (env_logger) or to syslog; call sites only use the `log` macros.

use std::io::Write;

use log::LevelFilter;

/// The level for `-v`/`-q`: warnings and info by default, debug with `-v`, trace with
/// `-vv`, errors only with `-q`.
pub(crate) fn level(verbose: u8, quiet: bool) -> LevelFilter {
    if quiet {
        return LevelFilter::Error;
    }
    match verbose {
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Installs the logger once, at start. `RUST_LOG` overrides the level on stderr.
pub fn init(verbose: u8, quiet: bool, syslog: bool) {
    let level = level(verbose, quiet);
    if syslog {
        match syslog::init_unix(syslog::Facility::LOG_DAEMON, level) {
            Ok(()) => return,
            Err(e) => eprintln!("runner: warning: cannot log to syslog ({e}); logging to stderr"),
        }
    }
    let env = env_logger::Env::default().default_filter_or(level.as_str());
    let _ = env_logger::Builder::from_env(env)
        .format(|buf, record| {
            let level = record.level().as_str().to_ascii_lowercase();
            writeln!(buf, "runner: {level}: {}", record.args())
        })
        .try_init();
}
