//! `bridge report`: gathers the pool from the local replica into a
//! [`crate::report::Pool`] and writes the page [`crate::report::render`]
//! makes of it (issue 17, item 6).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::anyhow;
use bridge_model::view::canonical_result;
use bridge_model::{BatchId, Millis};
use clap::Args;

use super::GlobalArgs;
use super::common::{open_session, resolve_batch};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::report::{Attempt, Batch, Pool, Task, render};
use crate::workspace::{Session, now_ms};

/// Write one self-contained HTML page of the pool
///
/// The page shows the batches with the status of every task, task
/// durations, a timeline of attempts per device and runner (who ran what
/// when, one row per worker slot), the failures with their log tails, and
/// the minutes used. It needs no server and no network: open it from the
/// file. Made from this device's replica (works offline): run `bridge sync`
/// first to include other devices' latest results.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Where to write the page (`-`: standard output)
    #[arg(long, value_name = "FILE", default_value = "bridge-report.html")]
    pub to: PathBuf,
    /// Only this batch (id or prefix)
    #[arg(long, short)]
    pub batch: Option<String>,
}

pub fn run(g: &GlobalArgs, args: ReportArgs) -> CliResult<u8> {
    let session = open_session(g)?;
    let only = match &args.batch {
        None => None,
        Some(b) => Some(resolve_batch(&session, b).ok_or_else(|| {
            CliError::hint(
                anyhow!("no single batch matches `{b}`"),
                "see the batches with `bridge status`",
            )
        })?),
    };
    let pool = gather(&session, only.as_ref());
    let page = render(&pool);
    let tasks: usize = pool.batches.iter().map(|b| b.tasks.len()).sum();
    if args.to.as_os_str() == "-" {
        crate::output::write_stdout_bytes(page.as_bytes());
        return Ok(EXIT_OK);
    }
    std::fs::write(&args.to, page).map_err(|e| {
        CliError::hint(
            anyhow!(e).context(format!("cannot write the report to {}", args.to.display())),
            "choose another file with --to FILE (or --to - for standard output)",
        )
    })?;
    if !g.quiet {
        outln!(
            "Wrote {} ({tasks} task(s) in {} batch(es)); open it in a browser.",
            args.to.display(),
            pool.batches.len()
        );
    }
    Ok(EXIT_OK)
}

/// The pool as the page shows it: every batch (or only `only`) with its
/// tasks in submission order, each with its status and attempts.
fn gather(session: &Session, only: Option<&BatchId>) -> Pool {
    let now = now_ms();
    let derived = session.view().derive(now, session.policy);
    let mut batches: BTreeMap<BatchId, (Batch, Vec<(Millis, Task)>)> = BTreeMap::new();
    for (_, h) in session.headers() {
        if only.is_some_and(|b| *b != h.batch) {
            continue;
        }
        batches.entry(h.batch.clone()).or_insert_with(|| {
            let batch = Batch {
                short: h.batch.short().to_owned(),
                created_at: h.created_at,
                submitted_by: h.submitted_by.clone(),
                tasks: Vec::new(),
            };
            (batch, Vec::new())
        });
    }
    for t in session.view().tasks() {
        let (Some(d), Some(entry)) = (derived.get(&t.id), batches.get_mut(t.home().batch())) else {
            continue;
        };
        let mut attempts: Vec<&bridge_model::Attempt> = t.facts.attempts.values().collect();
        attempts.sort_by_key(|a| (a.started_at, a.ended_at, a.key.clone()));
        let result = canonical_result(&t.facts).map(|a| a.key.as_str());
        let task = Task {
            short: t.id.short().to_owned(),
            name: t.spec.name.clone(),
            status: d.status,
            reason: d.reason.clone(),
            result: attempts.iter().position(|a| Some(a.key.as_str()) == result),
            attempts: attempts.into_iter().map(attempt).collect(),
        };
        entry.1.push((t.created_at, task));
    }
    let mut batches: Vec<Batch> = batches
        .into_values()
        .filter(|(_, tasks)| !tasks.is_empty())
        .map(|(mut b, mut tasks)| {
            tasks.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| x.1.name.cmp(&y.1.name)));
            b.tasks = tasks.into_iter().map(|(_, t)| t).collect();
            b
        })
        .collect();
    batches.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.short.cmp(&b.short)));
    Pool {
        workspace: session.ws.config.workspace.id.clone(),
        remote: session.ws.remote_spec().map(str::to_owned),
        generated_at: now,
        batches,
        unreadable_batches: if only.is_some() {
            0
        } else {
            crate::audience::foreign_summaries(&session.vault).len()
        },
    }
}

/// An attempt as the page shows it. A runner's attempt carries the CI
/// run's facts in its provenance (see `crate::settings`).
fn attempt(a: &bridge_model::Attempt) -> Attempt {
    let runner = a.provenance.contains_key("ci_run_id");
    Attempt {
        device: if a.device.is_empty() {
            "?".to_owned()
        } else {
            a.device.clone()
        },
        runner,
        started_at: a.started_at,
        ended_at: a.ended_at,
        outcome: a.outcome,
        code: match (a.exit_code, a.signal) {
            (Some(c), _) => format!("exit {c}"),
            (_, Some(s)) => format!("signal {s}"),
            _ => String::new(),
        },
        message: a.message.clone(),
        stdout_tail: a.stdout_tail.clone(),
        stderr_tail: a.stderr_tail.clone(),
    }
}
