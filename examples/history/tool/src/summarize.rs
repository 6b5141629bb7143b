//! Summarises the edit history of one saved Automerge document.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::Context;
use automerge::{ActorId, AutoCommit, ChangeHash, ROOT, ReadDoc, hydrate};
use serde::Serialize;

use crate::dates::{DAY, day_string, time_string};

/// The summary of one document (`summarize` writes it as JSON).
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The file name.
    pub document: String,
    /// The root `title`, if the document has a string there.
    pub title: Option<String>,
    /// Changes in the history (each commit of each actor is one).
    pub changes: u64,
    /// Operations in those changes.
    pub ops: u64,
    /// Changes made after merging others' concurrent work (more than one dependency).
    pub merges: u64,
    pub first_edit: String,
    pub last_edit: String,
    /// Authors, most changes first.
    pub authors: Vec<Author>,
    /// Changes per UTC day (days with none are left out).
    pub edits_per_day: BTreeMap<String, u64>,
    /// Changes per UTC day and author.
    pub edits_per_day_by_author: BTreeMap<String, BTreeMap<String, u64>>,
    /// Characters of text (text objects and string values) at the end of
    /// every day that had changes.
    pub size_over_time: Vec<SizePoint>,
    /// Characters of text now.
    pub final_chars: u64,
}

#[derive(Debug, Serialize)]
pub struct Author {
    /// The actor id as text if it is printable, else in hex.
    pub author: String,
    /// The actor id in hex.
    pub actor: String,
    pub changes: u64,
    pub ops: u64,
    pub days_active: u64,
    pub first_edit: String,
    pub last_edit: String,
}

#[derive(Debug, Serialize)]
pub struct SizePoint {
    pub day: String,
    /// Changes up to the end of that day.
    pub changes: u64,
    pub chars: u64,
}

/// Reads and summarises a saved document.
pub fn summarize_file(path: &Path) -> anyhow::Result<Summary> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut doc = AutoCommit::load(&bytes)
        .with_context(|| format!("{} is not a saved Automerge document", path.display()))?;
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    summarize(&name, &mut doc)
}

/// A change's time in Unix seconds: Rust writers store seconds, JavaScript
/// ones milliseconds (anything past the year 5138 in seconds is taken as ms).
fn seconds(timestamp: i64) -> i64 {
    if timestamp.abs() >= 100_000_000_000 {
        timestamp.div_euclid(1000)
    } else {
        timestamp
    }
}

/// An actor id as a person would read it.
fn author_name(actor: &ActorId) -> String {
    let bytes = actor.to_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()) => s.to_owned(),
        _ => actor.to_hex_string(),
    }
}

struct Meta {
    hash: ChangeHash,
    deps: Vec<ChangeHash>,
    author: String,
    actor: String,
    time: i64,
    ops: u64,
}

pub fn summarize(name: &str, doc: &mut AutoCommit) -> anyhow::Result<Summary> {
    let changes: Vec<Meta> = doc
        .get_changes(&[])
        .iter()
        .map(|c| Meta {
            hash: c.hash(),
            deps: c.deps().to_vec(),
            author: author_name(c.actor_id()),
            actor: c.actor_id().to_hex_string(),
            time: seconds(c.timestamp()),
            ops: c.len() as u64,
        })
        .collect();
    let title = match doc.get(ROOT, "title")? {
        Some((v, _)) => v.as_str().map(str::to_owned),
        None => None,
    };

    let mut edits_per_day: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_day_author: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    struct Acc {
        actor: String,
        changes: u64,
        ops: u64,
        days: BTreeSet<i64>,
        first: i64,
        last: i64,
    }
    let mut authors: BTreeMap<String, Acc> = BTreeMap::new();
    for c in &changes {
        let day = c.time.div_euclid(DAY);
        *edits_per_day.entry(day_string(day)).or_default() += 1;
        *by_day_author
            .entry(day_string(day))
            .or_default()
            .entry(c.author.clone())
            .or_default() += 1;
        let a = authors.entry(c.author.clone()).or_insert_with(|| Acc {
            actor: c.actor.clone(),
            changes: 0,
            ops: 0,
            days: BTreeSet::new(),
            first: c.time,
            last: c.time,
        });
        a.changes += 1;
        a.ops += c.ops;
        a.days.insert(day);
        a.first = a.first.min(c.time);
        a.last = a.last.max(c.time);
    }
    let mut authors: Vec<Author> = authors
        .into_iter()
        .map(|(author, a)| Author {
            author,
            actor: a.actor,
            changes: a.changes,
            ops: a.ops,
            days_active: a.days.len() as u64,
            first_edit: time_string(a.first),
            last_edit: time_string(a.last),
        })
        .collect();
    authors.sort_by(|x, y| y.changes.cmp(&x.changes).then(x.author.cmp(&y.author)));

    let size_over_time = size_over_time(doc, &changes)?;
    let final_chars = chars(&doc.document().hydrate(None));
    let first = changes.iter().map(|c| c.time).min().unwrap_or(0);
    let last = changes.iter().map(|c| c.time).max().unwrap_or(0);
    Ok(Summary {
        document: name.to_owned(),
        title,
        changes: changes.len() as u64,
        ops: changes.iter().map(|c| c.ops).sum(),
        merges: changes.iter().filter(|c| c.deps.len() > 1).count() as u64,
        first_edit: time_string(first),
        last_edit: time_string(last),
        authors,
        edits_per_day,
        edits_per_day_by_author: by_day_author,
        size_over_time,
        final_chars,
    })
}

/// The document's size at the end of each day with changes: the state made
/// of every change up to that day (and, should clocks disagree, whatever
/// those changes depend on).
fn size_over_time(doc: &mut AutoCommit, changes: &[Meta]) -> anyhow::Result<Vec<SizePoint>> {
    let index: HashMap<ChangeHash, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash, i))
        .collect();
    let days: BTreeSet<i64> = changes.iter().map(|c| c.time.div_euclid(DAY)).collect();
    let mut included = vec![false; changes.len()];
    let mut out = Vec::with_capacity(days.len());
    for day in days {
        let mut todo: Vec<usize> = (0..changes.len())
            .filter(|&i| !included[i] && changes[i].time.div_euclid(DAY) <= day)
            .collect();
        while let Some(i) = todo.pop() {
            if included[i] {
                continue;
            }
            included[i] = true;
            todo.extend(changes[i].deps.iter().filter_map(|d| index.get(d).copied()));
        }
        let mut depended: BTreeSet<ChangeHash> = BTreeSet::new();
        for (i, c) in changes.iter().enumerate() {
            if included[i] {
                depended.extend(c.deps.iter().copied());
            }
        }
        let heads: Vec<ChangeHash> = changes
            .iter()
            .enumerate()
            .filter(|(i, c)| included[*i] && !depended.contains(&c.hash))
            .map(|(_, c)| c.hash)
            .collect();
        let state = doc.document().hydrate(Some(&heads));
        out.push(SizePoint {
            day: day_string(day),
            changes: included.iter().filter(|&&b| b).count() as u64,
            chars: chars(&state),
        });
    }
    Ok(out)
}

/// Characters of text in a hydrated value: text objects and strings.
fn chars(v: &hydrate::Value) -> u64 {
    match v {
        hydrate::Value::Scalar(automerge::ScalarValue::Str(s)) => s.chars().count() as u64,
        hydrate::Value::Scalar(_) => 0,
        hydrate::Value::Text(t) => t.to_string().chars().count() as u64,
        hydrate::Value::Map(m) => m.iter().map(|(_, mv)| chars(&mv.value)).sum(),
        hydrate::Value::List(l) => l.iter().map(|lv| chars(&lv.value)).sum(),
    }
}
