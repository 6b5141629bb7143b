//! Terminal output: JSON for scripts, aligned tables and human times for
//! people, and the one way every command writes to stdout and stderr.
//!
//! # A closed pipe is not a panic (issue 12, item 18)
//!
//! Rust ignores `SIGPIPE`, so a write to a pipe whose reader has gone
//! (`bridge status | head -1`, `bridge sync | true`) fails with `EPIPE`, and
//! `println!` turns that failure into a panic (exit 101). Every command
//! writes through [`outln!`], [`out!`], [`errln!`] and [`errout!`] instead
//! (`println!` and friends are denied by clippy in this crate: `main.rs`): the first
//! failed write to stdout closes it for the rest of the process and the
//! command goes on to its end, so a `submit` or a `sync` whose reader left
//! still stores and pushes what it was asked to. A closed pipe is not an
//! error (the exit code is the command's own); any other write error (a full
//! disk behind `> file`) is reported once at the end, with exit code 1.
//!
//! Resetting `SIGPIPE` to its default instead would kill bridge in the
//! middle of a sync or a run (and on any write to a socket or to a git
//! process that went away), losing work; it would also be inherited by
//! nothing useful, since `std::process::Command` already restores the
//! default disposition in every task it starts.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use bridge_model::Millis;
use serde::Serialize;

use crate::error::CliResult;
pub use bridge_engine::text::{safe, timestamp};

/// `println!` for bridge: never panics (see the module docs).
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for bridge: never panics (see the module docs).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` for bridge: never panics; a closed stderr is ignored.
macro_rules! errln {
    () => {
        $crate::output::write_stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` for bridge: never panics; a closed stderr is ignored.
macro_rules! errout {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!($($arg)*))
    };
}

/// Whether stdout and stderr are terminals, probed once.
fn is_terminal(stderr: bool) -> bool {
    use std::io::IsTerminal;
    static STDOUT: OnceLock<bool> = OnceLock::new();
    static STDERR: OnceLock<bool> = OnceLock::new();
    if stderr {
        *STDERR.get_or_init(|| std::io::stderr().is_terminal())
    } else {
        *STDOUT.get_or_init(|| std::io::stdout().is_terminal())
    }
}

/// Text bound for a terminal, with every control character but newline and
/// tab shown as a `\u{..}` escape: the last line of defence (issue 12, item
/// 21) behind [`safe`], which printers apply to each task-controlled field.
/// bridge never writes escape sequences of its own through these macros
/// (progress bars and log colours go their own way), so nothing is lost.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if unsafe_char(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Set by the first failed write to stdout: later output is dropped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// The first write error on stdout that is not a closed pipe.
static STDOUT_ERROR: OnceLock<String> = OnceLock::new();

/// Writes formatted text to stdout (what [`outln!`] and [`out!`] call).
pub fn write_stdout(args: fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let result = if is_terminal(false) {
        let text = args.to_string();
        std::io::stdout()
            .lock()
            .write_all(terminal_safe(&text).as_bytes())
    } else {
        std::io::stdout().lock().write_fmt(args)
    };
    if let Err(e) = result {
        stdout_failed(&e);
    }
}

/// Writes bytes to stdout, with the same rules as [`write_stdout`]: as they
/// are when stdout is a file or a pipe (a task's log stays byte for byte what
/// it wrote), made [`terminal_safe`] (as UTF-8, lossily) on a terminal.
pub fn write_stdout_bytes(bytes: &[u8]) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let result = if is_terminal(false) {
        let text = String::from_utf8_lossy(bytes);
        out.write_all(terminal_safe(&text).as_bytes())
    } else {
        out.write_all(bytes)
    };
    if let Err(e) = result.and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

fn stdout_failed(e: &std::io::Error) {
    STDOUT_CLOSED.store(true, Ordering::Relaxed);
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        let _ = STDOUT_ERROR.set(e.to_string());
    }
}

/// Flushes stdout and returns the first write error that was not a closed
/// pipe, for `main` to report.
pub fn stdout_error() -> Option<&'static str> {
    if !STDOUT_CLOSED.load(Ordering::Relaxed)
        && let Err(e) = std::io::stdout().lock().flush()
    {
        stdout_failed(&e);
    }
    STDOUT_ERROR.get().map(String::as_str)
}

/// Writes formatted text to stderr (what [`errln!`] and [`errout!`] call);
/// there is nowhere left to report a failure, so it is ignored.
pub fn write_stderr(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = if is_terminal(true) {
        let text = args.to_string();
        err.write_all(terminal_safe(&text).as_bytes())
    } else {
        err.write_fmt(args)
    };
}

/// Writes bytes to stderr like [`write_stdout_bytes`] (a task's log sent to
/// stderr by `bridge logs`).
pub fn write_stderr_bytes(bytes: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = if is_terminal(true) {
        let text = String::from_utf8_lossy(bytes);
        err.write_all(terminal_safe(&text).as_bytes())
    } else {
        err.write_all(bytes)
    };
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> CliResult<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_stdout_bytes(text.as_bytes());
    Ok(())
}

/// Where this process's output goes, probed once for every command.
#[derive(Debug, Clone, Copy)]
pub struct Surroundings {
    /// Running as a step of GitHub Actions (`GITHUB_ACTIONS=true`): the log
    /// takes workflow commands (`::add-mask::`, `::group::`).
    pub github_actions: bool,
    /// Standard error is a terminal someone watches (not a CI log, which a
    /// redrawn progress bar would fill with lines).
    pub live_stderr: bool,
}

impl Surroundings {
    /// From whether this is GitHub Actions and whether stderr is a terminal.
    fn from(github_actions: bool, stderr_is_terminal: bool) -> Surroundings {
        Surroundings {
            github_actions,
            live_stderr: stderr_is_terminal && !github_actions,
        }
    }
}

static PROBED: OnceLock<Surroundings> = OnceLock::new();

/// Probes this process's [`Surroundings`] once, in `main`, with
/// `github_actions` from the [settings](crate::settings::Settings).
pub fn probe_surroundings(github_actions: bool) {
    use std::io::IsTerminal;
    let _ = PROBED.set(Surroundings::from(
        github_actions,
        std::io::stderr().is_terminal(),
    ));
}

/// This process's [`Surroundings`] (outside GitHub Actions if
/// [`probe_surroundings`] never ran: unit tests).
pub fn surroundings() -> Surroundings {
    *PROBED.get_or_init(|| {
        use std::io::IsTerminal;
        Surroundings::from(false, std::io::stderr().is_terminal())
    })
}

/// Every line of an error message made [`safe`]: error messages quote task
/// names, paths and messages that other members wrote, and go to stderr even
/// when it is a file someone will `cat` later.
pub fn safe_lines(text: &str) -> String {
    text.split('\n')
        .map(|l| safe(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints rows as a table with aligned columns (the last column is not padded).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) -> CliResult<()> {
    let cols = header.len();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| safe(c).into_owned()).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        text.push_str(s.trim_end());
        text.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    write_stdout_bytes(text.as_bytes());
    Ok(())
}

/// A duration in milliseconds for people: `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn duration(ms: Millis) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// A point in time relative to `now`: `12s ago`, `in 3m`.
pub fn ago(at: Millis, now: Millis) -> String {
    if at <= now {
        format!("{} ago", duration(now - at))
    } else {
        format!("in {}", duration(at - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_watched_terminal_outside_github_actions_is_live() {
        let on = |gh, tty| {
            let s = Surroundings::from(gh, tty);
            (s.github_actions, s.live_stderr)
        };
        assert_eq!(on(false, true), (false, true));
        assert_eq!(on(false, false), (false, false));
        assert_eq!(on(true, true), (true, false));
        assert_eq!(on(true, false), (true, false));
    }

    // Issue 12, item 21: the last line of defence on a terminal keeps lines
    // and tabs, and shows every other control character.
    #[test]
    fn terminal_safe_keeps_lines_and_escapes_the_rest() {
        assert_eq!(terminal_safe("a\tb\nc\n"), "a\tb\nc\n");
        assert_eq!(
            terminal_safe("\u{1b}[2Jx\r\u{7}\u{9b}"),
            "\\u{1b}[2Jx\\u{d}\\u{7}\\u{9b}"
        );
        assert_eq!(safe("a\nb"), "a\\u{a}b");
        assert_eq!(
            safe_lines("Error: `a\u{1b}`\nHint: h"),
            "Error: `a\\u{1b}`\nHint: h"
        );
    }
}
