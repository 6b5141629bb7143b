//! Time as the engine sees it: the wall clock in production, a clock a test
//! moves by hand in unit tests.
//!
//! Claim windows, lost claims, leases, deadlines and look-ahead syncs all
//! compare times in a document with "now". Reading "now" through a [`Clock`]
//! held by the session and the worker lets a unit test step over an hour of
//! leases without waiting for it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bridge_model::Millis;

/// A source of "now", in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now_ms(&self) -> Millis;
}

/// The wall clock (moved by [`set_test_offset`] in debug builds, for the
/// end-to-end tests' devices with skewed clocks).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        crate::workspace::now_ms()
    }
}

/// Debug builds only: moves this process's wall clock (and so every
/// [`SystemClock`] and [`crate::workspace::now_ms`]) by `offset` ms, once,
/// from the [`TestHooks`](crate::settings::TestHooks) the program resolved.
/// A process-wide hook rather than a field of each clock: the end-to-end
/// tests play a whole device whose clock is wrong. Release builds ignore it.
pub fn set_test_offset(offset: Millis) {
    #[cfg(debug_assertions)]
    {
        let _ = TEST_OFFSET.set(offset);
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = offset;
    }
}

#[cfg(debug_assertions)]
static TEST_OFFSET: std::sync::OnceLock<Millis> = std::sync::OnceLock::new();

/// The offset [`set_test_offset`] installed (0 if none).
#[cfg(debug_assertions)]
pub(crate) fn test_offset() -> Millis {
    TEST_OFFSET.get().copied().unwrap_or(0)
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn at(now: Millis) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: AtomicI64::new(now),
        })
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: Millis) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: Millis) {
        self.now.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}

/// The clock of production code.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(250);
        assert_eq!(clock.now_ms(), 1_250);
        clock.set(5);
        assert_eq!(clock.now_ms(), 5);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
