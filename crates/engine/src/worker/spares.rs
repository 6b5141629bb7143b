//! An attempt's four files (its working folder, its TMPDIR and its two
//! logs), kept empty between tasks of one worker rather than removed and
//! made again (issue 18, item 1).
//!
//! Why: making a file or folder allocates an inode, and on ext4 that
//! allocation skips inodes freed in the last minute or so, reading the
//! inode table to find them: a worker that makes and removes four of them
//! for each of thousands of short tasks spent a fifth of its time there,
//! on the path from one task's end to the next one's start. A rename
//! allocates nothing.
//!
//! An attempt's files keep their names (`<task>-<claim>`, `.tmp`,
//! `.stdout`, `.stderr` in the worker's folder: `bridge logs -f` finds a
//! running task's logs by them). When a task ends, [`Spares::give_back`]
//! empties the two folders (their contents are the task's plaintext, which
//! must not outlive the attempt) and the logs, and renames the four to a
//! spare set's names (`.spare-<n>…`), which [`Spares::take`] renames to the
//! next attempt's. Anything that is not as it was made (a folder or log the
//! task replaced by a link, one that cannot be emptied) is removed as
//! before, and the next attempt makes its own. Spares go with the worker's
//! folder (see [`crate::workarea`]).
//!
//! Only supervised tasks' files are kept: a supervisor kills every process
//! its task left before the task counts as ended. Unsupervised (systems
//! other than Linux), a process that left the task's group could still
//! write into a folder handed to the next task: there each attempt's files
//! are removed, as before.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

/// The spare sets of one worker's folder.
pub(super) struct Spares {
    dir: PathBuf,
    /// Whether sets are kept at all (the tasks are supervised).
    keep: bool,
    free: Mutex<Vec<u64>>,
    next: AtomicU64,
}

/// The four files of an attempt (or of a spare set).
#[derive(Debug, Clone)]
pub(super) struct AttemptFiles {
    pub dir: PathBuf,
    pub tmp: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl AttemptFiles {
    /// Named `<base>`, `<base>.tmp`, `<base>.stdout`, `<base>.stderr`.
    pub fn named(base: PathBuf) -> AttemptFiles {
        let with = |suffix: &str| {
            let mut name = base.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        AttemptFiles {
            tmp: with(".tmp"),
            stdout: with(".stdout"),
            stderr: with(".stderr"),
            dir: base,
        }
    }

    fn all(&self) -> [&Path; 4] {
        [&self.dir, &self.tmp, &self.stdout, &self.stderr]
    }

    /// Removes all four, whatever they are (a link is removed, not
    /// followed).
    pub fn remove(&self) {
        for path in self.all() {
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => {
                    let _ = std::fs::remove_dir_all(path);
                }
                Ok(_) => {
                    let _ = std::fs::remove_file(path);
                }
                Err(_) => {}
            }
        }
    }
}

impl Spares {
    /// The spares of the worker folder `dir` (none yet); `keep`: whether
    /// its tasks are supervised, so that their files may be kept.
    pub fn new(dir: &Path, keep: bool) -> Spares {
        Spares {
            dir: dir.to_path_buf(),
            keep,
            free: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        }
    }

    fn spare(&self, n: u64) -> AttemptFiles {
        AttemptFiles::named(self.dir.join(format!(".spare-{n}")))
    }

    /// Puts a spare set's empty files at `files`' names; `false` when
    /// there is none (the attempt makes its own).
    pub fn take(&self, files: &AttemptFiles) -> bool {
        let Some(n) = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
        else {
            return false;
        };
        move_all(&self.spare(n), files)
    }

    /// After an attempt: empties its files and keeps them as a spare set,
    /// or removes them where they cannot be kept.
    pub fn give_back(&self, files: &AttemptFiles) {
        if !self.keep || empty(files).is_err() {
            files.remove();
            return;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if !move_all(files, &self.spare(n)) {
            return;
        }
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(n);
    }
}

/// Renames the four files of `from` to `to`'s names; `false`, with both
/// sets removed, when one could not be (half moved, neither set is whole).
fn move_all(from: &AttemptFiles, to: &AttemptFiles) -> bool {
    let moved = from
        .all()
        .into_iter()
        .zip(to.all())
        .try_for_each(|(a, b)| std::fs::rename(a, b));
    if moved.is_err() {
        from.remove();
        to.remove();
    }
    moved.is_ok()
}

/// Empties an attempt's folders and logs; an error when one is missing or
/// is not what an attempt's files are (a link, a file for a folder).
fn empty(files: &AttemptFiles) -> std::io::Result<()> {
    let not_kept = || std::io::Error::other("not an attempt's file");
    for folder in [&files.dir, &files.tmp] {
        // Not followed: a link the task put in its folder's place is
        // removed, never what it points to emptied.
        if !std::fs::symlink_metadata(folder)?.file_type().is_dir() {
            return Err(not_kept());
        }
        for entry in std::fs::read_dir(folder)? {
            let entry = entry?;
            // The entry's own type: a link inside is removed, not followed.
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    for log in [&files.stdout, &files.stderr] {
        let meta = std::fs::symlink_metadata(log)?;
        if !meta.file_type().is_file() {
            return Err(not_kept());
        }
        if meta.len() > 0 {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(log)?
                .set_len(0)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn make(files: &AttemptFiles) {
        std::fs::create_dir(&files.dir).unwrap();
        std::fs::create_dir(&files.tmp).unwrap();
        std::fs::write(&files.stdout, "out").unwrap();
        std::fs::write(&files.stderr, "").unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_attempts_files_are_emptied_kept_and_reused_by_the_next() {
        let root = tempfile::tempdir().unwrap();
        let spares = Spares::new(root.path(), true);
        let first = AttemptFiles::named(root.path().join("a-1"));
        assert!(!spares.take(&first), "no spare yet");
        make(&first);
        std::fs::create_dir_all(first.dir.join("sub/deeper")).unwrap();
        std::fs::write(first.dir.join("sub/deeper/secret"), "s").unwrap();
        std::fs::write(first.tmp.join("t"), "t").unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "k").unwrap();
        std::os::unix::fs::symlink(&outside, first.dir.join("link")).unwrap();
        let inode = std::fs::metadata(&first.dir).unwrap().ino();
        spares.give_back(&first);
        assert_eq!(
            names(root.path()),
            [
                ".spare-0",
                ".spare-0.stderr",
                ".spare-0.stdout",
                ".spare-0.tmp",
                "outside"
            ]
        );
        assert!(outside.join("keep").exists(), "a link was followed");

        let second = AttemptFiles::named(root.path().join("b-1"));
        assert!(spares.take(&second));
        assert_eq!(std::fs::metadata(&second.dir).unwrap().ino(), inode);
        assert!(names(&second.dir).is_empty() && names(&second.tmp).is_empty());
        assert_eq!(std::fs::metadata(&second.stdout).unwrap().len(), 0);
        assert!(!spares.take(&AttemptFiles::named(root.path().join("c-1"))));

        // A folder the task replaced by a link: removed, not kept, the
        // link's target untouched.
        std::fs::remove_dir(&second.tmp).unwrap();
        std::os::unix::fs::symlink(&outside, &second.tmp).unwrap();
        spares.give_back(&second);
        assert_eq!(names(root.path()), ["outside"]);
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn unsupervised_tasks_files_are_removed_not_kept() {
        let root = tempfile::tempdir().unwrap();
        let spares = Spares::new(root.path(), false);
        let files = AttemptFiles::named(root.path().join("a-1"));
        make(&files);
        spares.give_back(&files);
        assert!(names(root.path()).is_empty());
        assert!(!spares.take(&AttemptFiles::named(root.path().join("b-1"))));
    }
}
