//! Store files built from their content: the name is the content's hash,
//! as the store layout requires (DESIGN.md "Store layout").

use std::collections::BTreeSet;

use bridge_store::{BlobId, FORMAT_LINE};

/// A store file: its name and bytes.
pub type StoreFile = (String, Vec<u8>);

/// A blob file holding `content`.
pub fn blob(content: &str) -> StoreFile {
    let bytes = content.as_bytes().to_vec();
    (BlobId::of_bytes(&bytes).store_name(), bytes)
}

/// A chunk file of document `doc` holding `content` (not a valid
/// Automerge chunk: remotes never look inside).
pub fn chunk(doc: &str, content: &str) -> StoreFile {
    let bytes = content.as_bytes().to_vec();
    let hash = BlobId::of_bytes(&bytes).to_string();
    (format!("chunks/{doc}/{hash}.chunk"), bytes)
}

/// The store header files of workspace `ws`: `workspace` and `FORMAT`.
pub fn header(ws: &str) -> Vec<StoreFile> {
    vec![
        ("workspace".to_owned(), format!("{ws}\n").into_bytes()),
        ("FORMAT".to_owned(), FORMAT_LINE.as_bytes().to_vec()),
    ]
}

/// The names of `files`.
pub fn names(files: &[StoreFile]) -> BTreeSet<String> {
    files.iter().map(|(n, _)| n.clone()).collect()
}
