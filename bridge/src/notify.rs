//! Notifications (issue 17, item 7): a command of the user's, and with
//! `--notify` a desktop notification, when this device sees a batch finish
//! or a task fail for good, or when `dispatch --watch` stops watching.
//!
//! # The functions other commands call
//!
//! ```text
//! Notifier::new(ws: &Workspace, then: Option<String>, desktop: bool) -> Notifier
//!     the hooks of `[notify]` (bridge.toml, then .bridge/config.toml) plus
//!     `--then CMD` and `--notify`; `Notifier::is_active()` says whether any
//!     is set
//! notify::check(session: &Session, notifier: &Notifier)
//!     after a sync or a worker's pass: fires on-batch-done / on-task-failed
//!     for what became final since this device last looked, once per batch
//!     (per task) per device
//! notify::on_batch_done(notifier: &Notifier, batch: &BatchDone)
//! notify::on_task_failed(notifier: &Notifier, task: &TaskFailed)
//!     fire one event now (no once-only record: the caller decides)
//! notify::on_watch_done(notifier: &Notifier, watch: &WatchDone)
//!     `--then CMD` and `--notify` of a command that watched something
//!     (GitHub runs, the pool) until it ended
//! ```
//!
//! # Once per device
//!
//! Which batches and failed tasks were already announced is this device's
//! own state, `.bridge/notified.json`, never the store's: each device
//! notifies its own person. A device that has no such file yet (the hooks
//! were just set, or it just joined) records what is final already without
//! announcing it, so that setting a hook does not replay the pool's history.
//! A batch or task that stops being final (a retry) is forgotten, and
//! announced again when it ends again. `bridge work` keeps an existing
//! record up to date even without a hook, so that `--notify` next week does
//! not announce this week; `sync` reads the whole pool (which it otherwise
//! does not) only when a hook or `--notify` is set. The record is exactly
//! what is final in a whole view: a partial view (a runner's, which reads
//! documents as it needs them) would forget batches and announce them
//! twice, so `bridge run` looks only at its end, after reading them all,
//! and not on GitHub Actions.
//!
//! # Trust
//!
//! A hook's command comes only from this device's files and command line.
//! Everything the store says (task names, batch ids, counts) reaches it as
//! environment variables, never as text of the command, so a task named
//! `$(rm -rf ~)` is data to the hook, not code. Secrets were taken out of
//! this process's environment at start (see `secrets`), so the hook does not
//! inherit them.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bridge_model::{BatchId, Status};
use serde::{Deserialize, Serialize};

use crate::workspace::{Session, Workspace, now_ms};

/// How long a hook may run before it is killed (with every process it
/// started): a hook that hangs must not hang the worker.
const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// This device's record of what it announced, in `.bridge/`.
const STATE_FILE: &str = "notified.json";

/// What to run when something ends (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// `[notify] on-batch-done`.
    pub on_batch_done: Option<String>,
    /// `[notify] on-task-failed`.
    pub on_task_failed: Option<String>,
    /// `--then CMD`: run when a watch ends.
    pub then: Option<String>,
    /// `--notify`: also show a desktop notification.
    pub desktop: bool,
    /// The workspace folder: the hooks' working folder, and where the
    /// state file lives.
    root: PathBuf,
    /// The workspace id, for `BRIDGE_WORKSPACE`.
    workspace: String,
}

impl Notifier {
    /// The hooks of `ws` (see [`Workspace::notify_hooks`]) and of the
    /// command line.
    pub fn new(ws: &Workspace, then: Option<String>, desktop: bool) -> Notifier {
        let hooks = ws.notify_hooks();
        let set = |h: Option<String>| h.filter(|c| !c.trim().is_empty());
        Notifier {
            on_batch_done: set(hooks.on_batch_done),
            on_task_failed: set(hooks.on_task_failed),
            then: set(then),
            desktop,
            root: ws.root.clone(),
            workspace: ws.config.workspace.id.clone(),
        }
    }

    /// Whether any hook or `--notify` is set: a command that would have to
    /// load the whole pool for [`check`] (`sync`) calls it only then.
    pub fn is_active(&self) -> bool {
        self.on_batch_done.is_some() || self.on_task_failed.is_some() || self.desktop
    }
}

/// A batch whose last task became final.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchDone {
    /// The batch.
    pub batch: String,
    /// How many of its tasks ended in each final status.
    pub counts: BTreeMap<Status, usize>,
}

impl BatchDone {
    /// `done` when every task is done, `failed` when any failed or was
    /// skipped or refused, else `cancelled`.
    pub fn status(&self) -> &'static str {
        let n = |s| self.counts.get(&s).copied().unwrap_or(0);
        let total: usize = self.counts.values().sum();
        if n(Status::Done) == total {
            "done"
        } else if n(Status::Failed) + n(Status::Skipped) + n(Status::Untrusted) > 0 {
            "failed"
        } else {
            "cancelled"
        }
    }
}

/// A task that failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailed {
    /// Its id.
    pub task: String,
    /// Its name (the submitter's text: data, never code).
    pub name: String,
    /// Its batch.
    pub batch: String,
    /// Its failed attempts.
    pub attempts: u64,
}

/// The end of a watch (`dispatch --watch`, `bridge watch`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchDone {
    /// What was watched, e.g. `dispatch`.
    pub what: String,
    /// `done`, `failed` or whatever the watcher's own word is.
    pub status: String,
    /// The GitHub run, if one was watched.
    pub run_id: Option<u64>,
    /// Its page.
    pub run_url: Option<String>,
    /// Task counts, as the watcher saw them.
    pub done: u64,
    pub failed: u64,
    pub left: u64,
}

/// One thing to announce: its kind, its environment variables, its text.
struct Event {
    kind: &'static str,
    vars: Vec<(&'static str, String)>,
    title: String,
    message: String,
}

/// Fires `on-batch-done` (and the desktop notification) for `batch` now.
pub fn on_batch_done(n: &Notifier, batch: &BatchDone) {
    let count = |s: Status| batch.counts.get(&s).copied().unwrap_or(0).to_string();
    let total: usize = batch.counts.values().sum();
    let short = batch.batch.get(..12).unwrap_or(&batch.batch);
    let summary: Vec<String> = batch
        .counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    let event = Event {
        kind: "batch-done",
        vars: vec![
            ("BRIDGE_BATCH", batch.batch.clone()),
            ("BRIDGE_STATUS", batch.status().to_owned()),
            ("BRIDGE_TASKS", total.to_string()),
            ("BRIDGE_DONE", count(Status::Done)),
            ("BRIDGE_FAILED", count(Status::Failed)),
            ("BRIDGE_CANCELLED", count(Status::Cancelled)),
            ("BRIDGE_SKIPPED", count(Status::Skipped)),
        ],
        title: format!("bridge: batch {short} {}", batch.status()),
        message: summary.join(", "),
    };
    fire(
        n,
        n.on_batch_done.as_deref(),
        "[notify] on-batch-done",
        &event,
    );
}

/// Fires `on-task-failed` (and the desktop notification) for `task` now.
pub fn on_task_failed(n: &Notifier, task: &TaskFailed) {
    let event = Event {
        kind: "task-failed",
        vars: vec![
            ("BRIDGE_TASK", task.task.clone()),
            ("BRIDGE_TASK_NAME", task.name.clone()),
            ("BRIDGE_BATCH", task.batch.clone()),
            ("BRIDGE_STATUS", "failed".to_owned()),
            ("BRIDGE_ATTEMPTS", task.attempts.to_string()),
        ],
        title: format!("bridge: {} failed", crate::output::safe(&task.name)),
        message: format!(
            "after {} attempt{}: `bridge logs {}`",
            task.attempts,
            if task.attempts == 1 { "" } else { "s" },
            task.task.get(..12).unwrap_or(&task.task)
        ),
    };
    fire(
        n,
        n.on_task_failed.as_deref(),
        "[notify] on-task-failed",
        &event,
    );
}

/// Fires `--then CMD` (and the desktop notification) at the end of a watch.
pub fn on_watch_done(n: &Notifier, watch: &WatchDone) {
    let mut vars = vec![
        ("BRIDGE_STATUS", watch.status.clone()),
        ("BRIDGE_DONE", watch.done.to_string()),
        ("BRIDGE_FAILED", watch.failed.to_string()),
        ("BRIDGE_LEFT", watch.left.to_string()),
    ];
    if let Some(id) = watch.run_id {
        vars.push(("BRIDGE_RUN_ID", id.to_string()));
    }
    if let Some(url) = &watch.run_url {
        vars.push(("BRIDGE_RUN_URL", url.clone()));
    }
    let event = Event {
        kind: "watch-done",
        vars,
        title: format!("bridge {}: {}", watch.what, watch.status),
        message: format!(
            "{} done, {} failed, {} left",
            watch.done, watch.failed, watch.left
        ),
    };
    fire(n, n.then.as_deref(), "--then", &event);
}

/// Runs `hook` (when set) and the desktop notification (with `--notify`).
fn fire(n: &Notifier, hook: Option<&str>, origin: &str, event: &Event) {
    if let Some(command) = hook {
        run_hook(n, command, origin, event);
    }
    if n.desktop {
        desktop(&event.title, &event.message);
    }
}

/// The environment a hook gets on top of this process's: the event's
/// variables, with the workspace and a one-line message. NUL, which no
/// environment can hold, is dropped from the store's text.
fn hook_env(n: &Notifier, event: &Event) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("BRIDGE_EVENT", event.kind.to_owned()),
        ("BRIDGE_WORKSPACE", n.workspace.clone()),
        (
            "BRIDGE_MESSAGE",
            format!("{}: {}", event.title, event.message),
        ),
    ];
    vars.extend(event.vars.iter().cloned());
    vars.into_iter()
        .map(|(k, v)| (k, v.replace('\0', "")))
        .collect()
}

/// Runs one hook with `sh -c`, in the workspace folder, its stdin empty and
/// its output on stderr (stdout may be a `--json` report), in a process
/// group of its own so that a timeout kills all of it. A hook that fails is
/// a warning: the work it reports on is done either way.
fn run_hook(n: &Notifier, command: &str, origin: &str, event: &Event) {
    use std::os::unix::process::CommandExt as _;
    let stdout = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&n.root)
        .envs(hook_env(n, event))
        .stdin(Stdio::null())
        .stdout(stdout)
        .process_group(0);
    tracing::debug!(
        hook = origin,
        event = event.kind,
        "running a notification hook"
    );
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot start the {origin} hook `{command}` with sh: {e}");
            return;
        }
    };
    match wait_bounded(child, HOOK_TIMEOUT) {
        Ok(status) if status.success() => {}
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt as _;
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                (None, None) => format!("ended with {status}"),
            };
            tracing::warn!(
                "the {origin} hook `{command}` {how} (a {} event); its output, if any, is above: fix the command in your configuration",
                event.kind
            );
        }
        Err(why) => tracing::warn!("the {origin} hook `{command}` {why}"),
    }
}

/// Waits for `child` at most `limit`; past it, kills its process group.
fn wait_bounded(
    mut child: std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus, String> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    // A thread waits, so that this works inside the worker's runtime and
    // outside it alike.
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(format!("could not be waited for: {e}")),
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                // The group may be gone already (ESRCH): nothing to kill.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(format!("ran past {}s and was stopped", limit.as_secs()))
        }
    }
}

/// A desktop notification: `notify-send` (freedesktop: Linux, BSD) or, on
/// macOS, `osascript`, whichever is on PATH; the text goes as arguments,
/// never inside a script.
fn desktop(title: &str, message: &str) {
    let title = crate::output::safe(title).into_owned();
    let message = crate::output::safe(message).into_owned();
    let mut cmd = if let Some(p) = on_path("notify-send") {
        let mut c = Command::new(p);
        c.args(["--app-name=bridge", "--", title.as_str(), message.as_str()]);
        c
    } else if let Some(p) = on_path("osascript") {
        let mut c = Command::new(p);
        c.args([
            "-e",
            "on run argv",
            "-e",
            "display notification (item 2 of argv) with title (item 1 of argv)",
            "-e",
            "end run",
            title.as_str(),
            message.as_str(),
        ]);
        c
    } else {
        warn_no_desktop();
        return;
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    match cmd.spawn() {
        Ok(child) => match wait_bounded(child, Duration::from_secs(10)) {
            Ok(s) if s.success() => {}
            Ok(s) => tracing::warn!("--notify: the desktop notification failed ({s})"),
            Err(why) => tracing::warn!("--notify: the desktop notifier {why}"),
        },
        Err(e) => tracing::warn!("--notify: cannot start the desktop notifier: {e}"),
    }
}

/// Says once per process that `--notify` has nothing to show notifications
/// with.
fn warn_no_desktop() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            "--notify: neither notify-send nor osascript is on PATH, so no desktop notification is shown; install libnotify (e.g. `apt install libnotify-bin`), or set a [notify] hook instead"
        );
    });
}

/// The executable `name` in a folder of PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `.bridge/notified.json`: what this device has announced.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Announced {
    /// Batches announced as finished (and still finished).
    batches: BTreeSet<String>,
    /// Tasks announced as failed for good (and still failed).
    failed: BTreeSet<String>,
}

/// What a view says has ended: finished batches with their counts, and
/// tasks failed for good.
#[derive(Debug, Default)]
struct Ended {
    batches: BTreeMap<String, BatchDone>,
    failed: BTreeMap<String, TaskFailed>,
}

fn ended(session: &Session) -> Ended {
    let derived = session.view().derive(now_ms(), session.policy);
    let mut open: BTreeSet<&BatchId> = BTreeSet::new();
    let mut counts: BTreeMap<&BatchId, BTreeMap<Status, usize>> = BTreeMap::new();
    let mut out = Ended::default();
    for t in session.view().tasks() {
        let Some(d) = derived.get(&t.id) else {
            continue;
        };
        let batch = t.home().batch();
        if d.status.is_final() {
            *counts
                .entry(batch)
                .or_default()
                .entry(d.status)
                .or_default() += 1;
        } else {
            open.insert(batch);
        }
        if d.status == Status::Failed {
            out.failed.insert(
                t.id.to_string(),
                TaskFailed {
                    task: t.id.to_string(),
                    name: t.spec.name.clone(),
                    batch: batch.to_string(),
                    attempts: d.failures.0,
                },
            );
        }
    }
    for (batch, counts) in counts {
        if !open.contains(batch) {
            out.batches.insert(
                batch.to_string(),
                BatchDone {
                    batch: batch.to_string(),
                    counts,
                },
            );
        }
    }
    out
}

/// What to announce now, given what was announced (`None`: nothing yet, so
/// record without announcing), and the new record.
fn news(before: Option<Announced>, now: &Ended) -> (Vec<&BatchDone>, Vec<&TaskFailed>, Announced) {
    let record = Announced {
        batches: now.batches.keys().cloned().collect(),
        failed: now.failed.keys().cloned().collect(),
    };
    let Some(before) = before else {
        return (Vec::new(), Vec::new(), record);
    };
    let batches = now
        .batches
        .iter()
        .filter(|(id, _)| !before.batches.contains(*id))
        .map(|(_, b)| b)
        .collect();
    let failed = now
        .failed
        .iter()
        .filter(|(id, _)| !before.failed.contains(*id))
        .map(|(_, t)| t)
        .collect();
    // A batch or task that left the view (archived, compacted away) is
    // forgotten with it; one still there but no longer final (retried) too,
    // so that it is announced when it ends again.
    (batches, failed, record)
}

/// Fires the hooks for every batch that finished and every task that failed
/// for good since this device last looked (see the module docs). Problems
/// with the state file are warnings: a notification is not worth failing
/// the command that did the work.
///
/// It needs a view of the whole pool (a session that loaded every
/// document): a batch missing from a partial view would be forgotten and
/// announced again. Without any hook it only keeps an existing record up to
/// date (so that `--notify` next week does not announce this week), and
/// does nothing at all where there is no record.
pub fn check(session: &Session, n: &Notifier) {
    let path = session
        .ws
        .root
        .join(crate::workspace::STATE_DIR)
        .join(STATE_FILE);
    if !n.is_active() && !path.exists() {
        return;
    }
    let now = ended(session);
    let (batches, failed) = match update_state(&path, &now) {
        Ok(news) => news,
        Err(e) => {
            tracing::warn!(
                "cannot record the notifications sent in {}: {e}; none are sent this time (check the folder's permissions)",
                path.display()
            );
            return;
        }
    };
    for b in batches {
        on_batch_done(n, &b);
    }
    for t in failed {
        on_task_failed(n, &t);
    }
}

/// Reads, updates and writes the state file under a lock (a `sync` and a
/// `work` of this device may look at once, and each event must fire once);
/// returns what to announce. The record is written before anything fires:
/// at most once, rather than twice after a crash.
fn update_state(
    path: &Path,
    now: &Ended,
) -> Result<(Vec<BatchDone>, Vec<TaskFailed>), std::io::Error> {
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    lock.lock()?;
    let before = match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Announced>(&bytes) {
            Ok(a) => Some(a),
            Err(e) => {
                // A damaged record: start again from what is final now
                // rather than announce the whole history.
                tracing::warn!(
                    "{} is damaged ({e}); starting a new record of notifications",
                    path.display()
                );
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let (batches, failed, record) = news(before, now);
    let (batches, failed) = (
        batches.into_iter().cloned().collect(),
        failed.into_iter().cloned().collect(),
    );
    let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
    // Durable: written before anything fires, so that a crash after it
    // announces nothing twice.
    bridge_store::replace_file(path, &bytes, 0o666, true)?;
    drop(lock);
    Ok((batches, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended_with(batches: &[(&str, Status)], failed: &[&str]) -> Ended {
        let mut e = Ended::default();
        for (b, s) in batches {
            e.batches.insert(
                (*b).to_owned(),
                BatchDone {
                    batch: (*b).to_owned(),
                    counts: [(*s, 1)].into(),
                },
            );
        }
        for t in failed {
            e.failed.insert(
                (*t).to_owned(),
                TaskFailed {
                    task: (*t).to_owned(),
                    name: "n".into(),
                    batch: "b".into(),
                    attempts: 1,
                },
            );
        }
        e
    }

    #[test]
    fn a_first_look_records_without_announcing() {
        let now = ended_with(&[("b1", Status::Done)], &["t1"]);
        let (b, t, record) = news(None, &now);
        assert!(b.is_empty() && t.is_empty());
        assert_eq!(record.batches, BTreeSet::from(["b1".to_owned()]));
        assert_eq!(record.failed, BTreeSet::from(["t1".to_owned()]));
    }

    #[test]
    fn each_end_is_announced_once_and_again_after_a_retry() {
        let first = ended_with(&[("b1", Status::Done)], &[]);
        let (_, _, seen) = news(Some(Announced::default()), &first);
        let second = ended_with(&[("b1", Status::Done), ("b2", Status::Failed)], &["t2"]);
        let (b, t, seen) = news(Some(seen), &second);
        assert_eq!(
            b.iter().map(|b| b.batch.as_str()).collect::<Vec<_>>(),
            ["b2"]
        );
        assert_eq!(
            t.iter().map(|t| t.task.as_str()).collect::<Vec<_>>(),
            ["t2"]
        );
        // b2 retried: no longer final, so forgotten …
        let third = ended_with(&[("b1", Status::Done)], &[]);
        let (b, _, seen) = news(Some(seen), &third);
        assert!(b.is_empty());
        // … and announced when it ends again.
        let (b, t, _) = news(Some(seen), &second);
        assert_eq!(b.len(), 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_batch_status_is_done_failed_or_cancelled() {
        let batch = |c: &[(Status, usize)]| BatchDone {
            batch: "b".into(),
            counts: c.iter().copied().collect(),
        };
        assert_eq!(batch(&[(Status::Done, 3)]).status(), "done");
        assert_eq!(
            batch(&[(Status::Done, 3), (Status::Skipped, 1)]).status(),
            "failed"
        );
        assert_eq!(
            batch(&[(Status::Done, 1), (Status::Cancelled, 2)]).status(),
            "cancelled"
        );
    }

    #[test]
    fn the_stores_text_is_environment_data_without_nul() {
        let n = Notifier {
            workspace: "ws".into(),
            ..Notifier::default()
        };
        let event = Event {
            kind: "task-failed",
            vars: vec![("BRIDGE_TASK_NAME", "$(touch x)\0;y".to_owned())],
            title: "t".into(),
            message: "m".into(),
        };
        let env = hook_env(&n, &event);
        assert!(env.contains(&("BRIDGE_TASK_NAME", "$(touch x);y".to_owned())));
        assert!(env.contains(&("BRIDGE_EVENT", "task-failed".to_owned())));
    }
}
