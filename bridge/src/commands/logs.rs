//! `bridge logs`: the stdout and stderr of a task's attempt.

use anyhow::anyhow;
use bridge_model::Attempt;
use bridge_model::view::canonical_result;
use bridge_store::BlobId;
use clap::Args;

use super::GlobalArgs;
use super::common::{one_task_or_list, open_session};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::workspace::Session;

/// Print the output of a task's attempt
///
/// Shows the attempt that produced the result, or else the latest attempt.
/// The whole log is printed when its blob is in the local replica; otherwise
/// the tail kept in the task document. A matrix entry's name (`count` for
/// `count[book=alice]`, …) or a batch lists its tasks instead.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The task (id, id prefix or name), or a matrix entry or batch to list
    pub task: String,
    /// Only stdout
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Only stderr
    #[arg(long)]
    pub stderr: bool,
    /// Another attempt, by its key (see `bridge show`)
    #[arg(long, value_name = "KEY")]
    pub attempt: Option<String>,
}

pub fn run(g: &GlobalArgs, args: LogsArgs) -> CliResult<u8> {
    let mut session = open_session(g)?;
    let Some(id) = one_task_or_list(&mut session, &args.task, "logs")? else {
        return Ok(EXIT_OK);
    };
    let Some(t) = session.view().get(&id) else {
        return Ok(EXIT_OK);
    };
    let attempt = match &args.attempt {
        Some(k) => t.facts.attempts.get(k).ok_or_else(|| {
            CliError::hint(
                anyhow!("task {} has no attempt `{k}`", id.short()),
                "list its attempts with `bridge show`",
            )
        })?,
        None => match canonical_result(&t.facts).or_else(|| {
            t.facts
                .attempts
                .values()
                .max_by_key(|a| (a.ended_at, a.key.clone()))
        }) {
            Some(a) => a,
            None => {
                return Err(CliError::hint(
                    anyhow!("task {} ({}) has not run yet", id.short(), t.spec.name),
                    "run it with `bridge work`, or `bridge sync` to fetch results from elsewhere",
                ));
            }
        },
    };
    // The task's own bytes: as they are into a file or a pipe, with control
    // characters escaped on a terminal (issue 12, item 21: a task's output
    // must not drive the reader's terminal).
    if !args.stderr {
        crate::output::write_stdout_bytes(&log(&session, attempt, true));
    }
    if !args.stdout {
        let err = log(&session, attempt, false);
        if args.stderr {
            crate::output::write_stdout_bytes(&err);
        } else {
            crate::output::write_stderr_bytes(&err);
        }
    }
    Ok(EXIT_OK)
}

fn log(session: &Session, a: &Attempt, stdout: bool) -> Vec<u8> {
    let (blob, tail) = if stdout {
        (&a.stdout_blob, &a.stdout_tail)
    } else {
        (&a.stderr_blob, &a.stderr_tail)
    };
    if let Some(id) = blob.as_deref().and_then(|b| b.parse::<BlobId>().ok()) {
        match session.vault.read_blob(&id) {
            Ok(bytes) => return bytes,
            Err(e) => tracing::warn!("showing the tail only: {e}"),
        }
    }
    tail.as_bytes().to_vec()
}
