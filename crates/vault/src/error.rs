//! What the vault refuses, and how its operations fail.
//!
//! [`Refusal`] is why a file of the store (a chunk, a snapshot, a blob, a
//! bundled chunk, this device's cache) is not accepted: one variant per
//! check, carrying what was found, so that callers and tests can tell a
//! forged signature from a replay without reading the message. The other
//! enums are one per operation: opening the vault ([`OpenError`]), sealing
//! a file ([`SealError`]), blobs ([`BlobError`]), saving sealed files
//! ([`SaveError`]) and listing what a member signed ([`ScanError`]).
//!
//! Messages are one sentence each and never hold key material; what the
//! user should do about them is the command line's business.

use std::path::PathBuf;

use bridge_crypto::{Domain, EnvelopeError, MemberId, PublicKey, RosterError};
use bridge_store::{ListError, ReadError, WriteError};

use crate::snapshot;

/// Why the vault refuses a file. [`Envelope`](Refusal::Envelope) is the
/// envelope's checks ([`bridge_crypto::open_verified`]), kept as the crypto
/// crate's own [`EnvelopeError`] (same words, one variant per check); the
/// others are the vault's own, on a chunk's changes, a blob, this device's
/// cache and a snapshot's payload.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The envelope is refused: not for this device, undecryptable,
    /// malformed, a bad signature, a replay from another workspace or
    /// document, a writer who is not (or no longer) a member.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),

    /// A chunk's payload does not split into length-prefixed changes.
    #[error("the chunk's framing is truncated")]
    TruncatedFraming,
    /// A frame of a chunk is not an Automerge change.
    #[error("not an Automerge change: {0}")]
    NotAChange(automerge::LoadChangeError),
    /// A change's checksum does not match its hash.
    #[error("an Automerge change in it has a wrong checksum")]
    BadChecksum,
    /// A change's actor does not carry its signer's member tag: someone
    /// writing under another member's actor.
    #[error("it holds a change by actor {actor}, which is not bound to its signer {signer}")]
    ForeignActor {
        /// The change's actor (hex).
        actor: String,
        /// The signer's name.
        signer: String,
    },
    /// A change overwrites or deletes a value another actor wrote.
    #[error("it overwrites or deletes values written by other members (signed by {signer})")]
    OverwritesOthers {
        /// The signer's name.
        signer: String,
    },
    /// A change's actor is not among those the signed header declares.
    #[error("it holds a change by actor {actor}, which its signer {signer} did not declare")]
    UndeclaredActor {
        /// The change's actor (hex).
        actor: String,
        /// The signer's name.
        signer: String,
    },
    /// A change's actor was already seen signed by another member.
    #[error("actor {actor} belongs to another member ({owner}), not to its signer {signer}")]
    ActorOfAnotherMember {
        /// The change's actor (hex).
        actor: String,
        /// The member it is bound to.
        owner: MemberId,
        /// The signer's name.
        signer: String,
    },

    /// A file read as a blob is another kind of file.
    #[error("not a blob (it is a {found} file)")]
    NotABlob {
        /// The kind the header names.
        found: Domain,
    },
    /// A blob belongs to another workspace.
    #[error("belongs to workspace {found}, not {expected}")]
    BlobOfAnotherWorkspace {
        /// This workspace.
        expected: String,
        /// The workspace the header names.
        found: String,
    },
    /// A convergent blob does not open (no key of its epoch, corrupt, of
    /// another workspace, or not its content's one sealing).
    #[error(transparent)]
    Convergent(#[from] bridge_crypto::ConvergentError),
    /// A blob is signed by someone who was never a member.
    #[error("signed by {writer}, who was never a member")]
    NeverAMember {
        /// The writer the header names.
        writer: MemberId,
    },

    /// A cache file is not this device's cache of this document.
    #[error("not this device's cache of this document")]
    NotOurCache,

    /// A verified snapshot's payload does not decode.
    #[error(transparent)]
    Snapshot(#[from] snapshot::DecodeError),
}

/// This device is not in the roster's latest epoch.
#[derive(Debug, thiserror::Error)]
#[error("this device ({member}) is not a member of workspace {workspace}")]
pub struct NotAMemberError {
    /// This device's member id.
    pub member: MemberId,
    /// The workspace.
    pub workspace: String,
    /// This device's public key (what an admin adds); boxed, as keys are
    /// large and errors travel in every `Result`.
    pub public: Box<PublicKey>,
}

/// Why the vault could not be opened ([`Vault::open`](crate::Vault::open)).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The roster's files could not be listed.
    #[error("cannot list the roster files")]
    ListRoster(#[source] ListError),
    /// The roster does not verify for this device.
    #[error("cannot verify the member roster of workspace {workspace}")]
    Roster {
        /// The workspace.
        workspace: String,
        /// Why.
        #[source]
        source: RosterError,
    },
}

/// Why a file could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Only members write files.
    #[error(transparent)]
    NotAMember(#[from] NotAMemberError),
    /// A change too large for a chunk's framing.
    #[error("an Automerge change over 4 GiB")]
    ChangeTooLarge,
    /// A snapshot's payload could not be encoded.
    #[error("cannot encode a snapshot of {doc}")]
    Snapshot {
        /// The document.
        doc: String,
        /// Why.
        #[source]
        source: snapshot::EncodeError,
    },
    /// A private batch's newest grant names a recipient that does not parse.
    #[error("the audience grant of batch {batch} names a bad recipient: {reason}")]
    BadGrantRecipient {
        /// The batch.
        batch: String,
        /// What age said.
        reason: &'static str,
    },
    /// The roster has no data key to encrypt to.
    #[error("the roster's latest epoch has no data key")]
    NoDataKey,
    /// Encryption failed.
    #[error("cannot encrypt a file for the store")]
    Encrypt(#[source] EnvelopeError),
    /// Sealing a blob convergently failed.
    #[error("cannot encrypt a blob for the store")]
    EncryptBlob(#[source] bridge_crypto::ConvergentError),
    /// Encrypting this device's cache failed.
    #[error("cannot encrypt the local cache")]
    EncryptCache(#[source] EnvelopeError),
}

/// Why a sealed file could not be saved into the replica.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// A roster file.
    #[error("cannot save the roster")]
    Roster(#[source] WriteError),
    /// An audience grant.
    #[error("cannot save the audience grant")]
    Grant(#[source] WriteError),
}

/// Why a blob could not be stored, read or copied.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A file to store could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file too large for the store.
    #[error(
        "{} is {size} bytes, over the limit of {limit} bytes for one file in the store; split or compress it",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// [`MAX_BLOB_PLAIN_BYTES`](crate::MAX_BLOB_PLAIN_BYTES).
        limit: u64,
    },
    /// Sealing failed (not a member, no key).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The replica could not store it.
    #[error("cannot store an encrypted blob")]
    Store(#[source] WriteError),
    /// The replica could not read it (missing, unreadable).
    #[error(transparent)]
    Missing(#[from] ReadError),
    /// The blob is refused.
    #[error("{blob}: {refusal}")]
    Refused {
        /// The blob's store name.
        blob: String,
        /// Why.
        refusal: Refusal,
    },
    /// A task input whose content is not what the task names.
    #[error(
        "{blob} holds content with sha256 {actual}, not the {expected} the task names: refused"
    )]
    ContentMismatch {
        /// The blob's store name.
        blob: String,
        /// The sha256 of what it holds.
        actual: String,
        /// The sha256 the task names.
        expected: String,
    },
    /// A folder for the copy could not be created.
    #[error("cannot create {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The copy could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl BlobError {
    /// The refusal, when the blob was refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            BlobError::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }
}

/// Why the files a member signed could not be listed
/// ([`Vault::files_signed_by`](crate::Vault::files_signed_by)).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A folder of documents.
    #[error("cannot list the documents in {dir}")]
    Docs {
        /// The folder.
        dir: &'static str,
        /// Why.
        #[source]
        source: ListError,
    },
    /// The audience grants.
    #[error("cannot list the audience grants")]
    Grants(#[source] ListError),
    /// A document's chunks.
    #[error("cannot list the chunks of {doc}")]
    Chunks {
        /// The document.
        doc: String,
        /// Why.
        #[source]
        source: ListError,
    },
    /// A document's snapshots.
    #[error("cannot list the snapshots of {doc}")]
    Snapshots {
        /// The document.
        doc: String,
        /// Why.
        #[source]
        source: ListError,
    },
}
