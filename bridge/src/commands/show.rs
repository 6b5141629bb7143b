//! `bridge show`: everything known about one task.

use bridge_model::view::{Derived, TaskView, canonical_result};
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::common::{Target, one_task_or_list, open_session, resolve_target};
use crate::error::{CliResult, EXIT_OK};
use crate::output::{ago, duration, print_json, safe, timestamp};
use crate::run_policy::Refusal;
use crate::workspace::now_ms;

/// Show one task: its command, status, claims and every attempt
///
/// TASK is a task id, a unique prefix of one (4+ digits), or a task name.
/// A matrix entry's name (`count` for `count[book=alice]`, …) or a batch
/// lists its tasks instead (with --json: each of them, as an array).
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The task (id, id prefix or name), a matrix entry or a batch
    pub task: String,
    /// Print JSON: {"id", "name", "status", "reason", "batch", "spec",
    /// "claims", "attempts", "cancels", "retries", …}; every time is RFC 3339
    /// in UTC with milliseconds (`2026-12-06T14:22:08.123Z`)
    #[arg(long)]
    pub json: bool,
}

#[expect(
    clippy::too_many_lines,
    reason = "a command's steps in order; the ratchet (clippy.toml) stops it growing"
)]
pub fn run(g: &GlobalArgs, args: ShowArgs) -> CliResult<u8> {
    let mut session = open_session(g)?;
    let target = resolve_target(&mut session, &args.task)?;
    if args.json
        && let Target::Entry { tasks, .. } | Target::Batch { tasks, .. } = &target
    {
        // A matrix entry or a batch: each of its tasks, as a JSON array.
        return print_many_json(&session, tasks);
    }
    let Some(id) = one_task_or_list(&session, &target, &args.task, "show")? else {
        return Ok(EXIT_OK);
    };
    let now = now_ms();
    let derived = session.view().derive(now, session.policy);
    let Some(t) = session.view().get(&id) else {
        return Ok(EXIT_OK);
    };
    let Some(d) = derived.get(&id) else {
        return Ok(EXIT_OK);
    };
    let result = canonical_result(&t.facts).map(|a| a.key.clone());
    let policy = session.configured_task_policy()?;
    let left = policy.left_for_others(t, d.status);
    if args.json {
        print_json(&task_json(t, d, left.as_ref()))?;
        return Ok(EXIT_OK);
    }
    outln!("Task     {} ({})", t.id, safe(&t.spec.name));
    outln!(
        "Status   {}{}",
        d.status.as_str(),
        d.reason
            .as_ref()
            .map(|r| format!(" ({})", safe(r)))
            .unwrap_or_default()
    );
    if let Some(why) = &left {
        outln!(
            "Here     left for other devices: {why} = {}",
            policy.setting()
        );
    }
    outln!("Batch    {}", t.home().batch());
    print_lines("Command  ", &t.spec.command.display());
    if !t.spec.env.is_empty() {
        let env: Vec<_> = t.spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        outln!("Env      {}", safe(&env.join(" ")));
    }
    for i in &t.spec.inputs {
        outln!("Input    {}", safe(&i.path));
    }
    if !t.spec.outputs.is_empty() {
        outln!("Outputs  {}", safe(&t.spec.outputs.join(" ")));
    }
    outln!(
        "Limits   timeout {}, {} retr{} ({} of {} attempts failed), priority {}",
        duration(
            i64::try_from(t.spec.timeout_s)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000)
        ),
        t.spec.retries,
        if t.spec.retries == 1 { "y" } else { "ies" },
        d.failures.0,
        d.failures.1,
        t.spec.priority
    );
    if !t.spec.runs_on.is_empty() {
        outln!("Runs on  {}", safe(&t.spec.runs_on.join(", ")));
    }
    for need in &t.spec.needs {
        let st = derived.get(need).map_or("unknown", |d| d.status.as_str());
        let name = session
            .view()
            .get(need)
            .map_or("?", |n| n.spec.name.as_str());
        outln!("Needs    {} {} ({st})", need.short(), safe(name));
    }
    for (writer, at) in &t.facts.cancels {
        outln!(
            "Cancel   by {} {}",
            writer.get(32..40).unwrap_or(writer),
            ago(*at, now)
        );
    }
    for c in t.facts.claims.values() {
        if t.facts.attempts.contains_key(&c.key) {
            continue;
        }
        let state = match c.released_at {
            Some(r) => format!("released {}", ago(r, now)),
            None => {
                // Bounded on this device's clock (issue 12, item 12): a
                // writer whose clock is wrong does not hold it longer.
                let end = session.view().lease_end(c, now, session.policy);
                if end == c.lease_until {
                    format!("lease ends {}", ago(end, now))
                } else {
                    format!(
                        "lease ends {} here (its writer's clock says {})",
                        ago(end, now),
                        ago(c.lease_until, now)
                    )
                }
            }
        };
        outln!("Claim    {} made {}, {state}", safe(&c.key), ago(c.at, now));
    }
    if t.facts.attempts.is_empty() {
        outln!("Attempts none yet");
    }
    let mut attempts: Vec<_> = t.facts.attempts.values().collect();
    attempts.sort_by_key(|a| (a.ended_at, a.key.clone()));
    for a in attempts {
        let code = match (a.exit_code, a.signal) {
            (Some(c), _) => format!("exit {c}"),
            (_, Some(s)) => format!("signal {s}"),
            _ => String::new(),
        };
        let mark = if result.as_ref() == Some(&a.key) {
            "  ← result"
        } else {
            ""
        };
        outln!(
            "Attempt  {} on {}: {} {} in {}, ended {}{mark}",
            safe(&a.key),
            if a.device.is_empty() {
                "?".into()
            } else {
                safe(&a.device)
            },
            a.outcome.as_str(),
            code,
            duration(a.ended_at.saturating_sub(a.started_at)),
            timestamp(a.ended_at)
        );
        if let Some(m) = &a.message {
            outln!("         {}", safe(m));
        }
        for path in a.outputs.keys() {
            outln!("         output {}", safe(path));
        }
    }
    Ok(EXIT_OK)
}

/// Everything known about a task, as `show --json` (and `ls --json --full`)
/// print it; with `left_for_others` when this device leaves it for others
/// (see [`crate::run_policy`]).
pub fn task_json(t: &TaskView, d: &Derived, left: Option<&Refusal>) -> serde_json::Value {
    let claims: Vec<_> = t
        .facts
        .claims
        .values()
        .map(|c| {
            json!({"key": c.key, "at": iso(c.at), "lease_until": iso(c.lease_until),
                "released_at": c.released_at.map(iso)})
        })
        .collect();
    let attempts: Vec<serde_json::Value> = t.facts.attempts.values().map(attempt_json).collect();
    let at_times = |facts: &bridge_model::SmallMap<String, i64>| -> serde_json::Value {
        facts
            .iter()
            .map(|(k, at)| (k.clone(), serde_json::Value::from(iso(*at))))
            .collect()
    };
    let mut v = json!({
        "id": t.id,
        "name": t.spec.name,
        "status": d.status,
        "reason": d.reason,
        "batch": t.home().batch(),
        "documents": t.docs,
        "spec": t.spec,
        "failures": d.failures.0,
        "allowed_attempts": d.failures.1,
        "result": canonical_result(&t.facts).map(|a| a.key.clone()),
        "claims": claims,
        "attempts": attempts,
        "cancels": at_times(&t.facts.cancels),
        "retries": at_times(&t.facts.retries),
    });
    if let Some(why) = left {
        v["left_for_others"] = why.to_json();
    }
    v
}

/// Prints `text` after `label`, a multi-line script one line under the
/// other, aligned after the label (issue 17, item 8: it was one line of
/// `\u{a}`); each line escaped as [`safe`] does.
pub fn print_lines(label: &str, text: &str) {
    let indent = " ".repeat(label.chars().count());
    let text = text.trim_matches('\n');
    for (i, line) in text.lines().enumerate() {
        let lead = if i == 0 { label } else { indent.as_str() };
        outln!("{lead}{}", safe(line.trim_end()));
    }
}

/// A time in JSON output: RFC 3339 in UTC with milliseconds
/// (`2026-12-06T14:22:08.123Z`), as every `--json` prints times (issue 17,
/// item 8: these were epoch milliseconds while `status` printed RFC 3339).
/// Strings of this form sort in time order.
pub fn iso(at: bridge_model::Millis) -> String {
    let ms = u64::try_from(at).unwrap_or(0);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// One attempt as JSON: its stored fields, with times as [`iso`].
fn attempt_json(a: &bridge_model::Attempt) -> serde_json::Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    v["started_at"] = iso(a.started_at).into();
    v["ended_at"] = iso(a.ended_at).into();
    v
}

/// `show --json` for several tasks: an array of what it prints for one.
fn print_many_json(
    session: &crate::workspace::Session,
    ids: &[bridge_model::TaskId],
) -> CliResult<u8> {
    let derived = session.view().derive(now_ms(), session.policy);
    let policy = session.configured_task_policy()?;
    let all: Vec<serde_json::Value> = ids
        .iter()
        .filter_map(|id| Some((session.view().get(id)?, derived.get(id)?)))
        .map(|(t, d)| task_json(t, d, policy.left_for_others(t, d.status).as_ref()))
        .collect();
    print_json(&all)?;
    Ok(EXIT_OK)
}
