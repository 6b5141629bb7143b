//! One pool, many providers (issue 19, item 6): a laptop, two shards of
//! the GitHub template (`act`), the three `parallel:` jobs of the GitLab
//! template (`gitlab-ci-local`) and one pod of the Kubernetes Job (index 0,
//! run as the kubelet would) drain one pool at once through an `s3:` store
//! on a real S3 server on 127.0.0.1, and the laptop sees every result once.
//!
//! Each provider runs its template with its own shard count
//! (GitHub 2, GitLab 3, Kubernetes 4 as the manifest says): shards are only
//! a preference, and stealing covers the tasks of shards nobody runs. The
//! endpoint is in bridge.toml's `[store.s3]`; the keys reach each runner the
//! way its provider passes secrets: GitHub secrets `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` (through act's secrets file), GitLab CI/CD
//! variables (gitlab-ci-local's variables file), the Kubernetes Secret's
//! optional keys. The templates are used byte for byte.
//!
//! Every task waits for a gate, and a runner claims every unclaimed task of
//! its own shard at once, so they start one after the other: the laptop's
//! `bridge work --max-tasks 1`, the pod, the GitLab jobs with
//! `BRIDGE_MAX_TASKS=2`, then the GitHub shards, each once the ones before
//! run a task; the gate opens when all seven run one, so each of them runs
//! at least one task. Without `act` or `gitlab-ci-local` the test says so
//! and passes, except under CI.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bridge_testutil::s3::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};

use crate::act::{
    Act, act_command, act_or_skip, commit_all, copy_dir, fake_actions_cache, pinned_action_commit,
};
use crate::gitlab::{gitlab_ci_local_or_skip, project, set_variables, start_pipeline};
use crate::harness::{BRIDGE, Device, results_once, temp_dir};
use crate::kubernetes::{kind, manifest, pod};

// Enough that each runner's shard still holds an unclaimed task when it
// starts, after the runners before it claimed theirs (with 48, a shard
// left empty by the hash of the task ids is a few-in-a-million case).
const TASKS: usize = 48;
const GITHUB_SHARDS: usize = 2;
const GITLAB_JOBS: usize = 3;

/// The laptop's workspace on `s3://bridge/pool` of `server` (keys in its
/// environment, the endpoint in bridge.toml), with [`TASKS`] tasks that each
/// wait for the file `gate`, and the runner identity `ci`.
fn laptop(server: &S3Server, gate: &Path) -> (Device, String) {
    let mut laptop = Device::new("providers-laptop");
    laptop.set_env("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    laptop.set_env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    laptop.ok(&["init"]);
    laptop.set_store_settings("remote = \"s3://bridge/pool\"\n");
    let path = laptop.path("bridge.toml");
    let mut toml = fs::read_to_string(&path).expect("read bridge.toml");
    toml.push_str(&format!(
        "\n[store.s3]\nendpoint = \"{}\"\nregion = \"{REGION}\"\npath-style = true\n",
        server.endpoint()
    ));
    fs::write(&path, toml).expect("write bridge.toml");
    let values: Vec<String> = (0..TASKS).map(|k| k.to_string()).collect();
    laptop.write(
        "tasks.yaml",
        &format!(
            "tasks:\n  - name: t\n    matrix: {{ n: [{}] }}\n    outputs: [out.txt]\n    run: |\n      echo \"started ${{{{ matrix.n }}}}\"\n      i=0; while [ ! -e {} ]; do i=$((i+1)); [ $i -gt 2400 ] && exit 1; sleep 0.1; done\n      echo \"value ${{{{ matrix.n }}}}\" > out.txt\n",
            values.join(", "),
            gate.display()
        ),
    );
    let sub = laptop.ok(&["submit", "--json", "tasks.yaml"]).json();
    assert_eq!(sub["new"], TASKS, "{sub}");
    let secret = laptop.add_runner("ci");
    laptop.ok(&["sync"]);
    assert!(server.data().join("bridge/pool/FORMAT").is_file());
    (laptop, secret)
}

/// PATH with the bridge under test first.
fn path_with_bridge() -> std::ffi::OsString {
    let bin_dir = Path::new(BRIDGE).parent().expect("the binary's folder");
    std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf()).chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    )
    .expect("PATH")
}

/// Starts the GitHub template (`GITHUB_SHARDS` shards) under act in a
/// repository of its own under `tmp`; the identity and the S3 keys go
/// through a secrets file (mode 0600), as repository secrets.
fn start_github(act: &Path, tmp: &Path, laptop: &Device, secret: &str) -> Act {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf();
    let repo = tmp.join("github-repo");
    fs::create_dir_all(repo.join(".github/workflows")).expect("cannot create a folder");
    fs::copy(laptop.path("bridge.toml"), repo.join("bridge.toml")).expect("bridge.toml");
    let template = fs::read_to_string(root.join("workflows/bridge.yml")).expect("the template");
    fs::write(repo.join(".github/workflows/bridge.yml"), &template).expect("the workflow");
    commit_all(&repo, "bridge");
    let action_repo = tmp.join("bridge-at-pin");
    copy_dir(&root.join("action"), &action_repo.join("action"));
    let pin = pinned_action_commit(&template);
    let secrets = tmp.join("github-secrets");
    fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&secrets)
        .and_then(|mut f| {
            writeln!(
                f,
                "BRIDGE_IDENTITY={secret}\nAWS_ACCESS_KEY_ID={ACCESS_KEY}\nAWS_SECRET_ACCESS_KEY={SECRET_KEY}"
            )
        })
        .expect("cannot write the secrets file");
    let log = tmp.join("act.log");
    let log_file = fs::File::create(&log).expect("cannot create the log");
    let shards = GITHUB_SHARDS.to_string();
    let act_home = tmp.join("act");
    fs::create_dir_all(&act_home).expect("cannot create a folder");
    let mut cmd = act_command(
        act,
        &repo,
        &act_home,
        ".github/workflows/bridge.yml",
        &path_with_bridge(),
    );
    let child = cmd
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .args([
            "--input",
            &format!("runners={shards}"),
            "--input",
            "budget=5m",
        ])
        .arg("--secret-file")
        .arg(&secrets)
        .args(["--var", "BRIDGE_USE=path", "--var", "BRIDGE_PARALLEL=1"])
        .arg("--local-repository")
        .arg(format!(
            "bridge-pool/bridge@{pin}={}",
            action_repo.display()
        ))
        .arg("--local-repository")
        .arg(fake_actions_cache(&act_home.join("fake-actions-cache")))
        .args(["--concurrent-jobs", &shards])
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", act.display()));
    Act {
        name: "act",
        child,
        log,
    }
}

/// A pod of the Kubernetes Job at index 0, its output in `<tmp>/pod-0.log`;
/// the S3 keys come from the Secret's optional keys.
fn start_pod(tmp: &Path, laptop: &Device, secret: &str) -> (std::process::Child, PathBuf) {
    let docs = manifest();
    let job = &kind(&docs, "Job")["spec"];
    let dir = tmp.join("pod-0");
    fs::create_dir_all(&dir).expect("a pod's folder");
    let keys = BTreeMap::from([
        ("identity", secret),
        ("aws-access-key-id", ACCESS_KEY),
        ("aws-secret-access-key", SECRET_KEY),
    ]);
    let log = tmp.join("pod-0.log");
    let log_file = fs::File::create(&log).expect("cannot create the log");
    let child = pod(job, 0, &dir, &laptop.path("bridge.toml"), &keys)
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("start the pod's command");
    (child, log)
}

/// Whether `log` has a line holding both `prefix` and a task's start.
fn started(log: &str, prefix: &str) -> bool {
    log.lines()
        .any(|l| l.contains(prefix) && l.contains("▶ t[n="))
}

/// Waits until `done` (checked every 200 ms) while `alive`, at most four
/// minutes (a bound against hangs); `what` and `logs` explain a failure.
fn wait_for(
    what: &str,
    mut done: impl FnMut() -> bool,
    mut alive: impl FnMut() -> bool,
    logs: impl Fn() -> String,
) {
    let start = Instant::now();
    while !done() {
        assert!(alive(), "a runner ended before {what}:\n{}", logs());
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "not within 4 minutes: {what}:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_laptop_and_github_gitlab_and_kubernetes_runners_drain_one_s3_pool() {
    let Some(act) = act_or_skip() else {
        return;
    };
    let Some(glc) = gitlab_ci_local_or_skip() else {
        return;
    };
    let tmp = temp_dir("providers");
    let server = S3Server::start();
    server.create_bucket("bridge");
    let gate = tmp.path().join("gate");
    let (laptop, secret) = laptop(&server, &gate);
    let pod_text = |log: &Path| fs::read_to_string(log).unwrap_or_default();

    // First the laptop itself works: one task (a task's output lines are
    // printed as they come, tagged with its name).
    let mut work = laptop.spawn(
        "work",
        &["work", "-j", "1", "--max-tasks", "1", "--line-buffer"],
    );
    let work_out = laptop.scratch("work.stdout");
    wait_for(
        "the laptop started a task",
        || pod_text(&work_out).contains("started "),
        || work.is_running(),
        || pod_text(&work_out),
    );

    // A runner claims every unclaimed task of its own shard at once, and
    // every task waits for the gate: so that each runner gets some, they
    // start one provider after the other, each once the previous ones run
    // a task, and the GitLab jobs take at most two tasks each.
    // Then the pod (shard 0/4, the CPUs at once).
    let (mut pod, pod_log) = start_pod(tmp.path(), &laptop, &secret);
    wait_for(
        "the pod started a task",
        || started(&pod_text(&pod_log), ""),
        || pod.try_wait().ok().flatten().is_none(),
        || pod_text(&pod_log),
    );

    // Then the GitLab template's three jobs (shards 0/3 to 2/3).
    let gitlab_repo = tmp.path().join("gitlab-repo");
    project(&gitlab_repo, &laptop);
    set_variables(
        &gitlab_repo,
        &[
            ("BRIDGE_IDENTITY", &secret),
            ("BRIDGE_USE", "path"),
            ("BRIDGE_PARALLEL", "1"),
            ("BRIDGE_MAX_TASKS", "2"),
            ("BRIDGE_BUDGET", "5m"),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    );
    let gitlab_home = tmp.path().join("gitlab");
    fs::create_dir_all(&gitlab_home).expect("cannot create a folder");
    let gitlab = std::cell::RefCell::new(start_pipeline(
        &glc,
        &gitlab_repo,
        &gitlab_home,
        "pipeline",
        true,
        &[],
    ));
    wait_for(
        "every GitLab job started a task",
        || {
            let log = gitlab.borrow().log();
            (1..=GITLAB_JOBS).all(|k| started(&log, &format!("bridge-drain: [{k}/{GITLAB_JOBS}]")))
        },
        || gitlab.borrow_mut().running(),
        || gitlab.borrow().tail(),
    );

    // Then the GitHub template's two shards (0/2 and 1/2) take the rest.
    let github = std::cell::RefCell::new(start_github(&act, tmp.path(), &laptop, &secret));
    wait_for(
        "every GitHub shard started a task",
        || {
            let log = github.borrow().log();
            (0..GITHUB_SHARDS).all(|i| started(&log, &format!("[bridge/drain {i}/{GITHUB_SHARDS}")))
        },
        || github.borrow_mut().running(),
        || github.borrow().tail(),
    );
    fs::write(&gate, "").expect("cannot open the gate");

    let (mut github, mut gitlab) = (github.into_inner(), gitlab.into_inner());
    assert_eq!(
        github.wait(Duration::from_secs(300)),
        0,
        "act failed:\n{}",
        github.tail()
    );
    assert_eq!(
        gitlab.wait(Duration::from_secs(300)),
        0,
        "gitlab-ci-local failed:\n{}",
        gitlab.tail()
    );
    let status = pod.wait().expect("wait for the pod");
    let pod_out = pod_text(&pod_log);
    assert!(status.success(), "the pod failed:\n{pod_out}");
    assert!(pod_out.contains("shard:    0/4"), "{pod_out}");
    for log in [github.log(), gitlab.log(), pod_out] {
        assert!(log.contains("store:    s3://bridge/pool"), "{log}");
        assert!(!log.contains(&secret), "the identity appears in a log");
        assert!(!log.contains(SECRET_KEY), "the S3 secret appears in a log");
    }
    let worked = work.wait();
    assert_eq!(worked.code, 0, "{}{}", worked.stdout, worked.stderr);
    laptop_sees_every_result_once(&laptop, tmp.path());
}

/// The laptop syncs: every task done, `outputs --all --json` holding each
/// result once. (How often a task ran is not asserted: runners that steal
/// the same last tasks may each run one; the first success is the result.)
fn laptop_sees_every_result_once(laptop: &Device, tmp: &Path) {
    laptop.ok(&["sync"]);
    let values = results_once(laptop, &tmp.join("results"), TASKS);
    let wanted: Vec<String> = (0..TASKS).map(|k| format!("value {k}")).collect();
    assert_eq!(values, wanted);
}
