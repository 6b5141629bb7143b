//! Hints and exit codes for the errors of the vault: sealing, opening and refusing documents and blobs.

use super::Advice;

/// The advice for `cause` when it is one of this area's errors.
pub(super) fn advise(_cause: &(dyn std::error::Error + 'static)) -> Option<Advice> {
    None
}
