//! Sync: the set-union exchange of files between this device's replica and
//! the remote, minus what compaction has proved redundant.
//!
//! Nothing is overwritten or deleted on either side by a sync: it pushes
//! what the remote lacks and pulls what the replica lacks
//! (`bridge_store::sync_with`). What this device's snapshots provably hold
//! ([`crate::compact::redundant`], the redundancy rules) is neither pulled
//! nor pushed, and is then deleted from the replica. A damaged local file
//! the sync replaced with the remote's copy is reported, and its document's
//! cache dropped. Sync never compacts: compaction calls sync, not the other
//! way round.

use std::collections::BTreeSet;

use bridge_store::{Remote, Replica, SyncError, SyncProgress, SyncReport};

use crate::compact::redundant;
use crate::vault::Vault;

/// A set-union sync that leaves out, and then deletes from the replica,
/// what this device's snapshots make redundant. With `pull_covered`, the
/// remote's chunks bundled in a local snapshot are pulled anyway and
/// nothing is deleted from the replica: a compaction compares them and
/// deletes them itself, and only then knows to remove them from the remote
/// (deleted here, a leftover that a lost lease kept on the remote would
/// never be removed by any later compaction).
pub fn sync_store(
    vault: &Vault,
    replica: &Replica,
    remote: &dyn Remote,
    progress: &mut dyn FnMut(SyncProgress),
    pull_covered: bool,
) -> Result<SyncReport, SyncError> {
    exchange_store(vault, replica, remote, progress, pull_covered, true)
}

/// [`sync_store`] without its push: pulls what the replica lacks (minus
/// what is redundant here) and sends nothing, for a writer whose pushes
/// are paced by the repository's budget ([`crate::budget`]) and must see
/// the others' files meanwhile.
pub fn pull_store(
    vault: &Vault,
    replica: &Replica,
    remote: &dyn Remote,
    progress: &mut dyn FnMut(SyncProgress),
) -> Result<SyncReport, SyncError> {
    exchange_store(vault, replica, remote, progress, false, false)
}

fn exchange_store(
    vault: &Vault,
    replica: &Replica,
    remote: &dyn Remote,
    progress: &mut dyn FnMut(SyncProgress),
    pull_covered: bool,
    push: bool,
) -> Result<SyncReport, SyncError> {
    let mut prune = BTreeSet::new();
    let mut redundant_here = |r: &Replica, remote_names: &BTreeSet<String>| {
        let skip = redundant(vault, r, (!pull_covered).then_some(remote_names));
        prune = skip.clone();
        skip
    };
    let report = if push {
        bridge_store::sync_with(replica, remote, progress, &mut redundant_here)?
    } else {
        bridge_store::pull_with(replica, remote, progress, &mut redundant_here)?
    };
    report_repairs(replica, &report.repaired);
    if !pull_covered {
        prune_local(replica, &prune);
    }
    Ok(report)
}

/// Warns once about each damaged file a sync repaired, and drops the
/// cache of its document: the cache lists the damaged file as refused, and
/// the next load must read the repaired one.
pub fn report_repairs(replica: &Replica, repaired: &[bridge_store::StoreWarning]) {
    let Some(state_dir) = replica.root().parent() else {
        return;
    };
    let cache_dir = crate::cache::dir(state_dir);
    for w in repaired {
        tracing::warn!("repaired {}: {}", w.path.display(), w.message);
        if let Ok(rel) = w.path.strip_prefix(replica.root())
            && let Some(doc) = rel.iter().nth(1).and_then(|d| d.to_str())
        {
            crate::cache::forget(&cache_dir, doc);
        }
    }
}

/// Deletes redundant files from the replica (missing ones are fine).
pub fn prune_local(replica: &Replica, names: &BTreeSet<String>) {
    let names: Vec<String> = names.iter().cloned().collect();
    if let Err(e) = replica.remove_store_files(&names) {
        tracing::warn!(
            "could not remove redundant files from the replica: {}",
            crate::files::with_causes(&e)
        );
    }
}

#[cfg(test)]
mod tests {
    use bridge_crypto::{Identity, Roster};
    use bridge_store::DirRemote;

    use super::*;

    fn device(dir: &std::path::Path) -> (Vault, Replica) {
        let identity = Identity::generate().expect("a key");
        let (roster, _) = Roster::genesis(&identity, "me", "ws", 1).expect("a roster");
        let replica = Replica::init(&dir.join("store"), "ws").expect("a replica");
        (Vault::new(replica.clone(), identity, roster), replica)
    }

    fn files(replica: &Replica, doc: &str) -> BTreeSet<String> {
        replica
            .list_chunks(doc)
            .expect("listed")
            .into_iter()
            .collect()
    }

    /// A folder remote and two devices, in `tmp`.
    fn two_devices(tmp: &std::path::Path) -> (DirRemote, (Vault, Replica), (Vault, Replica)) {
        std::fs::create_dir_all(tmp.join("remote")).expect("a remote folder");
        let remote = DirRemote::new(tmp.join("remote"));
        (remote, device(&tmp.join("a")), device(&tmp.join("b")))
    }

    #[test]
    fn two_devices_end_with_the_union_of_their_files() {
        let tmp = tempfile::tempdir().expect("a temp folder");
        let (remote, (va, a), (vb, b)) = two_devices(tmp.path());
        let doc = "d";
        let from_a = a.write_chunk(doc, b"written on a").expect("written");
        let from_b = b.write_chunk(doc, b"written on b").expect("written");
        let ra = sync_store(&va, &a, &remote, &mut |_| {}, false).expect("a synced");
        assert_eq!((ra.pulled, ra.pushed), (0, 1));
        let rb = sync_store(&vb, &b, &remote, &mut |_| {}, false).expect("b synced");
        assert_eq!((rb.pulled, rb.pushed), (1, 1));
        let ra = sync_store(&va, &a, &remote, &mut |_| {}, false).expect("a synced");
        assert_eq!((ra.pulled, ra.pushed), (1, 0));
        let both: BTreeSet<String> = [from_a, from_b].into();
        assert_eq!(files(&a, doc), both);
        assert_eq!(files(&b, doc), both);
        // Set union: a sync with nothing new moves nothing.
        let again = sync_store(&va, &a, &remote, &mut |_| {}, false).expect("synced");
        assert_eq!((again.pulled, again.pushed), (0, 0));
    }

    #[test]
    fn a_pull_takes_the_remotes_files_and_sends_nothing() {
        let tmp = tempfile::tempdir().expect("a temp folder");
        let (remote, (va, a), (vb, b)) = two_devices(tmp.path());
        let doc = "d";
        let from_a = a.write_chunk(doc, b"written on a").expect("written");
        sync_store(&va, &a, &remote, &mut |_| {}, false).expect("a synced");
        let from_b = b.write_chunk(doc, b"written on b").expect("written");
        let r = pull_store(&vb, &b, &remote, &mut |_| {}).expect("b pulled");
        assert_eq!((r.pulled, r.pushed), (1, 0));
        assert_eq!(files(&b, doc), [from_a.clone(), from_b.clone()].into());
        // What b wrote is still queued for its next push, and not on the remote.
        assert!(!b.outbox().is_empty());
        let ra = pull_store(&va, &a, &remote, &mut |_| {}).expect("a pulled");
        assert_eq!((ra.pulled, ra.pushed), (0, 0));
        assert_eq!(files(&a, doc), [from_a].into());
    }
}
