//! Exponential backoff with jitter, for retry loops: the one helper the
//! store's git remote uses, and that the crates above it (URL inputs, the
//! publisher) can import instead of hand-rolling the doubling.
//!
//! A [`Backoff`] is a plain value (no clock, no state): `delay(attempt)`
//! says how long to wait before retry `attempt`; the caller sleeps.

use std::time::Duration;

/// The largest exponent of the doubling: past it the delay stops growing
/// (2^16 × the base), so no shift or multiplication overflows.
const MAX_EXPONENT: u32 = 16;

/// How a delay is randomised, so that many processes failing together do
/// not retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the doubled delay.
    None,
    /// Uniform in ±50 % of the doubled delay (`[d/2, 3d/2]`).
    Spread,
    /// Uniform in the upper half of the doubled delay (`[d/2, d]`): never
    /// longer than the plain doubling.
    Shorten,
}

/// Exponential backoff: `base` for the first retry, doubling on each
/// further one, optionally capped and jittered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Option<Duration>,
    jitter: Jitter,
}

impl Backoff {
    /// `base` × 2^(attempt − 1), without cap or jitter.
    pub const fn new(base: Duration) -> Backoff {
        Backoff {
            base,
            max: None,
            jitter: Jitter::None,
        }
    }

    /// Caps the doubled delay at `max` (before jitter).
    #[must_use]
    pub const fn with_max(mut self, max: Duration) -> Backoff {
        self.max = Some(max);
        self
    }

    /// Randomises each delay as `jitter` says.
    #[must_use]
    pub const fn with_jitter(mut self, jitter: Jitter) -> Backoff {
        self.jitter = jitter;
        self
    }

    /// The doubled delay before retry `attempt` (1-based; 0 counts as 1),
    /// capped, before jitter.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let doubled = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(MAX_EXPONENT));
        match self.max {
            Some(max) => doubled.min(max),
            None => doubled,
        }
    }

    /// The delay before retry `attempt` (1-based): [`Backoff::nominal`]
    /// with the jitter applied.
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = self.nominal(attempt);
        match self.jitter {
            Jitter::None => nominal,
            // In thousandths: 500..=1500 and 500..=1000.
            Jitter::Spread => scale(nominal, 500 + random() % 1001),
            Jitter::Shorten => scale(nominal, 500 + random() % 501),
        }
    }
}

/// `d` × `per_mille` / 1000.
fn scale(d: Duration, per_mille: u64) -> Duration {
    let nanos = d.as_nanos().saturating_mul(u128::from(per_mille)) / 1000;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// A random number for the jitter; without an OS random source, the
/// clock's nanoseconds (any spread is better than none).
fn random() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base() {
        let b = Backoff::new(Duration::from_millis(50));
        assert_eq!(b.delay(0), Duration::from_millis(50));
        assert_eq!(b.delay(1), Duration::from_millis(50));
        assert_eq!(b.delay(2), Duration::from_millis(100));
        assert_eq!(b.delay(5), Duration::from_millis(800));
        // The exponent stops growing; nothing overflows.
        assert_eq!(b.delay(17), b.delay(1000));
        assert_eq!(
            Backoff::new(Duration::MAX).delay(40),
            Duration::MAX,
            "saturates"
        );
    }

    #[test]
    fn the_cap_bounds_the_doubling() {
        let b = Backoff::new(Duration::from_secs(5)).with_max(Duration::from_secs(60));
        assert_eq!(b.delay(4), Duration::from_secs(40));
        assert_eq!(b.delay(5), Duration::from_secs(60));
        assert_eq!(b.delay(30), Duration::from_secs(60));
    }

    #[test]
    fn spread_jitter_stays_within_half_either_side() {
        let b = Backoff::new(Duration::from_millis(50)).with_jitter(Jitter::Spread);
        for attempt in 1..=5u32 {
            let base = 50u128 << (attempt - 1);
            for _ in 0..20 {
                let d = b.delay(attempt).as_millis();
                assert!(d >= base / 2 && d <= base * 3 / 2, "{attempt}: {d}");
            }
        }
    }

    #[test]
    fn shorten_jitter_never_exceeds_the_doubling() {
        let b = Backoff::new(Duration::from_millis(100)).with_jitter(Jitter::Shorten);
        for attempt in 1..=3u32 {
            let full = b.nominal(attempt);
            for _ in 0..20 {
                let d = b.delay(attempt);
                assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
            }
        }
    }
}
