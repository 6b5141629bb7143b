//! `bridge init`: create a workspace in the current folder.

use anyhow::Context;
use clap::Args;

use super::GlobalArgs;
use super::common::{SyncOutcome, sync_and_report, sync_remote};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::keys;
use crate::vault::Vault;
use crate::workspace::{
    self, Config, Session, StoreSection, Workspace, WorkspaceSection, device_name, now_ms,
};
use bridge_crypto::{Identity, Roster};

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
        super::common::open_remote(spec, &root)
            .map_err(|e| CliError::hint(anyhow::anyhow!(e), "a remote looks like dir:PATH"))?;
    }
    let identity = identity_or_new(g)?;
    let config = Config {
        workspace: WorkspaceSection {
            id: workspace::new_workspace_id()?,
            root: identity.member_id().to_string(),
        },
        store: StoreSection {
            remote: args.remote.clone(),
        },
        worker: Default::default(),
    };
    workspace::write_config(&root, &config)?;
    keys::check_pin(&config.workspace.id, identity.member_id())?;
    let ws = Workspace::open(&root)?;
    // The roster starts with this device as its only admin; its key is the
    // root every member pins.
    let (roster, genesis) =
        Roster::genesis(&identity, &device_name(), &config.workspace.id, now_ms())
            .map_err(|e| anyhow::anyhow!(e).context("cannot create the member roster"))?;
    let vault = Vault::new(ws.replica.clone(), identity, roster);
    vault.write_roster_file(&genesis)?;
    let mut session = Session::with_vault(ws, vault)?;
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

/// This device's identity, created (and said so) when it has none yet.
pub fn identity_or_new(g: &GlobalArgs) -> CliResult<Identity> {
    let path = keys::identity_path()?;
    if std::env::var_os(keys::IDENTITY_ENV).is_none() && !path.exists() {
        let identity = Identity::generate()
            .map_err(|e| anyhow::anyhow!(e).context("cannot create an identity"))?;
        let path = keys::save_identity(&identity, false)?;
        if !g.quiet {
            println!(
                "Created this device's identity in {} (keep it secret).",
                path.display()
            );
        }
        return Ok(identity);
    }
    keys::load_identity()
}
