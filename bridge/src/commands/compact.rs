//! `bridge compact`: replace each document's chunk files with one snapshot,
//! here and on the remote.

use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::common::open_remote;
use crate::compact;
use crate::error::{CliResult, EXIT_OK};
use crate::output::{print_json, print_table};
use crate::workspace::{Workspace, open_vault};
use bridge_store::DocFolder;

/// Bundle each document's chunk files into one snapshot, here and on the remote
///
/// Every change ever written stays: a snapshot carries each chunk's own
/// signed envelope under its own name, and a file is deleted only once this
/// device has checked that a snapshot holds exactly its content. On a
/// remote, the snapshot is pushed and listed before anything is removed;
/// in a git repository each writer's branch is rewritten without its old
/// history (with a lease, so a writer pushing meanwhile keeps its files
/// until next time). Safe to run while devices and runners are working.
///
/// It also runs by itself: `bridge sync` and `bridge work` compact the
/// documents that have 32 chunk files or more, and `bridge run` does so for
/// at most 8 documents at the end of a run with budget to spare.
///
/// JSON (--json): {"snapshots": N, "files_removed": N, "remote_removed": N,
/// "remote_left": N, "offline": null|"why", "bytes_before": N, "bytes_after": N,
/// "documents": [{"document", "snapshot", "written", "chunks", "redundant": [...],
/// "bytes_before", "bytes_after", "kept"}]}
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CompactArgs {
    /// Compact the local replica only; leave the remote as it is
    #[arg(long)]
    pub local: bool,
    /// Print JSON for scripts (format above)
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: CompactArgs) -> CliResult<u8> {
    let ws = Workspace::find(g.workspace.as_deref(), g.engine())?;
    let vault = open_vault(&ws)?;
    let remote = match ws.remote_spec().filter(|_| !args.local) {
        Some(spec) => Some(open_remote(&ws.settings, spec, &ws.root).map_err(anyhow::Error::from)?),
        None => None,
    };
    let report = compact::run(
        &vault,
        &ws.replica,
        remote.as_deref(),
        DocFolder::Snapshots,
        None,
    )?;
    let before: u64 = report.documents.iter().map(|d| d.bytes_before).sum();
    let after: u64 = report.documents.iter().map(|d| d.bytes_after).sum();
    if args.json {
        print_json(&json!({
            "snapshots": report.snapshots(),
            "files_removed": report.redundant(),
            "remote_removed": report.remote_removed,
            "remote_left": report.remote_left,
            "packs_merged": report.packs_merged,
            "offline": report.offline,
            "bytes_before": before,
            "bytes_after": after,
            "documents": report.documents,
        }))?;
        return Ok(EXIT_OK);
    }
    if g.quiet {
        return Ok(EXIT_OK);
    }
    if report.documents.is_empty() {
        outln!("Nothing to compact: every document is one snapshot already.");
    } else {
        let rows: Vec<Vec<String>> = report
            .documents
            .iter()
            .map(|d| {
                vec![
                    d.document.clone(),
                    d.chunks.to_string(),
                    d.redundant.len().to_string(),
                    d.bytes_before.to_string(),
                    d.bytes_after.to_string(),
                ]
            })
            .collect();
        print_table(
            &[
                "DOCUMENT",
                "BUNDLED",
                "FILES REMOVED",
                "BYTES BEFORE",
                "BYTES AFTER",
            ],
            &rows,
        )?;
        outln!(
            "Compacted {} documents: {} files became {} snapshots ({before} → {after} bytes).",
            report.documents.len(),
            report.redundant(),
            report.snapshots()
        );
    }
    if let Some(why) = &report.offline {
        errln!("offline: {why}; compacted the local replica only, the remote is unchanged");
    } else if remote.is_some() {
        outln!(
            "Remote: {} files removed{}.",
            report.remote_removed,
            if report.remote_left > 0 {
                format!(
                    ", {} left for next time (their writers pushed meanwhile)",
                    report.remote_left
                )
            } else {
                String::new()
            }
        );
        if report.packs_merged > 0 {
            outln!(
                "Remote: {} packs of small blobs merged into larger ones.",
                report.packs_merged
            );
        }
    }
    Ok(EXIT_OK)
}
