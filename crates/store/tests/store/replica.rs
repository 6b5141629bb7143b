//! Replica: init, open, chunks, blobs, concurrent writers.

use std::fs;

use bridge_store::{BlobId, FORMAT_LINE, InitError, OpenError, ReadError, Replica, WriteError};

use crate::temp_files;

#[test]
fn init_creates_the_layout_and_open_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let replica = Replica::init(&root, "ws-1").unwrap();
    assert_eq!(replica.root(), root);
    assert_eq!(replica.workspace_id(), "ws-1");
    assert_eq!(
        fs::read_to_string(root.join("FORMAT")).unwrap(),
        FORMAT_LINE
    );
    assert_eq!(
        fs::read_to_string(root.join("workspace")).unwrap(),
        "ws-1\n"
    );
    assert!(root.join("chunks").is_dir());
    assert!(root.join("blobs").is_dir());

    let opened = Replica::open(&root).unwrap();
    assert_eq!(opened.workspace_id(), "ws-1");
    assert!(temp_files(&root).is_empty());
}

#[test]
fn init_is_idempotent_for_the_same_workspace_only() {
    let dir = tempfile::tempdir().unwrap();
    Replica::init(dir.path(), "ws-1").unwrap();
    Replica::init(dir.path(), "ws-1").unwrap();
    let err = Replica::init(dir.path(), "ws-2").unwrap_err();
    assert!(
        matches!(&err, InitError::OtherWorkspace { found, expected, .. } if found == "ws-1" && expected == "ws-2"),
        "{err:?}"
    );
    assert!(matches!(
        Replica::init(dir.path(), "bad\nid"),
        Err(InitError::InvalidWorkspaceId(_))
    ));
}

#[test]
fn other_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    Replica::init(root, "ws").unwrap();
    fs::write(root.join("FORMAT"), "bridge-store 2\n").unwrap();

    let err = Replica::open(root).unwrap_err();
    assert!(matches!(err, OpenError::UnknownFormat { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&root.join("FORMAT").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("bridge-store 2"), "{msg}");
    assert!(msg.contains("upgrade"), "{msg}");

    let err = Replica::init(root, "ws").unwrap_err();
    assert!(matches!(err, InitError::UnknownFormat { .. }), "{err:?}");
    // Refused, not rewritten.
    assert_eq!(
        fs::read_to_string(root.join("FORMAT")).unwrap(),
        "bridge-store 2\n"
    );

    // Trailing garbage is another format too.
    fs::write(root.join("FORMAT"), "bridge-store 1\nx").unwrap();
    assert!(matches!(
        Replica::open(root),
        Err(OpenError::UnknownFormat { .. })
    ));
}

#[test]
fn open_explains_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = Replica::open(&missing).unwrap_err();
    assert!(matches!(err, OpenError::NoFolder { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()));
    assert!(err.to_string().contains("bridge init"));

    let err = Replica::open(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::NotAStore { .. }), "{err:?}");
    assert!(err.to_string().contains("bridge init"));

    fs::write(dir.path().join("FORMAT"), FORMAT_LINE).unwrap();
    assert!(matches!(
        Replica::open(dir.path()),
        Err(OpenError::MissingWorkspace { .. })
    ));
}

#[test]
fn chunks_roundtrip_and_list_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::init(dir.path(), "ws").unwrap();
    assert!(replica.list_docs().unwrap().is_empty());
    assert!(replica.list_chunks("doc-a").unwrap().is_empty());

    let mut names = Vec::new();
    for i in 0..5u8 {
        let name = replica.write_chunk("doc-a", &[i; 10]).unwrap();
        assert_eq!(name, format!("{}.chunk", BlobId::of_bytes(&[i; 10])));
        assert_eq!(replica.read_chunk("doc-a", &name).unwrap(), vec![i; 10]);
        names.push(name);
    }
    // Same bytes again: same name, nothing new.
    assert_eq!(replica.write_chunk("doc-a", &[0; 10]).unwrap(), names[0]);
    replica.write_chunk("doc.b_2", b"x").unwrap();
    names.sort();

    // Temp files and strangers are not chunks.
    fs::write(replica.chunk_path("doc-a", ".tmp-abcdef"), b"partial").unwrap();
    fs::write(replica.chunk_path("doc-a", "README"), b"?").unwrap();
    fs::create_dir(dir.path().join("chunks/.tmp-dir")).unwrap();

    assert_eq!(replica.list_chunks("doc-a").unwrap(), names);
    assert_eq!(replica.list_docs().unwrap(), ["doc-a", "doc.b_2"]);
}

#[test]
fn invalid_doc_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::init(dir.path(), "ws").unwrap();
    for bad in ["", "..", "a/b", "a\\b", "sp ace", &"x".repeat(81)] {
        assert!(
            matches!(
                replica.write_chunk(bad, b"x"),
                Err(WriteError::InvalidDocId(_))
            ),
            "{bad:?}"
        );
        assert!(replica.list_chunks(bad).is_err(), "{bad:?}");
        assert!(replica.read_chunk(bad, "x.chunk").is_err(), "{bad:?}");
    }
    assert!(matches!(
        replica.read_chunk("doc", "../../FORMAT"),
        Err(ReadError::InvalidChunkName { .. })
    ));
}

#[test]
fn read_chunk_reports_flipped_and_truncated_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::init(dir.path(), "ws").unwrap();
    let flipped = replica.write_chunk("d", b"hello chunk one").unwrap();
    let truncated = replica.write_chunk("d", b"hello chunk two").unwrap();

    let path = replica.chunk_path("d", &flipped);
    let mut bytes = fs::read(&path).unwrap();
    bytes[3] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    let err = replica.read_chunk("d", &flipped).unwrap_err();
    assert!(
        matches!(&err, ReadError::Corrupt { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));

    let path = replica.chunk_path("d", &truncated);
    fs::write(&path, b"hello").unwrap();
    assert!(matches!(
        replica.read_chunk("d", &truncated),
        Err(ReadError::Corrupt { .. })
    ));
    // Never deleted.
    assert!(path.exists());

    let missing = format!("{}.chunk", BlobId::of_bytes(b"nope"));
    assert!(matches!(
        replica.read_chunk("d", &missing),
        Err(ReadError::Missing { .. })
    ));
}

#[test]
fn blobs_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::init(&dir.path().join("store"), "ws").unwrap();
    let small = replica.put_blob_bytes(b"small blob").unwrap();
    assert_eq!(small, BlobId::of_bytes(b"small blob"));
    assert!(replica.has_blob(&small));
    assert_eq!(replica.read_blob(&small).unwrap(), b"small blob");

    // A file larger than the copy buffer.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let src = dir.path().join("big.bin");
    fs::write(&src, &big).unwrap();
    let id = replica.put_blob_file(&src).unwrap();
    assert_eq!(id, BlobId::of_bytes(&big));
    assert_eq!(replica.put_blob_bytes(&big).unwrap(), id);
    assert_eq!(replica.read_blob(&id).unwrap(), big);
    assert_eq!(replica.list_blobs().unwrap().len(), 2);

    let dest = dir.path().join("out/nested/big.bin");
    replica.copy_blob_to(&id, &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), big);
    // Replacing an existing destination is fine.
    replica.copy_blob_to(&small, &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"small blob");
    assert!(temp_files(dir.path()).is_empty());

    let absent = BlobId::of_bytes(b"absent");
    assert!(!replica.has_blob(&absent));
    assert!(matches!(
        replica.read_blob(&absent),
        Err(ReadError::Missing { .. })
    ));
    assert!(matches!(
        replica.put_blob_file(&dir.path().join("no-such-file")),
        Err(WriteError::ReadSource { .. })
    ));
}

#[test]
fn copy_blob_to_verifies_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::init(&dir.path().join("store"), "ws").unwrap();
    let id = replica.put_blob_bytes(b"precious output").unwrap();
    fs::write(replica.blob_path(&id), b"precious 0utput").unwrap();

    let dest = dir.path().join("out/file.txt");
    let err = replica.copy_blob_to(&id, &dest).unwrap_err();
    assert!(matches!(err, ReadError::Corrupt { .. }), "{err:?}");
    assert!(!dest.exists());
    assert!(temp_files(dir.path()).is_empty());
    assert!(matches!(
        replica.read_blob(&id),
        Err(ReadError::Corrupt { .. })
    ));
}

#[test]
fn concurrent_writers_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::init(dir.path(), "ws").unwrap();
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            // Each writer opens the folder itself, as another process would.
            let root = dir.path().to_owned();
            std::thread::spawn(move || {
                let replica = Replica::open(&root).unwrap();
                for i in 0..200u32 {
                    replica
                        .write_chunk("doc", format!("thread {t} chunk {i}").as_bytes())
                        .unwrap();
                    // Both threads also race on the same names.
                    replica
                        .write_chunk("doc", format!("shared chunk {i}").as_bytes())
                        .unwrap();
                    if i % 20 == 0 {
                        replica
                            .put_blob_bytes(format!("blob {i}").as_bytes())
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let chunks = replica.list_chunks("doc").unwrap();
    assert_eq!(chunks.len(), 600);
    for name in &chunks {
        replica.read_chunk("doc", name).unwrap();
    }
    assert_eq!(replica.list_blobs().unwrap().len(), 10);
    assert!(temp_files(dir.path()).is_empty());
}
