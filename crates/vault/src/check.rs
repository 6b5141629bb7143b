//! Opening and checking: a chunk is decrypted, its header checked against
//! this workspace, its document and the roster, its signature verified,
//! and only then are its changes parsed, each one's actor checked against
//! its signer (the store loads documents through this, as a
//! [`ChunkOpener`]). Also who may submit ([`Authority`]) and this device's
//! cache.

use std::collections::BTreeSet;

use automerge::ActorId;
use bridge_crypto::{Domain, Expect, Member, Opened, Role, open_verified_with};
use bridge_model::WriterId;
use bridge_model::doc::Authority;
use bridge_store::{Changes, ChunkOpener, DocFolder, OpenedEntry};

use crate::{Refusal, Vault, member_tag, unframe};

impl Vault {
    /// Checks the changes of a verified chunk envelope and returns them,
    /// parsed (so that loading need not parse them again).
    pub(crate) fn accept_changes(
        &self,
        opened: &Opened,
        member: &Member,
    ) -> Result<Vec<automerge::Change>, Refusal> {
        let mut out = Vec::new();
        let mut new_bindings: Vec<String> = Vec::new();
        // A poisoned lock only means another thread panicked while binding:
        // the map itself is always whole.
        let bindings = self
            .bindings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for frame in unframe(&opened.payload) {
            let frame = frame?;
            let change = automerge::Change::try_from(frame).map_err(Refusal::NotAChange)?;
            // `try_from` does not check the checksum (bytes 4..8: the
            // first four of the change hash); a load would refuse it, and
            // a refused chunk in the middle of a batched load silently
            // hides the rest. Checked here, the store applies the parsed
            // changes as they are (`bridge_store::Changes::Parsed`).
            if frame.get(4..8) != Some(&change.hash().0[..4]) {
                return Err(Refusal::BadChecksum);
            }
            let actor = change.actor_id().to_hex_string();
            if WriterId::member_tag_of(change.actor_id().to_bytes())
                != Some(member_tag(&member.id()))
            {
                return Err(Refusal::ForeignActor {
                    actor,
                    signer: member.name.clone(),
                });
            }
            // A writer adds values; it never overwrites or deletes another
            // writer's (every legitimate put replaces at most its own
            // earlier value). This keeps a member, a runner above all, from
            // deleting tasks or erasing others' results.
            // A change with no dependencies (a document's genesis, the
            // largest) can only supersede its own ops: skip decoding it.
            if !change.deps().is_empty()
                && change
                    .decode()
                    .operations
                    .iter()
                    .any(|op| op.pred.iter().any(|p| p.1 != *change.actor_id()))
            {
                return Err(Refusal::OverwritesOthers {
                    signer: member.name.clone(),
                });
            }
            if !opened.header.actors.contains(&actor) {
                return Err(Refusal::UndeclaredActor {
                    actor,
                    signer: member.name.clone(),
                });
            }
            match bindings.get(&actor) {
                Some((m, _)) if *m != member.id() => {
                    return Err(Refusal::ActorOfAnotherMember {
                        actor,
                        owner: m.clone(),
                        signer: member.name.clone(),
                    });
                }
                Some(_) => {}
                None => new_bindings.push(actor),
            }
            out.push(change);
        }
        drop(bindings);
        // Bind the new actors only once the whole chunk is accepted.
        for actor in new_bindings {
            self.bind(&actor, member.id(), member.role);
        }
        Ok(out)
    }

    pub(crate) fn expect_chunk<'a>(&'a self, doc: &'a str) -> Expect<'a> {
        Expect {
            domain: Domain::Chunk,
            workspace: &self.workspace,
            document: Some(doc),
        }
    }

    /// Decrypts and verifies chunk file `name` of `doc`; returns its signed
    /// envelope (what a snapshot bundles) and its writer.
    pub fn signed_chunk(&self, doc: &str, name: &str, sealed: &[u8]) -> Result<Opened, Refusal> {
        let file = DocFolder::Chunks.store_name(doc, name);
        let (opened, _) = open_verified_with(
            &self.data_keys,
            &self.roster,
            sealed,
            &file,
            self.expect_chunk(doc),
        )?;
        Ok(opened)
    }

    /// Decrypts and checks chunk file `name` of `doc` whole: its envelope,
    /// then every change. Returns its changes.
    pub fn open_chunk(
        &self,
        doc: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<Vec<automerge::Change>, Refusal> {
        let file = DocFolder::Chunks.store_name(doc, name);
        let (opened, member) = open_verified_with(
            &self.data_keys,
            &self.roster,
            sealed,
            &file,
            self.expect_chunk(doc),
        )?;
        // Verified: now, and only now, parse the changes.
        self.accept_changes(&opened, &member)
    }

    /// The role of the member whose actor tag is `tag` (their latest entry
    /// in the roster), if any.
    fn role_of_tag(&self, tag: [u8; 8]) -> Option<Role> {
        self.roster
            .epochs()
            .iter()
            .rev()
            .flat_map(|e| e.members.iter())
            .find(|m| member_tag(&m.id()) == tag)
            .map(|m| m.role)
    }

    /// Opens what [`seal_private`](Self::seal_private) sealed for `doc`.
    pub fn open_private(&self, doc: &str, sealed: &[u8]) -> Result<Vec<u8>, Refusal> {
        let opened = bridge_crypto::open(&self.identity, sealed)?;
        let h = &opened.header;
        if h.domain != Domain::Cache
            || h.workspace != self.workspace
            || h.document != doc
            || &h.writer != self.identity.member_id()
        {
            return Err(Refusal::NotOurCache);
        }
        opened.verify(&self.identity.public())?;
        Ok(opened.payload)
    }
}

// The store's loader gets the typed refusal: it reports it as a warning
// against the file; the vault's callers and tests match the variant.
impl ChunkOpener for Vault {
    type Error = Refusal;

    fn open(&self, doc: &str, name: &str, bytes: Vec<u8>) -> Result<Changes, Refusal> {
        self.open_chunk(doc, name, &bytes).map(Changes::Parsed)
    }

    fn open_snapshot(
        &self,
        doc: &str,
        folder: DocFolder,
        name: &str,
        bytes: Vec<u8>,
        known: &BTreeSet<String>,
    ) -> Result<Vec<OpenedEntry<Refusal>>, Refusal> {
        let entries = self.open_snapshot_entries(doc, folder, name, &bytes, known)?;
        self.remember_snapshot(folder.store_name(doc, name), &entries);
        Ok(entries
            .into_iter()
            .map(|(entry, _, result)| (entry, result.map(Changes::Parsed)))
            .collect())
    }
}

impl Authority for Vault {
    fn can_submit(&self, actor: &ActorId) -> bool {
        let bound = self.bindings.lock().ok().and_then(|b| {
            b.get(&actor.to_hex_string())
                .map(|(_, role)| role.can_submit())
        });
        // Not bound by a file this process read: the change came from this
        // device's cache of verified documents, where every actor was
        // checked against its signer. Its tag names that signer.
        bound.unwrap_or_else(|| {
            WriterId::member_tag_of(actor.to_bytes())
                .and_then(|tag| self.role_of_tag(tag))
                .is_some_and(|role| role.can_submit())
        })
    }
}
