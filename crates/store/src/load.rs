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
//! (decrypt and verify, before any parsing), then apply all the good ones
//! in ONE batch (one call per chunk is quadratic in automerge 0.12). If that
//! batch fails, the chunks are applied one at a time and each one Automerge
//! rejects is skipped, so one bad chunk never stops the others. Every
//! skipped file becomes a [`StoreWarning`]; nothing is deleted.
//!
//! An opener hands over either the changes it parsed itself ([`Changes::Parsed`]:
//! the encryption layer parses every change, verifies its checksum and
//! checks its actor before anything is applied), applied as they are, or
//! Automerge bytes ([`Changes::Bytes`]), each chunk first parsed on its own
//! with `OnPartialLoad::Error` and then loaded with `load_incremental`. Why
//! that check: `load_incremental` does not fail on unparsable bytes in the
//! middle of its input. It silently drops everything from the bad chunk on
//! (automerge 0.12 `load_incremental_log_patches`: a `Partial` load is only
//! logged, and into an empty document it uses `OnPartialLoad::Ignore`), so
//! a garbage chunk would hide every chunk after it. Changes parsed once are
//! not parsed again: a second parse was a sixteenth of a cold load (issue
//! 18, item 3).

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use automerge::{AutoCommit, Automerge, AutomergeError, Change, LoadOptions, OnPartialLoad};

use crate::names::DocFolder;
use crate::replica::{ListError, ReadError, Replica};

/// Turns a chunk file's bytes (already checked against its name) into the
/// changes to apply, or refuses it. The encryption layer implements this:
/// decrypt, verify the signature and the writer, and only then parse and
/// hand the changes to Automerge. [`Plain`] passes the bytes through.
pub trait ChunkOpener {
    /// Why a file (or a chunk a snapshot bundles) is refused: the
    /// implementation's own typed error, so that its callers and tests can
    /// match the reason. Loading records its message as a [`StoreWarning`]
    /// against the file, whatever the reason.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens chunk `name` of document `doc`.
    fn open(&self, doc: &str, name: &str, bytes: Vec<u8>) -> Result<Changes, Self::Error>;

    /// Opens snapshot file `name` of document `doc` (in `folder`): the
    /// chunks it bundles, each as its chunk file name and either the
    /// changes to apply or why that chunk is refused. Chunks named
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

/// A chunk inside a snapshot: its file name, and its changes or why it is
/// refused.
pub type OpenedEntry<E> = (String, Result<Changes, E>);

/// The changes of an opened chunk, as its [`ChunkOpener`] hands them over.
#[derive(Debug, Clone)]
pub enum Changes {
    /// Automerge bytes, not parsed yet: loading checks that they parse on
    /// their own before applying them.
    Bytes(Vec<u8>),
    /// Changes the opener parsed, each one's checksum verified: applied as
    /// they are.
    Parsed(Vec<Change>),
}

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

    fn open(&self, _doc: &str, _name: &str, bytes: Vec<u8>) -> Result<Changes, PlainRefusal> {
        Ok(Changes::Bytes(bytes))
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
    let mut good: Vec<(String, Changes)> = Vec::new();
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
                                .and_then(|changes| {
                                    check_parsable(&changes)
                                        .map(|()| changes)
                                        .map_err(|e| format!("not a valid Automerge chunk: {e}"))
                                });
                        match checked {
                            Ok(changes) => {
                                queued.insert(entry.clone());
                                good.push((entry, changes));
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
                Ok(changes) => match check_parsable(&changes) {
                    Ok(()) => good.push((name, changes)),
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

    let applied = match apply_batch(&mut loaded.doc, good.iter().map(|(_, c)| c)) {
        Ok(()) => {
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
            for (name, changes) in good {
                match apply_batch(&mut loaded.doc, std::iter::once(&changes)) {
                    Ok(()) => {
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

/// Applies the changes of `chunks` to `doc`: the parsed ones in one batch,
/// then the bytes in one `load_incremental`.
fn apply_batch<'a>(
    doc: &mut AutoCommit,
    chunks: impl Iterator<Item = &'a Changes> + Clone,
) -> Result<(), AutomergeError> {
    let parsed = chunks.clone().flat_map(|changes| match changes {
        Changes::Parsed(changes) => changes.as_slice(),
        Changes::Bytes(_) => &[],
    });
    // Cloned, not moved: a failed batch is applied again chunk by chunk.
    if parsed.clone().next().is_some() {
        doc.apply_changes(parsed.cloned())?;
    }
    let bytes: Vec<u8> = chunks
        .flat_map(|changes| match changes {
            Changes::Bytes(bytes) => bytes.as_slice(),
            Changes::Parsed(_) => &[],
        })
        .copied()
        .collect();
    if !bytes.is_empty() {
        doc.load_incremental(&bytes)?;
    }
    Ok(())
}

/// [`check_chunk`] for bytes; parsed changes were checked by their opener.
fn check_parsable(changes: &Changes) -> Result<(), AutomergeError> {
    match changes {
        Changes::Bytes(bytes) => check_chunk(bytes),
        Changes::Parsed(_) => Ok(()),
    }
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
