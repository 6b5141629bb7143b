//! The command line's error type and exit codes. The type itself is still
//! the engine's (see `bridge_engine::error`); the hints for the engine's
//! typed errors are in [`crate::hints`], applied when the error is shown.

pub use bridge_engine::error::*;

/// The longest `--budget` accepted (30 days): a budget is added to clocks,
/// and a larger one (`--budget 1000000000y`) overflowed them.
pub const MAX_BUDGET: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Checks a `--budget` against [`MAX_BUDGET`].
pub fn check_budget(budget: std::time::Duration, given: &str) -> CliResult<std::time::Duration> {
    if budget > MAX_BUDGET {
        return Err(CliError::hint(
            anyhow::anyhow!("--budget {given} is longer than the 30 days bridge accepts"),
            "give the time this run may take, e.g. 45m or 5h30m",
        ));
    }
    Ok(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_bounded() {
        let huge = humantime::parse_duration("1000000000y").expect("a duration");
        let e = check_budget(huge, "1000000000y").map(|_| ()).unwrap_err();
        assert!(e.error.to_string().contains("--budget 1000000000y"));
        assert!(check_budget(MAX_BUDGET, "30d").is_ok());
    }
}
