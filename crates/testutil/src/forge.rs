//! The forger: store files built by hand, the way an attacker (or a
//! modified binary) would, bypassing every check `bridge` makes before it
//! writes. Security tests put these in a store and assert they are
//! refused. The envelope's layout and signed message are the crypto
//! crate's own ([`plaintext_of`], [`signed_message`]) and the chunk
//! framing the vault's ([`bridge_vault::frame`]), so a format change
//! reaches the tests without a copy to update.
//!
//! Behind the `forge` feature: only the end-to-end tests need the crypto
//! and vault crates here.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bridge_crypto::envelope::{plaintext_of, signed_message};
use bridge_crypto::{Domain, Header, Identity, MemberId, member_tag};
use bridge_model::doc::BatchHeader;
use bridge_model::{BatchId, DocId, TaskSpec, WriterId};
use sha2::{Digest, Sha256};

/// The lowercase hex sha256 of `bytes` (store file names, header hashes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Wall-clock milliseconds since the Unix epoch (what a writer stamps).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// 10 bytes that differ on every call (not secret: batch id tails).
pub fn unique10() -> [u8; 10] {
    let mut ten = [0u8; 10];
    ten[..8].copy_from_slice(&unique8());
    ten[8..].copy_from_slice(&unique8()[..2]);
    ten
}

/// 8 bytes that differ on every call (not secret: writer id tails).
pub fn unique8() -> [u8; 8] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::new()
        .chain_update(nanos.to_be_bytes())
        .chain_update(std::process::id().to_be_bytes())
        .chain_update(n.to_be_bytes())
        .finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// A fresh writer id (Automerge actor) carrying `member`'s tag.
pub fn writer_for(member: &MemberId) -> WriterId {
    WriterId::new(now_ms(), member_tag(member), unique8())
}

/// Chunk framing ([`bridge_vault::frame`]); panics on a change over 4 GiB.
pub fn frame(changes: &[Vec<u8>]) -> Vec<u8> {
    bridge_vault::frame(changes).expect("changes under 4 GiB")
}

/// The changes of a chunk payload ([`bridge_vault::unframe`]); `None` when
/// the framing is broken.
pub fn unframe(payload: &[u8]) -> Option<Vec<Vec<u8>>> {
    bridge_vault::unframe(payload)
        .map(|change| change.ok().map(<[u8]>::to_vec))
        .collect()
}

/// A chunk header (its sha256 is filled in when the envelope is built).
pub fn chunk_header(
    workspace: &str,
    doc: &str,
    epoch: u64,
    writer: &MemberId,
    actors: Vec<String>,
) -> Header {
    Header {
        domain: Domain::Chunk,
        workspace: workspace.to_owned(),
        document: doc.to_owned(),
        epoch,
        writer: writer.clone(),
        actors,
        sha256: String::new(),
    }
}

/// The header's JSON as an envelope holds it, its sha256 filled in from
/// `payload` when empty.
pub fn header_json(header: &Header, payload: &[u8]) -> Vec<u8> {
    let mut h = header.clone();
    if h.sha256.is_empty() {
        h.sha256 = sha256_hex(payload);
    }
    serde_json::to_vec(&h).expect("a header serializes")
}

/// `signer`'s envelope signature over these header bytes.
pub fn signature(signer: &Identity, header_json: &[u8]) -> [u8; 64] {
    signer.sign(&signed_message(header_json))
}

/// An envelope plaintext from its parts, as given ([`plaintext_of`]).
pub fn raw_plaintext(header_json: &[u8], signature: &[u8], payload: &[u8]) -> Vec<u8> {
    plaintext_of(header_json, signature, payload)
}

/// An envelope plaintext signed by `signer`, whoever `header` names as its
/// writer (`bridge_crypto::seal` refuses that; an attacker does not ask).
pub fn forge_plaintext(header: &Header, signer: &Identity, payload: &[u8]) -> Vec<u8> {
    let json = header_json(header, payload);
    raw_plaintext(&json, &signature(signer, &json), payload)
}

/// `plaintext` age-encrypted to `recipient` alone.
pub fn age_encrypt(recipient: &age::x25519::Recipient, plaintext: &[u8]) -> Vec<u8> {
    age::encrypt(recipient, plaintext).expect("age encrypts")
}

/// Writes `bytes` as a chunk of `doc` under its sha256 name (what a store
/// accepts as an intact file) in the store folder `store`; returns its
/// path.
pub fn put_chunk(store: &Path, doc: &str, bytes: &[u8]) -> PathBuf {
    let dir = store.join("chunks").join(doc);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let path = dir.join(format!("{}.chunk", sha256_hex(bytes)));
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A whole new batch document holding one task, created by `writer`: its
/// document id and its genesis change.
pub fn new_batch(writer: &WriterId, task: TaskSpec) -> (String, Vec<u8>) {
    new_batch_at(writer, task, now_ms())
}

/// [`new_batch`] with the batch's creation time given (it is whatever its
/// writer says).
pub fn new_batch_at(writer: &WriterId, task: TaskSpec, created_at: i64) -> (String, Vec<u8>) {
    let header = batch_header(created_at, "someone", "somewhere");
    genesis(writer, &header, &[task])
}

/// The header of a new one-document batch, created at `created_at` (a
/// fresh batch id of that time) by `submitted_by` on `device`.
pub fn batch_header(created_at: i64, submitted_by: &str, device: &str) -> BatchHeader {
    BatchHeader {
        batch: BatchId::new(created_at, unique10()),
        part: 0,
        parts: 1,
        created_at,
        submitted_by: submitted_by.to_owned(),
        device: device.to_owned(),
        grant: None,
    }
}

/// The document of batch `header` holding `tasks`, created by `writer`: its
/// document id and its genesis change (no check on the tasks: what a
/// member who edits documents directly can store).
pub fn genesis(writer: &WriterId, header: &BatchHeader, tasks: &[TaskSpec]) -> (String, Vec<u8>) {
    let mut doc = bridge_model::doc::create(writer, header, tasks).expect("create a batch");
    let change = doc
        .get_last_local_change()
        .expect("the genesis change")
        .raw_bytes()
        .to_vec();
    (DocId::new(header.batch.clone(), 0).to_string(), change)
}

#[cfg(test)]
mod tests {
    use bridge_crypto::{Expect, Roster, open_verified_with};

    use super::*;
    use crate::spec::shell_task;

    #[test]
    fn a_forged_chunk_by_a_member_opens_and_one_naming_another_writer_does_not() {
        let alice = Identity::generate().unwrap();
        let (roster, _) = Roster::genesis(&alice, "alice", "ws-test", 1).unwrap();
        let writer = writer_for(alice.member_id());
        let (doc, change) = new_batch(&writer, shell_task("t", "true"));
        let payload = frame(std::slice::from_ref(&change));
        assert_eq!(unframe(&payload), Some(vec![change]));
        let header = chunk_header(
            "ws-test",
            &doc,
            roster.latest().number,
            alice.member_id(),
            vec![writer.to_string()],
        );
        let expect = Expect {
            domain: Domain::Chunk,
            workspace: "ws-test",
            document: Some(&doc),
        };
        let data = roster.data_recipient().unwrap();
        let sealed = age_encrypt(&data, &forge_plaintext(&header, &alice, &payload));
        let file = format!("chunks/{doc}/x.chunk");
        let keys = roster.data_identities();
        let (opened, member) = open_verified_with(&keys, &roster, &sealed, &file, expect).unwrap();
        assert_eq!(
            (opened.payload, member.name.as_str()),
            (payload.clone(), "alice")
        );

        let mallory = Identity::generate().unwrap();
        let forged = age_encrypt(&data, &forge_plaintext(&header, &mallory, &payload));
        assert!(open_verified_with(&keys, &roster, &forged, &file, expect).is_err());
    }
}
