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
//! 5. **blocked**: a task it `needs` is not done (or is not known here yet).
//! 6. **pending**: otherwise; runnable by any worker whose labels match.
//!
//! # Clock skew
//!
//! Leases are written with the claimant's clock and read with others'. A
//! claim stays live for [`Policy::clock_skew_ms`] past its `lease_until`
//! (default 30 s), so a reader whose clock runs up to that much ahead does not
//! steal a task that is still being worked. Claimants renew well before the
//! lease ends (at a third of the lease), so the margin is only for skew.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

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
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            clock_skew_ms: 30_000,
        }
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
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Blocked,
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
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Untrusted => "untrusted",
        }
    }

    /// Whether no more work will happen on the task (without a retry).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Done | Status::Failed | Status::Cancelled | Status::Untrusted
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

/// The union of every document's tasks.
#[derive(Debug, Clone, Default)]
pub struct View {
    tasks: BTreeMap<TaskId, TaskView>,
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
                Some(t) => {
                    t.facts.union(&r.facts);
                    t.trusted |= r.trusted;
                    if !t.docs.contains(doc) {
                        t.docs.push(doc.clone());
                        t.docs.sort();
                        // The same id means the same identity fields; the
                        // rest of the spec (name, priority, where inputs are
                        // stored) comes from a trusted document first (a
                        // worker could otherwise date a copy earlier and
                        // point its inputs elsewhere), then the earliest,
                        // ties broken by id.
                        if (!r.trusted, header.created_at, doc)
                            < (!t.origin_trusted, t.created_at, &t.origin)
                        {
                            t.created_at = header.created_at;
                            t.origin = doc.clone();
                            t.origin_trusted = r.trusted;
                            t.spec = r.spec;
                        }
                    }
                }
                None => {
                    self.tasks.insert(
                        r.id.clone(),
                        TaskView {
                            id: r.id,
                            spec: r.spec,
                            docs: vec![doc.clone()],
                            created_at: header.created_at,
                            origin: doc.clone(),
                            origin_trusted: r.trusted,
                            facts: r.facts,
                            trusted: r.trusted,
                        },
                    );
                }
            }
        }
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
        let mut out: BTreeMap<TaskId, Derived> = BTreeMap::new();
        // Tasks need tasks; walk the graph depth-first so each task is derived
        // after what it needs. Content addressing makes cycles impossible to
        // submit, but a forged document could hold one: a task on a cycle is
        // blocked. The walk keeps its own stack: a chain of needs as long as
        // a submission allows (100,000 tasks) would overflow the thread's
        // (issue 12: one bad batch must not crash every command).
        let mut on_stack: HashSet<&TaskId> = HashSet::new();
        for id in self.tasks.keys() {
            self.derive_from(id, now, policy, &mut out, &mut on_stack);
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
            let derived = derive_task(task, &needs, now, policy);
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
        match winning_claim(&t.facts, now, policy) {
            Some(w) => w.key != claim_key,
            None => false,
        }
    }
}

/// The earliest live claim by `(at, key)`.
fn winning_claim(facts: &Facts, now: Millis, policy: Policy) -> Option<&Claim> {
    facts
        .claims
        .values()
        .filter(|c| is_live(c, facts, now, policy))
        .min_by(|a, b| (a.at, &a.key).cmp(&(b.at, &b.key)))
}

fn is_live(c: &Claim, facts: &Facts, now: Millis, policy: Policy) -> bool {
    c.released_at.is_none()
        && !facts.attempts.contains_key(&c.key)
        && now <= c.lease_until.saturating_add(policy.clock_skew_ms)
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
/// known on this replica, or on a cycle).
pub fn derive_task(
    task: &TaskView,
    needs: &[(&TaskId, Option<Status>)],
    now: Millis,
    policy: Policy,
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
    if let Some(c) = winning_claim(facts, now, policy) {
        d.status = Status::Running;
        d.claim = Some(c.key.clone());
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
