//! The settings the engine takes from its surroundings, resolved once.
//!
//! Everything the engine used to read from the process environment deep
//! inside (the configuration folder, the device name, the identity and the
//! GitHub token, the stall timeout, `BRIDGE_RUN_TASKS_FROM`, the sandbox
//! override, the variables a task inherits, the download cache) is one
//! [`Settings`] value. The command line builds it at start-up with
//! [`Settings::from_env`], the one place the engine reads the environment;
//! a program embedding the engine (a daemon, a GUI) builds it from
//! [`Settings::default`] and sets the fields it wants, without any
//! environment variable. It then travels with the
//! [`Workspace`](crate::workspace::Workspace), so the session, the vault
//! loader, the worker and the sandbox read it from there.
//!
//! Resolution is pure ([`Settings::from_vars`] takes a lookup function), so
//! its rules are unit-tested. A variable with a bad value does not make
//! resolution fail: the value is kept, typed as a `Result` naming the
//! variable, and reported by the operation that needs the setting, with the
//! same message as before. A command that never needs it is not refused
//! (`bridge keygen` with a mistyped `BRIDGE_STALL_TIMEOUT` still works).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::keys::{IDENTITY_ENV, IdentityError};
use crate::sandbox_mode::{SandboxMode, UnknownSandboxMode};

/// `BRIDGE_CONFIG_DIR`: this device's configuration folder.
pub const CONFIG_DIR_ENV: &str = "BRIDGE_CONFIG_DIR";
/// `BRIDGE_DEVICE`: this device's name (else the host name).
pub const DEVICE_ENV: &str = "BRIDGE_DEVICE";
/// `GITHUB_TOKEN`: the token for the GitHub API and `git:` remotes on GitHub.
pub const GITHUB_TOKEN_ENV: &str = "GITHUB_TOKEN";
/// `GH_TOKEN`: the gh CLI's token variable, read before `GITHUB_TOKEN` as
/// gh does (issue 16, item 8).
pub const GH_TOKEN_ENV: &str = "GH_TOKEN";
/// `BRIDGE_GIT_AUTH_HOST`: the host `git:` remotes send the token to
/// (GitHub Enterprise Server), instead of github.com.
pub const GIT_AUTH_HOST_ENV: &str = "BRIDGE_GIT_AUTH_HOST";
/// The environment variable that overrides `[worker] sandbox`.
pub const SANDBOX_ENV: &str = "BRIDGE_SANDBOX";
/// Issue 12's switch, kept as a deprecated alias: `off` means
/// `BRIDGE_SANDBOX=off`.
pub const DEPRECATED_CONFINEMENT_ENV: &str = "BRIDGE_TASK_CONFINEMENT";
/// Debug builds only (tests): moves this process's clock by that many
/// milliseconds, to play a device whose clock is wrong (issue 12, item 12).
pub const TEST_CLOCK_OFFSET_ENV: &str = "BRIDGE_TEST_CLOCK_OFFSET_MS";
/// Debug builds only (tests): pretend the kernel has no Landlock at all.
pub const DEBUG_NO_LANDLOCK_ENV: &str = "BRIDGE_DEBUG_SANDBOX_NO_LANDLOCK";
/// Debug builds only (tests): pretend unprivileged user namespaces are
/// refused, as on GitHub-hosted Ubuntu 24.04 runners, so that the
/// Landlock-only sandbox is used.
pub const DEBUG_NO_NAMESPACES_ENV: &str = "BRIDGE_DEBUG_SANDBOX_NO_NAMESPACES";
/// Debug builds only (tests): pretend Landlock has no TCP rules (a kernel
/// before 6.7).
pub const DEBUG_NO_LANDLOCK_TCP_ENV: &str = "BRIDGE_DEBUG_SANDBOX_NO_LANDLOCK_TCP";

/// The worker's own variables a task inherits (never its secrets; see
/// `worker/job.rs`).
pub const TASK_PASSTHROUGH_VARS: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ",
    "SHELL",
];

/// The engine's settings from its surroundings (see the module docs). Build
/// one with [`Settings::from_env`], [`Settings::from_vars`], or
/// [`Settings::default`] (nothing set) and its fields.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Settings {
    /// This device's configuration folder (identity, pins): `BRIDGE_CONFIG_DIR`,
    /// else `$XDG_CONFIG_HOME/bridge`, else `~/.config/bridge`; `None` when
    /// none of them is set (an error where the folder is needed).
    pub config_dir: Option<PathBuf>,
    /// The home folder (`HOME`): `~/` in `allow-read`, and `~/.ssh`, which
    /// no task may read.
    pub home: Option<PathBuf>,
    /// This device's name (`BRIDGE_DEVICE`); `None`: the host name.
    pub device: Option<String>,
    /// The whole identity (`BRIDGE_IDENTITY`, CI runners), as given: it is
    /// checked where it is loaded, so that its errors never quote it.
    pub identity: Option<OsString>,
    /// The GitHub token, trimmed: `GH_TOKEN`, else `GITHUB_TOKEN` (gh's
    /// order); `None` when both are unset, blank or not UTF-8.
    pub github_token: Option<String>,
    /// The variable [`Settings::github_token`] came from, for messages.
    pub github_token_var: Option<&'static str>,
    /// The `AWS_*` variables an `s3:` remote reads (credentials, region,
    /// endpoint, profile: [`bridge_store::s3::ENV_VARS`]), those set.
    pub s3_env: BTreeMap<String, String>,
    /// The host `git:` remotes send the token to (`BRIDGE_GIT_AUTH_HOST`);
    /// `None`: github.com.
    pub git_auth_host: Option<String>,
    /// `BRIDGE_STALL_TIMEOUT` (blank means unset), before `[store]
    /// stall-timeout`.
    pub stall_timeout: Option<Result<Duration, BadValue<humantime::DurationError>>>,
    /// `BRIDGE_RUN_TASKS_FROM` as given: `--run-tasks-from` wins over it, so
    /// it is checked only where it is used (an ignored value is no error).
    pub run_tasks_from: Option<String>,
    /// What overrides `[worker] sandbox`, if anything.
    pub sandbox: Option<SandboxOverride>,
    /// The directories on `PATH`, in order (a sandboxed task may read the
    /// absolute ones).
    pub path: Vec<PathBuf>,
    /// The variables of [`TASK_PASSTHROUGH_VARS`] that are set (and UTF-8):
    /// what a task inherits from its worker.
    pub task_env: BTreeMap<String, String>,
    /// Where URL inputs are cached and how downloads wait
    /// (`BRIDGE_CACHE_DIR`, `XDG_CACHE_HOME`, `HOME`, `BRIDGE_FETCH_TIMEOUT`).
    #[cfg(feature = "worker")]
    pub fetch: Option<Result<bridge_fetch::FetchConfig, bridge_fetch::ConfigError>>,
    /// The end-to-end tests' hooks: read in debug builds only, all off in
    /// release builds.
    pub test_hooks: TestHooks,
}

/// A variable whose value is not what it must be: reported, naming the
/// variable, by the operation that needs it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct BadValue<E> {
    /// The variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub reason: E,
}

/// What overrides the `[worker] sandbox` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxOverride {
    /// `BRIDGE_SANDBOX` (set, even empty): its mode, or why it names none.
    Env(Result<SandboxMode, UnknownSandboxMode>),
    /// The deprecated `BRIDGE_TASK_CONFINEMENT=off` (a warning says so).
    DeprecatedOff,
}

/// The debug-only hooks of the end-to-end tests (see [`Settings::test_hooks`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestHooks {
    /// `BRIDGE_TEST_CLOCK_OFFSET_MS`: this process's clock is that many
    /// milliseconds off (see [`crate::clock::set_test_offset`]).
    pub clock_offset_ms: bridge_model::Millis,
    /// `BRIDGE_DEBUG_SANDBOX_NO_LANDLOCK`.
    pub no_landlock: bool,
    /// `BRIDGE_DEBUG_SANDBOX_NO_NAMESPACES`.
    pub no_namespaces: bool,
    /// `BRIDGE_DEBUG_SANDBOX_NO_LANDLOCK_TCP`.
    pub no_landlock_tcp: bool,
}

impl fmt::Debug for Settings {
    // Never shows the secrets, only whether they are there.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Settings");
        d.field("config_dir", &self.config_dir)
            .field("home", &self.home)
            .field("device", &self.device)
            .field("identity", &self.identity.as_ref().map(|_| "<secret>"))
            .field(
                "github_token",
                &self.github_token.as_ref().map(|_| "<secret>"),
            )
            .field("github_token_var", &self.github_token_var)
            // Names only: the values hold the secret key.
            .field("s3_env", &self.s3_env.keys().collect::<Vec<_>>())
            .field("git_auth_host", &self.git_auth_host)
            .field("stall_timeout", &self.stall_timeout)
            .field("run_tasks_from", &self.run_tasks_from)
            .field("sandbox", &self.sandbox)
            .field("path", &self.path)
            .field("task_env", &self.task_env);
        #[cfg(feature = "worker")]
        d.field("fetch", &self.fetch);
        d.field("test_hooks", &self.test_hooks).finish()
    }
}

impl Settings {
    /// The settings from this process's environment: the one place the
    /// engine reads it. The command line calls it once, first thing (then
    /// takes the secrets out of the environment: see [`crate::secrets`]).
    pub fn from_env() -> Settings {
        Settings::from_vars(|name| std::env::var_os(name))
    }

    /// The settings from these variables (`var` gives a variable's value,
    /// `None` when unset). Never fails: see the module docs.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Settings {
        // Where the engine used to read a variable as text, a value that is not UTF-8
        // counts as unset; where it read `var_os`, as given.
        let text = |name: &str| var(name).and_then(|v| v.into_string().ok());
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let home = set("HOME").map(PathBuf::from);
        let config_dir = set(CONFIG_DIR_ENV)
            .map(PathBuf::from)
            .or_else(|| set("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("bridge")))
            .or_else(|| home.as_ref().map(|h| h.join(".config").join("bridge")));
        let stall_timeout = text(crate::workspace::STALL_TIMEOUT_ENV)
            .filter(|v| !v.trim().is_empty())
            .map(|value| {
                humantime::parse_duration(value.trim()).map_err(|reason| BadValue {
                    var: crate::workspace::STALL_TIMEOUT_ENV,
                    value,
                    reason,
                })
            });
        let sandbox = match text(SANDBOX_ENV) {
            Some(v) => Some(SandboxOverride::Env(v.parse())),
            None if text(DEPRECATED_CONFINEMENT_ENV).as_deref() == Some("off") => {
                Some(SandboxOverride::DeprecatedOff)
            }
            None => None,
        };
        let token = |name: &'static str| {
            var(name)
                .and_then(|t| t.to_str().map(|t| t.trim().to_owned()))
                .filter(|t| !t.is_empty())
                .map(|t| (t, name))
        };
        let github_token = token(GH_TOKEN_ENV).or_else(|| token(GITHUB_TOKEN_ENV));
        let task_env = TASK_PASSTHROUGH_VARS
            .iter()
            .filter_map(|k| text(k).map(|v| ((*k).to_owned(), v)))
            .collect();
        let s3_env = bridge_store::s3::ENV_VARS
            .iter()
            .filter_map(|k| text(k).map(|v| ((*k).to_owned(), v)))
            .collect();
        Settings {
            config_dir,
            s3_env,
            home,
            device: text(DEVICE_ENV).filter(|d| !d.is_empty()),
            identity: var(IDENTITY_ENV),
            github_token: github_token.as_ref().map(|(t, _)| t.clone()),
            github_token_var: github_token.map(|(_, name)| name),
            git_auth_host: text(GIT_AUTH_HOST_ENV),
            stall_timeout,
            run_tasks_from: text(crate::run_policy::RUN_TASKS_FROM_ENV),
            sandbox,
            path: var("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
            task_env,
            #[cfg(feature = "worker")]
            fetch: Some(bridge_fetch::FetchConfig::from_vars(&var)),
            test_hooks: TestHooks::from_vars(&var),
        }
    }

    /// This device's configuration folder (see [`Settings::config_dir`]).
    pub fn config_dir(&self) -> Result<PathBuf, IdentityError> {
        self.config_dir.clone().ok_or(IdentityError::NoConfigDir)
    }

    /// The token a `git:` remote authenticates with, and for which host.
    pub fn git_token(&self) -> Option<bridge_store::GitToken> {
        self.github_token
            .clone()
            .map(|token| bridge_store::GitToken {
                token,
                auth_host: self.git_auth_host.clone(),
            })
    }

    /// This device's name: [`Settings::device`], else the host name.
    pub fn device_name(&self) -> String {
        if let Some(d) = &self.device {
            return d.clone();
        }
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "device".to_owned())
    }

    /// The download settings: [`Settings::fetch`], or, where none was
    /// given, the defaults under [`Settings::home`].
    #[cfg(feature = "worker")]
    pub fn fetch_config(&self) -> Result<bridge_fetch::FetchConfig, bridge_fetch::ConfigError> {
        match &self.fetch {
            Some(resolved) => resolved.clone(),
            None => bridge_fetch::FetchConfig::from_vars(|name| match name {
                "HOME" => self.home.clone().map(OsString::from),
                _ => None,
            }),
        }
    }
}

impl TestHooks {
    /// The hooks from these variables: in debug builds only; release builds
    /// ignore them.
    fn from_vars(var: &impl Fn(&str) -> Option<OsString>) -> TestHooks {
        if !cfg!(debug_assertions) {
            return TestHooks::default();
        }
        TestHooks {
            clock_offset_ms: var(TEST_CLOCK_OFFSET_ENV)
                .and_then(|v| v.to_str().and_then(|v| v.trim().parse().ok()))
                .unwrap_or(0),
            no_landlock: var(DEBUG_NO_LANDLOCK_ENV).is_some(),
            no_namespaces: var(DEBUG_NO_NAMESPACES_ENV).is_some(),
            no_landlock_tcp: var(DEBUG_NO_LANDLOCK_TCP_ENV).is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, OsString)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn nothing_set_is_nothing_resolved() {
        let s = Settings::from_vars(|_| None);
        assert!(s.config_dir.is_none());
        assert!(matches!(s.config_dir(), Err(IdentityError::NoConfigDir)));
        assert!(s.home.is_none() && s.device.is_none() && s.identity.is_none());
        assert!(s.github_token.is_none() && s.stall_timeout.is_none());
        assert!(s.run_tasks_from.is_none() && s.sandbox.is_none());
        assert!(s.path.is_empty() && s.task_env.is_empty());
        assert_eq!(s.test_hooks, TestHooks::default());
    }

    #[test]
    fn the_aws_variables_are_kept_for_s3_remotes_and_never_shown() {
        let s = Settings::from_vars(vars(&[
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "hunter2"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_SOMETHING_ELSE", "x"),
        ]));
        assert_eq!(s.s3_env["AWS_SECRET_ACCESS_KEY"], "hunter2");
        assert_eq!(s.s3_env["AWS_ENDPOINT_URL"], "http://127.0.0.1:9000");
        assert!(!s.s3_env.contains_key("AWS_SOMETHING_ELSE"));
        let shown = format!("{s:?}");
        assert!(shown.contains("AWS_SECRET_ACCESS_KEY") && !shown.contains("hunter2"));
    }

    #[test]
    fn the_config_folder_by_precedence_and_empty_means_unset() {
        let s = Settings::from_vars(vars(&[("HOME", "/h")]));
        assert_eq!(
            s.config_dir.as_deref(),
            Some(Path::new("/h/.config/bridge"))
        );
        let s = Settings::from_vars(vars(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")]));
        assert_eq!(s.config_dir.as_deref(), Some(Path::new("/x/bridge")));
        let s = Settings::from_vars(vars(&[
            ("HOME", "/h"),
            ("XDG_CONFIG_HOME", "/x"),
            (CONFIG_DIR_ENV, "/c"),
        ]));
        assert_eq!(s.config_dir.as_deref(), Some(Path::new("/c")));
        let s = Settings::from_vars(vars(&[
            ("HOME", "/h"),
            ("XDG_CONFIG_HOME", ""),
            (CONFIG_DIR_ENV, ""),
        ]));
        assert_eq!(
            s.config_dir.as_deref(),
            Some(Path::new("/h/.config/bridge"))
        );
        let s = Settings::from_vars(vars(&[("HOME", "")]));
        assert!(s.home.is_none() && s.config_dir.is_none());
    }

    #[test]
    fn gh_token_comes_before_github_token_as_in_gh() {
        let both = Settings::from_vars(vars(&[
            (GITHUB_TOKEN_ENV, "from-github"),
            (GH_TOKEN_ENV, " from-gh "),
        ]));
        assert_eq!(both.github_token.as_deref(), Some("from-gh"));
        assert_eq!(both.github_token_var, Some(GH_TOKEN_ENV));
        // A blank GH_TOKEN counts as unset.
        let blank = Settings::from_vars(vars(&[(GITHUB_TOKEN_ENV, "x"), (GH_TOKEN_ENV, " ")]));
        assert_eq!(blank.github_token.as_deref(), Some("x"));
        assert_eq!(blank.github_token_var, Some(GITHUB_TOKEN_ENV));
        let none = Settings::from_vars(vars(&[]));
        assert_eq!((none.github_token, none.github_token_var), (None, None));
        assert!(!format!("{both:?}").contains("from-gh"));
    }

    #[test]
    fn the_device_and_the_secrets() {
        let s = Settings::from_vars(vars(&[
            (DEVICE_ENV, "laptop"),
            (IDENTITY_ENV, "AGE-SECRET"),
            (GITHUB_TOKEN_ENV, "  ghp_x \n"),
        ]));
        assert_eq!(s.device_name(), "laptop");
        assert_eq!(s.identity, Some(OsString::from("AGE-SECRET")));
        assert_eq!(s.github_token.as_deref(), Some("ghp_x"));
        let token = s.git_token().map(|t| (t.token, t.auth_host));
        assert_eq!(token, Some(("ghp_x".to_owned(), None)));
        // The secrets never show in a debug print.
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("AGE-SECRET") && !shown.contains("ghp_x"),
            "{shown}"
        );
        let s = Settings::from_vars(vars(&[(DEVICE_ENV, ""), (GITHUB_TOKEN_ENV, "  ")]));
        assert!(s.device.is_none() && s.github_token.is_none());
        // An empty identity is kept: loading it says what is wrong.
        let s = Settings::from_vars(vars(&[(IDENTITY_ENV, "")]));
        assert_eq!(s.identity, Some(OsString::new()));
    }

    #[test]
    fn a_bad_stall_timeout_is_kept_naming_the_variable() {
        let s = Settings::from_vars(vars(&[(crate::workspace::STALL_TIMEOUT_ENV, " 5s ")]));
        assert_eq!(s.stall_timeout, Some(Ok(Duration::from_secs(5))));
        let s = Settings::from_vars(vars(&[(crate::workspace::STALL_TIMEOUT_ENV, "  ")]));
        assert_eq!(s.stall_timeout, None);
        let s = Settings::from_vars(vars(&[(crate::workspace::STALL_TIMEOUT_ENV, "never")]));
        let Some(Err(bad)) = s.stall_timeout else {
            panic!("{:?}", s.stall_timeout)
        };
        assert_eq!(bad.var, "BRIDGE_STALL_TIMEOUT");
        assert_eq!(bad.value, "never");
    }

    #[test]
    fn the_sandbox_override_and_its_deprecated_alias() {
        let s = Settings::from_vars(vars(&[(SANDBOX_ENV, "off")]));
        assert_eq!(s.sandbox, Some(SandboxOverride::Env(Ok(SandboxMode::Off))));
        let s = Settings::from_vars(vars(&[(SANDBOX_ENV, "sometimes")]));
        assert!(matches!(s.sandbox, Some(SandboxOverride::Env(Err(_)))));
        let s = Settings::from_vars(vars(&[(DEPRECATED_CONFINEMENT_ENV, "off")]));
        assert_eq!(s.sandbox, Some(SandboxOverride::DeprecatedOff));
        // BRIDGE_SANDBOX wins over the old switch; the old one means only `off`.
        let s = Settings::from_vars(vars(&[
            (SANDBOX_ENV, "required"),
            (DEPRECATED_CONFINEMENT_ENV, "off"),
        ]));
        assert_eq!(
            s.sandbox,
            Some(SandboxOverride::Env(Ok(SandboxMode::Required)))
        );
        let s = Settings::from_vars(vars(&[(DEPRECATED_CONFINEMENT_ENV, "on")]));
        assert_eq!(s.sandbox, None);
    }

    #[test]
    fn what_a_task_inherits_and_the_path() {
        let s = Settings::from_vars(vars(&[
            ("PATH", "/usr/bin:relative:/bin"),
            ("LANG", "C.UTF-8"),
            (GITHUB_TOKEN_ENV, "secret"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ]));
        assert_eq!(
            s.path,
            [
                PathBuf::from("/usr/bin"),
                PathBuf::from("relative"),
                PathBuf::from("/bin")
            ]
        );
        assert_eq!(
            s.task_env.keys().collect::<Vec<_>>(),
            ["LANG", "PATH"],
            "only the allow-listed variables"
        );
    }

    #[test]
    fn the_test_hooks_are_read_in_debug_builds_only() {
        let s = Settings::from_vars(vars(&[
            (TEST_CLOCK_OFFSET_ENV, " -3600000 "),
            (DEBUG_NO_NAMESPACES_ENV, ""),
        ]));
        if cfg!(debug_assertions) {
            assert_eq!(s.test_hooks.clock_offset_ms, -3_600_000);
            assert!(s.test_hooks.no_namespaces && !s.test_hooks.no_landlock);
        } else {
            assert_eq!(s.test_hooks, TestHooks::default());
        }
        let s = Settings::from_vars(vars(&[(TEST_CLOCK_OFFSET_ENV, "soon")]));
        assert_eq!(s.test_hooks.clock_offset_ms, 0);
    }

    #[cfg(feature = "worker")]
    #[test]
    fn downloads_are_resolved_with_the_rest() {
        let s = Settings::from_vars(vars(&[("HOME", "/h")]));
        let c = s.fetch_config().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cache_dir, Path::new("/h/.cache/bridge/inputs"));
        let s = Settings::from_vars(vars(&[("HOME", "/h"), ("BRIDGE_FETCH_TIMEOUT", "x")]));
        assert!(matches!(
            s.fetch_config(),
            Err(bridge_fetch::ConfigError::Timeout { .. })
        ));
        // Built without the environment: the defaults under its home.
        let mut s = Settings::default();
        assert!(s.fetch_config().is_err());
        s.home = Some(PathBuf::from("/e"));
        let c = s.fetch_config().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cache_dir, Path::new("/e/.cache/bridge/inputs"));
    }
}
