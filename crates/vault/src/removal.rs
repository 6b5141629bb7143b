//! What a member signed: when an admin removes a member, the removal lists
//! every file of theirs that verifies now (see
//! [`bridge_crypto::accepted_key`]), so that their past work stays readable
//! and nothing they sign later is accepted.

use std::collections::BTreeSet;

use bridge_crypto::{
    Domain, Expect, MemberId, accepted_key, open_verified_with, open_with, verify_signed,
};
use bridge_store::DocFolder;

use crate::{AUDIENCE_DOC, ROSTER_DOC, ScanError, Vault, snapshot};

/// What [`Vault::files_signed_by`] found.
#[derive(Debug, Default)]
pub struct SignedFiles {
    /// Each file's [`bridge_crypto::accepted_key`].
    pub keys: BTreeSet<String>,
    /// Chunk files among them.
    pub chunk_files: usize,
    /// Snapshot files (live or archived) among them.
    pub snapshot_files: usize,
    /// Chunks bundled in snapshots (and not also a chunk file here).
    pub bundled_chunks: usize,
    /// Audience grants among them.
    pub grant_files: usize,
    /// Files of private batches this device cannot read, whoever signed
    /// them: accepted by store name (their writer is unknown here).
    pub private_files: usize,
}

impl Vault {
    /// Every file of the replica that `member` signed and that verifies
    /// now, as the [`bridge_crypto::accepted_key`] a removal lists: their
    /// chunk files, their snapshot files (live and archived: a runner
    /// compacts, and its snapshots hold everyone's chunks) and the chunks of
    /// theirs bundled in anyone's snapshot. Blobs are not listed: a blob is
    /// read through a verified chunk that names it, whoever signed it.
    #[expect(
        clippy::too_many_lines,
        reason = "one walk over every kind of store file; split it when it grows"
    )]
    pub fn files_signed_by(&self, member: &MemberId) -> Result<SignedFiles, ScanError> {
        let mut out = SignedFiles::default();
        let replica = &self.replica;
        let mut docs: BTreeSet<String> = BTreeSet::new();
        for folder in [DocFolder::Chunks, DocFolder::Snapshots, DocFolder::Archive] {
            docs.extend(
                replica
                    .list_docs_in(folder)
                    .map_err(|source| ScanError::Docs {
                        dir: folder.dir(),
                        source,
                    })?,
            );
        }
        docs.remove(ROSTER_DOC);
        docs.remove(AUDIENCE_DOC);
        // Their audience grants: without them, a private batch they
        // submitted or rotated would lose its keys for everyone.
        for name in replica
            .list_chunks(AUDIENCE_DOC)
            .map_err(ScanError::Grants)?
        {
            let Ok(sealed) = replica.read_chunk(AUDIENCE_DOC, &name) else {
                continue;
            };
            if let Ok(opened) = open_with(&self.data_keys, &sealed)
                && opened.header.domain == Domain::Grant
                && &opened.header.writer == member
            {
                out.keys.insert(accepted_key(&opened.signed_bytes()));
                out.grant_files += 1;
            }
        }
        for doc in &docs {
            for name in replica
                .list_chunks(doc)
                .map_err(|source| ScanError::Chunks {
                    doc: doc.clone(),
                    source,
                })?
            {
                let Ok(sealed) = replica.read_chunk(doc, &name) else {
                    continue;
                };
                if self.is_foreign_doc(doc) {
                    // A private batch this device cannot read (issue 13):
                    // its writer is unknown here, so the file is accepted
                    // by its store name (a hash of its bytes: no file made
                    // later can take it).
                    out.keys.insert(DocFolder::Chunks.store_name(doc, &name));
                    out.private_files += 1;
                    continue;
                }
                if let Ok(opened) = self.signed_chunk(doc, &name, &sealed)
                    && &opened.header.writer == member
                {
                    out.keys.insert(accepted_key(&opened.signed_bytes()));
                    out.chunk_files += 1;
                }
            }
            for folder in [DocFolder::Snapshots, DocFolder::Archive] {
                for name in
                    replica
                        .list_doc_files(folder, doc)
                        .map_err(|source| ScanError::Snapshots {
                            doc: doc.clone(),
                            source,
                        })?
                {
                    let Ok(sealed) = replica.read_doc_file(folder, doc, &name) else {
                        continue;
                    };
                    let file = folder.store_name(doc, &name);
                    if self.is_foreign_doc(doc) {
                        out.keys.insert(file);
                        out.private_files += 1;
                        continue;
                    }
                    let expect = Expect {
                        domain: Domain::Snapshot,
                        workspace: &self.workspace,
                        document: Some(doc),
                    };
                    let Ok((opened, _)) =
                        open_verified_with(&self.data_keys, &self.roster, &sealed, &file, expect)
                    else {
                        continue;
                    };
                    if &opened.header.writer == member {
                        out.keys.insert(accepted_key(&opened.signed_bytes()));
                        out.snapshot_files += 1;
                    }
                    let Ok(entries) = snapshot::decode(&opened.payload) else {
                        continue;
                    };
                    for (entry, signed) in entries {
                        let chunk_file = DocFolder::Chunks.store_name(doc, &entry);
                        if let Ok((opened, by)) =
                            verify_signed(&self.roster, signed, &chunk_file, self.expect_chunk(doc))
                            && &by.id() == member
                            && out.keys.insert(accepted_key(&opened.signed_bytes()))
                        {
                            out.bundled_chunks += 1;
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
