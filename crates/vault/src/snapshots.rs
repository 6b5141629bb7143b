//! Snapshot files: a document's chunks bundled by whoever compacted, each
//! chunk still under its own writer's signature (see [`crate::snapshot`]
//! for the payload). Opening one verifies the file, then every bundled
//! chunk as if it were a chunk file; what a verified snapshot holds is
//! remembered per process, for compaction's "this file is redundant".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bridge_crypto::{Domain, Expect, open_verified_with, verify_signed};
use bridge_store::DocFolder;
use sha2::{Digest, Sha256};

use crate::{Refusal, Vault, snapshot};

/// A snapshot entry as read: chunk file name, signed envelope, and its
/// changes or why it is refused.
pub(crate) type CheckedEntry = (String, Vec<u8>, Result<Vec<automerge::Change>, Refusal>);

/// What a verified snapshot bundles: chunk file name → sha256 of its signed
/// envelope.
pub type SnapshotIndex = BTreeMap<String, [u8; 32]>;

impl Vault {
    /// Opens a snapshot file: every bundled chunk's name, signed envelope,
    /// and changes or why it is refused.
    pub(crate) fn open_snapshot_entries(
        &self,
        doc: &str,
        folder: DocFolder,
        name: &str,
        sealed: &[u8],
        known: &BTreeSet<String>,
    ) -> Result<Vec<CheckedEntry>, Refusal> {
        let entries = self.snapshot_entries(doc, folder, name, sealed)?;
        let mut out = Vec::with_capacity(entries.len());
        for (entry, signed) in entries {
            if known.contains(&entry) {
                // Applied already (from its chunk file, or a cached state):
                // its bytes are kept for the index, not verified again.
                out.push((entry, signed, Ok(Vec::new())));
                continue;
            }
            let chunk_file = DocFolder::Chunks.store_name(doc, &entry);
            let result = verify_signed(
                &self.roster,
                signed.clone(),
                &chunk_file,
                self.expect_chunk(doc),
            )
            .map_err(Refusal::from)
            // A removed member's entry passed `check_writer`: its
            // envelope is one their removal accepted.
            .and_then(|(opened, member)| self.accept_changes(&opened, &member));
            out.push((entry, signed, result));
        }
        Ok(out)
    }

    /// Every entry of snapshot file `name` of `doc` (the file itself
    /// verified), as chunk file name and signed envelope, whether or not
    /// each entry verifies here: a compaction carries them all over.
    pub fn snapshot_entries(
        &self,
        doc: &str,
        folder: DocFolder,
        name: &str,
        sealed: &[u8],
    ) -> Result<Vec<snapshot::Entry>, Refusal> {
        let file = folder.store_name(doc, name);
        let expect = Expect {
            domain: Domain::Snapshot,
            workspace: &self.workspace,
            document: Some(doc),
        };
        let (opened, _) = open_verified_with(&self.data_keys, &self.roster, sealed, &file, expect)?;
        Ok(snapshot::decode(&opened.payload)?)
    }

    /// The content of snapshot `name` of `doc` (in `folder`, the file
    /// itself verified):
    /// each bundled chunk's name and the sha256 of its signed envelope.
    /// Opened once per process; `None` if it cannot be read or verified.
    pub fn snapshot_index(
        &self,
        folder: DocFolder,
        doc: &str,
        name: &str,
    ) -> Option<Arc<SnapshotIndex>> {
        let key = folder.store_name(doc, name);
        if let Some(index) = self.lock_indexes().get(&key) {
            return Some(Arc::clone(index));
        }
        let sealed = self.replica.read_doc_file(folder, doc, name).ok()?;
        let entries = self
            .open_snapshot_entries(doc, folder, name, &sealed, &BTreeSet::new())
            .ok()?;
        Some(self.remember_snapshot(key, &entries))
    }

    pub(crate) fn remember_snapshot(
        &self,
        key: String,
        entries: &[CheckedEntry],
    ) -> Arc<SnapshotIndex> {
        // Every entry, verified here or not: "this snapshot holds that one"
        // compares all of them, and a chunk file is matched by digest with
        // its own envelope, which this device verified.
        let index: SnapshotIndex = entries
            .iter()
            .map(|(entry, signed, _)| (entry.clone(), Sha256::digest(signed).into()))
            .collect();
        let index = Arc::new(index);
        self.lock_indexes().insert(key, Arc::clone(&index));
        index
    }

    fn lock_indexes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SnapshotIndex>>> {
        self.snapshot_indexes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The sha256 of the signed envelope in local chunk file `name` of
    /// `doc`, if it decrypts and verifies (remembered per process: files
    /// never change).
    pub fn chunk_digest(&self, doc: &str, name: &str) -> Option<[u8; 32]> {
        let key = DocFolder::Chunks.store_name(doc, name);
        if let Some(d) = self.lock_digests().get(&key) {
            return Some(*d);
        }
        let sealed = self.replica.read_chunk(doc, name).ok()?;
        let opened = self.signed_chunk(doc, name, &sealed).ok()?;
        let digest: [u8; 32] = Sha256::digest(opened.signed_bytes()).into();
        self.lock_digests().insert(key, digest);
        Some(digest)
    }

    fn lock_digests(&self) -> std::sync::MutexGuard<'_, HashMap<String, [u8; 32]>> {
        self.chunk_digests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
