//! The daemon's signals, turned into events for its loop: HUP reloads, USR1 scans the
//! trigger directories, QUIT logs the status, TERM and INT shut down.
//!
//! Handlers only enqueue (signal-hook's self-pipe); one thread forwards each signal to
//! the loop through a callback, so the loop wakes at once.

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// SIGHUP: load the configuration again.
    Reload,
    /// SIGUSR1: look for trigger files now.
    ScanTriggers,
    /// SIGQUIT: log running runs and every job's next time.
    Status,
    /// SIGTERM or SIGINT (the number): stop.
    Shutdown(i32),
}

/// Starts the signal thread; `forward` returns `false` once the loop is gone.
pub(crate) fn install(forward: impl Fn(Request) -> bool + Send + 'static) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGHUP, SIGUSR1, SIGQUIT, SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for sig in signals.forever() {
                let request = match sig {
                    SIGHUP => Request::Reload,
                    SIGUSR1 => Request::ScanTriggers,
                    SIGQUIT => Request::Status,
                    other => Request::Shutdown(other),
                };
                if !forward(request) {
                    return;
                }
            }
        })?;
    Ok(())
}
