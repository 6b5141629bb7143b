//! Behaviour tests of `bridge-store` on real folders (one test binary).

#![allow(clippy::unwrap_used)]

mod hostile;
mod load;
mod replica;
mod sync;

use std::collections::BTreeSet;
use std::path::Path;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};

/// Puts `key = value` into `doc` and returns the incremental chunk.
pub fn chunk_put(doc: &mut AutoCommit, key: &str, value: i64) -> Vec<u8> {
    let heads = doc.get_heads();
    doc.put(ROOT, key, value).unwrap();
    doc.commit();
    doc.save_after(&heads)
}

/// A chunk from a fresh document, independent of every other chunk.
pub fn independent_chunk(key: &str, value: i64) -> Vec<u8> {
    chunk_put(&mut AutoCommit::new(), key, value)
}

/// The integer at `key` in the root map.
pub fn get_i64(doc: &AutoCommit, key: &str) -> Option<i64> {
    doc.get(ROOT, key).unwrap().and_then(|(v, _)| v.as_i64())
}

/// Every file under `root` whose name starts with `.tmp-`.
pub fn temp_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(entry.path().display().to_string());
            }
        }
    }
    out
}

/// The content names (chunks and blobs) a remote lists.
pub fn content_names(remote: &dyn bridge_store::Remote) -> BTreeSet<String> {
    remote
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("chunks/") || n.starts_with("blobs/"))
        .collect()
}
