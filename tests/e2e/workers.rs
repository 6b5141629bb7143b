//! Workers sharing one workspace, and a task's life: cancel, fail, retry.

use crate::harness::{Device, Run};

/// `N done, M failed` from the last line a worker prints.
fn done_failed(run: &Run) -> (u64, u64) {
    let line = run
        .stderr
        .lines()
        .rev()
        .find(|l| l.contains(" done, "))
        .unwrap_or_else(|| panic!("no summary line in:\n{}", run.stderr));
    let mut words = line.split_whitespace();
    let done = words.next().and_then(|w| w.parse().ok());
    let failed = words.nth(1).and_then(|w| w.parse().ok());
    match (done, failed) {
        (Some(d), Some(f)) => (d, f),
        _ => panic!("cannot read the summary line `{line}`"),
    }
}

#[test]
fn two_workers_on_one_workspace_drain_every_task() {
    const N: usize = 60;
    let d = Device::new("busy");
    d.ok(&["init"]);
    let values: Vec<String> = (1..=N).map(|n| n.to_string()).collect();
    d.write(
        "many.yaml",
        &format!(
            "tasks:\n  - name: t\n    matrix: {{ n: [{}] }}\n    run: echo ${{{{ matrix.n }}}}\n",
            values.join(", ")
        ),
    );
    let sub = d.ok(&["submit", "--json", "many.yaml"]).json();
    assert_eq!(sub["new"], N, "{sub}");

    let w1 = d.spawn("w1", &["work", "--parallel", "2"]);
    let w2 = d.spawn("w2", &["work", "--parallel", "2"]);
    let (r1, r2) = (w1.wait(), w2.wait());
    let (r1, r2) = (r1.expect_code(0), r2.expect_code(0));

    let st = d.status();
    assert_eq!((st.tasks, st.count("done")), (N as u64, N as u64), "{st:?}");
    let mut successes = 0u64;
    for t in d.ls() {
        let show = d.show(&t.id);
        let attempts = show["attempts"].as_array().expect("attempts");
        let ok = attempts
            .iter()
            .filter(|a| a["outcome"] == "success")
            .count() as u64;
        assert!(ok >= 1, "task {} has no success: {show}", t.name);
        assert_eq!(ok, attempts.len() as u64, "only successes: {show}");
        // Every run printed its own matrix value.
        let n = t
            .name
            .strip_prefix("t[n=")
            .and_then(|s| s.strip_suffix(']'))
            .expect("a matrix task name");
        assert_eq!(d.ok(&["logs", &t.id, "--stdout"]).stdout, format!("{n}\n"));
        successes += ok;
    }
    let duplicates = successes - N as u64;
    eprintln!("two workers ran {N} tasks with {duplicates} duplicate runs");
    assert!(duplicates < N as u64, "{duplicates} duplicates");
    let ((d1, f1), (d2, f2)) = (done_failed(&r1), done_failed(&r2));
    assert_eq!((f1, f2), (0, 0));
    assert_eq!(d1 + d2, successes, "the workers' reports add up");
}

#[test]
fn cancel_fail_and_retry() {
    let mut d = Device::new("life");
    // The flaky task keeps a marker outside its folder between attempts,
    // which the sandbox (issue 13) would refuse.
    d.set_env("BRIDGE_SANDBOX", "off");
    d.ok(&["init"]);
    d.ok(&["submit", "--name", "doomed", "--", "sleep", "30"]);
    let out = d.ok(&["cancel", "doomed"]);
    assert!(out.stdout.contains("Cancelled 1 task"), "{}", out.stdout);
    assert_eq!(d.task("doomed").status, "cancelled");

    // Fails the first time, succeeds the second.
    let marker = d.scratch("ran-once");
    let script = format!(
        "if [ -f '{m}' ]; then echo second; else touch '{m}'; echo first >&2; exit 1; fi",
        m = marker.display()
    );
    d.ok(&["submit", "--name", "flaky", "--", "sh", "-c", &script]);
    let run = d.run(&["work"]).expect_code(3);
    assert!(run.stderr.contains("exit code 1"), "{}", run.stderr);
    let flaky = d.show("flaky");
    assert_eq!(flaky["status"], "failed", "{flaky}");
    assert_eq!(flaky["attempts"][0]["outcome"], "failed");
    assert_eq!(flaky["attempts"][0]["exit_code"], 1);
    assert_eq!(d.ok(&["logs", "flaky", "--stderr"]).stdout, "first\n");
    let doomed = d.task("doomed");
    assert_eq!((doomed.status.as_str(), doomed.attempts), ("cancelled", 0));

    // Only a failed task can be retried.
    let refused = d.run(&["retry", "doomed"]).expect_code(1);
    assert!(refused.stderr.contains("not failed"), "{}", refused.stderr);
    d.ok(&["retry", "flaky"]);
    assert_eq!(d.task("flaky").status, "pending");
    d.ok(&["work"]);
    let flaky = d.task("flaky");
    assert_eq!((flaky.status.as_str(), flaky.attempts), ("done", 2));
    assert_eq!(d.ok(&["logs", "flaky"]).stdout, "second\n");
    let st = d.status();
    assert_eq!(
        (st.count("done"), st.count("cancelled"), st.tasks),
        (1, 1, 2),
        "{st:?}"
    );
}
