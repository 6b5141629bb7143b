//! Atomic, create-only file writes and the small file-system helpers every
//! folder store (a [`Replica`](crate::Replica), a [`DirRemote`](crate::DirRemote))
//! shares.
//!
//! A write goes to `.tmp-<random hex>` in the destination folder, is fsynced,
//! then hard-linked to its final name. `link(2)` fails if the name exists, so
//! two processes writing the same content-addressed file never clobber each
//! other and an existing file is never rewritten; the loser just removes its
//! temp file. File systems without hard links (FAT on a USB stick) fall back
//! to `rename` when the final name is absent. The folder is fsynced last. A
//! process killed at any point leaves at most a `.tmp-*` file, which every
//! listing ignores.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::names::TMP_PREFIX;

/// What a create-only write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placed {
    /// The file was written by this call.
    Created,
    /// A file of that name was already there (same content by construction).
    AlreadyPresent,
}

/// A fresh temp file name: `.tmp-` and 16 random hex digits.
fn temp_name() -> io::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| io::Error::other(format!("no randomness for a temp file name: {e}")))?;
    Ok(format!("{TMP_PREFIX}{}", hex::encode(bytes)))
}

/// An open temp file that is removed on drop unless persisted.
pub(crate) struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates a new temp file in `dir` (which must exist).
    pub(crate) fn create_in(dir: &Path) -> io::Result<TempFile> {
        let mut attempts = 0;
        loop {
            let path = dir.join(temp_name()?);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 4 => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The open file.
    pub(crate) fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("temp file already closed"))
    }

    /// Flushes the data to disk and closes the file.
    fn sync_and_close(&mut self) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        Ok(())
    }

    /// Gives the temp file the name `dest` unless a file of that name exists.
    pub(crate) fn persist_new(mut self, dest: &Path) -> io::Result<Placed> {
        self.sync_and_close()?;
        let placed = self.link_to(dest)?;
        if placed == Placed::Created {
            sync_parent(dest)?;
        }
        Ok(placed)
    }

    /// [`persist_new`](Self::persist_new) for a file whose content the
    /// caller already made durable, and whose folder it syncs itself.
    fn place(mut self, dest: &Path) -> io::Result<Placed> {
        self.file = None;
        self.link_to(dest)
    }

    /// Links (or renames) the temp file to `dest` unless a file of that name
    /// exists, then removes the temp name.
    fn link_to(&mut self, dest: &Path) -> io::Result<Placed> {
        let placed = match fs::hard_link(&self.path, dest) {
            Ok(()) => Placed::Created,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Placed::AlreadyPresent,
            Err(e) if links_unsupported(&e) => {
                tracing::debug!(path = %dest.display(), error = %e, "hard link refused, falling back to rename");
                if exists(dest)? {
                    Placed::AlreadyPresent
                } else {
                    // Content-addressed names hold the same bytes whoever
                    // wins a race here, so a rename over a file that
                    // appeared meanwhile loses nothing.
                    fs::rename(&self.path, dest)?;
                    Placed::Created
                }
            }
            Err(e) => return Err(e),
        };
        self.remove();
        Ok(placed)
    }

    /// Renames the temp file to `dest`, replacing any file there.
    pub(crate) fn persist_replace(mut self, dest: &Path) -> io::Result<()> {
        self.sync_and_close()?;
        fs::rename(&self.path, dest)?;
        // Nothing left to remove on drop.
        self.path = PathBuf::new();
        sync_parent(dest)
    }

    /// Removes the temp file, ignoring errors (it may be gone after a rename).
    fn remove(&mut self) {
        self.file = None;
        if !self.path.as_os_str().is_empty() {
            if let Err(e) = fs::remove_file(&self.path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove temp file");
            }
            self.path = PathBuf::new();
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// True if a `hard_link` error means the file system has no hard links.
fn links_unsupported(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
    )
}

/// True if something exists at `path` (without following a final symlink).
pub(crate) fn exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `dir/file_name` atomically, create-only. Creates `dir`
/// if needed. Does nothing if the file exists.
pub(crate) fn write_new(dir: &Path, file_name: &str, bytes: &[u8]) -> io::Result<Placed> {
    let dest = dir.join(file_name);
    if exists(&dest)? {
        return Ok(Placed::AlreadyPresent);
    }
    ensure_dir(dir)?;
    let mut tmp = match TempFile::create_in(dir) {
        // Compaction removes emptied document folders; one may have gone
        // between `ensure_dir` and here. Once the temp file is in, the
        // folder is not empty and stays.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            ensure_dir(dir)?;
            TempFile::create_in(dir)?
        }
        other => other?,
    };
    tmp.file()?.write_all(bytes)?;
    tmp.persist_new(&dest)
}

/// Writes many files as [`write_new`] does, with two file-system syncs for
/// the whole batch instead of two fsyncs per file: every file is written to
/// its temp file, the file system is synced (`syncfs(2)`; elsewhere than
/// Linux, each temp file is fsynced), then each is linked to its name and
/// the folders are synced again. As with `write_new`, a file is under its
/// final name only once its content is durable. Returns each file's outcome,
/// in order; `Err` names the file that failed.
pub(crate) fn write_many_new(
    files: &[(&Path, &str, &[u8])],
) -> Result<Vec<Placed>, (PathBuf, io::Error)> {
    let mut placed = vec![Placed::AlreadyPresent; files.len()];
    let mut written: Vec<(usize, TempFile)> = Vec::new();
    for (i, (dir, name, bytes)) in files.iter().enumerate() {
        let dest = dir.join(name);
        let failed = |e| (dest.clone(), e);
        if exists(&dest).map_err(failed)? {
            continue;
        }
        ensure_dir(dir).map_err(failed)?;
        let mut tmp = TempFile::create_in(dir).map_err(failed)?;
        tmp.file()
            .and_then(|f| f.write_all(bytes))
            .map_err(failed)?;
        // `syncfs` needs no handle: close it, so a batch holds no more
        // descriptors than one file.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            tmp.file = None;
        }
        written.push((i, tmp));
    }
    let mut dirs: Vec<&Path> = Vec::new();
    for (i, _) in &written {
        if !dirs.contains(&files[*i].0) {
            dirs.push(files[*i].0);
        }
    }
    sync_written(&mut written, &dirs)?;
    for (i, tmp) in written {
        let dest = files[i].0.join(files[i].1);
        placed[i] = tmp.place(&dest).map_err(|e| (dest.clone(), e))?;
    }
    for dir in dirs {
        sync_dir(dir).map_err(|e| (dir.to_path_buf(), e))?;
    }
    Ok(placed)
}

/// Makes the temp files of a batch durable: one `syncfs` per folder's file
/// system on Linux, else an fsync per file.
fn sync_written(
    written: &mut [(usize, TempFile)],
    dirs: &[&Path],
) -> Result<(), (PathBuf, io::Error)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ = written;
        for dir in dirs {
            let fail = |e: io::Error| (dir.to_path_buf(), e);
            let folder = File::open(dir).map_err(fail)?;
            nix::unistd::syncfs(&folder).map_err(|e| fail(io::Error::from(e)))?;
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = dirs;
        for (_, tmp) in written.iter_mut() {
            let path = tmp.path.clone();
            tmp.sync_and_close().map_err(|e| (path, e))?;
        }
        Ok(())
    }
}

/// Creates `dir` (and its parents) if missing, fsyncing the parent of a new
/// folder so the folder itself survives a crash.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    sync_parent(dir)
}

/// Fsyncs the folder holding `path`.
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Fsyncs a folder so a new entry in it is durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        // Some file systems (certain FUSE and network mounts) cannot fsync a
        // folder; the data itself was already fsynced.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            tracing::debug!(dir = %dir.display(), error = %e, "folder fsync not supported");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Fsyncs a folder so a new entry in it is durable (a no-op where folders
/// cannot be opened as files).
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Which side of a streaming copy failed.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// Reading the source failed.
    Read(io::Error),
    /// Writing the destination failed.
    Write(io::Error),
}

/// Copies `src` into `dest` in bounded memory and returns the sha256 hex of
/// the bytes copied.
pub(crate) fn copy_hashing(
    src: &mut impl Read,
    dest: &mut impl Write,
) -> Result<String, CopyError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        let data = buf.get(..n).unwrap_or_default();
        hasher.update(data);
        dest.write_all(data).map_err(CopyError::Write)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// What a folder entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link (never followed; warned about once).
    Link,
    /// Anything else.
    Other,
}

/// The visible entries of `dir`: names not starting with `.` (temp files,
/// `.stfolder` and the like are skipped) that are valid UTF-8. `Ok(None)` if
/// `dir` does not exist. Uses the file type `read_dir` already returns, so no
/// per-file `stat` on most systems. Symbolic links are not followed: they
/// come back as [`Kind::Link`], and a warning names each once.
pub(crate) fn visible_entries(dir: &Path) -> io::Result<Option<Vec<(String, Kind)>>> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::debug!(dir = %dir.display(), name = ?entry.file_name(), "ignoring non-UTF-8 name");
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let file_type = entry.file_type()?;
        let kind = if file_type.is_symlink() {
            // Never followed (issue 12, item 8): a link in a store could
            // point anywhere, and a write through a linked folder would
            // land outside the store.
            warn_link_once(&entry.path());
            Kind::Link
        } else if file_type.is_file() {
            Kind::File
        } else if file_type.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        };
        out.push((name, kind));
    }
    Ok(Some(out))
}

/// Reads a whole small file (at most `limit` bytes, a regular file, not a
/// link); `Ok(None)` if it does not exist.
pub(crate) fn read_optional(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    match read_bounded(path, None, limit) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(Refused::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into_io(path, limit)),
    }
}

/// Why a store file was not read (issue 12, items 8 and 16): a store is
/// written by others, so a file in it may be a link out of it, a FIFO that
/// blocks every reader, a link to `/dev/zero`, or a sparse file of
/// gigabytes. Such files are refused before a byte is read.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Opening or reading failed.
    Io(io::Error),
    /// The file, or a folder on its way below the store root, is a
    /// symbolic link: bridge never follows links inside a store.
    Link,
    /// Not a regular file (a FIFO, a device, a socket, a folder).
    NotRegular,
    /// Larger than the limit for its kind of file.
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
}

impl Refused {
    /// As an `io::Error` whose message says what was refused, for callers
    /// whose error type has no room for the distinction.
    pub(crate) fn into_io(self, path: &Path, limit: u64) -> io::Error {
        match self {
            Refused::Io(e) => e,
            Refused::Link => io::Error::other(format!(
                "{} is (or passes through) a symbolic link; bridge never follows links inside a store",
                path.display()
            )),
            Refused::NotRegular => io::Error::other(format!(
                "{} is not a regular file (a FIFO, a device or a folder); refused",
                path.display()
            )),
            Refused::TooLarge { size } => io::Error::other(format!(
                "{} is {size} bytes, over the limit of {limit} bytes for this kind of file; refused",
                path.display()
            )),
        }
    }
}

impl From<io::Error> for Refused {
    fn from(e: io::Error) -> Self {
        Refused::Io(e)
    }
}

/// Opens `path` for reading as a regular file of at most `limit` bytes and
/// returns it with its size. With `root`, `path` must lie below it and no
/// component between them may be a symbolic link (on Linux, `openat2` with
/// `RESOLVE_NO_SYMLINKS` checks this in the kernel, atomically; elsewhere
/// each component is checked with `lstat` first, which leaves a window for
/// a swap between the check and the open). The last component is never
/// followed (`O_NOFOLLOW`), and the file is opened non-blocking so a FIFO
/// does not hang the reader before it is refused.
pub(crate) fn open_regular(
    path: &Path,
    root: Option<&Path>,
    limit: u64,
) -> Result<(File, u64), Refused> {
    let file = open_no_follow(path, root)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(Refused::NotRegular);
    }
    if meta.len() > limit {
        return Err(Refused::TooLarge { size: meta.len() });
    }
    Ok((file, meta.len()))
}

/// Reads a whole file checked by [`open_regular`]; never more than `limit`
/// bytes even if it grows while being read.
pub(crate) fn read_bounded(
    path: &Path,
    root: Option<&Path>,
    limit: u64,
) -> Result<Vec<u8>, Refused> {
    let (file, size) = open_regular(path, root, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    let read = bytes.len() as u64;
    if read > limit {
        return Err(Refused::TooLarge { size: read });
    }
    Ok(bytes)
}

/// The sha256 hex of a file checked by [`open_regular`], read in bounded
/// memory.
pub(crate) fn hash_file(path: &Path, root: Option<&Path>, limit: u64) -> Result<String, Refused> {
    let (file, _) = open_regular(path, root, limit)?;
    copy_hashing(&mut file.take(limit.saturating_add(1)), &mut io::sink()).map_err(|e| match e {
        CopyError::Read(e) | CopyError::Write(e) => Refused::Io(e),
    })
}

/// Opens `path` read-only without following symbolic links below `root`
/// (see [`open_regular`]).
fn open_no_follow(path: &Path, root: Option<&Path>) -> Result<File, Refused> {
    let rel = match root.map(|r| path.strip_prefix(r)) {
        Some(Ok(rel)) if !rel.as_os_str().is_empty() => Some(rel),
        Some(_) => {
            return Err(Refused::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not below the store root", path.display()),
            )));
        }
        None => None,
    };
    #[cfg(target_os = "linux")]
    if let (Some(root), Some(rel)) = (root, rel) {
        use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
        let dir = File::open(root)?;
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH);
        match openat2(&dir, rel, how) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(nix::errno::Errno::ELOOP) => return Err(Refused::Link),
            // Kernels before 5.6 (or a seccomp filter) lack openat2: fall
            // back to the lstat checks below.
            Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM) => {}
            Err(e) => return Err(Refused::Io(io::Error::from(e))),
        }
    }
    if let (Some(root), Some(rel)) = (root, rel) {
        check_no_links(root, rel.parent().unwrap_or(Path::new("")))?;
    }
    open_last_no_follow(path)
}

/// Opens `path` with `O_NOFOLLOW | O_NONBLOCK`: a final symbolic link is
/// [`Refused::Link`].
#[cfg(unix)]
fn open_last_no_follow(path: &Path) -> Result<File, Refused> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    match OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
    {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => Err(Refused::Link),
        Err(e) => Err(Refused::Io(e)),
    }
}

#[cfg(not(unix))]
fn open_last_no_follow(path: &Path) -> Result<File, Refused> {
    if fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(Refused::Link);
    }
    Ok(File::open(path)?)
}

/// Checks that no existing folder of `rel_dir` below `root` is a symbolic
/// link (missing ones are fine: they are created as real folders). Writes
/// call it before placing a file, so that a `blobs` link in a store never
/// redirects them elsewhere. A swap between this check and the write
/// remains possible for someone who can write the store folder itself.
pub(crate) fn check_no_links(root: &Path, rel_dir: &Path) -> Result<(), Refused> {
    let mut path = root.to_owned();
    for component in rel_dir.components() {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(Refused::Link),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Refused::Io(e)),
        }
    }
    Ok(())
}

/// Warns once per process about a symbolic link found inside a store (a
/// listing runs many times in one command; the user needs to hear it once).
pub(crate) fn warn_link_once(path: &Path) {
    static WARNED: std::sync::Mutex<Option<std::collections::BTreeSet<PathBuf>>> =
        std::sync::Mutex::new(None);
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned
        .get_or_insert_with(Default::default)
        .insert(path.to_owned())
    {
        tracing::warn!(
            "skipped {}: a symbolic link inside a store; bridge never follows links there (remove it, or replace it by the real folder or file)",
            path.display()
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn write_many_new_places_a_batch_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b/c"));
        write_new(&a, "old", b"kept").unwrap();
        let placed = write_many_new(&[
            (&a, "old", b"new bytes".as_slice()),
            (&a, "x", b"1"),
            (&b, "y", b"2"),
        ])
        .unwrap();
        assert_eq!(
            placed,
            vec![Placed::AlreadyPresent, Placed::Created, Placed::Created]
        );
        assert_eq!(fs::read(a.join("old")).unwrap(), b"kept");
        assert_eq!(fs::read(a.join("x")).unwrap(), b"1");
        assert_eq!(fs::read(b.join("y")).unwrap(), b"2");
        for folder in [&a, &b] {
            let names: Vec<String> = fs::read_dir(folder)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                names.iter().all(|n| !n.starts_with(TMP_PREFIX)),
                "{names:?}"
            );
        }
        // A folder that cannot be created fails the batch, naming the file.
        fs::write(dir.path().join("file"), b"").unwrap();
        let blocked = dir.path().join("file/sub");
        let (path, _) = write_many_new(&[(&blocked, "z", b"3".as_slice())]).unwrap_err();
        assert_eq!(path, blocked.join("z"));
    }

    #[test]
    fn write_new_is_create_only_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        assert_eq!(write_new(&sub, "f", b"one").unwrap(), Placed::Created);
        assert_eq!(
            write_new(&sub, "f", b"two").unwrap(),
            Placed::AlreadyPresent
        );
        assert_eq!(fs::read(sub.join("f")).unwrap(), b"one");
        let names: Vec<_> = fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"]);
    }

    #[test]
    fn persist_new_loses_to_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        fs::write(&dest, b"first").unwrap();
        let mut tmp = TempFile::create_in(dir.path()).unwrap();
        tmp.file().unwrap().write_all(b"second").unwrap();
        assert_eq!(tmp.persist_new(&dest).unwrap(), Placed::AlreadyPresent);
        assert_eq!(fs::read(&dest).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn dropped_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = TempFile::create_in(dir.path()).unwrap();
        drop(tmp);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn copy_hashing_matches_sha256() {
        let data = vec![7u8; 1_000_000];
        let mut out = Vec::new();
        let hash = copy_hashing(&mut &data[..], &mut out).unwrap();
        assert_eq!(hash, crate::names::sha256_hex(&data));
        assert_eq!(out, data);
    }
}

/// Replaces the file `path` with `bytes` in one step, for the files beside
/// a store (settings, caches, copies handed to a task): written to a fresh
/// temporary file in the same folder (removed again if anything fails),
/// flushed to disk when `durable`, then renamed over `path`, so a reader
/// sees the old file or the new one, never a part. `mode` is the new file's
/// permissions as for `open(2)` (the umask applies): `0o666` for an
/// ordinary file, `0o600` for a secret.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".bridge-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durable {
        sync_parent(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod replace_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_replaced_file_is_whole_with_its_mode_and_no_temp_file_is_left() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("identity");
        replace_file(&path, b"first", 0o600, true).unwrap_or_else(|e| panic!("{e}"));
        replace_file(&path, b"second", 0o600, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read(&path).unwrap_or_default(), b"second");
        let mode = fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let names: Vec<_> = fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("identity")]);
    }

    #[test]
    fn a_failed_replace_leaves_the_old_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("target");
        // A folder where the file should go: the rename fails.
        fs::create_dir(&path).unwrap_or_else(|e| panic!("{e}"));
        fs::write(path.join("inside"), b"kept").unwrap_or_else(|e| panic!("{e}"));
        assert!(replace_file(&path, b"new", 0o666, false).is_err());
        assert_eq!(fs::read(path.join("inside")).unwrap_or_default(), b"kept");
        let count = fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0);
        assert_eq!(count, 1, "a temporary file was left behind");
    }
}
