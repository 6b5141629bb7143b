//! The bridge store: a folder of immutable, content-addressed files, the
//! remotes it syncs with, and loading Automerge documents from it.
//!
//! # Layout
//!
//! ```text
//! FORMAT                              exactly "bridge-store 1\n"
//! workspace                           the workspace id, one line
//! chunks/<doc-id>/<sha256hex>.chunk   an Automerge change chunk
//! blobs/<sha256hex>.blob              a blob (task inputs, outputs, logs)
//! ```
//!
//! Temp files (`.tmp-<hex>`) live next to their destination and every
//! listing ignores them. Store names are '/'-separated paths from the root.
//!
//! # Modules and data flow
//!
//! - [`names`]: ids and store names, validated before any path is built.
//! - `fsutil`: atomic create-only writes (temp + fsync + hard link).
//! - [`replica`]: [`Replica`], the folder on this device.
//! - [`load`]: [`load_doc`] / [`refresh_doc`] turn chunk files into an
//!   Automerge document, skipping bad files with a [`StoreWarning`].
//! - [`remote`]: the [`Remote`] trait, [`DirRemote`], [`MemRemote`],
//!   [`parse_remote`] and its [`RemoteOptions`].
//! - [`git`]: [`GitRemote`], a store in branches of a git repository (one
//!   per writer slot), driven through the `git` CLI.
//! - [`mod@sync`]: [`sync()`] (set union both ways) and [`join`].
//!
//! The files are stored as given: encryption and signatures (DESIGN.md
//! "Store layout": `.age` files) wrap the bytes before they reach this
//! crate, in a later version. Library code never prints: skipped files come
//! back as [`StoreWarning`]s, progress through a callback, details through
//! `tracing`.

#![warn(missing_docs)]

mod fsutil;
pub mod git;
pub mod load;
pub mod names;
pub mod remote;
pub mod replica;
pub mod sync;

pub use git::{DEFAULT_STALL_TIMEOUT, GitRemote, PushStats, SlotError, validate_slot};
pub use load::{
    ChunkOpener, LoadedDoc, OpenedEntry, Plain, StoreWarning, has_unseen, load_doc, refresh_doc,
};
pub use names::{
    BlobId, BlobIdError, DocFolder, DocIdError, FORMAT_LINE, WorkspaceIdError, validate_doc_id,
};
pub use remote::{
    DirRemote, MemRemote, Remote, RemoteError, RemoteOptions, RemoteSpecError, parse_remote,
};
pub use replica::{InitError, ListError, OpenError, ReadError, Replica, WriteError};
pub use sync::{
    SyncError, SyncProgress, SyncReport, join, join_with_progress, remote_workspace, sync,
    sync_with,
};
