//! The GitHub-shaped git server, driven by plain `git` over https.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use bridge_testutil::github_git::{Config, GitHubGit, Recommendations, Refusal, Violation};

/// git, hermetic, trusting the server's certificate; `auth` adds the
/// token header the way bridge sends it. Returns the output, success or not.
fn git_at(server: &GitHubGit, dir: &Path, auth: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new("git");
    if let Some(header) = auth {
        command.arg("-c").arg(format!("http.extraHeader={header}"));
    }
    command
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GIT_SSL_CAINFO", server.ca_path())
        .env("LC_ALL", "C")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Like [`git_at`] with the token; panics unless git succeeds.
fn git_ok(server: &GitHubGit, dir: &Path, args: &[&str]) -> String {
    let out = git_at(server, dir, Some(&server.auth_header()), args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A work tree with one commit of `files` (path, contents) on `main`.
fn work_tree(server: &GitHubGit, files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git_ok(server, dir.path(), &["init", "-q", "-b", "main"]);
    commit(server, dir.path(), files, "first");
    dir
}

fn commit(server: &GitHubGit, dir: &Path, files: &[(&str, Vec<u8>)], message: &str) {
    for (path, contents) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    git_ok(server, dir, &["add", "-A"]);
    git_ok(server, dir, &["commit", "-q", "-m", message]);
}

/// `len` bytes that zlib cannot shrink (xorshift), so pack sizes are real.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn clone_push_fetch_with_the_token_and_a_report_of_them() {
    let server = GitHubGit::start();
    let url = server.create_repo("octo/pool");
    let mut files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("blobs/{i:03}"), format!("blob {i}").into_bytes()))
        .collect();
    files.push(("README".into(), b"hello".to_vec()));
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let work = work_tree(&server, &files);
    git_ok(&server, work.path(), &["push", "-q", &url, "main"]);

    let clone = tempfile::tempdir().unwrap();
    git_ok(&server, clone.path(), &["clone", "-q", &url, "c"]);
    let cloned = clone.path().join("c");
    assert_eq!(std::fs::read(cloned.join("README")).unwrap(), b"hello");

    commit(&server, work.path(), &[("more", b"x".to_vec())], "second");
    git_ok(&server, work.path(), &["push", "-q", &url, "main"]);
    git_ok(&server, &cloned, &["fetch", "-q", "origin"]);
    let remote = git_ok(&server, work.path(), &["ls-remote", &url]);
    assert!(remote.contains("refs/heads/main"), "{remote}");

    let report = server.report();
    let repo = report.repo("octo/pool").unwrap();
    assert_eq!(repo.pushes.len(), 2, "{report}");
    assert!(
        repo.pushes
            .iter()
            .all(|p| p.refused.is_none() && p.refs == 1 && p.bytes > 0)
    );
    // clone, fetch, ls-remote: one read each.
    assert_eq!(repo.reads, 3, "{report}");
    assert!(repo.upload_pack_posts >= 2, "{report}");
    assert_eq!(repo.peak_pushes_per_minute, 2);
    assert_eq!(repo.refs, 1);
    let widest = repo.widest_tree.clone().unwrap();
    assert_eq!((widest.entries, widest.path.as_str()), (40, "blobs"));
    assert_eq!(repo.unauthorized, 0);
    assert_eq!(report.check(&Recommendations::github()), Ok(()));

    // A tighter directory limit names the tree.
    let tight = Recommendations {
        tree_entries: 30,
        ..Recommendations::github()
    };
    let violations = report.check(&tight).unwrap_err();
    assert_eq!(
        violations.0,
        vec![Violation::WideTree {
            repo: "octo/pool.git".into(),
            path: "blobs".into(),
            entries: 40,
            limit: 30
        }]
    );
}

#[test]
fn a_clone_of_many_branches_sends_a_gzipped_request_that_http_backend_inflates() {
    let server = GitHubGit::start();
    let url = server.create_repo("octo/pool");
    let work = work_tree(&server, &[("a", b"a".to_vec())]);
    // Each branch its own commit: one `want` line each, well over the
    // 1 KB past which git gzips a fetch request.
    let mut refspecs = Vec::new();
    for i in 0..60 {
        commit(
            &server,
            work.path(),
            &[("a", format!("{i}").into_bytes())],
            &format!("c{i}"),
        );
        let branch = format!("b{i:02}");
        git_ok(&server, work.path(), &["branch", &branch]);
        refspecs.push(branch);
    }
    let mut args = vec!["push", "-q", url.as_str(), "main"];
    args.extend(refspecs.iter().map(String::as_str));
    git_ok(&server, work.path(), &args);
    let clone = tempfile::tempdir().unwrap();
    git_ok(
        &server,
        clone.path(),
        &["clone", "-q", "--mirror", &url, "c"],
    );
    let refs = git_ok(
        &server,
        &clone.path().join("c"),
        &["for-each-ref", "--format=%(refname)"],
    );
    assert_eq!(refs.lines().count(), 61);

    let report = server.report();
    let repo = report.repo("octo/pool").unwrap();
    assert!(repo.gzipped_requests >= 1, "{report}");
    assert_eq!((repo.refs, repo.pushes.len()), (61, 1));
    assert_eq!(repo.pushes[0].refs, 61);
}

#[test]
fn refuses_git_without_the_right_token() {
    let server = GitHubGit::start();
    let url = server.create_repo("octo/pool");
    let work = work_tree(&server, &[("a", b"a".to_vec())]);

    let anonymous = git_at(&server, work.path(), None, &["push", &url, "main"]);
    assert!(!anonymous.status.success());
    let wrong = format!(
        "AUTHORIZATION: basic {}",
        base64_of("x-access-token:not-the-token")
    );
    let wrong_token = git_at(&server, work.path(), Some(&wrong), &["ls-remote", &url]);
    assert!(!wrong_token.status.success());
    // git asks for credentials after the 401 and has no way to get any.
    assert!(
        stderr(&wrong_token).contains("could not read Username"),
        "{}",
        stderr(&wrong_token)
    );

    let report = server.report();
    let repo = report.repo("octo/pool").unwrap();
    assert!(repo.unauthorized >= 2, "{report}");
    assert_eq!((repo.pushes.len(), repo.reads, repo.refs), (0, 0, 0));
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn an_object_over_the_limit_is_refused_with_githubs_text_and_not_stored() {
    let server = GitHubGit::with_config(Config {
        max_object_bytes: 1024 * 1024,
        ..Config::default()
    });
    let url = server.create_repo("octo/pool");
    let work = work_tree(&server, &[("small", b"ok".to_vec())]);
    git_ok(&server, work.path(), &["push", "-q", &url, "main"]);
    commit(
        &server,
        work.path(),
        &[("out/big file.bin", noise(2 * 1024 * 1024, 7))],
        "big",
    );
    let big = git_ok(
        &server,
        work.path(),
        &["rev-parse", "HEAD:out/big file.bin"],
    );

    let out = git_at(
        &server,
        work.path(),
        Some(&server.auth_header()),
        &["push", &url, "main"],
    );
    assert!(!out.status.success());
    let text = stderr(&out);
    for line in [
        "remote: error: See https://gh.io/lfs for more information.",
        "remote: error: File out/big file.bin is 2.00 MB; this exceeds GitHub's file size limit of 1.00 MB",
        "remote: error: GH001: Large files detected. You may want to try Git Large File Storage - https://git-lfs.github.com.",
        "! [remote rejected] main -> main (pre-receive hook declined)",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    // Nothing stored: the ref did not move and the blob is not there.
    let head = git_ok(&server, work.path(), &["rev-parse", "HEAD~1"]);
    let remote = git_ok(&server, work.path(), &["ls-remote", &url, "main"]);
    assert!(remote.starts_with(head.trim()), "{remote}");
    let exists = Command::new("git")
        .args(["cat-file", "-e", big.trim()])
        .current_dir(server.repo_dir("octo/pool"))
        .status()
        .unwrap();
    assert!(!exists.success(), "the refused blob was stored");

    let report = server.report();
    let repo = report.repo("octo/pool").unwrap();
    assert_eq!(repo.pushes.len(), 2);
    assert_eq!(
        repo.pushes[1].refused,
        Some(Refusal::LargeObject {
            path: "out/big file.bin".into(),
            size: 2 * 1024 * 1024,
            limit: 1024 * 1024,
            count: 1
        })
    );
    let violations = report.check(&Recommendations::github()).unwrap_err();
    assert!(
        matches!(
            &violations.0[..],
            [Violation::RefusedPush {
                reason: Refusal::LargeObject { .. },
                ..
            }]
        ),
        "{violations}"
    );
}

#[test]
fn the_push_policy_refuses_more_refs_than_its_limit() {
    let server = GitHubGit::with_config(Config {
        max_refs_per_push: Some(2),
        ..Config::default()
    });
    let url = server.create_repo("octo/pool");
    let work = work_tree(&server, &[("a", b"a".to_vec())]);
    for branch in ["b1", "b2", "b3"] {
        git_ok(&server, work.path(), &["branch", branch]);
    }
    let out = git_at(
        &server,
        work.path(),
        Some(&server.auth_header()),
        &["push", &url, "b1", "b2", "b3"],
    );
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("remote: error: GH013: Repository rule violations found."),
        "{text}"
    );
    assert!(
        text.contains("remote: error: - Pushes can not update more than 2 branches or tags."),
        "{text}"
    );
    assert!(text.contains("(pre-receive hook declined)"), "{text}");
    git_ok(&server, work.path(), &["push", "-q", &url, "b1", "b2"]);

    let report = server.report();
    let repo = report.repo("octo/pool").unwrap();
    assert_eq!(repo.refs, 2);
    assert_eq!(
        repo.pushes
            .iter()
            .map(|p| (p.refs, p.refused.clone()))
            .collect::<Vec<_>>(),
        vec![
            (3, Some(Refusal::TooManyRefs { refs: 3, limit: 2 })),
            (2, None)
        ]
    );
}

#[test]
fn a_pack_over_the_push_limit_is_refused_and_a_chunked_push_within_it_goes_through() {
    let server = GitHubGit::with_config(Config {
        max_push_bytes: 256 * 1024,
        ..Config::default()
    });
    let url = server.create_repo("octo/pool");
    // 200 KB of noise, sent with a 64 KB post buffer: git sends the body
    // chunked.
    let work = work_tree(&server, &[("within", noise(200 * 1024, 1))]);
    git_ok(
        &server,
        work.path(),
        &["-c", "http.postBuffer=65536", "push", "-q", &url, "main"],
    );
    commit(
        &server,
        work.path(),
        &[("over", noise(400 * 1024, 2))],
        "over",
    );
    let out = git_at(
        &server,
        work.path(),
        Some(&server.auth_header()),
        &["-c", "http.postBuffer=65536", "push", &url, "main"],
    );
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("remote: fatal: pack exceeds maximum allowed size (256.00 KiB)"),
        "{text}"
    );

    let report = server.report();
    let repo = report.repo("octo/pool").unwrap();
    assert_eq!(repo.pushes.len(), 2, "{report}");
    assert_eq!(repo.chunked_requests, 2, "{report}");
    assert!(repo.pushes[0].bytes > 200 * 1024);
    assert_eq!(repo.pushes[0].refused, None);
    assert_eq!(
        repo.pushes[1].refused,
        Some(Refusal::PushTooLarge { limit: 256 * 1024 })
    );
    assert!(repo.largest_push() > 400 * 1024);
}

#[test]
fn the_optional_rate_limit_refuses_pushes_past_it() {
    let server = GitHubGit::with_config(Config {
        max_pushes_per_minute: Some(1),
        ..Config::default()
    });
    let url = server.create_repo("octo/pool");
    let work = work_tree(&server, &[("a", b"a".to_vec())]);
    git_ok(&server, work.path(), &["push", "-q", &url, "main"]);
    commit(&server, work.path(), &[("b", b"b".to_vec())], "second");
    let out = git_at(
        &server,
        work.path(),
        Some(&server.auth_header()),
        &["push", &url, "main"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("429"), "{}", stderr(&out));
    let report = server.report();
    let repo = report.repo("octo/pool").unwrap();
    assert_eq!(
        repo.pushes[1].refused,
        Some(Refusal::RateLimited { limit: 1 })
    );
}

#[test]
fn the_report_lists_every_repository_created_even_untouched() {
    let server = GitHubGit::start();
    server.create_repo("octo/a");
    assert_eq!(
        server.create_repo("solo"),
        format!("https://127.0.0.1:{}/solo.git", server.port())
    );
    let report = server.report();
    assert_eq!(
        report.repos.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["octo/a.git", "solo.git"]
    );
    let solo = report.repo("solo").unwrap();
    assert_eq!((solo.pushes.len(), solo.reads, solo.refs), (0, 0, 0));
    assert_eq!(solo.widest_tree, None);
    assert_eq!(report.check(&Recommendations::github()), Ok(()));
}

#[test]
fn a_stopped_server_refuses_connections_and_serves_the_same_repositories_again() {
    let mut server = GitHubGit::start();
    let url = server.create_repo("octo/down");
    let work = work_tree(&server, &[("a", b"1".to_vec())]);
    git_ok(&server, work.path(), &["push", "-q", &url, "main"]);

    server.stop();
    assert!(!server.is_serving());
    let down = git_at(
        &server,
        work.path(),
        Some(&server.auth_header()),
        &["ls-remote", &url],
    );
    assert!(!down.status.success());
    // Nothing listens: the connection itself fails, as with a host that is
    // down (not an HTTP error from a server that is up).
    let text = stderr(&down);
    assert!(
        text.contains("Failed to connect") || text.contains("Connection refused"),
        "{text}"
    );

    server.restart();
    assert!(server.is_serving());
    commit(&server, work.path(), &[("b", b"2".to_vec())], "second");
    git_ok(&server, work.path(), &["push", "-q", &url, "main"]);
    let refs = git_ok(&server, work.path(), &["ls-remote", &url]);
    assert!(refs.contains("refs/heads/main"), "{refs}");
    // Counting went on across the outage: both pushes, one per serving.
    let report = server.report();
    assert_eq!(
        report.repo("octo/down").unwrap().pushes.len(),
        2,
        "{report}"
    );
}
