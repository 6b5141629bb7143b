//! Roster tests on real sealed files: genesis, add, remove, forgeries, forks,
//! late joiners, and the writer rules that follow from removals.

use super::*;
use crate::envelope::{Expect, open, open_verified, seal};
use crate::identity::Role;

const WS: &str = "ws-roster";

fn id() -> Identity {
    Identity::generate().unwrap()
}

fn member(name: &str, who: &Identity, role: Role) -> Member {
    Member {
        name: name.to_owned(),
        key: who.public(),
        role,
    }
}

/// Named store files, as [`Roster::verify`] takes them.
fn files(list: &[(&str, &Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(name, bytes)| ((*name).to_owned(), (*bytes).clone()))
        .collect()
}

fn chunk(writer: &Identity, roster: &Roster, epoch: u64, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        domain: Domain::Chunk,
        workspace: WS.to_owned(),
        document: "doc".to_owned(),
        epoch,
        writer: writer.member_id().clone(),
        actors: Vec::new(),
        sha256: String::new(),
    };
    let recipients = roster.epoch(epoch).unwrap().recipients();
    seal(writer, &recipients, &header, payload).unwrap()
}

const EXPECT: Expect<'static> = Expect {
    domain: Domain::Chunk,
    workspace: WS,
    document: Some("doc"),
};

/// Seals an arbitrary epoch as `signer`, bypassing every check of
/// add_member/remove_member: what a rogue member or outsider could write.
fn forge_epoch(signer: &Identity, epoch: &Epoch) -> Vec<u8> {
    seal_epoch(signer, epoch).unwrap().1
}

/// A successor of `roster`'s latest epoch with `members`, signed by `signer`.
fn successor(roster: &Roster, signer: &Identity, members: Vec<Member>) -> Epoch {
    let latest = roster.latest();
    Epoch {
        number: latest.number + 1,
        prev: Some(latest.hash()),
        members,
        signer: signer.member_id().clone(),
        created_at: latest.created_at + 1,
        ..latest.clone()
    }
}

fn skipped_reasons(warnings: &[RosterWarning]) -> Vec<(&str, &EpochError)> {
    warnings
        .iter()
        .filter_map(|w| match w {
            RosterWarning::Skipped { file, reason } => Some((file.as_str(), reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn genesis_verifies_against_the_pinned_root() {
    let root = id();
    let (roster, e0) = Roster::genesis(&root, "laptop", WS, 100).unwrap();
    let latest = roster.latest();
    assert_eq!(latest.number, 0);
    assert_eq!(latest.prev, None);
    assert_eq!(latest.members, vec![member("laptop", &root, Role::Admin)]);
    assert_eq!(roster.workspace(), WS);

    let (back, warnings) = Roster::verify(
        &files(&[("members/0.age", &e0)]),
        &root,
        WS,
        root.member_id(),
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(back.epochs(), roster.epochs());
    assert_eq!(back.naming_key(), roster.naming_key());

    // Another pinned root, or another workspace: no genesis.
    let other = id();
    let err = Roster::verify(
        &files(&[("members/0.age", &e0)]),
        &root,
        WS,
        other.member_id(),
    )
    .unwrap_err();
    assert!(matches!(&err, RosterError::NoGenesis { warnings, .. } if warnings.len() == 1));
    assert!(err.to_string().contains(other.member_id().as_str()));
    let err =
        Roster::verify(&files(&[("m", &e0)]), &root, "ws-other", root.member_id()).unwrap_err();
    let RosterError::NoGenesis { warnings, .. } = err else {
        panic!("expected NoGenesis")
    };
    assert!(matches!(
        skipped_reasons(&warnings)[..],
        [("m", EpochError::OtherWorkspace(_))]
    ));
    assert!(matches!(
        Roster::verify(&[], &root, WS, root.member_id()),
        Err(RosterError::NoGenesis { .. })
    ));
    assert!(matches!(
        Roster::genesis(&root, "laptop", "", 1),
        Err(RosterError::EmptyWorkspace)
    ));
}

#[test]
fn a_genesis_not_signed_by_the_root_is_refused() {
    let root = id();
    let mallory = id();
    let (roster, _) = Roster::genesis(&root, "root", WS, 1).unwrap();
    // Mallory's own genesis listing the root as admin, signed by Mallory.
    let mut fake = roster.latest().clone();
    fake.members.push(member("mallory", &mallory, Role::Admin));
    fake.signer = mallory.member_id().clone();
    let forged = forge_epoch(&mallory, &fake);
    let err = Roster::verify(&files(&[("f", &forged)]), &root, WS, root.member_id()).unwrap_err();
    let RosterError::NoGenesis { warnings, .. } = err else {
        panic!("expected NoGenesis")
    };
    assert!(matches!(
        skipped_reasons(&warnings)[..],
        [("f", EpochError::NotRoot { .. })]
    ));
}

#[test]
fn add_and_remove_members() {
    let root = id();
    let bob = id();
    let carol = id();
    let (r0, e0) = Roster::genesis(&root, "root", WS, 1).unwrap();
    let (r1, e1) = r0
        .add_member(&root, member("bob", &bob, Role::Submit), 2)
        .unwrap();
    let bob_history = r1.reseal_history().unwrap();
    let (r2, e2) = r1
        .add_member(&root, member("carol", &carol, Role::Worker), 3)
        .unwrap();

    // Bob writes files under epochs 1 and 2, before he is removed.
    let early = chunk(&bob, &r2, 1, b"early");
    let late = chunk(&bob, &r2, 2, b"late");
    let accepted: BTreeSet<String> = ["chunks/doc/early.age".to_owned()].into();
    let (r3, e3) = r2.remove_member(&root, "bob", accepted, 4).unwrap();
    assert_eq!(r3.latest().number, 3);
    assert!(r3.latest().member(bob.member_id()).is_none());
    assert_eq!(r3.latest().removal(bob.member_id()).unwrap().epoch, 3);
    assert_eq!(r3.naming_key(), r0.naming_key());

    // Bob cannot decrypt the new epoch; carol and root can.
    assert!(matches!(open(&bob, &e3), Err(EnvelopeError::NotForUs)));
    open(&carol, &e3).unwrap();

    // The whole chain verifies for root (reader of every epoch), in any order.
    let all = files(&[("e3", &e3), ("e1", &e1), ("e0", &e0), ("e2", &e2)]);
    let (v, warnings) = Roster::verify(&all, &root, WS, root.member_id()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(v.epochs(), r3.epochs());

    // Bob (reading genesis through the copy resealed when he joined) keeps
    // the chain up to where he can read, with a warning for e0 and e3.
    let mut for_bob = all.clone();
    for_bob.push(("e0-for-bob".to_owned(), bob_history[0].clone()));
    let (vb, warnings) = Roster::verify(&for_bob, &bob, WS, root.member_id()).unwrap();
    assert_eq!(vb.latest().number, 2);
    let not_for_bob: Vec<&str> = warnings
        .iter()
        .map(|w| match w {
            RosterWarning::NotForUs { file } => file.as_str(),
            other => panic!("unexpected warning {other}"),
        })
        .collect();
    assert_eq!(not_for_bob, ["e3", "e0"]);

    // His earlier file listed in `accepted` stays valid; the other does not.
    let (_, by) = open_verified(&root, &v, &early, "chunks/doc/early.age", EXPECT).unwrap();
    assert_eq!(by.name, "bob");
    let err = open_verified(&root, &v, &late, "chunks/doc/late.age", EXPECT).unwrap_err();
    assert!(matches!(&err, EnvelopeError::RemovedWriter { name, epoch: 3 } if name == "bob"));
    assert!(
        err.to_string()
            .contains("signed by bob, removed in epoch 3"),
        "{err}"
    );
    // Renaming his accepted file's copy does not help: names are checked.
    assert!(open_verified(&root, &v, &early, "chunks/doc/early2.age", EXPECT).is_err());

    // Anything he signs under the removal epoch or later is refused, even if
    // encrypted to the current members and named like an accepted file.
    let mut header_epoch = chunk(&bob, &r2, 2, b"x");
    for epoch in [3, 4] {
        let header = Header {
            domain: Domain::Chunk,
            workspace: WS.to_owned(),
            document: "doc".to_owned(),
            epoch,
            writer: bob.member_id().clone(),
            actors: Vec::new(),
            sha256: String::new(),
        };
        header_epoch = seal(&bob, &v.latest().recipients(), &header, b"x").unwrap();
        let err =
            open_verified(&root, &v, &header_epoch, "chunks/doc/early.age", EXPECT).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::RemovedWriter { epoch: 3, .. }),
            "{err}"
        );
    }
    assert!(!header_epoch.is_empty());

    // Carol, still a member, writes under the old epoch 2 (offline) and 3.
    open_verified(&root, &v, &chunk(&carol, &v, 2, b"c2"), "c2", EXPECT).unwrap();
    open_verified(&root, &v, &chunk(&carol, &v, 3, b"c3"), "c3", EXPECT).unwrap();

    // Removed keys are never re-added; the last admin cannot be removed.
    assert!(matches!(
        r3.add_member(&root, member("bob-again", &bob, Role::Worker), 5),
        Err(RosterError::WasRemoved { .. })
    ));
    assert!(matches!(
        r3.remove_member(&root, "root", BTreeSet::new(), 5),
        Err(RosterError::LastAdmin { .. })
    ));
    assert!(matches!(
        r3.remove_member(&root, "nobody", BTreeSet::new(), 5),
        Err(RosterError::UnknownMember { .. })
    ));
    assert!(matches!(
        r3.add_member(&root, member("carol", &id(), Role::Worker), 5),
        Err(RosterError::DuplicateName { .. })
    ));
    assert!(matches!(
        r3.add_member(&root, member("carol2", &carol, Role::Worker), 5),
        Err(RosterError::DuplicateKey { .. })
    ));
}

#[test]
fn a_late_joiner_verifies_from_genesis_with_resealed_history() {
    let root = id();
    let dave = id();
    let (r0, e0) = Roster::genesis(&root, "root", WS, 1).unwrap();
    let (r1, e1) = r0
        .add_member(&root, member("dave", &dave, Role::Worker), 2)
        .unwrap();
    let history = r1.reseal_history().unwrap();
    assert_eq!(history.len(), 1);

    // Without the resealed history dave cannot read genesis.
    let plain = files(&[("e0", &e0), ("e1", &e1)]);
    assert!(matches!(
        Roster::verify(&plain, &dave, WS, root.member_id()),
        Err(RosterError::NoGenesis { .. })
    ));
    // With it, the chain verifies; the original and the copy are no fork.
    let mut with = plain.clone();
    with.push(("e0-for-dave".to_owned(), history[0].clone()));
    let (v, warnings) = Roster::verify(&with, &dave, WS, root.member_id()).unwrap();
    assert_eq!(v.epochs(), r1.epochs());
    assert!(
        matches!(&warnings[..], [RosterWarning::NotForUs { file }] if file == "e0"),
        "{warnings:?}"
    );
    let (_, warnings) = Roster::verify(&with, &root, WS, root.member_id()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn forged_epochs_are_skipped_with_a_warning() {
    let root = id();
    let bob = id();
    let carol = id();
    let mallory = id();
    let (r0, e0) = Roster::genesis(&root, "root", WS, 1).unwrap();
    let (r1, e1) = r0
        .add_member(&root, member("bob", &bob, Role::Submit), 2)
        .unwrap();
    let (r2, e2) = r1
        .add_member(&root, member("carol", &carol, Role::Worker), 3)
        .unwrap();

    // A submit member, a worker and an outsider each try to make themselves admin.
    let mut cases = Vec::new();
    for (who, name) in [(&bob, "bob"), (&carol, "carol"), (&mallory, "mallory")] {
        let mut members = r2.latest().members.clone();
        members.retain(|m| m.name != name);
        members.push(member(name, who, Role::Admin));
        cases.push((name, forge_epoch(who, &successor(&r2, who, members))));
    }
    // Signed by bob while claiming root as the signer.
    let mut claims_root = successor(&r2, &root, r2.latest().members.clone());
    claims_root.created_at = 99;
    let header = Header {
        domain: Domain::Roster,
        workspace: WS.to_owned(),
        document: String::new(),
        epoch: 3,
        writer: root.member_id().clone(),
        actors: Vec::new(),
        sha256: hex::encode(Sha256::digest(claims_root.canonical_bytes())),
    };
    let signed = envelope::sign(&root, &header, &claims_root.canonical_bytes()).unwrap();
    let mut plaintext = signed.plaintext();
    let sig_at = plaintext.len() - signed.payload.len() - 64;
    plaintext[sig_at..sig_at + 64].copy_from_slice(&bob.sign(b"anything"));
    let bad_sig = envelope::encrypt(&claims_root.recipients(), &plaintext).unwrap();

    for (name, forged) in &cases {
        let all = files(&[("e0", &e0), ("e1", &e1), ("e2", &e2), ("forged", forged)]);
        let (v, warnings) = Roster::verify(&all, &root, WS, root.member_id()).unwrap();
        assert_eq!(v.latest().number, 2, "{name}'s epoch was accepted");
        assert!(
            matches!(
                skipped_reasons(&warnings)[..],
                [("forged", EpochError::NotAdmin { prev: 2, .. })]
            ),
            "{name}: {warnings:?}"
        );
        assert!(warnings[0].to_string().contains("forged"));
    }
    let all = files(&[("e0", &e0), ("e1", &e1), ("e2", &e2), ("forged", &bad_sig)]);
    let (v, warnings) = Roster::verify(&all, &root, WS, root.member_id()).unwrap();
    assert_eq!(v.latest().number, 2);
    assert!(
        matches!(
            skipped_reasons(&warnings)[..],
            [("forged", EpochError::BadSignature)]
        ),
        "{warnings:?}"
    );

    // An admin's epoch that changes the naming key or rewrites removals.
    let mut rekeyed = successor(&r2, &root, r2.latest().members.clone());
    rekeyed.naming_key = "00".repeat(32);
    let rekeyed = forge_epoch(&root, &rekeyed);
    let all = files(&[("e0", &e0), ("e1", &e1), ("e2", &e2), ("rekeyed", &rekeyed)]);
    let (_, warnings) = Roster::verify(&all, &root, WS, root.member_id()).unwrap();
    assert!(matches!(
        skipped_reasons(&warnings)[..],
        [("rekeyed", EpochError::Rewrites)]
    ));

    // Garbage and a chunk file among the roster files are skipped too.
    let garbage = vec![1u8, 2, 3];
    let a_chunk = chunk(&bob, &r2, 2, b"x");
    let all = files(&[("e0", &e0), ("junk", &garbage), ("chunk", &a_chunk)]);
    let (v, warnings) = Roster::verify(&all, &root, WS, root.member_id()).unwrap();
    assert_eq!(v.latest().number, 0);
    let reasons = skipped_reasons(&warnings);
    assert!(matches!(
        reasons[..],
        [
            ("junk", EpochError::Envelope(_)),
            ("chunk", EpochError::NotRoster(_))
        ]
    ));
}

#[test]
fn workers_and_submitters_cannot_admin() {
    let root = id();
    let bob = id();
    let carol = id();
    let (r0, _) = Roster::genesis(&root, "root", WS, 1).unwrap();
    let (r1, _) = r0
        .add_member(&root, member("bob", &bob, Role::Submit), 2)
        .unwrap();
    let (r2, _) = r1
        .add_member(&root, member("carol", &carol, Role::Worker), 3)
        .unwrap();
    for who in [&bob, &carol] {
        assert!(matches!(
            r2.add_member(who, member("eve", &id(), Role::Admin), 4),
            Err(RosterError::NotAdmin { .. })
        ));
        assert!(matches!(
            r2.remove_member(who, "root", BTreeSet::new(), 4),
            Err(RosterError::NotAdmin { .. })
        ));
    }
    assert!(
        !r2.latest()
            .member(carol.member_id())
            .unwrap()
            .role
            .can_admin()
    );
    assert!(
        !r2.latest()
            .member(carol.member_id())
            .unwrap()
            .role
            .can_submit()
    );
    // A second admin can change the roster, and remove the first.
    let ann = id();
    let (r3, _) = r2
        .add_member(&root, member("ann", &ann, Role::Admin), 4)
        .unwrap();
    let (r4, _) = r3.remove_member(&ann, "root", BTreeSet::new(), 5).unwrap();
    assert_eq!(r4.latest().signer, *ann.member_id());
}

#[test]
fn a_fork_resolves_to_the_lowest_hash_on_every_replica() {
    let root = id();
    let ann = id();
    let x = id();
    let y = id();
    let (r0, e0) = Roster::genesis(&root, "root", WS, 1).unwrap();
    let (r1, e1) = r0
        .add_member(&root, member("ann", &ann, Role::Admin), 2)
        .unwrap();
    // Offline, root adds x and ann adds y: two epochs 2.
    let (rx, ex) = r1
        .add_member(&root, member("x", &x, Role::Worker), 3)
        .unwrap();
    let (ry, ey) = r1
        .add_member(&ann, member("y", &y, Role::Worker), 3)
        .unwrap();
    // And root builds an epoch 3 on its own branch.
    let (_, ex3) = rx
        .add_member(&root, member("z", &id(), Role::Worker), 4)
        .unwrap();
    let (winner, loser, winner_file, loser_file) = if rx.latest().hash() < ry.latest().hash() {
        (&rx, &ry, "fork-x", "fork-y")
    } else {
        (&ry, &rx, "fork-y", "fork-x")
    };

    let orders = [
        files(&[
            ("e0", &e0),
            ("e1", &e1),
            ("fork-x", &ex),
            ("fork-y", &ey),
            ("x3", &ex3),
        ]),
        files(&[
            ("x3", &ex3),
            ("fork-y", &ey),
            ("fork-x", &ex),
            ("e1", &e1),
            ("e0", &e0),
        ]),
    ];
    for all in &orders {
        let (v, warnings) = Roster::verify(all, &root, WS, root.member_id()).unwrap();
        let chain_head = &v.epochs()[2];
        assert_eq!(chain_head, winner.latest());
        assert_ne!(chain_head, loser.latest());
        assert!(warnings.iter().any(|w| matches!(w,
            RosterWarning::Fork { number: 2, kept, dropped }
                if kept == winner_file && dropped == loser_file)));
        if winner_file == "fork-x" {
            assert_eq!(v.latest().number, 3);
        } else {
            assert_eq!(v.latest().number, 2);
            assert!(
                skipped_reasons(&warnings)
                    .iter()
                    .any(|(f, r)| *f == "x3" && matches!(r, EpochError::PrevMismatch { prev: 2 }))
            );
        }
    }
}

#[test]
fn debug_and_warnings_hide_the_naming_key() {
    let root = id();
    let (r, _) = Roster::genesis(&root, "root", WS, 1).unwrap();
    let key = r.latest().naming_key.clone();
    let shown = format!("{r:?} {:?} {:#?}", r.latest(), r.epochs());
    assert!(!shown.contains(&key), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[test]
fn random_roster_files_never_panic() {
    let root = id();
    let (r0, e0) = Roster::genesis(&root, "root", WS, 1).unwrap();
    let (_, e1) = r0
        .add_member(&root, member("w", &id(), Role::Worker), 2)
        .unwrap();
    let inner0 = open(&root, &e0).unwrap().plaintext();
    let me = [root.public().recipient().clone()];
    let mut state = 0x1234_5678_9abc_def1u64;
    for i in 0..300 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut bytes = inner0.clone();
        let at = (state as usize) % bytes.len();
        bytes[at] = (state >> 32) as u8;
        let mutated = envelope::encrypt(&me, &bytes).unwrap();
        let all = files(&[("m", &mutated), ("e1", &e1)]);
        match Roster::verify(&all, &root, WS, root.member_id()) {
            Ok((v, _)) => assert_eq!(bytes, inner0, "mutation {i} at byte {at} accepted: {v:?}"),
            Err(e) => assert!(matches!(e, RosterError::NoGenesis { .. })),
        }
    }
}

/// A removal that accepts a file by the hash of its signed envelope keeps
/// it valid under any store name and inside a snapshot (verify_signed),
/// while any other envelope the removed member signs is refused.
#[test]
fn removal_accepts_signed_envelopes_by_hash_wherever_they_lie() {
    let root = id();
    let bob = id();
    let (r0, _) = Roster::genesis(&root, "root", WS, 1).unwrap();
    let (r1, _) = r0
        .add_member(&root, member("bob", &bob, Role::Submit), 2)
        .unwrap();
    let kept = chunk(&bob, &r1, 1, b"kept");
    let other = chunk(&bob, &r1, 1, b"other");
    let signed = open(&root, &kept).unwrap().signed_bytes();
    let accepted: BTreeSet<String> = [accepted_key(&signed)].into();
    let (r2, _) = r1.remove_member(&root, "bob", accepted, 3).unwrap();

    for name in ["chunks/doc/a.age", "chunks/doc/renamed.age"] {
        let (_, by) = open_verified(&root, &r2, &kept, name, EXPECT).unwrap();
        assert_eq!(by.name, "bob");
    }
    let (_, by) =
        crate::envelope::verify_signed(&r2, signed.clone(), "chunks/doc/x", EXPECT).unwrap();
    assert_eq!(by.name, "bob");

    let err = open_verified(&root, &r2, &other, "chunks/doc/a.age", EXPECT).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::RemovedWriter { epoch: 2, .. }),
        "{err}"
    );
    let other_signed = open(&root, &other).unwrap().signed_bytes();
    assert!(crate::envelope::verify_signed(&r2, other_signed, "chunks/doc/x", EXPECT).is_err());
    assert_ne!(accepted_key(&signed), accepted_key(b"tampered"));
}

/// A removal's accepted list is written once, in its own epoch: later
/// epochs (and their re-sealed copies) carry only its hash, so removing a
/// member that wrote 10,000 files does not grow every later epoch. The
/// list still decides, on a late joiner too, and no later epoch can change
/// it.
#[test]
fn a_long_accepted_list_is_carried_by_its_hash() {
    let root = id();
    let bob = id();
    let (r0, g) = Roster::genesis(&root, "root", WS, 1).unwrap();
    let (r1, e1) = r0
        .add_member(&root, member("bob", &bob, Role::Worker), 2)
        .unwrap();
    let kept = chunk(&bob, &r1, 1, b"kept");
    let other = chunk(&bob, &r1, 1, b"other");
    let mut accepted: BTreeSet<String> = (0..10_000)
        .map(|i| accepted_key(format!("file {i}").as_bytes()))
        .collect();
    accepted.insert(accepted_key(&open(&root, &kept).unwrap().signed_bytes()));
    let (r2, e2) = r1.remove_member(&root, "bob", accepted.clone(), 3).unwrap();
    let removal_size = r2.latest().canonical_bytes().len();
    assert!(removal_size > 700_000, "{removal_size}");

    let mut roster = r2;
    let mut sealed = vec![g, e1, e2];
    let mut late = None;
    for i in 0..4 {
        let who = id();
        let (next, file) = roster
            .add_member(&root, member(&format!("m{i}"), &who, Role::Submit), 4 + i)
            .unwrap();
        let later = next.latest();
        assert!(
            later.canonical_bytes().len() < 4_000,
            "epoch {} carries the list",
            later.number
        );
        assert_eq!(
            later.removed[0].accepted_sha256.as_deref(),
            Some(accepted_digest(&accepted).as_str())
        );
        sealed.push(file);
        sealed.extend(next.reseal_history().unwrap());
        roster = next;
        late = Some(who);
    }
    // A member added last verifies the chain from genesis and applies the
    // removal's list from its own epoch (the chunks are opened with the
    // root's key: they were sealed to epoch 1's members).
    let late = late.unwrap();
    let named: Vec<(String, Vec<u8>)> = sealed
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("chunks/roster/{i}.chunk"), b.clone()))
        .collect();
    let (seen, _) = Roster::verify(&named, &late, WS, root.member_id()).unwrap();
    assert_eq!(seen.latest().number, roster.latest().number);
    let (_, by) = open_verified(&root, &seen, &kept, "chunks/doc/a.chunk", EXPECT).unwrap();
    assert_eq!(by.name, "bob");
    let err = open_verified(&root, &seen, &other, "chunks/doc/b.chunk", EXPECT).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::RemovedWriter { epoch: 2, .. }),
        "{err}"
    );

    // A later epoch that changes the carried hash rewrites the removal.
    let mut forged = successor(&roster, &root, roster.latest().members.clone());
    forged.removed[0].accepted_sha256 = Some(accepted_digest(&BTreeSet::new()));
    let mut with_forged = named.clone();
    with_forged.push((
        "chunks/roster/forged.chunk".into(),
        forge_epoch(&root, &forged),
    ));
    let (v, warnings) = Roster::verify(&with_forged, &root, WS, root.member_id()).unwrap();
    assert_eq!(v.latest().number, roster.latest().number);
    assert!(
        skipped_reasons(&warnings)
            .iter()
            .any(|(f, r)| *f == "chunks/roster/forged.chunk" && matches!(r, EpochError::Rewrites)),
        "{warnings:?}"
    );
    // A removal cannot name its list by hash in its own epoch (its list
    // would be nowhere).
    let carol = id();
    let (r_c, _) = roster
        .add_member(&root, member("carol", &carol, Role::Submit), 20)
        .unwrap();
    let mut own = successor(
        &r_c,
        &root,
        r_c.latest().members[..r_c.latest().members.len() - 1].to_vec(),
    );
    own.removed.push(Removal {
        member: carol.member_id().clone(),
        epoch: own.number,
        accepted: BTreeSet::new(),
        accepted_sha256: Some(accepted_digest(&BTreeSet::new())),
    });
    let file = forge_epoch(&root, &own);
    let e = read_epoch_file(&root, WS, &file).err();
    assert!(matches!(e, Some(EpochError::Shape(_))), "{e:?}");
}
