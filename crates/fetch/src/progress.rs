//! How a caller sees downloads advance. The fetcher never draws anything:
//! it tells a [`Progress`] that a download started, how many bytes arrived,
//! and that it finished; the caller draws a bar, logs, or ignores it.

use std::fmt;

/// Receives the progress of every download of a [`Fetcher`](crate::Fetcher).
pub trait Progress: Send + Sync {
    /// A download of `url` begins; `len` is the size the server announced.
    fn start(&self, url: &str, len: Option<u64>) -> Box<dyn Download>;
}

/// One transfer's progress. Dropped without [`Download::finish`] when the
/// transfer failed (a broken connection, a timeout, a full disk); a body
/// that arrived whole finishes, even if its hash is then refused.
pub trait Download: Send {
    /// `received` bytes have arrived so far.
    fn advance(&self, received: u64);
    /// The whole body arrived.
    fn finish(&self);
}

/// A size in bytes for people, with binary prefixes: `15 B`, `1.46 KiB`
/// (the format of indicatif's `HumanBytes`, which log lines used before
/// this crate drew nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanBytes(pub u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PREFIXES: [&str; 8] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"];
        let mut n = self.0 as f64;
        if n < 1024.0 {
            return write!(f, "{n:.0} B");
        }
        let mut prefix = 0;
        n /= 1024.0;
        while n >= 1024.0 && prefix + 1 < PREFIXES.len() {
            n /= 1024.0;
            prefix += 1;
        }
        write!(f, "{n:.2} {}B", PREFIXES[prefix])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_match_indicatif() {
        // indicatif's own examples.
        for (n, text) in [
            (15, "15 B"),
            (1_500, "1.46 KiB"),
            (1_500_000, "1.43 MiB"),
            (1_500_000_000, "1.40 GiB"),
            (1_500_000_000_000, "1.36 TiB"),
            (1_500_000_000_000_000, "1.33 PiB"),
        ] {
            assert_eq!(HumanBytes(n).to_string(), text);
        }
        assert_eq!(HumanBytes(0).to_string(), "0 B");
        assert_eq!(HumanBytes(1023).to_string(), "1023 B");
        assert_eq!(HumanBytes(1024).to_string(), "1.00 KiB");
        assert_eq!(HumanBytes(u64::MAX).to_string(), "16.00 EiB");
    }
}
