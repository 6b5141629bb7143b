//! Task files: the YAML a user submits, parsed and expanded into
//! [`PlannedTask`]s (matrix expanded, names checked, `needs` resolved and
//! checked for cycles, input files found on disk, URL inputs checked).
//! Turning a plan into task specs (which needs the blob store) is `submit`'s
//! job.
//!
//! ```yaml
//! audience: [alice-laptop, home-server]   # optional: a private batch (or [devices])
//! defaults:              # optional, for every task below
//!   timeout: 10m         # "90s", "1h 30m", or a number of seconds
//!   retries: 1
//!   shell: bash          # `run` strings go to `<shell> -c`; default sh
//!   env: { LANG: C.UTF-8 }
//!   runs-on: [linux]
//! tasks:
//!   - name: count ${{ matrix.book }}
//!     matrix: { book: [alice.txt, moby.txt] }
//!     run: wc -w < books/${{ matrix.book }} > count.txt
//!     inputs: [books/${{ matrix.book }}]     # files or globs, relative to this file
//!     outputs: [count.txt]                   # globs in the task's working folder
//!   - name: big
//!     run: wc -l data/big.csv
//!     inputs:                                # or a download, checked by its hash
//!       - url: https://example.org/big.csv
//!         sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//!         path: data/big.csv                 # optional: default the URL's last segment
//!   - name: total
//!     needs: [count ${{ matrix.book }}]      # an entry's name: every task it expands to
//!     run: [echo, done]                      # a list: the program and its arguments, no shell
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bridge_model::Command;
use bridge_model::limits::shown;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// Where in a task file: the file (as given), and the line and column when
/// known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the user named it.
    pub origin: String,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
}

impl Location {
    fn file(origin: &str) -> Location {
        Location {
            origin: origin.to_owned(),
            position: None,
        }
    }

    fn at(origin: &str, line: usize, column: usize) -> Location {
        Location {
            origin: origin.to_owned(),
            position: Some((line, column)),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}", self.origin),
            None => write!(f, "{}", self.origin),
        }
    }
}

/// Why a task file cannot be read or expanded.
#[derive(Debug, thiserror::Error)]
pub enum TaskFileError {
    /// The file is larger than [`MAX_TASK_FILE_BYTES`].
    #[error("the task file {} is larger than {} MiB; split it into several files", path.display(), MAX_TASK_FILE_BYTES >> 20)]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file cannot be read.
    #[error("cannot read the task file {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a cause).
        reason: std::io::Error,
    },
    /// Something in the file is wrong.
    #[error("{at}: {}{message}", task.as_deref().map(|t| format!("task `{t}`: ")).unwrap_or_default())]
    Invalid {
        /// Where.
        at: Location,
        /// The task it is about, when one is.
        task: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl TaskFileError {
    fn invalid(at: Location, message: impl Into<String>) -> TaskFileError {
        TaskFileError::Invalid {
            at,
            task: None,
            message: message.into(),
        }
    }
}

/// The default per-attempt timeout.
pub const DEFAULT_TIMEOUT_S: u64 = 3600;

/// The most tasks one submission may hold (a task file after its matrices
/// are expanded, or `--each`). The expansion is counted before it is made
/// (issue 12, item 11: ten keys of ten values asked for 10^10 tasks and
/// took 23.8 GB before the OOM killer stopped it). 100,000 tasks is a
/// hundred documents of `MAX_TASKS_PER_DOC`; more is better split in
/// several submissions.
pub const MAX_TASKS_PER_SUBMIT: usize = 100_000;

/// The largest task file read, in bytes (64 MiB).
pub const MAX_TASK_FILE_BYTES: u64 = 64 << 20;

/// One task ready to be turned into a spec.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    /// The name after matrix expansion.
    pub name: String,
    /// The command.
    pub command: Command,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Input files: (path in the working folder, file on disk).
    pub inputs: Vec<(String, PathBuf)>,
    /// Inputs the worker downloads (sorted by path, paths distinct from
    /// each other and from `inputs`).
    pub url_inputs: Vec<UrlInput>,
    /// Output globs.
    pub outputs: Vec<String>,
    /// Timeout in seconds.
    pub timeout_s: u64,
    /// Retries.
    pub retries: u32,
    /// Required worker labels.
    pub runs_on: Vec<String>,
    /// Priority.
    pub priority: i64,
    /// Indices (into the plan) of the tasks this one needs; always earlier.
    pub needs: Vec<usize>,
    /// Whether the task may use the network (`network: false` in a task
    /// file; issue 13).
    pub network: bool,
    /// Paths outside its folder the task reads (`allow-read:`).
    pub allow_read: Vec<String>,
}

/// An input the worker downloads, checked by its content hash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UrlInput {
    /// Where the file appears in the working folder (a safe relative path).
    pub path: String,
    /// An http(s) URL.
    pub url: String,
    /// The SHA-256 of its content (64 lowercase hex digits).
    pub sha256: String,
}

/// Why a URL input is refused: by itself ([`url_input`]) or beside the
/// task's other inputs ([`check_url_inputs`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlInputError {
    /// Not an http(s) URL.
    #[error("input URL `{url}` is not an http:// or https:// URL")]
    NotHttp {
        /// The URL as given (trimmed).
        url: String,
    },
    /// The hash is not 64 hex digits.
    #[error(
        "input {url}: sha256 `{sha256}` is not a SHA-256 (64 hex digits; `sha256sum FILE` prints it)"
    )]
    BadSha256 {
        /// The URL.
        url: String,
        /// The hash as given (trimmed, lowercase).
        sha256: String,
    },
    /// No `path` and no file name at the end of the URL to take it from.
    #[error("input {url}: the URL does not end in a file name; give a `path`")]
    NoFileName {
        /// The URL.
        url: String,
    },
    /// The path would leave the task's folder.
    #[error("input {url}: {path}")]
    BadPath {
        /// The URL.
        url: String,
        /// What is wrong with its path.
        path: UnsafePath,
    },
    /// Two URL inputs (with different content) at one path.
    #[error("two URL inputs are placed at `{path}` ({first} and {second})")]
    SamePath {
        /// The path.
        path: String,
        /// One URL.
        first: String,
        /// The other.
        second: String,
    },
    /// A URL input and an input file at one path.
    #[error("the URL input {url} and an input file are both placed at `{path}`")]
    FileThere {
        /// The URL.
        url: String,
        /// The path.
        path: String,
    },
}

/// A path that is not a relative path inside the task's folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "path `{path}` must be a relative path inside the task's folder (no absolute paths, no `..`)"
)]
pub struct UnsafePath {
    /// The path as given.
    pub path: String,
}

/// Checks a URL input: an http(s) URL, a SHA-256 (any case), and a safe
/// relative path, by default the URL's last path segment.
pub fn url_input(url: &str, sha256: &str, path: Option<&str>) -> Result<UrlInput, UrlInputError> {
    let url = url.trim();
    if !bridge_model::spec::is_http_url(url) {
        return Err(UrlInputError::NotHttp {
            url: url.to_owned(),
        });
    }
    let sha256 = sha256.trim().to_ascii_lowercase();
    if !bridge_model::spec::is_sha256_hex(&sha256) {
        return Err(UrlInputError::BadSha256 {
            url: url.to_owned(),
            sha256,
        });
    }
    let path = match path {
        Some(p) => p.to_owned(),
        None => last_segment(url).ok_or_else(|| UrlInputError::NoFileName {
            url: url.to_owned(),
        })?,
    };
    let path = safe_relative(&path).map_err(|path| UrlInputError::BadPath {
        url: url.to_owned(),
        path,
    })?;
    Ok(UrlInput {
        path,
        url: url.to_owned(),
        sha256,
    })
}

/// The last segment of a URL's path (no query, no fragment), if any.
fn last_segment(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (_, path) = rest.split_once('/')?;
    path.rsplit('/')
        .next()
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .map(str::to_owned)
}

/// `p` normalised (`./` dropped) if it is a relative path that stays inside
/// the working folder.
fn safe_relative(p: &str) -> Result<String, UnsafePath> {
    let n = normalise(p);
    let bad = n.is_empty()
        || n.starts_with('/')
        || n.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(UnsafePath { path: p.to_owned() });
    }
    Ok(n)
}

/// Sorts URL inputs, drops exact repeats, and refuses two inputs at one
/// path (two URL inputs, or a URL input and a file).
pub fn check_url_inputs(
    files: &[(String, PathBuf)],
    urls: &mut Vec<UrlInput>,
) -> Result<(), UrlInputError> {
    urls.sort();
    // The same content at the same path from two mirrors is one input.
    urls.dedup_by(|b, a| a.path == b.path && a.sha256 == b.sha256);
    for pair in urls.windows(2) {
        if pair[0].path == pair[1].path {
            return Err(UrlInputError::SamePath {
                path: pair[0].path.clone(),
                first: pair[0].url.clone(),
                second: pair[1].url.clone(),
            });
        }
    }
    for u in urls.iter() {
        if files.iter().any(|(p, _)| *p == u.path) {
            return Err(UrlInputError::FileThere {
                url: u.url.clone(),
                path: u.path.clone(),
            });
        }
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Defaults {
    timeout: Option<DurationValue>,
    retries: Option<u32>,
    shell: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    runs_on: Option<Vec<String>>,
    priority: Option<i64>,
    network: Option<bool>,
    allow_read: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Who may read the batch (issue 13): member names, or `devices`.
    #[serde(default)]
    audience: Vec<String>,
    #[serde(default)]
    defaults: Defaults,
    tasks: Vec<Spanned<Entry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Entry {
    name: String,
    run: Run,
    shell: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    inputs: Vec<Spanned<InputEntry>>,
    #[serde(default)]
    outputs: Vec<String>,
    timeout: Option<DurationValue>,
    retries: Option<u32>,
    runs_on: Option<Vec<String>>,
    priority: Option<i64>,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    matrix: BTreeMap<String, Vec<Scalar>>,
    network: Option<bool>,
    allow_read: Option<Vec<String>>,
}

/// One entry of `inputs`: a file or glob, or a download.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum InputEntry {
    Pattern(String),
    Url(UrlEntry),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlEntry {
    url: String,
    sha256: String,
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Run {
    Script(Scalar),
    Argv(Vec<Scalar>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

/// A `timeout` that is not a duration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{text}` is not a duration ({reason}); write e.g. \"90s\", \"10m\" or \"1h\"")]
pub struct BadDuration {
    /// The text as written.
    pub text: String,
    /// What the parser said (in the message, not a cause).
    pub reason: humantime::DurationError,
}

fn duration_s(v: &DurationValue) -> Result<u64, BadDuration> {
    match v {
        DurationValue::Seconds(s) => Ok(*s),
        DurationValue::Text(t) => humantime::parse_duration(t)
            .map(|d| d.as_secs().max(1))
            .map_err(|reason| BadDuration {
                text: t.clone(),
                reason,
            }),
    }
}

/// Reads and expands a task file.
///
/// Only a regular file of at most [`MAX_TASK_FILE_BYTES`] is read: a FIFO
/// would hang `submit` and a huge file would be read whole into memory (the
/// same class as issue 12, items 11 and 17).
/// Returns the tasks and the file's `audience:` (empty when it has none).
pub fn load_with_audience(path: &Path) -> Result<(Vec<PlannedTask>, Vec<String>), TaskFileError> {
    let text = crate::files::read_text(path, MAX_TASK_FILE_BYTES).map_err(|e| match e.kind() {
        std::io::ErrorKind::FileTooLarge => TaskFileError::TooLarge {
            path: path.to_path_buf(),
        },
        _ => TaskFileError::Read {
            path: path.to_path_buf(),
            reason: e,
        },
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parse_with_audience(&text, &path.display().to_string(), base)
}

/// Parses task-file text; `origin` names it in errors and `base` is the
/// folder input paths are relative to.
#[cfg(test)]
pub fn parse_str(text: &str, origin: &str, base: &Path) -> Result<Vec<PlannedTask>, TaskFileError> {
    parse_with_audience(text, origin, base).map(|(tasks, _)| tasks)
}

/// Parses task-file text (`origin` names it in errors, `base` is the folder
/// input paths are relative to), with the file's `audience:`.
pub fn parse_with_audience(
    text: &str,
    origin: &str,
    base: &Path,
) -> Result<(Vec<PlannedTask>, Vec<String>), TaskFileError> {
    let file: File = serde_saphyr::from_str(text).map_err(|e| {
        let at = e.location().map_or_else(
            || Location::file(origin),
            |l| Location::at(origin, l.line() as usize, l.column() as usize),
        );
        TaskFileError::invalid(at, yaml_message(&e.to_string()))
    })?;
    if file.tasks.is_empty() {
        return Err(TaskFileError::invalid(
            Location::file(origin),
            "`tasks` is empty: there is nothing to submit",
        ));
    }
    Ok((expand(&file, origin, base)?, file.audience.clone()))
}

/// The first line of a YAML error, without the location that `{at}` already
/// gives, and in words a user knows.
fn yaml_message(s: &str) -> String {
    let m = yaml_first_line(s);
    if m.contains("untagged enum Run") {
        return "`run` must be a string (a shell script) or a list of strings (a program and its arguments)".into();
    }
    if m.contains("untagged enum DurationValue") {
        return "a timeout must be a duration like \"90s\" or \"10m\", or a number of seconds"
            .into();
    }
    if m.contains("untagged enum InputEntry") {
        return "an input must be a file or glob (a string), or a map `{url, sha256, path}` (path optional)".into();
    }
    if m.contains("untagged enum Scalar") {
        return "matrix values must be strings, numbers or booleans".into();
    }
    m.to_owned()
}

fn yaml_first_line(s: &str) -> &str {
    let mut m = s.lines().next().unwrap_or(s);
    m = m.strip_prefix("error: ").unwrap_or(m);
    if let Some(rest) = m.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
    {
        m = after;
    }
    m
}

struct Expanded {
    entry: usize,
    task: PlannedTask,
    needs_names: Vec<String>,
}

#[expect(
    clippy::too_many_lines,
    reason = "every field of a task file's entry, in the order the format documents them"
)]
fn expand(file: &File, origin: &str, base: &Path) -> Result<Vec<PlannedTask>, TaskFileError> {
    let d = &file.defaults;
    let mut expanded: Vec<Expanded> = Vec::new();
    let mut entry_names: HashMap<&str, usize> = HashMap::new();
    for (ei, spanned) in file.tasks.iter().enumerate() {
        let e = &spanned.value;
        let at = Location::at(
            origin,
            spanned.referenced.line() as usize,
            spanned.referenced.column() as usize,
        );
        if e.name.trim().is_empty() {
            return Err(TaskFileError::invalid(at, "a task has an empty `name`"));
        }
        if let Some(prev) = entry_names.insert(e.name.as_str(), ei) {
            let _ = prev;
            return Err(TaskFileError::invalid(
                at,
                format!("two tasks are named `{}`; names must be unique", e.name),
            ));
        }
        let fail = |m: String| TaskFileError::Invalid {
            at: at.clone(),
            task: Some(shown(&e.name).to_string()),
            message: m,
        };
        let timeout_s = match e.timeout.as_ref().or(d.timeout.as_ref()) {
            Some(v) => duration_s(v).map_err(|e| fail(e.to_string()))?,
            None => DEFAULT_TIMEOUT_S,
        };
        if timeout_s == 0 {
            return Err(fail("the timeout must be at least one second".into()));
        }
        let shell = e
            .shell
            .clone()
            .or_else(|| d.shell.clone())
            .unwrap_or_else(|| "sh".to_owned());
        let size = matrix_size(&e.matrix)
            .filter(|n| expanded.len().saturating_add(*n) <= MAX_TASKS_PER_SUBMIT)
            .ok_or_else(|| {
                let dims: Vec<_> = e
                    .matrix
                    .iter()
                    .map(|(k, v)| format!("{} ({})", shown(k), v.len()))
                    .collect();
                fail(format!(
                    "the matrix {} expands to {} tasks ({} before it); one submission holds at most {MAX_TASKS_PER_SUBMIT}: split the file or shrink the matrix",
                    dims.join(" × "),
                    matrix_size(&e.matrix).map_or_else(|| "more than 2^64".to_owned(), |n| n.to_string()),
                    expanded.len(),
                ))
            })?;
        if size == 0 {
            let empty: Vec<_> = e
                .matrix
                .iter()
                .filter(|(_, v)| v.is_empty())
                .map(|(k, _)| format!("`{}`", shown(k)))
                .collect();
            return Err(fail(format!(
                "the matrix key {} has no values, so the task expands to nothing",
                empty.join(", ")
            )));
        }
        for combo in combinations(&e.matrix) {
            let subst = |s: &str| substitute(s, &combo).map_err(|e| fail(e.to_string()));
            let name = if e.name.contains("${{") {
                subst(&e.name)?
            } else if combo.is_empty() {
                e.name.clone()
            } else {
                let vars: Vec<_> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}[{}]", e.name, vars.join(","))
            };
            let command = match &e.run {
                Run::Script(s) => Command::Shell {
                    shell: shell.clone(),
                    script: subst(&s.text())?,
                },
                Run::Argv(a) => {
                    if a.is_empty() {
                        return Err(fail("`run` is an empty list".into()));
                    }
                    Command::Argv(
                        a.iter()
                            .map(|s| subst(&s.text()))
                            .collect::<Result<_, _>>()?,
                    )
                }
            };
            let mut env = d.env.clone();
            for (k, v) in &e.env {
                env.insert(k.clone(), subst(v)?);
            }
            let mut inputs = Vec::new();
            let mut url_inputs = Vec::new();
            for input in &e.inputs {
                match &input.value {
                    InputEntry::Pattern(pattern) => {
                        let pattern = subst(pattern)?;
                        inputs
                            .extend(find_inputs(base, &pattern).map_err(|e| fail(e.to_string()))?);
                    }
                    InputEntry::Url(u) => {
                        // Named at the input's own line: a task may have many.
                        let fail_here = |m: String| TaskFileError::Invalid {
                            at: Location::at(
                                origin,
                                input.referenced.line() as usize,
                                input.referenced.column() as usize,
                            ),
                            task: Some(name.to_string()),
                            message: m,
                        };
                        let path = u.path.as_deref().map(subst).transpose()?;
                        url_inputs.push(
                            url_input(&subst(&u.url)?, &subst(&u.sha256)?, path.as_deref())
                                .map_err(|e| fail_here(e.to_string()))?,
                        );
                    }
                }
            }
            inputs.sort();
            inputs.dedup();
            check_url_inputs(&inputs, &mut url_inputs).map_err(|e| fail(e.to_string()))?;
            let outputs = e
                .outputs
                .iter()
                .map(|o| subst(o))
                .collect::<Result<_, _>>()?;
            let needs_names = e.needs.iter().map(|n| subst(n)).collect::<Result<_, _>>()?;
            expanded.push(Expanded {
                entry: ei,
                task: PlannedTask {
                    name,
                    command,
                    env,
                    inputs,
                    url_inputs,
                    outputs,
                    timeout_s,
                    retries: e.retries.or(d.retries).unwrap_or(0),
                    runs_on: e
                        .runs_on
                        .clone()
                        .or_else(|| d.runs_on.clone())
                        .unwrap_or_default(),
                    priority: e.priority.or(d.priority).unwrap_or(0),
                    needs: Vec::new(),
                    network: e.network.or(d.network).unwrap_or(true),
                    allow_read: e
                        .allow_read
                        .as_ref()
                        .or(d.allow_read.as_ref())
                        .map(|paths| paths.iter().map(|p| subst(p)).collect())
                        .transpose()?
                        .unwrap_or_default(),
                },
                needs_names,
            });
        }
    }
    resolve_needs(file, origin, expanded)
}

/// Resolves `needs` names (an entry's name means all its expansions; an
/// expanded name means that one task), rejects unknown names and cycles, and
/// returns the tasks in an order where every task comes after what it needs.
fn resolve_needs(
    file: &File,
    origin: &str,
    expanded: Vec<Expanded>,
) -> Result<Vec<PlannedTask>, TaskFileError> {
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, x) in expanded.iter().enumerate() {
        by_name
            .entry(file.tasks[x.entry].value.name.clone())
            .or_default()
            .push(i);
        if x.task.name != file.tasks[x.entry].value.name {
            by_name.entry(x.task.name.clone()).or_default().push(i);
        }
    }
    let mut edges: Vec<Vec<usize>> = Vec::with_capacity(expanded.len());
    for x in &expanded {
        let mut deps = Vec::new();
        for n in &x.needs_names {
            let Some(targets) = by_name.get(n) else {
                let sp = &file.tasks[x.entry];
                let known: Vec<_> = file
                    .tasks
                    .iter()
                    .map(|t| format!("`{}`", t.value.name))
                    .collect();
                return Err(TaskFileError::invalid(
                    Location::at(
                        origin,
                        sp.referenced.line() as usize,
                        sp.referenced.column() as usize,
                    ),
                    format!(
                        "task `{}` needs `{n}`, but no task in this file has that name (names: {})",
                        x.task.name,
                        known.join(", ")
                    ),
                ));
            };
            deps.extend(targets.iter().copied());
        }
        deps.sort_unstable();
        deps.dedup();
        edges.push(deps);
    }
    // Depth-first topological sort, reporting the first cycle found. The
    // walk keeps its own stack (a chain of needs may be as long as a
    // submission allows), which is also the path a cycle is read from.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; expanded.len()];
    let mut order = Vec::with_capacity(expanded.len());
    for start in 0..expanded.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // (task, index of its next need to visit)
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Active;
        while let Some(top) = stack.last_mut() {
            let i = top.0;
            if let Some(&d) = edges[i].get(top.1) {
                top.1 += 1;
                match marks[d] {
                    Mark::Done => {}
                    Mark::New => {
                        marks[d] = Mark::Active;
                        stack.push((d, 0));
                    }
                    Mark::Active => {
                        let from = stack.iter().position(|&(p, _)| p == d).unwrap_or(0);
                        let names: Vec<_> = stack[from..]
                            .iter()
                            .map(|&(c, _)| c)
                            .chain([d])
                            .map(|c| format!("`{}`", shown(&expanded[c].task.name)))
                            .collect();
                        return Err(TaskFileError::invalid(
                            Location::file(origin),
                            format!(
                                "the `needs` of these tasks form a cycle: {}",
                                names.join(" → ")
                            ),
                        ));
                    }
                }
                continue;
            }
            stack.pop();
            marks[i] = Mark::Done;
            order.push(i);
        }
    }
    let mut position = vec![0usize; expanded.len()];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut out: Vec<PlannedTask> = Vec::with_capacity(expanded.len());
    for &i in &order {
        let mut t = expanded[i].task.clone();
        t.needs = edges[i].iter().map(|&d| position[d]).collect();
        out.push(t);
    }
    Ok(out)
}

/// How many tasks a matrix expands to (1 without a matrix), or `None` when
/// the product does not fit a `usize`.
fn matrix_size(matrix: &BTreeMap<String, Vec<Scalar>>) -> Option<usize> {
    matrix
        .values()
        .try_fold(1usize, |n, values| n.checked_mul(values.len()))
}

/// Every combination of matrix values, keys in order; one empty combination
/// when there is no matrix. Callers check [`matrix_size`] first.
fn combinations(matrix: &BTreeMap<String, Vec<Scalar>>) -> Vec<Vec<(String, String)>> {
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (k, values) in matrix {
        let mut next = Vec::with_capacity(combos.len() * values.len());
        for c in &combos {
            for v in values {
                let mut c = c.clone();
                c.push((k.clone(), v.text()));
                next.push(c);
            }
        }
        combos = next;
    }
    combos
}

/// Why a `${{ … }}` cannot be substituted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstituteError {
    /// `${{` with no `}}` after it.
    #[error("`${{{{` without a closing `}}}}` in `{text}`")]
    Unclosed {
        /// The whole text.
        text: String,
    },
    /// Something other than `matrix.KEY` inside.
    #[error("`${{{{ {expr} }}}}`: only `matrix.KEY` can be substituted")]
    NotMatrix {
        /// What is inside (trimmed).
        expr: String,
    },
    /// A key the matrix does not have.
    #[error("`${{{{ {expr} }}}}`: the matrix has no key `{key}`")]
    NoKey {
        /// What is inside (trimmed).
        expr: String,
        /// The key.
        key: String,
    },
}

/// Replaces `${{ matrix.KEY }}` with the combination's values.
fn substitute(s: &str, combo: &[(String, String)]) -> Result<String, SubstituteError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let end = after
            .find("}}")
            .ok_or_else(|| SubstituteError::Unclosed { text: s.to_owned() })?;
        let expr = after[..end].trim();
        let key = expr
            .strip_prefix("matrix.")
            .ok_or_else(|| SubstituteError::NotMatrix {
                expr: expr.to_owned(),
            })?;
        let value = combo
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| SubstituteError::NoKey {
                expr: expr.to_owned(),
                key: key.to_owned(),
            })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Why an input pattern (a task file's `inputs`, `--input`, `--each`)
/// names no file that may be sent.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// An absolute path or one with `..`.
    #[error(
        "input `{pattern}` must be a path inside the task file's folder (no absolute paths, no `..`)"
    )]
    Outside {
        /// The pattern as given.
        pattern: String,
    },
    /// The folder the pattern is relative to cannot be resolved.
    #[error("cannot read the folder {}: {reason}", base.display())]
    Folder {
        /// The folder.
        base: PathBuf,
        /// Why (in the message, not a cause).
        reason: std::io::Error,
    },
    /// A plain path with no file there.
    #[error("input file `{pattern}` does not exist (looked for {})", path.display())]
    Missing {
        /// The path as given.
        pattern: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Not a glob.
    #[error("input `{pattern}` is not a valid glob: {reason}")]
    BadGlob {
        /// The pattern.
        pattern: String,
        /// What the glob parser said (in the message, not a cause).
        reason: globset::Error,
    },
    /// The folder cannot be walked.
    #[error("cannot read {}: {reason}", base.display())]
    Walk {
        /// The folder.
        base: PathBuf,
        /// Why (in the message, not a cause).
        reason: walkdir::Error,
    },
    /// A match whose name is not UTF-8.
    #[error(
        "input `{}` (matched by `{pattern}`) has a name that is not UTF-8; rename it (a task's files must have UTF-8 names)",
        name.to_string_lossy().escape_debug()
    )]
    NotUtf8 {
        /// The match, relative to the folder.
        name: PathBuf,
        /// The pattern.
        pattern: String,
    },
    /// A glob that matches nothing.
    #[error("input glob `{pattern}` matches no file under {}", base.display())]
    NoMatch {
        /// The glob.
        pattern: String,
        /// The folder.
        base: PathBuf,
    },
    /// A match whose links cannot be resolved.
    #[error("cannot resolve input `{name}` ({}): {reason}", path.display())]
    Unresolvable {
        /// The input's name.
        name: String,
        /// Its path.
        path: PathBuf,
        /// Why (in the message, not a cause).
        reason: std::io::Error,
    },
    /// A link (or a file inside a linked folder) that leads outside.
    #[error(
        "input `{name}` is a symbolic link (or inside one) that leads outside the task file's folder, to {}; copy the file into {} if it is meant to be sent",
        target.display(),
        root.display()
    )]
    LinkOutside {
        /// The input's name.
        name: String,
        /// Where it leads.
        target: PathBuf,
        /// The folder (resolved).
        root: PathBuf,
    },
}

/// Finds the files an input pattern names, relative to `base`.
///
/// A symbolic link is followed only when its target stays inside `base`
/// (a `data/latest -> data/v3.csv` link is a common way to name a version);
/// a link that leaves it (`key -> ~/.ssh/id_rsa`) is refused by name, so a
/// glob can never upload a file from outside the folder the user chose
/// (issue 12, item 7). The file stored is the checked target, not the link,
/// so the link cannot be swapped in between. Folders behind links are not
/// searched by globs. A match whose name is not UTF-8 is refused by name
/// (item 19): a task's folder only holds UTF-8 names.
pub fn find_inputs(base: &Path, pattern: &str) -> Result<Vec<(String, PathBuf)>, InputError> {
    let rel = Path::new(pattern);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(InputError::Outside {
            pattern: pattern.to_owned(),
        });
    }
    let root = base.canonicalize().map_err(|reason| InputError::Folder {
        base: base.to_path_buf(),
        reason,
    })?;
    let is_glob = pattern.contains(['*', '?', '[']);
    if !is_glob {
        let path = base.join(rel);
        if !path.is_file() {
            return Err(InputError::Missing {
                pattern: pattern.to_owned(),
                path,
            });
        }
        let target = inside(&root, &path, pattern)?;
        return Ok(vec![(normalise(pattern), target)]);
    }
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|reason| InputError::BadGlob {
            pattern: pattern.to_owned(),
            reason,
        })?
        .compile_matcher();
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(base).follow_links(false) {
        let entry = entry.map_err(|reason| InputError::Walk {
            base: base.to_path_buf(),
            reason,
        })?;
        let kind = entry.file_type();
        if !kind.is_file() && !kind.is_symlink() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(base) else {
            continue;
        };
        // Matched on the raw name first, so that a name that is not UTF-8
        // is refused rather than silently left out.
        if !glob.is_match(rel) {
            continue;
        }
        let Some(rel_str) = rel.to_str() else {
            return Err(InputError::NotUtf8 {
                name: rel.to_path_buf(),
                pattern: pattern.to_owned(),
            });
        };
        let rel_str = normalise(rel_str);
        let path = if kind.is_symlink() {
            // A link to a folder is not an input file.
            if !entry.path().is_file() {
                continue;
            }
            inside(&root, entry.path(), &rel_str)?
        } else {
            entry.path().to_path_buf()
        };
        found.push((rel_str, path));
    }
    if found.is_empty() {
        return Err(InputError::NoMatch {
            pattern: pattern.to_owned(),
            base: base.to_path_buf(),
        });
    }
    found.sort();
    Ok(found)
}

/// `path` with every link resolved, if that stays inside `root` (itself
/// resolved); otherwise an error naming the input and where it leads.
fn inside(root: &Path, path: &Path, name: &str) -> Result<PathBuf, InputError> {
    let target = path
        .canonicalize()
        .map_err(|reason| InputError::Unresolvable {
            name: name.to_owned(),
            path: path.to_path_buf(),
            reason,
        })?;
    if !target.starts_with(root) {
        return Err(InputError::LinkOutside {
            name: name.to_owned(),
            target,
            root: root.to_path_buf(),
        });
    }
    Ok(target)
}

fn normalise(p: &str) -> String {
    let p = p.replace('\\', "/");
    p.strip_prefix("./").unwrap_or(&p).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `parse` gives for `yaml` (which must be refused).
    #[test]
    fn refusals_name_their_line_and_task() {
        let refused = parse("tasks:\n  - name: a\n    run: []\n");
        let Err(TaskFileError::Invalid { at, task, .. }) = refused else {
            panic!("{refused:?}");
        };
        assert_eq!(
            (at.origin.as_str(), task.as_deref()),
            ("tasks.yaml", Some("a"))
        );
        assert!(at.position.is_some());
        let Err(TaskFileError::Invalid { at, task, .. }) = parse("tasks: []\n") else {
            panic!("accepted");
        };
        assert_eq!((at, task), (Location::file("tasks.yaml"), None));
    }

    fn parse_err(yaml: &str) -> String {
        match parse(yaml) {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(e) => e.to_string(),
        }
    }

    fn parse(text: &str) -> Result<Vec<PlannedTask>, TaskFileError> {
        parse_str(text, "tasks.yaml", Path::new("."))
    }

    #[test]
    fn matrix_expands_and_needs_resolve_in_order() -> anyhow::Result<()> {
        let plan = parse(
            "tasks:\n  - name: total\n    needs: [part]\n    run: echo total\n  - name: part\n    matrix: { n: [1, 2, 3] }\n    run: echo ${{ matrix.n }}\n",
        )?;
        assert_eq!(plan.len(), 4);
        assert_eq!(plan[3].name, "total");
        assert_eq!(plan[3].needs, vec![0, 1, 2]);
        assert_eq!(plan[0].name, "part[n=1]");
        assert_eq!(
            plan[1].command,
            Command::Shell {
                shell: "sh".into(),
                script: "echo 2".into()
            }
        );
        Ok(())
    }

    #[test]
    fn unknown_field_names_line_and_column() {
        let err = parse("tasks:\n  - name: a\n    run: x\n    tiemout: 5\n")
            .map(|_| ())
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("tasks.yaml:4:"), "{msg}");
        assert!(msg.contains("tiemout"), "{msg}");
    }

    #[test]
    fn malformed_yaml_names_the_place() {
        let msg = parse_err("tasks:\n  - name: [a\n");
        assert!(msg.starts_with("tasks.yaml:"), "{msg}");
    }

    #[test]
    fn unknown_need_and_cycle_are_refused() {
        let msg = parse_err("tasks:\n  - name: a\n    run: x\n    needs: [b]\n");
        assert!(msg.contains("needs `b`"), "{msg}");
        let msg = parse_err(
            "tasks:\n  - name: a\n    run: echo x\n    needs: [b]\n  - name: b\n    run: echo y\n    needs: [a]\n",
        );
        assert!(msg.contains("cycle"), "{msg}");
    }

    #[test]
    fn durations_and_defaults() -> anyhow::Result<()> {
        let plan = parse(
            "defaults: { timeout: 5m, retries: 2, shell: bash }\ntasks:\n  - name: a\n    run: x\n  - name: b\n    run: [true]\n    timeout: 7\n",
        )?;
        assert_eq!(plan[0].timeout_s, 300);
        assert_eq!(plan[0].retries, 2);
        assert_eq!(plan[1].timeout_s, 7);
        assert_eq!(plan[1].command, Command::Argv(vec!["true".into()]));
        Ok(())
    }

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn url_inputs_take_the_matrix_and_a_default_path() -> anyhow::Result<()> {
        let plan = parse(&format!(
            "tasks:\n  - name: n\n    matrix: {{ part: [a, b] }}\n    run: wc -l x\n    inputs:\n      - url: https://h.example/d/${{{{ matrix.part }}}}.csv?v=1\n        sha256: {}\n      - {{ url: 'http://h.example/x', sha256: {SHA}, path: 'in/${{{{ matrix.part }}}}/x' }}\n",
            SHA.to_uppercase()
        ))?;
        assert_eq!(plan.len(), 2);
        assert_eq!(
            plan[1].url_inputs,
            vec![
                UrlInput {
                    path: "b.csv".into(),
                    url: "https://h.example/d/b.csv?v=1".into(),
                    sha256: SHA.into(),
                },
                UrlInput {
                    path: "in/b/x".into(),
                    url: "http://h.example/x".into(),
                    sha256: SHA.into(),
                },
            ]
        );
        assert!(plan[1].inputs.is_empty());
        Ok(())
    }

    #[test]
    fn bad_url_inputs_name_the_line_and_the_task() {
        let msg = |input: &str| {
            parse_err(&format!(
                "tasks:\n  - name: a\n    run: x\n    inputs:\n      - {input}\n"
            ))
        };
        let m = msg("{ url: 'https://h/x.csv', sha256: abc }");
        assert!(
            m.starts_with("tasks.yaml:5:") && m.contains("task `a`") && m.contains("`abc`"),
            "{m}"
        );
        let m = msg(&format!("{{ url: 'ftp://h/x.csv', sha256: {SHA} }}"));
        assert!(
            m.starts_with("tasks.yaml:5:") && m.contains("ftp://h/x.csv"),
            "{m}"
        );
        let m = msg(&format!(
            "{{ url: 'https://h/x', sha256: {SHA}, path: ../x }}"
        ));
        assert!(m.contains("`../x`"), "{m}");
        let m = msg(&format!("{{ url: 'https://h/', sha256: {SHA} }}"));
        assert!(m.contains("give a `path`"), "{m}");
        let m = msg(&format!("{{ url: 'https://h/x', sha256: {SHA}, sha: 1 }}"));
        assert!(
            m.starts_with("tasks.yaml:5:") && m.contains("{url, sha256, path}"),
            "{m}"
        );
    }

    #[test]
    fn two_url_inputs_at_one_path_are_refused_unless_identical() -> anyhow::Result<()> {
        let other = SHA.replace('9', "8");
        let text = |sha2: &str| {
            format!(
                "tasks:\n  - name: a\n    run: x\n    inputs:\n      - {{ url: 'https://h/x', sha256: {SHA} }}\n      - {{ url: 'https://mirror/x', sha256: {sha2} }}\n"
            )
        };
        let plan = parse(&text(SHA))?;
        assert_eq!(plan[0].url_inputs.len(), 1, "one content at one path");
        let m = parse_err(&text(&other));
        assert!(m.contains("placed at `x`"), "{m}");
        Ok(())
    }

    // Issue 12, item 11: ten keys of ten values made `submit` grow to 23.8 GB.
    #[test]
    fn issue12_matrix_explosion_is_refused_before_expanding() {
        // A task `boom` whose matrix has `n` keys of ten values each.
        let boom = |n: usize| {
            let keys: Vec<String> = (0..n)
                .map(|k| format!("k{k}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"))
                .collect();
            format!(
                "tasks:\n  - name: boom\n    run: echo\n    matrix: {{ {} }}\n",
                keys.join(", ")
            )
        };
        let msg = parse_err(&boom(10));
        assert!(
            msg.starts_with("tasks.yaml:2:")
                && msg.contains("task `boom`")
                && msg.contains("10000000000 tasks")
                && msg.contains("k0 (10) × k1 (10)"),
            "{msg}"
        );
        // Twenty keys overflow a u64: still one clear message.
        let msg = parse_err(&boom(20));
        assert!(msg.contains("more than 2^64"), "{msg}");
        // The limit counts the whole file, not one entry.
        let entry = |n: usize| {
            let values: Vec<String> = (0..250).map(|v| v.to_string()).collect();
            format!(
                "  - name: e{n}\n    run: echo\n    matrix: {{ a: [{v}], b: [{v}] }}\n",
                v = values.join(", ")
            )
        };
        let msg = parse(&format!("tasks:\n{}{}", entry(1), entry(2)))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("task `e2`") && msg.contains("(62500 before it)"),
            "{msg}"
        );
        let msg = parse_err("tasks:\n  - name: none\n    run: echo\n    matrix: { a: [] }\n");
        assert!(msg.contains("`a` has no values"), "{msg}");
    }

    // Issue 12, item 7: a glob matching `key -> ~/.ssh/id_rsa` uploaded the
    // key.
    #[test]
    fn issue12_input_links_leaving_the_folder_are_refused() -> anyhow::Result<()> {
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("id_rsa"), "secret")?;
        let dir = tempfile::tempdir()?;
        let base = dir.path();
        std::fs::create_dir(base.join("data"))?;
        std::fs::write(base.join("data/v3.csv"), "a,b")?;
        std::os::unix::fs::symlink(base.join("data/v3.csv"), base.join("data/latest.csv"))?;
        // A link that stays inside is followed, stored under its own name.
        let found = find_inputs(base, "data/*.csv").map_err(anyhow::Error::msg)?;
        let names: Vec<_> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["data/latest.csv", "data/v3.csv"]);
        assert!(found[0].1.ends_with("data/v3.csv"), "the target is stored");
        // A link that leaves is refused, by glob and by name, and so is a
        // file reached through a linked folder.
        std::os::unix::fs::symlink(outside.path().join("id_rsa"), base.join("data/key.csv"))?;
        for pattern in ["data/*.csv", "data/key.csv", "**/*.csv"] {
            let msg = find_inputs(base, pattern)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("`data/key.csv`") && msg.contains("outside the task file's folder"),
                "{pattern}: {msg}"
            );
        }
        std::fs::remove_file(base.join("data/key.csv"))?;
        std::os::unix::fs::symlink(outside.path(), base.join("ssh"))?;
        let msg = find_inputs(base, "ssh/id_rsa")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`ssh/id_rsa`") && msg.contains("outside"),
            "{msg}"
        );
        assert!(
            find_inputs(base, "**/id_rsa").is_err(),
            "folders behind links are not searched"
        );
        Ok(())
    }

    // Issue 12, item 19: `--each` silently dropped files whose names are not
    // UTF-8.
    #[test]
    fn issue12_non_utf8_names_are_refused_by_name() -> anyhow::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("good.txt"), "a")?;
        let bad = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        std::fs::write(dir.path().join(bad), "b")?;
        let msg = find_inputs(dir.path(), "*.txt")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("caf\u{fffd}.txt") && msg.contains("not UTF-8"),
            "{msg}"
        );
        Ok(())
    }

    // A sibling of issue 12, item 10: `needs` were resolved by recursion, one
    // stack frame per link, so a long chain in a task file overflowed the
    // stack. Parsed here on a thread with a small stack.
    #[test]
    fn a_long_chain_of_needs_resolves_without_recursion() -> anyhow::Result<()> {
        const LINKS: usize = 20_000;
        let mut text = String::from("tasks:\n  - name: e0\n    run: echo\n");
        for i in 1..LINKS {
            text.push_str(&format!(
                "  - name: e{i}\n    run: echo {i}\n    needs: [e{}]\n",
                i - 1
            ));
        }
        let plan = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || parse(&text).map_err(|e| e.to_string()))?
            .join()
            .map_err(|_| anyhow::anyhow!("parsing crashed"))?
            .map_err(anyhow::Error::msg)?;
        assert_eq!(plan.len(), LINKS);
        assert_eq!(plan[LINKS - 1].needs, vec![LINKS - 2]);
        Ok(())
    }

    #[test]
    fn task_files_must_be_regular_and_bounded() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let fifo = dir.path().join("fifo.yaml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        assert!(made.success());
        let msg = load_with_audience(&fifo)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
        let big = dir.path().join("big.yaml");
        let f = std::fs::File::create(&big)?;
        f.set_len(MAX_TASK_FILE_BYTES + 1)?;
        let msg = load_with_audience(&big)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("larger than 64 MiB"), "{msg}");
        Ok(())
    }

    #[test]
    fn missing_input_is_named() {
        let msg = parse_err("tasks:\n  - name: a\n    run: x\n    inputs: [nope.txt]\n");
        assert!(
            msg.contains("nope.txt") && msg.contains("task `a`"),
            "{msg}"
        );
    }

    #[test]
    fn url_input_errors_carry_the_url_and_keep_their_messages() {
        let hash = "a".repeat(64);
        assert_eq!(
            url_input("ftp://h/f", &hash, None),
            Err(UrlInputError::NotHttp {
                url: "ftp://h/f".into()
            })
        );
        let e = url_input(" https://h/f ", "XYZ", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input https://h/f: sha256 `xyz` is not a SHA-256 (64 hex digits; `sha256sum FILE` prints it)"
        );
        let e = url_input("https://h/", &hash, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input https://h/: the URL does not end in a file name; give a `path`"
        );
        let e = url_input("https://h/f", &hash, Some("../f")).unwrap_err();
        assert_eq!(
            e,
            UrlInputError::BadPath {
                url: "https://h/f".into(),
                path: UnsafePath {
                    path: "../f".into()
                }
            }
        );
        assert_eq!(
            e.to_string(),
            "input https://h/f: path `../f` must be a relative path inside the task's folder (no absolute paths, no `..`)"
        );
        let at = |url: &str| url_input(url, &hash, Some("x")).expect("a valid input");
        let mut two = vec![at("https://a/x"), at("https://b/x")];
        two[1].sha256 = "b".repeat(64);
        let e = check_url_inputs(&[], &mut two).unwrap_err();
        assert_eq!(
            e.to_string(),
            "two URL inputs are placed at `x` (https://a/x and https://b/x)"
        );
        let mut one = vec![at("https://a/x")];
        let e = check_url_inputs(&[("x".into(), PathBuf::from("/d/x"))], &mut one).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the URL input https://a/x and an input file are both placed at `x`"
        );
    }

    #[test]
    fn substitution_and_duration_errors_keep_their_messages() {
        let combo = [("n".to_owned(), "1".to_owned())];
        assert_eq!(substitute("a ${{ matrix.n }}", &combo), Ok("a 1".into()));
        let text = |s: &str| substitute(s, &combo).unwrap_err().to_string();
        assert_eq!(
            text("${{ matrix.n"),
            "`${{` without a closing `}}` in `${{ matrix.n`"
        );
        assert_eq!(
            text("${{ env.n }}"),
            "`${{ env.n }}`: only `matrix.KEY` can be substituted"
        );
        assert_eq!(
            substitute("${{ matrix.m }}", &combo),
            Err(SubstituteError::NoKey {
                expr: "matrix.m".into(),
                key: "m".into()
            })
        );
        let e = duration_s(&DurationValue::Text("soon".into())).unwrap_err();
        assert_eq!(e.text, "soon");
        assert!(
            e.to_string().starts_with("`soon` is not a duration (")
                && e.to_string()
                    .ends_with("); write e.g. \"90s\", \"10m\" or \"1h\""),
            "{e}"
        );
    }

    #[test]
    fn input_errors_name_the_pattern() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let base = dir.path();
        assert!(matches!(
            find_inputs(base, "../x"),
            Err(InputError::Outside { pattern }) if pattern == "../x"
        ));
        let e = find_inputs(base, "a.csv").unwrap_err();
        assert!(matches!(&e, InputError::Missing { pattern, .. } if pattern == "a.csv"));
        assert_eq!(
            e.to_string(),
            format!(
                "input file `a.csv` does not exist (looked for {})",
                base.join("a.csv").display()
            )
        );
        let e = find_inputs(base, "*.csv").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "input glob `*.csv` matches no file under {}",
                base.display()
            )
        );
        assert!(matches!(
            find_inputs(base, "[a.csv"),
            Err(InputError::BadGlob { .. })
        ));
        Ok(())
    }
}
