//! Compaction (`bridge compact`, and the automatic one inside `sync`, `work`
//! and `run`): each document's chunk files become one snapshot, here and on
//! the remote, while runners and devices keep working; nothing is lost,
//! nothing removed comes back, and a broken snapshot hurts nobody.
//!
//! What a snapshot holds is encrypted, so these tests learn it from
//! `bridge compact --json`: the `redundant` files of every compaction are
//! what its snapshot bundles (an older snapshot's entries carried over
//! included). A quiet store, once compacted, holds no chunk file of a
//! live document at all (the roster is never compacted).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    Device, GitPool, Run, Spawned, Task, dir_remote, files_under, str_field, sync_until_equal,
    temp_dir, wait_exit,
};

// ---------------------------------------------------------------------------
// Helpers

/// Store names (`chunks/<doc>/<file>`, …) of the files under `root`, a
/// replica or a folder remote.
fn store_names(root: &Path) -> BTreeSet<String> {
    files_under(root)
        .into_iter()
        .map(|p| {
            p.strip_prefix(root)
                .expect("under root")
                .to_str()
                .expect("utf-8 path")
                .to_owned()
        })
        .collect()
}

/// The chunk files of live documents among `names` (the roster's epochs
/// are chunks too, and never compacted).
fn doc_chunks(names: &BTreeSet<String>) -> BTreeSet<String> {
    names
        .iter()
        .filter(|n| n.starts_with("chunks/") && !n.starts_with("chunks/roster/"))
        .cloned()
        .collect()
}

/// Snapshot files among `names`, per document.
fn snapshots_per_doc(names: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for n in names.iter().filter(|n| n.starts_with("snapshots/")) {
        let doc = n.split('/').nth(1).expect("snapshots/<doc>/<file>");
        *out.entry(doc.to_owned()).or_default() += 1;
    }
    out
}

/// The live documents with a chunk file or a snapshot among `names`.
fn docs_of(names: &BTreeSet<String>) -> BTreeSet<String> {
    let chunks = doc_chunks(names);
    names
        .iter()
        .filter(|n| n.starts_with("snapshots/") || chunks.contains(*n))
        .map(|n| n.split('/').nth(1).expect("<dir>/<doc>/<file>").to_owned())
        .collect()
}

/// One document of `bridge compact --json`.
#[derive(Debug)]
struct DocCompaction {
    document: String,
    snapshot: Option<String>,
    written: bool,
    chunks: u64,
    redundant: Vec<String>,
    kept: u64,
}

/// `bridge compact --json`.
#[derive(Debug)]
struct Compaction {
    json: Value,
    snapshots: u64,
    files_removed: u64,
    remote_removed: u64,
    remote_left: u64,
    offline: Option<String>,
    documents: Vec<DocCompaction>,
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number `{key}` in {v}"))
}

impl Compaction {
    fn parse(v: Value) -> Compaction {
        for key in ["bytes_before", "bytes_after"] {
            u64_field(&v, key);
        }
        assert!(
            v["offline"].is_null() || v["offline"].is_string(),
            "offline: {v}"
        );
        let documents = v["documents"]
            .as_array()
            .unwrap_or_else(|| panic!("compact --json has no `documents`: {v}"))
            .iter()
            .map(|d| {
                u64_field(d, "bytes_before");
                u64_field(d, "bytes_after");
                DocCompaction {
                    document: str_field(d, "document"),
                    snapshot: d["snapshot"].as_str().map(str::to_owned),
                    written: d["written"]
                        .as_bool()
                        .unwrap_or_else(|| panic!("no `written` in {d}")),
                    chunks: u64_field(d, "chunks"),
                    redundant: d["redundant"]
                        .as_array()
                        .unwrap_or_else(|| panic!("no `redundant` in {d}"))
                        .iter()
                        .map(|r| r.as_str().expect("a store name").to_owned())
                        .collect(),
                    kept: u64_field(d, "kept"),
                }
            })
            .collect::<Vec<_>>();
        let c = Compaction {
            snapshots: u64_field(&v, "snapshots"),
            files_removed: u64_field(&v, "files_removed"),
            remote_removed: u64_field(&v, "remote_removed"),
            remote_left: u64_field(&v, "remote_left"),
            offline: v["offline"].as_str().map(str::to_owned),
            documents,
            json: v,
        };
        assert_eq!(
            c.snapshots,
            c.documents.iter().filter(|d| d.written).count() as u64,
            "{}",
            c.json
        );
        assert_eq!(
            c.files_removed,
            c.documents
                .iter()
                .map(|d| d.redundant.len() as u64)
                .sum::<u64>(),
            "{}",
            c.json
        );
        c
    }

    /// The chunk files its snapshots hold (they were made redundant).
    fn bundled_chunks(&self) -> BTreeSet<String> {
        self.documents
            .iter()
            .flat_map(|d| d.redundant.iter())
            .filter(|n| n.starts_with("chunks/"))
            .cloned()
            .collect()
    }
}

/// `bridge compact --json ARGS` on `d`.
fn compact(d: &Device, args: &[&str]) -> Compaction {
    let mut all = vec!["compact", "--json"];
    all.extend_from_slice(args);
    Compaction::parse(d.ok(&all).json())
}

/// `n` tasks numbered from 0: each writes its number to `out.txt` and
/// says hello on stdout; those from `gated_from` on first wait for the file
/// `gate` (bounded). They are the matrix task `t`, or with `split` the even
/// ones `t` for workers labelled `even` and the odd ones `u` for workers
/// labelled `odd`. Then `gather`, which only a worker labelled `fresh`
/// runs, concatenates every output.
fn drain_yaml(n: usize, gated_from: usize, gate: &Path, split: bool) -> String {
    let entry = |name: &str, values: Vec<usize>, label: Option<&str>| {
        let values: Vec<String> = values.iter().map(usize::to_string).collect();
        format!(
            "  - name: {name}
    matrix: {{ n: [{values}] }}
{runs_on}    run: |
      N=${{{{ matrix.n }}}}
      if [ \"$N\" -ge {gated_from} ]; then
        i=0
        while [ ! -e {gate} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 1; sleep 0.05; done
      fi
      echo \"$N\" > out.txt
      echo \"task $N says hello\"
    outputs: [out.txt]
",
            values = values.join(", "),
            runs_on = label.map_or(String::new(), |l| format!("    runs-on: [{l}]\n")),
            gate = gate.display(),
        )
    };
    let (entries, needs) = if split {
        let even = entry("t", (0..n).step_by(2).collect(), Some("even"));
        let odd = entry("u", (1..n).step_by(2).collect(), Some("odd"));
        (format!("{even}{odd}"), "[t, u]")
    } else {
        (entry("t", (0..n).collect(), None), "[t]")
    };
    format!(
        "\
defaults:
  timeout: 2m
tasks:
{entries}  - name: gather
    needs: {needs}
    runs-on: [fresh]
    run: cat needs/*/out.txt | sort -n > all.txt; echo gathered
    outputs: [all.txt]
"
    )
}

/// The number in a task named `t[n=K]` (or `u[n=K]`).
fn matrix_value(task: &str) -> usize {
    task.split_once("[n=")
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("`{task}` is not a task of the matrix"))
}

/// Successful attempts of every task (one unless it ran more than once).
fn successes(d: &Device, tasks: &[Task]) -> u64 {
    let mut total = 0;
    for t in tasks {
        if t.attempts == 1 {
            total += 1;
            continue;
        }
        let show = d.show(&t.id);
        let ok = show["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .filter(|a| a["outcome"] == "success")
            .count() as u64;
        assert!(ok >= 1, "{t:?}: {show}");
        total += ok;
    }
    total
}

/// What the admin's compactions did while workers drained the pool.
#[derive(Default)]
struct Compactions {
    runs: Vec<Compaction>,
    /// Compactions that removed files from the remote while a worker ran.
    removed_during_drain: usize,
}

impl Compactions {
    fn bundled_chunks(&self) -> BTreeSet<String> {
        self.runs
            .iter()
            .flat_map(Compaction::bundled_chunks)
            .collect()
    }
}

/// How many compactions the gate waits for at most (a bound, in case the
/// workers' free slots all wait at the gate and write nothing).
const GATE_AFTER_AT_MOST: usize = 30;

/// Compacts at `admin` over and over while `workers` run: first until two
/// compactions removed files from the remote while the workers had done
/// some tasks (then the gate opens, and the gated tasks run), then until
/// every worker has exited. Returns the compactions and the workers' runs.
fn compact_while_draining(
    admin: &Device,
    mut workers: Vec<Spawned>,
    gate: &Path,
    limit: Duration,
) -> (Compactions, Vec<Run>) {
    let start = Instant::now();
    let mut c = Compactions::default();
    loop {
        assert!(
            start.elapsed() < limit,
            "the drain did not end within {limit:?}"
        );
        let running_before = workers.iter_mut().any(Spawned::is_running);
        let one = compact(admin, &[]);
        assert!(one.offline.is_none(), "{}", one.json);
        if running_before && one.remote_removed > 0 {
            c.removed_during_drain += 1;
        }
        c.runs.push(one);
        if !gate.exists()
            && ((c.removed_during_drain >= 2 && admin.status().count("done") >= 10)
                || c.runs.len() >= GATE_AFTER_AT_MOST)
        {
            fs::write(gate, "").expect("cannot open the gate");
        }
        if gate.exists() && !workers.iter_mut().any(Spawned::is_running) {
            break;
        }
    }
    let runs = workers
        .into_iter()
        .map(|w| wait_exit(w, Duration::from_secs(10)))
        .collect();
    (c, runs)
}

/// The end of a drain, checked on a compacted store: every task done, run
/// more than once at most `duplicates_allowed` times in all, and every
/// success a worker reported is in the store.
fn check_drained(
    admin: &Device,
    n: usize,
    reported_done: u64,
    duplicates_allowed: u64,
) -> Vec<Task> {
    let st = admin.status();
    assert_eq!(st.tasks, n as u64 + 1, "{st:?}");
    assert_eq!(st.count("done"), n as u64, "{st:?}");
    assert_eq!(st.count("pending"), 1, "gather waits for `fresh`: {st:?}");
    let tasks: Vec<Task> = admin
        .ls()
        .into_iter()
        .filter(|t| t.name != "gather")
        .collect();
    assert_eq!(tasks.len(), n);
    assert!(tasks.iter().all(|t| t.status == "done"), "{tasks:?}");
    let ok = successes(admin, &tasks);
    let duplicates = ok - n as u64;
    eprintln!("{n} tasks, {duplicates} duplicate runs");
    if duplicates > duplicates_allowed {
        let twice: Vec<Value> = tasks
            .iter()
            .filter(|t| t.attempts > 1)
            .take(2)
            .map(|t| admin.show(&t.id))
            .collect();
        panic!(
            "{duplicates} duplicate runs of {n} tasks (at most {duplicates_allowed}), e.g. {twice:#?}"
        );
    }
    assert_eq!(
        reported_done, ok,
        "every success a worker reported is in the compacted store"
    );
    tasks
}

/// A fresh device joins after the drain, runs `gather` (which reads every
/// task's output), reads the logs and outputs of a sample of tasks, and
/// agrees with the admin on every task and attempt.
fn check_fresh_device(admin: &Device, fresh: &Device, remote: &str, tasks: &[Task]) {
    fresh.join_as(admin, remote, "worker");
    let worked = fresh.ok(&["work", "--label", "fresh", "--parallel", "1"]);
    assert!(
        worked.stderr.contains("1 done, 0 failed"),
        "{}",
        worked.stderr
    );
    let to = fresh.scratch("gathered");
    fresh.ok(&["outputs", "gather", "--to", to.to_str().expect("utf-8")]);
    let all = fs::read_to_string(to.join("all.txt")).expect("all.txt");
    let want: String = (0..tasks.len()).map(|k| format!("{k}\n")).collect();
    assert_eq!(all, want, "every task's output, read by the fresh device");

    // Logs and outputs one task at a time (each `bridge logs` loads the
    // whole store, about 0.1 s in a debug build): every fifth task and
    // every task that ran more than once, on two threads.
    let sample: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.attempts > 1 || matrix_value(&t.name).is_multiple_of(5))
        .collect();
    std::thread::scope(|s| {
        for half in sample.chunks(sample.len().div_ceil(2)) {
            s.spawn(move || {
                for t in half {
                    let k = matrix_value(&t.name);
                    let log = fresh.ok(&["logs", &t.id, "--stdout"]);
                    assert_eq!(log.stdout, format!("task {k} says hello\n"), "{t:?}");
                    let to = fresh.scratch(&format!("out-{k}"));
                    fresh.ok(&["outputs", &t.id, "--to", to.to_str().expect("utf-8")]);
                    let text = fs::read_to_string(to.join("out.txt")).expect("out.txt");
                    assert_eq!(text, format!("{k}\n"), "{t:?}");
                }
            });
        }
    });
    admin.ok(&["sync"]);
    assert_eq!(admin.task("gather").status, "done");
    assert_eq!(fresh.status().counts, admin.status().counts);
    assert_eq!(fresh.ls(), admin.ls(), "the same tasks and attempts");
}

// ---------------------------------------------------------------------------
// Tests

/// Three runners drain a pool in a bare git repository while the admin
/// compacts it again and again (and the runners compact at the end of their
/// runs): no result is lost, nothing a snapshot holds stays a chunk file,
/// and a device joining afterwards reads every output and log.
#[test]
fn compaction_during_a_drain_loses_nothing_on_a_git_remote() {
    const N: usize = 150;
    const K: usize = 3;
    let pool = GitPool::new("cgit");
    let gate = pool.shared("gate");
    pool.admin
        .write("tasks.yaml", &drain_yaml(N, N - 30, &gate, false));
    let sub = pool.admin.ok(&["submit", "--json", "tasks.yaml"]).json();
    assert_eq!(sub["new"], N + 1, "{sub}");
    let docs = docs_of(&pool.bare.all_files());
    assert!(!docs.is_empty());
    let secret = pool.add_runner("ci");

    let started = Instant::now();
    let runners: Vec<Device> = (0..K)
        .map(|i| pool.runner(&format!("cgit-r{i}"), &secret))
        .collect();
    let procs: Vec<Spawned> = runners
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let shard = format!("{i}/{K}");
            r.spawn(
                "run",
                &[
                    "run",
                    "--budget",
                    "5m",
                    "--parallel",
                    "2",
                    "--shard",
                    &shard,
                    "--json",
                ],
            )
        })
        .collect();
    let (compactions, runs) =
        compact_while_draining(&pool.admin, procs, &gate, Duration::from_secs(180));
    eprintln!(
        "{K} runners drained {N} tasks in {:.1}s while the admin compacted {} times ({} removing files from the remote meanwhile)",
        started.elapsed().as_secs_f64(),
        compactions.runs.len(),
        compactions.removed_during_drain
    );
    let mut reported_done = 0;
    for (i, run) in runs.into_iter().enumerate() {
        let report = run.expect_code(0).json();
        eprintln!("runner {i}: {report}");
        assert_eq!(report["failed"], 0, "runner {i}: {report}");
        reported_done += report["done"].as_u64().expect("done");
    }
    assert!(compactions.removed_during_drain >= 2);

    let last = compact(&pool.admin, &[]);
    eprintln!("final compaction: {}", last.json);
    assert!(last.offline.is_none(), "{}", last.json);
    assert_eq!(last.remote_left, 0, "nobody pushes now: {}", last.json);
    assert!(
        last.documents.iter().all(|d| d.kept == 0),
        "every chunk was readable and bundled: {}",
        last.json
    );
    // As in runner.rs: concurrent claims may run a task twice, rarely.
    let tasks = check_drained(&pool.admin, N, reported_done, (N as u64 - 1) / 20);

    // The remote: one snapshot per document, no chunk file of a document on
    // any branch, and none of the files any compaction bundled.
    let per_branch = pool.bare.files();
    let all: BTreeSet<String> = per_branch.values().flatten().cloned().collect();
    for (branch, files) in &per_branch {
        let chunks = doc_chunks(files);
        eprintln!(
            "{branch}: {} files, {} chunk files, {} snapshots",
            files.len(),
            chunks.len(),
            snapshots_per_doc(files).values().sum::<usize>()
        );
        // Which compactions bundled what is left, and what they said.
        let history = || {
            let runs: Vec<String> = compactions
                .runs
                .iter()
                .chain([&last])
                .map(|r| {
                    let held: Vec<&String> = chunks
                        .iter()
                        .filter(|c| r.bundled_chunks().contains(*c))
                        .collect();
                    format!(
                        "removed {}, left {}, bundled {} files, of them {held:?}",
                        r.remote_removed,
                        r.remote_left,
                        r.bundled_chunks().len()
                    )
                })
                .collect();
            runs.join("\n")
        };
        assert!(
            chunks.is_empty(),
            "{branch} still holds {chunks:#?}\nthe admin's compactions:\n{}",
            history()
        );
    }
    for d in &last.documents {
        assert!(
            d.snapshot.as_ref().is_some_and(|s| all.contains(s)),
            "the snapshot of {} is on the remote: {}",
            d.document,
            last.json
        );
    }
    let snaps = snapshots_per_doc(&all);
    assert!(!snaps.is_empty(), "no snapshot on the remote: {all:#?}");
    assert!(
        snaps.values().all(|&k| k == 1),
        "{snaps:?} in {per_branch:#?}\nthe last compaction: {}",
        last.json
    );
    assert_eq!(snaps.keys().cloned().collect::<BTreeSet<_>>(), docs);
    // Runners write one chunk file per push (every 2 s or so): a few each.
    let bundled = compactions.bundled_chunks();
    assert!(bundled.len() >= K, "{bundled:?}");
    assert!(all.is_disjoint(&bundled));
    // …and the admin's replica likewise.
    let local = store_names(&pool.admin.store());
    assert!(
        doc_chunks(&local).is_empty(),
        "the admin's replica still holds chunk files: {:#?}",
        doc_chunks(&local)
    );
    assert_eq!(snapshots_per_doc(&local), snaps);

    let fresh = Device::new("cgit-fresh");
    check_fresh_device(&pool.admin, &fresh, &pool.remote, &tasks);
}

/// The same on a folder remote, drained by two `bridge work` devices (which
/// compact by themselves at the end once a document has 32 chunk files).
#[test]
fn compaction_during_a_drain_loses_nothing_on_a_folder_remote() {
    const N: usize = 100;
    let shared = temp_dir("cdir-store");
    let remote = dir_remote(shared.path());
    let admin = Device::new("cdir-admin");
    admin.ok(&["init", "--remote", &remote]);
    let gate = admin.scratch("gate");
    admin.write("tasks.yaml", &drain_yaml(N, N - 20, &gate, true));
    let sub = admin.ok(&["submit", "--json", "tasks.yaml"]).json();
    assert_eq!(sub["new"], N + 1, "{sub}");
    let docs = docs_of(&store_names(shared.path()));
    assert!(!docs.is_empty());
    let workers: Vec<Device> = (0..2)
        .map(|i| {
            let w = Device::new(&format!("cdir-w{i}"));
            w.join_as(&admin, &remote, "worker");
            w
        })
        .collect();
    // Each worker learns the roster's later epochs (the other worker's
    // key) before its `work` opens the workspace: a running `work` keeps
    // the roster it opened with and refuses, until it exits, every chunk
    // of a member added later (not compaction's business).
    for w in &workers {
        w.ok(&["sync"]);
    }

    let started = Instant::now();
    let procs: Vec<Spawned> = workers
        .iter()
        .zip(["even", "odd"])
        .map(|(w, label)| w.spawn("work", &["work", "--label", label, "--parallel", "2"]))
        .collect();
    let (compactions, runs) =
        compact_while_draining(&admin, procs, &gate, Duration::from_secs(180));
    eprintln!(
        "2 devices drained {N} tasks in {:.1}s while the admin compacted {} times ({} removing files from the remote meanwhile)",
        started.elapsed().as_secs_f64(),
        compactions.runs.len(),
        compactions.removed_during_drain
    );
    assert!(compactions.removed_during_drain >= 2);
    let mut reported_done = 0;
    for run in runs {
        let run = run.expect_code(0);
        let line = run
            .stderr
            .lines()
            .rev()
            .find(|l| l.contains(" done, "))
            .unwrap_or_else(|| panic!("no summary in {}", run.stderr));
        reported_done += line
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("cannot read `{line}`"));
    }

    let last = compact(&admin, &[]);
    eprintln!("final compaction: {}", last.json);
    assert!(last.offline.is_none(), "{}", last.json);
    assert!(last.documents.iter().all(|d| d.kept == 0), "{}", last.json);
    // Each worker has its own tasks: none runs twice.
    let tasks = check_drained(&admin, N, reported_done, 0);

    let on_remote = store_names(shared.path());
    assert!(
        doc_chunks(&on_remote).is_empty(),
        "the folder still holds {:#?}",
        doc_chunks(&on_remote)
    );
    let snaps = snapshots_per_doc(&on_remote);
    assert!(snaps.values().all(|&k| k == 1), "{snaps:?}");
    assert_eq!(snaps.keys().cloned().collect::<BTreeSet<_>>(), docs);
    assert!(on_remote.is_disjoint(&compactions.bundled_chunks()));
    let local = store_names(&admin.store());
    assert!(
        doc_chunks(&local).is_empty(),
        "the admin's replica still holds chunk files: {:#?}",
        doc_chunks(&local)
    );
    // The workers, once synced, hold no chunk file a snapshot holds.
    for w in &workers {
        w.ok(&["sync"]);
        let theirs = store_names(&w.store());
        assert!(
            doc_chunks(&theirs).is_empty(),
            "{} still holds {:#?}",
            w.name,
            doc_chunks(&theirs)
        );
        assert_eq!(w.status(), admin.status());
    }

    let fresh = Device::new("cdir-fresh");
    check_fresh_device(&admin, &fresh, &remote, &tasks);
}

/// A device that did not sync while two compactions removed every chunk
/// file it holds: its sync pushes only the chunks it wrote meanwhile (none
/// of those the compactions removed come back), it deletes its own copies
/// of what the snapshots hold, and it agrees with the other device.
#[test]
fn a_device_that_missed_two_compactions_pushes_back_only_its_new_chunks() {
    let shared = temp_dir("coff-store");
    let remote = dir_remote(shared.path());
    let a = Device::new("coff-a");
    a.ok(&["init", "--remote", &remote]);
    // `bee` tasks run only where the label is: on B, while it is offline.
    a.write(
        "one.yaml",
        "tasks:
  - name: bee
    matrix: { n: [1, 2, 3] }
    runs-on: [bee]
    run: echo bee ${{ matrix.n }} > out.txt
    outputs: [out.txt]
  - name: ant
    matrix: { n: [1, 2, 3] }
    runs-on: [ant]
    run: echo ant ${{ matrix.n }}
",
    );
    let sub = a.ok(&["submit", "--json", "one.yaml"]).json();
    assert_eq!(sub["new"], 6, "{sub}");
    let b = Device::new("coff-b");
    b.join_as(&a, &remote, "submit");
    let b_before = doc_chunks(&store_names(&b.store()));
    assert!(!b_before.is_empty(), "B holds the batch as chunk files");

    // A works, compacts, submits and works more, compacts again.
    a.ok(&["work", "--label", "ant", "--parallel", "2"]);
    let first = compact(&a, &[]);
    a.ok(&["submit", "--name", "more", "--", "sh", "-c", "echo more"]);
    a.ok(&["work"]);
    let second = compact(&a, &[]);
    let removed: BTreeSet<String> = first
        .bundled_chunks()
        .union(&second.bundled_chunks())
        .cloned()
        .collect();
    assert!(first.remote_removed > 0 && second.remote_removed > 0);
    assert!(
        b_before.is_subset(&removed),
        "A's compactions removed every chunk file B holds"
    );
    let remote_before = store_names(shared.path());
    assert!(doc_chunks(&remote_before).is_empty(), "{remote_before:#?}");
    let snapshots_before = snapshots_per_doc(&remote_before);
    assert_eq!(snapshots_before.len(), 2, "{remote_before:#?}");

    // Meanwhile B, offline, runs the bee tasks and one of its own.
    let worked = b.ok(&["work", "--offline", "--label", "bee", "--parallel", "2"]);
    assert!(
        worked.stderr.contains("3 done, 0 failed"),
        "{}",
        worked.stderr
    );
    b.ok(&["submit", "--offline", "--name", "mine", "--", "echo", "b"]);
    b.ok(&["work", "--offline"]);
    let b_offline = doc_chunks(&store_names(&b.store()));
    let b_new: BTreeSet<String> = b_offline.difference(&b_before).cloned().collect();
    assert!(b_before.is_subset(&b_offline), "nothing deleted offline");
    assert!(!b_new.is_empty());
    assert!(b_new.is_disjoint(&removed));

    b.ok(&["sync"]);
    let on_remote = store_names(shared.path());
    assert_eq!(
        doc_chunks(&on_remote),
        b_new,
        "the remote got B's new chunks and nothing the compactions removed"
    );
    assert!(on_remote.is_disjoint(&removed));
    let b_files = store_names(&b.store());
    assert_eq!(
        doc_chunks(&b_files),
        b_new,
        "B deleted its copies of what the snapshots hold"
    );
    assert_eq!(
        b_files
            .iter()
            .filter(|n| n.starts_with("snapshots/"))
            .collect::<Vec<_>>(),
        on_remote
            .iter()
            .filter(|n| n.starts_with("snapshots/"))
            .collect::<Vec<_>>()
    );

    // A sees B's results; both agree on everything.
    let tasks = sync_until_equal(&a, &b, 3);
    assert_eq!(tasks.len(), 8, "{tasks:#?}");
    assert!(tasks.iter().all(|t| t.status == "done"), "{tasks:#?}");
    assert_eq!(a.status(), b.status());
    for t in tasks.iter().filter(|t| t.name.starts_with("bee")) {
        assert_eq!(a.show(&t.id)["attempts"][0]["device"], "coff-b");
        let to = a.scratch(&t.id);
        a.ok(&["outputs", &t.id, "--to", to.to_str().expect("utf-8")]);
        let text = fs::read_to_string(to.join("out.txt")).expect("out.txt");
        assert_eq!(text, format!("bee {}\n", &t.name[6..7]), "{t:?}");
    }

    // A third compaction takes B's chunks in too; B then holds none.
    let third = compact(&a, &[]);
    assert!(b_new.is_subset(&third.bundled_chunks()), "{}", third.json);
    b.ok(&["sync"]);
    assert!(doc_chunks(&store_names(&b.store())).is_empty());
    assert!(doc_chunks(&store_names(shared.path())).is_empty());
    assert_eq!(a.status(), b.status());
}

/// A file of garbage bytes named by their sha256, and a real snapshot of
/// another document, planted among a document's snapshots on the remote:
/// every device warns once naming each, reads everything else, and
/// deletes neither them nor anything they claim to hold.
#[test]
fn a_garbage_or_misplaced_snapshot_is_refused_and_left_in_place() {
    let shared = temp_dir("cbad-store");
    let remote = dir_remote(shared.path());
    let a = Device::new("cbad-a");
    a.ok(&["init", "--remote", &remote]);
    for batch in ["one", "two"] {
        a.ok(&[
            "submit",
            "--name",
            batch,
            "--output",
            "out.txt",
            "--",
            "sh",
            "-c",
            &format!("echo {batch} > out.txt"),
        ]);
    }
    a.ok(&["work"]);
    let b = Device::new("cbad-b");
    b.join_as(&a, &remote, "submit");
    let docs: Vec<String> = docs_of(&store_names(shared.path())).into_iter().collect();
    assert_eq!(docs.len(), 2, "one document per batch: {docs:?}");

    // `--local` compacts A's replica only.
    let remote_files = store_names(shared.path());
    let local = compact(&a, &["--local"]);
    assert_eq!(local.snapshots, 2, "{}", local.json);
    assert_eq!(local.remote_removed, 0, "{}", local.json);
    assert_eq!(
        store_names(shared.path()),
        remote_files,
        "the remote is as it was"
    );
    let a_files = store_names(&a.store());
    assert!(doc_chunks(&a_files).is_empty(), "{a_files:#?}");

    // On the remote: garbage among the first document's snapshots, and a
    // copy of A's (valid, signed) snapshot of the first document among the
    // second's. In B's replica: other garbage among the second's.
    let garbage = |seed: u32| -> (Vec<u8>, String) {
        let bytes: Vec<u8> = (0..600u32).map(|i| (i * 7 + seed) as u8).collect();
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        (bytes, hash)
    };
    let (remote_garbage, hash) = garbage(3);
    let garbage_name = format!("snapshots/{}/{hash}.snap", docs[0]);
    let (local_garbage, hash) = garbage(5);
    let local_garbage_name = format!("snapshots/{}/{hash}.snap", docs[1]);
    let real = a_files
        .iter()
        .find(|n| n.starts_with(&format!("snapshots/{}/", docs[0])))
        .expect("A's snapshot of the first document")
        .clone();
    let misplaced_file = real.rsplit('/').next().expect("a file name").to_owned();
    let misplaced_name = format!("snapshots/{}/{misplaced_file}", docs[1]);
    let plant = |root: &Path, name: &str, bytes: &[u8]| {
        let path = root.join(name);
        fs::create_dir_all(path.parent().expect("a folder")).expect("cannot create a folder");
        fs::write(&path, bytes).expect("cannot plant a file");
    };
    plant(shared.path(), &garbage_name, &remote_garbage);
    let snapshot = fs::read(a.store().join(&real)).expect("A's snapshot");
    plant(shared.path(), &misplaced_name, &snapshot);
    let planted = [
        garbage_name.clone(),
        misplaced_name.clone(),
        local_garbage_name.clone(),
    ];
    // How many lines of `stderr` name the file `name`.
    let warnings = |stderr: &str, name: &str| -> Vec<String> {
        let file = name.rsplit('/').next().expect("a file name");
        stderr
            .lines()
            .filter(|l| l.contains(file))
            .inspect(|l| assert!(l.contains(name), "names the file: {l}"))
            .map(str::to_owned)
            .collect()
    };

    // B pulls the remote's two, with one warning about each; B's status
    // warns about its own; nothing is deleted and every task is there.
    let b_chunks = doc_chunks(&store_names(&b.store()));
    let synced = b.ok(&["sync"]);
    for p in &planted[..2] {
        assert_eq!(
            warnings(&synced.stderr, p).len(),
            1,
            "{p}:\n{}",
            synced.stderr
        );
    }
    assert!(
        warnings(&synced.stderr, &misplaced_name)[0].contains(&docs[0]),
        "says whose document it is: {}",
        synced.stderr
    );
    plant(&b.store(), &local_garbage_name, &local_garbage);
    let status = b.ok(&["status", "--json"]);
    assert_eq!(
        warnings(&status.stderr, &local_garbage_name).len(),
        1,
        "{}",
        status.stderr
    );
    for p in &planted[..2] {
        assert!(warnings(&status.stderr, p).len() <= 1, "{}", status.stderr);
    }
    let b_files = store_names(&b.store());
    assert!(planted.iter().all(|p| b_files.contains(p)), "{b_files:#?}");
    assert_eq!(doc_chunks(&b_files), b_chunks, "B deleted no chunk file");
    let expected = a.status();
    assert_eq!(b.status().counts, expected.counts);
    assert_eq!(expected.count("done"), 2, "{expected:?}");
    assert_eq!(b.ls(), a.ls());
    let to = b.scratch("one");
    b.ok(&["outputs", "one", "--to", to.to_str().expect("utf-8")]);
    assert_eq!(
        fs::read_to_string(to.join("out.txt")).expect("out.txt"),
        "one\n"
    );

    // B's compaction bundles the chunks into snapshots of its own and
    // leaves the planted files where they are, here and on the remote.
    let c = compact(&b, &[]);
    assert_eq!(c.snapshots, 2, "{}", c.json);
    let compacted: Vec<&str> = c.documents.iter().map(|d| d.document.as_str()).collect();
    assert_eq!(compacted, docs, "{}", c.json);
    for d in &c.documents {
        let snapshot = d.snapshot.as_ref().expect("a snapshot");
        assert!(shared.path().join(snapshot).exists(), "{}", c.json);
    }
    assert!(
        planted
            .iter()
            .all(|p| c.documents.iter().all(|d| !d.redundant.contains(p))),
        "{}",
        c.json
    );
    for files in [store_names(&b.store()), store_names(shared.path())] {
        assert!(planted.iter().all(|p| files.contains(p)), "{files:#?}");
        assert!(doc_chunks(&files).is_empty(), "{files:#?}");
    }
    assert_eq!(
        fs::read(shared.path().join(&garbage_name)).expect("the garbage"),
        remote_garbage,
        "left as it was"
    );
    assert_eq!(b.status().counts, expected.counts);

    // A (holding its own snapshots) and a device joining now read it all.
    a.ok(&["sync"]);
    compact(&a, &[]);
    assert!(planted.iter().all(|p| shared.path().join(p).exists()));
    let c_dev = Device::new("cbad-c");
    c_dev.join_as(&a, &remote, "worker");
    for d in [&a, &b, &c_dev] {
        assert_eq!(d.status().counts, expected.counts, "{}", d.name);
        assert_eq!(d.ls(), a.ls(), "{}", d.name);
    }
}

/// A store compacted on a git remote (every runner's branch rewritten as
/// one parentless commit) is read by a runner that joins afterwards exactly
/// as the admin reads it; and a runner whose branch was rewritten under it
/// goes on working on top of the rewritten branch, bringing nothing back.
#[test]
fn a_compacted_git_store_is_read_by_a_fresh_runner_and_written_by_an_old_one() {
    const N: usize = 12;
    let pool = GitPool::new("cfresh");
    let yaml = |name: &str, n: usize| {
        let values: Vec<String> = (0..n).map(|k| k.to_string()).collect();
        format!(
            "tasks:\n  - name: {name}\n    matrix: {{ n: [{}] }}\n    run: echo \"{name} ${{{{ matrix.n }}}}\" | tee out.txt\n    outputs: [out.txt]\n",
            values.join(", ")
        )
    };
    pool.admin.write("one.yaml", &yaml("t", N));
    pool.admin.ok(&["submit", "one.yaml"]);
    let secret = pool.add_runner("ci");
    let runners: Vec<Device> = (0..2)
        .map(|i| pool.runner(&format!("cfresh-r{i}"), &secret))
        .collect();
    // A budget under a minute: the runners do not compact by themselves.
    let run = |r: &Device, shard: &str| {
        r.ok(&[
            "run",
            "--budget",
            "50s",
            "--parallel",
            "2",
            "--shard",
            shard,
            "--json",
        ])
        .json()
    };
    std::thread::scope(|s| {
        for (i, r) in runners.iter().enumerate() {
            s.spawn(move || {
                let report = run(r, &format!("{i}/2"));
                assert_eq!(report["failed"], 0, "{report}");
            });
        }
    });
    pool.admin.ok(&["sync"]);
    assert_eq!(pool.admin.status().count("done"), N as u64);
    let before = pool.bare.files();
    let holders: Vec<&String> = before
        .iter()
        .filter(|(_, files)| !doc_chunks(files).is_empty())
        .map(|(b, _)| b)
        .collect();
    assert!(holders.len() >= 2, "{before:#?}");

    let c = compact(&pool.admin, &[]);
    assert_eq!((c.snapshots, c.remote_left), (1, 0), "{}", c.json);
    let removed = c.bundled_chunks();
    let doc = &c.documents[0];
    assert!(doc.chunks as usize >= removed.len(), "{}", c.json);
    let snapshot = doc.snapshot.as_ref().expect("a snapshot");
    assert!(pool.bare.all_files().contains(snapshot), "{}", c.json);
    assert_eq!(
        c.remote_removed as usize, c.files_removed as usize,
        "{}",
        c.json
    );
    let after = pool.bare.files();
    for (branch, files) in &after {
        assert!(doc_chunks(files).is_empty(), "{branch}: {files:#?}");
    }
    for branch in &holders {
        assert_eq!(
            pool.bare.commits(branch),
            1,
            "{branch} rewritten parentless"
        );
    }
    // Blobs (outputs, logs) and the roster stay where they were.
    for (branch, files) in &before {
        let kept: BTreeSet<&String> = files.iter().filter(|f| !removed.contains(*f)).collect();
        assert!(
            kept.iter().all(|f| after[branch].contains(*f)),
            "{branch} lost files no snapshot holds"
        );
    }

    // A runner joining now reads what the admin reads.
    let fresh = pool.runner("cfresh-new", &secret);
    fresh.ok(&["sync"]);
    assert!(doc_chunks(&store_names(&fresh.store())).is_empty());
    assert_eq!(fresh.status().counts, pool.admin.status().counts);
    assert_eq!(fresh.ls(), pool.admin.ls());
    for t in pool.admin.ls() {
        let (sa, sf) = (pool.admin.show(&t.id), fresh.show(&t.id));
        assert_eq!(sa["result"], sf["result"], "{t:?}");
        assert_eq!(sa["attempts"], sf["attempts"], "{t:?}");
        let to = fresh.scratch(&t.id);
        fresh.ok(&["outputs", &t.id, "--to", to.to_str().expect("utf-8")]);
        let k = t.name.trim_start_matches("t[n=").trim_end_matches(']');
        assert_eq!(
            fs::read_to_string(to.join("out.txt")).expect("out.txt"),
            format!("t {k}\n")
        );
    }

    // The first runner's branch was rewritten under it; it works on.
    let branch = "refs/bridge/ci-0";
    let rewritten = pool.bare.tip(branch);
    pool.admin.write("two.yaml", &yaml("u", 6));
    pool.admin.ok(&["submit", "two.yaml"]);
    let report = run(&runners[0], "0/2");
    assert_eq!(
        (report["done"].as_u64(), report["failed"].as_u64()),
        (Some(6), Some(0)),
        "{report}"
    );
    assert_eq!(
        pool.bare.roots(branch),
        [rewritten],
        "the runner built on the rewritten branch"
    );
    let now = pool.bare.all_files();
    assert!(now.is_disjoint(&removed), "a compacted chunk came back");
    assert!(
        !doc_chunks(&now).is_empty(),
        "the new results are chunk files"
    );
    assert!(
        doc_chunks(&store_names(&runners[0].store())).is_disjoint(&removed),
        "the runner deleted its copies of what the snapshot holds"
    );
    pool.admin.ok(&["sync"]);
    fresh.ok(&["sync"]);
    let st = pool.admin.status();
    assert_eq!(
        (st.tasks, st.count("done")),
        (N as u64 + 6, N as u64 + 6),
        "{st:?}"
    );
    assert_eq!(fresh.ls(), pool.admin.ls());
}

/// `bridge work` compacts by itself once a document has 32 chunk files:
/// never before, and then here and on the remote.
#[test]
fn work_compacts_a_document_once_it_has_32_chunk_files() {
    let shared = temp_dir("cauto-store");
    let remote = dir_remote(shared.path());
    let a = Device::new("cauto-a");
    a.ok(&["init", "--remote", &remote]);
    a.write(
        "tasks.yaml",
        &format!(
            "tasks:\n  - name: t\n    matrix: {{ n: [{}] }}\n    run: echo ${{{{ matrix.n }}}}\n",
            (0..40)
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    a.ok(&["submit", "tasks.yaml"]);
    let mut compacted_after = None;
    // The most chunk files one round added.
    let mut step = 0;
    for round in 1..=40 {
        let before = doc_chunks(&store_names(&a.store())).len();
        a.ok(&["work", "--max-tasks", "1", "--parallel", "1"]);
        let local = store_names(&a.store());
        let on_remote = store_names(shared.path());
        if snapshots_per_doc(&local).is_empty() {
            let now = doc_chunks(&local).len();
            assert!(now < 32, "round {round} left {now} chunk files");
            assert!(snapshots_per_doc(&on_remote).is_empty());
            step = step.max(now - before);
            continue;
        }
        // The round that compacted could have reached 32 chunk files.
        assert!(
            before + step >= 32,
            "compacted with {before} chunk files before the round (rounds add at most {step})"
        );
        assert!(doc_chunks(&local).is_empty(), "{local:#?}");
        assert!(doc_chunks(&on_remote).is_empty(), "{on_remote:#?}");
        assert_eq!(snapshots_per_doc(&on_remote), snapshots_per_doc(&local));
        compacted_after = Some(round);
        break;
    }
    let round = compacted_after.expect("work never compacted");
    eprintln!("work compacted after {round} rounds");
    let st = a.status();
    assert_eq!(st.count("done"), round as u64, "{st:?}");
}

/// A compaction that finds a snapshot already holding every entry (with an
/// older snapshot it holds, and chunk files it holds, back from the remote)
/// keeps that snapshot and removes everything else from the remote, in one
/// run, for every document.
#[test]
fn a_snapshot_that_holds_everything_already_is_kept_and_the_rest_removed() {
    const DOCS: usize = 4;
    let shared = temp_dir("chold-store");
    let remote = dir_remote(shared.path());
    let a = Device::new("chold-a");
    a.ok(&["init", "--remote", &remote]);
    // One batch (one document) each; the `later` tasks run after the
    // first compaction, adding chunk files to every document.
    for k in 0..DOCS {
        a.write(
            &format!("b{k}.yaml"),
            &format!(
                "tasks:\n  - name: now{k}\n    run: echo now {k}\n  - name: later{k}\n    runs-on: [later]\n    run: echo later {k}\n"
            ),
        );
        a.ok(&["submit", &format!("b{k}.yaml")]);
    }
    a.ok(&["work"]);
    // Snapshots of the documents so far, here, then on the remote too
    // (which keeps the chunk files they hold: only `compact` removes).
    let small = compact(&a, &["--local"]);
    assert_eq!(small.snapshots, DOCS as u64, "{}", small.json);
    a.ok(&["sync"]);
    let on_remote = store_names(shared.path());
    assert_eq!(snapshots_per_doc(&on_remote).len(), DOCS);
    assert!(!doc_chunks(&on_remote).is_empty());
    // The rest of the tasks, and bigger snapshots here.
    a.ok(&["work", "--label", "later"]);
    a.ok(&["sync"]);
    let big = compact(&a, &["--local"]);
    assert_eq!(big.snapshots, DOCS as u64, "{}", big.json);

    // Now the remote holds the small snapshots and every chunk file; the
    // replica the big snapshots, each holding all of its document.
    let c = compact(&a, &[]);
    let on_remote = store_names(shared.path());
    assert!(
        doc_chunks(&on_remote).is_empty(),
        "one compaction leaves {} chunk files on the remote: {}",
        doc_chunks(&on_remote).len(),
        c.json
    );
    // Each document keeps its big snapshot (no new one with the same
    // entries), which is now on the remote.
    let kept: BTreeMap<&str, Option<&String>> = c
        .documents
        .iter()
        .map(|d| (d.document.as_str(), d.snapshot.as_ref()))
        .collect();
    let bigs: BTreeMap<&str, Option<&String>> = big
        .documents
        .iter()
        .map(|d| (d.document.as_str(), d.snapshot.as_ref()))
        .collect();
    assert_eq!(kept, bigs, "{}", c.json);
    assert!(c.documents.iter().all(|d| !d.written), "{}", c.json);
    assert!(kept.values().flatten().all(|s| on_remote.contains(*s)));
    let snaps = snapshots_per_doc(&on_remote);
    assert_eq!(snaps.len(), DOCS, "{snaps:?}");
    assert!(snaps.values().all(|&k| k == 1), "{snaps:?}");
    assert_eq!(snapshots_per_doc(&store_names(&a.store())), snaps);
    let st = a.status();
    assert_eq!(st.count("done"), 2 * DOCS as u64, "{st:?}");
}
