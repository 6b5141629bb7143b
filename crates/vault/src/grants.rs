//! Private batches (issue 13): the audience grants in the reserved document
//! [`AUDIENCE_DOC`], the batch keys this device can open from them, and
//! which batches are foreign here (private, and this device not in their
//! audience: their files are skipped, never refused or deleted).

use std::collections::{BTreeMap, HashMap};

use bridge_crypto::{BatchAudience, Notice};
use bridge_store::{DocFolder, Replica};

use crate::{AUDIENCE_DOC, SaveError, SealError, Vault};

/// Why an audience grant was skipped (a warning, not an error: the others
/// still count).
#[derive(Debug, thiserror::Error)]
enum SkippedGrant {
    /// Its file cannot be read.
    #[error(transparent)]
    Read(bridge_store::ReadError),
    /// It does not open or verify.
    #[error(transparent)]
    Open(bridge_crypto::GrantError),
}

impl Vault {
    /// Reads every audience grant in the replica: their notices, and the
    /// batch keys this device can open (added to the keys that decrypt).
    /// A grant that does not open or verify is skipped with a warning.
    pub(crate) fn load_grants(&mut self) {
        let names = self.replica.list_chunks(AUDIENCE_DOC).unwrap_or_default();
        self.grant_files = names.len();
        let mut notices: HashMap<String, Vec<Notice>> = HashMap::new();
        for name in names {
            let file = DocFolder::Chunks.store_name(AUDIENCE_DOC, &name);
            let opened = self
                .replica
                .read_chunk(AUDIENCE_DOC, &name)
                .map_err(SkippedGrant::Read)
                .and_then(|sealed| {
                    bridge_crypto::open_grant(&self.data_keys, &self.roster, &sealed, &file)
                        .map_err(SkippedGrant::Open)
                });
            match opened {
                Ok(n) => notices.entry(n.body.batch.clone()).or_default().push(n),
                Err(e) => tracing::warn!("skipped audience grant {file}: {e}; left in place"),
            }
        }
        let mut extra = Vec::new();
        for (batch, list) in &notices {
            for n in list {
                if let Some(keys) = n.open_keys(&self.identity) {
                    self.readable_batches.insert(batch.clone());
                    extra.extend(keys.iter().map(|k| k.identity().clone()));
                }
            }
        }
        self.data_keys.extend(extra);
        self.notices = notices;
    }

    /// How many grant files the vault read.
    pub fn grant_files(&self) -> usize {
        self.grant_files
    }

    /// The grant files in the replica now.
    pub fn count_grant_files(replica: &Replica) -> usize {
        replica.list_chunks(AUDIENCE_DOC).map_or(0, |l| l.len())
    }

    /// The valid grants of `batch` (see [`bridge_crypto::resolve`]), if it
    /// is private; `None` for a batch with no valid grant.
    pub fn audience(&self, batch: &str) -> Option<BatchAudience> {
        let list = self.notices.get(batch)?;
        let submitters = self
            .submitters
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        bridge_crypto::resolve(list, &self.roster, &submitters).remove(batch)
    }

    /// Every private batch with a valid grant, by id.
    pub fn private_batches(&self) -> BTreeMap<String, BatchAudience> {
        let mut out = BTreeMap::new();
        for batch in self.notices.keys() {
            if let Some(a) = self.audience(batch) {
                out.insert(batch.clone(), a);
            }
        }
        out
    }

    /// Whether `batch` is private and this device is not in it: it holds
    /// none of its keys, or its newest generation leaves this device out
    /// (removed from the audience: nothing written since opens here). Its
    /// files are skipped (not refused, not repaired, never deleted).
    pub fn is_foreign_batch(&self, batch: &str) -> bool {
        if !self.notices.contains_key(batch) {
            return false;
        }
        if !self.readable_batches.contains(batch) {
            return true;
        }
        let me = self.identity.member_id();
        !self.audience(batch).is_some_and(|a| {
            a.generations
                .last()
                .is_some_and(|newest| newest.iter().any(|n| n.includes(me)))
        })
    }

    /// Whether document `doc` belongs to a batch this device cannot read.
    pub fn is_foreign_doc(&self, doc: &str) -> bool {
        doc.parse::<bridge_model::DocId>()
            .is_ok_and(|id| self.is_foreign_batch(id.batch().as_str()))
    }

    /// Records the generation-0 grant that private batch `batch`'s own
    /// header names (read from its encrypted documents, so only its
    /// audience knows it): only that grant's writer counts as the batch's
    /// submitter, and a generation 0 by anyone else (a forgery by another
    /// submit member) is ignored.
    pub fn confirm_first_grant(&self, batch: &str, hash: &str) {
        let Some(writer) = self
            .notices
            .get(batch)
            .and_then(|list| {
                list.iter()
                    .find(|n| n.hash == hash && n.body.generation == 0)
            })
            .map(|n| n.writer.clone())
        else {
            return;
        };
        if let Ok(mut s) = self.submitters.lock() {
            s.entry(batch.to_owned()).or_default().insert(writer);
        }
    }

    /// Adds a grant this device just wrote (and stored) to what it reads.
    pub fn add_grant(&mut self, notice: Notice) {
        if let Some(keys) = notice.open_keys(&self.identity) {
            self.readable_batches.insert(notice.body.batch.clone());
            self.data_keys
                .extend(keys.iter().map(|k| k.identity().clone()));
        }
        self.grant_files += 1;
        self.notices
            .entry(notice.body.batch.clone())
            .or_default()
            .push(notice);
    }

    /// Writes a sealed grant into the replica; returns its store name.
    pub fn write_grant_file(&self, bytes: &[u8]) -> Result<String, SaveError> {
        let name = self
            .replica
            .write_chunk(AUDIENCE_DOC, bytes)
            .map_err(SaveError::Grant)?;
        Ok(format!("chunks/{AUDIENCE_DOC}/{name}"))
    }

    /// The recipient a file of `batch` is sealed to: the newest valid
    /// grant's, for a private batch; `None` for a batch of the pool.
    pub(crate) fn batch_recipient(
        &self,
        batch: &str,
    ) -> Result<Option<age::x25519::Recipient>, SealError> {
        if !self.notices.contains_key(batch) {
            return Ok(None);
        }
        let Some(newest) = self.audience(batch).and_then(|a| a.newest().cloned()) else {
            // Grants exist but none is valid here (a forged generation 0
            // for a batch of the pool, seen by a member who read the
            // batch): the batch stays the pool's.
            return Ok(None);
        };
        let recipient = newest
            .body
            .recipient
            .parse()
            .map_err(|reason: &'static str| SealError::BadGrantRecipient {
                batch: batch.to_owned(),
                reason,
            })?;
        Ok(Some(recipient))
    }
}
