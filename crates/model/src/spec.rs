//! [`TaskSpec`]: the immutable description of one task, and its content hash.
//!
//! A task's id is the hash of everything that decides what it computes: the
//! command, its environment, the content of its inputs, the outputs it keeps,
//! its limits and placement, its dependencies and an optional nonce. The name
//! and the priority are left out: they are labels, so the same work submitted
//! under two names from two offline devices is still one task.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::SmallMap;
use crate::ids::TaskId;

/// How a task's command is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// `shell -c script`.
    Shell {
        /// The shell program, e.g. `sh` or `bash`.
        shell: String,
        /// The script passed to `-c`.
        script: String,
    },
    /// A program and its arguments, started directly without a shell.
    Argv(Vec<String>),
}

impl Command {
    /// The command as one line, for display.
    pub fn display(&self) -> String {
        match self {
            Command::Shell { script, .. } => script.clone(),
            Command::Argv(argv) => argv.join(" "),
        }
    }

    /// The command's first line, with ` …` when more lines follow: for the
    /// one-line places that show a command (issue 17, item 8: a `run: |`
    /// script was shown as one line full of `\u{a}`).
    pub fn summary(&self) -> String {
        first_line(&self.display())
    }
}

/// The first non-blank line of `text` (trimmed at the end), with ` …` when
/// other non-blank lines follow.
pub fn first_line(text: &str) -> String {
    let mut lines = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or_default();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first.to_owned()
    }
}

/// An input file materialised at `path` (relative, `/`-separated) in the
/// task's working folder: either a blob of the store, or a file the worker
/// downloads from `url` (for data sets too large to store).
///
/// Exactly one of `blob` and `url` is set; [`InputRef::source`] is the one
/// place that checks it. `blob` stays a plain string (empty for a URL input)
/// so that documents written before URL inputs existed read unchanged, and
/// `url` is left out of the JSON when absent, so their specs hash and
/// serialise as before.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputRef {
    /// Where the file appears in the working folder.
    pub path: String,
    /// The SHA-256 of its content (hex): what the task's identity hashes.
    pub sha256: String,
    /// The store file holding it; empty for a URL input. Not part of the
    /// identity: the same content stored by two devices may sit in two
    /// (encrypted) files.
    #[serde(default)]
    pub blob: String,
    /// Where the worker downloads it (`http` or `https`). Not part of the
    /// identity either: the content hash is, so the same data from a mirror
    /// is the same task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Where an input's content comes from, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSource<'a> {
    /// A blob of the store (its file name).
    Blob(&'a str),
    /// A URL to download, whose content must hash to the input's `sha256`
    /// (64 lowercase hex digits).
    Url(&'a str),
}

/// Why an [`InputRef`] is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Both or neither of `blob` and `url` are set.
    #[error("input `{path}` must name exactly one of a blob and a URL")]
    Source {
        /// The input's path.
        path: String,
    },
    /// The URL is not `http://` or `https://`.
    #[error("input `{path}`: `{url}` is not an http:// or https:// URL")]
    Url {
        /// The input's path.
        path: String,
        /// The URL given.
        url: String,
    },
    /// A URL input without a valid SHA-256 to check the download against.
    #[error("input `{path}` ({url}): `{sha256}` is not a SHA-256 (64 hex digits)")]
    Sha256 {
        /// The input's path.
        path: String,
        /// The URL given.
        url: String,
        /// The hash given.
        sha256: String,
    },
}

impl InputRef {
    /// An input stored in the store as `blob`.
    pub fn from_blob(path: String, sha256: String, blob: String) -> InputRef {
        InputRef {
            path,
            sha256,
            blob,
            url: None,
        }
    }

    /// An input downloaded from `url`; `sha256` is lowercased.
    pub fn from_url(path: String, sha256: String, url: String) -> InputRef {
        InputRef {
            path,
            sha256: sha256.to_ascii_lowercase(),
            blob: String::new(),
            url: Some(url),
        }
    }

    /// Where the content comes from: checks that exactly one of `blob` and
    /// `url` is set, and that a URL is http(s) with a well-formed SHA-256
    /// (a download is only ever trusted through its hash).
    pub fn source(&self) -> Result<InputSource<'_>, InputError> {
        match (self.blob.is_empty(), &self.url) {
            (false, None) => Ok(InputSource::Blob(&self.blob)),
            (true, Some(url)) => {
                if !is_http_url(url) {
                    return Err(InputError::Url {
                        path: self.path.clone(),
                        url: url.clone(),
                    });
                }
                if !is_sha256_hex(&self.sha256) {
                    return Err(InputError::Sha256 {
                        path: self.path.clone(),
                        url: url.clone(),
                        sha256: self.sha256.clone(),
                    });
                }
                Ok(InputSource::Url(url))
            }
            _ => Err(InputError::Source {
                path: self.path.clone(),
            }),
        }
    }
}

/// Whether `url` starts with `http://` or `https://` (any case) and names a
/// host.
pub fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return false;
    };
    // No whitespace and no control characters: a URL is shown in progress
    // bars and errors, and must not carry terminal escape codes (issue 12,
    // item 21).
    !rest.is_empty()
        && !rest.starts_with('/')
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `s` is 64 lowercase hex digits (a SHA-256 as bridge writes it).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Everything a worker needs to run one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// A name for people; not part of the task's identity.
    pub name: String,
    /// What to run.
    pub command: Command,
    /// Extra environment variables for the command.
    #[serde(default)]
    pub env: SmallMap<String, String>,
    /// Files materialised in the working folder before the command starts.
    #[serde(default)]
    pub inputs: Vec<InputRef>,
    /// Globs, relative to the working folder, of files kept after the run.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Wall-clock limit of one attempt, in seconds.
    pub timeout_s: u64,
    /// How many failed attempts may be retried.
    #[serde(default)]
    pub retries: u32,
    /// Labels a worker must have to run the task (all of them); empty: any.
    #[serde(default)]
    pub runs_on: Vec<String>,
    /// Higher runs first; not part of the task's identity.
    #[serde(default)]
    pub priority: i64,
    /// Tasks that must be done before this one may start.
    #[serde(default)]
    pub needs: Vec<TaskId>,
    /// Set by `--rerun` so that an identical task is run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Whether the task may use the network (issue 13). `false` is run only
    /// by a worker that can cut it off; skipped when `true` (the default),
    /// so that the ids of earlier tasks do not change.
    #[serde(default = "network_default", skip_serializing_if = "is_true")]
    pub network: bool,
    /// Paths outside its folder the task needs to read (absolute, or
    /// `~/...` for the worker's home): run only by a worker whose
    /// `[worker] allow-read` covers them all (issue 13).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_read: Vec<String>,
}

fn network_default() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The fields that make a task's identity, in a fixed order.
#[derive(Serialize)]
struct Identity<'a> {
    command: &'a Command,
    env: &'a SmallMap<String, String>,
    inputs: Vec<(&'a str, &'a str)>,
    outputs: &'a [String],
    timeout_s: u64,
    retries: u32,
    runs_on: Vec<&'a String>,
    needs: Vec<&'a TaskId>,
    nonce: &'a Option<String>,
    // Skipped at their defaults, so that earlier tasks keep their ids.
    #[serde(skip_serializing_if = "is_true")]
    network: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allow_read: Vec<&'a String>,
}

/// Domain separation for the task hash, so it can never equal another hash
/// bridge computes over the same bytes.
const TASK_HASH_DOMAIN: &[u8] = b"bridge-task-v1\0";

impl TaskSpec {
    /// The content-addressed id of this task.
    pub fn id(&self) -> TaskId {
        let mut hasher = Sha256::new();
        hasher.update(TASK_HASH_DOMAIN);
        hasher.update(self.identity_json());
        TaskId::from_digest(&hasher.finalize())
    }

    /// The JSON of the fields that make the task's identity.
    fn identity_json(&self) -> Vec<u8> {
        let mut inputs: Vec<_> = self
            .inputs
            .iter()
            .map(|i| (i.path.as_str(), i.sha256.as_str()))
            .collect();
        inputs.sort();
        let mut runs_on: Vec<_> = self.runs_on.iter().collect();
        runs_on.sort();
        runs_on.dedup();
        let mut needs: Vec<_> = self.needs.iter().collect();
        needs.sort();
        needs.dedup();
        let mut allow_read: Vec<_> = self.allow_read.iter().collect();
        allow_read.sort();
        allow_read.dedup();
        let identity = Identity {
            command: &self.command,
            env: &self.env,
            inputs,
            outputs: &self.outputs,
            timeout_s: self.timeout_s,
            retries: self.retries,
            runs_on,
            needs,
            nonce: &self.nonce,
            network: self.network,
            allow_read,
        };
        // Serialising plain structs, strings and maps to JSON cannot fail.
        serde_json::to_vec(&identity).unwrap_or_default()
    }

    /// Whether a worker with `labels` may run this task.
    pub fn runs_on_labels(&self, labels: &[String]) -> bool {
        self.runs_on.iter().all(|want| labels.contains(want))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_multi_line_script_is_summed_up_by_its_first_line() {
        let script = Command::Shell {
            shell: "bash".into(),
            script: "\nset -e\necho one\n".into(),
        };
        assert_eq!(script.summary(), "set -e …");
        assert_eq!(
            Command::Argv(vec!["echo".into(), "a".into()]).summary(),
            "echo a"
        );
        assert_eq!(first_line("one line\n"), "one line");
    }

    /// A spec running `script`, named after it (shared by the crate's tests).
    pub(crate) fn spec(script: &str) -> TaskSpec {
        TaskSpec {
            name: script.to_owned(),
            command: Command::Shell {
                shell: "sh".into(),
                script: script.into(),
            },
            env: SmallMap::new(),
            inputs: vec![],
            outputs: vec![],
            timeout_s: 60,
            retries: 0,
            runs_on: vec![],
            priority: 0,
            needs: vec![],
            nonce: None,
            network: true,
            allow_read: vec![],
        }
    }

    #[test]
    fn issue13_sandbox_fields_are_identity_but_defaults_keep_old_ids() {
        let a = spec("echo hi");
        // The id of this spec before issue 13 added the fields.
        let json = serde_json::to_string(&a).unwrap_or_default();
        assert!(
            !json.contains("network") && !json.contains("allow_read"),
            "{json}"
        );
        let mut b = a.clone();
        b.network = false;
        assert_ne!(a.id(), b.id());
        let mut c = a.clone();
        c.allow_read = vec!["/opt/x".into()];
        assert_ne!(a.id(), c.id());
        let back: TaskSpec = serde_json::from_str(&json).unwrap_or_else(|_| b.clone());
        assert!(back.network);
    }

    #[test]
    fn name_and_priority_are_not_identity() {
        let a = spec("echo hi");
        let mut b = a.clone();
        b.name = "other".into();
        b.priority = 9;
        assert_eq!(a.id(), b.id());
    }

    #[test]
    fn command_env_inputs_and_nonce_are_identity() {
        let a = spec("echo hi");
        let mut b = a.clone();
        b.env.insert("X".into(), "1".into());
        assert_ne!(a.id(), b.id());
        let mut c = a.clone();
        c.nonce = Some("n".into());
        assert_ne!(a.id(), c.id());
        let mut d = a.clone();
        d.inputs.push(InputRef::from_blob(
            "a.txt".into(),
            "00".into(),
            "11".into(),
        ));
        assert_ne!(a.id(), d.id());
    }

    const SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn url_and_blob_of_the_same_content_are_the_same_task() {
        let mut a = spec("wc -l data.csv");
        a.inputs.push(InputRef::from_url(
            "data.csv".into(),
            SHA.into(),
            "https://a.example/d.csv".into(),
        ));
        let mut b = a.clone();
        b.inputs[0].url = Some("http://mirror.example/x/d.csv".into());
        assert_eq!(a.id(), b.id(), "the URL is a location, not the identity");
        let mut c = spec("wc -l data.csv");
        c.inputs.push(InputRef::from_blob(
            "data.csv".into(),
            SHA.into(),
            "blobfile".into(),
        ));
        assert_eq!(a.id(), c.id());
        let mut d = a.clone();
        d.inputs[0].sha256 = SHA.replace('2', "3");
        assert_ne!(a.id(), d.id());
    }

    #[test]
    fn old_input_json_reads_and_writes_unchanged() -> Result<(), serde_json::Error> {
        let old = r#"{"path":"a.txt","sha256":"00","blob":"11"}"#;
        let i: InputRef = serde_json::from_str(old)?;
        assert_eq!(
            i,
            InputRef::from_blob("a.txt".into(), "00".into(), "11".into())
        );
        assert_eq!(serde_json::to_string(&i)?, old);
        let u = InputRef::from_url("d.csv".into(), SHA.into(), "https://h/d.csv".into());
        let json = serde_json::to_string(&u)?;
        assert!(json.contains(r#""blob":"""#) && json.contains(r#""url":"https://h/d.csv""#));
        let without_blob =
            format!(r#"{{"path":"d.csv","sha256":"{SHA}","url":"https://h/d.csv"}}"#);
        assert_eq!(serde_json::from_str::<InputRef>(&without_blob)?, u);
        Ok(())
    }

    #[test]
    fn source_wants_exactly_one_of_blob_and_url() {
        let blob = InputRef::from_blob("a".into(), "00".into(), "b1".into());
        assert_eq!(blob.source(), Ok(InputSource::Blob("b1")));
        let url = InputRef::from_url("a".into(), SHA.to_uppercase(), "HTTPS://h/a".into());
        assert_eq!(url.source(), Ok(InputSource::Url("HTTPS://h/a")));
        let mut both = url.clone();
        both.blob = "b1".into();
        assert!(matches!(both.source(), Err(InputError::Source { .. })));
        let mut neither = url.clone();
        neither.url = None;
        assert!(matches!(neither.source(), Err(InputError::Source { .. })));
        for bad in [
            "ftp://h/a",
            "file:///etc/passwd",
            "https://",
            "https:///x",
            "h/a",
            "http://h/a b",
            "https://h/\u{1b}[2J",
        ] {
            let i = InputRef::from_url("a".into(), SHA.into(), bad.into());
            assert!(matches!(i.source(), Err(InputError::Url { .. })), "{bad}");
        }
        let short = InputRef::from_url("a".into(), "abc".into(), "https://h/a".into());
        assert!(matches!(short.source(), Err(InputError::Sha256 { .. })));
    }

    #[test]
    fn order_of_sets_does_not_matter() {
        let mut a = spec("x");
        a.runs_on = vec!["linux".into(), "gpu".into()];
        let mut b = a.clone();
        b.runs_on.reverse();
        assert_eq!(a.id(), b.id());
    }
}
