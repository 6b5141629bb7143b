//! git tree objects: where a store file goes in a slot's tree
//! ([`git_path`], the fan-out by hash prefix) and back ([`store_name_of`]),
//! parsing a raw tree ([`parse_tree`]), flattening the trees of a commit
//! into its store files ([`flatten_tree`]), and reading them from the cache
//! repository level by level, within [`MAX_TREE_BYTES`](super::MAX_TREE_BYTES).
//!
//! A hashed store file (a blob, a chunk, a snapshot) lies one folder below
//! its store name's, in a folder named after the first two hex digits of
//! its hash: `blobs/<hash>.blob` is at `blobs/ab/<hash>.blob`,
//! `chunks/<doc>/<hash>.chunk` at `chunks/<doc>/ab/<hash>.chunk`. GitHub
//! recommends at most 3,000 entries per folder; 256 folders of evenly
//! spread hashes hold about 700,000 files before the fullest passes 3,000
//! (a million would need a second level). Only the git tree path changes:
//! store names, the other remotes and the replica are as before, and the
//! flat layout of older stores is still read.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::parse::{parse_batch_check, parse_cat_file_batch};
use super::{GitRemote, MAX_TREE_BYTES};
use crate::names::StoreName;
use crate::remote::{Remote as _, RemoteError};

/// How deep below a root tree a store file's folder can be
/// (`chunks/<doc>/<fan-out>/`).
pub(super) const MAX_TREE_DEPTH: usize = 3;

/// Hex digits of a hash naming a file's fan-out folder.
const FAN_OUT_DIGITS: usize = 2;

/// Where the store file `name` goes in a slot's tree: hashed files one
/// folder down, in the folder named by their hash's first two digits;
/// `FORMAT` and `workspace` at their names.
pub(crate) fn git_path(name: &str) -> Cow<'_, str> {
    let hash = StoreName::parse(name).and_then(|n| n.hash());
    match (
        hash.and_then(|h| h.get(..FAN_OUT_DIGITS)),
        name.rsplit_once('/'),
    ) {
        (Some(fan), Some((dir, file))) => Cow::Owned(format!("{dir}/{fan}/{file}")),
        _ => Cow::Borrowed(name),
    }
}

/// The store name of the file at `path` in a slot's tree, fanned out
/// ([`git_path`]) or flat (stores written before the fan-out); `None` for
/// anything else, including a file in the wrong fan-out folder.
pub(crate) fn store_name_of(path: &str) -> Option<String> {
    if StoreName::parse(path).is_some() {
        return Some(path.to_owned());
    }
    let (dir_fan, file) = path.rsplit_once('/')?;
    let (dir, fan) = dir_fan.rsplit_once('/')?;
    let name = format!("{dir}/{file}");
    let fits = StoreName::parse(&name)?.hash()?.get(..FAN_OUT_DIGITS) == Some(fan);
    fits.then_some(name)
}

/// One entry of a git tree object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeEntry {
    pub(crate) name: String,
    pub(crate) oid: String,
    pub(crate) kind: EntryKind,
}

/// What a tree entry points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file (mode 100644 or 100755).
    File,
    /// A subtree (mode 40000).
    Tree,
    /// A symbolic link or a submodule: never a store file.
    Other,
}

/// A raw tree object (`<mode> SP <name> NUL <oid bytes>`, repeated) →
/// its entries; `oid_len` is the length of a binary object id.
pub(crate) fn parse_tree(bytes: &[u8], oid_len: usize) -> Result<Vec<TreeEntry>, String> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| format!("no mode in entry {}", entries.len()))?;
        let nul = rest
            .iter()
            .position(|b| *b == 0)
            .filter(|nul| *nul > space)
            .ok_or_else(|| format!("no name in entry {}", entries.len()))?;
        let end = nul + 1 + oid_len;
        if rest.len() < end {
            return Err(format!("entry {} is truncated", entries.len()));
        }
        let kind = match &rest[..space] {
            b"100644" | b"100755" => EntryKind::File,
            b"40000" => EntryKind::Tree,
            _ => EntryKind::Other,
        };
        let name = String::from_utf8_lossy(&rest[space + 1..nul]).into_owned();
        let oid = rest[nul + 1..end]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        entries.push(TreeEntry { name, oid, kind });
        rest = &rest[end..];
    }
    Ok(entries)
}

/// Adds the store files under `tree` (found at `prefix`, `depth` folders
/// down) to `files`, descending into the subtrees in `trees`.
pub(super) fn flatten_tree(
    tree: &[TreeEntry],
    prefix: &str,
    depth: usize,
    trees: &HashMap<String, Arc<Vec<TreeEntry>>>,
    files: &mut BTreeMap<String, String>,
) {
    for entry in tree {
        let path = format!("{prefix}{}", entry.name);
        match entry.kind {
            EntryKind::File => {
                if let Some(name) = store_name_of(&path) {
                    files.insert(name, entry.oid.clone());
                }
            }
            EntryKind::Tree if depth < MAX_TREE_DEPTH => {
                if let Some(sub) = trees.get(&entry.oid) {
                    flatten_tree(sub, &format!("{path}/"), depth + 1, trees, files);
                }
            }
            EntryKind::Tree | EntryKind::Other => {}
        }
    }
}

impl GitRemote {
    /// The store files of each commit, read level by level: one `git
    /// cat-file --batch` for the root trees, then one per depth for the
    /// subtrees not already read by the previous listing. A fleet of K
    /// writers thus costs a handful of git processes per fetch, not K.
    pub(super) fn list_commits(
        &self,
        commits: &[&str],
    ) -> Result<Vec<BTreeMap<String, String>>, RemoteError> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        let previous = self.state().tree_cache.clone();
        let roots: Vec<String> = commits.iter().map(|c| format!("{c}^{{tree}}")).collect();
        let roots = self.read_trees(&roots)?;
        let mut seen: HashMap<String, Arc<Vec<TreeEntry>>> = HashMap::new();
        let mut frontier: Vec<Arc<Vec<TreeEntry>>> = roots.clone();
        // Store files are at most four deep (`chunks/<doc>/<fan>/<file>`):
        // only subtrees at depth 1 to 3 can hold any.
        for _depth in 1..=MAX_TREE_DEPTH {
            let mut next = Vec::new();
            let mut missing: Vec<String> = Vec::new();
            for tree in &frontier {
                for entry in tree.iter().filter(|e| e.kind == EntryKind::Tree) {
                    if seen.contains_key(&entry.oid) || missing.contains(&entry.oid) {
                        continue;
                    }
                    match previous.get(&entry.oid) {
                        Some(known) => {
                            seen.insert(entry.oid.clone(), Arc::clone(known));
                            next.push(Arc::clone(known));
                        }
                        None => missing.push(entry.oid.clone()),
                    }
                }
            }
            for (oid, entries) in missing.iter().zip(self.read_trees(&missing)?) {
                seen.insert(oid.clone(), Arc::clone(&entries));
                next.push(entries);
            }
            frontier = next;
        }
        let listings = roots
            .iter()
            .map(|root| {
                let mut files = BTreeMap::new();
                flatten_tree(root, "", 0, &seen, &mut files);
                files
            })
            .collect();
        self.state().tree_cache = seen;
        Ok(listings)
    }

    /// Reads tree objects (ids, or any name `cat-file` takes) with one
    /// `git cat-file --batch`.
    pub(super) fn read_trees(
        &self,
        names: &[String],
    ) -> Result<Vec<Arc<Vec<TreeEntry>>>, RemoteError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // Sizes first (issue 12, item 16): a tree of gigabytes in a hostile
        // slot is skipped, with a warning, before `cat-file --batch` hands
        // it over whole; the other slots still list.
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let sizes = self.object_sizes(&refs)?;
        let mut wanted: Vec<&String> = Vec::with_capacity(names.len());
        for (name, size) in names.iter().zip(&sizes) {
            match size {
                Some(size) if *size > MAX_TREE_BYTES => tracing::warn!(
                    "skipped tree {name} of remote {}: {size} bytes, over the limit of {MAX_TREE_BYTES} bytes for a store folder; not read",
                    self.describe()
                ),
                _ => wanted.push(name),
            }
        }
        let mut input = String::with_capacity(wanted.len() * 66);
        for name in &wanted {
            input.push_str(name);
            input.push('\n');
        }
        let args = ["cat-file", "--batch"];
        let out = if wanted.is_empty() {
            Vec::new()
        } else {
            self.ok(&args, None, Some(input.as_bytes()))?
        };
        let mut objects = parse_cat_file_batch(&out, wanted.len())
            .map_err(|detail| self.bad_output(&args, detail))?
            .into_iter();
        let oid_len = self.oid_hex_len()? / 2;
        names
            .iter()
            .zip(&sizes)
            .map(|(name, size)| {
                if size.is_some_and(|s| s > MAX_TREE_BYTES) {
                    return Ok(Arc::new(Vec::new()));
                }
                let bytes = objects.next().flatten().ok_or_else(|| {
                    self.bad_output(&args, format!("tree {name} is missing from the git cache"))
                })?;
                parse_tree(&bytes, oid_len)
                    .map(Arc::new)
                    .map_err(|detail| self.bad_output(&args, format!("tree {name}: {detail}")))
            })
            .collect()
    }

    /// The size of each object (`None`: missing), with one `git cat-file
    /// --batch-check`, which reads no content.
    pub(super) fn object_sizes(&self, ids: &[&str]) -> Result<Vec<Option<u64>>, RemoteError> {
        let mut input = String::with_capacity(ids.len() * 65);
        for id in ids {
            input.push_str(id);
            input.push('\n');
        }
        let args = ["cat-file", "--batch-check"];
        let out = self.ok(&args, None, Some(input.as_bytes()))?;
        parse_batch_check(&out, ids.len()).map_err(|detail| self.bad_output(&args, detail))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hashed_files_are_fanned_out_by_hash_prefix_and_read_back_either_way() {
        let h = crate::names::sha256_hex(b"x");
        let fan = &h[..2];
        let blob = format!("blobs/{h}.blob");
        let chunk = format!("chunks/batch-1/{h}.chunk");
        let snap = format!("archive/batch-1/{h}.snap");
        assert_eq!(git_path(&blob), format!("blobs/{fan}/{h}.blob"));
        assert_eq!(git_path(&chunk), format!("chunks/batch-1/{fan}/{h}.chunk"));
        assert_eq!(git_path(&snap), format!("archive/batch-1/{fan}/{h}.snap"));
        assert_eq!(git_path("FORMAT"), "FORMAT");
        assert_eq!(git_path("workspace"), "workspace");
        for name in [&blob, &chunk, &snap] {
            // Fanned out (this layout) and flat (older stores) alike.
            assert_eq!(
                store_name_of(&git_path(name)).as_deref(),
                Some(name.as_str())
            );
            assert_eq!(store_name_of(name).as_deref(), Some(name.as_str()));
        }
        assert_eq!(store_name_of("FORMAT").as_deref(), Some("FORMAT"));
        // A file in the wrong fan-out folder, or a folder that is no
        // fan-out, is no store file.
        let wrong = if fan == "00" { "01" } else { "00" };
        assert_eq!(store_name_of(&format!("blobs/{wrong}/{h}.blob")), None);
        assert_eq!(store_name_of(&format!("blobs/x/y/{h}.blob")), None);
        assert_eq!(store_name_of(&format!("blobs/{fan}/junk")), None);
        assert_eq!(store_name_of("README"), None);
        // A document named like a fan-out folder is still a document.
        assert_eq!(
            store_name_of(&format!("chunks/{fan}/{h}.chunk")),
            Some(format!("chunks/{fan}/{h}.chunk"))
        );
    }

    #[test]
    fn tree_objects() {
        let h = crate::names::sha256_hex(b"x");
        // A raw tree: a file, a store blob, a folder, a symlink, a submodule.
        let oid = [0xabu8; 20];
        let mut raw = Vec::new();
        for (mode, name) in [
            ("100644", "FORMAT"),
            ("100755", "x.blob"),
            ("40000", "blobs"),
            ("120000", "link"),
            ("160000", "sub"),
        ] {
            raw.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            raw.extend_from_slice(&oid);
        }
        let entries = parse_tree(&raw, 20).unwrap();
        let kinds: Vec<EntryKind> = entries.iter().map(|e| e.kind).collect();
        use EntryKind::*;
        assert_eq!(kinds, vec![File, File, Tree, Other, Other]);
        assert_eq!(entries[2].name, "blobs");
        assert_eq!(entries[2].oid, "ab".repeat(20));
        assert!(parse_tree(&raw[..raw.len() - 1], 20).is_err());
        assert!(parse_tree(b"100644 no-nul", 20).is_err());
        assert!(parse_tree(b"", 20).unwrap().is_empty());

        // Flattening keeps store names only, at most three deep.
        let entry = |name: &str, oid: &str, kind| TreeEntry {
            name: name.to_owned(),
            oid: oid.to_owned(),
            kind,
        };
        let mut trees = HashMap::new();
        trees.insert(
            "b".to_owned(),
            Arc::new(vec![
                entry(&format!("{h}.blob"), "1", File),
                entry("deeper", "b", Tree),
            ]),
        );
        let root = vec![
            entry("FORMAT", "2", File),
            entry("README", "3", File),
            entry("blobs", "b", Tree),
            entry("chunks", "missing", Tree),
        ];
        let mut files = BTreeMap::new();
        flatten_tree(&root, "", 0, &trees, &mut files);
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            vec![
                ("FORMAT".to_owned(), "2".to_owned()),
                (format!("blobs/{h}.blob"), "1".to_owned()),
            ]
        );

        // The fanned-out layout, four deep for a chunk.
        let fan = h[..2].to_owned();
        let mut trees = HashMap::new();
        trees.insert("c".to_owned(), Arc::new(vec![entry("doc", "d", Tree)]));
        trees.insert("d".to_owned(), Arc::new(vec![entry(&fan, "f", Tree)]));
        trees.insert(
            "f".to_owned(),
            Arc::new(vec![entry(&format!("{h}.chunk"), "4", File)]),
        );
        trees.insert("b".to_owned(), Arc::new(vec![entry(&fan, "g", Tree)]));
        trees.insert(
            "g".to_owned(),
            Arc::new(vec![entry(&format!("{h}.blob"), "5", File)]),
        );
        let root = vec![entry("blobs", "b", Tree), entry("chunks", "c", Tree)];
        let mut files = BTreeMap::new();
        flatten_tree(&root, "", 0, &trees, &mut files);
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            vec![
                (format!("blobs/{h}.blob"), "5".to_owned()),
                (format!("chunks/doc/{h}.chunk"), "4".to_owned()),
            ]
        );
    }
}
