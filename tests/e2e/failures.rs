//! Issue 12, worker and remote failures: a device with a wrong clock, a
//! full local disk, a full remote, a remote that never answers. Each must
//! leave the rest of the pool working.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use crate::harness::Device;

/// A server on 127.0.0.1 that accepts connections and never answers (nor
/// closes them) while it lives: a hung host, as git sees it.
struct SilentServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("cannot make the listener non-blocking");
        let port = listener.local_addr().expect("a bound address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SilentServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Points the workspace of `d` at `remote` with a stall timeout.
fn set_remote(d: &Device, remote: &str, stall_timeout: &str) {
    let path = d.path("bridge.toml");
    let text = fs::read_to_string(&path).expect("cannot read bridge.toml");
    let text = match text.find("[store]\n") {
        Some(at) => {
            let end = at + "[store]\n".len();
            format!(
                "{}remote = \"{remote}\"\nstall-timeout = \"{stall_timeout}\"\n{}",
                &text[..end],
                &text[end..]
            )
        }
        None => {
            format!("{text}\n[store]\nremote = \"{remote}\"\nstall-timeout = \"{stall_timeout}\"\n")
        }
    };
    fs::write(&path, text).expect("cannot write bridge.toml");
}

/// Issue 12, item 15: a remote that accepts the connection and never
/// answers kept commands for 363 s (http) and over 590 s (git://). With
/// `[store] stall-timeout = "2s"`, `sync` gives up and says the remote did
/// not answer (exit 4, offline), and `work` runs the task on the local
/// replica and says it did not sync.
#[test]
fn a_silent_remote_does_not_hang_sync_or_work() {
    let server = SilentServer::start();
    for scheme in ["http", "git"] {
        let d = Device::new(&format!("silent-{scheme}"));
        d.ok(&["init"]);
        set_remote(
            &d,
            &format!("git:{scheme}://127.0.0.1:{}/store.git", server.port),
            "2s",
        );
        d.ok(&["submit", "--offline", "--name", "local", "--", "true"]);
        let sync = d.run(&["sync"]).expect_code(4);
        assert!(
            sync.stderr.contains("did not answer") && sync.stderr.contains("stall timeout"),
            "{scheme}: {}",
            sync.stderr
        );
        let work = d.run(&["work"]).expect_code(0);
        assert!(
            work.stderr.contains("not synced"),
            "{scheme}: {}",
            work.stderr
        );
        assert_eq!(d.task("local").status, "done", "{scheme}");
    }
}

/// A day and an hour, in milliseconds, for `BRIDGE_TEST_CLOCK_OFFSET_MS`
/// (honoured by debug builds only).
const DAY_MS: &str = "86400000";
const HOUR_BEHIND_MS: &str = "-3600000";

/// An admin device (the observer) and a worker device whose clock is
/// `offset_ms` off, sharing a `dir:` store, with `lease` and `skew`. The
/// task runs for five minutes unless `marker` exists.
fn skewed_pair(
    label: &str,
    offset_ms: &str,
    (lease, skew): (&str, &str),
) -> (Device, Device, std::path::PathBuf, TempDir) {
    let store = crate::harness::temp_dir(&format!("{label}-store"));
    let remote = crate::harness::dir_remote(store.path());
    let admin = Device::new(&format!("{label}-admin"));
    admin.ok(&["init", "--remote", &remote]);
    admin.set_lease(lease, skew);
    let mut skewed = Device::new(&format!("{label}-skewed"));
    skewed.join_as(&admin, &remote, "worker");
    skewed.set_lease(lease, skew);
    skewed.set_env("BRIDGE_TEST_CLOCK_OFFSET_MS", offset_ms);
    let marker = admin.scratch("fast");
    let script = format!(
        "if [ -e {m} ]; then echo fast; else sleep 300; fi",
        m = marker.display()
    );
    // The admin watches the pool before the claim appears.
    admin.ok(&["status"]);
    admin.ok(&["submit", "--name", "slow", "--", "sh", "-c", &script]);
    admin.ok(&["sync"]);
    (admin, skewed, marker, store)
}

/// Checks that the claim on `slow` was made on a clock at least
/// `offset_ms` ahead of this one (behind, when negative).
fn assert_claim_offset(admin: &Device, offset_ms: i64) {
    let show = admin.show("slow");
    let at = show["claims"][0]["at"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_else(|| panic!("no claim: {show}"))
        .as_millis() as i64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as i64;
    let skew = at - now;
    let ok = if offset_ms >= 0 {
        skew >= offset_ms
    } else {
        skew <= offset_ms
    };
    assert!(
        ok,
        "the claim was made {skew} ms off this clock, not {offset_ms}: is BRIDGE_TEST_CLOCK_OFFSET_MS honoured (debug build)?"
    );
}

/// Polls (syncing the admin) until its view of `slow` is `status`.
fn admin_sees(admin: &Device, status: &str) {
    crate::harness::poll(&format!("the admin to see the task {status}"), || {
        admin.ok(&["sync"]);
        admin.task("slow").status == status
    });
}

/// Issue 12, item 12: a device whose clock ran a day ahead claimed a task
/// and was killed; every other device showed it `running` for a day. The
/// lease is now bounded on the observer's clock: the admin sees the task
/// pending again a lease and the skew margin after it first saw the claim,
/// and runs it.
#[test]
fn a_claim_from_a_clock_a_day_ahead_does_not_block_the_task_for_a_day() {
    let (admin, skewed, marker, _store) = skewed_pair("ahead", DAY_MS, ("3s", "1s"));
    skewed.ok(&["sync"]);
    let worker = skewed.spawn("work", &["work"]);
    admin_sees(&admin, "running");
    // The claim really carries the skewed clock (the offset is honoured by
    // debug builds only: a release build would make this test vacuous).
    assert_claim_offset(&admin, 12 * 3_600_000);
    let shown = admin.ok(&["show", "slow"]).stdout;
    assert!(shown.contains("its writer's clock says"), "{shown}");
    worker.kill();
    admin_sees(&admin, "pending");
    fs::write(&marker, "").expect("cannot write the marker");
    admin.ok(&["work"]);
    assert_eq!(admin.task("slow").status, "done");
}

/// Issue 12, item 12: a device whose clock runs an hour behind holds a
/// live claim; a device that watched the claim appear must not see it
/// expired (it would run the task again). Before, `lease_until` an hour in
/// the past made the task pending at once on the admin.
#[test]
fn a_live_claim_from_a_clock_an_hour_behind_is_not_stolen() {
    let (admin, skewed, _marker, _store) = skewed_pair(
        "behind",
        HOUR_BEHIND_MS,
        // Renewals reach the admin through pushes at least 2 s apart: a
        // lease of a few of those, so that a live claim never lapses.
        ("6s", "2s"),
    );
    skewed.ok(&["sync"]);
    let worker = skewed.spawn("work", &["work"]);
    admin_sees(&admin, "running");
    assert_claim_offset(&admin, -30 * 60_000);
    // While the claimant renews (three renewals seen), the task is running
    // on every look.
    let mut leases = std::collections::BTreeSet::new();
    crate::harness::poll("three renewals of the claim", || {
        admin.ok(&["sync"]);
        let show = admin.show("slow");
        assert_eq!(show["status"], "running", "{show}");
        if let Some(claims) = show["claims"].as_array() {
            leases.extend(
                claims
                    .iter()
                    .filter_map(|c| c["lease_until"].as_str().map(str::to_owned)),
            );
        }
        leases.len() >= 3
    });
    drop(worker);
}

/// Runs `bridge ARGS` of `d` in a mount namespace of its own where `full`
/// is a tiny tmpfs with no space and no inode left: a real full disk,
/// seen only by that process (as root `unshare -m`; otherwise in a user
/// namespace, `unshare -Urm`, which needs no privilege where user
/// namespaces are allowed). Returns `None`, with the reason printed, where
/// neither works.
fn run_on_full_disk(
    d: &Device,
    full: &std::path::Path,
    args: &[&str],
) -> Option<crate::harness::Run> {
    // Fill the tmpfs: data until ENOSPC, then files until no inode is left.
    // The filling lies in the folder of a live worker (its lock held on fd
    // 9, which bridge inherits), so a starting worker's clean-up of dead
    // workers' folders does not free the space.
    let script = r#"mount -t tmpfs -o size=64k,nr_inodes=16 tmpfs "$1" || exit 99
mkdir "$1/w-0-fill" && exec 9>"$1/w-0-fill.lock" && flock -n 9 || exit 98
dd if=/dev/zero of="$1/w-0-fill/fill" bs=4k count=64 2>/dev/null
i=0; while touch "$1/w-0-fill/i$i" 2>/dev/null; do i=$((i+1)); done
shift; exec "$@""#;
    run_in_namespace(d, full, script, args)
}

/// [`run_on_full_disk`] for a folder whose files must stay visible (a
/// store): they are copied into the tmpfs, then its data space is filled
/// (new empty files can still be made, as on a real full disk).
fn run_with_full_folder(
    d: &Device,
    full: &std::path::Path,
    args: &[&str],
) -> Option<crate::harness::Run> {
    // The copy sits beside the folder, in the test's own temporary folder,
    // and is removed once restored: nothing is left in the host's /tmp.
    let script = r#"copy=$(mktemp -d "$1.copy.XXXXXX") && cp -a "$1/." "$copy/" || exit 98
mount -t tmpfs -o size=8m tmpfs "$1" || exit 99
cp -a "$copy/." "$1/" && rm -rf "$copy" || exit 97
dd if=/dev/zero of="$1/.fill" bs=64k 2>/dev/null
shift; exec "$@""#;
    run_in_namespace(d, full, script, args)
}

/// Runs `bridge ARGS` of `d` after `script` (given the folder as `$1` and
/// the command after it) in a new mount namespace.
fn run_in_namespace(
    d: &Device,
    full: &std::path::Path,
    script: &str,
    args: &[&str],
) -> Option<crate::harness::Run> {
    fs::create_dir_all(full).expect("cannot create the folder to fill");
    let root = nix_is_root();
    let ns: &[&str] = if root { &["-m"] } else { &["-Urm"] };
    let probe = std::process::Command::new("unshare")
        .args(ns)
        .args(["--", "sh", "-c", "mount -t tmpfs tmpfs \"$1\"", "sh"])
        .arg(full)
        .output();
    let why = match probe {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "cannot mount a tmpfs in a new mount namespace here ({})",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    };
    if let Some(why) = why {
        // CI (which runs .ci/run as root) must run these tests, never skip them.
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipped: {why}");
        return None;
    }
    let inner = d.command_in(&d.dir, true, args);
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(ns)
        .args(["--", "sh", "-c", script, "sh"])
        .arg(full);
    cmd.arg(inner.get_program()).args(inner.get_args());
    cmd.env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.current_dir(&d.dir).stdin(std::process::Stdio::null());
    let out = cmd.output().expect("cannot run unshare");
    Some(crate::harness::Run {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Issue 12, item 13: a worker whose disk is full marked every pending
/// task `failed` for everyone within milliseconds. Its working folder is
/// now on a full file system: `bridge work` exits with code 5 saying this
/// machine cannot run tasks, records no attempt, releases its claims, and
/// the tasks stay pending for a healthy worker, which runs them.
#[test]
fn a_full_local_disk_does_not_fail_the_pool() {
    let d = Device::new("full-disk");
    d.ok(&["init"]);
    d.write(
        "many.yaml",
        "tasks:\n  - name: t\n    matrix: { n: [1, 2, 3, 4, 5] }\n    run: echo ${{ matrix.n }}\n",
    );
    d.ok(&["submit", "many.yaml"]);
    let work_dir = d.path(".bridge/work");
    let Some(run) = run_on_full_disk(&d, &work_dir, &["work", "--parallel", "2"]) else {
        return;
    };
    let run = run.expect_code(5);
    assert!(
        run.stderr.contains("this machine cannot run tasks")
            && run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    let tasks = d.ls();
    assert_eq!(tasks.len(), 5);
    for t in &tasks {
        assert_eq!((t.status.as_str(), t.attempts), ("pending", 0), "{t:?}");
    }
    // With no inode left this worker stops before it claims anything (its
    // working folder cannot be made); a claim it made would be released.
    // `tasks_failing_on_a_full_disk_are_not_charged` has claims to release.
    for t in &tasks {
        let show = d.show(&t.id);
        assert!(
            show["claims"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| !c["released_at"].is_null())),
            "every claim is released: {show}"
        );
    }
    d.ok(&["work"]);
    assert_eq!(d.status().count("done"), 5);
}

/// Issue 12, item 13, a nearly full disk: the working folders and log
/// files can be made but nothing can be written into them, so every
/// command fails. Those failures are the machine's, not the tasks'.
#[test]
fn tasks_failing_on_a_full_disk_are_not_charged() {
    let d = Device::new("nearly-full-disk");
    d.ok(&["init"]);
    d.write(
        "many.yaml",
        "tasks:\n  - name: t\n    matrix: { n: [1, 2, 3] }\n    run: echo ${{ matrix.n }} > out.txt\n",
    );
    d.ok(&["submit", "many.yaml"]);
    let work_dir = d.path(".bridge/work");
    // Data space full, inodes left: folders and empty files can be made.
    // Filled in a live worker's folder, as in [`run_on_full_disk`].
    let script = r#"mount -t tmpfs -o size=64k tmpfs "$1" || exit 99
mkdir "$1/w-0-fill" && exec 9>"$1/w-0-fill.lock" && flock -n 9 || exit 98
dd if=/dev/zero of="$1/w-0-fill/fill" bs=4k 2>/dev/null
shift; exec "$@""#;
    let Some(run) = run_in_namespace(&d, &work_dir, script, &["work"]) else {
        return;
    };
    let run = run.expect_code(5);
    assert!(
        run.stderr.contains("this machine cannot run tasks"),
        "{}",
        run.stderr
    );
    // Nothing charged: no attempt counts as a failure (a task stopped
    // while the worker stopped is recorded as interrupted, as on Ctrl-C),
    // and the worker released what it claimed.
    let mut claims = 0;
    for t in d.ls() {
        let show = d.show(&t.id);
        let cs = show["claims"].as_array().cloned().unwrap_or_default();
        claims += cs.len();
        // Released, or ended by its attempt (a task that was running when
        // the worker stopped is recorded as interrupted).
        let ended: Vec<&serde_json::Value> = show["attempts"]
            .as_array()
            .map(|a| a.iter().map(|a| &a["key"]).collect())
            .unwrap_or_default();
        assert!(
            cs.iter()
                .all(|c| !c["released_at"].is_null() || ended.contains(&&c["key"])),
            "every claim is released or ended: {show}"
        );
        assert_eq!(
            (show["status"].as_str(), show["failures"].as_u64()),
            (Some("pending"), Some(0)),
            "{show}"
        );
    }
    assert!(
        claims > 0,
        "the worker claimed nothing: nothing was released"
    );
    d.ok(&["work"]);
    assert_eq!(d.status().count("done"), 3);
}

/// The other side of the same rule: a task that fills the disk itself and
/// fails is charged as usual (its folder is removed before the disk is
/// looked at), so it cannot stop every worker of the pool in turn.
#[test]
fn a_task_that_fills_the_disk_itself_is_charged() {
    // In its working folder, and in its TMPDIR (on the same disk).
    for (name, target) in [("hog", "big"), ("tmp-hog", "$TMPDIR/big")] {
        let d = Device::new(&format!("task-fills-disk-{name}"));
        d.ok(&["init"]);
        let script = format!("dd if=/dev/zero of={target} bs=4k 2>/dev/null; exit 1");
        d.ok(&["submit", "--name", name, "--", "sh", "-c", &script]);
        let work_dir = d.path(".bridge/work");
        let script = r#"mount -t tmpfs -o size=256k tmpfs "$1" || exit 99
shift; exec "$@""#;
        let Some(run) = run_in_namespace(&d, &work_dir, script, &["work"]) else {
            return;
        };
        run.expect_code(3);
        assert_eq!(d.task(name).status, "failed");
    }
}

/// Issue 12, item 14: a `dir:` remote with no space left blocked `work`
/// on the local replica (the sync before it failed). Now the sync says the
/// remote is full and goes on offline, the tasks run locally, and once the
/// remote has space again a sync pushes the results.
#[test]
fn a_full_remote_does_not_stop_local_work() {
    let store = crate::harness::temp_dir("full-remote-store");
    let remote = crate::harness::dir_remote(store.path());
    let d = Device::new("full-remote");
    d.ok(&["init", "--remote", &remote]);
    d.write(
        "many.yaml",
        "tasks:\n  - name: t\n    matrix: { n: [1, 2, 3] }\n    run: echo ${{ matrix.n }}\n",
    );
    // Submitted offline: the remote lacks the batch, so the first push of
    // `work` already meets the full disk.
    d.ok(&["submit", "--offline", "many.yaml"]);
    let Some(run) = run_with_full_folder(&d, store.path(), &["work"]) else {
        return;
    };
    let run = run.expect_code(0);
    assert!(
        run.stderr.contains("is full") && run.stderr.contains("3 done, 0 failed"),
        "{}",
        run.stderr
    );
    assert_eq!(d.status().count("done"), 3);
    // `sync` on the full remote: offline (exit 4), saying why.
    let Some(sync) = run_with_full_folder(&d, store.path(), &["sync"]) else {
        return;
    };
    let sync = sync.expect_code(4);
    assert!(sync.stderr.contains("is full"), "{}", sync.stderr);
    // Space again: everything goes.
    let pushed = d.ok(&["sync", "--json"]).json();
    assert!(pushed["pushed"].as_u64().is_some_and(|n| n > 0), "{pushed}");
}

/// Issue 19, item 2, with a full blob store: a pool keeping its documents
/// in git and its blobs in a folder (`[store] blobs`) whose disk is full.
/// `work` finishes locally; its attempts do not reach the repository
/// either (a document naming a blob that is not stored would give other
/// devices results they cannot fetch); once there is space, one `sync`
/// sends it all and another device reads the outputs.
#[test]
fn issue19_a_full_blob_store_holds_back_the_documents_until_there_is_space() {
    let tmp = crate::harness::temp_dir("full-blobs");
    let (bare, d) = crate::harness::laptop_on_bare_repo(tmp.path(), "full-blobs");
    let blobs = tmp.path().join("blobs");
    let blobs_spec = crate::harness::dir_remote(&blobs);
    fs::create_dir(&blobs).expect("the blob store's folder");
    d.set_store_settings(&format!("blobs = \"{blobs_spec}\"\n"));
    // A first blob, so that the blob store is a store before it fills up.
    d.write("in.txt", "an input\n");
    d.ok(&[
        "submit", "--name", "first", "--input", "in.txt", "--", "cat", "in.txt",
    ]);
    d.ok(&["sync"]);
    assert!(blobs.join("FORMAT").is_file());
    let reader = Device::new("full-blobs-reader");
    reader.join_as(&d, &format!("git:file://{}", bare.display()), "submit");
    let config = fs::read_to_string(reader.path("bridge.toml")).expect("bridge.toml");
    reader.write(
        "bridge.toml",
        &config.replacen(
            "[store]\n",
            &format!("[store]\nblobs = \"{blobs_spec}\"\n"),
            1,
        ),
    );
    d.write(
        "outs.yaml",
        "tasks:\n  - name: t\n    matrix: { n: [1, 2, 3] }\n    outputs: [out.bin]\n    run: head -c 20000 /dev/urandom > out.bin; echo ${{ matrix.n }}\n",
    );
    d.ok(&["submit", "--offline", "outs.yaml"]);
    let Some(run) = run_with_full_folder(&d, &blobs, &["work"]) else {
        return;
    };
    let run = run.expect_code(0);
    assert!(
        run.stderr.contains("is full") && run.stderr.contains("4 done, 0 failed"),
        "{}",
        run.stderr
    );
    assert_eq!(d.status().count("done"), 4);
    // The tasks and their claims reached the repository (they name no
    // blob), no attempt did: each names an output the blob store lacks.
    reader.ok(&["sync"]);
    let seen = reader.ls();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.iter().all(|t| t.attempts == 0), "{seen:?}");
    // Space again: everything goes, and the outputs can be read.
    d.ok(&["sync"]);
    reader.ok(&["sync"]);
    assert_eq!(reader.status().count("done"), 4);
    let t = reader
        .ls()
        .into_iter()
        .find(|t| t.name == "t[n=2]")
        .expect("task t[n=2]");
    let out = reader.path("out");
    reader.ok(&["outputs", &t.id, "--to", out.to_str().expect("utf-8")]);
    assert_eq!(
        fs::metadata(out.join("out.bin")).expect("out.bin").len(),
        20000
    );
}
