//! A worker that dies (SIGKILL) or is stopped (SIGTERM) mid-task.

use std::path::Path;

use crate::harness::{Device, poll, str_field};

#[test]
fn killed_worker_loses_nothing_and_its_task_is_rerun_after_the_lease() {
    let d = Device::new("crashy");
    d.ok(&["init"]);
    d.set_lease("2s", "1s");
    d.ok(&[
        "submit",
        "--name",
        "quick",
        "--priority",
        "10",
        "--",
        "echo",
        "ok",
    ]);
    d.ok(&["submit", "--name", "slow", "--", "sleep", "3"]);

    let worker = d.spawn("work", &["work", "--parallel", "1"]);
    poll("quick done and slow running", || {
        let tasks = d.ls();
        let st = |n: &str| tasks.iter().find(|t| t.name == n).map(|t| t.status.clone());
        st("quick").as_deref() == Some("done") && st("slow").as_deref() == Some("running")
    });
    let quick_result = str_field(&d.show("quick"), "result");
    let killed = worker.kill();
    assert_eq!(killed.code, 128 + 9, "SIGKILL: {killed:?}");

    // The dead worker's claim is honoured until its lease (and the
    // clock-skew margin) runs out; then the task is pending again.
    assert_eq!(d.task("slow").status, "running");
    let mut seen = Vec::new();
    poll("slow pending after the lease", || {
        let s = d.task("slow").status;
        let pending = s == "pending";
        seen.push(s);
        pending
    });
    assert!(
        seen.iter().all(|s| s == "running" || s == "pending"),
        "statuses seen while the lease ran out: {seen:?}"
    );
    let slow = d.task("slow");
    assert_eq!(slow.attempts, 0, "a killed worker records no attempt");
    let quick = d.task("quick");
    assert_eq!((quick.status.as_str(), quick.attempts), ("done", 1));
    assert_eq!(str_field(&d.show("quick"), "result"), quick_result);

    // A new worker finishes the task; the quick task is left alone.
    let again = d.ok(&["work", "--parallel", "1"]);
    assert!(
        again.stderr.contains("1 done, 0 failed"),
        "{}",
        again.stderr
    );
    let slow = d.show("slow");
    assert_eq!(slow["status"], "done", "{slow}");
    let attempts = slow["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{slow}");
    assert_eq!(attempts[0]["outcome"], "success");
    assert_eq!(
        slow["claims"].as_array().expect("claims").len(),
        2,
        "the dead claim and the new one: {slow}"
    );
    let quick = d.show("quick");
    assert_eq!(quick["status"], "done");
    assert_eq!(str_field(&quick, "result"), quick_result);
    assert_eq!(quick["attempts"].as_array().expect("attempts").len(), 1);
    let st = d.status();
    assert_eq!((st.tasks, st.count("done")), (2, 2), "{st:?}");
}

#[test]
fn sigterm_interrupts_the_running_task_and_leaves_it_pending() {
    let d = Device::new("stopped");
    d.ok(&["init"]);
    // The task's process, found on the host by its command line (in its
    // PID namespace its own pid means nothing here).
    let marker = format!("30.{}7", std::process::id());
    d.ok(&[
        "submit",
        "--name",
        "long",
        "--",
        "sh",
        "-c",
        &format!("exec sleep {marker}"),
    ]);

    let worker = d.spawn("work", &["work", "--parallel", "1"]);
    poll("long running", || d.task("long").status == "running");
    // The supervisor's command line holds the script too: wait for the
    // `sleep` itself.
    poll("the task to start", || {
        processes_with(&marker).iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
    });
    let task_pids = processes_with(&marker);
    worker.terminate();
    let run = worker.wait();
    assert_eq!(run.code, 130, "{run:?}");
    assert!(run.stderr.contains("1 interrupted"), "{}", run.stderr);
    for pid in task_pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the task's process {pid} outlived its worker"
        );
    }

    let show = d.show("long");
    let attempts = show["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{show}");
    assert_eq!(attempts[0]["outcome"], "interrupted", "{show}");
    assert_eq!(show["status"], "pending", "{show}");
    assert_eq!(
        show["failures"], 0,
        "an interruption is not a failure: {show}"
    );
    let st = d.status();
    assert_eq!(
        (st.count("pending"), st.count("running"), st.count("failed")),
        (1, 0, 0),
        "{st:?}"
    );
}

/// The processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}
