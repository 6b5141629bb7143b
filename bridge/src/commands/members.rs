//! `bridge members`: the workspace's roster of members and their roles.

use std::collections::BTreeSet;

use anyhow::anyhow;
use bridge_crypto::{ExposeSecret, Identity, Member, PublicKey, Role, Roster};
use clap::{Args, Subcommand};
use serde_json::json;

use super::GlobalArgs;
use super::common::sync_and_report;
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::keys;
use crate::output::{print_json, print_table};
use crate::vault::{ROSTER_DOC, Vault};
use crate::workspace::{Session, Workspace, now_ms};

/// Manage who may read, submit to and work for this workspace
///
/// Roles: admin (manage members, submit, work), submit (submit and work),
/// worker (claim and report results only: a CI runner's key). Every change
/// starts a new roster epoch, signed by an admin; files written later are
/// encrypted to the members of that epoch only.
#[derive(Debug, Args)]
pub struct MembersArgs {
    #[command(subcommand)]
    pub command: MembersCommand,
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// List the members of the latest epoch
    Ls {
        /// Print JSON: {"epoch", "members": [{"name", "role", "member", "public_key"}], "removed": [...]}
        #[arg(long)]
        json: bool,
    },
    /// Add a member by the public key `bridge whoami` printed on their device
    Add {
        /// A name for the member (unique)
        name: String,
        /// Their public key (bridge1:…)
        public_key: String,
        /// Their role: admin, submit or worker
        #[arg(long, default_value = "submit")]
        role: Role,
    },
    /// Remove a member: later files are encrypted without them and their
    /// later signatures are refused
    Remove {
        /// The member's name
        name: String,
    },
    /// Create a worker identity for a CI runner, add it, and print its secret once
    AddRunner {
        /// A name for the runner (unique)
        name: String,
    },
}

pub fn run(g: &GlobalArgs, args: MembersArgs) -> CliResult<u8> {
    let ws = Workspace::find(g.workspace.as_deref())?;
    let root = root_of(&ws)?;
    let mut vault = open_vault(&ws)?;
    match args.command {
        MembersCommand::Ls { json } => {
            list(vault.roster(), json)?;
            return Ok(EXIT_OK);
        }
        MembersCommand::Add {
            name,
            public_key,
            role,
        } => {
            let key: PublicKey = public_key.parse().map_err(|e| {
                CliError::hint(
                    anyhow!("`{public_key}` is not a bridge public key: {e}"),
                    "copy the line `bridge whoami` prints on that device",
                )
            })?;
            let member = Member {
                name: name.clone(),
                key,
                role,
            };
            change(&mut vault, |r, id| r.add_member(id, member, now_ms()))?;
            if !g.quiet {
                outln!(
                    "Added {name} as {} (epoch {}).",
                    role.as_str(),
                    vault.roster().latest().number
                );
                let remote = ws.config.store.remote.as_deref().unwrap_or("dir:PATH");
                outln!("On that device: bridge join {remote} --root {root}");
            }
        }
        MembersCommand::Remove { name } => {
            let gone = vault
                .roster()
                .latest()
                .member_by_name(&name)
                .map(Member::id)
                .ok_or_else(|| {
                    CliError::hint(
                        anyhow!("no member is named `{name}`"),
                        "see the members with `bridge members ls`",
                    )
                })?;
            // The removed member's files that are here now stay valid; any
            // other file they sign later is refused.
            let accepted = files_signed_by(&ws, &vault, &gone)?;
            let n = accepted.len();
            change(&mut vault, |r, id| {
                r.remove_member(id, &name, accepted, now_ms())
            })?;
            if !g.quiet {
                outln!(
                    "Removed {name} (epoch {}); {n} of their files stay valid, later ones are refused.",
                    vault.roster().latest().number
                );
            }
        }
        MembersCommand::AddRunner { name } => {
            let runner = add_runner(&mut vault, &name)?;
            errln!("Added runner {name} (role worker). Its secret identity follows, printed once:");
            errln!("store it as the CI secret BRIDGE_IDENTITY now; it is not saved anywhere.");
            outln!("{}", runner.to_secret().expose_secret());
        }
    }
    let mut session = Session::with_vault(ws, vault)?;
    sync_and_report(&mut session, g)?;
    Ok(EXIT_OK)
}

/// The roster root pinned in `ws`'s bridge.toml, checked against this
/// device's pin.
fn root_of(ws: &Workspace) -> CliResult<bridge_crypto::MemberId> {
    let root = ws
        .config
        .workspace
        .root
        .parse()
        .map_err(|_| anyhow!("`root` in bridge.toml is not a member id"))?;
    keys::check_pin(&ws.config.workspace.id, &root)?;
    Ok(root)
}

/// Opens `ws`'s vault with this device's identity, verifying the roster.
pub fn open_vault(ws: &Workspace) -> CliResult<Vault> {
    let root = root_of(ws)?;
    let identity = keys::load_identity()?;
    let (vault, warnings) = Vault::open(ws.replica.clone(), identity, &root)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(vault)
}

/// Creates a worker identity for a CI runner, adds it to the roster as
/// `name` (a new epoch, signed by this device, which must be an admin) and
/// returns it. The identity is saved nowhere: the caller hands its secret to
/// the CI system once (`members add-runner` prints it, `init --github`
/// stores it as a repository secret).
pub fn add_runner(vault: &mut Vault, name: &str) -> CliResult<Identity> {
    let runner = new_runner_identity()?;
    add_runner_identity(vault, name, &runner)?;
    Ok(runner)
}

/// A fresh identity for a runner.
pub fn new_runner_identity() -> CliResult<Identity> {
    Identity::generate().map_err(|e| anyhow!(e).context("cannot create an identity").into())
}

/// Adds `runner` to the roster as the worker `name` (see [`add_runner`]).
pub fn add_runner_identity(vault: &mut Vault, name: &str, runner: &Identity) -> CliResult<()> {
    let member = Member {
        name: name.to_owned(),
        key: runner.public(),
        role: Role::Worker,
    };
    change(vault, |r, id| r.add_member(id, member, now_ms()))
}

/// A runner name not yet in the roster: `base`, else `base-2`, `base-3`, …
pub fn free_member_name(vault: &Vault, base: &str) -> String {
    let latest = vault.roster().latest();
    (1..)
        .map(|i| {
            if i == 1 {
                base.to_owned()
            } else {
                format!("{base}-{i}")
            }
        })
        .find(|n| latest.member_by_name(n).is_none())
        .unwrap_or_else(|| base.to_owned())
}

/// Refuses unless this device is an admin of the workspace (only an admin
/// may change the members).
pub fn require_admin(vault: &Vault) -> CliResult<()> {
    let me = vault.me()?;
    if !me.role.can_admin() {
        return Err(CliError::hint(
            anyhow!(
                "only an admin can change the members; this device is {} ({})",
                me.name,
                me.role.as_str()
            ),
            "ask an admin of the workspace",
        ));
    }
    Ok(())
}

/// Applies a roster change made by this device (an admin) and saves the new
/// epoch, plus the earlier epochs re-sealed so new members can verify the chain.
fn change(
    vault: &mut Vault,
    f: impl FnOnce(&Roster, &Identity) -> Result<(Roster, Vec<u8>), bridge_crypto::RosterError>,
) -> CliResult<()> {
    require_admin(vault)?;
    let (roster, file) = f(vault.roster(), vault.identity())
        .map_err(|e| anyhow!(e).context("cannot change the roster"))?;
    vault.write_roster_file(&file)?;
    for older in roster
        .reseal_history()
        .map_err(|e| anyhow!(e).context("cannot re-seal the roster history"))?
    {
        vault.write_roster_file(&older)?;
    }
    vault.set_roster(roster);
    Ok(())
}

/// Store names of the chunk files signed by `member`.
fn files_signed_by(
    ws: &Workspace,
    vault: &Vault,
    member: &bridge_crypto::MemberId,
) -> CliResult<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for doc in ws.replica.list_docs().map_err(|e| anyhow!(e))? {
        if doc == ROSTER_DOC {
            continue;
        }
        for name in ws.replica.list_chunks(&doc).map_err(|e| anyhow!(e))? {
            let Ok(bytes) = ws.replica.read_chunk(&doc, &name) else {
                continue;
            };
            if vault.writer_of(&bytes).as_ref() == Some(member) {
                out.insert(format!("chunks/{doc}/{name}"));
            }
        }
    }
    Ok(out)
}

fn list(roster: &Roster, json: bool) -> CliResult<()> {
    let latest = roster.latest();
    if json {
        let members: Vec<_> = latest
            .members
            .iter()
            .map(|m| json!({"name": m.name, "role": m.role.as_str(), "member": m.id(), "public_key": m.key.to_string()}))
            .collect();
        let removed: Vec<_> = latest
            .removed
            .iter()
            .map(|r| json!({"member": r.member, "epoch": r.epoch}))
            .collect();
        print_json(&json!({"epoch": latest.number, "members": members, "removed": removed}))?;
        return Ok(());
    }
    outln!(
        "Roster epoch {} of workspace {}",
        latest.number,
        roster.workspace()
    );
    let rows: Vec<Vec<String>> = latest
        .members
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.role.as_str().to_owned(),
                m.id().to_string(),
                m.key.to_string(),
            ]
        })
        .collect();
    print_table(&["NAME", "ROLE", "MEMBER", "PUBLIC KEY"], &rows)?;
    for r in &latest.removed {
        outln!("removed in epoch {}: {}", r.epoch, r.member);
    }
    Ok(())
}
