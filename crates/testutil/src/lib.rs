//! Test-only helpers shared by bridge's crates and its end-to-end tests,
//! so that tests import fixtures instead of copying them (`publish =
//! false`; never a dependency of the product).
//!
//! - [`remote_contract`]: the contract every [`Remote`](bridge_store::Remote)
//!   backend meets, as one function per point and the
//!   [`remote_contract_tests!`] macro that runs them all against a backend;
//! - [`git`]: real `git`, run hermetically (no user or system config),
//!   bare repositories and their branches, a `git daemon` on 127.0.0.1;
//! - [`github_git`]: a GitHub-shaped git server (smart HTTP over https on
//!   127.0.0.1, token, GitHub's limits and counts) for tests and benchmarks;
//! - [`https_files`]: a folder served over https on 127.0.0.1 with the same
//!   test authority, counting downloads (a release mirror for the action);
//! - [`s3`]: a real S3 server (`s3s-fs`) on 127.0.0.1, for `s3:` remotes;
//! - [`files`]: store files (blobs, chunks, the header) by content;
//! - [`spec`]: task specs (one builder for every test);
//! - `forge` (feature `forge`): store files built by hand, as an attacker
//!   would, with the crypto crate's envelope layout and the vault's
//!   framing.
//!
//! Helpers panic on failure: they are for tests only.

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(clippy::too_many_lines)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

pub mod files;
#[cfg(feature = "forge")]
pub mod forge;
pub mod git;
pub mod github_git;
pub mod https_files;
pub mod remote_contract;
pub mod s3;
pub mod spec;
