//! `bridge archive`: move finished batches out of the live set.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context as _;
use bridge_model::view::TaskView;
use bridge_model::{BatchId, Millis};
use bridge_store::DocFolder;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::common::{open_remote, open_session, sync_and_report};
use crate::compact;
use crate::error::{CliResult, EXIT_OK, HintExt};
use crate::output::print_json;
use crate::workspace::{Session, now_ms};

/// Move finished batches out of the live set, keeping every result
///
/// A batch is archived when every one of its tasks is finished (done,
/// failed, cancelled or untrusted) and nothing happened to any of them for
/// --older-than. Each of its documents becomes one snapshot under archive/,
/// here and on the remote; its chunk files go. Archived tasks cost nothing
/// when a command loads the workspace: `status`, `ls`, `work` and `run` do
/// not read them. `bridge show`, `logs` and `outputs` still find them (they
/// look in the archive when a task is not live), and `retry` brings one
/// back. A later change to an archived document (a retry, a late result)
/// makes it live again, with its history.
///
/// JSON (--json): {"batches": [ids], "documents": N, "tasks": N,
/// "remote_removed": N, "remote_left": N, "offline": null|"why"}
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ArchiveArgs {
    /// Archive batches whose last activity is at least this old
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub older_than: String,
    /// Archive in the local replica only; leave the remote as it is
    #[arg(long)]
    pub local: bool,
    /// Print JSON for scripts (format above)
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: ArchiveArgs) -> CliResult<u8> {
    let older_than: Duration = humantime::parse_duration(&args.older_than)
        .with_context(|| format!("--older-than {} is not a duration", args.older_than))
        .hint("write e.g. 7d, 12h or 0s (everything finished)")?;
    let mut session = open_session(g)?;
    // A remote that could not be used for the sync (unreachable, silent
    // past the stall timeout, full) is not tried again.
    let online = args.local || sync_and_report(&mut session, g)?;
    let cutoff = now_ms().saturating_sub(older_than.as_millis() as Millis);
    let (batches, docs, tasks) = archivable(&session, cutoff);
    let remote = match session.ws.remote_spec().filter(|_| !args.local && online) {
        Some(spec) => Some(
            open_remote(&session.ws.settings, spec, &session.ws.root)
                .map_err(anyhow::Error::from)?,
        ),
        None => None,
    };
    let mut report = if docs.is_empty() {
        compact::Report::default()
    } else {
        compact::run(
            &session.vault,
            &session.ws.replica,
            remote.as_deref(),
            DocFolder::Archive,
            Some(&docs),
        )?
    };
    if !online && report.offline.is_none() {
        report.offline = Some("the remote could not be used for the sync".to_owned());
    }
    if args.json {
        print_json(&json!({
            "batches": batches,
            "documents": docs.len(),
            "tasks": tasks,
            "remote_removed": report.remote_removed,
            "remote_left": report.remote_left,
            "offline": report.offline,
        }))?;
    } else if !g.quiet {
        if batches.is_empty() {
            outln!(
                "Nothing to archive: no batch is finished with no activity for {}.",
                args.older_than
            );
        } else {
            outln!(
                "Archived {} batches ({} documents, {tasks} tasks); `bridge show` still finds them.",
                batches.len(),
                docs.len()
            );
        }
        if let Some(why) = &report.offline {
            errln!("offline: {why}; archived in the local replica only");
        }
    }
    Ok(EXIT_OK)
}

/// The batches every task of which is final and idle since `cutoff`: their
/// ids, their documents, and how many tasks they hold.
fn archivable(session: &Session, cutoff: Millis) -> (Vec<BatchId>, BTreeSet<String>, usize) {
    let derived = session.view().derive(now_ms(), session.policy);
    let mut docs_of: BTreeMap<BatchId, BTreeSet<String>> = BTreeMap::new();
    for (id, h) in session.headers() {
        docs_of
            .entry(h.batch.clone())
            .or_default()
            .insert(id.to_string());
    }
    let mut blocked: BTreeSet<BatchId> = BTreeSet::new();
    let mut tasks: BTreeMap<BatchId, usize> = BTreeMap::new();
    for t in session.view().tasks() {
        let idle = last_activity(t) <= cutoff;
        let finished = derived.get(&t.id).is_some_and(|d| d.status.is_final());
        for doc in &t.docs {
            let batch = doc.batch().clone();
            *tasks.entry(batch.clone()).or_default() += 1;
            if !(idle && finished) {
                blocked.insert(batch);
            }
        }
    }
    let mut batches = Vec::new();
    let mut docs = BTreeSet::new();
    let mut count = 0;
    for (batch, batch_docs) in docs_of {
        if blocked.contains(&batch) {
            continue;
        }
        count += tasks.get(&batch).copied().unwrap_or(0);
        docs.extend(batch_docs);
        batches.push(batch);
    }
    (batches, docs, count)
}

/// When anything last happened to a task.
fn last_activity(t: &TaskView) -> Millis {
    let f = &t.facts;
    let claims = f
        .claims
        .values()
        .map(|c| c.released_at.unwrap_or(c.at).max(c.at));
    let attempts = f.attempts.values().map(|a| a.ended_at);
    let others = f.cancels.values().chain(f.retries.values()).copied();
    claims
        .chain(attempts)
        .chain(others)
        .fold(t.created_at, Millis::max)
}
