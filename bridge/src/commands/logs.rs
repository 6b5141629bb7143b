//! `bridge logs`: the stdout and stderr of a task's attempt.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use bridge_model::view::canonical_result;
use bridge_model::{Attempt, Status, TaskId};
use bridge_store::BlobId;
use clap::Args;

use super::GlobalArgs;
use super::common::{one_task_or_list, open_session, resolve_target};
use crate::error::{CliError, CliResult, EXIT_OK, HintExt as _};
use crate::workspace::{Session, now_ms};

/// Print the output of a task's attempt
///
/// Shows the attempt that produced the result, or else the latest attempt.
/// The whole log is printed when its blob is in the local replica; otherwise
/// the tail kept in the task document. A matrix entry's name (`count` for
/// `count[book=alice]`, …) or a batch lists its tasks instead.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The task (id, id prefix or name), or a matrix entry or batch to list
    pub task: String,
    /// Only stdout
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Only stderr
    #[arg(long)]
    pub stderr: bool,
    /// Another attempt, by its key (see `bridge show`)
    #[arg(long, value_name = "KEY")]
    pub attempt: Option<String>,
    /// Follow a running task: its output as it is written when it runs on
    /// this device; when it runs elsewhere, its log once that device
    /// pushes its result (syncing every --interval)
    #[arg(long, short = 'f', conflicts_with = "attempt")]
    pub follow: bool,
    /// With --follow, how often to sync for a task running elsewhere
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub interval: String,
}

pub fn run(g: &GlobalArgs, args: LogsArgs) -> CliResult<u8> {
    let mut session = open_session(g)?;
    let target = resolve_target(&mut session, &args.task)?;
    let Some(id) = one_task_or_list(&session, &target, &args.task, "logs")? else {
        return Ok(EXIT_OK);
    };
    if args.follow {
        let interval = humantime::parse_duration(&args.interval)
            .with_context(|| format!("--interval {} is not a duration", args.interval))
            .hint("write e.g. 5s or 1m")?;
        session = wait_until_started(g, session, &id, interval)?;
        let derived = session.view().derive(now_ms(), session.policy);
        if let Some(key) = derived
            .get(&id)
            .filter(|d| d.status == Status::Running)
            .and_then(|d| d.claim.clone())
        {
            match follow(g, session, &id, &key, &args, interval)? {
                Some(after) => session = after,
                None => return Ok(EXIT_OK),
            }
        }
    }
    let Some(t) = session.view().get(&id) else {
        return Ok(EXIT_OK);
    };
    let attempt = match &args.attempt {
        Some(k) => t.facts.attempts.get(k).ok_or_else(|| {
            CliError::hint(
                anyhow!("task {} has no attempt `{k}`", id.short()),
                "list its attempts with `bridge show`",
            )
        })?,
        None => match canonical_result(&t.facts).or_else(|| {
            t.facts
                .attempts
                .values()
                .max_by_key(|a| (a.ended_at, a.key.clone()))
        }) {
            Some(a) => a,
            None => {
                return Err(CliError::hint(
                    anyhow!("task {} ({}) has not run yet", id.short(), t.spec.name),
                    "run it with `bridge work`, or `bridge sync` to fetch results from elsewhere",
                ));
            }
        },
    };
    // The task's own bytes: as they are into a file or a pipe, with control
    // characters escaped on a terminal (issue 12, item 21: a task's output
    // must not drive the reader's terminal).
    if !args.stderr {
        crate::output::write_stdout_bytes(&log(&session, attempt, true));
    }
    if !args.stdout {
        let err = log(&session, attempt, false);
        if args.stderr {
            crate::output::write_stdout_bytes(&err);
        } else {
            crate::output::write_stderr_bytes(&err);
        }
    }
    Ok(EXIT_OK)
}

fn log(session: &Session, a: &Attempt, stdout: bool) -> Vec<u8> {
    let (blob, tail) = if stdout {
        (&a.stdout_blob, &a.stdout_tail)
    } else {
        (&a.stderr_blob, &a.stderr_tail)
    };
    if let Some(id) = blob.as_deref().and_then(|b| b.parse::<BlobId>().ok()) {
        match session.vault.read_blob(&id) {
            Ok(bytes) => return bytes,
            Err(e) => tracing::warn!("showing the tail only: {e}"),
        }
    }
    tail.as_bytes().to_vec()
}

/// How often a task running here is read while followed.
const READ_EVERY: Duration = Duration::from_millis(200);

/// Follows task `id`, running under claim `key`, until it ends: prints its
/// output as it is written when it runs on this device, else waits
/// (syncing) for the device running it to push its result. Returns the
/// session as it is afterwards, for the caller to print the attempt that
/// came (none when it printed everything itself).
fn follow(
    g: &GlobalArgs,
    session: Session,
    id: &TaskId,
    key: &str,
    args: &LogsArgs,
    interval: Duration,
) -> CliResult<Option<Session>> {
    let work_area = session.ws.work_dir();
    let Some((stdout, stderr)) = bridge_engine::worker::running_log_files(&work_area, id, key)
    else {
        errln!(
            "task {} is running on another device ({}): following what it pushes, syncing every {}; its output arrives with its result",
            id.short(),
            key.split('.').next().unwrap_or(key),
            humantime::format_duration(interval)
        );
        return wait_elsewhere(g, session, id, key, interval).map(Some);
    };
    let mut printed = (0u64, 0u64);
    let worker = worker_pid(&stdout);
    // Until the worker keeps the logs and removes the files (or dies:
    // killed, it leaves them behind until the next worker clears them).
    while stdout.is_file() && worker.is_none_or(is_alive) {
        if !args.stderr {
            printed.0 += copy_new(&stdout, printed.0, true);
        }
        if !args.stdout {
            printed.1 += copy_new(&stderr, printed.1, args.stderr);
        }
        std::thread::sleep(READ_EVERY);
    }
    drop(session);
    // The attempt lands in the replica with the worker's next group
    // commit: read the rest of the logs from it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let session = open_session(g)?;
        let attempt = session
            .view()
            .get(id)
            .and_then(|t| t.facts.attempts.get(key).cloned());
        if let Some(a) = attempt {
            if !args.stderr {
                let out = log(&session, &a, true);
                crate::output::write_stdout_bytes(
                    out.get(printed.0 as usize..).unwrap_or_default(),
                );
            }
            if !args.stdout {
                let err = log(&session, &a, false);
                let rest = err.get(printed.1 as usize..).unwrap_or_default();
                if args.stderr {
                    crate::output::write_stdout_bytes(rest);
                } else {
                    crate::output::write_stderr_bytes(rest);
                }
            }
            return Ok(None);
        }
        if std::time::Instant::now() > deadline || worker.is_some_and(|pid| !is_alive(pid)) {
            return Err(CliError::hint(
                anyhow!(
                    "task {} stopped running here but recorded no attempt",
                    id.short()
                ),
                "its worker may have been killed; `bridge show` says where it stands",
            ));
        }
        std::thread::sleep(READ_EVERY);
    }
}

/// The process id of the worker writing `log` (its folder is
/// `w-<pid>-<random>`, see `bridge_engine::workarea`).
fn worker_pid(log: &Path) -> Option<i32> {
    let folder = log.parent()?.file_name()?.to_str()?;
    folder.strip_prefix("w-")?.split('-').next()?.parse().ok()
}

/// Whether process `pid` still runs (signal 0: a check, nothing sent).
fn is_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

/// Copies the bytes of `path` from `from` on to stdout (or stderr unless
/// `to_stdout`); how many.
fn copy_new(path: &Path, from: u64, to_stdout: bool) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    let mut new = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut new).is_err() {
        return 0;
    }
    if to_stdout {
        crate::output::write_stdout_bytes(&new);
    } else {
        crate::output::write_stderr_bytes(&new);
    }
    new.len() as u64
}

/// Waits while task `id` is pending or blocked, syncing every `interval`
/// (a task followed before any worker took it).
fn wait_until_started(
    g: &GlobalArgs,
    mut session: Session,
    id: &TaskId,
    interval: Duration,
) -> CliResult<Session> {
    let mut said = false;
    loop {
        let derived = session.view().derive(now_ms(), session.policy);
        let waiting = derived
            .get(id)
            .is_some_and(|d| matches!(d.status, Status::Pending | Status::Blocked));
        if !waiting {
            return Ok(session);
        }
        if !said {
            errln!(
                "task {} has not started: waiting for a worker to take it (syncing every {})",
                id.short(),
                humantime::format_duration(interval)
            );
            said = true;
        }
        std::thread::sleep(interval);
        super::common::sync_remote(&mut session, false)?;
        session = reopen(g, session)?;
    }
}

/// Syncs every `interval` until the attempt under `key` arrives (or the
/// task stops running: its claim expired or was released).
fn wait_elsewhere(
    g: &GlobalArgs,
    mut session: Session,
    id: &TaskId,
    key: &str,
    interval: Duration,
) -> CliResult<Session> {
    loop {
        let arrived = session
            .view()
            .get(id)
            .is_some_and(|t| t.facts.attempts.contains_key(key));
        let derived = session.view().derive(now_ms(), session.policy);
        let running = derived
            .get(id)
            .is_some_and(|d| d.status == Status::Running && d.claim.as_deref() == Some(key));
        if arrived || !running {
            return Ok(session);
        }
        std::thread::sleep(interval);
        super::common::sync_remote(&mut session, false)?;
        session = reopen(g, session)?;
    }
}

/// The workspace read again (what a sync brought).
fn reopen(g: &GlobalArgs, session: Session) -> CliResult<Session> {
    drop(session);
    open_session(g)
}
