//! Which runner shard a task belongs to, so that K runners started together
//! split a pool without talking to each other.
//!
//! Plain rendezvous hashing (each task to the shard with the highest hash of
//! (task, shard)) leaves shards uneven: 1000 tasks over 16 shards gave 47 to
//! 75 tasks each, and the fleet then waits for the fullest shard (75 × the
//! task length alone is 1.2× the ideal makespan). So within each document,
//! tasks are taken in id order and each goes to its highest-hashed shard that
//! still has room for its share, ⌈n / K⌉ ("consistent hashing with bounded
//! loads"): no shard gets more than its share, and a task still goes where
//! rendezvous hashing prefers whenever there is room.
//!
//! Every runner computes the same assignment from the same document: its set
//! of tasks is fixed when it is submitted, whatever has run since.

use std::collections::{BTreeMap, HashMap};

use bridge_model::{DocId, TaskId, View};

/// The shards of the tasks of a view, computed per document on demand.
#[derive(Debug)]
pub struct Shards {
    count: u32,
    /// The view's task count when `of` was filled: a new document clears it.
    tasks_seen: usize,
    of: HashMap<TaskId, u32>,
    /// Documents already assigned.
    done: std::collections::HashSet<DocId>,
}

impl Shards {
    /// Shards for `count` runners.
    pub fn new(count: u32) -> Shards {
        Shards {
            count: count.max(1),
            tasks_seen: 0,
            of: HashMap::new(),
            done: Default::default(),
        }
    }

    /// How many shards.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Makes sure every task among `ids` has its shard (assigning the whole
    /// documents they live in).
    pub fn prepare<'a>(&mut self, view: &View, ids: impl IntoIterator<Item = &'a TaskId>) {
        if view.len() != self.tasks_seen {
            self.of.clear();
            self.done.clear();
            self.tasks_seen = view.len();
        }
        let mut wanted: Vec<DocId> = Vec::new();
        for id in ids {
            if let Some(task) = view.get(id)
                && !self.done.contains(task.home())
                && !wanted.contains(task.home())
            {
                wanted.push(task.home().clone());
            }
        }
        if wanted.is_empty() {
            return;
        }
        let mut members: BTreeMap<&DocId, Vec<&TaskId>> = BTreeMap::new();
        for task in view.tasks() {
            if wanted.contains(task.home()) {
                members.entry(task.home()).or_default().push(&task.id);
            }
        }
        for (doc, ids) in members {
            for (id, shard) in assign(ids, self.count) {
                self.of.insert(id.clone(), shard);
            }
            self.done.insert(doc.clone());
        }
    }

    /// The shard of `id` ([`prepare`](Self::prepare) it first; an unknown
    /// task falls back to plain rendezvous hashing).
    pub fn of(&self, id: &TaskId) -> u32 {
        self.of
            .get(id)
            .copied()
            .unwrap_or_else(|| shard_of_name(id.as_str(), self.count))
    }
}

/// Assigns one document's tasks to `count` shards: in id order, each to its
/// highest-weighted shard below ⌈n / count⌉ tasks.
fn assign(ids: Vec<&TaskId>, count: u32) -> Vec<(&TaskId, u32)> {
    let among: Vec<u32> = (0..count).collect();
    deal(ids, &among)
}

/// Deals `ids` among the shards `among` with bounded loads: in id order,
/// each to its highest-weighted shard of `among` below ⌈n / |among|⌉ tasks.
/// The same set dealt among the same shards gives the same deal, whoever
/// computes it. (One document's tasks over every shard; a quiet shard's
/// tasks over its thieves.)
pub fn deal<'a>(mut ids: Vec<&'a TaskId>, among: &[u32]) -> Vec<(&'a TaskId, u32)> {
    ids.sort_unstable();
    ids.dedup();
    let Some(&highest) = among.iter().max() else {
        return Vec::new();
    };
    let room = ids.len().div_ceil(among.len());
    let mut load = vec![0usize; highest as usize + 1];
    let mut out = Vec::with_capacity(ids.len());
    let mut order: Vec<(u64, u32)> = Vec::with_capacity(among.len());
    for id in ids {
        order.clear();
        order.extend(among.iter().map(|s| (rendezvous(id.as_str(), *s), *s)));
        order.sort_unstable_by(|a, b| b.cmp(a));
        // `room × |among| ≥ n`, so some shard always has room.
        let shard = order
            .iter()
            .map(|(_, s)| *s)
            .find(|s| load[*s as usize] < room)
            .unwrap_or(order[0].1);
        load[shard as usize] += 1;
        out.push((id, shard));
    }
    out
}

/// The shard (of `count`) of any name by plain rendezvous hashing: the one
/// with the highest hash of (name, shard). Adding a shard moves only the
/// names the new shard wins. (Documents, to split compaction.)
pub fn shard_of_name(name: &str, count: u32) -> u32 {
    (0..count.max(1))
        .max_by_key(|s| rendezvous(name, *s))
        .unwrap_or(0)
}

/// The `n` shards among `among` that weigh most for `name` (rendezvous
/// hashing), in no particular order: adding or removing one shard of
/// `among` changes at most one of them.
pub fn top_n(name: &str, among: impl IntoIterator<Item = u32>, n: usize) -> Vec<u32> {
    let mut weighed: Vec<(u64, u32)> = among
        .into_iter()
        .map(|s| (rendezvous(name, s), s))
        .collect();
    weighed.sort_unstable_by(|a, b| b.cmp(a));
    weighed.into_iter().take(n).map(|(_, s)| s).collect()
}

/// The rendezvous weight of `name` for `shard`.
fn rendezvous(name: &str, shard: u32) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(shard.to_be_bytes())
        .finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<TaskId> {
        (0..n)
            .map(|i| {
                use sha2::{Digest, Sha256};
                let h = Sha256::digest(format!("task {i}").as_bytes());
                let hex: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
                hex.parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn every_shard_gets_its_share() {
        let tasks = ids(1000);
        for count in [1u32, 4, 16, 33] {
            let mut load = vec![0usize; count as usize];
            for (_, s) in assign(tasks.iter().collect(), count) {
                load[s as usize] += 1;
            }
            let share = 1000usize.div_ceil(count as usize);
            assert!(load.iter().all(|l| *l <= share), "{count}: {load:?}");
            assert_eq!(load.iter().sum::<usize>(), 1000);
        }
        // Plain rendezvous hashing is uneven on the same tasks.
        let mut plain = [0usize; 16];
        for id in &tasks {
            plain[shard_of_name(id.as_str(), 16) as usize] += 1;
        }
        assert!(plain.iter().max().unwrap() - plain.iter().min().unwrap() > 10);
    }

    #[test]
    fn the_assignment_is_the_same_in_any_order_and_mostly_rendezvous() {
        let tasks = ids(500);
        let forward: BTreeMap<&TaskId, u32> =
            assign(tasks.iter().collect(), 8).into_iter().collect();
        let backward: BTreeMap<&TaskId, u32> = assign(tasks.iter().rev().collect(), 8)
            .into_iter()
            .collect();
        assert_eq!(forward, backward);
        let preferred = forward
            .iter()
            .filter(|(id, s)| shard_of_name(id.as_str(), 8) == **s)
            .count();
        assert!(
            preferred > 350,
            "{preferred} of 500 where rendezvous puts them"
        );
    }

    #[test]
    fn the_top_few_change_by_at_most_one_when_a_shard_comes_or_goes() {
        let all: Vec<u32> = (0..16).collect();
        let top = top_n("k", all.iter().copied(), 9);
        assert_eq!(top.len(), 9);
        for gone in 0..16 {
            let fewer = top_n("k", all.iter().copied().filter(|s| *s != gone), 9);
            let changed = fewer.iter().filter(|s| !top.contains(s)).count();
            assert!(changed <= 1, "without {gone}: {top:?} → {fewer:?}");
        }
        assert_eq!(top_n("k", [3, 1], 9).len(), 2, "fewer than asked: all");
    }

    #[test]
    fn a_quiet_shard_is_dealt_evenly_among_any_thieves() {
        // 62 tasks (a shard of 1000 over 16) among 9 thieves out of 16
        // shards: 6 or 7 each, whatever the order the tasks come in.
        let tasks = ids(62);
        let thieves = [1u32, 3, 4, 7, 8, 10, 12, 14, 15];
        let dealt: BTreeMap<&TaskId, u32> =
            deal(tasks.iter().collect(), &thieves).into_iter().collect();
        let again: BTreeMap<&TaskId, u32> = deal(tasks.iter().rev().collect(), &thieves)
            .into_iter()
            .collect();
        assert_eq!(dealt, again);
        assert_eq!(dealt.len(), 62);
        for t in thieves {
            let n = dealt.values().filter(|s| **s == t).count();
            assert!((6..=7).contains(&n), "thief {t}: {n}");
        }
        assert!(deal(tasks.iter().collect(), &[]).is_empty());
        // Each task to the thief it weighs most is uneven on them.
        let mut plain = BTreeMap::<u32, usize>::new();
        for id in &tasks {
            let top = top_n(id.as_str(), thieves, 1)[0];
            *plain.entry(top).or_default() += 1;
        }
        let (min, max) = (plain.values().min(), plain.values().max());
        assert_eq!((min, max), (Some(&4), Some(&11)), "{plain:?}");
    }
}
