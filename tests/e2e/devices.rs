//! Two devices sharing one folder remote.

use std::collections::BTreeSet;
use std::fs;

use crate::harness::{
    Device, POLL_INTERVAL, POLL_TRIES, dir_remote, poll, str_field, sync_until_equal, temp_dir,
};

/// Three kinds of tasks: one with an input file, a matrix, and one that
/// needs both and combines their outputs.
const TASKS: &str = "\
defaults:
  timeout: 1m
tasks:
  - name: words
    run: wc -w < data/words.txt | tr -d ' ' > words.txt; echo counted
    inputs: [data/words.txt]
    outputs: [words.txt]
  - name: square
    matrix: { n: [2, 3] }
    run: echo $(( ${{ matrix.n }} * ${{ matrix.n }} )) > sq.txt
    outputs: [sq.txt]
  - name: report
    needs: [words, square]
    run: cat needs/words/words.txt needs/square_n_2_/sq.txt needs/square_n_3_/sq.txt > report.txt; echo report written
    outputs: [report.txt]
";

/// A workspace with a folder remote on device `a`, joined by device `b`.
fn pair() -> (tempfile::TempDir, Device, Device) {
    let shared = temp_dir("shared");
    let remote = dir_remote(shared.path());
    let a = Device::new("laptop");
    let b = Device::new("desktop");
    a.ok(&["init", "--remote", &remote]);
    b.join_as(&a, &remote, "submit");
    assert_eq!(a.status().workspace, b.status().workspace);
    (shared, a, b)
}

#[test]
fn two_devices_share_tasks_results_and_outputs_through_a_folder_remote() {
    let (_shared, a, b) = pair();

    // The laptop submits and works a task file while offline.
    a.write("data/words.txt", "alpha beta gamma\n");
    a.write("tasks.yaml", TASKS);
    let sub = a
        .ok(&["submit", "--offline", "--json", "tasks.yaml"])
        .json();
    assert_eq!(sub["new"], 4, "{sub}");
    let report = a.task("report");
    assert_eq!(report.status, "blocked");
    // Nothing reached the remote: the desktop sees no task.
    b.ok(&["sync"]);
    assert_eq!(b.status().tasks, 0);
    let work = a.ok(&["work", "--offline", "--parallel", "2"]);
    assert!(work.stderr.contains("4 done, 0 failed"), "{}", work.stderr);
    let sa = a.status();
    assert_eq!((sa.tasks, sa.count("done")), (4, 4), "{sa:?}");

    // The desktop submits a command and one task per file, and works them.
    b.write("docs/one.md", "x\n");
    b.write("docs/two.md", "hello\n");
    let one = b
        .ok(&[
            "submit",
            "--json",
            "--output",
            "out.txt",
            "--",
            "sh",
            "-c",
            "echo b > out.txt",
        ])
        .json();
    assert_eq!(one["new"], 1, "{one}");
    let each = b
        .ok(&[
            "submit",
            "--json",
            "--each",
            "docs/*.md",
            "--output",
            "*.cnt",
            "--",
            "sh",
            "-c",
            "wc -c < {} > {/.}.cnt",
        ])
        .json();
    assert_eq!(each["new"], 2, "{each}");
    b.ok(&["work", "--parallel", "2"]);

    // After syncing, both devices agree on every task, and all are done.
    let tasks = sync_until_equal(&a, &b, 4);
    assert_eq!(tasks.len(), 7, "{tasks:#?}");
    assert!(tasks.iter().all(|t| t.status == "done"), "{tasks:#?}");
    assert!(tasks.iter().all(|t| t.attempts == 1), "{tasks:#?}");
    let names: BTreeSet<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    let expected: BTreeSet<&str> = [
        "words",
        "square[n=2]",
        "square[n=3]",
        "report",
        "sh -c echo b > out.txt",
        "sh docs/one.md",
        "sh docs/two.md",
    ]
    .into();
    assert_eq!(names, expected);
    let (sa, sb) = (a.status(), b.status());
    assert_eq!(sa, sb);
    assert_eq!((sa.tasks, sa.count("done")), (7, 7), "{sa:?}");

    // The laptop's outputs and logs, read on the desktop.
    let got = b.path("got");
    b.ok(&["outputs", "report", "--to", got.to_str().expect("utf-8")]);
    let text = fs::read_to_string(got.join("report.txt")).expect("report.txt copied");
    assert_eq!(text, "3\n4\n9\n");
    let logs = b.ok(&["logs", "report"]);
    assert_eq!(logs.stdout, "report written\n");
    let logs = b.ok(&["logs", "words", "--stdout"]);
    assert_eq!(logs.stdout, "counted\n");

    // The desktop's outputs, read on the laptop.
    let got = a.path("got");
    let to = got.to_str().expect("utf-8");
    a.ok(&["outputs", "sh -c echo b > out.txt", "--to", to]);
    a.ok(&["outputs", "sh docs/two.md", "--to", to]);
    assert_eq!(
        fs::read_to_string(got.join("out.txt")).expect("out.txt"),
        "b\n"
    );
    assert_eq!(
        fs::read_to_string(got.join("two.cnt"))
            .expect("two.cnt")
            .trim(),
        "6"
    );
    // Each attempt says where it ran.
    assert_eq!(a.show("report")["attempts"][0]["device"], "laptop");
    assert_eq!(a.show("sh docs/one.md")["attempts"][0]["device"], "desktop");
}

#[test]
fn one_task_submitted_offline_on_two_devices_is_one_task() {
    let (_shared, a, b) = pair();
    let cmd = ["submit", "--offline", "--json", "--", "echo", "same"];
    let ja = a.ok(&cmd).json();
    let jb = b.ok(&cmd).json();
    assert_eq!(ja["tasks"][0]["state"], "new", "{ja}");
    assert_eq!(jb["tasks"][0]["state"], "new", "{jb}");
    let id = str_field(&ja["tasks"][0], "id");
    assert_eq!(str_field(&jb["tasks"][0], "id"), id);
    assert_ne!(ja["batch"], jb["batch"], "two batches, one task");

    let tasks = sync_until_equal(&a, &b, 3);
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(tasks[0].id, id);
    assert_eq!(tasks[0].status, "pending");

    // Worked once, on the desktop; the laptop sees it done.
    b.ok(&["work"]);
    let tasks = sync_until_equal(&a, &b, 3);
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(tasks[0].status, "done");
    assert_eq!(tasks[0].attempts, 1);

    // Submitting it again is a cache hit…
    let again = a.ok(&["submit", "--json", "--", "echo", "same"]).json();
    assert_eq!(again["tasks"][0]["state"], "cached", "{again}");
    assert_eq!(again["new"], 0, "{again}");
    assert_eq!(again["cached"], 1, "{again}");
    assert!(again["batch"].is_null(), "{again}");
    let plain = a.ok(&["submit", "--", "echo", "same"]);
    assert!(plain.stdout.contains("cache hit"), "{}", plain.stdout);
    assert_eq!(a.ls().len(), 1);

    // …and --rerun makes a new task with the same command.
    let rerun = a
        .ok(&["submit", "--json", "--rerun", "--", "echo", "same"])
        .json();
    assert_eq!(rerun["tasks"][0]["state"], "new", "{rerun}");
    let new_id = str_field(&rerun["tasks"][0], "id");
    assert_ne!(new_id, id);
    let tasks = a.ls();
    assert_eq!(tasks.len(), 2, "{tasks:#?}");
    assert!(tasks.iter().all(|t| t.name == "echo same"));
    let new = tasks
        .iter()
        .find(|t| t.id == new_id)
        .expect("the rerun task");
    assert_eq!(new.status, "pending");
}

#[test]
fn both_devices_run_one_task_offline_and_agree_on_its_result() {
    let (_shared, a, b) = pair();
    let cmd = [
        "submit",
        "--offline",
        "--output",
        "who.txt",
        "--name",
        "who",
        "--",
        "sh",
        "-c",
        "echo $BRIDGE_DEVICE > who.txt",
    ];
    a.ok(&cmd);
    b.ok(&cmd);
    a.ok(&["work", "--offline"]);
    b.ok(&["work", "--offline"]);
    let tasks = sync_until_equal(&a, &b, 3);
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(tasks[0].status, "done");
    assert_eq!(tasks[0].attempts, 2, "both runs are kept");

    // Both replicas pick the same canonical result, and copy the same file.
    let (show_a, show_b) = (a.show("who"), b.show("who"));
    assert!(show_a["result"].is_string(), "{show_a}");
    assert_eq!(show_a["result"], show_b["result"]);
    let mut contents = Vec::new();
    for d in [&a, &b] {
        let to = d.path("got");
        d.ok(&["outputs", "who", "--to", to.to_str().expect("utf-8")]);
        contents.push(fs::read_to_string(to.join("who.txt")).expect("who.txt"));
    }
    assert_eq!(contents[0], contents[1]);
    assert!(
        ["laptop\n", "desktop\n"].contains(&contents[0].as_str()),
        "{contents:?}"
    );
    let result = str_field(&show_a, "result");
    let winner = show_a["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .find(|at| at["key"] == result.as_str())
        .expect("the result is one of the attempts")
        .clone();
    assert_eq!(format!("{}\n", str_field(&winner, "device")), contents[0]);
}

/// README, "Leases and clock skew": a claim holds its task on every device
/// while its lease is live (renewed every third of the lease), so another
/// device never steals a live task. The other device can only honour a
/// claim it can see: the claim, and its renewals, must reach the remote while
/// the task runs.
#[test]
fn a_task_running_on_one_device_shows_running_on_the_other() {
    let (_shared, a, b) = pair();
    for d in [&a, &b] {
        d.set_lease("2s", "1s");
    }
    // Longer than lease + skew, so renewals matter too.
    a.ok(&["submit", "--name", "long", "--", "sleep", "5"]);
    b.ok(&["sync"]);
    assert_eq!(b.task("long").status, "pending");

    let mut worker = a.spawn("work", &["work", "--parallel", "1"]);
    poll("long running on the laptop", || {
        a.task("long").status == "running"
    });
    // What the desktop sees, syncing over and over, while the laptop runs it.
    let mut seen: Vec<String> = Vec::new();
    for round in 0.. {
        if !worker.is_running() {
            break;
        }
        assert!(round < POLL_TRIES, "the laptop's worker does not finish");
        std::thread::sleep(POLL_INTERVAL);
        b.ok(&["sync"]);
        let s = b.task("long").status;
        if seen.last() != Some(&s) {
            seen.push(s);
        }
    }
    worker.wait().expect_code(0);
    b.ok(&["sync"]);
    assert_eq!(b.task("long").status, "done");
    // The claim may take a moment to reach the remote (a leading `pending`),
    // but then the desktop must see the task running, never pending again.
    let after_first: Vec<&String> = seen.iter().skip_while(|s| *s == "pending").collect();
    assert_eq!(
        after_first.first().map(|s| s.as_str()),
        Some("running"),
        "the desktop never saw the laptop's live claim; statuses it saw: {seen:?}"
    );
    assert!(
        after_first.iter().all(|s| *s == "running" || *s == "done"),
        "the desktop saw the live task as runnable again: {seen:?}"
    );
}
