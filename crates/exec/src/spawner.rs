//! The task spawner (Linux): one small process per worker that forks every
//! task's supervisor, so that starting a task costs neither a `fork` of the
//! worker nor an `exec` of the whole `bridge` executable (issue 18, item 1).
//!
//! Why: a `fork` copies the page tables of the forking process, which grow
//! with its memory; the worker is a multi-threaded tokio process of tens of
//! megabytes, and `PR_SET_PDEATHSIG` needs a `pre_exec` hook, which rules
//! out `posix_spawn`/`vfork`. Then the supervisor was `bridge` executed
//! again (a dynamic link, relocations and the start-up of a 100 MB
//! executable) for each task. The spawner is `bridge` executed once, with
//! the hidden first argument [`SPAWNER_ARG`]: single-threaded, a few
//! megabytes, it forks cheaply, and its child runs the supervisor's code
//! (`supervisor::run_plan`) directly, as a freshly executed supervisor
//! would.
//!
//! The protocol, over `SOCK_SEQPACKET` unix sockets (one message is one
//! request or one reply, never split or merged):
//!
//! - the worker starts the spawner from a thread of its own that lives as
//!   long as the spawner (`PR_SET_PDEATHSIG` is tied to the thread that
//!   forked), its control socket as standard input; the spawner says
//!   `R`;
//! - for each task, the worker sends on the control socket the task's
//!   working folder, environment and supervisor plan, with three
//!   descriptors (`SCM_RIGHTS`): the task's stdout and stderr logs and one
//!   end of a socket pair of the task's own, on which the spawner answers
//!   `S` and the supervisor's pid (or `F` and why it could not fork), and
//!   later `E` and its exit code or `K` and the signal that killed it;
//! - the supervisor inherits the spawner's end of that socket. A gated
//!   one (`supervisor::Plan::gated`) makes the task's namespaces and
//!   mounts and waits for the worker's `G` on it (the worker's slot is
//!   free), then builds the Landlock rules and starts the task; the
//!   socket's end instead means the worker gave the task up;
//! - once the task and everything it left are reaped, the supervisor says
//!   `T` and how the task ended (`supervisor::Report::Socket`): the worker
//!   takes the task as ended then, without waiting for the supervisor's
//!   exit and the spawner's `E`, and no status file is written or read.
//!   A short task's `T` may come before the spawner's `S`;
//! - the spawner reaps its children (`SIGCHLD` through a signal
//!   descriptor) and so is the only one that may wait for them; the worker
//!   waits on the task's socket.
//!
//! The death chain: the spawner gets `SIGKILL` when the worker dies
//! (`PR_SET_PDEATHSIG`, checked against a race with `getppid`), and each
//! supervisor gets [`IMMEDIATE_STOP`](supervisor::IMMEDIATE_STOP) when the
//! spawner dies, so a worker killed with `SIGKILL` still stops every task.
//! If the spawner dies alone, each task's socket reaches its end without an
//! exit: the worker stops what is left of the task and reports it
//! interrupted (`Waited::Lost`), and the next task starts a new spawner.
//! Where the spawner cannot be started or cannot take a request (a message
//! too large for a socket, say), `start` says `Start::Unavailable` and
//! the caller executes a supervisor as before.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recv,
    recvmsg, send, sendmsg, socketpair,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;

use crate::opened::OpenedPaths;
use crate::supervisor::{self, Origin, Plan, Report, TaskStatus};

/// The hidden first argument that turns the worker's executable into its
/// task spawner (see the [module docs](self)).
pub const SPAWNER_ARG: &str = "__task-spawner";

/// What the spawner says on its control socket once it serves requests.
const READY: &[u8] = b"R";

/// The largest request the spawner reads: a task's script, arguments and
/// environment. A larger one is not sent (the task then starts the old way).
const MAX_REQUEST: usize = 256 * 1024;

/// The worker's connection to its spawner.
#[derive(Clone)]
struct Conn {
    ctrl: std::sync::Arc<OwnedFd>,
    pid: u32,
}

/// This worker's spawner, started by the first task that needs it.
static SPAWNER: Mutex<Option<Conn>> = Mutex::new(None);

/// Told by the thread that waits for the spawner once it has reaped it.
static REAPED: Mutex<Option<std::sync::mpsc::Receiver<()>>> = Mutex::new(None);

/// How long [`shutdown`] waits for the spawner to end.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Set when a spawner could not be started: this process then executes a
/// supervisor per task, as before, rather than trying again for each.
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// What a task needs besides its [`Plan`].
pub(crate) struct Request<'a> {
    pub workdir: &'a Path,
    pub env: &'a std::collections::BTreeMap<String, String>,
    pub plan: &'a Plan,
    pub stdout: &'a File,
    pub stderr: &'a File,
}

/// What [`start`] did.
pub(crate) enum Start {
    /// The supervisor runs.
    Started(Task),
    /// The spawner could not fork it: the message says why.
    Failed(String),
    /// No spawner could take the request: execute a supervisor instead.
    Unavailable,
}

/// A running supervisor started by the spawner.
pub(crate) struct Task {
    pid: Pid,
    reply: AsyncFd<OwnedFd>,
    /// Its report, when it came before the spawner's `S` (a short task's
    /// supervisor may report before its parent has said it started it).
    early: Option<TaskStatus>,
}

/// How waiting for a supervisor ended.
pub(crate) enum Waited {
    /// It told how the task ended (it is exiting; see
    /// [`Report::Socket`]).
    Reported(TaskStatus),
    /// It ended so (its exit code or the signal that killed it) without
    /// telling how the task ended.
    Exited(ExitStatus),
    /// The spawner died: nothing will say how the supervisor ended.
    Lost,
}

impl Task {
    /// The supervisor's pid, which is also its process group's id.
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Tells a gated supervisor (see `supervisor::Plan::gated`) to start
    /// the task; `false` when it cannot be told (it ended).
    pub(crate) fn go(&self) -> bool {
        send(
            self.reply.get_ref().as_raw_fd(),
            &[supervisor::GO],
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        )
        .is_ok()
    }

    /// Waits until the supervisor says how the task ended, or ends without
    /// saying. Cancel-safe: dropping the future loses nothing.
    pub(crate) async fn wait(&mut self) -> Waited {
        if let Some(status) = self.early.take() {
            return Waited::Reported(status);
        }
        loop {
            match read_reply(&self.reply).await {
                Some(Reply::Reported(status)) => return Waited::Reported(status),
                Some(Reply::Exited(code)) => {
                    return Waited::Exited(ExitStatus::from_raw((code & 0xff) << 8));
                }
                Some(Reply::Killed(signal)) => return Waited::Exited(ExitStatus::from_raw(signal)),
                // Another `S`/`F` cannot come; skip rather than spin.
                Some(Reply::Started(_) | Reply::Failed(_)) => {}
                None => return Waited::Lost,
            }
        }
    }
}

/// Starts the supervisor of a task through this worker's spawner, starting
/// the spawner first if there is none (`program`: this executable).
pub(crate) async fn start(program: &Path, request: &Request<'_>) -> Start {
    let body = encode(request);
    if body.len() > MAX_REQUEST {
        return Start::Unavailable;
    }
    // A spawner that died since the last task is replaced once.
    for _ in 0..2 {
        let Some(conn) = connection(program) else {
            return Start::Unavailable;
        };
        match send_request(&conn, &body, request).await {
            Ok(reply) => return started(reply, &conn).await,
            Err(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN | Errno::ECONNREFUSED) => {
                forget(conn.pid);
            }
            Err(error) => {
                tracing::debug!(%error, "could not send a task to the spawner");
                return Start::Unavailable;
            }
        }
    }
    Start::Unavailable
}

/// Sends one request; returns our end of the task's socket.
async fn send_request(conn: &Conn, body: &[u8], request: &Request<'_>) -> Result<OwnedFd, Errno> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )?;
    let fds = [
        request.stdout.as_raw_fd(),
        request.stderr.as_raw_fd(),
        theirs.as_raw_fd(),
    ];
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
    loop {
        let sent = sendmsg::<()>(
            conn.ctrl.as_raw_fd(),
            &[IoSlice::new(body)],
            &[ControlMessage::ScmRights(&fds)],
            flags,
            None,
        );
        match sent {
            Ok(_) => return Ok(ours),
            Err(Errno::EINTR) => {}
            // The spawner is behind: wait until the socket takes more,
            // through a registration of its own (the connection outlives
            // any one runtime).
            Err(Errno::EAGAIN) => {
                let dup = conn.ctrl.try_clone().map_err(|_| Errno::EMFILE)?;
                let ready = register(dup).map_err(|_| Errno::EAGAIN)?;
                let _ = ready.writable().await.map_err(|_| Errno::EAGAIN)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads the spawner's first answer about a task (and the supervisor's
/// report, where it came first: the supervisor runs as soon as it is
/// forked, and a short task may end before its parent says `S`).
async fn started(ours: OwnedFd, conn: &Conn) -> Start {
    let Ok(reply) = register(ours) else {
        return Start::Unavailable;
    };
    let mut early = None;
    loop {
        match read_reply(&reply).await {
            Some(Reply::Started(pid)) => {
                return Start::Started(Task {
                    pid: Pid::from_raw(pid),
                    reply,
                    early,
                });
            }
            Some(Reply::Reported(status)) if early.is_none() => early = Some(status),
            Some(Reply::Failed(message)) => return Start::Failed(message),
            // The spawner died with the request: start the task the old
            // way. (Nothing else comes before `S`.)
            Some(Reply::Exited(_) | Reply::Killed(_) | Reply::Reported(_)) | None => {
                forget(conn.pid);
                return Start::Unavailable;
            }
        }
    }
}

/// Registers a socket with the runtime's reactor.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is open for as long as it lives, and the
    // `AsyncFd` owns it: its descriptor cannot be closed or replaced
    // before the registration ends (nothing here calls `get_mut`).
    #[allow(unsafe_code)]
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// One message about a task: from the spawner, or the supervisor's report
/// (see [`Report::Socket`]).
enum Reply {
    Started(i32),
    Failed(String),
    Exited(i32),
    Killed(i32),
    Reported(TaskStatus),
}

impl Reply {
    fn encode(&self) -> Vec<u8> {
        let (kind, number) = match self {
            Reply::Started(n) => (b'S', *n),
            Reply::Exited(n) => (b'E', *n),
            Reply::Killed(n) => (b'K', *n),
            Reply::Failed(m) => return [b"F", m.as_bytes()].concat(),
            // Written by the supervisor itself (`supervisor::run_plan`);
            // encoded here for tests.
            Reply::Reported(status) => {
                return [&[supervisor::REPORT_KIND], status.encode().as_bytes()].concat();
            }
        };
        let mut out = vec![kind];
        out.extend_from_slice(&number.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Reply> {
        let (&kind, rest) = bytes.split_first()?;
        if kind == b'F' {
            return Some(Reply::Failed(String::from_utf8_lossy(rest).into_owned()));
        }
        if kind == supervisor::REPORT_KIND {
            return supervisor::decode_report(rest).map(Reply::Reported);
        }
        let number = i32::from_le_bytes(rest.try_into().ok()?);
        match kind {
            b'S' => Some(Reply::Started(number)),
            b'E' => Some(Reply::Exited(number)),
            b'K' => Some(Reply::Killed(number)),
            _ => None,
        }
    }
}

/// The next message on a task's socket; `None` at its end (the spawner
/// closed it without a word: it died) or on an error.
async fn read_reply(socket: &AsyncFd<OwnedFd>) -> Option<Reply> {
    // A report's message fits (see `supervisor::MAX_REPORT`).
    let mut buf = [0u8; 16 * 1024];
    loop {
        let mut ready = socket.readable().await.ok()?;
        let read = ready.try_io(|fd| {
            recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
        });
        match read {
            Ok(Ok(0)) => return None,
            Ok(Ok(n)) => return Reply::decode(&buf[..n]),
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return None,
            // Not readable after all: wait again.
            Err(_would_block) => {}
        }
    }
}

/// This worker's spawner, started now if there is none.
fn connection(program: &Path) -> Option<Conn> {
    if UNAVAILABLE.load(Ordering::Relaxed) {
        return None;
    }
    let mut spawner = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(conn) = &*spawner {
        return Some(conn.clone());
    }
    match launch(program) {
        Ok(conn) => {
            tracing::debug!(pid = conn.pid, "task spawner started");
            *spawner = Some(conn.clone());
            Some(conn)
        }
        Err(error) => {
            tracing::warn!(
                "could not start the task spawner ({error}): each task's supervisor is started as its own program, which is slower"
            );
            UNAVAILABLE.store(true, Ordering::Relaxed);
            None
        }
    }
}

/// Ends this process's spawner, if it has one, and waits (briefly) until
/// it is reaped: called when the worker's command is done, so that no
/// process of the worker's outlives it and the spawner's time (and its
/// supervisors') is counted in the worker's. No task may be running.
pub fn shutdown() {
    let conn = SPAWNER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let Some(conn) = conn else { return };
    // The end of the control socket: the spawner exits.
    drop(conn);
    let reaped = REAPED.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(reaped) = reaped {
        let _ = reaped.recv_timeout(SHUTDOWN_WAIT);
    }
}

/// Forgets the spawner `pid` (it died), so that the next task starts
/// another.
fn forget(pid: u32) {
    let mut spawner = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
    if spawner.as_ref().is_some_and(|c| c.pid == pid) {
        *spawner = None;
    }
}

/// Starts a spawner from a thread of its own, which then waits for it (and
/// so keeps `PR_SET_PDEATHSIG` armed: it fires when the forking thread
/// ends), and waits until it is ready.
fn launch(program: &Path) -> Result<Conn, String> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let mut command = std::process::Command::new(program);
    command
        .arg(SPAWNER_ARG)
        .env_clear()
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let hook = crate::die_with_parent_hook();
    // SAFETY: see `die_with_parent_hook`: the hook is async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(hook);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (reaped_tx, reaped_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("bridge-task-spawner".to_owned())
        .spawn(move || {
            let spawned = command.spawn();
            // Our copy of the spawner's end: its end must close with it.
            drop(command);
            match spawned {
                Ok(mut child) => {
                    let pid = child.id();
                    let _ = tx.send(Ok(pid));
                    let _ = child.wait();
                    forget(pid);
                    let _ = reaped_tx.send(());
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        })
        .map_err(|e| format!("could not start a thread: {e}"))?;
    let pid = rx
        .recv()
        .map_err(|_| "its thread ended".to_owned())?
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let mut hello = [0u8; 8];
    match recv(ours.as_raw_fd(), &mut hello, MsgFlags::empty()) {
        Ok(n) if &hello[..n] == READY => {
            *REAPED.lock().unwrap_or_else(PoisonError::into_inner) = Some(reaped_rx);
            Ok(Conn {
                ctrl: std::sync::Arc::new(ours),
                pid,
            })
        }
        Ok(_) => Err(format!("{} did not start as a spawner", program.display())),
        Err(e) => Err(format!("{}: {e}", program.display())),
    }
}

/// A request's bytes: the working folder, the environment and the plan's
/// arguments, each a little-endian `u32` length and its bytes.
fn encode(request: &Request<'_>) -> Vec<u8> {
    let mut fields: Vec<OsString> = vec![
        request.workdir.as_os_str().to_owned(),
        request.env.len().to_string().into(),
    ];
    fields.extend(request.env.iter().map(|(k, v)| format!("{k}={v}").into()));
    fields.extend(request.plan.to_args());
    let mut out = Vec::new();
    for field in &fields {
        let bytes = field.as_bytes();
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Reads what [`encode`] wrote: the working folder and the plan, its
/// environment filled in.
fn decode(mut bytes: &[u8]) -> Option<(PathBuf, Plan)> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (field, rest) = rest.split_at_checked(len)?;
        fields.push(OsString::from_vec(field.to_vec()));
        bytes = rest;
    }
    let mut fields = fields.into_iter();
    let workdir = PathBuf::from(fields.next()?);
    let count: usize = fields.next()?.to_str()?.parse().ok()?;
    let mut env = Vec::with_capacity(count);
    for _ in 0..count {
        let entry = fields.next()?;
        let (k, v) = entry
            .as_bytes()
            .split_at(entry.as_bytes().iter().position(|&b| b == b'=')?);
        env.push((
            OsStr::from_bytes(k).to_owned(),
            OsStr::from_bytes(&v[1..]).to_owned(),
        ));
    }
    let mut plan = Plan::parse(fields).ok()?;
    plan.env = Some(env);
    Some((workdir, plan))
}

/// The spawner's entry point, when this executable's first argument is
/// [`SPAWNER_ARG`]: serves the worker that started it (its standard input
/// is the control socket) until the worker closes it. Returns the process
/// exit code.
pub fn main() -> i32 {
    match Spawner::new() {
        Ok(mut spawner) => spawner.serve(),
        Err(message) => {
            report(&message);
            2
        }
    }
}

/// Tells why the spawner stopped: the one place it prints (the worker's
/// stderr, which it inherits).
#[allow(
    clippy::print_stderr,
    reason = "the spawner is its own process's main; it has no other place to tell why it stops"
)]
fn report(message: &str) {
    eprintln!(
        "bridge task spawner: {message} (it is started by `bridge work` and `bridge run`, not by hand)"
    );
}

/// The spawner's state.
struct Spawner {
    ctrl: OwnedFd,
    signals: SignalFd,
    /// Each running supervisor's socket to the worker.
    children: HashMap<Pid, OwnedFd>,
    buf: Vec<u8>,
    /// What a task in namespaces is cloned with, where the kernel gives it:
    /// a pidfd of this process and a stack (see [`Origin::Cloned`]).
    cloning: Option<(OwnedFd, Stack)>,
    /// The allow-listed paths every sandbox shares, opened once.
    kept: OpenedPaths,
}

/// The stack a cloned supervisor starts on: an anonymous mapping with a
/// guard page below it, reused for every clone (each child has its own copy
/// of it, as of all this process's memory).
struct Stack {
    base: std::ptr::NonNull<std::ffi::c_void>,
    len: usize,
}

impl Stack {
    /// A supervisor's code is shallow; pages are only backed once touched.
    const LEN: usize = 8 << 20;
    const GUARD: usize = 4096;

    fn new() -> Option<Stack> {
        use nix::libc;
        // SAFETY: a fresh private anonymous mapping (no address asked
        // for), owned by the returned value and unmapped in its `drop`.
        #[allow(unsafe_code)]
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let stack = Stack {
            base: std::ptr::NonNull::new(base)?,
            len: Self::LEN,
        };
        // SAFETY: the lowest page of the mapping just made; nothing points
        // into it.
        #[allow(unsafe_code)]
        let guarded = unsafe { libc::mprotect(base, Self::GUARD, libc::PROT_NONE) };
        (guarded == 0).then_some(stack)
    }

    /// The usable part, above the guard page.
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len - GUARD` bytes above the guard page of a mapping this
        // value owns, borrowed mutably from it.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts_mut(
                self.base.as_ptr().cast::<u8>().add(Self::GUARD),
                self.len - Self::GUARD,
            )
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer borrowed.
        #[allow(unsafe_code)]
        let _ = unsafe { nix::libc::munmap(self.base.as_ptr(), self.len) };
    }
}

/// A pidfd of this process (Linux 5.3+), which a cloned supervisor polls
/// to learn whether the spawner died before it could ask to be told.
fn own_pidfd() -> Option<OwnedFd> {
    // SAFETY: a raw syscall that takes a pid and flags and returns a new
    // descriptor (or -1), which we then own.
    #[allow(unsafe_code)]
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, nix::libc::getpid(), 0u32) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: just returned by the kernel; nothing else owns it.
    #[allow(unsafe_code)]
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Close-on-exec: no task may hold it.
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .ok()?;
    Some(fd)
}

impl Spawner {
    /// Takes the control socket off standard input (which becomes
    /// `/dev/null`, every supervisor's and task's stdin), hides this process
    /// from the tasks, listens for `SIGCHLD` and says it is ready.
    fn new() -> Result<Spawner, String> {
        close_inherited_on_exec();
        let ctrl = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("cannot take its socket: {e}"))?;
        let null = File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
        nix::unistd::dup2_stdin(&null).map_err(|e| format!("cannot replace its stdin: {e}"))?;
        nix::sys::prctl::set_dumpable(false)
            .map_err(|e| format!("cannot become non-dumpable: {e}"))?;
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block()
            .map_err(|e| format!("cannot block SIGCHLD: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| format!("cannot listen for SIGCHLD: {e}"))?;
        send(ctrl.as_raw_fd(), READY, MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| format!("cannot talk to the worker: {e}"))?;
        Ok(Spawner {
            ctrl,
            signals,
            children: HashMap::new(),
            buf: vec![0; MAX_REQUEST],
            cloning: own_pidfd().zip(Stack::new()),
            kept: OpenedPaths::none(),
        })
    }

    /// Serves requests and reaps supervisors until the worker closes the
    /// control socket.
    fn serve(&mut self) -> i32 {
        loop {
            let mut fds = [
                PollFd::new(self.ctrl.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    report(&format!("cannot wait: {e}"));
                    return 2;
                }
            }
            let request = fds[0].any().unwrap_or(false);
            let child = fds[1].any().unwrap_or(false);
            if child {
                while let Ok(Some(_)) = self.signals.read_signal() {}
                self.reap();
            }
            if request && !self.take_request() {
                // The worker is gone (or its socket broke): the supervisors
                // get IMMEDIATE_STOP when this process ends.
                return 0;
            }
        }
    }

    /// Reads one request and forks its supervisor. `false` at the end of
    /// the control socket.
    fn take_request(&mut self) -> bool {
        let mut cmsg = nix::cmsg_space!([RawFd; 3]);
        let mut iov = [IoSliceMut::new(&mut self.buf)];
        let received = recvmsg::<()>(
            self.ctrl.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        );
        let (len, truncated, fds) = match received {
            Ok(msg) => {
                let mut fds: Vec<OwnedFd> = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: the kernel just made these descriptors
                            // for us (SCM_RIGHTS): nothing else owns them.
                            #[allow(unsafe_code)]
                            fds.extend(
                                raw.into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                }
                (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC), fds)
            }
            Err(Errno::EINTR | Errno::EAGAIN) => return true,
            Err(_) => return false,
        };
        if len == 0 && fds.is_empty() {
            return false;
        }
        let Ok([stdout, stderr, reply]) = <[OwnedFd; 3]>::try_from(fds) else {
            // Not a request of ours; its descriptors close here.
            return true;
        };
        let decoded = if truncated {
            None
        } else {
            decode(&self.buf[..len])
        };
        let Some((workdir, mut plan)) = decoded else {
            answer(
                &reply,
                &Reply::Failed("the task spawner could not read the task's request".to_owned()),
            );
            return true;
        };
        plan.parent = std::process::id() as i32;
        self.fork_supervisor(&workdir, &plan, stdout, stderr, reply);
        true
    }

    /// Starts the supervisor of one task and tells the worker its pid: a
    /// task in namespaces gets one cloned into them where it can (see
    /// [`Origin::Cloned`]), any other a forked one.
    fn fork_supervisor(
        &mut self,
        workdir: &Path,
        plan: &Plan,
        stdout: OwnedFd,
        stderr: OwnedFd,
        reply: OwnedFd,
    ) {
        // The spawner's descriptors: the supervisor must not hold the
        // worker's sockets open (their end tells the worker that the
        // spawner died), except its own task's, on which it reports. They
        // are close-on-exec, so no task sees them.
        let mut inherited = vec![self.ctrl.as_raw_fd(), self.signals.as_raw_fd()];
        inherited.extend(self.children.values().map(AsRawFd::as_raw_fd));
        let ends = (&stdout, &stderr, &reply);
        if let Some(c) = &plan.confinement {
            self.kept.prepare(c, workdir.parent());
        }
        let kept = &self.kept;
        let namespaces = plan.confinement.as_ref().filter(|c| c.namespaces);
        let cloned = match (namespaces, self.cloning.as_mut()) {
            (Some(c), Some((pidfd, stack))) => {
                let origin = Origin::Cloned {
                    spawner: pidfd.as_raw_fd(),
                    uid: nix::unistd::getuid(),
                    gid: nix::unistd::getgid(),
                };
                let child = Box::new(|| {
                    exit_now(become_supervisor(
                        &inherited,
                        (workdir, kept),
                        plan,
                        ends,
                        origin,
                    ))
                });
                // SAFETY: as for `fork` below (this process is
                // single-threaded), and the child runs on a stack of its own
                // (a copy of `stack`, which outlives the call).
                #[allow(unsafe_code)]
                let cloned = unsafe {
                    nix::sched::clone(
                        child,
                        stack.as_mut_slice(),
                        supervisor::namespace_flags(c),
                        Some(Signal::SIGCHLD as i32),
                    )
                };
                // Where cloning into namespaces is refused, the forked
                // supervisor enters them itself (and says why it cannot).
                cloned.ok()
            }
            _ => None,
        };
        let started = match cloned {
            Some(child) => Ok(child),
            // SAFETY: this process is single-threaded (executed for this,
            // and nothing here starts a thread), so the child may run
            // ordinary Rust after `fork`, as an executed supervisor would.
            #[allow(unsafe_code)]
            None => match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => exit_now(become_supervisor(
                    &inherited,
                    (workdir, kept),
                    plan,
                    ends,
                    Origin::Started,
                )),
                Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child),
                Err(e) => Err(e),
            },
        };
        match started {
            Ok(child) => {
                answer(&reply, &Reply::Started(child.as_raw()));
                self.children.insert(child, reply);
            }
            Err(e) => answer(
                &reply,
                &Reply::Failed(format!(
                    "could not start the task's supervisor: {}",
                    io::Error::from(e)
                )),
            ),
        }
    }

    /// Reaps every supervisor that has ended and tells the worker how.
    fn reap(&mut self) {
        loop {
            let (pid, reply) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Reply::Exited(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, Reply::Killed(signal as i32)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => return,
            };
            if let Some(socket) = self.children.remove(&pid) {
                answer(&socket, &reply);
            }
        }
    }
}

/// In the child (forked or cloned): closes the spawner's descriptors
/// (`inherited`), takes the task's logs as stdout and stderr, a process
/// group of its own, and runs the supervisor, which reports on the task's
/// socket (`reply`).
fn become_supervisor(
    inherited: &[RawFd],
    (workdir, kept): (&Path, &OpenedPaths),
    plan: &Plan,
    (stdout, stderr, reply): (&OwnedFd, &OwnedFd, &OwnedFd),
    origin: Origin,
) -> i32 {
    for fd in inherited {
        let _ = nix::unistd::close(*fd);
    }
    let _ = SigSet::empty().thread_set_mask();
    let setup = nix::unistd::dup2_stdout(stdout)
        .and_then(|()| nix::unistd::dup2_stderr(stderr))
        .and_then(|()| nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)))
        // Dumpable again until the supervisor has written its uid map
        // (see `supervisor::supervise`).
        .and_then(|()| nix::sys::prctl::set_dumpable(true));
    if let Err(e) = setup {
        report(&format!("cannot set up a task's supervisor: {e}"));
        return 2;
    }
    let _ = nix::unistd::close(stdout.as_raw_fd());
    let _ = nix::unistd::close(stderr.as_raw_fd());
    supervisor::run_plan(
        plan,
        (Some(workdir), kept),
        origin,
        Report::Socket(reply.as_raw_fd()),
    )
}

/// Ends a supervisor (a forked or cloned child of the spawner) with `code`,
/// without running the exit handlers and destructors of the spawner's
/// program that `std::process::exit` runs: nothing of them is the
/// supervisor's, and each wrote to pages the child shares with the
/// spawner, which the kernel then had to copy (a tenth of a short task's
/// page faults). The supervisor writes nothing buffered.
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` only ends the process; it is async-signal-safe and
    // may be called at any point after `fork`.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::_exit(code)
    }
}

/// Marks every descriptor above the standard three close-on-exec: a
/// descriptor the worker's own parent leaked to it (a pipe of a shell or a
/// CI runner) must not reach the tasks. Best effort (Linux 5.11+).
fn close_inherited_on_exec() {
    // SAFETY: a raw syscall that only changes descriptor flags; no memory
    // is passed.
    #[allow(unsafe_code)]
    let _ = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3u32,
            u32::MAX,
            nix::libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// Sends a reply on a task's socket. A worker that gave up on the task
/// (closed its end) needs none.
fn answer(socket: &OwnedFd, reply: &Reply) {
    let _ = send(
        socket.as_raw_fd(),
        &reply.encode(),
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let plan = Plan {
            parent: 1,
            grace: std::time::Duration::from_millis(300),
            status_path: "/w/x.status".into(),
            confinement: None,
            argv: vec!["sh".into(), "-c".into(), "echo a=b".into()],
            env: None,
            gated: false,
        };
        let env = [
            ("PATH".to_owned(), "/bin".to_owned()),
            ("X".to_owned(), "1=2".to_owned()),
        ]
        .into_iter()
        .collect();
        let (stdout, stderr) = (
            File::open("/dev/null").unwrap(),
            File::open("/dev/null").unwrap(),
        );
        let request = Request {
            workdir: Path::new("/w/t 1"),
            env: &env,
            plan: &plan,
            stdout: &stdout,
            stderr: &stderr,
        };
        let (workdir, decoded) = decode(&encode(&request)).unwrap();
        assert_eq!(workdir, Path::new("/w/t 1"));
        assert_eq!(
            decoded.env,
            Some(vec![
                ("PATH".into(), "/bin".into()),
                ("X".into(), "1=2".into())
            ])
        );
        assert_eq!(
            Plan {
                env: None,
                ..decoded
            },
            plan
        );
        assert!(decode(&[1, 0, 0]).is_none());
    }

    /// A supervisor's report may reach the worker before the spawner's
    /// `S` (the child ran the whole task before its parent sent it): the
    /// task started, and has ended so; the spawner is not taken for dead.
    #[tokio::test]
    async fn a_report_before_the_spawners_start_is_kept() {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .unwrap();
        for reply in [
            Reply::Reported(TaskStatus::Exited(3)),
            Reply::Started(4242),
            Reply::Exited(0),
        ] {
            answer(&theirs, &reply);
        }
        let conn = Conn {
            ctrl: std::sync::Arc::new(File::open("/dev/null").unwrap().into()),
            pid: u32::MAX,
        };
        let Start::Started(mut task) = started(ours, &conn).await else {
            panic!("the task was not taken as started");
        };
        assert_eq!(task.pid(), Pid::from_raw(4242));
        assert!(matches!(
            task.wait().await,
            Waited::Reported(TaskStatus::Exited(3))
        ));
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Started(42),
            Reply::Exited(3),
            Reply::Killed(9),
            Reply::Failed("no".into()),
            Reply::Reported(TaskStatus::Exited(3)),
            Reply::Reported(TaskStatus::FailedToStart("could not start `x`".into())),
        ] {
            let again = Reply::decode(&reply.encode()).unwrap();
            assert_eq!(again.encode(), reply.encode());
        }
        assert!(Reply::decode(b"S12").is_none());
    }
}
