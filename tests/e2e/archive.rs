//! Archival (`bridge archive`) and garbage collection (`bridge gc`): a
//! finished batch leaves the live set while a worker drains another one,
//! its results stay reachable, a retry brings it back, and only blobs that
//! no task names (and that are older than the grace period) are deleted.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::harness::{Device, dir_remote, files_under, poll, temp_dir};

/// The store names under `root` (a replica or a folder remote).
fn names(root: &Path) -> BTreeSet<String> {
    files_under(root)
        .iter()
        .filter_map(|p| p.strip_prefix(root).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

fn under(names: &BTreeSet<String>, folder: &str, doc_prefix: &str) -> usize {
    names
        .iter()
        .filter(|n| n.starts_with(&format!("{folder}/{doc_prefix}")))
        .count()
}

#[test]
fn archival_during_a_drain_keeps_every_result_and_every_live_task() {
    let shared = temp_dir("arch-store");
    let remote = dir_remote(shared.path());
    let admin = Device::new("arch-admin");
    admin.ok(&["init", "--remote", &remote]);
    // Batch one: finished before the archive; it writes an output file.
    admin.write(
        "one.yaml",
        "tasks:\n  - name: old\n    matrix: { n: [1, 2, 3, 4, 5, 6] }\n    run: sh -c 'echo old-${{ matrix.n }}; echo out-${{ matrix.n }} > result.txt'\n    outputs: [result.txt]\n",
    );
    admin.ok(&["submit", "one.yaml"]);
    admin.ok(&["work", "--parallel", "2"]);
    let old_batch = admin.task("old[n=3]").batch;
    assert_eq!(admin.status().count("done"), 6);

    // Batch two: live, drained by another device while the admin archives.
    // Its tasks wait for a gate that opens only after the archive, so the
    // archive surely runs while the worker holds claims.
    let gate = admin.scratch("gate");
    admin.write(
        "two.yaml",
        &format!(
            "tasks:\n  - name: new\n    matrix: {{ n: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20] }}\n    run: sh -c 'while [ ! -e {} ]; do sleep 0.05; done; echo new-${{{{ matrix.n }}}}'\n",
            gate.display()
        ),
    );
    admin.ok(&["submit", "two.yaml"]);
    let new_batch = admin.task("new[n=1]").batch;
    let worker = Device::new("arch-worker");
    worker.join_as(&admin, &remote, "worker");
    worker.ok(&["sync"]);
    let mut draining = worker.spawn("work", &["work", "--parallel", "2"]);
    poll_running(&admin);

    let archived = admin
        .ok(&["archive", "--older-than", "0s", "--json"])
        .json();
    assert_eq!(
        archived["batches"],
        serde_json::json!([old_batch]),
        "{archived}"
    );
    assert_eq!(archived["tasks"], 6, "{archived}");
    assert!(
        draining.is_running(),
        "the archive ran while the worker worked"
    );
    fs::write(&gate, "open").expect("open the gate");
    // The live batch is never archived, even once it is finished: it was
    // active moments ago.
    draining.wait().expect_code(0);
    let again = admin
        .ok(&["archive", "--older-than", "1h", "--json"])
        .json();
    assert_eq!(again["batches"], serde_json::json!([]), "{again}");

    // Out of the live set, here and on the remote: no chunk or live
    // snapshot of the archived batch, one archived snapshot per document.
    for root in [shared.path().to_owned(), admin.store()] {
        let n = names(&root);
        assert_eq!(under(&n, "chunks", &old_batch), 0, "{n:#?}");
        assert_eq!(under(&n, "snapshots", &old_batch), 0, "{n:#?}");
        assert_eq!(under(&n, "archive", &old_batch), 1, "{n:#?}");
    }
    admin.ok(&["sync"]);
    let live = admin.ls();
    assert_eq!(live.len(), 20, "only the live batch is listed: {live:#?}");
    assert!(
        live.iter()
            .all(|t| t.batch == new_batch && t.status == "done")
    );

    // Archived results stay reachable, on this device and on a new one.
    let reader = Device::new("arch-reader");
    reader.join_as(&admin, &remote, "submit");
    for d in [&admin, &reader] {
        let show = d.show("old[n=3]");
        assert_eq!(show["status"], "done", "{show}");
        let logs = d.ok(&["logs", "old[n=3]"]);
        assert!(logs.stdout.contains("old-3"), "{}", logs.stdout);
        let to = d.scratch(&format!("{}-out", d.name));
        d.ok(&["outputs", "old[n=3]", "--to", to.to_str().expect("utf-8")]);
        let got = fs::read_to_string(to.join("result.txt")).expect("the output file");
        assert_eq!(got.trim(), "out-3");
    }
    assert_eq!(reader.ls().len(), 20);

    // Nothing lost on the live side: every task of the drained batch is
    // done, once.
    for t in admin.ls() {
        let show = admin.show(&t.id);
        assert_eq!(show["attempts"].as_array().map(Vec::len), Some(1), "{show}");
    }
}

/// Waits until the admin sees a task of the live batch running (the
/// worker's claims reached the remote).
fn poll_running(admin: &Device) {
    poll("the worker to claim tasks", || {
        admin.ok(&["sync"]);
        admin.status().count("running") > 0
    });
}

#[test]
fn a_retry_brings_an_archived_task_back_with_its_history() {
    let d = Device::new("arch-retry");
    d.ok(&["init"]);
    d.ok(&["submit", "--name", "flaky", "--", "sh", "-c", "exit 3"]);
    d.run(&["work"]).expect_code(3);
    assert_eq!(d.task("flaky").status, "failed");
    let out = d.ok(&["archive", "--older-than", "0s", "--json"]).json();
    assert_eq!(out["tasks"], 1, "{out}");
    assert!(d.ls().is_empty());

    d.ok(&["retry", "flaky"]);
    let tasks = d.ls();
    assert_eq!(tasks.len(), 1, "the retried task is live again: {tasks:#?}");
    assert_eq!(tasks[0].status, "pending");
    let show = d.show("flaky");
    assert_eq!(
        show["attempts"].as_array().map(Vec::len),
        Some(1),
        "its first attempt came back with it: {show}"
    );
}

#[test]
fn gc_deletes_only_unreferenced_blobs_past_the_grace_period() {
    let shared = temp_dir("gc-store");
    let remote = dir_remote(shared.path());
    let d = Device::new("gc-dev");
    d.ok(&["init", "--remote", &remote]);
    d.write("in.txt", "an input\n");
    d.ok(&[
        "submit",
        "--name",
        "cat",
        "--input",
        "in.txt",
        "--",
        "sh",
        "-c",
        "cat in.txt; echo err >&2",
    ]);
    d.ok(&["work"]);
    // Archived tasks' blobs count as referenced too.
    d.ok(&["archive", "--older-than", "0s"]);
    d.ok(&["submit", "--name", "live", "--", "echo", "still-here"]);
    d.ok(&["work"]);

    // A blob no task names, in the replica and on the remote (an upload
    // whose task never landed).
    let orphan = b"nobody names me".to_vec();
    let name = format!("blobs/{}.blob", hex::encode(Sha256::digest(&orphan)));
    for root in [d.store(), shared.path().to_owned()] {
        fs::write(root.join(&name), &orphan).expect("write the orphan blob");
    }
    let before: BTreeSet<String> = names(&d.store())
        .into_iter()
        .filter(|n| n.starts_with("blobs/"))
        .collect();
    // The input and the orphan: the tasks' logs are short enough for their
    // attempts to hold them whole (issue 18), so they are no blobs.
    assert_eq!(before.len(), 2, "{before:#?}");

    // Within the grace period it stays.
    let young = d.ok(&["gc", "--json"]).json();
    assert_eq!(young["removed"], 0, "{young}");
    assert_eq!(young["young"], 1, "{young}");
    assert!(d.store().join(&name).is_file());

    let gc = d.ok(&["gc", "--grace", "0s", "--json"]).json();
    assert_eq!(gc["removed"], 1, "{gc}");
    assert_eq!(gc["remote_removed"], 1, "{gc}");
    assert!(!d.store().join(&name).exists());
    assert!(!shared.path().join(&name).exists());
    let after: BTreeSet<String> = names(&d.store())
        .into_iter()
        .filter(|n| n.starts_with("blobs/"))
        .collect();
    assert_eq!(after.len(), before.len() - 1);

    // Everything a task names is still there and readable.
    let logs = d.ok(&["logs", "cat"]);
    assert!(logs.stdout.contains("an input"), "{}", logs.stdout);
    assert!(d.ok(&["logs", "live"]).stdout.contains("still-here"));
    d.ok(&[
        "submit", "--name", "again", "--input", "in.txt", "--", "cat", "in.txt",
    ]);
    d.ok(&["work"]);
    assert_eq!(d.task("again").status, "done");
}
