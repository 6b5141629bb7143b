//! The per-task supervisor (Linux): a small process between the worker and a
//! task that makes sure none of the task's processes outlives it, and that
//! confines the task before it starts.
//!
//! Why a separate process: a process group is not enough to find a task's
//! processes (a child that calls `setsid`, or a daemon that double-forks,
//! leaves it), and `PR_SET_PDEATHSIG` covers only the direct child. A *child
//! subreaper* (`PR_SET_CHILD_SUBREAPER`) inherits every orphaned descendant
//! instead of `init`, so it can find and kill all of them. The worker itself
//! cannot be that subreaper: it runs many tasks at once and could not tell
//! whose orphan is whose. So [`run`](crate::run) starts, for each task, the
//! worker's own executable again with the hidden first argument
//! [`SUPERVISOR_ARG`]; the executable hands its arguments to [`main`], which
//!
//! 1. makes itself a subreaper and non-dumpable, and asks for
//!    [`IMMEDIATE_STOP`] if the worker dies (`PR_SET_PDEATHSIG`);
//! 2. applies the [`Confinement`] to itself (Landlock: no access to the
//!    protected folders, everything else allowed), which the task inherits
//!    and can never lift;
//! 3. starts the task in its own process group, with the supervisor's own
//!    environment, working folder and standard streams (the worker set them);
//! 4. waits for it; on `SIGTERM`/`SIGINT`/`SIGHUP` it forwards `SIGTERM` to
//!    the task's group and, after the grace period, kills everything; on
//!    [`IMMEDIATE_STOP`] it kills everything at once;
//! 5. when the task has exited, kills and reaps every descendant left (loose
//!    background processes, `setsid` daemons), writes the task's exit status
//!    to the status file and exits.
//!
//! This is also where a fuller sandbox (issue 13) belongs: it is one process
//! per task that runs before the task's code, single-threaded and fresh from
//! `exec`, so it may use ordinary Rust (allocation, the `landlock` crate)
//! rather than only async-signal-safe calls between `fork` and `exec`.
//!
//! What it cannot do: if the supervisor itself is killed with `SIGKILL`, the
//! task's orphans go to `init` as before (the worker then still kills the
//! supervisor's process group). The worker's `SIGKILL` is covered: the kernel
//! sends the supervisor [`IMMEDIATE_STOP`].

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use landlock::{
    ABI, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::Confinement;

/// The hidden first argument that turns the worker's executable into a
/// supervisor (see the [module docs](self)).
pub const SUPERVISOR_ARG: &str = "__task-supervisor";

/// The signal that makes a supervisor kill its task's processes at once,
/// without a grace period: sent by the kernel when the worker dies, and by
/// the worker when it abandons a task.
pub const IMMEDIATE_STOP: Signal = Signal::SIGUSR2;

/// The Landlock file-system ABI bridge asks for (best effort: an older
/// kernel enforces what it can).
const LANDLOCK_ABI: ABI = ABI::V5;

/// Whether this kernel enforces Landlock file-system rules, so that the
/// worker can say once when it does not.
pub(crate) fn landlock_available() -> bool {
    // Creating a ruleset, without restricting anything, is the documented
    // way to ask; `HardRequirement` turns "not supported" into an error.
    use landlock::{CompatLevel, Compatible};
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
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
    pub confinement: Confinement,
    /// The task's program and its arguments.
    pub argv: Vec<OsString>,
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
        for p in &self.confinement.protect {
            args.extend(["--protect".into(), p.clone().into()]);
        }
        for p in &self.confinement.allow {
            args.extend(["--allow".into(), p.clone().into()]);
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
            confinement: Confinement::default(),
            argv: Vec::new(),
        };
        while let Some(flag) = args.next() {
            if flag == "--" {
                plan.argv = args.collect();
                break;
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
                Some("--protect") => plan.confinement.protect.push(value.into()),
                Some("--allow") => plan.confinement.allow.push(value.into()),
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
    fn encode(&self) -> String {
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
    let plan = match Plan::parse(args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!(
                "bridge task supervisor: {e} (it is started by `bridge work` and `bridge run`, not by hand)"
            );
            return 2;
        }
    };
    // Opened before the supervisor confines itself: the status file lives
    // in the worker's folder, which the task (and so the confined
    // supervisor) may not open.
    let mut status_file = match std::fs::File::create(&plan.status_path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!(
                "bridge task supervisor: cannot create {}: {e}",
                plan.status_path.display()
            );
            return 2;
        }
    };
    let (status, code) = match supervise(&plan) {
        Ok(status) => (status, 0),
        Err(message) => (TaskStatus::FailedToStart(message), 2),
    };
    use std::io::Write as _;
    match status_file.write_all(status.encode().as_bytes()) {
        Ok(()) => code,
        Err(e) => {
            eprintln!(
                "bridge task supervisor: cannot write the task's status to {}: {e}",
                plan.status_path.display()
            );
            2
        }
    }
}

/// Steps 1 to 5 of the [module docs](self). An error is a message for the
/// task's attempt (the task did not start).
fn supervise(plan: &Plan) -> Result<TaskStatus, String> {
    use nix::sys::prctl;
    let setup = |what: &str, e: Errno| format!("the task supervisor could not {what}: {e}");
    // Our own signals arrive through a descriptor, so that waiting for
    // children, the grace deadline and signals are one loop. The mask is
    // not inherited by the task: `std::process::Command` resets it.
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
    mask.thread_block().map_err(|e| setup("block signals", e))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| setup("listen for signals", e))?;
    prctl::set_child_subreaper(true).map_err(|e| setup("become a subreaper", e))?;
    // Nothing secret lives here, but a non-dumpable process cannot be read
    // or traced through /proc by the task it runs.
    prctl::set_dumpable(false).map_err(|e| setup("become non-dumpable", e))?;
    prctl::set_pdeathsig(IMMEDIATE_STOP).map_err(|e| setup("watch the worker", e))?;
    if nix::unistd::getppid().as_raw() != plan.parent {
        return Err("the worker stopped before the task started".to_owned());
    }
    if !plan.confinement.is_empty() {
        confine(&plan.confinement)?;
    }

    let (program, args) = plan
        .argv
        .split_first()
        .ok_or_else(|| "could not start the task: its argv is empty".to_owned())?;
    let name = program.to_string_lossy().into_owned();
    let task = std::process::Command::new(program)
        .args(args)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("could not start `{name}`: {e}"))?;
    let task = Pid::from_raw(task.id() as i32);

    let mut status = None;
    let mut kill_at: Option<Instant> = None;
    loop {
        reap(task, &mut status);
        if let Some(status) = status {
            kill_descendants(task, &mut None);
            return Ok(status);
        }
        let now = Instant::now();
        if kill_at.is_some_and(|at| at <= now) {
            kill_descendants(task, &mut status);
            // The task was among them: `status` says how it ended.
            return Ok(status.unwrap_or(TaskStatus::Signaled(Signal::SIGKILL as i32)));
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
                Ok(s) if s == IMMEDIATE_STOP => kill_at = Some(Instant::now()),
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

/// Reaps every child that has exited, recording the task's status.
fn reap(task: Pid, status: &mut Option<TaskStatus>) {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return,
            Ok(reaped) => record(task, reaped, status),
            // ECHILD: no child at all, so the task is gone too; it cannot
            // have been reaped without `record` seeing it.
            Err(_) => {
                status.get_or_insert(TaskStatus::Signaled(Signal::SIGKILL as i32));
                return;
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

/// Applies `confinement` to this process (and so to the task it starts).
/// A kernel without Landlock is not an error: the worker has said so once.
fn confine(confinement: &Confinement) -> Result<(), String> {
    let abi = LANDLOCK_ABI;
    let rules = allow_rules(confinement);
    let fail = |e: landlock::RulesetError| format!("could not confine the task (Landlock): {e}");
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .create()
        .map_err(fail)?;
    for rule in rules {
        let access = match rule.access {
            RuleAccess::ListOnly => BitFlags::from(AccessFs::ReadDir),
            RuleAccess::All if rule.is_dir => AccessFs::from_all(abi),
            RuleAccess::All => AccessFs::from_file(abi),
        };
        // A path that vanished since it was listed needs no rule.
        let Ok(fd) = PathFd::new(&rule.path) else {
            continue;
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(fail)?;
    }
    let status = ruleset.restrict_self().map_err(fail)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        tracing::debug!("Landlock is not available: the task is not confined");
    }
    Ok(())
}

/// What a [`Rule`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleAccess {
    /// Listing folders only (the folders on the way to a protected one).
    ListOnly,
    /// Everything.
    All,
}

/// One Landlock rule: `access` to `path` and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub path: PathBuf,
    pub access: RuleAccess,
    pub is_dir: bool,
}

/// The allow-list that denies exactly the protected paths: Landlock only
/// grants, so every folder on the way from `/` to a protected path gets
/// "list" only, and each of its other entries gets everything. Inside a
/// protected folder, only the allowed folders are granted again. Symbolic
/// links get no rule (a rule would apply to their target, which might be
/// protected); access through them is checked on the target.
///
/// A consequence, documented in the README: a task cannot create new
/// entries directly in the folders on the way to a protected one (`$HOME`,
/// `~/.config`, the workspace folder); existing entries there are fully
/// usable.
pub(crate) fn allow_rules(confinement: &Confinement) -> Vec<Rule> {
    let canonical = |paths: &[PathBuf]| -> BTreeSet<PathBuf> {
        // A protected path that does not exist has nothing to protect.
        paths
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect()
    };
    let protect = canonical(&confinement.protect);
    let allow = canonical(&confinement.allow);
    let mut on_the_way = BTreeSet::new();
    for p in protect.iter().chain(&allow) {
        on_the_way.extend(p.ancestors().skip(1).map(Path::to_path_buf));
    }
    // A protected path is itself on the way to an allowed one inside it.
    for p in &protect {
        if allow.iter().any(|a| a.starts_with(p) && a != p) {
            on_the_way.insert(p.clone());
        }
    }
    let mut rules = Vec::new();
    for dir in &on_the_way {
        rules.push(Rule {
            path: dir.clone(),
            access: RuleAccess::ListOnly,
            is_dir: true,
        });
        let inside_protected = protect.iter().any(|p| dir.starts_with(p));
        // A folder we may cross but not list (`/home` with mode 0711):
        // its other entries are not ours to grant, and stay closed.
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if on_the_way.contains(&path) || protect.contains(&path) {
                continue;
            }
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if allow.contains(&path) || (!inside_protected && !file_type.is_symlink()) {
                rules.push(Rule {
                    path,
                    access: RuleAccess::All,
                    is_dir: file_type.is_dir(),
                });
            }
        }
    }
    rules
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trips_through_arguments() {
        let plan = Plan {
            parent: 42,
            grace: Duration::from_millis(2500),
            status_path: "/w/.bridge/work/x.status".into(),
            confinement: Confinement {
                protect: vec!["/home/u/.config/bridge".into(), "/w/.bridge".into()],
                allow: vec!["/w/.bridge/work/a/t1".into()],
            },
            argv: vec!["sh".into(), "-c".into(), "echo --protect".into()],
        };
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
    fn rules_grant_everything_but_the_protected_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let home = root.join("home");
        let config = home.join(".config");
        let protected = config.join("bridge");
        let ws = root.join("ws");
        let dot = ws.join(".bridge");
        let mine = dot.join("work").join("w1").join("task");
        let other = dot.join("work").join("w1").join("other-task");
        for d in [
            &protected,
            &home.join("docs"),
            &mine,
            &other,
            &dot.join("store"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(protected.join("identity"), "secret").unwrap();
        std::fs::write(home.join("notes.txt"), "x").unwrap();
        std::os::unix::fs::symlink(&protected, home.join("link")).unwrap();
        let rules = allow_rules(&Confinement {
            protect: vec![protected.clone(), dot.clone()],
            allow: vec![mine.clone()],
        });
        let granted = |p: &Path| {
            rules
                .iter()
                .filter(|r| p.starts_with(&r.path) && r.access == RuleAccess::All)
                .count()
        };
        assert_eq!(granted(&protected.join("identity")), 0, "{rules:#?}");
        assert_eq!(granted(&dot.join("store")), 0);
        assert_eq!(granted(&other), 0);
        assert_eq!(granted(&home.join("link")), 0, "symbolic links get no rule");
        assert_eq!(granted(&mine.join("out.txt")), 1);
        assert_eq!(granted(&home.join("docs").join("a")), 1);
        assert_eq!(granted(&home.join("notes.txt")), 1);
        assert_eq!(granted(Path::new("/usr/bin/env")), 1);
        assert!(
            rules
                .iter()
                .any(|r| r.path == home && r.access == RuleAccess::ListOnly)
        );
    }
}
