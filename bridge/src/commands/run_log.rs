//! What `bridge run` tells the person reading a runner's log (issue 16,
//! item 5): the header it prints before claiming anything, the line when a
//! task starts, the capped error annotations, and on GitHub Actions the
//! step outputs and the job summary, also when an error stops the run.
//!
//! Everything here is pure formatting (strings in, strings out), so that
//! the escaping of task-controlled text is tested without a runner;
//! `run.rs` decides when each piece is written and where. Task names,
//! details and error messages are hostile text: in a workflow command they
//! go through [`escape_data`] / [`escape_property`], in the job summary
//! through [`markdown_cell`], in a step output they are made one line, and
//! elsewhere through `output::safe`. On GitLab CI the header and each
//! task's output are collapsible sections ([`gitlab_section_start`]).

use std::fmt::Write as _;
use std::time::Duration;

use bridge_model::Outcome;

use crate::budget::{Budget, Share};
use crate::output::duration;

/// GitHub shows at most 10 error annotations per step (docs: "Workflow
/// commands", annotation limits): the first 9 failed tasks get one each,
/// and the last one is kept to count the rest (or to say what stopped the
/// run), pointing at the job summary that lists them all.
pub const TASK_ANNOTATIONS: usize = 9;

/// The failed tasks the job summary lists by id, with the commands to read
/// them (the summary is capped at 1 MiB per step).
const SUMMARY_FAILED: usize = 50;

/// The tasks the job summary's table lists.
const SUMMARY_ROWS: usize = 500;

/// How many tasks the runner sees when it starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Pending tasks this runner may run now (its labels, whose they are).
    pub runnable: usize,
    /// Of those, how many are in its shard (with `--shard`).
    pub in_shard: Option<usize>,
    /// Pending tasks, runnable here or not.
    pub pending: usize,
    /// Tasks some worker holds a live claim on.
    pub running: usize,
    /// Tasks waiting for others they need.
    pub blocked: usize,
    /// Whether documents of the store are not read yet (a large pool: a
    /// runner reads more as it runs out), so the counts are a lower bound.
    pub partial: bool,
}

/// What a runner prints before it claims anything.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// bridge's version.
    pub version: &'a str,
    /// The runner's member name.
    pub runner: &'a str,
    /// The ref it writes in a git remote.
    pub slot: &'a str,
    /// The store, as [`bridge_store::redact_spec`] shows it.
    pub store: &'a str,
    /// `(index, count)`.
    pub shard: Option<(u32, u32)>,
    /// The wall-clock budget (`--budget`).
    pub budget: Duration,
    /// The repository's push and read budget, and this runner's share of
    /// it; none when the remote has no budget (a folder, a local path).
    pub push_budget: Option<(Budget, Share)>,
    /// Tasks run at once.
    pub parallel: usize,
    pub tasks: TaskCounts,
}

impl Header<'_> {
    /// One line: the title of the header's group on GitHub Actions (what a
    /// person sees without opening it).
    pub fn title(&self) -> String {
        let mut t = format!("bridge {} run", self.version);
        if let Some((i, k)) = self.shard {
            let _ = write!(t, " · shard {i}/{k}");
        }
        let _ = write!(
            t,
            " · {}{} runnable",
            self.tasks.runnable,
            if self.tasks.partial { "+" } else { "" }
        );
        if let Some(n) = self.tasks.in_shard {
            let _ = write!(t, " ({n} in its shard)");
        }
        let _ = write!(
            t,
            " · budget {} · {} at a time",
            duration(self.budget.as_millis() as i64),
            self.parallel
        );
        t
    }

    /// The header's lines (no control characters: every value is escaped
    /// by `output::safe`).
    pub fn lines(&self) -> Vec<String> {
        let safe = |s: &str| crate::output::safe(s).into_owned();
        let mut lines = vec![
            format!(
                "bridge {}, runner {} (slot {})",
                safe(self.version),
                safe(self.runner),
                safe(self.slot)
            ),
            format!("store:    {}", safe(self.store)),
        ];
        lines.push(match self.shard {
            Some((i, k)) => format!(
                "shard:    {i}/{k} (its own shard's tasks first; others' only when it has none)"
            ),
            None => "shard:    none (any runnable task)".to_owned(),
        });
        lines.push(format!(
            "budget:   {} (it claims a task only while the task can end in time; the last {} are kept for pushing)",
            duration(self.budget.as_millis() as i64),
            duration(super::run::PUSH_MARGIN.as_millis() as i64),
        ));
        lines.push(match &self.push_budget {
            Some((budget, share)) => format!(
                "pushes:   at most one every {}, a read every {}: this runner's share of the repository's {} pushes a minute and {} reads a second",
                seconds(share.push_every),
                seconds(share.read_every),
                budget.pushes_per_minute,
                budget.reads_per_second,
            ),
            None => "pushes:   as results land (no push budget: the remote is not a git host)"
                .to_owned(),
        });
        lines.push(format!("parallel: {} tasks at a time", self.parallel));
        let t = &self.tasks;
        let mut tasks = format!("tasks:    {} runnable here", t.runnable);
        if let (Some(n), Some((i, k))) = (t.in_shard, self.shard) {
            let _ = write!(tasks, " ({n} in shard {i}/{k})");
        }
        let _ = write!(
            tasks,
            ", {} pending, {} running, {} blocked",
            t.pending, t.running, t.blocked
        );
        if t.partial {
            tasks.push_str(" in the documents read so far (more are read as these run out)");
        }
        lines.push(tasks);
        lines
    }
}

/// A duration in seconds, to a tenth under a minute.
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        duration(d.as_millis() as i64)
    }
}

/// The line a task's start prints: its name, short id, attempt, and where
/// it comes from when this runner has a shard. `github`: the name is
/// escaped as a workflow command's data would be (the line is on the
/// runner's stdout, where a name cannot start a workflow command: the line
/// starts with the mark).
pub fn start_line(
    name: &str,
    short_id: &str,
    attempt: usize,
    task_shard: Option<u32>,
    shard: Option<(u32, u32)>,
    github: bool,
) -> String {
    let name = if github {
        escape_data(name)
    } else {
        crate::output::safe(name).into_owned()
    };
    let mut line = format!("▶ {name} ({short_id}) attempt {attempt}");
    if let (Some(of), Some((mine, k))) = (task_shard, shard) {
        if of == mine {
            let _ = write!(line, " · shard {of}/{k}");
        } else {
            let _ = write!(
                line,
                " · taken over from shard {of}/{k} (its runner is missing or slower)"
            );
        }
    }
    line
}

/// The error annotations of one run: one per failed task up to
/// [`TASK_ANNOTATIONS`], then one that counts the rest.
#[derive(Debug, Default)]
pub struct Annotations {
    shown: usize,
    withheld: usize,
}

impl Annotations {
    /// The annotation of a failed task, or `None` once the cap is reached
    /// (the task is counted for [`Annotations::closing`]).
    pub fn task_failed(
        &mut self,
        name: &str,
        outcome: Outcome,
        detail: &str,
        short_id: &str,
    ) -> Option<String> {
        if self.shown >= TASK_ANNOTATIONS {
            self.withheld += 1;
            return None;
        }
        self.shown += 1;
        Some(format!(
            "::error title={}::{}",
            escape_property(&format!("task {name} {}", outcome.as_str())),
            escape_data(&format!("{detail} — bridge logs {short_id}"))
        ))
    }

    /// After the run: the one annotation counting the failed tasks past
    /// the cap, if any.
    pub fn closing(&self) -> Option<String> {
        (self.withheld > 0).then(|| {
            format!(
                "::error title={}::{}",
                escape_property(&format!("{} more tasks failed", self.withheld)),
                escape_data(&format!(
                    "{} failed tasks are not annotated (GitHub shows 10 annotations per step): the job summary lists every failed task with its id",
                    self.withheld
                ))
            )
        })
    }

    /// The one annotation of an error that stopped the run: its message and
    /// what to do, and the failed tasks past the cap if any (it takes the
    /// place of [`Annotations::closing`]).
    pub fn fatal(&self, message: &str, hint: Option<&str>) -> String {
        let mut text = message.to_owned();
        if let Some(h) = hint {
            let _ = write!(text, "\nHint: {h}");
        }
        if self.withheld > 0 {
            let _ = write!(
                text,
                "\n{} more failed tasks are not annotated: the job summary lists them",
                self.withheld
            );
        }
        format!("::error title=bridge::{}", escape_data(&text))
    }
}

/// One task's end, for the job summary.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub short_id: String,
    pub outcome: Outcome,
    pub ms: i64,
    pub detail: String,
}

/// What the run did, for the step outputs and the job summary.
#[derive(Debug, Default)]
pub struct Ledger {
    pub rows: Vec<Row>,
    pub done: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Pending tasks left for other devices (their submitters are not in
    /// run-tasks-from), when the worker first found some.
    pub left_for_others: usize,
}

impl Ledger {
    /// Counts a task's end.
    pub fn record(&mut self, row: Row) {
        match row.outcome {
            Outcome::Success => self.done += 1,
            Outcome::Interrupted => self.interrupted += 1,
            _ => self.failed += 1,
        }
        self.rows.push(row);
    }
}

/// What a run asked of the remote's repository (its host limits pushes
/// and reads per repository: see crate::budget).
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteUse {
    pub pushes: usize,
    pub fetches: usize,
}

/// An error that stopped the run, as shown to a person.
#[derive(Debug, Clone)]
pub struct Fatal {
    /// The message with its causes, on one line each.
    pub message: String,
    pub hint: Option<String>,
    pub code: u8,
}

/// Everything the step outputs and the job summary say.
#[derive(Debug)]
pub struct Report<'a> {
    pub ledger: &'a Ledger,
    /// Tasks left in the pool; none when the run stopped before it knew.
    pub left: Option<usize>,
    pub elapsed: Duration,
    pub remote_use: RemoteUse,
    pub shard: Option<(u32, u32)>,
    /// The error that stopped the run, if one did.
    pub fatal: Option<&'a Fatal>,
}

/// The step outputs (`GITHUB_OUTPUT` lines). `error` is the message of an
/// error that stopped the run, made one line (a newline in a value would
/// start another output), empty when none did; `tasks-left` is empty when
/// the run stopped before it could count.
pub fn outputs(r: &Report<'_>) -> String {
    let error = r.fatal.map(|f| one_line(&f.message)).unwrap_or_default();
    format!(
        "tasks-done={}\ntasks-failed={}\ntasks-left={}\ntasks-left-for-others={}\nerror={error}\n",
        r.ledger.done,
        r.ledger.failed,
        r.left.map(|n| n.to_string()).unwrap_or_default(),
        r.ledger.left_for_others,
    )
}

/// `s` on one line, without control characters.
fn one_line(s: &str) -> String {
    crate::output::safe(&s.replace("\r\n", " ").replace(['\r', '\n'], " ")).into_owned()
}

/// The job summary (Markdown).
pub fn summary(r: &Report<'_>) -> String {
    let ledger = r.ledger;
    let mut md = String::new();
    let shard = r
        .shard
        .map_or_else(|| "no shard".to_owned(), |(i, k)| format!("shard {i}/{k}"));
    match r.fatal {
        Some(_) => {
            let _ = writeln!(md, "### bridge run ({shard}): stopped by an error\n");
        }
        None => {
            let _ = writeln!(md, "### bridge run ({shard})\n");
        }
    }
    if let Some(f) = r.fatal {
        let _ = writeln!(md, "**What failed:** {}\n", markdown_text(&f.message));
        if let Some(h) = &f.hint {
            let _ = writeln!(md, "**What to do:** {}\n", markdown_text(h));
        }
        let _ = writeln!(md, "Exit code {}.\n", f.code);
    }
    let left = r.left.map_or_else(
        || "tasks left unknown".to_owned(),
        |n| format!("**{n} left in the pool**"),
    );
    let _ = writeln!(
        md,
        "{} done · {} failed · {} interrupted · {left} · {} · {} pushes and {} fetches of the remote\n",
        ledger.done,
        ledger.failed,
        ledger.interrupted,
        duration(r.elapsed.as_millis() as i64),
        r.remote_use.pushes,
        r.remote_use.fetches,
    );
    if ledger.left_for_others > 0 {
        let _ = writeln!(
            md,
            "{} pending tasks were left for other devices: their submitters are not in this runner's `run-tasks-from`.\n",
            ledger.left_for_others
        );
    }
    let failed: Vec<&Row> = ledger
        .rows
        .iter()
        .filter(|row| row.outcome.counts_as_failure())
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "#### Failed tasks\n");
        for row in failed.iter().take(SUMMARY_FAILED) {
            let _ = writeln!(
                md,
                "- `{}` {} ({}): {}",
                row.short_id,
                markdown_cell(&row.name),
                row.outcome.as_str(),
                markdown_cell(&row.detail),
            );
        }
        if failed.len() > SUMMARY_FAILED {
            let _ = writeln!(md, "- … and {} more", failed.len() - SUMMARY_FAILED);
        }
        md.push('\n');
    }
    if !ledger.rows.is_empty() {
        let _ = writeln!(
            md,
            "| task | id | outcome | duration | detail |\n| --- | --- | --- | --- | --- |"
        );
        for row in ledger.rows.iter().take(SUMMARY_ROWS) {
            let _ = writeln!(
                md,
                "| {} | `{}` | {} {} | {} | {} |",
                markdown_cell(&row.name),
                row.short_id,
                mark(row.outcome),
                row.outcome.as_str(),
                duration(row.ms),
                markdown_cell(&row.detail)
            );
        }
        if ledger.rows.len() > SUMMARY_ROWS {
            let _ = writeln!(md, "\n… and {} more.", ledger.rows.len() - SUMMARY_ROWS);
        }
        md.push('\n');
    }
    next_commands(
        &mut md,
        &failed,
        ledger
            .rows
            .iter()
            .find(|row| row.outcome == Outcome::Success),
    );
    md
}

/// The commands to run next, from a device of the workspace: they exist in
/// this CLI (`bridge sync`, `logs`, `retry`, `outputs`, `status`), with the
/// run's own task ids.
fn next_commands(md: &mut String, failed: &[&Row], done: Option<&Row>) {
    let _ = writeln!(md, "#### Next, from a device of the workspace\n\n```sh");
    let _ = writeln!(md, "bridge sync                 # fetch these results");
    let _ = writeln!(md, "bridge status               # what is left, per batch");
    if let Some(row) = failed.first() {
        let _ = writeln!(
            md,
            "bridge logs {}      # a failed task's output",
            row.short_id
        );
        let _ = writeln!(md, "bridge retry {}     # run it again", row.short_id);
    }
    if let Some(row) = done {
        let _ = writeln!(
            md,
            "bridge outputs {} --to out/   # a done task's files",
            row.short_id
        );
    }
    let _ = writeln!(md, "```");
}

/// A task's mark in the log and the summary.
pub fn mark(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "✓",
        Outcome::Interrupted => "⏸",
        _ => "✗",
    }
}

/// Escapes a workflow command's message (and any other control character,
/// which could fake a workflow command or disguise the log).
pub fn escape_data(s: &str) -> String {
    let escaped = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    crate::output::safe(&escaped).into_owned()
}

/// Escapes a workflow command's property value.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// An error message or hint as Markdown text: one paragraph, inert like
/// [`markdown_cell`] (an error may quote a task's name or a path).
fn markdown_text(s: &str) -> String {
    markdown_cell(s)
}

/// Task-controlled text as one Markdown table cell of the job summary: one
/// line, control characters escaped, and every character Markdown gives a
/// meaning to (links, images, emphasis, HTML, the cell separator) escaped
/// with a backslash, so a task's name shows as written and cannot add links
/// or break the table.
pub fn markdown_cell(s: &str) -> String {
    let one_line = s.replace(['\r', '\n'], " ");
    let mut out = String::with_capacity(one_line.len());
    for c in crate::output::safe(&one_line).chars() {
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '<'
                | '>'
                | '('
                | ')'
                | '#'
                | '+'
                | '-'
                | '!'
                | '|'
                | '~'
                | '&'
                | ':'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A GitLab CI collapsible section (issue 19, item 4): the marker that
/// opens section `name` (letters, digits, `_`, `.`, `-`: anything else
/// becomes `_`) under `title` at `unix_s`. GitLab folds the lines up to
/// [`gitlab_section_end`] under the title and shows the time between the
/// two stamps (docs: "Custom collapsible sections"). The title is
/// task-controlled text made one safe line, so it cannot end the marker or
/// forge another.
pub fn gitlab_section_start(name: &str, title: &str, collapsed: bool, unix_s: u64) -> String {
    format!(
        "\x1b[0Ksection_start:{unix_s}:{}[collapsed={collapsed}]\r\x1b[0K{}",
        section_name(name),
        crate::output::safe(title)
    )
}

/// The marker that closes section `name` at `unix_s` (see
/// [`gitlab_section_start`]).
pub fn gitlab_section_end(name: &str, unix_s: u64) -> String {
    format!(
        "\x1b[0Ksection_end:{unix_s}:{}\r\x1b[0K",
        section_name(name)
    )
}

/// `name` with only the characters a section name may hold.
fn section_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_sections_are_markers_with_a_safe_title() {
        let start = gitlab_section_start("bridge_task_ab12", "✓ t[n=1] (3ms)", true, 7);
        assert_eq!(
            start,
            "\x1b[0Ksection_start:7:bridge_task_ab12[collapsed=true]\r\x1b[0K✓ t[n=1] (3ms)"
        );
        assert_eq!(
            gitlab_section_end("bridge_task_ab12", 9),
            "\x1b[0Ksection_end:9:bridge_task_ab12\r\x1b[0K"
        );
        // A hostile task name cannot end the title or forge a marker.
        let start = gitlab_section_start("x y:z", "t\r\x1b[0Ksection_end:7:x\nfake", false, 7);
        assert_eq!(start.matches('\r').count(), 1, "{start:?}");
        assert!(!start.contains('\n'), "{start:?}");
        assert!(start.contains(":x_y_z[collapsed=false]"), "{start:?}");
    }

    // Issue 12, item 21 (a sibling): a task's name in the job summary could
    // add links or images, or break the table with `|`.
    #[test]
    fn summary_cells_are_inert_markdown() {
        assert_eq!(markdown_cell("a|b"), r"a\|b");
        assert_eq!(
            markdown_cell("![x](https://t.example/p.png)"),
            r"\!\[x\]\(https\://t.example/p.png\)"
        );
        assert_eq!(markdown_cell("<img src=x>\nrow"), r"\<img src=x\> row");
        assert_eq!(markdown_cell("a\u{1b}[2J"), r"a\\u\{1b\}\[2J");
    }

    fn header(shard: Option<(u32, u32)>, push_budget: Option<(Budget, Share)>) -> Header<'static> {
        Header {
            version: "1.2.3",
            runner: "ci",
            slot: "ci-2",
            store: "git:https://***@github.com/o/r.git",
            shard,
            budget: Duration::from_secs(45 * 60),
            push_budget,
            parallel: 4,
            tasks: TaskCounts {
                runnable: 12,
                in_shard: shard.map(|_| 5),
                pending: 14,
                running: 1,
                blocked: 2,
                partial: false,
            },
        }
    }

    #[test]
    fn issue16_header_says_version_store_shard_budget_share_and_tasks() {
        let share = Share::runner(Budget::GITHUB, 8, 0);
        let h = header(Some((2, 8)), Some((Budget::GITHUB, share)));
        assert_eq!(
            h.title(),
            "bridge 1.2.3 run · shard 2/8 · 12 runnable (5 in its shard) · budget 45m00s · 4 at a time"
        );
        let lines = h.lines();
        assert_eq!(lines[0], "bridge 1.2.3, runner ci (slot ci-2)");
        assert_eq!(lines[1], "store:    git:https://***@github.com/o/r.git");
        assert!(lines[2].starts_with("shard:    2/8 "), "{lines:#?}");
        assert!(lines[3].starts_with("budget:   45m00s "), "{lines:#?}");
        // 8 runners share 5 pushes a minute: one every 96 s each.
        assert_eq!(
            lines[4],
            "pushes:   at most one every 1m36s, a read every 1.0s: this runner's share of the repository's 6 pushes a minute and 15 reads a second"
        );
        assert_eq!(lines[5], "parallel: 4 tasks at a time");
        assert_eq!(
            lines[6],
            "tasks:    12 runnable here (5 in shard 2/8), 14 pending, 1 running, 2 blocked"
        );

        let mut h = header(None, None);
        h.tasks.partial = true;
        assert_eq!(
            h.title(),
            "bridge 1.2.3 run · 12+ runnable · budget 45m00s · 4 at a time"
        );
        let lines = h.lines();
        assert_eq!(lines[2], "shard:    none (any runnable task)");
        assert!(lines[4].contains("no push budget"), "{lines:#?}");
        assert!(
            lines[6].ends_with("in the documents read so far (more are read as these run out)"),
            "{lines:#?}"
        );
    }

    #[test]
    fn issue16_start_line_says_attempt_and_where_the_task_comes_from() {
        assert_eq!(
            start_line("build", "0123456789", 1, Some(2), Some((2, 8)), false),
            "▶ build (0123456789) attempt 1 · shard 2/8"
        );
        assert_eq!(
            start_line("build", "0123456789", 3, Some(5), Some((2, 8)), false),
            "▶ build (0123456789) attempt 3 · taken over from shard 5/8 (its runner is missing or slower)"
        );
        assert_eq!(
            start_line("build", "0123456789", 1, None, None, false),
            "▶ build (0123456789) attempt 1"
        );
        // A hostile name stays on its line and cannot start a workflow
        // command.
        let line = start_line("x\n::add-mask::y", "0123456789", 1, None, None, true);
        assert_eq!(line, "▶ x%0A::add-mask::y (0123456789) attempt 1");
        let line = start_line("x\n::error::y", "0123456789", 1, None, None, false);
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn issue16_annotations_stop_at_nine_then_one_counts_the_rest() {
        let mut a = Annotations::default();
        let shown: Vec<String> = (0..15)
            .filter_map(|k| a.task_failed(&format!("t{k}"), Outcome::Failed, "exit code 1", "abc"))
            .collect();
        assert_eq!(shown.len(), TASK_ANNOTATIONS);
        assert_eq!(
            shown[0],
            "::error title=task t0 failed::exit code 1 — bridge logs abc"
        );
        let closing = a.closing().expect("a closing annotation");
        assert!(
            closing
                .starts_with("::error title=6 more tasks failed::6 failed tasks are not annotated"),
            "{closing}"
        );
        // An error stopping the run takes the closing one's place, and
        // counts the rest too.
        let fatal = a.fatal("the remote is gone\nsecond line", Some("check it"));
        assert_eq!(
            fatal,
            "::error title=bridge::the remote is gone%0Asecond line%0AHint: check it%0A6 more failed tasks are not annotated: the job summary lists them"
        );
        assert_eq!(Annotations::default().closing(), None);
        // A title cannot end early or add properties.
        let mut a = Annotations::default();
        let line = a
            .task_failed("a::b,c", Outcome::TimedOut, "100%", "abc")
            .expect("shown");
        assert!(
            line.starts_with("::error title=task a%3A%3Ab%2Cc "),
            "{line}"
        );
        assert!(line.contains("::100%25 — bridge logs abc"), "{line}");
    }

    fn row(name: &str, id: &str, outcome: Outcome) -> Row {
        Row {
            name: name.to_owned(),
            short_id: id.to_owned(),
            outcome,
            ms: 1500,
            detail: if outcome == Outcome::Success {
                String::new()
            } else {
                "exit code 2".to_owned()
            },
        }
    }

    #[test]
    fn issue16_summary_names_failed_tasks_the_shard_and_next_commands() {
        let mut ledger = Ledger::default();
        ledger.record(row("ok", "aaaaaaaaaa", Outcome::Success));
        ledger.record(row("bad [x](y)", "bbbbbbbbbb", Outcome::Failed));
        let report = Report {
            ledger: &ledger,
            left: Some(3),
            elapsed: Duration::from_secs(2),
            remote_use: RemoteUse {
                pushes: 2,
                fetches: 1,
            },
            shard: Some((1, 4)),
            fatal: None,
        };
        let md = summary(&report);
        assert!(md.starts_with("### bridge run (shard 1/4)\n"), "{md}");
        assert!(
            md.contains("1 done · 1 failed · 0 interrupted · **3 left in the pool**"),
            "{md}"
        );
        assert!(
            md.contains("- `bbbbbbbbbb` bad \\[x\\]\\(y\\) (failed): exit code 2\n"),
            "{md}"
        );
        assert!(md.contains("| ok | `aaaaaaaaaa` | ✓ success |"), "{md}");
        assert!(md.contains("\nbridge logs bbbbbbbbbb "), "{md}");
        assert!(md.contains("\nbridge retry bbbbbbbbbb "), "{md}");
        assert!(
            md.contains("\nbridge outputs aaaaaaaaaa --to out/ "),
            "{md}"
        );
        assert_eq!(
            outputs(&report),
            "tasks-done=1\ntasks-failed=1\ntasks-left=3\ntasks-left-for-others=0\nerror=\n"
        );
    }

    #[test]
    fn issue16_fatal_outputs_are_one_line_each() {
        let ledger = Ledger::default();
        let fatal = Fatal {
            message: "no identity\ntasks-done=99".to_owned(),
            hint: Some("set BRIDGE_IDENTITY".to_owned()),
            code: 1,
        };
        let report = Report {
            ledger: &ledger,
            left: None,
            elapsed: Duration::ZERO,
            remote_use: RemoteUse::default(),
            shard: None,
            fatal: Some(&fatal),
        };
        // A newline in the message cannot set another output.
        assert_eq!(
            outputs(&report),
            "tasks-done=0\ntasks-failed=0\ntasks-left=\ntasks-left-for-others=0\nerror=no identity tasks-done=99\n"
        );
        let md = summary(&report);
        assert!(
            md.starts_with("### bridge run (no shard): stopped by an error\n"),
            "{md}"
        );
        assert!(
            md.contains("**What failed:** no identity tasks\\-done=99\n"),
            "{md}"
        );
        assert!(
            md.contains("**What to do:** set BRIDGE\\_IDENTITY\n"),
            "{md}"
        );
        assert!(md.contains("Exit code 1."), "{md}");
        assert!(md.contains("tasks left unknown"), "{md}");
    }

    #[test]
    fn issue16_an_error_after_tasks_ran_still_reports_them() {
        let mut ledger = Ledger::default();
        ledger.record(row("ok", "aaaaaaaaaa", Outcome::Success));
        ledger.record(row("bad", "bbbbbbbbbb", Outcome::Failed));
        let fatal = Fatal {
            message: "cannot push to the remote".to_owned(),
            hint: None,
            code: 4,
        };
        let report = Report {
            ledger: &ledger,
            left: None,
            elapsed: Duration::from_secs(1),
            remote_use: RemoteUse::default(),
            shard: Some((0, 2)),
            fatal: Some(&fatal),
        };
        let md = summary(&report);
        assert!(
            md.starts_with("### bridge run (shard 0/2): stopped by an error\n"),
            "{md}"
        );
        assert!(!md.contains("What to do"), "{md}");
        assert!(md.contains("Exit code 4."), "{md}");
        assert!(md.contains("1 done · 1 failed"), "{md}");
        assert!(
            md.contains("- `bbbbbbbbbb` bad (failed): exit code 2"),
            "{md}"
        );
        assert!(md.contains("\nbridge logs bbbbbbbbbb "), "{md}");
        assert_eq!(
            outputs(&report),
            "tasks-done=1\ntasks-failed=1\ntasks-left=\ntasks-left-for-others=0\nerror=cannot push to the remote\n"
        );
    }
}
