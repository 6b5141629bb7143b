//! `bridge join`: make the current folder a workspace of an existing store.

use anyhow::{Context, anyhow};
use clap::Args;

use super::GlobalArgs;
use crate::error::{CliError, CliResult, EXIT_OFFLINE, EXIT_OK};
use crate::workspace::{
    self, Config, STATE_DIR, Session, StoreSection, Workspace, WorkspaceSection,
};

/// Join an existing shared store from this device
///
/// Reads the store's workspace id, writes bridge.toml here with the store as
/// its remote, and pulls every task and result into a new local replica.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The shared store, e.g. dir:/mnt/usb/pool
    #[arg(value_name = "REMOTE")]
    pub remote: String,
}

pub fn run(g: &GlobalArgs, args: JoinArgs) -> CliResult<u8> {
    let root = match &g.workspace {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current folder")?,
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let remote = bridge_store::parse_remote(&args.remote, &root)
        .map_err(|e| CliError::hint(anyhow!(e), "a remote looks like dir:PATH"))?;
    let state_dir = root.join(STATE_DIR);
    let created_state = !state_dir.exists();
    workspace::create_state_dir(&root)?;
    let replica_root = state_dir.join("store");
    let joined = bridge_store::join(&replica_root, remote.as_ref());
    if joined.is_err() && created_state {
        // Leave the folder as it was: a half-made replica would only confuse
        // the next `bridge join`.
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    let replica = match joined {
        Ok(r) => r,
        Err(bridge_store::SyncError::Remote(e @ bridge_store::RemoteError::Unreachable { .. })) => {
            return Err(CliError::hint(
                anyhow!(e),
                "mount or create the store folder, then run `bridge join` again",
            )
            .with_code(EXIT_OFFLINE));
        }
        Err(e) => {
            return Err(CliError::hint(
                anyhow!(e).context(format!("cannot join {}", args.remote)),
                "point at a folder made by `bridge init --remote dir:PATH` on another device",
            ));
        }
    };
    let config = Config {
        workspace: WorkspaceSection {
            id: replica.workspace_id().to_owned(),
        },
        store: StoreSection {
            remote: Some(args.remote.clone()),
        },
        worker: Default::default(),
    };
    workspace::write_config(&root, &config)?;
    let session = Session::open(Workspace::open(&root)?)?;
    if !g.quiet {
        println!(
            "Joined workspace {} through {}: {} tasks known.",
            config.workspace.id,
            args.remote,
            session.view().len()
        );
    }
    Ok(EXIT_OK)
}
