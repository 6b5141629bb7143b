//! The cache on disk: one read-only file per content, named by its SHA-256.
//! A hit is hashed again before use (`verify_cached`); a download goes to
//! a `TempFile` beside the cache entries and is renamed into place only
//! once its hash matches; a cached file is copied, never linked, into a
//! task's working folder (`place`).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::fetcher::FetchError;

/// The error for a failed file operation of the cache.
pub(crate) fn cache_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Cache {
        action,
        path,
        source,
    }
}

/// Whether `path` holds content hashing to `sha256`; a file that does not
/// is removed (and will be downloaded again).
pub(crate) fn verify_cached(path: &Path, sha256: &str) -> Result<bool, FetchError> {
    // Not a regular file (a FIFO would block the read below, a link could
    // point anywhere): replaced by a fresh download.
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_file()
    {
        tracing::warn!(
            "the cached input {} is not a regular file: removed, downloading it again",
            path.display()
        );
        std::fs::remove_file(path).map_err(cache_err("remove the damaged", path))?;
        return Ok(false);
    }
    let actual = match sha256_file(path) {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(cache_err("read", path)(e)),
    };
    if actual == sha256 {
        return Ok(true);
    }
    tracing::warn!(
        "the cached input {} hashes to {actual}: removed, downloading it again",
        path.display()
    );
    std::fs::remove_file(path).map_err(cache_err("remove the damaged", path))?;
    Ok(false)
}

/// The SHA-256 of a file's content (hex), read in blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Copies `from` (in the cache) to `to` (in a task's folder). Never a hard
/// link: the task may write its folder, and through a link it would write
/// the cache every later task reads, or an input another task is using
/// (issue 13). `std::fs::copy` uses `copy_file_range`, which clones the
/// blocks on file systems that can.
pub(crate) fn place(from: &Path, to: &Path) -> Result<(), FetchError> {
    let err = |source| FetchError::Place {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    };
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    std::fs::copy(from, to).map(|_| ()).map_err(err)
}

/// A temporary file in the cache folder, removed when dropped unless
/// persisted.
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
    keep: bool,
}

impl TempFile {
    pub(crate) fn new(dir: &Path, sha256: &str) -> Result<TempFile, FetchError> {
        let mut r = [0u8; 6];
        getrandom::fill(&mut r).map_err(|e| FetchError::Cache {
            action: "name a temporary file in",
            path: dir.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let name = format!(".{sha256}.{}.{}.part", std::process::id(), hex::encode(r));
        Ok(TempFile {
            path: dir.join(name),
            keep: false,
        })
    }

    pub(crate) async fn persist(mut self, dest: &Path) -> Result<(), FetchError> {
        tokio::fs::rename(&self.path, dest)
            .await
            .map_err(cache_err("move into the cache", dest))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: a task that writes its input does not write the cache.
    #[test]
    fn issue13_a_placed_input_is_not_the_cached_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cached = dir.path().join("cache").join("abc");
        std::fs::create_dir_all(dir.path().join("cache")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&cached, "original").unwrap_or_else(|e| panic!("{e}"));
        let placed = dir.path().join("task").join("in.txt");
        place(&cached, &placed).unwrap_or_else(|e| panic!("{e}"));
        // Written in place, as a task would (not replaced by a new file).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&placed)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"poisoned"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::read_to_string(&placed).ok().as_deref(),
            Some("poisoned")
        );
        assert_eq!(
            std::fs::read_to_string(&cached).ok().as_deref(),
            Some("original")
        );
    }

    /// What the test server answers to the n-th request (from 0).

    #[test]
    fn a_cache_hit_is_hashed_again_and_a_bad_copy_removed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("entry");
        let good = hex::encode(Sha256::digest(b"data"));
        assert!(
            !verify_cached(&path, &good).unwrap_or_else(|e| panic!("{e}")),
            "absent"
        );
        std::fs::write(&path, b"data").unwrap_or_else(|e| panic!("{e}"));
        assert!(verify_cached(&path, &good).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(sha256_file(&path).ok(), Some(good.clone()));
        std::fs::write(&path, b"rotten").unwrap_or_else(|e| panic!("{e}"));
        assert!(!verify_cached(&path, &good).unwrap_or_else(|e| panic!("{e}")));
        assert!(!path.exists(), "a damaged entry is removed");
        // Not a regular file: removed too (a folder cannot be, so an error).
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            verify_cached(&path, &good),
            Err(FetchError::Cache {
                action: "remove the damaged",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_temp_file_is_removed_unless_persisted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sha = "ab".repeat(32);
        let dropped = TempFile::new(dir.path(), &sha).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&dropped.path, b"x").unwrap_or_else(|e| panic!("{e}"));
        let name = dropped
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        assert!(name.is_some_and(|n| n.starts_with(&format!(".{sha}.")) && n.ends_with(".part")));
        drop(dropped);
        assert_eq!(
            std::fs::read_dir(dir.path()).map(|d| d.count()).ok(),
            Some(0)
        );
        let kept = TempFile::new(dir.path(), &sha).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&kept.path, b"y").unwrap_or_else(|e| panic!("{e}"));
        let dest = dir.path().join(&sha);
        kept.persist(&dest).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&dest).ok().as_deref(), Some(&b"y"[..]));
        assert_eq!(
            std::fs::read_dir(dir.path()).map(|d| d.count()).ok(),
            Some(1)
        );
    }
}
