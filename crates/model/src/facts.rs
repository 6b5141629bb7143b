//! Facts: what writers add about a task. Each fact sits under a key that its
//! writer owns (`<writer-id>.<n>` for claims, attempts and retry grants, the
//! writer id for a cancel), so no value is ever written by two writers, and
//! merging replicas in any order yields the same set of facts.

use serde::{Deserialize, Serialize};

use crate::ids::WriterId;
use crate::{Millis, SmallMap};

/// A worker's claim on a task: "I am running this until `lease_until`".
///
/// Only its writer changes it: to renew the lease (a heartbeat) or to release
/// it without running the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// `<writer-id>.<n>`; the attempt that fulfils the claim uses the same key.
    pub key: String,
    /// When the claim was made.
    pub at: Millis,
    /// Until when the claimant promises to work on the task or renew.
    pub lease_until: Millis,
    /// Set when the claimant gave the task up without an attempt.
    pub released_at: Option<Millis>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The command exited with code 0 and its outputs were kept.
    Success,
    /// The command exited with another code or was killed by a signal.
    Failed,
    /// The command ran past its timeout and was killed.
    TimedOut,
    /// The worker was stopped (Ctrl-C, SIGTERM); not the task's fault, so it
    /// does not use up a retry.
    Interrupted,
    /// The command could not be started, or an input could not be materialised.
    Error,
}

impl Outcome {
    /// Whether this outcome uses up one of the task's allowed attempts.
    pub fn counts_as_failure(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::TimedOut | Outcome::Error)
    }

    /// The outcome's name as shown to people and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Interrupted => "interrupted",
            Outcome::Error => "error",
        }
    }
}

/// One execution of a task, written once by the worker that ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The claim this attempt fulfils (`<writer-id>.<n>`).
    pub key: String,
    /// A name for the device or runner, for people.
    #[serde(default)]
    pub device: String,
    /// When the command started.
    pub started_at: Millis,
    /// When it ended.
    pub ended_at: Millis,
    /// How it ended.
    pub outcome: Outcome,
    /// The exit code, when the command exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The signal that killed it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
    /// An explanation, e.g. why the command could not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last bytes of stdout, inline.
    #[serde(default)]
    pub stdout_tail: String,
    /// The last bytes of stderr, inline.
    #[serde(default)]
    pub stderr_tail: String,
    /// The whole stdout, as a blob, when the tail does not hold all of it
    /// (longer than a tail, or not valid text; before issue 18, whenever it
    /// was not empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_blob: Option<String>,
    /// The whole stderr, as a blob, when the tail does not hold all of it
    /// (as [`Attempt::stdout_blob`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_blob: Option<String>,
    /// Collected outputs: relative path to blob.
    #[serde(default)]
    pub outputs: SmallMap<String, String>,
    /// Where it ran: host, OS, bridge version, CI run, ….
    #[serde(default)]
    pub provenance: SmallMap<String, String>,
}

/// All facts known about one task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// Claims by key.
    pub claims: SmallMap<String, Claim>,
    /// Attempts by key.
    pub attempts: SmallMap<String, Attempt>,
    /// Cancel facts: writer id to the time of the cancel.
    pub cancels: SmallMap<String, Millis>,
    /// Retry grants: key to the time of the grant. Each grant allows another
    /// full round of `1 + retries` attempts.
    pub retries: SmallMap<String, Millis>,
}

impl Facts {
    /// Adds every fact of `other` (set union). A key present on both sides
    /// keeps the value that sorts greater, so the union does not depend on
    /// the order of merging; by construction a key has one writer, so this
    /// only matters for a claim seen before and after its writer renewed or
    /// released it. A released claim sorts above every unreleased one (a
    /// release may set `lease_until` back to the release time), so a view
    /// that re-reads a document agrees with one that reads it afresh.
    pub fn union(&mut self, other: &Facts) {
        for (k, c) in &other.claims {
            match self.claims.get(k) {
                Some(mine) if claim_order(mine) >= claim_order(c) => {}
                _ => {
                    self.claims.insert(k.clone(), c.clone());
                }
            }
        }
        for (k, a) in &other.attempts {
            self.attempts.entry(k.clone()).or_insert_with(|| a.clone());
        }
        for (k, at) in &other.cancels {
            let e = self.cancels.entry(k.clone()).or_insert(*at);
            *e = (*e).min(*at);
        }
        for (k, at) in &other.retries {
            self.retries.entry(k.clone()).or_insert(*at);
        }
    }
}

/// Claims by one writer under one key only move up this order: renewed
/// (a later `lease_until`), then released (final).
fn claim_order(c: &Claim) -> (bool, Millis, Option<Millis>) {
    (c.released_at.is_some(), c.lease_until, c.released_at)
}

/// The key of the `n`th fact a writer adds to a task.
pub fn fact_key(writer: &WriterId, n: u64) -> String {
    format!("{writer}.{n}")
}

/// The writer part of a fact key.
pub fn writer_of(key: &str) -> &str {
    key.split_once('.').map_or(key, |(w, _)| w)
}
