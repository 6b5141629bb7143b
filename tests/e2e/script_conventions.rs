//! Conventions of what bridge prints (issue 17, items 8 and 10): RFC 3339
//! times in every JSON output, short batch ids that are prefixes of the
//! full ones, multi-line scripts shown line by line, `--json` on the
//! commands that write, and `whoami` doing what the README says.

use std::fs;

use serde_json::Value;

use crate::harness::{Device, dir_remote, temp_dir};

/// Whether `v` is an RFC 3339 time in UTC, as bridge prints them.
fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.ends_with('Z') && humantime::parse_rfc3339(s).is_ok())
}

/// Asserts that every time in one task of `show --json` is RFC 3339.
fn assert_times_of(task: &Value) {
    let claims = task["claims"].as_array().expect("claims");
    let attempts = task["attempts"].as_array().expect("attempts");
    assert!(!claims.is_empty() && !attempts.is_empty(), "{task}");
    for c in claims {
        assert!(is_rfc3339(&c["at"]), "claim time: {c}");
        assert!(is_rfc3339(&c["lease_until"]), "lease: {c}");
    }
    for a in attempts {
        assert!(is_rfc3339(&a["started_at"]), "attempt: {a}");
        assert!(is_rfc3339(&a["ended_at"]), "attempt: {a}");
    }
    for key in ["cancels", "retries"] {
        for (_, at) in task[key].as_object().expect(key) {
            assert!(is_rfc3339(at), "{key}: {task}");
        }
    }
}

#[test]
fn every_json_output_gives_times_in_rfc3339() {
    let d = Device::new("iso-times");
    d.ok(&["init"]);
    d.ok(&["submit", "--name", "flaky", "--", "sh", "-c", "exit 3"]);
    d.run(&["work"]).expect_code(3);
    d.ok(&["retry", "flaky"]);

    let shown = d.show("flaky");
    assert_times_of(&shown);
    assert_eq!(shown["retries"].as_object().map(|m| m.len()), Some(1));
    let full = d.ok(&["ls", "--json", "--full"]).json();
    assert_times_of(&full[0]);
    assert_eq!(full[0]["attempts"], shown["attempts"], "{full}");
    let status = d.ok(&["status", "--json"]).json();
    assert!(is_rfc3339(&status["batches"][0]["created_at"]), "{status}");
}

#[test]
fn the_short_batch_id_is_a_prefix_every_command_takes() {
    let d = Device::new("short-ids");
    d.ok(&["init"]);
    let sub = d.ok(&["submit", "--name", "one", "--", "echo", "one"]);
    d.ok(&["submit", "--name", "two", "--", "echo", "two"]);
    let batch = d.task("one").batch;
    let short = &batch[..12];
    assert!(
        sub.stdout.contains(&format!("batch {short}")),
        "{}",
        sub.stdout
    );
    let table = d.ok(&["ls"]).stdout;
    let row = table
        .lines()
        .find(|l| l.ends_with("one"))
        .unwrap_or_else(|| panic!("no row for `one`:\n{table}"));
    assert!(row.contains(short), "{table}");
    let status = d.ok(&["status"]).stdout;
    assert!(status.contains(short), "{status}");

    // The short id selects the batch in `ls --batch`, `show` and `cancel`.
    let only = d.ok(&["ls", "--json", "--batch", short]).json();
    assert_eq!(only.as_array().map(Vec::len), Some(1), "{only}");
    let listed = d.ok(&["show", short]).stdout;
    assert!(
        listed.contains("one") && !listed.contains("two"),
        "{listed}"
    );
    let cancelled = d.ok(&["cancel", short, "--json"]).json();
    assert_eq!(cancelled["cancelled"].as_array().map(Vec::len), Some(1));
    assert_eq!(cancelled["synced"], true, "{cancelled}");
    assert_eq!(d.task("one").status, "cancelled");
    assert_eq!(d.task("two").status, "pending");
}

#[test]
fn a_multi_line_script_is_shown_line_by_line() {
    let d = Device::new("multi-line");
    d.ok(&["init"]);
    d.write(
        "tasks.yaml",
        "tasks:\n  - name: steps\n    run: |\n      echo first\n      echo second\n",
    );
    let dry = d.ok(&["submit", "--dry-run", "tasks.yaml"]).stdout;
    assert!(!dry.contains("\\u{a}"), "{dry}");
    assert!(
        dry.contains("echo first") && dry.contains("echo second"),
        "{dry}"
    );
    d.ok(&["submit", "tasks.yaml"]);
    let shown = d.ok(&["show", "steps"]).stdout;
    assert!(!shown.contains("\\u{a}"), "{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("Command  ") && l.ends_with("echo first"))
        .unwrap_or_else(|| panic!("no Command line:\n{shown}"));
    assert_eq!(lines[at + 1].trim(), "echo second", "{shown}");
    assert!(lines[at + 1].starts_with("         "), "{shown}");

    // A `sh -c` script with line breaks names its task by its first line.
    d.ok(&["submit", "--", "sh", "-c", "echo a\necho b"]);
    assert!(
        d.ls().iter().any(|t| t.name == "sh -c echo a …"),
        "{:?}",
        d.ls()
    );
}

#[test]
fn retry_join_and_add_runner_print_json() {
    let shared = temp_dir("json-writes");
    let pool = shared.path().join("pool");
    let admin = Device::new("json-admin");
    admin.ok(&["init", "--remote", &dir_remote(&pool)]);
    admin.ok(&["submit", "--name", "fails", "--", "false"]);
    admin.run(&["work"]).expect_code(3);
    let id = admin.task("fails").id;
    let retried = admin
        .ok(&["retry", "--failed", "--offline", "--json"])
        .json();
    assert_eq!(retried["retried"], serde_json::json!([id]), "{retried}");
    assert_eq!(retried["synced"], false, "{retried}");

    let runner = admin
        .ok(&["members", "add-runner", "ci-1", "--json"])
        .json();
    assert_eq!(runner["role"], "worker", "{runner}");
    for key in ["member", "public_key", "identity", "roster"] {
        assert!(runner[key].is_string(), "{key}: {runner}");
    }

    let desk = Device::new("json-desk");
    desk.ok(&["keygen"]);
    let key = desk.ok(&["whoami", "--json"]).json()["public_key"]
        .as_str()
        .map(str::to_owned)
        .expect("a public key");
    admin.ok(&["members", "add", "desk", &key]);
    let root = admin.ok(&["whoami", "--json"]).json()["member"]
        .as_str()
        .map(str::to_owned)
        .expect("a member id");
    let joined = desk
        .ok(&["join", &dir_remote(&pool), "--root", &root, "--json"])
        .json();
    assert_eq!(joined["remote"], dir_remote(&pool), "{joined}");
    assert_eq!(joined["tasks"], 1, "{joined}");
    assert!(joined["workspace"].is_string(), "{joined}");
}

#[test]
fn whoami_creates_nothing_and_points_to_keygen_as_the_readme_says() {
    let d = Device::new("whoami-fresh");
    let r = d.run(&["whoami"]).expect_code(1);
    assert!(
        r.stderr.contains("Error:") && r.stderr.contains("bridge keygen"),
        "{}",
        r.stderr
    );
    assert!(!d.identity_file().exists(), "whoami created an identity");
    let made = d.ok(&["keygen", "--json"]).json();
    let me = d.ok(&["whoami", "--json"]).json();
    assert_eq!(made["public_key"], me["public_key"]);

    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    assert!(
        readme.contains("`bridge keygen` creates its identity"),
        "the README must say how a device gets an identity"
    );
    assert!(!readme.contains("creating its\nidentity if needed"));
}
