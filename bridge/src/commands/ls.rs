//! `bridge ls`: list tasks, with filters.

use bridge_model::Status;
use clap::Args;
use serde::Serialize;

use super::GlobalArgs;
use super::common::{open_session, resolve_batch};
use super::joblog;
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::output::{print_json, print_table};
use crate::workspace::now_ms;

/// List tasks
///
/// A pending task this device would not run (its submitter is not in
/// `[worker] run-tasks-from`) is marked "left for other devices", with why.
///
/// JSON (--json): an array of {"id", "name", "status", "batch", "attempts",
/// "failures", "reason", "command"}, one per task, plus "left_for_others":
/// {"reason": "submitter", "submitter", "message"} on the tasks this device
/// leaves for others; with --full, each task as `bridge show --json` prints
/// it (spec, claims, every attempt).
///
/// --joblog prints GNU parallel's --joblog: a header, then one tab-separated
/// row per finished attempt (a retried task has several): Seq (the task's
/// place in this list), Host (the device or runner), Starttime (epoch
/// seconds), JobRuntime (seconds), Send and Receive (0), Exitval (-1 when
/// the command did not exit), Signal and Command.
///
/// --format tsv prints a header and one tab-separated row per task: id,
/// name, status, host, start (RFC 3339), runtime (seconds), exit_code and
/// command, of its result (or its latest attempt; empty when it has none).
///
/// In both, a tab, line break or backslash in a field is written `\t`,
/// `\n`, `\r` or `\\`, so a row is always one line.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LsArgs {
    /// Only tasks with this status (pending, blocked, running, done, failed, cancelled); repeatable
    #[arg(long, short)]
    pub status: Vec<Status>,
    /// Only tasks of this batch (id or prefix)
    #[arg(long, short)]
    pub batch: Option<String>,
    /// Only tasks whose name contains this text
    #[arg(long, short)]
    pub name: Option<String>,
    /// Print JSON for scripts (format above)
    #[arg(long)]
    pub json: bool,
    /// With --json: every task in full (an export of the live tasks)
    #[arg(long, requires = "json")]
    pub full: bool,
    /// Print GNU parallel's joblog: one row per attempt (format above)
    #[arg(long, conflicts_with_all = ["json", "format"])]
    pub joblog: bool,
    /// Print a table (the default) or tab-separated values, one row per task
    #[arg(long, value_enum, default_value = "table", conflicts_with = "json")]
    pub format: Format,
}

/// `ls --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Tsv,
}

#[derive(Serialize)]
struct Row {
    id: String,
    name: String,
    status: Status,
    batch: String,
    attempts: usize,
    failures: u64,
    reason: Option<String>,
    command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    left_for_others: Option<serde_json::Value>,
    #[serde(skip)]
    left_message: Option<String>,
}

#[expect(
    clippy::too_many_lines,
    reason = "a command's steps in order; the ratchet (clippy.toml) stops it growing"
)]
pub fn run(g: &GlobalArgs, args: LsArgs) -> CliResult<u8> {
    let session = open_session(g)?;
    let batch = match &args.batch {
        None => None,
        Some(b) => Some(resolve_batch(&session, b).ok_or_else(|| {
            CliError::hint(
                anyhow::anyhow!("no single batch matches `{b}`"),
                "see the batches with `bridge status`",
            )
        })?),
    };
    let derived = session.view().derive(now_ms(), session.policy);
    let policy = session.configured_task_policy()?;
    crate::run_policy::warn_unknown_names(&policy, &mut Default::default());
    let mut rows = Vec::new();
    let mut full = Vec::new();
    // --joblog and --format tsv: the tasks themselves, for their attempts.
    let tabular = args.joblog || args.format == Format::Tsv;
    let mut picked = Vec::new();
    for t in session.view().tasks() {
        let Some(d) = derived.get(&t.id) else {
            continue;
        };
        if !args.status.is_empty() && !args.status.contains(&d.status) {
            continue;
        }
        if batch
            .as_ref()
            .is_some_and(|b| !t.docs.iter().any(|doc| doc.batch() == b))
        {
            continue;
        }
        if args
            .name
            .as_ref()
            .is_some_and(|n| !t.spec.name.contains(n.as_str()))
        {
            continue;
        }
        if tabular {
            picked.push((t, d.status));
            continue;
        }
        let left = policy.left_for_others(t, d.status);
        if args.full {
            full.push((
                t.created_at,
                t.spec.name.clone(),
                super::show::task_json(t, d, left.as_ref()),
            ));
            continue;
        }
        rows.push((
            t.created_at,
            Row {
                id: t.id.to_string(),
                name: t.spec.name.clone(),
                status: d.status,
                batch: t.home().batch().to_string(),
                attempts: t.facts.attempts.len(),
                failures: d.failures.0,
                reason: d.reason.clone(),
                command: t.spec.command.display(),
                left_for_others: left.as_ref().map(|l| l.to_json()),
                left_message: left.map(|l| l.to_string()),
            },
        ));
    }
    if tabular {
        picked.sort_by(|a, b| {
            (a.0.created_at, &a.0.spec.name, &a.0.id).cmp(&(
                b.0.created_at,
                &b.0.spec.name,
                &b.0.id,
            ))
        });
        if args.joblog {
            let tasks: Vec<_> = picked.iter().map(|(t, _)| *t).collect();
            joblog::print(&joblog::joblog(&tasks));
        } else {
            joblog::print(&joblog::tsv(&picked));
        }
        return Ok(EXIT_OK);
    }
    if args.full {
        full.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let full: Vec<serde_json::Value> = full.into_iter().map(|(_, _, v)| v).collect();
        print_json(&full)?;
        return Ok(EXIT_OK);
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.name.cmp(&b.1.name)));
    let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    if args.json {
        print_json(&rows)?;
        return Ok(EXIT_OK);
    }
    // Private batches this device cannot read: their grant's notice only
    // (issue 13). Not in --json, whose rows are tasks: `status --json`
    // lists them.
    let private = crate::audience::foreign_summaries(&session.vault);
    if rows.is_empty() {
        errln!("No tasks match.");
        for p in &private {
            outln!(
                "Batch {}: {}.",
                bridge_model::BatchId::short_of(&p.batch),
                p.line()
            );
        }
        return Ok(EXIT_OK);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.get(..10).unwrap_or(&r.id).to_owned(),
                r.status.as_str().to_owned(),
                bridge_model::BatchId::short_of(&r.batch).to_owned(),
                r.attempts.to_string(),
                match (&r.reason, &r.left_message) {
                    (Some(why), _) => format!("{}  ({why})", r.name),
                    (None, Some(left)) => {
                        format!("{}  (left for other devices: {left})", r.name)
                    }
                    (None, None) => r.name.clone(),
                },
            ]
        })
        .collect();
    print_table(&["ID", "STATUS", "BATCH", "ATTEMPTS", "NAME"], &table)?;
    for p in &private {
        outln!(
            "Batch {}: {}.",
            bridge_model::BatchId::short_of(&p.batch),
            p.line()
        );
    }
    Ok(EXIT_OK)
}
