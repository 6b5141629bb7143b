//! The bridge engine: everything `bridge` does, without the command line.
//!
//! A workspace ([`workspace`]) is a folder with `bridge.toml` and a device's
//! state in `.bridge/`; a session over it loads the task documents through
//! the [`vault`] (the trust boundary: every document and blob is signed, then
//! encrypted to the pool's members), keeps a [`cache`] of what it decrypted,
//! syncs with the store's remote, and writes new facts. The [`worker`] claims
//! and runs tasks under a [`sandbox`] and a [`run_policy`]; the [`publish`]er
//! pushes what it wrote; [`sync`] exchanges files with the remote, and
//! [`compact`]ion folds many small files into snapshots. [`taskfile`] reads
//! YAML task files (URL inputs are downloaded by `bridge-fetch`),
//! [`audience`] keeps private batches' keys, [`keys`] and
//! [`freshness`] hold the device's identity and what it has seen of the
//! roster. [`settings`] is what the engine takes from its surroundings (the
//! configuration folder, the device name, the secrets, the overrides of
//! `bridge.toml`), resolved once by the program and carried by the
//! workspace: no other module reads the process environment.
//!
//! # Features
//!
//! - `worker` (default): the [`worker`], [`sandbox`] and [`workarea`]
//!   modules, which run tasks as processes (through `bridge-exec`:
//!   Landlock, namespaces, a supervisor) and download URL inputs (through
//!   `bridge-fetch`, an HTTP client). URL inputs have no feature of their own:
//!   a worker that cannot download would have to refuse such tasks when it
//!   chooses what to claim, a policy of its own rather than a build option.
//!   A read-only viewer, or a program that only submits tasks, depends on
//!   `bridge-engine` with
//!   `default-features = false` and compiles neither processes nor HTTP;
//!   everything else is there, and the settings the worker reads
//!   (`[worker] sandbox`: [`sandbox_mode`], `run-tasks-from`: [`run_policy`])
//!   are validated the same way with or without it. Writing a task file's
//!   URL inputs ([`taskfile`]) needs no download either.
//!
//! # Errors, time and output
//!
//! The engine never prints, composes no hint and picks no exit code. Its
//! errors are typed, one enum per concern (`workspace::ConfigError`,
//! `workspace::LoadError`, `worker::WorkerError`, the vault's `Refusal`, …)
//! with the facts a caller needs; the command line (`bridge/src/hints`)
//! decides what to tell the user. "Now" is read through a [`clock::Clock`],
//! so claims, leases and deadlines are unit-tested with a clock moved by
//! hand. What to push is the replica's outbox, which every write fills and
//! the [`publish`]er drains.

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(clippy::too_many_lines)]

pub mod audience;
pub mod budget;
pub mod cache;
pub mod clock;
pub mod compact;
pub mod files;
pub mod freshness;
pub mod keys;
pub mod publish;
pub mod run_policy;
#[cfg(feature = "worker")]
pub mod sandbox;
pub mod sandbox_mode;
pub mod secrets;
pub mod settings;
pub mod shard;
pub mod sync;
pub mod taskfile;
pub mod text;
#[cfg(feature = "worker")]
pub mod workarea;
#[cfg(feature = "worker")]
pub mod worker;
pub mod workspace;

// The vault is its own crate (the trust boundary, embeddable without the
// rest of the engine); under its old names so that `crate::vault::…` and
// `crate::snapshot::…` keep meaning what they did.
pub use bridge_vault as vault;
pub use bridge_vault::snapshot;
