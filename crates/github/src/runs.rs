//! Starting the runner workflow (`workflow_dispatch`) and following what it
//! started: the run, its jobs, and, when GitHub does not say which run a
//! dispatch started, finding it among the workflow's runs.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use http::Method;
use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::client::{GitHub, GitHubError, Operation, encode};

/// A run started by a dispatch (`return_run_details`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DispatchDetails {
    /// The run's id.
    pub workflow_run_id: u64,
    /// The run in the API.
    pub run_url: String,
    /// The run's page.
    pub html_url: String,
}

/// A workflow run: the fields bridge reads.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowRun {
    /// The run id.
    pub id: u64,
    /// `queued`, `in_progress`, `completed`, …
    #[serde(default)]
    pub status: Option<String>,
    /// `success`, `failure`, `cancelled`, … once completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// The event that started it.
    #[serde(default)]
    pub event: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// The run's page.
    #[serde(default)]
    pub html_url: String,
    /// The run in the API.
    #[serde(default)]
    pub url: String,
}

impl WorkflowRun {
    /// Whether the run has finished.
    pub fn is_completed(&self) -> bool {
        self.status.as_deref() == Some("completed")
    }
}

/// One page of `GET …/workflows/{workflow}/runs`.
#[derive(Debug, Clone, Deserialize)]
pub struct RunsPage {
    /// This page's runs, newest first.
    pub workflow_runs: Vec<WorkflowRun>,
}

/// A job of a run: the fields bridge reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    /// `queued`, `in_progress`, `completed`, `waiting`, …
    #[serde(default)]
    pub status: Option<String>,
    /// Once completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// When a runner picked it up.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it ended.
    #[serde(default)]
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct JobsPage {
    #[serde(default)]
    total_count: u64,
    jobs: Vec<Job>,
}

/// Parses an RFC 3339 time as GitHub writes it, to milliseconds.
pub fn parse_time(s: &str) -> Option<Millis> {
    let t = humantime::parse_rfc3339_weak(s.trim()).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as Millis)
}

/// Among runs listed after a dispatch at `since` (ms), the one it started:
/// the earliest `workflow_dispatch` run created at or after `since`.
pub fn pick_dispatched_run(runs: &[WorkflowRun], since: Millis) -> Option<&WorkflowRun> {
    runs.iter()
        .filter(|r| r.event == "workflow_dispatch")
        .filter_map(|r| parse_time(&r.created_at).map(|t| (t, r)))
        .filter(|(t, _)| *t >= since)
        .min_by_key(|(t, r)| (*t, r.id))
        .map(|(_, r)| r)
}

/// How long a workflow run may last: GitHub cancels a run after 35 days,
/// so a run still listed as queued or in progress that was created earlier
/// is a stale record, not runners at work.
pub const RUN_LIFETIME_MS: Millis = 35 * 86_400_000;

/// The statuses of a run whose jobs may still start or run.
const ACTIVE_STATUSES: &[&str] = &["queued", "in_progress", "waiting", "requested", "pending"];

impl WorkflowRun {
    /// Whether the run may still start or run jobs at `now`: an active
    /// status, and created less than [`RUN_LIFETIME_MS`] before.
    pub fn is_active(&self, now: Millis) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| ACTIVE_STATUSES.contains(&s))
            && parse_time(&self.created_at).is_some_and(|t| now - t < RUN_LIFETIME_MS)
    }

    /// Whether the run ended without success: completed with a conclusion
    /// other than success, skipped or neutral (failure, cancelled,
    /// timed_out, startup_failure, …).
    pub fn failed(&self) -> bool {
        self.is_completed()
            && !matches!(
                self.conclusion.as_deref(),
                Some("success" | "skipped" | "neutral")
            )
    }
}

impl GitHub {
    /// Starts `workflow` on `git_ref` with `inputs`, asking for the run id.
    /// `None`: GitHub started it without saying which run it is (older
    /// GitHub Enterprise Server answers 204).
    pub fn dispatch(
        &self,
        workflow: &str,
        git_ref: &str,
        inputs: &BTreeMap<String, String>,
    ) -> Result<Option<DispatchDetails>, GitHubError> {
        let call = self.call(
            Operation::Dispatch,
            format!("start workflow {workflow} on {git_ref}"),
        );
        let body = serde_json::json!({
            "ref": git_ref,
            "inputs": inputs,
            "return_run_details": true,
        });
        let answer = self.send(
            &call,
            Method::POST,
            &format!(
                "{}/actions/workflows/{}/dispatches",
                self.repo_path(),
                encode(workflow)
            ),
            Some(&body),
        )?;
        if answer.status == 204 || answer.body.trim().is_empty() {
            return Ok(None);
        }
        Self::decode(&call, &answer.body).map(Some)
    }

    /// One page (from 1) of `workflow`'s runs, newest first, optionally of
    /// one event only.
    pub fn list_runs(
        &self,
        workflow: &str,
        event: Option<&str>,
        per_page: u32,
        page: u32,
    ) -> Result<RunsPage, GitHubError> {
        let mut query = format!("per_page={per_page}&page={page}&exclude_pull_requests=true");
        if let Some(e) = event {
            query.push_str(&format!("&event={}", encode(e)));
        }
        self.list_runs_where(workflow, &query)
    }

    /// The runs of `workflow` that may still start or run jobs at `now`
    /// (see [`WorkflowRun::is_active`]), newest first: those GitHub lists
    /// as queued or in progress.
    pub fn active_runs(
        &self,
        workflow: &str,
        now: Millis,
    ) -> Result<Vec<WorkflowRun>, GitHubError> {
        let mut runs: Vec<WorkflowRun> = Vec::new();
        for status in ["in_progress", "queued"] {
            let query = format!("per_page=100&page=1&exclude_pull_requests=true&status={status}");
            for run in self.list_runs_where(workflow, &query)?.workflow_runs {
                if run.is_active(now) && !runs.iter().any(|r| r.id == run.id) {
                    runs.push(run);
                }
            }
        }
        runs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(runs)
    }

    fn list_runs_where(&self, workflow: &str, query: &str) -> Result<RunsPage, GitHubError> {
        let call = self.call(
            Operation::ListRuns,
            format!("list the runs of workflow {workflow}"),
        );
        let answer = self.send(
            &call,
            Method::GET,
            &format!(
                "{}/actions/workflows/{}/runs?{query}",
                self.repo_path(),
                encode(workflow)
            ),
            None::<&()>,
        )?;
        Self::decode(&call, &answer.body)
    }

    /// One run.
    pub fn run(&self, id: u64) -> Result<WorkflowRun, GitHubError> {
        let call = self.call(Operation::GetRun, format!("read workflow run {id}"));
        let answer = self.send(
            &call,
            Method::GET,
            &format!("{}/actions/runs/{id}", self.repo_path()),
            None::<&()>,
        )?;
        Self::decode(&call, &answer.body)
    }

    /// Every job of the latest attempt of a run (a matrix holds at most 256).
    pub fn jobs(&self, run_id: u64) -> Result<Vec<Job>, GitHubError> {
        self.jobs_of(run_id, "latest")
    }

    /// Every job of every attempt of a run (each attempt's jobs bill their
    /// minutes), at most 1,000.
    pub fn jobs_of_every_attempt(&self, run_id: u64) -> Result<Vec<Job>, GitHubError> {
        self.jobs_of(run_id, "all")
    }

    fn jobs_of(&self, run_id: u64, filter: &str) -> Result<Vec<Job>, GitHubError> {
        let call = self.call(
            Operation::ListJobs,
            format!("list the jobs of workflow run {run_id}"),
        );
        let mut jobs = Vec::new();
        for page in 1..=10 {
            let answer = self.send(
                &call,
                Method::GET,
                &format!(
                    "{}/actions/runs/{run_id}/jobs?filter={filter}&per_page=100&page={page}",
                    self.repo_path()
                ),
                None::<&()>,
            )?;
            let got: JobsPage = Self::decode(&call, &answer.body)?;
            let n = got.jobs.len();
            jobs.extend(got.jobs);
            if n < 100 || jobs.len() as u64 >= got.total_count {
                break;
            }
        }
        Ok(jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runs page as GitHub's description shows it (trimmed), recorded.
    const RUNS: &str = r#"{"total_count": 3, "workflow_runs": [
        {"id": 30433644, "event": "workflow_dispatch", "status": "queued", "conclusion": null,
         "created_at": "2026-11-22T10:00:05Z", "html_url": "https://github.com/o/r/actions/runs/30433644",
         "head_branch": "main", "run_number": 3},
        {"id": 30433643, "event": "workflow_dispatch", "status": "in_progress", "conclusion": null,
         "created_at": "2026-11-22T10:00:02Z", "html_url": "https://github.com/o/r/actions/runs/30433643"},
        {"id": 30433642, "event": "schedule", "status": "completed", "conclusion": "success",
         "created_at": "2026-11-22T10:00:03Z", "html_url": "https://github.com/o/r/actions/runs/30433642"},
        {"id": 30433641, "event": "workflow_dispatch", "status": "completed", "conclusion": "success",
         "created_at": "2026-11-22T09:00:00Z", "html_url": "https://github.com/o/r/actions/runs/30433641"}
    ]}"#;

    #[test]
    fn finds_the_dispatched_run_after_a_204() {
        let page: RunsPage = serde_json::from_str(RUNS).unwrap();
        let since = parse_time("2026-11-22T10:00:00Z").unwrap();
        // The earliest dispatch-made run since the dispatch; not the
        // scheduled one, not the older one.
        assert_eq!(
            pick_dispatched_run(&page.workflow_runs, since).unwrap().id,
            30433643
        );
        let later = parse_time("2026-11-22T11:00:00Z").unwrap();
        assert!(pick_dispatched_run(&page.workflow_runs, later).is_none());
    }

    #[test]
    fn run_states_and_times() {
        let page: RunsPage = serde_json::from_str(RUNS).unwrap();
        assert!(!page.workflow_runs[0].is_completed());
        assert!(page.workflow_runs[2].is_completed());
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time(" 1970-01-01T00:00:00.250Z "), Some(250));
        assert_eq!(parse_time("yesterday"), None);
        // A run without a parseable creation time is never picked.
        let runs: Vec<WorkflowRun> = serde_json::from_str(
            r#"[{"id": 1, "event": "workflow_dispatch", "created_at": "soon"}]"#,
        )
        .unwrap();
        assert!(pick_dispatched_run(&runs, 0).is_none());
    }

    #[test]
    fn active_and_failed_runs() {
        let page: RunsPage = serde_json::from_str(RUNS).unwrap();
        let now = parse_time("2026-11-22T11:00:00Z").unwrap();
        let active: Vec<u64> = page
            .workflow_runs
            .iter()
            .filter(|r| r.is_active(now))
            .map(|r| r.id)
            .collect();
        assert_eq!(active, vec![30433644, 30433643]);
        // 35 days later GitHub has cancelled them: stale records.
        let later = now + RUN_LIFETIME_MS;
        assert!(!page.workflow_runs.iter().any(|r| r.is_active(later)));
        assert!(!page.workflow_runs[0].failed());
        assert!(!page.workflow_runs[2].failed());
        let runs: Vec<WorkflowRun> = serde_json::from_str(
            r#"[{"id": 1, "status": "completed", "conclusion": "cancelled", "created_at": "x"},
                {"id": 2, "status": "completed", "conclusion": "timed_out", "created_at": "x"},
                {"id": 3, "status": "completed", "conclusion": "skipped", "created_at": "x"}]"#,
        )
        .unwrap();
        let failed: Vec<bool> = runs.iter().map(WorkflowRun::failed).collect();
        assert_eq!(failed, vec![true, true, false]);
    }
}
