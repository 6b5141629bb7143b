//! The local replica: a folder on this device holding the store layout
//! (`FORMAT`, `workspace`, `chunks/<doc>/<hash>.chunk`, `blobs/<hash>.blob`).
//!
//! [`Replica`] owns creating and opening that folder, and reading and writing
//! its content-addressed files. Every write is atomic and create-only (see
//! `fsutil`); every read checks the bytes against the sha256 in the
//! file name. Files are never deleted or rewritten here: a corrupt file is
//! reported and left in place for a person to look at.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::{self, CopyError, Kind, Placed, TempFile};
use crate::names::{
    self, BLOBS_DIR, BlobId, CHUNK_EXT, CHUNKS_DIR, DocIdError, FORMAT_LINE, FORMAT_NAME,
    StoreName, WORKSPACE_NAME, WorkspaceIdError, validate_doc_id,
};
use crate::remote::DirRemote;

/// A store folder on this device. Cheap to clone; holds no open files, so
/// any number of processes and threads may use the same folder at once.
#[derive(Debug, Clone)]
pub struct Replica {
    root: PathBuf,
    workspace_id: String,
}

/// Why [`Replica::init`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The workspace id cannot be stored.
    #[error(transparent)]
    InvalidWorkspaceId(#[from] WorkspaceIdError),
    /// The folder could not be created.
    #[error("could not create the store folder {path}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The folder already holds a store of another workspace.
    #[error(
        "{path} already holds the store of workspace {found:?}, not {expected:?}; choose another folder"
    )]
    OtherWorkspace {
        /// The `workspace` file.
        path: PathBuf,
        /// The id asked for.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// The folder holds a store of an unknown format.
    #[error(
        "{path} holds {found:?}, not {:?}: a store of another bridge version; upgrade bridge or choose another folder",
        FORMAT_LINE.trim_end()
    )]
    UnknownFormat {
        /// The `FORMAT` file.
        path: PathBuf,
        /// The start of its content.
        found: String,
    },
    /// A store file could not be read.
    #[error("could not read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A store file could not be written.
    #[error("could not write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Why [`Replica::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The folder does not exist.
    #[error("no store at {path}: the folder does not exist; run `bridge init` or check the path")]
    NoFolder {
        /// The folder.
        path: PathBuf,
    },
    /// The folder has no `FORMAT` file.
    #[error(
        "{path} is not a bridge store (it has no FORMAT file); run `bridge init` or check the path"
    )]
    NotAStore {
        /// The folder.
        path: PathBuf,
    },
    /// `FORMAT` holds something else than [`FORMAT_LINE`].
    #[error(
        "{path} holds {found:?}, not {:?}: a store of another bridge version; upgrade bridge",
        FORMAT_LINE.trim_end()
    )]
    UnknownFormat {
        /// The `FORMAT` file.
        path: PathBuf,
        /// The start of its content.
        found: String,
    },
    /// The `workspace` file is missing.
    #[error("{path} is missing: the store was not fully initialised; run `bridge init` again")]
    MissingWorkspace {
        /// The `workspace` file.
        path: PathBuf,
    },
    /// The `workspace` file does not hold one valid id.
    #[error(
        "{path} does not hold a workspace id (found {found:?}); restore it from another replica"
    )]
    InvalidWorkspace {
        /// The `workspace` file.
        path: PathBuf,
        /// The start of its content.
        found: String,
    },
    /// A store file could not be read.
    #[error("could not read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Why a write into a replica failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The document id is not valid.
    #[error(transparent)]
    InvalidDocId(#[from] DocIdError),
    /// The store name is not one a replica holds.
    #[error("invalid store file name {name:?}")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// The bytes do not hash to the name they were to be stored under.
    #[error("refusing to store {name}: its content does not hash to its name")]
    HashMismatch {
        /// The store name.
        name: String,
    },
    /// The source file could not be read.
    #[error("could not read {path}")]
    ReadSource {
        /// The source file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The store file could not be written.
    #[error("could not write {path}")]
    Io {
        /// The file (or folder) being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Why a listing of a replica failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The document id is not valid.
    #[error(transparent)]
    InvalidDocId(#[from] DocIdError),
    /// A folder could not be read.
    #[error("could not list {path}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Why a read from a replica failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The document id is not valid.
    #[error(transparent)]
    InvalidDocId(#[from] DocIdError),
    /// The chunk file name is not `<sha256 hex>.chunk`.
    #[error("invalid chunk file name {name:?}: expected <sha256 hex>.chunk")]
    InvalidChunkName {
        /// The name.
        name: String,
    },
    /// The name is not the store name of a chunk or a blob.
    #[error(
        "invalid store file name {name:?}: expected chunks/<doc>/<sha256 hex>.chunk or blobs/<sha256 hex>.blob"
    )]
    InvalidStoreName {
        /// The name.
        name: String,
    },
    /// The file is not in the replica.
    #[error("{path} is missing; sync may bring it")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("could not read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file's bytes do not hash to its name.
    #[error(
        "{path} is corrupt: its content hashes to {actual}, not {expected}; it was left in place"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The hash its name promises.
        expected: String,
        /// The hash of its content.
        actual: String,
    },
    /// The destination of a copy could not be written.
    #[error("could not write {path}")]
    Write {
        /// The destination (or its folder).
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl Replica {
    /// Creates a store in `root` (and `root` itself if needed) for
    /// `workspace_id`. Idempotent for the same workspace; refuses a folder
    /// holding another workspace's store or another store format.
    ///
    /// `workspace` is written before `FORMAT`, so a folder with a `FORMAT`
    /// file is always a complete store.
    pub fn init(root: &Path, workspace_id: &str) -> Result<Replica, InitError> {
        names::validate_workspace_id(workspace_id)?;
        fs::create_dir_all(root).map_err(|source| InitError::CreateDir {
            path: root.to_owned(),
            source,
        })?;

        let format_path = root.join(FORMAT_NAME);
        let read = |path: &Path| {
            fsutil::read_optional(path).map_err(|source| InitError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let check_format = |bytes: Option<Vec<u8>>| match bytes {
            Some(b) if b != FORMAT_LINE.as_bytes() => Err(InitError::UnknownFormat {
                path: format_path.clone(),
                found: names::preview(&b),
            }),
            _ => Ok(()),
        };
        check_format(read(&format_path)?)?;

        let ws_path = root.join(WORKSPACE_NAME);
        let check_workspace = |bytes: Option<Vec<u8>>| match bytes {
            Some(b) => match names::parse_workspace_file(&b) {
                Ok(found) if found == workspace_id => Ok(true),
                Ok(found) | Err(found) => Err(InitError::OtherWorkspace {
                    path: ws_path.clone(),
                    expected: workspace_id.to_owned(),
                    found,
                }),
            },
            None => Ok(false),
        };
        if !check_workspace(read(&ws_path)?)? {
            let content = names::workspace_file(workspace_id);
            fsutil::write_new(root, WORKSPACE_NAME, content.as_bytes()).map_err(|source| {
                InitError::Write {
                    path: ws_path.clone(),
                    source,
                }
            })?;
            // Another process may have won the race with another id.
            check_workspace(read(&ws_path)?)?;
        }

        for dir in [CHUNKS_DIR, BLOBS_DIR] {
            let path = root.join(dir);
            fsutil::ensure_dir(&path).map_err(|source| InitError::CreateDir { path, source })?;
        }

        fsutil::write_new(root, FORMAT_NAME, FORMAT_LINE.as_bytes()).map_err(|source| {
            InitError::Write {
                path: format_path.clone(),
                source,
            }
        })?;
        check_format(read(&format_path)?)?;

        tracing::debug!(root = %root.display(), workspace = workspace_id, "store initialised");
        Ok(Replica {
            root: root.to_owned(),
            workspace_id: workspace_id.to_owned(),
        })
    }

    /// Opens the store in `root`, checking its `FORMAT`.
    pub fn open(root: &Path) -> Result<Replica, OpenError> {
        let format_path = root.join(FORMAT_NAME);
        let format = match fs::read(&format_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(if root.is_dir() {
                    OpenError::NotAStore {
                        path: root.to_owned(),
                    }
                } else {
                    OpenError::NoFolder {
                        path: root.to_owned(),
                    }
                });
            }
            Err(source) => {
                return Err(OpenError::Read {
                    path: format_path,
                    source,
                });
            }
        };
        if format != FORMAT_LINE.as_bytes() {
            return Err(OpenError::UnknownFormat {
                path: format_path,
                found: names::preview(&format),
            });
        }
        let ws_path = root.join(WORKSPACE_NAME);
        let ws = match fs::read(&ws_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OpenError::MissingWorkspace { path: ws_path });
            }
            Err(source) => {
                return Err(OpenError::Read {
                    path: ws_path,
                    source,
                });
            }
        };
        let workspace_id =
            names::parse_workspace_file(&ws).map_err(|found| OpenError::InvalidWorkspace {
                path: ws_path,
                found,
            })?;
        Ok(Replica {
            root: root.to_owned(),
            workspace_id,
        })
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The workspace this store belongs to.
    pub fn workspace_id(&self) -> &str {
        &self.workspace_id
    }

    /// This replica seen as a remote, e.g. to sync another replica with it.
    pub fn as_remote(&self) -> DirRemote {
        DirRemote::new(self.root.clone())
    }

    /// The folder of a document's chunks.
    fn doc_dir(&self, doc: &str) -> PathBuf {
        self.root.join(CHUNKS_DIR).join(doc)
    }

    /// The path of a chunk file (not checked).
    pub fn chunk_path(&self, doc: &str, name: &str) -> PathBuf {
        self.doc_dir(doc).join(name)
    }

    /// The path of a blob file (which may not exist).
    pub fn blob_path(&self, id: &BlobId) -> PathBuf {
        self.root.join(BLOBS_DIR).join(id.file_name())
    }

    /// Stores a chunk of document `doc` and returns its file name,
    /// `<sha256>.chunk`. Writing the same bytes twice is a no-op.
    pub fn write_chunk(&self, doc: &str, bytes: &[u8]) -> Result<String, WriteError> {
        validate_doc_id(doc)?;
        let name = format!("{}{CHUNK_EXT}", names::sha256_hex(bytes));
        let dir = self.doc_dir(doc);
        fsutil::write_new(&dir, &name, bytes).map_err(|source| WriteError::Io {
            path: dir.join(&name),
            source,
        })?;
        Ok(name)
    }

    /// The documents that have a chunk folder, sorted.
    pub fn list_docs(&self) -> Result<Vec<String>, ListError> {
        let dir = self.root.join(CHUNKS_DIR);
        let entries = fsutil::visible_entries(&dir)
            .map_err(|source| ListError::Io { path: dir, source })?
            .unwrap_or_default();
        let mut docs: Vec<String> = entries
            .into_iter()
            .filter(|(name, kind)| *kind == Kind::Dir && validate_doc_id(name).is_ok())
            .map(|(name, _)| name)
            .collect();
        docs.sort();
        Ok(docs)
    }

    /// The chunk file names of document `doc`, sorted. Temp files and names
    /// that are not `<sha256>.chunk` are left out.
    pub fn list_chunks(&self, doc: &str) -> Result<Vec<String>, ListError> {
        validate_doc_id(doc)?;
        let dir = self.doc_dir(doc);
        let entries = fsutil::visible_entries(&dir)
            .map_err(|source| ListError::Io { path: dir, source })?
            .unwrap_or_default();
        let mut chunks: Vec<String> = entries
            .into_iter()
            .filter(|(name, kind)| *kind == Kind::File && names::chunk_file_hash(name).is_some())
            .map(|(name, _)| name)
            .collect();
        chunks.sort();
        Ok(chunks)
    }

    /// Reads a chunk and checks that its bytes hash to its name.
    pub fn read_chunk(&self, doc: &str, name: &str) -> Result<Vec<u8>, ReadError> {
        validate_doc_id(doc)?;
        let hash = names::chunk_file_hash(name).ok_or_else(|| ReadError::InvalidChunkName {
            name: name.to_owned(),
        })?;
        read_verified(&self.chunk_path(doc, name), hash)
    }

    /// Stores the content of the file `src` as a blob, hashing while it
    /// copies (the file is never held in memory).
    pub fn put_blob_file(&self, src: &Path) -> Result<BlobId, WriteError> {
        let dir = self.root.join(BLOBS_DIR);
        let io_err = |source| WriteError::Io {
            path: dir.clone(),
            source,
        };
        let mut input = File::open(src).map_err(|source| WriteError::ReadSource {
            path: src.to_owned(),
            source,
        })?;
        fsutil::ensure_dir(&dir).map_err(io_err)?;
        let mut tmp = TempFile::create_in(&dir).map_err(io_err)?;
        let hash =
            fsutil::copy_hashing(&mut input, tmp.file().map_err(io_err)?).map_err(|e| match e {
                CopyError::Read(source) => WriteError::ReadSource {
                    path: src.to_owned(),
                    source,
                },
                CopyError::Write(source) => io_err(source),
            })?;
        let id = BlobId::from_valid_hex(hash);
        let dest = self.blob_path(&id);
        tmp.persist_new(&dest)
            .map_err(|source| WriteError::Io { path: dest, source })?;
        Ok(id)
    }

    /// Stores `bytes` as a blob.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<BlobId, WriteError> {
        let id = BlobId::of_bytes(bytes);
        let dir = self.root.join(BLOBS_DIR);
        fsutil::write_new(&dir, &id.file_name(), bytes).map_err(|source| WriteError::Io {
            path: self.blob_path(&id),
            source,
        })?;
        Ok(id)
    }

    /// True if the blob is in this replica (its content is not checked).
    pub fn has_blob(&self, id: &BlobId) -> bool {
        self.blob_path(id).is_file()
    }

    /// The blobs in this replica, sorted.
    pub fn list_blobs(&self) -> Result<Vec<BlobId>, ListError> {
        let dir = self.root.join(BLOBS_DIR);
        let entries = fsutil::visible_entries(&dir)
            .map_err(|source| ListError::Io { path: dir, source })?
            .unwrap_or_default();
        let mut blobs: Vec<BlobId> = entries
            .into_iter()
            .filter(|(_, kind)| *kind == Kind::File)
            .filter_map(|(name, _)| {
                names::blob_file_hash(&name).map(|h| BlobId::from_valid_hex(h.to_owned()))
            })
            .collect();
        blobs.sort();
        Ok(blobs)
    }

    /// Reads a blob and checks its hash.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, ReadError> {
        read_verified(&self.blob_path(id), id.as_str())
    }

    /// Copies a blob to `dest` in bounded memory, checking its hash before
    /// `dest` appears. `dest` is replaced atomically (temp file + rename);
    /// its parent folders are created.
    pub fn copy_blob_to(&self, id: &BlobId, dest: &Path) -> Result<(), ReadError> {
        let src_path = self.blob_path(id);
        let mut src = File::open(&src_path).map_err(|e| read_err(&src_path, e))?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let write_err = |source| ReadError::Write {
            path: dest.to_owned(),
            source,
        };
        fs::create_dir_all(&parent).map_err(write_err)?;
        let mut tmp = TempFile::create_in(&parent).map_err(write_err)?;
        let actual = fsutil::copy_hashing(&mut src, tmp.file().map_err(write_err)?).map_err(
            |e| match e {
                CopyError::Read(source) => ReadError::Io {
                    path: src_path.clone(),
                    source,
                },
                CopyError::Write(source) => write_err(source),
            },
        )?;
        if actual != id.as_str() {
            return Err(ReadError::Corrupt {
                path: src_path,
                expected: id.to_string(),
                actual,
            });
        }
        tmp.persist_replace(dest).map_err(write_err)
    }

    /// Stores a file received under store name `name` (a chunk or a blob),
    /// checking its hash. Returns whether it was new.
    pub(crate) fn put_store_file(&self, name: &str, bytes: &[u8]) -> Result<bool, WriteError> {
        let parsed = StoreName::parse(name).ok_or_else(|| WriteError::InvalidName {
            name: name.to_owned(),
        })?;
        let (dir, hash) = match parsed {
            StoreName::Chunk { doc, hash } => (self.doc_dir(doc), hash),
            StoreName::Blob { hash } => (self.root.join(BLOBS_DIR), hash),
            StoreName::Format | StoreName::Workspace => {
                return Err(WriteError::InvalidName {
                    name: name.to_owned(),
                });
            }
        };
        if names::sha256_hex(bytes) != hash {
            return Err(WriteError::HashMismatch {
                name: name.to_owned(),
            });
        }
        let file = name.rsplit('/').next().unwrap_or(name);
        let placed = fsutil::write_new(&dir, file, bytes).map_err(|source| WriteError::Io {
            path: dir.join(file),
            source,
        })?;
        Ok(placed == Placed::Created)
    }

    /// Reads the chunk or blob of store name `name`, checking its hash.
    pub(crate) fn read_store_file(&self, name: &str) -> Result<Vec<u8>, ReadError> {
        let hash = StoreName::parse(name)
            .and_then(|n| n.hash())
            .ok_or_else(|| ReadError::InvalidStoreName {
                name: name.to_owned(),
            })?;
        read_verified(&self.root.join(name), hash)
    }

    /// All content-addressed store names in this replica (chunks and blobs).
    pub fn list_store_names(&self) -> Result<BTreeSet<String>, ListError> {
        let mut out = BTreeSet::new();
        for doc in self.list_docs()? {
            for chunk in self.list_chunks(&doc)? {
                out.insert(names::chunk_store_name(&doc, &chunk));
            }
        }
        for blob in self.list_blobs()? {
            out.insert(blob.store_name());
        }
        Ok(out)
    }
}

/// Maps a read error, telling a missing file apart.
fn read_err(path: &Path, e: io::Error) -> ReadError {
    if e.kind() == io::ErrorKind::NotFound {
        ReadError::Missing {
            path: path.to_owned(),
        }
    } else {
        ReadError::Io {
            path: path.to_owned(),
            source: e,
        }
    }
}

/// Reads `path` and checks that it hashes to `expected`.
fn read_verified(path: &Path, expected: &str) -> Result<Vec<u8>, ReadError> {
    let bytes = fs::read(path).map_err(|e| read_err(path, e))?;
    let actual = names::sha256_hex(&bytes);
    if actual != expected {
        return Err(ReadError::Corrupt {
            path: path.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(bytes)
}
