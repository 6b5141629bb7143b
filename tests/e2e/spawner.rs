//! Issue 18, item 1: a worker starts its tasks' supervisors through one
//! small spawner process (see `bridge_exec::spawner`) instead of forking
//! itself and executing `bridge` again for each task. These tests look at
//! the process tree and the tasks' descriptors through `/proc`, and kill
//! the spawner to check that the worker survives it.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{Device, poll};
use crate::isolation::processes_with;

/// The parent pid in `/proc/PID/stat` (the field after the parenthesised
/// command name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The command line of `pid`, its arguments joined by spaces (empty for a
/// zombie or a process that is gone).
fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// The live processes whose parent is `parent` and whose command line
/// holds `marker`.
fn children_with(parent: u32, marker: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(parent) && cmdline(*pid).contains(marker))
        .collect()
}

/// A `sleep` duration no other test uses, to find this test's task.
fn marker(tag: u32) -> String {
    format!("200000.{}{tag:03}", std::process::id())
}

/// Many tasks in a row start through one spawner (each task's parent is
/// its supervisor, whose parent is the spawner), and a task (its script
/// ends in `exec ls`, which lists its own descriptors) holds no descriptor
/// but its standard three, even
/// when the worker was started with one more that is not close-on-exec
/// (fd 7 here, as a shell or a CI runner may leak).
#[test]
fn issue18_tasks_start_through_one_spawner_with_only_their_standard_streams() {
    let mut d = Device::new("spawner-tree");
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    // Off: a sandboxed task may not look at processes outside it.
    d.set_env("BRIDGE_SANDBOX", "off");
    let tasks = 24;
    let mut yaml = String::from("tasks:\n");
    for i in 0..tasks {
        yaml.push_str(&format!(
            "  - name: t{i}\n    run: 'echo t{i}; read -r _ _ _ sp _ < /proc/$PPID/stat; echo \"spawner=$sp\"; echo \"cmd=$(tr \"\\0\" \" \" < /proc/$sp/cmdline)\"; exec ls -l /proc/self/fd'\n"
        ));
    }
    d.write("t.yaml", &yaml);
    d.ok(&["submit", "t.yaml"]);
    let inner = d.command_in(d.root_dir(), true, &["work", "--offline", "-j2"]);
    let mut worker = Command::new("sh");
    worker
        .arg("-c")
        .arg("exec 7</dev/null; exec \"$@\"")
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear()
        .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(inner.get_current_dir().unwrap_or(Path::new("/")))
        .stdin(Stdio::null());
    let out = worker.output().expect("cannot run the worker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.status().count("done"), tasks as u64);
    let mut spawners = std::collections::BTreeSet::new();
    for i in 0..tasks {
        let name = format!("t{i}");
        let log = d.ok(&["logs", &name]).stdout;
        let field = |key: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in the log of {name}: {log}"))
                .trim()
                .to_owned()
        };
        spawners.insert(field("spawner="));
        assert!(
            field("cmd=").contains("__task-spawner"),
            "{name}'s supervisor was not started by a spawner: {log}"
        );
        // `ls` holds one more descriptor: the folder it lists.
        let fds: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split_once(" -> "))
            .filter(|(_, target)| !target.ends_with("/fd"))
            .filter_map(|(fd, _)| fd.rsplit(' ').next())
            .collect();
        assert_eq!(fds, ["0", "1", "2"], "{name} holds more descriptors: {log}");
    }
    assert_eq!(spawners.len(), 1, "one spawner per worker: {spawners:?}");
}

/// The spawner killed while a task runs: the task's processes stop, its
/// attempt is recorded as interrupted, nothing hangs, and the task runs
/// again through a new spawner, which goes with its worker.
#[test]
fn issue18_a_killed_spawner_interrupts_its_task_and_a_new_one_takes_over() {
    let d = Device::new("spawner-killed");
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    let m = marker(1);
    d.write(
        "t.yaml",
        &format!(
            "tasks:\n  - name: long\n    run: 'case $BRIDGE_ATTEMPT in *.1) sleep {m} ;; *) echo second ;; esac'\n"
        ),
    );
    d.ok(&["submit", "t.yaml"]);
    let worker = d.spawn("work", &["work", "--offline", "-j1"]);
    poll("the task to start", || !processes_with(&m).is_empty());
    let spawner = children_with(worker.pid(), "__task-spawner");
    assert_eq!(spawner.len(), 1, "one spawner below the worker");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spawner[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the spawner");
    poll("the task's processes to stop with the spawner", || {
        processes_with(&m).is_empty()
    });
    let r = worker.wait();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let show = d.show("long");
    let attempts = show["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{show}");
    assert_eq!(attempts[0]["outcome"], "interrupted", "{show}");
    assert_eq!(attempts[1]["outcome"], "success", "{show}");
    assert!(d.ok(&["logs", "long"]).stdout.contains("second"));
}

/// A worker killed with SIGKILL takes its spawner and its task with it.
#[test]
fn issue18_a_killed_worker_leaves_no_spawner_and_no_task() {
    let d = Device::new("spawner-worker-killed");
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    let m = marker(2);
    d.write(
        "t.yaml",
        &format!("tasks:\n  - name: long\n    run: sleep {m}\n"),
    );
    d.ok(&["submit", "t.yaml"]);
    let worker = d.spawn("work", &["work", "--offline", "-j1"]);
    poll("the task to start", || !processes_with(&m).is_empty());
    let spawner = children_with(worker.pid(), "__task-spawner");
    assert_eq!(spawner.len(), 1, "one spawner below the worker");
    worker.kill();
    poll("the task to stop with its worker", || {
        processes_with(&m).is_empty()
    });
    poll("the spawner to stop with its worker", || {
        !cmdline(spawner[0]).contains("__task-spawner")
    });
}

/// A task too large for one message to the spawner (its environment here)
/// starts the way it did before the spawner: its supervisor is the worker's
/// executable started again, a child of the worker; it runs all the same.
#[test]
fn issue18_a_task_too_large_for_the_spawner_starts_without_it() {
    let mut d = Device::new("spawner-fallback");
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    d.set_env("BRIDGE_SANDBOX", "off");
    let big = "x".repeat(100_000);
    d.write(
        "t.yaml",
        &format!(
            "tasks:\n  - name: big\n    env: {{ A: {big}, B: {big}, C: {big} }}\n    run: 'read -r _ _ _ sp _ < /proc/$PPID/stat; echo \"parent=$(tr \"\\0\" \" \" < /proc/$sp/cmdline)\"; echo \"size=${{#A}}${{#C}}\"'\n"
        ),
    );
    d.ok(&["submit", "t.yaml"]);
    d.ok(&["work", "--offline"]);
    let log = d.ok(&["logs", "big"]).stdout;
    assert!(log.contains("size=100000100000"), "{log}");
    let parent = log
        .lines()
        .find_map(|l| l.strip_prefix("parent="))
        .unwrap_or_else(|| panic!("no parent in {log}"));
    assert!(
        parent.contains(" work ") && !parent.contains("__task-spawner"),
        "{log}"
    );
}
