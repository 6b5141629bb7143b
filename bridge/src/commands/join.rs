//! `bridge join`: make the current folder a workspace of an existing store.

use anyhow::{Context, anyhow};
use clap::Args;

use super::GlobalArgs;
use crate::error::{CliError, CliResult, EXIT_MISCONFIGURED, EXIT_OFFLINE, EXIT_OK};
use crate::keys;
use crate::vault::Vault;
use crate::workspace::{
    self, Config, STATE_DIR, Session, StoreSection, Workspace, WorkspaceSection,
};
use bridge_crypto::MemberId;
use bridge_store::{RemoteError, SyncError};

/// Join an existing shared store from this device
///
/// Reads the store's workspace id, writes bridge.toml here with the store as
/// its remote, and pulls every task and result into a new local replica.
///
/// An admin must have added this device first: run `bridge keygen` here
/// (`bridge whoami` if this device has an identity already) and give the
/// public key it prints to an admin, who runs `bridge members add NAME
/// PUBKEY` and syncs.
/// --root pins the key the roster must be rooted in; a store that shows
/// another root is refused.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The shared store, e.g. dir:/mnt/usb/pool, git:URL or s3://BUCKET/PREFIX
    #[arg(value_name = "REMOTE")]
    pub remote: String,
    /// The workspace's root key fingerprint (printed by `bridge members add`)
    #[arg(long, value_name = "MEMBER-ID")]
    pub root: String,
    /// The newest roster epoch the admin made, EPOCH:HASH (printed by
    /// `bridge members add`): a store whose roster does not reach it was
    /// rolled back and is refused
    #[arg(long, value_name = "EPOCH:HASH")]
    pub roster: Option<String>,
    /// Where the workspace keeps its blobs, when apart from the remote's
    /// documents: its [store] blobs (s3://BUCKET/PREFIX or dir:PATH), as
    /// `bridge members add` prints it
    #[arg(long, value_name = "STORE")]
    pub blobs: Option<String>,
    /// Print JSON: {"workspace", "root", "remote", "member", "tasks"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: JoinArgs) -> CliResult<u8> {
    let root = match &g.workspace {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current folder")?,
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let root_id: MemberId = args.root.parse().map_err(|_| {
        CliError::hint(
            anyhow!("--root {} is not a member id", args.root),
            "copy the `--root m…` printed by `bridge members add` on the admin's device",
        )
    })?;
    if let Some(blobs) = &args.blobs {
        super::common::check_blobs_arg(true, blobs)?;
    }
    let identity = super::init::identity_or_new(g)?;
    let slot = crate::worker::safe_name(&g.settings.engine.device_name());
    let remote = super::common::open_store(
        &g.settings.engine,
        &args.remote,
        args.blobs.as_deref(),
        &root,
        &slot,
    )
    .map_err(|e| {
        CliError::hint(
            anyhow!(e),
            "a remote looks like dir:PATH, git:URL or s3://BUCKET/PREFIX",
        )
    })?;
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
    let stores: Vec<&str> = std::iter::once(args.remote.as_str())
        .chain(args.blobs.as_deref())
        .collect();
    let replica = joined.map_err(|e| join_error(&stores, &root, e))?;
    let config = Config {
        workspace: WorkspaceSection {
            id: replica.workspace_id().to_owned(),
            root: root_id.to_string(),
            roster: args.roster.clone(),
        },
        store: StoreSection {
            remote: Some(args.remote.clone()),
            blobs: args.blobs.clone(),
            ..StoreSection::default()
        },
        worker: Default::default(),
        github: None,
        notify: Default::default(),
    };
    keys::check_pin(&g.settings.engine, &config.workspace.id, &root_id)?;
    let ws = Workspace::with_config(&root, config.clone(), g.engine())?;
    let vault = match Vault::open(ws.replica.clone(), identity, &root_id) {
        Ok((v, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            v
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&state_dir);
            return Err(e.into());
        }
    };
    if let Err(e) = crate::freshness::pinned(&ws)
        .and_then(|_| crate::freshness::check(&ws, vault.roster()))
        .map_err(CliError::from)
        .and_then(|()| vault.me().map(|_| ()).map_err(CliError::from))
    {
        let _ = std::fs::remove_dir_all(&state_dir);
        return Err(e);
    }
    workspace::write_config(&root, &config)?;
    super::common::mark_reached(&root, &stores);
    let session = Session::with_vault(ws, vault)?;
    if args.json {
        crate::output::print_json(&serde_json::json!({
            "workspace": config.workspace.id, "root": root, "remote": args.remote,
            "member": session.vault.identity().member_id(), "tasks": session.view().len(),
        }))?;
    } else if !g.quiet {
        outln!(
            "Joined workspace {} through {}: {} tasks known.",
            config.workspace.id,
            args.remote,
            session.view().len()
        );
    }
    Ok(EXIT_OK)
}

/// The error of a `join` whose first sync failed: offline (exit 4) when the
/// remote is unreachable, misconfigured (exit 7) when it is set up wrong or
/// names a folder that is not there (issue 17, item 9).
fn join_error(stores: &[&str], root: &std::path::Path, e: SyncError) -> CliError {
    let remote = stores.first().copied().unwrap_or_default();
    match e {
        // A folder that is not there (the remote's, or its blob store's): a
        // typo, or a drive not mounted yet (misconfigured, as for a
        // workspace that never synced with it).
        SyncError::Remote(e @ RemoteError::Unreachable { .. })
            if stores.iter().any(|store| {
                bridge_store::dir_remote_path(store, root).is_some_and(|p| !p.exists())
            }) =>
        {
            CliError::hint(
                anyhow!(e),
                "check the path, or mount the drive that holds the store, then run `bridge join` again",
            )
            .with_code(EXIT_MISCONFIGURED)
        }
        SyncError::Remote(e @ RemoteError::Unreachable { .. }) => CliError::hint(
            anyhow!(e),
            "run `bridge join` again once the store is reachable (check the network)",
        )
        .with_code(EXIT_OFFLINE),
        SyncError::Remote(e) if e.is_misconfigured() => CliError::hint(
            anyhow!(e).context(format!("cannot join {remote}")),
            "check the remote (the store `bridge init --remote` made on another device) and access to it",
        )
        .with_code(EXIT_MISCONFIGURED),
        e => CliError::hint(
            anyhow!(e).context(format!("cannot join {remote}")),
            "point at a folder made by `bridge init --remote dir:PATH` on another device",
        ),
    }
}
