//! `bridge outputs`: copy a task's output files out of the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use bridge_model::TaskId;
use bridge_model::view::{TaskView, canonical_result};
use bridge_store::BlobId;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::common::{Target, open_session, resolve_target};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::output::{print_json, safe};
use crate::workspace::Session;

/// Copy the output files of done tasks into a folder
///
/// Copies the files of the canonical result (the first successful attempt)
/// under their paths relative to the task's working folder.
///
/// TARGET is one task (its files go straight into --to), or several: a
/// matrix entry (`count` for `count[book=alice]`, …), a batch, or --all
/// (every done task). Then each task's files go into a folder of its own
/// under --to, named after the task (`count[book=alice]` → `count_book_alice_`,
/// with the short id added when two tasks share a name), as
/// `gh run download` does; tasks not done yet are listed and skipped.
///
/// Outputs keep no file modes: a file that starts as a program does (an
/// ELF header or `#!`) is made executable.
///
/// JSON (--json): one task: {"task", "files"}; several: {"tasks": [{"task",
/// "name", "dir", "files"}], "not_done": [ID…]}.
#[derive(Debug, Args)]
pub struct OutputsArgs {
    /// The task (id, id prefix or name), a matrix entry or a batch
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub task: Option<String>,
    /// Every done task, each into its own folder
    #[arg(long)]
    pub all: bool,
    /// Where to copy the files (created if missing)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub to: PathBuf,
    /// Print the copied files as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: OutputsArgs) -> CliResult<u8> {
    let mut session = open_session(g)?;
    let ids = match (&args.task, args.all) {
        (Some(arg), _) => match resolve_target(&mut session, arg)? {
            Target::Task(id) => return one(g, &session, &id, &args),
            many => many.tasks(),
        },
        (None, _) => session.view().tasks().map(|t| t.id.clone()).collect(),
    };
    many(g, &session, &ids, &args)
}

/// One task's files, straight into `--to`.
fn one(g: &GlobalArgs, session: &Session, id: &TaskId, args: &OutputsArgs) -> CliResult<u8> {
    let Some(t) = session.view().get(id) else {
        return Ok(EXIT_OK);
    };
    if canonical_result(&t.facts).is_none() {
        return Err(CliError::hint(
            anyhow!("task {} ({}) has no result yet", id.short(), t.spec.name),
            "see its status with `bridge show`; `bridge sync` fetches results from other devices",
        ));
    }
    let copied = copy_outputs(session, t, &args.to)?;
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

/// Several tasks' files, each into a folder of its own under `--to`.
fn many(g: &GlobalArgs, session: &Session, ids: &[TaskId], args: &OutputsArgs) -> CliResult<u8> {
    let tasks: Vec<&TaskView> = ids.iter().filter_map(|id| session.view().get(id)).collect();
    let (done, not_done): (Vec<&TaskView>, Vec<&TaskView>) = tasks
        .into_iter()
        .partition(|t| canonical_result(&t.facts).is_some());
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for t in &done {
        *names.entry(folder_name(&t.spec.name)).or_default() += 1;
    }
    let mut report = Vec::new();
    for t in &done {
        let mut folder = folder_name(&t.spec.name);
        if names.get(&folder).copied().unwrap_or(0) > 1 || folder.is_empty() {
            folder = format!("{folder}-{}", t.id.short());
        }
        let dir = args.to.join(&folder);
        let copied = copy_outputs(session, t, &dir)?;
        if !args.json && !g.quiet {
            outln!(
                "{} ({}): {} file{} in {}",
                safe(&t.spec.name),
                t.id.short(),
                copied.len(),
                if copied.len() == 1 { "" } else { "s" },
                safe(&dir.display().to_string())
            );
        }
        report.push(json!({"task": t.id, "name": t.spec.name, "dir": dir, "files": copied}));
    }
    if args.json {
        let not_done: Vec<&TaskId> = not_done.iter().map(|t| &t.id).collect();
        print_json(&json!({"tasks": report, "not_done": not_done}))?;
    } else if !g.quiet {
        if !not_done.is_empty() {
            let names: Vec<String> = not_done
                .iter()
                .take(5)
                .map(|t| format!("{} ({})", safe(&t.spec.name), t.id.short()))
                .collect();
            errln!(
                "{} task{} not done yet, nothing copied for {}: {}{}",
                not_done.len(),
                if not_done.len() == 1 { " is" } else { "s are" },
                if not_done.len() == 1 { "it" } else { "them" },
                names.join(", "),
                if not_done.len() > 5 { ", …" } else { "" }
            );
        }
        if report.is_empty() {
            errln!(
                "No task there is done: `bridge status` shows what is left, `bridge sync` fetches results."
            );
        }
    }
    Ok(EXIT_OK)
}

/// A folder name for a task: its name with every character but letters,
/// digits, `-` and `.` as `_` (`count[book=alice]` → `count_book_alice_`),
/// never `.` or `..`.
fn folder_name(name: &str) -> String {
    let folder: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if folder.chars().all(|c| c == '.') {
        folder.replace('.', "_")
    } else {
        folder
    }
}

/// Copies task `t`'s result files under `to`, each at its relative path.
fn copy_outputs(session: &Session, t: &TaskView, to: &Path) -> CliResult<Vec<PathBuf>> {
    let id = &t.id;
    let Some(a) = canonical_result(&t.facts) else {
        return Ok(Vec::new());
    };
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
        refuse_links(to, rel)?;
        let dest = to.join(rel);
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
        mark_executable(&dest);
        copied.push(dest);
    }
    Ok(copied)
}

/// Gives `path` the execute bits (where it has read bits) when it starts
/// as a program does (an ELF header or `#!`): a task's outputs keep no file
/// modes, and a linked program or a script must run where it lands
/// (`make CC='bridge exec -- cc'`).
fn mark_executable(path: &Path) {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut head = [0u8; 4];
    let starts = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok();
    if !starts || !(head == *b"\x7fELF" || head.starts_with(b"#!")) {
        return;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        let exec = (mode & 0o444) >> 2;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | exec));
    }
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
