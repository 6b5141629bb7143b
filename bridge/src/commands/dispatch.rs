//! `bridge dispatch`: start GitHub Actions runners for the pending work, and
//! optionally watch the pool drain.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bridge_github::{DispatchDetails, DispatchPlan, Job, Month, WorkflowRun};
use bridge_model::{Millis, Status, TaskId};
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::common::{SyncOutcome, open_session, sync_remote};
use crate::error::{
    CliError, CliResult, EXIT_OFFLINE, EXIT_OK, EXIT_RUN_UNFINISHED, EXIT_TASK_FAILED, HintExt,
};
use crate::github::{self, ApiError, Client};
use crate::output::print_json;
use crate::workspace::{Session, now_ms};

/// Start GitHub Actions runners for the pending work
///
/// Syncs first (runners only see what the store has), sizes the run from
/// the pending work, checks the month's minutes budget, then starts the
/// workflow of [github] in bridge.toml (`workflow_dispatch`) with the inputs
/// runners and budget, and prints the run.
///
/// --runners auto (the default) starts as many runners as the pending work
/// needs to fit in their --budget: the work is estimated from each task's
/// longest earlier attempt, else its timeout, and the count is capped by the
/// number of pending tasks and by [github] max-runners (the plan's
/// concurrency: Free 20, Pro 40, Team 60). It refuses to start runners when
/// this month's minutes (`bridge usage`) plus the estimate would pass
/// [github] minutes-budget, unless --force.
///
/// It refuses, too, while runners of an earlier run of the workflow are
/// still queued or running (they drain the same pool: more would mostly
/// bill minutes), naming those runs, unless --force; `bridge watch RUN`
/// follows one.
///
/// --watch then shows tasks done / failed / left and the runners' states
/// until the pool drains, and says how to get the outputs. Its exit code
/// says how it ended (as `gh run watch --exit-status`): 0 the pool drained
/// and no watched task failed, 3 a watched task failed, 6 the run ended
/// with tasks left, or failed or was cancelled; `bridge watch` attaches to
/// a run again later.
///
/// A workflow GitHub disabled for inactivity (a public repository's
/// scheduled workflows stop after 60 days without activity) is enabled
/// again first, and said so; one a person disabled is left alone: dispatch
/// refuses and says how to enable it.
///
/// The workflow runs on [github] ref in bridge.toml, else the repository's
/// default branch (read from the API). The token comes from GH_TOKEN, else
/// GITHUB_TOKEN, else `gh auth token`; it needs Actions: read and write and
/// Metadata: read on the repository.
#[derive(Debug, Args)]
pub struct DispatchArgs {
    /// How many runners: a number, or auto (sized from the pending work)
    #[arg(long, value_name = "N|auto", default_value = "auto")]
    pub runners: String,
    /// Each runner's wall-clock budget (the workflow's `budget` input)
    #[arg(long, value_name = "DURATION", default_value = "45m")]
    pub budget: String,
    /// Another input of the workflow, e.g. runs-on=self-hosted (repeatable)
    #[arg(long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// Start the runners even past the month's minutes budget, or while
    /// runners of an earlier run are still queued or running
    #[arg(long)]
    pub force: bool,
    /// Show progress until the pool drains
    #[arg(long)]
    pub watch: bool,
    /// With --watch, how often to look
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub interval: String,
    /// With --watch, run this shell command (sh -c) when watching ends;
    /// its environment says how: BRIDGE_EVENT=watch-done, BRIDGE_STATUS
    /// (done, failed or incomplete), BRIDGE_DONE, BRIDGE_FAILED,
    /// BRIDGE_LEFT, BRIDGE_RUN_ID, BRIDGE_RUN_URL
    #[arg(long, value_name = "CMD", requires = "watch")]
    pub then: Option<String>,
    /// With --watch, show a desktop notification when watching ends (and
    /// for each batch that finishes meanwhile)
    #[arg(long, requires = "watch")]
    pub notify: bool,
    /// Print {"dispatched", "run_id", "run_url", "html_url", "runners", "budget",
    /// "pending_tasks", "estimated_minutes", …} as JSON (with --watch:
    /// {"run_id", "done", "failed", "left", …, "exit_reason"})
    #[arg(long)]
    pub json: bool,
}

/// What the pool holds for runners.
#[derive(Debug, Default)]
struct PendingWork {
    /// Tasks a runner may still run (pending or blocked).
    tasks: u64,
    /// Their estimated seconds.
    seconds: u64,
    /// How many were estimated from their timeout (never attempted).
    from_timeout: u64,
}

#[expect(
    clippy::too_many_lines,
    reason = "a command's steps in order; the ratchet (clippy.toml) stops it growing"
)]
pub fn run(g: &GlobalArgs, args: DispatchArgs) -> CliResult<u8> {
    let budget = humantime::parse_duration(&args.budget)
        .with_context(|| format!("--budget {} is not a duration", args.budget))
        .hint("write e.g. 45m or 1h30m")?;
    let budget = crate::error::check_budget(budget, &args.budget)?;
    let interval = humantime::parse_duration(&args.interval)
        .with_context(|| format!("--interval {} is not a duration", args.interval))
        .hint("write e.g. 10s or 1m")?;
    let extra_inputs = parse_inputs(&args.inputs)?;
    let mut session = open_session(g)?;
    let (section, repo) = github::configured(&session.ws, &g.settings)?;

    // Runners see only what the store has: sync first, and refuse when the
    // store is out of reach (they would find nothing of what is here).
    match sync_remote(&mut session, !g.quiet && !args.json)? {
        SyncOutcome::Synced(_) => {}
        SyncOutcome::NoRemote => {
            return Err(CliError::hint(
                anyhow!("this workspace has no store that runners could drain"),
                format!(
                    "set remote = \"{}\" under [store] in bridge.toml",
                    repo.git_remote()
                ),
            ));
        }
        SyncOutcome::Offline(why) => {
            return Err(CliError::hint(
                anyhow!("cannot sync before dispatching: {why}"),
                "runners would not see the tasks submitted here; run `bridge dispatch` again once the store is reachable",
            )
            .with_code(EXIT_OFFLINE));
        }
    }
    let work = pending_work(&session);
    let runners = match args.runners.trim() {
        "auto" => {
            if work.tasks == 0 {
                if args.json {
                    print_json(&json!({"dispatched": false, "pending_tasks": 0}))?;
                } else if !g.quiet {
                    outln!(
                        "Nothing pending in the pool: no runners started (pass --runners N to start some anyway)."
                    );
                }
                return Ok(EXIT_OK);
            }
            bridge_github::auto_runners(
                work.seconds,
                budget.as_secs(),
                work.tasks,
                section.max_runners(),
            )
        }
        n => n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or_else(|| {
                CliError::hint(
                    anyhow!("--runners {n} is not a number from 1 to 256, nor auto"),
                    "a workflow's matrix holds at most 256 jobs",
                )
            })?,
    };
    let estimate = bridge_github::estimate_minutes(work.seconds, runners, budget.as_secs());

    let gh = github::connect(&g.settings, &repo)?;
    let workflow = section.workflow().to_owned();
    let git_ref = github::git_ref(&section, &gh)?;
    refuse_while_runners_run(&gh, &workflow, args.force)?;
    let month = Month::of(std::time::SystemTime::now());
    if let Some(limit) = section.minutes_budget {
        let used: u64 = gh
            .month_usage(&workflow, month, now_ms())
            .map_err(|e| ApiError::new(e, gh.token_source))?
            .iter()
            .map(|r| r.minutes)
            .sum();
        if used + estimate > limit {
            let msg = format!(
                "{runners} runner(s) would take about {estimate} minutes; bridge's runs used {used} of the {limit} minutes budgeted for {month}"
            );
            if !args.force {
                return Err(CliError::hint(
                    anyhow!("not dispatching: {msg}"),
                    "pass --force to start them anyway, lower --runners or --budget, or raise minutes-budget under [github] in bridge.toml",
                ));
            }
            errln!("warning: {msg}; going on (--force)");
        }
    }

    // GitHub disables a public repository's scheduled workflows after 60
    // days without activity, and a disabled workflow cannot be dispatched
    // either: dispatch must never depend on that, so it enables a workflow
    // GitHub disabled, but never one a person disabled.
    let reenabled = ensure_enabled(&gh, &workflow, g.quiet)?;

    let mut inputs = BTreeMap::new();
    inputs.insert("runners".to_owned(), runners.to_string());
    inputs.insert("budget".to_owned(), args.budget.replace(' ', ""));
    inputs.extend(extra_inputs);
    // Runs are matched to the dispatch by creation time: allow for clocks
    // that disagree a little.
    let dispatched_at = now_ms() - 5_000;
    let details = gh
        .dispatch(&workflow, &git_ref, &inputs)
        .map_err(|e| ApiError::new(e, gh.token_source))?;
    let (run_id, html_url, run_url) = match details {
        Some(DispatchDetails {
            workflow_run_id,
            run_url,
            html_url,
        }) => (Some(workflow_run_id), html_url, run_url),
        None => match find_run(&gh, &workflow, dispatched_at, interval) {
            Some(run) => (Some(run.id), run.html_url, run.url),
            None => (
                None,
                format!("{}/actions/workflows/{workflow}", repo.html_url()),
                String::new(),
            ),
        },
    };

    if args.json && !args.watch {
        print_json(&json!({
            "dispatched": true,
            "repository": repo.to_string(),
            "workflow": workflow,
            "ref": git_ref,
            "run_id": run_id,
            "run_url": run_url,
            "html_url": html_url,
            "runners": runners,
            "budget": args.budget,
            "pending_tasks": work.tasks,
            "estimated_minutes": estimate,
            "workflow_reenabled": reenabled,
        }))?;
        return Ok(EXIT_OK);
    }
    if !g.quiet && !args.json {
        outln!(
            "Started {workflow} on {git_ref} of {repo}: {runners} runner(s) × {} for {} pending task(s), about {estimate} runner minutes{}.",
            args.budget,
            work.tasks,
            if work.from_timeout > 0 {
                format!(
                    " ({} never ran: estimated from their timeouts)",
                    work.from_timeout
                )
            } else {
                String::new()
            }
        );
        match run_id {
            Some(id) => outln!("Run {id}: {html_url}"),
            None => outln!(
                "GitHub did not say which run it started, and none showed up yet: see {html_url}"
            ),
        }
    }
    if !args.watch {
        if !g.quiet && !args.json {
            outln!(
                "Follow it with `bridge status` (after `bridge sync`), or dispatch with --watch."
            );
        }
        return Ok(EXIT_OK);
    }
    let notifier = crate::notify::Notifier::new(&session.ws, args.then.clone(), args.notify);
    watch(
        g,
        &mut session,
        &gh,
        (run_id, &notifier),
        interval,
        args.json,
    )
}

/// Reads the workflow's state before a dispatch: enables it again when
/// GitHub disabled it for inactivity (and says so in one line on stderr),
/// refuses when a person disabled it, it is a fork's, or it was deleted.
/// Whether it enabled the workflow.
fn ensure_enabled(gh: &Client, workflow: &str, quiet: bool) -> CliResult<bool> {
    let api = |e| ApiError::new(e, gh.token_source);
    let state = gh.workflow(workflow).map_err(api)?.state;
    let repo = gh.repo().to_string();
    match bridge_github::plan_dispatch(&repo, workflow, &state)? {
        DispatchPlan::Dispatch => Ok(false),
        DispatchPlan::EnableThenDispatch => {
            gh.enable_workflow(workflow).map_err(api)?;
            if !quiet {
                errln!(
                    "GitHub had disabled workflow {workflow} of {repo} after 60 days without repository activity; enabled it again."
                );
            }
            Ok(true)
        }
    }
}

/// `--input KEY=VALUE` pairs.
fn parse_inputs(raw: &[String]) -> CliResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in raw {
        let (k, v) = item
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| {
                CliError::hint(
                    anyhow!("--input {item} is not KEY=VALUE"),
                    "write e.g. --input runs-on=self-hosted",
                )
            })?;
        if matches!(k.trim(), "runners" | "budget") {
            return Err(CliError::hint(
                anyhow!("--input {k}=… is set by --{k}"),
                format!("use --{k}"),
            ));
        }
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(out)
}

/// Counts the work runners may still do, and estimates its seconds: a task
/// that ran before takes as long as its longest attempt, one that never ran
/// its timeout. Tasks the runners would leave (their submitter is not in
/// the runners' `run-tasks-from`, issue 13 item 2) are not counted:
/// starting runners for them would only spend minutes.
fn pending_work(session: &Session) -> PendingWork {
    let derived = session.view().derive(now_ms(), session.policy);
    let runners = session.runner_task_policy();
    let mut work = PendingWork::default();
    for t in session.view().tasks() {
        let Some(d) = derived.get(&t.id) else {
            continue;
        };
        if !matches!(d.status, Status::Pending | Status::Blocked) {
            continue;
        }
        if runners.as_ref().is_some_and(|p| p.refusal(t).is_some()) {
            continue;
        }
        work.tasks += 1;
        let longest = t
            .facts
            .attempts
            .values()
            .map(|a| a.ended_at.saturating_sub(a.started_at).max(0) as u64)
            .max();
        match longest {
            Some(ms) => {
                work.seconds = work
                    .seconds
                    .saturating_add(ms.div_ceil(1000).min(t.spec.timeout_s))
            }
            None => {
                work.seconds = work.seconds.saturating_add(t.spec.timeout_s);
                work.from_timeout += 1;
            }
        }
    }
    work
}

/// After a dispatch that did not return the run (204): looks for it among
/// the workflow's recent `workflow_dispatch` runs, a few times.
fn find_run(gh: &Client, workflow: &str, since: Millis, interval: Duration) -> Option<WorkflowRun> {
    let pause = interval.min(Duration::from_secs(2));
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(pause);
        }
        match gh.list_runs(workflow, Some("workflow_dispatch"), 20, 1) {
            Ok(page) => {
                if let Some(run) = bridge_github::pick_dispatched_run(&page.workflow_runs, since) {
                    return Some(run.clone());
                }
            }
            Err(e) => {
                tracing::warn!("{e}");
                return None;
            }
        }
    }
    None
}

/// Counts of the watched tasks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Progress {
    done: u64,
    failed: u64,
    cancelled: u64,
    /// Not work left: a task they need failed for good (or was cancelled).
    skipped: u64,
    left: u64,
}

impl Progress {
    fn total(&self) -> u64 {
        self.done + self.failed + self.cancelled + self.skipped + self.left
    }

    fn line(&self) -> String {
        let mut s = format!(
            "{} done · {} failed · {} left",
            self.done, self.failed, self.left
        );
        if self.skipped > 0 {
            s.push_str(&format!(" · {} skipped", self.skipped));
        }
        if self.cancelled > 0 {
            s.push_str(&format!(" · {} cancelled", self.cancelled));
        }
        s
    }
}

/// The watched tasks' counts: every task that was not final when watching
/// began, and every task that appears later.
fn progress(
    session: &Session,
    watched: &mut BTreeSet<TaskId>,
    known: &mut BTreeSet<TaskId>,
) -> Progress {
    let derived = session.view().derive(now_ms(), session.policy);
    let mut p = Progress::default();
    for t in session.view().tasks() {
        let Some(d) = derived.get(&t.id) else {
            continue;
        };
        if known.insert(t.id.clone()) && d.status != Status::Untrusted {
            watched.insert(t.id.clone());
        }
        if !watched.contains(&t.id) {
            continue;
        }
        match d.status {
            Status::Done => p.done += 1,
            Status::Failed => p.failed += 1,
            Status::Cancelled | Status::Untrusted => p.cancelled += 1,
            Status::Skipped => p.skipped += 1,
            Status::Pending | Status::Blocked | Status::Running => p.left += 1,
        }
    }
    p
}

/// The jobs' states, e.g. "2 in_progress, 1 queued".
fn job_states(jobs: &[Job]) -> String {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for j in jobs {
        let state = match (j.status.as_deref(), j.conclusion.as_deref()) {
            (Some("completed"), Some(c)) => c.to_owned(),
            (Some(s), _) => s.to_owned(),
            (None, _) => "unknown".to_owned(),
        };
        *counts.entry(state).or_default() += 1;
    }
    if counts.is_empty() {
        return "none yet".to_owned();
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a watch ended (issue 16, item 6): its exit code and, in JSON, its
/// `exit_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchEnd {
    /// The pool drained, no watched task failed, and the run did not fail.
    Drained,
    /// A watched task failed (exit 3).
    TasksFailed,
    /// The run ended with watched tasks left (exit 6).
    TasksLeft,
    /// The pool drained without a failed task, but the run failed or was
    /// cancelled (exit 6).
    RunFailed,
}

impl WatchEnd {
    /// Tasks left first (work not done), then failed tasks, then the run's
    /// own failure (with `fail-on: task-failure` a failed task fails the
    /// run too: that is a task failure, not another cause).
    fn of(p: &Progress, run: Option<&WorkflowRun>) -> WatchEnd {
        if p.left > 0 {
            WatchEnd::TasksLeft
        } else if p.failed > 0 {
            WatchEnd::TasksFailed
        } else if run.is_some_and(WorkflowRun::failed) {
            WatchEnd::RunFailed
        } else {
            WatchEnd::Drained
        }
    }

    fn reason(self) -> &'static str {
        match self {
            WatchEnd::Drained => "drained",
            WatchEnd::TasksFailed => "tasks_failed",
            WatchEnd::TasksLeft => "tasks_left",
            WatchEnd::RunFailed => "run_failed",
        }
    }

    fn code(self) -> u8 {
        match self {
            WatchEnd::Drained => EXIT_OK,
            WatchEnd::TasksFailed => EXIT_TASK_FAILED,
            WatchEnd::TasksLeft | WatchEnd::RunFailed => EXIT_RUN_UNFINISHED,
        }
    }
}

/// The tasks a watch follows: those not final when it begins, and those a
/// runner of `run_id` attempted already (when attaching to a run again,
/// the tasks it finished are its work too).
fn watched_at_start(session: &Session, run_id: Option<u64>) -> BTreeSet<TaskId> {
    let derived = session.view().derive(now_ms(), session.policy);
    let run = run_id.map(|id| id.to_string());
    session
        .view()
        .tasks()
        .filter(|t| {
            derived.get(&t.id).is_some_and(|d| !d.status.is_final())
                || run.as_ref().is_some_and(|run| {
                    t.facts
                        .attempts
                        .values()
                        .any(|a| a.provenance.get("ci_run_id") == Some(run))
                })
        })
        .map(|t| t.id.clone())
        .collect()
}

/// `--then` and `--notify` when watching ends (issue 17, item 7).
fn announce_end(
    notifier: &crate::notify::Notifier,
    p: &Progress,
    drained: bool,
    run_id: Option<u64>,
    run: Option<&WorkflowRun>,
) {
    let status = match (drained, p.failed + p.skipped) {
        (true, 0) => "done",
        (true, _) => "failed",
        (false, _) => "incomplete",
    };
    crate::notify::on_watch_done(
        notifier,
        &crate::notify::WatchDone {
            what: "dispatch".to_owned(),
            status: status.to_owned(),
            run_id,
            run_url: run.map(|r| r.html_url.clone()),
            done: p.done,
            failed: p.failed,
            left: p.left,
        },
    );
}

/// `--watch` and `bridge watch`: polls the run, its jobs and the store
/// until the pool drains or the run ends; the exit code says how
/// ([`WatchEnd`]).
#[expect(
    clippy::too_many_lines,
    reason = "a command's steps in order; the ratchet (clippy.toml) stops it growing"
)]
pub(super) fn watch(
    g: &GlobalArgs,
    session: &mut Session,
    gh: &Client,
    (run_id, notifier): (Option<u64>, &crate::notify::Notifier),
    interval: Duration,
    json: bool,
) -> CliResult<u8> {
    let started = Instant::now();
    // Tasks already final when watching begins are not this run's work
    // (unless a runner of this run did them).
    let mut known: BTreeSet<TaskId> = session.view().tasks().map(|t| t.id.clone()).collect();
    let mut watched = watched_at_start(session, run_id);
    let tty = crate::output::surroundings().live_stderr;
    let bar = (tty && !g.quiet && !json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let mut last_line = String::new();
    let mut drained_polls = 0;
    let mut run_state: Option<WorkflowRun> = None;
    let mut first = true;
    let outcome = loop {
        if !first {
            std::thread::sleep(interval);
        }
        first = false;
        // The run and its jobs; a failing poll is reported and retried.
        let mut jobs_text = String::new();
        if let Some(id) = run_id {
            match gh.run(id) {
                Ok(run) => run_state = Some(run),
                Err(e) if matches!(e.status(), Some(401 | 403 | 404)) => {
                    return Err(ApiError::new(e, gh.token_source).into());
                }
                Err(e) => tracing::warn!("{e}"),
            }
            match gh.jobs(id) {
                Ok(jobs) => jobs_text = job_states(&jobs),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let offline = match sync_remote(session, false)? {
            SyncOutcome::Offline(why) => Some(why),
            _ => None,
        };
        crate::notify::check(session, notifier);
        let p = progress(session, &mut watched, &mut known);
        let run_text = run_state.as_ref().map_or_else(
            || "run: unknown".to_owned(),
            |r| {
                format!(
                    "run: {}",
                    r.conclusion
                        .clone()
                        .or_else(|| r.status.clone())
                        .unwrap_or_else(|| "unknown".to_owned())
                )
            },
        );
        let mut msg = format!("{} │ {run_text}", p.line());
        if !jobs_text.is_empty() {
            msg.push_str(&format!(" │ jobs: {jobs_text}"));
        }
        if offline.is_some() {
            msg.push_str(" │ store unreachable");
        }
        if let Some(b) = &bar {
            b.set_length(p.total());
            b.set_position(p.total() - p.left);
            b.set_message(msg.clone());
        } else if !g.quiet && !json && msg != last_line {
            errln!(
                "{} {msg}",
                crate::output::duration(started.elapsed().as_millis() as i64)
            );
        }
        last_line = msg;
        let run_done = run_state.as_ref().is_some_and(WorkflowRun::is_completed);
        if p.left == 0 {
            drained_polls += 1;
            // The runners exit by themselves once the pool is drained; the
            // run's end is awaited a little, not to the last teardown.
            if run_done || run_id.is_none() || drained_polls >= 2 {
                break (p, true);
            }
        } else {
            drained_polls = 0;
            if run_done {
                break (p, false);
            }
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let (p, drained) = outcome;
    let end = WatchEnd::of(&p, run_state.as_ref());
    announce_end(notifier, &p, drained, run_id, run_state.as_ref());
    if json {
        print_json(&json!({
            "run_id": run_id,
            "html_url": run_state.as_ref().map(|r| r.html_url.clone()),
            "run_status": run_state.as_ref().and_then(|r| r.status.clone()),
            "run_conclusion": run_state.as_ref().and_then(|r| r.conclusion.clone()),
            "done": p.done, "failed": p.failed, "cancelled": p.cancelled, "skipped": p.skipped, "left": p.left,
            "drained": drained,
            "exit_reason": end.reason(),
        }))?;
    } else if !g.quiet {
        say_how_it_ended(session, &watched, &p, drained, end);
    }
    Ok(end.code())
}

/// The closing lines of a watch: how it ended and where the outputs are.
fn say_how_it_ended(
    session: &Session,
    watched: &BTreeSet<TaskId>,
    p: &Progress,
    drained: bool,
    end: WatchEnd,
) {
    if drained {
        outln!("The pool is drained: {}.", p.line());
    } else {
        outln!(
            "The run ended with {} task(s) left ({}): run `bridge dispatch` again for the rest.",
            p.left,
            p.line()
        );
    }
    if end == WatchEnd::RunFailed {
        outln!(
            "The run itself failed or was cancelled, though no watched task failed: its page says which job and why."
        );
    }
    // Where the outputs are: name a done task as the example.
    let derived = session.view().derive(now_ms(), session.policy);
    let done: Vec<_> = session
        .view()
        .tasks()
        .filter(|t| watched.contains(&t.id))
        .filter(|t| derived.get(&t.id).is_some_and(|d| d.status == Status::Done))
        .collect();
    let example = done
        .iter()
        .find(|t| !t.spec.outputs.is_empty())
        .or_else(|| done.first())
        .map(|t| {
            // A plain name reads best; anything a shell would mangle, the id.
            let plain = t
                .spec
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if plain && !t.spec.name.is_empty() {
                t.spec.name.clone()
            } else {
                t.id.short().to_owned()
            }
        });
    match example {
        Some(task) => outln!(
            "Outputs are in the store, and this replica has them: `bridge outputs {task} --to results/` copies a task's files; `bridge ls --status done` lists the tasks."
        ),
        None => outln!(
            "Outputs are in the store: `bridge outputs TASK --to DIR` copies a task's files once it is done."
        ),
    }
    if p.failed > 0 {
        outln!(
            "Failed: `bridge ls --status failed`, then `bridge logs TASK` and `bridge retry TASK`."
        );
    }
    if p.skipped > 0 {
        outln!(
            "Skipped: {} task(s) need a task that failed or was cancelled; `bridge ls --status skipped` says which, and retrying that task runs them.",
            p.skipped
        );
    }
}

/// Refuses a dispatch while runners of an earlier run of `workflow` are
/// queued or running, naming the runs (issue 16, item 6); with `force`,
/// says so and goes on.
fn refuse_while_runners_run(gh: &Client, workflow: &str, force: bool) -> CliResult<()> {
    let active = gh
        .active_runs(workflow, now_ms())
        .map_err(|e| ApiError::new(e, gh.token_source))?;
    let Some(newest) = active.first() else {
        return Ok(());
    };
    let list = active
        .iter()
        .map(|r| {
            format!(
                "{} ({}, {})",
                r.id,
                r.status.as_deref().unwrap_or("unknown"),
                r.html_url
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let msg = format!(
        "{} run(s) of workflow {workflow} still queued or running: {list}",
        active.len()
    );
    if force {
        errln!("warning: {msg}; starting more runners anyway (--force)");
        return Ok(());
    }
    Err(CliError::hint(
        anyhow!("not dispatching: {msg}"),
        format!(
            "their runners drain the same pool: follow them with `bridge watch {}`, or pass --force to start more runners anyway",
            newest.id
        ),
    ))
}
