//! Publishing to the remote while a worker runs: every flush's new files
//! (blobs first, then chunks) are pushed in the background, one push at a
//! time, coalescing whatever was written meanwhile, at least 2 s apart; a
//! full sync is done when the worker needs to see other workers' claims,
//! and can be started ahead, in the background, when it will soon need to
//! (pushes wait for it: its files would race the sync's).
//!
//! With a push budget ([`crate::budget`], a `git:` remote by default) the
//! background pushes wait for the writer's [`Pacer`]: a push in the middle
//! of a run goes only when its share allows, the syncs in between only
//! pull (and read at most once per read interval), and the last push
//! ([`Publisher::flush`], [`Publisher::sync_last`]) always goes.
//!
//! What to push is the replica's one outbox ([`bridge_store::Outbox`]),
//! which every write path fills. When the remote is unreachable, silent
//! past the stall timeout, or full, the names stay queued there: results
//! live in the local replica and land with the next push that goes through
//! (or the sync at the end). Nothing is dropped. The first failure is told
//! once; pushes and claim-window syncs then wait 2 s, doubling up to a
//! minute, before trying the remote again (issue 12, items 14 and 15).

use std::sync::Arc;

use bridge_store::{Remote, RemoteError, Replica, SyncError, SyncReport};
use tokio::task::JoinHandle;

use crate::budget::Pacer;
use crate::workspace::Session;

/// Why a sync of the publisher failed (an unreachable or full remote is not
/// an error: see [`Publisher::sync`]).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The background task that ran the sync panicked or was cancelled.
    #[error("the sync task crashed: {0}")]
    SyncCrashed(tokio::task::JoinError),
    /// The remote answered, but the sync failed.
    #[error("cannot sync with the remote")]
    Sync(#[source] SyncError),
    /// Reading the documents after a sync failed.
    #[error(transparent)]
    Load(#[from] crate::workspace::LoadError),
    /// Writing to the documents failed.
    #[error(transparent)]
    Write(#[from] crate::workspace::WriteError),
}

type PushResult = Result<(), (Vec<String>, RemoteError)>;
/// A sync's remote part and how long it took.
type SyncDone = (Result<SyncReport, SyncError>, std::time::Duration);

/// A sync whose remote part runs in the background.
struct Ahead {
    handle: JoinHandle<SyncDone>,
    /// Its outcome, once collected by [`Publisher::in_flight_done`].
    done: Option<Result<SyncDone, tokio::task::JoinError>>,
    /// The names it took from the queue (queued again if it fails).
    queued: Vec<String>,
    /// Whether it pushes (else it only pulls: the pacer forbade a push).
    pushes: bool,
}

/// Pushes a worker's files to its remote.
pub struct Publisher {
    remote: Arc<dyn Remote>,
    replica: Replica,
    in_flight: Option<JoinHandle<PushResult>>,
    /// Pushes that went through.
    pub pushes: usize,
    /// Pushes that failed (their files were queued again).
    pub failures: usize,
    /// Whether the last exchange with the remote failed (unreachable, gone,
    /// refused): pushes then wait (2 s, doubling up to a minute) before
    /// trying again.
    pub offline: bool,
    /// When the last push failed.
    failed_at: Option<std::time::Instant>,
    /// Pushes and syncs that failed in a row (the backoff's exponent).
    failed_in_row: u32,
    /// When the last background push started.
    started_at: Option<std::time::Instant>,
    /// How long the last background push took.
    last_push: std::time::Duration,
    /// When the last successful sync ended.
    synced_at: Option<std::time::Instant>,
    /// A sync started ahead of need ([`Publisher::start_sync`]).
    ahead: Option<Ahead>,
    /// How long the last sync's remote part took.
    last_sync: std::time::Duration,
    /// Paces pushes and reads to this writer's share of the repository's
    /// budget; `None`: no budget.
    pacer: Option<Pacer>,
    /// Reads of the remote (syncs and pulls), for reports.
    pub fetches: usize,
}

/// How long a publisher whose last push failed waits before the next try
/// (claim-window syncs read only the local replica meanwhile); doubled
/// after each failure in a row, up to [`RETRY_AFTER_MAX`], so that a
/// remote that stays full or unreachable is not hammered (issue 12, item
/// 14).
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);
/// The longest wait between two pushes to a remote that keeps failing.
const RETRY_AFTER_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// The least time between two background pushes: results land within about
/// this long, and a fleet of runners does not spend its CPU on git (measured:
/// one push per result made 16 runners on 2 cores 7× slower than ideal).
const PUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Background pushes take at most 1/`PUSH_SHARE` of the time: the interval
/// grows to this many times the last push's length. A push is slow when the
/// machine or the host is busy (many runners on few cores, a loaded git
/// server), and then pushing less often is what helps.
const PUSH_SHARE: u32 = 10;

/// The longest interval between background pushes, however slow they are:
/// it bounds what a runner killed without warning loses.
const PUSH_INTERVAL_MAX: std::time::Duration = std::time::Duration::from_secs(5);

impl Publisher {
    /// The remote it pushes to.
    pub fn remote(&self) -> &dyn Remote {
        self.remote.as_ref()
    }

    /// A publisher for `replica`'s files to `remote`.
    pub fn new(remote: Box<dyn Remote>, replica: Replica) -> Publisher {
        Publisher {
            remote: Arc::from(remote),
            replica,
            in_flight: None,
            pushes: 0,
            failures: 0,
            offline: false,
            failed_at: None,
            failed_in_row: 0,
            started_at: None,
            last_push: std::time::Duration::ZERO,
            synced_at: None,
            ahead: None,
            last_sync: std::time::Duration::ZERO,
            pacer: None,
            fetches: 0,
        }
    }

    /// Paces this publisher's pushes and reads with `pacer`.
    pub fn with_pacer(mut self, pacer: Pacer) -> Publisher {
        self.pacer = Some(pacer);
        self
    }

    /// Its pacer, when the repository has a budget.
    pub fn pacer(&self) -> Option<&Pacer> {
        self.pacer.as_ref()
    }

    /// Whether a push in the middle of a run may go now (always, without
    /// a budget).
    pub fn may_push(&self) -> bool {
        self.pacer
            .as_ref()
            .is_none_or(|p| p.may_push(tokio::time::Instant::now()))
    }

    /// Starts pushing what the replica's outbox holds (everything written
    /// since the last push, blobs first) if no push is under way.
    pub fn publish(&mut self) {
        self.start_if_idle();
    }

    /// Pushes what the outbox holds as soon as the push under way (if any)
    /// ends, whatever the interval: claims, which other runners must see
    /// before they steal.
    pub fn publish_now(&mut self) {
        self.started_at = None;
        self.failed_at = None;
        self.publish();
    }

    fn start_if_idle(&mut self) {
        if self.in_flight.is_some() || self.replica.outbox().is_empty() || self.ahead_running() {
            return;
        }
        if self
            .due()
            .is_some_and(|at| at > tokio::time::Instant::now())
        {
            return;
        }
        self.start_push();
    }

    /// Starts pushing the outbox now, whatever the interval and the pacer
    /// (the caller checked them, or this is the last push).
    fn start_push(&mut self) {
        if self.in_flight.is_some() || self.replica.outbox().is_empty() {
            return;
        }
        if let Some(p) = self.pacer.as_mut() {
            p.spend(tokio::time::Instant::now());
        }
        self.started_at = Some(std::time::Instant::now());
        let names = self.replica.outbox().take();
        let remote = self.remote.clone();
        let replica = self.replica.clone();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            bridge_store::push_names(&replica, remote.as_ref(), &names)
                .map(|_| ())
                .map_err(|e| (names, e))
        }));
    }

    /// When the queued files may be pushed (`None`: nothing queued, or a push
    /// is under way and will start the next itself). Not before the push
    /// interval has passed since the last push started (see `PUSH_SHARE`),
    /// nor `RETRY_AFTER` after a failure.
    pub fn due(&self) -> Option<tokio::time::Instant> {
        if self.in_flight.is_some() || self.replica.outbox().is_empty() || self.ahead_running() {
            return None;
        }
        let mut wait = std::time::Duration::ZERO;
        if let Some(t) = self.started_at {
            let interval = (self.last_push * PUSH_SHARE).clamp(PUSH_INTERVAL, PUSH_INTERVAL_MAX);
            wait = wait.max(interval.saturating_sub(t.elapsed()));
        }
        if self.offline
            && let Some(t) = self.failed_at
        {
            wait = wait.max(retry_after(self.failed_in_row).saturating_sub(t.elapsed()));
        }
        let now = tokio::time::Instant::now();
        let paced = self.pacer.as_ref().map_or(now, |p| p.next_push_at(now));
        Some((now + wait).max(paced))
    }

    /// Starts the queued push if it is due (for a timer in the worker loop).
    pub fn push_if_due(&mut self) {
        self.start_if_idle();
    }

    /// Pushes and rejections counted by the remote (git), if it counts them.
    pub fn remote_stats(&self) -> Option<bridge_store::PushStats> {
        self.remote.push_stats()
    }

    /// Whether a push, or a sync started ahead, is under way.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some() || self.ahead_running()
    }

    /// Waits for the push under way, if any, and starts the next one.
    pub async fn settle_one(&mut self) {
        let Some(handle) = self.in_flight.take() else {
            return;
        };
        let result = handle.await;
        self.record(result);
    }

    /// Pushes what is queued (once more even after a failure) and waits
    /// until nothing is under way. Files that could not be pushed stay
    /// queued; they are in the local replica and the next sync sends them.
    pub async fn flush(&mut self, session: &mut Session) {
        if self.ahead.is_some()
            && let Err(e) = self.sync(session).await
        {
            tracing::debug!("the sync ahead failed: {e}");
        }
        self.settle().await;
        // The last push goes now, whatever the interval and the pacer.
        self.failed_at = None;
        self.started_at = None;
        self.start_push();
        self.settle().await;
    }

    /// The run's last sync: pulls, and pushes whatever the pacer says
    /// (results must land before a runner's disk dies with it).
    pub async fn sync_last(
        &mut self,
        session: &mut Session,
    ) -> Result<Option<SyncReport>, PublishError> {
        if self.ahead.is_none() {
            self.settle().await;
            self.ahead = Some(self.spawn_exchange(session, true));
        }
        self.sync(session).await
    }

    /// Waits until nothing is under way. Terminates: a failed push is not
    /// restarted here, and a successful one only starts the next with what
    /// was already queued.
    pub async fn settle(&mut self) {
        while self.in_flight.is_some() {
            self.settle_one().await;
        }
    }

    /// A full set-union sync (after the pushes under way), then applies what
    /// arrived. Returns `None` when the remote is unreachable (or full, or
    /// failed less than its backoff ago: then only the replica is read).
    ///
    /// A sync started with [`start_sync`](Self::start_sync) is finished
    /// instead (what it pulled is applied), however long ago it started.
    pub async fn sync(
        &mut self,
        session: &mut Session,
    ) -> Result<Option<SyncReport>, PublishError> {
        // A remote that failed (unreachable, silent, full) is not tried
        // again before its backoff ends: each try of a silent one costs the
        // stall timeout, and the claim windows come every few seconds.
        if self.ahead.is_none()
            && self.offline
            && self
                .failed_at
                .is_some_and(|t| t.elapsed() < retry_after(self.failed_in_row))
        {
            session.refresh()?;
            return Ok(None);
        }
        let ahead = match self.ahead.take() {
            Some(ahead) => ahead,
            None => {
                self.settle().await;
                self.wait_to_read().await;
                self.spawn_sync(session)
            }
        };
        let (queued, pushes) = (ahead.queued, ahead.pushes);
        let done = match ahead.done {
            Some(done) => done,
            None => ahead.handle.await,
        };
        // What this sync was to push stays queued unless it went through.
        if !matches!(done, Ok((Ok(_), _))) {
            self.replica.outbox().put_back(queued);
        }
        let (result, took) = done.map_err(PublishError::SyncCrashed)?;
        self.last_sync = took;
        match result {
            Ok(report) => {
                self.offline = false;
                self.failed_at = None;
                self.failed_in_row = 0;
                self.synced_at = Some(std::time::Instant::now());
                if pushes && report.pushed > 0 {
                    self.pushes += 1;
                }
                session.after_sync(&report)?;
                Ok(Some(report))
            }
            Err(SyncError::Remote(e)) if e.is_remote_wide() => {
                self.went_offline(&e);
                // What was pulled before the push failed (a full remote
                // fails on the push) is in the replica.
                session.refresh()?;
                Ok(None)
            }
            Err(e) => Err(PublishError::Sync(e)),
        }
    }

    /// Starts a sync in the background, unless one is under way, a push is
    /// (its own files would race the sync's), or the remote was unreachable
    /// last time. The next [`sync`](Self::sync) waits for it and applies
    /// what it pulled: a worker about to run out of claimed tasks looks for
    /// more while its last ones run. Returns whether it started.
    pub fn start_sync(&mut self, session: &mut Session) -> bool {
        if self.ahead.is_some() || self.in_flight.is_some() || self.offline {
            return false;
        }
        if let Some(p) = &self.pacer
            && !p.may_read(tokio::time::Instant::now())
        {
            return false;
        }
        self.ahead = Some(self.spawn_sync(session));
        true
    }

    /// Whether a sync started ahead has not been applied yet.
    pub fn syncing(&self) -> bool {
        self.ahead.is_some()
    }

    /// How long the remote part of the last sync took.
    pub fn last_sync(&self) -> std::time::Duration {
        self.last_sync
    }

    /// Whether a sync started ahead has not been collected yet.
    fn ahead_running(&self) -> bool {
        self.ahead.as_ref().is_some_and(|a| a.done.is_none())
    }

    /// Whether a sync started ahead has ended and waits to be applied (by
    /// [`sync`](Self::sync)).
    pub fn ahead_ready(&self) -> bool {
        self.ahead.as_ref().is_some_and(|a| a.done.is_some())
    }

    /// Waits until the pacer lets this writer read the remote again (an
    /// interval of a second or so: reads are the plentiful half of the
    /// budget).
    async fn wait_to_read(&self) {
        if let Some(at) = self.pacer.as_ref().map(Pacer::next_read_at) {
            tokio::time::sleep_until(at).await;
        }
    }

    /// Starts the remote part of a sync, pushing only when the pacer allows
    /// it (else it only pulls).
    fn spawn_sync(&mut self, session: &mut Session) -> Ahead {
        let push = self.may_push() && !self.replica.outbox().is_empty();
        self.spawn_exchange(session, push || self.pacer.is_none())
    }

    /// Starts the remote part of a sync: with `push`, it pushes everything
    /// the remote lacks (the queue is kept only in case it fails) and pulls
    /// what the replica lacks; without, it only pulls.
    fn spawn_exchange(&mut self, session: &mut Session, push: bool) -> Ahead {
        let now = tokio::time::Instant::now();
        let sends = push && !self.replica.outbox().is_empty();
        if let Some(p) = self.pacer.as_mut() {
            p.read(now);
            if sends {
                p.spend(now);
            }
        }
        self.fetches += 1;
        let queued = if push {
            self.replica.outbox().take()
        } else {
            Vec::new()
        };
        let remote = self.remote.clone();
        let replica = self.replica.clone();
        let vault = session.vault.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let began = std::time::Instant::now();
            let result = if push {
                crate::sync::sync_store(&vault, &replica, remote.as_ref(), &mut |_| {}, false)
            } else {
                crate::sync::pull_store(&vault, &replica, remote.as_ref(), &mut |_| {})
            };
            (result, began.elapsed())
        });
        Ahead {
            handle,
            done: None,
            queued,
            pushes: push,
        }
    }

    /// Whether files wait to be pushed (queued, or failed to go).
    pub fn has_pending(&self) -> bool {
        !self.replica.outbox().is_empty() || self.in_flight.is_some() || self.ahead.is_some()
    }

    /// Notes a sync made by other means just now (a fresh checkout pulled
    /// the store from this remote before the publisher existed): it counts
    /// as this publisher's fetch.
    pub fn note_synced(&mut self) {
        self.synced_at = Some(std::time::Instant::now());
        self.fetches += 1;
    }

    /// Whether the last sync ended less than `age` ago.
    pub fn synced_within(&self, age: std::time::Duration) -> bool {
        self.synced_at.is_some_and(|t| t.elapsed() < age)
    }

    /// Completes when the push under way ends (for `select!`), recording
    /// its outcome and starting the next push, or when the sync started
    /// ahead ends (then [`ahead_ready`](Self::ahead_ready)); pending forever
    /// when there is neither. Safe to drop early: both stay under way.
    pub async fn in_flight_done(&mut self) {
        if let Some(ahead) = self.ahead.as_mut()
            && ahead.done.is_none()
        {
            ahead.done = Some((&mut ahead.handle).await);
            return;
        }
        let Some(handle) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let result = handle.await;
        self.in_flight = None;
        self.record(result);
    }

    /// Notes a failed exchange with the remote: later pushes back off, and
    /// the first failure of a row is told once (local work goes on).
    fn went_offline(&mut self, e: &RemoteError) {
        if self.failed_in_row == 0 {
            tracing::warn!(
                "{}; working on the local replica, pushes wait and retry",
                error_chain(e)
            );
        } else {
            tracing::debug!(
                "remote still failing ({} in a row): {e}",
                self.failed_in_row + 1
            );
        }
        self.offline = true;
        self.failed_at = Some(std::time::Instant::now());
        self.failed_in_row = self.failed_in_row.saturating_add(1);
    }

    fn record(&mut self, result: Result<PushResult, tokio::task::JoinError>) {
        if let Some(t) = self.started_at {
            self.last_push = t.elapsed();
        }
        match result {
            Ok(Ok(())) => {
                self.pushes += 1;
                self.offline = false;
                self.failed_in_row = 0;
            }
            Ok(Err((names, e))) => {
                self.failures += 1;
                // Any failure (unreachable, full, repository gone, token
                // refused) waits before the next try instead of spinning.
                self.went_offline(&e);
                // Keep them for the next push, ahead of newer files.
                self.replica.outbox().put_back(names);
            }
            Err(e) => tracing::warn!("the push task crashed: {e}"),
        }
        if !self.offline {
            self.start_if_idle();
        }
    }
}

/// How long to wait after `failures` failed exchanges in a row.
fn retry_after(failures: u32) -> std::time::Duration {
    let doubled = RETRY_AFTER.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(RETRY_AFTER_MAX)
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_after(u32::MAX), RETRY_AFTER_MAX);
    }

    fn replica(dir: &std::path::Path) -> Replica {
        Replica::init(&dir.join("store"), "ws").unwrap_or_else(|e| panic!("{e}"))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_push_drains_the_outbox_blobs_and_documents_alike() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let replica = replica(dir.path());
        let blob = replica
            .put_blob_bytes(b"an output")
            .unwrap_or_else(|e| panic!("{e}"));
        let chunk = replica
            .write_chunk("d1", b"a chunk")
            .unwrap_or_else(|e| panic!("{e}"));
        let snap = replica
            .write_doc_file(bridge_store::DocFolder::Snapshots, "d1", b"a snapshot")
            .unwrap_or_else(|e| panic!("{e}"));
        let remote = bridge_store::remote::MemRemote::new();
        let mut publisher = Publisher::new(Box::new(remote), replica.clone());
        assert!(publisher.has_pending());
        runtime().block_on(async {
            publisher.publish_now();
            publisher.settle().await;
        });
        assert!(!publisher.has_pending());
        assert!(replica.outbox().is_empty());
        assert_eq!(publisher.pushes, 1);
        let names = publisher.remote().list().unwrap_or_else(|e| panic!("{e}"));
        for name in [
            blob.store_name(),
            format!("chunks/d1/{chunk}"),
            format!("snapshots/d1/{snap}"),
        ] {
            assert!(names.contains(&name), "{name} was not pushed: {names:?}");
        }
    }

    #[test]
    fn what_a_failed_push_took_goes_back_to_the_outbox() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let replica = replica(dir.path());
        let chunk = replica
            .write_chunk("d1", b"a chunk")
            .unwrap_or_else(|e| panic!("{e}"));
        // A folder remote whose folder is not there.
        let remote = bridge_store::DirRemote::new(dir.path().join("unplugged"));
        let mut publisher = Publisher::new(Box::new(remote), replica.clone());
        runtime().block_on(async {
            publisher.publish_now();
            publisher.settle().await;
        });
        assert_eq!((publisher.pushes, publisher.failures), (0, 1));
        assert!(publisher.offline);
        // Written while the remote was away: queued behind the failed one.
        let later = replica
            .put_blob_bytes(b"later")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            replica.outbox().take(),
            vec![later.store_name(), format!("chunks/d1/{chunk}")]
        );
    }
}
