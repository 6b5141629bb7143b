//! Why a worker stopped with an error.

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
    FetchConfig(#[from] bridge_fetch::ConfigError),
    /// A sync with the remote failed.
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    /// The job running a task crashed, and which task it ran is unknown.
    #[error("a task runner crashed: {0}")]
    RunnerCrashed(tokio::task::JoinError),
    /// The caller's [`Hooks::idle`](super::Hooks::idle) failed.
    #[error(transparent)]
    Hook(super::HookError),
    /// Reading the documents failed.
    #[error(transparent)]
    Load(#[from] crate::workspace::LoadError),
    /// Writing to the documents failed.
    #[error(transparent)]
    Write(#[from] crate::workspace::WriteError),
}

impl WorkerError {
    /// The error a transparent variant wraps (its message and causes are
    /// that error's).
    pub fn wrapped(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkerError::Sandbox(e) => Some(e),
            WorkerError::WorkArea(e) => Some(e),
            WorkerError::Publish(e) => Some(e),
            WorkerError::FetchConfig(e) => Some(e),
            WorkerError::Hook(e) => Some(e.as_ref()),
            WorkerError::Load(e) => Some(e),
            WorkerError::Write(e) => Some(e),
            WorkerError::LocalFault(_) | WorkerError::RunnerCrashed(_) => None,
        }
    }
}
