//! Issue 18, item 2: what a pool costs in its store. Equal content is one
//! blob whichever member stores it (convergent sealing), a log that its
//! attempt's tail holds whole is no blob at all, and a private batch's
//! files stay sealed to its audience (not shared with the pool's).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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

/// The visible files under `folder` of a store.
fn files_in(store: &Path, folder: &str) -> Vec<PathBuf> {
    files_under(&store.join(folder))
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

/// The hashes of the blobs a pack file holds (its header: magic, count,
/// then 32-byte hash and 8-byte length per entry).
fn pack_entries(pack: &Path) -> Vec<String> {
    let bytes = fs::read(pack).expect("read a pack");
    let rest = bytes
        .strip_prefix(b"BRIDGE-PACK-1\n".as_slice())
        .expect("a pack");
    let count = u32::from_be_bytes(rest[..4].try_into().expect("a count")) as usize;
    (0..count)
        .map(|i| hex::encode(&rest[4 + i * 40..4 + i * 40 + 32]))
        .collect()
}

/// Every blob a store holds, loose or packed, by hash.
fn stored_blobs(store: &Path) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = files_in(store, "blobs")
        .iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some(name.strip_suffix(".blob")?.to_owned())
        })
        .collect();
    for pack in files_in(store, "packs") {
        out.extend(pack_entries(&pack));
    }
    out
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
    let stored = stored_blobs(shared.path());
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
    let model = model();
    for file in files_in(shared.path(), "blobs")
        .into_iter()
        .chain(files_in(shared.path(), "packs"))
    {
        let bytes = fs::read(&file).expect("read a store file");
        assert!(!bytes.windows(64).any(|w| model.windows(64).any(|m| m == w)));
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
    let after = stored_blobs(shared.path());
    let new: Vec<_> = after.difference(&stored).collect();
    assert_eq!(new.len(), 1, "{after:?}");
    let head = fs::read(shared.path().join(format!("blobs/{}.blob", new[0])))
        .expect("one new blob, pushed alone: loose");
    assert!(
        head.starts_with(b"age-encryption.org/v1"),
        "{:?}",
        &head[..20]
    );
}

#[test]
fn small_blobs_travel_as_one_pack_and_gc_rewrites_it() {
    let shared = temp_dir("pack-shared");
    let remote = dir_remote(shared.path());
    let laptop = Device::new("pack-laptop");
    laptop.ok(&["init", "--remote", &remote]);
    for i in 0..30 {
        laptop.write(&format!("in/{i}"), &format!("input number {i}\n"));
    }
    let matrix: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    laptop.write(
        "tasks.yaml",
        &format!(
            "tasks:\n  - name: t\n    matrix:\n      i: [{}]\n    run: cat in/${{{{ matrix.i }}}}\n    inputs: [\"in/${{{{ matrix.i }}}}\"]\n",
            matrix.join(", ")
        ),
    );
    // A blob no task names (an upload whose task never landed).
    let orphan = b"nobody names me".to_vec();
    let orphan_hash = hex::encode(Sha256::digest(&orphan));
    fs::write(
        laptop.store().join(format!("blobs/{orphan_hash}.blob")),
        &orphan,
    )
    .expect("write the orphan blob");
    laptop.ok(&["submit", "--offline", "tasks.yaml"]);
    laptop.ok(&["sync"]);

    // One sync, one pack: 30 inputs and the orphan, no loose blob.
    assert!(files_in(shared.path(), "blobs").is_empty());
    let packs = files_in(shared.path(), "packs");
    assert_eq!(packs.len(), 1, "{packs:?}");
    let entries = pack_entries(&packs[0]);
    assert_eq!(entries.len(), 31);
    assert!(entries.contains(&orphan_hash));

    // gc takes the orphan out: the pack is rewritten without it.
    let gc = laptop.ok(&["gc", "--grace", "0s", "--json"]).json();
    assert_eq!(gc["remote_removed"], 1, "{gc}");
    let packs = files_in(shared.path(), "packs");
    assert_eq!(packs.len(), 1, "{packs:?}");
    let entries = pack_entries(&packs[0]);
    assert_eq!(entries.len(), 30);
    assert!(!entries.contains(&orphan_hash));

    // Another device gets every input out of the pack and runs the tasks.
    let server = Device::new("pack-server");
    server.join_as(&laptop, &remote, "submit");
    let work = server.ok(&["work"]);
    assert!(work.stderr.contains("30 done"), "{}", work.stderr);
    server.ok(&["sync"]);
    laptop.ok(&["sync"]);
    assert_eq!(laptop.status().count("done"), 30);
    assert_eq!(laptop.ok(&["logs", "t[i=17]"]).stdout, "input number 17\n");
}
