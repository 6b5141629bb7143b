//! `bridge cancel`: add cancel facts to tasks.

use anyhow::anyhow;
use bridge_model::{Status, TaskId, doc};
use clap::Args;

use super::GlobalArgs;
use super::common::{open_session, resolve_batch, resolve_task, sync_and_report};
use crate::error::{CliError, CliResult, EXIT_OK};
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
    let mut cancelled = 0;
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
        cancelled += 1;
    }
    session.flush()?;
    if !g.quiet {
        outln!(
            "Cancelled {cancelled} task{}.",
            if cancelled == 1 { "" } else { "s" }
        );
    }
    if !args.offline {
        sync_and_report(&mut session, g)?;
    }
    Ok(EXIT_OK)
}
