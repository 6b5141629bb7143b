//! The real `bridge` against the GitHub-shaped git server of
//! bridge-testutil (https on 127.0.0.1, a token, GitHub's limits): the
//! token reaches it the way bridge sends it, and a small pool stays within
//! GitHub's recommendations.

use std::fs;

use bridge_testutil::github_git::{GitHubGit, Recommendations};

use crate::harness::Device;

/// A device that uses `server` (token, auth host, certificate).
fn device(name: &str, server: &GitHubGit) -> Device {
    let mut d = Device::new(name);
    for (key, value) in server.bridge_env() {
        d.set_env(&key, &value);
    }
    d
}

#[test]
fn a_pool_on_the_github_shaped_server_stays_within_the_recommendations() {
    const N: usize = 4;
    let server = GitHubGit::start();
    let url = server.create_repo("octo/pool");
    let remote = format!("git:{url}");
    let admin = device("ghs-admin", &server);
    admin.ok(&["init", "--remote", &remote]);
    let tasks: String = (0..N)
        .map(|i| format!("  - name: t{i}\n    run: echo out {i}\n"))
        .collect();
    admin.write("tasks.yaml", &format!("tasks:\n{tasks}"));
    let sub = admin.ok(&["submit", "--json", "tasks.yaml"]).json();
    assert_eq!(sub["new"], N, "{sub}");
    let secret = admin
        .ok(&["members", "add-runner", "ci"])
        .stdout
        .trim()
        .to_owned();

    let mut runner = device("ghs-runner", &server);
    fs::copy(admin.path("bridge.toml"), runner.path("bridge.toml"))
        .expect("cannot copy bridge.toml");
    runner.set_env("BRIDGE_IDENTITY", &secret);
    let run = runner
        .ok(&["run", "--budget", "5m", "--parallel", "2", "--json"])
        .json();
    assert_eq!(
        (run["done"].as_u64(), run["left"].as_u64()),
        (Some(N as u64), Some(0)),
        "{run}"
    );
    admin.ok(&["sync"]);
    assert_eq!(admin.status().count("done"), N as u64);

    let report = server.report();
    eprintln!("{report}");
    let repo = report.repo("octo/pool").expect("the repository was used");
    assert!(
        repo.pushes.len() >= 3,
        "init, submit and results pushed: {report}"
    );
    assert!(repo.reads >= 1, "{report}");
    assert_eq!(
        repo.unauthorized, 0,
        "every request carried the token: {report}"
    );
    assert!(repo.refs >= 1, "{report}");
    if let Err(violations) = report.check(&Recommendations::github()) {
        panic!("{violations}\n{report}");
    }
}

#[test]
fn without_the_token_the_server_refuses_bridge() {
    let server = GitHubGit::start();
    let url = server.create_repo("octo/pool");
    let mut admin = device("ghs-notoken", &server);
    admin.set_env("GITHUB_TOKEN", "");
    let init = admin.run(&["init", "--remote", &format!("git:{url}")]);
    assert_ne!(init.code, 0, "{init:?}");
    assert!(
        init.stderr.contains("refused the credentials"),
        "{}",
        init.stderr
    );
    let report = server.report();
    let repo = report.repo("octo/pool").expect("the repository was asked");
    assert!(repo.unauthorized >= 1, "{report}");
    assert!(repo.pushes.is_empty(), "{report}");
}

/// Issue 15, item 2: under a push budget, each runner of a fleet pushes its
/// results once, at its end (a push in the middle of a run waits for its
/// share of the repository's budget; claims on its own shard are never
/// pushed), reads the remote instead, and reports both. The budget here is
/// so small that no share comes due during the test: the counts are exact,
/// whatever the machine's speed.
#[test]
fn under_a_push_budget_each_runner_pushes_once_and_says_what_it_did() {
    const N: usize = 9;
    const K: usize = 3;
    let server = GitHubGit::start();
    let url = server.create_repo("octo/budget");
    let admin = device("ghb-admin", &server);
    admin.ok(&["init", "--remote", &format!("git:{url}")]);
    // One push every 50 minutes for each of three runners; a runner whose
    // shard is done waits a minute for the others before it takes over a
    // shard that shows no runner (all three start together here).
    admin.set_store_settings("pushes-per-minute = 0.08\n");
    admin.set_worker_settings("steal-grace = \"60s\"\n");
    let tasks: String = (0..N)
        .map(|i| format!("  - name: t{i}\n    run: echo out {i}\n"))
        .collect();
    admin.write("tasks.yaml", &format!("tasks:\n{tasks}"));
    admin.ok(&["submit", "tasks.yaml"]);
    let secret = admin
        .ok(&["members", "add-runner", "ci"])
        .stdout
        .trim()
        .to_owned();
    let before = server.report();
    let pushes_before = before.repo("octo/budget").map_or(0, |r| r.pushes.len());

    let runners: Vec<_> = (0..K)
        .map(|shard| {
            let mut runner = device(&format!("ghb-runner-{shard}"), &server);
            fs::copy(admin.path("bridge.toml"), runner.path("bridge.toml"))
                .expect("cannot copy bridge.toml");
            runner.set_env("BRIDGE_IDENTITY", &secret);
            let shard_arg = format!("{shard}/{K}");
            let args = ["run", "--budget", "5m", "--shard", &shard_arg, "--json"];
            let process = runner.spawn("run", &args);
            (runner, process)
        })
        .collect();
    let mut done = 0;
    for (_runner, process) in runners {
        let run = process.wait().expect_code(0).json();
        // One push (the last) and at least one read; nothing left undone
        // of its own shard.
        assert_eq!(run["pushes"], 1, "{run}");
        assert!(run["fetches"].as_u64().is_some_and(|f| f >= 1), "{run}");
        done += run["done"].as_u64().expect("a count");
    }
    assert_eq!(done, N as u64);
    admin.ok(&["sync"]);
    assert_eq!(admin.status().count("done"), N as u64);

    let report = server.report();
    let repo = report.repo("octo/budget").expect("the repository was used");
    // The runners' pushes, as the server counted them: one each.
    assert_eq!(repo.pushes.len() - pushes_before, K, "{report}");
    if let Err(violations) = report.check(&Recommendations::github()) {
        panic!("{violations}\n{report}");
    }
}

/// Issue 15, item 2: a device's `bridge work` with a hosted remote keeps to
/// the share kept for devices (a push a minute): its claims and results do
/// not go every few seconds, they go with the sync at its end. Unpaced, a
/// run of a few seconds pushes its claims and results several times.
#[test]
fn a_device_working_against_a_hosted_remote_pushes_at_its_end() {
    const N: usize = 12;
    let server = GitHubGit::start();
    let url = server.create_repo("octo/device");
    let admin = device("ghd-admin", &server);
    admin.ok(&["init", "--remote", &format!("git:{url}")]);
    let tasks: String = (0..N)
        .map(|i| format!("  - name: t{i}\n    run: sleep 0.3; echo {i}\n"))
        .collect();
    admin.write("tasks.yaml", &format!("tasks:\n{tasks}"));
    admin.ok(&["submit", "tasks.yaml"]);
    let pushes = || {
        server
            .report()
            .repo("octo/device")
            .map_or(0, |r| r.pushes.len())
    };
    let before = pushes();
    let work = admin.ok(&["work", "--parallel", "2", "--json"]).json();
    assert_eq!(work["done"], N as u64, "{work}");
    // The work's own claims and results wait for the device's first token
    // (a minute away); the sync at its end pushes everything at once.
    assert_eq!(pushes() - before, 1, "{}", server.report());
    // Everything landed: a sync now has nothing to push.
    admin.ok(&["sync"]);
    assert_eq!(pushes() - before, 1, "{}", server.report());
    let report = server.report();
    if let Err(violations) = report.check(&Recommendations::github()) {
        panic!("{violations}\n{report}");
    }
}
