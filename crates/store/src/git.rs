//! The `git:` remote: a store kept in branches of any git repository,
//! driven through the `git` CLI so that authentication is whatever the
//! user's git already does (credential helpers, SSH, `url.*.insteadOf`), plus
//! `GITHUB_TOKEN` on runners.
//!
//! # Layout on the git side
//!
//! One branch per writer slot (a member, a device or a runner shard):
//! `refs/heads/bridge/<slot>`. Its tree holds store files at their store
//! names (`FORMAT`, `workspace`, `chunks/<doc>/<hash>.chunk`,
//! `blobs/<hash>.blob`); anything else in it is ignored. Only the writer of a
//! slot pushes its branch, so writers never contend with each other (DESIGN.md
//! "Remotes": 50 writers on one branch needed 1,207 rejected pushes, with a
//! ref each none). Every slot's tree also carries `FORMAT` and `workspace`:
//! the first writer puts them, later slots copy them into their first commit,
//! so that any one slot describes the store on its own.
//!
//! # Data flow
//!
//! Everything goes through a private bare repository (`cache_dir`), never
//! the user's checkout:
//!
//! - [`Remote::list`] fetches the whole namespace shallowly
//!   (`git fetch --depth=1 --prune <url> +refs/heads/bridge/*:refs/remotes/bridge/*`),
//!   then lists the tree of every changed ref and returns the union. The
//!   trees are read level by level with `git cat-file --batch` (the root
//!   trees, then each depth's new subtrees), and the subtrees read last time
//!   are not read again: a fetch costs a handful of git processes whatever
//!   the number of writers.
//! - [`Remote::read_many`] looks names up in that listing (fetching again for
//!   names it lacks) and reads all blobs through one `git cat-file --batch`.
//! - [`Remote::put`] and [`Remote::remove`] build a commit on this slot's
//!   tip without a work tree or an index: one `git fast-import` writes the
//!   new blobs and the commit (`from` the tip, `M` lines for the new files),
//!   then `git push` sends it with `--force-with-lease` against the tip it
//!   was built on. A rejection means another process of the *same* slot
//!   pushed meanwhile: fetch that slot, rebuild (files are immutable and
//!   uniquely named, so "rebase" is re-adding the same paths) and retry with
//!   jittered exponential backoff. Transient network failures are retried the
//!   same way; a refused or unresolvable host is [`RemoteError::Unreachable`]
//!   at once, so callers go offline quickly.
//! - [`Remote::remove`] (compaction, archival, garbage collection) rewrites
//!   every branch holding the files as one parentless commit of what
//!   remains, pushed with a lease on the tip just fetched; a branch whose
//!   writer pushed meanwhile keeps its files until next time. Parentless,
//!   so that the old history becomes unreachable and the host's own garbage
//!   collection reclaims it: the repository does not grow with its history.
//!
//! Every git command is built by one function ([`GitRemote`]'s `command`)
//! with a controlled environment (`LC_ALL=C`, no terminal prompts, a fixed
//! committer, the caller's `GIT_DIR`/`GIT_INDEX_FILE`/... removed) and
//! logged at debug level without environment values; the `GITHUB_TOKEN`
//! header travels in `GIT_CONFIG_*` environment variables, never in argv or
//! the URL. Failures are classified from git's stderr by the pure function
//! `classify`, tested on real samples.
//!
//! A host that accepts the connection and never answers must not hang the
//! caller (issue 12, item 15): fetches and pushes run with `--progress`
//! under a watchdog that kills git when no byte of output arrived for the
//! stall timeout
//! ([`GitRemote::with_stall_timeout`], 30 s by default); over http(s) git's
//! low-speed limit (5 s later) backs it up. A stall is
//! [`RemoteError::Unreachable`] with a timed-out cause and is not retried,
//! so the caller goes on offline after one stall timeout. A host that
//! reports no space left is [`RemoteError::Full`].
//!
//! Creating the cache repository and fetching into it are serialised by an
//! advisory file lock (`bridge.lock` in the cache): concurrent shallow
//! fetches otherwise fail on `shallow.lock`, concurrent inits on each
//! other's files. Other commands run concurrently; each commit is built on
//! a scratch ref of its own, deleted in the same `fast-import` stream.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::names::{FORMAT_NAME, StoreName, WORKSPACE_NAME};
use crate::remote::{Remote, RemoteError};

/// The prefix of the branches holding the store, one per writer slot.
pub const REF_PREFIX: &str = "refs/heads/bridge/";
/// Where fetched slot branches land in the private cache repository.
const TRACKING_PREFIX: &str = "refs/remotes/bridge/";
/// Tries of a push (or a fetch) before giving up.
const MAX_ATTEMPTS: u32 = 6;
/// The first backoff delay; it doubles on each retry, ±50 % jitter.
const BACKOFF_BASE_MS: u64 = 50;
/// How deep below a root tree a store file's folder can be.
const MAX_TREE_DEPTH: usize = 2;
/// Longest accepted writer slot.
pub const MAX_SLOT_LEN: usize = 64;
/// Largest git tree object read while listing a `git:` remote: a store's
/// folder of a million files is a tree of ~70 MB, so this holds any real
/// store and refuses junk before it is read into memory.
pub const MAX_TREE_BYTES: u64 = 128 << 20;
/// Committer and author of every commit this remote writes.
const IDENT_NAME: &str = "bridge";
/// See [`IDENT_NAME`].
const IDENT_EMAIL: &str = "bridge@localhost";
/// Variables of the caller's environment that would point git at another
/// repository, index or object store; removed from every command.
const HOSTILE_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_SHALLOW_FILE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
];

/// A string that is not a writer slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid writer slot {0:?}: expected 1 to 64 characters from [A-Za-z0-9._-], not starting with '.' or '-', without '..', not ending with '.' or '.lock'"
)]
pub struct SlotError(pub String);

/// Checks a writer slot: `[A-Za-z0-9._-]{1,64}`, and a valid git ref
/// component (no leading `.` or `-`, no `..`, no trailing `.` or `.lock`).
pub fn validate_slot(slot: &str) -> Result<(), SlotError> {
    let ok = !slot.is_empty()
        && slot.len() <= MAX_SLOT_LEN
        && slot
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !slot.starts_with(['.', '-'])
        && !slot.ends_with('.')
        && !slot.ends_with(".lock")
        && !slot.contains("..");
    if ok {
        Ok(())
    } else {
        Err(SlotError(slot.to_owned()))
    }
}

/// Counts of a [`GitRemote`]'s pushes, for tests and measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Pushes that landed.
    pub pushed: u64,
    /// Pushes rejected because the slot's branch had moved (another process
    /// of the same slot), each followed by a rebuild.
    pub rejected: u64,
    /// Pushes retried after a transient failure (network, lock).
    pub retried: u64,
}

/// A store in branches of a git repository, one branch per writer slot.
/// See the [module docs](self).
pub struct GitRemote {
    /// The URL as git takes it (a relative local path made absolute).
    url: String,
    /// This writer's slot.
    slot: String,
    /// The private bare repository.
    git_dir: PathBuf,
    /// `GIT_CONFIG_*` variables carrying the auth header, if any.
    config_env: Vec<(String, String)>,
    /// Extra environment for every command (tests: `GIT_CONFIG_GLOBAL`).
    extra_env: Vec<(OsString, OsString)>,
    /// What the last fetch found, and this slot's tip.
    state: Mutex<State>,
    /// Serialises this instance's puts and removes.
    write_lock: Mutex<()>,
    pushed: AtomicU64,
    rejected: AtomicU64,
    retried: AtomicU64,
    /// How long a network command (fetch, push) may go without a byte of
    /// output before it is killed (see [`GitRemote::with_stall_timeout`]).
    stall_timeout: Duration,
}

/// The default of [`GitRemote::with_stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the stall watchdog looks at a running network command.
const WATCHDOG_TICK: Duration = Duration::from_millis(50);

impl fmt::Debug for GitRemote {
    // By hand: `config_env` holds the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitRemote")
            .field("url", &redact_url(&self.url))
            .field("slot", &self.slot)
            .field("git_dir", &self.git_dir)
            .field("auth_header", &!self.config_env.is_empty())
            .finish_non_exhaustive()
    }
}

/// What the remote held at the last fetch.
#[derive(Default)]
struct State {
    /// True once the cache repository exists.
    repo_ready: bool,
    /// True once a full fetch has run.
    fetched: bool,
    /// The commit this slot's branch is believed to point to on the remote
    /// (`None`: absent). Set by fetches and by our own pushes; a wrong guess
    /// only costs a rejected push.
    tip: Option<String>,
    /// The store files of each fetched slot.
    trees: BTreeMap<String, Arc<Tree>>,
    /// The entries of the trees read by the last listing, by tree id: the
    /// next listing reads only the trees that changed.
    tree_cache: HashMap<String, Arc<Vec<TreeEntry>>>,
    /// Hex digits of an object id in the cache repository (40 for SHA-1,
    /// 64 for SHA-256), once known.
    oid_hex_len: Option<usize>,
}

/// One entry of a git tree object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeEntry {
    pub(crate) name: String,
    pub(crate) oid: String,
    pub(crate) kind: EntryKind,
}

/// What a tree entry points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file (mode 100644 or 100755).
    File,
    /// A subtree (mode 40000).
    Tree,
    /// A symbolic link or a submodule: never a store file.
    Other,
}

/// The store files of one commit.
struct Tree {
    commit: String,
    /// Store name → blob id.
    files: BTreeMap<String, String>,
}

/// A store file: its name and bytes.
type NamedBytes = (String, Vec<u8>);

/// What a put changes.
#[derive(Clone, Copy)]
enum Change<'a> {
    Add(&'a [(String, Vec<u8>)]),
}

/// How a push went, when it did not fail for good.
enum PushOutcome {
    Pushed,
    /// The lease failed: the branch moved. Rebuild and retry.
    Stale(String),
    /// A transient failure: retry as is.
    Transient(RemoteError),
}

/// What a fetch found.
#[derive(Debug, PartialEq, Eq)]
enum Fetched {
    Done,
    /// The one branch asked for does not exist.
    NoSuchRef,
}

impl GitRemote {
    /// A remote for the repository at `url` (anything `git` accepts), writing
    /// branch `refs/heads/bridge/<slot>`, with its private bare repository
    /// at `cache_dir` (created on first use). A relative local path in `url`
    /// is taken from the current folder. Reads `GITHUB_TOKEN` and
    /// `BRIDGE_GIT_AUTH_HOST` now (see [`GitRemote::with_token`]).
    pub fn new(url: String, slot: String, cache_dir: PathBuf) -> Result<GitRemote, SlotError> {
        validate_slot(&slot)?;
        let url = absolute_local_url(url, None);
        let token = std::env::var("GITHUB_TOKEN").ok();
        let auth_host = std::env::var("BRIDGE_GIT_AUTH_HOST").ok();
        let count = std::env::var("GIT_CONFIG_COUNT").ok();
        let config_env = auth_env(
            &url,
            token.as_deref(),
            auth_host.as_deref(),
            count.as_deref(),
        );
        Ok(GitRemote {
            url,
            slot,
            git_dir: cache_dir,
            config_env,
            extra_env: Vec::new(),
            state: Mutex::new(State::default()),
            write_lock: Mutex::new(()),
            pushed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        })
    }

    /// Sets how long a fetch or push may make no progress (no byte on its
    /// output, with `--progress` on) before git is killed and the remote is
    /// reported [`RemoteError::Unreachable`] with
    /// a [`io::ErrorKind::TimedOut`] cause, without retrying: a host that
    /// accepts connections and never answers must not hang the command
    /// (issue 12, item 15). Over http(s) git's own low-speed limit is set
    /// to 5 s more, as a backstop. At least one second.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> GitRemote {
        self.stall_timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// Replaces the token read from `GITHUB_TOKEN` (`None`: no header).
    /// The header is sent only to `https://github.com` or to the host named
    /// by `auth_host` (`BRIDGE_GIT_AUTH_HOST`), as
    /// `http.<origin>.extraheader` through `GIT_CONFIG_*` variables.
    pub fn with_token(mut self, token: Option<&str>, auth_host: Option<&str>) -> GitRemote {
        let count = std::env::var("GIT_CONFIG_COUNT").ok();
        self.config_env = auth_env(&self.url, token, auth_host, count.as_deref());
        self
    }

    /// Adds an environment variable to every git command (tests set
    /// `GIT_CONFIG_GLOBAL=/dev/null`). Its value is never logged.
    pub fn with_git_env(
        mut self,
        key: impl Into<OsString>,
        value: impl Into<OsString>,
    ) -> GitRemote {
        self.extra_env.push((key.into(), value.into()));
        self
    }

    /// The URL given to git.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This writer's slot.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// This writer's branch, `refs/heads/bridge/<slot>`.
    pub fn ref_name(&self) -> String {
        format!("{REF_PREFIX}{}", self.slot)
    }

    /// The private bare repository.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// How many pushes landed, were rejected or were retried so far.
    pub fn push_stats(&self) -> PushStats {
        PushStats {
            pushed: self.pushed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ---- running git --------------------------------------------------

    /// Builds a git command: the only place one is made. `git --git-dir
    /// <cache> <args>`, run in the cache folder, stdin null unless `feed`,
    /// stdout and stderr piped, a controlled environment.
    fn command(&self, args: &[&str], index: Option<&Path>, feed: bool) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir")
            .arg(&self.git_dir)
            .args(args)
            .current_dir(&self.git_dir)
            .stdin(if feed { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in HOSTILE_ENV {
            cmd.env_remove(key);
        }
        // The user's config stays (credential helpers, insteadOf, SSH).
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env("GIT_AUTHOR_NAME", IDENT_NAME)
            .env("GIT_AUTHOR_EMAIL", IDENT_EMAIL)
            .env("GIT_COMMITTER_NAME", IDENT_NAME)
            .env("GIT_COMMITTER_EMAIL", IDENT_EMAIL);
        // Abort an HTTP transfer that crawls (< 1 KB/s) rather than hang;
        // the user's own limit wins. The watchdog in `run` stops a silent
        // host first, on every transport; this is the backstop for a
        // transfer that trickles (progress lines but no real data), a few
        // seconds later so that the two do not race.
        if std::env::var_os("GIT_HTTP_LOW_SPEED_LIMIT").is_none() {
            cmd.env("GIT_HTTP_LOW_SPEED_LIMIT", "1000").env(
                "GIT_HTTP_LOW_SPEED_TIME",
                (self.stall_timeout.as_secs().max(1) + 5).to_string(),
            );
        }

        if let Some(index) = index {
            cmd.env("GIT_INDEX_FILE", index);
        }
        for (key, value) in &self.config_env {
            cmd.env(key, value);
        }
        for (key, value) in &self.extra_env {
            cmd.env(key, value);
        }
        cmd
    }

    /// The command line as logged and shown in errors: no environment, the
    /// URL without credentials.
    fn show_command(&self, args: &[&str]) -> String {
        let mut out = String::from("git");
        for arg in args {
            out.push(' ');
            if *arg == self.url {
                out.push_str(&redact_url(arg));
            } else {
                out.push_str(arg);
            }
        }
        out
    }

    /// Runs a git command to completion, feeding `stdin` from another thread
    /// while stdout and stderr are read (a full pipe would deadlock).
    fn run(
        &self,
        args: &[&str],
        index: Option<&Path>,
        stdin: Option<&[u8]>,
    ) -> Result<Output, RemoteError> {
        let network = is_network_command(args);
        let mut cmd = self.command(args, index, stdin.is_some());
        let env_keys: Vec<String> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        tracing::debug!(
            git_dir = %self.git_dir.display(),
            command = %self.show_command(args),
            env = ?env_keys,
            "running git"
        );
        let mut child = cmd.spawn().map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound && self.git_dir.is_dir() {
                RemoteError::GitMissing {
                    remote: self.describe(),
                    source,
                }
            } else {
                self.git_io(args, source)
            }
        })?;
        if network && stdin.is_none() {
            return self.wait_watched(args, child);
        }
        let pipe = child.stdin.take();
        let (output, written) = std::thread::scope(|scope| {
            let writer = match (stdin, pipe) {
                (Some(data), Some(mut pipe)) => Some(scope.spawn(move || pipe.write_all(data))),
                _ => None,
            };
            let output = child.wait_with_output();
            let written = match writer {
                Some(writer) => writer
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("the stdin writer panicked"))),
                None => Ok(()),
            };
            (output, written)
        });
        let output = output.map_err(|source| self.git_io(args, source))?;
        match written {
            // A command that failed early stops reading: its status says why.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe && !output.status.success() => {}
            Err(e) => return Err(self.git_io(args, e)),
            Ok(()) => {}
        }
        Ok(output)
    }

    /// Waits for a network command, reading its output, and kills its
    /// process group when no byte arrived on stdout or stderr for the stall
    /// timeout (network commands run with `--progress`, so a transfer that
    /// moves reports it). Progress lines are dropped from the stderr it
    /// returns, so classification and messages see only git's words.
    fn wait_watched(&self, args: &[&str], mut child: Child) -> Result<Output, RemoteError> {
        let activity = Arc::new(Mutex::new(Instant::now()));
        // Owned threads, not scoped: after a stall they are left to end
        // when the last holder of the pipes (a helper such as
        // git-remote-http, which outlives git briefly) goes.
        let read = |pipe: Option<Box<dyn io::Read + Send>>| {
            let activity = Arc::clone(&activity);
            std::thread::spawn(move || -> io::Result<Vec<u8>> {
                let mut out = Vec::new();
                let Some(mut pipe) = pipe else {
                    return Ok(out);
                };
                let mut buf = [0u8; 8192];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => return Ok(out),
                        Ok(n) => {
                            *activity.lock().unwrap_or_else(PoisonError::into_inner) =
                                Instant::now();
                            out.extend_from_slice(&buf[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            })
        };
        let out = read(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
        );
        let err = read(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
        );
        let idle = || {
            activity
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed()
        };
        let mut stalled = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if idle() > self.stall_timeout {
                stalled = true;
                // git and its helpers (ssh, git-remote-http), which would
                // otherwise keep git's output pipes, and so our reader
                // threads, open. git stays in our process group, so that a
                // Ctrl-C at the terminal still reaches it.
                kill_children_of(child.id());
                let _ = child.kill();
                let _ = child.wait();
                break Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            std::thread::sleep(WATCHDOG_TICK);
        };
        let join = |h: std::thread::JoinHandle<io::Result<Vec<u8>>>| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("an output reader panicked")))
        };
        if stalled {
            tracing::debug!(
                remote = self.describe(),
                command = %self.show_command(args),
                "no progress for the stall timeout; killed"
            );
            return Err(RemoteError::Unreachable {
                remote: self.describe(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer for {} s (the stall timeout) from `{}`",
                        self.stall_timeout.as_secs(),
                        self.show_command(&args[..1])
                    ),
                ),
            });
        }
        let status = status.map_err(|source| self.git_io(args, source))?;
        let stdout = join(out).map_err(|source| self.git_io(args, source))?;
        let stderr = join(err).map_err(|source| self.git_io(args, source))?;
        Ok(Output {
            status,
            stdout,
            stderr: strip_progress(&stderr),
        })
    }

    /// Runs a local git command that must succeed; returns its stdout.
    fn ok(
        &self,
        args: &[&str],
        index: Option<&Path>,
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, RemoteError> {
        let output = self.run(args, index, stdin)?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            let class = classify(&String::from_utf8_lossy(&output.stderr));
            Err(self.failure(args, &output, class))
        }
    }

    fn git_io(&self, args: &[&str], source: io::Error) -> RemoteError {
        RemoteError::GitIo {
            remote: self.describe(),
            command: self.show_command(args),
            source,
        }
    }

    /// The error for a failed command, by class.
    fn failure(&self, args: &[&str], output: &Output, class: GitFailure) -> RemoteError {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // git echoes the URL: never show credentials a user put in it.
        let detail = summarize(&stderr).replace(&self.url, &redact_url(&self.url));
        let remote = self.describe();
        match class {
            // A network that stays flaky after the retries: go offline.
            GitFailure::Unreachable | GitFailure::Transient => RemoteError::Unreachable {
                remote,
                source: io::Error::other(detail),
            },
            GitFailure::AuthRefused => RemoteError::AuthRefused { remote, detail },
            // Not retried: it stays full until someone frees space.
            GitFailure::NoSpace => RemoteError::Full {
                remote,
                name: self.show_command(&args[..args.len().min(1)]),
                source: io::Error::other(detail),
            },
            GitFailure::NotFound => RemoteError::RepoNotFound { remote, detail },
            GitFailure::NoSuchRef | GitFailure::Locked | GitFailure::Other => RemoteError::Git {
                remote,
                command: self.show_command(args),
                status: output.status.to_string(),
                detail,
            },
        }
    }

    fn io_error(&self, path: &Path, source: io::Error) -> RemoteError {
        RemoteError::Io {
            remote: self.describe(),
            name: path.display().to_string(),
            source,
        }
    }

    fn bad_output(&self, args: &[&str], detail: String) -> RemoteError {
        RemoteError::Git {
            remote: self.describe(),
            command: self.show_command(args),
            status: "unexpected output".to_owned(),
            detail,
        }
    }

    // ---- the cache repository -------------------------------------------

    /// Creates the private bare repository if it is missing. Under the
    /// cache's lock: two `git init` of one folder at once fail on each
    /// other's files.
    fn ensure_repo(&self) -> Result<(), RemoteError> {
        if self.state().repo_ready {
            return Ok(());
        }
        let complete = |dir: &Path| {
            dir.join("HEAD").is_file()
                && dir.join("config").is_file()
                && dir.join("objects").is_dir()
        };
        if !complete(&self.git_dir) {
            fs::create_dir_all(&self.git_dir).map_err(|e| self.io_error(&self.git_dir, e))?;
            let _lock = self.cache_lock()?;
            if !complete(&self.git_dir) {
                // Re-running init on a half-made repository completes it.
                self.ok(&["init", "--bare", "-q"], None, None)?;
                tracing::debug!(git_dir = %self.git_dir.display(), "created the git cache");
            }
        }
        self.state().repo_ready = true;
        Ok(())
    }

    /// Takes the cache's lock (released on drop), held while creating the
    /// repository and while fetching into it. A file system without locks
    /// falls back on git's own lock files and our retries.
    fn cache_lock(&self) -> Result<Option<File>, RemoteError> {
        let path = self.git_dir.join("bridge.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.io_error(&path, e))?;
        match file.lock() {
            Ok(()) => Ok(Some(file)),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "no lock on the git cache");
                Ok(None)
            }
        }
    }

    /// `git fetch --depth=1` of `refspec`, retrying transient failures.
    fn fetch(&self, refspec: &str, prune: bool) -> Result<Fetched, RemoteError> {
        let mut args = vec![
            "fetch",
            "--progress",
            "--depth=1",
            "--no-tags",
            "--no-write-fetch-head",
        ];
        if prune {
            args.push("--prune");
        }
        args.extend([self.url.as_str(), refspec]);
        let mut attempt = 0;
        loop {
            let output = self.run(&args, None, None)?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            if output.status.success() {
                return Ok(Fetched::Done);
            }
            // git 2.47: a shallow fetch whose glob matches no remote ref
            // exits 1 without a word (pruning done); nothing to fetch.
            if output.status.code() == Some(1) && stderr.trim().is_empty() {
                return Ok(Fetched::Done);
            }
            let class = classify(&stderr);
            if class == GitFailure::NoSuchRef {
                return Ok(Fetched::NoSuchRef);
            }
            attempt += 1;
            if class.is_retryable() && attempt < MAX_ATTEMPTS {
                tracing::debug!(
                    remote = self.describe(),
                    attempt,
                    error = summarize(&stderr),
                    "fetch failed; retrying"
                );
                std::thread::sleep(backoff(attempt));
                continue;
            }
            return Err(self.failure(&args, &output, class));
        }
    }

    /// Fetches every slot and lists each changed one.
    fn refresh(&self) -> Result<(), RemoteError> {
        self.ensure_repo()?;
        let refspec = format!("+{REF_PREFIX}*:{TRACKING_PREFIX}*");
        {
            let _lock = self.cache_lock()?;
            self.fetch(&refspec, true)?;
        }
        let args = [
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            TRACKING_PREFIX,
        ];
        let refs = parse_refs(&self.ok(&args, None, None)?);
        let mut trees: BTreeMap<String, Arc<Tree>> = BTreeMap::new();
        {
            let state = self.state();
            for (slot, commit) in &refs {
                if let Some(tree) = state.trees.get(slot)
                    && tree.commit == *commit
                {
                    trees.insert(slot.clone(), Arc::clone(tree));
                }
            }
        }
        let changed: Vec<(String, String)> = refs
            .into_iter()
            .filter(|(slot, _)| !trees.contains_key(slot))
            .collect();
        let commits: Vec<&str> = changed.iter().map(|(_, c)| c.as_str()).collect();
        let listings = self.list_commits(&commits)?;
        for ((slot, commit), files) in changed.into_iter().zip(listings) {
            trees.insert(slot, Arc::new(Tree { commit, files }));
        }
        let mut state = self.state();
        state.tip = trees.get(&self.slot).map(|t| t.commit.clone());
        state.trees = trees;
        state.fetched = true;
        Ok(())
    }

    fn ensure_fetched(&self) -> Result<(), RemoteError> {
        if self.state().fetched {
            Ok(())
        } else {
            self.refresh()
        }
    }

    /// The store files of each commit, read level by level: one `git
    /// cat-file --batch` for the root trees, then one per depth for the
    /// subtrees not already read by the previous listing. A fleet of K
    /// writers thus costs a handful of git processes per fetch, not K.
    fn list_commits(&self, commits: &[&str]) -> Result<Vec<BTreeMap<String, String>>, RemoteError> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        let previous = self.state().tree_cache.clone();
        let roots: Vec<String> = commits.iter().map(|c| format!("{c}^{{tree}}")).collect();
        let roots = self.read_trees(&roots)?;
        let mut seen: HashMap<String, Arc<Vec<TreeEntry>>> = HashMap::new();
        let mut frontier: Vec<Arc<Vec<TreeEntry>>> = roots.clone();
        // Store names are at most three deep (`chunks/<doc>/<file>`): only
        // subtrees at depth 1 and 2 can hold any.
        for _depth in 1..=MAX_TREE_DEPTH {
            let mut next = Vec::new();
            let mut missing: Vec<String> = Vec::new();
            for tree in &frontier {
                for entry in tree.iter().filter(|e| e.kind == EntryKind::Tree) {
                    if seen.contains_key(&entry.oid) || missing.contains(&entry.oid) {
                        continue;
                    }
                    match previous.get(&entry.oid) {
                        Some(known) => {
                            seen.insert(entry.oid.clone(), Arc::clone(known));
                            next.push(Arc::clone(known));
                        }
                        None => missing.push(entry.oid.clone()),
                    }
                }
            }
            for (oid, entries) in missing.iter().zip(self.read_trees(&missing)?) {
                seen.insert(oid.clone(), Arc::clone(&entries));
                next.push(entries);
            }
            frontier = next;
        }
        let listings = roots
            .iter()
            .map(|root| {
                let mut files = BTreeMap::new();
                flatten_tree(root, "", 0, &seen, &mut files);
                files
            })
            .collect();
        self.state().tree_cache = seen;
        Ok(listings)
    }

    /// Reads tree objects (ids, or any name `cat-file` takes) with one
    /// `git cat-file --batch`.
    fn read_trees(&self, names: &[String]) -> Result<Vec<Arc<Vec<TreeEntry>>>, RemoteError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // Sizes first (issue 12, item 16): a tree of gigabytes in a hostile
        // slot is skipped, with a warning, before `cat-file --batch` hands
        // it over whole; the other slots still list.
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let sizes = self.object_sizes(&refs)?;
        let mut wanted: Vec<&String> = Vec::with_capacity(names.len());
        for (name, size) in names.iter().zip(&sizes) {
            match size {
                Some(size) if *size > MAX_TREE_BYTES => tracing::warn!(
                    "skipped tree {name} of remote {}: {size} bytes, over the limit of {MAX_TREE_BYTES} bytes for a store folder; not read",
                    self.describe()
                ),
                _ => wanted.push(name),
            }
        }
        let mut input = String::with_capacity(wanted.len() * 66);
        for name in &wanted {
            input.push_str(name);
            input.push('\n');
        }
        let args = ["cat-file", "--batch"];
        let out = if wanted.is_empty() {
            Vec::new()
        } else {
            self.ok(&args, None, Some(input.as_bytes()))?
        };
        let mut objects = parse_cat_file_batch(&out, wanted.len())
            .map_err(|detail| self.bad_output(&args, detail))?
            .into_iter();
        let oid_len = self.oid_hex_len()? / 2;
        names
            .iter()
            .zip(&sizes)
            .map(|(name, size)| {
                if size.is_some_and(|s| s > MAX_TREE_BYTES) {
                    return Ok(Arc::new(Vec::new()));
                }
                let bytes = objects.next().flatten().ok_or_else(|| {
                    self.bad_output(&args, format!("tree {name} is missing from the git cache"))
                })?;
                parse_tree(&bytes, oid_len)
                    .map(Arc::new)
                    .map_err(|detail| self.bad_output(&args, format!("tree {name}: {detail}")))
            })
            .collect()
    }

    /// The size of each object (`None`: missing), with one `git cat-file
    /// --batch-check`, which reads no content.
    fn object_sizes(&self, ids: &[&str]) -> Result<Vec<Option<u64>>, RemoteError> {
        let mut input = String::with_capacity(ids.len() * 65);
        for id in ids {
            input.push_str(id);
            input.push('\n');
        }
        let args = ["cat-file", "--batch-check"];
        let out = self.ok(&args, None, Some(input.as_bytes()))?;
        parse_batch_check(&out, ids.len()).map_err(|detail| self.bad_output(&args, detail))
    }

    /// Hex digits of an object id in the cache repository, asked of git
    /// once (`rev-parse --show-object-format`).
    fn oid_hex_len(&self) -> Result<usize, RemoteError> {
        if let Some(len) = self.state().oid_hex_len {
            return Ok(len);
        }
        self.ensure_repo()?;
        let args = ["rev-parse", "--show-object-format"];
        let out = self.ok(&args, None, None)?;
        let len = match String::from_utf8_lossy(&out).trim() {
            "sha1" => 40,
            "sha256" => 64,
            other => {
                return Err(self.bad_output(&args, format!("unknown object format {other:?}")));
            }
        };
        self.state().oid_hex_len = Some(len);
        Ok(len)
    }

    /// Fetches this slot's branch only and takes its tip.
    fn refresh_own_tip(&self) -> Result<(), RemoteError> {
        let tracking = format!("{TRACKING_PREFIX}{}", self.slot);
        let refspec = format!("+{}:{tracking}", self.ref_name());
        let _lock = self.cache_lock()?;
        let tip = match self.fetch(&refspec, false)? {
            Fetched::Done => {
                let spec = format!("{tracking}^{{commit}}");
                let out = self.ok(&["rev-parse", "--verify", "-q", &spec], None, None)?;
                Some(String::from_utf8_lossy(&out).trim().to_owned())
            }
            Fetched::NoSuchRef => {
                self.ok(&["update-ref", "-d", &tracking], None, None)?;
                None
            }
        };
        tracing::debug!(slot = self.slot, tip = ?tip, "re-read this slot's tip");
        self.state().tip = tip;
        Ok(())
    }

    // ---- writing --------------------------------------------------------

    /// Builds a commit applying `change` on this slot's tip and pushes it,
    /// rebuilding on the new tip when another process of the slot won.
    fn commit_and_push(&self, change: Change<'_>) -> Result<(), RemoteError> {
        let _write = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.ensure_fetched()?;
        let mut blob_ids: HashMap<String, String> = HashMap::new();
        let mut attempt = 0;
        loop {
            let base = self.state().tip.clone();
            let Some(tree) = self.build_commit(change, base.as_deref(), &mut blob_ids)? else {
                tracing::debug!(slot = self.slot, "nothing new to push");
                return Ok(());
            };
            let (error, stale) = match self.push(&tree.commit, base.as_deref())? {
                PushOutcome::Pushed => {
                    self.pushed.fetch_add(1, Ordering::Relaxed);
                    let mut state = self.state();
                    state.tip = Some(tree.commit.clone());
                    state.trees.insert(self.slot.clone(), Arc::new(tree));
                    return Ok(());
                }
                PushOutcome::Stale(reason) => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(slot = self.slot, attempt, reason, "push lost a race");
                    let error = RemoteError::PushRejected {
                        remote: self.describe(),
                        reference: self.ref_name(),
                        reason: format!(
                            "{reason}, still after {MAX_ATTEMPTS} attempts: another process keeps writing slot {:?}",
                            self.slot
                        ),
                    };
                    (error, true)
                }
                PushOutcome::Transient(error) => {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(slot = self.slot, attempt, error = %error, "push failed; retrying");
                    (error, false)
                }
            };
            attempt += 1;
            if attempt >= MAX_ATTEMPTS {
                return Err(error);
            }
            std::thread::sleep(backoff(attempt));
            if stale {
                // Another process of this slot pushed: build on its tip.
                self.refresh_own_tip()?;
            }
        }
    }

    /// Builds the commit of `change` on `base` with one `git fast-import`.
    /// Returns `None` when it would change nothing, else the commit and its
    /// store files.
    fn build_commit(
        &self,
        change: Change<'_>,
        base: Option<&str>,
        blob_ids: &mut HashMap<String, String>,
    ) -> Result<Option<Tree>, RemoteError> {
        let mut files = match base {
            Some(commit) => self.files_of(commit)?,
            None => BTreeMap::new(),
        };
        let Change::Add(added) = change;
        let mut new: Vec<&(String, Vec<u8>)> = Vec::new();
        let mut seen = BTreeSet::new();
        for file in added {
            if !files.contains_key(&file.0) && seen.insert(file.0.as_str()) {
                new.push(file);
            }
        }
        if new.is_empty() {
            return Ok(None);
        }
        // Blobs already written by an earlier try are named by id.
        let (known, unwritten): (Vec<&NamedBytes>, Vec<&NamedBytes>) = new
            .into_iter()
            .partition(|(name, _)| blob_ids.contains_key(name));
        let mut by_id: Vec<(String, String)> = known
            .iter()
            .filter_map(|(name, _)| Some((name.clone(), blob_ids.get(name)?.clone())))
            .collect();
        // Every slot carries FORMAT and workspace: copy them from another
        // slot into this one's first commit.
        for special in [FORMAT_NAME, WORKSPACE_NAME] {
            if !files.contains_key(special)
                && !seen.contains(special)
                && let Some(id) = self.other_slot_blob(special)
            {
                by_id.push((special.to_owned(), id));
            }
        }
        let inline: Vec<(&str, &[u8])> = unwritten
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
            .collect();
        let message = format!("bridge: add {} files", inline.len() + by_id.len());
        let (commit, ids) = self.fast_commit(base, &inline, &by_id, &message)?;
        for ((name, _), id) in inline.iter().zip(ids) {
            blob_ids.insert((*name).to_owned(), id.clone());
            files.insert((*name).to_owned(), id);
        }
        files.extend(by_id);
        files.retain(|name, _| StoreName::parse(name).is_some());
        Ok(Some(Tree { commit, files }))
    }

    /// The store files of `commit`: from the last listing when it is a
    /// slot's tip there, else read from the cache repository.
    fn files_of(&self, commit: &str) -> Result<BTreeMap<String, String>, RemoteError> {
        let known = self
            .state()
            .trees
            .values()
            .find(|t| t.commit == commit)
            .map(|t| t.files.clone());
        match known {
            Some(files) => Ok(files),
            None => Ok(self.list_commits(&[commit])?.pop().unwrap_or_default()),
        }
    }

    /// Writes, with one `git fast-import`, the blobs `inline` and a commit
    /// on `base` (parentless without one) that adds them and the existing
    /// blobs `by_id` at their names. Returns the commit and the ids of the
    /// `inline` blobs, in order.
    ///
    /// fast-import needs a ref to build on: a private one, named after this
    /// process, deleted again in the same stream (reset to the null id), so
    /// that nothing is left behind in the cache repository.
    fn fast_commit(
        &self,
        base: Option<&str>,
        inline: &[(&str, &[u8])],
        by_id: &[(String, String)],
        message: &str,
    ) -> Result<(String, Vec<String>), RemoteError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let scratch = format!(
            "refs/bridge-build/{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let null = "0".repeat(self.oid_hex_len()?);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let total: usize = inline.iter().map(|(_, b)| b.len() + 40).sum();
        let mut input = Vec::with_capacity(total + (inline.len() + by_id.len()) * 140 + 512);
        for (i, (_, bytes)) in inline.iter().enumerate() {
            input.extend_from_slice(
                format!("blob\nmark :{}\ndata {}\n", i + 1, bytes.len()).as_bytes(),
            );
            input.extend_from_slice(bytes);
            input.push(b'\n');
        }
        let mark = inline.len() + 1;
        input.extend_from_slice(
            format!(
                "reset {scratch}\ncommit {scratch}\nmark :{mark}\ncommitter {IDENT_NAME} <{IDENT_EMAIL}> {now} +0000\ndata {}\n{message}\n",
                message.len() + 1
            )
            .as_bytes(),
        );
        if let Some(base) = base {
            input.extend_from_slice(format!("from {base}\n").as_bytes());
        }
        for (i, (name, _)) in inline.iter().enumerate() {
            input.extend_from_slice(format!("M 100644 :{} {name}\n", i + 1).as_bytes());
        }
        for (name, id) in by_id {
            input.extend_from_slice(format!("M 100644 {id} {name}\n").as_bytes());
        }
        input.push(b'\n');
        for i in 1..=mark {
            input.extend_from_slice(format!("get-mark :{i}\n").as_bytes());
        }
        input.extend_from_slice(format!("reset {scratch}\nfrom {null}\n\ndone\n").as_bytes());
        let args = ["fast-import", "--quiet", "--done"];
        let out = self.ok(&args, None, Some(&input))?;
        let mut ids =
            parse_oid_lines(&out, mark).map_err(|detail| self.bad_output(&args, detail))?;
        let commit = ids.pop().unwrap_or_default();
        Ok((commit, ids))
    }

    /// The blob of `name` in another slot's tree, if one holds it.
    fn other_slot_blob(&self, name: &str) -> Option<String> {
        let state = self.state();
        state
            .trees
            .iter()
            .filter(|(slot, _)| **slot != self.slot)
            .find_map(|(_, tree)| tree.files.get(name).cloned())
    }

    /// Pushes `commit` to this slot's branch with a lease on `base`.
    fn push(&self, commit: &str, base: Option<&str>) -> Result<PushOutcome, RemoteError> {
        self.push_to(self.ref_name(), commit, base)
    }

    /// Pushes `commit` to branch `dst` with a lease on `base`.
    fn push_to(
        &self,
        dst: String,
        commit: &str,
        base: Option<&str>,
    ) -> Result<PushOutcome, RemoteError> {
        let lease = format!("--force-with-lease={dst}:{}", base.unwrap_or(""));
        let refspec = format!("{commit}:{dst}");
        // --no-verify: a global pre-push hook has no business with our
        // private cache repository.
        let args = [
            "push",
            "--progress",
            "--porcelain",
            "--no-verify",
            lease.as_str(),
            self.url.as_str(),
            refspec.as_str(),
        ];
        let output = self.run(&args, None, None)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match parse_push_porcelain(&stdout, &dst) {
            Some((flag, _)) if flag != '!' && output.status.success() => Ok(PushOutcome::Pushed),
            Some(('!', summary)) => {
                if is_stale_rejection(&summary) {
                    Ok(PushOutcome::Stale(summary))
                } else {
                    Err(RemoteError::PushRejected {
                        remote: self.describe(),
                        reference: dst,
                        reason: summary,
                    })
                }
            }
            _ if output.status.success() => Ok(PushOutcome::Pushed),
            _ => {
                let class = classify(&String::from_utf8_lossy(&output.stderr));
                let error = self.failure(&args, &output, class);
                if class.is_retryable() {
                    Ok(PushOutcome::Transient(error))
                } else {
                    Err(error)
                }
            }
        }
    }

    // ---- reading --------------------------------------------------------

    /// The blob id of each name found in the last listing (this slot
    /// first), and the names not found.
    fn lookup(&self, names: &[String]) -> (Vec<(String, String)>, Vec<String>) {
        let state = self.state();
        let own = state.trees.get(&self.slot);
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            let id = own
                .and_then(|t| t.files.get(name))
                .or_else(|| state.trees.values().find_map(|t| t.files.get(name)));
            match id {
                Some(id) => found.push((name.clone(), id.clone())),
                None => missing.push(name.clone()),
            }
        }
        (found, missing)
    }

    fn invalid_name(&self, name: &str) -> RemoteError {
        RemoteError::InvalidName {
            remote: self.describe(),
            name: name.to_owned(),
        }
    }
}

impl Remote for GitRemote {
    fn describe(&self) -> String {
        format!("git:{}", redact_url(&self.url))
    }

    fn push_stats(&self) -> Option<PushStats> {
        Some(GitRemote::push_stats(self))
    }

    /// Fetches every slot's branch and returns the union of their store
    /// files.
    fn list(&self) -> Result<BTreeSet<String>, RemoteError> {
        self.refresh()?;
        let state = self.state();
        Ok(state
            .trees
            .values()
            .flat_map(|t| t.files.keys().cloned())
            .collect())
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, RemoteError> {
        let mut files = self.read_many(&[name.to_owned()])?;
        match files.pop() {
            Some((_, bytes)) => Ok(bytes),
            None => Err(RemoteError::NotFound {
                remote: self.describe(),
                name: name.to_owned(),
            }),
        }
    }

    /// Reads every name with one `git cat-file --batch`, from the listing of
    /// the last fetch; fetches again once if some name is not in it.
    fn read_many(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>, RemoteError> {
        if let Some(bad) = names.iter().find(|n| StoreName::parse(n).is_none()) {
            return Err(self.invalid_name(bad));
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_repo()?;
        let (mut found, missing) = self.lookup(names);
        if !missing.is_empty() {
            self.refresh()?;
            let (more, still_missing) = self.lookup(&missing);
            if !still_missing.is_empty() {
                tracing::debug!(
                    remote = self.describe(),
                    missing = still_missing.len(),
                    "files not on the remote"
                );
            }
            found.extend(more);
        }
        if found.is_empty() {
            return Ok(Vec::new());
        }
        // Sizes first (issue 12, item 16): a junk object of gigabytes on
        // the remote is refused before `cat-file --batch` reads it whole.
        let ids: Vec<&str> = found.iter().map(|(_, id)| id.as_str()).collect();
        for ((name, _), size) in found.iter().zip(self.object_sizes(&ids)?) {
            let limit = StoreName::parse(name).map_or(0, |n| n.max_bytes());
            if let Some(size) = size
                && size > limit
            {
                return Err(RemoteError::TooLarge {
                    remote: self.describe(),
                    name: name.clone(),
                    size,
                    limit,
                });
            }
        }
        let mut input = String::with_capacity(found.len() * 65);
        for (_, id) in &found {
            input.push_str(id);
            input.push('\n');
        }
        let args = ["cat-file", "--batch"];
        let out = self.ok(&args, None, Some(input.as_bytes()))?;
        let contents = parse_cat_file_batch(&out, found.len())
            .map_err(|detail| self.bad_output(&args, detail))?;
        let mut files = Vec::with_capacity(found.len());
        for ((name, id), content) in found.into_iter().zip(contents) {
            match content {
                Some(bytes) => files.push((name, bytes)),
                None => tracing::warn!(
                    remote = self.describe(),
                    name,
                    id,
                    "object missing from the git cache; skipped"
                ),
            }
        }
        Ok(files)
    }

    /// Adds the files this slot's branch lacks in one commit and pushes it.
    fn put(&self, files: &[(String, Vec<u8>)]) -> Result<(), RemoteError> {
        for (name, bytes) in files {
            let parsed = StoreName::parse(name).ok_or_else(|| self.invalid_name(name))?;
            if let Some(hash) = parsed.hash()
                && crate::names::sha256_hex(bytes) != hash
            {
                return Err(RemoteError::HashMismatch {
                    remote: self.describe(),
                    name: name.clone(),
                });
            }
        }
        if files.is_empty() {
            return Ok(());
        }
        self.commit_and_push(Change::Add(files))
    }

    /// Removes files from every slot's branch that holds them (compaction,
    /// archival and garbage collection). Each branch is rewritten as one
    /// parentless commit of what remains, so the history that held the
    /// removed files becomes garbage on the host, and pushed with a lease on
    /// the tip just fetched: a slot whose writer pushed meanwhile is left as
    /// it is (its files go next time; that writer rebuilds on the rewritten
    /// tip, see `commit_and_push`). Returns how many names are still held.
    fn remove(&self, names: &[String]) -> Result<usize, RemoteError> {
        for name in names {
            match StoreName::parse(name) {
                Some(StoreName::Doc { .. } | StoreName::Blob { .. }) => {}
                _ => return Err(self.invalid_name(name)),
            }
        }
        if names.is_empty() {
            return Ok(0);
        }
        let _write = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.refresh()?;
        let gone: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let holders: Vec<(String, Arc<Tree>)> = self
            .state()
            .trees
            .iter()
            .filter(|(_, t)| t.files.keys().any(|n| gone.contains(n.as_str())))
            .map(|(slot, t)| (slot.clone(), Arc::clone(t)))
            .collect();
        for (slot, tree) in holders {
            let mut tree = tree;
            let mut attempt = 0;
            loop {
                let keep: BTreeMap<String, String> = tree
                    .files
                    .iter()
                    .filter(|(n, _)| !gone.contains(n.as_str()))
                    .map(|(n, id)| (n.clone(), id.clone()))
                    .collect();
                let by_id: Vec<(String, String)> =
                    keep.iter().map(|(n, id)| (n.clone(), id.clone())).collect();
                let (commit, _) = self.fast_commit(None, &[], &by_id, "bridge: compact")?;
                let dst = format!("{REF_PREFIX}{slot}");
                match self.push_to(dst, &commit, Some(&tree.commit))? {
                    PushOutcome::Pushed => {
                        self.pushed.fetch_add(1, Ordering::Relaxed);
                        let mut state = self.state();
                        if slot == self.slot {
                            state.tip = Some(commit.clone());
                        }
                        state.trees.insert(
                            slot.clone(),
                            Arc::new(Tree {
                                commit,
                                files: keep,
                            }),
                        );
                        break;
                    }
                    PushOutcome::Stale(reason)
                        if slot == self.slot && attempt + 1 < MAX_ATTEMPTS =>
                    {
                        // Another process of this slot pushed: remove from
                        // its new tip.
                        tracing::debug!(
                            slot,
                            reason,
                            "own branch moved during a removal; retrying"
                        );
                        attempt += 1;
                        std::thread::sleep(backoff(attempt));
                        self.refresh()?;
                        match self.state().trees.get(&slot) {
                            Some(t) => tree = Arc::clone(t),
                            None => break,
                        }
                    }
                    PushOutcome::Stale(reason) => {
                        tracing::debug!(
                            slot,
                            reason,
                            "branch moved during a removal; left for next time"
                        );
                        break;
                    }
                    PushOutcome::Transient(error) => return Err(error),
                }
            }
        }
        let state = self.state();
        Ok(gone
            .iter()
            .filter(|n| state.trees.values().any(|t| t.files.contains_key(**n)))
            .count())
    }
}

/// The delay before retry `attempt` (1-based): 50 ms × 2^(attempt-1),
/// ±50 % jitter so that racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_BASE_MS << attempt.saturating_sub(1).min(10);
    let random = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0)
    });
    let per_mille = 500 + random % 1001;
    Duration::from_millis(base * per_mille / 1000)
}

// ---- pure helpers: URLs, auth, output parsers, the failure classifier ----

/// True if git takes `url` as a local path: no `scheme://`, and no `:`
/// before the first `/` (that would be scp-like `host:path`).
pub(crate) fn is_local_path(url: &str) -> bool {
    if url.contains("://") {
        return false;
    }
    match (url.find(':'), url.find('/')) {
        (None, _) => true,
        (Some(colon), Some(slash)) => slash < colon,
        (Some(_), None) => false,
    }
}

/// Makes a relative local path absolute (against `base`, or the current
/// folder), since git runs in the cache folder. Other URLs are unchanged.
pub(crate) fn absolute_local_url(url: String, base: Option<&Path>) -> String {
    if !is_local_path(&url) || Path::new(&url).is_absolute() {
        return url;
    }
    let joined = match base {
        Some(base) => base.join(&url),
        None => match std::path::absolute(&url) {
            Ok(path) => path,
            Err(_) => return url,
        },
    };
    joined.display().to_string()
}

/// `url` with any `user:password@` replaced by `***@`, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    url.to_owned()
}

/// The `GIT_CONFIG_*` variables that send `token` as an
/// `AUTHORIZATION: basic` header to the origin of `url`, when `url` is
/// https on github.com or on `auth_host`. Appended after `config_count`
/// entries the caller's environment already has.
pub(crate) fn auth_env(
    url: &str,
    token: Option<&str>,
    auth_host: Option<&str>,
    config_count: Option<&str>,
) -> Vec<(String, String)> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Vec::new();
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return Vec::new();
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = host_port.split(':').next().unwrap_or(host_port);
    let allowed = host.eq_ignore_ascii_case("github.com")
        || auth_host.is_some_and(|h| !h.is_empty() && h.eq_ignore_ascii_case(host));
    if !allowed {
        return Vec::new();
    }
    let n: usize = config_count
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    vec![
        ("GIT_CONFIG_COUNT".to_owned(), (n + 1).to_string()),
        (
            format!("GIT_CONFIG_KEY_{n}"),
            format!("http.https://{host_port}/.extraheader"),
        ),
        (
            format!("GIT_CONFIG_VALUE_{n}"),
            format!("AUTHORIZATION: basic {basic}"),
        ),
    ]
}

/// How a git command failed, read from its stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GitFailure {
    /// Network down, host unresolvable, connection refused or timed out.
    Unreachable,
    /// Credentials missing or refused (401, 403, SSH key).
    AuthRefused,
    /// The repository does not exist (or is hidden from us).
    NotFound,
    /// The one ref asked for does not exist.
    NoSuchRef,
    /// A lock file in the local cache is taken (a concurrent git process).
    Locked,
    /// No space left (on the host, or in the local cache repository).
    NoSpace,
    /// A dropped connection or a server error: worth retrying.
    Transient,
    /// Anything else.
    Other,
}

impl GitFailure {
    fn is_retryable(self) -> bool {
        matches!(self, GitFailure::Locked | GitFailure::Transient)
    }
}

/// Classifies a failed git command from its stderr (git runs with
/// `LC_ALL=C`). Order matters: an SSH connection failure also says "Could
/// not read from remote repository", like a missing repository.
pub(crate) fn classify(stderr: &str) -> GitFailure {
    let s = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if any(&[
        ".lock': file exists",
        "cannot lock ref",
        "shallow file has changed since we read it",
        "unable to update local ref",
    ]) {
        return GitFailure::Locked;
    }
    if any(&[
        "could not resolve host",
        "could not resolve hostname",
        "could not resolve proxy",
        "temporary failure in name resolution",
        "name or service not known",
        "nodename nor servname",
        "connection refused",
        "couldn't connect to server",
        "failed to connect to",
        "unable to connect to",
        "network is unreachable",
        "no route to host",
        "connection timed out",
        "operation timed out",
        "resolving timed out",
        // git's http low-speed limit (set to the stall timeout): the host
        // took the connection and does not answer; retrying would multiply
        // the wait (issue 12, item 15).
        "operation too slow",
    ]) {
        return GitFailure::Unreachable;
    }
    if any(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "the requested url returned error: 401",
        "the requested url returned error: 403",
        "permission denied (publickey",
        "host key verification failed",
        "invalid username or",
        "permission to ",
    ]) {
        return GitFailure::AuthRefused;
    }
    if any(&[
        "does not appear to be a git repository",
        "repository not found",
        "the requested url returned error: 404",
        "access denied or repository not exported",
        "no such repository",
    ]) || (s.contains("repository '") && s.contains("' not found"))
    {
        return GitFailure::NotFound;
    }
    if any(&["no space left on device", "disk quota exceeded"]) {
        return GitFailure::NoSpace;
    }
    if s.contains("couldn't find remote ref") {
        return GitFailure::NoSuchRef;
    }
    if any(&[
        "the remote end hung up unexpectedly",
        "early eof",
        "rpc failed",
        "the requested url returned error: 5",
        "the requested url returned error: 429",
        "connection reset",
        "unexpected disconnect",
        "empty reply from server",
        "transfer closed",
        "gnutls_handshake",
        "ssl_read",
        "ssl_connect",
        "http/2 stream",
        "index-pack failed",
    ]) {
        return GitFailure::Transient;
    }
    GitFailure::Other
}

/// Whether `args` make git talk to the remote (and so may hang on it).
fn is_network_command(args: &[&str]) -> bool {
    matches!(
        args.first(),
        Some(&("fetch" | "push" | "ls-remote" | "clone"))
    )
}

/// git's stderr without its progress reports (`--progress`): each line (or
/// carriage-return-separated update) that reports counting, compressing,
/// receiving, writing or resolving objects is dropped.
pub(crate) fn strip_progress(stderr: &[u8]) -> Vec<u8> {
    const PROGRESS: &[&str] = &[
        "enumerating objects",
        "counting objects",
        "compressing objects",
        "writing objects",
        "receiving objects",
        "resolving deltas",
        "unpacking objects",
        "total ",
        "delta compression",
        "checking connectivity",
        "finding sources",
        "checking objects",
    ];
    let text = String::from_utf8_lossy(stderr);
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        let kept: Vec<&str> = line
            .split('\r')
            .filter(|part| {
                let lower = part.trim_start().to_ascii_lowercase();
                let lower = lower
                    .strip_prefix("remote: ")
                    .unwrap_or(&lower)
                    .trim_start();
                !part.trim().is_empty() && !PROGRESS.iter().any(|p| lower.starts_with(p))
            })
            .collect();
        if !kept.is_empty() {
            out.push_str(&kept.join(" "));
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// The useful lines of git's stderr on one line: without the generic
/// "Could not read from remote repository" advice, at most 500 characters.
pub(crate) fn summarize(stderr: &str) -> String {
    const NOISE: &[&str] = &[
        "could not read from remote repository",
        "please make sure you have the correct access rights",
        "and the repository exists",
        "another git process seems to be running",
    ];
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            !NOISE.iter().any(|n| lower.contains(n))
        })
        .map(|l| {
            ["fatal: ", "error: ", "remote: "]
                .iter()
                .find_map(|p| l.strip_prefix(p))
                .unwrap_or(l)
                .trim()
        })
        .collect();
    let mut out = if lines.is_empty() {
        stderr.trim().to_owned()
    } else {
        lines.join("; ")
    };
    if out.is_empty() {
        out = "no message".to_owned();
    }
    if out.len() > 500 {
        let mut end = 500;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

/// True if a porcelain rejection means the branch moved under us (retry
/// on the new tip) rather than a refusal retrying cannot fix.
pub(crate) fn is_stale_rejection(summary: &str) -> bool {
    [
        "stale info",
        "fetch first",
        "non-fast-forward",
        "cannot lock ref",
        "failed to update ref",
        "incorrect old value",
        "already exists",
    ]
    .iter()
    .any(|n| summary.contains(n))
}

/// The flag and summary of `git push --porcelain`'s line for `dst`
/// (`<flag>\t<src>:<dst>\t<summary>`).
pub(crate) fn parse_push_porcelain(stdout: &str, dst: &str) -> Option<(char, String)> {
    stdout.lines().find_map(|line| {
        let mut fields = line.splitn(3, '\t');
        let flag = fields.next()?;
        let refs = fields.next()?;
        let summary = fields.next().unwrap_or_default();
        let mut chars = flag.chars();
        let flag = chars.next()?;
        if chars.next().is_some() || refs.rsplit(':').next() != Some(dst) {
            return None;
        }
        Some((flag, summary.to_owned()))
    })
}

/// True for a full object id (sha1 or sha256), lowercase hex.
fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `for-each-ref --format='%(objectname) %(refname)'` under
/// `refs/remotes/bridge/` → (slot, commit).
pub(crate) fn parse_refs(out: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|line| {
            let (oid, name) = line.split_once(' ')?;
            let slot = name.strip_prefix(TRACKING_PREFIX)?;
            (is_oid(oid) && !slot.is_empty()).then(|| (slot.to_owned(), oid.to_owned()))
        })
        .collect()
}

/// A raw tree object (`<mode> SP <name> NUL <oid bytes>`, repeated) →
/// its entries; `oid_len` is the length of a binary object id.
pub(crate) fn parse_tree(bytes: &[u8], oid_len: usize) -> Result<Vec<TreeEntry>, String> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| format!("no mode in entry {}", entries.len()))?;
        let nul = rest
            .iter()
            .position(|b| *b == 0)
            .filter(|nul| *nul > space)
            .ok_or_else(|| format!("no name in entry {}", entries.len()))?;
        let end = nul + 1 + oid_len;
        if rest.len() < end {
            return Err(format!("entry {} is truncated", entries.len()));
        }
        let kind = match &rest[..space] {
            b"100644" | b"100755" => EntryKind::File,
            b"40000" => EntryKind::Tree,
            _ => EntryKind::Other,
        };
        let name = String::from_utf8_lossy(&rest[space + 1..nul]).into_owned();
        let oid = rest[nul + 1..end]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        entries.push(TreeEntry { name, oid, kind });
        rest = &rest[end..];
    }
    Ok(entries)
}

/// Adds the store files under `tree` (found at `prefix`, `depth` folders
/// down) to `files`, descending into the subtrees in `trees`.
fn flatten_tree(
    tree: &[TreeEntry],
    prefix: &str,
    depth: usize,
    trees: &HashMap<String, Arc<Vec<TreeEntry>>>,
    files: &mut BTreeMap<String, String>,
) {
    for entry in tree {
        let path = format!("{prefix}{}", entry.name);
        match entry.kind {
            EntryKind::File => {
                if StoreName::parse(&path).is_some() {
                    files.insert(path, entry.oid.clone());
                }
            }
            EntryKind::Tree if depth < MAX_TREE_DEPTH => {
                if let Some(sub) = trees.get(&entry.oid) {
                    flatten_tree(sub, &format!("{path}/"), depth + 1, trees, files);
                }
            }
            EntryKind::Tree | EntryKind::Other => {}
        }
    }
}

/// `n` object ids, one a line (`fast-import`'s answers to `get-mark`).
pub(crate) fn parse_oid_lines(out: &[u8], n: usize) -> Result<Vec<String>, String> {
    let text = String::from_utf8_lossy(out);
    let ids: Vec<String> = text.lines().map(|l| l.trim().to_owned()).collect();
    if ids.len() != n || !ids.iter().all(|id| is_oid(id)) {
        return Err(format!(
            "expected {n} object ids, got {:?}",
            crate::names::preview(out)
        ));
    }
    Ok(ids)
}

/// `cat-file --batch-check` output for `n` requests: `<oid> SP <type> SP
/// <size> LF` or `<oid> SP missing LF` → each size, in order.
pub(crate) fn parse_batch_check(out: &[u8], n: usize) -> Result<Vec<Option<u64>>, String> {
    let text = String::from_utf8_lossy(out);
    let sizes: Vec<Option<u64>> = text
        .lines()
        .map(
            |line| match line.split(' ').collect::<Vec<_>>().as_slice() {
                [_, "missing"] => Ok(None),
                [_, _, size] => size
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("bad cat-file header {line:?}")),
                _ => Err(format!("bad cat-file header {line:?}")),
            },
        )
        .collect::<Result<_, _>>()?;
    if sizes.len() != n {
        return Err(format!(
            "expected {n} cat-file answers, got {}",
            sizes.len()
        ));
    }
    Ok(sizes)
}

/// `cat-file --batch` output for `n` requests: `<oid> SP <type> SP <size>
/// LF <content> LF`, or `<oid> SP missing LF` → the content of each, in
/// order (`None`: missing).
pub(crate) fn parse_cat_file_batch(out: &[u8], n: usize) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut pos = 0;
    let mut contents = Vec::with_capacity(n);
    for _ in 0..n {
        let rest = &out[pos.min(out.len())..];
        let eol = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| format!("truncated cat-file output after {} objects", contents.len()))?;
        let header = String::from_utf8_lossy(&rest[..eol]);
        pos += eol + 1;
        let fields: Vec<&str> = header.split(' ').collect();
        match fields.as_slice() {
            [_, "missing"] => contents.push(None),
            [_, _, size] => {
                let size: usize = size
                    .parse()
                    .map_err(|_| format!("bad cat-file header {header:?}"))?;
                let end = pos + size;
                if out.len() < end + 1 || out[end] != b'\n' {
                    return Err(format!("truncated cat-file object {header:?}"));
                }
                contents.push(Some(out[pos..end].to_vec()));
                pos = end + 1;
            }
            _ => return Err(format!("bad cat-file header {header:?}")),
        }
    }
    Ok(contents)
}

/// Kills the direct children of `pid` (on Linux, from
/// `/proc/PID/task/PID/children`; elsewhere nothing: they end when their
/// pipes close).
fn kill_children_of(pid: u32) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return;
    };
    for child in text
        .split_ascii_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // Real stderr of git 2.47.3 (LC_ALL=C, GIT_TERMINAL_PROMPT=0), captured
    // by fetching from bad URLs on this machine.
    const MISSING_PATH: &str = "fatal: '/nonexistent/repo.git' does not appear to be a git repository\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
    const REFUSED_GIT: &str = "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused\n\n";
    const UNRESOLVED_HTTPS: &str = "fatal: unable to access 'https://nonexistent.invalid/x.git/': Could not resolve host: nonexistent.invalid\n";
    const REFUSED_HTTP: &str = "fatal: unable to access 'http://127.0.0.1:1/x.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server\n";
    const UNRESOLVED_SSH: &str = "ssh: Could not resolve hostname nonexistent.invalid: Name or service not known\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
    const REFUSED_SSH: &str = "ssh: connect to host 127.0.0.1 port 1: Connection refused\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
    const HTTP_401: &str =
        "fatal: could not read Username for 'http://127.0.0.1:18931': terminal prompts disabled\n";
    const HTTP_403: &str = "fatal: unable to access 'http://127.0.0.1:18931/403/x.git/': The requested URL returned error: 403\n";
    const HTTP_404: &str = "fatal: repository 'http://127.0.0.1:18931/404/x.git/' not found\n";
    const HTTP_500: &str = "fatal: unable to access 'http://127.0.0.1:18931/500/x.git/': The requested URL returned error: 500\n";
    const DAEMON_MISSING: &str =
        "fatal: remote error: access denied or repository not exported: /nope.git\n";
    const NO_SUCH_REF: &str = "fatal: couldn't find remote ref refs/heads/bridge/a\n";
    const SHALLOW_LOCK: &str = "fatal: Unable to create '/tmp/gs/cc.git/shallow.lock': File exists.\n\nAnother git process seems to be running in this repository, e.g.\nan editor opened by 'git commit'. Please make sure all processes\nare terminated then try again. If it still fails, a git process\nmay have crashed in this repository earlier:\nremove the file manually to continue.\n";
    const SHALLOW_CHANGED: &str = "fatal: shallow file has changed since we read it\n";
    const REF_LOCK: &str = "error: cannot lock ref 'refs/remotes/bridge/s1': is at eb4bbe131478b68e99ece1e4bc501401b173b040 but expected 431c2849b2ad661bab0972e0f11f3877210dfa81\nFrom /tmp/gs/q\n ! 431c284...eb4bbe1 bridge/s1  -> bridge/s1  (unable to update local ref)\n";
    // Known messages from hosts we cannot reach here (GitHub).
    const GITHUB_AUTH_FAILED: &str = "remote: Invalid username or token. Password authentication is not supported for Git operations.\nfatal: Authentication failed for 'https://github.com/o/r.git/'\n";
    const GITHUB_PUSH_DENIED: &str = "remote: Permission to o/r.git denied to github-actions[bot].\nfatal: unable to access 'https://github.com/o/r.git/': The requested URL returned error: 403\n";
    const GITHUB_NOT_FOUND: &str = "remote: Repository not found.\nfatal: repository 'https://github.com/o/r.git/' not found\n";
    const GITHUB_SSH_KEY: &str = "git@github.com: Permission denied (publickey).\r\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
    const HUNG_UP: &str = "error: RPC failed; curl 92 HTTP/2 stream 5 was not closed cleanly: CANCEL (err 8)\nerror: 4 bytes of body are still expected\nfetch-pack: unexpected disconnect while reading sideband packet\nfatal: early EOF\nfatal: fetch-pack: invalid index-pack output\n";

    #[test]
    fn classify_real_git_stderr() {
        use GitFailure::*;
        let cases = [
            (MISSING_PATH, NotFound),
            (REFUSED_GIT, Unreachable),
            (UNRESOLVED_HTTPS, Unreachable),
            (REFUSED_HTTP, Unreachable),
            (UNRESOLVED_SSH, Unreachable),
            (REFUSED_SSH, Unreachable),
            (HTTP_401, AuthRefused),
            (HTTP_403, AuthRefused),
            (HTTP_404, NotFound),
            (HTTP_500, Transient),
            (DAEMON_MISSING, NotFound),
            (NO_SUCH_REF, NoSuchRef),
            (SHALLOW_LOCK, Locked),
            (SHALLOW_CHANGED, Locked),
            (REF_LOCK, Locked),
            (GITHUB_AUTH_FAILED, AuthRefused),
            (GITHUB_PUSH_DENIED, AuthRefused),
            (GITHUB_NOT_FOUND, NotFound),
            (GITHUB_SSH_KEY, AuthRefused),
            (HUNG_UP, Transient),
            ("fatal: something else entirely\n", Other),
            ("", Other),
        ];
        for (stderr, expected) in cases {
            assert_eq!(classify(stderr), expected, "{stderr}");
        }
    }

    #[test]
    fn a_full_disk_is_told_apart() {
        assert_eq!(
            classify(
                "remote: error: unable to write file objects/ab/cd: No space left on device\nerror: remote unpack failed: unable to create temporary object directory"
            ),
            GitFailure::NoSpace
        );
    }

    #[test]
    fn progress_lines_are_not_messages() {
        let stderr = b"remote: Enumerating objects: 3, done.\nremote: Counting objects:  33% (1/3)\rremote: Counting objects: 100% (3/3), done.\nReceiving objects: 100% (3/3), done.\nfatal: unable to access 'http://x/': Failed to connect\n";
        let out = String::from_utf8(strip_progress(stderr)).unwrap();
        assert_eq!(
            out,
            "fatal: unable to access 'http://x/': Failed to connect\n"
        );
        assert_eq!(
            classify(
                "error: RPC failed; curl 28 Operation too slow. Less than 1000 bytes/sec transferred the last 2 seconds"
            ),
            GitFailure::Unreachable
        );
    }

    #[test]
    fn summaries_drop_the_generic_advice() {
        assert_eq!(
            summarize(MISSING_PATH),
            "'/nonexistent/repo.git' does not appear to be a git repository"
        );
        assert_eq!(
            summarize(UNRESOLVED_SSH),
            "ssh: Could not resolve hostname nonexistent.invalid: Name or service not known"
        );
        assert_eq!(summarize(""), "no message");
        assert!(summarize(&"x".repeat(2000)).chars().count() <= 501);
    }

    #[test]
    fn push_porcelain_lines() {
        let dst = "refs/heads/bridge/a";
        let new = "To /tmp/gs/p.git\n*\t661dc9aa2bab6b63677599b69f5964a8660d9704:refs/heads/bridge/a\t[new branch]\nDone\n";
        assert_eq!(
            parse_push_porcelain(new, dst),
            Some(('*', "[new branch]".to_owned()))
        );
        let ff = "To /tmp/gs/p.git\n \tca2940b57bffa900e2fdba52716f3775111f8c70:refs/heads/bridge/a\t661dc9a..ca2940b\nDone\n";
        assert_eq!(parse_push_porcelain(ff, dst).map(|l| l.0), Some(' '));
        let stale = "To /tmp/gs/p.git\n!\tca2940b57bffa900e2fdba52716f3775111f8c70:refs/heads/bridge/a\t[rejected] (stale info)\nDone\n";
        let (flag, summary) = parse_push_porcelain(stale, dst).unwrap();
        assert_eq!(flag, '!');
        assert!(is_stale_rejection(&summary));
        let hook = "To /tmp/gs/p.git\n!\t3e84e14c2d8d04f479026562e1fa418855063b78:refs/heads/bridge/a\t[remote rejected] (pre-receive hook declined)\nDone\n";
        let (_, summary) = parse_push_porcelain(hook, dst).unwrap();
        assert!(!is_stale_rejection(&summary));
        assert!(is_stale_rejection(
            "[remote rejected] (cannot lock ref 'refs/heads/bridge/a': reference already exists)"
        ));
        assert_eq!(parse_push_porcelain(stale, "refs/heads/bridge/b"), None);
        assert_eq!(parse_push_porcelain("", dst), None);
    }

    #[test]
    fn slots() {
        for ok in ["a", "laptop-1", "runner_3.shard", &"x".repeat(64)] {
            assert!(validate_slot(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "-opt",
            "a..b",
            "a.lock",
            "a.",
            "a/b",
            "a b",
            "é",
            "a:b",
            &"x".repeat(65),
        ] {
            assert!(validate_slot(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        for local in ["/srv/r.git", "r.git", "../r", "./a:b"] {
            assert!(is_local_path(local), "{local}");
        }
        for remote in [
            "file:///srv/r.git",
            "git://127.0.0.1:9418/r",
            "https://github.com/o/r.git",
            "git@github.com:o/r.git",
            "host:r.git",
        ] {
            assert!(!is_local_path(remote), "{remote}");
        }
        assert_eq!(
            absolute_local_url("r.git".into(), Some(Path::new("/base"))),
            "/base/r.git"
        );
        assert_eq!(
            absolute_local_url("git@h:o/r".into(), Some(Path::new("/base"))),
            "git@h:o/r"
        );
        assert_eq!(
            redact_url("https://x-access-token:secret@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(redact_url("https://h/a@b"), "https://h/a@b");
    }

    #[test]
    fn auth_header_only_for_the_right_host() {
        let env = auth_env("https://github.com/o/r.git", Some("tok"), None, None);
        let expected_value = format!(
            "AUTHORIZATION: basic {}",
            base64::engine::general_purpose::STANDARD.encode("x-access-token:tok")
        );
        assert_eq!(
            env,
            vec![
                ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
                (
                    "GIT_CONFIG_KEY_0".to_owned(),
                    "http.https://github.com/.extraheader".to_owned()
                ),
                ("GIT_CONFIG_VALUE_0".to_owned(), expected_value),
            ]
        );
        // Appended after the caller's own GIT_CONFIG_* entries.
        let env = auth_env("https://github.com/o/r.git", Some("tok"), None, Some("2"));
        assert_eq!(env[0], ("GIT_CONFIG_COUNT".to_owned(), "3".to_owned()));
        assert_eq!(env[1].0, "GIT_CONFIG_KEY_2");
        for (url, host) in [
            ("http://github.com/o/r.git", None),
            ("https://gitlab.com/o/r.git", None),
            ("git@github.com:o/r.git", None),
            ("https://github.com.evil.example/o/r.git", None),
            ("https://ghe.example:8443/o/r.git", Some("other.example")),
        ] {
            assert!(auth_env(url, Some("tok"), host, None).is_empty(), "{url}");
        }
        assert!(auth_env("https://github.com/o/r.git", Some(""), None, None).is_empty());
        assert!(auth_env("https://github.com/o/r.git", None, None, None).is_empty());
        let env = auth_env(
            "https://ghe.example:8443/o/r.git",
            Some("tok"),
            Some("ghe.example"),
            None,
        );
        assert_eq!(env[1].1, "http.https://ghe.example:8443/.extraheader");
    }

    #[test]
    fn the_token_never_reaches_argv_or_the_log_line() {
        let token = "ghs_SECRETSECRET";
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        let remote = GitRemote::new(
            "https://github.com/o/r.git".into(),
            "a".into(),
            PathBuf::from("/cache"),
        )
        .unwrap()
        .with_token(Some(token), None);
        let args = [
            "fetch",
            remote.url(),
            "+refs/heads/bridge/*:refs/remotes/bridge/*",
        ];
        let cmd = remote.command(&args, None, false);
        for arg in cmd.get_args() {
            let arg = arg.to_string_lossy();
            assert!(!arg.contains(token) && !arg.contains(&encoded), "{arg}");
        }
        let shown = remote.show_command(&args);
        assert!(
            !shown.contains(token) && !shown.contains(&encoded),
            "{shown}"
        );
        assert!(!format!("{remote:?}").contains(&encoded));
        let envs: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| {
                Some((
                    k.to_string_lossy().into_owned(),
                    v?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        assert!(
            envs.iter()
                .any(|(k, v)| k.starts_with("GIT_CONFIG_VALUE_") && v.contains(&encoded))
        );
        assert!(envs.contains(&("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned())));
        assert!(envs.contains(&("LC_ALL".to_owned(), "C".to_owned())));
        // The caller's GIT_DIR or GIT_INDEX_FILE never leak in.
        let removed: Vec<String> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(removed.contains(&"GIT_DIR".to_owned()));
        assert!(removed.contains(&"GIT_INDEX_FILE".to_owned()));
        // A URL with credentials in it is shown redacted.
        let remote = GitRemote::new(
            "https://u:pw@example.com/r.git".into(),
            "a".into(),
            PathBuf::from("/cache"),
        )
        .unwrap();
        assert_eq!(remote.describe(), "git:https://***@example.com/r.git");
        assert!(!remote.show_command(&["push", remote.url()]).contains("pw"));
    }

    #[test]
    fn output_parsers() {
        let a = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391";
        let h = crate::names::sha256_hex(b"x");
        // A raw tree: a file, a store blob, a folder, a symlink, a submodule.
        let oid = [0xabu8; 20];
        let mut raw = Vec::new();
        for (mode, name) in [
            ("100644", "FORMAT"),
            ("100755", "x.blob"),
            ("40000", "blobs"),
            ("120000", "link"),
            ("160000", "sub"),
        ] {
            raw.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            raw.extend_from_slice(&oid);
        }
        let entries = parse_tree(&raw, 20).unwrap();
        let kinds: Vec<EntryKind> = entries.iter().map(|e| e.kind).collect();
        use EntryKind::*;
        assert_eq!(kinds, vec![File, File, Tree, Other, Other]);
        assert_eq!(entries[2].name, "blobs");
        assert_eq!(entries[2].oid, "ab".repeat(20));
        assert!(parse_tree(&raw[..raw.len() - 1], 20).is_err());
        assert!(parse_tree(b"100644 no-nul", 20).is_err());
        assert!(parse_tree(b"", 20).unwrap().is_empty());

        // Flattening keeps store names only, at most three deep.
        let entry = |name: &str, oid: &str, kind| TreeEntry {
            name: name.to_owned(),
            oid: oid.to_owned(),
            kind,
        };
        let mut trees = HashMap::new();
        trees.insert(
            "b".to_owned(),
            Arc::new(vec![
                entry(&format!("{h}.blob"), "1", File),
                entry("deeper", "b", Tree),
            ]),
        );
        let root = vec![
            entry("FORMAT", "2", File),
            entry("README", "3", File),
            entry("blobs", "b", Tree),
            entry("chunks", "missing", Tree),
        ];
        let mut files = BTreeMap::new();
        flatten_tree(&root, "", 0, &trees, &mut files);
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            vec![
                ("FORMAT".to_owned(), "2".to_owned()),
                (format!("blobs/{h}.blob"), "1".to_owned()),
            ]
        );

        let refs = format!("{a} refs/remotes/bridge/laptop\n{a} refs/remotes/other/x\n");
        assert_eq!(
            parse_refs(refs.as_bytes()),
            vec![("laptop".to_owned(), a.to_owned())]
        );

        assert_eq!(
            parse_oid_lines(format!("{a}\n{a}\n").as_bytes(), 2).unwrap(),
            vec![a.to_owned(), a.to_owned()]
        );
        assert!(parse_oid_lines(format!("{a}\n").as_bytes(), 2).is_err());

        let batch = format!("{a} blob 5\nhello\n{a} missing\n{a} blob 0\n\n");
        assert_eq!(
            parse_cat_file_batch(batch.as_bytes(), 3).unwrap(),
            vec![Some(b"hello".to_vec()), None, Some(Vec::new())]
        );
        // Contents may hold newlines and spaces.
        let batch = format!("{a} blob 3\na\nb\n");
        assert_eq!(
            parse_cat_file_batch(batch.as_bytes(), 1).unwrap(),
            vec![Some(b"a\nb".to_vec())]
        );
        assert!(parse_cat_file_batch(format!("{a} blob 9\nhello\n").as_bytes(), 1).is_err());
        assert!(parse_cat_file_batch(b"", 1).is_err());
    }

    #[test]
    fn batch_check_lines() {
        let oid = "a".repeat(40);
        let out = format!("{oid} blob 12\n{oid} missing\n{oid} tree 2147483648\n");
        assert_eq!(
            parse_batch_check(out.as_bytes(), 3),
            Ok(vec![Some(12), None, Some(2_147_483_648)])
        );
        assert!(parse_batch_check(out.as_bytes(), 2).is_err());
        assert!(parse_batch_check(format!("{oid} blob x\n").as_bytes(), 1).is_err());
    }

    #[test]
    fn backoff_grows_with_jitter() {
        for attempt in 1..=5u32 {
            let base = 50u64 << (attempt - 1);
            let d = backoff(attempt).as_millis() as u64;
            assert!(d >= base / 2 && d <= base * 3 / 2, "{attempt}: {d}");
        }
    }
}
