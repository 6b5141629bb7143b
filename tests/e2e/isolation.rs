//! What a task can see of the worker that runs it, and what it leaves
//! behind (issue 12, items 5, 6, 17, 23 and 24).
//!
//! CI runs tests as root, and root reads every `/proc/<pid>/environ` and
//! every file: the tests about secrets run `bridge` as the unprivileged user
//! `nobody` (uid 65534) when they run as root, with the device's folders
//! handed to that user. Processes are found through `/proc`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{Device, Run, poll};

/// The unprivileged user the secret tests run `bridge` as (when root).
const NOBODY: u32 = 65534;

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A device whose every folder belongs to `nobody` (when we are root), so
/// that `bridge` can run as that user.
fn unprivileged_device(name: &str) -> Device {
    let d = Device::new(name);
    if running_as_root() {
        chown_tree(d.root_dir());
    }
    d
}

fn chown_tree(dir: &Path) {
    let status = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(dir)
        .status()
        .expect("cannot run chown");
    assert!(status.success(), "chown -R {} failed", dir.display());
}

/// `bridge ARGS` on `d`, as `nobody` when we are root.
fn unprivileged(d: &Device, args: &[&str]) -> Command {
    let mut c = d.command_in(&d.dir, true, args);
    if running_as_root() {
        // std drops supplementary groups when root changes the uid.
        c.uid(NOBODY).gid(NOBODY);
    }
    c
}

fn run_unprivileged(d: &Device, env: &[(&str, &str)], args: &[&str]) -> Run {
    let out = unprivileged(d, args)
        .envs(env.iter().copied())
        .output()
        .expect("cannot start bridge");
    let run = Run {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    run.expect_code(0)
}

/// The identity line in `d`'s identity file (the secret itself).
fn identity_secret(d: &Device) -> String {
    let text = fs::read_to_string(d.identity_file()).expect("cannot read the identity file");
    text.lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .expect("the identity file holds an identity")
        .trim()
        .to_owned()
}

/// Items 5 and 6 (and issue 13): a task run by `bridge work` walks up its
/// parents' `/proc/<pid>/environ` (and reads its own, to show that reading
/// works) and reads every `/proc/*/environ`, and finds none of the secrets
/// the worker was started with; it cannot read the identity file either, as
/// an unprivileged user. With namespaces it does not even see the worker
/// (its `/proc` is its own); with Landlock alone it sees the worker on its
/// chain of parents but cannot read its environment.
///
/// The namespace case runs as whoever runs the tests (root in CI, for whom
/// namespaces always work; root sees nothing either, the worker is in
/// another PID namespace), the Landlock case as `nobody` (root reading a
/// non-dumpable process of root is allowed by the kernel we tested on, 6.18,
/// even under Landlock: see the README).
#[test]
fn issue12_tasks_cannot_read_the_workers_secrets() {
    for (mode, no_namespaces) in [("namespaces", false), ("landlock-only", true)] {
        let as_nobody = no_namespaces && running_as_root();
        let d = if as_nobody {
            unprivileged_device(&format!("leak-{mode}"))
        } else {
            Device::new(&format!("leak-{mode}"))
        };
        let run_as = |env: &[(&str, &str)], args: &[&str]| {
            if as_nobody {
                run_unprivileged(&d, env, args)
            } else {
                d.run_env(env, args).expect_code(0)
            }
        };
        run_as(&[], &["keygen"]);
        run_as(&[], &["init"]);
        let secret = identity_secret(&d);
        // Walks up through every parent it can see, recording each pid and
        // whatever environment it could read, in its own folder.
        let script = format!(
            r#"cat /proc/self/environ | tr '\0' '\n' > seen.self
touch seen.chain seen.env seen.all
pid=$PPID
while [ "$pid" -gt 1 ]; do
  echo $pid >> seen.chain
  cat /proc/$pid/environ 2>/dev/null | tr '\0' '\n' >> seen.env
  pid=$(awk '/^PPid:/ {{print $2}}' /proc/$pid/status)
done
if cat {identity} > seen.identity 2>/dev/null; then echo read; else echo denied > seen.identity; fi
for e in /proc/[0-9]*/environ; do cat $e 2>/dev/null | tr '\0' '\n' >> seen.all; done
true
"#,
            identity = d.identity_file().display(),
        );
        let tasks = format!(
            "tasks:\n  - name: under-work\n    outputs: ['seen.*']\n    run: |\n{}\n",
            script
                .lines()
                .map(|l| format!("      {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        d.write("peek.yaml", &tasks);
        if as_nobody {
            chown_tree(d.root_dir());
        }
        run_as(&[], &["submit", "peek.yaml"]);
        let secrets = [
            ("BRIDGE_IDENTITY", secret.as_str()),
            ("GITHUB_TOKEN", "ghp_issue12secrettoken"),
            ("AWS_SECRET_ACCESS_KEY", "aws-issue12-secret-key"),
        ];
        let mut worker = if as_nobody {
            unprivileged(&d, &["work", "--offline"])
        } else {
            d.command_in(&d.dir, true, &["work", "--offline"])
        };
        worker.envs(secrets.iter().copied());
        if no_namespaces {
            worker.env("BRIDGE_DEBUG_SANDBOX_NO_NAMESPACES", "1");
        }
        let worker = worker
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start bridge work");
        let worker_pid = worker.id();
        let out = worker
            .wait_with_output()
            .expect("cannot wait for bridge work");
        assert!(
            out.status.success(),
            "bridge work failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen = d.scratch(&format!("seen-{mode}"));
        fs::create_dir_all(&seen).expect("cannot create a scratch folder");
        if as_nobody {
            chown_tree(&seen);
        }
        run_as(
            &[],
            &[
                "outputs",
                "under-work",
                "--to",
                seen.to_str().expect("utf-8"),
            ],
        );
        let read = |suffix: &str| {
            fs::read_to_string(seen.join(format!("seen.{suffix}")))
                .unwrap_or_else(|e| panic!("{mode}: seen.{suffix}: {e}"))
        };
        // The task could read environments (its own).
        assert!(read("self").contains("BRIDGE_TASK_ID="), "{}", read("self"));
        let chain: Vec<u32> = read("chain")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if no_namespaces {
            assert!(
                chain.contains(&worker_pid),
                "{mode}: the task's parent chain {chain:?} does not reach the worker {worker_pid}"
            );
        } else {
            assert!(
                chain.is_empty(),
                "{mode}: the task sees parents {chain:?} outside its namespace"
            );
        }
        for text in [read("env"), read("all")] {
            for (name, value) in &secrets {
                assert!(
                    !text.contains(value),
                    "{mode}: a task read {name} from a bridge process's environment"
                );
            }
        }
        assert_eq!(
            read("identity").trim(),
            "denied",
            "{mode}: a task read the identity file"
        );
    }
}

/// Item 6: a task cannot read the identity file nor the workspace's
/// `.bridge/` folder, and a normal task with an input and an output still
/// works, as an unprivileged user.
#[test]
fn issue12_tasks_cannot_read_the_identity_but_still_work() {
    let d = unprivileged_device("confined");
    run_unprivileged(&d, &[], &["keygen"]);
    run_unprivileged(&d, &[], &["init"]);
    let identity = d.identity_file();
    let store_format = d.store().join("FORMAT");
    assert!(store_format.exists(), "the replica has a FORMAT file");
    d.write("data/in.txt", "three little words\n");
    d.write(
        "tasks.yaml",
        &format!(
            "tasks:\n\
             \x20 - name: steal\n\
             \x20   run: cat {identity} > stolen.txt; cat {store} >> stolen.txt; cp {identity} copy.txt; true\n\
             \x20   outputs: [stolen.txt, copy.txt]\n\
             \x20 - name: count\n\
             \x20   run: wc -w < data/in.txt | tr -d ' ' > count.txt\n\
             \x20   inputs: [data/in.txt]\n\
             \x20   outputs: [count.txt]\n",
            identity = identity.display(),
            store = store_format.display(),
        ),
    );
    if running_as_root() {
        chown_tree(d.root_dir());
    }
    run_unprivileged(&d, &[], &["submit", "tasks.yaml"]);
    run_unprivileged(&d, &[], &["work", "--offline"]);
    let to = d.scratch("out");
    fs::create_dir_all(&to).expect("mkdir");
    if running_as_root() {
        chown_tree(&to);
    }
    run_unprivileged(
        &d,
        &[],
        &["outputs", "steal", "--to", to.to_str().expect("utf-8")],
    );
    run_unprivileged(
        &d,
        &[],
        &["outputs", "count", "--to", to.to_str().expect("utf-8")],
    );
    let stolen = fs::read_to_string(to.join("stolen.txt")).unwrap_or_default();
    assert!(
        !stolen.contains(&identity_secret(&d)),
        "a task read the identity file"
    );
    assert!(stolen.is_empty(), "a task read from .bridge/: {stolen:?}");
    assert!(!to.join("copy.txt").exists(), "a task copied the identity");
    assert_eq!(
        fs::read_to_string(to.join("count.txt"))
            .expect("count.txt")
            .trim(),
        "3"
    );
}

/// Item 17: the identity file must be a regular, private file of bounded
/// size; anything else is refused at once with a hint, never hangs, never
/// eats memory.
#[test]
fn issue12_identity_file_must_be_a_private_regular_file() {
    let d = Device::new("identity-file");
    d.ok(&["keygen"]);
    let path = d.identity_file();
    let good = fs::read(&path).expect("identity");

    // Readable by others: refused with the chmod hint.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let r = d.run(&["whoami"]);
    assert_ne!(
        r.code, 0,
        "a world-readable identity was used: {}",
        r.stdout
    );
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&path.display().to_string()),
        "{}",
        r.stderr
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    d.ok(&["whoami"]);

    // A FIFO (nobody ever writes to it) and a link to /dev/zero: refused
    // promptly (a spawned command polled to exit, never a hang).
    fs::remove_file(&path).expect("rm");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    // `whoami` as a spawned process, polled (bounded) to exit: refused,
    // saying `why`.
    let refused = |label: &str, why: &str| {
        let r = d.spawn(label, &["whoami"]).wait();
        assert_ne!(r.code, 0, "{label}: {}", r.stdout);
        assert!(r.stderr.contains(why), "{label}: {}", r.stderr);
    };
    refused("fifo", "not a regular file");
    fs::remove_file(&path).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink");
    refused("zero", "not a regular file");

    // A huge (sparse) file is refused by size, without reading it.
    fs::remove_file(&path).expect("rm");
    let f = fs::File::create(&path).expect("create");
    f.set_len(4 * 1024 * 1024 * 1024).expect("set_len");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    refused("big", "larger than");

    // A link to a good, private file is followed.
    fs::remove_file(&path).expect("rm");
    let real = d.scratch("identity.real");
    fs::write(&real, &good).expect("write");
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::symlink(&real, &path).expect("symlink");
    d.ok(&["whoami"]);

    // BRIDGE_IDENTITY is bounded too.
    // Below the kernel's limit for one variable (128 KiB).
    let huge = "x".repeat(100 * 1024);
    let r = d.run_env(&[("BRIDGE_IDENTITY", &huge)], &["whoami"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("longer than"), "{}", r.stderr);
}

/// Sibling of item 17: bridge.toml and task files that are FIFOs are
/// refused, not waited on.
#[test]
fn issue12_config_and_task_files_that_are_fifos_are_refused() {
    let d = Device::new("fifo-files");
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    let tasks = d.path("tasks.yaml");
    nix::unistd::mkfifo(&tasks, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let r = d.spawn("submit", &["submit", "tasks.yaml"]).wait();
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    let config = d.path("bridge.toml");
    fs::remove_file(&config).expect("rm");
    nix::unistd::mkfifo(&config, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let r = d.spawn("status", &["status"]).wait();
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
}

/// The processes whose command line holds `marker`.
pub(crate) fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// A unique `sleep` duration, so that the test finds exactly its own
/// processes (`sleep 100000.<n>` never ends by itself).
fn marker(tag: u32) -> String {
    // Fixed width, so that no test's marker is a prefix of another's.
    format!("100000.{}{tag:03}", std::process::id())
}

/// A task that leaves a `setsid` child and a double-forked daemon behind,
/// then runs `tail` (`sleep 30` or nothing).
fn escaping_task(name: &str, m: &str, tail: &str, timeout: &str) -> String {
    format!(
        "tasks:\n  - name: {name}\n    timeout: {timeout}\n    run: setsid sleep {m} > /dev/null 2>&1 & (setsid sh -c 'sleep {m} & ' > /dev/null 2>&1 &); sleep {m}1 > /dev/null 2>&1 & echo started; {tail}\n"
    )
}

fn assert_no_processes_left(m: &str, when: &str) {
    poll(&format!("no process of the task left {when}"), || {
        processes_with(m).is_empty()
    });
}

/// Item 24: a task's processes never outlive it: not after it exits, nor
/// after its timeout.
#[test]
fn issue12_task_processes_die_with_the_task() {
    let d = Device::new("reaper");
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    let m = marker(1);
    d.write("exit.yaml", &escaping_task("exits", &m, "true", "1m"));
    d.ok(&["submit", "exit.yaml"]);
    d.ok(&["work", "--offline"]);
    assert_eq!(d.task("exits").status, "done");
    assert_no_processes_left(&m, "after it exited");

    let m = marker(2);
    d.write(
        "timeout.yaml",
        &escaping_task("times-out", &m, "sleep 30", "1s"),
    );
    d.ok(&["submit", "timeout.yaml"]);
    let r = d.run(&["work", "--offline"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_no_processes_left(&m, "after its timeout");
}

/// Item 24: stopping the worker (SIGTERM, a second SIGTERM, SIGKILL) leaves
/// none of a running task's processes behind.
#[test]
fn issue12_task_processes_die_with_the_worker() {
    for (i, how) in ["term", "term-twice", "kill"].into_iter().enumerate() {
        // A device each: an interrupted task is pending again, and a later
        // worker could pick it instead of the new one.
        let d = Device::new(&format!("reaper-{how}"));
        d.ok(&["keygen"]);
        d.ok(&["init"]);
        let m = marker(10 + i as u32);
        let name = format!("stopped-{how}");
        d.write("t.yaml", &escaping_task(&name, &m, "sleep 600", "1h"));
        d.ok(&["submit", "t.yaml"]);
        let worker = d.spawn(how, &["work", "--offline"]);
        // The task's own `sleep {m}1` plus the escaped ones.
        poll(&format!("the processes of task {name} to start"), || {
            processes_with(&m).len() >= 3
        });
        match how {
            "term" => {
                worker.terminate();
                worker.wait();
            }
            "term-twice" => {
                worker.terminate();
                // The second signal must come after the first was seen.
                poll("the worker to start stopping", || {
                    fs::read_to_string(d.scratch("term-twice.stderr"))
                        .is_ok_and(|e| e.contains("stopping"))
                });
                worker.terminate();
                worker.wait();
            }
            _ => {
                worker.kill();
            }
        }
        assert_no_processes_left(&m, &format!("after the worker got {how}"));
    }
}

/// Item 23: folders of attempts killed with their worker are removed at the
/// next worker's start, while a live worker's folder stays.
#[test]
fn issue12_killed_attempts_leave_no_task_folders() {
    let d = Device::new("workdirs");
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    d.write(
        "t.yaml",
        // Different commands: a task's identity is its content.
        "tasks:\n  - name: live\n    run: echo live > secret.txt; sleep 600\n  - name: killed\n    run: echo killed > secret.txt; sleep 600\n",
    );
    d.ok(&["submit", "t.yaml"]);
    let work = d.path(".bridge/work");
    let secrets_now = || -> Vec<std::path::PathBuf> {
        crate::harness::files_under(&work)
            .into_iter()
            .filter(|p| p.ends_with("secret.txt"))
            .collect()
    };
    let live = d.spawn("live", &["work", "--offline", "-j1", "--max-tasks", "1"]);
    poll("the first task to start", || secrets_now().len() == 1);
    let live_secret = secrets_now().remove(0);
    let killed = d.spawn("killed", &["work", "--offline", "-j1", "--max-tasks", "1"]);
    poll("the second task to start", || secrets_now().len() == 2);
    killed.kill();
    // Every other secret.txt than the first worker's is the killed one's.
    let dead: Vec<_> = secrets_now()
        .into_iter()
        .filter(|p| p != &live_secret)
        .collect();
    assert_eq!(dead.len(), 1, "the killed worker's folder is still there");
    // A new worker (nothing to run: both tasks are claimed) cleans up.
    d.ok(&["work", "--offline", "--max-tasks", "0"]);
    assert!(!dead[0].exists(), "{} survived", dead[0].display());
    assert!(live_secret.exists(), "a live worker's folder was removed");
    live.kill();
    d.ok(&["work", "--offline", "--max-tasks", "0"]);
    assert!(secrets_now().is_empty(), "{:?}", secrets_now());
}

/// Each task gets a `TMPDIR` of its own beside its working folder (the
/// sandbox closes the worker's `/tmp`), usable by `mktemp`, unseen by its
/// output globs and removed when the task ends; a task that sets `TMPDIR`
/// in its `env` keeps its own.
#[test]
fn tasks_get_a_private_tmpdir_that_goes_with_them() {
    let d = Device::new("tmpdir");
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    d.write(
        "t.yaml",
        "tasks:\n\
         \x20 - name: temp\n\
         \x20   run: f=$(mktemp) && echo hello > \"$f\" && echo \"$f\" > where.txt && cat \"$f\" >> where.txt\n\
         \x20   outputs: ['**']\n\
         \x20 - name: own\n\
         \x20   env: { TMPDIR: /var/tmp }\n\
         \x20   run: echo \"$TMPDIR\" > where.txt\n\
         \x20   outputs: [where.txt]\n",
    );
    d.ok(&["submit", "t.yaml"]);
    d.ok(&["work", "--offline"]);
    let to = d.scratch("out");
    d.ok(&["outputs", "temp", "--to", to.to_str().expect("utf-8")]);
    let kept: Vec<_> = crate::harness::files_under(&to);
    assert_eq!(
        kept,
        vec![to.join("where.txt")],
        "only the task's own files"
    );
    let text = fs::read_to_string(to.join("where.txt")).expect("where.txt");
    let mut lines = text.lines();
    let temp = Path::new(lines.next().expect("the temp file's path"));
    assert_eq!(lines.next(), Some("hello"));
    let work = d.path(".bridge/work");
    assert!(
        temp.starts_with(&work),
        "{} is not under {}",
        temp.display(),
        work.display()
    );
    assert!(!temp.exists(), "the temporary file outlived its task");
    let own = d.scratch("own");
    d.ok(&["outputs", "own", "--to", own.to_str().expect("utf-8")]);
    assert_eq!(
        fs::read_to_string(own.join("where.txt"))
            .expect("where.txt")
            .trim(),
        "/var/tmp"
    );
}
