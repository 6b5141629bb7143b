//! Why a worker stopped with an error.

use crate::error::Untyped;

use super::LocalFault;

/// Why [`work`](super::work) failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// This machine cannot run tasks (no space, no file descriptors, …):
    /// nothing was recorded against the tasks (see [`LocalFault`]).
    #[error(
        "this machine cannot run tasks: {}; nothing was recorded against the tasks, and the claims not yet released expire with their lease",
        .0.0
    )]
    LocalFault(LocalFault),
    /// The sandbox settings refuse this system.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// The worker's own folder could not be made.
    #[error(transparent)]
    WorkArea(#[from] crate::workarea::WorkAreaError),
    /// The settings of URL inputs are wrong.
    #[error(transparent)]
    FetchConfig(Untyped),
    /// A sync with the remote failed.
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    /// The job running a task crashed, and which task it ran is unknown.
    #[error("a task runner crashed: {0}")]
    RunnerCrashed(tokio::task::JoinError),
    /// The caller's [`Hooks::idle`](super::Hooks::idle) failed.
    #[error(transparent)]
    Hook(Untyped),
    /// Reading or writing the local replica failed.
    #[error(transparent)]
    Untyped(#[from] Untyped),
}

impl WorkerError {
    /// The error a transparent variant wraps (its message and causes are
    /// that error's).
    pub fn wrapped(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkerError::Sandbox(e) => Some(e),
            WorkerError::WorkArea(e) => Some(e),
            WorkerError::Publish(e) => Some(e),
            WorkerError::FetchConfig(e) | WorkerError::Hook(e) | WorkerError::Untyped(e) => Some(e),
            WorkerError::LocalFault(_) | WorkerError::RunnerCrashed(_) => None,
        }
    }
}
