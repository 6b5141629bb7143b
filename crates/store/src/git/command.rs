//! Running git: the one place a git command is built (a controlled
//! environment, the token's header in `GIT_CONFIG_*` variables, never in
//! argv), run (stdin fed from a thread, network commands under a stall
//! watchdog) and its failure turned into a [`RemoteError`].

use std::io::{self, Write as _};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::GitRemote;
use super::classify::{GitFailure, classify, strip_progress, summarize};
use super::url::redact_url;
use crate::remote::{Remote as _, RemoteError};

/// Committer and author of every commit this remote writes.
pub(super) const IDENT_NAME: &str = "bridge";
/// See [`IDENT_NAME`].
pub(super) const IDENT_EMAIL: &str = "bridge@localhost";
/// Variables of the caller's environment that would point git at another
/// repository, index or object store; removed from every command.
const HOSTILE_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_SHALLOW_FILE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
];
/// How often the stall watchdog looks at a running network command.
const WATCHDOG_TICK: Duration = Duration::from_millis(50);

impl GitRemote {
    /// Builds a git command: the only place one is made. `git --git-dir
    /// <cache> <args>`, run in the cache folder, stdin null unless `feed`,
    /// stdout and stderr piped, a controlled environment.
    pub(super) fn command(&self, args: &[&str], index: Option<&Path>, feed: bool) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir")
            .arg(&self.git_dir)
            .args(args)
            .current_dir(&self.git_dir)
            .stdin(if feed { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in HOSTILE_ENV {
            cmd.env_remove(key);
        }
        // The user's config stays (credential helpers, insteadOf, SSH).
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env("GIT_AUTHOR_NAME", IDENT_NAME)
            .env("GIT_AUTHOR_EMAIL", IDENT_EMAIL)
            .env("GIT_COMMITTER_NAME", IDENT_NAME)
            .env("GIT_COMMITTER_EMAIL", IDENT_EMAIL);
        // Abort an HTTP transfer that crawls (< 1 KB/s) rather than hang;
        // the user's own limit wins. The watchdog in `run` stops a silent
        // host first, on every transport; this is the backstop for a
        // transfer that trickles (progress lines but no real data), a few
        // seconds later so that the two do not race.
        if std::env::var_os("GIT_HTTP_LOW_SPEED_LIMIT").is_none() {
            cmd.env("GIT_HTTP_LOW_SPEED_LIMIT", "1000").env(
                "GIT_HTTP_LOW_SPEED_TIME",
                (self.stall_timeout.as_secs().max(1) + 5).to_string(),
            );
        }

        if let Some(index) = index {
            cmd.env("GIT_INDEX_FILE", index);
        }
        for (key, value) in &self.config_env {
            cmd.env(key, value);
        }
        for (key, value) in &self.extra_env {
            cmd.env(key, value);
        }
        cmd
    }

    /// The command line as logged and shown in errors: no environment, the
    /// URL without credentials.
    pub(super) fn show_command(&self, args: &[&str]) -> String {
        let mut out = String::from("git");
        for arg in args {
            out.push(' ');
            if *arg == self.url {
                out.push_str(&redact_url(arg));
            } else {
                out.push_str(arg);
            }
        }
        out
    }

    /// Runs a git command to completion, feeding `stdin` from another thread
    /// while stdout and stderr are read (a full pipe would deadlock).
    pub(super) fn run(
        &self,
        args: &[&str],
        index: Option<&Path>,
        stdin: Option<&[u8]>,
    ) -> Result<Output, RemoteError> {
        let network = is_network_command(args);
        let mut cmd = self.command(args, index, stdin.is_some());
        let env_keys: Vec<String> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        tracing::debug!(
            git_dir = %self.git_dir.display(),
            command = %self.show_command(args),
            env = ?env_keys,
            "running git"
        );
        let mut child = cmd.spawn().map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound && self.git_dir.is_dir() {
                RemoteError::GitMissing {
                    remote: self.describe(),
                    source,
                }
            } else {
                self.git_io(args, source)
            }
        })?;
        if network && stdin.is_none() {
            return self.wait_watched(args, child);
        }
        let pipe = child.stdin.take();
        let (output, written) = std::thread::scope(|scope| {
            let writer = match (stdin, pipe) {
                (Some(data), Some(mut pipe)) => Some(scope.spawn(move || pipe.write_all(data))),
                _ => None,
            };
            let output = child.wait_with_output();
            let written = match writer {
                Some(writer) => writer
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("the stdin writer panicked"))),
                None => Ok(()),
            };
            (output, written)
        });
        let output = output.map_err(|source| self.git_io(args, source))?;
        match written {
            // A command that failed early stops reading: its status says why.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe && !output.status.success() => {}
            Err(e) => return Err(self.git_io(args, e)),
            Ok(()) => {}
        }
        Ok(output)
    }

    /// Waits for a network command, reading its output, and kills its
    /// process group when no byte arrived on stdout or stderr for the stall
    /// timeout (network commands run with `--progress`, so a transfer that
    /// moves reports it). Progress lines are dropped from the stderr it
    /// returns, so classification and messages see only git's words.
    pub(super) fn wait_watched(
        &self,
        args: &[&str],
        mut child: Child,
    ) -> Result<Output, RemoteError> {
        let activity = Arc::new(Mutex::new(Instant::now()));
        // Owned threads, not scoped: after a stall they are left to end
        // when the last holder of the pipes (a helper such as
        // git-remote-http, which outlives git briefly) goes.
        let read = |pipe: Option<Box<dyn io::Read + Send>>| {
            let activity = Arc::clone(&activity);
            std::thread::spawn(move || -> io::Result<Vec<u8>> {
                let mut out = Vec::new();
                let Some(mut pipe) = pipe else {
                    return Ok(out);
                };
                let mut buf = [0u8; 8192];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => return Ok(out),
                        Ok(n) => {
                            *activity.lock().unwrap_or_else(PoisonError::into_inner) =
                                Instant::now();
                            out.extend_from_slice(&buf[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            })
        };
        let out = read(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
        );
        let err = read(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
        );
        let idle = || {
            activity
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed()
        };
        let mut stalled = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if idle() > self.stall_timeout {
                stalled = true;
                // git and its helpers (ssh, git-remote-http), which would
                // otherwise keep git's output pipes, and so our reader
                // threads, open. git stays in our process group, so that a
                // Ctrl-C at the terminal still reaches it.
                kill_children_of(child.id());
                let _ = child.kill();
                let _ = child.wait();
                break Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            std::thread::sleep(WATCHDOG_TICK);
        };
        let join = |h: std::thread::JoinHandle<io::Result<Vec<u8>>>| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("an output reader panicked")))
        };
        if stalled {
            tracing::debug!(
                remote = self.describe(),
                command = %self.show_command(args),
                "no progress for the stall timeout; killed"
            );
            return Err(RemoteError::Unreachable {
                remote: self.describe(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer for {} s (the stall timeout) from `{}`",
                        self.stall_timeout.as_secs(),
                        self.show_command(&args[..1])
                    ),
                ),
            });
        }
        let status = status.map_err(|source| self.git_io(args, source))?;
        let stdout = join(out).map_err(|source| self.git_io(args, source))?;
        let stderr = join(err).map_err(|source| self.git_io(args, source))?;
        Ok(Output {
            status,
            stdout,
            stderr: strip_progress(&stderr),
        })
    }

    /// Runs a local git command that must succeed; returns its stdout.
    pub(super) fn ok(
        &self,
        args: &[&str],
        index: Option<&Path>,
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, RemoteError> {
        let output = self.run(args, index, stdin)?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            let class = classify(&String::from_utf8_lossy(&output.stderr));
            Err(self.failure(args, &output, class))
        }
    }

    pub(super) fn git_io(&self, args: &[&str], source: io::Error) -> RemoteError {
        RemoteError::GitIo {
            remote: self.describe(),
            command: self.show_command(args),
            source,
        }
    }

    /// The error for a failed command, by class.
    pub(super) fn failure(&self, args: &[&str], output: &Output, class: GitFailure) -> RemoteError {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // git echoes the URL: never show credentials a user put in it.
        let detail = summarize(&stderr).replace(&self.url, &redact_url(&self.url));
        let remote = self.describe();
        match class {
            // A network that stays flaky after the retries: go offline.
            GitFailure::Unreachable | GitFailure::Transient => RemoteError::Unreachable {
                remote,
                source: io::Error::other(detail),
            },
            GitFailure::AuthRefused => RemoteError::AuthRefused { remote, detail },
            // Not retried: it stays full until someone frees space.
            GitFailure::NoSpace => RemoteError::Full {
                remote,
                name: self.show_command(&args[..args.len().min(1)]),
                source: io::Error::other(detail),
            },
            GitFailure::NotFound => RemoteError::RepoNotFound { remote, detail },
            GitFailure::NoSuchRef | GitFailure::Locked | GitFailure::Other => RemoteError::Git {
                remote,
                command: self.show_command(args),
                status: output.status.to_string(),
                detail,
            },
        }
    }

    pub(super) fn io_error(&self, path: &Path, source: io::Error) -> RemoteError {
        RemoteError::Io {
            remote: self.describe(),
            name: path.display().to_string(),
            source,
        }
    }

    pub(super) fn bad_output(&self, args: &[&str], detail: String) -> RemoteError {
        RemoteError::Git {
            remote: self.describe(),
            command: self.show_command(args),
            status: "unexpected output".to_owned(),
            detail,
        }
    }
}

/// Whether `args` make git talk to the remote (and so may hang on it).
pub(super) fn is_network_command(args: &[&str]) -> bool {
    matches!(
        args.first(),
        Some(&("fetch" | "push" | "ls-remote" | "clone"))
    )
}

/// Kills the direct children of `pid` (on Linux, from
/// `/proc/PID/task/PID/children`; elsewhere nothing: they end when their
/// pipes close).
pub(super) fn kill_children_of(pid: u32) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return;
    };
    for child in text
        .split_ascii_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use base64::Engine as _;

    use super::*;

    #[test]
    fn the_token_never_reaches_argv_or_the_log_line() {
        let token = "ghs_SECRETSECRET";
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        let remote = GitRemote::new(
            "https://github.com/o/r.git".into(),
            "a".into(),
            PathBuf::from("/cache"),
        )
        .unwrap()
        .with_token(Some(token), None);
        let args = [
            "fetch",
            remote.url(),
            "+refs/bridge/*:refs/remotes/bridge/*",
        ];
        let cmd = remote.command(&args, None, false);
        for arg in cmd.get_args() {
            let arg = arg.to_string_lossy();
            assert!(!arg.contains(token) && !arg.contains(&encoded), "{arg}");
        }
        let shown = remote.show_command(&args);
        assert!(
            !shown.contains(token) && !shown.contains(&encoded),
            "{shown}"
        );
        assert!(!format!("{remote:?}").contains(&encoded));
        let envs: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| {
                Some((
                    k.to_string_lossy().into_owned(),
                    v?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        assert!(
            envs.iter()
                .any(|(k, v)| k.starts_with("GIT_CONFIG_VALUE_") && v.contains(&encoded))
        );
        assert!(envs.contains(&("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned())));
        assert!(envs.contains(&("LC_ALL".to_owned(), "C".to_owned())));
        // The caller's GIT_DIR or GIT_INDEX_FILE never leak in.
        let removed: Vec<String> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(removed.contains(&"GIT_DIR".to_owned()));
        assert!(removed.contains(&"GIT_INDEX_FILE".to_owned()));
        // A URL with credentials in it is shown redacted.
        let remote = GitRemote::new(
            "https://u:pw@example.com/r.git".into(),
            "a".into(),
            PathBuf::from("/cache"),
        )
        .unwrap();
        assert_eq!(remote.describe(), "git:https://***@example.com/r.git");
        assert!(!remote.show_command(&["push", remote.url()]).contains("pw"));
    }
}
