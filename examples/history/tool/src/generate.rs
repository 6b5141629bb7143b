//! Generates Automerge documents edited by several authors over days.
//!
//! Every document starts with one author's "create" change. Then, day after
//! day, each author who works on it that day makes a few edits on an own
//! replica (insertions, deletions, word replacements, a new title), each
//! edit one change committed with its time; in the evening all replicas
//! sync. Authors edit concurrently, so histories branch and merge like real
//! ones. The random numbers come from the seed only: the same
//! arguments make byte-identical files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, Change, ObjType, ROOT, ReadDoc};
use serde::Serialize;

use crate::dates::{DAY, day_string};

/// What to generate.
pub struct Params {
    pub dir: PathBuf,
    pub docs: usize,
    pub actors: usize,
    pub days: u32,
    /// The first day (days since 1970-01-01).
    pub start: i64,
    pub seed: u64,
}

/// What was generated: `manifest.json`.
#[derive(Serialize)]
pub struct Manifest {
    pub docs: usize,
    pub actors: Vec<String>,
    pub days: u32,
    pub first_day: String,
    pub seed: u64,
    pub totals: Totals,
    pub documents: Vec<DocManifest>,
}

#[derive(Default, Serialize)]
pub struct Totals {
    pub changes: u64,
    pub changes_by_author: BTreeMap<String, u64>,
    pub changes_by_day: BTreeMap<String, u64>,
    pub final_chars: u64,
}

#[derive(Serialize)]
pub struct DocManifest {
    pub file: String,
    pub title: String,
    pub changes: u64,
    pub changes_by_author: BTreeMap<String, u64>,
    pub changes_by_day: BTreeMap<String, u64>,
    /// Characters of text (title and body) in the final document.
    pub final_chars: u64,
}

const NAMES: &[&str] = &[
    "ada", "grace", "alan", "barbara", "edsger", "margaret", "donald", "frances", "john", "radia",
    "ken", "hedy",
];

const TOPICS: &[&str] = &[
    "roadmap",
    "meeting notes",
    "design review",
    "release plan",
    "budget",
    "field report",
    "reading list",
    "recipe book",
    "trip itinerary",
    "research log",
];

const WORDS: &[&str] = &[
    "the", "a", "of", "and", "to", "in", "we", "plan", "draft", "review", "ship", "fix", "test",
    "data", "model", "user", "team", "week", "idea", "note", "list", "sync", "merge", "edit",
    "offline", "replica", "change", "history", "document", "version", "budget", "cost", "risk",
    "deadline", "meeting", "question", "answer", "result", "summary", "detail", "river", "garden",
    "bridge", "mountain", "lantern", "harbour", "orchard", "compass", "journey", "letter",
];

/// SplitMix64: small, fast, and good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }

    fn words(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| self.pick(WORDS))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How an author works across all documents: how much, from which day, and
/// a holiday, so that the timeline has people in it.
struct Profile {
    /// A factor on the chance to edit on a given day.
    level: f64,
    /// The first day (from the start) the author edits anything.
    joins: i64,
    /// Days (from the start) without any edit: [from, to).
    away: (i64, i64),
}

impl Profile {
    fn chance(&self, day: i64) -> f64 {
        if day < self.joins || (self.away.0..self.away.1).contains(&day) {
            0.0
        } else {
            self.level
        }
    }
}

fn profiles(p: &Params) -> Vec<Profile> {
    let mut rng = Rng(p.seed ^ 0xA076_1D64_78BD_642F);
    let days = i64::from(p.days);
    (0..p.actors)
        .map(|a| {
            let level = 0.4 + 0.8 * rng.unit();
            // The first two authors are there from the start; the others
            // may join in the first third of the period.
            let joins = if a < 2 {
                0
            } else {
                rng.below(days as u64 / 3 + 1) as i64
            };
            let len = 3 + rng.below(7) as i64;
            let from = rng.below(days as u64) as i64;
            // Every other author takes a holiday.
            let away = if a % 2 == 1 {
                (from, from + len)
            } else {
                (0, 0)
            };
            Profile { level, joins, away }
        })
        .collect()
}

/// The author names: well-known names first, then `author-N`.
fn author_names(k: usize) -> Vec<String> {
    (0..k)
        .map(|i| match NAMES.get(i) {
            Some(n) => (*n).to_owned(),
            None => format!("author-{}", i + 1),
        })
        .collect()
}

/// Generates the documents and writes them with `manifest.json`.
pub fn generate(p: &Params) -> anyhow::Result<Manifest> {
    std::fs::create_dir_all(&p.dir)
        .with_context(|| format!("cannot create {}", p.dir.display()))?;
    let names = author_names(p.actors);
    let profiles = profiles(p);
    // Documents are independent (each has its own random stream): make them
    // on every core, then write them in order.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(p.docs.max(1));
    let made: Vec<anyhow::Result<(Vec<u8>, DocManifest)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (names, profiles) = (&names, &profiles);
                scope.spawn(move || {
                    (t..p.docs)
                        .step_by(threads)
                        .map(|i| (i, generate_doc(p, names, profiles, i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<_> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    });
    let mut totals = Totals::default();
    let mut documents = Vec::with_capacity(p.docs);
    for result in made {
        let (bytes, doc) = result?;
        let path = p.dir.join(&doc.file);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        totals.changes += doc.changes;
        totals.final_chars += doc.final_chars;
        for (a, n) in &doc.changes_by_author {
            *totals.changes_by_author.entry(a.clone()).or_default() += n;
        }
        for (d, n) in &doc.changes_by_day {
            *totals.changes_by_day.entry(d.clone()).or_default() += n;
        }
        documents.push(doc);
    }
    let manifest = Manifest {
        docs: p.docs,
        actors: names,
        days: p.days,
        first_day: day_string(p.start),
        seed: p.seed,
        totals,
        documents,
    };
    let path = p.dir.join("manifest.json");
    let mut text = serde_json::to_string_pretty(&manifest)?;
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(manifest)
}

fn generate_doc(
    p: &Params,
    names: &[String],
    profiles: &[Profile],
    index: usize,
) -> anyhow::Result<(Vec<u8>, DocManifest)> {
    let mut rng = Rng(p.seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let file = format!("doc-{index:04}.automerge");
    let k = names.len();
    let actor = |a: usize| ActorId::from(names[a].as_bytes());
    let mut by_author: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_day: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = |a: usize, day: i64| {
        *by_author.entry(names[a].clone()).or_default() += 1;
        *by_day.entry(day_string(day)).or_default() += 1;
    };

    // How keen each author is on this document; its creator most of all.
    let creator = rng.below(k as u64) as usize;
    let keen: Vec<f64> = (0..k)
        .map(|a| if a == creator { 0.7 } else { rng.unit() * 0.5 })
        .collect();

    let title = format!("{} {}", rng.pick(TOPICS), index + 1);
    let mut base = AutoCommit::new().with_actor(actor(creator));
    base.put(ROOT, "title", title.as_str())?;
    let body = base.put_object(ROOT, "body", ObjType::Text)?;
    let n = 20 + rng.below(30) as usize;
    let first = format!("{}.", rng.words(n));
    base.splice_text(&body, 0, 0, &first)?;
    let created = p.start * DAY + 8 * 3600 + rng.below(3600) as i64;
    base.commit_with(
        CommitOptions::default()
            .with_time(created)
            .with_message(format!("create {title}")),
    );
    count(creator, p.start);

    // The shared document as of the last sync. Each day, every author who
    // works on the document starts from it (a fork under the author's actor:
    // what that author's replica holds after last evening's sync), and the
    // day's changes of all authors are merged into it in the evening. The
    // authors' edits of a day are thus concurrent, as on real replicas.
    let mut doc = base;
    for d in 0..i64::from(p.days) {
        let day = p.start + d;
        // Less work on Saturdays and Sundays (1970-01-01 was a Thursday).
        let weekend = (day + 3).rem_euclid(7) >= 5;
        let mut today: Vec<Change> = Vec::new();
        for (a, keen) in keen.iter().enumerate() {
            let chance = profiles[a].chance(d) * if weekend { keen * 0.2 } else { *keen };
            if rng.unit() >= chance {
                continue;
            }
            let mut replica = doc.fork().with_actor(actor(a));
            let edits = 1 + rng.below(4) as usize;
            // Working hours, in order; never before the document existed.
            let mut times: Vec<i64> = (0..edits)
                .map(|_| day * DAY + 8 * 3600 + rng.below(11 * 3600) as i64)
                .map(|t| t.max(created + 1))
                .collect();
            times.sort_unstable();
            for t in times {
                let message = edit(&mut replica, &body, &mut rng)?;
                let hash = replica
                    .commit_with(CommitOptions::default().with_time(t).with_message(message))
                    .context("an edit made no change")?;
                today.push(
                    replica
                        .get_change_by_hash(&hash)
                        .context("a change just made is missing")?,
                );
                count(a, day);
            }
        }
        if !today.is_empty() {
            doc.apply_changes(today)?;
        }
    }
    let final_title = match doc.get(ROOT, "title")? {
        Some((v, _)) => v.as_str().unwrap_or_default().to_owned(),
        None => String::new(),
    };
    let final_chars = (final_title.chars().count() + doc.text(&body)?.chars().count()) as u64;
    let changes = by_author.values().sum();
    Ok((
        doc.save(),
        DocManifest {
            file,
            title: final_title,
            changes,
            changes_by_author: by_author,
            changes_by_day: by_day,
            final_chars,
        },
    ))
}

/// One edit of the body (or the title), returning the change's message.
fn edit(doc: &mut AutoCommit, body: &automerge::ObjId, rng: &mut Rng) -> anyhow::Result<String> {
    let len = doc.length(body);
    let roll = rng.below(100);
    Ok(if roll < 60 || len < 40 {
        let at = rng.below(len as u64 + 1) as usize;
        let n = 1 + rng.below(12) as usize;
        let text = format!(" {}", rng.words(n));
        doc.splice_text(body, at, 0, &text)?;
        format!("insert {} characters", text.len())
    } else if roll < 85 {
        let n = 1 + rng.below((len / 8).max(1) as u64) as usize;
        let at = rng.below((len - n) as u64 + 1) as usize;
        doc.splice_text(body, at, n as isize, "")?;
        format!("delete {n} characters")
    } else if roll < 97 {
        let word = rng.pick(WORDS);
        let at = rng.below((len - 4) as u64) as usize;
        doc.splice_text(body, at, 4, word)?;
        format!("replace 4 characters with `{word}`")
    } else {
        let mut title = format!("{} (rev. {})", rng.pick(TOPICS), rng.below(100));
        let current = match doc.get(automerge::ROOT, "title")? {
            Some((v, _)) => v.as_str().unwrap_or_default().to_owned(),
            None => String::new(),
        };
        if title == current {
            // Putting the same value makes no change (and no history).
            title.push('+');
        }
        doc.put(automerge::ROOT, "title", title.as_str())?;
        format!("retitle: {title}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summarize::summarize;

    fn params(docs: usize, actors: usize, days: u32) -> Params {
        Params {
            dir: PathBuf::from("unused"),
            docs,
            actors,
            days,
            start: crate::dates::parse_day("2025-03-03").expect("a date"),
            seed: 7,
        }
    }

    #[test]
    fn summaries_count_what_was_generated() {
        let p = params(4, 3, 12);
        let names = author_names(p.actors);
        let profiles = profiles(&p);
        let mut merges = 0;
        for i in 0..p.docs {
            let (bytes, made) = generate_doc(&p, &names, &profiles, i).expect("generated");
            let (again, _) = generate_doc(&p, &names, &profiles, i).expect("generated");
            assert_eq!(bytes, again, "the same seed makes the same bytes");
            let mut doc = AutoCommit::load(&bytes).expect("a saved document");
            let s = summarize(&made.file, &mut doc).expect("summarised");
            assert_eq!(s.changes, made.changes);
            assert_eq!(s.final_chars, made.final_chars);
            assert_eq!(s.title.as_deref(), Some(made.title.as_str()));
            assert_eq!(s.edits_per_day, made.changes_by_day);
            let by_author: BTreeMap<String, u64> = s
                .authors
                .iter()
                .map(|a| (a.author.clone(), a.changes))
                .collect();
            assert_eq!(by_author, made.changes_by_author);
            assert_eq!(
                s.size_over_time.last().map(|p| p.chars),
                Some(made.final_chars)
            );
            assert_eq!(
                s.size_over_time.last().map(|p| p.changes),
                Some(made.changes)
            );
            merges += s.merges;
        }
        assert!(merges > 0, "authors edited concurrently");
    }
}
