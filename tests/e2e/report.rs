//! Issue 17, item 6: `bridge report` writes one self-contained HTML page of
//! the pool, checked in a real headless browser (Chromium from Debian's
//! packages): the content is there, a task whose name and output hold
//! `<script>` and `</div>` neither runs code nor breaks the page, and a
//! screenshot is kept under `target/e2e-report/` for a person to look at.
//!
//! Chromium comes from `BRIDGE_TEST_CHROMIUM`, else `/usr/bin/chromium`
//! (`.ci/run` installs it), else `chromium` on PATH. Without it the test
//! says so and passes, except under CI (`CI` set), where it fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Device, dir_remote, str_field, temp_dir};

/// A task whose name and output try to inject markup and a script: were
/// either not escaped, the script would give the page's body an id.
const EVIL: &str = "<script>document.body.id='pwned'</script></div>";

const FIRST: &str = r#"
tasks:
  - name: compile
    run: echo compiled
  - name: "<script>document.body.id='pwned'</script></div>"
    run: echo "<script>document.body.id='pwned'</script></div>" >&2; exit 1
  - name: package
    needs: ["<script>document.body.id='pwned'</script></div>"]
    run: echo packaged
"#;

const SECOND: &str = "
tasks:
  - name: docs
    run: echo documented
";

const THIRD: &str = "
tasks:
  - name: later
    run: echo later
";

/// The browser, if this machine has one (see the module docs).
fn chromium_or_skip() -> Option<PathBuf> {
    let found = if let Some(p) = std::env::var_os("BRIDGE_TEST_CHROMIUM").filter(|p| !p.is_empty())
    {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BRIDGE_TEST_CHROMIUM={} does not exist",
            p.display()
        );
        Some(p)
    } else if Path::new("/usr/bin/chromium").is_file() {
        Some(PathBuf::from("/usr/bin/chromium"))
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("chromium"))
                .find(|p| p.is_file())
        })
    };
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing: .ci/run installs it (apt-get install chromium)"
        );
        eprintln!("skipped: no `chromium` (apt-get install chromium, or run .ci/run once)");
    }
    found
}

/// Runs headless Chromium on `page` with `extra` arguments and returns its
/// stdout. A browser that hangs is killed after a generous bound, so that
/// the test fails rather than hangs.
fn chromium(browser: &Path, profile: &Path, extra: &[String], page: &Path) -> String {
    let out = profile.join(format!("out-{}.html", extra.len()));
    let err = profile.join(format!("err-{}.txt", extra.len()));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .env("HOME", profile)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("cannot create a file for chromium's stdout"))
        .stderr(fs::File::create(&err).expect("cannot create a file for chromium's stderr"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let limit = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().expect("cannot wait for chromium") {
            break s;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium {extra:?} did not finish: {}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium {extra:?} failed ({status}): {}",
        fs::read_to_string(&err).unwrap_or_default()
    );
    fs::read_to_string(&out).expect("cannot read chromium's output")
}

#[test]
fn report_shows_the_pool_in_a_browser_and_a_hostile_task_injects_nothing() {
    // Build the pool first (it needs no browser); check the page with one.
    let shared = temp_dir("report-shared");
    let remote = dir_remote(shared.path());
    let laptop = Device::new("laptop");
    let desktop = Device::new("desktop");
    laptop.ok(&["init", "--remote", &remote]);
    desktop.join_as(&laptop, &remote, "submit");

    // The desktop runs the first batch: one done, one failed, one skipped.
    laptop.write("first.yaml", FIRST);
    laptop.ok(&["submit", "-q", "first.yaml"]);
    laptop.ok(&["sync"]);
    desktop.ok(&["sync"]);
    desktop.run(&["work"]).expect_code(3);
    desktop.ok(&["sync"]);
    // The laptop runs the second, and leaves the third pending.
    laptop.write("second.yaml", SECOND);
    laptop.ok(&["submit", "-q", "second.yaml"]);
    laptop.ok(&["work"]);
    laptop.write("third.yaml", THIRD);
    laptop.ok(&["submit", "-q", "third.yaml"]);
    laptop.ok(&["sync"]);
    let statuses: Vec<(String, String)> = laptop
        .ls()
        .into_iter()
        .map(|t| (t.name, t.status))
        .collect();
    for (name, status) in [
        ("compile", "done"),
        (EVIL, "failed"),
        ("package", "skipped"),
        ("docs", "done"),
        ("later", "pending"),
    ] {
        assert!(
            statuses.contains(&(name.to_owned(), status.to_owned())),
            "{name} is not {status}: {statuses:?}"
        );
    }

    // The default file, in the current folder.
    let wrote = laptop.ok(&["report"]);
    assert!(
        wrote.stdout.contains("bridge-report.html"),
        "{}",
        wrote.stdout
    );
    let page_path = laptop.path("bridge-report.html");
    let page = fs::read_to_string(&page_path).expect("the report is written");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    // The page's own script is its only one, and its own `</div>`s the only ones.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert_eq!(page.matches("</div>").count(), 1, "{page}");
    // Self-contained: nothing to fetch.
    for external in ["http://", "https://", "src=", "<link"] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
    // `--to -` prints the same page; --batch keeps one batch.
    let stdout = laptop.ok(&["report", "--to", "-"]).stdout;
    assert_eq!(stdout.matches("<details open class=\"batch\">").count(), 3);
    let docs_batch = str_field(&laptop.show("docs"), "batch");
    let one = laptop
        .ok(&["report", "--batch", &docs_batch, "--to", "-"])
        .stdout;
    assert_eq!(one.matches("<details open class=\"batch\">").count(), 1);
    assert!(
        one.contains(">docs<") && !one.contains(">compile<"),
        "{one}"
    );
    let wrong = laptop.run(&["report", "--batch", "zzzzzz"]).expect_code(1);
    assert!(wrong.stderr.contains("bridge status"), "{}", wrong.stderr);

    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let tmp = temp_dir("report-chromium");
    let dom = chromium(
        browser.as_path(),
        tmp.path(),
        &["--dump-dom".to_owned()],
        &page_path,
    );
    // The page's own script ran; the task's did not.
    assert!(dom.contains("data-report=\"ready\""), "{dom}");
    assert!(
        !dom.contains("id=\"pwned\""),
        "an injected script ran: {dom}"
    );
    // The hostile name and output are shown as text.
    let shown = "&lt;script&gt;document.body.id='pwned'&lt;/script&gt;&lt;/div&gt;";
    assert!(
        dom.matches(shown).count() >= 4,
        "name and tail shown: {dom}"
    );
    // The content: counts, devices, timeline, durations, failures, minutes.
    for text in [
        "1 failed",
        "1 skipped",
        "1 pending",
        "2 done",
        "<td>laptop</td>",
        "<td>desktop</td>",
        "id=\"timeline-svg\"",
        "id=\"durations-table\"",
        "Failures (1)",
        "exit 1",
        "stderr (last lines)",
        "attempt(s) ran for",
        "wall-clock span",
    ] {
        assert!(dom.contains(text), "the page lacks {text:?}: {dom}");
    }
    // One bar per attempt: compile, the failed task, docs.
    assert_eq!(dom.matches("<rect ").count(), 3, "{dom}");

    // A screenshot, kept for a person to look at.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("e2e-report");
    fs::create_dir_all(&shots).expect("cannot create target/e2e-report");
    let png = shots.join("report.png");
    let _ = fs::remove_file(&png);
    chromium(
        browser.as_path(),
        tmp.path(),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2000".to_owned(),
            "--hide-scrollbars".to_owned(),
        ],
        &page_path,
    );
    let bytes = fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A size no blank page reaches, then the header's width and height.
    assert!(
        bytes.len() > 40_000,
        "the screenshot is nearly blank ({} bytes)",
        bytes.len()
    );
    let dim =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    assert_eq!((dim(16), dim(20)), (1280, 2000));
    fs::copy(&page_path, shots.join("report.html")).expect("cannot keep the page");
}
