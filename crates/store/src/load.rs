//! Loading a document from its chunk files: [`load_doc`] builds an Automerge
//! document from every chunk of a document, [`refresh_doc`] applies only the
//! chunks that appeared since.
//!
//! Snapshots (`snapshots/<doc>/`, and `archive/<doc>/` for a document
//! revived after archival) are read first: each bundles chunks under their
//! own file names, opened by [`ChunkOpener::open_snapshot`]; a chunk file
//! whose name a snapshot already supplied is not read again.
//!
//! Data flow: list `chunks/<doc>/`, read each chunk not yet applied, check its
//! sha256 against its name, open it with the caller's [`ChunkOpener`]
//! (decrypt and verify, before any parsing), check that Automerge can parse it, then apply all
//! the good ones in ONE `load_incremental` call (one call per chunk is
//! quadratic in automerge 0.12). If that call fails, the chunks are applied
//! one at a time and each one Automerge rejects is skipped, so one bad chunk
//! never stops the others. Every skipped file becomes a [`StoreWarning`];
//! nothing is deleted.
//!
//! Why the parse check before the batch: `load_incremental` does not fail on
//! unparsable bytes in the middle of its input. It silently drops everything
//! from the bad chunk on (automerge 0.12 `load_incremental_log_patches`: a
//! `Partial` load is only logged, and into an empty document it uses
//! `OnPartialLoad::Ignore`). Concatenating a garbage chunk would hide every
//! chunk after it, so each chunk is first parsed on its own with
//! `OnPartialLoad::Error`. An incremental chunk's changes depend on changes
//! outside it, so they are queued, not applied; still, this parse is about
//! a quarter of a cold load, so an opener that already parses every change
//! and verifies its checksum (the encryption layer does, before it hands
//! anything over) skips it: [`ChunkOpener::checks_changes`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use automerge::{AutoCommit, Automerge, AutomergeError, LoadOptions, OnPartialLoad};

use crate::names::DocFolder;
use crate::replica::{ListError, ReadError, Replica};

/// Turns a chunk file's bytes (already checked against its name) into the
/// Automerge bytes to apply, or refuses it. The encryption layer implements
/// this: decrypt, verify the signature and the writer, and only then hand
/// the changes to Automerge. [`Plain`] passes the bytes through.
pub trait ChunkOpener {
    /// Why a file (or a chunk a snapshot bundles) is refused: the
    /// implementation's own typed error, so that its callers and tests can
    /// match the reason. Loading records its message as a [`StoreWarning`]
    /// against the file, whatever the reason.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens chunk `name` of document `doc`.
    fn open(&self, doc: &str, name: &str, bytes: Vec<u8>) -> Result<Vec<u8>, Self::Error>;

    /// Whether what [`open`](Self::open) returns is already checked change
    /// by change (each parsed, its checksum verified), so that loading
    /// need not parse every chunk on its own first. About a quarter of a
    /// cold load otherwise.
    fn checks_changes(&self) -> bool {
        false
    }

    /// Opens snapshot file `name` of document `doc` (in `folder`): the
    /// chunks it bundles, each as its chunk file name and either the
    /// Automerge bytes to apply or why that chunk is refused. Chunks named
    /// in `known` are already applied: they may be left out. An error
    /// refuses the whole file.
    fn open_snapshot(
        &self,
        doc: &str,
        folder: DocFolder,
        name: &str,
        bytes: Vec<u8>,
        known: &BTreeSet<String>,
    ) -> Result<Vec<OpenedEntry<Self::Error>>, Self::Error>;
}

/// A chunk inside a snapshot: its file name, and its Automerge bytes or
/// why it is refused.
pub type OpenedEntry<E> = (String, Result<Vec<u8>, E>);

/// A [`ChunkOpener`] for stores whose chunks are plain Automerge bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

/// Why [`Plain`] refuses a file.
#[derive(Debug, thiserror::Error)]
pub enum PlainRefusal {
    /// Snapshots bundle sealed chunks: a plain store has none it can read.
    #[error("this store cannot read snapshots")]
    NoSnapshots,
}

impl ChunkOpener for Plain {
    type Error = PlainRefusal;

    fn open(&self, _doc: &str, _name: &str, bytes: Vec<u8>) -> Result<Vec<u8>, PlainRefusal> {
        Ok(bytes)
    }

    fn open_snapshot(
        &self,
        _doc: &str,
        _folder: DocFolder,
        _name: &str,
        _bytes: Vec<u8>,
        _known: &BTreeSet<String>,
    ) -> Result<Vec<OpenedEntry<PlainRefusal>>, PlainRefusal> {
        Err(PlainRefusal::NoSnapshots)
    }
}

/// A document loaded from a replica.
#[derive(Debug)]
pub struct LoadedDoc {
    /// The document. Its actor is random: the caller sets its own.
    pub doc: AutoCommit,
    /// The chunk file names applied to `doc`.
    pub applied: BTreeSet<String>,
    /// The chunk file names skipped for good (corrupt or refused by
    /// Automerge); [`refresh_doc`] does not read them again, since store files
    /// never change. A new [`load_doc`] tries them again.
    pub skipped: BTreeSet<String>,
}

/// A store file that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreWarning {
    /// The file (for a remote file, its remote description and store name).
    pub path: PathBuf,
    /// Why it was skipped.
    pub message: String,
}

impl fmt::Display for StoreWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped {}: {}", self.path.display(), self.message)
    }
}

/// Loads document `doc_id` from every chunk in the replica.
///
/// Unreadable chunks are skipped with one warning each; only a failure to
/// list the document's folder is an error.
pub fn load_doc<O: ChunkOpener + ?Sized>(
    replica: &Replica,
    doc_id: &str,
    opener: &O,
) -> Result<(LoadedDoc, Vec<StoreWarning>), ListError> {
    let mut loaded = LoadedDoc {
        doc: AutoCommit::new(),
        applied: BTreeSet::new(),
        skipped: BTreeSet::new(),
    };
    let (_, warnings) = refresh_doc(replica, doc_id, &mut loaded, opener)?;
    Ok((loaded, warnings))
}

/// Whether document `doc_id` has a file (snapshot or chunk) in neither
/// `applied` nor `skipped`: what [`refresh_doc`] would read. Lists only.
pub fn has_unseen(
    replica: &Replica,
    doc_id: &str,
    applied: &BTreeSet<String>,
    skipped: &BTreeSet<String>,
) -> Result<bool, ListError> {
    for folder in [DocFolder::Snapshots, DocFolder::Archive, DocFolder::Chunks] {
        if replica
            .list_doc_files(folder, doc_id)?
            .iter()
            .any(|n| !applied.contains(n) && !skipped.contains(n))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Applies the chunks of `doc_id` that `loaded` has not seen yet. Returns
/// how many were applied.
#[expect(
    clippy::too_many_lines,
    reason = "listing, reading, verifying and applying in one pass; to split by step"
)]
pub fn refresh_doc<O: ChunkOpener + ?Sized>(
    replica: &Replica,
    doc_id: &str,
    loaded: &mut LoadedDoc,
    opener: &O,
) -> Result<(usize, Vec<StoreWarning>), ListError> {
    let mut warnings = Vec::new();
    let mut good: Vec<(String, Vec<u8>)> = Vec::new();
    let mut queued: BTreeSet<String> = BTreeSet::new();
    // Snapshots first: the chunks they bundle need not be read again.
    for folder in [DocFolder::Snapshots, DocFolder::Archive] {
        for name in replica.list_doc_files(folder, doc_id)? {
            if loaded.applied.contains(&name) || loaded.skipped.contains(&name) {
                continue;
            }
            let path = replica.doc_file_path(folder, doc_id, &name);
            // Why a file is refused is only reported (a warning against the
            // file): its message is all loading keeps.
            let entries = match replica.read_doc_file(folder, doc_id, &name) {
                Ok(bytes) => opener
                    .open_snapshot(doc_id, folder, &name, bytes, &loaded.applied)
                    .map_err(|refusal| refusal.to_string()),
                Err(ReadError::Missing { .. }) => continue,
                Err(e) => Err(read_problem(&e)),
            };
            match entries {
                Ok(entries) => {
                    for (entry, result) in entries {
                        if loaded.applied.contains(&entry)
                            || loaded.skipped.contains(&entry)
                            || queued.contains(&entry)
                        {
                            continue;
                        }
                        let checked =
                            result
                                .map_err(|refusal| refusal.to_string())
                                .and_then(|bytes| {
                                    check_unless(opener.checks_changes(), &bytes)
                                        .map(|()| bytes)
                                        .map_err(|e| format!("not a valid Automerge chunk: {e}"))
                                });
                        match checked {
                            Ok(bytes) => {
                                queued.insert(entry.clone());
                                good.push((entry, bytes));
                            }
                            Err(why) => {
                                warnings.push(StoreWarning {
                                    path: path.join(&entry),
                                    message: format!("refused: {why}; left in place"),
                                });
                                loaded.skipped.insert(entry);
                            }
                        }
                    }
                    loaded.applied.insert(name);
                }
                Err(why) => {
                    warnings.push(StoreWarning {
                        path,
                        message: format!("refused: {why}; left in place"),
                    });
                    loaded.skipped.insert(name);
                }
            }
        }
    }
    for name in replica.list_chunks(doc_id)? {
        if loaded.applied.contains(&name)
            || loaded.skipped.contains(&name)
            || queued.contains(&name)
        {
            continue;
        }
        let path = replica.chunk_path(doc_id, &name);
        match replica.read_chunk(doc_id, &name) {
            Ok(bytes) => match opener.open(doc_id, &name, bytes) {
                Err(why) => {
                    warnings.push(StoreWarning {
                        path,
                        message: format!("refused: {why}; left in place"),
                    });
                    loaded.skipped.insert(name);
                }
                Ok(bytes) => match check_unless(opener.checks_changes(), &bytes) {
                    Ok(()) => good.push((name, bytes)),
                    Err(e) => {
                        warnings.push(StoreWarning {
                            path,
                            message: format!("not a valid Automerge chunk: {e}"),
                        });
                        loaded.skipped.insert(name);
                    }
                },
            },
            Err(
                e @ (ReadError::Corrupt { .. }
                | ReadError::TooLarge { .. }
                | ReadError::Link { .. }
                | ReadError::NotAFile { .. }),
            ) => {
                let repair = if matches!(e, ReadError::Corrupt { .. }) {
                    "; the next sync replaces it by a remote's verified copy"
                } else {
                    ""
                };
                warnings.push(StoreWarning {
                    path,
                    message: format!("{}; left in place{repair}", read_problem(&e)),
                });
                loaded.skipped.insert(name);
            }
            Err(ReadError::Missing { .. }) => {
                // Removed since the listing (compaction): nothing to load.
                tracing::debug!(path = %path.display(), "chunk vanished while loading");
            }
            Err(e) => {
                // Possibly transient (permissions, I/O): try again next refresh.
                warnings.push(StoreWarning {
                    path,
                    message: read_problem(&e),
                });
            }
        }
    }
    if good.is_empty() {
        return Ok((0, warnings));
    }

    let concat: Vec<u8> = good.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let applied = match loaded.doc.load_incremental(&concat) {
        Ok(_) => {
            let n = good.len();
            loaded
                .applied
                .extend(good.into_iter().map(|(name, _)| name));
            n
        }
        Err(e) => {
            tracing::debug!(doc = doc_id, error = %e, chunks = good.len(), "batch load failed, applying chunks one at a time");
            // A failed batch into an empty document leaves it untouched; into
            // a non-empty one it may have applied some changes, which
            // Automerge then ignores as duplicates below.
            let mut n = 0;
            for (name, bytes) in good {
                match loaded.doc.load_incremental(&bytes) {
                    Ok(_) => {
                        loaded.applied.insert(name);
                        n += 1;
                    }
                    Err(e) => {
                        warnings.push(StoreWarning {
                            path: replica.chunk_path(doc_id, &name),
                            message: format!("Automerge refused it: {e}"),
                        });
                        loaded.skipped.insert(name);
                    }
                }
            }
            n
        }
    };
    for w in &warnings {
        tracing::debug!(%w, "chunk skipped");
    }
    Ok((applied, warnings))
}

/// What went wrong reading a file, in a sentence.
fn read_problem(e: &ReadError) -> String {
    match e {
        ReadError::Corrupt {
            expected, actual, ..
        } => format!("corrupt: its content hashes to {actual}, not {expected}"),
        ReadError::TooLarge { size, limit, .. } => {
            format!("{size} bytes, over the limit of {limit} bytes for this kind of file; not read")
        }
        ReadError::Link { .. } => {
            "a symbolic link; bridge never follows links inside a store".to_owned()
        }
        ReadError::NotAFile { .. } => "not a regular file".to_owned(),
        e => match std::error::Error::source(e) {
            Some(cause) => format!("could not read it: {cause}"),
            None => e.to_string(),
        },
    }
}

/// [`check_chunk`], unless the opener checked the changes already.
fn check_unless(checked: bool, bytes: &[u8]) -> Result<(), AutomergeError> {
    if checked { Ok(()) } else { check_chunk(bytes) }
}

/// Checks that `bytes` parse as Automerge chunks on their own. Missing
/// dependencies are fine (they are in other chunk files).
fn check_chunk(bytes: &[u8]) -> Result<(), AutomergeError> {
    let options = LoadOptions::new().on_partial_load(OnPartialLoad::Error);
    match Automerge::load_with_options(bytes, options) {
        Ok(_) | Err(AutomergeError::MissingDeps) => Ok(()),
        Err(e) => Err(e),
    }
}
