//! Remotes: where a replica's files are copied to and from. Owns the
//! [`Remote`] trait, the folder backend [`DirRemote`], the in-memory backend
//! [`MemRemote`] (for tests of this and other crates) and [`parse_remote`],
//! which turns a spec such as `dir:/mnt/usb/pool` or
//! `git:https://github.com/o/r.git` into a remote. The git backend,
//! [`GitRemote`], lives in [`mod@crate::git`], the S3 one in
//! [`crate::s3`].
//!
//! A remote only speaks store names (`FORMAT`, `workspace`,
//! `chunks/<doc>/<hash>.chunk`, `blobs/<hash>.blob`); anything else it holds
//! is invisible. Set-union sync on top of it lives in [`mod@crate::sync`].
//!
//! [`DirRemote`] never follows a symbolic link inside the folder (a `blobs`
//! link would redirect writes out of the store) and reads each file within
//! its kind's size limit; both are skipped with one warning (issue 12).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::fsutil::{self, Kind};
use crate::git::{self, GitRemote, GitToken, SlotError};
use crate::names::{
    self, BLOBS_DIR, DocFolder, FORMAT_LINE, FORMAT_NAME, PACKS_DIR, StoreName, WORKSPACE_NAME,
};

/// [`Remote::read`] for a backend whose reads are batched (git, s3): the
/// one file through [`Remote::read_many`], `NotFound` when it is not there.
pub(crate) fn read_through_many<R: Remote + ?Sized>(
    remote: &R,
    name: &str,
) -> Result<Vec<u8>, RemoteError> {
    match remote.read_many(&[name.to_owned()])?.pop() {
        Some((_, bytes)) => Ok(bytes),
        None => Err(RemoteError::NotFound {
            remote: remote.describe(),
            name: name.to_owned(),
        }),
    }
}

/// A place holding the files of a store. Calls are blocking.
pub trait Remote: Send + Sync {
    /// A short description for messages, e.g. `dir:/mnt/usb/pool`.
    fn describe(&self) -> String;
    /// Every store name the remote holds (`FORMAT`, `workspace`, chunks,
    /// blobs); never temp files.
    fn list(&self) -> Result<BTreeSet<String>, RemoteError>;
    /// The bytes of one file.
    fn read(&self, name: &str) -> Result<Vec<u8>, RemoteError>;
    /// Counts of pushes so far, for remotes that push (git); `None` for the
    /// others.
    fn push_stats(&self) -> Option<crate::git::PushStats> {
        None
    }
    /// How many files, and about how many bytes, a sync hands to one
    /// [`put`](Self::put). The default keeps memory small and progress
    /// smooth; a remote whose every put is a push to a host that counts
    /// pushes (git) takes much more at once.
    fn put_batch(&self) -> PutBatch {
        PutBatch::DEFAULT
    }
    /// The bytes of several files, in the order asked. Files not on the
    /// remote are left out; any other failure fails the call. Backends
    /// with a per-call cost (git) read them all at once; the default reads
    /// them one by one.
    fn read_many(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>, RemoteError> {
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            match self.read(name) {
                Ok(bytes) => files.push((name.clone(), bytes)),
                Err(RemoteError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(files)
    }
    /// Adds files: create-only (an existing file is kept), atomic per file,
    /// idempotent.
    fn put(&self, files: &[(String, Vec<u8>)]) -> Result<(), RemoteError>;
    /// Removes document files or blobs wherever the remote holds them
    /// (compaction, archival and garbage collection only; the caller has
    /// proved them redundant). Missing ones are fine. Returns how many of
    /// `names` the remote still holds because a writer moved meanwhile (a
    /// git ref pushed during the removal); a later call removes them.
    fn remove(&self, names: &[String]) -> Result<usize, RemoteError>;
    /// Merges the small packs of a remote that keeps blobs in packs
    /// ([`Packed`](crate::packs::Packed)); compaction calls it. Returns how
    /// many packs were merged away; the default has none.
    fn repack(&self) -> Result<usize, RemoteError> {
        Ok(0)
    }
}

/// A shared remote is a remote (tests keep a handle on what they wrap).
impl<R: Remote + ?Sized> Remote for std::sync::Arc<R> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn list(&self) -> Result<BTreeSet<String>, RemoteError> {
        (**self).list()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>, RemoteError> {
        (**self).read(name)
    }
    fn push_stats(&self) -> Option<crate::git::PushStats> {
        (**self).push_stats()
    }
    fn put_batch(&self) -> PutBatch {
        (**self).put_batch()
    }
    fn read_many(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>, RemoteError> {
        (**self).read_many(names)
    }
    fn put(&self, files: &[(String, Vec<u8>)]) -> Result<(), RemoteError> {
        (**self).put(files)
    }
    fn remove(&self, names: &[String]) -> Result<usize, RemoteError> {
        (**self).remove(names)
    }
    fn repack(&self) -> Result<usize, RemoteError> {
        (**self).repack()
    }
}

/// The size of the batches a sync puts (see [`Remote::put_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutBatch {
    /// At most this many files…
    pub files: usize,
    /// …or about this many bytes (a batch ends at the first file past it).
    pub bytes: usize,
}

impl PutBatch {
    /// 256 files or 32 MiB.
    pub const DEFAULT: PutBatch = PutBatch {
        files: 256,
        bytes: 32 * 1024 * 1024,
    };
}

/// Why a remote operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The remote cannot be reached (folder missing, drive not mounted,
    /// network down, host unknown or refusing connections): the caller can
    /// go on offline.
    #[error("remote {remote} is unreachable")]
    Unreachable {
        /// The remote.
        remote: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The remote has no space left (or the user's quota is used up): no
    /// file can be put until space is freed. The caller goes on offline and
    /// tries again later; nothing local is lost (issue 12, item 14).
    #[error("remote {remote} is full: no space left to write {name}")]
    Full {
        /// The remote.
        remote: String,
        /// The store name being written.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// One file (or folder) of the remote could not be accessed.
    #[error("could not access {name} on remote {remote}")]
    Io {
        /// The remote.
        remote: String,
        /// The store name (or folder) accessed.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is larger than bridge reads for its kind (see the
    /// `MAX_*_BYTES` constants in [`crate::names`]); it was not read.
    #[error(
        "{name} on remote {remote} is {size} bytes, over the limit of {limit} bytes for this kind of store file; not read"
    )]
    TooLarge {
        /// The remote.
        remote: String,
        /// The store name.
        name: String,
        /// Its size.
        size: u64,
        /// The limit for its kind.
        limit: u64,
    },
    /// A file given to `put` is larger than the remote takes in one object
    /// (a `git:` remote's [`GitLimits::max_object`](crate::git::GitLimits),
    /// 100 MB by default: GitHub refuses larger files). Nothing was
    /// written.
    #[error(
        "{name} is {size} bytes, over the limit of {limit} bytes for one file on remote {remote}; nothing was pushed"
    )]
    ObjectTooLarge {
        /// The remote.
        remote: String,
        /// The store name.
        name: String,
        /// Its size.
        size: u64,
        /// The remote's limit.
        limit: u64,
    },
    /// The file is a symbolic link (or passes through one), or not a
    /// regular file: bridge never follows links inside a store.
    #[error(
        "{name} on remote {remote} is {what}; bridge never follows links or reads special files inside a store: skipped"
    )]
    NotAFile {
        /// The remote.
        remote: String,
        /// The store name.
        name: String,
        /// What it is.
        what: &'static str,
    },
    /// The file is not on the remote.
    #[error("{name} is not on remote {remote}")]
    NotFound {
        /// The remote.
        remote: String,
        /// The store name.
        name: String,
    },
    /// The remote holds other things and no `FORMAT` file.
    #[error(
        "remote {remote} is not a bridge store (no FORMAT file, and the folder is not empty); point it at an empty folder or an existing store"
    )]
    NotAStore {
        /// The remote.
        remote: String,
    },
    /// The remote is the store of another workspace.
    #[error(
        "remote {remote} is the store of workspace {found:?}, not {expected:?}; check the remote"
    )]
    WrongWorkspace {
        /// The remote.
        remote: String,
        /// This replica's workspace.
        expected: String,
        /// The remote's workspace.
        found: String,
    },
    /// The remote's `workspace` file does not hold one valid id.
    #[error(
        "remote {remote} has a damaged workspace file (found {found:?}); restore it from a replica"
    )]
    BadWorkspaceFile {
        /// The remote.
        remote: String,
        /// The start of its content.
        found: String,
    },
    /// The remote's `FORMAT` is another version.
    #[error(
        "remote {remote} has store format {found:?}, not {:?}; upgrade bridge",
        FORMAT_LINE.trim_end()
    )]
    UnknownFormat {
        /// The remote.
        remote: String,
        /// The start of its `FORMAT` file.
        found: String,
    },
    /// A name that is not a store name (or not allowed for this call).
    #[error("invalid store file name {name:?} for remote {remote}")]
    InvalidName {
        /// The remote.
        remote: String,
        /// The name.
        name: String,
    },
    /// Bytes put under a content-addressed name do not hash to it.
    #[error("refusing to put {name} on remote {remote}: its content does not hash to its name")]
    HashMismatch {
        /// The remote.
        remote: String,
        /// The store name.
        name: String,
    },
    /// `git` could not be started: it is not installed or not on `PATH`.
    #[error("cannot use remote {remote}: git is not installed (or not on PATH); install git")]
    GitMissing {
        /// The remote.
        remote: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The git host refused our credentials (or we had none to give).
    #[error(
        "remote {remote} refused the credentials: {detail}; check GITHUB_TOKEN, your git credential helper or SSH key, and that it may read and push this repository"
    )]
    AuthRefused {
        /// The remote.
        remote: String,
        /// What git said.
        detail: String,
    },
    /// An `s3:` remote refused our credentials, or they may not do what
    /// bridge asks (list, get, put, delete under the prefix).
    #[error(
        "remote {remote} refused access: {detail}; check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or web identity) and that they may list, get, put and delete under the prefix"
    )]
    AccessDenied {
        /// The remote.
        remote: String,
        /// What the server said.
        detail: String,
    },
    /// An `s3:` remote's bucket does not exist (at this endpoint and
    /// region).
    #[error(
        "remote {remote}: the bucket does not exist ({detail}); create it, or check the bucket name, the endpoint (AWS_ENDPOINT_URL or [store.s3] endpoint) and the region"
    )]
    BucketNotFound {
        /// The remote.
        remote: String,
        /// What the server said.
        detail: String,
    },
    /// An `s3:` remote's client cannot be set up as configured (a
    /// malformed endpoint, half a key pair), or this build has no `s3:`
    /// support.
    #[error("cannot use remote {remote}: {detail}")]
    Setup {
        /// The remote.
        remote: String,
        /// What is wrong.
        detail: String,
    },
    /// The repository does not exist (hosts also answer so to credentials
    /// that may not see it).
    #[error(
        "remote {remote}: repository not found ({detail}); check the URL, and access if it is private"
    )]
    RepoNotFound {
        /// The remote.
        remote: String,
        /// What git said.
        detail: String,
    },
    /// The remote refused a push for a reason retrying does not fix, or
    /// another process writing the same slot kept winning.
    #[error("remote {remote} rejected the push to {reference}: {reason}")]
    PushRejected {
        /// The remote.
        remote: String,
        /// The ref pushed.
        reference: String,
        /// Why.
        reason: String,
    },
    /// A git command failed in a way none of the above describes.
    #[error("{command} failed for remote {remote} ({status}): {detail}")]
    Git {
        /// The remote.
        remote: String,
        /// The command line, without environment or credentials.
        command: String,
        /// The exit status.
        status: String,
        /// What git said.
        detail: String,
    },
    /// A git command could not be started or waited for, or its pipes
    /// failed.
    #[error("could not run {command} for remote {remote}")]
    GitIo {
        /// The remote.
        remote: String,
        /// The command line, without environment or credentials.
        command: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Whether an I/O error says the file system (or the quota) is full.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(n) if n == nix::errno::Errno::ENOSPC as i32 || n == nix::errno::Errno::EDQUOT as i32
    )
}

impl RemoteError {
    /// True if the remote answered (or the spec was read) and the answer
    /// says it is set up wrong: the repository does not exist or refuses
    /// our credentials, git is missing, the folder is not a store, is
    /// another workspace's or another format. Trying again later does not
    /// help; a person must fix the remote or its access (issue 17, item 9).
    /// [`RemoteError::Unreachable`] and [`RemoteError::Full`] are not: they
    /// pass.
    pub fn is_misconfigured(&self) -> bool {
        matches!(
            self,
            RemoteError::RepoNotFound { .. }
                | RemoteError::AuthRefused { .. }
                | RemoteError::AccessDenied { .. }
                | RemoteError::BucketNotFound { .. }
                | RemoteError::Setup { .. }
                | RemoteError::GitMissing { .. }
                | RemoteError::NotAStore { .. }
                | RemoteError::WrongWorkspace { .. }
                | RemoteError::BadWorkspaceFile { .. }
                | RemoteError::UnknownFormat { .. }
        )
    }

    /// True if the error concerns the whole remote (unreachable, refused,
    /// missing, broken git), false if only the one file named in it.
    pub fn is_remote_wide(&self) -> bool {
        !matches!(
            self,
            RemoteError::Io { .. }
                | RemoteError::NotFound { .. }
                | RemoteError::TooLarge { .. }
                | RemoteError::ObjectTooLarge { .. }
                | RemoteError::NotAFile { .. }
                | RemoteError::InvalidName { .. }
                | RemoteError::HashMismatch { .. }
        )
    }
}

/// A store in a folder: a USB stick, a Syncthing or NFS folder, or another
/// replica.
#[derive(Debug, Clone)]
pub struct DirRemote {
    root: PathBuf,
}

impl DirRemote {
    /// A remote for the store folder `root`.
    pub fn new(root: PathBuf) -> Self {
        DirRemote { root }
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn unreachable(&self, source: io::Error) -> RemoteError {
        RemoteError::Unreachable {
            remote: self.describe(),
            source,
        }
    }

    /// An I/O error on `name`, or `Unreachable` if the whole folder is gone
    /// (a drive pulled out mid-sync).
    fn io_error(&self, name: &str, source: io::Error) -> RemoteError {
        if !self.root.is_dir() {
            return self.unreachable(source);
        }
        if source.kind() == io::ErrorKind::NotFound {
            return RemoteError::NotFound {
                remote: self.describe(),
                name: name.to_owned(),
            };
        }
        if is_no_space(&source) {
            return RemoteError::Full {
                remote: self.describe(),
                name: name.to_owned(),
                source,
            };
        }
        RemoteError::Io {
            remote: self.describe(),
            name: name.to_owned(),
            source,
        }
    }

    fn invalid_name(&self, name: &str) -> RemoteError {
        RemoteError::InvalidName {
            remote: self.describe(),
            name: name.to_owned(),
        }
    }

    fn not_a_file(&self, name: &str, what: &'static str) -> RemoteError {
        if what == "a symbolic link" {
            fsutil::warn_link_once(&self.root.join(name));
        }
        RemoteError::NotAFile {
            remote: self.describe(),
            name: name.to_owned(),
            what,
        }
    }

    /// Whether a folder on the way from the root to store file `name` is a
    /// symbolic link (warned about once): such a file is neither written
    /// nor removed, as that would happen outside the store.
    fn through_link(&self, name: &str) -> Result<bool, RemoteError> {
        let Some(dir) = Path::new(name).parent() else {
            return Ok(false);
        };
        match fsutil::check_no_links(&self.root, dir) {
            Ok(()) => Ok(false),
            Err(fsutil::Refused::Link) => {
                fsutil::warn_link_once(&self.root.join(dir));
                Ok(true)
            }
            Err(e) => Err(self.io_error(name, e.into_io(&self.root.join(dir), 0))),
        }
    }

    /// Visible entries of a sub-folder (empty if missing).
    fn entries(&self, rel: &str) -> Result<Vec<(String, Kind)>, RemoteError> {
        fsutil::visible_entries(&self.root.join(rel))
            .map(Option::unwrap_or_default)
            .map_err(|e| self.io_error(rel, e))
    }
}

impl Remote for DirRemote {
    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    /// Lists with `read_dir` only. A folder with no `FORMAT` but other
    /// visible entries is [`RemoteError::NotAStore`]; hidden entries
    /// (`.stfolder`, `.tmp-*`) do not count, so an empty Syncthing folder can
    /// become a store.
    fn list(&self) -> Result<BTreeSet<String>, RemoteError> {
        let top = match fsutil::visible_entries(&self.root) {
            Ok(Some(top)) => top,
            Ok(None) => {
                return Err(self.unreachable(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the folder does not exist (drive not mounted?)",
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(self.unreachable(e));
            }
            Err(e) => return Err(self.io_error(".", e)),
        };
        let mut out = BTreeSet::new();
        let mut foreign = false;
        for (name, kind) in top {
            match (name.as_str(), kind) {
                (FORMAT_NAME | WORKSPACE_NAME, Kind::File) => {
                    out.insert(name);
                }
                (dir, Kind::Dir) if DocFolder::from_dir(dir).is_some() => {
                    let Some(folder) = DocFolder::from_dir(dir) else {
                        continue;
                    };
                    for (doc, kind) in self.entries(dir)? {
                        if kind != Kind::Dir || names::validate_doc_id(&doc).is_err() {
                            continue;
                        }
                        let rel = format!("{dir}/{doc}");
                        for (file, kind) in self.entries(&rel)? {
                            if kind == Kind::File && folder.file_hash(&file).is_some() {
                                out.insert(format!("{rel}/{file}"));
                            }
                        }
                    }
                }
                (BLOBS_DIR, Kind::Dir) => {
                    for (file, kind) in self.entries(BLOBS_DIR)? {
                        if kind == Kind::File && names::blob_file_hash(&file).is_some() {
                            out.insert(format!("{BLOBS_DIR}/{file}"));
                        }
                    }
                }
                (PACKS_DIR, Kind::Dir) => {
                    for (file, kind) in self.entries(PACKS_DIR)? {
                        if kind == Kind::File && names::pack_file_hash(&file).is_some() {
                            out.insert(format!("{PACKS_DIR}/{file}"));
                        }
                    }
                }
                // Warned about by the listing; never followed.
                (_, Kind::Link) => {}
                _ => foreign = true,
            }
        }
        if foreign && !out.contains(FORMAT_NAME) {
            return Err(RemoteError::NotAStore {
                remote: self.describe(),
            });
        }
        Ok(out)
    }

    /// Reads a regular file of at most its kind's size limit, never
    /// through a symbolic link (issue 12, items 8 and 16).
    fn read(&self, name: &str) -> Result<Vec<u8>, RemoteError> {
        let Some(parsed) = StoreName::parse(name) else {
            return Err(self.invalid_name(name));
        };
        let limit = parsed.max_bytes();
        fsutil::read_bounded(&self.root.join(name), Some(&self.root), limit).map_err(|e| match e {
            fsutil::Refused::Io(e) => self.io_error(name, e),
            fsutil::Refused::Link => self.not_a_file(name, "a symbolic link"),
            fsutil::Refused::NotRegular => self.not_a_file(name, "not a regular file"),
            fsutil::Refused::TooLarge { size } => RemoteError::TooLarge {
                remote: self.describe(),
                name: name.to_owned(),
                size,
                limit,
            },
        })
    }

    fn put(&self, files: &[(String, Vec<u8>)]) -> Result<(), RemoteError> {
        // Never create the root: on an unmounted drive that would write to
        // the mount point's own file system.
        if !self.root.is_dir() {
            return Err(self.unreachable(io::Error::new(
                io::ErrorKind::NotFound,
                "the folder does not exist (drive not mounted?)",
            )));
        }
        for (name, bytes) in files {
            let parsed = StoreName::parse(name).ok_or_else(|| self.invalid_name(name))?;
            if let Some(hash) = parsed.hash()
                && names::sha256_hex(bytes) != hash
            {
                return Err(RemoteError::HashMismatch {
                    remote: self.describe(),
                    name: name.clone(),
                });
            }
            if self.through_link(name)? {
                continue;
            }
            let path = self.root.join(name);
            let (dir, file) = match (path.parent(), path.file_name().and_then(|f| f.to_str())) {
                (Some(dir), Some(file)) => (dir.to_owned(), file.to_owned()),
                _ => return Err(self.invalid_name(name)),
            };
            fsutil::write_new(&dir, &file, bytes).map_err(|e| self.io_error(name, e))?;
        }
        Ok(())
    }

    fn remove(&self, names: &[String]) -> Result<usize, RemoteError> {
        let mut dirs = BTreeSet::new();
        for name in names {
            match StoreName::parse(name) {
                Some(StoreName::Doc { .. } | StoreName::Blob { .. } | StoreName::Pack { .. }) => {}
                _ => return Err(self.invalid_name(name)),
            }
            if self.through_link(name)? {
                continue;
            }
            let path = self.root.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {
                    if let Some(dir) = path.parent() {
                        dirs.insert(dir.to_owned());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && self.root.is_dir() => {}
                Err(e) => return Err(self.io_error(name, e)),
            }
        }
        for dir in dirs {
            fsutil::sync_dir(&dir).map_err(|e| self.io_error(".", e))?;
        }
        Ok(0)
    }
}

/// A remote held in memory, for tests. It can be switched unreachable.
#[derive(Debug, Default)]
pub struct MemRemote {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    unreachable: AtomicBool,
}

impl MemRemote {
    /// An empty remote.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call fail with [`RemoteError::Unreachable`] (or
    /// succeed again).
    pub fn set_reachable(&self, reachable: bool) {
        self.unreachable.store(!reachable, Ordering::SeqCst);
    }

    /// Replaces a file, bypassing every check: for tests that corrupt a
    /// remote.
    pub fn overwrite(&self, name: &str, bytes: Vec<u8>) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), bytes);
    }

    fn check_reachable(&self) -> Result<(), RemoteError> {
        if self.unreachable.load(Ordering::SeqCst) {
            Err(RemoteError::Unreachable {
                remote: self.describe(),
                source: io::Error::new(io::ErrorKind::NotConnected, "switched off by the test"),
            })
        } else {
            Ok(())
        }
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Remote for MemRemote {
    fn describe(&self) -> String {
        "mem:".to_owned()
    }

    fn list(&self) -> Result<BTreeSet<String>, RemoteError> {
        self.check_reachable()?;
        Ok(self.files().keys().cloned().collect())
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, RemoteError> {
        self.check_reachable()?;
        // Like every backend (the remote contract in bridge-testutil).
        if StoreName::parse(name).is_none() {
            return Err(RemoteError::InvalidName {
                remote: self.describe(),
                name: name.to_owned(),
            });
        }
        self.files()
            .get(name)
            .cloned()
            .ok_or_else(|| RemoteError::NotFound {
                remote: self.describe(),
                name: name.to_owned(),
            })
    }

    fn put(&self, files: &[(String, Vec<u8>)]) -> Result<(), RemoteError> {
        self.check_reachable()?;
        for (name, bytes) in files {
            let parsed = StoreName::parse(name).ok_or_else(|| RemoteError::InvalidName {
                remote: self.describe(),
                name: name.clone(),
            })?;
            if let Some(hash) = parsed.hash()
                && names::sha256_hex(bytes) != hash
            {
                return Err(RemoteError::HashMismatch {
                    remote: self.describe(),
                    name: name.clone(),
                });
            }
        }
        let mut map = self.files();
        for (name, bytes) in files {
            map.entry(name.clone()).or_insert_with(|| bytes.clone());
        }
        Ok(())
    }

    fn remove(&self, names: &[String]) -> Result<usize, RemoteError> {
        self.check_reachable()?;
        let mut map = self.files();
        for name in names {
            match StoreName::parse(name) {
                Some(StoreName::Doc { .. } | StoreName::Blob { .. } | StoreName::Pack { .. }) => {
                    map.remove(name);
                }
                _ => {
                    return Err(RemoteError::InvalidName {
                        remote: self.describe(),
                        name: name.clone(),
                    });
                }
            }
        }
        Ok(0)
    }
}

/// Why a remote spec could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteSpecError {
    /// No `scheme:` prefix.
    #[error("remote {spec:?} has no scheme; supported: {SUPPORTED}")]
    NoScheme {
        /// The spec.
        spec: String,
    },
    /// `dir:` with nothing after it.
    #[error("remote {spec:?} has an empty path; expected dir:PATH")]
    EmptyPath {
        /// The spec.
        spec: String,
    },
    /// `git:` with nothing after it.
    #[error("remote {spec:?} has an empty URL; expected git:URL (any URL git accepts)")]
    EmptyUrl {
        /// The spec.
        spec: String,
    },
    /// The writer slot of [`RemoteOptions`] is not a valid one.
    #[error("cannot use remote {spec:?}")]
    InvalidSlot {
        /// The spec.
        spec: String,
        /// The cause.
        #[source]
        source: SlotError,
    },
    /// An `s3:` spec that is not `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    #[error("remote {spec:?} is not a valid s3: remote")]
    BadS3Spec {
        /// The spec (never with credentials: see [`crate::s3::S3Spec::parse`]).
        spec: String,
        /// What is wrong.
        #[source]
        source: crate::s3::S3SpecError,
    },
    /// A `git:` blob store (`[store] blobs`): blobs are kept apart from
    /// the documents to stay out of a repository's limits.
    #[error(
        "blob store {spec:?} is a git repository; blobs = takes an object store (s3://BUCKET/PREFIX) or a folder (dir:PATH), kept apart from the repository's limits"
    )]
    BlobsInGit {
        /// The spec.
        spec: String,
    },
    /// A scheme this version does not know.
    #[error("unknown remote scheme {scheme:?} in {spec:?}; supported: {SUPPORTED}")]
    UnknownScheme {
        /// The spec.
        spec: String,
        /// The scheme.
        scheme: String,
    },
}

/// The remote specs this version understands, for messages.
const SUPPORTED: &str = "dir:PATH, git:URL, s3://BUCKET/PREFIX";

/// What a remote needs beyond its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOptions {
    /// This writer's slot in a `git:` remote (its ref is
    /// `refs/bridge/<slot>`): a member, device or runner-shard name,
    /// `[A-Za-z0-9._-]{1,64}` (see [`validate_slot`](crate::git::validate_slot)).
    pub writer_slot: String,
    /// The folder under which remotes keep local caches: `git:` remotes
    /// their private bare repositories, one per URL (`<cache_dir>/<hash of
    /// the URL>.git`), every remote the indexes of the packs it read
    /// (`<cache_dir>/pack-indexes/`, see [`crate::packs`]).
    pub cache_dir: PathBuf,
    /// The token a `git:` remote sends to GitHub, and the other host it
    /// may go to (see [`GitRemote::with_token`]); `None`: none. This crate
    /// reads no credentials from the environment: the CLI takes the token
    /// out of its environment at start-up, so that no child process
    /// inherits it, and passes it here.
    pub github_token: Option<GitToken>,
    /// How long a `git:` fetch or push may make no progress before it is
    /// stopped and the remote treated as unreachable (see
    /// [`GitRemote::with_stall_timeout`]).
    pub stall_timeout: std::time::Duration,
    /// What a `git:` remote's pushes stay within: the largest file, the
    /// bytes of one push, the refs one push updates (see
    /// [`GitRemote::with_limits`]).
    pub git_limits: git::GitLimits,
    /// What an `s3:` remote takes from its surroundings: the `AWS_*`
    /// variables, `[store.s3]`, its retries (its stall timeout is
    /// [`stall_timeout`](Self::stall_timeout)).
    pub s3: crate::s3::S3Options,
}

impl RemoteOptions {
    /// The defaults for a workspace at `base`: slot `default`, cache in
    /// `<base>/.bridge/git-cache`.
    pub fn for_base(base: &Path) -> RemoteOptions {
        RemoteOptions {
            writer_slot: "default".to_owned(),
            cache_dir: base.join(".bridge").join("git-cache"),
            github_token: None,
            stall_timeout: git::DEFAULT_STALL_TIMEOUT,
            git_limits: git::GitLimits::default(),
            s3: crate::s3::S3Options::default(),
        }
    }
}

/// The folder a `dir:` spec names (a relative path is taken from `base`,
/// as [`parse_remote`] does); `None` for another scheme or an empty path.
pub fn dir_remote_path(spec: &str, base: &Path) -> Option<PathBuf> {
    let rest = spec.strip_prefix("dir:").filter(|r| !r.is_empty())?;
    let path = Path::new(rest);
    Some(if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    })
}

/// Where a remote keeps the indexes of the packs it read (every remote is
/// opened with its small blobs in packs: issue 18, item 2).
fn pack_indexes(opts: &RemoteOptions) -> PathBuf {
    opts.cache_dir.join("pack-indexes")
}

/// The remote of an `s3:` spec; when its client cannot be set up (or
/// this build has none), a remote whose every call says why, so that the
/// error reaches the user as the remote's, with its hint.
fn s3_remote(spec: crate::s3::S3Spec, opts: &RemoteOptions) -> Box<dyn Remote> {
    #[cfg(feature = "s3")]
    {
        let mut s3 = opts.s3.clone();
        s3.stall_timeout = opts.stall_timeout;
        match crate::s3::S3Remote::new(spec.clone(), &s3) {
            Ok(remote) => Box::new(remote),
            Err(e) => Box::new(BrokenRemote {
                remote: spec.describe(),
                detail: e.detail,
            }),
        }
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = opts;
        Box::new(BrokenRemote {
            remote: spec.describe(),
            detail: "this build of bridge has no s3: support (built without the `s3` feature)"
                .to_owned(),
        })
    }
}

/// A remote that cannot be used: every call fails with
/// [`RemoteError::Setup`].
struct BrokenRemote {
    remote: String,
    detail: String,
}

impl BrokenRemote {
    fn error(&self) -> RemoteError {
        RemoteError::Setup {
            remote: self.remote.clone(),
            detail: self.detail.clone(),
        }
    }
}

impl Remote for BrokenRemote {
    fn describe(&self) -> String {
        self.remote.clone()
    }
    fn list(&self) -> Result<BTreeSet<String>, RemoteError> {
        Err(self.error())
    }
    fn read(&self, _name: &str) -> Result<Vec<u8>, RemoteError> {
        Err(self.error())
    }
    fn put(&self, _files: &[(String, Vec<u8>)]) -> Result<(), RemoteError> {
        Err(self.error())
    }
    fn remove(&self, _names: &[String]) -> Result<usize, RemoteError> {
        Err(self.error())
    }
}

/// Parses a remote spec.
///
/// - `dir:PATH` is a folder; a relative `PATH` is resolved against `base`
///   (the folder of the config that named it, or the current folder).
/// - `git:URL` is a git repository: anything `git` accepts
///   (`https://github.com/o/r.git`, `git@host:o/r.git`, `file:///srv/r.git`,
///   `git://host/r`, a path, relative ones resolved against `base`). It
///   writes ref `refs/bridge/<opts.writer_slot>` and keeps its
///   private bare repository in `opts.cache_dir`, in a folder named after a
///   hash of the URL (so two remotes never share one).
/// - `s3://BUCKET/PREFIX` (or `s3://BUCKET`) is a prefix of an S3 bucket
///   (see [`crate::s3`]); `opts.s3` says where and with which
///   credentials.
pub fn parse_remote(
    spec: &str,
    base: &Path,
    opts: &RemoteOptions,
) -> Result<Box<dyn Remote>, RemoteSpecError> {
    let Some((scheme, rest)) = spec.split_once(':') else {
        return Err(RemoteSpecError::NoScheme {
            spec: git::redact_spec(spec),
        });
    };
    match scheme {
        "dir" => match dir_remote_path(spec, base) {
            Some(root) => Ok(Box::new(crate::packs::Packed::new(
                Box::new(DirRemote::new(root)),
                Some(pack_indexes(opts)),
            ))),
            None => Err(RemoteSpecError::EmptyPath {
                spec: git::redact_spec(spec),
            }),
        },
        "git" => {
            if rest.is_empty() {
                return Err(RemoteSpecError::EmptyUrl {
                    spec: git::redact_spec(spec),
                });
            }
            let url = git::absolute_local_url(rest.to_owned(), Some(base));
            let key = &names::sha256_hex(url.as_bytes())[..16];
            let cache = opts.cache_dir.join(format!("{key}.git"));
            let mut remote =
                GitRemote::new(url, opts.writer_slot.clone(), cache).map_err(|source| {
                    RemoteSpecError::InvalidSlot {
                        spec: git::redact_spec(spec),
                        source,
                    }
                })?;
            if let Some(token) = &opts.github_token {
                remote = remote.with_token(Some(&token.token), token.auth_host.as_deref());
            }
            let packed = crate::packs::Packed::new(
                Box::new(
                    remote
                        .with_stall_timeout(opts.stall_timeout)
                        .with_limits(opts.git_limits),
                ),
                Some(pack_indexes(opts)),
            );
            Ok(Box::new(packed.with_max_object(opts.git_limits.max_object)))
        }
        "s3" => {
            let parsed =
                crate::s3::S3Spec::parse(spec).map_err(|source| RemoteSpecError::BadS3Spec {
                    spec: "s3:…".to_owned(),
                    source,
                })?;
            Ok(Box::new(crate::packs::Packed::new(
                s3_remote(parsed, opts),
                Some(pack_indexes(opts)),
            )))
        }
        _ => Err(RemoteSpecError::UnknownScheme {
            spec: git::redact_spec(spec),
            scheme: scheme.to_owned(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_spec_names_its_folder_from_the_base() {
        let base = Path::new("/ws");
        assert_eq!(
            dir_remote_path("dir:/mnt/pool", base),
            Some(PathBuf::from("/mnt/pool"))
        );
        assert_eq!(
            dir_remote_path("dir:pool", base),
            Some(PathBuf::from("/ws/pool"))
        );
        assert_eq!(dir_remote_path("dir:", base), None);
        assert_eq!(dir_remote_path("git:/r.git", base), None);
    }

    #[test]
    fn only_answers_that_waiting_does_not_fix_are_misconfigured() {
        let remote = "git:/r.git".to_owned();
        let missing = RemoteError::RepoNotFound {
            remote: remote.clone(),
            detail: "not found".into(),
        };
        let refused = RemoteError::AuthRefused {
            remote: remote.clone(),
            detail: "403".into(),
        };
        let down = RemoteError::Unreachable {
            remote,
            source: io::Error::other("connection refused"),
        };
        assert!(missing.is_misconfigured() && refused.is_misconfigured());
        assert!(!down.is_misconfigured());
    }

    #[test]
    fn remote_spec_errors_redact_credentials() {
        // Issue 16: a URL given without `git:`, with a token in it, is
        // shown in a runner's log and its annotation.
        let base = Path::new("/base");
        let opts = RemoteOptions::for_base(base);
        let e = parse_remote("https://x:hunter2@github.com/o/r.git", base, &opts)
            .err()
            .unwrap();
        let shown = e.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("https://***@github.com/o/r.git"), "{shown}");
    }

    #[test]
    fn parse_remote_specs() {
        let base = Path::new("/base");
        let opts = RemoteOptions::for_base(base);
        assert_eq!(opts.writer_slot, "default");
        assert_eq!(opts.cache_dir, Path::new("/base/.bridge/git-cache"));
        let r = parse_remote("dir:/mnt/usb/pool", base, &opts).unwrap();
        assert_eq!(r.describe(), "dir:/mnt/usb/pool");
        let r = parse_remote("dir:pool", base, &opts).unwrap();
        assert_eq!(
            r.describe(),
            format!("dir:{}", Path::new("/base").join("pool").display())
        );
        for (spec, described) in [
            ("git:https://x/y.git", "git:https://x/y.git"),
            ("git:git@host:o/r.git", "git:git@host:o/r.git"),
            ("git:file:///srv/r.git", "git:file:///srv/r.git"),
            ("git:/srv/r.git", "git:/srv/r.git"),
            ("git:r.git", "git:/base/r.git"),
        ] {
            let r = parse_remote(spec, base, &opts).unwrap();
            assert_eq!(r.describe(), described);
        }
        let err = parse_remote("git:", base, &opts).err().unwrap();
        assert!(matches!(err, RemoteSpecError::EmptyUrl { .. }));
        let bad_slot = RemoteOptions {
            writer_slot: "a/b".into(),
            ..opts.clone()
        };
        assert!(matches!(
            parse_remote("git:/srv/r.git", base, &bad_slot)
                .err()
                .unwrap(),
            RemoteSpecError::InvalidSlot { .. }
        ));
        let err = parse_remote("s3:bucket", base, &opts).err().unwrap();
        assert!(matches!(err, RemoteSpecError::BadS3Spec { .. }));
        let r = parse_remote("s3://bucket/team/pool", base, &opts).unwrap();
        assert_eq!(r.describe(), "s3://bucket/team/pool");
        let err = parse_remote("ftp:bucket", base, &opts).err().unwrap();
        assert!(matches!(err, RemoteSpecError::UnknownScheme { .. }));
        assert!(err.to_string().contains("dir:PATH, git:URL"), "{err}");
        assert!(matches!(
            parse_remote("pool", base, &opts).err().unwrap(),
            RemoteSpecError::NoScheme { .. }
        ));
        assert!(matches!(
            parse_remote("dir:", base, &opts).err().unwrap(),
            RemoteSpecError::EmptyPath { .. }
        ));
    }

    #[test]
    fn dir_remote_list_ignores_temp_and_foreign_names_in_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let h = names::sha256_hex(b"c");
        fs::create_dir_all(root.join("chunks/doc")).unwrap();
        fs::create_dir_all(root.join("blobs")).unwrap();
        fs::write(root.join("FORMAT"), FORMAT_LINE).unwrap();
        fs::write(root.join(format!("chunks/doc/{h}.chunk")), b"c").unwrap();
        fs::write(root.join("chunks/doc/.tmp-0123"), b"partial").unwrap();
        fs::write(root.join("chunks/doc/notes.txt"), b"?").unwrap();
        fs::write(root.join("blobs/.tmp-99"), b"partial").unwrap();
        fs::write(root.join("README"), b"hello").unwrap();
        let names = DirRemote::new(root.to_owned()).list().unwrap();
        let expected: BTreeSet<String> = ["FORMAT".to_owned(), format!("chunks/doc/{h}.chunk")]
            .into_iter()
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn dir_remote_list_refuses_a_foreign_folder_and_accepts_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let remote = DirRemote::new(dir.path().to_owned());
        fs::create_dir(dir.path().join(".stfolder")).unwrap();
        assert!(remote.list().unwrap().is_empty());
        fs::write(dir.path().join("photo.jpg"), b"x").unwrap();
        assert!(matches!(remote.list(), Err(RemoteError::NotAStore { .. })));
    }

    #[test]
    fn dir_remote_never_creates_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("not-mounted");
        let remote = DirRemote::new(root.clone());
        assert!(matches!(
            remote.list(),
            Err(RemoteError::Unreachable { .. })
        ));
        assert!(matches!(
            remote.put(&[("workspace".into(), b"w\n".to_vec())]),
            Err(RemoteError::Unreachable { .. })
        ));
        assert!(matches!(
            remote.read("FORMAT"),
            Err(RemoteError::Unreachable { .. })
        ));
        assert!(!root.exists());
    }
}
