//! Packs (issue 18, item 2): on a remote, the small blobs of one put travel
//! and rest as one file, `packs/<sha256>.pack`, instead of a file each. A
//! thousand task logs or inputs of a few hundred bytes were a thousand
//! files (a 4 KB block each on a disk, a request each on an object store,
//! a tree entry each in git); in a pack they are one.
//!
//! [`Packed`] wraps any [`Remote`] and keeps the file-level contract: its
//! listing names every blob, loose or packed; reading a packed blob reads
//! its pack; removing one rewrites its pack without it (the new pack is put
//! before the old one goes, so nothing is lost midway). Sync, publishing,
//! compaction and gc see blobs as before. A replica never holds packs: what
//! it pulls it stores loose, as always.
//!
//! ```text
//! b"BRIDGE-PACK-1\n"
//! u32 big-endian count
//! count × (32-byte sha256 of the entry, u64 big-endian length), by hash
//! the entries' bytes, in that order
//! ```
//!
//! A pack is content-addressed like every store file, and each entry is a
//! blob whose name is its own sha256: an index is built only from a pack
//! whose bytes hash to its name, and an entry whose bytes do not hash to
//! its hash is left out of the listing (a hostile store cannot make a
//! writer believe a blob is stored when it is not). Blobs are already
//! sealed, so a pack shows the host nothing a loose blob did not: their
//! sizes. Indexes are kept in a local folder: a pack never changes, so its
//! index is read from the remote once per device.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::names::{self, BLOB_EXT, BLOBS_DIR, PACK_EXT, PACKS_DIR, StoreName};
use crate::remote::{PutBatch, Remote, RemoteError};

/// The first bytes of every pack.
pub const PACK_MAGIC: &[u8] = b"BRIDGE-PACK-1\n";
/// Blobs of at most this many bytes (sealed) go into packs; larger ones
/// stay files of their own, where one read fetches one blob.
pub const PACKED_BLOB_MAX: usize = 256 * 1024;
/// A put's small blobs past this many bytes start another pack (less on
/// a remote whose largest object is smaller: [`Packed::with_max_object`]).
pub const PACK_TARGET_BYTES: usize = 8 << 20;
/// Compaction merges the packs below half of [`PACK_TARGET_BYTES`] once
/// there are more than this many.
pub const MERGE_PACKS_OVER: usize = 8;

const ENTRY_HEADER: usize = 32 + 8;

/// A store file: its name and bytes.
type StoreFile = (String, Vec<u8>);
/// A pack read: its store name and bytes, shared with the recent ones.
type PackBytes = (String, Arc<Vec<u8>>);

/// One blob in a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The blob's hash (its store name is `blobs/<hash>.blob`).
    hash: String,
    offset: usize,
    len: usize,
}

/// What is known of a pack: its entries, and its size.
#[derive(Debug)]
struct Index {
    entries: Vec<Entry>,
    /// Each entry's place in `entries`, by hash.
    positions: HashMap<String, usize>,
    bytes: usize,
}

impl Index {
    fn new(entries: Vec<Entry>, bytes: usize) -> Index {
        let positions = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.hash.clone(), i))
            .collect();
        Index {
            entries,
            positions,
            bytes,
        }
    }

    /// The entry of the blob of store name `name`, if the pack holds it.
    fn entry_of(&self, name: &str) -> Option<&Entry> {
        let hash = StoreName::parse(name)?.hash()?;
        self.positions.get(hash).map(|&i| &self.entries[i])
    }
}

/// How many bytes of packs a handle keeps after reading them: a sync pulls
/// a pack's blobs in batches of a few hundred, each of which would read the
/// whole pack again.
const RECENT_PACK_BYTES: usize = 64 << 20;

/// A [`Remote`] whose small blobs are kept in packs (see the module doc).
pub struct Packed {
    inner: Box<dyn Remote>,
    /// The largest pack written, and the largest blob packed.
    target: usize,
    packed_max: usize,
    /// Where pack indexes are kept between processes (`None`: memory only).
    index_dir: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Every pack whose index is known, by store name.
    indexes: HashMap<String, Arc<Index>>,
    /// The packs holding each packed blob (store name), as of the last
    /// listing or put.
    located: HashMap<String, BTreeSet<String>>,
    /// Whether `located` comes from a listing (else from puts only).
    listed: bool,
    /// The packs read last, newest at the end, at most
    /// [`RECENT_PACK_BYTES`] in all.
    recent: Vec<PackBytes>,
}

impl Packed {
    /// Wraps `inner`; pack indexes are kept in `index_dir` when given.
    pub fn new(inner: Box<dyn Remote>, index_dir: Option<PathBuf>) -> Packed {
        Packed {
            inner,
            target: PACK_TARGET_BYTES,
            packed_max: PACKED_BLOB_MAX,
            index_dir,
            state: Mutex::new(State::default()),
        }
    }

    /// Keeps every pack within `max_object` bytes (a git host's largest
    /// object, `[store] max-object`): packs of at most half of it, of blobs
    /// of at most a quarter of that.
    #[must_use]
    pub fn with_max_object(mut self, max_object: u64) -> Packed {
        let half = usize::try_from(max_object / 2).unwrap_or(usize::MAX);
        self.target = self.target.min(half);
        self.packed_max = self.packed_max.min(self.target / 4);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The indexes of `packs`, reading from the remote (in one call) those
    /// neither in memory nor in the index folder. A pack that does not read
    /// or hash to its name has no index (and no blob listed from it).
    fn indexes(&self, packs: &[&String]) -> Result<Vec<(String, Arc<Index>)>, RemoteError> {
        let mut known = Vec::new();
        let mut missing = Vec::new();
        {
            let state = self.state();
            for &pack in packs {
                match state.indexes.get(pack) {
                    Some(index) => known.push((pack.clone(), index.clone())),
                    None => missing.push(pack.clone()),
                }
            }
        }
        let mut to_read = Vec::new();
        for pack in missing {
            match self.load_index(&pack) {
                Some(index) => known.push((pack, Arc::new(index))),
                None => to_read.push(pack),
            }
        }
        for (pack, bytes) in self.read_each(&to_read)? {
            match index_of_verified(&pack, &bytes) {
                Ok(index) => {
                    self.save_index(&pack, &index);
                    known.push((pack, Arc::new(index)));
                }
                Err(why) => tracing::warn!(pack, why, "pack skipped"),
            }
        }
        let mut state = self.state();
        for (pack, index) in &known {
            state.indexes.insert(pack.clone(), index.clone());
        }
        Ok(known)
    }

    /// Reads `packs` in one call; when that fails for one file (too large,
    /// not a file: a hostile or damaged store), one by one, skipping the
    /// files that fail with a warning, so that a bad pack costs its own
    /// blobs and not every sync.
    fn read_each(&self, packs: &[String]) -> Result<Vec<StoreFile>, RemoteError> {
        match self.inner.read_many(packs) {
            Err(e) if !e.is_remote_wide() => Ok(packs
                .iter()
                .filter_map(|pack| match self.inner.read(pack) {
                    Ok(bytes) => Some((pack.clone(), bytes)),
                    Err(e) => {
                        tracing::warn!(pack, "pack skipped: {e}");
                        None
                    }
                })
                .collect()),
            other => other,
        }
    }

    fn index_path(&self, pack: &str) -> Option<PathBuf> {
        let hash = StoreName::parse(pack)?.hash()?;
        Some(self.index_dir.as_ref()?.join(format!("{hash}.idx")))
    }

    /// An index kept by an earlier process (one line per entry: hash,
    /// offset, length; then the pack's size).
    fn load_index(&self, pack: &str) -> Option<Index> {
        let text = std::fs::read_to_string(self.index_path(pack)?).ok()?;
        let mut lines = text.lines();
        let bytes = lines.next()?.parse().ok()?;
        let mut entries = Vec::new();
        for line in lines {
            let mut parts = line.split(' ');
            let hash = parts.next()?.to_owned();
            hash.parse::<names::BlobId>().ok()?;
            let offset = parts.next()?.parse().ok()?;
            let len = parts.next()?.parse().ok()?;
            entries.push(Entry { hash, offset, len });
        }
        Some(Index::new(entries, bytes))
    }

    fn save_index(&self, pack: &str, index: &Index) {
        let Some(path) = self.index_path(pack) else {
            return;
        };
        let mut text = format!("{}\n", index.bytes);
        for e in &index.entries {
            text.push_str(&format!("{} {} {}\n", e.hash, e.offset, e.len));
        }
        let saved = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| crate::replace_file(&path, text.as_bytes(), 0o644, false));
        if let Err(e) = saved {
            tracing::debug!(path = %path.display(), "pack index not kept: {e}");
        }
    }

    /// The packs that hold blob `name`, as last seen (listing the remote
    /// first if this handle never did).
    fn packs_of(&self, name: &str) -> BTreeSet<String> {
        let listed = self.state().listed;
        if !listed && let Err(e) = self.list() {
            tracing::debug!("cannot list the packs: {e}");
        }
        self.state().located.get(name).cloned().unwrap_or_default()
    }

    fn note(&self, pack: &str, index: Arc<Index>) {
        self.save_index(pack, &index);
        let mut state = self.state();
        for e in &index.entries {
            state
                .located
                .entry(blob_name(&e.hash))
                .or_default()
                .insert(pack.to_owned());
        }
        state.indexes.insert(pack.to_owned(), index);
    }

    /// Reads the blobs `names` out of their packs (one read per pack).
    fn read_packed(&self, names: &[String]) -> Result<(Vec<StoreFile>, Vec<String>), RemoteError> {
        let mut by_pack: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        let mut loose = Vec::new();
        for name in names {
            match self.packs_of(name).into_iter().next() {
                Some(pack) => by_pack.entry(pack).or_default().push(name),
                None => loose.push(name.clone()),
            }
        }
        let packs: Vec<String> = by_pack.keys().cloned().collect();
        let mut found = Vec::new();
        for (pack, bytes) in self.pack_bytes(&packs)? {
            let index = self.state().indexes.get(&pack).cloned();
            for name in by_pack.remove(&pack).into_iter().flatten() {
                let content = index
                    .as_ref()
                    .and_then(|i| i.entry_of(name))
                    .and_then(|e| bytes.get(e.offset..e.offset + e.len));
                match content {
                    Some(content) => found.push((name.clone(), content.to_vec())),
                    None => loose.push(name.clone()),
                }
            }
        }
        // A blob whose pack no longer reads (it went since the listing)
        // may be loose: asked for as such.
        loose.extend(by_pack.into_values().flatten().cloned());
        Ok((found, loose))
    }

    /// The bytes of `packs`: those read lately from memory, the others
    /// from the remote (then kept, within [`RECENT_PACK_BYTES`]).
    fn pack_bytes(&self, packs: &[String]) -> Result<Vec<PackBytes>, RemoteError> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        {
            let state = self.state();
            for pack in packs {
                match state.recent.iter().find(|(n, _)| n == pack) {
                    Some((_, bytes)) => out.push((pack.clone(), bytes.clone())),
                    None => missing.push(pack.clone()),
                }
            }
        }
        let read = self.read_each(&missing)?;
        let mut state = self.state();
        for (pack, bytes) in read {
            let bytes = Arc::new(bytes);
            state.recent.push((pack.clone(), bytes.clone()));
            out.push((pack, bytes));
        }
        let mut total: usize = state.recent.iter().map(|(_, b)| b.len()).sum();
        while total > RECENT_PACK_BYTES && state.recent.len() > 1 {
            total -= state.recent.remove(0).1.len();
        }
        Ok(out)
    }

    /// Rewrites the packs holding some of `names` without them, and puts
    /// the new packs before the old ones are removed. Returns the old packs.
    fn unpack(&self, names: &BTreeSet<&String>) -> Result<Vec<String>, RemoteError> {
        let packs: BTreeSet<String> = names.iter().flat_map(|n| self.packs_of(n)).collect();
        if packs.is_empty() {
            return Ok(Vec::new());
        }
        let packs: Vec<String> = packs.into_iter().collect();
        let mut survivors: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut readable = Vec::new();
        for (pack, bytes) in self.read_each(&packs)? {
            let index = match index_of_verified(&pack, &bytes) {
                Ok(index) => index,
                Err(why) => {
                    // Not ours to judge blob by blob: left as it is.
                    tracing::warn!(pack, why, "pack not rewritten");
                    continue;
                }
            };
            for e in &index.entries {
                let name = blob_name(&e.hash);
                if !names.contains(&name) {
                    survivors.insert(name, bytes[e.offset..e.offset + e.len].to_vec());
                }
            }
            readable.push(pack);
        }
        let blobs: Vec<(String, Vec<u8>)> = survivors.into_iter().collect();
        let new_packs = build_packs(&blobs, self.target);
        if !new_packs.is_empty() {
            self.inner.put(&new_packs)?;
            for (pack, bytes) in &new_packs {
                if let Ok(index) = index_of_verified(pack, bytes) {
                    self.note(pack, Arc::new(index));
                }
            }
        }
        // A rewrite equal to an old pack (nothing of it removed) stays.
        readable.retain(|p| !new_packs.iter().any(|(n, _)| n == p));
        Ok(readable)
    }
}

impl Remote for Packed {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    /// The inner listing, with each pack replaced by the blobs it holds.
    fn list(&self) -> Result<BTreeSet<String>, RemoteError> {
        let inner = self.inner.list()?;
        let packs: Vec<&String> = inner.iter().filter(|n| is_pack(n)).collect();
        let indexes = self.indexes(&packs)?;
        let mut out: BTreeSet<String> = inner.iter().filter(|n| !is_pack(n)).cloned().collect();
        let mut located: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (pack, index) in &indexes {
            for e in &index.entries {
                let name = blob_name(&e.hash);
                located
                    .entry(name.clone())
                    .or_default()
                    .insert(pack.clone());
                out.insert(name);
            }
        }
        let mut state = self.state();
        state.located = located;
        state.listed = true;
        Ok(out)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, RemoteError> {
        let (mut found, _) = self.read_packed(&[name.to_owned()])?;
        match found.pop() {
            Some((_, bytes)) => Ok(bytes),
            None => self.inner.read(name),
        }
    }

    fn push_stats(&self) -> Option<crate::git::PushStats> {
        self.inner.push_stats()
    }

    fn put_batch(&self) -> PutBatch {
        self.inner.put_batch()
    }

    fn read_many(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>, RemoteError> {
        let (mut found, loose) = self.read_packed(names)?;
        found.extend(self.inner.read_many(&loose)?);
        // In the order asked.
        let order: HashMap<&String, usize> =
            names.iter().enumerate().map(|(i, n)| (n, i)).collect();
        found.sort_by_key(|(n, _)| order.get(n).copied().unwrap_or(usize::MAX));
        Ok(found)
    }

    /// Puts the small blobs among `files` as packs, the rest as they are,
    /// in one inner put (one commit and push on git).
    fn put(&self, files: &[(String, Vec<u8>)]) -> Result<(), RemoteError> {
        // Refused as the inner remote would, before anything is written.
        for (name, bytes) in files {
            let parsed = StoreName::parse(name).ok_or_else(|| RemoteError::InvalidName {
                remote: self.describe(),
                name: name.clone(),
            })?;
            if parsed.hash().is_some_and(|h| names::sha256_hex(bytes) != h) {
                return Err(RemoteError::HashMismatch {
                    remote: self.describe(),
                    name: name.clone(),
                });
            }
        }
        // A small blob a pack already holds (equal content stored by
        // another device: blobs are convergent) is not packed again; the
        // inner remote keeps an existing loose file by itself.
        let kept: Vec<&StoreFile> = {
            let state = self.state();
            files
                .iter()
                .filter(|(name, _)| state.located.get(name).is_none_or(BTreeSet::is_empty))
                .collect()
        };
        let (small, other): (Vec<&StoreFile>, Vec<&StoreFile>) = kept
            .iter()
            .partition(|(name, bytes)| is_blob(name) && bytes.len() <= self.packed_max);
        if small.len() < 2 {
            if kept.len() == files.len() {
                return self.inner.put(files);
            }
            let kept: Vec<StoreFile> = kept.into_iter().cloned().collect();
            return if kept.is_empty() {
                Ok(())
            } else {
                self.inner.put(&kept)
            };
        }
        let small: Vec<StoreFile> = small.into_iter().cloned().collect();
        let packs = build_packs(&small, self.target);
        let mut all: Vec<StoreFile> = other.into_iter().cloned().collect();
        all.extend(packs.iter().cloned());
        self.inner.put(&all)?;
        for (pack, bytes) in &packs {
            if let Ok(index) = index_of_verified(pack, bytes) {
                self.note(pack, Arc::new(index));
            }
        }
        Ok(())
    }

    /// Removes loose files as the inner remote does, and packed blobs by
    /// rewriting their packs without them.
    fn remove(&self, names: &[String]) -> Result<usize, RemoteError> {
        let packed: BTreeSet<&String> = names
            .iter()
            .filter(|n| !self.packs_of(n).is_empty())
            .collect();
        let old_packs = self.unpack(&packed)?;
        let mut inner: Vec<String> = names.to_vec();
        inner.extend(old_packs.iter().cloned());
        let left = self.inner.remove(&inner)?;
        let mut state = self.state();
        for pack in &old_packs {
            state.indexes.remove(pack);
        }
        for set in state.located.values_mut() {
            set.retain(|p| !old_packs.contains(p));
        }
        for name in &packed {
            state.located.remove(*name);
        }
        Ok(left)
    }

    /// Merges the small packs into one once there are more than
    /// [`MERGE_PACKS_OVER`] (put first, then the old ones removed).
    /// Returns how many packs were merged away.
    fn repack(&self) -> Result<usize, RemoteError> {
        let inner = self.inner.list()?;
        let packs: Vec<&String> = inner.iter().filter(|n| is_pack(n)).collect();
        let small: Vec<String> = self
            .indexes(&packs)?
            .into_iter()
            .filter(|(_, index)| index.bytes < self.target / 2)
            .map(|(pack, _)| pack)
            .collect();
        if small.len() <= MERGE_PACKS_OVER {
            return Ok(0);
        }
        let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut merged = Vec::new();
        for (pack, bytes) in self.read_each(&small)? {
            let Ok(index) = index_of_verified(&pack, &bytes) else {
                continue;
            };
            for e in &index.entries {
                blobs.insert(
                    blob_name(&e.hash),
                    bytes[e.offset..e.offset + e.len].to_vec(),
                );
            }
            merged.push(pack);
        }
        let blobs: Vec<(String, Vec<u8>)> = blobs.into_iter().collect();
        let new_packs = build_packs(&blobs, self.target);
        self.inner.put(&new_packs)?;
        merged.retain(|p| !new_packs.iter().any(|(n, _)| n == p));
        self.inner.remove(&merged)?;
        let mut state = self.state();
        for pack in &merged {
            state.indexes.remove(pack);
        }
        drop(state);
        for (pack, bytes) in &new_packs {
            if let Ok(index) = index_of_verified(pack, bytes) {
                self.note(pack, Arc::new(index));
            }
        }
        Ok(merged.len())
    }
}

fn is_pack(name: &str) -> bool {
    matches!(StoreName::parse(name), Some(StoreName::Pack { .. }))
}

fn is_blob(name: &str) -> bool {
    matches!(StoreName::parse(name), Some(StoreName::Blob { .. }))
}

fn blob_name(hash: &str) -> String {
    format!("{BLOBS_DIR}/{hash}{BLOB_EXT}")
}

/// Packs `blobs` (store names and bytes), in hash order, each pack's
/// blobs up to `target` bytes. The same blobs always give the same packs.
fn build_packs(blobs: &[StoreFile], target: usize) -> Vec<StoreFile> {
    let mut sorted: Vec<(&str, &[u8])> = blobs
        .iter()
        .filter_map(|(name, bytes)| {
            let hash = StoreName::parse(name)?.hash()?;
            Some((hash, bytes.as_slice()))
        })
        .collect();
    sorted.sort_by_key(|(hash, _)| *hash);
    sorted.dedup_by_key(|(hash, _)| *hash);
    let mut packs = Vec::new();
    let mut group: Vec<(&str, &[u8])> = Vec::new();
    let mut size = 0;
    for (hash, bytes) in sorted {
        if !group.is_empty() && size + bytes.len() > target {
            packs.push(encode(&group));
            group.clear();
            size = 0;
        }
        size += bytes.len();
        group.push((hash, bytes));
    }
    if !group.is_empty() {
        packs.push(encode(&group));
    }
    packs
}

/// One pack of `entries` (hash, bytes; sorted by hash), and its store name.
fn encode(entries: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let body: usize = entries.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(PACK_MAGIC.len() + 4 + entries.len() * ENTRY_HEADER + body);
    out.extend_from_slice(PACK_MAGIC);
    // A put never carries 4 billion blobs (every one has a 64-byte name).
    out.extend_from_slice(
        &u32::try_from(entries.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for (hash, bytes) in entries {
        let mut raw = [0u8; 32];
        // Hashes come from parsed store names: 64 hex digits.
        let _ = hex::decode_to_slice(hash, &mut raw);
        out.extend_from_slice(&raw);
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    }
    for (_, bytes) in entries {
        out.extend_from_slice(bytes);
    }
    let name = format!("{PACKS_DIR}/{}{PACK_EXT}", names::sha256_hex(&out));
    (name, out)
}

/// The index of pack `name` from its bytes: they must hash to the name;
/// entries whose bytes do not hash to their hash are left out.
fn index_of_verified(name: &str, bytes: &[u8]) -> Result<Index, &'static str> {
    let expected = StoreName::parse(name)
        .and_then(|n| n.hash())
        .ok_or("not a pack name")?;
    if names::sha256_hex(bytes) != expected {
        return Err("its content does not hash to its name");
    }
    let rest = bytes.strip_prefix(PACK_MAGIC).ok_or("not a bridge pack")?;
    let (count, mut rest) = rest.split_first_chunk::<4>().ok_or("truncated")?;
    let count = u32::from_be_bytes(*count) as usize;
    let mut offset = PACK_MAGIC.len() + 4 + count.checked_mul(ENTRY_HEADER).ok_or("truncated")?;
    let mut entries = Vec::with_capacity(count.min(bytes.len() / ENTRY_HEADER));
    for _ in 0..count {
        let (head, tail) = rest.split_at_checked(ENTRY_HEADER).ok_or("truncated")?;
        rest = tail;
        let hash = hex::encode(&head[..32]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&head[32..]);
        let len = usize::try_from(u64::from_be_bytes(len)).map_err(|_| "truncated")?;
        let end = offset.checked_add(len).ok_or("truncated")?;
        let content = bytes.get(offset..end).ok_or("truncated")?;
        if hex::encode(Sha256::digest(content)) == hash {
            entries.push(Entry { hash, offset, len });
        } else {
            tracing::warn!(
                pack = name,
                blob = hash,
                "a pack entry does not hash to its name; left out"
            );
        }
        offset = end;
    }
    Ok(Index::new(entries, bytes.len()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::remote::MemRemote;

    fn mem() -> (Arc<MemRemote>, Packed) {
        let mem = Arc::new(MemRemote::new());
        let packed = Packed::new(Box::new(mem.clone()), None);
        (mem, packed)
    }

    fn blob(content: &[u8]) -> (String, Vec<u8>) {
        (blob_name(&names::sha256_hex(content)), content.to_vec())
    }

    #[test]
    fn a_put_of_small_blobs_is_one_pack_that_lists_and_reads_as_blobs() {
        let (mem, packed) = mem();
        let files: Vec<_> = (0..50u32)
            .map(|i| blob(format!("log {i}").as_bytes()))
            .collect();
        let big = blob(&vec![7u8; PACKED_BLOB_MAX + 1]);
        let mut all = files.clone();
        all.push(big.clone());
        packed.put(&all).unwrap();

        let inner = mem.list().unwrap();
        assert_eq!(inner.iter().filter(|n| is_pack(n)).count(), 1, "{inner:?}");
        assert!(inner.contains(&big.0), "a large blob stays loose");
        let listed = packed.list().unwrap();
        for (name, bytes) in &all {
            assert!(listed.contains(name));
            assert_eq!(&packed.read(name).unwrap(), bytes);
        }
        assert!(!listed.iter().any(|n| is_pack(n)));
        let names: Vec<String> = all.iter().rev().map(|(n, _)| n.clone()).collect();
        let many = packed.read_many(&names).unwrap();
        assert_eq!(many.len(), names.len());
        assert!(
            many.iter().zip(&names).all(|((a, _), b)| a == b),
            "in the order asked"
        );

        // A fresh process (no memory) reads a packed blob before listing,
        // and lists the same.
        let again = Packed::new(Box::new(mem), None);
        assert_eq!(again.read(&files[7].0).unwrap(), files[7].1);
        assert_eq!(again.list().unwrap(), listed);
    }

    /// A remote that counts the reads of pack files.
    struct Counting {
        inner: Arc<MemRemote>,
        pack_reads: std::sync::atomic::AtomicUsize,
    }

    impl Remote for Counting {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn list(&self) -> Result<BTreeSet<String>, RemoteError> {
            self.inner.list()
        }
        fn read(&self, name: &str) -> Result<Vec<u8>, RemoteError> {
            if is_pack(name) {
                self.pack_reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.inner.read(name)
        }
        fn put(&self, files: &[StoreFile]) -> Result<(), RemoteError> {
            self.inner.put(files)
        }
        fn remove(&self, names: &[String]) -> Result<usize, RemoteError> {
            self.inner.remove(names)
        }
    }

    #[test]
    fn a_pack_read_in_batches_is_fetched_once() {
        let (mem, packed) = mem();
        let files: Vec<_> = (0..600u32)
            .map(|i| blob(format!("b{i}").as_bytes()))
            .collect();
        packed.put(&files).unwrap();
        let counting = Arc::new(Counting {
            inner: mem,
            pack_reads: std::sync::atomic::AtomicUsize::new(0),
        });
        let fresh = Packed::new(Box::new(counting.clone()), None);
        let names: Vec<String> = fresh.list().unwrap().into_iter().collect();
        let reads_to_list = counting
            .pack_reads
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(reads_to_list, 1);
        let mut got = 0;
        for batch in names.chunks(256) {
            got += fresh.read_many(batch).unwrap().len();
        }
        assert_eq!(got, 600);
        assert_eq!(
            counting
                .pack_reads
                .load(std::sync::atomic::Ordering::Relaxed),
            reads_to_list + 1,
            "three batches, one read of the pack"
        );
    }

    #[test]
    fn a_blob_already_in_a_pack_is_not_packed_again() {
        let (mem, packed) = mem();
        let files: Vec<_> = (0..4u32).map(|i| blob(&[i as u8; 10])).collect();
        packed.put(&files).unwrap();
        // Another device (a fresh handle that listed) stores two of the same
        // and two new ones.
        let other = Packed::new(Box::new(mem.clone()), None);
        other.list().unwrap();
        let mut again = files[..2].to_vec();
        again.push(blob(b"new one"));
        again.push(blob(b"new two"));
        other.put(&again).unwrap();
        let packs: Vec<_> = mem
            .list()
            .unwrap()
            .into_iter()
            .filter(|n| is_pack(n))
            .collect();
        assert_eq!(packs.len(), 2);
        let second: Vec<_> = packs
            .iter()
            .map(|p| {
                index_of_verified(p, &mem.read(p).unwrap())
                    .unwrap()
                    .entries
                    .len()
            })
            .collect();
        assert!(second.contains(&2) && second.contains(&4), "{second:?}");
        assert_eq!(Packed::new(Box::new(mem), None).list().unwrap().len(), 6);
    }

    #[test]
    fn removing_a_packed_blob_rewrites_its_pack_and_keeps_the_others() {
        let (mem, packed) = mem();
        let files: Vec<_> = (0..5u32).map(|i| blob(&[i as u8; 10])).collect();
        packed.put(&files).unwrap();
        packed.list().unwrap();
        packed.remove(&[files[1].0.clone()]).unwrap();
        let listed = Packed::new(Box::new(mem.clone()), None).list().unwrap();
        assert!(!listed.contains(&files[1].0));
        for f in files.iter().filter(|f| f.0 != files[1].0) {
            assert!(listed.contains(&f.0), "{listed:?}");
        }
        assert_eq!(mem.list().unwrap().iter().filter(|n| is_pack(n)).count(), 1);
        // Removing the rest removes the pack.
        let rest: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
        packed.remove(&rest).unwrap();
        assert!(!mem.list().unwrap().iter().any(|n| is_pack(n) || is_blob(n)));
    }

    #[test]
    fn a_tampered_pack_lists_nothing_and_a_bad_entry_is_left_out() {
        let mem = Arc::new(MemRemote::new());
        let files: Vec<_> = (0..3u32).map(|i| blob(&[i as u8; 10])).collect();
        let (name, mut bytes) = build_packs(&files, PACK_TARGET_BYTES).remove(0);
        // Under its own name, a changed byte: the pack is not used.
        let mut changed = bytes.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        mem.overwrite(&name, changed);
        assert!(
            Packed::new(Box::new(mem.clone()), None)
                .list()
                .unwrap()
                .iter()
                .all(|n| !is_blob(n))
        );
        // Renamed to its new hash, the pack is valid but its last entry is
        // not what it says: only the first two are listed.
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let renamed = format!("{PACKS_DIR}/{}{PACK_EXT}", names::sha256_hex(&bytes));
        let fresh = Arc::new(MemRemote::new());
        fresh.put(&[(renamed, bytes)]).unwrap();
        let listed = Packed::new(Box::new(fresh), None).list().unwrap();
        assert_eq!(
            listed.iter().filter(|n| is_blob(n)).count(),
            2,
            "{listed:?}"
        );
    }

    #[test]
    fn a_pack_too_large_to_read_costs_its_own_blobs_only() {
        let dir = tempfile::tempdir().unwrap();
        let packed = Packed::new(Box::new(crate::DirRemote::new(dir.path().to_owned())), None);
        let files: Vec<_> = (0..3u32).map(|i| blob(&[i as u8; 10])).collect();
        packed.put(&files).unwrap();
        std::fs::create_dir_all(dir.path().join(PACKS_DIR)).unwrap();
        let huge = std::fs::File::create(
            dir.path()
                .join(format!("{PACKS_DIR}/{}{PACK_EXT}", "a".repeat(64))),
        )
        .unwrap();
        huge.set_len(names::MAX_PACK_BYTES + 1).unwrap();
        let fresh = Packed::new(Box::new(crate::DirRemote::new(dir.path().to_owned())), None);
        let listed = fresh.list().unwrap();
        for (name, bytes) in &files {
            assert!(listed.contains(name));
            assert_eq!(&fresh.read(name).unwrap(), bytes);
        }
    }

    #[test]
    fn repack_merges_many_small_packs_into_one() {
        let (mem, packed) = mem();
        let mut all = Vec::new();
        for round in 0..(MERGE_PACKS_OVER as u32 + 2) {
            let files: Vec<_> = (0..3u32)
                .map(|i| blob(format!("round {round} blob {i}").as_bytes()))
                .collect();
            packed.put(&files).unwrap();
            all.extend(files);
        }
        let count = |m: &Arc<MemRemote>| m.list().unwrap().iter().filter(|n| is_pack(n)).count();
        assert_eq!(count(&mem), MERGE_PACKS_OVER + 2);
        assert_eq!(packed.repack().unwrap(), MERGE_PACKS_OVER + 2);
        assert_eq!(count(&mem), 1);
        let fresh = Packed::new(Box::new(mem.clone()), None);
        let listed = fresh.list().unwrap();
        for (name, bytes) in &all {
            assert!(listed.contains(name));
            assert_eq!(&fresh.read(name).unwrap(), bytes);
        }
        assert_eq!(packed.repack().unwrap(), 0, "nothing left to merge");
    }

    #[test]
    fn packs_stay_within_a_small_object_limit() {
        let mem = Arc::new(MemRemote::new());
        let packed = Packed::new(Box::new(mem.clone()), None).with_max_object(4000);
        let files: Vec<_> = (0..20u32).map(|i| blob(&[i as u8; 300])).collect();
        let big = blob(&[9u8; 600]);
        let mut all = files.clone();
        all.push(big.clone());
        packed.put(&all).unwrap();
        let inner = mem.list().unwrap();
        assert!(inner.contains(&big.0), "over a quarter of a pack: loose");
        let packs: Vec<_> = inner.iter().filter(|n| is_pack(n)).collect();
        assert!(packs.len() >= 3, "{packs:?}");
        for p in packs {
            assert!(mem.read(p).unwrap().len() <= 4000);
        }
        assert_eq!(packed.list().unwrap().len(), 21);
    }

    #[test]
    fn indexes_are_kept_between_processes() {
        let mem = Arc::new(MemRemote::new());
        let dir = tempfile::tempdir().unwrap();
        let packed = Packed::new(Box::new(mem.clone()), Some(dir.path().to_owned()));
        let files: Vec<_> = (0..4u32).map(|i| blob(&[i as u8; 3])).collect();
        packed.put(&files).unwrap();
        let listed = packed.list().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let again = Packed::new(Box::new(mem), Some(dir.path().to_owned()));
        assert_eq!(again.list().unwrap(), listed);
        assert_eq!(again.read(&files[2].0).unwrap(), files[2].1);
    }
}
