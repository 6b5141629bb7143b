//! `bridge run`: the runner mode. An ephemeral machine (a CI job) syncs the
//! store, runs a bounded batch of tasks, pushes each result as it lands, and
//! exits; on GitHub Actions it speaks the runner's conventions.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, anyhow};
use bridge_model::{Outcome, Status};
use clap::Args;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::GlobalArgs;
use super::common::{open_remote_as, open_session_fetching};
use super::run_log::{
    Annotations, Fatal, Header, Ledger, RemoteUse, Report, Row, TaskCounts, escape_data,
    gitlab_section_end, gitlab_section_start, mark,
};
use crate::budget::{Budget, Pacer, Share};
use crate::error::{
    CliError, CliResult, EXIT_INTERRUPTED, EXIT_OFFLINE, EXIT_OK, EXIT_TASK_FAILED, HintExt,
};
use crate::output::{duration, print_json};
use crate::publish::Publisher;
use crate::worker::{self, Event, WorkOptions, safe_name};
use crate::workspace::{LoadPlan, Session, Workspace, now_ms};

/// Run a bounded batch of tasks on a CI runner, pushing each result, then exit
///
/// Syncs the store (a `git:`, `s3:` or `dir:` remote), claims runnable tasks (first
/// those of this runner's --shard: K runners each get an equal share of
/// every batch, by hashing; others only when it has none), runs them P at a
/// time, pushes results as they land (a few seconds apart), renews the leases
/// of long tasks, and stops claiming when the budget cannot fit another task
/// (its longest earlier attempt, else this run's average, each plus a
/// quarter; a task never timed is tried while a quarter of the budget
/// remains).
/// When the budget is spent, or on SIGINT/SIGTERM, it stops within seconds:
/// running tasks are killed and recorded as interrupted (they become
/// runnable again), waiting claims are released, and everything is pushed.
///
/// The identity comes from BRIDGE_IDENTITY (a worker-role key made by
/// `bridge members add-runner`). It starts with a header (version, store,
/// shard, budget, parallelism, the tasks it sees) and prints a line as each
/// task starts and ends (on stderr; -q: none). With GITHUB_ACTIONS=true the
/// header is a collapsible group, each task's end a group with its output,
/// each failed task an error annotation (at most 9; one more counts the
/// rest), and it writes the step outputs tasks-done, tasks-failed,
/// tasks-left, tasks-left-for-others and error, and a job summary naming
/// the failed tasks and the commands to run next: also when an error stops
/// the run (one annotation with the error and what to do).
/// With GITLAB_CI=true the header and each task's end line (holding its
/// output) are collapsed sections of GitLab's job log.
///
/// A runner claims only tasks whose submitter `[worker] run-tasks-from`
/// accepts: by default (a worker-role key) every member allowed to submit.
///
/// --fail-on says whether a failed task fails the run: `never` (the
/// default: failed tasks are reported, the exit code stays 0) or
/// `task-failure` (exit 3 when a task this runner ran failed, after every
/// result is pushed and the step outputs and job summary are written, so
/// that GitHub marks the job red and mails whoever started the run).
///
/// Exit codes: 0 the run ended normally, 1 an error, 3 a task failed (with
/// --fail-on task-failure), 4 the remote is unreachable, 130 stopped by a
/// signal.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Wall-clock budget of this run, e.g. 45m (the last seconds are kept for pushing)
    #[arg(long, value_name = "DURATION", default_value = "45m")]
    pub budget: String,
    /// Run at most this many tasks
    #[arg(long, value_name = "N")]
    pub max_tasks: Option<usize>,
    /// Tasks run at once (default: the number of CPUs)
    #[arg(long, short = 'j', value_name = "P")]
    pub parallel: Option<usize>,
    /// This runner's shard, as INDEX/COUNT with INDEX from 0 to COUNT-1
    /// (e.g. 2/8), like GitHub's matrix index `strategy.job-index`
    #[arg(long, value_name = "I/K", env = "BRIDGE_SHARD")]
    pub shard: Option<String>,
    /// The remote to drain (default: [store] remote in bridge.toml)
    #[arg(long, value_name = "REMOTE", env = "BRIDGE_REMOTE")]
    pub remote: Option<String>,
    /// The ref this runner writes in a git remote (default: <member>-<shard>)
    #[arg(long, value_name = "NAME")]
    pub slot: Option<String>,
    /// A label of this runner, matched against tasks' runs-on (repeatable)
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Whether a failed task fails the run (exit 3): task-failure, or never
    #[arg(long, value_name = "POLICY", value_enum, default_value = "never")]
    pub fail_on: FailOn,
    /// Print a JSON report at the end
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run_tasks_from: super::work::RunTasksFromArg,
}

/// Whether a failed task fails the run (issue 16, item 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Exit 3 when a task this runner ran failed.
    TaskFailure,
    /// Exit 0 whatever the tasks did (they are reported).
    Never,
}

/// The exit code of a run that ended normally: a signal wins, then the
/// --fail-on policy.
fn run_exit_code(interrupted: bool, fail_on: FailOn, failed: usize) -> u8 {
    if interrupted {
        EXIT_INTERRUPTED
    } else if fail_on == FailOn::TaskFailure && failed > 0 {
        EXIT_TASK_FAILED
    } else {
        EXIT_OK
    }
}

/// Seconds kept at the end of the budget for the final push.
pub(super) const PUSH_MARGIN: Duration = Duration::from_secs(15);
/// Unfinished tasks a runner loads before it starts (more documents are
/// loaded when these run out).
const RUNNER_FIRST_LOAD: usize = 1000;
/// A runner compacts at the end of a run only with at least this much of
/// its budget left.
const RUNNER_COMPACT_MARGIN: Duration = Duration::from_secs(60);
/// How long a runner's attempts may wait to be written together: its disk
/// dies with it, so the push (at least 2 s apart) is what makes a result
/// last, and every other runner pulls and applies each chunk file it writes:
/// one per push.
const RUNNER_FLUSH_DELAY: Duration = Duration::from_secs(2);

/// This runner's pacer when its remote has a push budget (see
/// crate::budget), made before anything reads the remote, with that budget.
fn runner_pacer(
    g: &GlobalArgs,
    remote: Option<&str>,
    shard: Option<(u32, u32)>,
) -> CliResult<Option<(Pacer, Budget)>> {
    let ws = Workspace::find(g.workspace.as_deref(), g.engine())?;
    let Some(spec) = remote.or(ws.remote_spec()) else {
        return Ok(None);
    };
    let Some(budget) = ws.config.budget(spec)? else {
        return Ok(None);
    };
    let shards = shard.map_or(1, |(_, count)| count);
    let share = Share::runner(budget, shards, getrandom::u64().unwrap_or(0));
    Ok(Some((
        Pacer::new(share, tokio::time::Instant::now()),
        budget,
    )))
}

/// What a run has said and done so far: kept outside the run's steps so
/// that an error stopping it still reports what was done, on GitHub
/// Actions with an annotation, the step outputs and the job summary.
struct RunLog {
    github: bool,
    /// On GitLab CI (and not GitHub Actions): the header and each task's
    /// output in collapsible sections (issue 19, item 4).
    gitlab: bool,
    quiet: bool,
    shard: Option<(u32, u32)>,
    ledger: Ledger,
    annotations: Annotations,
    remote_use: RemoteUse,
    /// Tasks left in the pool, once counted at the end.
    left: Option<usize>,
}

impl RunLog {
    /// The report of the outputs and the summary.
    fn report<'a>(&'a self, elapsed: Duration, fatal: Option<&'a Fatal>) -> Report<'a> {
        Report {
            ledger: &self.ledger,
            left: self.left,
            elapsed,
            remote_use: self.remote_use,
            shard: self.shard,
            fatal,
        }
    }

    /// Prints the header: a group on GitHub Actions, else on stderr
    /// unless quiet.
    fn header(&self, header: &Header<'_>) {
        if self.github {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "::group::{}", escape_data(&header.title()));
            for line in header.lines() {
                let _ = writeln!(out, "{line}");
            }
            let _ = writeln!(out, "::endgroup::");
            let _ = out.flush();
        } else if !self.quiet {
            if self.gitlab {
                errln!(
                    "{}",
                    gitlab_section_start("bridge_header", &header.title(), true, unix_s())
                );
            }
            for line in header.lines() {
                errln!("{line}");
            }
            if self.gitlab {
                errln!("{}", gitlab_section_end("bridge_header", unix_s()));
            }
        }
    }

    /// On GitHub Actions, after an error stopped the run: one annotation
    /// (the message and the hint), the step outputs and the job summary,
    /// with whatever was done before. Failing to write them is logged, not
    /// shown instead of the error itself.
    fn fatal(&self, settings: &crate::settings::Settings, e: &CliError, elapsed: Duration) {
        let message = format!("{:#}", e.error);
        let fatal = Fatal {
            message,
            hint: e.hint.clone(),
            code: e.code,
        };
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{}",
                self.annotations
                    .fatal(&fatal.message, fatal.hint.as_deref())
            );
            let _ = out.flush();
        }
        if let Err(e) = write_github_files(settings, &self.report(elapsed, Some(&fatal))) {
            tracing::warn!("{}", e.error);
        }
    }
}

/// Run a batch, and on GitHub Actions report an error that stops it as the
/// runner's conventions want (see [`RunLog::fatal`]). Exit codes are the
/// error's own.
pub fn run(g: &GlobalArgs, args: RunArgs) -> CliResult<u8> {
    let started = std::time::Instant::now();
    let mut log = RunLog {
        github: crate::output::surroundings().github_actions,
        gitlab: g.settings.gitlab_ci && !crate::output::surroundings().github_actions,
        quiet: g.quiet,
        shard: None,
        ledger: Ledger::default(),
        annotations: Annotations::default(),
        remote_use: RemoteUse::default(),
        left: None,
    };
    let result = run_batch(g, args, &mut log, started).map_err(runner_advice);
    match result {
        Err(e) if log.github => {
            let e = e.with_advice();
            log.fatal(&g.settings, &e, started.elapsed());
            Err(e)
        }
        result => result,
    }
}

/// A runner's own hint where the generic one is meant for a person's
/// device: a runner without an identity needs BRIDGE_IDENTITY (its CI
/// secret), not `bridge keygen`.
fn runner_advice(mut e: CliError) -> CliError {
    use crate::keys::IdentityError;
    use crate::workspace::LoadError;
    // Directly, or as the session's load error (which shows it as its own).
    let missing = e.error.chain().any(|c| {
        matches!(
            c.downcast_ref::<IdentityError>(),
            Some(IdentityError::Missing { .. })
        ) || matches!(
            c.downcast_ref::<LoadError>(),
            Some(LoadError::Identity(IdentityError::Missing { .. }))
        )
    });
    if e.hint.is_none() && missing {
        e.hint = Some(
            "a runner's identity comes from BRIDGE_IDENTITY: set it to the secret `bridge members add-runner NAME` printed (in a workflow, the action's `identity: ${{ secrets.BRIDGE_IDENTITY }}`)"
                .to_owned(),
        );
    }
    e
}

#[expect(
    clippy::too_many_lines,
    reason = "a command's steps in order; the ratchet (clippy.toml) stops it growing"
)]
fn run_batch(
    g: &GlobalArgs,
    args: RunArgs,
    log: &mut RunLog,
    started: std::time::Instant,
) -> CliResult<u8> {
    let budget = humantime::parse_duration(&args.budget)
        .with_context(|| format!("--budget {} is not a duration", args.budget))
        .hint("write e.g. 45m or 1h 30m")?;
    let budget = crate::error::check_budget(budget, &args.budget)?;
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    log.shard = shard;
    let github = log.github;
    // A fresh runner on a large pool starts after reading the documents it
    // needs for its first claims, not all of them (the slot orders them).
    let plan = LoadPlan::UntilOpen {
        open_tasks: RUNNER_FIRST_LOAD,
        seed: args.slot.clone().unwrap_or_else(|| format!("{shard:?}")),
    };
    let (mut pacer, push_budget) = runner_pacer(g, args.remote.as_deref(), shard)?.unzip();
    let read_turn = pacer.as_ref().map(Pacer::next_read_at);
    // A fresh checkout reads the store first: at its turn, or K runners
    // started together would all read at once (see crate::budget).
    let (mut session, fetched) = open_session_fetching(g, plan, || {
        if let Some(at) = read_turn {
            std::thread::sleep(at.saturating_duration_since(tokio::time::Instant::now()));
        }
    })?;
    if fetched && let Some(p) = pacer.as_mut() {
        p.read(tokio::time::Instant::now());
    }
    let spec = args
        .remote
        .clone()
        .or_else(|| session.ws.remote_spec().map(str::to_owned))
        .ok_or_else(|| {
            CliError::hint(
                anyhow!("no remote to drain"),
                "set `remote` under [store] in bridge.toml, or pass --remote git:URL",
            )
        })?;
    let me = session.vault.me()?.name.clone();
    let slot = args.slot.clone().unwrap_or_else(|| match shard {
        Some((i, _)) => safe_name(&format!("{me}-{i}")),
        None => safe_name(&me),
    });
    let remote =
        open_remote_as(&session.ws.settings, &spec, &session.ws.root, &slot).map_err(|e| {
            CliError::hint(
                anyhow!(e),
                "a remote looks like git:URL, s3://BUCKET/PREFIX or dir:PATH",
            )
        })?;
    let store = remote.describe();
    let mut publisher = Publisher::new(remote, session.ws.replica.clone());
    // The repository's push and read budget, this runner's share of it
    // (see crate::budget): a lease must outlast the time between two of its
    // pushes, or its claims would look lost between them.
    let mut lease = session.ws.config.lease()?;
    let push_budget = push_budget.zip(pacer.as_ref().map(Pacer::share));
    if let Some(pacer) = pacer {
        let share = pacer.share();
        lease = lease.max(share.push_every * 3);
        tracing::debug!(
            push_every_s = share.push_every.as_secs_f64(),
            read_every_s = share.read_every.as_secs_f64(),
            phase_s = share.phase.as_secs_f64(),
            thieves = share.thieves,
            "pacing pushes and reads to this runner's share of the repository's budget"
        );
        publisher = publisher.with_pacer(pacer);
    }
    // The store was just pulled from this same remote: that was the sync.
    let synced = fetched && session.ws.remote_spec() == Some(spec.as_str());
    if synced {
        publisher.note_synced();
    }
    let parallel = super::work::parallel_or_cpus(args.parallel);
    let runtime = super::work::worker_runtime(parallel)?;
    let shutdown = CancellationToken::new();
    let quiet = g.quiet;
    let result: CliResult<worker::WorkReport> = runtime.block_on(async {
        super::work::watch_signals(shutdown.clone());
        if !synced && publisher.sync(&mut session).await?.is_none() {
            return Err(CliError::hint(
                anyhow!("the remote {store} is unreachable"),
                "check the URL and the runner's network; nothing was claimed",
            )
            .with_code(EXIT_OFFLINE));
        }
        let deadline = tokio::time::Instant::now()
            + budget
                .saturating_sub(PUSH_MARGIN)
                .saturating_sub(started.elapsed());
        let labels = super::work::worker_labels(&session, &args.labels, &["runner"]);
        log.header(&Header {
            version: env!("CARGO_PKG_VERSION"),
            runner: &me,
            slot: &slot,
            store: &store,
            shard,
            budget,
            push_budget,
            parallel,
            tasks: task_counts(&session, &labels, shard),
        });
        let opts = WorkOptions {
            steal_grace: session.ws.config.steal_grace()?,
            parallel,
            follow: false,
            poll: Duration::from_secs(5),
            labels,
            lease,
            max_tasks: args.max_tasks,
            device: g.settings.engine.device_name(),
            deadline: Some((deadline, budget)),
            shard,
            provenance: g.settings.ci_provenance.clone(),
            flush_delay: RUNNER_FLUSH_DELAY,
            run_tasks_from: args.run_tasks_from.resolve(&session)?,
            max_object: super::common::max_object(&session),
            only: None,
            halt: None,
        };
        let mut hooks = RunHooks {
            github,
            quiet,
            shard,
            log: &mut *log,
            output: (!github && !quiet && !args.json).then(|| {
                super::task_output::TaskOutput::new(super::task_output::Mode::Grouped, None)
            }),
        };
        let work_began = started.elapsed();
        let mut report = worker::work(
            &mut session,
            &opts,
            shutdown.clone(),
            &mut hooks,
            Some(&mut publisher),
        )
        .await?;
        // Count from the start of this command, not of the worker loop.
        report.first_started_ms = report
            .first_started_ms
            .map(|ms| ms + work_began.as_millis() as u64);
        // Land everything, and learn what is left for the summary (not when
        // stopped by a signal: the grace period is spent, the worker pushed).
        if !shutdown.is_cancelled() {
            // The worker's last look was a sync, and it pushed since: a
            // fleet ending together need not sync once more each.
            if !publisher.synced_within(worker::FRESH_SYNC) || publisher.has_pending() {
                publisher.sync_last(&mut session).await?;
            }
            // Compact only when cheap: a few documents, with budget to spare,
            // and only those whose tasks are all over. Compaction rewrites
            // the branches of the runners still working on a document (their
            // next push is then rejected and rebuilt): the last one to touch
            // it, or the next sync, compacts it.
            // Under a push budget, only when this runner's share has a push
            // to spare: compaction pushes a rewrite of the branches.
            if !publisher.offline
                && publisher.may_push()
                && budget.saturating_sub(started.elapsed()) > RUNNER_COMPACT_MARGIN
            {
                let (index, count) = shard.unwrap_or((0, 1));
                let settled = settled_docs(&session);
                crate::compact::auto(
                    &session.vault,
                    &session.ws.replica,
                    Some(publisher.remote()),
                    crate::compact::RUNNER_MAX_DOCS,
                    &|doc| {
                        settled.contains(doc) && crate::shard::shard_of_name(doc, count) == index
                    },
                );
            }
        }
        Ok(report)
    });
    log.remote_use = RemoteUse {
        pushes: publisher.pushes,
        fetches: publisher.fetches,
    };
    let report = result?;
    log.ledger.left_for_others = report.left_for_others.tasks();
    // What is left counts every document.
    session.load_all()?;
    let derived = session.view().derive(now_ms(), session.policy);
    let left = derived
        .values()
        .filter(|d| {
            matches!(
                d.status,
                Status::Pending | Status::Running | Status::Blocked
            )
        })
        .count();
    log.left = Some(left);
    // A runner of a person's own (not GitHub Actions) announces what ended,
    // as `work` does; the view is whole now (issue 17, item 7).
    if !github {
        let notifier = crate::notify::Notifier::new(&session.ws, None, false);
        crate::notify::check(&session, &notifier);
    }
    if github {
        if let Some(closing) = log.annotations.closing() {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{closing}");
            let _ = out.flush();
        }
        write_github_files(&g.settings, &log.report(started.elapsed(), None))?;
    }
    if args.json {
        print_json(&json!({
            "done": report.done, "failed": report.failed, "interrupted": report.interrupted,
            "lost_claims": report.lost_claims, "left": left, "pushes": publisher.pushes,
            "fetches": publisher.fetches,
            "push_failures": publisher.failures,
            "rejected_pushes": publisher.remote_stats().map(|s| s.rejected),
            "first_task_started_ms": report.first_started_ms,
            "left_for_others": super::work::left_json(&report.left_for_others),
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    } else if !quiet {
        errln!(
            "run: {} done, {} failed, {} interrupted, {} left in the pool ({} pushes, {} fetches, {:.1}s)",
            report.done,
            report.failed,
            report.interrupted,
            left,
            publisher.pushes,
            publisher.fetches,
            started.elapsed().as_secs_f64()
        );
    }
    if publisher.offline {
        errln!(
            "warning: the last push did not reach the remote; the results are in the local replica only"
        );
    }
    Ok(run_exit_code(
        shutdown.is_cancelled(),
        args.fail_on,
        report.failed,
    ))
}

/// `--shard I/K`, counted from 0 (issue 17, item 8: decided, not 1-based
/// as nextest, Jest and Playwright count): the index is GitHub's own matrix
/// index (`strategy.job-index`, the workflows' `seq 0 …`) and it names the
/// runner's ref in the store (`<member>-<I>`), so counting from 1 would
/// leave every existing store's refs behind. `K/K`, the one 1-based form
/// that is not also a 0-based one, is refused with the translation.
fn parse_shard(s: &str) -> CliResult<(u32, u32)> {
    let bad = || {
        CliError::hint(
            anyhow!("--shard {s} is not INDEX/COUNT"),
            "write e.g. --shard 0/4 (indices start at 0: the 4 runners are 0/4, 1/4, 2/4 and 3/4)",
        )
    };
    let (i, k) = s.split_once('/').ok_or_else(bad)?;
    let (i, k): (u32, u32) = (
        i.trim().parse().map_err(|_| bad())?,
        k.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 {
        return Err(bad());
    }
    if i >= k {
        return Err(CliError::hint(
            anyhow!(
                "--shard {s}: shard indices start at 0, so {k} runners are 0/{k} to {last}/{k}",
                last = k - 1
            ),
            if i == k {
                format!(
                    "counting from 1 as nextest or Jest do? bridge counts from 0 like GitHub's `strategy.job-index`: write --shard {}/{k} (subtract 1)",
                    i - 1
                )
            } else {
                format!("write an index below {k}")
            },
        ));
    }
    Ok((i, k))
}

struct RunHooks<'a> {
    github: bool,
    quiet: bool,
    shard: Option<(u32, u32)>,
    log: &'a mut RunLog,
    /// Outside GitHub Actions, each task's own output when it ends, as
    /// `bridge work` prints it (on GitHub its tails go in its group).
    output: Option<super::task_output::TaskOutput>,
}

impl worker::Hooks for RunHooks<'_> {
    fn downloads(&self) -> Option<std::sync::Arc<dyn bridge_fetch::Progress>> {
        crate::downloads::progress()
    }

    fn wants_logs(&self) -> bool {
        self.output.is_some()
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::LeftForOthers(left) => {
                if !self.quiet {
                    errln!("note: {}", left.message());
                }
                self.log.ledger.left_for_others = left.tasks();
            }
            Event::Started {
                name,
                id,
                attempt,
                shard,
                ..
            } => {
                // A line as each task starts, so that a long task shows in
                // the log while it runs, not only in its group at the end.
                let line = super::run_log::start_line(
                    &name,
                    id.short(),
                    attempt,
                    shard,
                    self.shard,
                    self.github,
                );
                if self.github {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                } else if !self.quiet {
                    errln!("{line}");
                }
            }
            Event::Finished {
                name,
                id,
                outcome,
                detail,
                ms,
                tails,
                logs,
            } => {
                // On GitLab CI the task's end line is the title of a
                // collapsed section holding its output.
                let section = (self.log.gitlab && !self.quiet).then(|| {
                    let title = end_line(&name, outcome, ms, &detail);
                    let section = format!("bridge_task_{}", id.short());
                    errln!("{}", gitlab_section_start(&section, &title, true, unix_s()));
                    section
                });
                if let Some(output) = &self.output {
                    output.finished(&id, &name, logs.as_ref());
                } else if section.is_some() {
                    // With --json no task output is printed: the section
                    // holds the tails, as GitHub's group does.
                    gitlab_tails(&tails);
                }
                if let Some(section) = &section {
                    errln!("{}", gitlab_section_end(section, unix_s()));
                }
                self.finished(name, &id, outcome, detail, ms, &tails);
            }
            Event::Backlog { .. } | Event::Idle => {}
        }
    }

    fn idle(&mut self, _session: &mut Session) -> Result<(), bridge_engine::worker::HookError> {
        Ok(())
    }
}

/// A task's end as one line: its mark, name, time and what went wrong.
fn end_line(name: &str, outcome: Outcome, ms: i64, detail: &str) -> String {
    format!(
        "{} {} ({}){}",
        mark(outcome),
        crate::output::safe(name),
        duration(ms),
        if detail.is_empty() {
            String::new()
        } else {
            format!(": {}", crate::output::safe(detail))
        }
    )
}

/// A task's output tails (stdout, then stderr), safe to show, on stderr.
fn gitlab_tails(tails: &(String, String)) {
    if !tails.0.is_empty() {
        errln!("{}", crate::output::safe_lines(tails.0.trim_end()));
    }
    if !tails.1.is_empty() {
        errln!(
            "--- stderr ---\n{}",
            crate::output::safe_lines(tails.1.trim_end())
        );
    }
}

/// Seconds since the Unix epoch, for GitLab's section markers (0 if the
/// clock is before 1970).
fn unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RunHooks<'_> {
    /// A task's end: a group with its output tails and an annotation if it
    /// failed (on GitHub Actions), else one line.
    fn finished(
        &mut self,
        name: String,
        id: &bridge_model::TaskId,
        outcome: Outcome,
        detail: String,
        ms: i64,
        tails: &(String, String),
    ) {
        if self.github {
            let mut out = std::io::stdout().lock();
            // One collapsible group per task, then an annotation for failures.
            let _ = writeln!(
                out,
                "::group::{} {} ({})",
                mark(outcome),
                escape_data(&name),
                duration(ms)
            );
            let token = stop_commands_token(getrandom::fill);
            let _ = write_paused_tails(&mut out, token, tails, id.short());
            let _ = writeln!(out, "::endgroup::");
            if outcome.counts_as_failure()
                && let Some(annotation) =
                    self.log
                        .annotations
                        .task_failed(&name, outcome, &detail, id.short())
            {
                let _ = writeln!(out, "{annotation}");
            }
            let _ = out.flush();
        } else if !self.quiet && !self.log.gitlab {
            errln!("{}", end_line(&name, outcome, ms, &detail));
        }
        self.log.ledger.record(Row {
            name,
            short_id: id.short().to_owned(),
            outcome,
            ms,
            detail,
        });
    }
}

/// What the header says of the tasks: those the runner sees now (the
/// documents read so far), and how many of the runnable are in its shard.
fn task_counts(session: &Session, labels: &[String], shard: Option<(u32, u32)>) -> TaskCounts {
    let derived = session.view().derive(now_ms(), session.policy);
    let mut counts = TaskCounts {
        partial: session.has_deferred(),
        ..TaskCounts::default()
    };
    for d in derived.values() {
        match d.status {
            Status::Pending => counts.pending += 1,
            Status::Running => counts.running += 1,
            Status::Blocked => counts.blocked += 1,
            _ => {}
        }
    }
    let runnable = session.view().runnable(&derived, labels);
    counts.runnable = runnable.len();
    counts.in_shard = shard.map(|(index, count)| {
        let mut shards = crate::shard::Shards::new(count);
        shards.prepare(session.view(), &runnable);
        runnable.iter().filter(|id| shards.of(id) == index).count()
    });
    counts
}

/// A fresh, unguessable token for `::stop-commands::`, from `fill` (the OS
/// random source). There is deliberately no fallback: a fixed or guessable
/// token would let a task's output end the pause and issue workflow commands
/// (`::add-mask::`, `::error::`, step outputs) itself (issue 12, item 25).
fn stop_commands_token<E: std::fmt::Display>(
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    fill(&mut bytes).map_err(|e| {
        anyhow!("cannot pause workflow commands: the OS random number generator failed: {e}")
    })?;
    Ok(hex::encode(bytes))
}

/// Writes a task's output tails between `::stop-commands::TOKEN` and
/// `::TOKEN::`, so that nothing in them is taken as a workflow command. If no
/// token could be made, the tails are withheld (fail closed) and the line
/// says where to read them instead.
fn write_paused_tails(
    out: &mut impl std::io::Write,
    token: anyhow::Result<String>,
    tails: &(String, String),
    short_id: &str,
) -> std::io::Result<()> {
    let token = match token {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!("{e:#}");
            return writeln!(
                out,
                "(output withheld: {}; read it with `bridge logs {short_id}`)",
                escape_data(&format!("{e:#}"))
            );
        }
    };
    writeln!(out, "::stop-commands::{token}")?;
    if !tails.0.is_empty() {
        writeln!(out, "{}", tails.0.trim_end())?;
    }
    if !tails.1.is_empty() {
        writeln!(out, "--- stderr ---\n{}", tails.1.trim_end())?;
    }
    writeln!(out, "::{token}::")
}

/// Writes the step outputs and the job summary (see [`super::run_log`]).
fn write_github_files(settings: &crate::settings::Settings, report: &Report<'_>) -> CliResult<()> {
    if let Some(path) = &settings.github_output {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open GITHUB_OUTPUT {path}"))?;
        f.write_all(super::run_log::outputs(report).as_bytes())
            .with_context(|| format!("cannot write GITHUB_OUTPUT {path}"))?;
    }
    if let Some(path) = &settings.github_step_summary {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open GITHUB_STEP_SUMMARY {path}"))?;
        f.write_all(super::run_log::summary(report).as_bytes())
            .with_context(|| format!("cannot write GITHUB_STEP_SUMMARY {path}"))?;
    }
    Ok(())
}

/// The loaded documents none of whose tasks is pending, running or blocked.
fn settled_docs(session: &Session) -> std::collections::HashSet<String> {
    let derived = session.view().derive(now_ms(), session.policy);
    let mut busy = std::collections::HashSet::new();
    for task in session.view().tasks() {
        let open = derived.get(&task.id).is_some_and(|d| {
            matches!(
                d.status,
                Status::Pending | Status::Running | Status::Blocked
            )
        });
        if open {
            busy.extend(task.docs.iter().map(ToString::to_string));
        }
    }
    session
        .headers()
        .map(|(id, _)| id.to_string())
        .filter(|id| !busy.contains(id))
        .collect()
}

#[cfg(test)]
mod stop_commands_tests {
    use super::*;

    #[test]
    fn issue12_token_fails_closed_when_the_random_source_fails() {
        let failed = stop_commands_token(|_| Err("entropy source unavailable"));
        let e = failed.expect_err("a failed random source must not yield a token");
        assert!(
            format!("{e:#}").contains("entropy source unavailable"),
            "{e:#}"
        );
        // The tails of a task are then withheld, never printed unpaused.
        let tails = (
            "::add-mask::oops\n".to_owned(),
            "::error::forged".to_owned(),
        );
        let mut out = Vec::new();
        write_paused_tails(
            &mut out,
            stop_commands_token(|_| Err("no entropy")),
            &tails,
            "abc",
        )
        .expect("writing to a Vec cannot fail");
        let text = String::from_utf8(out).expect("UTF-8");
        assert!(!text.contains("::add-mask::"), "{text}");
        assert!(!text.contains("::error::"), "{text}");
        assert!(!text.contains("::stop-commands::"), "{text}");
        assert!(text.contains("bridge logs abc"), "{text}");
    }

    #[test]
    fn issue12_token_is_fresh_and_pauses_the_tails() {
        let a = stop_commands_token(getrandom::fill).expect("a token");
        let b = stop_commands_token(getrandom::fill).expect("a token");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        let tails = ("hello".to_owned(), String::new());
        let mut out = Vec::new();
        write_paused_tails(&mut out, Ok(a.clone()), &tails, "abc").expect("Vec");
        let text = String::from_utf8(out).expect("UTF-8");
        assert_eq!(text, format!("::stop-commands::{a}\nhello\n::{a}::\n"));
    }
}
