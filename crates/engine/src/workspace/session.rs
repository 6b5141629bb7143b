//! The session: the documents of a workspace loaded in memory while a
//! command runs, the merged [`View`], and the one place where new changes
//! are written ([`Session::change`], then [`Session::flush`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use automerge::AutoCommit;
use bridge_crypto::MemberId;
use bridge_model::doc::{self, BatchHeader, TaskRecord};
use bridge_model::{DocId, Millis, Policy, View, WriterId};
use bridge_store::LoadedDoc;
use sha2::Digest as _;

use super::load::{AfterCache, NewDoc, OpenDoc, load_new_doc, read_open_doc, unfinished};
use super::{
    CONFIG_FILE, ConfigError, RandomError, STATE_DIR, Workspace, open_vault, random_bytes,
};
use crate::cache;
use crate::clock::Clock;
use crate::vault::{AUDIENCE_DOC, ROSTER_DOC, Vault, is_reserved_doc};

/// Why the documents of a workspace cannot be loaded (or the vault opened
/// to read them). The hints are the command line's.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// This device's identity cannot be loaded.
    #[error(transparent)]
    Identity(#[from] crate::keys::IdentityError),
    /// `root` in `bridge.toml` is not a member id.
    #[error("`root` in {CONFIG_FILE} is not a member id")]
    BadRoot,
    /// The roster is older than what this device trusts, or the root is
    /// not the one it pinned.
    #[error(transparent)]
    Roster(#[from] crate::freshness::FreshnessError),
    /// The vault refused the roster or a file.
    #[error(transparent)]
    Vault(#[from] bridge_vault::OpenError),
    /// A setting of `bridge.toml`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No random bytes for the writer id.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The replica's documents cannot be listed.
    #[error("cannot list the documents in {}", path.display())]
    ListDocs {
        /// The replica.
        path: PathBuf,
        /// Why.
        #[source]
        source: bridge_store::ListError,
    },
    /// A document's files cannot be listed.
    #[error("cannot list document {name}")]
    ListDoc {
        /// The document.
        name: String,
        /// Why.
        #[source]
        source: bridge_store::ListError,
    },
    /// A document's files cannot be read.
    #[error("cannot read document {name}")]
    ReadDoc {
        /// The document.
        name: String,
        /// Why.
        #[source]
        source: bridge_store::ListError,
    },
    /// The archive cannot be listed.
    #[error("cannot list the archived documents")]
    ListArchived(#[source] bridge_store::ListError),
    /// An archived document cannot be read.
    #[error("cannot read archived document {name}")]
    ReadArchived {
        /// The document.
        name: String,
        /// Why.
        #[source]
        source: bridge_store::ListError,
    },
    /// Saving this process's changes before a reload failed.
    #[error(transparent)]
    Write(Box<WriteError>),
}

impl From<WriteError> for LoadError {
    fn from(e: WriteError) -> LoadError {
        LoadError::Write(Box::new(e))
    }
}

/// Why a change cannot be made or saved.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The document is not loaded.
    #[error("document {id} is not in the replica")]
    NotInReplica {
        /// The document.
        id: DocId,
    },
    /// The change itself failed (and was rolled back).
    #[error("cannot write to document {id}")]
    Change {
        /// The document.
        id: DocId,
        /// Why.
        #[source]
        source: Box<doc::DocError>,
    },
    /// The vault cannot seal the changes.
    #[error(transparent)]
    Seal(#[from] bridge_vault::SealError),
    /// The sealed chunk cannot be written to the replica.
    #[error("cannot save changes to document {id}")]
    Save {
        /// The document.
        id: DocId,
        /// Why.
        #[source]
        source: Box<bridge_store::WriteError>,
    },
}

/// The documents of a workspace loaded in memory, and the merged view.
pub struct Session {
    /// The workspace.
    pub ws: Workspace,
    /// This process's writer id (a fresh, time-ordered Automerge actor).
    pub writer: WriterId,
    /// The derivation policy.
    pub policy: Policy,
    /// Encryption and verification of every store file.
    pub vault: Arc<Vault>,
    /// Where "now" comes from (the system clock but in unit tests).
    clock: Arc<dyn Clock>,
    docs: BTreeMap<DocId, OpenDoc>,
    view: View,
    seq: u64,
    warned: BTreeSet<String>,
    /// When the documents were (re)loaded.
    /// On this session's clock (so a test can make a reload fall due).
    loaded_at: Millis,
    /// How documents not loaded yet are loaded.
    plan: LoadPlan,
    /// How many more unfinished tasks the documents read for the first
    /// time may hold and stay parsed (a process that works on them: see
    /// [`LoadPlan::Work`]; none for other plans).
    keep_unfinished: std::sync::atomic::AtomicUsize,
    /// Unfinished tasks in the documents loaded since the plan last
    /// stopped loading.
    open_loaded: usize,
    /// Whether some live document was left unloaded by the plan.
    deferred: bool,
    /// How many roster files the vault was opened with: when more arrive
    /// (a member added or removed meanwhile), the roster is verified again.
    roster_files: usize,
    /// How many audience grant files the vault was opened with: a new one
    /// (a private batch this device may now read, or a rotation) makes the
    /// vault read the grants again.
    grant_files: usize,
    /// Whether this process wrote audience grants (a rotation) that no
    /// sync has pushed yet: see [`Session::take_rotated`].
    rotated: bool,
    /// Documents of private batches this device cannot read, skipped by
    /// the last refresh (counted, not warned about).
    foreign_docs: usize,
    /// When the claim sightings were last saved, and whether some arrived
    /// since (see [`Session::refresh`]).
    sightings_saved: Option<std::time::Instant>,
    sightings_unsaved: bool,
}

/// How often a busy session saves its claim sightings: they only matter to
/// the next command, and losing the newest few is safe (those claims count
/// as first seen then, which bounds them by their own `lease_until`).
const SIGHTINGS_SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Drop for Session {
    fn drop(&mut self) {
        if self.sightings_unsaved {
            cache::save_sightings(&self.cache_dir(), self.view.sightings());
        }
    }
}

/// How many unfinished tasks the documents a worker keeps parsed after
/// reading them may hold (see [`LoadPlan::Work`]): about four claim
/// windows of short tasks.
pub const KEEP_PARSED_TASKS: usize = 1024;

/// How a session loads the documents it has not loaded yet.
#[derive(Debug, Clone)]
pub enum LoadPlan {
    /// Every live document: commands that show or change the whole pool.
    All,
    /// Every live document, as [`All`](Self::All), for a process that
    /// works on their tasks (`bridge work`): the first documents read with
    /// unfinished tasks, up to [`KEEP_PARSED_TASKS`] of them, stay parsed,
    /// rather than dropped and parsed again from their files or saved
    /// state at the first claim. (Not all of them: on a large pool that
    /// would hold every document in memory.)
    Work,
    /// A runner: the newest batch's documents first, in an order of its
    /// own within a batch (hashed with `seed`, so that runners start on
    /// different documents), stopping once those loaded hold `open_tasks`
    /// unfinished tasks. A fresh runner on a large pool starts its first
    /// task after reading one or two documents, not all of them;
    /// [`Session::load_more`] goes on (before the runner steals from other
    /// shards, and before it concludes there is nothing to do).
    UntilOpen {
        /// Unfinished tasks that are enough to start.
        open_tasks: usize,
        /// Orders the documents.
        seed: String,
    },
    /// What `bridge sync` needs and no more: the documents of the private
    /// batches this device is in the audience of (their headers name the
    /// generation-0 grants a key rotation extends), those this device has
    /// no cache of (never checked here: a damaged file found now is
    /// repaired by the sync), and those a sync touched (named here as they
    /// arrive: see [`Session::after_sync`]), so that what came is checked
    /// and cached once. Documents already cached are not read at all; the
    /// next command that shows or runs tasks reads them. A sync records no
    /// claim as seen.
    Touched(BTreeSet<String>),
}

impl LoadPlan {
    /// The plan of `bridge sync`: nothing touched yet.
    pub fn touched() -> LoadPlan {
        LoadPlan::Touched(BTreeSet::new())
    }

    /// Whether this plan reads the documents of the pool's tasks (and so
    /// may record the claims it sees).
    fn reads_tasks(&self) -> bool {
        !matches!(self, LoadPlan::Touched(_))
    }

    /// Whether this plan is a worker's (see [`LoadPlan::Work`]): a
    /// runner's is too.
    fn works(&self) -> bool {
        matches!(self, LoadPlan::Work | LoadPlan::UntilOpen { .. })
    }
}

/// What [`Session::refresh_open_doc`] applied: changes to read again in
/// full, warnings, whether to rewrite the cache, changes read in part.
type Refreshed = (usize, Vec<bridge_store::StoreWarning>, bool, usize);

impl Session {
    /// Loads this device's identity, verifies the roster and loads the
    /// documents of the replica as `plan` says.
    pub fn open_with(ws: Workspace, plan: LoadPlan) -> Result<Session, LoadError> {
        let vault = open_vault(&ws)?;
        Session::with_plan(ws, vault, plan)
    }

    /// Loads every document of the replica through `vault`.
    pub fn with_vault(ws: Workspace, vault: Vault) -> Result<Session, LoadError> {
        Session::with_plan(ws, vault, LoadPlan::All)
    }

    /// Loads the documents of the replica through `vault`, as `plan` says.
    pub fn with_plan(ws: Workspace, vault: Vault, plan: LoadPlan) -> Result<Session, LoadError> {
        Session::with_clock(ws, vault, plan, crate::clock::system())
    }

    /// [`with_plan`](Self::with_plan), reading now from `clock`.
    pub fn with_clock(
        ws: Workspace,
        vault: Vault,
        plan: LoadPlan,
        clock: Arc<dyn Clock>,
    ) -> Result<Session, LoadError> {
        let policy = ws.config.policy()?;
        let tag = crate::vault::member_tag(vault.identity().member_id());
        let writer = WriterId::new(clock.now_ms(), tag, random_bytes::<8>()?);
        vault.bind_own_actor(&writer.actor());
        let mut s = Session {
            ws,
            writer,
            policy,
            vault: Arc::new(vault),
            clock: clock.clone(),
            docs: BTreeMap::new(),
            view: View::new(),
            seq: 0,
            warned: BTreeSet::new(),
            loaded_at: clock.now_ms(),
            keep_unfinished: std::sync::atomic::AtomicUsize::new(if plan.works() {
                KEEP_PARSED_TASKS
            } else {
                0
            }),
            plan,
            open_loaded: 0,
            deferred: false,
            roster_files: 0,
            grant_files: 0,
            rotated: false,
            foreign_docs: 0,
            sightings_saved: None,
            sightings_unsaved: false,
        };
        s.roster_files = s.count_roster_files();
        s.grant_files = s.vault.grant_files();
        s.view.set_sightings(cache::load_sightings(&s.cache_dir()));
        s.refresh()?;
        // After the documents are read: their headers name the batches'
        // true generation-0 grants, which decide what a rotation extends.
        s.rotate_stale_audiences();
        Ok(s)
    }

    /// Rotates the key of every private batch whose newest audience names
    /// a member removed from the roster, when this device is in that
    /// audience (issue 13): files written afterwards are sealed to a key
    /// the removed member never receives. Idempotent: once the new grant
    /// is read, the audience no longer names them. Two devices rotating at
    /// once converge (the lowest hash wins).
    fn rotate_stale_audiences(&mut self) {
        let stale = crate::audience::stale_audiences(&self.vault);
        if stale.is_empty() {
            return;
        }
        let listed = |s: &Session| -> BTreeSet<String> {
            s.ws.replica
                .list_chunks(AUDIENCE_DOC)
                .unwrap_or_default()
                .into_iter()
                .collect()
        };
        let before = listed(self);
        for (batch, keys) in stale {
            match crate::audience::rotate(&self.vault, &batch, &keys, self.clock.now_ms()) {
                Ok(_) => {
                    tracing::info!(
                        "rotated the key of private batch {batch}: a member of its audience left the workspace"
                    );
                }
                Err(e) => tracing::warn!("cannot rotate the key of private batch {batch}: {e}"),
            }
        }
        // The replica's outbox has the new grants: they are pushed with this
        // process's other files.
        self.rotated |= listed(self).difference(&before).next().is_some();
        self.reopen_vault();
    }

    fn count_roster_files(&self) -> usize {
        self.ws
            .replica
            .list_chunks(ROSTER_DOC)
            .map_or(0, |l| l.len())
    }

    /// Verifies the roster again after new roster files arrived (a long
    /// run would otherwise refuse a new member's files, or accept a removed
    /// one's, until it ends). Files refused so far are read again. On
    /// failure the current roster stays, with a warning.
    fn reopen_vault(&mut self) {
        self.roster_files = self.count_roster_files();
        self.grant_files = Vault::count_grant_files(&self.ws.replica);
        let root = match self.ws.config.workspace.root.parse::<MemberId>() {
            Ok(r) => r,
            Err(_) => return,
        };
        let identity = self.vault.identity().clone();
        // The same checks as the first load, with its typed errors: only
        // logged here, since the current roster stays.
        let opened = Vault::open(self.ws.replica.clone(), identity, &root)
            .map_err(LoadError::from)
            .and_then(|(v, w)| {
                crate::freshness::check(&self.ws, v.roster())?;
                Ok((v, w))
            });
        match opened {
            Ok((vault, _)) => {
                vault.bind_own_actor(&self.writer.actor());
                // The generation-0 grants the loaded batches' headers name
                // (issue 13): a new vault must know them before it seals
                // anything, or a forged grant arriving mid-run (which is
                // itself a reason to reopen) could win the tie-break.
                for open in self.docs.values() {
                    if let Some(h) = &open.header
                        && let Some(grant) = &h.grant
                    {
                        vault.confirm_first_grant(h.batch.as_str(), grant);
                    }
                }
                self.vault = Arc::new(vault);
                for open in self.docs.values_mut() {
                    open.loaded.skipped.clear();
                    open.warnings.clear();
                }
                tracing::debug!("the roster changed; verified it again");
            }
            Err(e) => {
                tracing::warn!("new roster files do not verify; keeping the roster as it was: {e}")
            }
        }
    }

    /// Whether a rotation wrote grants since the last call: a sync that
    /// rotated after pulling (it saw the removal only then) pushes again.
    pub fn take_rotated(&mut self) -> bool {
        std::mem::take(&mut self.rotated)
    }

    /// This device's cache folder.
    fn cache_dir(&self) -> PathBuf {
        cache::dir(&self.ws.root.join(STATE_DIR))
    }

    /// Whether the load plan left live documents unloaded.
    pub fn has_deferred(&self) -> bool {
        self.deferred
    }

    /// Loads more of the documents the plan left (another round of it).
    /// Returns whether any was loaded.
    pub fn load_more(&mut self) -> Result<bool, LoadError> {
        let before = self.docs.len();
        self.open_loaded = 0;
        self.refresh()?;
        Ok(self.docs.len() > before)
    }

    /// Loads every live document from now on.
    pub fn load_all(&mut self) -> Result<(), LoadError> {
        self.plan = LoadPlan::All;
        if self.deferred {
            self.refresh()?;
        }
        Ok(())
    }

    /// Ends the session of a process about to exit: saves what dropping
    /// it saves (the claim sightings), then leaves the view and the
    /// documents to the operating system instead of freeing every task's
    /// values one by one, which took a seventh of a warm `bridge status`
    /// on 100k tasks (issue 18, item 3). The rest (the vault and its keys)
    /// is dropped as usual. Only for a command's last step: the memory is
    /// not given back before the process ends.
    pub fn end_of_process(mut self) {
        if self.sightings_unsaved {
            cache::save_sightings(&self.cache_dir(), self.view.sightings());
            self.sightings_unsaved = false;
        }
        std::mem::forget(std::mem::take(&mut self.view));
        std::mem::forget(std::mem::take(&mut self.docs));
    }

    /// The merged view of every task.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Every document's header.
    pub fn headers(&self) -> impl Iterator<Item = (&DocId, &BatchHeader)> {
        self.docs
            .iter()
            .filter_map(|(id, d)| d.header.as_ref().map(|h| (id, h)))
    }

    /// Applies chunk files that appeared in the replica since the last look
    /// (written by other processes or pulled by a sync). Returns how many.
    pub fn refresh(&mut self) -> Result<usize, LoadError> {
        let began = std::time::Instant::now();
        let applied = self.refresh_docs()?;
        if !self.plan.reads_tasks() {
            // Observing a view that lacks most claims would move this
            // device's watch forward as if it had looked at them.
            return Ok(applied);
        }
        // Leases are bounded on this device's clock from when it first saw
        // each claim (issue 12, item 12).
        // Saved at most every SIGHTINGS_SAVE_EVERY (a busy pool renews
        // leases all the time), and when the session ends.
        self.sightings_unsaved |= self.view.observe_claims(self.clock.now_ms(), self.policy);
        if self.sightings_unsaved
            && self
                .sightings_saved
                .is_none_or(|at| at.elapsed() >= SIGHTINGS_SAVE_EVERY)
        {
            cache::save_sightings(&self.cache_dir(), self.view.sightings());
            self.sightings_saved = Some(std::time::Instant::now());
            self.sightings_unsaved = false;
        }
        tracing::debug!(
            applied,
            ms = began.elapsed().as_millis(),
            "documents refreshed"
        );
        Ok(applied)
    }

    fn refresh_docs(&mut self) -> Result<usize, LoadError> {
        if self.count_roster_files() != self.roster_files {
            self.reopen_vault();
            self.rotate_stale_audiences();
        } else if Vault::count_grant_files(&self.ws.replica) != self.grant_files {
            self.reopen_vault();
        }
        let (names, target) = self.docs_in_plan_order()?;
        let cache_dir = cache::dir(&self.ws.root.join(STATE_DIR));
        self.deferred = false;
        // Loading every document: the new ones load in parallel (decrypting,
        // verifying, parsing and reading are independent per document).
        let prefetched = match target {
            Some(_) => std::collections::HashMap::new(),
            None => self.load_new_in_parallel(&names, &cache_dir),
        };
        self.foreign_docs = 0;
        // The tasks of the documents read for the first time go into the
        // view together (see `View::add_documents`), also when one fails.
        let mut fresh = Vec::new();
        let result = self.refresh_each(names, target, prefetched, &cache_dir, &mut fresh);
        self.view.add_documents(fresh);
        let applied = result?;
        if self.foreign_docs > 0 {
            tracing::debug!(
                documents = self.foreign_docs,
                "skipped the documents of private batches this device is not in the audience of"
            );
        }
        Ok(applied)
    }

    /// [`refresh_docs`](Self::refresh_docs)'s pass over the documents: the
    /// open ones refreshed in place, the new ones loaded (or taken from
    /// `prefetched`) and their tasks left in `fresh` for the view.
    fn refresh_each(
        &mut self,
        names: Vec<String>,
        target: Option<usize>,
        mut prefetched: std::collections::HashMap<String, Result<NewDoc, LoadError>>,
        cache_dir: &std::path::Path,
        fresh: &mut Vec<(DocId, BatchHeader, Vec<TaskRecord>)>,
    ) -> Result<usize, LoadError> {
        let replica = self.ws.replica.clone();
        let replica = &replica;
        let vault = self.vault.clone();
        let mut applied = 0;
        for name in names {
            if is_reserved_doc(&name) {
                continue;
            }
            // A private batch this device is not in the audience of: its
            // files do not decrypt here, which is no error (issue 13).
            // Counted and skipped; read once a grant names this device.
            if vault.is_foreign_doc(&name) {
                self.foreign_docs += 1;
                continue;
            }
            let Ok(id) = name.parse::<DocId>() else {
                self.warn_once(&name, || {
                    format!("skipped chunks/{name}: not a document id")
                });
                continue;
            };
            if let Some(target) = target
                && !self.docs.contains_key(&id)
                && self.open_loaded >= target
            {
                self.deferred = true;
                continue;
            }
            let (n, warnings, save, read_in_part) = match self.docs.contains_key(&id) {
                true => match self.refresh_open_doc(&id, &name, replica, &vault)? {
                    Some(refreshed) => refreshed,
                    None => continue,
                },
                false => {
                    let loaded = match prefetched.remove(&name) {
                        Some(result) => result,
                        None => load_new_doc(
                            &vault,
                            replica,
                            cache_dir,
                            (&id, &name),
                            Some(&self.keep_unfinished),
                        ),
                    }?;
                    for w in &loaded.warnings {
                        let key = w.path.display().to_string();
                        self.warn_once(&key, || w.to_string());
                    }
                    self.docs.insert(id.clone(), loaded.open);
                    if let Some((header, records, problems)) = loaded.read {
                        self.open_loaded += self.note_read(&id, &header, &records, problems);
                        fresh.push((id, header, records));
                    }
                    applied += loaded.applied;
                    continue;
                }
            };
            for w in &warnings {
                let key = w.path.display().to_string();
                self.warn_once(&key, || w.to_string());
            }
            if let Some(open) = self.docs.get_mut(&id) {
                for w in warnings {
                    if !open.warnings.iter().any(|o| o.path == w.path) {
                        open.warnings.push(w);
                    }
                }
            }
            applied += read_in_part;
            if n > 0 {
                applied += n;
                self.reread(&id, save.then_some(cache_dir));
            }
        }
        Ok(applied)
    }

    /// The documents of the replica, in the order the load plan reads them,
    /// and how many open tasks the plan stops at (`None`: all of them).
    fn docs_in_plan_order(&self) -> Result<(Vec<String>, Option<usize>), LoadError> {
        let replica = &self.ws.replica;
        let mut names = replica.list_docs().map_err(|source| LoadError::ListDocs {
            path: replica.root().to_path_buf(),
            source,
        })?;
        let target = match &self.plan {
            LoadPlan::All | LoadPlan::Work => None,
            LoadPlan::Touched(touched) => {
                let private = self.vault.private_batches();
                let cache_dir = self.cache_dir();
                names.retain(|n| {
                    touched.contains(n)
                        || !cache::exists(&cache_dir, n)
                        || n.parse::<DocId>()
                            .is_ok_and(|id| private.contains_key(id.batch().as_str()))
                });
                None
            }
            LoadPlan::UntilOpen { open_tasks, seed } => {
                // Newest batch first (batch ids start with their creation
                // time): what someone just submitted, and not the finished
                // history; within a batch, an order of this runner's own.
                names.sort_by_cached_key(|n| {
                    let batch = n.split('.').next().unwrap_or(n).to_owned();
                    let hash = sha2::Sha256::new()
                        .chain_update(seed.as_bytes())
                        .chain_update(b"\0")
                        .chain_update(n.as_bytes())
                        .finalize();
                    (std::cmp::Reverse(batch), hash)
                });
                Some(*open_tasks)
            }
        };
        Ok((names, target))
    }

    /// Applies the new files of document `id`, already in memory: `None`
    /// when there are none; else the changes applied (to read again in
    /// full), the warnings, whether to rewrite its cache, and the changes
    /// read in part (only the tasks they touch).
    fn refresh_open_doc(
        &mut self,
        id: &DocId,
        name: &str,
        replica: &bridge_store::Replica,
        vault: &Vault,
    ) -> Result<Option<Refreshed>, LoadError> {
        let Some(open) = self.docs.get_mut(id) else {
            return Ok(None);
        };
        // Whether the document is read whole from its files: then every
        // task is read again, and what the files change is not logged.
        let mut whole = false;
        if open.lazy.is_some() {
            let unseen =
                bridge_store::has_unseen(replica, name, &open.loaded.applied, &open.loaded.skipped)
                    .map_err(|source| LoadError::ListDoc {
                        name: name.to_owned(),
                        source,
                    })?;
            if !unseen {
                return Ok(None);
            }
            whole = !open.materialize(vault);
        }
        // Log what the new files change, to read only the tasks
        // they touch rather than the whole document.
        if !whole {
            open.loaded.doc.update_diff_cursor();
        }
        let applied_here = bridge_store::refresh_doc(replica, name, &mut open.loaded, vault)
            .map_err(|source| LoadError::ReadDoc {
                name: name.to_owned(),
                source,
            });
        let touched = match &applied_here {
            Ok((n, _)) if *n > 0 && !whole => {
                doc::touched_tasks(&open.loaded.doc.diff_incremental())
            }
            _ => None,
        };
        if !whole {
            open.loaded.doc.reset_diff_cursor();
        }
        let (n, w) = applied_here?;
        let files = open.loaded.applied.len() + open.loaded.skipped.len();
        let save = files >= open.cached_files + cache::REWRITE_AFTER_FILES;
        // The cache is left as it is then: a running process
        // reads it only on its next load, which applies what
        // came since (and caches the document again).
        Ok(Some(
            if n > 0
                && let Some(keys) = touched
            {
                self.reread_tasks(id, &keys);
                (0, w, false, n)
            } else {
                (n, w, save, 0)
            },
        ))
    }

    /// Loads the documents among `names` that are not in memory yet, on
    /// as many threads as there are CPUs.
    fn load_new_in_parallel(
        &self,
        names: &[String],
        cache_dir: &Path,
    ) -> std::collections::HashMap<String, Result<NewDoc, LoadError>> {
        let new: Vec<(DocId, &String)> = names
            .iter()
            .filter(|n| !is_reserved_doc(n) && !self.vault.is_foreign_doc(n))
            .filter_map(|n| n.parse::<DocId>().ok().map(|id| (id, n)))
            .filter(|(id, _)| !self.docs.contains_key(id))
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(new.len());
        if threads < 2 {
            return std::collections::HashMap::new();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (vault, replica) = (&*self.vault, &self.ws.replica);
        let keep = Some(&self.keep_unfinished);
        let work = || {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((id, name)) = new.get(i) else {
                    break;
                };
                let result = load_new_doc(vault, replica, cache_dir, (id, name), keep);
                out.push(((*name).clone(), result));
            }
            out
        };
        std::thread::scope(|scope| {
            // This thread is one of the loaders: one thread fewer, and so
            // one allocator arena fewer, each of which keeps what a
            // document's loading freed beside the tasks it kept (26 MB of
            // a cold `status` at 100k tasks, issue 18, item 3).
            let workers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
            let mut loaded = work();
            for w in workers {
                if let Ok(out) = w.join() {
                    loaded.extend(out);
                }
            }
            loaded.into_iter().collect()
        })
    }

    /// Drops every document from memory and loads them again (from this
    /// device's cache, so it costs little): what a long-lived process does
    /// now and then so that its memory stays flat. Automerge documents grow
    /// with every change applied to them, and archived documents would
    /// otherwise stay loaded; a reload starts from compact saved states and
    /// only the live documents. Call it with no task running.
    pub fn reload(&mut self) -> Result<(), LoadError> {
        self.flush()?;
        // Caches are up to date but for the last few files, which the
        // reload applies (and caches) again.
        self.docs.clear();
        let seen = self.view.take_sightings();
        self.view = View::new();
        self.view.set_sightings(seen);
        self.loaded_at = self.clock.now_ms();
        self.refresh()?;
        Ok(())
    }

    /// Whether the last load is older than `[worker] reload-every`
    /// (default 10 minutes): then a long-lived process compacts its replica
    /// (so the reload reads snapshots) and [`reload`](Self::reload)s.
    pub fn reload_due(&self) -> Result<bool, LoadError> {
        let every =
            Millis::try_from(self.ws.config.reload_every()?.as_millis()).unwrap_or(Millis::MAX);
        Ok(self.clock.now_ms().saturating_sub(self.loaded_at) >= every)
    }

    /// Now, as this session's clock says.
    pub fn now_ms(&self) -> Millis {
        self.clock.now_ms()
    }

    /// This session's clock (the system's, or a test's).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Loads the archived documents too (for `show`, `outputs`, `logs` of
    /// an archived task, and for `gc`). Returns how many were loaded.
    pub fn load_archived(&mut self) -> Result<usize, LoadError> {
        let replica = self.ws.replica.clone();
        let vault = self.vault.clone();
        let names = replica
            .list_docs_in(bridge_store::DocFolder::Archive)
            .map_err(LoadError::ListArchived)?;
        let mut loaded_docs = 0;
        for name in names {
            let Ok(id) = name.parse::<DocId>() else {
                continue;
            };
            if self.docs.contains_key(&id) || vault.is_foreign_doc(&name) {
                continue;
            }
            let (loaded, warnings) =
                bridge_store::load_doc(&replica, &name, &*vault).map_err(|source| {
                    LoadError::ReadArchived {
                        name: name.clone(),
                        source,
                    }
                })?;
            for w in warnings {
                let key = w.path.display().to_string();
                self.warn_once(&key, || w.to_string());
            }
            self.docs.insert(
                id.clone(),
                OpenDoc {
                    loaded,
                    ..OpenDoc::empty()
                },
            );
            let _ = self.reread(&id, None);
            loaded_docs += 1;
        }
        Ok(loaded_docs)
    }

    /// Re-reads one document's tasks into the view.
    /// Reads the tasks of document `id` again (and caches it, with
    /// `save_to`). Returns how many of its tasks are unfinished.
    fn reread(&mut self, id: &DocId, save_to: Option<&Path>) -> usize {
        let Some(open) = self.docs.get_mut(id) else {
            return 0;
        };
        let Some((header, records, problems)) =
            read_open_doc(&self.vault, id, open, save_to, AfterCache::Keep, None)
        else {
            return 0;
        };
        self.add_read(id, &header, records, problems)
    }

    /// Reads again only the tasks `keys` of document `id` (those the files
    /// just applied touched) into the view.
    fn reread_tasks(&mut self, id: &DocId, keys: &std::collections::BTreeSet<String>) {
        let Some(open) = self.docs.get(id) else {
            return;
        };
        let Some(header) = open.header.clone() else {
            // The genesis had not arrived: read it all, header first.
            self.reread(id, None);
            return;
        };
        let began = std::time::Instant::now();
        let (records, problems) = doc::read_named_tasks(&open.loaded.doc, &*self.vault, keys);
        tracing::debug!(doc = %id, tasks = records.len(), ms = began.elapsed().as_millis(), "touched tasks read");
        self.add_read(id, &header, records, problems);
    }

    /// Puts a document's tasks, as read, into the view and warns about its
    /// problems. Returns how many of its tasks are unfinished.
    fn add_read(
        &mut self,
        id: &DocId,
        header: &BatchHeader,
        records: Vec<TaskRecord>,
        problems: Vec<doc::Problem>,
    ) -> usize {
        let open_tasks = self.note_read(id, header, &records, problems);
        self.view.add_records(id, header, records);
        open_tasks
    }

    /// What [`add_read`](Self::add_read) does besides adding the tasks to
    /// the view: confirms the grant, warns about the problems, and returns
    /// how many of the tasks are unfinished.
    fn note_read(
        &mut self,
        id: &DocId,
        header: &BatchHeader,
        records: &[TaskRecord],
        problems: Vec<doc::Problem>,
    ) -> usize {
        let open_tasks = unfinished(records);
        if let Some(grant) = &header.grant {
            self.vault.confirm_first_grant(header.batch.as_str(), grant);
        }
        for p in problems {
            let key = format!("{id}/{}", p.task);
            self.warn_once(&key, || {
                format!("skipped task {} in document {id}: {}", p.task, p.message)
            });
        }
        open_tasks
    }

    fn warn_once(&mut self, key: &str, message: impl FnOnce() -> String) {
        if self.warned.insert(key.to_owned()) {
            tracing::warn!("{}", message());
        }
    }

    /// The next fact key of this process (`<writer>.<n>`).
    pub fn next_key(&mut self) -> String {
        self.seq += 1;
        bridge_model::facts::fact_key(&self.writer, self.seq)
    }

    /// Adds a new document (a genesis change already made).
    pub fn add_new_doc(&mut self, id: DocId, header: BatchHeader, mut doc: AutoCommit) {
        // The genesis is this process's only change to the new document.
        let genesis: Vec<Vec<u8>> = doc
            .get_last_local_change()
            .map(|c| vec![c.raw_bytes().to_vec()])
            .unwrap_or_default();
        let (records, _) = doc::read_tasks(&doc, &*self.vault);
        if let Some(grant) = &header.grant {
            self.vault.confirm_first_grant(header.batch.as_str(), grant);
        }
        self.view.add_records(&id, &header, records);
        self.docs.insert(
            id,
            OpenDoc {
                loaded: LoadedDoc {
                    doc,
                    applied: BTreeSet::new(),
                    skipped: BTreeSet::new(),
                },
                header: Some(header),
                unflushed: genesis,
                actor_set: true,
                ..OpenDoc::empty()
            },
        );
    }

    /// Makes one change to a document in memory, with this process's actor,
    /// committed at `now`. It reaches the replica at the next [`flush`](Self::flush).
    pub fn change<T>(
        &mut self,
        id: &DocId,
        now: Millis,
        message: &str,
        f: impl FnOnce(&mut AutoCommit) -> Result<T, doc::DocError>,
    ) -> Result<T, WriteError> {
        let open = self
            .docs
            .get_mut(id)
            .ok_or_else(|| WriteError::NotInReplica { id: id.clone() })?;
        open.materialize_or_read(&self.vault, &self.ws.replica, &id.to_string());
        if !open.actor_set {
            open.loaded.doc.set_actor(self.writer.actor());
            open.actor_set = true;
        }
        let out = match f(&mut open.loaded.doc) {
            Ok(v) => v,
            Err(e) => {
                open.loaded.doc.rollback();
                return Err(WriteError::Change {
                    id: id.clone(),
                    source: Box::new(e),
                });
            }
        };
        // An empty change commits nothing; then there is nothing to save.
        if doc::commit(&mut open.loaded.doc, now, message).is_some()
            && let Some(change) = open.loaded.doc.get_last_local_change()
        {
            open.unflushed.push(change.raw_bytes().to_vec());
        }
        Ok(out)
    }

    /// How many changes to document `id` wait for the next flush.
    #[cfg(test)]
    pub(crate) fn unflushed_changes(&self, id: &DocId) -> usize {
        self.docs.get(id).map_or(0, |open| open.unflushed.len())
    }

    /// The view, for noting facts this process just wrote.
    pub fn view_mut(&mut self) -> &mut View {
        &mut self.view
    }

    /// Takes in what a sync did: warns once about each file it skipped
    /// and each damaged file it repaired, makes the documents read the
    /// repaired files again (they were skipped as damaged, and a loaded
    /// document never reads a skipped file again, since store files do
    /// not change: a repair is the one exception), then applies what
    /// arrived. Returns how many files were applied.
    pub fn after_sync(&mut self, report: &bridge_store::SyncReport) -> Result<usize, LoadError> {
        if let LoadPlan::Touched(touched) = &mut self.plan {
            touched.extend(report.touched_docs.iter().cloned());
        }
        for w in &report.skipped {
            // Keyed by path like the loader's warnings: a file both refuse
            // (a local junk file the sync cannot push either) is named once.
            let key = w.path.display().to_string();
            self.warn_once(&key, || w.to_string());
        }
        // Warned about, and their documents' caches dropped, by the sync
        // itself (`compact::sync_store`).
        for w in &report.repaired {
            let Ok(rel) = w.path.strip_prefix(self.ws.replica.root()) else {
                continue;
            };
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let [_, doc, file] = parts.as_slice() else {
                continue;
            };
            if let LoadPlan::Touched(touched) = &mut self.plan {
                touched.insert(doc.clone());
            }
            if doc == ROSTER_DOC {
                // Read again with the roster's file count check.
                self.roster_files = 0;
            }
            if doc == AUDIENCE_DOC {
                self.grant_files = usize::MAX;
            }
            if let Some(open) = doc
                .parse::<DocId>()
                .ok()
                .and_then(|id| self.docs.get_mut(&id))
            {
                open.loaded.skipped.remove(file);
                open.warnings.retain(|o| o.path != w.path);
                open.cached_files = 0;
            }
        }
        self.refresh()
    }

    /// Writes every document's unflushed changes as one chunk file each
    /// (atomic and durable: temp file, fsync, link).
    pub fn flush(&mut self) -> Result<(), WriteError> {
        for (id, open) in &mut self.docs {
            if open.unflushed.is_empty() {
                continue;
            }
            let sealed =
                self.vault
                    .seal_chunk(&id.to_string(), &self.writer.actor(), &open.unflushed)?;
            let name = self
                .ws
                .replica
                .write_chunk(&id.to_string(), &sealed)
                .map_err(|source| WriteError::Save {
                    id: id.clone(),
                    source: Box::new(source),
                })?;
            open.loaded.applied.insert(name);
            open.unflushed.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bridge_crypto::{Identity, Roster};

    use super::*;
    use crate::clock::ManualClock;
    use crate::workspace::Config;

    const START: Millis = 1_700_000_000_000;

    fn session(dir: &Path, clock: Arc<ManualClock>) -> Session {
        session_with(
            dir,
            clock,
            &Identity::generate().expect("a key"),
            LoadPlan::All,
        )
    }

    fn session_with(
        dir: &Path,
        clock: Arc<ManualClock>,
        identity: &Identity,
        plan: LoadPlan,
    ) -> Session {
        let (roster, genesis) = Roster::genesis(identity, "me", "ws", 1).expect("a roster");
        let text = format!(
            "[workspace]\nid = \"ws\"\nroot = \"{}\"\n[worker]\nreload-every = \"10m\"\n",
            identity.member_id()
        );
        let config =
            Config::parse_str(&text, &dir.join("bridge.toml")).unwrap_or_else(|e| panic!("{e}"));
        let ws = Workspace::with_config(dir, config, Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        if ws
            .replica
            .list_chunks(ROSTER_DOC)
            .unwrap_or_default()
            .is_empty()
        {
            Vault::new(ws.replica.clone(), identity.clone(), roster)
                .write_roster_file(&genesis)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let (vault, _) = Vault::open(ws.replica.clone(), identity.clone(), identity.member_id())
            .unwrap_or_else(|e| panic!("{e}"));
        Session::with_clock(ws, vault, plan, clock).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One public batch of one task, submitted and flushed by `s`.
    fn submit_one(s: &mut Session, now: Millis) -> DocId {
        let ids = crate::worker::claiming_tests::submit(s, &["one"], now);
        s.view()
            .get(&ids[0])
            .map(|t| t.home().clone())
            .expect("the task just submitted")
    }

    /// A workspace where `identity` submitted one task (its session
    /// dropped), and the task's document.
    fn one_submitted(clock: &Arc<ManualClock>, identity: &Identity) -> (tempfile::TempDir, DocId) {
        let tmp = tempfile::tempdir().expect("a temp folder");
        let mut a = session_with(tmp.path(), clock.clone(), identity, LoadPlan::All);
        let doc = submit_one(&mut a, START);
        (tmp, doc)
    }

    #[test]
    fn a_sync_reads_only_the_documents_it_touched_and_records_no_sighting() {
        let clock = ManualClock::at(START);
        let identity = Identity::generate().expect("a key");
        let (tmp, doc) = one_submitted(&clock, &identity);
        // Read (and cached) once on this device, as any command does.
        drop(session_with(
            tmp.path(),
            clock.clone(),
            &identity,
            LoadPlan::All,
        ));
        let cache_dir = cache::dir(&tmp.path().join(STATE_DIR));
        let before = cache::load_sightings(&cache_dir);
        clock.advance(60_000);
        // What `bridge sync` opens: the vault, and no task.
        let mut s = session_with(tmp.path(), clock.clone(), &identity, LoadPlan::touched());
        assert_eq!(s.view().len(), 0);
        assert_eq!(s.refresh().expect("refreshed"), 0);
        // A sync that pulled nothing of it reads nothing…
        s.after_sync(&bridge_store::SyncReport::default())
            .expect("applied");
        assert_eq!(s.view().len(), 0);
        // …one that brought a file of it reads it.
        let report = bridge_store::SyncReport {
            pulled: 1,
            touched_docs: [doc.to_string()].into(),
            ..Default::default()
        };
        s.after_sync(&report).expect("applied");
        assert_eq!(s.view().len(), 1);
        drop(s);
        assert_eq!(cache::load_sightings(&cache_dir), before);
        // The next command that shows tasks reads it.
        let all = session_with(tmp.path(), clock.clone(), &identity, LoadPlan::All);
        assert_eq!(all.view().len(), 1);
        drop(all);
        // A document never read here (no cache) is read, and so checked.
        cache::forget(&cache_dir, &doc.to_string());
        let s = session_with(tmp.path(), clock, &identity, LoadPlan::touched());
        assert_eq!(s.view().len(), 1);
    }

    /// A worker's session (issue 18, item 1) keeps a document with
    /// unfinished tasks parsed after reading it for the first time: its
    /// first claim then changes it as it is, where any other command's
    /// session drops it and would read its files again.
    #[test]
    fn issue18_a_workers_session_keeps_a_document_with_unfinished_tasks_parsed() {
        let clock = ManualClock::at(START);
        let identity = Identity::generate().expect("a key");
        let (tmp, doc) = one_submitted(&clock, &identity);
        let cache_dir = cache::dir(&tmp.path().join(STATE_DIR));
        let parsed = |plan: LoadPlan| {
            // Read for the first time on this device: no cache.
            cache::forget(&cache_dir, &doc.to_string());
            let s = session_with(tmp.path(), clock.clone(), &identity, plan);
            assert_eq!(s.view().len(), 1);
            s.docs.get(&doc).map(|open| open.lazy.is_none())
        };
        assert_eq!(parsed(LoadPlan::All), Some(false), "dropped after reading");
        assert_eq!(parsed(LoadPlan::Work), Some(true), "kept parsed");
        // Once its task is done there is nothing to keep it for.
        let mut w = session_with(tmp.path(), clock.clone(), &identity, LoadPlan::Work);
        let task = w
            .view()
            .tasks()
            .next()
            .map(|t| t.id.clone())
            .expect("a task");
        let attempt: bridge_model::Attempt = serde_json::from_value(serde_json::json!({
            "key": w.next_key(), "started_at": START, "ended_at": START, "outcome": "success",
        }))
        .expect("an attempt");
        w.change(&doc, START, "attempt", |d| {
            doc::put_attempt(d, &task, &attempt)
        })
        .expect("an attempt");
        w.flush().expect("flushed");
        drop(w);
        assert_eq!(parsed(LoadPlan::Work), Some(false));
    }

    #[test]
    fn the_session_reads_now_from_its_clock() {
        let tmp = tempfile::tempdir().expect("a temp folder");
        let clock = ManualClock::at(START);
        let s = session(tmp.path(), clock.clone());
        // The writer id is time-ordered from the session's clock.
        let started = hex::encode((START as u64).to_be_bytes());
        assert!(
            s.writer.as_str().starts_with(&started),
            "{}",
            s.writer.as_str()
        );
        clock.advance(5_000);
        assert_eq!(s.now_ms(), START + 5_000);
    }

    #[test]
    fn a_reload_falls_due_when_the_clock_passes_reload_every() {
        let tmp = tempfile::tempdir().expect("a temp folder");
        let clock = ManualClock::at(START);
        let mut s = session(tmp.path(), clock.clone());
        assert!(!s.reload_due().expect("a setting"));
        clock.advance(10 * 60_000 - 1);
        assert!(!s.reload_due().expect("a setting"));
        clock.advance(1);
        assert!(s.reload_due().expect("a setting"));
        s.reload().unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.reload_due().expect("a setting"));
    }
}
