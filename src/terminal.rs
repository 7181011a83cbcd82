//! The terminal that runner shares with its tasks: while a live view draws status lines
//! there, every write of task output and of log lines goes through [`write`], which
//! takes the view's lines away, writes, and draws them again below, so that neither
//! garbles the other. Without a view, [`write`] just writes.
//!
//! It is one process-wide slot because the logger is process-wide too; the view that
//! fills it lives in `commands` and only this seam is known to `exec` and `logging`.

use std::io::{self, Write};
use std::sync::{Arc, RwLock};

/// Something drawn on the terminal that must step aside while others write.
pub(crate) trait Screen: Send + Sync {
    /// Clears what the screen shows, calls `write`, and draws it again.
    fn suspend(&self, write: &mut dyn FnMut());
}

static SCREEN: RwLock<Option<Arc<dyn Screen>>> = RwLock::new(None);

/// Puts `screen` in the slot (or empties it with `None`).
pub(crate) fn set(screen: Option<Arc<dyn Screen>>) {
    *SCREEN.write().unwrap_or_else(|e| e.into_inner()) = screen;
}

/// Whether a view draws on the terminal now: writers then keep to whole lines.
pub(crate) fn is_shared() -> bool {
    SCREEN.read().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// Runs `f`, which writes to stdout or stderr, with the screen out of the way.
pub(crate) fn write(mut f: impl FnMut()) {
    let screen = SCREEN.read().unwrap_or_else(|e| e.into_inner()).clone();
    match screen {
        Some(screen) => screen.suspend(&mut f),
        None => f(),
    }
}

/// stderr for the logger: each record is written whole, with the screen out of the way.
pub(crate) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut result = Ok(());
        write(|| result = io::stderr().lock().write_all(buf));
        result.map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
