//! `bridge usage`: the runner minutes bridge's GitHub Actions runs used this
//! month, against the budget in bridge.toml.

use bridge_github::Month;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use crate::error::{CliResult, EXIT_OK};
use crate::github::{self, ApiError};
use crate::output::{print_json, print_table};
use crate::workspace::Workspace;

/// Show the runner minutes bridge's GitHub Actions runs used this month
///
/// Lists the runs of the [github] workflow created in the month (UTC) and
/// adds up their jobs' minutes from the jobs API: each job of every attempt
/// from its start to its end (a running one: to now), rounded up to the
/// whole minute, as GitHub bills. The run-timing endpoint is not read:
/// GitHub is retiring it, and it answers zero for some accounts. macOS and
/// Windows runners count 10× and 2× against a plan's included minutes, and
/// self-hosted runners and public repositories' standard runners are free;
/// the figures here are neither multiplied nor left out. `bridge dispatch`
/// refuses to go past [github] minutes-budget without --force.
///
/// The token needs Actions: read.
///
/// JSON (--json): {"repository", "workflow", "month", "minutes", "budget",
/// "left", "runs": [{"id", "created_at", "status", "conclusion", "minutes",
/// "jobs", "html_url"}]}
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct UsageArgs {
    /// The month to report, YYYY-MM (default: this month, UTC)
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<Month>,
    /// Print JSON for scripts (format above)
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: UsageArgs) -> CliResult<u8> {
    let ws = Workspace::find(g.workspace.as_deref(), g.engine())?;
    let (section, repo) = github::configured(&ws, &g.settings)?;
    let month = args
        .month
        .unwrap_or_else(|| Month::of(std::time::SystemTime::now()));
    let gh = github::connect(&g.settings, &repo)?;
    let workflow = section.workflow();
    let runs = gh
        .month_usage(workflow, month, crate::workspace::now_ms())
        .map_err(|e| ApiError::new(e, gh.token_source))?;
    let minutes: u64 = runs.iter().map(|r| r.minutes).sum();
    let budget = section.minutes_budget;
    let left = budget.map(|b| b.saturating_sub(minutes));
    if args.json {
        print_json(&json!({
            "repository": repo.to_string(),
            "workflow": workflow,
            "month": month.to_string(),
            "minutes": minutes,
            "budget": budget,
            "left": left,
            "runs": runs,
        }))?;
        return Ok(EXIT_OK);
    }
    outln!(
        "{repo}, workflow {workflow}, {month}: {} run(s), {minutes} runner minute(s){}",
        runs.len(),
        match (budget, left) {
            (Some(b), Some(l)) => format!(" of the {b} budgeted ({l} left)"),
            _ => " (no minutes-budget under [github] in bridge.toml)".to_owned(),
        }
    );
    if runs.is_empty() {
        return Ok(EXIT_OK);
    }
    outln!();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.created_at.clone(),
                r.conclusion
                    .clone()
                    .or_else(|| r.status.clone())
                    .unwrap_or_default(),
                r.minutes.to_string(),
                r.jobs.to_string(),
                r.html_url.clone(),
            ]
        })
        .collect();
    print_table(
        &["RUN", "CREATED", "STATUS", "MINUTES", "JOBS", "URL"],
        &rows,
    )?;
    Ok(EXIT_OK)
}
