//! Exit codes and hints for the errors of a remote store (issue 17, item
//! 9): a misconfigured remote exits with its own code from whichever
//! command met it (`bridge run`'s first sync, a worker's push, …), not
//! only from those that sync through `commands::common::sync_remote`.

use bridge_store::RemoteError;

use super::Advice;
use crate::error::EXIT_MISCONFIGURED;

/// The advice for `cause` when it is a remote's error that says the
/// remote is set up wrong.
pub(super) fn advise(cause: &(dyn std::error::Error + 'static)) -> Option<Advice> {
    let e = cause.downcast_ref::<RemoteError>()?;
    e.is_misconfigured().then(|| Advice {
        hint: Some(
            "fix `remote` (or `blobs`, if set) under [store] in bridge.toml, or the access it needs; what this device wrote is kept in its replica, and `bridge sync` sends it once the remote works"
                .to_owned(),
        ),
        code: Some(EXIT_MISCONFIGURED),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_repository_is_misconfigured_and_an_unreachable_one_is_not() {
        let missing = RemoteError::RepoNotFound {
            remote: "git:/nowhere.git".into(),
            detail: "does not appear to be a git repository".into(),
        };
        let advice = super::super::advise(&anyhow::Error::new(missing).context("cannot sync"));
        assert_eq!(advice.code, Some(EXIT_MISCONFIGURED));
        let down = RemoteError::Unreachable {
            remote: "git:https://example.invalid/r.git".into(),
            source: std::io::Error::other("could not resolve host"),
        };
        assert_eq!(advise(&down), None);
    }
}
