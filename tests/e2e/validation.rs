//! Bad input and output hygiene (issue 12, items 7, 10, 11, 18, 19, 20, 21,
//! 22): what a user or a member can feed bridge (task files, command lines,
//! file names, stored task specs, bridge.toml) is refused with an error
//! naming what is wrong, before anything is stored; a stored task no worker
//! can run becomes an `error` attempt instead of crashing the pool; a closed
//! pipe is never a panic; task-controlled text never reaches a terminal raw.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use bridge_model::TaskSpec;
use serde_json::json;

use bridge_testutil::forge::{
    batch_header, chunk_header, frame, genesis, now_ms, put_chunk, writer_for,
};
use bridge_testutil::spec::from_json as spec;

use crate::harness::{Device, temp_dir};
use crate::security::{identity_in, member_of, roster_in};

/// Writes one batch document holding `tasks` into `d`'s own replica, signed
/// and sealed by `d`'s identity exactly as `bridge submit` would, but without
/// `submit`'s checks: what a member who edits documents directly can store.
fn store_batch_as(d: &Device, tasks: &[TaskSpec]) {
    let workspace = d.status().workspace;
    let root = member_of(d);
    let me = identity_in(&d.identity_file());
    let roster = roster_in(&d.store(), &me, &workspace, &root);
    let data = roster.data_recipient().expect("a data key");
    let writer = writer_for(me.member_id());
    let header = batch_header(now_ms(), &d.name, &d.name);
    let (doc_id, change) = genesis(&writer, &header, tasks);
    let chunk_header = chunk_header(
        &workspace,
        &doc_id,
        roster.latest().number,
        me.member_id(),
        vec![writer.to_string()],
    );
    let sealed = bridge_crypto::seal(
        &me,
        std::slice::from_ref(&data),
        &chunk_header,
        &frame(&[change]),
    )
    .expect("seal");
    put_chunk(&d.store(), &doc_id, &sealed);
}

// Issue 12, item 10: `timeout: 18446744073709551615` was stored, and every
// worker that claimed it panicked; after the lease it crashed the next one,
// and nothing else in the pool ran.
#[test]
fn issue12_poison_tasks_get_an_error_attempt_and_the_others_still_run() {
    let a = Device::new("val-poison");
    a.ok(&["init"]);
    a.ok(&[
        "submit",
        "--name",
        "good",
        "--output",
        "ok.txt",
        "--",
        "sh",
        "-c",
        "echo ok > ok.txt",
    ]);
    let sh = |name: &str| json!({"shell": {"shell": "sh", "script": format!("echo {name}")}});
    // Each breaks one limit, as a member could store it; the field a worker
    // must name in the error.
    let poison: Vec<(&str, TaskSpec)> = vec![
        (
            "timeout",
            spec(json!({"name": "p-timeout", "command": sh("t"), "timeout_s": u64::MAX})),
        ),
        (
            "retries",
            spec(
                json!({"name": "p-retries", "command": sh("r"), "timeout_s": 5, "retries": u32::MAX}),
            ),
        ),
        (
            "env.K",
            spec(
                json!({"name": "p-env", "command": sh("e"), "timeout_s": 5, "env": {"K": "a\u{0}b"}}),
            ),
        ),
        (
            "`run` is empty",
            spec(json!({"name": "p-argv", "command": {"argv": []}, "timeout_s": 5})),
        ),
        (
            "run[0]",
            spec(
                json!({"name": "p-huge", "command": {"argv": ["x".repeat(200_000)]}, "timeout_s": 5}),
            ),
        ),
        (
            "invalid output glob",
            spec(json!({"name": "p-glob", "command": sh("g"), "timeout_s": 5, "outputs": ["a[b"]})),
        ),
        (
            "inputs[0].path",
            spec(json!({
                "name": "p-input", "command": sh("i"), "timeout_s": 5,
                "inputs": [{"path": "../../escape", "sha256": "0".repeat(64), "blob": "b"}],
            })),
        ),
        (
            "priority",
            spec(
                json!({"name": "p-priority", "command": sh("p"), "timeout_s": 5, "priority": i64::MIN}),
            ),
        ),
    ];
    let specs: Vec<TaskSpec> = poison.iter().map(|(_, s)| s.clone()).collect();
    store_batch_as(&a, &specs);
    assert_eq!(a.status().count("pending"), 1 + poison.len() as u64);

    // Exit 3: tasks failed; not a crash (101) and not a worker error (1).
    let work = a.run(&["work", "--parallel", "2"]).expect_code(3);
    assert!(
        !work.stderr.contains("panicked"),
        "the worker panicked: {}",
        work.stderr
    );
    assert_eq!(a.task("good").status, "done", "{}", work.stderr);
    for (field, s) in &poison {
        let shown = a.show(&s.name);
        assert_eq!(shown["status"], "failed", "{}: {shown}", s.name);
        let attempts = shown["attempts"].as_array().expect("attempts");
        assert_eq!(
            attempts.len(),
            1,
            "{}: one attempt, no retries: {shown}",
            s.name
        );
        assert_eq!(attempts[0]["outcome"], "error", "{shown}");
        let message = attempts[0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("cannot be run") && message.contains(field),
            "{}: {message}",
            s.name
        );
    }
    // A second worker finds nothing left to run (and does not crash).
    a.ok(&["work"]);
}

/// `bridge submit` in `d`, expecting a refusal that mentions every word of
/// `words`; and nothing stored.
fn assert_refused(d: &Device, args: &[&str], words: &[&str]) {
    let run = d.run(args).expect_code(1);
    for w in words {
        assert!(
            run.stderr.contains(w),
            "`{}` does not say {w:?}:\n{}",
            args.join(" "),
            run.stderr
        );
    }
    assert!(
        run.stderr.len() < 2000,
        "the error stays short: {}",
        run.stderr.len()
    );
    assert_eq!(d.status().count("pending"), 0, "{:?} stored a task", args);
}

// Issue 12, items 10, 11 and 20: limits are checked at submit, with the field
// named, and nothing is stored.
#[test]
fn issue12_submit_refuses_specs_a_worker_could_not_run() {
    let d = Device::new("val-limits");
    d.ok(&["init"]);
    d.write(
        "timeout.yaml",
        "tasks:\n  - name: forever\n    run: echo\n    timeout: 18446744073709551615\n",
    );
    assert_refused(
        &d,
        &["submit", "timeout.yaml"],
        &["task `forever`", "`timeout`", "2592000"],
    );
    assert_refused(
        &d,
        &["submit", "--timeout", "100years", "--", "echo"],
        &["`timeout`"],
    );
    d.write(
        "nul.yaml",
        "tasks:\n  - name: nul\n    run: echo\n    env: { K: \"a\\0b\" }\n",
    );
    assert_refused(&d, &["submit", "nul.yaml"], &["`env.K`", "NUL"]);
    d.write(
        "nulname.yaml",
        "tasks:\n  - name: \"a\\0b\"\n    run: echo\n",
    );
    assert_refused(&d, &["submit", "nulname.yaml"], &["`name`", "NUL"]);
    // A megabyte-long name (in a file: no argument can be that long).
    d.write(
        "longname.yaml",
        &format!("tasks:\n  - name: {}\n    run: echo\n", "n".repeat(1 << 20)),
    );
    assert_refused(
        &d,
        &["submit", "longname.yaml"],
        &["`name`", "1048576 bytes", "limit is 1024"],
    );
    assert_refused(
        &d,
        &["submit", "--name", &"n".repeat(100_000), "--", "echo"],
        &["`name`", "100000 bytes"],
    );
    d.write(
        "longenv.yaml",
        &format!(
            "tasks:\n  - name: e\n    run: echo\n    env: {{ K: {} }}\n",
            "v".repeat(1 << 20)
        ),
    );
    assert_refused(&d, &["submit", "longenv.yaml"], &["`env.K`", "limit"]);
    assert_refused(&d, &["submit", "--output", "a[b", "--", "echo"], &["a[b"]);
    assert_refused(
        &d,
        &["submit", "--retries", "4000000000", "--", "echo"],
        &["`retries`", "1000"],
    );
    d.write(
        "matrix.yaml",
        &format!(
            "tasks:\n  - name: boom\n    run: echo\n    matrix: {{ {} }}\n",
            (0..10)
                .map(|k| format!("k{k}: [0,1,2,3,4,5,6,7,8,9]"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    assert_refused(
        &d,
        &["submit", "matrix.yaml"],
        &["task `boom`", "10000000000 tasks", "100000"],
    );
    // Nothing was stored on the way: not even input blobs.
    d.write("in.txt", "input");
    assert_refused(
        &d,
        &[
            "submit",
            "--input",
            "in.txt",
            "--timeout",
            "400d",
            "--",
            "cat",
            "in.txt",
        ],
        &["`timeout`"],
    );
    // An input over the store's limit for one file (a sparse file: no
    // disk), after a good one: refused before the good one is sealed.
    let huge = fs::File::create(d.path("huge.bin")).expect("create");
    huge.set_len((1 << 30) + 1).expect("set_len");
    assert_refused(
        &d,
        &[
            "submit", "--input", "in.txt", "--input", "huge.bin", "--", "cat", "huge.bin",
        ],
        &["input `huge.bin`", "over the limit"],
    );
    let blobs = d.store().join("blobs");
    let stored = fs::read_dir(&blobs).map(|r| r.count()).unwrap_or(0);
    assert_eq!(
        stored,
        0,
        "a refused submission stored blobs in {}",
        blobs.display()
    );
}

// Issue 12, item 7: an input that is a link leaving the task file's folder
// (by a glob, by name, by --input or by --each) is refused by name; nothing
// of its target reaches the store.
#[test]
fn issue12_input_links_leaving_the_folder_are_refused_by_name() {
    let d = Device::new("val-links");
    d.ok(&["init"]);
    let outside = temp_dir("val-links-outside");
    let secret = outside.path().join("id_rsa");
    fs::write(&secret, "PRIVATE KEY").expect("write the secret");
    d.write("data/a.txt", "a");
    std::os::unix::fs::symlink(&secret, d.path("data/key.txt")).expect("symlink");
    d.write(
        "tasks.yaml",
        "tasks:\n  - name: t\n    run: cat data/*\n    inputs: ['data/*.txt']\n",
    );
    assert_refused(
        &d,
        &["submit", "tasks.yaml"],
        &["`data/key.txt`", "outside the task file's folder"],
    );
    let ws = d.dir.clone();
    for args in [
        vec![
            "submit",
            "--input",
            "data/key.txt",
            "--",
            "cat",
            "data/key.txt",
        ],
        vec!["submit", "--input", "data/*", "--", "ls"],
        vec!["submit", "--each", "data/*.txt", "--", "cat", "{}"],
    ] {
        let run = d.run_from(&ws, &args).expect_code(1);
        assert!(
            run.stderr.contains("`data/key.txt`") && run.stderr.contains("outside"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(d.status().count("pending"), 0);
    // A link that stays inside is followed: its content is sent under the
    // link's own name.
    fs::remove_file(d.path("data/key.txt")).expect("remove the link");
    std::os::unix::fs::symlink("a.txt", d.path("data/latest.txt")).expect("symlink");
    d.ok(&[
        "submit",
        "--offline",
        "--name",
        "inside",
        "--input",
        "data/latest.txt",
        "--",
        "cat",
        "data/latest.txt",
    ]);
    d.ok(&["work"]);
    let logs = d.ok(&["logs", "inside"]);
    assert_eq!(logs.stdout.trim(), "a");
}

// Issue 12, item 19: `--each` silently dropped files whose names are not
// UTF-8; now it refuses them by name.
#[test]
fn issue12_each_refuses_names_that_are_not_utf8() {
    let d = Device::new("val-utf8");
    d.ok(&["init"]);
    d.write("docs/good.md", "g");
    let bad = d
        .path("docs")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9.md"));
    fs::write(&bad, "b").expect("write a non-UTF-8 name");
    let run = d
        .run_from(&d.dir, &["submit", "--each", "docs/*.md", "--", "wc", "{}"])
        .expect_code(1);
    assert!(
        run.stderr.contains("docs/caf\u{fffd}.md") && run.stderr.contains("not UTF-8"),
        "{}",
        run.stderr
    );
    assert_eq!(d.status().count("pending"), 0, "no task was submitted");
    assert!(Path::new(&bad).exists());
}

/// Runs `bridge ARGS` in `d`'s workspace with stdout a pipe whose reader has
/// already gone (as after `| head -1` or `| true`): every write fails with
/// EPIPE.
fn run_into_closed_pipe(d: &Device, args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut cmd = d.command_in(&d.dir, true, args);
    cmd.stdout(writer).stderr(std::process::Stdio::piped());
    let out = cmd.output().expect("start bridge");
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

// Issue 12, item 18: `status`, `show`, `whoami`, `outputs`, `sync`,
// `compact`, `archive` and `gc` panicked (exit 101) when their output was
// piped into `head` or `true`. Every command is tried with a closed stdout.
#[test]
fn issue12_a_closed_stdout_is_never_a_panic() {
    let shared = temp_dir("val-pipe-pool");
    let d = Device::new("val-pipe");
    d.ok(&[
        "init",
        "--remote",
        &crate::harness::dir_remote(shared.path()),
    ]);
    d.ok(&[
        "submit",
        "--name",
        "t",
        "--output",
        "o.txt",
        "--",
        "sh",
        "-c",
        "echo hi; echo o > o.txt",
    ]);
    d.ok(&["work"]);
    let to = d.scratch("outputs");
    let to = to.to_str().expect("utf-8");
    let demo = d.scratch("demo");
    let demo = demo.to_str().expect("utf-8");
    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["status", "--json"],
        vec!["ls"],
        vec!["ls", "--json"],
        vec!["show", "t"],
        vec!["show", "t", "--json"],
        vec!["logs", "t"],
        vec!["outputs", "t", "--to", to],
        vec!["outputs", "t", "--to", to, "--json"],
        vec!["whoami"],
        vec!["whoami", "--json"],
        vec!["members", "ls"],
        // Fails for want of a [github] section: its error must still come.
        vec!["usage"],
        vec!["sync"],
        vec!["compact"],
        vec!["archive"],
        vec!["gc"],
        vec!["submit", "--name", "u", "--", "echo", "u"],
        vec!["submit", "--json", "--name", "v", "--", "echo", "v"],
        vec!["work"],
        vec!["retry", "t"],
        vec!["cancel", "t"],
        vec!["keygen", "--help"],
        vec!["--help"],
        vec!["--version"],
        vec!["demo", "--dir", demo],
    ];
    for args in &commands {
        let (code, stderr) = run_into_closed_pipe(&d, args);
        assert!(
            code != 101 && !stderr.contains("panicked"),
            "`bridge {}` crashed on a closed pipe (exit {code}):\n{stderr}",
            args.join(" ")
        );
        assert!(
            code == 0 || ["retry", "cancel", "usage"].contains(&args[0]),
            "`bridge {}` exited with {code} on a closed pipe:\n{stderr}",
            args.join(" ")
        );
    }
    // The commands still did their work: the two submissions were stored and
    // run by the `work` whose output went nowhere.
    assert_eq!(d.task("u").status, "done");
    assert_eq!(d.task("v").status, "done");
}

// The other side of item 18: a write error that is not a closed pipe (a
// full disk) is reported, not swallowed.
#[test]
fn issue12_a_full_stdout_is_an_error() {
    let d = Device::new("val-full");
    d.ok(&["init"]);
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let mut cmd = d.command_in(&d.dir, true, &["whoami"]);
    cmd.stdout(full).stderr(std::process::Stdio::piped());
    let out = cmd.output().expect("start bridge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write to standard output") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

// Bridge ignores SIGPIPE for itself (see above); the tasks it starts must
// not inherit that, or `yes | head` in a task would never end.
#[test]
fn tasks_start_with_the_default_sigpipe() {
    let d = Device::new("val-sigpipe");
    d.ok(&["init"]);
    d.ok(&[
        "submit",
        "--offline",
        "--name",
        "sig",
        "--",
        "grep",
        "SigIgn",
        "/proc/self/status",
    ]);
    d.ok(&["work"]);
    let line = d.ok(&["logs", "sig"]).stdout;
    let mask = line
        .split_whitespace()
        .last()
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn mask in {line:?}"));
    assert_eq!(
        mask & (1 << (13 - 1)),
        0,
        "SIGPIPE is ignored in the task: {line}"
    );
}

/// `cmd` run under a pseudo-terminal (util-linux `script`): what a user
/// would see on screen, bytes as the terminal got them.
fn on_terminal(cmd: &std::process::Command) -> Vec<u8> {
    let mut line = vec![cmd.get_program().to_string_lossy().into_owned()];
    line.extend(
        cmd.get_args()
            .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''"))),
    );
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &line.join(" "), "/dev/null"])
        .env_clear()
        .stdin(std::process::Stdio::null());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        script.current_dir(dir);
    }
    script.output().expect("run under script").stdout
}

// Issue 12, item 21: `bridge outputs` printed raw terminal escape codes from
// task-controlled text (file names, task names, logs).
#[test]
fn issue12_task_text_never_reaches_a_terminal_raw() {
    let d = Device::new("val-escape");
    d.ok(&["init"]);
    let evil_name = "evil\u{1b}]0;pwned\u{7}\u{1b}[2J";
    d.ok(&[
        "submit",
        "--offline",
        "--name",
        evil_name,
        "--output",
        "*.txt",
        "--",
        "sh",
        "-c",
        "printf '\\033[2Jcleared\\n'; echo x > \"$(printf 'o\\033[31m.txt')\"; printf '\\033[31mfail\\n' >&2; exit 0",
    ]);
    d.ok(&["work"]);
    let id = d.ls()[0].id.clone();
    let to = d.scratch("got");
    let to = to.to_str().expect("utf-8");
    let raw = |bytes: &[u8]| bytes.contains(&0x1b) || bytes.contains(&0x07);

    // Piped: every human-readable command escapes the task's text.
    for args in [
        vec!["outputs", id.as_str(), "--to", to],
        vec!["show", id.as_str()],
        vec!["ls"],
        vec!["status"],
        vec!["work"],
    ] {
        let run = d.ok(&args);
        assert!(
            !raw(run.stdout.as_bytes()) && !raw(run.stderr.as_bytes()),
            "`bridge {}` printed raw control characters:\n{:?}\n{:?}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
    }
    let outputs = d.ok(&["outputs", id.as_str(), "--to", to]).stdout;
    assert!(outputs.contains("o\\u{1b}[31m.txt"), "{outputs}");
    // Errors quote what they were given: escaped too.
    let run = d.run(&["logs", "nope\u{1b}[2J"]).expect_code(1);
    assert!(
        !raw(run.stderr.as_bytes()) && run.stderr.contains("nope\\u{1b}[2J"),
        "{:?}",
        run.stderr
    );

    // Piped, `logs` is the task's own output, byte for byte.
    let logs = d.ok(&["logs", id.as_str(), "--stdout"]).stdout;
    assert_eq!(logs, "\u{1b}[2Jcleared\n");

    // On a terminal, `logs` escapes it (both streams), and so do the others.
    for args in [
        vec!["logs", id.as_str()],
        vec!["outputs", id.as_str(), "--to", to],
        vec!["show", id.as_str()],
        vec!["ls"],
    ] {
        let screen = on_terminal(&d.command_in(&d.dir, true, &args));
        let text = String::from_utf8_lossy(&screen);
        assert!(
            !raw(&screen),
            "`bridge {}` sent raw control characters to the terminal: {text:?}",
            args.join(" ")
        );
        if args[0] == "logs" {
            assert!(
                text.contains("\\u{1b}[2Jcleared") && text.contains("\\u{1b}[31mfail"),
                "{text:?}"
            );
        } else {
            // The command really ran on the terminal and showed the task's
            // text, escaped (an empty screen would pass the check above).
            assert!(
                text.contains("\\u{1b}"),
                "`bridge {}`: {text:?}",
                args.join(" ")
            );
        }
    }
}

// Issue 12, item 22: a damaged bridge.toml gave hints that contradicted each
// other ("fix the file" and "create a new workspace with `bridge init`").
#[test]
fn issue12_a_damaged_bridge_toml_gives_one_error_with_its_line_and_field() {
    let d = Device::new("val-toml");
    d.ok(&["init"]);
    let good = fs::read_to_string(d.path("bridge.toml")).expect("bridge.toml");
    let root_line = good
        .lines()
        .position(|l| l.starts_with("root"))
        .expect("a root line")
        + 1;
    let cases = [
        (
            good.replacen("root = ", "rot = ", 1),
            format!("bridge.toml:{root_line}:1: `workspace.rot`: unknown field"),
        ),
        (
            good.replacen("[worker]", "[worker]\nlease = \"forever\"", 1),
            "`worker.lease`: `forever` is not a duration".to_owned(),
        ),
        (good.replacen("[store]", "[store", 1), "`store`:".to_owned()),
    ];
    for (text, want) in &cases {
        fs::write(d.path("bridge.toml"), text).expect("write bridge.toml");
        for args in [vec!["status"], vec!["work"], vec!["submit", "--", "echo"]] {
            let run = d.run(&args).expect_code(1);
            let lines: Vec<&str> = run.stderr.lines().collect();
            assert_eq!(lines.len(), 2, "one error and one hint: {}", run.stderr);
            assert!(
                lines[0].starts_with("Error: ") && lines[0].contains(want.as_str()),
                "{want}: {}",
                run.stderr
            );
            assert!(
                lines[1].starts_with("Hint: fix that line of bridge.toml")
                    && !run.stderr.contains("bridge init"),
                "{}",
                run.stderr
            );
        }
    }
    fs::write(d.path("bridge.toml"), &good).expect("restore bridge.toml");
    d.ok(&["status"]);
}

// A sibling of item 7 for outputs: `bridge outputs --to DIR` does not write
// through a symbolic link it finds under DIR.
#[test]
fn outputs_are_not_written_through_links_in_the_destination() {
    let d = Device::new("val-out-links");
    d.ok(&["init"]);
    d.ok(&[
        "submit",
        "--offline",
        "--name",
        "t",
        "--output",
        "sub/*.txt",
        "--",
        "sh",
        "-c",
        "mkdir sub && echo mine > sub/a.txt",
    ]);
    d.ok(&["work"]);
    let elsewhere = temp_dir("val-out-elsewhere");
    let to = d.scratch("to");
    fs::create_dir_all(&to).expect("mkdir");
    std::os::unix::fs::symlink(elsewhere.path(), to.join("sub")).expect("symlink");
    let run = d
        .run(&["outputs", "t", "--to", to.to_str().expect("utf-8")])
        .expect_code(1);
    assert!(
        run.stderr.contains("is a symbolic link") && run.stderr.contains("sub"),
        "{}",
        run.stderr
    );
    assert!(
        fs::read_dir(elsewhere.path())
            .expect("read")
            .next()
            .is_none(),
        "an output was written through the link"
    );
    fs::remove_file(to.join("sub")).expect("remove the link");
    d.ok(&["outputs", "t", "--to", to.to_str().expect("utf-8")]);
    assert_eq!(
        fs::read_to_string(to.join("sub/a.txt")).expect("output"),
        "mine\n"
    );
}
