//! The runner workflow's own state, and what a dispatch may do about it.
//!
//! GitHub disables a public repository's scheduled workflows after 60 days
//! without repository activity (state `disabled_inactivity`), and a
//! workflow that is disabled cannot be dispatched either: GitHub answers
//! 422 "Cannot trigger a 'workflow_dispatch' on a disabled workflow". So a
//! dispatch reads the workflow first ([`GitHub::workflow`]) and asks
//! [`plan_dispatch`] what to do: go ahead, enable it again first
//! ([`GitHub::enable_workflow`]) when GitHub disabled it for inactivity, or
//! refuse ([`NotDispatchable`]) when a person disabled it (that decision is
//! theirs to undo), when the repository is a fork whose workflows are off,
//! or when the workflow was deleted.

use http::Method;
use serde::Deserialize;

use crate::client::{GitHub, GitHubError, Operation, encode};

/// A workflow's state, as `GET …/actions/workflows/{workflow}` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowState {
    /// It runs on its triggers.
    Active,
    /// Its file was deleted.
    Deleted,
    /// The repository is a fork whose workflows are not enabled yet.
    DisabledFork,
    /// GitHub disabled it: a public repository without activity for 60
    /// days (scheduled workflows).
    DisabledInactivity,
    /// A person disabled it (the Actions tab, `gh workflow disable`, the
    /// API).
    DisabledManually,
    /// A state this version of bridge does not know.
    Other(String),
}

impl WorkflowState {
    /// The state as GitHub writes it.
    pub fn parse(s: &str) -> WorkflowState {
        match s {
            "active" => WorkflowState::Active,
            "deleted" => WorkflowState::Deleted,
            "disabled_fork" => WorkflowState::DisabledFork,
            "disabled_inactivity" => WorkflowState::DisabledInactivity,
            "disabled_manually" => WorkflowState::DisabledManually,
            other => WorkflowState::Other(other.to_owned()),
        }
    }

    /// GitHub's name for the state.
    pub fn as_str(&self) -> &str {
        match self {
            WorkflowState::Active => "active",
            WorkflowState::Deleted => "deleted",
            WorkflowState::DisabledFork => "disabled_fork",
            WorkflowState::DisabledInactivity => "disabled_inactivity",
            WorkflowState::DisabledManually => "disabled_manually",
            WorkflowState::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for WorkflowState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| WorkflowState::parse(&s))
    }
}

/// A workflow: the fields bridge reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Workflow {
    /// The workflow's id.
    pub id: u64,
    /// Its file, e.g. `.github/workflows/bridge.yml`.
    #[serde(default)]
    pub path: String,
    /// Whether it runs.
    pub state: WorkflowState,
    /// Its page (the file on GitHub).
    #[serde(default)]
    pub html_url: String,
}

/// What a dispatch does about the workflow's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchPlan {
    /// Dispatch it.
    Dispatch,
    /// GitHub disabled it for inactivity: enable it, then dispatch.
    EnableThenDispatch,
}

/// A workflow bridge must not dispatch, by its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotDispatchable {
    /// A person disabled it; bridge does not override them.
    #[error(
        "workflow {workflow} of {repo} was disabled by a person (state disabled_manually): not dispatching"
    )]
    DisabledManually {
        /// The repository.
        repo: String,
        /// The workflow file.
        workflow: String,
    },
    /// The repository is a fork whose workflows were never enabled.
    #[error(
        "workflow {workflow} of {repo} is disabled because the repository is a fork whose workflows are not enabled (state disabled_fork): not dispatching"
    )]
    DisabledFork {
        /// The repository.
        repo: String,
        /// The workflow file.
        workflow: String,
    },
    /// The workflow's file was deleted.
    #[error("workflow {workflow} of {repo} was deleted: not dispatching")]
    Deleted {
        /// The repository.
        repo: String,
        /// The workflow file.
        workflow: String,
    },
}

/// What to do before dispatching `workflow` of `repo` in `state`. A state
/// bridge does not know is left to GitHub (the dispatch says whether it
/// accepts it).
pub fn plan_dispatch(
    repo: &str,
    workflow: &str,
    state: &WorkflowState,
) -> Result<DispatchPlan, NotDispatchable> {
    let names = || (repo.to_owned(), workflow.to_owned());
    match state {
        WorkflowState::Active | WorkflowState::Other(_) => Ok(DispatchPlan::Dispatch),
        WorkflowState::DisabledInactivity => Ok(DispatchPlan::EnableThenDispatch),
        WorkflowState::DisabledManually => {
            let (repo, workflow) = names();
            Err(NotDispatchable::DisabledManually { repo, workflow })
        }
        WorkflowState::DisabledFork => {
            let (repo, workflow) = names();
            Err(NotDispatchable::DisabledFork { repo, workflow })
        }
        WorkflowState::Deleted => {
            let (repo, workflow) = names();
            Err(NotDispatchable::Deleted { repo, workflow })
        }
    }
}

impl GitHub {
    /// Reads `workflow` (a file name or id).
    pub fn workflow(&self, workflow: &str) -> Result<Workflow, GitHubError> {
        let call = self.call(Operation::GetWorkflow, format!("read workflow {workflow}"));
        let answer = self.send(
            &call,
            Method::GET,
            &format!(
                "{}/actions/workflows/{}",
                self.repo_path(),
                encode(workflow)
            ),
            None::<&()>,
        )?;
        Self::decode(&call, &answer.body)
    }

    /// Enables `workflow` (its state becomes `active`).
    pub fn enable_workflow(&self, workflow: &str) -> Result<(), GitHubError> {
        let call = self.call(
            Operation::EnableWorkflow,
            format!("enable workflow {workflow}"),
        );
        self.send(
            &call,
            Method::PUT,
            &format!(
                "{}/actions/workflows/{}/enable",
                self.repo_path(),
                encode(workflow)
            ),
            None::<&()>,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's example answer of "Get a workflow", with the state set.
    fn answer(state: &str) -> String {
        format!(
            r#"{{"id": 161335, "node_id": "MDg6V29ya2Zsb3cxNjEzMzU=", "name": "CI",
            "path": ".github/workflows/blank.yaml", "state": "{state}",
            "created_at": "2020-01-08T23:48:37.000-08:00",
            "updated_at": "2020-01-08T23:50:21.000-08:00",
            "url": "https://api.github.com/repos/octo-org/octo-repo/actions/workflows/161335",
            "html_url": "https://github.com/octo-org/octo-repo/blob/master/.github/workflows/161335",
            "badge_url": "https://github.com/octo-org/octo-repo/workflows/CI/badge.svg"}}"#
        )
    }

    #[test]
    fn reads_every_state_github_documents() {
        for (text, state) in [
            ("active", WorkflowState::Active),
            ("deleted", WorkflowState::Deleted),
            ("disabled_fork", WorkflowState::DisabledFork),
            ("disabled_inactivity", WorkflowState::DisabledInactivity),
            ("disabled_manually", WorkflowState::DisabledManually),
            ("paused", WorkflowState::Other("paused".to_owned())),
        ] {
            let w: Workflow = serde_json::from_str(&answer(text)).unwrap();
            assert_eq!(w.id, 161335);
            assert_eq!(w.path, ".github/workflows/blank.yaml");
            assert_eq!(w.state, state);
            assert_eq!(w.state.as_str(), text);
        }
        // The state is required: an answer without it is not a workflow.
        assert!(serde_json::from_str::<Workflow>(r#"{"id": 1}"#).is_err());
    }

    #[test]
    fn only_inactivity_is_undone_by_bridge() {
        let plan = |s| plan_dispatch("o/r", "bridge.yml", &s);
        assert_eq!(plan(WorkflowState::Active), Ok(DispatchPlan::Dispatch));
        assert_eq!(
            plan(WorkflowState::DisabledInactivity),
            Ok(DispatchPlan::EnableThenDispatch)
        );
        // Unknown states are left to GitHub.
        assert_eq!(
            plan(WorkflowState::Other("new".to_owned())),
            Ok(DispatchPlan::Dispatch)
        );
        let manual = plan(WorkflowState::DisabledManually).unwrap_err();
        assert_eq!(
            manual.to_string(),
            "workflow bridge.yml of o/r was disabled by a person (state disabled_manually): not dispatching"
        );
        assert!(matches!(
            plan(WorkflowState::DisabledFork),
            Err(NotDispatchable::DisabledFork { .. })
        ));
        assert_eq!(
            plan(WorkflowState::Deleted).unwrap_err().to_string(),
            "workflow bridge.yml of o/r was deleted: not dispatching"
        );
    }
}
