//! The binary's side of the GitHub API client ([`bridge_github`]): what the
//! library must not know. The `[github]` section of bridge.toml
//! ([`configured`]), the token and where it came from ([`token`]:
//! `GITHUB_TOKEN`, else `gh auth token`), the API's address from the
//! environment, and the name of the repository secret that holds the runner
//! identity.
//!
//! A failed call's hint names where the refused token came from, which the
//! library cannot know: commands wrap a [`GitHubError`] in an [`ApiError`]
//! that carries the [`TokenSource`], and `crate::hints::network` maps it to
//! the hint. The token is never kept here past building the client.
//!
//! Environment:
//! - `GITHUB_TOKEN`: the token; else `gh auth token` when the gh CLI is
//!   installed.
//! - `BRIDGE_GITHUB_API`: the API's base URL (default
//!   `https://api.github.com`; `https://HOST/api/v3` for GitHub Enterprise
//!   Server; a mock on 127.0.0.1 in tests).
//! - `BRIDGE_GITHUB_EXTRA_HEADERS`: for testing against mocks only. Extra
//!   request headers, one per line, `Name: value`, or `OPERATION Name: value`
//!   to add it to one operation only (GitHub's operation ids, e.g.
//!   `actions/create-workflow-dispatch Prefer: code=204`).

use std::fmt;
use std::ops::Deref;

use anyhow::anyhow;
use bridge_github::{Endpoint, GitHub, GitHubError, RepoSlug, TOKEN_PERMISSIONS};

use crate::error::{CliError, CliResult};
use crate::settings::Settings;
use crate::workspace::{Config, GitHubSection};

/// The repository secret that holds the runner identity (the workflow
/// template reads it).
pub const IDENTITY_SECRET: &str = "BRIDGE_IDENTITY";

/// The `[github]` section of bridge.toml and its repository, or a message
/// saying how to add them.
pub fn configured(config: &Config) -> CliResult<(GitHubSection, RepoSlug)> {
    let section = config.github.clone().ok_or_else(|| {
        CliError::hint(
            anyhow!("bridge.toml has no [github] section"),
            "run `bridge init --github OWNER/REPO` here, or add [github] with repository = \"OWNER/REPO\"",
        )
    })?;
    let repo = section.repository.parse::<RepoSlug>().map_err(|e| {
        CliError::hint(
            anyhow!(e).context("[github] repository in bridge.toml"),
            "write repository = \"OWNER/REPO\"",
        )
    })?;
    check_workflow(section.workflow())?;
    Ok((section, repo))
}

/// Refuses a `[github] workflow` that is not a file name of
/// .github/workflows.
pub fn check_workflow(name: &str) -> CliResult<()> {
    bridge_github::check_workflow(name).map_err(|e| {
        CliError::hint(
            anyhow!(
                "[github] workflow = \"{}\" in bridge.toml is not a workflow file name",
                e.name
            ),
            "write the file's name in .github/workflows/, e.g. workflow = \"bridge.yml\"",
        )
    })
}

/// Where the token came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The `GITHUB_TOKEN` environment variable.
    Env,
    /// `gh auth token`.
    GhCli,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenSource::Env => "GITHUB_TOKEN",
            TokenSource::GhCli => "`gh auth token`",
        })
    }
}

/// The token: `GITHUB_TOKEN`, else `gh auth token` when gh is installed.
pub fn token(settings: &Settings) -> CliResult<(String, TokenSource)> {
    if let Some(t) = &settings.engine.github_token {
        return Ok((t.clone(), TokenSource::Env));
    }
    let missing = || {
        CliError::hint(
            anyhow!("no GitHub token: GITHUB_TOKEN is not set and `gh auth token` gave none"),
            format!(
                "create a fine-grained personal access token for the repository with {TOKEN_PERMISSIONS} and `export GITHUB_TOKEN=…`, or log in with `gh auth login`"
            ),
        )
    };
    let out = std::process::Command::new("gh")
        .args(["auth", "token"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let t = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if t.is_empty() {
                Err(missing())
            } else {
                Ok((t, TokenSource::GhCli))
            }
        }
        _ => Err(missing()),
    }
}

/// The API's address and extra headers from `BRIDGE_GITHUB_API` and
/// `BRIDGE_GITHUB_EXTRA_HEADERS` (as the settings hold them).
pub fn endpoint(settings: &Settings) -> Result<Endpoint, bridge_github::ConnectError> {
    Endpoint::new(
        settings.github_api.as_deref(),
        settings.github_extra_headers.as_deref(),
    )
}

/// A client for one repository, and where its token came from.
#[derive(Debug)]
pub struct Client {
    api: GitHub,
    /// Where the token came from.
    pub token_source: TokenSource,
}

impl Deref for Client {
    type Target = GitHub;

    fn deref(&self) -> &GitHub {
        &self.api
    }
}

/// A client for `repo` with the token from the environment.
pub fn connect(settings: &Settings, repo: &RepoSlug) -> CliResult<Client> {
    let (token, token_source) = token(settings)?;
    let api = GitHub::connect(repo, token, endpoint(settings)?)?;
    Ok(Client { api, token_source })
}

/// A failed API call, with where the token came from (its hint names it
/// when the token was refused). Displays as the call's error, and its
/// causes are the call's.
#[derive(Debug)]
pub struct ApiError {
    /// The failed call.
    pub error: GitHubError,
    /// Where the token came from.
    pub token_source: TokenSource,
}

impl ApiError {
    /// `error` from a call made with a token from `token_source`.
    pub fn new(error: GitHubError, token_source: TokenSource) -> ApiError {
        ApiError {
            error,
            token_source,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for ApiError {
    // The call's own causes, so that the message reads as before: the
    // token's source is context for the hint, not a cause.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}
