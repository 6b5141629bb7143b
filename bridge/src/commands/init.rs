//! `bridge init`: create a workspace in the current folder.

use anyhow::Context;
use clap::Args;

use super::GlobalArgs;
use super::common::{SyncOutcome, sync_and_report, sync_remote};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::workspace::{self, Config, Session, StoreSection, Workspace, WorkspaceSection};

/// Create a workspace in the current folder
///
/// Writes bridge.toml (commit it if the folder is a git repository) and
/// creates the local replica in .bridge/. With --remote, the workspace shares
/// its tasks through that store: an empty folder becomes a new store, for
/// example on a USB stick, a Syncthing folder or a network share.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The shared store to sync with, e.g. dir:/mnt/usb/pool
    #[arg(long, value_name = "REMOTE")]
    pub remote: Option<String>,
}

pub fn run(g: &GlobalArgs, args: InitArgs) -> CliResult<u8> {
    let root = match &g.workspace {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current folder")?,
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    if let Some(spec) = &args.remote {
        bridge_store::parse_remote(spec, &root)
            .map_err(|e| CliError::hint(anyhow::anyhow!(e), "a remote looks like dir:PATH"))?;
    }
    let config = Config {
        workspace: WorkspaceSection {
            id: workspace::new_workspace_id()?,
        },
        store: StoreSection {
            remote: args.remote.clone(),
        },
        worker: Default::default(),
    };
    workspace::write_config(&root, &config)?;
    let mut session = Session::open(Workspace::open(&root)?)?;
    if !g.quiet {
        println!(
            "Created workspace {} in {}",
            config.workspace.id,
            root.display()
        );
    }
    if args.remote.is_some() {
        if let SyncOutcome::Offline(why) = sync_remote(&mut session, false)? {
            eprintln!("offline: {why}; the workspace works locally and syncs once it is reachable");
        } else if !g.quiet {
            println!(
                "Shared store: {}",
                args.remote.as_deref().unwrap_or_default()
            );
        }
    } else {
        sync_and_report(&mut session, g)?;
    }
    if !g.quiet {
        println!(
            "Next: `bridge submit tasks.yaml` (or `bridge submit -- CMD ARGS…`), then `bridge work`."
        );
    }
    Ok(EXIT_OK)
}
