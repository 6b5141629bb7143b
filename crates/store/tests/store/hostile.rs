//! Issue 12, items 3, 8 and 16 at the store level: damaged replica files
//! repaired from a remote's verified copy, symbolic links and special files
//! in a store never followed or read, files over their kind's size limit
//! refused before they are read.

use std::fs;
use std::path::Path;
use std::process::Command;

use bridge_store::names::{MAX_BLOB_BYTES, MAX_CHUNK_BYTES};
use bridge_store::{
    BlobId, DirRemote, MemRemote, ReadError, Remote, RemoteError, Replica, WriteError, sync,
};

use crate::independent_chunk;

fn flip_first_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    bytes[0] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

fn sparse(path: &Path, size: u64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::File::create(path).unwrap().set_len(size).unwrap();
}

fn mkfifo(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// A replica with a chunk and a blob, synced to a folder remote.
fn synced_pair(dir: &Path) -> (Replica, DirRemote, String, BlobId) {
    let replica = Replica::init(&dir.join("local"), "ws").unwrap();
    let remote_dir = dir.join("remote");
    fs::create_dir(&remote_dir).unwrap();
    let remote = DirRemote::new(remote_dir);
    let chunk = replica
        .write_chunk("doc", &independent_chunk("k", 1))
        .unwrap();
    let blob = replica.put_blob_bytes(b"an output").unwrap();
    sync(&replica, &remote, &mut |_| {}).unwrap();
    (replica, remote, chunk, blob)
}

#[test]
fn issue12_item3_a_damaged_chunk_and_blob_are_repaired_from_the_remote() {
    let dir = tempfile::tempdir().unwrap();
    let (replica, remote, chunk, blob) = synced_pair(dir.path());
    let good_chunk = replica.read_chunk("doc", &chunk).unwrap();
    flip_first_byte(&replica.chunk_path("doc", &chunk));
    flip_first_byte(&replica.blob_path(&blob));
    assert!(matches!(
        replica.read_chunk("doc", &chunk),
        Err(ReadError::Corrupt { .. })
    ));
    assert!(matches!(
        replica.read_blob(&blob),
        Err(ReadError::Corrupt { .. })
    ));
    assert_eq!(
        replica.damaged_names(),
        vec![blob.store_name(), format!("chunks/doc/{chunk}")]
    );

    let report = sync(&replica, &remote, &mut |_| {}).unwrap();
    assert_eq!(report.repaired.len(), 2, "{:?}", report.repaired);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(replica.read_chunk("doc", &chunk).unwrap(), good_chunk);
    assert_eq!(replica.read_blob(&blob).unwrap(), b"an output");
    assert!(replica.damaged_names().is_empty());
    // Said once: the next sync has nothing to repair.
    let report = sync(&replica, &remote, &mut |_| {}).unwrap();
    assert!(report.repaired.is_empty());
}

#[test]
fn issue12_item3_a_remote_copy_that_does_not_verify_is_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::init(&dir.path().join("local"), "ws").unwrap();
    let remote = MemRemote::new();
    let chunk = replica
        .write_chunk("doc", &independent_chunk("k", 1))
        .unwrap();
    sync(&replica, &remote, &mut |_| {}).unwrap();
    let name = format!("chunks/doc/{chunk}");
    remote.overwrite(&name, b"forged".to_vec());
    flip_first_byte(&replica.chunk_path("doc", &chunk));
    let damaged = fs::read(replica.chunk_path("doc", &chunk)).unwrap();
    assert!(replica.read_chunk("doc", &chunk).is_err());

    let report = sync(&replica, &remote, &mut |_| {}).unwrap();
    assert!(report.repaired.is_empty());
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert!(
        report.skipped[0].message.contains("damaged too"),
        "{}",
        report.skipped[0]
    );
    assert_eq!(
        fs::read(replica.chunk_path("doc", &chunk)).unwrap(),
        damaged,
        "left in place"
    );
    assert_eq!(
        replica.damaged_names(),
        vec![name],
        "still noted for another remote"
    );
}

#[test]
fn issue12_item3_find_damaged_hashes_every_file_by_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let (replica, remote, _chunk, blob) = synced_pair(dir.path());
    flip_first_byte(&replica.blob_path(&blob));
    // No command read it: only a full check finds it.
    assert!(replica.damaged_names().is_empty());
    assert_eq!(replica.find_damaged().unwrap(), vec![blob.store_name()]);
    let report = sync(&replica, &remote, &mut |_| {}).unwrap();
    assert_eq!(report.repaired.len(), 1);
    assert!(replica.find_damaged().unwrap().is_empty());
}

#[test]
fn issue12_item16_files_over_their_limit_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let (replica, remote, _chunk, _blob) = synced_pair(dir.path());
    let two_gb = 2u64 << 30;
    let junk_blob = BlobId::of_bytes(b"junk");
    sparse(&replica.blob_path(&junk_blob), two_gb);
    match replica.read_blob(&junk_blob) {
        Err(ReadError::TooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (two_gb, MAX_BLOB_BYTES));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let junk_chunk = format!("{}.chunk", "e".repeat(64));
    sparse(&replica.chunk_path("doc", &junk_chunk), MAX_CHUNK_BYTES + 1);
    assert!(matches!(
        replica.read_chunk("doc", &junk_chunk),
        Err(ReadError::TooLarge { .. })
    ));
    let remote_junk = format!("chunks/doc/{}.chunk", "f".repeat(64));
    sparse(&remote.root().join(&remote_junk), two_gb);
    match remote.read(&remote_junk) {
        Err(RemoteError::TooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (two_gb, MAX_CHUNK_BYTES));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }

    let report = sync(&replica, &remote, &mut |_| {}).unwrap();
    assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);
    for w in &report.skipped {
        assert!(w.message.contains("over the limit"), "{w}");
    }
    // Never deleted, never copied.
    assert_eq!(
        fs::metadata(replica.blob_path(&junk_blob)).unwrap().len(),
        two_gb
    );
    assert_eq!(
        fs::metadata(remote.root().join(&remote_junk))
            .unwrap()
            .len(),
        two_gb
    );
    assert!(!remote.root().join(junk_blob.store_name()).exists());
    assert!(!replica.root().join(&remote_junk).exists());
}

#[test]
fn issue12_item8_fifos_and_links_in_a_store_are_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let (replica, remote, _chunk, _blob) = synced_pair(dir.path());
    let fifo_blob = BlobId::of_bytes(b"fifo");
    let zero_blob = BlobId::of_bytes(b"zero");
    mkfifo(&replica.blob_path(&fifo_blob));
    std::os::unix::fs::symlink("/dev/zero", replica.blob_path(&zero_blob)).unwrap();
    // Neither hangs nor reads: refused before a byte.
    assert!(matches!(
        replica.read_blob(&fifo_blob),
        Err(ReadError::NotAFile { .. })
    ));
    assert!(matches!(
        replica.read_blob(&zero_blob),
        Err(ReadError::Link { .. })
    ));
    assert!(!replica.list_blobs().unwrap().contains(&fifo_blob));
    assert!(!replica.list_blobs().unwrap().contains(&zero_blob));
    let name = zero_blob.store_name();
    std::os::unix::fs::symlink("/dev/zero", remote.root().join(&name)).unwrap();
    assert!(matches!(
        remote.read(&name),
        Err(RemoteError::NotAFile { .. })
    ));
    mkfifo(&remote.root().join(fifo_blob.store_name()));
    assert!(matches!(
        remote.read(&fifo_blob.store_name()),
        Err(RemoteError::NotAFile { .. })
    ));
    let listed = remote.list().unwrap();
    assert!(!listed.contains(&name) && !listed.contains(&fifo_blob.store_name()));
    sync(&replica, &remote, &mut |_| {}).unwrap();
}

#[test]
fn issue12_item8_writes_never_go_through_a_linked_folder() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    let outside_remote = dir.path().join("outside-remote");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(&outside_remote).unwrap();
    // The replica's blobs and a document folder are links out of it.
    let replica = Replica::init(&dir.path().join("local"), "ws").unwrap();
    fs::remove_dir(replica.root().join("blobs")).unwrap();
    std::os::unix::fs::symlink(&outside, replica.root().join("blobs")).unwrap();
    std::os::unix::fs::symlink(&outside, replica.root().join("chunks/doc")).unwrap();
    assert!(matches!(
        replica.put_blob_bytes(b"x"),
        Err(WriteError::Link { .. })
    ));
    assert!(matches!(
        replica.write_chunk("doc", &independent_chunk("k", 1)),
        Err(WriteError::Link { .. })
    ));
    let src = dir.path().join("src");
    fs::write(&src, b"file blob").unwrap();
    assert!(matches!(
        replica.put_blob_file(&src),
        Err(WriteError::Link { .. })
    ));

    // A remote whose blobs folder is a link: a push skips it; a pull into
    // the replica's linked folders skips them too.
    let other = Replica::init(&dir.path().join("other"), "ws").unwrap();
    other.put_blob_bytes(b"from other").unwrap();
    other
        .write_chunk("doc", &independent_chunk("o", 2))
        .unwrap();
    let remote_dir = dir.path().join("remote");
    fs::create_dir(&remote_dir).unwrap();
    let remote = DirRemote::new(remote_dir.clone());
    sync(&other, &remote, &mut |_| {}).unwrap();
    let to_link = DirRemote::new(dir.path().join("remote2"));
    fs::create_dir(to_link.root()).unwrap();
    std::os::unix::fs::symlink(&outside_remote, to_link.root().join("blobs")).unwrap();
    sync(&other, &to_link, &mut |_| {}).unwrap();
    let report = sync(&replica, &remote, &mut |_| {}).unwrap();
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    for d in [&outside, &outside_remote] {
        assert_eq!(
            fs::read_dir(d).unwrap().count(),
            0,
            "nothing written in {}",
            d.display()
        );
    }
    // Removal never goes through a link either.
    fs::write(outside.join(format!("{}.blob", "a".repeat(64))), b"kept").unwrap();
    replica
        .remove_store_files(&[format!("blobs/{}.blob", "a".repeat(64))])
        .unwrap();
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
}
