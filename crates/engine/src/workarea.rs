//! The working folders of this device's workers under `.bridge/work`, and
//! the removal of those that killed workers left behind (issue 12, item 23).
//!
//! A task's folder holds its inputs and outputs in plaintext, so it must not
//! outlive the attempt. A worker removes each folder when its task ends, but
//! a worker killed with `SIGKILL` (or a machine that lost power) cannot.
//! Several workers may run in one workspace at once, so a worker must never
//! remove a folder another live worker uses. Each worker therefore works in
//! a folder of its own, `.bridge/work/w-<pid>-<random>/`, next to a lock
//! file `w-<pid>-<random>.lock` it holds an exclusive `flock` on for its
//! whole life. The kernel drops the lock when the process dies, however it
//! dies, so at start-up a worker removes every folder whose lock it can
//! take, every folder that has no lock file, and entries of the layout
//! before this one (task folders and logs directly in `.bridge/work`).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Why a worker's folder could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WorkAreaError {
    /// A folder or lock file could not be created.
    #[error("cannot create {}", path.display())]
    Create {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The lock file could not be locked.
    #[error("cannot lock {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::errno::Errno,
    },
    /// The locked file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No random name could be made.
    #[error(transparent)]
    Random(#[from] crate::workspace::RandomError),
}

fn create(path: &Path) -> impl FnOnce(io::Error) -> WorkAreaError {
    let path = path.to_path_buf();
    move |source| WorkAreaError::Create { path, source }
}

/// This worker's own folder, locked for as long as the value lives.
pub struct WorkArea {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: Flock<File>,
}

impl WorkArea {
    /// Removes what dead workers left under `root` (`.bridge/work`), then
    /// makes and locks a folder for this worker.
    pub fn open(root: &Path) -> Result<WorkArea, WorkAreaError> {
        std::fs::create_dir_all(root).map_err(create(root))?;
        let removed = remove_stale(root);
        if removed > 0 {
            tracing::info!(
                "removed {removed} working folder(s) left by stopped workers in {}",
                root.display()
            );
        }
        // Another worker starting at the same time may take our new lock
        // file for a dead worker's between its creation and our lock, and
        // unlink it: then we would hold a lock on no name, and our folder
        // would look unlocked. So the lock must still be the file at the
        // path once it is held; else try again with a new name.
        let (name, lock_path, lock) = loop {
            // Without its hint, as before: the folder's error says enough.
            let random = crate::workspace::random_bytes::<4>()?;
            let name = format!("w-{}-{}", std::process::id(), hex::encode(random));
            let lock_path = root.join(format!("{name}.lock"));
            let file = File::create(&lock_path).map_err(create(&lock_path))?;
            let lock =
                Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, source)| {
                    WorkAreaError::Lock {
                        path: lock_path.clone(),
                        source,
                    }
                })?;
            let held = lock.metadata().map_err(|source| WorkAreaError::Read {
                path: lock_path.clone(),
                source,
            })?;
            let still_ours = std::fs::metadata(&lock_path)
                .is_ok_and(|now| (now.dev(), now.ino()) == (held.dev(), held.ino()));
            if still_ours {
                break (name, lock_path, lock);
            }
        };
        // Lock first, folder second: a folder without a lock file is never
        // a live worker's.
        let dir = root.join(&name);
        std::fs::create_dir(&dir).map_err(create(&dir))?;
        Ok(WorkArea {
            dir,
            lock_path,
            _lock: lock,
        })
    }

    /// The folder this worker's tasks run in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for WorkArea {
    fn drop(&mut self) {
        // Task folders are removed as tasks end; this removes the rest.
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Removes the folders of workers that are gone and the old layout's
/// entries; returns how many entries it removed. Errors are logged and
/// skipped: cleaning must not stop a worker.
fn remove_stale(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        let outcome = if let Some(worker) = name.strip_prefix("w-") {
            match worker.strip_suffix(".lock") {
                Some(_) => remove_if_unlocked(&path, &root.join(&name[..name.len() - 5])),
                // A worker's folder: its lock file decides.
                None if root.join(format!("{name}.lock")).exists() => Ok(false),
                None => remove_entry(&path).map(|()| true),
            }
        } else {
            // Task folders and logs of the layout before per-worker folders.
            remove_entry(&path).map(|()| true)
        };
        match outcome {
            Ok(true) => removed += 1,
            Ok(false) => {}
            // Another worker starting up removed it first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
    removed
}

/// Removes `dir` and its lock file if no live process holds the lock.
fn remove_if_unlocked(lock_path: &Path, dir: &Path) -> io::Result<bool> {
    let file = match File::open(lock_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_held) => {
            // Still holding the lock: nobody can be starting in `dir`.
            if dir.exists() {
                std::fs::remove_dir_all(dir)?;
            }
            match std::fs::remove_file(lock_path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            Ok(true)
        }
        // A live worker holds it.
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(false),
        Err((_, e)) => Err(io::Error::from(e)),
    }
}

fn remove_entry(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn issue12_stale_folders_go_and_live_ones_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("work");
        let live = WorkArea::open(&root).unwrap();
        std::fs::write(live.dir().join("secret.txt"), "live").unwrap();
        // A dead worker: its lock file exists but nobody holds it.
        std::fs::create_dir_all(root.join("w-1-dead/t1-x")).unwrap();
        std::fs::write(root.join("w-1-dead/t1-x/secret.txt"), "plain").unwrap();
        std::fs::write(root.join("w-1-dead.lock"), "").unwrap();
        // A folder without a lock file, and the old layout.
        std::fs::create_dir_all(root.join("w-2-nolock")).unwrap();
        std::fs::create_dir_all(root.join("abcdef0123-w-1")).unwrap();
        std::fs::write(root.join("abcdef0123-w-1.stdout"), "log").unwrap();

        let second = WorkArea::open(&root).unwrap();
        assert!(
            live.dir().join("secret.txt").exists(),
            "a live worker's folder stays"
        );
        assert!(second.dir().exists());
        for gone in [
            "w-1-dead",
            "w-1-dead.lock",
            "w-2-nolock",
            "abcdef0123-w-1",
            "abcdef0123-w-1.stdout",
        ] {
            assert!(!root.join(gone).exists(), "{gone} should be removed");
        }
        let live_dir = live.dir().to_owned();
        drop(live);
        assert!(
            !live_dir.exists(),
            "a worker removes its own folder when it ends"
        );
    }
}
