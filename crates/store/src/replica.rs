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
//! is reported, noted in `.damaged/`, and left in place until a sync replaces
//! it by a remote's copy that hashes to its name (the only rewrite of a
//! store file). Reads are bounded by each kind's size limit and never follow
//! a symbolic link; writes never go through a linked folder.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fsutil::{self, CopyError, Kind, Placed, TempFile};
use crate::names::{
    self, BLOBS_DIR, BlobId, CHUNKS_DIR, DocFolder, DocIdError, FORMAT_LINE, FORMAT_NAME,
    StoreName, WORKSPACE_NAME, WorkspaceIdError, validate_doc_id,
};
use crate::outbox::Outbox;
use crate::remote::DirRemote;

/// A store folder on this device. Cheap to clone; holds no open files, so
/// any number of processes and threads may use the same folder at once.
#[derive(Debug, Clone)]
pub struct Replica {
    root: PathBuf,
    workspace_id: String,
    /// What this process wrote and has not pushed, shared by every clone.
    outbox: Arc<Outbox>,
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
    /// The folder to write into is (or passes through) a symbolic link.
    #[error(
        "refusing to write {path}: a folder on its way is a symbolic link, and bridge never follows links inside a store; replace the link by a real folder"
    )]
    Link {
        /// The file that was to be written.
        path: PathBuf,
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
    /// The file, or a folder on its way, is a symbolic link.
    #[error(
        "{path} is (or passes through) a symbolic link; bridge never follows links inside a store: replace it by the real file or folder"
    )]
    Link {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a regular file (a FIFO, a device, a folder).
    #[error("{path} is not a regular file (a FIFO, a device or a folder); left in place")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// The file is larger than bridge reads for its kind.
    #[error(
        "{path} is {size} bytes, over the limit of {limit} bytes for this kind of store file; not read, left in place"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit for its kind.
        limit: u64,
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
            fsutil::read_optional(path, names::MAX_SMALL_FILE_BYTES).map_err(|source| {
                InitError::Read {
                    path: path.to_owned(),
                    source,
                }
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
            outbox: Arc::default(),
        })
    }

    /// Opens the store in `root`, checking its `FORMAT`.
    pub fn open(root: &Path) -> Result<Replica, OpenError> {
        let format_path = root.join(FORMAT_NAME);
        let read_small = |path: &Path| {
            fsutil::read_bounded(path, Some(root), names::MAX_SMALL_FILE_BYTES)
                .map_err(|e| e.into_io(path, names::MAX_SMALL_FILE_BYTES))
        };
        let format = match read_small(&format_path) {
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
        let ws = match read_small(&ws_path) {
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
            outbox: Arc::default(),
        })
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The files written through this replica (or a clone) and not pushed
    /// yet: the publisher drains it.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
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
        self.check_write_dir(&dir, &name)?;
        fsutil::write_new(&dir, &name, bytes).map_err(|source| WriteError::Io {
            path: dir.join(&name),
            source,
        })?;
        self.outbox.add(folder.store_name(doc, &name));
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
        self.read_verified(&folder.store_name(doc, name), hash, folder.max_bytes())
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
            if let Some(dir) = Path::new(name).parent()
                && let Err(fsutil::Refused::Link) = fsutil::check_no_links(&self.root, dir)
            {
                // Never delete through a link: the file is not in the store.
                fsutil::warn_link_once(&path);
                continue;
            }
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
        let modified = fs::symlink_metadata(self.root.join(name))
            .ok()?
            .modified()
            .ok()?;
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
        self.check_write_dir(&dir, "")?;
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
        self.outbox.add(id.store_name());
        Ok(id)
    }

    /// Stores `bytes` as a blob.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<BlobId, WriteError> {
        let id = BlobId::of_bytes(bytes);
        let dir = self.root.join(BLOBS_DIR);
        self.check_write_dir(&dir, &id.file_name())?;
        fsutil::write_new(&dir, &id.file_name(), bytes).map_err(|source| WriteError::Io {
            path: self.blob_path(&id),
            source,
        })?;
        self.outbox.add(id.store_name());
        Ok(id)
    }

    /// True if the blob is in this replica (its content is not checked; a
    /// link does not count).
    pub fn has_blob(&self, id: &BlobId) -> bool {
        fs::symlink_metadata(self.blob_path(id)).is_ok_and(|m| m.file_type().is_file())
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
        self.read_verified(&id.store_name(), id.as_str(), names::MAX_BLOB_BYTES)
    }

    /// Copies a blob to `dest` in bounded memory, checking its hash before
    /// `dest` appears. `dest` is replaced atomically (temp file + rename);
    /// its parent folders are created.
    pub fn copy_blob_to(&self, id: &BlobId, dest: &Path) -> Result<(), ReadError> {
        let src_path = self.blob_path(id);
        let (src, _) = fsutil::open_regular(&src_path, Some(&self.root), names::MAX_BLOB_BYTES)
            .map_err(|e| refused(&src_path, e, names::MAX_BLOB_BYTES))?;
        let mut src = src.take(names::MAX_BLOB_BYTES);
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
            self.note_damaged(&id.store_name());
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
                    // Once per folder of the batch (an lstat per component).
                    if let Err(e) = self.check_write_dir(&dir, "") {
                        out.push(Err(e));
                        continue;
                    }
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
        let limit = StoreName::parse(name).map_or(0, |n| n.max_bytes());
        self.read_verified(name, hash, limit)
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

/// The hidden folder where a replica notes its damaged files: one empty
/// file per store name, `/` written as `+` (which no store name holds).
const DAMAGED_DIR: &str = ".damaged";

/// Damaged files: noted when a read finds a file whose bytes do not hash to
/// its name, repaired by the next sync from a remote's verified copy
/// (issue 12, item 3). A store name is the sha256 of the file's bytes, so a
/// remote copy that hashes to the name is exactly the file that was
/// written: nothing else (decryption, signatures) needs checking to know
/// the repair is right. The notes are files, so a damage found by any
/// command (a `status` that skips a chunk, an `outputs` that cannot read a
/// blob) is repaired by the next sync of any process, without the sync
/// hashing the whole replica.
impl Replica {
    /// Reads store file `name` (at most `limit` bytes, a regular file, no
    /// link on its way) and checks that it hashes to `expected`; a file
    /// that does not is noted as damaged.
    fn read_verified(&self, name: &str, expected: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        let path = self.root.join(name);
        let bytes = fsutil::read_bounded(&path, Some(&self.root), limit)
            .map_err(|e| refused(&path, e, limit))?;
        let actual = names::sha256_hex(&bytes);
        if actual != expected {
            self.note_damaged(name);
            return Err(ReadError::Corrupt {
                path,
                expected: expected.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Checks that no folder between the store root and `dir` is a symbolic
    /// link, so that a write never lands outside the store (issue 12,
    /// item 8). `file` names the file for the error.
    fn check_write_dir(&self, dir: &Path, file: &str) -> Result<(), WriteError> {
        let rel = dir.strip_prefix(&self.root).unwrap_or(dir);
        match fsutil::check_no_links(&self.root, rel) {
            Ok(()) => Ok(()),
            Err(fsutil::Refused::Link) => {
                fsutil::warn_link_once(dir);
                Err(WriteError::Link {
                    path: dir.join(file),
                })
            }
            Err(e) => Err(WriteError::Io {
                path: dir.to_owned(),
                source: e.into_io(dir, 0),
            }),
        }
    }

    fn damaged_marker(&self, name: &str) -> PathBuf {
        self.root.join(DAMAGED_DIR).join(name.replace('/', "+"))
    }

    /// Notes store file `name` as damaged (best effort: a replica that
    /// cannot be written still reads).
    fn note_damaged(&self, name: &str) {
        let marker = self.damaged_marker(name);
        if fsutil::exists(&marker).unwrap_or(false) {
            return;
        }
        let result = fsutil::ensure_dir(&self.root.join(DAMAGED_DIR)).and_then(|()| {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&marker)
        });
        if let Err(e) = result {
            tracing::debug!(marker = %marker.display(), error = %e, "could not note a damaged file");
        }
    }

    fn clear_damaged(&self, name: &str) {
        match fs::remove_file(self.damaged_marker(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::debug!(name, error = %e, "could not clear a damaged-file note"),
        }
    }

    /// The store names of the files noted as damaged, sorted.
    pub fn damaged_names(&self) -> Vec<String> {
        let dir = self.root.join(DAMAGED_DIR);
        let mut out: Vec<String> = fsutil::visible_entries(&dir)
            .ok()
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .map(|(marker, _)| marker.replace('+', "/"))
            .filter(|name| StoreName::parse(name).is_some_and(|n| n.hash().is_some()))
            .collect();
        out.sort();
        out
    }

    /// Hashes every content-addressed file of the replica (streaming, each
    /// within its kind's size limit) and notes those whose bytes do not
    /// hash to their name. Returns them. Costs a read of the whole replica:
    /// for `bridge sync --verify`, not for every sync.
    pub fn find_damaged(&self) -> Result<Vec<String>, ListError> {
        let mut out = Vec::new();
        for name in self.list_store_names()? {
            let Some(parsed) = StoreName::parse(&name) else {
                continue;
            };
            let Some(expected) = parsed.hash() else {
                continue;
            };
            let path = self.root.join(&name);
            match fsutil::hash_file(&path, Some(&self.root), parsed.max_bytes()) {
                Ok(actual) if actual == expected => {}
                Ok(_) => {
                    self.note_damaged(&name);
                    out.push(name);
                }
                Err(e) => {
                    tracing::warn!(
                        "could not check {}: {}",
                        path.display(),
                        e.into_io(&path, parsed.max_bytes())
                    );
                }
            }
        }
        Ok(out)
    }

    /// Replaces damaged store file `name` by `bytes`, which must hash to
    /// its name (a remote's copy). A file that verifies meanwhile is left
    /// as it is. The replacement is atomic (temp file, fsync, rename over
    /// the damaged file), and the damage note is cleared. Returns whether
    /// the file was replaced.
    pub(crate) fn replace_damaged(&self, name: &str, bytes: &[u8]) -> Result<bool, WriteError> {
        let invalid = || WriteError::InvalidName {
            name: name.to_owned(),
        };
        let parsed = StoreName::parse(name).ok_or_else(invalid)?;
        let expected = parsed.hash().ok_or_else(invalid)?;
        if names::sha256_hex(bytes) != expected {
            return Err(WriteError::HashMismatch {
                name: name.to_owned(),
            });
        }
        let path = self.root.join(name);
        let dir = match path.parent() {
            Some(dir) => dir.to_owned(),
            None => return Err(invalid()),
        };
        self.check_write_dir(&dir, name)?;
        match fsutil::hash_file(&path, Some(&self.root), parsed.max_bytes()) {
            Ok(actual) if actual == expected => {
                self.clear_damaged(name);
                return Ok(false);
            }
            // Damaged, missing, or over the limit: replaced. A link is
            // refused by `check_write_dir` for its folder; a link as the
            // file itself is replaced (rename does not follow it).
            _ => {}
        }
        let io_err = |source| WriteError::Io {
            path: path.clone(),
            source,
        };
        fsutil::ensure_dir(&dir).map_err(io_err)?;
        let mut tmp = TempFile::create_in(&dir).map_err(io_err)?;
        std::io::Write::write_all(tmp.file().map_err(io_err)?, bytes).map_err(io_err)?;
        tmp.persist_replace(&path).map_err(io_err)?;
        self.clear_damaged(name);
        Ok(true)
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

/// Maps a refused open or read of a store file.
fn refused(path: &Path, e: fsutil::Refused, limit: u64) -> ReadError {
    match e {
        fsutil::Refused::Io(e) => read_err(path, e),
        fsutil::Refused::Link => ReadError::Link {
            path: path.to_owned(),
        },
        fsutil::Refused::NotRegular => ReadError::NotAFile {
            path: path.to_owned(),
        },
        fsutil::Refused::TooLarge { size } => ReadError::TooLarge {
            path: path.to_owned(),
            size,
            limit,
        },
    }
}
