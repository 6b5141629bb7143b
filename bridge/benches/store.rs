//! Benchmark: the size of a `dir:` store after many small tasks (issue 18,
//! item 2), beside a peer build in the same run.
//!
//! Run: `cargo bench -p bridge-pool --bench store` (about 2 minutes per
//! binary at the default 20,000 tasks on 2 cores). BRIDGE_BENCH_TASKS
//! changes the task count; BRIDGE_BENCH_PEER names another `bridge` binary
//! (e.g. main's build before a change) measured the same way.
//!
//! Two workloads, each in a fresh workspace whose remote is a `dir:` folder:
//!
//! - `shared-input`: TASKS tasks of `true`, each with the same empty input
//!   file (the case: one input per task, identical content);
//! - `distinct`: TASKS tasks `echo $I`, each with its own 100-byte input
//!   file (distinct content: every input is a blob of its own, and every
//!   task prints a short line).
//!
//! Each is submitted, worked (`work --parallel 2`) and synced; then the
//! remote folder is measured: files, bytes (the sum of their sizes), bytes
//! on disk (allocated blocks: a small file costs a whole block), of which
//! blobs (loose, and packs of small ones); and the gzipped (flate2, default level) `bridge ls --json --full`
//! of the final state, the same facts as JSON. Then `bridge compact` and a
//! sync, and the folder is measured again. Targets (TASKS = 20,000,
//! `shared-input`): ≤ 20 MB on disk, and ≤ 2× the gzipped JSON.

mod support;

use std::path::Path;

use support::{
    bridge_command, env_or, fail, gzip_len, matrix_yaml, stdout_or_fail, store_file_sizes,
};

fn main() {
    let tasks = env_or("BRIDGE_BENCH_TASKS", 20_000);
    let ours = Path::new(env!("CARGO_BIN_EXE_bridge")).to_owned();
    let peer = std::env::var_os("BRIDGE_BENCH_PEER").map(std::path::PathBuf::from);
    println!("{tasks} tasks per workload, `work --parallel 2`, a dir: remote\n");
    let mut rows = Vec::new();
    for workload in [Workload::SharedInput, Workload::Distinct] {
        rows.push(("this build", workload, measure(&ours, workload, tasks)));
        if let Some(peer) = &peer {
            rows.push(("peer", workload, measure(peer, workload, tasks)));
        }
    }
    println!(
        "{:<12}{:<14}{:>8}{:>11}{:>11}{:>11}{:>10}{:>8}",
        "binary", "workload", "files", "bytes", "on disk", "blobs", "gz JSON", "÷ gz"
    );
    for (binary, workload, m) in &rows {
        for (when, s) in [("synced", &m.synced), ("compacted", &m.compacted)] {
            println!(
                "{:<12}{:<14}{:>8}{:>11}{:>11}{:>11}{:>10}{:>8.2}  {when}",
                binary,
                workload.name(),
                s.files,
                mb(s.bytes),
                mb(s.on_disk),
                mb(s.blob_on_disk),
                mb(m.gz_json),
                s.on_disk as f64 / m.gz_json as f64,
            );
        }
    }
    println!("\ntargets (shared-input, 20,000 tasks): ≤ 20 MB on disk, ≤ 2 × gz JSON");
}

#[derive(Clone, Copy)]
enum Workload {
    SharedInput,
    Distinct,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::SharedInput => "shared-input",
            Workload::Distinct => "distinct",
        }
    }
}

struct Measured {
    synced: Sizes,
    compacted: Sizes,
    gz_json: u64,
}

#[derive(Default)]
struct Sizes {
    files: u64,
    bytes: u64,
    on_disk: u64,
    blob_on_disk: u64,
}

fn measure(bridge: &Path, workload: Workload, tasks: usize) -> Measured {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("a temp dir: {e}")));
    let (dir, store, config) = (
        tmp.path().join("ws"),
        tmp.path().join("store"),
        tmp.path().join("config"),
    );
    std::fs::create_dir_all(dir.join("in")).unwrap_or_else(|e| fail(&format!("mkdir: {e}")));
    let run = |args: &[&str]| {
        stdout_or_fail(
            bridge_command(bridge, &dir, &config).args(args),
            &format!("bridge {}", args.join(" ")),
        )
    };
    run(&["init", "--remote", &format!("dir:{}", store.display())]);
    let yaml = match workload {
        Workload::SharedInput => {
            write(&dir.join("in/empty"), b"");
            matrix_yaml("t", tasks, "[\"true\"]", &["inputs: [in/empty]"])
        }
        Workload::Distinct => {
            for i in 0..tasks {
                write(
                    &dir.join(format!("in/{i}")),
                    format!("{i:0>100}").as_bytes(),
                );
            }
            matrix_yaml(
                "t",
                tasks,
                "[\"sh\", \"-c\", \"echo task $I\"]",
                &["inputs: [\"in/${{ matrix.i }}\"]"],
            )
        }
    };
    write(&dir.join("tasks.yaml"), yaml.as_bytes());
    run(&["submit", "--offline", "-q", "tasks.yaml"]);
    run(&["work", "--offline", "-q", "--parallel", "2"]);
    run(&["sync", "-q"]);
    let synced = sizes(&store);
    let json = run(&["ls", "--json", "--full"]);
    let gz_json = gzip_len(json.as_bytes());
    run(&["compact"]);
    run(&["sync", "-q"]);
    Measured {
        synced,
        compacted: sizes(&store),
        gz_json,
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
}

/// Sums a folder store's files (temporary files aside).
fn sizes(store: &Path) -> Sizes {
    let mut s = Sizes::default();
    for f in store_file_sizes(store) {
        s.files += 1;
        s.bytes += f.len;
        s.on_disk += f.on_disk;
        if f.blob {
            s.blob_on_disk += f.on_disk;
        }
    }
    s
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}
