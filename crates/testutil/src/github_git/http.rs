//! The HTTP side: TLS connections, the token check, and each request run
//! through `git http-backend` as CGI (RFC 3875) with its body streamed in
//! and its output streamed back; pushes and reads are counted here.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::Config;
use super::hook::Refusal;
use super::report::{Log, Push};

/// What every connection shares.
pub(super) struct State {
    pub(super) config: Config,
    /// `GIT_PROJECT_ROOT`: bare repositories at `owner/name.git`.
    pub(super) repos: PathBuf,
    pub(super) hooks: PathBuf,
    /// Where each push's hook writes its refusal, one file per push.
    pub(super) refusals: PathBuf,
    pub(super) started: Instant,
    pub(super) logs: Mutex<std::collections::BTreeMap<String, Log>>,
    next_push: AtomicU64,
}

impl State {
    pub(super) fn new(config: Config, repos: PathBuf, hooks: PathBuf, refusals: PathBuf) -> State {
        State {
            config,
            repos,
            hooks,
            refusals,
            started: Instant::now(),
            logs: Mutex::new(Default::default()),
            next_push: AtomicU64::new(0),
        }
    }

    fn log(&self, repo: &str, f: impl FnOnce(&mut Log)) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        f(logs.entry(repo.to_owned()).or_default());
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// Which git service a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `GET info/refs?service=git-upload-pack`: a read starts.
    ReadAdvertisement,
    /// `GET info/refs?service=git-receive-pack`: a push starts.
    PushAdvertisement,
    UploadPack,
    ReceivePack,
}

/// `(repo, kind)` for a smart-HTTP path: `/o/r.git/info/refs` etc.
fn route(method: &hyper::Method, path: &str, query: &str) -> Option<(String, Kind)> {
    let path = path.trim_start_matches('/');
    let (repo, kind) = if let Some(repo) = path.strip_suffix("/info/refs") {
        match (method, query) {
            (&hyper::Method::GET, "service=git-upload-pack") => (repo, Kind::ReadAdvertisement),
            (&hyper::Method::GET, "service=git-receive-pack") => (repo, Kind::PushAdvertisement),
            _ => return None,
        }
    } else if let Some(repo) = path.strip_suffix("/git-upload-pack") {
        (repo, Kind::UploadPack)
    } else if let Some(repo) = path.strip_suffix("/git-receive-pack") {
        (repo, Kind::ReceivePack)
    } else {
        return None;
    };
    if method != hyper::Method::GET
        && matches!(kind, Kind::ReadAdvertisement | Kind::PushAdvertisement)
        || method != hyper::Method::POST && matches!(kind, Kind::UploadPack | Kind::ReceivePack)
        || repo.is_empty()
        || repo
            .split('/')
            .any(|part| part.is_empty() || part.starts_with('.'))
    {
        return None;
    }
    let repo = if repo.ends_with(".git") {
        repo.to_owned()
    } else {
        format!("{repo}.git")
    };
    Some((repo, kind))
}

/// True if `header` is `Basic base64(user:token)` for the server's token
/// (any user name, as GitHub accepts with a token).
fn authorized(header: Option<&hyper::header::HeaderValue>, token: &str) -> bool {
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let decoded = String::from_utf8_lossy(&decoded);
    decoded
        .split_once(':')
        .is_some_and(|(_, password)| password == token)
}

fn simple(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())).boxed());
    *response.status_mut() = status;
    response
}

/// Serves one request.
pub(super) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let at = state.started.elapsed();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let Some((repo, kind)) = route(req.method(), req.uri().path(), &query) else {
        return Ok(simple(StatusCode::NOT_FOUND, "Not Found\n"));
    };
    if !authorized(
        req.headers().get(hyper::header::AUTHORIZATION),
        &state.config.token,
    ) {
        state.log(&repo, |log| log.unauthorized += 1);
        // GitHub's answer to a git request without valid credentials.
        let mut response = simple(
            StatusCode::UNAUTHORIZED,
            "Invalid username or token. Password authentication is not supported for Git operations.\n",
        );
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"GitHub\""),
        );
        return Ok(response);
    }
    match kind {
        Kind::ReadAdvertisement => state.log(&repo, |log| log.reads.push(at)),
        Kind::UploadPack => state.log(&repo, |log| log.upload_pack_posts += 1),
        Kind::ReceivePack => {
            if let Some(limit) = state.config.max_pushes_per_minute
                && rate_limited(&state, &repo, at, limit)
            {
                let refused = Some(Refusal::RateLimited { limit });
                state.log(&repo, |log| {
                    log.pushes.push(Push {
                        at,
                        bytes: 0,
                        refs: 0,
                        refused,
                    });
                });
                return Ok(simple(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate limit: too many pushes to this repository; try again later\n",
                ));
            }
        }
        Kind::PushAdvertisement => {}
    }
    Ok(run_backend(state, req, repo, kind, at, query).await)
}

/// True if `repo` already had `limit` pushes in the 60 s before `at`.
fn rate_limited(state: &State, repo: &str, at: Duration, limit: usize) -> bool {
    let logs = state.logs.lock().unwrap_or_else(|e| e.into_inner());
    let since = at.saturating_sub(Duration::from_secs(60));
    logs.get(repo).is_some_and(|log| {
        log.pushes
            .iter()
            .filter(|p| p.at > since && !matches!(p.refused, Some(Refusal::RateLimited { .. })))
            .count()
            >= limit
    })
}

/// Runs `git http-backend` for the request and streams its answer back;
/// a push is logged once git has answered it.
async fn run_backend(
    state: Arc<State>,
    req: Request<Incoming>,
    repo: String,
    kind: Kind,
    at: Duration,
    query: String,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let refusal_file = state
        .refusals
        .join(state.next_push.fetch_add(1, Ordering::Relaxed).to_string());
    let mut command = backend_command(&state, &parts, &repo, kind, &query, &refusal_file);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return simple(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("git http-backend: {e}\n"),
            );
        }
    };
    let (Some(stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return simple(
            StatusCode::INTERNAL_SERVER_ERROR,
            "git http-backend: no pipes\n",
        );
    };
    let body_bytes = tokio::spawn(copy_body(body, stdin));
    let stderr_text = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        text
    });
    let Some((status, headers, first)) = read_cgi_head(&mut stdout).await else {
        let _ = child.wait().await;
        let err = stderr_text.await.unwrap_or_default();
        return simple(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("git http-backend: {}\n", String::from_utf8_lossy(&err)),
        );
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        // Keep a copy of a push's answer: git's report of what it did.
        let copy = forward(&mut stdout, first, tx, kind == Kind::ReceivePack).await;
        let _ = child.wait().await;
        let _ = stderr_text.await;
        let bytes = body_bytes.await.unwrap_or(0);
        // git sends a bare flush packet ("0000") first to probe the
        // credentials before a body too large to resend; not a push.
        if let Some(copy) = copy.filter(|_| bytes > 4) {
            log_push(&state, &repo, at, bytes, &copy, &refusal_file);
        }
    });
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response
        .body(ChannelBody { rx }.boxed())
        .unwrap_or_else(|_| simple(StatusCode::INTERNAL_SERVER_ERROR, "bad CGI header\n"))
}

/// The `git http-backend` command for a request: the CGI variables, the
/// server's limits as git config and as the hook's `GHGIT_*` variables.
fn backend_command(
    state: &State,
    parts: &hyper::http::request::Parts,
    repo: &str,
    kind: Kind,
    query: &str,
    refusal_file: &std::path::Path,
) -> tokio::process::Command {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_COUNT", "4")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GIT_CONFIG_KEY_1", "core.hooksPath")
        .env("GIT_CONFIG_VALUE_1", &state.hooks)
        // GitHub's push size limit is git's own check: index-pack prints
        // "fatal: pack exceeds maximum allowed size (2.00 GiB)".
        .env("GIT_CONFIG_KEY_2", "receive.maxInputSize")
        .env(
            "GIT_CONFIG_VALUE_2",
            state.config.max_push_bytes.to_string(),
        )
        // index-pack for every push, as for a large one: unpack-objects
        // (small pushes) prints the refusal without the limit.
        .env("GIT_CONFIG_KEY_3", "receive.unpackLimit")
        .env("GIT_CONFIG_VALUE_3", "1")
        .env("GIT_PROJECT_ROOT", &state.repos)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_HTTP_MAX_REQUEST_BUFFER", "1g")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", format!("/{repo}{}", suffix(kind)))
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REMOTE_USER", "x-access-token")
        .env(
            "GHGIT_MAX_OBJECT_BYTES",
            state.config.max_object_bytes.to_string(),
        )
        .env(
            "GHGIT_MAX_REFS",
            state.config.max_refs_per_push.unwrap_or(0).to_string(),
        )
        .env("GHGIT_REFUSAL", refusal_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = header("content-type") {
        command.env("CONTENT_TYPE", v);
    }
    // A chunked body has no length: http-backend then reads to EOF.
    match header("content-length") {
        Some(v) => {
            command.env("CONTENT_LENGTH", v);
        }
        None if parts.method == hyper::Method::POST => state.log(repo, |log| log.chunked += 1),
        None => {}
    }
    // http-backend inflates a gzip'd body itself.
    if let Some(v) = header("content-encoding") {
        if v.contains("gzip") {
            state.log(repo, |log| log.gzipped += 1);
        }
        command.env("HTTP_CONTENT_ENCODING", v);
    }
    if let Some(v) = header("git-protocol") {
        command.env("GIT_PROTOCOL", v);
    }
    command
}

/// Reads http-backend's CGI header block: the status, the headers, and
/// whatever of the body came with them. `None` if git wrote no header.
async fn read_cgi_head(
    stdout: &mut tokio::process::ChildStdout,
) -> Option<(StatusCode, Vec<(String, String)>, Bytes)> {
    let mut buffer = Vec::new();
    let (head_len, body_start) = loop {
        if let Some(end) = find_header_end(&buffer) {
            break end;
        }
        let mut chunk = vec![0; 64 * 1024];
        match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(&buffer[..head_len]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().unwrap_or_default();
            status = code
                .parse()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else {
            headers.push((name.trim().to_owned(), value.to_owned()));
        }
    }
    Some((
        status,
        headers,
        Bytes::copy_from_slice(&buffer[body_start..]),
    ))
}

/// Sends `first` and the rest of git's output to the client; returns a
/// copy of it (its first MiB) if `keep`. Reads to the end even if the
/// client went away, so git is never blocked on a full pipe.
async fn forward(
    stdout: &mut tokio::process::ChildStdout,
    first: Bytes,
    tx: mpsc::Sender<Bytes>,
    keep: bool,
) -> Option<Vec<u8>> {
    let mut copy = keep.then(|| first.to_vec());
    let mut client_gone = tx.send(first).await.is_err();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(copy) = copy.as_mut()
                    && copy.len() < 1 << 20
                {
                    copy.extend_from_slice(&chunk[..n]);
                }
                if !client_gone {
                    client_gone = tx.send(Bytes::copy_from_slice(&chunk[..n])).await.is_err();
                }
            }
        }
    }
    copy
}

/// Logs a push from git's answer and the hook's refusal file.
fn log_push(
    state: &State,
    repo: &str,
    at: Duration,
    bytes: u64,
    answer: &[u8],
    refusal_file: &std::path::Path,
) {
    let status = ReportStatus::parse(answer);
    let hook = std::fs::read_to_string(refusal_file).unwrap_or_default();
    let _ = std::fs::remove_file(refusal_file);
    let refused = Refusal::parse(&hook, state.config.max_object_bytes)
        .or_else(|| status.refusal(state.config.max_push_bytes));
    let refs = status.refs;
    state.log(repo, |log| {
        log.pushes.push(Push {
            at,
            bytes,
            refs,
            refused,
        })
    });
}

fn suffix(kind: Kind) -> &'static str {
    match kind {
        Kind::ReadAdvertisement | Kind::PushAdvertisement => "/info/refs",
        Kind::UploadPack => "/git-upload-pack",
        Kind::ReceivePack => "/git-receive-pack",
    }
}

/// Streams the request body into http-backend's stdin; returns its size.
/// If git stops reading (a pack over the size limit), the rest is read
/// and dropped, so that the client gets git's answer instead of a reset.
async fn copy_body(mut body: Incoming, mut stdin: tokio::process::ChildStdin) -> u64 {
    let mut total = 0u64;
    let mut open = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            if open && stdin.write_all(&data).await.is_err() {
                open = false;
            }
        }
    }
    drop(stdin);
    total
}

/// `(header length, body start)` of a CGI response in `buffer`.
fn find_header_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// A response body fed by the task that reads http-backend's stdout.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// git's report of a push (`report-status`): the `unpack` result and the
/// refs it updated or refused, read through the side-band if there is one.
#[derive(Debug, Default, PartialEq, Eq)]
struct ReportStatus {
    unpack: Option<String>,
    refs: usize,
    /// `ng <ref> <reason>`: the first refused ref's reason.
    refused: Option<String>,
}

impl ReportStatus {
    fn parse(answer: &[u8]) -> ReportStatus {
        let packets = pkt_lines(answer);
        // Side-band: each packet's first byte is its channel; 1 carries the
        // report as pkt-lines of its own.
        let sideband = packets
            .first()
            .is_some_and(|p| matches!(p.first(), Some(1..=3)));
        let data: Vec<Vec<u8>> = if sideband {
            let inner: Vec<u8> = packets
                .iter()
                .filter(|p| p.first() == Some(&1))
                .flat_map(|p| p[1..].to_vec())
                .collect();
            pkt_lines(&inner)
        } else {
            packets
        };
        let mut status = ReportStatus::default();
        for line in data {
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\n');
            if let Some(result) = line.strip_prefix("unpack ") {
                status.unpack = Some(result.to_owned());
            } else if line.starts_with("ok ") {
                status.refs += 1;
            } else if let Some(rest) = line.strip_prefix("ng ") {
                status.refs += 1;
                if status.refused.is_none() {
                    status.refused = Some(rest.split_once(' ').map_or(rest, |(_, r)| r).to_owned());
                }
            }
        }
        status
    }

    /// The refusal git reported, if any.
    fn refusal(&self, push_limit: u64) -> Option<Refusal> {
        match self.unpack.as_deref() {
            Some("ok") | None => self.refused.clone().map(Refusal::Other),
            // index-pack died: over receive.maxInputSize is the only way
            // it does for a well-formed pack.
            Some(error) if error.contains("abnormal exit") => {
                Some(Refusal::PushTooLarge { limit: push_limit })
            }
            Some(error) => Some(Refusal::Other(format!("unpack {error}"))),
        }
    }
}

/// The payloads of the pkt-lines in `data` (flush packets skipped).
fn pkt_lines(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let Some(len) = std::str::from_utf8(&data[..4])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
        else {
            break;
        };
        if len < 4 {
            data = &data[4..];
            continue;
        }
        let Some(payload) = data.get(4..len) else {
            break;
        };
        out.push(payload.to_vec());
        data = &data[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(payload: &[u8]) -> Vec<u8> {
        [
            format!("{:04x}", payload.len() + 4).into_bytes(),
            payload.to_vec(),
        ]
        .concat()
    }

    #[test]
    fn routes_the_smart_http_paths_only() {
        let get = hyper::Method::GET;
        let post = hyper::Method::POST;
        assert_eq!(
            route(&get, "/o/r.git/info/refs", "service=git-upload-pack"),
            Some(("o/r.git".into(), Kind::ReadAdvertisement))
        );
        assert_eq!(
            route(&get, "/o/r/info/refs", "service=git-receive-pack"),
            Some(("o/r.git".into(), Kind::PushAdvertisement))
        );
        assert_eq!(
            route(&post, "/o/r.git/git-receive-pack", ""),
            Some(("o/r.git".into(), Kind::ReceivePack))
        );
        assert_eq!(route(&get, "/o/r.git/git-receive-pack", ""), None);
        assert_eq!(route(&get, "/o/r.git/info/refs", ""), None);
        assert_eq!(route(&post, "/../r.git/git-upload-pack", ""), None);
        assert_eq!(route(&get, "/o/r.git/HEAD", ""), None);
    }

    #[test]
    fn accepts_only_the_token_as_basic_password() {
        let header = |user_pass: &str| {
            hyper::header::HeaderValue::from_str(&format!(
                "basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_pass)
            ))
            .unwrap()
        };
        assert!(authorized(Some(&header("x-access-token:tok")), "tok"));
        assert!(authorized(Some(&header("anyone:tok")), "tok"));
        assert!(!authorized(Some(&header("x-access-token:other")), "tok"));
        assert!(!authorized(None, "tok"));
        let bearer = hyper::header::HeaderValue::from_static("Bearer tok");
        assert!(!authorized(Some(&bearer), "tok"));
    }

    #[test]
    fn reads_gits_push_report_plain_and_through_the_side_band() {
        let report = [
            pkt(b"unpack ok\n"),
            pkt(b"ok refs/heads/a\n"),
            pkt(b"ng refs/heads/b pre-receive hook declined\n"),
            b"0000".to_vec(),
        ]
        .concat();
        let plain = ReportStatus::parse(&report);
        assert_eq!(
            plain,
            ReportStatus {
                unpack: Some("ok".into()),
                refs: 2,
                refused: Some("pre-receive hook declined".into()),
            }
        );
        let banded = [
            pkt(b"\x02remote: progress\n"),
            pkt(&[&[1u8][..], &report[..20]].concat()),
            pkt(&[&[1u8][..], &report[20..]].concat()),
            b"0000".to_vec(),
        ]
        .concat();
        assert_eq!(ReportStatus::parse(&banded), plain);
        let too_big = [
            pkt(b"unpack index-pack abnormal exit\n"),
            pkt(b"ng refs/heads/a unpacker error\n"),
        ]
        .concat();
        assert_eq!(
            ReportStatus::parse(&too_big).refusal(9),
            Some(Refusal::PushTooLarge { limit: 9 })
        );
    }

    #[test]
    fn finds_the_end_of_the_cgi_header() {
        assert_eq!(find_header_end(b"Status: 200\r\n\r\nbody"), Some((11, 15)));
        assert_eq!(find_header_end(b"A: b\n\nbody"), Some((4, 6)));
        assert_eq!(find_header_end(b"A: b\r\n"), None);
    }
}
