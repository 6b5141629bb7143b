//! Private batches (issue 13, data placement): a batch with an `audience`
//! is sealed to a key only its audience holds. A runner with full access to
//! the store, or a member outside the audience, reads nothing of it but
//! its id, audience and task count; removing a member from the audience
//! (or from the workspace) rotates the key for later files; a forged
//! generation-0 grant by another member is ignored.
//!
//! Devices: `hub` (admin, outside every audience), `alice-laptop` and
//! `home-server` (submit), and a runner `r1` (worker).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use bridge_crypto::{EnvelopeError, Identity, NewGrant, Roster, open_grant, open_with, seal_grant};

use crate::harness::{Device, Run, files_under, poll};
use bridge_testutil::forge::{put_chunk, sha256_hex};

use crate::security::{identity_in, member_of, roster_in};

struct Pool {
    hub: Device,
    alice: Device,
    home: Device,
    shared: tempfile::TempDir,
    remote: String,
}

fn pool(label: &str) -> Pool {
    let hub = Device::new(&format!("aud-hub-{label}"));
    let shared = crate::harness::temp_dir(&format!("aud-{label}"));
    let remote = crate::harness::dir_remote(shared.path());
    hub.ok(&["init", "--remote", &remote]);
    let alice = Device::new("alice-laptop");
    alice.join_as(&hub, &remote, "submit");
    let home = Device::new("home-server");
    home.join_as(&hub, &remote, "submit");
    // The home server is lent to the pool: it runs every member's tasks
    // (a person's device runs only its own and the admins' by default).
    home.set_run_tasks_from(&["members"]);
    alice.ok(&["sync"]);
    Pool {
        hub,
        alice,
        home,
        shared,
        remote,
    }
}

fn workspace_id(d: &Device) -> String {
    let text = fs::read_to_string(d.path("bridge.toml")).expect("bridge.toml");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("id = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("a workspace id in bridge.toml")
}

/// The only batch id `d` knows of (from `status --json`, readable or not).
fn private_batch_of(d: &Device) -> String {
    let status = d.ok(&["status", "--json"]).json();
    let mut ids: Vec<String> = status["batches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| b["id"].as_str().unwrap_or_default().to_owned())
        .chain(
            status["private"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| b["batch"].as_str().unwrap_or_default().to_owned()),
        )
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one batch expected: {status}");
    ids.remove(0)
}

/// Every file of a private batch in a store: its documents' chunks and
/// snapshots, and every blob (all blobs of these pools are the batch's).
fn batch_files(store: &Path, batch: &str) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for folder in ["chunks", "snapshots", "archive"] {
        let Ok(entries) = fs::read_dir(store.join(folder)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(batch) {
                out.extend(files_under(&e.path()));
            }
        }
    }
    out.extend(files_under(&store.join("blobs")));
    out.retain(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    });
    out
}

/// The keys `who` could decrypt with: the roster's data keys, and the batch
/// keys of every grant in the store whose sealed keys open with its own key.
fn keys_of(
    store: &Path,
    who: &Identity,
    ws: &str,
    root: &str,
) -> (Roster, Vec<age::x25519::Identity>) {
    let roster = roster_in(store, who, ws, root);
    let mut keys = roster.data_identities();
    for file in files_under(&store.join("chunks").join("audiences")) {
        let bytes = fs::read(&file).expect("read a grant");
        let name = format!(
            "chunks/audiences/{}",
            file.file_name().expect("a name").to_string_lossy()
        );
        let notice = open_grant(&keys.clone(), &roster, &bytes, &name)
            .unwrap_or_else(|e| panic!("{name}: every member reads a grant's notice: {e}"));
        if let Some(batch_keys) = notice.open_keys(who) {
            keys.extend(batch_keys.iter().map(|k| k.identity().clone()));
        }
    }
    (roster, keys)
}

/// Asserts that no file in `files` decrypts with `keys`: each is sealed to
/// a key they do not hold.
fn assert_none_opens(files: &BTreeSet<PathBuf>, keys: &[age::x25519::Identity], who: &str) {
    assert!(!files.is_empty(), "no file to check for {who}");
    for f in files {
        let bytes = fs::read(f).expect("read a store file");
        match open_with(keys, &bytes) {
            Err(EnvelopeError::NotForUs) => {}
            other => panic!(
                "{who} can open {} (or it is not an age file): {:?}",
                f.display(),
                other.map(|o| o.header)
            ),
        }
    }
}

fn assert_all_open(files: &BTreeSet<PathBuf>, keys: &[age::x25519::Identity], who: &str) {
    assert!(!files.is_empty(), "no file to check for {who}");
    for f in files {
        let bytes = fs::read(f).expect("read a store file");
        if let Err(e) = open_with(keys, &bytes) {
            panic!("{who} cannot open {}: {e}", f.display());
        }
    }
}

/// No line of `run`'s stderr refuses or skips a file.
fn assert_quiet(run: &Run) {
    for word in ["refused", "skipped", "not encrypted"] {
        assert!(
            !run.stderr.contains(word),
            "`bridge {}` warned ({word}):\n{}",
            run.args.join(" "),
            run.stderr
        );
    }
}

const TASKS: &str = "\
audience: [home-server]
tasks:
  - name: MARKER-name-5c2e
    run: >-
      echo MARKER-cmd-5c2e >/dev/null; echo MARKER-out-$((4+1))c2e;
      echo MARKER-err-$((4+1))c2e >&2; echo MARKER-file-$((4+1))c2e > out.txt;
      cat in.txt >> out.txt; echo $MARKER_VAR >> out.txt
    env: { MARKER_VAR: MARKER-env-5c2e }
    inputs: [in.txt]
    outputs: [out.txt]
  - name: late
    runs-on: [late]
    run: echo LATE-out-$((4+1))c2e; echo LATE-file > late.txt
    outputs: [late.txt]
";

/// Alice submits the private batch of [`TASKS`] (to home-server; alice is
/// added as the submitter) and home-server runs its first task.
fn submit_and_run(p: &Pool) -> String {
    p.alice.write("in.txt", "MARKER-input-5c2e\n");
    p.alice.write("tasks.yaml", TASKS);
    let submitted = p.alice.ok(&["submit", "tasks.yaml"]);
    assert!(
        submitted.stdout.contains("private to")
            && submitted.stdout.contains("alice-laptop")
            && submitted.stdout.contains("home-server"),
        "{}",
        submitted.stdout
    );
    assert!(
        submitted.stderr.contains("was added to the audience"),
        "the submitter is told it was added: {}",
        submitted.stderr
    );
    p.home.ok(&["sync"]);
    let work = p.home.ok(&["work"]);
    assert!(work.stderr.contains("1 done, 0 failed"), "{}", work.stderr);
    assert_quiet(&work);
    p.alice.ok(&["sync"]);
    private_batch_of(&p.alice)
}

#[test]
fn a_private_batch_is_run_by_its_audience_and_unreadable_to_runners_and_outsiders() {
    let p = pool("main");
    let root = member_of(&p.hub);
    let ws = workspace_id(&p.hub);
    let secret = p
        .hub
        .ok(&["members", "add-runner", "r1"])
        .stdout
        .trim()
        .to_owned();
    let mut r = Device::new("r1");
    r.set_env("BRIDGE_IDENTITY", &secret);
    r.ok(&["join", &p.remote, "--root", &root]);
    p.alice.ok(&["sync"]);

    let batch = submit_and_run(&p);

    // (b) The audience reads the logs and outputs, run on another device.
    let logs = p.alice.ok(&["logs", "MARKER-name-5c2e"]);
    let both = format!("{}{}", logs.stdout, logs.stderr);
    assert!(both.contains("MARKER-out-5c2e"), "{both}");
    assert!(both.contains("MARKER-err-5c2e"), "{both}");
    let got = p.alice.scratch("got");
    p.alice.ok(&[
        "outputs",
        "MARKER-name-5c2e",
        "--to",
        got.to_str().expect("utf-8"),
    ]);
    let out = fs::read_to_string(got.join("out.txt")).expect("the output");
    for m in ["MARKER-file-5c2e", "MARKER-input-5c2e", "MARKER-env-5c2e"] {
        assert!(out.contains(m), "{out}");
    }

    // (a) The runner syncs and works: it claims nothing, warns about nothing.
    r.ok(&["sync"]);
    let work = r.ok(&["work", "--label", "late"]);
    assert!(work.stderr.contains("0 done"), "{}", work.stderr);
    assert!(!work.stderr.contains("MARKER"), "{}", work.stderr);
    assert_quiet(&work);
    r.ok(&["sync"]);
    p.alice.ok(&["sync"]);
    let late = p.alice.task("late");
    assert_eq!(late.status, "pending", "no one claimed the late task");

    // (c) Outsiders (the runner, the admin hub) see counts and the audience only.
    for d in [&r, &p.hub] {
        d.ok(&["sync"]);
        let status = d.ok(&["status", "--json"]);
        assert_quiet(&status);
        let json = status.json();
        let private = &json["private"][0];
        assert_eq!(private["batch"], batch.as_str(), "{json}");
        assert_eq!(private["tasks"], 2, "{json}");
        let names: Vec<&str> = private["audience"]
            .as_array()
            .expect("audience names")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(names.len(), 2, "{json}");
        assert!(
            names.contains(&"alice-laptop") && names.contains(&"home-server"),
            "{json}"
        );
        assert_eq!(json["tasks"], 0, "{json}");
        let human = d.ok(&["status"]);
        assert!(
            human.stdout.contains("private to") && human.stdout.contains("2 tasks"),
            "{}",
            human.stdout
        );
        for run in [human, d.ok(&["ls"]), d.ok(&["ls", "--json"]), status] {
            for text in [&run.stdout, &run.stderr] {
                assert!(!text.contains("MARKER"), "{}: {text}", run.args.join(" "));
                assert!(!text.contains("late"), "{}: {text}", run.args.join(" "));
            }
        }
        let ls = d.ok(&["ls"]);
        assert!(ls.stdout.contains("private to"), "{}", ls.stdout);
    }

    // (g) A non-audience admin compacts and collects garbage: every file of
    // the batch stays, and the audience still reads every result.
    let before = batch_files(p.shared.path(), &batch);
    p.hub.ok(&["compact"]);
    let gc = p.hub.ok(&["gc", "--grace", "0s", "--json"]).json();
    // The input and the output (the logs are short: their attempts hold
    // them, issue 18).
    assert!(gc["private"].as_u64().unwrap_or(0) >= 2, "{gc}");
    assert_eq!(gc["removed"], 0, "{gc}");
    p.hub.ok(&["sync"]);
    let after = batch_files(p.shared.path(), &batch);
    assert!(
        before.is_subset(&after),
        "the admin's gc or compaction removed files of the private batch: {:?}",
        before.difference(&after).collect::<Vec<_>>()
    );
    assert_eq!(
        files_under(&p.hub.store().join("blobs")).len(),
        files_under(&p.shared.path().join("blobs")).len(),
        "the admin's replica kept every blob"
    );
    // The audience compacts too, and reads everything afterwards.
    p.home.ok(&["sync"]);
    p.home.ok(&["compact"]);
    p.home.ok(&["gc", "--grace", "0s"]);
    p.alice.ok(&["sync"]);
    let got2 = p.alice.scratch("got2");
    p.alice.ok(&[
        "outputs",
        "MARKER-name-5c2e",
        "--to",
        got2.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        fs::read_to_string(got2.join("out.txt")).expect("the output"),
        out
    );

    // (a) No byte of the store, the runner's or the hub's replica shows a
    // marker, and neither can open any file of the batch.
    r.ok(&["sync"]);
    let needles: &[&[u8]] = &[b"MARKER", b"-5c2e", b"echo ", b"AGE-SECRET-KEY"];
    let mut checked = 0;
    for dir in [p.shared.path().to_path_buf(), r.store(), p.hub.store()] {
        for file in files_under(&dir) {
            let bytes = fs::read(&file).expect("read a store file");
            for needle in needles {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == *needle),
                    "{} holds `{}` in clear",
                    file.display(),
                    String::from_utf8_lossy(needle)
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} files checked");
    let files = batch_files(p.shared.path(), &batch);
    let runner_id = Identity::parse(&secret).expect("the runner's identity");
    let (_, runner_keys) = keys_of(p.shared.path(), &runner_id, &ws, &root);
    assert_none_opens(&files, &runner_keys, "the runner");
    let (_, hub_keys) = keys_of(
        p.shared.path(),
        &identity_in(&p.hub.identity_file()),
        &ws,
        &root,
    );
    assert_none_opens(&files, &hub_keys, "the admin outside the audience");
    let (_, home_keys) = keys_of(
        p.shared.path(),
        &identity_in(&p.home.identity_file()),
        &ws,
        &root,
    );
    assert_all_open(&files, &home_keys, "home-server");
}

/// Files of the batch in the store now that were not in `before`.
fn new_files(p: &Pool, batch: &str, before: &BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
    batch_files(p.shared.path(), batch)
        .difference(before)
        .cloned()
        .collect()
}

/// Alice runs the `late` task after a rotation: the files it writes must not
/// open with home-server's keys, and must open with alice's.
fn late_files_are_not_for_home(p: &Pool, batch: &str) {
    let root = member_of(&p.hub);
    let ws = workspace_id(&p.hub);
    let before = batch_files(p.shared.path(), batch);
    let work = p.alice.ok(&["work", "--label", "late"]);
    assert!(work.stderr.contains("1 done"), "{}", work.stderr);
    p.alice.ok(&["sync"]);
    let written = new_files(p, batch, &before);
    assert!(
        written.len() >= 3,
        "a chunk and two blobs expected: {written:?}"
    );
    let home_id = identity_in(&p.home.identity_file());
    // Home-server's keys as it holds them (every grant sealed to it).
    let roster = roster_in(
        p.shared.path(),
        &identity_in(&p.alice.identity_file()),
        &ws,
        &root,
    );
    let mut home_keys = roster.data_identities();
    for file in files_under(&p.shared.path().join("chunks").join("audiences")) {
        let bytes = fs::read(&file).expect("read a grant");
        let notice = open_grant(&home_keys.clone(), &roster, &bytes, "chunks/audiences/x")
            .expect("a grant's notice opens");
        if let Some(keys) = notice.open_keys(&home_id) {
            home_keys.extend(keys.iter().map(|k| k.identity().clone()));
        }
    }
    assert!(
        home_keys.len() > roster.data_identities().len(),
        "home-server held the batch's first key"
    );
    assert_none_opens(
        &written,
        &home_keys,
        "home-server, removed from the audience",
    );
    let (_, alice_keys) = keys_of(
        p.shared.path(),
        &identity_in(&p.alice.identity_file()),
        &ws,
        &root,
    );
    assert_all_open(&written, &alice_keys, "alice");
    let logs = p.alice.ok(&["logs", "late"]);
    assert!(logs.stdout.contains("LATE-out-5c2e"), "{}", logs.stdout);
    // And everything from before the rotation still reads.
    let logs = p.alice.ok(&["logs", "MARKER-name-5c2e"]);
    assert!(logs.stdout.contains("MARKER-out-5c2e"), "{}", logs.stdout);
}

#[test]
fn removing_a_member_from_the_audience_rotates_the_key_for_later_files() {
    let p = pool("rotate");
    let batch = submit_and_run(&p);
    let short = &batch[..12];
    let shown = p.alice.ok(&["audience", "show", short, "--json"]).json();
    assert_eq!(shown["generation"], 0, "{shown}");

    let removed = p.alice.ok(&["audience", "remove", short, "home-server"]);
    assert!(
        removed
            .stdout
            .contains("now private to alice-laptop (key generation 1)"),
        "{}",
        removed.stdout
    );
    let shown = p.alice.ok(&["audience", "show", short, "--json"]).json();
    assert_eq!(shown["generation"], 1, "{shown}");
    assert_eq!(
        shown["audience"],
        serde_json::json!(["alice-laptop"]),
        "{shown}"
    );

    // Home-server now sees the batch as an outsider does, without warnings.
    p.home.ok(&["sync"]);
    let status = p.home.ok(&["status", "--json"]);
    assert_quiet(&status);
    assert_eq!(
        status.json()["private"][0]["audience"],
        serde_json::json!(["alice-laptop"])
    );
    // Home-server may no longer change the audience.
    let refused = p.home.run(&["audience", "add", short, &p.hub.name]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);

    late_files_are_not_for_home(&p, &batch);

    // Adding home-server back gives it every key: it reads the whole batch.
    p.alice.ok(&["audience", "add", short, "home-server"]);
    p.home.ok(&["sync"]);
    let logs = p.home.ok(&["logs", "late"]);
    assert!(logs.stdout.contains("LATE-out-5c2e"), "{}", logs.stdout);
    assert_quiet(&logs);
}

#[test]
fn removing_an_audience_member_from_the_workspace_rotates_the_audience() {
    let p = pool("members");
    let batch = submit_and_run(&p);
    let short = &batch[..12];
    // The hub (not in the audience) removes home-server from the workspace.
    p.hub.ok(&["members", "remove", "home-server"]);
    let grants = |store: &Path| files_under(&store.join("chunks").join("audiences")).len();
    let on_remote = grants(p.shared.path());
    // Alice's next command sees it and writes generation 1 without them,
    // and pushes it before it ends (not at the next sync).
    let synced = p.alice.ok(&["sync"]);
    assert_quiet(&synced);
    assert_eq!(grants(p.shared.path()), on_remote + 1);
    let shown = p.alice.ok(&["audience", "show", short, "--json"]).json();
    assert_eq!(shown["generation"], 1, "{shown}");
    assert_eq!(
        shown["audience"],
        serde_json::json!(["alice-laptop"]),
        "{shown}"
    );
    // Once only: another command does not rotate again.
    p.alice.ok(&["status"]);
    let shown = p.alice.ok(&["audience", "show", short, "--json"]).json();
    assert_eq!(shown["generation"], 1, "{shown}");
    late_files_are_not_for_home(&p, &batch);
}

#[test]
fn a_forged_first_grant_by_another_member_is_ignored_by_the_audience() {
    let p = pool("forged");
    let batch = submit_and_run(&p);
    let short = &batch[..12];
    let root = member_of(&p.hub);
    let ws = workspace_id(&p.hub);
    let hub_id = identity_in(&p.hub.identity_file());
    let roster = roster_in(p.shared.path(), &hub_id, &ws, &root);
    forge_first_grant(&p, &batch);
    // The audience ignores it: same audience, and new results are sealed to
    // the real key, which the hub does not hold.
    p.alice.ok(&["sync"]);
    p.home.ok(&["sync"]);
    for d in [&p.alice, &p.home] {
        let shown = d.ok(&["audience", "show", short, "--json"]).json();
        let names = shown["audience"].as_array().cloned().unwrap_or_default();
        assert_eq!(names.len(), 2, "{shown}");
        assert!(!shown.to_string().contains("aud-hub"), "{shown}");
    }
    let before = batch_files(p.shared.path(), &batch);
    let work = p.home.ok(&["work", "--label", "late"]);
    assert!(work.stderr.contains("1 done"), "{}", work.stderr);
    p.home.ok(&["sync"]);
    let written = new_files(&p, &batch, &before);
    assert!(written.len() >= 3, "{written:?}");
    let (_, hub_keys) = keys_of(p.shared.path(), &hub_id, &ws, &root);
    assert!(
        hub_keys.len() > roster.data_identities().len(),
        "the hub holds its forged key"
    );
    assert_none_opens(&written, &hub_keys, "the forger");
    p.alice.ok(&["sync"]);
    let logs = p.alice.ok(&["logs", "late"]);
    assert!(logs.stdout.contains("LATE-out-5c2e"), "{}", logs.stdout);
}

#[test]
fn submit_audience_flag_resolves_devices_and_refuses_unknown_names() {
    let p = pool("flag");
    // An unknown name: refused before anything is stored, members listed.
    let refused = p
        .alice
        .run(&["submit", "--audience", "home-srever", "--", "echo", "x"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("home-srever") && refused.stderr.contains("home-server (submit)"),
        "{}",
        refused.stderr
    );
    assert!(
        files_under(&p.alice.store().join("blobs")).is_empty()
            && files_under(&p.alice.store().join("chunks").join("audiences")).is_empty(),
        "nothing stored"
    );
    // `devices`: every member that is not a runner. The flag overrides the file.
    let secret = p
        .hub
        .ok(&["members", "add-runner", "r1"])
        .stdout
        .trim()
        .to_owned();
    p.alice.ok(&["sync"]);
    p.alice.write(
        "t.yaml",
        "audience: [home-server]\ntasks:\n  - name: t\n    run: echo hi\n",
    );
    let out = p
        .alice
        .ok(&["submit", "t.yaml", "--audience", "devices", "--json"])
        .json();
    let mut names: Vec<String> = out["audience"]
        .as_array()
        .expect("the audience in the JSON")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["alice-laptop", p.hub.name.as_str(), "home-server"],
        "{out}"
    );
    // The same task again: nothing new, and no grant announcing a batch
    // that does not exist.
    let grants = || files_under(&p.alice.store().join("chunks").join("audiences")).len();
    let before = grants();
    let again = p
        .alice
        .ok(&["submit", "t.yaml", "--audience", "devices", "--json"])
        .json();
    assert!(again["batch"].is_null(), "{again}");
    assert_eq!(
        grants(),
        before,
        "a grant was left for a batch never created"
    );
    let mut r = Device::new("r1");
    r.set_env("BRIDGE_IDENTITY", &secret);
    r.ok(&["join", &p.remote, "--root", &member_of(&p.hub)]);
    let status = r.ok(&["status", "--json"]).json();
    assert_eq!(status["private"][0]["tasks"], 1, "{status}");
    p.hub.ok(&["sync"]);
    let shown = p.hub.ok(&["status", "--json"]).json();
    assert_eq!(shown["tasks"], 1, "the hub is in `devices`: {shown}");
}

#[test]
fn removing_the_submitter_from_the_workspace_keeps_its_private_batch_readable() {
    let p = pool("submitter");
    let batch = submit_and_run(&p);
    let short = &batch[..12];
    p.hub.ok(&["members", "remove", "alice-laptop"]);
    // Home-server still holds the batch's keys (alice's grant stays valid),
    // and rotates the audience without alice.
    let synced = p.home.ok(&["sync"]);
    assert_quiet(&synced);
    let logs = p.home.ok(&["logs", "MARKER-name-5c2e"]);
    assert!(logs.stdout.contains("MARKER-out-5c2e"), "{}", logs.stdout);
    assert_quiet(&logs);
    let shown = p.home.ok(&["audience", "show", short, "--json"]).json();
    assert_eq!(shown["generation"], 1, "{shown}");
    assert_eq!(
        shown["audience"],
        serde_json::json!(["home-server"]),
        "{shown}"
    );
    // The hub, outside the audience, still sees the notice, quietly.
    p.hub.ok(&["sync"]);
    let status = p.hub.ok(&["status", "--json"]);
    assert_quiet(&status);
    assert_eq!(
        status.json()["private"][0]["audience"],
        serde_json::json!(["home-server"])
    );
}

/// The hub (an admin: it may submit) writes its own generation 0 for
/// alice's `batch`, to itself, with a hash lower than the real one so that
/// "the lowest hash wins" alone would pick it; stored in the shared store.
fn forge_first_grant(p: &Pool, batch: &str) {
    let root = member_of(&p.hub);
    let ws = workspace_id(&p.hub);
    let hub_id = identity_in(&p.hub.identity_file());
    let roster = roster_in(p.shared.path(), &hub_id, &ws, &root);
    let real_hash = files_under(&p.shared.path().join("chunks").join("audiences"))
        .iter()
        .map(|f| {
            open_grant(
                &roster.data_identities(),
                &roster,
                &fs::read(f).expect("read"),
                "x",
            )
            .expect("the real grant")
        })
        .find(|n| n.body.batch == batch && n.body.generation == 0)
        .expect("the batch's grant")
        .hash;
    let forged = (0..200)
        .map(|_| {
            seal_grant(
                &hub_id,
                &roster,
                &NewGrant {
                    batch,
                    prev: None,
                    audience: &[hub_id.public()],
                    keys: &[bridge_crypto::BatchKey::generate()],
                    tasks: 2,
                    documents: 1,
                    now: 1,
                },
            )
            .expect("seal a grant")
        })
        .find(|(_, hash)| *hash < real_hash)
        .expect("a forged grant with a lower hash");
    let path = put_chunk(p.shared.path(), "audiences", &forged.0);
    assert_eq!(
        path.file_name().map(|n| n.to_string_lossy().into_owned()),
        Some(format!("{}.chunk", sha256_hex(&forged.0)))
    );
}

#[test]
fn a_forged_first_grant_arriving_while_a_worker_runs_does_not_redirect_its_results() {
    let mut p = pool("forged-follow");
    let root = member_of(&p.hub);
    let ws = workspace_id(&p.hub);
    p.alice.write(
        "flaky.yaml",
        "audience: [home-server]\ntasks:\n  - name: flaky\n    run: echo FLAKY-out-$((4+1))c2e; exit 1\n",
    );
    p.alice.ok(&["submit", "flaky.yaml"]);
    let batch = private_batch_of(&p.alice);
    p.home.set_env("BRIDGE_LOG", "bridge=debug");
    let worker = p
        .home
        .spawn("follow", &["work", "--follow", "--poll", "200ms"]);
    poll("the worker to run the task once", || {
        p.alice.ok(&["sync"]);
        p.alice.task("flaky").status == "failed"
    });
    // The forgery arrives while the worker runs: its next idle sync pulls
    // it, which makes it verify the roster and the grants again.
    forge_first_grant(&p, &batch);
    let err = p.home.scratch("follow.stderr");
    poll("the worker to read the grants again", || {
        fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("verified it again")
    });
    let before = batch_files(p.shared.path(), &batch);
    p.alice.ok(&["retry", "flaky"]);
    poll("the worker to run the task again", || {
        p.alice.ok(&["sync"]);
        p.alice.task("flaky").attempts == 2
    });
    worker.terminate();
    worker.wait();
    p.home.ok(&["sync"]);
    let written = new_files(&p, &batch, &before);
    assert!(written.len() >= 2, "{written:?}");
    let hub_id = identity_in(&p.hub.identity_file());
    let (_, hub_keys) = keys_of(p.shared.path(), &hub_id, &ws, &root);
    assert_none_opens(&written, &hub_keys, "the forger");
}
