//! Helpers the benchmark binaries share (each includes this module).

use std::path::Path;
use std::process::{Command, Stdio};

/// The number in environment variable `key`, else `default`.
pub fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `bridge` binary to time: `BRIDGE_BENCH_BIN` when set (to time another
/// build, e.g. the previous commit's, with the same benchmark code), else the
/// one cargo built with this benchmark.
#[allow(dead_code)] // the `work` benchmark times a peer beside its own build instead
pub fn bridge_binary() -> std::path::PathBuf {
    std::env::var_os("BRIDGE_BENCH_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_bridge").into(), Into::into)
}

/// Ends the benchmark with a message: a benchmark has no one to return an
/// error to.
pub fn fail(msg: &str) -> ! {
    eprintln!("benchmark failed: {msg}");
    std::process::exit(1)
}

/// `bridge` run in `dir` with its own config folder (identity, pins), and
/// none of the caller's bridge, git or GitHub settings leaking in.
#[allow(dead_code)] // the `work` benchmark has no use for it
pub fn bridge_command(bridge: &Path, dir: &Path, config: &Path) -> Command {
    let mut c = Command::new(bridge);
    c.current_dir(dir)
        .env("BRIDGE_CONFIG_DIR", config)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("BRIDGE_IDENTITY")
        .env_remove("BRIDGE_SHARD")
        .env_remove("BRIDGE_REMOTE")
        .env_remove("BRIDGE_WORKSPACE")
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null());
    c
}

/// A task file of one matrix task `name` with `count` instances (each with
/// `I` = its index in its environment) running `run` (a YAML flow list),
/// plus `extra` lines of the task (e.g. `timeout: 1m`).
pub fn matrix_yaml(name: &str, count: usize, run: &str, extra: &[&str]) -> String {
    let values: Vec<String> = (0..count).map(|i| i.to_string()).collect();
    let mut yaml = format!(
        "tasks:\n  - name: {name}\n    matrix:\n      i: [{}]\n    run: {run}\n",
        values.join(", ")
    );
    for line in extra {
        yaml.push_str(&format!("    {line}\n"));
    }
    yaml.push_str("    env: { I: \"${{ matrix.i }}\" }\n");
    yaml
}

/// Runs `cmd` to completion and returns its stdout; ends the benchmark,
/// naming `what` and showing stderr, if it cannot start or fails.
#[allow(dead_code)] // the `work` benchmark has no use for it
pub fn stdout_or_fail(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("{what}: {e}")));
    if !out.status.success() {
        fail(&format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The size of `data` gzipped (flate2, default level): the baseline the
/// store's size is held against.
#[allow(dead_code)] // the `work` and `fleet` benchmarks have no use for it
pub fn gzip_len(data: &[u8]) -> u64 {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data)
        .unwrap_or_else(|e| fail(&format!("gzip: {e}")));
    gz.finish()
        .unwrap_or_else(|e| fail(&format!("gzip: {e}")))
        .len() as u64
}

/// One file of a folder store, for the size benchmarks.
#[allow(dead_code)] // the `work` and `fleet` benchmarks have no use for it
pub struct StoreFileSize {
    /// Its length in bytes.
    pub len: u64,
    /// The bytes the file system allocated for it (whole blocks).
    pub on_disk: u64,
    /// A blob, loose (`blobs/`) or packed (`packs/`), not a document file.
    pub blob: bool,
}

/// Every file of a folder store (temporary files aside), with its sizes.
#[allow(dead_code)] // the `work` and `fleet` benchmarks have no use for it
pub fn store_file_sizes(store: &Path) -> Vec<StoreFileSize> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(store) {
        let entry = entry.unwrap_or_else(|e| fail(&format!("walk {}: {e}", store.display())));
        if !entry.file_type().is_file() || entry.file_name().to_string_lossy().starts_with(".tmp-")
        {
            continue;
        }
        let meta = entry
            .metadata()
            .unwrap_or_else(|e| fail(&format!("stat {}: {e}", entry.path().display())));
        let blob = entry
            .path()
            .strip_prefix(store)
            .is_ok_and(|p| p.starts_with("blobs") || p.starts_with("packs"));
        out.push(StoreFileSize {
            len: meta.len(),
            on_disk: meta.blocks() * 512,
            blob,
        });
    }
    out
}
