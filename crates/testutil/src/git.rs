//! Real `git`, hermetic: every command runs with `GIT_CONFIG_GLOBAL=/dev/null`
//! and `GIT_CONFIG_NOSYSTEM=1`, so the developer's config (hooks, signing,
//! `insteadOf`) never changes what a test sees.

use std::path::Path;
use std::process::{Command, Stdio};

use bridge_store::GitRemote;

/// Runs git hermetically; panics unless it succeeds. Returns stdout.
pub fn git(args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A new bare repository at `path`; returns its `file://` URL.
pub fn bare_repo(path: &Path) -> String {
    git(&["init", "--bare", "-q", path.to_str().unwrap()]);
    format!("file://{}", path.display())
}

/// A hermetic [`GitRemote`] for `url`, writing slot `slot`, with its
/// private repository at `cache`; no token.
pub fn remote(url: &str, slot: &str, cache: &Path) -> GitRemote {
    GitRemote::new(url.to_owned(), slot.to_owned(), cache.to_owned())
        .unwrap()
        .with_token(None, None)
        .with_git_env("GIT_CONFIG_GLOBAL", "/dev/null")
        .with_git_env("GIT_CONFIG_NOSYSTEM", "1")
}
