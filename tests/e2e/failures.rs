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
/// `offset_ms` off, sharing a `dir:` store, with a 3 s lease and a 1 s
/// skew margin. The task runs for five minutes unless `marker` exists.
fn skewed_pair(label: &str, offset_ms: &str) -> (Device, Device, std::path::PathBuf, TempDir) {
    let store = crate::harness::temp_dir(&format!("{label}-store"));
    let remote = crate::harness::dir_remote(store.path());
    let admin = Device::new(&format!("{label}-admin"));
    admin.ok(&["init", "--remote", &remote]);
    admin.set_lease("3s", "1s");
    let mut skewed = Device::new(&format!("{label}-skewed"));
    skewed.join_as(&admin, &remote, "worker");
    skewed.set_lease("3s", "1s");
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
    let (admin, skewed, marker, _store) = skewed_pair("ahead", DAY_MS);
    skewed.ok(&["sync"]);
    let worker = skewed.spawn("work", &["work"]);
    admin_sees(&admin, "running");
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
    let (admin, skewed, _marker, _store) = skewed_pair("behind", HOUR_BEHIND_MS);
    skewed.ok(&["sync"]);
    let worker = skewed.spawn("work", &["work"]);
    admin_sees(&admin, "running");
    // While the claimant renews (three renewals seen), the task is running
    // on every look.
    let mut leases = std::collections::BTreeSet::new();
    crate::harness::poll("three renewals of the claim", || {
        admin.ok(&["sync"]);
        let show = admin.show("slow");
        assert_eq!(show["status"], "running", "{show}");
        if let Some(claims) = show["claims"].as_array() {
            leases.extend(claims.iter().filter_map(|c| c["lease_until"].as_i64()));
        }
        leases.len() >= 3
    });
    drop(worker);
}
