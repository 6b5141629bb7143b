//! git's failures, read from its stderr (git runs with `LC_ALL=C`): the
//! class that decides between retrying, going offline and giving up
//! ([`classify`]), and the words shown to the user ([`summarize`],
//! [`strip_progress`]). Pure functions, tested on real samples.

/// How a git command failed, read from its stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GitFailure {
    /// Network down, host unresolvable, connection refused or timed out.
    Unreachable,
    /// Credentials missing or refused (401, 403, SSH key).
    AuthRefused,
    /// The repository does not exist (or is hidden from us).
    NotFound,
    /// The one ref asked for does not exist.
    NoSuchRef,
    /// A lock file in the local cache is taken (a concurrent git process).
    Locked,
    /// No space left (on the host, or in the local cache repository).
    NoSpace,
    /// A dropped connection or a server error: worth retrying.
    Transient,
    /// Anything else.
    Other,
}

impl GitFailure {
    pub(super) fn is_retryable(self) -> bool {
        matches!(self, GitFailure::Locked | GitFailure::Transient)
    }
}

/// Classifies a failed git command from its stderr (git runs with
/// `LC_ALL=C`). Order matters: an SSH connection failure also says "Could
/// not read from remote repository", like a missing repository.
pub(crate) fn classify(stderr: &str) -> GitFailure {
    let s = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if any(&[
        ".lock': file exists",
        "cannot lock ref",
        "shallow file has changed since we read it",
        "unable to update local ref",
    ]) {
        return GitFailure::Locked;
    }
    if any(&[
        "could not resolve host",
        "could not resolve hostname",
        "could not resolve proxy",
        "temporary failure in name resolution",
        "name or service not known",
        "nodename nor servname",
        "connection refused",
        "couldn't connect to server",
        "failed to connect to",
        "unable to connect to",
        "network is unreachable",
        "no route to host",
        "connection timed out",
        "operation timed out",
        "resolving timed out",
        // git's http low-speed limit (set to the stall timeout): the host
        // took the connection and does not answer; retrying would multiply
        // the wait (issue 12, item 15).
        "operation too slow",
    ]) {
        return GitFailure::Unreachable;
    }
    if any(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "the requested url returned error: 401",
        "the requested url returned error: 403",
        "permission denied (publickey",
        "host key verification failed",
        "invalid username or",
        "permission to ",
    ]) {
        return GitFailure::AuthRefused;
    }
    if any(&[
        "does not appear to be a git repository",
        "repository not found",
        "the requested url returned error: 404",
        "access denied or repository not exported",
        "no such repository",
    ]) || (s.contains("repository '") && s.contains("' not found"))
    {
        return GitFailure::NotFound;
    }
    if any(&["no space left on device", "disk quota exceeded"]) {
        return GitFailure::NoSpace;
    }
    if s.contains("couldn't find remote ref") {
        return GitFailure::NoSuchRef;
    }
    if any(&[
        "the remote end hung up unexpectedly",
        "early eof",
        "rpc failed",
        "the requested url returned error: 5",
        "the requested url returned error: 429",
        "connection reset",
        "unexpected disconnect",
        "empty reply from server",
        "transfer closed",
        "gnutls_handshake",
        "ssl_read",
        "ssl_connect",
        "http/2 stream",
        "index-pack failed",
    ]) {
        return GitFailure::Transient;
    }
    GitFailure::Other
}

/// git's stderr without its progress reports (`--progress`): each line (or
/// carriage-return-separated update) that reports counting, compressing,
/// receiving, writing or resolving objects is dropped.
pub(crate) fn strip_progress(stderr: &[u8]) -> Vec<u8> {
    const PROGRESS: &[&str] = &[
        "enumerating objects",
        "counting objects",
        "compressing objects",
        "writing objects",
        "receiving objects",
        "resolving deltas",
        "unpacking objects",
        "total ",
        "delta compression",
        "checking connectivity",
        "finding sources",
        "checking objects",
    ];
    let text = String::from_utf8_lossy(stderr);
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        let kept: Vec<&str> = line
            .split('\r')
            .filter(|part| {
                let lower = part.trim_start().to_ascii_lowercase();
                let lower = lower
                    .strip_prefix("remote: ")
                    .unwrap_or(&lower)
                    .trim_start();
                !part.trim().is_empty() && !PROGRESS.iter().any(|p| lower.starts_with(p))
            })
            .collect();
        if !kept.is_empty() {
            out.push_str(&kept.join(" "));
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// The useful lines of git's stderr on one line: without the generic
/// "Could not read from remote repository" advice, at most 500 characters.
pub(crate) fn summarize(stderr: &str) -> String {
    const NOISE: &[&str] = &[
        "could not read from remote repository",
        "please make sure you have the correct access rights",
        "and the repository exists",
        "another git process seems to be running",
    ];
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            !NOISE.iter().any(|n| lower.contains(n))
        })
        .map(|l| {
            ["fatal: ", "error: ", "remote: "]
                .iter()
                .find_map(|p| l.strip_prefix(p))
                .unwrap_or(l)
                .trim()
        })
        .collect();
    let mut out = if lines.is_empty() {
        stderr.trim().to_owned()
    } else {
        lines.join("; ")
    };
    if out.is_empty() {
        out = "no message".to_owned();
    }
    if out.len() > 500 {
        let mut end = 500;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

/// True if a porcelain rejection means the branch moved under us (retry
/// on the new tip) rather than a refusal retrying cannot fix.
pub(crate) fn is_stale_rejection(summary: &str) -> bool {
    [
        "stale info",
        "fetch first",
        "non-fast-forward",
        "cannot lock ref",
        "failed to update ref",
        "incorrect old value",
        "already exists",
    ]
    .iter()
    .any(|n| summary.contains(n))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // Real stderr of git 2.47.3 (LC_ALL=C, GIT_TERMINAL_PROMPT=0), captured
    // by fetching from bad URLs on this machine.
    const MISSING_PATH: &str = "fatal: '/nonexistent/repo.git' does not appear to be a git repository\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
    const REFUSED_GIT: &str = "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused\n\n";
    const UNRESOLVED_HTTPS: &str = "fatal: unable to access 'https://nonexistent.invalid/x.git/': Could not resolve host: nonexistent.invalid\n";
    const REFUSED_HTTP: &str = "fatal: unable to access 'http://127.0.0.1:1/x.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server\n";
    const UNRESOLVED_SSH: &str = "ssh: Could not resolve hostname nonexistent.invalid: Name or service not known\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
    const REFUSED_SSH: &str = "ssh: connect to host 127.0.0.1 port 1: Connection refused\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
    const HTTP_401: &str =
        "fatal: could not read Username for 'http://127.0.0.1:18931': terminal prompts disabled\n";
    const HTTP_403: &str = "fatal: unable to access 'http://127.0.0.1:18931/403/x.git/': The requested URL returned error: 403\n";
    const HTTP_404: &str = "fatal: repository 'http://127.0.0.1:18931/404/x.git/' not found\n";
    const HTTP_500: &str = "fatal: unable to access 'http://127.0.0.1:18931/500/x.git/': The requested URL returned error: 500\n";
    const DAEMON_MISSING: &str =
        "fatal: remote error: access denied or repository not exported: /nope.git\n";
    const NO_SUCH_REF: &str = "fatal: couldn't find remote ref refs/heads/bridge/a\n";
    const SHALLOW_LOCK: &str = "fatal: Unable to create '/tmp/gs/cc.git/shallow.lock': File exists.\n\nAnother git process seems to be running in this repository, e.g.\nan editor opened by 'git commit'. Please make sure all processes\nare terminated then try again. If it still fails, a git process\nmay have crashed in this repository earlier:\nremove the file manually to continue.\n";
    const SHALLOW_CHANGED: &str = "fatal: shallow file has changed since we read it\n";
    const REF_LOCK: &str = "error: cannot lock ref 'refs/remotes/bridge/s1': is at eb4bbe131478b68e99ece1e4bc501401b173b040 but expected 431c2849b2ad661bab0972e0f11f3877210dfa81\nFrom /tmp/gs/q\n ! 431c284...eb4bbe1 bridge/s1  -> bridge/s1  (unable to update local ref)\n";
    // Known messages from hosts we cannot reach here (GitHub).
    const GITHUB_AUTH_FAILED: &str = "remote: Invalid username or token. Password authentication is not supported for Git operations.\nfatal: Authentication failed for 'https://github.com/o/r.git/'\n";
    const GITHUB_PUSH_DENIED: &str = "remote: Permission to o/r.git denied to github-actions[bot].\nfatal: unable to access 'https://github.com/o/r.git/': The requested URL returned error: 403\n";
    const GITHUB_NOT_FOUND: &str = "remote: Repository not found.\nfatal: repository 'https://github.com/o/r.git/' not found\n";
    const GITHUB_SSH_KEY: &str = "git@github.com: Permission denied (publickey).\r\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
    const HUNG_UP: &str = "error: RPC failed; curl 92 HTTP/2 stream 5 was not closed cleanly: CANCEL (err 8)\nerror: 4 bytes of body are still expected\nfetch-pack: unexpected disconnect while reading sideband packet\nfatal: early EOF\nfatal: fetch-pack: invalid index-pack output\n";

    #[test]
    fn classify_real_git_stderr() {
        use GitFailure::*;
        let cases = [
            (MISSING_PATH, NotFound),
            (REFUSED_GIT, Unreachable),
            (UNRESOLVED_HTTPS, Unreachable),
            (REFUSED_HTTP, Unreachable),
            (UNRESOLVED_SSH, Unreachable),
            (REFUSED_SSH, Unreachable),
            (HTTP_401, AuthRefused),
            (HTTP_403, AuthRefused),
            (HTTP_404, NotFound),
            (HTTP_500, Transient),
            (DAEMON_MISSING, NotFound),
            (NO_SUCH_REF, NoSuchRef),
            (SHALLOW_LOCK, Locked),
            (SHALLOW_CHANGED, Locked),
            (REF_LOCK, Locked),
            (GITHUB_AUTH_FAILED, AuthRefused),
            (GITHUB_PUSH_DENIED, AuthRefused),
            (GITHUB_NOT_FOUND, NotFound),
            (GITHUB_SSH_KEY, AuthRefused),
            (HUNG_UP, Transient),
            ("fatal: something else entirely\n", Other),
            ("", Other),
        ];
        for (stderr, expected) in cases {
            assert_eq!(classify(stderr), expected, "{stderr}");
        }
    }

    #[test]
    fn a_full_disk_is_told_apart() {
        assert_eq!(
            classify(
                "remote: error: unable to write file objects/ab/cd: No space left on device\nerror: remote unpack failed: unable to create temporary object directory"
            ),
            GitFailure::NoSpace
        );
    }

    #[test]
    fn progress_lines_are_not_messages() {
        let stderr = b"remote: Enumerating objects: 3, done.\nremote: Counting objects:  33% (1/3)\rremote: Counting objects: 100% (3/3), done.\nReceiving objects: 100% (3/3), done.\nfatal: unable to access 'http://x/': Failed to connect\n";
        let out = String::from_utf8(strip_progress(stderr)).unwrap();
        assert_eq!(
            out,
            "fatal: unable to access 'http://x/': Failed to connect\n"
        );
        assert_eq!(
            classify(
                "error: RPC failed; curl 28 Operation too slow. Less than 1000 bytes/sec transferred the last 2 seconds"
            ),
            GitFailure::Unreachable
        );
    }

    #[test]
    fn summaries_drop_the_generic_advice() {
        assert_eq!(
            summarize(MISSING_PATH),
            "'/nonexistent/repo.git' does not appear to be a git repository"
        );
        assert_eq!(
            summarize(UNRESOLVED_SSH),
            "ssh: Could not resolve hostname nonexistent.invalid: Name or service not known"
        );
        assert_eq!(summarize(""), "no message");
        assert!(summarize(&"x".repeat(2000)).chars().count() <= 501);
    }
}
