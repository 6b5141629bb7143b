//! The claims a worker holds: made in one change per document, released
//! when given up, renewed before their lease runs out, and checked against
//! the claims of other workers (the earliest `(at, key)` wins).

use std::collections::BTreeMap;

use bridge_model::facts::Claim;
use bridge_model::{DocId, Millis, TaskId, doc};

use crate::workspace::Session;
use crate::workspace::WriteError;

/// One claim this worker holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Held {
    /// The claimed task.
    pub task: TaskId,
    /// The document the claim is written to (the task's home).
    pub doc: DocId,
    /// When it was made.
    pub at: Millis,
}

/// Every claim this worker holds, running or waiting, by claim key.
#[derive(Debug, Default)]
pub(super) struct Claims {
    held: BTreeMap<String, Held>,
}

impl Claims {
    /// The claim `key`, if held.
    pub fn get(&self, key: &str) -> Option<&Held> {
        self.held.get(key)
    }

    /// Whether task `id` is claimed by this worker.
    pub fn holds_task(&self, id: &TaskId) -> bool {
        self.held.values().any(|h| &h.task == id)
    }

    /// Stops holding claim `key` (its task ended and its attempt is
    /// recorded, which ends the claim).
    pub fn remove(&mut self, key: &str) -> Option<Held> {
        self.held.remove(key)
    }

    /// How many claims are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Claims `ids` at `now` for `lease_ms`, one change per document;
    /// returns the new claim keys.
    pub fn claim(
        &mut self,
        session: &mut Session,
        ids: &[TaskId],
        now: Millis,
        lease_ms: Millis,
    ) -> Result<Vec<String>, WriteError> {
        let mut by_doc: BTreeMap<DocId, Vec<(TaskId, String)>> = BTreeMap::new();
        for id in ids {
            let Some(home) = session.view().get(id).map(|t| t.home().clone()) else {
                continue;
            };
            let key = session.next_key();
            by_doc.entry(home).or_default().push((id.clone(), key));
        }
        let mut keys = Vec::with_capacity(ids.len());
        for (doc_id, tasks) in by_doc {
            let facts: Vec<Claim> = tasks
                .iter()
                .map(|(_, key)| claim_fact(key, now, now + lease_ms, None))
                .collect();
            session.change(&doc_id, now, "claim", |d| {
                doc::put_claims(
                    d,
                    tasks.iter().map(|(id, _)| id).zip(&facts),
                    doc::ClaimWrite::New,
                )
            })?;
            for (id, key) in tasks {
                session
                    .view_mut()
                    .note_claim(&id, claim_fact(&key, now, now + lease_ms, None));
                self.held.insert(
                    key.clone(),
                    Held {
                        task: id,
                        doc: doc_id.clone(),
                        at: now,
                    },
                );
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// Of `keys`, those whose claim lost to an earlier one (or whose task
    /// another worker finished), as the session sees them at `now`.
    pub fn lost(&self, session: &Session, keys: &[String], now: Millis) -> Vec<String> {
        keys.iter()
            .filter(|key| {
                self.held
                    .get(*key)
                    .is_some_and(|h| session.view().claim_lost(&h.task, key, now, session.policy))
            })
            .cloned()
            .collect()
    }

    /// Gives claims up at `now` without running their tasks.
    pub fn release(
        &mut self,
        session: &mut Session,
        keys: &[String],
        now: Millis,
    ) -> Result<(), WriteError> {
        for key in keys {
            let Some(h) = self.held.remove(key) else {
                continue;
            };
            let fact = claim_fact(key, h.at, now, Some(now));
            session.change(&h.doc, now, "release", |d| {
                doc::put_claim(d, &h.task, &fact)
            })?;
            session.view_mut().note_claim(&h.task, fact);
        }
        Ok(())
    }

    /// Extends the lease of every held claim to `lease_until`, written at
    /// `now`.
    pub fn renew(
        &self,
        session: &mut Session,
        now: Millis,
        lease_until: Millis,
    ) -> Result<(), WriteError> {
        let mut by_doc: BTreeMap<&DocId, Vec<(&String, &Held)>> = BTreeMap::new();
        for (k, h) in &self.held {
            by_doc.entry(&h.doc).or_default().push((k, h));
        }
        for (doc_id, claims) in by_doc {
            let facts: Vec<Claim> = claims
                .iter()
                .map(|(key, h)| claim_fact(key, h.at, lease_until, None))
                .collect();
            session.change(doc_id, now, "renew", |d| {
                doc::put_claims(
                    d,
                    claims.iter().map(|(_, h)| &h.task).zip(&facts),
                    doc::ClaimWrite::NewOrRenewed,
                )
            })?;
            for (key, h) in claims {
                session
                    .view_mut()
                    .note_claim(&h.task, claim_fact(key, h.at, lease_until, None));
            }
        }
        Ok(())
    }
}

fn claim_fact(key: &str, at: Millis, lease_until: Millis, released_at: Option<Millis>) -> Claim {
    Claim {
        key: key.to_owned(),
        at,
        lease_until,
        released_at,
    }
}
