//! Issue 17, item 1: a task's output while it runs. `bridge work` prints
//! each task's output tagged with its name (`parallel --tag`), grouped per
//! task by default and line by line with `--line-buffer`; `bridge logs -f`
//! follows a task running on this device.
//!
//! The live cases need no timing: the task prints a line, then waits for a
//! file the test creates in its working folder only after it read that
//! line from bridge, so the line was shown while the task still ran.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Stdio};

use crate::harness::Device;

/// Two tasks at once whose lines would interleave, and a failing one.
const TALKERS: &str = "\
tasks:
  - name: talk
    matrix: { n: [1, 2] }
    run: for i in 1 2 3; do echo \"out ${{ matrix.n }} $i\"; echo \"err ${{ matrix.n }} $i\" >&2; sleep 0.1; done
";

/// A task that says `ready`, waits for `go` in its working folder, then
/// says `finished` (without a newline).
const WAITER: &str = "\
tasks:
  - name: waiter
    timeout: 1m
    run: echo ready; echo starting >&2; while [ ! -e go ]; do sleep 0.05; done; printf finished
";

/// A workspace on one device with [`WAITER`] submitted.
fn laptop_with_waiter() -> Device {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write("waiter.yaml", WAITER);
    d.ok(&["submit", "-q", "waiter.yaml"]);
    d
}

/// `bridge work -q` on `d`, once the waiter it runs shows as running.
fn work_until_the_waiter_runs(d: &Device) -> crate::harness::Spawned {
    let worker = d.spawn("work", &["work", "-q"]);
    crate::harness::poll("the waiter running", || {
        d.task("waiter").status == "running"
    });
    worker
}

#[test]
fn work_prints_each_tasks_output_whole_and_tagged() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write("talk.yaml", TALKERS);
    d.ok(&["submit", "-q", "talk.yaml"]);
    let work = d.ok(&["work", "--parallel", "2"]);
    let out: Vec<&str> = work.stdout.lines().collect();
    assert_eq!(out.len(), 6, "{}", work.stdout);
    // Each task's lines together, in order, tagged with its name and a tab.
    for chunk in out.chunks(3) {
        let tag = chunk[0].split('\t').next().expect("a tag");
        assert!(tag == "talk[n=1]" || tag == "talk[n=2]", "{}", work.stdout);
        let n = &tag[7..8];
        for (i, line) in chunk.iter().enumerate() {
            assert_eq!(
                *line,
                format!("{tag}\tout {n} {}", i + 1),
                "{}",
                work.stdout
            );
        }
    }
    // Its stderr on stderr, tagged the same way.
    assert!(
        work.stderr.contains("talk[n=2]\terr 2 3"),
        "{}",
        work.stderr
    );
    // -q and --json print none of it.
    d.write("again.yaml", &TALKERS.replace("out ", "again "));
    d.ok(&["submit", "-q", "again.yaml"]);
    let quiet = d.ok(&["work", "-q"]);
    assert_eq!(quiet.stdout, "");
    d.write("json.yaml", &TALKERS.replace("out ", "json "));
    d.ok(&["submit", "-q", "json.yaml"]);
    let json = d.ok(&["work", "--json"]).json();
    assert_eq!(json["done"], 2, "{json}");
}

/// The waiter's working folder, once it runs.
fn waiter_folder(d: &Device) -> PathBuf {
    let work = d.path(".bridge/work");
    for worker in std::fs::read_dir(&work).expect("the work folder").flatten() {
        for entry in std::fs::read_dir(worker.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            // Its working folder, not its TMPDIR (`….tmp`) nor a spare
            // kept for the next task (`.spare-…`).
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.ends_with(".tmp") && !name.starts_with('.') {
                return entry.path();
            }
        }
    }
    panic!("no task folder under {}", work.display());
}

/// `bridge ARGS` with stdout piped, read line by line.
fn spawn_reading(d: &Device, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = d
        .command_in(&d.dir, true, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start bridge");
    let out = BufReader::new(child.stdout.take().expect("a piped stdout"));
    (child, out)
}

fn next_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line)
        .expect("cannot read bridge's stdout");
    line
}

#[test]
fn work_line_buffer_shows_a_line_while_the_task_still_runs() {
    let d = laptop_with_waiter();
    let (mut child, mut out) = spawn_reading(&d, &["work", "--line-buffer"]);
    // The task cannot end before `go` exists: this line came while it ran.
    assert_eq!(next_line(&mut out), "waiter\tready\n");
    std::fs::write(waiter_folder(&d).join("go"), "").expect("cannot write go");
    assert_eq!(next_line(&mut out), "waiter\tfinished\n");
    assert_eq!(next_line(&mut out), "", "nothing printed twice");
    let status = child.wait().expect("bridge work ends");
    assert!(status.success());
}

#[test]
fn logs_follow_streams_a_task_running_here_to_its_end() {
    let d = laptop_with_waiter();
    // Follow once it runs: the claim is in the replica with its first
    // group commit.
    let worker = work_until_the_waiter_runs(&d);
    let (mut follow, mut out) = spawn_reading(&d, &["logs", "-f", "waiter"]);
    assert_eq!(next_line(&mut out), "ready\n");
    std::fs::write(waiter_folder(&d).join("go"), "").expect("cannot write go");
    // The rest, once, as the task wrote it.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("the rest");
    assert_eq!(rest, "finished");
    assert!(follow.wait().expect("logs -f ends").success());
    worker.wait().expect_code(0);
}

#[test]
fn logs_follow_waits_for_a_task_running_on_another_device_to_push() {
    let shared = crate::harness::temp_dir("follow-remote");
    let remote = crate::harness::dir_remote(shared.path());
    let laptop = Device::new("laptop");
    let desktop = Device::new("desktop");
    laptop.ok(&["init", "--remote", &remote]);
    desktop.join_as(&laptop, &remote, "submit");
    laptop.write("waiter.yaml", WAITER);
    laptop.ok(&["submit", "-q", "waiter.yaml"]);
    // Followed before anyone runs it: it waits for a worker, then for the
    // desktop's push.
    let (mut follow, mut out) =
        spawn_reading(&laptop, &["logs", "-f", "--interval", "200ms", "waiter"]);
    let worker = desktop.spawn("work", &["work", "-q", "--run-tasks-from", "members"]);
    // The laptop says so once the desktop's claim reached it (the task
    // cannot end before `go` exists).
    let mut err = BufReader::new(follow.stderr.take().expect("a piped stderr"));
    let mut said = String::new();
    while !said.contains("running on another device") {
        let mut line = String::new();
        let n = err.read_line(&mut line).expect("read logs -f's stderr");
        assert!(
            n > 0,
            "logs -f ended without saying where the task runs: {said}"
        );
        said.push_str(&line);
    }
    std::fs::write(waiter_folder(&desktop).join("go"), "").expect("cannot write go");
    worker.wait().expect_code(0);
    let mut all = String::new();
    std::io::Read::read_to_string(&mut out, &mut all).expect("the log");
    assert_eq!(all, "ready\nfinished");
    assert!(follow.wait().expect("logs -f ends").success());
}

#[test]
fn logs_follow_ends_when_the_worker_running_the_task_is_killed() {
    let d = laptop_with_waiter();
    // Follow once it runs: the claim is in the replica with its first
    // group commit.
    let worker = work_until_the_waiter_runs(&d);
    let (mut follow, mut out) = spawn_reading(&d, &["logs", "-f", "waiter"]);
    assert_eq!(next_line(&mut out), "ready\n");
    // SIGKILL: the worker keeps nothing and removes nothing; `logs -f`
    // must not wait for files nobody writes any more.
    worker.kill();
    let status = follow.wait().expect("logs -f ends");
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    if let Some(mut e) = follow.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
    }
    assert!(err.contains("recorded no attempt"), "{err}");
}
