//! Tests with real processes in temporary folders.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::*;

/// A temporary task folder with its logs next to (not inside) the workdir.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("work")).unwrap();
        Fixture { dir }
    }

    fn workdir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn command(&self, program: Program) -> TaskCommand {
        let mut env = BTreeMap::new();
        env.insert("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned());
        TaskCommand {
            program,
            env,
            workdir: self.workdir(),
            timeout: Duration::from_secs(60),
            stdout_path: self.dir.path().join("stdout.log"),
            stderr_path: self.dir.path().join("stderr.log"),
            tail_bytes: 4096,
            kill_grace: Duration::from_secs(5),
            supervisor: None,
        }
    }

    fn shell(&self, script: &str) -> TaskCommand {
        self.command(sh(script))
    }
}

fn sh(script: &str) -> Program {
    Program::Shell {
        shell: "sh".to_owned(),
        script: script.to_owned(),
    }
}

fn argv(args: &[&str]) -> Program {
    Program::Argv(args.iter().map(|arg| (*arg).to_owned()).collect())
}

async fn run_ok(cmd: &TaskCommand) -> Finished {
    run(cmd, CancellationToken::new()).await
}

/// Whether `pid` is a live process. A zombie counts as dead: it has exited
/// and only waits for whoever adopted it to reap it.
fn is_alive(pid: Pid) -> bool {
    match kill(pid, None) {
        Err(Errno::ESRCH) => false,
        Err(error) => panic!("kill({pid}, 0): {error}"),
        Ok(()) => match fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z')),
            Err(_) => false,
        },
    }
}

/// Reads a pid a task wrote to `path`, and asserts that the process is gone,
/// allowing a little time because killing and reaping are asynchronous.
async fn assert_dies(path: &Path) {
    let text = fs::read_to_string(path).unwrap();
    let pid = Pid::from_raw(text.trim().parse().unwrap());
    for _ in 0..200 {
        if !is_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = kill(pid, nix::sys::signal::Signal::SIGKILL);
    panic!("grandchild {pid} outlived its task");
}

#[tokio::test]
async fn exit_code_zero_is_success() {
    let fx = Fixture::new();
    let finished = run_ok(&fx.command(argv(&["true"]))).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    assert!(finished.outcome.is_success());
    assert_eq!(finished.stdout_len, 0);
    assert!(finished.stdout_tail.is_empty());
}

#[tokio::test]
async fn exit_code_three_is_passed_through() {
    let fx = Fixture::new();
    let finished = run_ok(&fx.shell("exit 3")).await;
    assert_eq!(finished.outcome, Outcome::Exited(3));
    assert!(!finished.outcome.is_success());
}

#[tokio::test]
async fn killed_by_signal() {
    let fx = Fixture::new();
    let finished = run_ok(&fx.shell("kill -9 $$")).await;
    assert_eq!(finished.outcome, Outcome::Signaled(9));
    assert!(!finished.outcome.is_success());
}

#[tokio::test]
async fn runs_in_workdir() {
    let fx = Fixture::new();
    let finished = run_ok(&fx.command(argv(&["pwd"]))).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    let expected = fs::canonicalize(fx.workdir()).unwrap();
    let printed = String::from_utf8(finished.stdout_tail).unwrap();
    assert_eq!(
        fs::canonicalize(printed.trim_end()).unwrap(),
        expected,
        "pwd printed {printed:?}"
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let fx = Fixture::new();
    let pid_file = fx.dir.path().join("grandchild.pid");
    let mut cmd = fx.shell(&format!(
        "sleep 300 & echo $! > '{}'; sleep 30",
        pid_file.display()
    ));
    cmd.timeout = Duration::from_millis(200);
    let finished = run_ok(&cmd).await;
    assert_eq!(finished.outcome, Outcome::TimedOut);
    assert!(
        finished.duration < Duration::from_secs(30),
        "the task was not killed"
    );
    assert_dies(&pid_file).await;
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() {
    let fx = Fixture::new();
    let mut cmd = fx.shell("trap '' TERM; sleep 30; exit 0");
    cmd.timeout = Duration::from_millis(200);
    cmd.kill_grace = Duration::from_millis(200);
    let finished = run_ok(&cmd).await;
    assert_eq!(finished.outcome, Outcome::TimedOut);
    assert!(
        finished.duration < Duration::from_secs(30),
        "the task was not killed"
    );
}

#[tokio::test]
async fn cancel_interrupts_and_kills_the_group() {
    let fx = Fixture::new();
    let pid_file = fx.dir.path().join("grandchild.pid");
    let cmd = fx.shell(&format!(
        "sleep 300 & echo $! > '{}'; sleep 30",
        pid_file.display()
    ));
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    let watcher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel();
    });
    let finished = run(&cmd, cancel).await;
    watcher.await.unwrap();
    assert_eq!(finished.outcome, Outcome::Interrupted);
    assert!(
        finished.duration < Duration::from_secs(30),
        "the task was not killed"
    );
    assert_dies(&pid_file).await;
}

#[tokio::test]
async fn already_cancelled_does_not_start() {
    let fx = Fixture::new();
    let marker = fx.workdir().join("ran");
    let cmd = fx.command(argv(&["touch", marker.to_str().unwrap()]));
    let cancel = CancellationToken::new();
    cancel.cancel();
    let finished = run(&cmd, cancel).await;
    assert_eq!(finished.outcome, Outcome::Interrupted);
    assert!(!marker.exists());
}

#[tokio::test]
async fn background_grandchild_is_killed_after_normal_exit() {
    let fx = Fixture::new();
    let pid_file = fx.dir.path().join("grandchild.pid");
    let cmd = fx.shell(&format!("sleep 300 & echo $! > '{}'", pid_file.display()));
    let finished = run_ok(&cmd).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    assert_dies(&pid_file).await;
}

#[tokio::test]
async fn missing_program_fails_to_start_and_names_it() {
    let fx = Fixture::new();
    let finished = run_ok(&fx.command(argv(&["bridge-no-such-program-xyz", "arg"]))).await;
    let Outcome::FailedToStart(message) = &finished.outcome else {
        panic!("unexpected outcome {:?}", finished.outcome);
    };
    assert!(message.contains("bridge-no-such-program-xyz"), "{message}");
    assert!(message.contains("No such file"), "{message}");
}

#[tokio::test]
async fn missing_shell_fails_to_start_and_names_it() {
    let fx = Fixture::new();
    let cmd = fx.command(Program::Shell {
        shell: "/nonexistent/shell".to_owned(),
        script: "true".to_owned(),
    });
    let finished = run_ok(&cmd).await;
    let Outcome::FailedToStart(message) = &finished.outcome else {
        panic!("unexpected outcome {:?}", finished.outcome);
    };
    assert!(message.contains("/nonexistent/shell"), "{message}");
}

#[tokio::test]
async fn not_executable_fails_to_start() {
    let fx = Fixture::new();
    let script = fx.workdir().join("script.sh");
    fs::write(&script, "#!/bin/sh\ntrue\n").unwrap();
    let finished = run_ok(&fx.command(argv(&[script.to_str().unwrap()]))).await;
    let Outcome::FailedToStart(message) = &finished.outcome else {
        panic!("unexpected outcome {:?}", finished.outcome);
    };
    assert!(message.contains("script.sh"), "{message}");
    assert!(message.contains("Permission denied"), "{message}");
}

#[tokio::test]
async fn missing_workdir_fails_to_start() {
    let fx = Fixture::new();
    let mut cmd = fx.command(argv(&["true"]));
    cmd.workdir = fx.dir.path().join("missing");
    let finished = run_ok(&cmd).await;
    let Outcome::FailedToStart(message) = &finished.outcome else {
        panic!("unexpected outcome {:?}", finished.outcome);
    };
    assert!(message.contains("`true`"), "{message}");
    assert!(message.contains("missing"), "{message}");
}

#[tokio::test]
async fn empty_argv_fails_to_start() {
    let fx = Fixture::new();
    let finished = run_ok(&fx.command(Program::Argv(Vec::new()))).await;
    assert!(matches!(finished.outcome, Outcome::FailedToStart(_)));
}

#[tokio::test]
async fn logs_go_to_files_and_tails_are_the_last_bytes() {
    let fx = Fixture::new();
    let mut cmd = fx.shell("seq 1 3000; seq 1 2000 >&2; echo oops >&2");
    cmd.tail_bytes = 100;
    let finished = run_ok(&cmd).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));

    let expected_stdout: String = (1..=3000).map(|n| format!("{n}\n")).collect();
    let expected_stderr: String =
        (1..=2000).map(|n| format!("{n}\n")).collect::<String>() + "oops\n";
    assert_eq!(
        fs::read_to_string(&cmd.stdout_path).unwrap(),
        expected_stdout
    );
    assert_eq!(
        fs::read_to_string(&cmd.stderr_path).unwrap(),
        expected_stderr
    );

    assert_eq!(finished.stdout_len, expected_stdout.len() as u64);
    assert_eq!(finished.stderr_len, expected_stderr.len() as u64);
    let stdout_bytes = expected_stdout.as_bytes();
    let stderr_bytes = expected_stderr.as_bytes();
    assert_eq!(
        finished.stdout_tail,
        &stdout_bytes[stdout_bytes.len() - 100..]
    );
    assert_eq!(
        finished.stderr_tail,
        &stderr_bytes[stderr_bytes.len() - 100..]
    );
}

#[tokio::test]
async fn short_logs_are_returned_whole_and_old_logs_truncated() {
    let fx = Fixture::new();
    let cmd = fx.shell("echo hello; echo world >&2");
    fs::write(
        &cmd.stdout_path,
        "stale content from an earlier run\n".repeat(100),
    )
    .unwrap();
    let finished = run_ok(&cmd).await;
    assert_eq!(finished.stdout_tail, b"hello\n");
    assert_eq!(finished.stderr_tail, b"world\n");
    assert_eq!(finished.stdout_len, 6);
    assert_eq!(fs::read(&cmd.stdout_path).unwrap(), b"hello\n");
}

#[tokio::test]
async fn environment_is_exactly_what_was_given() {
    let fx = Fixture::new();
    let mut cmd = fx.command(argv(&["env"]));
    cmd.env.clear();
    cmd.env.insert("FOO".to_owned(), "bar".to_owned());
    cmd.env.insert("BRIDGE_TASK".to_owned(), "t1".to_owned());
    let finished = run_ok(&cmd).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    let printed = String::from_utf8(finished.stdout_tail).unwrap();
    let mut lines: Vec<&str> = printed.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["BRIDGE_TASK=t1", "FOO=bar"]);
}

#[tokio::test]
async fn shell_sees_only_the_given_environment() {
    let fx = Fixture::new();
    let finished = run_ok(&fx.shell("echo \"home=${HOME-unset} path=$PATH\"")).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    assert_eq!(
        String::from_utf8(finished.stdout_tail).unwrap(),
        "home=unset path=/usr/local/bin:/usr/bin:/bin\n"
    );
}

#[tokio::test]
async fn stdin_is_null() {
    let fx = Fixture::new();
    let finished = run_ok(&fx.command(argv(&["cat"]))).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    assert_eq!(finished.stdout_len, 0);
}

#[tokio::test]
async fn many_trivial_tasks() {
    let fx = Fixture::new();
    let cmd = fx.command(argv(&["true"]));
    for _ in 0..100 {
        assert_eq!(run_ok(&cmd).await.outcome, Outcome::Exited(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_on_a_multi_thread_runtime() {
    let fx = Fixture::new();
    let mut handles = Vec::new();
    for i in 0..20 {
        let mut cmd = fx.shell(&format!("echo {i}; exit {}", i % 4));
        cmd.stdout_path = fx.dir.path().join(format!("out-{i}.log"));
        cmd.stderr_path = fx.dir.path().join(format!("err-{i}.log"));
        handles.push(tokio::spawn(async move {
            (i, run(&cmd, CancellationToken::new()).await)
        }));
    }
    for handle in handles {
        let (i, finished) = handle.await.unwrap();
        assert_eq!(finished.outcome, Outcome::Exited(i % 4));
        assert_eq!(finished.stdout_tail, format!("{i}\n").as_bytes());
    }
}

// --- collect_outputs ---

fn write(root: &Path, rel: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, rel).unwrap();
}

fn rel_paths(outputs: &[CollectedOutput]) -> Vec<&str> {
    outputs.iter().map(|o| o.rel_path.as_str()).collect()
}

fn globs(globs: &[&str]) -> Vec<String> {
    globs.iter().map(|g| (*g).to_owned()).collect()
}

fn output_tree() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "a.txt",
        "b.log",
        "sub/c.txt",
        "sub/deeper/d.txt",
        "sub/deeper/e.bin",
        "reports/junit.xml",
    ] {
        write(dir.path(), rel);
    }
    dir
}

#[test]
fn star_does_not_cross_folders() {
    let dir = output_tree();
    let outputs = collect_outputs(dir.path(), &globs(&["*.txt"])).unwrap();
    assert_eq!(rel_paths(&outputs), ["a.txt"]);
    assert_eq!(outputs[0].path, dir.path().join("a.txt"));
}

#[test]
fn double_star_crosses_folders() {
    let dir = output_tree();
    let outputs = collect_outputs(dir.path(), &globs(&["**/*.txt"])).unwrap();
    assert_eq!(
        rel_paths(&outputs),
        ["a.txt", "sub/c.txt", "sub/deeper/d.txt"]
    );
    let outputs = collect_outputs(dir.path(), &globs(&["sub/**"])).unwrap();
    assert_eq!(
        rel_paths(&outputs),
        ["sub/c.txt", "sub/deeper/d.txt", "sub/deeper/e.bin"]
    );
    assert_eq!(outputs[1].path, dir.path().join("sub/deeper/d.txt"));
}

#[test]
fn each_file_once_and_sorted() {
    let dir = output_tree();
    let outputs = collect_outputs(
        dir.path(),
        &globs(&["sub/**", "**/*.txt", "./reports/junit.xml", "sub/c.txt"]),
    )
    .unwrap();
    assert_eq!(
        rel_paths(&outputs),
        [
            "a.txt",
            "reports/junit.xml",
            "sub/c.txt",
            "sub/deeper/d.txt",
            "sub/deeper/e.bin"
        ]
    );
}

#[test]
fn unmatched_globs_are_not_errors() {
    let dir = output_tree();
    assert!(
        collect_outputs(dir.path(), &globs(&["*.nothing"]))
            .unwrap()
            .is_empty()
    );
    assert!(collect_outputs(dir.path(), &[]).unwrap().is_empty());
    // Folders themselves are not outputs.
    assert!(
        collect_outputs(dir.path(), &globs(&["sub"]))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn bad_glob_is_named() {
    let dir = output_tree();
    let error = collect_outputs(dir.path(), &globs(&["*.txt", "out/[a-"])).unwrap_err();
    assert!(matches!(&error, OutputError::BadGlob { glob, .. } if glob == "out/[a-"));
    assert!(error.to_string().contains("out/[a-"), "{error}");
}

#[test]
fn globs_outside_the_workdir_are_rejected() {
    let dir = output_tree();
    for glob in ["/etc/*", "../*.txt", "sub/../../x"] {
        let error = collect_outputs(dir.path(), &globs(&[glob])).unwrap_err();
        assert!(
            matches!(&error, OutputError::OutsideWorkdir { glob: g } if g == glob),
            "{error}"
        );
    }
}

#[test]
fn symlinks_are_skipped_and_not_followed() {
    let dir = output_tree();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.txt");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link-dir")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("a.txt"), dir.path().join("link.txt")).unwrap();
    let outputs = collect_outputs(dir.path(), &globs(&["**"])).unwrap();
    assert_eq!(
        rel_paths(&outputs),
        [
            "a.txt",
            "b.log",
            "reports/junit.xml",
            "sub/c.txt",
            "sub/deeper/d.txt",
            "sub/deeper/e.bin"
        ]
    );
}

#[cfg(target_os = "linux")]
#[test]
fn task_dies_with_the_thread_that_spawned_it() {
    let fx = Fixture::new();
    let pid_file = fx.dir.path().join("child.pid");
    let cmd = fx.shell(&format!(
        "echo $$ > '{}'; exec sleep 300",
        pid_file.display()
    ));
    let pid_file_in_thread = pid_file.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut task = Box::pin(run(&cmd, CancellationToken::new()));
        runtime.block_on(async {
            tokio::select! {
                finished = &mut task => panic!("task ended early: {finished:?}"),
                () = async {
                    while fs::read_to_string(&pid_file_in_thread).map_or(true, |s| s.trim().is_empty()) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                } => {}
            }
        });
        // Simulates a worker killed with SIGKILL: no drop guard runs, only the
        // kernel's parent-death signal can stop the task.
        std::mem::forget(task);
    })
    .join()
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(assert_dies(&pid_file));
}
