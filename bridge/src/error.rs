//! The command line's error: a message, its causes, an optional hint, and
//! the exit code. The engine's errors are typed; [`crate::hints`] gives the
//! hint and exit code of those it knows when an error is shown, and commands
//! may choose their own with [`CliError::hint`] and [`CliError::with_code`].
//!
//! # Exit codes
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | an error (bad input, a store problem, …): the message says which |
//! | 2 | the command line was not understood (clap) |
//! | 3 | `bridge work`, `bridge run --fail-on task-failure`: at least one task it ran failed; `bridge watch`, `dispatch --watch`: a watched task failed |
//! | 4 | `bridge sync`, `dispatch`, `join`, `run`, `members remove`: the remote is unreachable (offline); nothing was lost (`submit`, `cancel`, `retry` and `work` go on offline and exit 0) |
//! | 5 | `bridge work` / `bridge run`: this machine cannot run tasks (no disk space, no file descriptors, working folder not writable); nothing was recorded against the tasks |
//! | 6 | `bridge watch`, `dispatch --watch`: the run ended with tasks left, or failed or was cancelled |
//! | 7 | the remote is misconfigured (a repository that does not exist or refuses the credentials, a folder that is not this workspace's store or never existed, a bad spec); what the command wrote is kept locally |
//! | 130 | stopped by Ctrl-C or SIGTERM after a clean shutdown |

use std::fmt;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: an error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: a task failed during `bridge work` (or `bridge run --fail-on
/// task-failure`, or a watched run).
pub const EXIT_TASK_FAILED: u8 = 3;
/// Exit code: the remote could not be reached.
pub const EXIT_OFFLINE: u8 = 4;
/// Exit code: the remote is set up wrong; waiting does not fix it (issue
/// 17, item 9).
pub const EXIT_MISCONFIGURED: u8 = 7;
/// Exit code: the worker's own machine cannot run tasks (issue 12, item 13).
pub const EXIT_LOCAL_FAULT: u8 = 5;
/// Exit code: a watched run ended with tasks left, or failed (issue 16,
/// item 6).
pub const EXIT_RUN_UNFINISHED: u8 = 6;
/// Exit code: interrupted by a signal, after a clean stop.
pub const EXIT_INTERRUPTED: u8 = 130;

/// An error shown to the user.
pub struct CliError {
    pub error: anyhow::Error,
    pub hint: Option<String>,
    pub code: u8,
}

impl CliError {
    /// An error with a hint.
    pub fn hint(error: impl Into<anyhow::Error>, hint: impl Into<String>) -> CliError {
        CliError {
            error: error.into(),
            hint: Some(hint.into()),
            code: EXIT_ERROR,
        }
    }

    /// An error with a specific exit code.
    pub fn with_code(mut self, code: u8) -> CliError {
        self.code = code;
        self
    }

    /// This error with the hint and exit code [`crate::hints`] gives its
    /// causes, where the command did not choose them itself (as it is
    /// shown; `bridge run` also writes it to GitHub's annotation and job
    /// summary).
    pub fn with_advice(mut self) -> CliError {
        let advice = crate::hints::advise(&self.error);
        if self.hint.is_none() {
            self.hint = advice.hint;
        }
        if self.code == EXIT_ERROR
            && let Some(code) = advice.code
        {
            self.code = code;
        }
        self
    }
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError {
            error: e.into(),
            hint: None,
            code: EXIT_ERROR,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Error: {}", self.error)?;
        for cause in self.error.chain().skip(1) {
            writeln!(f, "Caused by: {cause}")?;
        }
        if let Some(h) = &self.hint {
            writeln!(f, "Hint: {h}")?;
        }
        Ok(())
    }
}

/// Shorthand for command results.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Adds a hint to an error result.
pub trait HintExt<T> {
    /// Attaches `hint` when the result is an error.
    fn hint(self, hint: impl Into<String>) -> CliResult<T>;
}

impl<T, E: Into<anyhow::Error>> HintExt<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> CliResult<T> {
        self.map_err(|e| CliError::hint(e, hint))
    }
}

/// A command's error handed through the engine (a worker's hook), keeping
/// the hint and exit code the command chose: [`crate::hints`] reads them
/// back when the engine's error that carries it is shown.
pub struct HookFailure(pub CliError);

impl fmt::Debug for HookFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.error)
    }
}

impl fmt::Display for HookFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.error, f)
    }
}

impl std::error::Error for HookFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.error.source()
    }
}

impl From<CliError> for bridge_engine::worker::HookError {
    fn from(e: CliError) -> Self {
        Box::new(HookFailure(e))
    }
}

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
