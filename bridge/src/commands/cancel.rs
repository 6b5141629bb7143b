//! `bridge cancel`: add cancel facts to tasks.

use anyhow::anyhow;
use bridge_model::{Status, TaskId, doc};
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::common::{open_session, resolve_batch, resolve_task, sync_after_write};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::output::print_json;
use crate::workspace::now_ms;

/// Cancel a task, or every unfinished task of a batch
///
/// A cancel is a fact: it wins over a result that arrives later, and a
/// worker stops claiming the task once it sees it. Tasks already done stay
/// done.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// A task (id, id prefix or name) or a batch (id or prefix)
    pub target: String,
    /// Do not sync with the remote afterwards
    #[arg(long)]
    pub offline: bool,
    /// Print JSON: {"cancelled": [task ids], "synced"}; "synced" is false when
    /// the remote could not be used (offline) or --offline was given, true
    /// otherwise (also when the workspace has no remote)
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: CancelArgs) -> CliResult<u8> {
    let mut session = open_session(g)?;
    super::members::require_submitter(&session.vault, "cancel tasks")?;
    let now = now_ms();
    let derived = session.view().derive(now, session.policy);
    let ids: Vec<TaskId> = match resolve_task(&mut session, &args.target) {
        Ok(id) => vec![id],
        Err(task_err) => match resolve_batch(&session, &args.target) {
            Some(b) => session
                .view()
                .tasks()
                .filter(|t| t.docs.iter().any(|d| d.batch() == &b))
                .map(|t| t.id.clone())
                .collect(),
            None => {
                return Err(CliError::hint(
                    anyhow!("`{}` is neither a task nor a batch here", args.target),
                    task_err.hint.unwrap_or_default(),
                ));
            }
        },
    };
    let mut cancelled = Vec::new();
    for id in ids {
        // A skipped task is cancelled too: retrying what it needs would
        // otherwise run it.
        if derived
            .get(&id)
            .is_some_and(|d| d.status.is_final() && d.status != Status::Skipped)
        {
            continue;
        }
        let Some(home) = session.view().get(&id).map(|t| t.home().clone()) else {
            continue;
        };
        let writer = session.writer.clone();
        session.change(&home, now, "cancel", |d| {
            doc::put_cancel(d, &id, &writer, now)
        })?;
        session.view_mut().note_cancel(&id, writer.as_str(), now);
        cancelled.push(id);
    }
    session.flush()?;
    if !g.quiet && !args.json {
        outln!(
            "Cancelled {} task{}.",
            cancelled.len(),
            if cancelled.len() == 1 { "" } else { "s" }
        );
    }
    let synced = !args.offline && sync_after_write(&mut session, g, "the cancel")?;
    if args.json {
        print_json(&json!({"cancelled": cancelled, "synced": synced}))?;
    }
    Ok(EXIT_OK)
}
