//! `bridge audience`: show and change who may read a private batch.

use anyhow::anyhow;
use bridge_crypto::{MemberId, PublicKey};
use clap::{Args, Subcommand};
use serde_json::json;

use super::GlobalArgs;
use super::common::{open_session, sync_and_report};
use crate::audience;
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::output::print_json;
use crate::workspace::Session;

/// Show or change who may read a private batch
///
/// A private batch (`bridge submit --audience NAMES`, or `audience:` in a
/// task file) is encrypted to a key only its audience holds: members
/// outside it, runners included, see its id, audience and task count, and
/// nothing of its tasks, inputs, logs or outputs. Removing a member writes
/// a new key for the files written afterwards; adding one gives them every
/// earlier key too. Only a member of the audience can change it.
#[derive(Debug, Args)]
pub struct AudienceArgs {
    #[command(subcommand)]
    pub command: AudienceCommand,
}

#[derive(Debug, Subcommand)]
pub enum AudienceCommand {
    /// Show a private batch's audience and its key generations
    Show {
        /// The batch (id or prefix)
        batch: String,
        /// Print JSON: {"batch", "generation", "audience": [names], "tasks", "documents", "readable"}
        #[arg(long)]
        json: bool,
    },
    /// Add members to a private batch's audience (they receive every key)
    Add {
        /// The batch (id or prefix)
        batch: String,
        /// Member names
        #[arg(required = true)]
        names: Vec<String>,
        /// Do not sync afterwards
        #[arg(long)]
        offline: bool,
    },
    /// Remove members from a private batch's audience (a new key for later files)
    Remove {
        /// The batch (id or prefix)
        batch: String,
        /// Member names
        #[arg(required = true)]
        names: Vec<String>,
        /// Do not sync afterwards
        #[arg(long)]
        offline: bool,
    },
}

pub fn run(g: &GlobalArgs, args: AudienceArgs) -> CliResult<u8> {
    let mut session = open_session(g)?;
    match args.command {
        AudienceCommand::Show { batch, json } => show(&session, &batch, json),
        AudienceCommand::Add {
            batch,
            names,
            offline,
        } => change(g, &mut session, &batch, &names, true, offline),
        AudienceCommand::Remove {
            batch,
            names,
            offline,
        } => change(g, &mut session, &batch, &names, false, offline),
    }
}

/// The private batch `arg` names (full id, or a prefix of it such as the
/// short id `status` prints).
fn find_batch(session: &Session, arg: &str) -> CliResult<String> {
    let found: Vec<String> = session
        .vault
        .private_batches()
        .into_keys()
        .filter(|b| b.starts_with(arg))
        .collect();
    match found.as_slice() {
        [one] if arg.len() >= 4 => Ok(one.clone()),
        _ => Err(CliError::hint(
            anyhow!("no single private batch matches `{arg}`"),
            "`bridge status` lists the batches; a private one says whom it is private to",
        )),
    }
}

fn show(session: &Session, arg: &str, json: bool) -> CliResult<u8> {
    let batch = find_batch(session, arg)?;
    let resolved = session
        .vault
        .audience(&batch)
        .ok_or_else(|| anyhow!("batch {batch} has no valid audience grant"))?;
    let newest = resolved
        .newest()
        .ok_or_else(|| anyhow!("batch {batch} has no valid audience grant"))?;
    let names = audience::names(session.vault.roster(), &newest.body.audience);
    let readable = !session.vault.is_foreign_batch(&batch);
    if json {
        print_json(&json!({
            "batch": batch,
            "generation": newest.body.generation,
            "audience": names,
            "tasks": newest.body.tasks,
            "documents": newest.body.documents,
            "readable": readable,
        }))?;
    } else {
        outln!(
            "Batch {batch}: private to {} ({} task{}, key generation {}){}.",
            names.join(", "),
            newest.body.tasks,
            if newest.body.tasks == 1 { "" } else { "s" },
            newest.body.generation,
            if readable {
                ""
            } else {
                "; not readable on this device"
            }
        );
    }
    Ok(EXIT_OK)
}

fn change(
    g: &GlobalArgs,
    session: &mut Session,
    arg: &str,
    names: &[String],
    add: bool,
    offline: bool,
) -> CliResult<u8> {
    let batch = find_batch(session, arg)?;
    let newest = session
        .vault
        .audience(&batch)
        .and_then(|a| a.newest().cloned())
        .ok_or_else(|| anyhow!("batch {batch} has no valid audience grant"))?;
    let roster = session.vault.roster();
    let me = session.vault.identity().member_id().clone();
    let named = audience::resolve_names(roster, names, &me)?;
    let named: Vec<MemberId> = named
        .keys
        .iter()
        .map(PublicKey::member_id)
        // `resolve_names` adds this device; only the names given count.
        .filter(|id| {
            *id != me
                || names
                    .iter()
                    .any(|n| roster.latest().member(id).is_some_and(|m| m.name == *n))
        })
        .collect();
    let mut ids: Vec<MemberId> = newest.body.audience.clone();
    if add {
        ids.extend(named.iter().cloned());
    } else {
        ids.retain(|id| !named.contains(id));
    }
    ids.sort();
    ids.dedup();
    if ids == newest.body.audience {
        if !g.quiet {
            outln!("The audience of batch {batch} is unchanged.");
        }
        return Ok(EXIT_OK);
    }
    if ids.is_empty() {
        return Err(CliError::hint(
            anyhow!("that would leave batch {batch} with no audience"),
            "a private batch keeps at least one member who can read it",
        ));
    }
    let keys: Vec<PublicKey> = ids
        .iter()
        .filter_map(|id| roster.latest().member(id).map(|m| m.key.clone()))
        .collect();
    let notice = audience::rotate(&session.vault, &batch, &keys, session.now_ms())?;
    if !g.quiet {
        outln!(
            "Batch {batch} is now private to {} (key generation {}).",
            audience::names(session.vault.roster(), &notice.body.audience).join(", "),
            notice.body.generation
        );
    }
    if !offline {
        session.refresh()?;
        sync_and_report(session, g)?;
    }
    Ok(EXIT_OK)
}
