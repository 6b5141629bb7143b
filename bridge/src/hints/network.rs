//! Hints and exit codes for the errors of the GitHub API and URL inputs.
//!
//! A GitHub API error's hint names what to fix: the token permission the
//! call needed ([`bridge_github::Operation::permission`]), the repository,
//! the workflow file, and, when the token was refused, where the token came
//! from (carried beside the error by [`ApiError`], since the library does
//! not know it).

use bridge_github::{
    API_ENV, ConnectError, GitHubError, NotDispatchable, Operation, TOKEN_PERMISSIONS,
};

use super::Advice;
use crate::github::{ApiError, TokenSource};

/// The advice for `cause` when it is one of this area's errors.
pub(super) fn advise(cause: &(dyn std::error::Error + 'static)) -> Option<Advice> {
    if let Some(e) = cause.downcast_ref::<ApiError>() {
        return Some(Advice::hint(github_hint(&e.error, Some(e.token_source))));
    }
    if let Some(e) = cause.downcast_ref::<GitHubError>() {
        return Some(Advice::hint(github_hint(e, None)));
    }
    if let Some(e) = cause.downcast_ref::<NotDispatchable>() {
        return Some(Advice::hint(not_dispatchable_hint(e)));
    }
    if let Some(e) = cause.downcast_ref::<ConnectError>() {
        return connect_hint(e).map(Advice::hint);
    }
    None
}

/// The hint for a failed call: what to fix, by status and operation.
fn github_hint(e: &GitHubError, token_source: Option<TokenSource>) -> String {
    let call = e.call();
    // Committing a file under .github/workflows/ needs the Workflows
    // permission besides Contents (GitHub refuses it with 403 otherwise).
    let perm = if call.op == Operation::PutContent && call.what.contains(".github/workflows/") {
        "Contents: read and write and Workflows: read and write"
    } else {
        call.op.permission()
    };
    let repo = &call.repo;
    match e {
        GitHubError::Unauthorized { .. } => match token_source {
            Some(source) => format!(
                "set {} to a valid token for {repo}: a fine-grained personal access token with {TOKEN_PERMISSIONS} (this call needs {perm}); the refused token came from {source}",
                source.variable()
            ),
            None => format!(
                "set GITHUB_TOKEN to a valid token for {repo}: a fine-grained personal access token with {TOKEN_PERMISSIONS} (this call needs {perm})"
            ),
        },
        GitHubError::Forbidden { .. } => format!(
            "the token lacks a permission, or an API rate limit was hit: give it {perm} on {repo} (a workflow's own GITHUB_TOKEN cannot manage secrets)"
        ),
        GitHubError::NotFound { .. } => match call.op {
            Operation::Dispatch | Operation::ListRuns => format!(
                "check that {repo} exists, that the token may see it (a fine-grained token lists its repositories; {perm}), and that the workflow file is pushed to the branch (`bridge init --github {repo}` writes it)"
            ),
            _ => format!(
                "check that {repo} exists and that the token may see it, with {perm} (a fine-grained token lists the repositories it reaches)"
            ),
        },
        GitHubError::Unprocessable { message, .. } => match call.op {
            // Disabled between bridge's look at it and the dispatch.
            Operation::Dispatch if message.contains("disabled workflow") => format!(
                "the workflow is disabled: enable it with `gh workflow enable --repo {repo}` or the Actions tab's \"Enable workflow\", then run `bridge dispatch` again"
            ),
            Operation::Dispatch => "the workflow must be on that branch with a `workflow_dispatch` trigger that declares every input sent (runners, budget, and each --input); fix [github] workflow/ref in bridge.toml or push the workflow".to_owned(),
            Operation::PutContent => "the branch must exist, and a file that exists is replaced only with its current blob sha (run the command again)".to_owned(),
            _ => "GitHub's message above says what it refused".to_owned(),
        },
        GitHubError::Status { .. } => {
            "GitHub may be having trouble: try again in a minute (https://www.githubstatus.com)".to_owned()
        }
        GitHubError::Transport { base, .. } => format!(
            "check the network; the API address is {base} (set {API_ENV} for GitHub Enterprise Server)"
        ),
        GitHubError::Decode { .. } => format!(
            "is {API_ENV} pointing at a GitHub API? (GitHub Enterprise Server: https://HOST/api/v3)"
        ),
    }
}

/// The hint for a workflow bridge will not dispatch: how a person enables
/// it (bridge does not undo a person's decision).
fn not_dispatchable_hint(e: &NotDispatchable) -> String {
    match e {
        NotDispatchable::DisabledManually { repo, workflow } => format!(
            "enable it if runners should start again: `gh workflow enable {workflow} --repo {repo}`, or the workflow's \"Enable workflow\" button in the Actions tab of {repo}"
        ),
        NotDispatchable::DisabledFork { repo, .. } => format!(
            "enable workflows for the fork in the Actions tab of {repo} (\"I understand my workflows, go ahead and enable them\")"
        ),
        NotDispatchable::Deleted { repo, .. } => format!(
            "push the workflow file again (`bridge init --github {repo}` writes it), or fix [github] workflow in bridge.toml"
        ),
    }
}

/// The hint for a client that could not be set up, when one helps.
fn connect_hint(e: &ConnectError) -> Option<&'static str> {
    match e {
        ConnectError::NotHttpUrl { .. } => Some(
            "write e.g. https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server",
        ),
        ConnectError::BadUri { .. } => Some("write e.g. https://api.github.com"),
        ConnectError::ExtraHeader(_) => Some("write one `Name: value` per line"),
        ConnectError::Runtime(_) | ConnectError::Build(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use bridge_github::Call;

    use super::*;

    fn error(op: Operation, status: u16) -> GitHubError {
        let call = Call {
            op,
            repo: "o/r".to_owned(),
            what: "do it".to_owned(),
        };
        let message = "m".to_owned();
        match status {
            401 => GitHubError::Unauthorized { call, message },
            404 => GitHubError::NotFound { call, message },
            422 => GitHubError::Unprocessable { call, message },
            _ => GitHubError::Status {
                call,
                status,
                message,
            },
        }
    }

    fn hint_of(e: anyhow::Error) -> Option<String> {
        super::super::advise(&e).hint
    }

    #[test]
    fn a_refused_token_names_its_source() {
        let e = ApiError::new(error(Operation::Dispatch, 401), TokenSource::GhCli);
        assert_eq!(
            e.to_string(),
            "cannot do it of o/r: the token was refused (HTTP 401: m)"
        );
        let hint = hint_of(e.into()).unwrap_or_default();
        assert!(
            hint.ends_with("(this call needs Actions: read and write); the refused token came from `gh auth token`"),
            "{hint}"
        );
        // Without the source: the same hint, less its last clause.
        let hint = hint_of(error(Operation::Dispatch, 401).into()).unwrap_or_default();
        assert!(
            hint.ends_with("(this call needs Actions: read and write)"),
            "{hint}"
        );
    }

    #[test]
    fn hints_follow_the_operation() {
        let hint = |op, status| {
            hint_of(ApiError::new(error(op, status), TokenSource::Env("GITHUB_TOKEN")).into())
                .unwrap_or_default()
        };
        assert!(hint(Operation::Dispatch, 404).contains("`bridge init --github o/r` writes it"));
        assert!(hint(Operation::GetRun, 404).contains("with Actions: read"));
        assert!(hint(Operation::Dispatch, 422).contains("`workflow_dispatch` trigger"));
        assert!(hint(Operation::PutContent, 422).contains("current blob sha"));
        assert!(hint(Operation::PutSecret, 422).contains("says what it refused"));
        assert!(hint(Operation::GetRun, 503).contains("githubstatus.com"));
        assert!(hint(Operation::GetRepo, 404).contains("with Metadata: read"));
    }

    #[test]
    fn a_refused_workflow_commit_names_the_workflows_permission() {
        let call = Call {
            op: Operation::PutContent,
            repo: "o/r".to_owned(),
            what: "commit .github/workflows/bridge.yml to main".to_owned(),
        };
        let e = GitHubError::Forbidden {
            call: call.clone(),
            message: "Resource not accessible by personal access token".to_owned(),
        };
        let hint = hint_of(e.into()).unwrap_or_default();
        assert!(hint.contains("Workflows: read and write"), "{hint}");
        let other = GitHubError::Forbidden {
            call: Call {
                what: "commit bridge.toml to main".to_owned(),
                ..call
            },
            message: "m".to_owned(),
        };
        let hint = hint_of(other.into()).unwrap_or_default();
        assert!(!hint.contains("Workflows"), "{hint}");
    }

    #[test]
    fn a_refused_gh_token_says_to_set_gh_token() {
        let e = ApiError::new(
            error(Operation::Dispatch, 401),
            TokenSource::Env("GH_TOKEN"),
        );
        let hint = hint_of(e.into()).unwrap_or_default();
        assert!(hint.starts_with("set GH_TOKEN to a valid token"), "{hint}");
        assert!(
            hint.ends_with("the refused token came from GH_TOKEN"),
            "{hint}"
        );
    }

    #[test]
    fn a_disabled_workflow_says_how_a_person_enables_it() {
        let e = NotDispatchable::DisabledManually {
            repo: "o/r".to_owned(),
            workflow: "bridge.yml".to_owned(),
        };
        let hint = hint_of(e.into()).unwrap_or_default();
        assert!(
            hint.contains("`gh workflow enable bridge.yml --repo o/r`")
                && hint.contains("Actions tab of o/r"),
            "{hint}"
        );
        let deleted = NotDispatchable::Deleted {
            repo: "o/r".to_owned(),
            workflow: "bridge.yml".to_owned(),
        };
        assert!(
            hint_of(deleted.into())
                .unwrap_or_default()
                .contains("bridge init --github o/r")
        );
        // GitHub's answer when the workflow was disabled after bridge read
        // it; other refused dispatches keep their hint.
        let raced = GitHubError::Unprocessable {
            call: Call {
                op: Operation::Dispatch,
                repo: "o/r".to_owned(),
                what: "start workflow bridge.yml on main".to_owned(),
            },
            message: "Cannot trigger a 'workflow_dispatch' on a disabled workflow".to_owned(),
        };
        assert!(hint_of(raced.into()).unwrap_or_default().starts_with(
            "the workflow is disabled: enable it with `gh workflow enable --repo o/r`"
        ));
        assert!(
            hint_of(error(Operation::Dispatch, 422).into())
                .unwrap_or_default()
                .starts_with("the workflow must be on that branch")
        );
    }

    #[test]
    fn a_bad_address_gets_a_hint() {
        let e = bridge_github::Endpoint::new(Some("nope"), None).unwrap_err();
        assert_eq!(
            hint_of(e.into()).as_deref(),
            Some(
                "write e.g. https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server"
            )
        );
        let e = bridge_github::Endpoint::new(None, Some("x")).unwrap_err();
        assert_eq!(
            hint_of(e.into()).as_deref(),
            Some("write one `Name: value` per line")
        );
    }
}
