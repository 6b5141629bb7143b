//! [`SmallMap`]: the map type of the model's fields that hold a few
//! entries each (a task's environment, its facts by key, an attempt's
//! outputs and provenance).
//!
//! A `BTreeMap` allocates a node of eleven slots for its first entry: a
//! task's one-variable environment took 540 bytes, a one-attempt map over
//! 3 KB; at 100k tasks these nodes were a third of a `status` process's
//! heap (issue 18, item 3). A [`LiteMap`](litemap::LiteMap) (ICU4X's map
//! over one sorted `Vec`) keeps the same order, lookups and serialised
//! form (a map, keys in order: task ids, JSON and cache bytes unchanged) in
//! the space of its entries.

/// A map of a few entries, in key order, as one sorted `Vec`.
pub type SmallMap<K, V> = litemap::LiteMap<K, V>;
