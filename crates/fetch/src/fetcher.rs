//! The [`Fetcher`]: one per worker, shared by its tasks. It checks the
//! cache, holds one lock per SHA-256 so that a content is downloaded once
//! per process, downloads with retries (jittered exponential backoff on
//! connect errors, timeouts, broken transfers, 429 and 5xx; not on other
//! statuses or a hash mismatch), and places the result in a working folder.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bridge_model::spec::{is_http_url, is_sha256_hex};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::cache::{TempFile, cache_err, place, verify_cached};
use crate::config::FetchConfig;
use crate::progress::{HumanBytes, Progress};

/// Why an input could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an http(s) URL, or not a SHA-256 to check it against.
    #[error(
        "`{url}` with sha256 `{sha256}` cannot be fetched: only http:// and https:// URLs with a 64-hex-digit SHA-256 are"
    )]
    Invalid {
        /// The URL.
        url: String,
        /// The expected hash.
        sha256: String,
    },
    /// The HTTP client could not be set up (e.g. no TLS root certificates).
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The server answered with an error status.
    #[error("{url}: the server answered {status}{}", tries_note(*.tries))]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// How many tries were made.
        tries: u32,
    },
    /// The connection failed, timed out or broke.
    #[error("{url}: the download failed{}", tries_note(*.tries))]
    Transport {
        /// The URL.
        url: String,
        /// How many tries were made.
        tries: u32,
        /// What reqwest saw.
        #[source]
        source: reqwest::Error,
    },
    /// The content does not hash to what the task declares.
    #[error(
        "{url}: the download does not match its sha256 (expected {expected}, got {actual}): refused, nothing was cached"
    )]
    Mismatch {
        /// The URL.
        url: String,
        /// The SHA-256 the task declares.
        expected: String,
        /// The SHA-256 of what the server sent.
        actual: String,
    },
    /// A file of the cache could not be read or written.
    #[error("cannot {action} {}", .path.display())]
    Cache {
        /// What was being done, e.g. "write".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The cached file could not be linked or copied into the working folder.
    #[error("cannot place {} at {}", .from.display(), .to.display())]
    Place {
        /// The cached file.
        from: PathBuf,
        /// Where it should appear.
        to: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A blocking file operation panicked or was cancelled.
    #[error("a file operation of the input cache crashed: {0}")]
    Crashed(tokio::task::JoinError),
}

fn tries_note(tries: u32) -> String {
    if tries > 1 {
        format!(" (after {tries} tries)")
    } else {
        String::new()
    }
}

impl FetchError {
    /// Whether another try may succeed: connect errors, timeouts, broken
    /// transfers, 429 and 5xx.
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status == 429 || *status >= 500,
            FetchError::Transport { source, .. } => !source.is_builder() && !source.is_redirect(),
            _ => false,
        }
    }

    fn set_tries(&mut self, n: u32) {
        if let FetchError::Status { tries, .. } | FetchError::Transport { tries, .. } = self {
            *tries = n;
        }
    }
}

/// Downloads URL inputs into the cache and places them in working folders.
/// One per worker, shared by its tasks.
pub struct Fetcher {
    config: FetchConfig,
    /// Where downloads report their progress, if anywhere.
    progress: Option<Arc<dyn Progress>>,
    client: tokio::sync::OnceCell<reqwest::Client>,
    /// One lock per SHA-256 being fetched, so a content is downloaded once.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Fetcher {
    /// A fetcher; nothing is touched until the first fetch.
    pub fn new(config: FetchConfig) -> Fetcher {
        Fetcher {
            config,
            progress: None,
            client: tokio::sync::OnceCell::new(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The fetcher, reporting each download's progress to `progress`.
    pub fn with_progress(mut self, progress: Option<Arc<dyn Progress>>) -> Fetcher {
        self.progress = progress;
        self
    }

    /// Where the content with this (valid) SHA-256 is cached.
    pub fn cached_path(&self, sha256: &str) -> PathBuf {
        self.config.cache_dir.join(sha256)
    }

    /// Fetches the content of `url`, which must hash to `sha256`, and places
    /// it at `dest` (creating its folder).
    pub async fn materialise(
        &self,
        url: &str,
        sha256: &str,
        dest: &Path,
    ) -> Result<(), FetchError> {
        let cached = self.fetch(url, sha256).await?;
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || place(&cached, &dest))
            .await
            .map_err(FetchError::Crashed)?
    }

    /// Makes sure the content of `url`, which must hash to `sha256`, is in
    /// the cache, and returns its path there.
    pub async fn fetch(&self, url: &str, sha256: &str) -> Result<PathBuf, FetchError> {
        if !is_http_url(url) || !is_sha256_hex(sha256) {
            return Err(FetchError::Invalid {
                url: url.to_owned(),
                sha256: sha256.to_owned(),
            });
        }
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            locks.entry(sha256.to_owned()).or_default().clone()
        };
        let _held = lock.lock().await;
        let path = self.cached_path(sha256);
        let (check, want) = (path.clone(), sha256.to_owned());
        let hit = tokio::task::spawn_blocking(move || verify_cached(&check, &want))
            .await
            .map_err(FetchError::Crashed)??;
        if hit {
            tracing::debug!("{url}: cache hit {}", path.display());
            return Ok(path);
        }
        self.download(url, sha256, &path).await?;
        Ok(path)
    }

    async fn client(&self) -> Result<&reqwest::Client, FetchError> {
        self.client
            .get_or_try_init(|| async {
                crate::install_tls_provider();
                reqwest::Client::builder()
                    .connect_timeout(self.config.connect_timeout)
                    .read_timeout(self.config.read_timeout)
                    .user_agent(concat!("bridge/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(FetchError::Client)
            })
            .await
    }

    /// Downloads into the cache, trying again on transient errors.
    async fn download(&self, url: &str, sha256: &str, dest: &Path) -> Result<(), FetchError> {
        let dir = &self.config.cache_dir;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(cache_err("create the cache folder", dir))?;
        let client = self.client().await?;
        let tries = self.config.tries.max(1);
        let mut tried = 0;
        loop {
            tried += 1;
            match self.download_once(client, url, sha256, dest).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && tried < tries => {
                    let wait = backoff(self.config.backoff, tried);
                    tracing::info!(
                        "{url}: {} (try {tried} of {tries}); trying again in {wait:.1?}",
                        error_chain(&e)
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(mut e) => {
                    e.set_tries(tried);
                    return Err(e);
                }
            }
        }
    }

    async fn download_once(
        &self,
        client: &reqwest::Client,
        url: &str,
        sha256: &str,
        dest: &Path,
    ) -> Result<(), FetchError> {
        let started = Instant::now();
        let transport = |source| FetchError::Transport {
            url: url.to_owned(),
            tries: 1,
            source,
        };
        let mut response = client.get(url).send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                tries: 1,
            });
        }
        let bar = self
            .progress
            .as_ref()
            .map(|p| p.start(url, response.content_length()));
        let temp = TempFile::new(&self.config.cache_dir, sha256)?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp.path)
            .await
            .map_err(cache_err("create", &temp.path))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(cache_err("write", &temp.path))?;
            size += chunk.len() as u64;
            if let Some(b) = &bar {
                b.advance(size);
            }
        }
        file.flush().await.map_err(cache_err("write", &temp.path))?;
        file.sync_all()
            .await
            .map_err(cache_err("write", &temp.path))?;
        drop(file);
        if let Some(b) = &bar {
            b.finish();
        }
        let actual = hex::encode(hasher.finalize());
        if actual != sha256 {
            // `temp` is removed when dropped.
            return Err(FetchError::Mismatch {
                url: url.to_owned(),
                expected: sha256.to_owned(),
                actual,
            });
        }
        // Read-only, so that a task writing to its (hard-linked) input fails
        // instead of changing the cache; the rehash on every hit is the
        // safety net where permissions do not apply.
        let mut perms = tokio::fs::metadata(&temp.path)
            .await
            .map_err(cache_err("read", &temp.path))?
            .permissions();
        perms.set_readonly(true);
        tokio::fs::set_permissions(&temp.path, perms)
            .await
            .map_err(cache_err("make read-only", &temp.path))?;
        temp.persist(dest).await?;
        tracing::info!(
            "downloaded {url} ({}) in {:.1?}",
            HumanBytes(size),
            started.elapsed()
        );
        Ok(())
    }
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.config)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

/// The error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

/// The wait after the `tried`-th failed try: `base` doubled each time, with
/// a random half taken off (so many workers do not retry in step).
fn backoff(base: Duration, tried: u32) -> Duration {
    let full = base.saturating_mul(1 << tried.saturating_sub(1).min(16));
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
    } else {
        0.5
    };
    full.mul_f64(0.5 + 0.5 * r)
}

#[cfg(test)]
mod tests {
    //! Every test serves HTTP/1.1 by hand from 127.0.0.1 in a thread.

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    enum Reply {
        /// 200 with this body, after a pause.
        Ok(&'static [u8], Duration),
        /// This status with an empty body.
        Status(u16),
        /// 200 announcing `len` bytes, sending `sent`, then silence.
        Stall { len: usize, sent: &'static [u8] },
    }

    struct Server {
        base: String,
        hits: Arc<AtomicUsize>,
    }

    impl Server {
        fn start(reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            let base = format!("http://{}", listener.local_addr().expect("local addr"));
            let hits = Arc::new(AtomicUsize::new(0));
            let (counter, reply) = (hits.clone(), Arc::new(reply));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (counter, reply) = (counter.clone(), reply.clone());
                    std::thread::spawn(move || {
                        if read_request(&stream) {
                            let n = counter.fetch_add(1, Ordering::SeqCst);
                            answer(stream, reply(n));
                        }
                    });
                }
            });
            Server { base, hits }
        }

        fn url(&self, path: &str) -> String {
            format!("{}/{path}", self.base)
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// Reads up to the end of the request head; false if the client left.
    fn read_request(mut stream: &TcpStream) -> bool {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    }

    fn answer(mut stream: TcpStream, reply: Reply) {
        let head = |status: u16, len: usize| {
            format!("HTTP/1.1 {status} X\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
        };
        let _ = match reply {
            Reply::Ok(body, pause) => {
                std::thread::sleep(pause);
                stream
                    .write_all(head(200, body.len()).as_bytes())
                    .and_then(|()| stream.write_all(body))
            }
            Reply::Status(s) => stream.write_all(head(s, 0).as_bytes()),
            Reply::Stall { len, sent } => {
                let r = stream
                    .write_all(head(200, len).as_bytes())
                    .and_then(|()| stream.write_all(sent));
                std::thread::sleep(Duration::from_secs(10));
                r
            }
        };
    }

    const BODY: &[u8] = b"id,value\n1,2\n";

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn fetcher(cache: &Path) -> Fetcher {
        Fetcher::new(FetchConfig {
            cache_dir: cache.to_path_buf(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            tries: 3,
            backoff: Duration::from_millis(1),
        })
    }

    fn temp() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("bridge-fetch-")
            .tempdir()
            .expect("a temp dir")
    }

    /// The names in the cache folder (none if it does not exist).
    fn cache_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn downloads_verifies_then_hits_the_cache() -> anyhow::Result<()> {
        let server = Server::start(|_| Reply::Ok(BODY, Duration::ZERO));
        let (cache, work) = (temp(), temp());
        let f = fetcher(cache.path());
        let dest = work.path().join("data/in.csv");
        f.materialise(&server.url("in.csv"), &sha(BODY), &dest)
            .await?;
        assert_eq!(std::fs::read(&dest)?, BODY);
        assert_eq!(server.hits(), 1);
        assert_eq!(
            cache_files(cache.path()),
            vec![sha(BODY)],
            "no temp file left"
        );

        // A second fetcher (another worker) hits the cache: no request.
        let again = work.path().join("again.csv");
        fetcher(cache.path())
            .materialise(&server.url("in.csv"), &sha(BODY), &again)
            .await?;
        assert_eq!(std::fs::read(&again)?, BODY);
        assert_eq!(server.hits(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_damaged_cache_entry_is_downloaded_again() -> anyhow::Result<()> {
        let server = Server::start(|_| Reply::Ok(BODY, Duration::ZERO));
        let cache = temp();
        let f = fetcher(cache.path());
        let path = f.fetch(&server.url("a"), &sha(BODY)).await?;
        std::fs::remove_file(&path)?;
        std::fs::write(&path, b"rotten")?;
        let path = f.fetch(&server.url("a"), &sha(BODY)).await?;
        assert_eq!(std::fs::read(&path)?, BODY);
        assert_eq!(server.hits(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn a_hash_mismatch_is_refused_and_nothing_is_cached() {
        let server = Server::start(|_| Reply::Ok(b"not the data", Duration::ZERO));
        let cache = temp();
        let want = sha(BODY);
        let url = server.url("in.csv");
        let err = fetcher(cache.path())
            .fetch(&url, &want)
            .await
            .expect_err("a mismatch is an error");
        match &err {
            FetchError::Mismatch {
                url: u,
                expected,
                actual,
            } => {
                assert_eq!((u, expected), (&url, &want));
                assert_eq!(actual, &sha(b"not the data"));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&url) && msg.contains(&want), "{msg}");
        assert_eq!(server.hits(), 1, "a mismatch is not retried");
        assert!(
            cache_files(cache.path()).is_empty(),
            "{:?}",
            cache_files(cache.path())
        );
    }

    #[tokio::test]
    async fn a_server_error_is_retried() -> anyhow::Result<()> {
        let server = Server::start(|n| match n {
            0 => Reply::Status(500),
            1 => Reply::Status(429),
            _ => Reply::Ok(BODY, Duration::ZERO),
        });
        let cache = temp();
        let path = fetcher(cache.path())
            .fetch(&server.url("x"), &sha(BODY))
            .await?;
        assert_eq!(std::fs::read(path)?, BODY);
        assert_eq!(server.hits(), 3);
        Ok(())
    }

    #[tokio::test]
    async fn a_server_error_on_every_try_gives_up() {
        let server = Server::start(|_| Reply::Status(503));
        let cache = temp();
        let err = fetcher(cache.path())
            .fetch(&server.url("x"), &sha(BODY))
            .await
            .expect_err("always 503");
        assert!(
            matches!(
                err,
                FetchError::Status {
                    status: 503,
                    tries: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("after 3 tries"), "{err}");
        assert_eq!(server.hits(), 3);
    }

    #[tokio::test]
    async fn a_not_found_is_not_retried() {
        let server = Server::start(|_| Reply::Status(404));
        let cache = temp();
        let url = server.url("missing.csv");
        let err = fetcher(cache.path())
            .fetch(&url, &sha(BODY))
            .await
            .expect_err("404");
        assert!(
            matches!(
                err,
                FetchError::Status {
                    status: 404,
                    tries: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(&url), "{err}");
        assert_eq!(server.hits(), 1);
        assert!(cache_files(cache.path()).is_empty());
    }

    #[tokio::test]
    async fn a_stalled_body_hits_the_read_timeout() {
        let server = Server::start(|_| Reply::Stall {
            len: 1000,
            sent: b"id,value\n",
        });
        let cache = temp();
        let f = Fetcher::new(FetchConfig {
            read_timeout: Duration::from_millis(200),
            tries: 2,
            ..fetcher(cache.path()).config
        });
        let started = Instant::now();
        let err = f
            .fetch(&server.url("slow"), &sha(BODY))
            .await
            .expect_err("a stalled body");
        match &err {
            FetchError::Transport { source, tries, .. } => {
                assert!(source.is_timeout(), "{err:?}");
                assert_eq!(*tries, 2);
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(server.hits(), 2, "a timeout is retried");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            cache_files(cache.path()).is_empty(),
            "the partial file is removed"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_then_reported() {
        // A port that was just free: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cache = temp();
        let err = fetcher(cache.path())
            .fetch(&format!("http://127.0.0.1:{port}/x"), &sha(BODY))
            .await
            .expect_err("nothing listens");
        assert!(
            matches!(&err, FetchError::Transport { source, tries: 3, .. } if source.is_connect()),
            "{err:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_fetches_of_one_hash_make_one_request() -> anyhow::Result<()> {
        let server = Server::start(|_| Reply::Ok(BODY, Duration::from_millis(300)));
        let (cache, work) = (temp(), temp());
        let f = Arc::new(fetcher(cache.path()));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..4 {
            let (f, url, dest) = (
                f.clone(),
                // Different URLs (mirrors) of the same content.
                server.url(&format!("mirror{i}/in.csv")),
                work.path().join(format!("{i}.csv")),
            );
            let want = sha(BODY);
            set.spawn(async move { f.materialise(&url, &want, &dest).await });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        assert_eq!(server.hits(), 1);
        for i in 0..4 {
            assert_eq!(std::fs::read(work.path().join(format!("{i}.csv")))?, BODY);
        }
        Ok(())
    }

    #[tokio::test]
    async fn invalid_urls_and_hashes_are_refused_before_any_request() {
        let cache = temp();
        let f = fetcher(cache.path());
        for (url, hash) in [
            ("file:///etc/passwd", sha(BODY)),
            ("ftp://127.0.0.1/x", sha(BODY)),
            ("http://127.0.0.1/x", "../../etc/passwd".to_owned()),
        ] {
            let err = f.fetch(url, &hash).await.expect_err("invalid");
            assert!(matches!(err, FetchError::Invalid { .. }), "{err:?}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        let base = Duration::from_millis(100);
        for tried in 1..=3 {
            let full = base * (1 << (tried - 1));
            let d = backoff(base, tried);
            assert!(d >= full / 2 && d <= full, "{tried}: {d:?}");
        }
    }
}

#[cfg(test)]
mod progress_tests {
    //! The caller's [`Progress`] sees each transfer start, advance and
    //! finish, and a cache hit nothing.

    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Mutex;

    use super::*;
    use crate::progress::Download;

    #[derive(Default)]
    struct Recorder {
        events: Arc<Mutex<Vec<String>>>,
    }

    struct Recording(Arc<Mutex<Vec<String>>>);

    impl Progress for Recorder {
        fn start(&self, url: &str, len: Option<u64>) -> Box<dyn Download> {
            self.events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!(
                    "start {} {len:?}",
                    url.rsplit('/').next().unwrap_or(url)
                ));
            Box::new(Recording(self.events.clone()))
        }
    }

    impl Download for Recording {
        fn advance(&self, received: u64) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("at {received}"));
        }

        fn finish(&self) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push("finish".to_owned());
        }
    }

    /// Serves `body` once per connection, `count` connections.
    fn serve(body: &'static [u8], count: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        std::thread::spawn(move || {
            for stream in listener.incoming().take(count) {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(body));
            }
        });
        base
    }

    fn fetcher(cache: &Path, recorder: &Recorder) -> Fetcher {
        let progress: Arc<dyn Progress> = Arc::new(Recorder {
            events: recorder.events.clone(),
        });
        Fetcher::new(FetchConfig {
            cache_dir: cache.to_path_buf(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            tries: 1,
            backoff: Duration::from_millis(1),
        })
        .with_progress(Some(progress))
    }

    #[tokio::test]
    async fn a_download_reports_its_progress_and_a_hit_none() {
        const BODY: &[u8] = b"0123456789";
        let base = serve(BODY, 1);
        let cache = tempfile::tempdir().expect("a temp dir");
        let recorder = Recorder::default();
        let f = fetcher(cache.path(), &recorder);
        let sha = hex::encode(Sha256::digest(BODY));
        f.fetch(&format!("{base}/in.txt"), &sha)
            .await
            .expect("downloaded");
        let events = recorder
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(
            events.first().map(String::as_str),
            Some("start in.txt Some(10)")
        );
        assert_eq!(events.last().map(String::as_str), Some("finish"));
        assert_eq!(
            events.iter().rev().nth(1).map(String::as_str),
            Some("at 10")
        );
        // A cache hit downloads nothing, so reports nothing.
        f.fetch(&format!("{base}/in.txt"), &sha)
            .await
            .expect("a hit");
        assert_eq!(
            recorder
                .events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            events.len()
        );
    }

    #[tokio::test]
    async fn a_mismatch_shows_as_a_finished_transfer_and_an_error() {
        let base = serve(b"not it", 1);
        let cache = tempfile::tempdir().expect("a temp dir");
        let recorder = Recorder::default();
        let sha = hex::encode(Sha256::digest(b"something else"));
        let err = fetcher(cache.path(), &recorder)
            .fetch(&format!("{base}/x"), &sha)
            .await
            .expect_err("a mismatch");
        assert!(matches!(err, FetchError::Mismatch { .. }), "{err:?}");
        let events = recorder
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(events.first().map(String::as_str), Some("start x Some(6)"));
        // The transfer finished; refusing its content is the error's part.
        assert_eq!(events, ["start x Some(6)", "at 6", "finish"]);
    }
}
