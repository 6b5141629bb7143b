//! Whose tasks this device runs: `[worker] run-tasks-from` in
//! `.bridge/config.toml` (in bridge.toml for runners: see
//! [`crate::workspace::DeviceConfig`]),
//! or `--run-tasks-from` for one run (issue 13, item 2).
//!
//! A task is code that runs on the device that claims it. Every member with
//! the `admin` or `submit` role may submit tasks; lending a laptop to each of
//! them is a choice its owner makes, not something joining a pool implies.
//! So each device lists whose tasks it claims:
//!
//! - `self`: this device's own member;
//! - `admins`: members with the admin role in the roster's latest epoch;
//! - `members`: every member allowed to submit (admin or submit role);
//! - a member's name, as in the roster.
//!
//! The default depends on this device's own role (see [`default_entries`]).
//!
//! A task's submitter is the member that created it in its batch document:
//! the store binds every Automerge actor to the member that signed its
//! changes, and the actor carries that member's tag (see
//! `TaskView::submitters`). The header's `submitted_by` is a name the
//! submitter wrote and is never used for this.
//!
//! Everything that decides whether this device would run a task asks
//! [`TaskPolicy::refusal`], the one place the decision is made: the worker
//! loop before claiming, and `ls`, `status` and `show` when they mark tasks
//! left for other devices. A refused task is not claimed and gets no
//! attempt: it stays pending for the devices whose policy accepts it.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use bridge_crypto::{MemberId, Role, Roster};
use bridge_model::Status;
use bridge_model::view::TaskView;

use crate::vault::member_tag;

/// Why a `run-tasks-from` list given to this process cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The list (from `--run-tasks-from` or `BRIDGE_RUN_TASKS_FROM`) has an
    /// entry that is not one.
    #[error("{}{}: {reason}", origin.prefix(), crate::text::safe(list))]
    BadList {
        /// Where the list came from.
        origin: ListOrigin,
        /// The list as given.
        list: String,
        /// What is wrong with it.
        reason: RunFromError,
    },
}

/// Where a `run-tasks-from` list was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrigin {
    /// `--run-tasks-from`.
    Flag,
    /// `BRIDGE_RUN_TASKS_FROM`.
    Env,
}

impl ListOrigin {
    /// How messages name it, before the list.
    fn prefix(self) -> &'static str {
        match self {
            ListOrigin::Flag => "--run-tasks-from ",
            ListOrigin::Env => concat!("BRIDGE_RUN_TASKS_FROM", "="),
        }
    }
}

/// One entry of `run-tasks-from`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunFrom {
    /// `self`: this device's own member.
    Myself,
    /// `admins`: members with the admin role in the latest epoch.
    Admins,
    /// `members`: every member allowed to submit, in the latest epoch.
    Members,
    /// A member's name in the roster.
    Named(String),
}

/// Entries that look like a keyword misspelt, with the one meant. They are
/// refused rather than taken for member names: `admin` meaning "the
/// admins" must not silently match nobody.
const NEAR_MISSES: &[(&str, &str)] = &[
    ("admin", "admins"),
    ("member", "members"),
    ("all", "members"),
    ("everyone", "members"),
    ("anyone", "members"),
    ("*", "members"),
    ("me", "self"),
    ("myself", "self"),
];

impl RunFrom {
    /// Parses one entry. The error says what is wrong and what to write.
    pub fn parse(entry: &str) -> Result<RunFrom, RunFromError> {
        match entry {
            "self" => return Ok(RunFrom::Myself),
            "admins" => return Ok(RunFrom::Admins),
            "members" => return Ok(RunFrom::Members),
            _ => {}
        }
        if entry.trim().is_empty() {
            return Err(RunFromError::Empty);
        }
        if entry.trim() != entry || entry.chars().any(char::is_control) {
            return Err(RunFromError::Untrimmed {
                entry: entry.to_owned(),
            });
        }
        if entry.contains(',') {
            return Err(RunFromError::Comma {
                entry: entry.to_owned(),
            });
        }
        if let Some((_, meant)) = NEAR_MISSES
            .iter()
            .find(|(miss, _)| miss.eq_ignore_ascii_case(entry))
        {
            return Err(RunFromError::NearMiss {
                entry: entry.to_owned(),
                meant,
            });
        }
        Ok(RunFrom::Named(entry.to_owned()))
    }

    /// Parses a comma-separated list (`--run-tasks-from self,alice`).
    pub fn parse_list(list: &str) -> Result<Vec<RunFrom>, RunFromError> {
        if list.trim().is_empty() {
            return Ok(Vec::new());
        }
        list.split(',').map(|e| RunFrom::parse(e.trim())).collect()
    }
}

/// Why a `run-tasks-from` entry is not one; the message says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunFromError {
    /// A blank entry.
    #[error("an entry is empty; write \"self\", \"admins\", \"members\" or a member's name")]
    Empty,
    /// Spaces around the entry, or control characters in it.
    #[error(
        "`{}` has spaces around it or control characters; write the member's name as `bridge members list` shows it",
        crate::text::safe(.entry)
    )]
    Untrimmed {
        /// The entry as written.
        entry: String,
    },
    /// Several entries in one string.
    #[error(
        "`{}` holds a comma; list one entry per string, e.g. [\"self\", \"admins\"]",
        crate::text::safe(.entry)
    )]
    Comma {
        /// The entry as written.
        entry: String,
    },
    /// A near miss of a keyword (`admin`, `all`, `me`, …).
    #[error(
        "`{}` is not an entry; did you mean \"{meant}\"? (entries are \"self\", \"admins\", \"members\" or a member's name)",
        crate::text::safe(.entry)
    )]
    NearMiss {
        /// The entry as written.
        entry: String,
        /// The keyword it is close to.
        meant: &'static str,
    },
}

impl fmt::Display for RunFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunFrom::Myself => f.write_str("self"),
            RunFrom::Admins => f.write_str("admins"),
            RunFrom::Members => f.write_str("members"),
            RunFrom::Named(name) => f.write_str(&crate::text::safe(name)),
        }
    }
}

/// The default `run-tasks-from` of a device whose own role is `role`.
///
/// - A runner (`worker` role, a CI runner key): `members`. It exists to
///   drain the pool, and holds nothing but its own key, which cannot submit
///   anything; a runner that ran only some members' tasks would leave the
///   others waiting forever.
/// - A person's device (`admin` or `submit` role): `self` and `admins`:
///   your own tasks, and those of the people who run the pool (they can
///   already change who is in it, so running their tasks gives them nothing
///   they could not take). Running every member's code on your laptop is a
///   choice you make by writing `members` or their names.
pub fn default_entries(role: Option<Role>) -> Vec<RunFrom> {
    match role {
        Some(Role::Worker) => vec![RunFrom::Members],
        _ => vec![RunFrom::Myself, RunFrom::Admins],
    }
}

/// Why this device does not run a task: it is left for other devices.
///
/// Only the submitter is decided here; the sandbox and data placement parts
/// of issue 13 add their reasons (a task this device cannot confine, a
/// requirement it does not meet, a private batch it cannot read) as more
/// variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The task's submitter is not among the members `run-tasks-from`
    /// accepts.
    Submitter {
        /// The submitter's name in the roster.
        name: String,
    },
}

impl Refusal {
    /// A short machine-readable kind, for `--json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Submitter { .. } => "submitter",
        }
    }

    /// The refusal as `ls --json`, `show --json` print it:
    /// `{"reason": "submitter", "submitter": NAME, "message": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "reason": self.kind(),
            "message": self.to_string(),
        });
        match self {
            Refusal::Submitter { name } => v["submitter"] = serde_json::json!(name),
        }
        v
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Submitter { name } => write!(
                f,
                "submitter {} is not in run-tasks-from",
                crate::text::safe(name)
            ),
        }
    }
}

/// A member as the policy knows it.
#[derive(Debug, Clone)]
struct Known {
    name: String,
    accepted: bool,
}

/// This device's decision on whose tasks it runs, resolved against a
/// roster: built per claim window (the roster may change while a worker
/// runs) and by the commands that show tasks.
#[derive(Debug, Clone)]
pub struct TaskPolicy {
    entries: Vec<RunFrom>,
    defaulted: bool,
    /// Every member of every epoch, by actor tag: their latest name, and
    /// whether their tasks are accepted.
    members: HashMap<[u8; 8], Known>,
    /// Named entries no member of the latest epoch has.
    unknown: Vec<String>,
}

impl TaskPolicy {
    /// The policy of member `me` under `roster`: `entries`, or (when
    /// `None`) the default for `me`'s role in the latest epoch.
    pub fn new(entries: Option<&[RunFrom]>, roster: &Roster, me: &MemberId) -> TaskPolicy {
        let latest = roster.latest();
        let defaulted = entries.is_none();
        let entries = match entries {
            Some(e) => e.to_vec(),
            None => default_entries(latest.member(me).map(|m| m.role)),
        };
        let mut members: HashMap<[u8; 8], Known> = HashMap::new();
        // Oldest first, so that a member's latest name wins; a removed
        // member keeps a name (for messages) and is accepted by nothing but
        // `self`.
        for epoch in roster.epochs() {
            for m in &epoch.members {
                members.insert(
                    member_tag(&m.id()),
                    Known {
                        name: m.name.clone(),
                        accepted: false,
                    },
                );
            }
        }
        for m in &latest.members {
            let id = m.id();
            let accepted = entries.iter().any(|e| match e {
                RunFrom::Myself => id == *me,
                RunFrom::Admins => m.role == Role::Admin,
                RunFrom::Members => m.role.can_submit(),
                RunFrom::Named(name) => *name == m.name,
            });
            if let Some(k) = members.get_mut(&member_tag(&id)) {
                k.accepted = accepted;
            }
        }
        if entries.contains(&RunFrom::Myself)
            && let Some(k) = members.get_mut(&member_tag(me))
        {
            k.accepted = true;
        }
        let unknown = entries
            .iter()
            .filter_map(|e| match e {
                RunFrom::Named(name) if latest.member_by_name(name).is_none() => Some(name.clone()),
                _ => None,
            })
            .collect();
        TaskPolicy {
            entries,
            defaulted,
            members,
            unknown,
        }
    }

    /// Why this device would not run `task`, or `None` when it would (as
    /// far as whose task it is goes: status and labels are the caller's).
    /// A task submitted by several members (the same spec in several
    /// batches) is run when any of them is accepted: each asked for exactly
    /// this code.
    pub fn refusal(&self, task: &TaskView) -> Option<Refusal> {
        if task.submitters.is_empty() {
            // No member allowed to submit created it: it is `untrusted` and
            // never runs, whatever this policy says.
            return (task.trusted).then(|| Refusal::Submitter {
                name: "an unknown member".into(),
            });
        }
        if task
            .submitters
            .iter()
            .any(|tag| self.members.get(tag).is_some_and(|k| k.accepted))
        {
            return None;
        }
        let name = task
            .submitters
            .iter()
            .map(|tag| match self.members.get(tag) {
                Some(k) => k.name.clone(),
                None => format!("an unknown member ({})", hex::encode(tag)),
            })
            .min()
            .unwrap_or_default();
        Some(Refusal::Submitter { name })
    }

    /// Why a task shown with `status` is left for other devices: the
    /// [`refusal`](Self::refusal) of a pending task, `None` for any other
    /// status (a running or finished task is nobody's to claim).
    pub fn left_for_others(&self, task: &TaskView, status: Status) -> Option<Refusal> {
        (status == Status::Pending)
            .then(|| self.refusal(task))
            .flatten()
    }

    /// The named entries that no member of the latest epoch has (the roster
    /// may not be synced yet, or the name is misspelt).
    pub fn unknown_names(&self) -> &[String] {
        &self.unknown
    }

    /// The entries in force, and whether they are the default.
    pub fn setting(&self) -> Setting {
        Setting {
            entries: self.entries.iter().map(ToString::to_string).collect(),
            default: self.defaulted,
        }
    }
}

/// The `run-tasks-from` in force, for messages and `--json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    /// The entries, as written.
    pub entries: Vec<String>,
    /// Whether they are the default for this device's role (nothing set).
    pub default: bool,
}

impl fmt::Display for Setting {
    /// As a bridge.toml line would write it: `["self", "admins"] (the
    /// default)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.entries.iter().map(|e| format!("\"{e}\"")).collect();
        write!(f, "[{}]", list.join(", "))?;
        if self.default {
            f.write_str(" (the default)")?;
        }
        Ok(())
    }
}

/// The environment variable that sets `run-tasks-from` for this device
/// (over bridge.toml, which every device of a workspace usually shares;
/// under `--run-tasks-from`): the same comma-separated list as the flag.
pub const RUN_TASKS_FROM_ENV: &str = "BRIDGE_RUN_TASKS_FROM";

/// The entries in force: `flag`, else `BRIDGE_RUN_TASKS_FROM`, else the
/// workspace's setting for this device (`.bridge/config.toml`, and on a
/// runner bridge.toml's: see [`crate::workspace::DeviceConfig`]), else
/// `None` (the default for this device's role).
pub fn entries(
    ws: &crate::workspace::Workspace,
    runner: bool,
    flag: Option<&str>,
) -> Result<Option<Vec<RunFrom>>, PolicyError> {
    let configured = ws.worker_policy(runner).run_tasks_from.map(|entries| {
        entries
            .iter()
            .filter_map(|e| RunFrom::parse(e).ok())
            .collect()
    });
    entries_with(configured, flag, ws.settings.run_tasks_from.clone())
}

fn entries_with(
    configured: Option<Vec<RunFrom>>,
    flag: Option<&str>,
    env: Option<String>,
) -> Result<Option<Vec<RunFrom>>, PolicyError> {
    let (list, origin) = match (flag, &env) {
        (Some(list), _) => (list, ListOrigin::Flag),
        (None, Some(list)) => (list.as_str(), ListOrigin::Env),
        (None, None) => return Ok(configured),
    };
    RunFrom::parse_list(list)
        .map(Some)
        .map_err(|reason| PolicyError::BadList {
            origin,
            list: list.to_owned(),
            reason,
        })
}

impl crate::workspace::Session {
    /// This device's [`TaskPolicy`] under the roster it holds now:
    /// `entries`, or (when `None`) the default for its role.
    pub fn task_policy(&self, entries: Option<&[RunFrom]>) -> TaskPolicy {
        TaskPolicy::new(
            entries,
            self.vault.roster(),
            self.vault.identity().member_id(),
        )
    }

    /// The [`TaskPolicy`] of the workspace's runners, as `bridge dispatch`
    /// counts the work they would take: bridge.toml's `run-tasks-from`
    /// (which a runner's checkout holds; not this device's environment),
    /// else a runner's default, for a runner (worker role) of the latest
    /// epoch. `None` when the workspace has no runner.
    pub fn runner_task_policy(&self) -> Option<TaskPolicy> {
        let roster = self.vault.roster();
        let runner = roster
            .latest()
            .members
            .iter()
            .find(|m| m.role == Role::Worker)?;
        Some(TaskPolicy::new(
            self.ws.config.run_tasks_from().as_deref(),
            roster,
            &runner.id(),
        ))
    }

    /// Whether this device's member (validly) submitted `task`.
    pub fn is_own_task(&self, task: &TaskView) -> bool {
        task.submitters
            .contains(&member_tag(self.vault.identity().member_id()))
    }

    /// Whether this device is a runner (its member has the worker role).
    pub fn is_runner(&self) -> bool {
        self.vault
            .me()
            .is_ok_and(|m| m.role == bridge_crypto::Role::Worker)
    }

    /// This device's [`TaskPolicy`] as its settings make it (what `ls`,
    /// `status` and `show` mark tasks by), without a flag.
    pub fn configured_task_policy(&self) -> Result<TaskPolicy, PolicyError> {
        Ok(self.task_policy(entries(&self.ws, self.is_runner(), None)?.as_deref()))
    }
}

/// The warning for named entries the roster does not know, once per name.
pub fn warn_unknown_names(policy: &TaskPolicy, warned: &mut BTreeSet<String>) {
    for name in policy.unknown_names() {
        if warned.insert(name.clone()) {
            tracing::warn!(
                "run-tasks-from names `{}`, but no member of the roster has that name (not synced yet, or misspelt? see `bridge members list`); no task is run for it",
                crate::text::safe(name)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use bridge_crypto::{Identity, Member};
    use bridge_model::{DocId, TaskSpec};

    use super::*;

    struct Pool {
        roster: Roster,
        ids: HashMap<&'static str, MemberId>,
    }

    /// alice (admin, the root), carol (admin), bob (submit), dave (submit,
    /// then removed), ci (worker).
    fn pool() -> Pool {
        let alice = Identity::generate().expect("key");
        let (mut roster, _) = Roster::genesis(&alice, "alice", "ws", 1).expect("genesis");
        let mut ids = HashMap::from([("alice", alice.member_id().clone())]);
        for (name, role) in [
            ("carol", Role::Admin),
            ("bob", Role::Submit),
            ("dave", Role::Submit),
            ("ci", Role::Worker),
        ] {
            let key = Identity::generate().expect("key");
            ids.insert(name, key.member_id().clone());
            let member = Member {
                name: name.into(),
                key: key.public(),
                role,
            };
            roster = roster.add_member(&alice, member, 2).expect("add").0;
        }
        roster = roster
            .remove_member(&alice, "dave", BTreeSet::new(), 3)
            .expect("remove")
            .0;
        Pool { roster, ids }
    }

    fn task(pool: &Pool, submitters: &[&str]) -> TaskView {
        let spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "name": "t",
            "command": {"shell": {"shell": "sh", "script": "true"}},
            "timeout_s": 5,
        }))
        .expect("spec");
        let doc = DocId::new(bridge_model::BatchId::new(1, [1; 10]), 0);
        let mut tags: Vec<[u8; 8]> = submitters
            .iter()
            .map(|n| member_tag(&pool.ids[n]))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        TaskView {
            id: spec.id(),
            spec,
            docs: vec![doc.clone()],
            created_at: 1,
            origin: doc,
            facts: Default::default(),
            trusted: !submitters.is_empty(),
            origin_trusted: !submitters.is_empty(),
            submitters: tags,
        }
    }

    /// Who `entries` (or the default) lets `me` run tasks of.
    fn accepted(pool: &Pool, entries: Option<&[RunFrom]>, me: &str) -> Vec<&'static str> {
        let policy = TaskPolicy::new(entries, &pool.roster, &pool.ids[me]);
        let mut names: Vec<&'static str> = ["alice", "carol", "bob", "dave", "ci"]
            .into_iter()
            .filter(|n| policy.refusal(&task(pool, &[n])).is_none())
            .collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn issue13_the_default_depends_on_the_devices_role() {
        let p = pool();
        // A person's device: itself and the admins.
        assert_eq!(accepted(&p, None, "bob"), ["alice", "bob", "carol"]);
        assert_eq!(accepted(&p, None, "alice"), ["alice", "carol"]);
        // A runner: every member allowed to submit, not the removed one,
        // not the runner itself.
        assert_eq!(accepted(&p, None, "ci"), ["alice", "bob", "carol"]);
        let bobs = TaskPolicy::new(None, &p.roster, &p.ids["alice"]).refusal(&task(&p, &["bob"]));
        assert_eq!(bobs, Some(Refusal::Submitter { name: "bob".into() }));
        assert_eq!(
            bobs.map(|r| r.to_string()).as_deref(),
            Some("submitter bob is not in run-tasks-from")
        );
    }

    #[test]
    fn issue13_each_entry_accepts_whom_it_names() {
        let p = pool();
        use RunFrom::*;
        assert_eq!(accepted(&p, Some(&[Myself]), "bob"), ["bob"]);
        assert_eq!(accepted(&p, Some(&[Admins]), "bob"), ["alice", "carol"]);
        assert_eq!(
            accepted(&p, Some(&[Members]), "alice"),
            ["alice", "bob", "carol"]
        );
        assert_eq!(accepted(&p, Some(&[Named("bob".into())]), "alice"), ["bob"]);
        // A removed member's name matches nobody, and is reported.
        let policy = TaskPolicy::new(Some(&[Named("dave".into())]), &p.roster, &p.ids["alice"]);
        assert!(policy.refusal(&task(&p, &["dave"])).is_some());
        assert_eq!(policy.unknown_names(), ["dave".to_owned()]);
        // Nobody at all: this device runs no task.
        assert!(accepted(&p, Some(&[]), "alice").is_empty());
    }

    #[test]
    fn issue13_a_task_of_several_submitters_runs_when_one_is_accepted() {
        let p = pool();
        let policy = TaskPolicy::new(Some(&[RunFrom::Myself]), &p.roster, &p.ids["alice"]);
        assert_eq!(policy.refusal(&task(&p, &["bob", "alice"])), None);
        assert_eq!(
            policy.refusal(&task(&p, &["carol", "bob"])),
            Some(Refusal::Submitter { name: "bob".into() })
        );
        // An untrusted task (no submitter) is not this policy's business.
        assert_eq!(policy.refusal(&task(&p, &[])), None);
    }

    #[test]
    fn issue13_the_flag_wins_over_the_environment_over_bridge_toml() {
        let text = "[workspace]\nid = \"w\"\nroot = \"mf5a6ee7bbb99c11ec7b743a2\"\n[worker]\nrun-tasks-from = [\"admins\"]\n";
        let config = crate::workspace::Config::parse_str(text, std::path::Path::new("bridge.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let got = |flag: Option<&str>, env: Option<&str>| {
            entries_with(config.run_tasks_from(), flag, env.map(str::to_owned))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(got(None, None), Some(vec![RunFrom::Admins]));
        assert_eq!(got(None, Some("members")), Some(vec![RunFrom::Members]));
        assert_eq!(
            got(Some("self"), Some("members")),
            Some(vec![RunFrom::Myself])
        );
        assert_eq!(got(Some(""), None), Some(vec![]));
        let Err(e) = entries_with(config.run_tasks_from(), None, Some("all".into())) else {
            panic!("refused")
        };
        assert!(
            e.to_string()
                .starts_with("BRIDGE_RUN_TASKS_FROM=all: `all` is not an entry"),
            "{e}"
        );
        assert!(matches!(
            e,
            PolicyError::BadList {
                origin: ListOrigin::Env,
                ..
            }
        ));
    }

    #[test]
    fn issue13_entries_parse_or_say_what_to_write() {
        assert_eq!(
            RunFrom::parse_list("self, admins,bob-laptop"),
            Ok(vec![
                RunFrom::Myself,
                RunFrom::Admins,
                RunFrom::Named("bob-laptop".into())
            ])
        );
        assert_eq!(RunFrom::parse_list(""), Ok(vec![]));
        for (bad, says) in [
            ("admin", "did you mean \"admins\""),
            ("Everyone", "did you mean \"members\""),
            ("me", "did you mean \"self\""),
            ("", "an entry is empty"),
            (" bob", "spaces around it"),
            ("a,b", "holds a comma"),
        ] {
            let e = RunFrom::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn entry_errors_carry_the_entry_and_the_keyword_meant() {
        assert_eq!(
            RunFrom::parse("Admin"),
            Err(RunFromError::NearMiss {
                entry: "Admin".into(),
                meant: "admins"
            })
        );
        assert_eq!(RunFrom::parse("  "), Err(RunFromError::Empty));
        assert_eq!(
            RunFrom::parse_list("self,bob\x07"),
            Err(RunFromError::Untrimmed {
                entry: "bob\x07".into()
            })
        );
        // Shown safely: a control character cannot reach the terminal.
        assert_eq!(
            RunFrom::parse("a,\x1b").map_err(|e| e.to_string()),
            Err("`a,\\u{1b}` has spaces around it or control characters; write the member's name as `bridge members list` shows it".into())
        );
        assert_eq!(
            RunFrom::parse("a,b").map_err(|e| e.to_string()),
            Err(
                "`a,b` holds a comma; list one entry per string, e.g. [\"self\", \"admins\"]"
                    .into()
            )
        );
    }
}
