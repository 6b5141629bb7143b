//! Issue 12, items 3, 8 and 16: store files a flaky disk or a hostile
//! store damages. A damaged file of the local replica is repaired from the
//! remote's verified copy (and a done task is not run again); a symbolic
//! link inside a store is never followed (nothing is written or read
//! outside it); a 2 GB junk file in a store is never read into memory.
//! Issue 15: an output over a git remote's `max-object` is refused by the
//! worker, on a store kept in `refs/bridge/*` with fanned-out folders.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bridge_testutil::git::bare_repo;

use crate::harness::{Device, Run, dir_remote, files_under, temp_dir};

/// The task: appends a line to `counter` (outside every store) each time
/// it runs, and leaves an output file.
fn task_file(counter: &Path) -> String {
    format!(
        "tasks:\n  - name: once\n    run: sh -c 'echo ran >> {}; echo result-of-once > out.txt'\n    outputs: [out.txt]\n",
        counter.display()
    )
}

/// A device whose tasks run unsandboxed: [`task_file`]'s task counts its
/// runs in a file outside its own folder, which the sandbox (issue 13)
/// would refuse.
fn counting_device(name: &str) -> Device {
    let mut d = Device::new(name);
    d.set_env("BRIDGE_SANDBOX", "off");
    d
}

/// How many times the task ran.
fn runs(counter: &Path) -> usize {
    fs::read_to_string(counter).map_or(0, |t| t.lines().count())
}

/// Flips the first byte of `path`: its content no longer hashes to its name.
fn damage(path: &Path) {
    let mut bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes[0] ^= 0xff;
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The files of the replica under `folder/` (`chunks`, `snapshots`,
/// `blobs`), the roster's left out.
fn replica_files(device: &Device, folder: &str) -> Vec<PathBuf> {
    let dir = device.store().join(folder);
    if !dir.exists() {
        return Vec::new();
    }
    files_under(&dir)
        .into_iter()
        .filter(|p| !p.starts_with(dir.join("roster")))
        .collect()
}

/// The lines of `stderr` saying a file was repaired, one per file.
fn repaired_lines(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter(|l| l.contains("repaired "))
        .map(str::to_owned)
        .collect()
}

/// Drops the device's document cache, so the next command reads the
/// store files (a cache holds a document as verified earlier and would
/// hide damage that happened after it was written, as when the roster
/// changes and every cache is set aside).
fn drop_cache(device: &Device) {
    let _ = fs::remove_dir_all(device.path(".bridge/cache"));
}

/// Damages the done task's chunks, then its snapshot, then its output blob,
/// in the local replica; each time the next command repairs the file from
/// `remote`, says so once, and the task is never run again.
fn damaged_files_are_repaired(label: &str, remote: &str) {
    let admin = counting_device(label);
    admin.ok(&["init", "--remote", remote]);
    let counter = admin.scratch("runs");
    admin.write("t.yaml", &task_file(&counter));
    admin.ok(&["submit", "t.yaml"]);
    let submitted = replica_files(&admin, "chunks");
    admin.ok(&["work"]);
    assert_eq!(runs(&counter), 1);
    admin.ok(&["sync"]);

    // 1. Chunks: the chunks the worker wrote (its claim and its result)
    // damaged: the task looks pending again unless they are repaired.
    let chunks: Vec<PathBuf> = replica_files(&admin, "chunks")
        .into_iter()
        .filter(|c| !submitted.contains(c))
        .collect();
    assert!(!chunks.is_empty(), "the worker wrote chunk files");
    for c in &chunks {
        damage(c);
    }
    drop_cache(&admin);
    let work = admin.ok(&["work"]);
    assert_eq!(
        runs(&counter),
        1,
        "the done task ran again after its chunks were damaged: {}",
        work.stderr
    );
    let repaired = repaired_lines(&work);
    assert_eq!(
        repaired.len(),
        chunks.len(),
        "one warning per file: {}",
        work.stderr
    );
    for c in &chunks {
        let name = c.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert_eq!(
            repaired.iter().filter(|l| l.contains(name)).count(),
            1,
            "{name} named once: {}",
            work.stderr
        );
    }
    assert_eq!(admin.task("once").status, "done");
    let again = admin.ok(&["sync"]);
    assert!(
        repaired_lines(&again).is_empty(),
        "said once: {}",
        again.stderr
    );

    // 2. A snapshot: compact, then damage it.
    admin.ok(&["compact"]);
    let snapshots = replica_files(&admin, "snapshots");
    assert_eq!(snapshots.len(), 1, "one snapshot of the task's document");
    damage(&snapshots[0]);
    drop_cache(&admin);
    let work = admin.ok(&["work"]);
    assert_eq!(
        runs(&counter),
        1,
        "ran again after its snapshot was damaged"
    );
    let repaired = repaired_lines(&work);
    assert_eq!(repaired.len(), 1, "{}", work.stderr);
    assert!(repaired[0].contains("snapshots/"), "{}", repaired[0]);
    assert_eq!(admin.task("once").status, "done");

    // 3. The output blob (and the logs): the read that finds the damage
    // notes it, the next sync repairs it.
    let blobs = replica_files(&admin, "blobs");
    assert!(!blobs.is_empty(), "the task left blobs");
    for b in &blobs {
        damage(b);
    }
    let to = admin.scratch("outputs");
    let to_arg = to.to_str().expect("utf-8 path");
    let first = admin.run(&["outputs", "once", "--to", to_arg]);
    assert!(
        !to.join("out.txt").exists() || first.code != 0,
        "a damaged blob was handed out"
    );
    let sync = admin.ok(&["sync"]);
    let by_read = repaired_lines(&sync).len();
    assert!(
        by_read >= 1,
        "the blob `outputs` found damaged: {}",
        sync.stderr
    );
    admin.ok(&["outputs", "once", "--to", to_arg]);
    assert_eq!(
        fs::read_to_string(to.join("out.txt")).expect("the output arrived"),
        "result-of-once\n"
    );
    // The log blobs no command read: `sync --verify` finds them.
    let verify = admin.ok(&["sync", "--verify"]);
    assert_eq!(
        by_read + repaired_lines(&verify).len(),
        blobs.len(),
        "{}",
        verify.stderr
    );
    let verify = admin.ok(&["sync", "--verify"]);
    assert!(repaired_lines(&verify).is_empty(), "{}", verify.stderr);
    assert_eq!(runs(&counter), 1);
}

#[test]
fn issue12_item3_damaged_replica_files_are_repaired_from_a_dir_remote() {
    let shared = temp_dir("repair-dir");
    damaged_files_are_repaired("repair-dir", &dir_remote(shared.path()));
}

#[test]
fn issue12_item3_damaged_replica_files_are_repaired_from_a_git_remote() {
    let tmp = temp_dir("repair-git");
    let bare = tmp.path().join("store.git");
    bare_repo(&bare);
    damaged_files_are_repaired("repair-git", &format!("git:{}", bare.display()));
}

#[test]
fn issue12_item3_a_damaged_file_is_not_replaced_by_a_damaged_remote_copy() {
    let shared = temp_dir("repair-both");
    let remote = dir_remote(shared.path());
    let admin = counting_device("repair-both");
    admin.ok(&["init", "--remote", &remote]);
    let counter = admin.scratch("runs");
    admin.write("t.yaml", &task_file(&counter));
    admin.ok(&["submit", "t.yaml"]);
    admin.ok(&["work"]);
    admin.ok(&["sync"]);
    let chunks = replica_files(&admin, "chunks");
    for c in &chunks {
        damage(c);
        let rel = c.strip_prefix(admin.store()).expect("under the replica");
        damage(&shared.path().join(rel));
    }
    let local_before: Vec<Vec<u8>> = chunks.iter().map(|c| fs::read(c).expect("read")).collect();
    drop_cache(&admin);
    let sync = admin.ok(&["sync"]);
    assert!(repaired_lines(&sync).is_empty(), "{}", sync.stderr);
    assert!(
        sync.stderr.contains("damaged too"),
        "says the remote copy is damaged too: {}",
        sync.stderr
    );
    let local_after: Vec<Vec<u8>> = chunks.iter().map(|c| fs::read(c).expect("read")).collect();
    assert_eq!(local_before, local_after, "left in place, never replaced");
}

/// Runs `bridge ARGS` on `device` with its address space limited to
/// `limit_kib` (`ulimit -v`): a command that tried to read a file of
/// gigabytes into memory fails instead of growing.
fn run_limited(device: &Device, limit_kib: u64, args: &[&str]) -> Run {
    let inner = device.command_in(&device.dir, true, args);
    let mut cmd = Command::new("sh");
    // glibc reserves 64 MiB of address space per malloc arena (up to 8 per
    // CPU): two keep the bound about what bridge allocates (set below).
    cmd.arg("-c")
        .arg(format!("ulimit -v {limit_kib} && exec \"$0\" \"$@\""))
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear()
        .env("MALLOC_ARENA_MAX", "2");
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    if let Some(dir) = inner.get_current_dir() {
        cmd.current_dir(dir);
    }
    let out = cmd.output().expect("sh runs");
    Run {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A sparse file of `size` bytes (no disk space used).
fn sparse(path: &Path, size: u64) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create folder");
    }
    let f = fs::File::create(path).expect("create sparse file");
    f.set_len(size).expect("set_len");
}

const TWO_GB: u64 = 2 << 30;

#[test]
fn issue12_item16_a_2gb_junk_file_in_a_store_is_never_read() {
    let shared = temp_dir("junk");
    let remote = dir_remote(shared.path());
    let admin = counting_device("junk");
    admin.ok(&["init", "--remote", &remote]);
    let counter = admin.scratch("runs");
    admin.write("t.yaml", &task_file(&counter));
    admin.ok(&["submit", "t.yaml"]);
    admin.ok(&["sync"]);
    let doc = fs::read_dir(admin.store().join("chunks"))
        .expect("chunks")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|d| d != "roster")
        .expect("the batch's document");
    // Junk under valid store names, in the remote and in the replica.
    let h = |c: char| c.to_string().repeat(64);
    let junk = [
        shared.path().join(format!("blobs/{}.blob", h('a'))),
        shared.path().join(format!("chunks/{doc}/{}.chunk", h('b'))),
        shared
            .path()
            .join(format!("snapshots/{doc}/{}.snap", h('c'))),
        admin.store().join(format!("blobs/{}.blob", h('d'))),
        admin.store().join(format!("chunks/{doc}/{}.chunk", h('e'))),
    ];
    for j in &junk {
        sparse(j, TWO_GB);
    }
    // 1.5 GiB of address space: far below what reading one of them takes.
    let limit_kib = 1536 * 1024;
    let sync = run_limited(&admin, limit_kib, &["sync"]);
    assert_eq!(
        sync.code, 0,
        "sync within the memory bound: {}",
        sync.stderr
    );
    for j in &junk {
        let name = j.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let lines: Vec<&str> = sync.stderr.lines().filter(|l| l.contains(name)).collect();
        assert_eq!(lines.len(), 1, "one warning naming {name}: {}", sync.stderr);
        assert!(
            lines[0].contains(&TWO_GB.to_string()) && lines[0].contains("limit"),
            "the warning gives the size and the limit: {}",
            lines[0]
        );
        assert_eq!(
            fs::metadata(j).expect("never deleted").len(),
            TWO_GB,
            "left in place"
        );
    }
    // Nothing was copied either way.
    assert!(
        !admin
            .store()
            .join(format!("blobs/{}.blob", h('a')))
            .exists()
    );
    assert!(
        !shared
            .path()
            .join(format!("blobs/{}.blob", h('d')))
            .exists()
    );
    let status = run_limited(&admin, limit_kib, &["status", "--json"]);
    assert_eq!(
        status.code, 0,
        "status within the memory bound: {}",
        status.stderr
    );
    let work = run_limited(&admin, limit_kib, &["work"]);
    assert_eq!(
        work.code, 0,
        "work within the memory bound: {}",
        work.stderr
    );
    assert_eq!(runs(&counter), 1, "the real task still ran");
}

/// A symbolic link at `link` pointing to `target`.
fn symlink(target: &Path, link: &Path) {
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent).expect("create folder");
    }
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
}

#[test]
fn issue12_item8_symlinks_inside_a_store_are_never_followed() {
    let shared = temp_dir("links");
    let remote = dir_remote(shared.path());
    let admin = counting_device("links");
    admin.ok(&["init", "--remote", &remote]);
    admin.ok(&["sync"]);
    let outside = temp_dir("links-outside");
    let out_blobs = outside.path().join("remote-blobs");
    let out_doc = outside.path().join("remote-doc");
    let out_local_doc = outside.path().join("local-doc");
    let secret = outside.path().join("secret");
    for d in [&out_blobs, &out_doc, &out_local_doc] {
        fs::create_dir_all(d).expect("create outside folder");
    }
    fs::write(&secret, "not for the store").expect("write secret");
    let h = |c: char| c.to_string().repeat(64);
    // In the remote: its blobs folder, a document folder, a single file
    // and a link to /dev/zero.
    symlink(&out_blobs, &shared.path().join("blobs"));
    symlink(&out_doc, &shared.path().join("chunks/linkeddoc"));
    symlink(
        &secret,
        &shared
            .path()
            .join(format!("chunks/roster/{}.chunk", h('1'))),
    );
    symlink(
        Path::new("/dev/zero"),
        &shared
            .path()
            .join(format!("chunks/roster/{}.chunk", h('2'))),
    );
    // In the replica: a document folder and a link to /dev/zero.
    symlink(&out_local_doc, &admin.store().join("chunks/localdoc"));
    symlink(
        Path::new("/dev/zero"),
        &admin.store().join(format!("blobs/{}.blob", h('3'))),
    );

    let counter = admin.scratch("runs");
    admin.write("t.yaml", &task_file(&counter));
    admin.ok(&["submit", "t.yaml"]);
    let work = run_limited(&admin, 1536 * 1024, &["work"]);
    assert_eq!(work.code, 0, "{}", work.stderr);
    assert_eq!(runs(&counter), 1);
    let sync = admin.ok(&["sync"]);

    for d in [&out_blobs, &out_doc, &out_local_doc] {
        assert!(
            files_under(d).is_empty(),
            "nothing written through a link into {}",
            d.display()
        );
    }
    assert_eq!(
        fs::read_to_string(&secret).expect("secret"),
        "not for the store"
    );
    // The link's target was not copied into the replica.
    assert!(
        !admin
            .store()
            .join(format!("chunks/roster/{}.chunk", h('1')))
            .exists()
    );
    let links = [
        shared.path().join("blobs"),
        shared.path().join("chunks/linkeddoc"),
        shared
            .path()
            .join(format!("chunks/roster/{}.chunk", h('1'))),
        shared
            .path()
            .join(format!("chunks/roster/{}.chunk", h('2'))),
        admin.store().join("chunks/localdoc"),
        admin.store().join(format!("blobs/{}.blob", h('3'))),
    ];
    for run in [&work, &sync] {
        for link in &links {
            let named = format!("{}:", link.display());
            let lines = run
                .stderr
                .lines()
                .filter(|l| l.contains("symbolic link") && l.contains(&named))
                .count();
            assert_eq!(
                lines,
                1,
                "one warning about the link {}: {}",
                link.display(),
                run.stderr
            );
        }
    }
}

/// Issue 15, items 3 and 4, on a git remote: the store lives in
/// `refs/bridge/*` (no branch), its blobs in fan-out folders, and an output
/// over `[store] max-object` (1 MB here; GitHub's 100 MB by default) is not
/// stored: the attempt fails saying which task, which file, how large and
/// what to do, while its log and other output reach the remote, and the
/// next push goes through.
#[test]
fn issue15_an_output_over_max_object_fails_its_attempt_and_the_rest_is_pushed() {
    let tmp = temp_dir("maxobj");
    let bare = tmp.path().join("store.git");
    bridge_testutil::git::git_in(
        None,
        &["init", "--bare", "-q", bare.to_str().expect("utf-8")],
    );
    let d = counting_device("maxobj");
    d.ok(&["init", "--remote", &format!("git:{}", bare.display())]);
    let config = fs::read_to_string(d.path("bridge.toml")).expect("bridge.toml");
    assert!(config.contains("[store]\n"), "{config}");
    d.write(
        "bridge.toml",
        &config.replace("[store]\n", "[store]\nmax-object = \"1MB\"\n"),
    );
    d.write(
        "big.yaml",
        "tasks:\n  - name: big\n    run: head -c 2000000 /dev/zero > big.bin; echo small > small.txt; echo made\n    outputs: [big.bin, small.txt]\n",
    );
    d.ok(&["submit", "big.yaml"]);
    d.run(&["work"]);
    d.ok(&["sync"]);
    let task = d.task("big");
    let shown = d.show(&task.id);
    let attempt = &shown["attempts"][0];
    assert_eq!(attempt["outcome"], "error", "{shown}");
    let message = attempt["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("output big.bin of task big is 2000000 bytes")
            && message.contains("write it in parts"),
        "{message}"
    );
    assert!(
        attempt["outputs"].get("small.txt").is_some()
            && attempt["outputs"].get("big.bin").is_none(),
        "{shown}"
    );
    // On the remote: one ref, not a branch; no file over 1 MB; blobs in
    // fan-out folders.
    let refs = bridge_testutil::git::git_in(
        None,
        &[
            "--git-dir",
            bare.to_str().expect("utf-8"),
            "for-each-ref",
            "--format=%(refname)",
        ],
    );
    assert!(
        refs.lines().all(|r| r.starts_with("refs/bridge/")) && !refs.is_empty(),
        "{refs}"
    );
    let tree = bridge_testutil::git::git_in(
        None,
        &[
            "--git-dir",
            bare.to_str().expect("utf-8"),
            "ls-tree",
            "-r",
            "-l",
            refs.lines().next().expect("a ref"),
        ],
    );
    for line in tree.lines() {
        let (meta, path) = line.split_once('\t').expect("an entry");
        let size: u64 = meta
            .split_whitespace()
            .nth(3)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(size <= 1_000_000, "{path}: {size} bytes");
        if path.starts_with("blobs/") {
            assert_eq!(path.split('/').count(), 3, "{path} not fanned out");
        }
    }
    assert!(tree.contains("blobs/"), "{tree}");
}
