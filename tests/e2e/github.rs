//! The GitHub side (`init --github`, `dispatch`, `usage`) against a
//! validating mock of GitHub's API on 127.0.0.1: prism (npm
//! `@stoplight/prism-cli`) serving GitHub's own OpenAPI description (npm
//! `@octokit/openapi`), cut down to the operations bridge calls by
//! tests/github/make-spec.mjs. `prism mock --errors` answers every request
//! that breaks the description with an error (422), so each call bridge
//! makes is checked against GitHub's request schemas; the tests also read
//! the mock's log to see which calls were made and that none was refused.
//! Error answers are asked for with `Prefer: code=…` headers, which bridge
//! adds from `BRIDGE_GITHUB_EXTRA_HEADERS` (a hook for mocks).
//!
//! The tools are installed by `.ci/run` (`npm ci` in tests/github); a test
//! run without them installs them first.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::harness::{Device, dir_remote, poll, temp_dir};

/// tests/github: the npm tools and the spec script.
fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/github")
}

/// The subset of GitHub's description, made once per test run.
fn spec() -> &'static Path {
    static SPEC: OnceLock<PathBuf> = OnceLock::new();
    SPEC.get_or_init(|| {
        let dir = tools_dir();
        if !dir.join("node_modules/.bin/prism").exists() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .status()
                .unwrap_or_else(|e| {
                    panic!("cannot run npm (Node.js is needed for these tests): {e}")
                });
            assert!(status.success(), "`npm ci` in {} failed", dir.display());
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("github-api.subset.{}.json", std::process::id()));
        let run = Command::new("node")
            .arg(dir.join("make-spec.mjs"))
            .arg(&out)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run node: {e}"));
        assert!(
            run.status.success(),
            "make-spec.mjs failed:\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        out
    })
}

/// A prism mock of GitHub's API on a free port of 127.0.0.1; killed when
/// dropped.
struct Mock {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Mock {
    fn start() -> Mock {
        let spec = spec();
        let dir = temp_dir("prism");
        let log = dir.path().join("prism.log");
        // A free port: bind, read it, let it go (prism binds it next).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("cannot find a free port")
            .port();
        let child = Command::new(tools_dir().join("node_modules/.bin/prism"))
            .args([
                "mock",
                "--errors",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .arg(spec)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).expect("cannot create the mock's log"))
            .stderr(Stdio::from(
                fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("cannot open the mock's log"),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prism: {e}"));
        let mut mock = Mock {
            child,
            port,
            log,
            _dir: dir,
        };
        // Bounded: prism starts in a second or two on the subset.
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && mock.log_text().contains("Prism is listening")
            {
                break;
            }
            if let Ok(Some(status)) = mock.child.try_wait() {
                panic!("prism exited ({status}):\n{}", mock.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "prism did not listen on 127.0.0.1:{port} within 60 s:\n{}",
                mock.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        mock
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The requests the mock received, as `METHOD /path` (no query).
    fn requests(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("[HTTP SERVER]") && l.contains("Request received"))
            .filter_map(|l| {
                let rest = l.split("[HTTP SERVER]").nth(1)?.trim();
                let mut words = rest.split_whitespace();
                Some(format!(
                    "{} {}",
                    words.next()?.to_uppercase(),
                    words.next()?
                ))
            })
            .collect()
    }

    /// How many requests matched `METHOD /path`.
    fn count(&self, request: &str) -> usize {
        self.requests().iter().filter(|r| *r == request).count()
    }

    /// Requests or responses the mock found to break GitHub's description.
    fn violations(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| {
                l.contains("did not pass the validation rules")
                    || l.contains("[VALIDATOR] ✖")
                    || l.contains("not valid")
                    || l.contains("NO_PATH_MATCHED")
            })
            .map(str::to_owned)
            .collect()
    }

    /// Panics if the mock saw a request or sent a response that breaks the
    /// description.
    fn assert_valid(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "the mock found requests that break GitHub's API description:\n{}\n--- log\n{}",
            v.join("\n"),
            self.log_text()
        );
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A device whose GitHub API is the mock, with a token.
fn device(name: &str, mock: &Mock) -> Device {
    let mut d = Device::new(name);
    d.set_env("GITHUB_TOKEN", "github_pat_test_only");
    d.set_env("BRIDGE_GITHUB_API", &mock.url());
    d
}

const REPO: &str = "octo-org/pool";
/// `init --github` reads the repository (its default branch) after the
/// secrets' key.
const GET_REPO: &str = "GET /repos/octo-org/pool";
const PUBLIC_KEY: &str = "GET /repos/octo-org/pool/actions/secrets/public-key";
const PUT_SECRET: &str = "PUT /repos/octo-org/pool/actions/secrets/BRIDGE_IDENTITY";
const DISPATCH: &str = "POST /repos/octo-org/pool/actions/workflows/bridge.yml/dispatches";
const LIST_RUNS: &str = "GET /repos/octo-org/pool/actions/workflows/bridge.yml/runs";
const GET_WORKFLOW: &str = "GET /repos/octo-org/pool/actions/workflows/bridge.yml";
const ENABLE: &str = "PUT /repos/octo-org/pool/actions/workflows/bridge.yml/enable";
/// `init --github` reads the release of this binary's version in bridge's
/// own repository, then the commit its tag names (or, without a release,
/// the default branch's), to pin the action.
const RELEASE: &str = concat!(
    "GET /repos/bridge-pool/bridge/releases/tags/v",
    env!("CARGO_PKG_VERSION")
);
const RELEASE_COMMIT: &str = concat!(
    "GET /repos/bridge-pool/bridge/commits/v",
    env!("CARGO_PKG_VERSION")
);
const HEAD_COMMIT: &str = "GET /repos/bridge-pool/bridge/commits/HEAD";

/// The commit and the comment of the `bridge-pool/bridge/action@` pin in a
/// workflow; the commit is 40 hex digits and not the template's zeros.
fn pinned_action(workflow: &str) -> (String, String) {
    let line = workflow
        .lines()
        .find_map(|l| l.trim().strip_prefix("uses: bridge-pool/bridge/action@"))
        .unwrap_or_else(|| panic!("no bridge action in:\n{workflow}"));
    let (sha, comment) = line.split_once(" # ").unwrap_or((line, ""));
    assert!(
        sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a commit sha: {line}"
    );
    assert_ne!(sha, "0".repeat(40), "the placeholder pin was written");
    (sha.to_owned(), comment.to_owned())
}

/// A workspace set up by `init --github` whose store is a local folder.
fn github_workspace(name: &str, mock: &Mock) -> (Device, TempDir) {
    let d = device(name, mock);
    let store = temp_dir("gh-store");
    d.ok(&[
        "init",
        "--github",
        REPO,
        "--remote",
        &dir_remote(store.path()),
    ]);
    (d, store)
}

#[test]
fn init_github_via_api_stores_the_sealed_secret_and_commits_the_files() {
    let mock = Mock::start();
    let d = device("gh-init-api", &mock);
    let store = temp_dir("gh-store");
    let run = d.ok(&[
        "init",
        "--github",
        REPO,
        "--remote",
        &dir_remote(store.path()),
        "--via-api",
    ]);
    mock.assert_valid();
    let contents = |path: &str| format!("/repos/octo-org/pool/contents/{path}");
    assert_eq!(
        mock.requests(),
        vec![
            PUBLIC_KEY.to_owned(),
            GET_REPO.to_owned(),
            RELEASE.to_owned(),
            RELEASE_COMMIT.to_owned(),
            PUT_SECRET.to_owned(),
            format!("GET {}", contents(".github%2Fworkflows%2Fbridge.yml")),
            format!("PUT {}", contents(".github%2Fworkflows%2Fbridge.yml")),
            format!("GET {}", contents("bridge.toml")),
            format!("PUT {}", contents("bridge.toml")),
        ],
        "{}",
        mock.log_text()
    );
    // What a person needs to know, and the next command.
    for words in [
        "BRIDGE_IDENTITY",
        "Actions: read and write, Secrets: read and write, Contents: read and write",
        "GitHub's terms",
        "work related to the repository's",
        "self-hosted",
        "runs-on",
        "bridge dispatch",
        "git pull",
        "Action: bridge-pool/bridge/action@",
        "use: release",
        "no Rust toolchain",
    ] {
        assert!(
            run.stdout.contains(words),
            "no `{words}` in:\n{}",
            run.stdout
        );
    }
    // The identity is never printed.
    assert!(!run.stdout.contains("AGE-SECRET-KEY"), "{}", run.stdout);
    assert!(!run.stderr.contains("AGE-SECRET-KEY"), "{}", run.stderr);
    let toml = fs::read_to_string(d.path("bridge.toml")).expect("bridge.toml");
    assert!(toml.contains("[github]"), "{toml}");
    assert!(toml.contains("repository = \"octo-org/pool\""), "{toml}");
    assert!(toml.contains("minutes-budget = 2000"), "{toml}");
    // --via-api commits the workflow instead of writing it here.
    assert!(!d.path(".github/workflows/bridge.yml").exists());
    let members = d.ok(&["members", "ls", "--json"]).json();
    let runner = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["name"] == "github-actions")
        .unwrap_or_else(|| panic!("no runner member: {members}"))
        .clone();
    assert_eq!(runner["role"], "worker");
}

#[test]
fn init_github_before_a_release_pins_a_real_commit_with_use_source() {
    let mock = Mock::start();
    let mut d = device("gh-init-source", &mock);
    // bridge-pool/bridge has no release of this version (GitHub: 404).
    d.set_env(
        "BRIDGE_GITHUB_EXTRA_HEADERS",
        "repos/get-release-by-tag Prefer: code=404",
    );
    let store = temp_dir("gh-store");
    let run = d.ok(&[
        "init",
        "--github",
        REPO,
        "--remote",
        &dir_remote(store.path()),
    ]);
    mock.assert_valid();
    assert_eq!(
        mock.requests(),
        vec![PUBLIC_KEY, GET_REPO, RELEASE, HEAD_COMMIT, PUT_SECRET],
        "{}",
        mock.log_text()
    );
    let written = fs::read_to_string(d.path(".github/workflows/bridge.yml")).expect("the workflow");
    let (sha, comment) = pinned_action(&written);
    let tag = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(comment, format!("default branch, no release {tag} yet"));
    assert!(
        written.contains("use: ${{ vars.BRIDGE_USE || 'source' }}"),
        "{written}"
    );
    assert!(!written.contains("|| 'release'"), "{written}");
    // It says which mode, why, and what a release changes.
    for words in [
        format!("bridge-pool/bridge/action@{sha} (the default branch), use: source"),
        format!("has no release {tag}"),
        "later runs restore it from the Actions cache".to_owned(),
        format!("Once {tag} is released"),
        "download a verified".to_owned(),
    ] {
        assert!(
            run.stdout.contains(&words),
            "no `{words}` in:\n{}",
            run.stdout
        );
    }
}

#[test]
fn init_github_stops_before_anything_when_it_cannot_pin_the_action() {
    let mock = Mock::start();
    let mut d = device("gh-init-nopin", &mock);
    d.set_env(
        "BRIDGE_GITHUB_EXTRA_HEADERS",
        "repos/get-release-by-tag Prefer: code=401",
    );
    let store = temp_dir("gh-store");
    let run = d.run(&[
        "init",
        "--github",
        REPO,
        "--remote",
        &dir_remote(store.path()),
    ]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("cannot tell which commit of bridge-pool/bridge's action"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("HTTP 401"), "{}", run.stderr);
    // Nothing was created: no secret, no workspace, no workflow.
    assert_eq!(mock.requests(), vec![PUBLIC_KEY, GET_REPO, RELEASE]);
    assert!(!d.path("bridge.toml").exists());
    assert!(!d.path(".github/workflows/bridge.yml").exists());
}

#[test]
fn init_github_in_a_checkout_writes_the_workflow_and_can_run_again() {
    let mock = Mock::start();
    let (d, _store) = github_workspace("gh-init", &mock);
    mock.assert_valid();
    assert_eq!(
        mock.requests(),
        vec![PUBLIC_KEY, GET_REPO, RELEASE, RELEASE_COMMIT, PUT_SECRET]
    );
    let template =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/bridge.yml"))
            .expect("the workflow template");
    let written = fs::read_to_string(d.path(".github/workflows/bridge.yml")).expect("the workflow");
    // The template, but for the action's pin: the release's commit, with
    // its tag, and `use: release`.
    let pin = pinned_action(&written);
    assert_eq!(
        pin.1,
        format!("v{}", env!("CARGO_PKG_VERSION")),
        "{written}"
    );
    assert!(written.contains("use: ${{ vars.BRIDGE_USE || 'release' }}"));
    let code = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| {
                !l.trim_start().starts_with('#') && !l.contains("bridge-pool/bridge/action@")
            })
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(code(&written), code(&template));
    // Again in the same workspace: refused before anything changes (a
    // second runner identity would leave the first one a member nobody
    // holds the key of), pointing at rotate-runner.
    let before = fs::read_to_string(d.path("bridge.toml")).expect("bridge.toml");
    let members_before = d.ok(&["members", "ls", "--json"]).json();
    let again = d.run(&["init", "--github", REPO]).expect_code(1);
    assert!(
        again
            .stderr
            .contains("bridge members rotate-runner github-actions --github"),
        "{}",
        again.stderr
    );
    assert_eq!(
        fs::read_to_string(d.path("bridge.toml")).expect("bridge.toml"),
        before
    );
    assert_eq!(d.ok(&["members", "ls", "--json"]).json(), members_before);
    assert_eq!(mock.count(PUT_SECRET), 1, "{}", mock.log_text());

    // The rotation: a new identity stored as the secret, the old one
    // retired, bridge.toml pinning the new roster epoch.
    d.ok(&["submit", "--name", "kept", "--", "echo", "kept"]);
    d.ok(&["work"]);
    let rotated = d.ok(&["members", "rotate-runner", "github-actions", "--github"]);
    assert!(
        rotated.stdout.contains("BRIDGE_IDENTITY"),
        "{}",
        rotated.stdout
    );
    assert!(
        !rotated.stdout.contains("BRIDGE-IDENTITY-1:"),
        "{}",
        rotated.stdout
    );
    assert!(
        !rotated.stderr.contains("BRIDGE-IDENTITY-1:"),
        "{}",
        rotated.stderr
    );
    assert_eq!(mock.count(PUT_SECRET), 2, "{}", mock.log_text());
    let members = d.ok(&["members", "ls", "--json"]).json();
    let names: Vec<&str> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(names.contains(&"github-actions"), "{members}");
    assert!(!names.contains(&"github-actions-2"), "{members}");
    assert_eq!(
        members["removed"].as_array().map(Vec::len),
        Some(1),
        "{members}"
    );
    let pinned = fs::read_to_string(d.path("bridge.toml")).expect("bridge.toml");
    assert!(
        pinned.contains(&format!("roster = \"{}:", members["epoch"])),
        "{pinned}"
    );
    assert_eq!(d.task("kept").status, "done");
    // Another repository is refused.
    let other = d
        .run(&["init", "--github", "octo-org/other"])
        .expect_code(1);
    assert!(
        other
            .stderr
            .contains("set up for GitHub repository octo-org/pool"),
        "{}",
        other.stderr
    );
    mock.assert_valid();
}

#[test]
fn dispatch_starts_the_runners_the_work_needs_and_returns_the_run() {
    let mock = Mock::start();
    let (d, _store) = github_workspace("gh-dispatch", &mock);
    // Nothing pending: no run.
    let idle = d.ok(&["dispatch", "--json"]).json();
    assert_eq!(idle["dispatched"], false);
    assert_eq!(mock.count(DISPATCH), 0);
    for i in 0..3 {
        d.ok(&["submit", "--", "sh", "-c", &format!("echo {i}")]);
    }
    let out = d.ok(&["dispatch", "--json", "--budget", "30m"]).json();
    mock.assert_valid();
    // GitHub's example answer to return_run_details.
    assert_eq!(out["run_id"], 1, "{out}");
    assert_eq!(
        out["html_url"],
        "https://github.com/octo-org/octo-repo/actions/runs/1"
    );
    // 3 tasks of the default 1 h timeout in 30-min runners: one per task.
    assert_eq!(out["runners"], 3, "{out}");
    assert_eq!(out["pending_tasks"], 3, "{out}");
    assert_eq!(mock.count(DISPATCH), 1);
    // The month's usage was read for the budget first.
    assert!(mock.count(LIST_RUNS) >= 1, "{}", mock.log_text());
    // People get the run's page.
    let human = d.ok(&["dispatch", "--runners", "2"]);
    assert!(human.stdout.contains("2 runner(s)"), "{}", human.stdout);
    assert!(
        human.stdout.contains("Run 1: https://github.com/"),
        "{}",
        human.stdout
    );
    mock.assert_valid();
}

// Issue 13, item 2: runners leave the tasks whose submitters are not in
// their `run-tasks-from`; dispatch starts runners only for the others.
#[test]
fn issue13_dispatch_counts_only_the_tasks_runners_would_run() {
    let mock = Mock::start();
    let (admin, store) = github_workspace("gh-policy", &mock);
    let bob = Device::new("gh-policy-bob");
    bob.join_as(&admin, &dir_remote(store.path()), "submit");
    for i in 0..2 {
        bob.ok(&["submit", "--", "sh", "-c", &format!("echo bob {i}")]);
    }
    admin.ok(&["submit", "--", "sh", "-c", "echo admin"]);
    // By default a runner runs every member's tasks.
    let all = admin.ok(&["dispatch", "--json", "--budget", "30m"]).json();
    assert_eq!(all["pending_tasks"], 3, "{all}");
    // The workspace's bridge.toml (which runners check out) says admins only.
    admin.set_worker_settings("run-tasks-from = [\"admins\"]\n");
    let some = admin.ok(&["dispatch", "--json", "--budget", "30m"]).json();
    assert_eq!(some["pending_tasks"], 1, "{some}");
    // Nothing a runner would take: no run at all.
    admin.ok(&["work"]);
    let before = mock.count(DISPATCH);
    let none = admin.ok(&["dispatch", "--json"]).json();
    assert_eq!(none["dispatched"], false, "{none}");
    assert_eq!(mock.count(DISPATCH), before);
    mock.assert_valid();
}

#[test]
fn dispatch_without_run_details_looks_for_the_run() {
    let mock = Mock::start();
    let (mut d, _store) = github_workspace("gh-204", &mock);
    d.ok(&["submit", "--", "true"]);
    // Older GitHub Enterprise Server answers 204 without the run.
    d.set_env(
        "BRIDGE_GITHUB_EXTRA_HEADERS",
        "actions/create-workflow-dispatch Prefer: code=204",
    );
    let before = mock.count(LIST_RUNS);
    let out = d.ok(&["dispatch", "--json", "--interval", "100ms"]).json();
    mock.assert_valid();
    // The mock's only run is from 2020: not this dispatch's. bridge looked a
    // few times, then points at the workflow's page.
    assert_eq!(out["run_id"], Value::Null, "{out}");
    assert_eq!(
        out["html_url"],
        "https://github.com/octo-org/pool/actions/workflows/bridge.yml"
    );
    assert!(mock.count(LIST_RUNS) >= before + 2, "{}", mock.log_text());
}

#[test]
fn dispatch_refuses_to_pass_the_minutes_budget_without_force() {
    let mock = Mock::start();
    let (d, _store) = github_workspace("gh-budget", &mock);
    let path = d.path("bridge.toml");
    let toml = fs::read_to_string(&path).expect("bridge.toml");
    fs::write(
        &path,
        toml.replace("minutes-budget = 2000", "minutes-budget = 10"),
    )
    .expect("bridge.toml");
    d.ok(&["submit", "--", "true"]);
    let refused = d.run(&["dispatch"]).expect_code(1);
    assert!(
        refused.stderr.contains("not dispatching"),
        "{}",
        refused.stderr
    );
    // The numbers: 1 runner × 45 min (the timeout says 1 h) + planning.
    assert!(
        refused.stderr.contains("about 46 minutes")
            && refused.stderr.contains("used 0 of the 10 minutes"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(mock.count(DISPATCH), 0);
    let forced = d.ok(&["dispatch", "--force"]);
    assert!(
        forced.stderr.contains("going on (--force)"),
        "{}",
        forced.stderr
    );
    assert_eq!(mock.count(DISPATCH), 1);
    mock.assert_valid();
}

// Issue 16, item 7: the minutes come from the jobs API, each job rounded
// up to the whole minute, whatever the retiring timing endpoint says (here
// zero billable time, as some accounts get: the budget counted nothing).
#[test]
fn issue16_usage_adds_up_the_jobs_minutes_when_the_timing_endpoint_says_zero() {
    let mock = Mock::start();
    let (mut d, _store) = github_workspace("gh-usage", &mock);
    d.set_env(
        "BRIDGE_GITHUB_EXTRA_HEADERS",
        "actions/get-workflow-run-usage Prefer: example=zero",
    );
    // GitHub's example run is from January 2020; its one job ran from
    // 17:42:40 to 17:44:39, 1 min 59 s: 2 minutes as GitHub bills.
    let out = d.ok(&["usage", "--month", "2020-01", "--json"]).json();
    mock.assert_valid();
    assert_eq!(out["minutes"], 2, "{out}");
    assert_eq!(out["budget"], 2000, "{out}");
    assert_eq!(out["left"], 1998, "{out}");
    assert_eq!(out["runs"][0]["jobs"], 1, "{out}");
    assert_eq!(out["runs"][0]["minutes"], 2, "{out}");
    assert_eq!(
        mock.count("GET /repos/octo-org/pool/actions/runs/30433642/jobs"),
        1,
        "{}",
        mock.log_text()
    );
    assert_eq!(
        mock.count("GET /repos/octo-org/pool/actions/runs/30433642/timing"),
        0,
        "the timing endpoint is not read: {}",
        mock.log_text()
    );
    // This month has no runs of the mock's.
    let now = d.ok(&["usage"]);
    assert!(
        now.stdout
            .contains("0 run(s), 0 runner minute(s) of the 2000 budgeted"),
        "{}",
        now.stdout
    );
    let table = d.ok(&["usage", "--month", "2020-01"]);
    assert!(table.stdout.contains("30433642"), "{}", table.stdout);
    mock.assert_valid();
}

#[test]
fn a_refused_token_says_which_token_and_permissions() {
    let mock = Mock::start();
    let (mut d, _store) = github_workspace("gh-401", &mock);
    d.ok(&["submit", "--", "true"]);
    d.set_env("BRIDGE_GITHUB_EXTRA_HEADERS", "Prefer: code=401");
    let run = d.run(&["dispatch"]).expect_code(1);
    assert!(
        run.stderr
            .contains("the token was refused (HTTP 401: Bad credentials)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("Hint: set GITHUB_TOKEN to a valid token for octo-org/pool"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Actions: read and write"),
        "{}",
        run.stderr
    );
    // `init --github` checks the token before it creates anything.
    let fresh = device("gh-401-init", &mock);
    let init = fresh
        .run_env(
            &[("BRIDGE_GITHUB_EXTRA_HEADERS", "Prefer: code=401")],
            &["init", "--github", REPO],
        )
        .expect_code(1);
    assert!(
        init.stderr.contains(
            "cannot read the public key for Actions secrets of octo-org/pool: the token was refused"
        ),
        "{}",
        init.stderr
    );
    assert!(!fresh.path("bridge.toml").exists());
    // No token at all.
    let mut none = Device::new("gh-no-token");
    none.set_env("BRIDGE_GITHUB_API", &mock.url());
    let missing = none.run(&["init", "--github", REPO]).expect_code(1);
    assert!(
        missing.stderr.contains("no GitHub token"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("GITHUB_TOKEN"),
        "{}",
        missing.stderr
    );
}

#[test]
fn a_dispatch_github_refuses_shows_githubs_message() {
    let mock = Mock::start();
    let (d, _store) = github_workspace("gh-422", &mock);
    d.ok(&["submit", "--", "true"]);
    let run = d
        .run_env(
            &[(
                "BRIDGE_GITHUB_EXTRA_HEADERS",
                "actions/create-workflow-dispatch Prefer: code=422",
            )],
            &["dispatch"],
        )
        .expect_code(1);
    assert!(
        run.stderr.contains(
            "GitHub refused it: Workflow does not have 'workflow_dispatch' trigger (HTTP 422)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("Hint: the workflow must be on that branch"),
        "{}",
        run.stderr
    );
    // A request that breaks GitHub's description is refused by the mock as
    // GitHub would: a dispatch takes at most 25 inputs.
    let mut args = vec!["dispatch".to_owned()];
    for i in 0..24 {
        args.push("--input".to_owned());
        args.push(format!("extra-{i}=x"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let too_many = d.run(&args).expect_code(1);
    assert!(
        too_many.stderr.contains("(HTTP 422)"),
        "{}",
        too_many.stderr
    );
    assert!(
        mock.log_text()
            .contains("must NOT have more than 25 properties"),
        "{}",
        mock.log_text()
    );
}

// Issue 15, item 5: GitHub disables a public repository's scheduled
// workflows after 60 days without activity; dispatch must not depend on it.
#[test]
fn issue15_dispatch_enables_a_workflow_github_disabled_for_inactivity() {
    let mock = Mock::start();
    let (mut d, _store) = github_workspace("gh-inactive", &mock);
    d.ok(&["submit", "--", "true"]);
    // An active workflow: read, not enabled.
    let active = d.ok(&["dispatch", "--json"]);
    assert_eq!(active.json()["workflow_reenabled"], false);
    assert!(
        !active.stderr.contains("enabled it again"),
        "{}",
        active.stderr
    );
    assert_eq!(mock.count(GET_WORKFLOW), 1);
    assert_eq!(mock.count(ENABLE), 0);
    d.set_env(
        "BRIDGE_GITHUB_EXTRA_HEADERS",
        "actions/get-workflow Prefer: example=disabled_inactivity",
    );
    let run = d.ok(&["dispatch", "--json"]);
    mock.assert_valid();
    assert_eq!(run.json()["workflow_reenabled"], true, "{}", run.stdout);
    assert_eq!(run.json()["run_id"], 1, "{}", run.stdout);
    // One line on stderr says what bridge did to the repository.
    let said: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("enabled it again"))
        .collect();
    assert_eq!(
        said,
        vec![
            "GitHub had disabled workflow bridge.yml of octo-org/pool after 60 days without repository activity; enabled it again."
        ],
        "{}",
        run.stderr
    );
    // Read, enabled, then dispatched: in that order.
    let requests = mock.requests();
    let at = |r: &str| requests.iter().rposition(|x| x == r);
    let (get, enable, dispatch) = (at(GET_WORKFLOW), at(ENABLE), at(DISPATCH));
    assert!(
        get.is_some() && get < enable && enable < dispatch,
        "{requests:?}"
    );
    assert_eq!(mock.count(ENABLE), 1);
    assert_eq!(mock.count(DISPATCH), 2);
}

#[test]
fn issue15_dispatch_refuses_a_workflow_a_person_disabled() {
    let mock = Mock::start();
    let (mut d, _store) = github_workspace("gh-manual", &mock);
    d.ok(&["submit", "--", "true"]);
    d.set_env(
        "BRIDGE_GITHUB_EXTRA_HEADERS",
        "actions/get-workflow Prefer: example=disabled_manually",
    );
    let run = d.run(&["dispatch"]).expect_code(1);
    mock.assert_valid();
    assert!(
        run.stderr.contains(
            "workflow bridge.yml of octo-org/pool was disabled by a person (state disabled_manually): not dispatching"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("Hint: enable it if runners should start again: `gh workflow enable bridge.yml --repo octo-org/pool`"),
        "{}",
        run.stderr
    );
    // Nothing enabled, nothing dispatched.
    assert_eq!(mock.count(GET_WORKFLOW), 1);
    assert_eq!(mock.count(ENABLE), 0);
    assert_eq!(mock.count(DISPATCH), 0);
}

#[test]
fn dispatch_watch_follows_the_pool_until_it_drains() {
    let mock = Mock::start();
    let (d, _store) = github_workspace("gh-watch", &mock);
    d.ok(&[
        "submit",
        "--output",
        "out.txt",
        "--",
        "sh",
        "-c",
        "echo one > out.txt",
    ]);
    d.ok(&["submit", "--", "true"]);
    // --then (issue 17, item 7): a command when watching ends, told how.
    let then = d.scratch("then.log");
    let then_cmd = format!(
        "printf '%s|%s|%s|%s|%s\\n' \"$BRIDGE_EVENT\" \"$BRIDGE_STATUS\" \"$BRIDGE_DONE\" \"$BRIDGE_LEFT\" \"$BRIDGE_RUN_ID\" >> '{}'",
        then.display()
    );
    let watch = d.spawn(
        "watch",
        &[
            "dispatch",
            "--watch",
            "--interval",
            "300ms",
            "--then",
            &then_cmd,
        ],
    );
    poll("the dispatch", || mock.count(DISPATCH) == 1);
    // A worker here stands in for the runners.
    d.ok(&["work", "-j", "2"]);
    let mut watch = watch;
    poll("the watch to end", || !watch.is_running());
    let run = watch.wait().expect_code(0);
    assert!(
        run.stdout
            .contains("The pool is drained: 2 done · 0 failed · 0 left"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("bridge outputs"), "{}", run.stdout);
    assert_eq!(
        std::fs::read_to_string(&then).expect("--then ran"),
        "watch-done|done|2|0|1\n"
    );
    // It followed the run and its jobs.
    assert!(
        mock.count("GET /repos/octo-org/pool/actions/runs/1") >= 1,
        "{}",
        mock.log_text()
    );
    assert!(
        mock.count("GET /repos/octo-org/pool/actions/runs/1/jobs") >= 1,
        "{}",
        mock.log_text()
    );
    // Progress lines name the run's and the jobs' states.
    assert!(
        run.stderr.contains("run: queued") && run.stderr.contains("jobs: 1 success"),
        "{}",
        run.stderr
    );
    mock.assert_valid();
}

#[test]
fn the_github_commands_explain_themselves() {
    let d = Device::new("gh-help");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["init", "--help"],
            &[
                "--github",
                "--via-api",
                "BRIDGE_IDENTITY",
                "Secrets: read and write",
                "Workflows: read and write",
                "Metadata: read",
                "GH_TOKEN",
                "remote `origin`",
                "default branch",
            ],
        ),
        (
            &["dispatch", "--help"],
            &[
                "--runners",
                "auto",
                "--watch",
                "--force",
                "minutes-budget",
                "max-runners",
            ],
        ),
        (
            &["usage", "--help"],
            &["--month", "jobs API", "rounded up", "--json"],
        ),
        (
            &["watch", "--help"],
            &[
                "RUN",
                "newest run",
                "exit-status",
                "exit_reason",
                "6 the run ended",
            ],
        ),
        (&["run", "--help"], &["--fail-on", "task-failure", "never"]),
    ];
    for (args, words) in cases {
        let run = d.run(args).expect_code(0);
        for w in *words {
            assert!(
                run.stdout.contains(w),
                "`bridge {}` lacks `{w}`:\n{}",
                args.join(" "),
                run.stdout
            );
        }
    }
    let top = d.run(&["--help"]).expect_code(0);
    for cmd in ["dispatch", "usage", "watch"] {
        assert!(top.stdout.contains(&format!("  {cmd} ")), "{}", top.stdout);
    }
    // Without [github] in bridge.toml, the commands say how to add it.
    d.ok(&["init"]);
    let run = d.run(&["usage"]).expect_code(1);
    assert!(
        run.stderr.contains("bridge init --github OWNER/REPO"),
        "{}",
        run.stderr
    );
}

/// Sets `[github] minutes-budget` of `d`'s bridge.toml.
fn set_minutes_budget(d: &Device, minutes: u64) {
    let path = d.path("bridge.toml");
    let toml = fs::read_to_string(&path).expect("bridge.toml");
    fs::write(
        &path,
        toml.replace(
            "minutes-budget = 2000",
            &format!("minutes-budget = {minutes}"),
        ),
    )
    .expect("bridge.toml");
}

// Issue 16, item 6: a second dispatch while runners of an earlier run are
// queued or running is refused, naming the runs, the way to follow them and
// --force; --force starts more anyway. Issue 16, item 7: the budget guard
// counts those runs' job minutes.
#[test]
fn issue16_a_second_dispatch_waits_for_the_runners_at_work_unless_forced() {
    let mock = Mock::start();
    let (mut d, _store) = github_workspace("gh-second", &mock);
    set_minutes_budget(&d, 40);
    d.ok(&["submit", "--", "true"]);
    // One run in progress and one queued, both created minutes ago.
    d.set_env(
        "BRIDGE_GITHUB_EXTRA_HEADERS",
        "actions/list-workflow-runs Prefer: example=active",
    );
    let refused = d.run(&["dispatch"]).expect_code(1);
    mock.assert_valid();
    for words in [
        "not dispatching: 2 run(s) of workflow bridge.yml still queued or running",
        "30433651 (queued, https://github.com/octo-org/octo-repo/actions/runs/30433651)",
        "30433650 (in_progress,",
        "Hint: their runners drain the same pool: follow them with `bridge watch 30433651`",
        "--force",
    ] {
        assert!(
            refused.stderr.contains(words),
            "no `{words}` in:\n{}",
            refused.stderr
        );
    }
    assert_eq!(mock.count(DISPATCH), 0);
    let forced = d.ok(&["dispatch", "--force", "--json"]);
    assert!(
        forced
            .stderr
            .contains("still queued or running: 30433651 (queued,")
            && forced
                .stderr
                .contains("starting more runners anyway (--force)"),
        "{}",
        forced.stderr
    );
    // Those two runs' jobs (2 minutes each, rounded up) count against the
    // budget: 4 used, plus the estimate (46), passes 40.
    assert!(
        forced
            .stderr
            .contains("bridge's runs used 4 of the 40 minutes budgeted"),
        "{}",
        forced.stderr
    );
    assert_eq!(forced.json()["run_id"], 1, "{}", forced.stdout);
    assert_eq!(mock.count(DISPATCH), 1);
    // The mock's usual run is from 2020, queued: GitHub cancels a run after
    // 35 days, so it is a stale record, not runners at work.
    d.set_env("BRIDGE_GITHUB_EXTRA_HEADERS", "");
    d.ok(&["dispatch", "--budget", "10m"]);
    assert_eq!(mock.count(DISPATCH), 2);
    mock.assert_valid();
}

// Issue 16, item 6: `dispatch --watch` exits 3 when a watched task failed,
// and says so in JSON.
#[test]
fn issue16_dispatch_watch_exits_3_when_a_task_failed() {
    let mock = Mock::start();
    let (d, _store) = github_workspace("gh-watch-fail", &mock);
    d.ok(&["submit", "--name", "bad", "--", "sh", "-c", "exit 1"]);
    d.ok(&["submit", "--name", "good", "--", "true"]);
    let watch = d.spawn(
        "watch",
        &["dispatch", "--watch", "--interval", "300ms", "--json"],
    );
    poll("the dispatch", || mock.count(DISPATCH) == 1);
    // A worker here stands in for the runners.
    d.run(&["work", "-j", "2"]).expect_code(3);
    let mut watch = watch;
    poll("the watch to end", || !watch.is_running());
    let out = watch.wait().expect_code(3).json();
    assert_eq!(out["exit_reason"], "tasks_failed", "{out}");
    assert_eq!(
        (
            out["done"].as_u64(),
            out["failed"].as_u64(),
            out["left"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{out}"
    );
    mock.assert_valid();
}

/// A runner device of `admin`'s pool (its bridge.toml, a runner identity).
fn runner_of(admin: &Device, name: &str) -> Device {
    let secret = admin
        .ok(&["members", "add-runner", name])
        .stdout
        .trim()
        .to_owned();
    let mut runner = Device::new(name);
    fs::copy(admin.path("bridge.toml"), runner.path("bridge.toml"))
        .expect("cannot copy bridge.toml");
    runner.set_env("BRIDGE_IDENTITY", &secret);
    runner
}

// Issue 16, item 6: `bridge watch [RUN]` attaches to a run again, and
// counts the tasks that run's runners finished before; its exit code says
// how the run ended, as `gh run watch --exit-status` does.
#[test]
fn issue16_watch_attaches_to_a_run_and_its_exit_code_says_how_it_ended() {
    let mock = Mock::start();
    let (mut d, _store) = github_workspace("gh-reattach", &mock);
    d.ok(&["submit", "--name", "bad", "--", "sh", "-c", "exit 1"]);
    d.ok(&["submit", "--name", "good", "--", "true"]);
    // A runner of run 30433642 (GitHub's example run) drains the pool
    // before anyone watches: its attempts record the run's id.
    let runner = runner_of(&d, "gh-reattach-ci");
    runner
        .run_env(&[("GITHUB_RUN_ID", "30433642")], &["run", "--budget", "2m"])
        .expect_code(0);
    // This replica learns the tasks are final: only the runner's attempts
    // say they are that run's work.
    d.ok(&["sync"]);
    d.set_env(
        "BRIDGE_GITHUB_EXTRA_HEADERS",
        "actions/get-workflow-run Prefer: example=failure",
    );
    // RUN left out: the workflow's newest run, 30433642. The run ended
    // (failed, as a runner with fail-on: task-failure makes it), and the
    // task its runner failed is counted: exit 3.
    let out = d
        .run(&["watch", "--json", "--interval", "100ms"])
        .expect_code(3)
        .json();
    mock.assert_valid();
    assert_eq!(out["run_id"], 30433642, "{out}");
    assert_eq!(out["exit_reason"], "tasks_failed", "{out}");
    // Attaching dispatches nothing, and does not say it did.
    assert!(out.get("dispatched").is_none(), "{out}");
    assert_eq!(
        (out["done"].as_u64(), out["failed"].as_u64()),
        (Some(1), Some(1)),
        "{out}"
    );
    assert!(
        mock.count("GET /repos/octo-org/pool/actions/runs/30433642") >= 1,
        "{}",
        mock.log_text()
    );
    // Another run did none of these tasks: nothing of its own failed, but
    // the run did: exit 6, and people are told.
    let other = d.run(&["watch", "7", "--interval", "100ms"]).expect_code(6);
    assert!(
        other
            .stdout
            .contains("The run itself failed or was cancelled"),
        "{}",
        other.stdout
    );
    // Work left when the run ended: exit 6, tasks_left.
    d.ok(&["submit", "--name", "later", "--", "sh", "-c", "echo later"]);
    let left = d
        .run(&["watch", "7", "--json", "--interval", "100ms"])
        .expect_code(6)
        .json();
    assert_eq!(left["exit_reason"], "tasks_left", "{left}");
    assert_eq!(left["left"], 1, "{left}");
    // A run that succeeded, with the pool drained: exit 0.
    d.ok(&["work"]);
    d.set_env(
        "BRIDGE_GITHUB_EXTRA_HEADERS",
        "actions/get-workflow-run Prefer: example=success",
    );
    let ok = d
        .run(&["watch", "7", "--json", "--interval", "100ms"])
        .expect_code(0)
        .json();
    assert_eq!(ok["exit_reason"], "drained", "{ok}");
    // A run GitHub does not know: an error naming it.
    let missing = d
        .run_env(
            &[(
                "BRIDGE_GITHUB_EXTRA_HEADERS",
                "actions/get-workflow-run Prefer: code=404",
            )],
            &["watch", "8", "--interval", "100ms"],
        )
        .expect_code(1);
    assert!(
        missing.stderr.contains("workflow run 8"),
        "{}",
        missing.stderr
    );
    mock.assert_valid();
}

// Issue 16, item 8: GH_TOKEN comes first, as in gh; a refused one is named.
#[test]
fn issue16_gh_token_is_used_before_github_token() {
    let mock = Mock::start();
    let (mut d, _store) = github_workspace("gh-ghtoken", &mock);
    d.set_env("GH_TOKEN", "github_pat_from_gh_token");
    d.set_env("BRIDGE_GITHUB_EXTRA_HEADERS", "Prefer: code=401");
    let run = d.run(&["usage"]).expect_code(1);
    assert!(
        run.stderr
            .contains("Hint: set GH_TOKEN to a valid token for octo-org/pool"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the refused token came from GH_TOKEN"),
        "{}",
        run.stderr
    );
    // Without GH_TOKEN, GITHUB_TOKEN.
    d.set_env("GH_TOKEN", "");
    let run = d.run(&["usage"]).expect_code(1);
    assert!(
        run.stderr
            .contains("the refused token came from GITHUB_TOKEN"),
        "{}",
        run.stderr
    );
    // GH_TOKEN alone is enough.
    let mut only = Device::new("gh-ghtoken-only");
    only.set_env("BRIDGE_GITHUB_API", &mock.url());
    only.set_env("GH_TOKEN", "github_pat_test_only");
    let store = temp_dir("gh-store");
    only.ok(&[
        "init",
        "--github",
        REPO,
        "--remote",
        &dir_remote(store.path()),
    ]);
}

// Issue 16, item 8: `init --github` with no repository takes the one of the
// folder's git remote origin (https or ssh), reads the default branch from
// the API instead of assuming `main`, and commands find the repository the
// same way when bridge.toml has no [github].
#[test]
fn issue16_init_github_infers_the_repository_and_reads_the_default_branch() {
    let mock = Mock::start();
    let d = device("gh-infer", &mock);
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(d.path("."))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&[
        "remote",
        "add",
        "origin",
        "git@github.com:octo-org/pool.git",
    ]);
    let store = temp_dir("gh-store");
    let run = d.ok(&["init", "--github", "--remote", &dir_remote(store.path())]);
    mock.assert_valid();
    assert!(
        run.stderr
            .contains("GitHub repository octo-org/pool (the git remote origin of this folder)"),
        "{}",
        run.stderr
    );
    assert_eq!(mock.count(PUT_SECRET), 1, "{}", mock.log_text());
    let toml = fs::read_to_string(d.path("bridge.toml")).expect("bridge.toml");
    assert!(toml.contains("repository = \"octo-org/pool\""), "{toml}");
    // GitHub's example repository's default branch is `master`.
    assert!(toml.contains("ref = \"master\""), "{toml}");

    // Without [github], commands use the remote's repository; dispatch
    // reads the default branch (no ref written anywhere).
    let toml = toml
        .split("[github]")
        .next()
        .expect("the part before [github]")
        .to_owned();
    fs::write(d.path("bridge.toml"), toml).expect("bridge.toml");
    d.ok(&["submit", "--", "true"]);
    let before = mock.count(GET_REPO);
    let out = d.ok(&["dispatch", "--json"]).json();
    assert_eq!(out["repository"], "octo-org/pool", "{out}");
    assert_eq!(out["ref"], "master", "{out}");
    assert_eq!(mock.count(GET_REPO), before + 1);
    // An https remote on another host needs that host's API.
    git(&[
        "remote",
        "set-url",
        "origin",
        "https://ghe.example.com/octo-org/pool.git",
    ]);
    let ghe = d
        .run_env(&[("BRIDGE_GITHUB_API", "")], &["usage"])
        .expect_code(1);
    assert!(
        ghe.stderr.contains("is on ghe.example.com, not github.com")
            && ghe
                .stderr
                .contains("BRIDGE_GITHUB_API=https://ghe.example.com/api/v3"),
        "{}",
        ghe.stderr
    );
    // A folder with no remote: how to name the repository.
    git(&["remote", "remove", "origin"]);
    let none = d.run(&["usage"]).expect_code(1);
    assert!(
        none.stderr.contains("has no GitHub remote `origin`"),
        "{}",
        none.stderr
    );
    mock.assert_valid();
}
