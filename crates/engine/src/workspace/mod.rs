//! The workspace on this device: `bridge.toml` ([`config`]), this device's
//! own settings ([`device`]), the local replica under `.bridge/store`, and a
//! [`Session`] ([`session`]) that holds the loaded documents (`load`) and
//! the merged [`View`](bridge_model::View) while a command runs.
//!
//! Every write goes through [`Session::change`] then [`Session::flush`]: the
//! change is made in memory with this process's own actor id, and a flush
//! writes the new changes of each touched document as one chunk file (a group
//! commit). That is the one place where files are written, so the later
//! encryption layer wraps exactly here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bridge_crypto::MemberId;
use bridge_model::Millis;
use bridge_store::Replica;

use crate::keys;
use crate::settings::Settings;
use crate::vault::Vault;

pub mod config;
pub mod device;
mod load;
pub mod session;

pub use config::{
    Config, ConfigError, GitHubSection, NotifySection, STALL_TIMEOUT_ENV, StoreSection,
    WorkerSection, WorkspaceSection,
};
use device::read_device_config;
pub use device::{DEVICE_CONFIG_FILE, DeviceConfig, DeviceWorker, WorkerPolicy};
pub use session::{LoadError, LoadPlan, Session, WriteError};

/// The name of the workspace file.
pub const CONFIG_FILE: &str = "bridge.toml";
/// The folder, next to `bridge.toml`, holding this device's replica.
pub const STATE_DIR: &str = ".bridge";

/// Why a workspace cannot be found, opened or created. The hints are the
/// command line's (`bridge/src/hints/config.rs`).
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// No `bridge.toml` at or above the current folder.
    #[error("no {CONFIG_FILE} in {} or any folder above it", cwd.display())]
    NotFound {
        /// The current folder.
        cwd: PathBuf,
    },
    /// The current folder cannot be read.
    #[error("cannot read the current folder")]
    CurrentDir(#[source] std::io::Error),
    /// `bridge.toml` cannot be read.
    #[error("cannot read {}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `bridge.toml` or `.bridge/config.toml` holds a wrong setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local replica cannot be opened.
    #[error("cannot open the replica in {}", path.display())]
    OpenReplica {
        /// `.bridge/store`.
        path: PathBuf,
        /// Why.
        #[source]
        source: bridge_store::OpenError,
    },
    /// The local replica cannot be created.
    #[error("cannot create the replica in {}", path.display())]
    CreateReplica {
        /// `.bridge/store`.
        path: PathBuf,
        /// Why.
        #[source]
        source: bridge_store::InitError,
    },
    /// The replica belongs to another workspace than `bridge.toml` says.
    #[error(
        "the replica in {} belongs to workspace {found}, but `workspace.id` in {} says {configured}",
        store.display(),
        config.display()
    )]
    OtherWorkspace {
        /// `.bridge/store`.
        store: PathBuf,
        /// The replica's workspace id.
        found: String,
        /// `bridge.toml`.
        config: PathBuf,
        /// The id `bridge.toml` gives.
        configured: String,
    },
    /// A folder cannot be created.
    #[error("cannot create {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `bridge.toml` exists already (`bridge init`).
    #[error("{} already exists", path.display())]
    ConfigExists {
        /// The file.
        path: PathBuf,
    },
    /// The configuration cannot be written as TOML.
    #[error("cannot encode bridge.toml")]
    Encode(#[source] toml::ser::Error),
    /// The OS random number generator failed.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// The OS random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the OS random number generator failed: {0}")]
pub struct RandomError(pub getrandom::Error);

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
    /// The settings from this device's surroundings (resolved once by the
    /// program: see [`crate::settings`]), for everything that works in
    /// this workspace.
    pub settings: Arc<Settings>,
}

impl Workspace {
    /// Finds the workspace: `dir` if given, else the nearest folder at or
    /// above the current one that holds `bridge.toml`.
    pub fn find(dir: Option<&Path>, settings: Arc<Settings>) -> Result<Workspace, WorkspaceError> {
        let root = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                let cwd = std::env::current_dir().map_err(WorkspaceError::CurrentDir)?;
                cwd.ancestors()
                    .find(|d| d.join(CONFIG_FILE).is_file())
                    .map(Path::to_path_buf)
                    .ok_or_else(|| WorkspaceError::NotFound { cwd: cwd.clone() })?
            }
        };
        Workspace::open(&root, settings)
    }

    /// Opens the workspace whose `bridge.toml` is in `root`.
    pub fn open(root: &Path, settings: Arc<Settings>) -> Result<Workspace, WorkspaceError> {
        let path = root.join(CONFIG_FILE);
        let text = crate::files::read_text(&path, crate::files::CONFIG_MAX).map_err(|source| {
            WorkspaceError::ReadConfig {
                path: path.clone(),
                source,
            }
        })?;
        let config = Config::parse_str(&text, &path)?;
        Workspace::with_config(root, config, settings)
    }

    /// A workspace whose configuration is in hand (not yet, or not only, in
    /// `bridge.toml`); creates the local replica on first use.
    pub fn with_config(
        root: &Path,
        config: Config,
        settings: Arc<Settings>,
    ) -> Result<Workspace, WorkspaceError> {
        let path = root.join(CONFIG_FILE);
        let store = root.join(STATE_DIR).join("store");
        let replica = if store.exists() {
            Replica::open(&store).map_err(|source| WorkspaceError::OpenReplica {
                path: store.clone(),
                source,
            })?
        } else {
            // A fresh clone of a repository holding bridge.toml: make the
            // local replica on first use.
            create_state_dir(root)?;
            Replica::init(&store, &config.workspace.id).map_err(|source| {
                WorkspaceError::CreateReplica {
                    path: store.clone(),
                    source,
                }
            })?
        };
        // Checked here, where the file is read, so that a bad value is an
        // error naming it (opening a remote only reads it).
        config.stall_timeout(&settings)?;
        config.apply_s3(&mut bridge_store::s3::S3Options::default())?;
        if replica.workspace_id() != config.workspace.id {
            return Err(WorkspaceError::OtherWorkspace {
                store,
                found: replica.workspace_id().to_owned(),
                config: path,
                configured: config.workspace.id,
            });
        }
        let device = read_device_config(root)?;
        Ok(Workspace {
            root: root.to_path_buf(),
            config,
            replica,
            device,
            settings,
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

    /// The `[notify]` hooks as they apply to this device: `bridge.toml`'s,
    /// with `.bridge/config.toml`'s where it sets them.
    pub fn notify_hooks(&self) -> NotifySection {
        self.config.notify.overridden_by(&self.device.notify)
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
pub fn create_state_dir(root: &Path) -> Result<(), WorkspaceError> {
    let dir = root.join(STATE_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| WorkspaceError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "# bridge's local replica and scratch space\n*\n").map_err(
            |source| WorkspaceError::Write {
                path: ignore.clone(),
                source,
            },
        )?;
    }
    Ok(())
}

/// Writes `bridge.toml` (refusing to overwrite one).
pub fn write_config(root: &Path, config: &Config) -> Result<(), WorkspaceError> {
    let path = root.join(CONFIG_FILE);
    if path.exists() {
        return Err(WorkspaceError::ConfigExists { path });
    }
    let body = toml::to_string(config).map_err(WorkspaceError::Encode)?;
    let text = format!(
        "# bridge workspace: see `bridge --help`. Commit this file; .bridge/ is local.\n{body}"
    );
    std::fs::write(&path, text).map_err(|source| WorkspaceError::Write { path, source })?;
    Ok(())
}

/// A new random workspace id.
pub fn new_workspace_id() -> Result<String, RandomError> {
    Ok(format!("ws-{}", hex::encode(random_bytes::<12>()?)))
}

/// Random bytes from the OS.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(RandomError)?;
    Ok(b)
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> Millis {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis);
    now.saturating_add(test_clock_offset())
}

/// Debug builds only (the end-to-end tests): the offset
/// [`crate::clock::set_test_offset`] installed (`BRIDGE_TEST_CLOCK_OFFSET_MS`),
/// to play a device whose clock is wrong (issue 12, item 12). Release builds
/// have none.
#[cfg(debug_assertions)]
fn test_clock_offset() -> Millis {
    crate::clock::test_offset()
}

#[cfg(not(debug_assertions))]
fn test_clock_offset() -> Millis {
    0
}

/// Loads this device's identity and verifies the workspace's roster,
/// without loading any document.
pub fn open_vault(ws: &Workspace) -> Result<Vault, LoadError> {
    let identity = keys::load_identity(&ws.settings)?;
    let root: MemberId = ws
        .config
        .workspace
        .root
        .parse()
        .map_err(|_| LoadError::BadRoot)?;
    keys::check_pin(&ws.settings, &ws.config.workspace.id, &root)?;
    let (vault, warnings) = Vault::open(ws.replica.clone(), identity, &root)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    crate::freshness::check(ws, vault.roster())?;
    Ok(vault)
}
