//! `bridge submit`: turn a task file, a command, or a command per file into
//! a batch of tasks in the local replica (then sync when a remote is set).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use bridge_model::doc::{self, BatchHeader};
use bridge_model::limits::shown;
use bridge_model::{BatchId, Command, DocId, InputRef, Status, TaskId, TaskSpec};
use clap::Args;
use serde::Serialize;

use super::GlobalArgs;
use super::arglines;
use super::common::{open_session, sync_after_write};
use crate::audience;
use crate::error::{CliError, CliResult, EXIT_OK, HintExt};
use crate::output::print_json;
use crate::taskfile::{self, PlannedTask};
use crate::vault::Placement;
use crate::workspace::{Session, now_ms, random_bytes};

/// How many tasks one Automerge document holds at most; a larger batch spans
/// several documents, so loading and editing stay fast.
pub const MAX_TASKS_PER_DOC: usize = 1000;

/// Submit tasks: from a YAML file, one command, or one command per file or per line
///
/// The same task (same command, environment, inputs, limits) is only ever
/// stored once: submitting it again, here or on another device, adds nothing,
/// and a task that is already done is a cache hit. Use --rerun to run
/// identical tasks again. A waiting task another member submitted is
/// submitted again as yours too, so that devices that run your tasks (see
/// `run-tasks-from`) run it.
///
/// Every task is checked before anything is stored: its limits (timeout up to
/// 30 days, no NUL bytes, bounded names, commands and paths: see the README),
/// at most 100,000 tasks per submission (a matrix is counted before it is
/// expanded), and no input that is a link leading out of its folder.
///
/// Examples:
///   bridge submit tasks.yaml
///   bridge submit -- python3 simulate.py --seed 7
///   bridge submit --each 'docs/*.md' --output '*.json' -- python3 embed.py {}
///   bridge submit --args seeds.txt -- python3 simulate.py --seed {}
///   cut -f1,3 runs.tsv | bridge submit --args - -- ./fit {1} --rate={2}
///   bridge submit --input-url 'https://example.org/big.csv#sha256=HEX' -- wc -l big.csv
///   bridge submit --dry-run tasks.yaml
///
/// In --each commands, {} is the file, {/} its name, {.} the file without its
/// extension, {/.} the name without extension and {//} its folder.
///
/// With --args, as GNU parallel's `:::: FILE`: one task per non-empty line,
/// {} is the line, {1}, {2}, … its columns (split on tabs, or on --colsep),
/// {#} the task's number, and {.} {/} {/.} {//} as above. A placeholder is
/// replaced inside the word that holds it, never through a shell: each word
/// stays one argument. A command without placeholders gets the line (with
/// --colsep: its columns) appended as its last argument(s).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SubmitArgs {
    /// A YAML task file (see the README for its fields)
    #[arg(value_name = "FILE.yaml", conflicts_with = "each")]
    pub file: Option<PathBuf>,
    /// The command of a single task (or of each task with --each or --args)
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Submit one task per file matching this glob (relative to the current folder)
    #[arg(long, value_name = "GLOB")]
    pub each: Option<String>,
    /// Submit one task per line of this file (- for stdin), as GNU
    /// parallel's `:::: FILE`; see {} and {1} above
    #[arg(long = "args", value_name = "FILE|-", conflicts_with_all = ["file", "each"])]
    pub args_file: Option<String>,
    /// With --args: split lines into columns on this regular expression (as
    /// GNU parallel's --colsep) instead of on tabs, e.g. ',' or ' +' or '\|'
    #[arg(long, value_name = "REGEX", requires = "args_file")]
    pub colsep: Option<String>,
    /// The task's name (default: the command); with --each or --args it may
    /// hold placeholders, else each task is named NAME[line N] (--args)
    #[arg(long)]
    pub name: Option<String>,
    /// Time limit of one attempt, e.g. 90s, 10m, 2h
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub timeout: String,
    /// Retries after a failed attempt
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// An input file, copied into the task's folder (repeatable); with
    /// --args it may hold placeholders (`--input {}`): each line's own
    #[arg(long = "input", value_name = "PATH")]
    pub inputs: Vec<String>,
    /// An input the worker downloads and checks by its SHA-256, placed at
    /// PATH (default: the URL's last segment) (repeatable)
    #[arg(
        long = "input-url",
        value_name = "URL#sha256=HEX[&path=PATH]",
        conflicts_with = "file"
    )]
    pub input_urls: Vec<String>,
    /// A glob of output files to keep (repeatable)
    #[arg(long = "output", value_name = "GLOB")]
    pub outputs: Vec<String>,
    /// An environment variable KEY=VALUE (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// A label the worker must have (repeatable)
    #[arg(long = "runs-on", value_name = "LABEL")]
    pub runs_on: Vec<String>,
    /// Higher runs first
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i64,
    /// Cut the task off the network (run only by a worker that can)
    #[arg(long, conflicts_with = "file")]
    pub no_network: bool,
    /// A path outside its folder the task reads: absolute or ~/... (run
    /// only by a worker whose `[worker] allow-read` covers it) (repeatable)
    #[arg(long = "allow-read", value_name = "PATH", conflicts_with = "file")]
    pub allow_read: Vec<String>,
    /// Run the tasks again even if identical ones are done
    #[arg(long)]
    pub rerun: bool,
    /// Do not sync with the remote after submitting
    #[arg(long)]
    pub offline: bool,
    /// Make the batch private to these members (names, comma-separated, or
    /// `devices` for every member that is not a runner); overrides the task
    /// file's `audience:`
    #[arg(long, value_delimiter = ',', value_name = "NAME,…")]
    pub audience: Vec<String>,
    /// Print the tasks that would be submitted (name, command, inputs) and
    /// store nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the batch and its tasks as JSON (with --dry-run: the tasks)
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct SubmittedTask {
    id: TaskId,
    name: String,
    /// `new`, `known` (already submitted) or `cached` (already done).
    state: &'static str,
}

#[derive(Serialize)]
struct Submitted {
    batch: Option<BatchId>,
    /// The names of the batch's audience, when it is private.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    audience: Vec<String>,
    documents: usize,
    new: usize,
    known: usize,
    cached: usize,
    tasks: Vec<SubmittedTask>,
}

pub fn run(g: &GlobalArgs, args: SubmitArgs) -> CliResult<u8> {
    let (plan, file_audience) = plan(&args)?;
    // Before anything is stored (input blobs included): a task that breaks a
    // limit is refused with nothing written.
    check_plan(&plan)?;
    if args.dry_run {
        // Before the workspace is opened: a dry run touches no store.
        return dry_run::print(&plan, args.json);
    }
    let mut session = open_session(g)?;
    super::members::require_submitter(&session.vault, "submit tasks")?;
    let nonce = if args.rerun {
        Some(hex::encode(random_bytes::<8>()?))
    } else {
        None
    };
    let audience = if args.audience.is_empty() {
        file_audience
    } else {
        args.audience.clone()
    };
    let batch = BatchId::new(now_ms(), random_bytes::<10>()?);
    let (mut names, mut grant, mut grant_file) = (Vec::new(), None, None);
    if !audience.is_empty() {
        let (n, hash, file) = make_private(
            &mut session,
            &batch,
            &audience,
            plan.len(),
            g.quiet || args.json,
        )?;
        (names, grant, grant_file) = (n, Some(hash), Some(file));
    }
    let placement = Placement::Batch(batch.clone());
    let specs = to_specs(&session, &plan, nonce, &placement)?;
    let mut result = submit_specs(&mut session, specs, batch, grant)?;
    match grant_file {
        // Every task was known already: no batch, so no grant (it was not
        // pushed yet; left, it would announce a batch that does not exist).
        Some(file) if result.batch.is_none() => {
            session
                .ws
                .replica
                .remove_store_files(&[file])
                .context("cannot remove the audience grant of a batch that was not created")?;
        }
        _ => result.audience = names,
    }
    if args.json {
        print_json(&result)?;
    } else if !g.quiet {
        match &result.batch {
            Some(b) => outln!(
                "Submitted batch {}: {} new task{}{}{}.",
                b.short(),
                result.new,
                if result.new == 1 { "" } else { "s" },
                already(&result),
                if result.audience.is_empty() {
                    String::new()
                } else {
                    format!("; private to {}", result.audience.join(", "))
                }
            ),
            None => outln!("Nothing new to submit{}.", already(&result)),
        }
    }
    if !args.offline {
        let what = match &result.batch {
            Some(b) => format!("batch {}", b.short()),
            None => "the submission".to_owned(),
        };
        sync_after_write(&mut session, g, &what)?;
    }
    Ok(EXIT_OK)
}

fn already(r: &Submitted) -> String {
    let mut parts = Vec::new();
    if r.cached > 0 {
        parts.push(format!(
            "{} already done (cache hit; --rerun runs them again)",
            r.cached
        ));
    }
    if r.known > 0 {
        parts.push(format!("{} already submitted", r.known));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    }
}

/// Makes `batch` private to `names` (resolved against the roster, this
/// device always included): a fresh batch key, and its generation-0 grant
/// written and added to the vault, so that the inputs and documents
/// written next are sealed to it. Returns the audience's names, the
/// grant's hash (which the batch's header names) and its store name.
fn make_private(
    session: &mut Session,
    batch: &BatchId,
    names: &[String],
    tasks: usize,
    quiet: bool,
) -> CliResult<(Vec<String>, String, String)> {
    let me = session.vault.identity().member_id().clone();
    let resolved = audience::resolve_names(session.vault.roster(), names, &me)?;
    let key = bridge_crypto::BatchKey::generate();
    let documents = tasks.div_ceil(MAX_TASKS_PER_DOC) as u64;
    let (notice, file) = audience::write_first_grant(
        &session.vault,
        batch.as_str(),
        &resolved.keys,
        &key,
        tasks as u64,
        documents,
        session.now_ms(),
    )?;
    let ids = notice.body.audience.clone();
    let hash = notice.hash.clone();
    let vault = std::sync::Arc::get_mut(&mut session.vault)
        .ok_or_else(|| anyhow!("internal: the vault is shared while submitting"))?;
    vault.add_grant(notice);
    vault.confirm_first_grant(batch.as_str(), &hash);
    let shown_names = audience::names(session.vault.roster(), &ids);
    if resolved.added_self && !quiet {
        errln!(
            "note: this device ({}) was added to the audience: a submitter always reads its own batch",
            session
                .vault
                .me()
                .map(|m| m.name.clone())
                .unwrap_or_default()
        );
    }
    Ok((shown_names, hash, file))
}

/// Builds the plan from the file, or from the command line, and the
/// file's audience.
fn plan(args: &SubmitArgs) -> CliResult<(Vec<PlannedTask>, Vec<String>)> {
    if let Some(file) = &args.file {
        if !args.command.is_empty() {
            return Err(CliError::hint(
                anyhow!("give either a task file or a command after --, not both"),
                "bridge submit tasks.yaml   or   bridge submit -- CMD ARGS…",
            ));
        }
        return Ok(taskfile::load_with_audience(file)?);
    }
    if args.command.is_empty() {
        return Err(CliError::hint(
            anyhow!("nothing to submit"),
            "bridge submit tasks.yaml, bridge submit -- CMD ARGS…, bridge submit --each 'GLOB' -- CMD {}, or bridge submit --args FILE -- CMD {}",
        ));
    }
    let timeout_s = humantime::parse_duration(&args.timeout)
        .with_context(|| format!("--timeout {} is not a duration", args.timeout))
        .hint("write e.g. 90s, 10m or 2h")?
        .as_secs()
        .max(1);
    let mut env = BTreeMap::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--env {kv} is not KEY=VALUE"))?;
        env.insert(k.to_owned(), v.to_owned());
    }
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let mut base_inputs = Vec::new();
    for i in &args.inputs {
        if args.args_file.is_some() && arglines::has_placeholder(i) {
            // Per line: see `arg_tasks`.
            continue;
        }
        base_inputs.extend(taskfile::find_inputs(&cwd, i).map_err(|m| anyhow!(m))?);
    }
    let url_inputs = args
        .input_urls
        .iter()
        .map(|a| parse_input_url(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| anyhow!(m))
        .hint("write --input-url 'https://host/file.csv#sha256=HEX' (sha256sum prints HEX), with &path=data/file.csv to choose its path")?;
    let make = |command: Command, name: String, extra: Vec<(String, PathBuf)>| {
        let mut inputs = base_inputs.clone();
        inputs.extend(extra);
        inputs.sort();
        inputs.dedup();
        PlannedTask {
            name,
            command,
            env: env.clone(),
            inputs,
            url_inputs: url_inputs.clone(),
            outputs: args.outputs.clone(),
            timeout_s,
            retries: args.retries,
            runs_on: args.runs_on.clone(),
            priority: args.priority,
            needs: Vec::new(),
            network: !args.no_network,
            allow_read: args.allow_read.clone(),
        }
    };
    let mut planned: Vec<PlannedTask> = match &args.each {
        None if args.args_file.is_some() => arg_tasks(args, &cwd)?
            .into_iter()
            .map(|(command, name, inputs)| make(command, name, inputs))
            .collect(),
        None => {
            // A multi-line `sh -c` script names the task by its first line.
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| bridge_model::first_line(&args.command.join(" ")));
            vec![make(command_of(args.command.clone()), name, Vec::new())]
        }
        Some(glob) => each_tasks(args, &cwd, glob)?
            .into_iter()
            .map(|(command, name, file)| make(command, name, vec![file]))
            .collect(),
    };
    for t in &mut planned {
        taskfile::check_url_inputs(&t.inputs, &mut t.url_inputs)
            .map_err(|m| anyhow!("task `{}`: {m}", t.name))?;
    }
    Ok((planned, Vec::new()))
}

/// A task of `--each`: its command, its name and its file (its path in
/// the task's folder, and here).
type EachTask = (Command, String, (String, PathBuf));

/// The command, name and file of each task of `--each GLOB`.
fn each_tasks(args: &SubmitArgs, cwd: &Path, glob: &str) -> CliResult<Vec<EachTask>> {
    let files = taskfile::find_inputs(cwd, glob).map_err(|m| anyhow!(m))?;
    if files.len() > taskfile::MAX_TASKS_PER_SUBMIT {
        return Err(CliError::hint(
            anyhow!(
                "--each {glob} matches {} files; one submission holds at most {} tasks",
                files.len(),
                taskfile::MAX_TASKS_PER_SUBMIT
            ),
            "submit the files in parts, e.g. one --each per folder",
        ));
    }
    Ok(files
        .into_iter()
        .map(|(rel, abs)| {
            let argv: Vec<String> = args.command.iter().map(|a| placeholders(a, &rel)).collect();
            let name = match &args.name {
                Some(n) => placeholders(n, &rel),
                None => format!("{} {rel}", args.command.first().map_or("", String::as_str)),
            };
            (command_of(argv), name, (rel, abs))
        })
        .collect())
}

/// A task of `--args`: its command, its name and the inputs its line names.
type ArgTask = (Command, String, Vec<(String, PathBuf)>);

/// The command, name and inputs of each task of `--args FILE|-`: one per
/// non-empty line (see [`arglines`]). An `--input` with a placeholder
/// (`--input {}`, as parallel's `--transferfile {}`) is each line's own.
fn arg_tasks(args: &SubmitArgs, cwd: &Path) -> CliResult<Vec<ArgTask>> {
    let source = args.args_file.as_deref().unwrap_or("-");
    if let [one] = args.command.as_slice()
        && one.contains(char::is_whitespace)
    {
        // `-- 'echo {}'` would splice each line into a shell script.
        return Err(CliError::hint(
            anyhow!(
                "with --args, the command `{one}` must be given as separate words, not as one shell script"
            ),
            "write `-- echo {}` (each word one argument), or `-- sh -c 'echo \"$1\"' sh {}` to use a shell",
        ));
    }
    let (shown_source, bytes) = if source == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)
            .context("cannot read the argument lines from stdin (--args -)")?;
        ("stdin".to_owned(), buf)
    } else {
        let bytes = std::fs::read(source)
            .with_context(|| format!("cannot read --args {source}"))
            .hint("give a file with one argument line per task, or - to read them from stdin")?;
        (source.to_owned(), bytes)
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow!("line {line} of {shown_source} is not UTF-8 text")
    })?;
    let colsep = arglines::Colsep::parse(args.colsep.as_deref()).map_err(|m| anyhow!(m))?;
    let lines = arglines::lines(&text, &colsep);
    if lines.is_empty() {
        return Err(CliError::hint(
            anyhow!("--args {source}: {shown_source} has no argument lines (every line is empty)"),
            "put one task's argument(s) per line",
        ));
    }
    if lines.len() > taskfile::MAX_TASKS_PER_SUBMIT {
        return Err(CliError::hint(
            anyhow!(
                "--args {source} has {} lines; one submission holds at most {} tasks",
                lines.len(),
                taskfile::MAX_TASKS_PER_SUBMIT
            ),
            "split the file (e.g. with `split -l`) and submit each part",
        ));
    }
    let templated = args.command.iter().any(|w| arglines::has_placeholder(w));
    let first = args.command.first().map_or("", String::as_str);
    let mut tasks = Vec::with_capacity(lines.len());
    for line in &lines {
        let sub = |w: &str| arglines::substitute(w, line, &shown_source);
        let mut argv = args
            .command
            .iter()
            .map(|w| sub(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| anyhow!(m))
            .hint("a line lacks a column the command names: fix the line, or --colsep if the columns are not tab-separated")?;
        if !templated {
            // As GNU parallel: no replacement string, the arguments go last.
            if args.colsep.is_some() {
                argv.extend(line.columns.iter().map(|c| (*c).to_owned()));
            } else {
                argv.push(line.line.to_owned());
            }
        }
        let name = match &args.name {
            Some(n) if arglines::has_placeholder(n) => sub(n).map_err(|m| anyhow!(m))?,
            Some(n) => format!("{n}[line {}]", line.number),
            None => default_name(first, line.line),
        };
        let mut inputs = Vec::new();
        for pattern in args.inputs.iter().filter(|i| arglines::has_placeholder(i)) {
            let pattern = sub(pattern).map_err(|m| anyhow!(m))?;
            let found = taskfile::find_inputs(cwd, &pattern)
                .map_err(|m| anyhow!("line {} of {shown_source}: {m}", line.number))
                .hint("each line's --input names a file (or glob) below the current folder")?;
            inputs.extend(found);
        }
        // Never `command_of`: a line with spaces must not become a shell
        // script.
        tasks.push((Command::Argv(argv), name, inputs));
    }
    Ok(tasks)
}

/// `CMD LINE`, cut short: a name is for people (and bounded), the line
/// itself is in the command.
fn default_name(first: &str, line: &str) -> String {
    const MAX: usize = 200;
    // A tab between columns reads as a space in a name.
    let name = format!("{first} {}", line.replace('\t', " "));
    if name.len() <= MAX {
        return name;
    }
    let mut end = MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}

/// Parses `--input-url URL#sha256=HEX[&path=PATH]`. The fragment, which an
/// HTTP client never sends, carries the hash (as pip's `#sha256=` does).
fn parse_input_url(arg: &str) -> Result<taskfile::UrlInput, String> {
    let (url, fragment) = arg
        .rsplit_once('#')
        .ok_or_else(|| format!("--input-url {arg}: the URL has no `#sha256=HEX`"))?;
    let (mut sha256, mut path) = (None, None);
    for part in fragment.split('&') {
        match part.split_once('=') {
            Some(("sha256", v)) => sha256 = Some(v),
            Some(("path", v)) => path = Some(v),
            _ => {
                return Err(format!(
                    "--input-url {arg}: `#{fragment}` is not `sha256=HEX` or `sha256=HEX&path=PATH`"
                ));
            }
        }
    }
    let sha256 =
        sha256.ok_or_else(|| format!("--input-url {arg}: the URL has no `#sha256=HEX`"))?;
    taskfile::url_input(url, sha256, path).map_err(|e| e.to_string())
}

/// A lone argument with spaces is a shell script (as GNU parallel treats
/// it); otherwise the arguments are the program and its arguments.
fn command_of(argv: Vec<String>) -> Command {
    match argv.as_slice() {
        [one] if one.contains(char::is_whitespace) => Command::Shell {
            shell: "sh".into(),
            script: one.clone(),
        },
        _ => Command::Argv(argv),
    }
}

/// GNU parallel's replacement strings for one file.
pub(super) fn placeholders(arg: &str, rel: &str) -> String {
    let path = Path::new(rel);
    let name = path.file_name().and_then(|s| s.to_str()).unwrap_or(rel);
    let dir = path
        .parent()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(".");
    let no_ext = match rel.rfind('.') {
        Some(i) if i > rel.rfind('/').map_or(0, |s| s + 1) => &rel[..i],
        _ => rel,
    };
    let name_no_ext = Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name);
    arg.replace("{//}", dir)
        .replace("{/.}", name_no_ext)
        .replace("{/}", name)
        .replace("{.}", no_ext)
        .replace("{}", rel)
}

/// The spec of a planned task, given its stored inputs and its needs' ids.
fn spec_of(
    t: &PlannedTask,
    inputs: Vec<InputRef>,
    needs: Vec<TaskId>,
    nonce: Option<String>,
) -> TaskSpec {
    TaskSpec {
        name: t.name.clone(),
        command: t.command.clone(),
        env: t.env.clone().into_iter().collect(),
        inputs,
        outputs: t.outputs.clone(),
        timeout_s: t.timeout_s,
        retries: t.retries,
        runs_on: t.runs_on.clone(),
        priority: t.priority,
        needs,
        nonce,
        network: t.network,
        allow_read: t.allow_read.clone(),
    }
}

/// Checks a spec against every limit a worker holds it to, so that no task a
/// worker would refuse (or choke on) is ever stored (issue 12, items 10 and
/// 20): the model's limits, and output globs that compile.
fn check_spec(spec: &TaskSpec) -> CliResult<()> {
    let hint = "fix the field named above in the task file or on the command line (the README lists the limits)";
    let context = || format!("task `{}` cannot be submitted", shown(&spec.name));
    crate::worker::check_runnable(spec)
        .with_context(context)
        .hint(hint)?;
    Ok(())
}

/// Checks every planned task before anything is stored: its inputs as
/// placeholders (their content is not read yet), its needs as placeholder
/// ids (they only count).
fn check_plan(plan: &[PlannedTask]) -> CliResult<()> {
    let placeholder_sha = "0".repeat(64);
    let placeholder_need = TaskId::from_digest(&[0; 16]);
    for t in plan {
        // An input the store cannot hold is refused before any other input
        // is sealed (else those would stay as orphans until `gc`).
        for (rel, abs) in &t.inputs {
            let len = std::fs::metadata(abs)
                .with_context(|| format!("cannot read the input {}", abs.display()))?
                .len();
            if len > crate::vault::MAX_BLOB_PLAIN_BYTES {
                return Err(CliError::hint(
                    anyhow!(
                        "input `{}` of task `{}` is {len} bytes, over the limit of {} bytes for one file in the store",
                        shown(rel),
                        shown(&t.name),
                        crate::vault::MAX_BLOB_PLAIN_BYTES
                    ),
                    "split or compress it, or give it as a URL input (`{url, sha256}`)",
                ));
            }
        }
        let mut inputs: Vec<InputRef> = t
            .inputs
            .iter()
            .map(|(rel, _)| InputRef::from_blob(rel.clone(), placeholder_sha.clone(), "0".into()))
            .collect();
        inputs.extend(
            t.url_inputs
                .iter()
                .map(|u| InputRef::from_url(u.path.clone(), u.sha256.clone(), u.url.clone())),
        );
        let needs = vec![placeholder_need.clone(); t.needs.len()];
        check_spec(&spec_of(t, inputs, needs, Some("0".repeat(16))))?;
    }
    Ok(())
}

/// Stores input files as blobs and turns the plan into specs (in plan order,
/// so every `needs` names an earlier task's id).
fn to_specs(
    session: &Session,
    plan: &[PlannedTask],
    nonce: Option<String>,
    placement: &Placement,
) -> CliResult<Vec<TaskSpec>> {
    let mut specs: Vec<TaskSpec> = Vec::with_capacity(plan.len());
    // A file many tasks share (a model, a script) is read and sealed once:
    // sealing is convergent, so it would be one blob anyway (issue 18).
    let mut stored: HashMap<&Path, (String, String)> = HashMap::new();
    for t in plan {
        let mut inputs = Vec::with_capacity(t.inputs.len());
        for (rel, abs) in &t.inputs {
            let (sha256, blob) = match stored.get(abs.as_path()) {
                Some(known) => known.clone(),
                None => {
                    let (sha256, blob) =
                        session
                            .vault
                            .put_blob_file(abs, placement)
                            .with_context(|| {
                                format!("cannot store input {} of task `{}`", abs.display(), t.name)
                            })?;
                    let known = (sha256, blob.as_str().to_owned());
                    stored.insert(abs, known.clone());
                    known
                }
            };
            inputs.push(InputRef::from_blob(rel.clone(), sha256, blob));
        }
        for u in &t.url_inputs {
            let input = InputRef::from_url(u.path.clone(), u.sha256.clone(), u.url.clone());
            // The model's own check, so that no spec a worker refuses is stored.
            input
                .source()
                .with_context(|| format!("task `{}`", t.name))?;
            inputs.push(input);
        }
        let needs = t.needs.iter().map(|&i| specs[i].id()).collect();
        let spec = spec_of(t, inputs, needs, nonce.clone());
        check_spec(&spec)?;
        specs.push(spec);
    }
    Ok(specs)
}

/// Adds the specs that are new as a batch of one or more documents and
/// writes them to the replica.
fn submit_specs(
    session: &mut Session,
    specs: Vec<TaskSpec>,
    batch: BatchId,
    grant: Option<String>,
) -> CliResult<Submitted> {
    let now = now_ms();
    let derived = session.view().derive(now, session.policy);
    let mut seen = HashSet::new();
    let mut new_specs = Vec::new();
    let mut tasks = Vec::new();
    let (mut known, mut cached) = (0, 0);
    for spec in specs {
        let id = spec.id();
        if !seen.insert(id.clone()) {
            continue;
        }
        let state = match derived.get(&id).map(|d| d.status) {
            Some(Status::Done) => {
                cached += 1;
                "cached"
            }
            // Waiting, and not (validly) submitted by this member: submit
            // it again, so that it is this member's task too. Devices run
            // tasks by whose they are (issue 13, item 2): the same task
            // queued by another member (or written by a runner key, which
            // makes it untrusted) would otherwise stay someone else's, and
            // be left by this member's own devices.
            Some(Status::Pending | Status::Blocked | Status::Untrusted)
                if !session
                    .view()
                    .get(&id)
                    .is_some_and(|t| session.is_own_task(t)) =>
            {
                "new"
            }
            Some(_) => {
                known += 1;
                "known"
            }
            None => "new",
        };
        tasks.push(SubmittedTask {
            id,
            name: spec.name.clone(),
            state,
        });
        if state == "new" {
            new_specs.push(spec);
        }
    }
    let mut result = Submitted {
        batch: None,
        audience: Vec::new(),
        documents: 0,
        new: new_specs.len(),
        known,
        cached,
        tasks,
    };
    if new_specs.is_empty() {
        return Ok(result);
    }
    let parts = new_specs.chunks(MAX_TASKS_PER_DOC).count() as u32;
    let device = session.ws.settings.device_name();
    for (part, chunk) in new_specs.chunks(MAX_TASKS_PER_DOC).enumerate() {
        let header = BatchHeader {
            batch: batch.clone(),
            part: part as u32,
            parts,
            created_at: now,
            submitted_by: device.clone(),
            device: device.clone(),
            grant: grant.clone(),
        };
        let d = doc::create(&session.writer, &header, chunk)
            .with_context(|| format!("cannot create the document for batch {batch}"))?;
        session.add_new_doc(DocId::new(batch.clone(), part as u32), header, d);
    }
    session.flush()?;
    result.batch = Some(batch);
    result.documents = parts as usize;
    Ok(result)
}

/// `--dry-run`: the plan, printed, nothing stored.
mod dry_run {
    use std::borrow::Cow;

    use bridge_model::Command;
    use serde::Serialize;

    use crate::error::{CliResult, EXIT_OK};
    use crate::output::{print_json, safe};

    use super::super::joblog::quoted;
    use crate::taskfile::PlannedTask;

    #[derive(Serialize)]
    struct Url<'a> {
        path: &'a str,
        url: &'a str,
        sha256: &'a str,
    }

    #[derive(Serialize)]
    struct Planned<'a> {
        name: &'a str,
        /// The argv a worker starts (a shell script as `[shell, "-c", script]`).
        command: Vec<&'a str>,
        inputs: Vec<&'a str>,
        url_inputs: Vec<Url<'a>>,
        outputs: &'a [String],
        /// The names of the tasks it needs.
        needs: Vec<&'a str>,
    }

    fn argv(c: &Command) -> Vec<&str> {
        match c {
            Command::Argv(argv) => argv.iter().map(String::as_str).collect(),
            Command::Shell { shell, script } => vec![shell, "-c", script],
        }
    }

    pub(super) fn print(plan: &[PlannedTask], json: bool) -> CliResult<u8> {
        let tasks: Vec<Planned<'_>> = plan
            .iter()
            .map(|t| Planned {
                name: &t.name,
                command: argv(&t.command),
                inputs: t.inputs.iter().map(|(rel, _)| rel.as_str()).collect(),
                url_inputs: t
                    .url_inputs
                    .iter()
                    .map(|u| Url {
                        path: &u.path,
                        url: &u.url,
                        sha256: &u.sha256,
                    })
                    .collect(),
                outputs: &t.outputs,
                needs: t.needs.iter().map(|&i| plan[i].name.as_str()).collect(),
            })
            .collect();
        if json {
            print_json(&tasks)?;
            return Ok(EXIT_OK);
        }
        outln!(
            "Dry run: would submit {} task{} (nothing is stored):",
            tasks.len(),
            if tasks.len() == 1 { "" } else { "s" }
        );
        for t in &tasks {
            outln!("{}", safe(t.name));
            let words: Vec<Cow<'_, str>> = t.command.iter().map(|w| quoted(w)).collect();
            crate::commands::show::print_lines("    command  ", &words.join(" "));
            let mut inputs: Vec<&str> = t.inputs.clone();
            inputs.extend(t.url_inputs.iter().map(|u| u.path));
            if !inputs.is_empty() {
                outln!("    inputs   {}", safe(&inputs.join(" ")));
            }
            if !t.outputs.is_empty() {
                outln!("    outputs  {}", safe(&t.outputs.join(" ")));
            }
            if !t.needs.is_empty() {
                outln!("    needs    {}", safe(&t.needs.join(", ")));
            }
        }
        Ok(EXIT_OK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_placeholders() {
        assert_eq!(placeholders("{}", "a/b.txt"), "a/b.txt");
        assert_eq!(placeholders("{/}", "a/b.txt"), "b.txt");
        assert_eq!(placeholders("{.}", "a/b.txt"), "a/b");
        assert_eq!(placeholders("{/.}", "a/b.txt"), "b");
        assert_eq!(placeholders("{//}", "a/b.txt"), "a");
        assert_eq!(placeholders("{.}", "a.d/b"), "a.d/b");
    }

    #[test]
    fn input_url_argument() -> Result<(), String> {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let u = parse_input_url(&format!("https://h/d/big.csv#sha256={sha}"))?;
        assert_eq!(
            (u.url.as_str(), u.path.as_str(), u.sha256.as_str()),
            ("https://h/d/big.csv", "big.csv", sha)
        );
        let u = parse_input_url(&format!(
            "https://h/get?id=7#sha256={}&path=data/x.csv",
            sha.to_uppercase()
        ))?;
        assert_eq!(
            (u.url.as_str(), u.path.as_str(), u.sha256.as_str()),
            ("https://h/get?id=7", "data/x.csv", sha)
        );
        for bad in [
            "https://h/x.csv".to_owned(),
            "https://h/x.csv#md5=00".to_owned(),
            "https://h/x.csv#sha256=00".to_owned(),
            format!("ftp://h/x.csv#sha256={sha}"),
            format!("https://h/x.csv#sha256={sha}&path=/etc/x"),
        ] {
            assert!(parse_input_url(&bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
