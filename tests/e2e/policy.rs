//! Each device chooses whose tasks it runs (issue 13, item 2): `[worker]
//! run-tasks-from` in its own `.bridge/config.toml` (bridge.toml's only on a
//! runner), `--run-tasks-from` for one run, and the default by the device's
//! role. Tasks a device would not run are left
//! pending for others (never claimed, never attempted) and shown as such
//! by `ls`, `status` and `show`.

use std::fs;

use serde_json::Value;

use crate::harness::{Device, dir_remote, temp_dir};

/// An admin's workspace on a new shared folder, and a member with the
/// submit role who joined it.
fn pool(label: &str) -> (tempfile::TempDir, String, Device, Device) {
    let dir = temp_dir(label);
    let remote = dir_remote(dir.path());
    let admin = Device::new(&format!("{label}-admin"));
    admin.ok(&["init", "--remote", &remote]);
    let member = Device::new(&format!("{label}-bob"));
    member.join_as(&admin, &remote, "submit");
    (dir, remote, admin, member)
}

/// The `ls --json` row of the task named `name`.
fn row(d: &Device, name: &str) -> Value {
    let v = d.ok(&["ls", "--json"]).json();
    let rows: Vec<Value> = v
        .as_array()
        .expect("ls --json is an array")
        .iter()
        .filter(|r| r["name"] == name)
        .cloned()
        .collect();
    assert_eq!(rows.len(), 1, "one task named {name}: {v}");
    rows.into_iter().next().expect("one row")
}

#[test]
fn issue13_an_admins_device_leaves_a_submit_members_task_until_told_to_run_it() {
    let (_dir, _remote, admin, bob) = pool("pol-default");
    bob.ok(&["submit", "--name", "bobs", "--", "echo", "from-bob"]);
    admin.ok(&["submit", "--name", "mine", "--", "echo", "from-admin"]);

    // The default on a person's device: its own tasks and the admins'.
    let work = admin.ok(&["work", "--json"]);
    let report = work.json();
    assert_eq!(report["done"], 1, "{report}");
    assert_eq!(report["left_for_others"]["tasks"], 1, "{report}");
    assert_eq!(
        report["left_for_others"]["submitters"],
        serde_json::json!([bob.name]),
        "{report}"
    );
    assert_eq!(
        report["left_for_others"]["run_tasks_from"],
        serde_json::json!({"entries": ["self", "admins"], "default": true}),
        "{report}"
    );
    // Said once, in words, with how to change it.
    let said = work
        .stderr
        .matches("left for other devices: its submitter")
        .count();
    assert_eq!(said, 1, "{}", work.stderr);
    assert!(work.stderr.contains("run-tasks-from"), "{}", work.stderr);

    // Untouched: pending, no claim, no attempt.
    let shown = admin.show("bobs");
    assert_eq!(shown["status"], "pending", "{shown}");
    assert_eq!(shown["claims"], serde_json::json!([]), "{shown}");
    assert_eq!(shown["attempts"], serde_json::json!([]), "{shown}");
    assert_eq!(shown["left_for_others"]["reason"], "submitter", "{shown}");
    assert_eq!(shown["left_for_others"]["submitter"], bob.name, "{shown}");

    // ls: marked, with why; the task this device ran is shown as before.
    let r = row(&admin, "bobs");
    assert_eq!(r["status"], "pending", "{r}");
    assert_eq!(r["left_for_others"]["submitter"], bob.name, "{r}");
    assert_eq!(
        r["left_for_others"]["message"],
        format!("submitter {} is not in run-tasks-from", bob.name),
        "{r}"
    );
    let mine = row(&admin, "mine");
    assert!(mine.get("left_for_others").is_none(), "{mine}");
    let ls = admin.ok(&["ls"]).stdout;
    let line = ls.lines().find(|l| l.contains("bobs")).expect("a row");
    assert!(
        line.contains(&format!(
            "(left for other devices: submitter {} is not in run-tasks-from)",
            bob.name
        )),
        "{ls}"
    );
    let line = ls.lines().find(|l| l.contains("mine")).expect("a row");
    assert!(!line.contains("left for"), "{ls}");
    let show = admin.ok(&["show", "bobs"]).stdout;
    assert!(
        show.contains(&format!(
            "Here     left for other devices: submitter {} is not in run-tasks-from = [\"self\", \"admins\"] (the default)",
            bob.name
        )),
        "{show}"
    );

    // status: counted apart.
    let status = admin.ok(&["status", "--json"]).json();
    assert_eq!(status["counts"]["pending"], 1, "{status}");
    assert_eq!(status["left_for_others"]["tasks"], 1, "{status}");
    assert_eq!(status["batches"][0]["left_for_others"], 1, "{status}");
    let human = admin.ok(&["status"]).stdout;
    assert!(
        human.contains("1 pending, of which 1 left for other devices"),
        "{human}"
    );

    // The submitter's own device sees its task as its own to run.
    bob.ok(&["sync"]);
    assert!(row(&bob, "bobs").get("left_for_others").is_none());

    // Once the admin lends the device to every member, it runs it.
    admin.set_run_tasks_from(&["members"]);
    assert!(row(&admin, "bobs").get("left_for_others").is_none());
    let report = admin.ok(&["work", "--json"]).json();
    assert_eq!(report["done"], 1, "{report}");
    assert_eq!(report["left_for_others"]["tasks"], 0, "{report}");
    assert_eq!(admin.show("bobs")["status"], "done");
    let status = admin.ok(&["status", "--json"]).json();
    assert_eq!(status["left_for_others"]["tasks"], 0, "{status}");
}

#[test]
fn issue13_a_members_name_or_the_flag_lets_their_tasks_run() {
    let (_dir, _remote, admin, bob) = pool("pol-named");
    bob.ok(&["submit", "--name", "first", "--", "echo", "1"]);
    // The flag, for one run, overrides the setting (and the default).
    admin.set_run_tasks_from(&["self"]);
    let once = format!("self,{}", bob.name);
    let report = admin
        .ok(&["work", "--json", "--run-tasks-from", &once])
        .json();
    assert_eq!(report["done"], 1, "{report}");
    assert_eq!(admin.show("first")["status"], "done");

    bob.ok(&["submit", "--name", "second", "--", "echo", "2"]);
    admin.ok(&["sync"]);
    // Without the flag, `self` alone leaves it.
    let report = admin.ok(&["work", "--json"]).json();
    assert_eq!(report["done"], 0, "{report}");
    assert_eq!(
        report["left_for_others"]["run_tasks_from"],
        serde_json::json!({"entries": ["self"], "default": false}),
        "{report}"
    );
    // The member's name in the device's settings.
    admin.set_run_tasks_from(&["self", &bob.name]);
    let report = admin.ok(&["work", "--json"]).json();
    assert_eq!(report["done"], 1, "{report}");
    assert_eq!(admin.show("second")["status"], "done");
}

#[test]
fn issue13_self_runs_only_own_tasks_and_admins_adds_the_admins() {
    let (_dir, _remote, admin, bob) = pool("pol-self");
    admin.ok(&["submit", "--name", "admins-task", "--", "echo", "a"]);
    bob.ok(&["submit", "--name", "own-task", "--", "echo", "b"]);
    bob.set_run_tasks_from(&["self"]);
    let report = bob.ok(&["work", "--json"]).json();
    assert_eq!(report["done"], 1, "{report}");
    assert_eq!(
        report["left_for_others"]["submitters"],
        serde_json::json!([admin.name]),
        "{report}"
    );
    assert_eq!(bob.show("own-task")["status"], "done");
    assert_eq!(bob.show("admins-task")["status"], "pending");
    bob.set_run_tasks_from(&["admins"]);
    let report = bob.ok(&["work", "--json"]).json();
    assert_eq!(report["done"], 1, "{report}");
    assert_eq!(bob.show("admins-task")["status"], "done");
}

#[test]
fn issue13_a_runner_runs_any_submit_members_task_by_default() {
    let (_dir, _remote, admin, bob) = pool("pol-runner");
    bob.ok(&["submit", "--name", "for-ci", "--", "echo", "ci"]);
    let secret = admin.ok(&["members", "add-runner", "pol-ci"]).stdout;
    let mut runner = Device::new("pol-ci");
    fs::copy(admin.path("bridge.toml"), runner.path("bridge.toml"))
        .expect("cannot copy bridge.toml");
    runner.set_env("BRIDGE_IDENTITY", secret.trim());
    // Told to run only its own (it submits none): nothing runs, and the
    // report says what was left and why.
    let left = runner
        .ok(&[
            "run",
            "--budget",
            "5m",
            "--json",
            "--run-tasks-from",
            "self",
        ])
        .json();
    assert_eq!(left["done"], 0, "{left}");
    assert_eq!(left["left_for_others"]["tasks"], 1, "{left}");
    assert_eq!(
        left["left_for_others"]["submitters"],
        serde_json::json!([bob.name]),
        "{left}"
    );
    // By default a runner drains every member's tasks.
    let run = runner.ok(&["run", "--budget", "5m", "--json"]).json();
    assert_eq!(run["done"], 1, "{run}");
    assert_eq!(run["left_for_others"]["tasks"], 0, "{run}");
    admin.ok(&["sync"]);
    assert_eq!(admin.show("for-ci")["status"], "done");
}

#[test]
fn issue13_wrong_entries_are_refused_and_unknown_names_warned_about() {
    let (_dir, _remote, admin, bob) = pool("pol-bad");
    bob.ok(&["submit", "--name", "t", "--", "echo", "t"]);
    admin.ok(&["sync"]);
    // A misspelt keyword in the device's settings: the file's line, what
    // to write.
    admin.set_run_tasks_from(&["self", "admin"]);
    let bad = admin.run(&["work"]);
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(
        bad.stderr
            .contains("`worker.run-tasks-from`: `admin` is not an entry; did you mean \"admins\"?"),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("config.toml:"), "{}", bad.stderr);
    // Every command reading the file says so, not only the worker.
    assert_ne!(admin.run(&["ls"]).code, 0);
    admin.set_run_tasks_from(&["self"]);
    // A wrong flag: what was wrong and how to write it.
    let bad = admin.run(&["work", "--run-tasks-from", "self,everyone"]);
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(
        bad.stderr.contains(
            "--run-tasks-from self,everyone: `everyone` is not an entry; did you mean \"members\"?"
        ),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("comma-separated"), "{}", bad.stderr);
    // A name the roster does not know (not synced yet, or misspelt): one
    // warning, no crash, and its tasks are not run.
    admin.set_run_tasks_from(&["self", "carol-laptop"]);
    let warned = admin.ok(&["work"]);
    assert_eq!(
        warned
            .stderr
            .matches(
                "run-tasks-from names `carol-laptop`, but no member of the roster has that name"
            )
            .count(),
        1,
        "{}",
        warned.stderr
    );
    assert_eq!(admin.show("t")["status"], "pending");
}

// Sibling: submitting a task that another member already queued used to
// add nothing ("already submitted"), so it stayed theirs and the
// submitter's own devices left it for others. Now it becomes theirs too.
#[test]
fn issue13_submitting_a_task_another_member_queued_makes_it_yours_too() {
    let (_dir, _remote, admin, bob) = pool("pol-same");
    bob.ok(&["submit", "--name", "same", "--", "echo", "same"]);
    admin.ok(&["sync"]);
    assert_eq!(
        row(&admin, "same")["left_for_others"]["submitter"],
        bob.name
    );
    let again = admin
        .ok(&["submit", "--json", "--name", "same", "--", "echo", "same"])
        .json();
    assert_eq!(again["new"], 1, "{again}");
    // Still one task, now the admin's as well: its own device runs it.
    assert_eq!(admin.ls().len(), 1);
    assert!(row(&admin, "same").get("left_for_others").is_none());
    let report = admin.ok(&["work", "--json"]).json();
    assert_eq!(report["done"], 1, "{report}");
    // Submitting one's own waiting task again still adds nothing.
    bob.ok(&["submit", "--name", "mine", "--", "echo", "mine"]);
    let known = bob
        .ok(&["submit", "--json", "--name", "mine", "--", "echo", "mine"])
        .json();
    assert_eq!(known["new"], 0, "{known}");
    assert_eq!(known["known"], 1, "{known}");
}

// Sibling: a member named like a keyword could never be named in
// run-tasks-from (`self` means this device): such names are refused.
#[test]
fn issue13_members_cannot_be_named_like_run_tasks_from_keywords() {
    let dir = temp_dir("pol-names");
    let admin = Device::new("pol-names-admin");
    admin.ok(&["init", "--remote", &dir_remote(dir.path())]);
    let other = Device::new("pol-names-other");
    other.ok(&["keygen"]);
    let key = other.ok(&["whoami", "--json"]).json()["public_key"]
        .as_str()
        .expect("a public key")
        .to_owned();
    for name in ["self", "admins", "members", "admin", "a,b"] {
        let refused = admin.run(&["members", "add", name, &key, "--role", "submit"]);
        assert_ne!(refused.code, 0, "{refused:?}");
        assert!(
            refused
                .stderr
                .contains(&format!("cannot add a member named `{name}`")),
            "{}",
            refused.stderr
        );
        let refused = admin.run(&["members", "add-runner", name]);
        assert_ne!(refused.code, 0, "{refused:?}");
    }
    admin.ok(&[
        "members",
        "add",
        "pol-names-other",
        &key,
        "--role",
        "submit",
    ]);
}

/// bridge.toml is shared (committed, copied): whoever can change it must not
/// be able to open a person's device to every member's tasks or turn its
/// sandbox off. There, its `run-tasks-from`, `sandbox` and `allow-read`
/// are ignored with a note; the device's own `.bridge/config.toml` decides.
#[test]
fn issue13_bridge_toml_cannot_open_a_persons_device() {
    let (_dir, _remote, admin, bob) = pool("pol-shared");
    bob.ok(&["submit", "--name", "bobs", "--", "echo", "bobs"]);
    admin.ok(&["sync"]);
    admin.set_worker_settings("run-tasks-from = [\"members\"]\nsandbox = \"off\"\n");
    let work = admin.ok(&["work"]);
    assert!(
        work.stderr.contains(
            "bridge.toml sets [worker] run-tasks-from, sandbox, which applies to runners only"
        ) && work.stderr.contains(".bridge/config.toml"),
        "{}",
        work.stderr
    );
    assert!(!work.stderr.contains("sandbox is off"), "{}", work.stderr);
    assert_eq!(admin.show("bobs")["status"], "pending");
    // The device's own setting is what lends it.
    admin.set_run_tasks_from(&["members"]);
    admin.ok(&["work"]);
    assert_eq!(admin.show("bobs")["status"], "done");
}
