//! Scale benchmark (issue 6): 100k tasks across documents with a realistic
//! history, on a `dir:` folder store and on a local bare git repository
//! (`git:file://…`), one store kind after the other.
//!
//! Run: `cargo bench -p bridge-pool --bench scale` (12 to 17 minutes on 2 shared
//! cores at the default sizes, most of it the runners' history; removing the
//! temporary folders is timed apart). BRIDGE_SCALE_TASKS (default 100000),
//! BRIDGE_SCALE_FINISHED (10000), BRIDGE_SCALE_RUNNERS (8) and
//! BRIDGE_SCALE_STORES ("dir,git") change the sizes; BRIDGE_SCALE_KEEP=1
//! keeps the temporary folders and prints where they are; BRIDGE_BENCH_BIN
//! times another `bridge` binary with the same code. The load average
//! is printed before and after each store: other work on the machine skews
//! every figure.
//!
//! For each store kind, in phases:
//!
//! 1. An admin workspace submits TASKS tasks of `true` (one YAML matrix,
//!    which bridge splits into documents of at most 1000 tasks) offline, then
//!    syncs; both are timed.
//! 2. History: RUNNERS `bridge run` processes, each with its own identity
//!    (`members add-runner`), slot and shard (`--shard I/K`, `--parallel 2`,
//!    `--max-tasks` summing to FINISHED), run concurrently against the
//!    remote, so claims and attempts come from many writers; the admin syncs.
//! 3. `bridge status --json` in the admin workspace, twice (cold: without
//!    its document cache, then warm, with it): wall time and the child's peak RSS
//!    (`wait4`'s `ru_maxrss`; MB here are MiB). Targets ≤ 2 s and ≤ 500 MB.
//! 4. Store size, documents (every file but `blobs/` and `packs/`: chunks, snapshots,
//!    `FORMAT`, `workspace`) and blobs, before and after `bridge compact`
//!    (then `bridge sync`), against the gzipped (flate2, default level)
//!    output of `bridge ls --json --full` (every task as `bridge show
//!    --json` prints it: spec, claims, attempts with provenance): the same
//!    final state as JSON. Target: documents ≤ 2× gzipped JSON. The store
//!    "before" may already be partly compacted: `sync` and runners compact
//!    documents past 32 chunk files by themselves. A folder store is measured as the sum of its files'
//!    sizes; a git store as the sum of the sizes of the distinct blobs in the
//!    trees of `refs/bridge/*` (and of a store made before issue 15,
//!    `refs/heads/bridge/*`) (`git ls-tree -r -l`, the same store
//!    files as a folder holds), with the repository's bytes on disk (every
//!    commit pushed so far) beside it. Without a `compact` subcommand the
//!    "after" figures are skipped with a note.
//! 5. The admin submits one new task (top priority) that writes
//!    `date +%s%N` to a file; a fresh runner in an empty folder (it pulls the
//!    whole store, as a new CI runner does) starts, and the time from its
//!    process start to that task's start is taken twice: from the runner's
//!    own report (`first_task_started_ms`, as in the fleet benchmark) and
//!    from the timestamp the task wrote. Target ≤ 1 s.
//!
//! A summary table with every figure and its target ends the run.
//!
//! `BRIDGE_SCALE_CURVE=1k,10k,100k[,1m]` runs the phases on a folder store
//! at each size instead (a tenth of the tasks, at most 10k, finished) and
//! prints how each figure grows (issue 18, item 4). At 1M every runner
//! holds the whole pool (about 3 GB): run it with BRIDGE_SCALE_RUNNERS=2.

mod support;

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{
    bridge_command, env_or, fail, gzip_len, matrix_yaml, stdout_or_fail, store_file_sizes,
};

const STATUS_TARGET_S: f64 = 2.0;
const RSS_TARGET_MB: f64 = 500.0;
const RATIO_TARGET: f64 = 2.0;
const FIRST_TASK_TARGET_MS: f64 = 1000.0;

fn main() {
    if let Ok(sizes) = std::env::var("BRIDGE_SCALE_CURVE") {
        return curve(&sizes);
    }
    let tasks: usize = env_or("BRIDGE_SCALE_TASKS", 100_000);
    let finished: usize = env_or("BRIDGE_SCALE_FINISHED", 10_000).min(tasks);
    let runners: usize = env_or("BRIDGE_SCALE_RUNNERS", 8).max(1);
    let stores: Vec<Kind> = std::env::var("BRIDGE_SCALE_STORES")
        .unwrap_or_else(|_| "dir,git".to_owned())
        .split(',')
        .map(|s| match s.trim() {
            "dir" => Kind::Dir,
            "git" => Kind::Git,
            other => fail(&format!(
                "BRIDGE_SCALE_STORES: unknown store kind `{other}` (dir, git)"
            )),
        })
        .collect();
    let keep = std::env::var("BRIDGE_SCALE_KEEP").is_ok_and(|v| v == "1");
    let bridge = support::bridge_binary();
    println!(
        "scale: {tasks} tasks of `true`, {finished} finished by {runners} runners (--parallel 2 each); load average {}\n",
        loadavg()
    );
    let all = Instant::now();
    let mut results = Vec::new();
    for kind in stores {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temp dir: {e}")));
        let t = Instant::now();
        let mut r = scale(&bridge, tmp.path(), kind, tasks, finished, runners);
        r.total_s = t.elapsed().as_secs_f64();
        println!(
            "[{}] whole run {:.1}s; load average {}",
            kind.name(),
            r.total_s,
            loadavg()
        );
        results.push(r);
        if keep {
            println!("[{}] kept {}\n", kind.name(), tmp.keep().display());
        } else {
            // Not part of any figure, but it can take minutes (a file system
            // mounted with `discard` trims every freed block).
            let t = Instant::now();
            tmp.close()
                .unwrap_or_else(|e| fail(&format!("remove the temp dir: {e}")));
            println!(
                "[{}] removed the temporary folders in {:.1}s\n",
                kind.name(),
                t.elapsed().as_secs_f64()
            );
        }
    }
    summary(&results);
    println!(
        "\ntotal {:.1}s ({:.1} min)",
        all.elapsed().as_secs_f64(),
        all.elapsed().as_secs_f64() / 60.0
    );
}

/// `BRIDGE_SCALE_CURVE=1k,10k,100k[,1m]` (issue 18, item 4): the same
/// phases on a `dir:` store at each size, a tenth of the tasks (at most
/// 10k) finished by the runners, then one line per size: how submit,
/// `status` and the store grow, and each figure's growth over the size
/// before it, against the growth of the task count.
fn curve(sizes: &str) {
    let counts: Vec<usize> = sizes
        .split(',')
        .map(|s| {
            let s = s.trim().to_ascii_lowercase();
            let (digits, factor) = match s.strip_suffix('m') {
                Some(d) => (d.to_owned(), 1_000_000),
                None => match s.strip_suffix('k') {
                    Some(d) => (d.to_owned(), 1_000),
                    None => (s.clone(), 1),
                },
            };
            digits
                .parse::<usize>()
                .map(|n| n * factor)
                .unwrap_or_else(|_| {
                    fail(&format!(
                        "BRIDGE_SCALE_CURVE: `{s}` is not a task count (e.g. 1k,10k,100k,1m)"
                    ))
                })
        })
        .collect();
    let runners: usize = env_or("BRIDGE_SCALE_RUNNERS", 8).max(1);
    let bridge = support::bridge_binary();
    println!(
        "cost curve on a dir: store, sizes {counts:?}; load average {}\n",
        loadavg()
    );
    let all = Instant::now();
    let mut rows: Vec<(usize, Results)> = Vec::new();
    for &tasks in &counts {
        let finished = (tasks / 10).clamp(1, 10_000);
        let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temp dir: {e}")));
        let t = Instant::now();
        let mut r = scale(&bridge, tmp.path(), Kind::Dir, tasks, finished, runners);
        r.total_s = t.elapsed().as_secs_f64();
        println!(
            "[{tasks}] whole run {:.1}s; load average {}\n",
            r.total_s,
            loadavg()
        );
        rows.push((tasks, r));
    }
    println!(
        "{:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "tasks", "submit", "status", "status", "status", "store", "store"
    );
    println!(
        "{:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "", "+ sync", "cold", "warm", "peak RSS", "before", "compacted"
    );
    let mut before: Option<&(usize, Results)> = None;
    for row in &rows {
        let (tasks, r) = row;
        let store = r.before.docs + r.before.blobs;
        let compacted = r.after.map(|a| a.docs + a.blobs);
        println!(
            "{tasks:>9} {:>9.2}s {:>9.2}s {:>9.2}s {:>10} {:>12} {:>12}",
            r.submit_s + r.submit_sync_s,
            r.status_cold_s,
            r.status_warm_s,
            mb(r.status_rss_kib),
            bytes(store),
            compacted.map_or_else(|| "-".to_owned(), bytes),
        );
        if let Some((prev_tasks, p)) = before {
            let g = |now: f64, then: f64| if then > 0.0 { now / then } else { f64::NAN };
            println!(
                "{:>9} {:>9.1}× {:>9.1}× {:>9.1}× {:>9.1}× {:>11.1}× {:>11}",
                format!("×{:.0}", *tasks as f64 / *prev_tasks as f64),
                g(r.submit_s + r.submit_sync_s, p.submit_s + p.submit_sync_s),
                g(r.status_cold_s, p.status_cold_s),
                g(r.status_warm_s, p.status_warm_s),
                g(r.status_rss_kib as f64, p.status_rss_kib as f64),
                g(store as f64, (p.before.docs + p.before.blobs) as f64),
                match (compacted, p.after) {
                    (Some(c), Some(pa)) =>
                        format!("{:.1}×", g(c as f64, (pa.docs + pa.blobs) as f64)),
                    _ => "-".to_owned(),
                },
            );
        }
        before = Some(row);
    }
    println!(
        "\ntotal {:.1}s ({:.1} min)",
        all.elapsed().as_secs_f64(),
        all.elapsed().as_secs_f64() / 60.0
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    Git,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Dir => "dir",
            Kind::Git => "git",
        }
    }
}

/// Every figure of one store kind.
#[derive(Default)]
struct Results {
    kind: &'static str,
    submit_s: f64,
    submit_sync_s: f64,
    documents: usize,
    history_s: f64,
    history_done: u64,
    history_dups: u64,
    history_pushes: f64,
    runner_rss_kib: u64,
    admin_sync_s: f64,
    status_cold_s: f64,
    status_warm_s: f64,
    status_rss_kib: u64,
    before: Sizes,
    after: Option<Sizes>,
    compact_s: Option<f64>,
    status_after_s: Option<f64>,
    status_after_warm_s: Option<f64>,
    status_after_rss_kib: Option<u64>,
    json_bytes: usize,
    gz_bytes: usize,
    first_report_ms: Option<f64>,
    first_external_ms: f64,
    fresh_run_s: f64,
    fresh_rss_kib: u64,
    total_s: f64,
}

/// Bytes of a store: documents (everything but blobs), blobs, and for git
/// the repository's bytes on disk.
#[derive(Clone, Copy, Default)]
struct Sizes {
    docs: u64,
    doc_files: u64,
    blobs: u64,
    blob_files: u64,
    disk: Option<u64>,
}

fn scale(
    bridge: &Path,
    root: &Path,
    kind: Kind,
    tasks: usize,
    finished: usize,
    runners: usize,
) -> Results {
    let tag = kind.name();
    let mut r = Results {
        kind: tag,
        ..Results::default()
    };
    let pool = Pool::new(bridge, root, kind, runners);
    println!("[{tag}] remote {}", pool.remote);

    // 1. Submit: one matrix, or past PART tasks one file of at most PART
    // each (one submission holds at most 100k tasks).
    const PART: usize = 100_000;
    let parts = tasks.div_ceil(PART).max(1);
    for part in 0..parts {
        let count = if parts == 1 {
            tasks
        } else {
            PART.min(tasks - part * PART)
        };
        let name = if parts == 1 {
            "t".to_owned()
        } else {
            format!("t{part}")
        };
        // Each part's tasks differ from the others' by an argument that
        // `true` ignores (the same command and matrix would be the same
        // tasks, stored once).
        let run = if parts == 1 {
            "[\"true\"]".to_owned()
        } else {
            format!("[\"true\", \"part-{part}\"]")
        };
        let yaml = matrix_yaml(&name, count, &run, &[]);
        let file = root.join("admin").join("tasks.yaml");
        std::fs::write(&file, yaml)
            .unwrap_or_else(|e| fail(&format!("write {}: {e}", file.display())));
        let t = Instant::now();
        let submitted = pool.admin(&["submit", "--offline", "--json", "tasks.yaml"]);
        r.submit_s += t.elapsed().as_secs_f64();
        let submitted: serde_json::Value = serde_json::from_str(&submitted)
            .unwrap_or_else(|e| fail(&format!("submit --json: {e}")));
        r.documents += submitted["documents"].as_u64().unwrap_or(0) as usize;
    }
    let t = Instant::now();
    pool.admin(&["sync", "-q"]);
    r.submit_sync_s = t.elapsed().as_secs_f64();
    println!(
        "[{tag}] 1. submit {tasks} tasks ({} documents): {:.2}s, then sync (push) {:.2}s",
        r.documents, r.submit_s, r.submit_sync_s
    );

    // 2. History from many writers.
    let t = Instant::now();
    let children: Vec<Running> = (0..runners)
        .map(|i| {
            let share = finished / runners + usize::from(i < finished % runners);
            pool.runner(i, runners, share)
        })
        .collect();
    let mut pushes = 0.0;
    let mut rejected = 0;
    for child in children {
        let m = child.wait();
        let report = m.json("bridge run");
        r.history_done += report["done"].as_u64().unwrap_or(0);
        pushes += report["pushes"].as_f64().unwrap_or(0.0);
        rejected += report["rejected_pushes"].as_u64().unwrap_or(0);
        r.runner_rss_kib = r.runner_rss_kib.max(m.maxrss_kib);
    }
    r.history_s = t.elapsed().as_secs_f64();
    r.history_pushes = pushes / runners as f64;
    let t = Instant::now();
    pool.admin(&["sync", "-q"]);
    r.admin_sync_s = t.elapsed().as_secs_f64();
    println!(
        "[{tag}] 2. {runners} runners finished {} tasks in {:.2}s ({:.1} pushes/runner, {rejected} rejected, peak RSS of a runner {}); admin sync {:.2}s",
        r.history_done,
        r.history_s,
        r.history_pushes,
        mb(r.runner_rss_kib),
        r.admin_sync_s
    );

    // 3. Status, cold (without the admin's document cache) then warm.
    let _ = std::fs::remove_dir_all(root.join("admin/.bridge/cache"));
    let cold = pool.admin_measured(&["status", "--json"]);
    let warm = pool.admin_measured(&["status", "--json"]);
    let status = cold.json("bridge status --json");
    let done = status["counts"]["done"].as_u64().unwrap_or(0);
    if status["tasks"].as_u64() != Some(tasks as u64) {
        fail(&format!(
            "status counts {} tasks, expected {tasks}",
            status["tasks"]
        ));
    }
    r.history_dups = r.history_done.saturating_sub(done);
    r.status_cold_s = cold.elapsed.as_secs_f64();
    r.status_warm_s = warm.elapsed.as_secs_f64();
    r.status_rss_kib = cold.maxrss_kib.max(warm.maxrss_kib);
    println!(
        "[{tag}] 3. status --json ({done} done): cold {:.2}s {}, warm {:.2}s {}",
        r.status_cold_s,
        mb(cold.maxrss_kib),
        r.status_warm_s,
        mb(warm.maxrss_kib)
    );

    // 4. Store size, compaction, gzipped JSON.
    r.before = pool.sizes();
    let ls = pool.admin(&["ls", "--json", "--full"]);
    r.json_bytes = ls.len();
    r.gz_bytes = gzip_len(ls.as_bytes()) as usize;
    println!(
        "[{tag}] 4. store before compaction: documents {} in {} files, blobs {} in {} files{}; ls --json --full {} → gzip {}",
        bytes(r.before.docs),
        r.before.doc_files,
        bytes(r.before.blobs),
        r.before.blob_files,
        disk(&r.before),
        bytes(r.json_bytes as u64),
        bytes(r.gz_bytes as u64)
    );
    let t = Instant::now();
    let compact = pool
        .command(&root.join("admin"), &root.join("admin-config"))
        .args(["compact", "--json"])
        .output()
        .unwrap_or_else(|e| fail(&format!("bridge compact: {e}")));
    let stderr = String::from_utf8_lossy(&compact.stderr);
    if compact.status.code() == Some(2) && stderr.contains("unrecognized subcommand") {
        println!("[{tag}]    compact: not available in this build");
    } else if !compact.status.success() {
        fail(&format!("bridge compact --json failed: {stderr}"));
    } else {
        pool.admin(&["sync", "-q"]);
        r.compact_s = Some(t.elapsed().as_secs_f64());
        let after = pool.sizes();
        println!(
            "[{tag}]    compact + sync {:.2}s: documents {} in {} files, blobs {} in {} files{}; compact said {}",
            t.elapsed().as_secs_f64(),
            bytes(after.docs),
            after.doc_files,
            bytes(after.blobs),
            after.blob_files,
            disk(&after),
            compact_summary(&compact.stdout)
        );
        r.after = Some(after);
        let _ = std::fs::remove_dir_all(root.join("admin/.bridge/cache"));
        let status = pool.admin_measured(&["status", "--json"]);
        status.json("bridge status --json");
        r.status_after_s = Some(status.elapsed.as_secs_f64());
        let warm = pool.admin_measured(&["status", "--json"]);
        r.status_after_warm_s = Some(warm.elapsed.as_secs_f64());
        r.status_after_rss_kib = Some(status.maxrss_kib.max(warm.maxrss_kib));
        println!(
            "[{tag}]    status --json after compaction: cold {:.2}s, warm {:.2}s, {}",
            status.elapsed.as_secs_f64(),
            warm.elapsed.as_secs_f64(),
            mb(status.maxrss_kib)
        );
    }

    // 5. A fresh runner's first task. It prints the time it started (a
    // sandboxed task cannot write outside its folder); the admin reads it
    // from the task's log once the runner has pushed it.
    pool.admin(&[
        "submit",
        "-q",
        "--name",
        "first",
        "--priority",
        "1000",
        "--",
        "sh",
        "-c",
        "date +%s%N",
    ]);
    let spawned_ns = epoch_ns();
    let fresh = pool.fresh_runner().wait();
    let report = fresh.json("bridge run (fresh)");
    pool.admin(&["sync", "-q"]);
    let log = pool.admin(&["logs", "first"]);
    let started_ns: u128 = log
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| {
            fail(&format!(
                "the fresh runner did not run the new task first (its log: {log:?}); it reported {report}"
            ))
        });
    r.first_external_ms = started_ns.saturating_sub(spawned_ns) as f64 / 1e6;
    r.first_report_ms = report["first_task_started_ms"].as_f64();
    r.fresh_run_s = fresh.elapsed.as_secs_f64();
    r.fresh_rss_kib = fresh.maxrss_kib;
    println!(
        "[{tag}] 5. fresh runner: start → first task started {} ms (runner's report), {:.0} ms (task's timestamp); whole run {:.2}s, {}",
        report["first_task_started_ms"],
        r.first_external_ms,
        r.fresh_run_s,
        mb(r.fresh_rss_kib)
    );
    r
}

/// The remote, the admin workspace, runner identities and folders.
struct Pool<'a> {
    bridge: &'a Path,
    root: PathBuf,
    kind: Kind,
    store: PathBuf,
    remote: String,
    /// One identity per history runner, then the fresh runner's.
    secrets: Vec<String>,
}

impl<'a> Pool<'a> {
    fn new(bridge: &'a Path, root: &Path, kind: Kind, runners: usize) -> Pool<'a> {
        let (store, remote) = match kind {
            Kind::Dir => {
                let store = root.join("store");
                std::fs::create_dir_all(&store)
                    .unwrap_or_else(|e| fail(&format!("mkdir {}: {e}", store.display())));
                let remote = format!("dir:{}", store.display());
                (store, remote)
            }
            Kind::Git => {
                let store = root.join("store.git");
                let ok = Command::new("git")
                    .args(["init", "-q", "--bare"])
                    .arg(&store)
                    .env("GIT_CONFIG_GLOBAL", "/dev/null")
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    fail("git init --bare failed");
                }
                let remote = format!("git:file://{}", store.display());
                (store, remote)
            }
        };
        std::fs::create_dir_all(root.join("admin"))
            .unwrap_or_else(|e| fail(&format!("mkdir: {e}")));
        let mut p = Pool {
            bridge,
            root: root.to_path_buf(),
            kind,
            store,
            remote,
            secrets: Vec::new(),
        };
        p.admin(&["init", "-q", "--remote", &p.remote.clone()]);
        p.secrets = (0..=runners)
            .map(|i| {
                let name = if i == runners {
                    "fresh".to_owned()
                } else {
                    format!("runner-{i}")
                };
                p.admin(&["members", "add-runner", &name, "-q"])
                    .trim()
                    .to_owned()
            })
            .collect();
        p
    }

    fn command(&self, dir: &Path, config: &Path) -> Command {
        bridge_command(self.bridge, dir, config)
    }

    fn admin_command(&self, args: &[&str]) -> Command {
        let mut c = self.command(&self.root.join("admin"), &self.root.join("admin-config"));
        c.args(args);
        c
    }

    fn admin(&self, args: &[&str]) -> String {
        stdout_or_fail(
            &mut self.admin_command(args),
            &format!("bridge {}", args.join(" ")),
        )
    }

    fn admin_measured(&self, args: &[&str]) -> Measured {
        let m = Running::spawn(
            self.admin_command(args),
            &format!("bridge {}", args.join(" ")),
        )
        .wait();
        m.check();
        m
    }

    /// A runner's folder: a fresh checkout (a copy of bridge.toml).
    fn runner_dir(&self, name: &str) -> PathBuf {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("mkdir: {e}")));
        std::fs::copy(self.root.join("admin/bridge.toml"), dir.join("bridge.toml"))
            .unwrap_or_else(|e| fail(&format!("copy bridge.toml: {e}")));
        dir
    }

    /// Starts history runner `i` of `k`, running at most `max` tasks.
    fn runner(&self, i: usize, k: usize, max: usize) -> Running {
        let dir = self.runner_dir(&format!("runner-{i}"));
        let mut c = self.command(&dir, &dir.join(".config"));
        c.env("BRIDGE_IDENTITY", &self.secrets[i])
            .env("BRIDGE_DEVICE", format!("runner-{i}"))
            .args(["run", "-q", "--json", "--budget", "2h", "--parallel", "2"])
            .arg("--shard")
            .arg(format!("{i}/{k}"))
            .arg("--max-tasks")
            .arg(max.to_string());
        Running::spawn(c, &format!("bridge run (runner {i})"))
    }

    /// Starts a runner in an empty folder that runs one task.
    fn fresh_runner(&self) -> Running {
        let dir = self.runner_dir("fresh");
        let mut c = self.command(&dir, &dir.join(".config"));
        c.env(
            "BRIDGE_IDENTITY",
            self.secrets.last().map_or("", String::as_str),
        )
        .env("BRIDGE_DEVICE", "fresh")
        .args(["run", "-q", "--json", "--budget", "30m", "--parallel", "1"])
        .args(["--max-tasks", "1"]);
        Running::spawn(c, "bridge run (fresh)")
    }

    fn sizes(&self) -> Sizes {
        match self.kind {
            Kind::Dir => dir_sizes(&self.store),
            Kind::Git => git_sizes(&self.store),
        }
    }
}

/// Sums the files of a folder store (packs of small blobs count as blobs).
fn dir_sizes(store: &Path) -> Sizes {
    let mut s = Sizes::default();
    for f in store_file_sizes(store) {
        s.add(f.blob, f.len);
    }
    s
}

/// Sums the distinct blobs in the trees of `refs/bridge/*` and of the
/// branches of stores made before issue 15, `refs/heads/bridge/*`.
fn git_sizes(store: &Path) -> Sizes {
    let refs = git(
        store,
        &[
            "for-each-ref",
            "--format=%(objectname)",
            "refs/bridge/",
            "refs/heads/bridge/",
        ],
    );
    let mut seen = HashSet::new();
    let mut s = Sizes::default();
    for commit in refs.lines().filter(|l| !l.is_empty()) {
        // "<mode> blob <oid> <size>\t<path>"
        for line in git(store, &["ls-tree", "-r", "-l", commit]).lines() {
            let Some((meta, path)) = line.split_once('\t') else {
                continue;
            };
            let fields: Vec<&str> = meta.split_whitespace().collect();
            let (Some(&"blob"), Some(oid), Some(size)) =
                (fields.get(1), fields.get(2), fields.get(3))
            else {
                continue;
            };
            if !seen.insert((*oid).to_owned()) {
                continue;
            }
            let len: u64 = size
                .parse()
                .unwrap_or_else(|e| fail(&format!("git ls-tree size `{size}`: {e}")));
            s.add(
                path.starts_with("blobs/") || path.starts_with("packs/"),
                len,
            );
        }
    }
    let mut on_disk = 0;
    for entry in walkdir::WalkDir::new(store) {
        let entry = entry.unwrap_or_else(|e| fail(&format!("walk {}: {e}", store.display())));
        if entry.file_type().is_file() {
            on_disk += entry.metadata().map_or(0, |m| m.len());
        }
    }
    s.disk = Some(on_disk);
    s
}

impl Sizes {
    fn add(&mut self, blob: bool, len: u64) {
        if blob {
            self.blobs += len;
            self.blob_files += 1;
        } else {
            self.docs += len;
            self.doc_files += 1;
        }
    }
}

fn git(repo: &Path, args: &[&str]) -> String {
    stdout_or_fail(
        Command::new("git")
            .arg("--git-dir")
            .arg(repo)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null"),
        &format!("git {}", args.join(" ")),
    )
}

/// The scalar fields of `bridge compact --json` (counts and bytes), without
/// the per-document details.
fn compact_summary(stdout: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(stdout) {
        Ok(serde_json::Value::Object(fields)) => fields
            .iter()
            .filter(|(_, v)| !v.is_array() && !v.is_object())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::from_utf8_lossy(stdout).trim().to_owned(),
    }
}

/// A child whose stdout and stderr are being collected.
struct Running {
    what: String,
    child: Child,
    started: Instant,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

/// A finished child: its output, wall time and peak RSS.
struct Measured {
    what: String,
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    elapsed: Duration,
    maxrss_kib: u64,
}

impl Running {
    fn spawn(mut command: Command, what: &str) -> Running {
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("spawn {what}: {e}")));
        let mut err = child
            .stderr
            .take()
            .unwrap_or_else(|| fail(&format!("{what}: no stderr pipe")));
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        Running {
            what: what.to_owned(),
            child,
            started,
            stderr,
        }
    }

    /// Reads the output to its end, then reaps the child with `wait4`.
    fn wait(mut self) -> Measured {
        let mut stdout = Vec::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_end(&mut stdout)
                .unwrap_or_else(|e| fail(&format!("{}: read stdout: {e}", self.what)));
        }
        let (status, maxrss_kib) =
            wait4(self.child.id()).unwrap_or_else(|e| fail(&format!("{}: wait4: {e}", self.what)));
        let elapsed = self.started.elapsed();
        let stderr = self.stderr.join().unwrap_or_default();
        Measured {
            what: self.what,
            status,
            stdout,
            stderr,
            elapsed,
            maxrss_kib,
        }
    }
}

impl Measured {
    fn check(&self) {
        if !self.status.success() {
            fail(&format!(
                "{} failed ({}): {}",
                self.what,
                self.status,
                String::from_utf8_lossy(&self.stderr)
            ));
        }
    }

    fn json(&self, what: &str) -> serde_json::Value {
        self.check();
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            fail(&format!(
                "{what} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&self.stdout)
            ))
        })
    }
}

/// Waits for the child `pid`; returns its exit status and peak RSS in KiB
/// (`ru_maxrss`, which Linux counts in KiB). The caller must not wait for it
/// through `std::process::Child` afterwards.
#[allow(unsafe_code)]
fn wait4(pid: u32) -> std::io::Result<(ExitStatus, u64)> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct of integers, for which all-zero
    // bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers point to live, writable locals of the types
        // wait4 expects, and `pid` is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            let rss = u64::try_from(usage.ru_maxrss).unwrap_or(0);
            return Ok((ExitStatus::from_raw(status), rss));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn summary(results: &[Results]) {
    if results.is_empty() {
        return;
    }
    let mut rows: Vec<(String, Vec<String>, String)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&Results) -> String, target: &str| {
        rows.push((
            label.to_owned(),
            results.iter().map(f).collect(),
            target.to_owned(),
        ));
    };
    let ok = |pass: bool| if pass { "ok" } else { "MISSED" };
    row("documents", &|r| r.documents.to_string(), "");
    row(
        "submit (offline) + sync",
        &|r| format!("{:.2}s + {:.2}s", r.submit_s, r.submit_sync_s),
        "",
    );
    row(
        "history: runners' tasks, time",
        &|r| format!("{} in {:.1}s", r.history_done, r.history_s),
        "",
    );
    row(
        "history: pushes/runner, runner peak RSS",
        &|r| format!("{:.1}, {}", r.history_pushes, mb(r.runner_rss_kib)),
        "",
    );
    row("history: duplicates", &|r| r.history_dups.to_string(), "");
    row(
        "admin sync after history",
        &|r| format!("{:.2}s", r.admin_sync_s),
        "",
    );
    row(
        "status --json cold / warm",
        &|r| {
            format!(
                "{:.2}s / {:.2}s {}",
                r.status_cold_s,
                r.status_warm_s,
                ok(r.status_cold_s.max(r.status_warm_s) <= STATUS_TARGET_S)
            )
        },
        "≤ 2 s",
    );
    row(
        "status peak RSS",
        &|r| {
            format!(
                "{} {}",
                mb(r.status_rss_kib),
                ok(r.status_rss_kib as f64 / 1024.0 <= RSS_TARGET_MB)
            )
        },
        "≤ 500 MB",
    );
    row(
        "docs bytes before compaction",
        &|r| format!("{} ({} files)", bytes(r.before.docs), r.before.doc_files),
        "",
    );
    row(
        "blobs bytes before compaction",
        &|r| format!("{} ({} files)", bytes(r.before.blobs), r.before.blob_files),
        "",
    );
    row(
        "docs bytes after compaction",
        &|r| match r.after {
            Some(a) => format!("{} ({} files)", bytes(a.docs), a.doc_files),
            None => "n/a".to_owned(),
        },
        "",
    );
    row(
        "blobs bytes after compaction",
        &|r| match r.after {
            Some(a) => format!("{} ({} files)", bytes(a.blobs), a.blob_files),
            None => "n/a".to_owned(),
        },
        "",
    );
    if results.iter().any(|r| r.before.disk.is_some()) {
        row(
            "git repository on disk before / after",
            &|r| match (r.before.disk, r.after.and_then(|a| a.disk)) {
                (Some(b), Some(a)) => format!("{} / {}", bytes(b), bytes(a)),
                (Some(b), None) => format!("{} / n/a", bytes(b)),
                _ => "-".to_owned(),
            },
            "",
        );
    }
    row(
        "ls --json, gzipped",
        &|r| {
            format!(
                "{} → {}",
                bytes(r.json_bytes as u64),
                bytes(r.gz_bytes as u64)
            )
        },
        "",
    );
    row(
        "docs / gzipped JSON before",
        &|r| format!("{:.2}×", r.before.docs as f64 / r.gz_bytes as f64),
        "",
    );
    row(
        "docs / gzipped JSON after",
        &|r| match r.after {
            Some(a) => {
                let ratio = a.docs as f64 / r.gz_bytes as f64;
                format!("{ratio:.2}× {}", ok(ratio <= RATIO_TARGET))
            }
            None => "n/a".to_owned(),
        },
        "≤ 2×",
    );
    row(
        "compact + sync",
        &|r| r.compact_s.map_or("n/a".to_owned(), |s| format!("{s:.2}s")),
        "",
    );
    row(
        "status after compaction cold / warm",
        &|r| match (
            r.status_after_s,
            r.status_after_warm_s,
            r.status_after_rss_kib,
        ) {
            (Some(c), Some(w), Some(k)) => {
                format!("{c:.2}s / {w:.2}s {}, {}", ok(w <= STATUS_TARGET_S), mb(k))
            }
            _ => "n/a".to_owned(),
        },
        "≤ 2 s",
    );
    row(
        "fresh runner → first task (report)",
        &|r| match r.first_report_ms {
            Some(ms) => format!("{ms:.0} ms {}", ok(ms <= FIRST_TASK_TARGET_MS)),
            None => "none".to_owned(),
        },
        "≤ 1 s",
    );
    row(
        "fresh runner → first task (task's clock)",
        &|r| {
            format!(
                "{:.0} ms {}",
                r.first_external_ms,
                ok(r.first_external_ms <= FIRST_TASK_TARGET_MS)
            )
        },
        "≤ 1 s",
    );
    row(
        "fresh runner: run, peak RSS",
        &|r| format!("{:.2}s, {}", r.fresh_run_s, mb(r.fresh_rss_kib)),
        "",
    );
    row(
        "whole run of this store",
        &|r| format!("{:.1}s", r.total_s),
        "",
    );

    let label_w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let mut col_w: Vec<usize> = results.iter().map(|r| r.kind.len()).collect();
    for (_, values, _) in &rows {
        for (w, v) in col_w.iter_mut().zip(values) {
            *w = (*w).max(v.chars().count());
        }
    }
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    let mut header = pad("", label_w);
    for (r, w) in results.iter().zip(&col_w) {
        header.push_str("  ");
        header.push_str(&pad(r.kind, *w));
    }
    header.push_str("  target");
    println!("{header}");
    for (label, values, target) in &rows {
        let mut line = pad(label, label_w);
        for (v, w) in values.iter().zip(&col_w) {
            line.push_str("  ");
            line.push_str(&pad(v, *w));
        }
        line.push_str("  ");
        line.push_str(target);
        println!("{}", line.trim_end());
    }
}

fn mb(kib: u64) -> String {
    format!("{:.0} MB", kib as f64 / 1024.0)
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1024 * 1024 => format!("{:.2} MB", n as f64 / 1048576.0),
        n if n >= 10 * 1024 => format!("{:.1} kB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn disk(s: &Sizes) -> String {
    s.disk
        .map(|d| format!(" (repository on disk {})", bytes(d)))
        .unwrap_or_default()
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews
/// every figure.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn epoch_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
