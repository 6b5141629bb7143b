//! Sealing: what this device writes is signed by it, then encrypted to the
//! epoch's data key (or a private batch's newest key), under a header that
//! names the workspace, the document, the epoch and the writer.

use automerge::ActorId;
use bridge_crypto::{Domain, Header, seal};

use crate::{
    Placement, ROSTER_DOC, Refusal, SaveError, SealError, Vault, placement_of_doc, snapshot,
};

/// A chunk's payload: each change as a u32 big-endian length, then its
/// bytes (what [`Vault::seal_chunk`] signs and the vault checks when it
/// opens a chunk).
pub fn frame(changes: &[Vec<u8>]) -> Result<Vec<u8>, SealError> {
    let mut payload = Vec::with_capacity(changes.iter().map(|c| c.len() + 4).sum());
    for c in changes {
        let len = u32::try_from(c.len()).map_err(|_| SealError::ChangeTooLarge)?;
        payload.extend_from_slice(&len.to_be_bytes());
        payload.extend_from_slice(c);
    }
    Ok(payload)
}

/// The changes of a chunk payload, in order: [`frame`] undone. An item is
/// [`Refusal::TruncatedFraming`] where a length runs past the end (and the
/// last one then). Lazy, so that a chunk is refused for its first bad
/// change, wherever the framing breaks.
pub fn unframe(payload: &[u8]) -> impl Iterator<Item = Result<&[u8], Refusal>> {
    let mut rest = Some(payload);
    std::iter::from_fn(move || {
        let bytes = rest.take().filter(|b| !b.is_empty())?;
        let Some((len, tail)) = bytes.split_first_chunk::<4>() else {
            return Some(Err(Refusal::TruncatedFraming));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((change, tail)) = tail.split_at_checked(len) else {
            return Some(Err(Refusal::TruncatedFraming));
        };
        rest = Some(tail);
        Some(Ok(change))
    })
}

impl Vault {
    /// Signs and encrypts a chunk of document `doc`: `changes` are raw
    /// Automerge changes, all made by `actor`.
    pub fn seal_chunk(
        &self,
        doc: &str,
        actor: &ActorId,
        changes: &[Vec<u8>],
    ) -> Result<Vec<u8>, SealError> {
        let me = self.me()?;
        let payload = frame(changes)?;
        let actor_hex = actor.to_hex_string();
        self.bind(&actor_hex, me.id(), me.role);
        let header = self.header(Domain::Chunk, doc, vec![actor_hex]);
        self.seal(&header, &payload, &placement_of_doc(doc))
    }

    /// Signs and encrypts a snapshot of `doc` bundling `entries` (chunk
    /// file names and signed envelopes, sorted by name).
    pub fn seal_snapshot(
        &self,
        doc: &str,
        entries: &[snapshot::Entry],
    ) -> Result<Vec<u8>, SealError> {
        self.me()?;
        let payload = snapshot::encode(entries).map_err(|source| SealError::Snapshot {
            doc: doc.to_owned(),
            source,
        })?;
        let header = self.header(Domain::Snapshot, doc, Vec::new());
        self.seal(&header, &payload, &placement_of_doc(doc))
    }

    /// Seals `payload` for this device alone (its own cache): signed by it,
    /// encrypted to its own key.
    pub fn seal_private(&self, doc: &str, payload: &[u8]) -> Result<Vec<u8>, SealError> {
        let header = self.header(Domain::Cache, doc, Vec::new());
        seal(
            &self.identity,
            &[self.identity.public().recipient().clone()],
            &header,
            payload,
        )
        .map_err(SealError::EncryptCache)
    }

    /// The header of a file this device writes now (chunks and blobs; roster
    /// files come sealed from [`Roster::add_member`](bridge_crypto::Roster::add_member)
    /// and friends).
    pub(crate) fn header(&self, domain: Domain, document: &str, actors: Vec<String>) -> Header {
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

    pub(crate) fn seal(
        &self,
        header: &Header,
        payload: &[u8],
        placement: &Placement,
    ) -> Result<Vec<u8>, SealError> {
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
            None => self.roster.data_recipient().ok_or(SealError::NoDataKey)?,
        };
        seal(&self.identity, &[recipient], header, payload).map_err(SealError::Encrypt)
    }

    /// Writes a sealed roster file into the replica.
    pub fn write_roster_file(&self, bytes: &[u8]) -> Result<(), SaveError> {
        self.replica
            .write_chunk(ROSTER_DOC, bytes)
            .map_err(SaveError::Roster)?;
        Ok(())
    }
}
