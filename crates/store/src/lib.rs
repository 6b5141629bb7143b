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
//! packs/<sha256hex>.pack              small blobs bundled (remotes only)
//! ```
//!
//! Temp files (`.tmp-<hex>`) live next to their destination and every
//! listing ignores them. Store names are '/'-separated paths from the root.
//! A replica notes the files it found damaged in `.damaged/` (hidden).
//!
//! # Hostile and damaged files (issue 12, items 3, 8, 16)
//!
//! A store is written by others and kept on disks that fail, so:
//!
//! - every file is read within a size limit for its kind
//!   ([`names::MAX_CHUNK_BYTES`], [`names::MAX_SNAPSHOT_BYTES`],
//!   [`names::MAX_BLOB_BYTES`], [`names::MAX_SMALL_FILE_BYTES`]; git trees
//!   [`git::MAX_TREE_BYTES`]), checked before a byte is read (`fstat`, or
//!   `git cat-file --batch-check`); a larger file is skipped with one
//!   warning naming it, its size and the limit, and never deleted;
//! - symbolic links inside a store (remote folder or replica) are never
//!   followed: listings skip them with one warning each, reads refuse them
//!   (`openat2` with `RESOLVE_NO_SYMLINKS` on Linux, `O_NOFOLLOW`
//!   elsewhere), writes and removals refuse a linked folder on their way;
//!   FIFOs and devices are refused without blocking;
//! - a replica file whose bytes do not hash to its name is noted when a
//!   read finds it, and the next [`sync()`] replaces it by the remote's
//!   copy if that one hashes to the name (it is then exactly the file that
//!   was written); a remote copy that does not is never used.
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
//! - [`git`]: [`GitRemote`], a store in refs of a git repository (one
//!   per writer slot, `refs/bridge/<slot>`), driven through the `git` CLI.
//! - [`s3`]: the `s3:` remote, a store under a prefix of an S3 bucket
//!   (its client with the `s3` feature).
//! - [`packs`]: [`Packed`](packs::Packed), the wrapper every remote is
//!   opened through, which keeps small blobs in packs (issue 18).
//! - [`hybrid`]: [`Hybrid`](hybrid::Hybrid), documents in one remote and
//!   blobs in another (`[store] blobs`), and [`parse_store`] that opens it.
//! - [`mod@sync`]: [`sync()`] (set union both ways) and [`join`].
//! - [`backoff`]: [`Backoff`], the exponential backoff of retry loops
//!   (here and in the crates above).
//!
//! The files are stored as given: encryption and signatures (DESIGN.md
//! "Store layout": `.age` files) wrap the bytes before they reach this
//! crate, in a later version. Library code never prints: skipped files come
//! back as [`StoreWarning`]s, progress through a callback, details through
//! `tracing`.

#![warn(missing_docs)]
// Library code never prints (errors and warnings are values, details go
// through `tracing`); the ratchet on long functions (clippy.toml).
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(clippy::too_many_lines)]

pub mod backoff;
mod fsutil;
pub mod git;
pub mod hybrid;
pub mod load;
pub mod names;
pub mod outbox;
pub mod packs;
pub mod remote;
pub mod replica;
pub mod s3;
pub mod sync;

pub use backoff::{Backoff, Jitter};
pub use fsutil::replace_file;
pub use git::{
    DEFAULT_STALL_TIMEOUT, GitLimits, GitRemote, GitToken, PushStats, SlotError, redact_spec,
    validate_slot,
};
pub use hybrid::{Hybrid, parse_store};
pub use load::{
    Changes, ChunkOpener, LoadedDoc, OpenedEntry, Plain, PlainRefusal, StoreWarning, has_unseen,
    load_doc, refresh_doc,
};
pub use names::{
    BlobId, BlobIdError, DocFolder, DocIdError, FORMAT_LINE, WorkspaceIdError, validate_doc_id,
};
pub use outbox::Outbox;
pub use remote::{
    DirRemote, MemRemote, PutBatch, Remote, RemoteError, RemoteOptions, RemoteSpecError,
    dir_remote_path, parse_remote,
};
pub use replica::{InitError, ListError, OpenError, ReadError, Replica, WriteError};
pub use sync::{
    SyncError, SyncProgress, SyncReport, join, join_with_progress, pull_with, push_names,
    push_queued, remote_workspace, sync, sync_with,
};
