//! Writing: a commit built on this slot's tip with one `git fast-import`
//! (no work tree, no index), pushed with `--force-with-lease`, and rebuilt
//! on the new tip when another process of the same slot won the race.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use super::classify::{classify, is_stale_rejection};
use super::command::{IDENT_EMAIL, IDENT_NAME};
use super::parse::{parse_oid_lines, parse_push_porcelain};
use super::tree::git_path;
use super::{BACKOFF, Change, GitRemote, MAX_ATTEMPTS, NamedBytes, PushOutcome, RefUpdate, Tree};
use crate::names::{FORMAT_NAME, StoreName, WORKSPACE_NAME};
use crate::remote::{Remote as _, RemoteError};

impl GitRemote {
    /// Builds a commit applying `change` on this slot's tip and pushes it,
    /// rebuilding on the new tip when another process of the slot won.
    pub(super) fn commit_and_push(&self, change: Change<'_>) -> Result<(), RemoteError> {
        let _write = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.ensure_fetched()?;
        let mut blob_ids: HashMap<String, String> = HashMap::new();
        let mut attempt = 0;
        loop {
            let base = self.state().tip.clone();
            let Some(tree) = self.build_commit(change, base.as_deref(), &mut blob_ids)? else {
                tracing::debug!(slot = self.slot, "nothing new to push");
                return Ok(());
            };
            let (error, stale) = match self.push(&tree.commit, base.as_deref())? {
                PushOutcome::Pushed => {
                    self.pushed.fetch_add(1, Ordering::Relaxed);
                    let mut state = self.state();
                    state.tip = Some(tree.commit.clone());
                    state.trees.insert(self.ref_name(), Arc::new(tree));
                    return Ok(());
                }
                PushOutcome::Stale(reason) => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(slot = self.slot, attempt, reason, "push lost a race");
                    let error = RemoteError::PushRejected {
                        remote: self.describe(),
                        reference: self.ref_name(),
                        reason: format!(
                            "{reason}, still after {MAX_ATTEMPTS} attempts: another process keeps writing slot {:?}",
                            self.slot
                        ),
                    };
                    (error, true)
                }
                PushOutcome::Transient(error) => {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(slot = self.slot, attempt, error = %error, "push failed; retrying");
                    (error, false)
                }
            };
            attempt += 1;
            if attempt >= MAX_ATTEMPTS {
                return Err(error);
            }
            std::thread::sleep(BACKOFF.delay(attempt));
            if stale {
                // Another process of this slot pushed: build on its tip.
                self.refresh_own_tip()?;
            }
        }
    }

    /// Builds the commit of `change` on `base` with one `git fast-import`.
    /// Returns `None` when it would change nothing, else the commit and its
    /// store files.
    pub(super) fn build_commit(
        &self,
        change: Change<'_>,
        base: Option<&str>,
        blob_ids: &mut HashMap<String, String>,
    ) -> Result<Option<Tree>, RemoteError> {
        // A slot whose writer used a legacy branch (a store made before
        // issue 15) continues under the new ref: its first commit there
        // starts from every file of the branch, so the new ref alone holds
        // the slot; the branch stays as it is (still read).
        let (mut files, carried) = match base {
            Some(commit) => (self.files_of(commit)?, BTreeMap::new()),
            None => {
                let legacy = self.legacy_files();
                (legacy.clone(), legacy)
            }
        };
        let Change::Add(added) = change;
        let mut new: Vec<&(String, Vec<u8>)> = Vec::new();
        let mut seen = BTreeSet::new();
        for file in added {
            if !files.contains_key(&file.0) && seen.insert(file.0.as_str()) {
                new.push(file);
            }
        }
        if new.is_empty() {
            return Ok(None);
        }
        // Blobs already written by an earlier try are named by id.
        let (known, unwritten): (Vec<&NamedBytes>, Vec<&NamedBytes>) = new
            .into_iter()
            .partition(|(name, _)| blob_ids.contains_key(name));
        let mut by_id: Vec<(String, String)> = known
            .iter()
            .filter_map(|(name, _)| Some((name.clone(), blob_ids.get(name)?.clone())))
            .collect();
        by_id.extend(carried);
        // Every slot carries FORMAT and workspace: copy them from another
        // slot into this one's first commit.
        for special in [FORMAT_NAME, WORKSPACE_NAME] {
            if !files.contains_key(special)
                && !seen.contains(special)
                && let Some(id) = self.other_slot_blob(special)
            {
                by_id.push((special.to_owned(), id));
            }
        }
        let inline: Vec<(&str, &[u8])> = unwritten
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
            .collect();
        let message = format!("bridge: add {} files", inline.len() + by_id.len());
        let (commit, ids) = self.fast_commit(base, &inline, &by_id, &message)?;
        for ((name, _), id) in inline.iter().zip(ids) {
            blob_ids.insert((*name).to_owned(), id.clone());
            files.insert((*name).to_owned(), id);
        }
        files.extend(by_id);
        files.retain(|name, _| StoreName::parse(name).is_some());
        Ok(Some(Tree { commit, files }))
    }

    /// The store files of `commit`: from the last listing when it is a
    /// slot's tip there, else read from the cache repository.
    pub(super) fn files_of(&self, commit: &str) -> Result<BTreeMap<String, String>, RemoteError> {
        let known = self
            .state()
            .trees
            .values()
            .find(|t| t.commit == commit)
            .map(|t| t.files.clone());
        match known {
            Some(files) => Ok(files),
            None => Ok(self.list_commits(&[commit])?.pop().unwrap_or_default()),
        }
    }

    /// Writes, with one `git fast-import`, the blobs `inline` and a commit
    /// on `base` (parentless without one) that adds them and the existing
    /// blobs `by_id` at their names. Returns the commit and the ids of the
    /// `inline` blobs, in order.
    ///
    /// fast-import needs a ref to build on: a private one, named after this
    /// process, deleted again in the same stream (reset to the null id), so
    /// that nothing is left behind in the cache repository.
    pub(super) fn fast_commit(
        &self,
        base: Option<&str>,
        inline: &[(&str, &[u8])],
        by_id: &[(String, String)],
        message: &str,
    ) -> Result<(String, Vec<String>), RemoteError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let scratch = format!(
            "refs/bridge-build/{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let null = "0".repeat(self.oid_hex_len()?);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let total: usize = inline.iter().map(|(_, b)| b.len() + 40).sum();
        let mut input = Vec::with_capacity(total + (inline.len() + by_id.len()) * 140 + 512);
        for (i, (_, bytes)) in inline.iter().enumerate() {
            input.extend_from_slice(
                format!("blob\nmark :{}\ndata {}\n", i + 1, bytes.len()).as_bytes(),
            );
            input.extend_from_slice(bytes);
            input.push(b'\n');
        }
        let mark = inline.len() + 1;
        input.extend_from_slice(
            format!(
                "reset {scratch}\ncommit {scratch}\nmark :{mark}\ncommitter {IDENT_NAME} <{IDENT_EMAIL}> {now} +0000\ndata {}\n{message}\n",
                message.len() + 1
            )
            .as_bytes(),
        );
        if let Some(base) = base {
            input.extend_from_slice(format!("from {base}\n").as_bytes());
        }
        for (i, (name, _)) in inline.iter().enumerate() {
            let path = git_path(name);
            input.extend_from_slice(format!("M 100644 :{} {path}\n", i + 1).as_bytes());
        }
        for (name, id) in by_id {
            let path = git_path(name);
            input.extend_from_slice(format!("M 100644 {id} {path}\n").as_bytes());
        }
        input.push(b'\n');
        for i in 1..=mark {
            input.extend_from_slice(format!("get-mark :{i}\n").as_bytes());
        }
        input.extend_from_slice(format!("reset {scratch}\nfrom {null}\n\ndone\n").as_bytes());
        let args = ["fast-import", "--quiet", "--done"];
        let out = self.ok(&args, None, Some(&input))?;
        let mut ids =
            parse_oid_lines(&out, mark).map_err(|detail| self.bad_output(&args, detail))?;
        let commit = ids.pop().unwrap_or_default();
        Ok((commit, ids))
    }

    /// The blob of `name` in another ref's tree, if one holds it.
    pub(super) fn other_slot_blob(&self, name: &str) -> Option<String> {
        let state = self.state();
        let own = self.ref_name();
        state
            .trees
            .iter()
            .filter(|(key, _)| **key != own)
            .find_map(|(_, tree)| tree.files.get(name).cloned())
    }

    /// The store files of this slot's legacy branch in the last listing
    /// (empty without one).
    pub(super) fn legacy_files(&self) -> BTreeMap<String, String> {
        self.state()
            .trees
            .get(&self.legacy_ref_name())
            .map(|t| t.files.clone())
            .unwrap_or_default()
    }

    /// Pushes `commit` to this slot's ref with a lease on `base`.
    pub(super) fn push(
        &self,
        commit: &str,
        base: Option<&str>,
    ) -> Result<PushOutcome, RemoteError> {
        self.push_to(self.ref_name(), commit, base)
    }

    /// Pushes `commit` to ref `dst` with a lease on `base`.
    pub(super) fn push_to(
        &self,
        dst: String,
        commit: &str,
        base: Option<&str>,
    ) -> Result<PushOutcome, RemoteError> {
        let update = RefUpdate {
            dst,
            new: Some(commit.to_owned()),
            lease: base.map(str::to_owned),
        };
        let mut outcomes = self.push_refs(std::slice::from_ref(&update))?;
        Ok(outcomes.pop().unwrap_or(PushOutcome::Pushed))
    }

    /// Updates (or deletes) every ref of `updates` with one `git push`,
    /// each with a lease on the tip it was built on. Not atomic: each ref
    /// lands or fails on its own, so each update must be correct alone.
    /// Returns one outcome per update, in order; a rejection other than a
    /// lost lease fails the whole call.
    pub(super) fn push_refs(&self, updates: &[RefUpdate]) -> Result<Vec<PushOutcome>, RemoteError> {
        let mut leases = Vec::with_capacity(updates.len());
        let mut refspecs = Vec::with_capacity(updates.len());
        for u in updates {
            leases.push(format!(
                "--force-with-lease={}:{}",
                u.dst,
                u.lease.as_deref().unwrap_or("")
            ));
            refspecs.push(format!("{}:{}", u.new.as_deref().unwrap_or(""), u.dst));
        }
        // --no-verify: a global pre-push hook has no business with our
        // private cache repository.
        let mut args = vec!["push", "--progress", "--porcelain", "--no-verify"];
        args.extend(leases.iter().map(String::as_str));
        args.push(self.url.as_str());
        args.extend(refspecs.iter().map(String::as_str));
        let output = self.run(&args, None, None)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<Option<(char, String)>> = updates
            .iter()
            .map(|u| parse_push_porcelain(&stdout, &u.dst))
            .collect();
        // git exits non-zero when any ref was rejected: the others' lines
        // still say how they went.
        let explained =
            output.status.success() || lines.iter().any(|l| matches!(l, Some(('!', _))));
        let mut outcomes = Vec::with_capacity(updates.len());
        for (u, line) in updates.iter().zip(lines) {
            let outcome = match line {
                Some((flag, _)) if flag != '!' && explained => PushOutcome::Pushed,
                Some(('!', summary)) => {
                    if is_stale_rejection(&summary) {
                        PushOutcome::Stale(summary)
                    } else {
                        return Err(RemoteError::PushRejected {
                            remote: self.describe(),
                            reference: u.dst.clone(),
                            reason: summary,
                        });
                    }
                }
                _ if output.status.success() => PushOutcome::Pushed,
                _ => {
                    let class = classify(&String::from_utf8_lossy(&output.stderr));
                    let error = self.failure(&args, &output, class);
                    if class.is_retryable() {
                        PushOutcome::Transient(error)
                    } else {
                        return Err(error);
                    }
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}
