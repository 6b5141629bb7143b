//! The binary encoding of a cached document's tasks (issue 18, item 3):
//! [postcard](https://docs.rs/postcard) of mirrors of the model's types.
//!
//! A warm start of a large pool reads every cached task: as JSON that was
//! a fifth of a warm `bridge status` on 100k tasks, and the cache four
//! times the size (every field name of every task, ids as text). Postcard
//! writes values in field order without names, and so cannot skip a field
//! as the model's JSON does (`skip_serializing_if`): the mirrors here write
//! every field, and convert to and from the model's types by destructuring
//! them whole, so a field added to the model does not compile until it is
//! added here too (and the cache's `FORMAT` raised). Ids are written as
//! their 16 bytes.

use bridge_model::doc::TaskRecord;
use bridge_model::facts::{Attempt, Claim, Facts, Outcome};
use bridge_model::spec::{Command, InputRef, TaskSpec};
use bridge_model::{SmallMap, TaskId};
use serde::{Deserialize, Serialize};

/// `records`, encoded.
pub fn encode(records: &[TaskRecord]) -> Result<Vec<u8>, postcard::Error> {
    let mirrors: Vec<RecordOut<'_>> = records.iter().map(RecordOut::from).collect();
    postcard::to_stdvec(&mirrors)
}

/// Tasks that [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<Vec<TaskRecord>, postcard::Error> {
    let Records(records) = postcard::from_bytes(bytes)?;
    Ok(records)
}

/// The tasks, each converted as it is decoded: no second vector of a
/// thousand mirrors per document.
struct Records(Vec<TaskRecord>);

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Records, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Records;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of tasks")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Records, A::Error> {
                // Capped: a damaged length must not reserve gigabytes.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(r) = seq.next_element::<RecordIn>()? {
                    out.push(r.into_record());
                }
                Ok(Records(out))
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// A task id as its 16 bytes.
fn id_bytes(id: &TaskId) -> [u8; 16] {
    let mut out = [0u8; 16];
    // A TaskId is 32 hex digits by construction: this cannot fail.
    let _ = hex::decode_to_slice(id.as_str(), &mut out);
    out
}

fn id_of(bytes: [u8; 16]) -> TaskId {
    TaskId::from_digest(&bytes)
}

#[derive(Serialize)]
struct RecordOut<'a> {
    id: [u8; 16],
    spec: SpecOut<'a>,
    facts: FactsOut<'a>,
    trusted: bool,
    creator: Option<[u8; 8]>,
}

#[derive(Deserialize)]
struct RecordIn {
    id: [u8; 16],
    spec: SpecIn,
    facts: FactsIn,
    trusted: bool,
    creator: Option<[u8; 8]>,
}

impl<'a> From<&'a TaskRecord> for RecordOut<'a> {
    fn from(r: &'a TaskRecord) -> RecordOut<'a> {
        let TaskRecord {
            id,
            spec,
            facts,
            trusted,
            creator,
        } = r;
        RecordOut {
            id: id_bytes(id),
            spec: SpecOut::from(spec),
            facts: FactsOut::from(facts),
            trusted: *trusted,
            creator: *creator,
        }
    }
}

impl RecordIn {
    fn into_record(self) -> TaskRecord {
        let RecordIn {
            id,
            spec,
            facts,
            trusted,
            creator,
        } = self;
        TaskRecord {
            id: id_of(id),
            spec: spec.into_spec(),
            facts: facts.into_facts(),
            trusted,
            creator,
        }
    }
}

#[derive(Serialize)]
struct SpecOut<'a> {
    name: &'a str,
    command: &'a Command,
    env: &'a SmallMap<String, String>,
    inputs: Vec<InputOut<'a>>,
    outputs: &'a [String],
    timeout_s: u64,
    retries: u32,
    runs_on: &'a [String],
    priority: i64,
    needs: Vec<[u8; 16]>,
    nonce: &'a Option<String>,
    network: bool,
    allow_read: &'a [String],
}

#[derive(Deserialize)]
struct SpecIn {
    name: String,
    command: Command,
    env: SmallMap<String, String>,
    inputs: Vec<InputIn>,
    outputs: Vec<String>,
    timeout_s: u64,
    retries: u32,
    runs_on: Vec<String>,
    priority: i64,
    needs: Vec<[u8; 16]>,
    nonce: Option<String>,
    network: bool,
    allow_read: Vec<String>,
}

impl<'a> From<&'a TaskSpec> for SpecOut<'a> {
    fn from(s: &'a TaskSpec) -> SpecOut<'a> {
        let TaskSpec {
            name,
            command,
            env,
            inputs,
            outputs,
            timeout_s,
            retries,
            runs_on,
            priority,
            needs,
            nonce,
            network,
            allow_read,
        } = s;
        SpecOut {
            name,
            command,
            env,
            inputs: inputs.iter().map(InputOut::from).collect(),
            outputs,
            timeout_s: *timeout_s,
            retries: *retries,
            runs_on,
            priority: *priority,
            needs: needs.iter().map(id_bytes).collect(),
            nonce,
            network: *network,
            allow_read,
        }
    }
}

impl SpecIn {
    fn into_spec(self) -> TaskSpec {
        let SpecIn {
            name,
            command,
            env,
            inputs,
            outputs,
            timeout_s,
            retries,
            runs_on,
            priority,
            needs,
            nonce,
            network,
            allow_read,
        } = self;
        TaskSpec {
            name,
            command,
            env,
            inputs: inputs.into_iter().map(InputIn::into_input).collect(),
            outputs,
            timeout_s,
            retries,
            runs_on,
            priority,
            needs: needs.into_iter().map(id_of).collect(),
            nonce,
            network,
            allow_read,
        }
    }
}

#[derive(Serialize)]
struct InputOut<'a> {
    path: &'a str,
    sha256: &'a str,
    blob: &'a str,
    url: &'a Option<String>,
}

#[derive(Deserialize)]
struct InputIn {
    path: String,
    sha256: String,
    blob: String,
    url: Option<String>,
}

impl<'a> From<&'a InputRef> for InputOut<'a> {
    fn from(i: &'a InputRef) -> InputOut<'a> {
        let InputRef {
            path,
            sha256,
            blob,
            url,
        } = i;
        InputOut {
            path,
            sha256,
            blob,
            url,
        }
    }
}

impl InputIn {
    fn into_input(self) -> InputRef {
        let InputIn {
            path,
            sha256,
            blob,
            url,
        } = self;
        InputRef {
            path,
            sha256,
            blob,
            url,
        }
    }
}

#[derive(Serialize)]
struct FactsOut<'a> {
    claims: &'a SmallMap<String, Claim>,
    attempts: Vec<(&'a str, AttemptOut<'a>)>,
    cancels: &'a SmallMap<String, i64>,
    retries: &'a SmallMap<String, i64>,
}

#[derive(Deserialize)]
struct FactsIn {
    claims: SmallMap<String, Claim>,
    attempts: Vec<(String, AttemptIn)>,
    cancels: SmallMap<String, i64>,
    retries: SmallMap<String, i64>,
}

impl<'a> From<&'a Facts> for FactsOut<'a> {
    fn from(f: &'a Facts) -> FactsOut<'a> {
        let Facts {
            claims,
            attempts,
            cancels,
            retries,
        } = f;
        FactsOut {
            claims,
            attempts: attempts
                .iter()
                .map(|(k, a)| (k.as_str(), AttemptOut::from(a)))
                .collect(),
            cancels,
            retries,
        }
    }
}

impl FactsIn {
    fn into_facts(self) -> Facts {
        let FactsIn {
            claims,
            attempts,
            cancels,
            retries,
        } = self;
        Facts {
            claims,
            // Written from a map: in order, so collecting is linear.
            attempts: attempts
                .into_iter()
                .map(|(k, a)| (k, a.into_attempt()))
                .collect(),
            cancels,
            retries,
        }
    }
}

#[derive(Serialize)]
struct AttemptOut<'a> {
    key: &'a str,
    device: &'a str,
    started_at: i64,
    ended_at: i64,
    outcome: Outcome,
    exit_code: Option<i64>,
    signal: Option<i64>,
    message: &'a Option<String>,
    stdout_tail: &'a str,
    stderr_tail: &'a str,
    stdout_blob: &'a Option<String>,
    stderr_blob: &'a Option<String>,
    outputs: &'a SmallMap<String, String>,
    provenance: &'a SmallMap<String, String>,
}

#[derive(Deserialize)]
struct AttemptIn {
    key: String,
    device: String,
    started_at: i64,
    ended_at: i64,
    outcome: Outcome,
    exit_code: Option<i64>,
    signal: Option<i64>,
    message: Option<String>,
    stdout_tail: String,
    stderr_tail: String,
    stdout_blob: Option<String>,
    stderr_blob: Option<String>,
    outputs: SmallMap<String, String>,
    provenance: SmallMap<String, String>,
}

impl<'a> From<&'a Attempt> for AttemptOut<'a> {
    fn from(a: &'a Attempt) -> AttemptOut<'a> {
        let Attempt {
            key,
            device,
            started_at,
            ended_at,
            outcome,
            exit_code,
            signal,
            message,
            stdout_tail,
            stderr_tail,
            stdout_blob,
            stderr_blob,
            outputs,
            provenance,
        } = a;
        AttemptOut {
            key,
            device,
            started_at: *started_at,
            ended_at: *ended_at,
            outcome: *outcome,
            exit_code: *exit_code,
            signal: *signal,
            message,
            stdout_tail,
            stderr_tail,
            stdout_blob,
            stderr_blob,
            outputs,
            provenance,
        }
    }
}

impl AttemptIn {
    fn into_attempt(self) -> Attempt {
        let AttemptIn {
            key,
            device,
            started_at,
            ended_at,
            outcome,
            exit_code,
            signal,
            message,
            stdout_tail,
            stderr_tail,
            stdout_blob,
            stderr_blob,
            outputs,
            provenance,
        } = self;
        Attempt {
            key,
            device,
            started_at,
            ended_at,
            outcome,
            exit_code,
            signal,
            message,
            stdout_tail,
            stderr_tail,
            stdout_blob,
            stderr_blob,
            outputs,
            provenance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with every field set to something other than its default.
    fn full_record() -> TaskRecord {
        let spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "name": "full",
            "command": {"shell": {"shell": "bash", "script": "echo $A > out"}},
            "env": {"A": "1", "B": "two"},
            "inputs": [
                {"path": "in/a", "sha256": "ab".repeat(32), "blob": "blobs/ab"},
                {"path": "in/b", "sha256": "cd".repeat(32), "blob": "", "url": "https://example.org/b"},
            ],
            "outputs": ["out", "logs/*"],
            "timeout_s": 77,
            "retries": 3,
            "runs_on": ["gpu", "linux"],
            "priority": -5,
            "needs": ["0123456789abcdef0123456789abcdef"],
            "nonce": "n1",
            "network": false,
            "allow_read": ["~/data"],
        }))
        .expect("a spec");
        let attempt = Attempt {
            key: "w.1".into(),
            device: "dev".into(),
            started_at: 10,
            ended_at: 20,
            outcome: Outcome::TimedOut,
            exit_code: Some(-1),
            signal: Some(9),
            message: Some("killed".into()),
            stdout_tail: "out\n".into(),
            stderr_tail: "err\n".into(),
            stdout_blob: Some("blobs/o".into()),
            stderr_blob: Some("blobs/e".into()),
            outputs: SmallMap::from_iter([("out".to_owned(), "blobs/x".to_owned())]),
            provenance: SmallMap::from_iter([("host".to_owned(), "h".to_owned())]),
        };
        let claim = Claim {
            key: "w.1".into(),
            at: 5,
            lease_until: 65,
            released_at: Some(30),
        };
        TaskRecord {
            id: spec.id(),
            spec,
            facts: Facts {
                claims: SmallMap::from_iter([("w.1".to_owned(), claim)]),
                attempts: SmallMap::from_iter([("w.1".to_owned(), attempt)]),
                cancels: SmallMap::from_iter([("w".to_owned(), 40)]),
                retries: SmallMap::from_iter([("w.2".to_owned(), 50)]),
            },
            trusted: false,
            creator: Some([9; 8]),
        }
    }

    #[test]
    fn every_field_round_trips() {
        let full = full_record();
        let mut bare = full.clone();
        bare.spec = serde_json::from_value(serde_json::json!({
            "name": "",
            "command": {"argv": ["true"]},
            "timeout_s": 0,
        }))
        .expect("a spec");
        bare.facts = Facts::default();
        bare.creator = None;
        let records = vec![full, bare];
        let bytes = encode(&records).expect("encoded");
        assert_eq!(decode(&bytes).expect("decoded"), records);
    }

    #[test]
    fn junk_does_not_decode() {
        let bytes = encode(&[full_record()]).expect("encoded");
        assert!(decode(&bytes[..bytes.len() / 2]).is_err());
        assert!(decode(b"\x05junk").is_err());
    }
}
