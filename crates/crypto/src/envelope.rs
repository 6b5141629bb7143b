//! The envelope every store file is wrapped in: signed by its writer, then
//! age-encrypted to the members of the current roster epoch.
//!
//! age alone gives confidentiality, not authenticity: anyone holding the
//! members' public recipients can encrypt a file that decrypts cleanly. So the
//! plaintext inside the age file is itself signed:
//!
//! ```text
//! b"BRIDGE-ENVELOPE-1\n"
//! u32 big-endian length of the header JSON   (at most 64 KiB)
//! header JSON                                 (Header: domain, workspace, document,
//!                                              roster epoch, writer, actors, sha256 of payload)
//! 64-byte ed25519 signature over b"bridge-envelope-v1\0" || header JSON
//! payload
//! ```
//!
//! The flow for a reader is [`open`] (decrypt, split, parse the header, check
//! the payload hash) then [`Opened::verify`] with the writer's key from the
//! roster; [`open_verified`] does both plus the roster rules (domain,
//! workspace and document must be the expected ones, so a file cannot be
//! replayed into another workspace or document; the writer must be a member of
//! the epoch it names and not removed since) — all before the caller parses a
//! single payload byte.

use std::fmt;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::{Identity, MemberId, PublicKey};
use crate::roster::{Member, Roster};

/// The first bytes of every envelope's plaintext (public for tests that
/// forge envelopes the way an attacker would).
pub const MAGIC: &[u8] = b"BRIDGE-ENVELOPE-1\n";
/// Domain separation for the header signature: what the signature covers
/// before the header bytes.
pub const SIG_DOMAIN: &[u8] = b"bridge-envelope-v1\0";
/// The largest header accepted, in bytes of JSON.
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// Length of an ed25519 signature.
const SIG_LEN: usize = 64;
/// Longest accepted actor id, in hex digits (64 bytes; ours are 16).
const MAX_ACTOR_HEX: usize = 128;

/// What kind of file an envelope holds. Part of the signed header, so a file
/// of one kind cannot be passed off as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// An Automerge change chunk of one document.
    Chunk,
    /// A blob: task inputs, outputs, logs.
    Blob,
    /// One epoch of the roster.
    Roster,
    /// A compacted document: the signed envelopes of many chunks, bundled.
    Snapshot,
    /// A device's own cache of a merged document (never leaves the device).
    Cache,
    /// A private batch's audience grant (issue 13): who may read the batch,
    /// and its keys sealed to them. `document` is the batch id.
    Grant,
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Domain::Chunk => "chunk",
            Domain::Blob => "blob",
            Domain::Roster => "roster",
            Domain::Snapshot => "snapshot",
            Domain::Cache => "cache",
            Domain::Grant => "grant",
        })
    }
}

/// The signed header of an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// What the payload is.
    pub domain: Domain,
    /// The workspace the file belongs to.
    pub workspace: String,
    /// The document id of a chunk; empty for blobs and roster epochs.
    pub document: String,
    /// The roster epoch the writer wrote under (for a roster file: the epoch
    /// it creates).
    pub epoch: u64,
    /// Who signed the file.
    pub writer: MemberId,
    /// Hex Automerge actor ids of the changes in a chunk, bound here to the
    /// writer; empty for blobs and roster epochs.
    pub actors: Vec<String>,
    /// Lowercase hex sha256 of the payload. [`seal`] fills it in when empty.
    pub sha256: String,
}

impl Header {
    /// Checks the rules a header must follow beyond its JSON shape.
    fn check(&self) -> Result<(), EnvelopeError> {
        if self.workspace.is_empty() {
            return Err(EnvelopeError::Malformed("the header names no workspace"));
        }
        if !is_lower_hex(&self.sha256) || self.sha256.len() != 64 {
            return Err(EnvelopeError::Malformed(
                "the header's sha256 is not 64 lowercase hex digits",
            ));
        }
        match self.domain {
            Domain::Chunk => {
                if self.document.is_empty() {
                    return Err(EnvelopeError::Malformed("a chunk header names no document"));
                }
            }
            Domain::Snapshot | Domain::Cache | Domain::Grant => {
                if self.document.is_empty() || !self.actors.is_empty() {
                    return Err(EnvelopeError::Malformed(
                        "a snapshot, cache or grant header names no document, or names actors",
                    ));
                }
            }
            Domain::Blob | Domain::Roster => {
                if !self.document.is_empty() || !self.actors.is_empty() {
                    return Err(EnvelopeError::Malformed(
                        "a blob or roster header names a document or actors",
                    ));
                }
            }
        }
        let actors_ok = self.actors.iter().all(|a| {
            !a.is_empty() && a.len() % 2 == 0 && a.len() <= MAX_ACTOR_HEX && is_lower_hex(a)
        });
        if !actors_ok {
            return Err(EnvelopeError::Malformed(
                "an actor id in the header is not lowercase hex of at most 64 bytes",
            ));
        }
        Ok(())
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why a file could not be sealed, opened or accepted. Every message is one
/// sentence and none contains key material.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The file is not encrypted to this reader (age `NoMatchingKeys`).
    #[error("the file is not encrypted to this member's key")]
    NotForUs,
    /// age could not decrypt the file: it is corrupt or truncated.
    #[error("the file could not be decrypted (corrupt or truncated): {0}")]
    Decrypt(Box<AgeFailure>),
    /// The decrypted plaintext is not a well-formed envelope.
    #[error("the envelope is malformed: {0}")]
    Malformed(&'static str),
    /// The payload's sha256 differs from the one in the signed header.
    #[error("the payload does not match the hash in its signed header")]
    HashMismatch,
    /// The signature does not verify with the writer's key.
    #[error("the writer's signature on the file does not verify")]
    BadSignature,
    /// The file is of another kind than expected.
    #[error("expected a {expected} file, found a {found} file")]
    WrongDomain {
        /// The kind the caller asked for.
        expected: Domain,
        /// The kind the header names.
        found: Domain,
    },
    /// The file belongs to another workspace (a replay).
    #[error("the file belongs to workspace {found:?}, not to {expected:?}")]
    WrongWorkspace {
        /// The workspace the caller is reading.
        expected: String,
        /// The workspace the header names.
        found: String,
    },
    /// The file belongs to another document (a replay).
    #[error("the file belongs to document {found:?}, not to {expected:?}")]
    WrongDocument {
        /// The document the caller is reading.
        expected: String,
        /// The document the header names.
        found: String,
    },
    /// The writer is not a member of the epoch the file names.
    #[error("the file is signed by {writer}, who is not a member of the roster epoch it names")]
    UnknownWriter {
        /// The writer the header names.
        writer: MemberId,
    },
    /// The file names a roster epoch this reader has not verified.
    #[error("the file names roster epoch {epoch}, which is not in the verified roster")]
    UnknownEpoch {
        /// The epoch the header names.
        epoch: u64,
    },
    /// The writer has been removed and this file is not one of theirs that was
    /// accepted at removal.
    #[error(
        "the file is signed by {name}, removed in epoch {epoch}, and is not among their files accepted at removal"
    )]
    RemovedWriter {
        /// The removed member's name.
        name: String,
        /// The epoch that removed them.
        epoch: u64,
    },
    /// age could not encrypt (for example: no recipients).
    #[error("the file could not be encrypted: {0}")]
    Encrypt(Box<AgeFailure>),
}

/// What age said when it could not encrypt or decrypt (shown within the
/// [`EnvelopeError`]'s own sentence, so not as a separate cause; boxed
/// there, since age's errors are large and refusals travel far).
#[derive(Debug, thiserror::Error)]
pub enum AgeFailure {
    /// Decrypting failed (a corrupt or truncated file).
    #[error("{0}")]
    Decrypt(age::DecryptError),
    /// Encrypting failed (for example: no recipients).
    #[error("{0}")]
    Encrypt(age::EncryptError),
    /// Reading or writing the age stream failed (a payload tampered with
    /// surfaces here).
    #[error("{0}")]
    Stream(std::io::Error),
}

/// A decrypted envelope whose header has been parsed and whose payload matches
/// the header's hash. Its signature is *not* verified yet: call
/// [`Opened::verify`], or use [`open_verified`].
#[derive(Clone)]
pub struct Opened {
    /// The parsed header.
    pub header: Header,
    /// The payload, hash-checked against the header.
    pub payload: Vec<u8>,
    signature: [u8; SIG_LEN],
    header_bytes: Vec<u8>,
}

impl Opened {
    /// Checks the signature over the header bytes exactly as they were read,
    /// with `key`, which must be the key of the writer the header names.
    pub fn verify(&self, key: &PublicKey) -> Result<(), EnvelopeError> {
        if key.member_id() != self.header.writer {
            return Err(EnvelopeError::BadSignature);
        }
        if key.verify(&signed_message(&self.header_bytes), &self.signature) {
            Ok(())
        } else {
            Err(EnvelopeError::BadSignature)
        }
    }

    /// The signed plaintext, byte for byte as it was sealed; re-encrypting it
    /// to other recipients keeps the writer's signature valid.
    /// The signed envelope as it was before encryption: what
    /// [`verify_signed`] accepts. Snapshots bundle these, so every chunk in
    /// a snapshot keeps its own writer's signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.plaintext()
    }

    pub(crate) fn plaintext(&self) -> Vec<u8> {
        // The length was checked against MAX_HEADER_LEN when this was built.
        plaintext_of(&self.header_bytes, &self.signature, &self.payload)
    }
}

/// An envelope's plaintext from its parts, taken as given (nothing is
/// checked): [`MAGIC`], the header's length (u32 big-endian), the header's
/// JSON bytes, the signature, the payload. [`Opened::signed_bytes`] is this
/// for a file it opened; tests build malformed or forged envelopes with it
/// instead of copying the layout. A header over 4 GiB (never valid: see
/// [`MAX_HEADER_LEN`]) is given the length `u32::MAX`.
pub fn plaintext_of(header_bytes: &[u8], signature: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(header_bytes.len()).unwrap_or(u32::MAX);
    let mut out =
        Vec::with_capacity(MAGIC.len() + 4 + header_bytes.len() + signature.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(header_bytes);
    out.extend_from_slice(signature);
    out.extend_from_slice(payload);
    out
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// What [`open_verified`] requires of a file's header.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    /// The kind of file.
    pub domain: Domain,
    /// The workspace being read.
    pub workspace: &'a str,
    /// The document being read, for chunks; `None` skips the check.
    pub document: Option<&'a str>,
}

/// What a writer signs: [`SIG_DOMAIN`], then the header's JSON bytes
/// exactly as the envelope holds them.
pub fn signed_message(header_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIG_DOMAIN.len() + header_bytes.len());
    msg.extend_from_slice(SIG_DOMAIN);
    msg.extend_from_slice(header_bytes);
    msg
}

/// Signs `payload` under `header` without encrypting it. `header.sha256` is
/// filled in when empty and must match the payload otherwise; the writer
/// named in the header must be `writer`.
pub(crate) fn sign(
    writer: &Identity,
    header: &Header,
    payload: &[u8],
) -> Result<Opened, EnvelopeError> {
    let digest = hex::encode(Sha256::digest(payload));
    let mut header = header.clone();
    if header.sha256.is_empty() {
        header.sha256 = digest;
    } else if header.sha256 != digest {
        return Err(EnvelopeError::HashMismatch);
    }
    if &header.writer != writer.member_id() {
        return Err(EnvelopeError::Malformed(
            "the header names a writer other than the sealing identity",
        ));
    }
    header.check()?;
    let header_bytes = serde_json::to_vec(&header)
        .map_err(|_| EnvelopeError::Malformed("the header could not be serialized"))?;
    if header_bytes.len() > MAX_HEADER_LEN {
        return Err(EnvelopeError::Malformed("the header is larger than 64 KiB"));
    }
    let signature = writer.sign(&signed_message(&header_bytes));
    Ok(Opened {
        header,
        payload: payload.to_vec(),
        signature,
        header_bytes,
    })
}

/// age-encrypts `plaintext` to `recipients` (binary, not armored).
pub(crate) fn encrypt(
    recipients: &[age::x25519::Recipient],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| EnvelopeError::Encrypt(Box::new(AgeFailure::Encrypt(e))))?;
    let mut out = Vec::with_capacity(plaintext.len() + 100 + 100 * recipients.len());
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| EnvelopeError::Encrypt(Box::new(AgeFailure::Stream(e))))?;
    writer
        .write_all(plaintext)
        .map_err(|e| EnvelopeError::Encrypt(Box::new(AgeFailure::Stream(e))))?;
    // Without finish() the last STREAM chunk is never written.
    writer
        .finish()
        .map_err(|e| EnvelopeError::Encrypt(Box::new(AgeFailure::Stream(e))))?;
    Ok(out)
}

/// Signs `payload` as `writer` under `header`, then encrypts the envelope to
/// `recipients`. `header.sha256` may be left empty (it is computed); if set,
/// it must equal the payload's sha256. `header.writer` must be `writer`'s id.
pub fn seal(
    writer: &Identity,
    recipients: &[age::x25519::Recipient],
    header: &Header,
    payload: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let signed = sign(writer, header, payload)?;
    encrypt(recipients, &signed.plaintext())
}

/// Decrypts `sealed` with `reader`'s key, splits the envelope, parses its
/// header and checks the payload against the header's hash. Does not verify
/// the signature: that needs the roster ([`Opened::verify`], [`open_verified`]).
pub fn open(reader: &Identity, sealed: &[u8]) -> Result<Opened, EnvelopeError> {
    open_with(std::slice::from_ref(reader.age()), sealed)
}

/// [`open`] with any of `keys` (e.g. the roster's data keys).
pub fn open_with(keys: &[age::x25519::Identity], sealed: &[u8]) -> Result<Opened, EnvelopeError> {
    parse(open_raw(keys, sealed)?)
}

/// Whether `sealed` is encrypted to one of `keys`: only its age header is
/// read and its file key unwrapped; the payload is not decrypted (what
/// `gc` asks of every unreferenced blob, which may be large).
pub fn sealed_to_any(keys: &[age::x25519::Identity], sealed: &[u8]) -> Result<bool, EnvelopeError> {
    let decryptor = age::Decryptor::new_buffered(sealed).map_err(decrypt_error)?;
    match decryptor.decrypt(keys.iter().map(|k| k as &dyn age::Identity)) {
        Ok(_) => Ok(true),
        Err(age::DecryptError::NoMatchingKeys) => Ok(false),
        Err(other) => Err(decrypt_error(other)),
    }
}

/// age-decrypts `sealed` with any of `keys`, without parsing an envelope
/// (what [`open_with`] parses, and a grant's sealed batch keys).
pub(crate) fn open_raw(
    keys: &[age::x25519::Identity],
    sealed: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let decryptor = age::Decryptor::new_buffered(sealed).map_err(decrypt_error)?;
    let mut stream = decryptor
        .decrypt(keys.iter().map(|k| k as &dyn age::Identity))
        .map_err(decrypt_error)?;
    let mut plaintext = Vec::with_capacity(sealed.len());
    // Tampering with the payload surfaces here, not above.
    stream
        .read_to_end(&mut plaintext)
        .map_err(|e| EnvelopeError::Decrypt(Box::new(AgeFailure::Stream(e))))?;
    Ok(plaintext)
}

fn decrypt_error(e: age::DecryptError) -> EnvelopeError {
    match e {
        age::DecryptError::NoMatchingKeys => EnvelopeError::NotForUs,
        other => EnvelopeError::Decrypt(Box::new(AgeFailure::Decrypt(other))),
    }
}

/// Splits a decrypted envelope into its parts and checks the payload hash.
fn parse(mut plaintext: Vec<u8>) -> Result<Opened, EnvelopeError> {
    const TRUNCATED: EnvelopeError = EnvelopeError::Malformed("the envelope is truncated");
    let rest = plaintext
        .strip_prefix(MAGIC)
        .ok_or(EnvelopeError::Malformed(
            "the file is not a bridge envelope",
        ))?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or(TRUNCATED)?;
    let header_len = u32::from_be_bytes(*len) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(EnvelopeError::Malformed("the header is larger than 64 KiB"));
    }
    let (header_bytes, rest) = rest.split_at_checked(header_len).ok_or(TRUNCATED)?;
    let (signature, _) = rest.split_first_chunk::<SIG_LEN>().ok_or(TRUNCATED)?;
    let signature = *signature;
    let header: Header = serde_json::from_slice(header_bytes)
        .map_err(|_| EnvelopeError::Malformed("the header is not JSON of the expected shape"))?;
    header.check()?;
    let header_bytes = header_bytes.to_vec();
    let payload_start = MAGIC.len() + 4 + header_len + SIG_LEN;
    let payload = plaintext.split_off(payload_start);
    if hex::encode(Sha256::digest(&payload)) != header.sha256 {
        return Err(EnvelopeError::HashMismatch);
    }
    Ok(Opened {
        header,
        payload,
        signature,
        header_bytes,
    })
}

/// Opens `sealed` (named `file` in the store) and accepts it only if its
/// header is the expected kind, workspace and document, its writer may sign
/// it under `roster` ([`Roster::check_writer`]) and the signature verifies
/// with that member's key. Returns the envelope and the writer's roster entry.
pub fn open_verified(
    reader: &Identity,
    roster: &Roster,
    sealed: &[u8],
    file: &str,
    expect: Expect<'_>,
) -> Result<(Opened, Member), EnvelopeError> {
    open_verified_with(
        std::slice::from_ref(reader.age()),
        roster,
        sealed,
        file,
        expect,
    )
}

/// [`open_verified`] decrypting with any of `keys` (the roster's data keys,
/// for chunks and blobs).
pub fn open_verified_with(
    keys: &[age::x25519::Identity],
    roster: &Roster,
    sealed: &[u8],
    file: &str,
    expect: Expect<'_>,
) -> Result<(Opened, Member), EnvelopeError> {
    check_opened(open_with(keys, sealed)?, roster, file, expect)
}

/// Like [`open_verified_with`] for an envelope that is already decrypted:
/// `signed` is what [`Opened::signed_bytes`] returned when it was written
/// (a chunk carried inside a snapshot). The same rules apply, with `file`
/// the chunk's own store name.
pub fn verify_signed(
    roster: &Roster,
    signed: Vec<u8>,
    file: &str,
    expect: Expect<'_>,
) -> Result<(Opened, Member), EnvelopeError> {
    check_opened(parse(signed)?, roster, file, expect)
}

fn check_opened(
    opened: Opened,
    roster: &Roster,
    file: &str,
    expect: Expect<'_>,
) -> Result<(Opened, Member), EnvelopeError> {
    let header = &opened.header;
    if header.domain != expect.domain {
        return Err(EnvelopeError::WrongDomain {
            expected: expect.domain,
            found: header.domain,
        });
    }
    for expected in [expect.workspace, roster.workspace()] {
        if header.workspace != expected {
            return Err(EnvelopeError::WrongWorkspace {
                expected: expected.to_owned(),
                found: header.workspace.clone(),
            });
        }
    }
    if let Some(document) = expect.document
        && header.document != document
    {
        return Err(EnvelopeError::WrongDocument {
            expected: document.to_owned(),
            found: header.document.clone(),
        });
    }
    let member = roster
        .check_writer_of(&header.writer, header.epoch, file, || {
            Some(crate::roster::accepted_key(&opened.signed_bytes()))
        })?
        .clone();
    opened.verify(&member.key)?;
    Ok((opened, member))
}

#[cfg(test)]
mod tests;
