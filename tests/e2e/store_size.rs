//! Issue 18, item 2: what a pool costs in its store. Equal content is one
//! blob whichever member stores it (convergent sealing), a log that its
//! attempt's tail holds whole is no blob at all, and a private batch's
//! files stay sealed to its audience (not shared with the pool's).

use std::fs;
use std::path::PathBuf;

use crate::harness::{Device, dir_remote, files_under, temp_dir};

/// A 10 KB file whose bytes are not text.
fn model() -> Vec<u8> {
    (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

const TASKS: &str = "tasks:
  - name: t
    matrix:
      i: [0, 1, 2, 3, 4, 5, 6, 7]
    run: sh -c 'wc -c < model.bin; echo task ${{ matrix.i }}'
    inputs: [model.bin]
  - name: long
    run: seq 1 2000
";

fn blobs(store: &std::path::Path) -> Vec<PathBuf> {
    files_under(&store.join("blobs"))
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

#[test]
fn equal_content_is_one_blob_and_short_logs_stay_in_their_attempts() {
    let shared = temp_dir("size-shared");
    let remote = dir_remote(shared.path());
    let laptop = Device::new("size-laptop");
    laptop.ok(&["init", "--remote", &remote]);
    let server = Device::new("size-server");
    server.join_as(&laptop, &remote, "submit");
    fs::write(laptop.path("model.bin"), model()).expect("write the model");
    fs::write(server.path("model.bin"), model()).expect("write the model");

    laptop.write("tasks.yaml", TASKS);
    laptop.ok(&["submit", "tasks.yaml"]);
    // Another member stores the same content: the same file.
    server.write(
        "more.yaml",
        "tasks:\n  - name: again\n    run: wc -c model.bin\n    inputs: [model.bin]\n",
    );
    server.ok(&["submit", "more.yaml"]);
    server.ok(&["work"]);
    laptop.ok(&["work"]);
    laptop.ok(&["sync"]);
    server.ok(&["sync"]);

    // The model once, and the long log (longer than a tail): nine tasks'
    // short logs and the other member's copy of the model added nothing.
    let stored = blobs(shared.path());
    assert_eq!(stored.len(), 2, "{stored:?}");
    let task = laptop.show("t[i=3]");
    let attempt = &task["attempts"][0];
    assert!(attempt.get("stdout_blob").is_none(), "{attempt}");
    let logs = laptop.ok(&["logs", "t[i=3]"]);
    assert_eq!(logs.stdout, "10000\ntask 3\n");
    let long = laptop.ok(&["logs", "long"]);
    let expected: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    assert_eq!(long.stdout, expected);
    let again = laptop.ok(&["logs", "again"]);
    assert_eq!(again.stdout, "10000 model.bin\n");
    // Nothing of the content shows in the store.
    for b in &stored {
        let bytes = fs::read(b).expect("read a blob");
        assert!(
            !bytes
                .windows(64)
                .any(|w| model().windows(64).any(|m| m == w))
        );
    }

    // A private batch's copy is its own file, an age envelope to its
    // audience's key: members outside it cannot confirm what it holds.
    laptop.ok(&[
        "submit",
        "--audience",
        "size-laptop",
        "--input",
        "model.bin",
        "--",
        "wc",
        "-c",
        "model.bin",
    ]);
    laptop.ok(&["sync"]);
    let after = blobs(shared.path());
    let new: Vec<_> = after.iter().filter(|p| !stored.contains(p)).collect();
    assert_eq!(new.len(), 1, "{after:?}");
    let head = fs::read(new[0]).expect("read the private blob");
    assert!(
        head.starts_with(b"age-encryption.org/v1"),
        "{:?}",
        &head[..20]
    );
}
