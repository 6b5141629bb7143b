//! `bridge gc`: delete blobs that no task references any more.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::common::{open_remote, open_session, sync_and_report};
use crate::error::{CliResult, EXIT_OK, HintExt};
use crate::output::print_json;
use crate::workspace::Session;

/// Delete stored files (inputs, logs, outputs) that no task references
///
/// Looks at every task, live and archived, and deletes the blobs none of
/// them names: inputs of tasks submitted and then lost to a crash, logs
/// and outputs of attempts that were never recorded. A blob must also have
/// been in this replica for --grace, so that one uploaded just before its
/// task (blobs travel first) is never taken. Removes them from the remote
/// too, unless --local.
///
/// JSON (--json): {"blobs": N, "referenced": N, "removed": N, "bytes": N,
/// "young": N, "private": N, "remote_removed": N, "offline": null|"why"}
///
/// Blobs this device cannot decrypt (of private batches it is not in the
/// audience of) are never deleted: it cannot see the tasks that name them.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct GcArgs {
    /// Only delete blobs that have been in this replica at least this long
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub grace: String,
    /// Delete from the local replica only; leave the remote as it is
    #[arg(long)]
    pub local: bool,
    /// Print JSON for scripts (format above)
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: GcArgs) -> CliResult<u8> {
    let grace: Duration = humantime::parse_duration(&args.grace)
        .with_context(|| format!("--grace {} is not a duration", args.grace))
        .hint("write e.g. 7d or 24h")?;
    let mut session = open_session(g)?;
    // A remote that could not be used for the sync (unreachable, silent
    // past the stall timeout, full) is not tried again.
    let online = args.local || sync_and_report(&mut session, g)?;
    session.load_archived()?;
    let referenced = referenced_blobs(&session);
    let replica = &session.ws.replica;
    let blobs = replica.list_blobs().context("cannot list the blobs")?;
    let mut young = 0;
    let mut foreign = 0;
    let mut bytes = 0;
    let mut garbage: Vec<String> = Vec::new();
    for id in &blobs {
        let name = id.store_name();
        if referenced.contains(id.as_str()) {
            continue;
        }
        // A blob sealed to a key this device does not hold may belong to
        // a private batch it cannot read (issue 13): its tasks, which may
        // name it, are invisible here. Kept.
        if session.vault.is_foreign_blob(id) {
            foreign += 1;
            continue;
        }
        // Unknown age (clock trouble): keep it.
        if replica.file_age(&name).is_none_or(|age| age < grace) {
            young += 1;
            continue;
        }
        bytes += std::fs::metadata(replica.blob_path(id)).map_or(0, |m| m.len());
        garbage.push(name);
    }
    let removed = replica
        .remove_store_files(&garbage)
        .context("cannot delete unreferenced blobs")?;
    let mut remote_removed = 0;
    let mut offline = (!online).then(|| "the remote could not be used for the sync".to_owned());
    if let Some(spec) = session
        .ws
        .remote_spec()
        .filter(|_| !args.local && online && !garbage.is_empty())
    {
        let remote = open_remote(&session.ws.settings, spec, &session.ws.root)
            .map_err(anyhow::Error::from)?;
        match remote.list() {
            Ok(listed) => {
                let there: Vec<String> = garbage
                    .iter()
                    .filter(|n| listed.contains(*n))
                    .cloned()
                    .collect();
                let left = remote
                    .remove(&there)
                    .context("cannot delete unreferenced blobs from the remote")?;
                remote_removed = there.len() - left;
            }
            Err(e) if e.is_remote_wide() => offline = Some(e.to_string()),
            Err(e) => return Err(anyhow::anyhow!(e).context("cannot list the remote").into()),
        }
    }
    if args.json {
        print_json(&json!({
            "blobs": blobs.len(), "referenced": referenced.len(), "removed": removed,
            "bytes": bytes, "young": young, "private": foreign, "remote_removed": remote_removed, "offline": offline,
        }))?;
    } else if !g.quiet {
        outln!(
            "{removed} unreferenced blobs deleted ({bytes} bytes), {remote_removed} from the remote; {young} unreferenced but younger than {} kept.",
            args.grace
        );
        if foreign > 0 {
            outln!(
                "{foreign} blob{} of private batches this device cannot read kept.",
                if foreign == 1 { "" } else { "s" }
            );
        }
        if let Some(why) = offline {
            errln!("offline: {why}; the remote is unchanged");
        }
    }
    Ok(EXIT_OK)
}

/// Every blob a task names: inputs, and each attempt's logs and outputs.
fn referenced_blobs(session: &Session) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in session.view().tasks() {
        out.extend(t.spec.inputs.iter().map(|i| i.blob.clone()));
        for a in t.facts.attempts.values() {
            out.extend(a.stdout_blob.iter().cloned());
            out.extend(a.stderr_blob.iter().cloned());
            out.extend(a.outputs.values().cloned());
        }
    }
    out.remove("");
    out
}
