//! The runner mode (`bridge run`) against a `git:` remote: CI runners that
//! share one worker identity drain a pool kept in a bare git repository,
//! die, are stopped, lose the remote, and speak GitHub's conventions.
//!
//! The fleet's ordeals (a fleet draining a pool, SIGKILL, SIGTERM, the
//! offline laptop, the remote going away, the server dying) run twice:
//! on a local bare repository (no push budget), and, in [`on_github`], on
//! the GitHub-shaped server of bridge-testutil, a hosted remote where
//! bridge keeps to GitHub's push budget (README, "Within GitHub's
//! limits"). Each body takes the [`Host`]; where the budget changes what
//! can be seen (claims on a runner's own shard are not pushed, results land
//! once per push interval), the body says what it checks instead and why.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use bridge_testutil::git::{Bare, Daemon, git};
use bridge_testutil::s3::S3Server;

use crate::harness::{Device, GitPool, Host, Spawned, Task, str_field, temp_dir, wait_exit};

/// Calls `check` until it returns true, `every` apart, for at most `limit`
/// (a bound against hangs, not a timing assertion).
fn poll_for(what: &str, limit: Duration, every: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return;
        }
        std::thread::sleep(every);
    }
    panic!("gave up waiting {limit:?} for: {what}");
}

/// A faster push budget than GitHub's, for the tests whose point is the
/// remote going away (or a runner dying) *after* a result landed in the
/// middle of a run: at the default budget a runner pushes in the middle of
/// a run only after two of its push intervals (24 s and more for one or two
/// runners), so a run of a few seconds pushes once, at its end, and there
/// is no "middle" to see. 60 pushes a minute leaves about a second between
/// two pushes of a runner (never 0, which is no limit at all). Tests that
/// set it check the pushes against it rather than against GitHub's 6 a
/// minute ([`GitPool::check_within_github`]).
const FAST_PUSHES_PER_MINUTE: usize = 60;

/// Sets [`FAST_PUSHES_PER_MINUTE`] on a pool on the GitHub-shaped server
/// (before its runners copy bridge.toml); returns the push rate to check
/// the server's report against: GitHub's 6 a minute on a local pool (not
/// checked there) and when not set.
fn fast_budget_on_github(pool: &GitPool) -> usize {
    match pool.host() {
        Host::Local | Host::S3 => 6,
        Host::GitHub => {
            pool.admin
                .set_store_settings(&format!("pushes-per-minute = {FAST_PUSHES_PER_MINUTE}\n"));
            FAST_PUSHES_PER_MINUTE
        }
    }
}

/// Whether a `sleep` whose command line holds `marker` runs (on the host).
fn sleeping(marker: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
}

/// `bridge run` arguments.
fn run_args(shard: Option<&str>, parallel: usize, json: bool) -> Vec<String> {
    let mut a: Vec<String> = ["run", "--budget", "5m", "--parallel"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    a.push(parallel.to_string());
    if let Some(s) = shard {
        a.push("--shard".into());
        a.push(s.into());
    }
    if json {
        a.push("--json".into());
    }
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A YAML file of `n` matrix tasks named `{name}[n=K]`, K from 0, each
/// running `run` (where `$N` is the matrix value), with extra task keys.
fn matrix_yaml(name: &str, n: usize, run: &str, extra: &str) -> String {
    let values: Vec<String> = (0..n).map(|k| k.to_string()).collect();
    format!(
        "tasks:\n  - name: {name}\n    matrix: {{ n: [{}] }}\n    run: |\n      N=${{{{ matrix.n }}}}\n      {run}\n{extra}",
        values.join(", ")
    )
}

/// The matrix value of a task named `{name}[n=K]`.
fn matrix_value(task: &str) -> String {
    task.split_once("[n=")
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .unwrap_or_else(|| panic!("`{task}` is not a matrix task name"))
        .to_owned()
}

/// The outcomes of a task's attempts (`show --json`), with their devices.
fn attempts(d: &Device, task: &str) -> Vec<(String, String)> {
    d.show(task)["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("show --json of {task} has no attempts"))
        .iter()
        .map(|a| (str_field(a, "outcome"), str_field(a, "device")))
        .collect()
}

/// `id → status` of every task a device lists.
fn statuses(d: &Device) -> BTreeMap<String, String> {
    d.ls().into_iter().map(|t| (t.id, t.status)).collect()
}

/// Which share of the tasks of [`eight_runners_drain_a_git_pool`] have
/// their output checked (1 = all of them).
const OUTPUT_SAMPLE: usize = 4;

#[test]
fn eight_runners_drain_a_git_pool() {
    eight_runners_drain(Host::Local, 400);
}

/// `K` runners drain `n` tasks, all present: nothing fails, every success
/// a runner reported is in the store, few duplicates, right outputs, one
/// ref per shard.
fn eight_runners_drain(host: Host, n: usize) {
    const K: usize = 8;
    let pool = GitPool::on_host(host, "drain");
    if host == Host::GitHub {
        // Under a push budget a runner whose shard is done waits a grace
        // (default: a quarter of the time its shard took, at least 5 s)
        // for the others' results to land with their one push, then takes
        // over the shards that show no runner; and a shard's claims are not
        // pushed, so a live runner that has not pushed yet shows none. The
        // default grace fits runners started together; eight `bridge`
        // processes sharing two cores with the rest of the suite start
        // seconds apart. With every runner present a longer grace costs
        // nothing: a runner stops as soon as the others' results land.
        pool.admin.set_worker_settings("steal-grace = \"60s\"\n");
    }
    let sub = pool.submit_yaml(&matrix_yaml(
        "t",
        n,
        "echo \"$N\" > out.txt",
        "    outputs: [out.txt]\n",
    ));
    assert_eq!(sub["new"], n, "{sub}");
    let secret = pool.add_runner("ci");

    let started = Instant::now();
    let runners: Vec<Device> = (0..K)
        .map(|i| pool.runner(&format!("drain-r{i}"), &secret))
        .collect();
    let procs: Vec<Spawned> = runners
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let args = run_args(Some(&format!("{i}/{K}")), 2, true);
            r.spawn("run", &strs(&args))
        })
        .collect();
    let mut reported_done = 0;
    for (i, p) in procs.into_iter().enumerate() {
        let run = wait_exit(p, Duration::from_secs(300)).expect_code(0);
        let report = run.json();
        for key in ["done", "failed", "interrupted", "left", "pushes"] {
            assert!(
                report[key].is_u64(),
                "report of runner {i} lacks {key}: {report}"
            );
        }
        assert_eq!(report["failed"], 0, "runner {i}: {report}");
        eprintln!("runner {i}: {report}");
        reported_done += report["done"].as_u64().expect("done");
    }
    eprintln!(
        "{K} runners drained {n} tasks in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let st = pool.synced_status();
    assert_eq!((st.tasks, st.count("done")), (n as u64, n as u64), "{st:?}");

    // Successes per task: one attempt of a done task is its success; look
    // closer only where there are more.
    let tasks = pool.admin.ls();
    let mut successes = 0u64;
    for t in &tasks {
        assert_eq!(t.status, "done", "{t:?}");
        if t.attempts == 1 {
            successes += 1;
            continue;
        }
        let all = attempts(&pool.admin, &t.id);
        let ok = all.iter().filter(|(o, _)| o == "success").count() as u64;
        assert!(ok >= 1, "{t:?}: {all:?}");
        successes += ok;
    }
    let duplicates = successes - n as u64;
    eprintln!("{K} runners ran {n} tasks with {duplicates} duplicate runs");
    assert!(
        duplicates * 20 < n as u64,
        "{duplicates} duplicate runs of {n} tasks"
    );
    assert_eq!(
        reported_done, successes,
        "every success a runner reported landed in the store"
    );

    // Outputs hold their own task's matrix value. Each `bridge outputs`
    // loads the whole 400-task store (about 90 ms in a debug build, 36 s of
    // CPU for all 400), so it checks every OUTPUT_SAMPLE-th task and every
    // task that ran more than once, on two threads.
    let checked: Vec<&Task> = tasks
        .iter()
        .filter(|t| {
            t.attempts > 1
                || matrix_value(&t.name)
                    .parse::<usize>()
                    .is_ok_and(|v| v % OUTPUT_SAMPLE == 0)
        })
        .collect();
    let outs = pool.admin.scratch("outputs");
    let check_started = Instant::now();
    std::thread::scope(|s| {
        for half in checked.chunks(checked.len().div_ceil(2)) {
            let (admin, outs) = (&pool.admin, &outs);
            s.spawn(move || {
                for t in half {
                    let to = outs.join(&t.id);
                    admin.ok(&["outputs", &t.id, "--to", &to.display().to_string()]);
                    let text = fs::read_to_string(to.join("out.txt"))
                        .unwrap_or_else(|e| panic!("no out.txt for {}: {e}", t.name));
                    assert_eq!(text, format!("{}\n", matrix_value(&t.name)), "{t:?}");
                }
            });
        }
    });
    eprintln!(
        "checked {} outputs in {:.1}s",
        checked.len(),
        check_started.elapsed().as_secs_f64()
    );
    assert!(checked.len() >= n / OUTPUT_SAMPLE);

    // One ref per runner shard, plus the admin's.
    let mut expected: BTreeSet<String> = (0..K).map(|i| format!("refs/bridge/ci-{i}")).collect();
    expected.insert("refs/bridge/drain-admin".to_owned());
    if host != Host::S3 {
        assert_eq!(pool.refs(), expected);
    }
    pool.check_within_github(6);
}

#[test]
fn a_killed_runner_loses_nothing_and_another_finishes_its_tasks() {
    a_killed_runner_loses_nothing(Host::Local);
}

/// SIGKILL: a runner dies after a push; what it pushed stays, its claims
/// run out, and a second runner does the rest (each task once).
///
/// Under a push budget (the GitHub-shaped server) the same holds, and the
/// second runner gets the dead runner's tasks the way the README says: the
/// first runner's claims reach the remote only with a push of its results
/// (they are not pushed on their own), its lease is three of its push
/// intervals, and the second runner, its own shard done, waits
/// `steal-grace` and then takes over the shard that shows no runner (no
/// live claim, tasks pending).
fn a_killed_runner_loses_nothing(host: Host) {
    const N: usize = 8;
    let pool = GitPool::on_host(host, "kill");
    pool.admin.set_lease("2s", "1s");
    let pushes_per_minute = fast_budget_on_github(&pool);
    let sub = pool.submit_yaml(&matrix_yaml("s", N, "sleep 2", ""));
    assert_eq!(sub["new"], N, "{sub}");
    let secret = pool.add_runner("ci");

    let a = pool.runner("kill-a", &secret);
    // On GitHub its results land once per push interval (about 2 s here),
    // a few seconds after they are made: one task at a time gives 8 s of
    // work, so that a push of a result and of the claims of the others
    // comes while it still holds them.
    let a_parallel = match host {
        Host::Local | Host::S3 => 2,
        Host::GitHub => 1,
    };
    let proc_a = a.spawn("run", &strs(&run_args(Some("0/2"), a_parallel, true)));
    poll_for(
        "a first result at the admin while the runner holds more",
        Duration::from_secs(60),
        pool.poll_every(),
        || {
            let st = pool.synced_status();
            st.count("done") >= 1 && st.count("running") >= 1
        },
    );
    let killed = proc_a.kill();
    assert_eq!(killed.code, 128 + 9, "SIGKILL: {killed:?}");

    // Its claims are honoured until the lease (and the clock-skew margin)
    // runs out; then its tasks are pending again.
    poll_for(
        "the dead runner's claims to expire",
        Duration::from_secs(30),
        pool.poll_every(),
        || pool.synced_status().count("running") == 0,
    );
    let before = pool.admin.ls();
    let done_before: BTreeSet<String> = before
        .iter()
        .filter(|t| t.status == "done")
        .map(|t| t.id.clone())
        .collect();
    let st = pool.admin.status();
    assert_eq!(
        st.count("pending"),
        (N - done_before.len()) as u64,
        "{st:?}"
    );
    // The results it pushed are in the store, all its own.
    assert!(!done_before.is_empty());
    let mut writer = None;
    for id in &done_before {
        let show = pool.admin.show(id);
        let all = show["attempts"].as_array().expect("attempts");
        assert_eq!(all.len(), 1, "{show}");
        assert_eq!(all[0]["outcome"], "success", "{show}");
        assert_eq!(all[0]["device"], "kill-a", "{show}");
        let key = str_field(&all[0], "key");
        writer = Some(key.rsplit_once('.').expect("a fact key").0.to_owned());
    }
    // The tasks it held: claimed by its process, without an attempt.
    let writer = writer.expect("the killed runner's writer id");
    let held: BTreeSet<String> = before
        .iter()
        .filter(|t| t.status == "pending")
        .filter(|t| {
            let show = pool.admin.show(&t.id);
            show["claims"]
                .as_array()
                .expect("claims")
                .iter()
                .any(|c| str_field(c, "key").starts_with(&format!("{writer}.")))
        })
        .map(|t| t.id.clone())
        .collect();
    eprintln!(
        "killed runner: {} results pushed, {} tasks held",
        done_before.len(),
        held.len()
    );
    assert!(!held.is_empty(), "the killed runner held tasks: {before:?}");

    let b = pool.runner("kill-b", &secret);
    let report = b.ok(&strs(&run_args(Some("1/2"), 4, true))).json();
    eprintln!("second runner: {report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["left"], 0, "{report}");

    let st = pool.synced_status();
    assert_eq!((st.tasks, st.count("done")), (N as u64, N as u64), "{st:?}");
    for t in pool.admin.ls() {
        let all = attempts(&pool.admin, &t.id);
        // A pushed result is not run again; every other task, the held
        // ones included, is done once by the second runner.
        let by = if done_before.contains(&t.id) {
            "kill-a"
        } else {
            "kill-b"
        };
        assert_eq!(
            all,
            [("success".to_owned(), by.to_owned())],
            "{t:?} (held: {})",
            held.contains(&t.id)
        );
    }
    pool.check_within_github(pushes_per_minute);
}

#[test]
fn sigterm_interrupts_the_running_task_and_pushes_the_attempt() {
    sigterm_interrupts_and_pushes(Host::Local);
}

/// SIGTERM: the running task is interrupted and its attempt pushed at
/// once, exit code 130. Under a push budget too: the last push of a run
/// goes whatever the pacer says.
fn sigterm_interrupts_and_pushes(host: Host) {
    let pool = GitPool::on_host(host, "term");
    // The task's `sleep`, found on the host by its command line (a task
    // can write nothing outside its folder, issue 13); the host's tag tells
    // it from the other variant's, which may run at the same time in this
    // process.
    let marker = format!("60.{}{}3", std::process::id(), host.tag());
    let sub = pool.submit_yaml(&format!(
        "tasks:\n  - name: long\n    run: exec sleep {marker}\n"
    ));
    assert_eq!(sub["new"], 1, "{sub}");
    let secret = pool.add_runner("ci");
    let r = pool.runner("term-r", &secret);
    let proc = r.spawn("run", &strs(&run_args(None, 1, true)));
    poll_for(
        "the task to start",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || sleeping(&marker),
    );

    let signalled = Instant::now();
    proc.terminate();
    let run = wait_exit(proc, Duration::from_secs(60));
    eprintln!(
        "the runner exited {:.2}s after SIGTERM",
        signalled.elapsed().as_secs_f64()
    );
    let run = run.expect_code(130);
    let report = run.json();
    assert_eq!(report["interrupted"], 1, "{report}");
    assert_eq!(report["done"], 0, "{report}");

    pool.admin.ok(&["sync"]);
    let all = attempts(&pool.admin, "long");
    assert_eq!(
        all,
        [("interrupted".to_owned(), "term-r".to_owned())],
        "the interrupted attempt was pushed"
    );
    assert_eq!(pool.admin.task("long").status, "pending");
    pool.check_within_github(6);
}

#[test]
fn an_offline_laptop_converges_with_runners_and_the_admin() {
    an_offline_laptop_converges(Host::Local);
}

/// A laptop submits and works offline, comes back while two runners work,
/// and everyone ends with the same store.
fn an_offline_laptop_converges(host: Host) {
    const N: usize = 8;
    let pool = GitPool::on_host(host, "laptop");
    let release = pool.shared("release");
    // The runners' tasks wait for a file, so the runners are surely still
    // at work while the laptop syncs. Their `sleep` (about 0.1 s) carries
    // a marker, to be found on the host.
    let waiting = format!("0.1{}{}", std::process::id(), host.tag());
    let gate = format!(
        "i=0; while [ ! -e {} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep {waiting}; done; echo \"$N\"",
        release.display()
    );
    let sub = pool.submit_yaml(&matrix_yaml("g", N, &gate, "    runs-on: [runner]\n"));
    assert_eq!(sub["new"], N, "{sub}");

    let laptop = pool.device("laptop");
    laptop.join_as(&pool.admin, &pool.remote, "submit");
    assert_eq!(laptop.status().tasks, N as u64);

    let secret = pool.add_runner("ci");
    let runners: Vec<Device> = (0..2)
        .map(|i| pool.runner(&format!("laptop-r{i}"), &secret))
        .collect();
    let mut procs: Vec<Spawned> = runners
        .iter()
        .enumerate()
        .map(|(i, r)| r.spawn("run", &strs(&run_args(Some(&format!("{i}/2")), 2, true))))
        .collect();

    // The laptop submits and works its own tasks without a network.
    laptop.write("mine.yaml", &matrix_yaml("l", 5, "echo \"laptop $N\"", ""));
    let mine = laptop
        .ok(&["submit", "--offline", "--json", "mine.yaml"])
        .json();
    assert_eq!(mine["new"], 5, "{mine}");
    let worked = laptop.ok(&["work", "--offline", "--parallel", "2"]);
    assert!(
        worked.stderr.contains("5 done, 0 failed"),
        "{}",
        worked.stderr
    );
    let st = laptop.status();
    assert_eq!(
        (st.count("done"), st.count("pending")),
        (5, N as u64),
        "{st:?}"
    );

    // It comes back while the runners are at work.
    match host {
        Host::Local | Host::S3 => poll_for(
            "the runners to pick tasks up",
            Duration::from_secs(60),
            pool.poll_every(),
            || pool.synced_status().count("running") > 0,
        ),
        // Under a push budget a runner does not push the claims on its own
        // shard (shards are disjoint), and its first push in the middle of
        // a run comes after two push intervals (24 s for two runners at
        // GitHub's 6 a minute): the admin cannot see them at work yet. The
        // host can.
        Host::GitHub => poll_for(
            "the runners to start their tasks",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || sleeping(&waiting),
        ),
    }
    assert!(procs.iter_mut().all(Spawned::is_running));
    laptop.ok(&["sync"]);
    pool.admin.ok(&["sync"]);
    laptop.ok(&["sync"]);
    assert!(procs.iter_mut().all(Spawned::is_running));

    fs::write(&release, "").expect("cannot write the release file");
    for p in procs {
        let report = wait_exit(p, Duration::from_secs(120)).expect_code(0).json();
        eprintln!("runner: {report}");
        assert_eq!(report["failed"], 0, "{report}");
    }

    let agreed = crate::harness::sync_until_equal(&pool.admin, &laptop, 4);
    assert_eq!(agreed.len(), N + 5);
    assert!(agreed.iter().all(|t| t.status == "done"), "{agreed:?}");
    let fresh = pool.runner("laptop-fresh", &secret);
    fresh.ok(&["sync"]);
    let (sa, sl, sf) = (pool.admin.status(), laptop.status(), fresh.status());
    assert_eq!(sa.counts, sl.counts);
    assert_eq!(sa.counts, sf.counts);
    assert_eq!(sa.count("done"), (N + 5) as u64, "{sa:?}");
    let (la, ll, lf) = (statuses(&pool.admin), statuses(&laptop), statuses(&fresh));
    assert_eq!(la, ll);
    assert_eq!(la, lf);
    assert_eq!(pool.admin.ls(), fresh.ls(), "the same attempts everywhere");
    pool.check_within_github(6);
}

#[test]
fn a_runner_keeps_its_results_when_the_remote_goes_away() {
    a_runner_keeps_its_results_without_its_remote(Host::Local);
}

/// The repository disappears in the middle of a run (on the GitHub-shaped
/// server: `repository not found`, as for a deleted repository): the runner
/// finishes, keeps its results, says they did not reach the remote, and a
/// later sync lands them.
fn a_runner_keeps_its_results_without_its_remote(host: Host) {
    // On GitHub the first result reaches the admin a few seconds into the
    // run (a push interval, an admin sync a second): more work, so that
    // the repository still goes away in the middle of the run.
    let n: usize = match host {
        Host::Local | Host::S3 => 6,
        Host::GitHub => 10,
    };
    let pool = GitPool::on_host(host, "gone");
    let pushes_per_minute = fast_budget_on_github(&pool);
    let sub = pool.submit_yaml(&matrix_yaml("s", n, "sleep 1", ""));
    assert_eq!(sub["new"], n, "{sub}");
    let secret = pool.add_runner("ci");
    let r = pool.runner("gone-r", &secret);
    let proc = r.spawn("run", &strs(&run_args(None, 1, true)));

    poll_for(
        "a first result at the admin",
        Duration::from_secs(60),
        pool.poll_every(),
        || pool.synced_status().count("done") >= 1,
    );
    let ls_tree = git(&[
        "--git-dir",
        &pool.bare.path().display().to_string(),
        "ls-tree",
        "-r",
        "--name-only",
        "refs/bridge/ci",
    ]);
    assert!(ls_tree.contains("chunks/"), "{ls_tree}");
    let moved = pool.shared("moved.git");
    fs::rename(pool.bare.path(), &moved).expect("cannot move the bare repository away");

    let run = wait_exit(proc, Duration::from_secs(120));
    let run = run.expect_code(0);
    let report = run.json();
    eprintln!("runner without its remote: {report}");
    assert_eq!(report["done"], n, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["left"], 0, "{report}");
    assert!(report["pushes"].is_u64(), "{report}");
    assert!(
        run.stderr.contains("did not reach the remote"),
        "{}",
        run.stderr
    );
    let mine = r.status();
    assert_eq!(mine.count("done"), n as u64, "{mine:?}");

    fs::rename(&moved, pool.bare.path()).expect("cannot move the bare repository back");
    r.ok(&["sync"]);
    let st = pool.synced_status();
    assert_eq!((st.tasks, st.count("done")), (n as u64, n as u64), "{st:?}");
    for t in pool.admin.ls() {
        assert_eq!(
            attempts(&pool.admin, &t.id),
            [("success".to_owned(), "gone-r".to_owned())]
        );
    }
    pool.check_within_github(pushes_per_minute);
}

/// BUG: a runner whose background push is under way when the repository
/// disappears never ends. `Publisher::record` (crates/engine/src/publish.rs)
/// restarts a failed push at once unless the error is
/// `RemoteError::Unreachable`; a missing repository is `RepoNotFound` (as are
/// an unexported or deleted one; `AuthRefused` and `Git` errors behave the
/// same), so every failure starts the next push and `Publisher::settle`
/// (`while self.in_flight.is_some()`) never returns. `settle` runs first in
/// `Publisher::sync`, which the worker calls at every claim window
/// (crates/engine/src/worker/steps.rs), so the runner spins on `git push`, starts
/// no other task, and ignores the deadline and the first SIGTERM (neither is
/// looked at inside `settle`). With `--parallel 1` and one-second tasks the
/// results only travel with the claim-window syncs and no push is under way,
/// which is why the test above passes.
#[test]
fn a_runner_with_a_push_under_way_survives_the_repository_going_away() {
    a_push_under_way_survives_the_repository_going_away(Host::Local);
}

/// The repository disappears while a background push is under way; the
/// runner still ends (see the bug above), with its results kept.
fn a_push_under_way_survives_the_repository_going_away(host: Host) {
    const N: usize = 12;
    let pool = GitPool::on_host(host, "vanish");
    // Pushes in the middle of the run, about a second apart, so that one is
    // under way when the repository goes.
    let pushes_per_minute = fast_budget_on_github(&pool);
    let sub = pool.submit_yaml(&matrix_yaml("s", N, "sleep 1", ""));
    assert_eq!(sub["new"], N, "{sub}");
    let secret = pool.add_runner("ci");
    let r = pool.runner("vanish-r", &secret);
    let mut proc = r.spawn("run", &strs(&run_args(None, 2, true)));
    poll_for(
        "a first result at the admin",
        Duration::from_secs(60),
        pool.poll_every(),
        || pool.synced_status().count("done") >= 1,
    );
    let moved = pool.shared("moved.git");
    fs::rename(pool.bare.path(), &moved).expect("cannot move the bare repository away");

    // About 6 s of work is left; give it far more.
    let limit = Duration::from_secs(25);
    let waited = Instant::now();
    while proc.is_running() && waited.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
    if proc.is_running() {
        proc.terminate();
        let signalled = Instant::now();
        while proc.is_running() && signalled.elapsed() < Duration::from_secs(8) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let after_term = if proc.is_running() {
            "ignored SIGTERM for 8 s (killed)"
        } else {
            "exited after SIGTERM"
        };
        let run = if proc.is_running() {
            proc.kill()
        } else {
            proc.wait()
        };
        panic!(
            "the runner was still running {limit:?} after the repository went away, with {} of {N} tasks finished; it then {after_term}\n--- stderr\n{}",
            run.stderr.matches('✓').count(),
            run.stderr
        );
    }
    let run = proc.wait().expect_code(0);
    let report = run.json();
    eprintln!("runner without its repository: {report}");
    assert_eq!(report["done"], N, "{report}");
    assert_eq!(report["left"], 0, "{report}");
    assert_eq!(r.status().count("done"), N as u64);
    fs::rename(&moved, pool.bare.path()).expect("cannot move the bare repository back");
    r.ok(&["sync"]);
    assert_eq!(pool.synced_status().count("done"), N as u64);
    pool.check_within_github(pushes_per_minute);
}

#[test]
fn a_runner_keeps_its_results_when_the_git_daemon_dies() {
    results_outlive_the_server(Host::Local);
}

/// The server dies in the middle of a run (a `git daemon` killed, the
/// GitHub-shaped server stopped: connections refused): the runner finishes
/// offline, keeps its results, says they did not reach the remote, and a
/// sync once a server is back on the same port lands them.
fn results_outlive_the_server(host: Host) {
    // On GitHub the first result reaches the admin a few seconds into the
    // run (a push interval, an admin sync a second): more work, so that
    // the server still dies in the middle of the run.
    let n: usize = match host {
        Host::Local | Host::S3 => 12,
        Host::GitHub => 20,
    };
    let (mut pool, daemon) = match host {
        Host::Local => {
            let tmp = temp_dir("dies-pool");
            let bare = served_bare_repo(tmp.path());
            let daemon = Daemon::start(tmp.path());
            let remote = format!("git:{}", daemon.url("store.git"));
            (GitPool::on(tmp, bare, remote, "dies"), Some(daemon))
        }
        Host::GitHub => (GitPool::github("dies"), None),
        Host::S3 => (GitPool::s3("dies"), None),
    };
    // The server dies after a result landed mid-run: results pushed as
    // they land, not paced by a host's push budget (see crate::budget); on
    // the GitHub-shaped server with a budget still (see
    // FAST_PUSHES_PER_MINUTE).
    let pushes_per_minute = match host {
        Host::Local | Host::S3 => {
            pool.admin.set_store_settings("pushes-per-minute = 0\n");
            6
        }
        Host::GitHub => fast_budget_on_github(&pool),
    };
    let sub = pool.submit_yaml(&matrix_yaml("s", n, "sleep 1", ""));
    assert_eq!(sub["new"], n, "{sub}");
    let secret = pool.add_runner("ci");
    let r = pool.runner("dies-r", &secret);
    let proc = r.spawn("run", &strs(&run_args(None, 2, true)));
    poll_for(
        "a first result at the admin",
        Duration::from_secs(60),
        pool.poll_every(),
        || pool.synced_status().count("done") >= 1,
    );
    let port = match (daemon, host) {
        (Some(daemon), _) => {
            let port = daemon.port();
            daemon.stop();
            Some(port)
        }
        (None, Host::S3) => {
            pool.s3_server().stop();
            None
        }
        (None, _) => {
            pool.server().stop();
            None
        }
    };

    let run = wait_exit(proc, Duration::from_secs(60)).expect_code(0);
    let report = run.json();
    eprintln!("runner without its server: {report}");
    assert_eq!(report["done"], n, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["left"], 0, "{report}");
    assert!(
        run.stderr.contains("did not reach the remote"),
        "{}",
        run.stderr
    );
    assert_eq!(r.status().count("done"), n as u64);

    // The S3 server back on its port, over the data it kept.
    let mut s3_again = None;
    let daemon = match port {
        Some(port) => Some(Daemon::on_port(pool.tmp.path(), port)),
        None if host == Host::S3 => {
            let stopped = pool.s3_server();
            s3_again = Some(S3Server::on_port(stopped.data(), stopped.port()));
            None
        }
        None => {
            pool.server().restart();
            None
        }
    };
    r.ok(&["sync"]);
    let st = pool.synced_status();
    assert_eq!((st.tasks, st.count("done")), (n as u64, n as u64), "{st:?}");
    if let Some(daemon) = daemon {
        daemon.stop();
    }
    drop(s3_again);
    pool.check_within_github(pushes_per_minute);
}

#[test]
fn github_conventions() {
    // The remote as a file:// URL this time.
    let pool = GitPool::with_url("gh", |bare| format!("file://{}", bare.display()));
    let sub = pool.submit_yaml(
        "tasks:\n  - name: ok\n    run: echo hello\n  - name: bad\n    run: echo oops >&2; exit 3\n",
    );
    assert_eq!(sub["new"], 2, "{sub}");
    let secret = pool.add_runner("ci");
    let r = pool.runner("gh-r", &secret);
    let output = r.scratch("github_output");
    let summary = r.scratch("github_summary");
    let (output_s, summary_s) = (output.display().to_string(), summary.display().to_string());
    let run = r
        .run_env(
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_OUTPUT", &output_s),
                ("GITHUB_STEP_SUMMARY", &summary_s),
                ("GITHUB_RUN_ID", "123"),
                ("GITHUB_SERVER_URL", "https://github.example"),
                ("GITHUB_REPOSITORY", "o/r"),
                ("GITHUB_SHA", "abc"),
                ("RUNNER_OS", "Linux"),
                ("RUNNER_ARCH", "X64"),
            ],
            &strs(&run_args(Some("0/1"), 2, false)),
        )
        .expect_code(0);
    eprintln!("{}", run.stdout);

    let first = run.stdout.lines().next().unwrap_or_default();
    assert_eq!(first, format!("::add-mask::{secret}"));
    // The header's group (issue 16), then one group per task.
    assert_eq!(run.stdout.matches("::group::").count(), 3, "{}", run.stdout);
    assert_eq!(
        run.stdout.matches("::group::bridge ").count(),
        1,
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.matches("::endgroup::").count(),
        3,
        "{}",
        run.stdout
    );
    let errors: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("::error title="))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stdout);
    assert!(errors[0].contains("bad"), "{}", errors[0]);
    // Groups open and close in turn.
    let mut open = false;
    for l in run.stdout.lines() {
        if l.starts_with("::group::") {
            assert!(!open, "nested group: {}", run.stdout);
            open = true;
        } else if l == "::endgroup::" {
            assert!(open, "unopened group: {}", run.stdout);
            open = false;
        }
    }
    assert!(!open);

    let out = fs::read_to_string(&output).expect("no GITHUB_OUTPUT file");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"tasks-done=1"), "{out}");
    assert!(lines.contains(&"tasks-failed=1"), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("tasks-left=")), "{out}");

    let md = fs::read_to_string(&summary).expect("no GITHUB_STEP_SUMMARY file");
    assert!(md.contains("| task | id | outcome |"), "{md}");
    assert!(md.lines().any(|l| l.starts_with("| ok | ")), "{md}");
    assert!(md.lines().any(|l| l.starts_with("| bad | ")), "{md}");

    pool.admin.ok(&["sync"]);
    let show = pool.admin.show("ok");
    let attempts = show["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{show}");
    let p = &attempts[0]["provenance"];
    assert_eq!(p["ci_run_id"], "123", "{show}");
    assert_eq!(
        p["ci_run_url"], "https://github.example/o/r/actions/runs/123",
        "{show}"
    );
    assert_eq!(p["commit"], "abc", "{show}");
    assert_eq!(p["runner_os"], "Linux", "{show}");
    assert_eq!(pool.admin.task("bad").status, "failed");
}

#[test]
fn nothing_runnable_exits_at_once() {
    let pool = GitPool::new("idle");
    let sub = pool.submit_yaml(&matrix_yaml("e", 2, "echo \"$N\"", ""));
    assert_eq!(sub["new"], 2, "{sub}");
    pool.admin.ok(&["work"]);
    let st = pool.synced_status();
    assert_eq!(st.count("done"), 2, "{st:?}");
    let secret = pool.add_runner("ci");
    let r = pool.runner("idle-r", &secret);
    let started = Instant::now();
    let report = r.ok(&strs(&run_args(Some("0/1"), 2, true))).json();
    eprintln!(
        "a runner with nothing to do took {:.2}s: {report}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(report["done"], 0, "{report}");
    assert_eq!(report["left"], 0, "{report}");
}

/// A bare `store.git` in `dir` that `git daemon` accepts pushes to.
fn served_bare_repo(dir: &Path) -> Bare {
    Bare::served(&dir.join("store.git"))
}

#[test]
fn runners_over_git_daemon() {
    const N: usize = 20;
    let tmp = temp_dir("daemon-pool");
    let bare = served_bare_repo(tmp.path());
    let daemon = Daemon::start(tmp.path());
    let remote = format!("git:{}", daemon.url("store.git"));
    let pool = GitPool::on(tmp, bare, remote, "daemon");
    let sub = pool.submit_yaml(&matrix_yaml("d", N, "echo \"$N\"", ""));
    assert_eq!(sub["new"], N, "{sub}");
    let secret = pool.add_runner("ci");
    let runners: Vec<Device> = (0..2)
        .map(|i| pool.runner(&format!("daemon-r{i}"), &secret))
        .collect();
    let procs: Vec<Spawned> = runners
        .iter()
        .enumerate()
        .map(|(i, r)| r.spawn("run", &strs(&run_args(Some(&format!("{i}/2")), 2, true))))
        .collect();
    for p in procs {
        let report = wait_exit(p, Duration::from_secs(120)).expect_code(0).json();
        eprintln!("runner over git daemon: {report}");
        assert_eq!(report["failed"], 0, "{report}");
    }
    let st = pool.synced_status();
    assert_eq!((st.tasks, st.count("done")), (N as u64, N as u64), "{st:?}");
    let refs = pool.refs();
    for slot in ["ci-0", "ci-1", "daemon-admin"] {
        assert!(refs.contains(&format!("refs/bridge/{slot}")), "{refs:?}");
    }
    daemon.stop();
}

/// The same ordeals on the GitHub-shaped server, with bridge's push budget
/// on; each test ends by checking what the server counted against GitHub's
/// recommendations.
mod on_github {
    use super::*;

    #[test]
    fn eight_runners_drain_a_git_pool() {
        // Fewer tasks than on a local repository: the server's https and
        // `git http-backend` share the machine's cores with the runners.
        eight_runners_drain(Host::GitHub, 160);
    }

    #[test]
    fn a_killed_runner_loses_nothing_and_another_finishes_its_tasks() {
        a_killed_runner_loses_nothing(Host::GitHub);
    }

    #[test]
    fn sigterm_interrupts_the_running_task_and_pushes_the_attempt() {
        sigterm_interrupts_and_pushes(Host::GitHub);
    }

    #[test]
    fn an_offline_laptop_converges_with_runners_and_the_admin() {
        an_offline_laptop_converges(Host::GitHub);
    }

    #[test]
    fn a_runner_keeps_its_results_when_the_remote_goes_away() {
        a_runner_keeps_its_results_without_its_remote(Host::GitHub);
    }

    #[test]
    fn a_runner_with_a_push_under_way_survives_the_repository_going_away() {
        a_push_under_way_survives_the_repository_going_away(Host::GitHub);
    }

    #[test]
    fn a_runner_keeps_its_results_when_the_server_dies() {
        results_outlive_the_server(Host::GitHub);
    }
}

/// The same ordeals over an `s3:` remote on a real S3 server on 127.0.0.1
/// (issue 19, item 3): the runners' sync, claims and results need nothing
/// of git.
mod on_s3 {
    use super::*;

    #[test]
    fn eight_runners_drain_an_s3_pool() {
        // Fewer tasks than on a local repository: the server shares the
        // machine's cores with the runners.
        eight_runners_drain(Host::S3, 160);
    }

    #[test]
    fn a_killed_runner_loses_nothing_and_another_finishes_its_tasks() {
        a_killed_runner_loses_nothing(Host::S3);
    }

    #[test]
    fn sigterm_interrupts_the_running_task_and_pushes_the_attempt() {
        sigterm_interrupts_and_pushes(Host::S3);
    }

    #[test]
    fn an_offline_laptop_converges_with_runners_and_the_admin() {
        an_offline_laptop_converges(Host::S3);
    }

    /// The fault test: the S3 server is stopped mid-run; the runner
    /// finishes offline, keeps its results, and a sync once the server is
    /// back delivers every one of them.
    #[test]
    fn a_runner_keeps_its_results_when_the_s3_server_stops() {
        results_outlive_the_server(Host::S3);
    }
}
