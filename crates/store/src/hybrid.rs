//! The hybrid store (issue 19, item 2): documents in one remote (a git
//! repository: small files, cheap to fetch, history on the forge) and
//! blobs in another (an object store or a folder, `[store] blobs`), so
//! that large inputs and outputs never meet a repository's limits (GitHub
//! refuses files over 100 MB and pushes over 2 GB).
//!
//! [`Hybrid`] keeps the file-level contract of [`Remote`], so sync,
//! publishing, compaction, archival and gc see one store:
//!
//! - `FORMAT`, `workspace` and document files go to, and come from, the
//!   documents' remote;
//! - blobs are put in the blob store only; they are read from it, and from
//!   the documents' remote when it does not have them: a pool that kept its
//!   blobs in git before `blobs` was set keeps every one readable, and
//!   removing a blob removes it from both;
//! - the listing is the documents' one plus the blob store's blobs.
//!
//! The blob store is a store of its own (`FORMAT`, `workspace`, `blobs/`),
//! of the documents' workspace: before the first blob goes in (or the first
//! listing that shows its blobs), it is checked, and an empty one
//! initialised, as a sync checks a remote; one of another workspace, or a
//! prefix holding other things, is refused. Blobs are sealed before they
//! reach this crate, so the blob store holds ciphertext only, as every
//! remote does.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::names::{FORMAT_NAME, StoreName, WORKSPACE_NAME};
use crate::remote::{PutBatch, Remote, RemoteError, RemoteOptions, RemoteSpecError, parse_remote};

/// A store whose blobs live in another remote (see the module doc).
pub struct Hybrid {
    docs: Box<dyn Remote>,
    blobs: Box<dyn Remote>,
    /// The workspace the blob store was checked to belong to, once it was.
    checked: Mutex<Option<String>>,
    /// The blobs the documents' remote held at its last listing (a pool's
    /// blobs from before the blob store): removals go there too. `None`
    /// until a listing.
    blobs_in_docs: Mutex<Option<BTreeSet<String>>>,
}

impl Hybrid {
    /// Documents in `docs`, blobs in `blobs`.
    pub fn new(docs: Box<dyn Remote>, blobs: Box<dyn Remote>) -> Hybrid {
        Hybrid {
            docs,
            blobs,
            checked: Mutex::new(None),
            blobs_in_docs: Mutex::new(None),
        }
    }

    /// Checks the blob store belongs to the documents' workspace (making an
    /// empty one a store of it) unless that was done; returns its listing
    /// when it had to list it.
    fn check_blob_store(&self) -> Result<Option<BTreeSet<String>>, RemoteError> {
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if checked.is_some() {
            return Ok(None);
        }
        let workspace = crate::sync::remote_workspace(self.docs.as_ref())?;
        let listing = crate::sync::prepare_remote(&workspace, self.blobs.as_ref())?;
        *checked = Some(workspace);
        Ok(Some(listing))
    }

    /// The blobs of the blob store (checked first).
    fn blob_listing(&self) -> Result<BTreeSet<String>, RemoteError> {
        let listing = match self.check_blob_store()? {
            Some(listing) => listing,
            None => self.blobs.list()?,
        };
        Ok(listing.into_iter().filter(|n| is_blob(n)).collect())
    }
}

fn is_blob(name: &str) -> bool {
    matches!(StoreName::parse(name), Some(StoreName::Blob { .. }))
}

fn is_header(name: &str) -> bool {
    name == FORMAT_NAME || name == WORKSPACE_NAME
}

impl Remote for Hybrid {
    fn describe(&self) -> String {
        format!(
            "{} (blobs in {})",
            self.docs.describe(),
            self.blobs.describe()
        )
    }

    fn list(&self) -> Result<BTreeSet<String>, RemoteError> {
        let mut listing = self.docs.list()?;
        let in_docs: BTreeSet<String> = listing.iter().filter(|n| is_blob(n)).cloned().collect();
        *self
            .blobs_in_docs
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(in_docs);
        // Not yet a store: nothing to check the blob store against (a sync
        // makes the documents' remote a store, then puts blobs).
        if !(listing.contains(FORMAT_NAME) && listing.contains(WORKSPACE_NAME)) {
            return Ok(listing);
        }
        listing.extend(self.blob_listing()?);
        Ok(listing)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, RemoteError> {
        if !is_blob(name) {
            return self.docs.read(name);
        }
        match self.blobs.read(name) {
            Err(RemoteError::NotFound { .. }) => self.docs.read(name),
            other => other,
        }
    }

    fn read_many(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>, RemoteError> {
        let (blobs, others): (Vec<String>, Vec<String>) =
            names.iter().cloned().partition(|n| is_blob(n));
        let mut found: HashMap<String, Vec<u8>> = HashMap::with_capacity(names.len());
        if !blobs.is_empty() {
            found.extend(self.blobs.read_many(&blobs)?);
        }
        // Blobs from before the blob store, and everything else.
        let mut from_docs: Vec<String> = blobs
            .into_iter()
            .filter(|n| !found.contains_key(n))
            .collect();
        from_docs.extend(others);
        if !from_docs.is_empty() {
            found.extend(self.docs.read_many(&from_docs)?);
        }
        // In the order asked, as the trait promises.
        Ok(names
            .iter()
            .filter_map(|n| found.remove(n).map(|bytes| (n.clone(), bytes)))
            .collect())
    }

    fn push_stats(&self) -> Option<crate::git::PushStats> {
        self.docs.push_stats()
    }

    fn put_batch(&self) -> PutBatch {
        self.docs.put_batch()
    }

    fn put(&self, files: &[(String, Vec<u8>)]) -> Result<(), RemoteError> {
        // The header first (the blob store is checked against it), then the
        // blobs, then the documents: a document never names a blob that is
        // not stored.
        let (headers, rest): (Vec<_>, Vec<_>) = files.iter().partition(|(n, _)| is_header(n));
        let (blobs, docs): (Vec<_>, Vec<_>) = rest.into_iter().partition(|(n, _)| is_blob(n));
        if !headers.is_empty() {
            self.docs
                .put(&headers.into_iter().cloned().collect::<Vec<_>>())?;
        }
        if !blobs.is_empty() {
            self.check_blob_store()?;
            self.blobs
                .put(&blobs.into_iter().cloned().collect::<Vec<_>>())?;
        }
        if !docs.is_empty() {
            self.docs
                .put(&docs.into_iter().cloned().collect::<Vec<_>>())?;
        }
        Ok(())
    }

    fn remove(&self, names: &[String]) -> Result<usize, RemoteError> {
        let (blobs, mut others): (Vec<String>, Vec<String>) =
            names.iter().cloned().partition(|n| is_blob(n));
        let mut kept = 0;
        if !blobs.is_empty() {
            kept += self.blobs.remove(&blobs)?;
            // Blobs from before the blob store go from the documents'
            // remote too (all of them when it was never listed).
            let in_docs = self
                .blobs_in_docs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            others.extend(
                blobs
                    .into_iter()
                    .filter(|n| in_docs.as_ref().is_none_or(|held| held.contains(n))),
            );
        }
        if !others.is_empty() {
            kept += self.docs.remove(&others)?;
        }
        Ok(kept)
    }

    fn repack(&self) -> Result<usize, RemoteError> {
        Ok(self.docs.repack()? + self.blobs.repack()?)
    }
}

/// Opens the remote of `spec`, with its blobs in the remote of
/// `blobs_spec` when one is given (`[store] blobs`). The blob store is a
/// folder or an object store: a `git:` one would bring back the limits it
/// is there to avoid, and is refused.
pub fn parse_store(
    spec: &str,
    blobs_spec: Option<&str>,
    base: &Path,
    opts: &RemoteOptions,
) -> Result<Box<dyn Remote>, RemoteSpecError> {
    let docs = parse_remote(spec, base, opts)?;
    let Some(blobs_spec) = blobs_spec.filter(|b| *b != spec) else {
        return Ok(docs);
    };
    check_blobs_spec(blobs_spec)?;
    let blobs = parse_remote(blobs_spec, base, opts)?;
    Ok(Box::new(Hybrid::new(docs, blobs)))
}

/// Refuses a blob store that is not a folder or an object store.
pub fn check_blobs_spec(blobs_spec: &str) -> Result<(), RemoteSpecError> {
    if blobs_spec.starts_with("git:") {
        return Err(RemoteSpecError::BlobsInGit {
            spec: crate::git::redact_spec(blobs_spec),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::names::{BlobId, FORMAT_LINE};
    use crate::remote::MemRemote;

    fn blob(content: &str) -> (String, Vec<u8>) {
        let bytes = content.as_bytes().to_vec();
        (BlobId::of_bytes(&bytes).store_name(), bytes)
    }

    fn chunk(content: &str) -> (String, Vec<u8>) {
        let bytes = content.as_bytes().to_vec();
        let hash = crate::names::sha256_hex(&bytes);
        (format!("chunks/doc/{hash}.chunk"), bytes)
    }

    fn header(ws: &str) -> Vec<(String, Vec<u8>)> {
        vec![
            ("workspace".to_owned(), format!("{ws}\n").into_bytes()),
            ("FORMAT".to_owned(), FORMAT_LINE.as_bytes().to_vec()),
        ]
    }

    fn hybrid() -> (Arc<MemRemote>, Arc<MemRemote>, Hybrid) {
        let docs = Arc::new(MemRemote::new());
        let blobs = Arc::new(MemRemote::new());
        let h = Hybrid::new(Box::new(Arc::clone(&docs)), Box::new(Arc::clone(&blobs)));
        (docs, blobs, h)
    }

    #[test]
    fn documents_go_to_one_remote_blobs_to_the_other() {
        let (docs, blobs, h) = hybrid();
        let (b, c) = (blob("output"), chunk("change"));
        let mut files = header("ws");
        files.extend([c.clone(), b.clone()]);
        h.put(&files).unwrap();
        let in_docs = docs.list().unwrap();
        assert!(
            in_docs.contains(&c.0) && !in_docs.contains(&b.0),
            "{in_docs:?}"
        );
        // The blob store became a store of the same workspace.
        let in_blobs = blobs.list().unwrap();
        assert!(in_blobs.contains(&b.0) && !in_blobs.contains(&c.0));
        assert_eq!(blobs.read("workspace").unwrap(), b"ws\n");
        assert_eq!(blobs.read("FORMAT").unwrap(), FORMAT_LINE.as_bytes());
        // One store to its readers.
        let listing = h.list().unwrap();
        let expected: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(listing, expected);
        assert_eq!(h.read(&b.0).unwrap(), b.1);
        assert_eq!(h.read(&c.0).unwrap(), c.1);
        assert!(h.describe().contains("blobs in"));
    }

    #[test]
    fn blobs_kept_in_the_documents_remote_before_stay_readable_and_removable() {
        let (docs, blobs, h) = hybrid();
        let old = blob("from before the blob store");
        let mut files = header("ws");
        files.push(old.clone());
        docs.put(&files).unwrap();
        let new = blob("new");
        h.put(std::slice::from_ref(&new)).unwrap();
        assert!(!docs.list().unwrap().contains(&new.0));
        let listing = h.list().unwrap();
        assert!(listing.contains(&old.0) && listing.contains(&new.0));
        assert_eq!(h.read(&old.0).unwrap(), old.1);
        // read_many: from both, in the order asked, the missing left out.
        let absent = blob("absent").0;
        let c = chunk("c");
        h.put(std::slice::from_ref(&c)).unwrap();
        let asked = vec![new.0.clone(), absent, c.0.clone(), old.0.clone()];
        let got = h.read_many(&asked).unwrap();
        assert_eq!(got, vec![new.clone(), c.clone(), old.clone()]);
        // Removing blobs takes them off wherever they are.
        assert_eq!(h.remove(&[old.0.clone(), new.0.clone()]).unwrap(), 0);
        assert!(!docs.list().unwrap().contains(&old.0));
        assert!(!blobs.list().unwrap().contains(&new.0));
        assert!(matches!(h.read(&old.0), Err(RemoteError::NotFound { .. })));
    }

    #[test]
    fn a_blob_store_of_another_workspace_or_with_other_files_is_refused() {
        let (docs, blobs, h) = hybrid();
        docs.put(&header("ws")).unwrap();
        blobs.put(&header("other")).unwrap();
        let err = h.put(&[blob("b")]).unwrap_err();
        assert!(
            matches!(&err, RemoteError::WrongWorkspace { remote, .. } if remote == &blobs.describe()),
            "{err}"
        );
        assert!(h.list().is_err());
        assert!(blobs.list().unwrap().len() == 2, "nothing was put");

        let (docs, blobs, h) = hybrid();
        docs.put(&header("ws")).unwrap();
        blobs.put(&[chunk("not a blob store")]).unwrap();
        assert!(matches!(
            h.put(&[blob("b")]),
            Err(RemoteError::NotAStore { .. })
        ));
    }

    #[test]
    fn an_unreachable_blob_store_fails_the_call_and_puts_no_document() {
        let (docs, blobs, h) = hybrid();
        docs.put(&header("ws")).unwrap();
        blobs.set_reachable(false);
        let c = chunk("names the blob");
        let err = h.put(&[blob("b"), c.clone()]).unwrap_err();
        assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
        assert!(!docs.list().unwrap().contains(&c.0));
        assert!(matches!(h.list(), Err(RemoteError::Unreachable { .. })));
    }

    #[test]
    fn a_git_blob_store_is_refused_and_the_same_spec_is_one_remote() {
        let base = Path::new("/ws");
        let opts = RemoteOptions::for_base(base);
        let err = parse_store("git:/srv/r.git", Some("git:/srv/b.git"), base, &opts)
            .err()
            .unwrap();
        assert!(matches!(err, RemoteSpecError::BlobsInGit { .. }), "{err}");
        let one = parse_store("dir:/p", Some("dir:/p"), base, &opts).unwrap();
        assert_eq!(one.describe(), "dir:/p");
        let two = parse_store("git:/srv/r.git", Some("s3://bucket/pool"), base, &opts).unwrap();
        assert_eq!(two.describe(), "git:/srv/r.git (blobs in s3://bucket/pool)");
    }
}
