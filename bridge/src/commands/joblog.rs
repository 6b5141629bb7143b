//! `bridge ls --joblog` and `bridge ls --format tsv`: tasks and attempts as
//! tab-separated rows for scripts, `cut`, `sort` and spreadsheets. The
//! joblog has GNU parallel's `--joblog` columns, one row per attempt; the
//! TSV one row per task. Every field is escaped (`\t`, `\n`, `\r`, `\\`),
//! so that no name or command can break a row.

use std::borrow::Cow;

use bridge_model::facts::Attempt;
use bridge_model::view::{TaskView, canonical_result};
use bridge_model::{Command, Status};

use crate::output::write_stdout_bytes;

/// GNU parallel's joblog header, column for column.
pub const JOBLOG_HEADER: [&str; 9] = [
    "Seq",
    "Host",
    "Starttime",
    "JobRuntime",
    "Send",
    "Receive",
    "Exitval",
    "Signal",
    "Command",
];

/// The header of `ls --format tsv`.
pub const TSV_HEADER: [&str; 8] = [
    "id",
    "name",
    "status",
    "host",
    "start",
    "runtime",
    "exit_code",
    "command",
];

/// A field escaped for a tab-separated row (the convention of PostgreSQL's
/// `COPY … TEXT` and of the IANA `text/tab-separated-values` notes): a tab,
/// a line break or a backslash in it cannot end the field or the row.
pub fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// A word as a POSIX shell would need it, so that an argv can be read (a
/// word with a space is visibly one argument) and pasted into a shell.
pub fn quoted(word: &str) -> Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=,+-@%^".contains(&b));
    if plain {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', "'\\''")))
    }
}

/// A command as one shell line: an argv quoted word by word, a shell
/// script as written.
pub fn command_line(c: &Command) -> String {
    match c {
        Command::Argv(argv) => argv.iter().map(|w| quoted(w)).collect::<Vec<_>>().join(" "),
        Command::Shell { script, .. } => script.clone(),
    }
}

fn row(fields: &[String]) -> String {
    let mut line = fields
        .iter()
        .map(|f| escape(f))
        .collect::<Vec<_>>()
        .join("\t");
    line.push('\n');
    line
}

/// Milliseconds as seconds with three decimals, as parallel prints them.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    format!("{sign}{}.{:03}", ms / 1000, ms % 1000)
}

fn host(a: &Attempt) -> String {
    // parallel writes `:` for this computer; an attempt always names its
    // device or runner, except in documents older than that field.
    if a.device.is_empty() {
        ":".to_owned()
    } else {
        a.device.clone()
    }
}

/// The joblog of `tasks` (in `ls` order): a header, then one row per
/// finished attempt, by task then start. Seq is the task's place in the
/// list, so a retried task's attempts share it (as `parallel
/// --resume-failed` appends). Exitval is -1 for an attempt that has no
/// exit code (it could not start, timed out or was killed), Signal 0 when
/// no signal ended it; Send and Receive are 0 (not measured).
pub fn joblog(tasks: &[&TaskView]) -> String {
    let mut text = row(&JOBLOG_HEADER.map(str::to_owned));
    for (seq, t) in tasks.iter().enumerate() {
        let mut attempts: Vec<&Attempt> = t.facts.attempts.values().collect();
        attempts.sort_by(|a, b| (a.started_at, &a.key).cmp(&(b.started_at, &b.key)));
        for a in attempts {
            text.push_str(&row(&[
                (seq + 1).to_string(),
                host(a),
                seconds(a.started_at),
                // parallel's `%10.3f`: right-aligned, so the column lines up.
                format!("{:>10}", seconds(a.ended_at - a.started_at)),
                "0".to_owned(),
                "0".to_owned(),
                a.exit_code.unwrap_or(-1).to_string(),
                a.signal.unwrap_or(0).to_string(),
                command_line(&t.spec.command),
            ]));
        }
    }
    text
}

/// The attempt a task's row shows: its result when it is done, else its
/// latest attempt.
fn shown_attempt(t: &TaskView) -> Option<&Attempt> {
    canonical_result(&t.facts).or_else(|| {
        t.facts
            .attempts
            .values()
            .max_by(|a, b| (a.started_at, &a.key).cmp(&(b.started_at, &b.key)))
    })
}

/// One row per task: its full id, name, status, and of the attempt shown
/// (see [`shown_attempt`]) the device or runner, the start (RFC 3339,
/// UTC, milliseconds), the runtime in seconds and the exit code; those are
/// empty when the task has no attempt (or no exit code).
pub fn tsv(tasks: &[(&TaskView, Status)]) -> String {
    let mut text = row(&TSV_HEADER.map(str::to_owned));
    for (t, status) in tasks {
        let a = shown_attempt(t);
        let start = a.map(|a| {
            let at = std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(u64::try_from(a.started_at).unwrap_or(0));
            humantime::format_rfc3339_millis(at).to_string()
        });
        text.push_str(&row(&[
            t.id.to_string(),
            t.spec.name.clone(),
            status.as_str().to_owned(),
            a.map(|a| a.device.clone()).unwrap_or_default(),
            start.unwrap_or_default(),
            a.map(|a| seconds(a.ended_at - a.started_at))
                .unwrap_or_default(),
            a.and_then(|a| a.exit_code)
                .map(|c| c.to_string())
                .unwrap_or_default(),
            command_line(&t.spec.command),
        ]));
    }
    text
}

/// Writes rows built by [`joblog`] or [`tsv`].
pub fn print(text: &str) {
    write_stdout_bytes(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_break_a_row() {
        assert_eq!(escape("a\tb\nc\\d\re"), "a\\tb\\nc\\\\d\\re");
        assert_eq!(escape("plain"), "plain");
        let line = row(&["x\ty".to_owned(), "z\n".to_owned()]);
        assert_eq!(line, "x\\ty\tz\\n\n");
        assert_eq!(line.matches('\t').count(), 1);
    }

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(quoted("wc"), "wc");
        assert_eq!(quoted("a b"), "'a b'");
        assert_eq!(quoted("it's"), "'it'\\''s'");
        assert_eq!(quoted(""), "''");
        let argv = Command::Argv(vec!["sh".into(), "-c".into(), "echo \"$1\"".into()]);
        assert_eq!(command_line(&argv), "sh -c 'echo \"$1\"'");
    }

    #[test]
    fn seconds_have_three_decimals() {
        assert_eq!(seconds(1_376_577_364_974), "1376577364.974");
        assert_eq!(seconds(8), "0.008");
        assert_eq!(seconds(-1500), "-1.500");
    }
}
