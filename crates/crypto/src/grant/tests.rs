//! Grant tests on real sealed files: who can open the keys, the chain rules,
//! forged generations, rotation.

use super::*;
use crate::identity::Role;
use crate::roster::Member;

const WS: &str = "ws-grant";
const BATCH: &str = "0000018f00000000aabbccddeeff0011";

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

/// A roster: root (admin), alice (submit), bob (submit), runner (worker).
struct World {
    root: Identity,
    alice: Identity,
    bob: Identity,
    runner: Identity,
    roster: Roster,
}

fn world() -> World {
    let (root, alice, bob, runner) = (id(), id(), id(), id());
    let (r, _) = Roster::genesis(&root, "root", WS, 1).unwrap();
    let (r, _) = r
        .add_member(&root, member("alice", &alice, Role::Submit), 2)
        .unwrap();
    let (r, _) = r
        .add_member(&root, member("bob", &bob, Role::Submit), 3)
        .unwrap();
    let (roster, _) = r
        .add_member(&root, member("runner", &runner, Role::Worker), 4)
        .unwrap();
    World {
        root,
        alice,
        bob,
        runner,
        roster,
    }
}

fn grant(
    writer: &Identity,
    roster: &Roster,
    prev: Option<&Notice>,
    audience: &[&Identity],
    keys: &[BatchKey],
) -> Notice {
    let audience: Vec<PublicKey> = audience.iter().map(|i| i.public()).collect();
    let (sealed, hash) = seal_grant(
        writer,
        roster,
        &NewGrant {
            batch: BATCH,
            prev,
            audience: &audience,
            keys,
            tasks: 40,
            documents: 1,
            now: 5,
        },
    )
    .unwrap();
    let notice = open_grant(
        &roster.data_identities(),
        roster,
        &sealed,
        "chunks/audiences/x",
    )
    .unwrap();
    assert_eq!(notice.hash, hash);
    notice
}

#[test]
fn only_the_audience_opens_the_keys_but_every_member_reads_the_notice() {
    let w = world();
    let key = BatchKey::generate();
    let n = grant(
        &w.alice,
        &w.roster,
        None,
        &[&w.alice, &w.root],
        std::slice::from_ref(&key),
    );
    assert_eq!(n.body.tasks, 40);
    assert_eq!(n.body.generation, 0);
    assert_eq!(n.body.recipient, key.recipient().to_string());
    let opened = n.open_keys(&w.root).expect("root is in the audience");
    assert_eq!(opened.len(), 1);
    assert_eq!(
        opened[0].recipient().to_string(),
        key.recipient().to_string()
    );
    assert!(n.open_keys(&w.alice).is_some());
    assert!(n.open_keys(&w.runner).is_none(), "the runner is not in it");
    assert!(n.open_keys(&w.bob).is_none(), "bob is not in it");
    // Even if bob edits the notice to name himself, the sealed keys are not
    // encrypted to him.
    let mut forged = n.clone();
    forged.body.audience.push(w.bob.member_id().clone());
    assert!(forged.open_keys(&w.bob).is_none());
    // The secrets never appear in the notice.
    let secret = key.identity().to_string().expose_secret().to_owned();
    assert!(!format!("{n:?}").contains(&secret));
    assert!(!format!("{key:?}").contains(&secret));
}

#[test]
fn a_grant_is_refused_when_its_writer_or_body_is_wrong() {
    let w = world();
    let key = BatchKey::generate();
    // A stranger's audience member is refused at sealing.
    let stranger = id();
    let err = seal_grant(
        &w.alice,
        &w.roster,
        &NewGrant {
            batch: BATCH,
            prev: None,
            audience: &[stranger.public()],
            keys: std::slice::from_ref(&key),
            tasks: 1,
            documents: 1,
            now: 1,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, GrantError::NotAMember { member } if member == stranger.member_id()),
        "{err}"
    );
    // Wrong number of keys for the generation.
    let err = seal_grant(
        &w.alice,
        &w.roster,
        &NewGrant {
            batch: BATCH,
            prev: None,
            audience: &[w.alice.public()],
            keys: &[key.clone(), key.clone()],
            tasks: 1,
            documents: 1,
            now: 1,
        },
    )
    .unwrap_err();
    assert!(matches!(err, GrantError::Malformed(_)), "{err}");
    // A grant signed by a non-member does not open.
    let (outsider_roster, _) = Roster::genesis(&stranger, "s", WS, 1).unwrap();
    let (sealed, _) = seal_grant(
        &stranger,
        &outsider_roster,
        &NewGrant {
            batch: BATCH,
            prev: None,
            audience: &[stranger.public()],
            keys: &[key],
            tasks: 1,
            documents: 1,
            now: 1,
        },
    )
    .unwrap();
    let all: Vec<_> = w
        .roster
        .data_identities()
        .into_iter()
        .chain(outsider_roster.data_identities())
        .collect();
    assert!(open_grant(&all, &w.roster, &sealed, "f").is_err());
}

#[test]
fn generation_zero_needs_a_submitter_and_matches_the_batch_submitter() {
    let w = world();
    let real = grant(
        &w.alice,
        &w.roster,
        None,
        &[&w.alice],
        &[BatchKey::generate()],
    );
    let forged = grant(&w.bob, &w.roster, None, &[&w.bob], &[BatchKey::generate()]);
    let by_runner = grant(
        &w.runner,
        &w.roster,
        None,
        &[&w.runner],
        &[BatchKey::generate()],
    );
    let all = vec![real.clone(), forged.clone(), by_runner];
    // Without knowing the submitter: both submit-role grants are valid, the
    // runner's is not (a worker cannot submit).
    let r = resolve(&all, &w.roster, &BTreeMap::new());
    let g0: Vec<&MemberId> = r[BATCH].generations[0].iter().map(|n| &n.writer).collect();
    assert_eq!(g0.len(), 2);
    assert!(!g0.contains(&w.runner.member_id()));
    // Knowing alice submitted the batch: bob's forgery is ignored.
    let submitters = BTreeMap::from([(
        BATCH.to_owned(),
        BTreeSet::from([w.alice.member_id().clone()]),
    )]);
    let r = resolve(&all, &w.roster, &submitters);
    assert_eq!(r[BATCH].generations[0].len(), 1);
    assert_eq!(r[BATCH].newest().map(|n| &n.hash), Some(&real.hash));
    // Knowing bob did not submit anything he has a grant for.
    let submitters = BTreeMap::from([(
        BATCH.to_owned(),
        BTreeSet::from([w.root.member_id().clone()]),
    )]);
    assert!(resolve(&all, &w.roster, &submitters).is_empty());
}

#[test]
fn rotation_chains_generations_and_removed_members_miss_new_keys() {
    let w = world();
    let k0 = BatchKey::generate();
    let g0 = grant(
        &w.alice,
        &w.roster,
        None,
        &[&w.alice, &w.bob],
        std::slice::from_ref(&k0),
    );
    // Alice removes bob from the audience: a fresh key; bob cannot open it.
    let k1 = BatchKey::generate();
    let g1 = grant(
        &w.alice,
        &w.roster,
        Some(&g0),
        &[&w.alice],
        &[k0.clone(), k1.clone()],
    );
    assert_eq!(g1.body.generation, 1);
    assert_eq!(g1.body.prev.as_ref(), Some(&g0.hash));
    assert!(g1.open_keys(&w.bob).is_none());
    assert_eq!(g0.open_keys(&w.bob).map(|k| k.len()), Some(1));
    // Alice adds root: root gets every earlier secret.
    let k2 = BatchKey::generate();
    let g2 = grant(
        &w.alice,
        &w.roster,
        Some(&g1),
        &[&w.alice, &w.root],
        &[k0.clone(), k1.clone(), k2.clone()],
    );
    let root_keys = g2.open_keys(&w.root).expect("root was added");
    let recipients: Vec<String> = root_keys
        .iter()
        .map(|k| k.recipient().to_string())
        .collect();
    assert_eq!(
        recipients,
        [&k0, &k1, &k2].map(|k| k.recipient().to_string()).to_vec()
    );
    let r = resolve(
        &[g2.clone(), g0.clone(), g1.clone()],
        &w.roster,
        &BTreeMap::new(),
    );
    assert_eq!(r[BATCH].generations.len(), 3);
    assert_eq!(r[BATCH].newest().map(|n| &n.hash), Some(&g2.hash));
    // Bob (in generation 0's audience, not in 1's) cannot write generation 2.
    let bogus = grant(
        &w.bob,
        &w.roster,
        Some(&g1),
        &[&w.bob],
        &[k0.clone(), k1.clone(), BatchKey::generate()],
    );
    let r = resolve(
        &[g0.clone(), g1.clone(), bogus],
        &w.roster,
        &BTreeMap::new(),
    );
    assert_eq!(
        r[BATCH].generations.len(),
        2,
        "bob's generation 2 is refused"
    );
    // A generation naming an unknown previous hash is refused.
    let mut orphan = g1.clone();
    orphan.body.prev = Some("0".repeat(64));
    orphan.hash = "f".repeat(64);
    let r = resolve(&[g0.clone(), orphan], &w.roster, &BTreeMap::new());
    assert_eq!(r[BATCH].generations.len(), 1);
}

#[test]
fn concurrent_generations_pick_the_lowest_hash_deterministically() {
    let w = world();
    let k0 = BatchKey::generate();
    let g0 = grant(
        &w.alice,
        &w.roster,
        None,
        &[&w.alice, &w.bob],
        std::slice::from_ref(&k0),
    );
    let a = grant(
        &w.alice,
        &w.roster,
        Some(&g0),
        &[&w.alice],
        &[k0.clone(), BatchKey::generate()],
    );
    let b = grant(
        &w.bob,
        &w.roster,
        Some(&g0),
        &[&w.bob, &w.alice],
        &[k0.clone(), BatchKey::generate()],
    );
    let r1 = resolve(
        &[g0.clone(), a.clone(), b.clone()],
        &w.roster,
        &BTreeMap::new(),
    );
    let r2 = resolve(
        &[b.clone(), g0.clone(), a.clone()],
        &w.roster,
        &BTreeMap::new(),
    );
    let lowest = if a.hash < b.hash { &a.hash } else { &b.hash };
    assert_eq!(r1[BATCH].newest().map(|n| &n.hash), Some(lowest));
    assert_eq!(r2[BATCH].newest().map(|n| &n.hash), Some(lowest));
    assert_eq!(r1[BATCH].generations[1].len(), 2, "both kept for reading");
}

#[test]
fn a_removed_members_later_grant_is_refused() {
    let w = world();
    let g0 = grant(
        &w.alice,
        &w.roster,
        None,
        &[&w.alice, &w.bob],
        &[BatchKey::generate()],
    );
    let (after, _) = w
        .roster
        .remove_member(&w.root, "bob", Default::default(), 10)
        .unwrap();
    let audience = [w.bob.public()];
    let keys = [BatchKey::generate(), BatchKey::generate()];
    // Bob signs under the new epoch (where he is no member) or the old one.
    for epoch_roster in [&w.roster, &after] {
        let Ok((sealed, _)) = seal_grant(
            &w.bob,
            epoch_roster,
            &NewGrant {
                batch: BATCH,
                prev: Some(&g0),
                audience: &audience,
                keys: &keys,
                tasks: 1,
                documents: 1,
                now: 11,
            },
        ) else {
            continue;
        };
        assert!(
            open_grant(
                &after.data_identities(),
                &after,
                &sealed,
                "chunks/audiences/late"
            )
            .is_err()
        );
    }
}
