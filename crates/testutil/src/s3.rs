//! A real S3 server for the tests (issue 19, item 3): `s3s-fs`, the s3s
//! project's S3 server over a folder, on 127.0.0.1, a free port, a temp
//! data folder, its own key pair; killed when dropped.
//!
//! It is a real server, not a mock of bridge's calls: HTTP with SigV4
//! signatures checked, `ListObjectsV2` pagination, and `PutObject` with
//! `If-None-Match: *` answered `412` when the object exists (Garage 2.5,
//! the other candidate, ignores that header, so it could not show that a
//! put never replaces a file). `.ci/run` installs it into
//! `target/ci-tools/s3s-fs` ([`VERSION`]); the tests find it through
//! `BRIDGE_TEST_S3_SERVER`, else there. A test that needs it and finds
//! none fails, saying how to install it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bridge_store::s3::{S3Options, S3Remote, S3Spec};

/// The `s3s-fs` version `.ci/run` installs.
pub const VERSION: &str = "0.14.1";
/// The variable naming the server binary.
pub const SERVER_ENV: &str = "BRIDGE_TEST_S3_SERVER";
/// The access key of every test server.
pub const ACCESS_KEY: &str = "bridge-test-key";
/// Its secret key.
pub const SECRET_KEY: &str = "bridge-test-secret";
/// The region the clients name (the server takes any).
pub const REGION: &str = "us-east-1";

/// The server binary: `BRIDGE_TEST_S3_SERVER`, else
/// `target/ci-tools/s3s-fs/bin/s3s-fs`. Panics, saying how to install
/// it, when there is none.
pub fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(SERVER_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{SERVER_ENV}={} does not exist", p.display());
        return p;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let local = root.join("target/ci-tools/s3s-fs/bin/s3s-fs");
    assert!(
        local.is_file(),
        "no S3 server for the s3: tests: set {SERVER_ENV}, or install it with `bash .ci/run` \
         or `cargo install --locked --root target/ci-tools/s3s-fs --features binary s3s-fs@{VERSION}`"
    );
    local
}

/// A running `s3s-fs` (see the module docs).
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    data: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl S3Server {
    /// A server on a free port over a new temp folder.
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("no free port")
            .port();
        let mut server = S3Server::on_port(&data, port);
        server._dir = Some(dir);
        server
    }

    /// A server over `data` on `port` (one started again where a stopped
    /// one was). Returns once it accepts connections (at most 15 s: a
    /// bound against hangs).
    pub fn on_port(data: &Path, port: u16) -> S3Server {
        let child = Command::new(server_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(data)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the S3 server");
        let server = S3Server {
            child: Some(child),
            port,
            data: data.to_owned(),
            _dir: None,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the S3 server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder it keeps its buckets in (one folder each).
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// Creates bucket `name` (`s3s-fs` keeps a bucket as a folder).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.data.join(name)).unwrap();
    }

    /// The environment a client of this server is given: key pair,
    /// endpoint, region.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_REGION".into(), REGION.into()),
        ]
    }

    /// The options of a remote on this server, retrying little (a test
    /// of a stopped server must not wait for minutes).
    pub fn options(&self) -> S3Options {
        S3Options {
            env: self.env().into_iter().collect(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(10),
            ..S3Options::default()
        }
    }

    /// A remote on `s3://BUCKET/PREFIX` of this server.
    pub fn remote(&self, spec: &str) -> S3Remote {
        S3Remote::new(S3Spec::parse(spec).unwrap(), &self.options()).unwrap()
    }

    /// Kills it and waits for it: its port is free again, its data kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("cannot kill the S3 server");
            child.wait().expect("cannot reap the S3 server");
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // A failed assertion must not leave it behind.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
