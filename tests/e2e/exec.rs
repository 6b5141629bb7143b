//! Issue 17, item 0: `bridge exec` offloads one command and stands in for
//! it: its output, its files and its exit code come back as if it ran
//! here, an identical done task is a cache hit, Ctrl-C cancels it.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use crate::harness::{BRIDGE, Device};

/// `make` with `CC` set to `bridge exec -- cc`, in the device's workspace.
fn make(d: &Device) -> std::process::Output {
    let cmd = d.command_in(&d.dir, false, &[]);
    let env: Vec<(String, String)> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
        .collect();
    Command::new("make")
        .env_clear()
        .envs(env)
        .arg(format!("CC={BRIDGE} exec -- cc"))
        .current_dir(&d.dir)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run make")
}

#[test]
fn make_builds_a_program_through_the_pool_and_a_second_build_is_a_cache_hit() {
    for tool in ["make", "cc"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "this test needs {tool}");
    }
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write(
        "hello.c",
        "#include <stdio.h>\nint main(void) { puts(\"hello from the pool\"); return 0; }\n",
    );
    d.write(
        "Makefile",
        "hello: hello.o\n\t$(CC) hello.o -o hello\nhello.o: hello.c\n\t$(CC) -c hello.c -o hello.o\n",
    );
    let built = make(&d);
    assert!(built.status.success(), "{built:?}");
    // The program came back, runnable, and it is the one built here.
    let ran = Command::new(d.path("hello"))
        .output()
        .expect("cannot run hello");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "hello from the pool\n"
    );
    let tasks = d.ls();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert!(tasks.iter().all(|t| t.status == "done"), "{tasks:?}");
    // Again from scratch: the same two tasks, already done, no new attempt.
    std::fs::remove_file(d.path("hello")).expect("remove hello");
    std::fs::remove_file(d.path("hello.o")).expect("remove hello.o");
    let again = make(&d);
    assert!(again.status.success(), "{again:?}");
    assert!(d.path("hello").is_file() && d.path("hello.o").is_file());
    let after = d.ls();
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|t| t.attempts == 1), "{after:?}");
}

#[test]
fn exec_passes_on_output_and_exit_code() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    let run = d.run(&["exec", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert_eq!(run.stdout, "out\n");
    assert!(run.stderr.contains("err"), "{}", run.stderr);
    let ok = d.run(&["exec", "--", "echo", "fine"]).expect_code(0);
    assert_eq!(ok.stdout, "fine\n");
}

#[test]
fn ctrl_c_cancels_the_task() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    let mut cmd = d.command_in(
        &d.dir,
        true,
        &["exec", "--", "sh", "-c", "echo started; sleep 60"],
    );
    // Its own process group, as a terminal's foreground job: Ctrl-C
    // reaches every process of it.
    cmd.stdout(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().expect("cannot start bridge exec");
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(line, "started\n");
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let status = child.wait().expect("bridge exec ends");
    assert_eq!(status.code(), Some(130));
    let tasks = d.ls();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].status, "cancelled", "{tasks:?}");
}

#[test]
fn exec_refuses_to_wait_for_runners_offline() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    let run = d
        .run(&["exec", "--on", "runners", "--offline", "--", "true"])
        .expect_code(1);
    assert!(
        run.stderr.contains("no runner could ever see the task"),
        "{}",
        run.stderr
    );
    assert_eq!(d.ls().len(), 0, "nothing was submitted");
}
