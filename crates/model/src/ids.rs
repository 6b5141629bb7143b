//! Identifiers. Each is a newtype validated when parsed, never a bare string.
//!
//! Writer ids are Automerge actor ids of 24 bytes: 8 bytes of big-endian
//! milliseconds, an 8-byte tag of the member that writes (a hash of its
//! member id, so a signer can only use actors carrying its own tag: the
//! binding of actors to signers needs no state), then 8 random bytes. They
//! are unique per writer process (two writers sharing an actor id poison
//! every later load of the document) and time-ordered, because a new actor
//! that sorts before the existing ones makes automerge 0.12 rewrite every
//! actor column (measured: 74.7 s against 2.3 s for merging 1000 chunks into
//! a 100k-task document).

use std::fmt;
use std::str::FromStr;

use automerge::ActorId;
use serde::{Deserialize, Serialize};

use crate::Millis;

/// Why an identifier failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind}: {reason}")]
pub struct IdError {
    /// What kind of identifier was expected.
    pub kind: &'static str,
    /// The offending text.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The id of a task: the first 128 bits of the SHA-256 of its canonical spec,
/// as 32 lowercase hex digits. The same task submitted twice is one task.
///
/// Held inline as its 32 ASCII digits, not as a `String` (issue 18, item
/// 3): a workspace holds every task's id as a map key, often several
/// times (the view, the derivation, the task's needs), and a key of fixed
/// size costs no allocation, clones by copying and compares without
/// chasing a pointer. Bytes order as the text does.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(HexId);

impl TaskId {
    /// Length of a task id in hex digits.
    pub const LEN: usize = 32;

    /// Builds a task id from a digest (only the first 16 bytes are used;
    /// a shorter digest is padded with zeros).
    pub fn from_digest(digest: &[u8]) -> TaskId {
        let mut bytes = [0u8; 16];
        let n = digest.len().min(16);
        bytes[..n].copy_from_slice(&digest[..n]);
        TaskId(HexId::encode(&bytes))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The short form shown to people (like a short git hash).
    pub fn short(&self) -> &str {
        &self.as_str()[..10]
    }
}

impl PartialOrd for TaskId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TaskId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TaskId").field(&self.as_str()).finish()
    }
}

impl FromStr for TaskId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match HexId::parse(s) {
            Some(id) => Ok(TaskId(id)),
            None => Err(IdError {
                kind: "task id",
                value: s.to_owned(),
                reason: "expected 32 lowercase hex digits",
            }),
        }
    }
}

impl TryFrom<String> for TaskId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> String {
        id.as_str().to_owned()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 32 lowercase hex digits held inline (task and batch ids). Compared as
/// two big-endian 128-bit words: the same order as the text's bytes, in
/// two integer comparisons.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct HexId([u8; 32]);

impl HexId {
    const DIGITS: &'static [u8; 16] = b"0123456789abcdef";

    /// `s` if it is 32 lowercase hex digits.
    fn parse(s: &str) -> Option<HexId> {
        let bytes: [u8; 32] = s.as_bytes().try_into().ok()?;
        is_lower_hex(s).then_some(HexId(bytes))
    }

    /// The hex digits of 16 bytes.
    fn encode(bytes: &[u8; 16]) -> HexId {
        let mut out = [0u8; 32];
        for (i, b) in bytes.iter().enumerate() {
            out[2 * i] = Self::DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = Self::DIGITS[usize::from(b & 0x0f)];
        }
        HexId(out)
    }

    fn as_str(&self) -> &str {
        // Only ever built from lowercase hex digits (ASCII), so this
        // cannot fail; an empty string rather than a panic all the same.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    fn words(&self) -> (u128, u128) {
        let (hi, lo) = self.0.split_at(16);
        let word = |half: &[u8]| {
            let mut w = [0u8; 16];
            w.copy_from_slice(half);
            u128::from_be_bytes(w)
        };
        (word(hi), word(lo))
    }
}

impl PartialOrd for HexId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HexId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.words().cmp(&other.words())
    }
}

/// The id of a batch (one submission): 12 hex digits of milliseconds then 20
/// random hex digits, so batches sort by creation time and the short form
/// (the first 12 digits) is a prefix of the id (issue 17, item 8). Ids
/// made before issue 17 have 16 digits of milliseconds (`00000…`) then 16
/// random ones; they still parse and sort before the new ones.
///
/// Held inline like a [`TaskId`] (every task's document id names its
/// batch).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BatchId(HexId);

impl BatchId {
    /// A new batch id created at `now` with the given random bytes.
    pub fn new(now: Millis, random: [u8; 10]) -> BatchId {
        // 48 bits of milliseconds last until the year 10889.
        let ms = now.clamp(0, 0xffff_ffff_ffff) as u64;
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&random);
        BatchId(HexId::encode(&bytes))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The short form shown to people: the first 12 digits (the creation
    /// millisecond), a prefix of the id that every command taking a batch
    /// accepts, like a short git hash.
    pub fn short(&self) -> &str {
        Self::short_of(self.as_str())
    }

    /// [`short`](Self::short) of an id held as text (a row of `ls --json`,
    /// a grant's notice); text shorter than that is returned whole.
    pub fn short_of(id: &str) -> &str {
        // An id made before issue 17 starts with 16 digits of milliseconds
        // (`0000…`): its first 12 are the same for every batch of a minute,
        // so it shows 8 more of its digits (4 of them random).
        let len = if id.starts_with("0000") {
            Self::LEGACY_SHORT_LEN
        } else {
            Self::SHORT_LEN
        };
        id.get(..len).unwrap_or(id)
    }

    /// The length of [`short`](Self::short).
    pub const SHORT_LEN: usize = 12;
    /// The length of [`short`](Self::short) of an id made before issue 17.
    const LEGACY_SHORT_LEN: usize = 20;
}

impl FromStr for BatchId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match HexId::parse(s) {
            Some(id) => Ok(BatchId(id)),
            None => Err(IdError {
                kind: "batch id",
                value: s.to_owned(),
                reason: "expected 32 lowercase hex digits",
            }),
        }
    }
}

impl TryFrom<String> for BatchId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BatchId> for String {
    fn from(id: BatchId) -> String {
        id.as_str().to_owned()
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BatchId").field(&self.as_str()).finish()
    }
}

/// The id of one Automerge document: a batch id and the part number, as
/// `<batch>.<part>` (a large batch spans several documents of bounded size).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DocId {
    batch: BatchId,
    part: u32,
}

impl DocId {
    /// The document holding part `part` of `batch`.
    pub fn new(batch: BatchId, part: u32) -> DocId {
        DocId { batch, part }
    }

    /// The batch this document belongs to.
    pub fn batch(&self) -> &BatchId {
        &self.batch
    }

    /// The part number within the batch, from 0.
    pub fn part(&self) -> u32 {
        self.part
    }
}

impl FromStr for DocId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| IdError {
            kind: "document id",
            value: s.to_owned(),
            reason,
        };
        let (batch, part) = s.split_once('.').ok_or(bad("expected <batch>.<part>"))?;
        let batch = batch
            .parse()
            .map_err(|_| bad("the batch half is not 32 hex digits"))?;
        if part.is_empty() || part.len() > 6 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the part is not a number"));
        }
        let part = part.parse().map_err(|_| bad("the part is not a number"))?;
        Ok(DocId { batch, part })
    }
}

impl TryFrom<String> for DocId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DocId> for String {
    fn from(id: DocId) -> String {
        id.to_string()
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:04}", self.batch, self.part)
    }
}

/// The id of one writer process: the hex form of its Automerge actor id.
/// Every fact a writer adds sits under a key that starts with this id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WriterId(String);

impl WriterId {
    /// Length of a writer id in bytes.
    pub const BYTES: usize = 24;

    /// A new writer id made at `now` (milliseconds) by the member whose tag
    /// is `member_tag`, with 8 random bytes.
    pub fn new(now: Millis, member_tag: [u8; 8], random: [u8; 8]) -> WriterId {
        let mut bytes = [0u8; Self::BYTES];
        bytes[..8].copy_from_slice(&(now.max(0) as u64).to_be_bytes());
        bytes[8..16].copy_from_slice(&member_tag);
        bytes[16..].copy_from_slice(&random);
        WriterId(hex::encode(bytes))
    }

    /// The member tag inside an actor id's bytes, if it has the shape of a
    /// writer id.
    pub fn member_tag_of(actor: &[u8]) -> Option<[u8; 8]> {
        if actor.len() != Self::BYTES {
            return None;
        }
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&actor[8..16]);
        Some(tag)
    }

    /// The Automerge actor id of this writer.
    pub fn actor(&self) -> ActorId {
        // The text was validated as 48 hex digits, so decoding cannot fail;
        // fall back to the raw text rather than panic all the same.
        match hex::decode(&self.0) {
            Ok(bytes) => ActorId::from(bytes),
            Err(_) => ActorId::from(self.0.as_bytes()),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The short form shown to people: part of the random tail.
    pub fn short(&self) -> &str {
        &self.0[32..40]
    }
}

impl FromStr for WriterId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 2 * Self::BYTES || !is_lower_hex(s) {
            return Err(IdError {
                kind: "writer id",
                value: s.to_owned(),
                reason: "expected 48 lowercase hex digits",
            });
        }
        Ok(WriterId(s.to_owned()))
    }
}

impl TryFrom<String> for WriterId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<WriterId> for String {
    fn from(id: WriterId) -> String {
        id.0
    }
}

impl fmt::Display for WriterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_ids_sort_by_time() {
        let a = WriterId::new(1_000, [0xff; 8], [0xff; 8]);
        let b = WriterId::new(1_001, [0x00; 8], [0x00; 8]);
        assert!(a < b);
        assert!(a.actor() < b.actor());
        assert_eq!(a.actor().to_bytes().len(), 24);
        assert_eq!(
            WriterId::member_tag_of(a.actor().to_bytes()),
            Some([0xff; 8])
        );
    }

    // Issue 18, item 3: ids held inline sort, print and parse as their
    // text did.
    #[test]
    fn inline_ids_order_as_their_text() {
        let texts = [
            "00000000000000000000000000000000",
            "0000000000000000000000000000000f",
            "000000000000000a0000000000000000",
            "0f000000000000000000000000000000",
            "a0000000000000000000000000000000",
            "ffffffffffffffffffffffffffffffff",
        ];
        let ids: Vec<TaskId> = texts.iter().map(|t| t.parse().unwrap()).collect();
        for (a, ta) in ids.iter().zip(texts) {
            assert_eq!(a.as_str(), ta);
            assert_eq!(a.to_string(), ta);
            assert_eq!(format!("{a:?}"), format!("TaskId({ta:?})"));
            for (b, tb) in ids.iter().zip(texts) {
                assert_eq!(a.cmp(b), ta.cmp(tb));
            }
        }
        let digest = [0xab; 32];
        assert_eq!(TaskId::from_digest(&digest).as_str(), "ab".repeat(16));
        assert_eq!(
            BatchId::new(0x0123_4567_89ab, [0xcd; 10]).as_str(),
            format!("0123456789ab{}", "cd".repeat(10))
        );
        assert!(
            "ABCDEF00000000000000000000000000"
                .parse::<TaskId>()
                .is_err()
        );
        assert!("0123".parse::<BatchId>().is_err());
        let json = serde_json::to_string(&ids[1]).unwrap();
        assert_eq!(json, format!("{:?}", texts[1]));
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), ids[1]);
    }

    #[test]
    fn ids_round_trip_through_text() {
        let batch = BatchId::new(1_763_000_000_000, [7; 10]);
        assert!(batch.as_str().starts_with(batch.short()));
        assert!(batch < BatchId::new(1_763_000_000_001, [0; 10]));
        // An id of the earlier form (16 digits of milliseconds) is shown
        // with 4 of its random digits: its first 12 are a minute's.
        let legacy: BatchId = "0000019a7b2c3d4e0123456789abcdef".parse().unwrap();
        assert_eq!(legacy.short(), "0000019a7b2c3d4e0123");
        let doc = DocId::new(batch.clone(), 3);
        assert_eq!(doc.to_string().parse::<DocId>(), Ok(doc.clone()));
        assert_eq!(batch.as_str().parse::<BatchId>(), Ok(batch));
        assert!("xyz".parse::<TaskId>().is_err());
        assert!("0123".parse::<DocId>().is_err());
    }
}
