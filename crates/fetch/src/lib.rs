//! Inputs by URL: the worker downloads an input declared as `{url, sha256}`
//! into a cache shared by every workspace of this user, checks its hash, and
//! places it in the task's working folder.
//!
//! # Cache
//!
//! One folder ([`FetchConfig::cache_dir`]) holds one read-only file per
//! content, named by its SHA-256. A hit is hashed again before use (a task
//! may have written through a hard link, a disk may rot) and a bad copy is
//! thrown away and downloaded again. The file is hard-linked into the
//! working folder, or copied when a link is not possible (another file
//! system).
//!
//! # Downloads
//!
//! A miss streams the body into a temporary file in the cache folder while
//! hashing it (constant memory), and renames it into place only once the
//! hash matches: a partial or wrong download is never visible under a hash
//! name, so two bridge processes racing for the same content are harmless
//! (the last rename wins, with the same bytes). Within one process a lock per
//! hash makes concurrent tasks that need the same content wait for one
//! download. Connect errors, timeouts, broken transfers, 429 and 5xx are
//! retried with jittered exponential backoff; other statuses (4xx) and a hash
//! mismatch are not.
//!
//! The HTTP client (reqwest on rustls) is built on the first download, so a
//!
//! # Modules
//!
//! - [`config`]: the cache folder and the timeouts ([`FetchConfig`]), from
//!   the environment or given;
//! - [`fetcher`]: the [`Fetcher`] (locks, retries, the download itself) and
//!   its [`FetchError`];
//! - [`cache`]: checking a cached file, placing it in a working folder, the
//!   temporary file a download goes to;
//! - [`progress`]: how a caller sees a download advance ([`Progress`]).
//!
//! Nothing here prints: progress goes to the caller's [`Progress`] (the
//! bridge binary draws progress bars), and events are logged with
//! `tracing` (a finished download at info level, a retry at info, a
//! damaged cache entry at warn).

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(clippy::too_many_lines)]
#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod fetcher;
pub mod progress;

pub use cache::sha256_file;
pub use config::{
    ConfigError, DEFAULT_BACKOFF, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, DEFAULT_TRIES,
    FetchConfig, TimeoutError, parse_timeouts,
};
pub use fetcher::{FetchError, Fetcher};
pub use progress::{Download, HumanBytes, Progress};

/// Installs one TLS crypto provider (ring) for every HTTPS client of the
/// process (downloads, and any other rustls client such as the GitHub
/// API's). Idempotent: a second call finds it installed. A program calls it
/// once at start-up; [`Fetcher`] calls it again before its first download,
/// so that an embedder who forgot gets ring rather than a panic.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
