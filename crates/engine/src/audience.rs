//! Private batches (issue 13, data placement): turning an `audience` of
//! member names into a grant at submit, rotating a batch's key when its
//! audience changes, and the rotation every audience member's device does
//! when a member of an audience is removed from the roster.
//!
//! The cryptography (grants, their chain rules) is `bridge_crypto::grant`;
//! the vault reads grants and seals a private batch's files to its newest
//! key. This module decides *who*: names resolved against the roster's
//! latest epoch, `devices` meaning every member that is not a runner, and
//! the submitter always included.

use std::collections::BTreeSet;

use bridge_crypto::{BatchKey, GrantError, MemberId, NewGrant, Notice, PublicKey, Role, Roster};
use bridge_model::Millis;

use crate::vault::Vault;

/// Why an audience cannot be resolved or written. The hints are the
/// command line's.
#[derive(Debug, thiserror::Error)]
pub enum AudienceError {
    /// A name in the audience is not a member.
    #[error(
        "`{}` in the audience is not a member of this workspace",
        crate::text::safe(name)
    )]
    UnknownMember {
        /// The name.
        name: String,
        /// The members, as `name (role)`, for the hint.
        known: Vec<String>,
    },
    /// The grant cannot be sealed.
    #[error("cannot write the audience of batch {batch}")]
    Seal {
        /// The batch.
        batch: String,
        /// Why.
        #[source]
        source: GrantError,
    },
    /// The grant file cannot be written.
    #[error(transparent)]
    Vault(#[from] bridge_vault::SaveError),
    /// The grant just written does not open.
    #[error("cannot read back the audience grant just written")]
    ReadBack(#[source] GrantError),
    /// The batch has no valid grant.
    #[error("batch {batch} is not private (it has no valid audience grant)")]
    NotPrivate {
        /// The batch.
        batch: String,
    },
    /// This device is not in the batch's audience.
    #[error("this device is not in the audience of batch {batch}: it cannot change it")]
    NotInAudience {
        /// The batch.
        batch: String,
    },
    /// The batch's keys do not open here.
    #[error("the keys of batch {batch} do not open with this device's key")]
    KeysDoNotOpen {
        /// The batch.
        batch: String,
    },
}

/// The audience word for every member that is not a runner (roles admin
/// and submit).
pub const DEVICES: &str = "devices";

/// An audience resolved against the roster.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The members' public keys, sorted by member id.
    pub keys: Vec<PublicKey>,
    /// Whether the writer was added because the list did not name it.
    pub added_self: bool,
}

/// Resolves `names` (member names of the roster's latest epoch, or
/// [`DEVICES`]) to their keys, adding `me`. An unknown name is an error
/// that lists the members.
pub fn resolve_names(
    roster: &Roster,
    names: &[String],
    me: &MemberId,
) -> Result<Resolved, AudienceError> {
    let latest = roster.latest();
    let mut ids: BTreeSet<MemberId> = BTreeSet::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        if name == DEVICES {
            ids.extend(
                latest
                    .members
                    .iter()
                    .filter(|m| m.role != Role::Worker)
                    .map(|m| m.id()),
            );
            continue;
        }
        match latest.member_by_name(name) {
            Some(m) => {
                ids.insert(m.id());
            }
            None => {
                let known: Vec<String> = latest
                    .members
                    .iter()
                    .map(|m| format!("{} ({})", m.name, m.role))
                    .collect();
                return Err(AudienceError::UnknownMember {
                    name: name.to_owned(),
                    known,
                });
            }
        }
    }
    let added_self = ids.insert(me.clone());
    let keys = ids
        .iter()
        .filter_map(|id| latest.member(id).map(|m| m.key.clone()))
        .collect();
    Ok(Resolved { keys, added_self })
}

/// The member names of an audience (ids not in the roster shown as ids).
pub fn names(roster: &Roster, audience: &[MemberId]) -> Vec<String> {
    audience
        .iter()
        .map(|id| {
            roster
                .epochs()
                .iter()
                .rev()
                .find_map(|e| e.member(id).map(|m| m.name.clone()))
                .unwrap_or_else(|| id.to_string())
        })
        .collect()
}

/// Writes generation 0 of a new private batch: `key` sealed to `audience`.
/// Returns the notice (to add to the vault) and the grant's store name.
pub fn write_first_grant(
    vault: &Vault,
    batch: &str,
    audience: &[PublicKey],
    key: &BatchKey,
    tasks: u64,
    documents: u64,
    now: Millis,
) -> Result<(Notice, String), AudienceError> {
    let grant = NewGrant {
        batch,
        prev: None,
        audience,
        keys: std::slice::from_ref(key),
        tasks,
        documents,
        now,
    };
    write(vault, &grant)
}

fn write(vault: &Vault, grant: &NewGrant<'_>) -> Result<(Notice, String), AudienceError> {
    let (sealed, _) =
        bridge_crypto::seal_grant(vault.identity(), vault.roster(), grant).map_err(|source| {
            AudienceError::Seal {
                batch: grant.batch.to_owned(),
                source,
            }
        })?;
    let file = vault.write_grant_file(&sealed)?;
    let notice = bridge_crypto::open_grant(&vault.read_keys(), vault.roster(), &sealed, &file)
        .map_err(AudienceError::ReadBack)?;
    tracing::debug!(%file, generation = notice.body.generation, "audience grant written");
    Ok((notice, file))
}

/// Writes the next generation of private batch `batch` with `audience`
/// (keys of the roster's latest epoch) and a fresh key; every earlier
/// secret goes with it, so an added member reads the whole batch and a
/// removed one nothing written afterwards. This device must hold the
/// batch's keys and be in the newest generation's audience.
pub fn rotate(
    vault: &Vault,
    batch: &str,
    audience: &[PublicKey],
    now: Millis,
) -> Result<Notice, AudienceError> {
    let current = vault
        .audience(batch)
        .and_then(|a| a.newest().cloned())
        .ok_or_else(|| AudienceError::NotPrivate {
            batch: batch.to_owned(),
        })?;
    let me = vault.identity().member_id();
    if !current.includes(me) {
        return Err(AudienceError::NotInAudience {
            batch: batch.to_owned(),
        });
    }
    let mut keys =
        current
            .open_keys(vault.identity())
            .ok_or_else(|| AudienceError::KeysDoNotOpen {
                batch: batch.to_owned(),
            })?;
    keys.push(BatchKey::generate());
    let grant = NewGrant {
        batch,
        prev: Some(&current),
        audience,
        keys: &keys,
        tasks: current.body.tasks,
        documents: current.body.documents,
        now,
    };
    write(vault, &grant).map(|(notice, _)| notice)
}

/// The private batches whose newest audience names a member no longer in
/// the roster's latest epoch, and that this device (in that audience) may
/// rotate: each with the remaining audience's keys.
pub fn stale_audiences(vault: &Vault) -> Vec<(String, Vec<PublicKey>)> {
    let me = vault.identity().member_id();
    let latest = vault.roster().latest();
    let mut out = Vec::new();
    for (batch, audience) in vault.private_batches() {
        let Some(newest) = audience.newest() else {
            continue;
        };
        if !newest.includes(me) || latest.member(me).is_none() {
            continue;
        }
        let remaining: Vec<PublicKey> = newest
            .body
            .audience
            .iter()
            .filter_map(|id| latest.member(id).map(|m| m.key.clone()))
            .collect();
        if remaining.len() < newest.body.audience.len() && !remaining.is_empty() {
            out.push((batch, remaining));
        }
    }
    out
}

/// What a member outside a private batch's audience may know of it: the
/// grant's notice (issue 13). No task name, command or result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PrivateSummary {
    /// The batch id.
    pub batch: String,
    /// The names of its audience (newest generation).
    pub audience: Vec<String>,
    /// How many tasks it holds.
    pub tasks: u64,
    /// How many documents it spans.
    pub documents: u64,
    /// When its newest grant was written.
    pub granted_at: String,
}

impl PrivateSummary {
    /// "private to alice-laptop, home-server: 40 tasks".
    pub fn line(&self) -> String {
        format!(
            "private to {}: {} task{}",
            self.audience.join(", "),
            self.tasks,
            if self.tasks == 1 { "" } else { "s" }
        )
    }
}

/// The private batches this device cannot read, from their grants.
pub fn foreign_summaries(vault: &Vault) -> Vec<PrivateSummary> {
    vault
        .private_batches()
        .into_iter()
        .filter(|(batch, _)| vault.is_foreign_batch(batch))
        .filter_map(|(batch, audience)| {
            let newest = audience.newest()?;
            Some(PrivateSummary {
                audience: names(vault.roster(), &newest.body.audience),
                tasks: newest.body.tasks,
                documents: newest.body.documents,
                granted_at: crate::text::timestamp(newest.body.created_at),
                batch,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_crypto::{Identity, Member};

    fn roster() -> (Roster, Vec<Identity>) {
        let ids: Vec<Identity> = (0..4).map(|_| Identity::generate().unwrap()).collect();
        let (r, _) = Roster::genesis(&ids[0], "hub", "ws", 1).unwrap();
        let mut r = r;
        for (i, (name, role)) in [
            ("alice-laptop", Role::Submit),
            ("home-server", Role::Submit),
            ("r1", Role::Worker),
        ]
        .into_iter()
        .enumerate()
        {
            let member = Member {
                name: name.to_owned(),
                key: ids[i + 1].public(),
                role,
            };
            r = r.add_member(&ids[0], member, 2 + i as i64).unwrap().0;
        }
        (r, ids)
    }

    fn named(roster: &Roster, names: &[&str], me: &Identity) -> Result<Vec<String>, String> {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        resolve_names(roster, &names, me.member_id())
            .map(|r| {
                let ids: Vec<MemberId> = r.keys.iter().map(PublicKey::member_id).collect();
                let mut out = self::names(roster, &ids);
                out.sort();
                out
            })
            .map_err(|e| match &e {
                AudienceError::UnknownMember { known, .. } => {
                    format!("{e} / {} / {DEVICES}", known.join(", "))
                }
                e => e.to_string(),
            })
    }

    #[test]
    fn devices_means_every_member_but_runners_and_the_submitter_is_always_in() {
        let (r, ids) = roster();
        assert_eq!(
            named(&r, &["devices"], &ids[1]).unwrap(),
            ["alice-laptop", "home-server", "hub"]
        );
        assert_eq!(
            named(&r, &["home-server"], &ids[1]).unwrap(),
            ["alice-laptop", "home-server"]
        );
        let resolved = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
            match resolve_names(&r, &names, ids[1].member_id()) {
                Ok(r) => r,
                Err(e) => panic!("{e}"),
            }
        };
        assert!(resolved(&["home-server"]).added_self);
        assert!(!resolved(&["home-server", "alice-laptop"]).added_self);
        // A runner can be named explicitly (the user's choice), not by `devices`.
        assert_eq!(named(&r, &["r1"], &ids[1]).unwrap(), ["alice-laptop", "r1"]);
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_members_listed() {
        let (r, ids) = roster();
        let err = named(&r, &["home-srever"], &ids[1]).unwrap_err();
        assert!(err.contains("`home-srever`"), "{err}");
        for name in [
            "hub (admin)",
            "alice-laptop (submit)",
            "home-server (submit)",
            "r1 (worker)",
            "devices",
        ] {
            assert!(err.contains(name), "{err}");
        }
    }
}
