//! Unit tests of claiming, claim windows, lost claims, leases and
//! deadlines: real sessions over a workspace in a temporary folder, the
//! time from a [`ManualClock`], and no process run.

use std::time::Duration;

use bridge_crypto::{Identity, Roster};
use bridge_model::doc::{self, BatchHeader};
use bridge_model::{BatchId, Command, DocId, Millis, Status, TaskId, TaskSpec};

use super::choose::fits_before_deadline;
use super::claims::Claims;
use super::{Event, Hooks, WorkOptions};
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::vault::Vault;
use crate::workspace::{Session, Workspace};

/// The lease of these tests' workspace, and its clock-skew margin.
pub(super) const LEASE_MS: Millis = 30_000;
const SKEW_MS: Millis = 5_000;

/// A workspace in a temporary folder with one member, whose sessions are
/// two processes of one device (two writers).
pub(super) struct Pool {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    identity: Identity,
}

impl Pool {
    pub(super) fn new() -> Pool {
        let tmp = tempfile::tempdir().expect("a temporary folder");
        let root = tmp.path().to_path_buf();
        let identity = Identity::generate().expect("an identity");
        let id = "wunittest";
        let text = format!(
            "[workspace]\nid = \"{id}\"\nroot = \"{}\"\n[worker]\nlease = \"30s\"\nclock-skew = \"5s\"\n",
            identity.member_id()
        );
        std::fs::write(root.join(crate::workspace::CONFIG_FILE), text).expect("bridge.toml");
        let ws = Workspace::open(&root, settings(&root)).unwrap_or_else(|e| panic!("{e}"));
        let (roster, genesis) =
            Roster::genesis(&identity, "unit", id, SystemClock.now_ms()).expect("a roster");
        let vault = Vault::new(ws.replica.clone(), identity.clone(), roster);
        vault
            .write_roster_file(&genesis)
            .unwrap_or_else(|e| panic!("{e}"));
        Pool {
            _tmp: tmp,
            root,
            identity,
        }
    }

    /// A new session (a new writer) over the workspace; tasks of other
    /// members would need a sandbox: these are its own.
    pub(super) fn session(&self) -> Session {
        let mut ws =
            Workspace::open(&self.root, settings(&self.root)).unwrap_or_else(|e| panic!("{e}"));
        ws.device.worker.sandbox = Some("off".into());
        let member = self.identity.member_id().clone();
        let (vault, _) = Vault::open(ws.replica.clone(), self.identity.clone(), &member)
            .unwrap_or_else(|e| panic!("{e}"));
        Session::with_vault(ws, vault).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The settings of a device living in `root`: no environment read, the
/// home and the configuration folder in the temporary folder.
fn settings(root: &std::path::Path) -> std::sync::Arc<crate::settings::Settings> {
    std::sync::Arc::new(crate::settings::Settings {
        home: Some(root.join("home")),
        config_dir: Some(root.join("config")),
        ..Default::default()
    })
}

fn spec(name: &str) -> TaskSpec {
    TaskSpec {
        name: name.to_owned(),
        command: Command::Argv(vec!["true".into()]),
        env: Default::default(),
        inputs: vec![],
        outputs: vec![],
        timeout_s: 3600,
        retries: 0,
        runs_on: vec![],
        priority: 0,
        needs: vec![],
        // The name is not part of a task's identity: the nonce is.
        nonce: Some(name.to_owned()),
        network: true,
        allow_read: vec![],
    }
}

/// Submits tasks named `names` in one document, as `bridge submit` does
/// (the session's tests use it too).
pub(crate) fn submit(session: &mut Session, names: &[&str], now: Millis) -> Vec<TaskId> {
    let specs: Vec<TaskSpec> = names.iter().map(|n| spec(n)).collect();
    let header = BatchHeader {
        batch: BatchId::new(now, [7; 10]),
        part: 0,
        parts: 1,
        created_at: now,
        submitted_by: "unit".into(),
        device: "unit".into(),
        grant: None,
    };
    let d = doc::create(&session.writer, &header, &specs).expect("a document");
    session.add_new_doc(DocId::new(header.batch.clone(), 0), header, d);
    session.flush().unwrap_or_else(|e| panic!("{e}"));
    specs.iter().map(TaskSpec::id).collect()
}

pub(super) fn status(session: &Session, id: &TaskId, now: Millis) -> Status {
    let derived = session.view().derive(now, session.policy);
    derived.get(id).map(|d| d.status).expect("a known task")
}

pub(super) fn refresh(session: &mut Session) {
    session.refresh().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_claim_makes_a_task_running_for_everyone_and_a_release_gives_it_back() {
    let pool = Pool::new();
    let mut a = pool.session();
    let clock = ManualClock::at(SystemClock.now_ms());
    let ids = submit(&mut a, &["one", "two"], clock.now_ms());
    let mut claims = Claims::default();
    let keys = claims
        .claim(&mut a, &ids[..1], clock.now_ms(), LEASE_MS)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys.len(), 1);
    assert!(claims.holds_task(&ids[0]) && !claims.holds_task(&ids[1]));
    a.flush().unwrap_or_else(|e| panic!("{e}"));
    // Another process reads the claim from the replica.
    let mut b = pool.session();
    refresh(&mut b);
    assert_eq!(status(&b, &ids[0], clock.now_ms()), Status::Running);
    assert_eq!(status(&b, &ids[1], clock.now_ms()), Status::Pending);
    clock.advance(1_000);
    claims
        .release(&mut a, &keys, clock.now_ms())
        .unwrap_or_else(|e| panic!("{e}"));
    a.flush().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims.len(), 0);
    refresh(&mut b);
    assert_eq!(status(&b, &ids[0], clock.now_ms()), Status::Pending);
}

#[test]
fn the_earlier_of_two_claims_wins_and_the_later_one_is_lost() {
    let pool = Pool::new();
    let (mut a, mut b) = (pool.session(), pool.session());
    let clock = ManualClock::at(SystemClock.now_ms());
    let ids = submit(&mut a, &["contested"], clock.now_ms());
    refresh(&mut b);
    // Both claim before seeing the other's claim; `a` a millisecond first.
    let (mut mine, mut theirs) = (Claims::default(), Claims::default());
    let a_keys = mine
        .claim(&mut a, &ids, clock.now_ms(), LEASE_MS)
        .unwrap_or_else(|e| panic!("{e}"));
    clock.advance(1);
    let b_keys = theirs
        .claim(&mut b, &ids, clock.now_ms(), LEASE_MS)
        .unwrap_or_else(|e| panic!("{e}"));
    a.flush().unwrap_or_else(|e| panic!("{e}"));
    b.flush().unwrap_or_else(|e| panic!("{e}"));
    refresh(&mut a);
    refresh(&mut b);
    assert!(mine.lost(&a, &a_keys, clock.now_ms()).is_empty());
    assert_eq!(theirs.lost(&b, &b_keys, clock.now_ms()), b_keys);
}

#[test]
fn a_lease_not_renewed_runs_out_and_a_renewed_one_does_not() {
    let pool = Pool::new();
    let (mut a, mut b) = (pool.session(), pool.session());
    let clock = ManualClock::at(SystemClock.now_ms());
    let ids = submit(&mut a, &["renewed", "abandoned"], clock.now_ms());
    let (mut renewed, mut abandoned) = (Claims::default(), Claims::default());
    renewed
        .claim(&mut a, &ids[..1], clock.now_ms(), LEASE_MS)
        .unwrap_or_else(|e| panic!("{e}"));
    abandoned
        .claim(&mut a, &ids[1..], clock.now_ms(), LEASE_MS)
        .unwrap_or_else(|e| panic!("{e}"));
    a.flush().unwrap_or_else(|e| panic!("{e}"));
    // A third of the lease later, the worker renews what it still runs.
    clock.advance(LEASE_MS / 3);
    let now = clock.now_ms();
    renewed
        .renew(&mut a, now, now + LEASE_MS)
        .unwrap_or_else(|e| panic!("{e}"));
    a.flush().unwrap_or_else(|e| panic!("{e}"));
    refresh(&mut b);
    assert_eq!(status(&b, &ids[1], clock.now_ms()), Status::Running);
    // Past the first lease and the skew margin: the abandoned claim is
    // over, the renewed one is not.
    clock.advance(LEASE_MS - LEASE_MS / 3 + SKEW_MS + 1);
    assert_eq!(status(&b, &ids[1], clock.now_ms()), Status::Pending);
    assert_eq!(status(&b, &ids[0], clock.now_ms()), Status::Running);
}

#[test]
fn a_task_is_claimed_only_when_it_fits_before_the_deadline() {
    let pool = Pool::new();
    let mut a = pool.session();
    let ids = submit(&mut a, &["hour"], SystemClock.now_ms());
    let now = tokio::time::Instant::now();
    let budget = Duration::from_secs(4 * 3600);
    // Never timed: its timeout (an hour), capped at a quarter of the budget.
    assert!(!fits_before_deadline(
        a.view(),
        &ids[0],
        None,
        Some((now + Duration::from_secs(1800), budget))
    ));
    assert!(fits_before_deadline(
        a.view(),
        &ids[0],
        None,
        Some((now + Duration::from_secs(3700), budget))
    ));
    // This run's tasks take a second: that, and a quarter more, fits.
    assert!(fits_before_deadline(
        a.view(),
        &ids[0],
        Some(1000.0),
        Some((now + Duration::from_secs(10), budget))
    ));
    assert!(fits_before_deadline(a.view(), &ids[0], None, None));
}

/// Hooks that keep the events.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) events: Vec<Event>,
}

impl Hooks for Recorder {
    fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    fn idle(&mut self, _session: &mut Session) -> Result<(), super::HookError> {
        Ok(())
    }
}

pub(super) fn options(parallel: usize) -> WorkOptions {
    WorkOptions {
        steal_grace: None,
        parallel,
        follow: false,
        poll: Duration::from_secs(1),
        labels: vec![],
        lease: Duration::from_millis(LEASE_MS as u64),
        max_tasks: None,
        device: "unit".into(),
        deadline: None,
        shard: None,
        provenance: Default::default(),
        flush_delay: super::FLUSH_DELAY,
        run_tasks_from: None,
        max_object: None,
        only: None,
        halt: None,
    }
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Four shards of 60 tasks: shards 0 and 1 done, shard 2's runner never
/// started (quiet), shard 3's runner working (one live claim seen).
struct QuietFleet {
    shards: [Vec<TaskId>; 4],
    derived: std::collections::BTreeMap<TaskId, bridge_model::view::Derived>,
}

fn derived_as(status: Status) -> bridge_model::view::Derived {
    bridge_model::view::Derived {
        status,
        reason: None,
        result: None,
        claim: None,
        failures: (0, 1),
    }
}

impl QuietFleet {
    fn new(session: &mut Session) -> QuietFleet {
        let names: Vec<String> = (0..60).map(|i| format!("t{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let ids = submit(session, &refs, SystemClock.now_ms());
        let mut of = crate::shard::Shards::new(4);
        of.prepare(session.view(), &ids);
        let shards: [Vec<TaskId>; 4] = std::array::from_fn(|s| {
            ids.iter()
                .filter(|i| of.of(i) == s as u32)
                .cloned()
                .collect()
        });
        assert!(!shards[2].is_empty() && !shards[3].is_empty());
        let mut derived = std::collections::BTreeMap::new();
        for (s, status) in [
            (0, Status::Done),
            (1, Status::Done),
            (2, Status::Pending),
            (3, Status::Pending),
        ] {
            for id in &shards[s] {
                derived.insert(id.clone(), derived_as(status));
            }
        }
        derived.insert(shards[3][0].clone(), derived_as(Status::Running));
        QuietFleet { shards, derived }
    }

    /// The tasks not done: shard 2's and shard 3's but its running one.
    fn runnable(&self) -> Vec<TaskId> {
        self.shards[2]
            .iter()
            .chain(&self.shards[3][1..])
            .cloned()
            .collect()
    }

    /// What runner `me` takes of `runnable` under `steal`, as it sees
    /// `derived`, holding the claims `held` tells; and whether it steals.
    fn take(
        session: &Session,
        me: u32,
        runnable: &[TaskId],
        derived: &std::collections::BTreeMap<TaskId, bridge_model::view::Derived>,
        steal: super::choose::Steal,
        held: &dyn Fn(&str) -> bool,
    ) -> (std::collections::BTreeSet<TaskId>, bool) {
        let mut shards = crate::shard::Shards::new(4);
        let (ids, stolen) = super::choose::prefer_shard(
            runnable.to_vec(),
            Some((me, &mut shards)),
            session.view(),
            derived,
            steal,
            held,
        );
        (ids.into_iter().collect(), stolen)
    }
}

/// Under a push budget, a runner whose shard ran dry takes only the tasks
/// of quiet shards (no live claim seen), and only those dealt to it among
/// the shards that are done: two thieves never take the same task, and
/// together they take all of the quiet shard.
#[test]
fn thieves_under_a_budget_split_a_quiet_shard_and_leave_a_busy_one() {
    use super::choose::Steal;

    let pool = Pool::new();
    let mut a = pool.session();
    let fleet = QuietFleet::new(&mut a);
    let runnable = fleet.runnable();
    let none = |_: &str| false;
    let take =
        |me: u32, steal: Steal| QuietFleet::take(&a, me, &runnable, &fleet.derived, steal, &none);
    // During the grace: nothing.
    assert_eq!(take(0, Steal::Wait), (Default::default(), true));
    let all = Steal::QuietSplit { thieves: 4 };
    let (by0, stolen) = take(0, all);
    assert!(stolen);
    let (by1, _) = take(1, all);
    assert!(by0.is_disjoint(&by1), "no task taken twice");
    let quiet: std::collections::BTreeSet<TaskId> = fleet.shards[2].iter().cloned().collect();
    assert_eq!(
        &by0 | &by1,
        quiet,
        "the quiet shard, all of it, nothing of the busy one"
    );
    // A thief that looks again while some of its tasks run (its own live
    // claims) and some ended still takes only its own, and its own claims
    // do not make the quiet shard look busy.
    let mut later = fleet.derived.clone();
    let third = by0.len() / 3;
    let ended: Vec<TaskId> = by0.iter().take(third).cloned().collect();
    let running: Vec<TaskId> = by0.iter().skip(third).take(third).cloned().collect();
    for id in &ended {
        later.insert(id.clone(), derived_as(Status::Done));
    }
    for id in &running {
        let mut d = derived_as(Status::Running);
        d.claim = Some(format!("mine:{id}"));
        later.insert(id.clone(), d);
    }
    let left: Vec<TaskId> = runnable
        .iter()
        .filter(|id| !ended.contains(id) && !running.contains(id))
        .cloned()
        .collect();
    let (again0, _) = QuietFleet::take(&a, 0, &left, &later, all, &|key| key.starts_with("mine:"));
    assert!(again0.is_subset(&by0), "it takes nothing of the other's");
    assert_eq!(again0.len(), by0.len() - 2 * third);
    // A budget with no push to spare: the quiet shard's runner's unmade
    // push pays for one thief, one of the two done shards, which takes the
    // whole quiet shard; the other takes nothing.
    let one = Steal::QuietSplit { thieves: 0 };
    let mut lone: Vec<usize> = vec![take(0, one).0.len(), take(1, one).0.len()];
    lone.sort_unstable();
    assert_eq!(lone, vec![0, quiet.len()], "one thief takes it all");
    // Without a budget, a thief takes from the far end of any shard.
    let (far, _) = take(0, Steal::FarEnd);
    assert_eq!(far.len(), runnable.len());
}

/// Each quiet shard is dealt among the thieves on its own: a thief that
/// also sees another shard quiet (its runner's claim not read yet) still
/// takes the same tasks of the first, so the two never run one twice.
#[test]
fn each_quiet_shard_is_dealt_on_its_own() {
    use super::choose::Steal;

    let pool = Pool::new();
    let mut a = pool.session();
    let fleet = QuietFleet::new(&mut a);
    let all = Steal::QuietSplit { thieves: 4 };
    let none = |_: &str| false;
    let (by1, _) = QuietFleet::take(&a, 1, &fleet.runnable(), &fleet.derived, all, &none);
    let mut unseen = fleet.derived.clone();
    unseen.insert(fleet.shards[3][0].clone(), derived_as(Status::Pending));
    let every: Vec<TaskId> = fleet.shards[2]
        .iter()
        .chain(&fleet.shards[3])
        .cloned()
        .collect();
    let (wider1, _) = QuietFleet::take(&a, 1, &every, &unseen, all, &none);
    let quiet: std::collections::BTreeSet<TaskId> = fleet.shards[2].iter().cloned().collect();
    assert_eq!(&wider1 & &quiet, by1, "the same share of shard 2");
    assert!(wider1.len() > by1.len(), "and a share of shard 3");
}
