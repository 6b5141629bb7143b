//! Fleet benchmark: K `bridge run` processes (K = 4 and 16, one task at a
//! time each) drain 1000 tasks that each sleep 0.2 s from a local bare git
//! repository, then one runner starts on a store holding 10k finished tasks.
//!
//! Run: `cargo bench -p bridge --bench fleet` (about two minutes on 2 cores);
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
//! BRIDGE_FLEET_SLEEP_MS sets the task length (200 ms by default).
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
    let tasks: usize = env_or("BRIDGE_FLEET_TASKS", 1000);
    let finished: usize = env_or("BRIDGE_FLEET_FINISHED", 10_000);
    let ks: Vec<usize> = std::env::var("BRIDGE_FLEET_KS")
        .ok()
        .map(|v| v.split(',').filter_map(|k| k.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![4, 16]);
    let bridge = support::bridge_binary();
    let sleep_s = env_or("BRIDGE_FLEET_SLEEP_MS", 200) as f64 / 1000.0;
    let missing = env_or("BRIDGE_FLEET_MISSING", 0);
    let server = std::env::var("BRIDGE_FLEET_SERVER")
        .is_ok_and(|v| v == "github")
        .then(GitHubGit::start);
    println!(
        "fleet: {tasks} tasks of `sleep {sleep_s}`, K runners × 1 slot ({missing} missing), {}\n",
        if server.is_some() {
            "GitHub-shaped git server, default push budget"
        } else {
            "local bare git repository"
        }
    );
    println!(
        "{:>3} {:>10} {:>9} {:>7} {:>10} {:>14} {:>16}",
        "K", "makespan", "ideal", "ratio", "dups", "pushes/runner", "rejected (own)"
    );
    for k in ks {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temp dir: {e}")));
        let repo = format!("o/fleet-{k}");
        let fleet = Fleet::new(
            &bridge,
            tmp.path(),
            server.as_ref().map(|s| (s, repo.as_str())),
        );
        if std::env::var_os("BRIDGE_FLEET_KEEP").is_some() {
            eprintln!("K = {k}: keeping {}", tmp.path().display());
        }
        let yaml = matrix_yaml(
            "t",
            tasks,
            &format!("[\"sleep\", \"{sleep_s}\"]"),
            &["timeout: 1m"],
        );
        fleet.submit(&yaml);
        let started = Instant::now();
        let children: Vec<Child> = (missing.min(k - 1)..k)
            .map(|i| fleet.runner(i, k))
            .collect();
        let present = children.len();
        let reports: Vec<serde_json::Value> = children.into_iter().map(wait_json).collect();
        let makespan = started.elapsed().as_secs_f64();
        let ideal = tasks as f64 * sleep_s / present as f64;
        let successes = fleet.successes();
        let pushes: f64 = reports
            .iter()
            .map(|r| r["pushes"].as_f64().unwrap_or(0.0))
            .sum::<f64>()
            / present as f64;
        let rejected: u64 = reports
            .iter()
            .map(|r| r["rejected_pushes"].as_u64().unwrap_or(0))
            .sum();
        println!(
            "{k:>3} {:>9.2}s {:>8.2}s {:>7.2} {:>5} ({:.1}%) {:>10.1} {:>16}",
            makespan,
            ideal,
            makespan / ideal,
            successes.saturating_sub(tasks),
            100.0 * successes.saturating_sub(tasks) as f64 / tasks as f64,
            pushes,
            rejected
        );
        let spread = |key: &str| {
            let v: Vec<f64> = reports.iter().filter_map(|r| r[key].as_f64()).collect();
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{min:.0}–{max:.0}")
        };
        let lost: u64 = reports
            .iter()
            .filter_map(|r| r["lost_claims"].as_u64())
            .sum();
        println!(
            "    per runner: tasks done {}, first task at {} ms, exit at {} s; claims lost {lost}",
            spread("done"),
            spread("first_task_started_ms"),
            spread("seconds"),
        );
        if let Some(server) = &server {
            let report = server.report();
            if let Some(r) = report.repo(&repo) {
                println!(
                    "    server: {} pushes ({} refused), busiest minute {}, busiest 5 minutes {}, reads {} (busiest second {}), widest tree {}",
                    r.pushes.len(),
                    r.refused().count(),
                    r.peak_pushes_per_minute,
                    r.peak_pushes_per_5_minutes,
                    r.reads,
                    r.peak_reads_per_second,
                    r.widest_tree.as_ref().map_or(0, |t| t.entries),
                );
            }
            match report.check(&Recommendations::github()) {
                Ok(()) => println!("    within GitHub's recommendations"),
                Err(v) => println!("    NOT within GitHub's recommendations:\n{v}"),
            }
        }
        if std::env::var_os("BRIDGE_FLEET_KEEP").is_some() {
            let _ = tmp.keep();
        }
    }
    if server.is_some() {
        // The finished-store start-up below is about the local store.
        return;
    }

    // Start-up on a store holding many finished tasks.
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
    let report = wait_json(fleet.runner(0, 1));
    let nothing = wait_json(fleet.runner(1, 2));
    println!(
        "\nstore with {finished} finished tasks: runner start → first task started {} ms; a runner with nothing to do exits in {:.2}s",
        report["first_task_started_ms"],
        nothing["seconds"].as_f64().unwrap_or(f64::NAN)
    );
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

    /// Starts runner `i` of `k` in a fresh checkout (a copy of bridge.toml).
    fn runner(&self, i: usize, k: usize) -> Child {
        let dir = self.root.join(format!("runner-{k}-{i}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("mkdir: {e}")));
        std::fs::copy(self.root.join("admin/bridge.toml"), dir.join("bridge.toml"))
            .unwrap_or_else(|e| fail(&format!("copy bridge.toml: {e}")));
        self.command(&dir, &dir.join(".config"))
            .env("BRIDGE_IDENTITY", &self.secret)
            .env("BRIDGE_DEVICE", format!("runner-{i}"))
            .args(["run", "-q", "--json", "--budget", "30m", "--parallel", "1"])
            .arg("--shard")
            .arg(format!("{i}/{k}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("spawn bridge run: {e}")))
    }

    /// Successful attempts over all tasks, after the admin syncs.
    fn successes(&self) -> usize {
        self.admin(&["sync", "-q"]);
        let ls: serde_json::Value = serde_json::from_str(&self.admin(&["ls", "--json"]))
            .unwrap_or_else(|e| fail(&format!("ls --json: {e}")));
        let tasks = ls.as_array().cloned().unwrap_or_default();
        let not_done = tasks.iter().filter(|t| t["status"] != "done").count();
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
