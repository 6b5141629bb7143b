//! `bridge retry`: allow a failed task another round of attempts.

use anyhow::anyhow;
use bridge_model::{Status, doc};
use clap::Args;

use super::GlobalArgs;
use super::common::{open_session, resolve_task, sync_and_report};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::workspace::now_ms;

/// Run a failed task again
///
/// Adds a retry grant: the task gets another round of 1 + retries attempts
/// and becomes pending. Earlier attempts and their logs are kept.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The task (id, id prefix or name)
    pub task: String,
    /// Do not sync with the remote afterwards
    #[arg(long)]
    pub offline: bool,
}

pub fn run(g: &GlobalArgs, args: RetryArgs) -> CliResult<u8> {
    let mut session = open_session(g)?;
    super::members::require_submitter(&session.vault, "retry tasks")?;
    let id = resolve_task(&mut session, &args.task)?;
    let now = now_ms();
    let derived = session.view().derive(now, session.policy);
    let status = derived.get(&id).map(|d| d.status);
    if status != Some(Status::Failed) {
        let hint = match status {
            Some(Status::Cancelled) => {
                "a cancelled task stays cancelled; submit it again with --rerun"
            }
            Some(Status::Done) => "it is done; submit it again with --rerun to run it anew",
            _ => "only failed tasks can be retried",
        };
        return Err(CliError::hint(
            anyhow!(
                "task {} is {}, not failed",
                id.short(),
                status.map_or("unknown", |s| s.as_str())
            ),
            hint,
        ));
    }
    let Some(home) = session.view().get(&id).map(|t| t.home().clone()) else {
        return Ok(EXIT_OK);
    };
    let key = session.next_key();
    session.change(&home, now, "retry", |d| doc::put_retry(d, &id, &key, now))?;
    session.view_mut().note_retry(&id, &key, now);
    session.flush()?;
    if !g.quiet {
        outln!("Task {} is pending again.", id.short());
    }
    if !args.offline {
        sync_and_report(&mut session, g)?;
    }
    Ok(EXIT_OK)
}
