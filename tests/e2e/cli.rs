//! Help texts and the demo.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::harness::{Device, str_field, temp_dir};

#[test]
fn every_subcommand_has_help_that_says_what_it_does() {
    let d = Device::new("helpful");
    let cases: &[(&str, &[&str])] = &[
        ("init", &["Create a workspace", "--remote"]),
        ("join", &["Join an existing shared store", "REMOTE"]),
        (
            "submit",
            &[
                "Submit tasks",
                "--each",
                "--args",
                "--colsep",
                "--dry-run",
                "--rerun",
                "--offline",
            ],
        ),
        ("status", &["pending", "running", "--json"]),
        (
            "ls",
            &["List tasks", "--status", "--json", "--joblog", "--format"],
        ),
        ("show", &["Show one task", "attempt"]),
        ("logs", &["output of a task", "--stderr"]),
        ("outputs", &["output files", "--to"]),
        ("report", &["self-contained HTML page", "--to", "--batch"]),
        ("cancel", &["Cancel", "batch"]),
        ("retry", &["failed task", "pending"]),
        ("work", &["Run runnable tasks", "--parallel", "130"]),
        ("sync", &["Exchange tasks and results", "code 4"]),
        ("demo", &["demo", "--dir", "runners", "devices"]),
    ];
    for (cmd, words) in cases {
        let run = d.run(&[cmd, "--help"]).expect_code(0);
        for w in *words {
            assert!(
                run.stdout.contains(w),
                "`bridge {cmd} --help` does not mention `{w}`:\n{}",
                run.stdout
            );
        }
    }
    let top = d.run(&["--help"]).expect_code(0);
    for (cmd, _) in cases {
        assert!(
            top.stdout.contains(&format!("  {cmd} ")),
            "`bridge --help` lacks {cmd}:\n{}",
            top.stdout
        );
    }
    assert!(top.stdout.contains("Exit codes"), "{}", top.stdout);
    let version = d.run(&["--version"]).expect_code(0);
    assert!(version.stdout.starts_with("bridge "), "{}", version.stdout);
}

#[test]
fn demo_devices_runs_two_devices_to_a_report() {
    let d = Device::new("demo");
    let tmp = temp_dir("demo");
    let dir = tmp.path().join("demo");
    let run = d
        .run(&["demo", "devices", "--dir", dir.to_str().expect("utf-8")])
        .expect_code(0);
    assert!(run.stdout.contains("Total:"), "{}", run.stdout);
    assert!(run.stdout.contains("[laptop]$ bridge"), "{}", run.stdout);
    assert!(run.stdout.contains("[desktop]$ bridge"), "{}", run.stdout);
    let report =
        fs::read_to_string(dir.join("desktop/results/report.txt")).expect("the demo's report");
    assert!(report.contains("Total:"), "{report}");
}

/// `bridge ARGS --json` as the demo's laptop (its folder, its identity).
fn as_demo_laptop(d: &Device, laptop: &Path, args: &[&str]) -> Value {
    let mut cmd = d.command_in(laptop, false, args);
    cmd.arg("--json")
        .env("BRIDGE_CONFIG_DIR", laptop.join(".config"))
        .env("BRIDGE_DEVICE", "laptop");
    let out = cmd.output().expect("cannot start bridge");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`bridge {}` at the demo's laptop printed no JSON ({e}): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Issue 16, item 10: the first command of the README runs the main job.
/// Two runners with GitHub Actions' environment drain a pool kept in a bare
/// git repository; the one of shard 1/2 gets SIGTERM while a task runs;
/// the laptop ends with every result.
#[test]
fn demo_runs_runners_that_drain_a_git_pool_through_a_cancelled_job() {
    let d = Device::new("demo-runners");
    let tmp = temp_dir("demo-runners");
    let dir = tmp.path().join("demo");
    let run = d
        .run(&["demo", "--dir", dir.to_str().expect("utf-8")])
        .expect_code(0);
    let out = &run.stdout;
    eprintln!("{out}");
    for shown in [
        "$ git init --bare ",
        "[laptop]$ bridge submit --offline demo/runners.yaml",
        "[laptop]$ bridge members add-runner ci > ../ci-identity",
        "GITHUB_ACTIONS=true GITHUB_STEP_SUMMARY=summary.md GITHUB_OUTPUT=output.txt bridge run --shard 0/2 &",
        "bridge run --shard 1/2 &",
        // The header's group, as GitHub shows a group, and no mask command.
        "  [runner-0] ▸ bridge ",
        // The failing task's annotation, from whichever runner ran it.
        "Error: task count-dracula failed: ",
        "── runner-1 (shard 1/2), exit 130: stopped by a signal",
    ] {
        assert!(
            out.contains(shown),
            "the demo does not show `{shown}`:\n{out}"
        );
    }
    assert!(!out.contains("::add-mask::"), "{out}");
    let secret = fs::read_to_string(dir.join("ci-identity")).expect("the runner identity");
    assert!(!out.contains(secret.trim()), "the demo showed the secret");

    // The cancelled job was stopped in the middle of a task, and still
    // wrote its step outputs and job summary (its annotations are in the
    // log above: an interrupted task has none).
    let (_, rest) = out
        .split_once("$ kill -TERM ")
        .expect("the demo cancels a job");
    let task = rest
        .split_once("while ")
        .and_then(|(_, t)| t.split_once(" runs"))
        .map(|(t, _)| t.to_owned())
        .expect("the cancelled job's task");
    let summary = fs::read_to_string(dir.join("runner-1/summary.md")).expect("its job summary");
    assert!(
        summary.starts_with("### bridge run (shard 1/2)"),
        "{summary}"
    );
    let interrupted: u64 = summary
        .split(" interrupted")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no interrupted count in {summary}"));
    assert!(interrupted >= 1, "{summary}");
    // Its row in the table of tasks.
    assert!(summary.contains(" interrupted | "), "{summary}");
    let outputs = fs::read_to_string(dir.join("runner-1/output.txt")).expect("its step outputs");
    assert!(
        outputs.lines().any(|l| l.starts_with("tasks-left=")),
        "{outputs}"
    );

    // Every result is at the laptop.
    let laptop = dir.join("laptop");
    let status = as_demo_laptop(&d, &laptop, &["status"]);
    assert_eq!(status["tasks"], 6, "{status}");
    assert_eq!(status["counts"]["done"], 5, "{status}");
    assert_eq!(status["counts"]["failed"], 1, "{status}");
    let show = as_demo_laptop(&d, &laptop, &["show", &task]);
    let attempts: Vec<(String, String)> = show["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| (str_field(a, "outcome"), str_field(a, "device")))
        .collect();
    assert!(
        attempts.contains(&("interrupted".to_owned(), "runner-1".to_owned())),
        "{attempts:?}"
    );
    // Listed by attempt key, not by time: the success is somewhere.
    assert!(attempts.iter().any(|a| a.0 == "success"), "{attempts:?}");
    assert_eq!(show["status"], "done", "{show}");
    let report = fs::read_to_string(laptop.join("results/report.txt")).expect("the report");
    for book in ["alice", "frankenstein", "pride", "time-machine", "Total:"] {
        assert!(report.contains(book), "{report}");
    }
}

/// `--quiet`: "Print only errors". A healthy workspace has none to print.
#[test]
fn quiet_commands_print_nothing_on_stderr() {
    let d = Device::new("hush");
    d.ok(&["init", "--quiet"]);
    d.ok(&["submit", "--quiet", "--", "echo", "a"]);
    d.ok(&["submit", "--quiet", "--", "echo", "b"]);
    d.ok(&["work", "--quiet"]);
    // Documents now hold several chunks (tasks, claims, attempts).
    for args in [
        &["status", "--quiet"][..],
        &["ls", "--quiet"],
        &["submit", "--quiet", "--", "echo", "c"],
        &["work", "--quiet"],
    ] {
        let run = d.ok(args);
        assert_eq!(
            run.stderr,
            "",
            "`bridge {}` printed on stderr",
            args.join(" ")
        );
    }
    let st = d.status();
    assert_eq!((st.tasks, st.count("done")), (3, 3), "{st:?}");
}
