//! The Kubernetes template (`workflows/kubernetes.yml`, issue 19, item 5):
//! its Indexed Job read as Kubernetes reads it, and each of its pods run
//! here as the kubelet would run it, without a cluster: the container's
//! command and arguments, byte for byte, with its environment (values, and
//! the Secret's keys through `secretKeyRef`), `JOB_COMPLETION_INDEX` set as
//! the Job controller sets it, and each volume's mount path mapped to a
//! folder of its own (the ConfigMap's holding the workspace's bridge.toml,
//! empty ones for the `emptyDir`s), `bridge` under test first on PATH as in
//! the image. A laptop submits to a bare git repository, every index of
//! the Job drains it at once, and the laptop sees every result once.
//!
//! The manifest's schema is checked by `.ci/run` (`kubernetes-validate
//! --strict`); this checks what a schema cannot: that the shard is the
//! completion index over `completions`, and that bridge's budget ends
//! before the Job's deadline.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{BRIDGE, laptop_on_bare_repo, results_once, temp_dir};

/// The template's documents, parsed.
pub(crate) fn manifest() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/kubernetes.yml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the template"))
}

/// The value of the container's variable `name` (a plain `value`).
fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no value for {name} in {container}"))
}

/// A duration as bridge writes it (`45m`, `1h`, `90s`), in seconds.
fn seconds(text: &str) -> u64 {
    let (number, unit) = text.split_at(text.len() - 1);
    let n: u64 = number.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("unexpected unit in {text:?}"),
    }
}

#[test]
fn the_job_shards_by_completion_index_within_its_deadline() {
    let docs = manifest();
    let job = &kind(&docs, "Job")["spec"];
    assert_eq!(job["completionMode"], "Indexed", "{job}");
    let completions = job["completions"].as_u64().expect("completions");
    let parallelism = job["parallelism"].as_u64().expect("parallelism");
    assert!(parallelism <= completions, "{job}");
    let container = &job["template"]["spec"]["containers"][0];
    assert_eq!(
        env_value(container, "BRIDGE_RUNNERS"),
        completions.to_string(),
        "BRIDGE_RUNNERS must be the Job's completions"
    );
    let script = container["args"][0].as_str().expect("the script");
    assert!(
        script.contains("--shard \"$JOB_COMPLETION_INDEX/$BRIDGE_RUNNERS\""),
        "{script}"
    );
    // bridge's budget (which keeps its last seconds for pushing) ends
    // before Kubernetes kills the pods.
    let budget = seconds(env_value(container, "BRIDGE_BUDGET"));
    let deadline = job["activeDeadlineSeconds"].as_u64().expect("deadline");
    assert!(
        budget + 60 <= deadline,
        "budget {budget}s, deadline {deadline}s"
    );
    // The identity comes from the Secret, never from the manifest.
    let identity = container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == "BRIDGE_IDENTITY"))
        .expect("BRIDGE_IDENTITY");
    assert!(identity.get("value").is_none(), "{identity}");
    assert_eq!(identity["valueFrom"]["secretKeyRef"]["key"], "identity");
}

/// One pod of the Job at `index`, as the kubelet starts it: the volumes'
/// mount paths mapped to folders under `dir` (the ConfigMap's holding
/// `bridge_toml`), the Secret's keys from `secret`.
pub(crate) fn pod(
    job: &Value,
    index: u64,
    dir: &Path,
    bridge_toml: &Path,
    secret: &BTreeMap<&str, &str>,
) -> Command {
    let spec = &job["template"]["spec"];
    let container = &spec["containers"][0];
    let volumes = spec["volumes"].as_array().expect("volumes");
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for mount in container["volumeMounts"].as_array().expect("mounts") {
        let name = mount["name"].as_str().expect("a mount's name");
        let path = mount["mountPath"].as_str().expect("a mount path");
        let volume = volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"));
        let host = dir.join(name);
        fs::create_dir_all(&host).expect("a volume's folder");
        if volume.get("configMap").is_some() {
            fs::copy(bridge_toml, host.join("bridge.toml")).expect("the ConfigMap's file");
        }
        mounts.push((path.to_owned(), host));
    }
    // Longest mount path first, so that none is a prefix of a later one.
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let map = |text: &str| map_mounts(text, &mounts);
    let argv: Vec<String> = container["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(container["args"].as_array().into_iter().flatten())
        .map(|a| map(a.as_str().expect("a string argument")))
        .collect();
    let bin = Path::new(BRIDGE).parent().expect("the binary's folder");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("JOB_COMPLETION_INDEX", index.to_string())
        .current_dir(dir)
        .stdin(Stdio::null());
    for var in container["env"].as_array().expect("env") {
        let name = var["name"].as_str().expect("a variable's name");
        if let Some(value) = var["value"].as_str() {
            cmd.env(name, map(value));
        } else if let Some(key) = var["valueFrom"]["secretKeyRef"]["key"].as_str() {
            match secret.get(key) {
                Some(value) => {
                    cmd.env(name, value);
                }
                None => assert_eq!(
                    var["valueFrom"]["secretKeyRef"]["optional"], true,
                    "{name}: a key the Secret lacks must be optional"
                ),
            }
        }
    }
    cmd
}

/// `text` with each mount path (at the start of a path: after a space, a
/// quote or nothing) replaced by its folder, in one pass (a folder may
/// itself contain a mount path, such as `/tmp`).
fn map_mounts(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let at_start = out
            .chars()
            .last()
            .is_none_or(|p| p.is_whitespace() || p == '"' || p == '\'' || p == '=');
        let mount = mounts.iter().filter(|_| at_start).find(|(path, _)| {
            rest.strip_prefix(path.as_str())
                .is_some_and(|after| after.is_empty() || after.starts_with(['/', ' ', '"', '\n']))
        });
        match mount {
            Some((path, host)) => {
                out.push_str(&host.display().to_string());
                rest = &rest[path.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

#[test]
fn every_index_of_the_job_drains_a_git_pool_as_a_ci_runner_would() {
    const TASKS: usize = 12;
    let docs = manifest();
    let job = &kind(&docs, "Job")["spec"];
    let completions = job["completions"].as_u64().expect("completions");
    let tmp = temp_dir("k8s");
    let (_, laptop) = laptop_on_bare_repo(tmp.path(), "k8s-laptop");
    let values: Vec<String> = (0..TASKS).map(|k| k.to_string()).collect();
    laptop.write(
        "tasks.yaml",
        &format!(
            "tasks:\n  - name: t\n    matrix: {{ n: [{}] }}\n    outputs: [out.txt]\n    run: echo \"value ${{{{ matrix.n }}}} $BRIDGE_DEVICE\" > out.txt\n",
            values.join(", ")
        ),
    );
    let sub = laptop.ok(&["submit", "--json", "tasks.yaml"]).json();
    assert_eq!(sub["new"], TASKS, "{sub}");
    let identity = laptop.add_runner("k8s");
    // Taken after the runner is added: it pins the roster's epoch.
    let bridge_toml = laptop.path("bridge.toml");
    let secret = BTreeMap::from([("identity", identity.trim())]);

    let pods: Vec<_> = (0..completions)
        .map(|index| {
            let dir = tmp.path().join(format!("pod-{index}"));
            fs::create_dir_all(&dir).expect("a pod's folder");
            let child = pod(job, index, &dir, &bridge_toml, &secret)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a pod's command");
            (index, child)
        })
        .collect();
    for (index, child) in pods {
        let out = child.wait_with_output().expect("wait for a pod");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "pod {index}: {log}");
        assert!(
            log.contains(&format!("shard:    {index}/{completions}")),
            "pod {index} runs shard {index}/{completions}: {log}"
        );
    }

    laptop.ok(&["sync"]);
    // Every result once in the laptop's view.
    let values: Vec<String> = results_once(&laptop, &tmp.path().join("results"), TASKS)
        .iter()
        .map(|text| {
            text.split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        values,
        (0..TASKS).map(|k| k.to_string()).collect::<Vec<_>>()
    );
}
