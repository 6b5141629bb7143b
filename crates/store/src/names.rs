//! Names in a store: blob ids, document ids, chunk file names and the
//! '/'-separated store names a [`Remote`](crate::Remote) speaks, plus the
//! sha256 helpers that tie a content-addressed name to its bytes.
//!
//! Everything here is pure: it validates strings and hashes bytes, and never
//! touches the file system. Every path the store builds goes through these
//! checks first, so a hostile name (`..`, `/`, a temp file) never reaches
//! `std::fs`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The only content `FORMAT` may have.
pub const FORMAT_LINE: &str = "bridge-store 1\n";

/// The name of the format file at the root of a store.
pub(crate) const FORMAT_NAME: &str = "FORMAT";
/// The name of the workspace file at the root of a store.
pub(crate) const WORKSPACE_NAME: &str = "workspace";
/// The folder holding one sub-folder of chunks per document.
pub(crate) const CHUNKS_DIR: &str = "chunks";
/// The folder holding one sub-folder of snapshots per live document.
pub(crate) const SNAPSHOTS_DIR: &str = "snapshots";
/// The folder holding one sub-folder of snapshots per archived document.
pub(crate) const ARCHIVE_DIR: &str = "archive";
/// The folder holding blobs.
pub(crate) const BLOBS_DIR: &str = "blobs";
/// The folder holding packs of small blobs (on remotes only; see
/// [`crate::packs`]).
pub(crate) const PACKS_DIR: &str = "packs";
/// File name extension of a chunk.
pub(crate) const CHUNK_EXT: &str = ".chunk";
/// File name extension of a snapshot (live or archived).
pub(crate) const SNAPSHOT_EXT: &str = ".snap";
/// File name extension of a blob.
pub(crate) const BLOB_EXT: &str = ".blob";
/// File name extension of a pack.
pub(crate) const PACK_EXT: &str = ".pack";
/// Prefix of temporary files; every listing ignores them.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// Largest `FORMAT` or `workspace` file read: each is one short line.
pub const MAX_SMALL_FILE_BYTES: u64 = 4096;
/// Largest chunk file read (roster files are chunks too). A chunk is one
/// writer's changes to one document of at most a thousand tasks: all the
/// signed chunks of a compacted 1000-task document weigh under 1 MB, so
/// even a first chunk of large task specs stays far below this.
pub const MAX_CHUNK_BYTES: u64 = 64 << 20;
/// Largest snapshot file read, live or archived: every chunk of one
/// document bundled and compressed (a 1000-task document's is ~100 KB).
pub const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;
/// Largest blob file read: a task's input, output or log, encrypted. A
/// blob is decrypted in memory, so this also bounds what one task output
/// may weigh; a worker refuses to store a larger output.
pub const MAX_BLOB_BYTES: u64 = 1 << 30;
/// Largest pack file read: small blobs bundled (see [`crate::packs`];
/// bridge writes packs of about 8 MiB).
pub const MAX_PACK_BYTES: u64 = 256 << 20;

/// Longest accepted document id.
pub const MAX_DOC_ID_LEN: usize = 80;
/// Longest accepted workspace id.
pub const MAX_WORKSPACE_ID_LEN: usize = 200;

/// Lowercase hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// True if `s` is 64 lowercase hex digits.
pub(crate) fn is_hash_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The id of a blob: the lowercase hex sha256 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobId(String);

impl BlobId {
    /// The id of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> BlobId {
        BlobId(sha256_hex(bytes))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The blob's file name, `<hash>.blob`.
    pub fn file_name(&self) -> String {
        format!("{}{BLOB_EXT}", self.0)
    }

    /// The blob's store name, `blobs/<hash>.blob`.
    pub fn store_name(&self) -> String {
        format!("{BLOBS_DIR}/{}", self.file_name())
    }

    /// Wraps a hash already known to be valid.
    pub(crate) fn from_valid_hex(hex: String) -> BlobId {
        debug_assert!(is_hash_hex(&hex));
        BlobId(hex)
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string that is not a blob id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid blob id {0:?}: expected 64 lowercase hex digits (a sha256)")]
pub struct BlobIdError(pub String);

impl FromStr for BlobId {
    type Err = BlobIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_hash_hex(s) {
            Ok(BlobId(s.to_owned()))
        } else {
            Err(BlobIdError(s.to_owned()))
        }
    }
}

/// A string that is not a document id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid document id {0:?}: expected 1 to 80 characters from [0-9A-Za-z._-], not starting with '.'"
)]
pub struct DocIdError(pub String);

/// Checks a document id: `[0-9A-Za-z._-]{1,80}`.
///
/// Ids starting with `.` are refused as well: `.` and `..` would escape the
/// `chunks/` folder, and dot-names are how temporary and hidden files look.
pub fn validate_doc_id(doc: &str) -> Result<(), DocIdError> {
    let ok = !doc.is_empty()
        && doc.len() <= MAX_DOC_ID_LEN
        && !doc.starts_with('.')
        && doc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DocIdError(doc.to_owned()))
    }
}

/// A string that is not a workspace id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid workspace id {0:?}: expected 1 to 200 characters, no control characters, no leading or trailing spaces"
)]
pub struct WorkspaceIdError(pub String);

/// Checks a workspace id: one line of 1 to 200 characters, no control
/// characters, no surrounding whitespace (it is stored as one line).
pub fn validate_workspace_id(id: &str) -> Result<(), WorkspaceIdError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_WORKSPACE_ID_LEN
        && id.trim() == id
        && !id.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(WorkspaceIdError(id.to_owned()))
    }
}

/// The folders of a document's files: its chunks, its snapshots (bundles of
/// chunks made by compaction) and its archived snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocFolder {
    /// `chunks/<doc>/<hash>.chunk`
    Chunks,
    /// `snapshots/<doc>/<hash>.snap`
    Snapshots,
    /// `archive/<doc>/<hash>.snap`
    Archive,
}

impl DocFolder {
    /// Every folder, in loading order.
    pub const ALL: [DocFolder; 3] = [DocFolder::Chunks, DocFolder::Snapshots, DocFolder::Archive];

    /// The largest file of this folder bridge reads.
    pub fn max_bytes(self) -> u64 {
        match self {
            DocFolder::Chunks => MAX_CHUNK_BYTES,
            DocFolder::Snapshots | DocFolder::Archive => MAX_SNAPSHOT_BYTES,
        }
    }

    /// The top-level folder name.
    pub fn dir(self) -> &'static str {
        match self {
            DocFolder::Chunks => CHUNKS_DIR,
            DocFolder::Snapshots => SNAPSHOTS_DIR,
            DocFolder::Archive => ARCHIVE_DIR,
        }
    }

    /// The file name extension, with its dot.
    pub fn ext(self) -> &'static str {
        match self {
            DocFolder::Chunks => CHUNK_EXT,
            DocFolder::Snapshots | DocFolder::Archive => SNAPSHOT_EXT,
        }
    }

    /// The folder named `dir`, if it is one.
    pub(crate) fn from_dir(dir: &str) -> Option<DocFolder> {
        DocFolder::ALL.into_iter().find(|f| f.dir() == dir)
    }

    /// The hash in a file name of this folder, if it is one.
    pub fn file_hash(self, name: &str) -> Option<&str> {
        name.strip_suffix(self.ext()).filter(|h| is_hash_hex(h))
    }

    /// The store name of file `file` of document `doc` in this folder.
    pub fn store_name(self, doc: &str, file: &str) -> String {
        format!("{}/{doc}/{file}", self.dir())
    }

    /// The file name for content hashing to `hash`.
    pub fn file_name(self, hash: &str) -> String {
        format!("{hash}{}", self.ext())
    }
}

/// The hash in a blob file name `<hash>.blob`, if it is one.
pub(crate) fn blob_file_hash(name: &str) -> Option<&str> {
    name.strip_suffix(BLOB_EXT).filter(|h| is_hash_hex(h))
}

/// The hash in a pack file name `<hash>.pack`, if it is one.
pub(crate) fn pack_file_hash(name: &str) -> Option<&str> {
    name.strip_suffix(PACK_EXT).filter(|h| is_hash_hex(h))
}

/// A parsed store name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreName<'a> {
    /// `FORMAT`
    Format,
    /// `workspace`
    Workspace,
    /// `chunks/<doc>/<hash>.chunk`, `snapshots/<doc>/<hash>.snap` or
    /// `archive/<doc>/<hash>.snap`
    Doc {
        folder: DocFolder,
        doc: &'a str,
        hash: &'a str,
    },
    /// `blobs/<hash>.blob`
    Blob { hash: &'a str },
    /// `packs/<hash>.pack`: small blobs bundled (remotes only)
    Pack { hash: &'a str },
}

impl<'a> StoreName<'a> {
    /// Parses a '/'-separated store name; `None` if it is not one.
    pub(crate) fn parse(name: &'a str) -> Option<StoreName<'a>> {
        let mut parts = name.split('/');
        let first = parts.next()?;
        let second = parts.next();
        let third = parts.next();
        if parts.next().is_some() {
            return None;
        }
        match (first, second, third) {
            (FORMAT_NAME, None, None) => Some(StoreName::Format),
            (WORKSPACE_NAME, None, None) => Some(StoreName::Workspace),
            (BLOBS_DIR, Some(file), None) => {
                blob_file_hash(file).map(|hash| StoreName::Blob { hash })
            }
            (PACKS_DIR, Some(file), None) => {
                pack_file_hash(file).map(|hash| StoreName::Pack { hash })
            }
            (dir, Some(doc), Some(file)) => {
                let folder = DocFolder::from_dir(dir)?;
                validate_doc_id(doc).ok()?;
                folder
                    .file_hash(file)
                    .map(|hash| StoreName::Doc { folder, doc, hash })
            }
            _ => None,
        }
    }

    /// The largest file of this kind bridge reads (see the `MAX_*_BYTES`
    /// constants): a larger one is refused before it is read, so a junk
    /// file in a store cannot exhaust memory.
    pub(crate) fn max_bytes(&self) -> u64 {
        match *self {
            StoreName::Format | StoreName::Workspace => MAX_SMALL_FILE_BYTES,
            StoreName::Doc { folder, .. } => folder.max_bytes(),
            StoreName::Blob { .. } => MAX_BLOB_BYTES,
            StoreName::Pack { .. } => MAX_PACK_BYTES,
        }
    }

    /// The sha256 the content must have, for content-addressed names.
    pub(crate) fn hash(&self) -> Option<&'a str> {
        match *self {
            StoreName::Doc { hash, .. } | StoreName::Blob { hash } | StoreName::Pack { hash } => {
                Some(hash)
            }
            StoreName::Format | StoreName::Workspace => None,
        }
    }
}

/// Renders the start of an unexpected file content for an error message.
pub(crate) fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        format!("{text}…")
    } else {
        text
    }
}

/// Parses the content of a `workspace` file: one line, trailing newline
/// optional. Returns the id, or what was found.
pub(crate) fn parse_workspace_file(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| preview(bytes))?;
    let line = text
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(text);
    validate_workspace_id(line).map_err(|_| preview(bytes))?;
    Ok(line.to_owned())
}

/// The content of a `workspace` file for `id`.
pub(crate) fn workspace_file(id: &str) -> String {
    format!("{id}\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_are_lowercase_hex() {
        let id = BlobId::of_bytes(b"x");
        assert_eq!(id.to_string().parse::<BlobId>(), Ok(id.clone()));
        assert!("ABCD".parse::<BlobId>().is_err());
        assert!(id.to_string().to_uppercase().parse::<BlobId>().is_err());
        assert_eq!(id.store_name(), format!("blobs/{id}.blob"));
    }

    #[test]
    fn doc_ids() {
        for ok in ["a", "batch-1.part_2", &"x".repeat(80)] {
            assert!(validate_doc_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".tmp-1", "a/b", "a b", "é", &"x".repeat(81)] {
            assert!(validate_doc_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_names() {
        let h = sha256_hex(b"");
        assert_eq!(StoreName::parse("FORMAT"), Some(StoreName::Format));
        assert_eq!(StoreName::parse("workspace"), Some(StoreName::Workspace));
        assert_eq!(
            StoreName::parse(&format!("blobs/{h}.blob")),
            Some(StoreName::Blob { hash: &h })
        );
        assert_eq!(
            StoreName::parse(&format!("chunks/d/{h}.chunk")),
            Some(StoreName::Doc {
                folder: DocFolder::Chunks,
                doc: "d",
                hash: &h
            })
        );
        assert_eq!(
            StoreName::parse(&format!("snapshots/d/{h}.snap")),
            Some(StoreName::Doc {
                folder: DocFolder::Snapshots,
                doc: "d",
                hash: &h
            })
        );
        assert_eq!(
            StoreName::parse(&format!("archive/d/{h}.snap")),
            Some(StoreName::Doc {
                folder: DocFolder::Archive,
                doc: "d",
                hash: &h
            })
        );
        for bad in [
            String::new(),
            "FORMAT/x".into(),
            format!("chunks/../{h}.chunk"),
            format!("chunks/d/{h}.blob"),
            format!("blobs/{h}.chunk"),
            format!("blobs/.tmp-{h}.blob"),
            format!("chunks/d/e/{h}.chunk"),
            format!("snapshots/d/{h}.chunk"),
            format!("archive/d/{h}.blob"),
            "members/x".into(),
        ] {
            assert_eq!(StoreName::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn workspace_files() {
        assert_eq!(parse_workspace_file(b"ws-1\n"), Ok("ws-1".into()));
        assert_eq!(parse_workspace_file(b"ws-1"), Ok("ws-1".into()));
        assert_eq!(parse_workspace_file(b"ws-1\r\n"), Ok("ws-1".into()));
        assert!(parse_workspace_file(b"a\nb\n").is_err());
        assert!(parse_workspace_file(b"\n").is_err());
        assert!(parse_workspace_file(&[0xff]).is_err());
    }
}
