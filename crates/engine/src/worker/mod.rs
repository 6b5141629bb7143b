//! The worker loop behind `bridge work`: claim runnable tasks, run them
//! `parallel` at a time, record each attempt, and stop cleanly.
//!
//! # Claiming
//!
//! Claims are made in windows: when fewer than `parallel` claimed tasks are
//! waiting, the worker claims up to `window` more in one change per document,
//! flushes them (durable and visible to other processes), re-reads the
//! replica, and releases any claim that lost to an earlier one by the
//! deterministic `(at, key)` order. The window adapts to task length: about
//! two seconds of work per slot, between `parallel` and 256 tasks, so short
//! tasks do not pay a file write each and long ones are not hoarded.
//!
//! # Durability
//!
//! Attempts are group-committed: written to the replica when 64 are waiting,
//! [`WorkOptions::flush_delay`] after the first one (100 ms for `work`, 2 s
//! for a runner, whose disk dies with it: what counts there is the push, and
//! fewer, larger chunk files are what every other runner pulls and applies),
//! before any new claim, and on exit. A crash loses at most the attempts of
//! that window; their tasks become runnable again when the lease runs out
//! (at-least-once, never a lost result that was reported as stored).
//!
//! # Leases
//!
//! Every claim this worker holds (running or waiting) is renewed at a third
//! of the lease, so a worker that dies stops renewing and its tasks are
//! claimable once the lease and the clock-skew margin have passed (measured
//! on each observer's own clock from when it first saw the claim or its
//! last renewal: see `bridge_model::view`).
//!
//! # The machine's faults are not the task's
//!
//! A task that cannot run because of this machine (no space left, no file
//! descriptors, no memory, a read-only or uncreatable working folder) gets
//! no attempt: its claim is released, the worker stops claiming, interrupts
//! what runs, and fails with exit code 5 ([`LocalFault`]). Recording such
//! errors as attempts once let one worker with a full disk fail every
//! pending task of the pool within milliseconds (issue 12, item 13).
//!
//! # Reading the code
//!
//! [`Worker`] (in `steps`) is the loop, one method per step; `claims` holds
//! the claims (made, released, renewed, checked), `choose` decides what to
//! claim, `job` runs one task, `inputs` prepares its working folder and
//! inputs, `fault` tells the machine's faults from the task's, and `error`
//! says why a worker stopped.

mod choose;
#[cfg(test)]
pub(crate) mod claiming_tests;
mod claims;
mod error;
mod fault;
mod inputs;
mod job;
mod spares;
mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bridge_model::{Millis, Outcome, TaskId};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use error::WorkerError;
pub use fault::{LocalFault, local_fault};
pub use inputs::{InputError, WorkDirError, safe_name};
pub use job::{RunnableError, check_runnable, running_log_files};
pub use steps::Worker;

use crate::clock::Clock;
use crate::publish::Publisher;
use crate::run_policy::RunFrom;
use crate::workspace::Session;

/// Flush attempts when this many are waiting…
const FLUSH_COUNT: usize = 64;
/// …or this long after the first one (`bridge work`).
pub const FLUSH_DELAY: Duration = Duration::from_millis(100);
/// How much longer than the last sync a look-ahead sync is given (a fleet
/// ending together syncs at once, each slower than alone)…
const LOOKAHEAD_MARGIN: f64 = 3.0;
/// …and at least this long, in milliseconds.
const LOOKAHEAD_MIN_MS: f64 = 2000.0;
/// A sync younger than this is not repeated before claiming (nor at the end
/// of a run): a look-ahead sync is applied when it ends, up to a few seconds
/// before the worker runs out of claimed tasks.
pub const FRESH_SYNC: Duration = Duration::from_secs(5);
/// How long a stopping worker waits for its last push.
const STOP_PUSH_LIMIT: Duration = Duration::from_secs(3);

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkOptions {
    /// Tasks run at once.
    pub parallel: usize,
    /// Keep waiting for new tasks instead of exiting when none is runnable.
    pub follow: bool,
    /// How often to look for new tasks when idle with `follow`.
    pub poll: Duration,
    /// This worker's labels, matched against `runs-on`.
    pub labels: Vec<String>,
    /// The lease of a claim.
    pub lease: Duration,
    /// Stop claiming after this many tasks.
    pub max_tasks: Option<usize>,
    /// This device's name, recorded in attempts.
    pub device: String,
    /// Stop claiming when a task's expected length no longer fits before
    /// this instant, and stop everything (as on SIGTERM) when it comes; with
    /// the whole budget it was computed from.
    pub deadline: Option<(Instant, Duration)>,
    /// This runner's shard `(index, count)`: it prefers the tasks of its
    /// shard ([`crate::shard`]) and steals others only when it has none.
    pub shard: Option<(u32, u32)>,
    /// Recorded in every attempt, after the device's own (CI run, commit, …).
    pub provenance: BTreeMap<String, String>,
    /// How long after a task ends its attempt may wait to be written with
    /// others (see the module docs, Durability).
    pub flush_delay: Duration,
    /// Under a push budget, how long after its own shard is done this
    /// runner waits before taking over quiet shards (`[worker]
    /// steal-grace`); `None`: a quarter of the time its shard took, between
    /// 5 s and 5 min.
    pub steal_grace: Option<Duration>,
    /// Whose tasks this worker claims (`--run-tasks-from`, else `[worker]
    /// run-tasks-from`); `None`: the default for this device's role (see
    /// [`crate::run_policy`]).
    pub run_tasks_from: Option<Vec<RunFrom>>,
    /// The largest store file the remote takes (a `git:` remote's `[store]
    /// max-object`, issue 15); `None`: no limit but the store's own. An
    /// output whose sealed blob would be larger is not stored: the attempt
    /// fails saying so, with its logs and other outputs kept.
    pub max_object: Option<u64>,
    /// Run only these tasks (`bridge work --task`, `bridge exec`); `None`:
    /// any runnable task.
    pub only: Option<BTreeSet<TaskId>>,
    /// Stop after so many failed attempts, as `parallel --halt`.
    pub halt: Option<Halt>,
}

/// When a worker stops because tasks fail (`bridge work --halt`, as GNU
/// parallel's `--halt soon,fail=N` and `now,fail=N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt {
    /// Stop the running tasks too (`now`), or let them end (`soon`).
    pub now: bool,
    /// After this many failed attempts (at least one).
    pub failures: usize,
}

/// What happened to one task, for progress output.
#[derive(Debug, Clone)]
pub enum Event {
    /// The task started.
    Started {
        name: String,
        id: TaskId,
        /// Which attempt this is: 1 + the attempts recorded before it (by
        /// any worker), so a person reading a runner's log sees a retry.
        attempt: usize,
        /// The task's shard, when this worker has one (`--shard`): another
        /// shard's task was taken over from a runner that is missing or
        /// slower.
        shard: Option<u32>,
        /// The files its stdout and stderr are written to while it runs
        /// (removed once they are kept): a follower may read them as they
        /// grow (`bridge work --line-buffer`).
        log_files: (std::path::PathBuf, std::path::PathBuf),
    },
    /// The task ended.
    Finished {
        name: String,
        id: TaskId,
        outcome: Outcome,
        detail: String,
        ms: Millis,
        /// The last bytes of its stdout and stderr.
        tails: (String, String),
        /// Its whole stdout and stderr, when the hooks asked for them
        /// ([`Hooks::wants_logs`]).
        logs: Option<(Vec<u8>, Vec<u8>)>,
    },
    /// New runnable tasks were found: how many are known to be left.
    Backlog { left: usize },
    /// The worker is idle (with --follow) and will look again.
    Idle,
    /// Pending tasks are left for other devices because of whose they are
    /// (sent once per run, the first time the worker finds some).
    LeftForOthers(LeftForOthers),
}

/// Pending tasks this worker leaves for other devices: their submitters
/// are not in its `run-tasks-from` (see [`crate::run_policy`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LeftForOthers {
    /// Their submitters' names (of the tasks left because of whose they
    /// are).
    pub submitters: BTreeSet<String>,
    /// How many are left because of whose they are.
    pub by_submitter: usize,
    /// The `run-tasks-from` that left them.
    pub policy: crate::run_policy::Setting,
    /// The tasks left for another reason (no sandbox here for another
    /// member's task, a requirement this device does not meet): how many
    /// for each reason.
    pub other: BTreeMap<String, usize>,
}

impl LeftForOthers {
    /// How many, at the worker's last look.
    pub fn tasks(&self) -> usize {
        self.by_submitter + self.other.values().sum::<usize>()
    }

    /// One line for people: how many, whose, and how to change it.
    pub fn message(&self) -> String {
        let mut parts = Vec::new();
        if self.by_submitter > 0 {
            parts.push(self.submitter_message());
        }
        for (why, n) in &self.other {
            parts.push(format!(
                "{n} pending task{} {} left for other devices: {why}",
                if *n == 1 { "" } else { "s" },
                if *n == 1 { "is" } else { "are" },
            ));
        }
        parts.join("; ")
    }

    fn submitter_message(&self) -> String {
        let n = self.by_submitter;
        let whose: Vec<String> = self
            .submitters
            .iter()
            .map(|n| crate::text::safe(n).into_owned())
            .collect();
        format!(
            "{} pending task{} {} left for other devices: {} submitter{} ({}) {} not in run-tasks-from = {}; to run {} here, add {} to `run-tasks-from` under [worker] in .bridge/config.toml (bridge.toml's on a runner), or pass --run-tasks-from",
            n,
            if n == 1 { "" } else { "s" },
            if n == 1 { "is" } else { "are" },
            if n == 1 { "its" } else { "their" },
            if whose.len() == 1 { "" } else { "s" },
            whose.join(", "),
            if whose.len() == 1 { "is" } else { "are" },
            self.policy,
            if n == 1 { "it" } else { "them" },
            if whose.len() == 1 {
                "its submitter"
            } else {
                "their submitters"
            },
        )
    }
}

/// What a worker did.
#[derive(Debug, Default, Clone)]
pub struct WorkReport {
    /// Attempts that succeeded.
    pub done: usize,
    /// Attempts that failed, timed out or could not start.
    pub failed: usize,
    /// Tasks stopped by the shutdown.
    pub interrupted: usize,
    /// Claims that lost to another worker's earlier claim.
    pub lost_claims: usize,
    /// Milliseconds from the start of `work` to the first task started.
    pub first_started_ms: Option<u64>,
    /// Pending tasks left for other devices at the last look.
    pub left_for_others: LeftForOthers,
    /// Whether it stopped early by its [`Halt`] rule.
    pub halted: bool,
}

/// What the caller does at the worker's turning points.
pub trait Hooks {
    /// Something happened to a task (progress output).
    fn event(&mut self, event: Event);
    /// A follow-mode worker found nothing to do (without a publisher, a
    /// good moment to look for new work elsewhere).
    fn idle(&mut self, session: &mut Session) -> Result<(), HookError>;
    /// Whether [`Event::Finished`] should carry the task's whole stdout
    /// and stderr (read back from the replica, where they were just
    /// kept): for showing them, as `bridge work` does.
    fn wants_logs(&self) -> bool {
        false
    }
    /// Where the progress of URL inputs' downloads goes (the command line
    /// draws bars on a terminal); none by default.
    fn downloads(&self) -> Option<Arc<dyn bridge_fetch::Progress>> {
        None
    }
}

/// An error of the caller's [`Hooks`].
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// Runs tasks until none is runnable (or, with `follow`, until `shutdown`,
/// or until the deadline), reading the time from the system clock. With a
/// publisher, every claim window is synced with the remote (to see other
/// workers' claims) and every flush is pushed.
///
/// When this machine cannot run tasks ([`LocalFault`]: no space, no file
/// descriptors, …) it records nothing against the task, releases its
/// claims, stops, and fails with [`WorkerError::LocalFault`], as it does
/// when such an error stops it elsewhere (writing the replica).
pub async fn work(
    session: &mut Session,
    opts: &WorkOptions,
    shutdown: CancellationToken,
    hooks: &mut dyn Hooks,
    publisher: Option<&mut Publisher>,
) -> Result<WorkReport, WorkerError> {
    work_with_clock(
        session,
        opts,
        shutdown,
        hooks,
        publisher,
        crate::clock::system(),
    )
    .await
}

/// [`work`], reading the time from `clock`.
pub async fn work_with_clock(
    session: &mut Session,
    opts: &WorkOptions,
    shutdown: CancellationToken,
    hooks: &mut dyn Hooks,
    publisher: Option<&mut Publisher>,
    clock: std::sync::Arc<dyn Clock>,
) -> Result<WorkReport, WorkerError> {
    let (result, local) = match Worker::new(session, opts, shutdown, hooks, publisher, clock) {
        Ok(mut worker) => {
            let result = worker.run().await;
            (result, worker.local_fault().cloned())
        }
        Err(e) => (Err(e), None),
    };
    let fault = match &result {
        Err(WorkerError::LocalFault(_)) => None,
        Err(e) => local_fault(e).or(local),
        Ok(_) => local,
    };
    match fault {
        Some(fault) => Err(WorkerError::LocalFault(fault)),
        None => result,
    }
}

#[cfg(test)]
mod tests {
    use bridge_model::InputRef;
    use proptest::prelude::*;

    use std::path::Path;

    use super::job::task_command;
    use super::*;
    use bridge_model::{Command, TaskSpec};

    /// Strings as a member could store them: empty, plain, arbitrary
    /// Unicode, paths that climb out, NULs, escape codes, and huge ones.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            // Mostly plain values, so that many specs pass the checks and
            // are run; every other kind often enough to break one field.
            24 => "[a-z]{1,8}",
            1 => Just(String::new()),
            2 => "[a-z./*]{0,12}",
            2 => any::<String>(),
            1 => Just("../../etc/passwd".to_owned()),
            1 => Just("/etc/passwd".to_owned()),
            1 => Just("a\0b".to_owned()),
            1 => Just("\u{1b}[2J".to_owned()),
            1 => (0usize..200_000).prop_map(|n| "x".repeat(n)),
        ]
    }

    /// Commands that are harmless whatever else the spec holds: `true` with
    /// any arguments, a shell exiting with any code, programs and shells
    /// that do not exist (no `/`, so nothing outside PATH is started),
    /// empty argv, NULs and huge scripts.
    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            Just(Command::Argv(vec![])),
            prop::collection::vec(text(), 0..3).prop_map(|args| {
                let mut argv = vec!["true".to_owned()];
                argv.extend(args);
                Command::Argv(argv)
            }),
            any::<u8>().prop_map(|code| Command::Shell {
                shell: "sh".into(),
                script: format!("exit {code}"),
            }),
            text().prop_map(|p| Command::Argv(vec![format!(
                "no-such-program-{}",
                p.replace('/', "")
            )])),
            text().prop_map(|p| Command::Shell {
                shell: format!("no-such-shell-{}", p.replace('/', "")),
                script: "true".into(),
            }),
            Just(Command::Argv(vec!["tr\0ue".into()])),
            (0usize..200_000).prop_map(|n| Command::Shell {
                shell: "sh".into(),
                script: format!(": {}", "x".repeat(n)),
            }),
        ]
    }

    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![6 => 1u64..4, 1 => Just(0), 1 => Just(u64::MAX), 1 => any::<u64>()]
    }

    fn input() -> impl Strategy<Value = InputRef> {
        let url = prop_oneof![4 => Just(None), 1 => text().prop_map(Some)];
        (text(), text(), text(), url).prop_map(|(path, sha256, blob, url)| InputRef {
            path,
            sha256,
            blob,
            url,
        })
    }

    prop_compose! {
        fn stored_spec()(
            name in text(),
            command in command(),
            env in prop::collection::btree_map(text(), text(), 0..4),
            inputs in prop::collection::vec(input(), 0..2),
            outputs in prop::collection::vec(text(), 0..3),
            timeout_s in number(),
            retries in prop_oneof![6 => 0u32..3, 1 => any::<u32>()],
            runs_on in prop::collection::vec(text(), 0..3),
            priority in prop_oneof![6 => -5i64..5, 1 => any::<i64>(), 1 => Just(i64::MIN)],
            needs in prop::collection::vec(any::<[u8; 16]>(), 0..3),
            nonce in prop::option::of(text()),
        ) -> TaskSpec {
            TaskSpec {
                name,
                command,
                env: env.into_iter().collect(),
                inputs,
                outputs,
                timeout_s,
                retries,
                runs_on,
                priority,
                needs: needs.iter().map(|d| TaskId::from_digest(d)).collect(),
                nonce,
                network: true,
                allow_read: vec![],
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        // Issue 12, item 10: arbitrary task specs written into a document
        // never crash a worker. The spec goes the way a claimed task goes:
        // checked and turned into a command (or refused, which the worker
        // records as an `error` attempt), then run for real, its outputs
        // collected.
        #[test]
        fn issue12_no_stored_spec_crashes_the_worker(spec in stored_spec()) {
            let tmp = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let dir = tmp.path().join("task");
            std::fs::create_dir(&dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (out, err) = (tmp.path().join("out"), tmp.path().join("err"));
            let id = spec.id();
            let Ok(cmd) = task_command(&spec, &id, "w.1", ("device", &BTreeMap::new()), (&dir, &out, &err)) else {
                return Ok(());
            };
            // What a worker accepts stays inside the working folder...
            for i in &spec.inputs {
                prop_assert!(!i.path.starts_with('/') && !i.path.split('/').any(|c| c == ".."));
            }
            prop_assert!(spec.timeout_s >= 1 && spec.timeout_s <= bridge_model::limits::MAX_TIMEOUT_S);
            // ...and runs to an outcome (exit, or a failure to start).
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let finished = runtime.block_on(bridge_exec::run(&cmd, CancellationToken::new()));
            prop_assert!(!matches!(finished.outcome, bridge_exec::Outcome::TimedOut));
            let _ = bridge_exec::collect_outputs(&dir, &spec.outputs);
        }
    }

    // The case that crashed every worker: refused, naming the field.
    #[test]
    fn issue12_a_timeout_of_u64_max_is_refused_not_run() {
        let mut spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "name": "poison",
            "command": {"shell": {"shell": "sh", "script": "true"}},
            "timeout_s": u64::MAX,
        }))
        .expect("a spec");
        let p = Path::new("/nonexistent");
        let e = task_command(&spec, &spec.id(), "w.1", ("d", &BTreeMap::new()), (p, p, p))
            .map(|_| ())
            .expect_err("refused");
        assert!(e.to_string().contains("`timeout`"), "{e}");
        spec.timeout_s = 5;
        assert!(task_command(&spec, &spec.id(), "w.1", ("d", &BTreeMap::new()), (p, p, p)).is_ok());
    }
}
