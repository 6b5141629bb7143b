//! Security: the store (a shared folder) is untrusted. Every chunk and blob
//! is signed by its writer and encrypted to the roster epoch's data key, and
//! a file that fails any check is skipped with one warning naming it, left in
//! place, while everything else loads and runs.
//!
//! These tests damage, forge and replay real store files, some of them built
//! with the crates directly (`bridge_crypto`, `bridge_model`, `automerge`) the
//! way an attacker with the store (or a dishonest member) would, and then
//! watch what real `bridge` processes make of them.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use automerge::AutoCommit;
use bridge_crypto::envelope::MAGIC as ENVELOPE_MAGIC;
use bridge_crypto::{
    Domain, Epoch, Expect, ExposeSecret, Header, Identity, Member, MemberId, PublicKey, Role,
    Roster, member_tag,
};
use bridge_model::{TaskId, TaskSpec, WriterId};
use serde_json::json;
use sha2::{Digest, Sha256};

use bridge_testutil::forge::{
    age_encrypt, chunk_header, forge_plaintext, frame, header_json, new_batch, new_batch_at,
    now_ms, put_chunk, raw_plaintext, sha256_hex, signature, unframe, writer_for,
};
use bridge_testutil::spec::shell_task;

use crate::harness::{Device, Run, dir_remote, files_under, temp_dir};

// ---------------------------------------------------------------------------
// Helpers: store files, identities, rosters and forged envelopes.
// ---------------------------------------------------------------------------

/// `len` bytes that look random, the same for the same `seed`.
fn pseudo_random(len: usize, seed: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            &Sha256::new()
                .chain_update(seed.as_bytes())
                .chain_update(i.to_be_bytes())
                .finalize(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// The chunk files of `doc` in `store`.
fn chunks_of(store: &Path, doc: &str) -> Vec<PathBuf> {
    files_under(&store.join("chunks").join(doc))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "chunk"))
        .collect()
}

/// The one chunk file of `doc` in `store`.
fn only_chunk(store: &Path, doc: &str) -> PathBuf {
    let chunks = chunks_of(store, doc);
    assert_eq!(chunks.len(), 1, "one chunk expected in {doc}: {chunks:?}");
    chunks.into_iter().next().expect("one chunk")
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_else(|| panic!("no file name in {}", p.display()))
        .to_owned()
}

/// `<doc>/<file>` of a chunk path: how it is named in a warning, and unique
/// even when the same file name sits in two documents' folders.
fn chunk_ref(p: &Path) -> String {
    let doc = p.parent().map(file_name).unwrap_or_default();
    format!("{doc}/{}", file_name(p))
}

/// Asserts `run` printed exactly one line naming `what`, a warning holding
/// every one of `words`.
fn assert_one_warning(run: &Run, what: &str, words: &[&str]) {
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(what)).collect();
    assert_eq!(
        lines.len(),
        1,
        "`bridge {}`: expected exactly one line naming {what}, stderr:\n{}",
        run.args.join(" "),
        run.stderr
    );
    let line = lines[0];
    assert!(line.contains("WARN"), "not a warning: {line}");
    for w in words {
        assert!(
            line.contains(w),
            "the warning about {what} lacks `{w}`: {line}"
        );
    }
}

/// The files and their bytes, to check later that nothing was changed.
fn snapshot(paths: &[&Path]) -> Vec<(PathBuf, Vec<u8>)> {
    paths
        .iter()
        .map(|p| {
            let bytes = fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p.to_path_buf(), bytes)
        })
        .collect()
}

fn assert_unchanged(files: &[(PathBuf, Vec<u8>)]) {
    for (p, bytes) in files {
        let now = fs::read(p).unwrap_or_else(|e| panic!("{} is gone: {e}", p.display()));
        assert!(&now == bytes, "{} was changed", p.display());
    }
}

/// The sorted names of the tasks `d` lists.
fn task_names(d: &Device) -> Vec<String> {
    let mut names: Vec<String> = d.ls().into_iter().map(|t| t.name).collect();
    names.sort();
    names
}

fn names(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// The document holding task `task` (single-document batches).
fn doc_of(d: &Device, task: &str) -> String {
    format!("{}.0000", d.task(task).batch)
}

/// `bridge whoami --json` member id.
pub(crate) fn member_of(d: &Device) -> String {
    d.ok(&["whoami", "--json"]).json()["member"]
        .as_str()
        .expect("whoami prints a member id")
        .to_owned()
}

/// The identity in a file as `bridge keygen` writes it (comment lines, then
/// the secret line).
pub(crate) fn identity_in(path: &Path) -> Identity {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    Identity::parse(line).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The secret line of a device's identity file.
fn secret_in(path: &Path) -> String {
    identity_in(path).to_secret().expose_secret().to_owned()
}

/// The roster in `store`, as `reader` verifies it from the pinned `root`.
pub(crate) fn roster_in(store: &Path, reader: &Identity, workspace: &str, root: &str) -> Roster {
    let files: Vec<(String, Vec<u8>)> = chunks_of(store, "roster")
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).expect("read a roster file");
            (format!("chunks/roster/{}", file_name(&p)), bytes)
        })
        .collect();
    let root: MemberId = root.parse().expect("a member id");
    Roster::verify(&files, reader, workspace, &root)
        .unwrap_or_else(|e| panic!("cannot verify the roster: {e}"))
        .0
}

/// What a leaked runner key can do although `bridge submit` refuses it (a
/// modified binary): put a batch of its own, properly signed with its key,
/// into the runner's replica; the next sync pushes it.
fn submit_as_worker(r: &Device, secret: &str, root: &str, name: &str, script: &str) {
    let me = Identity::parse(secret).expect("a runner identity");
    let workspace = r.status().workspace;
    let roster = roster_in(&r.store(), &me, &workspace, root);
    let writer = writer_for(me.member_id());
    let (doc, change) = new_batch(&writer, shell_task(name, script));
    let header = chunk_header(
        &workspace,
        &doc,
        roster.latest().number,
        me.member_id(),
        vec![writer.to_string()],
    );
    let sealed = age_encrypt(
        &roster.data_recipient().expect("a data key"),
        &forge_plaintext(&header, &me, &frame(&[change])),
    );
    put_chunk(&r.store(), &doc, &sealed);
}

/// A chunk's header and its changes.
type ChunkParts = (Header, Vec<Vec<u8>>);

/// Document `doc` of `store`, decrypted with every data key of `roster`:
/// the chunks' headers and the whole document.
fn decrypt_doc(store: &Path, doc: &str, roster: &Roster) -> (Vec<ChunkParts>, AutoCommit) {
    let keys = roster.data_identities();
    let mut chunks = Vec::new();
    let mut all = Vec::new();
    for p in chunks_of(store, doc) {
        let bytes = fs::read(&p).expect("read a chunk");
        let opened = bridge_crypto::open_with(&keys, &bytes)
            .unwrap_or_else(|e| panic!("a member cannot open {}: {e}", p.display()));
        let changes = unframe(&opened.payload).expect("a genuine chunk is well framed");
        all.extend(changes.iter().flatten().copied());
        chunks.push((opened.header, changes));
    }
    let mut am = AutoCommit::new();
    am.load_incremental(&all).expect("the changes load");
    (chunks, am)
}

/// A change by `writer` to a loaded document, cancelling `task` under
/// `writer`'s own key (a fact that counts when `writer` may submit).
fn cancel_change(doc: &mut AutoCommit, writer: &WriterId, task: &TaskId) -> Vec<u8> {
    let mut doc = doc.fork();
    doc.set_actor(writer.actor());
    bridge_model::doc::put_cancel(&mut doc, task, writer, now_ms()).expect("put a cancel");
    bridge_model::doc::commit(&mut doc, now_ms(), "cancel").expect("a change");
    doc.get_last_local_change()
        .expect("the cancel change")
        .raw_bytes()
        .to_vec()
}

/// Whether any file under `dir` is named `name`.
fn any_file_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect()
}

/// A workspace on `a` with a folder remote; returns the remote's folder
/// and spec.
fn shared_workspace(a: &Device, label: &str) -> (tempfile::TempDir, String) {
    let shared = temp_dir(label);
    let remote = dir_remote(shared.path());
    a.ok(&["init", "--remote", &remote]);
    (shared, remote)
}

// ---------------------------------------------------------------------------
// 1. Damaged files.
// ---------------------------------------------------------------------------

#[test]
fn damaged_chunks_and_blobs_are_skipped_with_one_warning_each_and_left_in_place() {
    let d = Device::new("sec-rot");
    let (shared, _remote) = shared_workspace(&d, "sec-rot-pool");
    for name in [
        "flipped",
        "truncated",
        "truncated-renamed",
        "random-neighbour",
        "intact",
    ] {
        d.ok(&["submit", "--offline", "--name", name, "--", "echo", name]);
    }
    d.write("in.txt", "the input\n");
    d.ok(&[
        "submit",
        "--offline",
        "--name",
        "with-input",
        "--input",
        "in.txt",
        "--",
        "cat",
        "in.txt",
    ]);
    let store = d.store();
    let flipped = only_chunk(&store, &doc_of(&d, "flipped"));
    let truncated = only_chunk(&store, &doc_of(&d, "truncated"));
    let renamed_src = only_chunk(&store, &doc_of(&d, "truncated-renamed"));
    let neighbour_doc = doc_of(&d, "random-neighbour");
    let blob_id = d.show("with-input")["spec"]["inputs"][0]["blob"]
        .as_str()
        .expect("the input's blob")
        .to_owned();
    let blob = store.join("blobs").join(format!("{blob_id}.blob"));
    assert!(blob.is_file(), "{} exists", blob.display());

    // A flipped byte: the name no longer matches.
    let mut bytes = fs::read(&flipped).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&flipped, &bytes).expect("write");
    // Truncated in place: the name no longer matches either.
    let bytes = fs::read(&truncated).expect("read");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    // Truncated and stored under its new sha256: intact by name, but the age
    // stream is cut short.
    let bytes = fs::read(&renamed_src).expect("read");
    fs::remove_file(&renamed_src).expect("move the chunk away");
    let renamed = put_chunk(
        &store,
        &doc_of_path(&renamed_src),
        &bytes[..bytes.len() - 20],
    );
    // Random bytes under their sha256 name, next to a good chunk.
    let random = put_chunk(
        &store,
        &neighbour_doc,
        &pseudo_random(300, "random-neighbour"),
    );
    // A flipped byte in a blob.
    let mut bytes = fs::read(&blob).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&blob, &bytes).expect("write");
    let before = snapshot(&[&flipped, &truncated, &renamed, &random, &blob]);

    // This device's cache of verified documents already holds what the
    // damaged chunks held; a device reading them anew must refuse them.
    // Drop the cache to be that device.
    fs::remove_dir_all(d.path(".bridge/cache")).expect("remove the cache");
    let run = d.ok(&["status"]);
    assert_one_warning(&run, &chunk_ref(&flipped), &["corrupt", "left in place"]);
    assert_one_warning(&run, &chunk_ref(&truncated), &["corrupt", "left in place"]);
    assert_one_warning(
        &run,
        &chunk_ref(&renamed),
        &["refused", "decrypted", "left in place"],
    );
    assert_one_warning(&run, &chunk_ref(&random), &["refused", "left in place"]);
    assert_eq!(
        task_names(&d),
        names(&["intact", "random-neighbour", "with-input"])
    );

    // The good tasks run; the one whose input blob is damaged fails, saying
    // which blob.
    let work = d.run(&["work", "--offline"]).expect_code(3);
    assert!(work.stderr.contains("2 done, 1 failed"), "{}", work.stderr);
    assert_eq!(d.task("intact").status, "done");
    assert_eq!(d.task("random-neighbour").status, "done");
    let show = d.show("with-input");
    assert_eq!(show["status"], "failed", "{show}");
    let message = show["attempts"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&blob_id),
        "the failure names the blob: {show}"
    );

    // A sync names the damaged blob and does not spread it (nor the chunks
    // whose names no longer match).
    let sync = d.ok(&["sync"]);
    assert!(sync.stderr.contains(&blob_id), "{}", sync.stderr);
    let pushed: BTreeSet<String> = files_under(shared.path())
        .iter()
        .map(|p| file_name(p))
        .collect();
    for damaged in [&flipped, &truncated, &blob] {
        assert!(
            !pushed.contains(&file_name(damaged)),
            "{} reached the remote",
            damaged.display()
        );
    }
    assert_unchanged(&before);
}

/// The document folder of a chunk path.
fn doc_of_path(chunk: &Path) -> String {
    chunk.parent().map(file_name).expect("a chunk has a folder")
}

// ---------------------------------------------------------------------------
// 2. and 3. Files from outside the roster.
// ---------------------------------------------------------------------------

#[test]
fn a_chunk_sealed_by_a_stranger_to_its_own_key_is_refused() {
    let d = Device::new("sec-key");
    d.ok(&["init"]);
    d.ok(&["submit", "--name", "genuine", "--", "echo", "genuine"]);
    let workspace = d.status().workspace;
    let doc = doc_of(&d, "genuine");

    let stranger = Identity::generate().expect("an identity");
    let writer = writer_for(stranger.member_id());
    let (_, change) = new_batch(&writer, shell_task("stranger", "echo stranger"));
    let header = chunk_header(
        &workspace,
        &doc,
        0,
        stranger.member_id(),
        vec![writer.to_string()],
    );
    let sealed = bridge_crypto::seal(
        &stranger,
        &[stranger.public().recipient().clone()],
        &header,
        &frame(&[change]),
    )
    .expect("seal");
    let path = put_chunk(&d.store(), &doc, &sealed);
    let before = snapshot(&[&path]);

    let run = d.ok(&["status"]);
    assert_one_warning(&run, &chunk_ref(&path), &["refused", "not encrypted to"]);
    assert_eq!(task_names(&d), names(&["genuine"]));
    d.ok(&["work"]);
    assert_eq!(d.task("genuine").status, "done");
    assert_unchanged(&before);
}

#[test]
fn a_non_member_who_knows_a_public_key_cannot_write_as_that_member() {
    let a = Device::new("sec-victim");
    let (shared, _remote) = shared_workspace(&a, "sec-victim-pool");
    a.ok(&["submit", "--name", "genuine", "--", "echo", "genuine"]);
    let workspace = a.status().workspace;
    // What anyone who saw `bridge members ls` knows: the public key.
    let listed = a.ok(&["members", "ls", "--json"]).json();
    let key: PublicKey = listed["members"][0]["public_key"]
        .as_str()
        .expect("a public key")
        .parse()
        .expect("a bridge public key");
    let victim = key.member_id();
    let attacker = Identity::generate().expect("an identity");
    let marker_dir = temp_dir("sec-forged-marker");
    let marker = marker_dir.path().join("forged-ran");

    // A new batch whose task would touch the marker, by an actor carrying the
    // victim's tag, the header naming the victim, signed by the attacker and
    // encrypted to the victim's public recipient.
    let writer = writer_for(&victim);
    let (doc, change) = new_batch(
        &writer,
        shell_task("forged", &format!("touch {}", marker.display())),
    );
    let header = chunk_header(&workspace, &doc, 0, &victim, vec![writer.to_string()]);
    let chunk = put_chunk(
        shared.path(),
        &doc,
        &age_encrypt(
            key.recipient(),
            &forge_plaintext(&header, &attacker, &frame(&[change])),
        ),
    );

    // A rival genesis of the roster making the attacker an admin, claiming
    // the victim (the root) signed it. Sealed to the victim's key, which is
    // what roster files are decrypted with.
    let data_key = age::x25519::Identity::generate()
        .to_string()
        .expose_secret()
        .to_owned();
    let epoch = Epoch {
        workspace: workspace.clone(),
        number: 0,
        prev: None,
        members: vec![
            Member {
                name: "sec-victim".to_owned(),
                key: key.clone(),
                role: Role::Admin,
            },
            Member {
                name: "intruder".to_owned(),
                key: attacker.public(),
                role: Role::Admin,
            },
        ],
        removed: Vec::new(),
        naming_key: "ab".repeat(32),
        data_key,
        signer: victim.clone(),
        created_at: now_ms(),
    };
    let roster_header = Header {
        domain: Domain::Roster,
        workspace: workspace.clone(),
        document: String::new(),
        epoch: 0,
        writer: victim.clone(),
        actors: Vec::new(),
        sha256: String::new(),
    };
    let roster_file = put_chunk(
        shared.path(),
        "roster",
        &age_encrypt(
            key.recipient(),
            &forge_plaintext(&roster_header, &attacker, &epoch.canonical_bytes()),
        ),
    );
    let before = snapshot(&[&chunk, &roster_file]);

    a.ok(&["sync"]);
    let local_chunk = a.store().join("chunks").join(&doc).join(file_name(&chunk));
    assert!(local_chunk.is_file(), "the sync pulled the forged chunk");
    let run = a.ok(&["status"]);
    assert_one_warning(&run, &chunk_ref(&chunk), &["refused", "not encrypted to"]);
    assert_one_warning(
        &run,
        &file_name(&roster_file),
        &["roster", "signature does not verify"],
    );
    assert_eq!(task_names(&a), names(&["genuine"]));
    let members = a.ok(&["members", "ls", "--json"]).json();
    assert_eq!(
        members["members"].as_array().map(Vec::len),
        Some(1),
        "{members}"
    );
    a.ok(&["work"]);
    assert_eq!(a.task("genuine").status, "done");
    assert!(!marker.exists(), "the forged task ran");
    assert_unchanged(&before);
}

// ---------------------------------------------------------------------------
// 4. A worker-role runner.
// ---------------------------------------------------------------------------

#[test]
fn a_runner_can_work_but_its_own_tasks_are_untrusted_and_never_run() {
    let a = Device::new("sec-admin");
    let (_shared, remote) = shared_workspace(&a, "sec-runner-pool");
    let root = member_of(&a);
    let secret = a
        .ok(&["members", "add-runner", "r1"])
        .stdout
        .trim()
        .to_owned();
    assert!(secret.starts_with("BRIDGE-IDENTITY-1:"), "{secret}");
    let mut r = Device::new("r1");
    r.set_env("BRIDGE_IDENTITY", &secret);
    r.ok(&["join", &remote, "--root", &root]);

    // The runner submits a task: it is stored and synced, but no one may run it.
    let marker_dir = temp_dir("sec-untrusted-marker");
    let marker = marker_dir.path().join("untrusted-ran");
    let script = format!("touch untrusted-ran; touch {}", marker.display());
    let refused = r
        .run(&["submit", "--name", "from-runner", "--", "sh", "-c", &script])
        .expect_code(1);
    assert!(refused.stderr.contains("worker role"), "{}", refused.stderr);
    // A leaked key in a modified binary writes the batch anyway.
    submit_as_worker(&r, &secret, &root, "from-runner", &script);
    r.ok(&["sync"]);
    a.ok(&["sync"]);
    let status = a.ok(&["status", "--json"]).json();
    assert_eq!(status["counts"]["untrusted"], 1, "{status}");
    assert_eq!(status["tasks"], 1, "{status}");
    assert_eq!(a.task("from-runner").status, "untrusted");
    a.ok(&["work"]);
    r.ok(&["work"]);
    a.ok(&["sync"]);
    assert_eq!(a.task("from-runner").status, "untrusted");
    assert_eq!(r.task("from-runner").status, "untrusted");
    assert!(!marker.exists(), "the untrusted task ran");
    for dev in [&a, &r] {
        let found = any_file_named(dev.root_dir(), "untrusted-ran");
        assert!(found.is_empty(), "the untrusted task ran: {found:?}");
    }

    // The admin's task: the runner runs it and the admin accepts the result.
    a.ok(&[
        "submit",
        "--name",
        "from-admin",
        "--output",
        "result.txt",
        "--",
        "sh",
        "-c",
        "echo by-the-runner > result.txt",
    ]);
    let work = r.ok(&["work"]);
    assert!(work.stderr.contains("1 done, 0 failed"), "{}", work.stderr);
    a.ok(&["sync"]);
    assert_eq!(a.task("from-admin").status, "done");
    let got = a.scratch("got");
    a.ok(&[
        "outputs",
        "from-admin",
        "--to",
        got.to_str().expect("utf-8"),
    ]);
    let text = fs::read_to_string(got.join("result.txt")).expect("the runner's output");
    assert_eq!(text.trim(), "by-the-runner");
    assert_eq!(a.task("from-runner").status, "untrusted");
}

// ---------------------------------------------------------------------------
// 5. A removed member.
// ---------------------------------------------------------------------------

#[test]
fn a_removed_members_later_chunks_are_refused_and_it_cannot_read_new_ones() {
    let a = Device::new("sec-a");
    let b = Device::new("sec-b");
    let (_shared, remote) = shared_workspace(&a, "sec-removal-pool");
    b.join_as(&a, &remote, "submit");
    b.ok(&["submit", "--name", "b-early", "--", "echo", "early"]);
    a.ok(&["sync"]);
    assert_eq!(a.task("b-early").status, "pending");

    let removed = a.ok(&["members", "remove", "sec-b"]);
    assert!(
        removed.stdout.contains("Removed sec-b"),
        "{}",
        removed.stdout
    );

    // B has not synced since: it still thinks it is a member.
    b.ok(&[
        "submit",
        "--offline",
        "--name",
        "b-late",
        "--",
        "echo",
        "late",
    ]);
    let late = only_chunk(&b.store(), &doc_of(&b, "b-late"));
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    let on_a = a
        .store()
        .join("chunks")
        .join(doc_of_path(&late))
        .join(file_name(&late));
    assert!(on_a.is_file(), "the sync brought B's late chunk to A");
    let before = snapshot(&[&on_a]);
    let run = a.ok(&["status"]);
    assert_one_warning(&run, &chunk_ref(&late), &["refused", "sec-b", "removed"]);
    assert_eq!(task_names(&a), names(&["b-early"]));
    // B's earlier task stays valid, but no device runs a removed member's
    // tasks any more, not even one lent to every member (issue 13, item
    // 2): `members` means the roster's current members.
    a.set_run_tasks_from(&["members"]);
    a.ok(&["work"]);
    let left = a.show("b-early");
    assert_eq!(left["status"], "pending", "{left}");
    assert_eq!(left["left_for_others"]["submitter"], "sec-b", "{left}");
    // A current member who submits the same task vouches for it: it runs.
    a.ok(&["submit", "--name", "b-early", "--", "echo", "early"]);
    a.ok(&["work"]);
    assert_eq!(a.task("b-early").status, "done");

    // What A writes from now on is encrypted without B.
    a.ok(&["submit", "--name", "a-after", "--", "echo", "after"]);
    let after = only_chunk(&a.store(), &doc_of(&a, "a-after"));
    b.ok(&["sync"]);
    let run = b.ok(&["status"]);
    assert_one_warning(&run, &chunk_ref(&after), &["refused", "not encrypted to"]);
    assert!(!task_names(&b).contains(&"a-after".to_owned()));

    // A member added later sees the accepted early task, not the late one.
    let c = Device::new("sec-c");
    c.join_as(&a, &remote, "submit");
    assert_eq!(task_names(&c), names(&["a-after", "b-early"]));
    assert_eq!(c.task("b-early").status, "done");
    assert_unchanged(&before);
}

// ---------------------------------------------------------------------------
// 6. Replays.
// ---------------------------------------------------------------------------

#[test]
fn replayed_chunks_from_another_document_or_workspace_are_refused() {
    let a = Device::new("sec-w1");
    let (pool1, _) = shared_workspace(&a, "sec-w1-pool");
    a.ok(&["submit", "--name", "x", "--", "echo", "x"]);
    a.ok(&["submit", "--name", "y", "--", "echo", "y"]);
    let (doc_x, doc_y) = (doc_of(&a, "x"), doc_of(&a, "y"));

    // The same file, copied into another document's folder of the same store.
    let x_chunk = only_chunk(pool1.path(), &doc_x);
    let bytes = fs::read(&x_chunk).expect("read");
    let replay = put_chunk(pool1.path(), &doc_y, &bytes);
    assert_eq!(file_name(&replay), file_name(&x_chunk));
    a.ok(&["sync"]);
    let run = a.ok(&["status"]);
    assert_one_warning(
        &run,
        &chunk_ref(&replay),
        &["refused", "belongs to document", &doc_x],
    );
    assert_eq!(task_names(&a), names(&["x", "y"]));

    // A file of workspace W1 in the store of workspace W2.
    let d = Device::new("sec-w2");
    let (pool2, _) = shared_workspace(&d, "sec-w2-pool");
    d.ok(&["submit", "--name", "w2", "--", "echo", "w2"]);
    let doc_w2 = doc_of(&d, "w2");
    let foreign_same_doc = put_chunk(pool2.path(), &doc_x, &bytes);
    let foreign_other_doc = put_chunk(pool2.path(), &doc_w2, &bytes);
    // W1's roster too: not encrypted to W2's members, so it is ignored.
    for r in chunks_of(pool1.path(), "roster") {
        put_chunk(pool2.path(), "roster", &fs::read(&r).expect("read"));
    }
    let before = snapshot(&[&replay, &foreign_same_doc, &foreign_other_doc]);
    d.ok(&["sync"]);
    let run = d.ok(&["status"]);
    assert_one_warning(
        &run,
        &chunk_ref(&foreign_same_doc),
        &["refused", "not encrypted to"],
    );
    assert_one_warning(
        &run,
        &chunk_ref(&foreign_other_doc),
        &["refused", "not encrypted to"],
    );
    assert_eq!(task_names(&d), names(&["w2"]));
    let members = d.ok(&["members", "ls", "--json"]).json();
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1));

    // Both workspaces still work.
    d.ok(&["work"]);
    assert_eq!(d.task("w2").status, "done");
    a.ok(&["work"]);
    assert_eq!(a.task("x").status, "done");
    assert_eq!(a.task("y").status, "done");
    assert_unchanged(&before);
}

// ---------------------------------------------------------------------------
// 7. Actors bound to their signers.
// ---------------------------------------------------------------------------

#[test]
fn a_member_cannot_sign_changes_made_under_another_members_actor() {
    let a = Device::new("sec-owner");
    let b = Device::new("sec-mallory");
    let c = Device::new("sec-reader");
    let (shared, remote) = shared_workspace(&a, "sec-actor-pool");
    b.join_as(&a, &remote, "submit");
    c.join_as(&a, &remote, "submit");
    a.ok(&["submit", "--name", "a-task", "--", "echo", "a"]);
    b.ok(&["sync"]);
    let task: TaskId = a.task("a-task").id.parse().expect("a task id");
    let doc = doc_of(&b, "a-task");
    let workspace = b.status().workspace;
    let root = member_of(&a);

    // What B holds as a member: its identity, the roster, the data keys.
    let mallory = identity_in(&b.identity_file());
    let roster = roster_in(&b.store(), &mallory, &workspace, &root);
    let epoch = roster.latest().number;
    let data = roster.data_recipient().expect("a data key");
    let (chunks, mut am) = decrypt_doc(&b.store(), &doc, &roster);
    assert_eq!(chunks.len(), 1, "one genuine chunk");
    let (a_header, a_changes) = &chunks[0];
    let a_member = a_header.writer.clone();
    assert_eq!(a_member.as_str(), root);
    let a_actor = a_header.actors[0].clone();
    let a_writer: WriterId = a_actor.parse().expect("a writer id");
    let seal_as_b = |actors: Vec<String>, changes: &[Vec<u8>]| {
        let header = chunk_header(&workspace, &doc, epoch, mallory.member_id(), actors);
        bridge_crypto::seal(
            &mallory,
            std::slice::from_ref(&data),
            &header,
            &frame(changes),
        )
        .expect("seal")
    };

    // (1) A's own change bytes, re-signed by B, declaring A's actor.
    let resigned = put_chunk(
        shared.path(),
        &doc,
        &seal_as_b(vec![a_actor.clone()], a_changes),
    );
    // (2) A new change under A's actor (cancelling A's task as A, an admin),
    // signed by B and declaring A's actor.
    let as_a = cancel_change(&mut am, &a_writer, &task);
    let new_as_a = put_chunk(
        shared.path(),
        &doc,
        &seal_as_b(vec![a_actor.clone()], std::slice::from_ref(&as_a)),
    );
    // (3) The same change with a header that names A as its writer, signed
    // by B: the signature does not verify with A's key.
    let header = chunk_header(&workspace, &doc, epoch, &a_member, vec![a_actor.clone()]);
    let claimed_a = put_chunk(
        shared.path(),
        &doc,
        &age_encrypt(&data, &forge_plaintext(&header, &mallory, &frame(&[as_a]))),
    );
    // (4) A change under an actor with B's own tag that the header does not
    // declare.
    let b_writer = writer_for(mallory.member_id());
    let undeclared = put_chunk(
        shared.path(),
        &doc,
        &seal_as_b(Vec::new(), &[cancel_change(&mut am, &b_writer, &task)]),
    );
    // (5) Control: B's own actor, declared, in a new batch: accepted, which
    // shows the chunks above are refused for what they claim, not for how
    // they were built.
    let b_writer2 = writer_for(mallory.member_id());
    let (control_doc, control) = new_batch(&b_writer2, shell_task("b-control", "echo control"));
    let header = chunk_header(
        &workspace,
        &control_doc,
        epoch,
        mallory.member_id(),
        vec![b_writer2.to_string()],
    );
    let control_chunk = put_chunk(
        shared.path(),
        &control_doc,
        &bridge_crypto::seal(
            &mallory,
            std::slice::from_ref(&data),
            &header,
            &frame(&[control]),
        )
        .expect("seal"),
    );
    let before = snapshot(&[
        &resigned,
        &new_as_a,
        &claimed_a,
        &undeclared,
        &control_chunk,
    ]);

    c.ok(&["sync"]);
    let run = c.ok(&["status"]);
    assert_one_warning(
        &run,
        &chunk_ref(&resigned),
        &["refused", &a_actor, "not bound to its signer sec-mallory"],
    );
    assert_one_warning(
        &run,
        &chunk_ref(&new_as_a),
        &["refused", &a_actor, "not bound to its signer sec-mallory"],
    );
    assert_one_warning(&run, &chunk_ref(&claimed_a), &["refused", "signature"]);
    assert_one_warning(
        &run,
        &chunk_ref(&undeclared),
        &["refused", b_writer.as_str(), "did not declare"],
    );
    assert!(
        !run.stderr.contains(&file_name(&control_chunk)),
        "the control chunk was refused:\n{}",
        run.stderr
    );
    assert_eq!(task_names(&c), names(&["a-task", "b-control"]));
    assert_eq!(
        c.task("a-task").status,
        "pending",
        "a forged cancel counted"
    );
    assert_eq!(c.task("b-control").status, "pending");
    // A, who already holds its own change, refuses them too.
    a.ok(&["sync"]);
    let run = a.ok(&["status"]);
    assert_one_warning(&run, &chunk_ref(&new_as_a), &["not bound to its signer"]);
    assert_eq!(a.task("a-task").status, "pending");
    assert_unchanged(&before);
}

// ---------------------------------------------------------------------------
// 8. Nothing readable in the store.
// ---------------------------------------------------------------------------

#[test]
fn no_plaintext_reaches_the_store_or_the_replica() {
    // Member names that would stand out in a roster file.
    let a = Device::new("sec-Member-Alpha-q7");
    let b = Device::new("sec-Member-Beta-q7");
    let (shared, remote) = shared_workspace(&a, "sec-plain-pool");
    b.join_as(&a, &remote, "submit");

    // Markers in the name, command, environment and input; the stdout,
    // stderr and output markers are computed by the shell, so they exist
    // only in the logs and the output.
    a.write("in.txt", "MARKER-input-7f3a\n");
    a.ok(&[
        "submit",
        "--name",
        "MARKER-name-7f3a",
        "--env",
        "MARKER_VAR=MARKER-env-7f3a",
        "--input",
        "in.txt",
        "--output",
        "out.txt",
        "--",
        "sh",
        "-c",
        "echo MARKER-cmd-7f3a >/dev/null; echo MARKER-out-$((6+1))f3a; \
         echo MARKER-err-$((6+1))f3a >&2; echo MARKER-file-$((6+1))f3a > out.txt; \
         cat in.txt >> out.txt; echo $MARKER_VAR >> out.txt",
    ]);
    let work = a.ok(&["work"]);
    assert!(work.stderr.contains("1 done, 0 failed"), "{}", work.stderr);
    a.ok(&["sync"]);
    b.ok(&["sync"]);

    // The markers are there for members to read.
    let logs = b.ok(&["logs", "MARKER-name-7f3a"]);
    let both = format!("{}{}", logs.stdout, logs.stderr);
    assert!(both.contains("MARKER-out-7f3a"), "{both}");
    assert!(both.contains("MARKER-err-7f3a"), "{both}");
    let got = b.scratch("got");
    b.ok(&[
        "outputs",
        "MARKER-name-7f3a",
        "--to",
        got.to_str().expect("utf-8"),
    ]);
    let out = fs::read_to_string(got.join("out.txt")).expect("the output");
    for m in ["MARKER-file-7f3a", "MARKER-input-7f3a", "MARKER-env-7f3a"] {
        assert!(out.contains(m), "{out}");
    }

    // But no byte of the store, nor of either replica, shows them.
    let needles: &[&[u8]] = &[
        b"MARKER",
        b"7f3a\n",
        b"Member-Alpha",
        b"Member-Beta",
        b"member-alpha",
        b"member-beta",
        b"echo ",
        b"AGE-SECRET-KEY",
        b"BRIDGE-IDENTITY",
    ];
    let mut checked = 0;
    for dir in [shared.path().to_path_buf(), a.store(), b.store()] {
        for file in files_under(&dir) {
            let path = file.to_string_lossy().into_owned();
            let rel = path.trim_start_matches(&*dir.to_string_lossy()).to_owned();
            assert!(!rel.contains("MARKER"), "a marker in a file name: {path}");
            let bytes = fs::read(&file).expect("read a store file");
            for needle in needles {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == *needle),
                    "{path} holds `{}` in clear",
                    String::from_utf8_lossy(needle)
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} files checked");
    // The roster files in particular hold no member name.
    let roster_files = chunks_of(shared.path(), "roster");
    assert!(roster_files.len() >= 2, "{roster_files:?}");
}

// ---------------------------------------------------------------------------
// 9. and 10. Key material.
// ---------------------------------------------------------------------------

/// The parts of a secret identity line that must never be printed.
fn secret_parts(secret: &str) -> Vec<String> {
    let mut parts = vec![secret.to_owned()];
    parts.extend(
        secret
            .split(':')
            .skip(1)
            .filter(|p| p.len() >= 20)
            .map(str::to_owned),
    );
    parts
}

fn assert_no_secret(run: &Run, secrets: &[String]) {
    for s in secrets {
        for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            assert!(
                !text.contains(s.as_str()),
                "`bridge {}` printed key material on {stream}",
                run.args.join(" ")
            );
        }
    }
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            // (The prefix `BRIDGE-IDENTITY-1:` alone is no secret: errors name it.)
            !text.contains("AGE-SECRET-KEY"),
            "`bridge {}` printed an age secret key on {stream}",
            run.args.join(" ")
        );
    }
}

/// `secret` with the character at `at` replaced by another of its kind.
fn corrupt(secret: &str, at: usize) -> String {
    let mut chars: Vec<char> = secret.chars().collect();
    chars[at] = match chars[at] {
        'q' => 'p',
        'A' => 'B',
        c if c.is_ascii_digit() => {
            if c == '0' {
                '1'
            } else {
                '0'
            }
        }
        _ => 'q',
    };
    chars.into_iter().collect()
}

#[test]
fn key_material_never_reaches_the_output() {
    let a = Device::new("sec-keys");
    let (_shared, remote) = shared_workspace(&a, "sec-keys-pool");
    let admin_secret = secret_in(&a.identity_file());
    let root = member_of(&a);
    let runner_secret = a
        .ok(&["members", "add-runner", "r1"])
        .stdout
        .trim()
        .to_owned();
    let mut r = Device::new("sec-keys-runner");
    r.set_env("BRIDGE_IDENTITY", &runner_secret);
    r.ok(&["join", &remote, "--root", &root]);

    let mut secrets = secret_parts(&admin_secret);
    secrets.extend(secret_parts(&runner_secret));
    let debug = [("BRIDGE_LOG", "debug")];
    let trace = [("BRIDGE_LOG", "trace")];
    a.ok(&["submit", "-vv", "--name", "t", "--", "echo", "t"]);
    let mut runs = Vec::new();
    for (dev, env) in [(&a, &debug[..]), (&r, &debug[..]), (&r, &trace[..])] {
        for args in [
            &["-vv", "status", "--json"][..],
            &["-vv", "ls", "--json"],
            &["-vv", "whoami", "--json"],
            &["-vv", "members", "ls", "--json"],
            &["-vv", "sync", "--json"],
            &["-vv", "show", "t", "--json"],
            &["status"],
            &["sync"],
        ] {
            runs.push(dev.run_env(env, args).expect_code(0));
        }
    }
    runs.push(r.run_env(&debug, &["-vv", "work"]).expect_code(0));
    runs.push(
        // Refused (a worker key cannot submit), with nothing secret said.
        r.run_env(&debug, &["-vv", "submit", "--name", "u", "--", "true"])
            .expect_code(1),
    );
    runs.push(
        a.run_env(&debug, &["-vv", "members", "add", "--help"])
            .expect_code(0),
    );
    // Adding a runner prints its secret on stdout (once, by design) and
    // nothing else anywhere.
    let add = a
        .run_env(&debug, &["-vv", "members", "add-runner", "r2"])
        .expect_code(0);
    let r2_secret = add.stdout.trim().to_owned();
    assert!(
        r2_secret.starts_with("BRIDGE-IDENTITY-1:"),
        "{}",
        add.stdout
    );
    assert_eq!(add.stdout.lines().count(), 1, "{}", add.stdout);
    let mut others = secrets.clone();
    others.push("AGE-SECRET-KEY".to_owned());
    others.extend(secret_parts(&r2_secret));
    for s in &others {
        assert!(
            !add.stderr.contains(s.as_str()),
            "add-runner printed key material on stderr"
        );
    }
    runs.push(a.run_env(&debug, &["-vv", "keygen"]).expect_code(1));
    let regen = a
        .run_env(&debug, &["-vv", "keygen", "--json", "--force"])
        .expect_code(0);
    // The replaced identity's new secret is in the file, and only there.
    secrets.extend(secret_parts(&secret_in(&a.identity_file())));
    runs.push(regen);
    for run in &runs {
        assert_no_secret(run, &secrets);
    }

    // Broken identities: the error names the variable, never its value.
    let age_at = runner_secret.find("AGE-SECRET-KEY-1").expect("an age key") + 20;
    let seed_at = runner_secret.rfind(':').expect("three fields") + 5;
    for (what, bad) in [
        ("age key", corrupt(&runner_secret, age_at)),
        ("seed", corrupt(&runner_secret, seed_at)),
        (
            "prefix",
            runner_secret.replacen("BRIDGE-IDENTITY-1", "BRIDGE-IDENTITY-2", 1),
        ),
        (
            "truncated",
            runner_secret[..runner_secret.len() - 3].to_owned(),
        ),
    ] {
        assert_ne!(bad, runner_secret);
        let mut all = secrets.clone();
        all.extend(secret_parts(&bad));
        for args in [&["-vv", "status"][..], &["whoami"], &["-vv", "sync"]] {
            let run = r.run_env(&[("BRIDGE_IDENTITY", &bad), ("BRIDGE_LOG", "debug")], args);
            if what == "seed" {
                // Another valid ed25519 seed: an identity that reads with
                // the runner's age key but is no member; reading works.
                assert!(
                    run.code == 0 || run.stderr.contains("Error"),
                    "{what}: {run:?}"
                );
            } else {
                assert_eq!(run.code, 1, "{what}: {run:?}");
                assert!(
                    run.stderr.contains("BRIDGE_IDENTITY"),
                    "{what}: {}",
                    run.stderr
                );
            }
            assert_no_secret(&run, &all);
        }
    }
    let run = r.run_env(&[("BRIDGE_IDENTITY", "")], &["status"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("BRIDGE_IDENTITY"), "{}", run.stderr);
}

#[test]
fn on_github_actions_the_identity_is_masked_before_anything_is_printed() {
    let a = Device::new("sec-mask");
    let (_shared, remote) = shared_workspace(&a, "sec-mask-pool");
    let root = member_of(&a);
    let secret = a
        .ok(&["members", "add-runner", "ci"])
        .stdout
        .trim()
        .to_owned();
    let mut r = Device::new("sec-mask-runner");
    r.set_env("BRIDGE_IDENTITY", &secret);
    r.ok(&["join", &remote, "--root", &root]);
    let mask = format!("::add-mask::{secret}");
    let gh = [("GITHUB_ACTIONS", "true")];

    for (args, code) in [
        (&["status"][..], 0),
        (&["status", "--json"], 0),
        (&["ls"], 0),
        (&["whoami", "--json"], 0),
        (&["sync"], 0),
        (&["work"], 0),
        (&["frobnicate"], 2),
        (&["--version"], 0),
    ] {
        let run = r.run_env(&gh, args).expect_code(code);
        assert_eq!(
            run.stdout.lines().next(),
            Some(mask.as_str()),
            "`bridge {}`: the first line of stdout is not the mask:\n{}",
            args.join(" "),
            run.stdout
        );
        assert_eq!(run.stdout.matches("::add-mask::").count(), 1);
        assert!(!run.stderr.contains(&secret), "the secret on stderr");
    }
    // A value with surrounding whitespace is masked as the runner sees it.
    let run = r
        .run_env(
            &[
                ("GITHUB_ACTIONS", "true"),
                ("BRIDGE_IDENTITY", &format!("  {secret}\n")),
            ],
            &["status"],
        )
        .expect_code(0);
    assert_eq!(
        run.stdout.lines().next(),
        Some(mask.as_str()),
        "{}",
        run.stdout
    );
    // A broken value is masked too, before the error.
    let bad = corrupt(&secret, secret.len() - 4);
    let run = r.run_env(
        &[("GITHUB_ACTIONS", "true"), ("BRIDGE_IDENTITY", &bad)],
        &["status"],
    );
    assert_eq!(
        run.stdout.lines().next(),
        Some(format!("::add-mask::{bad}").as_str()),
        "{}",
        run.stdout
    );
    // Off GitHub Actions (or with the identity in a file) nothing is added.
    let run = r
        .run_env(&[("GITHUB_ACTIONS", "false")], &["status"])
        .expect_code(0);
    assert!(!run.stdout.contains("::add-mask::"), "{}", run.stdout);
    let run = a.run_env(&gh, &["status"]).expect_code(0);
    assert!(!run.stdout.contains("::add-mask::"), "{}", run.stdout);
}

#[test]
fn identity_files_are_readable_by_their_owner_only() {
    let mode = |d: &Device| {
        fs::metadata(d.identity_file())
            .expect("the identity file exists")
            .permissions()
            .mode()
            & 0o777
    };
    let d = Device::new("sec-mode");
    d.ok(&["keygen"]);
    assert_eq!(mode(&d), 0o600, "after keygen");
    d.ok(&["keygen", "--force"]);
    assert_eq!(mode(&d), 0o600, "after keygen --force");

    // Under a umask that would leave a new file world-writable.
    let e = Device::new("sec-umask");
    let mut cmd = e.command_in(&e.dir, true, &[]);
    cmd.arg("keygen");
    let sh = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .current_dir(&e.dir)
        .output()
        .expect("run sh");
    assert!(sh.status.success(), "{sh:?}");
    assert_eq!(mode(&e), 0o600, "after keygen under umask 000");

    // `bridge init` makes one when the device has none.
    let f = Device::new("sec-initkey");
    f.ok(&["init"]);
    assert_eq!(mode(&f), 0o600, "after init");
}

// ---------------------------------------------------------------------------
// 11. The corpus of bad envelopes in tests/fixtures/envelopes.
// ---------------------------------------------------------------------------

/// The workspace every fixture names.
const FIXTURE_WS: &str = "ws-f1f1f1f1f1f1f1f1f1f1f1f1";
/// The document every chunk fixture names (but `wrong-document.age`).
const FIXTURE_DOC: &str = "0000019000000000f1f1f1f1f1f1f1f1.0000";

/// How far a fixture gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// `open` fails: age or the envelope's own shape.
    Open,
    /// `open` works, `open_verified` fails: the header against the roster,
    /// the signature.
    Verify,
    /// Both work: only bridge's chunk reader refuses it.
    Chunk,
}

struct Fixture {
    file: &'static str,
    what: &'static str,
    stage: Stage,
    /// Part of the error when the TEST identity opens it (and of the warning
    /// in a store where it is encrypted to the data key).
    error: &'static str,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        file: "empty.bin",
        what: "an empty file",
        stage: Stage::Open,
        error: "could not be decrypted",
    },
    Fixture {
        file: "random.bin",
        what: "512 random bytes",
        stage: Stage::Open,
        error: "could not be decrypted",
    },
    Fixture {
        file: "age-garbage-plaintext.age",
        what: "a valid age file (to TEST) whose plaintext is random bytes, not an envelope",
        stage: Stage::Open,
        error: "not a bridge envelope",
    },
    Fixture {
        file: "age-header-cut.age",
        what: "a valid envelope's age file cut to its first 40 bytes, inside the age header",
        stage: Stage::Open,
        error: "could not be decrypted",
    },
    Fixture {
        file: "age-payload-cut.age",
        what: "a valid envelope's age file without its last 20 bytes (STREAM cut short)",
        stage: Stage::Open,
        error: "could not be decrypted",
    },
    Fixture {
        file: "age-payload-flipped.age",
        what: "a valid envelope's age file with one payload byte flipped (tag mismatch)",
        stage: Stage::Open,
        error: "could not be decrypted",
    },
    Fixture {
        file: "wrong-recipient.age",
        what: "a valid envelope signed by TEST but encrypted to another key only",
        stage: Stage::Open,
        error: "not encrypted to",
    },
    Fixture {
        file: "header-length-huge.age",
        what: "an envelope whose header length field is 0xFFFFFFFF",
        stage: Stage::Open,
        error: "larger than 64 KiB",
    },
    Fixture {
        file: "header-not-json.age",
        what: "an envelope whose (signed) header is not JSON",
        stage: Stage::Open,
        error: "not JSON",
    },
    Fixture {
        file: "header-unknown-field.age",
        what: "an envelope whose signed header has an extra field `extra`",
        stage: Stage::Open,
        error: "not JSON of the expected shape",
    },
    Fixture {
        file: "signature-cut.age",
        what: "an envelope that ends 20 bytes into its signature",
        stage: Stage::Open,
        error: "truncated",
    },
    Fixture {
        file: "payload-hash-mismatch.age",
        what: "a signed header whose sha256 is not the payload's",
        stage: Stage::Open,
        error: "does not match the hash",
    },
    Fixture {
        file: "signature-flipped.age",
        what: "a valid chunk envelope by TEST with one signature byte flipped",
        stage: Stage::Verify,
        error: "signature",
    },
    Fixture {
        file: "writer-forged.age",
        what: "a chunk whose header names TEST as writer, signed by another key",
        stage: Stage::Verify,
        error: "signature",
    },
    Fixture {
        file: "blob-as-chunk.age",
        what: "a valid blob envelope by TEST, where a chunk is expected",
        stage: Stage::Verify,
        error: "expected a chunk file, found a blob file",
    },
    Fixture {
        file: "wrong-workspace.age",
        what: "a valid chunk by TEST naming another workspace",
        stage: Stage::Verify,
        error: "belongs to workspace",
    },
    Fixture {
        file: "wrong-document.age",
        what: "a valid chunk by TEST naming another document",
        stage: Stage::Verify,
        error: "belongs to document",
    },
    Fixture {
        file: "unknown-epoch.age",
        what: "a valid chunk by TEST naming roster epoch 9, which does not exist",
        stage: Stage::Verify,
        error: "roster epoch 9",
    },
    Fixture {
        file: "writer-not-member.age",
        what: "a valid chunk signed by (and naming) a key that is not in the roster",
        stage: Stage::Verify,
        error: "not a member",
    },
    Fixture {
        file: "chunk-bad-framing.age",
        what: "a valid, signed chunk by TEST whose payload framing is cut short",
        stage: Stage::Chunk,
        error: "framing",
    },
];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/envelopes")
}

/// The committed TEST identity (a test-only key).
fn test_identity() -> Identity {
    identity_in(&fixtures_dir().join("TEST-IDENTITY"))
}

/// The age half of an identity, from its secret line.
fn age_half(identity: &Identity) -> age::x25519::Identity {
    let secret = identity.to_secret();
    secret
        .expose_secret()
        .split(':')
        .nth(1)
        .expect("three fields")
        .parse()
        .expect("an age secret key")
}

/// A small genuine Automerge change by `actor`.
fn small_change(actor: &WriterId) -> Vec<u8> {
    use automerge::transaction::Transactable;
    let mut doc = AutoCommit::new().with_actor(actor.actor());
    doc.put(automerge::ROOT, "fixture", 1).expect("put");
    bridge_model::doc::commit(&mut doc, 1_700_000_000_000, "fixture").expect("a change");
    doc.get_last_local_change()
        .expect("a change")
        .raw_bytes()
        .to_vec()
}

/// Builds fixture `file`, signed by `test` (or by `other` where it says so).
fn build_fixture(file: &str, test: &Identity, other: &Identity) -> Vec<u8> {
    let me = test.member_id().clone();
    let to_test = |plaintext: &[u8]| age_encrypt(test.public().recipient(), plaintext);
    let actor = WriterId::new(1_700_000_000_000, member_tag(&me), [7; 8]);
    let payload = frame(&[small_change(&actor)]);
    let base = chunk_header(FIXTURE_WS, FIXTURE_DOC, 0, &me, vec![actor.to_string()]);
    let valid = || forge_plaintext(&base, test, &payload);
    match file {
        "empty.bin" => Vec::new(),
        "random.bin" => pseudo_random(512, file),
        "age-garbage-plaintext.age" => to_test(&pseudo_random(200, file)),
        "age-header-cut.age" => to_test(&valid())[..40].to_vec(),
        "age-payload-cut.age" => {
            let f = to_test(&valid());
            f[..f.len() - 20].to_vec()
        }
        "age-payload-flipped.age" => {
            let mut f = to_test(&valid());
            let at = f.len() - 10;
            f[at] ^= 0x01;
            f
        }
        "wrong-recipient.age" => age_encrypt(other.public().recipient(), &valid()),
        "header-length-huge.age" => {
            let mut p = ENVELOPE_MAGIC.to_vec();
            p.extend_from_slice(&u32::MAX.to_be_bytes());
            p.extend_from_slice(b"{}");
            p.extend_from_slice(&[0u8; 64]);
            to_test(&p)
        }
        "header-not-json.age" => {
            let json = b"{\"domain\": chunk, this is not JSON";
            to_test(&raw_plaintext(json, &signature(test, json), &payload))
        }
        "header-unknown-field.age" => {
            let mut v: serde_json::Value =
                serde_json::from_slice(&header_json(&base, &payload)).expect("json");
            v["extra"] = json!(true);
            let json = serde_json::to_vec(&v).expect("json");
            to_test(&raw_plaintext(&json, &signature(test, &json), &payload))
        }
        "signature-cut.age" => {
            let json = header_json(&base, &payload);
            let mut p = raw_plaintext(&json, &[], &[]);
            p.extend_from_slice(&signature(test, &json)[..20]);
            to_test(&p)
        }
        "payload-hash-mismatch.age" => {
            let mut h = base.clone();
            h.sha256 = sha256_hex(b"another payload");
            to_test(&forge_plaintext(&h, test, &payload))
        }
        "signature-flipped.age" => {
            let json = header_json(&base, &payload);
            let mut sig = signature(test, &json);
            sig[10] ^= 0x01;
            to_test(&raw_plaintext(&json, &sig, &payload))
        }
        "writer-forged.age" => to_test(&forge_plaintext(&base, other, &payload)),
        "blob-as-chunk.age" => {
            let h = Header {
                domain: Domain::Blob,
                document: String::new(),
                actors: Vec::new(),
                ..base.clone()
            };
            to_test(&forge_plaintext(&h, test, b"blob content"))
        }
        "wrong-workspace.age" => {
            let h = Header {
                workspace: "ws-0000000000000000000000ff".to_owned(),
                ..base.clone()
            };
            to_test(&forge_plaintext(&h, test, &payload))
        }
        "wrong-document.age" => {
            let h = Header {
                document: "0000019000000000baadbaadbaadbaad.0000".to_owned(),
                ..base.clone()
            };
            to_test(&forge_plaintext(&h, test, &payload))
        }
        "unknown-epoch.age" => {
            let h = Header {
                epoch: 9,
                ..base.clone()
            };
            to_test(&forge_plaintext(&h, test, &payload))
        }
        "writer-not-member.age" => {
            let theirs = WriterId::new(1_700_000_000_000, member_tag(other.member_id()), [8; 8]);
            let h = chunk_header(
                FIXTURE_WS,
                FIXTURE_DOC,
                0,
                other.member_id(),
                vec![theirs.to_string()],
            );
            to_test(&forge_plaintext(
                &h,
                other,
                &frame(&[small_change(&theirs)]),
            ))
        }
        "chunk-bad-framing.age" => {
            let cut = &payload[..payload.len() - 5];
            to_test(&forge_plaintext(&base, test, cut))
        }
        other => panic!("no recipe for fixture {other}"),
    }
}

/// Rewrites the corpus (and its README). Run it by hand after changing the
/// envelope format:
/// `cargo test -p bridge-pool --test e2e -- --ignored regenerate_fixtures`.
#[test]
#[ignore = "rewrites tests/fixtures/envelopes"]
fn regenerate_fixtures() {
    let dir = fixtures_dir();
    fs::create_dir_all(&dir).expect("mkdir");
    let id_path = dir.join("TEST-IDENTITY");
    if !id_path.exists() {
        let id = Identity::generate().expect("an identity");
        fs::write(
            &id_path,
            format!(
                "# bridge TEST identity for tests/fixtures/envelopes: a test-only key, public on purpose.\n# Never use it for anything but these fixtures.\n{}\n",
                id.to_secret().expose_secret()
            ),
        )
        .expect("write TEST-IDENTITY");
    }
    let test = test_identity();
    // A key outside every roster; its secret is not needed again.
    let other = Identity::generate().expect("an identity");
    let mut readme = String::from(
        "# Bad envelopes\n\n\
         Store files that bridge must refuse without panicking, one warning each.\n\
         They are encrypted to (and, unless said otherwise, signed by) the test-only\n\
         identity in `TEST-IDENTITY`, for workspace `ws-f1f1f1f1f1f1f1f1f1f1f1f1`,\n\
         document `0000019000000000f1f1f1f1f1f1f1f1.0000`, roster epoch 0.\n\
         `tests/e2e/security.rs` checks them (`envelope_fixtures_*`) and rebuilds\n\
         them with `cargo test -p bridge-pool --test e2e -- --ignored regenerate_fixtures`.\n\n",
    );
    for f in FIXTURES {
        let bytes = build_fixture(f.file, &test, &other);
        assert!(bytes.len() < 4096, "{} is {} bytes", f.file, bytes.len());
        fs::write(dir.join(f.file), &bytes).expect("write a fixture");
        let stage = match f.stage {
            Stage::Open => "open fails",
            Stage::Verify => "open works, open_verified fails",
            Stage::Chunk => "open_verified works, bridge's chunk reader refuses it",
        };
        readme.push_str(&format!("- `{}`: {} ({stage}).\n", f.file, f.what));
    }
    readme.push_str("- `TEST-IDENTITY`: the test-only identity above (not a fixture).\n");
    fs::write(dir.join("README.md"), readme).expect("write README.md");
}

/// The fixtures on disk, checked against the table and the README.
fn read_fixtures() -> Vec<(&'static Fixture, Vec<u8>)> {
    let dir = fixtures_dir();
    let readme = fs::read_to_string(dir.join("README.md")).expect("README.md");
    let on_disk: BTreeSet<String> = files_under(&dir).iter().map(|p| file_name(p)).collect();
    let mut expected: BTreeSet<String> = FIXTURES.iter().map(|f| f.file.to_owned()).collect();
    expected.insert("README.md".to_owned());
    expected.insert("TEST-IDENTITY".to_owned());
    assert_eq!(on_disk, expected, "the corpus and the table disagree");
    FIXTURES
        .iter()
        .map(|f| {
            assert!(
                readme
                    .lines()
                    .any(|l| l.starts_with(&format!("- `{}`: ", f.file))),
                "README.md has no line for {}",
                f.file
            );
            let bytes = fs::read(dir.join(f.file)).expect("read a fixture");
            assert!(bytes.len() < 4096, "{} is too big", f.file);
            (f, bytes)
        })
        .collect()
}

#[test]
fn envelope_fixtures_are_refused_by_the_crypto_crate() {
    let test = test_identity();
    let (roster, _) = Roster::genesis(&test, "fixture-root", FIXTURE_WS, 0).expect("genesis");
    let expect = Expect {
        domain: Domain::Chunk,
        workspace: FIXTURE_WS,
        document: Some(FIXTURE_DOC),
    };
    for (f, bytes) in read_fixtures() {
        let name = format!("chunks/{FIXTURE_DOC}/{}", f.file);
        let opened = bridge_crypto::open(&test, &bytes);
        let verified = bridge_crypto::open_verified(&test, &roster, &bytes, &name, expect);
        match f.stage {
            Stage::Open => {
                let e = opened.expect_err(f.file).to_string();
                assert!(e.contains(f.error), "{}: {e}", f.file);
                assert!(verified.is_err(), "{}", f.file);
            }
            Stage::Verify => {
                assert!(opened.is_ok(), "{}: {:?}", f.file, opened.err());
                let e = verified.expect_err(f.file).to_string();
                assert!(e.contains(f.error), "{}: {e}", f.file);
            }
            Stage::Chunk => {
                let (opened, _) = verified.unwrap_or_else(|e| panic!("{}: {e}", f.file));
                assert!(unframe(&opened.payload).is_none(), "{}", f.file);
            }
        }
    }
    // Control: the recipe without its defect is accepted.
    let actor = WriterId::new(1_700_000_000_000, member_tag(test.member_id()), [7; 8]);
    let payload = frame(&[small_change(&actor)]);
    let header = chunk_header(
        FIXTURE_WS,
        FIXTURE_DOC,
        0,
        test.member_id(),
        vec![actor.to_string()],
    );
    let good = age_encrypt(
        test.public().recipient(),
        &forge_plaintext(&header, &test, &payload),
    );
    let (opened, member) = bridge_crypto::open_verified(&test, &roster, &good, "good", expect)
        .expect("the control envelope is valid");
    assert_eq!(member.id(), *test.member_id());
    assert_eq!(unframe(&opened.payload).map(|c| c.len()), Some(1));
}

#[test]
fn envelope_fixtures_in_a_real_store_are_skipped_with_one_warning_each() {
    // A workspace of the fixtures' own id, rooted in the TEST identity, so
    // that a fixture re-encrypted to its data key meets every later check.
    let test = test_identity();
    let mut f = Device::new("sec-fixtures");
    f.set_env("BRIDGE_IDENTITY", test.to_secret().expose_secret());
    let replica = bridge_store::Replica::init(&f.store(), FIXTURE_WS).expect("a replica");
    let (roster, genesis) =
        Roster::genesis(&test, "fixture-root", FIXTURE_WS, now_ms()).expect("genesis");
    replica
        .write_chunk("roster", &genesis)
        .expect("store the roster");
    f.write(
        "bridge.toml",
        &format!(
            "[workspace]\nid = \"{FIXTURE_WS}\"\nroot = \"{}\"\n",
            test.member_id()
        ),
    );
    f.ok(&["submit", "--name", "genuine", "--", "echo", "genuine"]);
    let doc = doc_of(&f, "genuine");
    let data = roster.data_recipient().expect("a data key");
    let test_age = age_half(&test);

    let mut placed: Vec<(PathBuf, &str)> = Vec::new();
    for (fx, bytes) in read_fixtures() {
        // As it is: encrypted to TEST's own key, not to the data key.
        placed.push((put_chunk(&f.store(), &doc, &bytes), "refused"));
        // Its plaintext re-encrypted to the workspace's data key.
        if let Ok(plaintext) = age::decrypt(&test_age, &bytes) {
            placed.push((
                put_chunk(&f.store(), FIXTURE_DOC, &age_encrypt(&data, &plaintext)),
                fx.error,
            ));
        } else {
            assert_eq!(fx.stage, Stage::Open, "{} does not decrypt", fx.file);
        }
    }
    assert!(placed.len() > 30, "{} files placed", placed.len());
    let paths: Vec<&Path> = placed.iter().map(|(p, _)| p.as_path()).collect();
    let before = snapshot(&paths);

    let run = f.ok(&["status"]);
    for (path, word) in &placed {
        assert_one_warning(&run, &chunk_ref(path), &["refused", word, "left in place"]);
    }
    assert_eq!(task_names(&f), names(&["genuine"]));
    f.ok(&["work"]);
    assert_eq!(f.task("genuine").status, "done");
    assert_unchanged(&before);
}

// ---------------------------------------------------------------------------
// Beyond signatures: what a member may do to what others wrote.
// ---------------------------------------------------------------------------

/// A map under `key` of `obj`.
fn map_at(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> automerge::ObjId {
    use automerge::ReadDoc;
    match doc.get(obj, key).expect("read the document") {
        Some((automerge::Value::Object(automerge::ObjType::Map), id)) => id,
        other => panic!("no map at {key}: {other:?}"),
    }
}

/// Makes one change to `doc` as `writer` and returns its bytes.
fn change_as(
    doc: &mut AutoCommit,
    writer: &WriterId,
    edit: impl FnOnce(&mut AutoCommit),
) -> Vec<u8> {
    let mut doc = doc.fork();
    doc.set_actor(writer.actor());
    edit(&mut doc);
    bridge_model::doc::commit(&mut doc, now_ms(), "edit").expect("a change");
    doc.get_last_local_change()
        .expect("the change")
        .raw_bytes()
        .to_vec()
}

/// A worker-role runner may claim tasks and report attempts, nothing more
/// (README, "Security model": it cannot submit, cancel or retry tasks, nor
/// write a fact under another writer's key). Here it signs, under its own
/// declared actor, changes that delete a task, rewrite a task's spec and
/// erase another writer's attempt: each chunk is valid as a file, so the
/// model must ignore these edits of keys the runner does not own.
#[test]
fn a_runner_cannot_delete_or_rewrite_tasks_and_results_it_does_not_own() {
    use automerge::transaction::Transactable;
    let a = Device::new("sec-boss");
    let (shared, remote) = shared_workspace(&a, "sec-erase-pool");
    let root = member_of(&a);
    let secret = a
        .ok(&["members", "add-runner", "r1"])
        .stdout
        .trim()
        .to_owned();
    let c = Device::new("sec-bystander");
    c.join_as(&a, &remote, "submit");
    a.ok(&["submit", "--name", "finished", "--", "echo", "finished"]);
    a.ok(&["work"]);
    a.ok(&["submit", "--name", "deleted", "--", "echo", "deleted"]);
    a.ok(&["submit", "--name", "respecced", "--", "echo", "respecced"]);
    let mut r = Device::new("sec-r1");
    r.set_env("BRIDGE_IDENTITY", &secret);
    r.ok(&["join", &remote, "--root", &root]);
    assert_eq!(task_names(&r), names(&["deleted", "finished", "respecced"]));

    let runner = Identity::parse(&secret).expect("the runner's identity");
    let workspace = r.status().workspace;
    let roster = roster_in(&r.store(), &runner, &workspace, &root);
    let data = roster.data_recipient().expect("a data key");
    let epoch = roster.latest().number;
    let put = |doc: &str, writer: &WriterId, change: Vec<u8>| {
        let header = chunk_header(
            &workspace,
            doc,
            epoch,
            runner.member_id(),
            vec![writer.to_string()],
        );
        let sealed = bridge_crypto::seal(
            &runner,
            std::slice::from_ref(&data),
            &header,
            &frame(&[change]),
        )
        .expect("seal");
        put_chunk(shared.path(), doc, &sealed)
    };

    // 1. Delete a task from its document.
    let doc = doc_of(&r, "deleted");
    let id = r.task("deleted").id;
    let (_, mut am) = decrypt_doc(&r.store(), &doc, &roster);
    let w = writer_for(runner.member_id());
    let change = change_as(&mut am, &w, |d| {
        let tasks = map_at(d, &automerge::ROOT, "tasks");
        d.delete(&tasks, id.as_str()).expect("delete");
    });
    put(&doc, &w, change);

    // 2. Overwrite a task's spec (with another task's, which no longer
    // hashes to the id).
    let doc = doc_of(&r, "respecced");
    let id = r.task("respecced").id;
    let (_, mut am) = decrypt_doc(&r.store(), &doc, &roster);
    let w = writer_for(runner.member_id());
    let change = change_as(&mut am, &w, |d| {
        let tasks = map_at(d, &automerge::ROOT, "tasks");
        let task = map_at(d, &tasks, id.as_str());
        let other = serde_json::to_string(&shell_task("other", "true")).expect("json");
        d.put(&task, "spec", other).expect("put");
    });
    put(&doc, &w, change);

    // 3. Erase the attempt another worker recorded.
    let doc = doc_of(&r, "finished");
    let id = r.task("finished").id;
    let (_, mut am) = decrypt_doc(&r.store(), &doc, &roster);
    let w = writer_for(runner.member_id());
    let change = change_as(&mut am, &w, |d| {
        use automerge::ReadDoc;
        let tasks = map_at(d, &automerge::ROOT, "tasks");
        let task = map_at(d, &tasks, id.as_str());
        let attempts = map_at(d, &task, "attempts");
        let keys: Vec<String> = d.keys(&attempts).collect();
        assert_eq!(keys.len(), 1, "one attempt");
        for k in keys {
            d.delete(&attempts, k.as_str()).expect("delete");
        }
    });
    put(&doc, &w, change);

    // Every edit reaches the bystander as a valid file (no warning about
    // the chunks), so only the model can ignore them.
    c.ok(&["sync"]);
    let run = c.ok(&["status"]);
    let listed = c.ls();
    let mut violations = Vec::new();
    for name in ["deleted", "respecced", "finished"] {
        if !listed.iter().any(|t| t.name == name) {
            violations.push(format!("task `{name}` vanished"));
        }
    }
    if let Some(t) = listed.iter().find(|t| t.name == "finished")
        && (t.status != "done" || t.attempts != 1)
    {
        violations.push(format!("the result of `finished` was erased: {t:?}"));
    }
    assert!(
        violations.is_empty(),
        "a worker-role runner changed what it does not own: {violations:?}\n`bridge status` said:\n{}",
        run.stderr
    );
}

/// Removing an admin starts a new epoch signed by another admin. The removed
/// admin, still an admin of the epoch before, signs a rival epoch of the same
/// number (here: adding an accomplice). Forks are settled by the lowest
/// hash, and the removed admin can try as many variants as it likes until
/// its own sorts first; the README promises that a removed member cannot
/// "have any file it signs later accepted".
#[test]
fn a_removed_admin_cannot_undo_its_removal_with_a_rival_epoch() {
    let a = Device::new("sec-root");
    let (shared, remote) = shared_workspace(&a, "sec-fork-pool");
    let b = Device::new("sec-rogue");
    b.join_as(&a, &remote, "admin");
    let c = Device::new("sec-witness");
    c.join_as(&a, &remote, "submit");
    b.ok(&["sync"]);
    let workspace = a.status().workspace;
    let root = member_of(&a);
    let rogue_id = member_of(&b);

    a.ok(&["members", "remove", "sec-rogue"]);
    // A's new epoch, as the test sees it (the rogue cannot read it; it would
    // grind for a hash with many leading zeros instead).
    let owner = identity_in(&a.identity_file());
    let removal = roster_in(&a.store(), &owner, &workspace, &root);
    let removal_hash = removal.latest().hash();
    assert_eq!(removal.latest().number, 3);

    // The rogue has not synced since the removal: from the epoch it knows,
    // it signs its own epoch 3, choosing the creation time so that it sorts
    // before the removal.
    let rogue = identity_in(&b.identity_file());
    let known = roster_in(&b.store(), &rogue, &workspace, &root);
    assert_eq!(known.latest().number, 2);
    let accomplice = Identity::generate().expect("an identity");
    let start = now_ms();
    let (forked, file) = (0..10_000)
        .map(|i| {
            let member = Member {
                name: "accomplice".to_owned(),
                key: accomplice.public(),
                role: Role::Admin,
            };
            known
                .add_member(&rogue, member, start + i)
                .expect("the rogue is an admin of epoch 2")
        })
        .find(|(r, _)| r.latest().hash() < removal_hash)
        .expect("a rival epoch that sorts first");
    put_chunk(&b.store(), "roster", &file);
    for older in forked.reseal_history().expect("reseal") {
        put_chunk(&b.store(), "roster", &older);
    }
    // The rogue goes on as a member: its submit pushes the rival epoch too.
    b.ok(&["submit", "--name", "after-removal", "--", "echo", "rogue"]);
    assert!(chunks_of(shared.path(), "roster").len() > 4);

    let mut violations = Vec::new();
    for dev in [&c, &a] {
        dev.ok(&["sync"]);
        let members = dev.ok(&["members", "ls", "--json"]);
        let json = members.json();
        let listed: Vec<String> = json["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| m["member"].as_str().expect("a member id").to_owned())
            .collect();
        if listed.contains(&rogue_id) {
            violations.push(format!("{}: the removed admin is a member again", dev.name));
        }
        if listed.contains(&accomplice.member_id().to_string()) {
            violations.push(format!("{}: the removed admin added a member", dev.name));
        }
        if task_names(dev).contains(&"after-removal".to_owned()) {
            violations.push(format!(
                "{}: a task the removed admin signed after its removal was accepted",
                dev.name
            ));
        }
        if let Some(fork) = members.stderr.lines().find(|l| l.contains("fork")) {
            violations.push(format!("{}: {}", dev.name, fork.trim()));
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

/// A task's identity covers the content hash of each input, not the blob
/// file that holds it. A runner (worker role: its own tasks never run) reads
/// an admin's task, and writes the same task (same id) in a batch of its own
/// dated earlier, pointing the input at a blob of its own. The merged task is
/// trusted (the admin submitted it); what a worker runs must still be the
/// admin's input, never the runner's.
#[test]
fn a_runner_cannot_swap_the_input_of_a_trusted_task() {
    let a = Device::new("sec-builder");
    let (shared, remote) = shared_workspace(&a, "sec-swap-pool");
    let root = member_of(&a);
    let secret = a
        .ok(&["members", "add-runner", "r1"])
        .stdout
        .trim()
        .to_owned();
    let marker_dir = temp_dir("sec-swap-marker");
    let marker = marker_dir.path().join("swapped-input-ran");
    a.write("build.sh", "echo genuine > result.txt\n");
    a.ok(&[
        "submit",
        "--name",
        "build",
        "--input",
        "build.sh",
        "--output",
        "result.txt",
        "--",
        "sh",
        "build.sh",
    ]);
    let mut r = Device::new("sec-swapper");
    r.set_env("BRIDGE_IDENTITY", &secret);
    r.ok(&["join", &remote, "--root", &root]);

    let runner = Identity::parse(&secret).expect("the runner's identity");
    let workspace = r.status().workspace;
    let roster = roster_in(&r.store(), &runner, &workspace, &root);
    let data = roster.data_recipient().expect("a data key");
    let epoch = roster.latest().number;
    // The runner's blob: a script of its own, validly signed by the runner.
    let evil = format!("touch {}; echo swapped > result.txt\n", marker.display());
    let blob_header = Header {
        domain: Domain::Blob,
        workspace: workspace.clone(),
        document: String::new(),
        epoch,
        writer: runner.member_id().clone(),
        actors: Vec::new(),
        sha256: String::new(),
    };
    let sealed = bridge_crypto::seal(
        &runner,
        std::slice::from_ref(&data),
        &blob_header,
        evil.as_bytes(),
    )
    .expect("seal a blob");
    let blob_id = sha256_hex(&sealed);
    let blobs = shared.path().join("blobs");
    fs::create_dir_all(&blobs).expect("mkdir");
    fs::write(blobs.join(format!("{blob_id}.blob")), &sealed).expect("write the blob");
    // The admin's task, word for word, but for the input's blob.
    let genuine: TaskSpec =
        serde_json::from_value(r.show("build")["spec"].clone()).expect("the admin's spec");
    let mut copy = genuine.clone();
    copy.inputs[0].blob = blob_id;
    assert_eq!(
        copy.id(),
        genuine.id(),
        "the blob is not part of the identity"
    );
    let w = writer_for(runner.member_id());
    let (doc, change) = new_batch_at(&w, copy, 1);
    let header = chunk_header(
        &workspace,
        &doc,
        epoch,
        runner.member_id(),
        vec![w.to_string()],
    );
    put_chunk(
        shared.path(),
        &doc,
        &bridge_crypto::seal(&runner, &[data], &header, &frame(&[change])).expect("seal"),
    );

    a.ok(&["sync"]);
    assert_eq!(a.task("build").status, "pending");
    a.ok(&["work"]);
    let got = a.scratch("got");
    a.ok(&["outputs", "build", "--to", got.to_str().expect("utf-8")]);
    let result = fs::read_to_string(got.join("result.txt")).expect("result.txt");
    assert!(
        !marker.exists() && result.trim() == "genuine",
        "a trusted task ran the runner's input instead of the admin's (result: {result:?}, marker: {})",
        marker.exists()
    );
}

/// What an untrusted writer names a task is shown to members, never obeyed:
/// a name holding terminal control sequences (erase the line, return to its
/// start, hide text) must not reach a member's terminal raw, or an untrusted
/// task could pass itself off as anything on `bridge ls`.
#[test]
fn untrusted_task_names_cannot_drive_the_terminal() {
    let a = Device::new("sec-viewer");
    let (_shared, remote) = shared_workspace(&a, "sec-escape-pool");
    let root = member_of(&a);
    let secret = a
        .ok(&["members", "add-runner", "r1"])
        .stdout
        .trim()
        .to_owned();
    let mut r = Device::new("sec-escaper");
    r.set_env("BRIDGE_IDENTITY", &secret);
    r.ok(&["join", &remote, "--root", &root]);
    let name = "deploy\u{1b}[2K\r\u{1b}[8mhidden\u{7}";
    submit_as_worker(&r, &secret, &root, name, "true");
    r.ok(&["sync"]);
    a.ok(&["sync"]);
    let id = a.ls()[0].id.clone();
    assert_eq!(a.task(name).status, "untrusted");
    let mut raw = Vec::new();
    for args in [&["ls"][..], &["status"], &["show", &id]] {
        let run = a.ok(args);
        let found: Vec<char> = run
            .stdout
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        if !found.is_empty() {
            raw.push(format!("`bridge {}` printed {found:?}", args.join(" ")));
        }
    }
    assert!(
        raw.is_empty(),
        "control characters from an untrusted task name reached the terminal: {raw:#?}"
    );
}
