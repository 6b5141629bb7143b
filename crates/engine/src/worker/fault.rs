//! The machine's faults, told from the task's: an error that says this
//! machine cannot run tasks (no space left, no file descriptors, no memory,
//! a read-only or uncreatable working folder) is a [`LocalFault`], not an
//! attempt of the task.
//!
//! Recording such errors as attempts once let one worker with a full disk
//! fail every pending task of the pool within milliseconds (issue 12, item
//! 13). The worker instead releases the claim, records nothing, stops
//! claiming and fails with [`WorkerError::LocalFault`](super::WorkerError).

use std::error::Error;
use std::path::Path;

/// A failure of the worker's own machine, not of the task: no space left,
/// no file descriptors, no memory, a read-only or missing working folder.
/// Recording it as the task's attempt would use up the task's retries on
/// every task the worker claims. Holds what failed, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFault(pub String);

/// The operating-system errors that are the machine's, not the task's.
const LOCAL_ERRNOS: &[nix::errno::Errno] = &[
    nix::errno::Errno::ENOSPC,
    nix::errno::Errno::EDQUOT,
    nix::errno::Errno::EMFILE,
    nix::errno::Errno::ENFILE,
    nix::errno::Errno::ENOMEM,
    nix::errno::Errno::EROFS,
];

/// Whether an `io::Error` is the machine's fault (see [`LocalFault`]).
fn is_local_io(e: &std::io::Error) -> bool {
    e.raw_os_error()
        .is_some_and(|n| LOCAL_ERRNOS.iter().any(|l| *l as i32 == n))
}

/// Calls `f` on every cause of `e`, outermost first; the transparent
/// variants of the worker's errors as the error they wrap, so that a
/// downcast finds them.
pub(crate) fn for_each_cause<'e>(
    e: &'e (dyn Error + 'static),
    f: &mut dyn FnMut(&'e (dyn Error + 'static)),
) {
    if let Some(inner) = e
        .downcast_ref::<super::WorkerError>()
        .and_then(super::WorkerError::wrapped)
    {
        return for_each_cause(inner, f);
    }
    f(e);
    if let Some(source) = e.source() {
        for_each_cause(source, f);
    }
}

/// The error and its causes as one line, `error: cause: cause` (as
/// attempts' messages have always shown them).
pub(crate) fn chain_text(e: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for_each_cause(e, &mut |c| parts.push(c.to_string()));
    parts.join(": ")
}

/// The machine's fault among the causes of `e`, if any (see [`LocalFault`]).
pub fn local_fault(e: &(dyn Error + 'static)) -> Option<LocalFault> {
    let mut local = false;
    for_each_cause(e, &mut |c| {
        local |= c.downcast_ref::<std::io::Error>().is_some_and(is_local_io);
    });
    local.then(|| LocalFault(chain_text(e)))
}

/// The machine's fault in a message of the task runner, which carries the
/// operating system's error as text (`… (os error 28)`).
///
/// Only the message's end counts: that is where the OS error stands (`could
/// not start `NAME`: … (os error 28)`), while the rest may hold text the
/// task's author chose (a program named `x (os error 28)` must not make
/// every worker that claims it stop as if its disk were full).
pub(crate) fn local_fault_in_message(message: &str) -> Option<LocalFault> {
    let end = message.trim_end();
    LOCAL_ERRNOS
        .iter()
        .any(|l| end.ends_with(&format!("(os error {})", *l as i32)))
        .then(|| LocalFault(message.to_owned()))
}

/// Whether the file system holding `dir` has no space (or no inode) left
/// for an unprivileged writer.
pub(crate) fn work_dir_full(dir: &Path) -> Option<LocalFault> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    // Some file systems (btrfs) report no inode counts at all.
    let no_inodes = st.files() > 0 && st.files_available() == 0;
    (st.blocks_available() == 0 || no_inodes).then(|| {
        LocalFault(format!(
            "a task failed with no space left on the file system of {} (No space left on device)",
            dir.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a context, as the worker's own errors are.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot store the log /x")]
    struct Storing(#[source] std::io::Error);

    #[test]
    fn the_machines_errors_are_told_from_the_tasks() {
        for errno in [
            nix::errno::Errno::ENOSPC,
            nix::errno::Errno::EMFILE,
            nix::errno::Errno::ENFILE,
        ] {
            let io = std::io::Error::from_raw_os_error(errno as i32);
            // As the task runner reports it: the OS error as text.
            let message = format!("could not start `sh`: {io}");
            assert!(local_fault_in_message(&message).is_some(), "{message}");
            // As an error chain of our own.
            let e = Storing(io);
            let fault = local_fault(&e).expect("a local fault");
            assert!(
                fault.0.starts_with("cannot store the log /x: "),
                "{fault:?}"
            );
        }
        let missing = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOENT as i32);
        assert!(local_fault_in_message(&format!("could not start `nope`: {missing}")).is_none());
        // A program named like a full disk is still the task's failure.
        let hostile = format!("could not start `x (os error 28)`: {missing}");
        assert!(local_fault_in_message(&hostile).is_none(), "{hostile}");
        assert!(local_fault(&missing).is_none());
    }

    #[test]
    fn a_full_disk_is_seen_through_the_errors_that_wrap_it() {
        let io = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32);
        let write = crate::workspace::WriteError::Save {
            id: bridge_model::DocId::new(bridge_model::BatchId::new(0, [0; 10]), 1),
            source: Box::new(bridge_store::WriteError::Io {
                path: "/store/chunks/d1/x.chunk".into(),
                source: io,
            }),
        };
        let e = super::super::WorkerError::Write(write);
        let fault = local_fault(&e).expect("a local fault");
        assert!(fault.0.contains("No space left on device"), "{fault:?}");
    }
}
