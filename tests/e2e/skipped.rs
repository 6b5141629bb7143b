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
