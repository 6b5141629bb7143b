//! Fleet benchmark: K `bridge run` processes (K = 4 and 16, one task at a
//! time each) drain 1000 tasks that each sleep 0.2 s from a local bare git
//! repository, then one runner starts on a store holding 10k finished tasks.
//!
//! Run: `cargo bench -p bridge-pool --bench fleet` (about two minutes on 2 cores);
//! BRIDGE_BENCH_BIN times another `bridge` binary with the same code.
//! BRIDGE_FLEET_TASKS, BRIDGE_FLEET_KS (e.g. "4,16") and
//! BRIDGE_FLEET_FINISHED (the size of the finished store) change the sizes;
//! BRIDGE_FLEET_KEEP=1 keeps each fleet's folders (printed) for inspection.
//!
//! Issue 15: BRIDGE_FLEET_SERVER=github runs the fleet against the
//! GitHub-shaped git server of the tests (`bridge_testutil::github_git`, on
//! 127.0.0.1, https with a token), where the remote gets the default push
//! budget (6 pushes a minute for the whole repository), and prints the
//! server's counts: pushes in the busiest minute and 5-minute window, reads
//! in the busiest second, the widest tree, and whether the fleet stayed
//! within GitHub's recommendations. BRIDGE_FLEET_MISSING=N leaves the first
//! N shards' runners out (matrix jobs GitHub never started);
//! BRIDGE_FLEET_SLEEP_MS sets the task length (200 ms by default),
//! BRIDGE_FLEET_SLOTS the tasks each runner runs at once (1),
//! BRIDGE_FLEET_DOCS the documents the tasks are submitted in (1) and
//! BRIDGE_FLEET_INPUTS=1 gives each task an input file of its own.
//!
//! BRIDGE_FLEET_GRID=1 runs issue 15's whole grid instead, on the
//! GitHub-shaped server (budget on) and on a local bare repository (no
//! budget) in the same run: 1000 tasks of 2 s and 4000 of 50 ms in 4
//! documents with an input each, K = 16 and 6 runners × 2 slots with 0, 1
//! and 2 runners missing, and K = 4; one markdown table (about 45 minutes
//! on 2 cores). BRIDGE_FLEET_SERVERS=github (or bare) keeps one kind.
//! BRIDGE_FLEET_BIG=100000 measures a store of that many tasks with an
//! input file each in 100 documents on both kinds instead: submit time,
//! push time (the first sync), pushes, and the widest tree.
//!
//! It prints makespan / ideal (total work / total slots), duplicate
//! executions, pushes and rejected pushes per runner, and the time from a
//! runner's process start to its first task started. Targets: makespan ≤ 1.2×
//! ideal at K = 16, duplicates ≤ 1 %, no rejected push on a writer's own
//! ref, first task ≤ 1 s.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use bridge_testutil::github_git::{GitHubGit, Recommendations};
use support::{bridge_command, env_or, fail, matrix_yaml, stdout_or_fail};

fn main() {
    let servers: Vec<bool> = match std::env::var("BRIDGE_FLEET_SERVERS").as_deref() {
        Ok("github") => vec![true],
        Ok("bare") => vec![false],
        _ => vec![true, false],
    };
    if let Some(n) = std::env::var("BRIDGE_FLEET_BIG")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return big_store(n, &servers);
    }
    if std::env::var_os("BRIDGE_FLEET_GRID").is_some() {
        let mut cases = Vec::new();
        for &github in &servers {
            for (tasks, sleep_ms) in [(1000, 2000), (4000, 50)] {
                for k in [16, 6] {
                    for missing in 0..=2 {
                        cases.push(Case {
                            github,
                            tasks,
                            sleep_ms,
                            k,
                            missing,
                            slots: 2,
                            docs: 4,
                            inputs: true,
                        });
                    }
                }
            }
            cases.push(Case {
                github,
                tasks: 4000,
                sleep_ms: 50,
                k: 4,
                missing: 0,
                slots: 2,
                docs: 4,
                inputs: true,
            });
        }
        println!("fleet grid (issue 15): {} cases\n", cases.len());
        print_header();
        for case in &cases {
            run_case(case);
        }
        return;
    }

    let tasks: usize = env_or("BRIDGE_FLEET_TASKS", 1000);
    let finished: usize = env_or("BRIDGE_FLEET_FINISHED", 10_000);
    let ks: Vec<usize> = std::env::var("BRIDGE_FLEET_KS")
        .ok()
        .map(|v| v.split(',').filter_map(|k| k.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![4, 16]);
    let github = std::env::var("BRIDGE_FLEET_SERVER").is_ok_and(|v| v == "github");
    print_header();
    for k in ks {
        run_case(&Case {
            github,
            tasks,
            sleep_ms: env_or("BRIDGE_FLEET_SLEEP_MS", 200) as u64,
            k,
            missing: env_or("BRIDGE_FLEET_MISSING", 0),
            slots: env_or("BRIDGE_FLEET_SLOTS", 1),
            docs: env_or("BRIDGE_FLEET_DOCS", 1),
            inputs: env_or("BRIDGE_FLEET_INPUTS", 0) > 0,
        });
    }
    if github {
        // The finished-store start-up below is about the local store.
        return;
    }

    // Start-up on a store holding many finished tasks.
    let bridge = support::bridge_binary();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temp dir: {e}")));
    let fleet = Fleet::new(&bridge, tmp.path(), None);
    let yaml = matrix_yaml("done", finished, "[\"true\"]", &[]);
    fleet.submit(&yaml);
    let t = Instant::now();
    fleet.admin(&["work", "-q", "--parallel", "2"]);
    eprintln!(
        "(finished {finished} tasks in {:.1}s)",
        t.elapsed().as_secs_f64()
    );
    fleet.admin(&["submit", "-q", "--name", "new", "--", "true"]);
    let report = wait_json(fleet.runner(0, 1, 1));
    let nothing = wait_json(fleet.runner(1, 2, 1));
    println!(
        "\nstore with {finished} finished tasks: runner start → first task started {} ms; a runner with nothing to do exits in {:.2}s",
        report["first_task_started_ms"],
        nothing["seconds"].as_f64().unwrap_or(f64::NAN)
    );
}

/// One fleet to measure.
struct Case {
    /// On the GitHub-shaped server (budget on), else a local bare
    /// repository (no budget).
    github: bool,
    tasks: usize,
    sleep_ms: u64,
    /// Shards.
    k: usize,
    /// Runners left out (the first shards').
    missing: usize,
    /// Tasks each runner runs at once.
    slots: usize,
    /// Documents the tasks are submitted in.
    docs: usize,
    /// Whether each task has an input file of its own.
    inputs: bool,
}

fn print_header() {
    println!(
        "| store | tasks | K (present) | makespan | ideal | ratio | duplicates | pushes: all (runners' avg) | busiest minute / 5 min | reads: busiest second | widest tree | refused | within |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
}

/// Runs one fleet to the end and prints its row (and a line of detail).
fn run_case(case: &Case) {
    let bridge = support::bridge_binary();
    let server = case.github.then(GitHubGit::start);
    let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temp dir: {e}")));
    let repo = format!("o/fleet-{}", case.k);
    let fleet = Fleet::new(
        &bridge,
        tmp.path(),
        server.as_ref().map(|s| (s, repo.as_str())),
    );
    if std::env::var_os("BRIDGE_FLEET_KEEP").is_some() {
        eprintln!("K = {}: keeping {}", case.k, tmp.path().display());
    }
    let sleep_s = case.sleep_ms as f64 / 1000.0;
    fleet.submit_split(
        case.tasks,
        case.docs,
        case.inputs,
        &format!("[\"sleep\", \"{sleep_s}\"]"),
        "    timeout: 1m\n    env: { I: \"${{ matrix.i }}\" }\n",
    );
    let started = Instant::now();
    let children: Vec<Child> = (case.missing.min(case.k - 1)..case.k)
        .map(|i| fleet.runner(i, case.k, case.slots))
        .collect();
    let present = children.len();
    let reports: Vec<serde_json::Value> = children.into_iter().map(wait_json).collect();
    let makespan = started.elapsed().as_secs_f64();
    let ideal = case.tasks as f64 * sleep_s / (present * case.slots) as f64;
    // The server's counts before the checks below add the admin's sync.
    let counts = server.as_ref().map(GitHubGit::report);
    let successes = fleet.successes(case.tasks);
    let dups = successes.saturating_sub(case.tasks);
    let runner_pushes: f64 = reports
        .iter()
        .map(|r| r["pushes"].as_f64().unwrap_or(0.0))
        .sum();
    let spread = |key: &str| {
        let v: Vec<f64> = reports.iter().filter_map(|r| r[key].as_f64()).collect();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{min:.0}–{max:.0}")
    };
    let sum = |key: &str| -> u64 { reports.iter().filter_map(|r| r[key].as_u64()).sum() };
    let mut server_reads = String::new();
    let (pushes, peaks, reads, widest, refused, within) = match &counts {
        Some(report) => {
            let r = report
                .repo(&repo)
                .unwrap_or_else(|| fail("the server saw no request for the fleet's repository"));
            let within = match report.check(&Recommendations::github()) {
                Ok(()) => "yes".to_owned(),
                Err(v) => format!("**no**: {}", v.to_string().replace('\n', "; ")),
            };
            server_reads = format!(
                "; server: {} reads, pushes at {:?} s",
                r.reads,
                r.pushes.iter().map(|p| p.at.as_secs()).collect::<Vec<_>>()
            );
            (
                r.pushes.len().to_string(),
                format!(
                    "{} / {}",
                    r.peak_pushes_per_minute, r.peak_pushes_per_5_minutes
                ),
                r.peak_reads_per_second.to_string(),
                r.widest_tree.as_ref().map_or(0, |t| t.entries).to_string(),
                r.refused().count().to_string(),
                within,
            )
        }
        None => (
            format!("{runner_pushes:.0} by runners"),
            "–".to_owned(),
            "–".to_owned(),
            "–".to_owned(),
            sum("rejected_pushes").to_string(),
            "(no budget)".to_owned(),
        ),
    };
    println!(
        "| {} | {} × {} | {} ({present}) | {makespan:.1} s | {ideal:.1} s | {:.2}× | {dups} ({:.1} %) | {pushes} ({:.1}) | {peaks} | {reads} | {widest} | {refused} | {within} |",
        if case.github {
            "GitHub-shaped"
        } else {
            "local bare"
        },
        case.tasks,
        human_ms(case.sleep_ms),
        case.k,
        makespan / ideal,
        100.0 * dups as f64 / case.tasks as f64,
        runner_pushes / present as f64,
    );
    eprintln!(
        "    per runner: tasks done {}, first task at {} ms, exit at {} s; fetches {}; claims lost {}{server_reads}",
        spread("done"),
        spread("first_task_started_ms"),
        spread("seconds"),
        sum("fetches"),
        sum("lost_claims"),
    );
    if std::env::var_os("BRIDGE_FLEET_KEEP").is_some() {
        let _ = tmp.keep();
    }
}

/// `2 s` or `50 ms`.
fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// A store of `n` tasks with an input file each, in 100 documents: the
/// submit's time, the first sync's (the push), pushes and the widest tree.
fn big_store(n: usize, servers: &[bool]) {
    let bridge = support::bridge_binary();
    println!("| store | tasks | submit | push (first sync) | pushes | widest tree | within |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &github in servers {
        let server = github.then(GitHubGit::start);
        let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temp dir: {e}")));
        let repo = "o/big";
        let fleet = Fleet::new(&bridge, tmp.path(), server.as_ref().map(|s| (s, repo)));
        let (submit_s, push_s) = fleet.submit_split(n, 100, true, "[\"true\"]", "");
        let (pushes, widest, within) = match &server {
            Some(server) => {
                let report = server.report();
                let r = report
                    .repo(repo)
                    .unwrap_or_else(|| fail("the server saw no request for the store"));
                let within = match report.check(&Recommendations::github()) {
                    Ok(()) => "yes".to_owned(),
                    Err(v) => format!("**no**: {}", v.to_string().replace('\n', "; ")),
                };
                (
                    r.pushes.len().to_string(),
                    r.widest_tree
                        .as_ref()
                        .map_or_else(String::new, |t| format!("{} ({})", t.entries, t.path)),
                    within,
                )
            }
            None => ("–".to_owned(), "–".to_owned(), "(no budget)".to_owned()),
        };
        println!(
            "| {} | {n} | {submit_s:.1} s | {push_s:.1} s | {pushes} | {widest} | {within} |",
            if github {
                "GitHub-shaped"
            } else {
                "local bare"
            },
        );
    }
}

/// A bare repository (local, or `repo` on the GitHub-shaped server), an
/// admin workspace that submits, and runner folders.
struct Fleet<'a> {
    bridge: &'a Path,
    root: PathBuf,
    secret: String,
    /// What every process is given to reach the server (token, CA).
    env: Vec<(String, String)>,
}

impl<'a> Fleet<'a> {
    fn new(bridge: &'a Path, root: &Path, server: Option<(&GitHubGit, &str)>) -> Fleet<'a> {
        let (remote, env) = match server {
            Some((server, repo)) => (
                format!("git:{}", server.create_repo(repo)),
                server.bridge_env(),
            ),
            None => {
                let store = root.join("store.git");
                let ok = Command::new("git")
                    .args(["init", "-q", "--bare"])
                    .arg(&store)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    fail("git init --bare failed");
                }
                (format!("git:{}", store.display()), Vec::new())
            }
        };
        std::fs::create_dir_all(root.join("admin"))
            .unwrap_or_else(|e| fail(&format!("mkdir: {e}")));
        let mut f = Fleet {
            bridge,
            root: root.to_path_buf(),
            secret: String::new(),
            env,
        };
        f.admin(&["init", "-q", "--remote", &remote]);
        f.secret = f
            .admin(&["members", "add-runner", "fleet", "-q"])
            .trim()
            .to_owned();
        f
    }

    fn command(&self, dir: &Path, config: &Path) -> Command {
        let mut cmd = bridge_command(self.bridge, dir, config);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn admin(&self, args: &[&str]) -> String {
        stdout_or_fail(
            self.command(&self.root.join("admin"), &self.root.join("admin-config"))
                .args(args),
            &format!("bridge {}", args.join(" ")),
        )
    }

    fn submit(&self, yaml: &str) {
        let file = self.root.join("admin").join("tasks.yaml");
        std::fs::write(&file, yaml)
            .unwrap_or_else(|e| fail(&format!("write {}: {e}", file.display())));
        self.admin(&["submit", "-q", "tasks.yaml"]);
    }

    /// Starts runner `i` of `k`, running `slots` tasks at once, in a fresh
    /// checkout (a copy of bridge.toml).
    fn runner(&self, i: usize, k: usize, slots: usize) -> Child {
        let dir = self.root.join(format!("runner-{k}-{i}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("mkdir: {e}")));
        std::fs::copy(self.root.join("admin/bridge.toml"), dir.join("bridge.toml"))
            .unwrap_or_else(|e| fail(&format!("copy bridge.toml: {e}")));
        self.command(&dir, &dir.join(".config"))
            .env("BRIDGE_IDENTITY", &self.secret)
            .env("BRIDGE_DEVICE", format!("runner-{i}"))
            .args(["run", "-q", "--json", "--budget", "30m", "--parallel"])
            .arg(slots.to_string())
            .arg("--shard")
            .arg(format!("{i}/{k}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("spawn bridge run: {e}")))
    }

    /// Submits `tasks` instances of a matrix task running `run` (a YAML
    /// flow list) with `extra` lines, split over `docs` documents (task
    /// files), each with an input file of its own when `inputs`: offline,
    /// then one sync, so the whole submission is one push. Returns the
    /// submit's and the sync's times.
    fn submit_split(
        &self,
        tasks: usize,
        docs: usize,
        inputs: bool,
        run: &str,
        extra: &str,
    ) -> (f64, f64) {
        let admin = self.root.join("admin");
        let per = tasks.div_ceil(docs.max(1));
        if inputs {
            self.write_inputs(tasks);
        }
        let mut files = Vec::new();
        for d in 0..docs.max(1) {
            let range = (d * per)..((d + 1) * per).min(tasks);
            if range.is_empty() {
                continue;
            }
            let values: Vec<String> = range.map(|i| i.to_string()).collect();
            let mut yaml = format!(
                "tasks:\n  - name: t{d}\n    matrix:\n      i: [{}]\n    run: {run}\n{extra}",
                values.join(", ")
            );
            if inputs {
                yaml.push_str("    inputs: [\"in/${{ matrix.i }}.txt\"]\n");
            }
            let name = format!("tasks-{d}.yaml");
            std::fs::write(admin.join(&name), yaml)
                .unwrap_or_else(|e| fail(&format!("write {name}: {e}")));
            files.push(name);
        }
        let t = Instant::now();
        for file in &files {
            self.admin(&["submit", "-q", "--offline", file]);
        }
        let submit = t.elapsed().as_secs_f64();
        let t = Instant::now();
        self.admin(&["sync", "-q"]);
        (submit, t.elapsed().as_secs_f64())
    }

    /// One small input file per task, `in/<i>.txt`, each different.
    fn write_inputs(&self, tasks: usize) {
        let dir = self.root.join("admin").join("in");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("mkdir in: {e}")));
        for i in 0..tasks {
            std::fs::write(dir.join(format!("{i}.txt")), format!("input {i}\n"))
                .unwrap_or_else(|e| fail(&format!("write input {i}: {e}")));
        }
    }

    /// Successful attempts over all tasks, after the admin syncs.
    fn successes(&self, expected: usize) -> usize {
        self.admin(&["sync", "-q"]);
        let ls: serde_json::Value = serde_json::from_str(&self.admin(&["ls", "--json"]))
            .unwrap_or_else(|e| fail(&format!("ls --json: {e}")));
        let tasks = ls.as_array().cloned().unwrap_or_default();
        let not_done = tasks.iter().filter(|t| t["status"] != "done").count();
        if tasks.len() != expected {
            fail(&format!(
                "{} tasks in the store, {expected} submitted",
                tasks.len()
            ));
        }
        if not_done > 0 {
            fail(&format!(
                "{not_done} tasks are not done after the fleet drained"
            ));
        }
        // Each success is one attempt: count them through `show`-free data:
        // attempts minus failures, all attempts of a done trivial task succeed.
        tasks
            .iter()
            .map(|t| t["attempts"].as_u64().unwrap_or(0) as usize)
            .sum()
    }
}

fn wait_json(child: Child) -> serde_json::Value {
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| fail(&format!("wait for bridge run: {e}")));
    if !out.status.success() {
        fail(&format!("bridge run exited with {}", out.status));
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        fail(&format!(
            "bridge run --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        ))
    })
}
