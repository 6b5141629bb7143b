//! The `git:` remote against real `git`: bare repositories in temp folders
//! over `file://` (and plain paths), one test over `git daemon`, racing
//! writers, and the errors callers must tell apart. Every git command runs
//! with `GIT_CONFIG_GLOBAL=/dev/null` and `GIT_CONFIG_NOSYSTEM=1`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use bridge_store::{
    BlobId, FORMAT_LINE, Plain, Remote, RemoteError, RemoteOptions, Replica, load_doc,
    parse_remote, sync,
};
use bridge_testutil::files::{blob, chunk, header, names};
use bridge_testutil::git::{Bare, Daemon, bare_repo, git, remote};

/// `git ls-remote` of a repository: (ref, oid), sorted.
fn ls_remote(url: &str) -> Vec<(String, String)> {
    let mut refs: Vec<(String, String)> = git(&["ls-remote", url])
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(oid, name)| (name.to_owned(), oid.to_owned()))
        .collect();
    refs.sort();
    refs
}

/// The store names of the files in the tree of `reference` in the bare
/// repository `repo`: its paths, without the fan-out folder of hashed
/// files (`blobs/ab/ab….blob` is `blobs/ab….blob`).
fn tree_paths(repo: &Path, reference: &str) -> BTreeSet<String> {
    Bare(repo.to_owned()).tree(reference)
}

/// The paths in the tree of `reference` in the bare repository `repo`.
fn raw_tree_paths(repo: &Path, reference: &str) -> BTreeSet<String> {
    Bare(repo.to_owned()).raw_tree(reference)
}

#[test]
fn put_list_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("store.git");
    let url = bare_repo(&repo);
    let writer = remote(&url, "laptop", &dir.path().join("cache-w"));

    assert!(writer.list().unwrap().is_empty());
    let mut files = header("ws");
    files.extend([
        blob("one"),
        blob("two"),
        chunk("batch-1", "c1"),
        chunk("batch-1", "c2"),
    ]);
    writer.put(&files).unwrap();
    assert_eq!(writer.push_stats().pushed, 1);
    assert_eq!(writer.list().unwrap(), names(&files));

    // A reader with its own cache sees the same files and bytes.
    let reader = remote(&url, "other", &dir.path().join("cache-r"));
    assert_eq!(reader.list().unwrap(), names(&files));
    for (name, bytes) in &files {
        assert_eq!(&reader.read(name).unwrap(), bytes, "{name}");
    }
    let wanted: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let absent = blob("never put").0;
    let mut asked = wanted.clone();
    asked.push(absent.clone());
    let got = reader.read_many(&asked).unwrap();
    assert_eq!(got, files);
    assert!(matches!(
        reader.read(&absent),
        Err(RemoteError::NotFound { .. })
    ));

    // Reading without listing first fetches on demand.
    let fresh = remote(&url, "fresh", &dir.path().join("cache-f"));
    assert_eq!(fresh.read("FORMAT").unwrap(), FORMAT_LINE.as_bytes());

    // Idempotent: putting the same files again pushes nothing.
    let before = ls_remote(&url);
    writer.put(&files).unwrap();
    writer.put(&files[2..3]).unwrap();
    assert_eq!(ls_remote(&url), before);
    assert_eq!(writer.push_stats().pushed, 1);

    // A file put later is seen by the reader's next list.
    let later = blob("three");
    writer.put(std::slice::from_ref(&later)).unwrap();
    assert!(reader.list().unwrap().contains(&later.0));
    assert_eq!(reader.read(&later.0).unwrap(), later.1);

    // Names and hashes are checked before anything reaches git.
    assert!(matches!(
        writer.put(&[("../evil".into(), b"x".to_vec())]),
        Err(RemoteError::InvalidName { .. })
    ));
    assert!(matches!(
        writer.put(&[(blob("x").0, b"y".to_vec())]),
        Err(RemoteError::HashMismatch { .. })
    ));
    assert!(matches!(
        reader.read("chunks/../../etc/passwd"),
        Err(RemoteError::InvalidName { .. })
    ));
    // Nothing of ours is left in the cache but the repository.
    let leftovers: Vec<String> = std::fs::read_dir(dir.path().join("cache-w"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bridge-index"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn one_branch_per_slot_each_with_format_and_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("store.git");
    let url = bare_repo(&repo);
    let a = remote(&url, "a", &dir.path().join("cache-a"));
    let b = remote(&url, "b", &dir.path().join("cache-b"));
    a.put(&header("ws")).unwrap();
    a.put(&[blob("from a")]).unwrap();
    b.list().unwrap();
    b.put(&[blob("from b")]).unwrap();

    let refs: Vec<String> = ls_remote(&url).into_iter().map(|(r, _)| r).collect();
    assert_eq!(refs, ["refs/bridge/a", "refs/bridge/b"]);
    let in_b = tree_paths(&repo, "refs/bridge/b");
    let expected: BTreeSet<String> = ["FORMAT".to_owned(), "workspace".into(), blob("from b").0]
        .into_iter()
        .collect();
    assert_eq!(in_b, expected);
    assert_eq!(
        tree_paths(&repo, "refs/bridge/a"),
        ["FORMAT".to_owned(), "workspace".into(), blob("from a").0]
            .into_iter()
            .collect()
    );
    // The union, with FORMAT and workspace once.
    assert_eq!(a.list().unwrap().len(), 4);
    assert_eq!(b.list().unwrap(), a.list().unwrap());
    // Commits are by bridge, whatever the user's config says.
    let author = git(&[
        "--git-dir",
        repo.to_str().unwrap(),
        "log",
        "-1",
        "--format=%an <%ae>",
        "refs/bridge/b",
    ]);
    assert_eq!(author.trim(), "bridge <bridge@localhost>");
}

/// An Automerge chunk setting `key = value` on `doc`.
fn chunk_put(doc: &mut AutoCommit, key: &str, value: i64) -> Vec<u8> {
    let heads = doc.get_heads();
    doc.put(ROOT, key, value).unwrap();
    doc.commit();
    doc.save_after(&heads)
}

fn get_i64(doc: &AutoCommit, key: &str) -> Option<i64> {
    doc.get(ROOT, key).unwrap().and_then(|(v, _)| v.as_i64())
}

/// Two devices, each with its replica and slot, converge through one repo.
fn converge_through(url: &str, dir: &Path) {
    let ra = Replica::init(&dir.join("a"), "ws").unwrap();
    let rb = Replica::init(&dir.join("b"), "ws").unwrap();
    let ga = remote(url, "device-a", &dir.join("cache-a"));
    let gb = remote(url, "device-b", &dir.join("cache-b"));

    let mut doc_a = AutoCommit::new();
    for i in 0..5 {
        ra.write_chunk("batch", &chunk_put(&mut doc_a, "from-a", i))
            .unwrap();
    }
    let blob_a = ra.put_blob_bytes(b"output of a").unwrap();
    let mut doc_b = AutoCommit::new();
    rb.write_chunk("batch", &chunk_put(&mut doc_b, "from-b", 7))
        .unwrap();
    let blob_b = rb.put_blob_bytes(b"output of b").unwrap();

    let report = sync(&ra, &ga, &mut |_| {}).unwrap();
    assert_eq!((report.pulled, report.pushed), (0, 6));
    let report = sync(&rb, &gb, &mut |_| {}).unwrap();
    assert_eq!((report.pulled, report.pushed), (6, 2));
    let report = sync(&ra, &ga, &mut |_| {}).unwrap();
    assert_eq!((report.pulled, report.pushed), (2, 0));
    assert!(report.skipped.is_empty());
    for (replica, remote) in [(&ra, &ga), (&rb, &gb)] {
        let report = sync(replica, remote, &mut |_| {}).unwrap();
        assert_eq!((report.pulled, report.pushed), (0, 0));
    }
    assert_eq!(
        ra.list_store_names().unwrap(),
        rb.list_store_names().unwrap()
    );
    assert!(ra.has_blob(&blob_b) && rb.has_blob(&blob_a));
    for replica in [&ra, &rb] {
        let (loaded, warnings) = load_doc(replica, "batch", &Plain).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(get_i64(&loaded.doc, "from-a"), Some(4));
        assert_eq!(get_i64(&loaded.doc, "from-b"), Some(7));
    }
    assert_eq!(ga.push_stats().rejected + gb.push_stats().rejected, 0);
}

#[test]
fn two_replicas_converge_through_a_git_repo() {
    let dir = tempfile::tempdir().unwrap();
    let url = bare_repo(&dir.path().join("store.git"));
    converge_through(&url, dir.path());
    let refs: Vec<String> = ls_remote(&url).into_iter().map(|(r, _)| r).collect();
    assert_eq!(refs, ["refs/bridge/device-a", "refs/bridge/device-b"]);
}

#[test]
fn eight_writers_with_their_own_slots_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let url = bare_repo(&dir.path().join("store.git"));
    remote(&url, "init", &dir.path().join("cache-init"))
        .put(&header("ws"))
        .unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let url = url.clone();
            let barrier = Arc::clone(&barrier);
            // One cache per writer, as on eight runners.
            let cache = dir.path().join(format!("cache-{w}"));
            thread::spawn(move || {
                let r = remote(&url, &format!("runner-{w}"), &cache);
                barrier.wait();
                for i in 0..20 {
                    r.put(&[blob(&format!("writer {w} file {i}"))]).unwrap();
                }
                r.push_stats()
            })
        })
        .collect();
    for worker in workers {
        let stats = worker.join().unwrap();
        assert_eq!(stats.pushed, 20);
        assert_eq!(stats.rejected, 0, "{stats:?}");
    }
    let reader = remote(&url, "reader", &dir.path().join("cache-r"));
    let listed = reader.list().unwrap();
    assert_eq!(
        listed.iter().filter(|n| n.starts_with("blobs/")).count(),
        160
    );
    assert_eq!(ls_remote(&url).len(), 9);
}

#[test]
fn two_processes_of_one_slot_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let url = bare_repo(&dir.path().join("store.git"));
    // Two instances sharing one slot and one cache: two processes of one
    // device.
    let cache = dir.path().join("cache");
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = (0..2)
        .map(|p| {
            let url = url.clone();
            let cache = cache.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let r = remote(&url, "laptop", &cache);
                r.list().unwrap();
                barrier.wait();
                for i in 0..10 {
                    r.put(&[blob(&format!("process {p} file {i}"))]).unwrap();
                }
                r.push_stats()
            })
        })
        .collect();
    let stats: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(stats.iter().all(|s| s.pushed == 10), "{stats:?}");
    let reader = remote(&url, "reader", &dir.path().join("cache-r"));
    let listed = reader.list().unwrap();
    for p in 0..2 {
        for i in 0..10 {
            assert!(listed.contains(&blob(&format!("process {p} file {i}")).0));
        }
    }
    assert_eq!(ls_remote(&url).len(), 1);
    eprintln!("same-slot race: {stats:?}");
}

#[test]
fn a_stale_tip_is_rebuilt_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("store.git");
    let url = bare_repo(&repo);
    let first = remote(&url, "laptop", &dir.path().join("cache-1"));
    let second = remote(&url, "laptop", &dir.path().join("cache-2"));
    first.put(&[blob("base")]).unwrap();
    second.list().unwrap();
    // `first` moves the branch; `second` still believes the old tip.
    first.put(&[blob("from first")]).unwrap();
    second.put(&[blob("from second")]).unwrap();
    let stats = second.push_stats();
    assert_eq!((stats.pushed, stats.rejected), (1, 1), "{stats:?}");
    let paths = tree_paths(&repo, "refs/bridge/laptop");
    for content in ["base", "from first", "from second"] {
        assert!(paths.contains(&blob(content).0), "{content}");
    }
    // A branch deleted behind our back (compaction) is recreated.
    git(&[
        "--git-dir",
        repo.to_str().unwrap(),
        "update-ref",
        "-d",
        "refs/bridge/laptop",
    ]);
    first.put(&[blob("after deletion")]).unwrap();
    let paths = tree_paths(&repo, "refs/bridge/laptop");
    assert_eq!(
        paths,
        [blob("after deletion").0]
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
}

#[test]
fn remove_takes_files_off_every_slot_with_parentless_commits() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("store.git");
    let url = bare_repo(&repo);
    let a = remote(&url, "a", &dir.path().join("cache-a"));
    let b = remote(&url, "b", &dir.path().join("cache-b"));
    let shared = blob("in both slots");
    let (x, y) = (blob("x"), chunk("d", "y"));
    a.put(&[header("ws"), vec![x.clone(), y.clone(), shared.clone()]].concat())
        .unwrap();
    b.list().unwrap();
    b.put(std::slice::from_ref(&shared)).unwrap();

    let left = a
        .remove(&[x.0.clone(), blob("never there").0, shared.0.clone()])
        .unwrap();
    assert_eq!(left, 0);
    let in_a = tree_paths(&repo, "refs/bridge/a");
    assert!(!in_a.contains(&x.0) && !in_a.contains(&shared.0));
    assert!(in_a.contains(&y.0) && in_a.contains("FORMAT"));
    // Gone from b's slot too, and both branches lost their history.
    assert!(!tree_paths(&repo, "refs/bridge/b").contains(&shared.0));
    for slot in ["a", "b"] {
        assert_eq!(
            Bare(repo.clone()).commits(&format!("refs/bridge/{slot}")),
            1,
            "{slot}"
        );
    }
    let listed = b.list().unwrap();
    assert!(!listed.contains(&x.0) && !listed.contains(&shared.0));
    assert!(matches!(b.read(&x.0), Err(RemoteError::NotFound { .. })));

    // b did not know: its next put rebuilds on the rewritten tip and keeps
    // what a left.
    let z = blob("z");
    b.put(std::slice::from_ref(&z)).unwrap();
    let listed = a.list().unwrap();
    assert!(listed.contains(&z.0) && listed.contains(&y.0) && !listed.contains(&shared.0));

    let before = ls_remote(&url);
    a.remove(std::slice::from_ref(&x.0)).unwrap();
    assert_eq!(
        ls_remote(&url),
        before,
        "removing a missing file pushes nothing"
    );
    assert!(matches!(
        a.remove(&["FORMAT".to_owned()]),
        Err(RemoteError::InvalidName { .. })
    ));
}

#[test]
fn unreachable_hosts_are_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "git://127.0.0.1:1/x",
        "http://127.0.0.1:1/x.git",
        "https://nonexistent.invalid/x.git",
    ] {
        let r = remote(url, "a", &dir.path().join("cache"));
        let started = Instant::now();
        let err = r.list().unwrap_err();
        assert!(
            matches!(err, RemoteError::Unreachable { .. }),
            "{url}: {err:?}"
        );
        let err = r.put(&[blob("x")]).unwrap_err();
        assert!(
            matches!(err, RemoteError::Unreachable { .. }),
            "{url}: {err:?}"
        );
        // No retries on a refused or unknown host: callers go offline fast.
        assert!(started.elapsed() < Duration::from_secs(20), "{url}");
    }
}

#[test]
fn a_missing_repository_is_repo_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.git");
    for url in [
        format!("file://{}", missing.display()),
        missing.display().to_string(),
    ] {
        let r = remote(&url, "a", &dir.path().join("cache"));
        let err = r.list().unwrap_err();
        assert!(matches!(err, RemoteError::RepoNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("repository not found"), "{err}");
        assert!(matches!(
            r.put(&[blob("x")]).unwrap_err(),
            RemoteError::RepoNotFound { .. }
        ));
    }
}

#[test]
fn no_git_is_git_missing() {
    let dir = tempfile::tempdir().unwrap();
    let url = bare_repo(&dir.path().join("store.git"));
    let r = remote(&url, "a", &dir.path().join("cache")).with_git_env("PATH", "/nonexistent");
    let err = r.list().unwrap_err();
    assert!(matches!(err, RemoteError::GitMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("install git"), "{err}");
}

#[test]
fn parse_remote_wires_git_urls() {
    let dir = tempfile::tempdir().unwrap();
    bare_repo(&dir.path().join("store.git"));
    let opts = RemoteOptions {
        writer_slot: "laptop".into(),
        cache_dir: dir.path().join("caches"),
        github_token: None,
        stall_timeout: bridge_store::DEFAULT_STALL_TIMEOUT,
        git_limits: bridge_store::GitLimits::default(),
        s3: bridge_store::s3::S3Options::default(),
    };
    // A relative path is taken from the base folder.
    let r = parse_remote("git:store.git", dir.path(), &opts).unwrap();
    assert_eq!(
        r.describe(),
        format!("git:{}", dir.path().join("store.git").display())
    );
    r.put(&header("ws")).unwrap();
    assert_eq!(r.list().unwrap().len(), 2);
    assert_eq!(
        ls_remote(dir.path().join("store.git").to_str().unwrap())[0].0,
        "refs/bridge/laptop"
    );
    // The private repository lives under the cache folder, one per URL.
    let caches: Vec<PathBuf> = std::fs::read_dir(&opts.cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(caches.len(), 1);
    assert!(caches[0].join("HEAD").is_file());
}

#[test]
fn works_over_git_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    Bare::served(&served.join("store.git"));
    let daemon = Daemon::start(&served);
    let url = daemon.url("store.git");

    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    converge_through(&url, &work);
    let refs: Vec<String> = ls_remote(&url).into_iter().map(|(r, _)| r).collect();
    assert_eq!(refs, ["refs/bridge/device-a", "refs/bridge/device-b"]);
    let missing = daemon.url("nope.git");
    let err = remote(&missing, "a", &dir.path().join("cache-m"))
        .list()
        .unwrap_err();
    assert!(matches!(err, RemoteError::RepoNotFound { .. }), "{err:?}");
    drop(daemon);
    // The daemon is gone: the same remote is now unreachable.
    let err = remote(&url, "device-a", &work.join("cache-a"))
        .list()
        .unwrap_err();
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");
}

/// Timings against a local bare repository. Run with
/// `cargo test -p bridge-store --release --test git -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_local_bare_repo() {
    let dir = tempfile::tempdir().unwrap();
    let url = bare_repo(&dir.path().join("store.git"));
    let writer = remote(&url, "w", &dir.path().join("cache-w"));
    writer.put(&header("ws")).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|i| blob(&format!("{i:04} {}", "x".repeat(1000))))
        .collect();
    let t = Instant::now();
    writer.put(&files).unwrap();
    eprintln!("put 1000 files (1 KB) in one call: {:?}", t.elapsed());

    let reader = remote(&url, "r", &dir.path().join("cache-r"));
    let t = Instant::now();
    let listed = reader.list().unwrap();
    let list_cold = t.elapsed();
    let wanted: Vec<String> = listed.iter().cloned().collect();
    let t = Instant::now();
    let got = reader.read_many(&wanted).unwrap();
    let read = t.elapsed();
    assert_eq!(got.len(), 1002);
    let t = Instant::now();
    reader.list().unwrap();
    let list_warm = t.elapsed();
    eprintln!(
        "list of 1002 files: {list_cold:?} (fresh cache), {list_warm:?} (warm); read_many of 1002: {read:?}"
    );
    let t = Instant::now();
    for name in wanted.iter().take(50) {
        reader.read(name).unwrap();
    }
    eprintln!("read one by one: {:?} per file", t.elapsed() / 50);

    let more: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| blob(&format!("more {i} {}", "y".repeat(1000))))
        .collect();
    let t = Instant::now();
    writer.put(&more).unwrap();
    eprintln!("put 100 files in one call: {:?}", t.elapsed());
    let t = Instant::now();
    for i in 0..20 {
        writer.put(&[blob(&format!("single {i}"))]).unwrap();
    }
    eprintln!("put 1 file: {:?} per call", t.elapsed() / 20);

    // Sync of a fresh replica pulling everything.
    let replica = Replica::init(&dir.path().join("replica"), "ws").unwrap();
    let joiner = remote(&url, "j", &dir.path().join("cache-j"));
    let t = Instant::now();
    let report = sync(&replica, &joiner, &mut |_| {}).unwrap();
    eprintln!(
        "sync of a fresh replica pulling {} files: {:?}",
        report.pulled,
        t.elapsed()
    );
}

#[test]
fn issue12_item16_an_oversized_object_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let url = bare_repo(&dir.path().join("r.git"));
    let writer = remote(&url, "w", &dir.path().join("c1"));
    let limit = bridge_store::names::MAX_CHUNK_BYTES;
    let big = vec![7u8; usize::try_from(limit + 1).unwrap()];
    let big_name = format!("chunks/d/{}.chunk", BlobId::of_bytes(&big));
    let small = chunk("d", "small");
    let mut files = header("ws");
    files.push((big_name.clone(), big));
    files.push(small.clone());
    writer.put(&files).unwrap();

    let reader = remote(&url, "r", &dir.path().join("c2"));
    assert!(reader.list().unwrap().contains(&big_name));
    match reader.read(&big_name) {
        Err(RemoteError::TooLarge { size, limit: l, .. }) => {
            assert_eq!((size, l), (limit + 1, limit))
        }
        other => panic!("expected TooLarge, got {:?}", other.map(|b| b.len())),
    }
    assert_eq!(reader.read(&small.0).unwrap(), small.1);
    let replica = Replica::init(&dir.path().join("local"), "ws").unwrap();
    let report = sync(&replica, &reader, &mut |_| {}).unwrap();
    assert_eq!(report.pulled, 1, "the small chunk arrives");
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert!(
        report.skipped[0].message.contains(&(limit + 1).to_string()),
        "{}",
        report.skipped[0]
    );
}

/// A server on 127.0.0.1 that accepts connections and never answers (nor
/// closes them) while it lives: what a hung host looks like to git.
struct SilentServer {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SilentServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Issue 12, item 15: a host that accepts the connection and never answers
/// kept a command for 363 s over http (six tries of git's one-minute low
/// speed limit) and for ever over git://. With a stall timeout, list and
/// put fail as `Unreachable` with a timed-out cause, after one try (the
/// watchdog killed git; it is not retried).
#[test]
fn a_silent_host_is_unreachable_after_the_stall_timeout() {
    let server = SilentServer::start();
    let dir = tempfile::tempdir().unwrap();
    for (i, url) in [
        format!("http://127.0.0.1:{}/store.git", server.port),
        format!("git://127.0.0.1:{}/store.git", server.port),
    ]
    .into_iter()
    .enumerate()
    {
        let r = remote(&url, "laptop", &dir.path().join(format!("cache{i}")))
            .with_stall_timeout(Duration::from_secs(1));
        for result in [r.list().map(|_| ()), r.put(&header("ws"))] {
            let err = result.expect_err("a silent host cannot answer");
            match &err {
                RemoteError::Unreachable { source, .. } => {
                    assert_eq!(
                        source.kind(),
                        std::io::ErrorKind::TimedOut,
                        "{url}: {err:?}"
                    )
                }
                other => panic!("{url}: expected Unreachable, got {other:?}"),
            }
            assert!(
                std::error::Error::source(&err)
                    .is_some_and(|s| s.to_string().contains("stall timeout")),
                "{url}: {err:?}"
            );
        }
    }
}

// ---- issue 15: the ref namespace, the fan-out and GitHub's limits --------

/// A non-bare repository at `work` whose commit holds `files` at their
/// (flat) store names, pushed to `url` as `reference`: a store as bridge
/// wrote it before issue 15.
fn push_flat(work: &Path, url: &str, reference: &str, files: &[(String, Vec<u8>)]) {
    let w = work.to_str().unwrap();
    git(&["init", "-q", w]);
    for (name, bytes) in files {
        let path = work.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    git(&["-C", w, "add", "-A"]);
    git(&["-C", w, "commit", "-q", "-m", "old store"]);
    git(&["-C", w, "push", "-q", url, &format!("HEAD:{reference}")]);
}

/// The number of entries of the widest tree under `reference`.
fn widest_tree(repo: &Path, reference: &str) -> usize {
    let out = git(&[
        "--git-dir",
        repo.to_str().unwrap(),
        "ls-tree",
        "-r",
        "-t",
        "--name-only",
        reference,
    ]);
    let mut per_folder: std::collections::BTreeMap<&str, usize> = Default::default();
    for path in out.lines() {
        let folder = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        *per_folder.entry(folder).or_default() += 1;
    }
    per_folder.values().copied().max().unwrap_or(0)
}

/// A blob of `len` bytes that differ from those of other lengths.
fn big_blob(len: usize, seed: u8) -> (String, Vec<u8>) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    (BlobId::of_bytes(&bytes).store_name(), bytes)
}

#[test]
fn issue15_the_store_is_not_in_branches_and_a_clone_fetches_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("store.git");
    let url = bare_repo(&repo);
    // The project's own branch, as on GitHub.
    push_flat(
        &dir.path().join("project"),
        &url,
        "refs/heads/main",
        &[("README".to_owned(), b"project\n".to_vec())],
    );
    let writer = remote(&url, "laptop", &dir.path().join("cache"));
    writer
        .put(&[header("ws"), vec![blob("x"), chunk("d", "y")]].concat())
        .unwrap();
    let refs: Vec<String> = ls_remote(&url).into_iter().map(|(r, _)| r).collect();
    assert!(refs.contains(&"refs/bridge/laptop".to_owned()), "{refs:?}");
    assert!(!refs.iter().any(|r| r.starts_with("refs/heads/bridge")));
    // The default refspec (a clone, actions/checkout) takes branches and
    // tags: none of the store.
    let clone = dir.path().join("clone");
    git(&["clone", "-q", &url, clone.to_str().unwrap()]);
    let cloned = git(&["-C", clone.to_str().unwrap(), "for-each-ref"]);
    assert!(!cloned.is_empty() && !cloned.contains("bridge"), "{cloned}");
    let log = git(&["-C", clone.to_str().unwrap(), "log", "--all", "--format=%s"]);
    assert_eq!(log.trim(), "old store");
}

#[test]
fn issue15_a_store_on_legacy_branches_is_read_and_its_writers_move_on() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("store.git");
    let url = bare_repo(&repo);
    let (old_a, old_b, shared) = (blob("old a"), blob("old b"), blob("old shared"));
    let doc = chunk("batch-1", "old chunk");
    let in_a = [
        header("ws"),
        vec![old_a.clone(), shared.clone(), doc.clone()],
    ]
    .concat();
    let in_b = [header("ws"), vec![old_b.clone(), shared.clone()]].concat();
    push_flat(&dir.path().join("wa"), &url, "refs/heads/bridge/a", &in_a);
    push_flat(&dir.path().join("wb"), &url, "refs/heads/bridge/b", &in_b);

    // Read as before: the union of both branches, flat folders and all.
    let reader = remote(&url, "reader", &dir.path().join("cache-r"));
    let all: BTreeSet<String> = names(&in_a).union(&names(&in_b)).cloned().collect();
    assert_eq!(reader.list().unwrap(), all);
    for (name, bytes) in in_a.iter().chain(&in_b) {
        assert_eq!(&reader.read(name).unwrap(), bytes, "{name}");
    }

    // Slot a's writer continues under refs/bridge/a, from all its files,
    // fanned out; the old branch is left as it was.
    let before = ls_remote(&url);
    let writer = remote(&url, "a", &dir.path().join("cache-a"));
    let new_a = blob("new a");
    writer.put(std::slice::from_ref(&new_a)).unwrap();
    let after = ls_remote(&url);
    let oid = |refs: &[(String, String)], r: &str| {
        refs.iter().find(|(n, _)| n == r).map(|(_, o)| o.clone())
    };
    assert_eq!(
        oid(&after, "refs/heads/bridge/a"),
        oid(&before, "refs/heads/bridge/a")
    );
    let mut expected = names(&in_a);
    expected.insert(new_a.0.clone());
    assert_eq!(tree_paths(&repo, "refs/bridge/a"), expected);
    let raw = raw_tree_paths(&repo, "refs/bridge/a");
    assert!(
        !raw.contains(&new_a.0) && !raw.contains(&old_a.0),
        "{raw:?}"
    );
    assert!(raw.contains(&format!(
        "blobs/{}/{}",
        &old_a.0[6..8],
        old_a.0.trim_start_matches("blobs/")
    )));
    let mut all = all;
    all.insert(new_a.0.clone());
    assert_eq!(reader.list().unwrap(), all);

    // Compaction: a's branch (every kept file is under refs/bridge/a) is
    // deleted; b's (its writer never moved) is rewritten in place.
    let admin = remote(&url, "admin", &dir.path().join("cache-admin"));
    let left = admin.remove(&[old_a.0.clone(), shared.0.clone()]).unwrap();
    assert_eq!(left, 0);
    let refs: Vec<String> = ls_remote(&url).into_iter().map(|(r, _)| r).collect();
    assert_eq!(
        refs,
        ["refs/bridge/a", "refs/heads/bridge/b"],
        "a's old branch deleted"
    );
    let mut kept_b = names(&in_b);
    kept_b.remove(&shared.0);
    assert_eq!(tree_paths(&repo, "refs/heads/bridge/b"), kept_b);
    let fresh = remote(&url, "fresh", &dir.path().join("cache-f"));
    let listed = fresh.list().unwrap();
    for name in [&new_a.0, &doc.0, &old_b.0, &"FORMAT".to_owned()] {
        assert!(listed.contains(name), "{name} lost");
    }
    assert!(!listed.contains(&old_a.0) && !listed.contains(&shared.0));
}

#[test]
fn issue15_no_tree_of_a_store_of_3100_blobs_has_over_3000_entries() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("store.git");
    let url = bare_repo(&repo);
    let writer = remote(&url, "a", &dir.path().join("cache-a"));
    let mut files = header("ws");
    files.extend((0..3100).map(|i| blob(&format!("blob {i}"))));
    files.extend((0..50).map(|i| chunk("batch-1", &format!("chunk {i}"))));
    writer.put(&files).unwrap();
    let widest = widest_tree(&repo, "refs/bridge/a");
    // 3100 blobs over 256 folders: ~12 each; `blobs/` itself at most 256.
    assert!(widest <= 256, "widest tree: {widest} entries");
    assert!(raw_tree_paths(&repo, "refs/bridge/a").len() > 3100);
    let reader = remote(&url, "r", &dir.path().join("cache-r"));
    assert_eq!(reader.list().unwrap(), names(&files));
    let some: Vec<String> = files.iter().step_by(97).map(|(n, _)| n.clone()).collect();
    assert_eq!(reader.read_many(&some).unwrap().len(), some.len());
}

#[test]
fn issue15_a_file_over_max_object_is_refused_and_nothing_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let url = bare_repo(&dir.path().join("store.git"));
    let writer =
        remote(&url, "a", &dir.path().join("cache")).with_limits(bridge_store::GitLimits {
            max_object: 1 << 20,
            ..Default::default()
        });
    let big = big_blob((1 << 20) + 1, 1);
    let small = big_blob(1 << 20, 2);
    let e = writer
        .put(&[header("ws"), vec![small.clone(), big.clone()]].concat())
        .unwrap_err();
    match &e {
        RemoteError::ObjectTooLarge {
            name, size, limit, ..
        } => {
            assert_eq!((name, *size, *limit), (&big.0, (1 << 20) + 1, 1 << 20));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains(&big.0), "{e}");
    assert!(ls_remote(&url).is_empty());
    // At the limit is fine.
    writer.put(&[header("ws"), vec![small]].concat()).unwrap();
}

#[test]
fn issue15_a_put_over_max_push_is_split_into_several_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("store.git");
    let url = bare_repo(&repo);
    let limits = bridge_store::GitLimits {
        max_push: 1 << 20,
        ..Default::default()
    };
    let writer = remote(&url, "a", &dir.path().join("cache")).with_limits(limits);
    let files = [
        header("ws"),
        (1..=3).map(|i| big_blob(600 << 10, i)).collect(),
    ]
    .concat();
    writer.put(&files).unwrap();
    // header + one blob, then one blob per push: no push over 1 MB of files.
    assert_eq!(writer.push_stats().pushed, 3);
    let commits = git(&[
        "--git-dir",
        repo.to_str().unwrap(),
        "rev-list",
        "--count",
        "refs/bridge/a",
    ]);
    assert_eq!(commits.trim(), "3");
    let reader = remote(&url, "r", &dir.path().join("cache-r"));
    let wanted: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(reader.read_many(&wanted).unwrap(), files);
}

/// Installs `hook` (a shell script) as the bare repository's `name` hook.
fn install_hook(repo: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = repo.join("hooks").join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn issue15_remove_updates_at_most_refs_per_push_and_each_push_stands_alone() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("store.git");
    let url = bare_repo(&repo);
    let (shared, shared2) = (blob("shared"), blob("shared 2"));
    let mut own = Vec::new();
    for i in 0..7 {
        let w = remote(
            &url,
            &format!("s{i}"),
            &dir.path().join(format!("cache-{i}")),
        );
        let mine = blob(&format!("own {i}"));
        w.put(
            &[
                header("ws"),
                vec![mine.clone(), shared.clone(), shared2.clone()],
            ]
            .concat(),
        )
        .unwrap();
        own.push(mine);
    }
    // Every push from now on logs how many refs it updates.
    let log = dir.path().join("refs-per-push.log");
    install_hook(
        &repo,
        "pre-receive",
        &format!("wc -l >> '{}'", log.display()),
    );
    let limits = bridge_store::GitLimits {
        refs_per_push: 3,
        ..Default::default()
    };
    let admin = remote(&url, "admin", &dir.path().join("cache-admin")).with_limits(limits);
    assert_eq!(admin.remove(std::slice::from_ref(&shared.0)).unwrap(), 0);
    let counts: Vec<usize> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts, [3, 3, 1]);
    assert_eq!(admin.push_stats().pushed, 3);

    // The host refuses one ref of the second push: the call fails, and
    // every file is still held by some ref (the removed one, by the refs
    // not rewritten yet).
    install_hook(
        &repo,
        "update",
        "[ \"$1\" = refs/bridge/s4 ] && exit 1; exit 0",
    );
    let e = admin.remove(std::slice::from_ref(&shared2.0)).unwrap_err();
    assert!(
        matches!(&e, RemoteError::PushRejected { reference, .. } if reference == "refs/bridge/s4"),
        "{e:?}"
    );
    let fresh = remote(&url, "fresh", &dir.path().join("cache-f"));
    let listed = fresh.list().unwrap();
    for (name, _) in own.iter().chain(&header("ws")) {
        assert!(listed.contains(name), "{name} lost");
    }
    assert!(listed.contains(&shared2.0));
    assert!(!listed.contains(&shared.0));
    assert!(!tree_paths(&repo, "refs/bridge/s0").contains(&shared2.0));
    assert!(tree_paths(&repo, "refs/bridge/s6").contains(&shared2.0));
}

/// Issue 15: a host counts pushes (GitHub recommends 6 a minute per
/// repository), and every put to a git remote is a push. A sync of a large
/// submission (here 1,000 blobs, four times a default put batch) goes in
/// one push, not one per 256 files.
#[test]
fn a_sync_of_many_files_is_one_push() {
    let dir = tempfile::tempdir().unwrap();
    let url = bare_repo(&dir.path().join("store.git"));
    let replica = Replica::init(&dir.path().join("replica"), "ws").unwrap();
    let writer = remote(&url, "laptop", &dir.path().join("cache"));
    // The first sync makes the empty repository a store.
    sync(&replica, &writer, &mut |_| {}).unwrap();
    let before = writer.push_stats().pushed;
    for i in 0..1000 {
        replica
            .put_blob_bytes(format!("input {i}").as_bytes())
            .unwrap();
    }
    let report = sync(&replica, &writer, &mut |_| {}).unwrap();
    assert_eq!(report.pushed, 1000);
    assert_eq!(writer.push_stats().pushed - before, 1);
    // The bytes a put takes are still bounded, for a folder remote too.
    assert!(writer.put_batch().bytes < 1 << 30);
    assert_eq!(
        bridge_store::DirRemote::new(dir.path().join("dir")).put_batch(),
        bridge_store::PutBatch::DEFAULT
    );
}
