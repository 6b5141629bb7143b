//! The secrets bridge takes from its environment, and hardening of its own
//! process against the tasks it runs (issue 12, items 5 and 6).
//!
//! A task runs as the same user as its worker, so without care it can read
//! the worker's environment from `/proc/<worker pid>/environ` (holding
//! `BRIDGE_IDENTITY`, `GITHUB_TOKEN` or `GH_TOKEN`, `AWS_SECRET_ACCESS_KEY`, and whatever else the CI job was
//! given, like cloud keys) and its memory through `ptrace` or
//! `/proc/<pid>/mem`. Two measures:
//!
//! - [`harden_process`] makes every bridge process non-dumpable
//!   (`PR_SET_DUMPABLE` 0). The kernel then makes its `/proc/<pid>/`
//!   files owned by root and refuses `ptrace` by other processes of the
//!   same user. This is the real protection: `/proc/<pid>/environ` shows the
//!   *initial* environment block, which removing a variable does not erase.
//! - [`remove_from_env`] takes the secrets bridge itself reads
//!   ([`SECRET_VARS`]) out of the environment once
//!   [`Settings`](crate::settings::Settings) holds them, so that no process
//!   bridge starts (git, gh, a task's supervisor) inherits them. Everything
//!   that needs one reads the settings.
//!
//! Tasks' own environments are built from an allow-list (see `worker/job.rs`),
//! and on Linux the task supervisor also confines them with Landlock, which
//! denies them `ptrace`-class access (so `/proc/<pid>/environ`) to any
//! process outside their sandbox, such as a `git push` the worker runs.

/// The variables holding secrets bridge reads: taken out of the
/// environment at start-up.
pub const SECRET_VARS: &[&str] = &[
    crate::keys::IDENTITY_ENV,
    crate::settings::GITHUB_TOKEN_ENV,
    crate::settings::GH_TOKEN_ENV,
    // An `s3:` remote's secret key and session token (issue 19).
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Removes [`SECRET_VARS`] from the environment. Call it first thing in
/// `main`, before any thread starts, right after
/// [`Settings::from_env`](crate::settings::Settings::from_env) has read them:
/// from then on they live in the settings only.
pub fn remove_from_env() {
    for var in SECRET_VARS {
        // SAFETY: `remove_var` is unsound only when another thread reads or
        // writes the environment at the same time. This runs at the very
        // start of `main`, before the runtime, the TLS set-up or anything
        // else has started a thread.
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var(var);
        }
    }
}

/// Why this process could not be hidden from its tasks.
#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("cannot hide this process from its tasks (prctl PR_SET_DUMPABLE): {0}")]
    NotDumpable(#[source] nix::errno::Errno),
}

/// Makes this process non-dumpable (see the module docs). Returns the
/// error to report once logging is set up; bridge goes on without it.
pub fn harden_process() -> Result<(), HardenError> {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_dumpable(false).map_err(HardenError::NotDumpable)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hardening_error_says_what_failed() {
        let e = HardenError::NotDumpable(nix::errno::Errno::EPERM);
        assert_eq!(
            e.to_string(),
            format!(
                "cannot hide this process from its tasks (prctl PR_SET_DUMPABLE): {}",
                nix::errno::Errno::EPERM
            )
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
