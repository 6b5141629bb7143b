//! `bridge members`: the workspace's roster of members and their roles.

use anyhow::anyhow;
use bridge_crypto::{ExposeSecret, Identity, Member, MemberId, PublicKey, Role, Roster};
use bridge_store::SyncError;
use clap::{Args, Subcommand};
use serde_json::json;

use super::GlobalArgs;
use super::common::{open_remote, sync_and_report};
use crate::error::{CliError, CliResult, EXIT_OFFLINE, EXIT_OK};
use crate::freshness::{self, Anchor};
use crate::github::ApiError;
use crate::keys;
use crate::output::{print_json, print_table};
use crate::vault::Vault;
use crate::workspace::{CONFIG_FILE, Session, Workspace, now_ms};

/// Manage who may read, submit to and work for this workspace
///
/// Roles: admin (manage members, submit, work), submit (submit and work),
/// worker (claim and report results only: a CI runner's key). Every change
/// starts a new roster epoch, signed by an admin; files written later are
/// encrypted to the members of that epoch only. Every change also pins the
/// new epoch in bridge.toml (`[workspace] roster = "EPOCH:HASH"`): commit
/// and push it, so that runners and new clones refuse a store whose roster
/// was rolled back (someone with write access deleting newer epochs).
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
    ///
    /// Syncs first (when a remote is set), then keeps every file the member
    /// signed until now valid (loose, compacted into snapshots or
    /// archived): their results stay. A file they push after this removal
    /// reaches the remote is refused.
    Remove {
        /// The member's name
        name: String,
        /// Do not sync first: files the member pushed that this device has
        /// not pulled yet will be refused (their results lost)
        #[arg(long)]
        offline: bool,
    },
    /// Create a worker identity for a CI runner, add it, and print its secret once
    AddRunner {
        /// A name for the runner (unique)
        name: String,
        /// Print JSON: {"name", "role", "member", "public_key", "identity"
        /// (the secret, printed once), "roster": "EPOCH:HASH"}
        #[arg(long)]
        json: bool,
    },
    /// Replace a runner's identity (leaked, or routine rotation): issue a
    /// new worker identity under the same name, retire the old one, keep
    /// every result it pushed
    ///
    /// Syncs first, like `members remove`. The new secret is printed once,
    /// or with --github stored as the repository secret BRIDGE_IDENTITY of
    /// the [github] repository (sealed with its public key, never printed).
    RotateRunner {
        /// The runner's name (a member with the worker role)
        name: String,
        /// Store the new identity as the Actions secret of the repository in
        /// bridge.toml's [github] section instead of printing it
        #[arg(long)]
        github: bool,
        /// Do not sync first (see `members remove --offline`)
        #[arg(long)]
        offline: bool,
    },
}

pub fn run(g: &GlobalArgs, args: MembersArgs) -> CliResult<u8> {
    let ws = Workspace::find(g.workspace.as_deref(), g.engine())?;
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
            check_new_name(&name)?;
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
            let anchor = change(&ws, &mut vault, |r, id| r.add_member(id, member, now_ms()))?;
            if !g.quiet {
                outln!(
                    "Added {name} as {} (epoch {}).",
                    role.as_str(),
                    anchor.number
                );
                let remote = ws.config.store.remote.as_deref().unwrap_or("dir:PATH");
                let blobs = ws
                    .config
                    .blobs()
                    .map(|b| format!(" --blobs {b}"))
                    .unwrap_or_default();
                outln!(
                    "On that device: bridge join {remote}{blobs} --root {root} --roster {anchor}"
                );
                pinned_note(&anchor);
            }
        }
        MembersCommand::Remove { name, offline } => {
            require_admin(&vault)?;
            member_named(&vault, &name)?;
            vault = sync_before_removal(&ws, vault, offline, &name)?;
            // Looked up again after the sync: another admin may have
            // rotated or re-added the name meanwhile, and the files kept
            // must be those of the key that is removed.
            let gone = member_named(&vault, &name)?.id();
            let anchor = retire(&ws, &mut vault, &name, &gone, g.quiet)?;
            if !g.quiet {
                outln!(
                    "Removed {name} (epoch {}); files they sign from now on are refused.",
                    anchor.number
                );
                pinned_note(&anchor);
            }
        }
        MembersCommand::AddRunner { name, json: true } => {
            check_new_name(&name)?;
            let (runner, anchor) = add_runner(&ws, &mut vault, &name)?;
            print_json(&json!({
                "name": name, "role": "worker", "member": runner.member_id(),
                "public_key": runner.public().to_string(),
                "identity": runner.to_secret().expose_secret(),
                "roster": anchor.to_string(),
            }))?;
        }
        MembersCommand::AddRunner { name, json: false } => {
            check_new_name(&name)?;
            let (runner, anchor) = add_runner(&ws, &mut vault, &name)?;
            errln!("Added runner {name} (role worker). Its secret identity follows, printed once:");
            errln!("store it as the CI secret BRIDGE_IDENTITY now; it is not saved anywhere.");
            outln!("{}", runner.to_secret().expose_secret());
            if !g.quiet {
                pinned_note(&anchor);
            }
        }
        MembersCommand::RotateRunner {
            name,
            github,
            offline,
        } => {
            rotate_runner(g, &ws, vault, &name, github, offline)?;
            let vault = open_vault(&ws)?;
            let mut session = Session::with_vault(ws, vault)?;
            sync_and_report(&mut session, g)?;
            return Ok(EXIT_OK);
        }
    }
    let mut session = Session::with_vault(ws, vault)?;
    sync_and_report(&mut session, g)?;
    Ok(EXIT_OK)
}

/// Tells the admin that bridge.toml changed and why it must be pushed.
fn pinned_note(anchor: &Anchor) {
    errln!(
        "{CONFIG_FILE} now pins roster epoch {}: commit and push it, so that runners and new clones \
         refuse a store whose roster was rolled back to before this change.",
        anchor.number
    );
}

/// The member called `name` in the latest epoch.
fn member_named<'a>(vault: &'a Vault, name: &str) -> CliResult<&'a Member> {
    vault.roster().latest().member_by_name(name).ok_or_else(|| {
        CliError::hint(
            anyhow!("no member is named `{name}`"),
            "see the members with `bridge members ls`",
        )
    })
}

/// Pulls what the remote holds before a member is removed, so that every
/// file they pushed until now is seen and stays accepted. An unreachable
/// remote refuses the removal unless `offline` (their files the remote
/// holds and this device lacks would be refused everywhere, and their
/// results recomputed). Returns the vault over the roster as synced.
fn sync_before_removal(
    ws: &Workspace,
    vault: Vault,
    offline: bool,
    name: &str,
) -> CliResult<Vault> {
    let Some(spec) = ws.remote_spec().filter(|_| !offline) else {
        return Ok(vault);
    };
    let remote = open_remote(&ws.settings, spec, &ws.root).map_err(|e| {
        CliError::hint(
            anyhow!(e),
            "set `remote` under [store] in bridge.toml to dir:PATH, git:URL or s3://BUCKET/PREFIX",
        )
    })?;
    match crate::sync::sync_store(&vault, &ws.replica, remote.as_ref(), &mut |_| {}, false) {
        Ok(report) => {
            for w in &report.skipped {
                tracing::warn!("{w}");
            }
        }
        Err(SyncError::Remote(e)) if e.is_remote_wide() => {
            return Err(CliError::hint(
                anyhow!(e).context(format!(
                    "cannot sync with {spec} before removing {name}, so the files {name} pushed there would be refused"
                )),
                "retry when the store is reachable, or pass --offline to remove them now and keep only the files this device holds",
            )
            .with_code(EXIT_OFFLINE));
        }
        Err(e) => {
            return Err(CliError::hint(
                anyhow!(e).context(format!("cannot sync with {spec} before removing {name}")),
                "check the [store] remote in bridge.toml, or pass --offline",
            ));
        }
    }
    // The sync may have brought roster changes made elsewhere.
    drop(vault);
    open_vault(ws)
}

/// Removes the member `name` (id `gone`), accepting every file they signed
/// that this replica holds. Returns the new epoch.
fn retire(
    ws: &Workspace,
    vault: &mut Vault,
    name: &str,
    gone: &MemberId,
    quiet: bool,
) -> CliResult<Anchor> {
    let found = vault.files_signed_by(gone)?;
    if !quiet {
        errln!(
            "{name} signed {} chunk files, {} snapshots and {} compacted chunks here: all stay valid.",
            found.chunk_files,
            found.snapshot_files,
            found.bundled_chunks
        );
        if found.grant_files > 0 {
            errln!(
                "{} audience grants of private batches they wrote stay valid too.",
                found.grant_files
            );
        }
        if found.private_files > 0 {
            errln!(
                "{} files of private batches this device cannot read stay valid too, whoever signed them.",
                found.private_files
            );
        }
    }
    let accepted = found.keys;
    change(ws, vault, |r, id| {
        r.remove_member(id, name, accepted, now_ms())
    })
}

/// `members rotate-runner`: a new identity for the worker `name`, the old
/// one retired with every file it signed accepted.
fn rotate_runner(
    g: &GlobalArgs,
    ws: &Workspace,
    vault: Vault,
    name: &str,
    github: bool,
    offline: bool,
) -> CliResult<()> {
    require_admin(&vault)?;
    let old = member_named(&vault, name)?.clone();
    if old.role != Role::Worker {
        return Err(CliError::hint(
            anyhow!(
                "{name} is a member with the {} role, not a runner (worker)",
                old.role.as_str()
            ),
            "rotate-runner replaces runner identities; for a device, run `bridge members remove` and add its new key",
        ));
    }
    // Check the repository before anything changes: a refused secret must
    // leave the old runner in place.
    let target = if github {
        let (section, repo) = crate::github::configured(ws, &g.settings)?;
        let gh = crate::github::connect(&g.settings, &repo)?;
        let key = gh
            .public_key()
            .map_err(|e| ApiError::new(e, gh.token_source))?;
        Some((section, repo, gh, key))
    } else {
        None
    };
    let mut vault = sync_before_removal(ws, vault, offline, name)?;
    // The key retired is the one the roster holds after the sync.
    let old = member_named(&vault, name)?.clone();
    if old.role != Role::Worker {
        return Err(anyhow!(
            "{name} is no longer a runner (worker) after the sync: nothing changed"
        )
        .into());
    }
    let runner = new_runner_identity()?;
    if let Some((_, repo, gh, key)) = &target {
        let sealed = bridge_github::seal(&key.key, runner.to_secret().expose_secret().as_bytes())
            .map_err(|e| {
            CliError::hint(
                anyhow!(e).context(format!("cannot seal the runner identity for {repo}")),
                "the answer to GET /repos/{owner}/{repo}/actions/secrets/public-key was not a key",
            )
        })?;
        gh.put_secret(crate::github::IDENTITY_SECRET, &key.key_id, &sealed)
            .map_err(|e| ApiError::new(e, gh.token_source))?;
    }
    let changed = retire(ws, &mut vault, name, &old.id(), g.quiet)
        .and_then(|_| add_runner_identity(ws, &mut vault, name, &runner));
    let anchor = match changed {
        Ok(anchor) => anchor,
        Err(e) => {
            // The repository secret already holds the new key: print it, so
            // that running the rotation again (or `members add-runner`) can
            // finish the change without another secret.
            if target.is_some() {
                errln!(
                    "The Actions secret {} already holds the new identity, but the roster change failed;                      the new identity follows, printed once:",
                    crate::github::IDENTITY_SECRET
                );
                outln!("{}", runner.to_secret().expose_secret());
            }
            return Err(e);
        }
    };
    match &target {
        Some((_, repo, _, _)) => {
            if !g.quiet {
                outln!(
                    "Rotated runner {name}: the new identity is the Actions secret {} of {repo}; \
                     the old one is retired (epoch {}), its results stay.",
                    crate::github::IDENTITY_SECRET,
                    anchor.number
                );
            }
        }
        None => {
            errln!(
                "Rotated runner {name}: the old identity is retired (epoch {}), its results stay. \
                 The new secret identity follows, printed once:",
                anchor.number
            );
            errln!("store it as the CI secret BRIDGE_IDENTITY now; it is not saved anywhere.");
            outln!("{}", runner.to_secret().expose_secret());
        }
    }
    if !g.quiet {
        pinned_note(&anchor);
    }
    Ok(())
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
    keys::check_pin(&ws.settings, &ws.config.workspace.id, &root)?;
    Ok(root)
}

/// Opens `ws`'s vault with this device's identity, verifying the roster
/// (and its freshness).
pub fn open_vault(ws: &Workspace) -> CliResult<Vault> {
    Ok(crate::workspace::open_vault(ws)?)
}

/// Creates a worker identity for a CI runner, adds it to the roster as
/// `name` (a new epoch, signed by this device, which must be an admin) and
/// returns it. The identity is saved nowhere: the caller hands its secret to
/// the CI system once (`members add-runner` prints it, `init --github`
/// stores it as a repository secret).
pub fn add_runner(ws: &Workspace, vault: &mut Vault, name: &str) -> CliResult<(Identity, Anchor)> {
    let runner = new_runner_identity()?;
    let anchor = add_runner_identity(ws, vault, name, &runner)?;
    Ok((runner, anchor))
}

/// Refuses a new member name that `run-tasks-from` could not name: its
/// keywords (`self`, `admins`, `members`), the near misses it refuses
/// (`admin`, `all`, …), names with spaces around them or control
/// characters, and names with commas (issue 13, item 2).
fn check_new_name(name: &str) -> CliResult<()> {
    use crate::run_policy::RunFrom;
    let why = match RunFrom::parse(name) {
        Ok(RunFrom::Named(_)) => return Ok(()),
        Ok(_) => format!("`{name}` is a word `run-tasks-from` reserves"),
        Err(e) => e.to_string(),
    };
    Err(CliError::hint(
        anyhow!(
            "cannot add a member named `{}`: {why}",
            crate::output::safe(name)
        ),
        "choose another name (devices name members in `run-tasks-from` under [worker]), e.g. the device's host name",
    ))
}

/// A fresh identity for a runner.
pub fn new_runner_identity() -> CliResult<Identity> {
    Identity::generate().map_err(|e| anyhow!(e).context("cannot create an identity").into())
}

/// Adds `runner` to the roster as the worker `name` (see [`add_runner`]).
pub fn add_runner_identity(
    ws: &Workspace,
    vault: &mut Vault,
    name: &str,
    runner: &Identity,
) -> CliResult<Anchor> {
    let member = Member {
        name: name.to_owned(),
        key: runner.public(),
        role: Role::Worker,
    };
    change(ws, vault, |r, id| r.add_member(id, member, now_ms()))
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

/// Refuses unless this device may submit work (admin or submit role): a
/// worker's (a CI runner's key) tasks, cancels and retries are ignored by
/// every device, so `what` would only seem to succeed.
pub fn require_submitter(vault: &Vault, what: &str) -> CliResult<()> {
    let me = vault.me()?;
    if !me.role.can_submit() {
        return Err(CliError::hint(
            anyhow!(
                "this device is {} with the {} role, which cannot {what}: every device would ignore it",
                me.name,
                me.role.as_str()
            ),
            "a runner's key only claims tasks and reports results; ask an admin of the workspace \
             (`bridge members ls` lists them) to do it, or to add this device with --role submit",
        ));
    }
    Ok(())
}

/// Applies a roster change made by this device (an admin) and saves the new
/// epoch, plus the earlier epochs re-sealed so new members can verify the
/// chain; pins the new epoch in bridge.toml (see `freshness`) and returns it.
fn change(
    ws: &Workspace,
    vault: &mut Vault,
    f: impl FnOnce(&Roster, &Identity) -> Result<(Roster, Vec<u8>), bridge_crypto::RosterError>,
) -> CliResult<Anchor> {
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
    let anchor = Anchor::latest(vault.roster());
    freshness::pin(&ws.root, &anchor)?;
    freshness::check(ws, vault.roster())?;
    Ok(anchor)
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
