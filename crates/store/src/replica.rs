//! The local replica: a folder on this device holding the store layout
//! (`FORMAT`, `workspace`, `chunks/<doc>/<hash>.chunk`,
//! `snapshots/<doc>/<hash>.snap`, `archive/<doc>/<hash>.snap`,
//! `blobs/<hash>.blob`).
//!
//! [`Replica`] owns creating and opening that folder, and reading and writing
//! its content-addressed files. Every write is atomic and create-only (see
//! `fsutil`); every read checks the bytes against the sha256 in the
//! file name. Files are never rewritten; they are deleted only through
//! [`Replica::remove_store_files`], which compaction, archival and garbage
//! collection call once they have proved the files redundant. A corrupt file
//! is reported and left in place for a person to look at.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::{self, CopyError, Kind, Placed, TempFile};
use crate::names::{
    self, BLOBS_DIR, BlobId, CHUNKS_DIR, DocFolder, DocIdError, FORMAT_LINE, FORMAT_NAME,
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

    /// The folder of a document's files in `folder`.
    fn doc_dir_in(&self, folder: DocFolder, doc: &str) -> PathBuf {
        self.root.join(folder.dir()).join(doc)
    }

    /// The path of a chunk file (not checked).
    pub fn chunk_path(&self, doc: &str, name: &str) -> PathBuf {
        self.doc_file_path(DocFolder::Chunks, doc, name)
    }

    /// The path of a document file (not checked).
    pub fn doc_file_path(&self, folder: DocFolder, doc: &str, name: &str) -> PathBuf {
        self.doc_dir_in(folder, doc).join(name)
    }

    /// The path of a blob file (which may not exist).
    pub fn blob_path(&self, id: &BlobId) -> PathBuf {
        self.root.join(BLOBS_DIR).join(id.file_name())
    }

    /// Stores a chunk of document `doc` and returns its file name,
    /// `<sha256>.chunk`. Writing the same bytes twice is a no-op.
    pub fn write_chunk(&self, doc: &str, bytes: &[u8]) -> Result<String, WriteError> {
        self.write_doc_file(DocFolder::Chunks, doc, bytes)
    }

    /// Stores a file of document `doc` in `folder` and returns its file
    /// name (`<sha256><ext>`). Writing the same bytes twice is a no-op.
    pub fn write_doc_file(
        &self,
        folder: DocFolder,
        doc: &str,
        bytes: &[u8],
    ) -> Result<String, WriteError> {
        validate_doc_id(doc)?;
        let name = folder.file_name(&names::sha256_hex(bytes));
        let dir = self.doc_dir_in(folder, doc);
        fsutil::write_new(&dir, &name, bytes).map_err(|source| WriteError::Io {
            path: dir.join(&name),
            source,
        })?;
        Ok(name)
    }

    /// The live documents (those with a chunk file or a snapshot), sorted.
    /// An empty chunk folder (left by an archival) does not count.
    pub fn list_docs(&self) -> Result<Vec<String>, ListError> {
        let mut docs = self.list_docs_in(DocFolder::Chunks)?;
        docs.retain(|doc| {
            fs::read_dir(self.doc_dir_in(DocFolder::Chunks, doc))
                .map_or(true, |mut entries| entries.next().is_some())
        });
        docs.extend(self.list_docs_in(DocFolder::Snapshots)?);
        docs.sort();
        docs.dedup();
        Ok(docs)
    }

    /// The documents that have a sub-folder in `folder`, sorted.
    pub fn list_docs_in(&self, folder: DocFolder) -> Result<Vec<String>, ListError> {
        let dir = self.root.join(folder.dir());
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
        self.list_doc_files(DocFolder::Chunks, doc)
    }

    /// The file names of document `doc` in `folder`, sorted. Temp files and
    /// names that are not `<sha256><ext>` are left out.
    pub fn list_doc_files(&self, folder: DocFolder, doc: &str) -> Result<Vec<String>, ListError> {
        validate_doc_id(doc)?;
        let dir = self.doc_dir_in(folder, doc);
        let entries = fsutil::visible_entries(&dir)
            .map_err(|source| ListError::Io { path: dir, source })?
            .unwrap_or_default();
        let mut files: Vec<String> = entries
            .into_iter()
            .filter(|(name, kind)| *kind == Kind::File && folder.file_hash(name).is_some())
            .map(|(name, _)| name)
            .collect();
        files.sort();
        Ok(files)
    }

    /// Reads a chunk and checks that its bytes hash to its name.
    pub fn read_chunk(&self, doc: &str, name: &str) -> Result<Vec<u8>, ReadError> {
        self.read_doc_file(DocFolder::Chunks, doc, name)
    }

    /// Reads a document file and checks that its bytes hash to its name.
    pub fn read_doc_file(
        &self,
        folder: DocFolder,
        doc: &str,
        name: &str,
    ) -> Result<Vec<u8>, ReadError> {
        validate_doc_id(doc)?;
        let hash = folder
            .file_hash(name)
            .ok_or_else(|| ReadError::InvalidChunkName {
                name: name.to_owned(),
            })?;
        read_verified(&self.doc_file_path(folder, doc, name), hash)
    }

    /// Deletes files by store name (compaction, archival and garbage
    /// collection only; everything else in a store is immutable). Missing
    /// files are fine, and emptied document folders are removed. Returns
    /// how many files were deleted.
    pub fn remove_store_files(&self, names: &[String]) -> Result<usize, WriteError> {
        let mut dirs = BTreeSet::new();
        let mut removed = 0;
        for name in names {
            match StoreName::parse(name) {
                Some(StoreName::Doc { .. } | StoreName::Blob { .. }) => {}
                _ => {
                    return Err(WriteError::InvalidName {
                        name: name.to_owned(),
                    });
                }
            }
            let path = self.root.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    if let Some(dir) = path.parent() {
                        dirs.insert(dir.to_owned());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(WriteError::Io { path, source }),
            }
        }
        for dir in dirs {
            fsutil::sync_dir(&dir).map_err(|source| WriteError::Io {
                path: dir.clone(),
                source,
            })?;
            // An emptied document folder goes, so that an archived document
            // is no longer listed as live. Fails harmlessly when the folder
            // is not empty; a writer racing with it retries (`write_new`).
            let _ = fs::remove_dir(&dir);
        }
        Ok(removed)
    }

    /// How long ago the file of store name `name` arrived in this replica
    /// (its modification time); `None` if it is missing or the clock is off.
    pub fn file_age(&self, name: &str) -> Option<std::time::Duration> {
        StoreName::parse(name)?;
        let modified = fs::metadata(self.root.join(name)).ok()?.modified().ok()?;
        modified.elapsed().ok()
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

    /// Stores files received under their store names (chunks, snapshots or
    /// blobs: what a sync pulls), checking each hash, made durable together
    /// (see `fsutil::write_many_new`). Returns, for each file in order,
    /// whether it was new, or why it was refused (a bad name or hash); a
    /// failed write fails the batch.
    pub(crate) fn put_store_files(
        &self,
        files: &[(&String, &[u8])],
    ) -> Result<Vec<Result<bool, WriteError>>, WriteError> {
        let mut out: Vec<Result<bool, WriteError>> = Vec::with_capacity(files.len());
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut accepted: Vec<(usize, usize, &str, &[u8])> = Vec::new();
        for (i, (name, bytes)) in files.iter().enumerate() {
            let dir = match StoreName::parse(name) {
                Some(StoreName::Doc { folder, doc, hash }) if names::sha256_hex(bytes) == hash => {
                    self.doc_dir_in(folder, doc)
                }
                Some(StoreName::Blob { hash }) if names::sha256_hex(bytes) == hash => {
                    self.root.join(BLOBS_DIR)
                }
                Some(StoreName::Doc { .. } | StoreName::Blob { .. }) => {
                    out.push(Err(WriteError::HashMismatch {
                        name: (*name).clone(),
                    }));
                    continue;
                }
                _ => {
                    out.push(Err(WriteError::InvalidName {
                        name: (*name).clone(),
                    }));
                    continue;
                }
            };
            let d = match dirs.iter().position(|x| *x == dir) {
                Some(d) => d,
                None => {
                    dirs.push(dir);
                    dirs.len() - 1
                }
            };
            let file = name.rsplit('/').next().unwrap_or(name);
            accepted.push((i, d, file, bytes));
            out.push(Ok(false));
        }
        let batch: Vec<(&Path, &str, &[u8])> = accepted
            .iter()
            .map(|(_, d, file, bytes)| (dirs[*d].as_path(), *file, *bytes))
            .collect();
        let placed = fsutil::write_many_new(&batch)
            .map_err(|(path, source)| WriteError::Io { path, source })?;
        for ((i, ..), placed) in accepted.iter().zip(placed) {
            out[*i] = Ok(placed == Placed::Created);
        }
        Ok(out)
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

    /// All content-addressed store names in this replica (chunks,
    /// snapshots, archived snapshots and blobs).
    pub fn list_store_names(&self) -> Result<BTreeSet<String>, ListError> {
        let mut out = BTreeSet::new();
        for folder in DocFolder::ALL {
            for doc in self.list_docs_in(folder)? {
                for file in self.list_doc_files(folder, &doc)? {
                    out.insert(folder.store_name(&doc, &file));
                }
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
