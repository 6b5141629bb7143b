//! The engine's untyped error, left from when the engine was the binary: a
//! message, its causes, an optional hint and an exit code. Issue 14 replaces
//! it module by module with typed errors whose hints live in the binary
//! (`bridge/src/hints`); until then the binary re-exports it as its own.
//!
//! # Exit codes
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | an error (bad input, a store problem, …): the message says which |
//! | 2 | the command line was not understood (clap) |
//! | 3 | `bridge work`: at least one task it ran failed |
//! | 4 | `bridge sync`: the remote is unreachable (offline); nothing was lost |
//! | 5 | `bridge work` / `bridge run`: this machine cannot run tasks (no disk space, no file descriptors, working folder not writable); nothing was recorded against the tasks |
//! | 130 | stopped by Ctrl-C or SIGTERM after a clean shutdown |

use std::fmt;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: an error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: a task failed during `bridge work`.
pub const EXIT_TASK_FAILED: u8 = 3;
/// Exit code: the remote could not be reached.
pub const EXIT_OFFLINE: u8 = 4;
/// Exit code: the worker's own machine cannot run tasks (issue 12, item 13).
pub const EXIT_LOCAL_FAULT: u8 = 5;
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

/// An error of an engine module that is not typed yet, carried inside a
/// typed error (the worker's, the publisher's) with its hint and exit code,
/// so that nothing the user sees today is lost while the modules it comes
/// from (the session, the vault) are being typed. The binary's hints read
/// them back (`bridge/src/hints`). Goes away with [`CliError`].
#[derive(Debug)]
pub struct Untyped {
    /// The error and its causes.
    pub error: anyhow::Error,
    /// The hint it had, if any.
    pub hint: Option<String>,
    /// Its exit code.
    pub code: u8,
}

impl Untyped {
    /// The causes of the error, outermost first (the error itself included),
    /// each its own type, for downcasting.
    pub fn chain(&self) -> anyhow::Chain<'_> {
        self.error.chain()
    }
}

impl fmt::Display for Untyped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Untyped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl From<CliError> for Untyped {
    fn from(e: CliError) -> Self {
        Untyped {
            error: e.error,
            hint: e.hint,
            code: e.code,
        }
    }
}

impl From<anyhow::Error> for Untyped {
    fn from(error: anyhow::Error) -> Self {
        Untyped {
            error,
            hint: None,
            code: EXIT_ERROR,
        }
    }
}

// The session's errors reach the worker and the publisher as `CliResult`
// until the session is typed; these keep their hints (see [`Untyped`]).
impl From<CliError> for crate::worker::WorkerError {
    fn from(e: CliError) -> Self {
        crate::worker::WorkerError::Untyped(e.into())
    }
}

impl From<CliError> for crate::publish::PublishError {
    fn from(e: CliError) -> Self {
        crate::publish::PublishError::Untyped(e.into())
    }
}
