//! [`TaskSpec`]: the immutable description of one task, and its content hash.
//!
//! A task's id is the hash of everything that decides what it computes: the
//! command, its environment, the content of its inputs, the outputs it keeps,
//! its limits and placement, its dependencies and an optional nonce. The name
//! and the priority are left out: they are labels, so the same work submitted
//! under two names from two offline devices is still one task.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::TaskId;

/// How a task's command is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// `shell -c script`.
    Shell {
        /// The shell program, e.g. `sh` or `bash`.
        shell: String,
        /// The script passed to `-c`.
        script: String,
    },
    /// A program and its arguments, started directly without a shell.
    Argv(Vec<String>),
}

impl Command {
    /// The command as one line, for display.
    pub fn display(&self) -> String {
        match self {
            Command::Shell { script, .. } => script.clone(),
            Command::Argv(argv) => argv.join(" "),
        }
    }
}

/// An input file: a blob of the store materialised at `path` (relative,
/// `/`-separated) in the task's working folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputRef {
    /// Where the file appears in the working folder.
    pub path: String,
    /// The SHA-256 of its content (hex): what the task's identity hashes.
    pub sha256: String,
    /// The store file holding it. Not part of the identity: the same content
    /// stored by two devices may sit in two (encrypted) files.
    pub blob: String,
}

/// Everything a worker needs to run one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// A name for people; not part of the task's identity.
    pub name: String,
    /// What to run.
    pub command: Command,
    /// Extra environment variables for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files materialised in the working folder before the command starts.
    #[serde(default)]
    pub inputs: Vec<InputRef>,
    /// Globs, relative to the working folder, of files kept after the run.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Wall-clock limit of one attempt, in seconds.
    pub timeout_s: u64,
    /// How many failed attempts may be retried.
    #[serde(default)]
    pub retries: u32,
    /// Labels a worker must have to run the task (all of them); empty: any.
    #[serde(default)]
    pub runs_on: Vec<String>,
    /// Higher runs first; not part of the task's identity.
    #[serde(default)]
    pub priority: i64,
    /// Tasks that must be done before this one may start.
    #[serde(default)]
    pub needs: Vec<TaskId>,
    /// Set by `--rerun` so that an identical task is run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// The fields that make a task's identity, in a fixed order.
#[derive(Serialize)]
struct Identity<'a> {
    command: &'a Command,
    env: &'a BTreeMap<String, String>,
    inputs: Vec<(&'a str, &'a str)>,
    outputs: &'a [String],
    timeout_s: u64,
    retries: u32,
    runs_on: Vec<&'a String>,
    needs: Vec<&'a TaskId>,
    nonce: &'a Option<String>,
}

/// Domain separation for the task hash, so it can never equal another hash
/// bridge computes over the same bytes.
const TASK_HASH_DOMAIN: &[u8] = b"bridge-task-v1\0";

impl TaskSpec {
    /// The content-addressed id of this task.
    pub fn id(&self) -> TaskId {
        let mut inputs: Vec<_> = self
            .inputs
            .iter()
            .map(|i| (i.path.as_str(), i.sha256.as_str()))
            .collect();
        inputs.sort();
        let mut runs_on: Vec<_> = self.runs_on.iter().collect();
        runs_on.sort();
        runs_on.dedup();
        let mut needs: Vec<_> = self.needs.iter().collect();
        needs.sort();
        needs.dedup();
        let identity = Identity {
            command: &self.command,
            env: &self.env,
            inputs,
            outputs: &self.outputs,
            timeout_s: self.timeout_s,
            retries: self.retries,
            runs_on,
            needs,
            nonce: &self.nonce,
        };
        let mut hasher = Sha256::new();
        hasher.update(TASK_HASH_DOMAIN);
        // Serialising plain structs, strings and maps to JSON cannot fail.
        hasher.update(serde_json::to_vec(&identity).unwrap_or_default());
        TaskId::from_digest(&hasher.finalize())
    }

    /// Whether a worker with `labels` may run this task.
    pub fn runs_on_labels(&self, labels: &[String]) -> bool {
        self.runs_on.iter().all(|want| labels.contains(want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec(script: &str) -> TaskSpec {
        TaskSpec {
            name: script.to_owned(),
            command: Command::Shell {
                shell: "sh".into(),
                script: script.into(),
            },
            env: BTreeMap::new(),
            inputs: vec![],
            outputs: vec![],
            timeout_s: 60,
            retries: 0,
            runs_on: vec![],
            priority: 0,
            needs: vec![],
            nonce: None,
        }
    }

    #[test]
    fn name_and_priority_are_not_identity() {
        let a = spec("echo hi");
        let mut b = a.clone();
        b.name = "other".into();
        b.priority = 9;
        assert_eq!(a.id(), b.id());
    }

    #[test]
    fn command_env_inputs_and_nonce_are_identity() {
        let a = spec("echo hi");
        let mut b = a.clone();
        b.env.insert("X".into(), "1".into());
        assert_ne!(a.id(), b.id());
        let mut c = a.clone();
        c.nonce = Some("n".into());
        assert_ne!(a.id(), c.id());
        let mut d = a.clone();
        d.inputs.push(InputRef {
            path: "a.txt".into(),
            sha256: "00".into(),
            blob: "11".into(),
        });
        assert_ne!(a.id(), d.id());
    }

    #[test]
    fn order_of_sets_does_not_matter() {
        let mut a = spec("x");
        a.runs_on = vec!["linux".into(), "gpu".into()];
        let mut b = a.clone();
        b.runs_on.reverse();
        assert_eq!(a.id(), b.id());
    }
}
