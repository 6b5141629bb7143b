//! The GitLab CI template (`workflows/gitlab-ci.yml`), run for real by
//! `gitlab-ci-local` (npm) with its shell executor on this machine, against
//! a bare git repository as the store: a laptop submits tasks, the job's
//! `parallel: 3` copies drain them as shards, the laptop syncs and sees every
//! result (issue 19, item 4). It is `act.rs`'s test for GitLab. A second
//! test runs the template's default install (a release archive over https
//! on 127.0.0.1, checked against `BRIDGE_SHA256`) and its refusals.
//!
//! The user's repository holds bridge.toml and the template byte for byte
//! as `.gitlab-ci.yml`. The CI/CD variable `BRIDGE_USE=path` makes the
//! template use the `bridge` under test, put first on PATH; the identity
//! comes in as the variable `BRIDGE_IDENTITY`, through gitlab-ci-local's
//! variables file (mode 0600, untracked) rather than argv. `--shell-isolation` gives each job its own
//! build folder, as GitLab gives each job its own checkout.
//!
//! `gitlab-ci-local` comes from `BRIDGE_TEST_GITLAB_CI_LOCAL` (`.ci/run`
//! installs it), else `target/ci-tools/npm/node_modules/.bin/`, else PATH;
//! it copies the repository with `rsync`. Without either the test says so
//! and passes, except under CI (`CI` set), where it fails.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bridge_testutil::git::git_in;
use serde_json::Value;

use crate::harness::{
    BRIDGE, Device, LoggedChild, laptop_on_bare_repo, refs, runner_tasks_yaml, str_field, temp_dir,
};

/// The repository root (the workspace holding `bridge/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bridge/ has a parent folder")
        .to_path_buf()
}

/// The first file named `name` in the folders of PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The `gitlab-ci-local` script, if this machine has it (see the module
/// docs).
fn find_gitlab_ci_local() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BRIDGE_TEST_GITLAB_CI_LOCAL").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BRIDGE_TEST_GITLAB_CI_LOCAL={} does not exist",
            p.display()
        );
        return Some(p);
    }
    let local = repo_root().join("target/ci-tools/npm/node_modules/.bin/gitlab-ci-local");
    if local.is_file() {
        return Some(local);
    }
    on_path("gitlab-ci-local")
}

/// [`find_gitlab_ci_local`] when rsync is there too, or `None` with a note
/// that the test is skipped (never on CI, where `.ci/run` installs both).
pub(crate) fn gitlab_ci_local_or_skip() -> Option<PathBuf> {
    let tool = find_gitlab_ci_local().filter(|_| on_path("rsync").is_some());
    if tool.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "gitlab-ci-local or rsync is missing: .ci/run installs them"
        );
        eprintln!(
            "skipped: no gitlab-ci-local or no rsync (npm install gitlab-ci-local, or run .ci/run once)"
        );
    }
    tool
}

/// A running `gitlab-ci-local`.
pub(crate) type Pipeline = LoggedChild;

/// The laptop's workspace on a new bare repository under `tmp`, with
/// `tasks` tasks that each wait for the file `gate`; returns the laptop,
/// the bare repository and the runner identity `ci`.
fn laptop_with_gated_tasks(tmp: &Path, tasks: usize, gate: &Path) -> (Device, PathBuf, String) {
    let (bare, laptop) = laptop_on_bare_repo(tmp, "gitlab-laptop");
    laptop.write(
        "tasks.yaml",
        &runner_tasks_yaml(tasks, Some(gate), &["echo \"said ${{ matrix.n }}\""]),
    );
    let sub = laptop.ok(&["submit", "--json", "tasks.yaml"]).json();
    assert_eq!(sub["new"], tasks, "{sub}");
    let secret = laptop.add_runner("ci");
    (laptop, bare, secret)
}

/// The user's project at `repo`: bridge.toml and the template, unchanged,
/// as `.gitlab-ci.yml`, committed.
pub(crate) fn project(repo: &Path, laptop: &Device) {
    fs::create_dir_all(repo).expect("cannot create a folder");
    fs::copy(laptop.path("bridge.toml"), repo.join("bridge.toml")).expect("bridge.toml");
    fs::copy(
        repo_root().join("workflows/gitlab-ci.yml"),
        repo.join(".gitlab-ci.yml"),
    )
    .expect("the template");
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
            "bridge",
        ],
    );
}

/// Writes the project's `.gitlab-ci-local-variables.yml` (mode 0600, not
/// committed: no job's copy of the project holds it), the CI/CD variables
/// of the next pipeline. GitLab sets GITLAB_CI=true in every job;
/// gitlab-ci-local does not, so it is added.
pub(crate) fn set_variables(repo: &Path, vars: &[(&str, &str)]) {
    let file = repo.join(".gitlab-ci-local-variables.yml");
    let _ = fs::remove_file(&file);
    let mut text = "GITLAB_CI: \"true\"\n".to_owned();
    for (name, value) in vars {
        text.push_str(&format!("{name}: {}\n", Value::from(*value)));
    }
    fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("cannot write the variables file");
}

/// Starts the pipeline of `repo` with `gitlab-ci-local`: every job on the
/// host (shell executor), each in a build folder of its own, in a clean
/// environment (plus `env`) with the bridge under test first on PATH when
/// `bridge_on_path`, the variables [`set_variables`] wrote; its log is
/// `<tmp>/<name>.log`.
pub(crate) fn start_pipeline(
    tool: &Path,
    repo: &Path,
    tmp: &Path,
    name: &str,
    bridge_on_path: bool,
    env: &[(&str, &Path)],
) -> Pipeline {
    let home = tmp.join("home");
    fs::create_dir_all(&home).expect("cannot create a folder");
    let bin_dir = Path::new(BRIDGE).parent().expect("the binary's folder");
    let path = std::env::join_paths(
        bridge_on_path
            .then(|| bin_dir.to_path_buf())
            .into_iter()
            .chain(
                std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
    )
    .expect("PATH");
    let log = tmp.join(format!("{name}.log"));
    let log_file = fs::File::create(&log).expect("cannot create the log");
    let child = Command::new(tool)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .envs(env.iter().copied())
        .current_dir(repo)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .args(["--force-shell-executor", "--shell-isolation", "--no-color"])
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", tool.display()));
    Pipeline {
        name: "gitlab-ci-local",
        child,
        log,
    }
}

/// The JSON reports the jobs left as artifacts (`bridge-run-<I>.json`), by
/// file name.
fn artifact_reports(repo: &Path) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    let dir = repo.join(".gitlab-ci-local/artifacts");
    for job in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let job = job.expect("dir entry").path();
        for file in fs::read_dir(&job).expect("a job's artifacts") {
            let file = file.expect("dir entry").path();
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let text = fs::read_to_string(&file).expect("an artifact");
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not JSON ({e}): {text}"));
            found.push((name, json));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn three_parallel_jobs_drain_a_git_pool_under_gitlab_ci_local() {
    const TASKS: usize = 9;
    const SHARDS: usize = 3;
    let Some(tool) = gitlab_ci_local_or_skip() else {
        return;
    };
    let tmp = temp_dir("gitlab");
    // Every task waits for the gate, opened only once each of the three
    // jobs has claimed a task (pushed to its own ref): no job drains alone.
    let gate = tmp.path().join("gate");
    let (laptop, bare, secret) = laptop_with_gated_tasks(tmp.path(), TASKS, &gate);
    // GitLab masks a variable only if its value is one line of at least 8
    // characters from its set (the Base64 alphabets and `@:.~`): the
    // identity must be one it can mask.
    assert!(
        secret.len() >= 8
            && secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=/@:.~-".contains(c)),
        "GitLab cannot mask the identity: {secret}"
    );
    let repo = tmp.path().join("repo");
    project(&repo, &laptop);

    // The identity through gitlab-ci-local's variables file, not argv.
    set_variables(
        &repo,
        &[
            ("BRIDGE_IDENTITY", &secret),
            ("BRIDGE_USE", "path"),
            ("BRIDGE_PARALLEL", "1"),
            ("BRIDGE_BUDGET", "5m"),
        ],
    );
    let mut run = start_pipeline(&tool, &repo, tmp.path(), "pipeline", true, &[]);

    // GitLab's CI_NODE_INDEX 1..3 is bridge's shard 0..2: each job writes
    // refs/bridge/ci-<index - 1>.
    let wanted: BTreeSet<String> = (0..SHARDS).map(|i| format!("refs/bridge/ci-{i}")).collect();
    run.wait_for_refs(&bare, &wanted);
    fs::write(&gate, "").expect("cannot open the gate");
    let code = run.wait(Duration::from_secs(300));
    let log = run.log();
    assert_eq!(code, 0, "the pipeline failed:\n{}", run.tail());
    // No job took shard 3/3, which does not exist (a 1-based index).
    assert!(
        !refs(&bare).contains(&format!("refs/bridge/ci-{SHARDS}")),
        "{:?}",
        refs(&bare)
    );
    assert!(!log.contains(&secret), "the identity appears in the log");

    // Each job: its shard from CI_NODE_INDEX, its phases in GitLab's
    // collapsible sections (gitlab-ci-local times each one it parsed).
    for k in 1..=SHARDS {
        let job = format!("bridge-drain: [{k}/{SHARDS}]");
        for wanted in [
            format!("shard:    {}/{SHARDS} ", k - 1),
            "bridge_install took".to_owned(),
            "bridge_run took".to_owned(),
            // bridge's own sections (GITLAB_CI=true): the header, and one
            // per task holding its output.
            "bridge_header took".to_owned(),
            "bridge_task_".to_owned(),
            "said ".to_owned(),
            "▶ t[n=".to_owned(),
        ] {
            assert!(
                log.lines()
                    .any(|l| l.starts_with(&job) && l.contains(&wanted)),
                "job {job} printed no `{wanted}`:\n{}",
                run.tail()
            );
        }
    }

    // The job report: each shard's `bridge run --json` as an artifact,
    // together counting every task once.
    let reports = artifact_reports(&repo);
    let names: Vec<&str> = reports.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "bridge-run-1.json",
            "bridge-run-2.json",
            "bridge-run-3.json"
        ]
    );
    let done: u64 = reports
        .iter()
        .map(|(_, r)| r["done"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(done, TASKS as u64, "{reports:?}");

    // The laptop syncs and sees every result, each from a drain job.
    laptop.ok(&["sync"]);
    let st = laptop.status();
    assert_eq!((st.tasks, st.count("done")), (TASKS as u64, TASKS as u64));
    let results = tmp.path().join("results");
    for k in 0..TASKS {
        let name = format!("t[n={k}]");
        let to = results.join(k.to_string());
        laptop.ok(&["outputs", &name, "--to", &to.display().to_string()]);
        let out = fs::read_to_string(to.join("out.txt")).expect("the task's output");
        assert_eq!(out.trim(), format!("value {k}"));
        let shown = laptop.show(&name);
        let attempts = shown["attempts"].as_array().expect("attempts");
        assert!(
            attempts.iter().any(|a| str_field(a, "outcome") == "success"
                && a["provenance"]["ci_job"]
                    .as_str()
                    .is_some_and(|job| job.starts_with("bridge-drain"))),
            "{name}: {shown}"
        );
    }
}

/// The SHA-256 of `file`, in hex (as `sha256sum` prints it).
fn sha256_of(file: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run sha256sum: {e}"));
    assert!(out.status.success(), "sha256sum {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The template's default install, `BRIDGE_USE=release`, end to end: the
/// host's release archive (the one `.ci/run` builds with
/// `.ci/release-archive`) served over https on 127.0.0.1 as a release page
/// (curl trusts the test authority through `CURL_CA_BUNDLE`, so the
/// template's `--proto '=https'` stays), no `bridge` on PATH. Each of the
/// three jobs downloads it, checks it against `BRIDGE_SHA256`, drains
/// the pool and removes the download from its `TMPDIR`. Then the template refuses, each job failing with the reason:
/// an archive whose SHA-256 is not `BRIDGE_SHA256`, an empty
/// `BRIDGE_SHA256`, a `BRIDGE_USE` it does not know and a budget that does
/// not fit the job's timeout.
#[test]
fn the_template_installs_a_verified_release_and_refuses_the_rest() {
    const TASKS: usize = 3;
    let Some(tool) = gitlab_ci_local_or_skip() else {
        return;
    };
    let version = env!("CARGO_PKG_VERSION");
    let target = crate::act::host_target();
    let tmp = temp_dir("gitlab-release");
    let www = tmp.path().join("www");
    let archive = crate::act::release_archive(&www.join(format!("v{version}")));
    let sha = sha256_of(&archive);
    let server = bridge_testutil::https_files::HttpsFiles::start(&www);

    // The gate is open from the start: nothing here needs every job.
    let gate = tmp.path().join("gate");
    fs::write(&gate, "").expect("the gate");
    let (laptop, _bare, secret) = laptop_with_gated_tasks(tmp.path(), TASKS, &gate);
    let repo = tmp.path().join("repo");
    project(&repo, &laptop);
    let url = server.url();
    let release = |sha: &str, use_: &str, budget: &str| {
        set_variables(
            &repo,
            &[
                ("BRIDGE_IDENTITY", &secret),
                ("BRIDGE_USE", use_),
                ("BRIDGE_VERSION", version),
                ("BRIDGE_SHA256", sha),
                ("BRIDGE_TARGET", &target),
                ("BRIDGE_RELEASE_URL", &url),
                ("BRIDGE_BUDGET", budget),
            ],
        );
    };
    let ca = server.ca_path().to_path_buf();
    // The jobs' temporary folder: a shell runner's outlives its jobs, so
    // the download must not be left there.
    let job_tmp = tmp.path().join("job-tmp");
    fs::create_dir_all(&job_tmp).expect("cannot create a folder");
    let pipeline = |name: &str| {
        let mut run = start_pipeline(
            &tool,
            &repo,
            tmp.path(),
            name,
            false,
            &[("CURL_CA_BUNDLE", &ca), ("TMPDIR", &job_tmp)],
        );
        let code = run.wait(Duration::from_secs(300));
        let log = run.log();
        let left: Vec<_> = fs::read_dir(&job_tmp)
            .expect("the jobs' temporary folder")
            .map(|e| e.expect("an entry").file_name())
            .collect();
        assert!(
            left.is_empty(),
            "{name}: the jobs left {left:?} in TMPDIR:\n{log}"
        );
        (code, log)
    };

    release(&sha, "release", "5m");
    let (code, log) = pipeline("release");
    assert_eq!(code, 0, "{log}");
    let archive_name = format!("bridge-{target}.tar.gz");
    assert_eq!(
        server.gets(&format!("/v{version}/{archive_name}")),
        3,
        "one download per job"
    );
    assert!(
        log.contains(&format!("/bridge-{target}/bridge: bridge {version}")),
        "{log}"
    );
    laptop.ok(&["sync"]);
    let st = laptop.status();
    assert_eq!((st.tasks, st.count("done")), (TASKS as u64, TASKS as u64));

    // Each refusal fails every job, saying why, before bridge runs.
    let zeros = "0".repeat(64);
    for (name, sha, use_, budget, says) in [
        (
            "tampered",
            zeros.as_str(),
            "release",
            "5m",
            "does not match BRIDGE_SHA256",
        ),
        (
            "no-sha",
            "",
            "release",
            "5m",
            "BRIDGE_SHA256 must be the SHA-256",
        ),
        (
            "bad-use",
            sha.as_str(),
            "docker",
            "5m",
            "BRIDGE_USE must be release or path",
        ),
        (
            "over-budget",
            sha.as_str(),
            "release",
            "2h",
            "BRIDGE_BUDGET (2h) must be from 1m to 50m",
        ),
    ] {
        release(sha, use_, budget);
        let (code, log) = pipeline(name);
        assert_ne!(code, 0, "{name}: the pipeline passed:\n{log}");
        for k in 1..=3 {
            let job = format!("bridge-drain: [{k}/3]");
            assert!(
                log.lines().any(|l| l.starts_with(&job) && l.contains(says)),
                "{name}: job {job} did not say `{says}`:\n{log}"
            );
        }
        assert!(!log.contains("bridge_run_started"), "{name}: {log}");
    }
}
