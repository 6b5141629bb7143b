//! Compaction: one snapshot per document in place of its many chunk files,
//! and the rules that decide which files a snapshot makes redundant.
//!
//! A snapshot bundles the signed envelopes of a document's chunks (see
//! `snapshot`). A file is redundant only when this device has *proved*
//! that a snapshot it holds contains it:
//!
//! - a chunk file, when a snapshot bundles an envelope under the same name
//!   whose bytes hash to the same sha256 as the chunk's own envelope, which
//!   this device decrypted and verified;
//! - a snapshot, when another snapshot of the same document bundles every
//!   one of its entries (same name, same digest), with a fixed tie-break
//!   when two bundle exactly the same (archived beats live, then the lower
//!   file name), so that two devices never delete each other's copy.
//!
//! Redundant files are neither pulled nor pushed by a sync (a device that
//! missed a compaction does not bring back what it removed), and are
//! deleted from the replica once the snapshot holding them is there. A
//! chunk whose name a snapshot bundles with *other* content is kept and
//! pushed: whatever a compactor claims, nothing this device holds is lost.
//!
//! One thing is taken on a snapshot's word: a remote chunk that no local
//! file matches but whose name a verified local snapshot bundles is not
//! pulled (it is a leftover a compaction has yet to remove). A member with
//! push access could use that to hide a chunk from devices that never
//! pulled it; such a member could delete the chunk from the remote anyway.
//!
//! Order of a compaction: write the snapshot (atomic, fsynced), then delete
//! what it holds; on a remote: push the snapshot, check it is listed, then
//! remove what it holds. A writer active meanwhile adds chunks the
//! snapshot does not name, which stay. So compaction is safe to run while
//! runners drain the pool.

use std::collections::{BTreeMap, BTreeSet};

use bridge_store::{DocFolder, ListError, Remote, RemoteError, Replica, SyncError, WriteError};
use sha2::{Digest, Sha256};

use crate::snapshot::Entry;
use crate::sync::sync_store;
use crate::vault::{SnapshotIndex, Vault, is_reserved_doc};

/// Why a compaction stopped. Automatic compaction logs it and goes on.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The replica's documents cannot be listed.
    #[error("cannot list the documents")]
    ListDocs(#[source] ListError),
    /// A document's chunks cannot be listed.
    #[error("cannot list the chunks of {doc}")]
    ListChunks {
        /// The document.
        doc: String,
        /// Why.
        #[source]
        source: ListError,
    },
    /// A document's snapshots cannot be listed.
    #[error("cannot list the snapshots of {doc}")]
    ListSnapshots {
        /// The document.
        doc: String,
        /// Why.
        #[source]
        source: ListError,
    },
    /// The files an existing snapshot holds cannot be removed.
    #[error("cannot remove the files of {doc} its snapshot holds")]
    RemoveHeld {
        /// The document.
        doc: String,
        /// Why.
        #[source]
        source: WriteError,
    },
    /// The files the new snapshot holds cannot be removed.
    #[error("cannot remove the files of {doc} the snapshot holds")]
    RemoveBundled {
        /// The document.
        doc: String,
        /// Why.
        #[source]
        source: WriteError,
    },
    /// The vault cannot seal the snapshot.
    #[error(transparent)]
    Seal(#[from] bridge_vault::SealError),
    /// The snapshot cannot be written.
    #[error("cannot write a snapshot of {doc}")]
    WriteSnapshot {
        /// The document.
        doc: String,
        /// Why.
        #[source]
        source: WriteError,
    },
    /// The sync before compacting failed (not for being offline).
    #[error("cannot sync before compacting")]
    SyncBefore(#[source] SyncError),
    /// The snapshots cannot be pushed.
    #[error("cannot push the snapshots")]
    PushSnapshots(#[source] SyncError),
    /// The remote cannot be listed after the push.
    #[error("cannot list the remote after pushing the snapshots")]
    ListRemote(#[source] RemoteError),
    /// Files cannot be removed from the remote.
    #[error("cannot remove compacted files from the remote")]
    RemoveRemote(#[source] RemoteError),
    /// The remote's packs of small blobs cannot be merged.
    #[error("cannot merge the remote's packs of small blobs")]
    Repack(#[source] RemoteError),
}

/// A live document is due for automatic compaction when it has at least
/// this many chunk files.
pub const AUTO_CHUNKS_PER_DOC: usize = 32;

/// On a runner (`bridge run`), automatic compaction at the end of a run
/// handles at most this many documents, and only with this much budget
/// left: it must stay cheap next to the tasks.
pub const RUNNER_MAX_DOCS: usize = 8;

/// What compacting one document did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DocOutcome {
    /// The document.
    pub document: String,
    /// The snapshot that holds the document now (store name).
    pub snapshot: Option<String>,
    /// Whether this run wrote it.
    pub written: bool,
    /// Chunks bundled into it (from chunk files and older snapshots).
    pub chunks: usize,
    /// Files it made redundant (chunks and older snapshots).
    pub redundant: Vec<String>,
    /// Bytes of the document's files before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// Chunk files left as they are (unreadable or refused here, or a name
    /// bundled elsewhere with other content).
    pub kept: usize,
}

/// The live documents with at least `min_chunks` chunk files (the roster
/// and the audience grants are never compacted: they are read before any
/// key is known; nor is a private batch this device cannot read, whose
/// files it could neither bundle nor prove redundant: issue 13).
pub fn due_docs(
    vault: &Vault,
    replica: &Replica,
    min_chunks: usize,
) -> Result<Vec<String>, CompactError> {
    let mut due = Vec::new();
    for doc in replica.list_docs().map_err(CompactError::ListDocs)? {
        if is_reserved_doc(&doc) || vault.is_foreign_doc(&doc) {
            continue;
        }
        let chunks = replica
            .list_chunks(&doc)
            .map_err(|source| CompactError::ListChunks {
                doc: doc.to_owned(),
                source,
            })?
            .len();
        let snapshots = replica
            .list_doc_files(DocFolder::Snapshots, &doc)
            .map_err(|source| CompactError::ListSnapshots {
                doc: doc.to_owned(),
                source,
            })?
            .len();
        if chunks >= min_chunks.max(1) || snapshots > 1 {
            due.push(doc);
        }
    }
    Ok(due)
}

/// Writes one snapshot of `doc` into `into` (live snapshots, or the
/// archive) bundling every chunk and snapshot entry of the document this
/// device can read, then deletes the files it made redundant. Nothing is
/// written when the document is already one snapshot in `into` and no
/// chunk.
#[expect(
    clippy::too_many_lines,
    reason = "one document's compaction in order: read, check, seal, write, list what became redundant"
)]
pub fn compact_doc(
    vault: &Vault,
    replica: &Replica,
    doc: &str,
    into: DocFolder,
) -> Result<DocOutcome, CompactError> {
    let mut out = DocOutcome {
        document: doc.to_owned(),
        ..DocOutcome::default()
    };
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut sources: Vec<String> = Vec::new();
    // The size of each source, by store name.
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    // Chunk files whose envelope no snapshot bundles yet.
    let mut new_chunks = 0;
    // The snapshots in `into`: store name, and each entry's digest.
    let mut in_into: Vec<(String, BTreeMap<String, [u8; 32]>)> = Vec::new();
    for folder in [DocFolder::Snapshots, DocFolder::Archive] {
        for name in
            replica
                .list_doc_files(folder, doc)
                .map_err(|source| CompactError::ListSnapshots {
                    doc: doc.to_owned(),
                    source,
                })?
        {
            let store_name = folder.store_name(doc, &name);
            let Ok(sealed) = replica.read_doc_file(folder, doc, &name) else {
                continue;
            };
            out.bytes_before += sealed.len() as u64;
            match vault.snapshot_entries(doc, folder, &name, &sealed) {
                Ok(bundled) => {
                    let mut digests = BTreeMap::new();
                    for (entry, signed) in bundled {
                        if folder == into {
                            digests.insert(entry.clone(), Sha256::digest(&signed).into());
                        }
                        entries.entry(entry).or_insert(signed);
                    }
                    if folder == into {
                        in_into.push((store_name.clone(), digests));
                    }
                    sizes.insert(store_name.clone(), sealed.len() as u64);
                    sources.push(store_name);
                }
                Err(why) => {
                    tracing::warn!("compaction left {store_name} as it is: {why}");
                    out.bytes_after += sealed.len() as u64;
                }
            }
        }
    }
    for name in replica
        .list_chunks(doc)
        .map_err(|source| CompactError::ListChunks {
            doc: doc.to_owned(),
            source,
        })?
    {
        let store_name = DocFolder::Chunks.store_name(doc, &name);
        let Ok(sealed) = replica.read_chunk(doc, &name) else {
            out.kept += 1;
            continue;
        };
        out.bytes_before += sealed.len() as u64;
        let opened = match vault.signed_chunk(doc, &name, &sealed) {
            // A removed member's chunk verifies only if their removal
            // accepted its envelope, which stays accepted inside a snapshot.
            Ok(o) => o,
            Err(_) => {
                out.kept += 1;
                out.bytes_after += sealed.len() as u64;
                continue;
            }
        };
        let signed = opened.signed_bytes();
        match entries.get(&name) {
            Some(existing) if *existing != signed => {
                tracing::warn!(
                    "compaction kept {store_name}: a snapshot bundles other content under its name"
                );
                out.kept += 1;
                out.bytes_after += sealed.len() as u64;
                continue;
            }
            Some(_) => {}
            None => new_chunks += 1,
        }
        entries.insert(name, signed);
        sizes.insert(store_name.clone(), sealed.len() as u64);
        sources.push(store_name);
        out.chunks += 1;
    }
    if entries.is_empty() {
        out.bytes_after = out.bytes_before;
        return Ok(out);
    }
    // A snapshot in `into` that already bundles every entry (same names,
    // same content) stays, and the other files are copies of its entries.
    // A new snapshot with the same entries would not do: of two snapshots
    // holding the same entries every device keeps the lower name (see
    // `redundant`), so the new one could be dropped before it reaches the
    // remote, and nothing would be removed there, run after run. Of
    // several such snapshots, the lower name stays, as in `redundant`.
    let holder = (new_chunks == 0)
        .then(|| {
            in_into
                .iter()
                .filter(|(_, digests)| {
                    digests.len() == entries.len()
                        && digests.iter().all(|(entry, digest)| {
                            entries.get(entry).is_some_and(|signed| {
                                <[u8; 32]>::from(Sha256::digest(signed)) == *digest
                            })
                        })
                })
                .map(|(store_name, _)| store_name.clone())
                .min()
        })
        .flatten();
    if let Some(holder) = holder {
        out.redundant = sources.into_iter().filter(|s| *s != holder).collect();
        out.bytes_after = out.bytes_before
            - out
                .redundant
                .iter()
                .map(|s| sizes.get(s).copied().unwrap_or(0))
                .sum::<u64>();
        out.chunks = 0;
        out.snapshot = Some(holder);
        replica
            .remove_store_files(&out.redundant)
            .map_err(|source| CompactError::RemoveHeld {
                doc: doc.to_owned(),
                source,
            })?;
        return Ok(out);
    }
    let list: Vec<Entry> = entries.into_iter().collect();
    let sealed = vault.seal_snapshot(doc, &list)?;
    let name = replica
        .write_doc_file(into, doc, &sealed)
        .map_err(|source| CompactError::WriteSnapshot {
            doc: doc.to_owned(),
            source,
        })?;
    let written = into.store_name(doc, &name);
    out.bytes_after += sealed.len() as u64;
    out.redundant = sources.into_iter().filter(|s| *s != written).collect();
    out.snapshot = Some(written);
    out.written = true;
    out.chunks = list.len();
    replica
        .remove_store_files(&out.redundant)
        .map_err(|source| CompactError::RemoveBundled {
            doc: doc.to_owned(),
            source,
        })?;
    Ok(out)
}

/// The store names this device has proved redundant (see the module
/// docs): local chunks and snapshots a local snapshot holds, and, with
/// `remote_names`, the remote's chunks that a verified local snapshot
/// bundles under the same name (not worth pulling; they are removed from
/// the remote only by a compaction that pulled and compared them).
pub fn redundant(
    vault: &Vault,
    replica: &Replica,
    remote_names: Option<&BTreeSet<String>>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut docs: BTreeSet<String> = BTreeSet::new();
    for folder in [DocFolder::Snapshots, DocFolder::Archive] {
        docs.extend(replica.list_docs_in(folder).unwrap_or_default());
    }
    for doc in docs {
        if is_reserved_doc(&doc) {
            continue;
        }
        let local: BTreeSet<String> = replica
            .list_chunks(&doc)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let prefix = format!("{}/{doc}/", DocFolder::Chunks.dir());
        let remote_only: Vec<&String> = remote_names
            .map(|remote| {
                remote
                    .range(prefix.clone()..)
                    .take_while(|n| n.starts_with(&prefix))
                    .filter(|n| !local.contains(&n[prefix.len()..]))
                    .collect()
            })
            .unwrap_or_default();
        let files: Vec<(DocFolder, String)> = [DocFolder::Archive, DocFolder::Snapshots]
            .into_iter()
            .flat_map(|folder| {
                replica
                    .list_doc_files(folder, &doc)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |name| (folder, name))
            })
            .collect();
        // One snapshot and no chunk anywhere: nothing to decide, and no
        // need to open it (a fresh runner on a compacted store has a
        // hundred of these).
        if files.len() <= 1 && local.is_empty() && remote_only.is_empty() {
            continue;
        }
        let mut snaps: Vec<(DocFolder, String, std::sync::Arc<SnapshotIndex>)> = Vec::new();
        for (folder, name) in files {
            if let Some(index) = vault.snapshot_index(folder, &doc, &name) {
                snaps.push((folder, name, index));
            }
        }
        if snaps.is_empty() {
            continue;
        }
        // Snapshots held whole by a preferred other one.
        for (i, (folder, name, index)) in snaps.iter().enumerate() {
            let held = snaps.iter().enumerate().any(|(j, (f2, n2, other))| {
                i != j
                    && index.iter().all(|(e, d)| other.get(e) == Some(d))
                    && (other.len() > index.len()
                        || (rank(*f2), n2.as_str()) < (rank(*folder), name.as_str()))
            });
            if held {
                out.insert(folder.store_name(&doc, name));
            }
        }
        let bundled = |entry: &str| snaps.iter().any(|(_, _, ix)| ix.contains_key(entry));
        for name in &local {
            if !bundled(name) {
                continue;
            }
            if let Some(digest) = vault.chunk_digest(&doc, name)
                && snaps.iter().any(|(_, _, ix)| ix.get(name) == Some(&digest))
            {
                out.insert(DocFolder::Chunks.store_name(&doc, name));
            }
        }
        for store_name in remote_only {
            if bundled(&store_name[prefix.len()..]) {
                out.insert(store_name.clone());
            }
        }
    }
    out
}

/// Which of two snapshots holding the same entries stays: the archived
/// one (the document was archived), then the lower file name.
fn rank(folder: DocFolder) -> u8 {
    match folder {
        DocFolder::Archive => 0,
        DocFolder::Snapshots | DocFolder::Chunks => 1,
    }
}

/// What a compaction run did, over every document it handled.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// One entry per document handled.
    pub documents: Vec<DocOutcome>,
    /// Files removed from the remote.
    pub remote_removed: usize,
    /// Redundant files the remote still holds (a writer pushed during the
    /// removal); the next compaction removes them.
    pub remote_left: usize,
    /// Why the remote was not used, if it was not.
    pub offline: Option<String>,
    /// Packs of small blobs merged into larger ones on the remote (an
    /// explicit compaction of every document only).
    pub packs_merged: usize,
}

impl Report {
    /// Snapshots written.
    pub fn snapshots(&self) -> usize {
        self.documents.iter().filter(|d| d.written).count()
    }

    /// Files made redundant, locally.
    pub fn redundant(&self) -> usize {
        self.documents.iter().map(|d| d.redundant.len()).sum()
    }
}

/// Compacts documents of the replica (every one with a chunk beyond its
/// snapshot, or exactly `only`) into snapshots in `into` and, with a
/// remote, brings the remote along: pull everything (bundled leftovers included,
/// to compare them), compact, push the snapshots, check they are listed,
/// then remove from the remote what they provably hold.
pub fn run(
    vault: &Vault,
    replica: &Replica,
    remote: Option<&dyn Remote>,
    into: DocFolder,
    only: Option<&BTreeSet<String>>,
) -> Result<Report, CompactError> {
    let mut report = Report::default();
    let mut remote = remote;
    if let Some(r) = remote
        && let Err(e) = sync_store(vault, replica, r, &mut |_| {}, true)
    {
        match e {
            SyncError::Remote(e) if e.is_remote_wide() => {
                report.offline = Some(format!("{e}"));
                remote = None;
            }
            e => return Err(CompactError::SyncBefore(e)),
        }
    }
    let docs = match only {
        Some(only) => only.iter().cloned().collect(),
        None => due_docs(vault, replica, 1)?,
    };
    for doc in docs {
        if is_reserved_doc(&doc) || vault.is_foreign_doc(&doc) {
            continue;
        }
        let outcome = compact_doc(vault, replica, &doc, into)?;
        if outcome.written || !outcome.redundant.is_empty() {
            report.documents.push(outcome);
        }
    }
    if let Some(r) = remote {
        remove_from_remote(vault, replica, r, &mut report)?;
        // Not in automatic runs: merging costs a push and a removal, which
        // a runner's push budget keeps for results.
        if only.is_none() && report.offline.is_none() {
            report.packs_merged = r.repack().map_err(CompactError::Repack)?;
        }
    }
    Ok(report)
}

/// Pushes the new snapshots, then removes from the remote the files they
/// hold, for every document whose snapshot the remote now lists.
fn remove_from_remote(
    vault: &Vault,
    replica: &Replica,
    remote: &dyn Remote,
    report: &mut Report,
) -> Result<(), CompactError> {
    if report.documents.is_empty() {
        return Ok(());
    }
    // Not `pull_covered`: the files just compacted are still on the remote
    // (they go below) and must not be pulled back into the replica.
    match sync_store(vault, replica, remote, &mut |_| {}, false) {
        Ok(_) => {}
        Err(SyncError::Remote(e)) if e.is_remote_wide() => {
            report.offline = Some(format!("{e}"));
            return Ok(());
        }
        Err(e) => return Err(CompactError::PushSnapshots(e)),
    }
    let listed = remote.list().map_err(CompactError::ListRemote)?;
    let mut names: Vec<String> = Vec::new();
    for d in &report.documents {
        if d.snapshot.as_ref().is_some_and(|s| listed.contains(s)) {
            names.extend(d.redundant.iter().filter(|n| listed.contains(*n)).cloned());
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    let left = remote.remove(&names).map_err(CompactError::RemoveRemote)?;
    report.remote_removed = names.len() - left;
    report.remote_left = left;
    Ok(())
}

/// Automatic compaction after a sync or a run: only when some document is
/// past [`AUTO_CHUNKS_PER_DOC`], at most `max_docs` documents among those
/// `pick` accepts (runners split the documents by shard, so a fleet ending
/// together does not compact the same ones), and never an error (a failure
/// is a warning; the next run tries again).
pub fn auto(
    vault: &Vault,
    replica: &Replica,
    remote: Option<&dyn Remote>,
    max_docs: usize,
    pick: &dyn Fn(&str) -> bool,
) {
    let due: BTreeSet<String> = match due_docs(vault, replica, AUTO_CHUNKS_PER_DOC) {
        Ok(due) => due.into_iter().filter(|d| pick(d)).take(max_docs).collect(),
        Err(e) => {
            tracing::debug!(
                "automatic compaction skipped: {}",
                crate::files::with_causes(&e)
            );
            return;
        }
    };
    if due.is_empty() {
        return;
    }
    match run(vault, replica, remote, DocFolder::Snapshots, Some(&due)) {
        Ok(r) => tracing::info!(
            documents = r.documents.len(),
            files = r.redundant(),
            remote_removed = r.remote_removed,
            "compacted automatically"
        ),
        Err(e) => tracing::warn!(
            "automatic compaction failed (it will be tried again): {}",
            crate::files::with_causes(&e)
        ),
    }
}

#[cfg(test)]
mod tests {
    //! The redundancy rules: which files a snapshot makes redundant, and
    //! what is never deleted.

    use automerge::transaction::Transactable as _;
    use bridge_crypto::{Identity, Roster};
    use bridge_model::{BatchId, DocId, WriterId};

    use super::*;

    pub(crate) struct Fixture {
        _tmp: tempfile::TempDir,
        pub vault: Vault,
        pub replica: Replica,
        pub doc: String,
        n: u8,
    }

    impl Fixture {
        pub(crate) fn new() -> Fixture {
            let tmp = tempfile::tempdir().expect("a temp folder");
            let identity = Identity::generate().expect("a key");
            let (roster, _) = Roster::genesis(&identity, "me", "ws", 1).expect("a roster");
            let replica = Replica::init(&tmp.path().join("store"), "ws").expect("a replica");
            let vault = Vault::new(replica.clone(), identity, roster);
            let doc = DocId::new(BatchId::new(1_000, [7; 10]), 0).to_string();
            Fixture {
                _tmp: tmp,
                vault,
                replica,
                doc,
                n: 0,
            }
        }

        /// Writes one signed chunk of the document; returns its file name.
        pub(crate) fn chunk(&mut self) -> String {
            self.n += 1;
            let tag = crate::vault::member_tag(self.vault.identity().member_id());
            let writer = WriterId::new(1_000, tag, [self.n; 8]);
            self.vault.bind_own_actor(&writer.actor());
            let mut d = automerge::AutoCommit::new();
            d.set_actor(writer.actor());
            d.put(automerge::ROOT, "n", i64::from(self.n))
                .expect("a change");
            d.commit();
            let change = d
                .get_last_local_change()
                .expect("the change")
                .raw_bytes()
                .to_vec();
            let sealed = self
                .vault
                .seal_chunk(&self.doc, &writer.actor(), &[change])
                .unwrap_or_else(|e| panic!("{e}"));
            self.replica
                .write_chunk(&self.doc, &sealed)
                .expect("written")
        }

        fn chunk_file(&self, name: &str) -> String {
            DocFolder::Chunks.store_name(&self.doc, name)
        }

        fn compact(&self, into: DocFolder) -> DocOutcome {
            compact_doc(&self.vault, &self.replica, &self.doc, into).expect("compacted")
        }
    }

    #[test]
    fn a_snapshot_makes_the_chunks_it_bundles_redundant_and_removes_them() {
        let mut f = Fixture::new();
        let names: Vec<String> = (0..3).map(|_| f.chunk()).collect();
        assert!(redundant(&f.vault, &f.replica, None).is_empty());
        let out = f.compact(DocFolder::Snapshots);
        assert!(out.written);
        assert_eq!(out.chunks, 3);
        let want: BTreeSet<String> = names.iter().map(|n| f.chunk_file(n)).collect();
        assert_eq!(out.redundant.iter().cloned().collect::<BTreeSet<_>>(), want);
        assert!(f.replica.list_chunks(&f.doc).expect("listed").is_empty());
        // Already one snapshot and no chunk: nothing is written again.
        let again = f.compact(DocFolder::Snapshots);
        assert!(!again.written && again.redundant.is_empty());
    }

    #[test]
    fn a_chunk_written_after_the_snapshot_is_never_redundant() {
        let mut f = Fixture::new();
        f.chunk();
        f.compact(DocFolder::Snapshots);
        let late = f.chunk();
        let found = redundant(&f.vault, &f.replica, None);
        assert!(!found.contains(&f.chunk_file(&late)), "{found:?}");
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn remote_chunks_are_skipped_only_when_a_local_snapshot_bundles_their_name() {
        let mut f = Fixture::new();
        let bundled = f.chunk();
        f.compact(DocFolder::Snapshots);
        let unknown = f.chunk_file("0123456789abcdef0123456789abcdef0123456789abcdef01234567");
        let remote: BTreeSet<String> = [f.chunk_file(&bundled), unknown.clone()].into();
        let found = redundant(&f.vault, &f.replica, Some(&remote));
        assert!(found.contains(&f.chunk_file(&bundled)), "{found:?}");
        assert!(!found.contains(&unknown), "{found:?}");
    }

    #[test]
    fn archiving_makes_the_live_snapshot_redundant_and_keeps_the_archived_one() {
        let mut f = Fixture::new();
        f.chunk();
        f.chunk();
        let live = f
            .compact(DocFolder::Snapshots)
            .snapshot
            .expect("a snapshot");
        let archived = f.compact(DocFolder::Archive);
        let kept = archived.snapshot.clone().expect("an archived snapshot");
        assert!(archived.written);
        assert_eq!(archived.redundant, vec![live]);
        assert!(kept.starts_with(DocFolder::Archive.dir()));
        assert!(redundant(&f.vault, &f.replica, None).is_empty());
    }

    #[test]
    fn the_roster_and_the_audience_grants_are_never_due() {
        let mut f = Fixture::new();
        for _ in 0..3 {
            f.chunk();
        }
        f.replica
            .write_chunk(crate::vault::ROSTER_DOC, b"not compacted")
            .expect("written");
        let due = due_docs(&f.vault, &f.replica, 1).expect("listed");
        assert_eq!(due, vec![f.doc.clone()]);
        assert!(
            due_docs(&f.vault, &f.replica, 4)
                .expect("listed")
                .is_empty()
        );
    }
}
