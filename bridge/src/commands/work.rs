//! `bridge work`: run runnable tasks on this device.

use std::time::Duration;

use anyhow::Context;
use bridge_model::{Outcome, Status};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::GlobalArgs;
use super::common::{open_session_with, resolve_task, sync_and_report, sync_remote};
use crate::budget::{Pacer, Share};
use crate::error::{CliResult, EXIT_INTERRUPTED, EXIT_OK, EXIT_TASK_FAILED, HintExt};
use crate::output::{duration, print_json};
use crate::publish::Publisher;
use crate::run_policy::RunFrom;
use crate::worker::{self, Event, WorkOptions};
use crate::workspace::{LoadPlan, Session, now_ms};

/// Run runnable tasks on this device
///
/// Claims tasks nobody is running, runs them N at a time (each in its own
/// process group, killed whole at its timeout), keeps their logs and
/// outputs, and records every attempt. Without --follow it exits when nothing
/// runnable is left. Ctrl-C (or SIGTERM) stops cleanly: running tasks are
/// stopped and recorded as interrupted, waiting claims are released, and
/// everything is saved; a second Ctrl-C exits at once (on Linux every
/// process a task started is still killed).
///
/// With a remote, it syncs before and after (and while idle with --follow);
/// offline, or when the remote does not answer within `[store]
/// stall-timeout`, it works on the local replica and says so.
///
/// When this machine cannot run tasks (no disk space, no file descriptors,
/// a working folder it cannot create), it records nothing against them,
/// releases its claims, stops, and exits with code 5.
///
/// Each task's own output is printed when it ends, every line tagged with
/// the task's name and a tab (as `parallel --tag`): its stdout on stdout,
/// its stderr on stderr, never mixed with another task's; --line-buffer
/// prints lines as they are written; -q and --json print none.
///
/// It claims only tasks whose submitter `[worker] run-tasks-from` in
/// bridge.toml accepts (default: its own and the admins' on a person's
/// device, every member's on a runner); the others are left for other
/// devices, and it says how many and whose.
///
/// Exit codes: 0 all tasks it ran succeeded (also when it ran none, e.g.
/// every pending task was left for other devices), 3 some failed, 5 this
/// machine cannot run tasks (no disk space, no file descriptors), 130
/// stopped.
///
/// JSON (--json): {"done", "failed", "interrupted", "lost_claims",
/// "left_for_others": {"tasks", "submitters": [NAME…], "run_tasks_from":
/// {"entries": [ENTRY…], "default": BOOL}}}
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct WorkArgs {
    /// How many tasks to run at once (default: the number of CPUs)
    #[arg(long, short = 'j', value_name = "N")]
    pub parallel: Option<usize>,
    /// Keep running: wait for new tasks instead of exiting when idle
    #[arg(long, short)]
    pub follow: bool,
    /// With --follow, how often to look for new tasks
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub poll: String,
    /// Stop after claiming this many tasks
    #[arg(long, value_name = "N")]
    pub max_tasks: Option<usize>,
    /// A label of this worker, matched against tasks' runs-on (repeatable)
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Do not sync with the remote
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub run_tasks_from: RunTasksFromArg,
    /// Print a JSON report at the end (format above)
    #[arg(long)]
    pub json: bool,
    /// Stop after failures, as `parallel --halt`: `soon,fail=N` (no new
    /// task after N failed attempts; running ones end) or `now,fail=N`
    /// (running ones are stopped too, and run again later)
    #[arg(long, value_name = "WHEN,fail=N", value_parser = parse_halt)]
    pub halt: Option<worker::Halt>,
    /// Run only this task (id, id prefix or name), if it is runnable
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Print each line of a task's output as it is written (tagged with the
    /// task's name, like `parallel --line-buffer --tag`), not each task's
    /// whole output when it ends
    #[arg(long)]
    pub line_buffer: bool,
    /// Also show a desktop notification (notify-send, or osascript on
    /// macOS) when a batch finishes or a task fails for good; `[notify]`
    /// in bridge.toml runs commands of yours then
    #[arg(long)]
    pub notify: bool,
}

/// `--run-tasks-from`, shared by `bridge work` and `bridge run`.
#[derive(Debug, Args)]
pub struct RunTasksFromArg {
    /// Whose tasks to claim, for this run only, instead of `[worker]
    /// run-tasks-from` in .bridge/config.toml (bridge.toml's on a runner)
    /// or BRIDGE_RUN_TASKS_FROM: a
    /// comma-separated list of `self` (this device's own), `admins`
    /// (members with the admin role), `members` (every member allowed to
    /// submit) and members' names, e.g. `self,admins,alice-laptop`; an
    /// empty list runs nobody's. Others' tasks are left for other devices.
    /// Default: `self,admins` on a person's device, `members` on a runner
    #[arg(long = "run-tasks-from", value_name = "LIST")]
    pub list: Option<String>,
}

impl RunTasksFromArg {
    /// The entries the worker uses: the flag's, else
    /// `BRIDGE_RUN_TASKS_FROM`, else this device's setting (see
    /// `workspace::DeviceConfig`), else `None` (the default for this
    /// device's role).
    pub fn resolve(&self, session: &Session) -> CliResult<Option<Vec<RunFrom>>> {
        Ok(crate::run_policy::entries(
            &session.ws,
            session.is_runner(),
            self.list.as_deref(),
        )?)
    }
}

/// The repository's budget (see crate::budget): a device takes the share
/// kept for devices, and its lease must outlast the time between two of its
/// pushes, or its claims would look lost between them.
fn device_pacing(session: &Session) -> CliResult<(Option<Share>, Duration)> {
    let share = match session.ws.remote_spec() {
        Some(spec) => session.ws.config.budget(spec)?.map(Share::device),
        None => None,
    };
    let lease = session.ws.config.lease()?;
    Ok((share, share.map_or(lease, |s| lease.max(s.push_every * 3))))
}

/// `publisher`, paced to `share` when there is one.
fn paced(publisher: Publisher, share: Option<Share>) -> Publisher {
    match share {
        Some(share) => publisher.with_pacer(Pacer::new(share, tokio::time::Instant::now())),
        None => publisher,
    }
}

pub fn run(g: &GlobalArgs, args: WorkArgs) -> CliResult<u8> {
    let mut session = open_session_with(g, LoadPlan::Work)?;
    let parallel = parallel_or_cpus(args.parallel);
    let poll = humantime::parse_duration(&args.poll)
        .with_context(|| format!("--poll {} is not a duration", args.poll))
        .hint("write e.g. 5s or 1m")?;
    let labels = worker_labels(&session, &args.labels, &[]);
    let (pacer, lease) = device_pacing(&session)?;
    let opts = WorkOptions {
        steal_grace: None,
        parallel,
        follow: args.follow,
        poll,
        labels,
        lease,
        max_tasks: args.max_tasks,
        device: g.settings.engine.device_name(),
        deadline: None,
        shard: None,
        provenance: Default::default(),
        flush_delay: worker::FLUSH_DELAY,
        run_tasks_from: args.run_tasks_from.resolve(&session)?,
        max_object: super::common::max_object(&session),
        halt: args.halt,
        only: match &args.task {
            Some(t) => Some([resolve_task(&mut session, t)?].into()),
            None => None,
        },
    };
    // A remote that could not be used at the start (unreachable, silent
    // past the stall timeout) is not tried again by this run: the tasks run
    // on the local replica and the user was told once (issue 12, item 15).
    let online = args.offline || sync_and_report(&mut session, g)?;
    // What ended before this run (and was not announced yet) is announced
    // now; what ends while it runs, when it is seen (issue 17, item 7).
    let notifier = crate::notify::Notifier::new(&session.ws, None, args.notify);
    crate::notify::check(&session, &notifier);
    let runtime = worker_runtime(parallel)?;
    let shutdown = CancellationToken::new();
    let quiet = g.quiet;
    let offline = args.offline;
    let report = runtime.block_on(async {
        watch_signals(shutdown.clone());
        let mut hooks = WorkHooks {
            progress: Progress::new(quiet, output_mode(quiet, args.json, args.line_buffer)),
            offline,
            notifier: &notifier,
        };
        let mut publisher = match (offline || !online, session.ws.remote_spec()) {
            (false, Some(spec)) => {
                super::common::open_remote(&session.ws.settings, spec, &session.ws.root)
                    .ok()
                    .map(|r| paced(Publisher::new(r, session.ws.replica.clone()), pacer))
            }
            _ => None,
        };
        let r = worker::work(
            &mut session,
            &opts,
            shutdown.clone(),
            &mut hooks,
            publisher.as_mut(),
        )
        .await;
        hooks.progress.finish();
        r
    })?;
    if !args.offline && online {
        sync_and_report(&mut session, g)?;
    } else if !online && !quiet {
        errln!(
            "not synced: the remote could not be used; results are in the local replica, run `bridge sync` later"
        );
    }
    super::sync::auto_compact(&session, args.offline || !online);
    crate::notify::check(&session, &notifier);
    report_end(&session, &report, args.json, quiet)?;
    if shutdown.is_cancelled() {
        Ok(EXIT_INTERRUPTED)
    } else if report.failed > 0 {
        Ok(EXIT_TASK_FAILED)
    } else {
        Ok(EXIT_OK)
    }
}

/// `work`'s closing line (or its `--json` report), with the tasks skipped
/// because a task they need failed or was cancelled: not work left, but a
/// person waiting for them must hear why.
fn report_end(
    session: &Session,
    report: &worker::WorkReport,
    json: bool,
    quiet: bool,
) -> CliResult<()> {
    let skipped = session
        .view()
        .derive(now_ms(), session.policy)
        .values()
        .filter(|d| d.status == Status::Skipped)
        .count();
    if json {
        let mut json = report_json(report);
        json["skipped"] = skipped.into();
        json["halted"] = report.halted.into();
        print_json(&json)?;
    } else if !quiet {
        if report.halted {
            errln!(
                "halted: --halt's failures were reached; the tasks not started are left pending"
            );
        }
        errln!(
            "{} done, {} failed{}{}{}{}.",
            report.done,
            report.failed,
            if report.interrupted > 0 {
                format!(", {} interrupted", report.interrupted)
            } else {
                String::new()
            },
            if report.lost_claims > 0 {
                format!(", {} left to other workers", report.lost_claims)
            } else {
                String::new()
            },
            // Why was said when the worker first found them.
            match report.left_for_others.tasks() {
                0 => String::new(),
                n => format!(", {n} left for other devices"),
            },
            match skipped {
                0 => String::new(),
                n => format!(
                    ", {n} skipped (a task they need failed or was cancelled: `bridge ls --status skipped` says which; retrying it runs them)"
                ),
            },
        );
    }
    Ok(())
}

/// What `bridge work --json` and `bridge run --json` say about the tasks
/// left for other devices.
pub fn left_json(left: &worker::LeftForOthers) -> serde_json::Value {
    serde_json::json!({
        "tasks": left.tasks(),
        "submitters": left.submitters,
        "run_tasks_from": left.policy,
        "other_reasons": left.other,
    })
}

fn report_json(report: &worker::WorkReport) -> serde_json::Value {
    serde_json::json!({
        "done": report.done,
        "failed": report.failed,
        "interrupted": report.interrupted,
        "lost_claims": report.lost_claims,
        "left_for_others": left_json(&report.left_for_others),
    })
}

/// Progress output and remote pushes for the worker loop.
struct WorkHooks<'a> {
    progress: Progress,
    offline: bool,
    /// Announces what ended, each time the worker is idle (`--follow`).
    notifier: &'a crate::notify::Notifier,
}

impl worker::Hooks for WorkHooks<'_> {
    fn downloads(&self) -> Option<std::sync::Arc<dyn bridge_fetch::Progress>> {
        crate::downloads::progress()
    }

    fn wants_logs(&self) -> bool {
        self.progress.output.wants_logs()
    }

    fn event(&mut self, event: Event) {
        self.progress.event(event);
    }

    fn idle(&mut self, session: &mut Session) -> Result<(), bridge_engine::worker::HookError> {
        if !self.offline {
            sync_remote(session, false)?;
        }
        // A hook may take its time: the runtime's other threads go on
        // meanwhile (tasks' output, claims' renewal).
        tokio::task::block_in_place(|| crate::notify::check(session, self.notifier));
        Ok(())
    }
}

/// `--halt`: `soon,fail=N` or `now,fail=N` (N ≥ 1).
fn parse_halt(s: &str) -> Result<worker::Halt, String> {
    let usage = "write soon,fail=N or now,fail=N, e.g. soon,fail=1";
    let (when, rule) = s.split_once(',').ok_or_else(|| usage.to_owned())?;
    let now = match when {
        "soon" => false,
        "now" => true,
        _ => return Err(format!("`{when}` is neither soon nor now: {usage}")),
    };
    let failures = rule
        .strip_prefix("fail=")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{rule}` is not fail=N with N at least 1: {usage}"))?;
    Ok(worker::Halt { now, failures })
}

/// The progress bar's total: what ended, what runs and what is left to
/// claim. Counting only what ended and what is left made it jump (0/11,
/// 2/8, 11/10): running tasks are in neither.
fn bar_total(done: u64, running: u64, left: u64) -> u64 {
    done + running + left
}

/// How `work` shows its tasks' own output: not with -q or --json (stdout
/// holds the report), line by line with --line-buffer, else each task's
/// whole output when it ends.
fn output_mode(quiet: bool, json: bool, line_buffer: bool) -> super::task_output::Mode {
    use super::task_output::Mode;
    match (quiet || json, line_buffer) {
        (true, _) => Mode::Off,
        (false, true) => Mode::Lines,
        (false, false) => Mode::Grouped,
    }
}

/// `--parallel`, else the number of CPUs.
pub fn parallel_or_cpus(parallel: Option<usize>) -> usize {
    parallel.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// A worker's labels, matched against tasks' `runs-on`: bridge.toml's
/// `[worker] labels`, the `--label`s, `extra`, and its OS and architecture.
pub fn worker_labels(session: &Session, flags: &[String], extra: &[&str]) -> Vec<String> {
    let mut labels = session.ws.config.worker.labels.clone();
    labels.extend(flags.iter().cloned());
    labels.extend(extra.iter().map(|l| (*l).to_owned()));
    labels.extend([
        std::env::consts::OS.to_owned(),
        std::env::consts::ARCH.to_owned(),
    ]);
    labels
}

/// The async runtime a worker runs on: a few threads suffice, since tasks
/// are processes and the loop mostly waits.
pub fn worker_runtime(parallel: usize) -> CliResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(parallel.clamp(1, 4))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?)
}

/// Cancels `token` on the first Ctrl-C or SIGTERM; exits at once on the
/// second. The handlers are installed before this returns, so a signal that
/// arrives as soon as work starts is already a clean stop.
pub fn watch_signals(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot listen for SIGTERM/SIGINT: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        for round in 0..2 {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if round == 0 {
                errln!(
                    "stopping: interrupting running tasks and saving (press Ctrl-C again to quit at once)"
                );
                token.cancel();
            } else {
                // Safe for the tasks' processes: each task's supervisor
                // gets its parent-death signal and kills every process of
                // its task, including those that left the process group
                // (see `bridge_exec::supervisor`).
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
        }
    });
}

/// A progress bar on a terminal; one line per finished task otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    /// Tasks ended, and tasks started and not ended yet.
    done: u64,
    running: u64,
    /// The tasks' own output.
    output: super::task_output::TaskOutput,
}

impl Progress {
    fn new(quiet: bool, mode: super::task_output::Mode) -> Progress {
        let tty = crate::output::surroundings().live_stderr;
        let bar = (tty && !quiet).then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {per_sec} eta {eta} {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            output: super::task_output::TaskOutput::new(mode, bar.clone()),
            bar,
            quiet,
            done: 0,
            running: 0,
        }
    }

    fn set_total(&self, left: u64) {
        if let Some(b) = &self.bar {
            b.set_length(bar_total(self.done, self.running, left));
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Backlog { left } => self.set_total(left as u64),
            Event::Started {
                name,
                id,
                log_files,
                ..
            } => {
                self.running += 1;
                self.output.started(&id, &name, log_files);
                if let Some(b) = &self.bar {
                    b.set_message(crate::output::safe(&name).into_owned());
                }
            }
            Event::Finished {
                name,
                id,
                outcome,
                detail,
                ms,
                logs,
                ..
            } => {
                self.done += 1;
                self.running = self.running.saturating_sub(1);
                self.output.finished(&id, &name, logs.as_ref());
                let name = crate::output::safe(&name).into_owned();
                let detail = crate::output::safe(&detail).into_owned();
                let line = match outcome {
                    Outcome::Success => format!("✓ {name} ({})", duration(ms)),
                    _ => format!(
                        "✗ {name}: {}{} ({}) — see `bridge logs {}`",
                        outcome.as_str(),
                        if detail.is_empty() {
                            String::new()
                        } else {
                            format!(", {detail}")
                        },
                        duration(ms),
                        id.short()
                    ),
                };
                match &self.bar {
                    Some(b) => {
                        b.inc(1);
                        if outcome != Outcome::Success {
                            b.println(line);
                        }
                    }
                    None if !self.quiet => errln!("{line}"),
                    None => {}
                }
            }
            Event::Idle => {
                if let Some(b) = &self.bar {
                    b.set_message("waiting for tasks…");
                }
            }
            Event::LeftForOthers(left) => {
                let line = format!("note: {}", left.message());
                match &self.bar {
                    Some(b) => b.println(line),
                    None if !self.quiet => errln!("{line}"),
                    None => {}
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_reads_as_parallel_writes_it() {
        assert_eq!(
            parse_halt("soon,fail=1"),
            Ok(worker::Halt {
                now: false,
                failures: 1
            })
        );
        assert_eq!(
            parse_halt("now,fail=3"),
            Ok(worker::Halt {
                now: true,
                failures: 3
            })
        );
        for bad in [
            "soon",
            "later,fail=1",
            "now,fail=0",
            "now,fail=10%",
            "soon,done=1",
        ] {
            assert!(parse_halt(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bar_total_holds_while_tasks_run() {
        // 11 runnable, 2 slots: the total stays 11 as tasks start and end.
        let mut seen = Vec::new();
        let (mut done, mut running, mut left) = (0, 0, 11);
        seen.push(bar_total(done, running, left));
        for _ in 0..11 {
            left -= 1;
            running += 1;
            seen.push(bar_total(done, running, left));
            running -= 1;
            done += 1;
            seen.push(bar_total(done, running, left));
        }
        assert!(seen.iter().all(|t| *t == 11), "{seen:?}");
    }
}
