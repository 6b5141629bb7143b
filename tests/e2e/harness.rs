//! The test harness: hermetic devices that run the real `bridge` binary.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bridge_testutil::git::Bare;
use bridge_testutil::github_git::{GitHubGit, Recommendations, Report};
use bridge_testutil::s3::S3Server;
use serde_json::Value;
use tempfile::TempDir;

/// The binary under test.
pub const BRIDGE: &str = env!("CARGO_BIN_EXE_bridge");

/// How often [`poll`] looks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How many times [`poll`] looks before giving up (15 s in all).
pub const POLL_TRIES: usize = 150;

/// A new temporary folder (removed when dropped).
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("bridge-e2e-{prefix}-"))
        .tempdir()
        .expect("cannot create a temporary folder")
}

/// The `dir:` remote of a folder.
pub fn dir_remote(path: &Path) -> String {
    format!("dir:{}", path.display())
}

/// Calls `check` until it returns true, at most [`POLL_TRIES`] times,
/// [`POLL_INTERVAL`] apart; panics with `what` if it never does.
pub fn poll(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..POLL_TRIES {
        if check() {
            return;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    panic!("gave up waiting for: {what}");
}

/// A finished `bridge` command.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub args: Vec<String>,
    /// The exit code; 128 + the signal when a signal killed it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn new(args: Vec<String>, status: ExitStatus, stdout: Vec<u8>, stderr: Vec<u8>) -> Run {
        Run {
            args,
            code: exit_code(status),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Panics unless the command exited with `code`.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            code,
            "`bridge {}` exited with {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`bridge {}` did not print JSON ({e}):\n{}\n--- stderr\n{}",
                self.args.join(" "),
                self.stdout,
                self.stderr
            )
        })
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => -1,
    }
}

/// `bridge status --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub workspace: String,
    pub tasks: u64,
    /// Task counts keyed by status (pending, blocked, running, done, failed, cancelled).
    pub counts: BTreeMap<String, u64>,
}

impl StatusReport {
    fn parse(v: &Value) -> StatusReport {
        let counts = v["counts"]
            .as_object()
            .unwrap_or_else(|| panic!("status --json has no `counts`: {v}"))
            .iter()
            .map(|(k, n)| {
                let n = n
                    .as_u64()
                    .unwrap_or_else(|| panic!("count {k} is not a number: {v}"));
                (k.clone(), n)
            })
            .collect::<BTreeMap<_, _>>();
        for s in [
            "pending",
            "blocked",
            "running",
            "done",
            "failed",
            "cancelled",
        ] {
            assert!(counts.contains_key(s), "status --json lacks count {s}: {v}");
        }
        StatusReport {
            workspace: str_field(v, "workspace"),
            tasks: v["tasks"]
                .as_u64()
                .unwrap_or_else(|| panic!("status --json has no `tasks`: {v}")),
            counts,
        }
    }

    /// How many tasks have this status.
    pub fn count(&self, status: &str) -> u64 {
        self.counts.get(status).copied().unwrap_or(0)
    }
}

/// One row of `bridge ls --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub name: String,
    pub status: String,
    pub batch: String,
    pub attempts: u64,
}

impl Task {
    fn parse(v: &Value) -> Task {
        Task {
            id: str_field(v, "id"),
            name: str_field(v, "name"),
            status: str_field(v, "status"),
            batch: str_field(v, "batch"),
            attempts: v["attempts"]
                .as_u64()
                .unwrap_or_else(|| panic!("ls row without `attempts`: {v}")),
        }
    }
}

/// A string field of a JSON object (panics if absent).
pub fn str_field(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{key}` in {v}"))
        .to_owned()
}

/// One device: a workspace folder of its own, with its own HOME and config
/// folder, and a clean environment (PATH only, plus what bridge needs).
pub struct Device {
    pub name: String,
    /// The workspace folder (holds bridge.toml once initialised).
    pub dir: PathBuf,
    root: TempDir,
    /// Extra environment variables every command of this device gets
    /// (e.g. `BRIDGE_IDENTITY` for a CI runner); see [`Device::set_env`].
    env: Vec<(String, String)>,
}

impl Device {
    /// A new device; its workspace folder exists but is empty.
    pub fn new(name: &str) -> Device {
        Device::with_root(name, temp_dir(name))
    }

    /// A new device whose folders are below `parent` (a device below
    /// `/tmp` gets no private `/tmp` in its tasks' namespaces: mounting one
    /// would hide the workspace).
    pub fn new_in(name: &str, parent: &Path) -> Device {
        let root = tempfile::Builder::new()
            .prefix(&format!("bridge-e2e-{name}-"))
            .tempdir_in(parent)
            .expect("cannot create a temporary folder");
        Device::with_root(name, root)
    }

    fn with_root(name: &str, root: TempDir) -> Device {
        let dir = root.path().join("ws");
        for d in [
            dir.clone(),
            root.path().join("home"),
            root.path().join("config"),
            root.path().join("scratch"),
        ] {
            fs::create_dir_all(&d).expect("cannot create a device folder");
        }
        Device {
            name: name.to_owned(),
            dir,
            root,
            env: Vec::new(),
        }
    }

    /// `bridge members add-runner NAME` on this (admin) device: the
    /// runner's secret identity, one line.
    pub fn add_runner(&self, name: &str) -> String {
        let out = self.ok(&["members", "add-runner", name]);
        let secret = out.stdout.trim().to_owned();
        assert!(
            !secret.is_empty() && !secret.contains('\n'),
            "add-runner prints one secret line: {out:?}"
        );
        secret
    }

    /// Makes this device's identity (`keygen`) and returns its public key,
    /// as `whoami` prints it.
    pub fn new_public_key(&self) -> String {
        self.ok(&["keygen"]);
        self.ok(&["whoami", "--json"]).json()["public_key"]
            .as_str()
            .expect("whoami prints a public key")
            .to_owned()
    }

    /// Joins `admin`'s workspace through `remote` the way a person does: this
    /// device makes its identity, the admin adds its public key with `role`
    /// (and syncs), then this device joins pinning the admin's root key.
    pub fn join_as(&self, admin: &Device, remote: &str, role: &str) {
        let key = self.new_public_key();
        admin.ok(&["members", "add", &self.name, &key, "--role", role]);
        let root = admin.ok(&["whoami", "--json"]).json()["member"]
            .as_str()
            .expect("whoami prints a member id")
            .to_owned();
        self.ok(&["join", remote, "--root", &root]);
    }

    /// A path of the device outside its workspace (for scratch files).
    /// A sandboxed task (issue 13) can neither read nor write it: a test
    /// whose task keeps state there runs its worker with
    /// `BRIDGE_SANDBOX=off`.
    pub fn scratch(&self, rel: &str) -> PathBuf {
        self.root.path().join("scratch").join(rel)
    }

    /// A path inside the workspace.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Writes a file inside the workspace (creating folders).
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("cannot create a folder");
        }
        fs::write(&p, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
    }

    /// `bridge ARGS` run from `cwd`, with `-C <workspace>` unless `in_workspace` is false.
    pub fn command_in(&self, cwd: &Path, in_workspace: bool, args: &[&str]) -> Command {
        let mut c = Command::new(BRIDGE);
        c.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.root.path().join("home"))
            .env("XDG_CONFIG_HOME", self.root.path().join("config"))
            .env("BRIDGE_DEVICE", &self.name)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::null());
        if in_workspace {
            c.arg("-C").arg(&self.dir);
        }
        c.args(args);
        c
    }

    /// Runs `bridge ARGS` in the workspace and captures everything.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_cmd(self.command_in(&self.dir, true, args), args)
    }

    /// Runs `bridge ARGS` from `cwd` without `-C` (workspace found from `cwd`).
    pub fn run_from(&self, cwd: &Path, args: &[&str]) -> Run {
        self.run_cmd(self.command_in(cwd, false, args), args)
    }

    fn run_cmd(&self, mut cmd: Command, args: &[&str]) -> Run {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start {BRIDGE}: {e}"));
        Run::new(
            args.iter().map(|s| (*s).to_owned()).collect(),
            out.status,
            out.stdout,
            out.stderr,
        )
    }

    /// Runs `bridge ARGS` in the workspace with `input` on its stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut cmd = self.command_in(&self.dir, true, args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BRIDGE}: {e}"));
        let mut stdin = child.stdin.take().expect("a piped stdin");
        let input = input.to_vec();
        // Written from a thread: a child that prints before reading all of
        // its input would otherwise fill its pipes and wait for us forever.
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            // The child may exit before reading everything (an error): not
            // this helper's failure.
            let _ = stdin.write_all(&input);
        });
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for {BRIDGE}: {e}"));
        writer.join().expect("the stdin writer");
        Run::new(
            args.iter().map(|s| (*s).to_owned()).collect(),
            out.status,
            out.stdout,
            out.stderr,
        )
    }

    /// Runs `bridge ARGS` and panics unless it exits with 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        self.run(args).expect_code(0)
    }

    /// Starts `bridge ARGS` in the background; its output goes to files.
    pub fn spawn(&self, label: &str, args: &[&str]) -> Spawned {
        let out = self.scratch(&format!("{label}.stdout"));
        let err = self.scratch(&format!("{label}.stderr"));
        let mut cmd = self.command_in(&self.dir, true, args);
        cmd.stdout(fs::File::create(&out).expect("cannot create a log file"))
            .stderr(fs::File::create(&err).expect("cannot create a log file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BRIDGE}: {e}"));
        Spawned {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            child: Some(child),
            out,
            err,
        }
    }

    /// `bridge status --json`.
    pub fn status(&self) -> StatusReport {
        StatusReport::parse(&self.ok(&["status", "--json"]).json())
    }

    /// `bridge ls --json`.
    pub fn ls(&self) -> Vec<Task> {
        let v = self.ok(&["ls", "--json"]).json();
        v.as_array()
            .unwrap_or_else(|| panic!("ls --json is not an array: {v}"))
            .iter()
            .map(Task::parse)
            .collect()
    }

    /// The one task with this exact name (panics if there is not exactly one).
    pub fn task(&self, name: &str) -> Task {
        let found: Vec<Task> = self.ls().into_iter().filter(|t| t.name == name).collect();
        assert_eq!(
            found.len(),
            1,
            "{}: expected one task named `{name}`, found {found:?}",
            self.name
        );
        found.into_iter().next().expect("one task")
    }

    /// `bridge show TASK --json`.
    pub fn show(&self, task: &str) -> Value {
        self.ok(&["show", task, "--json"]).json()
    }

    /// Sets `[worker] lease` and `clock-skew` in bridge.toml.
    pub fn set_lease(&self, lease: &str, clock_skew: &str) {
        self.set_worker_settings(&format!(
            "lease = \"{lease}\"\nclock-skew = \"{clock_skew}\"\n"
        ));
    }

    /// Sets `[worker] run-tasks-from` in this device's bridge.toml: whose
    /// tasks it claims (issue 13, item 2). Tests whose point is that this
    /// device runs another member's tasks say so with this, rather than
    /// relying on the default (its own and the admins' on a person's
    /// device).
    pub fn set_run_tasks_from(&self, entries: &[&str]) {
        let list: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
        self.set_device_settings(&format!("run-tasks-from = [{}]\n", list.join(", ")));
    }

    /// Sets `settings` (whole `key = value` lines) under `[worker]` in this
    /// device's own `.bridge/config.toml` (what it lends: `run-tasks-from`,
    /// `sandbox`, `allow-read`), replacing earlier lines of the same keys.
    pub fn set_device_settings(&self, settings: &str) {
        let path = self.path(".bridge/config.toml");
        let text = fs::read_to_string(&path).unwrap_or_else(|_| "[worker]\n".to_owned());
        let keys: Vec<&str> = settings
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
            .collect();
        let mut kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.split_once('=')
                    .is_some_and(|(k, _)| keys.contains(&k.trim()))
            })
            .collect();
        kept.extend(settings.lines());
        fs::write(&path, kept.join("\n") + "\n").expect("cannot write .bridge/config.toml");
    }

    /// Adds `settings` (whole `key = value` lines) under `[store]` in
    /// bridge.toml.
    pub fn set_store_settings(&self, settings: &str) {
        self.set_table_settings("[store]", settings);
    }

    /// Adds `settings` (whole `key = value` lines) under `[worker]` in
    /// bridge.toml.
    pub fn set_worker_settings(&self, settings: &str) {
        self.set_table_settings("[worker]", settings);
    }

    fn set_table_settings(&self, table: &str, settings: &str) {
        let path = self.path("bridge.toml");
        let text = fs::read_to_string(&path).expect("cannot read bridge.toml");
        // `bridge init` writes the tables; a second one would be a
        // duplicate key.
        let header = format!("{table}\n");
        let new = match text.find(&header) {
            Some(at) => {
                let end = at + header.len();
                format!("{}{settings}{}", &text[..end], &text[end..])
            }
            None => format!("{text}\n{header}{settings}"),
        };
        fs::write(&path, new).expect("cannot write bridge.toml");
    }
}

/// A `bridge` process running in the background. Dropping it kills it.
pub struct Spawned {
    args: Vec<String>,
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Spawned {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("cannot wait for the worker").is_none())
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(mut self) -> Run {
        let mut child = self.child.take().expect("the process is still ours");
        child.kill().expect("cannot kill the worker");
        let status = child.wait().expect("cannot reap the worker");
        self.finish(status)
    }

    /// Sends SIGTERM (the process keeps running until it stops by itself).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait(mut self) -> Run {
        let mut child = self.child.take().expect("the process is still ours");
        let mut status = None;
        poll(&format!("`bridge {}` to exit", self.args.join(" ")), || {
            status = child.try_wait().expect("cannot wait for the worker");
            status.is_some()
        });
        let status = status.expect("exited");
        self.finish(status)
    }

    fn finish(&self, status: ExitStatus) -> Run {
        let read = |p: &Path| fs::read(p).unwrap_or_default();
        Run::new(self.args.clone(), status, read(&self.out), read(&self.err))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Syncs both devices, round after round, until their `ls --json` and
/// `status --json` agree (at most `rounds` rounds); returns the agreed list.
pub fn sync_until_equal(a: &Device, b: &Device, rounds: usize) -> Vec<Task> {
    for _ in 0..rounds {
        a.ok(&["sync"]);
        b.ok(&["sync"]);
        let (la, lb) = (a.ls(), b.ls());
        let (sa, sb) = (a.status(), b.status());
        if la == lb && sa == sb {
            return la;
        }
    }
    panic!(
        "{} and {} still disagree after {rounds} sync rounds:\n{:#?}\n{:#?}",
        a.name,
        b.name,
        a.ls(),
        b.ls()
    );
}

impl Device {
    /// Gives every later command of this device `key=value` in its
    /// environment (replacing an earlier value of `key`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Runs `bridge ARGS` in the workspace with extra environment variables
    /// for this one command.
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = self.command_in(&self.dir, true, args);
        cmd.envs(env.iter().copied());
        self.run_cmd(cmd, args)
    }

    /// The device's configuration folder (`$XDG_CONFIG_HOME/bridge`).
    pub fn config_dir(&self) -> PathBuf {
        self.root.path().join("config").join("bridge")
    }

    /// The device's identity file (made by `bridge keygen`).
    pub fn identity_file(&self) -> PathBuf {
        self.config_dir().join("identity")
    }

    /// The device's local replica (`.bridge/store` in the workspace).
    pub fn store(&self) -> PathBuf {
        self.path(".bridge/store")
    }

    /// The device's own folder: its workspace, HOME, config and scratch
    /// files.
    pub fn root_dir(&self) -> &Path {
        self.root.path()
    }
}

/// The files under `prefix` (an S3 server's folder for a bucket prefix),
/// as store names: what the bucket holds there.
pub fn objects_under(prefix: &Path) -> Vec<String> {
    files_under(prefix)
        .into_iter()
        .filter_map(|p| p.strip_prefix(prefix).ok().map(|r| r.display().to_string()))
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Every file under `dir`, recursively (sorted).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Waits (at most `limit`: a bound against hangs, not a timing assertion)
/// for a background `bridge` to exit by itself.
pub fn wait_exit(mut p: Spawned, limit: Duration) -> Run {
    let start = std::time::Instant::now();
    while p.is_running() {
        assert!(
            start.elapsed() < limit,
            "`bridge` still runs after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p.wait()
}

/// Where a [`GitPool`]'s repository is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// A bare repository on this machine's disk, by its path: no push
    /// budget unless set.
    Local,
    /// The GitHub-shaped server of bridge-testutil (https, a token,
    /// GitHub's limits counted): a hosted remote, so bridge applies the
    /// default push budget (README, "Within GitHub's limits").
    GitHub,
    /// Not git: an `s3:` remote on a real S3 server on 127.0.0.1
    /// (bridge-testutil's `S3Server`, issue 19); no refs, no push budget.
    S3,
}

impl Host {
    /// A short tag, different for each host: for markers that tell the
    /// processes of the two variants of a test apart (the tests of one
    /// binary share its process id).
    pub fn tag(self) -> u32 {
        match self {
            Host::Local => 1,
            Host::GitHub => 2,
            Host::S3 => 3,
        }
    }
}

/// A pool on a bare git repository: the remote, and an admin device that
/// created the workspace on it (the compaction and runner tests share it).
pub struct GitPool {
    /// Holds the bare repository (and anything else shared).
    pub tmp: TempDir,
    /// The bare repository (on the GitHub-shaped server: the one it
    /// serves, on disk).
    pub bare: Bare,
    /// The remote spec, `git:…`.
    pub remote: String,
    pub admin: Device,
    /// The GitHub-shaped server serving `bare`, alive as long as the pool
    /// (see [`GitPool::server`]).
    server: Option<GitHubGit>,
    /// The S3 server of an `s3:` pool (then `bare` is a stand-in that is
    /// never created).
    s3: Option<S3Server>,
    /// What every device of the pool needs in its environment to reach the
    /// remote (the server's token, auth host and certificate; an S3
    /// server's key pair and endpoint).
    env: Vec<(String, String)>,
}

impl GitPool {
    /// A pool whose remote is the bare repository's plain path.
    pub fn new(label: &str) -> GitPool {
        GitPool::with_url(label, |bare| bare.display().to_string())
    }

    /// A pool on `host`.
    pub fn on_host(host: Host, label: &str) -> GitPool {
        match host {
            Host::Local => GitPool::new(label),
            Host::GitHub => GitPool::github(label),
            Host::S3 => GitPool::s3(label),
        }
    }

    /// A pool on `s3://bridge/LABEL` of an S3 server started for it: every
    /// device of the pool gets the server's key pair and endpoint.
    pub fn s3(label: &str) -> GitPool {
        let tmp = temp_dir(&format!("{label}-pool"));
        let server = S3Server::start();
        server.create_bucket("bridge");
        let bare = Bare(tmp.path().join("no-git-here.git"));
        let env = server.env();
        let admin = device_with_env(&format!("{label}-admin"), &env);
        let remote = format!("s3://bridge/{label}");
        admin.ok(&["init", "--remote", &remote]);
        GitPool {
            tmp,
            bare,
            remote,
            admin,
            server: None,
            s3: Some(server),
            env,
        }
    }

    /// The S3 server (panics unless the pool is on one).
    pub fn s3_server(&mut self) -> &mut S3Server {
        self.s3.as_mut().expect("a pool on an S3 server")
    }

    /// A pool whose remote is `git:` + `url(bare repository)`.
    pub fn with_url(label: &str, url: impl FnOnce(&Path) -> String) -> GitPool {
        let tmp = temp_dir(&format!("{label}-pool"));
        let bare = Bare::init(&tmp.path().join("store.git"));
        let remote = format!("git:{}", url(bare.path()));
        GitPool::on(tmp, bare, remote, label)
    }

    /// A pool on `bare` (in `tmp`) through `remote`.
    pub fn on(tmp: TempDir, bare: Bare, remote: String, label: &str) -> GitPool {
        GitPool::init(tmp, bare, remote, label, None)
    }

    /// A pool on a repository `octo/LABEL` of a GitHub-shaped server started
    /// for it (https on 127.0.0.1, a token): every device of the pool gets
    /// the server's [`GitHubGit::bridge_env`].
    pub fn github(label: &str) -> GitPool {
        let tmp = temp_dir(&format!("{label}-pool"));
        let server = GitHubGit::start();
        let name = format!("octo/{label}");
        let remote = format!("git:{}", server.create_repo(&name));
        let bare = Bare(server.repo_dir(&name));
        GitPool::init(tmp, bare, remote, label, Some(server))
    }

    fn init(
        tmp: TempDir,
        bare: Bare,
        remote: String,
        label: &str,
        server: Option<GitHubGit>,
    ) -> GitPool {
        let env = server
            .as_ref()
            .map(GitHubGit::bridge_env)
            .unwrap_or_default();
        let admin = device_with_env(&format!("{label}-admin"), &env);
        admin.ok(&["init", "--remote", &remote]);
        GitPool {
            tmp,
            bare,
            remote,
            admin,
            server,
            s3: None,
            env,
        }
    }

    /// The host the pool's repository is on.
    pub fn host(&self) -> Host {
        if self.server.is_some() {
            Host::GitHub
        } else if self.s3.is_some() {
            Host::S3
        } else {
            Host::Local
        }
    }

    /// A new (empty) device that can reach the pool's remote.
    pub fn device(&self, name: &str) -> Device {
        device_with_env(name, &self.env)
    }

    /// A file path shared by the test's processes (outside any workspace).
    pub fn shared(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Submits a YAML task file at the admin; returns `submit --json`.
    pub fn submit_yaml(&self, yaml: &str) -> Value {
        self.admin.write("tasks.yaml", yaml);
        self.admin.ok(&["submit", "--json", "tasks.yaml"]).json()
    }

    /// `bridge members add-runner NAME`: the runner's secret identity.
    pub fn add_runner(&self, name: &str) -> String {
        self.admin.add_runner(name)
    }

    /// A runner machine: a checkout holding the admin's bridge.toml, with
    /// `BRIDGE_IDENTITY` set to `secret`.
    pub fn runner(&self, name: &str, secret: &str) -> Device {
        let mut r = self.device(name);
        fs::copy(self.admin.path("bridge.toml"), r.path("bridge.toml"))
            .expect("cannot copy bridge.toml");
        r.set_env("BRIDGE_IDENTITY", secret);
        r
    }

    /// The store's branches in the bare repository.
    pub fn refs(&self) -> BTreeSet<String> {
        self.bare.branches().into_iter().collect()
    }

    /// The admin's status after a sync.
    pub fn synced_status(&self) -> StatusReport {
        self.admin.ok(&["sync"]);
        self.admin.status()
    }

    /// How long a test waits between two looks at the remote (an admin's
    /// `sync` each). On the GitHub-shaped server a person does not sync ten
    /// times a second: once a second keeps the admin's reads, with the
    /// runners', within GitHub's 15 a second.
    pub fn poll_every(&self) -> Duration {
        match self.host() {
            Host::Local | Host::S3 => Duration::from_millis(100),
            Host::GitHub => Duration::from_secs(1),
        }
    }

    /// The GitHub-shaped server (panics on a local pool).
    pub fn server(&mut self) -> &mut GitHubGit {
        self.server
            .as_mut()
            .expect("a pool on the GitHub-shaped server")
    }

    /// What the GitHub-shaped server saw of the pool's repository, if the
    /// pool is on one.
    pub fn report(&self) -> Option<Report> {
        self.server.as_ref().map(GitHubGit::report)
    }

    /// On the GitHub-shaped server: panics unless everything the pool did
    /// stayed within GitHub's recommendations, but with at most
    /// `pushes_per_minute` pushes a minute (over every 5-minute window):
    /// GitHub's 6 unless the test set a faster budget on purpose. Prints the
    /// report either way. Nothing on a local pool.
    pub fn check_within_github(&self, pushes_per_minute: usize) {
        let Some(report) = self.report() else {
            return;
        };
        eprintln!("{report}");
        let limits = Recommendations {
            pushes_per_minute,
            ..Recommendations::github()
        };
        if let Err(violations) = report.check(&limits) {
            panic!("{violations}\n{report}");
        }
    }
}

/// A new device with `env` in the environment of all its commands.
fn device_with_env(name: &str, env: &[(String, String)]) -> Device {
    let mut d = Device::new(name);
    for (key, value) in env {
        d.set_env(key, value);
    }
    d
}

/// The store's slot refs in the bare repository `bare`.
pub fn refs(bare: &Path) -> BTreeSet<String> {
    bridge_testutil::git::Bare(bare.to_owned())
        .branches()
        .into_iter()
        .collect()
}

/// A new bare repository `store.git` in `tmp` and a laptop named `name`
/// whose workspace stores its tasks there (`git:file://…`).
pub fn laptop_on_bare_repo(tmp: &Path, name: &str) -> (PathBuf, Device) {
    let bare = tmp.join("store.git");
    bridge_testutil::git::Bare::init(&bare);
    let laptop = Device::new(name);
    laptop.ok(&[
        "init",
        "--remote",
        &format!("git:file://{}", bare.display()),
    ]);
    (bare, laptop)
}

/// A task file of `n` tasks `t[n=K]` (K from 0) for runners labelled
/// `runner`, keeping `out.txt`: each waits (at most two minutes) for the
/// file `gate`, when given, then writes `value K` to `out.txt`, then runs
/// the lines `then` (where `${{ matrix.n }}` is K).
pub fn runner_tasks_yaml(n: usize, gate: Option<&Path>, then: &[&str]) -> String {
    let values: Vec<String> = (0..n).map(|k| k.to_string()).collect();
    let mut run = String::new();
    if let Some(gate) = gate {
        run.push_str(&format!(
            "      i=0; while [ ! -e {} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 1; sleep 0.1; done\n",
            gate.display()
        ));
    }
    run.push_str("      echo \"value ${{ matrix.n }}\" > out.txt\n");
    for line in then {
        run.push_str(&format!("      {line}\n"));
    }
    format!(
        "tasks:\n  - name: t\n    matrix: {{ n: [{}] }}\n    runs-on: [runner]\n    outputs: [out.txt]\n    run: |\n{run}",
        values.join(", ")
    )
}

/// A tool run by a test (`act`, `gitlab-ci-local`) writing everything it
/// prints to `log`; killed if dropped, so that a failed assertion leaves no
/// runners behind.
pub struct LoggedChild {
    /// The tool's name, for messages.
    pub name: &'static str,
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl LoggedChild {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the log, for failure messages.
    pub fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    /// Waits until the store's refs in `bare` include `wanted` (each
    /// runner has claimed a task), failing if the tool exits first or after
    /// 3 minutes (a bound against hangs).
    pub fn wait_for_refs(&mut self, bare: &Path, wanted: &BTreeSet<String>) {
        let start = std::time::Instant::now();
        while !wanted.is_subset(&refs(bare)) {
            assert!(
                self.running(),
                "{} exited before every runner claimed a task; refs: {:?}\n{}",
                self.name,
                refs(bare),
                self.tail()
            );
            assert!(
                start.elapsed() < std::time::Duration::from_secs(180),
                "not every runner of {} claimed a task within 3 minutes; refs: {:?}\n{}",
                self.name,
                refs(bare),
                self.tail()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    pub fn running(&mut self) -> bool {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.name))
            .is_none()
    }

    /// Waits (at most `limit`, a bound against hangs) for the tool to exit;
    /// its exit code (-1 for a signal).
    pub fn wait(&mut self, limit: std::time::Duration) -> i32 {
        let start = std::time::Instant::now();
        loop {
            let status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.name));
            if let Some(status) = status {
                return status.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < limit,
                "{} still runs after {limit:?}:\n{}",
                self.name,
                self.tail()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The laptop's view of a drained pool: every one of its `count` tasks done,
/// and `bridge outputs --all` (into `to`) holding one result each; returns
/// each result's `out.txt`, trimmed, sorted by the number in its second
/// word (`value N …`). How often a task ran is not looked at: runners that
/// steal the same last tasks of a pool of short tasks may each run one
/// before they see the others' results (the first success is the result).
pub fn results_once(laptop: &Device, to: &Path, count: usize) -> Vec<String> {
    let tasks = laptop.ls();
    assert_eq!(tasks.len(), count);
    for task in &tasks {
        assert_eq!(task.status, "done", "{}", task.name);
    }
    let out = laptop
        .ok(&[
            "outputs",
            "--all",
            "--json",
            "--to",
            &to.display().to_string(),
        ])
        .json();
    let results = out["tasks"].as_array().expect("tasks");
    assert_eq!(results.len(), count, "{out}");
    let mut values: Vec<String> = results
        .iter()
        .map(|r| {
            let dir = r["dir"].as_str().expect("a task's folder");
            let text =
                std::fs::read_to_string(Path::new(dir).join("out.txt")).expect("its out.txt");
            text.trim().to_owned()
        })
        .collect();
    let number = |v: &String| {
        v.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
    values.sort_by_key(number);
    values
}
