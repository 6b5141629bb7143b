//! `bridge keygen`: create this device's identity.

use anyhow::anyhow;
use bridge_crypto::{ExposeSecret, Identity};
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use crate::error::{CliResult, EXIT_OK};
use crate::keys;
use crate::output::print_json;

/// Create this device's identity (a key to read, a key to sign)
///
/// Saves it in the configuration folder (~/.config/bridge/identity, or
/// $BRIDGE_CONFIG_DIR), readable by you only, and prints the public key that
/// an admin adds with `bridge members add`. `bridge init` and `bridge join`
/// create one when the device has none.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Replace an existing identity (members must then add the new key)
    #[arg(long)]
    pub force: bool,
    /// Print the secret identity to stdout instead of saving it (for a CI
    /// secret); print it once and store it at once
    #[arg(long)]
    pub print: bool,
    /// Print the public key and member id as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: KeygenArgs) -> CliResult<u8> {
    let identity =
        Identity::generate().map_err(|e| anyhow!(e).context("cannot create an identity"))?;
    if args.print {
        outln!("{}", identity.to_secret().expose_secret());
        errln!("public key: {}", identity.public());
        return Ok(EXIT_OK);
    }
    let path = keys::save_identity(&g.settings.engine, &identity, args.force)?;
    if args.json {
        print_json(
            &json!({"member": identity.member_id(), "public_key": identity.public().to_string(), "path": path}),
        )?;
    } else if !g.quiet {
        outln!(
            "Saved this device's identity in {} (keep it secret).",
            path.display()
        );
        outln!("Public key: {}", identity.public());
        outln!(
            "An admin adds this device with: bridge members add NAME {}",
            identity.public()
        );
    }
    Ok(EXIT_OK)
}
