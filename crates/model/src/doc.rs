//! The schema of a batch document on Automerge.
//!
//! ```text
//! ROOT
//!   schema: "bridge-batch/1"
//!   batch:  { id, part, parts, created_at, submitted_by, device }
//!   tasks:  { <task-id>: {
//!       spec:     "<json>"                       immutable, hashed into the id
//!       claims:   { <writer>.<n>: { at, lease_until, released_at? } }
//!       attempts: { <writer>.<n>: "<json>" }      immutable, written once
//!       cancels:  { <writer>: at }
//!       retries:  { <writer>.<n>: at }
//!   } }
//! ```
//!
//! Every container is created in the genesis change by the submitter, so
//! later writers only add keys that they own to existing maps: two writers
//! never create the same container concurrently (which would hide one of them
//! behind an Automerge conflict). Immutable values (the spec, an attempt) are
//! one JSON string each: written once by one writer and always read whole, so
//! one op instead of twenty.

use std::collections::{BTreeSet, HashMap};

use automerge::iter::MapRangeItem;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, AutomergeError, ObjId, ObjType, ROOT, ReadDoc, ScalarValueRef, ValueRef,
};

use crate::Millis;
use crate::facts::{Attempt, Claim, Facts, writer_of};
use crate::ids::{BatchId, TaskId, WriterId};
use crate::spec::TaskSpec;

/// The schema tag of a batch document; documents with another are refused.
pub const SCHEMA: &str = "bridge-batch/1";

/// Why a document could not be created, read or written.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// Automerge refused an operation.
    #[error("automerge: {0}")]
    Automerge(#[from] AutomergeError),
    /// The document has no header yet (its genesis change has not arrived) or
    /// a header of another schema.
    #[error("not a bridge batch document ({0})")]
    NotABatch(NotABatch),
    /// The task is not in this document.
    #[error("task {0} is not in this document")]
    NoSuchTask(TaskId),
}

/// The header of a batch document, written once in its genesis change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchHeader {
    /// The batch this document belongs to.
    pub batch: BatchId,
    /// Which part of the batch this document holds, from 0.
    pub part: u32,
    /// How many documents the batch spans.
    pub parts: u32,
    /// When the batch was submitted.
    pub created_at: Millis,
    /// Who submitted it (a member id; a device name until members exist).
    pub submitted_by: String,
    /// The device it was submitted from.
    pub device: String,
    /// For a private batch (issue 13): the hash of its generation-0
    /// audience grant, so that its audience ignores any other generation 0
    /// (a forgery by another member). Written by the submitter in the
    /// genesis, inside the batch's encrypted documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// A task as read from one document: its spec and the facts this document holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskRecord {
    /// The task id (checked against the hash of the spec).
    pub id: TaskId,
    /// The task.
    pub spec: TaskSpec,
    /// Facts about it held in this document.
    pub facts: Facts,
    /// Whether the task was created by a writer allowed to submit. An
    /// untrusted task is shown but never run.
    pub trusted: bool,
    /// The member tag ([`WriterId::member_tag_of`]) of the writer that
    /// created the task in this document: who submitted it here. The store
    /// binds every actor to the member that signed its changes, so, unlike
    /// the header's `submitted_by` (a name the submitter chose), nobody can
    /// claim another member's tasks as theirs or theirs as another's. Each
    /// device decides from it whose tasks it runs (issue 13, item 2).
    pub creator: Option<[u8; 8]>,
}

/// Something wrong inside a document that was skipped while reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The task concerned.
    pub task: String,
    /// What is wrong.
    pub message: String,
}

/// Creates a batch document holding `tasks`, all in one genesis change made
/// by `writer`. The caller saves it (`save()`) as the document's first chunk.
pub fn create(
    writer: &WriterId,
    header: &BatchHeader,
    tasks: &[TaskSpec],
) -> Result<AutoCommit, DocError> {
    let mut doc = AutoCommit::new().with_actor(writer.actor());
    doc.put(ROOT, "schema", SCHEMA)?;
    let h = doc.put_object(ROOT, "batch", ObjType::Map)?;
    doc.put(&h, "id", header.batch.as_str())?;
    doc.put(&h, "part", i64::from(header.part))?;
    doc.put(&h, "parts", i64::from(header.parts))?;
    doc.put(&h, "created_at", header.created_at)?;
    doc.put(&h, "submitted_by", header.submitted_by.as_str())?;
    doc.put(&h, "device", header.device.as_str())?;
    if let Some(grant) = &header.grant {
        doc.put(&h, "grant", grant.as_str())?;
    }
    let map = doc.put_object(ROOT, "tasks", ObjType::Map)?;
    for spec in tasks {
        let task = doc.put_object(&map, spec.id().as_str(), ObjType::Map)?;
        let json = serde_json::to_string(spec).unwrap_or_default();
        doc.put(&task, "spec", json)?;
        for container in ["claims", "attempts", "cancels", "retries"] {
            doc.put_object(&task, container, ObjType::Map)?;
        }
    }
    commit(&mut doc, header.created_at, "submit");
    Ok(doc)
}

/// Closes the pending change with its time (in seconds, as the JS library
/// records it) and a message. Returns the change's hash, or `None` when there
/// was nothing to commit.
pub fn commit(doc: &mut AutoCommit, now: Millis, message: &str) -> Option<automerge::ChangeHash> {
    doc.commit_with(
        CommitOptions::default()
            .with_time(now.div_euclid(1000))
            .with_message(message),
    )
}

/// Why a document is not a batch document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotABatch {
    /// It has no schema (its genesis change has not arrived).
    #[error("no schema")]
    NoSchema,
    /// It has another schema.
    #[error("schema `{0}`")]
    OtherSchema(String),
    /// It has no header.
    #[error("no header")]
    NoHeader,
    /// A field of its header is missing or not of its type.
    #[error("header field `{0}` is missing")]
    MissingField(&'static str),
}

/// Reads the header; `None` until the genesis change has been applied.
pub fn read_header(doc: &AutoCommit) -> Result<BatchHeader, DocError> {
    match get_str(doc, &ROOT, "schema") {
        Some(s) if s == SCHEMA => {}
        Some(other) => return Err(DocError::NotABatch(NotABatch::OtherSchema(other))),
        None => return Err(DocError::NotABatch(NotABatch::NoSchema)),
    }
    let h = get_map(doc, &ROOT, "batch").ok_or(DocError::NotABatch(NotABatch::NoHeader))?;
    let bad = |what: &'static str| DocError::NotABatch(NotABatch::MissingField(what));
    let batch = get_str(doc, &h, "id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("id"))?;
    Ok(BatchHeader {
        batch,
        part: get_int(doc, &h, "part")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| bad("part"))?,
        parts: get_int(doc, &h, "parts")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| bad("parts"))?,
        created_at: get_int(doc, &h, "created_at").ok_or_else(|| bad("created_at"))?,
        submitted_by: get_str(doc, &h, "submitted_by").unwrap_or_default(),
        device: get_str(doc, &h, "device").unwrap_or_default(),
        grant: get_str(doc, &h, "grant"),
    })
}

/// Who may write what, as the store's signatures establish it. The store
/// binds every Automerge actor to the member that signed its changes; the
/// model asks this trait about the roles.
pub trait Authority {
    /// Whether changes by `actor` may submit tasks, cancel them and grant
    /// retries (a member with the `admin` or `submit` role). Claims and
    /// attempts are open to every member, `worker` included.
    fn can_submit(&self, actor: &ActorId) -> bool;
}

/// Trusts every writer: for stores without signatures (tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustAll;

impl Authority for TrustAll {
    fn can_submit(&self, _actor: &ActorId) -> bool {
        true
    }
}

/// Reads every task of the document. A task whose spec does not parse or
/// does not hash to its id is left out and reported as a [`Problem`].
///
/// Facts are read only under keys their writer owns: a claim, attempt or
/// retry grant keyed `<writer>.<n>` counts only when written by actor
/// `<writer>`, a cancel keyed `<writer>` likewise, and cancels and retry
/// grants only from writers allowed to submit. A forged fact is ignored,
/// even when it conflicts with the owner's own value.
pub fn read_tasks(doc: &AutoCommit, authority: &dyn Authority) -> (Vec<TaskRecord>, Vec<Problem>) {
    let maps = Maps::indexed(doc);
    read_tasks_where(doc, &maps, authority, |_| true)
}

/// [`read_tasks`] for the tasks named in `keys` only: after a few changes
/// to a large document, what they touched (see [`touched_tasks`]).
pub fn read_named_tasks(
    doc: &AutoCommit,
    authority: &dyn Authority,
    keys: &BTreeSet<String>,
) -> (Vec<TaskRecord>, Vec<Problem>) {
    read_tasks_where(doc, &Maps::Seek, authority, |key| keys.contains(key))
}

/// How the entries of a map are found: each map looked up in the
/// document (a seek per map: what reading a few tasks needs), or every
/// map's entries gathered in one pass over the whole document first
/// (issue 18, item 3: reading a document of 1000 tasks looks up five
/// maps per task, and a seek each was most of a cold start; one pass
/// over every value takes a fifth of that time).
enum Maps<'a> {
    Seek,
    /// Every map's entries in one list, and where each map's are in it.
    Indexed {
        items: Vec<MapRangeItem<'a>>,
        maps: HashMap<ObjId, std::ops::Range<usize>>,
    },
}

impl<'a> Maps<'a> {
    /// Every map's entries, in one pass ([`ReadDoc::iter`] visits each
    /// object's entries together, in the order `map_range` gives them),
    /// kept in one list rather than a list per map (a tenth of reading a
    /// document was allocating, growing and freeing those).
    fn indexed(doc: &'a AutoCommit) -> Maps<'a> {
        let mut items = Vec::new();
        let mut maps: HashMap<ObjId, std::ops::Range<usize>> = HashMap::new();
        let mut current: Option<(std::sync::Arc<ObjId>, usize)> = None;
        let mut split = false;
        let mut close = |current: Option<(std::sync::Arc<ObjId>, usize)>, end: usize| {
            if let Some((obj, start)) = current {
                split |= maps.insert((*obj).clone(), start..end).is_some();
            }
        };
        for item in doc.iter() {
            let automerge::iter::DocItem::Map(entry) = item.item else {
                continue;
            };
            if current.as_ref().is_none_or(|(obj, _)| **obj != *item.obj) {
                close(current.take(), items.len());
                current = Some((item.obj, items.len()));
            }
            items.push(entry);
        }
        close(current, items.len());
        if split {
            // A map's entries in two places: not how Automerge iterates, but
            // then each map is looked up on its own rather than misread.
            return Maps::Seek;
        }
        Maps::Indexed { items, maps }
    }

    /// The entries of map `obj`, in key order.
    fn entries<'m>(&'m self, doc: &'a AutoCommit, obj: &ObjId) -> Entries<'a, 'm> {
        match self {
            Maps::Seek => Entries::Seek(Box::new(doc.map_range(obj, ..))),
            Maps::Indexed { items, maps } => Entries::Indexed(
                maps.get(obj)
                    .and_then(|range| items.get(range.clone()))
                    .map_or([].iter(), |entries| entries.iter()),
            ),
        }
    }
}

/// The entries of one map ([`Maps::entries`]).
enum Entries<'a, 'm> {
    // Boxed: a range is a kilobyte of cursors, a slice iterator two words.
    Seek(Box<automerge::iter::MapRange<'a>>),
    Indexed(std::slice::Iter<'m, MapRangeItem<'a>>),
}

impl<'a> Iterator for Entries<'a, '_> {
    type Item = MapRangeItem<'a>;
    fn next(&mut self) -> Option<MapRangeItem<'a>> {
        match self {
            Entries::Seek(range) => range.next(),
            Entries::Indexed(items) => items.next().cloned(),
        }
    }
}

/// The tasks that `patches` (from [`AutoCommit::diff_incremental`]) touch,
/// by key; `None` when one touches something else than a task's entry (the
/// header, or the document's root): then read the whole document.
pub fn touched_tasks(patches: &[automerge::Patch]) -> Option<BTreeSet<String>> {
    use automerge::{PatchAction, Prop};
    let mut keys = BTreeSet::new();
    for patch in patches {
        match patch.path.as_slice() {
            [(root, Prop::Map(tasks))] if *root == ROOT && tasks == "tasks" => {
                match &patch.action {
                    PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => {
                        keys.insert(key.clone())
                    }
                    // A conflict or a mark on the tasks map: unknown.
                    _ => return None,
                };
            }
            [(root, Prop::Map(tasks)), (_, Prop::Map(task)), ..]
                if *root == ROOT && tasks == "tasks" =>
            {
                keys.insert(task.clone());
            }
            _ => return None,
        }
    }
    Some(keys)
}

fn read_tasks_where(
    doc: &AutoCommit,
    maps: &Maps<'_>,
    authority: &dyn Authority,
    wanted: impl Fn(&str) -> bool,
) -> (Vec<TaskRecord>, Vec<Problem>) {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    // A writer can create a concurrent `tasks` map (or task entry) to hide
    // the submitter's behind an Automerge conflict: prefer the one a writer
    // allowed to submit created.
    let Some(map) = preferred_map(doc, &ROOT, "tasks", authority) else {
        return (records, problems);
    };
    let mut last_creator: Option<(ActorId, bool, String)> = None;
    for item in doc.map_range(&map, ..) {
        if !wanted(item.key.as_ref()) {
            continue;
        }
        let key = item.key.to_string();
        let problem = |message: String| Problem {
            task: key.clone(),
            message,
        };
        let task_obj = if item.conflict {
            match preferred_map(doc, &map, &key, authority) {
                Some(obj) => obj,
                None => {
                    problems.push(problem("not a map".into()));
                    continue;
                }
            }
        } else {
            let ValueRef::Object(ObjType::Map) = item.value else {
                problems.push(problem("not a map".into()));
                continue;
            };
            item.id()
        };
        // A document's tasks are mostly created by one actor: whether it
        // may submit and its hex are found once per actor in a row (a
        // look-up under the vault's lock and a string per task otherwise).
        let creator = actor_of(&task_obj);
        if creator != last_creator.as_ref().map(|(actor, _, _)| actor) {
            last_creator = creator.map(|a| (a.clone(), authority.can_submit(a), a.to_hex_string()));
        }
        let (trusted, creator_hex) = last_creator
            .as_ref()
            .map_or((false, ""), |(_, trusted, hex)| (*trusted, hex.as_str()));
        match read_task(doc, maps, &task_obj, &key, creator_hex, authority) {
            Ok(mut r) => {
                r.trusted = trusted;
                records.push(r)
            }
            Err(message) => problems.push(problem(message)),
        }
    }
    (records, problems)
}

/// The map at `obj[key]`; among concurrent ones, the first created by a
/// writer allowed to submit (else the first).
fn preferred_map(
    doc: &AutoCommit,
    obj: &ObjId,
    key: &str,
    authority: &dyn Authority,
) -> Option<ObjId> {
    let maps: Vec<ObjId> = doc
        .get_all(obj, key)
        .ok()?
        .into_iter()
        .filter_map(|(v, id)| matches!(v, automerge::Value::Object(ObjType::Map)).then_some(id))
        .collect();
    maps.iter()
        .find(|id| actor_of(id).is_some_and(|a| authority.can_submit(a)))
        .or(maps.first())
        .cloned()
}

fn actor_of(id: &ObjId) -> Option<&ActorId> {
    match id {
        ObjId::Id(_, actor, _) => Some(actor),
        ObjId::Root => None,
    }
}

fn is_owner(id: &ObjId, owner: &str) -> bool {
    actor_of(id).is_some_and(|a| hex_eq(a.to_bytes(), owner))
}

/// Whether `hex` is the lowercase hex of `bytes` (without allocating:
/// this runs for every value read).
fn hex_eq(bytes: &[u8], hex: &str) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let hex = hex.as_bytes();
    hex.len() == 2 * bytes.len()
        && bytes.iter().zip(hex.chunks_exact(2)).all(|(b, h)| {
            h[0] == DIGITS[usize::from(b >> 4)] && h[1] == DIGITS[usize::from(b & 0x0f)]
        })
}

/// The fields of map `obj` named in `keys`, each as written by `owner`
/// (among concurrent values), read in one pass over the map: a field
/// without a conflict is taken as it is when `owner` wrote it; only a
/// conflicting one is looked up again.
fn owned_fields<'a>(
    doc: &'a AutoCommit,
    maps: &Maps<'a>,
    obj: &ObjId,
    keys: &[&str],
    owner: &str,
) -> Vec<Option<(automerge::Value<'static>, ObjId)>> {
    let mut out = vec![None; keys.len()];
    for item in maps.entries(doc, obj) {
        let Some(i) = keys.iter().position(|k| *k == item.key.as_ref()) else {
            continue;
        };
        out[i] = if item.conflict {
            owned(doc, obj, keys[i], owner)
        } else {
            let id = item.id();
            is_owner(&id, owner).then(|| (item.value.into_value(), id))
        };
    }
    out
}

/// The value at `obj[key]` written by `owner`, among concurrent values.
fn owned(
    doc: &AutoCommit,
    obj: &ObjId,
    key: &str,
    owner: &str,
) -> Option<(automerge::Value<'static>, ObjId)> {
    doc.get_all(obj, key)
        .ok()?
        .into_iter()
        .find(|(_, id)| is_owner(id, owner))
        .map(|(v, id)| (v.into_owned(), id))
}

/// Reads task `key` from its map `obj`, created by the actor whose hex is
/// `creator` (empty for none).
#[expect(
    clippy::too_many_lines,
    reason = "reads every field of a stored task; to split per fact kind"
)]
fn read_task<'a>(
    doc: &'a AutoCommit,
    maps: &Maps<'a>,
    obj: &ObjId,
    key: &str,
    creator: &str,
    authority: &dyn Authority,
) -> Result<TaskRecord, String> {
    let id: TaskId = key.parse().map_err(|e| format!("{e}"))?;
    // The spec and the fact containers count only as written by the writer
    // that created the task: another writer's concurrent value is ignored.
    const FIELDS: [&str; 5] = ["spec", "claims", "attempts", "cancels", "retries"];
    let fields = owned_fields(doc, maps, obj, &FIELDS, creator);
    let owned_map = |name: &str| {
        let i = FIELDS.iter().position(|f| *f == name)?;
        match &fields[i] {
            Some((automerge::Value::Object(ObjType::Map), id)) => Some(id.clone()),
            _ => None,
        }
    };
    let json = match &fields[0] {
        Some((automerge::Value::Scalar(s), _)) => s.as_str().map(str::to_owned),
        _ => None,
    }
    .ok_or("the spec is missing, or was overwritten by a writer that did not create the task")?;
    let spec: TaskSpec =
        serde_json::from_str(&json).map_err(|e| format!("the spec does not parse: {e}"))?;
    if spec.id() != id {
        return Err(format!(
            "the spec hashes to {}, not to its id: refused",
            spec.id()
        ));
    }
    let mut facts = Facts::default();
    if let Some(claims) = owned_map("claims") {
        for item in maps.entries(doc, &claims) {
            let key = item.key.to_string();
            let owner = writer_of(&key).to_owned();
            let owner = owner.as_str();
            let c = if item.conflict {
                match owned(doc, &claims, &key, owner) {
                    Some((automerge::Value::Object(ObjType::Map), c)) => c,
                    _ => continue,
                }
            } else {
                match item.value {
                    ValueRef::Object(ObjType::Map) if is_owner(&item.id(), owner) => item.id(),
                    _ => continue,
                }
            };
            let int = |v: &Option<(automerge::Value<'static>, ObjId)>| match v {
                Some((automerge::Value::Scalar(s), _)) => s.as_i64(),
                _ => None,
            };
            let claim = owned_fields(doc, maps, &c, &["at", "lease_until", "released_at"], owner);
            let (Some(at), Some(lease_until)) = (int(&claim[0]), int(&claim[1])) else {
                continue;
            };
            facts.claims.insert(
                key.clone(),
                Claim {
                    key,
                    at,
                    lease_until,
                    released_at: int(&claim[2]),
                },
            );
        }
    }
    if let Some(attempts) = owned_map("attempts") {
        for item in maps.entries(doc, &attempts) {
            let key = item.key.to_string();
            let owner = writer_of(&key).to_owned();
            let owner = owner.as_str();
            let json = if item.conflict {
                match owned(doc, &attempts, &key, owner) {
                    Some((automerge::Value::Scalar(s), _)) => s.as_str().map(str::to_owned),
                    _ => None,
                }
            } else {
                match &item.value {
                    ValueRef::Scalar(ScalarValueRef::Str(s)) if is_owner(&item.id(), owner) => {
                        Some(s.to_string())
                    }
                    _ => None,
                }
            };
            if let Some(a) = json.and_then(|j| serde_json::from_str::<Attempt>(&j).ok())
                && a.key == key
            {
                facts.attempts.insert(key, a);
            }
        }
    }
    for (name, target) in [
        ("cancels", &mut facts.cancels),
        ("retries", &mut facts.retries),
    ] {
        if let Some(m) = owned_map(name) {
            for item in maps.entries(doc, &m) {
                let key = item.key.to_string();
                let owner = writer_of(&key).to_owned();
                let owner = owner.as_str();
                let Some((automerge::Value::Scalar(s), by)) = owned(doc, &m, &key, owner) else {
                    continue;
                };
                if !actor_of(&by).is_some_and(|a| authority.can_submit(a)) {
                    continue;
                }
                if let Some(at) = s.as_i64() {
                    target.insert(key, at);
                }
            }
        }
    }
    Ok(TaskRecord {
        id,
        spec,
        facts,
        trusted: true,
        creator: actor_of(obj).and_then(|a| WriterId::member_tag_of(a.to_bytes())),
    })
}

fn task_container(doc: &AutoCommit, task: &TaskId, name: &str) -> Result<ObjId, DocError> {
    let map = get_map(doc, &ROOT, "tasks").ok_or(DocError::NoSuchTask(task.clone()))?;
    let t = get_map(doc, &map, task.as_str()).ok_or(DocError::NoSuchTask(task.clone()))?;
    get_map(doc, &t, name).ok_or(DocError::NoSuchTask(task.clone()))
}

/// Adds a claim (or renews one: the same key, a later lease).
pub fn put_claim(doc: &mut AutoCommit, task: &TaskId, claim: &Claim) -> Result<(), DocError> {
    put_claims(doc, [(task, claim)], ClaimWrite::NewOrRenewed)
}

/// What [`put_claims`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimWrite {
    /// Claims under keys never written before (a worker's fresh keys).
    New,
    /// Claims that may exist already (renewed or released).
    NewOrRenewed,
}

/// [`put_claim`] for many claims in one change: the tasks' map is looked
/// up once, and for [`ClaimWrite::New`] no claim is looked for first. A
/// window's claims were about a tenth of a worker's own CPU time on short
/// tasks, half of it in these look-ups (issue 18, item 1).
pub fn put_claims<'a>(
    doc: &mut AutoCommit,
    claims: impl IntoIterator<Item = (&'a TaskId, &'a Claim)>,
    kind: ClaimWrite,
) -> Result<(), DocError> {
    let mut tasks = None;
    for (task, claim) in claims {
        let tasks = match &tasks {
            Some(t) => t,
            None => tasks
                .insert(get_map(doc, &ROOT, "tasks").ok_or(DocError::NoSuchTask(task.clone()))?),
        };
        let t = get_map(doc, tasks, task.as_str()).ok_or(DocError::NoSuchTask(task.clone()))?;
        let container = get_map(doc, &t, "claims").ok_or(DocError::NoSuchTask(task.clone()))?;
        let existing = match kind {
            ClaimWrite::New => None,
            ClaimWrite::NewOrRenewed => get_map(doc, &container, &claim.key),
        };
        let c = match existing {
            Some(c) => c,
            None => {
                let c = doc.put_object(&container, claim.key.as_str(), ObjType::Map)?;
                doc.put(&c, "at", claim.at)?;
                c
            }
        };
        doc.put(&c, "lease_until", claim.lease_until)?;
        if let Some(at) = claim.released_at {
            doc.put(&c, "released_at", at)?;
        }
    }
    Ok(())
}

/// Records an attempt (once; its key is the claim's).
pub fn put_attempt(doc: &mut AutoCommit, task: &TaskId, attempt: &Attempt) -> Result<(), DocError> {
    let attempts = task_container(doc, task, "attempts")?;
    let json = serde_json::to_string(attempt).unwrap_or_default();
    doc.put(&attempts, attempt.key.as_str(), json)?;
    Ok(())
}

/// Records that `writer` cancelled the task at `at`. A writer's cancel only
/// ever moves earlier: the earliest cancel counts (as in [`Facts::union`]), so
/// a view that re-reads the document agrees with one that reads it afresh.
pub fn put_cancel(
    doc: &mut AutoCommit,
    task: &TaskId,
    writer: &WriterId,
    at: Millis,
) -> Result<(), DocError> {
    let cancels = task_container(doc, task, "cancels")?;
    if get_int(doc, &cancels, writer.as_str()).is_some_and(|earlier| earlier <= at) {
        return Ok(());
    }
    doc.put(&cancels, writer.as_str(), at)?;
    Ok(())
}

/// Records a retry grant under `key` (`<writer>.<n>`).
pub fn put_retry(
    doc: &mut AutoCommit,
    task: &TaskId,
    key: &str,
    at: Millis,
) -> Result<(), DocError> {
    let retries = task_container(doc, task, "retries")?;
    doc.put(&retries, key, at)?;
    Ok(())
}

fn get_map(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key).ok()?? {
        (automerge::Value::Object(ObjType::Map), id) => Some(id),
        _ => None,
    }
}

fn get_str(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok()?? {
        (automerge::Value::Scalar(s), _) => s.as_str().map(str::to_owned),
        _ => None,
    }
}

fn get_int(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<i64> {
    match doc.get(obj, key).ok()?? {
        (automerge::Value::Scalar(s), _) => s.as_i64(),
        _ => None,
    }
}
