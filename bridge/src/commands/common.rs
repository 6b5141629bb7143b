//! Helpers shared by several subcommands: opening the session, finding a
//! task from what the user typed, and syncing with the remote.

use std::io::IsTerminal;

use anyhow::anyhow;
use bridge_model::view::TaskView;
use bridge_model::{BatchId, TaskId};
use bridge_store::{RemoteError, SyncError, SyncReport};

use super::GlobalArgs;
use crate::error::{CliError, CliResult, EXIT_OFFLINE};
use crate::workspace::{Session, Workspace};

/// Finds the workspace and loads its documents.
pub fn open_session(g: &GlobalArgs) -> CliResult<Session> {
    Session::open(Workspace::find(g.workspace.as_deref())?)
}

/// Opens a remote for the workspace at `root`. In a `git:` remote this
/// device writes its own ref, named after the device (`BRIDGE_DEVICE` or the
/// host name).
pub fn open_remote(
    spec: &str,
    root: &std::path::Path,
) -> Result<Box<dyn bridge_store::Remote>, bridge_store::RemoteSpecError> {
    let mut opts = bridge_store::RemoteOptions::for_base(root);
    opts.writer_slot = crate::worker::safe_name(&crate::workspace::device_name());
    bridge_store::parse_remote(spec, root, &opts)
}

/// Finds one task by id, unique id prefix (4+ hex digits) or exact name.
pub fn resolve_task(session: &Session, arg: &str) -> CliResult<TaskId> {
    let view = session.view();
    let by_id = view.find(arg);
    let matches: Vec<&TaskView> = if by_id.is_empty() {
        view.tasks().filter(|t| t.spec.name == arg).collect()
    } else {
        by_id
    };
    match matches.as_slice() {
        [t] => Ok(t.id.clone()),
        [] => Err(CliError::hint(
            anyhow!("no task has the id or name `{arg}`"),
            "list tasks with `bridge ls`; run `bridge sync` if it was submitted on another device",
        )),
        many => {
            let names: Vec<String> = many
                .iter()
                .take(5)
                .map(|t| format!("{} ({})", t.id.short(), t.spec.name))
                .collect();
            Err(CliError::hint(
                anyhow!("`{arg}` matches {} tasks: {}", many.len(), names.join(", ")),
                "give more digits of the id",
            ))
        }
    }
}

/// Finds a batch by id or unique prefix of its id or short id.
pub fn resolve_batch(session: &Session, arg: &str) -> Option<BatchId> {
    let mut found: Vec<BatchId> = session
        .headers()
        .map(|(_, h)| h.batch.clone())
        .filter(|b| b.as_str().starts_with(arg) || b.short().starts_with(arg))
        .collect();
    found.sort();
    found.dedup();
    if found.len() == 1 && arg.len() >= 4 {
        found.pop()
    } else {
        None
    }
}

/// What a best-effort sync did.
pub enum SyncOutcome {
    /// No remote is configured.
    NoRemote,
    /// Synced.
    Synced(SyncReport),
    /// The remote is unreachable: work goes on locally.
    Offline(String),
}

/// Syncs the replica with the configured remote. An unreachable remote is
/// not an error here (the caller goes on offline); a remote that is not a
/// store, or another workspace's, is.
pub fn sync_remote(session: &mut Session, show_progress: bool) -> CliResult<SyncOutcome> {
    let Some(spec) = session.ws.remote_spec().map(str::to_owned) else {
        return Ok(SyncOutcome::NoRemote);
    };
    let remote = open_remote(&spec, &session.ws.root).map_err(|e| {
        CliError::hint(
            anyhow!(e),
            "set `remote` under [store] in bridge.toml to `dir:PATH`",
        )
    })?;
    let bar = progress_bar(show_progress);
    let result = bridge_store::sync(&session.ws.replica, remote.as_ref(), &mut |p| {
        if let Some(b) = &bar {
            b.set_length(p.total as u64);
            b.set_position(p.done as u64);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Ok(report) => {
            for w in &report.skipped {
                tracing::warn!("{w}");
            }
            session.refresh()?;
            Ok(SyncOutcome::Synced(report))
        }
        Err(SyncError::Remote(RemoteError::Unreachable { remote, source })) => Ok(
            SyncOutcome::Offline(format!("{remote} is unreachable ({source})")),
        ),
        Err(e) => Err(CliError::hint(
            anyhow!(e).context(format!("cannot sync with {spec}")),
            "check the [store] remote in bridge.toml",
        )),
    }
}

/// Pushes the chunk files this process wrote since the last push (claims,
/// lease renewals, results) to the remote, so other devices see them without
/// waiting for a full sync. Best effort: offline, they go with the next sync.
pub fn push_written(session: &mut Session) -> CliResult<()> {
    let names = session.take_written();
    let Some(spec) = session.ws.remote_spec().map(str::to_owned) else {
        return Ok(());
    };
    if names.is_empty() {
        return Ok(());
    }
    let Ok(remote) = open_remote(&spec, &session.ws.root) else {
        return Ok(());
    };
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let Some((doc, file)) = name
            .strip_prefix("chunks/")
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        match session.ws.replica.read_chunk(doc, file) {
            Ok(bytes) => files.push((name, bytes)),
            Err(e) => tracing::debug!("not pushing {name}: {e}"),
        }
    }
    if let Err(e) = remote.put(&files) {
        tracing::debug!("push to {spec} failed, the next sync retries: {e}");
    }
    Ok(())
}

/// Syncs if a remote is set and says so on stderr; never fails on an
/// unreachable remote.
pub fn sync_and_report(session: &mut Session, g: &GlobalArgs) -> CliResult<()> {
    match sync_remote(session, !g.quiet)? {
        SyncOutcome::NoRemote => {}
        SyncOutcome::Synced(r) => {
            if !g.quiet && (r.pulled > 0 || r.pushed > 0) {
                eprintln!("synced: {} files pulled, {} pushed", r.pulled, r.pushed);
            }
        }
        SyncOutcome::Offline(why) => {
            if !g.quiet {
                eprintln!("offline: {why}; working on the local replica, run `bridge sync` later");
            }
        }
    }
    Ok(())
}

/// The exit code of a sync that found the remote unreachable.
pub const OFFLINE: u8 = EXIT_OFFLINE;

fn progress_bar(show: bool) -> Option<indicatif::ProgressBar> {
    if !show || !std::io::stderr().is_terminal() || std::env::var_os("GITHUB_ACTIONS").is_some() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("sync {bar:30} {pos}/{len} files")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}
