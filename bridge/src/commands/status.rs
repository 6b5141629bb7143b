//! `bridge status`: counts of tasks per status, overall and per batch.

use std::collections::{BTreeMap, BTreeSet};

use bridge_model::{BatchId, Status};
use clap::Args;
use serde::Serialize;

use super::GlobalArgs;
use super::common::open_session;
use crate::error::{CliResult, EXIT_OK};
use crate::output::{print_json, print_table, timestamp};
use crate::workspace::now_ms;

/// Show how many tasks are pending, running, done, failed, … per batch
///
/// Works offline on the local replica; run `bridge sync` first to see other
/// devices' and runners' latest results.
///
/// Pending tasks this device leaves for other devices (their submitters are
/// not in `[worker] run-tasks-from`) are counted apart: "N pending, of which
/// M left for other devices".
///
/// JSON (--json): {"workspace", "tasks", "counts": {"pending": N, "blocked": N,
/// "skipped": N, "running": N, "done": N, "failed": N, "cancelled": N,
/// "untrusted": N}, "left_for_others":
/// {"tasks": M, "submitters": [NAME…], "run_tasks_from": {"entries", "default"}},
/// "batches": [{"id", "created_at", "submitted_by", "tasks", "counts": {…},
/// "left_for_others": M, "audience"?: [names]}],
/// "private"?: [{"batch", "audience": [names], "tasks", "documents",
/// "granted_at"}]}
///
/// "private" lists the private batches this device is not in the audience
/// of: only what their grant says (no task names, commands or results).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    /// Print JSON for scripts (format above)
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct BatchCounts {
    id: BatchId,
    created_at: String,
    submitted_by: String,
    tasks: usize,
    counts: BTreeMap<&'static str, usize>,
    /// Pending tasks of the batch this device leaves for others.
    left_for_others: usize,
    /// The audience's names, for a private batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<Vec<String>>,
}

/// The pending tasks this device leaves for other devices.
#[derive(Serialize)]
struct LeftJson {
    tasks: usize,
    submitters: BTreeSet<String>,
    run_tasks_from: crate::run_policy::Setting,
}

#[derive(Serialize)]
struct StatusJson {
    workspace: String,
    remote: Option<String>,
    /// `[store] blobs`, when blobs are kept apart from the remote.
    #[serde(skip_serializing_if = "Option::is_none")]
    blobs: Option<String>,
    tasks: usize,
    counts: BTreeMap<&'static str, usize>,
    left_for_others: LeftJson,
    batches: Vec<BatchCounts>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    private: Vec<crate::audience::PrivateSummary>,
}

fn zero_counts() -> BTreeMap<&'static str, usize> {
    Status::ALL.iter().map(|s| (s.as_str(), 0)).collect()
}

#[expect(
    clippy::too_many_lines,
    reason = "a command's steps in order; the ratchet (clippy.toml) stops it growing"
)]
pub fn run(g: &GlobalArgs, args: StatusArgs) -> CliResult<u8> {
    let session = open_session(g)?;
    let derived = session.view().derive(now_ms(), session.policy);
    let policy = session.configured_task_policy()?;
    crate::run_policy::warn_unknown_names(&policy, &mut Default::default());
    let mut left = LeftJson {
        tasks: 0,
        submitters: BTreeSet::new(),
        run_tasks_from: policy.setting(),
    };
    let mut counts = zero_counts();
    let mut batches: BTreeMap<BatchId, BatchCounts> = BTreeMap::new();
    for (_, h) in session.headers() {
        batches
            .entry(h.batch.clone())
            .or_insert_with(|| BatchCounts {
                id: h.batch.clone(),
                created_at: timestamp(h.created_at),
                submitted_by: h.submitted_by.clone(),
                tasks: 0,
                counts: zero_counts(),
                left_for_others: 0,
                audience: session.vault.audience(h.batch.as_str()).and_then(|a| {
                    a.newest()
                        .map(|n| crate::audience::names(session.vault.roster(), &n.body.audience))
                }),
            });
    }
    for t in session.view().tasks() {
        let Some(d) = derived.get(&t.id) else {
            continue;
        };
        *counts.entry(d.status.as_str()).or_default() += 1;
        let refused = policy.left_for_others(t, d.status);
        if let Some(crate::run_policy::Refusal::Submitter { name }) = &refused {
            left.tasks += 1;
            left.submitters.insert(name.clone());
        }
        if let Some(b) = batches.get_mut(t.home().batch()) {
            b.tasks += 1;
            *b.counts.entry(d.status.as_str()).or_default() += 1;
            b.left_for_others += usize::from(refused.is_some());
        }
    }
    let report = StatusJson {
        workspace: session.ws.config.workspace.id.clone(),
        remote: session.ws.remote_spec().map(str::to_owned),
        blobs: session.ws.config.blobs().map(str::to_owned),
        tasks: session.view().len(),
        counts,
        left_for_others: left,
        batches: batches.into_values().filter(|b| b.tasks > 0).collect(),
        private: crate::audience::foreign_summaries(&session.vault),
    };
    // The last use of the view: the process ends after printing, and
    // freeing 100k tasks piece by piece costs more than reading them.
    std::mem::forget(derived);
    session.end_of_process();
    if args.json {
        print_json(&report)?;
        return Ok(EXIT_OK);
    }
    let store = match (&report.remote, &report.blobs) {
        (Some(remote), Some(blobs)) => format!("{remote}, blobs in {blobs}"),
        (Some(remote), None) => remote.clone(),
        (None, _) => "no remote".to_owned(),
    };
    outln!(
        "Workspace {} ({store}), {} tasks",
        report.workspace,
        report.tasks
    );
    let line: Vec<String> = Status::ALL
        .iter()
        .map(|s| format!("{} {}", report.counts[s.as_str()], s.as_str()))
        .collect();
    outln!("{}", line.join(" · "));
    let left = &report.left_for_others;
    if left.tasks > 0 {
        let whose: Vec<String> = left
            .submitters
            .iter()
            .map(|n| crate::output::safe(n).into_owned())
            .collect();
        outln!(
            "{} pending, of which {} left for other devices: submitted by {}, not in run-tasks-from = {}",
            report.counts[Status::Pending.as_str()],
            left.tasks,
            whose.join(", "),
            left.run_tasks_from
        );
    }
    outln!();
    if report.batches.is_empty() {
        if report.private.is_empty() {
            outln!("No tasks yet: submit some with `bridge submit`.");
        }
        print_private(&report.private);
        return Ok(EXIT_OK);
    }
    let mut header = vec!["BATCH", "SUBMITTED", "BY", "TASKS"];
    header.extend(Status::ALL.iter().map(|s| s.as_str()));
    let rows: Vec<Vec<String>> = report
        .batches
        .iter()
        .map(|b| {
            let mut r = vec![
                b.id.short().to_owned(),
                b.created_at.clone(),
                b.submitted_by.clone(),
                b.tasks.to_string(),
            ];
            r.extend(Status::ALL.iter().map(|s| b.counts[s.as_str()].to_string()));
            r
        })
        .collect();
    let upper: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    print_table(&upper, &rows)?;
    for b in report.batches.iter().filter(|b| b.audience.is_some()) {
        outln!(
            "Batch {} is private to {}.",
            b.id.short(),
            b.audience.as_deref().unwrap_or_default().join(", ")
        );
    }
    print_private(&report.private);
    Ok(EXIT_OK)
}

/// The private batches this device cannot read: their grant's notice only.
fn print_private(private: &[crate::audience::PrivateSummary]) {
    for p in private {
        outln!(
            "Batch {} ({}), {}; not readable on this device.",
            bridge_model::BatchId::short_of(&p.batch),
            p.granted_at,
            p.line()
        );
    }
}
