//! Issue 12, worker and remote failures: a device with a wrong clock, a
//! full local disk, a full remote, a remote that never answers. Each must
//! leave the rest of the pool working.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

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
