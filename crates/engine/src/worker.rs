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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bridge_exec::{Program, TaskCommand};
use bridge_fetch::{FetchConfig, Fetcher};
use bridge_model::facts::Claim;
use bridge_model::spec::InputSource;
use bridge_model::view::canonical_result;
use bridge_model::{
    Attempt, Command, DocId, InputRef, Millis, Outcome, TaskId, TaskSpec, View, doc,
};
use bridge_store::BlobId;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::CliResult;
use crate::publish::Publisher;
use crate::run_policy::{RunFrom, TaskPolicy};
use crate::sandbox::{Sandbox, unmet_requirements};
use crate::shard::Shards;
use crate::vault::{Placement, Vault};
use crate::workspace::{Session, now_ms};

/// How many trailing bytes of each log are kept inline in the attempt.
const TAIL_BYTES: usize = 2048;
/// Flush attempts when this many are waiting…
const FLUSH_COUNT: usize = 64;
/// …or this long after the first one (`bridge work`).
pub const FLUSH_DELAY: Duration = Duration::from_millis(100);
/// The most tasks claimed in one window.
const MAX_WINDOW: usize = 256;
/// How much work (per slot) a claim window aims to hold.
const WINDOW_TARGET_MS: f64 = 2000.0;
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
/// How long a stopping task gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

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
    /// Whose tasks this worker claims (`--run-tasks-from`, else `[worker]
    /// run-tasks-from`); `None`: the default for this device's role (see
    /// [`crate::run_policy`]).
    pub run_tasks_from: Option<Vec<RunFrom>>,
}

/// What happened to one task, for progress output.
#[derive(Debug, Clone)]
pub enum Event {
    /// The task started.
    Started { name: String },
    /// The task ended.
    Finished {
        name: String,
        id: TaskId,
        outcome: Outcome,
        detail: String,
        ms: Millis,
        /// The last bytes of its stdout and stderr.
        tails: (String, String),
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
}

struct Held {
    task: TaskId,
    doc: DocId,
    at: Millis,
}

/// A task that ended: its id, claim key, attempt, and, when this machine
/// could not run it (see [`LocalFault`]), why: then the attempt is not
/// recorded.
type Finished = (TaskId, String, Attempt, Option<LocalFault>);

/// A failure of the worker's own machine, not of the task: no space left,
/// no file descriptors, no memory, a read-only or missing working folder.
/// Recording it as the task's attempt would use up the task's retries on
/// every task the worker claims (issue 12, item 13: a worker with a full
/// disk marked every pending task `failed` for everyone in milliseconds).
/// Instead the worker releases its claims, records nothing, stops claiming
/// and exits with [`EXIT_LOCAL_FAULT`](crate::error::EXIT_LOCAL_FAULT).
#[derive(Debug, Clone)]
pub struct LocalFault(pub String);

/// The operating-system errors that are the machine's, not the task's.
const LOCAL_ERRNOS: &[nix::errno::Errno] = &[
    nix::errno::Errno::ENOSPC,
    nix::errno::Errno::EDQUOT,
    nix::errno::Errno::EMFILE,
    nix::errno::Errno::ENFILE,
    nix::errno::Errno::ENOMEM,
    nix::errno::Errno::EROFS,
];

/// Whether an `io::Error` is the machine's fault (see [`LocalFault`]).
fn is_local_io(e: &std::io::Error) -> bool {
    e.raw_os_error()
        .is_some_and(|n| LOCAL_ERRNOS.iter().any(|l| *l as i32 == n))
}

/// The machine's fault in an error chain, if any (see [`LocalFault`]).
pub fn local_fault(e: &anyhow::Error) -> Option<LocalFault> {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .find(|io| is_local_io(io))
        .map(|_| LocalFault(format!("{e:#}")))
}

/// The machine's fault in a message of the task runner, which carries the
/// operating system's error as text (`… (os error 28)`).
///
/// Only the message's end counts: that is where the OS error stands (`could
/// not start `NAME`: … (os error 28)`), while the rest may hold text the
/// task's author chose (a program named `x (os error 28)` must not make
/// every worker that claims it stop as if its disk were full).
fn local_fault_in_message(message: &str) -> Option<LocalFault> {
    let end = message.trim_end();
    LOCAL_ERRNOS
        .iter()
        .any(|l| end.ends_with(&format!("(os error {})", *l as i32)))
        .then(|| LocalFault(message.to_owned()))
}

/// What the caller does at the worker's turning points.
pub trait Hooks {
    /// Something happened to a task (progress output).
    fn event(&mut self, event: Event);
    /// A follow-mode worker found nothing to do (without a publisher, a
    /// good moment to look for new work elsewhere).
    fn idle(&mut self, session: &mut Session) -> CliResult<()>;
    /// Where the progress of URL inputs' downloads goes (the command line
    /// draws bars on a terminal); none by default.
    fn downloads(&self) -> Option<Arc<dyn bridge_fetch::Progress>> {
        None
    }
}

/// Runs tasks until none is runnable (or, with `follow`, until `shutdown`,
/// or until the deadline). With a publisher, every claim window is synced
/// with the remote (to see other workers' claims) and every flush is pushed.
///
/// When this machine cannot run tasks ([`LocalFault`]: no space, no file
/// descriptors, …) it records nothing against the task, releases its
/// claims, stops, and fails with exit code
/// [`EXIT_LOCAL_FAULT`](crate::error::EXIT_LOCAL_FAULT), as it does when
/// such an error stops it elsewhere (writing the replica).
pub async fn work(
    session: &mut Session,
    opts: &WorkOptions,
    shutdown: CancellationToken,
    hooks: &mut dyn Hooks,
    publisher: Option<&mut Publisher>,
) -> CliResult<WorkReport> {
    let mut local = None;
    let result = work_loop(session, opts, shutdown, hooks, publisher, &mut local).await;
    let fault = match &result {
        Err(e) => local_fault(&e.error).or(local),
        Ok(_) => local,
    };
    match fault {
        Some(fault) => Err(local_fault_error(fault)),
        None => result,
    }
}

/// The error a worker stops with when its machine cannot run tasks.
pub fn local_fault_error(fault: LocalFault) -> crate::error::CliError {
    crate::error::CliError::hint(
        anyhow::anyhow!(
            "this machine cannot run tasks: {}; nothing was recorded against the tasks, and the claims not yet released expire with their lease",
            fault.0
        ),
        "free disk space (or raise the open-file limit, `ulimit -n`), then run the worker again",
    )
    .with_code(crate::error::EXIT_LOCAL_FAULT)
}

async fn work_loop(
    session: &mut Session,
    opts: &WorkOptions,
    shutdown: CancellationToken,
    hooks: &mut dyn Hooks,
    mut publisher: Option<&mut Publisher>,
    local: &mut Option<LocalFault>,
) -> CliResult<WorkReport> {
    let parallel = opts.parallel.max(1);
    let lease_ms = opts.lease.as_millis() as Millis;
    let vault = session.vault.clone();
    // This worker's own folder; folders killed workers left are removed.
    let work_area = crate::workarea::WorkArea::open(&session.ws.work_dir())?;
    let work_dir = work_area.dir().to_owned();
    let (supervisor, sandbox) = task_supervisor(&session.ws, session.is_runner())?;
    let me = crate::vault::member_tag(session.vault.identity().member_id());
    let stop_tasks = CancellationToken::new();
    // Shared by every task, so that tasks needing the same URL input wait
    // for one download.
    let fetcher = Arc::new(Fetcher::new(FetchConfig::from_env()?).with_progress(hooks.downloads()));
    let began = Instant::now();

    let mut report = WorkReport::default();
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut names: HashMap<String, String> = HashMap::new();
    // Which task each running job is, so that a job that panics still ends
    // its task with an `error` attempt instead of stopping the worker.
    let mut spawned: HashMap<tokio::task::Id, (TaskId, String, Millis)> = HashMap::new();
    let mut claimed_total = 0usize;
    let mut avg_ms: Option<f64> = None;
    let mut unflushed_attempts = 0usize;
    let mut flush_at: Option<Instant> = None;
    let mut renew_at = Instant::now() + opts.lease / 3;
    let mut stopping = false;
    let mut shards = opts.shard.map(|(_, count)| Shards::new(count));
    let mut warned_names = BTreeSet::new();
    let mut told_left = false;

    loop {
        // 1. Claim more when the queue runs low.
        let budget_left = opts
            .max_tasks
            .map_or(usize::MAX, |m| m.saturating_sub(claimed_total));
        let mut nothing_runnable = false;
        if !stopping && queue.len() < parallel && budget_left > 0 {
            if unflushed_attempts > 0 {
                // Results first: what other workers re-read must include them.
                session.flush()?;
                unflushed_attempts = 0;
                flush_at = None;
            }
            match publisher.as_deref_mut() {
                // A sync that just ended (the run's first, or the last
                // window's) shows what there is to claim well enough: the
                // sync after claiming checks the claims.
                Some(p) if p.syncing() || !p.synced_within(FRESH_SYNC) => {
                    p.sync(session).await?;
                }
                _ => {
                    session.refresh()?;
                }
            }
            let now = now_ms();
            let derived = session.view().derive(now, session.policy);
            // Built at each look: the roster may have changed meanwhile.
            let task_policy = session.task_policy(opts.run_tasks_from.as_deref());
            crate::run_policy::warn_unknown_names(&task_policy, &mut warned_names);
            let mut left = LeftForOthers {
                policy: task_policy.setting(),
                ..LeftForOthers::default()
            };
            let runnable: Vec<TaskId> = session
                .view()
                .runnable(&derived, &opts.labels)
                .into_iter()
                .filter(|id| !held.values().any(|h| &h.task == id))
                .filter(|id| run_here(&task_policy, &sandbox, me, session.view(), id, &mut left))
                .filter(|id| fits_before_deadline(session.view(), id, avg_ms, opts.deadline))
                .collect();
            if left.tasks() > 0 && !told_left {
                told_left = true;
                hooks.event(Event::LeftForOthers(left.clone()));
            }
            report.left_for_others = left;
            hooks.event(Event::Backlog {
                left: runnable.len(),
            });
            let (candidates, stealing) = prefer_shard(
                runnable,
                opts.shard.map(|(index, _)| index).zip(shards.as_mut()),
                session.view(),
            );
            // Before stealing from other shards, read the documents the
            // load plan left: they hold this shard's tasks too.
            if (stealing || candidates.is_empty()) && session.has_deferred() {
                session.load_more()?;
                continue;
            }
            let window = match (avg_ms, stealing) {
                // A thief takes little, so the owner of the shard is not starved.
                (_, true) => parallel,
                // A runner's own shard is its own: claim it in one window
                // (each window costs a sync with the remote; thieves take
                // from the far end, and unstarted claims are released at
                // the deadline).
                (_, false) if opts.shard.is_some() => MAX_WINDOW,
                (None, _) => parallel,
                (Some(ms), false) => ((parallel as f64 * WINDOW_TARGET_MS / ms.max(1.0)) as usize)
                    .clamp(parallel, MAX_WINDOW),
            };
            let take = window.min(budget_left).min(candidates.len());
            if take == 0 {
                nothing_runnable = true;
            } else {
                let mine = claim(session, &candidates[..take], now, lease_ms, &mut held)?;
                claimed_total += mine.len();
                session.flush()?;
                // Another worker may have claimed the same tasks: read its
                // claims (pushing ours) and keep only those we won. A
                // runner's own shard is claimed by no other runner (shards
                // are disjoint), only perhaps by a thief, who syncs after
                // claiming and yields to an earlier claim: the owner pushes
                // its claims at once and starts without waiting for a sync.
                let fresh = match publisher.as_deref_mut() {
                    Some(p) if opts.shard.is_some() && !stealing => {
                        p.publish_now(session);
                        false
                    }
                    Some(p) => p.sync(session).await?.is_some_and(|r| r.pulled > 0),
                    None => session.refresh()? > 0,
                };
                if fresh {
                    let now = now_ms();
                    let mut lost = Vec::new();
                    for key in &mine {
                        if let Some(h) = held.get(key)
                            && session.view().claim_lost(&h.task, key, now, session.policy)
                        {
                            lost.push(key.clone());
                        }
                    }
                    report.lost_claims += lost.len();
                    release(session, &lost, &mut held, now)?;
                    session.flush()?;
                    queue.extend(mine.into_iter().filter(|k| !lost.contains(k)));
                } else {
                    queue.extend(mine);
                }
            }
        }

        // 2. Start tasks while slots are free.
        while running.len() < parallel && !stopping {
            let Some(key) = queue.pop_front() else { break };
            let Some(h) = held.get(&key) else { continue };
            // Claims that arrived after this one's window was checked (a
            // later sync) may have won it, or another worker finished it:
            // check again, just before it would start.
            if session
                .view()
                .claim_lost(&h.task, &key, now_ms(), session.policy)
            {
                report.lost_claims += 1;
                release(session, std::slice::from_ref(&key), &mut held, now_ms())?;
                continue;
            }
            let Some(task) = session.view().get(&h.task) else {
                continue;
            };
            let spec = task.spec.clone();
            let id = h.task.clone();
            let need_inputs = need_inputs(session.view(), &spec);
            names.insert(key.clone(), spec.name.clone());
            hooks.event(Event::Started {
                name: spec.name.clone(),
            });
            let job = Job {
                vault: vault.clone(),
                fetcher: fetcher.clone(),
                work_dir: work_dir.clone(),
                supervisor: supervisor.clone(),
                sandbox: sandbox.clone(),
                device: opts.device.clone(),
                provenance: opts.provenance.clone(),
                id: id.clone(),
                key: key.clone(),
                spec,
                need_inputs,
                placement: Placement::Batch(h.doc.batch().clone()),
            };
            let handle = running.spawn(job.run(stop_tasks.clone()));
            spawned.insert(handle.id(), (id, key, now_ms()));
            report
                .first_started_ms
                .get_or_insert_with(|| began.elapsed().as_millis() as u64);
        }

        // 2b. Look ahead: when the claimed tasks left would all have started
        // within about a sync's time, sync in the background, so that the
        // next window (or finding that nothing is left) does not keep the
        // slots waiting for the remote.
        if !stopping
            && budget_left > 0
            && !running.is_empty()
            && let (Some(p), Some(task_ms)) = (publisher.as_deref_mut(), avg_ms)
            && !p.syncing()
            && !p.synced_within(FRESH_SYNC)
        {
            let left_ms = queue.len() as f64 * task_ms / parallel as f64;
            let sync_ms =
                (p.last_sync().as_secs_f64() * 1000.0 * LOOKAHEAD_MARGIN).max(LOOKAHEAD_MIN_MS);
            if left_ms <= sync_ms {
                p.start_sync(session);
            }
        }

        // 3. Done, idle, or go on?
        if running.is_empty() && queue.is_empty() {
            // The load plan left documents unread: read more before
            // concluding there is nothing to do.
            if nothing_runnable && !stopping && budget_left > 0 && session.has_deferred() {
                session.load_more()?;
                continue;
            }
            if stopping || budget_left == 0 || (nothing_runnable && !opts.follow) {
                break;
            }
            if nothing_runnable {
                session.flush()?;
                // Nothing runs: a good moment for a long-lived worker to
                // start again from compact documents.
                if session.reload_due()? {
                    tracing::debug!("reloading the documents to keep memory flat");
                    // Compact the local replica first, so the reload reads
                    // snapshots; the remote gets them with the next sync.
                    crate::compact::auto(
                        &session.vault,
                        &session.ws.replica,
                        None,
                        usize::MAX,
                        &|_| true,
                    );
                    session.reload()?;
                }
                if publisher.is_none() {
                    hooks.idle(session)?;
                }
                hooks.event(Event::Idle);
                tokio::select! {
                    _ = tokio::time::sleep(opts.poll) => {}
                    _ = shutdown.cancelled() => { stopping = true; }
                }
            }
            // Otherwise every claim of the window was lost: look again.
            continue;
        }

        // 4. Wait for something to happen.
        let flush_deadline = flush_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let stop_at = opts
            .deadline
            .map_or_else(|| Instant::now() + Duration::from_secs(86_400), |(d, _)| d);
        let pushing = publisher.as_ref().is_some_and(|p| p.busy());
        let push_due = publisher.as_ref().and_then(|p| p.due());
        let mut stop_now = false;
        tokio::select! {
            Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                let (id, key, attempt, fault) = match joined {
                    Ok((job, f)) => {
                        spawned.remove(&job);
                        f
                    }
                    // A bug that a stored task can trigger must not stop the
                    // pool (issue 12, item 10): the task gets an `error`
                    // attempt, the others go on.
                    Err(e) => {
                        let Some((id, key, started_at)) = spawned.remove(&e.id()) else {
                            return Err(anyhow::anyhow!("a task runner crashed: {e}").into());
                        };
                        let reason = panic_message(e);
                        tracing::error!(task = %id, %reason, "running the task crashed; recorded as an error");
                        let mut a = blank_attempt(&key, &opts.device, &opts.provenance, started_at);
                        a.ended_at = now_ms();
                        a.message = Some(format!("the worker could not run this task: {reason}"));
                        (id, key, a, None)
                    }
                };
                if let Some(fault) = fault {
                    // Not the task's failure: nothing recorded, the claim
                    // released (best effort: the disk may be full; then the
                    // lease runs out), and no more claims from this machine.
                    tracing::debug!(task = %id, "this machine cannot run tasks: {}", fault.0);
                    names.remove(&key);
                    if let Err(e) = release(session, std::slice::from_ref(&key), &mut held, now_ms()) {
                        tracing::debug!("cannot release the claim {key}: {}", e.error);
                    }
                    local.get_or_insert(fault);
                    stop_now = !stopping;
                } else if let Some(h) = held.remove(&key) {
                    let ms = attempt.ended_at - attempt.started_at;
                    avg_ms = Some(match avg_ms {
                        None => ms as f64,
                        Some(a) => 0.8 * a + 0.2 * ms as f64,
                    });
                    match attempt.outcome {
                        Outcome::Success => report.done += 1,
                        Outcome::Interrupted => report.interrupted += 1,
                        _ => report.failed += 1,
                    }
                    let detail = detail_of(&attempt);
                    let outcome = attempt.outcome;
                    let tails = (attempt.stdout_tail.clone(), attempt.stderr_tail.clone());
                    session.change(&h.doc, attempt.ended_at, "attempt", |d| doc::put_attempt(d, &id, &attempt))?;
                    session.view_mut().note_attempt(&id, attempt);
                    unflushed_attempts += 1;
                    if flush_at.is_none() {
                        flush_at = Some(Instant::now() + opts.flush_delay);
                    }
                    hooks.event(Event::Finished {
                        name: names.remove(&key).unwrap_or_default(),
                        id,
                        outcome,
                        detail,
                        ms,
                        tails,
                    });
                }
            }
            _ = tokio::time::sleep_until(flush_deadline), if flush_at.is_some() => {
                session.flush()?;
                unflushed_attempts = 0;
                flush_at = None;
            }
            _ = tokio::time::sleep_until(renew_at) => {
                renew(session, &held, now_ms() + lease_ms)?;
                session.flush()?;
                renew_at = Instant::now() + opts.lease / 3;
            }
            _ = shutdown.cancelled(), if !stopping => stop_now = true,
            _ = tokio::time::sleep_until(stop_at), if opts.deadline.is_some() && !stopping => stop_now = true,
            _ = async {
                match publisher.as_deref_mut() {
                    Some(p) => p.in_flight_done().await,
                    None => std::future::pending().await,
                }
            }, if pushing => {}
            // Queued results waiting for the push interval.
            _ = tokio::time::sleep_until(push_due.unwrap_or(stop_at)), if push_due.is_some() => {
                if let Some(p) = publisher.as_deref_mut() {
                    p.push_if_due();
                }
            }
        }
        if stop_now {
            // Stop: interrupt running tasks (their attempts are recorded as
            // interrupted when they end) and give up the waiting claims.
            stopping = true;
            stop_tasks.cancel();
            let waiting: Vec<String> = queue.drain(..).collect();
            release(session, &waiting, &mut held, now_ms())?;
            session.flush()?;
        }
        if unflushed_attempts >= FLUSH_COUNT {
            session.flush()?;
            unflushed_attempts = 0;
            flush_at = None;
        }
        if let Some(p) = publisher.as_deref_mut() {
            // A look-ahead sync that ended: apply what it pulled now, while
            // tasks run, rather than when the slots are waiting for it.
            if p.ahead_ready() {
                p.sync(session).await?;
            }
            p.publish(session);
        }
    }
    let waiting: Vec<String> = queue.drain(..).collect();
    release(session, &waiting, &mut held, now_ms())?;
    session.flush()?;
    if let Some(p) = publisher {
        if stopping {
            // Stopping on a signal or at the deadline: the runner's grace
            // period is short (GitHub kills 10 s after SIGINT). What does not
            // make it is in the local replica and goes with the next sync.
            let _ = tokio::time::timeout(STOP_PUSH_LIMIT, p.flush(session)).await;
        } else {
            p.flush(session).await;
        }
    }
    Ok(report)
}

/// Whether this device's policy lets it run task `id` (see
/// [`crate::run_policy`]); a task it refuses is counted in `left`, left
/// unclaimed for the devices whose policy accepts it.
fn run_here(
    policy: &TaskPolicy,
    sandbox: &Sandbox,
    me: [u8; 8],
    view: &View,
    id: &TaskId,
    left: &mut LeftForOthers,
) -> bool {
    let Some(task) = view.get(id) else {
        return false;
    };
    if let Some(crate::run_policy::Refusal::Submitter { name }) = policy.refusal(task) {
        left.by_submitter += 1;
        left.submitters.insert(name);
        return false;
    }
    // Another member's task runs here only in a sandbox, or where the
    // user opted out of it; and only if this device meets what it needs.
    let why = if !sandbox.may_run_others_tasks() && !task.submitters.contains(&me) {
        Some(
            "this device cannot sandbox tasks, so it runs only its own member's ([worker] sandbox = \"off\" runs the others' unsandboxed)"
                .to_owned(),
        )
    } else {
        unmet_requirements(&task.spec, sandbox)
    };
    match why {
        None => true,
        Some(why) => {
            *left.other.entry(why).or_default() += 1;
            false
        }
    }
}

/// Whether `id`'s expected length fits before the deadline. The estimate is
/// its longest earlier attempt, else the average of this run's tasks (each
/// with a quarter more for safety), else its timeout capped at a quarter of
/// the whole budget: a task nobody has timed yet is tried while a quarter of
/// the budget remains, and the deadline still stops it for sure.
fn fits_before_deadline(
    view: &View,
    id: &TaskId,
    avg_ms: Option<f64>,
    deadline: Option<(Instant, Duration)>,
) -> bool {
    let Some((deadline, budget)) = deadline else {
        return true;
    };
    let Some(task) = view.get(id) else {
        return false;
    };
    let history = task
        .facts
        .attempts
        .values()
        // Attempts are written by other members: no value may overflow here.
        .map(|a| a.ended_at.saturating_sub(a.started_at).max(0) as u64)
        .max();
    let expected = match history.or(avg_ms.map(|a| a as u64)) {
        Some(ms) => Duration::from_millis(ms.saturating_add(ms / 4)),
        None => Duration::from_secs(task.spec.timeout_s).min(budget / 4),
    };
    Instant::now()
        .checked_add(expected)
        .is_some_and(|end| end <= deadline)
}

/// Orders candidates for a sharded runner: the tasks of its shard (see
/// [`crate::shard`]), or (when there are none) the others, to steal. Returns
/// the candidates and whether they are stolen.
fn prefer_shard(
    candidates: Vec<TaskId>,
    shard: Option<(u32, &mut Shards)>,
    view: &View,
) -> (Vec<TaskId>, bool) {
    let Some((index, shards)) = shard else {
        return (candidates, false);
    };
    shards.prepare(view, &candidates);
    let (mine, others): (Vec<TaskId>, Vec<TaskId>) = candidates
        .into_iter()
        .partition(|id| shards.of(id) == index);
    if mine.is_empty() {
        // Steal from the far end of the others' queues: their owners work
        // from the front, so a thief rarely races them for the same task.
        let mut others = others;
        others.reverse();
        (others, true)
    } else {
        (mine, false)
    }
}

/// Claims `ids`, one change per document; returns the new claim keys.
fn claim(
    session: &mut Session,
    ids: &[TaskId],
    now: Millis,
    lease_ms: Millis,
    held: &mut BTreeMap<String, Held>,
) -> CliResult<Vec<String>> {
    let mut by_doc: BTreeMap<DocId, Vec<(TaskId, String)>> = BTreeMap::new();
    for id in ids {
        let Some(home) = session.view().get(id).map(|t| t.home().clone()) else {
            continue;
        };
        let key = session.next_key();
        by_doc.entry(home).or_default().push((id.clone(), key));
    }
    let mut keys = Vec::with_capacity(ids.len());
    for (doc_id, tasks) in by_doc {
        session.change(&doc_id, now, "claim", |d| {
            for (id, key) in &tasks {
                doc::put_claim(d, id, &claim_fact(key, now, now + lease_ms, None))?;
            }
            Ok(())
        })?;
        for (id, key) in tasks {
            session
                .view_mut()
                .note_claim(&id, claim_fact(&key, now, now + lease_ms, None));
            held.insert(
                key.clone(),
                Held {
                    task: id,
                    doc: doc_id.clone(),
                    at: now,
                },
            );
            keys.push(key);
        }
    }
    Ok(keys)
}

fn claim_fact(key: &str, at: Millis, lease_until: Millis, released_at: Option<Millis>) -> Claim {
    Claim {
        key: key.to_owned(),
        at,
        lease_until,
        released_at,
    }
}

/// Gives claims up without running their tasks.
fn release(
    session: &mut Session,
    keys: &[String],
    held: &mut BTreeMap<String, Held>,
    now: Millis,
) -> CliResult<()> {
    for key in keys {
        let Some(h) = held.remove(key) else { continue };
        let fact = claim_fact(key, h.at, now, Some(now));
        session.change(&h.doc, now, "release", |d| {
            doc::put_claim(d, &h.task, &fact)
        })?;
        session.view_mut().note_claim(&h.task, fact);
    }
    Ok(())
}

/// Extends the lease of every held claim.
fn renew(
    session: &mut Session,
    held: &BTreeMap<String, Held>,
    lease_until: Millis,
) -> CliResult<()> {
    let now = now_ms();
    let mut by_doc: BTreeMap<&DocId, Vec<(&String, &Held)>> = BTreeMap::new();
    for (k, h) in held {
        by_doc.entry(&h.doc).or_default().push((k, h));
    }
    for (doc_id, claims) in by_doc {
        session.change(doc_id, now, "renew", |d| {
            for (key, h) in &claims {
                doc::put_claim(d, &h.task, &claim_fact(key, h.at, lease_until, None))?;
            }
            Ok(())
        })?;
        for (key, h) in claims {
            session
                .view_mut()
                .note_claim(&h.task, claim_fact(key, h.at, lease_until, None));
        }
    }
    Ok(())
}

fn detail_of(a: &Attempt) -> String {
    match (a.outcome, a.exit_code, a.signal, &a.message) {
        (_, _, _, Some(m)) => m.clone(),
        (Outcome::Failed, Some(c), _, _) => format!("exit code {c}"),
        (Outcome::Failed, _, Some(s), _) => format!("killed by signal {s}"),
        (Outcome::TimedOut, ..) => "timed out".to_owned(),
        _ => String::new(),
    }
}

/// One task to run, with everything it needs (owned, so it can run on the
/// runtime while the loop goes on).
struct Job {
    vault: Arc<Vault>,
    fetcher: Arc<Fetcher>,
    work_dir: PathBuf,
    /// How tasks are started (see [`task_supervisor`]).
    supervisor: Option<bridge_exec::Supervisor>,
    /// What they may see.
    sandbox: Arc<Sandbox>,
    device: String,
    provenance: BTreeMap<String, String>,
    id: TaskId,
    key: String,
    spec: TaskSpec,
    /// The outputs of the tasks it needs, placed under `needs/<name>/`.
    need_inputs: Vec<InputRef>,
    /// Where its logs and outputs go: with its batch (private to the
    /// batch's audience when it has one).
    placement: Placement,
}

impl Job {
    async fn run(self, stop: CancellationToken) -> Finished {
        let started_at = now_ms();
        // The key's counter part keeps folders of one process apart; the
        // writer part keeps processes apart.
        let slug = self.key.replace('.', "-");
        let dir = self.work_dir.join(format!("{}-{slug}", self.id.short()));
        let stdout_path = self
            .work_dir
            .join(format!("{}-{slug}.stdout", self.id.short()));
        let stderr_path = self
            .work_dir
            .join(format!("{}-{slug}.stderr", self.id.short()));
        let mut attempt = blank_attempt(&self.key, &self.device, &self.provenance, started_at);
        // A stored spec need not have come through `submit`'s checks (a
        // member can write any document): one that breaks a limit is an
        // `error` attempt, and nothing of it is run or written to disk.
        let mut cmd = match task_command(
            &self.spec,
            &self.id,
            &self.key,
            &self.device,
            (&dir, &stdout_path, &stderr_path),
        ) {
            Ok(cmd) => cmd,
            Err(e) => {
                attempt.message = Some(format!("this task cannot be run: {e:#}"));
                attempt.ended_at = now_ms();
                return (self.id, self.key, attempt, None);
            }
        };
        let prepared = prepare(
            &self.vault,
            &self.fetcher,
            &dir,
            &self.spec,
            &self.need_inputs,
            &stop,
        )
        .await;
        let unprepared = match prepared {
            Ok(Prepared::Ready) => None,
            Ok(Prepared::Stopped) => Some((
                Outcome::Interrupted,
                "stopped while fetching the inputs".to_owned(),
            )),
            // This machine cannot make the working folder (no space, no
            // descriptors, …): not the task's failure.
            Err(e) if e.is::<WorkDirError>() || local_fault(&e).is_some() => {
                let _ = std::fs::remove_dir_all(&dir);
                let fault = local_fault(&e).unwrap_or_else(|| LocalFault(format!("{e:#}")));
                return (self.id, self.key, attempt, Some(fault));
            }
            // An input that cannot be had (missing blob, failed download,
            // wrong hash) is not the command failing: the attempt is an
            // `error`, not `failed`.
            Err(e) => Some((Outcome::Error, format!("{e:#}"))),
        };
        if let Some((outcome, message)) = unprepared {
            attempt.outcome = outcome;
            attempt.message = Some(message);
            attempt.ended_at = now_ms();
            let _ = std::fs::remove_dir_all(&dir);
            return (self.id, self.key, attempt, None);
        }
        // The task's own TMPDIR, next to its working folder (so output
        // globs never see it): the sandbox closes the worker's /tmp (with
        // namespaces this folder is mounted over /tmp), and tasks should not
        // see each other's temporary files.
        let tmp = TaskTmp(
            self.work_dir
                .join(format!("{}-{slug}.tmp", self.id.short())),
        );
        if let Err(e) = std::fs::create_dir(&tmp.0) {
            let _ = std::fs::remove_dir_all(&dir);
            let fault = LocalFault(format!(
                "cannot create the temporary folder {}: {e}",
                tmp.0.display()
            ));
            return (self.id, self.key, attempt, Some(fault));
        }
        if let Some(path) = tmp.0.to_str() {
            cmd.env
                .entry("TMPDIR".to_owned())
                .or_insert_with(|| path.to_owned());
        }
        // The task's sandbox: the worker's fixed allow-list and its TMPDIR
        // (its folder and logs are added by `bridge_exec`).
        cmd.supervisor = self.supervisor.clone().map(|mut s| {
            s.confinement = self.sandbox.confinement(&self.spec, &tmp.0);
            s
        });
        let finished = bridge_exec::run(&cmd, stop).await;
        attempt.ended_at = now_ms();
        attempt.stdout_tail = String::from_utf8_lossy(&finished.stdout_tail).into_owned();
        attempt.stderr_tail = String::from_utf8_lossy(&finished.stderr_tail).into_owned();
        attempt.outcome = match finished.outcome {
            bridge_exec::Outcome::Exited(0) => Outcome::Success,
            bridge_exec::Outcome::Exited(c) => {
                attempt.exit_code = Some(i64::from(c));
                Outcome::Failed
            }
            bridge_exec::Outcome::Signaled(s) => {
                attempt.signal = Some(i64::from(s));
                Outcome::Failed
            }
            bridge_exec::Outcome::TimedOut => Outcome::TimedOut,
            bridge_exec::Outcome::Interrupted => Outcome::Interrupted,
            bridge_exec::Outcome::FailedToStart(m) => {
                // Its log files could not be created, or no process could
                // be made for lack of descriptors or memory.
                if let Some(fault) = local_fault_in_message(&m) {
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = std::fs::remove_file(&stdout_path);
                    let _ = std::fs::remove_file(&stderr_path);
                    return (self.id, self.key, attempt, Some(fault));
                }
                attempt.message = Some(m);
                Outcome::Error
            }
        };
        if attempt.outcome == Outcome::Success {
            attempt.exit_code = Some(0);
        }
        // Keeping logs and outputs writes files: do it off the async threads
        // only when there is something to keep.
        let needs_io =
            finished.stdout_len > 0 || finished.stderr_len > 0 || !self.spec.outputs.is_empty();
        if needs_io {
            let vault = self.vault.clone();
            let spec = self.spec.clone();
            let (lens, paths) = (
                (finished.stdout_len, finished.stderr_len),
                (stdout_path.clone(), stderr_path.clone()),
            );
            let dir2 = dir.clone();
            let placement = self.placement.clone();
            let kept = tokio::task::spawn_blocking(move || {
                keep(&vault, &dir2, &spec, lens, &paths, &placement)
            })
            .await;
            match kept {
                Ok(Ok(k)) => {
                    attempt.stdout_blob = k.stdout;
                    attempt.stderr_blob = k.stderr;
                    attempt.outputs = k.outputs;
                    if let Some(w) = k.warning {
                        attempt.message.get_or_insert(w);
                    }
                }
                Ok(Err(e)) if local_fault(&e).is_some() => {
                    // The logs or outputs could not be stored for lack of
                    // space: the task ran, but this machine lost its
                    // result; another worker runs it again.
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = std::fs::remove_file(&stdout_path);
                    let _ = std::fs::remove_file(&stderr_path);
                    return (self.id, self.key, attempt, local_fault(&e));
                }
                Ok(Err(e)) => {
                    // A result whose outputs could not be kept is not a result.
                    if attempt.outcome == Outcome::Success {
                        attempt.outcome = Outcome::Error;
                    }
                    attempt.message = Some(format!("{e:#}"));
                }
                Err(e) => {
                    attempt.outcome = Outcome::Error;
                    attempt.message = Some(format!("keeping the outputs crashed: {e}"));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&stdout_path);
        let _ = std::fs::remove_file(&stderr_path);
        drop(tmp);
        // A command that failed on a disk with no space left has most
        // likely failed for lack of it (its logs or files could not be
        // written): the machine's fault, unless the task filled the disk
        // itself, in which case removing its folders (above: the working
        // folder and its TMPDIR) freed space.
        // The same for an `error` (the task's supervisor could not even
        // write down how the task ended).
        if matches!(attempt.outcome, Outcome::Failed | Outcome::Error)
            && let Some(fault) = work_dir_full(&self.work_dir)
        {
            return (self.id, self.key, attempt, Some(fault));
        }
        (self.id, self.key, attempt, None)
    }
}

/// Every check a spec must pass to be run: the model's limits and output
/// globs that compile. `submit` refuses what fails it, and a worker records
/// an `error` attempt for a stored spec that fails it: one function, so the
/// two can never disagree.
pub fn check_runnable(spec: &TaskSpec) -> anyhow::Result<()> {
    spec.check()?;
    bridge_exec::check_output_globs(&spec.outputs)?;
    Ok(())
}

/// A task's temporary folder (its `TMPDIR`), removed when the attempt
/// ends, whichever way it ends.
struct TaskTmp(PathBuf);

impl Drop for TaskTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The process a stored task runs as, once its spec is checked against
/// every limit (issue 12, item 10): the one place a spec becomes a command,
/// so that no stored spec can make the worker panic further on. `paths` are
/// the working folder and the two log files.
fn task_command(
    spec: &TaskSpec,
    id: &TaskId,
    key: &str,
    device: &str,
    paths: (&Path, &Path, &Path),
) -> anyhow::Result<TaskCommand> {
    check_runnable(spec)?;
    let (workdir, stdout_path, stderr_path) = paths;
    Ok(TaskCommand {
        program: match &spec.command {
            Command::Shell { shell, script } => Program::Shell {
                shell: shell.clone(),
                script: script.clone(),
            },
            Command::Argv(argv) => Program::Argv(argv.clone()),
        },
        env: task_env(spec, id, key, device),
        workdir: workdir.to_path_buf(),
        timeout: Duration::from_secs(spec.timeout_s),
        stdout_path: stdout_path.to_path_buf(),
        stderr_path: stderr_path.to_path_buf(),
        tail_bytes: TAIL_BYTES,
        kill_grace: KILL_GRACE,
        supervisor: None,
    })
}

/// An attempt that has not run yet: an `error` until something better is
/// known.
fn blank_attempt(
    key: &str,
    device: &str,
    extra_provenance: &BTreeMap<String, String>,
    started_at: Millis,
) -> Attempt {
    Attempt {
        key: key.to_owned(),
        device: device.to_owned(),
        started_at,
        ended_at: started_at,
        outcome: Outcome::Error,
        exit_code: None,
        signal: None,
        message: None,
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        stdout_blob: None,
        stderr_blob: None,
        outputs: BTreeMap::new(),
        provenance: {
            let mut p = provenance(device);
            p.extend(extra_provenance.clone());
            p
        },
    }
}

/// What a crashed job said, for its attempt's message.
fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Whether the file system holding `dir` has no space (or no inode) left
/// for an unprivileged writer.
fn work_dir_full(dir: &Path) -> Option<LocalFault> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    // Some file systems (btrfs) report no inode counts at all.
    let no_inodes = st.files() > 0 && st.files_available() == 0;
    (st.blocks_available() == 0 || no_inodes).then(|| {
        LocalFault(format!(
            "a task failed with no space left on the file system of {} (No space left on device)",
            dir.display()
        ))
    })
}

/// The working folder of a task could not be created: this machine's
/// fault whatever the cause (see [`LocalFault`]).
#[derive(Debug, thiserror::Error)]
#[error("cannot create the working folder {}", path.display())]
struct WorkDirError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The outputs of the canonical results of the tasks `spec` needs, as inputs
/// under `needs/<task name>/` (the name with every character other than
/// letters, digits, `.`, `_` and `-` replaced by `_`).
fn need_inputs(view: &View, spec: &TaskSpec) -> Vec<InputRef> {
    let mut out = Vec::new();
    for need in &spec.needs {
        let Some(t) = view.get(need) else { continue };
        let Some(result) = canonical_result(&t.facts) else {
            continue;
        };
        let dir = safe_name(&t.spec.name);
        for (rel, blob) in &result.outputs {
            // Outputs are checked by their store file; needs are part of
            // the identity by task id, not by content.
            out.push(InputRef::from_blob(
                format!("needs/{dir}/{rel}"),
                String::new(),
                blob.clone(),
            ));
        }
    }
    out
}

/// A task name made safe as one folder name.
pub fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_".to_owned(),
        _ => s,
    }
}

/// Whether a task's working folder is ready.
enum Prepared {
    /// Every input is in place.
    Ready,
    /// The worker is stopping: the task did not start.
    Stopped,
}

/// Creates the working folder and materialises the inputs: blobs of the
/// store first (local, quick, and a missing one fails before any download),
/// then URL inputs through the fetcher, all at once, until `stop`.
async fn prepare(
    vault: &Arc<Vault>,
    fetcher: &Arc<Fetcher>,
    dir: &Path,
    spec: &TaskSpec,
    need_inputs: &[InputRef],
    stop: &CancellationToken,
) -> anyhow::Result<Prepared> {
    if spec.inputs.is_empty() && need_inputs.is_empty() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| WorkDirError {
                path: dir.to_path_buf(),
                source,
            })?;
        return Ok(Prepared::Ready);
    }
    let mut blobs: Vec<(String, BlobId, String)> = Vec::new();
    let mut urls: Vec<(String, String, String)> = Vec::new();
    for input in spec.inputs.iter().chain(need_inputs) {
        if input.path.split('/').any(|c| c == ".." || c.is_empty()) {
            anyhow::bail!("input path `{}` is not a safe relative path", input.path);
        }
        match input.source()? {
            InputSource::Blob(blob) => {
                let blob: BlobId = blob
                    .parse()
                    .map_err(|_| anyhow::anyhow!("input {} names an invalid blob", input.path))?;
                blobs.push((input.path.clone(), blob, input.sha256.clone()));
            }
            InputSource::Url(url) => {
                urls.push((input.path.clone(), url.to_owned(), input.sha256.clone()));
            }
        }
    }
    let vault = vault.clone();
    let root = dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        std::fs::create_dir_all(&root).map_err(|source| WorkDirError {
            path: root.clone(),
            source,
        })?;
        for (path, blob, sha256) in &blobs {
            vault
                .copy_blob_to(blob, &root.join(path), Some(sha256))
                .with_context(|| {
                    format!("cannot materialise input {path} (`bridge sync` fetches missing ones)")
                })?;
        }
        Ok(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("materialising inputs crashed: {e}"))??;
    if urls.is_empty() {
        return Ok(Prepared::Ready);
    }
    let mut fetches = JoinSet::new();
    for (path, url, sha256) in urls {
        let (fetcher, dest) = (fetcher.clone(), dir.join(&path));
        fetches.spawn(async move {
            fetcher
                .materialise(&url, &sha256, &dest)
                .await
                .with_context(|| format!("cannot fetch input {path}"))
        });
    }
    loop {
        tokio::select! {
            next = fetches.join_next() => match next {
                None => return Ok(Prepared::Ready),
                Some(Ok(Ok(()))) => {}
                // Dropping the set aborts the other downloads.
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => anyhow::bail!("fetching inputs crashed: {e}"),
            },
            _ = stop.cancelled() => return Ok(Prepared::Stopped),
        }
    }
}

struct Kept {
    stdout: Option<String>,
    stderr: Option<String>,
    outputs: BTreeMap<String, String>,
    warning: Option<String>,
}

/// Stores the logs and the declared outputs as blobs.
fn keep(
    vault: &Vault,
    dir: &Path,
    spec: &TaskSpec,
    lens: (u64, u64),
    paths: &(PathBuf, PathBuf),
    placement: &Placement,
) -> anyhow::Result<Kept> {
    let blob = |len: u64, path: &Path| -> anyhow::Result<Option<String>> {
        if len == 0 {
            return Ok(None);
        }
        let (_, id) = vault
            .put_blob_file(path, placement)
            .with_context(|| format!("cannot store the log {}", path.display()))?;
        Ok(Some(id.as_str().to_owned()))
    };
    let stdout = blob(lens.0, &paths.0)?;
    let stderr = blob(lens.1, &paths.1)?;
    let mut outputs = BTreeMap::new();
    let mut warning = None;
    if !spec.outputs.is_empty() {
        let found = bridge_exec::collect_outputs(dir, &spec.outputs)
            .context("cannot collect the outputs")?;
        if found.is_empty() {
            warning = Some(format!(
                "no file matched the outputs {}",
                spec.outputs.join(", ")
            ));
        }
        for o in found {
            let (_, id) = vault
                .put_blob_file(&o.path, placement)
                .with_context(|| format!("cannot store the output {}", o.rel_path))?;
            outputs.insert(o.rel_path, id.as_str().to_owned());
        }
    }
    Ok(Kept {
        stdout,
        stderr,
        outputs,
        warning,
    })
}

/// How this worker starts tasks: on Linux, each under a supervisor (this
/// executable again, see `bridge_exec::supervisor`) that kills every
/// process the task leaves behind (issue 12), and the sandbox it runs in
/// (issue 13, see [`crate::sandbox`]), resolved once per worker. Fails when
/// `[worker] sandbox = "required"` and the system cannot sandbox tasks.
fn task_supervisor(
    ws: &crate::workspace::Workspace,
    runner: bool,
) -> CliResult<(Option<bridge_exec::Supervisor>, Arc<Sandbox>)> {
    let program = if cfg!(target_os = "linux") {
        // The running executable even if its file was replaced since (an
        // upgrade while a worker runs); its path where /proc is missing.
        Some(PathBuf::from("/proc/self/exe"))
            .filter(|p| p.exists())
            .or_else(|| std::env::current_exe().ok())
    } else {
        None
    };
    // What no read-only grant may open (see `crate::sandbox`).
    let mut protected = vec![ws.root.join(crate::workspace::STATE_DIR)];
    if let Ok(config) = crate::keys::config_dir() {
        protected.push(config);
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        protected.push(PathBuf::from(home).join(".ssh"));
    }
    let policy = ws.worker_policy(runner);
    if !policy.shared_ignored.is_empty() {
        tracing::warn!(
            "{} sets [worker] {}, which applies to runners only: this device takes what it lends from {}/{} (its own settings, never shared)",
            crate::workspace::CONFIG_FILE,
            policy.shared_ignored.join(", "),
            crate::workspace::STATE_DIR,
            crate::workspace::DEVICE_CONFIG_FILE,
        );
    }
    let sandbox = Sandbox::resolve(
        policy.sandbox.as_deref(),
        &policy.allow_read,
        &protected,
        program.as_deref(),
    )?;
    let supervisor = program.map(|program| bridge_exec::Supervisor {
        program,
        confinement: None,
    });
    Ok((supervisor, Arc::new(sandbox)))
}

/// The environment of a task: a few variables of the worker's own (never its
/// secrets), bridge's, then the task's.
fn task_env(spec: &TaskSpec, id: &TaskId, key: &str, device: &str) -> BTreeMap<String, String> {
    const PASS: &[&str] = &[
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ",
        "SHELL",
    ];
    let mut env: BTreeMap<String, String> = PASS
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    env.insert("BRIDGE_TASK_ID".into(), id.to_string());
    env.insert("BRIDGE_TASK_NAME".into(), spec.name.clone());
    env.insert("BRIDGE_ATTEMPT".into(), key.to_owned());
    env.insert("BRIDGE_DEVICE".into(), device.to_owned());
    for (k, v) in &spec.env {
        env.insert(k.clone(), v.clone());
    }
    env
}

fn provenance(device: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("device".to_owned(), device.to_owned()),
        ("os".to_owned(), std::env::consts::OS.to_owned()),
        ("arch".to_owned(), std::env::consts::ARCH.to_owned()),
        ("bridge".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use bridge_model::InputRef;
    use proptest::prelude::*;

    use super::*;

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
                env,
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
            let Ok(cmd) = task_command(&spec, &id, "w.1", "device", (&dir, &out, &err)) else {
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
        let e = task_command(&spec, &spec.id(), "w.1", "d", (p, p, p))
            .map(|_| ())
            .expect_err("refused");
        assert!(e.to_string().contains("`timeout`"), "{e}");
        spec.timeout_s = 5;
        assert!(task_command(&spec, &spec.id(), "w.1", "d", (p, p, p)).is_ok());
    }
}

#[cfg(test)]
mod local_fault_tests {
    use super::*;

    #[test]
    fn the_machines_errors_are_told_from_the_tasks() {
        for errno in [
            nix::errno::Errno::ENOSPC,
            nix::errno::Errno::EMFILE,
            nix::errno::Errno::ENFILE,
        ] {
            let io = std::io::Error::from_raw_os_error(errno as i32);
            // As the task runner reports it: the OS error as text.
            let message = format!("could not start `sh`: {io}");
            assert!(local_fault_in_message(&message).is_some(), "{message}");
            // As an error chain of our own.
            let e = anyhow::Error::new(io).context("cannot store the log /x");
            assert!(local_fault(&e).is_some(), "{e:#}");
        }
        let missing = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOENT as i32);
        assert!(local_fault_in_message(&format!("could not start `nope`: {missing}")).is_none());
        // A program named like a full disk is still the task's failure.
        let hostile = format!("could not start `x (os error 28)`: {missing}");
        assert!(local_fault_in_message(&hostile).is_none(), "{hostile}");
        assert!(local_fault(&anyhow::Error::new(missing)).is_none());
    }
}
