//! The workspace on this device: `bridge.toml`, the local replica under
//! `.bridge/store`, and a [`Session`] that holds the loaded documents and the
//! merged [`View`] while a command runs.
//!
//! Every write goes through [`Session::change`] then [`Session::flush`]: the
//! change is made in memory with this process's own actor id, and a flush
//! writes the new changes of each touched document as one chunk file (a group
//! commit). That is the one place where files are written, so the later
//! encryption layer wraps exactly here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use automerge::AutoCommit;
use bridge_crypto::MemberId;
use bridge_model::doc::{self, BatchHeader, TaskRecord};
use bridge_model::{DocId, Millis, Policy, View, WriterId};
use bridge_store::{LoadedDoc, Replica};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::cache;
use crate::error::{CliError, CliResult, HintExt};
use crate::keys;
use crate::vault::{AUDIENCE_DOC, ROSTER_DOC, Vault, is_reserved_doc};

/// The name of the workspace file.
pub const CONFIG_FILE: &str = "bridge.toml";
/// The folder, next to `bridge.toml`, holding this device's replica.
pub const STATE_DIR: &str = ".bridge";

/// `bridge.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The workspace itself.
    pub workspace: WorkspaceSection,
    /// Where the shared store is.
    #[serde(default)]
    pub store: StoreSection,
    /// How workers behave.
    #[serde(default)]
    pub worker: WorkerSection,
    /// The GitHub repository whose Actions runners drain the pool
    /// (`bridge init --github`, `bridge dispatch`, `bridge usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubSection>,
}

/// `[workspace]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSection {
    /// The workspace id, shared by every replica and remote.
    pub id: String,
    /// The fingerprint (member id) of the key that roots the member roster.
    pub root: String,
    /// The newest roster epoch an admin made, as `EPOCH:HASH`, written by
    /// every change of the members: a device refuses a store whose roster
    /// does not reach it (see `freshness`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roster: Option<String>,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// The remote to sync with, e.g. `dir:/mnt/usb/pool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// How long a fetch or push may make no progress before the command
    /// gives up on the remote and goes on offline (e.g. "30s", the
    /// default). `BRIDGE_STALL_TIMEOUT` overrides it.
    #[serde(
        default,
        rename = "stall-timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub stall_timeout: Option<String>,
}

/// The environment variable that overrides `[store] stall-timeout`.
pub const STALL_TIMEOUT_ENV: &str = "BRIDGE_STALL_TIMEOUT";

/// `[worker]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkerSection {
    /// How long a claim lasts before it must be renewed (e.g. "60s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// How far clocks of devices may disagree (e.g. "30s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<String>,
    /// Labels of workers of this workspace, matched against `runs-on`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// How often a long-lived worker (`bridge work --follow`) compacts and
    /// reloads its documents when idle, so its memory stays flat (e.g.
    /// "10m", the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_every: Option<String>,
    /// Whose tasks this device claims: `"self"`, `"admins"`, `"members"`
    /// or members' names (see [`crate::run_policy`]). Unset: `["members"]`
    /// on a runner (worker role), `["self", "admins"]` on a person's device
    /// (admin or submit role); see [`crate::run_policy::default_entries`]
    /// for why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_tasks_from: Option<Vec<String>>,
    /// Whether tasks run in a sandbox (issue 13): "auto" (the default:
    /// sandboxed where the system can, else only this device's own tasks
    /// run), "required" (refuse to work without one) or "off" (run every
    /// task unsandboxed). `BRIDGE_SANDBOX` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Extra paths every sandboxed task may read (a toolchain in the home
    /// folder, say `~/.rustup`): absolute or `~/...`. A task that declares
    /// `allow-read` paths is claimed only if these cover them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_read: Vec<String>,
}

/// `.bridge/config.toml`: this device's own settings for this workspace,
/// never synced or committed (like a repository's `.git/config`).
///
/// Whose code a device runs, and how confined, is its owner's decision:
/// `bridge.toml` is shared (committed to the repository, copied between
/// devices), so anyone who can change it could otherwise open every
/// member's laptop to every member's tasks, or turn its sandbox off. On a
/// person's device (admin or submit role) these three settings are read
/// from this file only; in `bridge.toml` they configure the runners
/// (worker role), whose configuration is the repository anyway. A runner
/// reads this file too, and it wins there.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// `[worker]`.
    #[serde(default)]
    pub worker: DeviceWorker,
}

/// `[worker]` in [`DeviceConfig`]: the settings of [`WorkerSection`] that
/// decide what this device lends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeviceWorker {
    /// As [`WorkerSection::run_tasks_from`].
    #[serde(default)]
    pub run_tasks_from: Option<Vec<String>>,
    /// As [`WorkerSection::sandbox`].
    #[serde(default)]
    pub sandbox: Option<String>,
    /// As [`WorkerSection::allow_read`].
    #[serde(default)]
    pub allow_read: Option<Vec<String>>,
}

/// The name of [`DeviceConfig`]'s file, in the workspace's `.bridge/`.
pub const DEVICE_CONFIG_FILE: &str = "config.toml";

/// The settings that decide what this device lends, as they apply to it
/// (see [`DeviceConfig`]).
#[derive(Debug, Clone, Default)]
pub struct WorkerPolicy {
    /// `run-tasks-from`, unparsed; `None`: the default for the role.
    pub run_tasks_from: Option<Vec<String>>,
    /// `sandbox`; `None`: `auto`.
    pub sandbox: Option<String>,
    /// `allow-read`.
    pub allow_read: Vec<String>,
    /// The keys `bridge.toml` sets that this device does not take from it
    /// (a person's device), for one note.
    pub shared_ignored: Vec<&'static str>,
}

/// `[github]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GitHubSection {
    /// The repository, `OWNER/REPO`.
    pub repository: String,
    /// The workflow file that runs `bridge run` (default `bridge.yml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The branch or tag the workflow runs on (default `main`).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Runner minutes bridge's runs may use per calendar month (UTC);
    /// `bridge dispatch` refuses to go past it without --force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes_budget: Option<u64>,
    /// How many runners may run at once: the plan's concurrency (GitHub
    /// Free 20, Pro 40, Team 60; default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runners: Option<u32>,
}

impl GitHubSection {
    /// The workflow file name.
    pub fn workflow(&self) -> &str {
        self.workflow.as_deref().unwrap_or("bridge.yml")
    }

    /// The branch or tag to run the workflow on.
    pub fn git_ref(&self) -> &str {
        self.git_ref.as_deref().unwrap_or("main")
    }

    /// The plan's concurrency.
    pub fn max_runners(&self) -> u32 {
        self.max_runners.unwrap_or(20).max(1)
    }
}

impl Config {
    /// Parses `bridge.toml` text (`path` is only for messages) and checks
    /// the values that are not plain strings (the root's member id, the
    /// durations), so that a damaged file gives one error naming its line and
    /// field, with one hint (issue 12, item 22), whatever command reads it.
    pub fn parse_str(text: &str, path: &Path) -> CliResult<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_and_column(text, span.start));
            config_error(path, line, column, field_at(text, line), e.message())
        })?;
        config.check(text, path)?;
        Ok(config)
    }

    /// The checks `parse_str` makes after the TOML itself is read.
    fn check(&self, text: &str, path: &Path) -> CliResult<()> {
        let fail = |section: &str, key: &str, message: String| {
            let (line, column) = locate(text, section, key).unwrap_or((1, 1));
            Err(config_error(
                path,
                line,
                column,
                Some(format!("{section}.{key}")),
                &message,
            ))
        };
        if self.workspace.id.trim().is_empty() || self.workspace.id.chars().any(char::is_control) {
            return fail("workspace", "id", "is not a workspace id".into());
        }
        if self.workspace.root.parse::<MemberId>().is_err() {
            return fail(
                "workspace",
                "root",
                format!(
                    "`{}` is not a member id (the root admin's fingerprint, as `bridge whoami` prints it)",
                    crate::text::safe(&self.workspace.root)
                ),
            );
        }
        if let Err((key, message)) = check_policy_keys(
            self.worker.run_tasks_from.as_deref(),
            self.worker.sandbox.as_deref(),
            &self.worker.allow_read,
        ) {
            return fail("worker", key, message);
        }
        // Bounded so that every sum with a clock stays far from overflowing
        // (a lease of `1000000000y` panicked the worker) and a zero lease
        // cannot make a worker renew in a busy loop.
        const DAY: Duration = Duration::from_secs(86_400);
        for (key, value, min, max) in [
            ("lease", &self.worker.lease, Duration::from_secs(1), 7 * DAY),
            (
                "clock-skew",
                &self.worker.clock_skew,
                Duration::ZERO,
                7 * DAY,
            ),
            (
                "reload-every",
                &self.worker.reload_every,
                Duration::ZERO,
                30 * DAY,
            ),
        ] {
            let Some(v) = value else { continue };
            match humantime::parse_duration(v) {
                Err(e) => {
                    return fail(
                        "worker",
                        key,
                        format!(
                            "`{}` is not a duration ({e}); write e.g. \"90s\", \"5m\" or \"1h 30m\"",
                            crate::text::safe(v)
                        ),
                    );
                }
                Ok(d) if d < min || d > max => {
                    return fail(
                        "worker",
                        key,
                        format!(
                            "`{}` must be between {} and {}",
                            crate::text::safe(v),
                            humantime::format_duration(min),
                            humantime::format_duration(max)
                        ),
                    );
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// `[worker] run-tasks-from`, parsed (checked when the file was read);
    /// `None` when unset: the default for this device's role.
    pub fn run_tasks_from(&self) -> Option<Vec<crate::run_policy::RunFrom>> {
        self.worker.run_tasks_from.as_ref().map(|entries| {
            entries
                .iter()
                .filter_map(|e| crate::run_policy::RunFrom::parse(e).ok())
                .collect()
        })
    }

    /// How long a remote may make no progress before a command goes on
    /// offline: `BRIDGE_STALL_TIMEOUT`, else `[store] stall-timeout`, else
    /// 30 s (issue 12, item 15: a host that accepts the connection and
    /// never answers hung commands for minutes).
    pub fn stall_timeout(&self) -> CliResult<Duration> {
        self.stall_timeout_with(std::env::var(STALL_TIMEOUT_ENV).ok())
    }

    /// [`stall_timeout`](Self::stall_timeout) with the environment's value
    /// given.
    fn stall_timeout_with(&self, env: Option<String>) -> CliResult<Duration> {
        let timeout = match env {
            Some(v) if !v.trim().is_empty() => humantime::parse_duration(v.trim())
                .with_context(|| format!("{STALL_TIMEOUT_ENV}={v:?} is not a duration"))
                .hint("write durations like \"10s\" or \"2m\"")?,
            _ => parse_duration_setting(
                "store.stall-timeout",
                self.store.stall_timeout.as_deref(),
                "30s",
            )?,
        };
        if timeout < Duration::from_secs(1) {
            return Err(CliError::hint(
                anyhow!("the stall timeout must be at least 1s, not {timeout:?}"),
                "set `stall-timeout` under [store] in bridge.toml (or BRIDGE_STALL_TIMEOUT) to 1s or more",
            ));
        }
        Ok(timeout)
    }

    /// The lease duration.
    pub fn lease(&self) -> CliResult<Duration> {
        parse_duration_setting("worker.lease", self.worker.lease.as_deref(), "60s")
    }

    /// How often a long-lived worker reloads (see [`Session::reload`]).
    pub fn reload_every(&self) -> CliResult<Duration> {
        parse_duration_setting(
            "worker.reload-every",
            self.worker.reload_every.as_deref(),
            "10m",
        )
    }

    /// The derivation policy every replica of this workspace shares.
    pub fn policy(&self) -> CliResult<Policy> {
        let skew = parse_duration_setting(
            "worker.clock-skew",
            self.worker.clock_skew.as_deref(),
            "30s",
        )?;
        let lease = self.lease()?;
        Ok(Policy {
            clock_skew_ms: skew.as_millis() as Millis,
            lease_ms: lease.as_millis() as Millis,
        })
    }
}

/// One error for a damaged `bridge.toml`: the file, line and column, the
/// field when one is known, what is wrong, and one hint.
/// The checks of the settings that decide what a device lends, wherever
/// they are written: the key and the message of the first that fails.
fn check_policy_keys(
    run_tasks_from: Option<&[String]>,
    sandbox: Option<&str>,
    allow_read: &[String],
) -> Result<(), (&'static str, String)> {
    if let Some(mode) = sandbox
        && let Err(e) = mode.parse::<crate::sandbox::SandboxMode>()
    {
        return Err(("sandbox", e));
    }
    for (i, p) in allow_read.iter().enumerate() {
        if let Err(e) = bridge_model::limits::check_allow_read(|| format!("allow-read[{i}]"), p) {
            return Err(("allow-read", e.to_string()));
        }
    }
    for entry in run_tasks_from.into_iter().flatten() {
        if let Err(message) = crate::run_policy::RunFrom::parse(entry) {
            return Err(("run-tasks-from", message));
        }
    }
    Ok(())
}

/// Reads `.bridge/config.toml` in `root`, if there is one.
fn read_device_config(root: &Path) -> CliResult<DeviceConfig> {
    let path = root.join(STATE_DIR).join(DEVICE_CONFIG_FILE);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(DeviceConfig::default());
    }
    let text = crate::files::read_text(&path, crate::files::CONFIG_MAX)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let device: DeviceConfig = toml::from_str(&text).map_err(|e| {
        let (line, column) = e
            .span()
            .map_or((1, 1), |span| line_and_column(&text, span.start));
        config_error(&path, line, column, field_at(&text, line), e.message())
    })?;
    let w = &device.worker;
    if let Err((key, message)) = check_policy_keys(
        w.run_tasks_from.as_deref(),
        w.sandbox.as_deref(),
        w.allow_read.as_deref().unwrap_or_default(),
    ) {
        let (line, column) = locate(&text, "worker", key).unwrap_or((1, 1));
        return Err(config_error(
            &path,
            line,
            column,
            Some(format!("worker.{key}")),
            &message,
        ));
    }
    Ok(device)
}

fn config_error(
    path: &Path,
    line: usize,
    column: usize,
    field: Option<String>,
    message: &str,
) -> CliError {
    let field = field.map(|f| format!("`{}`: ", crate::text::safe(&f)));
    CliError::hint(
        anyhow!(
            "{}:{line}:{column}: {}{message}",
            path.display(),
            field.unwrap_or_default()
        ),
        format!(
            "fix that line of {CONFIG_FILE} (it is shared by every device of the workspace: if it is committed, `git diff {CONFIG_FILE}` shows what changed and `git checkout {CONFIG_FILE}` restores it)"
        ),
    )
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The field a line of a TOML file is about: `section.key` for a `key = …`
/// line (the section being the last `[header]` above it), `section` for a
/// header line.
fn field_at(text: &str, line: usize) -> Option<String> {
    let mut section: Option<String> = None;
    for (i, l) in text.lines().enumerate().take(line) {
        let l = l.trim();
        let here = i + 1 == line;
        if let Some(header) = l.strip_prefix('[') {
            let name = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or(header)
                .trim()
                .to_owned();
            if here {
                return (!name.is_empty()).then_some(name);
            }
            section = Some(name);
        } else if here {
            let key = l.split('=').next()?.trim().trim_matches(['"', '\'']);
            if key.is_empty() || key.starts_with('#') {
                return section;
            }
            return Some(match &section {
                Some(s) => format!("{s}.{key}"),
                None => key.to_owned(),
            });
        }
    }
    section
}

/// The line and column of `key` in `[section]`, if the file has it.
fn locate(text: &str, section: &str, key: &str) -> Option<(usize, usize)> {
    let mut current = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if let Some(h) = t.strip_prefix('[') {
            current = h.split(']').next().unwrap_or(h).trim().to_owned();
        } else if current == section
            && t.split('=')
                .next()
                .map(|k| k.trim().trim_matches(['"', '\'']))
                == Some(key)
        {
            return Some((i + 1, l.len() - l.trim_start().len() + 1));
        }
    }
    None
}

fn parse_duration_setting(key: &str, value: Option<&str>, default: &str) -> CliResult<Duration> {
    let v = value.unwrap_or(default);
    humantime::parse_duration(v)
        .with_context(|| format!("`{key} = \"{v}\"` in {CONFIG_FILE} is not a duration"))
        .hint("write durations like \"90s\", \"5m\" or \"1h 30m\"")
}

/// A workspace found on disk.
#[derive(Debug)]
pub struct Workspace {
    /// The folder holding `bridge.toml`.
    pub root: PathBuf,
    /// The parsed `bridge.toml`.
    pub config: Config,
    /// This device's replica.
    pub replica: Replica,
    /// `.bridge/config.toml`: this device's own settings.
    pub device: DeviceConfig,
}

impl Workspace {
    /// Finds the workspace: `dir` if given, else the nearest folder at or
    /// above the current one that holds `bridge.toml`.
    pub fn find(dir: Option<&Path>) -> CliResult<Workspace> {
        let root = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                let cwd = std::env::current_dir().context("cannot read the current folder")?;
                cwd.ancestors()
                    .find(|d| d.join(CONFIG_FILE).is_file())
                    .map(Path::to_path_buf)
                    .ok_or_else(|| {
                        CliError::hint(
                            anyhow!("no {CONFIG_FILE} in {} or any folder above it", cwd.display()),
                            "create a workspace here with `bridge init`, join a shared store with `bridge join dir:PATH`, or pass --workspace DIR",
                        )
                    })?
            }
        };
        Workspace::open(&root)
    }

    /// Opens the workspace whose `bridge.toml` is in `root`.
    pub fn open(root: &Path) -> CliResult<Workspace> {
        let path = root.join(CONFIG_FILE);
        let text = crate::files::read_text(&path, crate::files::CONFIG_MAX)
            .with_context(|| format!("cannot read {}", path.display()))
            .hint("create a workspace with `bridge init`, or pass --workspace DIR")?;
        let config = Config::parse_str(&text, &path)?;
        Workspace::with_config(root, config)
    }

    /// A workspace whose configuration is in hand (not yet, or not only, in
    /// `bridge.toml`); creates the local replica on first use.
    pub fn with_config(root: &Path, config: Config) -> CliResult<Workspace> {
        let path = root.join(CONFIG_FILE);
        let store = root.join(STATE_DIR).join("store");
        let replica = if store.exists() {
            Replica::open(&store)
                .with_context(|| format!("cannot open the replica in {}", store.display()))?
        } else {
            // A fresh clone of a repository holding bridge.toml: make the
            // local replica on first use.
            create_state_dir(root)?;
            Replica::init(&store, &config.workspace.id)
                .with_context(|| format!("cannot create the replica in {}", store.display()))?
        };
        // Checked here, where the file is read, so that a bad value is an
        // error naming it (opening a remote only reads it).
        config.stall_timeout()?;
        if replica.workspace_id() != config.workspace.id {
            return Err(CliError::hint(
                anyhow!(
                    "the replica in {} belongs to workspace {}, but `workspace.id` in {} says {}",
                    store.display(),
                    replica.workspace_id(),
                    path.display(),
                    config.workspace.id
                ),
                format!(
                    "if `workspace.id` in {CONFIG_FILE} was changed by mistake, restore it (`git checkout {CONFIG_FILE}`); only if this folder really belongs to another workspace now, move .bridge/ away (with any change not synced yet) and run the command again"
                ),
            ));
        }
        let device = read_device_config(root)?;
        Ok(Workspace {
            root: root.to_path_buf(),
            config,
            replica,
            device,
        })
    }

    /// The settings that decide what this device lends (see
    /// [`DeviceConfig`]): `.bridge/config.toml`'s, and on a `runner`
    /// (worker role) `bridge.toml`'s where that file is silent.
    pub fn worker_policy(&self, runner: bool) -> WorkerPolicy {
        let own = &self.device.worker;
        let shared = &self.config.worker;
        let mut policy = WorkerPolicy {
            run_tasks_from: own.run_tasks_from.clone(),
            sandbox: own.sandbox.clone(),
            allow_read: own.allow_read.clone().unwrap_or_default(),
            shared_ignored: Vec::new(),
        };
        if runner {
            policy.run_tasks_from = policy
                .run_tasks_from
                .or_else(|| shared.run_tasks_from.clone());
            policy.sandbox = policy.sandbox.or_else(|| shared.sandbox.clone());
            if own.allow_read.is_none() {
                policy.allow_read = shared.allow_read.clone();
            }
        } else {
            for (key, set) in [
                ("run-tasks-from", shared.run_tasks_from.is_some()),
                ("sandbox", shared.sandbox.is_some()),
                ("allow-read", !shared.allow_read.is_empty()),
            ] {
                if set {
                    policy.shared_ignored.push(key);
                }
            }
        }
        policy
    }

    /// Where task working folders and logs live while tasks run.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR).join("work")
    }

    /// The configured remote, if any.
    pub fn remote_spec(&self) -> Option<&str> {
        self.config.store.remote.as_deref()
    }
}

/// Creates `.bridge/` with a `.gitignore` so the replica never lands in the
/// user's own git history.
pub fn create_state_dir(root: &Path) -> CliResult<()> {
    let dir = root.join(STATE_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "# bridge's local replica and scratch space\n*\n")
            .with_context(|| format!("cannot write {}", ignore.display()))?;
    }
    Ok(())
}

/// Writes `bridge.toml` (refusing to overwrite one).
pub fn write_config(root: &Path, config: &Config) -> CliResult<()> {
    let path = root.join(CONFIG_FILE);
    if path.exists() {
        return Err(CliError::hint(
            anyhow!("{} already exists", path.display()),
            "this folder is a workspace already; use it as it is",
        ));
    }
    let body = toml::to_string(config).context("cannot encode bridge.toml")?;
    let text = format!(
        "# bridge workspace: see `bridge --help`. Commit this file; .bridge/ is local.\n{body}"
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A new random workspace id.
pub fn new_workspace_id() -> CliResult<String> {
    Ok(format!("ws-{}", hex::encode(random_bytes::<12>()?)))
}

/// Random bytes from the OS.
pub fn random_bytes<const N: usize>() -> CliResult<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| anyhow!("the OS random number generator failed: {e}"))?;
    Ok(b)
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> Millis {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis);
    now.saturating_add(test_clock_offset())
}

/// Debug builds only (the end-to-end tests): `BRIDGE_TEST_CLOCK_OFFSET_MS`
/// moves this process's clock by that many milliseconds, to play a device
/// whose clock is wrong (issue 12, item 12). Release builds ignore it.
#[cfg(debug_assertions)]
fn test_clock_offset() -> Millis {
    static OFFSET: std::sync::OnceLock<Millis> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("BRIDGE_TEST_CLOCK_OFFSET_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

#[cfg(not(debug_assertions))]
fn test_clock_offset() -> Millis {
    0
}

/// This device's name: `BRIDGE_DEVICE`, else the host name.
pub fn device_name() -> String {
    if let Ok(d) = std::env::var("BRIDGE_DEVICE")
        && !d.is_empty()
    {
        return d;
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "device".to_owned())
}

/// Loads this device's identity and verifies the workspace's roster,
/// without loading any document.
pub fn open_vault(ws: &Workspace) -> CliResult<Vault> {
    let identity = keys::load_identity()?;
    let root: MemberId = ws.config.workspace.root.parse().map_err(|_| {
        CliError::hint(
            anyhow!("`root` in {CONFIG_FILE} is not a member id"),
            "restore bridge.toml from version control",
        )
    })?;
    keys::check_pin(&ws.config.workspace.id, &root)?;
    let (vault, warnings) = Vault::open(ws.replica.clone(), identity, &root)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    crate::freshness::check(ws, vault.roster())?;
    Ok(vault)
}

/// One document held in memory.
struct OpenDoc {
    loaded: LoadedDoc,
    header: Option<BatchHeader>,
    /// Our own changes since the last flush, as raw change bytes.
    unflushed: Vec<Vec<u8>>,
    /// Whether this process's actor has been set on the document.
    actor_set: bool,
    /// How many store files the document held when its cache was last
    /// written or read (0: none).
    cached_files: usize,
    /// The saved state `loaded.doc` still has to be parsed from (a
    /// document taken from this device's cache and unchanged since:
    /// `loaded.doc` is empty until [`OpenDoc::materialize`]).
    lazy: Option<Vec<u8>>,
    /// The tasks the cache held, until they go into the view.
    cached_records: Option<Vec<TaskRecord>>,
    /// Warnings about the document's refused files, kept for its cache.
    warnings: Vec<bridge_store::StoreWarning>,
}

impl OpenDoc {
    fn empty() -> OpenDoc {
        OpenDoc {
            loaded: LoadedDoc {
                doc: AutoCommit::new(),
                applied: BTreeSet::new(),
                skipped: BTreeSet::new(),
            },
            header: None,
            unflushed: Vec::new(),
            actor_set: false,
            cached_files: 0,
            lazy: None,
            cached_records: None,
            warnings: Vec::new(),
        }
    }

    fn cached(c: cache::Cached) -> OpenDoc {
        OpenDoc {
            cached_files: c.applied.len() + c.skipped.len(),
            loaded: LoadedDoc {
                doc: AutoCommit::new(),
                applied: c.applied,
                skipped: c.skipped,
            },
            header: Some(c.header),
            lazy: Some(c.saved),
            cached_records: Some(c.records),
            warnings: c.warnings,
            ..OpenDoc::empty()
        }
    }

    /// Parses the saved state, if not done yet. A state that does not
    /// parse is dropped: the document is then read from its files.
    fn materialize(&mut self) {
        let Some(saved) = self.lazy.take() else {
            return;
        };
        self.cached_records = None;
        let applied = std::mem::take(&mut self.loaded.applied);
        let skipped = std::mem::take(&mut self.loaded.skipped);
        match cache::materialize(&saved, applied, skipped) {
            Some(loaded) => self.loaded = loaded,
            None => {
                self.cached_files = 0;
                self.header = None;
            }
        }
    }
}

/// The documents of a workspace loaded in memory, and the merged view.
pub struct Session {
    /// The workspace.
    pub ws: Workspace,
    /// This process's writer id (a fresh, time-ordered Automerge actor).
    pub writer: WriterId,
    /// The derivation policy.
    pub policy: Policy,
    /// Encryption and verification of every store file.
    pub vault: Arc<Vault>,
    docs: BTreeMap<DocId, OpenDoc>,
    view: View,
    seq: u64,
    warned: BTreeSet<String>,
    /// Store names of chunks written since the last [`take_written`](Self::take_written).
    written: Vec<String>,
    /// When the documents were (re)loaded.
    loaded_at: std::time::Instant,
    /// How documents not loaded yet are loaded.
    plan: LoadPlan,
    /// Unfinished tasks in the documents loaded since the plan last
    /// stopped loading.
    open_loaded: usize,
    /// Whether some live document was left unloaded by the plan.
    deferred: bool,
    /// How many roster files the vault was opened with: when more arrive
    /// (a member added or removed meanwhile), the roster is verified again.
    roster_files: usize,
    /// How many audience grant files the vault was opened with: a new one
    /// (a private batch this device may now read, or a rotation) makes the
    /// vault read the grants again.
    grant_files: usize,
    /// Whether this process wrote audience grants (a rotation) that no
    /// sync has pushed yet: see [`Session::take_rotated`].
    rotated: bool,
    /// Documents of private batches this device cannot read, skipped by
    /// the last refresh (counted, not warned about).
    foreign_docs: usize,
    /// When the claim sightings were last saved, and whether some arrived
    /// since (see [`Session::refresh`]).
    sightings_saved: Option<std::time::Instant>,
    sightings_unsaved: bool,
}

/// How often a busy session saves its claim sightings: they only matter to
/// the next command, and losing the newest few is safe (those claims count
/// as first seen then, which bounds them by their own `lease_until`).
const SIGHTINGS_SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Drop for Session {
    fn drop(&mut self) {
        if self.sightings_unsaved {
            cache::save_sightings(&self.cache_dir(), self.view.sightings());
        }
    }
}

/// How a session loads the documents it has not loaded yet.
#[derive(Debug, Clone)]
pub enum LoadPlan {
    /// Every live document: commands that show or change the whole pool.
    All,
    /// A runner: the newest batch's documents first, in an order of its
    /// own within a batch (hashed with `seed`, so that runners start on
    /// different documents), stopping once those loaded hold `open_tasks`
    /// unfinished tasks. A fresh runner on a large pool starts its first
    /// task after reading one or two documents, not all of them;
    /// [`Session::load_more`] goes on (before the runner steals from other
    /// shards, and before it concludes there is nothing to do).
    UntilOpen {
        /// Unfinished tasks that are enough to start.
        open_tasks: usize,
        /// Orders the documents.
        seed: String,
    },
}

/// Reads the tasks of a document held in memory (parsing a lazy one) and
/// caches it when `save_to` is given. `None` while its genesis change has
/// not arrived. Free of `Session` so that documents load in parallel.
fn read_open_doc(
    vault: &Vault,
    id: &DocId,
    open: &mut OpenDoc,
    save_to: Option<&Path>,
) -> Option<(BatchHeader, Vec<TaskRecord>, Vec<doc::Problem>)> {
    open.materialize();
    if open.header.is_none() {
        // Err: the genesis change has not arrived yet; nothing to show.
        open.header = Some(doc::read_header(&open.loaded.doc).ok()?);
    }
    let header = open.header.clone()?;
    let began = std::time::Instant::now();
    let (records, problems) = doc::read_tasks(&open.loaded.doc, vault);
    tracing::debug!(doc = %id, tasks = records.len(), ms = began.elapsed().as_millis(), "tasks read");
    if let Some(dir) = save_to
        && open.unflushed.is_empty()
    {
        cache::save(
            vault,
            dir,
            &id.to_string(),
            &mut open.loaded,
            &header,
            &records,
            &open.warnings,
        );
        open.cached_files = open.loaded.applied.len() + open.loaded.skipped.len();
    }
    Some((header, records, problems))
}

/// A document not in memory before, loaded (from the cache and whatever
/// files arrived since, or from its files) and read.
struct NewDoc {
    open: OpenDoc,
    /// Store files applied.
    applied: usize,
    /// Warnings about its files (the cached ones included).
    warnings: Vec<bridge_store::StoreWarning>,
    /// Its tasks, if its header is known.
    read: Option<(BatchHeader, Vec<TaskRecord>, Vec<doc::Problem>)>,
}

/// Loads document `name` (see [`NewDoc`]). Free of `Session`, so that
/// several load in parallel.
fn load_new_doc(
    vault: &Vault,
    replica: &Replica,
    cache_dir: &Path,
    id: &DocId,
    name: &str,
) -> CliResult<NewDoc> {
    let began = std::time::Instant::now();
    let mut open = match cache::load(vault, cache_dir, name) {
        Some(c) => OpenDoc::cached(c),
        None => OpenDoc::empty(),
    };
    let from_cache = open.lazy.is_some();
    let mut warnings = open.warnings.clone();
    let unseen = !from_cache
        || bridge_store::has_unseen(replica, name, &open.loaded.applied, &open.loaded.skipped)
            .with_context(|| format!("cannot list document {name}"))?;
    if !unseen {
        // Nothing new since the cache: its tasks as they are.
        let read = match (open.header.clone(), open.cached_records.take()) {
            (Some(header), Some(records)) => Some((header, records, Vec::new())),
            _ => None,
        };
        return Ok(NewDoc {
            open,
            applied: 0,
            warnings,
            read,
        });
    }
    open.materialize();
    let (applied, fresh) = bridge_store::refresh_doc(replica, name, &mut open.loaded, vault)
        .with_context(|| format!("cannot read document {name}"))?;
    tracing::debug!(
        doc = name,
        from_cache,
        files_applied = applied,
        ms = began.elapsed().as_millis(),
        "document loaded"
    );
    for w in fresh {
        if !open.warnings.iter().any(|o| o.path == w.path) {
            open.warnings.push(w.clone());
        }
        warnings.push(w);
    }
    // Loaded with files its cache lacked: cache it, so the next start does
    // not open them again.
    let read = read_open_doc(vault, id, &mut open, (applied > 0).then_some(cache_dir));
    Ok(NewDoc {
        open,
        applied,
        warnings,
        read,
    })
}

/// How many tasks of `records` have neither a success nor a cancel: what
/// a runner's load plan counts.
fn unfinished(records: &[TaskRecord]) -> usize {
    records
        .iter()
        .filter(|r| {
            r.facts.cancels.is_empty()
                && !r
                    .facts
                    .attempts
                    .values()
                    .any(|a| a.outcome == bridge_model::facts::Outcome::Success)
        })
        .count()
}

impl Session {
    /// Loads this device's identity, verifies the roster and loads the
    /// documents of the replica as `plan` says.
    pub fn open_with(ws: Workspace, plan: LoadPlan) -> CliResult<Session> {
        let vault = open_vault(&ws)?;
        Session::with_plan(ws, vault, plan)
    }

    /// Loads every document of the replica through `vault`.
    pub fn with_vault(ws: Workspace, vault: Vault) -> CliResult<Session> {
        Session::with_plan(ws, vault, LoadPlan::All)
    }

    /// Loads the documents of the replica through `vault`, as `plan` says.
    pub fn with_plan(ws: Workspace, vault: Vault, plan: LoadPlan) -> CliResult<Session> {
        let policy = ws.config.policy()?;
        let tag = crate::vault::member_tag(vault.identity().member_id());
        let writer = WriterId::new(now_ms(), tag, random_bytes::<8>()?);
        vault.bind_own_actor(&writer.actor());
        let mut s = Session {
            ws,
            writer,
            policy,
            vault: Arc::new(vault),
            docs: BTreeMap::new(),
            view: View::new(),
            seq: 0,
            warned: BTreeSet::new(),
            written: Vec::new(),
            loaded_at: std::time::Instant::now(),
            plan,
            open_loaded: 0,
            deferred: false,
            roster_files: 0,
            grant_files: 0,
            rotated: false,
            foreign_docs: 0,
            sightings_saved: None,
            sightings_unsaved: false,
        };
        s.roster_files = s.count_roster_files();
        s.grant_files = s.vault.grant_files();
        s.view.set_sightings(cache::load_sightings(&s.cache_dir()));
        s.refresh()?;
        // After the documents are read: their headers name the batches'
        // true generation-0 grants, which decide what a rotation extends.
        s.rotate_stale_audiences();
        Ok(s)
    }

    /// Rotates the key of every private batch whose newest audience names
    /// a member removed from the roster, when this device is in that
    /// audience (issue 13): files written afterwards are sealed to a key
    /// the removed member never receives. Idempotent: once the new grant
    /// is read, the audience no longer names them. Two devices rotating at
    /// once converge (the lowest hash wins).
    fn rotate_stale_audiences(&mut self) {
        let stale = crate::audience::stale_audiences(&self.vault);
        if stale.is_empty() {
            return;
        }
        let listed = |s: &Session| -> BTreeSet<String> {
            s.ws.replica
                .list_chunks(AUDIENCE_DOC)
                .unwrap_or_default()
                .into_iter()
                .collect()
        };
        let before = listed(self);
        for (batch, keys) in stale {
            match crate::audience::rotate(&self.vault, &batch, &keys) {
                Ok(_) => {
                    tracing::info!(
                        "rotated the key of private batch {batch}: a member of its audience left the workspace"
                    );
                }
                Err(e) => tracing::warn!(
                    "cannot rotate the key of private batch {batch}: {}",
                    e.error
                ),
            }
        }
        // Pushed with this process's other files.
        let new: Vec<String> = listed(self)
            .difference(&before)
            .map(|n| format!("chunks/{AUDIENCE_DOC}/{n}"))
            .collect();
        self.rotated |= !new.is_empty();
        self.written.extend(new);
        self.reopen_vault();
    }

    fn count_roster_files(&self) -> usize {
        self.ws
            .replica
            .list_chunks(ROSTER_DOC)
            .map_or(0, |l| l.len())
    }

    /// Verifies the roster again after new roster files arrived (a long
    /// run would otherwise refuse a new member's files, or accept a removed
    /// one's, until it ends). Files refused so far are read again. On
    /// failure the current roster stays, with a warning.
    fn reopen_vault(&mut self) {
        self.roster_files = self.count_roster_files();
        self.grant_files = Vault::count_grant_files(&self.ws.replica);
        let root = match self.ws.config.workspace.root.parse::<MemberId>() {
            Ok(r) => r,
            Err(_) => return,
        };
        let identity = self.vault.identity().clone();
        let opened = Vault::open(self.ws.replica.clone(), identity, &root)
            .map_err(CliError::from)
            .and_then(|(v, w)| {
                crate::freshness::check(&self.ws, v.roster())?;
                Ok((v, w))
            });
        match opened {
            Ok((vault, _)) => {
                vault.bind_own_actor(&self.writer.actor());
                // The generation-0 grants the loaded batches' headers name
                // (issue 13): a new vault must know them before it seals
                // anything, or a forged grant arriving mid-run (which is
                // itself a reason to reopen) could win the tie-break.
                for open in self.docs.values() {
                    if let Some(h) = &open.header
                        && let Some(grant) = &h.grant
                    {
                        vault.confirm_first_grant(h.batch.as_str(), grant);
                    }
                }
                self.vault = Arc::new(vault);
                for open in self.docs.values_mut() {
                    open.loaded.skipped.clear();
                    open.warnings.clear();
                }
                tracing::debug!("the roster changed; verified it again");
            }
            Err(e) => tracing::warn!(
                "new roster files do not verify; keeping the roster as it was: {}",
                e.error
            ),
        }
    }

    /// Whether a rotation wrote grants since the last call: a sync that
    /// rotated after pulling (it saw the removal only then) pushes again.
    pub fn take_rotated(&mut self) -> bool {
        std::mem::take(&mut self.rotated)
    }

    /// This device's cache folder.
    fn cache_dir(&self) -> PathBuf {
        cache::dir(&self.ws.root.join(STATE_DIR))
    }

    /// Whether the load plan left live documents unloaded.
    pub fn has_deferred(&self) -> bool {
        self.deferred
    }

    /// Loads more of the documents the plan left (another round of it).
    /// Returns whether any was loaded.
    pub fn load_more(&mut self) -> CliResult<bool> {
        let before = self.docs.len();
        self.open_loaded = 0;
        self.refresh()?;
        Ok(self.docs.len() > before)
    }

    /// Loads every live document from now on.
    pub fn load_all(&mut self) -> CliResult<()> {
        self.plan = LoadPlan::All;
        if self.deferred {
            self.refresh()?;
        }
        Ok(())
    }

    /// The merged view of every task.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Every document's header.
    pub fn headers(&self) -> impl Iterator<Item = (&DocId, &BatchHeader)> {
        self.docs
            .iter()
            .filter_map(|(id, d)| d.header.as_ref().map(|h| (id, h)))
    }

    /// Applies chunk files that appeared in the replica since the last look
    /// (written by other processes or pulled by a sync). Returns how many.
    pub fn refresh(&mut self) -> CliResult<usize> {
        let began = std::time::Instant::now();
        let applied = self.refresh_docs()?;
        // Leases are bounded on this device's clock from when it first saw
        // each claim (issue 12, item 12).
        // Saved at most every SIGHTINGS_SAVE_EVERY (a busy pool renews
        // leases all the time), and when the session ends.
        self.sightings_unsaved |= self.view.observe_claims(now_ms(), self.policy);
        if self.sightings_unsaved
            && self
                .sightings_saved
                .is_none_or(|at| at.elapsed() >= SIGHTINGS_SAVE_EVERY)
        {
            cache::save_sightings(&self.cache_dir(), self.view.sightings());
            self.sightings_saved = Some(std::time::Instant::now());
            self.sightings_unsaved = false;
        }
        tracing::debug!(
            applied,
            ms = began.elapsed().as_millis(),
            "documents refreshed"
        );
        Ok(applied)
    }

    fn refresh_docs(&mut self) -> CliResult<usize> {
        if self.count_roster_files() != self.roster_files {
            self.reopen_vault();
            self.rotate_stale_audiences();
        } else if Vault::count_grant_files(&self.ws.replica) != self.grant_files {
            self.reopen_vault();
        }
        let replica = self.ws.replica.clone();
        let replica = &replica;
        let vault = self.vault.clone();
        let names = replica.list_docs().with_context(|| {
            format!("cannot list the documents in {}", replica.root().display())
        })?;
        let cache_dir = cache::dir(&self.ws.root.join(STATE_DIR));
        let mut names = names;
        let target = match &self.plan {
            LoadPlan::All => None,
            LoadPlan::UntilOpen { open_tasks, seed } => {
                // Newest batch first (batch ids start with their creation
                // time): what someone just submitted, and not the finished
                // history; within a batch, an order of this runner's own.
                names.sort_by_cached_key(|n| {
                    let batch = n.split('.').next().unwrap_or(n).to_owned();
                    let hash = sha2::Sha256::new()
                        .chain_update(seed.as_bytes())
                        .chain_update(b"\0")
                        .chain_update(n.as_bytes())
                        .finalize();
                    (std::cmp::Reverse(batch), hash)
                });
                Some(*open_tasks)
            }
        };
        self.deferred = false;
        // Loading every document: the new ones load in parallel (decrypting,
        // verifying, parsing and reading are independent per document).
        let mut prefetched = match target {
            Some(_) => std::collections::HashMap::new(),
            None => self.load_new_in_parallel(&names, &cache_dir),
        };
        let mut applied = 0;
        self.foreign_docs = 0;
        for name in names {
            if is_reserved_doc(&name) {
                continue;
            }
            // A private batch this device is not in the audience of: its
            // files do not decrypt here, which is no error (issue 13).
            // Counted and skipped; read once a grant names this device.
            if vault.is_foreign_doc(&name) {
                self.foreign_docs += 1;
                continue;
            }
            let Ok(id) = name.parse::<DocId>() else {
                self.warn_once(&name, || {
                    format!("skipped chunks/{name}: not a document id")
                });
                continue;
            };
            if let Some(target) = target
                && !self.docs.contains_key(&id)
                && self.open_loaded >= target
            {
                self.deferred = true;
                continue;
            }
            let (n, warnings, save, read_in_part) = match self.docs.get_mut(&id) {
                Some(open) => {
                    if open.lazy.is_some() {
                        let unseen = bridge_store::has_unseen(
                            replica,
                            &name,
                            &open.loaded.applied,
                            &open.loaded.skipped,
                        )
                        .with_context(|| format!("cannot list document {name}"))?;
                        if !unseen {
                            continue;
                        }
                        open.materialize();
                    }
                    // Log what the new files change, to read only the tasks
                    // they touch rather than the whole document.
                    open.loaded.doc.update_diff_cursor();
                    let applied_here =
                        bridge_store::refresh_doc(replica, &name, &mut open.loaded, &*vault)
                            .with_context(|| format!("cannot read document {name}"));
                    let touched = match &applied_here {
                        Ok((n, _)) if *n > 0 => {
                            doc::touched_tasks(&open.loaded.doc.diff_incremental())
                        }
                        _ => None,
                    };
                    open.loaded.doc.reset_diff_cursor();
                    let (n, w) = applied_here?;
                    let files = open.loaded.applied.len() + open.loaded.skipped.len();
                    let save = files >= open.cached_files + cache::REWRITE_AFTER_FILES;
                    // The cache is left as it is then: a running process
                    // reads it only on its next load, which applies what
                    // came since (and caches the document again).
                    if n > 0
                        && let Some(keys) = touched
                    {
                        self.reread_tasks(&id, &keys);
                        (0, w, false, n)
                    } else {
                        (n, w, save, 0)
                    }
                }
                None => {
                    let loaded = match prefetched.remove(&name) {
                        Some(result) => result,
                        None => load_new_doc(&vault, replica, &cache_dir, &id, &name),
                    }?;
                    for w in &loaded.warnings {
                        let key = w.path.display().to_string();
                        self.warn_once(&key, || w.to_string());
                    }
                    self.docs.insert(id.clone(), loaded.open);
                    if let Some((header, records, problems)) = loaded.read {
                        self.open_loaded += self.add_read(&id, &header, records, problems);
                    }
                    applied += loaded.applied;
                    continue;
                }
            };
            for w in &warnings {
                let key = w.path.display().to_string();
                self.warn_once(&key, || w.to_string());
            }
            if let Some(open) = self.docs.get_mut(&id) {
                for w in warnings {
                    if !open.warnings.iter().any(|o| o.path == w.path) {
                        open.warnings.push(w);
                    }
                }
            }
            applied += read_in_part;
            if n > 0 {
                applied += n;
                self.reread(&id, save.then_some(&cache_dir));
            }
        }
        if self.foreign_docs > 0 {
            tracing::debug!(
                documents = self.foreign_docs,
                "skipped the documents of private batches this device is not in the audience of"
            );
        }
        Ok(applied)
    }

    /// Loads the documents among `names` that are not in memory yet, on
    /// as many threads as there are CPUs.
    fn load_new_in_parallel(
        &self,
        names: &[String],
        cache_dir: &Path,
    ) -> std::collections::HashMap<String, CliResult<NewDoc>> {
        let new: Vec<(DocId, &String)> = names
            .iter()
            .filter(|n| !is_reserved_doc(n) && !self.vault.is_foreign_doc(n))
            .filter_map(|n| n.parse::<DocId>().ok().map(|id| (id, n)))
            .filter(|(id, _)| !self.docs.contains_key(id))
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(new.len());
        if threads < 2 {
            return std::collections::HashMap::new();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (vault, replica) = (&*self.vault, &self.ws.replica);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((id, name)) = new.get(i) else {
                                break;
                            };
                            let result = load_new_doc(vault, replica, cache_dir, id, name);
                            out.push(((*name).clone(), result));
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .filter_map(|w| w.join().ok())
                .flatten()
                .collect()
        })
    }

    /// Drops every document from memory and loads them again (from this
    /// device's cache, so it costs little): what a long-lived process does
    /// now and then so that its memory stays flat. Automerge documents grow
    /// with every change applied to them, and archived documents would
    /// otherwise stay loaded; a reload starts from compact saved states and
    /// only the live documents. Call it with no task running.
    pub fn reload(&mut self) -> CliResult<()> {
        self.flush()?;
        // Caches are up to date but for the last few files, which the
        // reload applies (and caches) again.
        self.docs.clear();
        let seen = self.view.take_sightings();
        self.view = View::new();
        self.view.set_sightings(seen);
        self.loaded_at = std::time::Instant::now();
        self.refresh()?;
        Ok(())
    }

    /// [`reload`](Self::reload)s when the last load is older than `[worker]
    /// reload-every` (default 10 minutes). Returns whether it did.
    pub fn reload_if_due(&mut self) -> CliResult<bool> {
        if self.loaded_at.elapsed() < self.ws.config.reload_every()? {
            return Ok(false);
        }
        tracing::debug!("reloading the documents to keep memory flat");
        // Compact the local replica first, so the reload reads snapshots;
        // the remote gets them with the next sync.
        self.flush()?;
        crate::compact::auto(&self.vault, &self.ws.replica, None, usize::MAX, &|_| true);
        self.reload()?;
        Ok(true)
    }

    /// Loads the archived documents too (for `show`, `outputs`, `logs` of
    /// an archived task, and for `gc`). Returns how many were loaded.
    pub fn load_archived(&mut self) -> CliResult<usize> {
        let replica = self.ws.replica.clone();
        let vault = self.vault.clone();
        let names = replica
            .list_docs_in(bridge_store::DocFolder::Archive)
            .context("cannot list the archived documents")?;
        let mut loaded_docs = 0;
        for name in names {
            let Ok(id) = name.parse::<DocId>() else {
                continue;
            };
            if self.docs.contains_key(&id) || vault.is_foreign_doc(&name) {
                continue;
            }
            let (loaded, warnings) = bridge_store::load_doc(&replica, &name, &*vault)
                .with_context(|| format!("cannot read archived document {name}"))?;
            for w in warnings {
                let key = w.path.display().to_string();
                self.warn_once(&key, || w.to_string());
            }
            self.docs.insert(
                id.clone(),
                OpenDoc {
                    loaded,
                    ..OpenDoc::empty()
                },
            );
            let _ = self.reread(&id, None);
            loaded_docs += 1;
        }
        Ok(loaded_docs)
    }

    /// Re-reads one document's tasks into the view.
    /// Reads the tasks of document `id` again (and caches it, with
    /// `save_to`). Returns how many of its tasks are unfinished.
    fn reread(&mut self, id: &DocId, save_to: Option<&Path>) -> usize {
        let Some(open) = self.docs.get_mut(id) else {
            return 0;
        };
        let Some((header, records, problems)) = read_open_doc(&self.vault, id, open, save_to)
        else {
            return 0;
        };
        self.add_read(id, &header, records, problems)
    }

    /// Reads again only the tasks `keys` of document `id` (those the files
    /// just applied touched) into the view.
    fn reread_tasks(&mut self, id: &DocId, keys: &std::collections::BTreeSet<String>) {
        let Some(open) = self.docs.get(id) else {
            return;
        };
        let Some(header) = open.header.clone() else {
            // The genesis had not arrived: read it all, header first.
            self.reread(id, None);
            return;
        };
        let began = std::time::Instant::now();
        let (records, problems) = doc::read_named_tasks(&open.loaded.doc, &*self.vault, keys);
        tracing::debug!(doc = %id, tasks = records.len(), ms = began.elapsed().as_millis(), "touched tasks read");
        self.add_read(id, &header, records, problems);
    }

    /// Puts a document's tasks, as read, into the view and warns about its
    /// problems. Returns how many of its tasks are unfinished.
    fn add_read(
        &mut self,
        id: &DocId,
        header: &BatchHeader,
        records: Vec<TaskRecord>,
        problems: Vec<doc::Problem>,
    ) -> usize {
        let open_tasks = unfinished(&records);
        if let Some(grant) = &header.grant {
            self.vault.confirm_first_grant(header.batch.as_str(), grant);
        }
        for p in problems {
            let key = format!("{id}/{}", p.task);
            self.warn_once(&key, || {
                format!("skipped task {} in document {id}: {}", p.task, p.message)
            });
        }
        self.view.add_records(id, header, records);
        open_tasks
    }

    fn warn_once(&mut self, key: &str, message: impl FnOnce() -> String) {
        if self.warned.insert(key.to_owned()) {
            tracing::warn!("{}", message());
        }
    }

    /// The next fact key of this process (`<writer>.<n>`).
    pub fn next_key(&mut self) -> String {
        self.seq += 1;
        bridge_model::facts::fact_key(&self.writer, self.seq)
    }

    /// Adds a new document (a genesis change already made).
    pub fn add_new_doc(&mut self, id: DocId, header: BatchHeader, mut doc: AutoCommit) {
        // The genesis is this process's only change to the new document.
        let genesis: Vec<Vec<u8>> = doc
            .get_last_local_change()
            .map(|c| vec![c.raw_bytes().to_vec()])
            .unwrap_or_default();
        let (records, _) = doc::read_tasks(&doc, &*self.vault);
        if let Some(grant) = &header.grant {
            self.vault.confirm_first_grant(header.batch.as_str(), grant);
        }
        self.view.add_records(&id, &header, records);
        self.docs.insert(
            id,
            OpenDoc {
                loaded: LoadedDoc {
                    doc,
                    applied: BTreeSet::new(),
                    skipped: BTreeSet::new(),
                },
                header: Some(header),
                unflushed: genesis,
                actor_set: true,
                ..OpenDoc::empty()
            },
        );
    }

    /// Makes one change to a document in memory, with this process's actor,
    /// committed at `now`. It reaches the replica at the next [`flush`](Self::flush).
    pub fn change<T>(
        &mut self,
        id: &DocId,
        now: Millis,
        message: &str,
        f: impl FnOnce(&mut AutoCommit) -> Result<T, doc::DocError>,
    ) -> CliResult<T> {
        let open = self
            .docs
            .get_mut(id)
            .ok_or_else(|| anyhow!("document {id} is not in the replica"))?;
        open.materialize();
        if !open.actor_set {
            open.loaded.doc.set_actor(self.writer.actor());
            open.actor_set = true;
        }
        let out = match f(&mut open.loaded.doc) {
            Ok(v) => v,
            Err(e) => {
                open.loaded.doc.rollback();
                return Err(anyhow!(e)
                    .context(format!("cannot write to document {id}"))
                    .into());
            }
        };
        // An empty change commits nothing; then there is nothing to save.
        if doc::commit(&mut open.loaded.doc, now, message).is_some()
            && let Some(change) = open.loaded.doc.get_last_local_change()
        {
            open.unflushed.push(change.raw_bytes().to_vec());
        }
        Ok(out)
    }

    /// The view, for noting facts this process just wrote.
    pub fn view_mut(&mut self) -> &mut View {
        &mut self.view
    }

    /// Takes in what a sync did: warns once about each file it skipped
    /// and each damaged file it repaired, makes the documents read the
    /// repaired files again (they were skipped as damaged, and a loaded
    /// document never reads a skipped file again, since store files do
    /// not change: a repair is the one exception), then applies what
    /// arrived. Returns how many files were applied.
    pub fn after_sync(&mut self, report: &bridge_store::SyncReport) -> CliResult<usize> {
        for w in &report.skipped {
            // Keyed by path like the loader's warnings: a file both refuse
            // (a local junk file the sync cannot push either) is named once.
            let key = w.path.display().to_string();
            self.warn_once(&key, || w.to_string());
        }
        // Warned about, and their documents' caches dropped, by the sync
        // itself (`compact::sync_store`).
        for w in &report.repaired {
            let Ok(rel) = w.path.strip_prefix(self.ws.replica.root()) else {
                continue;
            };
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let [_, doc, file] = parts.as_slice() else {
                continue;
            };
            if doc == ROSTER_DOC {
                // Read again with the roster's file count check.
                self.roster_files = 0;
            }
            if doc == AUDIENCE_DOC {
                self.grant_files = usize::MAX;
            }
            if let Some(open) = doc
                .parse::<DocId>()
                .ok()
                .and_then(|id| self.docs.get_mut(&id))
            {
                open.loaded.skipped.remove(file);
                open.warnings.retain(|o| o.path != w.path);
                open.cached_files = 0;
            }
        }
        self.refresh()
    }

    /// The store names of the chunk files this process wrote since the last
    /// call (to push them to the remote right away).
    pub fn take_written(&mut self) -> Vec<String> {
        std::mem::take(&mut self.written)
    }

    /// Writes every document's unflushed changes as one chunk file each
    /// (atomic and durable: temp file, fsync, link).
    pub fn flush(&mut self) -> CliResult<()> {
        for (id, open) in &mut self.docs {
            if open.unflushed.is_empty() {
                continue;
            }
            let sealed =
                self.vault
                    .seal_chunk(&id.to_string(), &self.writer.actor(), &open.unflushed)?;
            let name = self
                .ws
                .replica
                .write_chunk(&id.to_string(), &sealed)
                .with_context(|| format!("cannot save changes to document {id}"))
                .hint("check that the disk is writable and not full; nothing already stored was changed")?;
            self.written.push(format!("chunks/{id}/{name}"));
            open.loaded.applied.insert(name);
            open.unflushed.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# bridge workspace\n[workspace]\nid = \"ws-771b66c4f14a873a231db9d9\"\nroot = \"mf5a6ee7bbb99c11ec7b743a2\"\n\n[store]\n\n[worker]\nlease = \"60s\"\n";

    /// The error and hint `bridge.toml` text gives.
    fn refusal(text: &str) -> (String, String) {
        match Config::parse_str(text, Path::new("ws/bridge.toml")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => (e.error.to_string(), e.hint.unwrap_or_default()),
        }
    }

    // Issue 12, item 22: a damaged bridge.toml gave a multi-line TOML report
    // and hints that contradicted each other. Now: one error naming the
    // file, line, column and field; one hint.
    #[test]
    fn issue12_damaged_config_names_file_line_and_field() {
        assert!(Config::parse_str(GOOD, Path::new("bridge.toml")).is_ok());
        let cases: &[(&str, &str, &str)] = &[
            (
                "root = ",
                "rot = ",
                "ws/bridge.toml:4:1: `workspace.rot`: unknown field `rot`",
            ),
            ("[worker]", "[worker", "ws/bridge.toml:8:8: `worker`: "),
            (
                "id = \"ws-771b66c4f14a873a231db9d9\"",
                "id = 5",
                "ws/bridge.toml:3:6: `workspace.id`: invalid type: integer `5`",
            ),
            (
                "lease = \"60s\"",
                "lease = 60",
                "ws/bridge.toml:9:9: `worker.lease`: invalid type",
            ),
            (
                "lease = \"60s\"",
                "lease = \"forever\"",
                "ws/bridge.toml:9:1: `worker.lease`: `forever` is not a duration",
            ),
            (
                "lease = \"60s\"",
                "lease = \"1000000000y\"",
                "ws/bridge.toml:9:1: `worker.lease`: `1000000000y` must be between 1s and 7days",
            ),
            (
                "lease = \"60s\"",
                "lease = \"0s\"",
                "ws/bridge.toml:9:1: `worker.lease`: `0s` must be between",
            ),
            (
                "[store]",
                "[stor]",
                "ws/bridge.toml:6:2: `stor`: unknown field `stor`",
            ),
            (
                "mf5a6ee7bbb99c11ec7b743a2",
                "nope",
                "ws/bridge.toml:4:1: `workspace.root`: `nope` is not a member id",
            ),
            (
                "\n[store]",
                "\n[store]\nremote = \"dir:/x\"\nremote = \"dir:/y\"",
                "ws/bridge.toml:8:1: `store.remote`: duplicate key",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            let (error, hint) = refusal(&text);
            assert!(error.starts_with(want), "{to}: {error}");
            assert!(!error.contains('\n'), "one line: {error:?}");
            assert!(
                hint.starts_with("fix that line of bridge.toml") && !hint.contains("bridge init"),
                "{hint}"
            );
        }
        let (error, _) = refusal("");
        assert!(
            error.starts_with("ws/bridge.toml:1:1: missing field `workspace`"),
            "{error}"
        );
        let (error, _) = refusal("x");
        assert!(error.starts_with("ws/bridge.toml:1:"), "{error}");
    }

    // Issue 13, item 2: `[worker] run-tasks-from` is read with the
    // workspace file, and a wrong entry names its line and says what to
    // write; an unknown name is not an error here (the roster may not be
    // synced yet: the worker warns about it).
    #[test]
    fn issue13_run_tasks_from_is_checked_with_the_file() {
        use crate::run_policy::RunFrom;
        let with = |list: &str| {
            GOOD.replacen(
                "lease = \"60s\"",
                &format!("lease = \"60s\"\nrun-tasks-from = {list}"),
                1,
            )
        };
        let c = Config::parse_str(
            &with(r#"["self", "admins", "bob-laptop"]"#),
            Path::new("bridge.toml"),
        )
        .unwrap_or_else(|e| panic!("a good list: {}", e.error));
        assert_eq!(
            c.run_tasks_from(),
            Some(vec![
                RunFrom::Myself,
                RunFrom::Admins,
                RunFrom::Named("bob-laptop".into())
            ])
        );
        let unset = Config::parse_str(GOOD, Path::new("bridge.toml"))
            .unwrap_or_else(|e| panic!("{}", e.error));
        assert_eq!(unset.run_tasks_from(), None);
        for (list, want) in [
            (
                r#"["self", "admin"]"#,
                "ws/bridge.toml:10:1: `worker.run-tasks-from`: `admin` is not an entry; did you mean \"admins\"?",
            ),
            (
                r#"["self,admins"]"#,
                "ws/bridge.toml:10:1: `worker.run-tasks-from`: `self,admins` holds a comma",
            ),
            (
                r#"[""]"#,
                "ws/bridge.toml:10:1: `worker.run-tasks-from`: an entry is empty",
            ),
            (
                r#""members""#,
                "ws/bridge.toml:10:18: `worker.run-tasks-from`: invalid type: string",
            ),
        ] {
            let (error, hint) = refusal(&with(list));
            assert!(error.starts_with(want), "{list}: {error}");
            assert!(hint.starts_with("fix that line of bridge.toml"), "{hint}");
        }
    }

    fn config(store: &str) -> Config {
        let text = format!(
            "[workspace]\nid = \"w\"\nroot = \"mf5a6ee7bbb99c11ec7b743a2\"\n\n[store]\n{store}\n"
        );
        match Config::parse_str(&text, Path::new("bridge.toml")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn secs(c: &Config, env: Option<&str>) -> Result<u64, String> {
        c.stall_timeout_with(env.map(str::to_owned))
            .map(|d| d.as_secs())
            .map_err(|e| format!("{}", e.error))
    }

    #[test]
    fn the_stall_timeout_comes_from_the_environment_then_the_file() {
        assert_eq!(secs(&config(""), None), Ok(30));
        let two = config("stall-timeout = \"2s\"");
        assert_eq!(secs(&two, None), Ok(2));
        assert_eq!(secs(&two, Some("1m")), Ok(60));
        assert_eq!(secs(&two, Some(" ")), Ok(2));
        let err = secs(&two, Some("soon")).unwrap_err();
        assert!(err.contains("BRIDGE_STALL_TIMEOUT"), "{err}");
        let err = secs(&config("stall-timeout = \"500ms\""), None).unwrap_err();
        assert!(err.contains("at least 1s"), "{err}");
        let err = secs(&config("stall-timeout = \"later\""), None).unwrap_err();
        assert!(err.contains("store.stall-timeout"), "{err}");
    }
}
