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

use crate::settings::{SandboxOverride, Settings, TestHooks};

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

// Where the settings are resolved (see `crate::settings`), under the
// names they always had here.
pub use crate::settings::{DEPRECATED_CONFINEMENT_ENV, SANDBOX_ENV};

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
    /// The folder of the first TMPDIR asked about and whether it lies
    /// below `host_tmp`: every task's TMPDIR is in its worker's folder,
    /// which is made canonical once rather than per task.
    tmp_parent: std::sync::OnceLock<(PathBuf, bool)>,
}

impl Sandbox {
    /// Resolves the policy (`BRIDGE_SANDBOX`, then the deprecated
    /// `BRIDGE_TASK_CONFINEMENT=off`, as `settings` hold them, then
    /// `[worker] sandbox`), probes the
    /// system with `supervisor` (the executable that runs tasks' supervisors;
    /// `None`: no supervisor on this system), builds the fixed allow-list,
    /// and says once, as a warning, what tasks will not get. Fails with
    /// `required` and no sandbox.
    pub fn resolve(
        settings: &Settings,
        setting: Option<&str>,
        allow_read: &[String],
        protected: &[PathBuf],
        supervisor: Option<&Path>,
    ) -> Result<Sandbox, SandboxError> {
        let mode = mode_from(settings.sandbox.as_ref(), setting)?;
        let home = settings.home.clone();
        let allow_read: Vec<PathBuf> = allow_read
            .iter()
            .filter_map(|p| expand_home(p, home.as_deref()))
            .collect();
        let support = match supervisor {
            Some(program) if mode != SandboxMode::Off => probe(program, settings.test_hooks),
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
                    (home.as_deref(), &settings.path),
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
            tmp_parent: std::sync::OnceLock::new(),
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
        if c.namespaces && !self.fixed_under_tmp && !self.tmp_is_below_host_tmp(tmp) {
            c.private_tmp = Some(tmp.to_path_buf());
        }
        Some(c)
    }

    /// Whether a task's TMPDIR lies at or below the host's `/tmp`. Its
    /// folder (the worker's) is made canonical the first time; the TMPDIR
    /// itself is a folder the worker made there, not a link.
    fn tmp_is_below_host_tmp(&self, tmp: &Path) -> bool {
        let (Some(parent), Some(_)) = (tmp.parent(), tmp.file_name()) else {
            return is_below(tmp, &self.host_tmp);
        };
        let (folder, below) = self
            .tmp_parent
            .get_or_init(|| (parent.to_path_buf(), is_below(parent, &self.host_tmp)));
        if folder == parent {
            *below
        } else {
            is_below(tmp, &self.host_tmp)
        }
    }
}

/// Whether `path` (made canonical if it exists) lies at or below `dir`.
fn is_below(path: &Path, dir: &Path) -> bool {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .starts_with(dir)
}

/// The policy from the environment's override and `[worker] sandbox`.
fn mode_from(
    over: Option<&SandboxOverride>,
    setting: Option<&str>,
) -> Result<SandboxMode, SandboxError> {
    match over {
        Some(SandboxOverride::Env(mode)) => {
            return mode
                .clone()
                .map_err(|reason| SandboxError::BadEnv { reason });
        }
        Some(SandboxOverride::DeprecatedOff) => {
            tracing::warn!("{DEPRECATED_CONFINEMENT_ENV}=off is deprecated: use {SANDBOX_ENV}=off");
            return Ok(SandboxMode::Off);
        }
        None => {}
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
fn probe(program: &Path, hooks: TestHooks) -> SandboxSupport {
    // The hooks are never set in release builds (see `TestHooks`); checked
    // here too so that no embedder can switch the sandbox down there.
    let debug = |hook: bool| cfg!(debug_assertions) && hook;
    if debug(hooks.no_landlock) {
        return SandboxSupport::default();
    }
    let mut support = bridge_exec::sandbox_support(program);
    if debug(hooks.no_namespaces) {
        support.namespaces = false;
    }
    if debug(hooks.no_landlock_tcp) {
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
    (home, path): (Option<&Path>, &[PathBuf]),
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
    for dir in path.iter().filter(|d| d.is_absolute()) {
        grant(dir.clone(), "on PATH");
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
            tmp_parent: std::sync::OnceLock::new(),
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

    /// A TMPDIR below the host's /tmp is not mounted over /tmp (the mount
    /// would hide it). The worker's folder, which holds every TMPDIR, is
    /// made canonical once (issue 18, item 1); a TMPDIR elsewhere is looked
    /// at on its own, a link to below /tmp counting as below.
    #[test]
    fn a_tmpdir_below_the_hosts_tmp_is_not_mounted_over_it() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = std::fs::canonicalize(root.path()).unwrap_or_else(|e| panic!("{e}"));
        let (host_tmp, outside) = (root.join("tmp"), root.join("work"));
        let (inner, outer) = (host_tmp.join("w-1"), outside.join("w-1"));
        for d in [&inner, &outer] {
            std::fs::create_dir_all(d.join("a.tmp")).unwrap_or_else(|e| panic!("{e}"));
        }
        std::os::unix::fs::symlink(&inner, outside.join("w-link"))
            .unwrap_or_else(|e| panic!("{e}"));
        let with_ns = SandboxSupport {
            landlock: true,
            namespaces: true,
            ..SandboxSupport::default()
        };
        let mut s = sandbox(&[], with_ns, true);
        s.fixed = Some(Confinement {
            namespaces: true,
            ..Confinement::default()
        });
        s.host_tmp = host_tmp;
        let private = |tmp: PathBuf| s.confinement(&spec(), &tmp).and_then(|c| c.private_tmp);
        for _ in 0..2 {
            assert_eq!(private(outer.join("a.tmp")), Some(outer.join("a.tmp")));
        }
        assert_eq!(private(inner.join("a.tmp")), None);
        assert_eq!(private(outside.join("w-link").join("a.tmp")), None);
        assert_eq!(private(outer.join("a.tmp")), Some(outer.join("a.tmp")));
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
            (Some(&home), &[]),
            SandboxSupport::default(),
        );
        assert!(fixed.read_only.contains(&cargo));
        assert!(!fixed.read_only.contains(&home));
        assert!(fixed.read_only.contains(&PathBuf::from("/usr")));
        assert!(fixed.read_write.contains(&PathBuf::from("/dev/null")));
    }

    #[test]
    fn the_absolute_folders_on_path_are_readable() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("{e}"));
        let path = [PathBuf::from("bin"), bin.clone()];
        let fixed = fixed_confinement(&[], &[], (None, &path), SandboxSupport::default());
        assert!(fixed.read_only.contains(&bin));
        assert!(!fixed.read_only.contains(&PathBuf::from("bin")));
    }

    #[test]
    fn the_environment_overrides_the_setting() {
        use crate::settings::SandboxOverride as O;
        assert_eq!(mode_from(None, None), Ok(SandboxMode::Auto));
        assert_eq!(mode_from(None, Some("required")), Ok(SandboxMode::Required));
        assert_eq!(
            mode_from(Some(&O::Env(Ok(SandboxMode::Off))), Some("required")),
            Ok(SandboxMode::Off)
        );
        assert_eq!(
            mode_from(Some(&O::DeprecatedOff), Some("required")),
            Ok(SandboxMode::Off)
        );
        let bad = "sometimes".parse::<SandboxMode>().map(|_| ());
        let Err(reason) = bad else {
            panic!("`sometimes` is no mode")
        };
        let e = mode_from(Some(&O::Env(Err(reason))), None).map(|_| ());
        assert!(matches!(e, Err(SandboxError::BadEnv { .. })), "{e:?}");
        assert!(
            e.map_err(|e| e.to_string())
                .unwrap_err()
                .starts_with("BRIDGE_SANDBOX: ")
        );
    }

    #[test]
    fn modes_parse() {
        assert_eq!("auto".parse(), Ok(SandboxMode::Auto));
        assert_eq!("required".parse(), Ok(SandboxMode::Required));
        assert_eq!("off".parse(), Ok(SandboxMode::Off));
        assert!("on".parse::<SandboxMode>().is_err());
    }
}
