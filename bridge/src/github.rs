//! The binary's side of the GitHub API client ([`bridge_github`]): what the
//! library must not know. The `[github]` section of bridge.toml
//! ([`configured`]; without one, the repository of the workspace folder's
//! git remote `origin`, as gh infers it), the branch runs start on
//! ([`git_ref`]: `[github] ref`, else the repository's default branch from
//! the API), the token and where it came from ([`token`]: `GH_TOKEN`, else
//! `GITHUB_TOKEN`, else `gh auth token`, gh's own order), the API's address
//! from the environment, and the name of the repository secret that holds
//! the runner identity.
//!
//! A failed call's hint names where the refused token came from, which the
//! library cannot know: commands wrap a [`GitHubError`] in an [`ApiError`]
//! that carries the [`TokenSource`], and `crate::hints::network` maps it to
//! the hint. The token is never kept here past building the client.
//!
//! Environment:
//! - `GH_TOKEN`, else `GITHUB_TOKEN`: the token; else `gh auth token` when
//!   the gh CLI is installed.
//! - `BRIDGE_GITHUB_API`: the API's base URL (default
//!   `https://api.github.com`; `https://HOST/api/v3` for GitHub Enterprise
//!   Server; a mock on 127.0.0.1 in tests).
//! - `BRIDGE_GITHUB_EXTRA_HEADERS`: for testing against mocks only. Extra
//!   request headers, one per line, `Name: value`, or `OPERATION Name: value`
//!   to add it to one operation only (GitHub's operation ids, e.g.
//!   `actions/create-workflow-dispatch Prefer: code=204`).

use std::fmt;
use std::ops::Deref;
use std::path::Path;

use anyhow::anyhow;
use bridge_github::{Endpoint, GitHub, GitHubError, RepoSlug, TOKEN_PERMISSIONS};

use crate::error::{CliError, CliResult};
use crate::settings::Settings;
use crate::workspace::{GitHubSection, Workspace};

/// The repository secret that holds the runner identity (the workflow
/// template reads it).
pub const IDENTITY_SECRET: &str = "BRIDGE_IDENTITY";

/// The `[github]` section of bridge.toml and its repository; without the
/// section, its defaults for the repository of the workspace folder's git
/// remote `origin` (issue 16, item 8); else a message saying how to add
/// them.
pub fn configured(ws: &Workspace, settings: &Settings) -> CliResult<(GitHubSection, RepoSlug)> {
    let section = match ws.config.github.clone() {
        Some(section) => section,
        None => {
            let repo = origin_repo(&ws.root, settings)?.ok_or_else(|| {
                CliError::hint(
                    anyhow!(
                        "bridge.toml has no [github] section, and {} has no GitHub remote `origin`",
                        ws.root.display()
                    ),
                    "run `bridge init --github OWNER/REPO` here, or add [github] with repository = \"OWNER/REPO\"",
                )
            })?;
            GitHubSection {
                repository: repo.to_string(),
                workflow: None,
                git_ref: None,
                minutes_budget: None,
                max_runners: None,
            }
        }
    };
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
    /// An environment variable: `GH_TOKEN` or `GITHUB_TOKEN`.
    Env(&'static str),
    /// `gh auth token`.
    GhCli,
}

impl TokenSource {
    /// The variable a person sets to replace this token.
    pub fn variable(self) -> &'static str {
        match self {
            TokenSource::Env(name) => name,
            TokenSource::GhCli => "GH_TOKEN",
        }
    }
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenSource::Env(name) => name,
            TokenSource::GhCli => "`gh auth token`",
        })
    }
}

/// The token, in gh's order: `GH_TOKEN`, else `GITHUB_TOKEN`, else `gh auth
/// token` when gh is installed.
pub fn token(settings: &Settings) -> CliResult<(String, TokenSource)> {
    if let Some(t) = &settings.engine.github_token {
        let var = settings.engine.github_token_var.unwrap_or("GITHUB_TOKEN");
        return Ok((t.clone(), TokenSource::Env(var)));
    }
    let missing = || {
        CliError::hint(
            anyhow!(
                "no GitHub token: GH_TOKEN and GITHUB_TOKEN are not set and `gh auth token` gave none"
            ),
            format!(
                "create a fine-grained personal access token for the repository with {TOKEN_PERMISSIONS} and `export GH_TOKEN=…` (or GITHUB_TOKEN), or log in with `gh auth login`"
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

/// The branch or tag runs start on: `[github] ref`, else the repository's
/// default branch as the API says (never an assumed `main`).
pub fn git_ref(section: &GitHubSection, gh: &Client) -> CliResult<String> {
    match &section.git_ref {
        Some(r) => Ok(r.clone()),
        None => Ok(gh
            .repository()
            .map_err(|e| ApiError::new(e, gh.token_source))?
            .default_branch),
    }
}

/// The GitHub repository of the git remote `origin` of the folder `root`,
/// if it has one whose URL names a repository (https, ssh or scp-like
/// form). A remote on another host than github.com is refused unless
/// `BRIDGE_GITHUB_API` says where that host's API is (GitHub Enterprise
/// Server).
pub fn origin_repo(root: &Path, settings: &Settings) -> CliResult<Option<RepoSlug>> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["config", "--get", "remote.origin.url"])
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let url = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        // Not a git checkout, no origin, or no git: nothing to infer.
        _ => return Ok(None),
    };
    let Some((host, repo)) = parse_remote_url(&url) else {
        return Ok(None);
    };
    let api_set = settings
        .github_api
        .as_deref()
        .is_some_and(|a| !a.trim().is_empty());
    if !host.eq_ignore_ascii_case("github.com") && !api_set {
        return Err(CliError::hint(
            anyhow!(
                "the git remote origin of {} is on {host}, not github.com",
                root.display()
            ),
            format!(
                "for GitHub Enterprise Server set BRIDGE_GITHUB_API=https://{host}/api/v3; or add [github] with repository = \"OWNER/REPO\" to bridge.toml"
            ),
        ));
    }
    Ok(Some(repo))
}

/// The host and repository of a git remote URL: `https://HOST/OWNER/REPO(.git)`,
/// `ssh://[USER@]HOST[:PORT]/OWNER/REPO(.git)`, `git://…`, or scp-like
/// `USER@HOST:OWNER/REPO(.git)`. `None` for anything else (a local path, a
/// path of more than two parts).
pub fn parse_remote_url(url: &str) -> Option<(String, RepoSlug)> {
    let url = url.trim();
    let (authority, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(scheme, "https" | "http" | "ssh" | "git" | "git+ssh") {
            return None;
        }
        rest.split_once('/')?
    } else {
        // scp-like: [USER@]HOST:PATH (no slash before the colon).
        let (host, path) = url.split_once(':')?;
        if host.contains('/') || host.is_empty() {
            return None;
        }
        (host, path)
    };
    // Drop credentials and a port.
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split_once(':').map_or(host, |(h, _)| h);
    if host.is_empty() {
        return None;
    }
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (owner, name) = path.split_once('/')?;
    if name.contains('/') {
        return None;
    }
    let repo = format!("{owner}/{name}").parse::<RepoSlug>().ok()?;
    Some((host.to_owned(), repo))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_name_their_host_and_repository() {
        let cases = [
            ("https://github.com/octo-org/pool.git", "github.com"),
            ("https://github.com/octo-org/pool", "github.com"),
            ("https://github.com/octo-org/pool/", "github.com"),
            (
                "https://x-access-token:t0k@github.com/octo-org/pool.git",
                "github.com",
            ),
            ("git@github.com:octo-org/pool.git", "github.com"),
            ("github.com:octo-org/pool", "github.com"),
            ("ssh://git@github.com/octo-org/pool.git", "github.com"),
            (
                "ssh://git@ghe.example.com:2222/octo-org/pool.git",
                "ghe.example.com",
            ),
            (
                "https://ghe.example.com/octo-org/pool.git",
                "ghe.example.com",
            ),
        ];
        for (url, host) in cases {
            let (h, repo) = parse_remote_url(url).unwrap_or_else(|| panic!("{url}"));
            assert_eq!(
                (h.as_str(), repo.to_string().as_str()),
                (host, "octo-org/pool"),
                "{url}"
            );
        }
        for url in [
            "/srv/git/pool.git",
            "file:///srv/git/pool.git",
            "https://gitlab.com/group/sub/pool.git",
            "https://github.com/octo-org",
            "./pool",
            "",
        ] {
            assert!(parse_remote_url(url).is_none(), "{url}");
        }
    }

    #[test]
    fn a_token_source_names_the_variable_to_set() {
        assert_eq!(TokenSource::Env("GH_TOKEN").variable(), "GH_TOKEN");
        assert_eq!(TokenSource::Env("GITHUB_TOKEN").to_string(), "GITHUB_TOKEN");
        assert_eq!(TokenSource::GhCli.variable(), "GH_TOKEN");
        assert_eq!(TokenSource::GhCli.to_string(), "`gh auth token`");
    }
}
