//! A randomized end-to-end property over membership changes: random
//! sequences of submit, work, SIGKILL during work, compact, archive, gc,
//! members add, members remove, runner rotation and sync across three
//! devices (plus runners) on a `dir:` store, with real `bridge` processes.
//!
//! Checked throughout:
//! - no done result is ever lost: every task the admin ever saw done stays
//!   done on the admin (live or archived) and, at the end, on every current
//!   member and on a device that joins last;
//! - no task from a removed member (submitted after its removal) or from a
//!   worker-role key ever runs: such tasks touch a marker file, and no
//!   marker may appear.
//!
//! The sequence comes from a seed (printed in every failure message; set
//! `BRIDGE_PROP_SEED` to replay one). A few seeds of a few dozen steps keep
//! it within CI's time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::harness::{Device, dir_remote, temp_dir};

/// splitmix64: a small deterministic generator, enough to pick steps.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Submit,
    Worker,
}

/// A member device (a person's device or a runner with its identity).
struct Actor {
    dev: Device,
    name: String,
    role: Role,
    removed: bool,
}

struct Pool {
    seed: u64,
    admin: Device,
    remote: String,
    root: String,
    actors: Vec<Actor>,
    markers: PathBuf,
    /// Every task name the admin has seen done.
    ever_done: BTreeSet<String>,
    counter: usize,
    log: Vec<String>,
}

impl Pool {
    fn ctx(&self) -> String {
        format!(
            "seed {} (replay with BRIDGE_PROP_SEED={}); steps so far:\n  {}",
            self.seed,
            self.seed,
            self.log.join("\n  ")
        )
    }

    fn fresh_name(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}-{}-{}", self.seed % 10_000, self.counter)
    }

    fn add_submitter(&mut self) {
        let name = self.fresh_name("dev");
        let dev = Device::new(&name);
        dev.join_as(&self.admin, &self.remote, "submit");
        self.actors.push(Actor {
            dev,
            name,
            role: Role::Submit,
            removed: false,
        });
    }

    fn add_runner(&mut self) {
        let name = self.fresh_name("ci");
        let secret = self
            .admin
            .ok(&["members", "add-runner", &name])
            .stdout
            .trim()
            .to_owned();
        self.runner_device(name, secret);
    }

    fn runner_device(&mut self, name: String, secret: String) {
        let label = self.fresh_name(&name);
        let mut dev = Device::new(&label);
        dev.set_env("BRIDGE_IDENTITY", &secret);
        dev.ok(&["join", &self.remote, "--root", &self.root]);
        self.actors.push(Actor {
            dev,
            name,
            role: Role::Worker,
            removed: false,
        });
    }

    /// Indexes of actors matching `pick`.
    fn current(&self, pick: impl Fn(&Actor) -> bool) -> Vec<usize> {
        (0..self.actors.len())
            .filter(|&i| !self.actors[i].removed && pick(&self.actors[i]))
            .collect()
    }

    /// A device that is a current member: the admin (None) or an actor.
    fn any_current(&self, rng: &mut Rng) -> Option<usize> {
        let cur = self.current(|_| true);
        let k = rng.below(cur.len() + 1);
        cur.get(k).copied()
    }

    fn dev(&self, who: Option<usize>) -> &Device {
        who.map_or(&self.admin, |i| &self.actors[i].dev)
    }

    fn label(&self, who: Option<usize>) -> String {
        who.map_or_else(|| "admin".to_owned(), |i| self.actors[i].name.clone())
    }

    fn marker_script(&self, name: &str) -> String {
        format!("touch {}", self.markers.join(name).display())
    }

    /// Records what the admin sees done and checks nothing seen done before
    /// went missing from its live tasks (archived ones too, when `deep`).
    fn observe(&mut self, deep: bool) {
        let live = self.admin.ls();
        for t in &live {
            if t.status == "done" {
                self.ever_done.insert(t.name.clone());
            }
        }
        let ctx = self.ctx();
        for name in &self.ever_done {
            match live.iter().find(|t| &t.name == name) {
                Some(t) => assert_eq!(t.status, "done", "{name} lost its result; {ctx}"),
                None if deep => {
                    let shown = self.admin.run(&["show", name, "--json"]);
                    assert_eq!(shown.code, 0, "{name} vanished: {}\n{ctx}", shown.stderr);
                    assert_eq!(
                        shown.json()["status"],
                        "done",
                        "{name} lost its result; {ctx}"
                    );
                }
                None => {}
            }
        }
        self.assert_no_marker();
    }

    fn assert_no_marker(&self) {
        let ran: Vec<_> = std::fs::read_dir(&self.markers)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            ran.is_empty(),
            "tasks of removed members or workers ran: {ran:?}; {}",
            self.ctx()
        );
    }

    fn step(&mut self, rng: &mut Rng) {
        match rng.below(16) {
            // Submit from the admin or a current submitter.
            0..=3 => {
                let subs = self.current(|a| a.role == Role::Submit);
                let who = subs.get(rng.below(subs.len() + 1)).copied();
                let name = self.fresh_name("t");
                self.log.push(format!("{} submits {name}", self.label(who)));
                self.dev(who)
                    .ok(&["submit", "--name", &name, "--", "echo", &name]);
            }
            // Work on a current device (runners: `bridge run`).
            4..=6 => {
                let who = self.any_current(rng);
                self.log.push(format!("{} works", self.label(who)));
                let is_runner = who.is_some_and(|i| self.actors[i].role == Role::Worker);
                let args: &[&str] = if is_runner {
                    &["run", "--budget", "5m"]
                } else {
                    &["work"]
                };
                self.dev(who).ok(args);
            }
            // A worker killed with SIGKILL wherever it is.
            7 => {
                let who = self.any_current(rng);
                self.log
                    .push(format!("{} works, killed -9", self.label(who)));
                // At a random moment of its run (up to 1.5 s: loading,
                // syncing, running, recording), not before it has started.
                let after = std::time::Duration::from_millis(rng.below(1500) as u64);
                self.log.push(format!("  (after {after:?})"));
                let p = self.dev(who).spawn("killed-work", &["work"]);
                std::thread::sleep(after);
                p.kill();
            }
            8 => {
                let who = self.any_current(rng);
                self.log.push(format!("{} compacts", self.label(who)));
                self.dev(who).ok(&["compact"]);
            }
            9 => {
                let who = self.any_current(rng);
                self.log.push(format!("{} archives", self.label(who)));
                self.dev(who).ok(&["archive", "--older-than", "0s"]);
            }
            10 => {
                let who = self.any_current(rng);
                self.log
                    .push(format!("{} collects garbage", self.label(who)));
                self.dev(who).ok(&["gc", "--grace", "0s"]);
            }
            11 => {
                if self.actors.len() < 8 {
                    let runner = rng.below(2) == 0;
                    self.log.push(format!(
                        "admin adds a {}",
                        if runner { "runner" } else { "device" }
                    ));
                    if runner {
                        self.add_runner();
                    } else {
                        self.add_submitter();
                    }
                }
            }
            12 => {
                let cur = self.current(|_| true);
                if let Some(&i) = cur.get(rng.below(cur.len())) {
                    let name = self.actors[i].name.clone();
                    self.log.push(format!("admin removes {name}"));
                    self.admin.ok(&["members", "remove", &name]);
                    self.actors[i].removed = true;
                }
            }
            13 => {
                let runners = self.current(|a| a.role == Role::Worker);
                if let Some(&i) = runners.get(rng.below(runners.len())) {
                    let name = self.actors[i].name.clone();
                    self.log.push(format!("admin rotates {name}"));
                    let secret = self
                        .admin
                        .ok(&["members", "rotate-runner", &name])
                        .stdout
                        .trim()
                        .to_owned();
                    self.actors[i].removed = true;
                    self.runner_device(name, secret);
                }
            }
            _ => {
                let who = self.any_current(rng);
                self.log.push(format!("{} syncs", self.label(who)));
                self.dev(who).ok(&["sync"]);
            }
        }
        // Now and then, someone who must not be obeyed tries: a removed
        // member submits offline and pushes, a worker key submits.
        if rng.below(4) == 0 {
            self.hostile(rng);
        }
    }

    fn hostile(&mut self, rng: &mut Rng) {
        let removed: Vec<usize> = (0..self.actors.len())
            .filter(|&i| self.actors[i].removed)
            .collect();
        let workers = self.current(|a| a.role == Role::Worker);
        if let Some(&i) = removed.get(rng.below(removed.len())) {
            let name = self.fresh_name("evil");
            self.log.push(format!(
                "removed {} submits {name} and syncs",
                self.actors[i].name
            ));
            let script = self.marker_script(&name);
            let dev = &self.actors[i].dev;
            // Whatever these print: a removed device may fail or succeed.
            dev.run(&[
                "submit",
                "--offline",
                "--name",
                &name,
                "--",
                "sh",
                "-c",
                &script,
            ]);
            dev.run(&["sync"]);
        } else if let Some(&i) = workers.get(rng.below(workers.len())) {
            let name = self.fresh_name("wevil");
            self.log.push(format!(
                "worker {} tries to submit {name}",
                self.actors[i].name
            ));
            let script = self.marker_script(&name);
            let run = self.actors[i]
                .dev
                .run(&["submit", "--name", &name, "--", "sh", "-c", &script]);
            assert_eq!(
                run.code,
                1,
                "a worker key's submit was not refused: {}\n{}",
                run.stderr,
                self.ctx()
            );
        }
    }

    /// Everyone current syncs and works until the pool is quiet, then every
    /// current member and a newcomer must show every result ever seen.
    fn finish(&mut self) {
        for _ in 0..2 {
            self.admin.ok(&["sync"]);
            for i in self.current(|_| true) {
                self.actors[i].dev.ok(&["sync"]);
            }
        }
        self.admin.ok(&["work"]);
        self.observe(true);
        let ctx = self.ctx();
        let newcomer = Device::new(&self.fresh_name("late"));
        newcomer.join_as(&self.admin, &self.remote, "submit");
        let mut viewers: Vec<&Device> = vec![&newcomer];
        self.admin.ok(&["sync"]);
        for i in self.current(|_| true) {
            let d = &self.actors[i].dev;
            d.ok(&["sync"]);
            viewers.push(d);
        }
        for d in viewers {
            let live = d.ls();
            for name in &self.ever_done {
                let status = match live.iter().find(|t| &t.name == name) {
                    Some(t) => t.status.clone(),
                    None => {
                        let shown = d.run(&["show", name, "--json"]);
                        assert_eq!(
                            shown.code, 0,
                            "{}: {name} vanished: {}\n{ctx}",
                            d.name, shown.stderr
                        );
                        shown.json()["status"].as_str().unwrap_or("").to_owned()
                    }
                };
                assert_eq!(status, "done", "{}: {name} lost its result; {ctx}", d.name);
            }
        }
        self.assert_no_marker();
        eprintln!(
            "seed {}: {} steps, {} results kept, {} removals or rotations, {} hostile attempts",
            self.seed,
            self.log.iter().filter(|l| !l.contains("evil")).count(),
            self.ever_done.len(),
            self.log
                .iter()
                .filter(|l| l.contains("removes") || l.contains("rotates"))
                .count(),
            self.log.iter().filter(|l| l.contains("evil")).count(),
        );
    }
}

fn run_seed(seed: u64, steps: usize, base: &Path) {
    let shared = base.join(format!("store-{seed}"));
    std::fs::create_dir_all(&shared).expect("a store folder");
    let markers = base.join(format!("markers-{seed}"));
    std::fs::create_dir_all(&markers).expect("a markers folder");
    let admin = Device::new(&format!("prop-admin-{}", seed % 10_000));
    let remote = dir_remote(&shared);
    admin.ok(&["init", "--remote", &remote]);
    let root = admin.ok(&["whoami", "--json"]).json()["member"]
        .as_str()
        .expect("a member id")
        .to_owned();
    let mut pool = Pool {
        seed,
        admin,
        remote,
        root,
        actors: Vec::new(),
        markers,
        ever_done: BTreeSet::new(),
        counter: 0,
        log: Vec::new(),
    };
    // Three devices (the admin and two submitters) and a runner.
    pool.add_submitter();
    pool.add_submitter();
    pool.add_runner();
    let mut rng = Rng(seed);
    for i in 0..steps {
        pool.step(&mut rng);
        pool.observe(i % 10 == 9);
    }
    pool.finish();
}

#[test]
fn membership_changes_never_lose_a_result_nor_run_an_untrusted_task() {
    let base = temp_dir("prop-members");
    let seeds: Vec<u64> = match std::env::var("BRIDGE_PROP_SEED") {
        Ok(s) => vec![s.parse().expect("BRIDGE_PROP_SEED is a number")],
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        run_seed(seed, 40, base.path());
    }
}
