//! Helpers shared by several subcommands: opening the session, finding a
//! task from what the user typed, and syncing with the remote.

use anyhow::anyhow;
use bridge_model::view::TaskView;
use bridge_model::{BatchId, TaskId};
use bridge_store::{RemoteError, SyncError, SyncReport};

use super::GlobalArgs;
use crate::error::{CliError, CliResult, EXIT_MISCONFIGURED, EXIT_OFFLINE};
use crate::workspace::{LoadPlan, Session, Workspace, now_ms};
use bridge_engine::settings::Settings;

/// Finds the workspace and loads its documents. When the local replica
/// cannot show this device a roster it belongs to (a fresh clone of a
/// repository with bridge.toml, a new CI runner, a device just added), it
/// first pulls the store from the remote, then tries again.
pub fn open_session(g: &GlobalArgs) -> CliResult<Session> {
    open_session_with(g, LoadPlan::All)
}

/// [`open_session`], loading the documents as `plan` says.
pub fn open_session_with(g: &GlobalArgs, plan: LoadPlan) -> CliResult<Session> {
    open_session_fetching(g, plan, || {}).map(|(session, _)| session)
}

/// [`open_session_with`], calling `before_fetch` just before it pulls the
/// store from the remote (a runner waits for its turn to read), and saying
/// whether it did: then the session is as fresh as a sync.
pub fn open_session_fetching(
    g: &GlobalArgs,
    plan: LoadPlan,
    before_fetch: impl FnOnce(),
) -> CliResult<(Session, bool)> {
    let ws = Workspace::find(g.workspace.as_deref(), g.engine())?;
    let Some(spec) = ws.remote_spec().map(str::to_owned) else {
        return Ok((Session::open_with(ws, plan)?, false));
    };
    let root = ws.root.clone();
    let first = match Session::open_with(ws, plan.clone()) {
        Ok(s) => match s.vault.me() {
            Ok(_) => return Ok((s, false)),
            Err(e) => e.into(),
        },
        Err(e) => e.into(),
    };
    let ws = Workspace::open(&root, g.engine())?;
    let remote = open_remote(&ws.settings, &spec, &ws.root).map_err(|e| {
        CliError::hint(
            anyhow!(e),
            "set `remote` under [store] in bridge.toml to dir:PATH, git:URL or s3://BUCKET/PREFIX",
        )
    })?;
    before_fetch();
    match bridge_store::sync(&ws.replica, remote.as_ref(), &mut |_| {}) {
        Ok(report) => {
            for w in &report.skipped {
                tracing::warn!("{w}");
            }
            crate::sync::report_repairs(&ws.replica, &report.repaired);
        }
        Err(e) => {
            tracing::warn!("cannot fetch the store from {spec}: {e}");
            return Err(first);
        }
    }
    Ok((Session::open_with(ws, plan)?, true))
}

/// Opens a remote for the workspace at `root`. In a `git:` remote this
/// device writes its own ref, named after the device (`BRIDGE_DEVICE` or the
/// host name).
pub fn open_remote(
    settings: &Settings,
    spec: &str,
    root: &std::path::Path,
) -> Result<Box<dyn bridge_store::Remote>, bridge_store::RemoteSpecError> {
    open_remote_as(
        settings,
        spec,
        root,
        &crate::worker::safe_name(&settings.device_name()),
    )
}

/// [`open_remote`] writing the ref of `slot` (a runner shard). Its blobs
/// go to the workspace's `[store] blobs` when that is set.
pub fn open_remote_as(
    settings: &Settings,
    spec: &str,
    root: &std::path::Path,
    slot: &str,
) -> Result<Box<dyn bridge_store::Remote>, bridge_store::RemoteSpecError> {
    let blobs = config_at(root).and_then(|c| c.store.blobs);
    open_store(settings, spec, blobs.as_deref(), root, slot)
}

/// The remote of `spec` with its blobs in `blobs` (issue 19, item 2), as
/// this device opens it: before a workspace's bridge.toml says so (`init`,
/// `join`), or after.
pub fn open_store(
    settings: &Settings,
    spec: &str,
    blobs: Option<&str>,
    root: &std::path::Path,
    slot: &str,
) -> Result<Box<dyn bridge_store::Remote>, bridge_store::RemoteSpecError> {
    let mut opts = bridge_store::RemoteOptions::for_base(root);
    opts.writer_slot = slot.to_owned();
    // Taken out of the environment at start-up (see `secrets`).
    opts.github_token = settings.git_token();
    opts.stall_timeout = stall_timeout(settings, root);
    let config = config_at(root);
    opts.git_limits.max_object = config
        .as_ref()
        .map_or(bridge_store::git::DEFAULT_MAX_OBJECT, |c| c.max_object());
    // `s3:` remotes: the environment's AWS_* (taken at start-up), the
    // profile files under HOME, then `[store.s3]` (a workspace checks it
    // when it opens; a bad value here keeps the defaults).
    opts.s3.env = settings.s3_env.clone();
    opts.s3.home = settings.home.clone();
    if let Some(config) = &config {
        let _ = config.apply_s3(&mut opts.s3);
    }
    bridge_store::parse_store(spec, blobs, root, &opts)
}

/// Checks a `--blobs` argument as `[store] blobs` is checked (exit 7: a
/// bad spec is a misconfigured store).
pub fn check_blobs_arg(has_remote: bool, blobs: &str) -> CliResult<()> {
    crate::workspace::config::check_blobs(has_remote, blobs).map_err(|message| {
        CliError::hint(
            anyhow!("--blobs {message}"),
            "blobs go to an object store (s3://BUCKET/PREFIX) or a folder (dir:PATH), beside --remote",
        )
        .with_code(EXIT_MISCONFIGURED)
    })
}

/// The workspace's bridge.toml at `root`, if it can be read and parsed.
fn config_at(root: &std::path::Path) -> Option<crate::workspace::Config> {
    let path = root.join(crate::workspace::CONFIG_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    crate::workspace::Config::parse_str(&text, &path).ok()
}

/// The largest output a worker of this session stores: `[store]
/// max-object` when the remote is a `git:` one keeping its own blobs
/// (issue 15: GitHub refuses files over 100 MiB), else no limit but the
/// store's: outputs go to a folder, an object store, or the blob store of
/// `[store] blobs` (issue 19, item 2).
pub fn max_object(session: &Session) -> Option<u64> {
    session
        .ws
        .remote_spec()
        .filter(|spec| spec.starts_with("git:") && session.ws.config.blobs().is_none())
        .map(|_| session.ws.config.max_object())
}

/// The stall timeout of the workspace at `root` (see
/// [`Config::stall_timeout`](crate::workspace::Config::stall_timeout)).
/// A workspace checks its value when it opens; here (also before a
/// workspace exists, at `join`) a missing or bad file means the default
/// or the environment's value.
fn stall_timeout(settings: &Settings, root: &std::path::Path) -> std::time::Duration {
    let config = config_at(root);
    let from_config = config.as_ref().and_then(|c| c.stall_timeout(settings).ok());
    from_config
        .or_else(|| settings.stall_timeout.clone().and_then(Result::ok))
        .unwrap_or(bridge_store::DEFAULT_STALL_TIMEOUT)
}

/// Finds one task by id, unique id prefix (4+ hex digits) or exact name,
/// among the live tasks, then among the archived ones.
pub fn resolve_task(session: &mut Session, arg: &str) -> CliResult<TaskId> {
    let mut matches = matching_tasks(session, arg);
    if matches.is_empty() && session.load_archived()? > 0 {
        matches = matching_tasks(session, arg);
    }
    match matches.as_slice() {
        [(id, _)] => Ok(id.clone()),
        [] => Err(CliError::hint(
            anyhow!("no task has the id or name `{arg}`"),
            "list tasks with `bridge ls`; run `bridge sync` if it was submitted on another device",
        )),
        many => {
            let names: Vec<String> = many
                .iter()
                .take(5)
                .map(|(id, name)| format!("{} ({name})", id.short()))
                .collect();
            Err(CliError::hint(
                anyhow!("`{arg}` matches {} tasks: {}", many.len(), names.join(", ")),
                "give more digits of the id",
            ))
        }
    }
}

/// The tasks whose id starts with `arg`, else those named `arg`.
fn matching_tasks(session: &Session, arg: &str) -> Vec<(TaskId, String)> {
    let view = session.view();
    let by_id = view.find(arg);
    let matches: Vec<&TaskView> = if by_id.is_empty() {
        view.tasks().filter(|t| t.spec.name == arg).collect()
    } else {
        by_id
    };
    matches
        .into_iter()
        .map(|t| (t.id.clone(), t.spec.name.clone()))
        .collect()
}

/// What a command's target names: one task, the expansions of a matrix
/// entry (`count` for `count[book=alice]`, …), or the tasks of a batch.
pub enum Target {
    Task(TaskId),
    Entry { name: String, tasks: Vec<TaskId> },
    Batch { batch: BatchId, tasks: Vec<TaskId> },
}

impl Target {
    /// The tasks it names, in the view's order.
    pub fn tasks(&self) -> Vec<TaskId> {
        match self {
            Target::Task(id) => vec![id.clone()],
            Target::Entry { tasks, .. } | Target::Batch { tasks, .. } => tasks.clone(),
        }
    }
}

/// Finds what `arg` names: a task (as [`resolve_task`]), else a matrix
/// entry's expansions (tasks named `arg[…]`), else a batch (id or unique
/// prefix, 4+ characters); the task's error otherwise.
pub fn resolve_target(session: &mut Session, arg: &str) -> CliResult<Target> {
    let task_err = match resolve_task(session, arg) {
        Ok(id) => return Ok(Target::Task(id)),
        Err(e) => e,
    };
    // A name that matched several tasks is ambiguous, not an entry.
    if !matching_tasks(session, arg).is_empty() {
        return Err(task_err);
    }
    let entry = format!("{arg}[");
    let mut named: Vec<(&str, &TaskId)> = session
        .view()
        .tasks()
        .filter(|t| t.spec.name.starts_with(&entry) && t.spec.name.ends_with(']'))
        .map(|t| (t.spec.name.as_str(), &t.id))
        .collect();
    named.sort();
    let tasks: Vec<TaskId> = named.into_iter().map(|(_, id)| id.clone()).collect();
    if !tasks.is_empty() {
        return Ok(Target::Entry {
            name: arg.to_owned(),
            tasks,
        });
    }
    if let Some(batch) = resolve_batch(session, arg) {
        let tasks = session
            .view()
            .tasks()
            .filter(|t| t.docs.iter().any(|doc| doc.batch() == &batch))
            .map(|t| t.id.clone())
            .collect();
        return Ok(Target::Batch { batch, tasks });
    }
    Err(task_err)
}

/// For a command about one task (`show`, `logs`): the task `target` (what
/// `arg` names) is, or `None` after listing the tasks of the matrix entry
/// or batch it is instead, with how to pick one (`command` is the
/// command's name).
pub fn one_task_or_list(
    session: &Session,
    target: &Target,
    arg: &str,
    command: &str,
) -> CliResult<Option<TaskId>> {
    let (what, ids) = match target {
        Target::Task(id) => return Ok(Some(id.clone())),
        Target::Entry { name, tasks } => (format!("`{name}` is a matrix entry"), tasks),
        Target::Batch { batch, tasks } => (format!("`{arg}` is batch {}", batch.short()), tasks),
    };
    let example = ids
        .first()
        .and_then(|id| session.view().get(id))
        .map(|t| t.spec.name.clone())
        .unwrap_or_default();
    errln!(
        "{what} of {} task{}; `bridge {command} '{}'` shows one:",
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        crate::output::safe(&example)
    );
    list_tasks(session, ids)?;
    Ok(None)
}

/// Lists the tasks of a matrix entry or a batch: short id, status, name.
pub fn list_tasks(session: &Session, ids: &[TaskId]) -> CliResult<()> {
    let derived = session.view().derive(now_ms(), session.policy);
    let rows: Vec<Vec<String>> = ids
        .iter()
        .filter_map(|id| session.view().get(id))
        .map(|t| {
            vec![
                t.id.short().to_owned(),
                derived
                    .get(&t.id)
                    .map_or("unknown", |d| d.status.as_str())
                    .to_owned(),
                t.spec.name.clone(),
            ]
        })
        .collect();
    crate::output::print_table(&["ID", "STATUS", "NAME"], &rows)
}

/// Finds a batch by id or unique prefix of its id (the short id `ls` and
/// `status` print is one).
pub fn resolve_batch(session: &Session, arg: &str) -> Option<BatchId> {
    let mut found: Vec<BatchId> = session
        .headers()
        .map(|(_, h)| h.batch.clone())
        .filter(|b| b.as_str().starts_with(arg))
        .collect();
    found.sort();
    found.dedup();
    if found.len() == 1 && arg.len() >= 4 {
        found.pop()
    } else {
        None
    }
}

/// What a best-effort sync did.
pub enum SyncOutcome {
    /// No remote is configured.
    NoRemote,
    /// Synced.
    Synced(SyncReport),
    /// The remote is unreachable: work goes on locally.
    Offline(String),
}

/// Syncs the replica with the configured remote. An unreachable remote is
/// not an error here (the caller goes on offline); a remote that is not a
/// store, or another workspace's, is.
pub fn sync_remote(session: &mut Session, show_progress: bool) -> CliResult<SyncOutcome> {
    let Some(spec) = session.ws.remote_spec().map(str::to_owned) else {
        return Ok(SyncOutcome::NoRemote);
    };
    // The remote, and its blob store when apart (both `dir:` folders are
    // told apart the same way: never reached, or gone).
    let blobs = session.ws.config.blobs().map(str::to_owned);
    let stores: Vec<&str> = std::iter::once(spec.as_str())
        .chain(blobs.as_deref())
        .collect();
    let remote = open_remote(&session.ws.settings, &spec, &session.ws.root).map_err(|e| {
        misconfigured(
            anyhow!(e),
            "set `remote` under [store] in bridge.toml to dir:PATH, git:URL or s3://BUCKET/PREFIX",
        )
    })?;
    let bar = progress_bar(show_progress);
    let vault = session.vault.clone();
    let result = crate::sync::sync_store(
        &vault,
        &session.ws.replica,
        remote.as_ref(),
        &mut |p| {
            if let Some(b) = &bar {
                b.set_length(p.total as u64);
                b.set_position(p.done as u64);
            }
        },
        false,
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Ok(report) => {
            mark_reached(&session.ws.root, &stores);
            session.after_sync(&report)?;
            // What was pulled made this device rotate a private batch's
            // key (an audience member left the workspace): push the new
            // grant now, not at the next sync, and only it (the outbox
            // holds what was written since the sync began).
            if session.take_rotated()
                && let Err(e) = bridge_store::push_queued(&session.ws.replica, remote.as_ref())
            {
                tracing::warn!("cannot push the rotated audience grant (the next sync will): {e}");
            }
            Ok(SyncOutcome::Synced(report))
        }
        Err(SyncError::Remote(e @ RemoteError::Unreachable { .. }))
            if let Some(missing) = never_reached_folder(&session.ws.root, &stores) =>
        {
            Err(misconfigured(
                anyhow!(e).context(format!(
                    "the folder of store {missing} does not exist, and this workspace never synced with it"
                )),
                "create it (`mkdir`) or mount the drive that holds it, or fix `remote` (or `blobs`) under [store] in bridge.toml",
            ))
        }
        Err(SyncError::Remote(e)) if e.is_misconfigured() => Err(misconfigured(
            anyhow!(e).context(format!("cannot sync with {spec}")),
            "fix `remote` (or `blobs`, if set) under [store] in bridge.toml, or the access it needs",
        )),
        Err(SyncError::Remote(RemoteError::Unreachable { remote, source }))
            if source.kind() == std::io::ErrorKind::TimedOut =>
        {
            Ok(SyncOutcome::Offline(format!(
                "{remote} did not answer ({source}; set `stall-timeout` under [store] in bridge.toml to wait longer)"
            )))
        }
        Err(SyncError::Remote(RemoteError::Unreachable { remote, source })) => Ok(
            SyncOutcome::Offline(format!("{remote} is unreachable ({source})")),
        ),
        Err(SyncError::Remote(e @ RemoteError::Full { .. })) => {
            // What was pulled before the push failed is in the replica.
            session.refresh()?;
            Ok(SyncOutcome::Offline(format!(
                "{e} (free space there; what it lacks is pushed by the next sync)"
            )))
        }
        Err(e) => Err(CliError::hint(
            anyhow!(e).context(format!("cannot sync with {spec}")),
            format!("check the [store] remote in bridge.toml; {KEPT}"),
        )),
    }
}

/// What every failed sync adds: nothing written here is lost.
const KEPT: &str = "everything written on this device is kept in its replica, and `bridge sync` sends it once the remote works";

/// A remote that is set up wrong (issue 17, item 9): the spec cannot be
/// read, the repository does not exist or refuses the credentials, the
/// folder is not this workspace's store or never existed. Unlike an
/// unreachable remote this is an error, with its own exit code, since
/// waiting does not fix it.
fn misconfigured(error: anyhow::Error, hint: &str) -> CliError {
    CliError::hint(error, format!("{hint}; {KEPT}")).with_code(EXIT_MISCONFIGURED)
}

/// The file in the state folder that holds the stores this workspace last
/// synced with, one spec a line (the remote, and its blob store when
/// `[store] blobs` is set): a `dir:` folder it names and that has gone
/// missing is a drive not mounted (offline), one it does not name never
/// existed (misconfigured).
const REACHED_FILE: &str = "remote-reached";

/// Records that a sync with the stores `specs` went through. Best effort:
/// without the record a missing folder is only reported as misconfigured.
pub fn mark_reached(root: &std::path::Path, specs: &[&str]) {
    let path = root.join(crate::workspace::STATE_DIR).join(REACHED_FILE);
    let record: String = specs.iter().map(|s| format!("{s}\n")).collect();
    if std::fs::read_to_string(&path).is_ok_and(|s| s == record) {
        return;
    }
    // In one step: a torn record would make an unplugged drive look like
    // a folder that never existed.
    if let Err(e) = bridge_store::replace_file(&path, record.as_bytes(), 0o666, false) {
        tracing::debug!("cannot write {}: {e}", path.display());
    }
}

/// The `dir:` store among `specs` whose folder does not exist and that this
/// workspace never synced with, if any.
fn never_reached_folder<'a>(root: &std::path::Path, specs: &[&'a str]) -> Option<&'a str> {
    let path = root.join(crate::workspace::STATE_DIR).join(REACHED_FILE);
    let reached = std::fs::read_to_string(path).unwrap_or_default();
    specs.iter().copied().find(|spec| {
        bridge_store::dir_remote_path(spec, root).is_some_and(|folder| !folder.exists())
            && !reached.lines().any(|line| line == *spec)
    })
}

/// Creates the folder of a new `dir:` store (`bridge init --remote
/// dir:PATH`, issue 17, item 9), but only in a folder that exists: a
/// missing parent may be a drive that is not mounted, and the store would
/// land on the mount point's own disk.
pub fn create_store_folder(folder: &std::path::Path) -> CliResult<()> {
    if folder.is_dir() {
        return Ok(());
    }
    let parent = folder.parent().filter(|p| !p.as_os_str().is_empty());
    if parent.is_some_and(|p| !p.is_dir()) {
        return Err(CliError::hint(
            anyhow!(
                "cannot create the store folder {}: its parent folder does not exist",
                folder.display()
            ),
            "create the parent (`mkdir -p`) or mount the drive, then run `bridge init` again",
        )
        .with_code(EXIT_MISCONFIGURED));
    }
    std::fs::create_dir(folder).map_err(|e| {
        CliError::hint(
            anyhow!(e).context(format!(
                "cannot create the store folder {}",
                folder.display()
            )),
            "pick a folder you may write to",
        )
        .with_code(EXIT_MISCONFIGURED)
    })
}

/// [`sync_and_report`] after this command wrote `what` (`batch 019a…`, `the
/// cancel`): when the remote cannot take it, the error says that it is
/// stored here all the same.
pub fn sync_after_write(session: &mut Session, g: &GlobalArgs, what: &str) -> CliResult<bool> {
    sync_and_report(session, g).map_err(|mut e| {
        e.error = e.error.context(format!(
            "{what} is stored on this device but was not sent to the remote"
        ));
        e
    })
}

/// Syncs if a remote is set and says so on stderr; never fails on an
/// unreachable remote. Returns false when the remote could not be used
/// (unreachable, silent past the stall timeout, full).
pub fn sync_and_report(session: &mut Session, g: &GlobalArgs) -> CliResult<bool> {
    match sync_remote(session, !g.quiet)? {
        SyncOutcome::NoRemote => Ok(true),
        SyncOutcome::Synced(r) => {
            if !g.quiet && (r.pulled > 0 || r.pushed > 0) {
                errln!("synced: {} files pulled, {} pushed", r.pulled, r.pushed);
            }
            Ok(true)
        }
        SyncOutcome::Offline(why) => {
            if !g.quiet {
                errln!(
                    "offline: {why}; saved on this device (its replica), `bridge sync` sends it once the remote is reachable"
                );
            }
            Ok(false)
        }
    }
}

/// The exit code of a sync that found the remote unreachable.
pub const OFFLINE: u8 = EXIT_OFFLINE;

fn progress_bar(show: bool) -> Option<indicatif::ProgressBar> {
    if !show || !crate::output::surroundings().live_stderr {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("sync {bar:30} {pos}/{len} files")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}
