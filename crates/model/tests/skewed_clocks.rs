//! Issue 12, item 12: leases bounded on the observer's clock. A claimant
//! whose clock runs a day ahead, killed after claiming, must not hold its
//! task for a day; a claimant whose clock runs an hour behind must not be
//! robbed by a device that watched its claim appear. Claims are built as
//! facts (the claimant's clock) and observed with `View::observe_claims`
//! at times on the observer's clock.

use bridge_model::doc::{BatchHeader, TaskRecord};
use bridge_model::facts::{Facts, fact_key};
use bridge_model::{
    BatchId, Claim, Command, DocId, Millis, Policy, Sightings, Status, TaskId, TaskSpec, View,
    WriterId,
};
use proptest::prelude::*;

/// The observer's "now" at the start of each case.
const T0: Millis = 1_763_000_000_000;
const LEASE: Millis = 60_000;
const SKEW: Millis = 30_000;
const DAY: Millis = 86_400_000;
const HOUR: Millis = 3_600_000;

fn policy() -> Policy {
    Policy {
        clock_skew_ms: SKEW,
        lease_ms: LEASE,
    }
}

fn spec() -> TaskSpec {
    TaskSpec {
        name: "t".to_owned(),
        command: Command::Shell {
            shell: "sh".into(),
            script: "true".into(),
        },
        env: Default::default(),
        inputs: vec![],
        outputs: vec![],
        timeout_s: 60,
        retries: 0,
        runs_on: vec![],
        priority: 0,
        needs: vec![],
        nonce: None,
        network: true,
        allow_read: vec![],
    }
}

/// A view holding one task with `claims` (written on the claimant's clock).
fn view_with(claims: &[Claim]) -> (View, TaskId) {
    let s = spec();
    let id = s.id();
    let batch = BatchId::new(T0, [1; 10]);
    let doc = DocId::new(batch.clone(), 0);
    let header = BatchHeader {
        batch,
        part: 0,
        parts: 1,
        created_at: T0,
        submitted_by: "m".into(),
        device: "d".into(),
        grant: None,
    };
    let mut facts = Facts::default();
    for c in claims {
        facts.claims.insert(c.key.clone(), c.clone());
    }
    let record = TaskRecord {
        id: id.clone(),
        spec: s,
        facts,
        trusted: true,
        creator: None,
    };
    let mut v = View::new();
    v.add_records(&doc, &header, vec![record]);
    (v, id)
}

/// Sightings of a device that has read the task's document before (and
/// so watches its claims appear), or not.
fn sightings(v: &View, id: &TaskId, watching: bool, last_look: Millis) -> Sightings {
    let mut seen = Sightings::default();
    if watching {
        seen.watching = true;
        seen.observed_at = Some(last_look);
        seen.docs.extend(
            v.get(id)
                .expect("the task")
                .docs
                .iter()
                .map(|d| d.to_string()),
        );
    }
    seen
}

fn claim(n: u64, at: Millis, lease_until: Millis) -> Claim {
    Claim {
        key: fact_key(&WriterId::new(T0, [2; 8], [2; 8]), n),
        at,
        lease_until,
        released_at: None,
    }
}

fn status(v: &View, id: &TaskId, now: Millis) -> Status {
    v.derive(now, policy())[id].status
}

#[test]
fn a_claim_from_a_clock_a_day_ahead_expires_a_lease_after_it_was_first_seen() {
    // The claimant's clock runs a day ahead; it claimed and was killed.
    let c = claim(1, T0 + DAY, T0 + DAY + LEASE);
    for watching in [false, true] {
        let (mut v, id) = view_with(std::slice::from_ref(&c));
        let seen = sightings(&v, &id, watching, T0 - 1_000);
        v.set_sightings(seen);
        // Without a sighting the claimant's clock is believed: a day.
        assert_eq!(status(&v, &id, T0 + HOUR), Status::Running);
        v.observe_claims(T0, policy());
        assert_eq!(status(&v, &id, T0 + LEASE + SKEW), Status::Running);
        assert_eq!(
            status(&v, &id, T0 + LEASE + SKEW + 1),
            Status::Pending,
            "watching: {watching}"
        );
    }
}

#[test]
fn a_watched_claim_from_a_clock_an_hour_behind_is_not_stolen() {
    // The claimant's clock runs an hour behind the observer's.
    let first = claim(1, T0 - HOUR, T0 - HOUR + LEASE);
    let (mut v, id) = view_with(std::slice::from_ref(&first));
    let seen = sightings(&v, &id, true, T0 - 1_000);
    v.set_sightings(seen);
    v.observe_claims(T0, policy());
    assert_eq!(status(&v, &id, T0 + 1), Status::Running);
    assert_eq!(status(&v, &id, T0 + LEASE + SKEW), Status::Running);
    // A renewal a third of a lease later, seen then: live a lease further.
    let renewed = claim(1, T0 - HOUR, T0 - HOUR + LEASE / 3 + LEASE);
    let (mut v2, _) = view_with(std::slice::from_ref(&renewed));
    v2.set_sightings(v.take_sightings());
    v2.observe_claims(T0 + LEASE / 3, policy());
    assert_eq!(
        status(&v2, &id, T0 + LEASE / 3 + LEASE + SKEW),
        Status::Running
    );
    assert_eq!(
        status(&v2, &id, T0 + LEASE / 3 + LEASE + SKEW + 1),
        Status::Pending
    );
}

#[test]
fn at_a_fresh_start_an_old_claim_of_a_dead_claimant_is_free_at_once() {
    // Claimed and abandoned two hours ago on a correct clock: a fresh
    // device (a new CI runner) must not wait another lease for it.
    let c = claim(1, T0 - 2 * HOUR, T0 - 2 * HOUR + LEASE);
    let (mut v, id) = view_with(std::slice::from_ref(&c));
    v.observe_claims(T0, policy());
    assert!(!v.sightings().claims[&c.key].watched);
    assert_eq!(status(&v, &id, T0), Status::Pending);
}

#[test]
fn a_renewal_seen_first_does_not_stretch_the_lease_past_three_leases() {
    // Seen first at a renewal of a task that has run for five hours, on a
    // clock a day ahead: held at most three leases.
    let c = claim(1, T0 + DAY - 5 * HOUR, T0 + DAY + LEASE);
    let (mut v, id) = view_with(std::slice::from_ref(&c));
    v.observe_claims(T0, policy());
    assert_eq!(status(&v, &id, T0 + 3 * LEASE + SKEW), Status::Running);
    assert_eq!(status(&v, &id, T0 + 3 * LEASE + SKEW + 1), Status::Pending);
}

#[test]
fn a_claim_in_a_document_read_for_the_first_time_is_not_watched() {
    // The device watched the pool, but not this document (a runner's
    // deferred load): an old claim of a dead claimant is free at once.
    let c = claim(1, T0 - 2 * HOUR, T0 - 2 * HOUR + LEASE);
    let (mut v, id) = view_with(std::slice::from_ref(&c));
    v.set_sightings(Sightings {
        watching: true,
        ..Sightings::default()
    });
    v.observe_claims(T0, policy());
    assert!(!v.sightings().claims[&c.key].watched);
    assert_eq!(status(&v, &id, T0), Status::Pending);
    // The document is known now: a claim that appears in it later is.
    assert!(
        v.sightings()
            .docs
            .contains(&v.get(&id).expect("task").docs[0].to_string())
    );
}

#[test]
fn a_device_that_did_not_look_for_long_was_not_watching() {
    // The device knew the document, but last looked an hour ago: an old
    // claim of a dead claimant it finds now is free at once.
    let c = claim(1, T0 - 2 * HOUR, T0 - 2 * HOUR + LEASE);
    let (mut v, id) = view_with(std::slice::from_ref(&c));
    let seen = sightings(&v, &id, true, T0 - HOUR);
    v.set_sightings(seen);
    v.observe_claims(T0, policy());
    assert!(!v.sightings().claims[&c.key].watched);
    assert_eq!(status(&v, &id, T0), Status::Pending);
    assert_eq!(v.sightings().observed_at, Some(T0));
}

#[test]
fn released_claims_are_forgotten() {
    let c = claim(1, T0, T0 + LEASE);
    let (mut v, _) = view_with(std::slice::from_ref(&c));
    v.observe_claims(T0, policy());
    assert_eq!(v.sightings().claims.len(), 1);
    let mut released = c.clone();
    released.released_at = Some(T0 + 5);
    let (mut v2, _) = view_with(&[released]);
    v2.set_sightings(v.take_sightings());
    assert!(v2.observe_claims(T0 + 10, policy()));
    assert!(v2.sightings().claims.is_empty());
}

proptest! {
    /// Whatever the claimant's clock offset (up to ±2 days) and however
    /// late the observer first sees the claim: once observed, a claim of a
    /// claimant that stopped renewing is never live longer than three
    /// leases plus the skew after it was first seen; and a watched claim
    /// is live for its whole lease after it was first seen, whatever the
    /// offset (a live claimant is not robbed).
    #[test]
    fn leases_are_bounded_on_the_observers_clock(
        offset in -2 * DAY..2 * DAY,
        // 0 often: the claimant's own live claim must not be robbed.
        ran_for in prop_oneof![Just(0), 0..6 * HOUR],
        seen_late in 0..HOUR,
        watching in any::<bool>(),
        after in 0..4 * LEASE,
    ) {
        // The claim was made `ran_for` ago (observer clock) and last renewed
        // just now, on a clock `offset` off; the observer sees it
        // `seen_late` after that renewal.
        let made = T0 - ran_for;
        let c = claim(1, made + offset, T0 + offset + LEASE);
        let seen = T0 + seen_late;
        let (mut v, id) = view_with(std::slice::from_ref(&c));
        let watch = sightings(&v, &id, watching, seen - 1_000);
        v.set_sightings(watch);
        v.observe_claims(seen, policy());
        let now = seen + after;
        let st = status(&v, &id, now);
        if after > 3 * LEASE + SKEW {
            prop_assert_eq!(st, Status::Pending);
        }
        if watching && ran_for == 0 && after <= LEASE + SKEW {
            prop_assert_eq!(st, Status::Running);
        }
    }
}
