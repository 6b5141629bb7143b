//! Benchmark: 2000 trivial tasks (`true`) with `bridge work --parallel 2`,
//! side by side with `xargs -P2` and GNU parallel `-j2`, in the same run.
//!
//! Run: `cargo bench -p bridge-pool --bench work` (GNU parallel: `apt-get install
//! parallel`; it is skipped with a note when missing). Set BRIDGE_BENCH_TASKS
//! to change the task count and BRIDGE_BENCH_ROUNDS the rounds (median kept).
//! Set BRIDGE_BENCH_PEER to another `bridge` binary (e.g. a build without
//! encryption) to time it in the same run and print the ratio.
//!
//! bridge keeps its durability here: every attempt is in a fsynced chunk
//! file before `bridge work` exits, and group commits (at most 64 attempts
//! or 100 ms) bound what a crash can lose to re-runnable work.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{env_or, fail, matrix_yaml};

fn main() {
    let tasks: usize = env_or("BRIDGE_BENCH_TASKS", 2000);
    let rounds: usize = env_or("BRIDGE_BENCH_ROUNDS", 3);
    let bridge = env!("CARGO_BIN_EXE_bridge");
    println!("{tasks} tasks of `true`, 2 at a time, median of {rounds} rounds\n");

    let mut bridge_times = Vec::new();
    let mut submit_times = Vec::new();
    for _ in 0..rounds {
        let dir =
            tempfile::tempdir().unwrap_or_else(|e| fail(&format!("cannot create a temp dir: {e}")));
        let (submit, work) = bridge_round(bridge, dir.path(), tasks);
        submit_times.push(submit);
        bridge_times.push(work);
    }
    let xargs = median(
        (0..rounds)
            .map(|_| time_shell(&format!("seq {tasks} | xargs -P2 -n1 true")))
            .collect(),
    );
    let parallel = which("parallel").then(|| {
        median(
            (0..rounds)
                .map(|_| time_shell(&format!("seq {tasks} | parallel -j2 true")))
                .collect(),
        )
    });
    let peer = std::env::var("BRIDGE_BENCH_PEER").ok().map(|peer| {
        let mut times = Vec::new();
        for _ in 0..rounds {
            let dir = tempfile::tempdir()
                .unwrap_or_else(|e| fail(&format!("cannot create a temp dir: {e}")));
            times.push(bridge_round(&peer, dir.path(), tasks).1);
        }
        (peer, median(times))
    });
    let b = median(bridge_times);
    let s = median(submit_times);
    println!("{:<28}{:>10}", "runner", "seconds");
    println!(
        "{:<28}{:>10.3}",
        "bridge submit (2000 tasks)",
        s.as_secs_f64()
    );
    println!(
        "{:<28}{:>10.3}",
        "bridge work --parallel 2",
        b.as_secs_f64()
    );
    println!("{:<28}{:>10.3}", "xargs -P2", xargs.as_secs_f64());
    match parallel {
        Some(p) => println!("{:<28}{:>10.3}", "GNU parallel -j2", p.as_secs_f64()),
        None => println!("{:<28}{:>10}", "GNU parallel -j2", "missing"),
    }
    if let Some((path, p)) = &peer {
        println!(
            "{:<28}{:>10.3}  ({path})",
            "peer bridge work",
            p.as_secs_f64()
        );
    }
    println!();
    if let Some((_, p)) = &peer {
        println!(
            "bridge / peer     = {:.3}",
            b.as_secs_f64() / p.as_secs_f64()
        );
    }
    println!(
        "bridge / xargs    = {:.2}  (target ≤ 2)",
        b.as_secs_f64() / xargs.as_secs_f64()
    );
    if let Some(p) = parallel {
        println!(
            "bridge / parallel = {:.2}  (target ≤ 0.5)",
            b.as_secs_f64() / p.as_secs_f64()
        );
    }
    println!(
        "bridge per task   = {:.2} ms",
        b.as_secs_f64() * 1000.0 / tasks as f64
    );
}

/// One round: a fresh workspace, submit, then time `bridge work`.
fn bridge_round(bridge: &str, dir: &Path, tasks: usize) -> (Duration, Duration) {
    run(bridge, dir, &["init"]);
    let yaml = matrix_yaml("t", tasks, "[\"true\"]", &[]);
    let file = dir.join("tasks.yaml");
    std::fs::write(&file, yaml)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", file.display())));
    let start = Instant::now();
    run(bridge, dir, &["submit", "--offline", "-q", "tasks.yaml"]);
    let submit = start.elapsed();
    let start = Instant::now();
    run(bridge, dir, &["work", "--offline", "-q", "--parallel", "2"]);
    let work = start.elapsed();
    let status = json_of(bridge, dir, &["status", "--json"]);
    let done = status["counts"]["done"].as_u64().unwrap_or(0) as usize;
    if done != tasks {
        fail(&format!("only {done} of {tasks} tasks are done: {status}"));
    }
    // Each ran once: an attempt interrupted and run again (a spawner taken
    // for dead, say) is work the figure would hide.
    let listed = json_of(bridge, dir, &["ls", "--json"]);
    let attempts: u64 = listed.as_array().map_or(0, |ts| {
        ts.iter().filter_map(|t| t["attempts"].as_u64()).sum()
    });
    if attempts != tasks as u64 {
        fail(&format!(
            "{attempts} attempts for {tasks} tasks: some ran twice"
        ));
    }
    (submit, work)
}

/// What `bridge ARGS` (a `--json` command) prints, parsed.
fn json_of(bridge: &str, dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bridge)
        .args(args)
        .current_dir(dir)
        .env("BRIDGE_CONFIG_DIR", dir.join(".config"))
        .env_remove("BRIDGE_IDENTITY")
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run bridge {}: {e}", args.join(" "))));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| fail(&format!("bad JSON from bridge {}: {e}", args.join(" "))))
}

fn run(bridge: &str, dir: &Path, args: &[&str]) {
    let status = Command::new(bridge)
        .args(args)
        .current_dir(dir)
        .env("BRIDGE_CONFIG_DIR", dir.join(".config"))
        .env_remove("BRIDGE_IDENTITY")
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run bridge: {e}")));
    if !status.success() {
        fail(&format!("bridge {} failed: {status}", args.join(" ")));
    }
}

fn time_shell(script: &str) -> Duration {
    let start = Instant::now();
    let status = Command::new("sh")
        .args(["-c", script])
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run `{script}`: {e}")));
    if !status.success() {
        fail(&format!("`{script}` failed: {status}"));
    }
    start.elapsed()
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
