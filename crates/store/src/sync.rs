//! Set-union sync between a replica and a remote, and joining a workspace
//! from a remote.
//!
//! [`sync`] checks the remote's `FORMAT` and `workspace` (initialising an
//! empty remote folder as a store of this workspace), lists both sides, then
//! pulls every chunk and blob the replica lacks (in batches, through
//! [`Remote::read_many`]) and pushes every one the remote lacks (in batches,
//! one [`Remote::put`] each), blobs first so that a chunk never names a blob
//! its reader cannot fetch. Pulled bytes are checked against their sha256 name before
//! they are written; pushed ones are checked when read from the replica. A
//! corrupt file on either side is skipped with a warning, never copied and
//! never deleted. Because files are immutable and writes create-only, sync
//! is idempotent and a killed sync is resumed by running it again.
//!
//! The one exception: before pulling, the replica's files noted as damaged
//! (see [`Replica::damaged_names`]; a read that finds bytes not hashing to
//! their name notes them) are replaced by the remote's copies, if those hash
//! to their names, and reported in [`SyncReport::repaired`] (issue 12, item
//! 3). Only noted files are checked, so a sync never re-hashes the whole
//! replica; [`Replica::find_damaged`] does that on demand (`bridge sync
//! --verify`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::load::StoreWarning;
use crate::names::{self, DocFolder, FORMAT_LINE, FORMAT_NAME, StoreName, WORKSPACE_NAME};
use crate::remote::{Remote, RemoteError};
use crate::replica::{InitError, ListError, ReadError, Replica, WriteError};

/// How far a sync has got: `done` of `total` files copied or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncProgress {
    /// Files handled so far.
    pub done: usize,
    /// Files to handle in this sync.
    pub total: usize,
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Files copied from the remote into the replica.
    pub pulled: usize,
    /// The documents (by name) those files belong to: what a reader of the
    /// replica has to read again.
    pub touched_docs: std::collections::BTreeSet<String>,
    /// Files copied from the replica to the remote.
    pub pushed: usize,
    /// Files skipped (corrupt, unreadable), one warning each.
    pub skipped: Vec<StoreWarning>,
    /// Files of the replica that were damaged (their bytes did not hash to
    /// their name) and were replaced by the remote's verified copy: each
    /// one deserves one warning, and a loader that skipped it reads it again.
    pub repaired: Vec<StoreWarning>,
}

/// Why a sync (or a join) failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The remote failed (unreachable, not a store, another workspace, …).
    #[error("sync with the remote failed")]
    Remote(#[from] RemoteError),
    /// The local replica could not be listed.
    #[error("could not list the local replica")]
    LocalList(#[source] ListError),
    /// A pulled file could not be written into the replica.
    #[error("could not store {name} in the local replica")]
    LocalWrite {
        /// The store name.
        name: String,
        /// The cause.
        #[source]
        source: WriteError,
    },
    /// The local replica could not be created (join).
    #[error("could not create the local replica")]
    Init(#[from] InitError),
}

/// Pulls are read in batches of this many files (one `read_many` each).
const PULL_BATCH_FILES: usize = 256;

/// Makes the replica and the remote hold the union of their chunks and
/// blobs. An empty remote folder becomes a store of this workspace.
/// Progress goes to `progress`; files that cannot be copied are skipped and
/// reported in [`SyncReport::skipped`].
pub fn sync(
    replica: &Replica,
    remote: &dyn Remote,
    progress: &mut dyn FnMut(SyncProgress),
) -> Result<SyncReport, SyncError> {
    sync_with(replica, remote, progress, &mut |_, _| BTreeSet::new())
}

/// [`sync`], leaving out the files `redundant` names. Snapshots (live and
/// archived) are pulled first; then `redundant` is asked, with the replica
/// holding them and the remote's listing, which store names neither side needs (chunks and older
/// snapshots that a snapshot provably contains). Those are neither pulled
/// nor pushed, so a device that missed a compaction does not bring back
/// what it removed.
///
/// A sync sends everything the replica's [outbox](crate::Outbox) holds (and
/// more): a sync that succeeds empties it of what was queued when it began;
/// one that fails leaves it queued.
pub fn sync_with(
    replica: &Replica,
    remote: &dyn Remote,
    progress: &mut dyn FnMut(SyncProgress),
    redundant: &mut dyn FnMut(&Replica, &BTreeSet<String>) -> BTreeSet<String>,
) -> Result<SyncReport, SyncError> {
    // Taken before the replica is listed, so each of these is pushed below
    // unless the remote has it or it is redundant.
    let queued = replica.outbox().take();
    let result = exchange(replica, remote, progress, redundant, Direction::Both);
    if result.is_err() {
        replica.outbox().put_back(queued);
    }
    result
}

/// [`sync_with`]'s pull alone: copies into the replica what it lacks
/// (repairing damaged files as a sync does) and pushes nothing, so that a
/// writer pacing its pushes (a host's push budget) still sees the others'
/// files between two pushes. The outbox is left as it is.
pub fn pull_with(
    replica: &Replica,
    remote: &dyn Remote,
    progress: &mut dyn FnMut(SyncProgress),
    redundant: &mut dyn FnMut(&Replica, &BTreeSet<String>) -> BTreeSet<String>,
) -> Result<SyncReport, SyncError> {
    exchange(replica, remote, progress, redundant, Direction::Pull)
}

/// What an exchange moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Both ways (a sync).
    Both,
    /// From the remote only.
    Pull,
}

/// Pushes what the replica's [outbox](crate::Outbox) holds, and nothing
/// else: no listing of either side, no pull. For a file or two written
/// right after a sync (a rotated grant), where a second sync would list
/// the whole remote again. Returns how many files went; on failure they
/// stay queued (the next sync sends them anyway).
pub fn push_queued(replica: &Replica, remote: &dyn Remote) -> Result<usize, SyncError> {
    let queued = replica.outbox().take();
    push_names(replica, remote, &queued).map_err(|e| {
        replica.outbox().put_back(queued);
        SyncError::Remote(e)
    })
}

/// Pushes the replica's files `names` (store names) in one
/// [`put`](Remote::put), so that a git remote makes one commit and one push
/// of them all. A name no longer in the replica (compacted away since it
/// was queued) is left out. Returns how many files went.
pub fn push_names(
    replica: &Replica,
    remote: &dyn Remote,
    names: &[String],
) -> Result<usize, RemoteError> {
    let local = replica.as_remote();
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        match local.read(name) {
            Ok(bytes) => files.push((name.clone(), bytes)),
            Err(e) => tracing::debug!("not pushing {name}: {e}"),
        }
    }
    if !files.is_empty() {
        remote.put(&files)?;
    }
    Ok(files.len())
}

/// [`sync_with`]'s exchange of files.
fn exchange(
    replica: &Replica,
    remote: &dyn Remote,
    progress: &mut dyn FnMut(SyncProgress),
    redundant: &mut dyn FnMut(&Replica, &BTreeSet<String>) -> BTreeSet<String>,
    direction: Direction,
) -> Result<SyncReport, SyncError> {
    let began = std::time::Instant::now();
    let remote_names = prepare_remote(replica.workspace_id(), remote)?;
    let listed_ms = began.elapsed().as_millis();
    let local_names = replica.list_store_names().map_err(SyncError::LocalList)?;
    let mut report = SyncReport::default();
    repair(replica, remote, &remote_names, &mut report)?;

    let (snapshots, mut to_pull): (Vec<&String>, Vec<&String>) = remote_names
        .iter()
        .filter(|n| is_content(n) && !local_names.contains(*n))
        .partition(|n| is_snapshot(n));
    let mut progress = Progress {
        callback: progress,
        done: 0,
        total: snapshots.len(),
        reported: None,
    };
    pull(replica, remote, &snapshots, &mut report, &mut progress)?;

    let skip = redundant(replica, &remote_names);
    let checked_ms = began.elapsed().as_millis();
    to_pull.retain(|n| !skip.contains(*n));
    let mut to_push: Vec<&String> = local_names
        .iter()
        .filter(|n| {
            direction == Direction::Both && !remote_names.contains(*n) && !skip.contains(*n)
        })
        .collect();
    to_pull.sort_by_key(|n| (!is_blob(n), *n));
    to_push.sort_by_key(|n| (!is_blob(n), *n));
    progress.total += to_pull.len() + to_push.len();
    progress.report();
    pull(replica, remote, &to_pull, &mut report, &mut progress)?;
    let pulled_ms = began.elapsed().as_millis();

    let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0;
    let limit = remote.put_batch();
    let mut to_push = to_push.into_iter().peekable();
    while let Some(name) = to_push.next() {
        match replica.read_store_file(name) {
            Ok(bytes) => {
                batch_bytes += bytes.len();
                batch.push((name.clone(), bytes));
            }
            Err(ReadError::Missing { .. }) => {
                tracing::debug!(name, "file vanished from the replica during sync");
                progress.advance(1);
            }
            Err(e) => {
                report.skipped.push(StoreWarning {
                    path: replica.root().join(name),
                    message: match e {
                        ReadError::Corrupt { actual, .. } => format!(
                            "corrupt in the replica: its content hashes to {actual}; not pushed, left in place"
                        ),
                        ReadError::TooLarge { size, limit, .. } => format!(
                            "{size} bytes, over the limit of {limit} bytes for this kind of store file; not read, not pushed, left in place"
                        ),
                        ReadError::Link { .. } => "a symbolic link; bridge never follows links inside a store: not pushed".to_owned(),
                        ReadError::NotAFile { .. } => "not a regular file; not pushed, left in place".to_owned(),
                        other => error_chain(&other),
                    },
                });
                progress.advance(1);
            }
        }
        let last = to_push.peek().is_none();
        if last || batch.len() >= limit.files || batch_bytes >= limit.bytes {
            if !batch.is_empty() {
                remote.put(&batch)?;
                report.pushed += batch.len();
                progress.advance(batch.len());
                batch.clear();
                batch_bytes = 0;
            }
            progress.report();
        }
    }
    tracing::debug!(
        remote = remote.describe(),
        pulled = report.pulled,
        pushed = report.pushed,
        skipped = report.skipped.len(),
        listed_ms,
        checked_ms,
        pulled_ms,
        ms = began.elapsed().as_millis(),
        "sync done"
    );
    Ok(report)
}

/// Pulls `names` from the remote into the replica, in batches, checking
/// each file's hash before it is written.
fn pull(
    replica: &Replica,
    remote: &dyn Remote,
    names: &[&String],
    report: &mut SyncReport,
    progress: &mut Progress<'_>,
) -> Result<(), SyncError> {
    for pull_batch in names.chunks(PULL_BATCH_FILES) {
        let mut good: Vec<(&String, Vec<u8>)> = Vec::new();
        for (name, result) in read_batch(remote, pull_batch)? {
            match result {
                Ok(bytes) => {
                    let expected = StoreName::parse(name).and_then(|n| n.hash());
                    let actual = names::sha256_hex(&bytes);
                    if expected == Some(actual.as_str()) {
                        good.push((name, bytes));
                    } else {
                        report.skipped.push(StoreWarning {
                            path: remote_path(remote, name),
                            message: format!(
                                "corrupt on the remote: its content hashes to {actual}; not copied"
                            ),
                        });
                        progress.advance(1);
                    }
                }
                Err(e) => {
                    report.skipped.push(StoreWarning {
                        path: remote_path(remote, name),
                        message: remote_file_problem(&e),
                    });
                    progress.advance(1);
                }
            }
        }
        // Written together: one sync of the file system for the batch.
        let files: Vec<(&String, &[u8])> = good.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let written = replica
            .put_store_files(&files)
            .map_err(|source| SyncError::LocalWrite {
                name: files.first().map(|(n, _)| (*n).clone()).unwrap_or_default(),
                source,
            })?;
        for ((name, _), result) in files.iter().zip(written) {
            match result {
                Ok(_) => {
                    report.pulled += 1;
                    if let Some(StoreName::Doc { doc, .. }) = StoreName::parse(name) {
                        report.touched_docs.insert(doc.to_owned());
                    }
                }
                // Refused for this file alone (a symbolic link in the
                // replica where its folder should be): the others go on.
                Err(e) => report.skipped.push(StoreWarning {
                    path: replica.root().join(name),
                    message: format!("not copied from the remote: {}", error_chain(&e)),
                }),
            }
            progress.advance(1);
        }
        progress.report();
    }
    Ok(())
}

/// Replaces the replica's files noted as damaged (see
/// [`Replica::damaged_names`]) by the remote's copies, when those hash to
/// their names. A remote copy that does not is never used: the damaged file
/// stays, noted, for another remote or a person.
fn repair(
    replica: &Replica,
    remote: &dyn Remote,
    remote_names: &BTreeSet<String>,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let damaged: Vec<String> = replica
        .damaged_names()
        .into_iter()
        .filter(|n| remote_names.contains(n))
        .collect();
    if damaged.is_empty() {
        return Ok(());
    }
    let refs: Vec<&String> = damaged.iter().collect();
    for batch in refs.chunks(PULL_BATCH_FILES) {
        for (name, result) in read_batch(remote, batch)? {
            let bytes = match result {
                Ok(bytes) => bytes,
                Err(e) => {
                    // Named by the remote copy: the loader already named the
                    // local file.
                    report.skipped.push(StoreWarning {
                        path: remote_path(remote, name),
                        message: format!(
                            "could not repair the damaged local copy from it: {}",
                            remote_file_problem(&e)
                        ),
                    });
                    continue;
                }
            };
            let actual = names::sha256_hex(&bytes);
            if StoreName::parse(name).and_then(|n| n.hash()) != Some(actual.as_str()) {
                report.skipped.push(StoreWarning {
                    path: remote_path(remote, name),
                    message: format!(
                        "the local copy is damaged, and this one is damaged too (it hashes to {actual}); neither is used, the local one stays in place"
                    ),
                });
                continue;
            }
            match replica.replace_damaged(name, &bytes) {
                Ok(true) => report.repaired.push(StoreWarning {
                    path: replica.root().join(name),
                    message: format!(
                        "it was damaged (its bytes did not hash to its name); replaced by the verified copy from {}",
                        remote.describe()
                    ),
                }),
                Ok(false) => {}
                Err(e) => report.skipped.push(StoreWarning {
                    path: replica.root().join(name),
                    message: format!("damaged, and could not be repaired: {}", error_chain(&e)),
                }),
            }
        }
    }
    Ok(())
}

/// A file to pull and what reading it gave.
type PulledFile<'a> = (&'a String, Result<Vec<u8>, RemoteError>);

/// Reads one batch of pulls with [`Remote::read_many`]. If the batch fails
/// for a reason that concerns one file only, reads file by file so that the
/// others still arrive and the bad one becomes a warning. Errors about the
/// whole remote (unreachable, refused, ...) stop the sync.
fn read_batch<'a>(
    remote: &dyn Remote,
    names: &[&'a String],
) -> Result<Vec<PulledFile<'a>>, RemoteError> {
    let owned: Vec<String> = names.iter().map(|n| (*n).clone()).collect();
    match remote.read_many(&owned) {
        Ok(files) => {
            let mut files: std::collections::HashMap<String, Vec<u8>> = files.into_iter().collect();
            Ok(names
                .iter()
                .map(|name| {
                    let result = files.remove(*name).ok_or_else(|| RemoteError::NotFound {
                        remote: remote.describe(),
                        name: (*name).clone(),
                    });
                    (*name, result)
                })
                .collect())
        }
        Err(e) if e.is_remote_wide() => Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "batched read failed; reading file by file");
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                match remote.read(name) {
                    Err(e) if e.is_remote_wide() => return Err(e),
                    result => out.push((*name, result)),
                }
            }
            Ok(out)
        }
    }
}

/// Counts handled files and reports each new count once.
struct Progress<'a> {
    callback: &'a mut dyn FnMut(SyncProgress),
    done: usize,
    total: usize,
    reported: Option<usize>,
}

impl Progress<'_> {
    fn advance(&mut self, n: usize) {
        self.done += n;
    }

    fn report(&mut self) {
        if self.reported != Some(self.done) {
            self.reported = Some(self.done);
            (self.callback)(SyncProgress {
                done: self.done,
                total: self.total,
            });
        }
    }
}

/// Creates a replica in `local_root` for the workspace of `remote`, then
/// syncs it. The remote must already be a store.
pub fn join(local_root: &Path, remote: &dyn Remote) -> Result<Replica, SyncError> {
    join_with_progress(local_root, remote, &mut |_| {}).map(|(replica, _)| replica)
}

/// [`join`] with progress and the sync report.
pub fn join_with_progress(
    local_root: &Path,
    remote: &dyn Remote,
    progress: &mut dyn FnMut(SyncProgress),
) -> Result<(Replica, SyncReport), SyncError> {
    let workspace = remote_workspace(remote)?;
    let replica = Replica::init(local_root, &workspace)?;
    let report = sync(&replica, remote, progress)?;
    Ok((replica, report))
}

/// Reads and checks a remote's `FORMAT` and returns its workspace id.
pub fn remote_workspace(remote: &dyn Remote) -> Result<String, RemoteError> {
    let not_a_store = |e: RemoteError| match e {
        RemoteError::NotFound { remote, .. } => RemoteError::NotAStore { remote },
        other => other,
    };
    let format = remote.read(FORMAT_NAME).map_err(not_a_store)?;
    if format != FORMAT_LINE.as_bytes() {
        return Err(RemoteError::UnknownFormat {
            remote: remote.describe(),
            found: names::preview(&format),
        });
    }
    read_remote_workspace(remote)
}

/// Reads a remote's `workspace` file.
fn read_remote_workspace(remote: &dyn Remote) -> Result<String, RemoteError> {
    let bytes = remote.read(WORKSPACE_NAME).map_err(|e| match e {
        RemoteError::NotFound { remote, .. } => RemoteError::NotAStore { remote },
        other => other,
    })?;
    names::parse_workspace_file(&bytes).map_err(|found| RemoteError::BadWorkspaceFile {
        remote: remote.describe(),
        found,
    })
}

/// Checks the remote belongs to `workspace` (initialising an empty one) and
/// returns its listing.
pub(crate) fn prepare_remote(
    workspace: &str,
    remote: &dyn Remote,
) -> Result<std::collections::BTreeSet<String>, RemoteError> {
    let mut listing = remote.list()?;
    let wrong = |found: String| RemoteError::WrongWorkspace {
        remote: remote.describe(),
        expected: workspace.to_owned(),
        found,
    };
    if !listing.contains(FORMAT_NAME) {
        // Only an empty folder (or one left by a killed initialisation of
        // this same workspace) becomes a store.
        if listing.iter().any(|n| n != WORKSPACE_NAME) {
            return Err(RemoteError::NotAStore {
                remote: remote.describe(),
            });
        }
        if listing.contains(WORKSPACE_NAME) {
            let found = read_remote_workspace(remote)?;
            if found != workspace {
                return Err(wrong(found));
            }
        } else {
            remote.put(&[(
                WORKSPACE_NAME.to_owned(),
                names::workspace_file(workspace).into_bytes(),
            )])?;
        }
        // `workspace` first: a remote with a FORMAT file is complete.
        remote.put(&[(FORMAT_NAME.to_owned(), FORMAT_LINE.as_bytes().to_vec())])?;
        tracing::info!(
            remote = remote.describe(),
            workspace,
            "initialised the remote as a store"
        );
        listing.insert(FORMAT_NAME.to_owned());
        listing.insert(WORKSPACE_NAME.to_owned());
    }
    // Re-read even after initialising: another process may have won a race.
    let found = remote_workspace(remote)?;
    if found != workspace {
        return Err(wrong(found));
    }
    Ok(listing)
}

/// True for chunk and blob names.
fn is_content(name: &str) -> bool {
    StoreName::parse(name).is_some_and(|n| n.hash().is_some())
}

/// True for blob names.
fn is_snapshot(name: &str) -> bool {
    matches!(
        StoreName::parse(name),
        Some(StoreName::Doc {
            folder: DocFolder::Snapshots | DocFolder::Archive,
            ..
        })
    )
}

fn is_blob(name: &str) -> bool {
    matches!(StoreName::parse(name), Some(StoreName::Blob { .. }))
}

/// How a remote file is named in a warning.
fn remote_path(remote: &dyn Remote, name: &str) -> PathBuf {
    PathBuf::from(format!("{}/{name}", remote.describe()))
}

/// Why a remote file was not copied, in a sentence that does not repeat
/// its name (the warning names it).
fn remote_file_problem(e: &RemoteError) -> String {
    match e {
        RemoteError::TooLarge { size, limit, .. } => format!(
            "{size} bytes, over the limit of {limit} bytes for this kind of store file; not read, not copied"
        ),
        RemoteError::NotAFile { what, .. } => {
            format!(
                "{what}; bridge never follows links or reads special files inside a store: not copied"
            )
        }
        other => error_chain(other),
    }
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
