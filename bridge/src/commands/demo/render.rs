//! How GitHub shows what a runner wrote, as plain text for the demo's
//! terminal: the workflow commands of a step's log ([`WorkflowLog`]) and the
//! Markdown of a job summary ([`summary_text`]). Pure functions of text, so
//! that what the demo shows is tested on what `bridge run` writes.

/// One step's log as GitHub shows it, line by line: `::add-mask::` hidden,
/// a `::group::` as its title (GitHub folds the lines below it; here they
/// are indented), `::error` annotations as `Error: TITLE: MESSAGE`, and
/// nothing taken as a command between `::stop-commands::TOKEN` and
/// `::TOKEN::`.
#[derive(Debug, Default)]
pub struct WorkflowLog {
    in_group: bool,
    /// The token that ends a pause of workflow commands.
    paused: Option<String>,
}

impl WorkflowLog {
    /// The lines to show for one line of the log (none, or one).
    pub fn line(&mut self, line: &str) -> Option<String> {
        let indent = if self.in_group { "    " } else { "" };
        if let Some(token) = &self.paused {
            if line.strip_prefix("::").and_then(|l| l.strip_suffix("::")) == Some(token) {
                self.paused = None;
                return None;
            }
            return Some(format!("{indent}{line}"));
        }
        let Some(command) = line.strip_prefix("::") else {
            return Some(format!("{indent}{line}"));
        };
        let (name, data) = command.split_once("::").unwrap_or((command, ""));
        let (name, properties) = name.split_once(' ').unwrap_or((name, ""));
        match name {
            "add-mask" => None,
            "stop-commands" => {
                self.paused = Some(data.to_owned());
                None
            }
            "group" => {
                self.in_group = true;
                Some(format!("▸ {}", unescape_data(data)))
            }
            "endgroup" => {
                self.in_group = false;
                None
            }
            "error" | "warning" | "notice" => {
                let title = properties
                    .split(',')
                    .find_map(|p| p.strip_prefix("title="))
                    .map(unescape_property);
                let mut kind = name.to_owned();
                if let Some(first) = kind.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                let message = unescape_data(data).replace('\n', "\n      ");
                Some(match title {
                    Some(t) => format!("{indent}{kind}: {t}: {message}"),
                    None => format!("{indent}{kind}: {message}"),
                })
            }
            // A command GitHub would act on without showing it.
            _ => None,
        }
    }
}

/// A workflow command's message, unescaped.
fn unescape_data(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

/// A workflow command's property value, unescaped.
fn unescape_property(s: &str) -> String {
    unescape_data(&s.replace("%3A", ":").replace("%2C", ","))
}

/// A job summary (GitHub-flavoured Markdown, as `bridge run` writes it) as
/// plain text: headings underlined, emphasis and backslash escapes dropped,
/// tables in aligned columns, code blocks indented.
pub fn summary_text(md: &str) -> String {
    let mut out = String::new();
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut in_code = false;
    for line in md.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push_str(&format!("    {line}\n"));
            continue;
        }
        if line.starts_with('|') {
            let cells = table_cells(line);
            if !cells
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-'))
            {
                table.push(cells);
            }
            continue;
        }
        out.push_str(&aligned(&std::mem::take(&mut table)));
        let heading = line.trim_start_matches('#');
        if heading.len() < line.len() && heading.starts_with(' ') {
            let text = inline_text(heading.trim());
            let rule = if line.starts_with("####") { '-' } else { '=' };
            out.push_str(&format!(
                "{text}\n{}\n",
                rule.to_string().repeat(text.chars().count())
            ));
        } else if let Some(item) = line.strip_prefix("- ") {
            out.push_str(&format!("  • {}\n", inline_text(item)));
        } else {
            out.push_str(&inline_text(line));
            out.push('\n');
        }
    }
    out.push_str(&aligned(&table));
    out
}

/// The cells of a table row, split on the `|` that are not escaped, each
/// as plain text.
fn table_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            cell.push('\\');
            cell.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '|' {
            cells.push(inline_text(cell.trim()));
            cell.clear();
        } else {
            cell.push(c);
        }
    }
    if !cell.trim().is_empty() {
        cells.push(inline_text(cell.trim()));
    }
    cells
}

/// Rows in columns as wide as their widest cell, two spaces apart.
fn aligned(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Inline Markdown as the text it shows: `**`, `` ` `` and backslash
/// escapes dropped.
fn inline_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
            }
            '`' => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(log: &str) -> Vec<String> {
        let mut w = WorkflowLog::default();
        log.lines().filter_map(|l| w.line(l)).collect()
    }

    #[test]
    fn workflow_commands_show_as_on_github() {
        let log = "::add-mask::secret\n\
                   ::group::bridge 0.1.0 · shard 1/2\n\
                   store: git:/tmp/store.git\n\
                   ::endgroup::\n\
                   ▶ count[book=alice] (3f9a1c) attempt 1 · shard 1/2\n\
                   ::group::✗ bad (0.1s)\n\
                   ::stop-commands::abc123\n\
                   ::error::not a command\n\
                   ::abc123::\n\
                   ::endgroup::\n\
                   ::error title=task bad failed%3A exit 1::exit 1%0Aline two — bridge logs 0a1b\n\
                   ::set-output name=x::y";
        assert_eq!(
            shown(log),
            [
                "▸ bridge 0.1.0 · shard 1/2",
                "    store: git:/tmp/store.git",
                "▶ count[book=alice] (3f9a1c) attempt 1 · shard 1/2",
                "▸ ✗ bad (0.1s)",
                "    ::error::not a command",
                "Error: task bad failed: exit 1: exit 1\n      line two — bridge logs 0a1b",
            ]
        );
    }

    #[test]
    fn a_job_summary_reads_as_plain_text() {
        let md = "### bridge run (shard 1/2)\n\n\
                  0 done · 1 failed · 1 interrupted · **4 left in the pool** · 2.1s\n\n\
                  #### Failed tasks\n\n\
                  - `0a1b` count\\-dracula (failed): exit 1\n\n\
                  | task | id | outcome |\n| --- | --- | --- |\n\
                  | count\\[book\\=alice\\] | `3f9a1c` | ⊘ interrupted |\n\
                  | count\\-dracula | `0a1b` | ✗ failed |\n\n\
                  ```sh\nbridge sync   # fetch these results\n```\n";
        assert_eq!(
            summary_text(md),
            "bridge run (shard 1/2)\n======================\n\n\
             0 done · 1 failed · 1 interrupted · 4 left in the pool · 2.1s\n\n\
             Failed tasks\n------------\n\n\
             \x20 • 0a1b count-dracula (failed): exit 1\n\n\
             task               id      outcome\n\
             count[book=alice]  3f9a1c  ⊘ interrupted\n\
             count-dracula      0a1b    ✗ failed\n\n\
             \x20   bridge sync   # fetch these results\n"
        );
    }
}
