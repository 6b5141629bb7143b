//! Convergent sealing of blobs (issue 18, item 2): the same content sealed
//! under the same roster epoch gives the same bytes, so a blob, which the
//! store names by the sha256 of its bytes, is stored once per epoch however
//! many tasks use it and whichever member writes it.
//!
//! ```text
//! b"BRIDGE-CBLOB-1\n"
//! u64 big-endian roster epoch
//! 24-byte nonce = HMAC-SHA256(nonce key, plaintext)[..24]
//! XChaCha20-Poly1305(content key, nonce, plaintext,
//!                    associated data = magic || epoch || workspace id)
//! ```
//!
//! Both keys are derived (HKDF-SHA256) from the epoch's data key and the
//! workspace id, so:
//!
//! - only members of that epoch or a later one can read a blob or tell what
//!   it holds, as with age; a member removed before the epoch cannot, since
//!   removing a member replaces the data key;
//! - the store's host sees that two files are one file (that is the point)
//!   but cannot confirm a guess of a content: the nonce and the key are
//!   secret PRFs of it;
//! - the nonce is a PRF of the whole plaintext (a synthetic IV, as in
//!   AES-SIV, RFC 5297), so equal nonces mean equal plaintexts and the
//!   construction stays a deterministic AEAD. A reader recomputes it, so
//!   each content has exactly one valid sealing per epoch.
//!
//! A convergent blob is not signed: its integrity comes from the AEAD under
//! a members-only key and from the signed chunk that names it by hash (a
//! task's input also names its content's sha256). Private batches' blobs
//! stay age envelopes sealed to the batch's own key (their audience is not
//! every member, and members outside it must not confirm their content).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::roster::Epoch;

/// The first bytes of every convergent blob.
pub const MAGIC: &[u8] = b"BRIDGE-CBLOB-1\n";
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = MAGIC.len() + 8 + NONCE_LEN;

/// Why a convergent blob does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvergentError {
    /// Too short or without the magic: not a convergent blob.
    #[error("the file is not a convergent blob")]
    NotConvergent,
    /// Sealed under a roster epoch whose key this reader does not hold.
    #[error("the blob is sealed under roster epoch {epoch}, whose key this member does not hold")]
    NoKey {
        /// The epoch the blob names.
        epoch: u64,
    },
    /// The ciphertext does not authenticate: corrupt, truncated, of another
    /// workspace, or forged by someone without the key.
    #[error("the blob does not decrypt (corrupt, truncated or of another workspace)")]
    Decrypt,
    /// Larger than XChaCha20-Poly1305 can seal (256 GiB).
    #[error("the content is too large to seal")]
    TooLarge,
    /// It decrypts, but its nonce is not the one its content gives: not
    /// the blob's one valid sealing.
    #[error("the blob's nonce does not match its content")]
    NotCanonical,
}

/// The keys of one roster epoch for convergent blobs (derived, secret).
pub struct BlobKey {
    epoch: u64,
    content: Zeroizing<[u8; 32]>,
    /// HMAC-SHA256's block size: the key is used as is (RFC 2104).
    nonce: Zeroizing<[u8; 64]>,
}

impl std::fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobKey")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl BlobKey {
    /// The blob keys of `epoch` (from its data key, bound to its workspace).
    pub fn of_epoch(epoch: &Epoch) -> BlobKey {
        let hk =
            hkdf::Hkdf::<Sha256>::new(Some(epoch.workspace.as_bytes()), epoch.data_key.as_bytes());
        let mut content = Zeroizing::new([0u8; 32]);
        let mut nonce = Zeroizing::new([0u8; 64]);
        // 32 and 64 bytes are far below HKDF-SHA256's 8160-byte limit:
        // these never fail.
        let _ = hk.expand(b"bridge convergent blob content key v1", content.as_mut());
        let _ = hk.expand(b"bridge convergent blob nonce key v1", nonce.as_mut());
        BlobKey {
            epoch: epoch.number,
            content,
            nonce,
        }
    }

    /// The roster epoch these keys belong to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Seals `plaintext` for workspace `workspace`: the same arguments always
    /// give the same bytes.
    pub fn seal(&self, workspace: &str, plaintext: &[u8]) -> Result<Vec<u8>, ConvergentError> {
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.synthetic_nonce(plaintext));
        let aad = associated_data(&out[..MAGIC.len() + 8], workspace);
        let nonce = *XNonce::from_slice(&out[MAGIC.len() + 8..HEADER_LEN]);
        let cipher = self.cipher();
        // XChaCha20-Poly1305 refuses only messages over 256 GiB.
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| ConvergentError::TooLarge)?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a blob sealed by [`BlobKey::seal`] under this epoch.
    pub fn open(&self, workspace: &str, sealed: &[u8]) -> Result<Vec<u8>, ConvergentError> {
        let epoch = epoch_of(sealed).ok_or(ConvergentError::NotConvergent)?;
        if epoch != self.epoch {
            return Err(ConvergentError::NoKey { epoch });
        }
        let aad = associated_data(&sealed[..MAGIC.len() + 8], workspace);
        let nonce = XNonce::from_slice(&sealed[MAGIC.len() + 8..HEADER_LEN]);
        let cipher = self.cipher();
        let plaintext = cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| ConvergentError::Decrypt)?;
        if self.synthetic_nonce(&plaintext)[..] != nonce[..] {
            return Err(ConvergentError::NotCanonical);
        }
        Ok(plaintext)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.content[..]))
    }

    fn synthetic_nonce(&self, plaintext: &[u8]) -> [u8; NONCE_LEN] {
        let key = hmac::digest::Key::<Hmac<Sha256>>::from_slice(&self.nonce[..]);
        let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(key);
        mac.update(plaintext);
        let tag = mac.finalize().into_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&tag[..NONCE_LEN]);
        nonce
    }
}

/// Whether `sealed` is a convergent blob (by its magic; not checked further).
pub fn is_convergent(sealed: &[u8]) -> bool {
    sealed.starts_with(MAGIC)
}

/// The roster epoch a convergent blob is sealed under, if `sealed` is one
/// (long enough for its header and tag).
pub fn epoch_of(sealed: &[u8]) -> Option<u64> {
    if !is_convergent(sealed) || sealed.len() < HEADER_LEN + 16 {
        return None;
    }
    let (epoch, _) = sealed[MAGIC.len()..].split_first_chunk::<8>()?;
    Some(u64::from_be_bytes(*epoch))
}

/// Opens a convergent blob with whichever of `keys` is of its epoch.
pub fn open_convergent(
    keys: &[BlobKey],
    workspace: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, ConvergentError> {
    let epoch = epoch_of(sealed).ok_or(ConvergentError::NotConvergent)?;
    keys.iter()
        .find(|k| k.epoch == epoch)
        .ok_or(ConvergentError::NoKey { epoch })?
        .open(workspace, sealed)
}

fn associated_data(header: &[u8], workspace: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + workspace.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(workspace.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(workspace: &str, number: u64, data_key: &str) -> Epoch {
        Epoch {
            workspace: workspace.to_owned(),
            number,
            prev: None,
            members: Vec::new(),
            removed: Vec::new(),
            naming_key: "00".repeat(32),
            data_key: data_key.to_owned(),
            signer: crate::Identity::generate().unwrap().member_id().clone(),
            created_at: 0,
        }
    }

    #[test]
    fn equal_content_seals_to_equal_bytes_and_opens() {
        let k = BlobKey::of_epoch(&epoch("ws-a", 3, "key-one"));
        let a = k.seal("ws-a", b"same content").unwrap();
        assert_eq!(a, k.seal("ws-a", b"same content").unwrap());
        assert_ne!(a, k.seal("ws-a", b"other content").unwrap());
        assert_eq!(epoch_of(&a), Some(3));
        assert_eq!(k.open("ws-a", &a).unwrap(), b"same content");
        assert_eq!(open_convergent(&[k], "ws-a", &a).unwrap(), b"same content");
        // Nothing of the content shows through.
        assert!(!a.windows(4).any(|w| w == b"same"));
    }

    #[test]
    fn another_epoch_or_workspace_seals_differently_and_cannot_open() {
        let k = BlobKey::of_epoch(&epoch("ws-a", 0, "key-one"));
        let rekeyed = BlobKey::of_epoch(&epoch("ws-a", 1, "key-two"));
        let other_ws = BlobKey::of_epoch(&epoch("ws-b", 0, "key-one"));
        let sealed = k.seal("ws-a", b"x").unwrap();
        assert_ne!(sealed, rekeyed.seal("ws-a", b"x").unwrap());
        assert_ne!(sealed, other_ws.seal("ws-b", b"x").unwrap());
        assert_eq!(
            open_convergent(&[rekeyed], "ws-a", &sealed),
            Err(ConvergentError::NoKey { epoch: 0 })
        );
        assert_eq!(
            other_ws.open("ws-b", &sealed),
            Err(ConvergentError::Decrypt)
        );
        // The right key read as another workspace's: the AAD differs.
        assert_eq!(k.open("ws-b", &sealed), Err(ConvergentError::Decrypt));
    }

    #[test]
    fn tampering_and_non_canonical_sealings_are_refused() {
        let k = BlobKey::of_epoch(&epoch("ws-a", 0, "key-one"));
        let sealed = k.seal("ws-a", b"payload").unwrap();
        for i in [MAGIC.len() + 8, HEADER_LEN, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(
                k.open("ws-a", &bad),
                Err(ConvergentError::Decrypt),
                "byte {i}"
            );
        }
        assert_eq!(
            k.open("ws-a", &sealed[..sealed.len() - 1]),
            Err(ConvergentError::Decrypt)
        );
        assert_eq!(
            k.open("ws-a", &sealed[..HEADER_LEN]),
            Err(ConvergentError::NotConvergent)
        );
        assert_eq!(
            k.open("ws-a", b"age-encryption.org/v1"),
            Err(ConvergentError::NotConvergent)
        );
        // A valid AEAD sealing under a nonce its content does not give (what
        // a member could make by hand) is not the canonical one.
        let cipher = k.cipher();
        let mut forged = sealed[..HEADER_LEN].to_vec();
        forged[HEADER_LEN - 1] ^= 1;
        let aad = associated_data(&forged[..MAGIC.len() + 8], "ws-a");
        let nonce = *XNonce::from_slice(&forged[MAGIC.len() + 8..HEADER_LEN]);
        let body = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: b"payload",
                    aad: &aad,
                },
            )
            .unwrap();
        forged.extend_from_slice(&body);
        assert_eq!(k.open("ws-a", &forged), Err(ConvergentError::NotCanonical));
    }

    #[test]
    fn debug_hides_the_keys() {
        let k = BlobKey::of_epoch(&epoch("ws-a", 2, "key-one"));
        let shown = format!("{k:?}");
        assert!(shown.contains("epoch: 2"), "{shown}");
        assert!(!shown.contains(&hex::encode(&k.content[..])), "{shown}");
    }
}
