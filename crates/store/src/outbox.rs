//! What this process wrote to its replica and has not pushed yet.
//!
//! Every write path of a [`Replica`](crate::Replica) (chunks, snapshots,
//! archived snapshots, blobs) records the file's store name here, in every
//! clone of the replica at once, and the publisher drains it. One list
//! filled where files are written, instead of one list per kind of writer
//! kept by each writer, so that a new write path cannot forget to publish
//! (outputs were once left unpushed by a runner because its blobs were kept
//! in a second list that one exit path did not drain).
//!
//! The outbox is an optimisation of sync, not a ledger: a sync pushes every
//! file the remote lacks whether or not it is queued here, so files written
//! by another process, or queued by a process that crashed, still land.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::names::BLOBS_DIR;

/// Store names waiting to be pushed: blobs, then document files.
#[derive(Debug, Default)]
pub struct Outbox {
    queued: Mutex<Queued>,
}

#[derive(Debug, Default)]
struct Queued {
    /// Blobs go first: a document file may name a blob, and a replica that
    /// pulled the document before the blob would look for a missing input.
    blobs: Vec<String>,
    /// Chunks and snapshots, in the order they were written.
    docs: Vec<String>,
    /// Every name in `blobs` and `docs` (a name is queued once).
    names: BTreeSet<String>,
}

impl Queued {
    fn push(&mut self, name: String) {
        if self.names.insert(name.clone()) {
            if is_blob(&name) {
                self.blobs.push(name);
            } else {
                self.docs.push(name);
            }
        }
    }
}

fn is_blob(name: &str) -> bool {
    name.strip_prefix(BLOBS_DIR)
        .is_some_and(|rest| rest.starts_with('/'))
}

impl Outbox {
    /// Queues the file `name` (a store name such as `chunks/<doc>/<hash>.chunk`).
    pub fn add(&self, name: String) {
        self.lock().push(name);
    }

    /// Takes everything queued, blobs first, leaving the outbox empty.
    pub fn take(&self) -> Vec<String> {
        let queued = std::mem::take(&mut *self.lock());
        let mut names = queued.blobs;
        names.extend(queued.docs);
        names
    }

    /// Queues `names` again (a push that failed), ahead of what was queued
    /// since they were taken, keeping blobs ahead of document files.
    pub fn put_back(&self, names: Vec<String>) {
        let mut queued = self.lock();
        let newer = std::mem::take(&mut *queued);
        for name in names.into_iter().chain(newer.blobs).chain(newer.docs) {
            queued.push(name);
        }
    }

    /// How many files are queued.
    pub fn len(&self) -> usize {
        self.lock().names.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while the lock is held cannot leave the lists inconsistent
    // with each other in a way that loses a name, so a poisoned lock is used.
    fn lock(&self) -> MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOB: &str = "blobs/aa.blob";
    const CHUNK: &str = "chunks/d1/bb.chunk";
    const SNAP: &str = "snapshots/d1/cc.snap";

    #[test]
    fn blobs_leave_before_the_documents_that_name_them() {
        let outbox = Outbox::default();
        outbox.add(CHUNK.into());
        outbox.add(BLOB.into());
        outbox.add(SNAP.into());
        assert_eq!(outbox.len(), 3);
        assert_eq!(outbox.take(), vec![BLOB, CHUNK, SNAP]);
        assert!(outbox.is_empty());
        assert!(outbox.take().is_empty());
    }

    #[test]
    fn a_name_is_queued_once() {
        let outbox = Outbox::default();
        outbox.add(CHUNK.into());
        outbox.add(CHUNK.into());
        assert_eq!(outbox.take(), vec![CHUNK]);
        // Once taken, writing it again queues it again.
        outbox.add(CHUNK.into());
        assert_eq!(outbox.len(), 1);
    }

    #[test]
    fn a_failed_push_goes_back_ahead_of_newer_files() {
        let outbox = Outbox::default();
        outbox.add(CHUNK.into());
        let in_flight = outbox.take();
        outbox.add(SNAP.into());
        outbox.add("blobs/dd.blob".into());
        outbox.add(CHUNK.into());
        outbox.put_back(in_flight);
        assert_eq!(outbox.take(), vec!["blobs/dd.blob", CHUNK, SNAP]);
    }

    #[test]
    fn only_the_blobs_folder_holds_blobs() {
        assert!(is_blob(BLOB));
        assert!(!is_blob("blobsx/aa.blob"));
        assert!(!is_blob(CHUNK));
    }
}
