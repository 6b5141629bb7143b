//! Sync between replicas through remotes.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use automerge::AutoCommit;
use bridge_store::{
    BlobId, DirRemote, MemRemote, Plain, Remote, RemoteError, RemoteOptions, Replica, SyncError,
    SyncProgress, SyncReport, join, load_doc, parse_remote, sync,
};
use proptest::prelude::*;

use crate::{chunk_put, content_names, get_i64, temp_files};

fn quiet(replica: &Replica, remote: &dyn Remote) -> Result<SyncReport, SyncError> {
    sync(replica, remote, &mut |_| {})
}

#[test]
fn two_replicas_converge_through_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let b = Replica::init(&dir.path().join("b"), "ws").unwrap();
    let usb = dir.path().join("usb");
    fs::create_dir(&usb).unwrap();
    let remote = parse_remote("dir:usb", dir.path(), &RemoteOptions::for_base(dir.path())).unwrap();

    let mut doc_a = AutoCommit::new();
    for i in 0..5 {
        a.write_chunk("batch", &chunk_put(&mut doc_a, "from-a", i))
            .unwrap();
    }
    let blob_a = a.put_blob_bytes(b"output of a").unwrap();
    let mut doc_b = AutoCommit::new();
    b.write_chunk("batch", &chunk_put(&mut doc_b, "from-b", 7))
        .unwrap();
    b.write_chunk("other", &chunk_put(&mut AutoCommit::new(), "x", 1))
        .unwrap();
    let blob_b = b.put_blob_bytes(b"output of b").unwrap();

    let mut seen = Vec::new();
    let report = sync(&a, remote.as_ref(), &mut |p| seen.push(p)).unwrap();
    assert_eq!((report.pulled, report.pushed), (0, 6));
    assert_eq!(seen.first(), Some(&SyncProgress { done: 0, total: 6 }));
    assert_eq!(seen.last(), Some(&SyncProgress { done: 6, total: 6 }));
    // The empty folder became a store of this workspace.
    assert_eq!(Replica::open(&usb).unwrap().workspace_id(), "ws");

    let report = quiet(&b, remote.as_ref()).unwrap();
    assert_eq!((report.pulled, report.pushed), (6, 3));
    let report = quiet(&a, remote.as_ref()).unwrap();
    assert_eq!((report.pulled, report.pushed), (3, 0));
    assert!(report.skipped.is_empty());

    let names_a = content_names(&a.as_remote());
    assert_eq!(names_a.len(), 9);
    assert_eq!(names_a, content_names(&b.as_remote()));
    assert_eq!(names_a, content_names(remote.as_ref()));
    assert!(a.has_blob(&blob_b) && b.has_blob(&blob_a));
    assert_eq!(b.read_blob(&blob_a).unwrap(), b"output of a");

    for replica in [&a, &b] {
        let (loaded, warnings) = load_doc(replica, "batch", &Plain).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(get_i64(&loaded.doc, "from-a"), Some(4));
        assert_eq!(get_i64(&loaded.doc, "from-b"), Some(7));
        let (other, _) = load_doc(replica, "other", &Plain).unwrap();
        assert_eq!(get_i64(&other.doc, "x"), Some(1));
    }

    // Again: nothing to do.
    for replica in [&a, &b] {
        let mut seen = Vec::new();
        let report = sync(replica, remote.as_ref(), &mut |p| seen.push(p)).unwrap();
        assert_eq!((report.pulled, report.pushed), (0, 0));
        assert_eq!(seen, [SyncProgress { done: 0, total: 0 }]);
    }
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn a_replica_is_a_remote_too() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let b = Replica::init(&dir.path().join("b"), "ws").unwrap();
    a.write_chunk("d", b"one").unwrap();
    b.write_chunk("d", b"two").unwrap();
    quiet(&a, &b.as_remote()).unwrap();
    assert_eq!(a.list_chunks("d").unwrap(), b.list_chunks("d").unwrap());
    assert_eq!(a.list_chunks("d").unwrap().len(), 2);
}

#[test]
fn an_unreachable_remote_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::init(&dir.path().join("a"), "ws").unwrap();
    replica.write_chunk("d", b"x").unwrap();
    let gone = dir.path().join("usb-not-mounted");
    let err = quiet(&replica, &DirRemote::new(gone.clone())).unwrap_err();
    assert!(
        matches!(err, SyncError::Remote(RemoteError::Unreachable { .. })),
        "{err:?}"
    );
    assert!(!gone.exists());

    let mem = MemRemote::new();
    quiet(&replica, &mem).unwrap();
    mem.set_reachable(false);
    assert!(matches!(
        quiet(&replica, &mem),
        Err(SyncError::Remote(RemoteError::Unreachable { .. }))
    ));
}

#[test]
fn another_workspace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws-a").unwrap();
    let b = Replica::init(&dir.path().join("b"), "ws-b").unwrap();
    b.write_chunk("d", b"secret").unwrap();
    let remote = DirRemote::new(dir.path().join("b"));
    let err = quiet(&a, &remote).unwrap_err();
    assert!(
        matches!(&err, SyncError::Remote(RemoteError::WrongWorkspace { expected, found, .. })
            if expected == "ws-a" && found == "ws-b"),
        "{err:?}"
    );
    assert!(a.list_chunks("d").unwrap().is_empty());
}

#[test]
fn a_folder_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let photos = dir.path().join("photos");
    fs::create_dir(&photos).unwrap();
    fs::write(photos.join("cat.jpg"), b"meow").unwrap();
    let err = quiet(&a, &DirRemote::new(photos.clone())).unwrap_err();
    assert!(
        matches!(err, SyncError::Remote(RemoteError::NotAStore { .. })),
        "{err:?}"
    );
    assert!(!photos.join("FORMAT").exists());
}

#[test]
fn an_unknown_remote_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let remote_root = dir.path().join("r");
    Replica::init(&remote_root, "ws").unwrap();
    fs::write(remote_root.join("FORMAT"), "bridge-store 9\n").unwrap();
    let err = quiet(&a, &DirRemote::new(remote_root)).unwrap_err();
    assert!(
        matches!(err, SyncError::Remote(RemoteError::UnknownFormat { .. })),
        "{err:?}"
    );
}

#[test]
fn a_corrupt_remote_file_is_skipped_not_copied_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let remote_root = dir.path().join("r");
    let r = Replica::init(&remote_root, "ws").unwrap();
    let good = r.put_blob_bytes(b"good").unwrap();
    let bad = r.put_blob_bytes(b"soon bad").unwrap();
    fs::write(r.blob_path(&bad), b"flipped").unwrap();

    let report = quiet(&a, &r.as_remote()).unwrap();
    assert_eq!(report.pulled, 1);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    let warning = report.skipped[0].to_string();
    assert!(warning.contains(&bad.to_string()), "{warning}");
    assert!(warning.starts_with("skipped dir:"), "{warning}");
    assert!(a.has_blob(&good));
    assert!(!a.has_blob(&bad));
    assert!(r.blob_path(&bad).exists());

    // A corrupt local file is not pushed either.
    let local_bad = a.put_blob_bytes(b"local").unwrap();
    fs::write(a.blob_path(&local_bad), b"l0cal").unwrap();
    let report = quiet(&a, &r.as_remote()).unwrap();
    assert_eq!(report.pushed, 0);
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    assert!(!r.has_blob(&local_bad));
}

#[test]
fn a_corrupt_file_on_an_in_memory_remote_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(dir.path(), "ws").unwrap();
    let mem = MemRemote::new();
    a.put_blob_bytes(b"x").unwrap();
    quiet(&a, &mem).unwrap();
    let bad = BlobId::of_bytes(b"y");
    mem.overwrite(&bad.store_name(), b"not y".to_vec());
    let report = quiet(&a, &mem).unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert!(!a.has_blob(&bad));
}

#[test]
fn join_creates_a_replica_of_the_remote_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "team-ws").unwrap();
    a.write_chunk("d", b"chunk").unwrap();
    let blob = a.put_blob_bytes(b"blob").unwrap();
    let usb = dir.path().join("usb");
    fs::create_dir(&usb).unwrap();
    quiet(&a, &DirRemote::new(usb.clone())).unwrap();

    let b = join(&dir.path().join("b"), &DirRemote::new(usb.clone())).unwrap();
    assert_eq!(b.workspace_id(), "team-ws");
    assert!(b.has_blob(&blob));
    assert_eq!(b.list_chunks("d").unwrap(), a.list_chunks("d").unwrap());

    // Joining an empty folder makes no sense.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let err = join(&dir.path().join("c"), &DirRemote::new(empty)).unwrap_err();
    assert!(
        matches!(err, SyncError::Remote(RemoteError::NotAStore { .. })),
        "{err:?}"
    );
}

#[test]
fn an_interrupted_remote_initialisation_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let usb = dir.path().join("usb");
    fs::create_dir(&usb).unwrap();
    // A killed init wrote `workspace` (and a temp file) but not FORMAT.
    fs::write(usb.join("workspace"), "ws\n").unwrap();
    fs::write(usb.join(".tmp-0011223344556677"), "bridge-st").unwrap();
    quiet(&a, &DirRemote::new(usb.clone())).unwrap();
    assert_eq!(Replica::open(&usb).unwrap().workspace_id(), "ws");

    // …but not if it was another workspace's.
    let other = dir.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("workspace"), "someone-else\n").unwrap();
    assert!(matches!(
        quiet(&a, &DirRemote::new(other)),
        Err(SyncError::Remote(RemoteError::WrongWorkspace { .. }))
    ));
}

/// Where a generated file starts: replica 0, 1, 2, or the remote (3).
#[derive(Debug, Clone)]
struct GenFile {
    place: usize,
    doc: Option<u8>,
    bytes: Vec<u8>,
}

fn gen_file() -> impl Strategy<Value = GenFile> {
    (
        0usize..4,
        prop::option::of(0u8..3),
        prop::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(place, doc, bytes)| GenFile { place, doc, bytes })
}

fn store_name(f: &GenFile) -> String {
    let hash = BlobId::of_bytes(&f.bytes);
    match f.doc {
        Some(d) => format!("chunks/doc{d}/{hash}.chunk"),
        None => hash.store_name(),
    }
}

fn write(replica: &Replica, f: &GenFile) {
    match f.doc {
        Some(d) => {
            replica.write_chunk(&format!("doc{d}"), &f.bytes).unwrap();
        }
        None => {
            replica.put_blob_bytes(&f.bytes).unwrap();
        }
    }
}

fn setup(root: &Path, files: &[GenFile]) -> (Vec<Replica>, Replica) {
    let replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::init(&root.join(format!("r{i}")), "ws").unwrap())
        .collect();
    // The remote is a store folder written by someone else.
    let remote = Replica::init(&root.join("remote"), "ws").unwrap();
    for f in files {
        write(replicas.get(f.place).unwrap_or(&remote), f);
    }
    (replicas, remote)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_syncs_end_with_the_union_everywhere(
        files in prop::collection::vec(gen_file(), 0..24),
        early in prop::collection::vec(0usize..3, 0..6),
        first in Just(vec![0usize, 1, 2]).prop_shuffle(),
        second in Just(vec![0usize, 1, 2]).prop_shuffle(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (replicas, remote_replica) = setup(dir.path(), &files);
        let remote = remote_replica.as_remote();
        let union: BTreeSet<String> = files.iter().map(store_name).collect();

        // Some syncs in a random order, then every replica twice (in random
        // orders): after the first round the remote has everything, after
        // the second every replica has.
        for i in early.iter().chain(&first) {
            let report = quiet(&replicas[*i], &remote).unwrap();
            prop_assert!(report.skipped.is_empty());
        }
        prop_assert_eq!(content_names(&remote), union.clone());
        for i in &second {
            quiet(&replicas[*i], &remote).unwrap();
        }
        for replica in &replicas {
            prop_assert_eq!(content_names(&replica.as_remote()), union.clone());
            let report = quiet(replica, &remote).unwrap();
            prop_assert_eq!((report.pulled, report.pushed), (0, 0));
        }
        prop_assert!(temp_files(dir.path()).is_empty());
    }
}

#[test]
fn every_write_path_fills_the_shared_outbox_and_a_pull_does_not() {
    use bridge_store::DocFolder;
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let clone = a.clone();
    let chunk = a
        .write_chunk("batch", &chunk_put(&mut AutoCommit::new(), "k", 1))
        .unwrap();
    let snap = clone
        .write_doc_file(DocFolder::Snapshots, "batch", b"a snapshot")
        .unwrap();
    let src = dir.path().join("input");
    fs::write(&src, b"an input").unwrap();
    let from_file = clone.put_blob_file(&src).unwrap();
    let from_bytes = a.put_blob_bytes(b"an output").unwrap();
    // Blobs first, then document files in the order they were written; every
    // clone sees the one outbox.
    assert_eq!(
        a.outbox().take(),
        vec![
            from_file.store_name(),
            from_bytes.store_name(),
            format!("chunks/batch/{chunk}"),
            format!("snapshots/batch/{snap}"),
        ]
    );
    assert!(clone.outbox().is_empty());

    // Files a sync pulls from the remote are not queued to be pushed back.
    let remote = MemRemote::new();
    let b = Replica::init(&dir.path().join("b"), "ws").unwrap();
    b.write_chunk("batch", &chunk_put(&mut AutoCommit::new(), "from-b", 2))
        .unwrap();
    b.put_blob_bytes(b"output of b").unwrap();
    quiet(&b, &remote).unwrap();
    quiet(&a, &remote).unwrap();
    assert!(a.outbox().is_empty(), "{:?}", a.outbox().take());
}

#[test]
fn a_sync_empties_the_outbox_and_a_failed_one_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let chunk = a
        .write_chunk("batch", &chunk_put(&mut AutoCommit::new(), "k", 1))
        .unwrap();
    let queued = format!("chunks/batch/{chunk}");
    // A remote that is not there: the sync fails, the file stays queued.
    let gone = DirRemote::new(dir.path().join("no-such-folder"));
    assert!(quiet(&a, &gone).is_err());
    assert_eq!(a.outbox().take(), vec![queued.clone()]);
    a.outbox().add(queued);
    quiet(&a, &MemRemote::new()).unwrap();
    assert!(a.outbox().is_empty());
}

#[test]
fn push_queued_sends_only_the_outbox_and_keeps_it_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let remote = MemRemote::new();
    quiet(&a, &remote).unwrap();
    let old = a.put_blob_bytes(b"pushed by the sync").unwrap();
    quiet(&a, &remote).unwrap();
    let chunk = a
        .write_chunk("batch", &chunk_put(&mut AutoCommit::new(), "k", 1))
        .unwrap();
    let queued = format!("chunks/batch/{chunk}");
    remote.set_reachable(false);
    assert!(bridge_store::push_queued(&a, &remote).is_err());
    assert_eq!(a.outbox().len(), 1);
    remote.set_reachable(true);
    assert_eq!(bridge_store::push_queued(&a, &remote).unwrap(), 1);
    assert!(a.outbox().is_empty());
    let names = remote.list().unwrap();
    assert!(names.contains(&queued) && names.contains(&old.store_name()));
}

#[test]
fn a_queued_file_compacted_away_before_its_push_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::init(&dir.path().join("a"), "ws").unwrap();
    let remote = MemRemote::new();
    quiet(&a, &remote).unwrap();
    let gone = a
        .write_chunk("batch", &chunk_put(&mut AutoCommit::new(), "k", 1))
        .unwrap();
    let kept = a.put_blob_bytes(b"kept").unwrap();
    a.remove_store_files(&[format!("chunks/batch/{gone}")])
        .unwrap();
    assert_eq!(bridge_store::push_queued(&a, &remote).unwrap(), 1);
    let names = remote.list().unwrap();
    assert!(names.contains(&kept.store_name()));
    assert!(!names.contains(&format!("chunks/batch/{gone}")));
    assert!(a.outbox().is_empty());
}
