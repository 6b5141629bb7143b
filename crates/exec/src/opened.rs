//! The allow-listed paths the spawner opens once for all its tasks'
//! sandboxes (Linux; issue 18, item 1).
//!
//! A sandbox's Landlock rules name each allowed file or folder through a
//! descriptor. Most of the list is the same for every task of a worker
//! (`/usr`, `/etc`, the folders on PATH, `/dev/null`, …): opening, looking
//! at and closing those ~25 paths again in each task's supervisor was ~90
//! system calls a task. The spawner opens them once (`O_PATH`,
//! close-on-exec) and each supervisor it forks inherits the descriptors and
//! builds its rules from them ([`crate::supervisor::rules`]).
//!
//! What is never kept: a task's own folder, TMPDIR and logs (they are new
//! for each task), and anything at or below a folder a sandboxed task gets
//! a private mount of (`/proc`, `/tmp`, `/dev/shm`): a descriptor opened
//! outside the task's mount namespace names the host's mount there, not
//! the task's. A kept path whose file or folder was replaced (removed and
//! made again) would grant access to the old one only, so each supervisor
//! checks the kept descriptors it uses against what their paths name when
//! it builds the task's rules (a `stat` each, where an open, a `stat` and
//! a close were), and opens a changed path again; and the spawner checks
//! every kept path at most once a second ([`OpenedPaths::RECHECK`]) and
//! forgets those that changed, so the next tasks need not.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use landlock::PathFd;
use nix::sys::stat::SFlag;

use crate::Confinement;

/// One allow-listed path, opened.
#[derive(Debug)]
pub(crate) struct OpenedPath {
    /// The file or folder, opened with `O_PATH` (following symbolic links:
    /// a rule applies to the target anyway).
    pub fd: PathFd,
    /// Its device and inode, which tell two listed paths to the same place.
    pub id: (nix::libc::dev_t, nix::libc::ino_t),
    pub is_dir: bool,
}

impl OpenedPath {
    /// Opens `path`; `None` if it does not exist (it then needs no rule).
    pub(crate) fn open(path: &Path) -> Option<OpenedPath> {
        let fd = PathFd::new(path).ok()?;
        let stat = nix::sys::stat::fstat(fd.as_fd()).ok()?;
        Some(OpenedPath {
            fd,
            id: (stat.st_dev, stat.st_ino),
            // The file type is a field, not a set of flags (a block
            // device's bits include a folder's).
            is_dir: stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits(),
        })
    }
}

/// The folders a sandboxed task gets a mount of its own over (see
/// `supervisor::mount_private_folders`).
pub(crate) const PRIVATE_MOUNTS: [&str; 3] = ["/proc", "/tmp", "/dev/shm"];

/// The spawner's kept descriptors, by the path as listed.
#[derive(Debug)]
pub(crate) struct OpenedPaths {
    paths: HashMap<PathBuf, OpenedPath>,
    /// When the kept paths were last checked (`None`: never).
    checked: Option<Instant>,
}

impl OpenedPaths {
    /// How stale a kept descriptor may be at most.
    pub(crate) const RECHECK: Duration = Duration::from_secs(1);

    /// More paths than an allow-list holds: a bound on what is kept.
    const MAX: usize = 512;

    /// None kept (what an executed supervisor, which has no spawner, uses).
    pub(crate) fn none() -> OpenedPaths {
        OpenedPaths {
            paths: HashMap::new(),
            checked: None,
        }
    }

    /// The kept descriptor of `path`, as listed.
    pub(crate) fn get(&self, path: &Path) -> Option<&OpenedPath> {
        self.paths.get(path)
    }

    /// Opens and keeps the paths of `confinement` that every task shares,
    /// `task_folder` being the folder that holds the task's own (its
    /// working folder's parent), after forgetting kept paths that name
    /// something else now (at most once per [`RECHECK`](Self::RECHECK)).
    pub(crate) fn prepare(&mut self, confinement: &Confinement, task_folder: Option<&Path>) {
        let mut unshared: Vec<&Path> = PRIVATE_MOUNTS.iter().map(Path::new).collect();
        unshared.extend(task_folder);
        self.prepare_except(confinement, &unshared);
    }

    /// [`prepare`](Self::prepare), keeping nothing at or below `unshared`.
    fn prepare_except(&mut self, confinement: &Confinement, unshared: &[&Path]) {
        if self.checked.is_none_or(|at| at.elapsed() >= Self::RECHECK) {
            self.paths.retain(|path, opened| {
                nix::sys::stat::stat(path).is_ok_and(|s| (s.st_dev, s.st_ino) == opened.id)
            });
            self.checked = Some(Instant::now());
        }
        let shared =
            |path: &Path| path.is_absolute() && !unshared.iter().any(|u| path.starts_with(u));
        let listed = confinement.read_write.iter().chain(&confinement.read_only);
        for path in listed {
            if self.paths.contains_key(path) || !shared(path) {
                continue;
            }
            if self.paths.len() >= Self::MAX {
                return;
            }
            let Some(opened) = OpenedPath::open(path) else {
                continue;
            };
            // Where a link led: the same test on the target.
            let target = std::fs::read_link(format!("/proc/self/fd/{}", fd_number(&opened)));
            if target.is_ok_and(|t| shared(&t)) {
                self.paths.insert(path.clone(), opened);
            }
        }
    }
}

fn fd_number(opened: &OpenedPath) -> std::os::fd::RawFd {
    use std::os::fd::AsRawFd as _;
    opened.fd.as_fd().as_raw_fd()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_every_task_shares_are_kept_and_a_replaced_one_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let (tools, work) = (root.join("tools"), root.join("work"));
        let task = work.join("t1");
        std::fs::create_dir_all(&tools).unwrap();
        std::fs::create_dir_all(&task).unwrap();
        std::os::unix::fs::symlink("/proc/self", root.join("to-proc")).unwrap();
        let c = Confinement {
            read_write: vec!["/dev/null".into(), "/dev/shm".into(), task.clone()],
            read_only: vec![
                "/usr".into(),
                "/proc".into(),
                tools.clone(),
                root.join("to-proc"),
                root.join("missing"),
            ],
            ..Confinement::default()
        };
        // As `prepare` with the temporary folder standing in for /tmp's
        // place: this test's files are there.
        let unshared = [Path::new("/proc"), Path::new("/dev/shm"), work.as_path()];
        let mut kept = OpenedPaths::none();
        kept.prepare_except(&c, &unshared);
        let mut names: Vec<&Path> = kept.paths.keys().map(PathBuf::as_path).collect();
        names.sort();
        let mut expected = [Path::new("/dev/null"), Path::new("/usr"), tools.as_path()];
        expected.sort();
        assert_eq!(names, expected);
        // Replaced: forgotten at the next check, then opened anew.
        let before = kept.get(&tools).unwrap().id;
        std::fs::remove_dir(&tools).unwrap();
        std::fs::write(root.join("other"), "").unwrap();
        std::fs::create_dir(&tools).unwrap();
        kept.prepare_except(&c, &unshared);
        assert_eq!(
            kept.get(&tools).unwrap().id,
            before,
            "checked once a second"
        );
        kept.checked = None;
        kept.prepare_except(&c, &unshared);
        let after = kept.get(&tools).unwrap().id;
        assert_ne!(before, after);
        use std::os::unix::fs::MetadataExt as _;
        let now = std::fs::metadata(&tools).unwrap();
        assert_eq!(after, (now.dev(), now.ino()));
    }
}
