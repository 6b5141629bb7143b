//! `bridge demo` (runners): the product's main job, on this machine. A
//! laptop submits offline into a workspace whose store is a bare git
//! repository (standing in for the GitHub repository that holds it); two
//! `bridge run --shard` processes, with a runner identity and GitHub Actions'
//! environment, drain it; the runner of shard 1/2 is sent SIGTERM while its
//! first counting task runs, as GitHub does to a cancelled job's step; the
//! laptop syncs and shows every result.
//!
//! Who finishes the cancelled runner's work depends on timing, and the demo
//! says which happened: the runner of shard 0/2 takes over the interrupted
//! tasks when it reads the store after they are back and before its own
//! work is done (its log says "taken over from shard 1/2"); a runner reads
//! the store a few seconds apart, so it often ends first. Whatever is left
//! once both have exited is finished by a re-run of the cancelled job
//! (GitHub's "Re-run failed jobs"), which the demo then starts. The
//! end-to-end test has seen both.
//!
//! The runners' stdout carries GitHub's workflow commands; the demo shows
//! it as GitHub's log page would ([`super::render`]), each line tagged with
//! its runner, and the job summaries as plain text.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;

use anyhow::{Context, anyhow};

use super::render::{WorkflowLog, summary_text};
use super::{Demo, shown_args, step};
use crate::error::{CliResult, EXIT_OK, HintExt};

/// Where the runner identity (the secret) is kept, in the demo's folder.
const SECRET_FILE: &str = "ci-identity";

pub(super) fn run(demo: &Demo) -> CliResult<u8> {
    let laptop = demo.folder("laptop")?;
    demo.write_files(&laptop)?;
    outln!("bridge demo (runners) in {}", demo.root.display());

    step("A bare git repository stands in for the GitHub repository that holds the store:");
    let store = demo.root.join("store.git");
    init_bare(&store)?;
    step(
        "The laptop creates the workspace on it, and a runner identity (`bridge init --github` \
         stores it as the repository secret BRIDGE_IDENTITY; here it goes to a file):",
    );
    let remote = format!("git:{}", store.display());
    demo.bridge(&laptop, "laptop", &["init", "--remote", &remote])?;
    let secret = add_runner(demo, &laptop)?;
    step(
        "The laptop, offline, submits 4 counting tasks (2 seconds each), one that fails on \
         purpose, and a report that needs the counts:",
    );
    demo.bridge(
        &laptop,
        "laptop",
        &["submit", "--offline", "demo/runners.yaml"],
    )?;
    demo.bridge(&laptop, "laptop", &["status"])?;
    step(
        "Back online, the laptop pushes the tasks (`bridge dispatch` would now start the runners):",
    );
    demo.bridge(&laptop, "laptop", &["sync"])?;

    step(
        "Two runners, each a checkout of the repository (its bridge.toml), drain the pool one \
         shard each, in GitHub Actions' environment. The job of shard 1/2 is cancelled while \
         its first count runs: GitHub sends its step SIGTERM.",
    );
    let jobs = [
        Job::check_out(demo, &laptop, "runner-0", "0/2")?,
        Job::check_out(demo, &laptop, "runner-1", "1/2")?,
    ];
    let drained = drive(demo, &jobs, &secret, Some(1))?;
    show_summaries(&jobs, &drained.exits);
    finish_the_cancelled_work(demo, &laptop, &secret, &drained)?;
    show_results(demo, &laptop, drained.interrupted.as_deref())?;
    Ok(EXIT_OK)
}

/// `git init --bare` at `store`, shown as typed, with none of the caller's
/// `GIT_*` variables (a `GIT_DIR` would redirect it).
fn init_bare(store: &Path) -> CliResult<()> {
    outln!(
        "$ git init --bare {}",
        shown_args(&[&store.display().to_string()])
    );
    let mut git = std::process::Command::new("git");
    git.args(["init", "--bare", "--quiet"]).arg(store);
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("GIT_")) {
            git.env_remove(key);
        }
    }
    let out = git
        .output()
        .context("cannot start git")
        .hint("the runners' demo keeps its store in a git repository: install git, or run `bridge demo devices`")?;
    if !out.status.success() {
        return Err(anyhow!(
            "`git init --bare {}` failed ({}): {}",
            store.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// `bridge members add-runner ci`, its secret kept in [`SECRET_FILE`]
/// (readable by this user only) rather than shown.
fn add_runner(demo: &Demo, laptop: &Path) -> CliResult<String> {
    let path = demo.root.join(SECRET_FILE);
    outln!("[laptop]$ bridge members add-runner ci > ../{SECRET_FILE}");
    let out = demo
        .device_command(laptop, "laptop")
        .args(["members", "add-runner", "ci"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", demo.exe.display()))?;
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || secret.is_empty() {
        return Err(anyhow!(
            "`bridge members add-runner ci` on the laptop failed ({})",
            out.status
        )
        .into());
    }
    write_private(&path, &secret)?;
    Ok(secret)
}

/// Writes `text` to a new file only this user can read.
fn write_private(path: &Path, text: &str) -> CliResult<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{text}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// One runner job: a checkout of the repository, its shard, and the files
/// GitHub gives a step for its outputs and job summary.
struct Job {
    name: String,
    dir: PathBuf,
    shard: &'static str,
}

impl Job {
    /// A new job folder holding the laptop's bridge.toml, as a checkout of
    /// the repository would (shown as the command that copies it).
    fn check_out(demo: &Demo, laptop: &Path, name: &str, shard: &'static str) -> CliResult<Job> {
        let dir = demo.folder(name)?;
        let (from, to) = (laptop.join("bridge.toml"), dir.join("bridge.toml"));
        outln!("[{name}]$ cp ../laptop/bridge.toml .");
        std::fs::copy(&from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        Ok(Job {
            name: name.to_owned(),
            dir,
            shard,
        })
    }

    /// `bridge run --shard` in this job's folder with the runner identity
    /// and GitHub Actions' environment, its output piped to the demo.
    fn spawn(&self, demo: &Demo, secret: &str) -> CliResult<Child> {
        outln!(
            "[{}]$ BRIDGE_IDENTITY=\"$(cat ../{SECRET_FILE})\" GITHUB_ACTIONS=true \
             GITHUB_STEP_SUMMARY=summary.md GITHUB_OUTPUT=output.txt bridge run --shard {} &",
            self.name,
            self.shard
        );
        demo.device_command(&self.dir, &self.name)
            .env("BRIDGE_IDENTITY", secret)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", "summary.md")
            .env("GITHUB_OUTPUT", "output.txt")
            .args(["run", "--shard", self.shard])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", demo.exe.display()))
            .map_err(Into::into)
    }
}

/// A line one of the jobs printed: the job's index, whether on stdout.
type Line = (usize, bool, String);

/// What running the jobs did.
struct Drained {
    exits: Vec<ExitStatus>,
    /// The task the cancelled job was running when it got SIGTERM.
    interrupted: Option<String>,
}

/// Runs `jobs` together, showing their logs as they come; the job at
/// index `cancel` gets SIGTERM once its first counting task has started.
fn drive(demo: &Demo, jobs: &[Job], secret: &str, cancel: Option<usize>) -> CliResult<Drained> {
    let (tx, rx) = mpsc::channel::<Line>();
    let mut children = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let mut child = job.spawn(demo, secret)?;
        if let Some(out) = child.stdout.take() {
            forward(out, i, true, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward(err, i, false, tx.clone());
        }
        children.push(child);
    }
    // The channel ends when every job has closed its output.
    drop(tx);
    let mut logs: Vec<WorkflowLog> = jobs.iter().map(|_| WorkflowLog::default()).collect();
    let mut interrupted = None;
    for (i, on_stdout, line) in rx {
        let shown = if on_stdout {
            logs[i].line(&line)
        } else {
            Some(line.clone())
        };
        for l in shown.iter().flat_map(|s| s.lines()) {
            outln!("  [{}] {l}", jobs[i].name);
        }
        if cancel == Some(i) && on_stdout && interrupted.is_none() {
            interrupted = started_count(&line);
            if let Some(task) = &interrupted {
                terminate(&children[i], &jobs[i], task);
            }
        }
    }
    let mut exits = Vec::new();
    for (child, job) in children.iter_mut().zip(jobs) {
        let status = child
            .wait()
            .with_context(|| format!("cannot wait for the {}", job.name))?;
        exits.push(status);
    }
    Ok(Drained { exits, interrupted })
}

/// Sends each line of `from` to `tx` from a thread of its own (a job's
/// stdout and stderr are read at once: a full pipe would stall it).
fn forward(from: impl Read + Send + 'static, job: usize, on_stdout: bool, tx: mpsc::Sender<Line>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    if tx.send((job, on_stdout, line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// The task a runner's start line names, when it is a counting task (a
/// task of 2 seconds or more, so that SIGTERM lands while it runs).
fn started_count(line: &str) -> Option<String> {
    let rest = line.strip_prefix("▶ ")?;
    let (name_and_id, _) = rest.rsplit_once(") attempt ")?;
    let (name, _) = name_and_id.rsplit_once(" (")?;
    let name = name
        .replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%");
    name.starts_with("count[").then_some(name)
}

/// SIGTERM to the job's `bridge run`, shown as the command a person would
/// type; a job that has already exited is not an error.
fn terminate(child: &Child, job: &Job, task: &str) {
    outln!(
        "$ kill -TERM {}      # cancel the job of shard {} while {task} runs",
        child.id(),
        job.shard
    );
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    if let Err(e) = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    ) {
        tracing::debug!("SIGTERM to {}: {e}", job.name);
    }
}

/// Each job's exit, step outputs and job summary, as GitHub's run page
/// shows them.
fn show_summaries(jobs: &[Job], exits: &[ExitStatus]) {
    step("The jobs' summaries, as GitHub shows them on the run's page:");
    for (job, status) in jobs.iter().zip(exits) {
        let exit = match status.code() {
            Some(130) => "exit 130: stopped by a signal".to_owned(),
            Some(code) => format!("exit {code}"),
            None => format!("{status}"),
        };
        let outputs = std::fs::read_to_string(job.dir.join("output.txt")).unwrap_or_default();
        let outputs: Vec<&str> = outputs
            .lines()
            .filter(|l| !l.ends_with('=') && !l.is_empty())
            .collect();
        outln!(
            "\n── {} (shard {}), {exit}; step outputs: {}",
            job.name,
            job.shard,
            outputs.join(" ")
        );
        let summary = job.dir.join("summary.md");
        match std::fs::read_to_string(&summary) {
            Ok(md) => {
                for line in summary_text(&md).lines() {
                    outln!("   {line}");
                }
            }
            Err(e) => outln!(
                "   (no job summary: cannot read {}: {e})",
                summary.display()
            ),
        }
    }
}

/// How many tasks are neither done, failed nor cancelled at the laptop.
fn unfinished(demo: &Demo, laptop: &Path) -> CliResult<u64> {
    let v = demo.bridge_json(laptop, "laptop", &["status"])?;
    let count = |s: &str| v["counts"][s].as_u64().unwrap_or(0);
    let tasks = v["tasks"]
        .as_u64()
        .ok_or_else(|| anyhow!("`bridge status --json` on the laptop printed {v}"))?;
    Ok(tasks.saturating_sub(count("done") + count("failed") + count("cancelled")))
}

/// The laptop syncs; what the cancelled job left is finished by a re-run
/// of it, unless the other runner took it over.
fn finish_the_cancelled_work(
    demo: &Demo,
    laptop: &Path,
    secret: &str,
    drained: &Drained,
) -> CliResult<()> {
    step("The laptop syncs. What did the cancelled job leave?");
    demo.bridge(laptop, "laptop", &["sync"])?;
    let left = unfinished(demo, laptop)?;
    if left == 0 {
        outln!(
            "Nothing: runner-0 took over the tasks the cancelled job left (its log says \
             \"taken over from shard 1/2\")."
        );
        return Ok(());
    }
    // The cancelled job pushed its tasks back within a second; runner 0
    // did not read the store again before its own shard was done (a
    // runner syncs a few seconds apart), so it saw them still held.
    outln!(
        "{left} task{} left: runner-0 ended without taking over {}: the last time it \
         read the store, the cancelled job still held {}.",
        if left == 1 { " is" } else { "s are" },
        if drained.interrupted.is_some() {
            "the interrupted tasks"
        } else {
            "the cancelled job's tasks"
        },
        if drained.interrupted.is_some() {
            "them"
        } else {
            "its shard"
        }
    );
    step(
        "Re-running the cancelled job (GitHub: \"Re-run failed jobs\", a fresh checkout) finishes them:",
    );
    let rerun = [Job::check_out(demo, laptop, "runner-1-rerun", "1/2")?];
    let again = drive(demo, &rerun, secret, None)?;
    show_summaries(&rerun, &again.exits);
    step("The laptop syncs again:");
    demo.bridge(laptop, "laptop", &["sync"])?;
    let left = unfinished(demo, laptop)?;
    if left > 0 {
        return Err(anyhow!(
            "{left} tasks are still unfinished after the re-run of the cancelled job"
        ))
        .hint(format!(
            "see what is left with `cd {} && bridge ls`, and each runner's log above",
            laptop.display()
        ));
    }
    Ok(())
}

/// Every result at the laptop: the list, the interrupted task's attempts,
/// the failed task's output and the report.
fn show_results(demo: &Demo, laptop: &Path, interrupted: Option<&str>) -> CliResult<()> {
    step("Every result, on the laptop:");
    demo.bridge(laptop, "laptop", &["ls"])?;
    if let Some(task) = interrupted {
        step("The task the cancelled job was running: interrupted there, then done elsewhere:");
        demo.bridge(laptop, "laptop", &["show", task])?;
    }
    step("The task that failed on purpose, and why:");
    demo.bridge(laptop, "laptop", &["logs", "count-dracula"])?;
    step("The report, made on a runner from the counts' outputs:");
    let results = laptop.join("results");
    demo.bridge(laptop, "laptop", &["outputs", "report", "--to", "results"])?;
    let path = results.join("report.txt");
    let report = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    outln!("{report}");
    outln!(
        "Try it yourself: cd {} && bridge status\nOn GitHub: see \"GitHub Actions runners\" in the README (`bridge init --github`).",
        laptop.display()
    );
    Ok(())
}
