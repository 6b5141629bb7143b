//! `bridge sync`: exchange files with the remote.

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::common::{OFFLINE, SyncOutcome, open_session_with, sync_remote};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::output::print_json;
use crate::workspace::{LoadPlan, Session};

/// Exchange tasks and results with the remote
///
/// Copies to the remote every file it lacks and pulls every file this device
/// lacks (set union: nothing is overwritten or deleted, and running it twice
/// is harmless). Exits with code 4 when the remote is unreachable, does not
/// answer within `[store] stall-timeout` (30s by default; the environment
/// variable BRIDGE_STALL_TIMEOUT overrides it), or is full: nothing is lost,
/// run it again later. Exits with code 7 when the remote is misconfigured
/// (a repository that does not exist or refuses the credentials, a folder
/// that is not this workspace's store, or that never existed): fix
/// `[store] remote` or the access; nothing is lost either.
///
/// With `[notify]` hooks in bridge.toml (or --notify), it then announces the
/// batches that finished and the tasks that failed for good since this
/// device last looked, each once (see `[notify]` in the README).
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Print the outcome as JSON: {"status": "synced"|"offline", "pulled", "pushed", "skipped", "repaired"}
    #[arg(long)]
    pub json: bool,
    /// First check every file of the local replica against its name (reads
    /// the whole replica); damaged ones are replaced by the remote's copy
    #[arg(long)]
    pub verify: bool,
    /// Also show a desktop notification (notify-send, or osascript on
    /// macOS) for each batch that finished and task that failed for good
    #[arg(long)]
    pub notify: bool,
}

pub fn run(g: &GlobalArgs, args: SyncArgs) -> CliResult<u8> {
    // A sync moves files: it reads the documents it touched (checking and
    // caching what arrived) and those of private batches (a removed audience
    // member makes this device rotate their keys, which needs their headers),
    // not every document of the pool before it starts.
    let mut session = open_session_with(g, LoadPlan::touched())?;
    if args.verify {
        // Every sync repairs the files a command found damaged; this also
        // finds those no command has read since they were damaged.
        let damaged = session.ws.replica.find_damaged().with_context(|| {
            format!(
                "cannot check the local replica in {}",
                session.ws.replica.root().display()
            )
        })?;
        if !g.quiet && !args.json {
            errln!(
                "verified the local replica: {} damaged file{}",
                damaged.len(),
                if damaged.len() == 1 { "" } else { "s" }
            );
        }
    }
    // Announcing what ended needs the whole pool, which a plain sync does
    // not read: only when something is to be announced (issue 17, item 7).
    let notifier = crate::notify::Notifier::new(&session.ws, None, args.notify);
    if notifier.is_active() {
        // From now on every document, and now those this plan skipped
        // (cached ones are not "deferred": `load_all` alone leaves them).
        session.load_all()?;
        session.refresh()?;
        crate::notify::check(&session, &notifier);
    }
    let outcome = sync_remote(&mut session, !g.quiet && !args.json)?;
    if notifier.is_active() {
        crate::notify::check(&session, &notifier);
    }
    match outcome {
        SyncOutcome::NoRemote => Err(CliError::hint(
            anyhow::anyhow!("this workspace has no remote to sync with"),
            "add `remote = \"dir:PATH\"` under [store] in bridge.toml",
        )),
        SyncOutcome::Synced(r) => {
            auto_compact(&session, false);
            if args.json {
                print_json(
                    &json!({"status": "synced", "pulled": r.pulled, "pushed": r.pushed, "skipped": r.skipped.len(), "repaired": r.repaired.len()}),
                )?;
            } else if !g.quiet {
                outln!(
                    "Synced with {}: {} files pulled, {} pushed{}.",
                    session.ws.remote_spec().unwrap_or_default(),
                    r.pulled,
                    r.pushed,
                    if r.repaired.is_empty() {
                        String::new()
                    } else {
                        format!(", {} damaged local files repaired", r.repaired.len())
                    }
                );
            }
            Ok(EXIT_OK)
        }
        SyncOutcome::Offline(why) => {
            if args.json {
                print_json(&json!({"status": "offline", "reason": why}))?;
            } else {
                errln!(
                    "offline: {why}. Nothing is lost: tasks and results stay in the local replica; run `bridge sync` again later."
                );
            }
            Ok(OFFLINE)
        }
    }
}

/// Compacts the documents past the automatic threshold (see `bridge
/// compact --help`), with the remote unless `offline`.
pub fn auto_compact(session: &Session, offline: bool) {
    let remote = match session.ws.remote_spec() {
        Some(spec) if !offline => {
            super::common::open_remote(&session.ws.settings, spec, &session.ws.root).ok()
        }
        _ => None,
    };
    crate::compact::auto(
        &session.vault,
        &session.ws.replica,
        remote.as_deref(),
        usize::MAX,
        &|_| true,
    );
}
