//! The roster: who the members of a workspace are, with which keys and roles,
//! as a signed, hash-chained list of [`Epoch`]s, and the rules that follow
//! from it (who may write a file, what a blob is named).
//!
//! Each epoch is one store file: the epoch's canonical JSON as the payload of
//! an envelope of domain `roster` ([`crate::envelope`]), signed by an admin of
//! the *previous* epoch and encrypted to the members of the *new* one. Epoch 0
//! (genesis) is signed by the root key whose [`MemberId`] every device pins
//! (in `bridge.toml` and its own config); every later epoch names the sha256
//! of its predecessor's canonical bytes in `prev`. [`Roster::verify`] rebuilds
//! the chain from whatever roster files a replica holds:
//!
//! - a file that cannot be opened, parsed, or linked is skipped with a
//!   [`RosterWarning`] naming it, never an error, unless no valid genesis is
//!   left ([`RosterError::NoGenesis`]);
//! - two valid epochs with the same number (two admins changed the roster
//!   offline) are a fork: the one with the lowest hash wins, on every replica,
//!   and the losing change (with anything built on it) must be made again;
//! - a reader that is not a recipient of an epoch (it was removed) keeps the
//!   chain up to the last epoch it can read.
//!
//! A member added later is not a recipient of the earlier epochs' files;
//! [`Roster::reseal_history`] re-encrypts them (byte-identical signed content,
//! so the original signatures still hold) to the current members, and the
//! caller stores those files next to the new epoch.
//!
//! Removing a member records a [`Removal`]: files the member wrote under
//! earlier epochs stay valid only if they are in its `accepted` set, named
//! by [`accepted_key`] (the sha256 of the signed envelope, so a chunk stays
//! accepted whether it lies loose or inside a snapshot, live or archived);
//! anything they sign later is refused. A removed key is never re-added.
//! The list is written once, in the epoch that makes the removal; later
//! epochs carry the removal with only the list's hash
//! ([`Removal::accepted_sha256`]), so a removal of a member that wrote many
//! files does not grow every later epoch (nor every re-sealed copy of them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::envelope::{self, Domain, EnvelopeError, Header, Opened};
use crate::identity::{Identity, MemberId, PublicKey, Role};

/// One member of a roster epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// A human name, unique in the epoch (a device or runner name).
    pub name: String,
    /// The member's public keys (serialized as their text).
    pub key: PublicKey,
    /// What the member may do.
    pub role: Role,
}

impl Member {
    /// The member's id.
    pub fn id(&self) -> MemberId {
        self.key.member_id()
    }
}

/// A member's removal, carried unchanged in every later epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Removal {
    /// Who was removed.
    pub member: MemberId,
    /// The epoch that removed them (the first epoch they are not in).
    pub epoch: u64,
    /// The files the removed member wrote before removal that stay valid:
    /// each as [`accepted_key`] of its signed envelope (or, in rosters made
    /// before that form, its store name); every other file they signed is
    /// refused. Listed only in the epoch that made the removal; later
    /// epochs carry it empty, with [`Removal::accepted_sha256`].
    pub accepted: BTreeSet<String>,
    /// In epochs after the removal's own: [`accepted_digest`] of the list
    /// its epoch holds, in place of the list. `None` in the removal's own
    /// epoch (and in rosters made before this form, which repeat the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_sha256: Option<String>,
}

impl Removal {
    /// The hash of the accepted list, carried or computed.
    fn digest(&self) -> String {
        self.accepted_sha256
            .clone()
            .unwrap_or_else(|| accepted_digest(&self.accepted))
    }

    /// This removal as a later epoch carries it: the list replaced by its
    /// hash.
    fn carried(&self) -> Removal {
        Removal {
            member: self.member.clone(),
            epoch: self.epoch,
            accepted: BTreeSet::new(),
            accepted_sha256: Some(self.digest()),
        }
    }

    /// Whether `self` (in a later epoch) carries `earlier` unchanged.
    fn carries(&self, earlier: &Removal) -> bool {
        self.member == earlier.member
            && self.epoch == earlier.epoch
            && self.digest() == earlier.digest()
            && (self.accepted_sha256.is_some() || self.accepted == earlier.accepted)
    }
}

/// The hash a later epoch names an accepted list by: hex sha256 of its
/// entries in order, each followed by a newline.
pub fn accepted_digest(accepted: &BTreeSet<String>) -> String {
    let mut h = Sha256::new();
    for key in accepted {
        h.update(key.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// One version of the member list. Serialized (in this field order) as its
/// canonical bytes, which are the payload of its roster file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Epoch {
    /// The workspace this roster belongs to.
    pub workspace: String,
    /// 0 for genesis, then +1 per change.
    pub number: u64,
    /// Hex sha256 of the previous epoch's canonical bytes; `None` for genesis.
    pub prev: Option<String>,
    /// The members of this epoch; files written under it are encrypted to them.
    pub members: Vec<Member>,
    /// Every removal so far (cumulative).
    pub removed: Vec<Removal>,
    /// Hex of 32 random bytes generated at genesis and carried unchanged: the
    /// workspace's naming key. Secret to the members. Not used to name
    /// blobs: those are sealed convergently under a key derived from the
    /// epoch's data key ([`crate::convergent`]), which a removal replaces
    /// and this key, carried unchanged, would not.
    pub naming_key: String,
    /// The epoch's data key (`AGE-SECRET-KEY-1…`): chunks and blobs written
    /// under this epoch are encrypted to its public half, so every member of
    /// this or a later epoch can read them (a member added later reads the
    /// history through the roster). Kept when a member is added, replaced
    /// when one is removed: the removed member cannot read later files.
    pub data_key: String,
    /// The admin (of the previous epoch; the root for genesis) who signed it.
    pub signer: MemberId,
    /// When it was made, as passed in by the caller.
    pub created_at: i64,
}

impl Epoch {
    /// The canonical serialization: compact JSON of the struct, fields in
    /// declaration order. This is what is signed, hashed and chained.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Plain strings, numbers, sequences and string-keyed structs: serde_json
        // cannot fail on them, so the empty fallback is never taken.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Hex sha256 of [`Epoch::canonical_bytes`].
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }

    /// The member with this id, if any.
    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.iter().find(|m| &m.key.member_id() == id)
    }

    /// The member with this name, if any.
    pub fn member_by_name(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The age recipients of every member: whom files written under this
    /// epoch are encrypted to.
    pub fn recipients(&self) -> Vec<age::x25519::Recipient> {
        self.members
            .iter()
            .map(|m| m.key.recipient().clone())
            .collect()
    }

    /// The data key of this epoch (see [`Epoch::data_key`]).
    pub fn data_identity(&self) -> Option<age::x25519::Identity> {
        self.data_key.parse().ok()
    }

    /// The removal of `id`, if it was removed.
    pub fn removal(&self, id: &MemberId) -> Option<&Removal> {
        self.removed.iter().find(|r| &r.member == id)
    }

    /// Rules every epoch must follow on its own.
    fn check_shape(&self) -> Result<(), EpochError> {
        if self.naming_key.len() != 64 || hex::decode(&self.naming_key).is_err() {
            return Err(EpochError::Shape("its naming key is not 32 bytes of hex"));
        }
        if self.data_identity().is_none() {
            return Err(EpochError::Shape("its data key is not an age secret key"));
        }
        if self.members.is_empty() {
            return Err(EpochError::Shape("it lists no members"));
        }
        if !self.members.iter().any(|m| m.role.can_admin()) {
            return Err(EpochError::Shape("it lists no admin"));
        }
        let mut names = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for m in &self.members {
            if m.name.is_empty() {
                return Err(EpochError::Shape("a member has an empty name"));
            }
            if !names.insert(&m.name) || !ids.insert(m.key.member_id()) {
                return Err(EpochError::Shape("a member is listed twice"));
            }
        }
        let mut removed = BTreeSet::new();
        for r in &self.removed {
            if !removed.insert(&r.member) || ids.contains(&r.member) || r.epoch > self.number {
                return Err(EpochError::Shape(
                    "its removals repeat a member, list a current member or name a later epoch",
                ));
            }
            // The list itself lives in the removal's own epoch; a later one
            // names it by hash only.
            let carried_ok = match &r.accepted_sha256 {
                None => true,
                Some(d) => {
                    r.epoch < self.number
                        && r.accepted.is_empty()
                        && d.len() == 64
                        && hex::decode(d).is_ok()
                }
            };
            if !carried_ok {
                return Err(EpochError::Shape(
                    "a removal names its accepted files by hash in its own epoch, or by a malformed hash",
                ));
            }
        }
        match (&self.prev, self.number) {
            (None, 0) => Ok(()),
            (Some(prev), n) if n > 0 && prev.len() == 64 && hex::decode(prev).is_ok() => Ok(()),
            _ => Err(EpochError::Shape(
                "its prev hash is missing, malformed, or present on epoch 0",
            )),
        }
    }
}

impl fmt::Debug for Epoch {
    // By hand: the naming key is a secret of the members.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Epoch")
            .field("workspace", &self.workspace)
            .field("number", &self.number)
            .field("prev", &self.prev)
            .field("members", &self.members)
            .field("removed", &self.removed)
            .field("naming_key", &"<redacted>")
            .field("data_key", &"<redacted>")
            .field("signer", &self.signer)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// Why one roster file was not accepted into the chain.
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    /// The envelope could not be opened.
    #[error("{0}")]
    Envelope(#[source] EnvelopeError),
    /// The envelope is not a roster file.
    #[error("it is a {0} file, not a roster epoch")]
    NotRoster(Domain),
    /// The epoch belongs to another workspace.
    #[error("it belongs to workspace {0:?}")]
    OtherWorkspace(String),
    /// The payload is not an epoch's canonical JSON.
    #[error("its payload is not the canonical JSON of a roster epoch")]
    NotCanonical,
    /// The envelope header disagrees with the epoch inside.
    #[error(
        "its envelope header names another epoch number, signer or workspace than the epoch inside"
    )]
    HeaderMismatch,
    /// The epoch breaks a rule on its own.
    #[error("{0}")]
    Shape(&'static str),
    /// A genesis epoch not signed by the pinned root admin.
    #[error("it is an epoch 0 not signed by the pinned root {root} listed in it as admin")]
    NotRoot {
        /// The pinned root.
        root: MemberId,
    },
    /// The signer is not an admin of the previous epoch.
    #[error("its signer {signer} is not an admin of epoch {prev}")]
    NotAdmin {
        /// Who signed it.
        signer: MemberId,
        /// The previous epoch's number.
        prev: u64,
    },
    /// The signature does not verify with the signer's roster key.
    #[error("its signature does not verify with the signer's key from the roster")]
    BadSignature,
    /// `prev` is not the hash of the verified previous epoch.
    #[error("it does not follow the verified epoch {prev} (fork loser, or a descendant of one)")]
    PrevMismatch {
        /// The previous epoch's number.
        prev: u64,
    },
    /// Its previous epoch is missing or was rejected.
    #[error("its previous epoch is missing, unreadable or was rejected")]
    Orphan,
    /// A rival epoch signed by a member whom the kept epoch of the same
    /// number removes: a removed admin trying to undo its removal.
    #[error("it is signed by {signer}, whom the epoch it competes with removes: ignored")]
    RemovedSigner {
        /// Who signed it.
        signer: MemberId,
    },
    /// The naming key or workspace changed, or earlier removals were rewritten.
    #[error("it changes the naming key or workspace, or rewrites earlier removals")]
    Rewrites,
    /// A new removal names someone who was not a member before, or is dated wrongly.
    #[error("it records a removal of a non-member, or dates a new removal to another epoch")]
    BadRemoval,
}

/// A roster file that was skipped while rebuilding the chain. The chain is
/// still valid without it.
#[derive(Debug)]
pub enum RosterWarning {
    /// The file is not encrypted to the reader: an epoch from after the reader
    /// was removed (or, before [`Roster::reseal_history`], before it joined).
    NotForUs {
        /// The store name of the file.
        file: String,
    },
    /// The file is not a valid epoch of this chain.
    Skipped {
        /// The store name of the file.
        file: String,
        /// Why it was skipped.
        reason: EpochError,
    },
    /// Two valid epochs share a number; the one with the lowest hash was kept.
    Fork {
        /// The epoch number both claim.
        number: u64,
        /// The file kept.
        kept: String,
        /// The file dropped.
        dropped: String,
    },
}

impl fmt::Display for RosterWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RosterWarning::NotForUs { file } => write!(
                f,
                "skipped roster file {file}: it is not encrypted to this member"
            ),
            RosterWarning::Skipped { file, reason } => {
                write!(f, "skipped roster file {file}: {reason}")
            }
            RosterWarning::Fork {
                number,
                kept,
                dropped,
            } => write!(
                f,
                "roster fork at epoch {number} (two admins changed it concurrently): kept {kept}, dropped {dropped}"
            ),
        }
    }
}

/// Why a roster could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// No roster file is a valid genesis signed by the pinned root.
    #[error(
        "no valid roster epoch 0 signed by the pinned root {root} was found ({} roster files skipped)",
        warnings.len()
    )]
    NoGenesis {
        /// The pinned root id.
        root: MemberId,
        /// Why each file was skipped.
        warnings: Vec<RosterWarning>,
    },
    /// The identity changing the roster is not an admin of its latest epoch.
    #[error("{member} is not an admin of the latest roster epoch")]
    NotAdmin {
        /// Who tried.
        member: MemberId,
    },
    /// The name is empty or already taken.
    #[error("the member name {name:?} is empty or already in the roster")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// The key is already a member.
    #[error("the key {member} is already in the roster")]
    DuplicateKey {
        /// The member id of the key.
        member: MemberId,
    },
    /// The key was removed before; removed keys are never re-added.
    #[error(
        "the key {member} was removed from the workspace; a removed key cannot be added again (make a new identity)"
    )]
    WasRemoved {
        /// The member id of the key.
        member: MemberId,
    },
    /// No member has this name.
    #[error("no member of the roster is named {name:?}")]
    UnknownMember {
        /// The name.
        name: String,
    },
    /// Removing the last admin would freeze the roster.
    #[error("{name} is the last admin; add another admin before removing them")]
    LastAdmin {
        /// The name.
        name: String,
    },
    /// The workspace name is empty.
    #[error("the workspace name is empty")]
    EmptyWorkspace,
    /// The OS random number generator failed (naming key).
    #[error("the operating system's random number generator failed")]
    Rng(#[source] getrandom::Error),
    /// Sealing the epoch file failed.
    #[error("could not seal the roster epoch")]
    Seal(#[source] EnvelopeError),
}

/// A verified chain of roster epochs, from genesis to the latest one this
/// member can read.
#[derive(Clone)]
pub struct Roster {
    epochs: Vec<Epoch>,
    /// The signed envelope of each epoch, for [`Roster::reseal_history`].
    envelopes: Vec<Opened>,
    naming_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Roster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Roster")
            .field("workspace", &self.workspace())
            .field("latest", self.latest())
            .finish_non_exhaustive()
    }
}

/// One roster file that opened and parsed, not yet linked into the chain.
struct Candidate {
    file: String,
    epoch: Epoch,
    hash: String,
    opened: Opened,
}

impl Roster {
    /// Starts a workspace's roster: epoch 0 lists `root` as its only admin,
    /// under a fresh random naming key. Returns the roster and the sealed
    /// epoch-0 file.
    pub fn genesis(
        root: &Identity,
        root_name: &str,
        workspace: &str,
        now: i64,
    ) -> Result<(Roster, Vec<u8>), RosterError> {
        if workspace.is_empty() {
            return Err(RosterError::EmptyWorkspace);
        }
        if root_name.is_empty() {
            return Err(RosterError::DuplicateName {
                name: String::new(),
            });
        }
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(RosterError::Rng)?;
        let epoch = Epoch {
            workspace: workspace.to_owned(),
            number: 0,
            prev: None,
            members: vec![Member {
                name: root_name.to_owned(),
                key: root.public(),
                role: Role::Admin,
            }],
            removed: Vec::new(),
            naming_key: hex::encode(&key[..]),
            data_key: new_data_key(),
            signer: root.member_id().clone(),
            created_at: now,
        };
        let (opened, sealed) = seal_epoch(root, &epoch)?;
        let roster = Roster {
            epochs: vec![epoch],
            envelopes: vec![opened],
            naming_key: key,
        };
        Ok((roster, sealed))
    }

    /// Rebuilds the chain from the roster files a replica holds (store name,
    /// sealed bytes), as `reader`, for `workspace`, trusting only the pinned
    /// `root`. See the module docs for the rules; skipped files come back as
    /// warnings.
    pub fn verify(
        files: &[(String, Vec<u8>)],
        reader: &Identity,
        workspace: &str,
        root: &MemberId,
    ) -> Result<(Roster, Vec<RosterWarning>), RosterError> {
        let mut warnings = Vec::new();
        let mut by_number: BTreeMap<u64, Vec<Candidate>> = BTreeMap::new();
        for (file, sealed) in files {
            match read_epoch_file(reader, workspace, sealed) {
                Ok((epoch, opened)) => {
                    by_number.entry(epoch.number).or_default().push(Candidate {
                        file: file.clone(),
                        hash: epoch.hash(),
                        epoch,
                        opened,
                    });
                }
                Err(EpochError::Envelope(EnvelopeError::NotForUs)) => {
                    warnings.push(RosterWarning::NotForUs { file: file.clone() });
                }
                Err(reason) => warnings.push(RosterWarning::Skipped {
                    file: file.clone(),
                    reason,
                }),
            }
        }

        let mut chain: Vec<Candidate> = Vec::new();
        for number in 0u64.. {
            let Some(candidates) = by_number.remove(&number) else {
                break;
            };
            let mut valid = Vec::new();
            for c in candidates {
                match link(chain.last().map(|c| &c.epoch), &c, root) {
                    Ok(()) => valid.push(c),
                    Err(reason) => warnings.push(RosterWarning::Skipped {
                        file: c.file,
                        reason,
                    }),
                }
            }
            // A fork: two admins changed the roster from the same epoch.
            // A branch signed by a member whom another branch removes loses
            // (a removed admin cannot undo its removal with a rival epoch);
            // then the lowest hash wins. The file name only orders copies of
            // the same epoch (e.g. resealed history), which are no fork.
            let removed_here: BTreeSet<MemberId> = valid
                .iter()
                .flat_map(|c| c.epoch.removed.iter().filter(|r| r.epoch == number))
                .map(|r| r.member.clone())
                .collect();
            valid.sort_by(|a, b| {
                let rank = |c: &Candidate| removed_here.contains(&c.epoch.signer);
                (rank(a), &a.hash, &a.file).cmp(&(rank(b), &b.hash, &b.file))
            });
            let mut valid = valid.into_iter();
            let Some(kept) = valid.next() else {
                break;
            };
            for other in valid {
                if other.hash != kept.hash && removed_here.contains(&other.epoch.signer) {
                    warnings.push(RosterWarning::Skipped {
                        file: other.file,
                        reason: EpochError::RemovedSigner {
                            signer: other.epoch.signer.clone(),
                        },
                    });
                } else if other.hash != kept.hash {
                    warnings.push(RosterWarning::Fork {
                        number,
                        kept: kept.file.clone(),
                        dropped: other.file,
                    });
                }
            }
            chain.push(kept);
        }
        for c in by_number.into_values().flatten() {
            warnings.push(RosterWarning::Skipped {
                file: c.file,
                reason: EpochError::Orphan,
            });
        }

        let Some(genesis) = chain.first() else {
            return Err(RosterError::NoGenesis {
                root: root.clone(),
                warnings,
            });
        };
        let mut naming_key = Zeroizing::new([0u8; 32]);
        // check_shape() made sure this is 64 hex digits.
        if hex::decode_to_slice(&genesis.epoch.naming_key, naming_key.as_mut()).is_err() {
            return Err(RosterError::NoGenesis {
                root: root.clone(),
                warnings,
            });
        }
        let (epochs, envelopes) = chain.into_iter().map(|c| (c.epoch, c.opened)).unzip();
        let roster = Roster {
            epochs,
            envelopes,
            naming_key,
        };
        Ok((roster, warnings))
    }

    /// The latest epoch this member could verify.
    pub fn latest(&self) -> &Epoch {
        // Never empty: built from genesis and only ever extended.
        &self.epochs[self.epochs.len() - 1]
    }

    /// Every verified epoch, genesis first; `epochs()[n].number == n`.
    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs
    }

    /// The verified epoch with this number.
    pub fn epoch(&self, number: u64) -> Option<&Epoch> {
        usize::try_from(number)
            .ok()
            .and_then(|n| self.epochs.get(n))
    }

    /// The workspace this roster belongs to.
    pub fn workspace(&self) -> &str {
        &self.epochs[0].workspace
    }

    /// A new epoch that adds `member`, signed by `admin` (an admin of the
    /// latest epoch) and sealed to the new member set. Store the file, and
    /// [`Roster::reseal_history`]'s files so the new member can verify the
    /// chain from genesis.
    pub fn add_member(
        &self,
        admin: &Identity,
        member: Member,
        now: i64,
    ) -> Result<(Roster, Vec<u8>), RosterError> {
        self.require_admin(admin)?;
        let latest = self.latest();
        let id = member.id();
        if member.name.is_empty() || latest.member_by_name(&member.name).is_some() {
            return Err(RosterError::DuplicateName { name: member.name });
        }
        if latest.member(&id).is_some() {
            return Err(RosterError::DuplicateKey { member: id });
        }
        if latest.removal(&id).is_some() {
            return Err(RosterError::WasRemoved { member: id });
        }
        let mut members = latest.members.clone();
        members.push(member);
        self.next(
            admin,
            members,
            latest.removed.clone(),
            latest.data_key.clone(),
            now,
        )
    }

    /// A new epoch without the member called `name`, signed by `admin` and
    /// sealed to the remaining members. Files the removed member wrote earlier
    /// stay valid only if their store names are in `accepted`.
    pub fn remove_member(
        &self,
        admin: &Identity,
        name: &str,
        accepted: BTreeSet<String>,
        now: i64,
    ) -> Result<(Roster, Vec<u8>), RosterError> {
        self.require_admin(admin)?;
        let latest = self.latest();
        let Some(gone) = latest.member_by_name(name) else {
            return Err(RosterError::UnknownMember {
                name: name.to_owned(),
            });
        };
        let admins_left = latest
            .members
            .iter()
            .filter(|m| m.role.can_admin() && m.name != name)
            .count();
        if admins_left == 0 {
            return Err(RosterError::LastAdmin {
                name: name.to_owned(),
            });
        }
        let members = latest
            .members
            .iter()
            .filter(|m| m.name != name)
            .cloned()
            .collect();
        let mut removed = latest.removed.clone();
        removed.push(Removal {
            member: gone.id(),
            epoch: latest.number + 1,
            accepted,
            accepted_sha256: None,
        });
        // A new data key: the removed member cannot read what comes next.
        self.next(admin, members, removed, new_data_key(), now)
    }

    fn require_admin(&self, admin: &Identity) -> Result<(), RosterError> {
        let is_admin = self
            .latest()
            .member(admin.member_id())
            .is_some_and(|m| m.role.can_admin());
        if is_admin {
            Ok(())
        } else {
            Err(RosterError::NotAdmin {
                member: admin.member_id().clone(),
            })
        }
    }

    fn next(
        &self,
        admin: &Identity,
        members: Vec<Member>,
        removed: Vec<Removal>,
        data_key: String,
        now: i64,
    ) -> Result<(Roster, Vec<u8>), RosterError> {
        self.require_admin(admin)?;
        let latest = self.latest();
        let number = latest.number + 1;
        // Earlier removals are carried by the hash of their list.
        let removed = removed
            .into_iter()
            .map(|r| if r.epoch < number { r.carried() } else { r })
            .collect();
        let epoch = Epoch {
            workspace: latest.workspace.clone(),
            number,
            prev: Some(latest.hash()),
            members,
            removed,
            naming_key: latest.naming_key.clone(),
            data_key,
            signer: admin.member_id().clone(),
            created_at: now,
        };
        let (opened, sealed) = seal_epoch(admin, &epoch)?;
        let mut roster = self.clone();
        roster.epochs.push(epoch);
        roster.envelopes.push(opened);
        Ok((roster, sealed))
    }

    /// Every epoch before the latest, re-encrypted to the latest epoch's
    /// members. The signed content is byte-identical, so the signatures hold
    /// and [`Roster::verify`] treats each as a copy of the original, not a
    /// fork. Lets a member added later verify the chain from genesis.
    pub fn reseal_history(&self) -> Result<Vec<Vec<u8>>, EnvelopeError> {
        let recipients = self.latest().recipients();
        let older = &self.envelopes[..self.envelopes.len() - 1];
        older
            .iter()
            .map(|opened| envelope::encrypt(&recipients, &opened.plaintext()))
            .collect()
    }

    /// The workspace's naming key (32 bytes, secret to the members).
    /// Whom files written now are encrypted to: the latest epoch's data key.
    pub fn data_recipient(&self) -> Option<age::x25519::Recipient> {
        self.latest().data_identity().map(|i| i.to_public())
    }

    /// Every epoch's data key: what reads any chunk or blob of the store.
    pub fn data_identities(&self) -> Vec<age::x25519::Identity> {
        self.epochs
            .iter()
            .filter_map(Epoch::data_identity)
            .collect()
    }

    /// The naming key (see [`Epoch::naming_key`]).
    pub fn naming_key(&self) -> [u8; 32] {
        *self.naming_key
    }

    /// Whether `writer` may have signed the file `file` (store name) under
    /// roster epoch `epoch`. The epoch must be verified, the writer a member of
    /// it; if the writer was removed since, the file must be one of those
    /// accepted at removal. Returns the writer's entry in that epoch.
    pub fn check_writer(
        &self,
        writer: &MemberId,
        epoch: u64,
        file: &str,
    ) -> Result<&Member, EnvelopeError> {
        self.check_writer_of(writer, epoch, file, || None)
    }

    /// [`Roster::check_writer`] for a file whose signed envelope is in hand:
    /// `accepted_key` gives its [`accepted_key`] (computed only if the writer
    /// was removed), which a removal may list instead of the store name.
    pub fn check_writer_of(
        &self,
        writer: &MemberId,
        epoch: u64,
        file: &str,
        accepted_key: impl FnOnce() -> Option<String>,
    ) -> Result<&Member, EnvelopeError> {
        let removal = self.latest().removal(writer);
        if let Some(r) = removal
            && epoch >= r.epoch
        {
            return Err(EnvelopeError::RemovedWriter {
                name: self.name_of(writer, r.epoch),
                epoch: r.epoch,
            });
        }
        let Some(at) = self.epoch(epoch) else {
            return Err(EnvelopeError::UnknownEpoch { epoch });
        };
        let Some(member) = at.member(writer) else {
            return Err(EnvelopeError::UnknownWriter {
                writer: writer.clone(),
            });
        };
        if let Some(r) = removal {
            // The list is in the removal's own epoch (verified, as every
            // epoch up to the latest is); later ones carry its hash.
            let accepted = self
                .epoch(r.epoch)
                .and_then(|e| e.removal(writer))
                .map_or(&r.accepted, |own| &own.accepted);
            if !accepted.contains(file) && !accepted_key().is_some_and(|k| accepted.contains(&k)) {
                return Err(EnvelopeError::RemovedWriter {
                    name: member.name.clone(),
                    epoch: r.epoch,
                });
            }
        }
        Ok(member)
    }

    /// The name a removed member had in the epoch before their removal.
    fn name_of(&self, id: &MemberId, removed_in: u64) -> String {
        removed_in
            .checked_sub(1)
            .and_then(|n| self.epoch(n))
            .and_then(|e| e.member(id))
            .map_or_else(|| id.to_string(), |m| m.name.clone())
    }
}

/// How a [`Removal`] names a file it accepts: `sha256:` and the hex sha256
/// of the file's signed envelope ([`Opened::signed_bytes`]). The same
/// envelope is accepted as a loose file, re-encrypted under another name, or
/// bundled in a snapshot; a removed member cannot make another envelope with
/// the same hash.
pub fn accepted_key(signed_envelope: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(signed_envelope)))
}

/// Signs `epoch` as `signer` and seals it to the epoch's own members.
fn seal_epoch(signer: &Identity, epoch: &Epoch) -> Result<(Opened, Vec<u8>), RosterError> {
    let header = Header {
        domain: Domain::Roster,
        workspace: epoch.workspace.clone(),
        document: String::new(),
        epoch: epoch.number,
        writer: signer.member_id().clone(),
        actors: Vec::new(),
        sha256: String::new(),
    };
    let opened =
        envelope::sign(signer, &header, &epoch.canonical_bytes()).map_err(RosterError::Seal)?;
    let sealed =
        envelope::encrypt(&epoch.recipients(), &opened.plaintext()).map_err(RosterError::Seal)?;
    Ok((opened, sealed))
}

/// Opens one roster file and checks everything that does not need the chain.
fn read_epoch_file(
    reader: &Identity,
    workspace: &str,
    sealed: &[u8],
) -> Result<(Epoch, Opened), EpochError> {
    let opened = envelope::open(reader, sealed).map_err(EpochError::Envelope)?;
    let header = &opened.header;
    if header.domain != Domain::Roster {
        return Err(EpochError::NotRoster(header.domain));
    }
    if header.workspace != workspace {
        return Err(EpochError::OtherWorkspace(header.workspace.clone()));
    }
    let epoch: Epoch =
        serde_json::from_slice(&opened.payload).map_err(|_| EpochError::NotCanonical)?;
    if epoch.canonical_bytes() != opened.payload {
        return Err(EpochError::NotCanonical);
    }
    if epoch.number != header.epoch
        || epoch.signer != header.writer
        || epoch.workspace != header.workspace
    {
        return Err(EpochError::HeaderMismatch);
    }
    epoch.check_shape()?;
    Ok((epoch, opened))
}

/// Checks that `c` is a valid successor of `prev` (or a valid genesis when
/// `prev` is `None`): signer, signature and the carried-over fields.
fn link(prev: Option<&Epoch>, c: &Candidate, root: &MemberId) -> Result<(), EpochError> {
    let epoch = &c.epoch;
    let Some(prev) = prev else {
        // Genesis: signed by the pinned root, who is an admin in it.
        let signer_key = epoch
            .member(root)
            .filter(|m| m.role.can_admin() && &epoch.signer == root)
            .map(|m| &m.key)
            .ok_or_else(|| EpochError::NotRoot { root: root.clone() })?;
        if !epoch.removed.is_empty() {
            return Err(EpochError::BadRemoval);
        }
        return c
            .opened
            .verify(signer_key)
            .map_err(|_| EpochError::BadSignature);
    };
    if epoch.prev.as_deref() != Some(prev.hash().as_str()) {
        return Err(EpochError::PrevMismatch { prev: prev.number });
    }
    // The signer's key comes from the previous epoch, never from the new one.
    let signer = prev
        .member(&epoch.signer)
        .filter(|m| m.role.can_admin())
        .ok_or_else(|| EpochError::NotAdmin {
            signer: epoch.signer.clone(),
            prev: prev.number,
        })?;
    c.opened
        .verify(&signer.key)
        .map_err(|_| EpochError::BadSignature)?;
    if epoch.naming_key != prev.naming_key
        || epoch.workspace != prev.workspace
        || epoch.removed.len() < prev.removed.len()
        || !epoch
            .removed
            .iter()
            .zip(&prev.removed)
            .all(|(later, earlier)| later.carries(earlier))
    {
        return Err(EpochError::Rewrites);
    }
    for r in &epoch.removed[prev.removed.len()..] {
        if r.epoch != epoch.number || prev.member(&r.member).is_none() {
            return Err(EpochError::BadRemoval);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// A fresh age X25519 secret key, as text.
fn new_data_key() -> String {
    use age::secrecy::ExposeSecret;
    age::x25519::Identity::generate()
        .to_string()
        .expose_secret()
        .to_owned()
}
