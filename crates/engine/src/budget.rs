//! The repository's push and read budget, and each writer's share of it
//! (issue 15).
//!
//! A git host limits what one repository takes: GitHub recommends at most 6
//! pushes per minute and 15 git reads per second per repository (docs:
//! "Repository limits"). Every runner of a fleet and every device pushes to
//! the same repository, so the budget is the fleet's, not each process's.
//! Nobody coordinates: each writer takes a fixed share from what it knows,
//! its shard count.
//!
//! - A runner of shard `i/K` takes `1/K` of the pushes left after one per
//!   minute kept for devices (a person's `bridge sync` or `bridge work`),
//!   so it pushes at most once every `60 s × K / (B − 1)`; with B = 6 and
//!   K = 16, once every 192 s. It starts at a random phase, so that K
//!   runners started together do not push together.
//! - The minute's push kept for devices is their share: [`Share::device`]
//!   is once a minute, which `bridge work` with a remote keeps to (its
//!   claims and results go once a minute, everything at its end). A
//!   `bridge sync` typed by hand is one exchange a person asked for and is
//!   not delayed.
//! - Reads (a fetch of the store's refs) are paced the same way, with room
//!   to spare: K runners' reads are not in step, so in a given second more
//!   of them fall than on average. A runner reads at most once every
//!   `K / (R × 2/3)` seconds (R = 15: every 1.6 s for K = 16), and at most
//!   `⌊R / K⌋` times in any second, so that up to R runners never read more
//!   than R times in one second whatever their phases (0.8 s apart, eight
//!   runners could read twice each in one second: 16; they made 16 in a
//!   test). With more runners than R, a second holds at most one read of
//!   each, and their random phases spread them.
//! - Taking over a shard whose runner never came costs each thief one push
//!   more than its own (its shard's results, then the stolen tasks'). A
//!   fleet on a short run pushes once per runner, K in all, so it can pay
//!   for `5 min × (B − 1) − K` thieves within the 5-minute window (9 for
//!   K = 16, every runner for K ≤ 12: [`Share::thieves`]), and one more
//!   for each runner that never came, whose push is not made: 10 for K = 16
//!   with one missing, 11 with two.
//!
//! A writer's pushes come from a token bucket ([`Pacer`]): one token per
//! share interval from its phase on, at most two held. A push in the
//! middle of a run needs two tokens, so the last push (results must land
//! before a runner's disk dies with it) always has one paid for: over any
//! window, a runner pushes at most once per interval, plus its last push.
//! A runner on a short run therefore pushes once, at its end.
//!
//! The price is latency, and it is what the budget is for: results land on
//! the remote once per interval, not every few seconds, and a runner killed
//! without warning loses (re-runs) up to an interval of work. Claims on a
//! runner's own shard are not pushed at all: shards are disjoint.

use std::time::Duration;

use tokio::time::Instant;

/// The repository-wide limits (`[store] pushes-per-minute` and
/// `reads-per-second`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Pushes per minute to the repository, for everyone together.
    pub pushes_per_minute: f64,
    /// Git reads per second from the repository, for everyone together.
    pub reads_per_second: f64,
}

impl Budget {
    /// GitHub's published recommendations for one repository.
    pub const GITHUB: Budget = Budget {
        pushes_per_minute: 6.0,
        reads_per_second: 15.0,
    };
}

/// One writer's share of a [`Budget`]: how often it may push and read, and
/// when its first push token comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// The least time between two of its pushes (on average).
    pub push_every: Duration,
    /// The least time between two of its reads.
    pub read_every: Duration,
    /// When, after it starts, its first push token comes.
    pub phase: Duration,
    /// How many runners of its fleet may take over the shards that show no
    /// runner (each pushes once more than its share) when every runner
    /// came, up to K: see [`Share::runner`]. Each shard without a runner
    /// pays for one more (its runner's push is not made). None for a
    /// device.
    pub thieves: u32,
}

/// The pushes per minute kept for devices when a fleet shares a budget.
const DEVICE_PUSHES_PER_MINUTE: f64 = 1.0;

/// The share of the read budget runners aim at: their reads are not in
/// step, so some seconds see more than the average (16 runners at the full
/// 15 a second made 16 in their busiest second).
const READ_HEADROOM: f64 = 2.0 / 3.0;

/// The window over which a short run's pushes are counted: GitHub's
/// recommendation is per minute, a fleet's run ends in a burst of last
/// pushes, so the budget holds over five minutes.
const PUSH_WINDOW_MINUTES: f64 = 5.0;

impl Share {
    /// The share of the runner of one shard of `shards`, with its phase
    /// taken from `seed` (random per process).
    pub fn runner(budget: Budget, shards: u32, seed: u64) -> Share {
        let k = f64::from(shards.max(1));
        let fleet = if budget.pushes_per_minute > DEVICE_PUSHES_PER_MINUTE {
            budget.pushes_per_minute - DEVICE_PUSHES_PER_MINUTE
        } else {
            // A budget of a push a minute or less: the devices get no
            // share of their own, the runners count as one more each.
            budget.pushes_per_minute * k / (k + 1.0)
        };
        let push_every = seconds(60.0 * k / fleet.max(f64::MIN_POSITIVE));
        let reads = (budget.reads_per_second * READ_HEADROOM).max(f64::MIN_POSITIVE);
        let read_every = seconds(k / reads).max(within_any_second(k, budget.reads_per_second));
        let phase = push_every.mul_f64((seed % 10_000) as f64 / 10_000.0);
        // The window's pushes left once every runner has pushed once.
        let spare = (fleet * PUSH_WINDOW_MINUTES - k).floor();
        let thieves = spare.clamp(0.0, k) as u32;
        Share {
            push_every,
            read_every,
            phase,
            thieves,
        }
    }

    /// The share of a device (no shard): the pushes kept for devices, and
    /// a read every second at most.
    pub fn device(budget: Budget) -> Share {
        let per_minute = DEVICE_PUSHES_PER_MINUTE.min(budget.pushes_per_minute);
        Share {
            push_every: seconds(60.0 / per_minute.max(f64::MIN_POSITIVE)),
            read_every: seconds(1.0_f64.max(1.0 / budget.reads_per_second.max(f64::MIN_POSITIVE))),
            phase: Duration::ZERO,
            thieves: 0,
        }
    }
}

/// The least time between two reads of one of `k` runners so that the
/// fleet reads at most `reads_per_second` times in *any* one-second window
/// (the host counts per second): `⌊R / K⌋` reads a second each, an interval
/// rounded up to the millisecond (so that `⌊R / K⌋` intervals never fit in
/// a second). Zero when there are more runners than R: each reads less
/// than once a second anyway (see [`Share::runner`]).
fn within_any_second(k: f64, reads_per_second: f64) -> Duration {
    let each = (reads_per_second / k).floor();
    if each >= 1.0 {
        Duration::from_millis((1000.0 / each).ceil() as u64)
    } else {
        Duration::ZERO
    }
}

/// A duration of `s` seconds, bounded to a day (a budget near zero).
fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

/// The most push tokens a writer holds: a writer that had nothing to push
/// for a long time does not then push in a burst.
const MAX_TOKENS: u64 = 2;

/// A writer's push and read pacing over its [`Share`] (a token bucket for
/// pushes, a least interval for reads). Pure: the caller passes the time.
#[derive(Debug, Clone)]
pub struct Pacer {
    share: Share,
    start: Instant,
    /// Tokens spent, counting those dropped above [`MAX_TOKENS`].
    spent: u64,
    last_read: Option<Instant>,
}

impl Pacer {
    /// A pacer over `share`, starting at `start`.
    pub fn new(share: Share, start: Instant) -> Pacer {
        Pacer {
            share,
            start,
            spent: 0,
            last_read: None,
        }
    }

    /// Its share.
    pub fn share(&self) -> Share {
        self.share
    }

    /// Tokens earned by `now`: one at the phase, one more per interval.
    fn earned(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.start);
        if since < self.share.phase {
            return 0;
        }
        let every = self.share.push_every.as_secs_f64().max(1e-3);
        1 + ((since - self.share.phase).as_secs_f64() / every) as u64
    }

    fn held(&self, now: Instant) -> u64 {
        self.earned(now).saturating_sub(self.spent).min(MAX_TOKENS)
    }

    /// Whether a push in the middle of a run may go at `now` (one token
    /// stays for the last push).
    pub fn may_push(&self, now: Instant) -> bool {
        self.held(now) >= 2
    }

    /// When the next push in the middle of a run may go.
    pub fn next_push_at(&self, now: Instant) -> Instant {
        if self.may_push(now) {
            return now;
        }
        // Tokens held are below two: the next whole token that makes two.
        let earned = self.earned(now);
        let held = earned.saturating_sub(self.spent).min(MAX_TOKENS);
        let needed = earned + (2 - held);
        // Token n (from 1) is earned at phase + (n − 1) × interval.
        let at = self.share.phase + self.share.push_every.mul_f64((needed - 1) as f64);
        self.start + at
    }

    /// Records a push at `now` (a last push too, which may go below zero).
    pub fn spend(&mut self, now: Instant) {
        let earned = self.earned(now);
        // Tokens beyond the cap were never held: forget them.
        let floor = earned.saturating_sub(MAX_TOKENS);
        self.spent = self.spent.max(floor) + 1;
    }

    /// Whether a read may go at `now`.
    pub fn may_read(&self, now: Instant) -> bool {
        now >= self.next_read_at()
    }

    /// When the next read may go. The first comes at the same point of the
    /// read interval as the first push token of the push interval: K runners
    /// started together spread their first fetches over one read interval
    /// (16 at once made 19 to 23 reads in one second, over GitHub's 15).
    pub fn next_read_at(&self) -> Instant {
        match self.last_read {
            Some(t) => t + self.share.read_every,
            None => {
                let every = self.share.push_every.as_secs_f64();
                let at = if every > 0.0 {
                    (self.share.phase.as_secs_f64() / every).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                self.start + self.share.read_every.mul_f64(at)
            }
        }
    }

    /// Records a read at `now`.
    pub fn read(&mut self, now: Instant) {
        self.last_read = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_fleet_shares_what_devices_leave() {
        // B = 6: five pushes a minute for the fleet.
        let s = Share::runner(Budget::GITHUB, 16, 0);
        assert_eq!(s.push_every, secs(192));
        assert_eq!(s.phase, Duration::ZERO);
        let s = Share::runner(Budget::GITHUB, 6, 5_000);
        assert_eq!(s.push_every, secs(72));
        assert_eq!(s.phase, secs(36));
        // Reads: two thirds of 15 a second (10) for 10 runners.
        let s = Share::runner(Budget::GITHUB, 10, 0);
        assert_eq!(s.read_every, secs(1));
        // A device pushes once a minute.
        assert_eq!(Share::device(Budget::GITHUB).push_every, secs(60));
    }

    #[test]
    fn a_fleet_pays_for_as_many_thieves_as_its_window_has_pushes_left() {
        // 25 pushes in 5 minutes for the fleet: 16 last pushes leave 9.
        assert_eq!(Share::runner(Budget::GITHUB, 16, 0).thieves, 9);
        // A small fleet: every runner.
        assert_eq!(Share::runner(Budget::GITHUB, 6, 0).thieves, 6);
        assert_eq!(Share::runner(Budget::GITHUB, 12, 0).thieves, 12);
        // A fleet too large for the budget has none to spare (a runner
        // that never came pays for one: see the quiet split).
        assert_eq!(Share::runner(Budget::GITHUB, 40, 0).thieves, 0);
        assert_eq!(Share::device(Budget::GITHUB).thieves, 0);
    }

    #[test]
    fn a_tiny_budget_still_gives_everyone_a_share() {
        let b = Budget {
            pushes_per_minute: 1.0,
            reads_per_second: 15.0,
        };
        // Four runners and the devices share one push a minute: five ways.
        assert_eq!(Share::runner(b, 4, 0).push_every, secs(300));
        assert_eq!(Share::device(b).push_every, secs(60));
    }

    #[test]
    fn pushes_in_the_middle_of_a_run_keep_a_token_for_the_last() {
        let t0 = Instant::now();
        let share = Share {
            push_every: secs(60),
            read_every: secs(1),
            phase: secs(10),
            thieves: 1,
        };
        let mut p = Pacer::new(share, t0);
        // One token at the phase: kept for the last push.
        assert!(!p.may_push(t0));
        assert!(!p.may_push(t0 + secs(10)));
        assert_eq!(p.next_push_at(t0), t0 + secs(70));
        assert!(p.may_push(t0 + secs(70)));
        p.spend(t0 + secs(70));
        assert!(!p.may_push(t0 + secs(71)));
        assert_eq!(p.next_push_at(t0 + secs(71)), t0 + secs(130));
        assert!(p.may_push(t0 + secs(130)));
    }

    #[test]
    fn a_writer_idle_for_long_does_not_push_in_a_burst() {
        let t0 = Instant::now();
        let share = Share {
            push_every: secs(60),
            read_every: secs(1),
            phase: Duration::ZERO,
            thieves: 1,
        };
        let mut p = Pacer::new(share, t0);
        // An hour of nothing to push: two tokens held, not sixty.
        let later = t0 + secs(3600);
        assert!(p.may_push(later));
        p.spend(later);
        assert!(!p.may_push(later));
        assert_eq!(p.next_push_at(later), t0 + secs(3660));
    }

    #[test]
    fn a_run_shorter_than_two_intervals_pushes_once() {
        // Over any window, pushes ≤ window / interval + 1 (the last push).
        let t0 = Instant::now();
        let share = Share {
            push_every: secs(192),
            read_every: secs(1),
            phase: secs(50),
            thieves: 1,
        };
        let mut p = Pacer::new(share, t0);
        let mut pushes = 0;
        for s in 0..200 {
            let now = t0 + secs(s);
            if p.may_push(now) {
                p.spend(now);
                pushes += 1;
            }
        }
        assert_eq!(pushes, 0);
        p.spend(t0 + secs(200));
        // The last push leaves it in debt: the next comes two intervals on.
        assert!(!p.may_push(t0 + secs(50 + 2 * 192 - 1)));
    }

    #[test]
    fn a_fleet_reads_at_most_its_budget_in_any_second() {
        // Each runner reads as often as its share lets it, from its phase;
        // the busiest one-second window of the fleet's reads stays within
        // R for every fleet size up to R, whatever the phases.
        // Phases: the same for all (runners whose seeds agree), close
        // together, spread.
        let patterns: [fn(u64) -> u64; 3] = [|_| 0, |i| i * 13, |i| i * 7_919 % 10_000];
        for (k, phase_of) in (1..=15u32).flat_map(|k| patterns.map(|p| (k, p))) {
            let mut reads: Vec<Duration> = Vec::new();
            for i in 0..u64::from(k) {
                let share = Share::runner(Budget::GITHUB, k, phase_of(i));
                let t0 = Instant::now();
                let mut p = Pacer::new(share, t0);
                let mut at = p.next_read_at();
                while at < t0 + secs(10) {
                    p.read(at);
                    reads.push(at - t0);
                    at = p.next_read_at();
                }
            }
            reads.sort();
            let busiest = reads
                .iter()
                .enumerate()
                .map(|(j, &t)| reads[j..].iter().take_while(|&&u| u < t + secs(1)).count())
                .max()
                .unwrap_or(0);
            assert!(busiest <= 15, "{k} runners: {busiest} reads in a second");
        }
        // Eight runners: once a second each, not every 0.8 s (two reads of
        // each in one second: 16).
        assert_eq!(Share::runner(Budget::GITHUB, 8, 0).read_every, secs(1));
        assert_eq!(Share::runner(Budget::GITHUB, 9, 0).read_every, secs(1));
        // Elsewhere the headroom is the longer interval.
        assert_eq!(
            Share::runner(Budget::GITHUB, 4, 0).read_every,
            Duration::from_millis(400)
        );
        assert_eq!(
            Share::runner(Budget::GITHUB, 16, 0).read_every,
            Duration::from_millis(1600)
        );
    }

    #[test]
    fn reads_keep_their_interval() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Share::runner(Budget::GITHUB, 10, 0), t0);
        assert!(p.may_read(t0));
        p.read(t0);
        assert!(!p.may_read(t0 + Duration::from_millis(999)));
        assert!(p.may_read(t0 + secs(1)));
        assert_eq!(p.next_read_at(), t0 + secs(1));
    }

    #[test]
    fn runners_started_together_spread_their_first_reads() {
        let t0 = Instant::now();
        // 10 runners: a read a second each at most. Their phases spread the
        // first reads over that second, as they spread the first pushes.
        let firsts: Vec<Instant> = (0..10u64)
            .map(|i| Pacer::new(Share::runner(Budget::GITHUB, 10, i * 999), t0).next_read_at())
            .collect();
        assert!(firsts.iter().all(|&at| at >= t0 && at < t0 + secs(1)));
        let distinct: std::collections::BTreeSet<Instant> = firsts.iter().copied().collect();
        assert_eq!(distinct.len(), 10, "no two read at once");
        // Without a phase (a device), at once.
        assert!(Pacer::new(Share::device(Budget::GITHUB), t0).may_read(t0));
    }
}
