//! What a task may see on this device (issue 13): the worker's sandbox
//! policy, resolved once per worker, and the claim rules that follow from it.
//!
//! The mechanics live in `bridge_exec::supervisor` (Landlock, namespaces);
//! this module decides *what* they allow. A sandboxed task gets, and nothing
//! else:
//!
//! - read-write: its working folder, its TMPDIR (mounted over `/tmp` where
//!   namespaces work, unless the workspace itself lies below `/tmp`, which
//!   the mount would hide), its two log files, `/dev/shm` (private with
//!   namespaces, the host's without), and the harmless devices (`/dev/null`,
//!   `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom`, `/dev/tty`);
//! - read, list and execute: the system folders that exist ([`SYSTEM_READ_ONLY`]),
//!   the targets of the symbolic links directly in `/etc` (`resolv.conf` is
//!   often one into `/run`), the absolute folders on the worker's `PATH`, and
//!   the device's `[worker] allow-read` paths;
//!
//! except that no read-only grant may open the home folder itself, a folder
//! that holds a protected place (the bridge configuration folder with the
//! identity, the workspace's `.bridge/`, `~/.ssh`), or anything inside a
//! protected place: such entries are dropped with a warning (`~` or `.` on
//! `PATH` never opens the home folder).
//!
//! The fixed part of that list is built once per worker ([`Sandbox::resolve`]);
//! each task adds only its own folders ([`Sandbox::confinement`]).
//!
//! Policy ([`SandboxMode`], `[worker] sandbox` in `.bridge/config.toml`
//! (bridge.toml's on a runner: see [`crate::workspace::DeviceConfig`]), overridden by
//! `BRIDGE_SANDBOX`): `auto` sandboxes where the system can and otherwise runs
//! only this device's own tasks; `required` refuses to work without a
//! sandbox; `off` runs every task unsandboxed, as the user asked.
//! [`Sandbox::may_run_others_tasks`] and [`unmet_requirements`] are what the
//! claim decision asks.

use std::path::{Path, PathBuf};

use bridge_exec::{Confinement, SandboxSupport};
use bridge_model::TaskSpec;

// Pure, and read by the settings whether or not the worker is compiled.
pub use crate::sandbox_mode::{SandboxMode, UnknownSandboxMode};

/// Why the worker cannot take tasks under the sandbox settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// `[worker] sandbox = "required"` on a system that cannot sandbox.
    #[error("this device cannot sandbox tasks ({why_not}), and [worker] sandbox is \"required\"")]
    Required {
        /// What the system lacks.
        why_not: &'static str,
    },
    /// `BRIDGE_SANDBOX` holds no mode.
    #[error("{SANDBOX_ENV}: {reason}")]
    BadEnv {
        /// What is wrong with it.
        reason: UnknownSandboxMode,
    },
    /// `[worker] sandbox` holds no mode (checked when bridge.toml is read,
    /// so not seen in practice).
    #[error("[worker] sandbox: {reason}")]
    BadSetting {
        /// What is wrong with it.
        reason: UnknownSandboxMode,
    },
}

/// The environment variable that overrides `[worker] sandbox`.
pub const SANDBOX_ENV: &str = "BRIDGE_SANDBOX";

/// Issue 12's switch, kept as a deprecated alias: `off` means
/// `BRIDGE_SANDBOX=off`.
pub const DEPRECATED_CONFINEMENT_ENV: &str = "BRIDGE_TASK_CONFINEMENT";

/// Debug builds only (tests): pretend the kernel has no Landlock at all.
const DEBUG_NO_LANDLOCK_ENV: &str = "BRIDGE_DEBUG_SANDBOX_NO_LANDLOCK";

/// Debug builds only (tests): pretend unprivileged user namespaces are
/// refused, as on GitHub-hosted Ubuntu 24.04 runners, so that the
/// Landlock-only sandbox is used.
const DEBUG_NO_NAMESPACES_ENV: &str = "BRIDGE_DEBUG_SANDBOX_NO_NAMESPACES";

/// Debug builds only (tests): pretend Landlock has no TCP rules (a kernel
/// before 6.7).
const DEBUG_NO_LANDLOCK_TCP_ENV: &str = "BRIDGE_DEBUG_SANDBOX_NO_LANDLOCK_TCP";

/// System folders every sandboxed task may read, list and execute in
/// (those that exist). `/proc` is the namespace's own where namespaces work.
pub const SYSTEM_READ_ONLY: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/nix/store",
    "/snap",
    "/sys",
    "/proc",
];

/// Device files every sandboxed task may read and write.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// This worker's sandbox: the policy, what the system supports, and the
/// fixed part of every task's allow-list.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The policy in force.
    pub mode: SandboxMode,
    /// What the kernel supports (probed once).
    pub support: SandboxSupport,
    /// The device's `[worker] allow-read` paths, `~/` expanded, as written
    /// (what a task's `allow-read` is compared with).
    pub allow_read: Vec<PathBuf>,
    /// The worker's home folder, for `~/` in a task's `allow-read`.
    home: Option<PathBuf>,
    /// The allow-list every task shares; `None`: tasks are not sandboxed.
    fixed: Option<Confinement>,
    /// The host's `/tmp`, canonical.
    host_tmp: PathBuf,
    /// Whether a path of `fixed` lies below `host_tmp` (found once: a
    /// private `/tmp` would hide it).
    fixed_under_tmp: bool,
}

impl Sandbox {
    /// Resolves the policy (`BRIDGE_SANDBOX`, then the deprecated
    /// `BRIDGE_TASK_CONFINEMENT=off`, then `[worker] sandbox`), probes the
    /// system with `supervisor` (the executable that runs tasks' supervisors;
    /// `None`: no supervisor on this system), builds the fixed allow-list,
    /// and says once, as a warning, what tasks will not get. Fails with
    /// `required` and no sandbox.
    pub fn resolve(
        setting: Option<&str>,
        allow_read: &[String],
        protected: &[PathBuf],
        supervisor: Option<&Path>,
    ) -> Result<Sandbox, SandboxError> {
        let mode = mode_from(setting)?;
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let allow_read: Vec<PathBuf> = allow_read
            .iter()
            .filter_map(|p| expand_home(p, home.as_deref()))
            .collect();
        let support = match supervisor {
            Some(program) if mode != SandboxMode::Off => probe(program),
            _ => SandboxSupport::default(),
        };
        let why_not = if !cfg!(target_os = "linux") {
            "bridge sandboxes tasks only on Linux"
        } else {
            "this kernel has no Landlock (Linux 5.13 or later, with Landlock enabled)"
        };
        let fixed = match mode {
            SandboxMode::Off => {
                tracing::warn!(
                    "the sandbox is off ({SANDBOX_ENV}=off or [worker] sandbox = \"off\"): tasks of every member run with this user's rights and can read this device's bridge identity, ~/.ssh and the workspace"
                );
                None
            }
            _ if !support.landlock => {
                if mode == SandboxMode::Required {
                    return Err(SandboxError::Required { why_not });
                }
                tracing::warn!(
                    "tasks are not sandboxed ({why_not}): this device runs only its own member's tasks and leaves the others' to other devices ([worker] sandbox = \"off\" runs them unsandboxed)"
                );
                None
            }
            _ => {
                if !support.namespaces {
                    tracing::info!(
                        "unprivileged user namespaces are not available: tasks are sandboxed with Landlock alone (no private /tmp, /dev/shm shared, other processes visible in /proc but unreadable)"
                    );
                }
                Some(fixed_confinement(
                    &allow_read,
                    protected,
                    home.as_deref(),
                    support,
                ))
            }
        };
        let host_tmp = std::fs::canonicalize("/tmp").unwrap_or_else(|_| PathBuf::from("/tmp"));
        let fixed_under_tmp = fixed.as_ref().is_some_and(|c| {
            c.read_write
                .iter()
                .chain(&c.read_only)
                .any(|p| is_below(p, &host_tmp))
        });
        Ok(Sandbox {
            mode,
            support,
            allow_read,
            home,
            fixed,
            host_tmp,
            fixed_under_tmp,
        })
    }

    /// Whether tasks run in a sandbox.
    pub fn is_active(&self) -> bool {
        self.fixed.is_some()
    }

    /// Whether this device may run tasks of members other than its own
    /// right now: they are sandboxed, or the user opted out of the sandbox.
    /// The claim policy asks this.
    pub fn may_run_others_tasks(&self) -> bool {
        self.is_active() || self.mode == SandboxMode::Off
    }

    /// Whether a task without network can be cut off it here.
    pub fn can_isolate_network(&self) -> bool {
        self.is_active() && self.support.network_isolation()
    }

    /// The sandbox of one task: the fixed allow-list plus its TMPDIR (the
    /// working folder and logs are added when it starts); `None` when tasks
    /// are not sandboxed.
    pub fn confinement(&self, spec: &TaskSpec, tmp: &Path) -> Option<Confinement> {
        let mut c = self.fixed.clone()?;
        c.read_write.push(tmp.to_path_buf());
        c.network = spec.network;
        // Mounting the TMPDIR over /tmp would hide whatever the task needs
        // below /tmp (a workspace there: its own folder and logs, siblings
        // of its TMPDIR): then /tmp stays the host's, closed by Landlock, as
        // without namespaces.
        if c.namespaces && !self.fixed_under_tmp && !is_below(tmp, &self.host_tmp) {
            c.private_tmp = Some(tmp.to_path_buf());
        }
        Some(c)
    }
}

/// Whether `path` (made canonical if it exists) lies at or below `dir`.
fn is_below(path: &Path, dir: &Path) -> bool {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .starts_with(dir)
}

/// The policy from the environment and `[worker] sandbox`.
fn mode_from(setting: Option<&str>) -> Result<SandboxMode, SandboxError> {
    if let Ok(v) = std::env::var(SANDBOX_ENV) {
        return v.parse().map_err(|reason| SandboxError::BadEnv { reason });
    }
    if std::env::var(DEPRECATED_CONFINEMENT_ENV).is_ok_and(|v| v == "off") {
        tracing::warn!("{DEPRECATED_CONFINEMENT_ENV}=off is deprecated: use {SANDBOX_ENV}=off");
        return Ok(SandboxMode::Off);
    }
    match setting {
        None => Ok(SandboxMode::Auto),
        // Checked when bridge.toml was read.
        Some(s) => s
            .parse()
            .map_err(|reason| SandboxError::BadSetting { reason }),
    }
}

/// What the system supports, with the debug-only simulations of less.
fn probe(program: &Path) -> SandboxSupport {
    let debug_env = |name: &str| cfg!(debug_assertions) && std::env::var_os(name).is_some();
    if debug_env(DEBUG_NO_LANDLOCK_ENV) {
        return SandboxSupport::default();
    }
    let mut support = bridge_exec::sandbox_support(program);
    if debug_env(DEBUG_NO_NAMESPACES_ENV) {
        support.namespaces = false;
    }
    if debug_env(DEBUG_NO_LANDLOCK_TCP_ENV) {
        support.landlock_tcp = false;
    }
    tracing::debug!(?support, "sandbox support");
    support
}

/// `~/rest` with the worker's home; absolute paths as they are; `None` for
/// anything else (refused earlier by the checks).
fn expand_home(p: &str, home: Option<&Path>) -> Option<PathBuf> {
    match p.strip_prefix("~/") {
        Some(rest) => home.map(|h| h.join(rest)),
        None if p.starts_with('/') => Some(PathBuf::from(p)),
        None => None,
    }
}

/// Why a read-only grant of `path` must not be made (see the module docs),
/// comparing canonical paths.
fn refused_grant(path: &Path, protected: &[PathBuf], home: Option<&Path>) -> Option<String> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(home) = home.map(|h| std::fs::canonicalize(h).unwrap_or_else(|_| h.to_path_buf()))
        && home.starts_with(&path)
    {
        return Some("it is the home folder or holds it".to_owned());
    }
    for p in protected {
        let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if p.starts_with(&path) || path.starts_with(&p) {
            return Some(format!("it holds or is inside {}", p.display()));
        }
    }
    None
}

/// The allow-list every task of this worker shares.
fn fixed_confinement(
    allow_read: &[PathBuf],
    protected: &[PathBuf],
    home: Option<&Path>,
    support: SandboxSupport,
) -> Confinement {
    let mut read_only: Vec<PathBuf> = Vec::new();
    let mut grant = |path: PathBuf, from: &str| {
        if !path.exists() {
            return;
        }
        match refused_grant(&path, protected, home) {
            Some(why) => {
                tracing::warn!(
                    "{} ({from}) is not readable by tasks: {why}",
                    path.display()
                );
            }
            None => read_only.push(path),
        }
    };
    for p in SYSTEM_READ_ONLY {
        grant(PathBuf::from(p), "a system folder");
    }
    for target in etc_link_targets() {
        grant(target, "the target of a link in /etc");
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path).filter(|d| d.is_absolute()) {
            grant(dir, "on PATH");
        }
    }
    for p in allow_read {
        grant(p.clone(), "[worker] allow-read");
    }
    let mut read_write: Vec<PathBuf> = DEVICES.iter().map(PathBuf::from).collect();
    // Private with namespaces; the host's (shared by every task) without.
    read_write.push(PathBuf::from("/dev/shm"));
    Confinement {
        read_write,
        read_only,
        network: true,
        namespaces: support.namespaces,
        private_tmp: None,
    }
}

/// The targets of the symbolic links directly in `/etc` (`resolv.conf`,
/// `localtime`, `mtab`): a program reading them through `/etc` is checked
/// against the target.
fn etc_link_targets() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/etc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .filter_map(|e| std::fs::canonicalize(e.path()).ok())
        .filter(|t| !t.starts_with("/etc"))
        .collect()
}

/// Why this device must not claim `spec` (for `ls`), or `None` if it may:
/// its `allow-read` paths must all lie inside this device's `[worker]
/// allow-read` paths (never a path the device did not list), and a task
/// without network needs a sandbox that can cut it off.
pub fn unmet_requirements(spec: &TaskSpec, sandbox: &Sandbox) -> Option<String> {
    if !spec.network && !sandbox.can_isolate_network() {
        return Some(
            "it must run without network (`network: false`), which this device cannot enforce"
                .to_owned(),
        );
    }
    for p in &spec.allow_read {
        let covered = expand_home(p, sandbox.home.as_deref())
            .is_some_and(|wanted| sandbox.allow_read.iter().any(|a| wanted.starts_with(a)));
        if !covered {
            return Some(format!(
                "it reads {} (`allow-read`), which this device's [worker] allow-read does not list",
                crate::text::safe(p)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(allow_read: &[&str], support: SandboxSupport, active: bool) -> Sandbox {
        Sandbox {
            mode: SandboxMode::Auto,
            support,
            allow_read: allow_read.iter().map(PathBuf::from).collect(),
            home: Some(PathBuf::from("/home/u")),
            fixed: active.then(Confinement::default),
            host_tmp: PathBuf::from("/tmp"),
            fixed_under_tmp: false,
        }
    }

    fn spec() -> TaskSpec {
        serde_json::from_value(serde_json::json!({
            "name": "t",
            "command": {"shell": {"shell": "sh", "script": "true"}},
            "timeout_s": 60,
        }))
        .unwrap_or_else(|e| panic!("a spec: {e}"))
    }

    #[test]
    fn allow_read_must_be_covered_by_the_device() {
        let full = SandboxSupport {
            landlock: true,
            landlock_tcp: true,
            landlock_scopes: true,
            namespaces: true,
        };
        let s = sandbox(&["/home/u/.rustup", "/data"], full, true);
        let mut t = spec();
        assert_eq!(unmet_requirements(&t, &s), None);
        t.allow_read = vec!["~/.rustup/toolchains".into(), "/data".into()];
        assert_eq!(unmet_requirements(&t, &s), None);
        for outside in ["~/.ssh", "/data2", "/", "~/.rustup-other"] {
            t.allow_read = vec![outside.into()];
            let why = unmet_requirements(&t, &s);
            assert!(
                why.as_deref().is_some_and(|w| w.contains("allow-read")),
                "{outside}: {why:?}"
            );
        }
    }

    #[test]
    fn no_network_needs_a_way_to_enforce_it() {
        let mut t = spec();
        t.network = false;
        let landlock_only = SandboxSupport {
            landlock: true,
            ..SandboxSupport::default()
        };
        assert!(unmet_requirements(&t, &sandbox(&[], landlock_only, true)).is_some());
        let tcp = SandboxSupport {
            landlock_tcp: true,
            ..landlock_only
        };
        assert_eq!(unmet_requirements(&t, &sandbox(&[], tcp, true)), None);
        let ns = SandboxSupport {
            namespaces: true,
            ..landlock_only
        };
        assert_eq!(unmet_requirements(&t, &sandbox(&[], ns, true)), None);
        // Sandbox off: nothing cuts the network.
        assert!(unmet_requirements(&t, &sandbox(&[], ns, false)).is_some());
    }

    #[test]
    fn grants_never_open_the_home_or_a_protected_place() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let home = tmp.path().join("home");
        let config = home.join(".config").join("bridge");
        let cargo = home.join(".cargo").join("bin");
        for d in [&config, &cargo] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
        }
        let protected = [config.clone(), home.join(".ssh")];
        let refused = |p: &Path| refused_grant(p, &protected, Some(&home)).is_some();
        assert!(refused(&home));
        assert!(refused(tmp.path()));
        assert!(refused(Path::new("/")));
        assert!(refused(&home.join(".config")));
        assert!(refused(&config.join("x")));
        assert!(refused(&home.join(".ssh")));
        assert!(!refused(&cargo));
        assert!(!refused(Path::new("/usr")));
        let fixed = fixed_confinement(
            &[home.clone(), cargo.clone()],
            &protected,
            Some(&home),
            SandboxSupport::default(),
        );
        assert!(fixed.read_only.contains(&cargo));
        assert!(!fixed.read_only.contains(&home));
        assert!(fixed.read_only.contains(&PathBuf::from("/usr")));
        assert!(fixed.read_write.contains(&PathBuf::from("/dev/null")));
    }

    #[test]
    fn modes_parse() {
        assert_eq!("auto".parse(), Ok(SandboxMode::Auto));
        assert_eq!("required".parse(), Ok(SandboxMode::Required));
        assert_eq!("off".parse(), Ok(SandboxMode::Off));
        assert!("on".parse::<SandboxMode>().is_err());
    }
}
