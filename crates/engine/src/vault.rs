//! The encryption layer over the replica: every chunk and blob is signed by
//! its writer and age-encrypted to the workspace's current members before it
//! is written, and decrypted and verified before anything parses it.
//!
//! # What is checked when a file is read
//!
//! 1. its name is the sha256 of its bytes (the store does this);
//! 2. it decrypts with this device's key;
//! 3. its header names this workspace, the document whose folder holds it,
//!    and a writer who was a member in the epoch it claims and had not been
//!    removed by then (or whose file the removal accepted);
//! 4. the signature verifies with that member's key, and the payload matches
//!    the signed hash;
//! 5. only then are the changes parsed, and each change's Automerge actor must
//!    be one the header declares and not bound to another member.
//!
//! The roster itself is stored as the chunk files of the reserved document
//! `roster` (`chunks/roster/<sha256>.chunk`), so any remote that syncs chunks
//! syncs it.
//!
//! # Private batches (issue 13)
//!
//! A batch with an audience has grants in the reserved document
//! `audiences` (`chunks/audiences/<sha256>.chunk`, see
//! [`bridge_crypto::grant`]), read when the vault opens. Every file of such
//! a batch (its documents' chunks and snapshots, and blobs written with
//! [`Placement::Batch`]) is sealed to the newest valid grant's key instead
//! of the roster's data key; the vault decrypts with every key it holds.
//! A device outside the audience holds no key: the session, compaction and
//! gc skip the batch's files ([`Vault::is_foreign_doc`],
//! [`Vault::is_foreign_blob`]) rather than refuse or delete them, and show
//! the batch from its grant's notice only.
//!
//! Blob files are named by the sha256 of their ciphertext, so a non-member
//! learns nothing about which plaintexts are equal; tasks identify inputs by
//! the sha256 of the plaintext, which only members can read.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow, bail};
use automerge::ActorId;
use bridge_crypto::{BatchAudience, Notice};
use bridge_crypto::{
    Domain, EnvelopeError, Expect, Header, Identity, Member, MemberId, Opened, Role, Roster,
    RosterWarning, accepted_key, open_verified_with, open_with, seal, verify_signed,
};
use bridge_model::doc::Authority;
use bridge_model::{BatchId, WriterId};
use bridge_store::{BlobId, ChunkOpener, DocFolder, OpenedEntry, Replica};
use sha2::{Digest, Sha256};

use crate::error::{CliError, CliResult};
use crate::snapshot;

/// The largest file stored as a blob (a task input or output): the
/// store's blob limit ([`bridge_store::names::MAX_BLOB_BYTES`]) less room
/// for encryption (age adds 16 bytes per 64 KiB, plus the signed header).
pub const MAX_BLOB_PLAIN_BYTES: u64 =
    bridge_store::names::MAX_BLOB_BYTES - bridge_store::names::MAX_BLOB_BYTES / 1024 - (1 << 20);

/// The reserved document whose chunks are the roster's epochs.
pub const ROSTER_DOC: &str = "roster";

/// The reserved document whose chunks are the audience grants of private
/// batches (issue 13; see [`bridge_crypto::grant`]).
pub const AUDIENCE_DOC: &str = "audiences";

/// Whether `doc` is a reserved document (not a batch's): loading,
/// compaction, caching and gc leave these alone.
pub fn is_reserved_doc(doc: &str) -> bool {
    doc == ROSTER_DOC || doc == AUDIENCE_DOC
}

/// Where a blob goes: to the whole pool (sealed to the roster's data key),
/// or with a batch (sealed to its audience's key when it is private). An
/// explicit argument of every blob write, so that no caller can forget a
/// private batch's placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Readable by every member.
    Pool,
    /// Belongs to this batch: private to its audience if it has one.
    Batch(BatchId),
}

/// Signs, encrypts, decrypts and verifies the files of one workspace.
pub struct Vault {
    identity: Identity,
    roster: Roster,
    workspace: String,
    replica: Replica,
    /// Every epoch's data key, which decrypt chunks and blobs, then every
    /// private batch key this device can open (from the audience grants).
    data_keys: Vec<age::x25519::Identity>,
    /// Every audience grant that opened and verified, by batch id.
    notices: HashMap<String, Vec<Notice>>,
    /// Private batches whose keys this device holds.
    readable_batches: BTreeSet<String>,
    /// Who submitted a private batch, as read from its first document by
    /// this device (an audience member): a generation-0 grant by anyone
    /// else is ignored.
    submitters: Mutex<std::collections::BTreeMap<String, BTreeSet<MemberId>>>,
    /// How many grant files were read (a new one makes the session reopen
    /// the vault).
    grant_files: usize,
    /// Automerge actor (hex) → the member that signed it, and their role.
    bindings: Mutex<HashMap<String, (MemberId, Role)>>,
    /// Store names of blobs written since the last `take_written_blobs`.
    written_blobs: Mutex<Vec<String>>,
    /// Verified snapshots opened by this process, by store name.
    snapshot_indexes: Mutex<HashMap<String, Arc<SnapshotIndex>>>,
    /// Digests of local chunk files' signed envelopes, by store name.
    chunk_digests: Mutex<HashMap<String, [u8; 32]>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("member", self.identity.member_id())
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Reads and verifies the roster in `replica`, rooted in `root`.
    pub fn open(
        replica: Replica,
        identity: Identity,
        root: &MemberId,
    ) -> CliResult<(Vault, Vec<RosterWarning>)> {
        let workspace = replica.workspace_id().to_owned();
        let files = read_roster_files(&replica)?;
        let (roster, mut warnings) = Roster::verify(&files, &identity, &workspace, root).map_err(|e| {
            CliError::hint(
                anyhow!(e).context(format!("cannot verify the member roster of workspace {workspace}")),
                "if this device was just added, run `bridge sync`; otherwise ask an admin to add it with `bridge members add`",
            )
        })?;
        // Every epoch is kept sealed to the members of its time and re-sealed
        // to later members; the copies not meant for this device are normal.
        warnings.retain(|w| !matches!(w, RosterWarning::NotForUs { .. }));
        let mut vault = Vault::new(replica, identity, roster);
        vault.load_grants();
        Ok((vault, warnings))
    }

    /// Reads every audience grant in the replica: their notices, and the
    /// batch keys this device can open (added to the keys that decrypt).
    /// A grant that does not open or verify is skipped with a warning.
    fn load_grants(&mut self) {
        let names = self.replica.list_chunks(AUDIENCE_DOC).unwrap_or_default();
        self.grant_files = names.len();
        let mut notices: HashMap<String, Vec<Notice>> = HashMap::new();
        for name in names {
            let file = DocFolder::Chunks.store_name(AUDIENCE_DOC, &name);
            let opened = self
                .replica
                .read_chunk(AUDIENCE_DOC, &name)
                .map_err(|e| e.to_string())
                .and_then(|sealed| {
                    bridge_crypto::open_grant(&self.data_keys, &self.roster, &sealed, &file)
                        .map_err(|e| e.to_string())
                });
            match opened {
                Ok(n) => notices.entry(n.body.batch.clone()).or_default().push(n),
                Err(e) => tracing::warn!("skipped audience grant {file}: {e}; left in place"),
            }
        }
        let mut extra = Vec::new();
        for (batch, list) in &notices {
            for n in list {
                if let Some(keys) = n.open_keys(&self.identity) {
                    self.readable_batches.insert(batch.clone());
                    extra.extend(keys.iter().map(|k| k.identity().clone()));
                }
            }
        }
        self.data_keys.extend(extra);
        self.notices = notices;
    }

    /// Every key that decrypts a store file here: the roster's data keys
    /// and the private batch keys this device holds.
    pub fn read_keys(&self) -> Vec<age::x25519::Identity> {
        self.data_keys.clone()
    }

    /// How many grant files the vault read.
    pub fn grant_files(&self) -> usize {
        self.grant_files
    }

    /// The grant files in the replica now.
    pub fn count_grant_files(replica: &Replica) -> usize {
        replica.list_chunks(AUDIENCE_DOC).map_or(0, |l| l.len())
    }

    /// The valid grants of `batch` (see [`bridge_crypto::resolve`]), if it
    /// is private; `None` for a batch with no valid grant.
    pub fn audience(&self, batch: &str) -> Option<BatchAudience> {
        let list = self.notices.get(batch)?;
        let submitters = self
            .submitters
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        bridge_crypto::resolve(list, &self.roster, &submitters).remove(batch)
    }

    /// Every private batch with a valid grant, by id.
    pub fn private_batches(&self) -> std::collections::BTreeMap<String, BatchAudience> {
        let mut out = std::collections::BTreeMap::new();
        for batch in self.notices.keys() {
            if let Some(a) = self.audience(batch) {
                out.insert(batch.clone(), a);
            }
        }
        out
    }

    /// Whether `batch` is private and this device is not in it: it holds
    /// none of its keys, or its newest generation leaves this device out
    /// (removed from the audience: nothing written since opens here). Its
    /// files are skipped (not refused, not repaired, never deleted).
    pub fn is_foreign_batch(&self, batch: &str) -> bool {
        if !self.notices.contains_key(batch) {
            return false;
        }
        if !self.readable_batches.contains(batch) {
            return true;
        }
        let me = self.identity.member_id();
        !self.audience(batch).is_some_and(|a| {
            a.generations
                .last()
                .is_some_and(|newest| newest.iter().any(|n| n.includes(me)))
        })
    }

    /// Whether document `doc` belongs to a batch this device cannot read.
    pub fn is_foreign_doc(&self, doc: &str) -> bool {
        doc.parse::<bridge_model::DocId>()
            .is_ok_and(|id| self.is_foreign_batch(id.batch().as_str()))
    }

    /// Records the generation-0 grant that private batch `batch`'s own
    /// header names (read from its encrypted documents, so only its
    /// audience knows it): only that grant's writer counts as the batch's
    /// submitter, and a generation 0 by anyone else (a forgery by another
    /// submit member) is ignored.
    pub fn confirm_first_grant(&self, batch: &str, hash: &str) {
        let Some(writer) = self
            .notices
            .get(batch)
            .and_then(|list| {
                list.iter()
                    .find(|n| n.hash == hash && n.body.generation == 0)
            })
            .map(|n| n.writer.clone())
        else {
            return;
        };
        if let Ok(mut s) = self.submitters.lock() {
            s.entry(batch.to_owned()).or_default().insert(writer);
        }
    }

    /// Adds a grant this device just wrote (and stored) to what it reads.
    pub fn add_grant(&mut self, notice: Notice) {
        if let Some(keys) = notice.open_keys(&self.identity) {
            self.readable_batches.insert(notice.body.batch.clone());
            self.data_keys
                .extend(keys.iter().map(|k| k.identity().clone()));
        }
        self.grant_files += 1;
        self.notices
            .entry(notice.body.batch.clone())
            .or_default()
            .push(notice);
    }

    /// Writes a sealed grant into the replica; returns its store name.
    pub fn write_grant_file(&self, bytes: &[u8]) -> CliResult<String> {
        let name = self
            .replica
            .write_chunk(AUDIENCE_DOC, bytes)
            .context("cannot save the audience grant")?;
        Ok(format!("chunks/{AUDIENCE_DOC}/{name}"))
    }

    /// The recipient a file of `batch` is sealed to: the newest valid
    /// grant's, for a private batch; `None` for a batch of the pool.
    fn batch_recipient(&self, batch: &str) -> CliResult<Option<age::x25519::Recipient>> {
        if !self.notices.contains_key(batch) {
            return Ok(None);
        }
        let Some(newest) = self.audience(batch).and_then(|a| a.newest().cloned()) else {
            // Grants exist but none is valid here (a forged generation 0
            // for a batch of the pool, seen by a member who read the
            // batch): the batch stays the pool's.
            return Ok(None);
        };
        let recipient = newest.body.recipient.parse().map_err(|e: &str| {
            anyhow!("the audience grant of batch {batch} names a bad recipient: {e}")
        })?;
        Ok(Some(recipient))
    }

    /// A vault over a roster already in hand (a new workspace).
    pub fn new(replica: Replica, identity: Identity, roster: Roster) -> Vault {
        Vault {
            workspace: replica.workspace_id().to_owned(),
            identity,
            data_keys: roster.data_identities(),
            roster,
            replica,
            notices: HashMap::new(),
            readable_batches: BTreeSet::new(),
            submitters: Mutex::new(std::collections::BTreeMap::new()),
            grant_files: 0,
            bindings: Mutex::new(HashMap::new()),
            written_blobs: Mutex::new(Vec::new()),
            snapshot_indexes: Mutex::new(HashMap::new()),
            chunk_digests: Mutex::new(HashMap::new()),
        }
    }

    /// This device's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The verified roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Replaces the roster after a change this device made.
    pub fn set_roster(&mut self, roster: Roster) {
        self.data_keys = roster.data_identities();
        self.roster = roster;
        self.readable_batches.clear();
        self.load_grants();
    }

    /// This device's entry in the latest epoch.
    pub fn me(&self) -> CliResult<&Member> {
        self.roster
            .latest()
            .member(self.identity.member_id())
            .ok_or_else(|| {
                CliError::hint(
                    anyhow!(
                        "this device ({}) is not a member of workspace {}",
                        self.identity.member_id(),
                        self.workspace
                    ),
                    format!(
                        "ask an admin to run `bridge members add NAME {}`, then `bridge sync`",
                        self.identity.public()
                    ),
                )
            })
    }

    /// Signs and encrypts a chunk of document `doc`: `changes` are raw
    /// Automerge changes, all made by `actor`.
    pub fn seal_chunk(
        &self,
        doc: &str,
        actor: &ActorId,
        changes: &[Vec<u8>],
    ) -> CliResult<Vec<u8>> {
        let me = self.me()?;
        let mut payload = Vec::with_capacity(changes.iter().map(|c| c.len() + 4).sum());
        for c in changes {
            let len =
                u32::try_from(c.len()).map_err(|_| anyhow!("an Automerge change over 4 GiB"))?;
            payload.extend_from_slice(&len.to_be_bytes());
            payload.extend_from_slice(c);
        }
        let actor_hex = actor.to_hex_string();
        self.bind(&actor_hex, me.id(), me.role);
        let header = self.header(Domain::Chunk, doc, vec![actor_hex]);
        self.seal(&header, &payload, &placement_of_doc(doc))
    }

    /// The header of a file this device writes now (chunks and blobs; roster
    /// files come sealed from [`Roster::add_member`] and friends).
    fn header(&self, domain: Domain, document: &str, actors: Vec<String>) -> Header {
        Header {
            domain,
            workspace: self.workspace.clone(),
            document: document.to_owned(),
            epoch: self.roster.latest().number,
            writer: self.identity.member_id().clone(),
            actors,
            sha256: String::new(),
        }
    }

    fn seal(&self, header: &Header, payload: &[u8], placement: &Placement) -> CliResult<Vec<u8>> {
        let private = match placement {
            Placement::Pool => None,
            Placement::Batch(batch) => self.batch_recipient(batch.as_str())?,
        };
        // A private batch's file: to its newest grant's key, which only
        // its audience holds. Otherwise to the epoch's data key: every
        // member of this epoch or a later one can read it; a member
        // removed before it cannot.
        let recipient = match private {
            Some(r) => r,
            None => self
                .roster
                .data_recipient()
                .ok_or_else(|| anyhow!("the roster's latest epoch has no data key"))?,
        };
        seal(&self.identity, &[recipient], header, payload).map_err(|e| {
            anyhow!(e)
                .context("cannot encrypt a file for the store")
                .into()
        })
    }

    /// Binds this process's own actor to this device's member entry, so what
    /// it writes is attributed to it before any file round-trips.
    pub fn bind_own_actor(&self, actor: &ActorId) {
        if let Ok(me) = self.me() {
            self.bind(&actor.to_hex_string(), me.id(), me.role);
        }
    }

    fn bind(&self, actor: &str, member: MemberId, role: Role) {
        if let Ok(mut b) = self.bindings.lock() {
            b.entry(actor.to_owned()).or_insert((member, role));
        }
    }

    /// Stores a file as an encrypted blob. Returns the sha256 of its content
    /// (what task identities hash) and the blob's store id.
    pub fn put_blob_file(
        &self,
        path: &Path,
        placement: &Placement,
    ) -> anyhow::Result<(String, BlobId)> {
        // A blob over the store's limit would be refused by every reader
        // (issue 12, item 16): refused here, where the user can act on it.
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        if size > MAX_BLOB_PLAIN_BYTES {
            bail!(
                "{} is {size} bytes, over the limit of {MAX_BLOB_PLAIN_BYTES} bytes for one file in the store; split or compress it",
                path.display()
            );
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        self.put_blob_bytes(&bytes, placement)
    }

    /// Stores bytes as an encrypted blob (see [`put_blob_file`](Self::put_blob_file)).
    pub fn put_blob_bytes(
        &self,
        bytes: &[u8],
        placement: &Placement,
    ) -> anyhow::Result<(String, BlobId)> {
        self.me().map_err(|e| e.error)?;
        let header = self.header(Domain::Blob, "", Vec::new());
        let sealed = self.seal(&header, bytes, placement).map_err(|e| e.error)?;
        let id = self
            .replica
            .put_blob_bytes(&sealed)
            .context("cannot store an encrypted blob")?;
        // Queued for the worker's next push, which sends blobs before the
        // chunks that name them.
        if let Ok(mut written) = self.written_blobs.lock() {
            written.push(id.store_name());
        }
        Ok((hex::encode(Sha256::digest(bytes)), id))
    }

    /// Reads, decrypts and verifies a blob.
    pub fn read_blob(&self, id: &BlobId) -> anyhow::Result<Vec<u8>> {
        let sealed = self.replica.read_blob(id)?;
        let name = id.store_name();
        let opened = open_with(&self.data_keys, &sealed).map_err(|e| anyhow!("{name}: {e}"))?;
        let h = &opened.header;
        if h.domain != Domain::Blob {
            bail!("{name}: not a blob (it is a {} file)", h.domain);
        }
        if h.workspace != self.workspace {
            bail!(
                "{name}: belongs to workspace {}, not {}",
                h.workspace,
                self.workspace
            );
        }
        // A blob is reached through a verified chunk that names its
        // ciphertext hash, so any member who ever signed is accepted here.
        let key = self
            .roster
            .epochs()
            .iter()
            .find_map(|e| e.member(&h.writer))
            .map(|m| m.key.clone())
            .ok_or_else(|| anyhow!("{name}: signed by {}, who was never a member", h.writer))?;
        opened.verify(&key).map_err(|e| anyhow!("{name}: {e}"))?;
        Ok(opened.payload)
    }

    /// Whether blob `id` is sealed to a key this device does not hold (a
    /// private batch's, of an audience it is not in). A blob that cannot
    /// be read for another reason (missing, corrupt) is not foreign.
    pub fn is_foreign_blob(&self, id: &BlobId) -> bool {
        let Ok(sealed) = self.replica.read_blob(id) else {
            return false;
        };
        // The header says; the payload need not be decrypted.
        matches!(
            bridge_crypto::sealed_to_any(&self.data_keys, &sealed),
            Ok(false)
        )
    }

    /// Decrypts a blob into `dest` (atomically, creating folders). With
    /// `sha256`, the content must hash to it (a task input: the task's
    /// identity names the content, and the blob is only where it is stored).
    pub fn copy_blob_to(
        &self,
        id: &BlobId,
        dest: &Path,
        sha256: Option<&str>,
    ) -> anyhow::Result<()> {
        let bytes = self.read_blob(id)?;
        if let Some(expected) = sha256.filter(|s| !s.is_empty()) {
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != expected {
                bail!(
                    "{} holds content with sha256 {actual}, not the {expected} the task names: refused",
                    id.store_name()
                );
            }
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, dest).with_context(|| format!("cannot write {}", dest.display()))?;
        Ok(())
    }

    /// Store names of the blobs written since the last call.
    pub fn take_written_blobs(&self) -> Vec<String> {
        self.written_blobs
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// Writes a sealed roster file into the replica.
    pub fn write_roster_file(&self, bytes: &[u8]) -> CliResult<()> {
        self.replica
            .write_chunk(ROSTER_DOC, bytes)
            .context("cannot save the roster")?;
        Ok(())
    }
}

/// The tag of a member's actor ids (protocol code: in the crypto crate).
pub use bridge_crypto::member_tag;

/// Where the files of document `doc` go: with its batch.
fn placement_of_doc(doc: &str) -> Placement {
    match doc.parse::<bridge_model::DocId>() {
        Ok(id) => Placement::Batch(id.batch().clone()),
        Err(_) => Placement::Pool,
    }
}

fn read_roster_files(replica: &Replica) -> CliResult<Vec<(String, Vec<u8>)>> {
    let names = replica
        .list_chunks(ROSTER_DOC)
        .context("cannot list the roster files")?;
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        match replica.read_chunk(ROSTER_DOC, &name) {
            Ok(bytes) => files.push((format!("chunks/{ROSTER_DOC}/{name}"), bytes)),
            Err(e) => tracing::warn!("skipped roster file {name}: {e}"),
        }
    }
    Ok(files)
}

impl Vault {
    /// Checks the changes of a verified chunk envelope and returns them as
    /// Automerge bytes (the framing removed).
    fn accept_changes(&self, opened: &Opened, member: &Member) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(opened.payload.len());
        let mut rest = opened.payload.as_slice();
        let mut new_bindings: Vec<String> = Vec::new();
        let bindings = self
            .bindings
            .lock()
            .map_err(|_| "internal lock poisoned".to_owned())?;
        while !rest.is_empty() {
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or("the chunk's framing is truncated")?;
            let len = u32::from_be_bytes(*len) as usize;
            if tail.len() < len {
                return Err("the chunk's framing is truncated".into());
            }
            let (frame, tail) = tail.split_at(len);
            let change = automerge::Change::try_from(frame)
                .map_err(|e| format!("not an Automerge change: {e}"))?;
            // `try_from` does not check the checksum (bytes 4..8: the
            // first four of the change hash); a load would refuse it, and
            // a refused chunk in the middle of a batched load silently
            // hides the rest. Checked here, the store need not parse every
            // chunk twice (see `ChunkOpener::checks_changes`).
            if frame.get(4..8) != Some(&change.hash().0[..4]) {
                return Err("an Automerge change in it has a wrong checksum".into());
            }
            let actor = change.actor_id().to_hex_string();
            if WriterId::member_tag_of(change.actor_id().to_bytes())
                != Some(member_tag(&member.id()))
            {
                return Err(format!(
                    "it holds a change by actor {actor}, which is not bound to its signer {}",
                    member.name
                ));
            }
            // A writer adds values; it never overwrites or deletes another
            // writer's (every legitimate put replaces at most its own
            // earlier value). This keeps a member, a runner above all, from
            // deleting tasks or erasing others' results.
            // A change with no dependencies (a document's genesis, the
            // largest) can only supersede its own ops: skip decoding it.
            if !change.deps().is_empty()
                && change
                    .decode()
                    .operations
                    .iter()
                    .any(|op| op.pred.iter().any(|p| p.1 != *change.actor_id()))
            {
                return Err(format!(
                    "it overwrites or deletes values written by other members (signed by {})",
                    member.name
                ));
            }
            if !opened.header.actors.contains(&actor) {
                return Err(format!(
                    "it holds a change by actor {actor}, which its signer {} did not declare",
                    member.name
                ));
            }
            match bindings.get(&actor) {
                Some((m, _)) if *m != member.id() => {
                    return Err(format!(
                        "actor {actor} belongs to another member ({m}), not to its signer {}",
                        member.name
                    ));
                }
                Some(_) => {}
                None => new_bindings.push(actor),
            }
            out.extend_from_slice(frame);
            rest = tail;
        }
        drop(bindings);
        // Bind the new actors only once the whole chunk is accepted.
        for actor in new_bindings {
            self.bind(&actor, member.id(), member.role);
        }
        Ok(out)
    }

    fn expect_chunk<'a>(&'a self, doc: &'a str) -> Expect<'a> {
        Expect {
            domain: Domain::Chunk,
            workspace: &self.workspace,
            document: Some(doc),
        }
    }

    /// Decrypts and verifies chunk file `name` of `doc`; returns its signed
    /// envelope (what a snapshot bundles) and its writer.
    pub fn signed_chunk(&self, doc: &str, name: &str, sealed: &[u8]) -> Result<Opened, String> {
        let file = DocFolder::Chunks.store_name(doc, name);
        open_verified_with(
            &self.data_keys,
            &self.roster,
            sealed,
            &file,
            self.expect_chunk(doc),
        )
        .map(|(opened, _)| opened)
        .map_err(|e| e.to_string())
    }

    /// Every file of the replica that `member` signed and that verifies
    /// now, as the [`bridge_crypto::accepted_key`] a removal lists: their
    /// chunk files, their snapshot files (live and archived: a runner
    /// compacts, and its snapshots hold everyone's chunks) and the chunks of
    /// theirs bundled in anyone's snapshot. Blobs are not listed: a blob is
    /// read through a verified chunk that names it, whoever signed it.
    pub fn files_signed_by(&self, member: &MemberId) -> CliResult<SignedFiles> {
        let mut out = SignedFiles::default();
        let replica = &self.replica;
        let mut docs: BTreeSet<String> = BTreeSet::new();
        for folder in [DocFolder::Chunks, DocFolder::Snapshots, DocFolder::Archive] {
            docs.extend(
                replica
                    .list_docs_in(folder)
                    .with_context(|| format!("cannot list the documents in {}", folder.dir()))?,
            );
        }
        docs.remove(ROSTER_DOC);
        docs.remove(AUDIENCE_DOC);
        // Their audience grants: without them, a private batch they
        // submitted or rotated would lose its keys for everyone.
        for name in replica
            .list_chunks(AUDIENCE_DOC)
            .context("cannot list the audience grants")?
        {
            let Ok(sealed) = replica.read_chunk(AUDIENCE_DOC, &name) else {
                continue;
            };
            if let Ok(opened) = open_with(&self.data_keys, &sealed)
                && opened.header.domain == Domain::Grant
                && &opened.header.writer == member
            {
                out.keys.insert(accepted_key(&opened.signed_bytes()));
                out.grant_files += 1;
            }
        }
        for doc in &docs {
            for name in replica
                .list_chunks(doc)
                .with_context(|| format!("cannot list the chunks of {doc}"))?
            {
                let Ok(sealed) = replica.read_chunk(doc, &name) else {
                    continue;
                };
                if self.is_foreign_doc(doc) {
                    // A private batch this device cannot read (issue 13):
                    // its writer is unknown here, so the file is accepted
                    // by its store name (a hash of its bytes: no file made
                    // later can take it).
                    out.keys.insert(DocFolder::Chunks.store_name(doc, &name));
                    out.private_files += 1;
                    continue;
                }
                if let Ok(opened) = self.signed_chunk(doc, &name, &sealed)
                    && &opened.header.writer == member
                {
                    out.keys.insert(accepted_key(&opened.signed_bytes()));
                    out.chunk_files += 1;
                }
            }
            for folder in [DocFolder::Snapshots, DocFolder::Archive] {
                for name in replica
                    .list_doc_files(folder, doc)
                    .with_context(|| format!("cannot list the snapshots of {doc}"))?
                {
                    let Ok(sealed) = replica.read_doc_file(folder, doc, &name) else {
                        continue;
                    };
                    let file = folder.store_name(doc, &name);
                    if self.is_foreign_doc(doc) {
                        out.keys.insert(file);
                        out.private_files += 1;
                        continue;
                    }
                    let expect = Expect {
                        domain: Domain::Snapshot,
                        workspace: &self.workspace,
                        document: Some(doc),
                    };
                    let Ok((opened, _)) =
                        open_verified_with(&self.data_keys, &self.roster, &sealed, &file, expect)
                    else {
                        continue;
                    };
                    if &opened.header.writer == member {
                        out.keys.insert(accepted_key(&opened.signed_bytes()));
                        out.snapshot_files += 1;
                    }
                    let Ok(entries) = snapshot::decode(&opened.payload) else {
                        continue;
                    };
                    for (entry, signed) in entries {
                        let chunk_file = DocFolder::Chunks.store_name(doc, &entry);
                        if let Ok((opened, by)) =
                            verify_signed(&self.roster, signed, &chunk_file, self.expect_chunk(doc))
                            && &by.id() == member
                            && out.keys.insert(accepted_key(&opened.signed_bytes()))
                        {
                            out.bundled_chunks += 1;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Signs and encrypts a snapshot of `doc` bundling `entries` (chunk
    /// file names and signed envelopes, sorted by name).
    pub fn seal_snapshot(&self, doc: &str, entries: &[snapshot::Entry]) -> CliResult<Vec<u8>> {
        self.me()?;
        let payload = snapshot::encode(entries)
            .map_err(|e| anyhow!(e).context(format!("cannot encode a snapshot of {doc}")))?;
        let header = self.header(Domain::Snapshot, doc, Vec::new());
        self.seal(&header, &payload, &placement_of_doc(doc))
    }

    /// Opens a snapshot file: every bundled chunk's name, signed envelope,
    /// and Automerge bytes or why it is refused.
    fn open_snapshot_entries(
        &self,
        doc: &str,
        folder: DocFolder,
        name: &str,
        sealed: &[u8],
        known: &BTreeSet<String>,
    ) -> Result<Vec<CheckedEntry>, String> {
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
            .map_err(|e| e.to_string())
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
    ) -> Result<Vec<snapshot::Entry>, String> {
        let file = folder.store_name(doc, name);
        let expect = Expect {
            domain: Domain::Snapshot,
            workspace: &self.workspace,
            document: Some(doc),
        };
        let (opened, _) = open_verified_with(&self.data_keys, &self.roster, sealed, &file, expect)
            .map_err(|e| e.to_string())?;
        snapshot::decode(&opened.payload)
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

    fn remember_snapshot(&self, key: String, entries: &[CheckedEntry]) -> Arc<SnapshotIndex> {
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

/// What [`Vault::files_signed_by`] found.
#[derive(Debug, Default)]
pub struct SignedFiles {
    /// Each file's [`bridge_crypto::accepted_key`].
    pub keys: BTreeSet<String>,
    /// Chunk files among them.
    pub chunk_files: usize,
    /// Snapshot files (live or archived) among them.
    pub snapshot_files: usize,
    /// Chunks bundled in snapshots (and not also a chunk file here).
    pub bundled_chunks: usize,
    /// Audience grants among them.
    pub grant_files: usize,
    /// Files of private batches this device cannot read, whoever signed
    /// them: accepted by store name (their writer is unknown here).
    pub private_files: usize,
}

/// A snapshot entry as read: chunk file name, signed envelope, and its
/// Automerge bytes or why it is refused.
type CheckedEntry = (String, Vec<u8>, Result<Vec<u8>, String>);

/// What a verified snapshot bundles: chunk file name → sha256 of its signed
/// envelope.
pub type SnapshotIndex = std::collections::BTreeMap<String, [u8; 32]>;

impl ChunkOpener for Vault {
    fn checks_changes(&self) -> bool {
        true
    }

    fn open(&self, doc: &str, name: &str, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        let file = DocFolder::Chunks.store_name(doc, name);
        let (opened, member) = open_verified_with(
            &self.data_keys,
            &self.roster,
            &bytes,
            &file,
            self.expect_chunk(doc),
        )
        .map_err(|e: EnvelopeError| e.to_string())?;
        // Verified: now, and only now, parse the changes.
        self.accept_changes(&opened, &member)
    }

    fn open_snapshot(
        &self,
        doc: &str,
        folder: DocFolder,
        name: &str,
        bytes: Vec<u8>,
        known: &BTreeSet<String>,
    ) -> Result<Vec<OpenedEntry>, String> {
        let entries = self.open_snapshot_entries(doc, folder, name, &bytes, known)?;
        self.remember_snapshot(folder.store_name(doc, name), &entries);
        Ok(entries
            .into_iter()
            .map(|(entry, _, result)| (entry, result))
            .collect())
    }
}

impl Authority for Vault {
    fn can_submit(&self, actor: &ActorId) -> bool {
        let bound = self.bindings.lock().ok().and_then(|b| {
            b.get(&actor.to_hex_string())
                .map(|(_, role)| role.can_submit())
        });
        // Not bound by a file this process read: the change came from this
        // device's cache of verified documents, where every actor was
        // checked against its signer. Its tag names that signer.
        bound.unwrap_or_else(|| {
            WriterId::member_tag_of(actor.to_bytes())
                .and_then(|tag| self.role_of_tag(tag))
                .is_some_and(|role| role.can_submit())
        })
    }
}

impl Vault {
    /// The role of the member whose actor tag is `tag` (their latest entry
    /// in the roster), if any.
    fn role_of_tag(&self, tag: [u8; 8]) -> Option<Role> {
        self.roster
            .epochs()
            .iter()
            .rev()
            .flat_map(|e| e.members.iter())
            .find(|m| member_tag(&m.id()) == tag)
            .map(|m| m.role)
    }

    /// Seals `payload` for this device alone (its own cache): signed by it,
    /// encrypted to its own key.
    pub fn seal_private(&self, doc: &str, payload: &[u8]) -> CliResult<Vec<u8>> {
        let header = self.header(Domain::Cache, doc, Vec::new());
        seal(
            &self.identity,
            &[self.identity.public().recipient().clone()],
            &header,
            payload,
        )
        .map_err(|e| anyhow!(e).context("cannot encrypt the local cache").into())
    }

    /// Opens what [`seal_private`](Self::seal_private) sealed for `doc`.
    pub fn open_private(&self, doc: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let opened = bridge_crypto::open(&self.identity, sealed).map_err(|e| e.to_string())?;
        let h = &opened.header;
        if h.domain != Domain::Cache
            || h.workspace != self.workspace
            || h.document != doc
            || &h.writer != self.identity.member_id()
        {
            return Err("not this device's cache of this document".into());
        }
        opened
            .verify(&self.identity.public())
            .map_err(|e| e.to_string())?;
        Ok(opened.payload)
    }

    /// The hash of the roster's latest epoch: a cache made under another
    /// roster is not used (trust decisions may differ).
    pub fn roster_hash(&self) -> String {
        self.roster.latest().hash()
    }
}
