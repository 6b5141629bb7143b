//! A GitHub-shaped git server for tests and benchmarks: git's smart HTTP
//! (`git http-backend`) over https on 127.0.0.1, behind the checks and
//! limits GitHub applies to a repository, counting what a fleet does to it.
//!
//! What it imitates, and where the figures come from (GitHub's docs,
//! "Repository limits", "About large files on GitHub", "Managing the push
//! policy for your repository"):
//! - **credentials the way bridge sends them**: a token as the password of
//!   `Authorization: Basic` (bridge sends `x-access-token:TOKEN` as an
//!   `http.<origin>.extraheader`, over https only); anything else gets
//!   `401` with `WWW-Authenticate: Basic realm="GitHub"`;
//! - **enforced**: objects over 100 MB (GitHub's `GH001: Large files
//!   detected` text, from a `pre-receive` hook while the objects are in
//!   quarantine, so nothing is stored), pushes over 2 GB (git's own
//!   `receive.maxInputSize`: "pack exceeds maximum allowed size (2.00
//!   GiB)", as GitHub prints), and, when set, the push policy of at most N
//!   ref updates per push (GitHub's default N is 5) and a rate limit of N
//!   pushes a minute (GitHub publishes none; off by default). Each limit is
//!   a [`Config`] field, so tests use small ones;
//! - **counted**, per repository: every push (POST to `git-receive-pack`,
//!   with its size, ref count and refusal) and every read (one per `GET
//!   info/refs?service=git-upload-pack`, upload-pack POSTs noted), with
//!   times; [`GitHubGit::report`] adds the refs, the widest tree and the
//!   largest object reachable from them;
//! - **recommended** (not enforced, as on GitHub): at most 6 pushes a
//!   minute and 15 reads a second per repository, directories of at most
//!   3,000 entries, at most 5,000 refs: [`Report::check`] against
//!   [`Recommendations::github`] says the fleet stayed within them or lists
//!   each [`Violation`].
//!
//! The server runs on its own tokio runtime (so sync tests and the
//! benchmarks' plain `main` can use it) and stops when dropped. git
//! clients trust its certificate through `GIT_SSL_CAINFO`
//! ([`GitHubGit::ca_path`]); bridge sends its token to it when
//! `BRIDGE_GIT_AUTH_HOST=127.0.0.1` (see [`GitHubGit::bridge_env`]).
//!
//! ```
//! use bridge_testutil::github_git::{GitHubGit, Recommendations};
//!
//! let server = GitHubGit::start();
//! let url = server.create_repo("octo/pool");
//! assert!(url.starts_with("https://127.0.0.1:"));
//! // … run `bridge init --remote git:{url}` and a fleet with
//! // `server.bridge_env()` in their environment, then:
//! let report = server.report();
//! if let Err(violations) = report.check(&Recommendations::github()) {
//!     panic!("{violations}\n{report}");
//! }
//! ```

mod hook;
mod http;
mod report;
pub(crate) mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio_rustls::rustls;

pub use hook::Refusal;
pub use report::{
    ObjectStat, Push, Recommendations, RepoReport, Report, TreeStat, Violation, Violations,
    busiest_window,
};

/// The server's limits and token.
#[derive(Clone, Debug)]
pub struct Config {
    /// The token git must send (as the Basic password).
    pub token: String,
    /// Largest object a push may add (GitHub: 100 MB).
    pub max_object_bytes: u64,
    /// Largest pack a push may send (GitHub: 2 GB).
    pub max_push_bytes: u64,
    /// The push policy: at most this many ref updates per push (GitHub's
    /// suggested value is 5; off by default, as on GitHub).
    pub max_refs_per_push: Option<usize>,
    /// Refuse (HTTP 429) a push when the repository already had this many
    /// in the last 60 s. Off by default: GitHub recommends, and counts.
    pub max_pushes_per_minute: Option<usize>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            token: "ghs_bridgeTestServerToken".to_owned(),
            max_object_bytes: 100 * 1024 * 1024,
            max_push_bytes: 2 * 1024 * 1024 * 1024,
            max_refs_per_push: None,
            max_pushes_per_minute: None,
        }
    }
}

/// A running server; stops (and removes its repositories) when dropped.
pub struct GitHubGit {
    state: Arc<http::State>,
    port: u16,
    ca_path: PathBuf,
    tls: Arc<rustls::ServerConfig>,
    // Dropped first: the runtime ends the server's tasks and their git
    // children before the folder goes.
    runtime: Option<tokio::runtime::Runtime>,
    root: TempDir,
}

impl std::fmt::Debug for GitHubGit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubGit")
            .field("port", &self.port)
            .field("root", &self.root.path())
            .finish_non_exhaustive()
    }
}

impl GitHubGit {
    /// Starts a server with GitHub's limits and the default token.
    pub fn start() -> GitHubGit {
        GitHubGit::with_config(Config::default())
    }

    /// Starts a server on 127.0.0.1 (a free port) with `config`.
    pub fn with_config(config: Config) -> GitHubGit {
        let root = tempfile::Builder::new()
            .prefix("bridge-github-git-")
            .tempdir()
            .unwrap();
        let repos = root.path().join("repos");
        let hooks = root.path().join("hooks");
        let refusals = root.path().join("refusals");
        std::fs::create_dir_all(&repos).unwrap();
        std::fs::create_dir_all(&refusals).unwrap();
        hook::install(&hooks);
        let ca_path = root.path().join("ca.pem");
        let tls = tls::server_config(&ca_path);
        let state = Arc::new(http::State::new(config, repos, hooks, refusals));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let runtime = serve(listener, &tls, &state);
        GitHubGit {
            state,
            port,
            ca_path,
            tls,
            runtime: Some(runtime),
            root,
        }
    }

    /// Stops serving, as a host that went down: the port refuses
    /// connections and requests under way are cut; the repositories and
    /// the counts stay. [`restart`](Self::restart) serves them again.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            shut_down(runtime);
        }
    }

    /// Serves again on the same port after [`stop`](Self::stop) (the same
    /// URLs, repositories, token and certificate; counting goes on);
    /// nothing when it serves already.
    pub fn restart(&mut self) {
        if self.runtime.is_some() {
            return;
        }
        // std sets SO_REUSEADDR on Unix: the connections of the stopped
        // server left in TIME_WAIT do not hold the port.
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("cannot listen on port {} again: {e}", self.port));
        self.runtime = Some(serve(listener, &self.tls, &self.state));
    }

    /// Whether it serves (not [`stop`](Self::stop)ped).
    pub fn is_serving(&self) -> bool {
        self.runtime.is_some()
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The token it accepts.
    pub fn token(&self) -> &str {
        &self.state.config.token
    }

    /// The PEM of the authority that signed its certificate: give it to
    /// git as `GIT_SSL_CAINFO`.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Creates the empty bare repository `owner/name` and returns its URL,
    /// `https://127.0.0.1:PORT/owner/name.git`.
    pub fn create_repo(&self, name: &str) -> String {
        let name = name.trim_end_matches(".git");
        let dir = self.repo_dir(name);
        // `main`, GitHub's default branch, so a clone checks it out.
        crate::git::git(&["init", "--bare", "-q", "-b", "main", dir.to_str().unwrap()]);
        self.url(name)
    }

    /// The URL of `owner/name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "https://127.0.0.1:{}/{}.git",
            self.port,
            name.trim_end_matches(".git")
        )
    }

    /// The bare repository of `owner/name` on disk, to inspect.
    pub fn repo_dir(&self, name: &str) -> PathBuf {
        self.state
            .repos
            .join(format!("{}.git", name.trim_end_matches(".git")))
    }

    /// The `Authorization` header bridge sends for the token, as an
    /// `http.extraHeader` value for plain git.
    pub fn auth_header(&self) -> String {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("x-access-token:{}", self.token()));
        format!("AUTHORIZATION: basic {basic}")
    }

    /// The environment a `bridge` process needs to use the server: its
    /// token (`GITHUB_TOKEN`), the host it may send it to
    /// (`BRIDGE_GIT_AUTH_HOST`), and the certificate git must trust.
    pub fn bridge_env(&self) -> Vec<(String, String)> {
        vec![
            ("GITHUB_TOKEN".to_owned(), self.token().to_owned()),
            ("BRIDGE_GIT_AUTH_HOST".to_owned(), "127.0.0.1".to_owned()),
            (
                "GIT_SSL_CAINFO".to_owned(),
                self.ca_path.display().to_string(),
            ),
        ]
    }

    /// Everything seen so far, with each repository's refs, widest tree and
    /// largest object read from disk now.
    pub fn report(&self) -> Report {
        let logs = self
            .state
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut report = Report::default();
        let mut names: Vec<String> = logs.keys().cloned().collect();
        // Repositories created but never reached are reported too.
        for dir in walk_repos(&self.state.repos) {
            if !names.contains(&dir) {
                names.push(dir);
            }
        }
        for name in names {
            let log = logs.get(&name).cloned().unwrap_or_default();
            let dir = self.state.repos.join(&name);
            if !dir.is_dir() {
                continue;
            }
            report
                .repos
                .insert(name.clone(), RepoReport::new(name, &log, &dir));
        }
        report
    }
}

/// `owner/name.git` of every repository under `root`.
fn walk_repos(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for owner in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let owner_name = owner.file_name().to_string_lossy().into_owned();
        if owner_name.ends_with(".git") {
            // `name.git` without an owner: a repository itself.
            found.push(owner_name);
            continue;
        }
        for repo in std::fs::read_dir(owner.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = repo.file_name().to_string_lossy().into_owned();
            if name.ends_with(".git") {
                found.push(format!("{owner_name}/{name}"));
            }
        }
    }
    found
}

impl Drop for GitHubGit {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A runtime serving `state` over TLS on `listener` until it is shut down
/// (which drops the listener and every connection's task).
fn serve(
    listener: std::net::TcpListener,
    tls: &Arc<rustls::ServerConfig>,
    state: &Arc<http::State>,
) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("github-git")
        .enable_all()
        .build()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
    let serve_state = Arc::clone(state);
    runtime.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let state = Arc::clone(&serve_state);
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req| http::handle(Arc::clone(&state), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    runtime
}

/// Ends a server's runtime: its tasks, and with them the listener, the
/// connections and their git children (`kill_on_drop`).
fn shut_down(runtime: tokio::runtime::Runtime) {
    // Waiting (for the git children to be killed before the folder goes)
    // is not allowed inside an async context: there, stop in the
    // background.
    if tokio::runtime::Handle::try_current().is_ok() {
        runtime.shutdown_background();
    } else {
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}
