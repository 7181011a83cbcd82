//! Signal handling of a chain run (`runner run`, `runner replay`): SIGTERM, SIGINT and
//! SIGHUP raise the run's [`Interrupt`].
//!
//! The handler only enqueues (signal-hook's self-pipe); one thread turns each signal into
//! the interrupt state, which wakes anyone sleeping in [`Interrupt::sleep`]. The daemon
//! has signals of its own (`daemon/signals.rs`).

use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::interrupt::Interrupt;

/// Routes SIGTERM, SIGINT and SIGHUP to `interrupt` for the rest of the process.
pub(crate) fn install(interrupt: &Arc<Interrupt>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let interrupt = Arc::clone(interrupt);
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for sig in signals.forever() {
                if interrupt.received().is_none() {
                    log::warn!("received signal {sig}: stopping the running task");
                } else {
                    log::warn!("received signal {sig} again: killing the running task now");
                }
                interrupt.raise(sig);
            }
        })?;
    Ok(())
}
