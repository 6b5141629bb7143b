//! The worker loop as a [`Worker`] with one method per step: claim a
//! window, start tasks, look ahead, idle or stop, wait for what comes next
//! (a task ending, a flush, a lease renewal, a stop, a push), and finish.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bridge_model::{DocId, Millis, Outcome, TaskId, doc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::choose::{
    Grace, Steal, fits_before_deadline, prefer_shard, run_here, shards_done, window_size,
};
use super::claims::Claims;
use super::inputs::need_inputs;
use super::job::{
    Finished, Job, NotRecorded, Runner, Slots, blank_attempt, detail_of, panic_message,
    task_supervisor,
};
use super::{Event, FRESH_SYNC, Hooks, LeftForOthers, LocalFault, WorkOptions, WorkReport};
use super::{FLUSH_COUNT, LOOKAHEAD_MARGIN, LOOKAHEAD_MIN_MS, STOP_PUSH_LIMIT, WorkerError};
use crate::clock::Clock;
use crate::publish::Publisher;
use crate::shard::Shards;
use crate::vault::Placement;
use crate::workarea::WorkArea;
use crate::workspace::Session;
use bridge_fetch::Fetcher;

/// A worker: what it was given, what it shares with its jobs, and the state
/// of its loop.
pub struct Worker<'a> {
    session: &'a mut Session,
    opts: &'a WorkOptions,
    hooks: &'a mut dyn Hooks,
    publisher: Option<&'a mut Publisher>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    /// Tasks run at once (at least one).
    parallel: usize,
    lease_ms: Millis,
    /// This worker's own folder, locked while it lives.
    _work_area: WorkArea,
    /// What every job shares.
    runner: Runner,
    /// This device's member tag (its own tasks need no sandbox).
    me: [u8; 8],
    /// Fired to interrupt the running tasks.
    stop_tasks: CancellationToken,
    began: Instant,

    report: WorkReport,
    claims: Claims,
    /// Claims waiting for a slot, in order.
    queue: VecDeque<String>,
    running: JoinSet<Finished>,
    /// The slots the running jobs hold while their tasks run.
    slots: Arc<Slots>,
    /// The task name of each running claim, for progress output.
    names: HashMap<String, String>,
    /// The start of each job's task, announced once it has a slot.
    unannounced: HashMap<String, Event>,
    /// Which task each running job is, so that a job that panics still ends
    /// its task with an `error` attempt instead of stopping the worker.
    spawned: HashMap<tokio::task::Id, (TaskId, String, Millis)>,
    claimed_total: usize,
    /// The average task length so far, in milliseconds.
    avg_ms: Option<f64>,
    /// Attempts ended but not flushed yet…
    unflushed_attempts: usize,
    /// …and when they will be.
    flush_at: Option<Instant>,
    /// The attempts ended and not yet written to their documents (in the
    /// view already): written together, one change per document, when
    /// they are flushed, before the documents take in a sync, and when the
    /// worker is dropped.
    unwritten: Vec<(DocId, TaskId, bridge_model::Attempt)>,
    renew_at: Instant,
    stopping: bool,
    shards: Option<Shards>,
    warned_names: BTreeSet<String>,
    told_left: bool,
    /// The first fault of this machine a task ran into.
    local: Option<LocalFault>,
    /// Under a push budget, when this runner may steal from quiet shards
    /// (set when its own shard ran dry: see [`Steal::Wait`]).
    grace: Option<Grace>,
    /// Whether other shards' tasks wait for that moment.
    waiting_to_steal: bool,
    /// Whether the results of its own shard were pushed when it was done.
    shard_done_pushed: bool,
}

/// How many jobs a slot may have at once: one whose task runs, one getting
/// ready to run next, the others storing the results of tasks that ended.
const JOBS_PER_SLOT: usize = 3;

/// How often a runner waiting to steal looks at the remote again.
const STEAL_LOOK_EVERY: Duration = Duration::from_secs(2);

/// What a claim window found.
#[derive(Debug, PartialEq, Eq)]
enum Window {
    /// Claims were made (perhaps all lost).
    Claimed,
    /// Nothing to claim.
    Empty,
    /// Documents the load plan left were read: look again.
    ReadMore,
}

/// What to do when nothing runs and nothing waits.
#[derive(Debug, PartialEq, Eq)]
enum Idle {
    /// Look again.
    Again,
    /// The run is over.
    Stop,
}

impl<'a> Worker<'a> {
    /// A worker over `session`, reading the time from `clock`: opens its
    /// folder and resolves its sandbox.
    pub fn new(
        session: &'a mut Session,
        opts: &'a WorkOptions,
        shutdown: CancellationToken,
        hooks: &'a mut dyn Hooks,
        publisher: Option<&'a mut Publisher>,
        clock: Arc<dyn Clock>,
    ) -> Result<Worker<'a>, WorkerError> {
        // This worker's own folder; folders killed workers left are removed.
        let work_area = WorkArea::open(&session.ws.work_dir())?;
        let (supervisor, sandbox) = task_supervisor(&session.ws, session.is_runner())?;
        let me = crate::vault::member_tag(session.vault.identity().member_id());
        let fetcher =
            Fetcher::new(session.ws.settings.fetch_config()?).with_progress(hooks.downloads());
        let supervised = supervisor.is_some();
        let runner = Runner {
            vault: session.vault.clone(),
            fetcher: Arc::new(fetcher),
            work_dir: work_area.dir().to_owned(),
            supervisor,
            sandbox,
            device: opts.device.clone(),
            provenance: opts.provenance.clone(),
            clock: clock.clone(),
            inherited_env: Arc::new(session.ws.settings.task_env.clone()),
            max_output: opts.max_object.map(bridge_vault::max_plain_for_sealed),
            spares: Arc::new(super::spares::Spares::new(work_area.dir(), supervised)),
            hold_slots: opts.halt.is_some(),
        };
        Ok(Worker {
            parallel: opts.parallel.max(1),
            lease_ms: opts.lease.as_millis() as Millis,
            _work_area: work_area,
            runner,
            me,
            stop_tasks: CancellationToken::new(),
            began: Instant::now(),
            report: WorkReport::default(),
            claims: Claims::default(),
            queue: VecDeque::new(),
            running: JoinSet::new(),
            slots: Arc::new(Slots::new(opts.parallel.max(1))),
            names: HashMap::new(),
            unannounced: HashMap::new(),
            spawned: HashMap::new(),
            claimed_total: 0,
            avg_ms: None,
            unflushed_attempts: 0,
            flush_at: None,
            unwritten: Vec::new(),
            renew_at: Instant::now() + opts.lease / 3,
            stopping: false,
            shards: opts.shard.map(|(_, count)| Shards::new(count)),
            warned_names: BTreeSet::new(),
            told_left: false,
            local: None,
            grace: None,
            waiting_to_steal: false,
            shard_done_pushed: false,
            session,
            opts,
            hooks,
            publisher,
            clock,
            shutdown,
        })
    }

    /// The first fault of this machine a task ran into, if any.
    pub fn local_fault(&self) -> Option<&LocalFault> {
        self.local.as_ref()
    }

    /// Runs the loop until no task is runnable (or, with `follow`, until
    /// shutdown or the deadline), then releases what it still holds and
    /// pushes. A fault of this machine stops it without an error here: see
    /// [`local_fault`](Self::local_fault).
    pub async fn run(&mut self) -> Result<WorkReport, WorkerError> {
        loop {
            let budget_left = self.budget_left();
            let mut nothing_runnable = false;
            if !self.stopping && self.queue.len() < self.parallel && budget_left > 0 {
                match self.claim_window(budget_left).await? {
                    Window::ReadMore => continue,
                    Window::Empty => nothing_runnable = true,
                    Window::Claimed => {}
                }
            }
            self.start_tasks()?;
            self.look_ahead(budget_left);
            if self.running.is_empty() && self.queue.is_empty() {
                match self.idle(nothing_runnable, budget_left).await? {
                    Idle::Again => continue,
                    Idle::Stop => break,
                }
            }
            self.wait().await?;
            self.after_wait().await?;
        }
        self.finish().await?;
        Ok(std::mem::take(&mut self.report))
    }

    /// How many more tasks this worker may claim.
    fn budget_left(&self) -> usize {
        if self.report.halted {
            return 0;
        }
        self.opts
            .max_tasks
            .map_or(usize::MAX, |m| m.saturating_sub(self.claimed_total))
    }

    /// After a failed attempt: once the [`Halt`](super::Halt) rule's
    /// failures are reached, no more claims, the waiting ones released;
    /// returns whether the running tasks must stop too (`now`).
    fn halt_after_failure(&mut self) -> Result<bool, WorkerError> {
        let Some(halt) = self.opts.halt else {
            return Ok(false);
        };
        if self.report.halted || self.report.failed < halt.failures.max(1) {
            return Ok(false);
        }
        self.report.halted = true;
        if halt.now {
            return Ok(true);
        }
        let waiting: Vec<String> = self.queue.drain(..).collect();
        let now = self.now();
        self.claims.release(self.session, &waiting, now)?;
        Ok(false)
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Writes the waiting attempts to the replica (and whatever else the
    /// session holds unflushed).
    fn flush_attempts(&mut self) -> Result<(), WorkerError> {
        // Those that could be written are flushed even if one could not.
        let written = self.write_attempts();
        self.session.flush()?;
        self.unflushed_attempts = 0;
        self.flush_at = None;
        written
    }

    /// Writes the attempts that ended since the last call to their
    /// documents: one change per document for all of them, where a change
    /// per attempt cost a commit each (a fifth of the worker loop's time on
    /// short tasks). They reach the replica at the next flush, as before.
    fn write_attempts(&mut self) -> Result<(), WorkerError> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let mut unwritten = std::mem::take(&mut self.unwritten);
        // By document, each document's attempts in the order they ended.
        unwritten.sort_by(|a, b| a.0.cmp(&b.0));
        let mut first_error = None;
        for group in unwritten.chunk_by(|a, b| a.0 == b.0) {
            let doc_id = &group[0].0;
            let at = group.iter().map(|(_, _, a)| a.ended_at).max().unwrap_or(0);
            let written = self.session.change(doc_id, at, "attempts", |d| {
                let mut failed = None;
                for (_, id, attempt) in group {
                    // One that cannot be written must not take the others
                    // with it (a failed change is rolled back whole).
                    if let Err(e) = doc::put_attempt(d, id, attempt) {
                        tracing::error!(task = %id, "cannot record the attempt: {e}");
                        failed.get_or_insert(e);
                    }
                }
                Ok(failed)
            });
            match written {
                Ok(None) => {}
                Ok(Some(e)) => {
                    first_error.get_or_insert(WorkerError::from(
                        crate::workspace::WriteError::Change {
                            id: doc_id.clone(),
                            source: Box::new(e),
                        },
                    ));
                }
                Err(e) => {
                    first_error.get_or_insert(e.into());
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Step 1: claims a window of tasks when the queue runs low, checks the
    /// claims against other workers' and queues those it won.
    async fn claim_window(&mut self, budget_left: usize) -> Result<Window, WorkerError> {
        if self.unflushed_attempts > 0 {
            // Results first: what other workers re-read must include them.
            self.flush_attempts()?;
        }
        self.look().await?;
        let now = self.now();
        let (candidates, stealing) = self.candidates(now);
        // Before stealing from other shards, read the documents the load
        // plan left: they hold this shard's tasks too.
        if (stealing || candidates.is_empty()) && self.session.has_deferred() {
            self.session.load_more()?;
            return Ok(Window::ReadMore);
        }
        // Under a push budget a thief takes only its own split of the quiet
        // shards, which no other runner takes: it claims them as it claims
        // its own shard (a whole window, no sync to check the claims).
        let contested = stealing && !matches!(self.steal_rule(), Steal::QuietSplit { .. });
        let window = window_size(
            self.parallel,
            self.avg_ms,
            contested,
            self.opts.shard.is_some(),
        );
        let take = window.min(budget_left).min(candidates.len());
        if take == 0 {
            return Ok(Window::Empty);
        }
        let mine = self
            .claims
            .claim(self.session, &candidates[..take], now, self.lease_ms)?;
        self.claimed_total += mine.len();
        self.session.flush()?;
        if self.check_claims(contested).await? {
            let now = self.now();
            let lost = self.claims.lost(self.session, &mine, now);
            self.report.lost_claims += lost.len();
            self.claims.release(self.session, &lost, now)?;
            self.session.flush()?;
            self.queue
                .extend(mine.into_iter().filter(|k| !lost.contains(k)));
        } else {
            self.queue.extend(mine);
        }
        Ok(Window::Claimed)
    }

    /// Brings the session up to date before claiming.
    async fn look(&mut self) -> Result<(), WorkerError> {
        match self.publisher.as_deref_mut() {
            // A sync that just ended (the run's first, or the last window's)
            // shows what there is to claim well enough: the sync after
            // claiming checks the claims.
            Some(p) if p.syncing() || !p.synced_within(FRESH_SYNC) => {
                p.sync(self.session).await?;
            }
            _ => {
                self.session.refresh()?;
            }
        }
        Ok(())
    }

    /// The tasks to claim at `now`, in order, and whether they are stolen
    /// from other shards; tells the hooks what is left and for whom.
    fn candidates(&mut self, now: Millis) -> (Vec<TaskId>, bool) {
        let session = &*self.session;
        let derived = session.view().derive(now, session.policy);
        // Built at each look: the roster may have changed meanwhile.
        let task_policy = session.task_policy(self.opts.run_tasks_from.as_deref());
        crate::run_policy::warn_unknown_names(&task_policy, &mut self.warned_names);
        let mut left = LeftForOthers {
            policy: task_policy.setting(),
            ..LeftForOthers::default()
        };
        let runnable: Vec<TaskId> = session
            .view()
            .runnable(&derived, &self.opts.labels)
            .into_iter()
            .filter(|id| !self.claims.holds_task(id))
            .filter(|id| self.opts.only.as_ref().is_none_or(|only| only.contains(id)))
            .filter(|id| {
                run_here(
                    &task_policy,
                    &self.runner.sandbox,
                    self.me,
                    session.view(),
                    id,
                    &mut left,
                )
            })
            .filter(|id| fits_before_deadline(session.view(), id, self.avg_ms, self.opts.deadline))
            .collect();
        if left.tasks() > 0 && !self.told_left {
            self.told_left = true;
            self.hooks.event(Event::LeftForOthers(left.clone()));
        }
        self.report.left_for_others = left;
        self.hooks.event(Event::Backlog {
            left: runnable.len(),
        });
        let any = !runnable.is_empty();
        if let (Some(grace), Some(shards)) = (self.grace.as_mut(), self.shards.as_mut()) {
            grace.observe(
                shards_done(shards, session.view(), &derived),
                Instant::now(),
            );
        }
        let steal = self.steal_rule();
        let (chosen, stealing) = prefer_shard(
            runnable,
            self.opts
                .shard
                .map(|(index, _)| index)
                .zip(self.shards.as_mut()),
            session.view(),
            &derived,
            steal,
            &|key| self.claims.get(key).is_some(),
        );
        if steal != Steal::FarEnd {
            self.note_dry(stealing, any && steal == Steal::Wait);
        }
        (chosen, stealing)
    }

    /// How this runner steals now: see [`Steal`].
    fn steal_rule(&self) -> Steal {
        let Some(pacer) = self.publisher.as_deref().and_then(|p| p.pacer()) else {
            return Steal::FarEnd;
        };
        let shards = self.opts.shard.map_or(1, |(_, count)| count);
        match &self.grace {
            Some(g) if g.over(Instant::now(), shards) => Steal::QuietSplit {
                thieves: pacer.share().thieves,
            },
            _ => Steal::Wait,
        }
    }

    /// Under a push budget: notes when this runner's own shard ran dry
    /// (`stealing`), and whether other shards' tasks wait for its grace.
    fn note_dry(&mut self, stealing: bool, others_wait: bool) {
        if !stealing {
            self.grace = None;
        } else if self.grace.is_none() {
            let now = Instant::now();
            let grace = Grace::new(now, self.began.elapsed(), self.opts.steal_grace);
            tracing::debug!(
                grace_ms = grace.until().duration_since(now).as_millis() as u64,
                "own shard ran dry; stealing from quiet shards after the grace"
            );
            self.grace = Some(grace);
        }
        self.waiting_to_steal = stealing && others_wait;
    }

    /// After claiming: reads other workers' claims (pushing ours). Returns
    /// whether anything new arrived, so that the claims must be checked.
    ///
    /// A runner's own shard is claimed by no other runner (shards are
    /// disjoint), only perhaps by a thief, who syncs after claiming and
    /// yields to an earlier claim: the owner pushes its claims at once and
    /// starts without waiting for a sync.
    async fn check_claims(&mut self, stealing: bool) -> Result<bool, WorkerError> {
        Ok(match self.publisher.as_deref_mut() {
            // Under a push budget they wait for the next paced push: nobody
            // else takes them (a thief takes only from quiet shards).
            Some(p) if self.opts.shard.is_some() && !stealing && p.pacer().is_some() => false,
            Some(p) if self.opts.shard.is_some() && !stealing => {
                p.publish_now();
                false
            }
            Some(p) => p.sync(self.session).await?.is_some_and(|r| r.pulled > 0),
            None => self.session.refresh()? > 0,
        })
    }

    /// Step 2: starts queued tasks while fewer than `parallel` jobs wait
    /// for a slot (each gets its task ready, then waits), and no more than
    /// [`JOBS_PER_SLOT`] jobs a slot run, wait or store what ended.
    fn start_tasks(&mut self) -> Result<(), WorkerError> {
        self.announce(self.slots.started());
        // Under `--halt`, a job starts only for a free slot (none waits
        // ready: it would start before the loop saw a failure).
        let ready_ahead = if self.runner.hold_slots {
            self.slots.free()
        } else {
            self.parallel
        };
        while self.slots.waiting() < ready_ahead
            && self.running.len() < self.parallel * JOBS_PER_SLOT
            && !self.stopping
        {
            let Some(key) = self.queue.pop_front() else {
                break;
            };
            let Some(h) = self.claims.get(&key) else {
                continue;
            };
            // Claims that arrived after this one's window was checked (a
            // later sync) may have won it, or another worker finished it:
            // check again, just before it would start.
            if self
                .session
                .view()
                .claim_lost(&h.task, &key, self.now(), self.session.policy)
            {
                self.report.lost_claims += 1;
                let now = self.now();
                self.claims
                    .release(self.session, std::slice::from_ref(&key), now)?;
                continue;
            }
            let Some(task) = self.session.view().get(&h.task) else {
                continue;
            };
            let spec = task.spec.clone();
            let id = h.task.clone();
            let placement = Placement::Batch(h.doc.batch().clone());
            let need_inputs = need_inputs(self.session.view(), &spec);
            self.names.insert(key.clone(), spec.name.clone());
            let attempt = task.facts.attempts.len() + 1;
            let shard = self.shards.as_ref().map(|s| s.of(&h.task));
            let log_at =
                |suffix| super::job::attempt_path(&self.runner.work_dir, &id, &key, suffix);
            let log_files = (log_at(".stdout"), log_at(".stderr"));
            let started = Event::Started {
                name: spec.name.clone(),
                id: h.task.clone(),
                attempt,
                shard,
                log_files,
            };
            self.unannounced.insert(key.clone(), started);
            let job = Job {
                runner: self.runner.clone(),
                id: id.clone(),
                key: key.clone(),
                spec,
                need_inputs,
                placement,
            };
            let ticket = self.slots.ticket();
            let handle = self.running.spawn(job.run(self.stop_tasks.clone(), ticket));
            self.spawned.insert(handle.id(), (id, key, self.now()));
            let began = self.began;
            self.report
                .first_started_ms
                .get_or_insert_with(|| began.elapsed().as_millis() as u64);
        }
        Ok(())
    }

    /// Step 2b: when the claimed tasks left would all have started within
    /// about a sync's time, syncs in the background, so that the next window
    /// (or finding that nothing is left) does not keep the slots waiting for
    /// the remote.
    fn look_ahead(&mut self, budget_left: usize) {
        if !self.stopping
            && budget_left > 0
            && !self.running.is_empty()
            && let (Some(p), Some(task_ms)) = (self.publisher.as_deref_mut(), self.avg_ms)
            && !p.syncing()
            && !p.synced_within(FRESH_SYNC)
        {
            let left_ms = self.queue.len() as f64 * task_ms / self.parallel as f64;
            let sync_ms =
                (p.last_sync().as_secs_f64() * 1000.0 * LOOKAHEAD_MARGIN).max(LOOKAHEAD_MIN_MS);
            if left_ms <= sync_ms {
                p.start_sync(self.session);
            }
        }
    }

    /// Step 3: nothing runs and nothing waits. Reads more documents, stops,
    /// or (with `follow`) waits for the next look.
    async fn idle(
        &mut self,
        nothing_runnable: bool,
        budget_left: usize,
    ) -> Result<Idle, WorkerError> {
        // The load plan left documents unread: read more before concluding
        // there is nothing to do.
        if nothing_runnable && !self.stopping && budget_left > 0 && self.session.has_deferred() {
            self.session.load_more()?;
            return Ok(Idle::Again);
        }
        // Under a push budget, other shards' tasks wait for the grace
        // before this runner may steal them: look again meanwhile.
        if nothing_runnable
            && self.waiting_to_steal
            && !self.stopping
            && budget_left > 0
            && let Some(at) = self.grace.as_ref().map(|g| g.next_check(Instant::now()))
        {
            if !self.shard_done_pushed {
                // Its own shard is done: its results go now, whatever the
                // pacer says. They are what tells the other runners this
                // shard has a runner, before any of them takes it over.
                self.shard_done_pushed = true;
                self.flush_attempts()?;
                if let Some(p) = self.publisher.as_deref_mut() {
                    p.flush(self.session).await;
                }
            }
            self.hooks.event(Event::Idle);
            let until = at.min(Instant::now() + STEAL_LOOK_EVERY);
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = self.shutdown.cancelled() => { self.stopping = true; }
            }
            return Ok(Idle::Again);
        }
        if self.stopping || budget_left == 0 || (nothing_runnable && !self.opts.follow) {
            return Ok(Idle::Stop);
        }
        if nothing_runnable {
            self.flush_attempts()?;
            // Nothing runs: a good moment for a long-lived worker to start
            // again from compact documents.
            if self.session.reload_due()? {
                tracing::debug!("reloading the documents to keep memory flat");
                // Compact the local replica first, so the reload reads
                // snapshots; the remote gets them with the next sync.
                crate::compact::auto(
                    &self.session.vault,
                    &self.session.ws.replica,
                    None,
                    usize::MAX,
                    &|_| true,
                );
                self.session.reload()?;
            }
            if self.publisher.is_none() {
                self.hooks.idle(self.session).map_err(WorkerError::Hook)?;
            }
            self.hooks.event(Event::Idle);
            tokio::select! {
                _ = tokio::time::sleep(self.opts.poll) => {}
                _ = self.shutdown.cancelled() => { self.stopping = true; }
            }
        }
        // Otherwise every claim of the window was lost: look again.
        Ok(Idle::Again)
    }

    /// Step 4: waits for something to happen (a task ending, the flush
    /// delay, the lease renewal, a stop, a push ending or falling due) and
    /// handles it.
    async fn wait(&mut self) -> Result<(), WorkerError> {
        let flush_deadline = self
            .flush_at
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let stop_at = self
            .opts
            .deadline
            .map_or_else(|| Instant::now() + Duration::from_secs(86_400), |(d, _)| d);
        let pushing = self.publisher.as_ref().is_some_and(|p| p.busy());
        let push_due = self.publisher.as_ref().and_then(|p| p.due());
        let has_deadline = self.opts.deadline.is_some();
        let stopping = self.stopping;
        let slots = self.slots.clone();
        let mut stop_now = false;
        tokio::select! {
            Some(joined) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                stop_now = self.collect(joined)?;
            }
            // A waiting job took a slot as a task's process ended (its job
            // still stores the results): its task is announced, and the
            // next job may get ready. (A notice still pending from earlier
            // costs one more turn of the loop.)
            () = slots.taken() => {}
            _ = tokio::time::sleep_until(flush_deadline), if self.flush_at.is_some() => {
                self.flush_attempts()?;
            }
            _ = tokio::time::sleep_until(self.renew_at) => self.renew()?,
            _ = self.shutdown.cancelled(), if !stopping => stop_now = true,
            _ = tokio::time::sleep_until(stop_at), if has_deadline && !stopping => stop_now = true,
            _ = async {
                match self.publisher.as_deref_mut() {
                    Some(p) => p.in_flight_done().await,
                    None => std::future::pending().await,
                }
            }, if pushing => {}
            // Queued results waiting for the push interval.
            _ = tokio::time::sleep_until(push_due.unwrap_or(stop_at)), if push_due.is_some() => {
                if let Some(p) = self.publisher.as_deref_mut() {
                    p.push_if_due();
                }
            }
        }
        if stop_now {
            self.stop()?;
        }
        Ok(())
    }

    /// A job ended: records its attempt, or (the machine's fault) releases
    /// its claim. Returns whether the worker must stop.
    fn collect(
        &mut self,
        joined: Result<(tokio::task::Id, Finished), tokio::task::JoinError>,
    ) -> Result<bool, WorkerError> {
        let finished = match joined {
            Ok((job, f)) => {
                self.spawned.remove(&job);
                f
            }
            // A bug that a stored task can trigger must not stop the pool
            // (issue 12, item 10): the task gets an `error` attempt, the
            // others go on.
            Err(e) => {
                let Some((id, key, started_at)) = self.spawned.remove(&e.id()) else {
                    return Err(WorkerError::RunnerCrashed(e));
                };
                let reason = panic_message(e);
                tracing::error!(task = %id, %reason, "running the task crashed; recorded as an error");
                let mut attempt =
                    blank_attempt(&key, &self.opts.device, &self.opts.provenance, started_at);
                attempt.ended_at = self.now();
                attempt.message = Some(format!("the worker could not run this task: {reason}"));
                Finished {
                    id,
                    key,
                    attempt,
                    unrecorded: None,
                    slot: None,
                }
            }
        };
        let Finished {
            id,
            key,
            attempt,
            unrecorded,
            slot: _given_back_on_return,
        } = finished;
        self.announce(self.slots.started());
        // A task that ended before it had a slot (it could not get ready)
        // is announced with its end; one that never started is not.
        let unannounced = self.unannounced.remove(&key);
        if let Some(NotRecorded::NotStarted) = unrecorded {
            // The worker stopped before this task had a slot: it goes back
            // to the pool as a waiting claim does.
            self.names.remove(&key);
            let now = self.now();
            self.claims
                .release(self.session, std::slice::from_ref(&key), now)?;
            return Ok(false);
        }
        if let Some(NotRecorded::Fault(fault)) = unrecorded {
            // Not the task's failure: nothing recorded, the claim released
            // (best effort: the disk may be full; then the lease runs out),
            // and no more claims from this machine.
            tracing::debug!(task = %id, "this machine cannot run tasks: {}", fault.0);
            self.names.remove(&key);
            let now = self.now();
            if let Err(e) = self
                .claims
                .release(self.session, std::slice::from_ref(&key), now)
            {
                tracing::debug!("cannot release the claim {key}: {e}");
            }
            self.local.get_or_insert(fault);
            return Ok(!self.stopping);
        }
        let Some(h) = self.claims.remove(&key) else {
            return Ok(false);
        };
        let ms = attempt.ended_at - attempt.started_at;
        self.avg_ms = Some(match self.avg_ms {
            None => ms as f64,
            Some(a) => 0.8 * a + 0.2 * ms as f64,
        });
        let mut halt_now = false;
        match attempt.outcome {
            Outcome::Success => self.report.done += 1,
            Outcome::Interrupted => self.report.interrupted += 1,
            _ => {
                self.report.failed += 1;
                halt_now = self.halt_after_failure()?;
            }
        }
        let detail = detail_of(&attempt);
        let outcome = attempt.outcome;
        let tails = (attempt.stdout_tail.clone(), attempt.stderr_tail.clone());
        let logs = self
            .hooks
            .wants_logs()
            .then(|| whole_logs(self.session, &attempt));
        self.unwritten
            .push((h.doc.clone(), id.clone(), attempt.clone()));
        self.session.view_mut().note_attempt(&id, attempt);
        self.unflushed_attempts += 1;
        if self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + self.opts.flush_delay);
        }
        if let Some(started) = unannounced {
            self.hooks.event(started);
        }
        self.hooks.event(Event::Finished {
            name: self.names.remove(&key).unwrap_or_default(),
            id,
            outcome,
            detail,
            ms,
            tails,
            logs,
        });
        Ok(halt_now && !self.stopping)
    }

    /// Tells the hooks that the tasks of `keys` started.
    fn announce(&mut self, keys: Vec<String>) {
        for key in keys {
            if let Some(started) = self.unannounced.remove(&key) {
                self.hooks.event(started);
            }
        }
    }

    /// Extends the lease of every held claim.
    fn renew(&mut self) -> Result<(), WorkerError> {
        let now = self.now();
        self.claims.renew(self.session, now, now + self.lease_ms)?;
        self.session.flush()?;
        self.renew_at = Instant::now() + self.opts.lease / 3;
        Ok(())
    }

    /// Stops: interrupts running tasks (their attempts are recorded as
    /// interrupted when they end) and gives up the waiting claims.
    fn stop(&mut self) -> Result<(), WorkerError> {
        self.stopping = true;
        self.stop_tasks.cancel();
        let waiting: Vec<String> = self.queue.drain(..).collect();
        let now = self.now();
        self.claims.release(self.session, &waiting, now)?;
        self.session.flush()?;
        Ok(())
    }

    /// After each wait: flushes a full group of attempts, applies a
    /// look-ahead sync that ended, and pushes what was flushed.
    async fn after_wait(&mut self) -> Result<(), WorkerError> {
        if self.unflushed_attempts >= FLUSH_COUNT {
            self.flush_attempts()?;
        }
        if self.publisher.as_ref().is_some_and(|p| p.ahead_ready()) {
            // The documents are about to take in what the sync pulled.
            self.write_attempts()?;
        }
        if let Some(p) = self.publisher.as_deref_mut() {
            // A look-ahead sync that ended: apply what it pulled now, while
            // tasks run, rather than when the slots are waiting for it.
            if p.ahead_ready() {
                p.sync(self.session).await?;
            }
            p.publish();
        }
        Ok(())
    }

    /// The end of the run: releases the claims still waiting, flushes, and
    /// pushes (for a short while only when stopping).
    async fn finish(&mut self) -> Result<(), WorkerError> {
        let waiting: Vec<String> = self.queue.drain(..).collect();
        let now = self.now();
        self.claims.release(self.session, &waiting, now)?;
        self.flush_attempts()?;
        if let Some(p) = self.publisher.as_deref_mut() {
            if self.stopping {
                // Stopping on a signal or at the deadline: the runner's
                // grace period is short (GitHub kills 10 s after SIGINT).
                // What does not make it is in the local replica and goes
                // with the next sync.
                let _ = tokio::time::timeout(STOP_PUSH_LIMIT, p.flush(self.session)).await;
            } else {
                p.flush(self.session).await;
            }
        }
        Ok(())
    }
}

impl Drop for Worker<'_> {
    /// A worker that ends early (an error, its future dropped) leaves its
    /// session's documents holding every attempt its view shows, for
    /// whatever flushes the session next.
    fn drop(&mut self) {
        // Not while unwinding from a panic: one more in Automerge would
        // abort the process.
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = self.write_attempts() {
            tracing::warn!("{e}");
        }
    }
}

/// An attempt's whole stdout and stderr: the tail kept in the attempt when
/// it is the whole log (shorter than a tail, and valid text: most tasks'
/// logs, read with no I/O on the worker's loop), else read back from the
/// replica where it was just kept (the tail if that fails).
fn whole_logs(session: &Session, attempt: &bridge_model::Attempt) -> (Vec<u8>, Vec<u8>) {
    let read = |blob: &Option<String>, tail: &str| {
        if tail.len() < super::job::TAIL_BYTES && !tail.contains(char::REPLACEMENT_CHARACTER) {
            return tail.as_bytes().to_vec();
        }
        blob.as_deref()
            .and_then(|b| b.parse::<bridge_store::BlobId>().ok())
            .and_then(|b| session.vault.read_blob(&b).ok())
            .unwrap_or_else(|| tail.as_bytes().to_vec())
    };
    (
        read(&attempt.stdout_blob, &attempt.stdout_tail),
        read(&attempt.stderr_blob, &attempt.stderr_tail),
    )
}

#[cfg(test)]
mod tests {
    use bridge_model::Status;

    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use crate::worker::claiming_tests::{
        LEASE_MS, Pool, Recorder, options, refresh, runtime, status, submit,
    };

    /// A worker over `session` reading `clock`, never stopped from outside.
    fn worker<'a>(
        session: &'a mut Session,
        opts: &'a WorkOptions,
        hooks: &'a mut Recorder,
        publisher: Option<&'a mut Publisher>,
        clock: &Arc<ManualClock>,
    ) -> Worker<'a> {
        Worker::new(
            session,
            opts,
            CancellationToken::new(),
            hooks,
            publisher,
            clock.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_window_claims_one_task_per_slot_until_tasks_are_timed() {
        let pool = Pool::new();
        let mut a = pool.session();
        let clock = ManualClock::at(SystemClock.now_ms());
        let ids = submit(&mut a, &["t1", "t2", "t3", "t4", "t5"], clock.now_ms());
        let opts = options(2);
        let mut hooks = Recorder::default();
        runtime().block_on(async {
            let mut worker = worker(&mut a, &opts, &mut hooks, None, &clock);
            let window = worker.claim_window(worker.budget_left()).await;
            assert!(matches!(window, Ok(Window::Claimed)), "{window:?}");
            assert_eq!((worker.queue.len(), worker.claimed_total), (2, 2));
            // The best two (same priority and batch: by name) are claimed.
            let claimed: Vec<&TaskId> = worker
                .queue
                .iter()
                .filter_map(|k| worker.claims.get(k).map(|h| &h.task))
                .collect();
            assert_eq!(claimed, vec![&ids[0], &ids[1]]);
            assert_eq!(
                status(worker.session, &ids[0], clock.now_ms()),
                Status::Running
            );
            // Timed tasks of 100 ms: about two seconds of work per slot.
            worker.avg_ms = Some(100.0);
            let window = worker.claim_window(worker.budget_left()).await;
            assert!(matches!(window, Ok(Window::Claimed)), "{window:?}");
            assert_eq!(worker.queue.len(), 5);
            // Nothing left to claim.
            let window = worker.claim_window(worker.budget_left()).await;
            assert!(matches!(window, Ok(Window::Empty)), "{window:?}");
        });
        assert!(
            hooks
                .events
                .iter()
                .any(|e| matches!(e, Event::Backlog { left: 5 }))
        );
    }

    #[test]
    fn with_a_remote_the_claims_of_a_window_are_synced_to_it() {
        let pool = Pool::new();
        let mut a = pool.session();
        let clock = ManualClock::at(SystemClock.now_ms());
        submit(&mut a, &["t1", "t2"], clock.now_ms());
        let opts = options(2);
        let mut hooks = Recorder::default();
        let remote = Box::new(bridge_store::remote::MemRemote::new());
        let mut publisher = Publisher::new(remote, a.ws.replica.clone());
        runtime().block_on(async {
            let mut worker = worker(&mut a, &opts, &mut hooks, Some(&mut publisher), &clock);
            let window = worker.claim_window(worker.budget_left()).await;
            assert!(matches!(window, Ok(Window::Claimed)), "{window:?}");
            assert_eq!(worker.queue.len(), 2);
            assert_eq!(worker.report.lost_claims, 0);
        });
        // The sync before claiming pushed the tasks, the one after pushed
        // the claims.
        assert_eq!(publisher.pushes, 2);
    }

    #[test]
    fn under_a_push_budget_own_claims_wait_and_the_last_push_lands_everything() {
        use crate::budget::{Pacer, Share};
        let pool = Pool::new();
        let mut a = pool.session();
        let clock = ManualClock::at(SystemClock.now_ms());
        submit(&mut a, &["t1", "t2"], clock.now_ms());
        let mut opts = options(2);
        opts.shard = Some((0, 1));
        let mut hooks = Recorder::default();
        let share = Share {
            push_every: Duration::from_secs(3600),
            read_every: Duration::ZERO,
            thieves: 1,
            phase: Duration::ZERO,
        };
        let remote = Box::new(bridge_store::remote::MemRemote::new());
        let mut publisher = Publisher::new(remote, a.ws.replica.clone())
            .with_pacer(Pacer::new(share, Instant::now()));
        let on_remote = |p: &Publisher| p.remote().list().map(|l| l.len()).unwrap_or(0);
        runtime().block_on(async {
            let mut worker = worker(&mut a, &opts, &mut hooks, Some(&mut publisher), &clock);
            let window = worker.claim_window(worker.budget_left()).await;
            assert!(matches!(window, Ok(Window::Claimed)), "{window:?}");
            assert_eq!(worker.queue.len(), 2);
        });
        // The look before claiming read the remote and pushed nothing (the
        // one token held is kept for the last push), nor were the claims.
        assert_eq!((publisher.pushes, publisher.fetches), (0, 1));
        assert!(publisher.has_pending());
        let before = on_remote(&publisher);
        runtime().block_on(publisher.flush(&mut a));
        assert_eq!(publisher.pushes, 1);
        assert!(!publisher.has_pending());
        assert!(
            on_remote(&publisher) > before,
            "the tasks and claims landed"
        );
    }

    #[test]
    fn max_tasks_bounds_the_claims() {
        let pool = Pool::new();
        let mut a = pool.session();
        let clock = ManualClock::at(SystemClock.now_ms());
        submit(&mut a, &["t1", "t2", "t3"], clock.now_ms());
        let mut opts = options(4);
        opts.max_tasks = Some(1);
        let mut hooks = Recorder::default();
        runtime().block_on(async {
            let mut worker = worker(&mut a, &opts, &mut hooks, None, &clock);
            let window = worker.claim_window(worker.budget_left()).await;
            assert!(matches!(window, Ok(Window::Claimed)), "{window:?}");
            assert_eq!(worker.queue.len(), 1);
            assert_eq!(worker.budget_left(), 0);
        });
    }

    #[test]
    fn a_claim_lost_before_its_task_starts_is_released_not_run() {
        let pool = Pool::new();
        let mut a = pool.session();
        let clock = ManualClock::at(SystemClock.now_ms());
        let ids = submit(&mut a, &["t1", "t2"], clock.now_ms());
        let mut b = pool.session();
        let opts = options(2);
        let mut hooks = Recorder::default();
        runtime().block_on(async {
            let mut worker = worker(&mut a, &opts, &mut hooks, None, &clock);
            let window = worker.claim_window(worker.budget_left()).await;
            assert!(matches!(window, Ok(Window::Claimed)), "{window:?}");
            // Another process claimed the first task earlier (its clock is
            // behind): this worker sees it after its window was checked.
            let mut theirs = Claims::default();
            theirs
                .claim(&mut b, &ids[..1], clock.now_ms() - 10, LEASE_MS)
                .unwrap_or_else(|e| panic!("{e}"));
            b.flush().unwrap_or_else(|e| panic!("{e}"));
            refresh(worker.session);
            // Tasks started now end at once, without a process.
            worker.stop_tasks.cancel();
            worker.start_tasks().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(worker.report.lost_claims, 1);
            assert!(!worker.claims.holds_task(&ids[0]));
            assert_eq!(worker.running.len(), 1);
            // The other one was stopped before it had a slot: nothing of
            // it ran, so no attempt; its claim is released. (A turn of the
            // loop may be the notice of its ticket given back: wait until
            // the job itself has ended.)
            while !worker.running.is_empty() {
                worker.wait().await.unwrap_or_else(|e| panic!("{e}"));
            }
            assert_eq!(worker.report.interrupted, 0);
            assert_eq!(worker.unflushed_attempts, 0);
            assert!(!worker.claims.holds_task(&ids[1]));
            let released = worker
                .session
                .view()
                .get(&ids[1])
                .is_some_and(|t| t.facts.claims.values().all(|c| c.released_at.is_some()));
            assert!(released, "the claim is released");
        });
    }

    /// A finished job as `collect` gets it: a successful attempt of the
    /// task of claim `key`.
    fn succeeded(worker: &Worker<'_>, key: &str, now: Millis) -> Finished {
        let h = worker
            .claims
            .get(key)
            .unwrap_or_else(|| panic!("no claim {key}"));
        let mut attempt = blank_attempt(key, "unit", &Default::default(), now);
        attempt.outcome = Outcome::Success;
        Finished {
            id: h.task.clone(),
            key: key.to_owned(),
            attempt,
            unrecorded: None,
            slot: None,
        }
    }

    /// The attempts that end between two flushes are in the view at once
    /// and are written to their document together, as one change, when
    /// they are flushed (issue 18, item 1: a change and its commit for each
    /// attempt was a fifth of the worker loop's time on short tasks). One
    /// that cannot be written does not take the others with it; a worker
    /// dropped early writes those it holds.
    #[test]
    fn issue18_the_attempts_of_a_flush_are_one_change_of_their_document() {
        let pool = Pool::new();
        let mut a = pool.session();
        let clock = ManualClock::at(SystemClock.now_ms());
        let ids = submit(&mut a, &["t1", "t2", "t3", "t4"], clock.now_ms());
        let doc = a
            .view()
            .get(&ids[0])
            .map(|t| t.home().clone())
            .unwrap_or_else(|| panic!("the task just submitted"));
        let mut b = pool.session();
        let opts = options(2);
        let mut hooks = Recorder::default();
        runtime().block_on(async {
            let mut worker = worker(&mut a, &opts, &mut hooks, None, &clock);
            worker.avg_ms = Some(100.0);
            let window = worker.claim_window(worker.budget_left()).await;
            assert!(matches!(window, Ok(Window::Claimed)), "{window:?}");
            let keys: Vec<String> = worker.queue.drain(..).collect();
            assert_eq!(keys.len(), 4);
            assert_eq!(worker.session.unflushed_changes(&doc), 0);
            for key in &keys[..2] {
                let finished = succeeded(&worker, key, clock.now_ms());
                let job = tokio::spawn(async {}).id();
                let stop = worker.collect(Ok((job, finished)));
                assert!(matches!(stop, Ok(false)), "{stop:?}");
            }
            // Seen at once, written when flushed.
            for id in &ids[..2] {
                assert_eq!(status(worker.session, id, clock.now_ms()), Status::Done);
            }
            assert_eq!(worker.session.unflushed_changes(&doc), 0);
            worker.write_attempts().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(worker.session.unflushed_changes(&doc), 1);
            worker.flush_attempts().unwrap_or_else(|e| panic!("{e}"));
            // An attempt of a task its document does not hold (which no
            // worker writes) fails alone: the others are flushed.
            let last = succeeded(&worker, &keys[2], clock.now_ms());
            let stranger: TaskId = "00112233445566778899aabbccddeeff"
                .parse()
                .unwrap_or_else(|e| panic!("{e}"));
            worker
                .unwritten
                .push((doc.clone(), stranger, last.attempt.clone()));
            worker
                .unwritten
                .push((doc.clone(), last.id.clone(), last.attempt));
            assert!(worker.flush_attempts().is_err());
            // One ended when the worker stops early (dropped): its document
            // holds it for whatever flushes the session next.
            let finished = succeeded(&worker, &keys[3], clock.now_ms());
            let job = tokio::spawn(async {}).id();
            assert!(matches!(worker.collect(Ok((job, finished))), Ok(false)));
        });
        a.flush().unwrap_or_else(|e| panic!("{e}"));
        refresh(&mut b);
        for id in &ids {
            assert_eq!(status(&b, id, clock.now_ms()), Status::Done, "{id}");
        }
    }

    #[test]
    fn renewing_extends_every_held_lease_and_stopping_releases_the_waiting_claims() {
        let pool = Pool::new();
        let mut a = pool.session();
        let clock = ManualClock::at(SystemClock.now_ms());
        let ids = submit(&mut a, &["t1"], clock.now_ms());
        let mut b = pool.session();
        let opts = options(1);
        let mut hooks = Recorder::default();
        runtime().block_on(async {
            let mut worker = worker(&mut a, &opts, &mut hooks, None, &clock);
            let window = worker.claim_window(worker.budget_left()).await;
            assert!(matches!(window, Ok(Window::Claimed)), "{window:?}");
            // Renewed a third of the lease later, the claim outlives its
            // first lease.
            clock.advance(LEASE_MS / 3);
            worker.renew().unwrap_or_else(|e| panic!("{e}"));
            refresh(&mut b);
            clock.advance(LEASE_MS);
            assert_eq!(status(&b, &ids[0], clock.now_ms()), Status::Running);
            // Stopping gives it back at once.
            worker.stop().unwrap_or_else(|e| panic!("{e}"));
            assert!(worker.stopping && worker.queue.is_empty());
        });
        refresh(&mut b);
        assert_eq!(status(&b, &ids[0], clock.now_ms()), Status::Pending);
    }
}
