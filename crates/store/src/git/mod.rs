//! The `git:` remote: a store kept in refs of any git repository,
//! driven through the `git` CLI so that authentication is whatever the
//! user's git already does (credential helpers, SSH, `url.*.insteadOf`), plus
//! a token the caller hands in ([`GitRemote::with_token`]: the CLI's
//! `GITHUB_TOKEN` on runners; this crate reads no credentials from the
//! environment).
//!
//! # Layout on the git side
//!
//! One ref per writer slot (a member, a device or a runner shard):
//! `refs/bridge/<slot>`. Not a branch (issue 15): a push to it fires no
//! `on: push` workflow, GitHub shows no "Compare & pull request" banner for
//! it and branch rulesets do not apply, and a clone (`actions/checkout`
//! included) does not fetch it, since the default refspec takes
//! `refs/heads/*` and tags only. GitHub accepts and keeps such refs (git-bug
//! keeps its data in `refs/bugs/*` the same way), without showing them.
//! Its tree holds store files at their store names (`FORMAT`, `workspace`),
//! hashed ones one folder down by their hash's first two hex digits
//! (`blobs/ab/<hash>.blob`, `chunks/<doc>/ab/<hash>.chunk`; see `tree`), so
//! that no folder passes GitHub's recommended 3,000 entries below ~700,000
//! files of one kind; anything else in it is ignored. Only the writer of a
//! slot pushes its ref, so writers never contend with each other (DESIGN.md
//! "Remotes": 50 writers on one branch needed 1,207 rejected pushes, with a
//! ref each none). Every slot's tree also carries `FORMAT` and `workspace`:
//! the first writer puts them, later slots copy them into their first commit,
//! so that any one slot describes the store on its own.
//!
//! Stores made before issue 15 keep their slots on branches,
//! `refs/heads/bridge/<slot>`, with flat folders. They are **still read**,
//! not migrated by a sync: every fetch takes both namespaces in one
//! `git fetch`, and listings are the union. A writer whose slot exists only
//! as such a branch continues under `refs/bridge/<slot>`, whose first
//! commit starts from every file of the branch; the branch is left as it
//! is. Compaction ([`Remote::remove`]) rewrites legacy branches like any
//! slot, except that it deletes one whose slot's new ref already holds
//! every file it keeps: so a legacy branch disappears once its writer has
//! moved and a compaction touches it, and never while it holds a file
//! found nowhere else.
//!
//! GitHub's other limits are kept by [`GitLimits`]: no file over
//! `max_object` is put (100 MB, [`RemoteError::ObjectTooLarge`]), a put of
//! more than `max_push` bytes (1 GB, half of GitHub's 2 GB per push) is
//! split into several pushes, and `remove` updates at most `refs_per_push`
//! refs per push (5, GitHub's default push policy).
//!
//! # Data flow
//!
//! Everything goes through a private bare repository (`cache_dir`), never
//! the user's checkout:
//!
//! - [`Remote::list`] fetches both namespaces shallowly in one fetch
//!   (`git fetch --depth=1 --prune <url> +refs/bridge/*:refs/remotes/bridge/*
//!   +refs/heads/bridge/*:refs/remotes/bridge-heads/*`),
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
//!   every ref holding the files as one parentless commit of what
//!   remains, pushed with a lease on the tip just fetched, at most
//!   `refs_per_push` refs per push; a ref whose writer pushed meanwhile
//!   keeps its files until next time. Parentless, so that the old history
//!   becomes unreachable and the host's own garbage collection reclaims it:
//!   the repository does not grow with its history. Each rewrite holds every
//!   file of its ref but the removed ones, so any prefix of the pushes
//!   leaves the store whole.
//!
//! Every git command is built by one function ([`GitRemote`]'s `command`)
//! with a controlled environment (`LC_ALL=C`, no terminal prompts, a fixed
//! committer, the caller's `GIT_DIR`/`GIT_INDEX_FILE`/... removed) and
//! logged at debug level without environment values; the token's
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
//!
//! # Modules
//!
//! - this module: [`GitRemote`], its state and the [`Remote`] impl (the
//!   cache repository, fetching, listing, reading, removing);
//! - `command`: running git (the controlled environment, the stall
//!   watchdog, errors from failed commands);
//! - `classify`: git's stderr turned into a `GitFailure` class
//!   and a one-line summary;
//! - `parse`: parsers of git's plumbing output (`for-each-ref`,
//!   `push --porcelain`, `cat-file --batch`, `fast-import` marks);
//! - `tree`: where a store file lies in a tree (the fan-out), git tree
//!   objects, and listing a commit's store files from them;
//! - `write`: building commits with `fast-import` and pushing them;
//! - `url`: local paths, redacted URLs and the token's auth header.

mod classify;
mod command;
mod parse;
mod tree;
mod url;
mod write;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::backoff::{Backoff, Jitter};
use crate::names::StoreName;
use crate::remote::{Remote, RemoteError};

use classify::{GitFailure, classify, summarize};
use parse::{parse_cat_file_batch, parse_refs};
use tree::TreeEntry;
pub(crate) use url::absolute_local_url;
use url::{auth_env, redact_url};
pub use url::{is_hosted, redact_spec};

/// The prefix of the refs holding the store, one per writer slot: outside
/// `refs/heads/`, so they are not branches (see the module docs).
pub const REF_PREFIX: &str = "refs/bridge/";
/// Where stores made before issue 15 keep their slots: branches. Still
/// read; a slot's writer continues under [`REF_PREFIX`].
pub const LEGACY_REF_PREFIX: &str = "refs/heads/bridge/";
/// Where fetched slot refs land in the private cache repository.
const TRACKING_PREFIX: &str = "refs/remotes/bridge/";
/// Where fetched legacy slot branches land in the private cache repository.
const LEGACY_TRACKING_PREFIX: &str = "refs/remotes/bridge-heads/";
/// The default of [`GitLimits::max_object`]: GitHub refuses a file over
/// 100 MiB; this stays just under it.
pub const DEFAULT_MAX_OBJECT: u64 = 100_000_000;
/// The default of [`GitLimits::max_push`]: GitHub refuses a push over
/// 2 GB; half of it leaves room for trees, commits and pack overhead.
pub const DEFAULT_MAX_PUSH: u64 = 1_000_000_000;
/// The bytes a sync hands to one put (one push) of a git remote: a large
/// submission in one push, with what a sync holds in memory bounded.
const GIT_PUT_BATCH_BYTES: usize = 256 * 1024 * 1024;
/// The default of [`GitLimits::refs_per_push`]: GitHub's default push
/// policy allows 5 branch or tag updates per push.
pub const DEFAULT_REFS_PER_PUSH: usize = 5;
/// Tries of a push (or a fetch) before giving up.
const MAX_ATTEMPTS: u32 = 6;
/// The delay between tries: 50 ms doubling on each retry, ±50 % jitter so
/// that racing writers spread out.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(50)).with_jitter(Jitter::Spread);
/// Longest accepted writer slot.
pub const MAX_SLOT_LEN: usize = 64;
/// Largest git tree object read while listing a `git:` remote: a store's
/// folder of a million files is a tree of ~70 MB, so this holds any real
/// store and refuses junk before it is read into memory.
pub const MAX_TREE_BYTES: u64 = 128 << 20;

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

/// A token for `git:` remotes over https, and the one host besides
/// github.com it may be sent to (see [`GitRemote::with_token`]). Its
/// `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct GitToken {
    /// The token (a GitHub token: sent as `x-access-token:<token>`).
    pub token: String,
    /// A host other than github.com that may receive it (a GitHub
    /// Enterprise server); `None`: github.com only.
    pub auth_host: Option<String>,
}

impl fmt::Debug for GitToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitToken")
            .field("token", &"***")
            .field("auth_host", &self.auth_host)
            .finish()
    }
}

/// Counts of a [`GitRemote`]'s pushes, for tests and measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Pushes that landed.
    pub pushed: u64,
    /// Pushes rejected because the slot's ref had moved (another process
    /// of the same slot), each followed by a rebuild.
    pub rejected: u64,
    /// Pushes retried after a transient failure (network, lock).
    pub retried: u64,
}

/// What a [`GitRemote`] keeps each push within (issue 15): the host's
/// limits on one object, on one push and on the refs one push updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GitLimits {
    /// The largest store file [`Remote::put`] writes, in bytes; a larger one
    /// is refused with [`RemoteError::ObjectTooLarge`] and nothing is
    /// pushed. The CLI's `[store] max-object`.
    pub max_object: u64,
    /// The most bytes of new files one push carries: a larger `put` is
    /// split into several commits, each pushed on its own.
    pub max_push: u64,
    /// The most refs one push updates ([`Remote::remove`] rewrites many).
    pub refs_per_push: usize,
}

impl Default for GitLimits {
    fn default() -> GitLimits {
        GitLimits {
            max_object: DEFAULT_MAX_OBJECT,
            max_push: DEFAULT_MAX_PUSH,
            refs_per_push: DEFAULT_REFS_PER_PUSH,
        }
    }
}

/// A store in refs of a git repository, one ref per writer slot.
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
    /// The host's limits (see [`GitRemote::with_limits`]).
    limits: GitLimits,
}

/// The default of [`GitRemote::with_stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The commit this slot's ref is believed to point to on the remote
    /// (`None`: absent). Set by fetches and by our own pushes; a wrong guess
    /// only costs a rejected push.
    tip: Option<String>,
    /// The store files of each fetched slot, by the ref holding it on the
    /// remote (`refs/bridge/<slot>` or a legacy `refs/heads/bridge/<slot>`).
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
    /// The lease failed: the ref moved. Rebuild and retry.
    Stale(String),
    /// A transient failure: retry as is.
    Transient(RemoteError),
}

/// One ref a push updates: to `new` (`None`: delete it), with a lease on
/// `lease` (`None`: the ref must not exist).
struct RefUpdate {
    dst: String,
    new: Option<String>,
    lease: Option<String>,
}

/// What a fetch found.
#[derive(Debug, PartialEq, Eq)]
enum Fetched {
    Done,
    /// The one ref asked for does not exist.
    NoSuchRef,
}

impl GitRemote {
    /// A remote for the repository at `url` (anything `git` accepts), writing
    /// ref `refs/bridge/<slot>`, with its private bare repository
    /// at `cache_dir` (created on first use). A relative local path in `url`
    /// is taken from the current folder. No token: the caller hands one in
    /// with [`GitRemote::with_token`] (this crate reads no credentials from
    /// the environment).
    pub fn new(url: String, slot: String, cache_dir: PathBuf) -> Result<GitRemote, SlotError> {
        validate_slot(&slot)?;
        let url = absolute_local_url(url, None);
        Ok(GitRemote {
            url,
            slot,
            git_dir: cache_dir,
            config_env: Vec::new(),
            extra_env: Vec::new(),
            state: Mutex::new(State::default()),
            write_lock: Mutex::new(()),
            pushed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            limits: GitLimits::default(),
        })
    }

    /// Sets the limits pushes stay within ([`GitLimits::default`]: GitHub's).
    /// Zero values are raised to the smallest that works (one byte, one
    /// ref).
    pub fn with_limits(mut self, limits: GitLimits) -> GitRemote {
        self.limits = GitLimits {
            max_object: limits.max_object.max(1),
            max_push: limits.max_push.max(1),
            refs_per_push: limits.refs_per_push.max(1),
        };
        self
    }

    /// The limits pushes stay within.
    pub fn limits(&self) -> GitLimits {
        self.limits
    }

    /// Sets how long a fetch or push may make no progress (no byte on its
    /// output, with `--progress` on) before git is killed and the remote is
    /// reported [`RemoteError::Unreachable`] with
    /// a [`std::io::ErrorKind::TimedOut`] cause, without retrying: a host that
    /// accepts connections and never answers must not hang the command
    /// (issue 12, item 15). Over http(s) git's own low-speed limit is set
    /// to 5 s more, as a backstop. At least one second.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> GitRemote {
        self.stall_timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// Sets the token sent as an auth header (`None`: no header, the
    /// default). The header is sent only to `https://github.com` or to the
    /// host named by `auth_host` (the CLI's `BRIDGE_GIT_AUTH_HOST`), as
    /// `http.<origin>.extraheader` through `GIT_CONFIG_*` variables,
    /// appended after the `GIT_CONFIG_COUNT` entries the environment git
    /// inherits already has.
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

    /// This writer's ref, `refs/bridge/<slot>`.
    pub fn ref_name(&self) -> String {
        format!("{REF_PREFIX}{}", self.slot)
    }

    /// This writer's branch in a store made before issue 15,
    /// `refs/heads/bridge/<slot>`: read, never written but by `remove`.
    fn legacy_ref_name(&self) -> String {
        format!("{LEGACY_REF_PREFIX}{}", self.slot)
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

    /// `git fetch --depth=1` of `refspecs`, retrying transient failures.
    fn fetch(&self, refspecs: &[&str], prune: bool) -> Result<Fetched, RemoteError> {
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
        args.push(self.url.as_str());
        args.extend_from_slice(refspecs);
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
                std::thread::sleep(BACKOFF.delay(attempt));
                continue;
            }
            return Err(self.failure(&args, &output, class));
        }
    }

    /// Fetches every slot, in both namespaces with one fetch, and lists
    /// each changed one.
    fn refresh(&self) -> Result<(), RemoteError> {
        self.ensure_repo()?;
        let refspec = format!("+{REF_PREFIX}*:{TRACKING_PREFIX}*");
        let legacy = format!("+{LEGACY_REF_PREFIX}*:{LEGACY_TRACKING_PREFIX}*");
        {
            let _lock = self.cache_lock()?;
            self.fetch(&[&refspec, &legacy], true)?;
        }
        let args = [
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            TRACKING_PREFIX,
            LEGACY_TRACKING_PREFIX,
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
        state.tip = trees.get(&self.ref_name()).map(|t| t.commit.clone());
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

    /// Fetches this slot's ref only and takes its tip.
    fn refresh_own_tip(&self) -> Result<(), RemoteError> {
        let tracking = format!("{TRACKING_PREFIX}{}", self.slot);
        let refspec = format!("+{}:{tracking}", self.ref_name());
        let _lock = self.cache_lock()?;
        let tip = match self.fetch(&[&refspec], false)? {
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
    // ---- reading --------------------------------------------------------

    /// The blob id of each name found in the last listing (this slot
    /// first), and the names not found.
    fn lookup(&self, names: &[String]) -> (Vec<(String, String)>, Vec<String>) {
        let state = self.state();
        let own = state.trees.get(&self.ref_name());
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

    /// Every put is a push, and a host counts pushes (GitHub recommends 6
    /// a minute per repository): a sync of a large submission (100k blobs)
    /// goes in one push, not one per 256 files. The bytes stay bounded by
    /// what a sync holds in memory at once; a put still splits at
    /// `max_push`.
    fn put_batch(&self) -> crate::remote::PutBatch {
        crate::remote::PutBatch {
            files: usize::MAX,
            bytes: GIT_PUT_BATCH_BYTES,
        }
    }

    /// Fetches every slot's ref (both namespaces) and returns the union of their store
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
        crate::remote::read_through_many(self, name)
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

    /// Adds the files this slot's ref lacks in one commit and pushes it.
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
        if let Some((name, bytes)) = files
            .iter()
            .find(|(_, b)| b.len() as u64 > self.limits.max_object)
        {
            return Err(RemoteError::ObjectTooLarge {
                remote: self.describe(),
                name: name.clone(),
                size: bytes.len() as u64,
                limit: self.limits.max_object,
            });
        }
        // A push carries at most `max_push` bytes of new files: more are
        // split into several commits, each pushed on its own, each a
        // complete state of the slot.
        for group in push_groups(files, self.limits.max_push) {
            self.commit_and_push(Change::Add(group))?;
        }
        Ok(())
    }

    /// Removes files from every slot's ref that holds them (compaction,
    /// archival and garbage collection). Each ref is rewritten as one
    /// parentless commit of what remains, so the history that held the
    /// removed files becomes garbage on the host, and pushed with a lease on
    /// the tip just fetched: a slot whose writer pushed meanwhile is left as
    /// it is (its files go next time; that writer rebuilds on the rewritten
    /// tip, see `commit_and_push`). At most `refs_per_push` refs go in one
    /// push; each rewrite keeps every file of its ref but the removed ones,
    /// so a failure between pushes leaves every kept file reachable. A
    /// legacy branch (`refs/heads/bridge/<slot>`) whose slot's new ref holds
    /// every file it keeps is deleted instead of rewritten. Returns how many
    /// names are still held.
    fn remove(&self, names: &[String]) -> Result<usize, RemoteError> {
        for name in names {
            match StoreName::parse(name) {
                Some(StoreName::Doc { .. } | StoreName::Blob { .. } | StoreName::Pack { .. }) => {}
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
            .map(|(key, t)| (key.clone(), Arc::clone(t)))
            .collect();
        let mut retry_own = None;
        for group in holders.chunks(self.limits.refs_per_push) {
            let mut plans = Vec::with_capacity(group.len());
            for (key, tree) in group {
                plans.push(self.removal_plan(key, tree, &gone)?);
            }
            let updates: Vec<RefUpdate> = plans.iter().map(RemovalPlan::update).collect();
            let outcomes = self.push_refs(&updates)?;
            self.pushed.fetch_add(1, Ordering::Relaxed);
            for (plan, outcome) in plans.into_iter().zip(outcomes) {
                match outcome {
                    PushOutcome::Pushed => self.removed(plan),
                    PushOutcome::Stale(reason) if plan.key == self.ref_name() => {
                        tracing::debug!(reason, "own ref moved during a removal; retrying");
                        retry_own = Some(plan.key);
                    }
                    PushOutcome::Stale(reason) => {
                        tracing::debug!(
                            reference = plan.key,
                            reason,
                            "ref moved during a removal; left for next time"
                        );
                    }
                    PushOutcome::Transient(error) => return Err(error),
                }
            }
        }
        if let Some(key) = retry_own {
            self.remove_from_own(&key, &gone)?;
        }
        let state = self.state();
        Ok(gone
            .iter()
            .filter(|n| state.trees.values().any(|t| t.files.contains_key(**n)))
            .count())
    }
}

/// How `remove` changes one ref: rewritten to `commit` holding `keep`, or
/// deleted (`commit` `None`), with a lease on `base`.
struct RemovalPlan {
    key: String,
    base: String,
    commit: Option<String>,
    keep: BTreeMap<String, String>,
}

impl RemovalPlan {
    fn update(&self) -> RefUpdate {
        RefUpdate {
            dst: self.key.clone(),
            new: self.commit.clone(),
            lease: Some(self.base.clone()),
        }
    }
}

impl GitRemote {
    /// The rewrite of ref `key` (listed as `tree`) without the files `gone`.
    fn removal_plan(
        &self,
        key: &str,
        tree: &Tree,
        gone: &BTreeSet<&str>,
    ) -> Result<RemovalPlan, RemoteError> {
        let keep: BTreeMap<String, String> = tree
            .files
            .iter()
            .filter(|(n, _)| !gone.contains(n.as_str()))
            .map(|(n, id)| (n.clone(), id.clone()))
            .collect();
        // A legacy branch whose writer moved to the new namespace with every
        // file it keeps (its first write there copied them) is deleted: the
        // files stay reachable under the new ref, and the branch is gone from
        // the repository's branches for good.
        if let Some(slot) = key.strip_prefix(LEGACY_REF_PREFIX) {
            let moved = self
                .state()
                .trees
                .get(&format!("{REF_PREFIX}{slot}"))
                .is_some_and(|new| keep.keys().all(|n| new.files.contains_key(n)));
            if moved {
                return Ok(RemovalPlan {
                    key: key.to_owned(),
                    base: tree.commit.clone(),
                    commit: None,
                    keep: BTreeMap::new(),
                });
            }
        }
        let by_id: Vec<(String, String)> =
            keep.iter().map(|(n, id)| (n.clone(), id.clone())).collect();
        let (commit, _) = self.fast_commit(None, &[], &by_id, "bridge: compact")?;
        Ok(RemovalPlan {
            key: key.to_owned(),
            base: tree.commit.clone(),
            commit: Some(commit),
            keep,
        })
    }

    /// Records a removal that landed.
    fn removed(&self, plan: RemovalPlan) {
        let mut state = self.state();
        match plan.commit {
            Some(commit) => {
                if plan.key == self.ref_name() {
                    state.tip = Some(commit.clone());
                }
                state.trees.insert(
                    plan.key,
                    Arc::new(Tree {
                        commit,
                        files: plan.keep,
                    }),
                );
            }
            None => {
                state.trees.remove(&plan.key);
            }
        }
    }

    /// Removes `gone` from this slot's own ref after another process of the
    /// slot pushed during the removal: from its new tip, with backoff.
    fn remove_from_own(&self, key: &str, gone: &BTreeSet<&str>) -> Result<(), RemoteError> {
        for attempt in 1..MAX_ATTEMPTS {
            std::thread::sleep(BACKOFF.delay(attempt));
            self.refresh()?;
            let Some(tree) = self.state().trees.get(key).cloned() else {
                return Ok(());
            };
            if !tree.files.keys().any(|n| gone.contains(n.as_str())) {
                return Ok(());
            }
            let plan = self.removal_plan(key, &tree, gone)?;
            let outcome = self.push_refs(&[plan.update()])?.pop();
            match outcome {
                Some(PushOutcome::Pushed) | None => {
                    self.pushed.fetch_add(1, Ordering::Relaxed);
                    self.removed(plan);
                    return Ok(());
                }
                Some(PushOutcome::Stale(reason)) => {
                    tracing::debug!(reason, attempt, "own ref moved during a removal; retrying");
                }
                Some(PushOutcome::Transient(error)) => return Err(error),
            }
        }
        Ok(())
    }
}

/// `files` in groups of at most `max_bytes` each (a larger file alone), in
/// order, so that one push never carries much more than `max_bytes`.
fn push_groups(files: &[(String, Vec<u8>)], max_bytes: u64) -> Vec<&[(String, Vec<u8>)]> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut size = 0u64;
    for (i, (_, bytes)) in files.iter().enumerate() {
        let len = bytes.len() as u64;
        if i > start && size + len > max_bytes {
            groups.push(&files[start..i]);
            start = i;
            size = 0;
        }
        size += len;
    }
    if start < files.len() {
        groups.push(&files[start..]);
    }
    groups
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
    fn puts_are_split_into_pushes_of_at_most_max_push_bytes() {
        let file = |n: usize| (format!("f{n}"), vec![0u8; n]);
        let files = vec![file(4), file(5), file(1), file(12), file(3)];
        let sizes = |groups: Vec<&[(String, Vec<u8>)]>| -> Vec<Vec<usize>> {
            groups
                .iter()
                .map(|g| g.iter().map(|(_, b)| b.len()).collect())
                .collect()
        };
        // A file larger than the limit goes alone; order is kept.
        assert_eq!(
            sizes(push_groups(&files, 10)),
            vec![vec![4, 5, 1], vec![12], vec![3]]
        );
        assert_eq!(sizes(push_groups(&files, 100)), vec![vec![4, 5, 1, 12, 3]]);
        assert_eq!(sizes(push_groups(&files, 1)).len(), 5);
        assert!(push_groups(&[], 10).is_empty());
    }

    #[test]
    fn limits_are_at_least_one() {
        let remote = GitRemote::new("/r.git".into(), "a".into(), PathBuf::from("/cache"))
            .unwrap()
            .with_limits(GitLimits {
                max_object: 0,
                max_push: 0,
                refs_per_push: 0,
            });
        assert_eq!(
            remote.limits(),
            GitLimits {
                max_object: 1,
                max_push: 1,
                refs_per_push: 1
            }
        );
        assert_eq!(GitLimits::default().refs_per_push, 5);
        assert_eq!(remote.ref_name(), "refs/bridge/a");
    }

    #[test]
    fn the_token_comes_only_from_the_caller() {
        let url = "https://github.com/o/r.git";
        let remote = GitRemote::new(url.into(), "a".into(), PathBuf::from("/cache")).unwrap();
        // Whatever the environment holds, `new` sends no header.
        assert!(remote.config_env.is_empty());
        assert!(format!("{remote:?}").contains("auth_header: false"));
        let remote = remote.with_token(Some("ghs_x"), None);
        assert!(format!("{remote:?}").contains("auth_header: true"));
        let token = GitToken {
            token: "ghs_SECRET".into(),
            auth_host: Some("ghe.example".into()),
        };
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("SECRET") && shown.contains("ghe.example"),
            "{shown}"
        );
    }
}
