//! Bad input and broken environments: each gives a clear error and the right
//! exit code, and leaves the workspace usable.

use std::fs;
use std::process::Stdio;

use crate::harness::{Device, dir_remote, temp_dir};

/// A workspace without a remote.
fn workspace(name: &str) -> Device {
    let d = Device::new(name);
    d.ok(&["init"]);
    d
}

/// Whether `text` holds `file:line:COL` with a number for COL.
fn has_location(text: &str, file: &str, line: u32) -> bool {
    let prefix = format!("{file}:{line}:");
    text.match_indices(&prefix).any(|(at, _)| {
        text[at + prefix.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Submits a task file that must be refused; returns stderr.
fn refused(d: &Device, file: &str, yaml: &str) -> String {
    d.write(file, yaml);
    let run = d.run(&["submit", file]).expect_code(1);
    assert!(run.stderr.starts_with("Error: "), "{}", run.stderr);
    run.stderr
}

#[test]
fn bad_task_files_are_refused_with_their_place() {
    let d = workspace("yaml");

    let err = refused(
        &d,
        "malformed.yaml",
        "tasks:\n  - name: a\n    run: echo a\n   - name: b\n",
    );
    assert!(has_location(&err, "malformed.yaml", 4), "{err}");

    let err = refused(
        &d,
        "unknown.yaml",
        "tasks:\n  - name: a\n    run: echo a\n    tiemout: 5\n",
    );
    assert!(has_location(&err, "unknown.yaml", 4), "{err}");
    assert!(err.contains("tiemout"), "{err}");

    let err = refused(
        &d,
        "input.yaml",
        "tasks:\n  - name: a\n    run: cat nope.txt\n    inputs: [nope.txt]\n",
    );
    assert!(has_location(&err, "input.yaml", 2), "{err}");
    assert!(
        err.contains("nope.txt") && err.contains("task `a`"),
        "{err}"
    );

    let err = refused(
        &d,
        "needs.yaml",
        "tasks:\n  - name: a\n    run: echo a\n  - name: b\n    run: echo b\n    needs: [zzz]\n",
    );
    assert!(has_location(&err, "needs.yaml", 4), "{err}");
    assert!(err.contains("`zzz`") && err.contains("task `b`"), "{err}");

    let err = refused(
        &d,
        "cycle.yaml",
        "tasks:\n  - name: a\n    run: echo a\n    needs: [b]\n  - name: b\n    run: echo b\n    needs: [a]\n",
    );
    assert!(err.contains("cycle.yaml"), "{err}");
    assert!(
        err.contains("cycle") && err.contains("`a`") && err.contains("`b`"),
        "{err}"
    );

    let run = d.run(&["submit", "missing.yaml"]).expect_code(1);
    assert!(run.stderr.contains("missing.yaml"), "{}", run.stderr);

    // Nothing of any refused file was submitted.
    assert_eq!(d.status().tasks, 0);
}

#[test]
fn a_command_that_cannot_start_fails_its_task() {
    let d = workspace("nostart");
    d.ok(&[
        "submit",
        "--name",
        "ghost",
        "--",
        "/nonexistent/prog",
        "arg",
    ]);
    let run = d.run(&["work"]).expect_code(3);
    assert!(run.stderr.contains("/nonexistent/prog"), "{}", run.stderr);
    let show = d.show("ghost");
    assert_eq!(show["status"], "failed", "{show}");
    let attempt = &show["attempts"][0];
    assert_eq!(attempt["outcome"], "error", "{show}");
    let message = attempt["message"].as_str().unwrap_or_default();
    assert!(message.contains("/nonexistent/prog"), "{show}");
    assert_eq!(d.status().count("failed"), 1);
}

#[test]
fn an_unreachable_remote_makes_sync_exit_4_and_the_rest_keeps_working() {
    let shared = temp_dir("gone");
    let pool = shared.path().join("pool");
    fs::create_dir(&pool).expect("mkdir");
    let d = Device::new("unplugged");
    d.ok(&["init", "--remote", &dir_remote(&pool)]);
    d.ok(&["submit", "--", "echo", "before"]);
    fs::remove_dir_all(&pool).expect("unplug the remote");

    let run = d.run(&["sync"]).expect_code(4);
    assert!(run.stderr.contains("offline"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&pool.display().to_string()),
        "{}",
        run.stderr
    );
    let json = d.run(&["sync", "--json"]).expect_code(4).json();
    assert_eq!(json["status"], "offline", "{json}");

    // Everything else works on the local replica.
    assert_eq!(d.status().tasks, 1);
    let sub = d.ok(&["submit", "--", "echo", "after"]);
    assert!(sub.stderr.contains("offline"), "{}", sub.stderr);
    d.ok(&["work"]);
    let st = d.status();
    assert_eq!((st.tasks, st.count("done")), (2, 2), "{st:?}");
    assert!(!pool.exists(), "nothing recreated the unplugged remote");
}

#[test]
fn a_corrupt_chunk_is_skipped_with_one_warning_and_left_in_place() {
    let shared = temp_dir("pool");
    let remote = dir_remote(shared.path());
    let d = Device::new("bitrot");
    d.ok(&["init", "--remote", &remote]);
    d.ok(&["submit", "--offline", "--name", "one", "--", "echo", "one"]);
    d.ok(&["submit", "--offline", "--name", "two", "--", "echo", "two"]);

    // Flip one byte of the document that holds task `one`.
    let batch = d.task("one").batch;
    let doc = d.path(&format!(".bridge/store/chunks/{batch}.0000"));
    let chunks: Vec<_> = fs::read_dir(&doc)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", doc.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    let chunk = &chunks[0];
    let mut bytes = fs::read(chunk).expect("read chunk");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(chunk, &bytes).expect("write chunk");
    let file_name = chunk
        .file_name()
        .and_then(|n| n.to_str())
        .expect("chunk name")
        .to_owned();

    // This device's cache of verified documents already holds what the
    // chunk held; a device reading the file anew (as after a sync) must
    // refuse it. Drop the cache to be that device.
    fs::remove_dir_all(d.path(".bridge/cache")).expect("remove the cache");
    let run = d.ok(&["status"]);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(&file_name))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(warnings[0].contains("WARN"), "{}", run.stderr);
    let tasks = d.ls();
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(tasks[0].name, "two");
    assert_eq!(fs::read(chunk).expect("the chunk is still there"), bytes);

    // The other task still runs, and the bad chunk never reaches the remote.
    let work = d.ok(&["work"]);
    assert!(work.stderr.contains("1 done, 0 failed"), "{}", work.stderr);
    let sync = d.ok(&["sync"]);
    assert!(sync.stderr.contains(&file_name), "{}", sync.stderr);
    assert_eq!(fs::read(chunk).expect("the chunk is still there"), bytes);
    let pushed: Vec<_> = walk(shared.path())
        .into_iter()
        .filter(|p| p.ends_with(&file_name))
        .collect();
    assert!(
        pushed.is_empty(),
        "the corrupt chunk was pushed: {pushed:?}"
    );
    let other = Device::new("joiner");
    other.join_as(&d, &remote, "submit");
    let seen = other.ls();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        (seen[0].name.as_str(), seen[0].status.as_str()),
        ("two", "done")
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn outside_a_workspace_the_hint_says_bridge_init() {
    let d = Device::new("nowhere");
    let empty = temp_dir("empty");
    let run = d.run_from(empty.path(), &["status"]).expect_code(1);
    assert!(run.stderr.contains("bridge.toml"), "{}", run.stderr);
    assert!(run.stderr.contains("bridge init"), "{}", run.stderr);
}

#[test]
fn a_bad_command_line_exits_2() {
    let d = Device::new("typo");
    let run = d.run(&["frobnicate"]).expect_code(2);
    assert!(run.stderr.contains("frobnicate"), "{}", run.stderr);
    d.ok(&["init"]);
    d.run(&["ls", "--status", "sleeping"]).expect_code(2);
}

/// `bridge ls --json | head -0`: a reader that goes away is not an error
/// (main.rs says so), whatever the output format.
#[test]
fn a_closed_stdout_is_not_an_error() {
    let d = workspace("pipe");
    d.ok(&["submit", "--", "echo", "x"]);
    for args in [&["ls"][..], &["ls", "--json"], &["status", "--json"]] {
        let mut cmd = d.command_in(&d.dir, true, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn bridge");
        // Close the read end before bridge writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait for bridge");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("Error"),
            "`bridge {}` with a closed stdout: {}\n{stderr}",
            args.join(" "),
            out.status
        );
    }
}
