//! Audience grants: the keys of a private batch (issue 13, data placement).
//!
//! A batch may be private to an *audience*, a set of members. Its chunks,
//! snapshots and blobs are then sealed to a **batch key** (a fresh age X25519
//! key) instead of the roster's data key, so a member outside the audience (a
//! CI runner, say) cannot read them even with full access to the store.
//!
//! The batch key travels in a **grant**: a signed envelope ([`Domain::Grant`],
//! its `document` the batch id) encrypted to the roster's data key, so every
//! member can read its *notice* (batch id, audience, counts, the batch's
//! public recipient), while its `sealed_keys` field is age-encrypted to the
//! audience members' own keys: only they learn the secrets.
//!
//! Grants form a chain per batch. Generation 0 is written by the submitter;
//! generation n+1 (after `bridge audience add/remove`, or a roster removal)
//! by a member of generation n's audience, names generation n's hash and
//! carries a fresh key, with the secrets of **every** generation so far
//! sealed to its audience (an added member can read what came before; a
//! removed one cannot read what is written after).
//!
//! [`resolve`] applies the validity rules to every grant a reader holds:
//!
//! - generation 0 is valid only if its writer may submit (role admin or
//!   submit in the epoch it names) and, when the reader knows who submitted
//!   the batch (an audience member who read the batch's first document),
//!   only if the writer is that submitter: a forged generation 0 by another
//!   submit member is ignored;
//! - generation n+1 is valid only if it names the hash of a valid generation
//!   n and its writer is in that generation's audience; a writer removed
//!   from the roster is refused by the envelope checks, as for any file;
//! - concurrent grants of one generation: the lowest hash wins for sealing,
//!   every one the reader can open is kept for reading.
//!
//! The hash of a grant is the sha256 of its signed envelope, so it does not
//! depend on which data key it was encrypted to.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use age::secrecy::ExposeSecret;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::envelope::{self, Domain, EnvelopeError, Expect, Header, Opened};
use crate::identity::{Identity, MemberId, PublicKey};
use crate::roster::Roster;

/// The largest number of generations a grant may carry secrets for.
pub const MAX_GENERATIONS: u64 = 10_000;
/// The largest audience of one batch.
pub const MAX_AUDIENCE: usize = 1_000;

/// The payload of a grant (compact JSON, fields in this order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// The workspace.
    pub workspace: String,
    /// The batch id this grant is for (also the envelope's `document`).
    pub batch: String,
    /// 0 for the submitter's grant, then +1 per rotation.
    pub generation: u64,
    /// Hex sha256 of the previous generation's grant; `None` for generation 0.
    pub prev: Option<String>,
    /// Who may read the batch.
    pub audience: Vec<MemberId>,
    /// The public half of this generation's batch key (`age1…`).
    pub recipient: String,
    /// How many tasks the batch holds (shown to everyone).
    pub tasks: u64,
    /// How many documents the batch spans.
    pub documents: u64,
    /// When the grant was written (ms since the epoch, passed in).
    pub created_at: i64,
    /// Base64 of an age file encrypted to the audience's own keys, whose
    /// plaintext is the JSON list of the secret keys of generations
    /// 0..=generation, in order.
    pub sealed_keys: String,
}

/// A grant read from the store: its body, its writer and its hash. What
/// everyone may see of a private batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The grant's content.
    pub body: GrantBody,
    /// Who signed it.
    pub writer: MemberId,
    /// The roster epoch it was signed under.
    pub epoch: u64,
    /// Hex sha256 of its signed envelope.
    pub hash: String,
}

/// Why a grant could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The envelope was refused (decryption, signature, writer).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The payload is not a grant of the expected shape.
    #[error("the grant is malformed: {0}")]
    Malformed(&'static str),
    /// The grant names another batch than its envelope, or another workspace.
    #[error("the grant's body does not match its signed header")]
    Mismatch,
    /// The audience is empty or too large.
    #[error("invalid audience: an audience holds 1 to {max} members")]
    AudienceSize {
        /// The most members an audience holds.
        max: usize,
    },
    /// The audience names someone not in the roster's latest epoch.
    #[error("invalid audience: {member} is not a member of the roster's latest epoch")]
    NotAMember {
        /// Who.
        member: MemberId,
    },
    /// age could not seal the keys to the audience.
    #[error("the batch keys could not be sealed to the audience: {0}")]
    Seal(EnvelopeError),
}

/// A batch key: the secret of one generation.
#[derive(Clone)]
pub struct BatchKey(age::x25519::Identity);

impl BatchKey {
    /// A fresh key, from age's OS generator.
    pub fn generate() -> BatchKey {
        BatchKey(age::x25519::Identity::generate())
    }

    /// The public recipient files of the batch are sealed to.
    pub fn recipient(&self) -> age::x25519::Recipient {
        self.0.to_public()
    }

    /// The age identity that opens them.
    pub fn identity(&self) -> &age::x25519::Identity {
        &self.0
    }
}

impl fmt::Debug for BatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BatchKey({})", self.recipient())
    }
}

/// What a new grant says, before it is sealed.
#[derive(Debug)]
pub struct NewGrant<'a> {
    /// The batch.
    pub batch: &'a str,
    /// The previous generation (None: generation 0).
    pub prev: Option<&'a Notice>,
    /// The audience: members of the roster's latest epoch.
    pub audience: &'a [PublicKey],
    /// The secrets of every earlier generation, in order, then this one's.
    pub keys: &'a [BatchKey],
    /// Task and document counts.
    pub tasks: u64,
    /// Document count.
    pub documents: u64,
    /// The time, passed in.
    pub now: i64,
}

/// Signs a grant as `writer` and encrypts it to the roster's latest data
/// key. Returns the sealed file and its hash.
pub fn seal_grant(
    writer: &Identity,
    roster: &Roster,
    grant: &NewGrant<'_>,
) -> Result<(Vec<u8>, String), GrantError> {
    let generation = grant.prev.map_or(0, |p| p.body.generation + 1);
    let Some(newest) = grant.keys.last() else {
        return Err(GrantError::Malformed("no batch key"));
    };
    if grant.keys.len() as u64 != generation + 1 {
        return Err(GrantError::Malformed(
            "a grant carries one key per generation",
        ));
    }
    if grant.audience.is_empty() || grant.audience.len() > MAX_AUDIENCE {
        return Err(GrantError::AudienceSize { max: MAX_AUDIENCE });
    }
    let latest = roster.latest();
    for key in grant.audience {
        if latest.member(&key.member_id()).is_none() {
            return Err(GrantError::NotAMember {
                member: key.member_id(),
            });
        }
    }
    let secrets: Vec<String> = grant
        .keys
        .iter()
        .map(|k| k.0.to_string().expose_secret().to_owned())
        .collect();
    let plain = zeroize::Zeroizing::new(
        serde_json::to_vec(&secrets).map_err(|_| GrantError::Malformed("keys"))?,
    );
    let recipients: Vec<age::x25519::Recipient> = grant
        .audience
        .iter()
        .map(|k| k.recipient().clone())
        .collect();
    let sealed_keys = envelope::encrypt(&recipients, &plain).map_err(GrantError::Seal)?;
    let mut audience: Vec<MemberId> = grant.audience.iter().map(PublicKey::member_id).collect();
    audience.sort();
    audience.dedup();
    let body = GrantBody {
        workspace: roster.workspace().to_owned(),
        batch: grant.batch.to_owned(),
        generation,
        prev: grant.prev.map(|p| p.hash.clone()),
        audience,
        recipient: newest.recipient().to_string(),
        tasks: grant.tasks,
        documents: grant.documents,
        created_at: grant.now,
        sealed_keys: base64::engine::general_purpose::STANDARD.encode(sealed_keys),
    };
    let payload = serde_json::to_vec(&body).map_err(|_| GrantError::Malformed("body"))?;
    let header = Header {
        domain: Domain::Grant,
        workspace: roster.workspace().to_owned(),
        document: grant.batch.to_owned(),
        epoch: latest.number,
        writer: writer.member_id().clone(),
        actors: Vec::new(),
        sha256: String::new(),
    };
    let signed = envelope::sign(writer, &header, &payload)?;
    let hash = grant_hash(&signed);
    let data = roster.data_recipient().ok_or(GrantError::Malformed(
        "the roster's latest epoch has no data key",
    ))?;
    let sealed = envelope::encrypt(&[data], &signed.plaintext())?;
    Ok((sealed, hash))
}

fn grant_hash(opened: &Opened) -> String {
    hex::encode(Sha256::digest(opened.signed_bytes()))
}

/// Opens grant file `file` (store name) with the roster's data `keys` and
/// checks its envelope against `roster` (signature, writer, workspace) and
/// its body against its header. Does not apply the chain rules: [`resolve`].
pub fn open_grant(
    keys: &[age::x25519::Identity],
    roster: &Roster,
    sealed: &[u8],
    file: &str,
) -> Result<Notice, GrantError> {
    let expect = Expect {
        domain: Domain::Grant,
        workspace: roster.workspace(),
        document: None,
    };
    let (opened, _member) = envelope::open_verified_with(keys, roster, sealed, file, expect)?;
    let body: GrantBody = serde_json::from_slice(&opened.payload)
        .map_err(|_| GrantError::Malformed("the body is not JSON of the expected shape"))?;
    if body.batch != opened.header.document || body.workspace != opened.header.workspace {
        return Err(GrantError::Mismatch);
    }
    if body.generation > MAX_GENERATIONS
        || body.audience.is_empty()
        || body.audience.len() > MAX_AUDIENCE
        || (body.generation == 0) != body.prev.is_none()
        || body.recipient.parse::<age::x25519::Recipient>().is_err()
    {
        return Err(GrantError::Malformed(
            "generation, previous hash, audience or recipient out of range",
        ));
    }
    Ok(Notice {
        hash: grant_hash(&opened),
        writer: opened.header.writer.clone(),
        epoch: opened.header.epoch,
        body,
    })
}

impl Notice {
    /// The batch keys of generations 0..=this one, if `reader` is in the
    /// audience: `None` otherwise (or if the sealed keys do not match this
    /// grant's recipient).
    pub fn open_keys(&self, reader: &Identity) -> Option<Vec<BatchKey>> {
        if !self.body.audience.contains(reader.member_id()) {
            return None;
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&self.body.sealed_keys)
            .ok()?;
        let plain = zeroize::Zeroizing::new(
            envelope::open_raw(std::slice::from_ref(reader.age()), &sealed).ok()?,
        );
        let secrets: Vec<String> = serde_json::from_slice(&plain).ok()?;
        let secrets: Vec<zeroize::Zeroizing<String>> =
            secrets.into_iter().map(zeroize::Zeroizing::new).collect();
        if secrets.len() as u64 != self.body.generation + 1 {
            return None;
        }
        let keys: Vec<BatchKey> = secrets
            .iter()
            .map(|s| s.parse::<age::x25519::Identity>().ok().map(BatchKey))
            .collect::<Option<_>>()?;
        // The newest secret must be the one this grant announces.
        let last = keys.last()?;
        (last.recipient().to_string() == self.body.recipient).then_some(keys)
    }

    /// Whether `member` is in this grant's audience.
    pub fn includes(&self, member: &MemberId) -> bool {
        self.body.audience.contains(member)
    }
}

/// One private batch as a reader sees it after [`resolve`].
#[derive(Clone, Debug)]
pub struct BatchAudience {
    /// The valid grants, by generation; within one, lowest hash first.
    pub generations: Vec<Vec<Notice>>,
}

impl BatchAudience {
    /// The grant files are sealed to now: the lowest-hash valid grant of the
    /// newest generation.
    pub fn newest(&self) -> Option<&Notice> {
        self.generations.last().and_then(|g| g.first())
    }

    /// The generation-0 grant chosen (lowest hash).
    pub fn first(&self) -> Option<&Notice> {
        self.generations.first().and_then(|g| g.first())
    }
}

/// Applies the chain rules to every grant read (see the module docs).
/// `submitters` maps a batch id to the members who wrote a first change
/// (a genesis) of its documents, when the reader has seen one: a
/// generation 0 by anyone else is then invalid. Grants
/// whose writer may not submit at generation 0, or is not in the previous
/// generation's audience, are dropped; batches with no valid generation 0
/// are absent from the result.
pub fn resolve(
    notices: &[Notice],
    roster: &Roster,
    submitters: &BTreeMap<String, BTreeSet<MemberId>>,
) -> BTreeMap<String, BatchAudience> {
    let mut by_batch: BTreeMap<&str, Vec<&Notice>> = BTreeMap::new();
    for n in notices {
        by_batch.entry(n.body.batch.as_str()).or_default().push(n);
    }
    let mut out = BTreeMap::new();
    for (batch, mut list) in by_batch {
        list.sort_by(|a, b| (a.body.generation, &a.hash).cmp(&(b.body.generation, &b.hash)));
        let mut generations: Vec<Vec<Notice>> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for n in list {
            if !seen.insert(n.hash.as_str()) {
                continue;
            }
            let g = n.body.generation as usize;
            let valid = if g == 0 {
                let may_submit = roster
                    .epoch(n.epoch)
                    .and_then(|e| e.member(&n.writer))
                    .is_some_and(|m| m.role.can_submit());
                may_submit
                    && submitters
                        .get(batch)
                        .is_none_or(|s| s.is_empty() || s.contains(&n.writer))
            } else {
                generations.get(g - 1).is_some_and(|prev| {
                    prev.iter()
                        .any(|p| Some(&p.hash) == n.body.prev.as_ref() && p.includes(&n.writer))
                })
            };
            if !valid {
                continue;
            }
            if generations.len() == g {
                generations.push(Vec::new());
            }
            if let Some(slot) = generations.get_mut(g) {
                slot.push(n.clone());
            }
        }
        if !generations.is_empty() {
            out.insert(batch.to_owned(), BatchAudience { generations });
        }
    }
    out
}

#[cfg(test)]
mod tests;
