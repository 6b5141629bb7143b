//! The workspace view and the status derivation.
//!
//! A [`View`] is the union of the tasks of every document a replica holds,
//! keyed by task id: the same task submitted in two batches (from two offline
//! devices) is one task whose facts are the union of both documents' facts.
//! [`View::derive`] is a pure function of the view, `now` and a [`Policy`]:
//! two replicas holding the same facts derive the same status for every task,
//! whatever order they merged in.
//!
//! # Status rules, in order
//!
//! 0. **untrusted**: no writer allowed to submit created it; never run.
//! 1. **cancelled**: a cancel fact precedes the first success (or there is no
//!    success).
//! 2. **done**: an attempt succeeded. The canonical result is the first
//!    success by `(ended_at, key)`, the same on every replica.
//! 3. **failed**: the failed attempts (failed, timed out, could not start;
//!    not interrupted ones) reach `(1 + retries) × (1 + retry grants)`.
//! 4. **running**: a claim is live: not released, not fulfilled by an
//!    attempt, and `now <= lease_until + clock_skew`.
//! 5. **skipped**: a task it `needs` will not run without someone's say:
//!    it failed for good, was cancelled, is untrusted, or is skipped itself
//!    (GitHub's word for a job whose needed job failed). Not work left: no
//!    runner is started for it and a drained pool does not wait for it;
//!    retrying the failed task (or submitting the untrusted one as a
//!    member) revives it, as the status is derived.
//! 6. **blocked**: a task it `needs` is not done yet (or is not known here
//!    yet).
//! 7. **pending**: otherwise; runnable by any worker whose labels match.
//!
//! # Clock skew
//!
//! Leases are written with the claimant's clock and read with others'. A
//! claim stays live for [`Policy::clock_skew_ms`] past its `lease_until`
//! (default 30 s), so a reader whose clock runs up to that much ahead does not
//! steal a task that is still being worked. Claimants renew well before the
//! lease ends (at a third of the lease), so the margin is only for skew.
//!
//! # Leases on the observer's clock (issue 12, item 12)
//!
//! `lease_until` alone trusts the claimant's clock: a device whose clock ran
//! a day ahead, killed after claiming, held its tasks `running` for a day
//! everywhere; a reader whose clock runs an hour ahead of a live claimant
//! saw its leases as long expired and stole its tasks. So each device also
//! records, on its own clock, when it first saw each claim and each renewal
//! ([`Sightings`], kept by the caller and handed to the view as data, so
//! this module stays pure). With a sighting, a claim's lease is measured
//! from that moment:
//!
//! - its length `L` is `lease_until - at` (both on the claimant's clock, so
//!   the offset cancels), the smallest seen for the claim (a renewal seen
//!   first overstates it), and never more than three of this workspace's
//!   leases ([`Policy::lease_ms`]; a claimant renews at a third of its lease,
//!   so one with a lease up to three times ours is never cut short);
//! - a claim this device saw appear while it was watching (it had read
//!   the task's document at an earlier observation, at most three leases
//!   before: a worker or a runner that syncs as it goes) is live until
//!   `seen + L + skew`, whatever either clock
//!   says: a claimant an hour behind is not robbed, one a day ahead holds
//!   its task one lease, not a day;
//! - a claim first seen at a fresh start (a new CI runner, a new clone, a
//!   document read for the first time) may be old, so it is live until `min(lease_until, seen + L) + skew`: a
//!   claim whose claimant died long ago is free at once, and a future clock
//!   still holds it no longer than `L + skew`.
//!
//! What remains: a fresh device whose clock runs ahead of a live claimant
//! by more than the skew margin sees its claims as expired and may run the
//! task too. That is a duplicate run, never a lost result (the first
//! success by `(ended_at, key)` is canonical everywhere). Claims without a
//! sighting (a view that was given none) follow `lease_until + skew` alone.
//! Because sightings are this device's own, two replicas may disagree about
//! whether a claim is still live; everything else in the derivation is the
//! same on every replica.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::doc::{BatchHeader, TaskRecord};
use crate::facts::{Attempt, Claim, Facts};
use crate::ids::{DocId, TaskId};
use crate::spec::TaskSpec;

/// Tunables of the derivation that every replica of a workspace must share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long past its `lease_until` a claim is still honoured.
    pub clock_skew_ms: Millis,
    /// The workspace's lease (`[worker] lease`): a claim is never honoured
    /// longer than three of them after this device first saw its current
    /// lease (see the module docs).
    pub lease_ms: Millis,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            clock_skew_ms: 30_000,
            lease_ms: 60_000,
        }
    }
}

/// What this device saw of one claim, on its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// The claim's `lease_until` when it was last seen to change.
    pub lease_until: Millis,
    /// When this device first saw the claim with that `lease_until`.
    pub seen_at: Millis,
    /// The smallest `lease_until - at` seen: the claim's lease length, or
    /// more when its first sighting was of a renewal.
    pub lease_ms: Millis,
    /// Whether this device was watching when the claim appeared (it had
    /// read the task's document before), so that `seen_at` is close to when
    /// the claim was made.
    pub watched: bool,
}

/// Sightings older than this past their bound are forgotten when their
/// claim is not in the view (it may live in a document not loaded now).
const FORGET_AFTER_MS: Millis = 86_400_000;

/// This device's sightings of claims, by claim key (claim keys are unique
/// per writer process and counter, so across tasks too). Kept by the
/// caller between runs; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sightings {
    /// The sightings.
    pub claims: BTreeMap<String, Sighting>,
    /// Whether this device has observed the pool before.
    pub watching: bool,
    /// The documents this device had read at an earlier observation. A new
    /// claim is watched only on a task of one of them: a document read for
    /// the first time (a runner's deferred load, a batch that arrived with
    /// its claims) may hold claims made long ago.
    #[serde(default)]
    pub docs: BTreeSet<String>,
    /// When this device last observed (its own clock). A device that did
    /// not look for longer than the watch window (three leases) was not
    /// watching: the claims it finds may be old.
    #[serde(default)]
    pub observed_at: Option<Millis>,
}

impl Sightings {
    /// Records, at `now` on this device's clock, the claims of `view` not
    /// seen before (watched when their task is in a document read at an
    /// earlier observation, at most three leases ago) and the renewals of those seen, forgets claims
    /// that are released or fulfilled (and, after a day, those no longer in
    /// the view), and remembers the documents read. Returns whether
    /// anything changed.
    pub fn observe(&mut self, view: &View, now: Millis, policy: Policy) -> bool {
        let window = policy.lease_ms.saturating_mul(3);
        let last = self.observed_at;
        let watching =
            self.watching && last.is_some_and(|t| now >= t && now.saturating_sub(t) <= window);
        // Saved when it moved by a third of the window: a stored time at
        // most that old keeps the window between two thirds and all of it,
        // without a write per observation.
        let mut changed =
            !self.watching || last.is_none_or(|t| now < t || now.saturating_sub(t) >= window / 3);
        self.observed_at = Some(now);
        let mut present: BTreeSet<&str> = BTreeSet::new();
        // Documents are few next to tasks: name each once.
        let view_docs: BTreeSet<&DocId> = view.tasks().flat_map(|t| t.docs.iter()).collect();
        let mut known_docs: BTreeSet<&DocId> = BTreeSet::new();
        let mut new_docs: Vec<String> = Vec::new();
        for d in view_docs {
            let name = d.to_string();
            if self.docs.contains(&name) {
                known_docs.insert(d);
            } else {
                new_docs.push(name);
            }
        }
        for task in view.tasks() {
            // Most tasks of a large pool have no claim: nothing to see.
            if task.facts.claims.is_empty() {
                continue;
            }
            let known = watching && task.docs.iter().any(|d| known_docs.contains(d));
            for c in task.facts.claims.values() {
                if c.released_at.is_some() || task.facts.attempts.contains_key(&c.key) {
                    changed |= self.claims.remove(&c.key).is_some();
                    continue;
                }
                present.insert(&c.key);
                let len = c.lease_until.saturating_sub(c.at).max(0);
                match self.claims.get_mut(&c.key) {
                    None => {
                        self.claims.insert(
                            c.key.clone(),
                            Sighting {
                                lease_until: c.lease_until,
                                seen_at: now,
                                lease_ms: len,
                                watched: known,
                            },
                        );
                        changed = true;
                    }
                    Some(s) if c.lease_until > s.lease_until => {
                        s.lease_until = c.lease_until;
                        s.seen_at = now;
                        s.lease_ms = s.lease_ms.min(len);
                        changed = true;
                    }
                    Some(_) => {}
                }
            }
        }
        let before = self.claims.len();
        self.claims.retain(|key, s| {
            present.contains(key.as_str())
                || s.seen_at
                    .saturating_add(s.lease_ms)
                    .saturating_add(FORGET_AFTER_MS)
                    >= now
        });
        changed |= self.claims.len() != before;
        changed |= !new_docs.is_empty();
        self.docs.extend(new_docs);
        self.watching = true;
        changed
    }
}

/// The derived status of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a worker.
    Pending,
    /// Waiting for tasks it needs.
    Blocked,
    /// A task it needs will not run (failed for good, cancelled, untrusted
    /// or skipped): it will not run either, unless that task is retried.
    Skipped,
    /// A worker holds a live claim on it.
    Running,
    /// An attempt succeeded.
    Done,
    /// Every allowed attempt failed.
    Failed,
    /// Someone cancelled it before it finished.
    Cancelled,
    /// No writer allowed to submit created it: it is shown, never run.
    Untrusted,
}

impl Status {
    /// Every status, in display order.
    pub const ALL: [Status; 8] = [
        Status::Pending,
        Status::Blocked,
        Status::Skipped,
        Status::Running,
        Status::Done,
        Status::Failed,
        Status::Cancelled,
        Status::Untrusted,
    ];

    /// The status name as shown to people and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Blocked => "blocked",
            Status::Skipped => "skipped",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Untrusted => "untrusted",
        }
    }

    /// Whether no more work will happen on the task (without a retry, of
    /// it or, for a skipped task, of what it needs).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Done | Status::Failed | Status::Cancelled | Status::Untrusted | Status::Skipped
        )
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown status `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// One task as the workspace sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    /// The task id.
    pub id: TaskId,
    /// The task.
    pub spec: TaskSpec,
    /// The documents holding it, in order; new facts go to the first.
    pub docs: Vec<DocId>,
    /// When the earliest batch holding it was submitted.
    pub created_at: Millis,
    /// The document `spec` was read from: the earliest by `(created_at, doc
    /// id)`, so its name and priority do not depend on the order of merging.
    pub origin: DocId,
    /// The union of the facts of every document holding it.
    pub facts: Facts,
    /// Whether a writer allowed to submit created it in at least one
    /// document (the id is the hash of the spec, so any one vouches for it).
    pub trusted: bool,
    /// Whether `origin`, the document the spec was taken from, is trusted.
    pub origin_trusted: bool,
    /// The member tags of the writers allowed to submit that created it,
    /// one per trusted document holding it (the same task submitted by two
    /// members is one task: either one's request vouches for it). A device
    /// runs it when its policy accepts any of them (issue 13, item 2).
    /// Sorted, without duplicates; a list rather than a set, since it
    /// holds one tag but for the rarest tasks (a set allocated a node of
    /// eleven for each of 100k tasks, issue 18, item 3).
    pub submitters: Vec<[u8; 8]>,
}

impl TaskView {
    /// The document new facts about this task are written to.
    pub fn home(&self) -> &DocId {
        // A TaskView is only ever created with one document.
        &self.docs[0]
    }
}

/// What the derivation says about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// Its status.
    pub status: Status,
    /// For blocked tasks: why.
    pub reason: Option<String>,
    /// For done tasks: the key of the canonical attempt.
    pub result: Option<String>,
    /// For running tasks: the key of the winning live claim.
    pub claim: Option<String>,
    /// Failed attempts so far, and how many are allowed.
    pub failures: (u64, u64),
}

/// A task's view as first read, from document `doc`.
fn first_record(doc: &DocId, header: &BatchHeader, r: TaskRecord) -> TaskView {
    let submitters = r.creator.filter(|_| r.trusted).into_iter().collect();
    TaskView {
        id: r.id,
        spec: r.spec,
        docs: vec![doc.clone()],
        created_at: header.created_at,
        origin: doc.clone(),
        origin_trusted: r.trusted,
        facts: r.facts,
        trusted: r.trusted,
        submitters,
    }
}

/// Adds what document `doc` holds of task `t` (a union: in any order).
fn merge_record(t: &mut TaskView, doc: &DocId, header: &BatchHeader, r: TaskRecord) {
    t.facts.union(&r.facts);
    t.trusted |= r.trusted;
    if r.trusted
        && let Some(tag) = r.creator
        && let Err(at) = t.submitters.binary_search(&tag)
    {
        t.submitters.insert(at, tag);
    }
    if !t.docs.contains(doc) {
        t.docs.push(doc.clone());
        t.docs.sort();
        // The same id means the same identity fields; the rest of the spec
        // (name, priority, where inputs are stored) comes from a trusted
        // document first (a worker could otherwise date a copy earlier and
        // point its inputs elsewhere), then the earliest, ties broken by id.
        if (!r.trusted, header.created_at, doc) < (!t.origin_trusted, t.created_at, &t.origin) {
            t.created_at = header.created_at;
            t.origin = doc.clone();
            t.origin_trusted = r.trusted;
            t.spec = r.spec;
        }
    }
}

/// The union of every document's tasks.
#[derive(Debug, Clone, Default)]
pub struct View {
    tasks: BTreeMap<TaskId, TaskView>,
    /// This device's sightings of claims (see the module docs).
    sightings: Sightings,
}

impl View {
    /// An empty view.
    pub fn new() -> View {
        View::default()
    }

    /// Adds the tasks of one document (or facts newly read from it).
    pub fn add_records(&mut self, doc: &DocId, header: &BatchHeader, records: Vec<TaskRecord>) {
        for r in records {
            match self.tasks.get_mut(&r.id) {
                Some(t) => merge_record(t, doc, header, r),
                None => {
                    self.tasks
                        .insert(r.id.clone(), first_record(doc, header, r));
                }
            }
        }
    }

    /// Adds the tasks of several documents: the same as
    /// [`add_records`](Self::add_records) for each, in any order (merging is
    /// a union), but an empty view is built in one pass. Loading 100k tasks
    /// one by one into the map moved each task's view several times as the
    /// map's nodes filled (a tenth of a warm `status`, issue 18, item 3);
    /// here the records are put in id order first (by sorting their ids
    /// only), merged, and the map is built from the ordered list.
    pub fn add_documents(&mut self, docs: Vec<(DocId, BatchHeader, Vec<TaskRecord>)>) {
        if !self.tasks.is_empty() || docs.len() < 2 {
            for (doc, header, records) in docs {
                self.add_records(&doc, &header, records);
            }
            return;
        }
        let total = docs.iter().map(|(_, _, r)| r.len()).sum();
        let mut order: Vec<(TaskId, usize, usize)> = Vec::with_capacity(total);
        let mut slots: Vec<(DocId, BatchHeader, Vec<Option<TaskRecord>>)> =
            Vec::with_capacity(docs.len());
        for (d, (doc, header, records)) in docs.into_iter().enumerate() {
            order.extend(
                records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.id.clone(), d, i)),
            );
            slots.push((doc, header, records.into_iter().map(Some).collect()));
        }
        // Each document's records come in id order: runs the sort merges.
        order.sort();
        let mut built: Vec<(TaskId, TaskView)> = Vec::with_capacity(order.len());
        for (id, d, i) in order {
            let (doc, header, records) = &mut slots[d];
            let Some(r) = records.get_mut(i).and_then(Option::take) else {
                continue;
            };
            match built.last_mut() {
                Some((last, t)) if *last == id => merge_record(t, doc, header, r),
                _ => {
                    let view = first_record(doc, header, r);
                    built.push((id, view));
                }
            }
        }
        // Emptied: freed before the map is built, which then peaks at the
        // list and the map.
        drop(slots);
        // In key order, without duplicates: a bulk build.
        self.tasks = built.into_iter().collect();
    }

    /// This device's sightings of claims, which [`View::derive`] and
    /// [`View::claim_lost`] use to bound leases on this device's clock.
    pub fn sightings(&self) -> &Sightings {
        &self.sightings
    }

    /// Replaces the sightings (loaded from where the caller keeps them).
    pub fn set_sightings(&mut self, sightings: Sightings) {
        self.sightings = sightings;
    }

    /// Takes the sightings out (to keep them across a reload).
    pub fn take_sightings(&mut self) -> Sightings {
        std::mem::take(&mut self.sightings)
    }

    /// When `claim`'s lease ends on this device's clock, before the skew
    /// margin: its `lease_until`, bounded by this device's sightings (see
    /// the module docs). For display; the derivation uses the same rule.
    pub fn lease_end(&self, claim: &Claim, now: Millis, policy: Policy) -> Millis {
        lease_end(claim, now, policy, &self.sightings)
    }

    /// Records the claims seen now (see [`Sightings::observe`]). Returns
    /// whether the sightings changed.
    pub fn observe_claims(&mut self, now: Millis, policy: Policy) -> bool {
        let mut sightings = std::mem::take(&mut self.sightings);
        let changed = sightings.observe(self, now, policy);
        self.sightings = sightings;
        changed
    }

    /// The task with this id.
    pub fn get(&self, id: &TaskId) -> Option<&TaskView> {
        self.tasks.get(id)
    }

    /// Every task, by id.
    pub fn tasks(&self) -> impl Iterator<Item = &TaskView> {
        self.tasks.values()
    }

    /// How many tasks the view holds.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the view holds no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Records a claim this process wrote (keeping the view in step with the
    /// document without re-reading it).
    pub fn note_claim(&mut self, task: &TaskId, claim: Claim) {
        if let Some(t) = self.tasks.get_mut(task) {
            t.facts.claims.insert(claim.key.clone(), claim);
        }
    }

    /// Records an attempt this process wrote.
    pub fn note_attempt(&mut self, task: &TaskId, attempt: Attempt) {
        if let Some(t) = self.tasks.get_mut(task) {
            t.facts.attempts.insert(attempt.key.clone(), attempt);
        }
    }

    /// Records a cancel this process wrote.
    pub fn note_cancel(&mut self, task: &TaskId, writer: &str, at: Millis) {
        if let Some(t) = self.tasks.get_mut(task) {
            t.facts.cancels.insert(writer.to_owned(), at);
        }
    }

    /// Records a retry grant this process wrote.
    pub fn note_retry(&mut self, task: &TaskId, key: &str, at: Millis) {
        if let Some(t) = self.tasks.get_mut(task) {
            t.facts.retries.insert(key.to_owned(), at);
        }
    }

    /// Finds tasks by id or unique id prefix (at least 4 hex digits).
    pub fn find(&self, prefix: &str) -> Vec<&TaskView> {
        if prefix.len() < 4 {
            return Vec::new();
        }
        self.tasks
            .range(TaskId::from_digest(&[0; 16])..)
            .filter(|(id, _)| id.as_str().starts_with(prefix))
            .map(|(_, t)| t)
            .collect()
    }

    /// Derives the status of every task.
    pub fn derive(&self, now: Millis, policy: Policy) -> BTreeMap<TaskId, Derived> {
        // Most tasks need none: derived first, in id order, and the map
        // built from them in one pass (a task's derivation that needs
        // nothing depends on nothing else). 100k inserts one by one, with
        // the walk's look-ups, were a third of deriving.
        let mut out: BTreeMap<TaskId, Derived> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.spec.needs.is_empty())
            .map(|(id, task)| {
                let derived = derive_task_seen(task, &[], now, policy, &self.sightings);
                (id.clone(), derived)
            })
            .collect();
        // Tasks need tasks; walk the graph depth-first so each task is derived
        // after what it needs. Content addressing makes cycles impossible to
        // submit, but a forged document could hold one: a task on a cycle is
        // blocked. The walk keeps its own stack: a chain of needs as long as
        // a submission allows (100,000 tasks) would overflow the thread's
        // (issue 12: one bad batch must not crash every command).
        let mut on_stack: HashSet<&TaskId> = HashSet::new();
        for (id, task) in &self.tasks {
            if !task.spec.needs.is_empty() {
                self.derive_from(id, now, policy, &mut out, &mut on_stack);
            }
        }
        out
    }

    /// Derives `root` and everything it needs that is not derived yet,
    /// needs first.
    fn derive_from<'a>(
        &'a self,
        root: &'a TaskId,
        now: Millis,
        policy: Policy,
        out: &mut BTreeMap<TaskId, Derived>,
        on_stack: &mut HashSet<&'a TaskId>,
    ) {
        if out.contains_key(root) || !self.tasks.contains_key(root) {
            return;
        }
        // (task, index of its next need to visit)
        let mut stack: Vec<(&'a TaskId, usize)> = vec![(root, 0)];
        on_stack.insert(root);
        while let Some(top) = stack.last_mut() {
            let id = top.0;
            let Some(task) = self.tasks.get(id) else {
                stack.pop();
                on_stack.remove(id);
                continue;
            };
            if let Some(need) = task.spec.needs.get(top.1) {
                top.1 += 1;
                // A need on the stack is on a cycle: it stays underived
                // (unknown) for this task, which is then blocked.
                if !out.contains_key(need) && self.tasks.contains_key(need) && on_stack.insert(need)
                {
                    stack.push((need, 0));
                }
                continue;
            }
            stack.pop();
            on_stack.remove(id);
            let needs: Vec<(&TaskId, Option<Status>)> = task
                .spec
                .needs
                .iter()
                .map(|n| (n, out.get(n).map(|d| d.status)))
                .collect();
            let derived = derive_task_seen(task, &needs, now, policy, &self.sightings);
            out.insert(id.clone(), derived);
        }
    }

    /// The tasks a worker with `labels` may start now, best first: highest
    /// priority, then oldest batch, then name and id.
    pub fn runnable(&self, derived: &BTreeMap<TaskId, Derived>, labels: &[String]) -> Vec<TaskId> {
        let mut ids: Vec<&TaskView> = self
            .tasks
            .values()
            .filter(|t| {
                derived.get(&t.id).map(|d| d.status) == Some(Status::Pending)
                    && t.spec.runs_on_labels(labels)
            })
            .collect();
        ids.sort_by(|a, b| {
            b.spec
                .priority
                .cmp(&a.spec.priority)
                .then(a.created_at.cmp(&b.created_at))
                .then(a.spec.name.cmp(&b.spec.name))
                .then(a.id.cmp(&b.id))
        });
        ids.into_iter().map(|t| t.id.clone()).collect()
    }

    /// Whether `claim_key`'s claim on `task` lost to an earlier live claim
    /// (by `(at, key)`): its writer should release it and not start the task.
    pub fn claim_lost(&self, task: &TaskId, claim_key: &str, now: Millis, policy: Policy) -> bool {
        let Some(t) = self.tasks.get(task) else {
            return true;
        };
        if t.facts
            .attempts
            .values()
            .any(|a| a.outcome == crate::Outcome::Success)
        {
            return true;
        }
        match winning_claim(&t.facts, now, policy, &self.sightings) {
            Some(w) => w.key != claim_key,
            None => false,
        }
    }
}

/// The earliest live claim by `(at, key)`.
fn winning_claim<'a>(
    facts: &'a Facts,
    now: Millis,
    policy: Policy,
    sightings: &Sightings,
) -> Option<&'a Claim> {
    facts
        .claims
        .values()
        .filter(|c| is_live(c, facts, now, policy, sightings))
        .min_by(|a, b| (a.at, &a.key).cmp(&(b.at, &b.key)))
}

fn is_live(c: &Claim, facts: &Facts, now: Millis, policy: Policy, sightings: &Sightings) -> bool {
    c.released_at.is_none()
        && !facts.attempts.contains_key(&c.key)
        && now <= lease_end(c, now, policy, sightings).saturating_add(policy.clock_skew_ms)
}

/// When `c`'s lease ends on this device's clock, before the skew margin
/// (see the module docs, "Leases on the observer's clock").
fn lease_end(c: &Claim, now: Millis, policy: Policy, sightings: &Sightings) -> Millis {
    let Some(s) = sightings.claims.get(&c.key) else {
        return c.lease_until;
    };
    let claimed = c.lease_until.saturating_sub(c.at).max(0);
    let len = s
        .lease_ms
        .min(claimed)
        .min(policy.lease_ms.saturating_mul(3))
        .max(0);
    // A renewal not observed yet is being seen now.
    let seen_at = if c.lease_until > s.lease_until {
        now
    } else {
        s.seen_at
    };
    let local_end = seen_at.saturating_add(len);
    if s.watched {
        local_end
    } else {
        local_end.min(c.lease_until)
    }
}

/// The canonical result: the first success by `(ended_at, key)`.
pub fn canonical_result(facts: &Facts) -> Option<&Attempt> {
    facts
        .attempts
        .values()
        .filter(|a| a.outcome == crate::Outcome::Success)
        .min_by(|a, b| (a.ended_at, &a.key).cmp(&(b.ended_at, &b.key)))
}

/// The status of one task given the statuses of what it needs (`None`: not
/// known on this replica, or on a cycle), with no sightings of its claims.
pub fn derive_task(
    task: &TaskView,
    needs: &[(&TaskId, Option<Status>)],
    now: Millis,
    policy: Policy,
) -> Derived {
    derive_task_seen(task, needs, now, policy, &Sightings::default())
}

/// [`derive_task`] with this device's sightings of claims.
pub fn derive_task_seen(
    task: &TaskView,
    needs: &[(&TaskId, Option<Status>)],
    now: Millis,
    policy: Policy,
    sightings: &Sightings,
) -> Derived {
    let facts = &task.facts;
    let success = canonical_result(facts);
    let first_cancel = facts.cancels.values().min().copied();
    let failures = facts
        .attempts
        .values()
        .filter(|a| a.outcome.counts_as_failure())
        .count() as u64;
    // A spec that breaks the limits can never run (a worker records an
    // `error` attempt) and never changes: its own retries cannot help, so
    // only one attempt per retry grant counts (issue 12, item 10: a stored
    // `retries: 4294967295` would keep every worker busy failing it). Only
    // checked once it has failed, which keeps deriving cheap.
    let retries = if failures > 0 && task.spec.check().is_err() {
        0
    } else {
        task.spec.retries
    };
    let allowed = (1 + u64::from(retries)) * (1 + facts.retries.len() as u64);
    let mut d = Derived {
        status: Status::Pending,
        reason: None,
        result: None,
        claim: None,
        failures: (failures, allowed),
    };
    if !task.trusted {
        d.status = Status::Untrusted;
        d.reason = Some("not created by a member allowed to submit".into());
        return d;
    }
    if let Some(c) = first_cancel
        && success.is_none_or(|s| c < s.ended_at)
    {
        d.status = Status::Cancelled;
        return d;
    }
    if let Some(s) = success {
        d.status = Status::Done;
        d.result = Some(s.key.clone());
        return d;
    }
    if failures >= allowed {
        d.status = Status::Failed;
        return d;
    }
    if let Some(c) = winning_claim(facts, now, policy, sightings) {
        d.status = Status::Running;
        d.claim = Some(c.key.clone());
        return d;
    }
    let stopped: Vec<String> = needs
        .iter()
        .filter_map(|(id, st)| match st {
            Some(
                st @ (Status::Failed | Status::Cancelled | Status::Untrusted | Status::Skipped),
            ) => Some(format!("{} is {}", id.short(), st.as_str())),
            _ => None,
        })
        .collect();
    if !stopped.is_empty() {
        d.status = Status::Skipped;
        d.reason = Some(format!("needs {}", stopped.join(", ")));
        return d;
    }
    let waiting: Vec<String> = needs
        .iter()
        .filter(|(_, st)| *st != Some(Status::Done))
        .map(|(id, st)| match st {
            Some(st) => format!("{} is {}", id.short(), st.as_str()),
            None => format!("{} is not known here yet", id.short()),
        })
        .collect();
    if !waiting.is_empty() {
        d.status = Status::Blocked;
        d.reason = Some(format!("needs {}", waiting.join(", ")));
    }
    d
}
