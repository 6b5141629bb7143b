//! The connection: where the API is ([`Endpoint`]), the blocking client for
//! one repository ([`GitHub`]), sending one request, and turning an error
//! status into a [`GitHubError`] that names the [`Operation`].
//!
//! The client runs octocrab on a current-thread Tokio runtime of its own,
//! so that callers stay synchronous; octocrab's `retry` and `timeout`
//! features bound each request (connect 15 s, read 60 s).

use std::fmt;
use std::time::Duration;

use http::Method;
use octocrab::Octocrab;
use serde::Serialize;

use crate::slug::RepoSlug;

/// The API's address unless [`API_ENV`] says otherwise.
pub const DEFAULT_API: &str = "https://api.github.com";
/// The environment variable that, by convention, overrides the API's
/// address (`https://HOST/api/v3` for GitHub Enterprise Server; a mock on
/// 127.0.0.1 in tests). Read by the caller; named in this crate's messages.
pub const API_ENV: &str = "BRIDGE_GITHUB_API";
/// The environment variable of extra request headers, for testing against
/// mocks only (see [`Endpoint::new`]). Read by the caller; named in this
/// crate's messages.
pub const EXTRA_HEADERS_ENV: &str = "BRIDGE_GITHUB_EXTRA_HEADERS";

/// The token permissions bridge needs, for messages (a fine-grained
/// personal access token limited to the repository): Actions to dispatch
/// and follow runs, Secrets to store the runner identity, Contents for the
/// store's refs and committed files, Workflows to commit the workflow file
/// (`init --github --via-api`), Metadata to read the repository (every
/// fine-grained token has it).
pub const TOKEN_PERMISSIONS: &str = "Actions: read and write, Secrets: read and write, Contents: read and write, Workflows: read and write, Metadata: read";

/// The operations bridge makes, named by GitHub's operation ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET /repos/{o}/{r}`
    GetRepo,
    /// `POST /repos/{o}/{r}/actions/workflows/{workflow}/dispatches`
    Dispatch,
    /// `GET /repos/{o}/{r}/actions/workflows/{workflow}`
    GetWorkflow,
    /// `PUT /repos/{o}/{r}/actions/workflows/{workflow}/enable`
    EnableWorkflow,
    /// `GET /repos/{o}/{r}/actions/workflows/{workflow}/runs`
    ListRuns,
    /// `GET /repos/{o}/{r}/actions/runs/{id}`
    GetRun,
    /// `GET /repos/{o}/{r}/actions/runs/{id}/jobs`
    ListJobs,
    /// `GET /repos/{o}/{r}/actions/secrets/public-key`
    PublicKey,
    /// `PUT /repos/{o}/{r}/actions/secrets/{name}`
    PutSecret,
    /// `GET /repos/{o}/{r}/contents/{path}`
    GetContent,
    /// `PUT /repos/{o}/{r}/contents/{path}`
    PutContent,
    /// `GET /repos/{o}/{r}/releases/tags/{tag}`
    GetReleaseByTag,
    /// `GET /repos/{o}/{r}/commits/{ref}`
    GetCommit,
}

impl Operation {
    /// GitHub's operation id (as in its OpenAPI description).
    pub fn id(self) -> &'static str {
        match self {
            Operation::GetRepo => "repos/get",
            Operation::Dispatch => "actions/create-workflow-dispatch",
            Operation::GetWorkflow => "actions/get-workflow",
            Operation::EnableWorkflow => "actions/enable-workflow",
            Operation::ListRuns => "actions/list-workflow-runs",
            Operation::GetRun => "actions/get-workflow-run",
            Operation::ListJobs => "actions/list-jobs-for-workflow-run",
            Operation::PublicKey => "actions/get-repo-public-key",
            Operation::PutSecret => "actions/create-or-update-repo-secret",
            Operation::GetContent => "repos/get-content",
            Operation::PutContent => "repos/create-or-update-file-contents",
            Operation::GetReleaseByTag => "repos/get-release-by-tag",
            Operation::GetCommit => "repos/get-commit",
        }
    }

    /// The fine-grained token permission the operation needs.
    pub fn permission(self) -> &'static str {
        match self {
            Operation::Dispatch | Operation::EnableWorkflow => "Actions: read and write",
            Operation::GetWorkflow
            | Operation::ListRuns
            | Operation::GetRun
            | Operation::ListJobs => "Actions: read",
            Operation::PublicKey | Operation::PutSecret => "Secrets: read and write",
            Operation::GetContent | Operation::PutContent => "Contents: read and write",
            Operation::GetRepo => "Metadata: read",
            // Of a public repository (bridge's own): any token may read it.
            Operation::GetReleaseByTag | Operation::GetCommit => "Contents: read",
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
    Unauthorized {
        /// The call.
        call: Call,
        /// GitHub's message.
        message: String,
    },
    /// 403: the token lacks a permission, or a rate limit.
    #[error("{call}: access denied (HTTP 403: {message})")]
    Forbidden {
        /// The call.
        call: Call,
        /// GitHub's message.
        message: String,
    },
    /// 404: no such repository, workflow or file, or one the token cannot see.
    #[error("{call}: not found (HTTP 404: {message})")]
    NotFound {
        /// The call.
        call: Call,
        /// GitHub's message.
        message: String,
    },
    /// 422: GitHub understood the request and refused it; its message says why.
    #[error("{call}: GitHub refused it: {message} (HTTP 422)")]
    Unprocessable {
        /// The call.
        call: Call,
        /// GitHub's message, with the validation errors' details.
        message: String,
    },
    /// Another error status.
    #[error("{call}: HTTP {status}: {message}")]
    Status {
        /// The call.
        call: Call,
        /// The HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// No answer (connection, TLS, timeout).
    #[error("{call}: no answer from {base}")]
    Transport {
        /// The call.
        call: Call,
        /// The API's address.
        base: String,
        /// What octocrab saw.
        #[source]
        source: Box<octocrab::Error>,
    },
    /// An answer bridge cannot read.
    #[error("{call}: GitHub's answer is not what bridge expects ({detail})")]
    Decode {
        /// The call.
        call: Call,
        /// What serde could not read.
        detail: String,
    },
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

/// The error for an error status: its class, and GitHub's message with the
/// validation errors' details (which say which field was refused).
fn classify(call: &Call, status: u16, message: &str, errors: &[serde_json::Value]) -> GitHubError {
    let mut message = message.trim().to_owned();
    for detail in errors {
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
    match status {
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

/// A client that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The API's address is not an http(s) URL with a host.
    #[error("{API_ENV}={base} is not an http(s) URL")]
    NotHttpUrl {
        /// The address given.
        base: String,
    },
    /// octocrab refused the API's address.
    #[error("{API_ENV}={base} is not a URL: {cause}")]
    BadUri {
        /// The address given.
        base: String,
        /// What octocrab said (in the message: it was never a cause of its own).
        cause: Box<octocrab::Error>,
    },
    /// A line of extra headers is not `[OPERATION ]Name: value`.
    #[error(transparent)]
    ExtraHeader(#[from] ExtraHeaderError),
    /// The runtime the client runs on could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// octocrab could not build its client.
    #[error("cannot build the GitHub client: {0}")]
    Build(Box<octocrab::Error>),
}

/// A line of [`EXTRA_HEADERS_ENV`] that is not `[OPERATION ]Name: value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{EXTRA_HEADERS_ENV}: `{line}` is not `[OPERATION ]Name: value`")]
pub struct ExtraHeaderError {
    /// The line, trimmed.
    pub line: String,
}

/// One extra request header, for one operation or for every one.
#[derive(Debug, Clone)]
struct ExtraHeader {
    /// The operation id it is for; `None` for every operation.
    scope: Option<String>,
    name: http::HeaderName,
    value: http::HeaderValue,
}

/// Where the API is: its base URL, and the extra headers to send (for
/// mocks).
#[derive(Debug, Clone)]
pub struct Endpoint {
    base: String,
    extra_headers: Vec<ExtraHeader>,
}

impl Default for Endpoint {
    /// api.github.com, no extra headers.
    fn default() -> Endpoint {
        Endpoint {
            base: DEFAULT_API.to_owned(),
            extra_headers: Vec::new(),
        }
    }
}

impl Endpoint {
    /// The API at `base` (default [`DEFAULT_API`] when `None` or blank), with
    /// `extra_headers`: one per line, `Name: value`, or `OPERATION Name:
    /// value` to add it to one operation only (GitHub's operation ids, e.g.
    /// `actions/create-workflow-dispatch Prefer: code=204`). Callers pass
    /// [`API_ENV`] and [`EXTRA_HEADERS_ENV`], the names the messages use.
    pub fn new(base: Option<&str>, extra_headers: Option<&str>) -> Result<Endpoint, ConnectError> {
        let base = base
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_API.to_owned());
        // octocrab panics on a base without a scheme or host: check first.
        let valid = base.parse::<http::Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
        });
        if !valid {
            return Err(ConnectError::NotHttpUrl { base });
        }
        let extra_headers = parse_extra_headers(extra_headers.unwrap_or_default())?;
        Ok(Endpoint {
            base,
            extra_headers,
        })
    }

    /// The API's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }
}

/// Parses extra headers (see [`Endpoint::new`]).
fn parse_extra_headers(text: &str) -> Result<Vec<ExtraHeader>, ExtraHeaderError> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bad = || ExtraHeaderError {
            line: line.to_owned(),
        };
        let (head, value) = line.split_once(':').ok_or_else(bad)?;
        let (scope, name) = match head.trim().rsplit_once(' ') {
            Some((scope, name)) => (Some(scope.trim().to_owned()), name),
            None => (None, head.trim()),
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = http::HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        out.push(ExtraHeader { scope, name, value });
    }
    Ok(out)
}

/// The blocking client for one repository.
pub struct GitHub {
    runtime: tokio::runtime::Runtime,
    client: Octocrab,
    repo: RepoSlug,
    endpoint: Endpoint,
}

impl fmt::Debug for GitHub {
    /// The repository and the address, never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("repo", &self.repo)
            .field("base", &self.endpoint.base)
            .finish_non_exhaustive()
    }
}

/// An answer: the status and the body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl GitHub {
    /// A client for `repo` at `endpoint`, sending `token`. Nothing is sent
    /// yet: a wrong token shows on the first call.
    pub fn connect(
        repo: &RepoSlug,
        token: String,
        endpoint: Endpoint,
    ) -> Result<GitHub, ConnectError> {
        // octocrab's client spawns a task when built: it needs a runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        let base = endpoint.base.clone();
        let client = runtime.block_on(async {
            Octocrab::builder()
                .personal_token(token)
                .base_uri(base.as_str())
                .map_err(|e| ConnectError::BadUri {
                    base: base.clone(),
                    cause: Box::new(e),
                })?
                .set_connect_timeout(Some(Duration::from_secs(15)))
                .set_read_timeout(Some(Duration::from_secs(60)))
                .build()
                .map_err(|e| ConnectError::Build(Box::new(e)))
        })?;
        Ok(GitHub {
            runtime,
            client,
            repo: repo.clone(),
            endpoint,
        })
    }

    /// The repository this client is for.
    pub fn repo(&self) -> &RepoSlug {
        &self.repo
    }

    pub(crate) fn call(&self, op: Operation, what: impl Into<String>) -> Call {
        Call {
            op,
            repo: self.repo.to_string(),
            what: what.into(),
        }
    }

    /// Sends one request; error statuses become [`GitHubError`]s.
    pub(crate) fn send<B: Serialize + ?Sized>(
        &self,
        call: &Call,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<Answer, GitHubError> {
        let transport = |source: octocrab::Error| GitHubError::Transport {
            call: call.clone(),
            base: self.endpoint.base.clone(),
            source: Box::new(source),
        };
        tracing::debug!("GitHub API: {method} {path_and_query}");
        self.runtime.block_on(async {
            let mut builder = http::Request::builder().method(method).uri(path_and_query);
            for h in &self.endpoint.extra_headers {
                if h.scope.as_deref().is_none_or(|s| s == call.op.id()) {
                    builder = builder.header(&h.name, &h.value);
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
                    return Err(classify(
                        call,
                        source.status_code.as_u16(),
                        &source.message,
                        source.errors.as_deref().unwrap_or_default(),
                    ));
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

    /// Reads an answer's body as `T`.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        call: &Call,
        body: &str,
    ) -> Result<T, GitHubError> {
        serde_json::from_str(body).map_err(|e| GitHubError::Decode {
            call: call.clone(),
            detail: e.to_string(),
        })
    }

    /// `/repos/OWNER/NAME`.
    pub(crate) fn repo_path(&self) -> String {
        format!("/repos/{}/{}", self.repo.owner(), self.repo.name())
    }
}

/// Percent-encodes one path parameter or query value. A file path's
/// slashes are encoded too (`%2F`), as Octokit does: the contents API
/// accepts it, and the path is one parameter in GitHub's description.
pub(crate) fn encode(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_headers() {
        let h = parse_extra_headers(
            "Prefer: code=401\n\nactions/create-workflow-dispatch Prefer: code=204, dynamic=false\n",
        )
        .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].scope, None);
        assert_eq!(h[0].value, "code=401");
        assert_eq!(
            h[1].scope.as_deref(),
            Some("actions/create-workflow-dispatch")
        );
        assert_eq!(h[1].value, "code=204, dynamic=false");
        assert!(parse_extra_headers("no colon").is_err());
    }

    #[test]
    fn a_bad_extra_header_names_its_line() {
        let e = parse_extra_headers("Prefer: ok\n  no colon  \n").unwrap_err();
        assert_eq!(e.line, "no colon");
        assert_eq!(
            e.to_string(),
            "BRIDGE_GITHUB_EXTRA_HEADERS: `no colon` is not `[OPERATION ]Name: value`"
        );
        assert!(parse_extra_headers("Bad Name With Spaces\u{7f}: x").is_err());
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

    #[test]
    fn endpoints() {
        let e = Endpoint::new(None, None).unwrap();
        assert_eq!(e.base(), DEFAULT_API);
        let e = Endpoint::new(Some("  "), Some("")).unwrap();
        assert_eq!(e.base(), DEFAULT_API);
        let e = Endpoint::new(Some("http://127.0.0.1:8080/api/v3/"), None).unwrap();
        assert_eq!(e.base(), "http://127.0.0.1:8080/api/v3");
        for bad in ["api.github.com", "ftp://host", "http://", "not a url"] {
            let e = Endpoint::new(Some(bad), None).unwrap_err();
            assert!(matches!(e, ConnectError::NotHttpUrl { .. }), "{bad}: {e:?}");
            assert!(e.to_string().starts_with("BRIDGE_GITHUB_API="), "{e}");
        }
        assert!(matches!(
            Endpoint::new(None, Some("x")),
            Err(ConnectError::ExtraHeader(_))
        ));
    }

    fn call(op: Operation) -> Call {
        Call {
            op,
            repo: "o/r".to_owned(),
            what: "read something".to_owned(),
        }
    }

    #[test]
    fn error_statuses_are_classified() {
        let c = call(Operation::GetRun);
        for (status, want) in [(401, 401), (403, 403), (404, 404), (422, 422), (500, 500)] {
            let e = classify(&c, status, " Bad ", &[]);
            assert_eq!(e.status(), Some(want));
            assert_eq!(e.call().op, Operation::GetRun);
        }
        assert!(matches!(
            classify(&c, 401, "x", &[]),
            GitHubError::Unauthorized { .. }
        ));
        let e = classify(&c, 502, "Bad gateway", &[]);
        assert_eq!(
            e.to_string(),
            "cannot read something of o/r: HTTP 502: Bad gateway"
        );
    }

    #[test]
    fn validation_details_join_the_message() {
        let c = call(Operation::Dispatch);
        let errors = [
            serde_json::json!("Unexpected input(s) 'x'"),
            serde_json::json!({"resource": "Workflow", "message": "No ref found for: nope"}),
            serde_json::json!({"code": "invalid"}),
            // Already in the message: not repeated.
            serde_json::json!("Invalid request"),
        ];
        let e = classify(&c, 422, "Invalid request", &errors);
        match e {
            GitHubError::Unprocessable { message, .. } => assert_eq!(
                message,
                "Invalid request; Unexpected input(s) 'x'; No ref found for: nope; {\"code\":\"invalid\"}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
