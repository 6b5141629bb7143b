//! A folder served over https on 127.0.0.1, as a release page or a mirror
//! is: `GET /<relative path>` answers the file's bytes or 404, nothing
//! else. The certificate is the one [`github_git`](crate::github_git)
//! makes (a throwaway authority for `127.0.0.1`), so clients keep their
//! https-only rules (the action's `curl --proto '=https'`) and trust it
//! through `CURL_CA_BUNDLE` or `GIT_SSL_CAINFO` ([`HttpsFiles::ca_path`]).
//!
//! Every GET is counted per path, served or not: a test asserts that an
//! install from a cache downloaded nothing. Files are read at each request,
//! so a test may replace one (a tampered archive) while the server runs.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;

/// A running server; stops when dropped.
pub struct HttpsFiles {
    port: u16,
    ca_path: PathBuf,
    gets: Arc<Mutex<BTreeMap<String, usize>>>,
    runtime: Option<tokio::runtime::Runtime>,
    // Holds the authority's PEM; removed after the runtime is gone.
    _tls_dir: TempDir,
}

impl std::fmt::Debug for HttpsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsFiles")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl HttpsFiles {
    /// Serves the files under `dir` on a free port of 127.0.0.1.
    pub fn start(dir: &Path) -> HttpsFiles {
        let tls_dir = tempfile::Builder::new()
            .prefix("bridge-https-files-")
            .tempdir()
            .unwrap();
        let ca_path = tls_dir.path().join("ca.pem");
        let tls = crate::github_git::tls::server_config(&ca_path);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let gets = Arc::new(Mutex::new(BTreeMap::new()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("https-files")
            .enable_all()
            .build()
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let root = dir.to_path_buf();
        let counts = Arc::clone(&gets);
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let root = root.clone();
                let counts = Arc::clone(&counts);
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let answer = answer(&root, &counts, &req);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HttpsFiles {
            port,
            ca_path,
            gets,
            runtime: Some(runtime),
            _tls_dir: tls_dir,
        }
    }

    /// `https://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The PEM of the authority that signed the server's certificate.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// How many GETs asked for `path` (e.g. `/v1.2.3/bridge-….tar.gz`).
    pub fn gets(&self, path: &str) -> usize {
        self.gets.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for HttpsFiles {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// The response to `req`: the file under `root` at the request's path,
/// never outside it (only normal path components are followed).
fn answer<B>(
    root: &Path,
    counts: &Mutex<BTreeMap<String, usize>>,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if req.method() != Method::GET {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
    let relative = Path::new(path.trim_start_matches('/'));
    if relative.as_os_str().is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return status(StatusCode::NOT_FOUND);
    }
    match std::fs::read(root.join(relative)) {
        Ok(bytes) => Response::new(Full::new(Bytes::from(bytes))),
        Err(_) => status(StatusCode::NOT_FOUND),
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(
        code.canonical_reason().unwrap_or("error").to_owned(),
    )));
    *response.status_mut() = code;
    response
}
