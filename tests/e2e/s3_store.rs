//! An `s3:` pool through its whole life (issue 19, item 1): a member
//! joins through the bucket, works, and the admin compacts, archives and
//! collects garbage, on a real S3 server on 127.0.0.1 (the runner ordeals
//! over S3 are in `runner.rs`, `on_s3`). The server keeps each object as
//! a file under its data folder, so the test sees what the bucket holds.

use std::fs;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::harness::{GitPool, objects_under};

#[test]
fn an_s3_pool_lives_through_members_work_compaction_archive_and_gc() {
    let mut pool = GitPool::s3("s3life");
    let prefix: PathBuf = pool.s3_server().data().join("bridge/s3life");
    let admin = &pool.admin;
    let worker = pool.device("s3life-worker");
    worker.join_as(admin, &pool.remote, "worker");
    admin.write("in.txt", "a plaintext input\n");
    admin.ok(&[
        "submit", "--name", "cat", "--input", "in.txt", "--", "cat", "in.txt",
    ]);
    admin.ok(&["submit", "--name", "hi", "--", "echo", "hello from s3"]);
    admin.ok(&["sync"]);
    worker.ok(&["sync"]);
    worker.ok(&["work"]);
    admin.ok(&["sync"]);
    assert_eq!(admin.status().count("done"), 2);
    assert!(admin.ok(&["logs", "hi"]).stdout.contains("hello from s3"));

    // Ciphertext only: no object holds the input or the output in clear.
    let stored = objects_under(&prefix);
    assert!(stored.iter().any(|n| n == "FORMAT"), "{stored:#?}");
    for name in &stored {
        let bytes = fs::read(prefix.join(name)).expect("read an object");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("a plaintext input") && !text.contains("hello from s3"),
            "{name} holds plaintext"
        );
    }

    // Compaction: snapshots on the bucket, the chunk files gone.
    let compacted = admin.ok(&["compact", "--json"]).json();
    assert!(
        compacted["remote_removed"].as_u64().unwrap_or(0) > 0,
        "{compacted}"
    );
    let after = objects_under(&prefix);
    assert!(
        after.iter().any(|n| n.starts_with("snapshots/")),
        "{after:#?}"
    );
    worker.ok(&["sync"]);
    assert_eq!(worker.status().count("done"), 2);

    // Archive, then garbage collection of a blob no task names, on the
    // replica and in the bucket.
    let archived = admin
        .ok(&["archive", "--older-than", "0s", "--json"])
        .json();
    assert_eq!(archived["tasks"], 2, "{archived}");
    let orphan = b"nobody names me".to_vec();
    let name = format!("blobs/{}.blob", hex::encode(Sha256::digest(&orphan)));
    for root in [admin.store(), prefix.clone()] {
        fs::create_dir_all(root.join("blobs")).expect("a blobs folder");
        fs::write(root.join(&name), &orphan).expect("write the orphan blob");
    }
    let gc = admin.ok(&["gc", "--grace", "0s", "--json"]).json();
    assert_eq!(gc["remote_removed"], 1, "{gc}");
    assert!(!prefix.join(&name).exists());
    worker.ok(&["sync"]);
    assert!(
        worker
            .ok(&["logs", "cat"])
            .stdout
            .contains("a plaintext input")
    );
}

#[test]
fn s3_settings_come_from_bridge_toml_and_refused_credentials_are_misconfigured() {
    let server = bridge_testutil::s3::S3Server::start();
    server.create_bucket("bridge");
    let mut d = crate::harness::Device::new("s3conf");
    // Keys from the environment; where the store is from bridge.toml.
    for (key, value) in server.env() {
        if key != "AWS_ENDPOINT_URL" {
            d.set_env(&key, &value);
        }
    }
    d.ok(&["init"]);
    d.set_store_settings("remote = \"s3://bridge/conf\"\n");
    let path = d.path("bridge.toml");
    let mut toml = fs::read_to_string(&path).expect("read bridge.toml");
    toml.push_str(&format!(
        "\n[store.s3]\nendpoint = \"{}\"\npath-style = true\nmax-retries = 1\nretry-timeout = \"10s\"\n",
        server.endpoint()
    ));
    fs::write(&path, toml).expect("write bridge.toml");
    d.ok(&["submit", "--name", "hi", "--", "echo", "hi"]);
    d.ok(&["sync"]);
    assert!(server.data().join("bridge/conf/FORMAT").is_file());

    // A wrong secret: refused, misconfigured (exit code 7), never shown.
    let refused = d
        .run_env(&[("AWS_SECRET_ACCESS_KEY", "wrong-secret-4711")], &["sync"])
        .expect_code(7);
    let shown = format!("{}{}", refused.stdout, refused.stderr);
    assert!(shown.contains("s3://bridge/conf"), "{shown}");
    assert!(shown.contains("refused access"), "{shown}");
    assert!(shown.contains("Hint:"), "{shown}");
    assert!(!shown.contains("wrong-secret-4711"), "{shown}");
    assert!(!shown.contains(bridge_testutil::s3::SECRET_KEY), "{shown}");

    // A bad setting is an error naming it.
    let mut toml = fs::read_to_string(&path).expect("read bridge.toml");
    toml = toml.replace("retry-timeout = \"10s\"", "retry-timeout = \"soon\"");
    fs::write(&path, toml).expect("write bridge.toml");
    let bad = d.run(&["sync"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("store.s3.retry-timeout"),
        "{}",
        bad.stderr
    );
}
