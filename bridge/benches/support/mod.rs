//! Helpers the benchmark binaries share (each includes this module).

/// The number in environment variable `key`, else `default`.
pub fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Ends the benchmark with a message: a benchmark has no one to return an
/// error to.
pub fn fail(msg: &str) -> ! {
    eprintln!("benchmark failed: {msg}");
    std::process::exit(1)
}
