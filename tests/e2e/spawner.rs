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

/// A device with its own identity and a new workspace.
fn workspace(name: &str) -> Device {
    let d = Device::new(name);
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    d
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
    let mut d = workspace("spawner-tree");
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
    let d = workspace("spawner-killed");
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
    let d = workspace("spawner-worker-killed");
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
    let mut d = workspace("spawner-fallback");
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

/// A program named without a folder is looked up in the task's own PATH
/// and started as named (its `argv[0]` is the name the task wrote), as
/// `execvp` would: a folder and a file without an execute bit that carry
/// its name are passed over, a script without `#!` runs through the shell,
/// and a program on no folder of PATH fails, naming it. (The worker finds the
/// file itself so that it can start it with `posix_spawn`.)
#[test]
fn issue18_a_program_is_found_on_the_tasks_path_and_started_as_named() {
    use std::os::unix::fs::PermissionsExt;
    let mut d = workspace("spawner-path");
    // Off: the folders on PATH are outside what a sandboxed task may run.
    d.set_env("BRIDGE_SANDBOX", "off");
    let root = d.root_dir().to_owned();
    let (folder, plain, script) = (root.join("a"), root.join("b"), root.join("c"));
    for dir in [&folder, &plain, &script] {
        fs::create_dir_all(dir).expect("create a folder for PATH");
    }
    fs::create_dir(folder.join("tool")).expect("a folder named like the program");
    fs::write(plain.join("tool"), "echo wrong tool\n").expect("write a plain file");
    let tool = script.join("tool");
    fs::write(&tool, "echo \"name=$0 args=$*\"\n").expect("write the script");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("make it executable");
    let path = format!(
        "{}:{}:{}:/usr/bin:/bin",
        folder.display(),
        plain.display(),
        script.display()
    );
    d.write(
        "t.yaml",
        &format!(
            "tasks:\n  - name: found\n    env: {{ PATH: \"{path}\" }}\n    run: [tool, one, two]\n  - name: builtin\n    env: {{ PATH: \"{path}\" }}\n    run: [sh, -c, 'echo \"shell=$0\"']\n  - name: missing\n    env: {{ PATH: \"{path}\" }}\n    run: [no-such-tool-anywhere]\n"
        ),
    );
    d.ok(&["submit", "t.yaml"]);
    d.run(&["work", "--offline", "-j2"]);
    // A script without `#!` gets the file found as `$0`, as from `execvp`
    // (the shell is given its path); a program gets its name as written.
    let found = d.ok(&["logs", "found"]).stdout;
    let expected = format!("name={} args=one two", tool.display());
    assert!(found.contains(&expected), "{found}");
    let builtin = d.ok(&["logs", "builtin"]).stdout;
    assert!(builtin.contains("shell=sh"), "{builtin}");
    let missing = d.show("missing");
    let attempt = &missing["attempts"][0];
    assert_ne!(attempt["outcome"], "success", "{missing}");
    assert!(
        attempt["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-tool-anywhere")),
        "{missing}"
    );
}

/// `--parallel` bounds the tasks whose processes run at once, now that a
/// task's slot is given back when its process ends rather than once its
/// results are stored: every task writes a line when it starts and one
/// when it ends to one file, and no prefix of that file has more than two
/// tasks started and not ended.
#[test]
fn issue18_parallel_bounds_the_running_tasks_while_results_are_stored() {
    let mut d = workspace("spawner-slots");
    // Off: the tasks write to one file outside their folders.
    d.set_env("BRIDGE_SANDBOX", "off");
    let trace = d.root_dir().join("trace");
    let tasks = 30;
    let mut yaml = String::from("tasks:\n");
    for i in 0..tasks {
        // Each log is over the attempt's tail, so each is stored as a blob
        // after the task ends, while the next task runs.
        yaml.push_str(&format!(
            "  - name: t{i}\n    run: 'echo start {i} >> {t}; head -c 200000 /dev/zero | tr \"\\0\" x; echo end {i} >> {t}'\n",
            t = trace.display()
        ));
    }
    d.write("t.yaml", &yaml);
    d.ok(&["submit", "t.yaml"]);
    d.ok(&["work", "--offline", "-j2"]);
    let lines = fs::read_to_string(&trace).expect("read the trace");
    let (mut running, mut most, mut ended) = (0i32, 0i32, 0);
    for line in lines.lines() {
        match line.split_once(' ').map_or(line, |(what, _)| what) {
            "start" => running += 1,
            "end" => {
                running -= 1;
                ended += 1;
            }
            other => panic!("unexpected line {other:?} in {lines}"),
        }
        most = most.max(running);
    }
    assert_eq!(ended, tasks, "{lines}");
    assert!(most <= 2, "{most} tasks ran at once with -j2:\n{lines}");
    assert_eq!(d.status().counts.get("done"), Some(&(tasks as u64)));
}

/// An attempt's working folder, TMPDIR and logs are emptied when its task
/// ends and kept, under new names, for a later task (no file made per
/// task): the later tasks find them empty, the first one's logs were
/// stored before they were emptied, no more folders are made than jobs
/// are alive at once (one running, one ready, one storing its results,
/// with `-j1`), and no plaintext is left once the worker has stopped.
#[test]
fn issue18_an_attempts_files_are_emptied_and_kept_for_the_next_task() {
    let d = workspace("spares");
    // `first` runs first (highest priority): secrets in its folder (a
    // hidden file, a sub-folder), its TMPDIR and a log longer than an
    // attempt's tail (so it is stored as a blob, read from the log file).
    let first = "mkdir -p sub/deeper && echo SECRET-A > sub/deeper/s && echo SECRET-A > .hidden \
        && echo SECRET-A > \"$TMPDIR/t\" && head -c 5000 /dev/zero | tr '\\0' x \
        && echo && echo \"inode=$(stat -c %i .)\" && echo SECRET-A";
    let later = "echo \"folder=$(ls -A | wc -l) tmp=$(ls -A \"$TMPDIR\" | wc -l) \
        log=$(stat -L -c %s /proc/self/fd/1)\"; echo \"inode=$(stat -c %i .)\"";
    d.write(
        "t.yaml",
        &format!(
            "tasks:\n  - name: first\n    priority: 1\n    run: '{}'\n  - name: later\n    matrix: {{ n: [1, 2, 3, 4, 5, 6, 7] }}\n    env: {{ N: \"${{{{ matrix.n }}}}\" }}\n    run: '{}'\n",
            first.replace('\'', "''"),
            later.replace('\'', "''")
        ),
    );
    d.ok(&["submit", "t.yaml"]);
    let r = d.ok(&["work", "--offline", "-j1"]);
    assert_eq!(d.status().count("done"), 8, "{}", r.stderr);
    let first_log = d.ok(&["logs", "first"]).stdout;
    assert!(
        first_log.contains(&"x".repeat(5000)) && first_log.contains("SECRET-A"),
        "the first task's whole log was kept: {first_log}"
    );
    let inode = |log: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix("inode="))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no inode in {log}"))
    };
    let mut inodes = std::collections::BTreeSet::from([inode(&first_log)]);
    for n in 1..=7 {
        let log = d.ok(&["logs", &format!("later[n={n}]")]).stdout;
        assert!(
            log.starts_with("folder=0 tmp=0 log=0\n"),
            "later[n={n}]'s folder, TMPDIR and log start empty: {log}"
        );
        inodes.insert(inode(&log));
    }
    assert!(
        inodes.len() <= 3,
        "8 tasks one at a time made {} folders: {inodes:?}",
        inodes.len()
    );
    let left: Vec<_> = crate::harness::files_under(&d.path(".bridge/work"))
        .into_iter()
        .filter(|p| fs::read(p).is_ok_and(|b| String::from_utf8_lossy(&b).contains("SECRET-A")))
        .collect();
    assert!(left.is_empty(), "plaintext left behind: {left:?}");
}

/// A task that puts links in place of its TMPDIR and inside its working
/// folder (it can without the sandbox) does not make the worker empty or
/// remove what the links point to; its files are not kept for the next
/// task, which gets a real, empty TMPDIR of its own.
#[test]
fn issue18_links_a_task_leaves_are_removed_not_followed() {
    let mut d = workspace("spares-links");
    d.set_env("BRIDGE_SANDBOX", "off");
    let outside = d.scratch("outside");
    fs::create_dir_all(outside.join("inner")).expect("a folder outside");
    fs::write(outside.join("keep"), "keep").expect("a file outside");
    fs::write(outside.join("inner/keep"), "keep").expect("a file outside");
    let swap = "ln -s \"$OUTSIDE\" here && ln -s \"$OUTSIDE/inner\" inner \
        && rm -rf \"$TMPDIR\" && ln -s \"$OUTSIDE\" \"$TMPDIR\"";
    let next = "test -d \"$TMPDIR\" && test ! -L \"$TMPDIR\" && echo \"tmp=$(ls -A \"$TMPDIR\" | wc -l)\" \
        && echo \"folder=$(ls -A | wc -l)\"";
    d.write(
        "t.yaml",
        &format!(
            "tasks:\n  - name: swap\n    env: {{ OUTSIDE: '{}' }}\n    run: '{swap}'\n  - name: next\n    priority: -1\n    run: '{next}'\n",
            outside.display()
        ),
    );
    d.ok(&["submit", "t.yaml"]);
    let r = d.ok(&["work", "--offline", "-j1"]);
    assert_eq!(d.status().count("done"), 2, "{}", r.stderr);
    assert_eq!(
        fs::read_to_string(outside.join("keep")).ok().as_deref(),
        Some("keep")
    );
    assert_eq!(
        fs::read_to_string(outside.join("inner/keep"))
            .ok()
            .as_deref(),
        Some("keep")
    );
    let log = d.ok(&["logs", "next"]).stdout;
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["tmp=0", "folder=0"],
        "{log}"
    );
}

/// A job gets its task ready before it has a slot: with `-j1`, the next
/// task's supervisor waits beside the running one, its task not started.
/// A worker stopped then (SIGTERM) interrupts the running task (an
/// attempt) and gives the ready one's claim back without an attempt:
/// nothing of it ran; no process of either is left.
#[test]
fn issue18_a_task_made_ready_ahead_is_not_run_nor_charged_when_the_worker_stops() {
    let d = workspace("ready-ahead");
    let (long, next) = (marker(7), marker(8));
    d.write(
        "t.yaml",
        &format!(
            "tasks:\n  - name: long\n    priority: 1\n    run: sleep {long}\n  - name: next\n    run: sleep {next}\n"
        ),
    );
    d.ok(&["submit", "t.yaml"]);
    let worker = d.spawn("work", &["work", "--offline", "-j1"]);
    poll("the first task to start", || {
        !processes_with(&long).is_empty()
    });
    let spawner = children_with(worker.pid(), "__task-spawner");
    assert_eq!(spawner.len(), 1, "one spawner below the worker");
    poll("the next task's supervisor to be ready", || {
        children_with(spawner[0], "__task-spawner").len() == 2
    });
    assert!(processes_with(&next).is_empty(), "the next task started");
    worker.terminate();
    let r = worker.wait();
    assert!(processes_with(&long).is_empty() && processes_with(&next).is_empty());
    assert!(
        !cmdline(spawner[0]).contains("__task-spawner"),
        "the spawner outlived its worker"
    );
    let long_attempts = d.show("long")["attempts"].clone();
    let attempts = long_attempts.as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{}", r.stderr);
    assert_eq!(attempts[0]["outcome"], "interrupted");
    let show = d.show("next");
    assert_eq!(show["attempts"].as_array().map(Vec::len), Some(0), "{show}");
    let claims = show["claims"].as_array().expect("claims");
    assert!(
        !claims.is_empty() && claims.iter().all(|c| !c["released_at"].is_null()),
        "its claim was given back: {show}"
    );
    assert_eq!(d.task("next").status, "pending");
}
