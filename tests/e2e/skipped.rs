//! Issue 17, item 3: a task whose needed task failed for good is `skipped`
//! (GitHub's word), not `blocked` forever: not work left for `work`,
//! `status` or `dispatch`, said in `work`'s closing line, and revived when
//! the failed task is retried.

use crate::harness::Device;

const TASKS: &str = "\
tasks:
  - name: build
    run: echo broken >&2; exit 1
  - name: test
    needs: [build]
    run: echo tested
  - name: report
    needs: [test]
    run: echo reported
  - name: lint
    run: echo linted
";

#[test]
fn a_task_whose_need_failed_is_skipped_until_the_need_is_retried() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write("tasks.yaml", TASKS);
    d.ok(&["submit", "-q", "tasks.yaml"]);
    assert_eq!(d.task("test").status, "blocked");

    // `work` runs what can run and says why the rest will not.
    let work = d.run(&["work", "--parallel", "2"]).expect_code(3);
    assert!(
        work.stderr.contains("1 done, 1 failed") && work.stderr.contains("2 skipped"),
        "{}",
        work.stderr
    );
    assert!(
        work.stderr.contains("bridge ls --status skipped"),
        "{}",
        work.stderr
    );
    let json = d.run(&["work", "--json"]).expect_code(0).json();
    assert_eq!(json["skipped"], 2, "{json}");

    // Skipped, not blocked or pending: nothing is left to run.
    for name in ["test", "report"] {
        assert_eq!(d.task(name).status, "skipped", "{name}");
    }
    let status = d.status();
    assert_eq!(status.counts.get("skipped"), Some(&2), "{status:?}");
    assert_eq!(status.counts.get("blocked"), Some(&0), "{status:?}");
    assert_eq!(status.counts.get("pending"), Some(&0), "{status:?}");
    let listed = d.ok(&["ls", "--status", "skipped", "--json"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let why = d.show("report");
    assert!(
        why.to_string().contains("is skipped"),
        "report says it needs a skipped task: {why}"
    );

    // Retrying the failed task revives its dependents: blocked while it
    // waits to run again.
    d.ok(&["retry", "build"]);
    assert_eq!(d.task("build").status, "pending");
    assert_eq!(d.task("test").status, "blocked");
    assert_eq!(d.task("report").status, "blocked");

    // A skipped task can be cancelled, so that a retry does not run it.
    let work = d.run(&["work"]).expect_code(3);
    assert!(work.stderr.contains("2 skipped"), "{}", work.stderr);
    d.ok(&["cancel", "report"]);
    assert_eq!(d.task("report").status, "cancelled");
}

/// `work --halt`, as `parallel --halt`: after the failures it names, no new
/// task starts (`soon`), or the running ones stop too (`now`).
#[test]
fn work_halts_after_a_failure_soon_or_now() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write(
        "tasks.yaml",
        "tasks:\n  - name: bad\n    priority: 10\n    run: exit 1\n  - name: a\n    run: echo a\n  - name: b\n    run: echo b\n",
    );
    d.ok(&["submit", "-q", "tasks.yaml"]);
    let soon = d
        .run(&["work", "--parallel", "1", "--halt", "soon,fail=1"])
        .expect_code(3);
    assert!(soon.stderr.contains("halted"), "{}", soon.stderr);
    assert_eq!(d.task("bad").status, "failed");
    for name in ["a", "b"] {
        assert_eq!(d.task(name).status, "pending", "{name} did not start");
    }
    let json = d.ok(&["work", "--json", "--halt", "soon,fail=1"]).json();
    assert_eq!(
        (json["done"].as_u64(), json["halted"].as_bool()),
        (Some(2), Some(false))
    );

    // now: a long task running beside the failing one is stopped, and
    // runnable again (an interrupted attempt is not a failure).
    d.write(
        "more.yaml",
        "tasks:\n  - name: long\n    priority: 10\n    run: sleep 60\n  - name: worse\n    priority: 5\n    run: exit 2\n",
    );
    d.ok(&["submit", "-q", "more.yaml"]);
    d.run(&["work", "--parallel", "2", "--halt", "now,fail=1"])
        .expect_code(3);
    assert_eq!(d.task("worse").status, "failed");
    assert_eq!(d.task("long").status, "pending");
    // A rule parallel has but bridge does not is refused at once.
    d.run(&["work", "--halt", "now,fail=10%"]).expect_code(2);
}
