//! `bridge outputs`: copy a task's output files out of the store.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use bridge_model::view::canonical_result;
use bridge_store::BlobId;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::common::{open_session, resolve_task};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::output::{print_json, safe};

/// Copy the output files of a done task into a folder
///
/// Copies the files of the canonical result (the first successful attempt)
/// under their paths relative to the task's working folder.
#[derive(Debug, Args)]
pub struct OutputsArgs {
    /// The task (id, id prefix or name)
    pub task: String,
    /// Where to copy the files (created if missing)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub to: PathBuf,
    /// Print the copied files as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: OutputsArgs) -> CliResult<u8> {
    let mut session = open_session(g)?;
    let id = resolve_task(&mut session, &args.task)?;
    let Some(t) = session.view().get(&id) else {
        return Ok(EXIT_OK);
    };
    let a = canonical_result(&t.facts).ok_or_else(|| {
        CliError::hint(
            anyhow!("task {} ({}) has no result yet", id.short(), t.spec.name),
            "see its status with `bridge show`; `bridge sync` fetches results from other devices",
        )
    })?;
    let mut copied = Vec::new();
    for (rel, blob) in &a.outputs {
        let blob: BlobId = blob
            .parse()
            .map_err(|_| anyhow!("output {rel} of task {} names an invalid blob", id.short()))?;
        if rel.split('/').any(|c| c == ".." || c.is_empty()) || rel.starts_with('/') {
            return Err(anyhow!(
                "output path `{rel}` of task {} is not a safe relative path",
                id.short()
            )
            .into());
        }
        refuse_links(&args.to, rel)?;
        let dest = args.to.join(rel);
        session
            .vault
            .copy_blob_to(&blob, &dest, None)
            .with_context(|| {
                format!(
                    "cannot copy output {rel} of task {} to {}",
                    id.short(),
                    dest.display()
                )
            })
            .map_err(|e| {
                CliError::hint(
                    e,
                    "run `bridge sync` to fetch the output files from the remote",
                )
            })?;
        copied.push(dest);
    }
    if args.json {
        print_json(&json!({"task": id, "files": copied}))?;
    } else if !g.quiet {
        if copied.is_empty() {
            outln!(
                "Task {} ({}) has no output files.",
                id.short(),
                safe(&t.spec.name)
            );
        }
        for c in copied {
            // The file names are the task's: never raw on a terminal.
            outln!("{}", safe(&c.display().to_string()));
        }
    }
    Ok(EXIT_OK)
}

/// Refuses to write output `rel` through a symbolic link under `to` (a
/// folder or the file itself): an output's name is the task's, and a link
/// left in the destination would send it elsewhere (issue 12, item 7's
/// sibling for outputs). `to` itself may be a link: the user named it.
fn refuse_links(to: &Path, rel: &str) -> CliResult<()> {
    let mut path = to.to_path_buf();
    for part in rel.split('/') {
        path.push(part);
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            return Err(CliError::hint(
                anyhow!(
                    "{} is a symbolic link: bridge does not write outputs through links",
                    path.display()
                ),
                "remove the link, or copy the outputs to another folder with --to DIR",
            ));
        }
    }
    Ok(())
}
