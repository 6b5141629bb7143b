//! The HTML report of a pool (`bridge report`, issue 17, item 6): one
//! self-contained page, rendered to a `String` from plain data the command
//! gathers from the replica ([`Pool`]). This module owns the page: its
//! layout, the escaping of everything that came from a task (names, output,
//! device names), and the geometry of the timeline ([`timeline`]).
//!
//! The page must open from a file with no network: the CSS and the one
//! small script are inline, the pictures are inline SVG drawn here. Every
//! text from the pool goes through [`escape`], and the page's
//! Content-Security-Policy allows only its own script (by hash), so that a
//! task whose name or output holds `<script>` can neither run code nor
//! break the page's structure even if an escape were missed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use base64::Engine as _;
use bridge_model::{Millis, Outcome, Status};
use sha2::{Digest as _, Sha256};

use crate::output::{duration, timestamp};

/// Everything the page shows, gathered by the command.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    /// The workspace id.
    pub workspace: String,
    /// The remote, if one is set.
    pub remote: Option<String>,
    /// When the report was made.
    pub generated_at: Millis,
    /// The batches, oldest first, each with its tasks.
    pub batches: Vec<Batch>,
    /// Private batches this device cannot read (counted only).
    pub unreadable_batches: usize,
}

/// One batch and its tasks.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The batch id, short form.
    pub short: String,
    /// When it was submitted.
    pub created_at: Millis,
    /// Who submitted it.
    pub submitted_by: String,
    /// Its tasks, in submission order.
    pub tasks: Vec<Task>,
}

/// One task.
#[derive(Debug, Clone)]
pub struct Task {
    /// The task id, short form.
    pub short: String,
    /// The task's name.
    pub name: String,
    /// Its status now.
    pub status: Status,
    /// Why it has that status, when the model says.
    pub reason: Option<String>,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// Which of `attempts` is the task's result, if any.
    pub result: Option<usize>,
}

/// One attempt of a task.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The device or runner that ran it.
    pub device: String,
    /// Whether a CI runner ran it (its provenance names a CI run).
    pub runner: bool,
    /// When the command started.
    pub started_at: Millis,
    /// When it ended.
    pub ended_at: Millis,
    /// How it ended.
    pub outcome: Outcome,
    /// `exit 3`, `signal 9`, or empty.
    pub code: String,
    /// The worker's explanation, if any.
    pub message: Option<String>,
    /// The last bytes of stdout.
    pub stdout_tail: String,
    /// The last bytes of stderr.
    pub stderr_tail: String,
}

impl Attempt {
    /// How long it ran; never negative (a writer's clock may be wrong).
    pub fn runtime(&self) -> Millis {
        self.ended_at.saturating_sub(self.started_at).max(0)
    }
}

impl Task {
    /// The attempt that stands for the task: its result, else its latest.
    fn main_attempt(&self) -> Option<&Attempt> {
        self.result
            .and_then(|i| self.attempts.get(i))
            .or_else(|| self.attempts.last())
    }
}

/// Text from the pool made safe for HTML text and attribute values: the
/// five characters HTML gives a meaning to become references, and control
/// characters (other than newline and tab) are shown as `\u{..}` rather
/// than passed on (a terminal's escape sequences in a log tail, NUL).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// One attempt placed on the timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// The row it is drawn in (an index into [`Timeline::rows`]).
    pub row: usize,
    /// Its left edge, in pixels from the start of the time axis.
    pub x: f64,
    /// Its width in pixels, at least [`MIN_BAR`] so that short attempts show.
    pub width: f64,
    /// Which attempt it is: the index into the slice given to [`timeline`].
    pub attempt: usize,
}

/// A row of the timeline: one lane of one device or runner. A device that
/// ran several attempts at once (`work --parallel`) gets one lane per
/// concurrent attempt, so each row shows one worker slot's busy and idle time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The device or runner.
    pub device: String,
    /// Its lane, from 0.
    pub lane: usize,
}

/// The timeline's geometry: rows, bars, and the time the axis spans.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Rows, by device name, then lane.
    pub rows: Vec<Row>,
    /// One bar per attempt.
    pub bars: Vec<Bar>,
    /// The time at the axis' left end (the first start).
    pub start: Millis,
    /// The time at its right end (the last end).
    pub end: Millis,
}

/// The narrowest bar drawn, in pixels.
pub const MIN_BAR: f64 = 2.0;

/// Places `spans` (device, start, end) on an axis `width` pixels wide:
/// each device's attempts are packed into the fewest lanes in which none
/// overlap (first fit, by start time), rows sorted by device then lane.
pub fn timeline(spans: &[(&str, Millis, Millis)], width: f64) -> Timeline {
    let Some(start) = spans.iter().map(|s| s.1).min() else {
        return Timeline {
            rows: Vec::new(),
            bars: Vec::new(),
            start: 0,
            end: 0,
        };
    };
    // An end before its start (a wrong clock) counts as an instant.
    let ends = |s: &(&str, Millis, Millis)| s.2.max(s.1);
    let end = spans.iter().map(ends).max().unwrap_or(start);
    let scale = width / (end - start).max(1) as f64;
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].0, spans[i].1, ends(&spans[i]), i));
    // Per device, the end of each lane's last attempt.
    let mut lanes: BTreeMap<&str, Vec<Millis>> = BTreeMap::new();
    let mut placed = Vec::with_capacity(spans.len());
    for i in order {
        let s = &spans[i];
        let device = lanes.entry(s.0).or_default();
        let lane = match device.iter().position(|&busy_until| busy_until <= s.1) {
            Some(l) => l,
            None => {
                device.push(s.1);
                device.len() - 1
            }
        };
        device[lane] = ends(s);
        placed.push((s.0, lane, i));
    }
    let rows: Vec<Row> = lanes
        .iter()
        .flat_map(|(d, l)| {
            (0..l.len()).map(|lane| Row {
                device: (*d).to_owned(),
                lane,
            })
        })
        .collect();
    let bars = placed
        .into_iter()
        .map(|(device, lane, i)| {
            let s = &spans[i];
            let row = rows
                .iter()
                .position(|r| r.device == device && r.lane == lane)
                .unwrap_or(0);
            Bar {
                row,
                x: (s.1 - start) as f64 * scale,
                width: ((ends(s) - s.1) as f64 * scale).max(MIN_BAR),
                attempt: i,
            }
        })
        .collect();
    Timeline {
        rows,
        bars,
        start,
        end,
    }
}

/// The page's one script: marks the page as interactive (what the browser
/// test checks) and filters the task tables by the text typed in the box.
const SCRIPT: &str = "\
document.documentElement.dataset.report = 'ready';
// A log tail's last lines matter most: show them first.
for (const pre of document.querySelectorAll('pre')) pre.scrollTop = pre.scrollHeight;
const box = document.getElementById('filter');
box.addEventListener('input', () => {
  const q = box.value.toLowerCase();
  for (const tr of document.querySelectorAll('tr[data-name]')) {
    tr.hidden = q !== '' && !tr.dataset.name.toLowerCase().includes(q);
  }
});
";

const STYLE: &str = "\
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#1f2328;background:#fff}
h1{font-size:1.6em;margin:.2em 0}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre,.id{font-family:ui-monospace,monospace;font-size:.92em}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:.6em;overflow:auto;max-height:20em;white-space:pre-wrap;word-break:break-all}
.meta{color:#57606a}.badge{display:inline-block;padding:0 .5em;border-radius:1em;font-size:.85em;margin-right:.3em;color:#fff}
.done,.success{background:#1a7f37}.failed,.error,.timed_out{background:#cf222e}.skipped,.cancelled,.interrupted{background:#8c959f}
.pending{background:#bf8700}.blocked{background:#9a6700}.running{background:#0969da}.untrusted{background:#8250df}
svg text{font:12px system-ui,sans-serif;fill:#1f2328}svg .axis{stroke:#d0d7de}
rect.done,rect.success{fill:#2da44e}rect.failed,rect.error,rect.timed_out{fill:#cf222e}rect.interrupted{fill:#8c959f}
.bar{background:#54aeff;height:.9em;display:inline-block;vertical-align:middle;min-width:2px}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
#filter{padding:.3em .5em;width:20em;margin:.5em 0}
table.tasks{table-layout:fixed}table.tasks td{overflow-wrap:anywhere}
table.tasks th:nth-child(1){width:40%}table.tasks th:nth-child(2){width:11%}table.tasks th:nth-child(3){width:11%}
table.tasks th:nth-child(4){width:9%}table.tasks th:nth-child(5){width:11%}
.legend span{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 1em;vertical-align:middle}
";

/// The whole page.
pub fn render(pool: &Pool) -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'sha256-{hash}'\">\n\
         <meta name=\"viewport\" content=\"width=device-width\">\n\
         <title>bridge report: {ws}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        ws = escape(&pool.workspace),
    );
    summary(&mut h, pool);
    minutes(&mut h, pool);
    timeline_section(&mut h, pool);
    durations(&mut h, pool);
    failures(&mut h, pool);
    batches(&mut h, pool);
    let _ = write!(h, "<script>{SCRIPT}</script>\n</body>\n</html>\n");
    h
}

/// Every task of the pool, in batch order.
fn tasks(pool: &Pool) -> impl Iterator<Item = &Task> {
    pool.batches.iter().flat_map(|b| b.tasks.iter())
}

/// Status badges: `3 done`, `1 failed`, … (statuses with no task left out).
fn badges(h: &mut String, tasks: &[&Task]) {
    for s in Status::ALL {
        let n = tasks.iter().filter(|t| t.status == s).count();
        if n > 0 {
            let _ = write!(h, "<span class=\"badge {0}\">{n} {0}</span>", s.as_str());
        }
    }
}

/// The title, where the pool is, and the counts per status.
fn summary(h: &mut String, pool: &Pool) {
    let all: Vec<&Task> = tasks(pool).collect();
    let _ = write!(
        h,
        "<h1>bridge report</h1>\n<p class=\"meta\">Workspace <code>{}</code> ({}), \
         generated {} from this device's replica: run <code>bridge sync</code> first \
         to include other devices' latest results.</p>\n<p id=\"totals\">{} task(s) in {} batch(es): ",
        escape(&pool.workspace),
        escape(pool.remote.as_deref().unwrap_or("no remote")),
        timestamp(pool.generated_at),
        all.len(),
        pool.batches.len(),
    );
    badges(h, &all);
    h.push_str("</p>\n");
    if pool.unreadable_batches > 0 {
        let _ = writeln!(
            h,
            "<p class=\"meta\">{} private batch(es) not readable on this device are left out.</p>",
            pool.unreadable_batches
        );
    }
}

/// Minutes used: the sum of attempt runtimes, per device or runner, and
/// the wall-clock span from the first start to the last end.
fn minutes(h: &mut String, pool: &Pool) {
    let attempts: Vec<&Attempt> = tasks(pool).flat_map(|t| t.attempts.iter()).collect();
    h.push_str("<h2 id=\"minutes\">Minutes used</h2>\n");
    let (Some(first), Some(last)) = (
        attempts.iter().map(|a| a.started_at).min(),
        attempts.iter().map(|a| a.ended_at.max(a.started_at)).max(),
    ) else {
        h.push_str("<p>No attempts yet.</p>\n");
        return;
    };
    let total: Millis = attempts.iter().map(|a| a.runtime()).sum();
    let _ = writeln!(
        h,
        "<p>{} attempt(s) ran for <b>{}</b> in all ({:.2} minutes), over a wall-clock span of \
         <b>{}</b> ({} to {}).</p>",
        attempts.len(),
        duration(total),
        total as f64 / 60_000.0,
        duration(last - first),
        timestamp(first),
        timestamp(last)
    );
    // Per device: attempts, runtime, its own first start and last end.
    let mut per: BTreeMap<&str, (bool, usize, Millis, Millis, Millis)> = BTreeMap::new();
    for a in &attempts {
        let e = per
            .entry(a.device.as_str())
            .or_insert((a.runner, 0, 0, a.started_at, a.ended_at));
        e.1 += 1;
        e.2 += a.runtime();
        e.3 = e.3.min(a.started_at);
        e.4 = e.4.max(a.ended_at);
    }
    h.push_str(
        "<table id=\"per-device\"><tr><th>Device or runner</th><th class=\"num\">Attempts</th>\
         <th class=\"num\">Runtime</th><th class=\"num\">Minutes</th><th>First start</th><th>Last end</th></tr>\n",
    );
    for (device, (runner, n, ms, from, to)) in per {
        let _ = writeln!(
            h,
            "<tr><td>{}{}</td><td class=\"num\">{n}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{:.2}</td><td>{}</td><td>{}</td></tr>",
            escape(device),
            if runner { " (runner)" } else { "" },
            duration(ms),
            ms as f64 / 60_000.0,
            timestamp(from),
            timestamp(to)
        );
    }
    h.push_str("</table>\n");
}

/// The width of the timeline's labels and of its time axis, in pixels.
const LABEL_W: f64 = 200.0;
const AXIS_W: f64 = 900.0;
const ROW_H: f64 = 22.0;
/// The most characters of a device's name the label column shows.
const LABEL_CHARS: usize = 28;

/// Who ran what when: one row per worker slot of each device or runner.
fn timeline_section(h: &mut String, pool: &Pool) {
    h.push_str("<h2 id=\"timeline\">Timeline</h2>\n");
    let attempts: Vec<(&Task, &Attempt)> = tasks(pool)
        .flat_map(|t| t.attempts.iter().map(move |a| (t, a)))
        .collect();
    if attempts.is_empty() {
        h.push_str("<p>No attempts yet.</p>\n");
        return;
    }
    let spans: Vec<(&str, Millis, Millis)> = attempts
        .iter()
        .map(|(_, a)| (a.device.as_str(), a.started_at, a.ended_at))
        .collect();
    let tl = timeline(&spans, AXIS_W);
    let _ = writeln!(
        h,
        "<p class=\"meta\">Each row is one worker slot of a device or runner; a bar is an \
         attempt (hover for details), from {} to {}. Gaps are idle time.</p>\n<p class=\"meta legend\">\
         <span class=\"success\"></span>success\
         <span class=\"failed\"></span>failed, timed out or could not start\
         <span class=\"interrupted\"></span>interrupted</p>",
        timestamp(tl.start),
        timestamp(tl.end)
    );
    let height = ROW_H * tl.rows.len() as f64 + 30.0;
    let _ = writeln!(
        h,
        "<svg id=\"timeline-svg\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" \
         role=\"img\" aria-label=\"timeline of attempts\">",
        w = LABEL_W + AXIS_W + 20.0
    );
    for (i, r) in tl.rows.iter().enumerate() {
        let y = ROW_H * i as f64;
        let label = row_label(r);
        let short = row_label_cut(r, LABEL_CHARS);
        let _ = writeln!(
            h,
            "<text x=\"0\" y=\"{:.1}\"><title>{}</title>{}</text><line class=\"axis\" x1=\"{LABEL_W}\" \
             x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
            y + 15.0,
            escape(&label),
            escape(&short),
            LABEL_W + AXIS_W,
            y + ROW_H - 1.0,
            y + ROW_H - 1.0
        );
    }
    for b in &tl.bars {
        let (t, a) = attempts[b.attempt];
        let _ = writeln!(
            h,
            "<rect class=\"{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"2\">\
             <title>{} ({}) on {}: {} {} in {}, from {}</title></rect>",
            a.outcome.as_str(),
            LABEL_W + b.x,
            ROW_H * b.row as f64 + 3.0,
            b.width,
            ROW_H - 8.0,
            escape(&t.name),
            escape(&t.short),
            escape(&a.device),
            a.outcome.as_str(),
            escape(&a.code),
            duration(a.runtime()),
            timestamp(a.started_at)
        );
    }
    let axis_y = ROW_H * tl.rows.len() as f64 + 18.0;
    for k in 0..=4 {
        let x = LABEL_W + AXIS_W * f64::from(k) / 4.0;
        let at = (tl.end - tl.start) * i64::from(k) / 4;
        let anchor = match k {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            h,
            "<text x=\"{x:.1}\" y=\"{axis_y:.1}\" text-anchor=\"{anchor}\">+{}</text>",
            duration(at)
        );
    }
    h.push_str("</svg>\n");
}

/// A row's label: the device, and the lane from the second on (`laptop #2`).
fn row_label(r: &Row) -> String {
    row_label_cut(r, usize::MAX)
}

/// [`row_label`] in at most `max` characters: a long device name is cut
/// (ending in `…`), the lane never.
fn row_label_cut(r: &Row, max: usize) -> String {
    let lane = if r.lane == 0 {
        String::new()
    } else {
        format!(" #{}", r.lane + 1)
    };
    let room = max.saturating_sub(lane.chars().count()).max(1);
    let device: String = if r.device.chars().count() > room {
        r.device.chars().take(room - 1).chain(['…']).collect()
    } else {
        r.device.clone()
    };
    device + &lane
}

/// The most tasks the durations chart shows (the longest ones).
const MAX_DURATIONS: usize = 40;

/// Task durations, longest first, as bars: stragglers stand out.
fn durations(h: &mut String, pool: &Pool) {
    let mut ran: Vec<(&Task, &Attempt)> = tasks(pool)
        .filter_map(|t| Some((t, t.main_attempt()?)))
        .collect();
    if ran.is_empty() {
        return;
    }
    ran.sort_by_key(|(t, a)| (std::cmp::Reverse(a.runtime()), t.name.as_str()));
    let longest = ran.first().map_or(1, |(_, a)| a.runtime().max(1));
    h.push_str("<h2 id=\"durations\">Durations</h2>\n<table id=\"durations-table\">\n");
    for (t, a) in ran.iter().take(MAX_DURATIONS) {
        let _ = writeln!(
            h,
            "<tr data-name=\"{name}\"><td>{name}</td><td class=\"num\">{}</td>\
             <td style=\"width:60%\"><span class=\"bar\" style=\"width:{:.1}%\"></span></td></tr>",
            duration(a.runtime()),
            a.runtime() as f64 * 100.0 / longest as f64,
            name = escape(&t.name)
        );
    }
    h.push_str("</table>\n");
    if ran.len() > MAX_DURATIONS {
        let _ = writeln!(
            h,
            "<p class=\"meta\">and {} shorter task(s).</p>",
            ran.len() - MAX_DURATIONS
        );
    }
}

/// The failed tasks, each failed attempt with its log tails.
fn failures(h: &mut String, pool: &Pool) {
    let failed: Vec<&Task> = tasks(pool).filter(|t| t.status == Status::Failed).collect();
    let _ = writeln!(h, "<h2 id=\"failures\">Failures ({})</h2>", failed.len());
    if failed.is_empty() {
        h.push_str("<p>No task failed.</p>\n");
        return;
    }
    for t in failed {
        let _ = writeln!(
            h,
            "<details open class=\"failure\"><summary>{} <span class=\"id\">{}</span></summary>",
            escape(&t.name),
            escape(&t.short)
        );
        for a in t.attempts.iter().filter(|a| a.outcome.counts_as_failure()) {
            let _ = writeln!(
                h,
                "<p><span class=\"badge {0}\">{0}</span>{1} on {2}, {3}, after {4}</p>",
                a.outcome.as_str(),
                escape(&a.code),
                escape(&a.device),
                timestamp(a.started_at),
                duration(a.runtime())
            );
            if let Some(m) = &a.message {
                let _ = writeln!(h, "<p>{}</p>", escape(m));
            }
            for (label, tail) in [("stderr", &a.stderr_tail), ("stdout", &a.stdout_tail)] {
                if !tail.is_empty() {
                    let _ = writeln!(
                        h,
                        "<div class=\"meta\">{label} (last lines)</div><pre>{}</pre>",
                        escape(tail)
                    );
                }
            }
        }
        h.push_str("</details>\n");
    }
}

/// Each batch: its counts, then a row per task.
fn batches(h: &mut String, pool: &Pool) {
    h.push_str(
        "<h2 id=\"batches\">Batches</h2>\n<input id=\"filter\" type=\"search\" \
         placeholder=\"Filter tasks by name\" aria-label=\"filter tasks by name\">\n",
    );
    if pool.batches.is_empty() {
        h.push_str("<p>No tasks yet: submit some with <code>bridge submit</code>.</p>\n");
    }
    for b in &pool.batches {
        let all: Vec<&Task> = b.tasks.iter().collect();
        let _ = write!(
            h,
            "<details open class=\"batch\"><summary>Batch <span class=\"id\">{}</span>, \
             submitted {} by {}: {} task(s) ",
            escape(&b.short),
            timestamp(b.created_at),
            escape(&b.submitted_by),
            all.len()
        );
        badges(h, &all);
        h.push_str(
            "</summary>\n<table class=\"tasks\"><tr><th>Task</th><th>Id</th><th>Status</th>\
             <th class=\"num\">Attempts</th><th class=\"num\">Duration</th><th>Ran on</th></tr>\n",
        );
        for t in &b.tasks {
            let ran_on: BTreeSet<&str> = t.attempts.iter().map(|a| a.device.as_str()).collect();
            let ran_on: Vec<String> = ran_on.into_iter().map(escape).collect();
            let _ = writeln!(
                h,
                "<tr data-name=\"{name}\"><td>{name}{reason}</td><td class=\"id\">{}</td>\
                 <td><span class=\"badge {st}\">{st}</span></td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&t.short),
                t.attempts.len(),
                t.main_attempt()
                    .map(|a| duration(a.runtime()))
                    .unwrap_or_default(),
                ran_on.join(", "),
                name = escape(&t.name),
                reason = t
                    .reason
                    .as_ref()
                    .map(|r| format!(" <span class=\"meta\">({})</span>", escape(r)))
                    .unwrap_or_default(),
                st = t.status.as_str(),
            );
        }
        h.push_str("</table></details>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup_and_shows_control_characters() {
        assert_eq!(
            escape("<script>alert('x')</script></div>&\"\u{1b}[31m\nok\t"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;/div&gt;&amp;&quot;\\u{1b}[31m\nok\t"
        );
        assert_eq!(escape("plain café"), "plain café");
    }

    fn hostile_pool() -> Pool {
        let evil = "<script>document.body.id='pwned'</script></div>";
        Pool {
            workspace: "ws\"><b>".into(),
            remote: None,
            generated_at: 1_700_000_000_000,
            unreadable_batches: 0,
            batches: vec![Batch {
                short: "b1".into(),
                created_at: 1_700_000_000_000,
                submitted_by: evil.into(),
                tasks: vec![Task {
                    short: "t1".into(),
                    name: evil.into(),
                    status: Status::Failed,
                    reason: Some(evil.into()),
                    result: None,
                    attempts: vec![Attempt {
                        device: evil.into(),
                        runner: false,
                        started_at: 1_700_000_000_000,
                        ended_at: 1_700_000_001_000,
                        outcome: Outcome::Failed,
                        code: "exit 1".into(),
                        message: Some(evil.into()),
                        stdout_tail: evil.into(),
                        stderr_tail: evil.into(),
                    }],
                }],
            }],
        }
    }

    #[test]
    fn a_hostile_task_adds_no_markup_to_the_page() {
        let page = render(&hostile_pool());
        // The page's own script is the only one, and the only `</div>` is
        // the page's own (the log tail labels).
        assert_eq!(page.matches("<script>").count(), 1, "{page}");
        assert_eq!(page.matches("</script>").count(), 1, "{page}");
        assert_eq!(
            page.matches("</div>").count(),
            2,
            "stderr and stdout labels only: {page}"
        );
        assert!(!page.contains("ws\"><b>"), "{page}");
        assert!(page.contains("ws&quot;&gt;&lt;b&gt;"), "{page}");
        assert!(page.contains("&lt;script&gt;document.body.id=&#39;pwned&#39;"));
        // Only the page's own script may run, by its hash.
        assert!(page.contains("script-src 'sha256-"), "{page}");
    }

    #[test]
    fn the_script_hash_in_the_policy_is_the_script_s() {
        let page = render(&Pool::default());
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
        assert!(page.contains(&format!("'sha256-{hash}'")));
        assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
    }

    #[test]
    fn sequential_attempts_share_a_lane_and_overlapping_ones_do_not() {
        let tl = timeline(
            &[("a", 0, 10), ("a", 10, 20), ("a", 5, 15), ("b", 0, 20)],
            200.0,
        );
        assert_eq!(
            tl.rows,
            vec![
                Row {
                    device: "a".into(),
                    lane: 0
                },
                Row {
                    device: "a".into(),
                    lane: 1
                },
                Row {
                    device: "b".into(),
                    lane: 0
                },
            ]
        );
        let row_of = |i: usize| tl.bars.iter().find(|b| b.attempt == i).map(|b| b.row);
        assert_eq!(row_of(0), Some(0));
        assert_eq!(row_of(1), Some(0), "starts as the first ends: same lane");
        assert_eq!(row_of(2), Some(1), "overlaps both: a lane of its own");
        assert_eq!(row_of(3), Some(2));
        assert_eq!((tl.start, tl.end), (0, 20));
    }

    #[test]
    fn bars_are_placed_on_the_axis_in_proportion() {
        let tl = timeline(&[("a", 1000, 1500), ("b", 1500, 2000)], 100.0);
        let bar = |i: usize| tl.bars.iter().find(|b| b.attempt == i).copied();
        let first = bar(0).unwrap();
        let second = bar(1).unwrap();
        assert_eq!((first.x, first.width), (0.0, 50.0));
        assert_eq!((second.x, second.width), (50.0, 50.0));
        assert!(second.x + second.width <= 100.0);
    }

    #[test]
    fn instants_and_wrong_clocks_still_show_and_never_divide_by_zero() {
        let tl = timeline(&[("a", 5, 5)], 100.0);
        assert_eq!(tl.bars[0].x, 0.0);
        assert_eq!(tl.bars[0].width, MIN_BAR);
        // An end before its start is drawn as an instant at its start.
        let tl = timeline(&[("a", 0, 100), ("b", 50, 10)], 100.0);
        let b = tl.bars.iter().find(|b| b.attempt == 1).unwrap();
        assert_eq!((b.x, b.width), (50.0, MIN_BAR));
        assert!(timeline(&[], 100.0).bars.is_empty());
    }

    #[test]
    fn a_long_device_name_is_cut_but_its_lane_kept() {
        let row = |device: &str, lane| Row {
            device: device.into(),
            lane,
        };
        assert_eq!(row_label_cut(&row("laptop", 0), 10), "laptop");
        assert_eq!(row_label_cut(&row("laptop", 1), 10), "laptop #2");
        assert_eq!(row_label_cut(&row("workstation", 0), 8), "worksta…");
        assert_eq!(row_label_cut(&row("workstation", 2), 8), "work… #3");
        assert_eq!(row_label(&row("workstation", 2)), "workstation #3");
    }

    #[test]
    fn minutes_sum_runtimes_per_device_and_give_the_span() {
        let mut pool = hostile_pool();
        let t = &mut pool.batches[0].tasks[0];
        t.attempts[0].device = "laptop".into();
        let mut second = t.attempts[0].clone();
        second.started_at += 60_000;
        second.ended_at += 120_000; // 61 s
        t.attempts.push(second);
        let mut third = t.attempts[0].clone();
        third.device = "gh-runner".into();
        third.runner = true;
        third.ended_at = third.started_at; // an instant: adds no runtime
        t.attempts.push(third);
        let page = render(&pool);
        assert!(page.contains("3 attempt(s) ran for <b>1m02s</b>"), "{page}");
        assert!(page.contains("<td>gh-runner (runner)</td>"), "{page}");
        assert!(page.contains("wall-clock span of <b>2m01s</b>"), "{page}");
        assert!(
            page.contains("<td>laptop</td><td class=\"num\">2</td>"),
            "{page}"
        );
    }
}
