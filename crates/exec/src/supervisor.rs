//! The per-task supervisor (Linux): a small process between the worker and a
//! task that makes sure none of the task's processes outlives it, and that
//! sandboxes the task before it starts (issues 12 and 13).
//!
//! Why a separate process: a process group is not enough to find a task's
//! processes (a child that calls `setsid`, or a daemon that double-forks,
//! leaves it), and `PR_SET_PDEATHSIG` covers only the direct child. A *child
//! subreaper* (`PR_SET_CHILD_SUBREAPER`) inherits every orphaned descendant
//! instead of `init`, so it can find and kill all of them. The worker itself
//! cannot be that subreaper: it runs many tasks at once and could not tell
//! whose orphan is whose. So [`run`](crate::run) gives each task a
//! supervisor process of its own: forked by the worker's spawner (see
//! [`crate::spawner`]), which runs `run_plan` in the child, or, where
//! there is no spawner, the worker's own executable started again with the
//! hidden first argument [`SUPERVISOR_ARG`], which hands its arguments to
//! [`main`]. The supervisor
//!
//! 1. makes itself a subreaper, and asks for [`IMMEDIATE_STOP`] if its
//!    parent (the spawner, or the worker) dies (`PR_SET_PDEATHSIG`);
//! 2. with [`Confinement::namespaces`], enters new user (its uid and gid
//!    mapped to themselves, `setgroups` denied), mount and PID namespaces
//!    (and a network namespace, loopback only and down, for a task without
//!    network), then forks a child that is PID 1 of the new PID namespace
//!    and runs steps 3 to 6, while this process only waits for it and
//!    forwards signals. (The spawner saves that extra process where it can:
//!    it clones the supervisor straight into the new namespaces, where it
//!    is PID 1 and only maps its ids: [`Origin::Cloned`].) The task must
//!    not be PID 1 itself: PID 1 ignores
//!    `SIGTERM` unless it handles it, which would break a graceful stop.
//!    When PID 1 of a namespace dies, the kernel kills every process left in
//!    it, so nothing of the task survives its supervisor even if the
//!    supervisor is killed with `SIGKILL`;
//! 3. in namespaces, mounts the task's TMPDIR over `/tmp`, a private tmpfs
//!    on `/dev/shm` and a fresh `/proc` that shows only the namespace's
//!    processes;
//! 4. becomes non-dumpable and applies the [`Confinement`] with Landlock:
//!    an allow-list (the task's folders read-write, system folders
//!    read-only, nothing else), TCP `bind`/`connect` denied without
//!    network, and signals and abstract unix sockets scoped to the sandbox
//!    where the kernel has Landlock ABI 6. The task inherits all of it and
//!    can never lift it (Landlock also forbids it to mount anything);
//! 5. starts the task in its own process group, with the supervisor's own
//!    environment, working folder and standard streams (the worker set them);
//!    waits for it; on `SIGTERM`/`SIGINT`/`SIGHUP` it forwards `SIGTERM` to
//!    the task's group and, after the grace period, kills everything; on
//!    [`IMMEDIATE_STOP`] it kills everything at once;
//! 6. when the task has exited, kills and reaps every descendant left (loose
//!    background processes, `setsid` daemons), tells how the task ended
//!    (`Report`: on the task's socket to the worker when the spawner
//!    forked it, else in the status file, opened before anything else,
//!    where the task may not go) and exits.
//!
//! Without namespaces (the kernel or its policy refuses unprivileged user
//! namespaces, as Ubuntu 24.04's AppArmor does on GitHub-hosted runners)
//! steps 2 and 3 are skipped: the task uses its TMPDIR (there is no private
//! `/tmp`: the host's is closed to it), shares the host's `/dev/shm`, and
//! sees the host's `/proc`, where Landlock's ptrace rules deny it the
//! `environ`, `mem` and `fd` of every process outside its sandbox.
//!
//! It is one process per task that runs before the task's code,
//! single-threaded, fresh from `exec` or forked from the single-threaded
//! spawner, so it may use ordinary Rust (allocation, the `landlock` crate)
//! rather than only async-signal-safe calls between `fork` and `exec`.
//!
//! What it cannot do without namespaces: if the supervisor itself is killed
//! with `SIGKILL`, the task's orphans go to `init` (the worker then still
//! kills the supervisor's process group). The worker's `SIGKILL` is
//! covered: the kernel sends the supervisor [`IMMEDIATE_STOP`].

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::opened::{OpenedPath, OpenedPaths};
use crate::{Confinement, SandboxSupport};

/// The hidden first argument that turns the worker's executable into a
/// supervisor (see the [module docs](self)).
pub const SUPERVISOR_ARG: &str = "__task-supervisor";

/// The argument after [`SUPERVISOR_ARG`] that makes it only try whether
/// namespaces work (see [`probe_support`]).
const PROBE_ARG: &str = "--probe-namespaces";

/// The signal that makes a supervisor kill its task's processes at once,
/// without a grace period: sent by the kernel when the worker dies, and by
/// the worker when it abandons a task.
pub const IMMEDIATE_STOP: Signal = Signal::SIGUSR2;

/// The Landlock ABI bridge asks for (best effort: an older kernel enforces
/// what it can). ABI 6 adds scoping of signals and abstract unix sockets;
/// its file-system rights are ABI 5's.
const LANDLOCK_ABI: ABI = ABI::V6;

/// The Landlock ABI of TCP rules.
const LANDLOCK_NET_ABI: ABI = ABI::V4;

/// What the kernel can do for a sandbox: Landlock features asked of the
/// kernel here (creating a ruleset restricts nothing), namespaces in a
/// process of their own, `program` being this executable (see
/// [`crate::sandbox_support`]).
pub(crate) fn probe_support(program: &Path) -> SandboxSupport {
    let landlock = landlock_has(|r| r.handle_access(AccessFs::from_all(ABI::V1)));
    let landlock_tcp = landlock_has(|r| r.handle_access(AccessNet::from_all(LANDLOCK_NET_ABI)));
    let landlock_scopes = landlock_has(|r| {
        r.handle_access(AccessFs::from_all(ABI::V1))?
            .scope(Scope::from_all(ABI::V6))
    });
    let namespaces = landlock
        && std::process::Command::new(program)
            .args([SUPERVISOR_ARG, PROBE_ARG])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    SandboxSupport {
        landlock,
        landlock_tcp,
        landlock_scopes,
        namespaces,
    }
}

/// Whether the kernel supports what `handle` asks for (`HardRequirement`
/// turns "not supported" into an error).
fn landlock_has(handle: impl FnOnce(Ruleset) -> Result<Ruleset, landlock::RulesetError>) -> bool {
    handle(Ruleset::default().set_compatibility(CompatLevel::HardRequirement))
        .and_then(|r| r.create())
        .is_ok()
}

/// The arguments the worker passes to a supervisor, after [`SUPERVISOR_ARG`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The worker's pid: if the supervisor's parent is already another
    /// process, the worker died and nothing must start.
    pub parent: i32,
    /// How long the task may take to stop after `SIGTERM`.
    pub grace: Duration,
    /// Where the task's exit status is written.
    pub status_path: PathBuf,
    /// The sandbox; `None`: the task is only supervised.
    pub confinement: Option<Confinement>,
    /// The task's program and its arguments.
    pub argv: Vec<OsString>,
    /// The task's whole environment, when this process's own is not it (a
    /// supervisor forked by the spawner, see [`crate::spawner`]); `None`:
    /// the task inherits this process's. Never passed as arguments.
    pub env: Option<Vec<(OsString, OsString)>>,
    /// Set up the task's sandbox, then wait for the worker's word
    /// ([`GO`]) on the task's socket before starting it (a supervisor of
    /// the spawner only: see [`Report::Socket`]).
    pub gated: bool,
}

impl Plan {
    /// The arguments after [`SUPERVISOR_ARG`].
    pub(crate) fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--parent".into(),
            self.parent.to_string().into(),
            "--grace-ms".into(),
            self.grace.as_millis().to_string().into(),
            "--status".into(),
            self.status_path.clone().into(),
        ];
        if self.gated {
            args.push("--gated".into());
        }
        if let Some(c) = &self.confinement {
            args.push("--sandbox".into());
            for p in &c.read_write {
                args.extend(["--rw".into(), p.clone().into()]);
            }
            for p in &c.read_only {
                args.extend(["--ro".into(), p.clone().into()]);
            }
            if !c.network {
                args.push("--no-network".into());
            }
            if c.namespaces {
                args.push("--namespaces".into());
            }
            if let Some(tmp) = &c.private_tmp {
                args.extend(["--tmp".into(), tmp.clone().into()]);
            }
        }
        args.push("--".into());
        args.extend(self.argv.iter().cloned());
        args
    }

    /// Parses what [`Plan::to_args`] wrote.
    pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Plan, String> {
        let mut args = args.into_iter();
        let mut plan = Plan {
            parent: 0,
            grace: Duration::ZERO,
            status_path: PathBuf::new(),
            confinement: None,
            argv: Vec::new(),
            env: None,
            gated: false,
        };
        fn sandbox(plan: &mut Plan) -> &mut Confinement {
            plan.confinement.get_or_insert_with(|| Confinement {
                network: true,
                ..Confinement::default()
            })
        }
        while let Some(flag) = args.next() {
            match flag.to_str() {
                Some("--") => {
                    plan.argv = args.collect();
                    break;
                }
                Some("--sandbox") => {
                    sandbox(&mut plan);
                    continue;
                }
                Some("--no-network") => {
                    sandbox(&mut plan).network = false;
                    continue;
                }
                Some("--namespaces") => {
                    sandbox(&mut plan).namespaces = true;
                    continue;
                }
                Some("--gated") => {
                    plan.gated = true;
                    continue;
                }
                _ => {}
            }
            let value = args
                .next()
                .ok_or_else(|| format!("{} needs a value", flag.to_string_lossy()))?;
            let number = |v: &OsString| -> Result<u64, String> {
                v.to_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("{} is not a number", v.to_string_lossy()))
            };
            match flag.to_str() {
                Some("--parent") => {
                    plan.parent = i32::try_from(number(&value)?).map_err(|e| e.to_string())?
                }
                Some("--grace-ms") => plan.grace = Duration::from_millis(number(&value)?),
                Some("--status") => plan.status_path = value.into(),
                Some("--rw") => sandbox(&mut plan).read_write.push(value.into()),
                Some("--ro") => sandbox(&mut plan).read_only.push(value.into()),
                Some("--tmp") => sandbox(&mut plan).private_tmp = Some(value.into()),
                _ => return Err(format!("unknown argument {}", flag.to_string_lossy())),
            }
        }
        if plan.argv.is_empty() || plan.status_path.as_os_str().is_empty() || plan.parent <= 0 {
            return Err("incomplete arguments".to_owned());
        }
        Ok(plan)
    }
}

/// What the supervisor writes to the status file: how the task ended, or
/// why it could not start. The worker reads it back with [`read_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskStatus {
    Exited(i32),
    Signaled(i32),
    FailedToStart(String),
}

impl TaskStatus {
    pub(crate) fn encode(&self) -> String {
        match self {
            TaskStatus::Exited(c) => format!("exited {c}"),
            TaskStatus::Signaled(s) => format!("signaled {s}"),
            TaskStatus::FailedToStart(m) => format!("failed {m}"),
        }
    }

    fn decode(text: &str) -> Option<TaskStatus> {
        let (kind, rest) = text.split_once(' ')?;
        match kind {
            "exited" => rest.trim().parse().ok().map(TaskStatus::Exited),
            "signaled" => rest.trim().parse().ok().map(TaskStatus::Signaled),
            "failed" => Some(TaskStatus::FailedToStart(rest.to_owned())),
            _ => None,
        }
    }
}

/// Reads and removes the status file a supervisor wrote; `None` if it wrote
/// none (it was killed) or the file is not one it writes.
pub(crate) fn read_status(path: &Path) -> Option<TaskStatus> {
    use std::io::Read as _;
    let mut text = String::new();
    // A status is a few bytes; never read more than a page of whatever is
    // there.
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .is_ok();
    let _ = std::fs::remove_file(path);
    if read {
        TaskStatus::decode(&text)
    } else {
        None
    }
}

/// The supervisor's entry point: `args` are the arguments after
/// [`SUPERVISOR_ARG`]. Returns the process exit code: 0 once the task has
/// ended and its status is written, 2 when the arguments or the
/// supervisor's own set-up failed (the worker then reports the status file's
/// message, or a supervisor failure).
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == PROBE_ARG) {
        return probe_namespaces();
    }
    let plan = match Plan::parse(args) {
        Ok(plan) => plan,
        Err(e) => {
            report(format_args!(
                "{e} (it is started by `bridge work` and `bridge run`, not by hand)"
            ));
            return 2;
        }
    };
    run_plan(
        &plan,
        (None, &OpenedPaths::none()),
        Origin::Started,
        Report::File,
    )
}

/// How this supervisor process came to be (see the [module docs](self),
/// step 2).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin {
    /// Executed, or forked by the spawner: it enters the task's namespaces
    /// itself and forks their PID 1.
    Started,
    /// Cloned by the spawner straight into the task's new namespaces: it is
    /// their PID 1 and has only to map its ids (`uid` and `gid`, the user's
    /// outside). One process a task fewer: its `fork`, page faults and exit
    /// were a third of what the sandbox cost a short task (issue 18, item
    /// 1). `spawner` is a pidfd of the spawner, its parent, which is
    /// outside the new PID namespace (`getppid` says 0 there).
    Cloned {
        spawner: std::os::fd::RawFd,
        uid: nix::unistd::Uid,
        gid: nix::unistd::Gid,
    },
}

/// Where a supervisor tells how its task ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Report {
    /// In the plan's status file, which the worker reads once this process
    /// has exited (an executed supervisor).
    File,
    /// On the task's socket to the worker (a supervisor of the spawner,
    /// which inherits the spawner's end of it): a message of its own, sent
    /// as soon as the task and everything it left are reaped, so the worker
    /// need not wait for this process to exit nor read a file (issue 18,
    /// item 1). A supervisor stopped by [`IMMEDIATE_STOP`], or whose parent
    /// died before the task started, sends nothing: the socket's end then
    /// tells the worker the task was lost, not that it failed.
    Socket(std::os::fd::RawFd),
}

/// The first byte of a [`Report::Socket`] message (the spawner's own
/// replies use other letters).
pub(crate) const REPORT_KIND: u8 = b'T';

/// The longest message a report carries: a status, or why the task could
/// not start (cut at a character boundary).
const MAX_REPORT: usize = 8 * 1024;

/// Supervises the task of `plan` in this process: what [`main`] does once
/// it has parsed its arguments, and what a supervisor forked by the
/// spawner does (see [`crate::spawner`]), which first changes to the
/// task's `workdir` and hands over the allow-listed paths it keeps open
/// (`kept`, see [`crate::opened`]). Returns the process exit code.
pub(crate) fn run_plan(
    plan: &Plan,
    (workdir, kept): (Option<&Path>, &OpenedPaths),
    origin: Origin,
    report: Report,
) -> i32 {
    // Opened before the supervisor confines itself: the status file lives
    // in the worker's folder, which the task (and so the confined
    // supervisor) may not open.
    let mut status_file = match report {
        Report::Socket(_) => None,
        Report::File => match std::fs::File::create(&plan.status_path) {
            Ok(file) => Some(file),
            Err(e) => {
                self::report(format_args!(
                    "cannot create {}: {e}",
                    plan.status_path.display()
                ));
                return 2;
            }
        },
    };
    let supervised = match workdir.map(nix::unistd::chdir) {
        Some(Err(e)) => Err(format!(
            "could not start `{}` in {}: the working folder is missing or not a folder ({e})",
            plan.argv
                .first()
                .map(|a| a.to_string_lossy())
                .unwrap_or_default(),
            workdir
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default()
        )),
        _ => {
            let gate = match report {
                Report::Socket(socket) if plan.gated => Some(socket),
                _ => None,
            };
            supervise(plan, origin, (kept, gate))
        }
    };
    let (status, code) = match supervised {
        Ok(Supervised::Task(status)) => (status, 0),
        // Nobody waits for this status on a socket (see `Report::Socket`).
        Ok(Supervised::Abandoned(_)) if matches!(report, Report::Socket(_)) => return 0,
        Ok(Supervised::Abandoned(status)) => (status, 0),
        // The outer supervisor of a namespace: PID 1 wrote the status.
        Ok(Supervised::Namespace(code)) => return code,
        Err(message) => (TaskStatus::FailedToStart(message), 2),
    };
    if let Report::Socket(socket) = report {
        return match send_report(socket, &status) {
            Ok(()) => code,
            Err(e) => {
                self::report(format_args!(
                    "cannot tell the worker how the task ended: {e}"
                ));
                2
            }
        };
    }
    use std::io::Write as _;
    let written = status_file
        .as_mut()
        .map(|file| file.write_all(status.encode().as_bytes()));
    match written {
        Some(Err(e)) => {
            self::report(format_args!(
                "cannot write the task's status to {}: {e}",
                plan.status_path.display()
            ));
            2
        }
        _ => code,
    }
}

/// Sends `status` on the task's socket as one message (see
/// [`Report::Socket`]).
fn send_report(socket: std::os::fd::RawFd, status: &TaskStatus) -> Result<(), Errno> {
    let text = status.encode();
    let mut end = text.len().min(MAX_REPORT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut message = Vec::with_capacity(end + 1);
    message.push(REPORT_KIND);
    message.extend_from_slice(&text.as_bytes()[..end]);
    nix::sys::socket::send(socket, &message, nix::sys::socket::MsgFlags::MSG_NOSIGNAL).map(|_| ())
}

/// Reads a message [`send_report`] wrote (its kind byte removed).
pub(crate) fn decode_report(bytes: &[u8]) -> Option<TaskStatus> {
    TaskStatus::decode(std::str::from_utf8(bytes).ok()?)
}

/// Tells why the supervisor could not do its job, on its stderr: the one
/// place this library prints.
#[allow(
    clippy::print_stderr,
    reason = "the supervisor is its own process's main; a failure before the status file exists can only be told on stderr, which the worker collects"
)]
fn report(message: std::fmt::Arguments<'_>) {
    eprintln!("bridge task supervisor: {message}");
}

/// What [`supervise`] saw.
enum Supervised {
    /// How the task ended (this process ran it).
    Task(TaskStatus),
    /// How the task ended, or why it did not start, when this process was
    /// told to stop at once ([`IMMEDIATE_STOP`]) or its parent had died:
    /// nobody may be waiting for it (see [`Report::Socket`]).
    Abandoned(TaskStatus),
    /// The exit code of PID 1 of the task's namespace (which ran it and
    /// wrote its status).
    Namespace(i32),
}

fn setup_error(what: &str, e: impl std::fmt::Display) -> String {
    format!("the task supervisor could not {what}: {e}")
}

/// The signals a supervisor handles, delivered through a descriptor so that
/// waiting for children, the grace deadline and signals are one loop. The
/// mask is not inherited by the task: `std::process::Command` resets it.
fn listen_for_signals() -> Result<SignalFd, String> {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        IMMEDIATE_STOP,
    ] {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| setup_error("block signals", e))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| setup_error("listen for signals", e))
}

/// Steps 1 to 6 of the [module docs](self). An error is a message for the
/// task's attempt (the task did not start).
fn supervise(
    plan: &Plan,
    origin: Origin,
    (kept, gate): (&OpenedPaths, Option<std::os::fd::RawFd>),
) -> Result<Supervised, String> {
    use nix::sys::prctl;
    let signals = listen_for_signals()?;
    prctl::set_child_subreaper(true).map_err(|e| setup_error("become a subreaper", e))?;
    prctl::set_pdeathsig(IMMEDIATE_STOP).map_err(|e| setup_error("watch the worker", e))?;
    let parent_gone = match origin {
        Origin::Started => nix::unistd::getppid().as_raw() != plan.parent,
        Origin::Cloned { spawner, .. } => has_ended(spawner),
    };
    if parent_gone {
        return Ok(Supervised::Abandoned(TaskStatus::FailedToStart(
            "the worker stopped before the task started".to_owned(),
        )));
    }
    let namespaces = plan.confinement.as_ref().filter(|c| c.namespaces);
    if let (Some(c), Origin::Cloned { uid, gid, .. }) = (namespaces, origin) {
        map_ids(uid, gid)?;
        mount_private_folders(c)?;
    } else if let Some(c) = namespaces {
        enter_namespaces(c)?;
        // SAFETY: this process is single-threaded (it was just started by
        // `exec`, and neither std nor anything above starts a thread), so
        // the child may go on running ordinary Rust after `fork`: the
        // restriction to async-signal-safe calls exists only because other
        // threads may hold locks (the allocator's) at the time of the fork.
        #[allow(unsafe_code)]
        let forked = unsafe { nix::unistd::fork() };
        match forked.map_err(|e| setup_error("start PID 1 of the task's namespace", e))? {
            nix::unistd::ForkResult::Parent { child } => {
                return Ok(Supervised::Namespace(wait_for_pid1(child, &signals)));
            }
            nix::unistd::ForkResult::Child => {
                // PID 1 now. Its parent is the supervisor, whose death
                // must stop it too (the worker's is covered by the same
                // signal reaching the supervisor, which dies of it).
                prctl::set_pdeathsig(Signal::SIGKILL)
                    .map_err(|e| setup_error("watch its supervisor", e))?;
                mount_private_folders(c)?;
            }
        }
    }
    // Nothing secret lives here, but a non-dumpable process cannot be read
    // or traced through /proc by the task it runs. (After the namespaces:
    // a non-dumpable process may not write its own uid map.)
    prctl::set_dumpable(false).map_err(|e| setup_error("become non-dumpable", e))?;
    // Ready: the task's namespaces and mounts are made. The allow-list is
    // built once the task may start, so that it names what its paths name
    // then (a folder replaced while this supervisor waited is seen).
    if let Some(socket) = gate
        && !wait_for_go(socket, &signals)
    {
        return Ok(Supervised::Abandoned(TaskStatus::FailedToStart(
            "the worker stopped before the task started".to_owned(),
        )));
    }
    if let Some(c) = &plan.confinement {
        confine(c, kept)?;
    }
    run_task(plan, &signals).map(|(status, abandoned)| {
        if abandoned {
            Supervised::Abandoned(status)
        } else {
            Supervised::Task(status)
        }
    })
}

/// The worker's word to start a gated task (see [`Plan::gated`]), on the
/// task's socket.
pub(crate) const GO: u8 = b'G';

/// Waits, sandboxed and ready, for the worker's [`GO`] on `socket`: `false`
/// when the worker gave up on the task instead (the socket's end, or a
/// signal to stop).
fn wait_for_go(socket: std::os::fd::RawFd, signals: &SignalFd) -> bool {
    // SAFETY: the task's socket, inherited from the spawner and open for
    // this process's whole life.
    #[allow(unsafe_code)]
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(socket) };
    loop {
        let mut fds = [
            PollFd::new(fd, PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
        while let Ok(Some(info)) = signals.read_signal() {
            if Signal::try_from(info.ssi_signo as i32).is_ok_and(|s| s != Signal::SIGCHLD) {
                return false;
            }
        }
        let mut word = [0u8; 16];
        match nix::sys::socket::recv(socket, &mut word, nix::sys::socket::MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return false,
            Ok(_) => return word[0] == GO,
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// Enters new user, mount and PID namespaces (and a network namespace for a
/// task without network), the user's uid and gid mapped to themselves.
fn enter_namespaces(c: &Confinement) -> Result<(), String> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    nix::sched::unshare(namespace_flags(c)).map_err(|e| setup_error("enter new namespaces", e))?;
    map_ids(uid, gid)
}

/// The namespaces of a task under `c`: user, mount and PID, and network
/// for a task without network.
pub(crate) fn namespace_flags(c: &Confinement) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
    if !c.network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// Whether the process of `pidfd` has ended (it is readable then).
fn has_ended(pidfd: std::os::fd::RawFd) -> bool {
    // SAFETY: the spawner's pidfd, inherited and open for this process's
    // whole life (it is only closed on exec).
    #[allow(unsafe_code)]
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(pidfd) };
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// Maps `uid` and `gid` (the user's, outside) to themselves in the user
/// namespace this process has just entered.
fn map_ids(uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> Result<(), String> {
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(|e| setup_error(&format!("write {file}"), e))
    };
    // An unprivileged process must give up `setgroups` before it may map
    // its group.
    write("/proc/self/setgroups", "deny".to_owned())?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    Ok(())
}

/// Mounts, in the task's own mount namespace (it is PID 1 of its PID
/// namespace): its TMPDIR over `/tmp`, a tmpfs on `/dev/shm`, a new `/proc`.
/// Nothing propagates back to the host (the namespace's mounts are made
/// private first).
fn mount_private_folders(c: &Confinement) -> Result<(), String> {
    use nix::mount::mount;
    let none: Option<&str> = None;
    let fail = |what: &str, e: Errno| setup_error(&format!("mount {what}"), e);
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| fail("the task's mounts privately", e))?;
    if let Some(tmp) = &c.private_tmp
        && Path::new("/tmp").is_dir()
    {
        mount(Some(tmp.as_path()), "/tmp", none, MsFlags::MS_BIND, none)
            .map_err(|e| fail(&format!("{} on /tmp", tmp.display()), e))?;
    }
    if Path::new("/dev/shm").is_dir() {
        mount(
            Some("tmpfs"),
            "/dev/shm",
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        )
        .map_err(|e| fail("a private /dev/shm", e))?;
    }
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        none,
    )
    .map_err(|e| fail("a private /proc", e))?;
    Ok(())
}

/// The outer supervisor of a namespace: forwards the signals it gets to PID
/// 1 (which also gets the worker's, sent to the whole process group) and
/// returns PID 1's exit code once it has ended.
fn wait_for_pid1(pid1: Pid, signals: &SignalFd) -> i32 {
    loop {
        match waitpid(pid1, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(..)) => return 2,
            Err(Errno::EINTR) | Ok(_) => {}
            Err(_) => return 2,
        }
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::NONE);
        while let Ok(Some(info)) = signals.read_signal() {
            if let Ok(s) = Signal::try_from(info.ssi_signo as i32)
                && s != Signal::SIGCHLD
            {
                let _ = kill(pid1, s);
            }
        }
    }
}

/// Step 5: starts the task and waits for it (see the [module docs](self)).
/// Also says whether it was stopped by [`IMMEDIATE_STOP`].
fn run_task(plan: &Plan, signals: &SignalFd) -> Result<(TaskStatus, bool), String> {
    let (program, args) = plan
        .argv
        .split_first()
        .ok_or_else(|| "could not start the task: its argv is empty".to_owned())?;
    let name = program.to_string_lossy().into_owned();
    let env_path = match &plan.env {
        Some(env) => env
            .iter()
            .find(|(k, _)| k.as_os_str() == "PATH")
            .map(|(_, v)| v.clone()),
        None => std::env::var_os("PATH"),
    };
    let command = |file: &OsStr| {
        let mut command = std::process::Command::new(file);
        command.arg0(program).args(args).process_group(0);
        if let Some(env) = &plan.env {
            command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        }
        command
    };
    // A program named by a path is started with `posix_spawn` (no copy of
    // this process's page tables, no `execve` tried and failed in each
    // folder of PATH before the right one); std can do that only when it
    // need not search a PATH of the task's own. Where that fails, `execvp`
    // has the last word as before: it runs a file without `#!` through the
    // shell (ENOEXEC) and goes on to the next folder past one the sandbox
    // does not let the task execute from (EACCES), and its error names the
    // program as the task wrote it.
    let spawned = match find_in_path(program, env_path.as_deref()) {
        Some(found) => command(found.as_os_str())
            .spawn()
            .or_else(|_| command(program).spawn()),
        None => command(program).spawn(),
    };
    let task = spawned.map_err(|e| format!("could not start `{name}`: {e}"))?;
    let task = Pid::from_raw(task.id() as i32);
    let mut status = None;
    let mut kill_at: Option<Instant> = None;
    let mut abandoned = false;
    loop {
        let left = reap(task, &mut status);
        if let Some(status) = status {
            // With no child left there is nothing to kill: every process
            // the task left behind would be our child (we are its
            // subreaper), so the scan of /proc can be skipped.
            if left == Children::Left {
                kill_descendants(task, &mut None);
            }
            return Ok((status, abandoned));
        }
        let now = Instant::now();
        if kill_at.is_some_and(|at| at <= now) {
            kill_descendants(task, &mut status);
            // The task was among them: `status` says how it ended.
            let status = status.unwrap_or(TaskStatus::Signaled(Signal::SIGKILL as i32));
            return Ok((status, abandoned));
        }
        let timeout = match kill_at {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = (at - now).as_millis().clamp(1, i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            // Cannot happen with one valid descriptor; never spin on it.
            Err(_) => kill_at = Some(Instant::now()),
        }
        while let Ok(Some(info)) = signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => {}
                Ok(s) if s == IMMEDIATE_STOP => {
                    kill_at = Some(Instant::now());
                    abandoned = true;
                }
                Ok(_) => {
                    // A graceful stop: the task's group gets SIGTERM, and
                    // everything is killed after the grace period.
                    if kill_at.is_none() {
                        signal_group(task, Signal::SIGTERM);
                        kill_at = Some(Instant::now() + plan.grace);
                    }
                }
                Err(_) => {}
            }
        }
    }
}

/// Where `execvp` would find `program` in `path` (the task's PATH): the
/// first regular file with an execute bit in the folders listed. `None`
/// for a program that is already a path, or one not found (then `execvp`
/// itself says why).
fn find_in_path(program: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    if program.is_empty() || program.as_bytes().contains(&b'/') {
        return None;
    }
    let path = path?;
    path.as_bytes().split(|b| *b == b':').find_map(|dir| {
        // An empty entry is the current folder, as for `execvp`.
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let candidate = Path::new(OsStr::from_bytes(dir)).join(program);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

/// Whether a supervisor has children after [`reap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Children {
    /// Some may still run (or could not be waited for).
    Left,
    /// None at all (`ECHILD`).
    None,
}

/// Reaps every child that has exited, recording the task's status; says
/// whether any child is left.
fn reap(task: Pid, status: &mut Option<TaskStatus>) -> Children {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Children::Left,
            Ok(reaped) => record(task, reaped, status),
            // ECHILD: no child at all, so the task is gone too; it cannot
            // have been reaped without `record` seeing it.
            Err(Errno::ECHILD) => {
                status.get_or_insert(TaskStatus::Signaled(Signal::SIGKILL as i32));
                return Children::None;
            }
            Err(_) => {
                status.get_or_insert(TaskStatus::Signaled(Signal::SIGKILL as i32));
                return Children::Left;
            }
        }
    }
}

/// Records the task's status if `reaped` is the task's end.
fn record(task: Pid, reaped: WaitStatus, status: &mut Option<TaskStatus>) {
    match reaped {
        WaitStatus::Exited(pid, code) if pid == task => {
            *status = Some(TaskStatus::Exited(code));
        }
        WaitStatus::Signaled(pid, signal, _) if pid == task => {
            *status = Some(TaskStatus::Signaled(signal as i32));
        }
        // An orphan that ended, or a stop/continue report.
        _ => {}
    }
}

/// Kills the task's group and every process left below the supervisor, and
/// reaps them, until none is left (recording the task's status if it is
/// among them). Killing a process hands its children to us (we are their
/// subreaper), so each round finds the next generation.
fn kill_descendants(task: Pid, status: &mut Option<TaskStatus>) {
    signal_group(task, Signal::SIGKILL);
    loop {
        for child in children() {
            // ESRCH: it is already gone (a zombie still listed).
            let _ = kill(child, Signal::SIGKILL);
        }
        // Every child was just killed, so this returns as soon as one of
        // them is gone; ECHILD means none is left.
        match waitpid(None::<Pid>, None) {
            Ok(reaped) => record(task, reaped, status),
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Sends `signal` to the task's process group (its pgid is its pid).
fn signal_group(task: Pid, signal: Signal) {
    let _ = killpg(task, signal);
}

/// This process's children: `/proc/self/task/<pid>/children` (we are
/// single-threaded), else a scan of `/proc` for processes whose parent we
/// are (kernels without `CONFIG_PROC_CHILDREN`).
fn children() -> Vec<Pid> {
    let me = std::process::id();
    if let Ok(text) = std::fs::read_to_string(format!("/proc/self/task/{me}/children")) {
        return text
            .split_ascii_whitespace()
            .filter_map(|p| p.parse().ok())
            .map(Pid::from_raw)
            .collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| parent_of(*pid) == Some(me))
        .map(Pid::from_raw)
        .collect()
}

/// The parent pid in `/proc/PID/stat` (the field after the parenthesised
/// command name, which may itself hold spaces and parentheses).
fn parent_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Tries, in this fresh process, what a namespaced task needs: the
/// namespaces, then (in PID 1 of the new PID namespace) the mounts. Exit
/// code 0 when all of it works.
fn probe_namespaces() -> i32 {
    let trial = Confinement {
        network: false,
        namespaces: true,
        private_tmp: Some(PathBuf::from("/tmp")),
        ..Confinement::default()
    };
    if enter_namespaces(&trial).is_err() {
        return 1;
    }
    // SAFETY: as in `supervise`: this process is single-threaded, fresh
    // from `exec`.
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() };
    match forked {
        Ok(nix::unistd::ForkResult::Child) => {
            let code = if mount_private_folders(&trial).is_ok() {
                0
            } else {
                1
            };
            std::process::exit(code)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Err(Errno::EINTR) => {}
                Ok(WaitStatus::Signaled(..)) | Err(_) => return 1,
                Ok(_) => {}
            }
        },
        Err(_) => 1,
    }
}

/// Applies `confinement` to this process (and so to the task it starts),
/// failing rather than running the task with less than it promises.
fn confine(confinement: &Confinement, kept: &OpenedPaths) -> Result<(), String> {
    let abi = LANDLOCK_ABI;
    let fail = |e: landlock::RulesetError| format!("could not sandbox the task (Landlock): {e}");
    // Without a network namespace, Landlock's TCP rules are all that cut
    // the task off: the worker claims such a task only where they exist,
    // and this makes sure.
    if !confinement.network
        && !confinement.namespaces
        && !landlock_has(|r| r.handle_access(AccessNet::from_all(LANDLOCK_NET_ABI)))
    {
        return Err(
            "could not cut the task off the network: this kernel has neither unprivileged network namespaces nor Landlock TCP rules (Linux 6.7+)"
                .to_owned(),
        );
    }
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .scope(Scope::from_all(abi))
        .map_err(fail)?;
    if !confinement.network {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(LANDLOCK_NET_ABI))
            .map_err(fail)?;
    }
    let mut ruleset = ruleset.create().map_err(fail)?;
    for rule in rules(confinement, kept) {
        let access = match (rule.access, rule.opened.is_dir) {
            (RuleAccess::ReadOnly, true) => AccessFs::from_read(abi),
            (RuleAccess::ReadOnly, false) => AccessFs::from_read(abi) & AccessFs::from_file(abi),
            (RuleAccess::ReadWrite, true) => AccessFs::from_all(abi),
            (RuleAccess::ReadWrite, false) => AccessFs::from_file(abi),
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(rule.opened.fd.as_fd(), access))
            .map_err(|e| {
                format!(
                    "could not sandbox the task (Landlock, at {}): {e}",
                    rule.path.display()
                )
            })?;
    }
    let status = ruleset.restrict_self().map_err(fail)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(
            "could not sandbox the task: this kernel does not enforce Landlock (the worker expected it to)"
                .to_owned(),
        );
    }
    Ok(())
}

/// What a [`Rule`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleAccess {
    /// Read, list and execute.
    ReadOnly,
    /// Everything.
    ReadWrite,
}

/// One Landlock rule: `access` to what `opened` names and everything below
/// it.
#[derive(Debug)]
pub(crate) struct Rule<'a> {
    /// The path as listed (for messages and tests).
    pub path: PathBuf,
    pub opened: Held<'a>,
    pub access: RuleAccess,
}

/// A rule's path, opened for this task or kept by the spawner.
#[derive(Debug)]
pub(crate) enum Held<'a> {
    Own(OpenedPath),
    Kept(&'a OpenedPath),
}

impl std::ops::Deref for Held<'_> {
    type Target = OpenedPath;

    fn deref(&self) -> &OpenedPath {
        match self {
            Held::Own(opened) => opened,
            Held::Kept(opened) => opened,
        }
    }
}

/// The allow-list of a confinement: one rule per listed path that exists,
/// read-write winning over read-only for a place listed twice (by any
/// path: it is the same inode). Each path is opened once (or was, by the
/// spawner, for every task: `kept`, used while its path still names the
/// same file) and looked at through its descriptor:
/// no `canonicalize` (a readlink per component of every path, per task,
/// was most of the sandbox's cost), and nothing can change between the
/// look and the rule.
pub(crate) fn rules<'a>(confinement: &Confinement, kept: &'a OpenedPaths) -> Vec<Rule<'a>> {
    let mut rules: Vec<Rule<'a>> = Vec::new();
    let listed = confinement
        .read_write
        .iter()
        .map(|p| (p, RuleAccess::ReadWrite))
        .chain(
            confinement
                .read_only
                .iter()
                .map(|p| (p, RuleAccess::ReadOnly)),
        );
    for (path, access) in listed {
        // A kept descriptor still names what the path names (one stat, not
        // an open), or the path is opened again.
        let current = |o: &OpenedPath| {
            nix::sys::stat::stat(path.as_path()).is_ok_and(|s| (s.st_dev, s.st_ino) == o.id)
        };
        let opened = match kept.get(path).filter(|o| current(o)) {
            Some(opened) => Held::Kept(opened),
            // A path that vanished since it was listed needs no rule.
            None => match OpenedPath::open(path) {
                Some(opened) => Held::Own(opened),
                None => continue,
            },
        };
        if rules.iter().any(|r| r.opened.id == opened.id) {
            continue;
        }
        rules.push(Rule {
            path: path.clone(),
            opened,
            access,
        });
    }
    rules
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trips_through_arguments() {
        let mut plan = Plan {
            parent: 42,
            grace: Duration::from_millis(2500),
            status_path: "/w/.bridge/work/x.status".into(),
            confinement: Some(Confinement {
                read_write: vec!["/w/.bridge/work/a/t1".into()],
                read_only: vec!["/usr".into(), "/home/u/.cargo/bin".into()],
                network: false,
                namespaces: true,
                private_tmp: Some("/w/.bridge/work/a/t1.tmp".into()),
            }),
            argv: vec!["sh".into(), "-c".into(), "echo --rw".into()],
            env: None,
            gated: true,
        };
        assert_eq!(Plan::parse(plan.to_args()).unwrap(), plan);
        plan.confinement = Some(Confinement {
            network: true,
            ..Confinement::default()
        });
        assert_eq!(Plan::parse(plan.to_args()).unwrap(), plan);
        plan.confinement = None;
        assert_eq!(Plan::parse(plan.to_args()).unwrap(), plan);
        assert!(Plan::parse(Vec::<OsString>::new()).is_err());
    }

    #[test]
    fn status_round_trips() {
        for s in [
            TaskStatus::Exited(3),
            TaskStatus::Signaled(9),
            TaskStatus::FailedToStart("could not start `x`: nope".into()),
        ] {
            assert_eq!(TaskStatus::decode(&s.encode()), Some(s));
        }
        assert_eq!(TaskStatus::decode("garbage"), None);
    }

    #[test]
    fn a_program_is_looked_up_in_path_as_execvp_would() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        for d in [&a, &b, &c] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::create_dir(a.join("tool")).unwrap();
        std::fs::write(b.join("tool"), "").unwrap();
        std::fs::write(c.join("tool"), "").unwrap();
        std::fs::set_permissions(c.join("tool"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = OsString::from(format!("{}::{}:{}", a.display(), b.display(), c.display()));
        let find = |program: &str| find_in_path(OsStr::new(program), Some(&path));
        assert_eq!(find("tool"), Some(c.join("tool")));
        assert_eq!(find("missing"), None);
        // Already a path, or nothing to look for: `execvp` decides.
        assert_eq!(find("./tool"), None);
        assert_eq!(find(""), None);
        assert_eq!(find_in_path(OsStr::new("tool"), None), None);
    }

    #[test]
    fn rules_grant_only_what_is_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let task = root.join("work").join("t1");
        let toolchain = root.join("home").join(".cargo").join("bin");
        std::fs::create_dir_all(&task).unwrap();
        std::fs::create_dir_all(&toolchain).unwrap();
        std::fs::write(root.join("log"), "").unwrap();
        std::os::unix::fs::symlink(&toolchain, root.join("link")).unwrap();
        let none = OpenedPaths::none();
        let rules = rules(
            &Confinement {
                read_write: vec![task.clone(), root.join("log"), root.join("missing")],
                read_only: vec![root.join("link"), task.clone()],
                network: true,
                ..Confinement::default()
            },
            &none,
        );
        let seen: Vec<(PathBuf, RuleAccess, bool)> = rules
            .iter()
            .map(|r| (r.path.clone(), r.access, r.opened.is_dir))
            .collect();
        assert_eq!(
            seen,
            vec![
                (task.clone(), RuleAccess::ReadWrite, true),
                (root.join("log"), RuleAccess::ReadWrite, false),
                // The link, read-only: its rule is on the target.
                (root.join("link"), RuleAccess::ReadOnly, true),
            ]
        );
        use std::os::unix::fs::MetadataExt as _;
        let target = std::fs::metadata(&toolchain).unwrap();
        assert_eq!(rules[2].opened.id, (target.dev(), target.ino()));
    }
}
