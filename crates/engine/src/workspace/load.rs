//! Loading documents: one document held in memory ([`OpenDoc`]), read
//! from this device's cache and whatever files arrived since, or from its
//! files; free of the session so that several load in parallel.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use automerge::AutoCommit;
use bridge_model::DocId;
use bridge_model::doc::{self, BatchHeader, TaskRecord};
use bridge_store::{LoadedDoc, Replica};

use super::LoadError;
use crate::cache;
use crate::vault::Vault;

/// One document held in memory.
pub(super) struct OpenDoc {
    pub(super) loaded: LoadedDoc,
    pub(super) header: Option<BatchHeader>,
    /// Our own changes since the last flush, as raw change bytes.
    pub(super) unflushed: Vec<Vec<u8>>,
    /// Whether this process's actor has been set on the document.
    pub(super) actor_set: bool,
    /// How many store files the document held when its cache was last
    /// written or read (0: none).
    pub(super) cached_files: usize,
    /// Where `loaded.doc` still has to be read and parsed from (a
    /// document taken from this device's cache, or cached and dropped
    /// since, and unchanged: `loaded.doc` is empty until
    /// [`OpenDoc::materialize`]).
    pub(super) lazy: Option<cache::Reload>,
    /// The tasks the cache held, until they go into the view.
    pub(super) cached_records: Option<Vec<TaskRecord>>,
    /// Warnings about the document's refused files, kept for its cache.
    pub(super) warnings: Vec<bridge_store::StoreWarning>,
}

impl OpenDoc {
    pub(super) fn empty() -> OpenDoc {
        OpenDoc {
            loaded: LoadedDoc {
                doc: AutoCommit::new(),
                applied: BTreeSet::new(),
                skipped: BTreeSet::new(),
            },
            header: None,
            unflushed: Vec::new(),
            actor_set: false,
            cached_files: 0,
            lazy: None,
            cached_records: None,
            warnings: Vec::new(),
        }
    }

    pub(super) fn cached(c: cache::Cached) -> OpenDoc {
        OpenDoc {
            cached_files: c.applied.len() + c.skipped.len(),
            loaded: LoadedDoc {
                doc: AutoCommit::new(),
                applied: c.applied,
                skipped: c.skipped,
            },
            header: Some(c.header),
            lazy: Some(c.reload),
            cached_records: Some(c.records),
            warnings: c.warnings,
            ..OpenDoc::empty()
        }
    }

    /// Drops the parsed document, to be read and parsed again (as
    /// `reload` says: just cached, so the same) only if a change or a new
    /// file needs it: a command that reads the whole pool would otherwise
    /// hold every document's Automerge state besides its tasks, most of a
    /// cold `bridge status`'s peak memory (issue 18, item 3).
    fn release(&mut self, reload: cache::Reload) {
        self.loaded.doc = AutoCommit::new();
        self.lazy = Some(reload);
        // The parsed document carried this process's actor: the one
        // parsed again must be given it again.
        self.actor_set = false;
    }

    /// Reads and parses the saved state, if not done yet. Without one, or
    /// with one that is gone or does not parse, the document is to be read
    /// from its files, and this returns false (the document is empty until
    /// then).
    pub(super) fn materialize(&mut self, vault: &Vault) -> bool {
        let Some(reload) = self.lazy.take() else {
            return true;
        };
        self.cached_records = None;
        let applied = std::mem::take(&mut self.loaded.applied);
        let skipped = std::mem::take(&mut self.loaded.skipped);
        let state = match reload {
            cache::Reload::State(state) => Some(state),
            cache::Reload::Files => None,
        };
        match state
            .and_then(|state| state.read(vault))
            .and_then(|saved| cache::materialize(&saved, applied, skipped))
        {
            Some(loaded) => {
                self.loaded = loaded;
                true
            }
            None => {
                self.cached_files = 0;
                self.header = None;
                false
            }
        }
    }

    /// [`materialize`](Self::materialize), and when the saved state was
    /// dropped, the document read from its store files at once (before a
    /// change is made to it).
    pub(super) fn materialize_or_read(&mut self, vault: &Vault, replica: &Replica, name: &str) {
        if self.materialize(vault) {
            return;
        }
        match bridge_store::refresh_doc(replica, name, &mut self.loaded, vault) {
            Ok(_) => self.header = doc::read_header(&self.loaded.doc).ok(),
            Err(e) => tracing::warn!("cannot read document {name} again: {e}"),
        }
    }
}

/// How [`read_open_doc`] leaves a document it caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterCache {
    /// Parsed, its state saved with the cache: a document this process
    /// keeps changing.
    Keep,
    /// Dropped for its saved state ([`OpenDoc::release`]).
    Release,
    /// Dropped, its state not saved: parsed again from its store files if
    /// it changes ([`cache::Reload::Files`]).
    ReleaseUnsaved,
}

/// Reads the tasks of a document held in memory (parsing a lazy one) and
/// caches it when `save_to` is given, leaving it as `after` says, except
/// that a document holding unfinished tasks stays parsed while the budget
/// `keep_unfinished` of such tasks lasts (it is taken from: this process is
/// about to change the document, see [`LoadPlan::Work`](super::LoadPlan::Work)).
/// `None` while its genesis change has not arrived. Free of `Session` so
/// that documents load in parallel.
pub(super) fn read_open_doc(
    vault: &Vault,
    id: &DocId,
    open: &mut OpenDoc,
    save_to: Option<&Path>,
    after: AfterCache,
    keep_unfinished: Option<&AtomicUsize>,
) -> Option<(BatchHeader, Vec<TaskRecord>, Vec<doc::Problem>)> {
    open.materialize(vault);
    if open.header.is_none() {
        // Err: the genesis change has not arrived yet; nothing to show.
        open.header = Some(doc::read_header(&open.loaded.doc).ok()?);
    }
    let header = open.header.clone()?;
    let began = std::time::Instant::now();
    let (records, problems) = doc::read_tasks(&open.loaded.doc, vault);
    tracing::debug!(doc = %id, tasks = records.len(), ms = began.elapsed().as_millis(), "tasks read");
    if let Some(dir) = save_to
        && open.unflushed.is_empty()
    {
        let saved = cache::save(
            vault,
            dir,
            &id.to_string(),
            &mut open.loaded,
            &header,
            &records,
            &open.warnings,
            after != AfterCache::ReleaseUnsaved,
        );
        open.cached_files = open.loaded.applied.len() + open.loaded.skipped.len();
        let kept = keep_unfinished.is_some_and(|left| take_from(left, unfinished(&records)));
        if after != AfterCache::Keep
            && !kept
            && let Some(reload) = saved
        {
            open.release(reload);
        }
    }
    Some((header, records, problems))
}

/// Takes `n` (at least one) from the budget `left` while it is not spent:
/// whether it could.
fn take_from(left: &AtomicUsize, n: usize) -> bool {
    n > 0
        && left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                (l > 0).then(|| l.saturating_sub(n))
            })
            .is_ok()
}

/// A document not in memory before, loaded (from the cache and whatever
/// files arrived since, or from its files) and read.
pub(super) struct NewDoc {
    pub(super) open: OpenDoc,
    /// Store files applied.
    pub(super) applied: usize,
    /// Warnings about its files (the cached ones included).
    pub(super) warnings: Vec<bridge_store::StoreWarning>,
    /// Its tasks, if its header is known.
    pub(super) read: Option<(BatchHeader, Vec<TaskRecord>, Vec<doc::Problem>)>,
}

/// Loads document `name` (see [`NewDoc`]). Free of `Session`, so that
/// several load in parallel. `keep_unfinished`: see [`read_open_doc`].
pub(super) fn load_new_doc(
    vault: &Vault,
    replica: &Replica,
    cache_dir: &Path,
    (id, name): (&DocId, &str),
    keep_unfinished: Option<&AtomicUsize>,
) -> Result<NewDoc, LoadError> {
    let began = std::time::Instant::now();
    let mut open = match cache::load(vault, cache_dir, name) {
        Some(c) => OpenDoc::cached(c),
        None => OpenDoc::empty(),
    };
    let from_cache = open.lazy.is_some();
    let mut warnings = open.warnings.clone();
    let unseen = !from_cache
        || bridge_store::has_unseen(replica, name, &open.loaded.applied, &open.loaded.skipped)
            .map_err(|source| LoadError::ListDoc {
                name: name.to_owned(),
                source,
            })?;
    if !unseen {
        // Nothing new since the cache: its tasks as they are.
        let read = match (open.header.clone(), open.cached_records.take()) {
            (Some(header), Some(records)) => Some((header, records, Vec::new())),
            _ => None,
        };
        return Ok(NewDoc {
            open,
            applied: 0,
            warnings,
            read,
        });
    }
    open.materialize(vault);
    let (applied, fresh) = bridge_store::refresh_doc(replica, name, &mut open.loaded, vault)
        .map_err(|source| LoadError::ReadDoc {
            name: name.to_owned(),
            source,
        })?;
    tracing::debug!(
        doc = name,
        from_cache,
        files_applied = applied,
        ms = began.elapsed().as_millis(),
        "document loaded"
    );
    for w in fresh {
        if !open.warnings.iter().any(|o| o.path == w.path) {
            open.warnings.push(w.clone());
        }
        warnings.push(w);
    }
    // Loaded with files its cache lacked: cache it, so the next start does
    // not open them again.
    // Only a document loaded afresh is released: one a long-lived process
    // keeps changing stays parsed.
    let read = read_open_doc(
        vault,
        id,
        &mut open,
        (applied > 0).then_some(cache_dir),
        // Read for the first time on this device, the document is cached
        // without its state (see `cache::Reload`); one that changed since
        // it was cached, with it, so that its next changes are applied to
        // the state rather than read from all its files again.
        if from_cache {
            AfterCache::Release
        } else {
            AfterCache::ReleaseUnsaved
        },
        keep_unfinished,
    );
    Ok(NewDoc {
        open,
        applied,
        warnings,
        read,
    })
}

/// How many tasks of `records` have neither a success nor a cancel: what
/// a runner's load plan counts.
pub(super) fn unfinished(records: &[TaskRecord]) -> usize {
    records
        .iter()
        .filter(|r| {
            r.facts.cancels.is_empty()
                && !r
                    .facts
                    .attempts
                    .values()
                    .any(|a| a.outcome == bridge_model::facts::Outcome::Success)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget of tasks a worker keeps parsed: documents are kept while
    /// it is not spent (the last one may pass it), and one with no
    /// unfinished task takes nothing and is not kept.
    #[test]
    fn documents_are_kept_parsed_while_the_budget_lasts() {
        let left = AtomicUsize::new(1024);
        assert!(!take_from(&left, 0));
        assert!(take_from(&left, 1000));
        assert!(take_from(&left, 1000), "24 left: the second is kept");
        assert_eq!(left.load(Ordering::Relaxed), 0);
        assert!(!take_from(&left, 1));
    }
}
