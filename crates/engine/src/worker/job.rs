//! Running one claimed task ([`Job::run`]): its command checked and built,
//! its working folder and inputs prepared, the process run under its
//! supervisor and sandbox, its logs and outputs stored, and the attempt
//! that records all this, or the [`LocalFault`] that keeps it from being
//! recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bridge_exec::{Program, TaskCommand};
use bridge_model::{Attempt, Command, InputRef, Millis, Outcome, SmallMap, TaskId, TaskSpec};
use tokio_util::sync::CancellationToken;

use super::LocalFault;
use super::fault::{chain_text, local_fault, local_fault_in_message, work_dir_full};
use super::inputs::{InputError, Prepared, prepare};
use super::spares::{AttemptFiles, Spares};
use crate::clock::Clock;
use crate::sandbox::{Sandbox, SandboxError};
use crate::vault::{Placement, Vault};
use bridge_fetch::Fetcher;

/// How many trailing bytes of each log are kept inline in the attempt.
pub(super) const TAIL_BYTES: usize = 2048;
/// How long a stopping task gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// A task that ended: its id, claim key, attempt, and why the attempt is
/// not to be recorded, when it is not.
pub(super) struct Finished {
    pub id: TaskId,
    pub key: String,
    pub attempt: Attempt,
    pub unrecorded: Option<NotRecorded>,
    /// The task's slot, when it is given back only once the attempt is
    /// recorded ([`Runner::hold_slots`]).
    pub slot: Option<Slot>,
}

/// Why a job's attempt is not recorded (its claim is released).
pub(super) enum NotRecorded {
    /// This machine could not run the task (see [`LocalFault`]).
    Fault(LocalFault),
    /// The worker stopped before the task had a slot: nothing of it ran.
    NotStarted,
}

/// The worker's task slots. A job starts with a [`Ticket`] and no slot:
/// it prepares its task (folder, inputs, and a supervisor that sets up the
/// sandbox and waits), then takes a slot, which the task's process holds
/// until it has ended, not while its results are stored, so the next task
/// starts at once (`--parallel` bounds the tasks that run at once, not the
/// preparation and bookkeeping around them; issue 18, item 1).
pub(super) struct Slots {
    free: Arc<tokio::sync::Semaphore>,
    /// Jobs started that hold no slot yet.
    waiting: std::sync::atomic::AtomicUsize,
    /// Told when a waiting job takes a slot (another may get ready then).
    taken: tokio::sync::Notify,
    /// The claims whose tasks took a slot since the loop last looked (it
    /// announces them: a task has started when it has a slot).
    started: std::sync::Mutex<Vec<String>>,
}

impl Slots {
    /// `parallel` slots, all free.
    pub fn new(parallel: usize) -> Slots {
        Slots {
            free: Arc::new(tokio::sync::Semaphore::new(parallel)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            taken: tokio::sync::Notify::new(),
            started: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A new job's right to a slot.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ticket(Some(self.clone()))
    }

    /// How many jobs wait for a slot (or get ready to).
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many slots are free.
    pub fn free(&self) -> usize {
        self.free.available_permits()
    }

    /// Resolves once a waiting job has taken a slot (at once if one has
    /// since the last call).
    pub async fn taken(&self) {
        self.taken.notified().await;
    }

    /// The claims whose tasks took a slot since the last call.
    pub fn started(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .started
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// A job's right to a slot, until it takes one (or gives up).
pub(super) struct Ticket(Option<Arc<Slots>>);

impl Ticket {
    /// Waits for a free slot and takes it for the task of claim `key`.
    async fn take(mut self, key: &str) -> Slot {
        let slots = self.0.take();
        let permit = match &slots {
            Some(s) => s.free.clone().acquire_owned().await.ok(),
            None => None,
        };
        if let Some(s) = &slots {
            s.waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            s.started
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(key.to_owned());
            s.taken.notify_one();
        }
        Slot(permit)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            s.taken.notify_one();
        }
    }
}

/// A taken slot, given back when dropped. (`None`: the semaphore closed,
/// which it never is.)
pub(super) struct Slot(#[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>);

/// What every job of one worker shares.
#[derive(Clone)]
pub(super) struct Runner {
    pub vault: Arc<Vault>,
    /// Shared by every task, so that tasks needing the same URL input wait
    /// for one download.
    pub fetcher: Arc<Fetcher>,
    pub work_dir: PathBuf,
    /// How tasks are started (see [`task_supervisor`]).
    pub supervisor: Option<bridge_exec::Supervisor>,
    /// What they may see.
    pub sandbox: Arc<Sandbox>,
    pub device: String,
    pub provenance: BTreeMap<String, String>,
    pub clock: Arc<dyn Clock>,
    /// The worker's variables its tasks inherit
    /// ([`Settings::task_env`](crate::settings::Settings::task_env)).
    pub inherited_env: Arc<BTreeMap<String, String>>,
    /// The largest output file stored, in plain bytes: what seals within
    /// the remote's largest object ([`super::WorkOptions::max_object`]).
    pub max_output: Option<u64>,
    /// Attempt files kept for the next task.
    pub spares: Arc<Spares>,
    /// Whether a slot goes back to the loop with the attempt, rather than
    /// when the task's process ends: under `--halt`, no task may start
    /// before the loop has seen whether the last one's failure halts it.
    pub hold_slots: bool,
}

/// One task to run, with everything it needs (owned, so it can run on the
/// runtime while the loop goes on).
pub(super) struct Job {
    pub runner: Runner,
    pub id: TaskId,
    pub key: String,
    pub spec: TaskSpec,
    /// The outputs of the tasks it needs, placed under `needs/<name>/`.
    pub need_inputs: Vec<InputRef>,
    /// Where its logs and outputs go: with its batch (private to the
    /// batch's audience when it has one).
    pub placement: Placement,
}

/// The path of one of an attempt's files under `work_dir` (`suffix`: ""
/// for its working folder, ".stdout", ".stderr", ".tmp").
pub(crate) fn attempt_path(work_dir: &Path, id: &TaskId, key: &str, suffix: &str) -> PathBuf {
    let slug = key.replace('.', "-");
    work_dir.join(format!("{}-{slug}{suffix}", id.short()))
}

/// The stdout and stderr files of a running attempt of task `id` under
/// claim `key`, written by any worker of this workspace (`work_area`: the
/// workspace's work folder, holding one folder per worker process), while
/// it runs: `bridge logs -f` follows them.
pub fn running_log_files(work_area: &Path, id: &TaskId, key: &str) -> Option<(PathBuf, PathBuf)> {
    let workers = std::fs::read_dir(work_area).ok()?;
    workers
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("w-") && e.path().is_dir())
        .map(|e| {
            let at = |suffix| attempt_path(&e.path(), id, key, suffix);
            (at(".stdout"), at(".stderr"))
        })
        .find(|(stdout, _)| stdout.is_file())
}

impl Job {
    /// Runs the task until it ends or `stop`; never fails: what goes wrong
    /// is the attempt's outcome, or the machine's [`LocalFault`].
    pub async fn run(self, stop: CancellationToken, ticket: Ticket) -> Finished {
        let started_at = self.runner.clock.now_ms();
        let paths = self.paths();
        let mut attempt = blank_attempt(
            &self.key,
            &self.runner.device,
            &self.runner.provenance,
            started_at,
        );
        let mut held = None;
        let unrecorded = self
            .attempt(&paths, &mut attempt, (stop, ticket), &mut held)
            .await;
        Finished {
            id: self.id,
            key: self.key,
            attempt,
            unrecorded,
            slot: held,
        }
    }

    /// Where the attempt keeps its files, all under the worker's folder:
    /// the key's counter part keeps folders of one process apart; the
    /// writer part keeps processes apart.
    fn paths(&self) -> AttemptFiles {
        AttemptFiles::named(attempt_path(&self.runner.work_dir, &self.id, &self.key, ""))
    }

    /// The attempt's steps, filling `attempt`; `Some` when it is not to be
    /// recorded: the machine failed, not the task, or the task never had a
    /// slot.
    async fn attempt(
        &self,
        paths: &AttemptFiles,
        attempt: &mut Attempt,
        (stop, ticket): (CancellationToken, Ticket),
        held: &mut Option<Slot>,
    ) -> Option<NotRecorded> {
        // A stored spec need not have come through `submit`'s checks (a
        // member can write any document): one that breaks a limit is an
        // `error` attempt, and nothing of it is run or written to disk.
        let mut cmd = match task_command(
            &self.spec,
            &self.id,
            &self.key,
            (&self.runner.device, &self.runner.inherited_env),
            (&paths.dir, &paths.stdout, &paths.stderr),
        ) {
            Ok(cmd) => cmd,
            Err(e) => {
                attempt.message = Some(format!("this task cannot be run: {}", chain_text(&e)));
                attempt.ended_at = self.runner.clock.now_ms();
                return None;
            }
        };
        // The attempt's files, empty, from the last task's where they
        // were kept (see `spares`); its folder and TMPDIR are made below
        // where they were not.
        let reused = self.runner.spares.take(paths);
        let guard = FilesGuard {
            files: paths,
            spares: &self.runner.spares,
        };
        match self.prepare(paths, &stop).await {
            Ok(()) => {}
            Err(Unprepared::Fault(fault)) => return Some(NotRecorded::Fault(fault)),
            Err(Unprepared::Ended(outcome, message)) => {
                attempt.outcome = outcome;
                attempt.message = Some(message);
                attempt.ended_at = self.runner.clock.now_ms();
                guard.give_back();
                return None;
            }
        }
        // The task's own TMPDIR, next to its working folder (so output
        // globs never see it): the sandbox closes the worker's /tmp (with
        // namespaces this folder is mounted over /tmp), and tasks should not
        // see each other's temporary files.
        if !reused && let Err(e) = std::fs::create_dir(&paths.tmp) {
            return Some(NotRecorded::Fault(LocalFault(format!(
                "cannot create the temporary folder {}: {e}",
                paths.tmp.display()
            ))));
        }
        if let Some(path) = paths.tmp.to_str() {
            cmd.env
                .entry("TMPDIR".to_owned())
                .or_insert_with(|| path.to_owned());
        }
        // The task's sandbox: the worker's fixed allow-list and its TMPDIR
        // (its folder and logs are added by `bridge_exec`).
        cmd.supervisor = self.runner.supervisor.clone().map(|mut s| {
            s.confinement = self.runner.sandbox.confinement(&self.spec, &paths.tmp);
            s
        });
        // The slot, once the task has one: its process starts then, and the
        // attempt's time counts from then.
        let slot = std::sync::Mutex::new(None);
        let gate = async {
            let taken = ticket.take(&self.key).await;
            let at = self.runner.clock.now_ms();
            *slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((taken, at));
        };
        let finished = bridge_exec::run_when(&cmd, stop, gate).await;
        attempt.ended_at = self.runner.clock.now_ms();
        let slot = slot
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match slot {
            Some((slot, started_at)) => {
                attempt.started_at = started_at;
                if self.runner.hold_slots {
                    *held = Some(slot);
                }
            }
            // Stopped before it had a slot: nothing of it ran.
            None if finished.outcome == bridge_exec::Outcome::Interrupted => {
                guard.give_back();
                return Some(NotRecorded::NotStarted);
            }
            // Its supervisor could not get ready (the sandbox could not be
            // set up): an attempt, as a task that fails to start is.
            None => {}
        }
        let fault = match record_end(attempt, &finished) {
            Some(fault) => Some(fault),
            None => self.keep_results(paths, attempt, &finished).await,
        };
        guard.give_back();
        if let Some(fault) = fault {
            return Some(NotRecorded::Fault(fault));
        }
        // A command that failed on a disk with no space left has most
        // likely failed for lack of it (its logs or files could not be
        // written): the machine's fault, unless the task filled the disk
        // itself, in which case emptying its folders (above: the working
        // folder and its TMPDIR) freed space.
        // The same for an `error` (the task's supervisor could not even
        // write down how the task ended).
        if matches!(attempt.outcome, Outcome::Failed | Outcome::Error) {
            return work_dir_full(&self.runner.work_dir).map(NotRecorded::Fault);
        }
        None
    }

    /// Creates the working folder and puts the inputs in it.
    async fn prepare(
        &self,
        paths: &AttemptFiles,
        stop: &CancellationToken,
    ) -> Result<(), Unprepared> {
        let prepared = prepare(
            &self.runner.vault,
            &self.runner.fetcher,
            &paths.dir,
            &self.spec,
            &self.need_inputs,
            stop,
        )
        .await;
        match prepared {
            Ok(Prepared::Ready) => Ok(()),
            Ok(Prepared::Stopped) => Err(Unprepared::Ended(
                Outcome::Interrupted,
                "stopped while fetching the inputs".to_owned(),
            )),
            // This machine cannot make the working folder (no space, no
            // descriptors, …): not the task's failure.
            Err(e) if matches!(e, InputError::WorkDir(_)) || local_fault(&e).is_some() => {
                let fault = local_fault(&e).unwrap_or_else(|| LocalFault(chain_text(&e)));
                Err(Unprepared::Fault(fault))
            }
            // An input that cannot be had (missing blob, failed download,
            // wrong hash) is not the command failing: the attempt is an
            // `error`, not `failed`.
            Err(e) => Err(Unprepared::Ended(Outcome::Error, chain_text(&e))),
        }
    }

    /// Stores the logs and the declared outputs, off the async threads, when
    /// there is something to keep; `Some` when the machine lost the result.
    async fn keep_results(
        &self,
        paths: &AttemptFiles,
        attempt: &mut Attempt,
        finished: &bridge_exec::Finished,
    ) -> Option<LocalFault> {
        // A log whole in its tail is kept in the attempt only.
        let lens = (
            blob_len(finished.stdout_len, &finished.stdout_tail),
            blob_len(finished.stderr_len, &finished.stderr_tail),
        );
        let needs_io = lens.0 > 0 || lens.1 > 0 || !self.spec.outputs.is_empty();
        if !needs_io {
            return None;
        }
        let vault = self.runner.vault.clone();
        let spec = self.spec.clone();
        let logs = (paths.stdout.clone(), paths.stderr.clone());
        let dir = paths.dir.clone();
        let placement = self.placement.clone();
        let max_output = self.runner.max_output;
        let kept = tokio::task::spawn_blocking(move || {
            keep(&vault, &dir, &spec, lens, &logs, &placement, max_output)
        })
        .await;
        match kept {
            Ok(Ok(k)) => {
                attempt.stdout_blob = k.stdout;
                attempt.stderr_blob = k.stderr;
                attempt.outputs = k.outputs;
                if let Some(refused) = k.refused {
                    // The remote cannot take the file: the attempt failed,
                    // with what was kept recorded as usual.
                    if attempt.outcome == Outcome::Success {
                        attempt.outcome = Outcome::Error;
                    }
                    attempt.message = Some(refused.to_string());
                } else if let Some(w) = k.warning {
                    attempt.message.get_or_insert(w);
                }
                None
            }
            // The logs or outputs could not be stored for lack of space:
            // the task ran, but this machine lost its result; another
            // worker runs it again.
            Ok(Err(e)) if local_fault(&e).is_some() => local_fault(&e),
            Ok(Err(e)) => {
                // A result whose outputs could not be kept is not a result.
                if attempt.outcome == Outcome::Success {
                    attempt.outcome = Outcome::Error;
                }
                attempt.message = Some(chain_text(&e));
                None
            }
            Err(e) => {
                attempt.outcome = Outcome::Error;
                attempt.message = Some(format!("keeping the outputs crashed: {e}"));
                None
            }
        }
    }
}

/// How much of a log of `len` bytes, whose tail is `tail`, to keep as a
/// blob: none when the tail is the whole log and valid text, since the
/// attempt holds it then (most tasks' logs; a blob each was a file, a 4 KB
/// block on disk, per task: issue 18, item 2). Readers take such a log from
/// the tail (`bridge logs`, [`super::steps`]'s whole logs).
fn blob_len(len: u64, tail: &[u8]) -> u64 {
    let whole = len < TAIL_BYTES as u64 && tail.len() as u64 == len;
    if whole && std::str::from_utf8(tail).is_ok() {
        0
    } else {
        len
    }
}

/// Why a task did not get to run.
enum Unprepared {
    /// This machine's fault: no attempt.
    Fault(LocalFault),
    /// The attempt ends so, without running.
    Ended(Outcome, String),
}

/// Records how the process ended in `attempt`: outcome, exit code or
/// signal, log tails. `Some` when it could not start for lack of
/// descriptors, memory or space (its log files could not be created, or no
/// process could be made): the machine's fault.
fn record_end(attempt: &mut Attempt, finished: &bridge_exec::Finished) -> Option<LocalFault> {
    attempt.stdout_tail = String::from_utf8_lossy(&finished.stdout_tail).into_owned();
    attempt.stderr_tail = String::from_utf8_lossy(&finished.stderr_tail).into_owned();
    attempt.outcome = match &finished.outcome {
        bridge_exec::Outcome::Exited(0) => Outcome::Success,
        bridge_exec::Outcome::Exited(c) => {
            attempt.exit_code = Some(i64::from(*c));
            Outcome::Failed
        }
        bridge_exec::Outcome::Signaled(s) => {
            attempt.signal = Some(i64::from(*s));
            Outcome::Failed
        }
        bridge_exec::Outcome::TimedOut => Outcome::TimedOut,
        bridge_exec::Outcome::Interrupted => {
            // Said here so that the attempt's detail is why it ended, not
            // that the outputs it had no time to write are missing.
            attempt.message = Some(
                "stopped while it ran: its worker was stopped (Ctrl-C, SIGTERM or the end of its budget); the task runs again"
                    .to_owned(),
            );
            Outcome::Interrupted
        }
        bridge_exec::Outcome::FailedToStart(m) => {
            if let Some(fault) = local_fault_in_message(m) {
                return Some(fault);
            }
            attempt.message = Some(m.clone());
            Outcome::Error
        }
    };
    if attempt.outcome == Outcome::Success {
        attempt.exit_code = Some(0);
    }
    None
}

/// Why a log or an output could not be stored.
#[derive(Debug, thiserror::Error)]
enum KeepError {
    #[error("cannot store the log {}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: bridge_vault::BlobError,
    },
    #[error("cannot collect the outputs")]
    Collect(#[source] bridge_exec::OutputError),
    #[error("cannot store the output {path}")]
    Output {
        path: String,
        #[source]
        source: bridge_vault::BlobError,
    },
}

/// An output the remote cannot take in one file (issue 15): not stored.
#[derive(Debug, thiserror::Error)]
#[error(
    "output {path} of task {task} is {size} bytes, over the {limit} bytes a file may have on this remote (`max-object` under [store] in bridge.toml); it was not stored: write it in parts of at most {limit} bytes, or keep blobs in an object store (`blobs = \"s3://BUCKET/PREFIX\"` under [store])"
)]
struct OutputTooLarge {
    /// The task's name.
    task: String,
    /// The output, relative to the task's folder.
    path: String,
    /// Its size.
    size: u64,
    /// The largest output that fits.
    limit: u64,
}

struct Kept {
    stdout: Option<String>,
    stderr: Option<String>,
    outputs: SmallMap<String, String>,
    warning: Option<String>,
    /// The first output too large for the remote, if any (the others are
    /// kept).
    refused: Option<OutputTooLarge>,
}

/// Stores the logs and the declared outputs as blobs.
fn keep(
    vault: &Vault,
    dir: &Path,
    spec: &TaskSpec,
    lens: (u64, u64),
    paths: &(PathBuf, PathBuf),
    placement: &Placement,
    max_output: Option<u64>,
) -> Result<Kept, KeepError> {
    let blob = |len: u64, path: &Path| -> Result<Option<String>, KeepError> {
        if len == 0 {
            return Ok(None);
        }
        let (_, id) = vault
            .put_blob_file(path, placement)
            .map_err(|e| KeepError::Log {
                path: path.to_path_buf(),
                source: e,
            })?;
        Ok(Some(id.as_str().to_owned()))
    };
    let stdout = blob(lens.0, &paths.0)?;
    let stderr = blob(lens.1, &paths.1)?;
    let mut outputs = SmallMap::new();
    let mut warning = None;
    let mut refused = None;
    if !spec.outputs.is_empty() {
        let found = bridge_exec::collect_outputs(dir, &spec.outputs).map_err(KeepError::Collect)?;
        if found.is_empty() {
            warning = Some(format!(
                "no file matched the outputs {}",
                spec.outputs.join(", ")
            ));
        }
        for o in found {
            // Checked before sealing: a blob the remote refuses would stop
            // every later push of this device.
            if let Some(limit) = max_output {
                let size = std::fs::metadata(&o.path).map_or(0, |m| m.len());
                if size > limit {
                    tracing::warn!(
                        task = spec.name,
                        output = o.rel_path,
                        size,
                        limit,
                        "output too large for the remote; not stored"
                    );
                    refused.get_or_insert(OutputTooLarge {
                        task: spec.name.clone(),
                        path: o.rel_path.clone(),
                        size,
                        limit,
                    });
                    continue;
                }
            }
            let (_, id) =
                vault
                    .put_blob_file(&o.path, placement)
                    .map_err(|e| KeepError::Output {
                        path: o.rel_path.clone(),
                        source: e,
                    })?;
            outputs.insert(o.rel_path, id.as_str().to_owned());
        }
    }
    Ok(Kept {
        stdout,
        stderr,
        outputs,
        warning,
        refused,
    })
}

/// Why a stored spec cannot be run (see [`check_runnable`]).
#[derive(Debug, thiserror::Error)]
pub enum RunnableError {
    /// It breaks one of the model's limits.
    #[error(transparent)]
    Spec(#[from] bridge_model::SpecError),
    /// An output glob does not compile.
    #[error(transparent)]
    Outputs(#[from] bridge_exec::OutputError),
}

/// Every check a spec must pass to be run: the model's limits and output
/// globs that compile. `submit` refuses what fails it, and a worker records
/// an `error` attempt for a stored spec that fails it: one function, so the
/// two can never disagree.
pub fn check_runnable(spec: &TaskSpec) -> Result<(), RunnableError> {
    spec.check()?;
    bridge_exec::check_output_globs(&spec.outputs)?;
    Ok(())
}

/// A task's temporary folder (its `TMPDIR`), removed when the attempt
/// ends, whichever way it ends.
/// Removes an attempt's files when dropped: when it ends before its task
/// ran, and when the job is dropped while its task runs (the worker
/// stops). An attempt that ran gives its files back to the spares instead.
struct FilesGuard<'a> {
    files: &'a AttemptFiles,
    spares: &'a Spares,
}

impl FilesGuard<'_> {
    /// The files, emptied, kept for the next task (or removed).
    fn give_back(self) {
        self.spares.give_back(self.files);
        // Given back: not removed.
        std::mem::forget(self);
    }
}

impl Drop for FilesGuard<'_> {
    fn drop(&mut self) {
        self.files.remove();
    }
}

/// The process a stored task runs as, once its spec is checked against
/// every limit (issue 12, item 10): the one place a spec becomes a command,
/// so that no stored spec can make the worker panic further on. `worker` is
/// this device's name and the variables a task inherits from it; `paths` are
/// the working folder and the two log files.
pub(super) fn task_command(
    spec: &TaskSpec,
    id: &TaskId,
    key: &str,
    worker: (&str, &BTreeMap<String, String>),
    paths: (&Path, &Path, &Path),
) -> Result<TaskCommand, RunnableError> {
    let (device, inherited) = worker;
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
        env: task_env(spec, id, key, device, inherited),
        workdir: workdir.to_path_buf(),
        timeout: Duration::from_secs(spec.timeout_s),
        stdout_path: stdout_path.to_path_buf(),
        stderr_path: stderr_path.to_path_buf(),
        tail_bytes: TAIL_BYTES,
        kill_grace: KILL_GRACE,
        supervisor: None,
    })
}

/// The environment of a task: a few variables of the worker's own
/// (`inherited`, from an allow-list: never its secrets), bridge's, then the
/// task's.
fn task_env(
    spec: &TaskSpec,
    id: &TaskId,
    key: &str,
    device: &str,
    inherited: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = inherited.clone();
    env.insert("BRIDGE_TASK_ID".into(), id.to_string());
    env.insert("BRIDGE_TASK_NAME".into(), spec.name.clone());
    env.insert("BRIDGE_ATTEMPT".into(), key.to_owned());
    env.insert("BRIDGE_DEVICE".into(), device.to_owned());
    for (k, v) in &spec.env {
        env.insert(k.clone(), v.clone());
    }
    env
}

fn provenance(device: &str) -> SmallMap<String, String> {
    SmallMap::from_iter([
        ("device".to_owned(), device.to_owned()),
        ("os".to_owned(), std::env::consts::OS.to_owned()),
        ("arch".to_owned(), std::env::consts::ARCH.to_owned()),
        ("bridge".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
    ])
}

/// An attempt that has not run yet: an `error` until something better is
/// known.
pub(super) fn blank_attempt(
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
        outputs: Default::default(),
        provenance: {
            let mut p = provenance(device);
            for (k, v) in extra_provenance {
                p.insert(k.clone(), v.clone());
            }
            p
        },
    }
}

/// What a crashed job said, for its attempt's message.
pub(super) fn panic_message(e: tokio::task::JoinError) -> String {
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

/// The one-line detail of an attempt, for progress output.
pub(super) fn detail_of(a: &Attempt) -> String {
    match (a.outcome, a.exit_code, a.signal, &a.message) {
        (_, _, _, Some(m)) => m.clone(),
        (Outcome::Failed, Some(c), _, _) => format!("exit code {c}"),
        (Outcome::Failed, _, Some(s), _) => format!("killed by signal {s}"),
        (Outcome::TimedOut, ..) => "timed out".to_owned(),
        _ => String::new(),
    }
}

/// How this worker starts tasks: on Linux, each under a supervisor (this
/// executable again, see `bridge_exec::supervisor`) that kills every
/// process the task leaves behind (issue 12), and the sandbox it runs in
/// (issue 13, see [`crate::sandbox`]), resolved once per worker. Fails when
/// `[worker] sandbox = "required"` and the system cannot sandbox tasks.
pub(super) fn task_supervisor(
    ws: &crate::workspace::Workspace,
    runner: bool,
) -> Result<(Option<bridge_exec::Supervisor>, Arc<Sandbox>), SandboxError> {
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
    if let Ok(config) = crate::keys::config_dir(&ws.settings) {
        protected.push(config);
    }
    if let Some(home) = &ws.settings.home {
        protected.push(home.join(".ssh"));
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
        &ws.settings,
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

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 15: an output over the remote's largest file is not stored;
    // the attempt fails naming the task, the file, its size and what to do,
    // and its logs and other outputs are kept as for any failed attempt.
    #[test]
    fn an_output_over_the_remotes_limit_is_refused_and_the_rest_kept() {
        let pool = super::super::claiming_tests::Pool::new();
        let session = pool.session();
        let dir = tempfile::tempdir().expect("a folder");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("work folder");
        std::fs::write(work.join("small.txt"), b"fits").expect("small");
        std::fs::write(work.join("big.bin"), vec![7u8; 2000]).expect("big");
        let logs = (dir.path().join("out.log"), dir.path().join("err.log"));
        std::fs::write(&logs.0, b"hello\n").expect("log");
        std::fs::write(&logs.1, b"").expect("log");
        let spec = TaskSpec {
            name: "render[n=1]".into(),
            command: bridge_model::Command::Argv(vec!["true".into()]),
            env: Default::default(),
            inputs: vec![],
            outputs: vec!["*.txt".into(), "*.bin".into()],
            timeout_s: 60,
            retries: 0,
            runs_on: vec![],
            priority: 0,
            needs: vec![],
            nonce: None,
            network: true,
            allow_read: vec![],
        };
        let kept = keep(
            &session.vault,
            &work,
            &spec,
            (6, 0),
            &logs,
            &Placement::Pool,
            Some(1000),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(kept.stdout.is_some(), "the log is kept");
        assert_eq!(
            kept.outputs.keys().collect::<Vec<_>>(),
            ["small.txt"],
            "the other output is kept"
        );
        let refused = kept.refused.expect("refused");
        assert_eq!(
            refused.to_string(),
            "output big.bin of task render[n=1] is 2000 bytes, over the 1000 bytes a file may have on this remote (`max-object` under [store] in bridge.toml); it was not stored: write it in parts of at most 1000 bytes, or keep blobs in an object store (`blobs = \"s3://BUCKET/PREFIX\"` under [store])"
        );

        // Without a limit (a folder remote) both are stored.
        let kept = keep(
            &session.vault,
            &work,
            &spec,
            (6, 0),
            &logs,
            &Placement::Pool,
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept.outputs.len(), 2);
        assert!(kept.refused.is_none());
    }
}
