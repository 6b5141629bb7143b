//! The task model of bridge: what a task is, the facts workers add about it, and
//! the status derived from those facts. No I/O at all: bytes and values in and
//! out, the clock passed in.
//!
//! # Layout
//!
//! - [`ids`]: identifiers ([`TaskId`], [`BatchId`], [`DocId`], [`WriterId`]) and
//!   time-ordered Automerge actor ids.
//! - [`small_map`]: [`SmallMap`], the map of the model's few-entry fields.
//! - [`spec`]: [`TaskSpec`], the immutable description of one task, and the
//!   content hash that gives a task its id.
//! - [`limits`]: the bounds every field of a spec must keep, checked at
//!   submit and again by a worker before it runs a stored task.
//! - [`facts`]: the facts (claims, attempts, cancels, retry grants) that writers
//!   add; each lives under a key its writer owns, so no value is ever written by
//!   two writers.
//! - [`doc`]: the schema of a batch document on Automerge: creating one (the
//!   genesis change), adding facts to it, reading it back into plain values.
//! - [`view`]: the workspace view, the union of every document's tasks, and the
//!   pure status derivation `status(view, now)`.
//!
//! Data flows one way: the store loads documents, [`doc::read_tasks`] turns each
//! into [`doc::TaskRecord`]s, [`view::View`] merges them by task id, and
//! [`view::View::derive`] gives every task its [`Status`]. Writers call the
//! `doc::add_*` functions and save the resulting change as a chunk.
#![warn(missing_docs)]
// Library code never prints (errors and warnings are values, details go
// through `tracing`); the ratchet on long functions (clippy.toml).
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(clippy::too_many_lines)]

pub mod doc;
pub mod facts;
pub mod ids;
pub mod limits;
pub mod small_map;
pub mod spec;
pub mod view;

pub use facts::{Attempt, Claim, Outcome};
pub use ids::{BatchId, DocId, TaskId, WriterId};
pub use limits::SpecError;
pub use small_map::SmallMap;
pub use spec::{Command, InputRef, TaskSpec, first_line};
pub use view::{Policy, Sighting, Sightings, Status, View};

/// Milliseconds since the Unix epoch. Every time in a document is one of these.
pub type Millis = i64;
