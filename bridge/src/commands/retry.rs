//! `bridge retry`: allow failed tasks another round of attempts.

use anyhow::anyhow;
use bridge_model::{Status, TaskId, doc};
use clap::Args;

use super::GlobalArgs;
use super::common::{Target, open_session, resolve_target, sync_after_write};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::output::print_json;
use crate::workspace::{Session, now_ms};

/// Run failed tasks again
///
/// Adds a retry grant: the task gets another round of 1 + retries attempts
/// and becomes pending (the tasks skipped because they need it become
/// blocked, then run). Earlier attempts and their logs are kept.
///
/// `bridge retry TASK` retries one failed task; `bridge retry --failed`
/// every failed task, or those of a batch or a matrix entry
/// (`bridge retry --failed count` for `count[book=alice]`, …), as
/// `gh run rerun --failed` does.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The task (id, id prefix or name); with --failed, a batch or matrix
    /// entry (default: every task)
    #[arg(required_unless_present = "failed")]
    pub task: Option<String>,
    /// Retry every failed task (of TASK's batch or matrix entry, if given)
    #[arg(long)]
    pub failed: bool,
    /// Do not sync with the remote afterwards
    #[arg(long)]
    pub offline: bool,
    /// Print JSON: {"retried": [task ids], "synced"}; "synced" is false when
    /// the remote could not be used (offline) or --offline was given, true
    /// otherwise (also when the workspace has no remote)
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: RetryArgs) -> CliResult<u8> {
    let mut session = open_session(g)?;
    super::members::require_submitter(&session.vault, "retry tasks")?;
    let now = now_ms();
    let ids = if args.failed {
        failed_among(&mut session, args.task.as_deref(), now)?
    } else {
        let arg = args.task.as_deref().unwrap_or_default();
        match resolve_target(&mut session, arg)? {
            Target::Task(id) => {
                check_failed(&session, &id, now)?;
                vec![id]
            }
            Target::Entry { .. } | Target::Batch { .. } => {
                return Err(CliError::hint(
                    anyhow!("`{arg}` names several tasks"),
                    format!("retry its failed tasks with `bridge retry --failed {arg}`"),
                ));
            }
        }
    };
    for id in &ids {
        let Some(home) = session.view().get(id).map(|t| t.home().clone()) else {
            continue;
        };
        let key = session.next_key();
        session.change(&home, now, "retry", |d| doc::put_retry(d, id, &key, now))?;
        session.view_mut().note_retry(id, &key, now);
    }
    session.flush()?;
    if !g.quiet && !args.json {
        match ids.as_slice() {
            [one] => outln!("Task {} is pending again.", one.short()),
            many => outln!("{} failed tasks are pending again.", many.len()),
        }
    }
    let synced = !args.offline && sync_after_write(&mut session, g, "the retry")?;
    if args.json {
        print_json(&serde_json::json!({"retried": ids, "synced": synced}))?;
    }
    Ok(EXIT_OK)
}

/// The failed tasks among those `target` names (every task without one).
fn failed_among(
    session: &mut Session,
    target: Option<&str>,
    now: bridge_model::Millis,
) -> CliResult<Vec<TaskId>> {
    let among: Option<Vec<TaskId>> = match target {
        Some(arg) => Some(resolve_target(session, arg)?.tasks()),
        None => None,
    };
    let derived = session.view().derive(now, session.policy);
    let failed: Vec<TaskId> = session
        .view()
        .tasks()
        .map(|t| &t.id)
        .filter(|id| among.as_ref().is_none_or(|a| a.contains(id)))
        .filter(|id| derived.get(*id).is_some_and(|d| d.status == Status::Failed))
        .cloned()
        .collect();
    if failed.is_empty() {
        return Err(CliError::hint(
            anyhow!(
                "no failed task{}",
                target.map(|t| format!(" in `{t}`")).unwrap_or_default()
            ),
            "see what failed with `bridge ls --status failed`",
        ));
    }
    Ok(failed)
}

/// Refuses a task that is not failed, saying what to do instead.
fn check_failed(session: &Session, id: &TaskId, now: bridge_model::Millis) -> CliResult<()> {
    let derived = session.view().derive(now, session.policy);
    let status = derived.get(id).map(|d| d.status);
    if status == Some(Status::Failed) {
        return Ok(());
    }
    let hint = match status {
        Some(Status::Cancelled) => "a cancelled task stays cancelled; submit it again with --rerun",
        Some(Status::Done) => "it is done; submit it again with --rerun to run it anew",
        Some(Status::Skipped) => {
            "it was skipped because a task it needs failed: retry that one (`bridge show` names it), and this one runs after it"
        }
        _ => "only failed tasks can be retried",
    };
    Err(CliError::hint(
        anyhow!(
            "task {} is {}, not failed",
            id.short(),
            status.map_or("unknown", |s| s.as_str())
        ),
        hint,
    ))
}
