//! The contract every [`Remote`] backend meets, checked the same way for
//! each (DESIGN.md "Store layout" and "Remotes"): a remote holds
//! immutable, content-addressed store files; `put` is create-only, atomic
//! per file and idempotent; `list` shows every store name and nothing
//! else; a missing file is [`RemoteError::NotFound`] to `read` and left out
//! by `read_many`; names that are not store names, and files whose bytes do
//! not hash to their name, are refused before anything is written; `remove`
//! takes document files and blobs only and is idempotent; writers on two
//! replicas never lose each other's files; and two replicas syncing through
//! it converge on the union of their files.
//!
//! A backend provides a [`Backend`]: a fresh, empty store and handles on
//! it. [`remote_contract_tests!`](crate::remote_contract_tests) turns each
//! check below into a `#[test]`:
//!
//! ```ignore
//! mod git {
//!     bridge_testutil::remote_contract_tests!(bridge_testutil::remote_contract::GitStore::new);
//! }
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use bridge_store::{DirRemote, MemRemote, Remote, RemoteError, Replica, sync};

use crate::files::{StoreFile, blob, chunk, header, names};

/// A fresh, empty store of one backend.
pub trait Backend {
    /// A new handle on this store for writer `writer`, as one replica of a
    /// workspace would open it (with its own cache or connection, where the
    /// backend has one).
    fn open(&self, writer: &str) -> Box<dyn Remote>;
}

/// Runs every check of the contract as a `#[test]` in the current module,
/// each against a store made by `$fresh` (an expression callable with no
/// argument, returning a [`Backend`]).
#[macro_export]
macro_rules! remote_contract_tests {
    ($fresh:expr) => {
        $crate::remote_contract_tests!(@each $fresh;
            a_new_store_lists_nothing,
            put_list_read_round_trip,
            put_is_create_only_and_idempotent,
            names_and_hashes_are_checked,
            another_handle_sees_what_one_put,
            remove_is_idempotent_and_keeps_the_rest,
            concurrent_writers_on_two_replicas_both_land,
            two_replicas_converge_by_set_union,
        );
    };
    (@each $fresh:expr; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                let store = ($fresh)();
                $crate::remote_contract::$check(&store);
            }
        )+
    };
}

/// A new store lists nothing and reads nothing.
pub fn a_new_store_lists_nothing(store: &dyn Backend) {
    let remote = store.open("a");
    assert!(remote.list().unwrap().is_empty(), "{}", remote.describe());
    assert!(remote.read_many(&[]).unwrap().is_empty());
    assert!(matches!(
        remote.read(&blob("absent").0),
        Err(RemoteError::NotFound { .. })
    ));
}

/// What `put` wrote, `list` names and `read` / `read_many` return, byte
/// for byte; missing files are `NotFound` to `read` and left out by
/// `read_many`, which keeps the order asked.
pub fn put_list_read_round_trip(store: &dyn Backend) {
    let remote = store.open("a");
    let mut files = header("ws");
    files.extend([
        blob("one"),
        blob("two"),
        chunk("batch-1", "c1"),
        chunk("batch-1", "c2"),
    ]);
    remote.put(&files).unwrap();
    assert_eq!(remote.list().unwrap(), names(&files));
    for (name, bytes) in &files {
        assert_eq!(&remote.read(name).unwrap(), bytes, "{name}");
    }
    let absent = blob("never put").0;
    let mut asked: Vec<String> = files.iter().rev().map(|(n, _)| n.clone()).collect();
    asked.insert(1, absent.clone());
    let got = remote.read_many(&asked).unwrap();
    let expected: Vec<StoreFile> = files.iter().rev().cloned().collect();
    assert_eq!(got, expected);
    assert!(matches!(
        remote.read(&absent),
        Err(RemoteError::NotFound { .. })
    ));
    // Putting nothing is fine and changes nothing.
    remote.put(&[]).unwrap();
    assert_eq!(remote.list().unwrap(), names(&files));
}

/// `put` never replaces a file (store files are immutable): putting the
/// same files again changes nothing, and a header file put again with other
/// bytes keeps the first.
pub fn put_is_create_only_and_idempotent(store: &dyn Backend) {
    let remote = store.open("a");
    let mut files = header("ws");
    files.push(blob("b"));
    remote.put(&files).unwrap();
    remote.put(&files).unwrap();
    remote.put(&files[2..]).unwrap();
    assert_eq!(remote.list().unwrap(), names(&files));
    remote.put(&header("other-ws")).unwrap();
    assert_eq!(remote.read("workspace").unwrap(), b"ws\n");
    let reader = store.open("b");
    assert_eq!(reader.read("workspace").unwrap(), b"ws\n");
}

/// Names that are not store names (a path out of the store, a temp file, a
/// foreign file) and bytes that do not hash to their name are refused
/// before anything is written; `remove` refuses the header files.
pub fn names_and_hashes_are_checked(store: &dyn Backend) {
    let remote = store.open("a");
    remote.put(&header("ws")).unwrap();
    for bad in [
        "../evil",
        "blobs/.tmp-0123",
        "README",
        "chunks/../../etc/passwd",
    ] {
        assert!(
            matches!(
                remote.put(&[(bad.to_owned(), b"x".to_vec())]),
                Err(RemoteError::InvalidName { .. })
            ),
            "put {bad}"
        );
    }
    assert!(matches!(
        remote.put(&[(blob("x").0, b"y".to_vec())]),
        Err(RemoteError::HashMismatch { .. })
    ));
    assert!(matches!(
        remote.put(&[(chunk("d", "x").0, b"y".to_vec())]),
        Err(RemoteError::HashMismatch { .. })
    ));
    assert!(matches!(
        remote.read("chunks/../../etc/passwd"),
        Err(RemoteError::InvalidName { .. })
    ));
    for header_file in ["FORMAT", "workspace"] {
        assert!(
            matches!(
                remote.remove(&[header_file.to_owned()]),
                Err(RemoteError::InvalidName { .. })
            ),
            "remove {header_file}"
        );
    }
    assert_eq!(remote.list().unwrap(), names(&header("ws")));
}

/// A file one replica put is seen by another replica's handle.
pub fn another_handle_sees_what_one_put(store: &dyn Backend) {
    let writer = store.open("a");
    let reader = store.open("b");
    let mut files = header("ws");
    files.push(blob("first"));
    writer.put(&files).unwrap();
    assert_eq!(reader.list().unwrap(), names(&files));
    let later = blob("later");
    writer.put(std::slice::from_ref(&later)).unwrap();
    assert!(reader.list().unwrap().contains(&later.0));
    assert_eq!(reader.read(&later.0).unwrap(), later.1);
    // Reading without listing first works too.
    let fresh = store.open("c");
    assert_eq!(fresh.read(&later.0).unwrap(), later.1);
}

/// `remove` takes the named document files and blobs off the store
/// (whoever put them), keeps everything else, and is idempotent.
pub fn remove_is_idempotent_and_keeps_the_rest(store: &dyn Backend) {
    let a = store.open("a");
    let b = store.open("b");
    let mut files = header("ws");
    let (gone_blob, kept_blob) = (blob("gone"), blob("kept"));
    let gone_chunk = chunk("d", "gone");
    files.extend([gone_blob.clone(), kept_blob.clone()]);
    a.put(&files).unwrap();
    b.put(std::slice::from_ref(&gone_chunk)).unwrap();
    let gone = vec![gone_blob.0.clone(), gone_chunk.0.clone()];
    assert_eq!(a.remove(&gone).unwrap(), 0);
    let listed = a.list().unwrap();
    assert!(!listed.contains(&gone_blob.0) && !listed.contains(&gone_chunk.0));
    assert!(listed.contains(&kept_blob.0) && listed.contains("FORMAT"));
    assert_eq!(a.remove(&gone).unwrap(), 0);
    assert_eq!(a.remove(&[]).unwrap(), 0);
    assert_eq!(b.list().unwrap(), listed);
    assert!(matches!(
        b.read(&gone_blob.0),
        Err(RemoteError::NotFound { .. })
    ));
}

/// Two replicas writing at the same time both land: neither loses the
/// other's files.
pub fn concurrent_writers_on_two_replicas_both_land(store: &dyn Backend) {
    let first = store.open("setup");
    first.put(&header("ws")).unwrap();
    let writers: Vec<(Box<dyn Remote>, Vec<StoreFile>)> = ["a", "b"]
        .iter()
        .map(|w| {
            let files = (0..4).map(|i| blob(&format!("{w}-{i}"))).collect();
            (store.open(w), files)
        })
        .collect();
    let barrier = Barrier::new(writers.len());
    std::thread::scope(|scope| {
        for (remote, files) in &writers {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for file in files {
                    remote.put(std::slice::from_ref(file)).unwrap();
                }
            });
        }
    });
    let mut expected = names(&header("ws"));
    for (_, files) in &writers {
        expected.extend(names(files));
    }
    assert_eq!(store.open("reader").list().unwrap(), expected);
}

/// Two replicas with different files, synced through the store one after
/// the other, end with the same files: the union of both.
pub fn two_replicas_converge_by_set_union(store: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let b = Replica::init(&dir.path().join("b"), "ws").unwrap();
    a.write_chunk("d", b"from a").unwrap();
    a.put_blob_bytes(b"blob of a").unwrap();
    b.write_chunk("d", b"from b").unwrap();
    b.write_chunk("other", b"only b").unwrap();
    let (remote_a, remote_b) = (store.open("a"), store.open("b"));
    let quiet = &mut |_| {};
    for (replica, remote) in [(&a, &remote_a), (&b, &remote_b), (&a, &remote_a)] {
        sync(replica, remote.as_ref(), quiet).unwrap();
    }
    // A replica's own listing leaves out the header files; the remote's
    // has them.
    let union: BTreeSet<String> = a.list_store_names().unwrap();
    assert_eq!(union.len(), 4);
    assert_eq!(union, b.list_store_names().unwrap());
    let mut on_remote = remote_b.list().unwrap();
    assert!(on_remote.remove("FORMAT") && on_remote.remove("workspace"));
    assert_eq!(union, on_remote);
    // Again: nothing to do either way.
    for (replica, remote) in [(&a, &remote_a), (&b, &remote_b)] {
        let report = sync(replica, remote.as_ref(), quiet).unwrap();
        assert_eq!((report.pulled, report.pushed), (0, 0));
    }
}

/// A [`DirRemote`] store: an empty folder in a temp folder.
pub struct DirStore {
    dir: tempfile::TempDir,
}

impl DirStore {
    /// A new empty store folder.
    pub fn new() -> DirStore {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        DirStore { dir }
    }
}

impl Default for DirStore {
    fn default() -> DirStore {
        DirStore::new()
    }
}

impl Backend for DirStore {
    fn open(&self, _writer: &str) -> Box<dyn Remote> {
        Box::new(DirRemote::new(self.dir.path().join("store")))
    }
}

/// A [`GitRemote`](bridge_store::GitRemote) store: a bare repository in a
/// temp folder, over `file://`, with real hermetic `git`. Each handle has
/// its own cache repository and writes its writer's slot.
pub struct GitStore {
    dir: tempfile::TempDir,
    url: String,
    handles: AtomicUsize,
}

impl GitStore {
    /// A new empty bare repository.
    pub fn new() -> GitStore {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::git::bare_repo(&dir.path().join("store.git"));
        GitStore {
            dir,
            url,
            handles: AtomicUsize::new(0),
        }
    }

    fn cache(&self, writer: &str) -> PathBuf {
        let n = self.handles.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("cache-{writer}-{n}"))
    }
}

impl Default for GitStore {
    fn default() -> GitStore {
        GitStore::new()
    }
}

impl Backend for GitStore {
    fn open(&self, writer: &str) -> Box<dyn Remote> {
        Box::new(crate::git::remote(&self.url, writer, &self.cache(writer)))
    }
}

/// A [`MemRemote`] store, shared by its handles.
pub struct MemStore(Arc<MemRemote>);

impl MemStore {
    /// A new empty in-memory store.
    pub fn new() -> MemStore {
        MemStore(Arc::new(MemRemote::new()))
    }
}

impl Default for MemStore {
    fn default() -> MemStore {
        MemStore::new()
    }
}

impl Backend for MemStore {
    fn open(&self, _writer: &str) -> Box<dyn Remote> {
        Box::new(Arc::clone(&self.0))
    }
}

/// Another backend with its small blobs kept in packs
/// ([`Packed`](bridge_store::packs::Packed)), as bridge opens every remote:
/// the contract holds through the packing too.
pub struct PackedStore<B>(pub B);

impl<B: Backend> Backend for PackedStore<B> {
    fn open(&self, writer: &str) -> Box<dyn Remote> {
        Box::new(bridge_store::packs::Packed::new(self.0.open(writer), None))
    }
}

/// An `s3:` store ([`S3Remote`](bridge_store::s3::S3Remote)): a prefix of
/// a bucket of a real S3 server on 127.0.0.1 ([`crate::s3::S3Server`]),
/// each handle with its own client, as two devices would have.
pub struct S3Store {
    server: crate::s3::S3Server,
}

impl S3Store {
    /// A new server with an empty bucket.
    pub fn new() -> S3Store {
        let server = crate::s3::S3Server::start();
        server.create_bucket("bridge");
        S3Store { server }
    }
}

impl Default for S3Store {
    fn default() -> S3Store {
        S3Store::new()
    }
}

impl Backend for S3Store {
    fn open(&self, _writer: &str) -> Box<dyn Remote> {
        Box::new(self.server.remote("s3://bridge/team/pool"))
    }
}

/// A hybrid store ([`Hybrid`](bridge_store::Hybrid), `[store] blobs`):
/// documents in the first backend, blobs in the second, each handle with
/// its own handles on both.
pub struct HybridStore<D, B>(pub D, pub B);

impl<D: Backend, B: Backend> Backend for HybridStore<D, B> {
    fn open(&self, writer: &str) -> Box<dyn Remote> {
        Box::new(bridge_store::Hybrid::new(
            self.0.open(writer),
            self.1.open(writer),
        ))
    }
}
