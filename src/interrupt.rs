//! The shared "stop was asked" state: which signal asked first, whether a second one made
//! it urgent, a sleep that ends early, and callbacks that wake loops blocked elsewhere.
//!
//! The chain, the hooks, the job lock and the daemon's runs all read one [`Interrupt`].
//! Something raises it ([`Interrupt::raise`]): the signal thread of `signals.rs`, or a
//! test. Supervising loops read [`Interrupt::received`] between their waits. Tests and
//! commands that do not want signals use an `Interrupt` nothing raises.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Whether (and by which signal) runner was asked to stop.
#[derive(Debug, Default)]
pub(crate) struct Interrupt {
    signal: AtomicI32,
    urgent: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    wakers: Wakers,
}

type Callbacks = HashMap<u64, Box<dyn Fn() + Send>>;

/// Callbacks to call when something happens (a signal, a fired event), so that a loop
/// blocked on its own channel wakes at once. Cheap to clone; all clones share one list.
#[derive(Clone, Default)]
pub(crate) struct Wakers {
    callbacks: Arc<Mutex<Callbacks>>,
    next: Arc<AtomicU64>,
}

impl std::fmt::Debug for Wakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wakers")
    }
}

/// A callback registered with [`Wakers::subscribe`]; dropping it unsubscribes.
pub(crate) struct Subscription {
    callbacks: Arc<Mutex<Callbacks>>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Wakers {
    /// Calls `wake` at every [`Wakers::wake_all`] until the subscription is dropped.
    /// `wake` runs on the waking thread and must not block.
    pub(crate) fn subscribe(&self, wake: impl Fn() + Send + 'static) -> Subscription {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Box::new(wake));
        Subscription {
            callbacks: Arc::clone(&self.callbacks),
            id,
        }
    }

    /// Calls every subscribed callback.
    pub(crate) fn wake_all(&self) {
        for wake in self
            .callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            wake();
        }
    }
}

impl Interrupt {
    /// A fresh interrupt state, not yet connected to any signal.
    pub(crate) fn new() -> Arc<Interrupt> {
        Arc::new(Interrupt::default())
    }

    /// Records `sig`. The first signal is the one runner's exit code reports; any
    /// further one makes the interrupt urgent: grace periods end at once.
    pub(crate) fn raise(&self, sig: i32) {
        if self
            .signal
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            self.urgent.store(true, Ordering::SeqCst);
        }
        {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
        self.wakers.wake_all();
    }

    /// Calls `wake` when a signal arrives, until the subscription is dropped.
    pub(crate) fn subscribe(&self, wake: impl Fn() + Send + 'static) -> Subscription {
        self.wakers.subscribe(wake)
    }

    /// The first signal received, if any.
    pub(crate) fn received(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig),
        }
    }

    /// Whether a second signal asked to skip what is left of any grace period.
    pub(crate) fn is_urgent(&self) -> bool {
        self.urgent.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` unless a signal arrives first; returns whether one did.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.received().is_some() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .wake
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_ends_early_on_raise() {
        let interrupt = Interrupt::new();
        let other = Arc::clone(&interrupt);
        let start = Instant::now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.raise(15);
        });
        assert!(interrupt.sleep(Duration::from_secs(30)));
        assert!(!interrupt.is_urgent());
        assert!(start.elapsed() < Duration::from_secs(20));
        t.join().expect("thread");
        assert_eq!(interrupt.received(), Some(15));
        interrupt.raise(2);
        assert_eq!(interrupt.received(), Some(15), "the first signal is kept");
        assert!(interrupt.is_urgent(), "a second signal is urgent");
    }

    #[test]
    fn sleep_without_signal_runs_out() {
        let interrupt = Interrupt::new();
        assert!(!interrupt.sleep(Duration::from_millis(10)));
        assert_eq!(interrupt.received(), None);
    }
}
