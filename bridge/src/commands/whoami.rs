//! `bridge whoami`: print this device's public identity.

use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use crate::error::{CliResult, EXIT_OK};
use crate::keys;
use crate::output::print_json;

/// Print this device's member id and public key
///
/// The public key is what an admin passes to `bridge members add`. Nothing
/// secret is printed. It creates nothing: on a device without an identity it
/// fails and says to run `bridge keygen` (which creates one and prints the
/// same key).
#[derive(Debug, Args)]
pub struct WhoamiArgs {
    /// Print JSON: {"member", "public_key"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: WhoamiArgs) -> CliResult<u8> {
    let identity = keys::load_identity(&g.settings.engine)?;
    if args.json {
        print_json(
            &json!({"member": identity.member_id(), "public_key": identity.public().to_string()}),
        )?;
    } else {
        outln!("{}", identity.member_id());
        outln!("{}", identity.public());
    }
    Ok(EXIT_OK)
}
