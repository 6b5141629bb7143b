//! A remote that cannot be used (issue 17, item 9): unreachable means
//! offline (the work goes on locally, `sync` exits 4), misconfigured means
//! an error with exit code 7 that says what was kept on this device; and
//! `init --remote dir:NEW` creates the folder.

use std::fs;
use std::net::TcpListener;

use crate::harness::{Device, dir_remote, temp_dir};

/// Exit code of a misconfigured remote (README, "Exit codes").
const MISCONFIGURED: i32 = 7;
/// Exit code of an unreachable remote.
const OFFLINE: i32 = 4;

/// A device whose workspace has `remote` set by hand in bridge.toml (as a
/// person edits it), never synced with it.
fn device_with_remote(name: &str, remote: &str) -> Device {
    let d = Device::new(name);
    d.ok(&["init"]);
    d.set_store_settings(&format!("remote = \"{remote}\"\n"));
    d
}

#[test]
fn a_git_repository_that_does_not_exist_is_misconfigured_and_the_batch_is_kept() {
    let tmp = temp_dir("missing-repo");
    let remote = format!("git:{}", tmp.path().join("missing.git").display());
    let d = device_with_remote("missing-repo", &remote);

    let sub = d
        .run(&["submit", "--name", "kept", "--", "echo", "kept"])
        .expect_code(MISCONFIGURED);
    assert!(
        sub.stderr.contains("Error: batch ")
            && sub
                .stderr
                .contains("is stored on this device but was not sent to the remote")
            && sub.stderr.contains("repository not found")
            && sub
                .stderr
                .contains("Hint: fix `remote` (or `blobs`, if set) under [store]"),
        "{}",
        sub.stderr
    );
    // The batch the message names is stored, under the short id it gave.
    let task = d.task("kept");
    assert_eq!(task.status, "pending");
    let short = &task.batch[..12];
    assert!(sub.stdout.contains(short), "{}\n{task:?}", sub.stdout);

    // Every command that syncs says the same, with the same code.
    let sync = d.run(&["sync"]).expect_code(MISCONFIGURED);
    assert!(
        sync.stderr.contains("repository not found"),
        "{}",
        sync.stderr
    );
    let cancel = d.run(&["cancel", "kept"]).expect_code(MISCONFIGURED);
    assert!(
        cancel
            .stderr
            .contains("the cancel is stored on this device"),
        "{}",
        cancel.stderr
    );
    assert_eq!(d.task("kept").status, "cancelled");
    d.run(&["work"]).expect_code(MISCONFIGURED);
}

#[test]
fn an_unreachable_git_host_is_offline_and_submit_still_succeeds() {
    // A loopback port nobody listens on: connection refused.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.local_addr().expect("its address").port()
    };
    let remote = format!("git:http://127.0.0.1:{port}/store.git");
    let d = device_with_remote("closed-port", &remote);

    let sub = d.ok(&["submit", "--name", "local", "--", "echo", "local"]);
    assert!(
        sub.stderr.contains("offline:") && sub.stderr.contains("saved on this device"),
        "{}",
        sub.stderr
    );
    assert!(!sub.stderr.contains("Error:"), "{}", sub.stderr);
    let sync = d.run(&["sync", "--json"]).expect_code(OFFLINE);
    assert_eq!(sync.json()["status"], "offline", "{}", sync.stdout);
    let work = d.ok(&["work"]);
    assert!(work.stderr.contains("not synced"), "{}", work.stderr);
    assert_eq!(d.task("local").status, "done");
}

#[test]
fn a_folder_that_never_existed_is_misconfigured_until_it_is_created() {
    let tmp = temp_dir("typo-folder");
    let folder = tmp.path().join("pool");
    let d = device_with_remote("typo-folder", &dir_remote(&folder));

    let sub = d
        .run(&["submit", "--name", "first", "--", "true"])
        .expect_code(MISCONFIGURED);
    assert!(
        sub.stderr.contains("never synced with it") && sub.stderr.contains("Hint: create it"),
        "{}",
        sub.stderr
    );
    assert!(!folder.exists(), "a sync created the remote folder");

    // Created: the sync goes through, and from then on a missing folder is
    // a drive not mounted (offline), not a typo.
    fs::create_dir(&folder).expect("mkdir the store");
    d.ok(&["sync"]);
    fs::rename(&folder, tmp.path().join("unplugged")).expect("unplug");
    d.run(&["sync"]).expect_code(OFFLINE);
    let sub = d.ok(&["submit", "--name", "second", "--", "true"]);
    assert!(sub.stderr.contains("offline:"), "{}", sub.stderr);
}

#[test]
fn init_creates_a_new_store_folder_but_not_its_missing_parents() {
    let tmp = temp_dir("init-new-folder");
    let folder = tmp.path().join("new-pool");
    let d = Device::new("init-new-folder");
    let init = d.ok(&["init", "--remote", &dir_remote(&folder), "--json"]);
    let v = init.json();
    assert_eq!(v["synced"], true, "{v}");
    assert_eq!(v["remote"], dir_remote(&folder), "{v}");
    assert!(
        folder.join("FORMAT").is_file(),
        "init made no store in {folder:?}"
    );

    // A missing parent may be a drive not mounted: refused, nothing made.
    let deep = tmp.path().join("not-mounted").join("pool");
    let e = Device::new("init-no-parent");
    let refused = e
        .run(&["init", "--remote", &dir_remote(&deep)])
        .expect_code(MISCONFIGURED);
    assert!(
        refused.stderr.contains("its parent folder does not exist")
            && refused.stderr.contains("Hint:"),
        "{}",
        refused.stderr
    );
    assert!(!tmp.path().join("not-mounted").exists());
    assert!(
        !e.path("bridge.toml").exists(),
        "a refused init wrote bridge.toml"
    );
}
