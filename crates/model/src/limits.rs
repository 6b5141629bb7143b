//! The limits of a [`TaskSpec`], checked in one place by both ends.
//!
//! `bridge submit` checks every spec before it is stored, so a bad value is
//! refused on the submitter's device with the field it is in (issue 12, items
//! 10 and 20). A worker checks again before running a stored task, because a
//! member can write any spec into a document without going through `submit`:
//! a task that breaks a limit gets an `error` attempt instead of crashing the
//! worker or failing in an obscure way deep in process start-up.
//!
//! The numbers are generous bounds, not tuning knobs: each one keeps a value
//! inside what the rest of bridge (and the operating system) can handle.
//!
//! - timeouts are turned into milliseconds and added to clocks: 30 days keeps
//!   every sum far from overflowing, and is longer than any CI job;
//! - a single argument or environment string of more than 128 KiB cannot be
//!   passed to `execve` on Linux (`MAX_ARG_STRLEN`), and all of them together
//!   must fit `ARG_MAX` (2 MiB by default), so a command with its environment
//!   is held to 1 MiB;
//! - paths are held to what file systems accept (4096 bytes, 255 per name);
//! - counts keep one task (and so one document) from growing without bound.
//!
//! NUL bytes are refused in every string: no C string (a program, an
//! argument, a variable, a path) can hold one, so such a task could never run.

use crate::spec::{Command, InputError, TaskSpec};

/// The longest allowed `timeout`, in seconds (30 days).
pub const MAX_TIMEOUT_S: u64 = 30 * 86_400;
/// The most `retries` a task may ask for.
pub const MAX_RETRIES: u32 = 1000;
/// `priority` must lie within `-MAX_PRIORITY..=MAX_PRIORITY`.
pub const MAX_PRIORITY: i64 = 1_000_000_000;
/// The longest task name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// The longest single argument, script or `KEY=VALUE` string, in bytes
/// (Linux's `MAX_ARG_STRLEN`, 128 KiB, counts the terminating NUL).
pub const MAX_ARG_BYTES: usize = 128 * 1024 - 1;
/// The most bytes a command and its environment may take together.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;
/// The most arguments of a command given as a list.
pub const MAX_ARGS: usize = 10_000;
/// The most environment variables of a task.
pub const MAX_ENV_VARS: usize = 1000;
/// The longest environment variable name, in bytes.
pub const MAX_ENV_KEY_BYTES: usize = 1024;
/// The longest input path or output glob, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest single file or folder name inside a path, in bytes.
pub const MAX_PATH_COMPONENT_BYTES: usize = 255;
/// The longest URL of a URL input, in bytes.
pub const MAX_URL_BYTES: usize = 8192;
/// The most inputs of one task.
pub const MAX_INPUTS: usize = 100_000;
/// The most output globs of one task.
pub const MAX_OUTPUTS: usize = 1000;
/// The most `runs-on` labels of one task.
pub const MAX_LABELS: usize = 64;
/// The longest `runs-on` label, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;
/// The most tasks one task may need.
pub const MAX_NEEDS: usize = 100_000;
/// The longest nonce (set by `--rerun`), in bytes.
pub const MAX_NONCE_BYTES: usize = 256;
/// The most `allow-read` paths one task may declare.
pub const MAX_ALLOW_READ: usize = 64;

/// Why a [`TaskSpec`] cannot be stored or run. `field` is named as in a task
/// file (`timeout`, `env.KEY`, `inputs[2].path`, …); long or odd values are
/// shortened and escaped so that the message stays readable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A number outside its range.
    #[error("`{field}` is {value}; it must be between {min} and {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// The smallest allowed value.
        min: String,
        /// The largest allowed value.
        max: String,
    },
    /// A string holding a NUL byte.
    #[error("`{field}` contains a NUL byte, which no program, argument, variable or path can hold")]
    Nul {
        /// The field.
        field: String,
    },
    /// A string over its length limit.
    #[error("`{field}` is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// The field.
        field: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list or map with too many entries.
    #[error("`{field}` has {count} entries; the limit is {max}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A value that must not be empty.
    #[error("`{field}` is empty")]
    Empty {
        /// The field.
        field: String,
    },
    /// A value of the wrong shape.
    #[error("`{field}` {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An input whose source is not usable.
    #[error(transparent)]
    Input(#[from] InputError),
}

/// A value shortened to 60 characters and escaped, for error messages.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(60).flat_map(char::escape_debug).collect();
    if s.chars().nth(60).is_some() {
        out.push('…');
    }
    out
}

/// Checks one string: no NUL, at most `max` bytes.
fn text(field: impl FnOnce() -> String, s: &str, max: usize) -> Result<(), SpecError> {
    if s.contains('\0') {
        return Err(SpecError::Nul { field: field() });
    }
    if s.len() > max {
        return Err(SpecError::TooLong {
            field: field(),
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn count(field: &'static str, n: usize, max: usize) -> Result<(), SpecError> {
    if n > max {
        return Err(SpecError::TooMany {
            field,
            count: n,
            max,
        });
    }
    Ok(())
}

/// Checks a relative path (an input's place, an output glob): not empty, not
/// absolute, no `..`, no NUL, bounded in length and per name.
pub fn check_relative_path(field: impl Fn() -> String, p: &str) -> Result<(), SpecError> {
    text(&field, p, MAX_PATH_BYTES)?;
    if p.is_empty() {
        return Err(SpecError::Empty { field: field() });
    }
    if p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return Err(SpecError::Invalid {
            field: field(),
            reason: format!(
                "is `{}`: it must stay inside the task's folder (no absolute path, no `..`)",
                shown(p)
            ),
        });
    }
    if let Some(long) = p.split('/').find(|c| c.len() > MAX_PATH_COMPONENT_BYTES) {
        return Err(SpecError::Invalid {
            field: field(),
            reason: format!(
                "has a name of {} bytes (`{}`); the limit is {MAX_PATH_COMPONENT_BYTES}",
                long.len(),
                shown(long)
            ),
        });
    }
    Ok(())
}

impl TaskSpec {
    /// Checks every field against the limits above; the first problem found
    /// is returned, naming its field.
    #[expect(
        clippy::too_many_lines,
        reason = "one check per field, in field order; to split by field group"
    )]
    pub fn check(&self) -> Result<(), SpecError> {
        if self.timeout_s == 0 || self.timeout_s > MAX_TIMEOUT_S {
            return Err(SpecError::OutOfRange {
                field: "timeout",
                value: format!("{} s", self.timeout_s),
                min: "1 s".into(),
                max: format!("{MAX_TIMEOUT_S} s (30 days)"),
            });
        }
        if self.retries > MAX_RETRIES {
            return Err(SpecError::OutOfRange {
                field: "retries",
                value: self.retries.to_string(),
                min: "0".into(),
                max: MAX_RETRIES.to_string(),
            });
        }
        if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&self.priority) {
            return Err(SpecError::OutOfRange {
                field: "priority",
                value: self.priority.to_string(),
                min: (-MAX_PRIORITY).to_string(),
                max: MAX_PRIORITY.to_string(),
            });
        }
        text(|| "name".into(), &self.name, MAX_NAME_BYTES)?;
        if self.name.trim().is_empty() {
            return Err(SpecError::Empty {
                field: "name".into(),
            });
        }
        let mut total = 0usize;
        match &self.command {
            Command::Shell { shell, script } => {
                text(|| "shell".into(), shell, MAX_ARG_BYTES)?;
                if shell.is_empty() {
                    return Err(SpecError::Empty {
                        field: "shell".into(),
                    });
                }
                text(|| "run".into(), script, MAX_ARG_BYTES)?;
                total += shell.len() + script.len() + 5;
            }
            Command::Argv(argv) => {
                count("run", argv.len(), MAX_ARGS)?;
                match argv.first() {
                    None => {
                        return Err(SpecError::Empty {
                            field: "run".into(),
                        });
                    }
                    Some(p) if p.is_empty() => {
                        return Err(SpecError::Empty {
                            field: "run[0]".into(),
                        });
                    }
                    Some(_) => {}
                }
                for (i, a) in argv.iter().enumerate() {
                    text(|| format!("run[{i}]"), a, MAX_ARG_BYTES)?;
                    total += a.len() + 1;
                }
            }
        }
        count("env", self.env.len(), MAX_ENV_VARS)?;
        for (k, v) in &self.env {
            let field = || format!("env.{}", shown(k));
            text(field, k, MAX_ENV_KEY_BYTES)?;
            if k.is_empty() || k.contains('=') {
                return Err(SpecError::Invalid {
                    field: field(),
                    reason: "is not a variable name (it must be non-empty, without `=`)".into(),
                });
            }
            text(field, v, MAX_ARG_BYTES - k.len() - 1)?;
            total += k.len() + v.len() + 2;
        }
        if total > MAX_COMMAND_BYTES {
            return Err(SpecError::TooLong {
                field: "run and env together".into(),
                len: total,
                max: MAX_COMMAND_BYTES,
            });
        }
        count("inputs", self.inputs.len(), MAX_INPUTS)?;
        for (i, input) in self.inputs.iter().enumerate() {
            check_relative_path(|| format!("inputs[{i}].path"), &input.path)?;
            if input.path.split('/').any(|c| c.is_empty() || c == ".") {
                return Err(SpecError::Invalid {
                    field: format!("inputs[{i}].path"),
                    reason: format!(
                        "is `{}`: it must be a plain relative path (no empty or `.` parts)",
                        shown(&input.path)
                    ),
                });
            }
            text(|| format!("inputs[{i}].sha256"), &input.sha256, 64)?;
            text(|| format!("inputs[{i}].blob"), &input.blob, MAX_PATH_BYTES)?;
            if let Some(url) = &input.url {
                text(|| format!("inputs[{i}].url"), url, MAX_URL_BYTES)?;
            }
            input.source()?;
        }
        count("outputs", self.outputs.len(), MAX_OUTPUTS)?;
        for (i, o) in self.outputs.iter().enumerate() {
            check_relative_path(
                || format!("outputs[{i}]"),
                o.strip_prefix("./").unwrap_or(o),
            )?;
        }
        count("runs-on", self.runs_on.len(), MAX_LABELS)?;
        for (i, l) in self.runs_on.iter().enumerate() {
            text(|| format!("runs-on[{i}]"), l, MAX_LABEL_BYTES)?;
        }
        count("needs", self.needs.len(), MAX_NEEDS)?;
        if let Some(n) = &self.nonce {
            text(|| "nonce".into(), n, MAX_NONCE_BYTES)?;
        }
        count("allow-read", self.allow_read.len(), MAX_ALLOW_READ)?;
        for (i, p) in self.allow_read.iter().enumerate() {
            check_allow_read(|| format!("allow-read[{i}]"), p)?;
        }
        Ok(())
    }
}

/// Checks one `allow-read` path: absolute or `~/...` (the worker's home),
/// without `.` or `..` parts, so that what a device grants can be compared
/// with it by prefix alone.
pub fn check_allow_read(field: impl Fn() -> String, p: &str) -> Result<(), SpecError> {
    text(&field, p, MAX_PATH_BYTES)?;
    let rest = match p.strip_prefix("~/") {
        Some(rest) => rest,
        None if p.starts_with('/') => &p[1..],
        None => {
            return Err(SpecError::Invalid {
                field: field(),
                reason: format!(
                    "is `{}`: it must be an absolute path or start with `~/`",
                    shown(p)
                ),
            });
        }
    };
    if rest.split('/').any(|c| c == "." || c == "..") {
        return Err(SpecError::Invalid {
            field: field(),
            reason: format!("is `{}`: it must not hold `.` or `..` parts", shown(p)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::InputRef;

    fn spec() -> TaskSpec {
        TaskSpec {
            name: "t".into(),
            outputs: vec!["out/*.txt".into()],
            ..crate::spec::tests::spec("echo hi")
        }
    }

    #[test]
    fn allow_read_paths_are_absolute_or_in_home() {
        let mut s = spec();
        s.allow_read = vec!["/opt/data".into(), "~/.rustup".into(), "/".into()];
        assert_eq!(s.check(), Ok(()));
        for bad in ["data", "~user/x", "/opt/../etc", "~/./x", "", "/a\0b"] {
            let mut s = spec();
            s.allow_read = vec![bad.replace("\\0", "\0")];
            assert!(s.check().is_err(), "{bad:?} was accepted");
        }
        let mut s = spec();
        s.allow_read = vec!["/x".into(); MAX_ALLOW_READ + 1];
        assert!(matches!(s.check(), Err(SpecError::TooMany { .. })));
    }

    fn field_of(e: &SpecError) -> String {
        match e {
            SpecError::OutOfRange { field, .. } | SpecError::TooMany { field, .. } => {
                (*field).to_owned()
            }
            SpecError::Nul { field }
            | SpecError::TooLong { field, .. }
            | SpecError::Empty { field }
            | SpecError::Invalid { field, .. } => field.clone(),
            SpecError::Input(_) => "inputs".into(),
        }
    }

    #[test]
    fn a_plain_spec_passes() {
        assert_eq!(spec().check(), Ok(()));
    }

    // Issue 12, item 10: `timeout: 18446744073709551615` was stored and
    // crashed every worker that claimed it.
    #[test]
    fn issue12_limits_name_their_field() {
        type Edit = Box<dyn Fn(&mut TaskSpec)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("timeout", Box::new(|s| s.timeout_s = u64::MAX)),
            ("timeout", Box::new(|s| s.timeout_s = 0)),
            ("retries", Box::new(|s| s.retries = u32::MAX)),
            ("priority", Box::new(|s| s.priority = i64::MIN)),
            ("name", Box::new(|s| s.name = "a\0b".into())),
            ("name", Box::new(|s| s.name = "n".repeat(1 << 20))),
            ("name", Box::new(|s| s.name = " ".into())),
            (
                "run",
                Box::new(|s| {
                    s.command = Command::Shell {
                        shell: "sh".into(),
                        script: "x".repeat(MAX_ARG_BYTES + 1),
                    }
                }),
            ),
            ("run", Box::new(|s| s.command = Command::Argv(vec![]))),
            (
                "run[1]",
                Box::new(|s| s.command = Command::Argv(vec!["echo".into(), "a\0".into()])),
            ),
            (
                "shell",
                Box::new(|s| {
                    s.command = Command::Shell {
                        shell: String::new(),
                        script: "x".into(),
                    }
                }),
            ),
            (
                "env.K",
                Box::new(|s| {
                    s.env.insert("K".into(), "v\0".into());
                }),
            ),
            (
                "env.A=B",
                Box::new(|s| {
                    s.env.insert("A=B".into(), "v".into());
                }),
            ),
            (
                "run and env together",
                Box::new(|s| {
                    for i in 0..10 {
                        s.env.insert(format!("K{i}"), "v".repeat(120_000));
                    }
                }),
            ),
            (
                "inputs[0].path",
                Box::new(|s| {
                    s.inputs
                        .push(InputRef::from_blob("../x".into(), "00".into(), "b".into()))
                }),
            ),
            (
                "inputs[0].path",
                Box::new(|s| {
                    s.inputs.push(InputRef::from_blob(
                        "a/".repeat(3000),
                        "00".into(),
                        "b".into(),
                    ))
                }),
            ),
            (
                "inputs[0].path",
                Box::new(|s| {
                    s.inputs.push(InputRef::from_blob(
                        "d/".to_owned() + &"x".repeat(300),
                        "00".into(),
                        "b".into(),
                    ))
                }),
            ),
            ("outputs[1]", Box::new(|s| s.outputs.push("/etc/*".into()))),
            ("outputs[1]", Box::new(|s| s.outputs.push("a\0".into()))),
            ("runs-on[0]", Box::new(|s| s.runs_on.push("l\0".into()))),
            ("nonce", Box::new(|s| s.nonce = Some("n".repeat(1000)))),
        ];
        for (want, edit) in cases {
            let mut s = spec();
            edit(&mut s);
            match s.check() {
                Err(e) => {
                    assert_eq!(field_of(&e), want, "{e}");
                    assert!(e.to_string().len() < 400, "the message stays short: {e}");
                }
                Ok(()) => panic!("{want}: accepted"),
            }
        }
    }

    #[test]
    fn shown_values_are_short_and_escaped() {
        assert_eq!(shown("a\u{1b}[2J"), "a\\u{1b}[2J");
        assert_eq!(shown(&"x".repeat(100)).chars().count(), 61);
    }
}
