//! Blobs: task inputs, outputs and logs, named by the sha256 of their
//! ciphertext. Where a blob goes is an explicit [`Placement`]: the pool's
//! are sealed convergently under the latest epoch's blob key (equal content,
//! one file: issue 18, item 2), a private batch's are signed age envelopes
//! to its audience's key. A blob is read through a verified chunk that
//! names it; an age blob is accepted from any member who ever signed.

use std::path::Path;

use bridge_crypto::{Domain, open_with};
use bridge_store::BlobId;
use sha2::{Digest, Sha256};

use crate::{BlobError, Placement, Refusal, Vault};

/// The largest file stored as a blob (a task input or output): the
/// store's blob limit ([`bridge_store::names::MAX_BLOB_BYTES`]) less room
/// for encryption (age adds 16 bytes per 64 KiB, plus the signed header).
pub const MAX_BLOB_PLAIN_BYTES: u64 =
    bridge_store::names::MAX_BLOB_BYTES - bridge_store::names::MAX_BLOB_BYTES / 1024 - (1 << 20);

/// The largest plain file whose sealed blob stays within `sealed_limit`
/// bytes (a remote's largest object, issue 15): the same room for
/// encryption as [`MAX_BLOB_PLAIN_BYTES`] (1/1024 of the size, and 1 MiB
/// for the signed header, or an eighth of a small limit).
pub fn max_plain_for_sealed(sealed_limit: u64) -> u64 {
    let header = (1u64 << 20).min(sealed_limit / 8);
    sealed_limit - sealed_limit / 1024 - header
}

impl Vault {
    /// Stores a file as an encrypted blob. Returns the sha256 of its content
    /// (what task identities hash) and the blob's store id.
    pub fn put_blob_file(
        &self,
        path: &Path,
        placement: &Placement,
    ) -> Result<(String, BlobId), BlobError> {
        let read = |source| BlobError::Read {
            path: path.to_owned(),
            source,
        };
        // A blob over the store's limit would be refused by every reader
        // (issue 12, item 16): refused here, where the user can act on it.
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_BLOB_PLAIN_BYTES {
            return Err(BlobError::TooLarge {
                path: path.to_owned(),
                size,
                limit: MAX_BLOB_PLAIN_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        self.put_blob_bytes(&bytes, placement)
    }

    /// Stores bytes as an encrypted blob (see [`put_blob_file`](Self::put_blob_file)).
    pub fn put_blob_bytes(
        &self,
        bytes: &[u8],
        placement: &Placement,
    ) -> Result<(String, BlobId), BlobError> {
        self.me().map_err(crate::SealError::from)?;
        let sealed = if self.is_private(placement)? {
            let header = self.header(Domain::Blob, "", Vec::new());
            self.seal(&header, bytes, placement)?
        } else {
            self.blob_keys
                .last()
                .ok_or(crate::SealError::NoDataKey)?
                .seal(&self.workspace, bytes)
                .map_err(crate::SealError::EncryptBlob)?
        };
        let id = self
            .replica
            .put_blob_bytes(&sealed)
            .map_err(BlobError::Store)?;
        // The replica's outbox queues it for the next push, blobs first.
        Ok((hex::encode(Sha256::digest(bytes)), id))
    }

    /// Whether a blob of `placement` goes to a private batch's audience.
    fn is_private(&self, placement: &Placement) -> Result<bool, crate::SealError> {
        Ok(match placement {
            Placement::Pool => false,
            Placement::Batch(batch) => self.batch_recipient(batch.as_str())?.is_some(),
        })
    }

    /// Reads, decrypts and verifies a blob.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, BlobError> {
        let sealed = self.replica.read_blob(id)?;
        let refused = |refusal: Refusal| BlobError::Refused {
            blob: id.store_name(),
            refusal,
        };
        if bridge_crypto::convergent::is_convergent(&sealed) {
            return bridge_crypto::open_convergent(&self.blob_keys, &self.workspace, &sealed)
                .map_err(|e| refused(e.into()));
        }
        let opened = open_with(&self.data_keys, &sealed).map_err(|e| refused(e.into()))?;
        let h = &opened.header;
        if h.domain != Domain::Blob {
            return Err(refused(Refusal::NotABlob { found: h.domain }));
        }
        if h.workspace != self.workspace {
            return Err(refused(Refusal::BlobOfAnotherWorkspace {
                expected: self.workspace.clone(),
                found: h.workspace.clone(),
            }));
        }
        // A blob is reached through a verified chunk that names its
        // ciphertext hash, so any member who ever signed is accepted here.
        let key = self
            .roster
            .epochs()
            .iter()
            .find_map(|e| e.member(&h.writer))
            .map(|m| m.key.clone())
            .ok_or_else(|| {
                refused(Refusal::NeverAMember {
                    writer: h.writer.clone(),
                })
            })?;
        opened.verify(&key).map_err(|e| refused(e.into()))?;
        Ok(opened.payload)
    }

    /// Whether blob `id` is sealed to a key this device does not hold (a
    /// private batch's, of an audience it is not in). A blob that cannot
    /// be read for another reason (missing, corrupt) is not foreign.
    pub fn is_foreign_blob(&self, id: &BlobId) -> bool {
        let Ok(sealed) = self.replica.read_blob(id) else {
            return false;
        };
        if let Some(epoch) = bridge_crypto::convergent::epoch_of(&sealed) {
            return !self.blob_keys.iter().any(|k| k.epoch() == epoch);
        }
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
    ) -> Result<(), BlobError> {
        let bytes = self.read_blob(id)?;
        if let Some(expected) = sha256.filter(|s| !s.is_empty()) {
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != expected {
                return Err(BlobError::ContentMismatch {
                    blob: id.store_name(),
                    actual,
                    expected: expected.to_owned(),
                });
            }
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|source| BlobError::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
        }
        bridge_store::replace_file(dest, &bytes, 0o666, false).map_err(|source| BlobError::Write {
            path: dest.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_for_encryption_below_a_remotes_object_limit() {
        let max = bridge_store::names::MAX_BLOB_BYTES;
        assert_eq!(max_plain_for_sealed(max), MAX_BLOB_PLAIN_BYTES);
        // GitHub's 100 MB: about 98.8 MB of plain output.
        assert_eq!(max_plain_for_sealed(100_000_000), 98_853_768);
        // A small configured limit keeps an eighth for the header.
        assert_eq!(max_plain_for_sealed(1_000_000), 874_024);
        assert_eq!(max_plain_for_sealed(0), 0);
    }
}
