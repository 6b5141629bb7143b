//! This device's cache of merged documents (`.bridge/cache/<doc>.cache`),
//! so that loading a workspace applies only the store files that arrived
//! since, instead of decrypting, verifying and replaying every chunk.
//!
//! A cache file holds the document's tasks as read from it (in a binary
//! encoding: the `records` module), the names of the store files it
//! already holds (applied or refused), and the hash of its state file
//! (`.bridge/cache/<doc>.state`): an Automerge `save()` of the document as
//! this device had verified it, sealed the same way. The state is read
//! only when the document changes (issue 18, item 3: a warm start of a
//! large pool decrypted and held every document's state to use none).
//! When no new file arrived, a start uses the tasks as they are and reads
//! nothing else. Both files are sealed to this device alone (signed by it,
//! encrypted to its own key) and bound to the roster's latest epoch: under
//! another roster the trust decisions may differ, so it is not used. A
//! missing, stale or damaged cache only costs a full load; it is never an
//! error. Only documents with no unflushed changes are cached, so a cache
//! never holds a change that is not in a store file.

//!
//! The cache folder also holds `claims-seen.json`: when this device first
//! saw each open claim and each renewal, on its own clock
//! ([`bridge_model::Sightings`]), so that leases are bounded on this
//! device's clock across commands (issue 12, item 12; see the module docs
//! of `bridge_model::view`). It is plain JSON (claim keys and times, no
//! task data); a missing or damaged file only means the claims are seen
//! afresh, as a new device sees them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use automerge::AutoCommit;
use bridge_model::doc::{BatchHeader, TaskRecord};
use bridge_store::{LoadedDoc, StoreWarning};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::vault::Vault;

/// A document is cached once this many store files went into it since its
/// cache was written (or since it was loaded without one).
pub const REWRITE_AFTER_FILES: usize = 4;

/// The largest cache file read: a document's saved state and its tasks
/// (well under this for a thousand tasks; a bigger file is junk).
pub const MAX_CACHE_BYTES: u64 = 1 << 30;

mod records;

/// The layout of a cache file. A cache of another layout is not used
/// (it is rebuilt from the store files): 2 added each task's creator
/// (issue 13), which an older cache lacks, and a task read without it
/// would be taken for nobody's; 3 moved the tasks out of the JSON
/// metadata into their binary encoding (issue 18, item 3).
///
/// The payload (sealed to this device): a u32 big-endian length, the
/// metadata as JSON ([`Meta`], `format` first read), a u32 big-endian
/// length, then the tasks ([`records`]). The saved state is a file of its
/// own, named in the metadata by its hash; an empty hash: none was saved
/// (see [`Reload`]).
const FORMAT: u32 = 3;

#[derive(Serialize, Deserialize)]
struct Meta {
    #[serde(default)]
    format: u32,
    roster: String,
    applied: BTreeSet<String>,
    skipped: BTreeSet<String>,
    header: BatchHeader,
    #[serde(default)]
    warnings: Vec<(PathBuf, String)>,
    /// The SHA-256 (hex) of the saved state in the state file; empty when
    /// none was saved.
    #[serde(default)]
    state: String,
}

/// How a cached document is parsed again when it has to change: from its
/// saved state, or, when none was saved, from its store files.
///
/// A document read afresh from its store files (a new device's first
/// command) is cached without its state: saving and sealing it was an
/// eighth of a cold `bridge status` (issue 18, item 3), and the state only
/// spares a later change to that document the same read from its files,
/// after which the document is cached with its state.
#[derive(Debug, Clone)]
pub enum Reload {
    /// The saved state in its file.
    State(SavedState),
    /// No state was saved: the document's store files.
    Files,
}

/// A cached document's saved state, left in its file until the document
/// changes: [`SavedState::read`].
#[derive(Debug, Clone)]
pub struct SavedState {
    file: PathBuf,
    doc: String,
    sha256: String,
}

impl SavedState {
    /// The saved state, if its file is still the one the cache file
    /// named (another process may have cached the document again since:
    /// then `None`, and the caller reads the document from its store
    /// files).
    pub fn read(&self, vault: &Vault) -> Option<Vec<u8>> {
        let meta = std::fs::symlink_metadata(&self.file).ok()?;
        if !meta.file_type().is_file() || meta.len() > MAX_CACHE_BYTES {
            return None;
        }
        let sealed = std::fs::read(&self.file).ok()?;
        let saved = match vault.open_private(&state_label(&self.doc), &sealed) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(file = %self.file.display(), why = %why, "saved state not used");
                return None;
            }
        };
        if hex::encode(Sha256::digest(&saved)) != self.sha256 {
            tracing::debug!(file = %self.file.display(), "saved state of another cache; not used");
            return None;
        }
        Some(saved)
    }
}

/// What the state file of `doc` is sealed as (not the cache file's name,
/// so that neither passes for the other).
fn state_label(doc: &str) -> String {
    format!("{doc}.state")
}

/// A document as cached: the store files it holds, its header and tasks as
/// read, and where its saved Automerge state is (read and parsed only when
/// the document changes: a warm start that finds nothing new never reads
/// it).
pub struct Cached {
    /// Store files applied.
    pub applied: BTreeSet<String>,
    /// Store files refused.
    pub skipped: BTreeSet<String>,
    /// The document's header.
    pub header: BatchHeader,
    /// Its tasks as last read.
    pub records: Vec<TaskRecord>,
    /// How the document is parsed again when it changes.
    pub reload: Reload,
    /// The warnings about its refused files, shown again on every load
    /// (the files stay in the store).
    pub warnings: Vec<StoreWarning>,
}

/// The cache folder of a workspace's state folder.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("cache")
}

fn path(dir: &Path, doc: &str) -> PathBuf {
    dir.join(format!("{doc}.cache"))
}

fn state_path(dir: &Path, doc: &str) -> PathBuf {
    dir.join(state_label(doc))
}

/// The cached state of `doc`, if there is a usable one.
pub fn load(vault: &Vault, dir: &Path, doc: &str) -> Option<Cached> {
    let file = path(dir, doc);
    // A cache holds one document (at most a thousand tasks): anything
    // larger, or not a regular file, is not one of ours and is not read.
    let meta = std::fs::symlink_metadata(&file).ok()?;
    if !meta.file_type().is_file() || meta.len() > MAX_CACHE_BYTES {
        tracing::debug!(file = %file.display(), size = meta.len(), "cache not used: not a regular file or too large");
        return None;
    }
    let sealed = std::fs::read(&file).ok()?;
    let payload = match vault.open_private(doc, &sealed) {
        Ok(p) => p,
        Err(why) => {
            tracing::debug!(file = %file.display(), why = %why, "cache not used");
            return None;
        }
    };
    let (len, rest) = payload.split_first_chunk::<4>()?;
    let (meta, rest) = rest.split_at_checked(u32::from_be_bytes(*len) as usize)?;
    let meta: Meta = serde_json::from_slice(meta).ok()?;
    if meta.format != FORMAT {
        tracing::debug!(
            doc,
            format = meta.format,
            "cache of another layout; not used"
        );
        return None;
    }
    if meta.roster != vault.roster_hash() {
        tracing::debug!(doc, "cache made under another roster; not used");
        return None;
    }
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let tasks = rest.get(..u32::from_be_bytes(*len) as usize)?;
    let records = match records::decode(tasks) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(doc, error = %e, "cached tasks do not decode; not used");
            return None;
        }
    };
    Some(Cached {
        applied: meta.applied,
        skipped: meta.skipped,
        header: meta.header,
        records,
        reload: if meta.state.is_empty() {
            Reload::Files
        } else {
            Reload::State(SavedState {
                file: state_path(dir, doc),
                doc: doc.to_owned(),
                sha256: meta.state,
            })
        },
        warnings: meta
            .warnings
            .into_iter()
            .map(|(path, message)| StoreWarning { path, message })
            .collect(),
    })
}

/// Whether `doc` has a cache file (usable or not: [`load`] decides): a
/// document without one has not been checked and read on this device yet.
pub fn exists(dir: &Path, doc: &str) -> bool {
    std::fs::symlink_metadata(path(dir, doc)).is_ok_and(|m| m.file_type().is_file())
}

/// Removes the cache of `doc` (a file it lists as refused was repaired:
/// the next load reads the document's files again). Best effort.
pub fn forget(dir: &Path, doc: &str) {
    for file in [path(dir, doc), state_path(dir, doc)] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::debug!(doc, "could not remove {}: {e}", file.display()),
        }
    }
}

/// Turns a cached state into a loaded document (parsing the saved state).
pub fn materialize(
    saved: &[u8],
    applied: BTreeSet<String>,
    skipped: BTreeSet<String>,
) -> Option<LoadedDoc> {
    match AutoCommit::load(saved) {
        Ok(doc) => Some(LoadedDoc {
            doc,
            applied,
            skipped,
        }),
        Err(e) => {
            tracing::debug!(error = %e, "cached state does not load; not used");
            None
        }
    }
}

/// Writes the cache of `doc` (atomically: temp file, then rename), with
/// the document's saved state when `with_state` (see [`Reload`]). A
/// failure is logged, never returned: the cache is an optimisation.
/// Returns how the document is parsed again once it is cached (the caller
/// may drop the parsed document and keep that instead).
#[expect(
    clippy::too_many_arguments,
    reason = "what a cache file holds, each part from the caller"
)]
pub fn save(
    vault: &Vault,
    dir: &Path,
    doc: &str,
    loaded: &mut LoadedDoc,
    header: &BatchHeader,
    records: &[TaskRecord],
    warnings: &[StoreWarning],
    with_state: bool,
) -> Option<Reload> {
    let result = (|| -> Result<Reload, CacheError> {
        std::fs::create_dir_all(dir).map_err(io_step("create", dir))?;
        let file = state_path(dir, doc);
        // The state first: a cache file never names a state not written.
        let reload = if with_state {
            let saved = loaded.doc.save();
            let state = SavedState {
                file,
                doc: doc.to_owned(),
                sha256: hex::encode(Sha256::digest(&saved)),
            };
            let sealed = vault.seal_private(&state_label(doc), &saved)?;
            bridge_store::replace_file(&state.file, &sealed, 0o666, false)
                .map_err(io_step("write", &state.file))?;
            Reload::State(state)
        } else {
            // An earlier state would no longer match the cache: not kept.
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_step("remove", &file)(e)),
            }
            Reload::Files
        };
        let state = match &reload {
            Reload::State(s) => s.sha256.as_str(),
            Reload::Files => "",
        };
        let warnings: Vec<(&Path, &str)> = warnings
            .iter()
            .map(|w| (w.path.as_path(), w.message.as_str()))
            .collect();
        let meta = serde_json::to_vec(&MetaRef {
            format: FORMAT,
            roster: vault.roster_hash(),
            applied: &loaded.applied,
            skipped: &loaded.skipped,
            header,
            warnings,
            state,
        })?;
        let tasks = records::encode(records)?;
        let mut payload = Vec::with_capacity(8 + meta.len() + tasks.len());
        for part in [&meta, &tasks] {
            let len = u32::try_from(part.len()).map_err(|_| CacheError::TooLarge)?;
            payload.extend_from_slice(&len.to_be_bytes());
            payload.extend_from_slice(part);
        }
        let sealed = vault.seal_private(doc, &payload)?;
        let file = path(dir, doc);
        bridge_store::replace_file(&file, &sealed, 0o666, false)
            .map_err(io_step("write", &file))?;
        Ok(reload)
    })();
    match result {
        Ok(reload) => Some(reload),
        Err(e) => {
            tracing::debug!(
                doc,
                "could not write the document cache: {}",
                crate::files::with_causes(&e)
            );
            None
        }
    }
}

/// Why a cache file was not written (only logged: the cache is an
/// optimisation).
#[derive(Debug, thiserror::Error)]
enum CacheError {
    /// The metadata does not encode.
    #[error("cannot encode the cache: {0}")]
    Encode(#[from] serde_json::Error),
    /// The tasks do not encode.
    #[error("cannot encode the cached tasks: {0}")]
    EncodeTasks(#[from] postcard::Error),
    /// The metadata or the tasks are over 4 GiB.
    #[error("the cache's metadata or tasks are over 4 GiB")]
    TooLarge,
    /// The vault cannot seal it.
    #[error(transparent)]
    Seal(#[from] bridge_vault::SealError),
    /// A file system step failed.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// "create", "write", "rename".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io_step(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError::Io { what, path, source }
}

/// [`Meta`] borrowed, for writing.
#[derive(Serialize)]
struct MetaRef<'a> {
    format: u32,
    roster: String,
    applied: &'a BTreeSet<String>,
    skipped: &'a BTreeSet<String>,
    header: &'a BatchHeader,
    warnings: Vec<(&'a Path, &'a str)>,
    state: &'a str,
}

/// The file holding this device's sightings of claims.
const SIGHTINGS_FILE: &str = "claims-seen.json";
/// A sightings file larger than this is damaged (it holds only open
/// claims): it is ignored rather than read.
const SIGHTINGS_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// This device's sightings of claims, from the cache folder `dir`; empty
/// (a fresh start) when the file is missing, too large or damaged.
pub fn load_sightings(dir: &Path) -> bridge_model::Sightings {
    let path = dir.join(SIGHTINGS_FILE);
    let too_big = std::fs::symlink_metadata(&path)
        .map(|m| !m.is_file() || m.len() > SIGHTINGS_MAX_BYTES)
        .unwrap_or(true);
    if too_big {
        return bridge_model::Sightings::default();
    }
    match std::fs::read(&path).map(|b| serde_json::from_slice(&b)) {
        Ok(Ok(seen)) => seen,
        Ok(Err(e)) => {
            tracing::debug!("ignoring {}: {e}", path.display());
            bridge_model::Sightings::default()
        }
        Err(_) => bridge_model::Sightings::default(),
    }
}

/// Writes this device's sightings of claims into the cache folder `dir`
/// (temp file, then rename). Best effort: a failure only means they are
/// seen afresh next time.
pub fn save_sightings(dir: &Path, seen: &bridge_model::Sightings) {
    let write = || -> Result<(), CacheError> {
        std::fs::create_dir_all(dir).map_err(io_step("create", dir))?;
        let file = dir.join(SIGHTINGS_FILE);
        bridge_store::replace_file(&file, &serde_json::to_vec(seen)?, 0o666, false)
            .map_err(io_step("write", &file))?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::debug!(
            "cannot save the sightings of claims: {}",
            crate::files::with_causes(&e)
        );
    }
}

#[cfg(test)]
mod tests {
    use bridge_crypto::{Identity, Roster};
    use bridge_model::{BatchId, TaskSpec};

    use super::*;

    fn vault(dir: &Path) -> Vault {
        let identity = Identity::generate().expect("a key");
        let (roster, _) = Roster::genesis(&identity, "me", "ws", 1).expect("a roster");
        let replica = bridge_store::Replica::init(&dir.join("store"), "ws").expect("a replica");
        Vault::new(replica, identity, roster)
    }

    fn header() -> BatchHeader {
        BatchHeader {
            batch: BatchId::new(1, [1; 10]),
            part: 0,
            parts: 1,
            created_at: 1,
            submitted_by: "me".into(),
            device: "d".into(),
            grant: None,
        }
    }

    fn empty_doc() -> LoadedDoc {
        LoadedDoc {
            doc: AutoCommit::new(),
            applied: BTreeSet::new(),
            skipped: BTreeSet::new(),
        }
    }

    // Issue 18, item 3: a document read from its store files alone is
    // cached without its state; an earlier state is not left behind to be
    // taken for the document's (its hash would not match anyway).
    #[test]
    fn issue18_a_cache_saved_without_its_state_reloads_from_the_files() {
        let tmp = tempfile::tempdir().expect("a temp folder");
        let vault = vault(tmp.path());
        let cache = tmp.path().join("cache");
        let mut loaded = empty_doc();
        let saved = save(&vault, &cache, "d1", &mut loaded, &header(), &[], &[], true);
        assert!(matches!(saved, Some(Reload::State(_))));
        assert!(state_path(&cache, "d1").is_file());
        let cached = load(&vault, &cache, "d1").expect("cached");
        let Reload::State(state) = cached.reload else {
            panic!("the cache names its state")
        };
        assert!(state.read(&vault).is_some());

        let saved = save(
            &vault,
            &cache,
            "d1",
            &mut loaded,
            &header(),
            &[],
            &[],
            false,
        );
        assert!(matches!(saved, Some(Reload::Files)));
        assert!(
            !state_path(&cache, "d1").exists(),
            "the earlier state removed"
        );
        let cached = load(&vault, &cache, "d1").expect("cached without a state");
        assert!(matches!(cached.reload, Reload::Files));
        assert_eq!(cached.header, header());
    }

    // Issue 13, item 2: caches written before tasks carried their creator
    // would load every task as nobody's, and every device would leave it
    // for others. A cache of another layout is not used (a full load reads
    // the creators again).
    #[test]
    fn issue13_a_cache_without_the_tasks_creators_is_not_used() {
        let tmp = tempfile::tempdir().expect("a temp folder");
        let vault = vault(tmp.path());
        let cache = tmp.path().join("cache");
        let spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "name": "t",
            "command": {"shell": {"shell": "sh", "script": "true"}},
            "timeout_s": 5,
        }))
        .expect("a spec");
        let header = header();
        let record = TaskRecord {
            id: spec.id(),
            spec,
            facts: Default::default(),
            trusted: true,
            creator: Some([7; 8]),
        };
        let mut loaded = empty_doc();
        save(
            &vault,
            &cache,
            "d1",
            &mut loaded,
            &header,
            &[record],
            &[],
            true,
        );
        let cached = load(&vault, &cache, "d1").expect("the current layout is used");
        assert_eq!(cached.records[0].creator, Some([7; 8]));

        // The same cache as layouts 1 and 2 wrote it: the tasks inside
        // the JSON metadata, and in layout 1 no `format` and no creators.
        let legacy = |format: Option<u32>| {
            let mut meta = serde_json::json!({
                "roster": vault.roster_hash(),
                "applied": [],
                "skipped": [],
                "header": header,
                "records": cached.records,
                "warnings": [],
            });
            let object = meta.as_object_mut().expect("an object");
            match format {
                Some(f) => {
                    object.insert("format".into(), f.into());
                }
                None => {
                    for r in object["records"].as_array_mut().expect("records") {
                        r.as_object_mut().expect("a record").remove("creator");
                    }
                }
            }
            let meta = serde_json::to_vec(&meta).expect("json");
            let saved = AutoCommit::new().save();
            let mut payload = (meta.len() as u32).to_be_bytes().to_vec();
            payload.extend_from_slice(&meta);
            payload.extend_from_slice(&saved);
            let sealed = vault.seal_private("d1", &payload).expect("sealed");
            std::fs::write(path(&cache, "d1"), sealed).expect("written");
        };
        legacy(None);
        assert!(load(&vault, &cache, "d1").is_none());
        // Issue 18, item 3: layout 2 (tasks as JSON) is not misread as
        // layout 3 (tasks in their binary encoding after the metadata).
        legacy(Some(2));
        assert!(load(&vault, &cache, "d1").is_none());
    }
}
