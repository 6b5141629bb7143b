//! `bridge watch [RUN]`: attach to a GitHub Actions run of the runner
//! workflow again (issue 16, item 6) and follow it as `dispatch --watch`
//! does, with the same exit codes.

use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;

use super::GlobalArgs;
use super::common::open_session;
use super::dispatch;
use crate::error::{CliError, CliResult, HintExt};
use crate::github::{self, ApiError, Client};

/// Follow a run of the runner workflow until the pool drains
///
/// Attaches to RUN (a run id, as `bridge dispatch` prints it), or to the
/// newest run of the [github] workflow when RUN is left out, and shows
/// tasks done / failed / left and the runners' states as `bridge dispatch
/// --watch` does: the tasks not finished when it starts, and those a runner
/// of that run already finished.
///
/// Exit codes (as `gh run watch --exit-status`): 0 the pool drained and no
/// watched task failed, 3 a watched task failed, 6 the run ended with tasks
/// left, or failed or was cancelled, 1 an error (no such run, a refused
/// token). The token (GH_TOKEN, else GITHUB_TOKEN, else `gh auth token`)
/// needs Actions: read.
///
/// JSON (--json): {"run_id", "html_url", "run_status", "run_conclusion",
/// "done", "failed", "cancelled", "skipped", "left", "drained",
/// "exit_reason": "drained"|"tasks_failed"|"tasks_left"|"run_failed"}
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The run to follow (default: the workflow's newest run)
    #[arg(value_name = "RUN")]
    pub run: Option<u64>,
    /// How often to look
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub interval: String,
    /// Run this shell command (sh -c) when watching ends; its environment
    /// says how: BRIDGE_EVENT=watch-done, BRIDGE_STATUS (done, failed or
    /// incomplete), BRIDGE_DONE, BRIDGE_FAILED, BRIDGE_LEFT, BRIDGE_RUN_ID,
    /// BRIDGE_RUN_URL
    #[arg(long, value_name = "CMD")]
    pub then: Option<String>,
    /// Show a desktop notification when watching ends (and for each batch
    /// that finishes meanwhile)
    #[arg(long)]
    pub notify: bool,
    /// Print the outcome as JSON for scripts (format above)
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: WatchArgs) -> CliResult<u8> {
    let interval: Duration = humantime::parse_duration(&args.interval)
        .with_context(|| format!("--interval {} is not a duration", args.interval))
        .hint("write e.g. 10s or 1m")?;
    let mut session = open_session(g)?;
    let (section, repo) = github::configured(&session.ws, &g.settings)?;
    let gh = github::connect(&g.settings, &repo)?;
    let run_id = match args.run {
        Some(id) => id,
        None => newest_run(&gh, section.workflow())?,
    };
    if !g.quiet && !args.json {
        errln!(
            "Following run {run_id} of workflow {} of {repo}.",
            section.workflow()
        );
    }
    let notifier = crate::notify::Notifier::new(&session.ws, args.then.clone(), args.notify);
    dispatch::watch(
        g,
        &mut session,
        &gh,
        (Some(run_id), &notifier),
        interval,
        args.json,
    )
}

/// The newest run of `workflow`, or an error saying how to start one.
fn newest_run(gh: &Client, workflow: &str) -> CliResult<u64> {
    let page = gh
        .list_runs(workflow, None, 1, 1)
        .map_err(|e| ApiError::new(e, gh.token_source))?;
    page.workflow_runs.first().map(|r| r.id).ok_or_else(|| {
        CliError::hint(
            anyhow!("workflow {workflow} of {} has no run yet", gh.repo()),
            "start one with `bridge dispatch`",
        )
    })
}
