//! The GitHub REST API, as bridge uses it: start the runner workflow
//! (`workflow_dispatch`), follow its run and jobs, read the runs' timing for
//! the minutes budget, store the runner identity as a repository secret
//! (sealed to the repository's public key), and commit files through the
//! contents API.
//!
//! Data flow: a command builds a [`GitHub`] client for one repository
//! ([`GitHub::connect`]: the token, the base URL, a Tokio runtime of its own
//! because octocrab's client must be built inside one), calls the blocking
//! methods below, and turns a [`GitHubError`] into the user's message with
//! [`cli_error`], where the hint that helps (which token permission, which
//! file) is known. Nothing here prints.
//!
//! Every call goes through octocrab's raw request methods with response
//! types of our own that hold only the fields bridge reads: octocrab's
//! models require many fields a mock or an older GitHub Enterprise Server
//! may lack, and its dispatch builder cannot ask for the run id
//! (`return_run_details`). The operations are listed in [`Operation`]; the
//! end-to-end tests check each request against GitHub's own OpenAPI
//! description (tests/github/).
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

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bridge_model::Millis;
use http::Method;
use octocrab::Octocrab;
use serde::{Deserialize, Serialize};

use crate::error::{CliError, CliResult};
use crate::workspace::{Config, GitHubSection};

/// The API's address unless `BRIDGE_GITHUB_API` says otherwise.
pub const DEFAULT_API: &str = "https://api.github.com";
/// The environment variable that overrides the API's address.
pub const API_ENV: &str = "BRIDGE_GITHUB_API";
/// The environment variable of extra request headers (for mocks).
pub const EXTRA_HEADERS_ENV: &str = "BRIDGE_GITHUB_EXTRA_HEADERS";
/// The repository secret that holds the runner identity.
pub const IDENTITY_SECRET: &str = "BRIDGE_IDENTITY";

/// The token permissions bridge needs, for messages (a fine-grained
/// personal access token limited to the repository).
pub const TOKEN_PERMISSIONS: &str =
    "Actions: read and write, Secrets: read and write, Contents: read and write";

/// A repository, `OWNER/NAME`, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSlug {
    owner: String,
    name: String,
}

impl RepoSlug {
    /// The account that owns the repository.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `git:` remote of the repository on github.com.
    pub fn git_remote(&self) -> String {
        format!("git:https://github.com/{self}.git")
    }

    /// The repository's page on github.com.
    pub fn html_url(&self) -> String {
        format!("https://github.com/{self}")
    }
}

impl fmt::Display for RepoSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Why a repository name was refused.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a GitHub repository: write OWNER/REPO, e.g. octo-org/pool")]
pub struct RepoSlugError(String);

impl FromStr for RepoSlug {
    type Err = RepoSlugError;

    fn from_str(s: &str) -> Result<RepoSlug, RepoSlugError> {
        let bad = || RepoSlugError(s.to_owned());
        let s = s.trim();
        let s = s
            .strip_prefix("https://github.com/")
            .unwrap_or(s)
            .trim_end_matches('/');
        let s = s.strip_suffix(".git").unwrap_or(s);
        let (owner, name) = s.split_once('/').ok_or_else(bad)?;
        // GitHub's rules: an owner is 1-39 letters, digits and hyphens, not
        // starting with a hyphen; a name is letters, digits, `.`, `-`, `_`.
        let owner_ok = (1..=39).contains(&owner.len())
            && !owner.starts_with('-')
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let name_ok = (1..=100).contains(&name.len())
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !owner_ok || !name_ok {
            return Err(bad());
        }
        Ok(RepoSlug {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }
}

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

/// Refuses a workflow name that is not a file name of .github/workflows.
pub fn check_workflow(name: &str) -> CliResult<()> {
    let ok = (name.ends_with(".yml") || name.ends_with(".yaml"))
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(CliError::hint(
            anyhow!("[github] workflow = \"{name}\" in bridge.toml is not a workflow file name"),
            "write the file's name in .github/workflows/, e.g. workflow = \"bridge.yml\"",
        ))
    }
}

/// The operations bridge makes, named by GitHub's operation ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /repos/{o}/{r}/actions/workflows/{workflow}/dispatches`
    Dispatch,
    /// `GET /repos/{o}/{r}/actions/workflows/{workflow}/runs`
    ListRuns,
    /// `GET /repos/{o}/{r}/actions/runs/{id}`
    GetRun,
    /// `GET /repos/{o}/{r}/actions/runs/{id}/jobs`
    ListJobs,
    /// `GET /repos/{o}/{r}/actions/runs/{id}/timing`
    RunTiming,
    /// `GET /repos/{o}/{r}/actions/secrets/public-key`
    PublicKey,
    /// `PUT /repos/{o}/{r}/actions/secrets/{name}`
    PutSecret,
    /// `GET /repos/{o}/{r}/contents/{path}`
    GetContent,
    /// `PUT /repos/{o}/{r}/contents/{path}`
    PutContent,
}

impl Operation {
    /// GitHub's operation id (as in its OpenAPI description).
    pub fn id(self) -> &'static str {
        match self {
            Operation::Dispatch => "actions/create-workflow-dispatch",
            Operation::ListRuns => "actions/list-workflow-runs",
            Operation::GetRun => "actions/get-workflow-run",
            Operation::ListJobs => "actions/list-jobs-for-workflow-run",
            Operation::RunTiming => "actions/get-workflow-run-usage",
            Operation::PublicKey => "actions/get-repo-public-key",
            Operation::PutSecret => "actions/create-or-update-repo-secret",
            Operation::GetContent => "repos/get-content",
            Operation::PutContent => "repos/create-or-update-file-contents",
        }
    }

    /// The fine-grained token permission the operation needs.
    pub fn permission(self) -> &'static str {
        match self {
            Operation::Dispatch => "Actions: read and write",
            Operation::ListRuns
            | Operation::GetRun
            | Operation::ListJobs
            | Operation::RunTiming => "Actions: read",
            Operation::PublicKey | Operation::PutSecret => "Secrets: read and write",
            Operation::GetContent | Operation::PutContent => "Contents: read and write",
        }
    }
}

/// One call: the operation and what it was about, for messages.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation.
    pub op: Operation,
    /// The repository.
    pub repo: String,
    /// What the call was for, e.g. "start workflow bridge.yml on main".
    pub what: String,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} of {}", self.what, self.repo)
    }
}

/// A failed GitHub API call.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// 401: the token is wrong, expired or revoked.
    #[error("{call}: the token was refused (HTTP 401: {message})")]
    Unauthorized { call: Call, message: String },
    /// 403: the token lacks a permission, or a rate limit.
    #[error("{call}: access denied (HTTP 403: {message})")]
    Forbidden { call: Call, message: String },
    /// 404: no such repository, workflow or file, or one the token cannot see.
    #[error("{call}: not found (HTTP 404: {message})")]
    NotFound { call: Call, message: String },
    /// 422: GitHub understood the request and refused it; its message says why.
    #[error("{call}: GitHub refused it: {message} (HTTP 422)")]
    Unprocessable { call: Call, message: String },
    /// Another error status.
    #[error("{call}: HTTP {status}: {message}")]
    Status {
        call: Call,
        status: u16,
        message: String,
    },
    /// No answer (connection, TLS, timeout).
    #[error("{call}: no answer from {base}")]
    Transport {
        call: Call,
        base: String,
        #[source]
        source: Box<octocrab::Error>,
    },
    /// An answer bridge cannot read.
    #[error("{call}: GitHub's answer is not what bridge expects ({detail})")]
    Decode { call: Call, detail: String },
}

impl GitHubError {
    /// The call that failed.
    pub fn call(&self) -> &Call {
        match self {
            GitHubError::Unauthorized { call, .. }
            | GitHubError::Forbidden { call, .. }
            | GitHubError::NotFound { call, .. }
            | GitHubError::Unprocessable { call, .. }
            | GitHubError::Status { call, .. }
            | GitHubError::Transport { call, .. }
            | GitHubError::Decode { call, .. } => call,
        }
    }

    /// The HTTP status, when GitHub answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Unauthorized { .. } => Some(401),
            GitHubError::Forbidden { .. } => Some(403),
            GitHubError::NotFound { .. } => Some(404),
            GitHubError::Unprocessable { .. } => Some(422),
            GitHubError::Status { status, .. } => Some(*status),
            GitHubError::Transport { .. } | GitHubError::Decode { .. } => None,
        }
    }
}

/// The user's message for a failed call, with a hint that names what to fix.
pub fn cli_error(e: GitHubError, token_source: TokenSource) -> CliError {
    let call = e.call().clone();
    let perm = call.op.permission();
    let repo = &call.repo;
    let hint = match &e {
        GitHubError::Unauthorized { .. } => format!(
            "set GITHUB_TOKEN to a valid token for {repo}: a fine-grained personal access token with {TOKEN_PERMISSIONS} (this call needs {perm}); the refused token came from {token_source}"
        ),
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
        GitHubError::Unprocessable { .. } => match call.op {
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
    };
    CliError::hint(anyhow!(e), hint)
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
pub fn token() -> CliResult<(String, TokenSource)> {
    if let Some(t) = crate::secrets::github_token() {
        return Ok((t, TokenSource::Env));
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

/// `GET …/runs/{id}/timing`. GitHub is closing parts of this endpoint down
/// (billable times first): every field may be missing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunTiming {
    /// Billable time per runner OS (`UBUNTU`, `MACOS`, `WINDOWS`); empty for
    /// public repositories and self-hosted runners.
    #[serde(default)]
    pub billable: Option<BTreeMap<String, Billable>>,
    /// The run's wall-clock time.
    #[serde(default)]
    pub run_duration_ms: Option<u64>,
}

/// Billable time of one OS.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Billable {
    /// All jobs' time, not rounded.
    #[serde(default)]
    pub total_ms: u64,
    /// Each job's time.
    #[serde(default)]
    pub job_runs: Option<Vec<JobRun>>,
}

/// One job's billable time.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobRun {
    /// Its time, not rounded.
    #[serde(default)]
    pub duration_ms: u64,
}

/// The repository's public key for secrets.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoPublicKey {
    /// The key's id, sent back with the secret.
    pub key_id: String,
    /// The X25519 public key, base64.
    pub key: String,
}

/// What storing a secret did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretWrite {
    /// A new secret.
    Created,
    /// An existing secret was replaced.
    Updated,
}

/// Why a secret could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key is not base64.
    #[error("the repository's public key is not base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// The key is not 32 bytes.
    #[error("the repository's public key is {0} bytes long, not the 32 of an X25519 key")]
    Length(usize),
    /// The sealed box failed (the OS random number generator).
    #[error("cannot seal the secret (the OS random number generator failed)")]
    Seal,
}

/// Seals `secret` to a repository's public key (base64) the way GitHub
/// expects secrets: libsodium's `crypto_box_seal`, then base64.
pub fn seal(public_key_b64: &str, secret: &[u8]) -> Result<String, SealError> {
    let bytes = B64
        .decode(public_key_b64.trim())
        .map_err(SealError::Base64)?;
    let key =
        crypto_box::PublicKey::from_slice(&bytes).map_err(|_| SealError::Length(bytes.len()))?;
    let sealed = key
        .seal(&mut crypto_box::aead::OsRng, secret)
        .map_err(|_| SealError::Seal)?;
    Ok(B64.encode(sealed))
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

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// The month `at` falls in.
    pub fn of(at: SystemTime) -> Month {
        let text = humantime::format_rfc3339_seconds(at).to_string();
        text.get(..7)
            .and_then(|ym| ym.parse().ok())
            .unwrap_or(Month {
                year: 1970,
                month: 1,
            })
    }

    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Its first instant, in milliseconds since the epoch.
    pub fn start_ms(self) -> Millis {
        parse_time(&format!("{self}-01T00:00:00Z")).unwrap_or(0)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = String;

    fn from_str(s: &str) -> Result<Month, String> {
        let bad = || format!("`{s}` is not a month: write YYYY-MM, e.g. 2026-11");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if y.len() != 4 || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

/// Where a run's minutes were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MinutesSource {
    /// The timing API's billable times (each job rounded up to a minute,
    /// as GitHub bills).
    Billable,
    /// The jobs' start and end times (public repositories and self-hosted
    /// runners have no billable time).
    Jobs,
    /// The run's wall-clock time (the timing API's `run_duration_ms`).
    RunDuration,
}

/// Whole minutes, rounded up.
fn ceil_minutes(ms: u64) -> u64 {
    ms.div_ceil(60_000)
}

/// A run's runner minutes from its billable times, when GitHub reports any.
pub fn billable_minutes(timing: &RunTiming) -> Option<u64> {
    let billable = timing.billable.as_ref().filter(|b| !b.is_empty())?;
    Some(
        billable
            .values()
            .map(|os| match &os.job_runs {
                Some(runs) if !runs.is_empty() => {
                    runs.iter().map(|j| ceil_minutes(j.duration_ms)).sum()
                }
                _ => ceil_minutes(os.total_ms),
            })
            .sum(),
    )
}

/// A run's runner minutes from its jobs (each rounded up; a job still
/// running counts until `now`).
pub fn jobs_minutes(jobs: &[Job], now: Millis) -> u64 {
    jobs.iter()
        .filter_map(|j| {
            let start = parse_time(j.started_at.as_deref()?)?;
            let end = j
                .completed_at
                .as_deref()
                .and_then(parse_time)
                .unwrap_or(now);
            Some(ceil_minutes((end - start).max(0) as u64))
        })
        .sum()
}

/// One run's share of a month's usage.
#[derive(Debug, Clone, Serialize)]
pub struct RunUsage {
    /// The run id.
    pub id: u64,
    /// When it was created.
    pub created_at: String,
    /// Its status.
    pub status: Option<String>,
    /// Its conclusion.
    pub conclusion: Option<String>,
    /// Runner minutes.
    pub minutes: u64,
    /// Where the minutes were read from.
    pub source: MinutesSource,
    /// The run's page.
    pub html_url: String,
}

/// The blocking client for one repository.
pub struct GitHub {
    runtime: tokio::runtime::Runtime,
    client: Octocrab,
    repo: RepoSlug,
    base: String,
    /// Extra headers: (operation id or every operation, name, value).
    extra_headers: Vec<(Option<String>, http::HeaderName, http::HeaderValue)>,
    /// Where the token came from.
    pub token_source: TokenSource,
}

/// An answer: the status and the body.
struct Answer {
    status: u16,
    body: String,
}

impl GitHub {
    /// A client for `repo` with the token from the environment.
    pub fn connect(repo: &RepoSlug) -> CliResult<GitHub> {
        let (token, source) = token()?;
        GitHub::with_token(repo, token, source)
    }

    /// A client for `repo` with `token`.
    pub fn with_token(repo: &RepoSlug, token: String, source: TokenSource) -> CliResult<GitHub> {
        let base = std::env::var(API_ENV)
            .ok()
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_API.to_owned());
        // octocrab panics on a base without a scheme or host: check first.
        let valid = base.parse::<http::Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
        });
        if !valid {
            return Err(CliError::hint(
                anyhow!("{API_ENV}={base} is not an http(s) URL"),
                "write e.g. https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server",
            ));
        }
        let extra_headers =
            parse_extra_headers(&std::env::var(EXTRA_HEADERS_ENV).unwrap_or_default())
                .map_err(|e| CliError::hint(anyhow!(e), "write one `Name: value` per line"))?;
        // octocrab's client spawns a task when built: it needs a runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow!(e).context("cannot start the async runtime"))?;
        let client = runtime.block_on(async {
            Octocrab::builder()
                .personal_token(token)
                .base_uri(base.as_str())
                .map_err(|e| {
                    CliError::hint(
                        anyhow!("{API_ENV}={base} is not a URL: {e}"),
                        "write e.g. https://api.github.com",
                    )
                })?
                .set_connect_timeout(Some(Duration::from_secs(15)))
                .set_read_timeout(Some(Duration::from_secs(60)))
                .build()
                .map_err(|e| CliError::from(anyhow!("cannot build the GitHub client: {e}")))
        })?;
        Ok(GitHub {
            runtime,
            client,
            repo: repo.clone(),
            base,
            extra_headers,
            token_source: source,
        })
    }

    fn call(&self, op: Operation, what: impl Into<String>) -> Call {
        Call {
            op,
            repo: self.repo.to_string(),
            what: what.into(),
        }
    }

    /// Sends one request; error statuses become [`GitHubError`]s.
    fn send<B: Serialize + ?Sized>(
        &self,
        call: &Call,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<Answer, GitHubError> {
        let transport = |source: octocrab::Error| GitHubError::Transport {
            call: call.clone(),
            base: self.base.clone(),
            source: Box::new(source),
        };
        tracing::debug!("GitHub API: {method} {path_and_query}");
        self.runtime.block_on(async {
            let mut builder = http::Request::builder().method(method).uri(path_and_query);
            for (scope, name, value) in &self.extra_headers {
                if scope.as_deref().is_none_or(|s| s == call.op.id()) {
                    builder = builder.header(name, value);
                }
            }
            let request = self
                .client
                .build_request(builder, body)
                .map_err(transport)?;
            let response = self.client.execute(request).await.map_err(transport)?;
            let response = match octocrab::map_github_error(response).await {
                Ok(r) => r,
                Err(octocrab::Error::GitHub { source, .. }) => {
                    return Err(classify(call, &source));
                }
                Err(e) => return Err(transport(e)),
            };
            let status = response.status().as_u16();
            let body = self
                .client
                .body_to_string(response)
                .await
                .map_err(transport)?;
            Ok(Answer { status, body })
        })
    }

    fn decode<T: serde::de::DeserializeOwned>(call: &Call, body: &str) -> Result<T, GitHubError> {
        serde_json::from_str(body).map_err(|e| GitHubError::Decode {
            call: call.clone(),
            detail: e.to_string(),
        })
    }

    fn repo_path(&self) -> String {
        format!("/repos/{}/{}", self.repo.owner(), self.repo.name())
    }

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
        let call = self.call(
            Operation::ListRuns,
            format!("list the runs of workflow {workflow}"),
        );
        let mut query = format!("per_page={per_page}&page={page}&exclude_pull_requests=true");
        if let Some(e) = event {
            query.push_str(&format!("&event={}", encode(e)));
        }
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
        let call = self.call(
            Operation::ListJobs,
            format!("list the jobs of workflow run {run_id}"),
        );
        let mut jobs = Vec::new();
        for page in 1..=3 {
            let answer = self.send(
                &call,
                Method::GET,
                &format!(
                    "{}/actions/runs/{run_id}/jobs?filter=latest&per_page=100&page={page}",
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

    /// A run's timing.
    pub fn timing(&self, run_id: u64) -> Result<RunTiming, GitHubError> {
        let call = self.call(
            Operation::RunTiming,
            format!("read the timing of workflow run {run_id}"),
        );
        let answer = self.send(
            &call,
            Method::GET,
            &format!("{}/actions/runs/{run_id}/timing", self.repo_path()),
            None::<&()>,
        )?;
        Self::decode(&call, &answer.body)
    }

    /// The runs of `workflow` created in `month`, with each one's runner
    /// minutes.
    pub fn month_usage(&self, workflow: &str, month: Month) -> Result<Vec<RunUsage>, GitHubError> {
        let (from, to) = (month.start_ms(), month.next().start_ms());
        let now = crate::workspace::now_ms();
        let mut runs = Vec::new();
        // Newest first: read pages until a run older than the month shows.
        // (The `created` filter is not used: its search syntax, `>=DATE`, is
        // not the date-time GitHub's description declares for it.)
        'pages: for page in 1..=50 {
            let got = self.list_runs(workflow, None, 100, page)?;
            let n = got.workflow_runs.len();
            for run in got.workflow_runs {
                let Some(created) = parse_time(&run.created_at) else {
                    continue;
                };
                if created < from {
                    break 'pages;
                }
                if created < to {
                    runs.push(run);
                }
            }
            if n < 100 {
                break;
            }
        }
        let mut out = Vec::with_capacity(runs.len());
        for run in runs {
            let timing = match self.timing(run.id) {
                Ok(t) => t,
                // The endpoint is being closed down: a run without timing
                // falls back to its jobs.
                Err(e) if matches!(e.status(), Some(404 | 410)) => RunTiming::default(),
                Err(e) => return Err(e),
            };
            let (minutes, source) = match billable_minutes(&timing) {
                Some(m) => (m, MinutesSource::Billable),
                None => match self.jobs(run.id) {
                    Ok(jobs) => (jobs_minutes(&jobs, now), MinutesSource::Jobs),
                    Err(e) if timing.run_duration_ms.is_some() => {
                        tracing::debug!("{e}");
                        (
                            ceil_minutes(timing.run_duration_ms.unwrap_or(0)),
                            MinutesSource::RunDuration,
                        )
                    }
                    Err(e) => return Err(e),
                },
            };
            out.push(RunUsage {
                id: run.id,
                created_at: run.created_at,
                status: run.status,
                conclusion: run.conclusion,
                minutes,
                source,
                html_url: run.html_url,
            });
        }
        Ok(out)
    }

    /// The repository's public key for secrets.
    pub fn public_key(&self) -> Result<RepoPublicKey, GitHubError> {
        let call = self.call(
            Operation::PublicKey,
            "read the public key for Actions secrets",
        );
        let answer = self.send(
            &call,
            Method::GET,
            &format!("{}/actions/secrets/public-key", self.repo_path()),
            None::<&()>,
        )?;
        Self::decode(&call, &answer.body)
    }

    /// Stores a secret sealed with [`seal`] as the repository's Actions
    /// secret `name`.
    pub fn put_secret(
        &self,
        name: &str,
        key_id: &str,
        encrypted_value: &str,
    ) -> Result<SecretWrite, GitHubError> {
        let call = self.call(
            Operation::PutSecret,
            format!("store the Actions secret {name}"),
        );
        let body = serde_json::json!({"encrypted_value": encrypted_value, "key_id": key_id});
        let answer = self.send(
            &call,
            Method::PUT,
            &format!("{}/actions/secrets/{}", self.repo_path(), encode(name)),
            Some(&body),
        )?;
        Ok(if answer.status == 201 {
            SecretWrite::Created
        } else {
            SecretWrite::Updated
        })
    }

    /// The blob sha of the file at `path` on `git_ref`; `None` when there is
    /// no such file.
    pub fn file_sha(&self, path: &str, git_ref: &str) -> Result<Option<String>, GitHubError> {
        let call = self.call(Operation::GetContent, format!("read {path} on {git_ref}"));
        let answer = match self.send(
            &call,
            Method::GET,
            &format!(
                "{}/contents/{}?ref={}",
                self.repo_path(),
                encode(path),
                encode(git_ref)
            ),
            None::<&()>,
        ) {
            Ok(a) => a,
            Err(GitHubError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let value: serde_json::Value = Self::decode(&call, &answer.body)?;
        // A folder answers with a list; only a file has one sha to replace.
        Ok(value.get("sha").and_then(|s| s.as_str()).map(str::to_owned))
    }

    /// Commits `content` as the file `path` on `branch` (replacing the blob
    /// `sha` when the file exists).
    pub fn put_file(
        &self,
        path: &str,
        content: &[u8],
        message: &str,
        branch: &str,
        sha: Option<&str>,
    ) -> Result<(), GitHubError> {
        let call = self.call(Operation::PutContent, format!("commit {path} to {branch}"));
        let mut body = serde_json::json!({
            "message": message,
            "content": B64.encode(content),
            "branch": branch,
        });
        if let Some(sha) = sha {
            body["sha"] = serde_json::Value::from(sha);
        }
        self.send(
            &call,
            Method::PUT,
            &format!("{}/contents/{}", self.repo_path(), encode(path)),
            Some(&body),
        )?;
        Ok(())
    }
}

/// The error for an error status.
fn classify(call: &Call, e: &octocrab::GitHubError) -> GitHubError {
    let mut message = e.message.trim().to_owned();
    // A 422's details (validation errors) say which field was refused.
    for detail in e.errors.iter().flatten() {
        let text = match detail {
            serde_json::Value::String(s) => s.clone(),
            v => v
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string()),
        };
        if !text.is_empty() && !message.contains(&text) {
            message.push_str("; ");
            message.push_str(&text);
        }
    }
    let call = call.clone();
    match e.status_code.as_u16() {
        401 => GitHubError::Unauthorized { call, message },
        403 => GitHubError::Forbidden { call, message },
        404 => GitHubError::NotFound { call, message },
        422 => GitHubError::Unprocessable { call, message },
        status => GitHubError::Status {
            call,
            status,
            message,
        },
    }
}

/// Parses `BRIDGE_GITHUB_EXTRA_HEADERS`.
#[allow(clippy::type_complexity)]
fn parse_extra_headers(
    text: &str,
) -> Result<Vec<(Option<String>, http::HeaderName, http::HeaderValue)>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bad = || format!("{EXTRA_HEADERS_ENV}: `{line}` is not `[OPERATION ]Name: value`");
        let (head, value) = line.split_once(':').ok_or_else(bad)?;
        let (scope, name) = match head.trim().rsplit_once(' ') {
            Some((scope, name)) => (Some(scope.trim().to_owned()), name),
            None => (None, head.trim()),
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = http::HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        out.push((scope, name, value));
    }
    Ok(out)
}

/// Percent-encodes one path parameter or query value. A file path's
/// slashes are encoded too (`%2F`), as Octokit does: the contents API
/// accepts it, and the path is one parameter in GitHub's description.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How many runners `auto` starts: enough for the pending work to fit in
/// their budgets, no more than one per task and no more than the plan's
/// concurrency, at least one.
pub fn auto_runners(
    pending_seconds: u64,
    budget_seconds: u64,
    pending_tasks: u64,
    max: u32,
) -> u32 {
    let by_time = pending_seconds.div_ceil(budget_seconds.max(1));
    by_time.min(pending_tasks).min(u64::from(max)).max(1) as u32
}

/// The runner minutes a dispatch is expected to use: the pending work plus a
/// minute per runner (start-up, install, the final push, and GitHub's
/// rounding up of each job) and one for the workflow's planning job, and
/// never more than every runner using its whole budget.
pub fn estimate_minutes(pending_seconds: u64, runners: u32, budget_seconds: u64) -> u64 {
    let work = pending_seconds.div_ceil(60) + u64::from(runners);
    let cap = u64::from(runners) * budget_seconds.div_ceil(60).max(1);
    work.min(cap) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_opens_with_the_repository_secret_key() {
        let secret = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        let public = B64.encode(secret.public_key().as_bytes());
        let value = b"bridge1-identity:AGE-SECRET-KEY-TEST";
        let sealed = seal(&public, value).unwrap();
        let opened = secret
            .unseal(&B64.decode(sealed.as_bytes()).unwrap())
            .unwrap();
        assert_eq!(opened, value);
        // A sealed box is 48 bytes longer (ephemeral key + tag) and fresh
        // each time.
        assert_eq!(B64.decode(&sealed).unwrap().len(), value.len() + 48);
        assert_ne!(seal(&public, value).unwrap(), sealed);
        // Another key cannot open it.
        let other = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        assert!(other.unseal(&B64.decode(&sealed).unwrap()).is_err());
    }

    #[test]
    fn seal_refuses_what_is_not_a_key() {
        assert!(matches!(
            seal("not base64!", b"x"),
            Err(SealError::Base64(_))
        ));
        // GitHub's documentation example decodes to 33 bytes.
        assert!(matches!(
            seal("2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234", b"x"),
            Err(SealError::Length(33))
        ));
    }

    #[test]
    fn auto_sizing() {
        // 10 tasks of 10 min in 45-min runners: 100 min of work -> 3 runners.
        assert_eq!(auto_runners(6000, 2700, 10, 20), 3);
        // Never more runners than tasks.
        assert_eq!(auto_runners(4 * 3600, 2700, 4, 20), 4);
        // Never more than the plan allows.
        assert_eq!(auto_runners(1000 * 3600, 2700, 1000, 20), 20);
        // Work that fits one runner, and no work at all: one runner.
        assert_eq!(auto_runners(60, 2700, 1, 20), 1);
        assert_eq!(auto_runners(0, 2700, 0, 20), 1);
        // A zero budget does not divide by zero.
        assert_eq!(auto_runners(100, 0, 5, 3), 3);
    }

    #[test]
    fn minutes_estimate() {
        // 100 min of work on 3 runners: 100 + 3 (runners) + 1 (planning).
        assert_eq!(estimate_minutes(6000, 3, 2700), 104);
        // Capped by every runner using its whole budget.
        assert_eq!(estimate_minutes(100 * 3600, 2, 2700), 91);
        assert_eq!(estimate_minutes(0, 1, 2700), 2);
    }

    #[test]
    fn repo_slugs() {
        let r: RepoSlug = "octo-org/pool.data".parse().unwrap();
        assert_eq!((r.owner(), r.name()), ("octo-org", "pool.data"));
        assert_eq!(
            r.git_remote(),
            "git:https://github.com/octo-org/pool.data.git"
        );
        let r: RepoSlug = "https://github.com/a/b.git".parse().unwrap();
        assert_eq!(r.to_string(), "a/b");
        for bad in [
            "", "a", "a/", "/b", "a/b/c", "-a/b", "a/..", "a b/c", "a/b c",
        ] {
            assert!(bad.parse::<RepoSlug>().is_err(), "{bad}");
        }
    }

    #[test]
    fn months() {
        let m: Month = "2026-12".parse().unwrap();
        assert_eq!(m.next().to_string(), "2027-01");
        assert_eq!(m.start_ms(), parse_time("2026-12-01T00:00:00Z").unwrap());
        let t = UNIX_EPOCH + Duration::from_millis(m.start_ms() as u64 + 86_400_000);
        assert_eq!(Month::of(t), m);
        assert!("2026-13".parse::<Month>().is_err());
        assert!("26-01".parse::<Month>().is_err());
    }

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
    fn minutes_from_timing_and_jobs() {
        // GitHub's example: Ubuntu 1 job of 3 min, macOS 4 jobs of 1 min,
        // Windows 2 jobs of 2.5 min (rounded up to 3 each).
        let timing: RunTiming = serde_json::from_str(
            r#"{"billable":{"UBUNTU":{"total_ms":180000,"jobs":1,"job_runs":[{"job_id":1,"duration_ms":180000}]},
            "MACOS":{"total_ms":240000,"jobs":4,"job_runs":[{"job_id":2,"duration_ms":60000},{"job_id":3,"duration_ms":60000},{"job_id":4,"duration_ms":60000},{"job_id":5,"duration_ms":60000}]},
            "WINDOWS":{"total_ms":300000,"jobs":2,"job_runs":[{"job_id":6,"duration_ms":150000},{"job_id":7,"duration_ms":150000}]}},
            "run_duration_ms":500000}"#,
        )
        .unwrap();
        assert_eq!(billable_minutes(&timing), Some(13));
        // Without job runs: the OS total, rounded up.
        let timing: RunTiming =
            serde_json::from_str(r#"{"billable":{"UBUNTU":{"total_ms":61000,"jobs":2}}}"#).unwrap();
        assert_eq!(billable_minutes(&timing), Some(2));
        // Public repositories: no billable time; an absent field likewise.
        for text in [
            r#"{"billable":{},"run_duration_ms":5}"#,
            r#"{"run_duration_ms":5}"#,
        ] {
            let timing: RunTiming = serde_json::from_str(text).unwrap();
            assert_eq!(billable_minutes(&timing), None);
        }
        let jobs: Vec<Job> = serde_json::from_str(
            r#"[{"id":1,"started_at":"2026-11-22T10:00:00Z","completed_at":"2026-11-22T10:02:01Z"},
                {"id":2,"started_at":"2026-11-22T10:00:00Z","completed_at":null},
                {"id":3,"started_at":null}]"#,
        )
        .unwrap();
        let now = parse_time("2026-11-22T10:00:30Z").unwrap();
        assert_eq!(jobs_minutes(&jobs, now), 3 + 1);
    }

    #[test]
    fn extra_headers() {
        let h = parse_extra_headers(
            "Prefer: code=401\n\nactions/create-workflow-dispatch Prefer: code=204, dynamic=false\n",
        )
        .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].0, None);
        assert_eq!(h[0].2, "code=401");
        assert_eq!(h[1].0.as_deref(), Some("actions/create-workflow-dispatch"));
        assert_eq!(h[1].2, "code=204, dynamic=false");
        assert!(parse_extra_headers("no colon").is_err());
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("bridge.yml"), "bridge.yml");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(
            encode(".github/workflows/bridge.yml"),
            ".github%2Fworkflows%2Fbridge.yml"
        );
    }
}
