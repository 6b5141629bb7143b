//! The `s3:` remote against a real S3 server: what the contract suite
//! does not cover (refused credentials, a missing bucket, a server that
//! stops and comes back).

use bridge_store::s3::{S3Remote, S3Spec};
use bridge_store::{Remote, RemoteError};
use bridge_testutil::files::{blob, header};
use bridge_testutil::s3::S3Server;

#[test]
fn wrong_credentials_and_a_missing_bucket_are_misconfigured() {
    let server = S3Server::start();
    server.create_bucket("bridge");
    let mut opts = server.options();
    opts.env
        .insert("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into());
    let remote = S3Remote::new(S3Spec::parse("s3://bridge/p").unwrap(), &opts).unwrap();
    let e = remote.list().unwrap_err();
    assert!(matches!(e, RemoteError::AccessDenied { .. }), "{e:?}");
    assert!(e.is_misconfigured());
    assert!(!format!("{e} {e:?}").contains("not-the-secret"), "{e:?}");
    let missing = server.remote("s3://no-such-bucket/p");
    let e = missing.list().unwrap_err();
    assert!(matches!(e, RemoteError::BucketNotFound { .. }), "{e:?}");
    assert!(e.is_misconfigured());
}

#[test]
fn a_stopped_server_is_unreachable_and_nothing_is_lost_when_it_is_back() {
    let mut server = S3Server::start();
    server.create_bucket("bridge");
    let remote = server.remote("s3://bridge/p");
    let mut files = header("ws");
    files.push(blob("before"));
    remote.put(&files).unwrap();
    server.stop();
    let later = blob("while down");
    let e = remote.put(std::slice::from_ref(&later)).unwrap_err();
    assert!(matches!(e, RemoteError::Unreachable { .. }), "{e:?}");
    assert!(matches!(
        remote.list(),
        Err(RemoteError::Unreachable { .. })
    ));
    let _again = S3Server::on_port(server.data(), server.port());
    remote.put(std::slice::from_ref(&later)).unwrap();
    let listed = remote.list().unwrap();
    assert!(listed.contains(&files[2].0) && listed.contains(&later.0));
}

#[test]
fn a_prefix_holding_other_objects_is_not_a_store() {
    let server = S3Server::start();
    server.create_bucket("bridge");
    std::fs::create_dir_all(server.data().join("bridge/photos")).unwrap();
    std::fs::write(server.data().join("bridge/photos/cat.jpg"), b"jpg").unwrap();
    let remote = server.remote("s3://bridge/photos");
    assert!(matches!(remote.list(), Err(RemoteError::NotAStore { .. })));
    // Another prefix of the same bucket is free.
    assert!(server.remote("s3://bridge/pool").list().unwrap().is_empty());
}

#[test]
fn a_server_that_accepts_and_never_answers_is_unreachable_after_the_stall_timeout() {
    // A host that takes the connection and then says nothing (issue 12,
    // item 15, for git): the stall timeout ends each try, the retries run
    // out, and the remote is offline rather than hung.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().take(16) {
            held.push(conn);
        }
        // Holds them until the test process ends.
        std::thread::park();
    });
    let mut opts = bridge_store::s3::S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        max_retries: 1,
        retry_timeout: std::time::Duration::from_secs(30),
        stall_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    opts.env.insert("AWS_ACCESS_KEY_ID".into(), "k".into());
    opts.env.insert("AWS_SECRET_ACCESS_KEY".into(), "s".into());
    let remote = S3Remote::new(S3Spec::parse("s3://bridge/p").unwrap(), &opts).unwrap();
    let e = remote.list().unwrap_err();
    assert!(matches!(e, RemoteError::Unreachable { .. }), "{e:?}");
}
