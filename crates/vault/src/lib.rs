//! The trust boundary of bridge: the encryption layer over the replica: every
//! chunk is signed by its writer and age-encrypted to the workspace's current
//! members before it is written, every blob sealed under a key only members
//! derive, and each is decrypted and verified before anything parses it.
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
//! Blob files are named by the sha256 of their ciphertext. A blob of the
//! pool is sealed convergently ([`bridge_crypto::convergent`], issue 18):
//! equal content under one roster epoch gives one file, however many tasks
//! or members store it; the host sees that a file is shared, not what it
//! holds, and cannot confirm a guess. A private batch's blobs stay age
//! envelopes to its audience's key (members outside the audience must not
//! confirm their content either). Tasks identify inputs by the sha256 of
//! the plaintext, which only members can read.
//!
//! # Layout
//!
//! - [`Vault`] (this file): opening the vault over a verified roster, and
//!   what it knows of this device ([`Vault::me`]).
//! - `seal`: signing and encrypting chunks, snapshots and this device's
//!   cache ([`Vault::seal_chunk`], [`Vault::seal_snapshot`],
//!   [`Vault::seal_private`]).
//! - `check`: opening and checking chunks change by change (the store's
//!   [`ChunkOpener`](bridge_store::ChunkOpener)), who may submit
//!   ([`Authority`](bridge_model::doc::Authority)), and the cache.
//! - `snapshots`: opening snapshot files and remembering what they bundle;
//!   [`snapshot`] is their payload's format.
//! - `blobs`: task inputs, outputs and logs, by [`Placement`].
//! - `grants`: private batches' audience grants and keys.
//! - `removal`: the files a member signed ([`Vault::files_signed_by`]),
//!   which their removal accepts.
//! - [`error`]: why a file is refused ([`Refusal`]), and each operation's
//!   error.
//!
//! The vault never prints and composes no hint: its errors say what
//! happened, with the facts (file, member, actor) as fields.

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(clippy::too_many_lines)]

mod blobs;
mod check;
pub mod error;
mod grants;
mod removal;
mod seal;
pub mod snapshot;
mod snapshots;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use automerge::ActorId;
use bridge_crypto::{Identity, Member, MemberId, Notice, Role, Roster, RosterWarning};
use bridge_model::BatchId;
use bridge_store::Replica;

pub use blobs::{MAX_BLOB_PLAIN_BYTES, max_plain_for_sealed};
pub use error::{BlobError, NotAMemberError, OpenError, Refusal, SaveError, ScanError, SealError};
pub use removal::SignedFiles;
pub use seal::{frame, unframe};
pub use snapshots::SnapshotIndex;

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
    /// Every epoch's convergent blob key, in epoch order (the latest last).
    blob_keys: Vec<bridge_crypto::BlobKey>,
    /// Every audience grant that opened and verified, by batch id.
    notices: HashMap<String, Vec<Notice>>,
    /// Private batches whose keys this device holds.
    readable_batches: BTreeSet<String>,
    /// Who submitted a private batch, as read from its first document by
    /// this device (an audience member): a generation-0 grant by anyone
    /// else is ignored.
    submitters: Mutex<BTreeMap<String, BTreeSet<MemberId>>>,
    /// How many grant files were read (a new one makes the session reopen
    /// the vault).
    grant_files: usize,
    /// Automerge actor (hex) → the member that signed it, and their role.
    bindings: Mutex<HashMap<String, (MemberId, Role)>>,
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
    ) -> Result<(Vault, Vec<RosterWarning>), OpenError> {
        let workspace = replica.workspace_id().to_owned();
        let files = read_roster_files(&replica)?;
        let (roster, mut warnings) =
            Roster::verify(&files, &identity, &workspace, root).map_err(|source| {
                OpenError::Roster {
                    workspace: workspace.clone(),
                    source,
                }
            })?;
        // Every epoch is kept sealed to the members of its time and re-sealed
        // to later members; the copies not meant for this device are normal.
        warnings.retain(|w| !matches!(w, RosterWarning::NotForUs { .. }));
        let mut vault = Vault::new(replica, identity, roster);
        vault.load_grants();
        Ok((vault, warnings))
    }

    /// A vault over a roster already in hand (a new workspace).
    pub fn new(replica: Replica, identity: Identity, roster: Roster) -> Vault {
        Vault {
            workspace: replica.workspace_id().to_owned(),
            identity,
            data_keys: roster.data_identities(),
            blob_keys: blob_keys(&roster),
            roster,
            replica,
            notices: HashMap::new(),
            readable_batches: BTreeSet::new(),
            submitters: Mutex::new(BTreeMap::new()),
            grant_files: 0,
            bindings: Mutex::new(HashMap::new()),
            snapshot_indexes: Mutex::new(HashMap::new()),
            chunk_digests: Mutex::new(HashMap::new()),
        }
    }

    /// Every key that decrypts a store file here: the roster's data keys
    /// and the private batch keys this device holds.
    pub fn read_keys(&self) -> Vec<age::x25519::Identity> {
        self.data_keys.clone()
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
        self.blob_keys = blob_keys(&roster);
        self.roster = roster;
        self.readable_batches.clear();
        self.load_grants();
    }

    /// This device's entry in the latest epoch.
    pub fn me(&self) -> Result<&Member, NotAMemberError> {
        self.roster
            .latest()
            .member(self.identity.member_id())
            .ok_or_else(|| NotAMemberError {
                member: self.identity.member_id().clone(),
                workspace: self.workspace.clone(),
                public: Box::new(self.identity.public()),
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

    /// The hash of the roster's latest epoch: a cache made under another
    /// roster is not used (trust decisions may differ).
    pub fn roster_hash(&self) -> String {
        self.roster.latest().hash()
    }
}

/// The tag of a member's actor ids (protocol code: in the crypto crate).
pub use bridge_crypto::member_tag;

fn blob_keys(roster: &Roster) -> Vec<bridge_crypto::BlobKey> {
    roster
        .epochs()
        .iter()
        .map(bridge_crypto::BlobKey::of_epoch)
        .collect()
}

/// Where the files of document `doc` go: with its batch.
fn placement_of_doc(doc: &str) -> Placement {
    match doc.parse::<bridge_model::DocId>() {
        Ok(id) => Placement::Batch(id.batch().clone()),
        Err(_) => Placement::Pool,
    }
}

fn read_roster_files(replica: &Replica) -> Result<Vec<(String, Vec<u8>)>, OpenError> {
    let names = replica
        .list_chunks(ROSTER_DOC)
        .map_err(OpenError::ListRoster)?;
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        match replica.read_chunk(ROSTER_DOC, &name) {
            Ok(bytes) => files.push((format!("chunks/{ROSTER_DOC}/{name}"), bytes)),
            Err(e) => tracing::warn!("skipped roster file {name}: {e}"),
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests;
