//! Runs one bridge task as a child process, and collects the files it declared
//! as outputs.
//!
//! This crate owns exactly two things and knows nothing about documents, stores
//! or scheduling:
//!
//! - [`run`] starts one [`TaskCommand`] in its own process group, with a
//!   complete, explicit environment, stdin null and stdout/stderr written
//!   straight to files (no pipes, so nothing can deadlock on a full pipe). It
//!   waits for the child, a timeout or a cancellation token, whichever comes
//!   first, and always leaves the process group dead: on a timeout or a cancel
//!   it sends `SIGTERM` to the whole group, waits [`TaskCommand::kill_grace`],
//!   then sends `SIGKILL`; after a normal exit it sends `SIGKILL` to whatever
//!   is left of the group (a background grandchild). The result is a
//!   [`Finished`]: an [`Outcome`], the sizes of both logs and their last
//!   [`TaskCommand::tail_bytes`] bytes, read back from the files.
//! - [`collect_outputs`] matches output globs against the regular files under a
//!   task's working folder and returns them sorted, each once.
//!
//! Data flows one way: the caller builds a [`TaskCommand`], [`run`] turns it
//! into a [`Finished`], and the caller then calls [`collect_outputs`] on the
//! same working folder. Nothing here prints; progress is logged with `tracing`
//! at debug level.
//!
//! `run` is meant to be cheap, because a worker may run thousands of trivial
//! tasks: it starts no threads, never sleeps, and spawns `argv[0]` directly
//! (no shell) for [`Program::Argv`]. It is Unix-only.
//!
//! On Linux, a [`TaskCommand::supervisor`] puts a small per-task process
//! between the worker and the task (see [`supervisor`]): a subreaper that
//! kills every process the task left behind, even those that left its
//! process group (`setsid`, double forks), and that sandboxes the task
//! ([`Confinement`]: a Landlock allow-list, and namespaces where the kernel
//! allows unprivileged ones) before it starts. The worker's [`spawner`], a
//! small process started once, forks these supervisors, so that a task
//! costs neither a fork of the worker nor an exec of its executable.
//! Without one (and on other
//! systems) the task's process group is all that is stopped, and nothing
//! is sandboxed. [`sandbox_support`] says what this system can do.

#![warn(missing_docs)]
// Library code never prints (errors and warnings are values, details go
// through `tracing`); the ratchet on long functions (clippy.toml).
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use walkdir::WalkDir;

/// What to execute for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Run `shell -c script`, e.g. `sh -c 'make test'`. The caller chooses the
    /// shell (usually `"sh"`).
    Shell {
        /// The shell to start, looked up on the task's `PATH` if it has no `/`.
        shell: String,
        /// The script passed to the shell after `-c`.
        script: String,
    },
    /// Run `argv[0]` with the remaining elements as its arguments, directly,
    /// with no shell in between. `argv[0]` is looked up on the task's `PATH`
    /// if it has no `/`. An empty vector fails to start.
    Argv(Vec<String>),
}

impl Program {
    /// The name of the program that will be started, for messages.
    fn name(&self) -> &str {
        match self {
            Program::Shell { shell, .. } => shell,
            Program::Argv(argv) => argv.first().map_or("", String::as_str),
        }
    }
}

/// Everything needed to run one task.
#[derive(Debug, Clone)]
pub struct TaskCommand {
    /// What to execute.
    pub program: Program,
    /// The complete environment of the child: nothing is inherited from the
    /// worker. Include `PATH` if the program or the script relies on it
    /// (without it, program lookup falls back to the C library's default
    /// path, typically `/bin:/usr/bin`).
    pub env: BTreeMap<String, String>,
    /// The child's working folder. It must already exist.
    pub workdir: PathBuf,
    /// How long the task may run before it is stopped and reported as
    /// [`Outcome::TimedOut`].
    pub timeout: Duration,
    /// The file that receives the child's full stdout (created or truncated).
    pub stdout_path: PathBuf,
    /// The file that receives the child's full stderr (created or truncated).
    pub stderr_path: PathBuf,
    /// How many trailing bytes of each log [`run`] returns in [`Finished`].
    pub tail_bytes: usize,
    /// How long to wait between `SIGTERM` and `SIGKILL` when stopping the
    /// task's process group after a timeout or a cancel.
    pub kill_grace: Duration,
    /// Run the task under a per-task supervisor (Linux only; ignored
    /// elsewhere). `None` runs it directly, as a child of the worker.
    pub supervisor: Option<Supervisor>,
}

/// How to start a task's supervisor: the executable that hands its
/// arguments to [`supervisor::main`] when its first argument is
/// [`supervisor::SUPERVISOR_ARG`] (bridge's own), and how to confine the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervisor {
    /// The executable, usually `std::env::current_exe()`.
    pub program: PathBuf,
    /// The sandbox the task runs in; `None`: none (the user opted out, or
    /// the kernel has no Landlock), the task is only supervised.
    pub confinement: Option<Confinement>,
}

/// The sandbox of a task (issue 13): an allow-list, everything else denied.
/// Applied by the supervisor with Landlock and, where the kernel allows
/// unprivileged ones, namespaces (see [`supervisor`]). The task's working
/// folder and its two log files are added by [`run`]; the caller adds the
/// task's TMPDIR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Folders and files the task may read, write and execute in.
    pub read_write: Vec<PathBuf>,
    /// Folders and files the task may read, list and execute, nothing more.
    pub read_only: Vec<PathBuf>,
    /// Whether the task may use the network.
    pub network: bool,
    /// Run the task in new user, mount and PID namespaces (and a network
    /// namespace without `network`): a private `/tmp`, `/dev/shm` and
    /// `/proc`. Only where [`SandboxSupport::namespaces`] says they work.
    pub namespaces: bool,
    /// In namespaces: the folder mounted over `/tmp` (the task's TMPDIR).
    pub private_tmp: Option<PathBuf>,
}

/// What this machine's kernel can do to sandbox a task, found once per
/// worker by [`sandbox_support`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxSupport {
    /// Landlock restricts file access (Linux 5.13+, enabled).
    pub landlock: bool,
    /// Landlock restricts TCP `bind` and `connect` (ABI 4, Linux 6.7+).
    pub landlock_tcp: bool,
    /// Landlock scopes signals and abstract unix sockets (ABI 6, Linux 6.12+).
    pub landlock_scopes: bool,
    /// Unprivileged user, mount, PID and network namespaces work, with the
    /// mounts a task needs (refused, e.g., by Ubuntu 24.04's AppArmor
    /// restriction on GitHub-hosted runners).
    pub namespaces: bool,
}

impl SandboxSupport {
    /// Whether a task can be cut off the network: a network namespace, or
    /// Landlock's TCP rules (UDP is then not covered).
    pub fn network_isolation(&self) -> bool {
        self.landlock && (self.namespaces || self.landlock_tcp)
    }
}

#[cfg(target_os = "linux")]
mod opened;
#[cfg(target_os = "linux")]
pub mod spawner;
#[cfg(target_os = "linux")]
pub mod supervisor;

/// What this system can do to sandbox tasks. `supervisor_program` is the
/// executable that runs [`supervisor::main`]: namespaces are probed in a
/// process of their own (a multi-threaded worker cannot enter a user
/// namespace), which costs one short-lived process per worker.
pub fn sandbox_support(supervisor_program: &Path) -> SandboxSupport {
    #[cfg(target_os = "linux")]
    {
        supervisor::probe_support(supervisor_program)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = supervisor_program;
        SandboxSupport::default()
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The child exited with this exit code.
    Exited(i32),
    /// The child was killed by this signal number (and not by us).
    Signaled(i32),
    /// The task ran longer than [`TaskCommand::timeout`] and its process group
    /// was stopped.
    TimedOut,
    /// The cancellation token fired and the task's process group was stopped
    /// (or the task was never started because the token had already fired).
    Interrupted,
    /// The task could not be started (program not found or not executable,
    /// working folder missing, log file not writable, ...), or, rarely, the
    /// worker lost track of it after starting it. The message names the
    /// program or file and the operating system's error.
    FailedToStart(String),
}

impl Outcome {
    /// Whether the task succeeded, that is exited with code 0.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Exited(0))
    }
}

/// The result of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// How the task ended.
    pub outcome: Outcome,
    /// The last [`TaskCommand::tail_bytes`] bytes of stdout (fewer if the log
    /// is shorter).
    pub stdout_tail: Vec<u8>,
    /// The last [`TaskCommand::tail_bytes`] bytes of stderr (fewer if the log
    /// is shorter).
    pub stderr_tail: Vec<u8>,
    /// The full size of the stdout log, in bytes.
    pub stdout_len: u64,
    /// The full size of the stderr log, in bytes.
    pub stderr_len: u64,
    /// How long the task took, from just before spawning until its process
    /// group was dead.
    pub duration: Duration,
}

/// Why the task stopped waiting on its child.
enum Stop {
    Exited(ExitStatus),
    /// The task's supervisor said how the task ended.
    #[cfg(target_os = "linux")]
    Reported(supervisor::TaskStatus),
    WaitFailed(io::Error),
    /// The spawner that started the task's supervisor died (see
    /// [`spawner`]): nothing will tell how the task ended.
    Lost,
    TimedOut,
    Cancelled,
}

/// The process [`run`] started: the task itself or its supervisor, a child
/// of the worker, or a supervisor forked by this worker's spawner.
enum Running {
    Child(Child),
    #[cfg(target_os = "linux")]
    Spawned(spawner::Task),
}

/// How waiting for a [`Running`] ended.
enum Waited {
    Exited(ExitStatus),
    /// A supervisor of the spawner said how the task ended.
    #[cfg(target_os = "linux")]
    Reported(supervisor::TaskStatus),
    Failed(io::Error),
    /// The spawner died (see [`Stop::Lost`]).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Lost,
}

impl Running {
    /// Its pid, which is also its process group's id.
    fn pgid(&self) -> Option<Pid> {
        match self {
            Running::Child(child) => child.id().map(|pid| Pid::from_raw(pid as i32)),
            #[cfg(target_os = "linux")]
            Running::Spawned(task) => Some(task.pid()),
        }
    }

    /// Tells a supervisor set up ahead to start the task.
    fn go(&self) {
        #[cfg(target_os = "linux")]
        if let Running::Spawned(task) = self
            && !task.go()
        {
            tracing::debug!(pid = ?task.pid(), "the task's supervisor ended before it could start the task");
        }
    }

    /// Waits for it to end (cancel-safe).
    async fn wait(&mut self) -> Waited {
        match self {
            Running::Child(child) => match child.wait().await {
                Ok(status) => Waited::Exited(status),
                Err(error) => Waited::Failed(error),
            },
            #[cfg(target_os = "linux")]
            Running::Spawned(task) => match task.wait().await {
                spawner::Waited::Reported(status) => Waited::Reported(status),
                spawner::Waited::Exited(status) => Waited::Exited(status),
                spawner::Waited::Lost => Waited::Lost,
            },
        }
    }
}

/// Runs one task to completion and reports how it ended.
///
/// The child runs in its own process group (`process_group(0)`) with stdin
/// null, exactly [`TaskCommand::env`] as its environment, and stdout/stderr
/// redirected to [`TaskCommand::stdout_path`] and
/// [`TaskCommand::stderr_path`]. See the [crate docs](crate) for how the group
/// is stopped. On Linux the child also gets `SIGKILL` if the thread that
/// spawned it dies (`PR_SET_PDEATHSIG`), so a task does not outlive a worker
/// that was killed with `SIGKILL`; that covers the child only, not its own
/// children, and it is tied to the spawning *thread*, so call `run` from a
/// long-lived runtime thread rather than a temporary blocking thread.
///
/// If `cancel` has already fired, the task is not started and the outcome is
/// [`Outcome::Interrupted`]. If the returned future is dropped early, the
/// process group is killed with `SIGKILL`.
///
/// Never panics: every failure to start is reported as
/// [`Outcome::FailedToStart`].
pub async fn run(cmd: &TaskCommand, cancel: CancellationToken) -> Finished {
    run_when(cmd, cancel, std::future::ready(())).await
}

/// [`run`], with the task's process started only once `gate` resolves (a
/// worker's slot is free). A task whose supervisor the spawner forks gets
/// it at once: it sets up the sandbox and waits, so the task starts as
/// soon as the gate opens, without a fork, namespaces or Landlock rules
/// in between (issue 18, item 1); others start after the gate. The
/// timeout and [`Finished::duration`] count from the gate; `cancel` before
/// it: [`Outcome::Interrupted`], nothing of the task having run.
pub async fn run_when(
    cmd: &TaskCommand,
    cancel: CancellationToken,
    gate: impl Future<Output = ()> + Send,
) -> Finished {
    let mut started = Instant::now();
    if cancel.is_cancelled() {
        return finished_without_child(Outcome::Interrupted, started);
    }
    let mut gate = std::pin::pin!(gate);
    let (mut child, logs, gated) = match spawn(cmd, gate.as_mut(), &cancel).await {
        Ok(Some(spawned)) => spawned,
        Ok(None) => return finished_without_child(Outcome::Interrupted, started),
        Err(message) => {
            tracing::debug!(%message, "task failed to start");
            return finished_without_child(Outcome::FailedToStart(message), started);
        }
    };
    // `spawn` only returns a child that has a pid.
    let pgid = child.pgid();
    let supervised = !matches!(logs.status, TaskStatusFrom::Exit);
    let guard = GroupGuard { pgid, supervised };
    // A supervisor set up ahead: it starts the task at the gate, unless it
    // ended first (it could not set up the sandbox: its report says why).
    let mut early = None;
    if gated {
        tokio::select! {
            biased;
            () = cancel.cancelled() => early = Some(Stop::Cancelled),
            waited = child.wait() => early = Some(stop_of(waited)),
            () = gate.as_mut() => {
                child.go();
                started = Instant::now();
            }
        }
    }
    // A supervisor needs a little longer than the grace to kill what is
    // left and write the task's status.
    let grace = if supervised {
        cmd.kill_grace + SUPERVISOR_MARGIN
    } else {
        cmd.kill_grace
    };

    // A timeout too large to add to the clock means no timeout (issue 12,
    // item 10: `u64::MAX` seconds panicked here and crashed the worker).
    let deadline = started
        .checked_add(cmd.timeout)
        .unwrap_or_else(|| started + Duration::from_secs(86_400 * 365 * 30));
    let stop = match early {
        Some(stop) => stop,
        None => tokio::select! {
            // An exit that races with the timeout or the cancel counts as an exit.
            biased;
            waited = child.wait() => stop_of(waited),
            () = tokio::time::sleep_until(deadline) => Stop::TimedOut,
            () = cancel.cancelled() => Stop::Cancelled,
        },
    };

    // The supervisor (or the task) ended by itself.
    let stop_was_exit = matches!(stop, Stop::Exited(_));
    let outcome = match stop {
        Stop::Exited(status) => outcome_of(status),
        #[cfg(target_os = "linux")]
        Stop::Reported(status) => status.into(),
        Stop::WaitFailed(error) => Outcome::FailedToStart(format!(
            "could not wait for `{}`: {error}",
            cmd.program.name()
        )),
        // The supervisor got IMMEDIATE_STOP with its spawner's death; the
        // guard stops its group anyway. The task did not end by itself: it
        // runs again, as after a stopped worker.
        Stop::Lost => {
            tracing::warn!(
                ?pgid,
                "the task spawner stopped while a task ran; the task runs again"
            );
            Outcome::Interrupted
        }
        Stop::TimedOut => {
            tracing::debug!(?pgid, timeout = ?cmd.timeout, "task timed out, stopping its group");
            stop_group(&mut child, pgid, grace).await;
            Outcome::TimedOut
        }
        Stop::Cancelled => {
            tracing::debug!(?pgid, "task cancelled, stopping its group");
            stop_group(&mut child, pgid, grace).await;
            Outcome::Interrupted
        }
    };
    // What a supervisor saw of the task replaces what we saw of the
    // supervisor (whose own status only says whether it was killed).
    #[cfg(target_os = "linux")]
    let outcome = match (&logs.status, stop_was_exit, outcome) {
        (TaskStatusFrom::File(path), true, outcome) => match supervisor::read_status(path) {
            Some(status) => status.into(),
            None => unreported(cmd, &outcome),
        },
        (TaskStatusFrom::File(path), false, outcome) => {
            let _ = std::fs::remove_file(path);
            outcome
        }
        (TaskStatusFrom::Report, true, outcome) => unreported(cmd, &outcome),
        (_, _, outcome) => outcome,
    };
    // Whatever is left of the group (a background grandchild, say) must not
    // outlive the task. The guard sends the final SIGKILL.
    drop(guard);

    let (stdout_tail, stdout_len) = logs.stdout.tail(cmd.tail_bytes);
    let (stderr_tail, stderr_len) = logs.stderr.tail(cmd.tail_bytes);
    let finished = Finished {
        outcome,
        stdout_tail,
        stderr_tail,
        stdout_len,
        stderr_len,
        duration: started.elapsed(),
    };
    tracing::debug!(outcome = ?finished.outcome, duration = ?finished.duration, "task finished");
    finished
}

/// Why waiting ended, from what ended it.
fn stop_of(waited: Waited) -> Stop {
    match waited {
        Waited::Exited(status) => Stop::Exited(status),
        #[cfg(target_os = "linux")]
        Waited::Reported(status) => Stop::Reported(status),
        Waited::Failed(error) => Stop::WaitFailed(error),
        Waited::Lost => Stop::Lost,
    }
}

/// Waits for `gate` unless `cancel` fires first (`false` then).
async fn pass(
    gate: Pin<&mut (impl Future<Output = ()> + ?Sized)>,
    cancel: &CancellationToken,
) -> bool {
    tokio::select! {
        biased;
        () = cancel.cancelled() => false,
        () = gate => true,
    }
}

/// A `Finished` for a task that never ran: empty logs.
fn finished_without_child(outcome: Outcome, started: Instant) -> Finished {
    Finished {
        outcome,
        stdout_tail: Vec::new(),
        stderr_tail: Vec::new(),
        stdout_len: 0,
        stderr_len: 0,
        duration: started.elapsed(),
    }
}

/// The outcome of a task whose supervisor ended without saying how the
/// task ended (`seen`: what we saw of the supervisor).
#[cfg(target_os = "linux")]
fn unreported(cmd: &TaskCommand, seen: &Outcome) -> Outcome {
    Outcome::FailedToStart(format!(
        "the task supervisor of `{}` ended without reporting the task's status ({seen:?})",
        cmd.program.name()
    ))
}

#[cfg(target_os = "linux")]
impl From<supervisor::TaskStatus> for Outcome {
    fn from(status: supervisor::TaskStatus) -> Outcome {
        match status {
            supervisor::TaskStatus::Exited(c) => Outcome::Exited(c),
            supervisor::TaskStatus::Signaled(s) => Outcome::Signaled(s),
            supervisor::TaskStatus::FailedToStart(m) => Outcome::FailedToStart(m),
        }
    }
}

/// Where [`run`] learns how the task ended.
enum TaskStatusFrom {
    /// From the exit of the process it started: the task itself.
    Exit,
    /// From the status file its executed supervisor writes.
    #[cfg(target_os = "linux")]
    File(PathBuf),
    /// From the report of its supervisor, forked by the spawner: an exit
    /// without one means the supervisor failed.
    #[cfg(target_os = "linux")]
    Report,
}

/// Our own handles on the two log files, kept to read the tails back after
/// the child exits (the child gets duplicates).
struct Logs {
    stdout: LogFile,
    stderr: LogFile,
    status: TaskStatusFrom,
}

/// One log file we can read the end of.
struct LogFile {
    path: PathBuf,
    file: File,
}

impl LogFile {
    /// Creates or truncates the log at `path`.
    fn create(path: &Path) -> Result<LogFile, String> {
        // Read and write: we read the tail back through our own handle.
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|error| format!("could not create log file {}: {error}", path.display()))?;
        Ok(LogFile {
            path: path.to_owned(),
            file,
        })
    }

    /// A handle on the log for a child we start.
    fn for_child(&self) -> Result<Stdio, String> {
        let copy = self.file.try_clone().map_err(|error| {
            format!(
                "could not duplicate log file {}: {error}",
                self.path.display()
            )
        })?;
        Ok(Stdio::from(copy))
    }

    /// The last `max` bytes of the log and its full length. A read error is
    /// logged and yields what could be read: the task has already run, and its
    /// outcome matters more than its tail.
    fn tail(&self, max: usize) -> (Vec<u8>, u64) {
        let len = match self.file.metadata() {
            Ok(metadata) => metadata.len(),
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "could not read log size");
                return (Vec::new(), 0);
            }
        };
        let want = usize::try_from(len).map_or(max, |len| len.min(max));
        let mut buf = vec![0; want];
        // `want <= len`, so this cannot underflow.
        let start = len - want as u64;
        let mut filled = 0;
        while filled < want {
            match self.file.read_at(&mut buf[filled..], start + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::warn!(path = %self.path.display(), %error, "could not read log tail");
                    break;
                }
            }
        }
        buf.truncate(filled);
        (buf, len)
    }
}

/// What [`spawn`] started, and whether it waits for the word to start the
/// task (`Running::go`).
type Spawned = (Running, Logs, bool);

/// Builds the command and starts it, after `gate` unless a supervisor of
/// the spawner can wait for it (see [`run_when`]); `None` when `cancel`
/// fired at the gate. The error is a message naming what could not be
/// started and why.
async fn spawn(
    cmd: &TaskCommand,
    gate: Pin<&mut impl Future<Output = ()>>,
    cancel: &CancellationToken,
) -> Result<Option<Spawned>, String> {
    #[cfg(target_os = "linux")]
    if let Some(supervisor) = &cmd.supervisor {
        return spawn_supervised(cmd, supervisor, (gate, cancel)).await;
    }
    if !pass(gate, cancel).await {
        return Ok(None);
    }
    let mut command = match &cmd.program {
        Program::Shell { shell, script } => {
            let mut command = Command::new(shell);
            command.arg("-c").arg(script);
            command
        }
        Program::Argv(argv) => {
            let Some((program, args)) = argv.split_first() else {
                return Err("could not start the task: its argv is empty".to_owned());
            };
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    };
    let stdout = LogFile::create(&cmd.stdout_path)?;
    let stderr = LogFile::create(&cmd.stderr_path)?;
    task_io(&mut command, cmd, stdout.for_child()?, stderr.for_child()?);
    // Reaps the leader if `run` is dropped; `GroupGuard` kills the rest.
    command.kill_on_drop(true);
    #[cfg(target_os = "linux")]
    die_with_parent(&mut command);

    tracing::debug!(
        program = ?cmd.program,
        workdir = %cmd.workdir.display(),
        env = ?cmd.env.keys().collect::<Vec<_>>(),
        timeout = ?cmd.timeout,
        "spawning task"
    );
    let name = cmd.program.name();
    let child = command.spawn().map_err(|error| {
        if cmd.workdir.is_dir() {
            format!("could not start `{name}`: {error}")
        } else {
            format!(
                "could not start `{name}` in {}: the working folder is missing or not a folder ({error})",
                cmd.workdir.display()
            )
        }
    })?;
    if child.id().is_none() {
        return Err(format!("could not start `{name}`: it has no process id"));
    }
    Ok(Some((
        Running::Child(child),
        Logs {
            stdout,
            stderr,
            status: TaskStatusFrom::Exit,
        },
        false,
    )))
}

/// What every task process started by the worker gets, supervised or not:
/// the task's environment and nothing else, its working folder, no stdin,
/// its two log files and a process group of its own.
fn task_io(command: &mut Command, cmd: &TaskCommand, stdout: Stdio, stderr: Stdio) {
    command
        .env_clear()
        .envs(&cmd.env)
        .current_dir(&cmd.workdir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
}

/// How much longer than the task's grace a supervisor gets to stop.
const SUPERVISOR_MARGIN: Duration = Duration::from_secs(2);

/// Starts the task's supervisor, which starts the task (see [`supervisor`]):
/// forked by this worker's spawner (see [`spawner`]), or, where there is
/// none, the supervisor's executable started as a child of the worker.
#[cfg(target_os = "linux")]
async fn spawn_supervised(
    cmd: &TaskCommand,
    sup: &Supervisor,
    (gate, cancel): (Pin<&mut impl Future<Output = ()>>, &CancellationToken),
) -> Result<Option<Spawned>, String> {
    let argv: Vec<OsString> = match &cmd.program {
        Program::Shell { shell, script } => vec![shell.into(), "-c".into(), script.into()],
        Program::Argv(argv) => argv.iter().map(OsString::from).collect(),
    };
    if argv.is_empty() {
        return Err("could not start the task: its argv is empty".to_owned());
    }
    if !cmd.workdir.is_dir() {
        return Err(format!(
            "could not start `{}` in {}: the working folder is missing or not a folder",
            cmd.program.name(),
            cmd.workdir.display()
        ));
    }
    let mut status_path = cmd.stdout_path.clone().into_os_string();
    status_path.push(".status");
    let status_path = PathBuf::from(status_path);
    let plan = supervisor::Plan {
        parent: std::process::id() as i32,
        grace: cmd.kill_grace,
        status_path: status_path.clone(),
        confinement: sup.confinement.clone().map(|mut c| {
            // The task's own folder, and its logs: `echo >/dev/stdout`
            // opens the log file itself (through /proc/self/fd).
            c.read_write.extend([
                cmd.workdir.clone(),
                cmd.stdout_path.clone(),
                cmd.stderr_path.clone(),
            ]);
            c
        }),
        argv,
        env: None,
        gated: true,
    };
    let stdout = LogFile::create(&cmd.stdout_path)?;
    let stderr = LogFile::create(&cmd.stderr_path)?;
    tracing::debug!(
        program = ?cmd.program,
        supervisor = %sup.program.display(),
        workdir = %cmd.workdir.display(),
        env = ?cmd.env.keys().collect::<Vec<_>>(),
        "spawning a supervised task"
    );
    let request = spawner::Request {
        workdir: &cmd.workdir,
        env: &cmd.env,
        plan: &plan,
        stdout: &stdout.file,
        stderr: &stderr.file,
    };
    let (running, status, gated) = match spawner::start(&sup.program, &request).await {
        spawner::Start::Started(task) => (Running::Spawned(task), TaskStatusFrom::Report, true),
        spawner::Start::Failed(message) => return Err(message),
        spawner::Start::Unavailable => {
            // An executed supervisor starts its task at once.
            if !pass(gate, cancel).await {
                return Ok(None);
            }
            let plan = supervisor::Plan {
                gated: false,
                ..plan
            };
            let _ = std::fs::remove_file(&status_path);
            let running = exec_supervisor(cmd, sup, &plan, &stdout, &stderr)?;
            (running, TaskStatusFrom::File(status_path), false)
        }
    };
    Ok(Some((
        running,
        Logs {
            stdout,
            stderr,
            status,
        },
        gated,
    )))
}

/// Starts the supervisor's executable as a child of the worker, in place of
/// the spawner.
#[cfg(target_os = "linux")]
fn exec_supervisor(
    cmd: &TaskCommand,
    sup: &Supervisor,
    plan: &supervisor::Plan,
    stdout: &LogFile,
    stderr: &LogFile,
) -> Result<Running, String> {
    let mut command = Command::new(&sup.program);
    command.arg(supervisor::SUPERVISOR_ARG).args(plan.to_args());
    // The supervisor's environment is the task's: it passes it on.
    task_io(&mut command, cmd, stdout.for_child()?, stderr.for_child()?);
    // Killing the supervisor would orphan the task's processes: when `run`
    // is dropped, `GroupGuard` asks it to stop them instead, and tokio
    // reaps it.
    command.kill_on_drop(false);
    die_with_parent(&mut command);
    let child = command.spawn().map_err(|error| {
        format!(
            "could not start the task supervisor {}: {error}",
            sup.program.display()
        )
    })?;
    if child.id().is_none() {
        return Err("could not start the task supervisor: it has no process id".to_owned());
    }
    Ok(Running::Child(child))
}

/// Makes the child receive `SIGKILL` when the worker thread that spawned it
/// dies, so that a worker killed with `SIGKILL` does not leave tasks behind.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    let hook = die_with_parent_hook();
    // SAFETY: see `die_with_parent_hook`.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(hook);
    }
}

/// The `pre_exec` hook of [`die_with_parent`] (and of the spawner's start).
/// It runs in the child between fork and exec, where only
/// async-signal-safe calls are allowed: it makes exactly two raw syscalls,
/// prctl(PR_SET_PDEATHSIG) and getppid, allocates nothing and takes no
/// locks (`Error::from_raw_os_error` does not allocate).
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent_hook() -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let parent = Pid::from_raw(std::process::id() as i32);
    move || {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
            .map_err(|errno| io::Error::from_raw_os_error(errno as i32))?;
        // The worker may have died before the prctl took effect; then we
        // have already been re-parented and must not start at all.
        if nix::unistd::getppid() != parent {
            return Err(io::Error::from_raw_os_error(Errno::ESRCH as i32));
        }
        Ok(())
    }
}

/// Stops a task's group: `SIGTERM` to all of it, then, if the leader has not
/// exited within `grace`, `SIGKILL`, and waits for the leader.
async fn stop_group(child: &mut Running, pgid: Option<Pid>, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    let exited = tokio::time::timeout(grace, child.wait()).await;
    if exited.is_err() {
        signal_group(pgid, Signal::SIGKILL);
        if let Waited::Failed(error) = child.wait().await {
            tracing::warn!(?pgid, %error, "could not wait for a killed task");
        }
    }
}

/// Sends `signal` to the process group, ignoring a group that is already gone.
fn signal_group(pgid: Option<Pid>, signal: Signal) {
    let Some(pgid) = pgid else { return };
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => tracing::warn!(?pgid, ?signal, %error, "could not signal task group"),
    }
}

/// Kills the task's process group with `SIGKILL` when dropped: at the end of
/// [`run`], and also if the `run` future is dropped before the task ends.
struct GroupGuard {
    pgid: Option<Pid>,
    /// The group is a supervisor's: it is asked to kill the task's
    /// processes rather than killed (which would orphan them).
    supervised: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if self.supervised {
            signal_group(self.pgid, supervisor::IMMEDIATE_STOP);
            return;
        }
        signal_group(self.pgid, Signal::SIGKILL);
    }
}

/// Maps a wait status to an outcome.
fn outcome_of(status: ExitStatus) -> Outcome {
    if let Some(code) = status.code() {
        Outcome::Exited(code)
    } else if let Some(signal) = status.signal() {
        Outcome::Signaled(signal)
    } else {
        // `wait` only reports terminated children, which have one or the other.
        Outcome::FailedToStart(format!("the task ended with an unknown status: {status}"))
    }
}

/// A file under a task's working folder that matched one of its output globs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CollectedOutput {
    /// The path relative to the working folder, `/`-separated, e.g.
    /// `reports/junit.xml`.
    pub rel_path: String,
    /// The full path of the file.
    pub path: PathBuf,
}

/// Why [`collect_outputs`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// An output glob is not valid glob syntax.
    #[error("invalid output glob `{glob}`")]
    BadGlob {
        /// The glob as written.
        glob: String,
        /// What is wrong with it.
        #[source]
        source: globset::Error,
    },
    /// An output glob is absolute or climbs out with `..`, so it can never
    /// match a file under the working folder.
    #[error("output glob `{glob}` points outside the working folder; write it relative to it")]
    OutsideWorkdir {
        /// The glob as written.
        glob: String,
    },
    /// The globs are valid one by one but could not be combined.
    #[error("could not combine the output globs {globs:?}")]
    GlobSet {
        /// All the globs.
        globs: Vec<String>,
        /// Why they could not be combined.
        #[source]
        source: globset::Error,
    },
    /// A folder under the working folder could not be read.
    #[error("could not list outputs under {}", path.display())]
    Walk {
        /// The file or folder that could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: walkdir::Error,
    },
    /// A matched file's path is not valid UTF-8, so it cannot be named.
    #[error("output file {} has a name that is not valid UTF-8", path.display())]
    NonUtf8Path {
        /// The file's full path.
        path: PathBuf,
    },
}

/// Finds the regular files under `workdir` that match any of `globs`.
///
/// Globs are relative to `workdir` (a leading `./` is allowed) and use
/// [`globset`] syntax with `literal_separator(true)`: `*` and `?` do not cross
/// `/`, `**` does (`*.txt` matches only at the top, `**/*.txt` anywhere).
/// Symbolic links are skipped, never followed, so nothing outside `workdir` is
/// collected. The result is sorted by [`CollectedOutput::rel_path`] and lists
/// each file once, however many globs match it. A glob that matches nothing is
/// not an error; the caller can compare globs against the result to warn.
pub fn collect_outputs(
    workdir: &Path,
    globs: &[String],
) -> Result<Vec<CollectedOutput>, OutputError> {
    let set = build_glob_set(globs)?;
    if globs.is_empty() {
        return Ok(Vec::new());
    }
    let mut outputs = Vec::new();
    for entry in WalkDir::new(workdir).follow_links(false).min_depth(1) {
        let entry = entry.map_err(|source| OutputError::Walk {
            path: source.path().unwrap_or(workdir).to_owned(),
            source,
        })?;
        // Skips folders and symbolic links (`file_type` does not follow them).
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(workdir) else {
            continue;
        };
        if !set.is_match(rel) {
            continue;
        }
        let Some(rel_str) = rel.to_str() else {
            return Err(OutputError::NonUtf8Path {
                path: entry.into_path(),
            });
        };
        let rel_path = rel_str.replace(std::path::MAIN_SEPARATOR, "/");
        outputs.push(CollectedOutput {
            rel_path,
            path: entry.into_path(),
        });
    }
    outputs.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(outputs)
}

/// Checks output globs without collecting anything: what `bridge submit`
/// calls so that a glob a worker could not use is refused before the task
/// is stored (issue 12, item 20).
pub fn check_output_globs(globs: &[String]) -> Result<(), OutputError> {
    build_glob_set(globs).map(|_| ())
}

/// Compiles the output globs, naming the first bad one.
fn build_glob_set(globs: &[String]) -> Result<GlobSet, OutputError> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        let trimmed = glob.strip_prefix("./").unwrap_or(glob);
        if trimmed.starts_with('/') || trimmed.split('/').any(|part| part == "..") {
            return Err(OutputError::OutsideWorkdir { glob: glob.clone() });
        }
        let compiled = GlobBuilder::new(trimmed)
            .literal_separator(true)
            .build()
            .map_err(|source| OutputError::BadGlob {
                glob: glob.clone(),
                source,
            })?;
        builder.add(compiled);
    }
    builder.build().map_err(|source| OutputError::GlobSet {
        globs: globs.to_vec(),
        source,
    })
}

#[cfg(test)]
mod tests;
