//! What a person reads in a runner's log (issue 16, item 5): the header,
//! a line as each task starts, the capped error annotations, the job
//! summary with the failed tasks and the next commands, and on an error
//! that stops the run (no identity, an unreachable store, a bad --shard or
//! --budget, a folder with no workspace) one annotation, the step outputs
//! and a job summary still written, with the exit code unchanged.
//!
//! Each test runs the real `bridge run` with GITHUB_ACTIONS=true (or not)
//! and temporary GITHUB_OUTPUT / GITHUB_STEP_SUMMARY files, on a pool in a
//! bare git repository or a `dir:` folder.

use std::fs;
use std::path::PathBuf;

use bridge_testutil::git::Bare;

use crate::harness::{Device, GitPool, Run, dir_remote, temp_dir};

/// The files GitHub Actions gives a step, in a device's scratch folder.
struct GitHubFiles {
    output: PathBuf,
    summary: PathBuf,
}

impl GitHubFiles {
    fn of(d: &Device) -> GitHubFiles {
        GitHubFiles {
            output: d.scratch("github_output"),
            summary: d.scratch("github_summary"),
        }
    }

    /// Runs `bridge ARGS` on `d` as a GitHub Actions step would.
    fn run(&self, d: &Device, args: &[&str]) -> Run {
        let (output, summary) = (
            self.output.display().to_string(),
            self.summary.display().to_string(),
        );
        d.run_env(
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_OUTPUT", &output),
                ("GITHUB_STEP_SUMMARY", &summary),
            ],
            args,
        )
    }

    /// The step outputs, `name → value` (each must be one line).
    fn outputs(&self) -> Vec<(String, String)> {
        let text = fs::read_to_string(&self.output).expect("no GITHUB_OUTPUT file");
        text.lines()
            .map(|l| {
                let (k, v) = l
                    .split_once('=')
                    .unwrap_or_else(|| panic!("not a name=value output line: {l}\n{text}"));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn output(&self, name: &str) -> String {
        let outputs = self.outputs();
        let values: Vec<&String> = outputs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(values.len(), 1, "output {name} set once: {outputs:?}");
        values[0].clone()
    }

    fn summary(&self) -> String {
        fs::read_to_string(&self.summary).expect("no GITHUB_STEP_SUMMARY file")
    }
}

/// The `::error` annotations a run printed.
fn annotations(run: &Run) -> Vec<&str> {
    run.stdout
        .lines()
        .filter(|l| l.starts_with("::error"))
        .collect()
}

/// The lines of the first group whose title starts with `title`.
fn group<'a>(stdout: &'a str, title: &str) -> (String, Vec<&'a str>) {
    let mut lines = stdout.lines();
    let start = lines
        .by_ref()
        .find(|l| l.starts_with(&format!("::group::{title}")))
        .unwrap_or_else(|| panic!("no group `{title}` in:\n{stdout}"));
    let body = lines.take_while(|l| *l != "::endgroup::").collect();
    (start["::group::".len()..].to_owned(), body)
}

/// A pool in a `dir:` folder (the admin created it) and its runner.
fn dir_pool(label: &str) -> (tempfile::TempDir, GitPool) {
    let tmp = temp_dir(&format!("{label}-dir"));
    let store = tmp.path().join("store");
    fs::create_dir_all(&store).expect("cannot create the store folder");
    let bare = Bare::init(&tmp.path().join("unused.git"));
    let pool = GitPool::on(temp_dir(label), bare, dir_remote(&store), label);
    (tmp, pool)
}

#[test]
fn issue16_header_and_start_lines_on_github() {
    let pool = GitPool::new("hdr");
    let sub = pool.submit_yaml(
        "tasks:\n  - name: first\n    run: echo one\n  - name: second\n    run: echo two\n  - name: later\n    needs: [first]\n    run: echo three\n",
    );
    assert_eq!(sub["new"], 3, "{sub}");
    let secret = pool.add_runner("ci");
    let r = pool.runner("hdr-r", &secret);
    let gh = GitHubFiles::of(&r);
    let run = gh
        .run(
            &r,
            &["run", "--budget", "5m", "--parallel", "2", "--shard", "0/1"],
        )
        .expect_code(0);
    eprintln!("{}", run.stdout);

    // The header is the first group: its title says what a person needs
    // without opening it, its lines the rest.
    let (title, lines) = group(&run.stdout, "bridge ");
    assert!(
        title.contains(env!("CARGO_PKG_VERSION")) && title.contains("shard 0/1"),
        "{title}"
    );
    assert!(title.contains("2 runnable (2 in its shard)"), "{title}");
    assert!(
        title.contains("budget 5m00s") && title.contains("2 at a time"),
        "{title}"
    );
    let line = |prefix: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in the header: {lines:#?}"))
            .to_string()
    };
    assert!(line("bridge ").contains("runner ci"), "{lines:#?}");
    assert_eq!(line("store:"), format!("store:    {}", pool.remote));
    assert!(line("shard:").starts_with("shard:    0/1 "), "{lines:#?}");
    assert!(
        line("budget:").starts_with("budget:   5m00s "),
        "{lines:#?}"
    );
    // A local bare repository has no push budget.
    assert!(line("pushes:").contains("no push budget"), "{lines:#?}");
    assert_eq!(line("parallel:"), "parallel: 2 tasks at a time");
    assert_eq!(
        line("tasks:"),
        "tasks:    2 runnable here (2 in shard 0/1), 2 pending, 0 running, 1 blocked"
    );
    // The header comes before any task.
    let header_at = run.stdout.find("::group::bridge ").expect("header");
    let first_start = run.stdout.find("▶ ").expect("a start line");
    assert!(header_at < first_start, "{}", run.stdout);

    // Each task's start line (name, short id, attempt, shard) comes before
    // its end group.
    for name in ["first", "second", "later"] {
        let short = short_id(&pool, name);
        let start = format!("▶ {name} ({short}) attempt 1 · shard 0/1");
        let at = run
            .stdout
            .lines()
            .position(|l| l == start)
            .unwrap_or_else(|| panic!("no `{start}` in:\n{}", run.stdout));
        let end = run
            .stdout
            .lines()
            .position(|l| l.starts_with(&format!("::group::✓ {name} (")))
            .unwrap_or_else(|| panic!("no end group of {name} in:\n{}", run.stdout));
        assert!(at < end, "{name} ended before it started:\n{}", run.stdout);
    }
    assert!(annotations(&run).is_empty(), "{}", run.stdout);
    assert_eq!(gh.output("error"), "");
    assert_eq!(gh.output("tasks-done"), "3");
}

#[test]
fn issue16_header_and_start_lines_outside_github_on_a_dir_store() {
    let (_store, pool) = dir_pool("hdrdir");
    let sub = pool.submit_yaml("tasks:\n  - name: only\n    run: echo hi\n");
    assert_eq!(sub["new"], 1, "{sub}");
    let secret = pool.add_runner("ci");
    let r = pool.runner("hdrdir-r", &secret);
    let run = r.ok(&["run", "--budget", "2m", "--parallel", "1"]);
    // Nothing GitHub's: everything for people is on stderr.
    assert!(!run.stdout.contains("::"), "{}", run.stdout);
    let err = &run.stderr;
    assert!(
        err.contains(&format!("bridge {}, runner ci", env!("CARGO_PKG_VERSION"))),
        "{err}"
    );
    assert!(err.contains(&format!("store:    {}", pool.remote)), "{err}");
    assert!(err.contains("shard:    none"), "{err}");
    assert!(
        err.contains("tasks:    1 runnable here, 1 pending, 0 running, 0 blocked"),
        "{err}"
    );
    let start = err
        .find(&format!("▶ only ({}) attempt 1", short_id(&pool, "only")))
        .unwrap_or_else(|| panic!("no start line in:\n{err}"));
    let end = err
        .find("✓ only (")
        .unwrap_or_else(|| panic!("no end line:\n{err}"));
    assert!(start < end, "{err}");

    // -q: only errors.
    pool.submit_yaml("tasks:\n  - name: again\n    run: echo again\n");
    let quiet = r.ok(&["run", "--budget", "2m", "-q"]);
    assert!(!quiet.stderr.contains("store:"), "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("▶"), "{}", quiet.stderr);
}

/// A failing task's name and id (short) as the admin sees it.
fn short_id(pool: &GitPool, name: &str) -> String {
    pool.admin.task(name).id[..10].to_owned()
}

#[test]
fn issue16_fifteen_failures_make_nine_annotations_and_one_that_counts_the_rest() {
    let pool = GitPool::new("cap");
    let tasks: String = (0..15)
        .map(|k| format!("  - name: bad{k:02}\n    run: echo 'broken {k}' >&2; exit 2\n"))
        .collect();
    let sub = pool.submit_yaml(&format!(
        "tasks:\n{tasks}  - name: fine\n    outputs: [out.txt]\n    run: echo ok > out.txt\n"
    ));
    assert_eq!(sub["new"], 16, "{sub}");
    let secret = pool.add_runner("ci");
    let r = pool.runner("cap-r", &secret);
    let gh = GitHubFiles::of(&r);
    let run = gh
        .run(
            &r,
            &["run", "--budget", "5m", "--parallel", "2", "--shard", "0/1"],
        )
        .expect_code(0);
    let errors = annotations(&run);
    assert_eq!(errors.len(), 10, "{errors:#?}");
    let per_task = errors
        .iter()
        .filter(|l| l.starts_with("::error title=task "))
        .count();
    assert_eq!(per_task, 9, "{errors:#?}");
    let last = errors[9];
    assert!(
        last.starts_with("::error title=6 more tasks failed::"),
        "{last}"
    );
    assert!(last.contains("job summary"), "{last}");
    assert_eq!(gh.output("tasks-failed"), "15");
    assert_eq!(gh.output("tasks-done"), "1");

    // The summary names every failed task by short id and name, the shard,
    // and the commands to run next: they work, from the admin's device.
    pool.admin.ok(&["sync"]);
    let md = gh.summary();
    eprintln!("{md}");
    assert!(md.starts_with("### bridge run (shard 0/1)\n"), "{md}");
    for k in 0..15 {
        let name = format!("bad{k:02}");
        let id = short_id(&pool, &name);
        assert!(
            md.lines()
                .any(|l| l.starts_with(&format!("- `{id}` {name} (failed)"))),
            "{name} ({id}) is not listed as failed:\n{md}"
        );
    }
    let next = md
        .split("#### Next")
        .nth(1)
        .unwrap_or_else(|| panic!("no next commands:\n{md}"));
    let command = |verb: &str| -> Vec<String> {
        next.lines()
            .find(|l| l.starts_with(&format!("bridge {verb} ")))
            .unwrap_or_else(|| panic!("no `bridge {verb}` in:\n{next}"))
            .split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(str::to_owned)
            .collect()
    };
    let logs = command("logs");
    let logs = pool
        .admin
        .ok(&logs.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(logs.stderr.contains("broken "), "{logs:?}");
    let out = pool.admin.scratch("out");
    let mut outputs = command("outputs");
    assert_eq!(
        outputs.last().map(String::as_str),
        Some("out/"),
        "{outputs:?}"
    );
    outputs.pop();
    outputs.push(out.display().to_string());
    pool.admin
        .ok(&outputs.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        fs::read_to_string(out.join("out.txt"))
            .expect("the task's output")
            .trim(),
        "ok"
    );
    let retry = command("retry");
    pool.admin
        .ok(&retry.iter().map(String::as_str).collect::<Vec<_>>());
    let retried: Vec<_> = pool
        .admin
        .ls()
        .into_iter()
        .filter(|t| t.status == "pending")
        .collect();
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert!(
        retry[1].starts_with(&retried[0].id[..10]),
        "{retry:?} {retried:?}"
    );
}

/// Checks what a run stopped by an error left on GitHub Actions: one
/// annotation with the message and the hint (`message` in it), the step
/// outputs (no task done, the error), and a job summary saying what
/// failed and what to do.
fn check_fatal(run: &Run, gh: &GitHubFiles, message: &str) {
    eprintln!("{}\n{}\n{}", run.stdout, run.stderr, gh.summary());
    let errors = annotations(run);
    assert_eq!(errors.len(), 1, "{}\n{}", run.stdout, run.stderr);
    let annotation = errors[0];
    assert!(
        annotation.starts_with("::error title=bridge::"),
        "{annotation}"
    );
    assert!(annotation.contains(message), "{annotation}");
    assert!(annotation.contains("%0AHint: "), "{annotation}");
    // The message and hint are the ones printed on stderr.
    let hint = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("Hint: "))
        .unwrap_or_else(|| panic!("no hint on stderr: {}", run.stderr));
    assert!(annotation.contains(hint), "{annotation}\n{}", run.stderr);

    assert_eq!(gh.output("tasks-done"), "0");
    assert_eq!(gh.output("tasks-failed"), "0");
    assert_eq!(gh.output("tasks-left"), "");
    let error = gh.output("error");
    assert!(error.contains(message), "{error}");

    let md = gh.summary();
    assert!(md.contains("stopped by an error"), "{md}");
    let failed = md
        .lines()
        .find(|l| l.starts_with("**What failed:** "))
        .unwrap_or_else(|| panic!("no `What failed` in:\n{md}"));
    assert!(!failed.is_empty());
    assert!(md.contains("**What to do:** "), "{md}");
    assert!(md.contains(&format!("Exit code {}.", run.code)), "{md}");
}

#[test]
fn issue16_fatal_missing_identity() {
    let pool = GitPool::new("noid");
    pool.submit_yaml("tasks:\n  - name: t\n    run: echo hi\n");
    let r = pool.device("noid-r");
    fs::copy(pool.admin.path("bridge.toml"), r.path("bridge.toml")).expect("copy bridge.toml");
    let gh = GitHubFiles::of(&r);
    let run = gh.run(&r, &["run", "--budget", "5m"]).expect_code(1);
    check_fatal(&run, &gh, "identity");
    // A runner is told about its secret, not `bridge keygen`.
    assert!(
        annotations(&run)[0].contains(
            "BRIDGE_IDENTITY: set it to the secret `bridge members add-runner NAME` printed"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn issue16_fatal_unreachable_store_with_credentials_redacted() {
    let pool = GitPool::new("unreach");
    pool.submit_yaml("tasks:\n  - name: t\n    run: echo hi\n");
    let secret = pool.add_runner("ci");
    let r = pool.runner("unreach-r", &secret);
    let gh = GitHubFiles::of(&r);
    // Nothing listens on 127.0.0.1:9 (discard): the connection is refused.
    let run = gh
        .run(
            &r,
            &[
                "run",
                "--budget",
                "5m",
                "--remote",
                "git:http://user:hunter2@127.0.0.1:9/o/r.git",
            ],
        )
        .expect_code(4);
    check_fatal(&run, &gh, "unreachable");
    assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
    assert!(!gh.summary().contains("hunter2"), "{}", gh.summary());
    assert!(!gh.output("error").contains("hunter2"));
}

#[test]
fn issue16_fatal_bad_shard() {
    let pool = GitPool::new("badshard");
    let secret = pool.add_runner("ci");
    let r = pool.runner("badshard-r", &secret);
    let gh = GitHubFiles::of(&r);
    let run = gh
        .run(&r, &["run", "--budget", "5m", "--shard", "3/2"])
        .expect_code(1);
    check_fatal(&run, &gh, "--shard 3/2: shard indices start at 0");
}

#[test]
fn issue16_fatal_bad_budget() {
    let pool = GitPool::new("badbudget");
    let secret = pool.add_runner("ci");
    let r = pool.runner("badbudget-r", &secret);
    let gh = GitHubFiles::of(&r);
    let run = gh.run(&r, &["run", "--budget", "soon"]).expect_code(1);
    check_fatal(&run, &gh, "--budget soon is not a duration");
}

#[test]
fn issue16_fatal_no_workspace_in_the_folder() {
    // A checkout without bridge.toml (the action's working-directory
    // pointing at the wrong folder).
    let pool = GitPool::new("noroot");
    let secret = pool.add_runner("ci");
    let mut r = Device::new("noroot-r");
    r.set_env("BRIDGE_IDENTITY", &secret);
    let gh = GitHubFiles::of(&r);
    let run = gh.run(&r, &["run", "--budget", "5m"]).expect_code(1);
    check_fatal(&run, &gh, "bridge.toml");
}

#[test]
fn issue16_start_lines_say_which_tasks_were_taken_over_from_another_shard() {
    let (_store, pool) = dir_pool("steal");
    let sub = pool.submit_yaml(
        "tasks:\n  - name: t\n    matrix: { n: [0, 1, 2, 3] }\n    run: echo ${{ matrix.n }}\n",
    );
    assert_eq!(sub["new"], 4, "{sub}");
    let secret = pool.add_runner("ci");
    let r = pool.runner("steal-r", &secret);
    // Runner 0 of 2, alone: its shard's two tasks, then shard 1's (a
    // folder has no push budget: it takes them as soon as its own are
    // done).
    let run = r.ok(&["run", "--budget", "2m", "--parallel", "1", "--shard", "0/2"]);
    let err = &run.stderr;
    assert!(
        err.contains("tasks:    4 runnable here (2 in shard 0/2), 4 pending"),
        "{err}"
    );
    let starts: Vec<&str> = err.lines().filter(|l| l.starts_with("▶ ")).collect();
    assert_eq!(starts.len(), 4, "{err}");
    let own = starts
        .iter()
        .filter(|l| l.ends_with(" · shard 0/2"))
        .count();
    let taken = starts
        .iter()
        .filter(|l| l.contains(" · taken over from shard 1/2 "))
        .count();
    assert_eq!((own, taken), (2, 2), "{err}");
    // Its own shard's first.
    assert!(starts[0].ends_with(" · shard 0/2"), "{err}");
    assert!(starts[1].ends_with(" · shard 0/2"), "{err}");
}

#[test]
fn issue16_a_retried_task_starts_as_attempt_two() {
    let pool = GitPool::new("again");
    pool.submit_yaml("tasks:\n  - name: flaky\n    run: exit 1\n");
    let secret = pool.add_runner("ci");
    let r = pool.runner("again-r", &secret);
    let id = short_id(&pool, "flaky");
    let first = r.ok(&["run", "--budget", "2m"]);
    assert!(
        first.stderr.contains(&format!("▶ flaky ({id}) attempt 1")),
        "{}",
        first.stderr
    );
    pool.admin.ok(&["sync"]);
    pool.admin.ok(&["retry", &id]);
    let second = r.ok(&["run", "--budget", "2m"]);
    assert!(
        second.stderr.contains(&format!("▶ flaky ({id}) attempt 2")),
        "{}",
        second.stderr
    );
}

#[test]
fn issue16_the_header_shows_the_runners_share_of_a_git_hosts_budget() {
    let pool = GitPool::github("share");
    let secret = pool.add_runner("ci");
    let r = pool.runner("share-r", &secret);
    let gh = GitHubFiles::of(&r);
    let run = gh
        .run(&r, &["run", "--budget", "2m", "--shard", "1/4"])
        .expect_code(0);
    let (title, lines) = group(&run.stdout, "bridge ");
    assert!(
        title.contains("shard 1/4 · 0 runnable (0 in its shard)"),
        "{title}"
    );
    let pushes = lines
        .iter()
        .find(|l| l.starts_with("pushes:"))
        .unwrap_or_else(|| panic!("no pushes line: {lines:#?}"));
    // 4 runners share the 5 pushes a minute left after the devices' one.
    assert!(
        pushes.starts_with(
            "pushes:   at most one every 48.0s, a read every 0.4s: this runner's share of the repository's 6 pushes a minute and 15 reads a second"
        ),
        "{pushes}"
    );
    assert!(
        lines
            .iter()
            .any(|l| *l == format!("store:    {}", pool.remote)),
        "{lines:#?}"
    );
}

/// Issue 16, item 6: with --fail-on task-failure a failed task fails the
/// run (exit 3) once the results are pushed and the step outputs and job
/// summary are written, so GitHub marks the job red and mails; with the
/// default (never) the same failure is reported and the run exits 0.
#[test]
fn issue16_fail_on_task_failure_exits_3_after_reporting_and_never_exits_0() {
    let pool = GitPool::new("failon");
    pool.submit_yaml("tasks:\n  - name: bad\n    run: exit 2\n  - name: good\n    run: echo ok\n");
    let secret = pool.add_runner("ci");
    let r = pool.runner("failon-r", &secret);
    let gh = GitHubFiles::of(&r);
    let run = gh
        .run(&r, &["run", "--budget", "2m", "--fail-on", "task-failure"])
        .expect_code(3);
    assert_eq!(gh.output("tasks-done"), "1");
    assert_eq!(gh.output("tasks-failed"), "1");
    assert_eq!(annotations(&run).len(), 1, "{}", run.stdout);
    assert_eq!(gh.output("error"), "");
    assert!(gh.summary().contains("bad"), "{}", gh.summary());
    // The results reached the store before the exit.
    pool.admin.ok(&["sync"]);
    assert_eq!(pool.admin.task("bad").status, "failed");
    assert_eq!(pool.admin.task("good").status, "done");

    // The default: reported, not fatal. A run where nothing failed exits 0
    // under either policy.
    pool.submit_yaml("tasks:\n  - name: bad-again\n    run: exit 1\n");
    let run = r.run(&["run", "--budget", "2m"]).expect_code(0);
    assert!(run.stderr.contains("1 failed"), "{}", run.stderr);
    pool.submit_yaml("tasks:\n  - name: fine\n    run: echo fine\n");
    r.run(&["run", "--budget", "2m", "--fail-on", "task-failure"])
        .expect_code(0);
    // A policy that is not one is refused by the command line.
    let bad = r.run(&["run", "--fail-on", "sometimes"]).expect_code(2);
    assert!(bad.stderr.contains("task-failure"), "{}", bad.stderr);
}
