//! Help texts and the demo.

use std::fs;

use crate::harness::{Device, temp_dir};

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
        ("demo", &["demo", "--dir"]),
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
fn demo_runs_two_devices_to_a_report() {
    let d = Device::new("demo");
    let tmp = temp_dir("demo");
    let dir = tmp.path().join("demo");
    let run = d
        .run(&["demo", "--dir", dir.to_str().expect("utf-8")])
        .expect_code(0);
    assert!(run.stdout.contains("Total:"), "{}", run.stdout);
    assert!(run.stdout.contains("[laptop]$ bridge"), "{}", run.stdout);
    assert!(run.stdout.contains("[desktop]$ bridge"), "{}", run.stdout);
    let report =
        fs::read_to_string(dir.join("desktop/results/report.txt")).expect("the demo's report");
    assert!(report.contains("Total:"), "{report}");
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
