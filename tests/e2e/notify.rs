//! Issue 17, item 7: `[notify]` hooks when a batch finishes or a task fails
//! for good, once per batch per device; task names reach them as data; a
//! desktop notification with `--notify`.

use std::fs;
use std::path::Path;

use crate::harness::{Device, dir_remote, temp_dir};

/// Adds a `[notify]` table to `d`'s bridge.toml whose hooks append one
/// line per event to `log`: the event's variables, `|`-separated.
fn set_hooks(d: &Device, log: &Path) {
    let log = log.display();
    let text = fs::read_to_string(d.path("bridge.toml")).expect("bridge.toml");
    let hooks = format!(
        "\n[notify]\n\
         on-batch-done = '''printf '%s|%s|%s|%s|%s|%s|%s\\n' \"$BRIDGE_EVENT\" \"$BRIDGE_STATUS\" \"$BRIDGE_TASKS\" \"$BRIDGE_DONE\" \"$BRIDGE_FAILED\" \"$BRIDGE_BATCH\" \"${{GITHUB_TOKEN:-no token}}\" >> '{log}' '''\n\
         on-task-failed = '''printf '%s|%s|%s\\n' \"$BRIDGE_EVENT\" \"$BRIDGE_TASK_NAME\" \"$BRIDGE_ATTEMPTS\" >> '{log}' '''\n"
    );
    fs::write(d.path("bridge.toml"), text + &hooks).expect("cannot write bridge.toml");
}

/// The hook log's lines (none when it was never written).
fn lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn hooks_fire_once_per_batch_and_failed_task_with_names_as_data() {
    let d = Device::new("notify-hooks");
    d.ok(&["init"]);
    let log = d.scratch("hooks.log");
    let pwned = d.scratch("pwned");
    set_hooks(&d, &log);
    // A name a shell would run, were it ever part of the command.
    let evil = format!(
        "bad $(touch {p}) `touch {p}`; touch {p} '\" $BRIDGE_EVENT",
        p = pwned.display()
    );
    d.write(
        "tasks.yaml",
        &format!(
            "tasks:\n  - name: good\n    run: \"true\"\n  - name: {}\n    run: \"exit 3\"\n",
            serde_json::to_string(&evil).expect("a JSON string")
        ),
    );
    let batch = d.ok(&["submit", "--json", "tasks.yaml"]).json()["batch"]
        .as_str()
        .expect("submit --json names the batch")
        .to_owned();
    assert!(
        lines(&log).is_empty(),
        "nothing ended yet: {:?}",
        lines(&log)
    );

    // A secret bridge reads is not passed on to the hook.
    d.run_env(
        &[("GITHUB_TOKEN", "ghp_not_for_hooks")],
        &["work", "-j", "1"],
    )
    .expect_code(3);
    let mut got = lines(&log);
    got.sort();
    assert_eq!(
        got,
        [
            format!("batch-done|failed|2|1|1|{batch}|no token"),
            format!("task-failed|{evil}|1"),
        ],
        "one line per event, the name as it was written"
    );
    assert!(!pwned.exists(), "a task's name was run as code");

    // Seen again (another work, a status), nothing is announced twice.
    d.run(&["work"]).expect_code(0);
    assert_eq!(lines(&log).len(), 2, "{:?}", lines(&log));

    // A retry makes the batch and the task open again: when they end again,
    // they are announced again.
    d.ok(&["retry", "--failed"]);
    d.run(&["work"]).expect_code(3);
    let got = lines(&log);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got[2..].contains(&format!("batch-done|failed|2|1|1|{batch}|no token")),
        "{got:?}"
    );
}

#[test]
fn setting_a_hook_does_not_replay_the_pools_history() {
    let d = Device::new("notify-history");
    d.ok(&["init"]);
    d.ok(&["submit", "--", "true"]);
    d.ok(&["work"]);
    let log = d.scratch("hooks.log");
    set_hooks(&d, &log);
    // The first look records what had ended without announcing it …
    d.ok(&["work"]);
    assert!(lines(&log).is_empty(), "{:?}", lines(&log));
    // … and what ends after it is announced.
    d.ok(&["submit", "--", "echo", "new"]);
    d.ok(&["work"]);
    let got = lines(&log);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("batch-done|done|1|1|0|"), "{got:?}");
}

#[test]
fn sync_announces_a_batch_another_device_finished() {
    let store = temp_dir("notify-store");
    let remote = dir_remote(store.path());
    let admin = Device::new("notify-admin");
    admin.ok(&["init", "--remote", &remote]);
    let mut worker = Device::new("notify-worker");
    worker.join_as(&admin, &remote, "submit");
    // The admin's task runs on the worker's device whether or not this
    // machine can sandbox tasks.
    worker.set_env("BRIDGE_SANDBOX", "off");
    let log = admin.scratch("hooks.log");
    set_hooks(&admin, &log);
    admin.ok(&["submit", "--", "echo", "far away"]);
    // Not ended yet: the first look records nothing to announce.
    admin.ok(&["sync"]);
    worker.ok(&["work"]);
    assert!(lines(&log).is_empty(), "{:?}", lines(&log));
    // The admin's sync learns that the batch ended, and says so once.
    admin.ok(&["sync"]);
    admin.ok(&["sync"]);
    let got = lines(&log);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("batch-done|done|1|1|0|"), "{got:?}");
}

#[test]
fn notify_shows_a_desktop_notification() {
    let d = Device::new("notify-desktop");
    d.ok(&["init"]);
    // A notify-send of our own, first on PATH, that records its arguments.
    let bin = d.scratch("bin");
    fs::create_dir_all(&bin).expect("a bin folder");
    let calls = d.scratch("notify-send.log");
    let fake = bin.join("notify-send");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '{}'\n",
            calls.display()
        ),
    )
    .expect("the fake notify-send");
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    d.ok(&["submit", "--", "true"]);
    // Without --notify (and no hook), nothing is shown.
    d.run_env(&[("PATH", &path)], &["work"]).expect_code(0);
    assert!(!calls.exists());
    d.ok(&["submit", "--", "echo", "two"]);
    d.run_env(&[("PATH", &path)], &["work", "--notify"])
        .expect_code(0);
    let args = fs::read_to_string(&calls).expect("notify-send was called");
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args.len(), 4, "{args:?}");
    assert_eq!(args[..2], ["--app-name=bridge", "--"], "{args:?}");
    assert!(
        args[2].starts_with("bridge: batch ") && args[2].ends_with(" done"),
        "{args:?}"
    );
    assert_eq!(args[3], "1 done", "{args:?}");
}

#[test]
fn a_runner_outside_github_actions_announces_what_ended() {
    let store = temp_dir("notify-run-store");
    let d = Device::new("notify-run");
    d.ok(&["init", "--remote", &dir_remote(store.path())]);
    let log = d.scratch("hooks.log");
    set_hooks(&d, &log);
    // The first look (nothing ended yet) makes the record.
    d.ok(&["work"]);
    d.ok(&["submit", "--", "echo", "by a runner"]);
    d.ok(&["run", "--budget", "1m"]);
    let got = lines(&log);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("batch-done|done|1|1|0|"), "{got:?}");
}

#[test]
fn the_devices_own_hook_wins_and_a_failing_hook_is_a_warning() {
    let d = Device::new("notify-own");
    d.ok(&["init"]);
    let shared = d.scratch("shared.log");
    set_hooks(&d, &shared);
    // This device's own file replaces bridge.toml's on-batch-done (and
    // keeps its on-task-failed): a hook that fails.
    let own = d.scratch("own.log");
    fs::write(
        d.path(".bridge/config.toml"),
        format!(
            "[notify]\non-batch-done = '''echo \"$BRIDGE_STATUS\" >> '{}'; exit 7'''\n",
            own.display()
        ),
    )
    .expect("cannot write .bridge/config.toml");
    d.ok(&["work"]);
    d.ok(&["submit", "--", "true"]);
    let run = d.ok(&["work"]);
    assert_eq!(
        fs::read_to_string(&own).expect("the own hook ran"),
        "done\n"
    );
    assert!(lines(&shared).is_empty(), "{:?}", lines(&shared));
    assert!(
        run.stderr.contains("the [notify] on-batch-done hook `echo")
            && run
                .stderr
                .contains("exited with code 7 (a batch-done event)"),
        "{}",
        run.stderr
    );
}
