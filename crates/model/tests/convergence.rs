//! Convergence: replicas that submit, claim, finish, cancel and retry tasks
//! concurrently, and sync with each other in any order (whole-document merges,
//! saved documents, incremental saves, single changes out of order and twice),
//! end up with the same documents and derive the same status for every task.
//! No fact any replica wrote is ever lost, and a long-lived view that re-reads
//! documents as they change agrees with one built afresh, also when it
//! re-reads only the tasks that the changes touched.
//!
//! `PROPTEST_CASES=1000 cargo test -p bridge-model --test convergence` runs
//! more cases than the default 64.

use std::collections::{BTreeMap, BTreeSet};

use automerge::AutoCommit;
use bridge_model::doc::{self, BatchHeader};
use bridge_model::facts::fact_key;
use bridge_model::view::canonical_result;
use bridge_model::{
    Attempt, BatchId, Claim, Command, DocId, Millis, Outcome, Policy, Status, TaskId, TaskSpec,
    View, WriterId,
};
use proptest::prelude::*;

/// A plausible epoch time; the logical clock starts here.
const T0: Millis = 1_763_000_000_000;

/// Lease lengths a claimant may pick (the default clock skew is 30 s).
const LEASES: [Millis; 3] = [5_000, 20_000, 90_000];

/// How many specs the submitters draw from.
const POOL: usize = 6;

/// The most replicas a case uses.
const MAX_REPLICAS: usize = 5;

/// A small pool of specs, so that replicas submit the same task in different
/// batches. Later tasks need earlier ones; one needs a `gpu` label.
fn pool() -> Vec<TaskSpec> {
    let mut out: Vec<TaskSpec> = Vec::with_capacity(POOL);
    for i in 0..POOL {
        let mut s = TaskSpec {
            name: format!("step {i}"),
            command: Command::Shell {
                shell: "sh".into(),
                script: format!("./step {i}"),
            },
            env: Default::default(),
            inputs: vec![],
            outputs: vec![],
            timeout_s: 60,
            retries: u32::try_from(i % 3).expect("small"),
            runs_on: vec![],
            priority: i64::try_from(i % 2).expect("small"),
            needs: vec![],
            nonce: None,
            network: true,
            allow_read: vec![],
        };
        s.needs = match i {
            2 => vec![out[0].id()],
            3 => vec![out[1].id(), out[0].id()],
            5 => vec![out[2].id()],
            _ => vec![],
        };
        if i == 4 {
            s.runs_on = vec!["gpu".into()];
        }
        out.push(s);
    }
    out
}

/// SplitMix64: the shuffles and coin flips of a case, seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).expect("fits")).expect("fits")
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// One device: its documents, its writer id and the claims it holds.
struct Replica {
    writer: WriterId,
    labels: Vec<String>,
    docs: BTreeMap<DocId, AutoCommit>,
    /// The `n` of the last fact key this replica used.
    next: u64,
    /// Claims this replica made and has not finished or released.
    open: Vec<(TaskId, Claim)>,
    /// A long-lived view, as a worker process keeps one: every document is
    /// re-read into it after each change instead of building a new one.
    live: View,
    /// Another, into which only the tasks that changes touched are re-read
    /// (as a worker does after a sync).
    partial: View,
}

impl Replica {
    fn new(i: usize, random: [u8; 8]) -> Replica {
        // Time-ordered and distinct: started one millisecond apart.
        let started = T0 + i64::try_from(i).expect("small");
        Replica {
            writer: WriterId::new(started, [7; 8], random),
            labels: if i.is_multiple_of(2) {
                vec!["gpu".into(), "linux".into()]
            } else {
                vec!["linux".into()]
            },
            docs: BTreeMap::new(),
            next: 0,
            open: Vec::new(),
            live: View::new(),
            partial: View::new(),
        }
    }

    /// Re-reads every document into the long-lived view.
    fn refresh(&mut self) {
        for (id, am) in &self.docs {
            let header = doc::read_header(am).expect("a complete document");
            let (records, _) = doc::read_tasks(am, &doc::TrustAll);
            self.live.add_records(id, &header, records);
        }
    }

    /// Re-reads into the partial view the tasks touched since the last
    /// call (every task of a document loaded anew, or changed elsewhere).
    fn refresh_partial(&mut self) {
        for (id, am) in &mut self.docs {
            let header = doc::read_header(am).expect("a complete document");
            let (records, _) = match doc::touched_tasks(&am.diff_incremental()) {
                Some(keys) => doc::read_named_tasks(am, &doc::TrustAll, &keys),
                None => doc::read_tasks(am, &doc::TrustAll),
            };
            self.partial.add_records(id, &header, records);
        }
    }

    fn fresh_key(&mut self) -> String {
        self.next += 1;
        fact_key(&self.writer, self.next)
    }

    /// This replica's view, its documents added in sorted order or, given a
    /// random source, in a random one, one by one or all at once (as a
    /// fresh load does: `View::add_documents`). Every document must read
    /// cleanly.
    fn view(&self, rng: Option<&mut Rng>) -> View {
        let mut ids: Vec<&DocId> = self.docs.keys().collect();
        let mut at_once = false;
        if let Some(rng) = rng {
            rng.shuffle(&mut ids);
            at_once = rng.below(2) == 0;
        }
        let mut docs = Vec::new();
        for id in ids {
            let am = &self.docs[id];
            let header = doc::read_header(am)
                .unwrap_or_else(|e| panic!("{} cannot read {id}: {e}", self.writer));
            assert_eq!(&header.batch, id.batch());
            assert_eq!(header.part, id.part());
            let (records, problems) = doc::read_tasks(am, &doc::TrustAll);
            assert!(problems.is_empty(), "problems in {id}: {problems:?}");
            docs.push((id.clone(), header, records));
        }
        let mut v = View::new();
        if at_once {
            v.add_documents(docs);
        } else {
            for (id, header, records) in docs {
                v.add_records(&id, &header, records);
            }
        }
        v
    }

    /// The home document of `task` in `view`, with this replica's actor.
    fn home(&mut self, view: &View, task: &TaskId) -> &mut AutoCommit {
        let home = view.get(task).expect("a known task").home().clone();
        let am = self
            .docs
            .get_mut(&home)
            .expect("the replica holds the documents of its view");
        am.set_actor(self.writer.actor());
        am
    }

    fn write_claim(&mut self, view: &View, task: &TaskId, claim: &Claim, now: Millis) {
        let am = self.home(view, task);
        doc::put_claim(am, task, claim).expect("put the claim");
        doc::commit(am, now, "claim");
    }
}

/// Every fact any replica wrote, to check that none is lost.
#[derive(Default)]
struct Ledger {
    docs: BTreeSet<DocId>,
    /// The last value written under each claim key.
    claims: BTreeMap<(TaskId, String), Claim>,
    attempts: BTreeMap<(TaskId, String), Attempt>,
    cancels: BTreeSet<(TaskId, String)>,
    retries: BTreeSet<(TaskId, String)>,
    /// How many claims were given up because they lost.
    lost: usize,
}

#[derive(Debug, Clone)]
enum Op {
    /// Submit a new batch of pool tasks.
    Submit {
        r: usize,
        tasks: Vec<usize>,
        random: [u8; 8],
    },
    /// Claim a task this replica sees as runnable.
    Claim { r: usize, pick: usize, lease: usize },
    /// End a claim this replica holds, as `FINISHES[how]` says.
    Finish { r: usize, pick: usize, how: usize },
    /// Cancel a task this replica knows, in one of its documents.
    Cancel { r: usize, pick: usize },
    /// Grant a retry of a task this replica sees as failed.
    Retry { r: usize, pick: usize },
    /// Replica `to` takes every change of replica `from`.
    Sync {
        to: usize,
        from: usize,
        how: usize,
        seed: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0..MAX_REPLICAS;
    prop_oneof![
        3 => (r.clone(), prop::collection::vec(0..POOL, 1..=3), any::<[u8; 8]>())
            .prop_map(|(r, tasks, random)| Op::Submit { r, tasks, random }),
        6 => (r.clone(), any::<usize>(), 0..LEASES.len())
            .prop_map(|(r, pick, lease)| Op::Claim { r, pick, lease }),
        6 => (r.clone(), any::<usize>(), 0..FINISHES.len())
            .prop_map(|(r, pick, how)| Op::Finish { r, pick, how }),
        1 => (r.clone(), any::<usize>()).prop_map(|(r, pick)| Op::Cancel { r, pick }),
        2 => (r.clone(), any::<usize>()).prop_map(|(r, pick)| Op::Retry { r, pick }),
        5 => (r.clone(), r, 0..4usize, any::<u64>())
            .prop_map(|(to, from, how, seed)| Op::Sync { to, from, how, seed }),
    ]
}

/// How a replica ends one of its claims.
#[derive(Debug, Clone, Copy)]
enum Finish {
    /// Records an attempt with this outcome.
    Attempt(Outcome),
    /// Gives the claim up without an attempt.
    Release,
    /// Renews the lease.
    Heartbeat,
}

/// The ways to end a claim, successes weighted up so that tasks get done.
const FINISHES: [Finish; 9] = [
    Finish::Attempt(Outcome::Success),
    Finish::Attempt(Outcome::Success),
    Finish::Attempt(Outcome::Failed),
    Finish::Attempt(Outcome::TimedOut),
    Finish::Attempt(Outcome::Interrupted),
    Finish::Attempt(Outcome::Error),
    Finish::Release,
    Finish::Heartbeat,
    Finish::Heartbeat,
];

fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

/// Replica `to` takes every change of replica `from`, document by document
/// in a random order, by one of four means; some bytes are applied twice.
fn sync(replicas: &mut [Replica], to: usize, from: usize, how: usize, rng: &mut Rng) {
    if to == from {
        return;
    }
    let (dst, src) = pair_mut(replicas, to, from);
    let actor = dst.writer.actor();
    let mut ids: Vec<DocId> = src.docs.keys().cloned().collect();
    rng.shuffle(&mut ids);
    for id in ids {
        let s = src.docs.get_mut(&id).expect("listed");
        let times = if rng.below(4) == 0 { 2 } else { 1 };
        if how == 1 && !dst.docs.contains_key(&id) {
            // A document seen for the first time: load it whole.
            let bytes = s.save();
            let mut d = AutoCommit::load(&bytes)
                .expect("load a saved document")
                .with_actor(actor.clone());
            if times == 2 {
                d.load_incremental(&bytes).expect("load it again");
            }
            dst.docs.insert(id, d);
            continue;
        }
        let d = dst
            .docs
            .entry(id)
            .or_insert_with(|| AutoCommit::new().with_actor(actor.clone()));
        match how {
            0 => {
                for _ in 0..times {
                    d.merge(s).expect("merge");
                }
            }
            1 => {
                let bytes = s.save();
                for _ in 0..times {
                    d.load_incremental(&bytes).expect("load a saved document");
                }
            }
            2 => {
                // Only what `dst` lacks (its heads may be unknown to `src`).
                let bytes = s.save_after(&d.get_heads());
                for _ in 0..times {
                    d.load_incremental(&bytes)
                        .expect("load an incremental save");
                }
            }
            _ => {
                // Every change as its own chunk, in a random order, some twice:
                // changes whose dependencies have not arrived wait in the queue.
                let mut chunks: Vec<Vec<u8>> = s
                    .get_changes(&[])
                    .into_iter()
                    .map(|mut c| c.bytes().into_owned())
                    .collect();
                let again: Vec<Vec<u8>> = chunks
                    .iter()
                    .filter(|_| rng.below(4) == 0)
                    .cloned()
                    .collect();
                chunks.extend(again);
                rng.shuffle(&mut chunks);
                for c in &chunks {
                    d.load_incremental(c).expect("load a change");
                }
            }
        }
        // Loading into an empty document replaces it; the actor must stay ours.
        assert_eq!(d.get_actor(), &actor);
    }
}

fn apply(op: &Op, replicas: &mut [Replica], ledger: &mut Ledger, pool: &[TaskSpec], now: Millis) {
    let n = replicas.len();
    let policy = Policy::default();
    match op {
        Op::Submit { r, tasks, random } => {
            let rep = &mut replicas[r % n];
            let mut picked: Vec<usize> = tasks.clone();
            picked.sort_unstable();
            picked.dedup();
            let specs: Vec<TaskSpec> = picked.iter().map(|&i| pool[i].clone()).collect();
            let mut ten = [0u8; 10];
            ten[..8].copy_from_slice(random);
            let batch = BatchId::new(now, ten);
            let header = BatchHeader {
                batch: batch.clone(),
                part: 0,
                parts: 1,
                created_at: now,
                submitted_by: rep.writer.short().to_owned(),
                device: format!("replica {}", r % n),
                grant: None,
            };
            let am = doc::create(&rep.writer, &header, &specs).expect("create a batch");
            let id = DocId::new(batch, 0);
            assert!(ledger.docs.insert(id.clone()), "batch ids are unique");
            rep.docs.insert(id, am);
        }
        Op::Claim { r, pick, lease } => {
            let rep = &mut replicas[r % n];
            let view = rep.view(None);
            let derived = view.derive(now, policy);
            let runnable = view.runnable(&derived, &rep.labels);
            if runnable.is_empty() {
                return;
            }
            let task = runnable[pick % runnable.len()].clone();
            let claim = Claim {
                key: rep.fresh_key(),
                at: now,
                lease_until: now + LEASES[*lease],
                released_at: None,
            };
            rep.write_claim(&view, &task, &claim, now);
            ledger
                .claims
                .insert((task.clone(), claim.key.clone()), claim.clone());
            // The task was pending here, so this claim wins here.
            let view = rep.view(None);
            assert!(!view.claim_lost(&task, &claim.key, now, policy));
            assert_eq!(
                view.derive(now, policy)[&task].claim.as_deref(),
                Some(claim.key.as_str())
            );
            rep.open.push((task, claim));
        }
        Op::Finish { r, pick, how } => {
            let rep = &mut replicas[r % n];
            if rep.open.is_empty() {
                return;
            }
            let i = pick % rep.open.len();
            let view = rep.view(None);
            match FINISHES[*how] {
                Finish::Attempt(outcome) => {
                    let (task, claim) = rep.open.swap_remove(i);
                    let attempt = Attempt {
                        key: claim.key.clone(),
                        device: format!("replica {}", r % n),
                        started_at: claim.at,
                        ended_at: now,
                        outcome,
                        exit_code: Some(i64::try_from(*how).expect("small")),
                        signal: None,
                        message: None,
                        stdout_tail: format!("out of {}", claim.key),
                        stderr_tail: String::new(),
                        stdout_blob: None,
                        stderr_blob: None,
                        outputs: Default::default(),
                        provenance: Default::default(),
                    };
                    let am = rep.home(&view, &task);
                    doc::put_attempt(am, &task, &attempt).expect("put the attempt");
                    doc::commit(am, now, "attempt");
                    ledger.attempts.insert((task, claim.key), attempt);
                }
                Finish::Release => {
                    // As `bridge work` does: the lease ends now.
                    let (task, claim) = rep.open.swap_remove(i);
                    let released = Claim {
                        lease_until: now,
                        released_at: Some(now),
                        ..claim
                    };
                    rep.write_claim(&view, &task, &released, now);
                    ledger.claims.insert((task, released.key.clone()), released);
                }
                Finish::Heartbeat => {
                    let (task, mut claim) = rep.open[i].clone();
                    claim.lease_until = claim.lease_until.max(now + LEASES[1]);
                    rep.write_claim(&view, &task, &claim, now);
                    ledger
                        .claims
                        .insert((task.clone(), claim.key.clone()), claim.clone());
                    rep.open[i] = (task, claim);
                }
            }
        }
        Op::Cancel { r, pick } => {
            let rep = &mut replicas[r % n];
            let view = rep.view(None);
            let ids: Vec<TaskId> = view.tasks().map(|t| t.id.clone()).collect();
            if ids.is_empty() {
                return;
            }
            let task = &ids[pick % ids.len()];
            // Any document holding the task will do (a replica that knew only
            // one of them would write there), so one writer's cancels of one
            // task may sit in several documents.
            let docs = &view.get(task).expect("listed").docs;
            let id = &docs[(pick / ids.len()) % docs.len()];
            let writer = rep.writer.clone();
            let am = rep.docs.get_mut(id).expect("a document of the view");
            am.set_actor(writer.actor());
            doc::put_cancel(am, task, &writer, now).expect("put the cancel");
            doc::commit(am, now, "cancel");
            ledger
                .cancels
                .insert((task.clone(), writer.as_str().to_owned()));
        }
        Op::Retry { r, pick } => {
            let rep = &mut replicas[r % n];
            let view = rep.view(None);
            let failed: Vec<TaskId> = view
                .derive(now, policy)
                .into_iter()
                .filter(|(_, d)| d.status == Status::Failed)
                .map(|(id, _)| id)
                .collect();
            if failed.is_empty() {
                return;
            }
            let task = &failed[pick % failed.len()];
            let key = rep.fresh_key();
            let am = rep.home(&view, task);
            doc::put_retry(am, task, &key, now).expect("put the retry grant");
            doc::commit(am, now, "retry");
            ledger.retries.insert((task.clone(), key));
        }
        Op::Sync {
            to,
            from,
            how,
            seed,
        } => {
            let (to, from) = (to % n, from % n);
            if to == from {
                return;
            }
            let before: Vec<(TaskId, String)> = attempt_keys(&replicas[from].view(None));
            sync(replicas, to, from, *how, &mut Rng(*seed));
            // Set union: `to` now has at least every attempt `from` had.
            let after: BTreeSet<(TaskId, String)> =
                attempt_keys(&replicas[to].view(None)).into_iter().collect();
            for k in before {
                assert!(after.contains(&k), "sync lost attempt {k:?}");
            }
            // The protocol: after a pull, a claimant gives up the claims that
            // lost to an earlier live claim (or to a success).
            let rep = &mut replicas[to];
            let view = rep.view(None);
            let open = std::mem::take(&mut rep.open);
            for (task, claim) in open {
                if view.claim_lost(&task, &claim.key, now, policy) {
                    let released = Claim {
                        lease_until: now,
                        released_at: Some(now),
                        ..claim
                    };
                    rep.write_claim(&view, &task, &released, now);
                    ledger.lost += 1;
                    ledger.claims.insert((task, released.key.clone()), released);
                } else {
                    rep.open.push((task, claim));
                }
            }
        }
    }
}

fn attempt_keys(v: &View) -> Vec<(TaskId, String)> {
    v.tasks()
        .flat_map(|t| t.facts.attempts.keys().map(|k| (t.id.clone(), k.clone())))
        .collect()
}

/// The state a history ended in.
struct End {
    /// The merged view (every replica's is the same).
    view: View,
    ledger: Ledger,
    now: Millis,
}

fn run(randoms: &[[u8; 8]], steps: &[(Millis, Op)], seed: u64) -> End {
    let pool = pool();
    let policy = Policy::default();
    let mut replicas: Vec<Replica> = randoms
        .iter()
        .enumerate()
        .map(|(i, r)| Replica::new(i, *r))
        .collect();
    let mut ledger = Ledger::default();
    let mut rng = Rng(seed);
    let mut now = T0 + 10_000;
    for (dt, op) in steps {
        now += dt;
        apply(op, &mut replicas, &mut ledger, &pool, now);
        for rep in &mut replicas {
            rep.refresh();
            rep.refresh_partial();
        }
    }

    // Everyone syncs with everyone, in a random order and by random means.
    // Each ordered pair once is enough: nobody writes meanwhile, so the
    // first time `to` takes from `from` it gets all of `from`'s own facts.
    let n = replicas.len();
    let mut pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|to| (0..n).map(move |from| (to, from)))
        .filter(|(to, from)| to != from)
        .collect();
    rng.shuffle(&mut pairs);
    for (to, from) in pairs {
        let how = rng.below(4);
        sync(&mut replicas, to, from, how, &mut rng);
    }

    // The same documents, change for change, with nothing waiting.
    for rep in &mut replicas {
        let ids: BTreeSet<DocId> = rep.docs.keys().cloned().collect();
        assert_eq!(ids, ledger.docs, "{} lacks documents", rep.writer);
    }
    for id in &ledger.docs {
        let mut all_heads = replicas.iter_mut().map(|rep| {
            let am = rep.docs.get_mut(id).expect("every replica has every doc");
            assert!(am.get_missing_deps(&[]).is_empty(), "{id}: changes wait");
            let mut heads = am.get_heads();
            heads.sort();
            heads
        });
        let first = all_heads.next().expect("at least one replica");
        for heads in all_heads {
            assert_eq!(heads, first, "{id}: heads differ");
        }
    }

    // The same view and the same derivation, each replica's documents added
    // in its own random order; at `now` (some leases live) and far later.
    let views: Vec<View> = replicas.iter().map(|r| r.view(Some(&mut rng))).collect();
    let reference = &views[0];
    // A long-lived view that re-read documents as they changed agrees with a
    // fresh one.
    for (i, rep) in replicas.iter_mut().enumerate() {
        rep.refresh();
        rep.refresh_partial();
        for (name, view) in [("long-lived", &rep.live), ("partial", &rep.partial)] {
            assert_eq!(view.len(), reference.len());
            for (a, b) in view.tasks().zip(reference.tasks()) {
                assert_eq!(a, b, "replica {i}'s {name} view of {}", b.id);
            }
            assert_eq!(view.derive(now, policy), reference.derive(now, policy));
        }
    }
    for later in [now, now + 1_000_000_000] {
        let expected = reference.derive(later, policy);
        assert_eq!(expected.len(), reference.len());
        for (i, v) in views.iter().enumerate().skip(1) {
            assert_eq!(v.len(), reference.len());
            for (a, b) in v.tasks().zip(reference.tasks()) {
                assert_eq!(a, b, "replica {i} sees task {} differently", b.id);
            }
            let got = v.derive(later, policy);
            for (id, d) in &expected {
                assert_eq!(
                    got.get(id),
                    Some(d),
                    "replica {i} derives {id} differently at {later}"
                );
            }
        }
    }

    // No lost fact: everything any replica ever wrote is in the merged view.
    let mut attempts = 0;
    for t in reference.tasks() {
        attempts += t.facts.attempts.len();
    }
    assert_eq!(attempts, ledger.attempts.len(), "attempts nobody wrote");
    for ((task, key), a) in &ledger.attempts {
        let t = reference.get(task).expect("the task of an attempt");
        assert_eq!(t.facts.attempts.get(key), Some(a), "lost attempt {key}");
    }
    for ((task, key), c) in &ledger.claims {
        let t = reference.get(task).expect("the task of a claim");
        assert_eq!(t.facts.claims.get(key), Some(c), "lost claim {key}");
    }
    for (task, writer) in &ledger.cancels {
        let t = reference.get(task).expect("the task of a cancel");
        assert!(t.facts.cancels.contains_key(writer), "lost cancel");
    }
    for (task, key) in &ledger.retries {
        let t = reference.get(task).expect("the task of a retry");
        assert!(t.facts.retries.contains_key(key), "lost retry grant {key}");
    }

    // The canonical result is the first success anybody recorded.
    let derived = reference.derive(now, policy);
    for t in reference.tasks() {
        let first = ledger
            .attempts
            .iter()
            .filter(|((task, _), a)| *task == t.id && a.outcome == Outcome::Success)
            .map(|(_, a)| a)
            .min_by(|a, b| (a.ended_at, &a.key).cmp(&(b.ended_at, &b.key)));
        assert_eq!(canonical_result(&t.facts), first);
        let d = &derived[&t.id];
        match first {
            Some(ok) => {
                assert!(matches!(d.status, Status::Done | Status::Cancelled));
                if d.status == Status::Done {
                    assert_eq!(d.result.as_deref(), Some(ok.key.as_str()));
                }
            }
            None => assert_eq!(d.result, None),
        }
    }
    End {
        view: views.into_iter().next().expect("at least one replica"),
        ledger,
        now,
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn replicas_converge_whatever_the_interleaving(
        randoms in prop::collection::vec(any::<[u8; 8]>(), 3..=MAX_REPLICAS),
        steps in prop::collection::vec((1..=20_000i64, op()), 1..100),
        seed in any::<u64>(),
    ) {
        run(&randoms, &steps, seed);
    }
}

#[test]
fn a_fixed_busy_history_converges() {
    // A deterministic history that surely exercises every op and every way to
    // sync, whatever proptest draws, with its expected outcome.
    let pool = pool();
    let t: Vec<TaskId> = pool.iter().map(TaskSpec::id).collect();
    let submit = |r, tasks: &[usize], b| Op::Submit {
        r,
        tasks: tasks.to_vec(),
        random: [b; 8],
    };
    let claim = |r, pick, lease| Op::Claim { r, pick, lease };
    let finish = |r, how| Op::Finish { r, pick: 0, how };
    let sync = |to, from, how| Op::Sync {
        to,
        from,
        how,
        seed: 7,
    };
    let (success, failed, release, heartbeat) = (0, 2, 6, 7);
    // Replica 1 cancels task 1 (already done by then) by its index in the
    // sorted ids of what it knows: tasks 0 to 3.
    let mut known = t[..4].to_vec();
    known.sort();
    let cancel_t1 = known.iter().position(|id| *id == t[1]).expect("known");
    let steps = vec![
        submit(0, &[0, 1, 2], 1),
        submit(1, &[0, 3], 2),
        submit(2, &[1, 4, 5], 3),
        // Offline: replicas 0 and 1 both claim task 0, replica 2 task 1.
        claim(0, 1, 2),
        claim(1, 0, 2),
        claim(2, 0, 2),
        finish(0, failed),
        Op::Retry { r: 0, pick: 0 },
        finish(1, success),
        finish(2, success),
        // Replica 0 runs task 1 again, not knowing it is done.
        claim(0, 0, 2),
        sync(1, 0, 0),
        // Replica 0 learns that task 1 is done: its claim lost, it releases.
        sync(0, 2, 3),
        sync(2, 1, 1),
        sync(0, 1, 2),
        // Replica 2 now sees tasks 0 and 1 done: task 3 first (priority 1).
        claim(2, 0, 0),
        finish(2, heartbeat),
        finish(2, success),
        // Replica 1 still sees task 1 running, so only task 2 is runnable.
        claim(1, 0, 1),
        Op::Cancel {
            r: 1,
            pick: cancel_t1,
        },
        finish(1, release),
    ];
    let steps: Vec<(Millis, Op)> = steps.into_iter().map(|op| (1_000, op)).collect();
    let end = run(&[[7; 8], [8; 8], [9; 8]], &steps, 42);

    let w: Vec<WriterId> = (0..3)
        .map(|i| Replica::new(i, [7 + i as u8; 8]).writer)
        .collect();
    assert_eq!(end.ledger.docs.len(), 3);
    assert_eq!(end.ledger.attempts.len(), 4);
    assert_eq!(end.ledger.retries.len(), 1);
    assert_eq!(end.ledger.cancels.len(), 1);
    assert_eq!(end.ledger.lost, 1);
    let v = &end.view;
    assert_eq!(v.len(), POOL);
    let derived = v.derive(end.now, Policy::default());
    let status = |i: usize| derived[&t[i]].status;
    // Task 0: a failure, a retry grant, a success.
    assert_eq!(status(0), Status::Done);
    assert_eq!(derived[&t[0]].result, Some(fact_key(&w[1], 1)));
    assert_eq!(derived[&t[0]].failures, (1, 2));
    // Task 1: done by replica 2; replica 0's duplicate claim released; the
    // later cancel does not undo it.
    assert_eq!(status(1), Status::Done);
    assert_eq!(derived[&t[1]].result, Some(fact_key(&w[2], 1)));
    let claims = &v.get(&t[1]).expect("task 1").facts.claims;
    assert!(claims[&fact_key(&w[0], 3)].released_at.is_some());
    // Task 2: claimed and released by replica 1.
    assert_eq!(status(2), Status::Pending);
    assert_eq!(status(3), Status::Done);
    assert_eq!(status(4), Status::Pending);
    assert_eq!(status(5), Status::Blocked);
}
