//! `.bridge/config.toml`: this device's own settings for a workspace (what
//! it lends, and how confined), never synced, and how they combine with the
//! shared `bridge.toml` into a [`WorkerPolicy`].

use std::path::Path;

use serde::Deserialize;

use super::STATE_DIR;
use super::config::{
    ConfigError, check_policy_keys, config_error, field_at, line_and_column, locate,
};

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
    /// `[notify]`: this device's own hooks, which win over `bridge.toml`'s
    /// (a person's ntfy topic or mail address is theirs, not the team's).
    #[serde(default)]
    pub notify: super::config::NotifySection,
}

/// `[worker]` in [`DeviceConfig`]: the settings of [`WorkerSection`](super::WorkerSection) that
/// decide what this device lends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeviceWorker {
    /// As [`WorkerSection::run_tasks_from`](super::WorkerSection::run_tasks_from).
    #[serde(default)]
    pub run_tasks_from: Option<Vec<String>>,
    /// As [`WorkerSection::sandbox`](super::WorkerSection::sandbox).
    #[serde(default)]
    pub sandbox: Option<String>,
    /// As [`WorkerSection::allow_read`](super::WorkerSection::allow_read).
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

/// Reads `.bridge/config.toml` in `root`, if there is one.
pub(super) fn read_device_config(root: &Path) -> Result<DeviceConfig, ConfigError> {
    let path = root.join(STATE_DIR).join(DEVICE_CONFIG_FILE);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(DeviceConfig::default());
    }
    let text = crate::files::read_text(&path, crate::files::CONFIG_MAX).map_err(|source| {
        ConfigError::ReadDevice {
            path: path.clone(),
            source,
        }
    })?;
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
