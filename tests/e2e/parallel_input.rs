//! Issue 17, item 4: input like GNU parallel. `submit --args FILE|-` makes
//! one task per line with `{}` and column placeholders, `--dry-run` prints
//! what any form of `submit` would create and stores nothing, and
//! `ls --joblog` / `ls --format tsv` give the attempts and tasks as rows a
//! script parses back.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{Device, files_under, str_field};

fn names(d: &Device) -> Vec<String> {
    let mut n: Vec<String> = d.ls().into_iter().map(|t| t.name).collect();
    n.sort();
    n
}

fn stdout_of(d: &Device, task: &str) -> String {
    d.ok(&["logs", task]).stdout
}

#[test]
fn args_file_makes_one_task_per_line_with_its_columns() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    // Tab-separated columns, an empty line (skipped), a column with a
    // space (stays one argument) and a line that itself holds `{1}` (not
    // substituted again).
    d.write("args.tsv", "alpha\t1\n\nhello world\t2\n{1}; rm -rf x\t3\n");
    let sub = d
        .ok(&[
            "submit",
            "--json",
            "--args",
            "args.tsv",
            "--",
            "printf",
            "[%s][%s][%s]",
            "{2}",
            "{1}",
            "n={#}",
        ])
        .json();
    assert_eq!(sub["new"], 3, "{sub}");
    assert_eq!(
        names(&d),
        [
            "printf alpha 1",
            "printf hello world 2",
            "printf {1}; rm -rf x 3"
        ]
    );
    d.ok(&["work"]);
    assert_eq!(d.status().count("done"), 3);
    assert_eq!(stdout_of(&d, "printf alpha 1"), "[1][alpha][n=1]");
    assert_eq!(
        stdout_of(&d, "printf hello world 2"),
        "[2][hello world][n=2]"
    );
    assert_eq!(
        stdout_of(&d, "printf {1}; rm -rf x 3"),
        "[3][{1}; rm -rf x][n=3]"
    );

    // Without a placeholder the line is the last argument, as in parallel.
    // A line is data, never shell: `$(…)` and backquotes stay as written.
    d.write("words.txt", "one two\n$(echo pwned) `echo pwned`\n");
    d.ok(&["submit", "-q", "--args", "words.txt", "--", "echo"]);
    d.ok(&["work"]);
    assert_eq!(stdout_of(&d, "echo one two"), "one two\n");
    assert_eq!(
        stdout_of(&d, "echo $(echo pwned) `echo pwned`"),
        "$(echo pwned) `echo pwned`\n"
    );
}

/// `--input {}`, as parallel's `--transferfile {}`: each line names its
/// own input file, which the task gets in its folder.
#[test]
fn each_line_may_name_its_own_input() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write("data/a.txt", "aaa");
    d.write("data/b b.txt", "bbbbb");
    d.write("shared.txt", "s");
    d.write("files.txt", "data/a.txt\ndata/b b.txt\n");
    let dry = d
        .ok(&[
            "submit",
            "--dry-run",
            "--json",
            "--args",
            "files.txt",
            "--input",
            "{}",
            "--input",
            "shared.txt",
            "--",
            "wc",
            "-c",
            "{}",
        ])
        .json();
    assert_eq!(
        dry[0]["inputs"],
        serde_json::json!(["data/a.txt", "shared.txt"])
    );
    assert_eq!(
        dry[1]["inputs"],
        serde_json::json!(["data/b b.txt", "shared.txt"])
    );
    d.ok(&[
        "submit",
        "-q",
        "--args",
        "files.txt",
        "--input",
        "{}",
        "--",
        "wc",
        "-c",
        "{}",
    ]);
    d.ok(&["work"]);
    assert_eq!(stdout_of(&d, "wc data/a.txt"), "3 data/a.txt\n");
    assert_eq!(stdout_of(&d, "wc data/b b.txt"), "5 data/b b.txt\n");

    // A line naming a file that is not there: refused, naming the line.
    d.write("more.txt", "data/a.txt\n\ndata/gone.txt\n");
    let run = d
        .run(&[
            "submit", "--args", "more.txt", "--input", "{}", "--", "wc", "-c", "{}",
        ])
        .expect_code(1);
    assert!(
        run.stderr.contains("line 3 of more.txt") && run.stderr.contains("gone.txt"),
        "{}",
        run.stderr
    );
    assert_eq!(d.status().tasks, 2);
}

#[test]
fn args_from_stdin_with_a_colsep_and_a_name_prefix() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.run_stdin(
        &[
            "submit", "-q", "--args", "-", "--colsep", " *, *", "--name", "fit", "--", "echo",
            "{2}-{1}",
        ],
        b"a , 1\nb,2\n",
    )
    .expect_code(0);
    assert_eq!(names(&d), ["fit[line 1]", "fit[line 2]"]);
    // The prefix works as a matrix entry does: `show fit` lists both.
    let shown = d.ok(&["show", "fit", "--json"]).json();
    assert_eq!(shown.as_array().map(Vec::len), Some(2), "{shown}");
    d.ok(&["work"]);
    assert_eq!(stdout_of(&d, "fit[line 1]"), "1-a\n");
    assert_eq!(stdout_of(&d, "fit[line 2]"), "2-b\n");

    // A --name with placeholders names each task by them; with --colsep
    // and no placeholder in the command, the columns are appended.
    let dry = d
        .run_stdin(
            &[
                "submit",
                "--dry-run",
                "--json",
                "--args",
                "-",
                "--colsep",
                ",",
                "--name",
                "sum {1}",
                "--",
                "echo",
            ],
            b"x,y\n",
        )
        .expect_code(0)
        .json();
    assert_eq!(dry[0]["name"], "sum x", "{dry}");
    assert_eq!(dry[0]["command"], serde_json::json!(["echo", "x", "y"]));
}

#[test]
fn bad_argument_lines_are_refused_before_anything_is_stored() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write("args.tsv", "a\tb\nc\td\n\nonly-one\n");
    let run = d
        .run(&["submit", "--args", "args.tsv", "--", "echo", "{1}", "{2}"])
        .expect_code(1);
    assert!(
        run.stderr.contains("line 4 of args.tsv has 1 column")
            && run.stderr.contains("{2}")
            && run.stderr.contains("Hint:"),
        "{}",
        run.stderr
    );
    let run = d
        .run(&["submit", "--args", "args.tsv", "--", "echo", "{0}"])
        .expect_code(1);
    assert!(run.stderr.contains("count from 1"), "{}", run.stderr);
    // One word with spaces would be a shell script with each line in it.
    let run = d
        .run(&["submit", "--args", "args.tsv", "--", "echo {1}"])
        .expect_code(1);
    assert!(
        run.stderr.contains("separate words") && run.stderr.contains("sh -c"),
        "{}",
        run.stderr
    );
    // A colsep that matches the empty text splits everywhere.
    let run = d
        .run(&[
            "submit", "--args", "args.tsv", "--colsep", "|", "--", "echo",
        ])
        .expect_code(1);
    assert!(run.stderr.contains("\\|"), "{}", run.stderr);
    // --each and --args both say where the tasks come from.
    let run = d
        .run(&["submit", "--args", "args.tsv", "--each", "*", "--", "echo"])
        .expect_code(2);
    assert!(
        run.stderr
            .contains("'--args <FILE|->' cannot be used with '--each <GLOB>'"),
        "{}",
        run.stderr
    );
    let run = d
        .run(&["submit", "--args", "missing.txt", "--", "echo"])
        .expect_code(1);
    assert!(run.stderr.contains("missing.txt"), "{}", run.stderr);
    d.write("empty.txt", "\n\n");
    let run = d
        .run(&["submit", "--args", "empty.txt", "--", "echo"])
        .expect_code(1);
    assert!(run.stderr.contains("no argument lines"), "{}", run.stderr);
    let run = d
        .run_stdin(&["submit", "--args", "-", "--", "echo"], b"ok\n\xff\xfe\n")
        .expect_code(1);
    assert!(
        run.stderr.contains("line 2 of stdin is not UTF-8"),
        "{}",
        run.stderr
    );
    assert_eq!(d.status().tasks, 0);
}

#[test]
fn ten_thousand_lines_are_one_batch() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    let lines: String = (1..=10_000).map(|i| format!("{i}\n")).collect();
    let sub = d
        .run_stdin(
            &[
                "submit",
                "--json",
                "--offline",
                "--args",
                "-",
                "--",
                "echo",
                "{}",
            ],
            lines.as_bytes(),
        )
        .expect_code(0)
        .json();
    assert_eq!(sub["new"], 10_000, "new");
    assert!(sub["batch"].is_string(), "{}", sub["batch"]);
    let status = d.ok(&["status", "--json"]).json();
    assert_eq!(status["tasks"], 10_000);
    assert_eq!(
        status["batches"].as_array().map(Vec::len),
        Some(1),
        "{}",
        status["batches"]
    );
}

/// Every file of the workspace's store, with its content.
fn store_snapshot(d: &Device) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(&d.dir.join(".bridge"))
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}

#[test]
fn dry_run_prints_every_form_and_stores_nothing() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.ok(&["submit", "-q", "--", "echo", "already"]);
    d.write("docs/a.md", "a");
    d.write("docs/b.md", "b");
    d.write("args.txt", "x y\nz\n");
    d.write(
        "tasks.yaml",
        "tasks:\n  - name: build\n    run: make\n    inputs: [docs/a.md]\n  - name: test\n    needs: [build]\n    run: [cargo, test]\n",
    );
    // `status` writes its cache: read before the snapshot.
    let status_before = d.status();
    let before = store_snapshot(&d);

    let forms: [(&[&str], Value); 4] = [
        (
            &["tasks.yaml"],
            serde_json::json!([
                {"name": "build", "command": ["sh", "-c", "make"], "inputs": ["docs/a.md"], "needs": []},
                {"name": "test", "command": ["cargo", "test"], "inputs": [], "needs": ["build"]},
            ]),
        ),
        (
            &["--", "python3", "sim.py", "--seed", "7"],
            serde_json::json!([
                {"name": "python3 sim.py --seed 7", "command": ["python3", "sim.py", "--seed", "7"], "inputs": [], "needs": []},
            ]),
        ),
        (
            &["--each", "docs/*.md", "--", "wc", "-c", "{}"],
            serde_json::json!([
                {"name": "wc docs/a.md", "command": ["wc", "-c", "docs/a.md"], "inputs": ["docs/a.md"], "needs": []},
                {"name": "wc docs/b.md", "command": ["wc", "-c", "docs/b.md"], "inputs": ["docs/b.md"], "needs": []},
            ]),
        ),
        (
            &["--args", "args.txt", "--", "echo", "<{}>"],
            serde_json::json!([
                {"name": "echo x y", "command": ["echo", "<x y>"], "inputs": [], "needs": []},
                {"name": "echo z", "command": ["echo", "<z>"], "inputs": [], "needs": []},
            ]),
        ),
    ];
    for (form, want) in &forms {
        let mut args = vec!["submit", "--dry-run", "--json"];
        args.extend_from_slice(form);
        let got = d.ok(&args).json();
        let got: Vec<Value> = got
            .as_array()
            .unwrap_or_else(|| panic!("not an array: {got}"))
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t["name"], "command": t["command"],
                    "inputs": t["inputs"], "needs": t["needs"],
                })
            })
            .collect();
        assert_eq!(&Value::from(got), want, "{form:?}");

        let mut args = vec!["submit", "--dry-run"];
        args.extend_from_slice(form);
        let text = d.ok(&args).stdout;
        assert!(text.starts_with("Dry run: would submit"), "{text}");
        for t in want.as_array().into_iter().flatten() {
            assert!(text.contains(&str_field(t, "name")), "{form:?}: {text}");
        }
    }
    // The text form quotes a word with a space: it is one argument.
    let text = d
        .ok(&[
            "submit",
            "--dry-run",
            "--args",
            "args.txt",
            "--",
            "echo",
            "{}",
        ])
        .stdout;
    assert!(text.contains("command  echo 'x y'"), "{text}");
    // A task that exists already is still only printed.
    d.ok(&["submit", "--dry-run", "--", "echo", "already"]);

    let after = store_snapshot(&d);
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(changed.is_empty(), "a dry run changed {changed:?}");
    assert_eq!(d.status(), status_before);

    // Outside any workspace it needs none.
    let elsewhere = Device::new("elsewhere");
    let run = elsewhere.ok(&["submit", "--dry-run", "--", "echo", "hi"]);
    assert!(run.stdout.contains("would submit 1 task"), "{}", run.stdout);
    assert!(
        !elsewhere.dir.join(".bridge").exists(),
        "a dry run created a workspace"
    );
}

/// A joblog or TSV field, unescaped (`\t`, `\n`, `\r`, `\\`).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            other => panic!("bad escape \\{other:?} in {field:?}"),
        }
    }
    out
}

fn rows(text: &str, header: &[&str]) -> Vec<Vec<String>> {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    assert_eq!(head, header, "{text}");
    lines
        .map(|l| {
            let fields: Vec<String> = l.split('\t').map(unescape).collect();
            assert_eq!(fields.len(), header.len(), "a broken row: {l:?}");
            fields
        })
        .collect()
}

#[test]
fn joblog_and_tsv_parse_back() {
    let d = Device::new("laptop");
    d.ok(&["init"]);
    d.write(
        "tasks.yaml",
        "tasks:\n  - name: \"odd\\tname\\nwith \\\\ in it\"\n    run: [echo, \"a\\tb\"]\n  - name: flaky\n    run: exit 3\n    retries: 1\n  - name: later\n    needs: [flaky]\n    run: echo never\n  - name: killed\n    run: kill -9 $$\n",
    );
    d.ok(&["submit", "-q", "tasks.yaml"]);
    d.run(&["work"]).expect_code(3);
    let ls = d.ls();
    let id_of = |name: &str| {
        ls.iter()
            .find(|t| t.name == name)
            .map(|t| t.id.clone())
            .unwrap_or_else(|| panic!("no task {name}"))
    };

    let log = d.ok(&["ls", "--joblog"]).stdout;
    let log = rows(
        &log,
        &[
            "Seq",
            "Host",
            "Starttime",
            "JobRuntime",
            "Send",
            "Receive",
            "Exitval",
            "Signal",
            "Command",
        ],
    );
    // One row per attempt: the retried task has two, the skipped none.
    assert_eq!(log.len(), 4, "{log:?}");
    let killed = log
        .iter()
        .find(|r| r[8] == "kill -9 $$")
        .unwrap_or_else(|| panic!("no row for the killed task: {log:?}"));
    assert_eq!((killed[6].as_str(), killed[7].as_str()), ("-1", "9"));
    let flaky: Vec<&Vec<String>> = log.iter().filter(|r| r[8] == "exit 3").collect();
    assert_eq!(flaky.len(), 2, "{log:?}");
    assert_eq!(flaky[0][0], flaky[1][0], "a task's attempts share its Seq");
    for r in &flaky {
        assert_eq!((r[6].as_str(), r[7].as_str()), ("3", "0"), "{r:?}");
    }
    let odd = log
        .iter()
        .find(|r| r[8] == "echo 'a\tb'")
        .unwrap_or_else(|| panic!("no row for the odd task: {log:?}"));
    assert_eq!((odd[6].as_str(), odd[7].as_str()), ("0", "0"));
    for r in &log {
        assert_eq!(r[1], "laptop", "Host is the device: {r:?}");
        let (secs, millis) = r[2].split_once('.').expect("Starttime has decimals");
        assert_eq!(millis.len(), 3, "{r:?}");
        assert!(
            secs.parse::<u64>().is_ok_and(|s| s > 1_000_000_000),
            "{r:?}"
        );
        let runtime: f64 = r[3].trim().parse().expect("JobRuntime is seconds");
        assert!(runtime >= 0.0, "{r:?}");
        assert_eq!((r[4].as_str(), r[5].as_str()), ("0", "0"), "{r:?}");
    }
    // --joblog takes the filters of ls.
    let only = d.ok(&["ls", "--joblog", "--status", "done"]).stdout;
    assert_eq!(only.lines().count(), 2, "{only}");

    let tsv = d.ok(&["ls", "--format", "tsv"]).stdout;
    let tsv = rows(
        &tsv,
        &[
            "id",
            "name",
            "status",
            "host",
            "start",
            "runtime",
            "exit_code",
            "command",
        ],
    );
    assert_eq!(tsv.len(), 4, "one row per task: {tsv:?}");
    let row = |name: &str| {
        tsv.iter()
            .find(|r| r[1] == name)
            .unwrap_or_else(|| panic!("no row named {name:?}: {tsv:?}"))
    };
    let odd = row("odd\tname\nwith \\ in it");
    assert_eq!(odd[0], id_of("odd\tname\nwith \\ in it"));
    assert_eq!(
        (odd[2].as_str(), odd[3].as_str(), odd[6].as_str()),
        ("done", "laptop", "0")
    );
    assert!(odd[4].ends_with('Z') && odd[4].contains('T'), "{odd:?}");
    assert!(odd[5].parse::<f64>().is_ok(), "{odd:?}");
    let flaky = row("flaky");
    assert_eq!((flaky[2].as_str(), flaky[6].as_str()), ("failed", "3"));
    let killed = row("killed");
    assert_eq!((killed[2].as_str(), killed[6].as_str()), ("failed", ""));
    let later = row("later");
    assert_eq!(later[0], id_of("later"));
    assert_eq!(
        (
            later[2].as_str(),
            later[3].as_str(),
            later[4].as_str(),
            later[6].as_str()
        ),
        ("skipped", "", "", ""),
        "no attempt, empty fields"
    );

    let run = d.run(&["ls", "--joblog", "--json"]).expect_code(2);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}
