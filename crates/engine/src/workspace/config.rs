//! `bridge.toml`, the workspace file every device shares: its sections,
//! how it is parsed and checked (one error naming the file, line, column and
//! field), and the settings resolved from it (durations, the policy).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bridge_crypto::MemberId;
use bridge_model::{Millis, Policy};
use serde::{Deserialize, Serialize};

use super::CONFIG_FILE;
use crate::budget::Budget;
use crate::settings::{BadValue, Settings};

/// A setting of `bridge.toml` (or of `.bridge/config.toml`) that cannot be
/// used. The hints are the command line's (`bridge/src/hints/config.rs`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A line of the file is wrong: TOML syntax, an unknown key, a value of
    /// the wrong type or out of range.
    #[error("{}:{line}:{column}: {}{message}", path.display(), field.as_deref().map(|f| format!("`{}`: ", crate::text::safe(f))).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field (`section.key`, or a section), when one is known.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// `.bridge/config.toml` exists but cannot be read.
    #[error("cannot read {}", path.display())]
    ReadDevice {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `BRIDGE_STALL_TIMEOUT` is not a duration.
    #[error("{STALL_TIMEOUT_ENV}={value:?} is not a duration")]
    StallTimeoutEnv {
        /// The variable's value.
        value: String,
        /// Why it does not parse.
        #[source]
        source: humantime::DurationError,
    },
    /// The stall timeout is under a second.
    #[error("the stall timeout must be at least 1s, not {timeout:?}")]
    StallTimeoutTooShort {
        /// The timeout given.
        timeout: Duration,
    },
    /// `[store] pushes-per-minute` or `reads-per-second` is negative or
    /// not a number.
    #[error("`{key} = {value}` in {CONFIG_FILE} is not a rate: write a number, 0 for no limit")]
    Rate {
        /// `section.key`.
        key: &'static str,
        /// The value.
        value: f64,
    },
    /// A duration setting (with its default applied) is not a duration.
    #[error("`{key} = \"{value}\"` in {CONFIG_FILE} is not a duration")]
    Duration {
        /// `section.key`.
        key: &'static str,
        /// The value.
        value: String,
        /// Why it does not parse.
        #[source]
        source: humantime::DurationError,
    },
}

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
    /// Commands to run when a batch finishes or a task fails for good
    /// (issue 17, item 7); `.bridge/config.toml`'s win key by key.
    #[serde(default, skip_serializing_if = "NotifySection::is_empty")]
    pub notify: NotifySection,
}

/// `[notify]`: shell commands (run with `sh -c`) this device runs when it
/// sees a batch finish or a task fail for good. They come only from this
/// device's own files (`bridge.toml`, `.bridge/config.toml`), never from
/// the store: what a task says reaches them as environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotifySection {
    /// Run once per batch when its last task becomes final (done, failed,
    /// cancelled or skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_batch_done: Option<String>,
    /// Run once per task when it fails for good (no attempt left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_task_failed: Option<String>,
}

impl NotifySection {
    /// Whether no hook is set.
    pub fn is_empty(&self) -> bool {
        self.on_batch_done.is_none() && self.on_task_failed.is_none()
    }

    /// `self`'s hooks, with `over`'s where it sets them.
    pub fn overridden_by(&self, over: &NotifySection) -> NotifySection {
        NotifySection {
            on_batch_done: over
                .on_batch_done
                .clone()
                .or_else(|| self.on_batch_done.clone()),
            on_task_failed: over
                .on_task_failed
                .clone()
                .or_else(|| self.on_task_failed.clone()),
        }
    }
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
    /// Pushes per minute to the remote's repository, for every runner and
    /// device together (see [`crate::budget`]): 6 by default for a `git:`
    /// remote on a host (GitHub's recommendation for one repository); 0 for
    /// no limit. A folder, or a repository on this machine's disk, has no
    /// limit unless one is set.
    #[serde(
        default,
        rename = "pushes-per-minute",
        skip_serializing_if = "Option::is_none"
    )]
    pub pushes_per_minute: Option<f64>,
    /// Git reads per second from the remote's repository, for everyone
    /// together: 15 by default for a `git:` remote on a host (GitHub's
    /// recommendation); 0 for no limit.
    #[serde(
        default,
        rename = "reads-per-second",
        skip_serializing_if = "Option::is_none"
    )]
    pub reads_per_second: Option<f64>,
    /// The largest file a `git:` remote is given, in bytes: a number, or
    /// one with a unit (`"100MB"`, `"1MiB"`). 100 MB by default, under
    /// GitHub's refusal of files over 100 MiB (issue 15); a worker fails an
    /// attempt whose output is larger. See [`Config::max_object`].
    #[serde(
        default,
        rename = "max-object",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_byte_size"
    )]
    pub max_object: Option<u64>,
    /// Where blobs (task inputs, outputs, logs) are kept when not with the
    /// documents (issue 19, item 2): an object store (`s3://BUCKET/PREFIX`)
    /// or a folder (`dir:PATH`), beside a `git:` remote whose repository
    /// then holds only the small documents. Outputs are then limited by the
    /// store's blob limit (1 GiB), not by `max-object`. Every member and
    /// runner of the workspace needs the same setting (and access to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobs: Option<String>,
    /// `[store.s3]`: where an `s3:` remote is and how hard it is tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Section>,
}

/// `[store.s3]`: the settings of an `s3:` remote that are not secrets
/// (credentials come from the environment or the AWS profile files, never
/// from bridge.toml). The environment (`AWS_ENDPOINT_URL`, `AWS_REGION`)
/// wins over them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// The endpoint of an S3-compatible store, e.g.
    /// `https://ACCOUNT.r2.cloudflarestorage.com`; none: AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region (`auto` for R2); none: the profile's, else `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style requests (`ENDPOINT/BUCKET/KEY`); none: path-style with
    /// an endpoint, virtual-hosted on AWS.
    #[serde(
        default,
        rename = "path-style",
        skip_serializing_if = "Option::is_none"
    )]
    pub path_style: Option<bool>,
    /// How many times a failed request is retried (4 by default).
    #[serde(
        default,
        rename = "max-retries",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_retries: Option<usize>,
    /// How long after its first attempt a request is retried at most
    /// (`"60s"` by default).
    #[serde(
        default,
        rename = "retry-timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_timeout: Option<String>,
}

/// `[store] blobs`: a folder or an object store, beside a remote.
pub fn check_blobs(has_remote: bool, blobs: &str) -> Result<(), String> {
    let shown = bridge_store::redact_spec(&crate::text::safe(blobs));
    if !has_remote {
        return Err(format!(
            "`{shown}` is set but [store] remote is not: blobs are kept apart from a remote's documents; set remote too, or remove blobs"
        ));
    }
    match blobs.split_once(':') {
        Some(("s3" | "dir", rest)) if !rest.is_empty() => Ok(()),
        Some(("git", _)) => Err(format!(
            "`{shown}` is a git repository: blobs are kept apart from the repository's limits, in an object store (s3://BUCKET/PREFIX) or a folder (dir:PATH)"
        )),
        _ => Err(format!(
            "`{shown}` is not a blob store: write s3://BUCKET/PREFIX or dir:PATH"
        )),
    }
}

/// `[store] max-object` as written: a number of bytes or a string with a
/// unit, checked where the file is parsed so that an error names its line.
fn de_byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    let bytes = match Raw::deserialize(d)? {
        Raw::Bytes(n) => n,
        Raw::Text(text) => parse_byte_size(&text).map_err(serde::de::Error::custom)?,
    };
    if bytes == 0 {
        return Err(serde::de::Error::custom("must be at least 1 byte"));
    }
    Ok(Some(bytes))
}

/// `"100MB"` → 100,000,000: digits, then an optional unit (B, KB, MB, GB
/// in powers of 1000; KiB, MiB, GiB in powers of 1024; case ignored).
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (write e.g. 100MB or 1048576)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (B, KB, MB, GB, KiB, MiB or GiB)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
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
    /// Under a push budget: how long a runner whose shard is done waits
    /// for the other runners' results before it takes over the shards that
    /// show no sign of a runner (e.g. "2m"); unset, a quarter of the time
    /// its own shard took, between 5 s and 5 min.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steal_grace: Option<String>,
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
    pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
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
    fn check(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
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
        if let Some(blobs) = &self.store.blobs
            && let Err(message) = check_blobs(self.store.remote.is_some(), blobs)
        {
            return fail("store", "blobs", message);
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
    pub fn stall_timeout(&self, settings: &Settings) -> Result<Duration, ConfigError> {
        self.stall_timeout_with(settings.stall_timeout.clone())
    }

    /// [`stall_timeout`](Self::stall_timeout) with the environment's value
    /// (as [`Settings::stall_timeout`] holds it) given.
    fn stall_timeout_with(
        &self,
        env: Option<Result<Duration, BadValue<humantime::DurationError>>>,
    ) -> Result<Duration, ConfigError> {
        let timeout = match env {
            Some(Ok(timeout)) => timeout,
            Some(Err(bad)) => {
                return Err(ConfigError::StallTimeoutEnv {
                    value: bad.value,
                    source: bad.reason,
                });
            }
            None => parse_duration_setting(
                "store.stall-timeout",
                self.store.stall_timeout.as_deref(),
                "30s",
            )?,
        };
        if timeout < Duration::from_secs(1) {
            return Err(ConfigError::StallTimeoutTooShort { timeout });
        }
        Ok(timeout)
    }

    /// `[store.s3]` applied to `opts` (see [`S3Section`]); an unset key
    /// keeps the value `opts` has. Fails on a retry timeout that is not a
    /// duration.
    pub fn apply_s3(&self, opts: &mut bridge_store::s3::S3Options) -> Result<(), ConfigError> {
        let Some(s3) = &self.store.s3 else {
            return Ok(());
        };
        opts.endpoint = s3.endpoint.clone().or(opts.endpoint.take());
        opts.region = s3.region.clone().or(opts.region.take());
        opts.path_style = s3.path_style.or(opts.path_style);
        if let Some(n) = s3.max_retries {
            opts.max_retries = n;
        }
        if let Some(t) = s3.retry_timeout.as_deref() {
            opts.retry_timeout = parse_duration_setting("store.s3.retry-timeout", Some(t), "60s")?;
        }
        Ok(())
    }

    /// The push and read budget of the repository behind `remote` (a
    /// remote spec): the `[store]` settings, else GitHub's recommendations
    /// for a `git:` remote on a host (a URL, not a repository on this
    /// machine's disk); `None` when there is no limit (0, or a folder or
    /// local repository with nothing set). A budget with only one limit set
    /// takes the default (or no limit) for the other.
    pub fn budget(&self, remote: &str) -> Result<Option<Budget>, ConfigError> {
        let git = remote
            .strip_prefix("git:")
            .is_some_and(bridge_store::git::is_hosted);
        let rate = |key: &'static str, value: Option<f64>, default: f64| match value {
            Some(v) if !v.is_finite() || v < 0.0 => Err(ConfigError::Rate { key, value: v }),
            Some(0.0) => Ok(f64::INFINITY),
            Some(v) => Ok(v),
            None if git => Ok(default),
            None => Ok(f64::INFINITY),
        };
        let budget = Budget {
            pushes_per_minute: rate(
                "store.pushes-per-minute",
                self.store.pushes_per_minute,
                Budget::GITHUB.pushes_per_minute,
            )?,
            reads_per_second: rate(
                "store.reads-per-second",
                self.store.reads_per_second,
                Budget::GITHUB.reads_per_second,
            )?,
        };
        Ok(budget.pushes_per_minute.is_finite().then_some(budget))
    }

    /// `[store] blobs`, if set.
    pub fn blobs(&self) -> Option<&str> {
        self.store.blobs.as_deref()
    }

    /// The largest file a `git:` remote is given (`[store] max-object`,
    /// else [`bridge_store::git::DEFAULT_MAX_OBJECT`], 100 MB).
    pub fn max_object(&self) -> u64 {
        self.store
            .max_object
            .unwrap_or(bridge_store::git::DEFAULT_MAX_OBJECT)
    }

    /// `[worker] steal-grace`, if set.
    pub fn steal_grace(&self) -> Result<Option<Duration>, ConfigError> {
        match self.worker.steal_grace.as_deref() {
            None => Ok(None),
            Some(v) => parse_duration_setting("worker.steal-grace", Some(v), "0s").map(Some),
        }
    }

    /// The lease duration.
    pub fn lease(&self) -> Result<Duration, ConfigError> {
        parse_duration_setting("worker.lease", self.worker.lease.as_deref(), "60s")
    }

    /// How often a long-lived worker reloads (see [`Session::reload`](super::Session::reload)).
    pub fn reload_every(&self) -> Result<Duration, ConfigError> {
        parse_duration_setting(
            "worker.reload-every",
            self.worker.reload_every.as_deref(),
            "10m",
        )
    }

    /// The derivation policy every replica of this workspace shares.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
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

/// The checks of the settings that decide what a device lends, wherever
/// they are written: the key and the message of the first that fails.
pub(super) fn check_policy_keys(
    run_tasks_from: Option<&[String]>,
    sandbox: Option<&str>,
    allow_read: &[String],
) -> Result<(), (&'static str, String)> {
    if let Some(mode) = sandbox
        && let Err(e) = mode.parse::<crate::sandbox_mode::SandboxMode>()
    {
        return Err(("sandbox", e.to_string()));
    }
    for (i, p) in allow_read.iter().enumerate() {
        if let Err(e) = bridge_model::limits::check_allow_read(|| format!("allow-read[{i}]"), p) {
            return Err(("allow-read", e.to_string()));
        }
    }
    for entry in run_tasks_from.into_iter().flatten() {
        if let Err(e) = crate::run_policy::RunFrom::parse(entry) {
            return Err(("run-tasks-from", e.to_string()));
        }
    }
    Ok(())
}

pub(super) fn config_error(
    path: &Path,
    line: usize,
    column: usize,
    field: Option<String>,
    message: &str,
) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        field,
        message: message.to_owned(),
    }
}

/// The 1-based line and column of byte `offset` in `text`.
pub(super) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The field a line of a TOML file is about: `section.key` for a `key = …`
/// line (the section being the last `[header]` above it), `section` for a
/// header line.
pub(super) fn field_at(text: &str, line: usize) -> Option<String> {
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
pub(super) fn locate(text: &str, section: &str, key: &str) -> Option<(usize, usize)> {
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

fn parse_duration_setting(
    key: &'static str,
    value: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(default);
    humantime::parse_duration(v).map_err(|source| ConfigError::Duration {
        key,
        value: v.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# bridge workspace\n[workspace]\nid = \"ws-771b66c4f14a873a231db9d9\"\nroot = \"mf5a6ee7bbb99c11ec7b743a2\"\n\n[store]\n\n[worker]\nlease = \"60s\"\n";

    /// The error `bridge.toml` text gives, and whether it is the one
    /// kind that names a line (whose hint, in the binary, is to fix it).
    fn refusal(text: &str) -> (String, String) {
        match Config::parse_str(text, Path::new("ws/bridge.toml")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e @ ConfigError::Invalid { .. }) => {
                (e.to_string(), "fix that line of bridge.toml".into())
            }
            Err(e) => (e.to_string(), String::new()),
        }
    }

    #[test]
    fn issue15_a_hosted_git_remote_has_githubs_budget_unless_set() {
        let with = |line: &str| {
            let text = GOOD.replace("[store]\n", &format!("[store]\n{line}\n"));
            Config::parse_str(&text, Path::new("bridge.toml")).unwrap()
        };
        let plain = with("");
        for hosted in [
            "git:https://github.com/o/r.git",
            "git:git@github.com:o/r.git",
            "git:git://127.0.0.1:9418/r.git",
        ] {
            assert_eq!(
                plain.budget(hosted).unwrap(),
                Some(Budget::GITHUB),
                "{hosted}"
            );
        }
        // A repository on this machine's disk, or a folder: no host, no limit.
        for local in [
            "git:/srv/r.git",
            "git:../r.git",
            "git:file:///srv/r.git",
            "dir:/mnt/p",
        ] {
            assert_eq!(plain.budget(local).unwrap(), None, "{local}");
        }
        // Set: it holds everywhere; 0 is no limit.
        let set = with("pushes-per-minute = 2\nreads-per-second = 5");
        let budget = Budget {
            pushes_per_minute: 2.0,
            reads_per_second: 5.0,
        };
        assert_eq!(set.budget("dir:/mnt/p").unwrap(), Some(budget));
        let off = with("pushes-per-minute = 0");
        assert_eq!(off.budget("git:https://github.com/o/r.git").unwrap(), None);
        let bad = with("pushes-per-minute = -1");
        let e = bad.budget("git:https://github.com/o/r.git").unwrap_err();
        assert!(e.to_string().contains("pushes-per-minute = -1"), "{e}");
    }

    #[test]
    fn issue15_max_object_takes_bytes_or_a_unit_and_defaults_to_100mb() {
        let with = |line: &str| GOOD.replace("[store]\n", &format!("[store]\n{line}\n"));
        let config = Config::parse_str(GOOD, Path::new("bridge.toml")).unwrap();
        assert_eq!(config.max_object(), 100_000_000);
        for (line, bytes) in [
            ("max-object = 1048576", 1 << 20),
            ("max-object = \"1MB\"", 1_000_000),
            ("max-object = \"1 MiB\"", 1 << 20),
            ("max-object = \"2gb\"", 2_000_000_000),
            ("max-object = \"512\"", 512),
        ] {
            let config = Config::parse_str(&with(line), Path::new("bridge.toml")).unwrap();
            assert_eq!(config.max_object(), bytes, "{line}");
        }
        for (line, message) in [
            ("max-object = \"1 TB\"", "unknown unit \"tb\""),
            ("max-object = \"lots\"", "is not a size"),
            ("max-object = 0", "at least 1 byte"),
            ("max-object = \"99999999999GB\"", "too large"),
        ] {
            let (error, hint) = refusal(&with(line));
            assert!(error.contains("`store.max-object`"), "{error}");
            assert!(error.contains(message), "{line}: {error}");
            assert_eq!(hint, "fix that line of bridge.toml");
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
        .unwrap_or_else(|e| panic!("a good list: {e}"));
        assert_eq!(
            c.run_tasks_from(),
            Some(vec![
                RunFrom::Myself,
                RunFrom::Admins,
                RunFrom::Named("bob-laptop".into())
            ])
        );
        let unset =
            Config::parse_str(GOOD, Path::new("bridge.toml")).unwrap_or_else(|e| panic!("{e}"));
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

    /// `BRIDGE_STALL_TIMEOUT` as the settings resolve it.
    pub(super) fn env(
        value: Option<&str>,
    ) -> Option<Result<Duration, BadValue<humantime::DurationError>>> {
        crate::settings::Settings::from_vars(|k| {
            value
                .filter(|_| k == STALL_TIMEOUT_ENV)
                .map(std::ffi::OsString::from)
        })
        .stall_timeout
    }

    fn secs(c: &Config, value: Option<&str>) -> Result<u64, String> {
        c.stall_timeout_with(env(value))
            .map(|d| d.as_secs())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn issue19_blobs_is_an_object_store_or_a_folder_beside_a_remote() {
        let c = config("remote = \"git:/srv/r.git\"\nblobs = \"s3://bucket/pool\"");
        assert_eq!(c.blobs(), Some("s3://bucket/pool"));
        assert_eq!(
            config("remote = \"dir:/p\"\nblobs = \"dir:/b\"").blobs(),
            Some("dir:/b")
        );
        assert_eq!(config("").blobs(), None);
        for (store, said) in [
            ("blobs = \"s3://b/p\"", "remote is not"),
            (
                "remote = \"dir:/p\"\nblobs = \"git:/b.git\"",
                "is a git repository",
            ),
            (
                "remote = \"dir:/p\"\nblobs = \"ftp://b\"",
                "s3://BUCKET/PREFIX or dir:PATH",
            ),
            ("remote = \"dir:/p\"\nblobs = \"s3:\"", "not a blob store"),
        ] {
            let text = format!(
                "[workspace]\nid = \"w\"\nroot = \"mf5a6ee7bbb99c11ec7b743a2\"\n\n[store]\n{store}\n"
            );
            let err = Config::parse_str(&text, Path::new("bridge.toml"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains("store.blobs") && err.contains(said),
                "{store}: {err}"
            );
        }
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

#[cfg(test)]
mod error_tests {
    use super::*;

    /// `(line, column, field)` of the error `text` gives.
    fn located(text: &str) -> (usize, usize, Option<String>) {
        match Config::parse_str(text, Path::new("bridge.toml")) {
            Err(ConfigError::Invalid {
                line,
                column,
                field,
                ..
            }) => (line, column, field),
            other => panic!("not a located refusal: {other:?}"),
        }
    }

    const BASE: &str = "[workspace]\nid = \"w\"\nroot = \"mf5a6ee7bbb99c11ec7b743a2\"\n[worker]\n";

    #[test]
    fn refusals_are_typed_with_line_column_and_field() {
        assert_eq!(
            located(&format!("{BASE}lease = \"soon\"\n")),
            (5, 1, Some("worker.lease".into()))
        );
        assert_eq!(
            located(&format!("{BASE}  clock-skew = 5\n")),
            (5, 16, Some("worker.clock-skew".into()))
        );
        assert_eq!(
            located(&format!("{BASE}sandbox = \"maybe\"\n")),
            (5, 1, Some("worker.sandbox".into()))
        );
        assert_eq!(
            located("[workspace]\nid = \"\"\nroot = \"x\"\n").2,
            Some("workspace.id".into())
        );
    }

    #[test]
    fn a_bad_duration_setting_is_its_own_variant() {
        let text = format!("{BASE}lease = \"60s\"\n");
        let Ok(config) = Config::parse_str(&text, Path::new("bridge.toml")) else {
            panic!("a good file");
        };
        assert!(matches!(
            config.stall_timeout_with(tests::env(Some("never"))),
            Err(ConfigError::StallTimeoutEnv { .. })
        ));
        assert!(matches!(
            config.stall_timeout_with(tests::env(Some("10ms"))),
            Err(ConfigError::StallTimeoutTooShort { .. })
        ));
        let mut bad = config.clone();
        bad.worker.reload_every = Some("often".into());
        assert!(matches!(
            bad.reload_every(),
            Err(ConfigError::Duration {
                key: "worker.reload-every",
                ..
            })
        ));
    }

    // Issue 17, item 7: `[notify]` hooks are read, a device's own win key
    // by key, and a misspelt key is refused with its line.
    #[test]
    fn notify_hooks_parse_and_the_devices_own_win() {
        const GOOD: &str = "[workspace]\nid = \"w\"\nroot = \"mf5a6ee7bbb99c11ec7b743a2\"\n";
        let text = format!(
            "{GOOD}\n[notify]\non-batch-done = \"echo done\"\non-task-failed = \"echo failed\"\n"
        );
        let c = Config::parse_str(&text, Path::new("bridge.toml")).unwrap();
        assert_eq!(c.notify.on_batch_done.as_deref(), Some("echo done"));
        let own = NotifySection {
            on_batch_done: Some("mine".into()),
            on_task_failed: None,
        };
        let merged = c.notify.overridden_by(&own);
        assert_eq!(merged.on_batch_done.as_deref(), Some("mine"));
        assert_eq!(merged.on_task_failed.as_deref(), Some("echo failed"));
        let bad = format!("{GOOD}\n[notify]\non-batch-end = \"x\"\n");
        let e = Config::parse_str(&bad, Path::new("bridge.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bridge.toml:6:") && e.contains("on-batch-end"),
            "{e}"
        );
        // Unset, the table is not written back.
        let plain = Config::parse_str(GOOD, Path::new("bridge.toml")).unwrap();
        assert!(!toml::to_string(&plain).unwrap().contains("notify"));
    }
}
