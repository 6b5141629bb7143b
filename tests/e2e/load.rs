//! Issue 18, item 3: load and start-up. A workspace's commands read the
//! pool from this device's document cache (the tasks in a binary
//! encoding) once a first command has read the store files; a command that
//! reads the store files drops each document's parsed state once it is
//! cached and parses it again only to change it. Neither may change what
//! a command shows or writes: a warm start shows every field a cold one
//! does, and a change made right after a cold start reaches the store
//! under this device's own writer, so every device accepts it.

use std::fs;

use crate::harness::{Device, poll};

const TASKS: &str = "\
tasks:
  - name: build
    run: echo built > out.txt; echo to-stderr >&2
    outputs: [out.txt]
    env: { MODE: fast }
    priority: 3
  - name: test
    needs: [build]
    run: echo tested
  - name: flaky
    run: exit 3
    retries: 1
  - name: after-flaky
    needs: [flaky]
    run: echo never
  - name: dropped
    run: echo dropped
  - name: left
    runs-on: [gpu]
    run: echo left
";

/// Everything a command shows about the pool, as JSON.
fn everything(d: &Device) -> (String, String, String) {
    let status = d.ok(&["status", "--json"]).stdout;
    let ls = d.ok(&["ls", "--json", "--full"]).stdout;
    let show = d.ok(&["show", "build", "--json"]).stdout;
    (status, ls, show)
}

fn drop_cache(d: &Device) {
    let _ = fs::remove_dir_all(d.path(".bridge/cache"));
}

/// A device that has submitted `TASKS`.
fn submitted() -> Device {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write("tasks.yaml", TASKS);
    d.ok(&["submit", "-q", "tasks.yaml"]);
    d
}

/// Checks that listing the pool refuses and skips no store file (a change
/// under another writer than this device's would be refused as another
/// member's, with a warning).
fn assert_nothing_refused(d: &Device) {
    let ls = d.ok(&["ls", "--json"]);
    assert!(
        !ls.stderr.contains("refused") && !ls.stderr.contains("skipped"),
        "{}",
        ls.stderr
    );
}

/// The device's document cache files whose names end with `suffix`.
fn files_ending(d: &Device, suffix: &str) -> usize {
    fs::read_dir(d.path(".bridge/cache")).map_or(0, |dir| {
        dir.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .count()
    })
}

/// The document cache files of the device.
fn cache_files(d: &Device) -> usize {
    files_ending(d, ".cache")
}

#[test]
fn issue18_a_warm_start_shows_every_field_a_cold_one_does() {
    let d = submitted();
    d.ok(&["cancel", "dropped"]);
    // build and test done, flaky failed twice, after-flaky skipped, left
    // pending (no gpu here), dropped cancelled.
    d.run(&["work", "--parallel", "2"]).expect_code(3);

    drop_cache(&d);
    let cold = everything(&d);
    assert!(cache_files(&d) > 0, "a cold start caches the documents");
    let warm = everything(&d);
    assert_eq!(cold.0, warm.0, "status --json");
    assert_eq!(cold.1, warm.1, "ls --json --full");
    assert_eq!(cold.2, warm.2, "show --json");
    // The fields a lossy cache would drop are there to compare.
    for field in ["out.txt", "to-stderr", "MODE", "fast", "gpu", "exit_code"] {
        assert!(warm.1.contains(field), "{field} in ls --full: {}", warm.1);
    }
    let counts = d.status().counts;
    for (status, n) in [
        ("done", 2),
        ("failed", 1),
        ("skipped", 1),
        ("cancelled", 1),
        ("pending", 1),
    ] {
        assert_eq!(counts.get(status), Some(&n), "{status}: {counts:?}");
    }
}

#[test]
fn issue18_changes_made_right_after_a_cold_start_are_accepted() {
    let d = submitted();

    // Each command starts cold: it reads the store files, caches and
    // drops each document, then parses it again to write its change.
    drop_cache(&d);
    d.ok(&["cancel", "dropped"]);
    drop_cache(&d);
    d.run(&["work", "--parallel", "2"]).expect_code(3);
    drop_cache(&d);
    d.ok(&["retry", "flaky"]);

    // Read afresh from the store files: every change is there, none
    // refused.
    drop_cache(&d);
    assert_nothing_refused(&d);
    assert_eq!(d.task("dropped").status, "cancelled");
    assert_eq!(d.task("build").status, "done");
    assert_eq!(d.task("test").status, "done");
    assert_eq!(d.task("flaky").status, "pending", "retried");
}

#[test]
fn issue18_a_cold_start_saves_no_state_and_a_change_after_it_reads_the_files() {
    let d = submitted();

    // A cold start caches the tasks, not the documents' Automerge states
    // (the part of a cold start that only a later change would use).
    drop_cache(&d);
    let cold = everything(&d);
    assert!(cache_files(&d) > 0, "a cold start caches the documents");
    assert_eq!(files_ending(&d, ".state"), 0, "no state saved");

    // A change to a document cached without its state reads it from its
    // store files; the next start that finds the new file caches the
    // document with its state, to apply later files to.
    d.ok(&["cancel", "dropped"]);
    assert_eq!(files_ending(&d, ".state"), 0);
    assert_eq!(d.task("dropped").status, "cancelled");
    assert_eq!(
        files_ending(&d, ".state"),
        1,
        "the changed document's state"
    );
    d.run(&["work", "--parallel", "2"]).expect_code(3);

    // What the warm starts show is what the store files say.
    let warm = everything(&d);
    drop_cache(&d);
    let again = everything(&d);
    assert_eq!(warm, again);
    assert_ne!(cold.0, warm.0, "the change and the work are seen");
    assert_nothing_refused(&d);
    assert_eq!(d.task("build").status, "done");
}

#[test]
fn issue18_a_worker_reads_a_document_cached_without_its_state_when_a_file_arrives() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write("flaky.yaml", "tasks:\n  - name: flaky\n    run: exit 3\n");
    d.ok(&["submit", "-q", "flaky.yaml"]);
    d.run(&["work"]).expect_code(3);
    // Cached by a cold start, without its state.
    drop_cache(&d);
    d.ok(&["status"]);
    assert_eq!(files_ending(&d, ".state"), 0);

    // A worker holds the document as cached; a retry from another process
    // arrives as a new file, which it applies by reading the document
    // from all its files.
    let worker = d.spawn("follow", &["work", "--follow", "--poll", "200ms"]);
    d.ok(&["retry", "flaky"]);
    poll("the worker to run the retried task", || {
        d.task("flaky").attempts == 2
    });
    worker.terminate();
    let run = worker.wait();
    assert!(!run.stderr.contains("cannot read"), "{}", run.stderr);
    assert_eq!(d.task("flaky").status, "failed");
}
