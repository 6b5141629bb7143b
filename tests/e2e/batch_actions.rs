//! Issue 17, item 2: acting on a batch at once. `show` and `logs` take a
//! matrix entry's name and list its expansions; `retry --failed` retries
//! every failed task (of a batch or an entry); `outputs` copies a matrix
//! entry's, a batch's or every done task's files, each into its own folder.

use std::fs;

use crate::harness::Device;

/// A matrix of four, one of which fails once (its marker file is an input
/// the retry changes nothing about, so it fails again: what matters is
/// that `retry --failed` makes it pending), and a plain task.
const TASKS: &str = "\
tasks:
  - name: count
    matrix: { n: [1, 2, 3, 4] }
    run: test ${{ matrix.n }} != 3 && echo ${{ matrix.n }} > n.txt
    outputs: [n.txt]
  - name: lone
    run: echo lone > lone.txt
    outputs: [lone.txt]
";

#[test]
fn a_matrix_entry_is_shown_retried_and_downloaded_as_a_whole() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write("tasks.yaml", TASKS);
    d.ok(&["submit", "-q", "tasks.yaml"]);
    d.run(&["work", "-q", "--parallel", "2"]).expect_code(3);

    // `show count` lists the expansions (the README's own example).
    let show = d.ok(&["show", "count"]);
    assert!(
        show.stderr.contains("`count` is a matrix entry of 4 tasks"),
        "{}",
        show.stderr
    );
    for n in 1..=4 {
        assert!(
            show.stdout.contains(&format!("count[n={n}]")),
            "{}",
            show.stdout
        );
    }
    assert!(
        show.stdout.contains("failed") && show.stdout.contains("done"),
        "{}",
        show.stdout
    );
    let json = d.ok(&["show", "count", "--json"]).json();
    assert_eq!(json.as_array().map(Vec::len), Some(4), "{json}");
    let logs = d.ok(&["logs", "count"]);
    assert!(logs.stdout.contains("count[n=3]"), "{}", logs.stdout);
    // One expansion still shows as one task.
    let one = d.ok(&["show", "count[n=2]", "--json"]).json();
    assert_eq!(one["name"], "count[n=2]", "{one}");

    // A plain retry of the entry says how to retry its failed tasks.
    let refused = d.run(&["retry", "count"]).expect_code(1);
    assert!(
        refused.stderr.contains("bridge retry --failed count"),
        "{}",
        refused.stderr
    );
    let retried = d.ok(&["retry", "--failed", "count", "--offline"]);
    assert!(retried.stdout.contains("Task"), "{}", retried.stdout);
    assert_eq!(d.task("count[n=3]").status, "pending");
    // Nothing failed any more: --failed says so.
    let none = d.run(&["retry", "--failed", "--offline"]).expect_code(1);
    assert!(none.stderr.contains("no failed task"), "{}", none.stderr);
    d.run(&["work", "-q"]).expect_code(3);
    assert_eq!(d.task("count[n=3]").status, "failed");
    let all = d.ok(&["retry", "--failed", "--offline"]);
    assert!(all.stdout.contains("pending again"), "{}", all.stdout);

    // Outputs of the entry: one folder per done task; the failed one is
    // named as not done.
    let out = d.dir.join("out");
    let got = d.ok(&[
        "outputs",
        "count",
        "--to",
        out.to_str().expect("a UTF-8 path"),
    ]);
    assert!(
        got.stderr.contains("not done yet") && got.stderr.contains("count[n=3]"),
        "{}",
        got.stderr
    );
    for n in [1, 2, 4] {
        let file = out.join(format!("count_n_{n}_")).join("n.txt");
        assert_eq!(
            fs::read_to_string(&file).expect("an output").trim(),
            n.to_string()
        );
    }
    assert!(!out.join("count_n_3_").exists());
    // Every done task, as JSON.
    let every = d.dir.join("every");
    let json = d
        .ok(&[
            "outputs",
            "--all",
            "--json",
            "--to",
            every.to_str().expect("a UTF-8 path"),
        ])
        .json();
    assert_eq!(json["tasks"].as_array().map(Vec::len), Some(4), "{json}");
    assert_eq!(json["not_done"].as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(
        fs::read_to_string(every.join("lone").join("lone.txt"))
            .expect("lone's output")
            .trim(),
        "lone"
    );
    // One task's files still go straight into --to.
    let single = d.dir.join("single");
    d.ok(&[
        "outputs",
        "lone",
        "--to",
        single.to_str().expect("a UTF-8 path"),
    ]);
    assert!(single.join("lone.txt").is_file());
}
