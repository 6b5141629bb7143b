//! Real `git`, hermetic: every command runs with `GIT_CONFIG_GLOBAL=/dev/null`
//! and `GIT_CONFIG_NOSYSTEM=1`, so the developer's config (hooks, signing,
//! `insteadOf`) never changes what a test sees, and never prompts. Also
//! bare repositories ([`Bare`]: a store's branches and their files) and a
//! `git daemon` on 127.0.0.1 ([`Daemon`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bridge_store::GitRemote;

/// `git ARGS`, hermetic and not prompting, in `cwd` when given; not run.
pub fn git_cmd(cwd: Option<&Path>, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .stdin(Stdio::null())
        .args(args);
    if let Some(cwd) = cwd {
        c.current_dir(cwd);
    }
    c
}

/// Runs [`git_cmd`]; panics unless it succeeds. Returns its stdout.
pub fn git_in(cwd: Option<&Path>, args: &[&str]) -> String {
    let out = git_cmd(cwd, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    assert!(
        out.status.success(),
        "`git {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs git hermetically; panics unless it succeeds. Returns stdout.
pub fn git(args: &[&str]) -> String {
    git_in(None, args)
}

/// A new bare repository at `path`; returns its `file://` URL.
pub fn bare_repo(path: &Path) -> String {
    git(&["init", "--bare", "-q", path.to_str().unwrap()]);
    format!("file://{}", path.display())
}

/// A hermetic [`GitRemote`] for `url`, writing slot `slot`, with its
/// private repository at `cache`; no token.
pub fn remote(url: &str, slot: &str, cache: &Path) -> GitRemote {
    GitRemote::new(url.to_owned(), slot.to_owned(), cache.to_owned())
        .unwrap()
        .with_token(None, None)
        .with_git_env("GIT_CONFIG_GLOBAL", "/dev/null")
        .with_git_env("GIT_CONFIG_NOSYSTEM", "1")
}

/// A bare git repository holding a store: its branches and their files,
/// read with plain git (what any clone would see).
#[derive(Debug, Clone)]
pub struct Bare(pub PathBuf);

impl Bare {
    /// A new bare repository at `path`.
    pub fn init(path: &Path) -> Bare {
        bare_repo(path);
        Bare(path.to_owned())
    }

    /// A new bare repository at `path` that `git daemon` accepts pushes to.
    pub fn served(path: &Path) -> Bare {
        let bare = Bare::init(path);
        bare.git(&["config", "daemon.receivepack", "true"]);
        bare
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `git --git-dir BARE ARGS`; panics unless it succeeds.
    pub fn git(&self, args: &[&str]) -> String {
        let mut all = vec!["--git-dir", self.0.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        git(&all)
    }

    /// The store's slot refs (`refs/bridge/<slot>`), sorted.
    pub fn branches(&self) -> Vec<String> {
        self.git(&["for-each-ref", "--format=%(refname)", "refs/bridge/"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The store names of the files of ref (or any commit-ish)
    /// `reference`: its paths without the fan-out folder of hashed files
    /// (`blobs/ab/ab….blob` is `blobs/ab….blob`).
    pub fn tree(&self, reference: &str) -> BTreeSet<String> {
        self.raw_tree(reference)
            .iter()
            .map(|p| store_name_of_path(p))
            .collect()
    }

    /// The paths in the tree of `reference`, as git has them.
    pub fn raw_tree(&self, reference: &str) -> BTreeSet<String> {
        self.git(&["ls-tree", "-r", "--name-only", reference])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The files of each branch.
    pub fn files(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.branches()
            .into_iter()
            .map(|b| {
                let files = self.tree(&b);
                (b, files)
            })
            .collect()
    }

    /// Every file any branch holds.
    pub fn all_files(&self) -> BTreeSet<String> {
        self.files().into_values().flatten().collect()
    }

    /// How many commits a branch's history holds.
    pub fn commits(&self, branch: &str) -> usize {
        self.git(&["rev-list", "--count", branch])
            .trim()
            .parse()
            .expect("a commit count")
    }

    /// The commit a branch points at.
    pub fn tip(&self, branch: &str) -> String {
        self.git(&["rev-parse", branch]).trim().to_owned()
    }

    /// The parentless commits a branch's history starts from.
    pub fn roots(&self, branch: &str) -> Vec<String> {
        self.git(&["rev-list", "--max-parents=0", branch])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The store name of a path in a store ref's tree: the path without the
/// two-hex-digit fan-out folder of a hashed file.
pub fn store_name_of_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [dirs @ .., fan, file] if fan.len() == 2 && file.starts_with(fan) => {
            format!("{}/{file}", dirs.join("/"))
        }
        _ => path.to_owned(),
    }
}

/// A `git daemon` serving the repositories under one folder on
/// 127.0.0.1, pushes allowed; killed when dropped (a failed assertion
/// must not leave it behind).
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    /// A daemon for the repositories under `base`, on a free port.
    pub fn start(base: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("no free port")
            .port();
        Daemon::on_port(base, port)
    }

    /// A daemon for the repositories under `base` on `port` (a daemon
    /// started again where a stopped one was). Returns once it accepts
    /// connections (at most 15 s: a bound against hangs).
    pub fn on_port(base: &Path, port: u16) -> Daemon {
        // `git daemon` would run `git-daemon` as a child that outlives a
        // kill of `git`: start the real program.
        let exec_path = git(&["--exec-path"]);
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args([
                "--reuseaddr".to_owned(),
                format!("--base-path={}", base.display()),
                "--export-all".to_owned(),
                "--enable=receive-pack".to_owned(),
                format!("--port={port}"),
                "--listen=127.0.0.1".to_owned(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start git daemon");
        let daemon = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `git://` URL of repository `repo` (relative to the base).
    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }

    /// Kills it and waits for it: its port is free again.
    pub fn stop(mut self) {
        self.child.kill().expect("cannot kill git daemon");
        self.child.wait().expect("cannot reap git daemon");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Already gone after `stop`: nothing to report.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_repository_lists_its_branches_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let bare = Bare::init(&dir.path().join("store.git"));
        assert!(bare.branches().is_empty());
        let work = dir.path().join("work");
        git(&["init", "-q", work.to_str().unwrap()]);
        std::fs::write(work.join("FORMAT"), "x\n").unwrap();
        git_in(Some(&work), &["add", "FORMAT"]);
        git_in(Some(&work), &["commit", "-q", "-m", "one"]);
        git_in(
            Some(&work),
            &[
                "push",
                "-q",
                bare.path().to_str().unwrap(),
                "HEAD:refs/bridge/a",
            ],
        );
        assert_eq!(bare.branches(), ["refs/bridge/a"]);
        assert_eq!(bare.all_files(), BTreeSet::from(["FORMAT".to_owned()]));
        assert_eq!(bare.commits("refs/bridge/a"), 1);
        assert_eq!(bare.roots("refs/bridge/a"), [bare.tip("refs/bridge/a")]);
    }
}
