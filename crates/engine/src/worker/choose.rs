//! What a worker claims: the tasks its policy and sandbox let it run
//! ([`run_here`]), that fit before its deadline ([`fits_before_deadline`]),
//! of its own shard first ([`prefer_shard`]), so many at a time
//! ([`window_size`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bridge_model::view::Derived;
use bridge_model::{Status, TaskId, View};
use tokio::time::Instant;

use super::LeftForOthers;
use crate::run_policy::TaskPolicy;
use crate::sandbox::{Sandbox, unmet_requirements};
use crate::shard::Shards;

/// The most tasks claimed in one window.
pub(super) const MAX_WINDOW: usize = 256;
/// How much work (per slot) a claim window aims to hold.
const WINDOW_TARGET_MS: f64 = 2000.0;

/// How many tasks to claim in one window: about two seconds of work per
/// slot (by `avg_ms`, the average task length so far), between `parallel`
/// and [`MAX_WINDOW`]; `parallel` for a thief (`stealing`), so the owner of
/// the shard is not starved; everything for a runner in its own shard
/// (`sharded`: each window costs a sync with the remote; thieves take from
/// the far end, and unstarted claims are released at the deadline).
pub(super) fn window_size(
    parallel: usize,
    avg_ms: Option<f64>,
    stealing: bool,
    sharded: bool,
) -> usize {
    match (avg_ms, stealing) {
        (_, true) => parallel,
        (_, false) if sharded => MAX_WINDOW,
        (None, _) => parallel,
        (Some(ms), false) => ((parallel as f64 * WINDOW_TARGET_MS / ms.max(1.0)) as usize)
            .clamp(parallel, MAX_WINDOW),
    }
}

/// Whether this device's policy lets it run task `id` (see
/// [`crate::run_policy`]); a task it refuses is counted in `left`, left
/// unclaimed for the devices whose policy accepts it.
pub(super) fn run_here(
    policy: &TaskPolicy,
    sandbox: &Sandbox,
    me: [u8; 8],
    view: &View,
    id: &TaskId,
    left: &mut LeftForOthers,
) -> bool {
    let Some(task) = view.get(id) else {
        return false;
    };
    if let Some(crate::run_policy::Refusal::Submitter { name }) = policy.refusal(task) {
        left.by_submitter += 1;
        left.submitters.insert(name);
        return false;
    }
    // Another member's task runs here only in a sandbox, or where the
    // user opted out of it; and only if this device meets what it needs.
    let why = if !sandbox.may_run_others_tasks() && !task.submitters.contains(&me) {
        Some(
            "this device cannot sandbox tasks, so it runs only its own member's ([worker] sandbox = \"off\" runs the others' unsandboxed)"
                .to_owned(),
        )
    } else {
        unmet_requirements(&task.spec, sandbox)
    };
    match why {
        None => true,
        Some(why) => {
            *left.other.entry(why).or_default() += 1;
            false
        }
    }
}

/// Whether `id`'s expected length fits before the deadline. The estimate is
/// its longest earlier attempt, else the average of this run's tasks (each
/// with a quarter more for safety), else its timeout capped at a quarter of
/// the whole budget: a task nobody has timed yet is tried while a quarter of
/// the budget remains, and the deadline still stops it for sure.
pub(super) fn fits_before_deadline(
    view: &View,
    id: &TaskId,
    avg_ms: Option<f64>,
    deadline: Option<(Instant, Duration)>,
) -> bool {
    let Some((deadline, budget)) = deadline else {
        return true;
    };
    let Some(task) = view.get(id) else {
        return false;
    };
    let history = task
        .facts
        .attempts
        .values()
        // Attempts are written by other members: no value may overflow here.
        .map(|a| a.ended_at.saturating_sub(a.started_at).max(0) as u64)
        .max();
    let expected = match history.or(avg_ms.map(|a| a as u64)) {
        Some(ms) => Duration::from_millis(ms.saturating_add(ms / 4)),
        None => Duration::from_secs(task.spec.timeout_s).min(budget / 4),
    };
    Instant::now()
        .checked_add(expected)
        .is_some_and(|end| end <= deadline)
}

/// How a sharded runner whose own shard ran dry takes other shards' tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Steal {
    /// From the far end of any shard's queue: without a push budget, the
    /// owners push their claims at once and a thief yields to an earlier
    /// claim, so it rarely races an owner.
    FarEnd,
    /// Under a push budget, where an owner's claims and results reach the
    /// remote only every few minutes: nothing yet (the grace after its own
    /// shard ran dry, for the other runners' results to land).
    Wait,
    /// Under a push budget, after the grace: only the tasks of *quiet*
    /// shards (no live claim, so no runner seen working on them: its runner
    /// never started, or died), split among at most `thieves` of the shards
    /// that are done, one more for each quiet shard (its runner's push is
    /// not made), each quiet shard dealt among them with bounded loads
    /// ([`crate::shard::deal`]). Thieves then never race each other and
    /// push nothing to claim; each pushes once more than its own share, so
    /// the budget pays for only so many ([`crate::budget::Share::thieves`]).
    QuietSplit { thieves: u32 },
}

/// Orders candidates for a sharded runner: the tasks of its shard (see
/// [`crate::shard`]), or (when there are none) others, to steal as `steal`
/// says. Returns the candidates and whether they are stolen.
///
/// `held` tells this runner's own live claims (by key) from the others':
/// its own do not make a shard look busy.
pub(super) fn prefer_shard(
    candidates: Vec<TaskId>,
    shard: Option<(u32, &mut Shards)>,
    view: &View,
    derived: &BTreeMap<TaskId, Derived>,
    steal: Steal,
    held: &dyn Fn(&str) -> bool,
) -> (Vec<TaskId>, bool) {
    let Some((index, shards)) = shard else {
        return (candidates, false);
    };
    shards.prepare(view, &candidates);
    let (mine, others): (Vec<TaskId>, Vec<TaskId>) = candidates
        .into_iter()
        .partition(|id| shards.of(id) == index);
    if !mine.is_empty() {
        return (mine, false);
    }
    match steal {
        Steal::FarEnd => {
            // Steal from the far end of the others' queues: their owners
            // work from the front, so a thief rarely races them.
            let mut others = others;
            others.reverse();
            (others, true)
        }
        Steal::Wait => (Vec::new(), true),
        Steal::QuietSplit { thieves } => (
            quiet_split(others, index, thieves, shards, view, derived, held),
            true,
        ),
    }
}

/// The shards with a live claim seen that is not `held` here (`busy`) and
/// those with tasks left (`open`, the busy ones included).
struct ShardStates {
    busy: BTreeSet<u32>,
    open: BTreeSet<u32>,
}

fn shard_states(
    shards: &mut Shards,
    view: &View,
    derived: &BTreeMap<TaskId, Derived>,
    held: &dyn Fn(&str) -> bool,
) -> ShardStates {
    let all: Vec<&TaskId> = view.tasks().map(|t| &t.id).collect();
    shards.prepare(view, all.iter().copied());
    let mut states = ShardStates {
        busy: BTreeSet::new(),
        open: BTreeSet::new(),
    };
    for (id, d) in derived {
        let s = shards.of(id);
        match d.status {
            Status::Running => {
                if !d.claim.as_deref().is_some_and(held) {
                    states.busy.insert(s);
                }
                states.open.insert(s);
            }
            Status::Pending | Status::Blocked => {
                states.open.insert(s);
            }
            _ => {}
        }
    }
    states
}

/// How many shards have no task left, as this runner sees them.
pub(super) fn shards_done(
    shards: &mut Shards,
    view: &View,
    derived: &BTreeMap<TaskId, Derived>,
) -> usize {
    let open = shard_states(shards, view, derived, &|_| false).open.len();
    (shards.count() as usize).saturating_sub(open)
}

/// When a runner under a push budget whose own shard ran dry may take over
/// the quiet shards ([`Steal::Wait`] until then).
///
/// The other runners' results land with their last push, when their shards
/// are done, and nothing else tells a live runner from a missing one. So a
/// thief waits until the others have had time to finish: at most a share of
/// the time its own shard took (shards hold about the same work), and less
/// once the fleet has settled: at least half of the shards done and none
/// more seen finishing for a while (a twelfth of that time). Runners that
/// started together finish within seconds of one another; one that is
/// still silent by then most likely never came.
#[derive(Debug, Clone)]
pub(super) struct Grace {
    /// The latest it ends.
    until: Instant,
    /// How long no more shards may be seen finishing before it ends early
    /// (none: a grace set by hand is kept whole).
    settle: Option<Duration>,
    /// Shards seen done, and since when that count holds.
    done: usize,
    since: Instant,
}

impl Grace {
    /// The grace of a runner whose own shard, which took `own`, ran dry at
    /// `now`: `fixed` when set (`[worker] steal-grace`).
    pub(super) fn new(now: Instant, own: Duration, fixed: Option<Duration>) -> Grace {
        let (wait, settle) = match fixed {
            Some(wait) => (wait, None),
            None => (
                (own / GRACE_SHARE).clamp(GRACE_MIN, GRACE_MAX),
                Some((own / SETTLE_SHARE).clamp(GRACE_MIN, GRACE_MAX)),
            ),
        };
        Grace {
            until: now + wait,
            settle,
            done: 0,
            since: now,
        }
    }

    /// Notes that `done` shards are seen done at `now`.
    pub(super) fn observe(&mut self, done: usize, now: Instant) {
        if done != self.done {
            self.done = done;
            self.since = now;
        }
    }

    /// Whether it is over at `now`, for a fleet of `shards`. Never while a
    /// shard was seen finishing less than [`GRACE_MIN`] ago: the thieves
    /// split the quiet shards by the shards they see done, so they must
    /// all have read the same last pushes (16 runners starved on two cores
    /// stole at their cap while the last shards were landing, and ran 5 %
    /// of the tasks twice).
    pub(super) fn over(&self, now: Instant, shards: u32) -> bool {
        if now < self.since + GRACE_MIN {
            return false;
        }
        if now >= self.until {
            return true;
        }
        self.settle
            .is_some_and(|settle| self.done * 2 >= shards as usize && now >= self.since + settle)
    }

    /// When it ends at the latest.
    pub(super) fn until(&self) -> Instant {
        self.until
    }

    /// When to look again after `now`: when it ends at the latest, or
    /// sooner when the fleet would have settled by then.
    pub(super) fn next_check(&self, now: Instant) -> Instant {
        let latest = self.until.max(self.since + GRACE_MIN);
        let settled = self.settle.map(|settle| self.since + settle);
        [Some(latest), settled]
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
            .min()
            .unwrap_or(now + GRACE_MIN)
    }
}

/// The grace is at most this share of the time the runner's own shard took…
const GRACE_SHARE: u32 = 4;
/// …and ends once no shard was seen finishing for this share of it (5 s
/// for shards of a minute: a fleet started together finishes within a few
/// seconds, and a read sees a finished shard at most about 2 s late).
const SETTLE_SHARE: u32 = 12;
/// The least grace, and the least settling time.
const GRACE_MIN: Duration = Duration::from_secs(5);
/// The most.
const GRACE_MAX: Duration = Duration::from_secs(300);

/// What the thieves among the done shards are chosen by (rendezvous
/// hashing): the same few whatever the run, so that two runners who see
/// one more or one fewer shard done still agree on all but one thief.
const THIEVES_KEY: &str = "bridge: thieves";

/// The tasks among `others` that runner `index` takes under
/// [`Steal::QuietSplit`], one of at most `thieves`.
fn quiet_split(
    others: Vec<TaskId>,
    index: u32,
    thieves: u32,
    shards: &mut Shards,
    view: &View,
    derived: &BTreeMap<TaskId, Derived>,
    held: &dyn Fn(&str) -> bool,
) -> Vec<TaskId> {
    let ShardStates { busy, open } = shard_states(shards, view, derived, held);
    let quiet: BTreeSet<u32> = open
        .iter()
        .copied()
        .filter(|s| *s != index && !busy.contains(s))
        .collect();
    let done: Vec<u32> = (0..shards.count())
        .filter(|s| *s == index || !open.contains(s))
        .collect();
    // Each quiet shard's runner never pushed: its push pays for a thief.
    let paid = thieves as usize + quiet.len();
    let thieves = crate::shard::top_n(THIEVES_KEY, done, paid);
    if !thieves.contains(&index) {
        return Vec::new();
    }
    // Each quiet shard's tasks, done or not, are dealt among the thieves
    // with bounded loads (none gets more than its share, so the last thief
    // does not finish well after the others: each task to the thief it
    // weighs most dealt 62 tasks to 9 thieves at 4 to 11 each). The deal
    // is per shard, over every task of it, so it is the same for every
    // thief that sees the shard quiet, whatever it sees of the other
    // shards, and it holds while they work (their own claims do not make
    // the shard busy, their results land at their end). Dealt as one set,
    // the quiet shards' deal moved as a whole when two thieves' views
    // differed by one of them (4 % duplicates with 16 runners on two cores).
    let mut by_shard: BTreeMap<u32, Vec<&TaskId>> = BTreeMap::new();
    for id in derived.keys() {
        let s = shards.of(id);
        if quiet.contains(&s) {
            by_shard.entry(s).or_default().push(id);
        }
    }
    let mine: BTreeSet<&TaskId> = by_shard
        .into_values()
        .flat_map(|ids| crate::shard::deal(ids, &thieves))
        .filter(|(_, thief)| *thief == index)
        .map(|(id, _)| id)
        .collect();
    others.into_iter().filter(|id| mine.contains(id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_ends_early_once_the_fleet_has_settled() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        // Its own shard took 120 s: 30 s at most, 10 s of no news.
        let mut g = Grace::new(t0, secs(120), None);
        assert_eq!(g.until(), t0 + secs(30));
        // 16 shards; 7 done seen: not half, so it waits.
        g.observe(7, t0 + secs(1));
        assert!(!g.over(t0 + secs(15), 16));
        // 15 done: half at least; 10 s without another ends it.
        g.observe(15, t0 + secs(3));
        assert!(!g.over(t0 + secs(12), 16));
        assert!(g.over(t0 + secs(13), 16));
        // Another one seen done starts the 10 s again…
        g.observe(16, t0 + secs(22));
        assert!(!g.over(t0 + secs(29), 16));
        // …within the 30 s at most.
        assert!(g.over(t0 + secs(30), 16));
        // It wakes when the fleet would have settled, not later.
        assert_eq!(g.next_check(t0 + secs(23)), t0 + secs(30));
        let mut h = Grace::new(t0, secs(120), None);
        h.observe(9, t0 + secs(4));
        assert_eq!(h.next_check(t0 + secs(5)), t0 + secs(14));
        assert_eq!(h.next_check(t0 + secs(15)), t0 + secs(30));
        // A shard seen finishing just before the cap delays it: every
        // thief must have read that push.
        let mut late = Grace::new(t0, secs(120), None);
        late.observe(3, t0 + secs(28));
        assert!(!late.over(t0 + secs(30), 16));
        assert_eq!(late.next_check(t0 + secs(30)), t0 + secs(33));
        assert!(late.over(t0 + secs(33), 16));
        // A grace set by hand is kept whole.
        let mut fixed = Grace::new(t0, secs(80), Some(secs(60)));
        fixed.observe(16, t0);
        assert!(!fixed.over(t0 + secs(59), 16));
        assert!(fixed.over(t0 + secs(60), 16));
        // A short shard: 5 s at least, either way.
        let mut short = Grace::new(t0, secs(4), None);
        short.observe(2, t0);
        assert!(!short.over(t0 + secs(4), 2));
        assert!(short.over(t0 + secs(5), 2));
    }

    #[test]
    fn a_window_holds_about_two_seconds_of_work_per_slot() {
        // Nothing timed yet: one task per slot.
        assert_eq!(window_size(4, None, false, false), 4);
        // 100 ms tasks: 20 per slot.
        assert_eq!(window_size(4, Some(100.0), false, false), 80);
        // Long tasks are not hoarded, short ones are capped.
        assert_eq!(window_size(4, Some(60_000.0), false, false), 4);
        assert_eq!(window_size(4, Some(0.0), false, false), MAX_WINDOW);
        // A thief takes little; a runner takes its own shard at once.
        assert_eq!(window_size(4, Some(100.0), true, true), 4);
        assert_eq!(window_size(4, None, false, true), MAX_WINDOW);
    }
}
