//! The task sandbox (issue 13, point 1): what a task can read, write and
//! reach, with namespaces and with Landlock alone (the fallback where
//! unprivileged user namespaces are refused, forced here with a debug-only
//! variable), the `[worker] sandbox` policy, `[worker] allow-read`, and the
//! `network:` and `allow-read:` task fields.
//!
//! These tests run as whoever runs the tests (root in CI): Landlock confines
//! root too, so root is the harder case. Each test that shows a denial also
//! runs the same task with the sandbox off where that makes the denial
//! meaningful (the task *could* do it otherwise).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::{Device, poll};

/// Forces the Landlock-only sandbox (debug builds only).
const NO_NAMESPACES: (&str, &str) = ("BRIDGE_DEBUG_SANDBOX_NO_NAMESPACES", "1");
/// Pretends the kernel has no Landlock (debug builds only).
const NO_LANDLOCK: (&str, &str) = ("BRIDGE_DEBUG_SANDBOX_NO_LANDLOCK", "1");

/// The two sandboxes: with namespaces (this machine must allow them: CI
/// runs as root, for whom they always work), and Landlock alone.
fn modes() -> [(&'static str, Vec<(&'static str, &'static str)>); 2] {
    [
        ("namespaces", vec![]),
        ("landlock-only", vec![NO_NAMESPACES]),
    ]
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A device below `/var/tmp`, so that its tasks get a private `/tmp` in
/// namespaces (a workspace below `/tmp` would be hidden by that mount).
fn device_outside_tmp(name: &str) -> Device {
    let d = Device::new_in(name, Path::new("/var/tmp"));
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    d
}

fn device(name: &str) -> Device {
    let d = Device::new(name);
    d.ok(&["keygen"]);
    d.ok(&["init"]);
    d
}

/// A task file with one shell task per `(name, script)`, the script
/// indented as a YAML block.
fn task_file(tasks: &[(&str, &str, &str)]) -> String {
    let mut out = String::from("tasks:\n");
    for (name, extra, script) in tasks {
        out.push_str(&format!("  - name: {name}\n"));
        for line in extra.lines() {
            out.push_str(&format!("    {line}\n"));
        }
        out.push_str("    run: |\n");
        for line in script.lines() {
            out.push_str(&format!("      {line}\n"));
        }
    }
    out
}

/// The task's stdout, as `bridge logs --stdout` prints it.
fn stdout_of(d: &Device, task: &str) -> String {
    d.ok(&["logs", "--stdout", task]).stdout
}

/// Submits with `args` (plus `--json`) and returns the first task's id.
fn submit_id(d: &Device, args: &[&str]) -> String {
    let mut all = vec!["submit", "--json"];
    all.extend_from_slice(args);
    let v = d.ok(&all).json();
    v["tasks"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task id in {v}"))
        .to_owned()
}

/// The device's home folder (its HOME).
fn home(d: &Device) -> PathBuf {
    d.root_dir().join("home")
}

/// Item 5: a task can read neither the identity file, nor `~/.ssh`, nor a
/// file in `$HOME`, nor list the home folder or the workspace; it can write
/// nowhere but its own folder (not the home folder, the workspace, the
/// configuration folder, a scratch folder, nor the host's `/tmp`), in both
/// sandboxes. With the sandbox off, the same task does all of it.
#[test]
fn issue13_a_task_reaches_nothing_outside_its_folder() {
    for (mode, env) in modes() {
        let d = device_outside_tmp(&format!("reach-{mode}"));
        let home = home(&d);
        fs::create_dir_all(home.join(".ssh")).expect("mkdir .ssh");
        fs::write(home.join(".ssh/id_ed25519"), "ssh-private-key\n").expect("write key");
        fs::write(home.join("notes.txt"), "private notes\n").expect("write notes");
        fs::create_dir_all(d.scratch("")).expect("mkdir scratch");
        let host_tmp = PathBuf::from(format!("/tmp/bridge-issue13-{}-{mode}", std::process::id()));
        let _ = fs::remove_file(&host_tmp);
        let targets = [
            ("read", d.identity_file()),
            ("read", home.join(".ssh/id_ed25519")),
            ("read", home.join("notes.txt")),
            ("read", d.path("bridge.toml")),
            ("list", home.clone()),
            ("list", d.dir.clone()),
            ("list", d.path(".bridge")),
            ("write", home.join("evil.txt")),
            ("write", d.path("evil.txt")),
            ("write", d.config_dir().join("evil.txt")),
            ("write", d.scratch("evil.txt")),
            ("write", host_tmp.clone()),
        ];
        let mut script = String::from(
            "r() { cat \"$1\" >/dev/null 2>&1 && echo \"did read $1\"; }\n\
             l() { ls \"$1\" >/dev/null 2>&1 && echo \"did list $1\"; }\n\
             w() { (echo x > \"$1\") 2>/dev/null && echo \"did write $1\"; }\n",
        );
        for (how, path) in &targets {
            let f = &how[..1];
            script.push_str(&format!("{f} '{}'\n", path.display()));
        }
        script.push_str("echo mine > mine.txt && echo own-folder-ok\n");
        d.write(
            "t.yaml",
            &task_file(&[("reach", "outputs: [mine.txt]", &script)]),
        );
        d.ok(&["submit", "t.yaml"]);
        let r = d.run_env(&env, &["work", "--offline"]);
        assert_eq!(r.code, 0, "{mode}: {}", r.stderr);
        let out = stdout_of(&d, "reach");
        assert!(out.contains("own-folder-ok"), "{mode}: {out}");
        // With namespaces, /tmp is the task's own: writing there is fine,
        // as long as the host's /tmp never sees it (checked below).
        let escaped: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("did "))
            .filter(|l| !(mode == "namespaces" && l.ends_with(&host_tmp.display().to_string())))
            .collect();
        assert!(
            escaped.is_empty(),
            "{mode}: the sandboxed task got out: {escaped:?}"
        );
        for (how, path) in &targets {
            if *how == "write" {
                assert!(!path.exists(), "{mode}: a task wrote {}", path.display());
            }
        }

        // The control: unsandboxed, the same task reaches all of it.
        let rerun = submit_id(&d, &["--rerun", "t.yaml"]);
        let mut off = env.clone();
        off.push(("BRIDGE_SANDBOX", "off"));
        let r = d.run_env(&off, &["work", "--offline"]);
        assert_eq!(r.code, 0, "{mode}: {}", r.stderr);
        assert!(r.stderr.contains("sandbox is off"), "{}", r.stderr);
        let out = stdout_of(&d, &rerun);
        for (how, path) in &targets {
            let line = format!("did {how} {}", path.display());
            assert!(
                out.contains(&line),
                "{mode}: unsandboxed, `{line}` is missing:\n{out}"
            );
        }
        let _ = fs::remove_file(&host_tmp);
    }
}

/// Item 5: a task cannot read another running task's folder, even knowing
/// its path (it finds it: looking a path up is not reading it).
#[test]
fn issue13_a_task_cannot_read_another_tasks_folder() {
    for (mode, env) in modes() {
        let mut d = device(&format!("other-{mode}"));
        for (k, v) in &env {
            d.set_env(k, v);
        }
        // `holder` keeps a secret in its folder until the test lets it go.
        d.write(
            "a.yaml",
            &task_file(&[(
                "holder",
                "",
                "echo holder-secret > secret.txt\nwhile [ ! -e release ]; do sleep 0.05; done",
            )]),
        );
        let holder = d.ok(&["submit", "--json", "a.yaml"]).json();
        let holder_id = holder["tasks"][0]["id"].as_str().expect("an id").to_owned();
        let short = &holder_id[..10];
        // `peeker` runs beside it in the same worker: the holder's folder is
        // `<its parent>/<holder's short id>-<writer>-<n>`, the writer being
        // the peeker's own (BRIDGE_ATTEMPT is `<writer>.<n>`).
        let script = format!(
            "writer=${{BRIDGE_ATTEMPT%.*}}\n\
             parent=$(dirname \"$PWD\")\n\
             found=''\n\
             i=0\n\
             while [ -z \"$found\" ] && [ $i -lt 400 ]; do\n\
             \x20 for n in 1 2 3 4; do\n\
             \x20   p=\"$parent/{short}-$writer-$n/secret.txt\"\n\
             \x20   [ -e \"$p\" ] && found=\"$p\"\n\
             \x20 done\n\
             \x20 i=$((i+1)); sleep 0.05\n\
             done\n\
             echo \"found:$found\"\n\
             cat \"$found\" 2>/dev/null || echo denied\n\
             ls \"$parent\" >/dev/null 2>&1 && echo listed-parent\n\
             true"
        );
        d.write("b.yaml", &task_file(&[("peeker", "priority: -1", &script)]));
        d.ok(&["submit", "b.yaml"]);
        let worker = d.spawn(&format!("work-{mode}"), &["work", "--offline", "-j", "2"]);
        poll("the peeker to finish", || {
            d.ls()
                .iter()
                .any(|t| t.name == "peeker" && t.status == "done")
        });
        // Let the holder go.
        let secrets = crate::harness::files_under(&d.path(".bridge/work"))
            .into_iter()
            .filter(|p| p.ends_with("secret.txt"))
            .collect::<Vec<_>>();
        for s in &secrets {
            fs::write(s.with_file_name("release"), "").expect("release");
        }
        let r = worker.wait();
        assert_eq!(r.code, 0, "{}", r.stderr);
        let out = stdout_of(&d, "peeker");
        assert!(
            out.contains("found:/") && out.contains("secret.txt"),
            "{mode}: the peeker did not find the holder's folder: {out}"
        );
        assert!(out.contains("denied"), "{mode}: {out}");
        assert!(
            !out.contains("holder-secret"),
            "{mode}: read another task's file: {out}"
        );
        assert!(!out.contains("listed-parent"), "{mode}: {out}");
    }
}

/// Item 2: with namespaces a task sees no other process: its `/proc` lists
/// only its own (PID 1 is its supervisor), its chain of parents ends there,
/// and no environment it can read holds the secret the worker was started
/// with. Unsandboxed, root sees and reads the worker. (Landlock alone, where
/// the worker is visible but its environment is not readable, is covered,
/// as an unprivileged user, by `isolation::issue12_tasks_cannot_read_the_workers_secrets`.)
#[test]
fn issue13_with_namespaces_a_task_sees_only_its_own_processes() {
    let secret = format!("issue13-worker-secret-{}", std::process::id());
    let script = "pid=$PPID\n\
                  chain=''\n\
                  while [ \"$pid\" -gt 1 ]; do\n\
                  \x20 chain=\"$chain $pid\"\n\
                  \x20 pid=$(awk '/^PPid:/ {print $2}' /proc/$pid/status)\n\
                  done\n\
                  echo \"chain:$chain\"\n\
                  for e in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $e 2>/dev/null; done | grep -c AWS_SECRET_ACCESS_KEY=issue13 || true\n\
                  echo \"procs:$(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' ')\"";
    let mut d = device("own-processes");
    d.set_env("AWS_SECRET_ACCESS_KEY", &secret);
    d.write("t.yaml", &task_file(&[("peek", "", script)]));
    let first = submit_id(&d, &["t.yaml"]);
    let worker = d.spawn("work", &["work", "--offline"]);
    let worker_pid = worker.pid();
    let r = worker.wait();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let parse = |out: &str| {
        let line = |prefix: &str| -> Vec<u32> {
            out.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` in {out}"))
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        };
        let found: u32 = out
            .lines()
            .find_map(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count in {out}"));
        (line("chain:"), line("procs:"), found)
    };
    let (chain, procs, found) = parse(&stdout_of(&d, &first));
    assert_eq!(found, 0, "a task read the worker's environment");
    assert!(chain.is_empty(), "the task sees its parents {chain:?}");
    assert!(!procs.contains(&worker_pid), "{procs:?}");
    // PID 1 (its supervisor), the shell, and the `ls` pipeline.
    assert!(procs.len() <= 6 && procs.contains(&1), "{procs:?}");

    // The control: unsandboxed, the worker is there to be read (by root,
    // who may read a non-dumpable process).
    let rerun = submit_id(&d, &["--rerun", "t.yaml"]);
    d.set_env("BRIDGE_SANDBOX", "off");
    let worker = d.spawn("work-off", &["work", "--offline"]);
    let worker_pid = worker.pid();
    assert_eq!(worker.wait().code, 0);
    let (chain, procs, found) = parse(&stdout_of(&d, &rerun));
    assert!(chain.contains(&worker_pid), "{chain:?}");
    assert!(procs.contains(&worker_pid), "{procs:?}");
    if running_as_root() {
        assert!(
            found > 0,
            "unsandboxed root should read the worker's environment"
        );
    }
}

/// Item 2: `network: false` cuts a task off (it cannot connect to a
/// listener on 127.0.0.1), in both sandboxes; a task with the default
/// network connects.
#[test]
fn issue13_network_false_cannot_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local address").port();
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    for (mode, env) in modes() {
        let d = device(&format!("net-{mode}"));
        d.write(
            "t.yaml",
            &task_file(&[
                ("online", "shell: bash", &connect),
                ("offline", "shell: bash\nnetwork: false", &connect),
            ]),
        );
        d.ok(&["submit", "t.yaml"]);
        let r = d.run_env(&env, &["work", "--offline"]);
        assert_eq!(r.code, 3, "{mode}: the offline task fails: {}", r.stderr);
        assert_eq!(d.task("online").status, "done", "{mode}");
        assert!(stdout_of(&d, "online").contains("connected"));
        assert_eq!(d.task("offline").status, "failed", "{mode}");
        assert!(!stdout_of(&d, "offline").contains("connected"));
    }
    drop(listener);

    // Neither a network namespace nor Landlock's TCP rules (simulated): the
    // task is left for another device, the others run.
    let d = device("net-unenforceable");
    d.write(
        "t.yaml",
        &task_file(&[
            ("online", "", "true"),
            ("offline", "network: false", "true"),
        ]),
    );
    d.ok(&["submit", "t.yaml"]);
    let r = d.run_env(
        &[NO_NAMESPACES, ("BRIDGE_DEBUG_SANDBOX_NO_LANDLOCK_TCP", "1")],
        &["work", "--offline"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(d.task("online").status, "done");
    assert_eq!(
        d.task("offline").status,
        "pending",
        "claimed without a way to cut it off"
    );
}

/// Item 5: a normal shell task and a Python task, with an input, outputs,
/// `needs:`, `mktemp`, a hard-coded `/tmp` file (namespaces: the task's
/// own `/tmp`, which the host never sees) and multiprocessing (which needs
/// `/dev/shm`), pass sandboxed.
#[test]
fn issue13_normal_tasks_work_sandboxed() {
    for (mode, env) in modes() {
        let mut d = device_outside_tmp(&format!("normal-{mode}"));
        // The system's Python: a toolchain in another user's home is not
        // this device's to grant.
        d.set_env("PATH", "/usr/local/bin:/usr/bin:/bin");
        let tmp_name = format!("bridge-issue13-{}-{mode}.txt", std::process::id());
        let fixed_tmp = if mode == "namespaces" {
            format!("echo in-tmp > /tmp/{tmp_name} && cat /tmp/{tmp_name} >> out/words.txt\n")
        } else {
            // Without namespaces there is no private /tmp: TMPDIR is it.
            format!(
                "echo in-tmp > \"$TMPDIR/{tmp_name}\" && cat \"$TMPDIR/{tmp_name}\" >> out/words.txt\n"
            )
        };
        d.write("data/in.txt", "three little words\n");
        d.write(
            "count.py",
            "import multiprocessing, os, sys, tempfile\n\
             words = open(sys.argv[1]).read().split()\n\
             with tempfile.NamedTemporaryFile('w', delete=False) as f:\n\
             \x20   f.write('x')\n\
             with multiprocessing.Pool(2) as pool:\n\
             \x20   lengths = pool.map(len, words)\n\
             open('result.txt', 'w').write(f'{len(words)} {sum(lengths)}\\n')\n",
        );
        let prep = format!(
            "mkdir -p out\n\
             f=$(mktemp) && echo temp > \"$f\"\n\
             cat data/in.txt > out/words.txt\n\
             {fixed_tmp}"
        );
        d.write(
            "t.yaml",
            &task_file(&[
                ("prep", "inputs: [data/in.txt]\noutputs: ['out/*']", &prep),
                (
                    "py",
                    "inputs: [count.py]\nneeds: [prep]\noutputs: [result.txt]",
                    "python3 count.py needs/prep/out/words.txt",
                ),
            ]),
        );
        d.ok(&["submit", "t.yaml"]);
        let r = d.run_env(&env, &["work", "--offline"]);
        assert_eq!(r.code, 0, "{mode}: {}", r.stderr);
        let to = d.scratch("out");
        d.ok(&["outputs", "py", "--to", to.to_str().expect("utf-8")]);
        // "three little words" and "in-tmp": 4 words, 22 letters.
        assert_eq!(
            fs::read_to_string(to.join("result.txt")).expect("result.txt"),
            "4 22\n",
            "{mode}"
        );
        assert!(
            !Path::new("/tmp").join(&tmp_name).exists(),
            "{mode}: the task's /tmp file reached the host's /tmp"
        );
    }
}

/// A tool in the home folder: `~/.toolchain/bin/mytool` prints
/// `~/.toolchain/share/data`.
fn install_home_toolchain(d: &mut Device) -> PathBuf {
    let home = home(d);
    let bin = home.join(".toolchain/bin");
    fs::create_dir_all(&bin).expect("mkdir bin");
    fs::create_dir_all(home.join(".toolchain/share")).expect("mkdir share");
    fs::write(home.join(".toolchain/share/data"), "toolchain-data\n").expect("write data");
    let tool = bin.join("mytool");
    fs::write(&tool, "#!/bin/sh\ncat \"$HOME/.toolchain/share/data\"\n").expect("write tool");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(home.join("notes.txt"), "private notes\n").expect("write notes");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    d.set_env("PATH", &path);
    home
}

/// Item 1: a folder on PATH in the home folder is usable (read and
/// execute), but nothing else of the home folder is, until the device
/// lists it in `[worker] allow-read`; the rest of the home folder stays
/// closed. A task's own `allow-read:` is claimed only when the device's
/// list covers it (`ls` keeps it pending), from a task file or `--allow-read`.
#[test]
fn issue13_allow_read_grants_only_what_the_device_lists() {
    let mut d = device("allow-read");
    install_home_toolchain(&mut d);
    let script = "mytool > got.txt || echo tool-failed > got.txt\ncat ~/notes.txt >> got.txt 2>/dev/null || true";
    d.write(
        "t.yaml",
        &task_file(&[("tool", "outputs: [got.txt]", script)]),
    );
    let first = submit_id(&d, &["t.yaml"]);
    d.ok(&["work", "--offline"]);
    let got = |d: &Device, id: &str| {
        let to = d.scratch(&format!("got-{id}"));
        d.ok(&["outputs", id, "--to", to.to_str().expect("utf-8")]);
        fs::read_to_string(to.join("got.txt")).expect("got.txt")
    };
    assert_eq!(
        got(&d, &first),
        "tool-failed\n",
        "the tool ran but could not read its data"
    );

    d.set_device_settings("allow-read = [\"~/.toolchain\"]\n");
    let second = submit_id(&d, &["--rerun", "t.yaml"]);
    d.ok(&["work", "--offline"]);
    assert_eq!(
        got(&d, &second),
        "toolchain-data\n",
        "no more than the toolchain"
    );

    // Task requirements: covered, not covered, and from the command line.
    d.write(
        "req.yaml",
        &task_file(&[
            ("covered", "allow-read: ['~/.toolchain/share']", "mytool"),
            ("uncovered", "allow-read: ['~/.ssh']", "true"),
        ]),
    );
    d.ok(&["submit", "req.yaml"]);
    d.ok(&[
        "submit",
        "--name",
        "cli-uncovered",
        "--allow-read",
        "/srv/nothing-granted",
        "--",
        "true",
    ]);
    d.ok(&["work", "--offline"]);
    assert_eq!(d.task("covered").status, "done");
    assert_eq!(
        d.task("uncovered").status,
        "pending",
        "left for another device"
    );
    assert_eq!(d.task("cli-uncovered").status, "pending");
    // A relative path is refused at submit.
    let r = d.run(&["submit", "--allow-read", "data", "--", "true"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("allow-read"), "{}", r.stderr);
}

/// Item 3: without a sandbox (simulated: no Landlock), `auto` runs only
/// this device's own tasks and says so; `required` refuses to start, from
/// the device's settings or `BRIDGE_SANDBOX`; `off` runs everyone's tasks
/// and warns.
#[test]
fn issue13_policy_without_a_sandbox() {
    let shared = crate::harness::temp_dir("sandbox-policy-remote");
    let remote = crate::harness::dir_remote(shared.path());
    let mut a = Device::new("policy-a");
    a.ok(&["keygen"]);
    a.ok(&["init", "--remote", &remote]);
    let b = Device::new("policy-b");
    b.join_as(&a, &remote, "submit");
    // `a` lends itself to every member: only the sandbox decides here.
    a.set_run_tasks_from(&["members"]);
    // Different commands: a task's identity is its content, not its name.
    b.ok(&["submit", "--name", "theirs", "--", "echo", "theirs"]);
    a.ok(&["submit", "--name", "mine", "--", "echo", "mine"]);
    a.set_env(NO_LANDLOCK.0, NO_LANDLOCK.1);

    let r = a.run(&["work"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("not sandboxed"), "{}", r.stderr);
    assert_eq!(a.task("mine").status, "done");
    assert_eq!(
        a.task("theirs").status,
        "pending",
        "another member's task ran unsandboxed"
    );

    a.set_device_settings("sandbox = \"required\"\n");
    let r = a.run(&["work"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("cannot sandbox tasks"), "{}", r.stderr);
    assert!(r.stderr.contains("Hint:"), "{}", r.stderr);
    assert_eq!(a.task("theirs").status, "pending");

    let r = a.run_env(&[("BRIDGE_SANDBOX", "off")], &["work"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("sandbox is off"), "{}", r.stderr);
    assert_eq!(a.task("theirs").status, "done");

    // The environment overrides the device's settings the other way too.
    a.ok(&["submit", "--name", "mine2", "--", "echo", "mine2"]);
    let r = a.run_env(&[("BRIDGE_SANDBOX", "required")], &["work"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    let r = a.run_env(&[("BRIDGE_SANDBOX", "sometimes")], &["work"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("BRIDGE_SANDBOX"), "{}", r.stderr);
}

/// Item 3: with Landlock, `required` is satisfied (namespaces or not) and
/// the deprecated `BRIDGE_TASK_CONFINEMENT=off` still turns it off.
#[test]
fn issue13_required_runs_with_landlock_and_the_old_switch_still_works() {
    for (mode, env) in modes() {
        let d = device(&format!("required-{mode}"));
        d.set_device_settings("sandbox = \"required\"\n");
        d.ok(&["submit", "--name", "t", "--", "true"]);
        let r = d.run_env(&env, &["work", "--offline"]);
        assert_eq!(r.code, 0, "{mode}: {}", r.stderr);
        assert_eq!(d.task("t").status, "done");
    }
    // bridge.toml's settings are checked when it is read.
    let d = device("bad-settings");
    d.set_worker_settings("sandbox = \"sometimes\"\n");
    let r = d.run(&["work", "--offline"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("worker.sandbox"), "{}", r.stderr);
    let d = device("bad-allow-read");
    d.set_worker_settings("allow-read = [\"relative/path\"]\n");
    let r = d.run(&["work", "--offline"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("worker.allow-read"), "{}", r.stderr);

    let d = device("old-switch");
    let home = home(&d);
    fs::write(home.join("notes.txt"), "notes\n").expect("write");
    let script = format!("cat {}", home.join("notes.txt").display());
    d.ok(&["submit", "--name", "peek", "--", "sh", "-c", &script]);
    let r = d.run_env(
        &[("BRIDGE_TASK_CONFINEMENT", "off")],
        &["work", "--offline"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("deprecated"), "{}", r.stderr);
    assert!(stdout_of(&d, "peek").contains("notes"));
}

/// The spawner keeps the allow-listed paths every task shares open for all
/// its tasks (issue 18, item 1). A folder of the allow-list replaced while
/// the worker runs (a toolchain reinstalled) is readable by the next task,
/// though it was made ready before: the kept descriptor of the old folder
/// is checked against the path when the task starts, and opened again.
#[test]
fn issue18_an_allow_listed_folder_replaced_while_a_worker_runs_is_readable_again() {
    let d = device_outside_tmp("kept-paths");
    let tools = d.scratch("tools");
    fs::create_dir_all(&tools).expect("a tools folder");
    fs::write(tools.join("version"), "v1\n").expect("a tool");
    let grant = format!("allow-read = [{:?}]\n", tools.display().to_string());
    d.set_device_settings(&grant);
    let env = format!("env: {{ TOOLS: {:?} }}", tools.display().to_string());
    d.write(
        "t.yaml",
        &task_file(&[
            (
                "first",
                &env,
                "cat \"$TOOLS/version\"\ntouch started\nwhile [ ! -e release ]; do sleep 0.05; done",
            ),
            (
                "second",
                &format!("priority: -1\n{env}"),
                "cat \"$TOOLS/version\"",
            ),
            (
                "outside",
                "priority: -2",
                &format!("cat {:?} || echo denied", d.path("bridge.toml").display().to_string()),
            ),
        ]),
    );
    d.ok(&["submit", "t.yaml"]);
    let worker = d.spawn("work", &["work", "--offline", "-j1"]);
    let started = || {
        crate::harness::files_under(&d.path(".bridge/work"))
            .into_iter()
            .find(|p| p.ends_with("started"))
    };
    poll("the first task to read its tool", || started().is_some());
    fs::remove_dir_all(&tools).expect("remove the tools");
    fs::create_dir(&tools).expect("make the tools again");
    fs::write(tools.join("version"), "v2\n").expect("a new tool");
    // The next task is ready meanwhile (its supervisor forked, with the
    // spawner's descriptor of the old folder): its rules are made when it
    // starts, from what the path names then.
    let release = started()
        .expect("the first task's folder")
        .with_file_name("release");
    fs::write(release, "").expect("release the first task");
    let r = worker.wait();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(stdout_of(&d, "first").trim(), "v1");
    assert_eq!(stdout_of(&d, "second").trim(), "v2", "{}", r.stderr);
    // The sandbox was on: what is not on the list stays closed.
    assert_eq!(stdout_of(&d, "outside").trim(), "denied");
}
