//! Membership changes that must lose nothing and trust nothing stale:
//! removing a member after compaction, rotating a runner's identity, a
//! roster rolled back by someone with write access to the store, and a
//! worker-role key trying to act as a submitter (issue 12, items 1, 2, 4
//! and 9).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::{Device, Run, dir_remote, files_under, temp_dir};

/// A workspace of `a` whose store is a new shared folder.
fn shared(a: &Device, label: &str) -> (tempfile::TempDir, String) {
    let dir = temp_dir(label);
    let remote = dir_remote(dir.path());
    a.ok(&["init", "--remote", &remote]);
    (dir, remote)
}

fn member_id(d: &Device) -> String {
    d.ok(&["whoami", "--json"]).json()["member"]
        .as_str()
        .expect("whoami prints a member id")
        .to_owned()
}

/// No line of `run`'s stderr refuses or skips a file.
fn assert_no_refusal(run: &Run) {
    for word in ["refused", "skipped", "removed in epoch"] {
        assert!(
            !run.stderr.contains(word),
            "`bridge {}` warned ({word}):\n{}",
            run.args.join(" "),
            run.stderr
        );
    }
}

fn status_of(d: &Device, task: &str) -> String {
    d.task(task).status
}

/// Store names (relative paths) of the roster files in a store folder.
fn roster_files(store: &Path) -> BTreeSet<PathBuf> {
    let dir = store.join("chunks").join("roster");
    files_under(&dir)
        .into_iter()
        .map(|p| {
            p.strip_prefix(store)
                .expect("under the store")
                .to_path_buf()
        })
        .collect()
}

#[test]
fn removing_a_member_after_compaction_keeps_every_file_they_wrote() {
    let a = Device::new("mem-admin");
    let (_shared, remote) = shared(&a, "mem-remove-compacted");
    let b = Device::new("mem-b");
    b.join_as(&a, &remote, "submit");
    b.ok(&["submit", "--name", "b-done", "--", "echo", "by-b"]);
    b.ok(&["work"]);
    a.ok(&["sync"]);
    assert_eq!(status_of(&a, "b-done"), "done");
    // The admin compacts: B's chunks now live inside a snapshot only.
    a.ok(&["compact"]);
    // B goes on working; the admin does not sync before removing B.
    b.ok(&["submit", "--name", "b-later", "--", "echo", "later"]);
    b.ok(&["work"]);

    let removed = a.ok(&["members", "remove", "mem-b"]);
    assert!(
        removed.stdout.contains("Removed mem-b"),
        "{}",
        removed.stdout
    );
    assert_no_refusal(&removed);
    for t in ["b-done", "b-later"] {
        assert_eq!(status_of(&a, t), "done", "{t} after the removal");
    }
    assert_no_refusal(&a.ok(&["status"]));

    // A compaction and an archive after the removal keep them too.
    a.ok(&["compact"]);
    for t in ["b-done", "b-later"] {
        assert_eq!(status_of(&a, t), "done", "{t} after a later compaction");
    }
    a.ok(&["archive", "--older-than", "0s"]);
    let shown = a.ok(&["show", "b-done", "--json"]).json();
    assert_eq!(shown["status"], "done", "{shown}");

    // A device that joins later sees every result B wrote before removal.
    let c = Device::new("mem-c");
    c.join_as(&a, &remote, "submit");
    let shown = c.ok(&["show", "b-later", "--json"]).json();
    assert_eq!(shown["status"], "done", "{shown}");
    assert_no_refusal(&c.ok(&["status"]));

    // What B signs from now on is refused everywhere.
    b.ok(&["submit", "--name", "b-after", "--", "echo", "after"]);
    a.ok(&["sync"]);
    assert!(
        !a.ls().iter().any(|t| t.name == "b-after"),
        "a removed member's later task was accepted"
    );
}

#[test]
fn removing_a_member_with_the_store_unreachable_needs_offline() {
    let a = Device::new("mem-off-admin");
    let shared_dir = temp_dir("mem-remove-offline");
    let store = shared_dir.path().join("pool");
    fs::create_dir(&store).expect("create the store folder");
    let remote = dir_remote(&store);
    a.ok(&["init", "--remote", &remote]);
    let b = Device::new("mem-off-b");
    b.join_as(&a, &remote, "submit");
    b.ok(&["submit", "--name", "b-task", "--", "echo", "b"]);
    b.ok(&["work"]);
    a.ok(&["sync"]);
    // The store goes away (an unmounted USB stick).
    fs::rename(&store, shared_dir.path().join("elsewhere")).expect("move the store");
    let refused = a.run(&["members", "remove", "mem-off-b"]).expect_code(4);
    assert!(
        refused.stderr.contains("--offline") && refused.stderr.contains("mem-off-b"),
        "{}",
        refused.stderr
    );
    let members = a.ok(&["members", "ls", "--json"]).json();
    assert!(
        members["members"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["name"] == "mem-off-b"),
        "a refused removal changed the roster: {members}"
    );
    a.ok(&["members", "remove", "mem-off-b", "--offline"]);
    assert_eq!(status_of(&a, "b-task"), "done");
}

#[test]
fn rotating_a_runner_keeps_its_results_and_retires_its_old_key() {
    let a = Device::new("mem-rot-admin");
    let (_shared, remote) = shared(&a, "mem-rotate");
    let root = member_id(&a);
    let old_secret = a
        .ok(&["members", "add-runner", "ci-1"])
        .stdout
        .trim()
        .to_owned();
    for i in 0..3 {
        let name = format!("t{i}");
        a.ok(&["submit", "--name", &name, "--", "echo", &name]);
    }
    let mut r = Device::new("ci-1");
    r.set_env("BRIDGE_IDENTITY", &old_secret);
    r.ok(&["join", &remote, "--root", &root]);
    r.ok(&["work"]);
    a.ok(&["sync"]);
    a.ok(&["compact"]);
    for i in 0..3 {
        assert_eq!(status_of(&a, &format!("t{i}")), "done");
    }

    // A task the old key can still read (sealed before the rotation).
    a.ok(&["submit", "--name", "after", "--", "echo", "after"]);
    let rotated = a.ok(&["members", "rotate-runner", "ci-1"]);
    let new_secret = rotated.stdout.trim().to_owned();
    assert!(
        new_secret.starts_with("BRIDGE-IDENTITY-1:"),
        "{}",
        rotated.stdout
    );
    assert_ne!(new_secret, old_secret);
    assert!(rotated.stderr.contains("retired"), "{}", rotated.stderr);
    assert!(rotated.stderr.contains("bridge.toml"), "{}", rotated.stderr);
    assert_no_refusal(&rotated);
    for i in 0..3 {
        assert_eq!(
            status_of(&a, &format!("t{i}")),
            "done",
            "t{i} after rotation"
        );
    }
    let members = a.ok(&["members", "ls", "--json"]).json();
    let runner: Vec<_> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["name"] == "ci-1")
        .collect();
    assert_eq!(runner.len(), 1, "{members}");
    assert_eq!(runner[0]["role"], "worker");
    assert_eq!(members["removed"].as_array().map(Vec::len), Some(1));

    // The old key's work is refused from now on; the new key works. The
    // old runner does run `after` (it has not seen its retirement) and
    // pushes the result, which nobody accepts.
    let old_run = r.run(&["work"]);
    assert!(
        old_run.stderr.contains("after") || old_run.stdout.contains("after"),
        "the old key did not even try `after`: {old_run:?}"
    );
    a.ok(&["sync"]);
    assert_eq!(
        status_of(&a, "after"),
        "pending",
        "the old key's result counted"
    );
    let mut r2 = Device::new("ci-1-new");
    r2.set_env("BRIDGE_IDENTITY", &new_secret);
    r2.ok(&["join", &remote, "--root", &root]);
    r2.ok(&["work"]);
    a.ok(&["sync"]);
    assert_eq!(status_of(&a, "after"), "done");
    for i in 0..3 {
        assert_eq!(status_of(&a, &format!("t{i}")), "done");
    }

    // Only workers are rotated.
    let refused = a
        .run(&["members", "rotate-runner", "mem-rot-admin"])
        .expect_code(1);
    assert!(
        refused.stderr.contains("not a runner"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_worker_key_cannot_submit_cancel_or_retry() {
    let a = Device::new("mem-w-admin");
    let (_shared, remote) = shared(&a, "mem-worker-role");
    let root = member_id(&a);
    let secret = a
        .ok(&["members", "add-runner", "w1"])
        .stdout
        .trim()
        .to_owned();
    a.ok(&["submit", "--name", "fails", "--", "sh", "-c", "exit 3"]);
    a.run(&["work"]);
    a.ok(&["submit", "--name", "waits", "--", "echo", "w"]);
    let mut w = Device::new("w1");
    w.set_env("BRIDGE_IDENTITY", &secret);
    w.ok(&["join", &remote, "--root", &root]);
    let failed: Vec<_> = w
        .ls()
        .into_iter()
        .filter(|t| t.status == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let before = files_under(&w.store());
    for (args, what) in [
        (vec!["submit", "--name", "x", "--", "echo", "x"], "submit"),
        (vec!["cancel", "waits"], "cancel"),
        (vec!["retry", &failed[0].id[..]], "retry"),
    ] {
        let run = w.run(&args).expect_code(1);
        assert!(
            run.stderr.contains("worker role") && run.stderr.contains(what),
            "`{args:?}`:\n{}",
            run.stderr
        );
        assert!(run.stderr.contains("admin"), "{}", run.stderr);
        assert!(!run.stdout.contains("Cancelled") && !run.stdout.contains("pending again"));
    }
    assert_eq!(
        files_under(&w.store()),
        before,
        "a refused command wrote files"
    );
    a.ok(&["sync"]);
    assert_eq!(status_of(&a, "waits"), "pending");
}

#[test]
fn a_roster_rolled_back_by_a_removed_member_is_refused() {
    let a = Device::new("mem-rb-admin");
    let (shared_dir, remote) = shared(&a, "mem-rollback");
    let store = shared_dir.path().to_path_buf();
    let root = member_id(&a);
    let runner_secret = a
        .ok(&["members", "add-runner", "ci"])
        .stdout
        .trim()
        .to_owned();
    let b = Device::new("mem-rb-b");
    b.join_as(&a, &remote, "submit");
    let m = Device::new("mem-rb-mallory");
    m.join_as(&a, &remote, "submit");
    // A device added now that joins only after the rollback.
    let d = Device::new("mem-rb-new");
    d.ok(&["keygen"]);
    let d_key = d.ok(&["whoami", "--json"]).json()["public_key"]
        .as_str()
        .expect("a public key")
        .to_owned();
    let added = a.ok(&["members", "add", "mem-rb-new", &d_key]);
    // The join line it prints carries the anchor bridge.toml now pins.
    let pinned_now = fs::read_to_string(a.path("bridge.toml")).expect("bridge.toml");
    let anchor = pinned_now
        .lines()
        .find_map(|l| l.strip_prefix("roster = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a pin after members add");
    assert!(
        added.stdout.contains(&format!("--roster {anchor}")),
        "{}",
        added.stdout
    );
    assert!(added.stderr.contains("commit and push"), "{}", added.stderr);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    let before = roster_files(&store);

    a.ok(&["members", "remove", "mem-rb-mallory"]);
    let toml = fs::read_to_string(a.path("bridge.toml")).expect("bridge.toml");
    assert!(
        toml.contains("roster = \""),
        "no pin in bridge.toml:\n{toml}"
    );
    b.ok(&["sync"]);

    // Mallory, who can still write to the folder, deletes the roster files
    // of her removal, then submits a task as if she were a member.
    let added: Vec<PathBuf> = roster_files(&store).difference(&before).cloned().collect();
    assert!(!added.is_empty());
    for f in &added {
        fs::remove_file(store.join(f)).expect("delete a roster file");
    }
    let marker_dir = temp_dir("mem-rb-marker");
    let marker = marker_dir.path().join("mallory-ran");
    let script = format!("touch {}", marker.display());
    m.ok(&["submit", "--name", "evil", "--", "sh", "-c", &script]);

    // A fresh CI runner (a checkout of the repository: bridge.toml only).
    let mut fresh = Device::new("mem-rb-runner");
    fresh.set_env("BRIDGE_IDENTITY", &runner_secret);
    fs::copy(a.path("bridge.toml"), fresh.path("bridge.toml")).expect("copy bridge.toml");
    let run = fresh.run(&["run", "--budget", "1m"]);
    assert_ne!(
        run.code, 0,
        "the runner accepted a rolled-back roster:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert!(
        !marker.exists(),
        "a removed member's task ran on a fresh runner"
    );

    // A new device joining with the anchor `members add` prints.
    let pin = toml
        .lines()
        .find_map(|l| l.strip_prefix("roster = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the pin")
        .to_owned();
    let joined = d.run(&["join", &remote, "--root", &root, "--roster", &pin]);
    assert_ne!(joined.code, 0, "{}", joined.stderr);
    assert!(joined.stderr.contains("rolled back"), "{}", joined.stderr);

    // A device that saw the removal, whose replica is rebuilt from the
    // rolled-back store, refuses it too.
    fs::remove_dir_all(b.path(".bridge")).expect("drop B's replica");
    let work = b.run(&["work"]);
    assert_ne!(work.code, 0, "{}", work.stderr);
    assert!(work.stderr.contains("rolled back"), "{}", work.stderr);
    assert!(
        !marker.exists(),
        "a removed member's task ran on a member's device"
    );

    // The admin's device still holds the removal: a sync puts it back, and
    // then everyone trusts the store again (and refuses Mallory's task).
    a.ok(&["sync"]);
    b.ok(&["work"]);
    let run = fresh.run(&["run", "--budget", "1m"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!marker.exists(), "a removed member's task ran");
}

#[test]
fn a_pin_naming_another_or_a_malformed_epoch_is_refused() {
    let a = Device::new("mem-pin-admin");
    let (_shared, _remote) = shared(&a, "mem-pin");
    a.ok(&["submit", "--name", "t", "--", "echo", "t"]);
    let path = a.path("bridge.toml");
    let good = fs::read_to_string(&path).expect("bridge.toml");
    let pin = good
        .lines()
        .find_map(|l| l.strip_prefix("roster = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("init pins epoch 0")
        .to_owned();
    assert!(pin.starts_with("0:"), "{pin}");

    // Epoch 0 under another hash: a replaced or forked roster.
    let other = format!("0:{}", "ab".repeat(32));
    fs::write(&path, good.replace(&pin, &other)).expect("write bridge.toml");
    let run = a.run(&["status"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("another epoch 0"), "{}", run.stderr);
    let work = a.run(&["work"]);
    assert_eq!(work.code, 1, "{}", work.stderr);
    assert_eq!(a.run(&["ls", "--json"]).code, 1);

    // A later epoch than the store holds.
    let later = format!("5:{}", "ab".repeat(32));
    fs::write(&path, good.replace(&pin, &later)).expect("write bridge.toml");
    let run = a.run(&["status"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("older than epoch 5") && run.stderr.contains("rolled back"),
        "{}",
        run.stderr
    );

    // Not an anchor at all: the file and the field are named.
    fs::write(&path, good.replace(&pin, "five")).expect("write bridge.toml");
    let run = a.run(&["status"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("`roster` under [workspace]") && run.stderr.contains("bridge.toml"),
        "{}",
        run.stderr
    );

    fs::write(&path, &good).expect("write bridge.toml");
    a.ok(&["work"]);
    assert_eq!(status_of(&a, "t"), "done");
}

/// The record of the newest roster this device has seen fails closed: a
/// damaged or unreadable `roster-seen.toml` (something else on the device
/// wrote it) refuses the command, naming the file, and is left as it is;
/// going on would accept an older roster and overwrite every workspace's
/// record.
#[test]
fn a_damaged_record_of_the_rosters_seen_is_refused_not_overwritten() {
    let a = Device::new("mem-seen");
    a.ok(&["init"]);
    a.ok(&["status"]);
    let seen = a.config_dir().join("roster-seen.toml");
    assert!(seen.exists(), "the device records the roster it verified");
    std::fs::write(&seen, "workspaces = [not toml").expect("damage");
    let run = a.run(&["status"]).expect_code(1);
    assert!(
        run.stderr.contains("roster-seen.toml") && run.stderr.contains("damaged"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&seen).expect("still there"),
        "workspaces = [not toml"
    );
    // A FIFO in its place is refused too, without hanging.
    std::fs::remove_file(&seen).expect("rm");
    nix::unistd::mkfifo(&seen, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let run = a.spawn("fifo", &["status"]).wait();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    std::fs::remove_file(&seen).expect("rm");
    a.ok(&["status"]);
}
