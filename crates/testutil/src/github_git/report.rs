//! What the server saw, per repository, and the check against GitHub's
//! published recommendations: [`Report`], [`Recommendations`],
//! [`Violation`].
//!
//! Times are offsets from the server's start. The window counts are pure
//! functions of those offsets ([`busiest_window`]), tested on made-up
//! times: no test depends on how fast anything ran.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::hook::Refusal;

/// One POST to `git-receive-pack`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// When the request arrived.
    pub at: Duration,
    /// The request body's size as sent (the pack and the ref commands).
    pub bytes: u64,
    /// How many refs it asked to update (from git's report).
    pub refs: usize,
    /// Why it was refused, if it was.
    pub refused: Option<Refusal>,
}

/// What one repository saw; kept by the server while it runs.
#[derive(Clone, Debug, Default)]
pub(super) struct Log {
    pub(super) pushes: Vec<Push>,
    /// `GET info/refs?service=git-upload-pack`: one per fetch, clone or
    /// ls-remote.
    pub(super) reads: Vec<Duration>,
    /// POSTs to `git-upload-pack` (negotiation rounds, `ls-refs`, the pack).
    pub(super) upload_pack_posts: usize,
    /// Requests refused for want of the right token.
    pub(super) unauthorized: usize,
    /// Requests whose body came gzip'd (`Content-Encoding: gzip`).
    pub(super) gzipped: usize,
    /// POSTs whose body came chunked (no `Content-Length`).
    pub(super) chunked: usize,
}

/// The widest tree reachable from any ref.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeStat {
    pub entries: usize,
    /// Its path from the root of the commit that reached it first
    /// (empty for a root tree).
    pub path: String,
}

/// The largest object reachable from any ref.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectStat {
    pub size: u64,
    pub path: String,
}

/// One repository's figures.
#[derive(Clone, Debug)]
pub struct RepoReport {
    /// `owner/name.git`.
    pub repo: String,
    /// Every push, in arrival order.
    pub pushes: Vec<Push>,
    /// Reads (fetches, clones, ls-remotes): one per upload-pack ref
    /// advertisement.
    pub reads: usize,
    /// POSTs to upload-pack, noted beside the reads.
    pub upload_pack_posts: usize,
    pub unauthorized: usize,
    /// Requests with a gzip'd body (git compresses large fetch requests).
    pub gzipped_requests: usize,
    /// POSTs with a chunked body (git sends large pushes so).
    pub chunked_requests: usize,
    /// Pushes in the busiest 60 s window (the peak minute).
    pub peak_pushes_per_minute: usize,
    /// Pushes in the busiest 5-minute window.
    pub peak_pushes_per_5_minutes: usize,
    /// When that 5-minute window starts.
    pub peak_5_minutes_at: Duration,
    /// Reads in the busiest 1 s window, and when it starts.
    pub peak_reads_per_second: usize,
    pub peak_reads_at: Duration,
    /// Refs in the repository now.
    pub refs: usize,
    pub widest_tree: Option<TreeStat>,
    pub largest_object: Option<ObjectStat>,
}

impl RepoReport {
    /// The refused pushes.
    pub fn refused(&self) -> impl Iterator<Item = &Push> {
        self.pushes.iter().filter(|p| p.refused.is_some())
    }

    /// Bytes sent by the largest push.
    pub fn largest_push(&self) -> u64 {
        self.pushes.iter().map(|p| p.bytes).max().unwrap_or(0)
    }

    pub(super) fn new(repo: String, log: &Log, dir: &Path) -> RepoReport {
        let push_times: Vec<Duration> = log.pushes.iter().map(|p| p.at).collect();
        let (peak_minute, _) = busiest_window(&push_times, Duration::from_secs(60));
        let (peak_5, peak_5_at) = busiest_window(&push_times, Duration::from_secs(300));
        let (peak_reads, peak_reads_at) = busiest_window(&log.reads, Duration::from_secs(1));
        let scan = scan_repository(dir);
        RepoReport {
            repo,
            pushes: log.pushes.clone(),
            reads: log.reads.len(),
            upload_pack_posts: log.upload_pack_posts,
            unauthorized: log.unauthorized,
            gzipped_requests: log.gzipped,
            chunked_requests: log.chunked,
            peak_pushes_per_minute: peak_minute,
            peak_pushes_per_5_minutes: peak_5,
            peak_5_minutes_at: peak_5_at,
            peak_reads_per_second: peak_reads,
            peak_reads_at,
            refs: scan.refs,
            widest_tree: scan.widest_tree,
            largest_object: scan.largest_object,
        }
    }
}

/// The most events in any window `[t, t + width)`, and the `t` (an
/// event's time) where the first such window starts. `(0, 0)` for none.
pub fn busiest_window(times: &[Duration], width: Duration) -> (usize, Duration) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = (0, Duration::ZERO);
    let mut end = 0;
    for (start, &t) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < t + width {
            end += 1;
        }
        if end - start > best.0 {
            best = (end - start, t);
        }
    }
    best
}

/// Everything the server saw, by repository.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub repos: BTreeMap<String, RepoReport>,
}

impl Report {
    /// One repository's figures (`owner/name`, with or without `.git`).
    pub fn repo(&self, name: &str) -> Option<&RepoReport> {
        let name = name.trim_start_matches('/');
        self.repos
            .get(name)
            .or_else(|| self.repos.get(&format!("{name}.git")))
    }

    /// `Ok` if every repository stayed within `limits`, else every
    /// [`Violation`], repository by repository.
    pub fn check(&self, limits: &Recommendations) -> Result<(), Violations> {
        let mut found = Vec::new();
        for r in self.repos.values() {
            let repo = || r.repo.clone();
            if r.peak_pushes_per_5_minutes > limits.pushes_per_minute * 5 {
                found.push(Violation::PushRate {
                    repo: repo(),
                    pushes: r.peak_pushes_per_5_minutes,
                    window_start: r.peak_5_minutes_at,
                    peak_minute: r.peak_pushes_per_minute,
                    limit_per_minute: limits.pushes_per_minute,
                });
            }
            if r.peak_reads_per_second > limits.reads_per_second {
                found.push(Violation::ReadRate {
                    repo: repo(),
                    reads: r.peak_reads_per_second,
                    window_start: r.peak_reads_at,
                    limit: limits.reads_per_second,
                });
            }
            if let Some(tree) = r.widest_tree.as_ref()
                && tree.entries > limits.tree_entries
            {
                found.push(Violation::WideTree {
                    repo: repo(),
                    path: tree.path.clone(),
                    entries: tree.entries,
                    limit: limits.tree_entries,
                });
            }
            if let Some(object) = r.largest_object.as_ref()
                && object.size > limits.object_bytes
            {
                found.push(Violation::LargeObject {
                    repo: repo(),
                    path: object.path.clone(),
                    size: object.size,
                    limit: limits.object_bytes,
                });
            }
            if r.refs > limits.refs {
                found.push(Violation::TooManyRefs {
                    repo: repo(),
                    refs: r.refs,
                    limit: limits.refs,
                });
            }
            for push in r.refused() {
                if let Some(reason) = push.refused.clone() {
                    found.push(Violation::RefusedPush {
                        repo: repo(),
                        at: push.at,
                        reason,
                    });
                }
            }
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(Violations(found))
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in self.repos.values() {
            writeln!(
                f,
                "{}: {} pushes ({} refused, largest {} bytes), peak {}/min, peak {}/5 min; \
                 {} reads ({} upload-pack POSTs), peak {}/s; {} refs; widest tree {}; \
                 largest object {}",
                r.repo,
                r.pushes.len(),
                r.refused().count(),
                r.largest_push(),
                r.peak_pushes_per_minute,
                r.peak_pushes_per_5_minutes,
                r.reads,
                r.upload_pack_posts,
                r.peak_reads_per_second,
                r.refs,
                r.widest_tree
                    .as_ref()
                    .map_or("none".to_owned(), |t| format!(
                        "{} entries at /{}",
                        t.entries, t.path
                    )),
                r.largest_object
                    .as_ref()
                    .map_or("none".to_owned(), |o| format!(
                        "{} bytes at {}",
                        o.size, o.path
                    )),
            )?;
        }
        Ok(())
    }
}

/// GitHub's published repository recommendations and limits ("Repository
/// limits" in GitHub's docs): what a well-behaved fleet stays within.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recommendations {
    /// Pushes per minute per repository, averaged over every 5-minute
    /// window (GitHub: at most 6).
    pub pushes_per_minute: usize,
    /// Git reads per second per repository (GitHub: at most 15).
    pub reads_per_second: usize,
    /// Entries in one directory (GitHub: at most 3,000).
    pub tree_entries: usize,
    /// One object's size (GitHub enforces 100 MB).
    pub object_bytes: u64,
    /// Refs in the repository (GitHub: at most 5,000 branches).
    pub refs: usize,
}

impl Default for Recommendations {
    fn default() -> Recommendations {
        Recommendations::github()
    }
}

impl Recommendations {
    /// GitHub's figures.
    pub fn github() -> Recommendations {
        Recommendations {
            pushes_per_minute: 6,
            reads_per_second: 15,
            tree_entries: 3000,
            object_bytes: 100 * 1024 * 1024,
            refs: 5000,
        }
    }
}

/// Where a fleet went past a recommendation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error(
        "{repo}: {pushes} pushes in the 5 minutes from {window_start:?} (at most {} for {limit_per_minute}/min; peak minute {peak_minute})",
        limit_per_minute * 5
    )]
    PushRate {
        repo: String,
        pushes: usize,
        window_start: Duration,
        peak_minute: usize,
        limit_per_minute: usize,
    },
    #[error("{repo}: {reads} reads in the second from {window_start:?} (at most {limit}/s)")]
    ReadRate {
        repo: String,
        reads: usize,
        window_start: Duration,
        limit: usize,
    },
    #[error("{repo}: tree /{path} has {entries} entries (at most {limit})")]
    WideTree {
        repo: String,
        path: String,
        entries: usize,
        limit: usize,
    },
    #[error("{repo}: object {path} is {size} bytes (at most {limit})")]
    LargeObject {
        repo: String,
        path: String,
        size: u64,
        limit: u64,
    },
    #[error("{repo}: {refs} refs (at most {limit})")]
    TooManyRefs {
        repo: String,
        refs: usize,
        limit: usize,
    },
    #[error("{repo}: push at {at:?} refused: {reason}")]
    RefusedPush {
        repo: String,
        at: Duration,
        reason: Refusal,
    },
}

/// Every [`Violation`] found, one per line when shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} departure(s) from GitHub's recommendations:",
            self.0.len()
        )?;
        for v in &self.0 {
            writeln!(f, "- {v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// The refs and the widest tree and largest object reachable from them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    refs: usize,
    widest_tree: Option<TreeStat>,
    largest_object: Option<ObjectStat>,
}

/// Walks every object reachable from any ref of the bare repository `dir`.
fn scan_repository(dir: &Path) -> Scan {
    let refs = run_git(dir, &["for-each-ref", "--format=%(refname)"], &[])
        .lines()
        .count();
    if refs == 0 {
        return Scan::default();
    }
    // `oid path` for every reachable object (path empty for commits and
    // root trees).
    let listing = run_git(dir, &["rev-list", "--objects", "--all"], &[]);
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    let mut oids = String::new();
    for line in listing.lines() {
        let (oid, path) = line.split_once(' ').unwrap_or((line, ""));
        paths.insert(oid.to_owned(), path.to_owned());
        oids.push_str(oid);
        oids.push('\n');
    }
    let checks = run_git(
        dir,
        &[
            "cat-file",
            "--batch-check=%(objectname) %(objecttype) %(objectsize)",
        ],
        oids.as_bytes(),
    );
    let mut largest: Option<ObjectStat> = None;
    let mut trees = String::new();
    for line in checks.lines() {
        let mut fields = line.split(' ');
        let (Some(oid), Some(kind), Some(size)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let size: u64 = size.parse().unwrap_or(0);
        if kind == "tree" {
            trees.push_str(oid);
            trees.push('\n');
        }
        if kind == "blob" && largest.as_ref().is_none_or(|l| size > l.size) {
            largest = Some(ObjectStat {
                size,
                path: paths.get(oid).cloned().unwrap_or_default(),
            });
        }
    }
    let contents = run_git_bytes(dir, &["cat-file", "--batch"], trees.as_bytes());
    let widest = widest_tree(&contents).map(|(oid, entries)| TreeStat {
        entries,
        path: paths.get(&oid).cloned().unwrap_or_default(),
    });
    Scan {
        refs,
        widest_tree: widest,
        largest_object: largest,
    }
}

/// The tree with the most entries in `git cat-file --batch` output of
/// trees: `(oid, entries)`.
fn widest_tree(batch: &[u8]) -> Option<(String, usize)> {
    let mut best: Option<(String, usize)> = None;
    let mut rest = batch;
    while !rest.is_empty() {
        let header_end = rest.iter().position(|&b| b == b'\n')?;
        let header = String::from_utf8_lossy(&rest[..header_end]).into_owned();
        let mut fields = header.split(' ');
        let (Some(oid), Some(_kind), Some(size)) = (fields.next(), fields.next(), fields.next())
        else {
            return best;
        };
        let size: usize = size.parse().ok()?;
        let body = rest.get(header_end + 1..header_end + 1 + size)?;
        let entries = tree_entries(body, oid.len() / 2);
        if best.as_ref().is_none_or(|b| entries > b.1) {
            best = Some((oid.to_owned(), entries));
        }
        // The body is followed by a newline.
        rest = rest.get(header_end + 1 + size + 1..).unwrap_or_default();
    }
    best
}

/// Entries in a raw tree object: `mode SP name NUL hash`, repeated.
fn tree_entries(mut body: &[u8], hash_len: usize) -> usize {
    let mut n = 0;
    while let Some(nul) = body.iter().position(|&b| b == 0) {
        n += 1;
        body = body.get(nul + 1 + hash_len..).unwrap_or_default();
    }
    n
}

fn run_git(dir: &Path, args: &[&str], input: &[u8]) -> String {
    String::from_utf8_lossy(&run_git_bytes(dir, args, input)).into_owned()
}

/// Runs hermetic git in `dir` with `input` on stdin (written from a
/// thread, so a large output cannot block it); panics unless it succeeds.
fn run_git_bytes(dir: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &[u64]) -> Vec<Duration> {
        s.iter().map(|&s| Duration::from_secs(s)).collect()
    }

    #[test]
    fn busiest_window_counts_events_in_half_open_windows() {
        assert_eq!(
            busiest_window(&[], Duration::from_secs(60)),
            (0, Duration::ZERO)
        );
        let times = secs(&[130, 0, 10, 59, 60, 61, 62]);
        // [0, 60) holds 0, 10, 59; [10, 70) holds 10, 59, 60, 61, 62.
        assert_eq!(
            busiest_window(&times, Duration::from_secs(60)),
            (5, Duration::from_secs(10))
        );
        assert_eq!(
            busiest_window(&times, Duration::from_secs(300)),
            (7, Duration::ZERO)
        );
        assert_eq!(
            busiest_window(&times, Duration::from_secs(1)),
            (1, Duration::ZERO)
        );
    }

    #[test]
    fn counts_tree_entries_whatever_bytes_the_hashes_hold() {
        let mut tree = Vec::new();
        for name in ["a", "b c", "d"] {
            tree.extend_from_slice(format!("100644 {name}\0").as_bytes());
            tree.extend_from_slice(&[0u8; 20]);
        }
        assert_eq!(tree_entries(&tree, 20), 3);
        let batch = [
            format!("{} tree {}\n", "1".repeat(40), tree.len()).into_bytes(),
            tree.clone(),
            b"\n".to_vec(),
            format!("{} tree {}\n", "2".repeat(40), 0).into_bytes(),
            b"\n".to_vec(),
        ]
        .concat();
        assert_eq!(widest_tree(&batch), Some(("1".repeat(40), 3)));
    }

    fn repo_report(pushes: &[u64], reads: &[u64]) -> RepoReport {
        let log = Log {
            pushes: pushes
                .iter()
                .map(|&s| Push {
                    at: Duration::from_secs(s),
                    bytes: 10,
                    refs: 1,
                    refused: None,
                })
                .collect(),
            reads: reads.iter().map(|&ms| Duration::from_millis(ms)).collect(),
            ..Log::default()
        };
        let times: Vec<Duration> = log.pushes.iter().map(|p| p.at).collect();
        let (peak_minute, _) = busiest_window(&times, Duration::from_secs(60));
        let (peak_5, peak_5_at) = busiest_window(&times, Duration::from_secs(300));
        let (peak_reads, peak_reads_at) = busiest_window(&log.reads, Duration::from_secs(1));
        RepoReport {
            repo: "o/r.git".into(),
            pushes: log.pushes,
            reads: log.reads.len(),
            upload_pack_posts: 0,
            unauthorized: 0,
            gzipped_requests: 0,
            chunked_requests: 0,
            peak_pushes_per_minute: peak_minute,
            peak_pushes_per_5_minutes: peak_5,
            peak_5_minutes_at: peak_5_at,
            peak_reads_per_second: peak_reads,
            peak_reads_at,
            refs: 3,
            widest_tree: Some(TreeStat {
                entries: 10,
                path: "blobs".into(),
            }),
            largest_object: None,
        }
    }

    #[test]
    fn check_passes_within_and_names_every_violation() {
        // 30 pushes spread over 5 minutes: a burst of 12 in one minute is
        // reported as the peak but is within the 5-minute average.
        let mut pushes: Vec<u64> = (0..12).collect();
        pushes.extend((0..18).map(|i| 70 + i * 12));
        let ok = repo_report(&pushes, &[0, 100, 2000]);
        assert_eq!(ok.peak_pushes_per_minute, 12);
        let report = Report {
            repos: BTreeMap::from([("o/r.git".to_owned(), ok)]),
        };
        assert_eq!(report.check(&Recommendations::github()), Ok(()));

        let mut bad = repo_report(&(0..31).collect::<Vec<_>>(), &(0..16).collect::<Vec<_>>());
        bad.widest_tree = Some(TreeStat {
            entries: 3001,
            path: "blobs".into(),
        });
        bad.largest_object = Some(ObjectStat {
            size: 100 * 1024 * 1024 + 1,
            path: "out/big".into(),
        });
        bad.refs = 5001;
        bad.pushes[3].refused = Some(Refusal::TooManyRefs { refs: 6, limit: 5 });
        let report = Report {
            repos: BTreeMap::from([("o/r.git".to_owned(), bad)]),
        };
        let violations = report.check(&Recommendations::github()).unwrap_err();
        assert_eq!(violations.0.len(), 6, "{violations}");
        assert!(matches!(
            violations.0[0],
            Violation::PushRate {
                pushes: 31,
                peak_minute: 31,
                ..
            }
        ));
        assert!(matches!(
            violations.0[1],
            Violation::ReadRate { reads: 16, .. }
        ));
        let text = violations.to_string();
        for needle in [
            "o/r.git: 31 pushes in the 5 minutes from 0ns (at most 30 for 6/min; peak minute 31)",
            "tree /blobs has 3001 entries (at most 3000)",
            "object out/big is 104857601 bytes",
            "5001 refs (at most 5000)",
            "refused: push policy: 6 refs updated in one push, over the limit of 5",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }
}
