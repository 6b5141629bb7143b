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
