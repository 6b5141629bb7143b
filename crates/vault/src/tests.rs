//! The vault's checks, one refusal at a time: real keys, a real roster and a
//! replica in a temporary folder, no processes. Each test asserts the
//! [`Refusal`] variant, not a message.

use std::collections::BTreeSet;

use automerge::AutoCommit;
use automerge::transaction::Transactable;
use bridge_crypto::{
    Domain, EnvelopeError, Identity, Member, MemberId, Role, Roster, accepted_key, seal,
};
use bridge_model::WriterId;
use bridge_store::{Changes, ChunkOpener, DocFolder, Replica};

use super::*;

const WS: &str = "ws-test";
const DOC: &str = "d1";

/// A pool of two members (the admin and `bob`, who may submit) over one
/// replica, and a stranger who knows the workspace but is not in it.
struct Pool {
    _tmp: tempfile::TempDir,
    replica: Replica,
    admin: Identity,
    bob: Identity,
    stranger: Identity,
    roster: Roster,
}

impl Pool {
    fn new() -> Pool {
        let tmp = tempfile::tempdir().expect("a temp folder");
        let replica = Replica::init(&tmp.path().join("store"), WS).expect("a replica");
        let admin = Identity::generate().expect("a key");
        let bob = Identity::generate().expect("a key");
        let stranger = Identity::generate().expect("a key");
        let (roster, _) = Roster::genesis(&admin, "admin", WS, 1).expect("a roster");
        let bob_entry = Member {
            name: "bob".into(),
            key: bob.public(),
            role: Role::Submit,
        };
        let (roster, _) = roster.add_member(&admin, bob_entry, 2).expect("bob added");
        Pool {
            _tmp: tmp,
            replica,
            admin,
            bob,
            stranger,
            roster,
        }
    }

    fn vault(&self, who: &Identity) -> Vault {
        Vault::new(self.replica.clone(), who.clone(), self.roster.clone())
    }

    /// Bob's vault after the admin removed him, accepting `accepted`.
    fn without_bob(&self, accepted: BTreeSet<String>) -> Roster {
        let (roster, _) = self
            .roster
            .remove_member(&self.admin, "bob", accepted, 3)
            .expect("bob removed");
        roster
    }
}

/// A fresh Automerge actor carrying `member`'s tag.
fn writer(member: &MemberId, n: u8) -> WriterId {
    WriterId::new(1_700_000_000_000, member_tag(member), [n; 8])
}

/// A genuine Automerge change by `writer`.
fn change(writer: &WriterId) -> Vec<u8> {
    let mut doc = AutoCommit::new().with_actor(writer.actor());
    doc.put(automerge::ROOT, "key", 1).expect("put");
    doc.commit();
    doc.get_last_local_change()
        .expect("a change")
        .raw_bytes()
        .to_vec()
}

/// A chunk of `DOC` sealed by `vault`'s device, with one change by its own
/// actor.
fn chunk_by(vault: &Vault, n: u8) -> (Vec<u8>, Vec<u8>) {
    let w = writer(vault.identity().member_id(), n);
    let c = change(&w);
    let sealed = vault
        .seal_chunk(DOC, &w.actor(), std::slice::from_ref(&c))
        .expect("sealed");
    (sealed, c)
}

/// Whether `opened` is the one change whose bytes are `c`.
fn is_change(opened: &[automerge::Change], c: &[u8]) -> bool {
    let expected = automerge::Change::try_from(c).expect("a change");
    matches!(opened, [one] if one.hash() == expected.hash() && one.raw_bytes() == expected.raw_bytes())
}

/// What the store's loader got for a chunk, as changes.
fn parsed(changes: &Changes) -> &[automerge::Change] {
    match changes {
        Changes::Parsed(changes) => changes,
        Changes::Bytes(_) => panic!("the vault hands over parsed changes"),
    }
}

/// Stores `sealed` as a chunk of `doc`; returns its file name.
fn store(pool: &Pool, doc: &str, sealed: &[u8]) -> String {
    pool.replica.write_chunk(doc, sealed).expect("written")
}

fn refusal_of(vault: &Vault, doc: &str, name: &str, sealed: &[u8]) -> Refusal {
    match vault.open_chunk(doc, name, sealed) {
        Ok(_) => panic!("accepted a file the vault must refuse"),
        Err(refusal) => refusal,
    }
}

#[test]
fn a_chunk_sealed_by_a_member_opens_for_another_member() {
    let pool = Pool::new();
    let (sealed, c) = chunk_by(&pool.vault(&pool.bob), 1);
    let name = store(&pool, DOC, &sealed);
    let opened = pool
        .vault(&pool.admin)
        .open_chunk(DOC, &name, &sealed)
        .expect("opens");
    assert!(is_change(&opened, &c));
    // Through the store's loader too.
    let loaded = ChunkOpener::open(&pool.vault(&pool.admin), DOC, &name, sealed);
    assert!(is_change(parsed(&loaded.expect("opens")), &c));
}

#[test]
fn a_chunk_by_a_non_member_is_refused() {
    let pool = Pool::new();
    // Everything right (workspace, document, the pool's data key) except
    // that its writer is in no epoch.
    let stranger = Vault::new(
        pool.replica.clone(),
        pool.stranger.clone(),
        pool.roster.clone(),
    );
    assert!(stranger.me().is_err());
    let w = writer(pool.stranger.member_id(), 1);
    let header = stranger.header(Domain::Chunk, DOC, vec![w.actor().to_hex_string()]);
    let sealed = stranger
        .seal(
            &header,
            &frame(&[change(&w)]).expect("framed"),
            &Placement::Pool,
        )
        .expect("sealed");
    let name = store(&pool, DOC, &sealed);
    let refusal = refusal_of(&pool.vault(&pool.admin), DOC, &name, &sealed);
    assert!(
        matches!(&refusal, Refusal::Envelope(EnvelopeError::UnknownWriter { writer }) if writer == pool.stranger.member_id()),
        "{refusal:?}"
    );
}

#[test]
fn a_non_member_cannot_seal() {
    let pool = Pool::new();
    let stranger = pool.vault(&pool.stranger);
    let w = writer(pool.stranger.member_id(), 1);
    let e = stranger.seal_chunk(DOC, &w.actor(), &[change(&w)]);
    assert!(matches!(e, Err(SealError::NotAMember(_))), "{e:?}");
    let e = stranger.put_blob_bytes(b"x", &Placement::Pool);
    assert!(
        matches!(e, Err(BlobError::Seal(SealError::NotAMember(_)))),
        "{e:?}"
    );
}

#[test]
fn a_chunk_sealed_to_a_strangers_own_key_is_not_for_us() {
    let pool = Pool::new();
    let (other, _) = Roster::genesis(&pool.stranger, "mallory", WS, 1).expect("a roster");
    let mallory = Vault::new(pool.replica.clone(), pool.stranger.clone(), other);
    let (sealed, _) = chunk_by(&mallory, 1);
    let name = store(&pool, DOC, &sealed);
    let refusal = refusal_of(&pool.vault(&pool.admin), DOC, &name, &sealed);
    assert!(
        matches!(refusal, Refusal::Envelope(EnvelopeError::NotForUs)),
        "{refusal:?}"
    );
}

#[test]
fn a_removed_members_chunk_is_refused_unless_its_removal_accepted_it() {
    let pool = Pool::new();
    let bob = pool.vault(&pool.bob);
    let (kept, c) = chunk_by(&bob, 1);
    let (late, _) = chunk_by(&bob, 2);
    let kept_name = store(&pool, DOC, &kept);
    let late_name = store(&pool, DOC, &late);
    let signed = pool
        .vault(&pool.admin)
        .signed_chunk(DOC, &kept_name, &kept)
        .expect("verifies")
        .signed_bytes();
    let roster = pool.without_bob(BTreeSet::from([accepted_key(&signed)]));
    let admin = Vault::new(pool.replica.clone(), pool.admin.clone(), roster);
    assert!(is_change(
        &admin.open_chunk(DOC, &kept_name, &kept).expect("accepted"),
        &c
    ));
    let refusal = refusal_of(&admin, DOC, &late_name, &late);
    assert!(
        matches!(&refusal, Refusal::Envelope(EnvelopeError::RemovedWriter { name, epoch: 2 }) if name == "bob"),
        "{refusal:?}"
    );
}

/// `sealed` decrypted with the pool's data key, `edit`ed, and encrypted
/// again to it: what a member (who holds the data key) can forge.
fn reseal(pool: &Pool, sealed: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let key = pool.roster.latest().data_identity().expect("a data key");
    let mut plain = age::decrypt(&key, sealed).expect("decrypts");
    edit(&mut plain);
    let recipient = pool.roster.data_recipient().expect("a data key");
    age::encrypt(&recipient, &plain).expect("encrypts")
}

fn replace(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("found");
    bytes[at..at + from.len()].copy_from_slice(to);
}

#[test]
fn a_chunk_whose_author_field_is_forged_fails_its_signature() {
    let pool = Pool::new();
    let (sealed, _) = chunk_by(&pool.vault(&pool.bob), 1);
    // Bob names the admin as the writer of a file he signed.
    let forged = reseal(&pool, &sealed, |plain| {
        replace(
            plain,
            pool.bob.member_id().as_str().as_bytes(),
            pool.admin.member_id().as_str().as_bytes(),
        );
    });
    let name = store(&pool, DOC, &forged);
    let refusal = refusal_of(&pool.vault(&pool.admin), DOC, &name, &forged);
    assert!(
        matches!(refusal, Refusal::Envelope(EnvelopeError::BadSignature)),
        "{refusal:?}"
    );
}

#[test]
fn a_tampered_ciphertext_does_not_decrypt() {
    let pool = Pool::new();
    let (mut sealed, _) = chunk_by(&pool.vault(&pool.bob), 1);
    let last = sealed.len() - 20;
    sealed[last] ^= 1;
    let name = store(&pool, DOC, &sealed);
    let refusal = refusal_of(&pool.vault(&pool.admin), DOC, &name, &sealed);
    assert!(
        matches!(refusal, Refusal::Envelope(EnvelopeError::Decrypt(_))),
        "{refusal:?}"
    );
}

#[test]
fn a_chunk_from_another_workspace_or_document_is_refused() {
    let pool = Pool::new();
    // Sealed to this pool's data key under another workspace's name.
    let tmp = tempfile::tempdir().expect("a temp folder");
    let other = Replica::init(&tmp.path().join("store"), "ws-other").expect("a replica");
    let elsewhere = Vault::new(other, pool.bob.clone(), pool.roster.clone());
    let (sealed, _) = chunk_by(&elsewhere, 1);
    let name = store(&pool, DOC, &sealed);
    let refusal = refusal_of(&pool.vault(&pool.admin), DOC, &name, &sealed);
    assert!(
        matches!(&refusal, Refusal::Envelope(EnvelopeError::WrongWorkspace { expected, found }) if expected == WS && found == "ws-other"),
        "{refusal:?}"
    );
    // A genuine chunk of DOC replayed into another document.
    let (sealed, _) = chunk_by(&pool.vault(&pool.bob), 2);
    let name = store(&pool, "d2", &sealed);
    let refusal = refusal_of(&pool.vault(&pool.admin), "d2", &name, &sealed);
    assert!(
        matches!(&refusal, Refusal::Envelope(EnvelopeError::WrongDocument { expected, found }) if expected == "d2" && found == DOC),
        "{refusal:?}"
    );
}

#[test]
fn changes_under_another_members_actor_are_refused() {
    let pool = Pool::new();
    let bob = pool.vault(&pool.bob);
    // Bob signs a change made under the admin's actor.
    let theirs = writer(pool.admin.member_id(), 1);
    let sealed = bob
        .seal_chunk(DOC, &theirs.actor(), &[change(&theirs)])
        .expect("sealed");
    let name = store(&pool, DOC, &sealed);
    let refusal = refusal_of(&pool.vault(&pool.admin), DOC, &name, &sealed);
    assert!(
        matches!(&refusal, Refusal::ForeignActor { actor, signer } if *actor == theirs.actor().to_hex_string() && signer == "bob"),
        "{refusal:?}"
    );
}

#[test]
fn changes_by_an_actor_the_header_does_not_declare_are_refused() {
    let pool = Pool::new();
    let bob = pool.vault(&pool.bob);
    let declared = writer(pool.bob.member_id(), 1);
    let other = writer(pool.bob.member_id(), 2);
    let sealed = bob
        .seal_chunk(DOC, &declared.actor(), &[change(&other)])
        .expect("sealed");
    let name = store(&pool, DOC, &sealed);
    let refusal = refusal_of(&pool.vault(&pool.admin), DOC, &name, &sealed);
    assert!(
        matches!(&refusal, Refusal::UndeclaredActor { actor, .. } if *actor == other.actor().to_hex_string()),
        "{refusal:?}"
    );
}

#[test]
fn a_chunk_with_broken_framing_or_no_change_is_refused() {
    let pool = Pool::new();
    let bob = pool.vault(&pool.bob);
    let w = writer(pool.bob.member_id(), 1);
    let header = bob.header(Domain::Chunk, DOC, vec![w.actor().to_hex_string()]);
    let mut framed = frame(&[change(&w)]).expect("framed");
    framed.truncate(framed.len() - 1);
    let cut = bob
        .seal(&header, &framed, &Placement::Pool)
        .expect("sealed");
    let name = store(&pool, DOC, &cut);
    let refusal = refusal_of(&pool.vault(&pool.admin), DOC, &name, &cut);
    assert!(matches!(refusal, Refusal::TruncatedFraming), "{refusal:?}");
    let junk = frame(&[b"not a change".to_vec()]).expect("framed");
    let junk = bob.seal(&header, &junk, &Placement::Pool).expect("sealed");
    let name = store(&pool, DOC, &junk);
    let refusal = refusal_of(&pool.vault(&pool.admin), DOC, &name, &junk);
    assert!(matches!(refusal, Refusal::NotAChange(_)), "{refusal:?}");
}

#[test]
fn a_snapshot_round_trips_and_its_entries_are_checked_one_by_one() {
    let pool = Pool::new();
    let admin = pool.vault(&pool.admin);
    let (sealed, c) = chunk_by(&pool.vault(&pool.bob), 1);
    let name = store(&pool, DOC, &sealed);
    let signed = admin
        .signed_chunk(DOC, &name, &sealed)
        .expect("verifies")
        .signed_bytes();
    let entries = vec![(name.clone(), signed)];
    let snap = admin.seal_snapshot(DOC, &entries).expect("sealed");
    let snap_name = pool
        .replica
        .write_doc_file(DocFolder::Snapshots, DOC, &snap)
        .expect("written");
    let bob = pool.vault(&pool.bob);
    assert_eq!(
        bob.snapshot_entries(DOC, DocFolder::Snapshots, &snap_name, &snap)
            .expect("opens"),
        entries
    );
    let opened = ChunkOpener::open_snapshot(
        &bob,
        DOC,
        DocFolder::Snapshots,
        &snap_name,
        snap.clone(),
        &BTreeSet::new(),
    )
    .expect("opens");
    assert!(
        matches!(&opened[..], [(n, Ok(changes))] if *n == name && is_change(parsed(changes), &c)),
        "{opened:?}"
    );
    let index = bob
        .snapshot_index(DocFolder::Snapshots, DOC, &snap_name)
        .expect("an index");
    assert_eq!(Some(index[&name]), bob.chunk_digest(DOC, &name));
    // The same file read as another document's snapshot is a replay.
    let refused = bob.snapshot_entries("d2", DocFolder::Snapshots, &snap_name, &snap);
    assert!(
        matches!(
            refused,
            Err(Refusal::Envelope(EnvelopeError::WrongDocument { .. }))
        ),
        "{refused:?}"
    );
}

#[test]
fn a_snapshot_entry_by_a_removed_member_is_refused_alone() {
    let pool = Pool::new();
    let admin = pool.vault(&pool.admin);
    let (sealed, _) = chunk_by(&pool.vault(&pool.bob), 1);
    let name = store(&pool, DOC, &sealed);
    let signed = admin
        .signed_chunk(DOC, &name, &sealed)
        .expect("verifies")
        .signed_bytes();
    let snap = admin
        .seal_snapshot(DOC, &[(name.clone(), signed)])
        .expect("sealed");
    let after = Vault::new(
        pool.replica.clone(),
        pool.admin.clone(),
        pool.without_bob(BTreeSet::new()),
    );
    let entries = after
        .open_snapshot_entries(
            DOC,
            DocFolder::Snapshots,
            "s.snapshot",
            &snap,
            &BTreeSet::new(),
        )
        .expect("the snapshot itself verifies");
    assert!(
        matches!(&entries[..], [(n, _, Err(Refusal::Envelope(EnvelopeError::RemovedWriter { .. })))] if *n == name),
        "{entries:?}"
    );
}

#[test]
fn blobs_round_trip_and_are_checked() {
    let pool = Pool::new();
    let bob = pool.vault(&pool.bob);
    let (sha256, id) = bob
        .put_blob_bytes(b"an output", &Placement::Pool)
        .expect("stored");
    // Queued to be pushed, in the replica's one outbox.
    assert!(pool.replica.outbox().take().contains(&id.store_name()));
    let admin = pool.vault(&pool.admin);
    assert_eq!(admin.read_blob(&id).expect("reads"), b"an output");
    assert!(!admin.is_foreign_blob(&id));
    let tmp = tempfile::tempdir().expect("a temp folder");
    let dest = tmp.path().join("in/a.txt");
    admin
        .copy_blob_to(&id, &dest, Some(&sha256))
        .expect("copied");
    assert_eq!(std::fs::read(&dest).expect("read"), b"an output");
    let wrong = "0".repeat(64);
    let e = admin.copy_blob_to(&id, &dest, Some(&wrong));
    assert!(
        matches!(&e, Err(BlobError::ContentMismatch { expected, actual, .. }) if *expected == wrong && *actual == sha256),
        "{e:?}"
    );
}

#[test]
fn pool_blobs_are_stored_once_whoever_writes_them_until_a_removal_rekeys() {
    let pool = Pool::new();
    let (sha_b, by_bob) = pool
        .vault(&pool.bob)
        .put_blob_bytes(b"same content", &Placement::Pool)
        .expect("stored");
    let admin = pool.vault(&pool.admin);
    let (sha_a, by_admin) = admin
        .put_blob_bytes(b"same content", &Placement::Pool)
        .expect("stored");
    assert_eq!((sha_a, &by_admin), (sha_b, &by_bob));
    assert_eq!(
        pool.replica.list_blobs().expect("listed"),
        std::slice::from_ref(&by_bob)
    );
    // The file is not the content, and not what another workspace's
    // roster would make of it.
    let sealed = pool.replica.read_blob(&by_bob).expect("read");
    assert!(!sealed.windows(4).any(|w| w == b"same"));

    // Bob removed: the epoch's data key changes, so the same content is a
    // new file that bob, holding only the old keys, cannot read.
    let roster = pool.without_bob(BTreeSet::new());
    let admin = Vault::new(pool.replica.clone(), pool.admin.clone(), roster);
    let (_, after) = admin
        .put_blob_bytes(b"same content", &Placement::Pool)
        .expect("stored");
    assert_ne!(after, by_bob);
    assert_eq!(
        admin.read_blob(&by_bob).expect("old epoch"),
        b"same content"
    );
    assert_eq!(admin.read_blob(&after).expect("new epoch"), b"same content");
    let bob = pool.vault(&pool.bob);
    let e = bob.read_blob(&after);
    assert!(
        matches!(
            e.as_ref().map_err(BlobError::refusal),
            Err(Some(Refusal::Convergent(
                bridge_crypto::ConvergentError::NoKey { epoch: 2 }
            )))
        ),
        "{e:?}"
    );
    assert!(bob.is_foreign_blob(&after));
    assert!(!admin.is_foreign_blob(&after));
}

#[test]
fn a_convergent_blob_of_another_workspace_or_altered_is_refused() {
    let pool = Pool::new();
    let admin = pool.vault(&pool.admin);
    let tmp = tempfile::tempdir().expect("a temp folder");
    let other = Replica::init(&tmp.path().join("store"), "ws-other").expect("a replica");
    let elsewhere = Vault::new(other.clone(), pool.bob.clone(), pool.roster.clone());
    let (_, id) = elsewhere
        .put_blob_bytes(b"x", &Placement::Pool)
        .expect("sealed");
    let sealed = other.read_blob(&id).expect("read");
    let id = pool.replica.put_blob_bytes(&sealed).expect("stored");
    let mut altered = sealed.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let altered = pool.replica.put_blob_bytes(&altered).expect("stored");
    for id in [id, altered] {
        let e = admin.read_blob(&id);
        assert!(
            matches!(
                e.as_ref().map_err(BlobError::refusal),
                Err(Some(Refusal::Convergent(
                    bridge_crypto::ConvergentError::Decrypt
                )))
            ),
            "{e:?}"
        );
    }
}

#[test]
fn a_blob_from_another_workspace_or_by_a_stranger_is_refused() {
    let pool = Pool::new();
    let admin = pool.vault(&pool.admin);
    let tmp = tempfile::tempdir().expect("a temp folder");
    let other = Replica::init(&tmp.path().join("store"), "ws-other").expect("a replica");
    let elsewhere = Vault::new(other, pool.bob.clone(), pool.roster.clone());
    let header = elsewhere.header(Domain::Blob, "", Vec::new());
    let sealed = elsewhere
        .seal(&header, b"x", &Placement::Pool)
        .expect("sealed");
    let id = pool.replica.put_blob_bytes(&sealed).expect("stored");
    let e = admin.read_blob(&id);
    assert!(
        matches!(
            e.as_ref().map_err(BlobError::refusal),
            Err(Some(Refusal::BlobOfAnotherWorkspace { .. }))
        ),
        "{e:?}"
    );

    let stranger = Vault::new(
        pool.replica.clone(),
        pool.stranger.clone(),
        pool.roster.clone(),
    );
    let header = stranger.header(Domain::Blob, "", Vec::new());
    let sealed = stranger
        .seal(&header, b"x", &Placement::Pool)
        .expect("sealed");
    let id = pool.replica.put_blob_bytes(&sealed).expect("stored");
    let e = admin.read_blob(&id);
    assert!(
        matches!(
            e.as_ref().map_err(BlobError::refusal),
            Err(Some(Refusal::NeverAMember { writer })) if writer == pool.stranger.member_id()
        ),
        "{e:?}"
    );

    // A chunk is not a blob.
    let (chunk, _) = chunk_by(&pool.vault(&pool.bob), 1);
    let id = pool.replica.put_blob_bytes(&chunk).expect("stored");
    let e = admin.read_blob(&id);
    assert!(
        matches!(
            e.as_ref().map_err(BlobError::refusal),
            Err(Some(Refusal::NotABlob {
                found: Domain::Chunk
            }))
        ),
        "{e:?}"
    );
}

#[test]
fn the_cache_opens_only_for_its_device_and_document() {
    let pool = Pool::new();
    let admin = pool.vault(&pool.admin);
    let sealed = admin.seal_private(DOC, b"state").expect("sealed");
    assert_eq!(admin.open_private(DOC, &sealed).expect("opens"), b"state");
    let e = admin.open_private("d2", &sealed);
    assert!(matches!(e, Err(Refusal::NotOurCache)), "{e:?}");
    let e = pool.vault(&pool.bob).open_private(DOC, &sealed);
    assert!(
        matches!(e, Err(Refusal::Envelope(EnvelopeError::NotForUs))),
        "{e:?}"
    );
}

#[test]
fn a_device_outside_the_roster_is_not_a_member() {
    let pool = Pool::new();
    assert_eq!(pool.vault(&pool.bob).me().expect("a member").name, "bob");
    let e = pool.vault(&pool.stranger).me().map(|_| ());
    assert!(
        matches!(&e, Err(NotAMemberError { member, workspace, .. }) if member == pool.stranger.member_id() && workspace == WS),
        "{e:?}"
    );
}

#[test]
fn the_files_a_member_signed_are_found_for_their_removal() {
    let pool = Pool::new();
    let admin = pool.vault(&pool.admin);
    let (sealed, _) = chunk_by(&pool.vault(&pool.bob), 1);
    let name = store(&pool, DOC, &sealed);
    let (mine, _) = chunk_by(&admin, 2);
    store(&pool, DOC, &mine);
    let found = admin.files_signed_by(pool.bob.member_id()).expect("listed");
    let signed = admin
        .signed_chunk(DOC, &name, &sealed)
        .expect("verifies")
        .signed_bytes();
    assert_eq!(found.keys, BTreeSet::from([accepted_key(&signed)]));
    assert_eq!(found.chunk_files, 1);
}

#[test]
fn envelope_refusals_keep_the_envelopes_words() {
    let writer = Identity::generate().expect("a key").member_id().clone();
    let all = [
        EnvelopeError::NotForUs,
        EnvelopeError::Decrypt(Box::new(bridge_crypto::envelope::AgeFailure::Stream(
            std::io::Error::other("x"),
        ))),
        EnvelopeError::Malformed("x"),
        EnvelopeError::HashMismatch,
        EnvelopeError::BadSignature,
        EnvelopeError::WrongDomain {
            expected: Domain::Chunk,
            found: Domain::Blob,
        },
        EnvelopeError::WrongWorkspace {
            expected: "a".into(),
            found: "b".into(),
        },
        EnvelopeError::WrongDocument {
            expected: "a".into(),
            found: "b".into(),
        },
        EnvelopeError::UnknownWriter { writer },
        EnvelopeError::UnknownEpoch { epoch: 4 },
        EnvelopeError::RemovedWriter {
            name: "bob".into(),
            epoch: 3,
        },
        EnvelopeError::Encrypt(Box::new(bridge_crypto::envelope::AgeFailure::Stream(
            std::io::Error::other("x"),
        ))),
    ];
    for e in all {
        let text = e.to_string();
        assert_eq!(Refusal::from(e).to_string(), text);
    }
}

#[test]
fn sealing_a_header_another_member_names_is_refused_by_the_envelope() {
    // The vault signs only as its own device: `seal` refuses a header that
    // names another writer, so forging needs the raw envelope (above).
    let pool = Pool::new();
    let bob = pool.vault(&pool.bob);
    let mut header = bob.header(Domain::Chunk, DOC, Vec::new());
    header.writer = pool.admin.member_id().clone();
    let recipient = pool.roster.data_recipient().expect("a data key");
    assert!(seal(&pool.bob, &[recipient], &header, b"").is_err());
}

#[test]
fn unframe_undoes_frame_and_refuses_a_cut_frame_where_it_is_cut() {
    let changes = vec![b"one".to_vec(), Vec::new(), b"three".to_vec()];
    let payload = frame(&changes).expect("small changes");
    let back: Vec<Vec<u8>> = unframe(&payload)
        .map(|c| c.map(<[u8]>::to_vec))
        .collect::<Result<_, _>>()
        .expect("well framed");
    assert_eq!(back, changes);
    assert_eq!(unframe(&[]).count(), 0, "an empty payload holds no change");

    // Cut inside the last change: the first two come out, then the refusal.
    let cut = &payload[..payload.len() - 2];
    let items: Vec<_> = unframe(cut).collect();
    assert_eq!(items.len(), 3);
    assert!(matches!(items[0], Ok(b"one")), "{items:?}");
    assert!(
        matches!(items[2], Err(Refusal::TruncatedFraming)),
        "{items:?}"
    );
    // Cut inside a length.
    let cut = &payload[..2];
    assert!(matches!(
        unframe(cut).collect::<Vec<_>>()[..],
        [Err(Refusal::TruncatedFraming)]
    ));
}
